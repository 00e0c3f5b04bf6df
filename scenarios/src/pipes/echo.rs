//! `pipe-echo`: the guest opens pipes through the control pipe and streams bytes to the monitor's
//! echo relays, over many ring sizes and chunkings, with ring cursors starting near u64::MAX.
//!
//! Workload (derived per seed; the guest code is `guest_programs::echo`, which a bare-metal guest
//! runs too): 1–4 pipes, each with a ring of 64–1024 bytes, up to 3000 bytes in chunks of 1–300.
//! Each pipe has a sender and a receiver kernel thread on separate pipe ends. A
//! receiver may abandon its pipe early (closing its read side), so the writers meet a dead
//! reader. Sometimes pipe 0 is shared by two writer threads sending tagged frames under a guest
//! mutex. When the receivers are done the main thread closes the pipes and the control pipe.
//!
//! Oracles: byte conservation per pipe (exact, or a prefix when abandoned), frame integrity on the
//! shared pipe, liveness at quiescence (no party parked while its ring is readable, writable or
//! closed; no deadlock; no spinning past the progress budget), no panic anywhere, no
//! out-of-bounds access by the monitor, no guest error on a healthy pipe.

use crate::pipes::files::SimFiles;
use crate::pipes::net::SimNet;
use crate::pipes::world::{self, Bugs, PipeWorld};
use crate::{PlantedBug, Scenario, Setup, Violation};
use guest_programs::echo::{self, Plan, Results, Shared};
use models::pipes::{check_direction, check_tagged_stream};
use monitor::control_pipe_info;
use simkit::{KernelOptions, MemMode};
use std::rc::Rc;

pub struct PipeEcho;

const EOF_BEFORE_DRAIN: &str = "pipe-eof-before-drain";
const LOST_WAKEUP: &str = "pipe-lost-wakeup";
const CLOSE_NO_DOORBELL: &str = "pipe-close-no-doorbell";
const PUBLISH_BEFORE_DATA: &str = "pipe-publish-before-data";
const WEAK_FENCE: &str = "pipe-weak-fence";
const WRAP_OFF_BY_ONE: &str = "pipe-wrap-off-by-one";
const SPIN_DEAD_PEER: &str = "pipe-spin-dead-peer";
const TWO_WRITERS: &str = "pipe-two-writers";

static BUGS: &[PlantedBug] = &[
    PlantedBug {
        name: EOF_BEFORE_DRAIN,
        scenario: "pipe-echo",
        description: "the monitor's reader checks the cursor before the close flag and reports end-of-file with bytes still in the ring",
        mirrors: "Arca data-pipe sync_stream.rs read_exact (604f3af), monitor relay.rs pipe_to_tcp, uni.rs Reader::read",
        needs_mem: None,
    },
    PlantedBug {
        name: LOST_WAKEUP,
        scenario: "pipe-echo",
        description: "the guest's wait-for-interrupt forgets an interrupt delivered between its check and its halt",
        mirrors: "Arca kthread::wfi + hlt (INTERRUPTED checked only after hlt); acrn-hypervisor#2623, hermit-os/kernel#2669",
        needs_mem: None,
    },
    PlantedBug {
        name: CLOSE_NO_DOORBELL,
        scenario: "pipe-echo",
        description: "closing the guest's write side does not ring the doorbell, so the monitor never sees end-of-file",
        mirrors: "Arca pr-2 / pr-4.1 bidirectional_pipe.rs (doorbell rung on read/write but not on close)",
        needs_mem: None,
    },
    PlantedBug {
        name: PUBLISH_BEFORE_DATA,
        scenario: "pipe-echo",
        description: "the guest publishes its write cursor with a relaxed store (missing release)",
        mirrors: "rust-embedded/heapless#5, eclipse-iceoryx/iceoryx2#119, filipdulic/bus-queue#3",
        needs_mem: Some(MemMode::Relaxed),
    },
    PlantedBug {
        name: WEAK_FENCE,
        scenario: "pipe-echo",
        description: "notification suppression uses AcqRel fences where the handshake needs SeqCst",
        mirrors: "rust-vmm/vm-virtio#18, axboe/liburing#541, tokio-rs/io-uring#281, cloud-hypervisor#2179",
        needs_mem: None,
    },
    PlantedBug {
        name: WRAP_OFF_BY_ONE,
        scenario: "pipe-echo",
        description: "the guest's split copy at the end of the ring data is off by one byte",
        mirrors: "rust-vmm/vm-virtio#363, oasis-tcs/virtio-spec#35 (ring wrap-around)",
        needs_mem: None,
    },
    PlantedBug {
        name: SPIN_DEAD_PEER,
        scenario: "pipe-echo",
        description: "the guest's write_all treats a closed reader as a full ring and retries forever",
        mirrors: "Arca pipe/src/traits.rs write_all and relay tcp_to_pipe; pr-4.1 vmm/src/monitor.rs pipe_to_request",
        needs_mem: None,
    },
    PlantedBug {
        name: TWO_WRITERS,
        scenario: "pipe-echo",
        description: "two guest threads write one SPSC ring through separate producers, without a lock",
        mirrors: "Arca control/src/codec.rs write_frame with several Arca threads (PROTOCOL.md §7)",
        needs_mem: None,
    },
];

