//! Fuzzes the decoder of a stream of frames cut into chunks, reassembled and decoded as the transport does: it must never panic, and what decodes must survive encode and
//! decode unchanged (the oracle is raftwal_wire::fuzzing::frame_stream).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = raftwal_wire::fuzzing::frame_stream(data);
});
