//! Litmus scenarios: classic memory-model tests (SB, SB+fences, MP, MP+rel/acq, LB, IRIW) run as
//! actors over the shared-memory model. The litmus oracle fails any outcome sequential
//! consistency forbids; which of those a mode can produce is the model's signature (see the
//! `litmus_modes` test for the per-mode table from the x86-TSO and C11 literature).

use crate::{Scenario, Setup, Violation};
use models::litmus::{self as reference, Op, Program};
use simkit::KernelOptions;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::OnceLock;

pub struct Litmus {
    name: &'static str,
    description: &'static str,
    program: fn() -> Program,
    /// The reference model's SC outcomes, computed once.
    sc_allowed: OnceLock<BTreeSet<reference::Outcome>>,
}

pub static LITMUS_SB: Litmus = Litmus {
    name: "litmus-sb",
    description: "store buffering: can both threads miss each other's store? (tso and relaxed: yes)",
    program: reference::sb,
    sc_allowed: OnceLock::new(),
};
pub static LITMUS_SB_FENCED: Litmus = Litmus {
    name: "litmus-sb-fenced",
    description: "store buffering with SeqCst fences between store and load (forbidden in every mode)",
    program: reference::sb_fenced,
    sc_allowed: OnceLock::new(),
};
pub static LITMUS_MP: Litmus = Litmus {
    name: "litmus-mp",
    description: "message passing with relaxed accesses: flag seen, data stale? (relaxed only)",
    program: reference::mp,
    sc_allowed: OnceLock::new(),
};
pub static LITMUS_MP_RELACQ: Litmus = Litmus {
    name: "litmus-mp-relacq",
    description: "message passing with release/acquire (stale data forbidden in every mode)",
    program: reference::mp_relacq,
    sc_allowed: OnceLock::new(),
};
pub static LITMUS_LB: Litmus = Litmus {
    name: "litmus-lb",
    description: "load buffering: both loads see the other thread's later store? (never produced; see docs)",
    program: reference::lb,
    sc_allowed: OnceLock::new(),
};
pub static LITMUS_IRIW: Litmus = Litmus {
    name: "litmus-iriw",
    description: "independent reads of independent writes: readers disagree on store order? (relaxed only)",
    program: reference::iriw,
    sc_allowed: OnceLock::new(),
};

impl Litmus {
    pub fn program(&self) -> Program {
        (self.program)()
    }
}

/// Runs a litmus program in `setup` and returns the register outcome.
pub fn run_program(program: &Program, setup: &mut Setup) -> Vec<u64> {
    let vars: Vec<_> = program
        .vars
        .iter()
        .map(|v| setup.sim.alloc_region(v, 8))
        .collect();
    let regs = Rc::new(RefCell::new(vec![0u64; program.regs]));
    for (t, ops) in program.threads.iter().enumerate() {
        let (vars, regs, ops, ctx) = (vars.clone(), regs.clone(), ops.clone(), setup.ctx());
        setup.sim.spawn(&format!("T{t}"), async move {
            for op in ops {
                // Eight-byte regions at offset 0 cannot be out of bounds.
                match op {
                    Op::Store { var, value, order } => {
                        let _ = vars[var].store_u64(0, value, order).await;
                    }
                    Op::Load { var, reg, order } => {
                        let v = vars[var].load_u64(0, order).await.unwrap_or(u64::MAX);
                        regs.borrow_mut()[reg] = v;
                    }
                    Op::Fence(order) => ctx.fence(order).await,
                }
            }
        });
    }
    setup.run();
    let regs = regs.borrow().clone();
    setup.ctx().with(|k| {
        k.trace(
            "outcome",
            format_args!("{}", reference::format_outcome(&regs)),
        )
    });
    regs
}

impl Scenario for Litmus {
    fn name(&self) -> &'static str {
        self.name
    }

    fn description(&self) -> &'static str {
        self.description
    }

    fn kind(&self) -> crate::ScenarioKind {
        crate::ScenarioKind::Litmus
    }

    fn expected_steps(&self) -> u64 {
        let p = self.program();
        // Each op is a step, and each store may need a drain step.
        p.threads.iter().map(|t| t.len() as u64 * 2).sum()
    }

    fn kernel_options(&self) -> KernelOptions {
        KernelOptions {
            buggify: false,
            ..KernelOptions::default()
        }
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let program = self.program();
        let regs = run_program(&program, setup);
        let mut v: Vec<Violation> = Vec::new();
        let allowed = self
            .sc_allowed
            .get_or_init(|| reference::sc_outcomes(&program));
        v.extend(reference::check_against(&program, allowed, &regs));
        v
    }
}
