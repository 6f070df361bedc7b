//! Job singletons: one actor of a name in the whole job, spawned in the job's
//! root process on first use and found by every process after.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Serialize;
use tokio::sync::Mutex;

use super::bootstrap::worker_root;
use crate::runtime::context::{OwnerId, Placement};
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
///
/// A singleton that has stopped (it failed, say) is not replaced behind the
/// callers' backs: this fails, saying how it stopped, until someone respawns
/// it with [`respawn_controller`].
pub async fn get_or_spawn_controller<A>(
    name: &str,
    params: A::Params,
) -> Result<ActorRef<A>, RemoteError>
where
    A: Actor,
    A::Params: Serialize,
{
    singleton::<A>(name, params, Mode::GetOrSpawn).await
}

/// Spawns the job's singleton `name` afresh with `params`, replacing one that
/// has stopped (or stopping one that runs), and returns it.
pub async fn respawn_controller<A>(
    name: &str,
    params: A::Params,
) -> Result<ActorRef<A>, RemoteError>
where
    A: Actor,
    A::Params: Serialize,
{
    singleton::<A>(name, params, Mode::Respawn).await
}

/// What a request for a singleton may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
enum Mode {
    /// Return the running one, or spawn it if there never was one.
    GetOrSpawn,
    /// Spawn a new one in place of any other.
    Respawn,
}

async fn singleton<A>(name: &str, params: A::Params, mode: Mode) -> Result<ActorRef<A>, RemoteError>
where
    A: Actor,
    A::Params: Serialize,
{
    let type_key = type_key::<A>();
    let Some(root) = worker_root() else {
        let mut singletons = SINGLETONS.lock().await;
        if let Some(id) = existing(&singletons, type_key, name, mode).await? {
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
        holders: std::sync::Arc::from([std::sync::Arc::from(root.addr())]),
    };
    let params = encoding_for(&audience, || encode(&params))?;
    let id = service
        .get_or_spawn(type_key.to_string(), name.to_string(), params, mode)
        .call()
        .await
        .map_err(|e| match e {
            crate::CallError::Endpoint { error, .. } => RemoteError::Failed(error.to_string()),
            other => RemoteError::Failed(other.to_string()),
        })?;
    Ok(ActorRef::from_core(RefCore::resolve(id, Some(root.addr()))))
}

/// The running singleton `name`, if there is one of type `type_key` and
/// `mode` keeps it. One that stopped is an error unless respawning; one that
/// runs is stopped when respawning.
async fn existing(
    singletons: &HashMap<String, (String, ActorId)>,
    type_key: &str,
    name: &str,
    mode: Mode,
) -> Result<Option<ActorId>, RemoteError> {
    match singletons.get(name) {
        Some((existing, _)) if existing != type_key => Err(RemoteError::Failed(format!(
            "the job's singleton `{name}` is a {existing}, not a {type_key}"
        ))),
        Some((_, id)) if mode == Mode::Respawn => {
            registry::stop(id).await;
            Ok(None)
        }
        Some((_, id)) if registry::is_running(id) => Ok(Some(id.clone())),
        Some((_, id)) => Err(RemoteError::Failed(format!(
            "the job's singleton `{name}` ({id}) is not running: {}; respawn it with \
             respawn_controller",
            registry::why_gone(id)
        ))),
        None => Ok(None),
    }
}

/// Serves other processes' requests for singletons, in the root process.
#[derive(Default)]
pub(crate) struct Singletons;

#[monarch_derive::actor]
impl Singletons {
    /// The singleton `name` of type `type_key`, spawned with the encoded
    /// `params` if it does not exist yet (or in any case, when respawning).
    #[endpoint]
    async fn get_or_spawn(
        &self,
        type_key: String,
        name: String,
        params: Bytes,
        mode: Mode,
    ) -> Result<ActorId, String> {
        let mut singletons = SINGLETONS.lock().await;
        if let Some(id) = existing(&singletons, &type_key, &name, mode)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(id);
        }
        let proc = this_proc();
        let placement = Placement::alone(OwnerId::Proc(proc.proc_id().clone()));
        let id = spawn_registered(proc, &type_key, &name, params, placement)
            .await
            .map_err(|e| e.to_string())?;
        singletons.insert(name, (type_key, id.clone()));
        Ok(id)
    }
}
