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

use crate::generated::rpc_capnp as rpc;
use capnp::message::ReaderOptions;
use core::fmt;
use value::CapTable;

mod value;
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
fn classify(err: capnp::Error, field: &'static str) -> WireError {
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

fn unknown(field: &'static str) -> impl FnOnce(capnp::NotInSchema) -> WireError {
    move |capnp::NotInSchema(value)| WireError::UnknownDiscriminant { field, value }
}

/// A required pointer: null is [`WireError::MissingField`], a read error is classified.
fn required<T>(
    present: bool,
    value: capnp::Result<T>,
    field: &'static str,
) -> Result<T, WireError> {
    if !present {
        return Err(WireError::MissingField { field });
    }
    value.map_err(|e| classify(e, field))
}

/// Encodes `msg` as a Cap'n Proto message with a segment table (`capnp::serialize` framing).
///
/// # Panics
///
/// Only if a blob, text or list in `msg` exceeds Cap'n Proto's limit of 2^29 elements, or a
/// struct in an [`AnyValue`] has more than 65535 data words or pointers, which the engine never
/// builds (and [`decode`] never produces: it stops at 8 MiB).
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut builder = capnp::message::Builder::new_default();
    let mut caps = value::CapTable::new();
    put_message(
        msg,
        builder.init_root::<rpc::message::Builder<'_>>(),
        &mut caps,
    );
    let mut bytes = capnp::serialize::write_message_to_words(&builder);
    if !caps.is_empty() {
        value::patch_cap_indices(&mut bytes, &caps);
    }
    bytes
}

/// Decodes exactly one framed message; trailing bytes are an error.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    // capnp reads words in place and needs them 8-byte aligned; a caller's slice need not be.
    // Copying costs one pass over bytes we are about to read anyway.
    let mut words = capnp::Word::allocate_zeroed_vec(bytes.len().div_ceil(8));
    capnp::Word::words_to_bytes_mut(&mut words)[..bytes.len()].copy_from_slice(bytes);
    let mut rest = &capnp::Word::words_to_bytes(&words)[..bytes.len()];
    let reader = capnp::serialize::read_message_from_flat_slice(&mut rest, READER_OPTIONS)
        .map_err(|e| classify(e, "segment table"))?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes { extra: rest.len() });
    }
    let root = reader
        .get_root::<rpc::message::Reader<'_>>()
        .map_err(|e| classify(e, "Message"))?;
    get_message(root)
}

// ---------------------------------------------------------------------------------------------
// Encoding. Builders are written field by field; every setter here is infallible.

fn put_message(msg: &Message, b: rpc::message::Builder<'_>, caps: &mut CapTable) {
    match msg {
        Message::Unimplemented(inner) => put_message(inner, b.init_unimplemented(), caps),
        Message::Abort(e) => put_exception(e, b.init_abort()),
        Message::Bootstrap(m) => {
            let mut x = b.init_bootstrap();
            x.set_question_id(m.question_id);
            put_any(&m.deprecated_object_id, x.init_deprecated_object_id(), caps);
        }
        Message::Call(m) => put_call(m, b.init_call(), caps),
        Message::Return(m) => put_return(m, b.init_return(), caps),
        Message::Finish(m) => {
            let mut x = b.init_finish();
            x.set_question_id(m.question_id);
            x.set_release_result_caps(m.release_result_caps);
            x.set_require_early_cancellation_workaround(m.require_early_cancellation_workaround);
        }
        Message::Resolve(m) => {
            let mut x = b.init_resolve();
            x.set_promise_id(m.promise_id);
            match &m.resolution {
                Resolution::Cap(c) => put_cap(c, x.init_cap(), caps),
                Resolution::Exception(e) => put_exception(e, x.init_exception()),
            }
        }
        Message::Release(m) => {
            let mut x = b.init_release();
            x.set_id(m.id);
            x.set_reference_count(m.reference_count);
        }
        Message::Disembargo(m) => {
            let mut x = b.init_disembargo();
            put_target(&m.target, x.reborrow().init_target());
            let mut c = x.init_context();
            match m.context {
                DisembargoContext::SenderLoopback(id) => c.set_sender_loopback(id),
                DisembargoContext::ReceiverLoopback(id) => c.set_receiver_loopback(id),
                DisembargoContext::Accept => c.set_accept(()),
                DisembargoContext::Provide(q) => c.set_provide(q),
            }
        }
        Message::ObsoleteSave(v) => put_any(v, b.init_obsolete_save(), caps),
        Message::ObsoleteDelete(v) => put_any(v, b.init_obsolete_delete(), caps),
        Message::Provide(m) => {
            let mut x = b.init_provide();
            x.set_question_id(m.question_id);
            put_target(&m.target, x.reborrow().init_target());
            put_any(&m.recipient, x.init_recipient(), caps);
        }
        Message::Accept(m) => {
            let mut x = b.init_accept();
            x.set_question_id(m.question_id);
            x.set_embargo(m.embargo);
            put_any(&m.provision, x.init_provision(), caps);
        }
        Message::Join(m) => {
            let mut x = b.init_join();
            x.set_question_id(m.question_id);
            put_target(&m.target, x.reborrow().init_target());
            put_any(&m.key_part, x.init_key_part(), caps);
        }
    }
}

