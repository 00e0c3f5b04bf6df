//! `pipe-hostile`: a hostile guest thread attacks the monitor through its own pipes while an
//! honest thread runs echo pipes beside it.
//!
//! The hostile thread opens 1–3 pipes (and sends some well-formed but invalid control requests),
//! then, never blocking, performs seeded attacks on its pipes through raw shared-memory writes:
//! arbitrary values in every ring header field (cursors far ahead or behind, flags), garbage
//! bytes published as data, frames with oversized or truncated length prefixes, random first
//! frames, doorbell storms, and closes. It targets only its own pipes.
//!
//! Oracles: the monitor never panics and never touches memory outside the pipe it serves; the
//! honest pipes keep working (conservation and liveness, as in `pipe-echo`). Hostile pipes'
//! headers are meaningless, so no wake condition is derived from them.

use crate::pipes::files::SimFiles;
use crate::pipes::net::SimNet;
use crate::pipes::pipe_name;
use crate::pipes::world::{self, Bugs, GuestEnv, PipeWorld, WatchedIrq};
use crate::{PlantedBug, Scenario, Setup, Violation};
use guest::sync::{Latch, Mutex};
use guest::{ControlClient, PipeError};
use guest_programs::echo::{Shared, bytes_from, receive, record_error, send};
use hv::Doorbell;
use hv::sim::{SimEventFd, SimShm};
use models::pipes::check_direction;
use monitor::control_pipe_info;
use ring_pipe::msg::{PipeInfo, Protocol, Wire};
use ring_pipe::{HEADER_LEN, SharedMemory};
use simkit::{KernelOptions, Ordering};
use std::rc::Rc;

pub struct PipeHostile;

const TRUST_PEER_CURSOR: &str = "pipe-trust-peer-cursor";

static BUGS: &[PlantedBug] = &[PlantedBug {
    name: TRUST_PEER_CURSOR,
    scenario: "pipe-hostile",
    description: "the monitor trusts the guest's cursor (no clamp), so a lying guest moves its copies outside the pipe",
    mirrors: "Arca ring.rs (no clamp; free_space underflows when w - r > cap; double fetch of the own cursor)",
    needs_mem: None,
}];

type Control = ControlClient<SimShm, SimEventFd, WatchedIrq>;

impl Scenario for PipeHostile {
    fn name(&self) -> &'static str {
        "pipe-hostile"
    }

    fn description(&self) -> &'static str {
        "a hostile guest writes arbitrary cursors, flags and frames into its pipes; the monitor must not panic or stray, and honest pipes keep working"
    }

    fn expected_steps(&self) -> u64 {
        2_000
    }

    fn kernel_options(&self) -> KernelOptions {
        world::kernel_options()
    }

    fn bugs(&self) -> &'static [PlantedBug] {
        BUGS
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let honest = setup.derive("honest_pipes", 1, 2) as usize;
        let hostile = setup.derive("hostile_pipes", 1, 3);
        let attacks = setup.derive("attacks_per_pipe", 1, 16);
        let mut plans = Vec::new();
        for i in 0..honest {
            let len = setup.derive(&format!("p{i}_bytes"), 0, 2000) as usize;
            let key = setup.derive(&format!("p{i}_key"), 0, u64::from(u32::MAX));
            plans.push(bytes_from(key, len));
        }
        let mut bugs = Bugs::default();
        if setup.planted(TRUST_PEER_CURSOR) {
            bugs.host_ring |= ring_pipe::planted::TRUST_PEER_CURSOR;
        }
        let plans = Rc::new(plans);
        let results: Shared = Rc::default();
        let files = Rc::new(SimFiles::new(setup.ctx()));
        let (p, r) = (plans.clone(), results.clone());
        let world = PipeWorld::boot(
            setup,
            128 * 1024,
            bugs,
            files,
            SimNet::none(),
            move |env| async move {
                if let Err(e) = guest_main(env, p, hostile, attacks, r.clone()).await {
                    record_error(&r, format!("main: {e}"));
                }
            },
        );

        setup.run();
        let results = results.borrow();
        let mut v = world.common_checks(&results.errors);
        for (i, data) in plans.iter().enumerate() {
            let got = results.received.get(&i).cloned().unwrap_or_default();
            v.extend(check_direction(
                pipe_name(&results, i),
                "echo",
                data,
                &got,
                false,
            ));
        }
        v
    }
}

