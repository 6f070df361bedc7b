//! Casts through a tree of processes, and ordered delivery at a receiver.
//!
//! The origin of a cast plans a [tree](super::tree), numbers the message for
//! each process in its sequence to that process, and sends the cast to the
//! roots of the subtrees. Each process that receives a cast hands its part to
//! its members in its origin's order, forwards the rest to its children, and
//! passes replies and delivery reports back up the link the cast came on.
//!
//! Every message and stop from one process to another carries such a number,
//! whichever path it takes, and the receiver's [`Sequencer`] for that origin
//! hands them on in order: a relayed cast never overtakes a direct message
//! sent before it, nor the other way round. When a relay is lost, the process
//! above it reports the processes below it as lost, and the origin tells each
//! of them to skip the message they may never get.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::frame::{CastFrame, Header};
use super::gather::Gather;
use super::link::Link;
use super::router::router;
use super::sequence::Sequencer;
use super::tree::{plan_by_host, CastNode, CastNodeBuilder, Planned};
use crate::remote::{Payload, RemoteError, ReplySink};
use crate::{registry, ActorId, Proc};

/// The order of the messages from one origin process.
pub(crate) type OrderSlot = Mutex<Sequencer<Ordered>>;

/// A message handled only in its turn among its origin's messages to this
/// process.
pub(crate) enum Ordered {
    /// A message for one actor; its reply goes back over the link it came on.
    Message {
        to: ActorId,
        endpoint: String,
        payload: Payload,
        reply: Option<ReplySink>,
    },
    /// This process's part of a cast; replies go up `up` as the cast numbered.
    Cast {
        members: Members,
        endpoint: String,
        payload: Payload,
        up: Option<(Arc<Link>, u64)>,
    },
    /// Stop an actor, then acknowledge.
    Stop {
        actor: ActorId,
        link: Arc<Link>,
        ack: u64,
    },
    /// Stop every actor of `proc`, acknowledge, and exit.
    StopProc {
        proc: Proc,
        link: Arc<Link>,
        ack: u64,
    },
}

impl Ordered {
    /// Hands the message on: this is its turn.
    pub(crate) fn handle(self) {
        match self {
            Ordered::Message {
                to,
                endpoint,
                payload,
                reply,
            } => registry::deliver(&to, &endpoint, payload, reply),
            Ordered::Cast {
                members,
                endpoint,
                payload,
                up,
            } => {
                for (rank, actor) in members {
                    let sink = up
                        .as_ref()
                        .map(|(link, cast)| reply_up(Arc::clone(link), *cast, rank));
                    registry::deliver(&actor, &endpoint, payload.clone(), sink);
                }
            }
            Ordered::Stop { actor, link, ack } => {
                tokio::spawn(async move {
                    registry::stop(&actor).await;
                    link.reply(ack, Ok(Bytes::new()));
                });
            }
            Ordered::StopProc { proc, link, ack } => {
                tokio::spawn(async move {
                    proc.stop().await;
                    link.reply(ack, Ok(Bytes::new()));
                });
            }
        }
    }

    /// Refuses a message whose turn has passed: a duplicate, or one given up
    /// as lost with a relay that turned up after all.
    pub(crate) fn reject(self) {
        tracing::warn!("dropped a message that arrived after its turn had passed");
        let error = || RemoteError::Unreachable("the message arrived after it was given up".into());
        match self {
            Ordered::Message { reply, .. } => super::fail(reply, error()),
            Ordered::Cast { members, up, .. } => {
                if let Some((link, cast)) = up {
                    for (rank, _) in members {
                        reply_up(Arc::clone(&link), cast, rank).complete(Err(error()));
                    }
                }
            }
            Ordered::Stop { link, ack, .. } | Ordered::StopProc { link, ack, .. } => {
                link.reply(ack, Err(error()))
            }
        }
    }
}

/// A sink that passes a member's reply up to the process the cast came from.
fn reply_up(link: Arc<Link>, cast: u64, rank: u32) -> ReplySink {
    ReplySink::new(move |result| send_reply(&link, cast, rank, result))
}

