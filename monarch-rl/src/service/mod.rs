//! Services: a pool of replicas of one actor behind a single handle, as
//! torchforge serves its policies and reward models.
//!
//! A [`Service<A>`] owns its replicas, each an [`ActorMesh<A>`] on a proc
//! mesh of its own (`procs_per_replica` processes), so that one replica can
//! die alone. Requests go round-robin over the healthy replicas
//! ([`Service::route`]) or to the least loaded one
//! ([`Service::route_least_loaded`]); a request that fails marks its replica
//! unhealthy and is retried once on another. Supervision marks a replica too:
//! a replica whose process dies is unhealthy before anyone calls it. A
//! background probe calls the unhealthy replicas every
//! [`ServiceConfig::probe_every`] and reinstates those that answer;
//! [`Service::replace`] starts a fresh replica in place of one that will not
//! come back.
//!
//! [`ServiceRegistry`] makes a service findable by name from any process of
//! the job: [`publish`] it where it runs, [`find`] it elsewhere and
//! [`ServiceRef::connect`] to route requests over the same replicas (with a
//! health view of the connecting process's own).
//!
//! ```no_run
//! # async fn demo() -> Result<(), monarch_rl::service::ServiceError> {
//! # use monarch_core::prelude::*;
//! # #[derive(Default)] struct Echo;
//! # #[monarch_derive::actor] impl Echo { #[endpoint] async fn ping(&self) -> u32 { 1 } }
//! use monarch_rl::service::{probe, Service, ServiceConfig};
//!
//! let config = ServiceConfig { replicas: 2, ..ServiceConfig::default() };
//! let echo = Service::<Echo>::spawn("echo", config, |_| (), probe(|m: ActorMesh<Echo>| async move {
//!     m.ping().call_one().await
//! }))
//! .await?;
//! let routed = echo.route(|m| async move { m.ping().call_one().await }).await?;
//! assert_eq!(routed.value, 1);
//! # Ok(()) }
//! ```

mod registry;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use monarch_core::prelude::*;
use monarch_core::{Host, ProcId, ProcMeshError, RemoteActor};
use tokio::sync::watch;

pub use registry::{
    find, publish, registry, RegistryEntry, RegistryError, ServiceRef, ServiceRegistry,
    ServiceRegistryClient, ServiceRegistryMeshClient, REGISTRY_NAME,
};

/// How a service is laid out and watched.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Replicas to start.
    pub replicas: usize,
    /// Processes per replica: each replica is a mesh `procs = procs_per_replica`.
    pub procs_per_replica: usize,
    /// How often unhealthy replicas are probed.
    pub probe_every: Duration,
    /// How long a probe may take before it counts as failed.
    pub probe_timeout: Duration,
    /// The longest one attempt of a routed request may take; past it the
    /// replica is marked unhealthy and the request retried.
    pub call_timeout: Duration,
    /// Set in the environment of every replica's processes.
    pub env: Vec<(String, String)>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            replicas: 1,
            procs_per_replica: 1,
            probe_every: Duration::from_millis(500),
            probe_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(60),
            env: Vec::new(),
        }
    }
}

/// How the service checks that an unhealthy replica answers again: any call
/// to it that succeeds. Made with [`probe`].
pub type Probe<A> =
    Arc<dyn Fn(ActorMesh<A>) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// A [`Probe`] from a call on a replica's mesh: the replica is healthy when
/// the call returns `Ok`.
pub fn probe<A, F, Fut, T, E>(call: F) -> Probe<A>
where
    A: RemoteActor,
    F: Fn(ActorMesh<A>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    E: fmt::Display,
{
    Arc::new(move |mesh| {
        let answer = call(mesh);
        Box::pin(async move { answer.await.map(|_| ()).map_err(|e| e.to_string()) })
    })
}

/// A service could not be started or could not serve a request.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A replica's processes could not be started or its actors spawned.
    #[error("service `{service}`: starting a replica: {error}")]
    Spawn {
        /// The service.
        service: String,
        /// What failed.
        error: ProcMeshError,
    },
    /// No replica is healthy: wait for the probe, or replace one.
    #[error("service `{service}` has no healthy replica of {total}")]
    NoHealthyReplica {
        /// The service.
        service: String,
        /// Its replicas, healthy or not.
        total: usize,
    },
    /// The request failed on every replica it was tried on.
    #[error("service `{service}`: the request failed on {}", describe(failures))]
    Failed {
        /// The service.
        service: String,
        /// Each attempt's replica and error, in order.
        failures: Vec<ReplicaFailure>,
    },
    /// A connected service cannot start replicas: only the process that
    /// spawned it can.
    #[error("service `{service}` was connected to, not spawned here: it cannot start replicas")]
    NotOwned {
        /// The service.
        service: String,
    },
    /// There is no replica with that index.
    #[error("service `{service}` has {total} replicas, not one numbered {replica}")]
    NoSuchReplica {
        /// The service.
        service: String,
        /// The index asked for.
        replica: usize,
        /// Its replicas.
        total: usize,
    },
    /// The configuration cannot run.
    #[error("service `{service}`: {problem}")]
    Config {
        /// The service.
        service: String,
        /// What is wrong.
        problem: &'static str,
    },
}

