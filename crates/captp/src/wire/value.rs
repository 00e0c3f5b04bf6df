//! The bridge between [`AnyValue`] and real Cap'n Proto pointers.
//!
//! The capnp crate's public API reads and writes *typed* pointers: without a schema it cannot
//! tell a reader how large a struct's sections are, and it numbers the capability pointers of a
//! message by the order in which they are written. So this module works on raw words, but only
//! on words that capnp itself has built and checked:
//!
//! - Encoding ([`put`]) lays the value out as raw words in a small standalone message, then has
//!   capnp copy it into the RPC message (`set_as`), which reads it through capnp's own checks.
//!   Capability pointers travel through that copy as placeholder capabilities that carry the
//!   index the value asked for; capnp renumbers them in the order it copies them, so once the
//!   whole RPC message is written, [`patch_cap_indices`] walks it and writes the real indices
//!   back.
//! - Decoding ([`get`]) has capnp copy the peer's pointer into a fresh message, under the reader
//!   limits of the RPC message (bounds, traversal and nesting limits, far pointers), then reads
//!   the raw words of that copy. A capability pointer can only be copied if its index names a
//!   placeholder of the payload's cap table, so an index outside the table is refused there.
//!
//! Every raw read here is bounds-checked and returns an error rather than panicking, although
//! the words always come from capnp's builder.

use super::error::classify;
use super::{AnyValue, ListValue, NESTING_LIMIT, StructValue, WireError};
use capnp::any_pointer;
use capnp::capability::{Promise, Request};
use capnp::private::capability::ClientHook;
use capnp::traits::{Imbue, ImbueMut};

/// A message's capability table, as capnp's readers and builders hold it.
pub(crate) type CapTable = Vec<Option<Box<dyn ClientHook>>>;

/// Largest element count of a Cap'n Proto list (29 bits), and largest word count of a struct
/// list's body.
const MAX_LIST_ELEMENTS: usize = (1 << 29) - 1;

// ---------------------------------------------------------------------------------------------
// Placeholder capabilities.

/// A stand-in capability that only carries a cap-table index. It lives in the cap tables this
/// module hands to capnp while copying, and never leaves the codec: nothing can make a call on it.
struct Placeholder(u32);

impl ClientHook for Placeholder {
    fn add_ref(&self) -> Box<dyn ClientHook> {
        Box::new(Placeholder(self.0))
    }

    fn new_call(
        &self,
        _interface_id: u64,
        _method_id: u16,
        _size_hint: Option<capnp::MessageSize>,
    ) -> Request<any_pointer::Owned, any_pointer::Owned> {
        // Placeholders exist only inside `put`, `get` and the tests' tables; no code path
        // hands one to anything that could start a call.
        unreachable!("captp: a placeholder capability of the payload codec was called")
    }

    fn call(
        &self,
        _interface_id: u64,
        _method_id: u16,
        _params: Box<dyn capnp::private::capability::ParamsHook>,
        _results: Box<dyn capnp::private::capability::ResultsHook>,
    ) -> Promise<(), capnp::Error> {
        Promise::err(capnp::Error::unimplemented(
            "placeholder capability of the captp payload codec".into(),
        ))
    }

    fn get_brand(&self) -> usize {
        0
    }

    /// The identity of a placeholder is its index.
    fn get_ptr(&self) -> usize {
        self.0 as usize
    }

    fn get_resolved(&self) -> Option<Box<dyn ClientHook>> {
        None
    }

    fn when_more_resolved(&self) -> Option<Promise<Box<dyn ClientHook>, capnp::Error>> {
        None
    }

    fn when_resolved(&self) -> Promise<(), capnp::Error> {
        Promise::ok(())
    }
}

/// A placeholder capability standing for cap-table index `index`.
pub(crate) fn placeholder(index: u32) -> Box<dyn ClientHook> {
    Box::new(Placeholder(index))
}

