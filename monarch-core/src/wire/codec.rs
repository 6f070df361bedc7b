//! The codec: how values become bytes for another process and back, and how a
//! message's `Bytes` arguments travel beside its encoded arguments.
//!
//! Values are encoded with postcard. A message's arguments are a [`Payload`]:
//! the encoded ones, and the `bytes::Bytes` ones kept apart as segments, each
//! described in the frame header by a [`Segment`] (in the frame's body, or in
//! a shared-memory file of the sender's that the transport maps), so that a
//! large buffer is never copied into or out of an encode buffer.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::ErrorReport;

/// Why a remote call produced no value, as it travels between processes. The
/// caller turns it back into a [`crate::CallError`] naming the actor and
/// endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteError {
    /// The actor is not running: it stopped (for the reason given) or never
    /// existed in that process.
    #[error("{0}")]
    Undeliverable(String),
    /// The endpoint returned this error.
    #[error("{0}")]
    Endpoint(ErrorReport),
    /// The endpoint panicked with this message.
    #[error("panicked: {0}")]
    Panicked(String),
    /// The actor stopped, or dropped a deferred reply, without replying.
    #[error("stopped without replying")]
    NoReply,
    /// A call made on the caller's behalf timed out after this long.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The message or reply could not be encoded or decoded.
    #[error("{0}")]
    Codec(String),
    /// The message is larger than a frame may be, so it was not sent.
    #[error("a message of {size} bytes is over the frame limit of {limit} bytes")]
    TooLarge {
        /// The message's size.
        size: u64,
        /// The largest frame allowed.
        limit: u64,
    },
    /// The process is unreachable: it exited, was killed or stopped answering.
    #[error("{0}")]
    Unreachable(String),
    /// A request to the process (a spawn, say) failed there.
    #[error("{0}")]
    Failed(String),
}

/// A message's arguments in wire form: the serde-encoded ones, and the
/// `bytes::Bytes` arguments kept apart as segments, so that a large buffer is
/// written out and read back without being copied into or out of an encode
/// buffer.
#[derive(Clone, Debug, Default)]
pub struct Payload {
    /// The postcard encoding of the arguments other than `Bytes` ones.
    pub args: Bytes,
    /// The `Bytes` arguments, in order.
    pub segments: Vec<Bytes>,
}

impl From<Bytes> for Payload {
    fn from(args: Bytes) -> Self {
        Payload {
            args,
            segments: Vec::new(),
        }
    }
}

impl Payload {
    /// The number of bytes it takes on the wire.
    pub(crate) fn len(&self) -> usize {
        self.args.len() + self.segments.iter().map(Bytes::len).sum::<usize>()
    }

    /// Takes the next segment, for generated code.
    pub fn next_segment(segments: &mut std::vec::IntoIter<Bytes>) -> Result<Bytes, RemoteError> {
        segments
            .next()
            .ok_or_else(|| RemoteError::Codec("a Bytes argument is missing".into()))
    }
}

/// How one `Bytes` segment of a message travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Segment {
    /// In the frame's body, after the encoded arguments, this many bytes.
    Inline(u64),
    /// In a shared-memory file of the sending process, open there as
    /// descriptor `fd`; `lease` goes back to the sender once the receiver is
    /// done with it.
    Shared {
        pid: u32,
        fd: i32,
        len: u64,
        lease: u64,
    },
}

/// A received segment, before the transport has mapped the shared ones.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// The bytes, a slice of the frame's body.
    Inline(Bytes),
    /// A shared-memory segment to map.
    Shared {
        pid: u32,
        fd: i32,
        len: u64,
        lease: u64,
    },
}

/// A frame body split into the encoded arguments and the segments.
#[derive(Debug)]
pub(crate) struct SplitBody {
    pub(crate) args: Bytes,
    pub(crate) parts: Vec<Received>,
}

/// A body whose segments do not fit it: the error, and the shared segments
/// it names, for the transport to release.
#[derive(Debug)]
pub(crate) struct BadBody {
    pub(crate) error: RemoteError,
    pub(crate) shared: Vec<Received>,
}

