//! `sim bench --ring-vcpu`: ring-pipe throughput through a real vCPU. The bare-metal guest writes
//! a stream into a ring in guest RAM (`hv_kvm::stream`), the host reads and checks it, sleeping on
//! the ring's ioeventfd doorbell; the baseline is `memcpy` of the same bytes through a buffer of
//! the ring's size on the same machine. Wall time here is the measurement, not an input to a run.

use hv_kvm::stream::run_stream;
use std::time::{Duration, Instant};

const TOTAL: u64 = 64 << 20;

pub fn run() -> Result<(), String> {
    hv_kvm::available().map_err(|e| e.to_string())?;
    crate::outln!("| ring | chunk | vCPU ring MB/s | memcpy MB/s | ratio |");
    crate::outln!("|---:|---:|---:|---:|---:|");
    for (capacity, chunk) in [(4096u64, 4096u64), (65_536, 16_384), (1 << 20, 65_536)] {
        let out = run_stream(
            metal_image::IMAGE,
            capacity,
            TOTAL,
            chunk,
            11,
            Duration::from_secs(60),
        )
        .map_err(|e| e.to_string())?;
        if out.received != TOTAL || out.mismatch.is_some() || !out.guest_errors.is_empty() {
            return Err(format!("the stream did not arrive intact: {out:?}"));
        }
        let ring = TOTAL as f64 / out.elapsed.as_secs_f64() / 1e6;
        let copy = memcpy_rate(capacity as usize, chunk as usize);
        crate::outln!(
            "| {capacity} | {chunk} | {ring:.0} | {copy:.0} | {:.3} |",
            ring / copy
        );
    }
    Ok(())
}

/// MB/s of copying `TOTAL` bytes chunk by chunk into a buffer of the ring's size and out again
/// (a ring transfer copies each byte twice: into the ring, then out).
fn memcpy_rate(capacity: usize, chunk: usize) -> f64 {
    let src = vec![7u8; chunk];
    let mut ring = vec![0u8; capacity];
    let mut dst = vec![0u8; chunk];
    let started = Instant::now(); // determinism-ok: the baseline's wall time is the measurement
    let mut at = 0usize;
    let mut moved = 0u64;
    while moved < TOTAL {
        let n = chunk.min(capacity);
        let start = at % (capacity - n + 1);
        ring[start..start + n].copy_from_slice(&src[..n]);
        dst[..n].copy_from_slice(&ring[start..start + n]);
        std::hint::black_box(&mut dst);
        at += n;
        moved += n as u64;
    }
    TOTAL as f64 / started.elapsed().as_secs_f64() / 1e6
}
