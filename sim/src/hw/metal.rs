//! Runs one metal-guest program against the real monitor: the bare-metal image
//! (`metal-image`) in a KVM vCPU, booted with the program's plan, and the same `monitor` crate on
//! a tokio current-thread runtime, its doorbells ioeventfds read through `AsyncFd`, its interrupt
//! line an irqfd plus the event channel, its memory the guest's RAM, its files and network what
//! the scenario hands it. The guest reports what it observed through hypercalls; the scenario's
//! oracles judge that, and [`MetalRun::violations`] adds the hardware run's own checks: the guest
//! exited cleanly within the deadline and never stalled halted, it took no exception, and the
//! monitor never touched memory outside the pipe it served.
//!
//! Both sides' shared-memory views carry seeded jitter (`raw_shm::Jitter`, `--jitter`), which
//! widens the check-then-act windows of ring races from nanoseconds to microseconds.

use crate::exit::UsageError;
use crate::hw::trace::{Trace, spawn};
use hv::EventWaiter;
use hv::metal::{BootHeader, JITTER_MAX_SPINS};
use hv_kvm::reports::{GuestReports, ReportingHandler, boot_params};
use hv_kvm::{DoorbellWaiter, IrqLine, KvmError, Machine, VcpuEnd};
use models::Violation;
use monitor::{ControlHandler, FileStore, MonitorConfig, Net, Platform};
use raw_shm::{Jitter, RawShm};
use ring_pipe::msg::code;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a planted bug goes in a hardware run.
#[derive(Default, Clone, Copy)]
pub struct HardwareBug {
    pub guest: u32,
    pub guest_ring: u32,
    pub guest_platform: u32,
    pub monitor_ring: u32,
    pub monitor: u32,
}

/// Planted bugs with a hardware form, by name.
pub fn hardware_bug(name: &str) -> Option<HardwareBug> {
    let none = HardwareBug::default();
    Some(match name {
        "pipe-eof-before-drain" => HardwareBug {
            monitor_ring: ring_pipe::planted::EOF_BEFORE_DRAIN,
            ..none
        },
        "pipe-close-no-doorbell" => HardwareBug {
            guest: guest::planted::CLOSE_NO_DOORBELL,
            ..none
        },
        "pipe-wrap-off-by-one" => HardwareBug {
            guest_ring: ring_pipe::planted::WRAP_OFF_BY_ONE,
            ..none
        },
        "pipe-spin-dead-peer" => HardwareBug {
            guest: guest::planted::SPIN_ON_DEAD_PEER,
            ..none
        },
        "pipe-lost-wakeup" => HardwareBug {
            guest_platform: hv::metal::planted::WFI_LOST_WAKEUP,
            ..none
        },
        _ => return None,
    })
}

/// The shared region: as in the simulation.
const REGION_LEN: u64 = 256 * 1024;
/// A healthy run takes milliseconds; a stuck one is judged at this bound.
const DEADLINE: Duration = Duration::from_secs(10);
/// A vCPU halted this long with no interrupt coming is stuck: every wake-up it waits for comes
/// from the monitor within microseconds of the guest's own doorbells.
const HALT_STALL: Duration = Duration::from_secs(1);

/// How the run loop stopped waiting for the guest.
#[derive(Clone, Copy, PartialEq)]
enum Wait {
    Finished,
    Deadline,
    HaltStall,
}

/// A doorbell whose ioeventfd could not be registered never rings (the failure is recorded).
pub struct Bell(Option<DoorbellWaiter>);

impl EventWaiter for Bell {
    async fn wait(&self) -> u64 {
        match &self.0 {
            Some(w) => w.wait().await,
            None => std::future::pending().await,
        }
    }
    fn try_take(&self) -> u64 {
        self.0.as_ref().map_or(0, |w| w.try_take())
    }
}

/// The monitor's view of the KVM host.
#[derive(Clone)]
struct KvmPlatform<N: Net> {
    machine: Rc<Machine>,
    shm: RawShm,
    irq: IrqLine,
    trace: Rc<Trace>,
    errors: Rc<RefCell<Vec<String>>>,
    start_cursor: u64,
    net: N,
}

