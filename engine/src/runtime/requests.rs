//! What callers ask of a replica: appends (local and remote, with deduplication of remote
//! retries), reads of committed entries (linearizable ones through a read index), subscriptions,
//! status, compaction and leadership transfer.
//!
//! Owns: turning requests into proposals, waiters, reads and answers.
//! Must not: answer an append before its commit (the waiters do that), or serve an entry above
//! the commit index: reads and subscriptions show committed entries only, so every replica
//! serves the same bytes and reads never need the leader.

use crate::error::{CompactError, LeaderInfo, ReadError, ReadIndexError, TransferError};
use crate::log::{BatchPosition, LogEntry, LogStatus, PeerStatus, ReadLimit};
use crate::metrics::LogMetrics;
use crate::raft::{
    ProposeError, ReadIndexError as CoreReadIndexError, Role, TransferError as CoreTransferError,
};
use crate::runtime::dedup::Lookup;
use crate::runtime::read_index::ReadIndexReply;
use crate::runtime::replica::Replica;
use crate::runtime::subscribers::{fit_frame, LocalSink, RoomWaker};
use crate::runtime::waiters::{AppendReply, Failure, Waiter};
use crate::storage::{Disk, ReadError as StoreReadError};
use bytes::Bytes;
use raftwal_wire::client::{
    self, ClientError, ClientRequest, ClientResponse, EntriesBatch, ErrorCode, LeaderHint,
    NotLeader, ReadRequest, TaggedPayload,
};
use raftwal_wire::transport::{
    read_answer_body_bytes_max, ClientRequestEvent, SubscribeEvent, READ_ANSWER_PAYLOAD_BYTES_MAX,
};
use raftwal_wire::types::{Entry, EntryKind, LogIndex, NodeId};
use std::time::Instant;
use tracing::info;

/// Payload bytes a leader holds appended and not yet durable on its own disk before it refuses
/// appends ([`Failure::Backlogged`]): far above what batching keeps in flight (a batch is at
/// most `storage.batch_bytes_max`, 8 MiB by default), so only a disk that stalls or is much
/// slower than the followers' meets it.
pub(crate) const LEADER_UNDURABLE_BYTES_MAX: usize = 128 << 20;

impl<D: Disk> Replica<D> {
    /// Appends payloads from the embedding API (untagged: local callers do not retry over a
    /// network, so they need no deduplication).
    pub(crate) fn append_local(&mut self, payloads: Vec<Bytes>, reply: AppendReply, now: Instant) {
        LogMetrics::add(&self.metrics.append_requests, 1);
        let sizes = payloads.iter().map(Bytes::len);
        if let Some(failure) = self.refuse_append(sizes) {
            return reply.fail(self.log, failure);
        }
        let bytes: usize = payloads.iter().map(Bytes::len).sum();
        LogMetrics::add(&self.metrics.bytes_in, bytes as u64);
        let items = payloads.into_iter().map(|data| (EntryKind::Normal, data));
        self.propose(items, &[], reply, now);
    }

    /// Why an append cannot be taken at all, before looking at its contents' history.
    fn refuse_append(&self, mut sizes: impl Iterator<Item = usize>) -> Option<Failure> {
        if let Some(reason) = &self.failed {
            return Some(Failure::Poisoned(reason.clone()));
        }
        if self.core.role() != Role::Leader {
            return Some(Failure::NotLeader(self.leader_info(self.core.leader())));
        }
        // The core takes no proposal while a `Ready` is held (module `replica`, invariant 3):
        // its entries could not be written, and would pile up in memory.
        if self.holds_ready() {
            return Some(Failure::DiskFull);
        }
        // A leader whose own disk lags (its followers may still commit the entries) would
        // otherwise hold every entry it has not written in memory, without bound.
        let undurable_bytes = self.store.undurable_payload_bytes_min();
        if undurable_bytes > LEADER_UNDURABLE_BYTES_MAX {
            let limit_bytes = LEADER_UNDURABLE_BYTES_MAX;
            return Some(Failure::Backlogged { undurable_bytes, limit_bytes });
        }
        let max_bytes = self.config.entry_size_bytes_max;
        sizes
            .find(|&size| size > max_bytes)
            .map(|size_bytes| Failure::TooLarge { size_bytes, max_bytes })
    }