/// The index a placeholder made by [`placeholder`] stands for. Meaningless for other hooks.
pub(crate) fn placeholder_index(hook: &dyn ClientHook) -> Option<u32> {
    u32::try_from(hook.get_ptr()).ok()
}

/// A table of `len` placeholders, entry `i` standing for index `i`.
pub(crate) fn placeholder_table(len: usize) -> CapTable {
    (0..len)
        .map(|i| u32::try_from(i).ok().map(placeholder))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Raw pointer words.

/// A word position: segment and word index within it.
#[derive(Clone, Copy, Debug)]
struct Loc {
    seg: u32,
    at: usize,
}

/// What a pointer points at, after far pointers are followed.
#[derive(Clone, Copy, Debug)]
enum Ptr {
    Null,
    /// A struct whose data section starts at `start`.
    Struct {
        start: Loc,
        data: u16,
        pointers: u16,
    },
    /// A list of non-struct elements; `size` is the element-size code (0 void, 1 bit, 2 byte,
    /// 3 two bytes, 4 four bytes, 5 eight bytes, 6 pointer).
    List {
        start: Loc,
        size: u8,
        count: u32,
    },
    /// A list of structs ("inline composite"); `start` is the first element (after the tag).
    Structs {
        start: Loc,
        count: u32,
        data: u16,
        pointers: u16,
    },
    /// A capability pointer.
    Cap(u32),
}

/// Why raw words could not be read.
#[derive(Debug)]
enum RawError {
    TooDeep,
    Malformed(String),
}

fn bad(detail: impl Into<String>) -> RawError {
    RawError::Malformed(detail.into())
}

/// A message's segments, read word by word.
struct Segments<'a>(Vec<&'a [u8]>);

