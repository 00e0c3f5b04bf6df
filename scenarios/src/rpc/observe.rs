//! What the RPC scenarios observe of a run for exploration: abstract-state coverage and the
//! sometimes-goals, judged from outside the vats (the messages on the wire, in delivery order,
//! and the table sizes each vat reports for a connection).
//!
//! Coverage: one feature per delivered message kind (with its target, result, context or
//! resolution kind) against which of the receiver's and the sender's tables for the connection
//! are empty (questions, answers, exports, imports, pending embargoes), and connection faults
//! against the same.
//!
//! Goals (see [`GOALS`]): the states the embargo and handoff rules exist for.

use captp::wire::{
    CapDescriptor, DisembargoContext, Message, MessageTarget, Resolution, ReturnResult,
};
use captp::{TableSizes, VatId};
use harness::Goal;
use std::collections::{BTreeMap, BTreeSet};

pub const EMBARGO_HELD_CALLS: &str = "embargo-held-calls";
pub const RESOLVE_WITH_PIPELINED_CALLS: &str = "resolve-with-pipelined-calls";
pub const RESOLVE_TO_LOOPBACK: &str = "resolve-to-loopback";
pub const ACCEPT_BEFORE_PROVIDE: &str = "accept-before-provide";
pub const ACCEPT_EMBARGOED: &str = "accept-embargoed";
pub const TAIL_CALL: &str = "tail-call";
pub const DISCONNECT_WITH_QUESTIONS: &str = "disconnect-with-questions";

pub static EMBARGO_GOAL: Goal = Goal {
    name: EMBARGO_HELD_CALLS,
    description: "a loopback embargo held calls while a promise resolved (they leave only with the reflected Disembargo)",
};
pub static PIPELINE_GOAL: Goal = Goal {
    name: RESOLVE_WITH_PIPELINED_CALLS,
    description: "a promise resolved while calls pipelined on it were still unanswered",
};
pub static LOOPBACK_GOAL: Goal = Goal {
    name: RESOLVE_TO_LOOPBACK,
    description: "a promise resolved to a capability hosted by the vat that imported it",
};
pub static TAIL_GOAL: Goal = Goal {
    name: TAIL_CALL,
    description: "a call was answered by another question's results (takeFromOtherQuestion)",
};
pub static DISCONNECT_GOAL: Goal = Goal {
    name: DISCONNECT_WITH_QUESTIONS,
    description: "a connection was lost with questions outstanding on it",
};
pub static ACCEPT_EARLY_GOAL: Goal = Goal {
    name: ACCEPT_BEFORE_PROVIDE,
    description: "a handoff's Accept reached the host before its Provide",
};
pub static ACCEPT_EMBARGO_GOAL: Goal = Goal {
    name: ACCEPT_EMBARGOED,
    description: "a handoff's Accept came embargoed (calls had gone through the introducer)",
};

/// The goals of a two-vat or three-vat run without handoff.
pub static GOALS: &[Goal] = &[
    EMBARGO_GOAL,
    PIPELINE_GOAL,
    LOOPBACK_GOAL,
    TAIL_GOAL,
    DISCONNECT_GOAL,
];

/// The goals of a run with three-party handoff.
pub static HANDOFF_GOALS: &[Goal] = &[
    EMBARGO_GOAL,
    PIPELINE_GOAL,
    LOOPBACK_GOAL,
    TAIL_GOAL,
    DISCONNECT_GOAL,
    ACCEPT_EARLY_GOAL,
    ACCEPT_EMBARGO_GOAL,
];

/// The RPC observer's state: what it must remember of the wire to tell the goals.
#[derive(Debug, Default)]
pub struct Observer {
    /// Per (asker, callee): unanswered calls by question, and the import each targets.
    pipelined: BTreeMap<(VatId, VatId), BTreeMap<u32, u32>>,
    /// Provides delivered to each host and not yet matched by an Accept.
    provides: BTreeMap<VatId, u64>,
    /// Vats that just got a reflected Disembargo (their calls sent next were held by it).
    reflected: BTreeSet<VatId>,
    /// Features and goals not yet handed to the kernel.
    pub features: Vec<u64>,
    pub reached: Vec<&'static str>,
}

fn empties(s: Option<TableSizes>) -> u64 {
    let s = s.unwrap_or_default();
    [s.questions, s.answers, s.exports, s.imports, s.embargoes]
        .iter()
        .enumerate()
        .fold(0, |acc, (i, n)| acc | (u64::from(*n > 0) << i))
}

fn descriptor_kind(d: &CapDescriptor) -> u64 {
    match d {
        CapDescriptor::None => 0,
        CapDescriptor::SenderHosted(_) => 1,
        CapDescriptor::SenderPromise(_) => 2,
        CapDescriptor::ReceiverHosted(_) => 3,
        CapDescriptor::ReceiverAnswer(_) => 4,
        CapDescriptor::ThirdPartyHosted { .. } => 5,
    }
}