impl Scenario for PipeEcho {
    fn name(&self) -> &'static str {
        "pipe-echo"
    }

    fn description(&self) -> &'static str {
        "guest <-> monitor echo over 1-4 pipes: sizes, chunkings, wrap-around near u64::MAX, abandoned readers, shared writers"
    }

    fn expected_steps(&self) -> u64 {
        3_000
    }

    fn kernel_options(&self) -> KernelOptions {
        world::kernel_options()
    }

    fn bugs(&self) -> &'static [PlantedBug] {
        BUGS
    }

    fn run(&self, setup: &mut Setup) -> Vec<Violation> {
        let mut plan = echo::plan(&mut |name, lo, hi| setup.derive(name, lo, hi));
        let mut bugs = Bugs::default();
        if setup.planted(EOF_BEFORE_DRAIN) {
            bugs.host_ring |= ring_pipe::planted::EOF_BEFORE_DRAIN;
        }
        if setup.planted(LOST_WAKEUP) {
            bugs.hv |= hv::sim::planted::WFI_LOST_WAKEUP;
        }
        if setup.planted(CLOSE_NO_DOORBELL) {
            bugs.guest |= guest::planted::CLOSE_NO_DOORBELL;
        }
        if setup.planted(PUBLISH_BEFORE_DATA) {
            bugs.guest_ring |= ring_pipe::planted::PUBLISH_BEFORE_DATA;
        }
        if setup.planted(WEAK_FENCE) {
            bugs.guest_ring |= ring_pipe::planted::WEAK_SUPPRESSION_FENCE;
            bugs.host_ring |= ring_pipe::planted::WEAK_SUPPRESSION_FENCE;
        }
        if setup.planted(WRAP_OFF_BY_ONE) {
            bugs.guest_ring |= ring_pipe::planted::WRAP_OFF_BY_ONE;
        }
        if setup.planted(SPIN_DEAD_PEER) {
            bugs.guest |= guest::planted::SPIN_ON_DEAD_PEER;
        }
        plan.two_producers = setup.planted(TWO_WRITERS);

        let plan = Rc::new(plan);
        let results: Shared = Rc::default();
        let files = Rc::new(SimFiles::new(setup.ctx()));
        let region_len = 256 * 1024;
        let (p, r) = (plan.clone(), results.clone());
        let world = PipeWorld::boot(setup, region_len, bugs, files, SimNet::none(), move |env| {
            echo::run(env, control_pipe_info(), p, r)
        });

        setup.run();
        let results = results.borrow();
        let mut v = world.common_checks(&results.errors);
        // Every received byte crossed the pipe twice (guest to monitor and back).
        let echoed: usize = results.received.values().map(Vec::len).sum();
        setup.metric("pipe_bytes", 2 * echoed as u64);
        v.extend(judge_echo(&plan, &results));
        v
    }
}

/// This workload's oracles, from its plan and what the guest received: byte conservation per
/// pipe (exact, or a prefix when abandoned) and frame integrity on a shared pipe. Shared with
/// runs outside the simulation, which judge the same plan and results.
pub fn judge_echo(plan: &Plan, results: &Results) -> Vec<Violation> {
    let mut v = Vec::new();
    for (i, pipe) in plan.pipes.iter().enumerate() {
        let got = results.received.get(&i).cloned().unwrap_or_default();
        let name = crate::pipes::pipe_name(results, i);
        match &pipe.shared {
            Some(frames) => v.extend(check_tagged_stream(&name, &got, frames)),
            None => v.extend(check_direction(
                &name,
                "echo",
                &pipe.data,
                &got,
                pipe.abandon_after.is_some(),
            )),
        }
    }
    v
}

#[cfg(test)]
mod tests {
    /// The workload frames shared pipes itself; the oracle parses them with its own reference.
    #[test]
    fn workload_frames_match_the_oracles_reference() {
        for (w, seq, payload) in [
            (0u8, 0u32, &b""[..]),
            (1, 7, b"abc"),
            (255, u32::MAX, &[9; 40]),
        ] {
            assert_eq!(
                guest_programs::echo::tagged_frame(w, seq, payload),
                models::pipes::tagged_frame(w, seq, payload)
            );
        }
    }
}