impl Segments<'_> {
    fn len_words(&self, seg: u32) -> Result<usize, RawError> {
        let s = self
            .0
            .get(seg as usize)
            .ok_or_else(|| bad(format!("segment {seg} does not exist")))?;
        Ok(s.len() / 8)
    }

    fn word(&self, loc: Loc) -> Result<u64, RawError> {
        let s = self
            .0
            .get(loc.seg as usize)
            .ok_or_else(|| bad(format!("segment {} does not exist", loc.seg)))?;
        let start = loc
            .at
            .checked_mul(8)
            .ok_or_else(|| bad("offset overflow"))?;
        let bytes = s
            .get(start..start.saturating_add(8))
            .ok_or_else(|| bad(format!("word {} is outside segment {}", loc.at, loc.seg)))?;
        let mut w = [0u8; 8];
        w.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(w))
    }

    /// Checks that `words` words from `start` lie inside its segment.
    fn check(&self, start: Loc, words: u64) -> Result<(), RawError> {
        let len = self.len_words(start.seg)? as u64;
        match (start.at as u64).checked_add(words) {
            Some(end) if end <= len => Ok(()),
            _ => Err(bad(format!(
                "object of {words} words at word {} overruns segment {}",
                start.at, start.seg
            ))),
        }
    }

    /// Reads the pointer at `loc`, following a far pointer if it is one.
    fn pointer(&self, loc: Loc) -> Result<Ptr, RawError> {
        let w = self.word(loc)?;
        if w == 0 {
            return Ok(Ptr::Null);
        }
        match w & 3 {
            2 => {
                let pad = Loc {
                    seg: (w >> 32) as u32,
                    at: ((w as u32) >> 3) as usize,
                };
                if (w >> 2) & 1 == 0 {
                    // Single far: the landing pad is an ordinary pointer, relative to itself.
                    let p = self.word(pad)?;
                    if p & 3 == 2 {
                        return Err(bad("far pointer lands on another far pointer"));
                    }
                    self.near(pad, p)
                } else {
                    // Double far: a far pointer to the object, then a tag with its kind and size.
                    let far = self.word(pad)?;
                    let tag = self.word(Loc {
                        seg: pad.seg,
                        at: pad
                            .at
                            .checked_add(1)
                            .ok_or_else(|| bad("offset overflow"))?,
                    })?;
                    if far & 7 != 2 {
                        return Err(bad("malformed double-far landing pad"));
                    }
                    let start = Loc {
                        seg: (far >> 32) as u32,
                        at: ((far as u32) >> 3) as usize,
                    };
                    self.object(start, tag)
                }
            }
            3 => {
                if w & 0xffff_ffff == 3 {
                    Ok(Ptr::Cap((w >> 32) as u32))
                } else {
                    Err(bad(format!("unknown pointer kind {w:#018x}")))
                }
            }
            _ => self.near(loc, w),
        }
    }

    /// A struct or list pointer `w` found at `loc`, whose offset is relative to `loc`.
    fn near(&self, loc: Loc, w: u64) -> Result<Ptr, RawError> {
        let offset = i64::from((w as u32 as i32) >> 2);
        let at = (loc.at as i64)
            .checked_add(1 + offset)
            .filter(|at| *at >= 0)
            .ok_or_else(|| bad("pointer offset points before its segment"))?;
        self.object(
            Loc {
                seg: loc.seg,
                at: at as usize,
            },
            w,
        )
    }

    /// The object starting at `start`, of the kind and size `w` describes (its offset ignored).
    fn object(&self, start: Loc, w: u64) -> Result<Ptr, RawError> {
        match w & 3 {
            0 => {
                let data = (w >> 32) as u16;
                let pointers = (w >> 48) as u16;
                self.check(start, u64::from(data) + u64::from(pointers))?;
                Ok(Ptr::Struct {
                    start,
                    data,
                    pointers,
                })
            }
            1 => {
                let size = ((w >> 32) & 7) as u8;
                let count = (w >> 35) as u32;
                if size == 7 {
                    // `count` is the body's word count; the tag word comes first.
                    self.check(start, u64::from(count) + 1)?;
                    let tag = self.word(start)?;
                    if tag & 3 != 0 {
                        return Err(bad("struct list tag is not a struct pointer"));
                    }
                    let elements = (tag as u32) >> 2;
                    let data = (tag >> 32) as u16;
                    let pointers = (tag >> 48) as u16;
                    let per = u64::from(data) + u64::from(pointers);
                    if u64::from(elements) * per > u64::from(count) {
                        return Err(bad("struct list elements overrun its word count"));
                    }
                    Ok(Ptr::Structs {
                        start: Loc {
                            seg: start.seg,
                            at: start.at + 1,
                        },
                        count: elements,
                        data,
                        pointers,
                    })
                } else {
                    self.check(start, (u64::from(count) * bits(size)).div_ceil(64))?;
                    Ok(Ptr::List { start, size, count })
                }
            }
            _ => Err(bad("landing pad is not a struct or list pointer")),
        }
    }

    /// Bits `[bit, bit + width)` of the body starting at `start` (width at most 64, aligned).
    fn bits_at(&self, start: Loc, bit: u64, width: u64) -> Result<u64, RawError> {
        let w = self.word(Loc {
            seg: start.seg,
            at: start.at + (bit / 64) as usize,
        })?;
        let shifted = w >> (bit % 64);
        Ok(if width >= 64 {
            shifted
        } else {
            shifted & ((1u64 << width) - 1)
        })
    }
}

/// Bits per element of a non-struct list element-size code.
fn bits(size: u8) -> u64 {
    match size {
        0 => 0,
        1 => 1,
        2 => 8,
        3 => 16,
        4 => 32,
        5 | 6 => 64,
        _ => 0,
    }
}

/// Where element `i` of a struct list starts.
fn element(start: Loc, i: u32, data: u16, pointers: u16) -> Loc {
    let per = usize::from(data) + usize::from(pointers);
    Loc {
        seg: start.seg,
        at: start.at + i as usize * per,
    }
}

