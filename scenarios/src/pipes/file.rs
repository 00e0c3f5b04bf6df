//! `pipe-file`: the guest reads and writes files through the monitor's file relay.
//!
//! Workload (derived per seed): 1–3 files, each on its own pipe, opened with
//! `READ|WRITE|CREATE|TRUNCATE`, then a seeded sequence of writes (looping over short writes),
//! absolute seeks and reads, and a close. Files run one after another or concurrently in their
//! own kernel threads. Pipes are closed on the control pipe only at the end, so a pipe's relay
//! can finish long before the guest lets its memory go. Faults: everything `pipe-echo` has, plus
//! the store's short reads and writes and latency.
//!
//! Oracles: each file's request/reply log replayed against a reference file model (every reply
//! one a correct file could give) and the store's final contents; region ownership (no pipe
//! placed over one the guest has not closed); liveness; no panic; no out-of-bounds access.

use crate::pipes::files::SimFiles;
use crate::pipes::net::SimNet;
use crate::pipes::world::{self, Bugs, GuestEnv, GuestPipe, PipeWorld};
use crate::{PlantedBug, Scenario, Setup, Violation};
use guest::sync::Latch;
use guest::{ControlClient, PipeError};
use guest_programs::echo::bytes_from;
use models::files::{FileExchange, check_file};
use models::pipes::{PlacementEvent, check_placements};
use monitor::control_pipe_info;
use monitor::host_pipe::pipe_len;
use ring_pipe::msg::{FileReply, FileRequest, Protocol, Whence, Wire, file_flags};
use simkit::KernelOptions;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

pub struct PipeFile;

const FREE_BEFORE_CLOSE: &str = "pipe-free-before-close";

static BUGS: &[PlantedBug] = &[PlantedBug {
    name: FREE_BEFORE_CLOSE,
    scenario: "pipe-file",
    description: "the monitor frees a pipe's memory when its relay ends, not when the guest closes the pipe",
    mirrors: "Arca PROTOCOL.md §2, §9 (SHM freed while the other side still maps it; wrapped IDs alias)",
    needs_mem: None,
}];

const RING: u64 = 256;

#[derive(Default)]
struct Observed {
    logs: BTreeMap<usize, Vec<FileExchange>>,
    placements: Vec<PlacementEvent>,
    errors: Vec<String>,
}

type Shared = Rc<RefCell<Observed>>;

fn path(i: usize) -> String {
    format!("data/file{i}.bin")
}

impl Scenario for PipeFile {
    fn name(&self) -> &'static str {
        "pipe-file"
    }

    fn description(&self) -> &'static str {
        "the guest reads, writes and seeks files through the monitor's file relay (short transfers, deferred pipe close)"
    }

    fn expected_steps(&self) -> u64 {
        3_000
    }

    fn kernel_options(&self) -> KernelOptions {
        world::kernel_options()
    }

    fn bugs(&self) -> &'static [PlantedBug] {
        BUGS
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let files = setup.derive("files", 1, 3) as usize;
        let concurrent = setup.derive("concurrent", 0, 1) == 1;
        let ops: Vec<u64> = (0..files)
            .map(|i| setup.derive(&format!("f{i}_ops"), 1, 10))
            .collect();
        let mut bugs = Bugs::default();
        if setup.planted(FREE_BEFORE_CLOSE) {
            bugs.monitor |= monitor::planted::FREE_BEFORE_GUEST_CLOSE;
        }
        let store = Rc::new(SimFiles::new(setup.ctx()));
        let observed: Shared = Rc::default();
        let (o, ops2) = (observed.clone(), ops.clone());
        let world = PipeWorld::boot(
            setup,
            64 * 1024,
            bugs,
            store.clone(),
            SimNet::none(),
            move |env| async move {
                if let Err(e) = guest_main(env, ops2, concurrent, o.clone()).await {
                    o.borrow_mut().errors.push(format!("main: {e}"));
                }
            },
        );

        let outcome = setup.sim.run();
        let observed = observed.borrow();
        let mut v = world.common_checks(&outcome, &observed.errors);
        let contents = store.contents();
        for i in 0..files {
            let log = observed.logs.get(&i).map(Vec::as_slice).unwrap_or_default();
            v.extend(check_file(
                &path(i),
                log,
                contents.get(&path(i)).map(Vec::as_slice),
            ));
        }
        v.extend(check_placements(&observed.placements));
        v
    }
}

