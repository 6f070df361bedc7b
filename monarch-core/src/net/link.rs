//! A link: one long-lived, multiplexed byte stream to another process, carrying
//! frames both ways.
//!
//! Sending never blocks: frames go onto the link's queue in order and a writer
//! task batches whatever has queued up into few large writes. A reader task cuts
//! the incoming stream into frames, completes replies to calls made over the
//! link, answers heartbeats and hands everything else to the [`Inbound`]
//! handler. The link closes, failing every pending call with the reason, when
//! the stream ends or errs, a frame is malformed, or the peer is silent for
//! longer than the heartbeat timeout.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, Notify};

use super::cast::OrderSlot;
use super::frame::{encode_prefix, FrameDecoder, Header};
use super::shm::{enabled as shm_enabled, Leased, Segment, SHARE_FROM};
use crate::remote::{Payload, RemoteError, ReplySink};

/// What a link hands upwards.
pub(crate) trait Inbound: Send + Sync + 'static {
    /// A frame that is not a reply or heartbeat.
    fn frame(&self, link: &Arc<Link>, header: Header, body: Bytes);
    /// The link closed for `reason`.
    fn closed(&self, link: &Arc<Link>, reason: &str);
}

/// Timing of heartbeats.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Heartbeat {
    /// How often an idle link sends a ping.
    pub(crate) interval: Duration,
    /// How long a silent peer is tolerated before the link is closed.
    pub(crate) timeout: Duration,
}

/// What the writer task is asked to write: a frame, or the unwritten rest of
/// a frame a sender began writing itself.
pub(crate) enum Outgoing {
    Frame(Header, Payload),
    Rest(Bytes),
}

/// The queue of a link's writer task.
pub(crate) type Queue = mpsc::UnboundedReceiver<Outgoing>;

/// One link to a peer process, keyed by the peer's listen address.
pub(crate) struct Link {
    peer: String,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    /// Items in the writer's queue not yet written out.
    queued: AtomicUsize,
    /// On a same-host link: the socket, which a sender may write a small frame
    /// to itself when nothing is queued, sparing a wake-up of the writer task.
    direct: OnceLock<Direct>,
    /// Shared-memory segments sent over this link and not yet mapped by the
    /// peer, by lease.
    shared: Mutex<HashMap<u64, Leased>>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    /// The number of the next ordered frame (message or stop) to the peer.
    next_seq: AtomicU64,
    /// The order of messages from the peer's process, shared with the relays
    /// that bring casts from it.
    order: OnceLock<Arc<OrderSlot>>,
    closed: AtomicBool,
    close_notify: Notify,
    reason: Mutex<Option<String>>,
}

struct Pending {
    open: bool,
    replies: HashMap<u64, ReplySink>,
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

impl Link {
    /// A link whose stream is not connected yet: frames queue until
    /// [`Link::run`] is given the stream.
    pub(crate) fn new(peer: String) -> (Arc<Link>, Queue) {
        let (outgoing, queue) = mpsc::unbounded_channel();
        let link = Arc::new(Link {
            peer,
            outgoing,
            queued: AtomicUsize::new(0),
            direct: OnceLock::new(),
            shared: Mutex::new(HashMap::new()),
            pending: Mutex::new(Pending {
                open: true,
                replies: HashMap::new(),
            }),
            next_id: AtomicU64::new(1),
            next_seq: AtomicU64::new(0),
            order: OnceLock::new(),
            closed: AtomicBool::new(false),
            close_notify: Notify::new(),
            reason: Mutex::new(None),
        });
        (link, queue)
    }

    /// The peer's listen address.
    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// Numbers the next ordered frame to the peer: every message and stop for
    /// its actors, whether sent over this link or through relays.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The order of messages from the peer's process, made by `make` on first
    /// use.
    pub(crate) fn order(&self, make: impl FnOnce() -> Arc<OrderSlot>) -> &Arc<OrderSlot> {
        self.order.get_or_init(make)
    }

    /// Runs the link over a connected stream until it closes. `decoder` may
    /// already hold bytes read during the handshake.
    pub(crate) async fn run<R, W>(
        self: &Arc<Self>,
        reader: R,
        writer: W,
        decoder: FrameDecoder,
        queue: Queue,
        heartbeat: Heartbeat,
        inbound: Arc<dyn Inbound>,
    ) where
        R: AsyncRead + Unpin + Send + 'static,
        W: WritePart + Send + 'static,
    {
        let writing = tokio::spawn(write_loop(
            Arc::clone(self),
            writer,
            queue,
            heartbeat.interval,
        ));
        let reason = self.read_loop(reader, decoder, heartbeat, &inbound).await;
        writing.abort();
        self.close(&reason, &inbound);
    }

