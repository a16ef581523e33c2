//! The systems the cluster benchmark drives: an embedded raftwal cluster (real nodes on loopback
//! QUIC, real files, real fsyncs) driven through the remote client, and (with the `etcd`
//! feature) a local etcd cluster driven through its gRPC API.
//!
//! Owns: starting and stopping each cluster, its load target, and the figures only the system
//! itself knows (raftwal's fsync counts and batch sizes on the leader).

use crate::load::AppendTarget;
use bytes::Bytes;
use raftwal::client::{Client, ClientConfig};
use raftwal::{Log, Node, NodeConfig, PeerConfig};
use raftwal_wire::tls::ClusterCerts;
use raftwal_wire::types::{LogId, NodeId};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A free block of `count` consecutive UDP ports on loopback (one per shard of a node).
fn free_port_block(count: u16) -> Result<u16, String> {
    for _ in 0..200 {
        let probe = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let base = probe.local_addr().map_err(|e| e.to_string())?.port();
        drop(probe);
        if base.checked_add(count).is_none() {
            continue;
        }
        let all_free = (0..count).all(|i| UdpSocket::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return Ok(base);
        }
    }
    Err("no block of free UDP ports on loopback".into())
}

/// An embedded raftwal cluster.
#[derive(Debug)]
pub(crate) struct RaftwalCluster {
    pub(crate) nodes: Vec<Option<Node>>,
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) tls_dir: PathBuf,
}

/// Storage counters read off a node, to turn into fsyncs per second, mean batch size and mean
/// batch time.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FsyncCounters {
    pub(crate) batches: u64,
    pub(crate) entries: u64,
    /// Sum of the batches' times from submission to durable (write, fdatasync and the wake-up
    /// that reports it), in microseconds.
    pub(crate) latency_us_sum: u64,
}

impl FsyncCounters {
    /// What happened between `before` and these counters.
    pub(crate) fn since(&self, before: &FsyncCounters) -> FsyncCounters {
        FsyncCounters {
            batches: self.batches.saturating_sub(before.batches),
            entries: self.entries.saturating_sub(before.entries),
            latency_us_sum: self.latency_us_sum.saturating_sub(before.latency_us_sum),
        }
    }

    /// Mean microseconds from a batch's submission to its durability.
    pub(crate) fn mean_batch_us(&self) -> Option<f64> {
        (self.batches > 0).then(|| self.latency_us_sum as f64 / self.batches as f64)
    }
}

