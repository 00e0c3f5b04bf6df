//! The vCPU run loop on its own OS thread: `KVM_RUN` until the guest exits, faults or the host
//! stops it. Doorbells and interrupts never come here (ioeventfd and irqfd are served in the
//! kernel); what does is a hypercall (a read of `HYPERCALL_MMIO`; `HALT` parks this thread on
//! the event channel, the rest go to the `ExitHandler`), a doorbell rung before its
//! ioeventfd existed (added to its counter here), another write no device takes, or the end (a
//! triple fault shows as `Shutdown`). The vCPU thread holds the VM open while it runs.
//!
//! Stopping: the host sets a flag and signals the thread (a real-time signal with an empty
//! handler), which makes a blocked `KVM_RUN` return `EINTR`; it repeats the signal until the
//! thread has gone, since one can land just before `KVM_RUN` starts.

use crate::KvmError;
use crate::doorbells::Doorbells;
use crate::events::EventChannel;
use hv::metal::{DOORBELL_MMIO, HYPERCALL_MMIO, hypercall};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::Duration;
use vmm_sys_util::signal::{Killable, SIGRTMIN, register_signal_handler};

/// What the guest's hypercall leads to.
pub enum Hypercall {
    /// Resume the guest with this value in `rax`.
    Return(u64),
    /// Stop the vCPU (the guest is done).
    Stop,
}

/// Serves a vCPU's exits on the vCPU thread.
pub trait ExitHandler: Send + 'static {
    fn hypercall(&mut self, nr: u64, args: [u64; 4]) -> Hypercall;
    /// A port or MMIO write no ioeventfd consumed (an unregistered doorbell id, a stray
    /// address).
    fn stray_write(&mut self, address: u64, data: &[u8]);
}

/// How a vCPU thread ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuEnd {
    /// The handler stopped it (the guest's exit hypercall).
    Exited,
    /// The host stopped it.
    Stopped,
    /// The guest triple-faulted (no handler could run); `rip` where it stood.
    Shutdown { rip: u64 },
    /// KVM refused to run it, or an unexpected exit.
    Failed(String),
}

pub struct VcpuThread {
    thread: Option<JoinHandle<VcpuEnd>>,
    stop: Arc<AtomicBool>,
    events: Arc<EventChannel>,
}

