//! Compaction and retention on an in-process 3-node cluster over loopback QUIC, with real files:
//! `Log::compact` removes whole segments of committed entries, `storage.retention_bytes` does it
//! on its own, and a follower that needs entries its leader compacted away starts its log over
//! after the leader's first index - 1 (a log start) and follows from there. A remote client
//! compacts the node it asks.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod support;

use bytes::Bytes;
use raftwal::client::{Client, ClientConfig, ClientError};
use raftwal::{LogEntry, NodeConfig, ReadError, ReadLimit};
use raftwal_wire::client::{
    AppendBatchRequest, AppendRequest, ClientId, ClientRequest, ClientResponse, ClientSeq,
    ErrorCode, TaggedPayload,
};
use raftwal_wire::types::{LogId, LogIndex};
use std::time::Duration;
use support::{metric, read_all, wait_until, Cluster};

const T: Duration = Duration::from_secs(20);

/// The smallest segments the store takes (16 KiB), so a few dozen entries fill one.
fn small_segments(config: &mut NodeConfig) {
    config.storage.segment_size_bytes = 16 << 10;
    config.entry_size_bytes_max = 4 << 10;
}

fn payload(i: u32) -> Bytes {
    let mut data = format!("entry {i} ").into_bytes();
    data.resize(1000, b'.');
    Bytes::from(data)
}

fn data(entries: &[LogEntry]) -> Vec<Bytes> {
    entries.iter().map(|e| e.data.clone()).collect()
}

/// Appends `count` entries from `from` on through `log`; returns the last index.
fn append_many(log: &raftwal::Log, from: u32, count: u32) -> LogIndex {
    let mut last = LogIndex::ZERO;
    for chunk in (from..from + count).collect::<Vec<_>>().chunks(10) {
        let batch = log.append_batch_blocking(chunk.iter().map(|i| payload(*i)).collect()).unwrap();
        last = batch.last_index();
    }
    last
}

#[test]
fn a_follower_behind_the_leaders_compacted_log_starts_over_after_it() {
    let mut cluster = Cluster::start_with(3, small_segments);
    let leader = cluster.wait_leader(T);
    let behind = (1..=3).find(|id| *id != leader).unwrap();
    let other = (1..=3).find(|id| *id != leader && *id != behind).unwrap();
    let log = cluster.log(leader);
    append_many(&log, 0, 20);
    cluster.stop(behind);
    // About 60 entries of 1 KiB fill four segments or more while `behind` is down.
    let last = append_many(&log, 20, 60);
    let first = log.compact_blocking(last).unwrap();
    assert!(first > LogIndex(30), "whole segments before {last} went: the log starts at {first}");
    assert!(first <= last.next());
    let status = log.status_blocking().unwrap();
    assert_eq!(status.first_index, first);
    // Reads before the first index say so; reads from it return the entries.
    let compacted = log.read_blocking(LogIndex(1), ReadLimit::entries(10));
    assert_eq!(compacted, Err(ReadError::Compacted { requested: LogIndex(1), first_index: first }));
    let kept = read_all(&log, first);
    assert_eq!(kept.first().map(|e| e.index), Some(first));
    // Index 0 reads and subscribes from the first entry the node still has.
    let from_zero = log.read_blocking(LogIndex(0), ReadLimit::entries(1)).unwrap();
    assert_eq!(from_zero.first().map(|e| e.index), Some(first));
    let mut tail = log.subscribe(LogIndex(0));
    assert_eq!(tail.next_blocking().unwrap().unwrap().index, first);
    assert_eq!(kept.last().map(|e| e.index), Some(last));
    // The follower that was down lacks entries the leader no longer has: it is told where the
    // leader's log starts, replaces its own, and follows from there.
    cluster.restart(behind);
    let after = append_many(&log, 80, 5);
    let follower = cluster.log(behind);
    wait_until(T, "the follower catches up", || {
        follower.status_blocking().unwrap().commit_index >= after
    });
    let status = follower.status_blocking().unwrap();
    assert_eq!(status.first_index, first, "its log starts where the leader's does");
    let entries = read_all(&follower, first);
    assert_eq!(entries.first().map(|e| e.index), Some(first));
    assert_eq!(entries.last().map(|e| e.index), Some(after));
    assert_eq!(data(&entries), data(&read_all(&log, first)), "the same entries as the leader's");
    let text = cluster.node(behind).metrics().render();
    assert_eq!(metric(&text, "raftwal_log_resets_total", behind), 1);
    assert_eq!(metric(&text, "raftwal_first_index", behind), first.get());
    // The follower that kept up kept its whole log: compaction is each node's own.
    let kept_all = cluster.log(other).status_blocking().unwrap();
    assert_eq!(kept_all.first_index, LogIndex(1));
    // Restarted, the reset follower recovers the log it was given.
    cluster.stop(behind);
    cluster.restart(behind);
    let follower = cluster.log(behind);
    wait_until(T, "the follower restarts", || {
        follower.status_blocking().unwrap().commit_index >= after
    });
    assert_eq!(follower.status_blocking().unwrap().first_index, first);
    assert_eq!(data(&read_all(&follower, first)), data(&read_all(&log, first)));
}

