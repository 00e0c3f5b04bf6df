//! Control and data-pipe messages from an untrusted peer: decoding never panics, and whatever
//! decodes re-encodes to exactly the same bytes (one canonical encoding per message).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ring_pipe::msg::{
    ControlReply, ControlRequest, FileReply, FileRequest, ListenerReply, ListenerRequest, Protocol, StreamReply, Wire,
};

fn canonical<T: Wire + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    if let Ok(msg) = T::decode(bytes) {
        assert_eq!(msg.encode(), bytes, "{msg:?} has a second encoding");
    }
}

fuzz_target!(|data: &[u8]| {
    canonical::<ControlRequest>(data);
    canonical::<ControlReply>(data);
    canonical::<Protocol>(data);
    canonical::<FileRequest>(data);
    canonical::<FileReply>(data);
    canonical::<ListenerRequest>(data);
    canonical::<ListenerReply>(data);
    canonical::<StreamReply>(data);
});
