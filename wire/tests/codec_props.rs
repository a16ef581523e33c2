//! Property tests of the codec: encode-then-decode is the identity for arbitrary messages of
//! both protocols, also when the stream is cut into arbitrary chunks; decoding arbitrary bytes
//! never panics.

use bytes::Bytes;
use proptest::prelude::*;
use raftwal_wire::client::*;
use raftwal_wire::codec::*;
use raftwal_wire::message::*;
use raftwal_wire::types::*;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

fn arb_data(kind: EntryKind) -> BoxedStrategy<Bytes> {
    // Sizes on both sides of the encoder's inline threshold, so both paths are exercised.
    let (small, large) = match kind {
        EntryKind::Noop => return Just(Bytes::new()).boxed(),
        EntryKind::Tagged => (16..300usize, 4090..4200usize),
        EntryKind::Normal => (0..300usize, 4090..4200usize),
    };
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), small),
        1 => proptest::collection::vec(any::<u8>(), large),
    ]
    .prop_map(Bytes::from)
    .boxed()
}

fn arb_entry_parts() -> impl Strategy<Value = (u64, EntryKind, Bytes)> {
    prop_oneof![Just(EntryKind::Normal), Just(EntryKind::Noop), Just(EntryKind::Tagged)]
        .prop_flat_map(|kind| (any::<u64>(), Just(kind), arb_data(kind)))
}

fn arb_run(first: u64) -> impl Strategy<Value = Vec<Entry>> {
    proptest::collection::vec(arb_entry_parts(), 0..12).prop_map(move |parts| {
        parts
            .into_iter()
            .enumerate()
            .map(|(i, (term, kind, data))| Entry {
                index: LogIndex(first + i as u64),
                term: Term(term),
                kind,
                data,
            })
            .collect()
    })
}

fn arb_body() -> impl Strategy<Value = MessageBody> {
    prop_oneof![
        (any::<bool>(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(p, i, t, l)| {
            MessageBody::RequestVote(RequestVote {
                pre_vote: p,
                last_log_index: LogIndex(i),
                last_log_term: Term(t),
                leadership_transfer: l,
            })
        }),
        (any::<bool>(), any::<bool>()).prop_map(|(p, g)| {
            MessageBody::RequestVoteResponse(RequestVoteResponse { pre_vote: p, granted: g })
        }),
        (0..u64::MAX / 2, any::<u64>(), any::<u64>()).prop_flat_map(|(prev, t, c)| {
            arb_run(prev + 1).prop_map(move |entries| {
                MessageBody::AppendEntries(AppendEntries {
                    prev_log_index: LogIndex(prev),
                    prev_log_term: Term(t),
                    leader_commit: LogIndex(c),
                    entries,
                })
            })
        }),
        any::<u64>().prop_map(|m| MessageBody::AppendEntriesResponse(
            AppendEntriesResponse::Success { match_index: LogIndex(m) }
        )),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(r, h, t)| {
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Reject {
                rejected_index: LogIndex(r),
                hint_index: LogIndex(h),
                hint_term: Term(t),
            })
        }),
        (any::<u64>(), any::<Option<u64>>()).prop_map(|(c, r)| MessageBody::Heartbeat(Heartbeat {
            leader_commit: LogIndex(c),
            read_context: r
        })),
        any::<Option<u64>>()
            .prop_map(|r| MessageBody::HeartbeatResponse(HeartbeatResponse { read_context: r })),
        Just(MessageBody::TimeoutNow),
        any::<u64>().prop_map(|r| MessageBody::ReadIndex(ReadIndex { request_id: r })),
        (any::<u64>(), any::<Option<u64>>()).prop_map(|(r, i)| MessageBody::ReadIndexResponse(
            ReadIndexResponse { request_id: r, read_index: i.map(LogIndex) }
        )),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec((any::<u64>(), any::<u64>()), 0..8)
        )
            .prop_map(|(i, t, c, seqs)| MessageBody::LogStart(LogStart {
                index: LogIndex(i),
                term: Term(t),
                leader_commit: LogIndex(c),
                client_seqs: seqs
                    .into_iter()
                    .map(|(id, seq)| (ClientId(id), ClientSeq(seq)))
                    .collect(),
            })),
    ]
}

