//! What one step of the duel does, and how often each is drawn.

/// What a step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Deliver the head of a queue.
    Deliver,
    /// Call a held capability, perhaps passing another, and perhaps pipeline on the answer at
    /// once.
    Call,
    /// Pipeline on an answer (returned or not).
    Pipeline,
    /// Answer a call (ours; capnp-rpc's probes answer at once, so its side takes a returned
    /// answer's capability instead).
    Answer,
    /// Take the capability out of a returned answer.
    Take,
    Release,
    /// Finish (drop) an answer.
    Finish,
    Bootstrap,
    /// Call a held capability with a fresh local probe (kept in a slot too).
    CallWithProbe,
    /// Connection loss.
    Fault,
}

impl Action {
    /// Every action with its weight, out of 100.
    pub const WEIGHTS: [(Action, u64); 10] = [
        (Action::Deliver, 30),
        (Action::Call, 22),
        (Action::Pipeline, 8),
        (Action::Answer, 10),
        (Action::Take, 4),
        (Action::Release, 4),
        (Action::Finish, 4),
        (Action::Bootstrap, 6),
        (Action::CallWithProbe, 9),
        (Action::Fault, 3),
    ];
}
