//! The remote client against an in-process 3-node cluster: redirects, retries deduplicated by
//! client id and sequence number, reads and tails served by any replica, across a failover.

mod support;

use bytes::Bytes;
use raftwal::client::{Client, ClientConfig, ClientError};
use raftwal_wire::client::{
    AppendBatchRequest, AppendRequest, ClientId, ClientRequest, ClientResponse, ClientSeq,
    ErrorCode, SubscribeRequest, TaggedPayload,
};
use raftwal_wire::types::{LogId, LogIndex};
use std::sync::Arc;
use std::time::Duration;
use support::Cluster;

const T: Duration = Duration::from_secs(20);

#[allow(clippy::unwrap_used)] // A test helper: a failure is the test's failure.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn appends_through_a_follower_are_redirected_to_the_leader() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_leader(T);
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    // Only the follower's address: the client learns the leader from the redirect.
    let nodes = vec![cluster.configs[(follower - 1) as usize].listen];
    runtime().block_on(async {
        let client = Client::new(ClientConfig::new(nodes, cluster.tls_dir(), LogId(0))).unwrap();
        let mut last = LogIndex(0);
        for i in 0..20u32 {
            let position = client.append(Bytes::from(i.to_string())).await.unwrap();
            assert!(position.index > last);
            last = position.index;
        }
        let batch = client
            .append_batch((0..10).map(|i| Bytes::from(format!("b{i}"))).collect())
            .await
            .unwrap();
        assert_eq!(batch.count, 10);
        assert_eq!(batch.first_index, last.next());
        // A read is served by the node the client reaches, from its own committed log.
        let entries = client.read(LogIndex(1), 100).await.unwrap();
        assert_eq!(entries.len(), 30, "{entries:?}");
        assert_eq!(entries[0].data, "0");
        assert_eq!(entries[29].data, "b9");
    });
}

/// `Client::append_batch` with a single entry: the node acknowledges it as a batch, so the
/// client reports where it landed instead of a protocol error for an append that committed.
#[test]
fn a_batch_of_one_entry_is_acknowledged_as_a_batch() {
    let cluster = Cluster::start(1);
    let leader = cluster.wait_leader(T);
    let nodes = vec![cluster.configs[(leader - 1) as usize].listen];
    runtime().block_on(async {
        let client = Client::new(ClientConfig::new(nodes, cluster.tls_dir(), LogId(0))).unwrap();
        let batch = client.append_batch(vec![Bytes::from_static(b"alone")]).await;
        let batch = batch.expect("a committed batch of one entry was reported as failed");
        assert_eq!(batch.count, 1);
        let entries = client.read(batch.first_index, 10).await.unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].data, "alone");
    });
}

/// A batch of entries each within the node's entry limit but together larger than a frame:
/// the client cannot send it, and says so as a refusal to fix (split the batch), not as an
/// unexpected answer from the node (a protocol bug to report, which it was reported as).
#[test]
fn a_batch_too_large_for_a_frame_is_refused_as_such() {
    let cluster = Cluster::start(1);
    let leader = cluster.wait_leader(T);
    let nodes = vec![cluster.configs[(leader - 1) as usize].listen];
    runtime().block_on(async {
        let client = Client::new(ClientConfig::new(nodes, cluster.tls_dir(), LogId(0))).unwrap();
        let entry = Bytes::from(vec![7u8; cluster.configs[0].entry_size_bytes_max]);
        let batch = vec![entry; 20];
        match client.append_batch(batch).await {
            Err(ClientError::Refused { code: ErrorCode::InvalidRequest, .. }) => {}
            other => panic!("a batch larger than a frame was answered {other:?}"),
        }
        // Nothing of it reached the log, and the client goes on.
        let position = client.append(Bytes::from_static(b"after")).await.unwrap();
        let entries = client.read(LogIndex(1), 100).await.unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].index, position.index);
    });
}

