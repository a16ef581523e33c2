//! The embedding API on an in-process 3-node cluster over loopback QUIC, with real files and
//! real fsyncs: append, read, subscribe, redirects, follower reads, failover.

mod support;

use bytes::Bytes;
use raftwal::config::{StorageTuning, ZeroFillChoice};
use raftwal::{AppendError, LogEntry, ReadLimit};
use raftwal_wire::types::{LogId, LogIndex};
use std::time::Duration;
use support::{metric, wait_until, Cluster};

const T: Duration = Duration::from_secs(20);

fn data(entries: &[LogEntry]) -> Vec<Bytes> {
    entries.iter().map(|e| e.data.clone()).collect()
}

#[test]
fn append_read_and_follower_reads() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_leader(T);
    let log = cluster.log(leader);
    let first = log.append_blocking(Bytes::from_static(b"one")).unwrap();
    let batch = log
        .append_batch_blocking(vec![Bytes::from_static(b"two"), Bytes::from_static(b"three")])
        .unwrap();
    assert_eq!(batch.first_index, first.index.next());
    assert_eq!(batch.count, 2);
    let expected =
        vec![Bytes::from_static(b"one"), Bytes::from_static(b"two"), Bytes::from_static(b"three")];
    // Every replica serves the committed entries from its own log (followers learn the commit
    // index from the leader's next message).
    for id in 1..=3 {
        let log = cluster.log(id);
        wait_until(T, "follower commit", || {
            log.status_blocking().unwrap().commit_index >= batch.last_index()
        });
        let entries = log.read_blocking(first.index, ReadLimit::entries(10)).unwrap();
        assert_eq!(data(&entries), expected, "node {id}");
        assert_eq!(entries[0].index, first.index);
    }
}

#[test]
fn appends_on_a_follower_name_the_leader() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_leader(T);
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let err = cluster.log(follower).append_blocking(Bytes::from_static(b"x")).unwrap_err();
    match err {
        AppendError::NotLeader { leader: Some(info), .. } => {
            assert_eq!(info.node.get(), leader);
            assert_eq!(info.addr, Some(cluster.configs[(leader - 1) as usize].listen));
        }
        other => panic!("expected NotLeader with a hint, got {other:?}"),
    }
}

#[test]
fn oversized_entries_are_refused_and_the_node_goes_on() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_leader(T);
    let log = cluster.log(leader);
    let max = cluster.configs[0].entry_size_bytes_max;
    let err = log.append_blocking(Bytes::from(vec![0u8; max + 1])).unwrap_err();
    assert!(matches!(err, AppendError::TooLarge { .. }), "{err:?}");
    log.append_blocking(Bytes::from(vec![1u8; max])).unwrap();
}

