//! Files: the guest's `FileRequest` frames are served from the file store, each answered by a
//! `FileReply` frame. A malformed request is answered with `INVALID` and ends the pipe.

use crate::host_pipe::{HostPipe, HostPipeError};
use crate::{FileStore, Platform};
use ring_pipe::msg::{FileReply, FileRequest, Wire, code};

/// Largest read served in one reply (keeps the reply frame within the frame limit).
const MAX_READ: u64 = 16 * 1024;

pub async fn run<P: Platform, F: FileStore>(
    pipe: &mut HostPipe<P>,
    store: &F,
    path: &str,
    flags: u64,
) -> Result<(), HostPipeError> {
    let h = match store.open(path, flags).await {
        Ok(h) => h,
        Err(code) => return pipe.send_frame(&FileReply::Error { code }.encode()).await,
    };
    pipe.send_frame(&FileReply::Opened.encode()).await?;
    let result = serve(pipe, store, h).await;
    store.close(h).await;
    result
}

async fn serve<P: Platform, F: FileStore>(
    pipe: &mut HostPipe<P>,
    store: &F,
    h: F::Handle,
) -> Result<(), HostPipeError> {
    while let Some(frame) = pipe.recv_frame().await? {
        let req = match FileRequest::decode(&frame) {
            Ok(r) => r,
            Err(e) => {
                pipe.send_frame(
                    &FileReply::Error {
                        code: code::INVALID,
                    }
                    .encode(),
                )
                .await?;
                return Err(e.into());
            }
        };
        let reply = match req {
            FileRequest::Read { len } => match store.read(h, len.min(MAX_READ)).await {
                Ok(data) => FileReply::Data { data },
                Err(code) => FileReply::Error { code },
            },
            FileRequest::Write { data } => match store.write(h, &data).await {
                Ok(len) => FileReply::Wrote { len },
                Err(code) => FileReply::Error { code },
            },
            FileRequest::Seek { offset, whence } => match store.seek(h, offset, whence).await {
                Ok(pos) => FileReply::Seeked { pos },
                Err(code) => FileReply::Error { code },
            },
            FileRequest::Close => {
                pipe.send_frame(&FileReply::Closed.encode()).await?;
                return Ok(());
            }
        };
        pipe.send_frame(&reply.encode()).await?;
    }
    Ok(())
}
