//! A node's configuration: who it is, where it listens and stores, who its peers are, and the
//! tuning of its consensus, storage and transport.
//!
//! Owns: [`NodeConfig`] (built in code by an embedding program, or read from TOML by
//! `raftwal serve --config`); its validation ([`NodeConfig::validate`]) lives in `validate.rs`,
//! which lists the invariants of a validated config, and its errors ([`ConfigError`]) in
//! `error.rs`.
//! Must not: open files or sockets (that is the node's start), or hold run-time state.
//!
//! A log `l` lives on shard `l % shards` of every node, so every node of a cluster should run the
//! same number of shards; traffic that reaches another shard is forwarded, so a mismatch costs a
//! hop, not correctness.

mod error;
mod validate;

pub use error::ConfigError;
pub use validate::{
    ELECTION_TIMEOUT_MS_MAX, LOG_COUNT_MAX, SEGMENT_SIZE_BYTES_MAX, SEGMENT_SIZE_BYTES_MIN,
};

use crate::storage::{FsyncMode, ZeroFill};
use raftwal_wire::types::{LogId, NodeId};
use serde::{Deserialize, Deserializer};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One peer of this node.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's node id.
    pub id: NodeId,
    /// The peer's address (its shard 0; shard `i` listens on this port + `i`). In a file,
    /// `host:port`, a host name resolved once, when the file is read.
    #[serde(deserialize_with = "deserialize_addr")]
    pub addr: SocketAddr,
}

/// Consensus tuning. The defaults suit a LAN or a single host.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftTuning {
    /// Length of one tick of the consensus clock.
    pub tick_ms: u64,
    /// Base election timeout in ticks (the actual one is drawn from `[t, 2t)`).
    pub election_timeout_ticks: u32,
    /// A leader sends heartbeats every this many ticks.
    pub heartbeat_interval_ticks: u32,
    /// Run a PreVote round before elections (keeps a rejoining node from deposing a leader).
    pub pre_vote: bool,
    /// A leader that has not heard from a majority for an election timeout steps down.
    pub check_quorum: bool,
    /// Entry bytes per AppendEntries message, at most.
    pub append_size_bytes_max: usize,
    /// AppendEntries messages in flight to one follower, at most.
    pub inflight_message_count_max: usize,
    /// Entry bytes in flight to one follower, at most. At most the transport's bulk window
    /// (`TransportTuning::bulk_window_bytes`, checked by validation), so the core's flow control
    /// acts before the transport refuses a message.
    pub inflight_size_bytes_max: usize,
    /// Bytes of recent durable entries the core keeps in memory for replication.
    pub entry_cache_size_bytes_max: usize,
}

impl RaftTuning {
    /// The base election timeout: `election_timeout_ticks` ticks of `tick_ms`.
    pub fn election_timeout(&self) -> Duration {
        Duration::from_millis(self.tick_ms.saturating_mul(u64::from(self.election_timeout_ticks)))
    }
}

impl Default for RaftTuning {
    fn default() -> RaftTuning {
        RaftTuning {
            tick_ms: 10,
            election_timeout_ticks: 30,
            heartbeat_interval_ticks: 5,
            pre_vote: true,
            check_quorum: true,
            append_size_bytes_max: 1 << 20,
            inflight_message_count_max: 64,
            inflight_size_bytes_max: 4 << 20,
            entry_cache_size_bytes_max: 64 << 20,
        }
    }
}

