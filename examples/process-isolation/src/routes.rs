//! A route table built on first use and kept in a process-global cache, as libraries keep their
//! lazily built tables. The builder marks the table ready before it has filled it; a lookup that
//! runs in between finds no route. Later runs in the same process find the cache already built
//! and never take the racy path.

use harness::{Scenario, Setup, Violation};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The process-global cache: set once the table has been built in this process.
static BUILT: AtomicBool = AtomicBool::new(false);

const HOPS: usize = 4;

#[derive(Default)]
struct Table {
    ready: bool,
    hops: Vec<u64>,
}

pub struct Routes;

pub static ROUTES: Routes = Routes;

impl Scenario for Routes {
    fn name(&self) -> &'static str {
        "routes"
    }

    fn description(&self) -> &'static str {
        "a route table built on first use in a process, marked ready before it is filled"
    }

    fn expected_steps(&self) -> u64 {
        40
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let wanted = setup.derive("route", 0, HOPS as u64 - 1) as usize;
        let table: Rc<RefCell<Table>> = Rc::default();
        if BUILT.load(Ordering::Relaxed) {
            // Warm: this process has built the table before.
            let mut t = table.borrow_mut();
            t.hops = (1..=HOPS as u64).collect();
            t.ready = true;
        } else {
            let (t, ctx) = (table.clone(), setup.ctx());
            setup.sim.spawn("builder", async move {
                // The flaw: ready before filled.
                t.borrow_mut().ready = true;
                for hop in 1..=HOPS as u64 {
                    ctx.yield_now().await;
                    t.borrow_mut().hops.push(hop);
                }
                BUILT.store(true, Ordering::Relaxed);
            });
        }
        let found: Rc<RefCell<Option<u64>>> = Rc::default();
        let (t, f, ctx) = (table, found.clone(), setup.ctx());
        setup.sim.spawn("lookup", async move {
            while !t.borrow().ready {
                ctx.spin_hint().await;
            }
            *f.borrow_mut() = Some(t.borrow().hops.get(wanted).copied().unwrap_or(0));
        });
        setup.run();
        match *found.borrow() {
            Some(hop) if hop == wanted as u64 + 1 => Vec::new(),
            other => vec![Violation::new(
                "lookup",
                format!(
                    "route {wanted} has hop {}, the lookup found {other:?}",
                    wanted + 1
                ),
            )],
        }
    }
}
