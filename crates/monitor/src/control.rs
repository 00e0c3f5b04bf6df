//! The control handler: reads `ControlRequest` frames from the control pipe, places new pipes in
//! the shared region, writes their ring headers *before* replying (the reply is what publishes
//! them to the guest), starts one relay task per pipe, and frees a pipe's memory once both the
//! relay has finished and the guest has closed the pipe.

use crate::alloc::RegionAllocator;
use crate::host_pipe::{HostPipe, pipe_len};
use crate::relay::Relays;
use crate::{FileStore, MonitorConfig, Platform, has, planted, relay};
use ring_pipe::msg::{
    CONTROL_RING_SIZE, ControlReply, ControlRequest, PipeInfo, Wire, code, control_pipe_info,
};
use std::collections::BTreeSet;
use std::rc::Rc;
use tokio::sync::mpsc;

/// Smallest and largest ring a guest may ask for.
pub const MIN_RING: u64 = 64;
pub const MAX_RING: u64 = 1 << 16;

pub struct ControlHandler<P: Platform, F: FileStore> {
    platform: P,
    relays: Rc<Relays<P, F>>,
    config: MonitorConfig,
    alloc: RegionAllocator,
    next_pipe: u64,
    done_tx: mpsc::UnboundedSender<u64>,
    done_rx: mpsc::UnboundedReceiver<u64>,
    closed_by_guest: BTreeSet<u64>,
    relay_finished: BTreeSet<u64>,
}

impl<P: Platform, F: FileStore> ControlHandler<P, F> {
    pub fn new(platform: P, files: Rc<F>, config: MonitorConfig) -> Self {
        use ring_pipe::SharedMemory;
        let size = platform.memory().size();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            alloc: RegionAllocator::new(pipe_len(CONTROL_RING_SIZE), size),
            relays: Rc::new(Relays::new(platform.clone(), files, config)),
            platform,
            config,
            next_pipe: 1,
            done_tx,
            done_rx,
            closed_by_guest: BTreeSet::new(),
            relay_finished: BTreeSet::new(),
        }
    }

    /// Writes the control pipe's ring headers (before the guest boots).
    pub async fn init_control(&self) -> Result<(), crate::HostPipeError> {
        HostPipe::init(&self.platform, &control_pipe_info()).await
    }

    /// Serves control requests until the guest closes the control pipe or breaks its protocol.
    pub async fn run(mut self) {
        let mut pipe =
            match HostPipe::attach(&self.platform, &control_pipe_info(), self.config.ring_bugs)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    self.platform.trace("control-error", format_args!("{e}"));
                    return;
                }
            };
        loop {
            let frame = match pipe.recv_frame().await {
                Ok(Some(f)) => f,
                Ok(None) => {
                    self.platform
                        .trace("control-closed", format_args!("by guest"));
                    break;
                }
                Err(e) => {
                    self.platform.trace(
                        "control-error",
                        format_args!("{e}; closing the control pipe"),
                    );
                    break;
                }
            };
            self.reap();
            let reply = match ControlRequest::decode(&frame) {
                Ok(req) => self.handle(req).await,
                Err(e) => {
                    self.platform.trace(
                        "control-error",
                        format_args!("{e}; closing the control pipe"),
                    );
                    break;
                }
            };
            if let Err(e) = pipe.send_frame(&reply.encode()).await {
                self.platform.trace("control-error", format_args!("{e}"));
                break;
            }
        }
        pipe.shut().await;
    }

    fn reap(&mut self) {
        while let Ok(id) = self.done_rx.try_recv() {
            self.relay_finished.insert(id);
            if has(self.config.bugs, planted::FREE_BEFORE_GUEST_CLOSE) {
                self.free(id);
            } else {
                self.maybe_free(id);
            }
        }
    }

    fn maybe_free(&mut self, id: u64) {
        if self.closed_by_guest.contains(&id) && self.relay_finished.contains(&id) {
            self.free(id);
        }
    }

    fn free(&mut self, id: u64) {
        if let Some(p) = self.alloc.release(id) {
            self.platform.trace(
                "pipe-freed",
                format_args!("pipe={id} offset={} len={}", p.offset, p.len),
            );
        }
    }

    async fn handle(&mut self, req: ControlRequest) -> ControlReply {
        match req {
            ControlRequest::NewPipe {
                request_id,
                ring_size,
            } => {
                if !ring_size.is_power_of_two() || !(MIN_RING..=MAX_RING).contains(&ring_size) {
                    return ControlReply::Error {
                        request_id,
                        code: code::INVALID,
                    };
                }
                let id = self.next_pipe;
                let Some(place) = self.alloc.alloc(id, pipe_len(ring_size)) else {
                    return ControlReply::Error {
                        request_id,
                        code: code::NO_SPACE,
                    };
                };
                self.next_pipe += 1;
                let info = PipeInfo {
                    pipe_id: id,
                    shm_offset: place.offset,
                    ring_size,
                    host_doorbell: 2 * id,
                    guest_irq: 0,
                };
                if let Err(e) = HostPipe::init(&self.platform, &info).await {
                    self.platform
                        .trace("control-error", format_args!("init pipe {id}: {e}"));
                    self.alloc.release(id);
                    return ControlReply::Error {
                        request_id,
                        code: code::IO,
                    };
                }
                let (relays, done) = (self.relays.clone(), self.done_tx.clone());
                self.platform.spawn(
                    &format!("relay{id}"),
                    Box::pin(async move {
                        relay::serve(relays, info).await;
                        // The receiver lives as long as the control handler; after it, nobody frees.
                        let _ = done.send(id);
                    }),
                );
                self.platform.trace(
                    "pipe-ready",
                    format_args!(
                        "pipe={id} offset={} len={} ring={ring_size}",
                        place.offset, place.len
                    ),
                );
                ControlReply::PipeReady {
                    request_id,
                    pipe: info,
                }
            }
            ControlRequest::ClosePipe {
                request_id,
                pipe_id,
            } => {
                if pipe_id == 0
                    || self.alloc.owner_of(pipe_id).is_none()
                    || self.closed_by_guest.contains(&pipe_id)
                {
                    return ControlReply::Error {
                        request_id,
                        code: code::BAD_ID,
                    };
                }
                self.closed_by_guest.insert(pipe_id);
                self.reap();
                self.maybe_free(pipe_id);
                ControlReply::PipeClosed { request_id }
            }
        }
    }
}
