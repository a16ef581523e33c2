//! The replica driver: one log's consensus core and log store, run by the shard that owns them.
//!
//! Owns: the glue between [`RaftCore`] and [`LogStore`]: the Ready loop, the order of effects,
//! durability reports, the leader's waiting appends, the applied index (which feeds the
//! deduplication table), the saves of the clients' sequence numbers that let a restart rebuild
//! that table, and the log's subscribers.
//! Must not: block, except in the rare synchronous storage operations the store documents
//! (hard state saves on term or vote changes, truncations, segment roll-over, saves of the
//! clients' sequence numbers: one every `CLIENT_SEQS_SAVE_ENTRIES` applied entries, and before
//! entries go).
//!
//! The order of effects for one [`Ready`] (see its documentation):
//! 1. A changed term or vote is saved synchronously (an fsync) before anything else, so no
//!    message that depends on it can leave first. A commit-only change is saved lazily.
//! 2. Entries go to the store's pending batch (truncating a conflicting suffix first, durably);
//!    the batch is submitted when the store can start one (fewer than `batches_in_flight_max`
//!    in flight; group commit): appends that arrive meanwhile form the next batch.
//! 3. `messages` leave at once: the leader's AppendEntries run in parallel with its own write.
//! 4. `messages_after_persist` wait until everything written so far is durable.
//! 5. When the store reports durability, the core hears it ([`RaftCore::persisted`]): a leader
//!    counts its own copy only then, a follower acknowledges only then.
//!
//! A full disk that refuses the save of a new term or vote of step 1, or the truncation or the
//! log start of step 2, changes nothing on disk (the store's promise): the replica holds that
//! `Ready` (with its hard state when that save was refused, else saved already) and carries
//! out nothing of it or of any later one, and serves no commit past what it had seen,
//! until a retry on a later tick succeeds. Meanwhile the follower is silent to its leader, as
//! a paused one would be: the core takes no message, tick or read (they would only pile up
//! answers in it that cannot leave; a read it was asked before is failed, as it would hear
//! no answer, and a leader deposed in the held `Ready` answers its waiting appends
//! `LeadershipLost` at once), and a leader (a single voter that won its election in the
//! held `Ready`) takes no append (`DiskFull`); compaction may free space.
//!
//! Invariants:
//! 1. `persist_points` are increasing and each is above the durable index when queued; none
//!    covers an entry that a `Ready` taken from the core replaces (dropped when the `Ready` is
//!    carried out, or held).
//! 2. Once `failed` is set, the replica never writes or sends again.
//! 3. While `held` is set, no other `Ready` is taken from the core, the core takes no message,
//!    tick, read or proposal, and `commit_seen` stays.

use crate::config::NodeConfig;
use crate::error::{CompactError, LeaderInfo, ReadIndexError};
use crate::metrics::LogMetrics;
use crate::raft::{RaftCore, Ready, Role};
use crate::runtime::clock;
use crate::runtime::dedup::{
    DedupTable, CLIENT_SEQS_SAVE_ENTRIES, REBUILD_AFTER_SAVE_MAX, REBUILD_ENTRIES_MAX,
};
use crate::runtime::read_index::{ReadIndexes, CONFIRMED_WAIT_ELECTION_TIMEOUTS};
use crate::runtime::source::StoreSource;
use crate::runtime::subscribers::{RoomWaker, Subscribers};
use crate::runtime::waiters::{Failure, Waiters};
use crate::storage::{
    ClientSeqs, ClientSeqsError, CompletionError, Disk, HardStateError, LogStore, ResetError,
    SubmitError, TruncateError, CLIENT_SEQS_GAPS_MAX, CLIENT_SEQS_MAX,
};
use raftwal_wire::client::{ClientId, ClientSeq, TaggedPayload};
use raftwal_wire::codec::{log_start_clients_max, FrameLimits};
use raftwal_wire::message::{LogStart, Message, MessageBody};
use raftwal_wire::transport::{SendError, Transport};
use raftwal_wire::types::{EntryKind, HardState, LogId, LogIndex, NodeId, Term};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// Ticks between lazy saves of a commit-only hard state change.
pub(super) const COMMIT_SAVE_INTERVAL_TICKS: u64 = 100;

/// Bytes read per step when applying committed entries.
const APPLY_READ_BYTES: usize = 4 << 20;

/// How often a disk that stays full is logged again (it is retried every tick).
const DISK_FULL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A full disk refusing a log's batches ([`Replica::disk_full`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct DiskFull {
    /// When it was first refused.
    pub(super) since: Instant,
    /// When that was last logged.
    pub(super) logged: Instant,
    /// A tick passed since the last retry: the next submit tries again.
    retry: bool,
}

/// Why a save of the clients' sequence numbers failed.
#[derive(Clone, Debug)]
pub(super) struct SaveFailure {
    /// The disk had no room (`ClientSeqsError::NoSpace`).
    no_space: bool,
    reason: String,
}

/// A log start's `(index, term)` and its clients' sequence numbers (`LogStart::client_seqs`).
type LogStartSeqs = ((LogIndex, Term), Vec<(ClientId, ClientSeq)>);

