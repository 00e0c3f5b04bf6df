//! The host's end of a pipe: it reads the guest-to-host ring and writes the host-to-guest ring,
//! sleeping on the pipe's two doorbells (eventfd semantics: rings before the wait are counted,
//! so no ticket is needed) and raising the guest's interrupt line when the suppression handshake
//! says the guest waits.

use crate::Platform;
use hv::IrqRaiser;
use hv::blocking::{self, OnEvent};
use ring_pipe::frame::{FrameDecoder, FrameError, frame_to_vec};
use ring_pipe::msg::{DecodeError, PipeInfo};
use ring_pipe::{Consumer, HEADER_LEN, Producer, RingError, RingLayout, SharedMemory};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostPipeError {
    Ring(RingError),
    Frame(FrameError),
    Decode(DecodeError),
}

impl From<RingError> for HostPipeError {
    fn from(e: RingError) -> Self {
        HostPipeError::Ring(e)
    }
}
impl From<FrameError> for HostPipeError {
    fn from(e: FrameError) -> Self {
        HostPipeError::Frame(e)
    }
}
impl From<DecodeError> for HostPipeError {
    fn from(e: DecodeError) -> Self {
        HostPipeError::Decode(e)
    }
}

impl fmt::Display for HostPipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPipeError::Ring(e) => write!(f, "ring: {e}"),
            HostPipeError::Frame(e) => write!(f, "frame: {e}"),
            HostPipeError::Decode(e) => write!(f, "message: {e}"),
        }
    }
}

impl std::error::Error for HostPipeError {}

/// The two ring layouts of a pipe: (guest-to-host, host-to-guest).
pub fn layouts(info: &PipeInfo, region_size: u64) -> Result<(RingLayout, RingLayout), RingError> {
    let up = RingLayout::new(info.shm_offset, info.ring_size, region_size)?;
    let down = RingLayout::new(
        info.shm_offset + HEADER_LEN + info.ring_size,
        info.ring_size,
        region_size,
    )?;
    Ok((up, down))
}

/// Bytes a pipe with rings of `ring_size` occupies.
pub fn pipe_len(ring_size: u64) -> u64 {
    2 * (HEADER_LEN + ring_size)
}

/// The half of a pipe the host reads: the guest-to-host ring.
pub struct HostReader<P: Platform> {
    rx: Consumer<P::Mem>,
    data_bell: P::Waiter,
    irq: P::Irq,
    frames: FrameDecoder,
}

/// The half of a pipe the host writes: the host-to-guest ring.
pub struct HostWriter<P: Platform> {
    tx: Producer<P::Mem>,
    space_bell: P::Waiter,
    irq: P::Irq,
}

pub struct HostPipe<P: Platform> {
    info: PipeInfo,
    reader: HostReader<P>,
    writer: HostWriter<P>,
}

impl<P: Platform> HostPipe<P> {
    /// Writes fresh ring headers for a new pipe (before the guest learns of it), and names the
    /// rings' fields for traces: `pipe<id>.g2h.*` (guest to host) and `pipe<id>.h2g.*`.
    pub async fn init(platform: &P, info: &PipeInfo) -> Result<(), HostPipeError> {
        let mem = platform.memory();
        let (up, down) = layouts(info, mem.size())?;
        let id = info.pipe_id;
        up.name_fields(&mem, &format_args!("pipe{id}.g2h"));
        down.name_fields(&mem, &format_args!("pipe{id}.h2g"));
        let start = platform.start_cursor();
        up.init(&mem, start).await.map_err(RingError::from)?;
        down.init(&mem, start).await.map_err(RingError::from)?;
        Ok(())
    }

