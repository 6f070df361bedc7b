//! A link: one long-lived, multiplexed byte stream to another process, carrying
//! frames both ways, driven by a [`Session`].
//!
//! Sending never blocks: frames go onto the link's queue in order and a writer
//! task batches whatever has queued up into few large writes; on a same-host
//! socket a small frame sent while nothing is queued is written by the sender
//! itself. A reader task cuts the incoming stream into frames, completes the
//! replies its session matches, answers pings, wakes for the session's
//! heartbeat timer, and hands everything else to the [`Inbound`] handler. The
//! link closes, failing everything its session waits for with the reason,
//! when the stream ends or errs, a frame is malformed, or the session finds the
//! peer silent for too long.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, Notify};

mod outbound;
mod writer;

use super::error::CloseReason;
use super::segments::Leased;
use super::LinkSettings;
use crate::runtime::actor::Undeliverable;
use crate::runtime::mailbox::ReturnAddress;
use crate::runtime::remote::{Audience, ReplySink};
use crate::wire::codec::Segment;
use crate::wire::frame::{encode_prefix, FrameDecoder, Header, PREFIX};
use crate::wire::session::{Heartbeat, Session, Timeout};
use crate::wire::{Payload, RemoteError};
use writer::{write_loop, SharedSocket, WritePart};

/// What a link hands upwards.
pub(crate) trait Inbound: Send + Sync + 'static {
    /// A frame that is not a reply, ping or pong.
    fn frame(&self, link: &Arc<Link>, header: Header, body: Bytes);
    /// The link closed for `reason`.
    fn closed(&self, link: &Arc<Link>, reason: &CloseReason);
}

/// What the writer task is asked to write: a frame, or the unwritten rest of
/// a frame a sender began writing itself.
pub(crate) enum Outgoing {
    Frame(Header, Payload),
    Rest(Bytes),
}

/// The queue of a link's writer task.
pub(crate) type Queue = mpsc::UnboundedReceiver<Outgoing>;

/// Says why a link to a child process closed, when the peer only ended the
/// connection: its parent knows how the process ended (its exit status), and
/// that is the reason calls and supervision events should give.
pub(crate) type Referee =
    Box<dyn Fn(CloseReason) -> Pin<Box<dyn Future<Output = CloseReason> + Send>> + Send + Sync>;

/// What a connected link runs over.
pub(crate) enum ConnectionKind {
    /// The same-host socket.
    Local,
    /// A QUIC connection, on which more streams can be opened.
    Quic(quinn::Connection),
}

/// One link to a peer process, keyed by the peer's listen address.
pub(crate) struct Link {
    peer: String,
    /// The address this process is known by.
    local: Arc<str>,
    /// Who reads what is sent over the link: this process and the peer.
    audience: Audience,
    settings: LinkSettings,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    /// Items in the writer's queue not yet written out.
    queued: AtomicUsize,
    /// On a same-host link: the socket, which a sender may write a small frame
    /// to itself when nothing is queued, sparing a wake-up of the writer task.
    direct: OnceLock<Direct>,
    /// On a QUIC link: the connection, on which bulk streams are opened.
    quic: OnceLock<quinn::Connection>,
    /// Woken when the link starts running over a connection, or closes.
    ready: Notify,
    /// The proc at the other end, once its hello is in.
    peer_proc: OnceLock<crate::ProcId>,
    /// The largest frame the peer takes, once its hello is in.
    peer_max_frame: AtomicUsize,
    /// For a link to a child process: who says why it closed.
    referee: OnceLock<Referee>,
    /// Shared-memory segments sent over this link and not yet released by the
    /// peer, by lease.
    shared: Mutex<HashMap<u64, Leased>>,
    next_lease: AtomicU64,
    session: Mutex<Session<ReplySink>>,
    /// Return addresses made here for the peer's actors that tell messages,
    /// by the tag the peer gave each.
    senders: Mutex<HashMap<u64, ReturnAddress>>,
    /// The order of messages from the peer's process, shared with the relays
    /// that bring casts from it.
    order: OnceLock<Arc<super::order::OrderSlot>>,
    closed: AtomicBool,
    close_notify: Notify,
    reason: OnceLock<CloseReason>,
}

