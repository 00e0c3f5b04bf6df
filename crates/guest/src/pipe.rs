//! A guest pipe end: blocking reads and writes (and frames) on top of a pipe's two rings.
//!
//! A pipe is two rings back to back at `shm_offset`: guest-to-host first, then host-to-guest,
//! each `HEADER_LEN + ring_size` bytes. The guest rings the pipe's host doorbell after it
//! publishes data, frees space or closes, whenever the suppression handshake says the host waits:
//! doorbell `host_doorbell` for "data written / write side closed" and `host_doorbell + 1` for
//! "space freed / read side closed", so the host's two directions never share (and steal) one
//! eventfd count. It sleeps on the shared interrupt line, taking its ticket before every check.

use crate::{has, planted};
use alloc::vec::Vec;
use core::fmt;
use hv::blocking::{self, OnIrq};
use hv::{Doorbell, IrqWaiter};
use ring_pipe::frame::{FrameDecoder, FrameError, frame_to_vec};
use ring_pipe::msg::{DecodeError, PipeInfo};
use ring_pipe::{Consumer, HEADER_LEN, Producer, RingError, RingLayout, SharedMemory};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipeError {
    Ring(RingError),
    Frame(FrameError),
    Decode(DecodeError),
    /// The host closed its end before the expected data.
    UnexpectedEof,
    /// The host answered an error code.
    Remote(u64),
    /// The host's reply did not follow the protocol.
    Protocol(&'static str),
}

impl From<RingError> for PipeError {
    fn from(e: RingError) -> Self {
        PipeError::Ring(e)
    }
}
impl From<FrameError> for PipeError {
    fn from(e: FrameError) -> Self {
        PipeError::Frame(e)
    }
}
impl From<DecodeError> for PipeError {
    fn from(e: DecodeError) -> Self {
        PipeError::Decode(e)
    }
}

impl fmt::Display for PipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipeError::Ring(e) => write!(f, "ring: {e}"),
            PipeError::Frame(e) => write!(f, "frame: {e}"),
            PipeError::Decode(e) => write!(f, "message: {e}"),
            PipeError::UnexpectedEof => f.write_str("pipe closed before the expected data"),
            PipeError::Remote(code) => write!(f, "host answered error {code}"),
            PipeError::Protocol(why) => write!(f, "protocol violation: {why}"),
        }
    }
}

impl core::error::Error for PipeError {}

impl embedded_io::Error for PipeError {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self {
            PipeError::Ring(e) => embedded_io::Error::kind(e),
            PipeError::UnexpectedEof => embedded_io::ErrorKind::BrokenPipe,
            _ => embedded_io::ErrorKind::InvalidData,
        }
    }
}

/// The two ring layouts of a pipe: (guest-to-host, host-to-guest).
pub fn pipe_layouts(
    info: &PipeInfo,
    region_size: u64,
) -> Result<(RingLayout, RingLayout), RingError> {
    let up = RingLayout::new(info.shm_offset, info.ring_size, region_size)?;
    let down_base = info
        .shm_offset
        .checked_add(HEADER_LEN + info.ring_size)
        .ok_or(RingError::Layout("pipe does not fit in the shared region"))?;
    let down = RingLayout::new(down_base, info.ring_size, region_size)?;
    Ok((up, down))
}

pub struct PipeEnd<M, D, I> {
    id: u64,
    tx: Producer<M>,
    rx: Consumer<M>,
    data_bell: D,
    space_bell: D,
    data_irq: I,
    space_irq: I,
    bugs: u32,
    frames: FrameDecoder,
}