fn send_reply(link: &Link, cast: u64, rank: u32, result: Result<Bytes, RemoteError>) {
    let (result, body) = match result {
        Ok(body) => (Ok(()), body),
        Err(error) => (Err(error), Bytes::new()),
    };
    link.send(Header::CastReply { cast, rank, result }, body);
}

/// The actors of one process in a cast, each with its rank in the cast.
type Members = Vec<(u32, ActorId)>;

/// One process reached by a cast from here: the link to it and its members.
type ProcPart = (Arc<Link>, Members);

/// One member of a cast from this process.
pub(crate) struct Target {
    /// Its rank in the cast.
    pub(crate) rank: u32,
    pub(crate) actor: ActorId,
    /// The link to its process.
    pub(crate) link: Arc<Link>,
}

/// Casts `endpoint` with `payload` to `targets` (all in other processes)
/// through a tree that enters each host once and sends at most `fanout`
/// copies from any process to other hosts and `fanout` within its own. With
/// `sinks`, each rank's reply completes its sink.
pub(crate) fn cast(
    fanout: usize,
    endpoint: &str,
    payload: &Payload,
    targets: Vec<Target>,
    sinks: Option<HashMap<u32, ReplySink>>,
) {
    let Some(router) = router() else {
        let error = RemoteError::Unreachable("this process has no transport".into());
        for sink in sinks.into_iter().flat_map(HashMap::into_values) {
            sink.complete(Err(error.clone()));
        }
        return;
    };
    CASTS_STARTED.fetch_add(1, Ordering::Relaxed);
    let (mut procs, hosts) = group_by_host(targets);
    let here = crate::this_proc().proc_id().host();
    let local = hosts.iter().position(|(name, _)| name == here);
    let hosts: Vec<Range<usize>> = hosts.into_iter().map(|(_, range)| range).collect();
    let children = plan_by_host(&hosts, local, fanout)
        .iter()
        .map(|planned| {
            let link = Arc::clone(&procs[planned.proc].0);
            (link, build(planned, &mut procs))
        })
        .collect();
    let reply = sinks.is_some();
    router.casts.forward(
        Upward::Origin {
            sinks: sinks.unwrap_or_default(),
        },
        router.addr(),
        endpoint,
        reply,
        payload,
        children,
    );
}

/// The processes `targets` reach, each with its members, grouped by host:
/// the processes, and each host's name with the range of its processes. Hosts
/// and processes keep the order in which they first appear.
fn group_by_host(targets: Vec<Target>) -> (Vec<ProcPart>, Vec<(String, Range<usize>)>) {
    let mut hosts: Vec<(String, Vec<ProcPart>)> = Vec::new();
    let mut host_index: HashMap<String, usize> = HashMap::new();
    let mut proc_index: HashMap<String, (usize, usize)> = HashMap::new();
    for target in targets {
        let (h, p) = *proc_index
            .entry(target.link.peer().to_string())
            .or_insert_with(|| {
                let host = target.actor.proc_id().host();
                let h = *host_index.entry(host.to_string()).or_insert_with(|| {
                    hosts.push((host.to_string(), Vec::new()));
                    hosts.len() - 1
                });
                hosts[h].1.push((Arc::clone(&target.link), Vec::new()));
                (h, hosts[h].1.len() - 1)
            });
        hosts[h].1[p].1.push((target.rank, target.actor));
    }
    let mut procs = Vec::new();
    let ranges = hosts
        .into_iter()
        .map(|(name, host_procs)| {
            let start = procs.len();
            procs.extend(host_procs);
            (name, start..procs.len())
        })
        .collect();
    (procs, ranges)
}

/// The wire form of a planned subtree, numbering the message for each process.
fn build(planned: &Planned, procs: &mut [ProcPart]) -> CastNode {
    fn add(planned: &Planned, procs: &mut [ProcPart], tree: &mut CastNodeBuilder) {
        let (link, members) = &mut procs[planned.proc];
        tree.enter(
            link.peer().to_string(),
            link.next_seq(),
            std::mem::take(members),
        );
        for child in &planned.children {
            add(child, procs, tree);
        }
        tree.leave();
    }
    let mut tree = CastNode::builder();
    add(planned, procs, &mut tree);
    tree.finish()
}