fn arb_message() -> impl Strategy<Value = Message> {
    (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), arb_body()).prop_map(
        |(log, from, to, term, body)| Message {
            log: LogId(log),
            from: NodeId(from),
            to: NodeId(to),
            term: Term(term),
            body,
        },
    )
}

fn arb_tagged() -> impl Strategy<Value = TaggedPayload> {
    (any::<u64>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300))
        .prop_map(|(c, s, p)| TaggedPayload::new(ClientId(c), ClientSeq(s), Bytes::from(p)))
}

fn arb_request() -> impl Strategy<Value = ClientRequest> {
    let log = any::<u64>().prop_map(LogId);
    prop_oneof![
        (log.clone(), arb_tagged())
            .prop_map(|(log, tagged)| ClientRequest::Append(AppendRequest { log, tagged })),
        (log.clone(), proptest::collection::vec(arb_tagged(), 0..8))
            .prop_map(|(log, items)| ClientRequest::AppendBatch(AppendBatchRequest { log, items })),
        (log.clone(), any::<u64>(), any::<u32>(), any::<u32>(), any::<bool>()).prop_map(
            |(log, f, c, s, linearizable)| {
                ClientRequest::Read(ReadRequest {
                    log,
                    from: LogIndex(f),
                    count_max: c,
                    size_bytes_max: s,
                    linearizable,
                })
            }
        ),
        (log.clone(), any::<u64>()).prop_map(|(log, f)| ClientRequest::Subscribe(
            SubscribeRequest { log, from: LogIndex(f) }
        )),
        log.clone().prop_map(|log| ClientRequest::Status(StatusRequest { log })),
        (log, any::<u64>()).prop_map(|(log, b)| ClientRequest::Compact(CompactRequest {
            log,
            before: LogIndex(b)
        })),
    ]
}

fn arb_hint() -> impl Strategy<Value = Option<LeaderHint>> {
    let addr = prop_oneof![
        Just(None),
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| Some(SocketAddr::from((ip, port)))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| Some(SocketAddr::V6(
            SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0)
        ))),
    ];
    proptest::option::of(
        (any::<u64>(), addr).prop_map(|(n, a)| LeaderHint { node: NodeId(n), client_addr: a }),
    )
}

fn arb_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        Just(ErrorCode::UnknownLog),
        Just(ErrorCode::Overloaded),
        Just(ErrorCode::Compacted),
        Just(ErrorCode::InvalidRequest),
        Just(ErrorCode::ShuttingDown),
        Just(ErrorCode::Poisoned),
        Just(ErrorCode::Internal),
        Just(ErrorCode::SubscriberLagged),
    ]
}

fn arb_response() -> impl Strategy<Value = ClientResponse> {
    let log = any::<u64>().prop_map(LogId);
    prop_oneof![
        (log.clone(), any::<u64>(), any::<u64>()).prop_map(|(log, i, t)| {
            ClientResponse::Appended(Appended { log, index: LogIndex(i), term: Term(t) })
        }),
        (log.clone(), any::<u64>(), any::<u32>(), any::<u64>()).prop_map(|(log, f, c, t)| {
            ClientResponse::AppendedBatch(AppendedBatch {
                log,
                first_index: LogIndex(f),
                count: c,
                term: Term(t),
            })
        }),
        (log.clone(), 1..u64::MAX / 2).prop_flat_map(|(log, first)| arb_run(first)
            .prop_map(move |entries| ClientResponse::Entries(EntriesBatch { log, entries }))),
        (
            log.clone(),
            any::<u64>(),
            prop_oneof![Just(Role::Follower), Just(Role::Candidate), Just(Role::Leader)],
            any::<u64>(),
            arb_hint(),
            any::<(u64, u64, u64)>()
        )
            .prop_map(|(log, node, role, term, leader, (f, l, c))| {
                ClientResponse::Status(LogStatus {
                    log,
                    node: NodeId(node),
                    role,
                    term: Term(term),
                    leader,
                    first_index: LogIndex(f),
                    last_index: LogIndex(l),
                    commit_index: LogIndex(c),
                })
            }),
        (log.clone(), any::<u64>(), any::<u64>()).prop_map(|(log, n, f)| {
            ClientResponse::Compacted(Compacted { log, node: NodeId(n), first_index: LogIndex(f) })
        }),
        (log, arb_hint())
            .prop_map(|(log, leader)| ClientResponse::NotLeader(NotLeader { log, leader })),
        (arb_code(), ".{0,40}")
            .prop_map(|(code, message)| ClientResponse::Error(ClientError { code, message })),
    ]
}