fn put_call(m: &Call, mut x: rpc::call::Builder<'_>, caps: &mut CapTable) {
    x.set_question_id(m.question_id);
    x.set_interface_id(m.interface_id);
    x.set_method_id(m.method_id);
    x.set_allow_third_party_tail_call(m.allow_third_party_tail_call);
    x.set_no_promise_pipelining(m.no_promise_pipelining);
    x.set_only_promise_pipeline(m.only_promise_pipeline);
    put_target(&m.target, x.reborrow().init_target());
    put_payload(&m.params, x.reborrow().init_params(), caps);
    let mut s = x.init_send_results_to();
    match &m.send_results_to {
        SendResultsTo::Caller => s.set_caller(()),
        SendResultsTo::Yourself => s.set_yourself(()),
        SendResultsTo::ThirdParty(v) => put_any(v, s.init_third_party(), caps),
    }
}

fn put_return(m: &Return, mut x: rpc::return_::Builder<'_>, caps: &mut CapTable) {
    x.set_answer_id(m.answer_id);
    x.set_release_param_caps(m.release_param_caps);
    x.set_no_finish_needed(m.no_finish_needed);
    match &m.result {
        ReturnResult::Results(p) => put_payload(p, x.init_results(), caps),
        ReturnResult::Exception(e) => put_exception(e, x.init_exception()),
        ReturnResult::Canceled => x.set_canceled(()),
        ReturnResult::ResultsSentElsewhere => x.set_results_sent_elsewhere(()),
        ReturnResult::TakeFromOtherQuestion(q) => x.set_take_from_other_question(*q),
        ReturnResult::AcceptFromThirdParty(v) => put_any(v, x.init_accept_from_third_party(), caps),
    }
}

fn put_target(t: &MessageTarget, mut x: rpc::message_target::Builder<'_>) {
    match t {
        MessageTarget::ImportedCap(id) => x.set_imported_cap(*id),
        MessageTarget::PromisedAnswer(p) => put_promised(p, x.init_promised_answer()),
    }
}

fn put_promised(p: &PromisedAnswer, mut x: rpc::promised_answer::Builder<'_>) {
    x.set_question_id(p.question_id);
    if p.transform.is_empty() {
        return; // peers omit an empty transform; null reads back as empty
    }
    let mut ops = x.init_transform(len32(p.transform.len()));
    for (i, op) in p.transform.iter().enumerate() {
        let mut o = ops.reborrow().get(len32(i));
        match op {
            PipelineOp::Noop => o.set_noop(()),
            PipelineOp::GetPointerField(n) => o.set_get_pointer_field(*n),
        }
    }
}

fn put_payload(p: &Payload, mut x: rpc::payload::Builder<'_>, caps: &mut CapTable) {
    put_any(&p.content, x.reborrow().init_content(), caps);
    if p.cap_table.is_empty() {
        return;
    }
    let mut table = x.init_cap_table(len32(p.cap_table.len()));
    for (i, c) in p.cap_table.iter().enumerate() {
        put_cap(c, table.reborrow().get(len32(i)), caps);
    }
}

fn put_cap(c: &CapDescriptor, mut x: rpc::cap_descriptor::Builder<'_>, caps: &mut CapTable) {
    match c {
        CapDescriptor::None => x.set_none(()),
        CapDescriptor::SenderHosted(id) => x.set_sender_hosted(*id),
        CapDescriptor::SenderPromise(id) => x.set_sender_promise(*id),
        CapDescriptor::ReceiverHosted(id) => x.set_receiver_hosted(*id),
        CapDescriptor::ReceiverAnswer(p) => put_promised(p, x.init_receiver_answer()),
        CapDescriptor::ThirdPartyHosted { id, vine_id } => {
            let mut t = x.init_third_party_hosted();
            t.set_vine_id(*vine_id);
            put_any(id, t.init_id(), caps);
        }
    }
}

