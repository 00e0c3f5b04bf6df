//! The pipe-tcp program on bare metal: the `guest-programs` tcp workload on this vCPU, its
//! chunking choices from a xorshift seeded by the boot header (the simulation draws them from
//! its decision source), and its results reported to the VMM in one encoded hypercall.

use crate::{EXIT_OK, MetalOs, arch, rt};
use alloc::rc::Rc;
use core::cell::Cell;
use guest_programs::tcp::{self, TcpPlan};
use hv::metal::{BootHeader, hypercall};
use raw_shm::RawShm;
use ring_pipe::msg::control_pipe_info;

pub fn run(shm: RawShm, plan: TcpPlan, head: &BootHeader) -> ! {
    let kernel = guest::GuestKernel::new(rt::MetalHooks::new(head.seed));
    let os = MetalOs::new(shm, &kernel, head);
    let results: tcp::Shared = Rc::default();
    // Its own stream, apart from the preemption and jitter choices.
    let state = Cell::new((head.seed ^ 0x5851_f42d_4c95_7f2d) | 1);
    let choose: Rc<dyn Fn(u64) -> u64> = Rc::new(move |n| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        if n == 0 { 0 } else { x % n }
    });
    kernel.handle().spawn(
        "main",
        tcp::run(
            os,
            control_pipe_info(),
            Rc::new(plan),
            choose,
            || {},
            results.clone(),
        ),
    );
    rt::block_on(kernel.run());
    let results = results.borrow();
    arch::report(hypercall::RECEIVED, Some(0), &results.encode());
    for e in &results.errors {
        arch::report(hypercall::ERROR, None, e.as_bytes());
    }
    arch::exit(EXIT_OK)
}
