//! The WASI preview1 layer's arguments, as a cell's code passes them: any sequence of calls to
//! any of its functions, with any pointers, lengths, descriptors and flags, against a linear
//! memory holding any bytes, before and after start-up ends. Every call must answer with a
//! WASI errno (or, for `proc_exit` alone, end the cell), touch no memory outside the guest's,
//! and never panic.

use arbitrary::Arbitrary;
use cellhost::abi::ValType;
use cellhost::engine::{GuestMemory, HostOutcome, MemoryError};
use cellhost::standalone::Quiet;
use cellhost::wasi::{self, WasiCtx};
use std::rc::Rc;

/// A guest memory of one 64 KiB page.
const MEMORY: usize = 1 << 16;

/// The largest errno WASI preview1 defines (`ENOTCAPABLE`).
const LAST_ERRNO: i64 = 76;

#[derive(Arbitrary, Debug)]
pub struct Input {
    /// The start of linear memory (the rest is zero).
    memory: Vec<u8>,
    /// The cell's arguments and environment, as its manifest would give them.
    args: Vec<String>,
    env: Vec<String>,
    /// Whether the running export may suspend (false inside the host's own `pulp_alloc`).
    may_suspend: bool,
    calls: Vec<Call>,
}

#[derive(Arbitrary, Debug)]
enum Call {
    /// Start-up ends: the cell goes live.
    GoLive,
    /// Function number `function` (modulo the layer's count) with these raw arguments.
    Function { function: u8, args: [u64; 6] },
}

struct Memory {
    data: Vec<u8>,
    may_suspend: bool,
}

impl Memory {
    fn range(&self, ptr: u32, len: usize) -> Result<std::ops::Range<usize>, MemoryError> {
        let start = ptr as usize;
        match start.checked_add(len) {
            Some(end) if end <= self.data.len() => Ok(start..end),
            _ => Err(MemoryError {
                ptr,
                len: u32::try_from(len).unwrap_or(u32::MAX),
                size: self.data.len() as u64,
            }),
        }
    }
}

impl GuestMemory for Memory {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read(&self, ptr: u32, len: u32) -> Result<Vec<u8>, MemoryError> {
        let r = self.range(ptr, len as usize)?;
        Ok(self.data[r].to_vec())
    }
    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), MemoryError> {
        let r = self.range(ptr, bytes.len())?;
        self.data[r].copy_from_slice(bytes);
        Ok(())
    }
    fn may_suspend(&self) -> bool {
        self.may_suspend
    }
}

pub fn run(input: Input) {
    let mut data = input.memory;
    data.resize(MEMORY, 0);
    data.truncate(MEMORY);
    let mut memory = Memory {
        data,
        may_suspend: input.may_suspend,
    };
    let ctx = WasiCtx::new(Rc::from("fuzzed"), Rc::new(Quiet), input.args, input.env);
    let imports = wasi::imports(&ctx);
    for call in input.calls.iter().take(64) {
        let (function, raw) = match call {
            Call::GoLive => {
                ctx.go_live();
                continue;
            }
            Call::Function { function, args } => (*function, args),
        };
        let import = &imports[usize::from(function) % imports.len()];
        let args: Vec<i64> = import
            .params
            .iter()
            .zip(raw)
            .map(|(ty, v)| match ty {
                // A wasm i32 arrives sign-extended.
                ValType::I32 => i64::from(*v as u32 as i32),
                ValType::I64 => *v as i64,
            })
            .collect();
        match (import.run)(&mut memory, &args) {
            HostOutcome::Return(code) => {
                if !import.results.is_empty() {
                    assert!(
                        (0..=LAST_ERRNO).contains(&code),
                        "{} returned {code}, not a WASI errno",
                        import.name
                    );
                }
            }
            HostOutcome::Exit(_) => {
                assert_eq!(import.name, "proc_exit", "only proc_exit ends the cell");
                return;
            }
            HostOutcome::Defer(_) => {
                assert!(memory.may_suspend, "{} deferred where it must answer at once", import.name);
            }
        }
        assert_eq!(memory.data.len(), MEMORY);
    }
    ctx.flush();
}
