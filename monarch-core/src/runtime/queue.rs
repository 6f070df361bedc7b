//! The queue behind an actor's mailbox: many senders, one receiver, no bound.
//!
//! Senders push under a short lock; the receiver takes everything queued in
//! one go, swapping its emptied buffer for the senders' one, and then hands
//! items out without touching the lock again until its batch is done. So a
//! burst of messages costs the receiver one lock per batch rather than per
//! message, nothing is allocated until the first message, and two buffers
//! are reused for the actor's whole life.
//!
//! Items sent with [`Sender::send_urgent`] overtake the others: the receiver
//! takes every urgent item queued before any ordinary one, however many
//! ordinary ones were queued first. Each class keeps its own order.
//!
//! Closing stops new sends; what was queued stays to be taken (and refused)
//! by the receiver. A sender of a queue that never existed ([`Sender::closed`])
//! refuses everything and costs no allocation: references to actors that are
//! gone, or that live in other processes, carry one.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

/// Makes a queue.
pub(crate) fn queue<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            urgent: VecDeque::new(),
            closed: false,
            waiting: None,
        }),
        has_urgent: AtomicBool::new(false),
    });
    (
        Sender {
            shared: Some(Arc::clone(&shared)),
        },
        Receiver {
            shared,
            batch: VecDeque::new(),
        },
    )
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Whether `urgent` may hold items: read without the lock on every take.
    has_urgent: AtomicBool,
}

struct State<T> {
    items: VecDeque<T>,
    /// Items that overtake `items`.
    urgent: VecDeque<T>,
    closed: bool,
    /// The receiver, when it waits for an item.
    waiting: Option<Waker>,
}

impl<T> Shared<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The sending side; cheap to clone.
pub(crate) struct Sender<T> {
    shared: Option<Arc<Shared<T>>>,
}

/// A sender that does not keep the queue alive.
pub(crate) struct WeakSender<T> {
    shared: Weak<Shared<T>>,
}

/// The receiving side.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// Items taken from the queue and not yet handed out.
    batch: VecDeque<T>,
}

/// Why [`Receiver::try_recv`] has nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TryRecvError {
    /// Nothing is queued now.
    Empty,
    /// Nothing is queued and the queue is closed.
    Closed,
}

impl<T> Sender<T> {
    /// A sender whose queue is closed from the start.
    pub(crate) fn closed() -> Self {
        Sender { shared: None }
    }