    fn propose(
        &mut self,
        items: impl Iterator<Item = (EntryKind, Bytes)>,
        tags: &[(client::ClientId, client::ClientSeq)],
        reply: AppendReply,
        now: Instant,
    ) {
        match self.core.propose(items) {
            Ok(proposed) => {
                let count = proposed.last_index.distance_from(proposed.first_index.prev());
                LogMetrics::add(&self.metrics.entries_proposed, count);
                for (offset, key) in tags.iter().enumerate() {
                    self.pending_tags.insert(*key, proposed.first_index.plus(offset as u64));
                }
                self.note_proposal(proposed.last_index, now);
                self.waiters.push(Waiter {
                    first: proposed.first_index,
                    last: proposed.last_index,
                    term: proposed.term,
                    reply,
                    arrived: now,
                });
            }
            Err(ProposeError::NotLeader { leader }) => {
                reply.fail(self.log, Failure::NotLeader(self.leader_info(leader)));
            }
            Err(ProposeError::TransferInProgress { .. }) => {
                reply.fail(self.log, Failure::TransferInProgress);
            }
            Err(ProposeError::EmptyBatch) => {
                reply.fail(self.log, Failure::EmptyBatch);
            }
            // No write can succeed any more, here or (once they hold as much) on the other
            // replicas: the operator's matter, like a storage failure.
            Err(error @ ProposeError::LogFull { .. }) => {
                reply.fail(self.log, Failure::Poisoned(error.to_string()));
            }
        }
    }

    /// Appends tagged payloads from a remote client, deduplicating retries: a batch is keyed by
    /// its first item (it was proposed as one run of consecutive entries, so its first item's
    /// position says where all of them are), and checked by its last (see `answer_retry`).
    pub(super) fn append_remote(
        &mut self,
        items: Vec<TaggedPayload>,
        reply: AppendReply,
        now: Instant,
    ) {
        LogMetrics::add(&self.metrics.append_requests, 1);
        self.observe_role();
        if let Some(failure) =
            self.refuse_append(items.iter().map(TaggedPayload::payload_size_bytes))
        {
            return reply.fail(self.log, failure);
        }
        let Some(first) = items.first() else {
            return reply.fail(self.log, Failure::EmptyBatch);
        };
        let key = (first.client_id(), first.seq());
        let found = self.dedup.lookup(key.0, key.1);
        if !matches!(found, Lookup::Applied { .. }) {
            if let Some(&first_index) = self.pending_tags.get(&key) {
                // The entry is in this leader's log, not committed yet. Checked before a
                // refusal: after a restart, the table's save may settle numbers of entries
                // applied before it that this leader has yet to commit again.
                return self.answer_retry(first_index, &items, reply, now);
            }
        }
        match found {
            Lookup::Applied { index, .. } => self.answer_retry(index, &items, reply, now),
            Lookup::Forgotten => reply.fail(self.log, Failure::Forgotten),
            Lookup::Unknown => {
                let bytes: usize = items.iter().map(TaggedPayload::payload_size_bytes).sum();
                LogMetrics::add(&self.metrics.bytes_in, bytes as u64);
                let tags: Vec<_> = items.iter().map(|t| (t.client_id(), t.seq())).collect();
                let entries = items.into_iter().map(|t| (EntryKind::Tagged, t.into_entry_data()));
                self.propose(entries, &tags, reply, now);
            }
        }
    }

    /// Answers a retry whose first item is already in the log at `first_index`. The batch went
    /// in as one run, so its last item must be at `first_index + count - 1`: committed (answer
    /// now) or in this leader's log (wait for its commit). Anything else means only a prefix of
    /// the batch reached the log before a leader change (an AppendEntries may end inside a
    /// batch, and the commit index with it): acknowledging the whole batch would name entries
    /// that are not the batch's, or not committed, so the retry is refused instead.
    fn answer_retry(
        &mut self,
        first_index: LogIndex,
        items: &[TaggedPayload],
        reply: AppendReply,
        now: Instant,
    ) {
        let count = items.len() as u64;
        let Some(last) = items.last() else {
            return reply.fail(self.log, Failure::EmptyBatch);
        };
        // A batch whose last item would pass the largest index (the log was started near it)
        // cannot be in the log as one run: at most a prefix of it is.
        let Some(last_index) = first_index.get().checked_add(count - 1).map(LogIndex) else {
            return reply.fail(self.log, Failure::PartialBatch { first_index });
        };
        let key = (last.client_id(), last.seq());
        if let Lookup::Applied { index, term } = self.dedup.lookup(key.0, key.1) {
            if index == last_index {
                return reply.succeed(self.log, BatchPosition { first_index, count, term });
            }
        }
        match (self.pending_tags.get(&key), self.core.term_at(last_index)) {
            (Some(&index), Some(term)) if index == last_index => self.waiters.push(Waiter {
                first: first_index,
                last: last_index,
                term,
                reply,
                arrived: now,
            }),
            _ => reply.fail(self.log, Failure::PartialBatch { first_index }),
        }
    }

