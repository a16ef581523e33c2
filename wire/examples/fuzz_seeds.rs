//! Writes the seed corpora of the codec fuzz targets: one valid encoding of every frame kind of
//! both protocols, a few streams of several frames, and a few broken frames.
//!
//! `cargo run -p raftwal-wire --example fuzz_seeds -- fuzz/corpus` (from the repository root).
//! Files are named `seed-<what>` and overwritten; other files in the corpus directories (those
//! the fuzzer found and `cargo fuzz cmin` kept) are left alone.

use bytes::Bytes;
use raftwal_wire::client::*;
use raftwal_wire::codec::{
    FrameEncoder, FrameLimits, FrameType, Hello, StreamKind, PROTOCOL_VERSION,
};
use raftwal_wire::message::*;
use raftwal_wire::types::*;
use std::path::Path;

fn entries(first: u64) -> Vec<Entry> {
    vec![
        Entry { index: LogIndex(first), term: Term(2), kind: EntryKind::Noop, data: Bytes::new() },
        Entry {
            index: LogIndex(first + 1),
            term: Term(2),
            kind: EntryKind::Normal,
            data: Bytes::from_static(b"small payload"),
        },
        Entry {
            index: LogIndex(first + 2),
            term: Term(3),
            kind: EntryKind::Tagged,
            data: Bytes::from(vec![7u8; 300]),
        },
    ]
}

fn messages() -> Vec<(&'static str, Message)> {
    let m = |body| Message { log: LogId(1), from: NodeId(1), to: NodeId(2), term: Term(3), body };
    vec![
        (
            "vote",
            m(MessageBody::RequestVote(RequestVote {
                pre_vote: false,
                last_log_index: LogIndex(10),
                last_log_term: Term(2),
                leadership_transfer: true,
            })),
        ),
        (
            "prevote",
            m(MessageBody::RequestVote(RequestVote {
                pre_vote: true,
                last_log_index: LogIndex(10),
                last_log_term: Term(2),
                leadership_transfer: false,
            })),
        ),
        (
            "vote-response",
            m(MessageBody::RequestVoteResponse(RequestVoteResponse {
                pre_vote: true,
                granted: true,
            })),
        ),
        (
            "append",
            m(MessageBody::AppendEntries(AppendEntries {
                prev_log_index: LogIndex(4),
                prev_log_term: Term(2),
                leader_commit: LogIndex(3),
                entries: entries(5),
            })),
        ),
        (
            "append-probe",
            m(MessageBody::AppendEntries(AppendEntries {
                prev_log_index: LogIndex(4),
                prev_log_term: Term(2),
                leader_commit: LogIndex(3),
                entries: vec![],
            })),
        ),
        (
            "append-success",
            m(MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success {
                match_index: LogIndex(7),
            })),
        ),
        (
            "append-reject",
            m(MessageBody::AppendEntriesResponse(AppendEntriesResponse::Reject {
                rejected_index: LogIndex(7),
                hint_index: LogIndex(5),
                hint_term: Term(1),
            })),
        ),
        (
            "heartbeat",
            m(MessageBody::Heartbeat(Heartbeat {
                leader_commit: LogIndex(3),
                read_context: Some(9),
            })),
        ),
        (
            "heartbeat-response",
            m(MessageBody::HeartbeatResponse(HeartbeatResponse { read_context: None })),
        ),
        ("timeout-now", m(MessageBody::TimeoutNow)),
        ("read-index", m(MessageBody::ReadIndex(ReadIndex { request_id: 4 }))),
        (
            "read-index-response",
            m(MessageBody::ReadIndexResponse(ReadIndexResponse {
                request_id: 4,
                read_index: Some(LogIndex(8)),
            })),
        ),
        (
            "log-start",
            m(MessageBody::LogStart(LogStart {
                index: LogIndex(40),
                term: Term(3),
                leader_commit: LogIndex(52),
                client_seqs: vec![(ClientId(7), ClientSeq(12)), (ClientId(9), ClientSeq(3))],
            })),
        ),
    ]
}

fn tagged(seq: u64, size: usize) -> TaggedPayload {
    TaggedPayload::new(ClientId(77), ClientSeq(seq), Bytes::from(vec![seq as u8; size]))
}

fn requests() -> Vec<(&'static str, ClientRequest)> {
    let log = LogId(1);
    vec![
        ("append", ClientRequest::Append(AppendRequest { log, tagged: tagged(1, 40) })),
        ("append-large", ClientRequest::Append(AppendRequest { log, tagged: tagged(2, 600) })),
        (
            "append-batch",
            ClientRequest::AppendBatch(AppendBatchRequest {
                log,
                items: vec![tagged(3, 0), tagged(4, 200)],
            }),
        ),
        (
            "read",
            ClientRequest::Read(ReadRequest {
                log,
                from: LogIndex(1),
                count_max: 100,
                size_bytes_max: 65536,
                linearizable: false,
            }),
        ),
        (
            "read-linearizable",
            ClientRequest::Read(ReadRequest {
                log,
                from: LogIndex(0),
                count_max: 10,
                size_bytes_max: 4096,
                linearizable: true,
            }),
        ),
        ("subscribe", ClientRequest::Subscribe(SubscribeRequest { log, from: LogIndex(5) })),
        ("status", ClientRequest::Status(StatusRequest { log })),
        ("compact", ClientRequest::Compact(CompactRequest { log, before: LogIndex(100) })),
    ]
}