/// A cast arrived from `from`: hands this process's part on in its origin's
/// order and forwards the rest.
pub(crate) fn relay(from: &Arc<Link>, frame: CastFrame, body: Bytes) {
    let CastFrame {
        origin,
        cast,
        endpoint,
        reply,
        segments,
        node,
    } = frame;
    let Some(router) = router() else { return };
    let releasing = Arc::clone(from);
    let released = move |lease| {
        releasing.send(Header::SegmentReleased { lease }, Bytes::new());
    };
    let payload = Payload::split(body, &segments, released).and_then(|payload| {
        node.check()
            .map(|()| payload)
            .map_err(|e| RemoteError::Codec(e.to_string()))
    });
    let payload = match payload {
        Ok(payload) => payload,
        Err(error) => {
            tracing::error!(%error, "a cast could not be read; its subtree loses it");
            if reply {
                for rank in node.ranks() {
                    send_reply(from, cast, rank, Err(error.clone()));
                }
            }
            let lost = node.procs().into_iter().map(|(addr, _)| addr).collect();
            from.send(Header::CastDelivered { cast, lost }, Bytes::new());
            return;
        }
    };
    let (me, children) = node.split();
    router.ordered(
        &router.order_of(&origin),
        me.seq,
        Ordered::Cast {
            members: me.members,
            endpoint: endpoint.clone(),
            payload: payload.clone(),
            up: reply.then(|| (Arc::clone(from), cast)),
        },
    );
    let children = children
        .into_iter()
        .map(|node| (router.link(node.addr()), node))
        .collect();
    router.casts.forward(
        Upward::Parent {
            link: Arc::clone(from),
            cast,
        },
        &origin,
        &endpoint,
        reply,
        &payload,
        children,
    );
}

/// How many casts this process has sent through a tree, for tests that check
/// a tree was used.
pub fn casts_started() -> u64 {
    CASTS_STARTED.load(Ordering::Relaxed)
}

static CASTS_STARTED: AtomicU64 = AtomicU64::new(0);

/// How many subtrees this process still awaits replies or a delivery report
/// from, over all casts it sent or relayed: zero once every cast is done. For
/// tests that check nothing is left behind.
pub fn casts_in_flight() -> usize {
    router().map_or(0, |router| lock(&router.casts.open).len())
}

/// The casts this process forwarded and still gathers for, by the number it
/// gave each child's copy.
#[derive(Default)]
pub(crate) struct Casts {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Entry>>,
}

struct Entry {
    forwarding: Arc<Mutex<Forwarding>>,
    child: usize,
    link: Arc<Link>,
}

/// One cast forwarded from this process.
struct Forwarding {
    gather: Gather,
    up: Upward,
    children: Vec<ChildPart>,
    /// Processes below whose delivery is unknown.
    lost: Vec<String>,
}

struct ChildPart {
    id: u64,
    addr: String,
    /// Every process of the child's subtree, with its message number.
    procs: Vec<(String, u64)>,
}

/// Where what is gathered goes.
enum Upward {
    /// To the process the cast came from, numbered as it numbered it.
    Parent { link: Arc<Link>, cast: u64 },
    /// To the callers here: this process is the origin.
    Origin { sinks: HashMap<u32, ReplySink> },
}

