//! Fuzzes raftwal::fuzzing::record (see its documentation for what the oracle checks): it must
//! never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = raftwal::fuzzing::record(data);
});
