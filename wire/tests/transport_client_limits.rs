//! Node-wide client limits over loopback QUIC: the most client connections a node serves (shared
//! by its shards' transports), and the bytes one connection, and all of them together, may make
//! the node hold however many streams they open.

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

fn client(ca: &ClusterCa, tuning: &QuicTuning) -> ClientEndpoint {
    ClientEndpoint::open(&client_identity(ca), loopback(), tuning, FrameLimits::default()).unwrap()
}

/// Answers one Status request the node delivers.
async fn answer_status(events: &mut TransportEvents) {
    let event = wait_for(events, |e| match e {
        TransportEvent::ClientRequest(r) => Some(r),
        _ => None,
    })
    .await;
    let answer = ClientResponse::NotLeader(NotLeader { log: LogId(1), leader: None });
    event.responder.respond(&answer).unwrap();
}

async fn status_is_answered(conn: &ClientConnection, events: &mut TransportEvents) {
    let request = ClientRequest::Status(StatusRequest { log: LogId(1) });
    let (answer, ()) = tokio::join!(conn.request(&request), answer_status(events));
    assert!(matches!(answer.unwrap(), ClientResponse::NotLeader(_)));
}

/// Two transports stand for two shards of one node: they share one `ClientLimits`, so the
/// connection limit counts both; one more connection is closed with BUSY and the reason, and a
/// slot given back is taken again.
#[tokio::test]
async fn connections_beyond_the_nodes_maximum_are_refused_as_busy() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let ca = ClusterCa::generate(None).unwrap();
    let limits = ClientLimits::new(2, 1 << 30);
    let mut c1 = fast_config(1, loopback());
    c1.client_limits = limits.clone();
    let mut c2 = fast_config(1, loopback());
    c2.client_limits = limits.clone();
    let (shard0, mut e0) = start(c1, &node_identity(&ca, 1));
    let (shard1, mut e1) = start(c2, &node_identity(&ca, 1));
    let tuning = QuicTuning::default();

    let first = client(&ca, &tuning);
    let conn0 = first.connect(shard0.local_addr().unwrap()).await.unwrap();
    status_is_answered(&conn0, &mut e0).await;
    let second = client(&ca, &tuning);
    let conn1 = second.connect(shard1.local_addr().unwrap()).await.unwrap();
    status_is_answered(&conn1, &mut e1).await;
    assert_eq!(limits.connections(), 2);

    // A third connection, to either shard, is closed at once with the reason.
    let endpoint = open_endpoint(loopback(), None, &tuning).unwrap();
    let config = client_config(&client_identity(&ca), ALPN_CLIENT, &tuning).unwrap();
    let third = endpoint
        .connect_with(config.clone(), shard0.local_addr().unwrap(), &cluster_name(ca.cluster()))
        .unwrap()
        .await
        .unwrap();
    match tokio::time::timeout(DEADLINE, third.closed()).await.unwrap() {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code.into_inner(), u64::from(close_code::BUSY));
            let reason = String::from_utf8_lossy(&c.reason).into_owned();
            assert!(reason.contains("maximum of 2 client connections"), "{reason}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(shard0.stats().clients_refused_busy, 1);
    assert!(logs.text().contains("maximum of 2 client connections"), "{}", logs.text());
    assert_eq!(limits.connections(), 2, "a refused connection holds no slot");

    // The first client goes away; its slot is given back and taken by a new connection.
    drop(conn0);
    first.close();
    wait_until(|| limits.connections() == 1).await;
    let again = client(&ca, &tuning);
    let conn = again.connect(shard1.local_addr().unwrap()).await.unwrap();
    status_is_answered(&conn, &mut e1).await;
    assert_eq!(limits.connections(), 2);
    shard0.close();
    shard1.close();
    second.close();
    again.close();
    endpoint.close(0u32.into(), b"");
}

const BATCH_ENTRIES: u64 = 8;
const ENTRY_BYTES: usize = 1024;

fn batch(first: u64) -> Vec<Entry> {
    (0..BATCH_ENTRIES)
        .map(|i| Entry {
            index: LogIndex(first + i),
            term: Term(2),
            kind: EntryKind::Normal,
            data: Bytes::from(vec![(first + i) as u8; ENTRY_BYTES]),
        })
        .collect()
}

const BATCH_BYTES: usize = BATCH_ENTRIES as usize * ENTRY_BYTES;

