//! The `ring-stream` program on a real vCPU: the guest writes a seeded stream into a ring in the
//! shared region, the host reads it on a tokio runtime, sleeping on the ring's doorbell (an
//! ioeventfd) and raising the interrupt line (an irqfd) when it frees space, and checks every
//! byte against the stream. Used by the hardware tests and `sim bench --ring-vcpu`.

use crate::{ExitHandler, Hypercall, KvmError, Machine, VcpuEnd};
use guest_programs::stream::{StreamPlan, first_mismatch};
use hv::blocking::{self, OnEvent};
use hv::metal::hypercall;
use ring_pipe::Consumer;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one run saw.
#[derive(Debug)]
pub struct StreamOutcome {
    pub received: u64,
    /// The first stream position whose byte was wrong, if any.
    pub mismatch: Option<u64>,
    pub guest_errors: Vec<String>,
    pub end: VcpuEnd,
    /// From the first byte read to end of stream.
    pub elapsed: Duration,
}

/// The boot parameters for a program: the metal guest's header, then the program's plan.
pub fn boot_params(bugs: u32, ring_bugs: u32, seed: u64, program: &[u8]) -> Vec<u8> {
    let mut params = b"MGB1".to_vec();
    params.extend_from_slice(&bugs.to_le_bytes());
    params.extend_from_slice(&ring_bugs.to_le_bytes());
    params.extend_from_slice(&seed.to_le_bytes());
    params.extend_from_slice(program);
    params
}

/// Hypercalls a program's guest makes, collected on the vCPU thread.
#[derive(Default)]
pub struct GuestReports {
    pub received: Vec<(u64, Vec<u8>)>,
    pub errors: Vec<String>,
    pub exit_code: Option<u64>,
    pub fault: Option<[u64; 3]>,
}

/// Serves the metal guest's hypercalls, reading what it reports out of guest RAM.
pub struct ReportingHandler {
    pub ram: crate::GuestRam,
    pub reports: Arc<Mutex<GuestReports>>,
}

/// The most a guest can make the VMM copy out per hypercall.
const MAX_REPORT: u64 = 16 << 20;

impl ExitHandler for ReportingHandler {
    fn hypercall(&mut self, nr: u64, args: [u64; 4]) -> Hypercall {
        let Ok(mut reports) = self.reports.lock() else {
            return Hypercall::Stop;
        };
        let text =
            |ram: &crate::GuestRam, at: u64, len: u64| match ram.read_vec(at, len, MAX_REPORT) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => format!("<unreadable report: {e}>"),
            };
        match nr {
            hypercall::EXIT => {
                reports.exit_code = Some(args[0]);
                Hypercall::Stop
            }
            hypercall::RECEIVED => {
                match self.ram.read_vec(args[1], args[2], MAX_REPORT) {
                    Ok(bytes) => reports.received.push((args[0], bytes)),
                    Err(e) => reports.errors.push(format!("RECEIVED report: {e}")),
                }
                Hypercall::Return(0)
            }
            hypercall::ERROR | hypercall::LOG => {
                let line = text(&self.ram, args[0], args[1]);
                if nr == hypercall::ERROR {
                    reports.errors.push(line);
                }
                Hypercall::Return(0)
            }
            hypercall::PANIC => {
                let line = text(&self.ram, args[0], args[1]);
                reports.errors.push(format!("guest panic: {line}"));
                Hypercall::Return(0)
            }
            hypercall::FAULT => {
                reports.fault = Some([args[0], args[1], args[2]]);
                Hypercall::Stop
            }
            other => {
                reports.errors.push(format!("unknown hypercall {other}"));
                Hypercall::Return(u64::MAX)
            }
        }
    }

    fn stray_write(&mut self, address: u64, data: &[u8]) {
        if let Ok(mut reports) = self.reports.lock() {
            reports
                .errors
                .push(format!("write to {address:#x} with no device: {data:?}"));
        }
    }
}

/// Runs the stream program once: `total` bytes in `chunk`s through a ring of `capacity` bytes.
pub fn run_stream(
    image: &[u8],
    capacity: u64,
    total: u64,
    chunk: u64,
    key: u64,
    deadline: Duration,
) -> Result<StreamOutcome, KvmError> {
    let plan = StreamPlan {
        ring_offset: 0,
        capacity,
        total,
        chunk,
        key,
        doorbell: 0,
        ring_bugs: 0,
    };
    let shm_len = (capacity + ring_pipe::HEADER_LEN).next_multiple_of(4096);
    let mut machine = Machine::new(shm_len)?;
    let shm = machine.shm()?;
    let layout = plan
        .layout(shm_len)
        .map_err(|e| KvmError::Os("ring layout", std::io::Error::other(e.to_string())))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| KvmError::Os("tokio runtime", e))?;
    let _guard = runtime.enter();
    let bell = machine.doorbell(0)?;
    let irq = machine.irq_line()?;
    ring_pipe::mem::complete_now(layout.init(&shm, u64::MAX - 1000))
        .ok_or(KvmError::Poisoned("ring init"))?
        .map_err(|e| KvmError::Os("ring init", std::io::Error::other(e.to_string())))?;
    machine.load(image, &boot_params(0, 0, key, &plan.encode()))?;
    let reports: Arc<Mutex<GuestReports>> = Arc::default();
    let handler = ReportingHandler {
        ram: machine.ram().clone(),
        reports: reports.clone(),
    };
    let vcpu = machine.start(handler)?;
    let (received, mismatch, elapsed, timed_out) = runtime.block_on(async {
        let mut rx = match Consumer::attach(shm, layout).await {
            Ok(rx) => rx,
            Err(_) => return (0, Some(0), Duration::ZERO, false),
        };
        let mut buf = vec![0u8; 64 * 1024];
        let (mut at, mut mismatch) = (0u64, None);
        let mut started = None;
        let stop = Instant::now() + deadline;
        let sleep = OnEvent(&bell);
        loop {
            let read = blocking::read(&mut rx, &sleep, || hv::IrqRaiser::raise(&irq), &mut buf);
            let n = match tokio::time::timeout_at(stop.into(), read).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => n,
                Err(_) => return (at, mismatch, Duration::ZERO, true),
            };
            // determinism-ok: a hardware run's throughput measurement.
            started.get_or_insert_with(Instant::now);
            if mismatch.is_none() {
                mismatch = first_mismatch(key, at, &buf[..n]);
            }
            at += n as u64;
        }
        (
            at,
            mismatch,
            started.map(|s| s.elapsed()).unwrap_or_default(),
            false,
        )
    });
    let end = vcpu.join(timed_out);
    let reports = reports.lock().map_err(|_| KvmError::Poisoned("reports"))?;
    let mut guest_errors = reports.errors.clone();
    if let Some([vector, rip, code]) = reports.fault {
        guest_errors.push(format!(
            "guest exception {vector} at rip {rip:#x} (error code {code:#x})"
        ));
    }
    if timed_out {
        guest_errors.push(format!("no end of stream within {deadline:?}"));
    }
    Ok(StreamOutcome {
        received,
        mismatch,
        guest_errors,
        end,
        elapsed,
    })
}
