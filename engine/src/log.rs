//! The embedding API's handle on one replicated log: [`Log`], and the values it returns.
//!
//! Owns: [`Log`] (cheap to clone, usable from any thread) and the value types [`Position`],
//! [`BatchPosition`], [`LogEntry`], [`ReadLimit`], [`LogStatus`].
//! Must not: touch the log's state. Every call becomes a command to the shard that owns the log;
//! the shard answers on a one-shot channel, which the caller awaits (async) or blocks on.
//!
//! Entries seen through this API are user entries: the no-op a new leader appends at the start
//! of its term is internal and skipped, so indices increase but may skip a position at a
//! leadership change; the deduplication header of a remote client's entry is stripped.

use crate::error::{
    AppendError, CompactError, ReadError, ReadIndexError, StatusError, TransferError,
};
use crate::raft::Role;
use crate::runtime::command::{Command, ShardHandle};
use crate::subscription::Subscription;
use bytes::Bytes;
use raftwal_wire::client::TAG_SIZE_BYTES;
use raftwal_wire::types::{Entry, EntryKind, LogId, LogIndex, NodeId, Term};
use tokio::sync::oneshot;

/// Where an appended entry landed. Once returned, the entry is durable on a majority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    /// The entry's index.
    pub index: LogIndex,
    /// The term it was appended in.
    pub term: Term,
}

/// Where an appended batch landed: `count` consecutive entries from `first_index`, all of `term`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BatchPosition {
    /// Index of the first entry.
    pub first_index: LogIndex,
    /// Number of entries.
    pub count: u64,
    /// The term they were appended in.
    pub term: Term,
}

impl BatchPosition {
    /// Index of the last entry.
    pub fn last_index(&self) -> LogIndex {
        self.first_index.plus(self.count.saturating_sub(1))
    }
}

/// A committed user entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Its index.
    pub index: LogIndex,
    /// The term it was appended in.
    pub term: Term,
    /// The payload, as appended.
    pub data: Bytes,
}

impl LogEntry {
    /// The user's view of a stored entry: `None` for internal entries (a leader's no-op) and for
    /// a tagged entry too short to hold its header (which the leader never writes).
    pub fn from_entry(entry: &Entry) -> Option<LogEntry> {
        let data = match entry.kind {
            EntryKind::Noop => return None,
            EntryKind::Normal => entry.data.clone(),
            EntryKind::Tagged => {
                if entry.data.len() < TAG_SIZE_BYTES {
                    return None;
                }
                entry.data.slice(TAG_SIZE_BYTES..)
            }
        };
        Some(LogEntry { index: entry.index, term: entry.term, data })
    }
}

/// How much one read returns at most (at least one entry when one is available).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimit {
    /// Entries, at most.
    pub entries_max: usize,
    /// Payload bytes, about at most.
    pub bytes_max: usize,
}

impl ReadLimit {
    /// At most `entries_max` entries (and at most 16 MiB).
    pub fn entries(entries_max: usize) -> ReadLimit {
        ReadLimit { entries_max, bytes_max: 16 << 20 }
    }

    /// At most about `bytes_max` bytes (and at most 1,000,000 entries).
    pub fn bytes(bytes_max: usize) -> ReadLimit {
        ReadLimit { entries_max: 1_000_000, bytes_max }
    }
}

/// A follower's replication progress, as the leader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// The follower.
    pub node: NodeId,
    /// Highest index known durable on it and matching the leader.
    pub match_index: LogIndex,
}

/// One log's state on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogStatus {
    /// The log.
    pub log: LogId,
    /// This node.
    pub node: NodeId,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its commit index, as its reads serve it: every entry up to it is committed and readable
    /// from this node (a follower's consensus core may have learned a higher one in the same
    /// loop turn, before the entries reached its store).
    pub commit_index: LogIndex,
    /// The first index it still stores.
    pub first_index: LogIndex,
    /// Its last index (written, possibly not yet durable).
    pub last_index: LogIndex,
    /// Its last durable index.
    pub durable_index: LogIndex,
    /// Followers' progress (only on the leader).
    pub peers: Vec<PeerStatus>,
}

/// A handle on one log of a running [`crate::Node`]. Clone it freely; every clone talks to the
/// shard thread that owns the log.
#[derive(Clone, Debug)]
pub struct Log {
    id: LogId,
    shard: ShardHandle,
}

async fn answer<T, E>(rx: oneshot::Receiver<Result<T, E>>, gone: E) -> Result<T, E> {
    rx.await.unwrap_or(Err(gone))
}

fn answer_blocking<T, E>(rx: oneshot::Receiver<Result<T, E>>, gone: E) -> Result<T, E> {
    rx.blocking_recv().unwrap_or(Err(gone))
}

impl Log {
    pub(crate) fn new(id: LogId, shard: ShardHandle) -> Log {
        Log { id, shard }
    }

