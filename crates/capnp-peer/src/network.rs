//! A message-level [`capnp_rpc::VatNetwork`]: one connection whose every outgoing RPC message is
//! framed into one byte vector in an outbox, and whose incoming messages are byte vectors that
//! the driver pushes. Nothing here reads a socket, a clock or a random number.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use capnp::Error;
use capnp::capability::Promise;
use capnp::message::{Builder, HeapAllocator, ReaderOptions};
use capnp::serialize::OwnedSegments;

/// The identity of a vat on our network: a vat only ever talks to its one peer, so
/// [`VatId::Peer`] is the only remote identity, and [`VatId::Local`] names the vat itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VatId {
    /// This vat: `RpcSystem::bootstrap(VatId::Local)` returns the local bootstrap capability.
    Local,
    /// The other end of the connection.
    Peer,
}

/// The largest incoming message we parse, in 8-byte words (8 MiB). Also the traversal limit.
pub const MAX_MESSAGE_WORDS: usize = 1 << 20;

/// The reader options every incoming message is parsed with: bounded size and nesting.
pub fn reader_options() -> ReaderOptions {
    let mut options = ReaderOptions::new();
    options
        .traversal_limit_in_words(Some(MAX_MESSAGE_WORDS))
        .nesting_limit(64);
    options
}

/// Parses one framed message (segment table plus segments) that must fill `bytes` exactly.
pub fn parse_message(bytes: &[u8]) -> Result<capnp::message::Reader<OwnedSegments>, Error> {
    if bytes.len() > (MAX_MESSAGE_WORDS + 1024) * 8 {
        return Err(Error::failed(format!(
            "incoming message of {} bytes is over the limit",
            bytes.len()
        )));
    }
    let mut rest = bytes;
    let message = capnp::serialize::read_message(&mut rest, reader_options())?;
    if !rest.is_empty() {
        return Err(Error::failed(format!(
            "{} bytes after the end of the message",
            rest.len()
        )));
    }
    Ok(message)
}

/// The state shared by the network, its connection handles and the driver.
#[derive(Default)]
pub(crate) struct Wire {
    /// Messages the driver delivered that capnp-rpc has not read yet.
    inbox: VecDeque<Vec<u8>>,
    /// Framed messages capnp-rpc sent, oldest first, until the driver takes them.
    outbox: Vec<Vec<u8>>,
    /// The message loop waiting for the next incoming message.
    receiver: Option<Waker>,
    /// The driver cut the link: reads see the end of the stream and sends are dropped.
    link_down: bool,
    /// capnp-rpc shut the connection down, with the error it aborted with (if any).
    shutdown: Option<Result<(), Error>>,
    /// `drive_until_shutdown` waiting for the shutdown.
    shutdown_waiter: Option<Waker>,
    /// Messages dropped because the link was down or the connection shut.
    dropped: u64,
}

impl Wire {
    pub(crate) fn deliver(&mut self, bytes: Vec<u8>) {
        if self.link_down || self.shutdown.is_some() {
            self.dropped += 1;
            return;
        }
        self.inbox.push_back(bytes);
        if let Some(waker) = self.receiver.take() {
            waker.wake();
        }
    }

    pub(crate) fn take_outgoing(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.outbox)
    }

    pub(crate) fn cut_link(&mut self) {
        self.link_down = true;
        self.inbox.clear();
        if let Some(waker) = self.receiver.take() {
            waker.wake();
        }
    }

    pub(crate) fn link_down(&self) -> bool {
        self.link_down
    }

    pub(crate) fn shutdown(&self) -> Option<&Result<(), Error>> {
        self.shutdown.as_ref()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    fn send(&mut self, message: &Builder<HeapAllocator>) -> Result<(), Error> {
        if self.link_down || self.shutdown.is_some() {
            self.dropped += 1;
            return Ok(());
        }
        let mut bytes = Vec::new();
        capnp::serialize::write_message(&mut bytes, message)?;
        self.outbox.push(bytes);
        Ok(())
    }
}

/// Our [`capnp_rpc::VatNetwork`]: one connection to [`VatId::Peer`].
pub(crate) struct SimNetwork {
    wire: Rc<RefCell<Wire>>,
    /// The handle `accept` hands out once (like the two-party network).
    unaccepted: Option<SimConnection>,
}

impl SimNetwork {
    pub(crate) fn new(wire: Rc<RefCell<Wire>>) -> Self {
        Self {
            unaccepted: Some(SimConnection {
                wire: Rc::clone(&wire),
            }),
            wire,
        }
    }
}

impl capnp_rpc::VatNetwork<VatId> for SimNetwork {
    fn connect(&mut self, host_id: VatId) -> Option<Box<dyn capnp_rpc::Connection<VatId>>> {
        match host_id {
            VatId::Local => None,
            VatId::Peer => Some(Box::new(SimConnection {
                wire: Rc::clone(&self.wire),
            })),
        }
    }