/// One log on this node. See the module documentation.
#[derive(Debug)]
pub(crate) struct Replica<D: Disk> {
    pub(crate) log: LogId,
    pub(crate) node: NodeId,
    pub(crate) config: Arc<NodeConfig>,
    pub(crate) core: RaftCore,
    pub(crate) store: LogStore<D>,
    pub(crate) transport: Transport,
    pub(crate) metrics: Arc<LogMetrics>,
    /// The hard state last made durable.
    saved: HardState,
    ticks_since_commit_save: u64,
    /// Ticks since `storage.retention_ms` last looked at the segments' ages.
    ticks_since_age_check: u64,
    /// (index, term) of each batch of entries handed to the store, not yet reported durable.
    persist_points: VecDeque<(LogIndex, Term)>,
    /// Messages that may leave once the store is durable up to the index they carry.
    after_persist: VecDeque<(LogIndex, Vec<Message>)>,
    /// When each batch in flight was submitted, its last index and its entries (fsync latency
    /// and batch size), oldest first.
    batches_in_flight: VecDeque<(Instant, LogIndex, u64)>,
    pub(crate) waiters: Waiters,
    /// Last index of each proposal and when it was made (commit latency), leader only.
    proposals: VecDeque<(LogIndex, Instant)>,
    pub(crate) dedup: DedupTable,
    /// Tagged entries in the leader's log above the commit index.
    pub(crate) pending_tags: HashMap<(ClientId, ClientSeq), LogIndex>,
    /// Every committed entry up to here was applied to the deduplication table.
    applied: LogIndex,
    /// The index the last durable save of the clients' sequence numbers describes the log up
    /// to (`client_seqs`, docs/format.md), if any.
    pub(super) client_seqs_through: Option<LogIndex>,
    /// Why the last save of the clients' sequence numbers failed, and the ticks left before a
    /// periodic save tries again.
    client_seqs_failed: Option<(SaveFailure, u64)>,
    /// The commit index the waiters and subscribers last saw, as of the last drive: every entry
    /// up to it is in the store, and is the committed one. The core's commit index may run ahead
    /// between stepping a message and the next drive (a follower commits the entries of an
    /// AppendEntries as it steps it, before they reach the store, where a deposed leader's
    /// entries may still sit at those indices), so reads go by this one
    /// ([`Replica::readable_commit`]).
    commit_seen: LogIndex,
    pub(crate) subscribers: Subscribers,
    /// Linearizable reads waiting for their read index.
    pub(crate) read_indexes: ReadIndexes,
    role: Role,
    leader: Option<NodeId>,
    /// Why the log's storage failed, once it did.
    pub(crate) failed: Option<String>,
    /// A `Ready` whose hard state save, truncation or log start a full disk refused, and when
    /// it was first refused; retried on the next tick (invariant 3).
    held: Option<(Ready, Instant)>,
    /// Set while a full disk refuses this log's batches (a segment it could not start, or a
    /// batch's write): the batches are retried once per tick, not on every loop turn (a
    /// refused write completes at once and would wake the loop to fail again), and the refusal
    /// is logged once, then at most every [`DISK_FULL_LOG_INTERVAL`], and once more when a
    /// batch is durable again.
    pub(super) disk_full: Option<DiskFull>,
    /// A tick passed since the held `Ready` was last tried.
    retry_held: bool,
    /// The `(index, term)` and the clients' sequence numbers (`LogStart::client_seqs`) of the
    /// last log start stepped that made the core replace its log, for the deduplication table
    /// once the store has replaced it too.
    log_start_seqs: Option<LogStartSeqs>,
    /// The index of the last log start this replica sent and the clients' numbers it carried,
    /// sent again with every log start at that index ([`Replica::log_start_to_send`]).
    log_start_sent: Option<(LogIndex, Vec<(ClientId, ClientSeq)>)>,
    /// Log starts built, and how many of them scanned the deduplication table.
    #[cfg(test)]
    pub(super) log_starts_built: (u64, u64),
    /// Every message handed to the transport for a peer, for tests that check what left.
    #[cfg(test)]
    pub(super) sent: Vec<Message>,
    /// The current [`Replica::drive`] queued AppendEntries (this replica leads).
    sent_appends: bool,
    /// The node is stopping and hands this log's leadership over ([`Replica::hand_over`]).
    pub(crate) handing_over: bool,
    /// The peers that handover has asked to take the leadership, in order.
    pub(crate) handover_tried: Vec<NodeId>,
}

impl<D: Disk> Replica<D> {
    pub(crate) fn new(
        config: Arc<NodeConfig>,
        core: RaftCore,
        mut store: LogStore<D>,
        transport: Transport,
        metrics: Arc<LogMetrics>,
    ) -> Replica<D> {
        let log = core.config().log;
        let frame_bytes_max = config.transport.frame_size_bytes_max as usize;
        let saved = store.hard_state();
        // Rebuild the deduplication table (see dedup's window): from the last save of the
        // clients' numbers, or the recent committed past when that is later; never more than
        // `REBUILD_AFTER_SAVE_MAX` entries back, nor before the log's first entry.
        let commit = core.commit_index();
        let first_index = store.first_index();
        let recent = LogIndex(commit.get().saturating_sub(REBUILD_ENTRIES_MAX));
        let oldest = LogIndex(commit.get().saturating_sub(REBUILD_AFTER_SAVE_MAX));
        let saved_seqs = store.take_client_seqs();
        let applied = match &saved_seqs {
            Some(seqs) => recent.min(seqs.through).max(oldest),
            None => recent,
        }
        .max(first_index.prev());
        match &saved_seqs {
            Some(seqs) if seqs.through < applied => warn!(
                log = %log,
                "the clients' sequence numbers were last saved at {}, before the entries this \
                 node rebuilds its deduplication table from ({applied} on); a retry of an entry \
                 in between may be appended again",
                seqs.through
            ),
            // A log that starts after index 1 was compacted or started over, each after a save:
            // the save is lost (damaged since; the store's open took it for a torn one).
            None if first_index > LogIndex(1) => warn!(
                log = %log,
                "the clients' sequence numbers were saved before this log's first entry \
                 {first_index}, but no save is left (damaged since); a retry of an entry before \
                 {} may be appended again",
                applied.next()
            ),
            None if applied > LogIndex::ZERO => info!(
                log = %log,
                "no saved clients' sequence numbers (a log written before they were saved); \
                 a retry of an entry before {} may be appended again until the first save",
                applied.next()
            ),
            _ => {}
        }
        let mut replica = Replica {
            log,
            node: core.id(),
            config,
            role: core.role(),
            leader: core.leader(),
            core,
            store,
            transport,
            metrics,
            saved,
            ticks_since_commit_save: 0,
            ticks_since_age_check: 0,
            persist_points: VecDeque::new(),
            after_persist: VecDeque::new(),
            batches_in_flight: VecDeque::new(),
            waiters: Waiters::default(),
            proposals: VecDeque::new(),
            dedup: DedupTable::default(),
            pending_tags: HashMap::new(),
            applied,
            client_seqs_through: saved_seqs.as_ref().map(|seqs| seqs.through),
            client_seqs_failed: None,
            // The restored commit index is within the durable log.
            commit_seen: commit,
            subscribers: Subscribers::new(log, frame_bytes_max),
            read_indexes: ReadIndexes::new(crate::runtime::clock::process_unique()),
            failed: None,
            held: None,
            retry_held: false,
            disk_full: None,
            log_start_seqs: None,
            log_start_sent: None,
            #[cfg(test)]
            log_starts_built: (0, 0),
            #[cfg(test)]
            sent: Vec::new(),
            sent_appends: false,
            handing_over: false,
            handover_tried: Vec::new(),
        };
        if let Some(seqs) = &saved_seqs {
            replica.dedup.settle(&seqs.seqs, &seqs.gaps, applied, seqs.through);
        }
        if let Err(e) = replica.apply_committed(commit) {
            replica.fail_storage(e);
        }
        replica.publish_gauges();
        replica
    }

