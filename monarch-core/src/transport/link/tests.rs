use tokio::io::AsyncWriteExt;

use super::*;
use crate::runtime::remote::{Envelope, Outbound};
use crate::{ActorId, ProcId};

struct Recorder(mpsc::UnboundedSender<Result<Header, String>>);

impl Inbound for Recorder {
    fn frame(&self, _: &Arc<Link>, header: Header, _: Bytes) {
        let _ = self.0.send(Ok(header));
    }
    fn closed(&self, _: &Arc<Link>, reason: &CloseReason) {
        let _ = self.0.send(Err(reason.to_string()));
    }
}

fn quick() -> LinkSettings {
    LinkSettings {
        heartbeat_interval: Duration::from_millis(50),
        heartbeat_timeout: Duration::from_millis(400),
        max_frame: 1 << 20,
        shared_memory: true,
        shared_memory_from: 1 << 20,
    }
}

fn new_link() -> (Arc<Link>, Queue) {
    Link::new("peer".into(), "me".into(), quick())
}

fn pair() -> (
    Arc<Link>,
    mpsc::UnboundedReceiver<Result<Header, String>>,
    tokio::io::DuplexStream,
) {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (link, queue) = new_link();
    let (tx, rx) = mpsc::unbounded_channel();
    let inbound: Arc<dyn Inbound> = Arc::new(Recorder(tx));
    let (r, w) = tokio::io::split(ours);
    let running = Arc::clone(&link);
    tokio::spawn(async move {
        running
            .run(r, w, FrameDecoder::new(1 << 20), queue, inbound)
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

#[tokio::test]
async fn a_peer_that_says_goodbye_is_closed_for_its_reason() {
    let (link, mut events, mut peer) = pair();
    let mut frame = BytesMut::new();
    encode_prefix(
        &Header::Close {
            reason: "a frame was too large".into(),
        },
        0,
        &mut frame,
    );
    peer.write_all(&frame).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        event.unwrap_err(),
        "the peer closed the link: a frame was too large"
    );
    assert!(link.is_closed());
}

#[tokio::test]
async fn a_message_over_the_frame_limit_is_refused_before_sending() {
    let (link, _queue) = new_link();
    let undelivered = Outbound::send(
        link.as_ref(),
        Envelope {
            to: ActorId::new(ProcId::new("j", "h", 0), "a", 0),
            endpoint: "take".into(),
            payload: Payload {
                args: Bytes::new(),
                segments: vec![Bytes::from(vec![0u8; 2 << 20])],
            },
            reply: None,
            sender: None,
            cast: None,
        },
    )
    .expect_err("refused");
    assert!(matches!(
        undelivered.error,
        RemoteError::TooLarge { size, .. } if size > 2 << 20
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_and_queued_writes_never_interleave() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (link, queue) = Link::new(
        "peer".into(),
        "me".into(),
        LinkSettings {
            max_frame: 1 << 24,
            ..quick()
        },
    );
    let (tx, _events) = mpsc::unbounded_channel();
    let inbound: Arc<dyn Inbound> = Arc::new(Recorder(tx));
    let running = Arc::clone(&link);
    tokio::spawn(async move {
        running
            .run_local(ours, FrameDecoder::new(1 << 24), queue, inbound)
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
        let read = tokio::time::timeout(Duration::from_secs(10), reader.read_buf(decoder.buffer()));
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