async fn guest_main(
    env: GuestEnv,
    plans: Rc<Vec<Vec<u8>>>,
    hostile: u64,
    attacks: u64,
    results: Shared,
) -> Result<(), PipeError> {
    let control: Rc<Mutex<Control>> = Rc::new(Mutex::new(ControlClient::new(
        env.attach(&control_pipe_info()).await?,
    )));
    let done = Latch::new(plans.len() as u64 + 1);
    let (c, e, d, r) = (control.clone(), env.clone(), done.clone(), results.clone());
    env.kernel.spawn("hostile", async move {
        if let Err(err) = attack(&e, &c, hostile, attacks).await {
            record_error(&r, format!("hostile thread: {err}"));
        }
        d.count_down();
    });
    let mut ids = Vec::new();
    for (i, data) in plans.iter().enumerate() {
        let info = control.lock().await.new_pipe(256).await?;
        ids.push(info.pipe_id);
        results.borrow_mut().pipe_ids.insert(i, info.pipe_id);
        let id = info.pipe_id;
        let mut writer = env.attach(&info).await?;
        writer.send_frame(&Protocol::Echo.encode()).await?;
        let reader = env.attach(&info).await?;
        let (r, d) = (results.clone(), done.clone());
        env.kernel.spawn(&format!("recv{id}"), async move {
            receive(i, reader, None, &r).await;
            d.count_down();
        });
        let (r, data) = (results.clone(), data.clone());
        env.kernel.spawn(&format!("send{id}"), async move {
            send(writer, &data, 97, false, &r).await
        });
    }
    done.wait().await;
    let mut control = control.lock().await;
    for id in ids {
        control.close_pipe(id).await?;
    }
    control.shutdown().await
}

/// The hostile thread: invalid control requests, then raw attacks on its own pipes.
async fn attack(
    env: &GuestEnv,
    control: &Mutex<Control>,
    pipes: u64,
    attacks: u64,
) -> Result<(), PipeError> {
    let ctx = &env.ctx;
    // Well-formed but invalid requests get error replies, not a broken control pipe.
    for bad_size in [0, 100, 1 << 40] {
        if control.lock().await.new_pipe(bad_size).await.is_ok() {
            return Err(PipeError::Protocol(
                "the monitor accepted an invalid ring size",
            ));
        }
    }
    if control.lock().await.close_pipe(9_999).await.is_ok() {
        return Err(PipeError::Protocol(
            "the monitor closed a pipe that does not exist",
        ));
    }
    let mut mine = Vec::new();
    for _ in 0..pipes {
        let ring = 64 << ctx.choose(2);
        let info = control.lock().await.new_pipe(ring).await?;
        env.registry.borrow_mut().untrusted.insert(info.pipe_id);
        mine.push(info);
    }
    for info in &mine {
        let mut cursor = env
            .memory
            .load_u64(info.shm_offset + 8, Ordering::Acquire)
            .await
            .unwrap_or(0);
        for _ in 0..attacks {
            one_attack(env, info, &mut cursor).await;
            if ctx.chance(1, 3) {
                env.kernel.yield_now().await;
            }
        }
    }
    Ok(())
}

/// A value a liar would put in a cursor: near the truth, far ahead or behind, or anything.
fn lie(ctx: &simkit::Ctx, truth: u64, ring: u64) -> u64 {
    match ctx.choose(4) {
        0 => truth.wrapping_add(ring * (1 + ctx.choose(4))),
        1 => truth.wrapping_sub(1 + ctx.choose(ring)),
        2 => ctx.choose(u64::MAX),
        _ => truth.wrapping_add(ctx.choose(3 * ring)),
    }
}

