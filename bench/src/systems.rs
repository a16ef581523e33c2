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

/// A free block of `count` consecutive UDP ports on loopback (one per shard of a node), apart
/// from the blocks starting at `taken` (the other nodes', free until they bind them).
fn free_port_block(count: u16, taken: &[u16]) -> Result<u16, String> {
    for _ in 0..200 {
        let probe = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let base = probe.local_addr().map_err(|e| e.to_string())?.port();
        drop(probe);
        if base.checked_add(count).is_none() || taken.iter().any(|t| t.abs_diff(base) < count) {
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
    /// Of the batches, those started while an earlier one was in flight.
    pub(crate) pipelined: u64,
    /// Bytes of background zero-fill writes (`storage.zero_fill`).
    pub(crate) zero_fill_bytes: u64,
}

impl FsyncCounters {
    /// What happened between `before` and these counters.
    pub(crate) fn since(&self, before: &FsyncCounters) -> FsyncCounters {
        FsyncCounters {
            batches: self.batches.saturating_sub(before.batches),
            entries: self.entries.saturating_sub(before.entries),
            latency_us_sum: self.latency_us_sum.saturating_sub(before.latency_us_sum),
            pipelined: self.pipelined.saturating_sub(before.pipelined),
            zero_fill_bytes: self.zero_fill_bytes.saturating_sub(before.zero_fill_bytes),
        }
    }

    /// Mean microseconds from a batch's submission to its durability.
    pub(crate) fn mean_batch_us(&self) -> Option<f64> {
        (self.batches > 0).then(|| self.latency_us_sum as f64 / self.batches as f64)
    }
}

/// The nodes' storage settings a benchmark run chooses; `None` keeps the node's default.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StorageOverrides {
    pub(crate) fsync: raftwal::config::FsyncChoice,
    pub(crate) zero_fill: Option<raftwal::config::ZeroFillChoice>,
    pub(crate) segment_size_bytes: Option<u64>,
    pub(crate) zero_chunk_bytes: Option<usize>,
    pub(crate) batches_in_flight: Option<usize>,
}

impl RaftwalCluster {
    /// Starts `n` nodes keeping `logs` logs, with data and certificates under `dir`, and waits
    /// for a leader of log 0. The nodes use the `storage` settings.
    pub(crate) fn start(
        n: usize,
        dir: &Path,
        storage: StorageOverrides,
        logs: u64,
    ) -> Result<RaftwalCluster, String> {
        let tls_dir = dir.join("tls");
        let ids: Vec<NodeId> = (1..=n as u64).map(NodeId).collect();
        ClusterCerts::generate(None, &ids)
            .and_then(|c| c.write_to_dir(&tls_dir))
            .map_err(|e| format!("certificates: {e}"))?;
        let shards = std::thread::available_parallelism().map_or(1, |p| p.get());
        let mut addrs = Vec::new();
        let mut taken = Vec::new();
        for _ in 0..n {
            let port = free_port_block(shards as u16, &taken)?;
            taken.push(port);
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
            config.storage.fsync = storage.fsync;
            config.log_count = logs;
            if let Some(bytes) = storage.segment_size_bytes {
                config.storage.segment_size_bytes = bytes;
            }
            if let Some(choice) = storage.zero_fill {
                config.storage.zero_fill = choice;
            }
            if let Some(bytes) = storage.zero_chunk_bytes {
                config.storage.zero_chunk_bytes = bytes;
            }
            if let Some(n) = storage.batches_in_flight {
                config.storage.batches_in_flight = n;
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

    /// The leader of log 0 all running nodes agree on, if any.
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
            pipelined: metrics.pipelined_batches.load(std::sync::atomic::Ordering::Relaxed),
            zero_fill_bytes: metrics.zero_fill_bytes.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Moves the leadership of every log i to node `i mod n + 1`, so that with as many logs as
    /// nodes each node leads one (elections alone may put every leader on one node). Returns
    /// once all running nodes agree on every log's leader.
    pub(crate) async fn spread_leaders(&self, logs: u64, timeout: Duration) -> Result<(), String> {
        if logs <= 1 || self.nodes.len() <= 1 {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        for log in 0..logs {
            let want = log % self.nodes.len() as u64 + 1;
            let handles = self.logs_of(LogId(log));
            loop {
                if tokio::time::Instant::now() > deadline {
                    return Err(format!(
                        "log {log}: leadership not on node {want} after {timeout:?}"
                    ));
                }
                match agreed_leader(&handles).await {
                    Some(leader) if leader == want => break,
                    Some(leader) => {
                        if let Some((_, handle)) = handles.iter().find(|(id, _)| *id == leader) {
                            // A refused or lost transfer is tried again until the deadline.
                            let _ = handle.transfer_leadership(NodeId(want)).await;
                        }
                    }
                    None => {}
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// A client of `log` that knows every node.
    pub(crate) fn client(&self, log: LogId) -> Result<Client, String> {
        let mut config = ClientConfig::new(self.addrs.clone(), &self.tls_dir, log);
        config.retry_deadline = Duration::from_secs(60);
        Client::new(config).map_err(|e| e.to_string())
    }

    /// Handles on log 0 of every running node, by node id.
    pub(crate) fn logs(&self) -> Vec<(u64, Log)> {
        self.logs_of(LogId(0))
    }

    /// Handles on `log` of every running node, by node id.
    pub(crate) fn logs_of(&self, log: LogId) -> Vec<(u64, Log)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i as u64 + 1, n.as_ref()?.log(log)?)))
            .collect()
    }

    /// Takes node `id` out of the cluster and stops it on a thread of its own (stopping joins
    /// the node's threads; the load generator must not wait for that). Without `graceful` it
    /// halts, as a crash looks to its peers: no leadership handover (the failover run then
    /// measures an election); with it, a leader hands its leadership over first.
    pub(crate) fn stop_node(&mut self, id: u64, graceful: bool) -> bool {
        let Some(node) = self.nodes.get_mut(id as usize - 1).and_then(Option::take) else {
            return false;
        };
        std::thread::spawn(move || if graceful { node.shutdown() } else { node.halt() });
        true
    }

    /// Stops every node (blocking: call it off the async runtime's thread), without handing
    /// leadership from one stopping node to the next.
    pub(crate) fn stop(&mut self) {
        for node in self.nodes.iter_mut().filter_map(Option::take) {
            node.halt();
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

/// The remote client as a load target: one client per log, appender k writing to log k mod N.
#[derive(Debug)]
pub(crate) struct RaftwalTarget(pub(crate) Vec<Arc<Client>>);

/// Positions of logs other than log 0 carry their log id above this bit, so that they never
/// match a log-0 index (the tail lag is log 0's).
const LOG_SHIFT: u32 = 48;

/// Whether a position [`RaftwalTarget`] returned is an index of log 0.
pub(crate) fn is_log_0(position: u64) -> bool {
    position >> LOG_SHIFT == 0
}

impl AppendTarget for RaftwalTarget {
    async fn append(&self, worker: usize, _seq: u64, payload: Bytes) -> Result<u64, String> {
        let log = worker % self.0.len();
        let position = self.0[log].append(payload).await.map_err(|e| e.to_string())?;
        Ok(((log as u64) << LOG_SHIFT) | position.index.get())
    }
}
