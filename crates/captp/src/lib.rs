//! A sans-IO Cap'n Proto RPC engine (work in progress; see issue 5).
//!
//! - [`wire`]: an owned model of the `rpc.capnp` messages and a codec to and from real Cap'n
//!   Proto messages, hardened against hostile bytes.
//! - [`tables`]: the four per-connection tables (questions, answers, exports, imports) with the
//!   protocol's ID-reuse and reference-count rules.
//! - [`connection`]: the sans-IO state machine of one side of a connection (bootstrap,
//!   call/return, finish, release).
//! - [`ProtocolError`]: every rule a peer can break, each ending the connection with `Abort`.
//! - [`generated`]: the code `capnpc` generated from `schema/rpc.capnp`, checked in.

pub mod connection;
pub mod error;
pub mod generated;
pub mod probe;
pub mod stream;
pub mod tables;
pub mod vat;
pub mod wire;

pub use connection::{CallTarget, Cap, Connection, Event, ObjectId, Outcome};
pub use error::ProtocolError;
pub use tables::{Answers, Exports, Imports, Questions};
pub use vat::{AnswerRef, CallId, CapRef, RpcBug, TableSizes, Vat, VatConfig, VatEvent, VatId};
pub use wire::{Message, WireError, decode, encode};

#[cfg(test)]
mod arb;
