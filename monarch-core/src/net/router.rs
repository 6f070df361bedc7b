//! The router: this process's endpoint in the job. It listens for peers, keeps
//! one link per peer process, and turns incoming frames into deliveries to local
//! actors, spawns, replies and supervision events.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use super::cast::{Casts, OrderSlot, Ordered};
use super::credential::{Credential, SERVER_NAME};
use super::frame::{encode_prefix, FrameDecoder, Header, DEFAULT_MAX_FRAME};
use super::link::{Heartbeat, Inbound, Link, Queue};
use crate::remote::{encode, RemoteError, ReplySink};
use crate::supervision::{Failure, SupervisionEvent};
use crate::{registry, spawn, ActorId, Proc, ProcId};

/// Transport settings of a process.
#[derive(Clone, Debug)]
pub(crate) struct NetConfig {
    pub(crate) heartbeat: Heartbeat,
    pub(crate) max_frame: usize,
    pub(crate) bind: SocketAddr,
    /// Whether links to processes on this host use the Unix socket path
    /// (`MONARCH_TRANSPORT=quic` turns it off).
    pub(crate) same_host: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        let millis = |var: &str, default: u64| {
            std::env::var(var)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_millis(default))
        };
        let timeout = millis("MONARCH_HEARTBEAT_TIMEOUT_MS", 3000);
        NetConfig {
            heartbeat: Heartbeat {
                interval: (timeout / 6).max(Duration::from_millis(10)),
                timeout,
            },
            max_frame: std::env::var("MONARCH_MAX_FRAME_BYTES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_MAX_FRAME),
            bind: std::env::var("MONARCH_BIND")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            same_host: std::env::var("MONARCH_TRANSPORT").map_or(true, |t| t != "quic"),
        }
    }
}

/// Starting the transport failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The job credential could not be made or loaded.
    #[error(transparent)]
    Credential(#[from] super::credential::CredentialError),
    /// The listening socket could not be opened.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address asked for (set `MONARCH_BIND` to change it).
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Called with a supervision event for a remote actor this process owns.
pub(crate) type SupervisionSink = Arc<dyn Fn(SupervisionEvent) + Send + Sync>;

/// A connection past its handshake, with what was read after the hello.
enum Connection {
    /// A QUIC stream's two halves.
    Quic(quinn::SendStream, quinn::RecvStream, FrameDecoder),
    /// A same-host socket.
    Local(tokio::net::UnixStream, FrameDecoder),
}

impl Connection {
    /// Runs `link` over this connection until it closes.
    async fn run(
        self,
        link: &Arc<Link>,
        queue: Queue,
        heartbeat: Heartbeat,
        inbound: Arc<dyn Inbound>,
    ) {
        match self {
            Connection::Quic(send, recv, decoder) => {
                link.run(recv, send, decoder, queue, heartbeat, inbound)
                    .await
            }
            Connection::Local(socket, decoder) => {
                link.run_local(socket, decoder, queue, heartbeat, inbound)
                    .await
            }
        }
    }
}

pub(crate) struct Router {
    credential: Credential,
    proof_key: ring::hmac::Key,
    endpoint: quinn::Endpoint,
    addr: String,
    identity: ProcId,
    config: NetConfig,
    /// The proc that spawn requests create actors in.
    host_proc: Proc,
    links: Mutex<HashMap<String, Arc<Link>>>,
    hello_waiters: Mutex<HashMap<ProcId, oneshot::Sender<Arc<Link>>>>,
    owners: Mutex<HashMap<ActorId, (String, SupervisionSink)>>,
    /// The job's singletons by name: their type and id.
    singletons: tokio::sync::Mutex<HashMap<String, (String, ActorId)>>,
    /// In a worker: the link to the controller, whose loss ends the process.
    controller: OnceLock<Arc<Link>>,
    /// Casts forwarded from here and still gathered for.
    pub(crate) casts: Casts,
    /// The order of messages from each origin process, by its address.
    orders: Mutex<HashMap<String, Arc<OrderSlot>>>,
}

static ROUTER: OnceLock<Arc<Router>> = OnceLock::new();

/// The router, if this process has started one.
pub(crate) fn router() -> Option<&'static Arc<Router>> {
    ROUTER.get()
}