/// Reads the value the pointer at `loc` points to. `cap` maps a capability pointer's index in
/// the copy to the index the peer wrote.
fn read_value(
    segs: &Segments<'_>,
    loc: Loc,
    depth: usize,
    cap: &dyn Fn(u32) -> Result<u32, RawError>,
) -> Result<AnyValue, RawError> {
    if depth > NESTING_LIMIT.unsigned_abs() as usize {
        return Err(RawError::TooDeep);
    }
    Ok(match segs.pointer(loc)? {
        Ptr::Null => AnyValue::Null,
        Ptr::Cap(index) => AnyValue::Capability(cap(index)?),
        Ptr::Struct {
            start,
            data,
            pointers,
        } => AnyValue::Struct(read_struct(segs, start, data, pointers, depth, cap)?),
        Ptr::Structs {
            start,
            count,
            data,
            pointers,
        } => {
            let mut out = Vec::with_capacity(count as usize);
            for i in 0..count {
                let at = element(start, i, data, pointers);
                out.push(read_struct(segs, at, data, pointers, depth, cap)?);
            }
            AnyValue::List(ListValue::Structs(out))
        }
        Ptr::List { start, size, count } => {
            let n = u64::from(count);
            match size {
                0 => AnyValue::List(ListValue::Void(count)),
                1 => AnyValue::List(ListValue::Bits(
                    (0..n)
                        .map(|i| segs.bits_at(start, i, 1).map(|b| b == 1))
                        .collect::<Result<_, _>>()?,
                )),
                2 => AnyValue::Data(
                    (0..n)
                        .map(|i| segs.bits_at(start, i * 8, 8).map(|b| b as u8))
                        .collect::<Result<_, _>>()?,
                ),
                3 => AnyValue::List(ListValue::U16(
                    (0..n)
                        .map(|i| segs.bits_at(start, i * 16, 16).map(|b| b as u16))
                        .collect::<Result<_, _>>()?,
                )),
                4 => AnyValue::List(ListValue::U32(
                    (0..n)
                        .map(|i| segs.bits_at(start, i * 32, 32).map(|b| b as u32))
                        .collect::<Result<_, _>>()?,
                )),
                5 => AnyValue::List(ListValue::U64(
                    (0..n)
                        .map(|i| segs.bits_at(start, i * 64, 64))
                        .collect::<Result<_, _>>()?,
                )),
                _ => {
                    let mut out = Vec::with_capacity(count as usize);
                    for i in 0..count {
                        let at = Loc {
                            seg: start.seg,
                            at: start.at + i as usize,
                        };
                        out.push(read_value(segs, at, depth + 1, cap)?);
                    }
                    AnyValue::List(ListValue::Pointers(out))
                }
            }
        }
    })
}

fn read_struct(
    segs: &Segments<'_>,
    start: Loc,
    data: u16,
    pointers: u16,
    depth: usize,
    cap: &dyn Fn(u32) -> Result<u32, RawError>,
) -> Result<StructValue, RawError> {
    let mut value = StructValue {
        data: Vec::with_capacity(usize::from(data)),
        pointers: Vec::with_capacity(usize::from(pointers)),
    };
    for i in 0..usize::from(data) {
        value.data.push(segs.word(Loc {
            seg: start.seg,
            at: start.at + i,
        })?);
    }
    for i in 0..usize::from(pointers) {
        let at = Loc {
            seg: start.seg,
            at: start.at + usize::from(data) + i,
        };
        value.pointers.push(read_value(segs, at, depth + 1, cap)?);
    }
    Ok(value)
}

// ---------------------------------------------------------------------------------------------
// Decoding.

