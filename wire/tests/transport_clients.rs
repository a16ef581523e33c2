//! The client protocol over loopback QUIC: pipelined requests answered out of order, NotLeader
//! hints, an unanswered request, subscriptions with a bounded window, a garbage-sending client,
//! and a client without a client certificate.

// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use bytes::Bytes;
use raftwal_wire::client::*;
use raftwal_wire::codec::FrameLimits;
use raftwal_wire::tls::certs::ClusterCa;
use raftwal_wire::tls::names::cluster_name;
use raftwal_wire::tls::ALPN_CLIENT;
use raftwal_wire::transport::*;
use raftwal_wire::types::*;
use std::time::Duration;
use support::*;

fn append_request(seq: u64, size: usize) -> ClientRequest {
    ClientRequest::Append(AppendRequest {
        log: LogId(7),
        tagged: TaggedPayload::new(
            ClientId(42),
            ClientSeq(seq),
            Bytes::from(vec![seq as u8; size]),
        ),
    })
}

/// A client of `ca`'s cluster with default settings, connected to `node`.
async fn connect_client(ca: &ClusterCa, node: &Transport) -> (ClientEndpoint, ClientConnection) {
    let client = ClientEndpoint::open(
        &client_identity(ca),
        loopback(),
        &QuicTuning::default(),
        FrameLimits::default(),
    )
    .unwrap();
    let conn = client.connect(node.local_addr().unwrap()).await.unwrap();
    (client, conn)
}