extern "C" fn wake_from_kvm_run(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn stop_signal() -> libc::c_int {
    SIGRTMIN()
}

impl VcpuThread {
    pub(crate) fn spawn(
        vcpu: VcpuFd,
        doorbells: Arc<Doorbells>,
        events: Arc<EventChannel>,
        mut handler: impl ExitHandler,
    ) -> Result<Self, KvmError> {
        static HANDLER: Once = Once::new();
        let mut registered = Ok(());
        HANDLER.call_once(|| {
            registered = register_signal_handler(stop_signal(), wake_from_kvm_run)
                .map_err(|e| KvmError::Signal(e.to_string()));
        });
        registered?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let channel = events.clone();
        let thread = std::thread::Builder::new()
            .name("vcpu0".into())
            .spawn(move || run(vcpu, &doorbells, &channel, &mut handler, &flag))
            .map_err(|e| KvmError::Os("spawn the vCPU thread", e))?;
        Ok(Self {
            thread: Some(thread),
            stop,
            events,
        })
    }

    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits for the thread to end, stopping it first if `stop`.
    pub fn join(mut self, stop: bool) -> VcpuEnd {
        let Some(thread) = self.thread.take() else {
            return VcpuEnd::Stopped;
        };
        if stop {
            self.stop.store(true, Ordering::SeqCst);
            self.events.notify_stop();
            while !thread.is_finished() {
                // A failed kill means the thread is already gone.
                let _ = thread.kill(stop_signal());
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        thread
            .join()
            .unwrap_or_else(|_| VcpuEnd::Failed("the vCPU thread panicked".into()))
    }
}

impl Drop for VcpuThread {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let rest = VcpuThread {
                thread: self.thread.take(),
                stop: self.stop.clone(),
                events: self.events.clone(),
            };
            rest.join(true);
        }
    }
}

/// An exit, copied out of the run structure so the vCPU can be queried while serving it.
enum Exit {
    Hypercall,
    LateDoorbell(u64),
    Stray(u64, Vec<u8>),
    PortIn,
    Shutdown,
    Unexpected(String),
}

fn run(
    mut vcpu: VcpuFd,
    doorbells: &Doorbells,
    events: &EventChannel,
    handler: &mut impl ExitHandler,
    stop: &AtomicBool,
) -> VcpuEnd {
    loop {
        if stop.load(Ordering::SeqCst) {
            return VcpuEnd::Stopped;
        }
        let exit = match vcpu.run() {
            Ok(VcpuExit::MmioRead(HYPERCALL_MMIO, _)) => Exit::Hypercall,
            Ok(VcpuExit::MmioWrite(DOORBELL_MMIO, &[a, b, c, d])) => {
                Exit::LateDoorbell(u64::from(u32::from_le_bytes([a, b, c, d])))
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => Exit::Stray(addr, data.to_vec()),
            Ok(VcpuExit::IoOut(port, data)) => Exit::Stray(u64::from(port), data.to_vec()),
            Ok(VcpuExit::IoIn(_, data)) => {
                data.fill(0xff);
                Exit::PortIn
            }
            Ok(VcpuExit::Shutdown) => Exit::Shutdown,
            Ok(other) => Exit::Unexpected(format!("{other:?}")),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
            Err(e) => return VcpuEnd::Failed(format!("KVM_RUN: {e}")),
        };
        match exit {
            Exit::Hypercall => {
                let regs = match vcpu.get_regs() {
                    Ok(r) => r,
                    Err(e) => return VcpuEnd::Failed(format!("KVM_GET_REGS: {e}")),
                };
                let answer = if regs.r8 == hypercall::HALT {
                    match events.halt(regs.rdi, stop) {
                        Some(epoch) => Hypercall::Return(epoch),
                        None => return VcpuEnd::Stopped,
                    }
                } else {
                    handler.hypercall(regs.r8, [regs.rdi, regs.rsi, regs.rdx, regs.r10])
                };
                match answer {
                    Hypercall::Return(value) => {
                        let run = vcpu.get_kvm_run();
                        // SAFETY: the last exit was KVM_EXIT_MMIO (a read), so `mmio` is the
                        // union member in use; KVM copies `data[..len]` into the guest's
                        // register when the vCPU runs again.
                        #[allow(unsafe_code)]
                        let mmio = unsafe { &mut run.__bindgen_anon_1.mmio };
                        let n = (mmio.len as usize).min(8);
                        mmio.data[..n].copy_from_slice(&value.to_le_bytes()[..n]);
                    }
                    Hypercall::Stop => return VcpuEnd::Exited,
                }
            }
            Exit::LateDoorbell(id) => {
                if let Err(e) = doorbells.ring_late(id) {
                    handler.stray_write(DOORBELL_MMIO, &format!("doorbell {id}: {e}").into_bytes());
                }
            }
            Exit::Stray(addr, data) => handler.stray_write(addr, &data),
            Exit::PortIn => {}
            Exit::Shutdown => {
                let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
                return VcpuEnd::Shutdown { rip };
            }
            Exit::Unexpected(what) => {
                let rip = vcpu.get_regs().map(|r| r.rip).unwrap_or(0);
                let run = vcpu.get_kvm_run();
                // SAFETY: read-only look at the exit details; for an internal error `internal`
                // is the member in use, and for other exits the words are only printed.
                #[allow(unsafe_code)]
                let detail = unsafe { run.__bindgen_anon_1.internal };
                return VcpuEnd::Failed(format!(
                    "unexpected exit {what} at rip {rip:#x} (suberror {}, data {:x?})",
                    detail.suberror,
                    &detail.data[..(detail.ndata as usize).min(16)]
                ));
            }
        }
    }
}
