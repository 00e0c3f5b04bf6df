//! The blocking protocol over a non-blocking ring, shared by the guest's and the host's pipe
//! ends: try the transfer; on `WouldBlock` announce the wait (the ring's suppression handshake),
//! re-check, and sleep until the peer signals; after progress, signal the peer if it waits.
//! Only how a side sleeps differs: the guest halts on an interrupt line (with a ticket taken
//! before the check), the host waits on an eventfd (whose count already latches early rings).

use crate::{EventWaiter, IrqWaiter};
use core::future::Future;
use ring_pipe::{Consumer, Producer, RingError, SharedMemory};

/// How one side sleeps until the other signals.
pub trait Sleep {
    type Ticket: Copy;
    /// Taken before checking the condition the sleep waits for.
    fn ticket(&self) -> Self::Ticket;
    fn sleep(&self, ticket: Self::Ticket) -> impl Future<Output = ()>;
}

/// Sleeping on an interrupt line (the guest).
pub struct OnIrq<'a, I>(pub &'a I);

impl<I: IrqWaiter> Sleep for OnIrq<'_, I> {
    type Ticket = u64;
    fn ticket(&self) -> u64 {
        self.0.ticket()
    }
    fn sleep(&self, ticket: u64) -> impl Future<Output = ()> {
        self.0.wait(ticket)
    }
}

/// Sleeping on an eventfd (the host).
pub struct OnEvent<'a, W>(pub &'a W);

impl<W: EventWaiter> Sleep for OnEvent<'_, W> {
    type Ticket = ();
    fn ticket(&self) {}
    async fn sleep(&self, _: ()) {
        // A count of 0 is a spurious wake-up; the caller re-checks either way.
        self.0.wait().await;
    }
}

/// Reads at least one byte, sleeping while the ring is empty; `Ok(0)` at end of stream.
pub async fn read<M: SharedMemory>(
    rx: &mut Consumer<M>,
    sleep: &impl Sleep,
    wake_writer: impl Fn(),
    buf: &mut [u8],
) -> Result<usize, RingError> {
    if buf.is_empty() {
        return Ok(0);
    }
    loop {
        let ticket = sleep.ticket();
        match rx.try_read(buf).await {
            Ok(n) => {
                if n > 0 && rx.writer_wants_wake().await? {
                    wake_writer();
                }
                return Ok(n);
            }
            Err(RingError::WouldBlock) => {
                if rx.prepare_wait().await? {
                    sleep.sleep(ticket).await;
                }
                rx.end_wait().await?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes all of `data`, sleeping while the ring is full. `spin_on_dead_reader` is a planted
/// bug: a closed reader is treated like a full ring and retried forever.
pub async fn write_all<M: SharedMemory>(
    tx: &mut Producer<M>,
    sleep: &impl Sleep,
    wake_reader: impl Fn(),
    mut data: &[u8],
    spin_on_dead_reader: bool,
) -> Result<(), RingError> {
    while !data.is_empty() {
        let ticket = sleep.ticket();
        match tx.try_write(data).await {
            Ok(n) => {
                data = &data[n..];
                if tx.reader_wants_wake().await? {
                    wake_reader();
                }
            }
            Err(RingError::WouldBlock) => sleep_for_space(tx, sleep, ticket).await?,
            Err(RingError::PeerClosed) if spin_on_dead_reader => {
                sleep_for_space(tx, sleep, ticket).await?
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn sleep_for_space<M: SharedMemory, S: Sleep>(
    tx: &mut Producer<M>,
    sleep: &S,
    ticket: S::Ticket,
) -> Result<(), RingError> {
    if tx.prepare_wait().await? {
        sleep.sleep(ticket).await;
    }
    tx.end_wait().await
}

/// The next frame from a byte stream, reading through `read` (in chunks of `buf`) into `frames`
/// as needed; `None` at a clean end of stream (no partial frame left over).
pub async fn recv_frame<E: From<ring_pipe::FrameError>>(
    frames: &mut ring_pipe::FrameDecoder,
    buf: &mut [u8],
    mut read: impl AsyncFnMut(&mut [u8]) -> Result<usize, E>,
) -> Result<Option<alloc::vec::Vec<u8>>, E> {
    loop {
        if let Some(frame) = frames.next_frame()? {
            return Ok(Some(frame));
        }
        match read(buf).await? {
            0 => {
                frames.finish()?;
                return Ok(None);
            }
            n => frames.push(&buf[..n]),
        }
    }
}
