//! Cast trees: how a cast to many processes is split so that no process sends
//! more than a few copies of it, and the form in which each relay learns its
//! part.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::ActorId;

/// How casts (`broadcast`, `call`, `stream`) to meshes spread over many
/// processes fan out.
///
/// A cast that reaches at least `min_procs` other processes goes through a
/// tree: it enters each other host once, at one of its processes, which fans
/// out within that host, and no process sends more than `fanout` copies to
/// other hosts nor more than `fanout` within its own. Replies come back the
/// same way. Smaller casts are sent to every process directly. Ordering holds
/// either way: messages from one sender to one actor are handled in the order
/// sent, whichever path each took.
///
/// A mesh without a setting of its own follows its process's
/// [`Config::cast_tree`](crate::Config::cast_tree): by default `fanout = 8,
/// min_procs = 32`.
///
/// ```
/// use monarch_core::CastTree;
///
/// let tree = CastTree { fanout: 4, min_procs: 16 };
/// assert!(tree.applies(64));
/// assert!(!tree.applies(8));
/// assert!(!CastTree::DIRECT.applies(10_000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CastTree {
    /// How many processes each sends a cast on to (at least 2 for a tree).
    pub fanout: usize,
    /// The fewest processes a cast must reach to go through a tree.
    pub min_procs: usize,
}

impl CastTree {
    /// Never a tree: one send per process.
    pub const DIRECT: CastTree = CastTree {
        fanout: 0,
        min_procs: usize::MAX,
    };

    /// Whether a cast reaching `procs` other processes goes through a tree.
    pub fn applies(&self, procs: usize) -> bool {
        self.fanout >= 2 && procs >= self.min_procs.max(2) && procs > self.fanout
    }
}

impl Default for CastTree {
    /// `fanout = 8, min_procs = 32`.
    fn default() -> Self {
        CastTree {
            fanout: 8,
            min_procs: 32,
        }
    }
}

/// One process of a planned tree, by its index in the list planned over.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Planned {
    pub(crate) proc: usize,
    pub(crate) children: Vec<Planned>,
}

/// Plans a tree over processes grouped by host: `hosts[i]` is the range of
/// host `i`'s processes, and `local` the sender's own host, if any is among
/// them. The tree runs over hosts first, entering each other host once, at its
/// first process, which fans out to the rest of its host; the sender fans out
/// over its own host's processes itself. No process sends more than `fanout`
/// copies to other hosts, nor more than `fanout` within its own.
pub(crate) fn plan_by_host(
    hosts: &[Range<usize>],
    local: Option<usize>,
    fanout: usize,
) -> Vec<Planned> {
    let fanout = fanout.max(1);
    let remote: Vec<usize> = (0..hosts.len()).filter(|h| Some(*h) != local).collect();
    let mut planned: Vec<Planned> = plan_range(0..remote.len(), fanout)
        .into_iter()
        .map(|host| enter_host(host, &remote, hosts, fanout))
        .collect();
    if let Some(local) = local {
        planned.extend(plan_range(hosts[local].clone(), fanout));
    }
    planned
}

/// A planned host (an index into `remote`) as the processes it stands for.
fn enter_host(host: Planned, remote: &[usize], hosts: &[Range<usize>], fanout: usize) -> Planned {
    let block = &hosts[remote[host.proc]];
    let mut children: Vec<Planned> = host
        .children
        .into_iter()
        .map(|child| enter_host(child, remote, hosts, fanout))
        .collect();
    children.extend(plan_range(block.start + 1..block.end, fanout));
    Planned {
        proc: block.start,
        children,
    }
}

/// Plans a tree over the processes in `range`: each planned node with the
/// subtree it forwards to. Every process appears once; no node has more than
/// `fanout` children; subtrees differ in size by at most one, so the depth is
/// about log base `fanout` of the number of processes.
fn plan_range(range: Range<usize>, fanout: usize) -> Vec<Planned> {
    let len = range.len();
    let parts = fanout.min(len);
    let mut start = range.start;
    (0..parts)
        .map(|part| {
            let size = len / parts + usize::from(part < len % parts);
            let planned = Planned {
                proc: start,
                children: plan_range(start + 1..start + size, fanout),
            };
            start += size;
            planned
        })
        .collect()
}

/// The part of a cast tree below (and including) one process, as it travels:
/// its processes in depth-first order, each with the size of its subtree.
///
/// The form is flat so that decoding it never recurses, however deep a
/// malformed tree claims to be; [`CastNode::split`] checks the sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CastNode {
    nodes: Vec<WireNode>,
}

/// One process of a cast tree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireNode {
    /// The process's address.
    pub(crate) addr: String,
    /// The message's number from the origin to this process.
    pub(crate) seq: u64,
    /// The actors here, each with its rank in the cast.
    pub(crate) members: Vec<(u32, ActorId)>,
    /// How many nodes its subtree has, itself included.
    size: u32,
}

