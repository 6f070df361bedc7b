use monarch::prelude::*;

#[derive(Default)]
struct Counter;

struct Opaque(u8);

#[actor]
impl Counter {
    #[endpoint]
    async fn take(&mut self, value: Opaque) {
        let _ = value;
    }
}

fn main() {}