fn put_exception(e: &Exception, mut x: rpc::exception::Builder<'_>) {
    x.set_reason(e.reason.as_str());
    x.set_type(match e.kind {
        ExceptionType::Failed => rpc::exception::Type::Failed,
        ExceptionType::Overloaded => rpc::exception::Type::Overloaded,
        ExceptionType::Disconnected => rpc::exception::Type::Disconnected,
        ExceptionType::Unimplemented => rpc::exception::Type::Unimplemented,
    });
    if !e.trace.is_empty() {
        x.set_trace(e.trace.as_str());
    }
}

/// Writes an `AnyPointer`; capability pointers go into `caps`, the cap table of the whole
/// message, for [`value::patch_cap_indices`].
fn put_any(v: &AnyValue, mut x: capnp::any_pointer::Builder<'_>, caps: &mut CapTable) {
    match v {
        AnyValue::Null => {}
        AnyValue::Data(bytes) => x
            .initn_as::<capnp::data::Builder<'_>>(len32(bytes.len()))
            .copy_from_slice(bytes),
        AnyValue::Text(s) => x
            .initn_as::<capnp::text::Builder<'_>>(len32(s.len()))
            .push_str(s),
        _ => value::put(v, x.reborrow(), caps),
    }
}

/// A list length for capnp. Larger lengths than u32 cannot be encoded at all; capnp itself
/// rejects anything above 2^29 (see [`encode`]'s panic note).
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------------------------
// Decoding. Each reader call that can fail names the field it was reading.

fn get_message(r: rpc::message::Reader<'_>) -> Result<Message, WireError> {
    use rpc::message::Which as W;
    Ok(match r.which().map_err(unknown("Message"))? {
        W::Unimplemented(m) => {
            let inner = required(r.has_unimplemented(), m, "Message.unimplemented")?;
            Message::Unimplemented(Box::new(get_message(inner)?))
        }
        W::Abort(e) => Message::Abort(get_exception(
            required(r.has_abort(), e, "Message.abort")?,
            "Message.abort",
        )?),
        W::Bootstrap(b) => {
            let b = required(r.has_bootstrap(), b, "Message.bootstrap")?;
            Message::Bootstrap(Bootstrap {
                question_id: b.get_question_id(),
                deprecated_object_id: get_any(
                    b.get_deprecated_object_id(),
                    "Bootstrap.deprecatedObjectId",
                    None,
                )?,
            })
        }
        W::Call(c) => Message::Call(get_call(required(r.has_call(), c, "Message.call")?)?),
        W::Return(x) => {
            Message::Return(get_return(required(r.has_return(), x, "Message.return")?)?)
        }
        W::Finish(f) => {
            let f = required(r.has_finish(), f, "Message.finish")?;
            Message::Finish(Finish {
                question_id: f.get_question_id(),
                release_result_caps: f.get_release_result_caps(),
                require_early_cancellation_workaround: f
                    .get_require_early_cancellation_workaround(),
            })
        }
        W::Resolve(x) => {
            use rpc::resolve::Which as R;
            let x = required(r.has_resolve(), x, "Message.resolve")?;
            let resolution = match x.which().map_err(unknown("Resolve"))? {
                R::Cap(c) => Resolution::Cap(get_cap(required(x.has_cap(), c, "Resolve.cap")?)?),
                R::Exception(e) => Resolution::Exception(get_exception(
                    required(x.has_exception(), e, "Resolve.exception")?,
                    "Resolve.exception",
                )?),
            };
            Message::Resolve(Resolve {
                promise_id: x.get_promise_id(),
                resolution,
            })
        }
        W::Release(x) => {
            let x = required(r.has_release(), x, "Message.release")?;
            Message::Release(Release {
                id: x.get_id(),
                reference_count: x.get_reference_count(),
            })
        }
        W::Disembargo(x) => {
            use rpc::disembargo::context::Which as C;
            let x = required(r.has_disembargo(), x, "Message.disembargo")?;
            let target = get_target(
                required(x.has_target(), x.get_target(), "Disembargo.target")?,
                "Disembargo.target",
            )?;
            let context = match x
                .get_context()
                .which()
                .map_err(unknown("Disembargo.context"))?
            {
                C::SenderLoopback(id) => DisembargoContext::SenderLoopback(id),
                C::ReceiverLoopback(id) => DisembargoContext::ReceiverLoopback(id),
                C::Accept(()) => DisembargoContext::Accept,
                C::Provide(q) => DisembargoContext::Provide(q),
            };
            Message::Disembargo(Disembargo { target, context })
        }
        W::ObsoleteSave(v) => Message::ObsoleteSave(get_any(v, "Message.obsoleteSave", None)?),
        W::ObsoleteDelete(v) => {
            Message::ObsoleteDelete(get_any(v, "Message.obsoleteDelete", None)?)
        }
        W::Provide(x) => {
            let x = required(r.has_provide(), x, "Message.provide")?;
            Message::Provide(Provide {
                question_id: x.get_question_id(),
                target: get_target(
                    required(x.has_target(), x.get_target(), "Provide.target")?,
                    "Provide.target",
                )?,
                recipient: get_any(x.get_recipient(), "Provide.recipient", None)?,
            })
        }
        W::Accept(x) => {
            let x = required(r.has_accept(), x, "Message.accept")?;
            Message::Accept(Accept {
                question_id: x.get_question_id(),
                provision: get_any(x.get_provision(), "Accept.provision", None)?,
                embargo: x.get_embargo(),
            })
        }
        W::Join(x) => {
            let x = required(r.has_join(), x, "Message.join")?;
            Message::Join(Join {
                question_id: x.get_question_id(),
                target: get_target(
                    required(x.has_target(), x.get_target(), "Join.target")?,
                    "Join.target",
                )?,
                key_part: get_any(x.get_key_part(), "Join.keyPart", None)?,
            })
        }
    })
}

