//! An owned model of the Cap'n Proto RPC messages of `schema/rpc.capnp`, and a codec between it
//! and real Cap'n Proto messages (segment-table framing, as `capnp::serialize` writes them).
//!
//! The engine works on [`Message`] values only: plain data, comparable and printable, so that the
//! state machine, the oracles and the traces never hold borrowed capnp readers. [`encode`] builds
//! a real `rpc.capnp` `Message` struct; [`decode`] reads one back and treats the bytes as hostile:
//! every failure is a [`WireError`] and nothing in the bytes can make it panic or allocate more
//! than the input and the [`READER_OPTIONS`] limits allow.
//!
//! Schema version: the `rpc.capnp` shipped with capnp-rpc 0.27.3. It predates the 2024–25 level-3
//! revision, so there is no `ThirdPartyAnswer` message, `Accept.embargo` is a plain flag, and the
//! third-party identifiers (`RecipientId`, `ProvisionId`, `ThirdPartyCapId`) are `AnyPointer`s.
//!
//! Modelling choices, each for simplicity until a later issue needs more:
//! - Every `AnyPointer` (payload content and the third-party / join / sturdy-ref identifiers) is
//!   an [`AnyValue`]: a schema-less model of Cap'n Proto's pointers (null, structs with their
//!   raw sections, lists, blobs and capability pointers). Capability pointers are accepted only
//!   in a payload's content, and only with an index inside that payload's `capTable`; anywhere
//!   else they are [`WireError::UnsupportedValue`]. See [`AnyValue`] for what round-trips
//!   exactly.
//! - Fields that are obsolete in this schema (`Exception.obsoleteIsCallersFault`,
//!   `obsoleteDurability`) and `CapDescriptor.attachedFd` (no file descriptors in a simulation)
//!   are not modelled: decoding ignores them, encoding leaves them at their defaults.
//! - A null pointer where the protocol needs a struct (a message body, a call target, a payload,
//!   an exception, a promised answer) is [`WireError::MissingField`] rather than the schema's
//!   all-zero default, because a default there (e.g. "import 0") would silently mean something.
//!   Null lists (`transform`, `capTable`) and null text read as empty, as peers omit them.

use capnp::message::ReaderOptions;
mod codec;
mod error;
mod value;

pub use codec::{decode, encode};
pub use error::WireError;
#[cfg(test)]
pub(crate) use value::{placeholder, placeholder_index, placeholder_table};

/// Identifies a question; chosen by the asker. The same number is the answerer's `AnswerId`.
pub type QuestionId = u32;
/// The answerer's name for the asker's question: the asker's [`QuestionId`].
pub type AnswerId = QuestionId;
/// Identifies an exported capability; chosen by the exporter.
pub type ExportId = u32;
/// The importer's name for an export: the exporter's [`ExportId`].
pub type ImportId = ExportId;
/// Identifies an embargo; chosen by the side that sends `Disembargo.senderLoopback`.
pub type EmbargoId = u32;

/// Largest message [`decode`] will read, in 8-byte words (8 MiB), counting every pointer
/// traversal so that a message pointing many times at the same data cannot amplify work.
pub const TRAVERSAL_LIMIT_WORDS: usize = 1 << 20;
/// Deepest pointer nesting [`decode`] will follow. A legitimate message nests about eight
/// levels, plus one per `Unimplemented` echo.
pub const NESTING_LIMIT: i32 = 32;

/// The reader limits [`decode`] uses.
pub const READER_OPTIONS: ReaderOptions = ReaderOptions {
    traversal_limit_in_words: Some(TRAVERSAL_LIMIT_WORDS),
    nesting_limit: NESTING_LIMIT,
};

/// One RPC message, the union of `rpc.capnp`'s `Message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Echo of a message the sender did not understand.
    Unimplemented(Box<Message>),
    /// The sender is closing the connection because of this error.
    Abort(Exception),
    Bootstrap(Bootstrap),
    Call(Call),
    Return(Return),
    Finish(Finish),
    Resolve(Resolve),
    Release(Release),
    Disembargo(Disembargo),
    /// Obsolete persistent-capability request; kept so it can be echoed as `Unimplemented`.
    ObsoleteSave(AnyValue),
    /// Obsolete persistent-capability request; kept so it can be echoed as `Unimplemented`.
    ObsoleteDelete(AnyValue),
    Provide(Provide),
    Accept(Accept),
    Join(Join),
}