    /// Queues `item`; gives it back if the queue is closed.
    #[inline]
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        let Some(shared) = &self.shared else {
            return Err(item);
        };
        let waiting = {
            let mut state = shared.lock();
            if state.closed {
                return Err(item);
            }
            state.items.push_back(item);
            state.waiting.take()
        };
        if let Some(receiver) = waiting {
            receiver.wake();
        }
        Ok(())
    }

    /// Queues `item` ahead of every ordinary item; gives it back if the
    /// queue is closed.
    pub(crate) fn send_urgent(&self, item: T) -> Result<(), T> {
        let Some(shared) = &self.shared else {
            return Err(item);
        };
        let waiting = {
            let mut state = shared.lock();
            if state.closed {
                return Err(item);
            }
            state.urgent.push_back(item);
            shared.has_urgent.store(true, Ordering::Release);
            state.waiting.take()
        };
        if let Some(receiver) = waiting {
            receiver.wake();
        }
        Ok(())
    }

    /// A sender that does not keep the queue alive.
    pub(crate) fn downgrade(&self) -> WeakSender<T> {
        WeakSender {
            shared: self.shared.as_ref().map_or_else(Weak::new, Arc::downgrade),
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> WeakSender<T> {
    /// The sender, if the queue still exists.
    pub(crate) fn upgrade(&self) -> Option<Sender<T>> {
        self.shared.upgrade().map(|shared| Sender {
            shared: Some(shared),
        })
    }
}

impl<T> Receiver<T> {
    /// The next item, if one is queued.
    #[inline]
    pub(crate) fn try_recv(&mut self) -> Result<T, TryRecvError> {
        if self.shared.has_urgent.load(Ordering::Acquire) {
            if let Some(item) = self.take_urgent() {
                return Ok(item);
            }
        }
        match self.batch.pop_front() {
            Some(item) => Ok(item),
            None => self.refill(),
        }
    }

    /// The first urgent item, if any.
    #[cold]
    fn take_urgent(&mut self) -> Option<T> {
        let mut state = self.shared.lock();
        let item = state.urgent.pop_front();
        if state.urgent.is_empty() {
            self.shared.has_urgent.store(false, Ordering::Release);
        }
        item
    }

    /// Takes everything queued, and the first of it.
    #[cold]
    fn refill(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        if state.items.is_empty() {
            return Err(if state.closed {
                TryRecvError::Closed
            } else {
                TryRecvError::Empty
            });
        }
        // The emptied batch buffer goes to the senders, keeping its room.
        std::mem::swap(&mut state.items, &mut self.batch);
        drop(state);
        self.batch.pop_front().ok_or(TryRecvError::Empty)
    }

    /// The next item, waiting for one; `None` once the queue is closed and
    /// empty.
    pub(crate) fn recv(&mut self) -> Recv<'_, T> {
        Recv { receiver: self }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if self.shared.has_urgent.load(Ordering::Acquire) {
            if let Some(item) = self.take_urgent() {
                return Poll::Ready(Some(item));
            }
        }
        if let Some(item) = self.batch.pop_front() {
            return Poll::Ready(Some(item));
        }
        let mut state = self.shared.lock();
        if !state.items.is_empty() {
            std::mem::swap(&mut state.items, &mut self.batch);
            drop(state);
            return Poll::Ready(self.batch.pop_front());
        }
        if state.closed {
            return Poll::Ready(None);
        }
        match &mut state.waiting {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waiting => *waiting = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Refuses new items; those queued stay to be taken.
    pub(crate) fn close(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.waiting = None;
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// The future of [`Receiver::recv`].
pub(crate) struct Recv<'a, T> {
    receiver: &'a mut Receiver<T>,
}

impl<T> Future for Recv<'_, T> {
    type Output = Option<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.receiver.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_arrive_in_order_and_closing_keeps_what_was_queued() {
        let (tx, mut rx) = queue();
        for i in 0..10 {
            tx.send(i).unwrap();
        }
        assert_eq!(rx.try_recv(), Ok(0));
        tx.send(10).unwrap();
        let mut got = vec![0];
        while let Ok(i) = rx.try_recv() {
            got.push(i);
        }
        assert_eq!(got, (0..=10).collect::<Vec<_>>());
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        tx.send(11).unwrap();
        rx.close();
        assert_eq!(tx.send(12), Err(12), "closed to new items");
        assert_eq!(rx.try_recv(), Ok(11), "what was queued stays");
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send() {
        let (tx, mut rx) = queue();
        let waiting = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.send("hello").unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, Some("hello"));
    }

    #[test]
    fn urgent_items_overtake_the_backlog_and_keep_their_own_order() {
        let (tx, mut rx) = queue();
        for i in 0..200 {
            tx.send(i).unwrap();
        }
        assert_eq!(rx.try_recv(), Ok(0));
        tx.send_urgent(1000).unwrap();
        tx.send_urgent(1001).unwrap();
        assert_eq!(rx.try_recv(), Ok(1000), "ahead of 199 queued");
        assert_eq!(rx.try_recv(), Ok(1001));
        assert_eq!(rx.try_recv(), Ok(1));
        rx.close();
        assert_eq!(tx.send_urgent(5), Err(5));
        let rest: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(rest, (2..200).collect::<Vec<_>>());
    }

    #[test]
    fn a_dropped_receiver_refuses_and_weak_senders_lapse() {
        let (tx, rx) = queue();
        let weak = tx.downgrade();
        assert!(weak.upgrade().is_some());
        drop(rx);
        assert_eq!(tx.send(1), Err(1));
        drop(tx);
        assert!(weak.upgrade().is_none());
        let closed = Sender::<u8>::closed();
        assert_eq!(closed.send(3), Err(3));
        assert!(closed.downgrade().upgrade().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_senders_on_many_threads_lose_nothing_and_keep_each_order() {
        const SENDERS: usize = 4;
        const EACH: usize = 20_000;
        let (tx, mut rx) = queue::<(usize, usize)>();
        let senders: Vec<_> = (0..SENDERS)
            .map(|s| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        tx.send((s, i)).unwrap();
                    }
                })
            })
            .collect();
        let mut next = [0usize; SENDERS];
        let mut got = 0;
        while got < SENDERS * EACH {
            let recv = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv());
            let (s, i) = recv.await.expect("no stall").expect("open");
            assert_eq!(i, next[s], "sender {s} out of order");
            next[s] += 1;
            got += 1;
        }
        for sender in senders {
            sender.join().unwrap();
        }
    }
}