#[test]
fn compaction_keeps_what_is_not_committed_and_whole_segments() {
    let cluster = Cluster::start_with(3, small_segments);
    let leader = cluster.wait_leader(T);
    let log = cluster.log(leader);
    // Nothing but the leader's no-op: the one segment is the one written to.
    assert_eq!(log.compact_blocking(LogIndex(1_000)).unwrap(), LogIndex(1));
    let last = append_many(&log, 0, 40);
    // Far beyond the commit index: only entries up to it go, and only whole segments, so the
    // segment being written stays.
    let first = log.compact_blocking(LogIndex(1_000_000)).unwrap();
    assert!(first > LogIndex(1) && first <= last, "first index {first}, last {last}");
    // Compacting before an earlier index changes nothing.
    assert_eq!(log.compact_blocking(LogIndex(2)).unwrap(), first);
    let entries = read_all(&log, first);
    assert_eq!(entries.last().map(|e| e.index), Some(last));
    // The log goes on.
    let next = log.append_blocking(payload(99)).unwrap();
    assert_eq!(next.index, last.next());
}

#[test]
fn retention_keeps_the_newest_segments_on_every_node() {
    const RETAIN: u64 = 48 << 10;
    let cluster = Cluster::start_with(3, |c| {
        small_segments(c);
        c.storage.retention_bytes = RETAIN;
    });
    let leader = cluster.wait_leader(T);
    let log = cluster.log(leader);
    // About 200 KiB: eighteen segments of 16 KiB, of which retention keeps six.
    let last = append_many(&log, 0, 200);
    // A record of 1 KiB takes 1032 bytes: a segment of 16 KiB (its header block takes 4 KiB)
    // holds 11, 11,352 bytes. Retention keeps the newest sealed segments holding 48 KiB (five,
    // 55 entries, a few more with a leader's no-op) and the one being written (up to 11 more)
    // once it caught up with the commit index (it runs every tick, behind the applied index,
    // so it may take a few ticks).
    for id in 1..=3 {
        let log = cluster.log(id);
        wait_until(T, "retention compacts", || {
            let status = log.status_blocking().unwrap();
            status.commit_index >= last && last.get() + 1 - status.first_index.get() <= 72
        });
        let status = log.status_blocking().unwrap();
        let kept = last.get() + 1 - status.first_index.get();
        // 48 KiB of records is at least 48 entries of 1,032 bytes.
        assert!(kept >= 48, "node {id} keeps the retention's bytes: {status:?}");
        let entries = read_all(&log, status.first_index);
        assert_eq!(entries.first().map(|e| e.index), Some(status.first_index), "node {id}");
        assert_eq!(entries.last().map(|e| e.index), Some(last), "node {id}");
        assert_eq!(entries.last().map(|e| e.data.clone()), Some(payload(199)), "node {id}");
    }
}

