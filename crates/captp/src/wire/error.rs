//! Why bytes could not be decoded, and capnp's read errors mapped onto that.

use super::{NESTING_LIMIT, TRAVERSAL_LIMIT_WORDS};
use core::fmt;

/// Why bytes could not be decoded into a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The input ended before the segment table or a segment it announces.
    Truncated { detail: String },
    /// The segment table is malformed (no segments, or too many).
    BadFraming { detail: String },
    /// Bytes follow the end of the message.
    TrailingBytes { extra: usize },
    /// A union discriminant or enum value that this schema version does not define.
    UnknownDiscriminant { field: &'static str, value: u16 },
    /// A pointer the protocol requires is null.
    MissingField { field: &'static str },
    /// Pointers nest deeper than [`NESTING_LIMIT`].
    TooDeep { field: &'static str },
    /// Reading the message would traverse more than [`TRAVERSAL_LIMIT_WORDS`].
    TraversalLimit { field: &'static str },
    /// A text field is not valid UTF-8.
    InvalidText { field: &'static str },
    /// An `AnyPointer` holds something [`AnyValue`] does not model: a capability pointer where
    /// there is no `capTable`, or a reserved kind of pointer.
    UnsupportedValue { field: &'static str, detail: String },
    /// Any other structural fault (out-of-bounds or wrongly typed pointer, …).
    Malformed { field: &'static str, detail: String },
}

impl std::error::Error for WireError {}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated { detail } => {
                write!(f, "truncated RPC message: {detail}")
            }
            WireError::BadFraming { detail } => {
                write!(f, "bad segment table in RPC message: {detail}")
            }
            WireError::TrailingBytes { extra } => {
                write!(
                    f,
                    "{extra} unexpected bytes after the end of the RPC message"
                )
            }
            WireError::UnknownDiscriminant { field, value } => write!(
                f,
                "{field}: value {value} is not defined by this version of rpc.capnp"
            ),
            WireError::MissingField { field } => {
                write!(f, "{field}: required pointer is null")
            }
            WireError::TooDeep { field } => write!(
                f,
                "{field}: message nests deeper than the limit of {NESTING_LIMIT} pointers"
            ),
            WireError::TraversalLimit { field } => write!(
                f,
                "{field}: message exceeds the traversal limit of {TRAVERSAL_LIMIT_WORDS} words"
            ),
            WireError::InvalidText { field } => write!(f, "{field}: text is not valid UTF-8"),
            WireError::UnsupportedValue { field, detail } => {
                write!(f, "{field}: value not supported by this engine ({detail})")
            }
            WireError::Malformed { field, detail } => write!(f, "{field}: malformed: {detail}"),
        }
    }
}

/// Sorts a capnp reader error into a [`WireError`], naming the field being read.
pub(crate) fn classify(err: capnp::Error, field: &'static str) -> WireError {
    use capnp::ErrorKind as K;
    let detail = err.to_string();
    match err.kind {
        K::PrematureEndOfFile
        | K::MessageEndsPrematurely(..)
        | K::EmptySlice
        | K::EmptyBuffer
        | K::FailedToFillTheWholeBuffer => WireError::Truncated { detail },
        K::InvalidNumberOfSegments(_)
        | K::MessageSizeOverflow
        | K::FourByteLengthTooBigForUSize
        | K::FourByteSegmentLengthTooBigForUSize => WireError::BadFraming { detail },
        K::ReadLimitExceeded | K::MessageTooLarge(_) => WireError::TraversalLimit { field },
        K::MessageIsTooDeeplyNested
        | K::MessageIsTooDeeplyNestedOrContainsCycles
        | K::NestingLimitExceeded => WireError::TooDeep { field },
        K::TextContainsNonUtf8Data(_) => WireError::InvalidText { field },
        K::EnumValueOrUnionDiscriminantNotPresent(capnp::NotInSchema(value)) => {
            WireError::UnknownDiscriminant { field, value }
        }
        _ => WireError::Malformed { field, detail },
    }
}
