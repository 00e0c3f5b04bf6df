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

/// Every local probe object of one vat, by object number (0 is the bootstrap object when the
/// vat serves one; others are numbered as they are created).
#[derive(Default)]
pub(crate) struct ProbeRegistry {
    objects: BTreeMap<u64, ProbeLog>,
    next_id: u64,
}

impl ProbeRegistry {
    pub(crate) fn logs(&self) -> &BTreeMap<u64, ProbeLog> {
        &self.objects
    }
}

/// Creates a new local probe object and returns a client for it.
pub(crate) fn new_probe(registry: &Rc<RefCell<ProbeRegistry>>) -> probe::Client {
    let id = {
        let mut reg = registry.borrow_mut();
        let id = reg.next_id;
        reg.next_id += 1;
        reg.objects.insert(id, ProbeLog::default());
        id
    };
    capnp_rpc::new_client(ProbeServer {
        id,
        registry: Rc::clone(registry),
    })
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
        let n = self.arrive(Some((params.get_ref(), params.get_seq())));
        let cap = if params.has_arg() {
            params.get_arg()?
        } else {
            new_probe(&self.registry)
        };
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
