use monarch::prelude::*;

#[derive(Default)]
struct Counter;

#[actor]
impl Counter {
    #[endpoint]
    async fn stop(&mut self) {}
}

fn main() {}
