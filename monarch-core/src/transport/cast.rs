//! Casts through a tree of processes, carried out over links: the origin's
//! side ([`Router::cast`]), a relay's ([`Router::relay`]), and the frames that
//! come back. The bookkeeping is [`crate::wire::cast`]'s; this module sends
//! what it answers.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::link::Link;
use super::order::{send_reply_up, Ordered};
use super::router::Router;
use crate::runtime::remote::{Audience, ReplySink};
use crate::wire::cast::{plan_cast, CastAction, Target, Upward};
use crate::wire::frame::{CastFrame, Header};
use crate::wire::tree::CastNode;
use crate::wire::{Payload, RemoteError};
use crate::{ActorId, Shape};

type Action = CastAction<Arc<Link>, ReplySink>;

/// One member of a cast from this process.
pub(crate) struct Member {
    /// Its rank in the cast.
    pub(crate) rank: u32,
    pub(crate) actor: ActorId,
    /// The link to its process.
    pub(crate) link: Arc<Link>,
}

/// What a forwarded cast carries to each child.
struct Forwarded<'a> {
    origin: &'a str,
    shape: &'a Arc<Shape>,
    endpoint: &'a str,
    reply: bool,
    payload: &'a Payload,
}

impl Router {
    /// Casts `endpoint` with `payload` to `members` (all in other processes)
    /// through a tree that enters each host once and sends at most `fanout`
    /// copies from any process to other hosts and `fanout` within its own.
    /// With `sinks`, each rank's reply completes its sink. Members' ranks are
    /// ranks in `shape`, the slice that was called.
    pub(crate) fn cast(
        self: &Arc<Self>,
        fanout: usize,
        shape: &Arc<Shape>,
        endpoint: &str,
        payload: &Payload,
        members: Vec<Member>,
        sinks: Option<HashMap<u32, ReplySink>>,
    ) {
        self.casts_started.fetch_add(1, Ordering::Relaxed);
        let targets = members
            .into_iter()
            .map(|m| Target {
                rank: m.rank,
                actor: m.actor,
                addr: m.link.peer().to_string(),
                link: m.link,
            })
            .collect();
        let here = crate::this_proc().proc_id().host().to_string();
        let children = plan_cast(targets, &here, fanout, |link: &Arc<Link>| link.next_seq());
        let reply = sinks.is_some();
        let up = Upward::Origin {
            sinks: sinks.unwrap_or_default(),
        };
        self.forward(
            up,
            children,
            Forwarded {
                origin: self.addr(),
                shape,
                endpoint,
                reply,
                payload,
            },
        );
    }

    /// A cast arrived from `from`: hands this process's part on in its
    /// origin's order and forwards the rest.
    pub(crate) fn relay(self: &Arc<Self>, from: &Arc<Link>, frame: CastFrame, body: Bytes) {
        let CastFrame {
            origin,
            cast,
            endpoint,
            reply,
            segments,
            node,
            shape,
        } = frame;
        let payload = self.payload(from, body, &segments).and_then(|payload| {
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
                        send_reply_up(from, cast, rank, Err(error.clone()));
                    }
                }
                let lost = node.procs().into_iter().map(|(addr, _)| addr).collect();
                from.send(Header::CastDelivered { cast, lost }, Bytes::new());
                return;
            }
        };
        let (me, children) = node.split();
        let audience = Audience {
            local: Arc::clone(&self.addr),
            holders: Arc::from([Arc::from(origin.as_str())]),
        };
        self.ordered(
            &self.order_of(&origin),
            me.seq,
            Ordered::Cast {
                members: me.members,
                shape: Arc::clone(&shape),
                endpoint: endpoint.clone(),
                payload: payload.clone(),
                up: reply.then(|| (Arc::clone(from), cast)),
                audience,
            },
        );
        let children: Vec<(Arc<Link>, CastNode)> = children
            .into_iter()
            .map(|node| (self.link(node.addr()), node))
            .collect();
        self.forward(
            Upward::Parent {
                link: Arc::clone(from),
                cast,
            },
            children,
            Forwarded {
                origin: &origin,
                shape: &shape,
                endpoint: &endpoint,
                reply,
                payload: &payload,
            },
        );
    }

    /// A reply for `rank` came up from the child numbered `cast`.
    pub(crate) fn cast_reply(
        self: &Arc<Self>,
        cast: u64,
        rank: u32,
        result: Result<Bytes, RemoteError>,
    ) {
        let mut actions = Vec::new();
        self.lock_casts().reply(cast, rank, result, &mut actions);
        self.carry_out(actions, None);
    }

    /// The child numbered `cast` reports its subtree has the cast.
    pub(crate) fn cast_delivered(self: &Arc<Self>, cast: u64, lost: Vec<String>) {
        let mut actions = Vec::new();
        self.lock_casts().delivered(cast, lost, &mut actions);
        self.carry_out(actions, None);
    }

    /// Some link closed: every child behind a closed link is lost.
    pub(crate) fn cast_links_lost(self: &Arc<Self>) {
        let mut actions = Vec::new();
        self.lock_casts().links_lost(
            |link| link.is_closed().then(|| link.close_reason()),
            &mut actions,
        );
        self.carry_out(actions, None);
    }

    fn forward(
        self: &Arc<Self>,
        up: Upward<Arc<Link>, ReplySink>,
        children: Vec<(Arc<Link>, CastNode)>,
        cast: Forwarded<'_>,
    ) {
        let mut actions = Vec::new();
        self.lock_casts()
            .forward(up, cast.reply, children, &mut actions);
        self.carry_out(actions, Some(&cast));
    }

    /// Does what the cast table asked, outside its lock.
    fn carry_out(self: &Arc<Self>, actions: Vec<Action>, cast: Option<&Forwarded<'_>>) {
        let mut lost = Vec::new();
        for action in actions {
            match action {
                CastAction::Forward {
                    link,
                    cast: id,
                    node,
                } => {
                    let Some(cast) = cast else { continue };
                    let (segments, inline) = link.prepare_segments(cast.payload.segments.clone());
                    let frame = CastFrame {
                        origin: cast.origin.to_string(),
                        cast: id,
                        endpoint: cast.endpoint.to_string(),
                        reply: cast.reply,
                        segments,
                        node,
                        shape: Arc::clone(cast.shape),
                    };
                    let body = Payload {
                        args: cast.payload.args.clone(),
                        segments: inline,
                    };
                    if !link.send(Header::Cast(frame), body) {
                        lost.push((id, link.close_reason()));
                    }
                }
                CastAction::ReplyUp {
                    link,
                    cast,
                    rank,
                    result,
                } => send_reply_up(&link, cast, rank, result),
                CastAction::Complete { sink, result } => sink.complete(result),
                CastAction::Delivered { link, cast, lost } => {
                    link.send(Header::CastDelivered { cast, lost }, Bytes::new());
                }
                CastAction::Skip { addr, seq } => {
                    self.link(&addr).send(Header::Skip { seq }, Bytes::new());
                }
            }
        }
        for (id, reason) in lost {
            let mut actions = Vec::new();
            self.lock_casts().child_lost(id, &reason, &mut actions);
            self.carry_out(actions, None);
        }
    }
}