impl RaftwalCluster {
    /// Starts `n` nodes with data and certificates under `dir`, and waits for a leader. The
    /// nodes use `fsync` and, when given, segments of `segment_size_bytes`.
    pub(crate) fn start(
        n: usize,
        dir: &Path,
        fsync: raftwal::config::FsyncChoice,
        segment_size_bytes: Option<u64>,
    ) -> Result<RaftwalCluster, String> {
        let tls_dir = dir.join("tls");
        let ids: Vec<NodeId> = (1..=n as u64).map(NodeId).collect();
        ClusterCerts::generate(None, &ids)
            .and_then(|c| c.write_to_dir(&tls_dir))
            .map_err(|e| format!("certificates: {e}"))?;
        let shards = std::thread::available_parallelism().map_or(1, |p| p.get());
        let mut addrs = Vec::new();
        for _ in 0..n {
            let port = free_port_block(shards as u16)?;
            addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        let mut nodes = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let id = i as u64 + 1;
            let peers = addrs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, a)| PeerConfig { id: NodeId(j as u64 + 1), addr: *a })
                .collect();
            let mut config =
                NodeConfig::new(NodeId(id), *addr, peers, dir.join(format!("node-{id}")), &tls_dir);
            config.shards = Some(shards);
            config.storage.fsync = fsync;
            if let Some(bytes) = segment_size_bytes {
                config.storage.segment_size_bytes = bytes;
            }
            let node = Node::start(config).map_err(|e| format!("node {id}: {e}"))?;
            nodes.push(Some(node));
        }
        let cluster = RaftwalCluster { nodes, addrs, tls_dir };
        cluster.wait_leader(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// The id of the node every running node agrees leads log 0.
    pub(crate) fn wait_leader(&self, timeout: Duration) -> Result<u64, String> {
        #[allow(clippy::disallowed_methods)] // The harness waits on real time.
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader() {
                return Ok(leader);
            }
            #[allow(clippy::disallowed_methods)]
            if std::time::Instant::now() > deadline {
                return Err(format!("no leader after {timeout:?}"));
            }
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The leader all running nodes agree on, if any.
    pub(crate) fn leader(&self) -> Option<u64> {
        let mut agreed = None;
        for node in self.nodes.iter().flatten() {
            let log = node.log(LogId(0))?;
            let leader = log.status_blocking().ok()?.leader?;
            if agreed.is_some_and(|a| a != leader) {
                return None;
            }
            agreed = Some(leader);
        }
        let leader = agreed?.get();
        self.nodes.get(leader as usize - 1)?.as_ref()?;
        Some(leader)
    }

    /// A node other than `leader`, for a follower's subscriber.
    pub(crate) fn follower_of(&self, leader: u64) -> usize {
        (0..self.nodes.len())
            .find(|i| *i as u64 + 1 != leader && self.nodes[*i].is_some())
            .unwrap_or(0)
    }

    /// The storage counters of log 0 on node `id`.
    pub(crate) fn fsync_counters(&self, id: u64) -> FsyncCounters {
        let Some(Some(node)) = self.nodes.get((id as usize).wrapping_sub(1)) else {
            return FsyncCounters::default();
        };
        let Some(metrics) = node.metrics().log(LogId(0)) else {
            return FsyncCounters::default();
        };
        FsyncCounters {
            batches: metrics.fsync_batch_entries.count_total(),
            entries: metrics.fsync_batch_entries.sum_total(),
            latency_us_sum: metrics.fsync_latency_us.sum_total(),
        }
    }

    /// A client of log 0 that knows every node.
    pub(crate) fn client(&self) -> Result<Client, String> {
        let mut config = ClientConfig::new(self.addrs.clone(), &self.tls_dir, LogId(0));
        config.retry_deadline = Duration::from_secs(60);
        Client::new(config).map_err(|e| e.to_string())
    }

    /// Handles on log 0 of every running node, by node id.
    pub(crate) fn logs(&self) -> Vec<(u64, Log)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i as u64 + 1, n.as_ref()?.log(LogId(0))?)))
            .collect()
    }

    /// Takes node `id` out of the cluster and stops it on a thread of its own (stopping joins
    /// the node's threads; the load generator must not wait for that).
    pub(crate) fn stop_node(&mut self, id: u64) -> bool {
        let Some(node) = self.nodes.get_mut(id as usize - 1).and_then(Option::take) else {
            return false;
        };
        std::thread::spawn(move || node.shutdown());
        true
    }

    /// Stops every node (blocking: call it off the async runtime's thread).
    pub(crate) fn stop(&mut self) {
        for node in self.nodes.iter_mut().filter_map(Option::take) {
            node.shutdown();
        }
    }
}

/// The leader all the given nodes agree on, if any (from inside an async runtime).
pub(crate) async fn agreed_leader(logs: &[(u64, Log)]) -> Option<u64> {
    let mut agreed = None;
    for (_, log) in logs {
        let leader = log.status().await.ok()?.leader?;
        if agreed.is_some_and(|a| a != leader) {
            return None;
        }
        agreed = Some(leader);
    }
    let leader = agreed?.get();
    logs.iter().any(|(id, _)| *id == leader).then_some(leader)
}

/// The remote client as a load target.
#[derive(Debug)]
pub(crate) struct RaftwalTarget(pub(crate) Arc<Client>);

impl AppendTarget for RaftwalTarget {
    async fn append(&self, _worker: usize, _seq: u64, payload: Bytes) -> Result<u64, String> {
        self.0.append(payload).await.map(|p| p.index.get()).map_err(|e| e.to_string())
    }
}
