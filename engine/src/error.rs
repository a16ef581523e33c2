//! The errors of the embedding API, one enum per operation. Each variant says what the caller can
//! do next.
//!
//! Recoverable errors (a retry, elsewhere or later, may succeed) are kept apart from the fatal
//! ones of a log that can no longer write ([`AppendError::Poisoned`]), which need an operator.

use raftwal_wire::types::{LogId, LogIndex, NodeId};
use std::net::SocketAddr;
use std::path::PathBuf;
use thiserror::Error;

/// Why [`crate::Node::start`] failed. Nothing was left running.
#[derive(Debug, Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The node's certificate, key or the cluster CA could not be loaded.
    #[error("TLS identity in {dir}: {source}")]
    Tls {
        /// The TLS directory.
        dir: PathBuf,
        /// What failed.
        source: raftwal_wire::tls::identity::IdentityError,
    },
    /// Another process holds the data directory (a node running on it already).
    #[error(
        "data directory {dir} is in use by another raftwal process ({holder}); two nodes on one \
         directory would corrupt its logs: stop the other one first"
    )]
    DataDirInUse {
        /// The data directory.
        dir: PathBuf,
        /// What the lock file says about its holder (its process id), if anything.
        holder: String,
    },
    /// The data directory belongs to another cluster or another node.
    #[error(
        "data directory {dir} belongs to cluster {found_cluster} node {found_node}, but this node \
         is cluster {cluster} node {node}: point --data-dir at this node's own directory"
    )]
    ForeignDataDir {
        /// The data directory.
        dir: PathBuf,
        /// The cluster id it records.
        found_cluster: String,
        /// The node id it records.
        found_node: NodeId,
        /// This node's cluster id.
        cluster: String,
        /// This node's id.
        node: NodeId,
    },
    /// A log this node created before has lost its directory (or its hard state): the node
    /// would start it over with no memory of its votes and entries, which can break Raft's
    /// guarantees (a second vote in a term it voted in, an acknowledgement counted twice).
    #[error(
        "log {log}: this node created it before ({record} lists it), but {dir} holds no log: its \
         votes and entries are lost, and a node that forgot them can break Raft's guarantees if \
         it takes part as if nothing happened; restore the directory, or start the node once \
         with --rejoin (NodeConfig::rejoin) to rejoin the cluster safely (docs/operations.md, \
         \"Errors and what to do\")"
    )]
    LostLog {
        /// The log.
        log: LogId,
        /// Its directory.
        dir: PathBuf,
        /// The file that records the logs this node created.
        record: PathBuf,
    },
    /// The data directory could not be prepared (created, read, its identity file written).
    #[error("data directory {dir}: {message}")]
    DataDir {
        /// The data directory.
        dir: PathBuf,
        /// What failed.
        message: String,
    },
    /// A log could not be opened: its files are unreadable or corrupt (see the message for the
    /// file, offset and index). Corruption is never repaired silently.
    #[error("log {log} in {dir}: {source}")]
    Storage {
        /// The log.
        log: LogId,
        /// Its directory.
        dir: PathBuf,
        /// What failed.
        source: crate::storage::OpenError,
    },
    /// A log's recovered state is inconsistent (for example a commit index past its last entry).
    #[error("log {log}: recovered state refused: {message}")]
    Restore {
        /// The log.
        log: LogId,
        /// What is wrong.
        message: String,
    },
    /// The metrics endpoint could not listen (its TCP port is taken, or the address is not
    /// local). Checked before any shard starts or any log opens.
    #[error("cannot serve metrics on {addr}: {source}: choose another --metrics address")]
    Metrics {
        /// The configured metrics address.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// A shard could not open its io_uring ring or its QUIC endpoint.
    #[error("shard {shard}: {message}")]
    Shard {
        /// The shard.
        shard: usize,
        /// What failed (for example "address already in use" with the address).
        message: String,
    },
}

