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
//! `pipe-close-no-doorbell`, `pipe-wrap-off-by-one` and `pipe-spin-dead-peer` (the guest's).
//! `pipe-lost-wakeup` cannot: this guest takes no interrupts (see `crates/metal-guest`).

use crate::hw_trace::{Outcome, Trace, spawn};
use guest_programs::echo;
use hv::EventWaiter;
use hv_kvm::reports::{GuestReports, ReportingHandler, boot_params};
use hv_kvm::{DoorbellWaiter, IrqLine, KvmError, Machine, VcpuEnd};
use models::Violation;
use monitor::{ControlHandler, FileStore, MonitorConfig, NoNet, Platform};
use raw_shm::RawShm;
use ring_pipe::msg::code;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Planted bugs with a hardware form, by name: (guest bugs, guest ring bugs, monitor ring bugs).
pub fn hardware_bug(name: &str) -> Option<(u32, u32, u32)> {
    match name {
        "pipe-eof-before-drain" => Some((0, 0, ring_pipe::planted::EOF_BEFORE_DRAIN)),
        "pipe-close-no-doorbell" => Some((guest::planted::CLOSE_NO_DOORBELL, 0, 0)),
        "pipe-wrap-off-by-one" => Some((0, ring_pipe::planted::WRAP_OFF_BY_ONE, 0)),
        "pipe-spin-dead-peer" => Some((guest::planted::SPIN_ON_DEAD_PEER, 0, 0)),
        _ => None,
    }
}

/// The shared region: as in the simulation.
const REGION_LEN: u64 = 256 * 1024;
/// A healthy run takes milliseconds; a stuck one is judged at this bound.
const DEADLINE: Duration = Duration::from_secs(10);

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

/// One hardware run of pipe-echo with the workload of `seed`.
pub fn run_once(seed: u64, plant: Option<&str>) -> Result<Outcome, crate::cli::UsageError> {
    let (guest_bugs, guest_ring_bugs, host_ring_bugs) = match plant {
        None => (0, 0, 0),
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
            &boot_params(guest_bugs, guest_ring_bugs, seed, &plan.encode()),
        )
        .map_err(kvm)?;
    let machine = Rc::new(machine);
    let shm = machine.shm().map_err(kvm)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let trace = Rc::new(Trace::new());
    let errors: Rc<RefCell<Vec<String>>> = Rc::default();
    let reports: Arc<Mutex<GuestReports>> = Arc::default();
    let started = Instant::now();
    let (end, timed_out) = local
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
                ring_bugs: host_ring_bugs,
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
            while !vcpu.is_finished() && Instant::now() < stop {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let timed_out = !vcpu.is_finished();
            let end = vcpu.join(timed_out);
            trace.line("vcpu-end", format_args!("{end:?}"));
            monitor.abort();
            Ok::<_, KvmError>((end, timed_out))
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
    if timed_out {
        violations.push(Violation::new(
            "liveness",
            format!("the guest did not finish within {}s", DEADLINE.as_secs()),
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
