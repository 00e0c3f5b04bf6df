//! The WASI functions against a plain memory: results, errnos, and bounds checks.

use super::*;
use crate::engine::MemoryError;
use std::future::Future;
use std::pin::Pin;

struct Mem {
    data: Vec<u8>,
    may_suspend: bool,
}

impl GuestMemory for Mem {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read(&self, ptr: u32, len: u32) -> Result<Vec<u8>, MemoryError> {
        crate::engine::copy_out(&self.data, ptr, len)
    }
    fn write(&mut self, ptr: u32, data: &[u8]) -> Result<(), MemoryError> {
        crate::engine::copy_in(&mut self.data, ptr, data)
    }
    fn may_suspend(&self) -> bool {
        self.may_suspend
    }
}

#[derive(Default)]
struct Services {
    lines: RefCell<Vec<(u32, String)>>,
}

impl HostServices for Services {
    fn now_ns(&self) -> u64 {
        1_000
    }
    fn wall_ns(&self) -> u64 {
        2_000
    }
    fn entropy(&self, buf: &mut [u8]) {
        buf.fill(0xab);
    }
    fn log(&self, _: &str, _: &str) {}
    fn output(&self, _: &str, fd: u32, line: &str) {
        self.lines.borrow_mut().push((fd, line.to_string()));
    }
    fn sleep(&self, _: u64) -> Pin<Box<dyn Future<Output = ()>>> {
        Box::pin(std::future::ready(()))
    }
    fn kv_get(&self, _: &str, _: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn kv_put(&self, _: &str, _: &[u8], _: &[u8]) {}
    fn send(&self, _: &str, _: &str, _: &[u8]) -> bool {
        false
    }
    fn recv(&self, _: &str) -> Option<Vec<u8>> {
        None
    }
}

fn setup(live: bool) -> (Rc<WasiCtx>, Rc<Services>, Mem) {
    let services = Rc::new(Services::default());
    let ctx = WasiCtx::new(
        Rc::from("c"),
        services.clone(),
        vec!["prog".into(), "-v".into()],
        vec!["A=1".into()],
    );
    if live {
        ctx.go_live();
    }
    let mem = Mem {
        data: vec![0; 4096],
        may_suspend: true,
    };
    (ctx, services, mem)
}

fn call(ctx: &Rc<WasiCtx>, mem: &mut Mem, name: &str, args: &[i64]) -> HostOutcome {
    let import = imports(ctx)
        .into_iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no function {name}"));
    assert_eq!(import.params.len(), args.len(), "{name} arity");
    (import.run)(mem, args)
}

fn code(outcome: HostOutcome) -> i64 {
    match outcome {
        HostOutcome::Return(c) => c,
        HostOutcome::Defer(_) => -1,
        HostOutcome::Exit(n) => -1000 - i64::from(n),
    }
}

#[test]
fn every_preview1_function_is_bound_once() {
    let names: Vec<_> = function_names().collect();
    assert_eq!(names.len(), 46);
    let unique: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len());
}