/// Starts this process's router, once: with `credential` (minted if `None`),
/// serving spawn requests in `host_proc`. Later calls return the first router.
pub(crate) fn start_router(
    credential: Option<Credential>,
    host_proc: &Proc,
) -> Result<&'static Arc<Router>, TransportError> {
    static START: Mutex<()> = Mutex::new(());
    let _guard = START
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(router) = ROUTER.get() {
        return Ok(router);
    }
    let credential = match credential {
        Some(c) => c,
        None => Credential::mint()?,
    };
    let config = NetConfig::default();
    let mut endpoint =
        quinn::Endpoint::server(credential.quic_server()?, config.bind).map_err(|source| {
            TransportError::Bind {
                addr: config.bind,
                source,
            }
        })?;
    endpoint.set_default_client_config(credential.quic_client()?);
    let socket = endpoint
        .local_addr()
        .map_err(|source| TransportError::Bind {
            addr: config.bind,
            source,
        })?;
    let incarnation = format!("{:016x}", incarnation());
    let addr = format!("{socket}/{incarnation}");
    let local = if config.same_host {
        match super::local::listen(&incarnation) {
            Ok(listener) => Some(listener),
            Err(error) => {
                tracing::info!(%error, "no same-host socket; using QUIC only");
                None
            }
        }
    } else {
        None
    };
    let router = Arc::new(Router {
        proof_key: credential.proof_key(),
        credential,
        endpoint: endpoint.clone(),
        addr,
        identity: host_proc.proc_id().clone(),
        config,
        host_proc: host_proc.clone(),
        links: Mutex::new(HashMap::new()),
        hello_waiters: Mutex::new(HashMap::new()),
        owners: Mutex::new(HashMap::new()),
        singletons: tokio::sync::Mutex::new(HashMap::new()),
        controller: OnceLock::new(),
        casts: Casts::default(),
        orders: Mutex::new(HashMap::new()),
    });
    let _ = ROUTER.set(Arc::clone(&router));
    let accepting = Arc::clone(&router);
    tokio::spawn(async move { accepting.accept_loop(endpoint).await });
    if let Some(listener) = local {
        let accepting = Arc::clone(&router);
        tokio::spawn(async move { accepting.accept_local_loop(listener).await });
    }
    tracing::debug!(addr = %router.addr, "router listening");
    Ok(ROUTER.get().expect("just set"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Router {
    /// The address peers reach this process at.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn credential(&self) -> &Credential {
        &self.credential
    }

    /// The link to the process listening at `addr`, connecting if there is none.
    /// A link that closed stays closed: its process is considered lost.
    pub(crate) fn link(self: &Arc<Self>, addr: &str) -> Arc<Link> {
        let mut links = lock(&self.links);
        if let Some(link) = links.get(addr) {
            return Arc::clone(link);
        }
        let (link, queue) = Link::new(addr.to_string());
        links.insert(addr.to_string(), Arc::clone(&link));
        drop(links);
        let router = Arc::clone(self);
        let dialing = Arc::clone(&link);
        tokio::spawn(async move {
            let inbound: Arc<dyn Inbound> = router.clone();
            match router.dial(dialing.peer()).await {
                Ok(connection) => {
                    connection
                        .run(&dialing, queue, router.config.heartbeat, inbound)
                        .await
                }
                Err(reason) => dialing.close(&reason, &inbound),
            }
        });
        link
    }

    /// The order of messages from the process at `origin`.
    pub(crate) fn order_of(&self, origin: &str) -> Arc<OrderSlot> {
        Arc::clone(lock(&self.orders).entry(origin.to_string()).or_default())
    }

    /// Hands `item`, message `seq` of an origin with the order `slot`, on in
    /// its turn.
    pub(crate) fn ordered(&self, slot: &OrderSlot, seq: u64, item: Ordered) {
        let late = lock(slot).accept(seq, item, Ordered::handle);
        if let Some(item) = late {
            item.reject();
        }
    }

    /// The order of messages from the peer of `link`.
    fn order_from<'a>(&self, link: &'a Link) -> &'a Arc<OrderSlot> {
        link.order(|| self.order_of(link.peer()))
    }

    /// Closes the link to `addr` (if any) for `reason`.
    pub(crate) fn close_link(self: &Arc<Self>, addr: &str, reason: &str) {
        let link = lock(&self.links).get(addr).cloned();
        if let Some(link) = link {
            let inbound: Arc<dyn Inbound> = self.clone();
            link.close(reason, &inbound);
        }
    }

    /// Waits for the worker `proc` to connect and introduce itself.
    pub(crate) fn expect_hello(&self, proc: ProcId) -> oneshot::Receiver<Arc<Link>> {
        let (tx, rx) = oneshot::channel();
        lock(&self.hello_waiters).insert(proc, tx);
        rx
    }

    /// Routes supervision events for the remote actor `actor`, living at `addr`,
    /// to `sink`; also when its process is lost.
    pub(crate) fn watch(&self, actor: ActorId, addr: String, sink: SupervisionSink) {
        lock(&self.owners).insert(actor, (addr, sink));
    }

    /// Stops routing events for `actor` (its mesh is being stopped on purpose).
    pub(crate) fn unwatch(&self, actor: &ActorId) {
        lock(&self.owners).remove(actor);
    }

    /// Stops routing events for every actor living at one of `peers` (their
    /// procs are being stopped on purpose).
    pub(crate) fn forget_owned_by<'a>(&self, peers: impl Iterator<Item = &'a str>) {
        let peers: Vec<&str> = peers.collect();
        lock(&self.owners).retain(|_, (addr, _)| !peers.contains(&addr.as_str()));
    }

    /// In a worker: remembers the controller's link; losing it ends the process.
    pub(crate) fn set_controller(&self, link: Arc<Link>) {
        let _ = self.controller.set(link);
    }

    /// In a worker: the controller's link.
    pub(crate) fn controller(&self) -> Option<&Arc<Link>> {
        self.controller.get()
    }

    /// Returns the job's singleton `name`, spawning it in this process with
    /// `params` if it does not exist yet.
    pub(crate) async fn get_or_spawn_local(
        &self,
        type_key: &str,
        name: &str,
        params: Bytes,
    ) -> Result<ActorId, RemoteError> {
        let mut singletons = self.singletons.lock().await;
        if let Some((existing, id)) = singletons.get(name) {
            if existing != type_key {
                return Err(RemoteError::Failed(format!(
                    "the job's singleton `{name}` is a {existing}, not a {type_key}"
                )));
            }
            if registry::is_running(id) {
                return Ok(id.clone());
            }
        }
        let id = spawn::spawn_registered(crate::this_proc(), type_key, name, params, 0).await?;
        singletons.insert(name.to_string(), (type_key.to_string(), id.clone()));
        Ok(id)
    }

    /// Connects to `addr`: through the same-host socket when the peer is on
    /// this host and reachable there, else over QUIC.
    async fn dial(&self, addr: &str) -> Result<Connection, String> {
        let socket = socket_of(addr)?;
        let handshake = async {
            if self.config.same_host && socket.ip().is_loopback() {
                if let Some(halves) = self.dial_local(addr).await? {
                    return Ok(halves);
                }
            }
            self.dial_quic(addr, socket).await
        };
        tokio::time::timeout(self.config.heartbeat.timeout * 4, handshake)
            .await
            .map_err(|_| format!("connecting to {addr} timed out"))?
    }

    /// `Ok(None)` when the peer has no same-host socket.
    async fn dial_local(&self, addr: &str) -> Result<Option<Connection>, String> {
        let incarnation = addr.split('/').nth(1).unwrap_or_default();
        let Ok(mut stream) = super::local::connect(incarnation).await else {
            return Ok(None);
        };
        super::local::widen_buffers(&stream);
        super::local::authenticate(&mut stream, &self.proof_key).await?;
        self.say_hello(&mut stream).await?;
        let (_, decoder) = self.read_hello(&mut stream).await?;
        Ok(Some(Connection::Local(stream, decoder)))
    }

    async fn dial_quic(&self, addr: &str, socket: SocketAddr) -> Result<Connection, String> {
        let connection = self
            .endpoint
            .connect(socket, SERVER_NAME)
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?
            .await
            .map_err(|e| format!("handshake with {addr} failed: {e}"))?;
        let (mut send, recv) = connection
            .open_bi()
            .await
            .map_err(|e| format!("cannot open a stream to {addr}: {e}"))?;
        self.say_hello(&mut send).await?;
        let mut recv = recv;
        let (_, decoder) = self.read_hello(&mut recv).await?;
        Ok(Connection::Quic(send, recv, decoder))
    }

    async fn say_hello(&self, send: &mut (impl AsyncWrite + Unpin)) -> Result<(), String> {
        let mut hello = BytesMut::new();
        encode_prefix(
            &Header::Hello {
                proc: self.identity.clone(),
                addr: Some(self.addr.clone()),
            },
            0,
            &mut hello,
        );
        send.write_all(&hello)
            .await
            .map_err(|e| format!("cannot send hello: {e}"))?;
        send.flush()
            .await
            .map_err(|e| format!("cannot send hello: {e}"))
    }

    async fn read_hello(
        &self,
        recv: &mut (impl AsyncRead + Unpin),
    ) -> Result<((ProcId, String), FrameDecoder), String> {
        let mut decoder = FrameDecoder::new(self.config.max_frame);
        loop {
            match decoder.next_frame() {
                Ok(Some((
                    Header::Hello {
                        proc,
                        addr: Some(addr),
                    },
                    _,
                ))) => return Ok(((proc, addr), decoder)),
                Ok(Some((other, _))) => return Err(format!("expected a hello, got {other:?}")),
                Ok(None) => {}
                Err(e) => return Err(format!("malformed hello: {e}")),
            }
            match recv.read_buf(decoder.buffer()).await {
                Ok(0) => return Err("the peer closed before its hello".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("reading hello: {e}")),
            }
        }
    }

    async fn accept_loop(self: Arc<Self>, endpoint: quinn::Endpoint) {
        while let Some(incoming) = endpoint.accept().await {
            let router = Arc::clone(&self);
            tokio::spawn(async move {
                if let Err(reason) = router.accept(incoming).await {
                    tracing::warn!(%reason, "refused a connection");
                }
            });
        }
    }

    async fn accept(self: &Arc<Self>, incoming: quinn::Incoming) -> Result<(), String> {
        let remote = incoming.remote_address();
        let handshake = async {
            let connection = incoming
                .await
                .map_err(|e| format!("handshake from {remote} failed: {e}"))?;
            let (mut send, recv) = connection
                .accept_bi()
                .await
                .map_err(|e| format!("no stream from {remote}: {e}"))?;
            let mut recv = recv;
            let (peer, decoder) = self.read_hello(&mut recv).await?;
            self.say_hello(&mut send).await?;
            Ok::<_, String>((Connection::Quic(send, recv, decoder), peer))
        };
        let (connection, peer) = tokio::time::timeout(self.config.heartbeat.timeout * 4, handshake)
            .await
            .map_err(|_| format!("handshake from {remote} timed out"))??;
        self.serve_accepted(connection, peer).await;
        Ok(())
    }

    async fn accept_local_loop(self: Arc<Self>, listener: tokio::net::UnixListener) {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "same-host accept failed");
                    continue;
                }
            };
            let router = Arc::clone(&self);
            tokio::spawn(async move {
                if let Err(reason) = router.accept_local(stream).await {
                    tracing::warn!(%reason, "refused a same-host connection");
                }
            });
        }
    }

    async fn accept_local(
        self: &Arc<Self>,
        mut stream: tokio::net::UnixStream,
    ) -> Result<(), String> {
        super::local::widen_buffers(&stream);
        let handshake = async {
            super::local::authenticate(&mut stream, &self.proof_key).await?;
            let (peer, decoder) = self.read_hello(&mut stream).await?;
            self.say_hello(&mut stream).await?;
            Ok::<_, String>((decoder, peer))
        };
        let (decoder, peer) = tokio::time::timeout(self.config.heartbeat.timeout * 4, handshake)
            .await
            .map_err(|_| "same-host handshake timed out".to_string())??;
        self.serve_accepted(Connection::Local(stream, decoder), peer)
            .await;
        Ok(())
    }

    /// Registers an accepted, introduced connection as the link to its peer
    /// (unless one is already open) and runs it.
    async fn serve_accepted(
        self: &Arc<Self>,
        connection: Connection,
        (proc, addr): (ProcId, String),
    ) {
        let (link, queue) = Link::new(addr.clone());
        {
            let mut links = lock(&self.links);
            let replace = links.get(&addr).is_none_or(|l| l.is_closed());
            if replace {
                links.insert(addr, Arc::clone(&link));
            }
        }
        if let Some(waiter) = lock(&self.hello_waiters).remove(&proc) {
            let _ = waiter.send(Arc::clone(&link));
        }
        let inbound: Arc<dyn Inbound> = self.clone();
        connection
            .run(&link, queue, self.config.heartbeat, inbound)
            .await;
    }

    fn supervision(&self, event: SupervisionEvent) {
        let sink = lock(&self.owners).remove(&event.actor).map(|(_, s)| s);
        match sink {
            Some(sink) => sink(event),
            None => tracing::error!(%event, "supervision event for an actor nobody here owns"),
        }
    }
}

