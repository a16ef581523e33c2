//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) through the same oracles the cargo-fuzz
//! targets run, so that CI exercises every decoder on every saved input with stable Rust.
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

fn replay(target: &str, oracle: fn(&[u8]) -> bool) {
    let mut decoded = 0;
    for (path, data) in corpus(target) {
        match std::panic::catch_unwind(|| oracle(&data)) {
            Ok(true) => decoded += 1,
            Ok(false) => {}
            Err(_) => panic!("{target} panics on {}", path.display()),
        }
    }
    assert!(
        decoded >= 3,
        "only {decoded} inputs of the {target} corpus decode: the seeds are stale"
    );
}

#[test]
fn peer_frame_corpus() {
    replay("peer_frame", raftwal_wire::fuzzing::peer_frame);
}

#[test]
fn client_request_corpus() {
    replay("client_request", raftwal_wire::fuzzing::client_request);
}

#[test]
fn client_response_corpus() {
    replay("client_response", raftwal_wire::fuzzing::client_response);
}

#[test]
fn frame_stream_corpus() {
    replay("frame_stream", raftwal_wire::fuzzing::frame_stream);
}
