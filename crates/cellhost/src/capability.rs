//! Host capabilities and the registry that binds them. A capability is a named group of imports
//! in module `pulp`. Always-on capabilities are bound for every cell; a gated one is bound only
//! if the cell's manifest declares it, and otherwise its *stub* is bound: the imports link (so
//! the module loads) but fail at call time with `STUBBED`. Declaring a capability the registry
//! does not know is a load error.

use crate::abi::{ValType, call_code};
use crate::engine::{GuestMemory, HostOutcome, Import, ImportFn};
use crate::manifest::CellSpec;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

/// What host capabilities and the WASI layer reach. The simulation serves them from the virtual
/// clock, the decision source and the trace; a hardware run from the real host. No capability
/// may read a clock or randomness any other way.
pub trait HostServices: 'static {
    /// The host's monotonic clock in ns (virtual time in simulation): `pulp_clock_ns`, WASI's
    /// monotonic clock, and the bound on an entry (`call_timeout_ms`).
    fn now_ns(&self) -> u64;
    /// WASI's realtime clock, ns since the Unix epoch. The virtual clock by default: in
    /// simulation nothing may read the real one.
    fn wall_ns(&self) -> u64 {
        self.now_ns()
    }
    fn entropy(&self, buf: &mut [u8]);
    fn log(&self, cell: &str, message: &str);
    /// One line a cell wrote to its standard output (`fd` 1) or error (`fd` 2) through WASI.
    /// Into the cell's log by default.
    fn output(&self, cell: &str, fd: u32, line: &str) {
        let _ = fd;
        self.log(cell, line);
    }
    /// Completes after `ns` of the host's time (virtual time in simulation): a cell sleeping
    /// through WASI `poll_oneoff`. A scheduling point.
    fn sleep(&self, ns: u64) -> Pin<Box<dyn Future<Output = ()>>>;
    fn kv_get(&self, cell: &str, key: &[u8]) -> Option<Vec<u8>>;
    fn kv_put(&self, cell: &str, key: &[u8], value: &[u8]);
    /// Queues a message for another cell; false if there is no such mailbox.
    fn send(&self, from: &str, to: &str, message: &[u8]) -> bool;
    fn recv(&self, cell: &str) -> Option<Vec<u8>>;
}

/// A sibling call a cell asked for (`pulp_call`), deferred to the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiblingRequest {
    pub target: String,
    pub function: String,
    pub args: Vec<u8>,
    /// Where the caller wants the response's pointer and length (u32 LE each).
    pub resp_ptr_out: u32,
    pub resp_len_out: u32,
}

/// What a capability's imports know about the cell they are bound for.
#[derive(Clone)]
pub struct Binding {
    pub cell: Rc<str>,
    pub services: Rc<dyn HostServices>,
}

type Build = fn(&Binding) -> Vec<Import>;

#[derive(Clone, Copy)]
pub struct Capability {
    pub name: &'static str,
    build: Build,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindError {
    UnknownCapability { name: String },
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::UnknownCapability { name } => {
                write!(f, "manifest declares unknown capability `{name}`")
            }
        }
    }
}

impl std::error::Error for BindError {}

#[derive(Clone, Default)]
pub struct Registry {
    always: BTreeMap<&'static str, Capability>,
    gated: BTreeMap<&'static str, Capability>,
}

/// Capability names.
pub mod names {
    pub const SIBLING: &str = "pulp.sibling";
    pub const LOGGING: &str = "logging";
    pub const CLOCK: &str = "clock";
    pub const ENTROPY: &str = "entropy";
    pub const KV: &str = "storage.kv";
    pub const CHANNEL: &str = "channel";
}

impl Registry {
    /// The host's capabilities: sibling calls, logging, clock and entropy always; key-value
    /// storage and the message channel gated.
    pub fn standard() -> Self {
        let mut r = Registry::default();
        r.always(Capability {
            name: names::SIBLING,
            build: sibling,
        });
        r.always(Capability {
            name: names::LOGGING,
            build: logging,
        });
        r.always(Capability {
            name: names::CLOCK,
            build: clock,
        });
        r.always(Capability {
            name: names::ENTROPY,
            build: entropy,
        });
        r.gated(Capability {
            name: names::KV,
            build: kv,
        });
        r.gated(Capability {
            name: names::CHANNEL,
            build: channel,
        });
        r
    }

