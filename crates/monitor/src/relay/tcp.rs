//! TCP relays. A listener pipe answers `Listening`, then one `Incoming` per `Accept` request once
//! a client connects, parking the connection until the named pipe claims it with
//! `TcpAccepted`. A stream pipe (connected or accepted) answers one `StreamReply` and then
//! carries raw bytes: the guest-to-network direction runs as its own task, the network-to-guest
//! direction in the relay's task, so either side can half-close while the other keeps flowing.

use super::{Relays, finish};
use crate::host_pipe::{HostPipe, HostPipeError, HostReader, HostWriter};
use crate::net::{Connection, Net, NetReader, NetWriter};
use crate::{FileStore, Platform, has, planted};
use ring_pipe::msg::{ListenerReply, ListenerRequest, StreamReply, Wire, code};
use tokio::sync::oneshot;

/// Bytes moved per ring or socket operation.
const CHUNK: usize = 1024;

pub async fn listen<P: Platform, F: FileStore>(
    relays: &Relays<P, F>,
    pipe: &mut HostPipe<P>,
    port: u64,
) -> Result<(), HostPipeError> {
    let net = relays.platform.net();
    let id = pipe.info().pipe_id;
    let bound = match u16::try_from(port) {
        Ok(p) => net.listen(p).await,
        Err(_) => Err(code::INVALID),
    };
    let listener = match bound {
        Ok(l) => l,
        Err(code) => {
            return pipe
                .send_frame(&ListenerReply::Error { code }.encode())
                .await;
        }
    };
    relays
        .platform
        .trace("tcp-listening", format_args!("pipe={id} port={port}"));
    pipe.send_frame(&ListenerReply::Listening { port }.encode())
        .await?;
    while let Some(frame) = pipe.recv_frame().await? {
        let ListenerRequest::Accept { pipe_id } = match ListenerRequest::decode(&frame) {
            Ok(r) => r,
            Err(e) => {
                let reply = ListenerReply::Error {
                    code: code::INVALID,
                };
                pipe.send_frame(&reply.encode()).await?;
                return Err(e.into());
            }
        };
        let reply = match net.accept(&listener).await {
            Ok(conn) => {
                let peer = conn.peer.clone();
                relays.platform.trace(
                    "tcp-accepted",
                    format_args!("pipe={id} for={pipe_id} peer={peer}"),
                );
                // A connection parked earlier for the same pipe and never claimed is dropped.
                relays.accepted.borrow_mut().insert(pipe_id, conn);
                ListenerReply::Incoming { pipe_id, peer }
            }
            Err(code) => ListenerReply::Error { code },
        };
        pipe.send_frame(&reply.encode()).await?;
    }
    Ok(())
}

pub async fn connect<P: Platform, F: FileStore>(
    relays: &Relays<P, F>,
    mut pipe: HostPipe<P>,
    host: &str,
    port: u64,
) {
    let net = relays.platform.net();
    let connected = match u16::try_from(port) {
        Ok(p) => net.connect(host, p).await,
        Err(_) => Err(code::INVALID),
    };
    match connected {
        Ok(conn) => stream(relays, pipe, conn).await,
        Err(code) => {
            relays.platform.trace(
                "tcp-connect-failed",
                format_args!("pipe={} to={host}:{port} code={code}", pipe.info().pipe_id),
            );
            let sent = pipe.send_frame(&StreamReply::Error { code }.encode()).await;
            finish(&relays.platform, &mut pipe, sent).await;
        }
    }
}

pub async fn accepted<P: Platform, F: FileStore>(relays: &Relays<P, F>, mut pipe: HostPipe<P>) {
    let id = pipe.info().pipe_id;
    let parked = relays.accepted.borrow_mut().remove(&id);
    match parked {
        Some(conn) => stream(relays, pipe, conn).await,
        None => {
            let reply = StreamReply::Error { code: code::BAD_ID };
            let sent = pipe.send_frame(&reply.encode()).await;
            finish(&relays.platform, &mut pipe, sent).await;
        }
    }
}

