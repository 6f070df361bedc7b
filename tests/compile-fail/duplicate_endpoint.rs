use monarch::prelude::*;

#[derive(Default)]
struct Counter;

#[actor]
impl Counter {
    #[endpoint]
    async fn get(&self) -> i64 {
        0
    }

    #[endpoint]
    async fn get(&self) -> i64 {
        1
    }
}

fn main() {}
