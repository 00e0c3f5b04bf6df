//! The pipe-file program on bare metal: the `guest-programs` file workload on this vCPU, its
//! run-time choices (operation, sizes, seek targets) from a xorshift seeded by the boot header
//! (the simulation draws them from its decision source), and what it observed reported to the
//! VMM: one RECEIVED hypercall per file log (indexed by file), one with the placement events
//! (index `PLACEMENTS_REPORT`), and one ERROR per error.

use crate::{EXIT_OK, MetalOs, arch, rt};
use alloc::rc::Rc;
use core::cell::Cell;
use guest_programs::file::{self, Choices, FilePlan, Observed, PLACEMENTS_REPORT};
use hv::metal::{BootHeader, hypercall};
use raw_shm::RawShm;
use ring_pipe::msg::control_pipe_info;

/// xorshift64*, shared by the file sessions (one vCPU, so a `Cell` suffices).
#[derive(Clone)]
struct XorShift(Rc<Cell<u64>>);

impl Choices for XorShift {
    fn choose(&self, n: u64) -> u64 {
        let mut x = self.0.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.set(x);
        if n <= 1 {
            0
        } else {
            x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        }
    }
}

pub fn run(shm: RawShm, plan: FilePlan, head: &BootHeader) -> ! {
    let kernel = guest::GuestKernel::new(rt::MetalHooks::new(head.seed));
    let os = MetalOs {
        shm,
        kernel: kernel.handle(),
        bugs: head.bugs,
        ring_bugs: head.ring_bugs,
        platform_bugs: head.platform_bugs,
    };
    // Its own stream, apart from the preemption and jitter choices.
    let choices = XorShift(Rc::new(Cell::new((head.seed ^ 0xd1b5_4a32_d192_ed03) | 1)));
    let observed: file::Shared = Rc::default();
    kernel.handle().spawn(
        "main",
        file::run(
            os,
            choices,
            control_pipe_info(),
            Rc::new(plan),
            observed.clone(),
        ),
    );
    rt::block_on(kernel.run());
    let observed: &Observed = &observed.borrow();
    for (i, log) in &observed.logs {
        arch::report(hypercall::RECEIVED, Some(*i as u64), &file::encode_log(log));
    }
    arch::report(
        hypercall::RECEIVED,
        Some(PLACEMENTS_REPORT),
        &file::encode_placements(&observed.placements),
    );
    for e in &observed.errors {
        arch::report(hypercall::ERROR, None, e.as_bytes());
    }
    arch::exit(EXIT_OK)
}
