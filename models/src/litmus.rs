//! Litmus tests as data, and their reference model: an exhaustive interpreter that enumerates
//! every sequentially consistent interleaving of a program and collects the reachable outcomes.
//! The litmus oracle fails a run whose outcome is outside that set, i.e. one that sequential
//! consistency forbids. It shares no code with the memory model it judges.

use crate::Violation;
use simkit::Ordering;
use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Store {
        var: usize,
        value: u64,
        order: Ordering,
    },
    Load {
        var: usize,
        reg: usize,
        order: Ordering,
    },
    Fence(Ordering),
}

#[derive(Clone, Debug)]
pub struct Program {
    pub name: &'static str,
    pub vars: &'static [&'static str],
    pub threads: Vec<Vec<Op>>,
    pub regs: usize,
}

/// Register values at the end of a run, `r0, r1, ...`.
pub type Outcome = Vec<u64>;

pub fn format_outcome(outcome: &[u64]) -> String {
    outcome
        .iter()
        .enumerate()
        .map(|(i, v)| format!("r{i}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every outcome some sequentially consistent interleaving produces (all variables start at 0).
pub fn sc_outcomes(p: &Program) -> BTreeSet<Outcome> {
    let mut out = BTreeSet::new();
    let mut pcs = vec![0usize; p.threads.len()];
    let mut mem = vec![0u64; p.vars.len()];
    let mut regs = vec![0u64; p.regs];
    explore(p, &mut pcs, &mut mem, &mut regs, &mut out);
    out
}

fn explore(
    p: &Program,
    pcs: &mut [usize],
    mem: &mut [u64],
    regs: &mut [u64],
    out: &mut BTreeSet<Outcome>,
) {
    let mut any = false;
    for t in 0..p.threads.len() {
        let Some(op) = p.threads[t].get(pcs[t]).copied() else {
            continue;
        };
        any = true;
        pcs[t] += 1;
        match op {
            Op::Store { var, value, .. } => {
                let old = mem[var];
                mem[var] = value;
                explore(p, pcs, mem, regs, out);
                mem[var] = old;
            }
            Op::Load { var, reg, .. } => {
                let old = regs[reg];
                regs[reg] = mem[var];
                explore(p, pcs, mem, regs, out);
                regs[reg] = old;
            }
            Op::Fence(_) => explore(p, pcs, mem, regs, out),
        }
        pcs[t] -= 1;
    }
    if !any {
        out.insert(regs.to_vec());
    }
}

/// The litmus oracle: the observed outcome must be one sequential consistency allows.
pub fn check(p: &Program, observed: &[u64]) -> Vec<Violation> {
    check_against(p, &sc_outcomes(p), observed)
}

/// The litmus oracle with the SC outcome set already computed (it depends only on the program).
pub fn check_against(
    p: &Program,
    sc_allowed: &BTreeSet<Outcome>,
    observed: &[u64],
) -> Vec<Violation> {
    if sc_allowed.contains(observed) {
        Vec::new()
    } else {
        vec![Violation::new(
            "litmus-sc",
            format!(
                "{}: outcome {} is forbidden under sequential consistency",
                p.name,
                format_outcome(observed)
            ),
        )]
    }
}

use Ordering::{Acquire, Relaxed, Release, SeqCst};

fn st(var: usize, value: u64, order: Ordering) -> Op {
    Op::Store { var, value, order }
}

fn ld(var: usize, reg: usize, order: Ordering) -> Op {
    Op::Load { var, reg, order }
}

/// Store buffering. SC forbids r0=0 r1=0; x86-TSO and C11 relaxed allow it.
pub fn sb() -> Program {
    Program {
        name: "SB",
        vars: &["x", "y"],
        threads: vec![
            vec![st(0, 1, Relaxed), ld(1, 0, Relaxed)],
            vec![st(1, 1, Relaxed), ld(0, 1, Relaxed)],
        ],
        regs: 2,
    }
}

/// Store buffering with SeqCst fences between the store and the load: forbidden everywhere.
pub fn sb_fenced() -> Program {
    Program {
        name: "SB+fences",
        vars: &["x", "y"],
        threads: vec![
            vec![st(0, 1, Relaxed), Op::Fence(SeqCst), ld(1, 0, Relaxed)],
            vec![st(1, 1, Relaxed), Op::Fence(SeqCst), ld(0, 1, Relaxed)],
        ],
        regs: 2,
    }
}

/// Message passing with relaxed accesses. r0=1 r1=0 (flag seen, data stale) is forbidden by SC
/// and x86-TSO, allowed by C11 relaxed and Arm.
pub fn mp() -> Program {
    Program {
        name: "MP",
        vars: &["data", "flag"],
        threads: vec![
            vec![st(0, 1, Relaxed), st(1, 1, Relaxed)],
            vec![ld(1, 0, Relaxed), ld(0, 1, Relaxed)],
        ],
        regs: 2,
    }
}

/// Message passing with a release store and an acquire load: the stale read is forbidden in
/// every model.
pub fn mp_relacq() -> Program {
    Program {
        name: "MP+rel+acq",
        vars: &["data", "flag"],
        threads: vec![
            vec![st(0, 1, Relaxed), st(1, 1, Release)],
            vec![ld(1, 0, Acquire), ld(0, 1, Relaxed)],
        ],
        regs: 2,
    }
}

/// Load buffering. r0=1 r1=1 is forbidden by SC and x86-TSO, allowed by C11 relaxed and Arm.
pub fn lb() -> Program {
    Program {
        name: "LB",
        vars: &["x", "y"],
        threads: vec![
            vec![ld(0, 0, Relaxed), st(1, 1, Relaxed)],
            vec![ld(1, 1, Relaxed), st(0, 1, Relaxed)],
        ],
        regs: 2,
    }
}

/// Independent reads of independent writes. Two readers disagreeing on the order of the two
/// writes (r0=1 r1=0 r2=1 r3=0) is forbidden by SC and x86-TSO (multi-copy atomic), allowed by
/// C11 relaxed loads and by Arm without dependencies between the loads.
pub fn iriw() -> Program {
    Program {
        name: "IRIW",
        vars: &["x", "y"],
        threads: vec![
            vec![st(0, 1, Relaxed)],
            vec![st(1, 1, Relaxed)],
            vec![ld(0, 0, Relaxed), ld(1, 1, Relaxed)],
            vec![ld(1, 2, Relaxed), ld(0, 3, Relaxed)],
        ],
        regs: 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&[u64]]) -> BTreeSet<Outcome> {
        v.iter().map(|o| o.to_vec()).collect()
    }

    #[test]
    fn sc_outcome_sets_match_the_textbook() {
        assert_eq!(sc_outcomes(&sb()), set(&[&[0, 1], &[1, 0], &[1, 1]]));
        assert_eq!(sc_outcomes(&sb_fenced()), set(&[&[0, 1], &[1, 0], &[1, 1]]));
        assert_eq!(sc_outcomes(&mp()), set(&[&[0, 0], &[0, 1], &[1, 1]]));
        assert_eq!(sc_outcomes(&lb()), set(&[&[0, 0], &[0, 1], &[1, 0]]));
        let iriw = sc_outcomes(&iriw());
        assert!(!iriw.contains(&vec![1, 0, 1, 0]));
        assert!(iriw.contains(&vec![1, 1, 1, 1]));
        assert_eq!(iriw.len(), 15);
    }

    #[test]
    fn oracle_flags_only_forbidden_outcomes() {
        assert!(check(&sb(), &[1, 0]).is_empty());
        let v = check(&sb(), &[0, 0]);
        assert_eq!(v.len(), 1);
        assert!(v[0].message.contains("r0=0 r1=0"));
    }
}