#[test]
fn fd_write_goes_to_output_in_lines() {
    let (ctx, services, mut mem) = setup(true);
    mem.data[100..106].copy_from_slice(b"hello\n");
    mem.data[200..204].copy_from_slice(b"wor!");
    // iovecs at 16: (100, 6), (200, 3).
    for (at, v) in [(16, 100u32), (20, 6), (24, 200), (28, 3)] {
        mem.data[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    assert_eq!(code(call(&ctx, &mut mem, "fd_write", &[1, 16, 2, 40])), 0);
    assert_eq!(&mem.data[40..44], &9u32.to_le_bytes());
    assert_eq!(*services.lines.borrow(), vec![(1, "hello".to_string())]);
    ctx.flush();
    assert_eq!(services.lines.borrow()[1], (1, "wor".to_string()));
    // Bad pointers are EFAULT; a closed or unknown descriptor EBADF.
    assert_eq!(
        code(call(&ctx, &mut mem, "fd_write", &[1, 4090, 2, 40])),
        21
    );
    mem.data[16..20].copy_from_slice(&5000u32.to_le_bytes());
    assert_eq!(code(call(&ctx, &mut mem, "fd_write", &[2, 16, 1, 40])), 21);
    assert_eq!(code(call(&ctx, &mut mem, "fd_write", &[7, 16, 1, 40])), 8);
    assert_eq!(code(call(&ctx, &mut mem, "fd_write", &[0, 16, 1, 40])), 8);
    assert_eq!(code(call(&ctx, &mut mem, "fd_close", &[1])), 0);
    assert_eq!(code(call(&ctx, &mut mem, "fd_close", &[1])), 8);
    assert_eq!(code(call(&ctx, &mut mem, "fd_write", &[1, 16, 1, 40])), 8);
}

#[test]
fn args_and_environment_come_from_the_spec() {
    let (ctx, _, mut mem) = setup(true);
    assert_eq!(code(call(&ctx, &mut mem, "args_sizes_get", &[0, 4])), 0);
    assert_eq!(&mem.data[0..8], &[2, 0, 0, 0, 8, 0, 0, 0]);
    assert_eq!(code(call(&ctx, &mut mem, "args_get", &[64, 128])), 0);
    assert_eq!(&mem.data[64..68], &128u32.to_le_bytes());
    assert_eq!(&mem.data[68..72], &133u32.to_le_bytes());
    assert_eq!(&mem.data[128..136], b"prog\0-v\0");
    assert_eq!(code(call(&ctx, &mut mem, "environ_sizes_get", &[0, 4])), 0);
    assert_eq!(&mem.data[0..8], &[1, 0, 0, 0, 4, 0, 0, 0]);
    assert_eq!(code(call(&ctx, &mut mem, "environ_get", &[64, 4094])), 21);
    assert_eq!(code(call(&ctx, &mut mem, "args_sizes_get", &[4094, 0])), 21);
}

#[test]
fn clocks_and_entropy_read_the_services_once_live() {
    let (ctx, _, mut mem) = setup(false);
    assert_eq!(code(call(&ctx, &mut mem, "clock_time_get", &[1, 0, 8])), 0);
    assert_eq!(&mem.data[8..16], &1u64.to_le_bytes(), "start-up clock");
    assert_eq!(code(call(&ctx, &mut mem, "random_get", &[32, 16])), 0);
    let start_bytes = mem.data[32..48].to_vec();
    let (again, _, mut mem2) = setup(false);
    assert_eq!(code(call(&again, &mut mem2, "random_get", &[32, 16])), 0);
    assert_eq!(
        mem2.data[32..48],
        start_bytes[..],
        "start-up entropy is fixed"
    );
    ctx.go_live();
    assert_eq!(code(call(&ctx, &mut mem, "clock_time_get", &[0, 0, 8])), 0);
    assert_eq!(&mem.data[8..16], &2_000u64.to_le_bytes());
    assert_eq!(code(call(&ctx, &mut mem, "clock_time_get", &[1, 0, 8])), 0);
    assert_eq!(
        &mem.data[8..16],
        &1_001u64.to_le_bytes(),
        "after start-up's 1 ns"
    );
    assert_eq!(code(call(&ctx, &mut mem, "clock_time_get", &[2, 0, 8])), 28);
    assert_eq!(
        code(call(&ctx, &mut mem, "clock_time_get", &[1, 0, 4092])),
        21
    );
    assert_eq!(code(call(&ctx, &mut mem, "random_get", &[32, 16])), 0);
    assert_eq!(&mem.data[32..48], &[0xab; 16]);
    assert_eq!(code(call(&ctx, &mut mem, "random_get", &[4000, 100])), 21);
}

fn clock_subscription(mem: &mut Mem, at: usize, userdata: u8, timeout: u64, flags: u16) {
    mem.data[at..at + 48].fill(0);
    mem.data[at] = userdata;
    mem.data[at + 8] = 0;
    mem.data[at + 16..at + 20].copy_from_slice(&1u32.to_le_bytes());
    mem.data[at + 24..at + 32].copy_from_slice(&timeout.to_le_bytes());
    mem.data[at + 40..at + 42].copy_from_slice(&flags.to_le_bytes());
}

#[test]
fn poll_oneoff_on_clocks_sleeps_and_reports_the_earliest() {
    let (ctx, _, mut mem) = setup(true);
    clock_subscription(&mut mem, 0, 7, 5_000, 0);
    clock_subscription(&mut mem, 48, 9, 9_000, 0);
    match call(&ctx, &mut mem, "poll_oneoff", &[0, 512, 2, 1000]) {
        HostOutcome::Defer(r) => {
            assert_eq!(
                r.downcast_ref::<WasiRequest>(),
                Some(&WasiRequest::Sleep { ns: 5_000 })
            );
        }
        _ => panic!("a clock poll sleeps"),
    }
    assert_eq!(&mem.data[1000..1004], &1u32.to_le_bytes());
    assert_eq!(mem.data[512], 7, "the earliest clock fired");
    // Absolute time already past: no sleep.
    clock_subscription(&mut mem, 0, 3, 500, 1);
    assert_eq!(
        code(call(&ctx, &mut mem, "poll_oneoff", &[0, 512, 1, 1000])),
        0
    );
    // In a call that may not suspend, the sleep is over at once.
    mem.may_suspend = false;
    clock_subscription(&mut mem, 0, 3, 500, 0);
    assert_eq!(
        code(call(&ctx, &mut mem, "poll_oneoff", &[0, 512, 1, 1000])),
        0
    );
    // A descriptor subscription is ready at once, and wins over a clock.
    mem.may_suspend = true;
    mem.data[96..144].fill(0);
    mem.data[96 + 8] = 2;
    mem.data[96 + 16] = 1;
    clock_subscription(&mut mem, 48, 9, 9_000, 0);
    let mut both = mem.data[96..144].to_vec();
    both.extend_from_slice(&mem.data[48..96]);
    mem.data[0..96].copy_from_slice(&both);
    assert_eq!(
        code(call(&ctx, &mut mem, "poll_oneoff", &[0, 512, 2, 1000])),
        0
    );
    assert_eq!(&mem.data[1000..1004], &1u32.to_le_bytes());
    assert_eq!(mem.data[512 + 10], 2, "an fd_write event");
    // Bad input.
    assert_eq!(
        code(call(&ctx, &mut mem, "poll_oneoff", &[0, 512, 0, 1000])),
        28
    );
    assert_eq!(
        code(call(&ctx, &mut mem, "poll_oneoff", &[4001, 512, 2, 1000])),
        21
    );
    assert_eq!(
        code(call(
            &ctx,
            &mut mem,
            "poll_oneoff",
            &[0, 512, 0x0fff_ffff, 1000]
        )),
        21
    );
}

#[test]
fn a_host_without_preopens_answers_typed_errnos() {
    let (ctx, _, mut mem) = setup(true);
    assert_eq!(code(call(&ctx, &mut mem, "fd_prestat_get", &[3, 0])), 8);
    assert_eq!(
        code(call(&ctx, &mut mem, "fd_prestat_dir_name", &[3, 0, 8])),
        8
    );
    assert_eq!(code(call(&ctx, &mut mem, "fd_fdstat_get", &[1, 0])), 0);
    assert_eq!(mem.data[0], 2, "a character device");
    assert_eq!(code(call(&ctx, &mut mem, "fd_fdstat_get", &[5, 0])), 8);
    assert_eq!(code(call(&ctx, &mut mem, "fd_fdstat_get", &[1, 4090])), 21);
    assert_eq!(
        code(call(&ctx, &mut mem, "fd_fdstat_set_flags", &[1, 4])),
        52
    );
    assert_eq!(
        code(call(&ctx, &mut mem, "fd_fdstat_set_flags", &[1, 16])),
        28
    );
    assert_eq!(code(call(&ctx, &mut mem, "fd_read", &[0, 16, 1, 40])), 0);
    assert_eq!(&mem.data[40..44], &0u32.to_le_bytes());
    assert_eq!(code(call(&ctx, &mut mem, "fd_read", &[1, 16, 1, 40])), 8);
    assert_eq!(code(call(&ctx, &mut mem, "fd_seek", &[1, 0, 0, 40])), 70);
    let open = [3, 0, 0, 1, 0, 0, 0, 0, 0];
    assert_eq!(code(call(&ctx, &mut mem, "path_open", &open)), 8);
    let open_on_stdin = [0, 0, 0, 1, 0, 0, 0, 0, 0];
    assert_eq!(code(call(&ctx, &mut mem, "path_open", &open_on_stdin)), 54);
    assert_eq!(code(call(&ctx, &mut mem, "sock_accept", &[1, 0, 0])), 57);
    assert_eq!(code(call(&ctx, &mut mem, "proc_raise", &[9])), 52);
    assert_eq!(code(call(&ctx, &mut mem, "proc_exit", &[3])), -1003);
    assert_eq!(
        code(call(&ctx, &mut mem, "sched_yield", &[])),
        -1,
        "a yield defers"
    );
}
