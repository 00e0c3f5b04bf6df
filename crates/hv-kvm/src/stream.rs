//! The `ring-stream` program on a real vCPU: the guest writes a seeded stream into a ring in the
//! shared region, the host reads it on a tokio runtime, sleeping on the ring's doorbell (an
//! ioeventfd) and raising the interrupt line (an irqfd) when it frees space, and checks every
//! byte against the stream. Used by the hardware tests and `sim bench --ring-vcpu`.

use crate::reports::{GuestReports, ReportingHandler, boot_params};
use crate::{KvmError, Machine, VcpuEnd};
use guest_programs::stream::{StreamPlan, first_mismatch};
use hv::blocking::{self, OnEvent};
use hv::metal::BootHeader;
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
    machine.load(
        image,
        &boot_params(
            &BootHeader {
                bugs: 0,
                ring_bugs: 0,
                platform_bugs: 0,
                jitter_one_in: 0,
                seed: key,
            },
            &plan.encode(),
        ),
    )?;
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
        let stop = Instant::now() + deadline; // determinism-ok: hardware run deadline
        let sleep = OnEvent(&bell);
        loop {
            let read = blocking::read(&mut rx, &sleep, || hv::IrqRaiser::raise(&irq), &mut buf);
            let n = match tokio::time::timeout_at(stop.into(), read).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => n,
                Err(_) => return (at, mismatch, Duration::ZERO, true),
            };
            started.get_or_insert_with(Instant::now); // determinism-ok: hardware throughput
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
