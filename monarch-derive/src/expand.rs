//! Generating the actor's message type, client and `Actor` implementation.

use proc_macro2::{Span, TokenStream};
use proc_macro_crate::{crate_name, FoundCrate};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::Ident;

use crate::model::{ActorModel, Endpoint, Hook, Output};

/// A name for a binding of the generated code, which no name in the user's
/// code can capture or shadow.
fn hidden(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

pub(crate) fn expand(model: &ActorModel) -> TokenStream {
    let krate = runtime_path();
    let item = &model.item;
    let actor = &model.self_ty;
    let message = format_ident!("{}Message", actor);
    let client = format_ident!("{}Client", actor);

    let vis = &model.vis;
    let variants = model.endpoints.iter().map(|e| {
        let variant = &e.variant;
        let types = e.args.iter().map(|a| &a.ty);
        let reply = reply_type(e);
        let doc = format!("A message for the `{}` endpoint.", e.name);
        quote! { #[doc = #doc] #variant(#(#types,)* #krate::ReplySlot<#reply>) }
    });

    let client_methods = model
        .endpoints
        .iter()
        .map(|e| client_method(&krate, &message, actor, e));
    let handle_arms = model
        .endpoints
        .iter()
        .map(|e| handle_arm(&krate, &message, e));
    let name_arms = model.endpoints.iter().map(|e| {
        let variant = &e.variant;
        let name = e.name.to_string();
        quote! { #message::#variant(..) => #name }
    });
    let (reply_var, error_var) = (hidden("__reply"), hidden("__error"));
    let reject_arms = model.endpoints.iter().map(|e| {
        let variant = &e.variant;
        let skipped = e.args.iter().map(|_| quote!(_));
        quote! {
            #message::#variant(#(#skipped,)* #reply_var) =>
                #krate::__private::reject(#reply_var, #error_var)
        }
    });
    let serde_checks = model.endpoints.iter().flat_map(|e| {
        let reply = reply_type(e);
        e.args
            .iter()
            .filter(|a| !a.bytes)
            .map(|a| &a.ty)
            .chain(std::iter::once(reply))
            .map(|ty| quote_spanned! { ty.span() => #krate::__private::assert_serde::<#ty>(); })
            .collect::<Vec<_>>()
    });

    let mesh_client = format_ident!("{}MeshClient", actor);
    let mesh_methods = model
        .endpoints
        .iter()
        .map(|e| mesh_method(&krate, actor, e));
    let to_wire_arms = model.endpoints.iter().map(|e| {
        let variant = &e.variant;
        let name = e.name.to_string();
        let parts = WireParts::of(e);
        let (all, serde, serde_types, segments) = (
            &parts.all,
            &parts.serde,
            &parts.serde_types,
            &parts.segments,
        );
        let reply = reply_type(e);
        let (reply_var, actor_var) = (hidden("__reply"), hidden("__actor"));
        quote! {
            #message::#variant(#(#all,)* #reply_var) =>
                (&&#krate::__private::Wire::<(#(#serde_types,)*), #reply>::new())
                    .outbound(
                        #actor_var,
                        #name,
                        &(#(#serde,)*),
                        ::std::vec![#(#segments),*],
                        #reply_var,
                    )
        }
    });
    let from_wire_arms = model.endpoints.iter().map(|e| {
        let variant = &e.variant;
        let name = e.name.to_string();
        let parts = WireParts::of(e);
        let (all, serde, serde_types) = (&parts.all, &parts.serde, &parts.serde_types);
        let reply = reply_type(e);
        let (reply_var, payload_var, segments_var, taken) = (
            hidden("__reply"),
            hidden("__payload"),
            hidden("__segments"),
            hidden("__taken"),
        );
        // A `Bytes` argument's declared type must be `bytes::Bytes`: a type
        // error at the user's type otherwise.
        let take_segments = parts
            .segments
            .iter()
            .zip(&parts.segment_types)
            .map(|(seg, ty)| {
                quote_spanned! { ty.span() =>
                    let #seg: #ty = #krate::Payload::next_segment(&mut #segments_var)?;
                }
            });
        quote! {
            #name => {
                let ((#(#serde,)*), #taken) =
                    (&&#krate::__private::Wire::<(#(#serde_types,)*), #reply>::new())
                        .inbound(&#payload_var.args, #reply_var)?;
                let mut #segments_var = #payload_var.segments.into_iter();
                #(#take_segments)*
                let _ = &mut #segments_var;
                ::core::result::Result::Ok(#message::#variant(#(#all,)* #taken))
            }
        }
    });
    let actor_name = actor.to_string();
    let (params, init) = init_fn(&krate, model.init.as_ref());
    let hooks = hook_fns(&krate, model);
    let message_doc = format!("The messages of [`{actor}`]'s endpoints, generated by `#[actor]`.");
    let client_doc = format!(
        "The typed client of [`{actor}`], generated by `#[actor]`: `ActorRef<{actor}>` dereferences to it."
    );
    let mesh_client_doc = format!(
        "The typed mesh client of [`{actor}`], generated by `#[actor]`: `ActorMesh<{actor}>` dereferences to it."
    );
    let (ctx_var, message_var, actor_var, endpoint_var, payload_var, other_var, params_var) = (
        hidden("__ctx"),
        hidden("__message"),
        hidden("__actor"),
        hidden("__endpoint"),
        hidden("__payload"),
        hidden("__other"),
        hidden("__params"),
    );
    let empty_match_wire = model
        .endpoints
        .is_empty()
        .then(|| quote! { match #message_var {} });
    let empty_match = model
        .endpoints
        .is_empty()
        .then(|| quote! { match #message_var {} });
    let name_body = if model.endpoints.is_empty() {
        quote! { match *#message_var {} }
    } else {
        quote! { match #message_var { #(#name_arms,)* } }
    };

    quote! {
        #item

        #[doc = #message_doc]
        #[allow(clippy::large_enum_variant, private_interfaces, unreachable_pub)]
        #vis enum #message {
            #(#variants,)*
        }

        #[doc = #client_doc]
        #[derive(Clone)]
        #[allow(unreachable_pub)]
        #vis struct #client {
            core: #krate::RefCore<#actor>,
        }

        #[allow(private_interfaces, private_bounds)]
        impl #krate::ActorClient<#actor> for #client {
            fn from_core(core: #krate::RefCore<#actor>) -> Self {
                #client { core }
            }
            fn core(&self) -> &#krate::RefCore<#actor> {
                &self.core
            }
        }

        #[allow(private_interfaces, private_bounds, clippy::needless_lifetimes)]
        impl #client {
            #(#client_methods)*
        }

        #[allow(private_interfaces, private_bounds)]
        impl #krate::Actor for #actor {
            type Params = #params;
            type Message = #message;
            type Client = #client;

            const HANDLE_CATCHES_PANICS: bool = true;

            #init

            async fn handle(
                &mut self,
                #ctx_var: &#krate::Context<Self>,
                #message_var: Self::Message,
            ) -> ::core::result::Result<(), #krate::HandlerError> {
                #[allow(unused_imports)]
                use #krate::__private::{ReportDisplay as _, ReportError as _};
                #empty_match
                #[allow(unreachable_code)]
                match #message_var {
                    #(#handle_arms,)*
                }
            }

            fn endpoint_name(#message_var: &Self::Message) -> &'static str {
                #name_body
            }

            fn reject(#message_var: Self::Message, #error_var: #krate::CallError) -> bool {
                #empty_match
                #[allow(unreachable_code)]
                match #message_var {
                    #(#reject_arms,)*
                }
            }

            #hooks

            fn to_wire(
                #message_var: Self::Message,
                #actor_var: &#krate::ActorId,
            ) -> ::core::result::Result<#krate::WireMessage, #krate::RemoteError> {
                #[allow(unused_imports)]
                use #krate::__private::{WireNotSerde as _, WireSerde as _};
                #empty_match_wire
                #[allow(unreachable_code)]
                match #message_var {
                    #(#to_wire_arms,)*
                }
            }

            fn from_wire(
                #endpoint_var: &str,
                #payload_var: #krate::Payload,
                #reply_var: &mut ::core::option::Option<#krate::ReplySink>,
            ) -> ::core::result::Result<Self::Message, #krate::RemoteError> {
                #[allow(unused_imports)]
                use #krate::__private::{WireNotSerde as _, WireSerde as _};
                let _ = (&#payload_var, &#reply_var);
                match #endpoint_var {
                    #(#from_wire_arms,)*
                    #other_var => ::core::result::Result::Err(#krate::RemoteError::Codec(
                        ::std::format!("{} has no endpoint `{}`", #actor_name, #other_var),
                    )),
                }
            }

            fn decode_params(
                #params_var: &[u8],
            ) -> ::core::result::Result<Self::Params, #krate::RemoteError> {
                #[allow(unused_imports)]
                use #krate::__private::{NotSerde as _, ViaSerde as _};
                (&&#krate::__private::ParamsDecoder::<#params>::new()).decode_params(#params_var)
            }

            fn default_params() -> ::core::option::Option<Self::Params> {
                #[allow(unused_imports)]
                use #krate::__private::{WithDefault as _, WithoutDefault as _};
                (&&#krate::__private::DefaultParams::<#params>::new()).default_params()
            }
        }

        #[doc = #mesh_client_doc]
        #[derive(Clone)]
        #[allow(unreachable_pub)]
        #vis struct #mesh_client {
            core: #krate::MeshCore<#actor>,
        }

        #[allow(private_interfaces, private_bounds)]
        impl #krate::MeshClient<#actor> for #mesh_client {
            fn from_core(core: #krate::MeshCore<#actor>) -> Self {
                #mesh_client { core }
            }
            fn core(&self) -> &#krate::MeshCore<#actor> {
                &self.core
            }
        }

        #[allow(private_interfaces, private_bounds, clippy::needless_lifetimes)]
        impl #mesh_client {
            #(#mesh_methods)*
        }

        #[allow(private_interfaces, private_bounds)]
        impl #krate::RemoteActor for #actor {
            type MeshClient = #mesh_client;
        }

        #krate::__private::inventory::submit! {
            #krate::__private::RemoteSpawn::of::<#actor>()
        }

        const _: () = {
            #[allow(dead_code)]
            fn assert_endpoint_types_are_serde() {
                #(#serde_checks)*
            }
        };
    }
}

