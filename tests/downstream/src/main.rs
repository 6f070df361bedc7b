//! Uses `#[actor]` and `#[monarch::main]` from a separate crate that depends on
//! the facade alone, in this process and in a mesh of worker processes.

use monarch::prelude::*;

#[derive(Default)]
struct Counter {
    value: i64,
}

#[actor]
impl Counter {
    #[endpoint]
    async fn incr(&mut self, by: i64) {
        self.value += by;
    }

    #[endpoint]
    async fn get(&self) -> i64 {
        self.value
    }

    #[endpoint]
    async fn checked_div(&self, by: i64) -> Result<i64, std::num::TryFromIntError> {
        u8::try_from(by)?;
        Ok(self.value / by)
    }
}

#[monarch::main]
async fn main() {
    let counter = this_proc().spawn::<Counter>("counter", ()).await.expect("spawn");
    counter.incr(40).send().expect("tell");
    counter.incr(2).send().expect("tell");
    assert_eq!(counter.get().call().await.expect("ask"), 42);
    assert_eq!(counter.checked_div(2).call().await.expect("ask"), 21);
    assert!(counter.checked_div(-1).call().await.is_err());
    counter.stop().await.expect("the owner stops it");

    // The same actor in two worker processes: this binary re-executed.
    let procs = this_host()
        .spawn_procs(shape! { workers = 2 })
        .await
        .expect("spawn procs");
    let counters = procs.spawn::<Counter>("counter", ()).await.expect("spawn");
    counters.incr(21).broadcast().expect("broadcast");
    let values = counters.get().call().await.expect("call");
    assert_eq!(values.values(), [21, 21]);
    procs.stop().await;
    println!("downstream: ok");
}
