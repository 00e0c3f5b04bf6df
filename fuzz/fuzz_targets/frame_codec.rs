//! The frame decoder faces an untrusted guest. Two checks: arbitrary bytes in arbitrary chunks
//! never panic it and leave it either in sync or poisoned (never silently skipping); and frames
//! the encoder wrote come back intact whatever the chunking.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use ring_pipe::frame::{FrameDecoder, FrameError, frame_to_vec};

#[derive(Arbitrary, Debug)]
struct Input {
    raw: Vec<u8>,
    payloads: Vec<Vec<u8>>,
    chunks: Vec<u8>,
}

fn feed(decoder: &mut FrameDecoder, bytes: &[u8], chunks: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut sizes = chunks.iter().map(|c| usize::from(*c).max(1)).cycle();
    while pos < bytes.len() {
        let end = (pos + sizes.next().unwrap_or(1)).min(bytes.len());
        decoder.push(&bytes[pos..end]);
        pos = end;
        while let Some(f) = decoder.next_frame()? {
            out.push(f);
        }
    }
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary(&mut Unstructured::new(data)) else { return };
    let mut hostile = FrameDecoder::new();
    if feed(&mut hostile, &input.raw, &input.chunks).is_err() {
        assert!(hostile.is_poisoned() || hostile.finish().is_err());
    }
    let mut stream = Vec::new();
    for p in &input.payloads {
        stream.extend(frame_to_vec(p).expect("arbitrary vectors are far below the frame limit"));
    }
    let mut honest = FrameDecoder::new();
    let frames = feed(&mut honest, &stream, &input.chunks).expect("well-formed stream");
    assert_eq!(frames, input.payloads);
    assert_eq!(honest.finish(), Ok(()));
});
