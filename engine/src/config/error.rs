//! [`ConfigError`]: why a node configuration was refused, one variant per rule, each naming the
//! settings involved and what to change.
//!
//! Owns: the messages an operator sees for a configuration mistake (docs/operations.md lists
//! them in its start errors).
//! Must not: check anything; `validate.rs` holds the rules.

use super::validate::ELECTION_TIMEOUT_MS_MAX;
use raftwal_wire::types::NodeId;
use std::net::SocketAddr;
use std::path::PathBuf;
use thiserror::Error;

/// Why a configuration is invalid. Fix the configuration and start again.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a node configuration.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line and column.
        message: String,
    },
    /// Node id 0 is reserved.
    #[error("node id 0 is reserved; use ids from 1")]
    ZeroId,
    /// The node lists itself as a peer.
    #[error("node {0} lists itself among its peers")]
    SelfPeer(NodeId),
    /// A peer appears twice, or with id 0.
    #[error("peer {0} appears more than once or has the reserved id 0")]
    BadPeer(NodeId),
    /// A count that must be positive is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A size that must be a positive multiple of the 4096-byte block is not.
    #[error("{what} must be a positive multiple of 4096 bytes, got {value}")]
    NotBlockMultiple {
        /// The setting.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// A setting outside its allowed range.
    #[error("{what} must be between {min} and {max}, got {value}")]
    OutOfRange {
        /// The setting.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The smallest allowed value.
        min: u64,
        /// The largest allowed value.
        max: u64,
    },
    /// Pipelined batches with buffered I/O and syncs on a kernel worker: two fdatasyncs of one
    /// file at once may report a writeback error to only one of them.
    #[error(
        "storage.batches_in_flight above 1 needs storage.direct_io = true or storage.fsync = \
         \"thread\": buffered batches synced at once on the ring may lose a writeback error"
    )]
    BufferedPipelining,
    /// A shard's port would not fit in 16 bits.
    #[error("address {addr} with {shards} shards needs ports beyond 65535")]
    PortRange {
        /// The base address.
        addr: SocketAddr,
        /// The shard count.
        shards: usize,
    },
    /// A peer is listed with port 0, on which no node listens.
    #[error("peer {peer} has port 0 ({addr}): list the port it listens on (its `listen` address)")]
    PeerPortZero {
        /// The peer.
        peer: NodeId,
        /// Its address as listed.
        addr: SocketAddr,
    },
    /// This node would let the system pick its port although peers must reach it, or although
    /// its other shards' ports follow from it.
    #[error(
        "listen address {addr} has port 0: a node with peers needs a fixed port for them to \
         reach it, and with several shards shard i listens on the port + i; only a one-shard node \
         without peers may let the system pick its port"
    )]
    ListenPortZero {
        /// The listen address.
        addr: SocketAddr,
    },
    /// Two members would listen on one port of one host: with `shards` shards, a node listens
    /// on its port and the `shards - 1` ports after it.
    #[error(
        "node {first} at {first_addr} and node {second} at {second_addr} would share ports: with \
         {shards} shards every node listens on its port and the {} after it, so the ports of two \
         nodes on one host must be at least {shards} apart (their ranges overlap)",
        shards - 1
    )]
    PortOverlap {
        /// One member.
        first: NodeId,
        /// Its shard-0 address.
        first_addr: SocketAddr,
        /// The other member.
        second: NodeId,
        /// Its shard-0 address.
        second_addr: SocketAddr,
        /// The shard count.
        shards: usize,
    },
    /// The election timeout does not exceed the heartbeat interval.
    #[error(
        "election timeout ({election} ticks) must exceed the heartbeat interval ({heartbeat} ticks)"
    )]
    Timing {
        /// Election timeout in ticks.
        election: u32,
        /// Heartbeat interval in ticks.
        heartbeat: u32,
    },
    /// The transport's window for AppendEntries is smaller than what the consensus core may
    /// send to a follower before it waits: the transport would refuse the core's messages, and
    /// replication would stall with a leader elected.
    #[error(
        "transport.bulk_window_bytes ({window}) must be at least raft.inflight_size_bytes_max \
         ({inflight}): a smaller window refuses the AppendEntries the consensus core may send, \
         and followers stop catching up; raise the window or lower the in-flight bytes"
    )]
    WindowBelowInflight {
        /// `transport.bulk_window_bytes`.
        window: usize,
        /// `raft.inflight_size_bytes_max`.
        inflight: usize,
    },
    /// An AppendEntries of `raft.append_size_bytes_max` would not fit in one frame: the
    /// transport could not encode it, and a follower sent one would never catch up.
    #[error(
        "raft.append_size_bytes_max ({append}) must be at most transport.frame_size_bytes_max \
         ({frame}) minus 4096 bytes of framing: a larger AppendEntries cannot be sent, and the \
         followers it is for never catch up; lower the first or raise the second"
    )]
    AppendAboveFrame {
        /// `raft.append_size_bytes_max`.
        append: usize,
        /// `transport.frame_size_bytes_max`.
        frame: u32,
    },
    /// The election timeout is longer than [`ELECTION_TIMEOUT_MS_MAX`].
    #[error(
        "raft.election_timeout_ticks ({ticks}) times raft.tick_ms ({tick_ms}) is an election \
         timeout of {timeout_ms} ms; at most {ELECTION_TIMEOUT_MS_MAX} ms (10 minutes) is \
         allowed: after a leader fails, the cluster waits that long before it elects another"
    )]
    ElectionTimeoutTooLong {
        /// `raft.election_timeout_ticks`.
        ticks: u32,
        /// `raft.tick_ms`.
        tick_ms: u64,
        /// Their product.
        timeout_ms: u128,
    },
    /// The largest entry does not fit the message or batch limits.
    #[error(
        "entry_size_bytes_max ({entry}) must be at most {limit} ({what}); raise that limit or \
         lower the entry size"
    )]
    EntryTooLarge {
        /// The configured maximum entry size.
        entry: usize,
        /// The limit it exceeds.
        limit: usize,
        /// Which limit.
        what: &'static str,
    },
}
