//! Fuzzes the decoder of one whole client request frame: it must never panic, and what decodes must survive encode and
//! decode unchanged (the oracle is raftwal_wire::fuzzing::client_request).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = raftwal_wire::fuzzing::client_request(data);
});
