//! WASM module bytes through load and the entries of the cell host (see
//! `simkit_fuzz::cell_module`): malformed and hostile modules end in typed errors, never a
//! panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    simkit_fuzz::cell_module::run(data);
});