impl<M: SharedMemory + Clone, D: Doorbell, I: IrqWaiter> PipeEnd<M, D, I> {
    /// Attaches to a pipe the host has set up. `bells` are the pipe's two host doorbells
    /// (`host_doorbell` and `host_doorbell + 1`); `irqs` are the interrupt line as waited on
    /// for data and for space (the same line in hardware; separate handles let a simulation
    /// tell what a parked thread waits for).
    pub async fn attach(
        mem: M,
        info: &PipeInfo,
        bells: (D, D),
        irqs: (I, I),
        bugs: u32,
    ) -> Result<Self, PipeError> {
        let (up, down) = pipe_layouts(info, mem.size())?;
        let tx = Producer::attach(mem.clone(), up).await?;
        let rx = Consumer::attach(mem, down).await?;
        let (data_bell, space_bell) = bells;
        let (data_irq, space_irq) = irqs;
        Ok(Self {
            id: info.pipe_id,
            tx,
            rx,
            data_bell,
            space_bell,
            data_irq,
            space_irq,
            bugs,
            frames: FrameDecoder::new(),
        })
    }

    /// Attaches with planted ring bugs on the guest's rings (see `ring_pipe::planted`).
    pub fn with_ring_bugs(mut self, bugs: u32) -> Self {
        self.tx = self.tx.with_planted(bugs);
        self.rx = self.rx.with_planted(bugs);
        self
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Writes all of `data`, sleeping while the ring is full.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), PipeError> {
        let spin = has(self.bugs, planted::SPIN_ON_DEAD_PEER);
        let sleep = OnIrq(&self.space_irq);
        Ok(blocking::write_all(&mut self.tx, &sleep, || self.data_bell.ring(), data, spin).await?)
    }

    /// Reads at least one byte, sleeping while the ring is empty; `Ok(0)` at end of stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, PipeError> {
        let sleep = OnIrq(&self.data_irq);
        Ok(blocking::read(&mut self.rx, &sleep, || self.space_bell.ring(), buf).await?)
    }

    /// Reads exactly `buf.len()` bytes.
    pub async fn read_exact(&mut self, mut buf: &mut [u8]) -> Result<(), PipeError> {
        while !buf.is_empty() {
            match self.read(buf).await? {
                0 => return Err(PipeError::UnexpectedEof),
                n => buf = &mut buf[n..],
            }
        }
        Ok(())
    }

    pub async fn send_frame(&mut self, payload: &[u8]) -> Result<(), PipeError> {
        let frame = frame_to_vec(payload)?;
        self.write_all(&frame).await
    }

    /// The next frame, or `None` if the host closed the stream cleanly between frames.
    pub async fn recv_frame(&mut self) -> Result<Option<Vec<u8>>, PipeError> {
        let (rx, sleep, bell) = (&mut self.rx, OnIrq(&self.data_irq), &self.space_bell);
        blocking::recv_frame(
            &mut self.frames,
            &mut [0u8; 256],
            async |buf: &mut [u8]| {
                Ok::<_, PipeError>(blocking::read(rx, &sleep, || bell.ring(), buf).await?)
            },
        )
        .await
    }

    /// Raw bytes already read past the last frame (for protocols that switch to raw bytes).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.frames.take_pending()
    }

    /// Ends the guest's writing: the host reads the rest, then end-of-file.
    pub async fn close_write(&mut self) -> Result<(), PipeError> {
        self.tx.close().await?;
        if !has(self.bugs, planted::CLOSE_NO_DOORBELL) {
            self.data_bell.ring();
        }
        Ok(())
    }

    /// Stops reading: the host's writes will fail.
    pub async fn close_read(&mut self) -> Result<(), PipeError> {
        self.rx.close().await?;
        self.space_bell.ring();
        Ok(())
    }
}

impl<M, D, I> embedded_io::ErrorType for PipeEnd<M, D, I> {
    type Error = PipeError;
}

impl<M: SharedMemory + Clone, D: Doorbell, I: IrqWaiter> embedded_io_async::Read
    for PipeEnd<M, D, I>
{
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, PipeError> {
        PipeEnd::read(self, buf).await
    }
}

impl<M: SharedMemory + Clone, D: Doorbell, I: IrqWaiter> embedded_io_async::Write
    for PipeEnd<M, D, I>
{
    async fn write(&mut self, buf: &[u8]) -> Result<usize, PipeError> {
        self.write_all(buf).await?;
        Ok(buf.len())
    }

    /// Bytes are in shared memory as soon as `write` returns; nothing is buffered here.
    async fn flush(&mut self) -> Result<(), PipeError> {
        Ok(())
    }
}