/// Cuts `stream` at the given relative positions and feeds the pieces to an assembler.
fn reassemble(stream: &Bytes, cuts: &[usize]) -> Vec<RawFrame> {
    let mut asm = FrameAssembler::new(FrameLimits::default());
    let mut positions: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    positions.push(0);
    positions.push(stream.len());
    positions.sort_unstable();
    let mut frames = Vec::new();
    for w in positions.windows(2) {
        asm.push(stream.slice(w[0]..w[1]));
        while let Some(f) = asm.next_frame().expect("valid stream") {
            frames.push(f);
        }
    }
    asm.finish().expect("stream ends on a frame boundary");
    frames
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn peer_message_roundtrip(msg in arb_message()) {
        let mut enc = FrameEncoder::new(FrameLimits::default());
        enc.encode_message(&msg).unwrap();
        let size = enc.pending_size_bytes();
        let bytes = enc.take_contiguous();
        prop_assert_eq!(bytes.len(), size);
        let decoded = decode_peer_frame_bytes(bytes, &FrameLimits::default()).unwrap();
        prop_assert_eq!(decoded, PeerFrame::Message(msg));
    }

    #[test]
    fn hello_roundtrip(cluster in any::<u64>(), node in any::<u64>(), bulk in any::<bool>()) {
        let hello = Hello {
            cluster: ClusterId(cluster),
            node: NodeId(node),
            stream: if bulk { StreamKind::Bulk } else { StreamKind::Control },
        };
        let mut enc = FrameEncoder::new(FrameLimits::default());
        enc.encode_hello(&hello).unwrap();
        let decoded = decode_peer_frame_bytes(enc.take_contiguous(), &FrameLimits::default());
        prop_assert_eq!(decoded.unwrap(), PeerFrame::Hello(hello));
    }

    #[test]
    fn client_request_roundtrip(id in any::<u64>(), request in arb_request()) {
        let mut enc = FrameEncoder::new(FrameLimits::default());
        enc.encode_request(RequestId(id), &request).unwrap();
        let decoded =
            decode_client_request_bytes(enc.take_contiguous(), &FrameLimits::default()).unwrap();
        prop_assert_eq!(decoded, (RequestId(id), request));
    }

    #[test]
    fn client_response_roundtrip(id in any::<u64>(), response in arb_response()) {
        let mut enc = FrameEncoder::new(FrameLimits::default());
        enc.encode_response(RequestId(id), &response).unwrap();
        let decoded =
            decode_client_response_bytes(enc.take_contiguous(), &FrameLimits::default()).unwrap();
        prop_assert_eq!(decoded, (RequestId(id), response));
    }

    #[test]
    fn chunked_stream_of_messages_roundtrips(
        msgs in proptest::collection::vec(arb_message(), 1..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let mut enc = FrameEncoder::new(FrameLimits::default());
        for m in &msgs {
            enc.encode_message(m).unwrap();
        }
        let mut chunks = Vec::new();
        enc.take_chunks(&mut chunks);
        let stream: Bytes = chunks.concat().into();
        let frames = reassemble(&stream, &cuts);
        prop_assert_eq!(frames.len(), msgs.len());
        for (f, m) in frames.into_iter().zip(msgs) {
            prop_assert_eq!(decode_peer_frame(f).unwrap(), PeerFrame::Message(m));
        }
    }

    #[test]
    fn decode_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = raftwal_wire::fuzzing::peer_frame(&data);
        let _ = raftwal_wire::fuzzing::client_request(&data);
        let _ = raftwal_wire::fuzzing::client_response(&data);
        let _ = raftwal_wire::fuzzing::frame_stream(&data);
    }

    #[test]
    fn decode_arbitrary_bodies_behind_valid_headers_never_panics(
        frame_type in any::<u8>(),
        body in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        // A valid header gets past the first check, so the body decoders see the random bytes.
        let mut data = vec![PROTOCOL_VERSION, frame_type, 0, 0];
        data.extend_from_slice(&(body.len() as u32).to_le_bytes());
        data.extend_from_slice(&body);
        let _ = raftwal_wire::fuzzing::peer_frame(&data);
        let _ = raftwal_wire::fuzzing::client_request(&data);
        let _ = raftwal_wire::fuzzing::client_response(&data);
    }
}