impl<N: Net> Platform for KvmPlatform<N> {
    type Mem = RawShm;
    type Waiter = Bell;
    type Irq = IrqLine;
    type Net = N;

    fn memory(&self) -> RawShm {
        self.shm.clone()
    }
    fn pipe_memory(&self, offset: u64, len: u64) -> RawShm {
        self.shm.bounded(offset, len)
    }
    fn doorbell(&self, id: u64) -> Bell {
        match self.machine.doorbell(id) {
            Ok(w) => Bell(Some(w)),
            Err(e) => {
                self.errors.borrow_mut().push(format!("doorbell {id}: {e}"));
                Bell(None)
            }
        }
    }
    fn irq(&self) -> IrqLine {
        self.irq.clone()
    }
    fn net(&self) -> N {
        self.net.clone()
    }
    fn spawn(&self, name: &str, fut: Pin<Box<dyn Future<Output = ()>>>) {
        spawn(name, fut);
    }
    fn trace(&self, event: &str, details: fmt::Arguments<'_>) {
        self.trace.line(event, details);
    }
    fn start_cursor(&self) -> u64 {
        self.start_cursor
    }
}

/// A host with no files (pipe-echo opens none).
pub struct NoFiles;

impl FileStore for NoFiles {
    type Handle = u64;
    async fn open(&self, _: &str, _: u64) -> Result<u64, u64> {
        Err(code::NOT_FOUND)
    }
    async fn read(&self, _: u64, _: u64) -> Result<Vec<u8>, u64> {
        Err(code::BAD_ID)
    }
    async fn write(&self, _: u64, _: &[u8]) -> Result<u64, u64> {
        Err(code::BAD_ID)
    }
    async fn seek(&self, _: u64, _: i64, _: ring_pipe::msg::Whence) -> Result<u64, u64> {
        Err(code::BAD_ID)
    }
    async fn close(&self, _: u64) {}
}

fn kvm(e: KvmError) -> UsageError {
    UsageError(format!("hardware: {e}"))
}

/// What a run needs besides the guest program: the seed (the guest's preemption and jitter
/// choices; the host's jitter), the planted bug, the jitter rate, where ring cursors start, and
/// the host's files and network.
pub struct MetalSetup<F, N> {
    pub seed: u64,
    pub bug: HardwareBug,
    pub jitter_one_in: u32,
    pub start_cursor: u64,
    pub files: Rc<F>,
    pub net: N,
}

/// What a run left for the oracles.
pub struct MetalRun {
    pub reports: GuestReports,
    pub trace: Vec<String>,
    pub wall_ms: f64,
    end: VcpuEnd,
    wait: Wait,
    errors: Vec<String>,
    monitor_faults: u64,
}

impl MetalRun {
    /// The hardware run's own checks.
    pub fn violations(&self) -> Vec<Violation> {
        let mut violations: Vec<Violation> = self
            .reports
            .errors
            .iter()
            .map(|e| Violation::new("guest-error", e.clone()))
            .collect();
        match self.wait {
            Wait::Deadline => violations.push(Violation::new(
                "liveness",
                format!("the guest did not finish within {}s", DEADLINE.as_secs()),
            )),
            Wait::HaltStall => violations.push(Violation::new(
                "liveness",
                format!(
                    "the guest halted for {}s waiting for an interrupt that never came",
                    HALT_STALL.as_secs()
                ),
            )),
            Wait::Finished => {
                if self.end != VcpuEnd::Exited || self.reports.exit_code != Some(0) {
                    violations.push(Violation::new(
                        "guest-exit",
                        format!(
                            "vCPU ended {:?} with exit code {:?}",
                            self.end, self.reports.exit_code
                        ),
                    ));
                }
            }
        }
        if let Some([vector, rip, code]) = self.reports.fault {
            violations.push(Violation::new(
                "no-panic",
                format!("guest exception {vector} at rip {rip:#x} (error code {code:#x})"),
            ));
        }
        for e in &self.errors {
            violations.push(Violation::new("hardware", e.clone()));
        }
        if self.monitor_faults > 0 {
            violations.push(Violation::new(
                "no-out-of-bounds",
                format!(
                    "the monitor tried {} accesses outside the pipe it serves",
                    self.monitor_faults
                ),
            ));
        }
        violations
    }
}

