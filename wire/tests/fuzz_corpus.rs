//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) through the same oracles the cargo-fuzz
//! targets run, so that CI exercises every decoder on every saved input with stable Rust.
//! A corpus that went missing fails the test instead of passing on nothing.

use raftwal_wire::fuzzing::replay_corpus;

#[test]
fn peer_frame_corpus() {
    replay_corpus("peer_frame", raftwal_wire::fuzzing::peer_frame);
}

#[test]
fn client_request_corpus() {
    replay_corpus("client_request", raftwal_wire::fuzzing::client_request);
}

#[test]
fn client_response_corpus() {
    replay_corpus("client_response", raftwal_wire::fuzzing::client_response);
}

#[test]
fn frame_stream_corpus() {
    replay_corpus("frame_stream", raftwal_wire::fuzzing::frame_stream);
}