/// Decodes a pointer that is neither null nor a `Data` blob (the caller handles those).
/// `cap_table` is the length of the payload's cap table, or `None` for a field that has none.
pub(super) fn get(
    v: any_pointer::Reader<'_>,
    field: &'static str,
    cap_table: Option<usize>,
) -> Result<AnyValue, WireError> {
    let source_caps = placeholder_table(cap_table.unwrap_or(0));
    let mut source: any_pointer::Reader<'_> = v;
    source.imbue(&source_caps);

    let mut copied_caps = CapTable::new();
    let mut copy = capnp::message::Builder::new_default();
    {
        let mut root = copy.init_root::<any_pointer::Builder<'_>>();
        root.imbue_mut(&mut copied_caps);
        if let Err(e) = root.set_as(source) {
            return Err(copy_error(e, field, cap_table));
        }
    }
    let output = copy.get_segments_for_output();
    let segs = Segments(output.iter().copied().collect());
    let cap = |index: u32| -> Result<u32, RawError> {
        copied_caps
            .get(index as usize)
            .and_then(|hook| hook.as_deref())
            .and_then(placeholder_index)
            .ok_or_else(|| bad(format!("copied capability {index} has no placeholder")))
    };
    read_value(&segs, Loc { seg: 0, at: 0 }, 0, &cap).map_err(|e| match e {
        RawError::TooDeep => WireError::TooDeep { field },
        RawError::Malformed(detail) => WireError::Malformed { field, detail },
    })
}

