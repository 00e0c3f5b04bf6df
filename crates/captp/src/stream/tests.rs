//! Stream framing: messages back to back, a clean close, truncation anywhere, absurd segment
//! tables refused before allocating, and readers that deliver a byte at a time or get
//! interrupted.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::arb;
use crate::wire::{AnyValue, Exception, ExceptionType, Finish, ListValue, StructValue};
use proptest::prelude::*;
use std::io::Cursor;

fn finish(question_id: u32) -> Message {
    Message::Finish(Finish {
        question_id,
        release_result_caps: false,
        require_early_cancellation_workaround: false,
    })
}

fn big() -> Message {
    // Larger than one segment of the builder, so the frame has several.
    Message::ObsoleteSave(AnyValue::Struct(StructValue {
        data: vec![1, 2, 3],
        pointers: vec![AnyValue::List(ListValue::U64((0..3000).collect()))],
    }))
}

/// Hands out at most one byte per read, and fails every other read with `Interrupted`.
struct Trickle<R> {
    inner: R,
    interrupt: bool,
}

impl<R: Read> Read for Trickle<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = buf.len().min(1);
        self.inner.read(&mut buf[..n])
    }
}

#[test]
fn messages_round_trip_back_to_back_then_close() {
    let msgs = vec![finish(1), big(), finish(2)];
    let mut out = Vec::new();
    for m in &msgs {
        write_message(&mut out, m).unwrap();
    }
    assert!(u32::from_le_bytes(encode(&big())[..4].try_into().unwrap()) > 0);
    for trickle in [false, true] {
        let mut r: Box<dyn Read> = if trickle {
            Box::new(Trickle {
                inner: Cursor::new(out.clone()),
                interrupt: false,
            })
        } else {
            Box::new(Cursor::new(out.clone()))
        };
        for m in &msgs {
            assert_eq!(&read_message(&mut r).unwrap(), m);
        }
        assert!(matches!(read_message(&mut r), Err(StreamError::Closed)));
        assert!(matches!(read_message(&mut r), Err(StreamError::Closed)));
    }
}

#[test]
fn a_stream_cut_inside_a_message_is_truncated() {
    let bytes = encode(&big());
    assert!(matches!(
        read_message(&mut Cursor::new(&bytes[..0])),
        Err(StreamError::Closed)
    ));
    for cut in 1..bytes.len() {
        let err = read_message(&mut Cursor::new(&bytes[..cut])).unwrap_err();
        assert!(
            matches!(err, StreamError::Truncated { .. }),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn absurd_segment_tables_are_refused_before_reading_on() {
    let mut many = 600u32.to_le_bytes().to_vec();
    many.extend_from_slice(&[0; 4]);
    let err = read_frame(&mut Cursor::new(many)).unwrap_err();
    assert!(
        matches!(err, StreamError::TooManySegments { count: 601 }),
        "{err}"
    );
    assert!(err.to_string().contains("601"), "{err}");

    // Two segments that add up to more than the limit; no body follows.
    let mut large = 1u32.to_le_bytes().to_vec();
    large.extend_from_slice(&(MAX_MESSAGE_WORDS as u32).to_le_bytes());
    large.extend_from_slice(&1u32.to_le_bytes());
    large.extend_from_slice(&[0; 4]);
    let err = read_frame(&mut Cursor::new(large)).unwrap_err();
    let words = MAX_MESSAGE_WORDS as u64 + 1;
    assert!(
        matches!(err, StreamError::TooLarge { words: w } if w == words),
        "{err}"
    );
}

#[test]
fn a_bad_message_leaves_the_stream_at_a_boundary() {
    // A well-framed message whose root is a struct of the wrong shape, then a good one.
    let mut bytes = 0u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&[0xff; 8]);
    write_message(&mut bytes, &finish(3)).unwrap();
    let mut r = Cursor::new(bytes);
    let err = read_message(&mut r).unwrap_err();
    assert!(matches!(err, StreamError::Wire(_)), "{err}");
    assert_eq!(read_message(&mut r).unwrap(), finish(3));
}

#[test]
fn io_errors_are_passed_on() {
    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::TimedOut.into())
        }
    }
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let err = read_message(&mut Broken).unwrap_err();
    assert!(
        matches!(&err, StreamError::Io(e) if e.kind() == io::ErrorKind::TimedOut),
        "{err}"
    );
    let abort = Message::Abort(Exception {
        reason: "x".into(),
        kind: ExceptionType::Failed,
        trace: String::new(),
    });
    let err = write_message(&mut Broken, &abort).unwrap_err();
    assert!(
        matches!(&err, StreamError::Io(e) if e.kind() == io::ErrorKind::BrokenPipe),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_message_round_trips_through_a_stream(m in arb::message()) {
        let mut out = Vec::new();
        write_message(&mut out, &m).unwrap();
        prop_assert_eq!(out.clone(), encode(&m));
        let mut r = Cursor::new(out);
        prop_assert_eq!(read_message(&mut r).unwrap(), m);
        prop_assert!(matches!(read_message(&mut r), Err(StreamError::Closed)));
    }

    #[test]
    fn arbitrary_streams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut r = Cursor::new(bytes);
        for _ in 0..8 {
            if read_message(&mut r).is_err() {
                break;
            }
        }
    }
}
