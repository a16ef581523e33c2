//! Fuzzes raftwal::fuzzing::raft_step (see its documentation for what the oracle checks): it must
//! never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = raftwal::fuzzing::raft_step(data);
});