/// Storage tuning.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageTuning {
    /// Size every segment file is preallocated to (a multiple of 4096).
    pub segment_size_bytes: u64,
    /// Write segments with O_DIRECT.
    pub direct_io: bool,
    /// How a batch is made durable: `"dsync"` (the default: through io_uring, a batch written in
    /// one write is written with `RWF_DSYNC`, so the write itself is durable; a batch written in
    /// chunks ends with an fdatasync linked on the ring), `"ring"` (every batch's fdatasync
    /// linked after its write in io_uring, run by a kernel worker) or `"thread"` (the shard
    /// thread calls fdatasync after the ring's write). Under `"thread"` the shard serves nothing
    /// while it waits for the device: not its other logs, not the followers' answers that could
    /// commit without the leader's own copy, not heartbeats.
    pub fsync: FsyncChoice,
    /// The largest batch written at once.
    pub batch_bytes_max: usize,
    /// Payload bytes of durable entries kept in memory for reads.
    pub tail_cache_bytes_max: usize,
    /// Whether each log writes zeros over its preallocated blocks ahead of the writer, so that
    /// batches write into blocks written before (an O_DIRECT write into never-written blocks
    /// makes the filesystem convert them, which the batch's flush must commit): `"never"` (the
    /// default), `"auto"` (while the log's recent batches average below 1 MiB, as the
    /// standalone store does) or `"always"`. The zeros cost device bandwidth and a batch that
    /// reaches the device behind one waits for it; on the benchmark machine (three replicas on
    /// one virtual disk), `"never"` committed 14 to 62 % more appends per second at 64
    /// appenders (seven alternating pairs) with a lower p99, and a lone appender's p50 was the same with half the p99
    /// (docs/benchmarks.md, "Zero-fill in the cluster"). `"auto"` may pay on a device where an
    /// operation costs more than its bytes: measure with `raftwal-bench --zero-fill`.
    pub zero_fill: ZeroFillChoice,
    /// Size of one background write of zeros ahead of the writer (a positive multiple of 4096),
    /// under `zero_fill = "auto"` or `"always"`. A batch that reaches the device behind such a
    /// write waits for it, and every log of a node (and, on a shared disk, every replica)
    /// writes them, so the node keeps them small: with 128 KiB instead of the standalone
    /// store's 1 MiB, the commit latency p99 at 64 appenders on the benchmark machine fell
    /// from about 3.7 to 1.9 ms at the same throughput (docs/benchmarks.md, "Zero-fill writes
    /// and the tail").
    pub zero_chunk_bytes: usize,
    /// How many batches of one log may be with the disk at once (1 to 8). With 2 or more,
    /// entries that arrive while a batch is being written go to the disk at once in the next
    /// batch instead of waiting for the first to be durable (the device works on both; such a
    /// batch starts at a 4 KiB block boundary, leaving the rest of the block before it unused).
    /// The default, 1, waits: on the benchmark machine pipelining gained no throughput and
    /// worsened the tail (docs/benchmarks.md, "Pipelined batches"); a host whose CPUs are not
    /// the bottleneck may differ.
    pub batches_in_flight: usize,
    /// Retention: each log keeps its newest sealed segments whose records hold at least this
    /// many bytes, and the segment being written, and removes older segments once every entry
    /// in them is committed, durable on this node and applied; 0 (the default) keeps
    /// everything, and the log grows until [`crate::Log::compact`] is called. Each node applies
    /// it to its own log; a follower that falls behind the leader's first index starts its log
    /// over from there (docs/operations.md, "Retention and compaction").
    pub retention_bytes: u64,
    /// Retention by age, in milliseconds: each log removes its sealed segments last written
    /// more than this long ago (their file's modification time, so the age survives restarts)
    /// once every entry in them is committed, durable on this node and applied; the segment
    /// being written stays. 0 (the default) keeps segments whatever their age. With
    /// [`StorageTuning::retention_bytes`] as well, a segment goes when either would remove it,
    /// as in Kafka. Checked about once a second.
    pub retention_ms: u64,
    /// At start, read and check every record of every sealed segment instead of taking each
    /// one's index file (docs/format.md, "Segment index files"): a start then reads every
    /// stored byte, about 0.5 s per GiB on the benchmark machine. Off (the default), a start
    /// reads the index files and a few records per segment, and a sealed segment's records are
    /// checked when they are read, as every read does.
    pub check_sealed_at_open: bool,
    /// How many sealed segments of each log stay mapped, the newest ones (0 maps none): reads
    /// from them hand out payloads without a copy, reads from older ones copy with `pread`.
    /// The kernel bounds the maps of a process (`vm.max_map_count`, 65,530 by default), and a
    /// log that cannot map the segment it seals is poisoned on the node, so keep `log_count`
    /// times this well below it.
    pub sealed_segments_mapped_max: usize,
}

/// The node's default [`StorageTuning::zero_chunk_bytes`].
pub const NODE_ZERO_CHUNK_BYTES: usize = 128 << 10;