async fn stream<P: Platform, F: FileStore>(
    relays: &Relays<P, F>,
    mut pipe: HostPipe<P>,
    conn: Connection<P::Net>,
) {
    let platform = &relays.platform;
    let id = pipe.info().pipe_id;
    if let Err(e) = pipe.send_frame(&StreamReply::Connected.encode()).await {
        return finish(platform, &mut pipe, Err(e)).await;
    }
    platform.trace("tcp-stream", format_args!("pipe={id} peer={}", conn.peer));
    let early = pipe.take_buffered();
    let (from_guest, to_guest) = pipe.into_split();
    let (up_done, up_finished) = oneshot::channel();
    let up_platform = platform.clone();
    let writer = conn.writer;
    let fin_early = has(relays.bugs, planted::TCP_FIN_BEFORE_DRAIN);
    platform.spawn(
        &format!("relay{id}.up"),
        Box::pin(async move {
            let outcome = guest_to_net::<P>(from_guest, writer, early, fin_early).await;
            trace_direction(&up_platform, id, "guest-to-net", outcome);
            let _ = up_done.send(());
        }),
    );
    let outcome = net_to_guest(to_guest, conn.reader).await;
    trace_direction(platform, id, "net-to-guest", outcome);
    // The sender is dropped unsent only if the task died; either way that direction is over.
    let _ = up_finished.await;
    platform.trace("relay-done", format_args!("pipe={id}"));
}

/// How a direction of a stream ended.
enum DirectionEnd {
    /// The source ended its stream and the end was passed on.
    Eof,
    /// The destination stopped taking bytes (code, or None for the guest's ring), so the
    /// source was told to stop.
    DestinationGone(Option<u64>),
    /// The source failed (network code or the guest's ring).
    SourceFailed(String),
}

fn trace_direction<P: Platform>(
    platform: &P,
    id: u64,
    direction: &str,
    end: Result<DirectionEnd, HostPipeError>,
) {
    match end {
        Ok(DirectionEnd::Eof) => {
            platform.trace("tcp-eof", format_args!("pipe={id} {direction}"));
        }
        Ok(DirectionEnd::DestinationGone(code)) => platform.trace(
            "tcp-closed",
            format_args!("pipe={id} {direction} destination gone (code {code:?})"),
        ),
        Ok(DirectionEnd::SourceFailed(why)) => platform.trace(
            "tcp-error",
            format_args!("pipe={id} {direction} source failed: {why}"),
        ),
        Err(e) => platform.trace("tcp-error", format_args!("pipe={id} {direction} {e}")),
    }
}

async fn guest_to_net<P: Platform>(
    mut from_guest: HostReader<P>,
    mut writer: <P::Net as Net>::Writer,
    early: Vec<u8>,
    fin_early: bool,
) -> Result<DirectionEnd, HostPipeError> {
    let mut buf = vec![0u8; CHUNK];
    let mut pending = early;
    loop {
        if !pending.is_empty()
            && let Err(code) = writer.write_all(&pending).await
        {
            from_guest.close_read().await?;
            return Ok(DirectionEnd::DestinationGone(Some(code)));
        }
        // Planted: `while !writer_closed { read }` ends with bytes still in the ring.
        if fin_early && from_guest.writer_closed().await? {
            return match writer.shutdown().await {
                Ok(()) => Ok(DirectionEnd::Eof),
                Err(code) => Ok(DirectionEnd::DestinationGone(Some(code))),
            };
        }
        let n = match from_guest.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                // A broken ring: stop reading it; dropping the writer ends the network side.
                let _ = from_guest.close_read().await;
                return Ok(DirectionEnd::SourceFailed(e.to_string()));
            }
        };
        if n == 0 {
            return match writer.shutdown().await {
                Ok(()) => Ok(DirectionEnd::Eof),
                Err(code) => Ok(DirectionEnd::DestinationGone(Some(code))),
            };
        }
        pending = buf[..n].to_vec();
    }
}

async fn net_to_guest<P: Platform>(
    mut to_guest: HostWriter<P>,
    mut reader: <P::Net as Net>::Reader,
) -> Result<DirectionEnd, HostPipeError> {
    let mut buf = vec![0u8; CHUNK];
    let end = loop {
        match reader.read(&mut buf).await {
            Ok(0) => break DirectionEnd::Eof,
            Ok(n) => {
                if to_guest.write_all(&buf[..n]).await.is_err() {
                    // The guest stopped reading; dropping the reader stops the network side.
                    break DirectionEnd::DestinationGone(None);
                }
            }
            Err(code) => break DirectionEnd::SourceFailed(format!("code {code}")),
        }
    };
    to_guest.close_write().await?;
    Ok(end)
}
