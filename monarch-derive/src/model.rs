//! What `#[actor]` reads from the user's `impl` block, validated.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{
    FnArg, GenericArgument, Ident, ImplItem, ImplItemFn, ItemImpl, Pat, PathArguments, ReturnType,
    Type,
};

/// Names `ActorRef` itself defines; an endpoint of that name would be shadowed.
const RESERVED: &[&str] = &[
    "actor_id",
    "is_stopped",
    "stop",
    "wait_stopped",
    "clone",
    "deref",
    "core",
    "from_core",
    "shape",
    "slice",
    "len",
    "is_empty",
    "member",
    "members",
];

pub(crate) struct ActorModel {
    pub(crate) item: ItemImpl,
    pub(crate) self_ty: Ident,
    /// The visibility of the generated types.
    pub(crate) vis: syn::Visibility,
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) init: Option<Hook>,
    pub(crate) on_stop: Option<Hook>,
    pub(crate) on_supervision: Option<Hook>,
    pub(crate) on_undeliverable: Option<Hook>,
}

pub(crate) struct Endpoint {
    pub(crate) name: Ident,
    pub(crate) variant: Ident,
    pub(crate) docs: Vec<syn::Attribute>,
    /// The type the endpoint declares its context parameter with, if it takes
    /// one.
    pub(crate) ctx: Option<Type>,
    pub(crate) args: Vec<Arg>,
    pub(crate) output: Output,
}

/// One message argument of an endpoint.
pub(crate) struct Arg {
    /// The name the user gave it (a made-up one for a pattern).
    pub(crate) name: Ident,
    pub(crate) ty: Type,
    /// Whether it is a `bytes::Bytes` that travels beside the encoded
    /// arguments.
    pub(crate) bytes: bool,
}

pub(crate) enum Output {
    /// Returns `T` (the unit type when it returns nothing).
    Plain(Type),
    /// Returns `Result<T, E>`.
    Fallible(Type),
    /// Replies through a `ReplyPort<T>` parameter, declared with the second
    /// type.
    Deferred(Type, Box<Type>),
}

pub(crate) struct Hook {
    pub(crate) name: Ident,
    pub(crate) arg_count: usize,
    pub(crate) returns_result: bool,
    pub(crate) first_arg: Option<Type>,
}

impl ActorModel {
    pub(crate) fn parse(mut item: ItemImpl, vis: syn::Visibility) -> syn::Result<Self> {
        if !item.generics.params.is_empty() {
            return Err(syn::Error::new_spanned(
                &item.generics,
                "#[actor] does not support generic actors",
            ));
        }
        if let Some((_, path, _)) = &item.trait_ {
            return Err(syn::Error::new_spanned(
                path,
                "#[actor] goes on an inherent `impl Type` block, not a trait impl",
            ));
        }
        let self_ty = match &*item.self_ty {
            Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.clone()),
            _ => None,
        }
        .ok_or_else(|| {
            syn::Error::new_spanned(&item.self_ty, "#[actor] needs a plain named type")
        })?;

        let mut model = ActorModel {
            item: item.clone(),
            self_ty,
            vis,
            endpoints: Vec::new(),
            init: None,
            on_stop: None,
            on_supervision: None,
            on_undeliverable: None,
        };
        let mut errors: Option<syn::Error> = None;
        let mut push_error = |e: syn::Error| match &mut errors {
            Some(all) => all.combine(e),
            None => errors = Some(e),
        };
        for impl_item in &mut item.items {
            let ImplItem::Fn(method) = impl_item else {
                continue;
            };
            let Some(role) = take_role(method) else {
                continue;
            };
            let result = match role.as_str() {
                "endpoint" => Endpoint::parse(method).and_then(|e| model.add_endpoint(e)),
                _ if has_marked_params(method) => Err(syn::Error::new(
                    method.sig.ident.span(),
                    "#[context], #[reply] and #[bytes] mark parameters of endpoints only",
                )),
                hook => Hook::parse(method, hook)
                    .and_then(|h| model.set_hook(hook, h, method.sig.ident.span())),
            };
            if let Err(e) = result {
                push_error(e);
            }
        }
        if let Some(errors) = errors {
            return Err(errors);
        }
        model.item = item;
        Ok(model)
    }

    fn add_endpoint(&mut self, endpoint: Endpoint) -> syn::Result<()> {
        if RESERVED.contains(&endpoint.name.to_string().as_str()) {
            return Err(syn::Error::new(
                endpoint.name.span(),
                format!(
                    "an endpoint cannot be named `{}`: ActorRef or ActorMesh has a method of that name",
                    endpoint.name
                ),
            ));
        }
        if self.endpoints.iter().any(|e| e.variant == endpoint.variant) {
            return Err(syn::Error::new(
                endpoint.name.span(),
                format!(
                    "two endpoints named `{}`: endpoint names must be unique in an actor",
                    endpoint.name
                ),
            ));
        }
        self.endpoints.push(endpoint);
        Ok(())
    }

    fn set_hook(&mut self, role: &str, hook: Hook, span: Span) -> syn::Result<()> {
        let slot = match role {
            "init" => &mut self.init,
            "on_stop" => &mut self.on_stop,
            "on_supervision" => &mut self.on_supervision,
            _ => &mut self.on_undeliverable,
        };
        if slot.is_some() {
            return Err(syn::Error::new(
                span,
                format!("only one #[{role}] method is allowed"),
            ));
        }
        *slot = Some(hook);
        Ok(())
    }
}

