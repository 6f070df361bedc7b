//! Argument names the generated code must not capture, and the markers for
//! parameters whose types are spelled otherwise than the macro recognises.

use monarch::prelude::*;
use monarch::Bytes;

type Ctx = Context<Named>;
type Blob = Bytes;
type Answer = ReplyPort<u32>;

#[derive(Default)]
struct Named;

#[actor]
impl Named {
    #[endpoint]
    async fn reply(&self, reply: u32) -> u32 {
        reply + 1
    }

    #[endpoint]
    async fn ctx(&self, ctx: u32, message: u32) -> u32 {
        ctx * message
    }

    #[endpoint]
    async fn all_of_them(&self, self_: u32, __reply: u32, __ctx: u32, __message: u32) -> u32 {
        self_ + __reply + __ctx + __message
    }

    #[endpoint]
    async fn with_context(&self, ctx: &Context<Self>, reply: String) -> String {
        format!("{}:{reply}", ctx.name())
    }

    #[endpoint]
    async fn aliased(&self, #[context] ctx: &Ctx, #[bytes] data: Blob, #[reply(u32)] reply: Answer) {
        let _ = ctx.actor_id();
        reply.send(data.len() as u32);
    }
}

fn main() {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let named = this_proc().spawn::<Named>("named", ()).await.unwrap();
            assert_eq!(named.reply(1).call().await.unwrap(), 2);
            assert_eq!(named.ctx(6, 7).call().await.unwrap(), 42);
            assert_eq!(named.all_of_them(1, 2, 3, 4).call().await.unwrap(), 10);
            assert_eq!(
                named.with_context("x".into()).call().await.unwrap(),
                "named:x"
            );
            let data = Bytes::from_static(b"four");
            assert_eq!(named.aliased(data).call().await.unwrap(), 4);
        });
}