    pub fn always(&mut self, c: Capability) {
        self.always.insert(c.name, c);
    }

    pub fn gated(&mut self, c: Capability) {
        self.gated.insert(c.name, c);
    }

    pub fn is_gated(&self, name: &str) -> bool {
        self.gated.contains_key(name)
    }

    /// Refuses a manifest that declares a capability this registry does not know.
    pub fn check(&self, spec: &CellSpec) -> Result<(), BindError> {
        for name in &spec.capabilities {
            if !self.always.contains_key(name.as_str()) && !self.gated.contains_key(name.as_str()) {
                return Err(BindError::UnknownCapability { name: name.clone() });
            }
        }
        Ok(())
    }

    /// The imports for a cell: always-on capabilities, declared gated ones, and stubs for the
    /// rest. `bind_undeclared` is the planted missing-stub bug (the real imports are bound for
    /// undeclared gated capabilities).
    pub fn bind(
        &self,
        spec: &CellSpec,
        binding: &Binding,
        bind_undeclared: bool,
    ) -> Result<Vec<Import>, BindError> {
        self.check(spec)?;
        let mut imports = Vec::new();
        for c in self.always.values() {
            imports.extend((c.build)(binding));
        }
        for c in self.gated.values() {
            let declared = spec.capabilities.iter().any(|n| n == c.name);
            let real = (c.build)(binding);
            if declared || bind_undeclared {
                imports.extend(real);
            } else {
                imports.extend(real.into_iter().map(stub));
            }
        }
        Ok(imports)
    }
}

/// The stub of an import: same signature, fails at call time.
fn stub(import: Import) -> Import {
    let wide = import.results.first() == Some(&ValType::I64);
    Import {
        run: Rc::new(move |_, _| {
            HostOutcome::Return(if wide {
                -i64::from(call_code::STUBBED)
            } else {
                i64::from(call_code::STUBBED)
            })
        }),
        ..import
    }
}

fn import(
    name: &'static str,
    params: &'static [ValType],
    results: &'static [ValType],
    run: impl Fn(&mut dyn GuestMemory, &[i64]) -> HostOutcome + 'static,
) -> Import {
    let run: ImportFn = Rc::new(run);
    Import {
        module: crate::abi::IMPORT_MODULE,
        name,
        params,
        results,
        run,
    }
}

/// A u32 argument (wasm i32 arrives sign-extended).
fn arg(args: &[i64], i: usize) -> u32 {
    args.get(i).map_or(0, |x| *x as u32)
}

fn ret(code: u32) -> HostOutcome {
    HostOutcome::Return(i64::from(code))
}

/// Largest text or buffer a capability moves in one call.
pub const MAX_HOST_BUFFER: u32 = 64 * 1024;

fn read(mem: &dyn GuestMemory, ptr: u32, len: u32) -> Option<Vec<u8>> {
    if len > MAX_HOST_BUFFER {
        return None;
    }
    mem.read(ptr, len).ok()
}

const I32: ValType = ValType::I32;
const I64: ValType = ValType::I64;

fn sibling(_: &Binding) -> Vec<Import> {
    vec![import("pulp_call", &[I32; 8], &[I32], |mem, a| {
        // Inside a call the host runs to completion (an allocator) there is no waiting.
        if !mem.may_suspend() {
            return ret(call_code::STUBBED);
        }
        let (Some(target), Some(function), Some(args)) = (
            read(mem, arg(a, 0), arg(a, 1)),
            read(mem, arg(a, 2), arg(a, 3)),
            read(mem, arg(a, 4), arg(a, 5)),
        ) else {
            return ret(call_code::BAD_POINTER);
        };
        if target.is_empty() || function.is_empty() {
            return ret(call_code::EMPTY_NAME);
        }
        HostOutcome::Defer(Box::new(SiblingRequest {
            target: String::from_utf8_lossy(&target).into_owned(),
            function: String::from_utf8_lossy(&function).into_owned(),
            args,
            resp_ptr_out: arg(a, 6),
            resp_len_out: arg(a, 7),
        }))
    })]
}

