//! Runs the reference Rust implementation of Cap'n Proto RPC, the `capnp-rpc` crate, as a
//! peer vat inside the deterministic simulation.
//!
//! [`CapnpRpcVat`] owns one `capnp_rpc::RpcSystem`, a tiny FIFO executor and a message-level
//! [`capnp_rpc::VatNetwork`] (not the two-party byte-stream network). Every RPC message that
//! capnp-rpc sends is framed with the standard segment table (`capnp::serialize::write_message`)
//! into one byte vector in an outbox; every incoming message is one byte vector the driver
//! pushes, parsed with bounded [`network::reader_options`]. The driver decides when each message
//! is delivered, so the simulation's scheduler, not a socket, orders the conversation.
//!
//! The vat serves (optionally) a `Probe` bootstrap object, our test interface from
//! `crates/captp/schema/probe.capnp`: each local probe object records the `(ref, seq)` of the
//! calls that reach it ([`CapnpRpcVat::arrivals`]), so an outside oracle can check E-order.
//!
//! # Determinism
//!
//! Nothing here reads the clock, the OS random source or spawns a thread. The executor polls
//! tasks in wake order (so capnp-rpc dispatching a local call on its first poll is ordered
//! too), and every table of the driver is a `BTreeMap`, so a run is a function of the driver's
//! calls, with one caveat inside capnp-rpc 0.27.3 itself:
//!
//! - its answer and import tables are std hash maps (with random hash keys), iterated only when
//!   the connection is torn down (`ConnectionState::disconnect`). By then the connection is
//!   already marked broken, so no message can be sent in that order (the `Abort` it sends is
//!   written after the iteration and carries only the error); what could vary between
//!   processes is the order in which answer pipelines are dropped and promise imports are
//!   rejected, and so the order in which waiting tasks are woken. The driver does not expose
//!   that order: results are kept by answer handle and handed out only when the driver asks
//!   ([`CapnpRpcVat::poll_answer`]), and a torn down connection delivers no call to a local
//!   probe object. `tests/determinism.rs` runs a script with 31 endings (quiet, links cut,
//!   `shutdown`, garbage delivered, at many points) in four child processes and finds every
//!   byte sent, every outcome and every arrival identical, and even the hidden order in which
//!   answers completed (`CapnpRpcVat::diagnostic_completion_order`) identical. Scenarios
//!   should still treat a disconnect of this peer as the one place where capnp-rpc's internal
//!   order is not guaranteed.
//! - other `HashMap`s (`exports_by_cap`, `client_downcast_map`) are keyed by heap addresses but
//!   only looked up, never iterated.
//!
//! capnp-rpc may print `ERROR: ...` on standard output when a system-level task fails; that text
//! is not part of anything this crate reports.
//!
//! # Behaviour of capnp-rpc 0.27.3 seen through this driver
//!
//! - A bootstrap capability never resolves: every call on it targets
//!   `promisedAnswer(bootstrap question)`, the import its `Return` carried is released at once,
//!   and the bootstrap question is finished only when the capability is dropped. Pipelined
//!   caps of ordinary calls do resolve, to `importedCap` targets.
//! - Every teardown sends an `Abort` first (also on receiving one, and on end of stream, where
//!   it cannot arrive). Abort reasons are `capnp::Error` `Display` text, e.g.
//!   `"Disconnected: Peer disconnected."`, `"Disconnected: client requested disconnect"`, or
//!   for a received `Abort` `"<Kind>: remote exception: <reason>"`; a message that does not
//!   parse aborts with the parser's text (`"Premature end of file"`, ...).
//! - `Provide`, `Accept` and `Join` are answered with `Unimplemented`; an `Unimplemented` that
//!   echoes anything but a `Resolve` makes it abort ("Peer did not implement required RPC
//!   message type."). A `Finish` for an unknown
//!   question is ignored; a `Return` for one aborts.

pub mod generated;

mod executor;
pub mod network;
mod probe;
pub mod trace;
mod vat;

pub use generated::probe_capnp::probe as probe_interface;
pub use probe::{Answered, Arrival, ProbeLog};
pub use trace::{describe_message, message_kind};
pub use vat::{AnswerHandle, AnswerOutcome, CapHandle, CapnpRpcVat, Closed, VatError};
