//! [`CapnpRpcVat`]: one capnp-rpc `RpcSystem` with its executor, driven without I/O.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::pin::Pin;
use std::rc::Rc;

use capnp::capability::RemotePromise;
use capnp_rpc::RpcSystem;

use crate::executor::{Executor, TaskId};
use crate::generated::probe_capnp::probe;
use crate::network::{SimNetwork, VatId, Wire};
use crate::probe::{Arrival, ProbeLog, ProbeRegistry, new_probe, new_probe_with_id};

/// A capability this vat holds: a small number into the driver's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CapHandle(pub u64);

/// An outstanding or finished `Probe.call` this vat made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AnswerHandle(pub u64);

/// The outcome of a call: `n` and the returned `cap`, or the error text capnp-rpc reported.
pub type AnswerOutcome = Result<(u64, CapHandle), String>;

/// A driver action named a handle the driver does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VatError {
    /// The capability was never issued or has been released.
    UnknownCap(CapHandle),
    /// The answer was never issued or has been dropped.
    UnknownAnswer(AnswerHandle),
}

impl fmt::Display for VatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownCap(CapHandle(h)) => write!(f, "unknown capability handle {h}"),
            Self::UnknownAnswer(AnswerHandle(h)) => write!(f, "unknown answer handle {h}"),
        }
    }
}

impl std::error::Error for VatError {}

/// How the connection ended, as capnp-rpc reported it when it shut the connection down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    /// The driver cut the link ([`CapnpRpcVat::disconnect`]).
    pub link_cut: bool,
    /// The error capnp-rpc aborted with (`Display` of `capnp::Error`, e.g.
    /// `"Disconnected: Peer disconnected."`), or `None` if it shut down cleanly or has not yet
    /// run after the link was cut.
    pub abort_reason: Option<String>,
}

type Outcome = Result<(u64, probe::Client), String>;

/// Results that answer tasks delivered and the driver has not handed out yet.
#[derive(Default)]
struct Completions {
    done: BTreeMap<AnswerHandle, Outcome>,
    /// Diagnostic only: the order in which answer tasks finished.
    order: Vec<AnswerHandle>,
}

struct Answer {
    task: TaskId,
    pipeline: probe::call_results::Pipeline,
    outcome: Option<AnswerOutcome>,
}

/// One Cap'n Proto vat run by the reference `capnp-rpc` crate, connected to exactly one peer
/// through a message-level network the driver controls.
///
/// The driver delivers incoming messages with [`deliver`](Self::deliver), lets the vat work with
/// [`run_until_stalled`](Self::run_until_stalled), and collects what it sent with
/// [`take_outgoing`](Self::take_outgoing). Application actions (`bootstrap`, `call`, ...) only
/// queue work or send messages; nothing runs between driver calls.
pub struct CapnpRpcVat {
    exec: Executor,
    wire: Rc<RefCell<Wire>>,
    rpc: Rc<RefCell<RpcSystem<VatId>>>,
    system_result: Rc<RefCell<Option<Result<(), String>>>>,
    probes: Rc<RefCell<ProbeRegistry>>,
    caps: BTreeMap<CapHandle, probe::Client>,
    answers: BTreeMap<AnswerHandle, Answer>,
    completions: Rc<RefCell<Completions>>,
    next_cap: u64,
    next_answer: u64,
}

impl CapnpRpcVat {
    /// A vat whose bootstrap capability is a local `Probe` (object 0) when `bootstrap`, else
    /// none (the peer's `Bootstrap` is then answered with an exception).
    pub fn new(bootstrap: bool) -> Self {
        let probes = Rc::new(RefCell::new(ProbeRegistry::default()));
        let wire = Rc::new(RefCell::new(Wire::default()));
        let bootstrap_cap = bootstrap.then(|| new_probe(&probes).client);
        let network = SimNetwork::new(Rc::clone(&wire));
        let rpc = Rc::new(RefCell::new(RpcSystem::new(
            Box::new(network),
            bootstrap_cap,
        )));
        let system_result = Rc::new(RefCell::new(None));
        let mut exec = Executor::default();
        {
            let rpc = Rc::clone(&rpc);
            let system_result = Rc::clone(&system_result);
            exec.spawn(async move {
                let result =
                    futures::future::poll_fn(|cx| Pin::new(&mut *rpc.borrow_mut()).poll(cx)).await;
                *system_result.borrow_mut() = Some(result.map_err(|e| e.to_string()));
            });
        }
        Self {
            exec,
            wire,
            rpc,
            system_result,
            probes,
            caps: BTreeMap::new(),
            answers: BTreeMap::new(),
            completions: Rc::new(RefCell::new(Completions::default())),
            next_cap: 0,
            next_answer: 0,
        }
    }