    /// Committed entries from `from`, raw (no-ops and tags included), within the limits.
    fn read_committed(
        &self,
        from: LogIndex,
        entries_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, ReadError> {
        let commit = self.readable_commit();
        let first = self.store.first_index();
        // Index 0 holds no entry: reading from it reads from the first entry this node still
        // has, wherever compaction left it.
        let from = if from == LogIndex::ZERO { first } else { from };
        if from < first && from <= commit {
            return Err(ReadError::Compacted { requested: from, first_index: first });
        }
        if from > commit {
            return Ok(Vec::new());
        }
        let mut entries = self.store.read(from, bytes_max).map_err(|e| match e {
            StoreReadError::Compacted { index, first_index } => {
                ReadError::Compacted { requested: index, first_index }
            }
            other => ReadError::Storage { log: self.log, reason: other.to_string() },
        })?;
        entries.truncate(entries_max);
        while entries.last().is_some_and(|e| e.index > commit) {
            entries.pop();
        }
        Ok(entries)
    }

    /// Committed user entries from `from` (no-ops skipped, tags stripped): at least one when one
    /// is committed at or after `from`.
    pub(crate) fn read_local(
        &self,
        from: LogIndex,
        limit: ReadLimit,
    ) -> Result<Vec<LogEntry>, ReadError> {
        let mut next = from;
        loop {
            let raw = self.read_committed(next, limit.entries_max, limit.bytes_max)?;
            let Some(last) = raw.last().map(|e| e.index) else {
                return Ok(Vec::new());
            };
            let entries: Vec<LogEntry> = raw.iter().filter_map(LogEntry::from_entry).collect();
            if !entries.is_empty() {
                return Ok(entries);
            }
            // Only internal entries in this stretch: look further.
            next = last.next();
        }
    }

    /// Adds a local subscriber.
    pub(crate) fn subscribe_local(&mut self, sink: LocalSink, from: LogIndex, waker: &RoomWaker) {
        self.subscribers.add_local(sink, from, self.store.first_index());
        self.deliver_to_subscribers(self.readable_commit(), waker);
        self.end_subscribers_if_failed();
    }

    /// Adds a remote subscriber.
    pub(crate) fn subscribe_remote(&mut self, event: SubscribeEvent, waker: &RoomWaker) {
        self.subscribers.add_remote(event.sink, event.request.from, self.store.first_index());
        self.deliver_to_subscribers(self.readable_commit(), waker);
        self.end_subscribers_if_failed();
    }

    /// A log whose storage failed on this node never commits here again, and its replica is no
    /// longer driven: a subscriber that arrives after the failure gets what was committed
    /// (as much as its sink takes now) and then the reason, rather than waiting forever.
    fn end_subscribers_if_failed(&mut self) {
        if let Some(reason) = &self.failed {
            self.subscribers.end_all(
                ReadError::Storage { log: self.log, reason: reason.clone() },
                client::ErrorCode::Poisoned,
            );
        }
    }

    /// A subscriber has room again.
    pub(crate) fn resume_subscriber(&mut self, id: u64, waker: &RoomWaker) {
        self.subscribers.room(id);
        self.deliver_to_subscribers(self.readable_commit(), waker);
    }

    /// Delivers to the subscribers what `commit` covers and their sinks take, and counts the
    /// payload bytes in the metrics, whatever brought the delivery about: a commit, a new
    /// subscriber behind the commit index, or a subscriber that made room.
    pub(crate) fn deliver_to_subscribers(&mut self, commit: LogIndex, waker: &RoomWaker) {
        let before = self.subscribers.bytes_out();
        self.subscribers.deliver(&self.store, commit, waker);
        LogMetrics::add(&self.metrics.bytes_out, self.subscribers.bytes_out() - before);
    }

    /// The log's status on this node.
    pub(crate) fn status(&self) -> LogStatus {
        let peers = self
            .config
            .peers
            .iter()
            .filter_map(|p| {
                self.core
                    .progress(p.id)
                    .map(|view| PeerStatus { node: p.id, match_index: view.match_index })
            })
            .collect();
        LogStatus {
            log: self.log,
            node: self.node,
            role: self.core.role(),
            term: self.core.term(),
            leader: self.core.leader(),
            commit_index: self.readable_commit(),
            first_index: self.store.first_index(),
            last_index: self.store.last_index(),
            durable_index: self.store.durable_index(),
            peers,
        }
    }

    /// Starts a leadership transfer.
    pub(crate) fn transfer(&mut self, to: NodeId) -> Result<(), TransferError> {
        if self.failed.is_some() {
            // Its storage failed: the replica sends nothing again, so it leads no more (its
            // peers elect another leader) and no TimeoutNow could leave.
            return Err(TransferError::NotLeader);
        }
        self.core.transfer_leadership(to).map_err(|e| match e {
            CoreTransferError::NotLeader { .. } => TransferError::NotLeader,
            CoreTransferError::Busy { to: under_way } => TransferError::Busy(under_way),
            CoreTransferError::UnknownPeer { .. } | CoreTransferError::AlreadyLeader => {
                TransferError::BadTarget(to)
            }
        })
    }

    /// Moves the handover of this log's leadership along while the node stops, and says whether
    /// the stop must still wait for it.
    ///
    /// A leader with a transfer under way waits for it. A leader without one (the handover's
    /// start, a transfer the core abandoned after an election timeout, or leadership this node
    /// won while stopping, from a peer that stops too and handed its log here) starts a transfer
    /// to the connected peer whose log is the most complete (the lowest id among equals), among
    /// the peers this handover has not tried yet: a target that took no leadership, or handed
    /// it back, is not tried again, so two nodes that stop together cannot pass a log back and
    /// forth. The core brings the target up to date and then tells it to campaign at once. A
    /// replica that stepped down waits until it hears of the new leader. Nothing is waited for
    /// once the log's storage failed here (the replica is no longer driven), nor when no peer
    /// is left to try.
    pub(crate) fn hand_over(&mut self) -> bool {
        if self.failed.is_some() {
            return false;
        }
        if self.core.role() != Role::Leader {
            return self.handing_over && self.core.leader().is_none();
        }
        if self.core.transfer_target().is_some() {
            self.handing_over = true;
            return true;
        }
        let best = self
            .config
            .peers
            .iter()
            .filter(|peer| !self.handover_tried.contains(&peer.id))
            .filter(|peer| self.transport.is_connected(peer.id))
            .filter_map(|peer| {
                let view = self.core.progress(peer.id)?;
                Some((view.match_index, std::cmp::Reverse(peer.id)))
            })
            .max();
        let Some((_, std::cmp::Reverse(to))) = best else {
            return false;
        };
        if self.core.transfer_leadership(to).is_err() {
            return false;
        }
        info!(log = %self.log, to = %to, "handing leadership over");
        self.handover_tried.push(to);
        self.handing_over = true;
        true
    }

    /// A request from a remote client.
    pub(crate) fn handle_client(&mut self, event: ClientRequestEvent, now: Instant) {
        let ClientRequestEvent { request, responder } = event;
        match request {
            ClientRequest::Append(r) => {
                let reply = AppendReply::Remote { responder, batch: false };
                self.append_remote(vec![r.tagged], reply, now);
            }
            ClientRequest::AppendBatch(r) => {
                // Answered with AppendedBatch whatever its size: that is what the client waits for.
                let reply = AppendReply::Remote { responder, batch: true };
                self.append_remote(r.items, reply, now);
            }
            ClientRequest::Read(r) => {
                if r.count_max == 0 || r.size_bytes_max == 0 {
                    let _ = responder
                        .respond(&invalid("a read must allow at least one entry and one byte"));
                } else if r.linearizable {
                    self.read_index(ReadIndexReply::Remote { responder, read: r });
                } else {
                    let _ = responder.respond(&self.answer_read(&r));
                }
            }
            ClientRequest::Status(_) => {
                let _ = responder.respond(&ClientResponse::Status(self.wire_status()));
            }
            ClientRequest::Compact(r) => {
                let response = match self.compact(r.before) {
                    Ok(first_index) => ClientResponse::Compacted(client::Compacted {
                        log: self.log,
                        node: self.node,
                        first_index,
                    }),
                    // The log goes on: retrying later may succeed.
                    Err(e @ CompactError::ClientSeqs(_)) => {
                        error(ErrorCode::Internal, e.to_string())
                    }
                    Err(e) => error(ErrorCode::Poisoned, e.to_string()),
                };
                let _ = responder.respond(&response);
            }
            ClientRequest::Subscribe(_) => {
                // The transport delivers subscriptions as their own event, with a sink.
                let _ = responder.respond(&invalid("subscribe on a request stream"));
            }
        }
    }

    /// The answer to a remote Read (valid: at least one entry and one byte) from this replica's
    /// log, now.
    fn answer_read(&self, r: &ReadRequest) -> ClientResponse {
        let bytes = (r.size_bytes_max as usize).min(READ_ANSWER_PAYLOAD_BYTES_MAX);
        match self.read_committed(r.from, r.count_max as usize, bytes) {
            Ok(mut entries) => {
                // The answer fits the room the transport reserved for it, which is at most a
                // frame.
                let room = read_answer_body_bytes_max(
                    r,
                    self.config.transport.frame_size_bytes_max,
                    self.config.entry_data_bytes_max(),
                );
                fit_frame(&mut entries, room);
                ClientResponse::Entries(EntriesBatch { log: self.log, entries })
            }
            Err(ReadError::Compacted { first_index, .. }) => error(
                ErrorCode::Compacted,
                format!("index {} is compacted; the log starts at {first_index}", r.from),
            ),
            Err(e) => error(ErrorCode::Internal, e.to_string()),
        }
    }

    /// Starts a linearizable read: the core finds the cluster's commit index as of now (on a
    /// follower, by asking the leader), and the reply is answered once this replica can serve
    /// reads up to it (`Replica::after_progress`).
    pub(crate) fn read_index(&mut self, reply: ReadIndexReply) {
        if let Some(reason) = &self.failed {
            let reason = reason.clone();
            self.fail_read_index(reply, ReadIndexError::Storage(reason));
            return;
        }
        if self.holds_ready() {
            // The request to the leader could not leave (module `replica`): retry elsewhere.
            self.fail_read_index(reply, ReadIndexError::NotConfirmed);
            return;
        }
        let id = self.read_indexes.register(reply);
        if let Err(CoreReadIndexError::NoLeader) = self.core.read_index(id) {
            if let Some(reply) = self.read_indexes.withdraw(id) {
                self.fail_read_index(reply, ReadIndexError::NoLeader);
            }
        }
    }

    /// Answers a linearizable read whose read index this replica can now serve.
    pub(crate) fn serve_read_index(&self, index: LogIndex, reply: ReadIndexReply) {
        match reply {
            ReadIndexReply::Local(reply) => {
                let _ = reply.send(Ok(index));
            }
            ReadIndexReply::Remote { responder, read } => {
                let _ = responder.respond(&self.answer_read(&read));
            }
        }
    }

    /// Answers a linearizable read that cannot be served.
    pub(crate) fn fail_read_index(&self, reply: ReadIndexReply, failure: ReadIndexError) {
        match reply {
            ReadIndexReply::Local(reply) => {
                let _ = reply.send(Err(failure));
            }
            ReadIndexReply::Remote { responder, .. } => {
                let response = match failure {
                    // The client retries: at the leader it names, or after a pause.
                    ReadIndexError::NoLeader
                    | ReadIndexError::NotConfirmed
                    | ReadIndexError::Lagging(_) => {
                        let leader = self.leader_info(self.core.leader()).map(hint);
                        ClientResponse::NotLeader(NotLeader { log: self.log, leader })
                    }
                    ReadIndexError::Storage(reason) => error(ErrorCode::Poisoned, reason),
                    ReadIndexError::ShuttingDown => {
                        error(ErrorCode::ShuttingDown, "node is shutting down".into())
                    }
                    ReadIndexError::UnknownLog(log) => {
                        error(ErrorCode::UnknownLog, format!("this node has no log {log}"))
                    }
                };
                let _ = responder.respond(&response);
            }
        }
    }

    fn wire_status(&self) -> client::LogStatus {
        let role = match self.core.role() {
            Role::Leader => client::Role::Leader,
            Role::Candidate | Role::PreCandidate => client::Role::Candidate,
            Role::Follower => client::Role::Follower,
        };
        client::LogStatus {
            log: self.log,
            node: self.node,
            role,
            term: self.core.term(),
            leader: self.leader_info(self.core.leader()).map(hint),
            first_index: self.store.first_index(),
            last_index: self.store.durable_index(),
            commit_index: self.readable_commit(),
        }
    }
}

fn hint(leader: LeaderInfo) -> LeaderHint {
    LeaderHint { node: leader.node, client_addr: leader.addr }
}

fn error(code: ErrorCode, message: String) -> ClientResponse {
    ClientResponse::Error(ClientError { code, message })
}

fn invalid(message: &str) -> ClientResponse {
    error(ErrorCode::InvalidRequest, message.to_owned())
}
