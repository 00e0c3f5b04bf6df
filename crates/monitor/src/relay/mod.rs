//! One relay task per pipe: it reads the pipe's first frame (the protocol) and serves it.

mod echo;
mod file;
mod tcp;

use crate::host_pipe::{HostPipe, HostPipeError};
use crate::net::Connection;
use crate::{FileStore, MonitorConfig, Platform};
use ring_pipe::msg::{PipeInfo, Protocol, Wire};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// What every relay shares.
pub struct Relays<P: Platform, F> {
    platform: P,
    files: Rc<F>,
    ring_bugs: u32,
    /// Planted monitor bugs.
    bugs: u32,
    /// Connections a listener accepted for a pipe whose relay has not claimed them yet.
    accepted: RefCell<BTreeMap<u64, Connection<P::Net>>>,
}

impl<P: Platform, F: FileStore> Relays<P, F> {
    pub fn new(platform: P, files: Rc<F>, config: MonitorConfig) -> Self {
        Self {
            platform,
            files,
            ring_bugs: config.ring_bugs,
            bugs: config.bugs,
            accepted: RefCell::default(),
        }
    }
}

pub async fn serve<P: Platform, F: FileStore>(relays: Rc<Relays<P, F>>, info: PipeInfo) {
    let platform = &relays.platform;
    let id = info.pipe_id;
    let mut pipe = match HostPipe::attach(platform, &info, relays.ring_bugs).await {
        Ok(p) => p,
        Err(e) => {
            platform.trace("relay-error", format_args!("pipe={id} attach: {e}"));
            return;
        }
    };
    let first = match pipe.recv_frame().await {
        Ok(Some(f)) => f,
        Ok(None) => {
            platform.trace(
                "relay-done",
                format_args!("pipe={id} closed before its protocol frame"),
            );
            let _ = pipe.close_write().await;
            return;
        }
        Err(e) => {
            platform.trace("relay-error", format_args!("pipe={id} {e}; closing"));
            pipe.shut().await;
            return;
        }
    };
    let outcome = match Protocol::decode(&first) {
        Ok(Protocol::Echo) => echo::run(&mut pipe).await,
        Ok(Protocol::File { path, flags }) => {
            file::run(&mut pipe, &*relays.files, &path, flags).await
        }
        Ok(Protocol::TcpListen { port }) => tcp::listen(&relays, &mut pipe, port).await,
        // Stream relays split the pipe and close each direction themselves.
        Ok(Protocol::TcpConnect { host, port }) => {
            return tcp::connect(&relays, pipe, &host, port).await;
        }
        Ok(Protocol::TcpAccepted) => return tcp::accepted(&relays, pipe).await,
        Err(e) => {
            platform.trace(
                "relay-error",
                format_args!("pipe={id} bad protocol frame: {e}; closing"),
            );
            pipe.shut().await;
            return;
        }
    };
    finish(platform, &mut pipe, outcome).await;
}

/// Ends a relay: a clean end closes the host's write side; an error closes both directions.
async fn finish<P: Platform>(
    platform: &P,
    pipe: &mut HostPipe<P>,
    outcome: Result<(), HostPipeError>,
) {
    let id = pipe.info().pipe_id;
    match outcome {
        Ok(()) => {
            let _ = pipe.close_write().await;
            platform.trace("relay-done", format_args!("pipe={id}"));
        }
        Err(e) => {
            platform.trace("relay-error", format_args!("pipe={id} {e}; closing"));
            pipe.shut().await;
        }
    }
}