#[test]
fn large_payloads_travel_as_chunks_not_copies() {
    let payload = Bytes::from(vec![9u8; INLINE_PAYLOAD_BYTES_MAX + 1]);
    let msg = Message {
        log: LogId(1),
        from: NodeId(1),
        to: NodeId(2),
        term: Term(3),
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: LogIndex(10),
            prev_log_term: Term(3),
            leader_commit: LogIndex(9),
            entries: vec![Entry {
                index: LogIndex(11),
                term: Term(3),
                kind: EntryKind::Normal,
                data: payload.clone(),
            }],
        }),
    };
    let mut enc = FrameEncoder::new(FrameLimits::default());
    enc.encode_message(&msg).unwrap();
    let mut chunks = Vec::new();
    enc.take_chunks(&mut chunks);
    assert!(
        chunks.iter().any(|c| c.as_ptr() == payload.as_ptr() && c.len() == payload.len()),
        "the payload is handed over as its own chunk, pointing at the caller's memory"
    );
}

#[test]
fn decoded_payloads_are_slices_of_the_frame() {
    let tagged = TaggedPayload::new(ClientId(5), ClientSeq(6), Bytes::from(vec![1u8; 1000]));
    let mut enc = FrameEncoder::new(FrameLimits::default());
    enc.encode_request(
        RequestId(1),
        &ClientRequest::Append(AppendRequest { log: LogId(1), tagged }),
    )
    .unwrap();
    let frame = enc.take_contiguous();
    let range = frame.as_ptr_range();
    let (_, request) = decode_client_request_bytes(frame.clone(), &FrameLimits::default()).unwrap();
    let ClientRequest::Append(append) = request else { panic!("not an append") };
    assert_eq!(append.tagged.client_id(), ClientId(5));
    assert_eq!(append.tagged.seq(), ClientSeq(6));
    let data = append.tagged.into_entry_data();
    assert_eq!(data.len(), 1016, "tag and payload form one entry's data");
    assert!(range.contains(&data.as_ptr()), "the entry data points into the frame buffer");
}

#[test]
fn encoder_refuses_oversized_and_non_consecutive_batches() {
    let limits = FrameLimits::new(4096).unwrap();
    let mut enc = FrameEncoder::new(limits);
    let entry = |i: u64, size: usize| Entry {
        index: LogIndex(i),
        term: Term(1),
        kind: EntryKind::Normal,
        data: Bytes::from(vec![0u8; size]),
    };
    let msg = |entries: Vec<Entry>| Message {
        log: LogId(1),
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            leader_commit: LogIndex(0),
            entries,
        }),
    };
    assert!(matches!(
        enc.encode_message(&msg(vec![entry(1, 5000)])),
        Err(EncodeError::FrameTooLarge { max_bytes: 4096, .. })
    ));
    assert_eq!(
        enc.encode_message(&msg(vec![entry(1, 10), entry(3, 10)])),
        Err(EncodeError::EntriesNotConsecutive { position: 1, found: 3, expected: 2 })
    );
    assert!(enc.is_empty(), "a refused frame leaves nothing behind");
}