/// Boots `program` (an encoded plan the metal guest recognises) and serves it until the guest
/// exits, stalls or runs out of time. `host` runs beside the monitor on the same runtime (the
/// scenario's external peers); it is dropped when the guest is done.
pub fn run_metal<F: FileStore, N: Net, H: Future<Output = ()> + 'static>(
    program: &[u8],
    setup: MetalSetup<F, N>,
    host: H,
) -> Result<MetalRun, UsageError> {
    let MetalSetup {
        seed,
        bug,
        jitter_one_in,
        start_cursor,
        files,
        net,
    } = setup;
    let mut machine = Machine::new(REGION_LEN).map_err(kvm)?;
    machine
        .load(
            metal_image::IMAGE,
            &boot_params(
                &BootHeader {
                    bugs: bug.guest,
                    ring_bugs: bug.guest_ring,
                    platform_bugs: bug.guest_platform,
                    jitter_one_in,
                    seed,
                },
                program,
            ),
        )
        .map_err(kvm)?;
    let machine = Rc::new(machine);
    let shm = machine.shm().map_err(kvm)?;
    let shm = if jitter_one_in > 0 {
        shm.with_jitter(Arc::new(Jitter::new(seed, jitter_one_in, JITTER_MAX_SPINS)))
    } else {
        shm
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let trace = Rc::new(Trace::new());
    let errors: Rc<RefCell<Vec<String>>> = Rc::default();
    let reports: Arc<Mutex<GuestReports>> = Arc::default();
    let started = Instant::now();
    let (end, wait) = local
        .block_on(&runtime, async {
            let irq = machine.irq_line()?;
            let platform = KvmPlatform {
                machine: machine.clone(),
                shm: shm.clone(),
                irq,
                trace: trace.clone(),
                errors: errors.clone(),
                start_cursor,
                net,
            };
            let config = MonitorConfig {
                ring_bugs: bug.monitor_ring,
                bugs: bug.monitor,
            };
            let handler = ControlHandler::new(platform, files, config);
            if let Err(e) = handler.init_control().await {
                errors.borrow_mut().push(format!("control pipe: {e}"));
            }
            let peers = spawn("peers", host);
            trace.line("vcpu-start", format_args!("seed={seed}"));
            let vcpu = machine.start(ReportingHandler {
                ram: machine.ram().clone(),
                reports: reports.clone(),
            })?;
            let monitor = spawn("monitor", handler.run());
            let stop = Instant::now() + DEADLINE;
            let mut halted_since = None;
            let wait = loop {
                if vcpu.is_finished() {
                    break Wait::Finished;
                }
                let now = Instant::now();
                if now >= stop {
                    break Wait::Deadline;
                }
                if !machine.is_halted() {
                    halted_since = None;
                } else if now.duration_since(*halted_since.get_or_insert(now)) >= HALT_STALL {
                    break Wait::HaltStall;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            };
            let end = vcpu.join(wait != Wait::Finished);
            trace.line("vcpu-end", format_args!("{end:?}"));
            monitor.abort();
            peers.abort();
            Ok::<_, KvmError>((end, wait))
        })
        .map_err(kvm)?;
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    let reports = std::mem::take(
        &mut *reports
            .lock()
            .map_err(|_| UsageError("guest reports lock poisoned".into()))?,
    );
    let errors = errors.borrow().clone();
    let trace = trace.lines.borrow().clone();
    Ok(MetalRun {
        reports,
        trace,
        wall_ms,
        end,
        wait,
        errors,
        monitor_faults: shm.faults(),
    })
}
