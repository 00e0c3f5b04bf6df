//! A hostile peer against the RPC engine: the input is a program (see `captp::hostile`) of
//! messages from a hostile vat (built from every message kind with IDs the honest vats gave
//! it, mutated encodings, raw bytes), application actions and honest deliveries between two
//! real vats. The engine must never panic, every protocol error must end in an `Abort` with a
//! reason (and a closed connection), and every message it sends must survive the codec.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    captp::hostile::run(data);
});
