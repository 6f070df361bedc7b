use monarch::prelude::*;

#[derive(Default)]
struct Counter;

#[actor]
impl Counter {
    #[endpoint]
    async fn consume(self) -> i64 {
        0
    }
}

fn main() {}