/// Opens `count` subscriptions on `conn` and takes their sinks from the node's events.
async fn subscribe(
    conn: &ClientConnection,
    events: &mut TransportEvents,
    count: usize,
) -> (Vec<Subscription>, Vec<SubscriptionSink>) {
    let mut subscriptions = Vec::new();
    let mut sinks = Vec::new();
    for _ in 0..count {
        let request = SubscribeRequest { log: LogId(7), from: LogIndex(1) };
        subscriptions.push(conn.subscribe(request).await.unwrap());
        let event = wait_for(events, |e| match e {
            TransportEvent::Subscribe(s) => Some(s),
            _ => None,
        })
        .await;
        sinks.push(event.sink);
    }
    (subscriptions, sinks)
}

/// Sends batches into every sink until each refuses, giving QUIC time to take what it will;
/// returns the payload bytes each sink accepted.
async fn fill(sinks: &[SubscriptionSink]) -> Vec<usize> {
    let mut accepted = vec![0usize; sinks.len()];
    let mut next = vec![1u64; sinks.len()];
    let mut refused_rounds = 0;
    // Full everywhere, several times in a row with pauses between: QUIC has taken what its
    // windows allow and the node's queues are at their bounds.
    while refused_rounds < 5 {
        let mut any = false;
        for (i, sink) in sinks.iter().enumerate() {
            loop {
                match sink.try_send(&batch(next[i])) {
                    Ok(()) => {
                        accepted[i] += BATCH_BYTES;
                        next[i] += BATCH_ENTRIES;
                        any = true;
                    }
                    Err(SinkError::Full) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        refused_rounds = if any { 0 } else { refused_rounds + 1 };
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    accepted
}

/// Subscribers that do not read: each subscription's window alone (1 MiB) would let one
/// connection's four streams make the node hold 4 MiB; the connection's budget (256 KiB) stops
/// it far below, a second connection gets its own share, and once the node's budget (512 KiB)
/// is spent a third connection's subscription waits with an empty window (and its requests are
/// not read) until a subscriber reads and makes room.
#[tokio::test]
async fn subscribers_that_do_not_read_stay_within_the_connection_and_node_budgets() {
    let ca = ClusterCa::generate(None).unwrap();
    let connection_budget = 256 * 1024;
    let node_budget = 512 * 1024;
    let limits = ClientLimits::new(16, node_budget);
    let mut config = fast_config(1, loopback());
    config.subscription_window_bytes = 1024 * 1024;
    config.client_connection_memory_bytes = connection_budget;
    config.client_limits = limits.clone();
    let (t1, mut e1) = start(config, &node_identity(&ca, 1));
    let addr = t1.local_addr().unwrap();
    // Small receive windows: QUIC takes at most 128 KiB of a connection's bytes, and each of its
    // four streams its own 32 KiB of that (so reading one stream never waits for another).
    let quic_window = 128 * 1024;
    let tuning = QuicTuning {
        stream_receive_window_bytes: 32 * 1024,
        connection_receive_window_bytes: quic_window as u32,
        ..QuicTuning::default()
    };
    // What a connection may be accepted beyond its budget: what QUIC took, plus the batch each
    // of its streams pushed while the budget was just below its limit.
    let streams = 4;
    let slack = quic_window + streams * (BATCH_BYTES + 1024);

    let a = client(&ca, &tuning);
    let conn_a = a.connect(addr).await.unwrap();
    let (mut subs_a, sinks_a) = subscribe(&conn_a, &mut e1, streams).await;
    let accepted_each_a = fill(&sinks_a).await;
    let accepted_a: usize = accepted_each_a.iter().sum();
    assert!(
        accepted_a <= connection_budget + slack,
        "one connection's unread subscriptions were accepted {accepted_a} bytes, budget \
         {connection_budget}"
    );
    assert!(accepted_a >= connection_budget, "the budget is used: {accepted_a}");
    assert!(limits.memory_bytes() >= connection_budget - BATCH_BYTES);

    // A second connection has a share of its own.
    let b = client(&ca, &tuning);
    let conn_b = b.connect(addr).await.unwrap();
    let (_subs_b, sinks_b) = subscribe(&conn_b, &mut e1, streams).await;
    let accepted_b: usize = fill(&sinks_b).await.iter().sum();
    assert!(accepted_b >= BATCH_BYTES, "the second connection was served: {accepted_b}");
    let held = limits.memory_bytes();
    assert!(
        held >= node_budget && held <= node_budget + 2 * streams * (BATCH_BYTES + 1024),
        "{held} bytes held for clients, node budget {node_budget}"
    );

    // The node's budget is spent: a third connection's Subscribe and Status request are not
    // read (a Subscribe is admitted like a request).
    let c = client(&ca, &tuning);
    let conn_c = c.connect(addr).await.unwrap();
    let _sub_c = conn_c.subscribe(SubscribeRequest { log: LogId(7), from: LogIndex(1) }).await;
    let status = ClientRequest::Status(StatusRequest { log: LogId(1) });
    let request_c = conn_c.request(&status);
    tokio::pin!(request_c);
    let early = tokio::time::timeout(Duration::from_millis(300), async {
        tokio::select! {
            _ = &mut request_c => panic!("answered without the node reading it"),
            r = e1.recv() => r,
        }
    })
    .await;
    assert!(early.is_err(), "the node read a request with its client budget spent");

    // The first connection's subscribers read: room is made, the third subscription is
    // delivered and takes a batch, and the waiting request is read and answered.
    let reader = async {
        for (sub, accepted) in subs_a.iter_mut().zip(&accepted_each_a) {
            let mut got = 0usize;
            while got < *accepted {
                got += sub.next().await.unwrap().unwrap().entries.len() * ENTRY_BYTES;
            }
        }
    };
    // Both the Subscribe and the Status request are delivered now (in either order).
    let delivered = async {
        let mut sink = None;
        let mut status = None;
        while sink.is_none() || status.is_none() {
            match e1.recv().await.expect("transport closed") {
                TransportEvent::Subscribe(s) => sink = Some(s.sink),
                TransportEvent::ClientRequest(r) => status = Some(r.responder),
                _ => {}
            }
        }
        (sink.unwrap(), status.unwrap())
    };
    let (_, delivered) = tokio::join!(reader, tokio::time::timeout(DEADLINE, delivered));
    let (sink_c, responder) = delivered.expect("room was made");
    tokio::time::timeout(DEADLINE, sink_c.ready()).await.unwrap().unwrap();
    sink_c.try_send(&batch(1)).unwrap();
    responder
        .respond(&ClientResponse::NotLeader(NotLeader { log: LogId(1), leader: None }))
        .unwrap();
    let answer = tokio::time::timeout(DEADLINE, request_c).await.unwrap();
    assert!(matches!(answer.unwrap(), ClientResponse::NotLeader(_)));
    t1.close();
    for endpoint in [a, b, c] {
        endpoint.close();
    }
}

/// A Subscribe is admitted like a request and charged until the shard takes it: a client that
/// opens and drops subscriptions while the shard does not take them cannot queue them without
/// bound. A connection whose budget holds three waiting Subscribes gets three delivered, however
/// many it opens, until the shard takes them. Once taken, a live subscription holds no charge of
/// its own: three live ones on that connection still deliver, and its requests are still read.
/// (Found by a review: a charge held for a subscription's whole life filled the budget with
/// nothing queued, and no batch or request moved again.)
#[tokio::test]
async fn subscribes_waiting_for_the_shard_are_charged_and_live_ones_still_deliver() {
    let ca = ClusterCa::generate(None).unwrap();
    let held = SUBSCRIPTION_HELD_BYTES as usize;
    let limits = ClientLimits::new(16, 1 << 30);
    let mut config = fast_config(1, loopback());
    config.client_connection_memory_bytes = 3 * held;
    config.client_limits = limits.clone();
    let (t1, mut e1) = start(config, &node_identity(&ca, 1));
    let tuning = QuicTuning::default();
    let endpoint = client(&ca, &tuning);
    let conn = endpoint.connect(t1.local_addr().unwrap()).await.unwrap();
    let take_subscribe = |event: TransportEvent| match event {
        TransportEvent::Subscribe(s) => Some(s),
        _ => None,
    };

    // The shard lags: it takes no event while the client opens ten subscriptions and drops
    // each at once.
    for _ in 0..10 {
        let request = SubscribeRequest { log: LogId(7), from: LogIndex(1) };
        drop(conn.subscribe(request).await.unwrap());
    }
    wait_until(|| limits.memory_bytes() == 3 * held).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut waiting = Vec::new();
    while let Some(event) = e1.try_recv() {
        waiting.push(take_subscribe(event).expect("only Subscribe events"));
    }
    assert_eq!(waiting.len(), 3, "Subscribes admitted beyond the connection's budget");
    assert_eq!(limits.memory_bytes(), 3 * held);
    // The shard takes them: their charges are given back and the rest are admitted in turn.
    drop(waiting);
    for _ in 0..7 {
        wait_for(&mut e1, take_subscribe).await;
    }
    wait_until(|| limits.memory_bytes() == 0).await;

    // Three live subscriptions, taken by the shard: nothing is held for them, a batch goes out
    // to the one whose subscriber reads, and a request on the connection is read.
    let mut subscriptions = Vec::new();
    let mut sinks = Vec::new();
    for _ in 0..3 {
        let request = SubscribeRequest { log: LogId(7), from: LogIndex(1) };
        subscriptions.push(conn.subscribe(request).await.unwrap());
        sinks.push(wait_for(&mut e1, take_subscribe).await.sink);
    }
    assert_eq!(limits.memory_bytes(), 0, "live subscriptions hold charges of their own");
    sinks[0].try_send(&batch(1)).unwrap();
    let got = tokio::time::timeout(DEADLINE, subscriptions[0].next()).await.unwrap();
    assert_eq!(got.unwrap().unwrap().entries.len(), BATCH_ENTRIES as usize);
    status_is_answered(&conn, &mut e1).await;
    t1.close();
    endpoint.close();
}

/// A transport whose runtime ends without closing it (a shard thread that stops, while the
/// node's other shards go on) gives back everything its client streams had charged to the
/// node's budget, which the other shards share, and its connection slots: its writer tasks,
/// which would have released the queued bytes, are dropped with the runtime.
#[test]
fn a_transport_dropped_with_its_runtime_gives_back_its_charges() {
    let limits = ClientLimits::new(16, 64 * 1024 * 1024);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (transport, events, endpoint, conn, subscriptions, sinks) = runtime.block_on(async {
        let ca = ClusterCa::generate(None).unwrap();
        let mut config = fast_config(1, loopback());
        config.subscription_window_bytes = 1024 * 1024;
        config.client_limits = limits.clone();
        let (transport, mut events) = start(config, &node_identity(&ca, 1));
        // Small receive windows: the client's QUIC takes little, the rest stays queued.
        let tuning = QuicTuning {
            stream_receive_window_bytes: 32 * 1024,
            connection_receive_window_bytes: 128 * 1024,
            ..QuicTuning::default()
        };
        let endpoint = client(&ca, &tuning);
        let conn = endpoint.connect(transport.local_addr().unwrap()).await.unwrap();
        let (subscriptions, sinks) = subscribe(&conn, &mut events, 2).await;
        fill(&sinks).await;
        (transport, events, endpoint, conn, subscriptions, sinks)
    });
    assert!(limits.memory_bytes() > 0, "the unread batches are charged");
    assert_eq!(limits.connections(), 1);
    // The shard's state goes first, then its runtime with every task of the transport.
    drop((sinks, events, transport));
    drop(runtime);
    assert_eq!(limits.memory_bytes(), 0, "a dropped transport still holds the node's budget");
    assert_eq!(limits.connections(), 0);
    drop((subscriptions, conn, endpoint));
}

/// A Read holds room in its session's window for what it asked for (and one entry of the
/// largest size the node stores), not a whole frame: many small Reads of one session are
/// delivered to the node at once, before any is answered. With a frame's room each (16 MiB),
/// the 4 MiB window admitted one at a time; here each takes about 4.5 KiB.
#[tokio::test]
async fn small_reads_of_one_session_are_delivered_together() {
    const READS: usize = 64;
    let ca = ClusterCa::generate(None).unwrap();
    let mut config = fast_config(1, loopback());
    config.entry_data_bytes_max = 4096 + TAG_SIZE_BYTES;
    let (shard, mut events) = start(config, &node_identity(&ca, 1));
    let endpoint = client(&ca, &QuicTuning::default());
    let conn = std::sync::Arc::new(endpoint.connect(shard.local_addr().unwrap()).await.unwrap());
    let read = ClientRequest::Read(ReadRequest {
        log: LogId(1),
        from: LogIndex(1),
        count_max: 10,
        size_bytes_max: 4096,
        linearizable: false,
    });
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..READS {
        let (conn, read) = (conn.clone(), read.clone());
        reads.spawn(async move { conn.request(&read).await });
    }
    let mut delivered = Vec::new();
    while delivered.len() < READS {
        delivered.push(
            wait_for(&mut events, |e| match e {
                TransportEvent::ClientRequest(r) => Some(r),
                _ => None,
            })
            .await,
        );
    }
    // Every Read arrived while none was answered.
    for event in delivered {
        let answer = ClientResponse::Entries(EntriesBatch { log: LogId(1), entries: batch(1) });
        event.responder.respond(&answer).unwrap();
    }
    while let Some(answer) = reads.join_next().await {
        assert!(matches!(answer.unwrap().unwrap(), ClientResponse::Entries(_)));
    }
}