    /// Queues one incoming message (a framed Cap'n Proto message). It is parsed, with bounded
    /// reader options, when capnp-rpc reads it; a malformed one makes capnp-rpc abort the
    /// connection. Messages delivered after the connection closed are dropped.
    pub fn deliver(&mut self, bytes: Vec<u8>) {
        self.wire.borrow_mut().deliver(bytes);
    }

    /// Polls every task that can make progress, in wake order, until none can. Returns the
    /// number of task polls (a measure of work, deterministic for a given history).
    pub fn run_until_stalled(&mut self) -> u64 {
        self.exec.run_until_stalled()
    }

    /// The framed messages this vat sent since the last call, oldest first.
    pub fn take_outgoing(&mut self) -> Vec<Vec<u8>> {
        self.wire.borrow_mut().take_outgoing()
    }

    fn add_cap(&mut self, client: probe::Client) -> CapHandle {
        let handle = CapHandle(self.next_cap);
        self.next_cap += 1;
        self.caps.insert(handle, client);
        handle
    }

    fn cap(&self, cap: CapHandle) -> Result<&probe::Client, VatError> {
        self.caps.get(&cap).ok_or(VatError::UnknownCap(cap))
    }

    /// The peer's bootstrap capability. Each call sends a new `Bootstrap` message; once the
    /// connection is closed it returns a broken capability instead.
    pub fn bootstrap(&mut self) -> CapHandle {
        let client = if self.is_closed() {
            capnp_rpc::new_future_client::<probe::Client>(futures::future::ready(Err(
                capnp::Error::disconnected("the connection is closed".to_string()),
            )))
        } else {
            self.rpc
                .borrow_mut()
                .bootstrap::<probe::Client>(VatId::Peer)
        };
        self.add_cap(client)
    }

    /// A new local `Probe` object, for passing to the peer as a call's `arg`.
    pub fn local_probe(&mut self) -> CapHandle {
        self.local_probe_with_id().0
    }

    /// [`local_probe`](Self::local_probe), also giving the new object's number (as in
    /// [`arrivals`](Self::arrivals)).
    pub fn local_probe_with_id(&mut self) -> (CapHandle, u64) {
        let (id, client) = new_probe_with_id(&self.probes);
        (self.add_cap(client), id)
    }