fn describe(failures: &[ReplicaFailure]) -> String {
    failures
        .iter()
        .map(ReplicaFailure::to_string)
        .collect::<Vec<_>>()
        .join("; then on ")
}

/// One failed attempt of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaFailure {
    /// The replica's slot.
    pub replica: usize,
    /// The id of the replica in that slot (unique over the service's life).
    pub id: usize,
    /// What went wrong.
    pub error: String,
}

impl fmt::Display for ReplicaFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replica {} (id {}): {}",
            self.replica, self.id, self.error
        )
    }
}

/// A request's answer and where it was served.
#[derive(Debug)]
pub struct Routed<T> {
    /// The answer.
    pub value: T,
    /// The slot of the replica that answered.
    pub replica: usize,
    /// The id of that replica.
    pub id: usize,
    /// The attempts that failed before (at most one).
    pub failures: Vec<ReplicaFailure>,
}

/// How to pick a replica for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// The next healthy replica in turn.
    RoundRobin,
    /// The healthy replica with the fewest requests in flight (in turn among
    /// equals).
    LeastLoaded,
}

/// The health of a service's replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceStatus {
    /// The service.
    pub name: String,
    /// Replicas, healthy or not.
    pub total: usize,
    /// Healthy replicas.
    pub healthy: usize,
    /// The unhealthy ones and why.
    pub unhealthy: Vec<ReplicaFailure>,
}

/// A pool of replicas of `A` behind one handle. See the [module](self).
pub struct Service<A: RemoteActor> {
    shared: Arc<Shared<A>>,
    prober: tokio::task::JoinHandle<()>,
}

struct Shared<A: RemoteActor> {
    name: String,
    state: Mutex<State<A>>,
    probe: Probe<A>,
    config: ServiceConfig,
    /// Bumped on every change of health, for [`Service::wait_until`].
    changes: watch::Sender<u64>,
    /// How replicas are started, for a service spawned here.
    spawner: Option<Spawner<A>>,
}

struct Spawner<A: RemoteActor> {
    /// Owns the replicas' meshes: its fault hook marks them.
    owner: Proc,
    params: Arc<dyn Fn(usize) -> A::Params + Send + Sync>,
}

struct State<A: RemoteActor> {
    replicas: Vec<Replica<A>>,
    /// Where round-robin goes next.
    next: usize,
    /// Replica ids handed out so far.
    started: usize,
}

struct Replica<A: RemoteActor> {
    id: usize,
    mesh: ActorMesh<A>,
    /// Its processes, for a service spawned here.
    procs: Option<ProcMesh>,
    proc_ids: Vec<ProcId>,
    /// Why it is unhealthy, if it is.
    unhealthy: Option<String>,
    in_flight: Arc<AtomicUsize>,
}

