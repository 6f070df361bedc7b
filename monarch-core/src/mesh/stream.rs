//! Replies to a mesh call as they arrive.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;

use crate::shape::{Point, Shape};
use crate::CallError;

/// A reply with the rank it came from.
pub(super) type Tagged<T> = (usize, Result<T, CallError>);

/// Replies to a mesh call as they arrive, each with its member's point.
pub struct MeshStream<T> {
    pub(super) shape: Shape,
    pub(super) receiver: mpsc::UnboundedReceiver<Tagged<T>>,
    pub(super) outstanding: Vec<bool>,
    pub(super) remaining: usize,
    pub(super) actors: Vec<crate::ActorId>,
    pub(super) endpoint: &'static str,
    pub(super) deadline: Pin<Box<tokio::time::Sleep>>,
    pub(super) timeout: Duration,
}

impl<T> MeshStream<T> {
    /// The next reply with its rank, or `None` when every member has answered.
    pub async fn next_reply(&mut self) -> Option<(usize, Result<T, CallError>)> {
        std::future::poll_fn(|cx| self.poll_reply(cx)).await
    }

    fn poll_reply(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Tagged<T>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if let Poll::Ready(Some((rank, result))) = self.receiver.poll_recv(cx) {
            if std::mem::take(&mut self.outstanding[rank]) {
                self.remaining -= 1;
                return Poll::Ready(Some((rank, result)));
            }
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            let Some(rank) = self.outstanding.iter().position(|o| *o) else {
                return Poll::Ready(None);
            };
            self.outstanding[rank] = false;
            self.remaining -= 1;
            return Poll::Ready(Some((
                rank,
                Err(CallError::Timeout {
                    actor: self.actors[rank].clone(),
                    endpoint: self.endpoint,
                    timeout: self.timeout,
                }),
            )));
        }
        Poll::Pending
    }
}

impl<T> Stream for MeshStream<T> {
    type Item = (Point, Result<T, CallError>);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        this.poll_reply(cx).map(|reply| {
            reply.map(|(rank, result)| (this.shape.point(rank).expect("rank of shape"), result))
        })
    }
}

impl<T> Unpin for MeshStream<T> {}