struct Direct {
    socket: Arc<UnixStream>,
    /// Held while deciding between a direct write and the queue, so bytes of
    /// two frames never interleave. It holds when the last direct write was.
    lock: Mutex<Option<Instant>>,
}

/// Frames up to this size may be written by the sender itself.
const DIRECT_LIMIT: usize = 16 * 1024;

/// A frame sent this soon after a direct write is part of a burst: it goes to
/// the writer task, which batches the burst into few writes, rather than
/// costing a system call of its own.
const BURST: Duration = Duration::from_micros(25);

/// Frames above this size are written on their own, not copied into a batch.
const BATCH_LIMIT: usize = 256 * 1024;

/// The most a frame header may take: anything larger is refused before it is
/// sent.
const HEADER_ALLOWANCE: usize = 64 * 1024;

impl Link {
    /// A link whose stream is not connected yet: frames queue until
    /// [`Link::run`] is given the stream.
    pub(crate) fn new(peer: String, local: Arc<str>, settings: LinkSettings) -> (Arc<Link>, Queue) {
        let (outgoing, queue) = mpsc::unbounded_channel();
        let heartbeat = Heartbeat {
            interval: settings.heartbeat_interval,
            timeout: settings.heartbeat_timeout,
        };
        let audience = Audience {
            local: Arc::clone(&local),
            holders: Arc::from([Arc::from(peer.as_str())]),
        };
        let link = Arc::new(Link {
            peer,
            local,
            audience,
            settings,
            outgoing,
            queued: AtomicUsize::new(0),
            direct: OnceLock::new(),
            quic: OnceLock::new(),
            ready: Notify::new(),
            peer_proc: OnceLock::new(),
            peer_max_frame: AtomicUsize::new(usize::MAX),
            referee: OnceLock::new(),
            shared: Mutex::new(HashMap::new()),
            next_lease: AtomicU64::new(1),
            session: Mutex::new(Session::new(heartbeat, Instant::now())),
            senders: Mutex::new(HashMap::new()),
            order: OnceLock::new(),
            closed: AtomicBool::new(false),
            close_notify: Notify::new(),
            reason: OnceLock::new(),
        });
        (link, queue)
    }

    /// The peer's listen address.
    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// The address this process is known by, shared.
    pub(crate) fn local_addr_arc(&self) -> Arc<str> {
        Arc::clone(&self.local)
    }

    /// Numbers the next ordered frame to the peer (see [`Session::next_seq`]).
    pub(crate) fn next_seq(&self) -> u64 {
        self.lock_session().next_seq()
    }

    /// The order of messages from the peer's process, made by `make` on first
    /// use.
    pub(crate) fn order(
        &self,
        make: impl FnOnce() -> Arc<super::order::OrderSlot>,
    ) -> &Arc<super::order::OrderSlot> {
        self.order.get_or_init(make)
    }

    /// The proc at the other end, once its hello is in.
    pub(crate) fn peer_proc(&self) -> Option<crate::ProcId> {
        self.peer_proc.get().cloned()
    }

    /// Lets `referee` say why the link closed when the peer merely ended the
    /// connection.
    pub(crate) fn set_referee(&self, referee: Referee) {
        let _ = self.referee.set(referee);
    }

    /// Records who the peer said it is.
    pub(crate) fn set_peer_proc(&self, proc: crate::ProcId) {
        let _ = self.peer_proc.set(proc);
    }

    /// The peer said, in its hello, how large a frame it takes.
    pub(crate) fn set_peer_max_frame(&self, bytes: u64) {
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        self.peer_max_frame.store(bytes, Ordering::Relaxed);
    }

    /// The most a frame's body may take over this link: within this
    /// process's limit and the peer's, less room for the header.
    pub(crate) fn body_limit(&self) -> usize {
        let peer = self.peer_max_frame.load(Ordering::Relaxed);
        self.settings
            .max_frame
            .min(peer)
            .saturating_sub(HEADER_ALLOWANCE)
    }