    fn accept(&mut self) -> Promise<Box<dyn capnp_rpc::Connection<VatId>>, Error> {
        match self.unaccepted.take() {
            Some(connection) => {
                Promise::ok(Box::new(connection) as Box<dyn capnp_rpc::Connection<VatId>>)
            }
            None => Promise::from_future(futures::future::pending()),
        }
    }

    fn drive_until_shutdown(&mut self) -> Promise<(), Error> {
        Promise::from_future(ShutdownFuture {
            wire: Rc::clone(&self.wire),
        })
    }
}

/// Resolves once capnp-rpc has shut the connection down, which ends the `RpcSystem`.
struct ShutdownFuture {
    wire: Rc<RefCell<Wire>>,
}

impl Future for ShutdownFuture {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut wire = self.wire.borrow_mut();
        if wire.shutdown.is_some() {
            Poll::Ready(Ok(()))
        } else {
            wire.shutdown_waiter = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// A handle on the one connection.
struct SimConnection {
    wire: Rc<RefCell<Wire>>,
}

impl capnp_rpc::Connection<VatId> for SimConnection {
    fn get_peer_vat_id(&self) -> VatId {
        VatId::Peer
    }

    fn new_outgoing_message(
        &mut self,
        first_segment_word_size: u32,
    ) -> Box<dyn capnp_rpc::OutgoingMessage> {
        Box::new(SimOutgoing {
            message: Builder::new(
                HeapAllocator::new().first_segment_words(first_segment_word_size),
            ),
            wire: Rc::clone(&self.wire),
        })
    }

    fn receive_incoming_message(
        &mut self,
    ) -> Promise<Option<Box<dyn capnp_rpc::IncomingMessage>>, Error> {
        Promise::from_future(ReceiveFuture {
            wire: Rc::clone(&self.wire),
        })
    }

    fn shutdown(&mut self, result: capnp::Result<()>) -> Promise<(), Error> {
        let mut wire = self.wire.borrow_mut();
        if wire.shutdown.is_none() {
            wire.shutdown = Some(result);
        }
        wire.inbox.clear();
        if let Some(waker) = wire.shutdown_waiter.take() {
            waker.wake();
        }
        Promise::ok(())
    }
}

/// Waits for the driver to deliver the next message, then parses it.
struct ReceiveFuture {
    wire: Rc<RefCell<Wire>>,
}

impl Future for ReceiveFuture {
    type Output = Result<Option<Box<dyn capnp_rpc::IncomingMessage>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut wire = self.wire.borrow_mut();
        if wire.link_down {
            // The end of the stream: capnp-rpc disconnects with "Peer disconnected.".
            return Poll::Ready(Ok(None));
        }
        if wire.shutdown.is_some() {
            return Poll::Ready(Err(Error::disconnected(
                "the connection was shut down".to_string(),
            )));
        }
        match wire.inbox.pop_front() {
            Some(bytes) => Poll::Ready(parse_message(&bytes).map(|message| {
                Some(Box::new(SimIncoming { message }) as Box<dyn capnp_rpc::IncomingMessage>)
            })),
            None => {
                wire.receiver = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

struct SimIncoming {
    message: capnp::message::Reader<OwnedSegments>,
}

impl capnp_rpc::IncomingMessage for SimIncoming {
    fn get_body(&self) -> capnp::Result<capnp::any_pointer::Reader<'_>> {
        self.message.get_root()
    }
}

struct SimOutgoing {
    message: Builder<HeapAllocator>,
    wire: Rc<RefCell<Wire>>,
}

impl capnp_rpc::OutgoingMessage for SimOutgoing {
    fn get_body(&mut self) -> capnp::Result<capnp::any_pointer::Builder<'_>> {
        self.message.get_root()
    }

    fn get_body_as_reader(&self) -> capnp::Result<capnp::any_pointer::Reader<'_>> {
        self.message.get_root_as_reader()
    }

    fn send(self: Box<Self>) -> (Promise<(), Error>, Rc<Builder<HeapAllocator>>) {
        let Self { message, wire } = *self;
        // The message is framed the moment capnp-rpc sends it, so the outbox order is the
        // order of `send` calls.
        let sent = wire.borrow_mut().send(&message);
        let promise = match sent {
            Ok(()) => Promise::ok(()),
            Err(e) => Promise::err(e),
        };
        (promise, Rc::new(message))
    }

    fn take(self: Box<Self>) -> Builder<HeapAllocator> {
        self.message
    }

    fn size_in_words(&self) -> usize {
        self.message.size_in_words()
    }
}
