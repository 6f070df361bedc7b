//! The job's registry of services: one actor in the job's root process
//! ([`get_or_spawn_controller`]) where services are published by name and
//! found from any process.

use std::collections::BTreeMap;

use monarch_core::prelude::*;
use monarch_core::RemoteActor;
use serde::{Deserialize, Serialize};

use super::{Probe, Service, ServiceConfig};

/// The name the registry singleton is spawned under.
pub const REGISTRY_NAME: &str = "monarch-rl/service-registry";

/// A service as it travels: its name and its replicas' meshes. Made by
/// [`Service::handle`]; [`ServiceRef::connect`] routes over it.
#[derive(Serialize, Deserialize)]
#[serde(bound(
    serialize = "ActorMesh<A>: Serialize",
    deserialize = "ActorMesh<A>: Deserialize<'de>"
))]
pub struct ServiceRef<A: RemoteActor> {
    name: String,
    replicas: Vec<ActorMesh<A>>,
}

impl<A: RemoteActor> ServiceRef<A> {
    pub(super) fn new(name: &str, replicas: Vec<ActorMesh<A>>) -> Self {
        ServiceRef {
            name: name.to_string(),
            replicas,
        }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its replicas, as published.
    pub fn replicas(&self) -> &[ActorMesh<A>] {
        &self.replicas
    }

    /// A [`Service`] routing over these replicas, with health kept by this
    /// process: it retries, marks and probes as the owner's does, but cannot
    /// start replicas. Call it inside a tokio runtime (the probe runs on it).
    pub fn connect(self, config: ServiceConfig, probe: Probe<A>) -> Service<A> {
        Service::connected(&self.name, self.replicas, config, probe)
    }
}

impl<A: RemoteActor> Clone for ServiceRef<A> {
    fn clone(&self) -> Self {
        ServiceRef {
            name: self.name.clone(),
            replicas: self.replicas.clone(),
        }
    }
}

impl<A: RemoteActor> std::fmt::Debug for ServiceRef<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRef")
            .field("name", &self.name)
            .field("replicas", &self.replicas.len())
            .finish()
    }
}

/// What the registry holds for one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryEntry {
    /// The replicas' actor type (`std::any::type_name`).
    pub actor_type: String,
    /// How many replicas were published.
    pub replicas: usize,
    /// The [`ServiceRef`], as JSON.
    handle: String,
}

/// A service could not be published or found.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached or spawned.
    #[error("the service registry: {0}")]
    Registry(String),
    /// No service of that name was published.
    #[error("no service `{name}` is registered (registered: {known:?})")]
    NotFound {
        /// The name asked for.
        name: String,
        /// The names that are registered.
        known: Vec<String>,
    },
    /// The name is taken by a service of another actor type.
    #[error("service `{name}` serves {found}, not {expected}")]
    WrongType {
        /// The name.
        name: String,
        /// The type asked for.
        expected: String,
        /// The type registered.
        found: String,
    },
    /// The handle could not be encoded or decoded.
    #[error("service `{name}`: its handle: {error}")]
    Handle {
        /// The service.
        name: String,
        /// What failed.
        error: String,
    },
}

/// The registry actor. Reach it with [`registry`]; most code needs only
/// [`publish`] and [`find`].
#[derive(Default)]
pub struct ServiceRegistry {
    entries: BTreeMap<String, RegistryEntry>,
}

#[monarch_derive::actor]
impl ServiceRegistry {
    /// Registers `entry` as `name`, replacing what was there if it has the
    /// same actor type.
    #[endpoint]
    async fn register(&mut self, name: String, entry: RegistryEntry) -> Result<(), RegistryError> {
        if let Some(old) = self.entries.get(&name) {
            if old.actor_type != entry.actor_type {
                return Err(RegistryError::WrongType {
                    name,
                    expected: entry.actor_type,
                    found: old.actor_type.clone(),
                });
            }
        }
        tracing::info!(service = %name, replicas = entry.replicas, "service registered");
        self.entries.insert(name, entry);
        Ok(())
    }

    /// The entry of `name`, if one is registered.
    #[endpoint]
    async fn lookup(&self, name: String) -> Option<RegistryEntry> {
        self.entries.get(&name).cloned()
    }

    /// The registered names, in order.
    #[endpoint]
    async fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Removes `name`; whether it was there.
    #[endpoint]
    async fn deregister(&mut self, name: String) -> bool {
        self.entries.remove(&name).is_some()
    }
}

/// The job's registry, spawned in the root process on first use.
pub async fn registry() -> Result<ActorRef<ServiceRegistry>, RegistryError> {
    get_or_spawn_controller::<ServiceRegistry>(REGISTRY_NAME, ())
        .await
        .map_err(|e| RegistryError::Registry(e.to_string()))
}

/// Publishes `service` under its name, so that [`find`] finds it from any
/// process. Publish again after replacing a replica, so that others see the
/// new one.
pub async fn publish<A: RemoteActor>(service: &Service<A>) -> Result<(), RegistryError> {
    let handle = service.handle();
    let name = handle.name().to_string();
    let entry = RegistryEntry {
        actor_type: std::any::type_name::<A>().to_string(),
        replicas: handle.replicas().len(),
        handle: serde_json::to_string(&handle).map_err(|e| RegistryError::Handle {
            name: name.clone(),
            error: e.to_string(),
        })?,
    };
    registry()
        .await?
        .register(name, entry)
        .call()
        .await
        .map_err(|e| RegistryError::Registry(e.to_string()))
}

/// Finds the service published as `name`, whose replicas are `A`s.
pub async fn find<A: RemoteActor>(name: &str) -> Result<ServiceRef<A>, RegistryError> {
    let registry = registry().await?;
    let call_error = |e: monarch_core::CallError| RegistryError::Registry(e.to_string());
    let Some(entry) = registry
        .lookup(name.to_string())
        .call()
        .await
        .map_err(call_error)?
    else {
        let known = registry.names().call().await.map_err(call_error)?;
        return Err(RegistryError::NotFound {
            name: name.to_string(),
            known,
        });
    };
    let expected = std::any::type_name::<A>();
    if entry.actor_type != expected {
        return Err(RegistryError::WrongType {
            name: name.to_string(),
            expected: expected.to_string(),
            found: entry.actor_type,
        });
    }
    serde_json::from_str(&entry.handle).map_err(|e| RegistryError::Handle {
        name: name.to_string(),
        error: e.to_string(),
    })
}