#[test]
fn decode_errors_say_what_is_wrong() {
    let limits = FrameLimits::default();
    let hb = Message {
        log: LogId(1),
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::Heartbeat(Heartbeat { leader_commit: LogIndex(0), read_context: None }),
    };
    let mut enc = FrameEncoder::new(limits);
    enc.encode_message(&hb).unwrap();
    let good = enc.take_contiguous().to_vec();

    // Truncated body: the header promises more than is there.
    let err = decode_peer_frame_bytes(Bytes::copy_from_slice(&good[..good.len() - 1]), &limits)
        .unwrap_err();
    assert!(matches!(err, DecodeError::Truncated { what: "frame body", .. }), "{err}");

    // An option tag that is neither 0 nor 1.
    let mut bad = good.clone();
    *bad.last_mut().unwrap() = 7;
    let err = decode_peer_frame_bytes(Bytes::from(bad), &limits).unwrap_err();
    assert_eq!(err, DecodeError::InvalidValue { what: "heartbeat read context", value: 7 });
    assert_eq!(err.to_string(), "invalid heartbeat read context: 7");

    // A client request on a peer stream.
    let mut bad = good.clone();
    bad[1] = FrameType::Status.as_u8();
    let err = decode_peer_frame_bytes(Bytes::from(bad), &limits).unwrap_err();
    assert!(matches!(err, DecodeError::UnexpectedFrameType { .. }), "{err}");

    // An AppendEntries whose entry count cannot fit in the frame allocates nothing.
    let mut enc = FrameEncoder::new(limits);
    let ae = Message {
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            leader_commit: LogIndex(0),
            entries: vec![],
        }),
        ..hb
    };
    enc.encode_message(&ae).unwrap();
    let mut bad = enc.take_contiguous().to_vec();
    let n = bad.len();
    bad[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = decode_peer_frame_bytes(Bytes::from(bad), &limits).unwrap_err();
    assert_eq!(
        err,
        DecodeError::CountTooLarge { what: "entry", count: u32::MAX as u64, available: 0 }
    );
}

/// A LogStart carries as many clients as `log_start_clients_max` says and no more, at the
/// smallest frame limit and at the one that holds a whole deduplication table (4,096 clients);
/// one that claims more clients than its frame holds allocates nothing.
#[test]
fn a_log_start_carries_as_many_clients_as_its_frame_holds() {
    let start = |clients: usize| Message {
        log: LogId(1),
        from: NodeId(1),
        to: NodeId(2),
        term: Term(3),
        body: MessageBody::LogStart(LogStart {
            index: LogIndex(100),
            term: Term(2),
            leader_commit: LogIndex(120),
            client_seqs: (0..clients as u64).map(|c| (ClientId(c), ClientSeq(c * 7))).collect(),
        }),
    };
    for (frame, clients_max) in [(4096, 252), (4096 * 16 + 60, 4096)] {
        let limits = FrameLimits::new(frame).unwrap();
        assert_eq!(log_start_clients_max(&limits), clients_max);
        let mut enc = FrameEncoder::new(limits);
        let full = start(clients_max);
        enc.encode_message(&full).unwrap();
        let frame_bytes = enc.take_contiguous();
        let decoded = decode_peer_frame_bytes(frame_bytes, &limits).unwrap();
        assert_eq!(decoded, PeerFrame::Message(full));
        assert!(matches!(
            enc.encode_message(&start(clients_max + 1)),
            Err(EncodeError::FrameTooLarge { .. })
        ));
    }
    let limits = FrameLimits::default();
    let mut enc = FrameEncoder::new(limits);
    enc.encode_message(&start(1)).unwrap();
    let mut bad = enc.take_contiguous().to_vec();
    let n = bad.len();
    bad[n - 20..n - 16].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = decode_peer_frame_bytes(Bytes::from(bad), &limits).unwrap_err();
    assert_eq!(
        err,
        DecodeError::CountTooLarge {
            what: "log start client",
            count: u32::MAX as u64,
            available: 16
        }
    );
}
