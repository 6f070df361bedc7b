//! Casts through a tree of processes, as bookkeeping: what each process of a
//! cast tree forwards, gathers and reports, with every effect returned as a
//! [`CastAction`] for the transport to carry out.
//!
//! The origin of a cast [plans](plan_cast) a tree over the processes its
//! members live in, numbering the message for each process in its sequence
//! to that process, and forwards the cast to the roots of the subtrees. Each
//! process that receives a cast hands its part to its members and forwards the
//! rest to its children; replies and delivery reports come back hop by hop.
//! When a child's link is lost, the ranks below it that had not answered fail,
//! and, at the origin, every process below it is told to skip the message it
//! may never get ([`CastAction::Skip`]).
//!
//! `L` is how the transport names a link, `S` what waits for a member's reply
//! at the origin; the table never touches either beyond moving and cloning.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use bytes::Bytes;

use super::codec::RemoteError;
use super::gather::Gather;
use super::tree::{plan_by_host, CastNode, CastNodeBuilder, Planned};
use crate::ActorId;

/// One member of a cast from this process.
pub(crate) struct Target<L> {
    /// Its rank in the cast.
    pub(crate) rank: u32,
    pub(crate) actor: ActorId,
    /// The link to its process, and that process's address.
    pub(crate) link: L,
    pub(crate) addr: String,
}

/// Plans the tree of a cast from a process on host `here` to `targets`: the
/// subtrees to forward it to, each with the link to its first process. The
/// tree enters each host once and sends at most `fanout` copies from any
/// process to other hosts and `fanout` within its own (see [`plan_by_host`]).
/// `number` gives the message its number in the sequence to a process.
pub(crate) fn plan_cast<L: Clone>(
    targets: Vec<Target<L>>,
    here: &str,
    fanout: usize,
    mut number: impl FnMut(&L) -> u64,
) -> Vec<(L, CastNode)> {
    let (mut procs, hosts) = group_by_host(targets);
    let local = hosts.iter().position(|(name, _)| name == here);
    let hosts: Vec<Range<usize>> = hosts.into_iter().map(|(_, range)| range).collect();
    plan_by_host(&hosts, local, fanout)
        .iter()
        .map(|planned| {
            let link = procs[planned.proc].link.clone();
            let mut tree = CastNode::builder();
            build(planned, &mut procs, &mut tree, &mut number);
            (link, tree.finish())
        })
        .collect()
}

/// One process reached by a cast, with its members.
struct ProcPart<L> {
    link: L,
    addr: String,
    members: Vec<(u32, ActorId)>,
}

/// Processes, and each host's name with the range of its processes.
type Grouped<L> = (Vec<ProcPart<L>>, Vec<(String, Range<usize>)>);

