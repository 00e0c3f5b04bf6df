//! Cell manifests from an untrusted packager: any text parses to a spec or a typed error, never
//! a panic; a spec that parses is normalised (capabilities lower-cased, sorted, unique), its
//! names are valid, its module path stays inside the cell's directory, and its `[config]`
//! encodes to MessagePack.
#![no_main]

use cellhost::{manifest, msgpack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = manifest::parse(text) else {
        return;
    };
    let caps = &spec.capabilities;
    assert!(caps.windows(2).all(|w| w[0] < w[1]), "capabilities not sorted and unique: {caps:?}");
    assert!(caps.iter().all(|c| *c == c.to_ascii_lowercase()));
    assert!(!spec.name.is_empty() && spec.name.len() <= 64);
    assert!(!spec.wasm.starts_with('/') && !spec.wasm.split('/').any(|p| p == ".."));
    assert!(spec.schema_version <= manifest::SCHEMA_VERSION);
    let _ = msgpack::encode_table(&spec.config);
});