/// `Client::compact_on` (the `raftwal compact` command's request) compacts the node it asks,
/// and only that node, with the same limits as `Log::compact`.
#[test]
fn a_remote_client_compacts_the_node_it_asks() {
    let cluster = Cluster::start_with(3, small_segments);
    let leader = cluster.wait_leader(T);
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let log = cluster.log(leader);
    let last = append_many(&log, 0, 60);
    for id in 1..=3 {
        let log = cluster.log(id);
        wait_until(T, "every node commits", || log.status_blocking().unwrap().commit_index >= last);
    }
    let addr = |id: u64| cluster.configs[(id - 1) as usize].listen;
    let tls = cluster.tls_dir();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let config = ClientConfig::new(vec![addr(follower)], &tls, LogId(0));
        let client = std::sync::Arc::new(Client::new(config).unwrap());
        // The node applies what it committed on its next turn: ask until it compacted.
        let mut compacted = client.compact_on(addr(follower), last).await.unwrap();
        let deadline = tokio::time::Instant::now() + T;
        while compacted.first_index <= LogIndex(30) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            compacted = client.compact_on(addr(follower), last).await.unwrap();
        }
        let first = compacted.first_index;
        assert!(first > LogIndex(30) && first <= last, "first index {first}, last {last}");
        assert_eq!((compacted.node.get(), compacted.log), (follower, LogId(0)));
        assert_eq!(client.status_of(addr(follower)).await.unwrap().first_index, first);
        // Only the node asked: the leader keeps its whole log.
        assert_eq!(client.status_of(addr(leader)).await.unwrap().first_index, LogIndex(1));
        // Reads there before the first index are refused as compacted; from it, they work.
        match client.read(LogIndex(1), 10).await {
            Err(ClientError::Refused { code: ErrorCode::Compacted, message }) => {
                assert!(message.contains(&format!("starts at {first}")), "{message}")
            }
            other => panic!("a read of a compacted index answered {other:?}"),
        }
        assert_eq!(client.read(first, 1).await.unwrap()[0].index, first);
        // Index 0 reads and tails from the first entry the node still has.
        assert_eq!(client.read(LogIndex(0), 1).await.unwrap()[0].index, first);
        let mut tail = client.subscribe(LogIndex(0));
        let tailed = tokio::time::timeout(T, tail.next()).await.unwrap().unwrap();
        assert_eq!(tailed.index, first);
        // A tail of a compacted index: refused when the only node it knows compacted it, and
        // served by the next node when that one still holds it (each node compacts its own).
        match tokio::time::timeout(T, client.subscribe(LogIndex(1)).next()).await.unwrap() {
            Err(ClientError::Refused { code: ErrorCode::Compacted, .. }) => {}
            other => panic!("a tail of a compacted index on its only node answered {other:?}"),
        }
        let both = ClientConfig::new(vec![addr(follower), addr(leader)], &tls, LogId(0));
        let both = std::sync::Arc::new(Client::new(both).unwrap());
        let mut tail = both.subscribe(LogIndex(1));
        let tailed = tokio::time::timeout(T, tail.next()).await.unwrap().unwrap();
        // (Index 1 is the first leader's no-op, which a tail does not yield.)
        assert!(tailed.index < first, "the tail started at {}, not before {first}", tailed.index);
        assert_eq!(tail.node(), Some(addr(leader)));
        // So is a read: the follower it asks first compacted index 1, the leader serves it.
        let read = both.read(LogIndex(1), 10).await.unwrap();
        assert!(read[0].index < first, "the read started at {}, not before {first}", read[0].index);
        // Compacting before an earlier index changes nothing: the first index never moves back.
        let again = client.compact_on(addr(follower), LogIndex(2)).await.unwrap();
        assert_eq!(again.first_index, first);
        // A log the node does not have is refused with a reason.
        let other_log = Client::new(ClientConfig::new(vec![addr(leader)], &tls, LogId(5))).unwrap();
        match other_log.compact_on(addr(leader), last).await {
            Err(ClientError::Refused { code: ErrorCode::UnknownLog, .. }) => {}
            other => panic!("compacting an unknown log answered {other:?}"),
        }
    });
    // The follower still follows.
    let next = append_many(&log, 60, 5);
    let follower_log = cluster.log(follower);
    wait_until(T, "the compacted follower follows", || {
        follower_log.status_blocking().unwrap().commit_index >= next
    });
}

/// The segment files of a node's log 0, oldest first (the last one is being written).
fn segment_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "seg") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The first index of the segment in `path` (its name).
fn segment_first(path: &std::path::Path) -> LogIndex {
    LogIndex(path.file_stem().unwrap().to_str().unwrap().parse().unwrap())
}

