//! The duel: both sides, the link between them, what each said, the applications' shared
//! ledger and the judge, and what moves between them: queuing what both sides sent,
//! delivering one message, and the end of a connection.

use super::action::Action;
use super::blame::{Evidence, Judge, Kind};
use super::link::DuelLink;
use super::ours::OurSide;
use super::theirs::TheirSide;
use super::view::Said;
use super::{OURS, THEIRS, other};
use crate::rpc::app::{Habits, Ledger};
use crate::rpc::link::summary;
use crate::rpc::mix::Mix;
use captp::VatId;
use captp::wire::Message;
use simkit::Ctx;

/// This workload's habits (see `Habits`).
const HABITS: Habits = Habits {
    answer_waits_for_arg: true,
    names_cycles: false,
};

pub struct Duel {
    pub link: DuelLink,
    pub ours: OurSide,
    pub theirs: TheirSide,
    pub said: Said,
    pub ledger: Ledger,
    pub judge: Judge,
    pub mix: Mix<Action>,
    /// The connection's epoch (one per connection).
    pub epoch: u32,
    pub now: u64,
}

impl Duel {
    pub fn new(max_delay: u64) -> Self {
        let epoch = 1;
        Duel {
            link: DuelLink::new(max_delay),
            ours: OurSide::new(epoch),
            theirs: TheirSide::new(),
            said: Said::default(),
            ledger: Ledger::new(HABITS),
            judge: Judge::default(),
            mix: Mix::new(&Action::WEIGHTS, |_| 1),
            epoch,
            now: 0,
        }
    }

    /// Hands our vat's calls to our application.
    fn take_our_calls(&mut self) {
        let evidence = Evidence::new(&self.link, &self.said);
        self.ours
            .take_calls(&mut self.ledger, &mut self.judge, &evidence);
    }

    /// Feeds what reached capnp-rpc's probes to the oracles.
    fn feed_their_arrivals(&mut self) {
        let evidence = Evidence::new(&self.link, &self.said);
        self.theirs
            .feed_arrivals(&mut self.ledger, &mut self.judge, &evidence);
    }

    /// Runs capnp-rpc, hands events to both applications and queues what both sides sent,
    /// each message with a seeded delay (none without a `ctx`).
    pub fn settle(&mut self, ctx: Option<&Ctx>) {
        self.take_our_calls();
        self.theirs.run(&mut self.judge);
        self.feed_their_arrivals();
        let ours = self.ours.outgoing();
        let theirs = self.theirs.outgoing(&mut self.judge);
        for (from, msgs) in [(OURS, ours), (THEIRS, theirs)] {
            for m in msgs {
                if let Ok(msg) = &m.msg {
                    for problem in self.said.sent(from, msg) {
                        self.judge.blame(
                            from,
                            Kind::Wire,
                            format!("vat {from} -> vat {}: {problem}", other(from)),
                        );
                    }
                }
                self.link.queues.send(from, other(from), m, self.now, ctx);
            }
        }
        if self.theirs.panicked() {
            self.reconnect("capnp-rpc panicked");
        }
    }

    /// Senders whose queue head is deliverable now.
    pub fn ready(&self) -> Vec<VatId> {
        self.link
            .queues
            .ready(self.now)
            .into_iter()
            .map(|(from, _)| from)
            .collect()
    }

    /// Delivers the head of `from`'s queue to the other side.
    pub fn deliver(&mut self, from: VatId) {
        let to = other(from);
        let Some(m) = self.link.queues.pop(from, to) else {
            return;
        };
        let (msg, bytes) = match m.open(from, to) {
            Ok(opened) => opened,
            Err(e) => {
                // Ours either way: we sent it, or our decoder refuses the reference's bytes.
                self.judge.violation("rpc-wire", e);
                return;
            }
        };
        let pos = self.link.delivered(from, &msg);
        let line = match &msg {
            Message::Unimplemented(inner) => format!("unimplemented({})", summary(inner)),
            _ => summary(&msg),
        };
        self.judge.note(format!("{from}->{to} {line}"));
        self.said.delivered(from, pos, &msg);
        if let Message::Unimplemented(inner) = &msg {
            // Our vat sends only level-1 messages; a peer that implements level 1 handles them.
            self.judge.blame(
                from,
                Kind::Wire,
                format!(
                    "vat {from} -> vat {to}: answered our {} with Unimplemented",
                    summary(inner)
                ),
            );
        }
        let flagged = self.judge.wire(from, to, &msg);
        if to == OURS {
            let inconsistent = self.said.resolves_hosted_promise(&msg);
            if let Err(e) = self.ours.vat.handle(THEIRS, msg) {
                self.judge.our_abort(&e, flagged || inconsistent);
            }
        } else {
            // It runs now; what it sends is queued by the next `settle`.
            self.theirs.deliver(&mut self.judge, bytes);
            self.feed_their_arrivals();
            if let Some(reason) = self.theirs.abort_reason() {
                self.judge.their_abort(&self.said, &reason, &msg, flagged);
            }
        }
        if self.theirs.panicked() {
            self.reconnect("capnp-rpc panicked");
        } else if !self.ours.vat.is_connected(THEIRS) || self.theirs.is_closed() {
            self.reconnect("aborted");
        }
    }

    /// Ends the connection (both sides see it closed, everything in flight is lost) and makes
    /// a new one at the next epoch, with a new incarnation of capnp-rpc.
    pub fn reconnect(&mut self, why: &str) {
        self.epoch += 1;
        self.judge.note(format!(
            "disconnect 0<->1 ({why}); reconnect at epoch {}",
            self.epoch
        ));
        self.link.queues.cut(OURS, THEIRS);
        self.judge.disconnected();
        self.said = Said::default();
        if self.ours.vat.is_connected(THEIRS) {
            self.ours
                .vat
                .disconnect(THEIRS, "simulated connection loss");
        }
        let evidence = Evidence::new(&self.link, &self.said);
        self.theirs
            .renew(&mut self.ledger, &mut self.judge, &evidence);
        self.ours.vat.connect(THEIRS, self.epoch, false);
        self.take_our_calls();
        let _ = self.ours.vat.take_outgoing();
    }
}
