//! A session: what one process keeps about its conversation with one peer
//! process, apart from any I/O.
//!
//! The session alone numbers the ordered frames sent to the peer (every
//! message and stop, whichever path it takes; see [`super::sequence`]), hands
//! out the ids of requests and holds whatever waits for their replies, and
//! keeps time for heartbeats. It never reads a clock: the driver tells it when
//! a frame was heard with [`Session::heard`], asks [`Session::poll_timeout`]
//! when to wake it, and calls [`Session::handle_timeout`] then, so tests drive
//! it with simulated time.
//!
//! ```text
//! driver                      session
//!   |-- next_seq() ------------> 7          (number a message)
//!   |-- request(sink) ---------> id 3       (an ask; the sink waits)
//!   |-- heard(now) ------------>            (a frame came in)
//!   |-- complete(3) -----------> sink       (its reply came in)
//!   |-- poll_timeout() --------> t          (wake me at t)
//!   |-- handle_timeout(t) -----> Ping | Lost
//!   |-- close() ---------------> [sinks]    (fail whatever still waits)
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How a session keeps its peer under watch: it pings every `interval`, and a
/// peer silent for `timeout` is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Heartbeat {
    /// How often a ping is sent.
    pub(crate) interval: Duration,
    /// How long the peer may be silent before it is declared lost.
    pub(crate) timeout: Duration,
}

/// What a timeout asks the driver to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timeout {
    /// Send a ping: the peer hears from this side at least every interval.
    Ping,
    /// The peer has been silent for longer than the heartbeat timeout: close
    /// the session (the session is closed already).
    Lost {
        /// How long the peer had been silent.
        silent_for: Duration,
    },
}

/// One process's state of its conversation with one peer. `P` is what waits
/// for a reply: the transport keeps reply sinks here, tests keep numbers.
#[derive(Debug)]
pub(crate) struct Session<P> {
    heartbeat: Heartbeat,
    /// The number of the next ordered frame to the peer.
    next_seq: u64,
    /// The id of the next request.
    next_request: u64,
    /// Requests sent and not answered.
    pending: HashMap<u64, P>,
    closed: bool,
    last_heard: Instant,
    next_ping: Instant,
}

impl<P> Session<P> {
    /// A session opened at `now`, as if the peer had just been heard.
    pub(crate) fn new(heartbeat: Heartbeat, now: Instant) -> Self {
        Session {
            heartbeat,
            next_seq: 0,
            next_request: 1,
            pending: HashMap::new(),
            closed: false,
            last_heard: now,
            next_ping: now + heartbeat.interval,
        }
    }

    /// Numbers the next ordered frame to the peer. This is the only place
    /// where such numbers are made: a frame sent directly and a cast relayed
    /// to the peer through other processes both take theirs here.
    pub(crate) fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Registers `waiting` for the reply to a new request and returns the
    /// request's id, or gives `waiting` back if the session is closed.
    pub(crate) fn request(&mut self, waiting: P) -> Result<u64, P> {
        if self.closed {
            return Err(waiting);
        }
        let id = self.next_request;
        self.next_request += 1;
        self.pending.insert(id, waiting);
        Ok(id)
    }

    /// The reply to request `id` arrived: what waits for it, or `None` for a
    /// request that is unknown or was answered already.
    pub(crate) fn complete(&mut self, id: u64) -> Option<P> {
        self.pending.remove(&id)
    }

    /// Takes back what waits for request `id` (its frame could not be sent).
    pub(crate) fn cancel(&mut self, id: u64) -> Option<P> {
        self.pending.remove(&id)
    }

    /// A frame from the peer was heard at `now`.
    pub(crate) fn heard(&mut self, now: Instant) {
        if now > self.last_heard {
            self.last_heard = now;
        }
    }