/// `storage.retention_ms` removes the sealed segments last written longer ago than that, by
/// their files' modification times, and keeps the others and the segment being written.
#[test]
#[allow(clippy::disallowed_methods)] // Sets files' times against the wall clock.
fn age_retention_removes_the_segments_written_long_ago() {
    let cluster = Cluster::start_with(3, |c| {
        small_segments(c);
        c.storage.retention_ms = 3_600_000;
    });
    let leader = cluster.wait_leader(T);
    let log = cluster.log(leader);
    let last = append_many(&log, 0, 60);
    for id in 1..=3 {
        let log = cluster.log(id);
        wait_until(T, "every node commits", || log.status_blocking().unwrap().commit_index >= last);
    }
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    for id in 1..=3 {
        let files = segment_files(&cluster.configs[(id - 1) as usize].data_dir);
        assert!(files.len() >= 5, "node {id}: 60 entries of 1 KiB fill several segments");
        // Every segment but the newest two sealed ones and the one being written was last
        // written two hours ago, as if the node had stood still since.
        let (old, recent) = files.split_at(files.len() - 3);
        for path in old {
            let file = std::fs::File::options().write(true).open(path).unwrap();
            file.set_modified(two_hours_ago).unwrap();
        }
        let expected = segment_first(&recent[0]);
        let log = cluster.log(id);
        wait_until(T, "age retention compacts", || {
            log.status_blocking().unwrap().first_index >= expected
        });
        // Only the old segments went.
        let status = log.status_blocking().unwrap();
        assert_eq!(status.first_index, expected, "node {id}");
        let entries = read_all(&log, expected);
        assert_eq!(entries.first().map(|e| e.index), Some(expected), "node {id}");
        assert_eq!(entries.last().map(|e| e.index), Some(last), "node {id}");
        assert_eq!(segment_files(&cluster.configs[(id - 1) as usize].data_dir), recent);
    }
    // The log goes on.
    let next = append_many(&log, 60, 5);
    for id in 1..=3 {
        let log = cluster.log(id);
        wait_until(T, "every node commits", || log.status_blocking().unwrap().commit_index >= next);
    }
}