/// A shard of a running node stopped without being told to stop ([`crate::Node::failure`],
/// [`crate::Node::wait_for_failure`]). The logs it owns are no longer served by this node:
/// calls on their [`crate::Log`] handles fail with `ShuttingDown`, requests for them that reach
/// the node go unanswered, and their peers hear nothing from this node, as from a crashed one;
/// the node's other shards go on. Nothing restarts the shard: stop the node ([`crate::Node::halt`];
/// the lost logs cannot hand their leadership over) and start it again, which recovers them from
/// the data directory. `raftwal serve` does so itself: it halts the node and exits with status 1,
/// for a supervisor to restart it.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ShardFailure {
    /// The shard thread panicked: a bug in raftwal. Report it with the message and the log lines
    /// before it.
    #[error(
        "shard {shard} of node {node} stopped while the node was running: it panicked: {message}"
    )]
    Panicked {
        /// This node.
        node: NodeId,
        /// The shard's index.
        shard: usize,
        /// The panic's message.
        message: String,
    },
    /// The shard's loop ended on its own: its transport's events ended, which a running shard
    /// does not expect.
    #[error(
        "shard {shard} of node {node} stopped while the node was running: its loop ended: {reason}"
    )]
    Ended {
        /// This node.
        node: NodeId,
        /// The shard's index.
        shard: usize,
        /// Why the loop ended.
        reason: String,
    },
}

impl ShardFailure {
    /// The index of the shard that stopped.
    pub fn shard(&self) -> usize {
        match self {
            ShardFailure::Panicked { shard, .. } | ShardFailure::Ended { shard, .. } => *shard,
        }
    }

    /// The node whose shard stopped.
    pub fn node(&self) -> NodeId {
        match self {
            ShardFailure::Panicked { node, .. } | ShardFailure::Ended { node, .. } => *node,
        }
    }
}

/// Where the leader is, when known: retry the append there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderInfo {
    /// The leader's node id.
    pub node: NodeId,
    /// Its client address for this log, when this node knows it.
    pub addr: Option<SocketAddr>,
}

/// Why an append was not acknowledged.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AppendError {
    /// This node is not the log's leader. Append on the leader (the remote client does this for
    /// you).
    #[error("node is not the leader of log {log}{}", leader_text(.leader))]
    NotLeader {
        /// The log.
        log: LogId,
        /// The leader this node knows of.
        leader: Option<LeaderInfo>,
    },
    /// Leadership changed before the entry committed. It may or may not commit: a remote client
    /// retries with the same sequence number, which the log deduplicates.
    #[error("leadership of log {log} changed before the entry committed; it may still commit")]
    LeadershipLost {
        /// The log.
        log: LogId,
    },
    /// The payload is larger than the configured maximum entry size. Split it.
    #[error("entry of {size_bytes} bytes exceeds the maximum of {max_bytes} bytes")]
    TooLarge {
        /// The payload's size.
        size_bytes: usize,
        /// The configured maximum (`entry_size_bytes_max`).
        max_bytes: usize,
    },
    /// The batch has no entries.
    #[error("empty batch")]
    EmptyBatch,
    /// A leadership transfer is under way; retry shortly.
    #[error("leadership transfer of log {log} in progress; retry shortly")]
    TransferInProgress {
        /// The log.
        log: LogId,
    },
    /// The leader's own disk is far behind its appends (a slow or stalled device; the followers
    /// may still be committing them): it holds what it has not written in memory, and takes no
    /// more until its disk catches up. Retry shortly; nothing was appended.
    #[error(
        "log {log}: the leader's disk is {undurable_bytes} bytes behind its appends (at most \
         {limit_bytes} are held in memory); retry shortly"
    )]
    Backlogged {
        /// The log.
        log: LogId,
        /// Payload bytes appended and not durable on the leader (at least).
        undurable_bytes: usize,
        /// The most the leader holds so.
        limit_bytes: usize,
    },
    /// The leader's disk is full: a write it needs before any other (a new term, for a single
    /// voter) was refused, and it takes no appends until a retry (every tick) finds room.
    /// Retry shortly; nothing was appended.
    #[error("log {log}: the leader's disk is full; it takes no appends until there is room")]
    DiskFull {
        /// The log.
        log: LogId,
    },
    /// The log's storage failed (an fsync or write error) and refuses writes for good: the node
    /// needs an operator. Other replicas go on serving. An append that was already waiting for
    /// its commit when the storage failed may still commit: its entries went out to the
    /// followers, which go on without this node (read another replica to check).
    /// An append refused up front was not taken.
    #[error("log {log} refuses writes after a storage failure: {reason}")]
    Poisoned {
        /// The log.
        log: LogId,
        /// The original failure.
        reason: String,
    },
    /// The node stopped (shut down or halted) while the append waited for its commit. Its
    /// entries are in this node's log and went out to the followers, so they may or may not
    /// commit (under another leader, or here after a restart): read the log to check before
    /// appending them again. A remote client is answered `ShuttingDown` and retries elsewhere
    /// with the same sequence numbers, which the log deduplicates.
    #[error("node of log {log} stopped before the entry committed; it may still commit")]
    Interrupted {
        /// The log.
        log: LogId,
    },
    /// The node is shutting down and did not take the append: nothing of it is in the log, so
    /// appending it again (on another node) is safe. (An append it had taken already is
    /// answered [`AppendError::Interrupted`].)
    #[error("node is shutting down")]
    ShuttingDown,
    /// The node hosts no such log.
    #[error("unknown log {0}")]
    UnknownLog(LogId),
}

