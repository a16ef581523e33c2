//! Fuzzes the decoder of one whole peer-protocol frame (Hello or a Raft message): it must never panic, and what decodes must survive encode and
//! decode unchanged (the oracle is raftwal_wire::fuzzing::peer_frame).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = raftwal_wire::fuzzing::peer_frame(data);
});