fn logging(b: &Binding) -> Vec<Import> {
    let b = b.clone();
    vec![import(
        "pulp_log",
        &[I32, I32],
        &[I32],
        move |mem, a| match read(mem, arg(a, 0), arg(a, 1)) {
            Some(bytes) => {
                b.services.log(&b.cell, &String::from_utf8_lossy(&bytes));
                ret(call_code::OK)
            }
            None => ret(call_code::BAD_POINTER),
        },
    )]
}

fn clock(b: &Binding) -> Vec<Import> {
    let b = b.clone();
    vec![import("pulp_clock_ns", &[], &[I64], move |_, _| {
        HostOutcome::Return(b.services.now_ns() as i64)
    })]
}

fn entropy(b: &Binding) -> Vec<Import> {
    let b = b.clone();
    vec![import(
        "pulp_entropy",
        &[I32, I32],
        &[I32],
        move |mem, a| {
            let (ptr, len) = (arg(a, 0), arg(a, 1));
            if len > MAX_HOST_BUFFER {
                return ret(call_code::BAD_POINTER);
            }
            let mut buf = vec![0u8; len as usize];
            b.services.entropy(&mut buf);
            match mem.write(ptr, &buf) {
                Ok(()) => ret(call_code::OK),
                Err(_) => ret(call_code::BAD_POINTER),
            }
        },
    )]
}

/// `pulp_kv_get` returns the value's length, or a negated code: -1 not found, -2 bad pointer,
/// -3 buffer too small, -99 stubbed.
fn kv(b: &Binding) -> Vec<Import> {
    let (g, p) = (b.clone(), b.clone());
    vec![
        import("pulp_kv_get", &[I32; 4], &[I64], move |mem, a| {
            let Some(key) = read(mem, arg(a, 0), arg(a, 1)) else {
                return HostOutcome::Return(-2);
            };
            let Some(value) = g.services.kv_get(&g.cell, &key) else {
                return HostOutcome::Return(-1);
            };
            if value.len() > arg(a, 3) as usize {
                return HostOutcome::Return(-3);
            }
            match mem.write(arg(a, 2), &value) {
                Ok(()) => HostOutcome::Return(value.len() as i64),
                Err(_) => HostOutcome::Return(-2),
            }
        }),
        import("pulp_kv_put", &[I32; 4], &[I32], move |mem, a| {
            match (
                read(mem, arg(a, 0), arg(a, 1)),
                read(mem, arg(a, 2), arg(a, 3)),
            ) {
                (Some(key), Some(value)) => {
                    p.services.kv_put(&p.cell, &key, &value);
                    ret(call_code::OK)
                }
                _ => ret(call_code::BAD_POINTER),
            }
        }),
    ]
}

/// `pulp_recv` returns the message's length, or a negated code: -1 none, -2 bad pointer, -3
/// buffer too small (the message is dropped), -99 stubbed.
fn channel(b: &Binding) -> Vec<Import> {
    let (s, r) = (b.clone(), b.clone());
    vec![
        import("pulp_send", &[I32; 4], &[I32], move |mem, a| {
            match (
                read(mem, arg(a, 0), arg(a, 1)),
                read(mem, arg(a, 2), arg(a, 3)),
            ) {
                (Some(to), Some(message)) => {
                    if s.services
                        .send(&s.cell, &String::from_utf8_lossy(&to), &message)
                    {
                        ret(call_code::OK)
                    } else {
                        ret(call_code::UNKNOWN_TARGET)
                    }
                }
                _ => ret(call_code::BAD_POINTER),
            }
        }),
        import("pulp_recv", &[I32, I32], &[I64], move |mem, a| {
            let Some(message) = r.services.recv(&r.cell) else {
                return HostOutcome::Return(-1);
            };
            if message.len() > arg(a, 1) as usize {
                return HostOutcome::Return(-3);
            }
            match mem.write(arg(a, 0), &message) {
                Ok(()) => HostOutcome::Return(message.len() as i64),
                Err(_) => HostOutcome::Return(-2),
            }
        }),
    ]
}
