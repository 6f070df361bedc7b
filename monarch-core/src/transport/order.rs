//! What a process hands on in its origin's order: every message, cast part
//! and stop from one process to another is numbered by the sender's session,
//! and the receiver's [`Sequencer`] for that origin hands them on in that
//! order, whichever path each took (the direct link, or relays of a cast
//! tree).

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::link::Link;
use crate::runtime::mailbox::ReturnAddress;
use crate::runtime::registry;
use crate::runtime::remote::{fail, Audience, ReplySink};
use crate::wire::frame::Header;
use crate::wire::sequence::Sequencer;
use crate::wire::{Payload, RemoteError};
use crate::{ActorId, CastPoint, Shape};

/// The order of the messages from one origin process.
pub(crate) type OrderSlot = Mutex<Sequencer<Ordered>>;

/// Something handled only in its turn among its origin's messages to this
/// process.
pub(crate) enum Ordered {
    /// A message for one actor; its reply goes back over the link it came on.
    Message {
        to: ActorId,
        endpoint: String,
        payload: Payload,
        reply: Option<ReplySink>,
        sender: Option<ReturnAddress>,
        cast: Option<CastPoint>,
    },
    /// This process's part of a cast; replies go up `up` as the cast numbered,
    /// read by `audience`.
    Cast {
        members: Vec<(u32, ActorId)>,
        /// The called slice, whose ranks the members' are.
        shape: Arc<Shape>,
        endpoint: String,
        payload: Payload,
        up: Option<(Arc<Link>, u64)>,
        audience: Audience,
    },
    /// Stop an actor, then acknowledge.
    Stop {
        actor: ActorId,
        link: Arc<Link>,
        ack: u64,
    },
}

impl Ordered {
    /// Hands the item on: this is its turn.
    pub(crate) fn handle(self) {
        match self {
            Ordered::Message {
                to,
                endpoint,
                payload,
                reply,
                sender,
                cast,
            } => registry::deliver(&to, &endpoint, payload, reply, sender, cast),
            Ordered::Cast {
                members,
                shape,
                endpoint,
                payload,
                up,
                audience,
            } => {
                for (rank, actor) in members {
                    let sink = up
                        .as_ref()
                        .map(|(link, cast)| reply_up(Arc::clone(link), *cast, rank, &audience));
                    let point = CastPoint::new(rank as usize, Arc::clone(&shape));
                    registry::deliver(&actor, &endpoint, payload.clone(), sink, None, Some(point));
                }
            }
            Ordered::Stop { actor, link, ack } => {
                tokio::spawn(async move {
                    registry::stop(&actor).await;
                    link.reply(ack, Ok(Bytes::new()));
                });
            }
        }
    }

    /// Refuses an item whose turn has passed: a duplicate, or one given up
    /// as lost with a relay that turned up after all.
    pub(crate) fn reject(self) {
        tracing::warn!("dropped a message that arrived after its turn had passed");
        let error = || RemoteError::Unreachable("the message arrived after it was given up".into());
        match self {
            Ordered::Message { reply, .. } => fail(reply, error()),
            Ordered::Cast {
                members,
                up,
                audience,
                ..
            } => {
                if let Some((link, cast)) = up {
                    for (rank, _) in members {
                        reply_up(Arc::clone(&link), cast, rank, &audience).fail(error());
                    }
                }
            }
            Ordered::Stop { link, ack, .. } => link.reply(ack, Err(error())),
        }
    }
}

/// A sink that passes a member's reply up to the process the cast came from;
/// the reply is read by `audience` (the cast's origin).
pub(crate) fn reply_up(link: Arc<Link>, cast: u64, rank: u32, audience: &Audience) -> ReplySink {
    ReplySink::for_audience(audience.clone(), move |result| {
        send_reply_up(&link, cast, rank, result)
    })
}

/// Sends a member's reply up `link`.
pub(crate) fn send_reply_up(link: &Link, cast: u64, rank: u32, result: Result<Bytes, RemoteError>) {
    let (result, body) = link.reply_frame(result);
    link.send(Header::CastReply { cast, rank, result }, body);
}
