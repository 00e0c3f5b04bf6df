//! The ring against a reference model (a bounded `VecDeque`), with cursors starting anywhere —
//! including just below u64::MAX, so the cursors wrap during the run — and against a hostile
//! peer that writes arbitrary header values.

use proptest::prelude::*;
use ring_pipe::mem::{LocalMemory, complete_now};
use ring_pipe::{Consumer, HEADER_LEN, Producer, RingError, RingLayout};
use std::collections::VecDeque;

#[derive(Clone, Debug)]
enum Op {
    Write(Vec<u8>),
    Read(usize),
    CloseWriter,
}

fn op(cap: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => proptest::collection::vec(any::<u8>(), 0..cap * 3).prop_map(Op::Write),
        5 => (0..cap * 3).prop_map(Op::Read),
        1 => Just(Op::CloseWriter),
    ]
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    complete_now(f).expect("local memory never waits")
}

fn start_cursor() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), u64::MAX - 200..=u64::MAX, any::<u64>()]
}

proptest! {
    #[test]
    fn ring_matches_a_bounded_queue(
        cap_log in 3u32..8,
        start in start_cursor(),
        ops in proptest::collection::vec(op(128), 1..120),
    ) {
        let cap = 1u64 << cap_log;
        let mem = LocalMemory::new((HEADER_LEN + cap) as usize);
        let layout = RingLayout::new(0, cap, mem.size_hint()).expect("fits");
        run(layout.init(&mem, start)).expect("in bounds");
        let mut tx = run(Producer::attach(&mem, layout)).expect("attach");
        let mut rx = run(Consumer::attach(&mem, layout)).expect("attach");
        let mut model: VecDeque<u8> = VecDeque::new();
        let mut closed = false;
        for op in ops {
            match op {
                Op::Write(data) => {
                    let got = run(tx.try_write(&data));
                    let room = cap as usize - model.len();
                    if closed {
                        prop_assert_eq!(got, Err(RingError::Closed));
                    } else if data.is_empty() {
                        prop_assert_eq!(got, Ok(0));
                    } else if room == 0 {
                        prop_assert_eq!(got, Err(RingError::WouldBlock));
                    } else {
                        let n = room.min(data.len());
                        prop_assert_eq!(got, Ok(n));
                        model.extend(&data[..n]);
                    }
                }
                Op::Read(len) => {
                    let mut buf = vec![0u8; len];
                    let got = run(rx.try_read(&mut buf));
                    if len == 0 {
                        prop_assert_eq!(got, Ok(0));
                    } else if model.is_empty() {
                        prop_assert_eq!(got, if closed { Ok(0) } else { Err(RingError::WouldBlock) });
                    } else {
                        let n = model.len().min(len);
                        prop_assert_eq!(got, Ok(n));
                        let want: Vec<u8> = model.drain(..n).collect();
                        prop_assert_eq!(&buf[..n], &want[..]);
                    }
                }
                Op::CloseWriter => {
                    run(tx.close()).expect("in bounds");
                    closed = true;
                }
            }
            prop_assert_eq!(tx.peer_violations(), 0);
            prop_assert_eq!(rx.peer_violations(), 0);
        }
    }

    /// A hostile consumer or producer writes arbitrary header values between operations: the
    /// honest side never faults outside the ring and never transfers more than fits.
    #[test]
    fn hostile_peer_cannot_push_copies_out_of_the_ring(
        cap_log in 3u32..7,
        lies in proptest::collection::vec((0u64..6, any::<u64>()), 1..40),
        sizes in proptest::collection::vec(1usize..300, 1..40),
    ) {
        let cap = 1u64 << cap_log;
        // Guard bytes after the ring: a copy outside it would land there and fault below.
        let mem = LocalMemory::new((HEADER_LEN + cap) as usize);
        let layout = RingLayout::new(0, cap, mem.size_hint()).expect("fits");
        run(layout.init(&mem, 0)).expect("in bounds");
        let mut tx = run(Producer::attach(&mem, layout)).expect("attach");
        let mut rx = run(Consumer::attach(&mem, layout)).expect("attach");
        for ((field, value), size) in lies.into_iter().zip(sizes.into_iter().cycle()) {
            mem.poke_u64(field * 8, value).expect("header");
            let data = vec![7u8; size];
            match run(tx.try_write(&data)) {
                Ok(n) => prop_assert!(n as u64 <= cap),
                Err(e) => prop_assert!(!matches!(e, RingError::Mem(_)), "{e:?}"),
            }
            let mut buf = vec![0u8; size];
            match run(rx.try_read(&mut buf)) {
                Ok(n) => prop_assert!(n as u64 <= cap),
                Err(e) => prop_assert!(!matches!(e, RingError::Mem(_)), "{e:?}"),
            }
        }
    }
}