fn leader_text(leader: &Option<LeaderInfo>) -> String {
    match leader {
        Some(LeaderInfo { node, addr: Some(addr) }) => format!("; leader is node {node} at {addr}"),
        Some(LeaderInfo { node, addr: None }) => format!("; leader is node {node}"),
        None => "; no leader known".to_owned(),
    }
}

/// Why a read or a subscription failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The requested index was compacted away; start at `first_index` or later.
    #[error("index {requested} is compacted; the log starts at {first_index}")]
    Compacted {
        /// The index asked for.
        requested: LogIndex,
        /// The first index still stored.
        first_index: LogIndex,
    },
    /// A limit of zero entries or bytes was asked for.
    #[error("a read must allow at least one entry and one byte")]
    EmptyLimit,
    /// Reading the log failed (an I/O error or a checksum mismatch, named in the message).
    #[error("log {log}: read failed: {reason}")]
    Storage {
        /// The log.
        log: LogId,
        /// What failed.
        reason: String,
    },
    /// The subscriber fell behind and was dropped; subscribe again from the next index wanted.
    ///
    /// Not returned by this version: a subscriber that falls behind is never dropped. Delivery
    /// to it pauses while its buffer is full (which bounds its memory) and resumes as it reads;
    /// if compaction or retention removes entries it has not read meanwhile, it ends with
    /// [`ReadError::Compacted`] naming the first index still stored.
    #[error("subscriber lagged behind and was dropped; resubscribe from {next}")]
    Lagged {
        /// The next index the subscriber would have received.
        next: LogIndex,
    },
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
    /// The node hosts no such log.
    #[error("unknown log {0}")]
    UnknownLog(LogId),
}

/// Why a status query failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StatusError {
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
    /// The node hosts no such log.
    #[error("unknown log {0}")]
    UnknownLog(LogId),
}

/// Why [`crate::Log::read_index`] could not give a linearizable read point.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReadIndexError {
    /// No leader is known (an election is under way, or this node is cut off from the others):
    /// retry after an election timeout.
    #[error("no leader is known")]
    NoLeader,
    /// The leader could not confirm with a majority that it still leads (it lost leadership,
    /// or this node's request or its answer was lost): retry.
    #[error("the leader could not confirm its leadership; retry")]
    NotConfirmed,
    /// The leader confirmed the read index, but this replica did not reach it within ten
    /// election timeouts (it is far behind its leader): read from the leader (a remote client
    /// is sent there), or retry.
    #[error("this replica did not catch up to read index {0} in time; read from the leader")]
    Lagging(LogIndex),
    /// The log's storage failed on this node; the log stopped here.
    #[error("log storage failed: {0}")]
    Storage(String),
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
    /// The node hosts no such log.
    #[error("unknown log {0}")]
    UnknownLog(LogId),
}

/// Why [`crate::Log::compact`] could not compact.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CompactError {
    /// The log's storage failed on this node (or failed while compacting); the log stopped here.
    #[error("log storage failed: {0}")]
    Storage(String),
    /// The clients' sequence numbers, which must be durable before the entries that carry them
    /// go (a restart rebuilds deduplication from them), could not be saved (a full disk, most
    /// likely); nothing was compacted. The log goes on; compact again later.
    #[error(
        "cannot save the clients' sequence numbers, which must be durable before entries go: \
         {0}; nothing was compacted"
    )]
    ClientSeqs(String),
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
    /// The node hosts no such log.
    #[error("unknown log {0}")]
    UnknownLog(LogId),
}

/// Why a leadership transfer could not start.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TransferError {
    /// This node is not the leader (or its copy of the log failed, which ends its part in the
    /// log's consensus).
    #[error("node is not the leader")]
    NotLeader,
    /// The target is not a member, or is this node.
    #[error("node {0} is not another member of the cluster")]
    BadTarget(NodeId),
    /// A transfer (to the node named) is under way: wait for it to finish, or to be abandoned
    /// after an election timeout, and ask again.
    #[error("a transfer of leadership to node {0} is under way")]
    Busy(NodeId),
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
    /// The node hosts no such log.
    #[error("unknown log {0}")]
    UnknownLog(LogId),
}