async fn one_attack(env: &GuestEnv, info: &PipeInfo, cursor: &mut u64) {
    let ctx = &env.ctx;
    let mem = &env.memory;
    let ring = info.ring_size;
    let up = info.shm_offset;
    let down = up + HEADER_LEN + ring;
    let bells = (
        env.vm.doorbell(info.host_doorbell),
        env.vm.doorbell(info.host_doorbell + 1),
    );
    // Memory faults cannot happen here: every offset is inside the guest's own pipe.
    match ctx.choose(7) {
        // Arbitrary header fields in either ring.
        0 => {
            let base = if ctx.chance(1, 2) { up } else { down };
            let field = 8 * ctx.choose(6);
            let value = if field < 16 {
                lie(ctx, *cursor, ring)
            } else {
                ctx.choose(3)
            };
            let _ = mem.store_u64(base + field, value, Ordering::Release).await;
        }
        // Garbage published as data (a write cursor moved by up to several rings).
        1 => {
            let junk = bytes_from(ctx.choose(u64::MAX), 1 + ctx.choose(ring) as usize);
            let index = *cursor & (ring - 1);
            let room = (ring - index).min(junk.len() as u64) as usize;
            let _ = mem.write(up + HEADER_LEN + index, &junk[..room]).await;
            *cursor = lie(ctx, *cursor, ring);
            let _ = mem.store_u64(up + 8, *cursor, Ordering::Release).await;
            bells.0.ring();
        }
        // A frame whose length prefix lies (oversized or truncated).
        2 => {
            let len = if ctx.chance(1, 2) {
                u32::MAX - ctx.choose(1000) as u32
            } else {
                ctx.choose(64) as u32 + 8
            };
            let mut frame = len.to_le_bytes().to_vec();
            frame.extend(bytes_from(ctx.choose(1 << 32), ctx.choose(8) as usize));
            publish(mem, up, ring, cursor, &frame).await;
            bells.0.ring();
        }
        // A random, possibly valid, first frame.
        3 => {
            let proto = match ctx.choose(4) {
                0 => Protocol::Echo,
                1 => Protocol::File {
                    path: "../../etc/passwd".into(),
                    flags: ctx.choose(64),
                },
                2 => Protocol::TcpListen {
                    port: ctx.choose(65_536),
                },
                _ => Protocol::TcpConnect {
                    host: "x".into(),
                    port: 1,
                },
            };
            let body = proto.encode();
            let mut frame = (body.len() as u32).to_le_bytes().to_vec();
            frame.extend(body);
            publish(mem, up, ring, cursor, &frame).await;
            bells.0.ring();
        }
        // A doorbell storm.
        4 => {
            for _ in 0..1 + ctx.choose(8) {
                if ctx.chance(1, 2) {
                    bells.0.ring()
                } else {
                    bells.1.ring()
                }
            }
        }
        // Close flags.
        5 => {
            let _ = mem.store_u64(up + 16, 1, Ordering::Release).await;
            let _ = mem
                .store_u64(down + 24, ctx.choose(2), Ordering::Release)
                .await;
            bells.0.ring();
            bells.1.ring();
        }
        // Consume the host's replies by moving our read cursor anywhere.
        _ => {
            let truth = mem.load_u64(down + 8, Ordering::Acquire).await.unwrap_or(0);
            let _ = mem
                .store_u64(down, lie(ctx, truth, ring), Ordering::Release)
                .await;
            bells.1.ring();
        }
    }
}

/// Writes bytes at the guest's idea of its write cursor (wrapping) and publishes the cursor.
async fn publish(mem: &SimShm, up: u64, ring: u64, cursor: &mut u64, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate().take(ring as usize) {
        let index = cursor.wrapping_add(i as u64) & (ring - 1);
        let _ = mem.write(up + HEADER_LEN + index, &[*b]).await;
    }
    *cursor = cursor.wrapping_add(bytes.len().min(ring as usize) as u64);
    let _ = mem.store_u64(up + 8, *cursor, Ordering::Release).await;
}