#[test]
fn subscribers_on_a_follower_see_every_entry_in_order_across_a_failover() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_leader(T);
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let mut sub = cluster.log(follower).subscribe(LogIndex(1)).into_blocking_iter();
    for i in 0..50u32 {
        cluster.log(leader).append_blocking(Bytes::from(i.to_le_bytes().to_vec())).unwrap();
    }
    // The leader goes; a new one is elected among the other two; appends go on.
    cluster.stop(leader);
    let new_leader = cluster.wait_leader(T);
    assert_ne!(new_leader, leader);
    for i in 50..100u32 {
        loop {
            let log = cluster.log(cluster.wait_leader(T));
            match log.append_blocking(Bytes::from(i.to_le_bytes().to_vec())) {
                Ok(_) => break,
                // Leadership moved again: ask the cluster who leads now.
                Err(AppendError::NotLeader { .. } | AppendError::LeadershipLost { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
    let mut last_index = LogIndex(0);
    for i in 0..100u32 {
        let entry = sub.next().unwrap().unwrap();
        assert!(entry.index > last_index, "indices increase");
        last_index = entry.index;
        assert_eq!(&entry.data[..], &i.to_le_bytes(), "entry {i} in order, no gap, no duplicate");
    }
    // The stopped node comes back and catches up from its own durable log and the new leader.
    cluster.restart(leader);
    let log = cluster.log(leader);
    wait_until(T, "restarted node catches up", || {
        log.status_blocking().unwrap().commit_index >= last_index
    });
    let entries = log.read_blocking(LogIndex(1), ReadLimit::entries(1000)).unwrap();
    assert_eq!(entries.len(), 100);
}

#[test]
fn clean_restart_of_every_node_keeps_the_log() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_leader(T);
    for i in 0..20u32 {
        cluster.log(leader).append_blocking(Bytes::from(format!("entry {i}"))).unwrap();
    }
    for id in 1..=3 {
        cluster.stop(id);
    }
    for id in 1..=3 {
        cluster.restart(id);
    }
    let leader = cluster.wait_leader(T);
    // A new leader commits its no-op, which commits everything before it.
    let after = cluster.log(leader).append_blocking(Bytes::from_static(b"after")).unwrap();
    for id in 1..=3 {
        let log = cluster.log(id);
        wait_until(T, "commit after restart", || {
            log.status_blocking().unwrap().commit_index >= after.index
        });
        let entries = log.read_blocking(LogIndex(1), ReadLimit::entries(100)).unwrap();
        let texts: Vec<String> =
            entries.iter().map(|e| String::from_utf8(e.data.to_vec()).unwrap()).collect();
        let mut expected: Vec<String> = (0..20).map(|i| format!("entry {i}")).collect();
        expected.push("after".into());
        assert_eq!(texts, expected, "node {id}");
    }
}

/// Appends 20 batches of 32 entries of 1,000 bytes on `cluster` and waits until every replica
/// committed them.
fn append_small_batches_everywhere(cluster: &Cluster) {
    let leader = cluster.wait_leader(T);
    let log = cluster.log(leader);
    let mut last = None;
    for round in 0..20u8 {
        let batch = (0..32).map(|i| Bytes::from(vec![round ^ i; 1000])).collect();
        last = Some(log.append_batch_blocking(batch).expect("append").last_index());
    }
    let last = last.expect("twenty batches");
    for id in 1..=3 {
        let log = cluster.log(id);
        wait_until(T, "every replica commits", || {
            log.status_blocking().expect("status").commit_index >= last
        });
    }
}

/// Node `id`'s zero-fill (writes, bytes) once it made at least `writes_min` writes.
fn zero_fill_counts(cluster: &Cluster, id: u64, writes_min: u64) -> (u64, u64) {
    let counts = || {
        let text = cluster.node(id).metrics().render();
        let writes = metric(&text, "raftwal_zero_fill_writes_total", id);
        (writes, metric(&text, "raftwal_zero_fill_bytes_total", id))
    };
    wait_until(T, "zero-fill writes", || counts().0 >= writes_min);
    counts()
}

#[test]
fn storage_zero_fill_auto_writes_zeros_in_chunks_of_zero_chunk_bytes() {
    // 8 KiB, far below the default, so writes of the default size would show.
    const CHUNK: u64 = 8 << 10;
    let cluster = Cluster::start_with(3, |c| {
        c.storage.zero_fill = ZeroFillChoice::Auto;
        c.storage.zero_chunk_bytes = CHUNK as usize;
    });
    append_small_batches_everywhere(&cluster);
    for id in 1..=3 {
        // Small batches on a fresh log: the store zero-fills ahead of its writer, one chunk at a
        // time (the count is copied after each completion).
        let (writes, bytes) = zero_fill_counts(&cluster, id, 4);
        assert!(
            bytes > 0 && bytes <= writes * CHUNK,
            "node {id}: {writes} writes of {bytes} bytes"
        );
    }
}

#[test]
fn storage_zero_fill_never_is_the_default_and_writes_only_the_next_segments_header_block() {
    assert_eq!(StorageTuning::default().zero_fill, ZeroFillChoice::Never);
    let cluster = Cluster::start(3);
    append_small_batches_everywhere(&cluster);
    for id in 1..=3 {
        // The same load as under "auto" (above), which zero-fills ahead of the writer: here the
        // only zeros are the prepared next segment's header block (so that the roll-over's
        // header write converts no extent), one write of 4 KiB.
        assert_eq!(zero_fill_counts(&cluster, id, 1), (1, 4096), "node {id}");
    }
}

/// `storage.batches_in_flight` reaches every log store: with 3, appends that arrive while a
/// batch is being written start pipelined batches (counted by `raftwal_pipelined_batches_total`),
/// and everything still commits and reads back; with the default of 1, none is pipelined.
#[test]
fn storage_batches_in_flight_pipelines_batches() {
    for batches in [1usize, 3] {
        let cluster = Cluster::start_with(3, |c| c.storage.batches_in_flight = batches);
        let leader = cluster.wait_leader(T);
        let log = cluster.log(leader);
        // Many appenders at once, so entries arrive while batches are in flight.
        let last = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16u8)
                .map(|t| {
                    let log = log.clone();
                    s.spawn(move || {
                        let mut last = None;
                        for round in 0..40u8 {
                            let data = Bytes::from(vec![t ^ round; 512]);
                            last = Some(log.append_blocking(data).unwrap().index);
                        }
                        last.unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).max().unwrap()
        });
        let mut pipelined = 0;
        for id in 1..=3 {
            let log = cluster.log(id);
            wait_until(T, "every replica commits", || {
                log.status_blocking().unwrap().commit_index >= last
            });
            let text = cluster.node(id).metrics().render();
            pipelined += metric(&text, "raftwal_pipelined_batches_total", id);
        }
        if batches == 1 {
            assert_eq!(pipelined, 0);
        } else {
            assert!(pipelined > 0, "no batch was pipelined with {batches} allowed in flight");
        }
        let entries =
            cluster.log(leader).read_blocking(LogIndex(1), ReadLimit::entries(2000)).unwrap();
        let data = entries.iter().filter(|e| e.data.len() == 512).count();
        assert_eq!(data, 16 * 40, "every append reads back");
    }
}

/// A node whose shard cannot start fails with that shard's own cause; the other shards stop
/// opening their logs when they learn of it (they report that they gave up, which is never the
/// error the start returns).
#[test]
fn a_shard_that_cannot_listen_fails_the_start_with_its_own_cause() {
    let dir = tempfile::tempdir().unwrap();
    raftwal_wire::tls::ClusterCerts::generate(None, &[raftwal_wire::types::NodeId(1)])
        .unwrap()
        .write_to_dir(&dir.path().join("tls"))
        .unwrap();
    let mut config = Cluster::configs(dir.path(), 1).remove(0);
    config.shards = Some(2);
    config.log_count = 64;
    // Shard 1 listens on the port after shard 0's: take it first.
    let _taken = std::net::UdpSocket::bind(raftwal::NodeConfig::shard_addr(config.listen, 1))
        .expect("a free port after the test's");
    match raftwal::Node::start(config) {
        Err(raftwal::StartError::Shard { shard: 1, message }) => {
            assert!(message.contains("cannot listen"), "{message}");
        }
        Err(other) => panic!("the start failed for another reason: {other}"),
        Ok(_) => panic!("the start succeeded without shard 1's port"),
    }
}

/// A graceful shutdown hands the leadership of each log the node leads to a peer before it
/// stops, so the cluster does not wait out an election timeout. With a 3 s election timeout, the
/// two other nodes agree on a new leader, in a higher term, as soon as `shutdown` returns (a
/// halted leader's followers would keep its term for at least 3 s); the new leader holds every
/// committed entry and takes appends.
#[test]
fn a_graceful_shutdown_hands_leadership_over() {
    let mut cluster = Cluster::start_with(3, |c| {
        c.raft.election_timeout_ticks = 300;
        c.log_count = 2;
        c.shards = Some(2);
    });
    let leader = cluster.wait_leader(Duration::from_secs(60));
    let log = cluster.log(leader);
    let before = log.status_blocking().unwrap();
    for i in 0..20u32 {
        log.append_blocking(Bytes::from(i.to_string())).unwrap();
    }
    cluster.shut_down(leader);
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let statuses: Vec<_> =
        others.iter().map(|id| cluster.log(*id).status_blocking().unwrap()).collect();
    let new_leader = statuses[0].leader.expect("a leader right after the shutdown");
    assert_ne!(new_leader.get(), leader);
    for status in &statuses {
        assert_eq!(status.leader, Some(new_leader), "{statuses:?}");
        assert!(status.term > before.term, "{statuses:?}");
    }
    let log = cluster.log(new_leader.get());
    let next = log.append_blocking(Bytes::from_static(b"after")).unwrap();
    let entries = log.read_blocking(LogIndex(1), ReadLimit::entries(100)).unwrap();
    let mut expected: Vec<Bytes> = (0..20u32).map(|i| Bytes::from(i.to_string())).collect();
    expected.push(Bytes::from_static(b"after"));
    assert_eq!(data(&entries), expected);
    assert_eq!(entries.last().unwrap().index, next.index);
}

/// Two nodes that lead a log each stop at the same time (five nodes: the other three go on).
/// Among followers with equally complete logs, each hands its log to the lowest id: node 1 gives
/// log 0 to node 2 while node 2 gives log 1 to node 1, so each comes to lead a log while it is
/// stopping, and must hand that one on too rather than stop as its leader (a peer a handover
/// already asked is not asked again, so the two cannot pass a log back and forth). Once both
/// `shutdown`s returned, the three running nodes agree on a leader for each log, and it is one
/// of them; had a stopping node kept a log, they would agree on it, stopped, until their
/// election timeout (3 s) ran out.
#[test]
fn leaders_that_stop_together_leave_their_logs_to_the_nodes_that_go_on() {
    let mut cluster = Cluster::start_with(5, |c| {
        c.raft.election_timeout_ticks = 300;
        c.log_count = 2;
    });
    cluster.make_leader(LogId(0), 1);
    cluster.make_leader(LogId(1), 2);
    let stopping: Vec<_> = [1, 2].iter().map(|id| cluster.nodes[id - 1].take().unwrap()).collect();
    let barrier = std::sync::Barrier::new(stopping.len());
    std::thread::scope(|scope| {
        for node in stopping {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                node.shutdown();
            });
        }
    });
    for log in [LogId(0), LogId(1)] {
        let mut agreed = None;
        wait_until(Duration::from_secs(60), "the running nodes to agree on a leader", || {
            let views: Vec<_> = (3..=5)
                .map(|id| {
                    let status = cluster.node(id).log(log).unwrap().status_blocking().unwrap();
                    (status.leader, status.term)
                })
                .collect();
            agreed = views[0].0.filter(|_| views.iter().all(|v| *v == views[0]));
            agreed.is_some()
        });
        let leader = agreed.unwrap().get();
        assert!((3..=5).contains(&leader), "log {log} is left to node {leader}, which stopped");
    }
}

/// `Log::read_index` on a follower: once it returns, a read there holds every entry the
/// leader had acknowledged; a leader cut off from the majority gives no read point.
#[test]
fn linearizable_reads_on_a_follower_and_none_on_a_cut_off_leader() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_leader(T);
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let log = cluster.log(leader);
    let follower_log = cluster.log(follower);
    for i in 0..20u32 {
        let position = log.append_blocking(Bytes::from(format!("entry {i}"))).unwrap();
        let point = follower_log.read_index_blocking().unwrap();
        assert!(point >= position.index, "read point {point} before acknowledged {position:?}");
        let read = follower_log.read_blocking(position.index, ReadLimit::entries(1)).unwrap();
        assert_eq!(read.first().map(|e| e.index), Some(position.index), "entry {i}");
        assert_eq!(read[0].data, format!("entry {i}"));
    }
    // The leader alone: it cannot confirm with a majority that it still leads.
    for id in (1..=3).filter(|id| *id != leader) {
        cluster.stop(id);
    }
    match log.read_index_blocking() {
        Err(raftwal::ReadIndexError::NotConfirmed | raftwal::ReadIndexError::NoLeader) => {}
        other => panic!("a leader cut off from the majority answered {other:?}"),
    }
}

