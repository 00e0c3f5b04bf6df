//! `sim hw --scenario pipe-echo`: the pipe-echo workload on real parts. The guest is the
//! bare-metal image (`metal-image`) in a KVM vCPU, running the same `guest-programs` workload
//! with the plan derived from the seed exactly as the simulation derives it; the monitor is the
//! same `monitor` crate on a tokio current-thread runtime, its doorbells ioeventfds read through
//! `AsyncFd`, its interrupt line an irqfd, its memory the guest's RAM. The guest reports what its
//! receivers got through hypercalls, and the simulation's oracle (`judge_echo`) judges it, with
//! the hardware run's own checks: the guest exited cleanly within the deadline, and the monitor
//! never touched memory outside the pipe it served.
//!
//! Planted bugs that can show on hardware: `pipe-eof-before-drain` (the monitor's reader),
//! `pipe-close-no-doorbell`, `pipe-wrap-off-by-one` and `pipe-spin-dead-peer` (the guest's),
//! and `pipe-lost-wakeup` (the guest's halt on the interrupt line's event channel). Both sides'
//! shared-memory views carry seeded jitter (`raw_shm::Jitter`, `--jitter`), which widens the
//! check-then-act windows these races need from nanoseconds to microseconds.

use crate::hw_trace::{Outcome, Trace, spawn};
use guest_programs::echo;
use hv::EventWaiter;
use hv::metal::{BootHeader, JITTER_MAX_SPINS};
use hv_kvm::reports::{GuestReports, ReportingHandler, boot_params};
use hv_kvm::{DoorbellWaiter, IrqLine, KvmError, Machine, VcpuEnd};
use models::Violation;
use monitor::{ControlHandler, FileStore, MonitorConfig, NoNet, Platform};
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
    guest: u32,
    guest_ring: u32,
    guest_platform: u32,
    monitor_ring: u32,
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
struct KvmPlatform {
    machine: Rc<Machine>,
    shm: RawShm,
    irq: IrqLine,
    trace: Rc<Trace>,
    errors: Rc<RefCell<Vec<String>>>,
    start_cursor: u64,
}

impl Platform for KvmPlatform {
    type Mem = RawShm;
    type Waiter = Bell;
    type Irq = IrqLine;
    type Net = NoNet;

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
    fn net(&self) -> NoNet {
        NoNet
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

/// pipe-echo opens no files.
struct NoFiles;

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

fn kvm(e: KvmError) -> crate::cli::UsageError {
    crate::cli::UsageError(format!("hardware: {e}"))
}

/// One hardware run of pipe-echo with the workload of `seed`; one shared-memory access in
/// `jitter_one_in` on each side is followed by a seeded pause (0: none).
pub fn run_once(
    seed: u64,
    plant: Option<&str>,
    jitter_one_in: u32,
) -> Result<Outcome, crate::cli::UsageError> {
    let bug = match plant {
        None => HardwareBug::default(),
        Some(name) => hardware_bug(name).ok_or_else(|| {
            crate::cli::UsageError(format!("planted bug '{name}' has no hardware form"))
        })?,
    };
    let mut ds = simkit::DecisionSource::seeded(seed);
    let mut derive = |_: &str, lo: u64, hi: u64| ds.range_inclusive(lo, hi);
    let near_max = derive("near_max_cursors", 0, 1) == 1;
    let plan = echo::plan(&mut derive);
    let start_cursor = if near_max {
        u64::MAX - derive("start", 0, 4096)
    } else {
        0
    };
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
                &plan.encode(),
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
            };
            let config = MonitorConfig {
                ring_bugs: bug.monitor_ring,
                bugs: 0,
            };
            let handler = ControlHandler::new(platform, Rc::new(NoFiles), config);
            if let Err(e) = handler.init_control().await {
                errors.borrow_mut().push(format!("control pipe: {e}"));
            }
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
            Ok::<_, KvmError>((end, wait))
        })
        .map_err(kvm)?;
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    let reports = reports
        .lock()
        .map_err(|_| crate::cli::UsageError("guest reports lock poisoned".into()))?;
    let mut results = echo::Results::default();
    for (pipe, bytes) in &reports.received {
        results.received.insert(*pipe as usize, bytes.clone());
    }
    results.errors = reports.errors.clone();
    let mut violations = scenarios::judge_echo(&plan, &results);
    violations.extend(
        results
            .errors
            .iter()
            .map(|e| Violation::new("guest-error", e.clone())),
    );
    if wait == Wait::Deadline {
        violations.push(Violation::new(
            "liveness",
            format!("the guest did not finish within {}s", DEADLINE.as_secs()),
        ));
    } else if wait == Wait::HaltStall {
        violations.push(Violation::new(
            "liveness",
            format!(
                "the guest halted for {}s waiting for an interrupt that never came",
                HALT_STALL.as_secs()
            ),
        ));
    } else if end != VcpuEnd::Exited || reports.exit_code != Some(0) {
        violations.push(Violation::new(
            "guest-exit",
            format!("vCPU ended {end:?} with exit code {:?}", reports.exit_code),
        ));
    }
    if let Some([vector, rip, code]) = reports.fault {
        violations.push(Violation::new(
            "no-panic",
            format!("guest exception {vector} at rip {rip:#x} (error code {code:#x})"),
        ));
    }
    for e in errors.borrow().iter() {
        violations.push(Violation::new("hardware", e.clone()));
    }
    if shm.faults() > 0 {
        violations.push(Violation::new(
            "no-out-of-bounds",
            format!(
                "the monitor tried {} accesses outside the pipe it serves",
                shm.faults()
            ),
        ));
    }
    let lines = trace.lines.borrow().clone();
    Ok(Outcome {
        hash: Trace::hash(&lines),
        trace: lines,
        violations,
        wall_ms,
    })
}
