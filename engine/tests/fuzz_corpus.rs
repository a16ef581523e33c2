//! Replays the engine's fuzz corpora (`fuzz/corpus/{record,recovery,raft_step}/`) through the
//! same oracles the cargo-fuzz targets run (`raftwal::fuzzing`), so that CI exercises the
//! storage decoders, recovery and the consensus core on every saved input with stable Rust.
//! A corpus that went missing fails the test instead of passing on nothing.

use raftwal_wire::fuzzing::replay_corpus;
use std::path::PathBuf;

fn replay(target: &str, oracle: fn(&[u8]) -> bool) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    replay_corpus(&dir, oracle, 3);
}

#[test]
fn record_corpus() {
    replay("record", raftwal::fuzzing::record);
}

#[test]
fn recovery_corpus() {
    replay("recovery", raftwal::fuzzing::recovery);
}

#[test]
fn raft_step_corpus() {
    replay("raft_step", raftwal::fuzzing::raft_step);
}
