//! The guest's control client: asks the host for new pipes over the control pipe. Replies come
//! back in request order and must echo the request id.

use crate::pipe::{PipeEnd, PipeError};
use hv::{Doorbell, IrqWaiter};
use ring_pipe::SharedMemory;
use ring_pipe::msg::{ControlReply, ControlRequest, PipeInfo, Wire};

pub struct ControlClient<M, D, I> {
    pipe: PipeEnd<M, D, I>,
    next_request: u64,
}

impl<M: SharedMemory + Clone, D: Doorbell, I: IrqWaiter> ControlClient<M, D, I> {
    pub fn new(pipe: PipeEnd<M, D, I>) -> Self {
        Self {
            pipe,
            next_request: 1,
        }
    }

    async fn request(&mut self, req: ControlRequest, id: u64) -> Result<ControlReply, PipeError> {
        self.pipe.send_frame(&req.encode()).await?;
        let frame = self
            .pipe
            .recv_frame()
            .await?
            .ok_or(PipeError::UnexpectedEof)?;
        let reply = ControlReply::decode(&frame)?;
        if reply.request_id() != id {
            return Err(PipeError::Protocol(
                "control reply does not answer the oldest request",
            ));
        }
        Ok(reply)
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_request;
        // IDs wrap and skip 0.
        self.next_request = self.next_request.wrapping_add(1).max(1);
        id
    }

    /// Asks for a new pipe with rings of `ring_size` bytes.
    pub async fn new_pipe(&mut self, ring_size: u64) -> Result<PipeInfo, PipeError> {
        let id = self.take_id();
        match self
            .request(
                ControlRequest::NewPipe {
                    request_id: id,
                    ring_size,
                },
                id,
            )
            .await?
        {
            ControlReply::PipeReady { pipe, .. } => Ok(pipe),
            ControlReply::Error { code, .. } => Err(PipeError::Remote(code)),
            ControlReply::PipeClosed { .. } => {
                Err(PipeError::Protocol("PipeClosed answers NewPipe"))
            }
        }
    }

    /// Tells the host a pipe is finished so it can free its memory.
    pub async fn close_pipe(&mut self, pipe_id: u64) -> Result<(), PipeError> {
        let id = self.take_id();
        match self
            .request(
                ControlRequest::ClosePipe {
                    request_id: id,
                    pipe_id,
                },
                id,
            )
            .await?
        {
            ControlReply::PipeClosed { .. } => Ok(()),
            ControlReply::Error { code, .. } => Err(PipeError::Remote(code)),
            ControlReply::PipeReady { .. } => {
                Err(PipeError::Protocol("PipeReady answers ClosePipe"))
            }
        }
    }

    pub async fn shutdown(&mut self) -> Result<(), PipeError> {
        self.pipe.close_write().await
    }
}
