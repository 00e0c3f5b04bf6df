//! One relay task per pipe: it reads the pipe's first frame (the protocol) and serves it.

mod echo;
mod file;

use crate::host_pipe::HostPipe;
use crate::{FileStore, Platform};
use ring_pipe::msg::{ListenerReply, PipeInfo, Protocol, StreamReply, Wire, code};
use std::rc::Rc;

pub async fn serve<P: Platform, F: FileStore>(
    platform: &P,
    files: Rc<F>,
    info: PipeInfo,
    ring_bugs: u32,
) {
    let id = info.pipe_id;
    let mut pipe = match HostPipe::attach(platform, &info, ring_bugs).await {
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
        Ok(Protocol::File { path, flags }) => file::run(&mut pipe, &*files, &path, flags).await,
        // TCP relays are not wired yet: refuse cleanly, as a host without network would.
        Ok(Protocol::TcpListen { .. }) => {
            pipe.send_frame(
                &ListenerReply::Error {
                    code: code::REFUSED,
                }
                .encode(),
            )
            .await
        }
        Ok(Protocol::TcpConnect { .. }) => {
            pipe.send_frame(
                &StreamReply::Error {
                    code: code::REFUSED,
                }
                .encode(),
            )
            .await
        }
        Err(e) => {
            platform.trace(
                "relay-error",
                format_args!("pipe={id} bad protocol frame: {e}; closing"),
            );
            pipe.shut().await;
            return;
        }
    };
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
