//! The local `Probe` objects of a vat: each records the calls that reach it, in arrival order.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::generated::probe_capnp::probe;

/// What one local probe object has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeLog {
    /// `(ref, seq)` of each `call` in the order the calls arrived.
    pub calls: Vec<(u64, u64)>,
    /// How many calls of either method arrived (what `getCallSequence` reports).
    pub total: u64,
}

/// What a local probe object answered a `call` with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    /// The call's `arg`, returned as `cap`.
    Arg,
    /// A new local probe object (by object number), made for this call and returned as `cap`.
    Fresh(u64),
    /// The call failed after it arrived (its `arg` could not be read).
    Failed,
}

/// One `call` that reached a local probe object, in the order calls arrived at all of this
/// vat's objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// The object number of the probe it reached.
    pub object: u64,
    pub ref_id: u64,
    pub seq: u64,
    pub answered: Answered,
}

/// Every local probe object of one vat, by object number (0 is the bootstrap object when the
/// vat serves one; others are numbered as they are created).
#[derive(Default)]
pub(crate) struct ProbeRegistry {
    objects: BTreeMap<u64, ProbeLog>,
    /// Every `call` arrival at any object, in arrival order.
    arrivals: Vec<Arrival>,
    next_id: u64,
}

impl ProbeRegistry {
    pub(crate) fn logs(&self) -> &BTreeMap<u64, ProbeLog> {
        &self.objects
    }

    pub(crate) fn arrival_log(&self) -> &[Arrival] {
        &self.arrivals
    }
}

/// Creates a new local probe object and returns a client for it.
pub(crate) fn new_probe(registry: &Rc<RefCell<ProbeRegistry>>) -> probe::Client {
    new_probe_with_id(registry).1
}

/// Creates a new local probe object and returns its object number and a client for it.
pub(crate) fn new_probe_with_id(registry: &Rc<RefCell<ProbeRegistry>>) -> (u64, probe::Client) {
    let id = {
        let mut reg = registry.borrow_mut();
        let id = reg.next_id;
        reg.next_id += 1;
        reg.objects.insert(id, ProbeLog::default());
        id
    };
    let client = capnp_rpc::new_client(ProbeServer {
        id,
        registry: Rc::clone(registry),
    });
    (id, client)
}

struct ProbeServer {
    id: u64,
    registry: Rc<RefCell<ProbeRegistry>>,
}

impl ProbeServer {
    /// Counts one arrival and returns how many arrived before it.
    fn arrive(&self, call: Option<(u64, u64)>) -> u64 {
        let mut reg = self.registry.borrow_mut();
        let log = reg.objects.entry(self.id).or_default();
        let before = log.total;
        log.total += 1;
        if let Some(call) = call {
            log.calls.push(call);
        }
        before
    }
}

impl probe::Server for ProbeServer {
    async fn call(
        self: Rc<Self>,
        params: probe::CallParams,
        mut results: probe::CallResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let (ref_id, seq) = (params.get_ref(), params.get_seq());
        let n = self.arrive(Some((ref_id, seq)));
        let (answered, cap) = if params.has_arg() {
            match params.get_arg() {
                Ok(arg) => (Answered::Arg, Ok(arg)),
                Err(e) => (Answered::Failed, Err(e)),
            }
        } else {
            let (id, client) = new_probe_with_id(&self.registry);
            (Answered::Fresh(id), Ok(client))
        };
        self.registry.borrow_mut().arrivals.push(Arrival {
            object: self.id,
            ref_id,
            seq,
            answered,
        });
        let cap = cap?;
        let mut out = results.get();
        out.set_n(n);
        out.set_cap(cap);
        Ok(())
    }

    async fn get_call_sequence(
        self: Rc<Self>,
        _params: probe::GetCallSequenceParams,
        mut results: probe::GetCallSequenceResults,
    ) -> Result<(), capnp::Error> {
        let before = self.arrive(None);
        results
            .get()
            .set_n(u32::try_from(before).unwrap_or(u32::MAX));
        Ok(())
    }
}