impl<A> Service<A>
where
    A: RemoteActor,
    A::Params: serde::Serialize,
{
    /// Starts `config.replicas` replicas, replica `id` spawned with
    /// `params(id)` (ids count every replica ever started, replacements
    /// included), and the probe that reinstates unhealthy ones.
    pub async fn spawn(
        name: &str,
        config: ServiceConfig,
        params: impl Fn(usize) -> A::Params + Send + Sync + 'static,
        probe: Probe<A>,
    ) -> Result<Self, ServiceError> {
        if config.replicas == 0 || config.procs_per_replica == 0 {
            return Err(ServiceError::Config {
                service: name.to_string(),
                problem: "a service needs at least one replica of at least one process",
            });
        }
        let owner = Proc::new(&format!("service-{name}"));
        let shared = Arc::new(Shared {
            name: name.to_string(),
            state: Mutex::new(State {
                replicas: Vec::with_capacity(config.replicas),
                next: 0,
                started: 0,
            }),
            probe,
            config,
            changes: watch::channel(0).0,
            spawner: Some(Spawner {
                owner: owner.clone(),
                params: Arc::new(params),
            }),
        });
        let weak = Arc::downgrade(&shared);
        owner.set_fault_hook(Arc::new(move |event: &SupervisionEvent| {
            if let Some(shared) = weak.upgrade() {
                let proc = event.actor.proc_id();
                let reason = format!("supervision: {event}");
                if !shared.mark_where(|r| r.proc_ids.contains(proc), &reason) {
                    tracing::debug!(%event, "supervision event of a replica no longer in service");
                }
            }
        }));
        for _ in 0..shared.config.replicas {
            let replica = shared.start_replica().await?;
            shared.lock().replicas.push(replica);
        }
        Ok(Self::watched(shared))
    }

    /// Starts a fresh replica in `slot` in place of the one there (which is
    /// stopped, dead or not). Only a service spawned in this process can.
    pub async fn replace(&self, slot: usize) -> Result<usize, ServiceError> {
        self.shared.check_slot(slot)?;
        let replica = self.shared.start_replica().await?;
        let id = replica.id;
        let old = std::mem::replace(&mut self.shared.lock().replicas[slot], replica);
        self.shared.changed();
        tracing::info!(service = %self.shared.name, slot, old = old.id, new = id, "replica replaced");
        if let Some(procs) = old.procs {
            tokio::spawn(async move { procs.stop().await });
        }
        Ok(id)
    }
}