    pub async fn attach(
        platform: &P,
        info: &PipeInfo,
        ring_bugs: u32,
    ) -> Result<Self, HostPipeError> {
        let (up, down) = layouts(info, platform.memory().size())?;
        // The relay may touch only its own pipe's rings.
        let mem = platform.pipe_memory(info.shm_offset, pipe_len(info.ring_size));
        let rx = Consumer::attach(mem.clone(), up)
            .await?
            .with_planted(ring_bugs);
        let tx = Producer::attach(mem, down).await?.with_planted(ring_bugs);
        Ok(Self {
            info: *info,
            reader: HostReader {
                rx,
                data_bell: platform.doorbell(info.host_doorbell),
                irq: platform.irq(),
                frames: FrameDecoder::new(),
            },
            writer: HostWriter {
                tx,
                space_bell: platform.doorbell(info.host_doorbell + 1),
                irq: platform.irq(),
            },
        })
    }

    pub fn info(&self) -> &PipeInfo {
        &self.info
    }

    /// The two directions, for relays that serve them concurrently.
    pub fn into_split(self) -> (HostReader<P>, HostWriter<P>) {
        (self.reader, self.writer)
    }

    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, HostPipeError> {
        self.reader.read(buf).await
    }

    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), HostPipeError> {
        self.writer.write_all(data).await
    }

    pub async fn send_frame(&mut self, payload: &[u8]) -> Result<(), HostPipeError> {
        self.writer.send_frame(payload).await
    }

    pub async fn recv_frame(&mut self) -> Result<Option<Vec<u8>>, HostPipeError> {
        self.reader.recv_frame().await
    }

    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.reader.take_buffered()
    }

    pub async fn close_write(&mut self) -> Result<(), HostPipeError> {
        self.writer.close_write().await
    }

    pub async fn close_read(&mut self) -> Result<(), HostPipeError> {
        self.reader.close_read().await
    }

    /// Closes both directions, ignoring errors (used on the way out of a failed relay).
    pub async fn shut(&mut self) {
        let _ = self.close_read().await;
        let _ = self.close_write().await;
    }
}

impl<P: Platform> HostReader<P> {
    /// Reads at least one byte; `Ok(0)` once the guest closed its write side and all is read.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, HostPipeError> {
        let sleep = OnEvent(&self.data_bell);
        Ok(blocking::read(&mut self.rx, &sleep, || self.irq.raise(), buf).await?)
    }

    /// The next frame from the guest, or `None` at a clean end of stream.
    pub async fn recv_frame(&mut self) -> Result<Option<Vec<u8>>, HostPipeError> {
        let (rx, sleep, irq) = (&mut self.rx, OnEvent(&self.data_bell), &self.irq);
        blocking::recv_frame(
            &mut self.frames,
            &mut [0u8; 512],
            async |buf: &mut [u8]| {
                Ok::<_, HostPipeError>(blocking::read(rx, &sleep, || irq.raise(), buf).await?)
            },
        )
        .await
    }

    /// Whether the guest has closed its write side (bytes may still be unread).
    pub async fn writer_closed(&mut self) -> Result<bool, HostPipeError> {
        Ok(self.rx.readable().await?.1)
    }

    /// Raw bytes already read past the last frame (for protocols that switch to raw bytes).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.frames.take_pending()
    }

    /// Stops reading the guest.
    pub async fn close_read(&mut self) -> Result<(), HostPipeError> {
        self.rx.close().await?;
        self.irq.raise();
        Ok(())
    }
}

impl<P: Platform> HostWriter<P> {
    /// Writes all of `data`; fails with `PeerClosed` if the guest stopped reading.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), HostPipeError> {
        let sleep = OnEvent(&self.space_bell);
        Ok(blocking::write_all(&mut self.tx, &sleep, || self.irq.raise(), data, false).await?)
    }

    pub async fn send_frame(&mut self, payload: &[u8]) -> Result<(), HostPipeError> {
        self.write_all(&frame_to_vec(payload)?).await
    }

    /// Ends the host's writing and tells the guest.
    pub async fn close_write(&mut self) -> Result<(), HostPipeError> {
        self.tx.close().await?;
        self.irq.raise();
        Ok(())
    }
}