    /// The log's id.
    pub fn id(&self) -> LogId {
        self.id
    }

    fn send_append(
        &self,
        payloads: Vec<Bytes>,
    ) -> Result<oneshot::Receiver<Result<BatchPosition, AppendError>>, AppendError> {
        if payloads.is_empty() {
            return Err(AppendError::EmptyBatch);
        }
        let (reply, rx) = oneshot::channel();
        self.shard
            .send(Command::Append { log: self.id, payloads, reply })
            .map_err(|_| AppendError::ShuttingDown)?;
        Ok(rx)
    }

    /// Appends one entry; resolves once it is committed (durable on a majority). Only the leader
    /// accepts appends ([`AppendError::NotLeader`] names it otherwise). Two errors leave the
    /// outcome open, the entry being in the log already: [`AppendError::LeadershipLost`] and
    /// [`AppendError::Interrupted`] (read the log to check before appending it again).
    pub async fn append(&self, data: Bytes) -> Result<Position, AppendError> {
        let rx = self.send_append(vec![data])?;
        let batch = answer(rx, AppendError::ShuttingDown).await?;
        Ok(Position { index: batch.first_index, term: batch.term })
    }

    /// Appends entries as consecutive entries of one term; resolves once all are committed.
    pub async fn append_batch(&self, data: Vec<Bytes>) -> Result<BatchPosition, AppendError> {
        let rx = self.send_append(data)?;
        answer(rx, AppendError::ShuttingDown).await
    }

    /// [`Log::append`] for callers without an async runtime. Must not be called from inside one.
    pub fn append_blocking(&self, data: Bytes) -> Result<Position, AppendError> {
        let rx = self.send_append(vec![data])?;
        let batch = answer_blocking(rx, AppendError::ShuttingDown)?;
        Ok(Position { index: batch.first_index, term: batch.term })
    }

    /// [`Log::append_batch`] for callers without an async runtime. Must not be called from inside
    /// one.
    pub fn append_batch_blocking(&self, data: Vec<Bytes>) -> Result<BatchPosition, AppendError> {
        let rx = self.send_append(data)?;
        answer_blocking(rx, AppendError::ShuttingDown)
    }

    fn send_read(
        &self,
        from: LogIndex,
        limit: ReadLimit,
    ) -> Result<oneshot::Receiver<Result<Vec<LogEntry>, ReadError>>, ReadError> {
        if limit.entries_max == 0 || limit.bytes_max == 0 {
            return Err(ReadError::EmptyLimit);
        }
        let (reply, rx) = oneshot::channel();
        self.shard
            .send(Command::Read { log: self.id, from, limit, reply })
            .map_err(|_| ReadError::ShuttingDown)?;
        Ok(rx)
    }

    /// Committed entries from index `from` on, within `limit`; empty when nothing is committed at
    /// or after `from` yet. Served by this node from its own log, leader or not. Entries start
    /// at index 1; `from` 0 reads from the first entry this node still has, wherever compaction
    /// left it (a `from` below that answers [`ReadError::Compacted`]).
    pub async fn read(&self, from: LogIndex, limit: ReadLimit) -> Result<Vec<LogEntry>, ReadError> {
        let rx = self.send_read(from, limit)?;
        answer(rx, ReadError::ShuttingDown).await
    }

    /// [`Log::read`] for callers without an async runtime. Must not be called from inside one.
    pub fn read_blocking(
        &self,
        from: LogIndex,
        limit: ReadLimit,
    ) -> Result<Vec<LogEntry>, ReadError> {
        let rx = self.send_read(from, limit)?;
        answer_blocking(rx, ReadError::ShuttingDown)
    }

    /// A stream of committed entries from index `from` on (0: from the first entry this node
    /// still has, wherever compaction left it; until the stream has given an entry, it follows
    /// the log's start should that move past it, as when a follower's log is started over after
    /// its leader compacted), as they commit, on this node (leader or follower), across leader
    /// changes. Its buffer is bounded: a consumer that stops reading
    /// pauses delivery to itself, and nothing else.
    pub fn subscribe(&self, from: LogIndex) -> Subscription {
        Subscription::start(self.id, self.shard.clone(), from)
    }

    /// A linearizable read point (ReadIndex, thesis 6.4): the cluster's commit index as of this
    /// call, returned once this node can serve reads up to it. A read from this node started
    /// after it returns sees every entry committed before the call, on a follower too (an
    /// append acknowledged to anyone before the call is there). The leader confirms with a
    /// majority that it still leads (one heartbeat round, shared by the reads of that moment);
    /// a follower asks its leader. Without it, a follower's reads may trail the leader's commit
    /// index by a round trip. [`ReadIndexError::NoLeader`] and [`ReadIndexError::NotConfirmed`]
    /// ask for a retry. Waits while this node catches up, at most ten election timeouts
    /// ([`ReadIndexError::Lagging`]: read from the leader), and fails with `NoLeader` if this node
    /// loses its leader meanwhile.
    pub async fn read_index(&self) -> Result<LogIndex, ReadIndexError> {
        let rx = self.send_read_index()?;
        answer(rx, ReadIndexError::ShuttingDown).await
    }

