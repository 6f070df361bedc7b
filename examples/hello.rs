//! One actor, a tell and an ask.
//!
//! Run with `cargo run --example hello`.

use monarch::prelude::*;

/// A greeter that remembers how many people it has greeted.
#[derive(Default)]
struct Greeter {
    greeted: u32,
}

#[actor]
impl Greeter {
    /// Greets `name` (a tell: the caller does not wait for a reply).
    #[endpoint]
    async fn greet(&mut self, name: String) {
        self.greeted += 1;
        println!("hello, {name}!");
    }

    /// How many greetings so far (an ask: the caller awaits the reply).
    #[endpoint]
    async fn greeted(&self) -> u32 {
        self.greeted
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Spawn the actor in this process; `spawn` returns once it is ready.
    let greeter = this_proc().spawn::<Greeter>("greeter", ()).await?;

    // Tell: put the message in the actor's mailbox and carry on.
    for name in ["Ada", "Grace", "Barbara"] {
        greeter.greet(name.to_string()).send()?;
    }

    // Ask: messages from one sender are handled in order, so this reply counts
    // all three greetings above.
    let count = greeter.greeted().call().await?;
    println!("{greeter} greeted {count} people");

    // Stop drains what was already sent, then stops the actor.
    greeter.stop().await?;
    Ok(())
}
