//! The echo plan's boot-parameter encoding: round trips, and untrusted input never panics.

use guest_programs::echo::{PipePlan, Plan, PlanError, bytes_from, plan};
use proptest::collection::vec;
use proptest::prelude::*;

fn pipe_plan() -> impl Strategy<Value = PipePlan> {
    (
        any::<u64>(),
        vec(any::<u8>(), 0..200),
        any::<usize>(),
        any::<Option<usize>>(),
        proptest::option::of(vec(vec(vec(any::<u8>(), 0..50), 0..6), 0..4)),
    )
        .prop_map(|(ring, data, chunk, abandon_after, shared)| PipePlan {
            ring,
            data,
            chunk,
            abandon_after,
            shared,
        })
}

fn any_plan() -> impl Strategy<Value = Plan> {
    (vec(pipe_plan(), 0..5), any::<bool>()).prop_map(|(pipes, two_producers)| Plan {
        pipes,
        two_producers,
    })
}

/// A plan as the simulation derives it, from a simple deterministic stand-in for its decisions.
fn derived_plan(seed: u64) -> Plan {
    let mut x = seed | 1;
    plan(&mut |_name, lo, hi| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        lo + x % (hi - lo + 1)
    })
}

proptest! {
    #[test]
    fn round_trip(p in any_plan()) {
        prop_assert_eq!(Plan::decode(&p.encode()), Ok(p));
    }

    #[test]
    fn every_truncation_is_an_error(p in any_plan()) {
        let bytes = p.encode();
        for len in 0..bytes.len() {
            prop_assert!(Plan::decode(&bytes[..len]).is_err(), "prefix of {} bytes decoded", len);
        }
    }

    #[test]
    fn corrupted_input_never_panics(p in any_plan(), at in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = p.encode();
        let i = at % bytes.len();
        bytes[i] = byte;
        let _ = Plan::decode(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic(tail in vec(any::<u8>(), 0..300)) {
        let mut bytes = Plan::default().encode();
        bytes.truncate(9);
        bytes.extend(tail);
        let _ = Plan::decode(&bytes);
    }
}

#[test]
fn derived_plans_round_trip_and_truncate() {
    for seed in 0..200 {
        let p = derived_plan(seed);
        let bytes = p.encode();
        assert_eq!(Plan::decode(&bytes), Ok(p), "seed {seed}");
        for len in 0..bytes.len() {
            assert!(
                Plan::decode(&bytes[..len]).is_err(),
                "seed {seed} prefix {len}"
            );
        }
    }
}

#[test]
fn derived_plans_stay_in_range() {
    for seed in 0..200 {
        let p = derived_plan(seed);
        assert!((1..=4).contains(&p.pipes.len()));
        assert!(!p.two_producers);
        for (i, pipe) in p.pipes.iter().enumerate() {
            assert!([64, 128, 256, 512, 1024].contains(&pipe.ring));
            assert!((1..=300).contains(&pipe.chunk));
            assert!(pipe.data.len() <= 3000);
            assert!(pipe.shared.is_none() || i == 0);
            assert!(pipe.shared.is_none() || pipe.abandon_after.is_none());
            assert!(pipe.abandon_after.is_none_or(|n| n <= pipe.data.len()));
        }
    }
}

#[test]
fn bytes_from_is_deterministic() {
    assert_eq!(bytes_from(7, 16), bytes_from(7, 16));
    assert_eq!(bytes_from(7, 16)[..8], bytes_from(7, 8)[..]);
    assert_ne!(bytes_from(7, 16), bytes_from(8, 16));
}

fn header() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"ECHP");
    b.extend_from_slice(&1u32.to_le_bytes());
    b.push(0);
    b
}

/// One pipe, no data, no abandon, then the shared tag and `tail`.
fn one_shared_pipe(tail: &[u8]) -> Vec<u8> {
    let mut b = header();
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&64u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.push(0);
    b.extend_from_slice(&0u64.to_le_bytes());
    b.push(1);
    b.extend_from_slice(tail);
    b
}

#[test]
fn typed_errors() {
    assert_eq!(
        Plan::decode(&[]),
        Err(PlanError::Truncated { at: 0, needed: 4 })
    );
    assert_eq!(
        Plan::decode(b"NOPE\x01\0\0\0\0"),
        Err(PlanError::BadMagic(u32::from_le_bytes(*b"NOPE")))
    );
    let mut v2 = header();
    v2[4] = 2;
    assert_eq!(Plan::decode(&v2), Err(PlanError::UnsupportedVersion(2)));
    let mut flags = header();
    flags[8] = 0x82;
    assert_eq!(Plan::decode(&flags), Err(PlanError::BadFlags(0x82)));

    // A huge count is refused before anything is allocated for it.
    let mut huge = header();
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(
        Plan::decode(&huge),
        Err(PlanError::LengthTooLarge {
            what: "pipe count",
            len: u64::MAX,
            remaining: 0
        })
    );

    let mut trailing = Plan::default().encode();
    trailing.push(0);
    assert_eq!(Plan::decode(&trailing), Err(PlanError::TrailingBytes(1)));

    let mut bad_tag = one_shared_pipe(&[]);
    let last = bad_tag.len() - 1;
    bad_tag[last] = 2;
    assert_eq!(
        Plan::decode(&bad_tag),
        Err(PlanError::BadTag {
            what: "shared",
            tag: 2
        })
    );

    let mut many = 257u64.to_le_bytes().to_vec();
    many.extend(vec![0u8; 257 * 8]);
    assert_eq!(
        Plan::decode(&one_shared_pipe(&many)),
        Err(PlanError::TooManyWriters(257))
    );

    let mut long = 1u64.to_le_bytes().to_vec();
    long.extend_from_slice(&1u64.to_le_bytes());
    long.extend_from_slice(&65_536u64.to_le_bytes());
    long.extend(vec![0u8; 65_536]);
    assert_eq!(
        Plan::decode(&one_shared_pipe(&long)),
        Err(PlanError::FrameTooLong(65_536))
    );

    // Every error says what went wrong.
    assert!(
        PlanError::Truncated { at: 3, needed: 8 }
            .to_string()
            .contains("byte 3")
    );
}

#[test]
fn limits_are_accepted_at_the_edge() {
    let mut writers = vec![Vec::new(); 255];
    writers.push(vec![vec![7u8; usize::from(u16::MAX)]]);
    let p = Plan {
        pipes: vec![PipePlan {
            ring: 64,
            data: Vec::new(),
            chunk: 1,
            abandon_after: None,
            shared: Some(writers),
        }],
        two_producers: true,
    };
    assert_eq!(Plan::decode(&p.encode()), Ok(p));
}
