//! The Pulp cell ABI (v0.2.0): export names and signatures, the step envelope, and the return
//! codes of `pulp_call`. Everything on the wire is little-endian; pointers and lengths are u32
//! offsets into the cell's linear memory, checked against its size before any access.

/// Exports a cell must have, with their (params, results) as wasm value types.
pub const REQUIRED_EXPORTS: &[(&str, &[ValType], &[ValType])] = &[
    (ALLOC, &[ValType::I32], &[ValType::I32]),
    (INIT, &[ValType::I32, ValType::I32], &[ValType::I32]),
    (STEP, &[ValType::I32, ValType::I32], &[ValType::I32]),
    (SHUTDOWN, &[], &[ValType::I32]),
];

/// Exports a cell may have; if present they must have these signatures.
pub const OPTIONAL_EXPORTS: &[(&str, &[ValType], &[ValType])] = &[
    (FREE, &[ValType::I32, ValType::I32], &[]),
    (ON_CALL, &[ValType::I32; 6], &[ValType::I32]),
];

pub const ALLOC: &str = "pulp_alloc";
pub const FREE: &str = "pulp_free";
pub const INIT: &str = "pulp_init";
pub const STEP: &str = "pulp_step";
pub const SHUTDOWN: &str = "pulp_shutdown";
pub const ON_CALL: &str = "pulp_on_call";
/// The linear memory every cell exports.
pub const MEMORY: &str = "memory";
/// The import module of host capabilities.
pub const IMPORT_MODULE: &str = "pulp";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValType {
    I32,
    I64,
}

/// Return codes of `pulp_call` (Pulp's, plus 3, 5 and 12, which this host adds).
pub mod call_code {
    pub const OK: u32 = 0;
    /// Empty target or function name.
    pub const EMPTY_NAME: u32 = 1;
    /// Reading the caller's memory failed (a pointer out of range).
    pub const BAD_POINTER: u32 = 2;
    /// No cell of that name.
    pub const UNKNOWN_TARGET: u32 = 3;
    /// The target trapped, returned non-zero, or has no `pulp_on_call`.
    pub const TARGET_ERROR: u32 = 4;
    /// The target is shut down or closed.
    pub const TARGET_GONE: u32 = 5;
    /// The caller's `pulp_alloc` failed.
    pub const CALLER_ALLOC_FAILED: u32 = 7;
    /// Writing the response into the caller failed.
    pub const WRITE_FAILED: u32 = 8;
    /// The manifests do not allow this call.
    pub const NOT_AUTHORIZED: u32 = 11;
    /// The target is already on the call chain (A -> B -> A).
    pub const REENTRANT: u32 = 12;
    /// A stubbed (undeclared gated) capability, or a host failure.
    pub const STUBBED: u32 = 99;
}

/// Return codes a cell's `pulp_on_call` uses (the guest SDK's).
pub mod on_call_code {
    pub const OK: u32 = 0;
    pub const NO_PROVIDER: u32 = 10;
    pub const PROVIDER_ERROR: u32 = 11;
}

/// Length of the step envelope header.
pub const ENVELOPE_HEADER: usize = 20;

/// The input of one `pulp_step`: `call_number u64 | wall_time u64 (ns) | payload_len u32 |
/// payload`. An empty payload is an idle tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepEnvelope {
    pub call_number: u64,
    /// Wall time in ns; in simulation, the virtual clock.
    pub wall_time_ns: u64,
    pub payload: Vec<u8>,
}

impl StepEnvelope {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENVELOPE_HEADER + self.payload.len());
        out.extend_from_slice(&self.call_number.to_le_bytes());
        out.extend_from_slice(&self.wall_time_ns.to_le_bytes());
        out.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    pub fn is_idle(&self) -> bool {
        self.payload.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_layout() {
        let e = StepEnvelope {
            call_number: 7,
            wall_time_ns: 0x0102_0304_0506_0708,
            payload: b"hi".to_vec(),
        };
        let b = e.encode();
        assert_eq!(b.len(), ENVELOPE_HEADER + 2);
        assert_eq!(&b[0..8], &7u64.to_le_bytes());
        assert_eq!(&b[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&b[16..20], &2u32.to_le_bytes());
        assert_eq!(&b[20..], b"hi");
    }
}