/// Removes the role attribute (`#[endpoint]`, `#[init]`, ...) from a method and
/// returns its name.
fn take_role(method: &mut ImplItemFn) -> Option<String> {
    const ROLES: &[&str] = &[
        "endpoint",
        "init",
        "on_stop",
        "on_supervision",
        "on_undeliverable",
    ];
    let position = method.attrs.iter().position(|a| {
        a.path()
            .segments
            .last()
            .is_some_and(|s| ROLES.contains(&s.ident.to_string().as_str()))
    })?;
    let attr = method.attrs.remove(position);
    Some(
        attr.path()
            .segments
            .last()
            .expect("checked above")
            .ident
            .to_string(),
    )
}

/// The parameter markers an endpoint may carry.
const MARKERS: &[&str] = &["context", "reply", "bytes"];

/// Removes the marker attributes (`#[context]`, `#[reply]`, `#[bytes]`) from
/// a parameter and returns their names, with the reply type a `#[reply(T)]`
/// names.
fn take_markers(param: &mut syn::PatType) -> syn::Result<(Vec<String>, Option<Type>)> {
    let mut found = Vec::new();
    let mut reply = None;
    let mut error = None;
    param.attrs.retain(|a| {
        let name = a.path().get_ident().map(ToString::to_string);
        match name {
            Some(name) if MARKERS.contains(&name.as_str()) => {
                if name == "reply" && matches!(a.meta, syn::Meta::List(_)) {
                    match a.parse_args::<Type>() {
                        Ok(ty) => reply = Some(ty),
                        Err(e) => error = Some(e),
                    }
                }
                found.push(name);
                false
            }
            _ => true,
        }
    });
    match error {
        Some(error) => Err(error),
        None => Ok((found, reply)),
    }
}

fn has_marked_params(method: &ImplItemFn) -> bool {
    method.sig.inputs.iter().any(|a| match a {
        FnArg::Typed(t) => t.attrs.iter().any(|a| {
            a.path()
                .get_ident()
                .is_some_and(|i| MARKERS.contains(&i.to_string().as_str()))
        }),
        FnArg::Receiver(_) => false,
    })
}