    /// [`Log::read_index`] for callers without an async runtime. Must not be called from inside
    /// one.
    pub fn read_index_blocking(&self) -> Result<LogIndex, ReadIndexError> {
        let rx = self.send_read_index()?;
        answer_blocking(rx, ReadIndexError::ShuttingDown)
    }

    fn send_read_index(
        &self,
    ) -> Result<oneshot::Receiver<Result<LogIndex, ReadIndexError>>, ReadIndexError> {
        let (reply, rx) = oneshot::channel();
        self.shard
            .send(Command::ReadIndex { log: self.id, reply })
            .map_err(|_| ReadIndexError::ShuttingDown)?;
        Ok(rx)
    }

    /// The log's state on this node.
    pub async fn status(&self) -> Result<LogStatus, StatusError> {
        let (reply, rx) = oneshot::channel();
        self.shard
            .send(Command::Status { log: self.id, reply })
            .map_err(|_| StatusError::ShuttingDown)?;
        answer(rx, StatusError::ShuttingDown).await
    }

    /// [`Log::status`] for callers without an async runtime. Must not be called from inside one.
    pub fn status_blocking(&self) -> Result<LogStatus, StatusError> {
        let (reply, rx) = oneshot::channel();
        self.shard
            .send(Command::Status { log: self.id, reply })
            .map_err(|_| StatusError::ShuttingDown)?;
        answer_blocking(rx, StatusError::ShuttingDown)
    }

    /// Waits until this node knows a leader of the log (polling its status every 10 ms), for at
    /// most `timeout`. Returns the leader, or `None` at the deadline.
    pub async fn wait_for_leader(&self, timeout: std::time::Duration) -> Option<NodeId> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(LogStatus { leader: Some(leader), .. }) = self.status().await {
                return Some(leader);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// [`Log::wait_for_leader`] for callers without an async runtime. Must not be called from
    /// inside one.
    pub fn wait_for_leader_blocking(&self, timeout: std::time::Duration) -> Option<NodeId> {
        let deadline = crate::runtime::clock::now().checked_add(timeout);
        loop {
            if let Ok(LogStatus { leader: Some(leader), .. }) = self.status_blocking() {
                return Some(leader);
            }
            if deadline.is_some_and(|d| crate::runtime::clock::now() >= d) {
                return None;
            }
            // A condition polled with a deadline, on the caller's thread, never a shard's.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn send_compact(
        &self,
        before: LogIndex,
    ) -> Result<oneshot::Receiver<Result<LogIndex, CompactError>>, CompactError> {
        let (reply, rx) = oneshot::channel();
        self.shard
            .send(Command::Compact { log: self.id, before, reply })
            .map_err(|_| CompactError::ShuttingDown)?;
        Ok(rx)
    }

    /// Tells this node that it no longer needs the entries before index `before` (the
    /// embedding application has, say, checkpointed the state they built): the node removes the
    /// files that hold only such entries. Resolves to the log's first index afterwards.
    ///
    /// It is local to this node, as a snapshot is in etcd: each node compacts its own log. Only
    /// entries that are committed, durable here and applied go, and only whole segments
    /// (`storage.segment_size_bytes`), so the first index may stay below `before`. Reads and
    /// subscriptions from before the first index fail with `Compacted` afterwards. When this
    /// node leads and a follower still needs compacted entries (it was down, or far behind),
    /// the follower is told to start its log after the leader's first index - 1 and loses its
    /// own older entries, as a Kafka follower does when its leader's retention passed it.
    /// `storage.retention_bytes` and `storage.retention_ms` compact automatically.
    pub async fn compact(&self, before: LogIndex) -> Result<LogIndex, CompactError> {
        let rx = self.send_compact(before)?;
        answer(rx, CompactError::ShuttingDown).await
    }

    /// [`Log::compact`] for callers without an async runtime. Must not be called from inside
    /// one.
    pub fn compact_blocking(&self, before: LogIndex) -> Result<LogIndex, CompactError> {
        let rx = self.send_compact(before)?;
        answer_blocking(rx, CompactError::ShuttingDown)
    }

    /// Asks this node, which must lead the log, to hand leadership to `to` (thesis 3.10).
    /// Resolves once the transfer started; the new leader takes over within an election timeout.
    pub async fn transfer_leadership(&self, to: NodeId) -> Result<(), TransferError> {
        let (reply, rx) = oneshot::channel();
        self.shard
            .send(Command::Transfer { log: self.id, to, reply })
            .map_err(|_| TransferError::ShuttingDown)?;
        answer(rx, TransferError::ShuttingDown).await
    }
}