async fn guest_main(
    env: GuestEnv,
    ops: Vec<u64>,
    concurrent: bool,
    observed: Shared,
) -> Result<(), PipeError> {
    let mut control = ControlClient::new(env.attach(&control_pipe_info()).await?);
    let done = Latch::new(ops.len() as u64);
    let mut ids = Vec::new();
    for (i, n) in ops.iter().copied().enumerate() {
        let info = control.new_pipe(RING).await?;
        ids.push(info.pipe_id);
        observed
            .borrow_mut()
            .placements
            .push(PlacementEvent::Ready {
                id: info.pipe_id,
                offset: info.shm_offset,
                len: pipe_len(info.ring_size),
            });
        let pipe = env.attach(&info).await?;
        let (e, o, d) = (env.clone(), observed.clone(), done.clone());
        let session = async move {
            if let Err(err) = file_session(&e, pipe, i, n, &o).await {
                o.borrow_mut().errors.push(format!("file {i}: {err}"));
            }
            d.count_down();
        };
        if concurrent {
            env.kernel.spawn(&format!("file{i}"), session);
        } else {
            session.await;
        }
    }
    done.wait().await;
    for id in ids {
        control.close_pipe(id).await?;
        observed
            .borrow_mut()
            .placements
            .push(PlacementEvent::Closed { id });
    }
    control.shutdown().await
}

async fn exchange(pipe: &mut GuestPipe, req: &FileRequest) -> Result<FileReply, PipeError> {
    pipe.send_frame(&req.encode()).await?;
    let frame = pipe.recv_frame().await?.ok_or(PipeError::UnexpectedEof)?;
    Ok(FileReply::decode(&frame)?)
}

async fn file_session(
    env: &GuestEnv,
    mut pipe: GuestPipe,
    i: usize,
    ops: u64,
    observed: &Shared,
) -> Result<(), PipeError> {
    let ctx = &env.ctx;
    let flags = file_flags::READ | file_flags::WRITE | file_flags::CREATE | file_flags::TRUNCATE;
    pipe.send_frame(
        &Protocol::File {
            path: path(i),
            flags,
        }
        .encode(),
    )
    .await?;
    match FileReply::decode(&pipe.recv_frame().await?.ok_or(PipeError::UnexpectedEof)?)? {
        FileReply::Opened => {}
        FileReply::Error { code } => return Err(PipeError::Remote(code)),
        _ => {
            return Err(PipeError::Protocol(
                "open answered with something other than Opened",
            ));
        }
    }
    let mut log = Vec::new();
    let mut size_hint = 0u64;
    for _ in 0..ops {
        match ctx.choose(3) {
            0 => {
                let mut data = bytes_from(ctx.choose(u64::MAX), 1 + ctx.choose(300) as usize);
                while !data.is_empty() {
                    let wrote =
                        match exchange(&mut pipe, &FileRequest::Write { data: data.clone() })
                            .await?
                        {
                            FileReply::Wrote { len } => Ok(len),
                            FileReply::Error { code } => Err(code),
                            _ => {
                                return Err(PipeError::Protocol(
                                    "write answered with something other than Wrote",
                                ));
                            }
                        };
                    log.push(FileExchange::Write {
                        data: data.clone(),
                        wrote,
                    });
                    match wrote {
                        Ok(n) if n >= 1 && n as usize <= data.len() => {
                            size_hint += n;
                            data.drain(..n as usize);
                        }
                        _ => break,
                    }
                }
            }
            1 => {
                let len = 1 + ctx.choose(400);
                let data = match exchange(&mut pipe, &FileRequest::Read { len }).await? {
                    FileReply::Data { data } => Ok(data),
                    FileReply::Error { code } => Err(code),
                    _ => {
                        return Err(PipeError::Protocol(
                            "read answered with something other than Data",
                        ));
                    }
                };
                log.push(FileExchange::Read { len, data });
            }
            _ => {
                let offset = ctx.choose(size_hint + 20);
                let pos = match exchange(
                    &mut pipe,
                    &FileRequest::Seek {
                        offset: offset as i64,
                        whence: Whence::Start,
                    },
                )
                .await?
                {
                    FileReply::Seeked { pos } => Ok(pos),
                    FileReply::Error { code } => Err(code),
                    _ => {
                        return Err(PipeError::Protocol(
                            "seek answered with something other than Seeked",
                        ));
                    }
                };
                log.push(FileExchange::SeekStart { offset, pos });
            }
        }
    }
    observed.borrow_mut().logs.insert(i, log);
    match exchange(&mut pipe, &FileRequest::Close).await? {
        FileReply::Closed => {}
        _ => {
            return Err(PipeError::Protocol(
                "close answered with something other than Closed",
            ));
        }
    }
    // The relay ends the stream after Closed.
    match pipe.recv_frame().await? {
        None => Ok(()),
        Some(_) => Err(PipeError::Protocol("frames after Closed")),
    }
}