impl<A: RemoteActor> Service<A> {
    fn watched(shared: Arc<Shared<A>>) -> Self {
        let prober = tokio::spawn(probe_loop(Arc::downgrade(&shared)));
        Service { shared, prober }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Sends a request to the next healthy replica in turn. `call` makes the
    /// request on a replica's mesh; an `Err` (or no answer within
    /// [`ServiceConfig::call_timeout`]) marks that replica unhealthy and the
    /// request is made once more on another. Return an `Ok` holding your own
    /// result type for errors that are the request's fault, not the
    /// replica's.
    pub async fn route<T, E, F, Fut>(&self, call: F) -> Result<Routed<T>, ServiceError>
    where
        F: Fn(ActorMesh<A>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Display,
    {
        self.route_by(Routing::RoundRobin, call).await
    }

    /// Like [`Service::route`], to the replica with the fewest requests in
    /// flight through this handle.
    pub async fn route_least_loaded<T, E, F, Fut>(&self, call: F) -> Result<Routed<T>, ServiceError>
    where
        F: Fn(ActorMesh<A>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Display,
    {
        self.route_by(Routing::LeastLoaded, call).await
    }

    /// Routes a request as `routing` says; see [`Service::route`].
    pub async fn route_by<T, E, F, Fut>(
        &self,
        routing: Routing,
        call: F,
    ) -> Result<Routed<T>, ServiceError>
    where
        F: Fn(ActorMesh<A>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Display,
    {
        let mut failures: Vec<ReplicaFailure> = Vec::new();
        for _attempt in 0..2 {
            let tried = failures.last().map(|f| f.replica);
            let Some(pick) = self.shared.pick(routing, tried) else {
                break;
            };
            let error = {
                let _in_flight = InFlight::enter(&pick.in_flight);
                match tokio::time::timeout(self.shared.config.call_timeout, call(pick.mesh)).await {
                    Ok(Ok(value)) => {
                        return Ok(Routed {
                            value,
                            replica: pick.slot,
                            id: pick.id,
                            failures,
                        })
                    }
                    Ok(Err(error)) => error.to_string(),
                    Err(_) => format!(
                        "no answer within {:?} (ServiceConfig::call_timeout)",
                        self.shared.config.call_timeout
                    ),
                }
            };
            self.shared.mark_where(|r| r.id == pick.id, &error);
            failures.push(ReplicaFailure {
                replica: pick.slot,
                id: pick.id,
                error,
            });
        }
        if failures.is_empty() {
            Err(ServiceError::NoHealthyReplica {
                service: self.shared.name.clone(),
                total: self.shared.lock().replicas.len(),
            })
        } else {
            Err(ServiceError::Failed {
                service: self.shared.name.clone(),
                failures,
            })
        }
    }

    /// The health of the replicas now.
    pub fn status(&self) -> ServiceStatus {
        let state = self.shared.lock();
        let unhealthy: Vec<ReplicaFailure> = state
            .replicas
            .iter()
            .enumerate()
            .filter_map(|(slot, r)| {
                r.unhealthy.as_ref().map(|error| ReplicaFailure {
                    replica: slot,
                    id: r.id,
                    error: error.clone(),
                })
            })
            .collect();
        ServiceStatus {
            name: self.shared.name.clone(),
            total: state.replicas.len(),
            healthy: state.replicas.len() - unhealthy.len(),
            unhealthy,
        }
    }

    /// The slots of the healthy replicas.
    pub fn healthy(&self) -> Vec<usize> {
        let state = self.shared.lock();
        (0..state.replicas.len())
            .filter(|&slot| state.replicas[slot].unhealthy.is_none())
            .collect()
    }

    /// The mesh of the replica in `slot`, to call it directly.
    pub fn replica(&self, slot: usize) -> Result<ActorMesh<A>, ServiceError> {
        self.shared.check_slot(slot)?;
        Ok(self.shared.lock().replicas[slot].mesh.clone())
    }

    /// The id of the replica in `slot`.
    pub fn replica_id(&self, slot: usize) -> Result<usize, ServiceError> {
        self.shared.check_slot(slot)?;
        Ok(self.shared.lock().replicas[slot].id)
    }

    /// Replicas started so far, replacements included.
    pub fn started(&self) -> usize {
        self.shared.lock().started
    }

    /// Marks the replica in `slot` unhealthy: it gets no requests until the
    /// probe reinstates it.
    pub fn mark_unhealthy(&self, slot: usize, reason: &str) -> Result<(), ServiceError> {
        self.shared.check_slot(slot)?;
        let id = self.shared.lock().replicas[slot].id;
        self.shared.mark_where(|r| r.id == id, reason);
        Ok(())
    }

    /// Waits until `ready` holds for the service's status, for at most
    /// `timeout`; returns the last status seen and whether it held.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut ready: impl FnMut(&ServiceStatus) -> bool,
    ) -> (ServiceStatus, bool) {
        let mut changes = self.shared.changes.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.status();
            if ready(&status) {
                return (status, true);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    let status = self.status();
                    let held = ready(&status);
                    return (status, held);
                }
            }
        }
    }

    /// A handle to the same replicas that can travel to other processes;
    /// see [`publish`].
    pub fn handle(&self) -> ServiceRef<A> {
        let state = self.shared.lock();
        ServiceRef::new(
            &self.shared.name,
            state.replicas.iter().map(|r| r.mesh.clone()).collect(),
        )
    }

    /// Stops every replica this process started, and their processes.
    pub async fn stop(self) {
        self.prober.abort();
        let replicas = std::mem::take(&mut self.shared.lock().replicas);
        for replica in replicas {
            if let Some(procs) = replica.procs {
                procs.stop().await;
            }
        }
    }

    /// A service routing over `replicas` that were started elsewhere.
    fn connected(
        name: &str,
        replicas: Vec<ActorMesh<A>>,
        config: ServiceConfig,
        probe: Probe<A>,
    ) -> Self {
        let replicas: Vec<Replica<A>> = replicas
            .into_iter()
            .enumerate()
            .map(|(id, mesh)| Replica {
                id,
                proc_ids: mesh
                    .members()
                    .map(|(_, m)| m.actor_id().proc_id().clone())
                    .collect(),
                mesh,
                procs: None,
                unhealthy: None,
                in_flight: Arc::default(),
            })
            .collect();
        let started = replicas.len();
        let shared = Arc::new(Shared {
            name: name.to_string(),
            state: Mutex::new(State {
                replicas,
                next: 0,
                started,
            }),
            probe,
            config,
            changes: watch::channel(0).0,
            spawner: None,
        });
        Self::watched(shared)
    }
}

impl<A: RemoteActor> Drop for Service<A> {
    fn drop(&mut self) {
        self.prober.abort();
    }
}

impl<A: RemoteActor> fmt::Debug for Service<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Service").field(&self.status()).finish()
    }
}

/// The replica picked for one attempt.
struct Pick<A: RemoteActor> {
    slot: usize,
    id: usize,
    mesh: ActorMesh<A>,
    in_flight: Arc<AtomicUsize>,
}