/// A cast tree whose subtree sizes do not add up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed cast tree: {0}")]
pub(crate) struct MalformedTree(&'static str);

impl CastNode {
    /// A subtree built depth first: `enter` adds a process and makes it the
    /// parent of those added until the matching `leave`.
    pub(crate) fn builder() -> CastNodeBuilder {
        CastNodeBuilder {
            nodes: Vec::new(),
            open: Vec::new(),
        }
    }

    /// The subtree's own process, first.
    pub(crate) fn addr(&self) -> &str {
        self.nodes.first().map_or("", |n| n.addr.as_str())
    }

    /// Checks that the root and its children's subtrees fit together (each
    /// subtree checks its own level when it is split in turn).
    pub(crate) fn check(&self) -> Result<(), MalformedTree> {
        let root = self.nodes.first().ok_or(MalformedTree("no nodes"))?;
        if root.size as usize != self.nodes.len() {
            return Err(MalformedTree("the root's size is not the tree's"));
        }
        let mut at = 1;
        while at < self.nodes.len() {
            let size = self.nodes[at].size as usize;
            if size == 0 || size > self.nodes.len() - at {
                return Err(MalformedTree("a subtree overruns its parent"));
            }
            at += size;
        }
        Ok(())
    }

    /// This process's part and the subtrees of its children. Call
    /// [`CastNode::check`] first: a malformed tree splits without panicking,
    /// but into nonsense.
    pub(crate) fn split(self) -> (WireNode, Vec<CastNode>) {
        let mut nodes = self.nodes.into_iter();
        let Some(root) = nodes.next() else {
            return (WireNode::default(), Vec::new());
        };
        let mut children = Vec::new();
        while let Some(first) = nodes.next() {
            let rest = (first.size as usize).saturating_sub(1);
            let mut child = Vec::with_capacity(rest + 1);
            child.push(first);
            child.extend(nodes.by_ref().take(rest));
            children.push(CastNode { nodes: child });
        }
        (root, children)
    }

    /// The ranks of this subtree.
    pub(crate) fn ranks(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .flat_map(|n| n.members.iter().map(|(rank, _)| *rank))
            .collect()
    }

    /// The address and message number of every process of this subtree.
    pub(crate) fn procs(&self) -> Vec<(String, u64)> {
        self.nodes.iter().map(|n| (n.addr.clone(), n.seq)).collect()
    }
}

/// Builds a [`CastNode`] depth first.
pub(crate) struct CastNodeBuilder {
    nodes: Vec<WireNode>,
    /// The nodes entered and not yet left.
    open: Vec<usize>,
}

impl CastNodeBuilder {
    /// Adds a process below the innermost one entered, and enters it.
    pub(crate) fn enter(&mut self, addr: String, seq: u64, members: Vec<(u32, ActorId)>) {
        self.open.push(self.nodes.len());
        self.nodes.push(WireNode {
            addr,
            seq,
            members,
            size: 0,
        });
    }

    /// Leaves the innermost process entered: its subtree is complete.
    pub(crate) fn leave(&mut self) {
        if let Some(at) = self.open.pop() {
            self.nodes[at].size = (self.nodes.len() - at) as u32;
        }
    }

    /// Adds a whole subtree below the innermost process entered.
    #[cfg(test)]
    pub(crate) fn append(&mut self, subtree: CastNode) {
        self.nodes.extend(subtree.nodes);
    }

    /// The subtree, once every process entered has been left.
    pub(crate) fn finish(self) -> CastNode {
        debug_assert!(self.open.is_empty(), "every node entered is left");
        CastNode { nodes: self.nodes }
    }
}

#[cfg(test)]
// A list holding one host's range of processes is what `&[0..n]` means here.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    fn collect(nodes: &[Planned], depth: usize, seen: &mut Vec<(usize, usize)>) {
        for node in nodes {
            seen.push((node.proc, depth));
            collect(&node.children, depth + 1, seen);
        }
    }

    #[test]
    fn every_process_is_reached_once_within_the_fanout() {
        for procs in 0..200 {
            for fanout in 2..6 {
                let tree = plan_by_host(&[0..procs], Some(0), fanout);
                let mut seen = Vec::new();
                collect(&tree, 1, &mut seen);
                let mut ids: Vec<usize> = seen.iter().map(|(p, _)| *p).collect();
                ids.sort_unstable();
                assert_eq!(
                    ids,
                    (0..procs).collect::<Vec<_>>(),
                    "{procs} procs, fanout {fanout}"
                );
                fn widest(nodes: &[Planned]) -> usize {
                    nodes
                        .iter()
                        .map(|n| widest(&n.children))
                        .chain([nodes.len()])
                        .max()
                        .unwrap_or(0)
                }
                assert!(widest(&tree) <= fanout);
                let depth = seen.iter().map(|(_, d)| *d).max().unwrap_or(0);
                // A full tree of this depth would hold at least this many.
                let mut capacity = 0;
                let mut level = 1;
                for _ in 0..depth.saturating_sub(1) {
                    level *= fanout;
                    capacity += level;
                }
                assert!(
                    depth <= 1 || capacity < procs,
                    "{procs} procs, fanout {fanout}: depth {depth} is more than needed"
                );
            }
        }
    }

    #[test]
    fn hosts_are_entered_once_each() {
        // Five hosts of four processes; the sender lives on the third.
        let hosts: Vec<Range<usize>> = (0..5).map(|h| h * 4..h * 4 + 4).collect();
        let host_of = |p: usize| p / 4;
        for fanout in 2..6 {
            let tree = plan_by_host(&hosts, Some(2), fanout);
            let mut seen = Vec::new();
            collect(&tree, 1, &mut seen);
            let mut ids: Vec<usize> = seen.iter().map(|(p, _)| *p).collect();
            ids.sort_unstable();
            assert_eq!(ids, (0..20).collect::<Vec<_>>());
            // Count the copies that cross hosts, and each sender's fan-out.
            fn edges(
                nodes: &[Planned],
                from: Option<usize>,
                out: &mut Vec<(Option<usize>, usize)>,
            ) {
                for node in nodes {
                    out.push((from, node.proc));
                    edges(&node.children, Some(node.proc), out);
                }
            }
            let mut all = Vec::new();
            edges(&tree, None, &mut all);
            let sender_host = |from: Option<usize>| from.map_or(2, host_of);
            let crossing: Vec<_> = all
                .iter()
                .filter(|(from, to)| sender_host(*from) != host_of(*to))
                .collect();
            assert_eq!(crossing.len(), 4, "each other host is entered once");
            for sender in std::iter::once(None).chain((0..20).map(Some)) {
                let out: Vec<usize> = all
                    .iter()
                    .filter(|(f, _)| *f == sender)
                    .map(|(_, t)| *t)
                    .collect();
                let remote = out
                    .iter()
                    .filter(|t| host_of(**t) != sender_host(sender))
                    .count();
                assert!(
                    remote <= fanout && out.len() - remote <= fanout,
                    "fan-out {fanout}"
                );
            }
        }
        // All on one host that is not the sender's: one copy crosses.
        let tree = plan_by_host(&[0..6], None, 8);
        assert_eq!(tree.len(), 1);
        assert_eq!(tree[0].children.len(), 5);
        // All on the sender's host: the sender fans out itself.
        let tree = plan_by_host(&[0..6], Some(0), 2);
        assert_eq!(tree.iter().map(|p| p.proc).collect::<Vec<_>>(), [0, 3]);
    }

    #[test]
    fn small_casts_go_direct() {
        let tree = CastTree {
            fanout: 4,
            min_procs: 2,
        };
        assert!(!tree.applies(4), "four procs fit in one fan-out");
        assert!(tree.applies(5));
        let tree = plan_by_host(&[0..3], Some(0), 4);
        assert_eq!(tree.iter().filter(|p| p.children.is_empty()).count(), 3);
    }

    fn id(i: u64) -> ActorId {
        ActorId::new(crate::ProcId::new("j", "h", 0), "a", i)
    }

    /// a -> {b -> {c}, d}
    fn sample() -> CastNode {
        let mut tree = CastNode::builder();
        tree.enter("a".into(), 4, vec![(0, id(0))]);
        tree.enter("b".into(), 9, vec![(1, id(1)), (2, id(2))]);
        tree.enter("c".into(), 1, vec![(3, id(3))]);
        tree.leave();
        tree.leave();
        tree.enter("d".into(), 2, vec![(4, id(4))]);
        tree.leave();
        tree.leave();
        tree.finish()
    }

    #[test]
    fn a_node_lists_and_splits_its_subtree() {
        let node = sample();
        assert_eq!(node.addr(), "a");
        assert_eq!(node.ranks(), [0, 1, 2, 3, 4]);
        assert_eq!(node.procs()[1], ("b".to_string(), 9));
        node.check().unwrap();
        let (me, children) = node.split();
        assert_eq!((me.addr.as_str(), me.seq, me.members.len()), ("a", 4, 1));
        let addrs: Vec<&str> = children.iter().map(CastNode::addr).collect();
        assert_eq!(addrs, ["b", "d"]);
        assert_eq!(children[0].ranks(), [1, 2, 3]);
        children[0].check().unwrap();
        let (b, below_b) = children[0].clone().split();
        assert_eq!(b.addr, "b");
        assert_eq!(below_b.len(), 1);
        assert_eq!(below_b[0].clone().split().1, vec![]);
    }

    #[test]
    fn malformed_trees_are_errors_not_panics() {
        let good = sample();
        let mut wrong_root = good.clone();
        wrong_root.nodes[0].size = 9;
        assert!(wrong_root.check().is_err());
        let mut overrun = good.clone();
        overrun.nodes[1].size = 7;
        assert!(overrun.check().is_err());
        let _ = overrun.split();
        let mut empty_child = good.clone();
        empty_child.nodes[1].size = 0;
        assert!(empty_child.check().is_err());
        let _ = empty_child.split();
        assert!(CastNode { nodes: vec![] }.check().is_err());
        // A deep tree decodes without recursing.
        let mut deep = CastNode::builder();
        for i in 0..100_000 {
            deep.enter(format!("p{i}"), 0, vec![]);
        }
        for _ in 0..100_000 {
            deep.leave();
        }
        let bytes = postcard::to_allocvec(&deep.finish()).unwrap();
        let decoded: CastNode = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded.procs().len(), 100_000);
    }
}
