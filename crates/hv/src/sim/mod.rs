//! Simulation binding of the hypervisor seam, on the simkit kernel.
//!
//! Model. Doorbells and interrupts are kernel-mediated signals: ringing is serializing for the
//! ringer (`sync_release`) and the woken side acquires its view (`sync_acquire`). Delivery takes
//! a seeded latency; under buggify it can be much later, and a delivery can be a spurious
//! wake-up. Hypercalls are VM exits: the guest's vCPU is held for a seeded exit latency while
//! the host handler runs. Pause stops the vCPU at its next step until resume.
//!
//! Faults injected: delivery latency, coalescing (several rings before a wait), spurious
//! wake-ups, exit latency, pauses.

mod eventfd;
mod irq;
mod shm;
mod vm;

pub use eventfd::SimEventFd;
pub use irq::SimIrqLine;
pub use shm::SimShm;
pub use vm::{HypercallHandler, SimVm};

/// Planted bugs at the hypervisor seam (effective only with feature `planted-bugs`).
pub mod planted {
    /// The guest's wait-for-interrupt forgets an interrupt that arrived between the thread's
    /// check and its halt (Arca `kthread::wfi` checks `INTERRUPTED` only after `hlt`).
    pub const WFI_LOST_WAKEUP: u32 = 1 << 0;
}

pub(crate) fn has(bugs: u32, bug: u32) -> bool {
    cfg!(feature = "planted-bugs") && bugs & bug != 0
}

/// Seeded delivery latency of one signal, in virtual nanoseconds.
pub(crate) fn delivery_latency(ctx: &simkit::Ctx, base_ns: u64) -> u64 {
    let mut latency = base_ns + ctx.choose(base_ns.max(1) * 2 + 1);
    if ctx.buggify() {
        latency += ctx.choose(50_000);
    }
    latency
}

/// A signal line's state as deliveries see it.
pub(crate) trait Signalled: 'static {
    /// Numbers the next signal sent on the line (1, 2, ...).
    fn next_signal(&mut self) -> u64;
    /// Applies a real delivery (`Some(edge)`: the sender's happens-before edge) or a spurious
    /// wake-up (`None`), and returns the details for the trace line. A real delivery carries
    /// its signal's number, which a woken waiter names (`by=`).
    fn deliver(&mut self, edge: Option<&simkit::SyncToken>, signal: u64) -> String;
    /// The waiters to wake after a delivery.
    fn take_waiters(&mut self) -> Vec<std::task::Waker>;
}

/// Sends one signal on a line: serializing for the sender (`sync_release`), delivered after a
/// seeded latency and, under buggify, followed by a spurious wake-up on top of (never instead
/// of) the real delivery. `#[track_caller]` keeps one buggify site per device (its call site),
/// as before this helper existed.
///
/// Trace lines link the two ends for reports: the send carries `send=<line>#<n>`, the delivery
/// `recv=<line>#<n>`, and a waiter the delivery woke `by=<line>#<n>`.
#[track_caller]
pub(crate) fn signal<S: Signalled>(
    ctx: &simkit::Ctx,
    name: &std::rc::Rc<str>,
    event: &str,
    base_latency_ns: u64,
    state: &std::rc::Rc<std::cell::RefCell<S>>,
) {
    let edge = ctx.sync_release();
    let latency = delivery_latency(ctx, base_latency_ns);
    let n = state.borrow_mut().next_signal();
    ctx.trace(
        event,
        format_args!("{name} latency={latency} send={name}#{n}"),
    );
    schedule_delivery(ctx, name, state, latency, Some(edge), n);
    if ctx.buggify() {
        let extra = delivery_latency(ctx, base_latency_ns);
        schedule_delivery(ctx, name, state, extra, None, n);
    }
}

fn schedule_delivery<S: Signalled>(
    ctx: &simkit::Ctx,
    name: &std::rc::Rc<str>,
    state: &std::rc::Rc<std::cell::RefCell<S>>,
    latency: u64,
    edge: Option<simkit::SyncToken>,
    signal: u64,
) {
    let (state, name) = (state.clone(), name.clone());
    ctx.with(|k| {
        let at = k.now() + latency;
        k.schedule_at(
            at,
            Box::new(move |k| {
                let mut s = state.borrow_mut();
                let details = s.deliver(edge.as_ref(), signal);
                let link = if edge.is_some() {
                    format!(" recv={name}#{signal}")
                } else {
                    String::new()
                };
                k.trace_as(&name, "deliver", format_args!("{details}{link}"));
                for w in s.take_waiters() {
                    w.wake();
                }
            }),
        );
    });
}
