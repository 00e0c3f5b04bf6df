//! The simulated machine for the pipe scenarios: one shared region, a VM with its doorbells and
//! its interrupt line, the host monitor (control handler and relays as daemon actors), and a
//! vCPU actor running the guest kernel's threads.
//!
//! Model and faults: the monitor initialises the control pipe, then starts the vCPU (spawning is
//! a happens-before edge, as a VMM sets up memory before it runs the guest). Every parked party is
//! registered with a wake condition computed by `models::pipes` from committed ring headers, so
//! a lost wake-up is reported at quiescence. Faults come from the kernel (scheduling, store
//! buffers or stale reads, timer preemption of guest threads) and from the VM (doorbell and
//! interrupt latency, coalescing, spurious wake-ups, buggified delays).

use crate::pipes::files::SimFiles;
use crate::pipes::net::SimNet;
use guest::{GuestKernel, KernelHandle, PipeEnd, PipeError, VcpuHooks};
use guest_programs::echo::GuestOs;
use hv::sim::{SimEventFd, SimIrqLine, SimShm, SimVm};
use hv::{EventWaiter, IrqWaiter};
use models::pipes::{RingAt, readable_or_closed, writable_or_closed};
use monitor::{ControlHandler, MonitorConfig, Platform, control_pipe_info};
use ring_pipe::HEADER_LEN;
use ring_pipe::msg::PipeInfo;
use simkit::{Ctx, Memory, WaitCondition};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// Pipes as the guest saw them on the wire (PipeReady replies), by id, and the pipes a hostile
/// guest scribbles on (their headers mean nothing, so no wake condition is derived from them).
#[derive(Default)]
pub struct PipeBook {
    pub pipes: BTreeMap<u64, PipeInfo>,
    pub untrusted: std::collections::BTreeSet<u64>,
}

pub type Registry = Rc<RefCell<PipeBook>>;

/// (guest-to-host ring, host-to-guest ring) of a pipe.
pub fn rings(info: &PipeInfo) -> (RingAt, RingAt) {
    let up = RingAt {
        base: info.shm_offset,
        capacity: info.ring_size,
    };
    let down = RingAt {
        base: info.shm_offset + HEADER_LEN + info.ring_size,
        capacity: info.ring_size,
    };
    (up, down)
}

fn ring_condition(
    registry: &Registry,
    pipe: u64,
    pick: fn(&PipeInfo) -> (RingAt, bool),
) -> WaitCondition {
    let registry = registry.clone();
    Rc::new(move |mem: &Memory| {
        let book = registry.borrow();
        !book.untrusted.contains(&pipe)
            && book.pipes.get(&pipe).is_some_and(|info| {
                let (ring, for_data) = pick(info);
                if for_data {
                    readable_or_closed(mem, ring)
                } else {
                    writable_or_closed(mem, ring)
                }
            })
    })
}

/// A host doorbell wait registered with its wake condition.
pub struct WatchedBell {
    fd: SimEventFd,
    ctx: Ctx,
    label: String,
    condition: WaitCondition,
}

impl EventWaiter for WatchedBell {
    async fn wait(&self) -> u64 {
        let _parked = self
            .ctx
            .park_guard(self.label.clone(), self.condition.clone());
        self.fd.wait().await
    }

    fn try_take(&self) -> u64 {
        self.fd.try_take()
    }
}

/// A guest interrupt wait registered with its wake condition.
#[derive(Clone)]
pub struct WatchedIrq {
    line: SimIrqLine,
    ctx: Ctx,
    label: Rc<str>,
    condition: WaitCondition,
}

impl IrqWaiter for WatchedIrq {
    fn ticket(&self) -> u64 {
        self.line.ticket()
    }

    async fn wait(&self, ticket: u64) {
        let _parked = self
            .ctx
            .park_guard(self.label.to_string(), self.condition.clone());
        self.line.wait(ticket).await;
    }
}

/// The monitor's view of the simulated host.
#[derive(Clone)]
pub struct SimPlatform {
    ctx: Ctx,
    shm: SimShm,
    vm: SimVm,
    registry: Registry,
    near_max_cursors: bool,
    net: SimNet,
}