    /// Waits until the link runs over a connection: what kind, or `None` if
    /// it closed first.
    pub(crate) async fn connected(&self) -> Option<ConnectionKind> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(connection) = self.quic.get() {
                return Some(ConnectionKind::Quic(connection.clone()));
            }
            if self.direct.get().is_some() {
                return Some(ConnectionKind::Local);
            }
            if self.is_closed() {
                return None;
            }
            notified.await;
        }
    }

    /// Runs the link over a connected stream until it closes. `decoder` may
    /// already hold bytes read during the handshake.
    pub(crate) async fn run<R, W>(
        self: &Arc<Self>,
        reader: R,
        writer: W,
        decoder: FrameDecoder,
        queue: Queue,
        inbound: Arc<dyn Inbound>,
    ) where
        R: AsyncRead + Unpin + Send + 'static,
        W: WritePart + Send + 'static,
    {
        let writing = tokio::spawn(write_loop(Arc::clone(self), writer, queue));
        let reason = self.read_loop(reader, decoder, &inbound).await;
        writing.abort();
        let reason = match (&reason, self.referee.get()) {
            (CloseReason::PeerClosed | CloseReason::ReadFailed(_), Some(referee)) => {
                referee(reason).await
            }
            _ => reason,
        };
        self.close(reason, &inbound);
    }

    /// Runs the link over a QUIC stream of `connection`.
    pub(crate) async fn run_quic(
        self: &Arc<Self>,
        connection: quinn::Connection,
        (send, recv): (quinn::SendStream, quinn::RecvStream),
        decoder: FrameDecoder,
        queue: Queue,
        inbound: Arc<dyn Inbound>,
    ) {
        let _ = self.quic.set(connection);
        self.ready.notify_waiters();
        self.run(recv, send, decoder, queue, inbound).await
    }

    /// Runs the link over a same-host socket, letting senders write small
    /// frames to it directly.
    pub(crate) async fn run_local(
        self: &Arc<Self>,
        socket: UnixStream,
        decoder: FrameDecoder,
        queue: Queue,
        inbound: Arc<dyn Inbound>,
    ) {
        let socket = Arc::new(socket);
        let _ = self.direct.set(Direct {
            socket: Arc::clone(&socket),
            lock: Mutex::new(None),
        });
        self.ready.notify_waiters();
        let reader = SharedSocket(Arc::clone(&socket));
        self.run(reader, SharedSocket(socket), decoder, queue, inbound)
            .await
    }

    /// Sends a frame; `false` if the link is closed.
    pub(crate) fn send(&self, header: Header, body: impl Into<Payload>) -> bool {
        if self.is_closed() {
            return false;
        }
        let body = body.into();
        let Some(direct) = self.direct.get() else {
            return self.enqueue(Outgoing::Frame(header, body));
        };
        let mut last_direct = direct
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The cheap checks first: in a stream of frames the queue is busy and
        // the clock need not be read.
        if self.queued.load(Ordering::Acquire) > 0 || body.len() > DIRECT_LIMIT {
            return self.enqueue(Outgoing::Frame(header, body));
        }
        let now = Instant::now();
        if last_direct.is_some_and(|last| now.duration_since(last) < BURST) {
            return self.enqueue(Outgoing::Frame(header, body));
        }
        *last_direct = Some(now);
        let mut frame = BytesMut::with_capacity(64 + body.len());
        encode_prefix(&header, body.len(), &mut frame);
        for part in std::iter::once(&body.args).chain(&body.segments) {
            frame.extend_from_slice(part);
        }
        match direct.socket.try_write(&frame) {
            Ok(written) if written == frame.len() => true,
            Ok(written) => {
                let _ = frame.split_to(written);
                self.enqueue(Outgoing::Rest(frame.freeze()))
            }
            // Full or failing: the writer task waits for room, or meets the
            // error and closes the link.
            Err(_) => self.enqueue(Outgoing::Rest(frame.freeze())),
        }
    }

    fn enqueue(&self, item: Outgoing) -> bool {
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self.outgoing.send(item).is_ok() {
            true
        } else {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            false
        }
    }

    /// Sends a frame whose reply `sink` waits for: `header` is built around
    /// the request's id. If the link is closed the sink is failed at once.
    pub(crate) fn request(
        &self,
        header: impl FnOnce(u64) -> Header,
        body: impl Into<Payload>,
        sink: ReplySink,
    ) {
        let id = match self.lock_session().request(sink) {
            Ok(id) => id,
            Err(sink) => {
                sink.fail(RemoteError::Unreachable(self.close_reason()));
                return;
            }
        };
        if !self.send(header(id), body) {
            if let Some(sink) = self.lock_session().cancel(id) {
                sink.fail(RemoteError::Unreachable(self.close_reason()));
            }
        }
    }

    /// Sends a reply to request `id`.
    pub(crate) fn reply(&self, id: u64, result: Result<Bytes, RemoteError>) {
        let (result, body) = self.reply_frame(result);
        self.send(Header::Reply { id, result }, body);
    }

    /// A reply's result and body as a frame carries them: a reply too large
    /// for a frame becomes an error saying so, and the link stays up.
    pub(crate) fn reply_frame(
        &self,
        result: Result<Bytes, RemoteError>,
    ) -> (Result<(), RemoteError>, Bytes) {
        let limit = self.body_limit();
        match result {
            Ok(body) if body.len() + PREFIX > limit => {
                let size = body.len() + PREFIX;
                tracing::warn!(size, limit, "a reply over the frame limit was not sent");
                let error = RemoteError::Codec(format!(
                    "the reply is {size} bytes, over the frame limit of {limit} bytes \
                     (Config::max_frame_bytes), so it was not sent"
                ));
                (Err(error), Bytes::new())
            }
            Ok(body) => (Ok(()), body),
            Err(error) => (Err(error), Bytes::new()),
        }
    }

    /// A sink that sends its reply over this link as the answer to `id`.
    pub(crate) fn reply_sink(self: &Arc<Self>, id: u64) -> ReplySink {
        let link = Arc::clone(self);
        ReplySink::for_audience(Audience::of(self.as_ref()), move |result| {
            link.reply(id, result)
        })
    }

    /// Describes `segments` for a message over this link: on a same-host link
    /// large ones move into shared memory (held here until the peer has
    /// released them); the rest stay in the frame and are returned for its
    /// body.
    pub(crate) fn prepare_segments(&self, segments: Vec<Bytes>) -> (Vec<Segment>, Vec<Bytes>) {
        let mut described = Vec::with_capacity(segments.len());
        let mut inline = Vec::new();
        let share = self.direct.get().is_some() && self.settings.shared_memory;
        for segment in segments {
            if share && segment.len() >= self.settings.shared_memory_from {
                match Leased::new(&segment) {
                    Ok(shared) => {
                        let lease = self.next_lease.fetch_add(1, Ordering::Relaxed);
                        described.push(shared.describe(lease));
                        self.lock_shared().insert(lease, shared);
                        continue;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "no shared memory for a segment; sending it inline")
                    }
                }
            }
            described.push(Segment::Inline(segment.len() as u64));
            inline.push(segment);
        }
        (described, inline)
    }

    /// Gives up the shared segments of a frame that is not sent after all.
    fn release_segments(&self, segments: &[Segment]) {
        for segment in segments {
            if let Segment::Shared { lease, .. } = segment {
                self.segment_released(*lease);
            }
        }
    }

    /// The peer is done with the shared segment of `lease`.
    pub(crate) fn segment_released(&self, lease: u64) {
        // The last lease on a segment returns its file to the pool.
        drop(self.lock_shared().remove(&lease));
    }

    fn lock_shared(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Leased>> {
        lock(&self.shared)
    }

    fn lock_session(&self) -> std::sync::MutexGuard<'_, Session<ReplySink>> {
        lock(&self.session)
    }

    /// The local return address standing for the peer's actor that travelled
    /// as `tag`: a tell from it that cannot be delivered here is reported back
    /// over this link.
    pub(crate) fn sender(self: &Arc<Self>, tag: u64) -> ReturnAddress {
        let mut senders = lock(&self.senders);
        *senders.entry(tag).or_insert_with(|| {
            let link = Arc::downgrade(self);
            ReturnAddress::register(move |undeliverable: Undeliverable| {
                if let Some(link) = link.upgrade() {
                    link.send(
                        Header::Undeliverable {
                            sender: tag,
                            to: undeliverable.to,
                            endpoint: undeliverable.endpoint,
                            reason: undeliverable.reason,
                        },
                        Bytes::new(),
                    );
                }
            })
        })
    }

    /// Whether the link has closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits until the link closes.
    pub(crate) async fn wait_closed(&self) {
        loop {
            let notified = self.close_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Why the link closed (empty while open).
    pub(crate) fn close_reason(&self) -> String {
        self.reason
            .get()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// Closes the link for `reason`: fails what its session waits for and
    /// tells `inbound`. The first reason given stays. Idempotent.
    pub(crate) fn close(self: &Arc<Self>, reason: CloseReason, inbound: &Arc<dyn Inbound>) {
        if self.reason.set(reason.clone()).is_err() {
            return;
        }
        self.closed.store(true, Ordering::Release);
        let waiting = self.lock_session().close();
        tracing::debug!(peer = %self.peer, %reason, "link closed");
        for sink in waiting {
            sink.fail(RemoteError::Unreachable(reason.to_string()));
        }
        self.lock_shared().clear();
        for (_, sender) in lock(&self.senders).drain() {
            sender.retire();
        }
        self.close_notify.notify_waiters();
        self.ready.notify_waiters();
        inbound.closed(self, &reason);
    }

    async fn read_loop<R: AsyncRead + Unpin>(
        self: &Arc<Self>,
        mut reader: R,
        mut decoder: FrameDecoder,
        inbound: &Arc<dyn Inbound>,
    ) -> CloseReason {
        let first = self.lock_session().poll_timeout();
        let Some(first) = first else {
            return CloseReason::Local("the link was closed".into());
        };
        let timer = tokio::time::sleep_until(first.into());
        tokio::pin!(timer);
        loop {
            loop {
                match decoder.next_frame() {
                    Ok(Some((header, body))) => {
                        if let Some(reason) = self.dispatch(header, body, inbound) {
                            return reason;
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        tracing::error!(peer = %self.peer, %error, "malformed frame; closing the link");
                        // The peer learns why, if it is listening.
                        self.send(
                            Header::Close {
                                reason: format!("it received a malformed frame: {error}"),
                            },
                            Bytes::new(),
                        );
                        return CloseReason::Malformed(error);
                    }
                }
            }
            tokio::select! {
                read = reader.read_buf(decoder.buffer()) => match read {
                    Ok(0) => return CloseReason::PeerClosed,
                    Ok(_) => self.lock_session().heard(Instant::now()),
                    Err(error) => return CloseReason::ReadFailed(error.to_string()),
                },
                () = &mut timer => {
                    let now = Instant::now();
                    let (timeout, next) = {
                        let mut session = self.lock_session();
                        let timeout = session.handle_timeout(now);
                        (timeout, session.poll_timeout())
                    };
                    match timeout {
                        Some(Timeout::Lost { silent_for }) => return CloseReason::Silent(silent_for),
                        Some(Timeout::Ping) => {
                            self.send(Header::Ping, Bytes::new());
                        }
                        None => {}
                    }
                    match next {
                        Some(next) => timer.as_mut().reset(next.into()),
                        None => return CloseReason::Local("the link was closed".into()),
                    }
                }
            }
        }
    }

    /// Handles one frame; `Some(reason)` when it ends the link.
    fn dispatch(
        self: &Arc<Self>,
        header: Header,
        body: Bytes,
        inbound: &Arc<dyn Inbound>,
    ) -> Option<CloseReason> {
        match header {
            Header::Reply { id, result } => {
                let sink = self.lock_session().complete(id);
                match sink {
                    Some(sink) => sink.complete(result.map(|()| body)),
                    None => tracing::debug!(id, "reply to an unknown or finished request"),
                }
            }
            Header::Ping => {
                self.send(Header::Pong, Bytes::new());
            }
            Header::Pong => {}
            Header::Close { reason } => return Some(CloseReason::Goodbye(reason)),
            other => inbound.frame(self, other, body),
        }
        None
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