impl Default for StorageTuning {
    fn default() -> StorageTuning {
        let log = crate::storage::LogOptions::default();
        StorageTuning {
            segment_size_bytes: log.segment_size_bytes,
            direct_io: log.direct_io,
            fsync: FsyncChoice::Dsync,
            batch_bytes_max: log.batch_bytes_max,
            tail_cache_bytes_max: log.tail_cache_bytes_max,
            zero_fill: ZeroFillChoice::Never,
            zero_chunk_bytes: NODE_ZERO_CHUNK_BYTES,
            batches_in_flight: log.batches_in_flight_max,
            retention_bytes: 0,
            retention_ms: 0,
            check_sealed_at_open: log.check_sealed_at_open,
            sealed_segments_mapped_max: log.sealed_segments_mapped_max,
        }
    }
}

/// Who issues a batch's fdatasync (see [`StorageTuning::fsync`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncChoice {
    /// The shard thread, right after reaping the batch's write: no kernel worker's wake-up per
    /// batch (a lone appender's commit is about 8 % faster on the benchmark machine), but the
    /// shard blocks for the flush.
    Thread,
    /// io_uring, linked after the write: the shard keeps serving while a kernel worker flushes.
    Ring,
    /// io_uring, the write itself durable (`RWF_DSYNC`) when the batch is one write, with no
    /// separate fdatasync op; otherwise as `Ring`. The shard keeps serving meanwhile; one op per
    /// batch instead of two linked ones shortened a one-entry batch by about 35 us on the
    /// benchmark machine (docs/benchmarks.md). The default.
    Dsync,
}

impl FsyncChoice {
    pub(crate) fn mode(self) -> FsyncMode {
        match self {
            FsyncChoice::Thread => FsyncMode::Thread,
            FsyncChoice::Ring => FsyncMode::Ring,
            FsyncChoice::Dsync => FsyncMode::Dsync,
        }
    }
}

/// When a log writes zeros ahead of its writer (see [`StorageTuning::zero_fill`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZeroFillChoice {
    /// Segments are only preallocated: batches write into never-written blocks. The default.
    Never,
    /// Zeros while the log's recent batches average below 1 MiB (the standalone store's
    /// default, [`crate::storage::ZeroFill::BatchBytesBelow`]).
    Auto,
    /// Zeros as fast as the device takes them.
    Always,
}

impl ZeroFillChoice {
    /// Batches at or above this mean size write without zeros under [`ZeroFillChoice::Auto`].
    pub const AUTO_BATCH_BYTES_BELOW: usize = 1 << 20;

    pub(crate) fn policy(self) -> ZeroFill {
        match self {
            ZeroFillChoice::Never => ZeroFill::Never,
            ZeroFillChoice::Auto => ZeroFill::BatchBytesBelow(Self::AUTO_BATCH_BYTES_BELOW),
            ZeroFillChoice::Always => ZeroFill::Always,
        }
    }
}

/// Transport tuning.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportTuning {
    /// Bytes of AppendEntries queued for one peer before sends are refused.
    pub bulk_window_bytes: usize,
    /// Largest frame sent or accepted.
    pub frame_size_bytes_max: u32,
    /// Client connections the node serves at once (all shards together); one more is closed at
    /// once with close code 5 (busy) and the reason.
    pub client_connections_max: usize,
    /// Bytes all client connections together may make the node hold (requests waiting for an
    /// answer and the room reserved for it, answers and subscription batches not yet taken by
    /// QUIC). While it is reached, no client request is admitted and subscriptions wait.
    pub client_memory_bytes_max: usize,
    /// The same bound for one client connection, all its streams together, so that one
    /// connection cannot take the whole node's.
    pub client_connection_memory_bytes_max: usize,
}

impl Default for TransportTuning {
    fn default() -> TransportTuning {
        TransportTuning {
            bulk_window_bytes: 8 << 20,
            frame_size_bytes_max: 16 << 20,
            client_connections_max: 1024,
            client_memory_bytes_max: 1 << 30,
            client_connection_memory_bytes_max: 64 << 20,
        }
    }
}

