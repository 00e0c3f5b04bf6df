//! What an oracle reports.

use simkit::At;

/// One failed check.
///
/// Beyond the message, a violation can say what kind of failure it is, at which actor and on
/// which object (a pipe, a vat, a cell, a waiter): those three and the oracle are its identity,
/// which a shrinker keeps while it cuts the run down ([`Violation::same_as`]). `at` is where in
/// the run the oracle could first tell (the harness sets the end of the run for oracles that
/// judge only at the end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which oracle found it.
    pub oracle: &'static str,
    pub message: String,
    /// A short, stable name of the failure (`lost-wakeup`, `missing-bytes`, ...).
    pub kind: Option<&'static str>,
    /// The actor that failed or was failed (as trace lines name it).
    pub actor: Option<String>,
    /// What it failed on, named as every oracle names it (`pipe 3`, `vat 1`, `cell a`).
    pub object: Option<String>,
    /// Where the oracle could first tell.
    pub at: Option<At>,
}

impl Violation {
    pub fn new(oracle: &'static str, message: impl Into<String>) -> Self {
        Self {
            oracle,
            message: message.into(),
            kind: None,
            actor: None,
            object: None,
            at: None,
        }
    }

    pub fn kind(mut self, kind: &'static str) -> Self {
        self.kind = Some(kind);
        self
    }

    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    pub fn object(mut self, object: impl Into<String>) -> Self {
        self.object = Some(object.into());
        self
    }

    pub fn at(mut self, at: At) -> Self {
        self.at = Some(at);
        self
    }

    /// The same failure: the same oracle, kind, actor and object (messages may differ in
    /// counts and positions, which change as a run is cut down).
    pub fn same_as(&self, other: &Violation) -> bool {
        self.oracle == other.oracle
            && self.kind == other.kind
            && self.actor == other.actor
            && self.object == other.object
    }

    /// `oracle/kind actor=.. object=..`, for lines that name a violation without its message.
    pub fn identity(&self) -> String {
        let mut s = self.oracle.to_string();
        if let Some(k) = self.kind {
            s.push('/');
            s.push_str(k);
        }
        if let Some(a) = &self.actor {
            s.push_str(" actor=");
            s.push_str(a);
        }
        if let Some(o) = &self.object {
            s.push_str(&format!(" object='{o}'"));
        }
        s
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.oracle, self.message)?;
        if let Some(at) = &self.at {
            write!(f, " (at {at})")?;
        }
        Ok(())
    }
}
