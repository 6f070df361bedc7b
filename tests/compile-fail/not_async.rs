use monarch::prelude::*;

#[derive(Default)]
struct Counter;

#[actor]
impl Counter {
    #[endpoint]
    fn get(&self) -> i64 {
        0
    }
}

fn main() {}