impl Message {
    /// The schema's name of this message kind (for traces and errors).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Unimplemented(_) => "unimplemented",
            Message::Abort(_) => "abort",
            Message::Bootstrap(_) => "bootstrap",
            Message::Call(_) => "call",
            Message::Return(_) => "return",
            Message::Finish(_) => "finish",
            Message::Resolve(_) => "resolve",
            Message::Release(_) => "release",
            Message::Disembargo(_) => "disembargo",
            Message::ObsoleteSave(_) => "obsoleteSave",
            Message::ObsoleteDelete(_) => "obsoleteDelete",
            Message::Provide(_) => "provide",
            Message::Accept(_) => "accept",
            Message::Join(_) => "join",
        }
    }
}

/// The value of an `AnyPointer` field: a schema-less model of what a Cap'n Proto pointer can
/// point to.
///
/// The model follows the wire, not a schema, so a few distinctions a schema makes are not kept:
/// - `Text` and `Data` are both lists of bytes (text adds a NUL terminator). [`decode`] reads
///   every byte list as `Data`; `Text(s)` encodes exactly like `Data` of `s` plus a NUL byte,
///   and [`AnyValue::as_text`] reads such a `Data` back as text.
/// - The elements of a `ListValue::Structs` share one size on the wire, so encoding pads every
///   element to the widest one (with zero words and null pointers), as capnp does when it
///   upgrades a list.
///
/// [`AnyValue::normalized`] gives the value [`decode`] returns for a value's encoding; values
/// that are already normalized (no `Text`, struct lists of uniform elements) round-trip
/// exactly. Two values with the same normal form encode to the same bytes.
///
/// Encoding panics (see [`encode`]) on what the wire cannot express: a struct section of more
/// than 65535 words or pointers, or a list of 2^29 elements or more. [`decode`] never produces
/// such values, nor values nested deeper than [`NESTING_LIMIT`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AnyValue {
    /// A null pointer.
    #[default]
    Null,
    /// A `Data` blob (possibly empty, which is distinct from null on the wire).
    Data(Vec<u8>),
    /// A struct, with its sections as they are on the wire.
    Struct(StructValue),
    /// A capability (interface) pointer: an index into the payload's `capTable`.
    Capability(u32),
    /// A `Text` blob; on the wire, the bytes of the string plus a NUL terminator. Decodes as
    /// `Data` (see above).
    Text(String),
    /// A list of anything but bytes (a list of bytes is `Data`).
    List(ListValue),
}

/// A struct as it is on the wire: which field lives where is the schema's business.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StructValue {
    /// The data section, one `u64` per word, as the little-endian word reads (a `UInt32` field
    /// at 32-bit offset 1 is bits 32..64 of word 0).
    pub data: Vec<u64>,
    /// The pointer section.
    pub pointers: Vec<AnyValue>,
}

/// A list, by the element size on the wire. Signedness and floating point are the schema's
/// business: a `List(Int16)` is `U16` of the two's-complement bits, a `List(Float64)` is `U64`
/// of the IEEE bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListValue {
    /// A `List(Void)`: only a length.
    Void(u32),
    /// A `List(Bool)`.
    Bits(Vec<bool>),
    /// A list of 16-bit elements.
    U16(Vec<u16>),
    /// A list of 32-bit elements.
    U32(Vec<u32>),
    /// A list of 64-bit elements.
    U64(Vec<u64>),
    /// A list of pointers (lists of lists, of blobs, of interfaces, `List(AnyPointer)`).
    Pointers(Vec<AnyValue>),
    /// A list of structs. The wire gives every element the same section sizes: encoding pads
    /// each element to the largest data section and the largest pointer section in the list.
    Structs(Vec<StructValue>),
}

static NULL_VALUE: AnyValue = AnyValue::Null;