impl Casts {
    /// Sends the cast to each child with its subtree and gathers what comes
    /// back for `up`.
    fn forward(
        &self,
        up: Upward,
        origin: &str,
        endpoint: &str,
        reply: bool,
        payload: &Payload,
        children: Vec<(Arc<Link>, CastNode)>,
    ) {
        if children.is_empty() {
            if let Upward::Parent { link, cast } = up {
                link.send(
                    Header::CastDelivered {
                        cast,
                        lost: Vec::new(),
                    },
                    Bytes::new(),
                );
            }
            return;
        }
        let ranks = children
            .iter()
            .map(|(_, node)| if reply { node.ranks() } else { Vec::new() })
            .collect();
        let parts: Vec<ChildPart> = children
            .iter()
            .map(|(_, node)| ChildPart {
                id: self.next.fetch_add(1, Ordering::Relaxed),
                addr: node.addr().to_string(),
                procs: node.procs(),
            })
            .collect();
        let ids: Vec<u64> = parts.iter().map(|p| p.id).collect();
        let forwarding = Arc::new(Mutex::new(Forwarding {
            gather: Gather::new(ranks),
            up,
            children: parts,
            lost: Vec::new(),
        }));
        {
            let mut open = lock(&self.open);
            for (child, (link, _)) in children.iter().enumerate() {
                open.insert(
                    ids[child],
                    Entry {
                        forwarding: Arc::clone(&forwarding),
                        child,
                        link: Arc::clone(link),
                    },
                );
            }
        }
        for (child, (link, node)) in children.into_iter().enumerate() {
            let (segments, inline) = link.prepare_segments(payload.segments.clone());
            let sent = link.send(
                Header::Cast(CastFrame {
                    origin: origin.to_string(),
                    cast: ids[child],
                    endpoint: endpoint.to_string(),
                    reply,
                    segments,
                    node,
                }),
                Payload {
                    args: payload.args.clone(),
                    segments: inline,
                },
            );
            if !sent {
                self.child_lost(ids[child], &link.close_reason());
            }
        }
    }

    /// A reply came up from the child given number `cast`.
    pub(crate) fn reply(&self, cast: u64, rank: u32, result: Result<Bytes, RemoteError>) {
        let Some((forwarding, child)) = self.entry(cast) else {
            return;
        };
        let mut f = lock(&forwarding);
        if f.gather.reply(child, rank) {
            f.up.reply(rank, result);
            self.finish_if_done(&f);
        }
    }

    /// The child given number `cast` reports its subtree has the cast.
    pub(crate) fn delivered(&self, cast: u64, lost: Vec<String>) {
        let Some((forwarding, child)) = self.entry(cast) else {
            return;
        };
        let mut f = lock(&forwarding);
        f.lost_below(child, lost);
        if f.gather.delivered(child) {
            f.report_delivered();
        }
        self.finish_if_done(&f);
    }

    /// Some link closed: every child behind a closed link is lost.
    pub(crate) fn links_lost(&self) {
        let lost: Vec<(u64, String)> = lock(&self.open)
            .iter()
            .filter(|(_, entry)| entry.link.is_closed())
            .map(|(id, entry)| (*id, entry.link.close_reason()))
            .collect();
        for (id, reason) in lost {
            self.child_lost(id, &reason);
        }
    }

    fn child_lost(&self, cast: u64, reason: &str) {
        let Some((forwarding, child)) = self.entry(cast) else {
            return;
        };
        let mut f = lock(&forwarding);
        let lost = f.gather.lost(child);
        let why = format!(
            "lost the cast's path through {}: {reason}",
            f.children[child].addr
        );
        for rank in lost.unanswered {
            f.up.reply(rank, Err(RemoteError::Unreachable(why.clone())));
        }
        if lost.undelivered {
            let below = f.children[child]
                .procs
                .iter()
                .map(|(addr, _)| addr.clone())
                .collect();
            f.lost_below(child, below);
            if f.gather.all_delivered() {
                f.report_delivered();
            }
        }
        // Nothing more comes from a lost child.
        lock(&self.open).remove(&cast);
        self.finish_if_done(&f);
    }

    fn entry(&self, cast: u64) -> Option<(Arc<Mutex<Forwarding>>, usize)> {
        lock(&self.open)
            .get(&cast)
            .map(|e| (Arc::clone(&e.forwarding), e.child))
    }

    fn finish_if_done(&self, f: &Forwarding) {
        if f.gather.is_done() {
            let mut open = lock(&self.open);
            for part in &f.children {
                open.remove(&part.id);
            }
        }
    }
}

impl Forwarding {
    /// The processes `lost` below `child` may never get the cast.
    fn lost_below(&mut self, child: usize, lost: Vec<String>) {
        if lost.is_empty() {
            return;
        }
        match &self.up {
            Upward::Parent { .. } => self.lost.extend(lost),
            Upward::Origin { .. } => {
                // Their messages may never come: tell each not to wait.
                let Some(router) = router() else { return };
                let lost: std::collections::HashSet<String> = lost.into_iter().collect();
                for (addr, seq) in &self.children[child].procs {
                    if lost.contains(addr) {
                        router
                            .link(addr)
                            .send(Header::Skip { seq: *seq }, Bytes::new());
                    }
                }
            }
        }
    }