    /// When the driver must next call [`Session::handle_timeout`]; `None`
    /// once the session is closed.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        (!self.closed).then(|| self.next_ping.min(self.last_heard + self.heartbeat.timeout))
    }

    /// The time the driver woke for has come: what to do, if anything. A
    /// peer found silent for too long closes the session.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Option<Timeout> {
        if self.closed {
            return None;
        }
        let silent_for = now.saturating_duration_since(self.last_heard);
        if silent_for >= self.heartbeat.timeout {
            self.closed = true;
            return Some(Timeout::Lost { silent_for });
        }
        if now >= self.next_ping {
            self.next_ping = now + self.heartbeat.interval;
            return Some(Timeout::Ping);
        }
        None
    }

    /// Closes the session: no more requests are taken, and everything that
    /// waits for a reply is handed back, to be failed. Idempotent.
    pub(crate) fn close(&mut self) -> Vec<P> {
        self.closed = true;
        self.pending.drain().map(|(_, waiting)| waiting).collect()
    }

    /// Whether the session is closed.
    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// How many requests wait for their reply.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEAT: Heartbeat = Heartbeat {
        interval: Duration::from_millis(500),
        timeout: Duration::from_secs(3),
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn sequence_numbers_count_up_from_zero() {
        let mut s = Session::<()>::new(BEAT, Instant::now());
        assert_eq!(
            (0..5).map(|_| s.next_seq()).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn replies_complete_their_request_once() {
        let mut s = Session::new(BEAT, Instant::now());
        let a = s.request("a").unwrap();
        let b = s.request("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(s.complete(b), Some("b"));
        assert_eq!(s.complete(b), None, "a duplicate reply finds nothing");
        assert_eq!(s.complete(999), None, "nor does a reply to no request");
        assert_eq!(s.pending(), 1);
        assert_eq!(s.cancel(a), Some("a"));
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn closing_hands_back_everything_that_waits_and_refuses_more() {
        let mut s = Session::new(BEAT, Instant::now());
        s.request(1).unwrap();
        s.request(2).unwrap();
        let mut failed = s.close();
        failed.sort_unstable();
        assert_eq!(failed, [1, 2]);
        assert_eq!(s.request(3), Err(3));
        assert!(s.close().is_empty());
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn an_idle_session_pings_every_interval() {
        let start = Instant::now();
        let mut s = Session::<()>::new(BEAT, start);
        assert_eq!(s.poll_timeout(), Some(start + ms(500)));
        assert_eq!(s.handle_timeout(start + ms(100)), None, "too early");
        assert_eq!(s.handle_timeout(start + ms(500)), Some(Timeout::Ping));
        assert_eq!(s.poll_timeout(), Some(start + ms(1000)));
        // The peer answers; pings go on at the same pace.
        s.heard(start + ms(600));
        assert_eq!(s.handle_timeout(start + ms(1000)), Some(Timeout::Ping));
        assert!(!s.is_closed());
    }

    #[test]
    fn a_silent_peer_is_lost_at_the_timeout_and_not_before() {
        let start = Instant::now();
        let mut s = Session::<()>::new(BEAT, start);
        // Pings go out, nothing comes back.
        let mut pings = 0;
        while s.poll_timeout().unwrap() < start + ms(3000) {
            let now = s.poll_timeout().unwrap();
            assert_eq!(s.handle_timeout(now), Some(Timeout::Ping));
            pings += 1;
        }
        assert_eq!(pings, 5);
        assert_eq!(s.poll_timeout(), Some(start + ms(3000)));
        assert_eq!(
            s.handle_timeout(start + ms(3000)),
            Some(Timeout::Lost {
                silent_for: ms(3000)
            })
        );
        assert!(s.is_closed());
        assert_eq!(s.handle_timeout(start + ms(9000)), None);
    }

    #[test]
    fn hearing_from_the_peer_puts_off_its_loss() {
        let start = Instant::now();
        let mut s = Session::<()>::new(BEAT, start);
        s.heard(start + ms(2500));
        assert_eq!(s.handle_timeout(start + ms(3000)), Some(Timeout::Ping));
        assert_eq!(s.handle_timeout(start + ms(5499)), Some(Timeout::Ping));
        assert!(!s.is_closed());
        assert_eq!(
            s.handle_timeout(start + ms(5500)),
            Some(Timeout::Lost {
                silent_for: ms(3000)
            })
        );
        // A frame heard out of order (an earlier time) changes nothing.
        let mut s = Session::<()>::new(BEAT, start + ms(100));
        s.heard(start);
        assert_eq!(s.poll_timeout(), Some(start + ms(600)));
    }
}
