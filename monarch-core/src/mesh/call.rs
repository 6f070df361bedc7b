//! Mesh calls and their adverbs: how one call reaches every member (directly
//! or through a cast tree) and how the replies come back.

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::stream::{MeshStream, Tagged};
use super::value_mesh::ValueMesh;
use super::MeshCore;
use crate::runtime::remote::{encoding_for, Audience, ReplySink};
use crate::shape::{CastPoint, Point};
use crate::transport::{Link, Member};
use crate::wire::codec::decode;
use crate::wire::{Payload, RemoteError};
use crate::{Actor, ActorRef, CallError, SendError};

/// A mesh call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    /// A member's call failed.
    #[error("rank {rank} {point} failed: {error}")]
    Member {
        /// The member's rank in the mesh called.
        rank: usize,
        /// Its point.
        point: Point,
        /// What went wrong.
        error: CallError,
    },
    /// A member could not be sent to.
    #[error("rank {rank} {point} is unreachable: {error}")]
    Send {
        /// The member's rank in the mesh called.
        rank: usize,
        /// Its point.
        point: Point,
        /// What went wrong.
        error: SendError,
    },
    /// `call_one` on a mesh that does not have exactly one actor.
    #[error("call_one needs a mesh of exactly one actor, this one has {len}; slice it first")]
    NotOne {
        /// The mesh's size.
        len: usize,
    },
    /// The arguments could not be encoded.
    #[error("the arguments to {endpoint} could not be encoded: {error}")]
    Encode {
        /// The endpoint called.
        endpoint: &'static str,
        /// What the encoder said.
        error: RemoteError,
    },
}

/// A call to one endpoint of every member of a mesh (or of one, for `choose`),
/// not yet sent. Finish it with an adverb.
#[must_use = "a mesh call does nothing until finished with an adverb such as `.broadcast()` or `.call()`"]
pub struct MeshCall<'a, A: Actor, T, F> {
    pub(super) mesh: &'a MeshCore<A>,
    pub(super) endpoint: &'static str,
    pub(super) args: F,
    pub(super) timeout: Duration,
    pub(super) _reply: PhantomData<fn() -> T>,
}

