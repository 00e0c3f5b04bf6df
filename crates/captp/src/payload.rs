//! Where capabilities sit in a payload's content: the walk a promised-answer path takes.
//!
//! Interim convention until the structured payload model lands: the path `[]` names cap-table
//! entry 0 and `[i]` names entry `i`.

use crate::wire::AnyValue;

/// The cap-table index the pointer path `path` reaches in `content`.
pub fn cap_index_at(_content: &AnyValue, path: &[u16]) -> Option<u32> {
    match path {
        [] => Some(0),
        [i] => Some(u32::from(*i)),
        _ => None,
    }
}

/// Content that is just a capability pointer to cap-table entry `index` (a bootstrap or
/// accept result).
pub fn cap_pointer(_index: u32) -> AnyValue {
    AnyValue::Null
}