/// A node configured with frames smaller than the client's (`transport.frame_size_bytes_max`
/// of 1 MiB; a client sends frames of up to 16 MiB): a batch of entries each within the node's
/// entry limit, together over its frame limit, is refused at once, alone, as an invalid request
/// that says both sizes, and the requests beside it on the same connection are answered. (Found
/// by a review: the node closed the whole connection at the frame's header, failing every
/// request in flight on it, and the client retried the batch, closing the connection again each
/// time, until its deadline, then reported the node unavailable.)
#[test]
fn a_request_over_the_node_frame_limit_is_refused_alone() {
    let frame: u32 = 1 << 20;
    let cluster = Cluster::start_with(1, |c| {
        c.transport.frame_size_bytes_max = frame;
        c.entry_size_bytes_max = 256 << 10;
        c.raft.append_size_bytes_max = 512 << 10;
    });
    cluster.wait_leader(T);
    let addr = cluster.configs[0].listen;
    let entry = Bytes::from(vec![7u8; 200 << 10]);
    runtime().block_on(async {
        // One connection, three requests pipelined on its session stream: an append, the batch
        // (8 entries of 200 KiB: 1.6 MiB in one frame), an append.
        let endpoint = cluster.client_endpoint();
        let connection = endpoint.connect(addr).await.unwrap();
        let tagged = |seq: u64, data: Bytes| TaggedPayload::new(ClientId(7), ClientSeq(seq), data);
        let append = |seq: u64| {
            ClientRequest::Append(AppendRequest {
                log: LogId(0),
                tagged: tagged(seq, Bytes::from(format!("entry {seq}"))),
            })
        };
        let batch = ClientRequest::AppendBatch(AppendBatchRequest {
            log: LogId(0),
            items: (2..10).map(|seq| tagged(seq, entry.clone())).collect(),
        });
        let (first, last) = (append(1), append(10));
        let (before, refused, after) = tokio::join!(
            connection.request(&first),
            connection.request(&batch),
            connection.request(&last),
        );
        match &refused {
            Ok(ClientResponse::Error(e)) if e.code == ErrorCode::InvalidRequest => {
                assert!(e.message.contains(&frame.to_string()), "{}", e.message);
            }
            other => panic!(
                "the oversized batch was answered {other:?} (before it: {before:?}, after it: \
                 {after:?})"
            ),
        }
        assert!(matches!(before, Ok(ClientResponse::Appended(_))), "{before:?}");
        assert!(matches!(after, Ok(ClientResponse::Appended(_))), "{after:?}");
        // The connection goes on.
        let next = connection.request(&append(11)).await;
        assert!(matches!(next, Ok(ClientResponse::Appended(_))), "{next:?}");

        // The remote client: the batch is refused at once, not retried until the deadline;
        // appends in flight beside it commit.
        let mut config = ClientConfig::new(vec![addr], cluster.tls_dir(), LogId(0));
        config.retry_deadline = Duration::from_secs(3);
        let client = Arc::new(Client::new(config).unwrap());
        let appends: Vec<_> = (0..20u32)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move { client.append(Bytes::from(format!("a{i}"))).await })
            })
            .collect();
        match client.append_batch(vec![entry.clone(); 8]).await {
            Err(ClientError::Refused { code: ErrorCode::InvalidRequest, message }) => {
                assert!(message.contains(&frame.to_string()), "{message}");
            }
            other => panic!("the oversized batch was answered {other:?}"),
        }
        for append in appends {
            append.await.unwrap().unwrap();
        }
        // A batch within the limit goes through on the same client.
        let fits = client.append_batch(vec![entry.clone(); 4]).await.unwrap();
        assert_eq!(fits.count, 4);
    });
    // Nothing of the refused batches reached the log.
    let entries = support::read_all(&cluster.log(1), LogIndex(1));
    assert_eq!(entries.len(), 3 + 20 + 4, "{:?}", entries.len());
}

/// A node configured with a frame limit below what one subscriber batch (1 MiB of payload) or
/// one read (4 MiB) carries once every entry's framing is counted: it still serves a remote
/// tail and a remote read, in more frames, instead of failing to encode them.
#[test]
fn a_remote_tail_and_read_fit_the_node_frame_limit() {
    // The smallest frame limit the default entry size allows.
    let cluster = Cluster::start_with(1, |c| c.transport.frame_size_bytes_max = (1 << 20) + 4096);
    let leader = cluster.wait_leader(T);
    // Small entries: their framing takes the batch over the limit.
    let (batches, per_batch) = (20u32, 1000u32);
    let log = cluster.log(leader);
    for b in 0..batches {
        let data = (0..per_batch).map(|i| Bytes::from(format!("{:064}", b * per_batch + i)));
        log.append_batch_blocking(data.collect()).unwrap();
    }
    let total = batches * per_batch;
    let mut config = ClientConfig::new(cluster.client_addrs(), cluster.tls_dir(), LogId(0));
    config.retry_deadline = Duration::from_secs(2);
    let rt = runtime();
    let client = rt.block_on(async { Arc::new(Client::new(config).unwrap()) });
    rt.block_on(async {
        let entries = client.read(LogIndex(1), total).await.expect("a remote read failed");
        assert!(!entries.is_empty());
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(entry.data, format!("{i:064}"));
        }
        let mut tail = client.subscribe(LogIndex(1));
        for i in 0..total {
            let entry = tail.next().await.expect("the remote tail failed");
            assert_eq!(entry.data, format!("{i:064}"));
        }
    });
}