/// A node whose log directory is gone (moved away, a disk that lost it) does not start that
/// log over from nothing: it would have forgotten its votes and the entries it acknowledged.
/// Logs added to the configuration later are new, and start.
#[test]
fn a_node_refuses_to_start_a_log_it_lost() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_leader(T);
    cluster.log(leader).append_blocking(Bytes::from_static(b"kept")).unwrap();
    let node = (1..=3).find(|id| *id != leader).unwrap();
    cluster.stop(node);
    let config = cluster.configs[(node - 1) as usize].clone();
    let record = std::fs::read_to_string(config.data_dir.join(raftwal::LOGS_FILE)).unwrap();
    assert_eq!(record, "0\n");
    // A data directory from before the record existed gets one from its log directories.
    std::fs::remove_file(config.data_dir.join(raftwal::LOGS_FILE)).unwrap();
    cluster.restart(node);
    cluster.stop(node);
    let record = std::fs::read_to_string(config.data_dir.join(raftwal::LOGS_FILE)).unwrap();
    assert_eq!(record, "0\n");
    // The log's directory moved away: the node does not start.
    let log_dir = config.data_dir.join("log-0");
    let moved = config.data_dir.join("log-0.moved");
    std::fs::rename(&log_dir, &moved).unwrap();
    match raftwal::Node::start(config.clone()) {
        Err(raftwal::StartError::LostLog { log, dir, .. }) => {
            assert_eq!((log, dir), (LogId(0), log_dir.clone()));
        }
        Err(other) => panic!("expected LostLog, got {other}"),
        Ok(_) => panic!("a node that lost its log started it over"),
    }
    assert!(!log_dir.exists(), "nothing was created in its place");
    // Restored, it starts; with a second log configured, that one is new on every node.
    std::fs::rename(&moved, &log_dir).unwrap();
    let mut more = config.clone();
    more.log_count = 2;
    let started = raftwal::Node::start(more).unwrap();
    drop(started);
    let record = std::fs::read_to_string(config.data_dir.join(raftwal::LOGS_FILE)).unwrap();
    assert_eq!(record, "0\n1\n");
}

/// A node's metrics endpoint stops with the node: its port is closed and free again, so a
/// program that stops a node and starts it again in the same process serves metrics again.
/// The endpoint's thread outlived the node (serving the stopped node's metrics for good), and
/// the restart failed with "cannot serve metrics on ...: address in use".
#[test]
fn a_stopped_nodes_metrics_endpoint_closes_and_its_address_serves_the_restarted_node() {
    let mut cluster = Cluster::start_with(1, |c| c.metrics = Some("127.0.0.1:0".parse().unwrap()));
    cluster.wait_leader(T);
    let addr = cluster.node(1).metrics_addr().expect("metrics served");
    assert!(std::net::TcpStream::connect(addr).is_ok(), "served while the node runs");
    cluster.stop(1);
    let refused = std::net::TcpStream::connect(addr);
    assert!(refused.is_err(), "the endpoint of a stopped node still accepts connections");
    cluster.configs[0].metrics = Some(addr);
    cluster.restart(1);
    assert_eq!(cluster.node(1).metrics_addr(), Some(addr));
}
