//! The WASM cell host: loads cells from strict manifests (Pulp's schema), binds host
//! capabilities (always-on, or gated with a failing stub when undeclared) and WASI preview1,
//! and drives the Pulp ABI (`pulp_init`, `pulp_step`, `pulp_on_call`, `pulp_shutdown`,
//! `pulp_alloc`, `pulp_free`) through an engine seam that runs exports in fuel slices and lets
//! host imports defer. Every access to guest memory is bounds-checked; a cell is untrusted.
//! Cells built by real toolchains run unchanged: Go's `GOOS=wasip1 GOARCH=wasm go build
//! -buildmode=c-shared`, as Pulp's users build them (see `go-cells/`).
//!
//! # Running a directory of cells
//!
//! What a scenario (or a hardware run) does with a user's cells:
//!
//! 1. **Bind the world.** Implement [`HostServices`] (the clocks, entropy, log and output
//!    lines, sleeping, the key-value store and mailboxes) and [`Pacing`] (fuel slice sizes,
//!    what happens between slices, trace lines). In simulation: the virtual clock
//!    (`now_ns`, `wall_ns`), the decision stream (`entropy`), the trace (`log`, `output`),
//!    the kernel's timers (`sleep`), and a yield to the scheduler between slices; in a
//!    hardware run the real clock, OS entropy and tokio. WASI reaches the outside only
//!    through these, the same as the Pulp capabilities.
//! 2. **Make a host:** `CellHost::new(engine, Registry::standard(), services, pacing,
//!    HostConfig::default())`, with [`engine::wasmi::WasmiEngine`] in simulation or
//!    `engine::wasmtime::WasmtimeEngine` (feature `wasmtime`) on hardware.
//! 3. **Load every cell:** for each directory of [`cell_dirs`]`(root)` (sorted, so the order
//!    replays), [`CellHost::load_dir`], or [`read_cell_dir`] then adjust the spec
//!    (`CellSpec::fuel`, `args`, `env`) and [`CellHost::load`]. Loading compiles the module,
//!    binds WASI and the capabilities, and runs the start function (`_initialize`) once, or
//!    starts the instance from the module's start image ([`snapshot`]): a sweep that makes a
//!    new host per seed pays `_initialize` once per module and thread, with the same results.
//!    Load errors are typed ([`CellError`]): manifest keys, digests, unknown capabilities or
//!    WASI functions, a failing start function.
//! 4. **Drive it** from actors: [`CellHost::init`], [`CellHost::step`] with a
//!    [`abi::StepEnvelope`] (call number, wall time from the host's clock, payload),
//!    [`CellHost::call`] for a host-initiated sibling call (`pulp_call` from cells is routed
//!    by the host, with cycles refused from call chains), [`CellHost::shutdown`],
//!    [`CellHost::close`]. Every method is an `async fn` on one thread; entries into one cell
//!    are serialized by its lock, and every fuel slice, WASI `sched_yield` and WASI sleep is a
//!    scheduling point.
//! 5. **Judge it:** [`Cell::lifecycle`], [`Cell::failure`] (a trap, a spent fuel budget, a
//!    call timeout in the host's time, or `proc_exit(code)`: the instance is gone and later
//!    entries get [`CellError::Failed`], unless the manifest's `restart` policy made a new
//!    one), [`Cell::last_entry_fuel`], [`Cell::start_fuel`], [`Cell::restarts`]; and the
//!    trace lines the host writes through [`Pacing::trace`] (`cell-loaded`, `cell-ready`,
//!    `cell-call`, `cell-call-failed`, `cell-failed`, `cell-restarted`,
//!    `cell-restart-limit`, `cell-shutdown`, `cell-closed`). An [`engine::Engine`] wrapper
//!    can log every entry into every instance for oracles that judge from outside the host.

pub mod abi;
pub mod capability;
pub mod cell;
pub mod cells;
pub mod engine;
pub mod host;
pub mod manifest;
pub mod msgpack;
pub mod snapshot;
pub mod standalone;
pub mod wasi;

pub use capability::{HostServices, Registry};
pub use cell::{Cell, CellError, CellLimits, Failure, Lifecycle};
pub use host::{CellHost, HostConfig, Pacing, cell_dirs, read_cell_dir};

/// Planted bugs mirroring Pulp's history (effective only with feature `planted-bugs`).
pub mod planted {
    /// No cycle detection: A -> B -> A waits on A's lock forever (Pulp P1, b644682).
    pub const NO_CYCLE_CHECK: u32 = 1 << 0;
    /// The sibling-call response buffer is never freed in the target (Pulp P3, 8bf9289).
    pub const LEAK_CALL_RESPONSE: u32 = 1 << 1;
    /// Every idle tick allocates a fresh envelope buffer that is never freed (Pulp P4, 82435df).
    pub const IDLE_TICK_ALLOC: u32 = 1 << 2;
    /// `close` does not take the entry lock, so it can drop the instance under a running step
    /// or call (Pulp v0.2 before `Close` was serialized with the module mutex).
    pub const CLOSE_WITHOUT_LOCK: u32 = 1 << 3;
    /// Undeclared gated capabilities get their real imports instead of stubs.
    pub const BIND_UNDECLARED: u32 = 1 << 4;
    /// A restart makes a bare instance: neither the start function (`_initialize`) nor the
    /// start image runs before `pulp_init` (a host that starts Go reactors only at load).
    pub const RESTART_WITHOUT_START: u32 = 1 << 5;
    /// A failure inside the cell's code leaves the instance in place and the cell Ready, so
    /// the next entry runs on whatever the failed export left half-written.
    pub const KEEP_FAILED_INSTANCE: u32 = 1 << 6;
}

pub(crate) fn has(bugs: u32, bug: u32) -> bool {
    cfg!(feature = "planted-bugs") && bugs & bug != 0
}