#[test]
fn layouts_are_validated() {
    assert!(matches!(
        RingLayout::new(0, 100, 1 << 20),
        Err(RingError::Layout(_))
    ));
    assert!(matches!(
        RingLayout::new(4, 64, 1 << 20),
        Err(RingError::Layout(_))
    ));
    assert!(matches!(
        RingLayout::new(0, 64, 100),
        Err(RingError::Layout(_))
    ));
    assert!(matches!(
        RingLayout::new(u64::MAX - 8, 64, u64::MAX),
        Err(RingError::Layout(_))
    ));
    assert!(RingLayout::new(64, 64, 64 + HEADER_LEN + 64).is_ok());
}

#[test]
fn reader_closing_stops_the_writer() {
    let mem = LocalMemory::new((HEADER_LEN + 64) as usize);
    let layout = RingLayout::new(0, 64, mem.size_hint()).expect("fits");
    run(layout.init(&mem, 0)).expect("init");
    let mut tx = run(Producer::attach(&mem, layout)).expect("attach");
    let mut rx = run(Consumer::attach(&mem, layout)).expect("attach");
    run(rx.close()).expect("close");
    assert_eq!(run(tx.try_write(b"x")), Err(RingError::PeerClosed));
    // The writer's sleep check sees the reader gone and does not sleep.
    assert_eq!(run(tx.prepare_wait()), Ok(false));
}

#[test]
fn wait_handshake_flags_round_trip() {
    let mem = LocalMemory::new((HEADER_LEN + 64) as usize);
    let layout = RingLayout::new(0, 64, mem.size_hint()).expect("fits");
    run(layout.init(&mem, 0)).expect("init");
    let mut tx = run(Producer::attach(&mem, layout)).expect("attach");
    let mut rx = run(Consumer::attach(&mem, layout)).expect("attach");
    assert_eq!(run(tx.reader_wants_wake()), Ok(false));
    assert_eq!(run(rx.prepare_wait()), Ok(true), "empty: the reader sleeps");
    assert_eq!(run(tx.reader_wants_wake()), Ok(true));
    assert_eq!(run(tx.try_write(b"hi")), Ok(2));
    assert_eq!(run(rx.prepare_wait()), Ok(false), "data arrived: no sleep");
    run(rx.end_wait()).expect("ok");
    assert_eq!(run(tx.reader_wants_wake()), Ok(false));
}

/// The planted bugs at this layer really break what the properties above check.
#[cfg(feature = "planted-bugs")]
mod planted_bugs_are_caught {
    use super::*;
    use ring_pipe::planted;

    #[test]
    fn trusting_the_peer_cursor_copies_out_of_the_ring() {
        let cap = 64;
        let mem = LocalMemory::new((HEADER_LEN + cap) as usize);
        let layout = RingLayout::new(0, cap, mem.size_hint()).expect("fits");
        run(layout.init(&mem, 0)).expect("init");
        let mut rx = run(Consumer::attach(&mem, layout))
            .expect("attach")
            .with_planted(planted::TRUST_PEER_CURSOR);
        // The hostile writer claims 1000 bytes are ready in a 64-byte ring.
        mem.poke_u64(8, 1000).expect("header");
        let mut buf = vec![0u8; 500];
        assert!(matches!(run(rx.try_read(&mut buf)), Err(RingError::Mem(_))));
        assert_eq!(rx.peer_violations(), 1);
        // The same lie against the honest ring is clamped.
        let mut honest = run(Consumer::attach(&mem, layout)).expect("attach");
        assert_eq!(run(honest.try_read(&mut buf)), Ok(64));
    }

    #[test]
    fn wrap_off_by_one_corrupts_bytes_across_the_boundary() {
        let cap = 16u64;
        let mem = LocalMemory::new((HEADER_LEN + cap) as usize);
        let layout = RingLayout::new(0, cap, mem.size_hint()).expect("fits");
        run(layout.init(&mem, u64::MAX - 5)).expect("init");
        let mut tx = run(Producer::attach(&mem, layout))
            .expect("attach")
            .with_planted(planted::WRAP_OFF_BY_ONE);
        let mut rx = run(Consumer::attach(&mem, layout)).expect("attach");
        let data: Vec<u8> = (1..=12).collect();
        assert_eq!(run(tx.try_write(&data)), Ok(12));
        let mut buf = vec![0u8; 12];
        assert_eq!(run(rx.try_read(&mut buf)), Ok(12));
        assert_ne!(buf, data, "the split copy must misplace a byte");
    }
}