/// Everything a node needs to start.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id (not 0), matching its certificate in `tls_dir`.
    pub id: NodeId,
    /// This node's address: shard 0's UDP port; shard `i` listens on this port + `i`. Peers and
    /// clients both connect here (the TLS ALPN tells them apart). Port 0 (the system picks one,
    /// see `Node::client_addr`) only for a one-shard node without peers. In a file,
    /// `host:port`, a host name resolved once, when the file is read.
    #[serde(deserialize_with = "deserialize_addr")]
    pub listen: SocketAddr,
    /// The other members of the cluster.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Where the logs and the node's identity file live.
    pub data_dir: PathBuf,
    /// Where the cluster CA and this node's certificate and key are (see `raftwal certs`).
    pub tls_dir: PathBuf,
    /// Shard threads; `None` means one per available core.
    #[serde(default)]
    pub shards: Option<usize>,
    /// Number of logs the cluster keeps: log ids `0..log_count`, 1 to [`LOG_COUNT_MAX`]. Each log
    /// preallocates two segments (`storage.segment_size_bytes` each: the active one and the
    /// next, prepared ahead) on every node when it opens.
    #[serde(default = "default_log_count")]
    pub log_count: u64,
    /// Largest payload of one entry.
    #[serde(default = "default_entry_size_bytes_max")]
    pub entry_size_bytes_max: usize,
    /// Address to serve Prometheus metrics on (`GET /metrics`), if any.
    #[serde(default, deserialize_with = "deserialize_optional_addr")]
    pub metrics: Option<SocketAddr>,
    /// This node lost the data of some logs (a replaced disk, a log directory gone): each log
    /// whose directory is missing or empty rejoins the cluster instead of being refused. It
    /// learns the terms of every peer (all must answer), takes no vote until it has caught up
    /// with a leader, and then takes part as before (docs/design.md, "Rejoining after the loss
    /// of durable state"). Never set it when the cluster starts for the first time: nodes that
    /// all rejoin elect no leader. Logs that hold their data are not affected, nor are logs new
    /// to this node (not listed in its `raftwal.logs`, as when `log_count` grows); without a
    /// `raftwal.logs` (a whole data directory lost), every log without data rejoins.
    #[serde(default)]
    pub rejoin: bool,
    /// Consensus tuning.
    #[serde(default)]
    pub raft: RaftTuning,
    /// Storage tuning.
    #[serde(default)]
    pub storage: StorageTuning,
    /// Transport tuning.
    #[serde(default)]
    pub transport: TransportTuning,
}

/// Parses `host:port`: an IP address, or a host name resolved now (the first address wins), as
/// `raftwal serve` reads its flags, so that a file and the flags accept the same addresses.
pub fn resolve_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if !text.contains(':') {
        return Err(format!("{text:?} is not host:port (the port is missing)"));
    }
    text.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

fn deserialize_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    resolve_addr(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
}

fn deserialize_optional_addr<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    deserialize_addr(deserializer).map(Some)
}

fn default_log_count() -> u64 {
    1
}

/// The default [`NodeConfig::entry_size_bytes_max`] (1 MiB).
pub const ENTRY_SIZE_BYTES_MAX_DEFAULT: usize = 1 << 20;

fn default_entry_size_bytes_max() -> usize {
    ENTRY_SIZE_BYTES_MAX_DEFAULT
}

impl NodeConfig {
    /// A configuration with defaults for everything but identity, addresses and directories.
    pub fn new(
        id: NodeId,
        listen: SocketAddr,
        peers: Vec<PeerConfig>,
        data_dir: impl Into<PathBuf>,
        tls_dir: impl Into<PathBuf>,
    ) -> NodeConfig {
        NodeConfig {
            id,
            listen,
            peers,
            data_dir: data_dir.into(),
            tls_dir: tls_dir.into(),
            shards: None,
            log_count: default_log_count(),
            entry_size_bytes_max: default_entry_size_bytes_max(),
            metrics: None,
            rejoin: false,
            raft: RaftTuning::default(),
            storage: StorageTuning::default(),
            transport: TransportTuning::default(),
        }
    }

    /// Reads and validates a TOML file.
    pub fn from_toml_file(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let config: NodeConfig = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        config.validate()?;
        Ok(config)
    }

    /// The number of shard threads this node runs.
    pub fn shard_count(&self) -> usize {
        self.shards.unwrap_or_else(|| {
            std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(1)
        })
    }

    /// The shard that owns `log` (on every node with the same shard count).
    pub fn shard_of(&self, log: LogId) -> usize {
        (log.get() % self.shard_count() as u64) as usize
    }

    /// The address of shard `shard` of a node whose shard 0 is at `base`.
    pub fn shard_addr(base: SocketAddr, shard: usize) -> SocketAddr {
        let mut addr = base;
        // Validation guarantees the port fits; saturate rather than wrap if it is skipped.
        addr.set_port(base.port().saturating_add(shard as u16));
        addr
    }

