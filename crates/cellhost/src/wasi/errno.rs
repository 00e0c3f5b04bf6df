//! WASI preview1 error numbers (`errno` in `wasi_snapshot_preview1.witx`): the ones this host
//! answers with.

pub const SUCCESS: i64 = 0;
pub const BADF: i64 = 8;
pub const FAULT: i64 = 21;
pub const INVAL: i64 = 28;
pub const NAMETOOLONG: i64 = 37;
pub const NOSYS: i64 = 52;
pub const NOTDIR: i64 = 54;
pub const NOTSOCK: i64 = 57;
pub const NOTSUP: i64 = 58;
pub const SPIPE: i64 = 70;