/// Splits a frame body into the encoded arguments and the segments `segments`
/// describes: inline ones are zero-copy slices of the body, shared ones are
/// returned as they are described, for the transport to map.
pub(crate) fn split_body(mut body: Bytes, segments: &[Segment]) -> Result<SplitBody, BadBody> {
    let inline: Option<u64> = segments
        .iter()
        .map(|s| match s {
            Segment::Inline(len) => *len,
            Segment::Shared { .. } => 0,
        })
        .try_fold(0u64, u64::checked_add);
    let received = |s: &Segment, body: &mut Bytes| match *s {
        Segment::Inline(len) => Received::Inline(body.split_to(len as usize)),
        Segment::Shared {
            pid,
            fd,
            len,
            lease,
        } => Received::Shared {
            pid,
            fd,
            len,
            lease,
        },
    };
    let args_len = inline.and_then(|inline| (body.len() as u64).checked_sub(inline));
    let Some(args_len) = args_len else {
        return Err(BadBody {
            error: RemoteError::Codec(format!(
                "the message's segments claim more than its {} bytes",
                body.len()
            )),
            shared: segments
                .iter()
                .filter(|s| matches!(s, Segment::Shared { .. }))
                .map(|s| received(s, &mut Bytes::new()))
                .collect(),
        });
    };
    let args = body.split_to(args_len as usize);
    let parts = segments.iter().map(|s| received(s, &mut body)).collect();
    Ok(SplitBody { args, parts })
}

/// Encodes a value for the wire. On failure the error carries the message the
/// failing `Serialize` gave (postcard keeps only that there was one).
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, RemoteError> {
    postcard::to_allocvec(value).map(Bytes::from).map_err(|e| {
        let why = match e {
            postcard::Error::SerdeSerCustom => custom_message(value),
            _ => None,
        };
        RemoteError::Codec(match why {
            Some(why) => format!("cannot encode {}: {why}", std::any::type_name::<T>()),
            None => format!("cannot encode {}: {e}", std::any::type_name::<T>()),
        })
    })
}

/// Decodes a value from the wire.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RemoteError> {
    postcard::from_bytes(bytes).map_err(|e| {
        RemoteError::Codec(format!(
            "cannot decode {} from {} bytes: {e}",
            std::any::type_name::<T>(),
            bytes.len()
        ))
    })
}

/// The message of the first custom error `value`'s serialisation raises,
/// found by serialising it again into nothing with a serializer that keeps
/// messages. Only run after postcard reported a custom error.
fn custom_message<T: Serialize + ?Sized>(value: &T) -> Option<String> {
    value.serialize(Discard).err().map(|Why(message)| message)
}

/// A serializer that writes nothing and keeps the message of a custom error.
struct Discard;

/// The message of a custom serialisation error.
#[derive(Debug)]
struct Why(String);

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Why {}

impl serde::ser::Error for Why {
    fn custom<M: fmt::Display>(message: M) -> Self {
        Why(message.to_string())
    }
}

macro_rules! discard_scalars {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, _: $ty) -> Result<(), Why> { Ok(()) })*
    };
}

impl serde::Serializer for Discard {
    type Ok = ();
    type Error = Why;
    type SerializeSeq = Discard;
    type SerializeTuple = Discard;
    type SerializeTupleStruct = Discard;
    type SerializeTupleVariant = Discard;
    type SerializeMap = Discard;
    type SerializeStruct = Discard;
    type SerializeStructVariant = Discard;