impl Platform for SimPlatform {
    type Mem = SimShm;
    type Waiter = WatchedBell;
    type Irq = SimIrqLine;
    type Net = SimNet;

    fn memory(&self) -> SimShm {
        self.shm.clone()
    }

    fn pipe_memory(&self, offset: u64, len: u64) -> SimShm {
        self.shm.bounded(offset, len)
    }

    fn doorbell(&self, id: u64) -> WatchedBell {
        let (pipe, for_data) = (id / 2, id.is_multiple_of(2));
        let condition = if for_data {
            ring_condition(&self.registry, pipe, |i| (rings(i).0, true))
        } else {
            ring_condition(&self.registry, pipe, |i| (rings(i).1, false))
        };
        let what = if for_data { "data" } else { "space" };
        WatchedBell {
            fd: self.vm.doorbell(id),
            ctx: self.ctx.clone(),
            label: format!("host waits for {what} on pipe {pipe}"),
            condition,
        }
    }

    fn irq(&self) -> SimIrqLine {
        self.vm.irq_line(0)
    }

    fn net(&self) -> SimNet {
        self.net.clone()
    }

    fn spawn(&self, name: &str, fut: Pin<Box<dyn Future<Output = ()>>>) {
        self.ctx.spawn_daemon(name, fut);
    }

    fn trace(&self, event: &str, details: fmt::Arguments<'_>) {
        self.ctx.trace(event, details);
    }

    fn start_cursor(&self) -> u64 {
        if self.near_max_cursors {
            u64::MAX - self.ctx.choose(4096)
        } else {
            0
        }
    }
}

struct SimHooks {
    ctx: Ctx,
    vm: SimVm,
    /// Whether the vCPU is halted (no guest thread runnable), so halting and resuming are each
    /// one trace line.
    halted: std::cell::Cell<bool>,
}

impl VcpuHooks for SimHooks {
    fn preempt(&self) -> bool {
        // A guest timer tick at this instruction.
        self.ctx.chance(1, 16)
    }

    fn running(&self, name: Option<&str>) {
        let halted = self.halted.replace(name.is_none());
        self.ctx.with(|k| {
            k.set_label(None);
            match name {
                None if !halted => k.trace("halt", format_args!("")),
                Some(thread) if halted => k.trace("resume", format_args!("{thread}")),
                _ => {}
            }
            k.set_label(name.map(Rc::from));
        });
    }

    fn poll_runnable(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.vm.poll_runnable(cx)
    }
}

/// A guest pipe end in this world.
pub type GuestPipe = PipeEnd<SimShm, SimEventFd, WatchedIrq>;

/// What guest threads need to open pipes.
#[derive(Clone)]
pub struct GuestEnv {
    pub ctx: Ctx,
    pub vm: SimVm,
    pub memory: SimShm,
    pub registry: Registry,
    pub kernel: KernelHandle,
    /// Planted guest bugs (`guest::planted`) and guest ring bugs (`ring_pipe::planted`).
    pub bugs: u32,
    pub ring_bugs: u32,
}

impl GuestEnv {
    /// Attaches to a pipe described by a PipeReady reply (recording it as seen on the wire).
    pub async fn attach(&self, info: &PipeInfo) -> Result<GuestPipe, PipeError> {
        self.registry.borrow_mut().pipes.insert(info.pipe_id, *info);
        let id = info.pipe_id;
        let watched = |what: &str, pick: fn(&PipeInfo) -> (RingAt, bool)| WatchedIrq {
            line: self.vm.irq_line(0),
            ctx: self.ctx.clone(),
            label: Rc::from(format!("guest waits for {what} on pipe {id}")),
            condition: ring_condition(&self.registry, id, pick),
        };
        let irqs = (
            watched("data", |i| (rings(i).1, true)),
            watched("space", |i| (rings(i).0, false)),
        );
        let bells = (
            self.vm.doorbell(info.host_doorbell),
            self.vm.doorbell(info.host_doorbell + 1),
        );
        Ok(
            PipeEnd::attach(self.memory.clone(), info, bells, irqs, self.bugs)
                .await?
                .with_ring_bugs(self.ring_bugs),
        )
    }
}

