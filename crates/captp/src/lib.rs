//! A sans-IO Cap'n Proto RPC engine.
//!
//! - [`wire`]: an owned model of the `rpc.capnp` messages and a codec to and from real Cap'n
//!   Proto messages, hardened against hostile bytes.
//! - [`tables`]: the four per-connection tables (questions, answers, exports, imports) with the
//!   protocol's ID-reuse and reference-count rules.
//! - [`vat`]: the sans-IO engine of one vat, over any number of connections.
//! - [`app`]: what every application driving a vat does alike (settling a call, numbering its
//!   objects).
//! - [`ProtocolError`]: every rule a peer can break, each ending the connection with `Abort`.
//! - [`generated`]: the code `capnpc` generated from `schema/rpc.capnp`, checked in.

pub mod app;
pub mod error;
pub mod generated;
/// A hostile peer driving two vats (the `rpc_hostile_peer` fuzz target and its unit test).
#[cfg(any(test, feature = "hostile"))]
pub mod hostile;
pub mod probe;
pub mod stream;
pub mod tables;
pub mod vat;
pub mod wire;

pub use error::ProtocolError;
pub use tables::{Answers, Exports, Imports, Questions};
pub use vat::{
    AnswerRef, CallId, CapRef, ObjectId, Outcome, RpcBug, TableSizes, Vat, VatConfig, VatEvent,
    VatId,
};
pub use wire::{Message, WireError, decode, encode};

#[cfg(test)]
mod arb;
