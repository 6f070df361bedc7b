use monarch::prelude::*;

mod templates {
    pub struct Context<T>(pub T);
}

#[derive(Default)]
struct Page;

#[actor]
impl Page {
    #[endpoint]
    async fn render(&self, ctx: &templates::Context<String>) -> usize {
        ctx.0.len()
    }
}

fn main() {}