impl Endpoint {
    fn parse(method: &mut ImplItemFn) -> syn::Result<Self> {
        let sig = &mut method.sig;
        if sig.asyncness.is_none() {
            return Err(syn::Error::new(
                sig.fn_token.span(),
                format!("endpoint `{}` must be an `async fn`", sig.ident),
            ));
        }
        if !sig.generics.params.is_empty() {
            return Err(syn::Error::new_spanned(
                &sig.generics,
                "endpoints cannot be generic",
            ));
        }
        let ident = sig.ident.clone();
        let mut inputs = sig.inputs.iter_mut();
        match inputs.next() {
            Some(FnArg::Receiver(r)) if r.reference.is_some() => {}
            Some(FnArg::Receiver(r)) => {
                return Err(syn::Error::new_spanned(
                    r,
                    "an endpoint takes `&mut self` or `&self`: taking `self` by value would consume the actor",
                ))
            }
            _ => {
                return Err(syn::Error::new(
                    ident.span(),
                    format!("endpoint `{ident}` needs a `&mut self` or `&self` receiver"),
                ))
            }
        }
        // Each parameter with its markers, the markers taken off the method.
        let mut rest: Vec<(syn::PatType, Vec<String>)> = Vec::new();
        let mut named_reply = None;
        for input in inputs {
            let FnArg::Typed(t) = input else {
                unreachable!("a receiver comes first")
            };
            let (markers, reply) = take_markers(t)?;
            named_reply = named_reply.or(reply);
            rest.push((t.clone(), markers));
        }
        for (i, (param, markers)) in rest.iter().enumerate() {
            let misplaced = match () {
                _ if markers.len() > 1 => Some("a parameter takes one marker"),
                _ if markers.iter().any(|m| m == "context") && i != 0 => {
                    Some("#[context] marks the first parameter after the receiver")
                }
                _ if markers.iter().any(|m| m == "reply") && i + 1 != rest.len() => {
                    Some("#[reply] marks the last parameter")
                }
                _ => None,
            };
            if let Some(why) = misplaced {
                return Err(syn::Error::new_spanned(&param.ty, why));
            }
        }
        let marked =
            |param: &(syn::PatType, Vec<String>), marker: &str| param.1.iter().any(|m| m == marker);
        // The context: marked, or a reference to a type spelled `Context`.
        let ctx = match rest.first() {
            Some(first) if marked(first, "context") || is_ref_to(&first.0.ty, "Context") => {
                Some((*rest.remove(0).0.ty).clone())
            }
            _ => None,
        };
        // A deferred reply: the last parameter, marked or spelled `ReplyPort<T>`.
        let deferred = match rest.last() {
            Some(last)
                if marked(last, "reply") || generic_of(&last.0.ty, "ReplyPort").is_some() =>
            {
                let ty = (*last.0.ty).clone();
                let reply = named_reply
                    .or_else(|| generic_of(&ty, "ReplyPort"))
                    .ok_or_else(|| {
                        syn::Error::new_spanned(
                            &ty,
                            "the reply type of this ReplyPort is not spelled out: \
                             mark it #[reply(T)], naming the type `T` it replies with",
                        )
                    })?;
                rest.pop();
                Some((reply, ty))
            }
            _ => None,
        };
        if deferred.is_some() && !matches!(sig.output, ReturnType::Default) {
            return Err(syn::Error::new_spanned(
                &sig.output,
                "an endpoint that replies through a ReplyPort returns nothing",
            ));
        }
        let args = rest
            .iter()
            .enumerate()
            .map(|(i, param)| Arg {
                name: match &*param.0.pat {
                    Pat::Ident(p) => p.ident.clone(),
                    _ => Ident::new(&format!("arg{i}"), param.0.pat.span()),
                },
                ty: (*param.0.ty).clone(),
                bytes: marked(param, "bytes") || is_bytes(&param.0.ty),
            })
            .collect();
        let output = match (&sig.output, deferred) {
            (_, Some((reply, declared))) => Output::Deferred(reply, Box::new(declared)),
            (ReturnType::Default, None) => Output::Plain(syn::parse_quote!(())),
            (ReturnType::Type(_, ty), None) => match generic_of(ty, "Result") {
                Some(ok) => Output::Fallible(ok),
                None => Output::Plain((**ty).clone()),
            },
        };
        Ok(Endpoint {
            variant: Ident::new(&camel_case(&ident.to_string()), ident.span()),
            name: ident,
            docs: method
                .attrs
                .iter()
                .filter(|a| a.path().is_ident("doc"))
                .cloned()
                .collect(),
            ctx,
            args,
            output,
        })
    }
}

/// Whether `ty` is written as `Bytes` or `bytes::Bytes` (any path ending in
/// `Bytes` with no generic arguments).
fn is_bytes(ty: &Type) -> bool {
    match ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Bytes" && s.arguments.is_none()),
        _ => false,
    }
}

impl Hook {
    fn parse(method: &ImplItemFn, role: &str) -> syn::Result<Self> {
        let sig = &method.sig;
        if sig.asyncness.is_none() {
            return Err(syn::Error::new(
                sig.fn_token.span(),
                format!("#[{role}] `{}` must be an `async fn`", sig.ident),
            ));
        }
        let has_receiver = matches!(sig.inputs.first(), Some(FnArg::Receiver(_)));
        if role == "init" && has_receiver {
            return Err(syn::Error::new_spanned(&sig.inputs, "#[init] builds the actor, so it takes no `self`: `async fn new(params: P, ctx: &Context<Self>) -> Self`"));
        }
        if role != "init" && !has_receiver {
            return Err(syn::Error::new(
                sig.ident.span(),
                format!("#[{role}] takes `&mut self`"),
            ));
        }
        let typed: Vec<&syn::PatType> = sig
            .inputs
            .iter()
            .filter_map(|a| match a {
                FnArg::Typed(t) => Some(t),
                FnArg::Receiver(_) => None,
            })
            .collect();
        let returns_result = match &sig.output {
            ReturnType::Type(_, ty) => generic_of(ty, "Result").is_some(),
            ReturnType::Default => false,
        };
        Ok(Hook {
            name: sig.ident.clone(),
            arg_count: typed.len(),
            returns_result,
            first_arg: typed.first().map(|t| (*t.ty).clone()),
        })
    }
}

/// Whether `ty` is `&Name<..>` or `&mut Name<..>`.
fn is_ref_to(ty: &Type, name: &str) -> bool {
    match ty {
        Type::Reference(r) => last_segment(&r.elem).is_some_and(|s| s.ident == name),
        _ => false,
    }
}

/// The first generic argument of `ty` if it is `Name<T, ..>`.
fn generic_of(ty: &Type, name: &str) -> Option<Type> {
    let segment = last_segment(ty)?;
    if segment.ident != name {
        return None;
    }
    match &segment.arguments {
        PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
            GenericArgument::Type(t) => Some(t.clone()),
            _ => None,
        }),
        _ => None,
    }
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) => p.path.segments.last(),
        _ => None,
    }
}

fn camel_case(snake: &str) -> String {
    snake
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}
