//! The `#[actor]` macro of monarch-rs.
//!
//! Put `#[actor]` on an actor's `impl` block and mark its endpoints with
//! `#[endpoint]`. The macro generates the message type, the dispatch, the
//! `Actor` implementation and a typed client that `ActorRef<YourActor>`
//! dereferences to. Use it through the `monarch` facade:
//!
//! ```ignore
//! use monarch::prelude::*;
//!
//! #[derive(Default)]
//! struct Counter { value: i64 }
//!
//! #[actor]
//! impl Counter {
//!     #[endpoint]
//!     async fn incr(&mut self, by: i64) { self.value += by; }
//!     #[endpoint]
//!     async fn get(&self) -> i64 { self.value }
//! }
//! ```
//!
//! The generated types (`CounterMessage`, `CounterClient`,
//! `CounterMeshClient`) are `pub` unless the attribute names another
//! visibility, as `#[actor(pub(crate))]` does for a crate-private actor; the
//! macro sees the `impl` block, not the struct, so it cannot take the
//! struct's own. Every binding the generated code makes is hygienic: an
//! argument may be named `reply`, `ctx` or `message`.
//!
//! Attributes inside the block:
//! - `#[endpoint]`: an `async fn(&mut self | &self, [ctx: &Context<Self>,] args...)`
//!   returning `T` or `Result<T, E>` (`E: Display`; an `E` that is a
//!   `std::error::Error` reaches the caller with its chain of sources), with
//!   serde arguments and reply. A last parameter `reply: ReplyPort<T>` makes
//!   the reply deferred: the caller receives what is sent on the port. An
//!   argument whose type is written `Bytes` (it must be `bytes::Bytes`,
//!   re-exported as `monarch::Bytes`) travels beside the encoded message
//!   rather than through the encoder: between processes it is never copied
//!   into an encode buffer, and on one host a large one arrives as a mapping
//!   of shared memory. The three are recognised by how their types are
//!   spelled (`&Context<..>`, `ReplyPort<..>`, `Bytes`); a parameter whose
//!   type is spelled otherwise (an alias, say) is marked `#[context]`,
//!   `#[reply]` or `#[bytes]`. A recognised parameter of the wrong type is a
//!   type error at that parameter.
//! - `#[init]`: `async fn(params: P [, ctx: &Context<Self>]) -> Self` or
//!   `-> Result<Self, E>`; without it the actor needs `Default` and takes `()`.
//! - `#[on_stop]`: `async fn(&mut self, ctx: &Context<Self>, reason: &StopReason)`.
//! - `#[on_supervision]`: `async fn(&mut self, ctx: &Context<Self>, event:
//!   &SupervisionEvent) -> bool` (or `Result<bool, ActorError>`): `true` when handled.
//! - `#[on_undeliverable]`: `async fn(&mut self, ctx: &Context<Self>, message:
//!   &Undeliverable) -> Result<(), ActorError>`.

mod expand;
mod model;

use proc_macro::TokenStream;

/// Turns an `impl` block into an actor; see the crate documentation.
#[proc_macro_attribute]
pub fn actor(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let vis = if args.is_empty() {
        syn::parse_quote!(pub)
    } else {
        match syn::parse2::<syn::Visibility>(args.clone()) {
            Ok(vis) if !matches!(vis, syn::Visibility::Inherited) => vis,
            _ => {
                return syn::Error::new_spanned(
                    args,
                    "#[actor] takes only the visibility of the types it generates, \
                     such as #[actor(pub(crate))]",
                )
                .to_compile_error()
                .into()
            }
        }
    };
    let item = syn::parse_macro_input!(input as syn::ItemImpl);
    match model::ActorModel::parse(item, vis) {
        Ok(model) => expand::expand(&model).into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// Marks an endpoint inside an `#[actor]` block. Outside one it is an error.
#[proc_macro_attribute]
pub fn endpoint(_args: TokenStream, input: TokenStream) -> TokenStream {
    let input = proc_macro2::TokenStream::from(input);
    syn::Error::new_spanned(
        &input,
        "#[endpoint] belongs on a method inside an `#[actor] impl` block",
    )
    .to_compile_error()
    .into()
}

/// Makes `async fn main` a monarch program: it first calls `bootstrap()` (so
/// the binary can serve as a worker of a proc mesh), then runs `main` on a
/// multi-threaded tokio runtime.
///
/// ```ignore
/// #[monarch::main]
/// async fn main() {
///     let procs = monarch::this_host().spawn_procs(monarch::shape! { gpus = 2 }).await.unwrap();
/// }
/// ```
#[proc_macro_attribute]
pub fn main(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    if !args.is_empty() {
        return syn::Error::new_spanned(args, "#[monarch::main] takes no arguments")
            .to_compile_error()
            .into();
    }
    let function = syn::parse_macro_input!(input as syn::ItemFn);
    expand::main(function).into()
}
