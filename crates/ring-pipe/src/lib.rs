//! Ring pipes between a guest kernel and a host monitor: shared-memory SPSC byte rings, a
//! length-prefixed frame codec, and the control and data-pipe messages.
//!
//! `no_std` (with `alloc`): the same code runs in the bare-metal guest, in the host monitor and
//! in the simulator. Shared memory is reached only through [`SharedMemory`], whose simulated
//! binding makes every access a scheduling point of the memory model.
//!
//! The host treats the guest as hostile: every cursor and length read from shared memory or
//! decoded from a frame is checked, and every failure is a typed error.
#![no_std]

extern crate alloc;

pub mod frame;
pub mod mem;
pub mod msg;
pub mod ring;

pub use frame::{FrameDecoder, FrameError, MAX_FRAME_LEN, encode_frame};
pub use mem::{MemFault, SharedMemory};
pub use ring::{Consumer, HEADER_LEN, Producer, RingError, RingLayout, planted};