async fn next_request(events: &mut TransportEvents) -> ClientRequestEvent {
    wait_for(events, |e| match e {
        TransportEvent::ClientRequest(r) => Some(r),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn pipelined_requests_are_delivered_in_order_and_answered_by_id() {
    let ca = ClusterCa::generate(None).unwrap();
    let (t1, mut e1) = start(fast_config(1, loopback()), &node_identity(&ca, 1));
    let (client, conn) = connect_client(&ca, &t1).await;

    let requests: Vec<ClientRequest> = vec![
        append_request(1, 5000),
        append_request(2, 10),
        ClientRequest::Status(StatusRequest { log: LogId(7) }),
        ClientRequest::Read(ReadRequest {
            log: LogId(7),
            from: LogIndex(1),
            count_max: 10,
            size_bytes_max: 1 << 20,
            linearizable: false,
        }),
    ];
    let hint = LeaderHint { node: NodeId(3), client_addr: Some("10.1.2.3:7000".parse().unwrap()) };
    let server = async {
        // Collect all four, then answer in reverse order.
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(next_request(&mut e1).await);
        }
        let order: Vec<ClientRequest> = got.iter().map(|r| r.request.clone()).collect();
        assert_eq!(order, requests, "delivered in the order sent");
        let ClientRequest::Append(first) = &got[0].request else { panic!() };
        assert_eq!(first.tagged.client_id(), ClientId(42));
        assert_eq!(first.tagged.clone().into_entry_data().len(), 16 + 5000);
        for event in got.into_iter().rev() {
            let answer = match &event.request {
                ClientRequest::Append(a) => ClientResponse::Appended(Appended {
                    log: a.log,
                    index: LogIndex(a.tagged.seq().get() * 10),
                    term: Term(1),
                }),
                ClientRequest::Status(_) => {
                    ClientResponse::NotLeader(NotLeader { log: LogId(7), leader: Some(hint) })
                }
                ClientRequest::Read(r) => ClientResponse::Entries(EntriesBatch {
                    log: r.log,
                    entries: vec![Entry {
                        index: LogIndex(1),
                        term: Term(1),
                        kind: EntryKind::Normal,
                        data: Bytes::from_static(b"one"),
                    }],
                }),
                _ => unreachable!(),
            };
            event.responder.respond(&answer).unwrap();
        }
    };
    let client_side = async {
        let futures: Vec<_> = requests.iter().map(|r| conn.request(r)).collect();
        let mut answers = Vec::new();
        for f in futures {
            answers.push(f);
        }
        let (a, b, c, d) = tokio::join!(
            answers.remove(0),
            answers.remove(0),
            answers.remove(0),
            answers.remove(0)
        );
        (a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap())
    };
    let (_, (a1, a2, status, read)) = tokio::join!(server, client_side);
    assert_eq!(
        a1,
        ClientResponse::Appended(Appended { log: LogId(7), index: LogIndex(10), term: Term(1) })
    );
    assert_eq!(
        a2,
        ClientResponse::Appended(Appended { log: LogId(7), index: LogIndex(20), term: Term(1) })
    );
    assert_eq!(status, ClientResponse::NotLeader(NotLeader { log: LogId(7), leader: Some(hint) }));
    let ClientResponse::Entries(batch) = read else { panic!("{read:?}") };
    assert_eq!(batch.entries[0].data, Bytes::from_static(b"one"));

    // A request the node drops without answering still gets an answer.
    let dropped = append_request(3, 1);
    let (answer, ()) = tokio::join!(conn.request(&dropped), async {
        drop(next_request(&mut e1).await);
    });
    match answer.unwrap() {
        ClientResponse::Error(e) => assert_eq!(e.code, ErrorCode::Internal),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        conn.request(&ClientRequest::Subscribe(SubscribeRequest {
            log: LogId(7),
            from: LogIndex(1)
        }))
        .await,
        Err(RequestError::SubscribeNotARequest)
    );
    t1.close();
    client.close();
}

#[tokio::test]
async fn subscription_is_bounded_by_its_window_and_resumes_when_read() {
    let ca = ClusterCa::generate(None).unwrap();
    let mut config = fast_config(1, loopback());
    config.subscription_window_bytes = 64 * 1024;
    config.quic.stream_receive_window_bytes = 128 * 1024;
    config.quic.connection_receive_window_bytes = 256 * 1024;
    let (t1, mut e1) = start(config, &node_identity(&ca, 1));
    let (client, conn) = connect_client(&ca, &t1).await;
    let mut sub =
        conn.subscribe(SubscribeRequest { log: LogId(7), from: LogIndex(1) }).await.unwrap();
    let event = wait_for(&mut e1, |e| match e {
        TransportEvent::Subscribe(s) => Some(s),
        _ => None,
    })
    .await;
    assert_eq!(event.request, SubscribeRequest { log: LogId(7), from: LogIndex(1) });
    let sink = event.sink;
    let batch = |first: u64| -> Vec<Entry> {
        (0..8)
            .map(|i| Entry {
                index: LogIndex(first + i),
                term: Term(2),
                kind: EntryKind::Normal,
                data: Bytes::from(vec![(first + i) as u8; 1024]),
            })
            .collect()
    };

    // The client does not read: the sink fills up and refuses.
    let mut next = 1u64;
    tokio::time::timeout(DEADLINE, async {
        loop {
            match sink.try_send(&batch(next)) {
                Ok(()) => next += 8,
                Err(SinkError::Full) => return,
                Err(e) => panic!("{e}"),
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the sink fills while nobody reads");
    assert!(!sink.has_room());

    // The client reads everything sent so far, in order; the sink has room again.
    let sent_last = next - 1;
    let reader = async {
        let mut expect = 1u64;
        while expect <= sent_last {
            let b = sub.next().await.unwrap().unwrap();
            for e in b.entries {
                assert_eq!(e.index, LogIndex(expect));
                assert_eq!(e.data[0], expect as u8);
                expect += 1;
            }
        }
    };
    let (_, ready) = tokio::join!(reader, sink.ready());
    ready.unwrap();
    sink.try_send(&batch(next)).unwrap();
    assert_eq!(sub.next().await.unwrap().unwrap().entries[0].index, LogIndex(next));

    // The node ends the subscription with a reason.
    sink.end(Some(ClientError { code: ErrorCode::SubscriberLagged, message: "too slow".into() }));
    match sub.next().await {
        Err(RequestError::Server(e)) => assert_eq!(e.code, ErrorCode::SubscriberLagged),
        other => panic!("{other:?}"),
    }

    // A subscriber that goes away is noticed by the sink.
    let sub = conn.subscribe(SubscribeRequest { log: LogId(7), from: LogIndex(5) }).await.unwrap();
    let event = wait_for(&mut e1, |e| match e {
        TransportEvent::Subscribe(s) => Some(s),
        _ => None,
    })
    .await;
    drop(sub);
    wait_until(|| event.sink.is_closed()).await;
    assert_eq!(event.sink.try_send(&batch(5)), Err(SinkError::Closed));
    t1.close();
    client.close();
}

/// A subscription ended while another holder of its sink waits for room (the node's task that
/// resumes a paused subscriber) still reaches its subscriber with the reason, after the batches
/// queued before it, and the waiting holder's wait fails instead of lasting. (Found by a review:
/// the node ended a shared sink without the reason, and the stream finished only when the last
/// holder let go.)
#[tokio::test]
async fn a_subscription_ended_while_shared_tells_its_reason() {
    let ca = ClusterCa::generate(None).unwrap();
    let mut config = fast_config(1, loopback());
    config.subscription_window_bytes = 16 * 1024;
    config.quic.stream_receive_window_bytes = 32 * 1024;
    config.quic.connection_receive_window_bytes = 64 * 1024;
    let (t1, mut e1) = start(config, &node_identity(&ca, 1));
    let (client, conn) = connect_client(&ca, &t1).await;
    let mut sub =
        conn.subscribe(SubscribeRequest { log: LogId(7), from: LogIndex(1) }).await.unwrap();
    let sink = wait_for(&mut e1, |e| match e {
        TransportEvent::Subscribe(s) => Some(s.sink),
        _ => None,
    })
    .await;
    let sink = std::sync::Arc::new(sink);
    let entry = |index: u64| Entry {
        index: LogIndex(index),
        term: Term(2),
        kind: EntryKind::Normal,
        data: Bytes::from(vec![index as u8; 1024]),
    };
    // Nobody reads: the sink fills.
    let mut next = 1u64;
    tokio::time::timeout(DEADLINE, async {
        loop {
            match sink.try_send(&[entry(next)]) {
                Ok(()) => next += 1,
                Err(SinkError::Full) => return,
                Err(e) => panic!("{e}"),
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the sink fills while nobody reads");
    let waiter = {
        let sink = sink.clone();
        tokio::spawn(async move { sink.ready().await })
    };
    sink.end(Some(ClientError { code: ErrorCode::Poisoned, message: "disk failed".into() }));
    // The subscriber gets every batch sent, then the reason.
    let mut expect = 1u64;
    let reason = loop {
        match sub.next().await {
            Ok(Some(batch)) => {
                for e in batch.entries {
                    assert_eq!(e.index, LogIndex(expect));
                    expect += 1;
                }
            }
            Err(RequestError::Server(e)) => break e,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(expect, next, "batches sent before the end were lost");
    assert_eq!((reason.code, reason.message.as_str()), (ErrorCode::Poisoned, "disk failed"));
    let waited = tokio::time::timeout(DEADLINE, waiter).await.expect("the wait lasts").unwrap();
    assert_eq!(waited, Err(SinkError::Closed));
    assert!(sink.is_closed());
    t1.close();
    client.close();
}

async fn next_subscribe(events: &mut TransportEvents) -> SubscribeEvent {
    wait_for(events, |e| match e {
        TransportEvent::Subscribe(s) => Some(s),
        _ => None,
    })
    .await
}

/// A subscription whose sink the node drops without ending it (a Subscribe event dropped before
/// the shard took it, or a sink dropped after a few batches) ends at its subscriber once the
/// batches queued before are read, as a clean end of the stream, with the client still sending
/// nothing. (Found by a review: the stream's reader kept a hold on the stream's outgoing side,
/// so the stream stayed open and the subscriber waited for as long as the connection lived.)
#[tokio::test]
async fn a_subscription_whose_sink_is_dropped_ends_at_its_subscriber() {
    let ca = ClusterCa::generate(None).unwrap();
    let (t1, mut e1) = start(fast_config(1, loopback()), &node_identity(&ca, 1));
    let (client, conn) = connect_client(&ca, &t1).await;
    // A sink dropped after one batch: the batch arrives, then the end.
    let mut sub =
        conn.subscribe(SubscribeRequest { log: LogId(7), from: LogIndex(1) }).await.unwrap();
    let sink = next_subscribe(&mut e1).await.sink;
    let entry = Entry {
        index: LogIndex(1),
        term: Term(2),
        kind: EntryKind::Normal,
        data: Bytes::from_static(b"one"),
    };
    sink.try_send(std::slice::from_ref(&entry)).unwrap();
    drop(sink);
    let ended = tokio::time::timeout(DEADLINE, async {
        let batch = sub.next().await.unwrap().unwrap();
        assert_eq!(batch.entries, vec![entry]);
        sub.next().await
    })
    .await
    .expect("the subscription stayed open after its sink was dropped");
    assert_eq!(ended, Ok(None));

    // A Subscribe event dropped whole: the subscription ends at once.
    let mut sub =
        conn.subscribe(SubscribeRequest { log: LogId(8), from: LogIndex(1) }).await.unwrap();
    drop(next_subscribe(&mut e1).await);
    let ended = tokio::time::timeout(DEADLINE, sub.next())
        .await
        .expect("the subscription stayed open after its event was dropped");
    assert_eq!(ended, Ok(None));
    t1.close();
    client.close();
}

#[tokio::test]
async fn garbage_client_is_closed_and_other_clients_are_served() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let ca = ClusterCa::generate(None).unwrap();
    let (t1, mut e1) = start(fast_config(1, loopback()), &node_identity(&ca, 1));
    let addr1 = t1.local_addr().unwrap();
    let tuning = QuicTuning::default();

    // A raw client with a valid client certificate that sends an unknown frame type.
    let endpoint = open_endpoint(loopback(), None, &tuning).unwrap();
    let config = client_config(&client_identity(&ca), ALPN_CLIENT, &tuning).unwrap();
    let rogue =
        endpoint.connect_with(config, addr1, &cluster_name(ca.cluster())).unwrap().await.unwrap();
    let (mut send, _recv) = rogue.open_bi().await.unwrap();
    send.write_all(&[1, 0x7f, 0, 0, 0, 0, 0, 0]).await.unwrap();
    match rogue.closed().await {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code.into_inner(), u64::from(close_code::PROTOCOL_ERROR));
            assert!(String::from_utf8_lossy(&c.reason).contains("unknown frame type 0x7f"));
        }
        other => panic!("{other}"),
    }

    // A client presenting a node certificate instead of a client certificate is refused.
    let config = client_config(&node_identity(&ca, 9), ALPN_CLIENT, &tuning).unwrap();
    let imposter =
        endpoint.connect_with(config, addr1, &cluster_name(ca.cluster())).unwrap().await.unwrap();
    match imposter.closed().await {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code.into_inner(), u64::from(close_code::REFUSED));
        }
        other => panic!("{other}"),
    }

    // A well-behaved client is served as usual.
    let client =
        ClientEndpoint::open(&client_identity(&ca), loopback(), &tuning, FrameLimits::default())
            .unwrap();
    let conn = client.connect(addr1).await.unwrap();
    let status_request = ClientRequest::Status(StatusRequest { log: LogId(1) });
    let (answer, ()) = tokio::join!(conn.request(&status_request), async {
        let event = next_request(&mut e1).await;
        let status = LogStatus {
            log: LogId(1),
            node: NodeId(1),
            role: Role::Leader,
            term: Term(4),
            leader: Some(LeaderHint { node: NodeId(1), client_addr: None }),
            first_index: LogIndex(1),
            last_index: LogIndex(9),
            commit_index: LogIndex(8),
        };
        event.responder.respond(&ClientResponse::Status(status)).unwrap();
    });
    assert!(matches!(
        answer.unwrap(),
        ClientResponse::Status(LogStatus { commit_index: LogIndex(8), .. })
    ));
    assert_eq!(t1.stats().protocol_errors, 1);
    assert_eq!(t1.stats().connections_refused, 1);
    let text = logs.text();
    assert!(text.contains("unknown frame type 0x7f"), "{text}");
    assert!(text.contains("refused client"), "{text}");
    t1.close();
    client.close();
}

/// A request whose caller stops waiting (a timeout drops its future) is forgotten at once: the
/// connection's table of requests waiting for an answer does not keep it, and the answer that
/// arrives later is ignored.
#[tokio::test]
async fn a_request_given_up_on_is_forgotten() {
    let ca = ClusterCa::generate(None).unwrap();
    let (t1, mut e1) = start(fast_config(1, loopback()), &node_identity(&ca, 1));
    let (client, conn) = connect_client(&ca, &t1).await;
    let status = ClientRequest::Status(StatusRequest { log: LogId(7) });
    let waited =
        tokio::time::timeout(std::time::Duration::from_millis(50), conn.request(&status)).await;
    assert!(waited.is_err(), "the node has not answered yet");
    assert_eq!(conn.pending_requests(), 0, "the request given up on is still pending");
    // The node answers late; the connection ignores it and serves the next request.
    let late = next_request(&mut e1).await;
    late.responder
        .respond(&ClientResponse::NotLeader(NotLeader { log: LogId(7), leader: None }))
        .unwrap();
    let answered = async {
        let event = next_request(&mut e1).await;
        let answer = ClientResponse::NotLeader(NotLeader { log: LogId(3), leader: None });
        event.responder.respond(&answer).unwrap();
    };
    let (answer, ()) = tokio::join!(conn.request(&status), answered);
    let answer = answer.unwrap();
    assert_eq!(answer, ClientResponse::NotLeader(NotLeader { log: LogId(3), leader: None }));
    assert_eq!(conn.pending_requests(), 0);
    t1.close();
    client.close();
}

/// A client that pipelines small Read requests and never reads the answers. Each Read's answer
/// may be as large as a frame, so its room in the stream's window is reserved when the node
/// reads the request: the node stops reading the stream's requests once the answers queued and
/// promised fill the window, and the answers queued stay within the window and one frame.
/// (Checking the window when each request was read, before any answer existed, let a few bytes
/// of requests queue (connection budget / request size) x (answer size) bytes of answers.)
#[tokio::test]
async fn answers_a_client_does_not_read_stay_within_the_response_window() {
    let ca = ClusterCa::generate(None).unwrap();
    let frame_max: u32 = 1024 * 1024;
    let window: usize = 4 * frame_max as usize;
    let mut config = fast_config(1, loopback());
    config.client_response_window_bytes = window;
    config.frame_limits = FrameLimits::new(frame_max).unwrap();
    let (t1, mut e1) = start(config, &node_identity(&ca, 1));

    // A raw client with small receive windows, so QUIC itself takes little of the answers.
    let tuning = QuicTuning {
        stream_receive_window_bytes: 64 * 1024,
        connection_receive_window_bytes: 128 * 1024,
        ..QuicTuning::default()
    };
    let endpoint = open_endpoint(loopback(), None, &tuning).unwrap();
    let client = client_config(&client_identity(&ca), ALPN_CLIENT, &tuning).unwrap();
    let conn = endpoint
        .connect_with(client, t1.local_addr().unwrap(), &cluster_name(ca.cluster()))
        .unwrap()
        .await
        .unwrap();
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let requests = 12u64;
    let mut enc = raftwal_wire::codec::FrameEncoder::new(FrameLimits::default());
    for id in 1..=requests {
        let read = ReadRequest {
            log: LogId(7),
            from: LogIndex(1),
            count_max: 1,
            size_bytes_max: frame_max,
            linearizable: false,
        };
        enc.encode_request(RequestId(id), &ClientRequest::Read(read)).unwrap();
    }
    send.write_all(&enc.take_contiguous()).await.unwrap();

    let answer = ClientResponse::Entries(EntriesBatch {
        log: LogId(7),
        entries: vec![Entry {
            index: LogIndex(1),
            term: Term(1),
            kind: EntryKind::Normal,
            data: Bytes::from(vec![7u8; 1_000_000]),
        }],
    });
    // Answer every request the node delivers, keeping the latest one open to look at the
    // stream's queue, until no more arrive: the node stops reading once the window is spent.
    let mut delivered = 0;
    let mut latest: Option<Responder> = None;
    let mut queued_max = 0;
    while let Ok(event) =
        tokio::time::timeout(std::time::Duration::from_millis(500), next_request(&mut e1)).await
    {
        delivered += 1;
        if let Some(previous) = latest.take() {
            previous.respond(&answer).unwrap();
        }
        queued_max = queued_max.max(event.responder.queued_answer_bytes());
        latest = Some(event.responder);
    }
    let latest = latest.expect("the first request is delivered");
    queued_max = queued_max.max(latest.queued_answer_bytes());
    assert!(delivered < requests, "all {requests} Reads were read although no answer was");
    assert!(
        queued_max <= window + frame_max as usize,
        "{queued_max} bytes of answers queued on a stream whose window is {window} bytes"
    );
    assert!(queued_max >= 3_000_000, "the answers delivered fill the window: {queued_max}");
    drop(latest);
    t1.close();
    endpoint.close(0u32.into(), b"");
}

fn one_mib_append(seq: u64) -> ClientRequest {
    let payload = Bytes::from(vec![seq as u8; 1024 * 1024]);
    ClientRequest::Append(AppendRequest {
        log: LogId(7),
        tagged: TaggedPayload::new(ClientId(42), ClientSeq(seq), payload),
    })
}

/// `ClientConnection::request` sends requests in call order, also once the session window is
/// full and every caller waits for room: joined appends of one client (tokio::join! rotates
/// which future it polls first) reach the node in call order. (Found by a review: whichever
/// waiter was polled first after the wake-up pushed first, and sequence n+1 reached the node
/// before n.)
#[tokio::test]
async fn joined_requests_are_sent_in_call_order_after_the_window_fills() {
    // The runtime is deterministic; the application's other work (a ticker of a few periods)
    // decides which joined future is polled first after a wake-up.
    for tick_ms in 1..=13u64 {
        let seen = joined_requests_scenario(tick_ms).await;
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        assert_eq!(
            seen, sorted,
            "appends of one client (sequence numbers in call order 0..12) reached the node out \
             of call order (ticker {tick_ms} ms)"
        );
    }
}

async fn joined_requests_scenario(tick_ms: u64) -> Vec<u64> {
    let ca = ClusterCa::generate(None).unwrap();
    let mut config = fast_config(1, loopback());
    // The node holds one admitted request (and reads one more) at a time, and takes little
    // from QUIC, so the client's 4 MiB session window fills.
    config.client_connection_memory_bytes = 1;
    config.quic.stream_receive_window_bytes = 64 * 1024;
    config.quic.connection_receive_window_bytes = 128 * 1024;
    let (node, mut events) = start(config, &node_identity(&ca, 1));
    let client = ClientEndpoint::open(
        &client_identity(&ca),
        loopback(),
        &QuicTuning::default(),
        FrameLimits::default(),
    )
    .unwrap();
    let conn = client.connect(node.local_addr().unwrap()).await.unwrap();

    // The shard: answers requests one by one, slowly, recording their sequence numbers.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shard_done = done.clone();
    let shard = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut seen = Vec::new();
        while seen.len() < 12 {
            let event = wait_for(&mut events, |e| match e {
                TransportEvent::ClientRequest(r) => Some(r),
                _ => None,
            })
            .await;
            let ClientRequest::Append(a) = &event.request else { panic!() };
            seen.push(a.tagged.seq().get());
            tokio::time::sleep(Duration::from_millis(10)).await;
            let answer = ClientResponse::Appended(Appended {
                log: LogId(7),
                index: LogIndex(seen.len() as u64),
                term: Term(1),
            });
            event.responder.respond(&answer).unwrap();
        }
        shard_done.store(true, std::sync::atomic::Ordering::Relaxed);
        seen
    });
    // Something else the application joins with the requests (here a ticker), as any program
    // doing other work next to its requests does: it makes the join poll more often.
    let ticker = async {
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(tick_ms)).await;
        }
    };

    let (r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11) = (
        one_mib_append(0),
        one_mib_append(1),
        one_mib_append(2),
        one_mib_append(3),
        one_mib_append(4),
        one_mib_append(5),
        one_mib_append(6),
        one_mib_append(7),
        one_mib_append(8),
        one_mib_append(9),
        one_mib_append(10),
        one_mib_append(11),
    );
    let results = tokio::time::timeout(DEADLINE, async {
        tokio::join!(
            conn.request(&r0),
            conn.request(&r1),
            conn.request(&r2),
            conn.request(&r3),
            conn.request(&r4),
            conn.request(&r5),
            conn.request(&r6),
            conn.request(&r7),
            conn.request(&r8),
            conn.request(&r9),
            conn.request(&r10),
            conn.request(&r11),
            ticker,
        )
    })
    .await
    .unwrap();
    results.0.unwrap();
    let seen = shard.await.unwrap();
    node.close();
    seen
}
