//! The test cells, written in WAT (`crates/cellhost/cells/`), compiled with the `wat` crate when
//! first asked for. `@alloc` in a cell's source is replaced by the shared allocator.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

const ALLOC: &str = include_str!("../cells/alloc.wat.inc");

/// (name, WAT source) of every test cell.
pub const SOURCES: &[(&str, &str)] = &[
    ("node", include_str!("../cells/node.wat")),
    ("trap", include_str!("../cells/trap.wat")),
    ("spin", include_str!("../cells/spin.wat")),
    ("hog", include_str!("../cells/hog.wat")),
    ("badptr", include_str!("../cells/badptr.wat")),
];

/// The WAT text of a test cell, with the allocator spliced in.
pub fn source(name: &str) -> Option<String> {
    SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s.replace("@alloc", ALLOC))
}

/// The compiled module of a test cell (cached; compilation is deterministic).
pub fn wasm(name: &str) -> Result<Vec<u8>, String> {
    static CACHE: OnceLock<Mutex<BTreeMap<String, Vec<u8>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(bytes) = cache.get(name) {
        return Ok(bytes.clone());
    }
    let text = source(name).ok_or_else(|| format!("no test cell `{name}`"))?;
    let bytes = wat::parse_str(&text).map_err(|e| format!("cell `{name}`: {e}"))?;
    cache.insert(name.to_string(), bytes.clone());
    Ok(bytes)
}
