//! Job singletons: one actor of a name in the whole job, spawned in the job's
//! root process on first use and found by every process after.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Serialize;
use tokio::sync::Mutex;

use super::bootstrap::worker_root;
use crate::runtime::reference::RefCore;
use crate::runtime::registry;
use crate::runtime::remote::{encoding_for, Audience};
use crate::runtime::spawn::{spawn_registered, type_key};
use crate::transport::ProcRef;
use crate::wire::codec::encode;
use crate::{this_proc, Actor, ActorId, ActorRef, Bytes, RemoteError};

/// The job's singletons by name: their type and id. In the root process.
static SINGLETONS: LazyLock<Mutex<HashMap<String, (String, ActorId)>>> =
    LazyLock::new(Default::default);

/// Returns the job's singleton actor `name`, spawning it with `params` in the
/// job's root process (the controller) if it does not exist yet. Every
/// caller, from any process of the job, gets the same actor; a name is bound
/// to the type first spawned under it.
pub async fn get_or_spawn_controller<A>(
    name: &str,
    params: A::Params,
) -> Result<ActorRef<A>, RemoteError>
where
    A: Actor,
    A::Params: Serialize,
{
    let type_key = type_key::<A>();
    let Some(root) = worker_root() else {
        let mut singletons = SINGLETONS.lock().await;
        if let Some(id) = existing(&singletons, type_key, name)? {
            return Ok(ActorRef::from_core(RefCore::resolve(id, None)));
        }
        let actor = this_proc()
            .spawn::<A>(name, params)
            .await
            .map_err(|e| RemoteError::Failed(e.to_string()))?;
        registry::register_actor(actor.core());
        singletons.insert(
            name.to_string(),
            (type_key.to_string(), actor.actor_id().clone()),
        );
        return Ok(actor);
    };
    let service = root.service::<Singletons>()?;
    let here = ProcRef::here()
        .ok_or_else(|| RemoteError::Unreachable("this worker's transport is not running".into()))?;
    let audience = Audience {
        local: here.addr().into(),
        holders: vec![root.addr().into()],
    };
    let params = encoding_for(&audience, || encode(&params))?;
    let id = service
        .get_or_spawn(type_key.to_string(), name.to_string(), params)
        .call()
        .await
        .map_err(|e| RemoteError::Failed(e.to_string()))?;
    Ok(ActorRef::from_core(RefCore::resolve(id, Some(root.addr()))))
}

/// The running singleton `name`, if there is one of type `type_key`.
fn existing(
    singletons: &HashMap<String, (String, ActorId)>,
    type_key: &str,
    name: &str,
) -> Result<Option<ActorId>, RemoteError> {
    match singletons.get(name) {
        Some((existing, _)) if existing != type_key => Err(RemoteError::Failed(format!(
            "the job's singleton `{name}` is a {existing}, not a {type_key}"
        ))),
        Some((_, id)) if registry::is_running(id) => Ok(Some(id.clone())),
        _ => Ok(None),
    }
}

/// Serves other processes' requests for singletons, in the root process.
#[derive(Default)]
pub(crate) struct Singletons;

#[monarch_derive::actor]
impl Singletons {
    /// The singleton `name` of type `type_key`, spawned with the encoded
    /// `params` if it does not exist yet.
    #[endpoint]
    async fn get_or_spawn(
        &self,
        type_key: String,
        name: String,
        params: Bytes,
    ) -> Result<ActorId, String> {
        let mut singletons = SINGLETONS.lock().await;
        if let Some(id) = existing(&singletons, &type_key, &name).map_err(|e| e.to_string())? {
            return Ok(id);
        }
        let id = spawn_registered(this_proc(), &type_key, &name, params, 0)
            .await
            .map_err(|e| e.to_string())?;
        singletons.insert(name, (type_key, id.clone()));
        Ok(id)
    }
}