/// A follower that starts its log over never sees the client entries before its leader's first
/// index: the log start tells it, per client, the highest sequence number among them, and once
/// it leads it refuses a retry of one of those (the append may be in the log) rather than
/// append it a second time. Entries it received by replication are still found.
#[test]
fn a_follower_that_started_over_refuses_retries_of_entries_it_never_saw() {
    let mut cluster = Cluster::start_with(3, small_segments);
    let leader = cluster.wait_leader(T);
    let behind = (1..=3).find(|id| *id != leader).unwrap();
    let addrs = cluster.client_addrs();
    let addr = |id: u64| addrs[(id - 1) as usize];
    let append = |seq: u64| {
        let tagged = TaggedPayload::new(ClientId(9), ClientSeq(seq), payload(seq as u32));
        ClientRequest::Append(AppendRequest { log: LogId(0), tagged })
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let endpoint = runtime.block_on(async { cluster.client_endpoint() });
    cluster.stop(behind);
    // About 60 entries of 1 KiB fill four segments or more while `behind` is down.
    let positions = runtime.block_on(async {
        let connection = endpoint.connect(addr(leader)).await.unwrap();
        let mut positions = Vec::new();
        for seq in 1..=60 {
            match connection.request(&append(seq)).await {
                Ok(ClientResponse::Appended(a)) => positions.push(a.index),
                other => panic!("append {seq}: {other:?}"),
            }
        }
        positions
    });
    let log = cluster.log(leader);
    let first = log.compact_blocking(positions[59]).unwrap();
    assert!(first > positions[30], "the log starts at {first}");
    cluster.restart(behind);
    let later = runtime.block_on(async {
        let connection = endpoint.connect(addr(leader)).await.unwrap();
        match connection.request(&append(61)).await {
            Ok(ClientResponse::Appended(a)) => a.index,
            other => panic!("append 61: {other:?}"),
        }
    });
    let follower = cluster.log(behind);
    wait_until(T, "the follower catches up", || {
        follower.status_blocking().unwrap().commit_index >= later
    });
    let text = cluster.node(behind).metrics().render();
    assert_eq!(metric(&text, "raftwal_log_resets_total", behind), 1, "it started over");
    cluster.make_leader(LogId(0), behind);
    let last = runtime.block_on(async {
        let connection = endpoint.connect(addr(behind)).await.unwrap();
        // Appended before its log's start: refused, not appended again.
        match connection.request(&append(1)).await {
            Ok(ClientResponse::Error(e)) => {
                assert_eq!(e.code, ErrorCode::InvalidRequest);
                assert!(e.message.contains("deduplication window"), "{}", e.message);
            }
            other => panic!("a retry of an entry before the log start answered {other:?}"),
        }
        // Received by replication: answered with its position.
        match connection.request(&append(61)).await {
            Ok(ClientResponse::Appended(a)) => assert_eq!(a.index, later),
            other => panic!("a retry of a replicated entry answered {other:?}"),
        }
        match connection.request(&append(62)).await {
            Ok(ClientResponse::Appended(a)) => a.index,
            other => panic!("a new append answered {other:?}"),
        }
    });
    let status = cluster.log(behind).status_blocking().unwrap();
    assert_eq!(status.last_index, last, "nothing but the new append was added");
    // Both nodes, restarted (as a crash looks), still know: the old leader saved its clients'
    // numbers before it compacted, the follower the log start's before it replaced its log.
    // Their tables are rebuilt from those saves and the entries left.
    for node in [behind, leader] {
        cluster.stop(node);
        cluster.restart(node);
        cluster.make_leader(LogId(0), node);
        let before = cluster.log(node).status_blocking().unwrap().last_index;
        runtime.block_on(async {
            let connection = endpoint.connect(addr(node)).await.unwrap();
            for seq in [1, 31] {
                match connection.request(&append(seq)).await {
                    Ok(ClientResponse::Error(e)) => {
                        assert_eq!(e.code, ErrorCode::InvalidRequest);
                        assert!(e.message.contains("deduplication window"), "{}", e.message);
                    }
                    other => panic!("node {node}, restarted, answered a retry of {seq}: {other:?}"),
                }
            }
            match connection.request(&append(61)).await {
                Ok(ClientResponse::Appended(a)) => assert_eq!(a.index, later),
                other => panic!("node {node}, restarted, answered a retry of 61: {other:?}"),
            }
        });
        let status = cluster.log(node).status_blocking().unwrap();
        assert_eq!(status.last_index, before, "node {node} appended a retry again");
    }
}

/// A leader whose deduplication table knows more clients than one log start of the frame limit
/// can carry (8 KiB: 508) still brings a follower that was down while it compacted back: the
/// log start carries the clients whose entries are newest. One that carried them all could not
/// be encoded, was dropped each time the leader tried, and the follower never caught up.
#[test]
fn a_follower_catches_up_behind_a_leader_with_more_clients_than_a_log_start_frame_holds() {
    let mut cluster = Cluster::start_with(3, |c| {
        small_segments(c);
        c.transport.frame_size_bytes_max = 8 << 10;
        c.raft.append_size_bytes_max = 4 << 10;
    });
    let leader = cluster.wait_leader(T);
    let behind = (1..=3).find(|id| *id != leader).unwrap();
    let addrs = cluster.client_addrs();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let endpoint = runtime.block_on(async { cluster.client_endpoint() });
    cluster.stop(behind);
    // 600 clients of one entry each, in batches of 30 (4 KiB), over several segments.
    let last = runtime.block_on(async {
        let connection = endpoint.connect(addrs[(leader - 1) as usize]).await.unwrap();
        let mut last = LogIndex::ZERO;
        for batch in 0..20u64 {
            let items = (0..30u64)
                .map(|i| {
                    let client = ClientId(1000 + batch * 30 + i);
                    TaggedPayload::new(client, ClientSeq(1), Bytes::from(vec![b'x'; 100]))
                })
                .collect();
            let request = ClientRequest::AppendBatch(AppendBatchRequest { log: LogId(0), items });
            match connection.request(&request).await {
                Ok(ClientResponse::AppendedBatch(a)) => {
                    last = LogIndex(a.first_index.get() + u64::from(a.count) - 1);
                }
                other => panic!("batch {batch}: {other:?}"),
            }
        }
        last
    });
    let log = cluster.log(leader);
    let first = log.compact_blocking(last).unwrap();
    assert!(first > LogIndex(100), "the log starts at {first}");
    cluster.restart(behind);
    let after = append_many(&log, 0, 1);
    let follower = cluster.log(behind);
    wait_until(T, "the follower catches up", || {
        follower.status_blocking().unwrap().commit_index >= after
    });
    let text = cluster.node(behind).metrics().render();
    assert_eq!(metric(&text, "raftwal_log_resets_total", behind), 1, "it started over");
}