    /// The highest index reads and subscribers may serve: committed, and in the store as the
    /// committed entry (see `commit_seen`).
    pub(crate) fn readable_commit(&self) -> LogIndex {
        self.commit_seen
    }

    /// Whether a `Ready` a full disk refused is held (invariant 3).
    pub(super) fn holds_ready(&self) -> bool {
        self.held.is_some()
    }

    /// The leader as callers should be told of it: its id and its client address for this log.
    pub(crate) fn leader_info(&self, leader: Option<NodeId>) -> Option<LeaderInfo> {
        let leader = leader?;
        let shard = self.config.shard_of(self.log);
        let addr = if leader == self.node {
            Some(NodeConfig::shard_addr(self.config.listen, shard))
        } else {
            self.config
                .peers
                .iter()
                .find(|p| p.id == leader)
                .map(|p| NodeConfig::shard_addr(p.addr, shard))
        };
        Some(LeaderInfo { node: leader, addr })
    }

    /// Runs the core's Ready loop until it has nothing more to do and answers whatever the
    /// commit index now covers; the messages go to the transport's queues.
    /// [`Replica::submit_to_disk`] then hands the store's batch to the disk. Returns true when
    /// this turn queued AppendEntries and the store holds a batch for the disk: the shard then
    /// lets the transport put the messages on the wire before the batch goes to the disk.
    ///
    /// Handing a batch to the disk costs the thread tens of microseconds (the `io_uring_enter`
    /// that issues an O_DIRECT write runs the block layer and the device notification inline).
    /// A leader's commit waits for a follower's write, which should not start that much later
    /// than the leader's own; a follower's commit path is its own write, which goes first.
    pub(crate) fn drive(&mut self, waker: &RoomWaker) -> bool {
        self.sent_appends = false;
        if self.failed.is_some() {
            return false;
        }
        loop {
            if let Err(e) = self.reap() {
                self.fail_storage(e);
                return false;
            }
            let (ready, held_since) = match self.held.take() {
                Some((ready, since)) if std::mem::take(&mut self.retry_held) => {
                    (ready, Some(since))
                }
                Some(held) => {
                    self.held = Some(held);
                    break;
                }
                None if self.core.has_ready() => (self.core.ready(&StoreSource(&self.store)), None),
                None => break,
            };
            if let Err(e) = self.handle_ready(ready, held_since) {
                self.fail_storage(e);
                return false;
            }
            if self.held.is_some() {
                break;
            }
            if let Some(since) = held_since {
                info!(
                    log = %self.log,
                    "the disk has room again: carried out the write it refused {:.1} s ago",
                    since.elapsed().as_secs_f64()
                );
            }
        }
        if self.held.is_none() {
            self.after_progress(waker);
        }
        self.sent_appends && self.store.can_start_batch()
    }

    /// Hands the store's pending entries to the disk (when it can start a batch) and moves the
    /// background preparation of the next segment along.
    pub(crate) fn submit_to_disk(&mut self) {
        if self.failed.is_some() {
            return;
        }
        if let Some(full) = &mut self.disk_full {
            if !std::mem::take(&mut full.retry) {
                return;
            }
        }
        self.submit();
    }

    /// Takes the store's completions: moves the durable index, tells the core, releases the
    /// messages that waited for it.
    fn reap(&mut self) -> Result<(), String> {
        let durable = match self.store.process_completions() {
            Ok(durable) => durable,
            Err(CompletionError::NoSpace(e)) => {
                // The batch was withdrawn and stays queued; the next submit retries it.
                self.note_disk_full(format_args!("refused a batch's write ({e})"));
                self.batches_in_flight.clear();
                self.store.durable_index()
            }
            Err(e) => return Err(e.to_string()),
        };
        if let Some(DiskFull { since, .. }) = self.disk_full {
            if self.batches_in_flight.front().is_some_and(|&(_, through, _)| durable >= through) {
                self.disk_full = None;
                info!(
                    log = %self.log,
                    "the disk has room again: batches are durable again after {:.1} s",
                    since.elapsed().as_secs_f64()
                );
            }
        }
        let stats = self.store.stats();
        LogMetrics::set(&self.metrics.zero_fill_writes, stats.background_writes);
        LogMetrics::set(&self.metrics.zero_fill_bytes, stats.background_bytes);
        LogMetrics::set(&self.metrics.pipelined_batches, stats.pipelined_batches);
        while let Some(&(since, through, entries)) = self.batches_in_flight.front() {
            if durable < through {
                break;
            }
            self.metrics.fsync_latency_us.observe_duration(clock::now() - since);
            self.metrics.fsync_batch_entries.observe(entries);
            self.batches_in_flight.pop_front();
        }
        self.report_persisted(durable);
        while self.after_persist.front().is_some_and(|(need, _)| *need <= durable) {
            if let Some((_, messages)) = self.after_persist.pop_front() {
                for message in &messages {
                    self.send(message);
                }
            }
        }
        Ok(())
    }

    /// Tells the core of the persist points the store's durable index covers.
    fn report_persisted(&mut self, durable: LogIndex) {
        let mut persisted = None;
        while let Some(&(index, term)) = self.persist_points.front() {
            if index > durable {
                break;
            }
            self.persist_points.pop_front();
            persisted = Some((index, term));
        }
        if let Some((index, term)) = persisted {
            // Reporting the highest point covers the lower ones: the core checks the term there
            // and everything before it is durable too.
            self.core.persisted(index, term);
        }
    }