/// A message's kind and the one detail of it that selects a different rule.
fn kind(msg: &Message) -> (u64, u64) {
    let target = |t: &MessageTarget| match t {
        MessageTarget::ImportedCap(_) => 0,
        MessageTarget::PromisedAnswer(p) => 1 + u64::from(!p.transform.is_empty()),
    };
    match msg {
        Message::Unimplemented(_) => (0, 0),
        Message::Abort(_) => (1, 0),
        Message::Bootstrap(_) => (2, 0),
        Message::Call(c) => (
            3,
            target(&c.target) * 4
                + match c.send_results_to {
                    captp::wire::SendResultsTo::Caller => 0,
                    captp::wire::SendResultsTo::Yourself => 1,
                    captp::wire::SendResultsTo::ThirdParty(_) => 2,
                },
        ),
        Message::Return(r) => (
            4,
            match &r.result {
                ReturnResult::Results(p) => {
                    1 + u64::from(!p.cap_table.is_empty()) + 2 * u64::from(r.release_param_caps)
                }
                ReturnResult::Exception(_) => 5,
                ReturnResult::Canceled => 6,
                ReturnResult::ResultsSentElsewhere => 7,
                ReturnResult::TakeFromOtherQuestion(_) => 8,
                ReturnResult::AcceptFromThirdParty(_) => 9,
            },
        ),
        Message::Finish(f) => (5, u64::from(f.release_result_caps)),
        Message::Resolve(r) => (
            6,
            match &r.resolution {
                Resolution::Cap(d) => 1 + descriptor_kind(d),
                Resolution::Exception(_) => 0,
            },
        ),
        Message::Release(_) => (7, 0),
        Message::Disembargo(d) => (
            8,
            match d.context {
                DisembargoContext::SenderLoopback(_) => 0,
                DisembargoContext::ReceiverLoopback(_) => 1,
                DisembargoContext::Accept => 2,
                DisembargoContext::Provide(_) => 3,
            } * 3
                + target(&d.target),
        ),
        Message::Provide(_) => (9, 0),
        Message::Accept(a) => (10, u64::from(a.embargo)),
        Message::Join(_) => (11, 0),
        Message::ObsoleteSave(_) | Message::ObsoleteDelete(_) => (12, 0),
    }
}

impl Observer {
    /// A message from `from` is about to be delivered to `to`; `sizes(v, peer)` are vat `v`'s
    /// table sizes towards `peer` now.
    pub fn delivering(
        &mut self,
        from: VatId,
        to: VatId,
        msg: &Message,
        sizes: impl Fn(VatId, VatId) -> Option<TableSizes>,
    ) {
        let (k, detail) = kind(msg);
        let key = k << 24 | detail << 16 | empties(sizes(to, from)) << 8 | empties(sizes(from, to));
        self.features.push(key);
        match msg {
            Message::Call(c) => {
                if let MessageTarget::ImportedCap(id) = c.target {
                    self.pipelined
                        .entry((from, to))
                        .or_default()
                        .insert(c.question_id, id);
                }
            }
            Message::Return(r) => {
                if let Some(q) = self.pipelined.get_mut(&(to, from)) {
                    q.remove(&r.answer_id);
                }
                if matches!(r.result, ReturnResult::TakeFromOtherQuestion(_)) {
                    self.reached.push(TAIL_CALL);
                }
            }
            Message::Resolve(r) => {
                // `from` resolves its export `promise_id`: calls `to` made on that import and
                // not yet answered were pipelined on the promise.
                if self
                    .pipelined
                    .get(&(to, from))
                    .is_some_and(|q| q.values().any(|&id| id == r.promise_id))
                {
                    self.reached.push(RESOLVE_WITH_PIPELINED_CALLS);
                }
                if matches!(
                    r.resolution,
                    Resolution::Cap(CapDescriptor::ReceiverHosted(_))
                        | Resolution::Cap(CapDescriptor::ReceiverAnswer(_))
                ) {
                    self.reached.push(RESOLVE_TO_LOOPBACK);
                }
            }
            Message::Disembargo(d) => {
                if matches!(d.context, DisembargoContext::ReceiverLoopback(_)) {
                    self.reflected.insert(to);
                }
            }
            Message::Provide(_) => *self.provides.entry(to).or_default() += 1,
            Message::Accept(a) => {
                let pending = self.provides.entry(to).or_default();
                if *pending == 0 {
                    self.reached.push(ACCEPT_BEFORE_PROVIDE);
                } else {
                    *pending -= 1;
                }
                if a.embargo {
                    self.reached.push(ACCEPT_EMBARGOED);
                }
            }
            _ => {}
        }
    }

    /// Vat `from` sends `msg` (collected from its outbox right after the step that made it).
    pub fn sending(&mut self, from: VatId, msg: &Message) {
        if matches!(msg, Message::Call(_)) && self.reflected.contains(&from) {
            self.reached.push(EMBARGO_HELD_CALLS);
        }
    }

    /// Every vat's outbox has been collected: a reflection's held calls have gone.
    pub fn collected(&mut self) {
        self.reflected.clear();
    }

    /// The connection between `a` and `b` is lost; `sizes` as for [`Observer::delivering`].
    pub fn disconnecting(
        &mut self,
        a: VatId,
        b: VatId,
        sizes: impl Fn(VatId, VatId) -> Option<TableSizes>,
    ) {
        let (sa, sb) = (sizes(a, b), sizes(b, a));
        self.features
            .push(13 << 24 | empties(sa) << 8 | empties(sb));
        if sa.is_some_and(|s| s.questions > 0) || sb.is_some_and(|s| s.questions > 0) {
            self.reached.push(DISCONNECT_WITH_QUESTIONS);
        }
        self.pipelined.remove(&(a, b));
        self.pipelined.remove(&(b, a));
        self.provides.remove(&a);
        self.provides.remove(&b);
    }
}