impl Inbound for Router {
    fn frame(&self, link: &Arc<Link>, header: Header, body: Bytes) {
        match header {
            Header::Message {
                to,
                endpoint,
                reply,
                segments,
                seq,
            } => {
                let sink = reply.map(|id| link.reply_sink(id));
                let releasing = Arc::clone(link);
                let released = move |lease| {
                    releasing.send(Header::SegmentReleased { lease }, Bytes::new());
                };
                match crate::remote::Payload::split(body, &segments, released) {
                    Ok(payload) => {
                        let item = Ordered::Message {
                            to,
                            endpoint,
                            payload,
                            reply: sink,
                        };
                        self.ordered(self.order_from(link), seq, item);
                    }
                    Err(error) => {
                        fail(sink, error);
                        // Later messages are not held for this one.
                        lock(self.order_from(link)).skip(seq, Ordered::handle);
                    }
                }
            }
            Header::Cast(frame) => super::cast::relay(link, frame, body),
            Header::CastReply { cast, rank, result } => {
                self.casts.reply(cast, rank, result.map(|()| body))
            }
            Header::CastDelivered { cast, lost } => self.casts.delivered(cast, lost),
            Header::Skip { seq } => {
                let mut order = lock(self.order_from(link));
                order.skip(seq, Ordered::handle);
            }
            Header::Stop { actor, ack, seq } => {
                let item = Ordered::Stop {
                    actor,
                    link: Arc::clone(link),
                    ack,
                };
                self.ordered(self.order_from(link), seq, item);
            }
            Header::PortValue { port } => registry::deliver_port(port, body),
            Header::PortDropped { port } => registry::release_port(port, link.peer()),
            Header::SegmentReleased { lease } => link.segment_released(lease),
            Header::PortHold { port, holder } => registry::add_port_holder(port, &holder),
            Header::Spawn {
                type_key,
                name,
                rank,
                reply,
            } => {
                let link = Arc::clone(link);
                let proc = self.host_proc.clone();
                tokio::spawn(async move {
                    let spawned =
                        spawn::spawn_registered(&proc, &type_key, &name, body, rank).await;
                    link.reply(reply, spawned.and_then(|id| encode(&id)));
                });
            }
            Header::GetOrSpawn {
                type_key,
                name,
                reply,
            } => {
                let link = Arc::clone(link);
                let router = ROUTER.get().map(Arc::clone);
                tokio::spawn(async move {
                    let result = match router {
                        Some(router) => router.get_or_spawn_local(&type_key, &name, body).await,
                        None => Err(RemoteError::Failed("no router".into())),
                    };
                    link.reply(reply, result.and_then(|id| encode(&id)));
                });
            }
            Header::Supervision { event } => self.supervision(event),
            Header::StopProc { ack, seq } => {
                let item = Ordered::StopProc {
                    proc: self.host_proc.clone(),
                    link: Arc::clone(link),
                    ack,
                };
                self.ordered(self.order_from(link), seq, item);
            }
            Header::Hello { .. } | Header::Reply { .. } | Header::Ping | Header::Pong => {
                tracing::warn!(peer = %link.peer(), "unexpected frame after the handshake");
            }
        }
    }

