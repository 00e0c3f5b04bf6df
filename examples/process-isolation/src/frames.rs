//! A single-writer frame queue whose writer announces a frame's length before it has written
//! the frame's bytes. The reader trusts the length it sees; when it sees a length beyond the
//! bytes written, its invariant check aborts the process.

use harness::{Scenario, Setup, Violation};
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Default)]
struct Queue {
    /// Length of the frame being written, as announced.
    announced: usize,
    bytes: Vec<u8>,
    done: bool,
}

pub struct Frames;

pub static FRAMES: Frames = Frames;

impl Scenario for Frames {
    fn name(&self) -> &'static str {
        "frames"
    }

    fn description(&self) -> &'static str {
        "a writer announces each frame's length before its bytes; a reader that sees the length first aborts the process"
    }

    fn expected_steps(&self) -> u64 {
        60
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let frames = setup.derive("frames", 1, 3) as usize;
        let queue: Rc<RefCell<Queue>> = Rc::default();
        let got: Rc<RefCell<Vec<usize>>> = Rc::default();
        let (q, ctx) = (queue.clone(), setup.ctx());
        setup.sim.spawn("writer", async move {
            for f in 0..frames {
                let len = 2 + f;
                // The flaw: the length is published first, the bytes one step later.
                q.borrow_mut().announced = len;
                ctx.yield_now().await;
                q.borrow_mut()
                    .bytes
                    .extend(std::iter::repeat_n(f as u8, len));
                ctx.yield_now().await;
                while q.borrow().announced != 0 {
                    ctx.spin_hint().await;
                }
            }
            q.borrow_mut().done = true;
        });
        let (q, g, ctx) = (queue, got.clone(), setup.ctx());
        setup.sim.spawn("reader", async move {
            loop {
                let (len, have, done) = {
                    let q = q.borrow();
                    (q.announced, q.bytes.len(), q.done)
                };
                if done {
                    break;
                }
                if len == 0 {
                    ctx.spin_hint().await;
                    continue;
                }
                if len > have {
                    eprintln!("frames: a frame announces {len} bytes and holds {have}");
                    std::process::abort();
                }
                let mut q = q.borrow_mut();
                q.bytes.drain(..len);
                q.announced = 0;
                g.borrow_mut().push(len);
            }
        });
        setup.run();
        let got = got.borrow();
        let want: Vec<usize> = (0..frames).map(|f| 2 + f).collect();
        if *got != want {
            return vec![Violation::new(
                "conservation",
                format!("frames of lengths {want:?} were written, {got:?} read"),
            )];
        }
        Vec::new()
    }
}