impl AnyValue {
    /// The name of this kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyValue::Null => "null",
            AnyValue::Data(_) => "data",
            AnyValue::Struct(_) => "struct",
            AnyValue::Capability(_) => "capability",
            AnyValue::Text(_) => "text",
            AnyValue::List(_) => "list",
        }
    }

    /// The value [`decode`] gives for this value's encoding: `Text` becomes `Data` (with the
    /// NUL terminator) and the elements of struct lists are padded to a common size.
    pub fn normalized(&self) -> AnyValue {
        match self {
            AnyValue::Text(s) => {
                let mut bytes = s.as_bytes().to_vec();
                bytes.push(0);
                AnyValue::Data(bytes)
            }
            AnyValue::Struct(s) => AnyValue::Struct(s.normalized()),
            AnyValue::List(ListValue::Pointers(items)) => AnyValue::List(ListValue::Pointers(
                items.iter().map(Self::normalized).collect(),
            )),
            AnyValue::List(ListValue::Structs(items)) => {
                let data = items.iter().map(|s| s.data.len()).max().unwrap_or(0);
                let pointers = items.iter().map(|s| s.pointers.len()).max().unwrap_or(0);
                AnyValue::List(ListValue::Structs(
                    items
                        .iter()
                        .map(|s| {
                            let mut s = s.normalized();
                            s.data.resize(data, 0);
                            s.pointers.resize(pointers, AnyValue::Null);
                            s
                        })
                        .collect(),
                ))
            }
            other => other.clone(),
        }
    }

    /// The text of a `Text`, or of a `Data` that holds valid UTF-8 followed by one NUL byte
    /// (which is how text arrives, see [`AnyValue`]).
    pub fn as_text(&self) -> Option<&str> {
        match self {
            AnyValue::Text(s) => Some(s),
            AnyValue::Data(bytes) => match bytes.split_last() {
                Some((0, text)) => std::str::from_utf8(text).ok(),
                _ => None,
            },
            _ => None,
        }
    }

    /// The cap-table index reached by following the pointer fields `path` from this value (the
    /// promise-pipelining walk of `PromisedAnswer.transform`); `None` when the path leaves the
    /// structs or does not end on a capability pointer.
    pub fn cap_index_at(&self, path: &[u16]) -> Option<u32> {
        let mut here = self;
        for field in path {
            match here {
                AnyValue::Struct(s) => here = s.pointer(usize::from(*field)),
                _ => return None,
            }
        }
        match here {
            AnyValue::Capability(index) => Some(*index),
            _ => None,
        }
    }
}

impl StructValue {
    /// Data word `index`; zero past the end of the section, as a reader of an older or newer
    /// schema version sees it.
    pub fn word(&self, index: usize) -> u64 {
        self.data.get(index).copied().unwrap_or(0)
    }

    /// Pointer `index`; null past the end of the section.
    pub fn pointer(&self, index: usize) -> &AnyValue {
        self.pointers.get(index).unwrap_or(&NULL_VALUE)
    }

    /// This struct with its pointers normalized (see [`AnyValue::normalized`]).
    pub fn normalized(&self) -> StructValue {
        StructValue {
            data: self.data.clone(),
            pointers: self.pointers.iter().map(AnyValue::normalized).collect(),
        }
    }
}

/// Asks for the peer's bootstrap capability.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bootstrap {
    pub question_id: QuestionId,
    /// Deprecated in the protocol; should be null.
    pub deprecated_object_id: AnyValue,
}

/// Begins a method call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub question_id: QuestionId,
    pub target: MessageTarget,
    pub interface_id: u64,
    pub method_id: u16,
    pub allow_third_party_tail_call: bool,
    pub no_promise_pipelining: bool,
    pub only_promise_pipeline: bool,
    pub params: Payload,
    pub send_results_to: SendResultsTo,
}

/// Where a call's results go (`Call.sendResultsTo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SendResultsTo {
    /// In a `Return` to the caller (the usual case).
    #[default]
    Caller,
    /// Kept by the callee for a later `Return.takeFromOtherQuestion` (tail calls).
    Yourself,
    /// To a third party (level 3).
    ThirdParty(AnyValue),
}

