//! Ordering at a receiver: messages from one origin process arrive over more
//! than one path (the direct link, and relays of a cast tree), so each carries
//! a number counted per origin and receiver, and the receiver hands them on in
//! that order.
//!
//! A [`Sequencer`] is a plain state machine: it is fed numbered items and
//! skip notices and calls back with the items that may go, in order. A
//! message lost with a relay leaves a gap; the origin, which learns of the
//! loss, sends a skip for its number so that later messages are not held
//! forever.

use std::collections::{BTreeMap, BTreeSet};

/// Puts one origin's messages back in the order they were sent.
#[derive(Debug)]
pub(crate) struct Sequencer<T> {
    /// The number of the next message to hand on.
    next: u64,
    /// Messages that arrived before an earlier one.
    waiting: BTreeMap<u64, T>,
    /// Numbers the origin said were lost, not yet reached.
    skipped: BTreeSet<u64>,
    /// Cleared when the origin is gone: nothing more will fill a gap.
    open: bool,
}

impl<T> Default for Sequencer<T> {
    fn default() -> Self {
        Sequencer {
            next: 0,
            waiting: BTreeMap::new(),
            skipped: BTreeSet::new(),
            open: true,
        }
    }
}

impl<T> Sequencer<T> {
    /// Takes message `seq`: hands it on through `deliver`, followed by any
    /// it unblocks, or holds it while an earlier one is missing. A message
    /// whose number has passed (a duplicate, or one skipped as lost) is given
    /// back.
    pub(crate) fn accept(&mut self, seq: u64, item: T, mut deliver: impl FnMut(T)) -> Option<T> {
        if seq < self.next || self.waiting.contains_key(&seq) {
            return Some(item);
        }
        if !self.open {
            // Nothing will fill the gaps of an origin that is gone.
            self.next = seq + 1;
            deliver(item);
            return None;
        }
        if seq > self.next {
            self.skipped.remove(&seq);
            self.waiting.insert(seq, item);
            return None;
        }
        deliver(item);
        self.next += 1;
        self.release(&mut deliver);
        None
    }

    /// The origin says message `seq` was lost: stop waiting for it.
    pub(crate) fn skip(&mut self, seq: u64, mut deliver: impl FnMut(T)) {
        if seq < self.next || self.waiting.contains_key(&seq) {
            return;
        }
        if seq > self.next {
            self.skipped.insert(seq);
            return;
        }
        self.next += 1;
        self.release(&mut deliver);
    }

    /// The origin is gone: hands on everything held, in order, gaps and all;
    /// later arrivals go on as they come, unless their number has passed.
    pub(crate) fn close(&mut self, mut deliver: impl FnMut(T)) {
        self.open = false;
        self.skipped.clear();
        for (seq, item) in std::mem::take(&mut self.waiting) {
            self.next = seq + 1;
            deliver(item);
        }
    }

    /// How many messages are held behind a gap.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.waiting.len()
    }

    fn release(&mut self, deliver: &mut impl FnMut(T)) {
        loop {
            if let Some(item) = self.waiting.remove(&self.next) {
                deliver(item);
            } else if !self.skipped.remove(&self.next) {
                return;
            }
            self.next += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(seq: &mut Sequencer<u64>, n: u64, out: &mut Vec<u64>) -> Option<u64> {
        seq.accept(n, n, |v| out.push(v))
    }

    #[test]
    fn in_order_messages_pass_straight_through() {
        let mut s = Sequencer::default();
        let mut out = Vec::new();
        for n in 0..5 {
            assert_eq!(feed(&mut s, n, &mut out), None);
        }
        assert_eq!(out, [0, 1, 2, 3, 4]);
        assert_eq!(s.held(), 0);
    }

    #[test]
    fn reordered_messages_are_put_back_in_order() {
        let mut s = Sequencer::default();
        let mut out = Vec::new();
        for n in [2, 0, 3, 1, 5, 4] {
            feed(&mut s, n, &mut out);
        }
        assert_eq!(out, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn duplicates_are_given_back() {
        let mut s = Sequencer::default();
        let mut out = Vec::new();
        feed(&mut s, 0, &mut out);
        feed(&mut s, 2, &mut out);
        assert_eq!(feed(&mut s, 0, &mut out), Some(0));
        assert_eq!(feed(&mut s, 2, &mut out), Some(2));
        assert_eq!(out, [0]);
    }

    #[test]
    fn a_skipped_gap_releases_what_waits_behind_it() {
        let mut s = Sequencer::default();
        let mut out = Vec::new();
        feed(&mut s, 0, &mut out);
        feed(&mut s, 3, &mut out);
        feed(&mut s, 4, &mut out);
        s.skip(2, |v| out.push(v));
        assert_eq!(out, [0], "1 is still missing");
        s.skip(1, |v| out.push(v));
        assert_eq!(out, [0, 3, 4]);
        // A lost message that turns up after all is too late.
        assert_eq!(feed(&mut s, 1, &mut out), Some(1));
        assert_eq!(feed(&mut s, 5, &mut out), None);
        assert_eq!(out, [0, 3, 4, 5]);
    }

    #[test]
    fn a_skip_for_a_message_that_arrived_changes_nothing() {
        let mut s = Sequencer::default();
        let mut out = Vec::new();
        feed(&mut s, 1, &mut out);
        s.skip(1, |v| out.push(v));
        s.skip(7, |v| out.push(v));
        feed(&mut s, 0, &mut out);
        assert_eq!(out, [0, 1]);
        // A message skipped ahead of time that arrives after all still counts.
        for n in 2..7 {
            feed(&mut s, n, &mut out);
        }
        feed(&mut s, 8, &mut out);
        assert_eq!(out, [0, 1, 2, 3, 4, 5, 6, 8]);
        let mut s = Sequencer::default();
        let mut out = Vec::new();
        s.skip(1, |v| out.push(v));
        feed(&mut s, 1, &mut out);
        feed(&mut s, 0, &mut out);
        assert_eq!(out, [0, 1]);
    }

    #[test]
    fn closing_releases_everything_held_in_order() {
        let mut s = Sequencer::default();
        let mut out = Vec::new();
        feed(&mut s, 3, &mut out);
        feed(&mut s, 1, &mut out);
        s.close(|v| out.push(v));
        assert_eq!(out, [1, 3]);
        assert_eq!(feed(&mut s, 2, &mut out), Some(2));
        assert_eq!(feed(&mut s, 9, &mut out), None);
        assert_eq!(out, [1, 3, 9]);
    }
}
