//! The router: this process's place in the job. It keeps one link per peer
//! process (the link table), hands the frames its links receive to the
//! runtime in their origin's order, and is the runtime's [`Network`].
//!
//! Connecting and accepting are in [`super::connect`], casts in
//! [`super::cast`]; what a worker does when its controller is lost, and who
//! owns the actors of a proc, are the host layer's.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::bulk::BulkStream;
use super::credential::JobCredential;
use super::error::CloseReason;
use super::link::{Inbound, Link};
use super::order::{OrderSlot, Ordered};
use super::LinkSettings;
use crate::runtime::actor::Undeliverable;
use crate::runtime::mailbox::ReturnAddress;
use crate::runtime::registry;
use crate::runtime::remote::{Network, Outbound, ReplySink};
use crate::wire::cast::CastTable;
use crate::wire::codec::{split_body, Received, Segment, SplitBody};
use crate::wire::frame::Header;
use crate::wire::{Payload, RemoteError};
use crate::{Config, ProcId};

/// This process's transport.
pub(crate) struct Router {
    pub(crate) me: Weak<Router>,
    pub(crate) config: Config,
    pub(crate) credential: JobCredential,
    pub(crate) proof_key: ring::hmac::Key,
    pub(crate) endpoint: quinn::Endpoint,
    /// The address peers reach this process at: `ip:port/incarnation`.
    pub(crate) addr: Arc<str>,
    /// This process's own proc.
    pub(crate) identity: ProcId,
    links: Mutex<HashMap<String, Arc<Link>>>,
    hello_waiters: Mutex<HashMap<ProcId, oneshot::Sender<Arc<Link>>>>,
    casts: Mutex<CastTable<Arc<Link>, ReplySink>>,
    /// The order of messages from each origin process, by its address.
    orders: Mutex<HashMap<String, Arc<OrderSlot>>>,
    /// Where bulk streams for each protocol go.
    pub(crate) bulk: Mutex<HashMap<String, mpsc::UnboundedSender<BulkStream>>>,
    /// How many casts this process has sent through a tree.
    pub(crate) casts_started: AtomicU64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Router {
    /// A router with these parts, not yet accepting.
    pub(crate) fn new(
        config: Config,
        credential: JobCredential,
        endpoint: quinn::Endpoint,
        addr: String,
        identity: ProcId,
    ) -> Arc<Router> {
        Arc::new_cyclic(|me| Router {
            me: me.clone(),
            proof_key: credential.proof_key(),
            config,
            credential,
            endpoint,
            addr: addr.into(),
            identity,
            links: Mutex::new(HashMap::new()),
            hello_waiters: Mutex::new(HashMap::new()),
            casts: Mutex::new(CastTable::default()),
            orders: Mutex::new(HashMap::new()),
            bulk: Mutex::new(HashMap::new()),
            casts_started: AtomicU64::new(0),
        })
    }

    /// The address peers reach this process at.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// This router, owned.
    pub(crate) fn arc(&self) -> Arc<Router> {
        self.me.upgrade().expect("a router in use is alive")
    }

    /// What every link of this process is set up with.
    pub(crate) fn link_settings(&self) -> LinkSettings {
        LinkSettings::from(&self.config)
    }

    /// The link to the process listening at `addr`, connecting if there is none.
    /// A link that closed stays closed: its process is considered lost.
    pub(crate) fn link(self: &Arc<Self>, addr: &str) -> Arc<Link> {
        let mut links = lock(&self.links);
        if let Some(link) = links.get(addr) {
            return Arc::clone(link);
        }
        let (link, queue) = Link::new(
            addr.to_string(),
            Arc::clone(&self.addr),
            self.link_settings(),
        );
        links.insert(addr.to_string(), Arc::clone(&link));
        drop(links);
        let router = Arc::clone(self);
        let dialing = Arc::clone(&link);
        tokio::spawn(async move {
            let inbound: Arc<dyn Inbound> = router.clone();
            match router.dial(dialing.peer()).await {
                Ok(connection) => connection.run(&dialing, queue, inbound).await,
                Err(error) => dialing.close(CloseReason::Connect(error), &inbound),
            }
        });
        link
    }

    /// The link to `addr` if there is one.
    pub(crate) fn existing_link(&self, addr: &str) -> Option<Arc<Link>> {
        lock(&self.links).get(addr).cloned()
    }

    /// Makes `link` the link to its peer unless an open one is there already;
    /// wakes whoever waits for the hello of `proc`.
    pub(crate) fn adopt(&self, link: &Arc<Link>, proc: &ProcId) {
        {
            let mut links = lock(&self.links);
            let replace = links.get(link.peer()).is_none_or(|l| l.is_closed());
            if replace {
                links.insert(link.peer().to_string(), Arc::clone(link));
            }
        }
        if let Some(waiter) = lock(&self.hello_waiters).remove(proc) {
            let _ = waiter.send(Arc::clone(link));
        }
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
    pub(crate) fn close_link(self: &Arc<Self>, addr: &str, reason: CloseReason) {
        if let Some(link) = self.existing_link(addr) {
            let inbound: Arc<dyn Inbound> = self.clone();
            link.close(reason, &inbound);
        }
    }

    /// Waits for the process of `proc` to connect and introduce itself.
    pub(crate) fn expect_hello(&self, proc: ProcId) -> oneshot::Receiver<Arc<Link>> {
        let (tx, rx) = oneshot::channel();
        lock(&self.hello_waiters).insert(proc, tx);
        rx
    }

    pub(crate) fn lock_casts(&self) -> std::sync::MutexGuard<'_, CastTable<Arc<Link>, ReplySink>> {
        lock(&self.casts)
    }

    /// The payload of a message body with `segments`, mapping shared ones.
    pub(crate) fn payload(
        &self,
        from: &Arc<Link>,
        body: Bytes,
        segments: &[Segment],
    ) -> Result<Payload, RemoteError> {
        let releaser = |lease: u64| {
            let from = Arc::clone(from);
            move || {
                from.send(Header::SegmentReleased { lease }, Bytes::new());
            }
        };
        let SplitBody { args, parts } = split_body(body, segments).map_err(|bad| {
            for part in bad.shared {
                if let Received::Shared { lease, .. } = part {
                    releaser(lease)();
                }
            }
            bad.error
        })?;
        let mut result = Ok(Vec::with_capacity(parts.len()));
        // Every shared segment is mapped or released, even after an error.
        for part in parts {
            let bytes = match part {
                Received::Inline(bytes) => Ok(bytes),
                Received::Shared {
                    pid,
                    fd,
                    len,
                    lease,
                } => super::segments::map(pid, fd, len, Box::new(releaser(lease)))
                    .map_err(|e| RemoteError::Codec(format!("cannot map a shared segment: {e}"))),
            };
            match (&mut result, bytes) {
                (Ok(all), Ok(bytes)) => all.push(bytes),
                (Ok(_), Err(error)) => result = Err(error),
                (Err(_), _) => {}
            }
        }
        result.map(|segments| Payload { args, segments })
    }

    /// How many subtrees of casts sent or relayed from here still owe
    /// replies or delivery reports.
    #[cfg(feature = "testing")]
    pub(crate) fn casts_in_flight(&self) -> usize {
        self.lock_casts().in_flight()
    }
}

impl Inbound for Router {
    fn frame(&self, link: &Arc<Link>, header: Header, body: Bytes) {
        let me = self.arc();
        match header {
            Header::Message {
                to,
                endpoint,
                reply,
                sender,
                segments,
                seq,
                cast,
            } => {
                let sink = reply.map(|id| link.reply_sink(id));
                let sender: Option<ReturnAddress> = sender.map(|tag| link.sender(tag));
                match me.payload(link, body, &segments) {
                    Ok(payload) => {
                        let item = Ordered::Message {
                            to,
                            endpoint,
                            payload,
                            reply: sink,
                            sender,
                            cast,
                        };
                        self.ordered(self.order_from(link), seq, item);
                    }
                    Err(error) => {
                        crate::runtime::remote::fail(sink, error);
                        // Later messages are not held for this one.
                        lock(self.order_from(link)).skip(seq, Ordered::handle);
                    }
                }
            }
            Header::Undeliverable {
                sender,
                to,
                endpoint,
                reason,
            } => ReturnAddress::report_tag(sender, Undeliverable::new(to, &endpoint, reason)),
            Header::Cast(frame) => me.relay(link, frame, body),
            Header::CastReply { cast, rank, result } => {
                me.cast_reply(cast, rank, result.map(|()| body))
            }
            Header::CastDelivered { cast, lost } => me.cast_delivered(cast, lost),
            Header::Skip { seq } => lock(self.order_from(link)).skip(seq, Ordered::handle),
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
            Header::Hello(_)
            | Header::Reply { .. }
            | Header::Close { .. }
            | Header::Ping
            | Header::Pong => {
                tracing::warn!(peer = %link.peer(), "unexpected frame after the handshake");
            }
        }
    }

    fn closed(&self, link: &Arc<Link>, _reason: &CloseReason) {
        registry::release_ports_of(link.peer());
        self.arc().cast_links_lost();
        let peer_gone = lock(&self.links)
            .get(link.peer())
            .is_none_or(|l| l.is_closed());
        if peer_gone {
            let order = lock(&self.orders).get(link.peer()).cloned();
            if let Some(order) = order {
                lock(&order).close(Ordered::handle);
            }
        }
    }
}

impl Network for Router {
    fn local_addr(&self) -> &str {
        &self.addr
    }

    fn outbound(&self, addr: &str) -> Arc<dyn Outbound> {
        self.arc().link(addr)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
