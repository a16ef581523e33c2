//! Replays the engine's fuzz corpora (`fuzz/corpus/{record,recovery,raft_step}/`) through the
//! same oracles the cargo-fuzz targets run (`raftwal::fuzzing`), so that CI exercises the
//! storage decoders, recovery and the consensus core on every saved input with stable Rust.
//! A corpus that went missing fails the test instead of passing on nothing.

use raftwal_wire::fuzzing::replay_corpus;

#[test]
fn record_corpus() {
    replay_corpus("record", raftwal::fuzzing::record);
}

#[test]
fn recovery_corpus() {
    replay_corpus("recovery", raftwal::fuzzing::recovery);
}

#[test]
fn raft_step_corpus() {
    replay_corpus("raft_step", raftwal::fuzzing::raft_step);
}
