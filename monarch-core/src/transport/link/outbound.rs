//! A link as the runtime sees it: where messages, stops and port traffic
//! for actors of the peer process go.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use super::Link;
use crate::runtime::mailbox::ReturnAddress;
use crate::runtime::remote::{Audience, Envelope, Outbound, ReplySink, Undelivered};
use crate::wire::frame::{Header, PREFIX};
use crate::wire::{Payload, RemoteError};
use crate::ActorId;

impl Outbound for Link {
    fn peer(&self) -> &str {
        &self.peer
    }

    fn audience(&self) -> &Audience {
        &self.audience
    }

    fn send(&self, envelope: Envelope) -> Result<(), Undelivered> {
        let Envelope {
            to,
            endpoint,
            payload,
            reply,
            sender,
            cast,
        } = envelope;
        if self.is_closed() {
            return Err(Undelivered {
                error: RemoteError::Unreachable(self.close_reason()),
                reply,
            });
        }
        let (segments, inline) = self.prepare_segments(payload.segments);
        let payload = Payload {
            args: payload.args,
            segments: inline,
        };
        // Only what travels in the frame counts: segments in shared memory
        // do not.
        let size = payload.len() + PREFIX;
        let limit = self.body_limit();
        if size > limit {
            self.release_segments(&segments);
            return Err(Undelivered {
                error: RemoteError::TooLarge {
                    size: size as u64,
                    limit: limit as u64,
                },
                reply,
            });
        }
        let sender = sender.map(ReturnAddress::tag);
        let seq = self.next_seq();
        let message = |reply| Header::Message {
            to,
            endpoint,
            reply,
            sender,
            segments,
            seq,
            cast,
        };
        match reply {
            Some(sink) => {
                self.request(|id| message(Some(id)), payload, sink);
                Ok(())
            }
            None if Link::send(self, message(None), payload) => Ok(()),
            None => Err(Undelivered {
                error: RemoteError::Unreachable(self.close_reason()),
                reply: None,
            }),
        }
    }

    fn stop(&self, actor: &ActorId, done: ReplySink) {
        let actor = actor.clone();
        let seq = self.next_seq();
        self.request(|ack| Header::Stop { actor, ack, seq }, Bytes::new(), done);
    }

    fn port_value(&self, port: u64, value: Bytes) -> bool {
        Link::send(self, Header::PortValue { port }, value)
    }

    fn port_dropped(&self, port: u64) {
        Link::send(self, Header::PortDropped { port }, Bytes::new());
    }

    fn port_held(&self, port: u64, holder: &str) {
        Link::send(
            self,
            Header::PortHold {
                port,
                holder: holder.to_string(),
            },
            Bytes::new(),
        );
    }

    fn is_closed(&self) -> bool {
        Link::is_closed(self)
    }

    fn closed(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.wait_closed())
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}