    /// Calls `Probe.call(ref, seq, arg)` on `cap`. The `Call` message is sent now (or queued
    /// inside capnp-rpc if `cap` is an unresolved local promise).
    pub fn call(
        &mut self,
        cap: CapHandle,
        ref_id: u64,
        seq: u64,
        arg: Option<CapHandle>,
    ) -> Result<AnswerHandle, VatError> {
        let arg = arg.map(|a| self.cap(a).cloned()).transpose()?;
        let mut request = self.cap(cap)?.call_request();
        {
            let mut params = request.get();
            params.set_ref(ref_id);
            params.set_seq(seq);
            if let Some(arg) = arg {
                params.set_arg(arg);
            }
        }
        let RemotePromise { promise, pipeline } = request.send();
        let handle = AnswerHandle(self.next_answer);
        self.next_answer += 1;
        let completions = Rc::clone(&self.completions);
        let task = self.exec.spawn(async move {
            let outcome = match promise.await {
                Ok(response) => response
                    .get()
                    .and_then(|results| Ok((results.get_n(), results.get_cap()?)))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let mut completions = completions.borrow_mut();
            completions.done.insert(handle, outcome);
            completions.order.push(handle);
        });
        self.answers.insert(
            handle,
            Answer {
                task,
                pipeline,
                outcome: None,
            },
        );
        Ok(handle)
    }

    /// The `cap` field of `answer`'s results as a pipelined promise (usable before the answer
    /// returns). Each call makes a new handle.
    pub fn pipeline_cap(&mut self, answer: AnswerHandle) -> Result<CapHandle, VatError> {
        let client = self
            .answers
            .get(&answer)
            .ok_or(VatError::UnknownAnswer(answer))?
            .pipeline
            .get_cap();
        Ok(self.add_cap(client))
    }

    /// Drops this handle's reference (capnp-rpc sends `Release` when the last reference to an
    /// import goes).
    pub fn release(&mut self, cap: CapHandle) -> Result<(), VatError> {
        self.caps
            .remove(&cap)
            .map(drop)
            .ok_or(VatError::UnknownCap(cap))
    }

    /// Forgets `answer`: cancels the wait for its results and drops its pipeline, so capnp-rpc
    /// sends `Finish` (once nothing else refers to the question). Capabilities already taken
    /// from it stay valid.
    pub fn drop_answer(&mut self, answer: AnswerHandle) -> Result<(), VatError> {
        let entry = self
            .answers
            .remove(&answer)
            .ok_or(VatError::UnknownAnswer(answer))?;
        self.exec.cancel(entry.task);
        // Dropped after the borrow ends: dropping a client can run capnp-rpc code.
        let unclaimed = self.completions.borrow_mut().done.remove(&answer);
        drop(unclaimed);
        drop(entry);
        Ok(())
    }

    /// The outcome of `answer` if it has returned. The first time a successful outcome is
    /// seen its `cap` gets a new handle; later polls return the same handle.
    pub fn poll_answer(&mut self, answer: AnswerHandle) -> Result<Option<AnswerOutcome>, VatError> {
        let entry = self
            .answers
            .get(&answer)
            .ok_or(VatError::UnknownAnswer(answer))?;
        if let Some(outcome) = &entry.outcome {
            return Ok(Some(outcome.clone()));
        }
        let Some(outcome) = self.completions.borrow_mut().done.remove(&answer) else {
            return Ok(None);
        };
        let outcome = match outcome {
            Ok((n, client)) => Ok((n, self.add_cap(client))),
            Err(e) => Err(e),
        };
        if let Some(entry) = self.answers.get_mut(&answer) {
            entry.outcome = Some(outcome.clone());
        }
        Ok(Some(outcome))
    }

    /// Cuts the link, as a network failure would: queued incoming messages are discarded,
    /// capnp-rpc sees the end of the stream on its next run, and everything it sends from now
    /// on (including its own `Abort`) is dropped.
    pub fn disconnect(&mut self) {
        self.wire.borrow_mut().cut_link();
    }

    /// Asks capnp-rpc to close the connection itself (its `Disconnector`): on the next run it
    /// rejects everything outstanding and sends an `Abort` ("client requested disconnect").
    pub fn shutdown(&mut self) {
        let disconnector = self.rpc.borrow().get_disconnector();
        self.exec.spawn(async move {
            // The result only repeats what the wire records as the shutdown reason.
            let _ = disconnector.await;
        });
    }

    /// Whether the link was cut or capnp-rpc shut the connection down.
    pub fn is_closed(&self) -> bool {
        let wire = self.wire.borrow();
        wire.link_down() || wire.shutdown().is_some()
    }

    /// How the connection ended, if it has.
    pub fn closed(&self) -> Option<Closed> {
        let wire = self.wire.borrow();
        if !wire.link_down() && wire.shutdown().is_none() {
            return None;
        }
        Some(Closed {
            link_cut: wire.link_down(),
            abort_reason: match wire.shutdown() {
                Some(Err(e)) => Some(e.to_string()),
                _ => None,
            },
        })
    }

    /// The error capnp-rpc shut the connection down with, if it did.
    pub fn abort_reason(&self) -> Option<String> {
        self.closed().and_then(|c| c.abort_reason)
    }

    /// How the `RpcSystem` future ended, if it has (it ends once the connection shuts down).
    pub fn system_result(&self) -> Option<Result<(), String>> {
        self.system_result.borrow().clone()
    }

    /// Messages dropped because they were delivered or sent after the connection closed.
    pub fn dropped_messages(&self) -> u64 {
        self.wire.borrow().dropped()
    }

    /// For each local probe object (by object number, 0 = the bootstrap object if served), the
    /// `(ref, seq)` of each `call` that reached it, in arrival order.
    pub fn arrivals(&self) -> BTreeMap<u64, Vec<(u64, u64)>> {
        self.probes
            .borrow()
            .logs()
            .iter()
            .map(|(id, log)| (*id, log.calls.clone()))
            .collect()
    }

    /// Every `call` that reached any local probe object, in arrival order, from the
    /// `start`-th one on, each with what the object answered (its `arg` or a new probe object,
    /// by number). An outside oracle can follow the returned capabilities with this.
    pub fn arrival_log(&self, start: usize) -> Vec<Arrival> {
        self.probes
            .borrow()
            .arrival_log()
            .get(start..)
            .map(<[Arrival]>::to_vec)
            .unwrap_or_default()
    }

    /// Everything each local probe object saw (calls and the count of all arrivals).
    pub fn probe_logs(&self) -> BTreeMap<u64, ProbeLog> {
        self.probes.borrow().logs().clone()
    }

    /// Capability handles currently held, in handle order.
    pub fn cap_handles(&self) -> Vec<CapHandle> {
        self.caps.keys().copied().collect()
    }

    /// Answer handles currently held, in handle order.
    pub fn answer_handles(&self) -> Vec<AnswerHandle> {
        self.answers.keys().copied().collect()
    }

    /// Diagnostic only, not for oracles: the order in which answers' results reached this
    /// driver inside the executor. After a disconnect this order can follow capnp-rpc's
    /// `HashMap` iteration (see the crate docs); the driver's surface never exposes it.
    #[doc(hidden)]
    pub fn diagnostic_completion_order(&self) -> Vec<AnswerHandle> {
        self.completions.borrow().order.clone()
    }
}