    /// Every child has reported: so does this process, to its parent.
    fn report_delivered(&mut self) {
        if let Upward::Parent { link, cast } = &self.up {
            link.send(
                Header::CastDelivered {
                    cast: *cast,
                    lost: std::mem::take(&mut self.lost),
                },
                Bytes::new(),
            );
        }
    }
}

impl Upward {
    fn reply(&mut self, rank: u32, result: Result<Bytes, RemoteError>) {
        match self {
            Upward::Parent { link, cast } => send_reply(link, *cast, rank, result),
            Upward::Origin { sinks } => {
                if let Some(sink) = sinks.remove(&rank) {
                    sink.complete(result);
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::link::{Inbound, Outgoing, Queue};
    use crate::ProcId;

    struct Ignore;

    impl Inbound for Ignore {
        fn frame(&self, _: &Arc<Link>, _: Header, _: Bytes) {}
        fn closed(&self, _: &Arc<Link>, _: &str) {}
    }

    /// A subtree of `(addr, ranks)` processes: the first, then its children,
    /// each a leaf or given with its own children.
    fn node(addr: &str, ranks: &[u32], children: Vec<CastNode>) -> CastNode {
        let mut tree = CastNode::builder();
        tree.enter(
            addr.into(),
            0,
            ranks
                .iter()
                .map(|r| (*r, ActorId::new(ProcId::new("j", addr, 0), "a", 0)))
                .collect(),
        );
        for child in children {
            tree.append(child);
        }
        tree.leave();
        tree.finish()
    }

    fn next(queue: &mut Queue) -> Option<(Header, Payload)> {
        match queue.try_recv() {
            Ok(Outgoing::Frame(header, body)) => Some((header, body)),
            _ => None,
        }
    }

    #[test]
    fn a_relay_passes_replies_up_and_reports_its_lost_children() {
        let casts = Casts::default();
        let (parent, mut up) = Link::new("parent".into());
        let (a, mut to_a) = Link::new("a".into());
        let (b, mut to_b) = Link::new("b".into());
        casts.forward(
            Upward::Parent {
                link: Arc::clone(&parent),
                cast: 7,
            },
            "origin",
            "ping",
            true,
            &Payload::from(Bytes::from_static(b"args")),
            vec![
                (
                    Arc::clone(&a),
                    node("a", &[1], vec![node("a2", &[2], vec![])]),
                ),
                (Arc::clone(&b), node("b", &[3], vec![])),
            ],
        );
        // Each child gets its own subtree, with a number of this relay's.
        let Some((Header::Cast(to_a_frame), body)) = next(&mut to_a) else {
            panic!("no cast for a");
        };
        assert_eq!(body.args, Bytes::from_static(b"args"));
        assert_eq!(
            to_a_frame.node,
            node("a", &[1], vec![node("a2", &[2], vec![])])
        );
        assert_eq!(to_a_frame.origin, "origin");
        let Some((Header::Cast(to_b_frame), _)) = next(&mut to_b) else {
            panic!("no cast for b");
        };
        assert_ne!(to_a_frame.cast, to_b_frame.cast);

        // A reply from below goes up under the parent's number, once.
        casts.reply(to_a_frame.cast, 2, Ok(Bytes::from_static(b"two")));
        casts.reply(to_a_frame.cast, 2, Ok(Bytes::from_static(b"two")));
        casts.reply(to_a_frame.cast, 3, Ok(Bytes::new()));
        let (header, body) = next(&mut up).expect("a reply");
        assert_eq!(
            header,
            Header::CastReply {
                cast: 7,
                rank: 2,
                result: Ok(())
            }
        );
        assert_eq!(body.args, Bytes::from_static(b"two"));
        assert!(
            next(&mut up).is_none(),
            "no duplicate, no reply for a rank not below a"
        );

        // Delivery is reported once every child has reported or been lost.
        casts.delivered(to_a_frame.cast, vec!["a2".into()]);
        assert!(next(&mut up).is_none());
        b.close("gone", &(Arc::new(Ignore) as Arc<dyn Inbound>));
        casts.links_lost();
        match next(&mut up) {
            Some((
                Header::CastReply {
                    cast: 7,
                    rank: 3,
                    result: Err(RemoteError::Unreachable(why)),
                },
                _,
            )) => assert!(why.contains("through b"), "{why}"),
            other => panic!("expected rank 3 to fail, got {other:?}"),
        }
        assert_eq!(
            next(&mut up).map(|(h, _)| h),
            Some(Header::CastDelivered {
                cast: 7,
                lost: vec!["a2".into(), "b".into()]
            })
        );

        // The last reply finishes the cast here.
        casts.reply(to_a_frame.cast, 1, Err(RemoteError::NoReply));
        assert!(matches!(
            next(&mut up),
            Some((Header::CastReply { rank: 1, .. }, _))
        ));
        assert!(lock(&casts.open).is_empty());
    }

    #[test]
    fn targets_are_grouped_by_process_and_host() {
        let links: Vec<Arc<Link>> = (0..4).map(|i| Link::new(format!("p{i}")).0).collect();
        // Processes 0 and 2 on host a, 1 and 3 on host b; two members on 2.
        let target = |rank: u32, proc: usize| Target {
            rank,
            actor: ActorId::new(
                ProcId::new("j", ["a", "b"][proc % 2], proc),
                "m",
                rank.into(),
            ),
            link: Arc::clone(&links[proc]),
        };
        let targets = vec![
            target(0, 0),
            target(1, 1),
            target(2, 2),
            target(3, 3),
            target(4, 2),
        ];
        let (procs, hosts) = group_by_host(targets);
        let peers: Vec<&str> = procs.iter().map(|(link, _)| link.peer()).collect();
        assert_eq!(peers, ["p0", "p2", "p1", "p3"]);
        let ranks: Vec<Vec<u32>> = procs
            .iter()
            .map(|(_, members)| members.iter().map(|(r, _)| *r).collect())
            .collect();
        assert_eq!(ranks, [vec![0], vec![2, 4], vec![1], vec![3]]);
        assert_eq!(hosts, [("a".to_string(), 0..2), ("b".to_string(), 2..4)]);
    }

    #[test]
    fn a_leaf_reports_delivery_at_once() {
        let casts = Casts::default();
        let (parent, mut up) = Link::new("parent".into());
        casts.forward(
            Upward::Parent {
                link: parent,
                cast: 3,
            },
            "origin",
            "ping",
            false,
            &Payload::default(),
            Vec::new(),
        );
        assert_eq!(
            next(&mut up).map(|(h, _)| h),
            Some(Header::CastDelivered {
                cast: 3,
                lost: vec![]
            })
        );
    }

    #[test]
    fn the_origin_completes_each_ranks_sink() {
        let casts = Casts::default();
        let (a, mut to_a) = Link::new("a".into());
        let (tx, rx) = std::sync::mpsc::channel();
        let sinks = [0, 1]
            .into_iter()
            .map(|rank| {
                let tx = tx.clone();
                (rank, ReplySink::new(move |r| tx.send((rank, r)).unwrap()))
            })
            .collect();
        casts.forward(
            Upward::Origin { sinks },
            "origin",
            "ping",
            true,
            &Payload::default(),
            vec![(
                Arc::clone(&a),
                node("a", &[0], vec![node("a2", &[1], vec![])]),
            )],
        );
        let Some((Header::Cast(frame), _)) = next(&mut to_a) else {
            panic!("no cast");
        };
        casts.reply(frame.cast, 1, Ok(Bytes::from_static(b"1")));
        assert_eq!(rx.try_recv().unwrap(), (1, Ok(Bytes::from_static(b"1"))));
        a.close("gone", &(Arc::new(Ignore) as Arc<dyn Inbound>));
        casts.links_lost();
        let (rank, result) = rx.try_recv().unwrap();
        assert_eq!(rank, 0);
        assert!(matches!(result, Err(RemoteError::Unreachable(_))));
        assert!(lock(&casts.open).is_empty());
    }
}