    /// The commit index a save of a commit-only change may record: committed, and durable in
    /// this replica's log as the core holds it. Not the store's durable index alone: the core's
    /// commit index may cover entries the store does not hold yet while older ones sit at those
    /// indices in the store, durable (a truncation a full disk refused and the replica holds,
    /// or messages stepped after the last drive), and a restart would claim those committed.
    fn commit_to_save(&self) -> LogIndex {
        self.core.hard_state().commit.min(self.store.durable_index())
    }

    /// Carries out one `Ready` in the order of the module documentation. `held_since`: the
    /// `Ready` was held since then and this is a retry (its hard state is saved, or still in
    /// it when a full disk refused that save).
    fn handle_ready(
        &mut self,
        mut ready: Ready,
        held_since: Option<Instant>,
    ) -> Result<(), String> {
        // Taken first: a log start's own point (when there are no entries) must survive the
        // clearing of `log_start` below.
        let persist_point = ready.persist_point();
        if let Some(hard_state) = ready.hard_state.take() {
            if hard_state.term != self.saved.term || hard_state.vote != self.saved.vote {
                match self.save_hard_state(hard_state) {
                    Ok(()) => {}
                    Err(HardStateError::NoSpace(e)) => {
                        // Nothing of this `Ready` was carried out, and nothing may leave
                        // before its term and vote are durable: held whole.
                        ready.hard_state = Some(hard_state);
                        let what = format!(
                            "saving term {} and vote {:?}: {e}",
                            hard_state.term, hard_state.vote
                        );
                        self.hold(ready, held_since, &what);
                        return Ok(());
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        if let Some((index, term)) = ready.log_start {
            // The leader compacted away what this replica lacks: the store replaces the log,
            // durably, after the batches in flight (the old log's). What waited for those
            // waits for the new start instead.
            if held_since.is_none() {
                warn!(
                    log = %self.log,
                    "the leader's log starts after {index} (term {term}), beyond this node's; \
                     replacing this node's log (entries up to {index} are no longer here)"
                );
            }
            // The entries up to `index` are gone from here before this node applied them: the
            // deduplication table takes what the leader's knew of them, and a save holds it
            // before the entries go (a restart finds no entries to rebuild it from). Raising
            // the floors twice (a held retry) changes nothing.
            let seqs = self.log_start_seqs.as_ref().filter(|(start, _)| *start == (index, term));
            if let Some((_, seqs)) = seqs {
                self.dedup.raise_floors(seqs, index);
            }
            if self.client_seqs_through.is_none_or(|through| through < index) {
                let seqs = self.client_seqs_at(index);
                match self.store.save_client_seqs(&seqs) {
                    Ok(()) => self.client_seqs_through = Some(index),
                    Err(ClientSeqsError::NoSpace(e)) => {
                        let what = format!(
                            "saving the clients' sequence numbers before starting the log \
                             after {index}: {e}"
                        );
                        self.hold(ready, held_since, &what);
                        return Ok(());
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            match self.store.reset_to(index, term) {
                Ok(()) => {}
                Err(ResetError::NoSpace(e)) => {
                    let what = format!("starting the log after {index}: {e}");
                    self.hold(ready, held_since, &what);
                    return Ok(());
                }
                Err(e) => return Err(e.to_string()),
            }
            self.log_start_seqs = None;
            // Done: a retry of a later step of this `Ready` must not reset again.
            ready.log_start = None;
            self.persist_points.clear();
            self.batches_in_flight.clear();
            for (need, _) in &mut self.after_persist {
                *need = (*need).min(index);
            }
            LogMetrics::add(&self.metrics.log_resets, 1);
        }
        if let Some(first) = ready.entries.first() {
            if first.index <= self.store.last_index() {
                // A follower replaces a conflicting suffix (never a committed entry: paper 5.3).
                let keep = first.index.prev();
                match self.store.truncate_after(keep) {
                    Ok(()) => {}
                    Err(TruncateError::NoSpace(e)) => {
                        let what = format!("truncating after {keep}: {e}");
                        self.hold(ready, held_since, &what);
                        return Ok(());
                    }
                    Err(e) => return Err(e.to_string()),
                }
                self.persist_points.retain(|&(index, _)| index <= keep);
                self.batches_in_flight.retain(|&(_, through, _)| through <= keep);
                for (need, _) in &mut self.after_persist {
                    *need = (*need).min(keep);
                }
            }
            self.store.append(&ready.entries).map_err(|e| e.to_string())?;
        }
        if let Some(point) = persist_point {
            self.persist_points.push_back(point);
        }
        for message in &ready.messages {
            self.send(message);
        }
        if !ready.messages_after_persist.is_empty() {
            let need = self.store.last_index();
            if need <= self.store.durable_index() && self.after_persist.is_empty() {
                for message in &ready.messages_after_persist {
                    self.send(message);
                }
            } else {
                self.after_persist.push_back((need, ready.messages_after_persist));
            }
        }
        if ready.rejoined {
            // The hard state of this Ready (saved above) and every entry up to the catch-up
            // point are durable: the log no longer needs to rejoin after a restart.
            let dir = crate::node::log_dir(&self.config.data_dir, self.log);
            let removed = std::fs::remove_file(dir.join(crate::node::REJOIN_MARKER))
                .and_then(|()| std::fs::File::open(&dir)?.sync_all());
            if let Err(e) = removed {
                // The log rejoins again after a restart, which is safe.
                warn!(log = %self.log, "cannot remove the rejoin marker: {e}");
            }
            info!(log = %self.log, "rejoined: caught up with the cluster, taking part again");
        }
        for state in &ready.read_states {
            // Confirmed reads wait for their index to become readable (`after_progress`).
            if let Some(reply) = self.read_indexes.answered(state.request_id, state.read_index) {
                self.fail_read_index(reply, ReadIndexError::NotConfirmed);
            }
        }
        Ok(())
    }

    /// Holds `ready`, whose hard state save, truncation or log start a full disk refused
    /// (nothing changed on disk), for a retry on the next tick (module documentation,
    /// invariant 3).
    fn hold(&mut self, ready: Ready, held_since: Option<Instant>, what: &str) {
        // The core's log is the held `Ready`'s from now on: the points of batches whose entries
        // it replaces must not be reported while it is held (they would be taken for the new
        // entries at the same index and term after an overwrite and back, and acknowledge
        // entries the retry rewrites before they are durable).
        if ready.log_start.is_some() {
            self.persist_points.clear();
        } else if let Some(first) =
            ready.entries.first().filter(|e| e.index <= self.store.last_index())
        {
            let keep = first.index.prev();
            self.persist_points.retain(|&(index, _)| index <= keep);
        }
        if held_since.is_none() {
            warn!(
                log = %self.log,
                "disk full: {what}; this node holds the log's writes and answers until a retry \
                 (every tick) finds room"
            );
        }
        // The core hears no answer to a read it asked for, and ages none out, until then: the
        // caller retries (as a read asked meanwhile is told, `Replica::read_index`) rather than
        // wait for as long as the disk stays full.
        for reply in self.read_indexes.take_asked() {
            self.fail_read_index(reply, ReadIndexError::NotConfirmed);
        }
        // A leader deposed in the held `Ready` (a later term it cannot save yet) answers its
        // waiting appends now (`observe_role`), not once the disk has room.
        if self.role == Role::Leader && self.core.role() != Role::Leader {
            self.observe_role();
        }
        self.held = Some((ready, held_since.unwrap_or_else(clock::now)));
    }

    /// Saves the hard state. [`HardStateError::NoSpace`] changed nothing: the store is not
    /// poisoned and the previous state stays saved; any other error poisoned it.
    fn save_hard_state(&mut self, hard_state: HardState) -> Result<(), HardStateError> {
        // The commit index is never saved past what this replica holds durably: a restart must
        // not claim an entry committed that it no longer has.
        let hard_state =
            HardState { commit: hard_state.commit.min(self.store.durable_index()), ..hard_state };
        self.store.save_hard_state(hard_state)?;
        self.saved = hard_state;
        self.ticks_since_commit_save = 0;
        Ok(())
    }

    /// Saves the clients' sequence numbers up to the applied index (synchronously: an fsync,
    /// every `CLIENT_SEQS_SAVE_ENTRIES` applied entries and before a compaction). After a
    /// failure, saves again only once `COMMIT_SAVE_INTERVAL_TICKS` ticks passed, and returns
    /// the failure meanwhile.
    pub(super) fn save_client_seqs(&mut self) -> Result<(), SaveFailure> {
        if let Some((failure, ticks)) = &self.client_seqs_failed {
            if *ticks > 0 {
                return Err(failure.clone());
            }
        }
        let through = self.applied;
        let seqs = self.client_seqs_at(through);
        match self.store.save_client_seqs(&seqs) {
            Ok(()) => {
                if self.client_seqs_failed.take().is_some() {
                    info!(log = %self.log, "saved the clients' sequence numbers again");
                }
                self.client_seqs_through = Some(through);
                Ok(())
            }
            Err(e) => {
                let failure = SaveFailure {
                    no_space: matches!(e, ClientSeqsError::NoSpace(_)),
                    reason: e.to_string(),
                };
                if self.client_seqs_failed.is_none() {
                    let waits = if failure.no_space {
                        "compaction, which frees space, goes on without it"
                    } else {
                        "compaction waits for a save"
                    };
                    warn!(
                        log = %self.log,
                        "{}; {waits}; tried again every {COMMIT_SAVE_INTERVAL_TICKS} ticks",
                        failure.reason
                    );
                }
                self.client_seqs_failed = Some((failure.clone(), COMMIT_SAVE_INTERVAL_TICKS));
                Err(failure)
            }
        }
    }

    /// What a save of the clients' numbers up to `through` holds (docs/format.md).
    fn client_seqs_at(&self, through: LogIndex) -> ClientSeqs {
        let seqs = self.dedup.seqs_through(through, CLIENT_SEQS_MAX);
        let gaps = self.dedup.gaps_through(through, &seqs, CLIENT_SEQS_GAPS_MAX);
        ClientSeqs { through, seqs, gaps }
    }

    /// Hands the pending entries to the disk in as many batches as the store starts.
    fn submit(&mut self) {
        match self.store.submit() {
            Ok(true) => {
                let now = clock::now();
                let mut prev = self.batches_in_flight.back().map(|b| b.1);
                for through in self.store.batch_ends_in_flight() {
                    if prev.is_none_or(|p| through > p) {
                        let first = prev.unwrap_or(self.store.durable_index()).next();
                        let entries = through.get() + 1 - first.get();
                        self.batches_in_flight.push_back((now, through, entries));
                        prev = Some(through);
                    }
                }
            }
            Ok(false) => {}
            Err(SubmitError::NoSpace(e)) => {
                self.note_disk_full(format_args!("cannot start a segment ({e})"));
            }
            Err(e) => self.fail_storage(e.to_string()),
        }
    }

    /// Notes that a full disk refused a batch: the batches wait for the next tick, and the
    /// refusal is logged the first time, then at most every [`DISK_FULL_LOG_INTERVAL`].
    fn note_disk_full(&mut self, what: std::fmt::Arguments<'_>) {
        let now = clock::now();
        match &mut self.disk_full {
            None => {
                warn!(log = %self.log, "disk full: {what}; will retry every tick");
                self.disk_full = Some(DiskFull { since: now, logged: now, retry: false });
            }
            Some(full) => {
                full.retry = false;
                if now - full.logged >= DISK_FULL_LOG_INTERVAL {
                    let full_for = (now - full.since).as_secs_f64();
                    warn!(log = %self.log, "disk still full after {full_for:.0} s: {what}");
                    full.logged = now;
                }
            }
        }
    }

    /// Sends one message; a peer that cannot take it is reported unreachable to the core.
    fn send(&mut self, message: &Message) {
        if let MessageBody::LogStart(start) = &message.body {
            let start = self.log_start_to_send(start);
            let filled = Message { body: MessageBody::LogStart(start), ..message.clone() };
            return self.send_to_peer(&filled);
        }
        self.send_to_peer(message);
    }

    /// The core's log start with the clients' sequence numbers, which are this table's (the
    /// core sends it without them): as many as one frame of the transport holds, or the
    /// message could not be encoded, and the follower, told nothing, would never catch up.
    ///
    /// The table is scanned once per start index, not once per message: that scan reads every
    /// remembered number (up to 4,096 clients of 1,024, milliseconds of the shard's thread),
    /// and the core sends a log start again on every heartbeat answer of a follower it probes
    /// (every heartbeat interval, and every read-index round) until the follower acknowledges
    /// it, or, when the follower's send window is full, for as long as it stays full. The
    /// numbers taken at an earlier send stay right: every entry up to the start was applied
    /// here before it, so what the table learns later is of entries after the start, which
    /// the follower receives; it may have forgotten clients since, which the follower then
    /// keeps a little longer.
    pub(super) fn log_start_to_send(&mut self, start: &LogStart) -> LogStart {
        #[cfg(test)]
        {
            self.log_starts_built.0 += 1;
        }
        let client_seqs = match &self.log_start_sent {
            Some((index, seqs)) if *index == start.index => seqs.clone(),
            _ => {
                #[cfg(test)]
                {
                    self.log_starts_built.1 += 1;
                }
                let frame = self.config.transport.frame_size_bytes_max;
                // The configuration was validated (its frame limit is one the transport takes).
                let clients_max = FrameLimits::new(frame).map_or(0, |l| log_start_clients_max(&l));
                let seqs = self.dedup.seqs_through(start.index, clients_max);
                self.log_start_sent = Some((start.index, seqs.clone()));
                seqs
            }
        };
        LogStart { client_seqs, ..start.clone() }
    }

    fn send_to_peer(&mut self, message: &Message) {
        #[cfg(test)]
        self.sent.push(message.clone());
        if let MessageBody::AppendEntries(append) = &message.body {
            let bytes: usize = append.entries.iter().map(|e| e.data.len()).sum();
            LogMetrics::add(&self.metrics.bytes_out, bytes as u64);
            self.sent_appends = true;
        }
        match self.transport.send(message) {
            Ok(()) => {}
            Err(SendError::NotConnected(peer) | SendError::WindowFull(peer)) => {
                self.core.report_unreachable(peer);
            }
            Err(e) => {
                warn!(log = %self.log, "dropped {} to {}: {e}", message.kind_name(), message.to)
            }
        }
    }

    /// A message from a peer.
    pub(crate) fn step(&mut self, mut message: Message) {
        if self.failed.is_some() {
            return;
        }
        if self.held.is_some() {
            // Nothing the core would answer could leave before the held `Ready` is carried
            // out: its answers (one per heartbeat) would pile up in its outbox for as long as
            // the disk stays full. The message is dropped, as the network may drop one.
            return;
        }
        let mut seqs = None;
        match &mut message.body {
            MessageBody::AppendEntries(append) => {
                let bytes: usize = append.entries.iter().map(|e| e.data.len()).sum();
                LogMetrics::add(&self.metrics.bytes_in, bytes as u64);
            }
            MessageBody::LogStart(start) => {
                seqs = Some(((start.index, start.term), std::mem::take(&mut start.client_seqs)));
            }
            _ => {}
        }
        match self.core.step(message) {
            Ok(()) => {
                // Only a log start the core carries out: one it keeps its log for (a newer
                // leader's, stepped in the same turn, at or below the commit index the first
                // brought) would put its numbers in the place of those of the reset still to
                // be carried out, which would then raise no floor at all.
                if let Some(seqs) =
                    seqs.filter(|(start, _)| self.core.pending_log_start() == Some(*start))
                {
                    self.log_start_seqs = Some(seqs);
                }
            }
            Err(e) => warn!(log = %self.log, "dropped a message: {e}"),
        }
    }

    /// A peer's link went down: whatever was in flight to it may be lost.
    pub(crate) fn peer_down(&mut self, peer: NodeId) {
        self.core.report_unreachable(peer);
    }

    /// One tick of the consensus clock; saves a commit-only hard state change now and then.
    pub(crate) fn tick(&mut self) {
        if self.failed.is_some() {
            return;
        }
        if self.held.is_some() {
            // The core waits with the rest (see `step`): its timers would only fill its
            // outbox with elections no one hears of.
            self.retry_held = true;
        } else {
            self.core.tick();
        }
        if let Some(full) = &mut self.disk_full {
            full.retry = true;
        }
        if self.read_indexes.has_confirmed() {
            let limit = self
                .core
                .config()
                .election_timeout_ticks
                .saturating_mul(CONFIRMED_WAIT_ELECTION_TIMEOUTS);
            for (index, reply) in self.read_indexes.age(limit) {
                self.fail_read_index(reply, ReadIndexError::Lagging(index));
            }
        }
        self.subscribers.forget_gone();
        if let Some((_, ticks)) = &mut self.client_seqs_failed {
            *ticks = ticks.saturating_sub(1);
        }
        let saved_through = self.client_seqs_through.unwrap_or(LogIndex::ZERO);
        // Due every `CLIENT_SEQS_SAVE_ENTRIES` applied entries, and at once when the log starts
        // after the last save (a compaction went on without one, for lack of space).
        if self.applied.get() >= saved_through.get().saturating_add(CLIENT_SEQS_SAVE_ENTRIES)
            || (saved_through < self.store.first_index().prev()
                && self.applied >= self.store.first_index().prev())
        {
            // A failure is logged, and retried later; only compaction waits for a save (and
            // not for one a full disk refuses).
            let _ = self.save_client_seqs();
        }
        self.apply_retention();
        self.ticks_since_commit_save += 1;
        let commit = self.commit_to_save();
        if self.ticks_since_commit_save >= COMMIT_SAVE_INTERVAL_TICKS && commit > self.saved.commit
        {
            let hard_state = HardState { commit, ..self.saved };
            match self.save_hard_state(hard_state) {
                Ok(()) => {}
                Err(HardStateError::NoSpace(e)) => {
                    // Optional (the commit index needs no durability for safety): tried again
                    // after another interval.
                    warn!(log = %self.log, "disk full: cannot save the commit index ({e}); will retry");
                    self.ticks_since_commit_save = 0;
                }
                Err(e) => self.fail_storage(e.to_string()),
            }
        }
    }

    /// After the core moved: answer committed appends, apply, feed subscribers, follow role
    /// changes.
    fn after_progress(&mut self, waker: &RoomWaker) {
        self.observe_role();
        let leader = self.leader;
        let commit = self.core.commit_index();
        if commit > self.commit_seen {
            self.commit_seen = commit;
            let applied = self.apply_committed(commit);
            let now = clock::now();
            while self.proposals.front().is_some_and(|(last, _)| *last <= commit) {
                if let Some((_, since)) = self.proposals.pop_front() {
                    self.metrics.commit_latency_us.observe_duration(now - since);
                }
            }
            let core = &self.core;
            let leader = self.leader_info(leader);
            self.waiters.complete(
                self.log,
                commit,
                |i| core.term_at(i),
                leader,
                &self.metrics,
                now,
            );
            if let Err(e) = applied {
                // The committed appends were answered first: their entries are committed.
                self.fail_storage(e);
                return;
            }
        }
        if self.read_indexes.has_confirmed() {
            for (index, reply) in self.read_indexes.take_readable(self.commit_seen) {
                self.serve_read_index(index, reply);
            }
        }
        if !self.subscribers.is_empty() {
            self.deliver_to_subscribers(commit, waker);
        }
        self.publish_gauges();
    }

    /// Follows a change of the core's role: a deposed leader fails its waiting appends with
    /// `LeadershipLost` (their entries may still commit: a leadership transfer, as a graceful
    /// shutdown starts, hands the new leader a log that holds them), a new one learns which client entries its log holds above what it applied. Runs after every
    /// drive, and before a remote append is looked up: the core may have become leader earlier
    /// in this loop turn (a tick, a vote), before the replica was driven, and a retry handled
    /// then must find the entries the log already holds rather than append them again.
    pub(crate) fn observe_role(&mut self) {
        let role = self.core.role();
        let leader = self.core.leader();
        if leader != self.leader {
            LogMetrics::add(&self.metrics.leader_changes, 1);
            let now = leader.map_or_else(|| "unknown".to_owned(), |id| format!("{id:?}"));
            info!(log = %self.log, term = %self.core.term(), "leader is now {now}");
        }
        if self.role == Role::Leader && role != Role::Leader {
            // The waiting entries went out to the followers and may still commit under the next
            // leader: not `NotLeader`, which tells a local caller to append again at the leader
            // (a remote client hears NotLeader either way and retries with the same sequence
            // numbers, which the log deduplicates).
            let hint = self.leader_info(leader);
            // Those the core's commit index covers committed (a follower's acknowledgement and
            // the next leader's message can both arrive in one turn): answered as such first.
            let core = &self.core;
            self.waiters.complete(
                self.log,
                core.commit_index(),
                |i| core.term_at(i),
                hint,
                &self.metrics,
                clock::now(),
            );
            self.waiters.fail_all(self.log, &Failure::LeadershipLost(hint));
            self.pending_tags.clear();
            self.proposals.clear();
        }
        if leader.is_none() && self.leader.is_some() {
            for reply in self.read_indexes.take_confirmed() {
                self.fail_read_index(reply, ReadIndexError::NoLeader);
            }
        }
        if self.role != Role::Leader && role == Role::Leader {
            if let Err(e) = self.rebuild_pending_tags() {
                // Without them a retry of an entry it holds would be appended twice.
                self.fail_storage(e);
            }
        }
        self.role = role;
        self.leader = leader;
    }

    fn publish_gauges(&self) {
        LogMetrics::set(&self.metrics.term, self.core.term().get());
        LogMetrics::set(&self.metrics.commit_index, self.core.commit_index().get());
        LogMetrics::set(&self.metrics.last_index, self.core.last_index().get());
        LogMetrics::set(&self.metrics.first_index, self.store.first_index().get());
        LogMetrics::set(&self.metrics.is_leader, u64::from(self.role == Role::Leader));
        LogMetrics::set(&self.metrics.rejoining, u64::from(self.core.is_rejoining()));
        LogMetrics::set(&self.metrics.subscribers, self.subscribers.len() as u64);
    }

    /// Applies committed entries up to `commit` to the deduplication table.
    fn apply_committed(&mut self, commit: LogIndex) -> Result<(), String> {
        while self.applied < commit {
            let entries = match self.store.read(self.applied.next(), APPLY_READ_BYTES) {
                Ok(entries) => entries,
                Err(crate::storage::ReadError::Compacted { first_index, .. }) => {
                    self.applied = first_index.prev().max(self.applied);
                    continue;
                }
                // Not in the store yet (the core may learn a commit before its entries are
                // written here): applied when they are.
                Err(crate::storage::ReadError::BeyondEnd { .. }) => return Ok(()),
                Err(e) => {
                    // Applying cannot go past it, and the deduplication table would miss every
                    // client entry from here on: a retry of one could be appended twice, were
                    // this node to lead, and the log could never be compacted here.
                    return Err(format!(
                        "cannot read the committed entries from {} to apply them: {e}",
                        self.applied.next()
                    ));
                }
            };
            if entries.is_empty() {
                return Ok(());
            }
            for entry in entries.iter().take_while(|e| e.index <= commit) {
                if entry.kind == EntryKind::Tagged {
                    if let Some(tagged) = TaggedPayload::from_entry_data(entry.data.clone()) {
                        let key = (tagged.client_id(), tagged.seq());
                        self.dedup.record(key.0, key.1, entry.index, entry.term);
                        self.pending_tags.remove(&key);
                    }
                }
                self.applied = entry.index;
            }
        }
        Ok(())
    }

    /// A new leader learns which client entries its log already holds above the applied index
    /// (above the commit index, or committed in this loop turn and not yet in the deduplication
    /// table), so that a retry of one waits for it instead of appending it twice.
    fn rebuild_pending_tags(&mut self) -> Result<(), String> {
        self.pending_tags.clear();
        let mut next = self.applied.min(self.core.commit_index()).next();
        let last = self.store.last_index();
        while next <= last {
            let entries = match self.store.read(next, APPLY_READ_BYTES) {
                Ok(entries) => entries,
                Err(crate::storage::ReadError::Compacted { first_index, .. }) => {
                    next = first_index.max(next.next());
                    continue;
                }
                Err(e) => return Err(format!("cannot read entry {next} of this log: {e}")),
            };
            let Some(last_read) = entries.last().map(|e| e.index) else { return Ok(()) };
            for entry in &entries {
                if entry.kind == EntryKind::Tagged {
                    if let Some(tagged) = TaggedPayload::from_entry_data(entry.data.clone()) {
                        self.pending_tags.insert((tagged.client_id(), tagged.seq()), entry.index);
                    }
                }
            }
            next = last_read.next();
        }
        Ok(())
    }

    /// Forgets the entries before `before` on this node, as far as it may: only entries that
    /// are committed, durable here and applied (the deduplication table has seen them), and only
    /// whole segments of the store. Returns the log's first index afterwards. The core forgets
    /// the same entries, so a follower that still needs them is told where the log starts
    /// instead (docs/design.md, "Compaction").
    pub(crate) fn compact(&mut self, before: LogIndex) -> Result<LogIndex, CompactError> {
        if let Some(reason) = &self.failed {
            return Err(CompactError::Storage(reason.clone()));
        }
        if self.core.first_index() > self.store.first_index() {
            // A leader's log start stepped since the last drive: the store's log is about to be
            // replaced (at the next drive), and nothing of it is compacted meanwhile.
            return Ok(self.store.first_index());
        }
        let limit = before
            .min(self.core.commit_index().next())
            .min(self.core.durable_index().next())
            .min(self.applied.next());
        // Only whole segments go: the log will start at the last segment start at or before
        // `limit` (the first segment's own start when none after it is).
        let limit = self
            .store
            .segment_extents()
            .skip(1)
            .map(|(first, _)| first)
            .take_while(|&first| first <= limit)
            .last()
            .unwrap_or(self.store.first_index());
        if limit > self.store.first_index() {
            // The entries that go take their clients' numbers with them, unless a save holds
            // them: a restart rebuilds the deduplication table from the save and what is left.
            // A save refused for lack of space does not hold compaction back: compaction is how
            // a full disk gets space again (the next save then succeeds), and a log that cannot
            // free space takes no more appends. Until that save, a restart would append a retry
            // of an entry that went again; the retry would have to come from before the
            // entries retention keeps.
            if self.client_seqs_through.is_none_or(|through| through < limit.prev()) {
                match self.save_client_seqs() {
                    Ok(()) => {}
                    Err(failure) if failure.no_space => warn!(
                        log = %self.log,
                        "compacting before {limit} without a save of the clients' sequence \
                         numbers ({}): until one succeeds, a restart would append a retry of \
                         an entry before {limit} again",
                        failure.reason
                    ),
                    Err(failure) => return Err(CompactError::ClientSeqs(failure.reason)),
                }
            }
            if let Err(e) = self.store.compact_before(limit) {
                let reason = format!("compacting before {limit}: {e}");
                self.fail_storage(reason.clone());
                return Err(CompactError::Storage(reason));
            }
        }
        let first = self.store.first_index();
        let core_first = self.core.compact_before(first);
        debug_assert_eq!(core_first, first, "the core forgets what the store removed");
        Ok(first)
    }

    /// Compacts the segments that retention no longer keeps. By bytes: the newest sealed
    /// segments whose records total at least `storage.retention_bytes` stay, and the segment
    /// being written besides them (right after a roll-over it holds next to nothing, so it is
    /// not counted; a segment a truncation or a reset cut short counts what it holds). By age,
    /// about once a second: sealed segments last written more than `storage.retention_ms` ago
    /// go. A segment goes when either says so.
    fn apply_retention(&mut self) {
        let storage = &self.config.storage;
        let mut limit = LogIndex::ZERO;
        if storage.retention_bytes > 0 {
            let mut kept = 0u64;
            let first_kept =
                self.store.segment_extents().rev().skip(1).find_map(|(first, bytes)| {
                    kept = kept.saturating_add(bytes);
                    (kept >= storage.retention_bytes).then_some(first)
                });
            limit = limit.max(first_kept.unwrap_or(LogIndex::ZERO));
        }
        if storage.retention_ms > 0 {
            self.ticks_since_age_check += 1;
            let interval = (1000 / self.config.raft.tick_ms.max(1)).max(1);
            if self.ticks_since_age_check >= interval {
                self.ticks_since_age_check = 0;
                let age = Duration::from_millis(storage.retention_ms);
                if let Some(cutoff) = clock::wall_now().checked_sub(age) {
                    limit = limit.max(self.store.sealed_before(cutoff));
                }
            }
        }
        if limit > self.store.first_index() {
            // A storage failure stops the log and is logged by `fail_storage`; a failed save
            // of the clients' numbers is logged by `save_client_seqs`, and the segments wait
            // for its retry.
            let _ = self.compact(limit);
        }
    }

    /// The log's storage failed for good: answer everyone, stop writing and sending.
    fn fail_storage(&mut self, reason: String) {
        error!(log = %self.log, "log storage failed; the log stops on this node: {reason}");
        self.waiters.fail_all(self.log, &Failure::Poisoned(reason.clone()));
        self.subscribers.end_all(
            crate::error::ReadError::Storage { log: self.log, reason: reason.clone() },
            raftwal_wire::client::ErrorCode::Poisoned,
        );
        for reply in self.read_indexes.take_all() {
            self.fail_read_index(reply, ReadIndexError::Storage(reason.clone()));
        }
        self.failed = Some(reason);
    }

    /// Records a proposal for commit-latency metrics.
    pub(crate) fn note_proposal(&mut self, last: LogIndex, now: Instant) {
        self.proposals.push_back((last, now));
    }

    /// Stops: answers waiters and subscribers, lets the batch in flight finish, saves the hard
    /// state with the durable part of the commit index. A waiting append is told that it may
    /// still commit (`Interrupted`): its entries are in the log, went out to the followers, and
    /// the next leader (or this node, restarted) may commit them.
    pub(crate) fn shut_down(&mut self) {
        self.waiters.fail_all(self.log, &Failure::Interrupted);
        self.subscribers.end_all(
            crate::error::ReadError::ShuttingDown,
            raftwal_wire::client::ErrorCode::ShuttingDown,
        );
        for reply in self.read_indexes.take_all() {
            self.fail_read_index(reply, ReadIndexError::ShuttingDown);
        }
        if self.failed.is_some() {
            return;
        }
        while self.store.has_in_flight() {
            if let Err(e) = self.store.wait() {
                warn!(log = %self.log, "batch in flight failed at shutdown: {e}");
                return;
            }
        }
        self.report_persisted(self.store.durable_index());
        let commit = self.commit_to_save();
        if commit > self.saved.commit {
            let hard_state = HardState { commit, ..self.saved };
            if let Err(e) = self.save_hard_state(hard_state) {
                warn!(log = %self.log, "cannot save the hard state at shutdown: {e}");
            }
        }
    }
}