impl<A: RemoteActor> Shared<A> {
    fn lock(&self) -> MutexGuard<'_, State<A>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    fn check_slot(&self, slot: usize) -> Result<(), ServiceError> {
        let total = self.lock().replicas.len();
        if slot < total {
            Ok(())
        } else {
            Err(ServiceError::NoSuchReplica {
                service: self.name.clone(),
                replica: slot,
                total,
            })
        }
    }

    /// A healthy replica other than `not`, as `routing` says.
    fn pick(&self, routing: Routing, not: Option<usize>) -> Option<Pick<A>> {
        let mut state = self.lock();
        let n = state.replicas.len();
        let start = state.next;
        let candidates = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&slot| Some(slot) != not && state.replicas[slot].unhealthy.is_none());
        let slot = match routing {
            Routing::RoundRobin => candidates.into_iter().next(),
            Routing::LeastLoaded => {
                candidates.min_by_key(|&slot| state.replicas[slot].in_flight.load(Ordering::SeqCst))
            }
        }?;
        state.next = (slot + 1) % n;
        let replica = &state.replicas[slot];
        Some(Pick {
            slot,
            id: replica.id,
            mesh: replica.mesh.clone(),
            in_flight: Arc::clone(&replica.in_flight),
        })
    }

    /// Marks unhealthy the healthy replicas that `which` selects; whether any
    /// replica matched.
    fn mark_where(&self, which: impl Fn(&Replica<A>) -> bool, reason: &str) -> bool {
        let mut matched = false;
        let mut marked = false;
        {
            let mut state = self.lock();
            for (slot, replica) in state.replicas.iter_mut().enumerate() {
                if which(replica) {
                    matched = true;
                    if replica.unhealthy.is_none() {
                        tracing::warn!(service = %self.name, slot, id = replica.id, reason, "replica marked unhealthy");
                        replica.unhealthy = Some(reason.to_string());
                        marked = true;
                    }
                }
            }
        }
        if marked {
            self.changed();
        }
        matched
    }

    fn reinstate(&self, id: usize) {
        let reinstated = {
            let mut state = self.lock();
            state
                .replicas
                .iter_mut()
                .find(|r| r.id == id)
                .is_some_and(|r| r.unhealthy.take().is_some())
        };
        if reinstated {
            tracing::info!(service = %self.name, id, "replica answers again: reinstated");
            self.changed();
        }
    }

    async fn start_replica(&self) -> Result<Replica<A>, ServiceError>
    where
        A::Params: serde::Serialize,
    {
        let Some(spawner) = &self.spawner else {
            return Err(ServiceError::NotOwned {
                service: self.name.clone(),
            });
        };
        let id = {
            let mut state = self.lock();
            state.started += 1;
            state.started - 1
        };
        let spawn_error = |error| ServiceError::Spawn {
            service: self.name.clone(),
            error,
        };
        let mut host = Host::owned_by(&spawner.owner);
        for (key, value) in &self.config.env {
            host = host.with_env(key, value);
        }
        let procs = host
            .spawn_procs(shape! { procs = self.config.procs_per_replica })
            .await
            .map_err(spawn_error)?;
        let mesh = procs
            .spawn::<A>(&self.name, (spawner.params)(id))
            .await
            .map_err(spawn_error)?;
        Ok(Replica {
            id,
            proc_ids: procs.proc_ids().cloned().collect(),
            mesh,
            procs: Some(procs),
            unhealthy: None,
            in_flight: Arc::default(),
        })
    }
}

/// Counts a request in flight on a replica while it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Probes the unhealthy replicas every `probe_every` while the service lives.
async fn probe_loop<A: RemoteActor>(shared: Weak<Shared<A>>) {
    let every = match shared.upgrade() {
        Some(shared) => shared.config.probe_every,
        None => return,
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let unhealthy: Vec<(usize, ActorMesh<A>)> = shared
            .lock()
            .replicas
            .iter()
            .filter(|r| r.unhealthy.is_some())
            .map(|r| (r.id, r.mesh.clone()))
            .collect();
        let probes = unhealthy.into_iter().map(|(id, mesh)| {
            let answer = (shared.probe)(mesh);
            let timeout = shared.config.probe_timeout;
            async move { (id, tokio::time::timeout(timeout, answer).await) }
        });
        for (id, answer) in futures::future::join_all(probes).await {
            if let Ok(Ok(())) = answer {
                shared.reinstate(id);
            }
        }
    }
}