    /// Runs the link over a same-host socket, letting senders write small
    /// frames to it directly.
    pub(crate) async fn run_local(
        self: &Arc<Self>,
        socket: UnixStream,
        decoder: FrameDecoder,
        queue: Queue,
        heartbeat: Heartbeat,
        inbound: Arc<dyn Inbound>,
    ) {
        let socket = Arc::new(socket);
        let _ = self.direct.set(Direct {
            socket: Arc::clone(&socket),
            lock: Mutex::new(None),
        });
        let reader = SharedSocket(Arc::clone(&socket));
        self.run(
            reader,
            SharedSocket(socket),
            decoder,
            queue,
            heartbeat,
            inbound,
        )
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

    /// Describes `segments` for a message over this link: on a same-host link
    /// large ones move into shared memory (held here until the peer has mapped
    /// them); the rest stay in the frame and are returned for its body.
    pub(crate) fn prepare_segments(&self, segments: Vec<Bytes>) -> (Vec<Segment>, Vec<Bytes>) {
        let mut described = Vec::with_capacity(segments.len());
        let mut inline = Vec::new();
        for segment in segments {
            if self.direct.get().is_some() && segment.len() >= SHARE_FROM && shm_enabled() {
                match Leased::new(&segment) {
                    Ok(shared) => {
                        let lease = self.next_id.fetch_add(1, Ordering::Relaxed);
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

    /// The peer is done with the shared segment of `lease`.
    pub(crate) fn segment_released(&self, lease: u64) {
        // The last lease on a segment returns its file to the pool.
        drop(self.lock_shared().remove(&lease));
    }

    fn lock_shared(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Leased>> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    /// Registers `sink` for the reply to a frame built by `header` around the
    /// reply id, and sends it. If the link is closed the sink is failed at once.
    pub(crate) fn request(
        &self,
        header: impl FnOnce(u64) -> Header,
        body: impl Into<Payload>,
        sink: ReplySink,
    ) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut pending = self.lock_pending();
            if !pending.open {
                drop(pending);
                sink.complete(Err(RemoteError::Unreachable(self.close_reason())));
                return;
            }
            pending.replies.insert(id, sink);
        }
        if !self.send(header(id), body) {
            if let Some(sink) = self.lock_pending().replies.remove(&id) {
                sink.complete(Err(RemoteError::Unreachable(self.close_reason())));
            }
        }
    }

    /// Sends a reply to request `id`.
    pub(crate) fn reply(&self, id: u64, result: Result<Bytes, RemoteError>) {
        let (result, body) = match result {
            Ok(body) => (Ok(()), body),
            Err(e) => (Err(e), Bytes::new()),
        };
        self.send(Header::Reply { id, result }, body);
    }

    /// A sink that sends its reply over this link as the answer to `id`.
    pub(crate) fn reply_sink(self: &Arc<Self>, id: u64) -> ReplySink {
        let link = Arc::clone(self);
        ReplySink::new(move |result| link.reply(id, result))
    }

    /// Whether the link has closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits until the link closes.
    pub(crate) async fn closed(&self) {
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
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_default()
    }

    /// Closes the link: fails pending calls and tells `inbound`. Idempotent.
    pub(crate) fn close(self: &Arc<Self>, reason: &str, inbound: &Arc<dyn Inbound>) {
        {
            let mut slot = self
                .reason
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if slot.is_some() {
                return;
            }
            *slot = Some(format!("link to {} closed: {reason}", self.peer));
        }
        self.closed.store(true, Ordering::Release);
        let replies: Vec<ReplySink> = {
            let mut pending = self.lock_pending();
            pending.open = false;
            pending.replies.drain().map(|(_, sink)| sink).collect()
        };
        let why = self.close_reason();
        tracing::debug!(peer = %self.peer, reason = %why, "link closed");
        for sink in replies {
            sink.complete(Err(RemoteError::Unreachable(why.clone())));
        }
        self.lock_shared().clear();
        self.close_notify.notify_waiters();
        inbound.closed(self, reason);
    }

    async fn read_loop<R: AsyncRead + Unpin>(
        self: &Arc<Self>,
        mut reader: R,
        mut decoder: FrameDecoder,
        heartbeat: Heartbeat,
        inbound: &Arc<dyn Inbound>,
    ) -> String {
        loop {
            loop {
                match decoder.next_frame() {
                    Ok(Some((header, body))) => self.dispatch(header, body, inbound),
                    Ok(None) => break,
                    Err(error) => {
                        tracing::error!(peer = %self.peer, %error, "malformed frame; closing the link");
                        return format!("malformed frame: {error}");
                    }
                }
            }
            match tokio::time::timeout(heartbeat.timeout, reader.read_buf(decoder.buffer())).await {
                Ok(Ok(0)) => return "the peer closed the connection".to_string(),
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return format!("read failed: {error}"),
                Err(_) => {
                    return format!(
                        "no heartbeat for {:?} (the process may be stopped or hung)",
                        heartbeat.timeout
                    )
                }
            }
        }
    }

    fn dispatch(self: &Arc<Self>, header: Header, body: Bytes, inbound: &Arc<dyn Inbound>) {
        match header {
            Header::Reply { id, result } => {
                let sink = self.lock_pending().replies.remove(&id);
                match sink {
                    Some(sink) => sink.complete(result.map(|()| body)),
                    None => tracing::debug!(id, "reply to an unknown or finished call"),
                }
            }
            Header::Ping => {
                self.send(Header::Pong, Bytes::new());
            }
            Header::Pong => {}
            other => inbound.frame(self, other, body),
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Writes queued frames, batching small ones, and pings when idle.
async fn write_loop<W: WritePart>(
    link: Arc<Link>,
    mut writer: W,
    mut queue: Queue,
    ping_every: Duration,
) {
    let mut batch = BytesMut::with_capacity(BATCH_LIMIT * 2);
    loop {
        let first = match tokio::time::timeout(ping_every, queue.recv()).await {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(_) => {
                // Through `send`, so a ping never cuts into a direct write.
                link.send(Header::Ping, Payload::default());
                continue;
            }
        };
        let mut written = 0;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            written += 1;
            let parts = match &item {
                Outgoing::Frame(header, body) => {
                    encode_prefix(header, body.len(), &mut batch);
                    std::iter::once(&body.args).chain(&body.segments).collect()
                }
                Outgoing::Rest(rest) => vec![rest],
            };
            for part in parts {
                if part.len() >= BATCH_LIMIT {
                    // Large parts go out as they are, never copied.
                    if writer.write_all(&batch).await.is_err()
                        || writer.write_part(part).await.is_err()
                    {
                        return;
                    }
                    batch.clear();
                } else {
                    batch.extend_from_slice(part);
                }
            }
            if batch.len() < BATCH_LIMIT {
                next = queue.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            if writer.write_all(&batch).await.is_err() {
                return;
            }
            batch.clear();
        }
        if writer.flush().await.is_err() {
            return;
        }
        link.queued.fetch_sub(written, Ordering::AcqRel);
    }
    let _ = writer.shutdown().await;
}

/// A byte stream a link writes to. Large parts of a frame are handed over as
/// `Bytes`, so a transport that can take them without copying (quinn) does.
pub(crate) trait WritePart: AsyncWrite + Unpin {
    /// Writes all of `part`.
    fn write_part(
        &mut self,
        part: &Bytes,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
}

impl WritePart for quinn::SendStream {
    async fn write_part(&mut self, part: &Bytes) -> std::io::Result<()> {
        self.write_chunk(part.clone())
            .await
            .map_err(std::io::Error::other)
    }
}

impl WritePart for SharedSocket {
    async fn write_part(&mut self, part: &Bytes) -> std::io::Result<()> {
        self.write_all(part).await
    }
}

#[cfg(test)]
impl WritePart for tokio::io::WriteHalf<tokio::io::DuplexStream> {
    async fn write_part(&mut self, part: &Bytes) -> std::io::Result<()> {
        self.write_all(part).await
    }
}

/// A same-host socket shared between the reader, the writer task and direct
/// senders: every operation goes through its readiness and `try_` methods,
/// which take `&self`.
struct SharedSocket(Arc<UnixStream>);

impl AsyncRead for SharedSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ActorId, ProcId};

    struct Recorder(mpsc::UnboundedSender<Result<Header, String>>);

    impl Inbound for Recorder {
        fn frame(&self, _: &Arc<Link>, header: Header, _: Bytes) {
            let _ = self.0.send(Ok(header));
        }
        fn closed(&self, _: &Arc<Link>, reason: &str) {
            let _ = self.0.send(Err(reason.to_string()));
        }
    }

    const QUICK: Heartbeat = Heartbeat {
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(400),
    };

    fn pair() -> (
        Arc<Link>,
        mpsc::UnboundedReceiver<Result<Header, String>>,
        tokio::io::DuplexStream,
    ) {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (link, queue) = Link::new("peer".into());
        let (tx, rx) = mpsc::unbounded_channel();
        let inbound: Arc<dyn Inbound> = Arc::new(Recorder(tx));
        let (r, w) = tokio::io::split(ours);
        let running = Arc::clone(&link);
        tokio::spawn(async move {
            running
                .run(r, w, FrameDecoder::new(1 << 20), queue, QUICK, inbound)
                .await
        });
        (link, rx, theirs)
    }

    #[tokio::test]
    async fn garbage_closes_the_link_and_fails_pending_calls() {
        let (link, mut events, mut peer) = pair();
        let (tx, rx) = tokio::sync::oneshot::channel();
        link.request(
            |id| Header::Stop {
                actor: ActorId::new(ProcId::new("j", "h", 0), "a", 0),
                ack: id,
                seq: 0,
            },
            Bytes::new(),
            ReplySink::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        peer.write_all(&[5, 0, 0, 0, 9, 9, 9, 9, 9]).await.unwrap();
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(event.unwrap_err().contains("malformed frame"));
        let failed = tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(failed, Err(RemoteError::Unreachable(_))));
        assert!(link.is_closed());
    }

    #[tokio::test]
    async fn a_silent_peer_is_declared_lost() {
        let (link, mut events, _peer) = pair();
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(event.unwrap_err().contains("no heartbeat"));
        assert!(link.close_reason().contains("no heartbeat"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn direct_and_queued_writes_never_interleave() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (link, queue) = Link::new("peer".into());
        let (tx, _events) = mpsc::unbounded_channel();
        let inbound: Arc<dyn Inbound> = Arc::new(Recorder(tx));
        let running = Arc::clone(&link);
        tokio::spawn(async move {
            running
                .run_local(ours, FrameDecoder::new(1 << 24), queue, QUICK, inbound)
                .await
        });
        const SENDERS: u64 = 4;
        const EACH: u64 = 3000;
        let senders: Vec<_> = (0..SENDERS)
            .map(|sender| {
                let link = Arc::clone(&link);
                tokio::spawn(async move {
                    for seq in 0..EACH {
                        // Mostly small frames (written directly when the queue
                        // is empty), some too large for that.
                        let size = if seq % 97 == 0 {
                            40_000
                        } else {
                            (seq % 50) as usize
                        };
                        let body = Bytes::from(vec![sender as u8; size]);
                        assert!(link.send(
                            Header::PortValue {
                                port: sender * EACH + seq
                            },
                            body
                        ));
                        if seq % 256 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        let mut decoder = FrameDecoder::new(1 << 24);
        let mut next = vec![0u64; SENDERS as usize];
        let mut reader = theirs;
        let mut received = 0;
        while received < SENDERS * EACH {
            let read =
                tokio::time::timeout(Duration::from_secs(10), reader.read_buf(decoder.buffer()));
            assert!(read.await.unwrap().unwrap() > 0);
            while let Some((header, body)) = decoder.next_frame().unwrap() {
                let Header::PortValue { port } = header else {
                    continue;
                };
                let (sender, seq) = (port / EACH, port % EACH);
                assert_eq!(seq, next[sender as usize], "sender {sender} out of order");
                assert!(body.iter().all(|b| *b == sender as u8), "corrupted body");
                next[sender as usize] += 1;
                received += 1;
            }
        }
        for sender in senders {
            sender.await.unwrap();
        }
    }

    #[tokio::test]
    async fn frames_and_pings_reach_the_peer_in_order() {
        let (link, _events, peer) = pair();
        for port in 0..100 {
            assert!(link.send(Header::PortValue { port }, Bytes::from(vec![1; 10])));
        }
        let (mut r, _w) = tokio::io::split(peer);
        let mut decoder = FrameDecoder::new(1 << 20);
        let mut ports = Vec::new();
        let mut pinged = false;
        while ports.len() < 100 || !pinged {
            r.read_buf(decoder.buffer()).await.unwrap();
            while let Some((header, _)) = decoder.next_frame().unwrap() {
                match header {
                    Header::PortValue { port } => ports.push(port),
                    Header::Ping => pinged = true,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert_eq!(ports, (0..100).collect::<Vec<_>>());
    }
}
