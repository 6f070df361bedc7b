//! Frames: what one proc says to another, and how it is cut into bytes.
//!
//! A frame on the wire is `[u32 total][u32 header_len][header][body]`, little
//! endian: a postcard-encoded [`Header`] and an opaque body (encoded endpoint
//! arguments, replies and port values). The body is written after the header
//! without being copied into an encode buffer and read back as a slice of the
//! receive buffer.
//!
//! [`FrameDecoder`] is a plain state machine fed with bytes: it validates sizes
//! before allocating and reports malformed input as a [`FrameError`], so a
//! connection can be closed cleanly on garbage.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::codec::{RemoteError, Segment};
use super::tree::CastNode;
use crate::{ActorId, CastPoint, ProcId, Shape};

/// The fixed prefix before every header: total length and header length.
pub(crate) const PREFIX: usize = 8;

/// The control part of a frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Header {
    /// The first frame each side of a connection sends.
    Hello(Hello),
    /// A message for an actor; the body holds the encoded arguments, then
    /// the `Bytes` arguments that `segments` says travel inline. `seq` numbers
    /// it among the messages from the sender's process to the receiver's;
    /// `sender` is the return address of the actor that told it, for a tell
    /// that cannot be delivered.
    Message {
        to: ActorId,
        endpoint: String,
        reply: Option<u64>,
        sender: Option<u64>,
        segments: Vec<Segment>,
        seq: u64,
        /// Where in a called mesh slice it was addressed.
        cast: Option<CastPoint>,
    },
    /// A message told by the actor at return address `sender` could not be
    /// delivered, for `reason`.
    Undeliverable {
        sender: u64,
        to: ActorId,
        endpoint: String,
        reason: String,
    },
    /// A cast for `node`'s members, to be forwarded to its children; the
    /// body is as for `Message`.
    Cast(CastFrame),
    /// The reply of the member of cast rank `rank`; on success the body holds
    /// the value.
    CastReply {
        cast: u64,
        rank: u32,
        result: Result<(), RemoteError>,
    },
    /// The sender's subtree has the cast, except the processes in `lost`,
    /// whose links were lost before they reported.
    CastDelivered { cast: u64, lost: Vec<String> },
    /// Message `seq` from the sender's process was lost with a relay: do not
    /// wait for it.
    Skip { seq: u64 },
    /// The receiver is done with the shared segment of this lease.
    SegmentReleased { lease: u64 },
    /// The reply to a request; on success the body holds the value.
    Reply {
        id: u64,
        result: Result<(), RemoteError>,
    },
    /// Stop an actor after what was sent before; acknowledged with a `Reply`.
    Stop { actor: ActorId, ack: u64, seq: u64 },
    /// A value for a port owned by the receiver; the body holds it.
    PortValue { port: u64 },
    /// The sender holds no more clones of this port.
    PortDropped { port: u64 },
    /// The sender passed its copy of this port on to the process at `holder`,
    /// which will send to it directly.
    PortHold { port: u64, holder: String },
    /// The sender is closing the connection for `reason`; nothing follows.
    Close { reason: String },
    /// Liveness probe; answered with `Pong`.
    Ping,
    /// The answer to `Ping`.
    Pong,
}

/// Who opens a connection and what for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Hello {
    /// The sender's proc.
    pub(crate) proc: ProcId,
    /// Where the sender listens.
    pub(crate) addr: String,
    /// What the connection carries.
    pub(crate) purpose: Purpose,
    /// The largest frame the sender takes.
    pub(crate) max_frame: u64,
}

/// What a connection carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Purpose {
    /// The link: every frame between the two processes.
    Link,
    /// A bulk byte stream for the service that serves `protocol`.
    Bulk { protocol: String },
}

/// A cast from the process at `origin`. Replies and delivery reports go back
/// to the sender as `CastReply` and `CastDelivered` with the same `cast`
/// number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CastFrame {
    pub(crate) origin: String,
    pub(crate) cast: u64,
    pub(crate) endpoint: String,
    /// Whether the members' replies are wanted.
    pub(crate) reply: bool,
    pub(crate) segments: Vec<Segment>,
    pub(crate) node: CastNode,
    /// The shape of the slice that was called; the ranks in `node` are
    /// ranks in it.
    pub(crate) shape: Arc<Shape>,
}

/// Malformed input: the connection it came from is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("frame header length {header} does not fit its frame of {total} bytes")]
    BadHeaderLength { header: usize, total: usize },
    #[error("undecodable frame header: {0}")]
    BadHeader(String),
}

/// Encodes `header` and the prefix for a body of `body_len` bytes.
pub(crate) fn encode_prefix(header: &Header, body_len: usize, out: &mut BytesMut) {
    let start = out.len();
    out.put_bytes(0, PREFIX);
    let encoded = postcard::to_extend(header, BytesMutWriter(out))
        .expect("frame headers always encode")
        .0;
    let header_len = encoded.len() - start - PREFIX;
    let total = PREFIX - 4 + header_len + body_len;
    encoded[start..start + 4].copy_from_slice(&(total as u32).to_le_bytes());
    encoded[start + 4..start + 8].copy_from_slice(&(header_len as u32).to_le_bytes());
}

