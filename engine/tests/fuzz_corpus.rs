//! Replays the engine's fuzz corpora (`fuzz/corpus/{record,recovery,raft_step}/`) through the
//! same oracles the cargo-fuzz targets run (`raftwal::fuzzing`), so that CI exercises the
//! storage decoders, recovery and the consensus core on every saved input with stable Rust.
//! A corpus that went missing fails the test instead of passing on nothing.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} is missing: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("readable corpus directory").path();
            let data = std::fs::read(&path).expect("readable corpus file");
            (path, data)
        })
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 4, "corpus {} has only {} inputs", dir.display(), inputs.len());
    inputs
}

/// Runs every input; none may panic, and at least `passing` must get past the first check.
fn replay(target: &str, oracle: fn(&[u8]) -> bool, passing: usize) {
    let mut passed = 0;
    for (path, data) in corpus(target) {
        match std::panic::catch_unwind(|| oracle(&data)) {
            Ok(true) => passed += 1,
            Ok(false) => {}
            Err(_) => panic!("{target} panics on {}", path.display()),
        }
    }
    assert!(
        passed >= passing,
        "only {passed} inputs of the {target} corpus get past the first check: the seeds are stale"
    );
}

#[test]
fn record_corpus() {
    replay("record", raftwal::fuzzing::record, 3);
}

#[test]
fn recovery_corpus() {
    replay("recovery", raftwal::fuzzing::recovery, 3);
}

#[test]
fn raft_step_corpus() {
    replay("raft_step", raftwal::fuzzing::raft_step, 3);
}
