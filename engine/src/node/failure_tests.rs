//! A shard thread that ends while its node runs (a panic, its loop ending on its own) is
//! reported by [`Node::failure`] and [`Node::wait_for_failure`], naming the shard and the cause;
//! shard threads that end because the node told them to are not.

use super::*;
use crate::error::AppendError;
use bytes::Bytes;
use raftwal_wire::tls::ClusterCerts;
use std::net::UdpSocket;
use std::time::Duration;

/// A bound on every wait: far beyond what each takes, so a slow machine fails nothing.
const T: Duration = Duration::from_secs(30);

/// Node 1 of a cluster of one, with `shards` shards and one log on each (log `i` on shard `i`),
/// each led. Keep the directory for as long as the node.
fn start(shards: usize) -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    ClusterCerts::generate(None, &[NodeId(1)]).unwrap().write_to_dir(&tls).unwrap();
    let mut config =
        NodeConfig::new(NodeId(1), listen_addr(shards), vec![], dir.path().join("data"), tls);
    config.shards = Some(shards);
    config.log_count = shards as u64;
    config.storage.segment_size_bytes = 4 << 20;
    let node = Node::start(config).unwrap();
    for log in 0..shards as u64 {
        let leader = node.log(LogId(log)).unwrap().wait_for_leader_blocking(T);
        assert_eq!(leader, Some(NodeId(1)), "log {log} elects its one node");
    }
    (dir, node)
}

/// Shard 0's address: the system's choice for one shard; for more, a port the system picks
/// whose next ones (the other shards') are free too (bound, then released: good enough for
/// tests).
fn listen_addr(shards: usize) -> SocketAddr {
    if shards == 1 {
        return "127.0.0.1:0".parse().unwrap();
    }
    loop {
        let first = UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = first.local_addr().unwrap();
        let rest: std::io::Result<Vec<UdpSocket>> =
            (1..shards).map(|shard| UdpSocket::bind(NodeConfig::shard_addr(base, shard))).collect();
        if rest.is_ok() {
            return base;
        }
    }
}

/// Runs `future` on a runtime of its own, for at most [`T`].
fn within_t<F: std::future::Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    runtime.block_on(async { tokio::time::timeout(T, future).await }).unwrap()
}

/// Waits until the threads of `shards` have ended (a failure is reported before its thread
/// ends).
fn wait_until_ended(node: &Node, shards: std::ops::Range<usize>) {
    within_t(async {
        while !node.threads[shards.clone()].iter().all(JoinHandle::is_finished) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

/// A shard that panics while its node runs is reported, by the shard's index and the panic's
/// message, to a caller that waits for it and to one that asks later; the node's other shard
/// goes on serving its log, and calls on the failed shard's log are refused.
#[test]
fn a_shard_that_panics_is_reported_with_its_index_and_message() {
    let (_dir, node) = start(2);
    assert_eq!(node.failure(), None, "every shard serves");
    node.shards[1].send(Command::Panic { message: "planted bug in shard 1" }).unwrap();
    wait_until_ended(&node, 1..2);
    let expected = ShardFailure::Panicked {
        node: NodeId(1),
        shard: 1,
        message: "planted bug in shard 1".to_owned(),
    };
    assert_eq!(node.failure(), Some(expected.clone()), "shard 1's thread ended in a panic");
    let failure = within_t(node.wait_for_failure());
    assert_eq!(failure, expected);
    assert_eq!((failure.node(), failure.shard()), (NodeId(1), 1));
    assert_eq!(
        failure.to_string(),
        "shard 1 of node 1 stopped while the node was running: it panicked: planted bug in shard 1"
    );
    // Shard 0 still serves log 0; log 1, whose shard is gone, refuses at once.
    let log = node.log(LogId(0)).unwrap();
    let position = log.append_blocking(Bytes::from_static(b"on")).unwrap();
    let read = log.read_blocking(position.index, crate::log::ReadLimit::entries(1)).unwrap();
    assert_eq!(read[0].data, "on");
    let refused = node.log(LogId(1)).unwrap().append_blocking(Bytes::from_static(b"gone"));
    assert!(matches!(refused, Err(AppendError::ShuttingDown)), "{refused:?}");
    // A halt after the failure stops the rest and returns.
    node.halt();
}

/// A shard whose loop ends without the node telling it to stop (what the end of its
/// transport's events does) is reported with the shard's index and the reason.
#[test]
fn a_shard_whose_loop_ends_on_its_own_is_reported() {
    let (_dir, node) = start(1);
    node.shards[0].send(Command::EndLoop { reason: "planted end of the events" }).unwrap();
    wait_until_ended(&node, 0..1);
    let expected = ShardFailure::Ended {
        node: NodeId(1),
        shard: 0,
        reason: "planted end of the events".to_owned(),
    };
    assert_eq!(node.failure(), Some(expected.clone()), "shard 0's loop ended on its own");
    let failure = within_t(node.wait_for_failure());
    assert_eq!(failure, expected);
    assert_eq!(
        failure.to_string(),
        "shard 0 of node 1 stopped while the node was running: its loop ended: planted end of \
         the events"
    );
    node.halt();
}

/// Shard threads that end because the node told them to, by the graceful stop's command or
/// by a halt, report no failure.
#[test]
fn shards_the_node_stops_report_no_failure() {
    for hand_over in [true, false] {
        let (_dir, node) = start(2);
        if hand_over {
            // What `Node::shutdown` sends, with the node kept to be asked afterwards.
            for shard in &node.shards {
                shard.send(Command::Shutdown { hand_over: true }).unwrap();
            }
        } else {
            node.halt_handle().halt();
        }
        wait_until_ended(&node, 0..2);
        assert_eq!(node.failure(), None, "shards stopped with hand_over {hand_over}");
        node.halt();
    }
}

/// A shard that fails while its node stops gracefully (after `raftwal serve` took its signal and
/// moved the node into the thread that stops it) is known once the stop returned, through the
/// node's halt handle, so that the process does not exit as if the stop had been clean.
#[test]
fn a_shard_failing_during_the_stop_is_known_through_the_halt_handle() {
    let (_dir, node) = start(2);
    let handle = node.halt_handle();
    assert_eq!(handle.failure(), None);
    node.shards[1].send(Command::Panic { message: "planted bug while stopping" }).unwrap();
    std::thread::spawn(move || node.shutdown()).join().unwrap();
    let expected = ShardFailure::Panicked {
        node: NodeId(1),
        shard: 1,
        message: "planted bug while stopping".to_owned(),
    };
    assert_eq!(handle.failure(), Some(expected));
}