/// Lets postcard append to a `BytesMut`.
struct BytesMutWriter<'a>(&'a mut BytesMut);

impl Extend<u8> for BytesMutWriter<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        for b in iter {
            self.0.put_u8(b);
        }
    }
}

/// Cuts a byte stream into frames.
pub(crate) struct FrameDecoder {
    buffer: BytesMut,
    max_frame: usize,
}

impl FrameDecoder {
    pub(crate) fn new(max_frame: usize) -> Self {
        FrameDecoder {
            buffer: BytesMut::with_capacity(64 * 1024),
            max_frame,
        }
    }

    /// The buffer to read more bytes into; it has room for the frame being read.
    pub(crate) fn buffer(&mut self) -> &mut BytesMut {
        if let Some(total) = self.pending_total() {
            if total <= self.max_frame {
                let want = 4 + total;
                if self.buffer.capacity() < want {
                    self.buffer.reserve(want - self.buffer.len());
                }
            }
        }
        if self.buffer.capacity() == self.buffer.len() {
            self.buffer.reserve(64 * 1024);
        }
        &mut self.buffer
    }

    /// The bytes read past the last frame taken, for a stream that stops
    /// speaking frames (a bulk stream after its hello).
    pub(crate) fn into_remaining(self) -> BytesMut {
        self.buffer
    }

    /// Appends bytes (for tests and non-buffered readers).
    #[cfg(test)]
    pub(crate) fn feed(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    fn pending_total(&self) -> Option<usize> {
        (self.buffer.len() >= 4)
            .then(|| u32::from_le_bytes(self.buffer[..4].try_into().expect("4 bytes")) as usize)
    }

    /// The next complete frame, if the buffer holds one.
    pub(crate) fn next_frame(&mut self) -> Result<Option<(Header, Bytes)>, FrameError> {
        let Some(total) = self.pending_total() else {
            return Ok(None);
        };
        if total > self.max_frame {
            return Err(FrameError::TooLarge {
                size: total,
                max: self.max_frame,
            });
        }
        if total < 4 {
            return Err(FrameError::BadHeaderLength { header: 0, total });
        }
        if self.buffer.len() < 4 + total {
            return Ok(None);
        }
        let header_len =
            u32::from_le_bytes(self.buffer[4..8].try_into().expect("4 bytes")) as usize;
        if header_len > total - 4 {
            return Err(FrameError::BadHeaderLength {
                header: header_len,
                total,
            });
        }
        self.buffer.advance(PREFIX);
        let header_bytes = self.buffer.split_to(header_len);
        let body = self.buffer.split_to(total - 4 - header_len).freeze();
        let header = postcard::from_bytes(&header_bytes)
            .map_err(|e| FrameError::BadHeader(e.to_string()))?;
        Ok(Some((header, body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(header: &Header, body: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_prefix(header, body.len(), &mut out);
        out.extend_from_slice(body);
        out.to_vec()
    }

    fn message() -> Header {
        Header::Message {
            to: ActorId::new(ProcId::new("j", "h", 1), "counter", 0),
            endpoint: "incr".into(),
            reply: Some(7),
            sender: None,
            segments: vec![],
            seq: 3,
            cast: None,
        }
    }

    #[test]
    fn frames_round_trip_whatever_the_chunking() {
        let mut wire = frame(&message(), b"hello");
        wire.extend(frame(&Header::Ping, b""));
        wire.extend(frame(&Header::PortValue { port: 3 }, &[9; 1000]));
        for chunk in [1, 3, 7, 64, wire.len()] {
            let mut decoder = FrameDecoder::new(1 << 30);
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                decoder.feed(piece);
                while let Some(f) = decoder.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), 3, "chunk size {chunk}");
            assert_eq!(got[0], (message(), Bytes::from_static(b"hello")));
            assert_eq!(got[1].0, Header::Ping);
            assert_eq!(got[2].1.len(), 1000);
        }
    }

    #[test]
    fn oversized_frames_are_refused_before_allocating() {
        let mut decoder = FrameDecoder::new(1024);
        decoder.feed(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decoder.next_frame(),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(decoder.buffer().capacity() < 1 << 20);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut decoder = FrameDecoder::new(1 << 30);
        decoder.feed(&[12, 0, 0, 0, 200, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(matches!(
            decoder.next_frame(),
            Err(FrameError::BadHeaderLength { .. })
        ));
        let mut decoder = FrameDecoder::new(1 << 30);
        decoder.feed(&[8, 0, 0, 0, 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            decoder.next_frame(),
            Err(FrameError::BadHeader(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let mut decoder = FrameDecoder::new(4096);
            decoder.feed(&data);
            while let Ok(Some(_)) = decoder.next_frame() {}
        }
    }
}