    discard_scalars!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_none(self) -> Result<(), Why> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Why> {
        value.serialize(Discard)
    }
    fn serialize_unit(self) -> Result<(), Why> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Why> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Why> {
        value.serialize(Discard)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), Why> {
        value.serialize(Discard)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Discard, Why> {
        Ok(Discard)
    }
    fn serialize_tuple(self, _: usize) -> Result<Discard, Why> {
        Ok(Discard)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Discard, Why> {
        Ok(Discard)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Discard, Why> {
        Ok(Discard)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Discard, Why> {
        Ok(Discard)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Discard, Why> {
        Ok(Discard)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Discard, Why> {
        Ok(Discard)
    }
}

impl serde::ser::SerializeSeq for Discard {
    type Ok = ();
    type Error = Why;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Why> {
        value.serialize(Discard)
    }
    fn end(self) -> Result<(), Why> {
        Ok(())
    }
}

impl serde::ser::SerializeTuple for Discard {
    type Ok = ();
    type Error = Why;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Why> {
        value.serialize(Discard)
    }
    fn end(self) -> Result<(), Why> {
        Ok(())
    }
}

impl serde::ser::SerializeTupleStruct for Discard {
    type Ok = ();
    type Error = Why;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Why> {
        value.serialize(Discard)
    }
    fn end(self) -> Result<(), Why> {
        Ok(())
    }
}

impl serde::ser::SerializeTupleVariant for Discard {
    type Ok = ();
    type Error = Why;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Why> {
        value.serialize(Discard)
    }
    fn end(self) -> Result<(), Why> {
        Ok(())
    }
}

impl serde::ser::SerializeMap for Discard {
    type Ok = ();
    type Error = Why;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Why> {
        key.serialize(Discard)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Why> {
        value.serialize(Discard)
    }
    fn end(self) -> Result<(), Why> {
        Ok(())
    }
}

impl serde::ser::SerializeStruct for Discard {
    type Ok = ();
    type Error = Why;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Why> {
        value.serialize(Discard)
    }
    fn end(self) -> Result<(), Why> {
        Ok(())
    }
}

impl serde::ser::SerializeStructVariant for Discard {
    type Ok = ();
    type Error = Why;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Why> {
        value.serialize(Discard)
    }
    fn end(self) -> Result<(), Why> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_split_into_arguments_and_segments_without_copies() {
        let body = Bytes::from_static(b"argsAAABB");
        let SplitBody { args, parts } = split_body(
            body.clone(),
            &[
                Segment::Inline(3),
                Segment::Shared {
                    pid: 1,
                    fd: 2,
                    len: 9,
                    lease: 4,
                },
                Segment::Inline(2),
            ],
        )
        .unwrap();
        assert_eq!(args, Bytes::from_static(b"args"));
        assert_eq!(args.as_ptr(), body.as_ptr(), "a slice of the body");
        assert_eq!(parts[0], Received::Inline(Bytes::from_static(b"AAA")));
        assert!(matches!(parts[1], Received::Shared { lease: 4, .. }));
        assert_eq!(parts[2], Received::Inline(Bytes::from_static(b"BB")));
    }

    #[test]
    fn segments_longer_than_the_body_are_an_error_that_releases_the_shared_ones() {
        let shared = Segment::Shared {
            pid: 1,
            fd: 2,
            len: 9,
            lease: 4,
        };
        let bad = split_body(Bytes::from_static(b"ab"), &[Segment::Inline(3), shared]).unwrap_err();
        assert!(matches!(bad.error, RemoteError::Codec(_)));
        assert!(matches!(
            bad.shared[..],
            [Received::Shared { lease: 4, .. }]
        ));
        let overflow = split_body(
            Bytes::new(),
            &[Segment::Inline(u64::MAX), Segment::Inline(2)],
        );
        assert!(overflow.is_err(), "lengths that overflow are refused");
    }

    struct Refuses;

    impl Serialize for Refuses {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("this value stays home"))
        }
    }

    #[test]
    fn an_encoding_error_keeps_the_serializers_message() {
        let error = encode(&(1u32, vec![Some(Refuses)])).unwrap_err();
        let RemoteError::Codec(text) = error else {
            panic!("not a codec error: {error:?}");
        };
        assert!(text.contains("this value stays home"), "{text}");
        assert!(text.contains("Refuses"), "names the type: {text}");
    }

    #[test]
    fn a_decoding_error_names_the_type() {
        let error = decode::<(u64, String)>(&[1]).unwrap_err();
        assert!(error.to_string().contains("String"), "{error}");
    }
}