fn copy_error(e: capnp::Error, field: &'static str, cap_table: Option<usize>) -> WireError {
    use capnp::ErrorKind as K;
    match (e.kind, cap_table) {
        (K::MessageContainsInvalidCapabilityPointer, None) => WireError::UnsupportedValue {
            field,
            detail: "a capability pointer in a field that has no capTable".into(),
        },
        (K::MessageContainsInvalidCapabilityPointer, Some(len)) => WireError::Malformed {
            field,
            detail: format!(
                "a capability pointer's index is outside the capTable of {len} entries"
            ),
        },
        (K::UnknownPointerType, _) => WireError::UnsupportedValue {
            field,
            detail: "a pointer of a kind Cap'n Proto does not define (reserved 'other' pointer)"
                .into(),
        },
        _ => classify(e, field),
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding.

/// Raw words of a standalone single-segment message whose root pointer (word 0) is the value.
struct Writer {
    words: Vec<u64>,
    /// The index each capability pointer asks for, by placeholder number.
    caps: Vec<u32>,
}

impl Writer {
    fn alloc(&mut self, n: usize) -> usize {
        let at = self.words.len();
        self.words.resize(at + n, 0);
        at
    }

    /// Writes at `at` a pointer to `target` whose kind and upper half are in `tail`.
    fn point(&mut self, at: usize, target: usize, kind: u64, upper: u64) {
        // Targets are always allocated after their pointer, so the offset is small and >= 0.
        let offset = (target - at - 1) as u64;
        self.words[at] = ((offset << 2) & 0xffff_ffff) | kind | (upper << 32);
    }

    fn list(&mut self, at: usize, size: u64, count: usize, words: usize) -> usize {
        let start = self.alloc(words);
        self.point(at, start, 1, size | (list_count(count) << 3));
        start
    }

    /// Packs `values` of `width` bits each into a list body.
    fn packed(
        &mut self,
        at: usize,
        size: u64,
        width: usize,
        values: impl ExactSizeIterator<Item = u64>,
    ) {
        let count = values.len();
        let start = self.list(at, size, count, (count * width).div_ceil(64));
        for (i, v) in values.enumerate() {
            let bit = i * width;
            self.words[start + bit / 64] |= v << (bit % 64);
        }
    }

    fn value(&mut self, v: &AnyValue, at: usize) {
        match v {
            AnyValue::Null => {}
            AnyValue::Capability(index) => {
                let placeholder = self.caps.len() as u64;
                self.caps.push(*index);
                self.words[at] = (placeholder << 32) | 3;
            }
            AnyValue::Data(bytes) => self.packed(at, 2, 8, bytes.iter().map(|b| u64::from(*b))),
            AnyValue::Text(s) => {
                let with_nul = s.bytes().chain(std::iter::once(0u8));
                let bytes: Vec<u64> = with_nul.map(u64::from).collect();
                self.packed(at, 2, 8, bytes.into_iter());
            }
            AnyValue::Struct(s) => {
                let (data, pointers) = (section(s.data.len()), section(s.pointers.len()));
                if data + pointers == 0 {
                    // An empty struct must not look null: offset -1, pointing at itself.
                    self.words[at] = 0xffff_fffc;
                    return;
                }
                let start = self.alloc(s.data.len() + s.pointers.len());
                self.point(at, start, 0, data | (pointers << 16));
                self.struct_body(s, start, s.data.len());
            }
            AnyValue::List(list) => match list {
                ListValue::Void(n) => {
                    self.list(at, 0, *n as usize, 0);
                }
                ListValue::Bits(b) => self.packed(at, 1, 1, b.iter().map(|b| u64::from(*b))),
                ListValue::U16(x) => self.packed(at, 3, 16, x.iter().map(|v| u64::from(*v))),
                ListValue::U32(x) => self.packed(at, 4, 32, x.iter().map(|v| u64::from(*v))),
                ListValue::U64(x) => self.packed(at, 5, 64, x.iter().copied()),
                ListValue::Pointers(items) => {
                    let start = self.list(at, 6, items.len(), items.len());
                    for (i, item) in items.iter().enumerate() {
                        self.value(item, start + i);
                    }
                }
                ListValue::Structs(items) => {
                    // Every element gets the widest element's sections (see `ListValue::Structs`).
                    let data = items.iter().map(|s| s.data.len()).max().unwrap_or(0);
                    let pointers = items.iter().map(|s| s.pointers.len()).max().unwrap_or(0);
                    let per = data + pointers;
                    let body = items
                        .len()
                        .checked_mul(per)
                        .filter(|w| *w <= MAX_LIST_ELEMENTS);
                    let Some(body) = body else {
                        panic!(
                            "captp: a struct list of {} words is too large to encode",
                            items.len().saturating_mul(per)
                        );
                    };
                    let tag = self.list(at, 7, body, body + 1);
                    let (d, p) = (section(data), section(pointers));
                    self.words[tag] = (list_count(items.len()) << 2) | ((d | (p << 16)) << 32);
                    for (i, item) in items.iter().enumerate() {
                        self.struct_body(item, tag + 1 + i * per, data);
                    }
                }
            },
        }
    }

    /// Writes a struct's sections at `start`, its pointer section after `data_words` words.
    fn struct_body(&mut self, s: &StructValue, start: usize, data_words: usize) {
        for (i, w) in s.data.iter().enumerate() {
            self.words[start + i] = *w;
        }
        for (i, p) in s.pointers.iter().enumerate() {
            self.value(p, start + data_words + i);
        }
    }
}

/// A struct section size: at most 65535 words or pointers.
fn section(n: usize) -> u64 {
    match u16::try_from(n) {
        Ok(n) => u64::from(n),
        Err(_) => panic!("captp: a struct section of {n} words or pointers is too large to encode"),
    }
}

/// A list element count: at most 2^29 - 1.
fn list_count(n: usize) -> u64 {
    if n > MAX_LIST_ELEMENTS {
        panic!("captp: a list of {n} elements is too large to encode");
    }
    n as u64
}

/// Writes `v` (anything but null, data and text, which the caller writes directly) into `x`,
/// adding its capabilities to `caps`, the cap table of the whole message being built.
pub(super) fn put<'a>(v: &AnyValue, mut x: any_pointer::Builder<'a>, caps: &'a mut CapTable) {
    let mut w = Writer {
        words: vec![0],
        caps: Vec::new(),
    };
    w.value(v, 0);
    let mut aligned = capnp::Word::allocate_zeroed_vec(w.words.len());
    for (dst, word) in capnp::Word::words_to_bytes_mut(&mut aligned)
        .chunks_exact_mut(8)
        .zip(&w.words)
    {
        dst.copy_from_slice(&word.to_le_bytes());
    }
    let segments = [capnp::Word::words_to_bytes(&aligned)];
    // Our own words: no traversal limit, and a nesting limit no value can reach.
    let options = capnp::message::ReaderOptions {
        traversal_limit_in_words: None,
        nesting_limit: i32::MAX,
    };
    let message =
        capnp::message::Reader::new(capnp::message::SegmentArray::new(&segments), options);
    let source_caps: CapTable = w.caps.iter().map(|i| Some(placeholder(*i))).collect();
    let copied = message
        .get_root::<any_pointer::Reader<'_>>()
        .and_then(|root| {
            let mut root: any_pointer::Reader<'_> = root;
            root.imbue(&source_caps);
            x.imbue_mut(caps);
            x.set_as(root)
        });
    if let Err(e) = copied {
        panic!("captp bug: capnp refused the payload codec's own words: {e}");
    }
}

/// Rewrites the capability pointers of an encoded message (segment table and segments, as
/// `capnp::serialize` writes them) from their position in `caps` to the index each placeholder
/// stands for. The RPC schema itself has no capability fields, so every capability pointer in the
/// message is one that [`put`] wrote.
pub(super) fn patch_cap_indices(bytes: &mut [u8], caps: &CapTable) {
    let patches = match find_caps(bytes, caps) {
        Ok(p) => p,
        Err(e) => panic!("captp bug: cannot walk the message just encoded: {e:?}"),
    };
    for (offset, word) in patches {
        bytes[offset..offset + 8].copy_from_slice(&word.to_le_bytes());
    }
}

/// The byte offset and new word of every capability pointer of a framed message.
fn find_caps(bytes: &[u8], caps: &CapTable) -> Result<Vec<(usize, u64)>, RawError> {
    let u32_at = |i: usize| -> Result<usize, RawError> {
        let b = bytes
            .get(i..i + 4)
            .ok_or_else(|| bad("segment table is cut short"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0)? + 1;
    let mut starts = Vec::with_capacity(count);
    let mut offset = (4 + 4 * count).div_ceil(8) * 8;
    let mut segments = Vec::with_capacity(count);
    for i in 0..count {
        let len = u32_at(4 + 4 * i)? * 8;
        let seg = bytes
            .get(offset..offset + len)
            .ok_or_else(|| bad("segment is cut short"))?;
        starts.push(offset);
        segments.push(seg);
        offset += len;
    }
    let total_words = bytes.len() / 8;
    let segs = Segments(segments);
    let mut patches = Vec::new();
    let mut stack = vec![Loc { seg: 0, at: 0 }];
    let mut budget = total_words + 1;
    while let Some(loc) = stack.pop() {
        budget = budget
            .checked_sub(1)
            .ok_or_else(|| bad("more pointers than words"))?;
        match segs.pointer(loc)? {
            Ptr::Null => {}
            Ptr::Cap(position) => {
                let index = caps
                    .get(position as usize)
                    .and_then(|hook| hook.as_deref())
                    .and_then(placeholder_index)
                    .ok_or_else(|| bad(format!("capability {position} is not a placeholder")))?;
                patches.push((
                    starts[loc.seg as usize] + loc.at * 8,
                    (u64::from(index) << 32) | 3,
                ));
            }
            Ptr::Struct {
                start,
                data,
                pointers,
            } => {
                for i in 0..usize::from(pointers) {
                    stack.push(Loc {
                        seg: start.seg,
                        at: start.at + usize::from(data) + i,
                    });
                }
            }
            Ptr::Structs {
                start,
                count,
                data,
                pointers,
            } => {
                for e in 0..count {
                    let at = element(start, e, data, pointers);
                    for i in 0..usize::from(pointers) {
                        stack.push(Loc {
                            seg: at.seg,
                            at: at.at + usize::from(data) + i,
                        });
                    }
                }
            }
            Ptr::List { start, size, count } => {
                if size == 6 {
                    for i in 0..count as usize {
                        stack.push(Loc {
                            seg: start.seg,
                            at: start.at + i,
                        });
                    }
                }
            }
        }
    }
    Ok(patches)
}