impl GuestOs for GuestEnv {
    type Mem = SimShm;
    type Bell = SimEventFd;
    type Irq = WatchedIrq;

    fn attach(&self, info: &PipeInfo) -> impl Future<Output = Result<GuestPipe, PipeError>> {
        GuestEnv::attach(self, info)
    }

    fn kernel(&self) -> &KernelHandle {
        &self.kernel
    }
}

pub struct PipeWorld {
    pub host_memory: SimShm,
}

/// Planted bugs, by layer, for one run.
#[derive(Clone, Copy, Default)]
pub struct Bugs {
    pub guest: u32,
    pub guest_ring: u32,
    pub host_ring: u32,
    pub monitor: u32,
    pub hv: u32,
}

impl PipeWorld {
    /// Builds the machine and starts it: `main` is the guest's first kernel thread.
    pub fn boot<F, Fut>(
        setup: &mut crate::Setup,
        region_len: u64,
        bugs: Bugs,
        files: Rc<SimFiles>,
        net: SimNet,
        main: F,
    ) -> Self
    where
        F: FnOnce(GuestEnv) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let near_max = setup.derive("near_max_cursors", 0, 1) == 1;
        let ctx = setup.ctx();
        let region = setup.sim.alloc_region("shm", region_len);
        let host_memory = SimShm::new(region.clone());
        let guest_memory = SimShm::new(region);
        let vm = SimVm::new(ctx.clone(), 500);
        vm.plant_irq_bugs(bugs.hv);
        let registry: Registry = Rc::default();
        registry.borrow_mut().pipes.insert(0, control_pipe_info());
        let platform = SimPlatform {
            ctx: ctx.clone(),
            shm: host_memory.clone(),
            vm: vm.clone(),
            registry: registry.clone(),
            near_max_cursors: near_max,
            net,
        };
        let config = MonitorConfig {
            ring_bugs: bugs.host_ring,
            bugs: bugs.monitor,
        };
        let handler = ControlHandler::new(platform, files, config);
        let (guest_vm, guest_registry) = (vm.clone(), registry.clone());
        setup.sim.spawn_daemon("monitor", async move {
            if handler.init_control().await.is_err() {
                return;
            }
            // The VMM starts the vCPU after setting up the control pipe.
            let vcpu_ctx = ctx.clone();
            ctx.spawn("vcpu0", async move {
                let kernel = GuestKernel::new(SimHooks {
                    ctx: vcpu_ctx.clone(),
                    vm: guest_vm.clone(),
                    halted: std::cell::Cell::new(false),
                });
                let env = GuestEnv {
                    ctx: vcpu_ctx,
                    vm: guest_vm,
                    memory: guest_memory,
                    registry: guest_registry,
                    kernel: kernel.handle(),
                    bugs: bugs.guest,
                    ring_bugs: bugs.guest_ring,
                };
                kernel.handle().spawn("main", main(env));
                kernel.run().await;
            });
            handler.run().await;
        });
        PipeWorld { host_memory }
    }
}

/// Kernel limits for the pipe scenarios: a healthy run takes a few thousand steps.
pub fn kernel_options() -> simkit::KernelOptions {
    simkit::KernelOptions {
        buggify: true,
        max_steps: 1_000_000,
        time_limit_ns: 2_000_000_000,
        ..Default::default()
    }
}

impl PipeWorld {
    /// The checks every pipe scenario makes (beyond the harness's liveness and crash oracle):
    /// errors the guest workload observed, and monitor accesses outside the pipe it serves.
    pub fn common_checks(&self, guest_errors: &[String]) -> Vec<models::Violation> {
        let mut v: Vec<models::Violation> = Vec::new();
        v.extend(
            guest_errors
                .iter()
                .map(|e| models::Violation::new("guest-error", e.clone())),
        );
        let faults = self.host_memory.faults();
        if faults > 0 {
            v.push(models::Violation::new(
                "no-out-of-bounds",
                format!("the monitor tried {faults} accesses outside the pipe it serves"),
            ));
        }
        v
    }
}