    fn closed(&self, link: &Arc<Link>, reason: &str) {
        registry::release_ports_of(link.peer());
        self.casts.links_lost();
        let peer_gone = lock(&self.links)
            .get(link.peer())
            .is_none_or(|l| l.is_closed());
        if peer_gone {
            let order = lock(&self.orders).get(link.peer()).cloned();
            if let Some(order) = order {
                lock(&order).close(Ordered::handle);
            }
        }
        let lost: Vec<(ActorId, SupervisionSink)> = {
            let mut owners = lock(&self.owners);
            let ids: Vec<ActorId> = owners
                .iter()
                .filter(|(_, (addr, _))| addr == link.peer())
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter()
                .filter_map(|id| owners.remove(&id).map(|(_, sink)| (id, sink)))
                .collect()
        };
        for (actor, sink) in lost {
            sink(SupervisionEvent {
                actor,
                endpoint: None,
                failure: Failure::ProcLost(reason.to_string()),
                caused_by: None,
            });
        }
        if self
            .controller
            .get()
            .is_some_and(|controller| Arc::ptr_eq(controller, link))
        {
            tracing::error!(%reason, "lost the controller; exiting");
            std::process::exit(0);
        }
    }
}

/// A number that tells this process apart from any other that listens, or
/// will listen, on the same port: process addresses are `socket/incarnation`,
/// so a link to a process that is gone is never mistaken for one to its
/// successor on a reused port.
fn incarnation() -> u64 {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    std::collections::hash_map::RandomState::new().hash_one((std::process::id(), nanos))
}

