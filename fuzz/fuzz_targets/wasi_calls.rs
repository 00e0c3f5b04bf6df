//! The WASI layer's arguments from guest memory (see `simkit_fuzz::wasi_calls`): any calls,
//! any pointers and lengths, any memory; an errno every time, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use simkit_fuzz::wasi_calls::{Input, run};

fuzz_target!(|input: Input| {
    run(input);
});
