//! What one process of a cast tree waits for from the subtrees it forwarded
//! the cast to: that each subtree has delivered it, and, for a call, a reply
//! from every member below.
//!
//! [`Gather`] is a plain state machine; the router feeds it replies, delivery
//! reports and lost links, and acts on what it answers.

use std::collections::HashSet;

/// The outstanding parts of one cast at one process, per child subtree.
#[derive(Debug)]
pub(crate) struct Gather {
    children: Vec<Child>,
    undelivered: usize,
}

#[derive(Debug)]
struct Child {
    /// Ranks below this child that have not answered.
    unanswered: HashSet<u32>,
    delivered: bool,
}

/// What losing a child's link leaves to be done.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Lost {
    /// Ranks below the child that never answered: their calls fail.
    pub(crate) unanswered: Vec<u32>,
    /// Whether the child had not yet reported delivery, so that what it was to
    /// deliver may be lost.
    pub(crate) undelivered: bool,
}

impl Gather {
    /// Waits on one child per entry of `children`, each with the ranks of its
    /// subtree that must answer (none when no replies are wanted).
    pub(crate) fn new(children: Vec<Vec<u32>>) -> Self {
        Gather {
            undelivered: children.len(),
            children: children
                .into_iter()
                .map(|ranks| Child {
                    unanswered: ranks.into_iter().collect(),
                    delivered: false,
                })
                .collect(),
        }
    }

    /// `child` passed on `rank`'s reply: `true` the first time, when it is to
    /// be passed on; a duplicate or a rank not below that child gives `false`.
    pub(crate) fn reply(&mut self, child: usize, rank: u32) -> bool {
        self.children
            .get_mut(child)
            .is_some_and(|c| c.unanswered.remove(&rank))
    }

    /// `child` reports its subtree has the cast. `true` when this makes every
    /// child delivered.
    pub(crate) fn delivered(&mut self, child: usize) -> bool {
        match self.children.get_mut(child) {
            Some(c) if !c.delivered => {
                c.delivered = true;
                self.undelivered -= 1;
                self.undelivered == 0
            }
            _ => false,
        }
    }

    /// The link to `child` was lost: nothing more comes from it.
    pub(crate) fn lost(&mut self, child: usize) -> Lost {
        let Some(c) = self.children.get_mut(child) else {
            return Lost {
                unanswered: Vec::new(),
                undelivered: false,
            };
        };
        let mut unanswered: Vec<u32> = c.unanswered.drain().collect();
        unanswered.sort_unstable();
        let undelivered = !c.delivered;
        if undelivered {
            c.delivered = true;
            self.undelivered -= 1;
        }
        Lost {
            unanswered,
            undelivered,
        }
    }

    /// Whether every child has delivered.
    pub(crate) fn all_delivered(&self) -> bool {
        self.undelivered == 0
    }

    /// Whether nothing more is awaited.
    pub(crate) fn is_done(&self) -> bool {
        self.undelivered == 0 && self.children.iter().all(|c| c.unanswered.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broadcast_is_done_once_every_child_delivered() {
        let mut g = Gather::new(vec![vec![], vec![]]);
        assert!(!g.delivered(1));
        assert!(!g.delivered(1), "a repeated report counts once");
        assert!(!g.is_done());
        assert!(g.delivered(0));
        assert!(g.is_done());
    }

    #[test]
    fn a_call_is_done_once_every_rank_answered() {
        let mut g = Gather::new(vec![vec![0, 1], vec![2]]);
        g.delivered(0);
        g.delivered(1);
        assert!(g.all_delivered());
        assert!(!g.is_done());
        assert!(g.reply(0, 1));
        assert!(!g.reply(0, 1), "a duplicate is not passed on");
        assert!(!g.reply(1, 0), "rank 0 is not below child 1");
        assert!(g.reply(1, 2));
        assert!(g.reply(0, 0));
        assert!(g.is_done());
    }

    #[test]
    fn a_lost_child_fails_its_unanswered_ranks() {
        let mut g = Gather::new(vec![vec![0, 1, 2], vec![3]]);
        g.reply(0, 1);
        let lost = g.lost(0);
        assert_eq!(
            lost,
            Lost {
                unanswered: vec![0, 2],
                undelivered: true
            }
        );
        assert!(!g.reply(0, 0), "nothing more from a lost child");
        g.delivered(1);
        assert!(g.all_delivered());
        g.reply(1, 3);
        assert!(g.is_done());
        assert_eq!(
            g.lost(1),
            Lost {
                unanswered: vec![],
                undelivered: false
            }
        );
    }
}