/// The path of the runtime crate as the user's crate names it: the facade
/// (package `monarch-rs`, library `monarch`) if it depends on it, else
/// `monarch-rs-core` (library `monarch_core`). A dependency renamed in
/// Cargo.toml keeps its new name.
fn runtime_path() -> TokenStream {
    let found = |package: &str, library: &str| match crate_name(package) {
        Ok(FoundCrate::Itself) => Some(library.to_string()),
        // Not renamed: the name is the package's, but the library's differs.
        Ok(FoundCrate::Name(name)) if name == package.replace('-', "_") => {
            Some(library.to_string())
        }
        Ok(FoundCrate::Name(name)) => Some(name),
        Err(_) => None,
    };
    let name = found("monarch-rs", "monarch")
        .or_else(|| found("monarch-rs-core", "monarch_core"))
        .unwrap_or_else(|| "monarch".to_string());
    let ident = format_ident!("{}", name);
    quote!(::#ident)
}

fn reply_type(e: &Endpoint) -> &syn::Type {
    match &e.output {
        Output::Plain(t) | Output::Fallible(t) | Output::Deferred(t, _) => t,
    }
}

fn client_method(
    krate: &TokenStream,
    message: &syn::Ident,
    actor: &syn::Ident,
    e: &Endpoint,
) -> TokenStream {
    let name = &e.name;
    let variant = &e.variant;
    let endpoint = name.to_string();
    let reply = reply_type(e);
    let params = e.args.iter().map(|a| {
        let (n, ty) = (&a.name, &a.ty);
        quote! { #n: #ty }
    });
    let names = e.args.iter().map(|a| &a.name);
    let reply_var = hidden("__reply");
    let docs = &e.docs;
    let default_doc = (docs.is_empty()).then(|| {
        let text =
            format!("Calls the `{endpoint}` endpoint: finish with `.send()` or `.call().await`.");
        quote! { #[doc = #text] }
    });
    quote! {
        #(#docs)*
        #default_doc
        pub fn #name<'a>(&'a self, #(#params),*) -> #krate::Call<'a, #actor, #reply, impl FnOnce(#krate::ReplySlot<#reply>) -> #message + Send + 'a> {
            self.core.call(#endpoint, move |#reply_var| #message::#variant(#(#names,)* #reply_var))
        }
    }
}

fn mesh_method(krate: &TokenStream, actor: &syn::Ident, e: &Endpoint) -> TokenStream {
    let name = &e.name;
    let endpoint = name.to_string();
    let reply = reply_type(e);
    let params = e.args.iter().map(|a| {
        let (n, ty) = (&a.name, &a.ty);
        quote! { #n: #ty }
    });
    let parts = WireParts::of(e);
    let (all, serde, serde_types, segments) = (
        &parts.all,
        &parts.serde,
        &parts.serde_types,
        &parts.segments,
    );
    let names = e.args.iter().map(|a| &a.name);
    let (args_var, encode_var) = (hidden("__args"), hidden("__encode"));
    let doc = format!(
        "Calls the `{endpoint}` endpoint on every actor of the mesh: finish with an adverb (`.broadcast()`, `.call().await`, `.choose().await`, ...)."
    );
    quote! {
        #[doc = #doc]
        pub fn #name<'a>(&'a self, #(#params),*) -> #krate::MeshCall<'a, #actor, #reply, impl Fn() -> ::core::result::Result<#krate::Payload, #krate::RemoteError> + 'a> {
            #[allow(unused_imports)]
            use #krate::__private::{WireNotSerde as _, WireSerde as _};
            let (#(#all,)*) = (#(#names,)*);
            let #args_var = (#(#serde,)*);
            let #encode_var = move || {
                ::core::result::Result::Ok(#krate::Payload {
                    args: (&&#krate::__private::Wire::<(#(#serde_types,)*), #reply>::new())
                        .encode_args(&#args_var)?,
                    segments: ::std::vec![#(::core::clone::Clone::clone(&#segments)),*],
                })
            };
            self.core.call(#endpoint, #encode_var)
        }
    }
}

/// An endpoint's arguments as they travel: `bytes::Bytes` arguments go as
/// separate segments (never copied through the encoder), the rest as one
/// serde tuple.
struct WireParts {
    /// A name for every argument, in order.
    all: Vec<Ident>,
    /// The names of the serde-encoded arguments.
    serde: Vec<Ident>,
    /// Their types.
    serde_types: Vec<syn::Type>,
    /// The names of the `Bytes` arguments.
    segments: Vec<Ident>,
    /// Their declared types.
    segment_types: Vec<syn::Type>,
}

impl WireParts {
    fn of(e: &Endpoint) -> Self {
        let mut parts = WireParts {
            all: Vec::new(),
            serde: Vec::new(),
            serde_types: Vec::new(),
            segments: Vec::new(),
            segment_types: Vec::new(),
        };
        for (i, arg) in e.args.iter().enumerate() {
            let name = hidden(&format!("__arg{i}"));
            parts.all.push(name.clone());
            if arg.bytes {
                parts.segments.push(name);
                parts.segment_types.push(arg.ty.clone());
            } else {
                parts.serde.push(name);
                parts.serde_types.push(arg.ty.clone());
            }
        }
        parts
    }
}

fn handle_arm(krate: &TokenStream, message: &Ident, e: &Endpoint) -> TokenStream {
    let name = &e.name;
    let variant = &e.variant;
    let endpoint = name.to_string();
    let names: Vec<Ident> = (0..e.args.len())
        .map(|i| hidden(&format!("__arg{i}")))
        .collect();
    let (ctx, reply, port, error, body) = (
        hidden("__ctx"),
        hidden("__reply"),
        hidden("__port"),
        hidden("__error"),
        hidden("__body"),
    );
    // The context, checked against the type the endpoint declares it with:
    // a type error at the user's parameter if it is not this actor's.
    let ctx_arg = e.ctx.as_ref().map(|ty| {
        let checked = hidden("__checked");
        quote_spanned! { ty.span() => { let #checked: #ty = #ctx; #checked }, }
    });
    match &e.output {
        Output::Plain(_) => quote! {
            #message::#variant(#(#names,)* #reply) =>
                #krate::__private::serve(#ctx, #endpoint, #reply, self.#name(#ctx_arg #(#names),*)).await
        },
        Output::Fallible(_) => quote! {
            #message::#variant(#(#names,)* #reply) => {
                let #body = async {
                    self.#name(#ctx_arg #(#names),*)
                        .await
                        .map_err(|#error| (&&#krate::__private::Reporter(&#error)).report())
                };
                #krate::__private::serve_fallible(#ctx, #endpoint, #reply, #body).await
            }
        },
        Output::Deferred(_, declared) => {
            let make_port = quote_spanned! { declared.span() =>
                let #port: #declared = #krate::ReplyPort::new(#reply, #ctx.actor_id().clone(), #endpoint);
            };
            quote! {
                #message::#variant(#(#names,)* #reply) => {
                    #make_port
                    #krate::__private::serve_deferred::<Self>(self.#name(#ctx_arg #(#names,)* #port)).await
                }
            }
        }
    }
}

fn init_fn(krate: &TokenStream, init: Option<&Hook>) -> (TokenStream, TokenStream) {
    let Some(hook) = init else {
        return (
            quote!(()),
            quote! {
                const INIT_CANNOT_FAIL: bool = true;

                async fn init(
                    _params: (),
                    _ctx: &#krate::Context<Self>,
                ) -> ::core::result::Result<Self, #krate::ActorError> {
                    ::core::result::Result::Ok(<Self as ::core::default::Default>::default())
                }
            },
        );
    };
    let name = &hook.name;
    let params = hook
        .first_arg
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(()));
    let call = match hook.arg_count {
        0 => quote! { { let () = params; Self::#name().await } },
        1 => quote! { Self::#name(params).await },
        _ => quote! { Self::#name(params, ctx).await },
    };
    let body = if hook.returns_result {
        quote! { #call.map_err(#krate::ActorError::from) }
    } else {
        quote! { ::core::result::Result::Ok(#call) }
    };
    (
        quote!(#params),
        quote! {
            async fn init(
                params: Self::Params,
                ctx: &#krate::Context<Self>,
            ) -> ::core::result::Result<Self, #krate::ActorError> {
                let _ = &ctx;
                #body
            }
        },
    )
}

fn hook_fns(krate: &TokenStream, model: &ActorModel) -> TokenStream {
    let mut out = TokenStream::new();
    if let Some(hook) = &model.on_stop {
        let name = &hook.name;
        let args = match hook.arg_count {
            0 => quote!(),
            1 => quote!(ctx),
            _ => quote!(ctx, reason),
        };
        out.extend(quote! {
            async fn on_stop(&mut self, ctx: &#krate::Context<Self>, reason: &#krate::StopReason) {
                let _ = (&ctx, &reason);
                self.#name(#args).await
            }
        });
    }
    if let Some(hook) = &model.on_supervision {
        let name = &hook.name;
        let result = if hook.returns_result {
            quote! { self.#name(ctx, event).await.map_err(#krate::ActorError::from) }
        } else {
            quote! { ::core::result::Result::Ok(self.#name(ctx, event).await) }
        };
        out.extend(quote! {
            async fn handle_supervision_event(
                &mut self,
                ctx: &#krate::Context<Self>,
                event: &#krate::SupervisionEvent,
            ) -> ::core::result::Result<bool, #krate::ActorError> {
                #result
            }
        });
    }
    if let Some(hook) = &model.on_undeliverable {
        let name = &hook.name;
        let result = if hook.returns_result {
            quote! { self.#name(ctx, message).await.map_err(#krate::ActorError::from) }
        } else {
            quote! { ::core::result::Result::Ok(self.#name(ctx, message).await) }
        };
        out.extend(quote! {
            async fn handle_undeliverable(
                &mut self,
                ctx: &#krate::Context<Self>,
                message: &#krate::Undeliverable,
            ) -> ::core::result::Result<(), #krate::ActorError> {
                #result
            }
        });
    }
    out
}

/// `#[monarch::main]`: bootstrap, then run the async body on a runtime.
pub(crate) fn main(function: syn::ItemFn) -> TokenStream {
    if function.sig.asyncness.is_none() {
        return syn::Error::new_spanned(
            function.sig.fn_token,
            "#[monarch::main] goes on an `async fn main`",
        )
        .to_compile_error();
    }
    let krate = runtime_path();
    let attrs = &function.attrs;
    let vis = &function.vis;
    let name = &function.sig.ident;
    let output = &function.sig.output;
    let body = &function.block;
    quote! {
        #(#attrs)*
        #vis fn #name() #output {
            #krate::bootstrap();
            #krate::__private::runtime().block_on(async move #body)
        }
    }
}