/// The processes `targets` reach, each with its members, grouped by host:
/// the processes, and each host's name with the range of its processes. Hosts
/// and processes keep the order in which they first appear.
fn group_by_host<L>(targets: Vec<Target<L>>) -> Grouped<L> {
    let mut hosts: Vec<(String, Vec<ProcPart<L>>)> = Vec::new();
    let mut host_index: HashMap<String, usize> = HashMap::new();
    let mut proc_index: HashMap<String, (usize, usize)> = HashMap::new();
    for target in targets {
        let (h, p) = match proc_index.get(&target.addr) {
            Some(found) => *found,
            None => {
                let host = target.actor.proc_id().host();
                let h = *host_index.entry(host.to_string()).or_insert_with(|| {
                    hosts.push((host.to_string(), Vec::new()));
                    hosts.len() - 1
                });
                hosts[h].1.push(ProcPart {
                    link: target.link,
                    addr: target.addr.clone(),
                    members: Vec::new(),
                });
                let at = (h, hosts[h].1.len() - 1);
                proc_index.insert(target.addr, at);
                at
            }
        };
        hosts[h].1[p].members.push((target.rank, target.actor));
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

/// Adds a planned subtree to `tree`, numbering the message for each process.
fn build<L>(
    planned: &Planned,
    procs: &mut [ProcPart<L>],
    tree: &mut CastNodeBuilder,
    number: &mut impl FnMut(&L) -> u64,
) {
    let part = &mut procs[planned.proc];
    let seq = number(&part.link);
    tree.enter(part.addr.clone(), seq, std::mem::take(&mut part.members));
    for child in &planned.children {
        build(child, procs, tree, number);
    }
    tree.leave();
}

/// Where what a process gathers for a cast goes.
pub(crate) enum Upward<L, S> {
    /// To the process the cast came from, under the number it gave this one.
    Parent { link: L, cast: u64 },
    /// To the callers here: this process is the origin.
    Origin { sinks: HashMap<u32, S> },
}

/// What the transport must do for the table.
#[derive(Debug, PartialEq)]
pub(crate) enum CastAction<L, S> {
    /// Send the cast, numbered `cast` for this child, with subtree `node`.
    /// If it cannot be sent, tell the table with [`CastTable::child_lost`].
    Forward { link: L, cast: u64, node: CastNode },
    /// Pass a member's reply up the link the cast came from.
    ReplyUp {
        link: L,
        cast: u64,
        rank: u32,
        result: Result<Bytes, RemoteError>,
    },
    /// Complete a caller's sink, at the origin.
    Complete {
        sink: S,
        result: Result<Bytes, RemoteError>,
    },
    /// Report to the parent that this subtree has the cast, but for the
    /// processes in `lost`.
    Delivered {
        link: L,
        cast: u64,
        lost: Vec<String>,
    },
    /// Tell the process at `addr` not to wait for its message `seq`.
    Skip { addr: String, seq: u64 },
}

/// The casts a process forwarded and still gathers for.
pub(crate) struct CastTable<L, S> {
    next_child: u64,
    next_forwarding: u64,
    /// Each open child's number: its forwarding and its place there.
    open: HashMap<u64, (u64, usize)>,
    forwardings: HashMap<u64, Forwarding<L, S>>,
}

/// One cast forwarded from this process.
struct Forwarding<L, S> {
    gather: Gather,
    up: Upward<L, S>,
    children: Vec<ChildPart<L>>,
    /// Processes below whose delivery is unknown, for the parent.
    lost: Vec<String>,
}

struct ChildPart<L> {
    id: u64,
    link: L,
    addr: String,
    /// Every process of the child's subtree, with its message number.
    procs: Vec<(String, u64)>,
}

impl<L, S> Default for CastTable<L, S> {
    fn default() -> Self {
        CastTable {
            next_child: 0,
            next_forwarding: 0,
            open: HashMap::new(),
            forwardings: HashMap::new(),
        }
    }
}

impl<L: Clone, S> CastTable<L, S> {
    /// Forwards a cast to `children` (each the link to a subtree's first
    /// process, and the subtree) and gathers what comes back for `up`;
    /// `reply` says whether members' replies are wanted.
    pub(crate) fn forward(
        &mut self,
        up: Upward<L, S>,
        reply: bool,
        children: Vec<(L, CastNode)>,
        out: &mut Vec<CastAction<L, S>>,
    ) {
        if children.is_empty() {
            if let Upward::Parent { link, cast } = up {
                out.push(CastAction::Delivered {
                    link,
                    cast,
                    lost: Vec::new(),
                });
            }
            return;
        }
        let forwarding = self.next_forwarding;
        self.next_forwarding += 1;
        let ranks = children
            .iter()
            .map(|(_, node)| if reply { node.ranks() } else { Vec::new() })
            .collect();
        let mut parts = Vec::with_capacity(children.len());
        for (child, (link, node)) in children.into_iter().enumerate() {
            let id = self.next_child;
            self.next_child += 1;
            self.open.insert(id, (forwarding, child));
            parts.push(ChildPart {
                id,
                link: link.clone(),
                addr: node.addr().to_string(),
                procs: node.procs(),
            });
            out.push(CastAction::Forward {
                link,
                cast: id,
                node,
            });
        }
        self.forwardings.insert(
            forwarding,
            Forwarding {
                gather: Gather::new(ranks),
                up,
                children: parts,
                lost: Vec::new(),
            },
        );
    }

    /// A reply for `rank` came up from the child numbered `cast`.
    pub(crate) fn reply(
        &mut self,
        cast: u64,
        rank: u32,
        result: Result<Bytes, RemoteError>,
        out: &mut Vec<CastAction<L, S>>,
    ) {
        let Some(&(forwarding, child)) = self.open.get(&cast) else {
            return;
        };
        let Some(f) = self.forwardings.get_mut(&forwarding) else {
            return;
        };
        if f.gather.reply(child, rank) {
            f.up.reply(rank, result, out);
        }
        self.finish_if_done(forwarding);
    }

    /// The child numbered `cast` reports its subtree has the cast, but for
    /// the processes in `lost`.
    pub(crate) fn delivered(
        &mut self,
        cast: u64,
        lost: Vec<String>,
        out: &mut Vec<CastAction<L, S>>,
    ) {
        let Some(&(forwarding, child)) = self.open.get(&cast) else {
            return;
        };
        let Some(f) = self.forwardings.get_mut(&forwarding) else {
            return;
        };
        f.lost_below(child, lost, out);
        if f.gather.delivered(child) {
            f.report_delivered(out);
        }
        self.finish_if_done(forwarding);
    }

    /// Nothing more will come from the child numbered `cast`: its link was
    /// lost (for `reason`), or the cast could not be sent to it.
    pub(crate) fn child_lost(&mut self, cast: u64, reason: &str, out: &mut Vec<CastAction<L, S>>) {
        let Some((forwarding, child)) = self.open.remove(&cast) else {
            return;
        };
        let Some(f) = self.forwardings.get_mut(&forwarding) else {
            return;
        };
        let lost = f.gather.lost(child);
        let why = format!(
            "lost the cast's path through {}: {reason}",
            f.children[child].addr
        );
        for rank in lost.unanswered {
            f.up.reply(rank, Err(RemoteError::Unreachable(why.clone())), out);
        }
        if lost.undelivered {
            let below = f.children[child]
                .procs
                .iter()
                .map(|(addr, _)| addr.clone())
                .collect();
            f.lost_below(child, below, out);
            if f.gather.all_delivered() {
                f.report_delivered(out);
            }
        }
        self.finish_if_done(forwarding);
    }

    /// Every child behind a link that `lost` says is lost (with the reason)
    /// is lost.
    pub(crate) fn links_lost(
        &mut self,
        lost: impl Fn(&L) -> Option<String>,
        out: &mut Vec<CastAction<L, S>>,
    ) {
        let gone: Vec<(u64, String)> = self
            .open
            .iter()
            .filter_map(|(id, (forwarding, child))| {
                let part = &self.forwardings.get(forwarding)?.children[*child];
                lost(&part.link).map(|reason| (*id, reason))
            })
            .collect();
        for (id, reason) in gone {
            self.child_lost(id, &reason, out);
        }
    }

    /// How many subtrees replies or delivery reports are awaited from.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn in_flight(&self) -> usize {
        self.open.len()
    }

    fn finish_if_done(&mut self, forwarding: u64) {
        let done = self
            .forwardings
            .get(&forwarding)
            .is_some_and(|f| f.gather.is_done());
        if done {
            if let Some(f) = self.forwardings.remove(&forwarding) {
                for part in &f.children {
                    self.open.remove(&part.id);
                }
            }
        }
    }
}

impl<L: Clone, S> Forwarding<L, S> {
    /// The processes `lost` below `child` may never get the cast.
    fn lost_below(&mut self, child: usize, lost: Vec<String>, out: &mut Vec<CastAction<L, S>>) {
        if lost.is_empty() {
            return;
        }
        match &self.up {
            Upward::Parent { .. } => self.lost.extend(lost),
            Upward::Origin { .. } => {
                // Their messages may never come: tell each not to wait.
                let lost: HashSet<String> = lost.into_iter().collect();
                for (addr, seq) in &self.children[child].procs {
                    if lost.contains(addr) {
                        out.push(CastAction::Skip {
                            addr: addr.clone(),
                            seq: *seq,
                        });
                    }
                }
            }
        }
    }

    /// Every child has reported: so does this process, to its parent.
    fn report_delivered(&mut self, out: &mut Vec<CastAction<L, S>>) {
        if let Upward::Parent { link, cast } = &self.up {
            out.push(CastAction::Delivered {
                link: link.clone(),
                cast: *cast,
                lost: std::mem::take(&mut self.lost),
            });
        }
    }
}

impl<L: Clone, S> Upward<L, S> {
    fn reply(
        &mut self,
        rank: u32,
        result: Result<Bytes, RemoteError>,
        out: &mut Vec<CastAction<L, S>>,
    ) {
        match self {
            Upward::Parent { link, cast } => out.push(CastAction::ReplyUp {
                link: link.clone(),
                cast: *cast,
                rank,
                result,
            }),
            Upward::Origin { sinks } => {
                if let Some(sink) = sinks.remove(&rank) {
                    out.push(CastAction::Complete { sink, result });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProcId;

    type Table = CastTable<&'static str, u32>;
    type Action = CastAction<&'static str, u32>;

    /// A subtree of `(addr, ranks)` processes: the first, then its children,
    /// each a leaf or given with its own children.
    fn node(addr: &str, seq: u64, ranks: &[u32], children: Vec<CastNode>) -> CastNode {
        let mut tree = CastNode::builder();
        tree.enter(
            addr.into(),
            seq,
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

    fn forwards(actions: &[Action]) -> Vec<(&'static str, u64)> {
        actions
            .iter()
            .filter_map(|a| match a {
                CastAction::Forward { link, cast, .. } => Some((*link, *cast)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_relay_passes_replies_up_once_and_reports_its_lost_children() {
        let mut table = Table::default();
        let mut out = Vec::new();
        table.forward(
            Upward::Parent {
                link: "parent",
                cast: 7,
            },
            true,
            vec![
                ("a", node("a", 0, &[1], vec![node("a2", 0, &[2], vec![])])),
                ("b", node("b", 0, &[3], vec![])),
            ],
            &mut out,
        );
        let sent = forwards(&out);
        assert_eq!(sent.len(), 2);
        let (to_a, to_b) = (sent[0].1, sent[1].1);
        assert_ne!(to_a, to_b, "each child's copy has a number of its own");
        assert!(matches!(&out[0], CastAction::Forward { node, .. } if node.ranks() == [1, 2]));
        out.clear();

        // A reply from below goes up under the parent's number, once; a rank
        // that is not below the child it came from is ignored.
        table.reply(to_a, 2, Ok(Bytes::from_static(b"two")), &mut out);
        table.reply(to_a, 2, Ok(Bytes::from_static(b"two")), &mut out);
        table.reply(to_a, 3, Ok(Bytes::new()), &mut out);
        assert_eq!(
            out,
            [CastAction::ReplyUp {
                link: "parent",
                cast: 7,
                rank: 2,
                result: Ok(Bytes::from_static(b"two"))
            }]
        );
        out.clear();

        // Delivery is reported once every child has reported or been lost.
        table.delivered(to_a, vec!["a2".into()], &mut out);
        assert!(out.is_empty());
        table.links_lost(|link| (*link == "b").then(|| "gone".to_string()), &mut out);
        match &out[0] {
            CastAction::ReplyUp {
                rank: 3,
                result: Err(RemoteError::Unreachable(why)),
                ..
            } => assert!(why.contains("through b: gone"), "{why}"),
            other => panic!("expected rank 3 to fail, got {other:?}"),
        }
        assert_eq!(
            out[1],
            CastAction::Delivered {
                link: "parent",
                cast: 7,
                lost: vec!["a2".into(), "b".into()]
            }
        );
        out.clear();

        // The last reply finishes the cast here.
        assert_eq!(table.in_flight(), 1);
        table.reply(to_a, 1, Err(RemoteError::NoReply), &mut out);
        assert!(matches!(out[..], [CastAction::ReplyUp { rank: 1, .. }]));
        assert_eq!(table.in_flight(), 0);
    }

    #[test]
    fn a_leaf_reports_delivery_at_once() {
        let mut table = Table::default();
        let mut out = Vec::new();
        let up = Upward::Parent {
            link: "parent",
            cast: 3,
        };
        table.forward(up, false, Vec::new(), &mut out);
        assert_eq!(
            out,
            [CastAction::Delivered {
                link: "parent",
                cast: 3,
                lost: vec![]
            }]
        );
        assert_eq!(table.in_flight(), 0);
    }

    #[test]
    fn the_origin_completes_each_ranks_sink_and_skips_for_the_lost() {
        let mut table = Table::default();
        let mut out = Vec::new();
        let sinks = [(0, 100), (1, 101), (2, 102)].into_iter().collect();
        table.forward(
            Upward::Origin { sinks },
            true,
            vec![(
                "a",
                node(
                    "a",
                    5,
                    &[0],
                    vec![node("a2", 6, &[1], vec![]), node("a3", 9, &[2], vec![])],
                ),
            )],
            &mut out,
        );
        let cast = forwards(&out)[0].1;
        out.clear();
        table.reply(cast, 1, Ok(Bytes::from_static(b"1")), &mut out);
        assert_eq!(
            out,
            [CastAction::Complete {
                sink: 101,
                result: Ok(Bytes::from_static(b"1"))
            }]
        );
        out.clear();
        // The relay reports that a3 may not have it: a3 is told to skip.
        table.delivered(cast, vec!["a3".into()], &mut out);
        assert_eq!(
            out,
            [CastAction::Skip {
                addr: "a3".into(),
                seq: 9
            }]
        );
        out.clear();
        // The relay is lost mid-cast: the ranks still awaited fail, naming
        // the path, and nothing is left behind.
        table.child_lost(cast, "killed", &mut out);
        let failed: Vec<u32> = out
            .iter()
            .filter_map(|a| match a {
                CastAction::Complete {
                    sink,
                    result: Err(RemoteError::Unreachable(why)),
                } if why.contains("through a: killed") => Some(*sink),
                _ => None,
            })
            .collect();
        assert_eq!(failed.len(), 2);
        assert!(failed.contains(&100) && failed.contains(&102));
        assert_eq!(table.in_flight(), 0);
        // A late reply from the lost child finds nothing.
        out.clear();
        table.reply(cast, 0, Ok(Bytes::new()), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_relay_lost_before_it_reported_delivery_makes_the_origin_skip_its_subtree() {
        let mut table = Table::default();
        let mut out = Vec::new();
        table.forward(
            Upward::Origin {
                sinks: HashMap::new(),
            },
            false,
            vec![
                ("a", node("a", 1, &[0], vec![node("a2", 2, &[1], vec![])])),
                ("b", node("b", 3, &[2], vec![])),
            ],
            &mut out,
        );
        let sent = forwards(&out);
        out.clear();
        table.delivered(sent[1].1, vec![], &mut out);
        table.child_lost(sent[0].1, "gone", &mut out);
        let mut skips: Vec<(String, u64)> = out
            .iter()
            .filter_map(|a| match a {
                CastAction::Skip { addr, seq } => Some((addr.clone(), *seq)),
                _ => None,
            })
            .collect();
        skips.sort();
        assert_eq!(skips, [("a".to_string(), 1), ("a2".to_string(), 2)]);
        assert_eq!(table.in_flight(), 0);
    }

    #[test]
    fn targets_are_grouped_by_process_and_host_and_numbered_once_each() {
        // Processes 0 and 2 on host a, 1 and 3 on host b; two members on 2.
        let target = |rank: u32, proc: usize| Target {
            rank,
            actor: ActorId::new(
                ProcId::new("j", ["a", "b"][proc % 2], proc),
                "m",
                rank.into(),
            ),
            link: proc,
            addr: format!("p{proc}"),
        };
        let targets = vec![
            target(0, 0),
            target(1, 1),
            target(2, 2),
            target(3, 3),
            target(4, 2),
        ];
        let (procs, hosts) = group_by_host(targets);
        let addrs: Vec<&str> = procs.iter().map(|p| p.addr.as_str()).collect();
        assert_eq!(addrs, ["p0", "p2", "p1", "p3"]);
        let ranks: Vec<Vec<u32>> = procs
            .iter()
            .map(|p| p.members.iter().map(|(r, _)| *r).collect())
            .collect();
        assert_eq!(ranks, [vec![0], vec![2, 4], vec![1], vec![3]]);
        assert_eq!(hosts, [("a".to_string(), 0..2), ("b".to_string(), 2..4)]);

        let targets = (0..6).map(|r| target(r, r as usize)).collect();
        let mut numbered = Vec::new();
        let tree = plan_cast(targets, "a", 2, |link| {
            numbered.push(*link);
            *link as u64 * 10
        });
        numbered.sort_unstable();
        assert_eq!(numbered, [0, 1, 2, 3, 4, 5], "each process numbered once");
        let procs: usize = tree.iter().map(|(_, node)| node.procs().len()).sum();
        assert_eq!(procs, 6);
        for (link, node) in &tree {
            assert_eq!(node.addr(), format!("p{link}"), "sent to its first process");
            assert!(node
                .procs()
                .iter()
                .all(|(addr, seq)| *addr == format!("p{}", seq / 10)));
        }
    }
}