impl<'a, A, T, F> MeshCall<'a, A, T, F>
where
    A: Actor,
    T: DeserializeOwned + Send + 'static,
    F: Fn() -> Result<Payload, RemoteError>,
{
    /// How long to wait for replies (default [`DEFAULT_CALL_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Tells every member, without waiting for replies. Every reachable member
    /// is sent to; the first member that could not be is reported.
    pub fn broadcast(self) -> Result<(), MeshError> {
        let members = self.mesh.members();
        let args = self.encode(&members)?;
        let failed = self.send_all(&members, args, |_, _| None);
        match failed.into_iter().next() {
            Some((rank, error)) => Err(MeshError::Send {
                rank,
                point: self.point(rank),
                error,
            }),
            None => Ok(()),
        }
    }

    /// Asks every member and gathers the replies by rank and point. Any
    /// member's failure fails the call, naming that member.
    pub async fn call(self) -> Result<ValueMesh<T>, MeshError> {
        let shape = self.mesh.shape.clone();
        let mut stream = self.stream();
        let mut values: Vec<Option<T>> = (0..shape.len()).map(|_| None).collect();
        while let Some((rank, result)) = stream.next_reply().await {
            match result {
                Ok(value) => values[rank] = Some(value),
                Err(error) => {
                    let point = shape.point(rank).expect("rank of this shape");
                    return Err(MeshError::Member { rank, point, error });
                }
            }
        }
        Ok(ValueMesh {
            shape,
            values: values
                .into_iter()
                .map(|v| v.expect("every rank replied"))
                .collect(),
        })
    }

    /// Asks every member and folds the replies into `init` with `fold` as
    /// they arrive (in arrival order, not rank order), so that no reply is
    /// kept once folded: Monarch's `accumulate`. Any member's failure fails
    /// the call, naming that member. With a generated endpoint `count`,
    /// `mesh.count().reduce(0, |sum, n| sum + n).await?` sums the counts.
    pub async fn reduce<B>(self, init: B, mut fold: impl FnMut(B, T) -> B) -> Result<B, MeshError> {
        let shape = self.mesh.shape.clone();
        let mut stream = self.stream();
        let mut acc = init;
        while let Some((rank, result)) = stream.next_reply().await {
            match result {
                Ok(value) => acc = fold(acc, value),
                Err(error) => {
                    let point = shape.point(rank).expect("rank of this shape");
                    return Err(MeshError::Member { rank, point, error });
                }
            }
        }
        Ok(acc)
    }

    /// Asks the mesh's only member; an error unless it has exactly one.
    pub async fn call_one(self) -> Result<T, MeshError> {
        let len = self.mesh.shape.len();
        if len != 1 {
            return Err(MeshError::NotOne { len });
        }
        let mut values = self.call().await?;
        Ok(values.values.pop().expect("one value"))
    }

    /// Asks one member: the one with the fewest calls in flight through this
    /// mesh, taking turns among equals.
    pub async fn choose(self) -> Result<T, MeshError> {
        let members = self.mesh.members();
        let start = self.mesh.next.fetch_add(1, Ordering::Relaxed);
        let rank = (0..members.len())
            .map(|i| (start + i) % members.len())
            .min_by_key(|&i| self.mesh.in_flight[members[i].0].load(Ordering::Relaxed))
            .expect("a mesh has members");
        let (base, member) = members[rank];
        let args = self.encode(&[(base, member)])?;
        let counter = &self.mesh.in_flight[base];
        counter.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let point = CastPoint::new(rank, Arc::new(self.mesh.shape.clone()));
        let sent = member.core().send_encoded(
            self.endpoint,
            args,
            Some(reply_sink::<T>(tx, 0, member, self.endpoint)),
            Some(point),
        );
        let result = match sent {
            Err(error) => Err(MeshError::Send {
                rank,
                point: self.point(rank),
                error,
            }),
            Ok(()) => match tokio::time::timeout(self.timeout, rx.recv()).await {
                Ok(Some((_, Ok(value)))) => Ok(value),
                Ok(Some((_, Err(error)))) => Err(self.member_error(rank, error)),
                Ok(None) => Err(self.member_error(
                    rank,
                    CallError::NoReply {
                        actor: member.actor_id().clone(),
                        endpoint: self.endpoint,
                    },
                )),
                Err(_) => Err(self.member_error(
                    rank,
                    CallError::Timeout {
                        actor: member.actor_id().clone(),
                        endpoint: self.endpoint,
                        timeout: self.timeout,
                    },
                )),
            },
        };
        counter.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// Asks every member; replies arrive as they come, each with its member's
    /// point. The stream ends when every member has answered (a member that
    /// does not answer within the timeout yields a [`CallError::Timeout`]).
    pub fn stream(self) -> MeshStream<T> {
        let members = self.mesh.members();
        let shape = self.mesh.shape.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        match self.encode(&members) {
            Ok(args) => {
                let failed = self.send_all(&members, args, |rank, member| {
                    Some(reply_sink::<T>(tx.clone(), rank, member, self.endpoint))
                });
                for (rank, error) in failed {
                    let _ = tx.send((rank, Err(send_to_call_error(error, self.endpoint))));
                }
            }
            Err(MeshError::Encode { error, .. }) => {
                for (rank, (_, member)) in members.iter().enumerate() {
                    let error = error
                        .clone()
                        .into_call_error(member.actor_id(), self.endpoint);
                    let _ = tx.send((rank, Err(error)));
                }
            }
            Err(_) => unreachable!("encode fails only with MeshError::Encode"),
        }
        let actors = members.iter().map(|(_, m)| m.actor_id().clone()).collect();
        MeshStream {
            shape,
            receiver: rx,
            outstanding: vec![true; members.len()],
            remaining: members.len(),
            actors,
            endpoint: self.endpoint,
            deadline: Box::pin(tokio::time::sleep(self.timeout)),
            timeout: self.timeout,
        }
    }

    /// Sends the encoded call to every member, with the reply sink `sink`
    /// makes for each rank (`None` for a tell): through a cast tree when the
    /// members live in enough other processes (see [`CastTree`]), else one send
    /// each. Returns the members that could not be sent to.
    fn send_all(
        &self,
        members: &[(usize, &ActorRef<A>)],
        args: Payload,
        sink: impl Fn(usize, &ActorRef<A>) -> Option<ReplySink>,
    ) -> Vec<(usize, SendError)> {
        let router = crate::transport::current();
        let tree = self
            .mesh
            .tree
            .or_else(|| router.as_ref().map(|r| r.config.cast_tree()))
            .unwrap_or_default();
        // Processes are counted only for a mesh that could reach a tree's
        // threshold: a small mesh's cast pays nothing for trees.
        let through_tree = router.is_some() && tree.applies(members.len()) && {
            let remote_procs: HashSet<&str> = members
                .iter()
                .filter_map(|(_, m)| m.core().outbound().map(|o| o.peer()))
                .collect();
            tree.applies(remote_procs.len())
        };
        let mut failed = Vec::new();
        let mut targets = Vec::new();
        let mut sinks = HashMap::new();
        let shape = Arc::new(self.mesh.shape.clone());
        for (rank, (_, member)) in members.iter().enumerate() {
            let sink = sink(rank, member);
            let link = member
                .core()
                .outbound()
                .filter(|o| through_tree && !o.is_closed())
                .and_then(|o| Arc::clone(o).into_any().downcast::<Link>().ok());
            match link {
                Some(link) => {
                    targets.push(Member {
                        rank: rank as u32,
                        actor: member.actor_id().clone(),
                        link,
                    });
                    if let Some(sink) = sink {
                        sinks.insert(rank as u32, sink);
                    }
                }
                None => {
                    let point = CastPoint::new(rank, Arc::clone(&shape));
                    let sent =
                        member
                            .core()
                            .send_encoded(self.endpoint, args.clone(), sink, Some(point));
                    if let Err(error) = sent {
                        failed.push((rank, error));
                    }
                }
            }
        }
        if let (false, Some(router)) = (targets.is_empty(), router) {
            let wants_replies = !sinks.is_empty();
            router.cast(
                tree.fanout,
                &shape,
                self.endpoint,
                &args,
                targets,
                wants_replies.then_some(sinks),
            );
        }
        failed
    }

    /// Encodes the arguments once for `members`, leasing any ports in them to
    /// each remote member.
    fn encode(&self, members: &[(usize, &ActorRef<A>)]) -> Result<Payload, MeshError> {
        let mut outbounds = members.iter().filter_map(|(_, m)| m.core().outbound());
        let encoded = match outbounds.next() {
            // Refs and ports in the arguments are encoded for every member's
            // process: each holder keeps a leased port open.
            Some(first) => {
                let first = Audience::of(first.as_ref());
                let holders = first
                    .holders
                    .iter()
                    .cloned()
                    .chain(outbounds.flat_map(|o| o.audience().holders.iter().cloned()))
                    .collect();
                let audience = Audience {
                    local: first.local,
                    holders,
                };
                encoding_for(&audience, &self.args)
            }
            None => (self.args)(),
        };
        encoded.map_err(|error| MeshError::Encode {
            endpoint: self.endpoint,
            error,
        })
    }

    fn point(&self, rank: usize) -> Point {
        self.mesh.shape.point(rank).expect("rank of this shape")
    }

    fn member_error(&self, rank: usize, error: CallError) -> MeshError {
        MeshError::Member {
            rank,
            point: self.point(rank),
            error,
        }
    }
}

fn send_to_call_error(error: SendError, endpoint: &'static str) -> CallError {
    match error {
        SendError::Undeliverable { actor, reason } => CallError::Undeliverable {
            actor,
            endpoint,
            reason,
        },
        SendError::Codec { actor, reason, .. } => CallError::Codec {
            actor,
            endpoint,
            reason,
        },
        SendError::TooLarge { actor, size, limit } => CallError::TooLarge {
            actor,
            endpoint,
            size,
            limit,
        },
    }
}

fn reply_sink<T: DeserializeOwned + Send + 'static>(
    tx: mpsc::UnboundedSender<Tagged<T>>,
    rank: usize,
    member: &ActorRef<impl Actor>,
    endpoint: &'static str,
) -> ReplySink {
    let actor = member.actor_id().clone();
    ReplySink::new(move |result| {
        let value = result
            .and_then(|bytes| decode::<T>(&bytes))
            .map_err(|e| e.into_call_error(&actor, endpoint));
        let _ = tx.send((rank, value));
    })
}
