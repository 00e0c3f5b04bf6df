//! The replay-file reader is a trust boundary: any input gives a typed error or a valid file,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(file) = sim::replay_file::ReplayFile::parse(text)
    {
        // A file that parses describes a run.
        assert!(file.spec().is_ok());
    }
});