/// The socket address of a process address.
fn socket_of(addr: &str) -> Result<SocketAddr, String> {
    addr.split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("bad peer address {addr}: {e}"))
}

/// Tries to join the process listening at `addr` without the job credential,
/// as an intruder would, on both paths: over QUIC with a certificate of its
/// own, and through the same-host socket with a key of its own. `Ok` means the
/// peer let it in on either, which it must never do; the error says how each
/// attempt was refused.
pub async fn probe_as_intruder(addr: &str) -> Result<(), String> {
    let quic = probe_quic(addr).await;
    let local = probe_local(addr).await;
    match (quic, local) {
        (Err(q), Err(l)) => Err(format!("QUIC: {q}; same-host: {l}")),
        _ => Ok(()),
    }
}

async fn probe_local(addr: &str) -> Result<(), String> {
    let incarnation = addr.split('/').nth(1).unwrap_or_default();
    let mut stream = super::local::connect(incarnation)
        .await
        .map_err(|e| format!("no same-host socket ({e})"))?;
    let own = Credential::mint().map_err(|e| e.to_string())?.proof_key();
    let attempt = super::local::authenticate(&mut stream, &own);
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| Err("no answer".to_string()))
        .map_err(|e| format!("refused: {e}"))
}

async fn probe_quic(addr: &str) -> Result<(), String> {
    let socket = socket_of(addr)?;
    let config = super::credential::intruder_client().map_err(|e| e.to_string())?;
    let endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| e.to_string())?;
    let attempt = async {
        let connection = endpoint
            .connect_with(config, socket, SERVER_NAME)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| format!("handshake refused: {e}"))?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        let mut hello = BytesMut::new();
        encode_prefix(
            &Header::Hello {
                proc: ProcId::new("intruder", "nowhere", 0),
                addr: Some("127.0.0.1:9".into()),
            },
            0,
            &mut hello,
        );
        send.write_all(&hello).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        match recv.read(&mut buf).await {
            Ok(Some(n)) if n > 0 => Ok(()),
            Ok(_) => Err("the peer closed the stream".to_string()),
            Err(e) => Err(format!("refused: {e}")),
        }
    };
    let result = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| Err("no answer".to_string()));
    endpoint.close(0u32.into(), b"done");
    result
}

/// A sink that fails a call with `error`.
pub(crate) fn fail(sink: Option<ReplySink>, error: RemoteError) {
    if let Some(sink) = sink {
        sink.complete(Err(error));
    }
}
