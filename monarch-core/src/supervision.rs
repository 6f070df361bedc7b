//! Supervision: what an owner is told when an actor it owns fails, and what
//! happens at the root of the tree.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ActorId;

/// An actor failed. Sent to its owner's `handle_supervision_event`; when the owner
/// does not handle it, the owner fails too and a new event, caused by this one,
/// climbs to the next owner.
///
/// Its `Display` prints the whole chain, outermost first:
///
/// ```text
/// top#0 failed: unhandled supervision event
///   caused by: middle#1 failed in endpoint `work`: panicked: boom
/// ```
///
/// Between processes an event travels as its chain, flattened: decoding one
/// never recurses, and a chain longer than [`SupervisionEvent::MAX_CHAIN`]
/// is refused as malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupervisionEvent {
    /// The actor that failed.
    pub actor: ActorId,
    /// The endpoint it was handling, if it failed in one.
    pub endpoint: Option<String>,
    /// How it failed.
    pub failure: Failure,
    /// The failure of an owned actor that caused this one, if any.
    pub caused_by: Option<Box<SupervisionEvent>>,
}

/// How an actor failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// Code of the actor panicked.
    Panicked(String),
    /// An endpoint returned an error while nobody awaited its reply.
    Error(String),
    /// A supervision event from an owned actor was not handled.
    UnhandledSupervision,
    /// The supervision handler itself failed.
    SupervisionHandlerFailed(String),
    /// A message this actor sent came back undeliverable and was not handled.
    UnhandledUndeliverable(String),
    /// The process the actor lived in exited, was killed or stopped answering.
    ProcLost(String),
}

impl SupervisionEvent {
    /// The longest chain of causes an event may carry between processes.
    pub const MAX_CHAIN: usize = 1024;

    /// The chain of events, this one first, down to the root cause.
    pub fn chain(&self) -> impl Iterator<Item = &SupervisionEvent> {
        std::iter::successors(Some(self), |e| e.caused_by.as_deref())
    }

    /// The innermost event of the chain: where the failure began.
    pub fn root_cause(&self) -> &SupervisionEvent {
        self.chain().last().expect("a chain has at least one event")
    }
}

/// One event of a chain, without its cause: the wire form of a chain is a
/// list of these, outermost first.
#[derive(Serialize)]
struct LinkRef<'a> {
    actor: &'a ActorId,
    endpoint: &'a Option<String>,
    failure: &'a Failure,
}

#[derive(Deserialize)]
struct Link {
    actor: ActorId,
    endpoint: Option<String>,
    failure: Failure,
}

impl Serialize for SupervisionEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Collected first: compact encoders need the length up front.
        let links: Vec<LinkRef<'_>> = self
            .chain()
            .map(|event| LinkRef {
                actor: &event.actor,
                endpoint: &event.endpoint,
                failure: &event.failure,
            })
            .collect();
        links.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SupervisionEvent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let links = Vec::<Link>::deserialize(deserializer)?;
        if links.len() > Self::MAX_CHAIN {
            return Err(serde::de::Error::custom(format!(
                "a supervision chain of {} events exceeds the limit of {}",
                links.len(),
                Self::MAX_CHAIN
            )));
        }
        let mut event: Option<Box<SupervisionEvent>> = None;
        for link in links.into_iter().rev() {
            event = Some(Box::new(SupervisionEvent {
                actor: link.actor,
                endpoint: link.endpoint,
                failure: link.failure,
                caused_by: event,
            }));
        }
        event
            .map(|event| *event)
            .ok_or_else(|| serde::de::Error::custom("an empty supervision chain"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Panicked(m) => write!(f, "panicked: {m}"),
            Failure::Error(m) => write!(f, "returned an error with no caller awaiting: {m}"),
            Failure::UnhandledSupervision => {
                f.write_str("did not handle the failure of an actor it owns")
            }
            Failure::SupervisionHandlerFailed(m) => write!(f, "supervision handler failed: {m}"),
            Failure::UnhandledUndeliverable(m) => {
                write!(f, "a message it sent was undeliverable: {m}")
            }
            Failure::ProcLost(m) => write!(f, "its process was lost: {m}"),
        }
    }
}

impl fmt::Display for SupervisionEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (depth, event) in self.chain().enumerate() {
            if depth > 0 {
                f.write_str("\n  caused by: ")?;
            }
            write!(f, "{} failed", event.actor)?;
            if let Some(endpoint) = &event.endpoint {
                write!(f, " in endpoint `{endpoint}`")?;
            }
            write!(f, ": {}", event.failure)?;
        }
        Ok(())
    }
}

/// Why an actor stopped, as its `on_stop` hook sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// It was asked to stop and drained its mailbox.
    Requested,
    /// Its owner stopped, stopping it first.
    OwnerStopping,
    /// It failed; the event is on its way to its owner.
    Failed(SupervisionEvent),
}

/// What a process does with a supervision event that reached the root of the tree:
/// an actor spawned from outside any actor failed and nobody handled it.
pub type FaultHook = Arc<dyn Fn(&SupervisionEvent) + Send + Sync>;

/// The default [`FaultHook`]: print the chain of causes and exit the process with
/// status 1.
pub fn exit_on_fault() -> FaultHook {
    Arc::new(|event: &SupervisionEvent| {
        tracing::error!(%event, "unhandled supervision event at the root; exiting");
        eprintln!("monarch: unhandled actor failure, exiting:\n  {event}");
        std::process::exit(1);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProcId;

    fn event(depth: usize) -> SupervisionEvent {
        let mut event = None;
        for i in (0..depth).rev() {
            event = Some(Box::new(SupervisionEvent {
                actor: ActorId::new(ProcId::new("j", "h", 0), "a", i as u64),
                endpoint: (i % 2 == 0).then(|| "work".to_string()),
                failure: if i + 1 == depth {
                    Failure::Panicked("boom".into())
                } else {
                    Failure::UnhandledSupervision
                },
                caused_by: event,
            }));
        }
        *event.expect("depth of at least one")
    }

    #[test]
    fn chains_travel_whole() {
        for depth in [1, 2, 5] {
            let sent = event(depth);
            let bytes = postcard::to_allocvec(&sent).unwrap();
            let got: SupervisionEvent = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(got, sent);
            assert_eq!(got.chain().count(), depth);
            assert_eq!(got.root_cause().failure, Failure::Panicked("boom".into()));
        }
    }

    #[test]
    fn overlong_and_empty_chains_are_refused() {
        let long = event(SupervisionEvent::MAX_CHAIN + 1);
        let bytes = postcard::to_allocvec(&long).unwrap();
        assert!(postcard::from_bytes::<SupervisionEvent>(&bytes).is_err());
        let empty = postcard::to_allocvec(&Vec::<u8>::new()).unwrap();
        assert!(postcard::from_bytes::<SupervisionEvent>(&empty).is_err());
    }
}
