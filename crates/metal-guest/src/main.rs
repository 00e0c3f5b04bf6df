//! The guest kernel on bare metal. The VMM (`hv-kvm`) enters `_start` in long mode at CPL 3 with
//! the boot parameters and the shared region in registers; `metal_main` installs exception
//! reporting, decodes the parameters, runs the program they name on the same `guest` kernel and
//! `guest-programs` code as the simulation, reports what it observed through hypercalls and
//! exits.
//!
//! Boot parameters: a `hv::metal::BootHeader` (planted bugs, shared-memory jitter, the seed of
//! the guest's own choices) followed by one program's encoded plan, recognised by its own magic.
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod file;
mod mem;
mod rt;
mod tcp;

use alloc::format;
use alloc::rc::Rc;
use alloc::sync::Arc;
use core::cell::RefCell;
use guest_programs::echo::{self, GuestOs, Pipe};
use guest_programs::stream::{self, StreamPlan};
use hv::metal::{BootHeader, JITTER_MAX_SPINS, hypercall};
use raw_shm::{Jitter, RawShm};
use ring_pipe::msg::{PipeInfo, control_pipe_info};

/// Exit codes (the VMM reports them).
const EXIT_OK: u64 = 0;
const EXIT_BAD_PARAMS: u64 = 2;

fn fail(message: &str, code: u64) -> ! {
    arch::report(hypercall::ERROR, None, message.as_bytes());
    arch::exit(code)
}

extern "C" fn metal_main(params: u64, params_len: u64, shm: u64, shm_len: u64) -> ! {
    arch::init_exceptions();
    // SAFETY: the VMM placed `params_len` bytes of parameters at `params`, identity-mapped and
    // untouched afterwards; the slice is only read.
    #[allow(unsafe_code)]
    let params = unsafe { core::slice::from_raw_parts(params as *const u8, params_len as usize) };
    // SAFETY: the VMM maps the shared region at `shm..shm + shm_len` for the guest's lifetime.
    #[allow(unsafe_code)]
    let shm = unsafe { RawShm::new(shm as *mut u8, shm_len, None) };
    let Some((head, program)) = BootHeader::decode(params) else {
        fail("boot parameters lack the MGB2 header", EXIT_BAD_PARAMS)
    };
    let shm = if head.jitter_one_in > 0 {
        // A seed of its own, so the jitter does not mirror the preemption choices.
        let seed = head.seed ^ 0x9e37_79b9_7f4a_7c15;
        shm.with_jitter(Arc::new(Jitter::new(
            seed,
            head.jitter_one_in,
            JITTER_MAX_SPINS,
        )))
    } else {
        shm
    };
    match program.get(..4) {
        Some(b"RSTR") => match StreamPlan::decode(program) {
            Ok(plan) => run_stream(shm, plan),
            Err(e) => fail(&format!("stream plan: {e}"), EXIT_BAD_PARAMS),
        },
        Some(b"ECHP") => match echo::Plan::decode(program) {
            Ok(plan) => run_echo(shm, plan, &head),
            Err(e) => fail(&format!("echo plan: {e}"), EXIT_BAD_PARAMS),
        },
        Some(b"TCPP") => match guest_programs::tcp::TcpPlan::decode(program) {
            Ok(plan) => tcp::run(shm, plan, &head),
            Err(e) => fail(&format!("tcp plan: {e}"), EXIT_BAD_PARAMS),
        },
        Some(b"FILE") => match guest_programs::file::FilePlan::decode(program) {
            Ok(plan) => file::run(shm, plan, &head),
            Err(e) => fail(&format!("file plan: {e}"), EXIT_BAD_PARAMS),
        },
        _ => fail("unknown program in the boot parameters", EXIT_BAD_PARAMS),
    }
}

fn run_stream(shm: RawShm, plan: StreamPlan) -> ! {
    let bell = rt::MmioBell(plan.doorbell as u32);
    let result = rt::block_on(stream::produce(shm, &plan, &rt::IdleSleep, || {
        hv::Doorbell::ring(&bell)
    }));
    if let Err(e) = result {
        fail(&format!("stream: {e}"), 1);
    }
    arch::exit(EXIT_OK)
}

/// What the echo workload needs from this guest.
#[derive(Clone)]
struct MetalOs {
    shm: RawShm,
    kernel: guest::KernelHandle,
    bugs: u32,
    ring_bugs: u32,
    platform_bugs: u32,
}

impl GuestOs for MetalOs {
    type Mem = RawShm;
    type Bell = rt::MmioBell;
    type Irq = rt::MetalIrq;

    async fn attach(&self, info: &PipeInfo) -> Result<Pipe<Self>, guest::PipeError> {
        let bell = |id: u64| u32::try_from(id).map(rt::MmioBell);
        let (Ok(data), Ok(space)) = (bell(info.host_doorbell), bell(info.host_doorbell + 1)) else {
            return Err(guest::PipeError::Protocol(
                "doorbell id does not fit 32 bits",
            ));
        };
        Ok(guest::PipeEnd::attach(
            self.shm.clone(),
            info,
            (data, space),
            (
                rt::MetalIrq::new(self.platform_bugs),
                rt::MetalIrq::new(self.platform_bugs),
            ),
            self.bugs,
        )
        .await?
        .with_ring_bugs(self.ring_bugs))
    }

    fn kernel(&self) -> &guest::KernelHandle {
        &self.kernel
    }
}

impl MetalOs {
    fn new(shm: RawShm, kernel: &guest::GuestKernel<rt::MetalHooks>, head: &BootHeader) -> Self {
        Self {
            shm,
            kernel: kernel.handle(),
            bugs: head.bugs,
            ring_bugs: head.ring_bugs,
            platform_bugs: head.platform_bugs,
        }
    }
}

fn run_echo(shm: RawShm, plan: echo::Plan, head: &BootHeader) -> ! {
    let kernel = guest::GuestKernel::new(rt::MetalHooks::new(head.seed));
    let os = MetalOs::new(shm, &kernel, head);
    let results: echo::Shared = Rc::new(RefCell::new(echo::Results::default()));
    let plan = Rc::new(plan);
    kernel.handle().spawn(
        "main",
        echo::run(os, control_pipe_info(), plan.clone(), results.clone()),
    );
    rt::block_on(kernel.run());
    let results = results.borrow();
    for (pipe, bytes) in &results.received {
        arch::report(hypercall::RECEIVED, Some(*pipe as u64), bytes);
    }
    for e in &results.errors {
        arch::report(hypercall::ERROR, None, e.as_bytes());
    }
    arch::exit(EXIT_OK)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    let mut message = FixedMessage {
        buf: [0; 512],
        len: 0,
    };
    let _ = write!(message, "{info}");
    arch::report(hypercall::PANIC, None, &message.buf[..message.len]);
    arch::exit(101)
}

/// Formatting a panic without allocating (the heap may be what failed).
struct FixedMessage {
    buf: [u8; 512],
    len: usize,
}

impl core::fmt::Write for FixedMessage {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}