/// A node configured with frames larger than the default (allowed up to 256 MiB) holds an entry
/// that needs one: a remote read and a remote tail get it, rather than refusing the node's
/// frame as over the client's own default limit on every attempt until the retry deadline.
#[test]
fn a_remote_read_and_tail_take_frames_as_large_as_the_node_sends() {
    let cluster = Cluster::start_with(1, |c| {
        c.transport.frame_size_bytes_max = 32 << 20;
        c.entry_size_bytes_max = 20 << 20;
        c.raft.append_size_bytes_max = 24 << 20;
        c.storage.batch_bytes_max = 24 << 20;
        c.storage.segment_size_bytes = 64 << 20;
    });
    let leader = cluster.wait_leader(T);
    let big = Bytes::from(vec![7u8; 17 << 20]);
    let position = cluster.log(leader).append_blocking(big.clone()).unwrap();
    let mut config = ClientConfig::new(cluster.client_addrs(), cluster.tls_dir(), LogId(0));
    config.retry_deadline = Duration::from_secs(2);
    let rt = runtime();
    let client = rt.block_on(async { Arc::new(Client::new(config).unwrap()) });
    rt.block_on(async {
        let read = client.read(position.index, 1).await.map(|e| e.into_iter().next());
        let read = read.map(|e| e.map(|e| (e.index, e.data.len())));
        assert_eq!(read, Ok(Some((position.index, big.len()))), "the remote read");
        let mut tail = client.subscribe(position.index);
        let tailed = tail.next().await.map(|e| (e.index, e.data.len()));
        assert_eq!(tailed, Ok((position.index, big.len())), "the remote tail");
    });
}

#[test]
fn a_retried_append_is_applied_once() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_leader(T);
    let addr = cluster.configs[(leader - 1) as usize].listen;
    runtime().block_on(async {
        let endpoint = cluster.client_endpoint();
        let connection = endpoint.connect(addr).await.unwrap();
        let append = |seq: u64, data: &'static str| {
            ClientRequest::Append(AppendRequest {
                log: LogId(0),
                tagged: TaggedPayload::new(
                    ClientId(42),
                    ClientSeq(seq),
                    Bytes::from_static(data.as_bytes()),
                ),
            })
        };
        let index_of = |response: ClientResponse| match response {
            ClientResponse::Appended(a) => a.index,
            other => panic!("expected Appended, got {other:?}"),
        };
        let first = index_of(connection.request(&append(1, "once")).await.unwrap());
        // The same client id and sequence number again (a retry after a lost answer): the log
        // answers with the first position and appends nothing.
        let again = index_of(connection.request(&append(1, "once")).await.unwrap());
        assert_eq!(first, again);
        let next = index_of(connection.request(&append(2, "twice")).await.unwrap());
        assert_eq!(next, first.next());
        // A retry that arrives while the first copy is still in flight waits for it.
        let retry = append(3, "x");
        let (a, b) = tokio::join!(connection.request(&retry), connection.request(&retry));
        assert_eq!(index_of(a.unwrap()), index_of(b.unwrap()));
    });
    let log = cluster.log(leader);
    let entries = log.read_blocking(LogIndex(1), raftwal::ReadLimit::entries(100)).unwrap();
    let texts: Vec<&[u8]> = entries.iter().map(|e| &e.data[..]).collect();
    assert_eq!(texts, [&b"once"[..], b"twice", b"x"]);
}

