//! An in-process cluster of real nodes on loopback, for the API tests.

#![allow(dead_code)]
// Test harness code: failures here are test failures, and it waits on real time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use raftwal::raft::Role;
use raftwal::{Log, LogEntry, Node, NodeConfig, PeerConfig, ReadLimit};
use raftwal_wire::tls::ClusterCerts;
use raftwal_wire::types::{LogId, LogIndex, NodeId};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A free UDP port on loopback (bound, then released: good enough for tests).
pub(crate) fn free_addr() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

pub(crate) struct Cluster {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) configs: Vec<NodeConfig>,
    pub(crate) nodes: Vec<Option<Node>>,
}

impl Cluster {
    pub(crate) fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    /// Configurations for `n` nodes with fast timing for tests.
    pub(crate) fn configs(dir: &Path, n: u64) -> Vec<NodeConfig> {
        let addrs: Vec<SocketAddr> = (0..n).map(|_| free_addr()).collect();
        (1..=n)
            .map(|id| {
                let peers = (1..=n)
                    .filter(|p| *p != id)
                    .map(|p| PeerConfig { id: NodeId(p), addr: addrs[(p - 1) as usize] })
                    .collect();
                let mut config = NodeConfig::new(
                    NodeId(id),
                    addrs[(id - 1) as usize],
                    peers,
                    dir.join(format!("node-{id}")),
                    dir.join("tls"),
                );
                config.shards = Some(1);
                config.storage.segment_size_bytes = 4 << 20;
                config
            })
            .collect()
    }

    pub(crate) fn start(n: u64) -> Cluster {
        Self::start_with(n, |_| {})
    }

    /// Starts `n` nodes after `adjust` changed each one's configuration.
    pub(crate) fn start_with(n: u64, adjust: impl Fn(&mut NodeConfig)) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<NodeId> = (1..=n).map(NodeId).collect();
        ClusterCerts::generate(None, &ids).unwrap().write_to_dir(&dir.path().join("tls")).unwrap();
        let mut configs = Self::configs(dir.path(), n);
        configs.iter_mut().for_each(adjust);
        let nodes = configs.iter().map(|c| Some(Node::start(c.clone()).unwrap())).collect();
        Cluster { dir, configs, nodes }
    }

    /// A raw client endpoint with the cluster's client certificate (call it inside a tokio
    /// runtime), for tests that speak the client protocol themselves.
    pub(crate) fn client_endpoint(&self) -> raftwal_wire::transport::ClientEndpoint {
        let identity = raftwal_wire::tls::TlsIdentity::load_client(&self.tls_dir()).unwrap();
        raftwal_wire::transport::ClientEndpoint::open(
            &identity,
            "127.0.0.1:0".parse().unwrap(),
            &raftwal_wire::transport::QuicTuning::default(),
            raftwal_wire::codec::FrameLimits::default(),
        )
        .unwrap()
    }

    pub(crate) fn node(&self, id: u64) -> &Node {
        self.nodes[(id - 1) as usize].as_ref().expect("node is running")
    }

    pub(crate) fn log(&self, id: u64) -> Log {
        self.node(id).log(LogId(0)).unwrap()
    }

    pub(crate) fn running(&self) -> impl Iterator<Item = u64> + '_ {
        (1..=self.nodes.len() as u64).filter(|id| self.nodes[(*id - 1) as usize].is_some())
    }

    /// Waits until the running nodes agree on a leader among them; returns it.
    pub(crate) fn wait_leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let leaders: Vec<Option<NodeId>> = self
                .running()
                .map(|id| self.log(id).status_blocking().ok().and_then(|s| s.leader))
                .collect();
            if let Some(Some(leader)) = leaders.first() {
                let agreed = leaders.iter().all(|l| *l == Some(*leader));
                let alive =
                    self.nodes.get((leader.get() - 1) as usize).is_some_and(|n| n.is_some());
                if agreed && alive {
                    let status = self.log(leader.get()).status_blocking().unwrap();
                    if status.role == raftwal::raft::Role::Leader {
                        return leader.get();
                    }
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader within {timeout:?}: {leaders:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops node `id` as a crash looks to its peers (no leadership handover).
    pub(crate) fn stop(&mut self, id: u64) {
        if let Some(node) = self.nodes[(id - 1) as usize].take() {
            node.halt();
        }
    }

    /// Stops node `id` gracefully: a leader hands its leadership over first.
    pub(crate) fn shut_down(&mut self, id: u64) {
        if let Some(node) = self.nodes[(id - 1) as usize].take() {
            node.shutdown();
        }
    }

    pub(crate) fn restart(&mut self, id: u64) {
        assert!(self.nodes[(id - 1) as usize].is_none());
        let node = Node::start(self.configs[(id - 1) as usize].clone()).unwrap();
        self.nodes[(id - 1) as usize] = Some(node);
    }

    /// Makes node `to` the leader of `log`, every other node (all must run) its follower with
    /// the whole log (so that a handover from `to` may pick any of them).
    pub(crate) fn make_leader(&self, log: LogId, to: u64) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        wait_until(Duration::from_secs(60), "the leader and a caught-up log", || {
            let statuses: Vec<_> = self
                .running()
                .map(|id| self.node(id).log(log).unwrap().status_blocking().unwrap())
                .collect();
            let Some(leader) = statuses.iter().find(|s| s.role == Role::Leader) else {
                return false;
            };
            if leader.node.get() != to {
                // Refused (busy, or not the leader any more): the next round asks again.
                let from = self.node(leader.node.get()).log(log).unwrap();
                let _ = runtime.block_on(from.transfer_leadership(NodeId(to)));
                return false;
            }
            statuses.iter().all(|s| s.leader == Some(leader.node) && s.term == leader.term)
                && leader.peers.iter().all(|p| p.match_index == leader.last_index)
        });
    }

    pub(crate) fn client_addrs(&self) -> Vec<SocketAddr> {
        self.configs.iter().map(|c| c.listen).collect()
    }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes.
pub(crate) fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The value of `name` with labels `{node="N",log="0"}` in a Prometheus text rendering.
pub(crate) fn metric(text: &str, name: &str, node: u64) -> u64 {
    let key = format!("{name}{{node=\"{node}\",log=\"0\"}} ");
    let line =
        text.lines().find(|l| l.starts_with(&key)).unwrap_or_else(|| panic!("{key}:\n{text}"));
    line[key.len()..].trim().parse().expect("a metric is an integer")
}

/// Every committed entry of `log` on its node from `from` on.
pub(crate) fn read_all(log: &Log, from: LogIndex) -> Vec<LogEntry> {
    let mut out: Vec<LogEntry> = Vec::new();
    let mut next = from;
    loop {
        let entries = log.read_blocking(next, ReadLimit::entries(1000)).unwrap();
        let Some(last) = entries.last() else { return out };
        next = last.index.next();
        out.extend(entries);
    }
}
