//! Starting a node on a data directory that is not what it seems: a listed log whose
//! directory lost the log's files but is not empty, a directory holding another node's logs
//! without its identity file, the default shard count seen from a thread pinned to one core, and
//! a metrics address in use.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]
// One test pins a thread to a core (sched_setaffinity), as an embedding program may.
#![allow(unsafe_code)]

mod support;

use bytes::Bytes;
use raftwal::{Node, StartError};
use std::time::Duration;
use support::Cluster;

const T: Duration = Duration::from_secs(30);

/// A node never starts a log it created before as if new when its data is missing, also when
/// the directory is not empty: here it holds only `lost+found`, as a freshly formatted file
/// system mounted there does. (Found by a review: any entry counted as holding the log, and the
/// node served log 0 as new with term 0, having forgotten its votes and acknowledged entries.)
#[test]
fn a_log_directory_without_its_log_but_not_empty_is_refused() {
    let mut cluster = Cluster::start(1);
    cluster.wait_leader(T);
    for i in 0..5 {
        cluster.log(1).append_blocking(Bytes::from(format!("entry {i}"))).unwrap();
    }
    cluster.shut_down(1);
    let config = cluster.configs[0].clone();
    let log_dir = config.data_dir.join("log-0");
    std::fs::remove_dir_all(&log_dir).unwrap();
    std::fs::create_dir(&log_dir).unwrap();
    std::fs::create_dir(log_dir.join("lost+found")).unwrap();
    match Node::start(config) {
        Err(StartError::LostLog { .. }) => {}
        Err(other) => panic!("refused, but not as a lost log: {other}"),
        Ok(node) => {
            let status = node.log(raftwal_wire::types::LogId(0)).unwrap().status_blocking();
            node.halt();
            panic!(
                "log 0, created before and listed in raftwal.logs, lost all its data (only \
                 lost+found is left in its directory), yet the node started it as a new log: \
                 {status:?}"
            );
        }
    }
}

/// A data directory holding logs (`raftwal.logs`, `log-0/`) but not its `raftwal.id` (lost, or
/// not copied back with a restore) is not new: node 2, pointed at node 1's by mistake, is
/// refused rather than adopting node 1's log and votes as its own. (Found by a review: the
/// directory was taken as new and stamped with node 2's identity.)
#[test]
fn a_data_dir_holding_logs_but_no_identity_is_not_adopted_by_another_node() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_leader(T);
    cluster.log(leader).append_blocking(Bytes::from_static(b"entry")).unwrap();
    for id in 1..=3 {
        cluster.shut_down(id);
    }
    let node1_dir = cluster.configs[0].data_dir.clone();
    assert!(node1_dir.join(raftwal::LOGS_FILE).exists());
    std::fs::remove_file(node1_dir.join(raftwal::IDENTITY_FILE)).unwrap();
    let mut config = cluster.configs[1].clone();
    config.data_dir = node1_dir.clone();
    match Node::start(config) {
        Err(StartError::DataDir { message, .. }) => {
            assert!(message.contains("no raftwal.id"), "{message}");
            assert!(!node1_dir.join(raftwal::IDENTITY_FILE).exists(), "an identity was written");
        }
        Err(other) => panic!("refused, but not for its missing identity: {other}"),
        Ok(node) => {
            node.halt();
            let identity = std::fs::read_to_string(node1_dir.join(raftwal::IDENTITY_FILE)).unwrap();
            panic!(
                "node 2 started on node 1's data directory (its logs, no raftwal.id) and \
                 stamped it as its own: {identity:?}"
            );
        }
    }
}

/// `shards` left unset means one per available core, counted once when the node starts: an
/// embedding program that pins a thread to one core (as thread-per-core programs do) and asks
/// the node for log 1 from it gets the shard that serves it. (Found by a review: the count was
/// asked again at every routing, `available_parallelism` reads the calling thread's CPU
/// affinity, and the pinned thread's appends to log 1 went to shard 0: `UnknownLog`.)
#[test]
fn a_node_with_default_shards_serves_every_log_to_a_pinned_thread() {
    use raftwal::NodeConfig;
    use raftwal_wire::tls::ClusterCerts;
    use raftwal_wire::types::{LogId, NodeId};
    let cores = std::thread::available_parallelism().unwrap().get();
    if cores < 2 {
        eprintln!("skipped: one core, where every thread counts the same shards");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    ClusterCerts::generate(None, &[NodeId(1)])
        .unwrap()
        .write_to_dir(&dir.path().join("tls"))
        .unwrap();
    let mut config = NodeConfig::new(
        NodeId(1),
        support::free_addr(),
        vec![],
        dir.path().join("data"),
        dir.path().join("tls"),
    );
    config.log_count = 2;
    config.storage.segment_size_bytes = 4 << 20;
    assert!(config.shards.is_none(), "the default: one shard per available core");
    let node = Node::start(config).unwrap();
    // From an unpinned thread, log 1 works.
    let log = node.log(LogId(1)).unwrap();
    support::wait_until(T, "log 1 to elect its leader", || {
        log.status_blocking().is_ok_and(|s| s.leader.is_some())
    });
    log.append_blocking(Bytes::from_static(b"from main")).unwrap();
    // From a thread pinned to core 0, the same call on the same node.
    let from_pinned = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(0, &mut set);
                    assert_eq!(
                        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
                        0
                    );
                }
                let log = node.log(LogId(1)).expect("the node has log 1");
                log.append_blocking(Bytes::from_static(b"from a pinned thread"))
            })
            .join()
            .unwrap()
    });
    node.halt();
    from_pinned.expect("log 1 appends from a thread pinned to one core");
}

/// A metrics address in use fails the start at once, naming the metrics address (not a shard),
/// before any shard starts or any log is created, and leaves the data directory free for the
/// next try. (Found by a review: the port was bound only after every log had opened, and the
/// error blamed shard 0.)
#[test]
fn a_metrics_address_in_use_fails_the_start_before_any_log_opens() {
    let dir = tempfile::tempdir().unwrap();
    let ids = [raftwal_wire::types::NodeId(1)];
    raftwal_wire::tls::ClusterCerts::generate(None, &ids)
        .unwrap()
        .write_to_dir(&dir.path().join("tls"))
        .unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = Cluster::configs(dir.path(), 1).remove(0);
    config.metrics = Some(taken.local_addr().unwrap());
    match Node::start(config.clone()) {
        Err(e @ StartError::Metrics { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&taken.local_addr().unwrap().to_string()), "{text}");
            assert!(!text.contains("shard"), "{text}");
        }
        Err(other) => panic!("refused, but not for the metrics address: {other}"),
        Ok(node) => {
            node.halt();
            panic!("started with its metrics address taken");
        }
    }
    assert!(!config.data_dir.join("log-0").exists(), "a log was created before the check");
    // With the port free, the same directory starts (the failed start left no lock behind).
    drop(taken);
    let node = Node::start(config).unwrap();
    assert!(node.metrics_addr().is_some());
    node.halt();
}
