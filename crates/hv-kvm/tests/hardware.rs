//! Hardware tests: they need `/dev/kvm`, and skip (saying why) only where it is absent.

use hv_kvm::VcpuEnd;
use hv_kvm::stream::run_stream;
use std::time::Duration;

fn kvm_or_skip() -> bool {
    match hv_kvm::available() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipped: {e}");
            false
        }
    }
}

#[test]
fn a_stream_crosses_a_ring_from_a_real_vcpu_intact() {
    if !kvm_or_skip() {
        return;
    }
    for (capacity, total, chunk) in [
        (4096, 1 << 20, 1000),
        (64, 100_000, 63),
        (1 << 16, 4 << 20, 65_536),
    ] {
        let out = run_stream(
            metal_image::IMAGE,
            capacity,
            total,
            chunk,
            7,
            Duration::from_secs(20),
        )
        .expect("machine");
        assert_eq!(
            out.guest_errors,
            Vec::<String>::new(),
            "capacity {capacity}"
        );
        assert_eq!(out.end, VcpuEnd::Exited, "capacity {capacity}");
        assert_eq!(out.mismatch, None, "capacity {capacity}");
        assert_eq!(out.received, total, "capacity {capacity}");
    }
}
