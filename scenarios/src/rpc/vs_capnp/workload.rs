//! The duel's workload: each step one action by one side, drawn from the decision source;
//! at the end the network is drained, every call answered, everything given back on both
//! sides and the network drained again, then quiescence is judged.

use super::action::Action;
use super::blame::{Judge, Kind};
use super::duel::Duel;
use super::theirs::TheirActing;
use super::{OURS, THEIRS};
use crate::rpc::app::{Acting, Answer, SLOTS};
use captp::VatId;
use simkit::Ctx;

/// The answer drawn as `how` (in `0..6`).
fn answer_kind(how: u64) -> Answer {
    match how {
        0 | 1 => Answer::Argument,
        2 => Answer::Held,
        3 => Answer::Follow,
        4 => Answer::TailCall,
        _ => Answer::Exception,
    }
}

/// One of `filled`, drawn from the decision source.
fn pick(ctx: &Ctx, filled: &[usize]) -> Option<usize> {
    if filled.is_empty() {
        return None;
    }
    filled
        .get(ctx.choose(filled.len() as u64) as usize)
        .copied()
}

impl Duel {
    /// Our application, acting.
    fn our_app(&mut self) -> Acting<'_, Judge> {
        self.ours.acting(&mut self.ledger, &mut self.judge)
    }

    /// capnp-rpc's driver, acting.
    fn their_app(&mut self) -> TheirActing<'_> {
        self.theirs.acting(&mut self.ledger, &mut self.judge)
    }

    /// One of `side`'s filled capability slots, if it has any.
    fn pick_cap(&self, ctx: &Ctx, side: VatId) -> Option<usize> {
        if side == OURS {
            pick(ctx, &self.ours.app.caps.filled())
        } else {
            pick(ctx, &self.theirs.filled_caps())
        }
    }

    /// One of `side`'s filled answer slots, if it has any.
    fn pick_answer(&self, ctx: &Ctx, side: VatId) -> Option<usize> {
        if side == OURS {
            pick(ctx, &self.ours.app.answers.filled())
        } else {
            pick(ctx, &self.theirs.filled_answers())
        }
    }

    /// `side` calls the capability in `slot`, with the one in `arg` (if any).
    fn call(&mut self, side: VatId, slot: usize, arg: Option<usize>, answer_slot: usize) {
        if side == OURS {
            self.our_app().call(slot, arg, answer_slot);
        } else {
            self.their_app().call(slot, arg, answer_slot);
        }
    }

    /// `side` pipelines on the answer in `slot`, keeping the capability in `into`.
    fn pipeline(&mut self, side: VatId, slot: usize, into: usize) {
        if side == OURS {
            self.our_app().pipeline(slot, into);
        } else {
            self.their_app().pipeline(slot, into);
        }
    }

    /// `side` takes the capability out of the returned answer in `slot`.
    fn take(&mut self, side: VatId, slot: usize, into: usize) {
        if side == OURS {
            self.our_app().take(slot, into);
        } else {
            self.their_app().take(slot, into);
        }
    }

    /// `side` releases the capability in `slot`.
    fn release_cap(&mut self, side: VatId, slot: usize) {
        if side == OURS {
            self.our_app().release(slot);
        } else {
            self.theirs.release_slot(&mut self.judge, slot);
        }
    }

    /// `side` finishes (drops) the answer in `slot`.
    fn finish_answer(&mut self, side: VatId, slot: usize) {
        if side == OURS {
            self.our_app().finish(slot);
        } else {
            self.theirs.drop_slot(&mut self.judge, slot);
        }
    }

    /// One workload step: an action by one side, then everything sent is queued.
    pub fn step(&mut self, ctx: &Ctx) {
        let side = ctx.choose(2) as VatId;
        // Where a new capability or answer goes (overwriting gives back the old one).
        let into = ctx.choose(SLOTS as u64) as usize;
        match self.mix.draw(ctx).unwrap_or(Action::Deliver) {
            Action::Deliver => {
                let ready = self.ready();
                if let Some(&from) = ready.get(ctx.choose(ready.len().max(1) as u64) as usize) {
                    self.deliver(from);
                }
            }
            Action::Call => {
                if let Some(slot) = self.pick_cap(ctx, side) {
                    let arg = if ctx.chance(1, 3) {
                        self.pick_cap(ctx, side).filter(|&a| a != slot)
                    } else {
                        None
                    };
                    self.call(side, slot, arg, into);
                    if ctx.chance(1, 2) {
                        let to = ctx.choose(SLOTS as u64) as usize;
                        self.pipeline(side, into, to);
                    }
                }
            }
            Action::Pipeline => {
                if let Some(slot) = self.pick_answer(ctx, side) {
                    self.pipeline(side, slot, into);
                }
            }
            Action::Answer if side == OURS => {
                let index = ctx.choose(4) as usize;
                let how = ctx.choose(6);
                let slot = if how == 3 {
                    self.pick_answer(ctx, OURS)
                } else {
                    self.pick_cap(ctx, OURS)
                };
                self.our_app()
                    .answer(index, answer_kind(how), slot.unwrap_or(0));
            }
            Action::Answer | Action::Take => {
                if let Some(slot) = self.pick_answer(ctx, side) {
                    self.take(side, slot, into);
                }
            }
            Action::Release => {
                if let Some(slot) = self.pick_cap(ctx, side) {
                    self.release_cap(side, slot);
                }
            }
            Action::Finish => {
                if let Some(slot) = self.pick_answer(ctx, side) {
                    self.finish_answer(side, slot);
                }
            }
            Action::Bootstrap => {
                if side == OURS {
                    let object = self.theirs.object(0);
                    let mut a = self.our_app();
                    let (answer, shadow) = a.bootstrap(THEIRS, object, into);
                    if ctx.chance(1, 2) {
                        // Keep the bootstrap answer too (its results hold the capability).
                        let slot = ctx.choose(SLOTS as u64) as usize;
                        a.keep_bootstrap(slot, answer, shadow);
                    } else {
                        a.vat.finish(answer);
                    }
                } else {
                    let ours = self.ours.app.bootstrap_object();
                    self.their_app().bootstrap(ours, into);
                }
            }
            Action::CallWithProbe => {
                if let Some(slot) = self.pick_cap(ctx, side) {
                    let arg = (0..SLOTS)
                        .map(|i| (into + i) % SLOTS)
                        .find(|&i| i != slot)
                        .unwrap_or(into);
                    if side == OURS {
                        let mut a = self.our_app();
                        let (cap, shadow) = a.fresh_object();
                        a.store_cap(arg, cap, shadow, format_args!("a fresh local probe"));
                        a.call(slot, Some(arg), into);
                    } else {
                        self.their_app().call_with_probe(slot, arg, into);
                    }
                }
            }
            Action::Fault => {
                if ctx.chance(1, 4) {
                    self.reconnect("connection lost");
                }
            }
        }
        self.settle(Some(ctx));
        if let Some(reason) = self.theirs.abort_reason() {
            // Not on a message of ours (a driver action): capnp-rpc's own doing.
            self.judge.finding(
                Kind::Abort,
                format!("capnp-rpc aborted the connection on its own: {reason}"),
            );
            self.reconnect("aborted");
        }
        self.now += 1_000;
        self.judge.flush(ctx);
    }

    /// Drains the network and answers every call, gives back everything on both sides and
    /// drains again. Returns false if it could not get quiet.
    fn quiesce(&mut self, ctx: &Ctx) -> bool {
        for phase in 0..2 {
            if phase == 1 {
                for slot in 0..SLOTS {
                    for side in [OURS, THEIRS] {
                        self.release_cap(side, slot);
                        self.finish_answer(side, slot);
                    }
                }
                self.settle(None);
            }
            let mut rounds = 0;
            loop {
                rounds += 1;
                if rounds > 100_000 {
                    return false;
                }
                if let Some(&from) = self.ready().first() {
                    self.deliver(from);
                    self.settle(None);
                    continue;
                }
                if self.ours.app.owes() {
                    // A fresh probe (or the argument), so nothing is left to pipeline on.
                    self.our_app().answer(0, Answer::Argument, 0);
                    self.settle(None);
                    continue;
                }
                match self.link.queues.next_ready_at() {
                    Some(t) => self.now = self.now.max(t),
                    None => break,
                }
            }
            self.judge.flush(ctx);
        }
        true
    }

    /// Drains and gives back everything (`quiesce`), then judges quiescence: the wire
    /// checker's findings by the blame rules, then what our vat still tracks, before and
    /// after the connection closes.
    pub fn finish(&mut self, ctx: &Ctx) {
        if !self.quiesce(ctx) {
            self.judge.violation(
                "rpc-quiescence",
                "the network never went quiet (a message loop)".into(),
            );
            self.judge.flush(ctx);
            return;
        }
        let theirs_hold = self.judge.quiescence(&self.said);
        // Our engine must not keep exports capnp-rpc no longer holds.
        let exports = self.ours.vat.table_sizes(THEIRS).map_or(0, |t| t.exports);
        let held = self.said.our_view().held().len();
        if exports > held {
            self.judge.violation(
                "rpc-quiescence",
                format!(
                    "vat 0 still has {exports} exports, of which capnp-rpc holds references to \
                     {held}"
                ),
            );
        } else if !theirs_hold {
            self.ours
                .check_counts(&mut self.judge, "after everything was given back");
        }
        // Closing the connection must free whatever capnp-rpc still held of ours.
        self.reconnect("end of run");
        self.ours
            .check_counts(&mut self.judge, "after the connection closed");
        self.judge.flush(ctx);
    }
}
