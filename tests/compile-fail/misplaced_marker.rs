use monarch::prelude::*;

#[derive(Default)]
struct Worker;

#[actor]
impl Worker {
    #[endpoint]
    async fn work(&self, #[reply] reply: ReplyPort<u32>, n: u32) {
        reply.send(n);
    }
}

fn main() {}