fn responses() -> Vec<(&'static str, ClientResponse)> {
    let log = LogId(1);
    let hint_v4 = LeaderHint {
        node: NodeId(2),
        client_addr: Some("127.0.0.1:7001".parse().expect("literal address")),
    };
    let hint_v6 = LeaderHint {
        node: NodeId(3),
        client_addr: Some("[::1]:7002".parse().expect("literal address")),
    };
    vec![
        ("appended", ClientResponse::Appended(Appended { log, index: LogIndex(9), term: Term(3) })),
        (
            "appended-batch",
            ClientResponse::AppendedBatch(AppendedBatch {
                log,
                first_index: LogIndex(9),
                count: 2,
                term: Term(3),
            }),
        ),
        ("entries", ClientResponse::Entries(EntriesBatch { log, entries: entries(1) })),
        ("entries-empty", ClientResponse::Entries(EntriesBatch { log, entries: vec![] })),
        (
            "status",
            ClientResponse::Status(LogStatus {
                log,
                node: NodeId(1),
                role: Role::Follower,
                term: Term(3),
                leader: Some(hint_v6),
                first_index: LogIndex(1),
                last_index: LogIndex(9),
                commit_index: LogIndex(8),
            }),
        ),
        (
            "compacted",
            ClientResponse::Compacted(Compacted {
                log,
                node: NodeId(2),
                first_index: LogIndex(65),
            }),
        ),
        ("not-leader", ClientResponse::NotLeader(NotLeader { log, leader: Some(hint_v4) })),
        ("not-leader-unknown", ClientResponse::NotLeader(NotLeader { log, leader: None })),
        (
            "error",
            ClientResponse::Error(ClientError {
                code: ErrorCode::Compacted,
                message: "index 1 was compacted".into(),
            }),
        ),
    ]
}

fn write(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(format!("seed-{name}")), data)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::args().nth(1).ok_or("usage: fuzz_seeds CORPUS_DIR")?;
    let root = Path::new(&root);
    let limits = FrameLimits::default();
    let mut stream = Vec::new();

    let dir = root.join("peer_frame");
    for (name, kind) in [("hello-control", StreamKind::Control), ("hello-bulk", StreamKind::Bulk)] {
        let mut enc = FrameEncoder::new(limits);
        enc.encode_hello(&Hello { cluster: ClusterId(0xc1), node: NodeId(1), stream: kind })?;
        let bytes = enc.take_contiguous();
        stream.extend_from_slice(&bytes);
        write(&dir, name, &bytes)?;
    }
    for (name, message) in messages() {
        let mut enc = FrameEncoder::new(limits);
        enc.encode_message(&message)?;
        let bytes = enc.take_contiguous();
        stream.extend_from_slice(&bytes);
        write(&dir, name, &bytes)?;
        if name == "append" {
            write(&dir, "append-truncated", &bytes[..bytes.len() - 5])?;
            let mut bad = bytes.to_vec();
            bad[0] = 2;
            write(&dir, "append-bad-version", &bad)?;
        }
    }

    let dir = root.join("client_request");
    for (i, (name, request)) in requests().into_iter().enumerate() {
        let mut enc = FrameEncoder::new(limits);
        enc.encode_request(RequestId(i as u64 + 1), &request)?;
        let bytes = enc.take_contiguous();
        stream.extend_from_slice(&bytes);
        write(&dir, name, &bytes)?;
    }

    let dir = root.join("client_response");
    for (i, (name, response)) in responses().into_iter().enumerate() {
        let mut enc = FrameEncoder::new(limits);
        enc.encode_response(RequestId(i as u64 + 1), &response)?;
        let bytes = enc.take_contiguous();
        stream.extend_from_slice(&bytes);
        write(&dir, name, &bytes)?;
    }

    // The stream target's first byte picks the chunk size.
    let dir = root.join("frame_stream");
    for chunk_seed in [0u8, 7, 63] {
        let mut data = vec![chunk_seed];
        data.extend_from_slice(&stream);
        write(&dir, &format!("all-frames-chunk-{}", usize::from(chunk_seed % 64) + 1), &data)?;
    }
    // The top bit of the first byte has the assembler skip frames over the limit: a request
    // frame over the fuzz limit (its request id, then filler), then every frame.
    let oversized_size = raftwal_wire::fuzzing::FUZZ_FRAME_SIZE_BYTES_MAX + 100;
    let mut data = vec![0x80 | 7u8, PROTOCOL_VERSION, FrameType::AppendBatch.as_u8(), 0, 0];
    data.extend_from_slice(&oversized_size.to_le_bytes());
    data.extend_from_slice(&42u64.to_le_bytes());
    data.resize(data.len() + oversized_size as usize - 8, 0xAB);
    data.extend_from_slice(&stream);
    write(&dir, "oversized-skipped-chunk-8", &data)?;
    let mut cut = vec![5u8];
    cut.extend_from_slice(&stream[..stream.len() / 2]);
    write(&dir, "cut-mid-frame", &cut)?;
    println!("wrote seeds under {}", root.display());
    Ok(())
}