fn get_call(c: rpc::call::Reader<'_>) -> Result<Call, WireError> {
    use rpc::call::send_results_to::Which as S;
    let target = get_target(
        required(c.has_target(), c.get_target(), "Call.target")?,
        "Call.target",
    )?;
    let params = get_payload(
        required(c.has_params(), c.get_params(), "Call.params")?,
        "Call.params",
    )?;
    let srt = c.get_send_results_to();
    let send_results_to = match srt.which().map_err(unknown("Call.sendResultsTo"))? {
        S::Caller(()) => SendResultsTo::Caller,
        S::Yourself(()) => SendResultsTo::Yourself,
        S::ThirdParty(v) => {
            SendResultsTo::ThirdParty(get_any(v, "Call.sendResultsTo.thirdParty", None)?)
        }
    };
    Ok(Call {
        question_id: c.get_question_id(),
        target,
        interface_id: c.get_interface_id(),
        method_id: c.get_method_id(),
        allow_third_party_tail_call: c.get_allow_third_party_tail_call(),
        no_promise_pipelining: c.get_no_promise_pipelining(),
        only_promise_pipeline: c.get_only_promise_pipeline(),
        params,
        send_results_to,
    })
}

fn get_return(x: rpc::return_::Reader<'_>) -> Result<Return, WireError> {
    use rpc::return_::Which as R;
    let result = match x.which().map_err(unknown("Return"))? {
        R::Results(p) => ReturnResult::Results(get_payload(
            required(x.has_results(), p, "Return.results")?,
            "Return.results",
        )?),
        R::Exception(e) => ReturnResult::Exception(get_exception(
            required(x.has_exception(), e, "Return.exception")?,
            "Return.exception",
        )?),
        R::Canceled(()) => ReturnResult::Canceled,
        R::ResultsSentElsewhere(()) => ReturnResult::ResultsSentElsewhere,
        R::TakeFromOtherQuestion(q) => ReturnResult::TakeFromOtherQuestion(q),
        R::AcceptFromThirdParty(v) => {
            ReturnResult::AcceptFromThirdParty(get_any(v, "Return.acceptFromThirdParty", None)?)
        }
    };
    Ok(Return {
        answer_id: x.get_answer_id(),
        release_param_caps: x.get_release_param_caps(),
        no_finish_needed: x.get_no_finish_needed(),
        result,
    })
}

fn get_target(
    t: rpc::message_target::Reader<'_>,
    field: &'static str,
) -> Result<MessageTarget, WireError> {
    use rpc::message_target::Which as T;
    Ok(match t.which().map_err(unknown(field))? {
        T::ImportedCap(id) => MessageTarget::ImportedCap(id),
        T::PromisedAnswer(p) => MessageTarget::PromisedAnswer(get_promised(required(
            t.has_promised_answer(),
            p,
            "MessageTarget.promisedAnswer",
        )?)?),
    })
}