#[test]
fn a_remote_tail_continues_across_a_failover_without_gaps() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_leader(T);
    let nodes = cluster.client_addrs();
    let rt = runtime();
    let client = rt.block_on(async {
        Arc::new(
            Client::new(ClientConfig::new(nodes.clone(), cluster.tls_dir(), LogId(0))).unwrap(),
        )
    });
    // Tail from the leader's address first, so that its failure forces the tail to move.
    let mut tail = client.subscribe_at((leader - 1) as usize, LogIndex(1));
    rt.block_on(async {
        for i in 0..30u32 {
            client.append(Bytes::from(i.to_string())).await.unwrap();
        }
        for i in 0..30u32 {
            assert_eq!(tail.next().await.unwrap().data, i.to_string());
        }
    });
    cluster.stop(leader);
    rt.block_on(async {
        for i in 30..60u32 {
            client.append(Bytes::from(i.to_string())).await.unwrap();
        }
        for i in 30..60u32 {
            let entry = tokio::time::timeout(T, tail.next()).await.unwrap().unwrap();
            assert_eq!(entry.data, i.to_string());
        }
        assert_ne!(tail.node(), Some(nodes[(leader - 1) as usize]));
    });
}

/// A client with another cluster's certificates: every node's TLS refuses the handshake, which
/// no retry fixes, so the client says so at once instead of retrying until its deadline.
#[test]
fn a_client_of_another_cluster_is_told_at_once() {
    let cluster = Cluster::start(3);
    cluster.wait_leader(T);
    let foreign = tempfile::tempdir().unwrap();
    let ids: Vec<raftwal_wire::types::NodeId> = (1..=3).map(raftwal_wire::types::NodeId).collect();
    raftwal_wire::tls::ClusterCerts::generate(None, &ids)
        .unwrap()
        .write_to_dir(foreign.path())
        .unwrap();
    let nodes: Vec<_> = cluster.configs.iter().map(|c| c.listen).collect();
    runtime().block_on(async {
        let mut config = ClientConfig::new(nodes.clone(), foreign.path().to_path_buf(), LogId(0));
        // Retried until this deadline, the refusal would surface as Unavailable.
        config.retry_deadline = Duration::from_secs(60);
        let client = Arc::new(Client::new(config).unwrap());
        match client.append(Bytes::from_static(b"x")).await {
            Err(ClientError::Config(message)) => {
                assert!(message.contains("refused the TLS handshake"), "{message}");
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
        let mut tail = client.subscribe(LogIndex(1));
        match tail.next().await {
            Err(ClientError::Config(message)) => {
                assert!(message.contains("refused the TLS handshake"), "{message}");
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
        // So do the requests to one node (`raftwal status`, `raftwal compact`). (Found by a
        // review: they reported the bare TLS alert as an unreachable node.)
        match client.status_of(nodes[0]).await {
            Err(ClientError::Config(message)) => {
                assert!(message.contains("refused the TLS handshake"), "{message}");
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    });
}

/// A node that serves its maximum of client connections (`transport.client_connections_max`,
/// counted over all its shards) closes one more at once with the reason; the remote client
/// moves on and, when every node is full, says why. The metrics show the count, and a slot
/// given back serves the next client.
#[test]
fn a_node_serving_its_maximum_of_clients_says_so() {
    let cluster = Cluster::start_with(1, |c| {
        c.shards = Some(2);
        c.transport.client_connections_max = 1;
    });
    cluster.wait_leader(T);
    let node = cluster.node(1);
    let addr = cluster.configs[0].listen;
    runtime().block_on(async {
        let endpoint = cluster.client_endpoint();
        // The one slot, taken on shard 1's port; the client below dials shard 0's.
        let second_shard = std::net::SocketAddr::new(addr.ip(), addr.port() + 1);
        let holder = endpoint.connect(second_shard).await.unwrap();
        let limits = node.metrics().client_limits().unwrap().clone();
        let deadline = tokio::time::Instant::now() + T;
        while limits.connections() != 1 {
            assert!(tokio::time::Instant::now() < deadline, "the connection was never counted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let text = node.metrics().render();
        assert!(text.contains("raftwal_client_connections{node=\"1\"} 1"), "{text}");
        assert!(text.contains("raftwal_client_connections_max{node=\"1\"} 1"), "{text}");

        let mut config = ClientConfig::new(vec![addr], cluster.tls_dir(), LogId(0));
        config.retry_deadline = Duration::from_secs(1);
        let client = Client::new(config.clone()).unwrap();
        match client.append(Bytes::from_static(b"x")).await {
            Err(ClientError::Unavailable(message)) => {
                assert!(message.contains("maximum of 1 client connections"), "{message}");
            }
            other => panic!("expected the node to be full, got {other:?}"),
        }
        drop(holder);
        endpoint.close();
        while limits.connections() != 0 {
            assert!(tokio::time::Instant::now() < deadline, "the slot was never given back");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let client = Client::new(config).unwrap();
        client.append(Bytes::from_static(b"y")).await.unwrap();
    });
}

/// `Client::read_linearizable` through a follower holds every entry acknowledged before it.
#[test]
fn a_linearizable_read_on_a_follower_sees_every_acknowledged_append() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_leader(T);
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let leader_addr = vec![cluster.configs[(leader - 1) as usize].listen];
    let follower_addr = vec![cluster.configs[(follower - 1) as usize].listen];
    runtime().block_on(async {
        let writer =
            Client::new(ClientConfig::new(leader_addr, cluster.tls_dir(), LogId(0))).unwrap();
        let reader =
            Client::new(ClientConfig::new(follower_addr, cluster.tls_dir(), LogId(0))).unwrap();
        for i in 0..20u32 {
            let position = writer.append(Bytes::from(format!("entry {i}"))).await.unwrap();
            let read = reader.read_linearizable(position.index, 1).await.unwrap();
            assert_eq!(read.first().map(|e| e.index), Some(position.index), "entry {i}");
            assert_eq!(read[0].data, format!("entry {i}"));
        }
        // From 0: the follower's first entry, linearizably too.
        let all = reader.read_linearizable(LogIndex(0), 100).await.unwrap();
        assert_eq!(all.len(), 20, "{all:?}");
    });
}

/// Clients that tail an idle log and leave, one after another (`raftwal tail` run in a loop,
/// a consumer that reconnects): the node drops each subscription whose client went away,
/// although no entry commits that a delivery could notice it with. It kept them all, each
/// with its stream's send queue.
#[test]
fn subscriptions_of_clients_that_left_an_idle_log_are_dropped() {
    let cluster = Cluster::start(1);
    cluster.wait_leader(T);
    let node = cluster.node(1);
    let addr = cluster.configs[0].listen;
    let subscribers = || support::metric(&node.metrics().render(), "raftwal_subscribers", 1);
    runtime().block_on(async {
        let client =
            Client::new(ClientConfig::new(vec![addr], cluster.tls_dir(), LogId(0))).unwrap();
        client.append(Bytes::from_static(b"x")).await.unwrap();
        let endpoint = cluster.client_endpoint();
        for _ in 0..20 {
            let connection = endpoint.connect(addr).await.unwrap();
            let request = SubscribeRequest { log: LogId(0), from: LogIndex(1) };
            let mut subscription = connection.subscribe(request).await.unwrap();
            // Caught up: the node delivered everything committed.
            let batch = subscription.next().await.unwrap().expect("a batch");
            assert!(batch.entries.iter().any(|e| e.data.ends_with(b"x")), "{batch:?}");
            drop(subscription);
            drop(connection);
        }
        // A subscriber that stays, so that the count has something to hold.
        let connection = endpoint.connect(addr).await.unwrap();
        let request = SubscribeRequest { log: LogId(0), from: LogIndex(1) };
        let mut kept = connection.subscribe(request).await.unwrap();
        kept.next().await.unwrap().expect("a batch");
        let deadline = tokio::time::Instant::now() + T;
        while subscribers() != 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} subscribers kept for 1 client still subscribed",
                subscribers()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

/// A program that closes its client and exits at once (as every `raftwal` client command
/// does): the node hears of the close. The close only left with the client's tasks, which the
/// exit ended first, so the node held each such connection, with one of its client slots,
/// until the idle timeout: `raftwal append` run in a loop kept hundreds of dead connections on
/// its leader, a hundred runs a second would have filled its 1,024 slots.
#[test]
fn a_client_closed_before_its_program_exits_does_not_leave_its_connection_to_time_out() {
    let cluster = Cluster::start(1);
    cluster.wait_leader(T);
    let addr = cluster.configs[0].listen;
    let limits = cluster.node(1).metrics().client_limits().unwrap().clone();
    for _ in 0..3 {
        let program = runtime();
        program.block_on(async {
            let client =
                Client::new(ClientConfig::new(vec![addr], cluster.tls_dir(), LogId(0))).unwrap();
            client.append(Bytes::from_static(b"x")).await.unwrap();
            client.close_and_wait().await;
        });
        // The program exits: its runtime, and the client's tasks with it, are gone.
        drop(program);
    }
    support::wait_until(Duration::from_secs(60), "the connections' end", || {
        limits.connections() == 0
    });
    assert_eq!(limits.connections_timed_out(), 0, "connections ended by the idle timeout");
}