    /// Every voter of every log: this node and its peers.
    pub fn voters(&self) -> Vec<NodeId> {
        let mut voters: Vec<NodeId> = self.peers.iter().map(|p| p.id).collect();
        voters.push(self.id);
        voters.sort();
        voters
    }

    /// The largest data of an entry this node stores: a payload of
    /// [`NodeConfig::entry_size_bytes_max`] and a remote client's 16-byte tag.
    pub fn entry_data_bytes_max(&self) -> usize {
        self.entry_size_bytes_max.saturating_add(raftwal_wire::client::TAG_SIZE_BYTES)
    }

    /// The consensus clock's tick.
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.raft.tick_ms)
    }

    /// Settings that are valid but unwise, each with what to do instead (the node logs them at
    /// start).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.raft.check_quorum && !self.raft.pre_vote {
            warnings.push(
                "raft.check_quorum is on without raft.pre_vote: after a partition heals, a node \
                 whose term ran ahead can depose leader after leader for a while; keep pre_vote \
                 on (docs/operations.md)"
                    .to_string(),
            );
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid three-node configuration.
    pub(super) fn base() -> NodeConfig {
        let mut config = NodeConfig::new(
            NodeId(1),
            "127.0.0.1:7000".parse().unwrap(),
            vec![
                PeerConfig { id: NodeId(2), addr: "127.0.0.1:7100".parse().unwrap() },
                PeerConfig { id: NodeId(3), addr: "127.0.0.1:7200".parse().unwrap() },
            ],
            "/tmp/x",
            "/tmp/tls",
        );
        // Fixed, so that the checks of shard ports do not depend on this machine's cores.
        config.shards = Some(4);
        config
    }

    #[test]
    fn defaults_are_valid() {
        base().validate().unwrap();
        assert_eq!(base().voters(), vec![NodeId(1), NodeId(2), NodeId(3)]);
    }

    #[test]
    fn check_quorum_without_pre_vote_is_valid_but_warned_about() {
        assert!(base().warnings().is_empty());
        let mut c = base();
        c.raft.pre_vote = false;
        c.validate().unwrap();
        let warnings = c.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("keep pre_vote on"), "{warnings:?}");
        c.raft.check_quorum = false;
        assert!(c.warnings().is_empty());
    }

    /// A minimal config file with one `[storage]` line, parsed.
    fn with_storage_line(line: &str) -> NodeConfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let head = "id = 2\nlisten = \"127.0.0.1:7100\"\ndata_dir = \"/d\"\ntls_dir = \"/t\"\n";
        std::fs::write(&path, format!("{head}[storage]\n{line}\n")).unwrap();
        NodeConfig::from_toml_file(&path).unwrap()
    }

    #[test]
    fn buffered_pipelining_needs_the_thread_fsync() {
        let mut c = with_storage_line("batches_in_flight = 2");
        c.storage.direct_io = false;
        for (fsync, ok) in
            [(FsyncChoice::Thread, true), (FsyncChoice::Ring, false), (FsyncChoice::Dsync, false)]
        {
            c.storage.fsync = fsync;
            match c.validate() {
                Ok(()) => assert!(ok, "{fsync:?} accepted"),
                Err(e) => {
                    assert!(!ok, "{fsync:?} refused: {e}");
                    assert!(e.to_string().contains("storage.direct_io"), "{e}");
                }
            }
        }
    }

    #[test]
    fn batches_in_flight_defaults_to_one_is_read_from_toml_and_checked() {
        assert_eq!(StorageTuning::default().batches_in_flight, 1);
        assert_eq!(with_storage_line("batches_in_flight = 3").storage.batches_in_flight, 3);
        for bad in [0, 9] {
            let mut c = base();
            c.storage.batches_in_flight = bad;
            let e = c.validate().unwrap_err();
            assert!(matches!(e, ConfigError::OutOfRange { .. }), "{e}");
            assert!(e.to_string().contains("storage.batches_in_flight"), "{e}");
        }
    }

    #[test]
    fn zero_chunk_defaults_to_128_kib_and_is_read_from_toml() {
        assert_eq!(StorageTuning::default().zero_chunk_bytes, 128 << 10);
        assert!(base().validate().is_ok());
        assert_eq!(
            with_storage_line("zero_chunk_bytes = 1048576").storage.zero_chunk_bytes,
            1 << 20
        );
    }

    #[test]
    fn zero_fill_defaults_to_never_and_parses_every_choice() {
        assert_eq!(StorageTuning::default().zero_fill, ZeroFillChoice::Never);
        for (text, choice, policy) in [
            ("never", ZeroFillChoice::Never, ZeroFill::Never),
            ("auto", ZeroFillChoice::Auto, ZeroFill::BatchBytesBelow(1 << 20)),
            ("always", ZeroFillChoice::Always, ZeroFill::Always),
        ] {
            let c = with_storage_line(&format!("zero_fill = \"{text}\""));
            assert_eq!(c.storage.zero_fill, choice, "{text}");
            assert_eq!(choice.policy(), policy, "{text}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let head = "id = 2\nlisten = \"127.0.0.1:7100\"\ndata_dir = \"/d\"\ntls_dir = \"/t\"\n";
        std::fs::write(&path, format!("{head}[storage]\nzero_fill = \"sometimes\"\n")).unwrap();
        let e = NodeConfig::from_toml_file(&path).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("sometimes"), "{e}");
    }

    #[test]
    fn toml_is_parsed_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            r#"
id = 2
listen = "127.0.0.1:7100"
data_dir = "/var/lib/raftwal"
tls_dir = "/etc/raftwal"
shards = 1
peers = [ { id = 1, addr = "127.0.0.1:7000" } ]
[raft]
tick_ms = 20
"#,
        )
        .unwrap();
        let c = NodeConfig::from_toml_file(&path).unwrap();
        assert_eq!(c.id, NodeId(2));
        assert_eq!(c.raft.tick_ms, 20);
        assert_eq!(c.raft.election_timeout_ticks, RaftTuning::default().election_timeout_ticks);
        std::fs::write(&path, "id = 2\nlisten = \"127.0.0.1:1\"\nbogus = 1\n").unwrap();
        let e = NodeConfig::from_toml_file(&path).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn fsync_defaults_to_dsync_and_parses_every_choice() {
        assert_eq!(StorageTuning::default().fsync, FsyncChoice::Dsync);
        assert_eq!(FsyncChoice::Dsync.mode(), FsyncMode::Dsync);
        const HEAD: &str =
            "id = 2\nlisten = \"127.0.0.1:7100\"\ndata_dir = \"/d\"\ntls_dir = \"/t\"\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        for (text, choice) in [
            ("dsync", FsyncChoice::Dsync),
            ("ring", FsyncChoice::Ring),
            ("thread", FsyncChoice::Thread),
        ] {
            let toml = format!("{HEAD}[storage]\nfsync = \"{text}\"\n");
            std::fs::write(&path, toml).unwrap();
            assert_eq!(NodeConfig::from_toml_file(&path).unwrap().storage.fsync, choice, "{text}");
        }
        std::fs::write(&path, format!("{HEAD}[storage]\nfsync = \"osync\"\n")).unwrap();
        let e = NodeConfig::from_toml_file(&path).unwrap_err();
        assert!(e.to_string().contains("osync"), "{e}");
    }

    #[test]
    fn toml_addresses_take_host_names_as_the_flags_do() {
        // docs/operations.md: "Addresses are `host:port`; a host name is resolved once, at
        // start", for the file as for the flags.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let text = "id = 2\nlisten = \"localhost:7100\"\ndata_dir = \"/d\"\ntls_dir = \"/t\"\n\
                    metrics = \"localhost:9100\"\n\
                    peers = [ { id = 1, addr = \"localhost:7000\" } ]\n";
        std::fs::write(&path, text).unwrap();
        let c = NodeConfig::from_toml_file(&path).unwrap();
        assert!(c.listen.ip().is_loopback() && c.listen.port() == 7100, "{c:?}");
        assert!(c.peers[0].addr.ip().is_loopback() && c.peers[0].addr.port() == 7000, "{c:?}");
        assert_eq!(c.metrics.map(|m| m.port()), Some(9100));
        std::fs::write(
            &path,
            "id = 2\nlisten = \"127.0.0.1\"\ndata_dir = \"/d\"\ntls_dir = \"/t\"\n",
        )
        .unwrap();
        let e = NodeConfig::from_toml_file(&path).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("the port is missing"), "{e}");
    }

    #[test]
    fn shard_addresses_are_consecutive_ports() {
        let a = NodeConfig::shard_addr("10.0.0.1:7000".parse().unwrap(), 3);
        assert_eq!(a, "10.0.0.1:7003".parse().unwrap());
    }
}