fn get_promised(p: rpc::promised_answer::Reader<'_>) -> Result<PromisedAnswer, WireError> {
    use rpc::promised_answer::op::Which as O;
    const FIELD: &str = "PromisedAnswer.transform";
    let mut transform = Vec::new();
    if p.has_transform() {
        let ops = p.get_transform().map_err(|e| classify(e, FIELD))?;
        for op in ops.iter() {
            transform.push(match op.which().map_err(unknown(FIELD))? {
                O::Noop(()) => PipelineOp::Noop,
                O::GetPointerField(n) => PipelineOp::GetPointerField(n),
            });
        }
    }
    Ok(PromisedAnswer {
        question_id: p.get_question_id(),
        transform,
    })
}

fn get_payload(p: rpc::payload::Reader<'_>, field: &'static str) -> Result<Payload, WireError> {
    let mut cap_table = Vec::new();
    if p.has_cap_table() {
        let caps = p
            .get_cap_table()
            .map_err(|e| classify(e, "Payload.capTable"))?;
        for c in caps.iter() {
            cap_table.push(get_cap(c)?);
        }
    }
    let content = get_any(p.get_content(), field, Some(cap_table.len()))?;
    Ok(Payload { content, cap_table })
}

fn get_cap(c: rpc::cap_descriptor::Reader<'_>) -> Result<CapDescriptor, WireError> {
    use rpc::cap_descriptor::Which as C;
    Ok(match c.which().map_err(unknown("CapDescriptor"))? {
        C::None(()) => CapDescriptor::None,
        C::SenderHosted(id) => CapDescriptor::SenderHosted(id),
        C::SenderPromise(id) => CapDescriptor::SenderPromise(id),
        C::ReceiverHosted(id) => CapDescriptor::ReceiverHosted(id),
        C::ReceiverAnswer(p) => CapDescriptor::ReceiverAnswer(get_promised(required(
            c.has_receiver_answer(),
            p,
            "CapDescriptor.receiverAnswer",
        )?)?),
        C::ThirdPartyHosted(t) => {
            let t = required(
                c.has_third_party_hosted(),
                t,
                "CapDescriptor.thirdPartyHosted",
            )?;
            CapDescriptor::ThirdPartyHosted {
                id: get_any(t.get_id(), "ThirdPartyCapDescriptor.id", None)?,
                vine_id: t.get_vine_id(),
            }
        }
    })
}

fn get_exception(
    e: rpc::exception::Reader<'_>,
    field: &'static str,
) -> Result<Exception, WireError> {
    let kind = match e.get_type().map_err(unknown("Exception.type"))? {
        rpc::exception::Type::Failed => ExceptionType::Failed,
        rpc::exception::Type::Overloaded => ExceptionType::Overloaded,
        rpc::exception::Type::Disconnected => ExceptionType::Disconnected,
        rpc::exception::Type::Unimplemented => ExceptionType::Unimplemented,
    };
    Ok(Exception {
        reason: get_text(e.has_reason(), e.get_reason(), field)?,
        kind,
        trace: get_text(e.has_trace(), e.get_trace(), field)?,
    })
}

fn get_text(
    present: bool,
    t: capnp::Result<capnp::text::Reader<'_>>,
    field: &'static str,
) -> Result<String, WireError> {
    if !present {
        return Ok(String::new());
    }
    let t = t.map_err(|e| classify(e, field))?;
    match t.to_str() {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(WireError::InvalidText { field }),
    }
}

/// Reads an `AnyPointer`. `cap_table` is the length of the payload's cap table, or `None` for
/// a field that has none (where a capability pointer is unsupported).
fn get_any(
    v: capnp::any_pointer::Reader<'_>,
    field: &'static str,
    cap_table: Option<usize>,
) -> Result<AnyValue, WireError> {
    if v.is_null() {
        return Ok(AnyValue::Null);
    }
    use capnp::ErrorKind as K;
    match v.get_as::<capnp::data::Reader<'_>>() {
        Ok(bytes) => Ok(AnyValue::Data(bytes.to_vec())),
        // A pointer of another type (struct, list, capability) takes the general path; bounds
        // and limit faults keep their own kinds.
        Err(e)
            if matches!(
                e.kind,
                K::MessageContainsNonListPointerWhereDataWasExpected
                    | K::MessageContainsListPointerOfNonBytesWhereDataWasExpected
                    | K::ExpectedAListOrBlob
            ) =>
        {
            value::get(v, field, cap_table)
        }
        Err(e) => Err(classify(e, field)),
    }
}

#[cfg(test)]
mod tests;
