//! The payloads of our test interface `Probe` (`schema/probe.capnp`) as [`AnyValue`]s, so that
//! code driving a [`Vat`](crate::Vat) can build and read real `Probe` calls without laying out
//! struct sections by hand.
//!
//! Section sizes come from the generated code (`generated::probe_capnp`); field positions are
//! those `capnp compile` assigned to the schema's fields (checked against the generated
//! builders and readers by the tests below). Reading is lenient the way Cap'n Proto readers are:
//! a missing data word reads as zero, a missing pointer as null, and a null struct as a struct
//! of defaults; anything of the wrong kind is a [`PayloadError`].

use crate::generated::probe_capnp::probe;
use crate::wire::{AnyValue, StructValue};
use capnp::traits::{HasStructSize, HasTypeId};
use core::fmt;

/// `Probe`'s interface ID (`Call.interfaceId`).
pub const PROBE_INTERFACE_ID: u64 = <probe::Client as HasTypeId>::TYPE_ID;
/// `Probe.call`'s method ordinal (`Call.methodId`).
pub const CALL_METHOD: u16 = 0;
/// `Probe.getCallSequence`'s method ordinal (`Call.methodId`).
pub const GET_CALL_SEQUENCE_METHOD: u16 = 1;

/// The params of `Probe.call @0 (ref :UInt64, seq :UInt64, arg :Probe)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeCall {
    /// `ref`: the caller's name for the reference it called through.
    pub ref_id: u64,
    /// `seq`: the call's number on that reference.
    pub seq: u64,
    /// `arg`: a capability, as an index into the payload's cap table (`None`: null).
    pub arg: Option<u32>,
}

/// The results of `Probe.call`: `(n :UInt64, cap :Probe)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeReturn {
    /// `n`: how many calls reached the callee before this one.
    pub n: u64,
    /// `cap`: a capability, as an index into the payload's cap table (`None`: null).
    pub cap: Option<u32>,
}

/// The params of `Probe.getCallSequence @1 (expected :UInt32)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetCallSequence {
    pub expected: u32,
}

/// The results of `Probe.getCallSequence`: `(n :UInt32)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallSequence {
    pub n: u32,
}

/// Why a value is not the payload asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// The content is not a struct (nor null, which reads as a struct of defaults).
    NotAStruct {
        payload: &'static str,
        found: &'static str,
    },
    /// An interface field holds something other than a capability pointer or null.
    NotACapability {
        field: &'static str,
        found: &'static str,
    },
}

impl std::error::Error for PayloadError {}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadError::NotAStruct { payload, found } => {
                write!(f, "{payload}: expected a struct, found {found}")
            }
            PayloadError::NotACapability { field, found } => {
                write!(f, "{field}: expected a capability or null, found {found}")
            }
        }
    }
}

/// A struct of `size`'s section sizes with the given data words and pointers (the rest zero
/// or null).
fn build(
    size: capnp::private::layout::StructSize,
    words: &[u64],
    caps: &[Option<u32>],
) -> AnyValue {
    let mut data = vec![0u64; usize::from(size.data)];
    for (slot, w) in data.iter_mut().zip(words) {
        *slot = *w;
    }
    let mut pointers = vec![AnyValue::Null; usize::from(size.pointers)];
    for (slot, c) in pointers.iter_mut().zip(caps) {
        if let Some(index) = c {
            *slot = AnyValue::Capability(*index);
        }
    }
    AnyValue::Struct(StructValue { data, pointers })
}

/// The struct in `v`, or the empty struct for null.
fn as_struct<'a>(v: &'a AnyValue, payload: &'static str) -> Result<&'a StructValue, PayloadError> {
    static EMPTY: StructValue = StructValue {
        data: Vec::new(),
        pointers: Vec::new(),
    };
    match v {
        AnyValue::Struct(s) => Ok(s),
        AnyValue::Null => Ok(&EMPTY),
        other => Err(PayloadError::NotAStruct {
            payload,
            found: other.kind(),
        }),
    }
}

/// The capability in pointer field `index`.
fn cap_field(
    s: &StructValue,
    index: usize,
    field: &'static str,
) -> Result<Option<u32>, PayloadError> {
    match s.pointer(index) {
        AnyValue::Null => Ok(None),
        AnyValue::Capability(i) => Ok(Some(*i)),
        other => Err(PayloadError::NotACapability {
            field,
            found: other.kind(),
        }),
    }
}

/// The `UInt32` at 32-bit offset 0 (the low half of word 0, little-endian).
fn low_u32(s: &StructValue) -> u32 {
    (s.word(0) & 0xffff_ffff) as u32
}

impl ProbeCall {
    pub fn to_value(&self) -> AnyValue {
        build(
            <probe::call_params::Builder<'_> as HasStructSize>::STRUCT_SIZE,
            &[self.ref_id, self.seq],
            &[self.arg],
        )
    }

    pub fn from_value(v: &AnyValue) -> Result<Self, PayloadError> {
        let s = as_struct(v, "Probe.call params")?;
        Ok(ProbeCall {
            ref_id: s.word(0),
            seq: s.word(1),
            arg: cap_field(s, 0, "Probe.call params.arg")?,
        })
    }
}

impl ProbeReturn {
    pub fn to_value(&self) -> AnyValue {
        build(
            <probe::call_results::Builder<'_> as HasStructSize>::STRUCT_SIZE,
            &[self.n],
            &[self.cap],
        )
    }

    pub fn from_value(v: &AnyValue) -> Result<Self, PayloadError> {
        let s = as_struct(v, "Probe.call results")?;
        Ok(ProbeReturn {
            n: s.word(0),
            cap: cap_field(s, 0, "Probe.call results.cap")?,
        })
    }
}

impl GetCallSequence {
    pub fn to_value(&self) -> AnyValue {
        build(
            <probe::get_call_sequence_params::Builder<'_> as HasStructSize>::STRUCT_SIZE,
            &[u64::from(self.expected)],
            &[],
        )
    }

    pub fn from_value(v: &AnyValue) -> Result<Self, PayloadError> {
        let s = as_struct(v, "Probe.getCallSequence params")?;
        Ok(GetCallSequence {
            expected: low_u32(s),
        })
    }
}

impl CallSequence {
    pub fn to_value(&self) -> AnyValue {
        build(
            <probe::get_call_sequence_results::Builder<'_> as HasStructSize>::STRUCT_SIZE,
            &[u64::from(self.n)],
            &[],
        )
    }

    pub fn from_value(v: &AnyValue) -> Result<Self, PayloadError> {
        let s = as_struct(v, "Probe.getCallSequence results")?;
        Ok(CallSequence { n: low_u32(s) })
    }
}

#[cfg(test)]
mod tests;