/// Completes a call or bootstrap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Return {
    pub answer_id: AnswerId,
    /// Whether the caps in the call's params are released implicitly (default true).
    pub release_param_caps: bool,
    /// The callee does not need a `Finish` for this answer.
    pub no_finish_needed: bool,
    pub result: ReturnResult,
}

/// The union of `Return`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReturnResult {
    Results(Payload),
    Exception(Exception),
    /// The call was cancelled by a `Finish` before it completed.
    Canceled,
    /// The results went where `sendResultsTo` said.
    ResultsSentElsewhere,
    /// The results are those of another question of ours (tail call).
    TakeFromOtherQuestion(QuestionId),
    /// The results are to be picked up from a third party (level 3).
    AcceptFromThirdParty(AnyValue),
}

/// Releases an answer, or cancels a call that has not returned yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finish {
    pub question_id: QuestionId,
    /// Whether the caps in the results are released implicitly (default true).
    pub release_result_caps: bool,
    /// Default true in the schema; see rpc.capnp.
    pub require_early_cancellation_workaround: bool,
}

/// Resolves a promise the sender exported earlier (`senderPromise`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolve {
    pub promise_id: ExportId,
    pub resolution: Resolution,
}

/// The union of `Resolve`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    Cap(CapDescriptor),
    Exception(Exception),
}

/// Drops `reference_count` references to an import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub id: ImportId,
    pub reference_count: u32,
}

/// Lifts an embargo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disembargo {
    pub target: MessageTarget,
    pub context: DisembargoContext,
}

/// The union `Disembargo.context`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisembargoContext {
    /// Sent down the old path; to be reflected back as `ReceiverLoopback`.
    SenderLoopback(EmbargoId),
    /// The reflection of a `SenderLoopback`.
    ReceiverLoopback(EmbargoId),
    /// Level 3: lifts the embargo of an `Accept`.
    Accept,
    /// Level 3: names the `Provide` whose `Accept` is embargoed.
    Provide(QuestionId),
}

/// Level 3: offers a capability to a third party.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provide {
    pub question_id: QuestionId,
    pub target: MessageTarget,
    pub recipient: AnyValue,
}

/// Level 3: picks up a capability a third party provided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accept {
    pub question_id: QuestionId,
    pub provision: AnyValue,
    pub embargo: bool,
}

/// Level 4: joins proxied references to the same object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Join {
    pub question_id: QuestionId,
    pub target: MessageTarget,
    pub key_part: AnyValue,
}

/// What a call (or disembargo, provide, join) is addressed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageTarget {
    /// A capability the receiver exported to the sender.
    ImportedCap(ImportId),
    /// A capability inside the (future) results of one of the sender's questions.
    PromisedAnswer(PromisedAnswer),
}

/// A capability within the results of a question, reached by a path of pointer fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PromisedAnswer {
    pub question_id: QuestionId,
    pub transform: Vec<PipelineOp>,
}

/// One step of a [`PromisedAnswer`] path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipelineOp {
    Noop,
    /// Take the pointer field with this index of the current struct.
    GetPointerField(u16),
}

/// Call parameters or results: content plus the capabilities it refers to by index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Payload {
    pub content: AnyValue,
    pub cap_table: Vec<CapDescriptor>,
}

/// How a capability travels in a message (`CapDescriptor`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CapDescriptor {
    /// A null capability.
    None,
    /// Hosted by the sender, under this export ID (adds one reference).
    SenderHosted(ExportId),
    /// A promise exported by the sender, to be resolved by `Resolve` (adds one reference).
    SenderPromise(ExportId),
    /// One of the receiver's own exports.
    ReceiverHosted(ImportId),
    /// A capability in the results of one of the receiver's answers.
    ReceiverAnswer(PromisedAnswer),
    /// Level 3: hosted by a third party; `vine_id` is an export proxying to it meanwhile.
    ThirdPartyHosted { id: AnyValue, vine_id: ExportId },
}

/// An error carried by `Abort`, `Return` or `Resolve`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    pub reason: String,
    pub kind: ExceptionType,
    /// Optional stack trace (empty when absent).
    pub trace: String,
}

/// `Exception.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionType {
    Failed,
    Overloaded,
    Disconnected,
    Unimplemented,
}

#[cfg(test)]
mod tests;
