//! Our side: our vat (`captp::Vat`), which keeps its state across connections, and its probe
//! application (`rpc/app.rs`), the same one our vats run among themselves; its trace lines
//! and violations go to the judge.

use super::blame::{Evidence, Judge};
use super::{OURS, THEIRS};
use crate::rpc::app::{Acting, Ledger, ProbeApp};
use crate::rpc::link::InFlight;
use captp::wire::encode;
use captp::{Vat, VatConfig};

pub struct OurSide {
    pub vat: Vat,
    pub app: ProbeApp,
}

impl OurSide {
    /// Our vat, connected to capnp-rpc at `epoch`.
    pub fn new(epoch: u32) -> Self {
        let mut vat = Vat::new(OURS, VatConfig::default());
        let app = ProbeApp::new(OURS);
        vat.set_bootstrap(app.bootstrap_object());
        vat.connect(THEIRS, epoch, false);
        OurSide { vat, app }
    }

    /// Our application, acting.
    pub fn acting<'a>(
        &'a mut self,
        ledger: &'a mut Ledger,
        judge: &'a mut Judge,
    ) -> Acting<'a, Judge> {
        Acting {
            vat: &mut self.vat,
            app: &mut self.app,
            ledger,
            journal: judge,
        }
    }

    /// Hands our vat's calls to our application; the judge blames whoever reordered them.
    pub fn take_calls(&mut self, ledger: &mut Ledger, judge: &mut Judge, evidence: &Evidence<'_>) {
        self.acting(ledger, judge)
            .take_calls(None, |ledger, judge, a| {
                judge.arrived(&mut ledger.eorder, evidence, a, OURS);
            });
    }

    /// What our vat sent capnp-rpc, encoded.
    pub fn outgoing(&mut self) -> Vec<InFlight> {
        self.vat
            .take_outgoing()
            .into_iter()
            .filter(|(to, _)| *to == THEIRS)
            .map(|(_, m)| InFlight::new(encode(&m)))
            .collect()
    }

    /// Our vat must track nothing by now (`when` says when, for the message).
    pub fn check_counts(&self, judge: &mut Judge, when: &str) {
        let (nodes, results, calls) = self.vat.live_counts();
        if nodes + results + calls > 0 {
            judge.violation(
                "rpc-quiescence",
                format!(
                    "vat 0 still tracks {nodes} capabilities, {results} results and {calls} \
                     unanswered calls {when}"
                ),
            );
        }
    }
}
