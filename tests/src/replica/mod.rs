//! A model of the replica loop that drives one consensus core against the real log store.
//!
//! Owns: [`Replica`]: the core, its [`SimStore`], the writes and messages waiting for the disk,
//! and the proposals waiting for acknowledgement. It drives the store in one of two orders
//! ([`DriverOrder`]): the runtime's (module `inline`: a changed term or vote saved before
//! anything leaves, entries straight into the store's batch), or a group-commit writer whose
//! every write takes disk time (module `writer`: the most the driver contract of docs/design.md
//! allows, which is what the planted `vote-not-durable` bug needs to show).
//! Must not: send a message from `messages_after_persist` before every write handed out up to
//! and including its `Ready` is durable; acknowledge a proposal before the commit index covers
//! it with its own term; keep anything but the disk across a crash; decide by itself when the
//! disk completes a queued op (the caller schedules every disk step).
//! Invariants:
//! 1. Writes reach the store in the order the core handed them out.
//! 2. While the replica is down, `core` is `None`, nothing is queued and the log is closed.
//! 3. The core hears of durability only from the store's completions (`persisted` with an index
//!    the store reports durable and its term).
//! 4. A failed write or fdatasync stops the replica, and the log must be poisoned for good; a
//!    full disk changes nothing durable and does not poison the log.

mod inline;
mod writer;

use raftwal::raft::{Config, InjectedBug, ProposeError, Proposed, RaftCore, ReadState};
use raftwal::storage::{Recovery, Tear};
use raftwal_wire::message::Message;
use raftwal_wire::types::{Entry, EntryKind, HardState, LogIndex, NodeId, Term};
use std::collections::VecDeque;

use crate::checker::{Property, Violation};
use crate::durable::ImageError;
use crate::store::SimStore;
use bytes::Bytes;

use writer::GroupStep;

/// Whether the log can move only after the disk runs: a batch is in flight, or the next batch
/// waits for the zero-fill write in flight (`LogStore::waits_for_background`).
fn needs_disk(log: &raftwal::storage::LogStore<raftwal::storage::SimDisk>) -> bool {
    log.has_in_flight() || log.waits_for_background()
}

/// One `Ready`'s writes and the messages that wait for them.
#[derive(Debug, Default)]
struct PendingWrite {
    /// The hard state to save, when its term or vote changed (or its commit index, if the
    /// replica persists it).
    hard_state: Option<HardState>,
    /// A leader's log start: the stored log is replaced before `entries` are written.
    log_start: Option<(LogIndex, Term)>,
    entries: Vec<Entry>,
    after_persist: Vec<Message>,
}

/// A proposal accepted by this replica as leader, waiting for the commit index.
#[derive(Clone, Debug)]
pub struct PendingProposal {
    /// Where the core placed it.
    pub proposed: Proposed,
    /// The client's identifier for it.
    pub tag: u64,
    /// Content hash of each payload, in order (see [`crate::checker::entry_hash`]).
    pub hashes: Vec<u64>,
}

/// What one drain of the core produced.
#[derive(Debug, Default)]
pub struct Drained {
    /// Messages to put on the network now.
    pub send: Vec<Message>,
    /// Entries the core handed out for writing (for the checker's Log Matching).
    pub entries: Vec<Entry>,
    /// Term of the entry before `entries[0]`.
    pub prev_term: Term,
    /// Proposals resolved by the commit index: `true` when acknowledged (committed with their
    /// own term), `false` when another leader's entries took their place.
    pub resolved: Vec<(PendingProposal, bool)>,
    /// Answers to read-index requests.
    pub read_states: Vec<ReadState>,
    /// The core reported the end of its rejoin.
    pub rejoined: bool,
}

/// Why a replica stopped on its own, in the middle of a disk operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Down {
    /// The disk's armed crash fired.
    Crashed,
    /// A write or fsync failed and poisoned the log (checked: it refuses every write); the
    /// replica stops, as a crashed one would, until it restarts from its disk.
    Poisoned(String),
    /// The storage broke a promise the checker must report.
    Broken(Violation),
}

/// The order in which the replica loop carries out a `Ready`'s effects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverOrder {
    /// The runtime's order (`engine/src/runtime`, see module `inline`): a changed term or vote is
    /// saved synchronously before anything of the `Ready` leaves; entries go straight into the
    /// store's pending batch; `messages_after_persist` wait for the store's durable index.
    Runtime,
    /// A group-commit writer (module `writer`): `Ready`s queue, and each group saves its hard
    /// state, then writes its entries, each taking disk time, while `messages` have left already.
    Groups,
}

/// How the group writer saves the hard state (the runtime's order has its own rule, see
/// module `inline`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitPersistence {
    /// Only term and vote changes are saved (each costs an fsync); the commit index rides along
    /// when they change. Restarted replicas learn the commit index from the leader.
    WithTermOrVote,
    /// Every change of the commit index is saved too.
    EveryChange,
}

/// A simulated replica: core, store and the loop between them.
#[derive(Debug)]
pub struct Replica {
    config: Config,
    core: Option<RaftCore>,
    store: SimStore,
    order: DriverOrder,
    /// The group writer's `Ready`s waiting for the next group ([`DriverOrder::Groups`]).
    queued: VecDeque<PendingWrite>,
    group: Option<writer::Group>,
    /// The group writer's last step was refused by a full disk.
    group_blocked: bool,
    /// The runtime-order loop's state ([`DriverOrder::Runtime`]).
    inline: inline::InlineState,
    pending: Vec<PendingProposal>,
    bugs: Vec<InjectedBug>,
    commit_persistence: CommitPersistence,
    full_disk_refusals: u64,
    /// `Ready`s held because a full disk refused their truncation or log start (runtime order).
    full_disk_holds: u64,
    /// The newest hard state handed to the writer (saved or queued).
    handed_hard_state: HardState,
    /// The durable index last reported to the core.
    reported_durable: LogIndex,
    /// The rejoin marker (the runtime keeps it as a file): set when the disk is wiped, kept
    /// across crashes, dropped once the core reported the end of its rejoin and the hard state
    /// of that moment is durable. While set, the core restarts with `Config::rejoin`.
    rejoin_marker: bool,
    /// The term and vote that must be durable before the marker is dropped.
    marker_drop_after: Option<(Term, Option<NodeId>)>,
}

impl Replica {
    /// A replica restored from whatever `store`'s disk holds durably, with `bugs` planted.
    pub fn start(
        config: Config,
        store: SimStore,
        bugs: Vec<InjectedBug>,
        order: DriverOrder,
        commit_persistence: CommitPersistence,
    ) -> Result<Replica, Violation> {
        let mut replica = Replica {
            config,
            core: None,
            store,
            order,
            queued: VecDeque::new(),
            group: None,
            group_blocked: false,
            inline: inline::InlineState::default(),
            pending: Vec::new(),
            bugs,
            commit_persistence,
            full_disk_refusals: 0,
            full_disk_holds: 0,
            handed_hard_state: HardState::default(),
            reported_durable: LogIndex::ZERO,
            rejoin_marker: false,
            marker_drop_after: None,
        };
        let seed = replica.config.timeout_seed;
        replica.restart(seed)?;
        Ok(replica)
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The core, while the replica is up.
    pub fn core(&self) -> Option<&RaftCore> {
        self.core.as_ref()
    }

    /// The core, mutably, while the replica is up.
    pub fn core_mut(&mut self) -> Option<&mut RaftCore> {
        self.core.as_mut()
    }

    /// The store.
    pub fn store(&self) -> &SimStore {
        &self.store
    }

    /// The store, mutably (to inject disk faults).
    pub fn store_mut(&mut self) -> &mut SimStore {
        &mut self.store
    }

    /// Whether the replica is up.
    pub fn is_up(&self) -> bool {
        self.core.is_some()
    }

    /// Proposes `payloads` (as normal entries); remembers the batch until the commit resolves it.
    pub fn propose(&mut self, payloads: &[Bytes], tag: u64) -> Result<Proposed, ProposeError> {
        let Some(core) = self.core.as_mut() else {
            return Err(ProposeError::NotLeader { leader: None });
        };
        let proposed =
            core.propose(payloads.iter().map(|payload| (EntryKind::Normal, payload.clone())))?;
        let hashes = payloads
            .iter()
            .map(|payload| crate::checker::entry_hash(EntryKind::Normal, payload))
            .collect();
        self.pending.push(PendingProposal { proposed, tag, hashes });
        Ok(proposed)
    }

    /// Whether the hard state must be saved: its term or vote changed, or its commit index and
    /// the replica persists every commit change.
    fn needs_save(&self, hard_state: &HardState) -> bool {
        let handed = &self.handed_hard_state;
        (hard_state.term, hard_state.vote) != (handed.term, handed.vote)
            || (self.commit_persistence == CommitPersistence::EveryChange
                && hard_state.commit != handed.commit)
    }

    /// Drains the core's `Ready` and carries out its writes in the replica's order (queued for
    /// the group writer, or handed to the store at once); releases what may leave now; resolves
    /// proposals covered by the new commit index.
    pub fn drain(&mut self) -> Result<Drained, Down> {
        let mut drained = Drained::default();
        if self.core.is_none() {
            return Ok(drained);
        }
        if self.order == DriverOrder::Runtime {
            drained.send.extend(self.reap_inline()?);
            if self.inline.held.is_some() {
                // Nothing else is taken from the core while a `Ready` is held; it is tried
                // again once a tick has passed.
                if std::mem::take(&mut self.inline.retry_held) {
                    let held = self.inline.held.take().expect("checked above");
                    self.carry_out(held, &mut drained)?;
                }
                self.submit_inline()?;
                return Ok(drained);
            }
        }
        let core = self.core.as_mut().expect("checked above");
        if !core.has_ready() {
            if self.order == DriverOrder::Runtime {
                self.submit_inline()?;
            }
            return Ok(drained);
        }
        let ready = core.ready(&self.store.source());
        let persist_point = ready.persist_point();
        if let Some(first) = ready.entries.first() {
            drained.prev_term = core
                .term_at(first.index.prev())
                .expect("the entry before handed-out entries is in the core's log");
            drained.entries = ready.entries.clone();
        }
        let committed = ready.committed;
        match self.order {
            DriverOrder::Runtime => {
                let ready = inline::HeldReady {
                    hard_state: ready.hard_state,
                    log_start: ready.log_start,
                    entries: ready.entries,
                    persist_point,
                    messages: ready.messages,
                    after_persist: ready.messages_after_persist,
                    read_states: ready.read_states,
                    rejoined: ready.rejoined,
                };
                self.carry_out(ready, &mut drained)?;
                self.full_disk_holds += u64::from(self.inline.held.is_some());
                self.submit_inline()?;
            }
            DriverOrder::Groups => {
                drained.send.extend(ready.messages);
                let hard_state = ready.hard_state.filter(|hard_state| self.needs_save(hard_state));
                if let Some(hard_state) = hard_state {
                    self.handed_hard_state = hard_state;
                }
                let write = PendingWrite {
                    hard_state,
                    log_start: ready.log_start,
                    entries: ready.entries,
                    after_persist: ready.messages_after_persist,
                };
                let nothing_to_write = write.hard_state.is_none()
                    && write.log_start.is_none()
                    && write.entries.is_empty();
                if nothing_to_write && self.queued.is_empty() && self.group.is_none() {
                    // Every earlier write is durable already: the messages may leave at once.
                    drained.send.extend(write.after_persist);
                } else if !(nothing_to_write && write.after_persist.is_empty()) {
                    self.queued.push_back(write);
                }
                drained.read_states = ready.read_states;
                if ready.rejoined {
                    self.note_rejoined(&mut drained);
                }
            }
        }
        let core = self.core.as_mut().expect("checked above");
        if let Some(commit) = committed {
            let mut position = 0;
            while position < self.pending.len() {
                let proposed = self.pending[position].proposed;
                if proposed.last_index <= commit {
                    let acknowledged = core.term_at(proposed.last_index) == Some(proposed.term);
                    drained.resolved.push((self.pending.swap_remove(position), acknowledged));
                } else {
                    position += 1;
                }
            }
        }
        Ok(drained)
    }

    /// Carries out a `Ready` in the runtime's order, or holds it (module `inline`), and adds
    /// what it released to `drained`.
    fn carry_out(&mut self, ready: inline::HeldReady, drained: &mut Drained) -> Result<(), Down> {
        match self.carry_out_inline(ready)? {
            inline::Carried::Done { send, read_states, rejoined } => {
                drained.send.extend(send);
                drained.read_states.extend(read_states);
                // A truncation may have waited for the batch in flight.
                drained.send.extend(self.reap_inline()?);
                if rejoined {
                    self.note_rejoined(drained);
                }
            }
            inline::Carried::Held => {}
        }
        Ok(())
    }

    /// The core reported the end of its rejoin: the marker goes once the term and vote of now
    /// are durable.
    fn note_rejoined(&mut self, drained: &mut Drained) {
        let core = self.core.as_ref().expect("up");
        drained.rejoined = true;
        self.marker_drop_after = Some((core.term(), core.vote()));
        self.settle_rejoin_marker();
    }

    /// Forgets the entries before `before`, as the runtime's `Log::compact` does: only
    /// committed entries durable here, only whole segments of the store, and the core forgets
    /// what the store removed. Returns the log's first index afterwards.
    pub fn compact(&mut self, before: LogIndex) -> Result<LogIndex, Down> {
        let Some(core) = self.core.as_ref() else {
            return Ok(LogIndex::ZERO);
        };
        let store_first = self.store.log().expect("up").first_index();
        if core.first_index() > store_first {
            // A leader's log start the writer has not carried out yet: the store's log is
            // about to be replaced, and nothing of it is compacted meanwhile.
            return Ok(store_first);
        }
        let limit = before.min(core.commit_index().next()).min(core.durable_index().next());
        let durable_before = self.store.log().expect("up").durable_index();
        let first = match self.store.compact_before(limit) {
            Ok(first) => first,
            Err(error) => {
                return Err(self.down(format!("compacting before {limit}: {error}"), durable_before))
            }
        };
        let core = self.core.as_mut().expect("checked above");
        let core_first = core.compact_before(first);
        if core_first != first {
            return Err(Down::Broken(Violation {
                property: Property::CoreError,
                detail: format!(
                    "{:?}: the store starts at {first} after compacting, the core at {core_first}",
                    self.config.id
                ),
            }));
        }
        Ok(first)
    }

    /// One tick of the core's clock (in the runtime's order, also the occasional save of a
    /// commit index that moved alone).
    pub fn tick(&mut self) -> Result<(), Down> {
        match self.order {
            DriverOrder::Runtime => self.tick_inline(),
            DriverOrder::Groups => {
                self.core.as_mut().expect("only a replica that is up ticks").tick();
                Ok(())
            }
        }
    }

    /// Starts the writer on what waits for it (the group writer's next groups; the runtime
    /// order hands entries to the store as it drains, so nothing waits). Returns the messages
    /// of groups that finished at once (nothing to write).
    pub fn start_writes(&mut self) -> Result<Vec<Message>, Down> {
        let mut released = Vec::new();
        while let Some(step) = self.start_group() {
            match step? {
                GroupStep::Busy => {
                    self.group_blocked = false;
                    break;
                }
                GroupStep::Blocked => {
                    self.group_blocked = true;
                    self.full_disk_refusals += 1;
                    break;
                }
                GroupStep::Done(messages) => released.extend(messages),
            }
        }
        Ok(released)
    }

    /// One disk step: the disk completes up to `ops_max` of its queued ops (the chunk writes of
    /// a batch are in flight together, so the device may complete several at once), or the
    /// group writer saves its hard state; then whatever follows at once (the store's completion
    /// handling, its next batch). Returns the messages released.
    pub fn disk_step(&mut self, ops_max: usize) -> Result<Vec<Message>, Down> {
        assert!(ops_max > 0, "a disk step runs at least one op");
        match self.order {
            DriverOrder::Runtime => self.disk_step_inline(ops_max),
            DriverOrder::Groups => match self.group_step(ops_max)? {
                GroupStep::Busy => {
                    self.group_blocked = false;
                    Ok(Vec::new())
                }
                GroupStep::Blocked => {
                    self.group_blocked = true;
                    self.full_disk_refusals += 1;
                    Ok(Vec::new())
                }
                GroupStep::Done(messages) => {
                    self.group_blocked = false;
                    Ok(messages)
                }
            },
        }
    }

    /// Whether the writer needs a disk step: work on the disk, or a step a full disk refused.
    pub fn needs_disk_step(&self) -> bool {
        if self.core.is_none() {
            return false;
        }
        match self.order {
            DriverOrder::Runtime => self.needs_disk_step_inline(),
            DriverOrder::Groups => self.group.is_some(),
        }
    }

    /// Whether the writer's last step was refused by a full disk (retry later).
    pub fn disk_blocked(&self) -> bool {
        match self.order {
            DriverOrder::Runtime => self.inline.blocked,
            DriverOrder::Groups => self.group_blocked,
        }
    }

    /// Whether writes wait for the disk or for the writer (nothing handed out is durable yet).
    pub fn has_pending_writes(&self) -> bool {
        self.needs_disk_step()
            || !self.queued.is_empty()
            || self.store.log().is_some_and(|log| log.has_pending())
    }

    /// Whether the disk has queued ops (a batch's writes or fdatasync in flight, or the log's
    /// background work: zeros, the next segment's preparation).
    pub fn disk_busy(&self) -> bool {
        self.store.disk().pending_ops() > 0
    }

    /// Disk steps and submits a full disk refused so far.
    pub fn full_disk_refusals(&self) -> u64 {
        self.full_disk_refusals
    }

    /// `Ready`s held because a full disk refused their truncation or log start (runtime order).
    pub fn full_disk_holds(&self) -> u64 {
        self.full_disk_holds
    }

    /// Whether the loop holds a `Ready` a full disk refused (it takes no other meanwhile).
    pub fn holds_ready(&self) -> bool {
        self.inline.held.is_some()
    }

    /// The disk refused an operation for lack of space: checks that this changed nothing (the
    /// log is not poisoned, its durable index is where it was before the refused call). With
    /// `waited`, the refused call first took completions (a truncation waiting for the batch in
    /// flight, a reap of a withdrawn batch behind completed ones), so the durable index may
    /// have moved forward, never back.
    fn check_refusal(&self, durable_before: LogIndex, waited: bool) -> Result<(), Down> {
        let log = self.store.log().expect("up");
        if let Some(poison) = log.poisoned() {
            return Err(Down::Broken(Violation {
                property: Property::StorageFault,
                detail: format!("{:?}: a full disk poisoned the log: {poison}", self.config.id),
            }));
        }
        let moved = if waited {
            log.durable_index() < durable_before
        } else {
            log.durable_index() != durable_before
        };
        if moved {
            return Err(Down::Broken(Violation {
                property: Property::StorageFault,
                detail: format!(
                    "{:?}: a full disk moved the durable index from {durable_before} to {}",
                    self.config.id,
                    log.durable_index()
                ),
            }));
        }
        Ok(())
    }

    /// A disk operation failed: the disk crashed (its armed crash fired), or the failure must
    /// have poisoned the log for good (and not moved the durable index from where it was before
    /// the failed call).
    fn down(&mut self, what: String, durable_before: LogIndex) -> Down {
        if self.store.disk().is_crashed() {
            return Down::Crashed;
        }
        match self.store.confirm_poisoned(durable_before) {
            Ok(()) => Down::Poisoned(what),
            Err(detail) => Down::Broken(Violation {
                property: Property::StorageFault,
                detail: format!("{:?}: {detail} ({what})", self.config.id),
            }),
        }
    }

    /// Crashes: the core and everything in memory are gone; the disk keeps what was durable (and
    /// a torn prefix of its last unsynced write, if `tear` says so). Returns the lowest durable
    /// index that a truncation in progress removed, if any.
    pub fn crash(&mut self, tear: Tear) -> Result<Option<LogIndex>, ImageError> {
        self.forget();
        self.store.crash(tear)
    }

    /// The process dies in a boot that goes on: the disk keeps what was written but not
    /// synced, readable ([`SimStore::kill`]).
    pub fn kill(&mut self) {
        self.forget();
        self.store.kill();
    }

    /// Replaces the disk by an empty one and sets the rejoin marker: the replica goes down (if
    /// it is up) and restarts with nothing but the marker.
    pub fn wipe(&mut self, keeps_stale_cache: bool) {
        self.forget();
        self.store.wipe(keeps_stale_cache);
        self.rejoin_marker = true;
    }

    /// Whether the rejoin marker is set (wiped, and not yet known rejoined durably).
    pub fn has_rejoin_marker(&self) -> bool {
        self.rejoin_marker
    }

    /// Whether the replica lost its durable state and has not rejoined yet: it is down with
    /// its marker set, or its core is rejoining. It grants no vote, and its copies of entries
    /// are gone until it has caught up.
    pub fn rejoining(&self) -> bool {
        self.rejoin_marker && self.core.as_ref().is_none_or(RaftCore::is_rejoining)
    }

    /// Drops the rejoin marker once the hard state of the moment the core rejoined is durable
    /// (the runtime deletes its marker file then).
    pub fn settle_rejoin_marker(&mut self) {
        let Some((term, vote)) = self.marker_drop_after else { return };
        let durable = self.store.durable().hard_state();
        if durable.term > term || (durable.term == term && durable.vote == vote) {
            self.rejoin_marker = false;
            self.marker_drop_after = None;
        }
    }

    fn forget(&mut self) {
        self.marker_drop_after = None;
        self.core = None;
        self.queued.clear();
        self.group = None;
        self.group_blocked = false;
        self.inline = inline::InlineState::default();
        self.pending.clear();
    }

    /// Restarts: reopens the log from the disk (checking the recovery against the durable
    /// image) and restores the core from what recovery returned, with a fresh election-timeout
    /// seed.
    pub fn restart(&mut self, timeout_seed: u64) -> Result<Recovery, Violation> {
        assert!(self.core.is_none(), "only a stopped replica restarts");
        let recovery = self.store.open().map_err(|error| Violation {
            property: Property::DurableImage,
            detail: format!("{:?}: {error}", self.config.id),
        })?;
        self.config.timeout_seed = timeout_seed;
        self.config.rejoin = self.rejoin_marker;
        let mut core =
            RaftCore::restore(self.config.clone(), recovery.hard_state, &self.store.source())
                .map_err(|error| Violation {
                    property: Property::CoreError,
                    detail: format!(
                        "{:?} could not restart from what recovery returned ({recovery:?}): \
                         {error}",
                        self.config.id
                    ),
                })?;
        for bug in &self.bugs {
            core.inject_bug(*bug);
        }
        if !core.is_rejoining() {
            // A planted bug skipped the protocol: the marker has no more meaning.
            self.rejoin_marker = false;
        }
        self.core = Some(core);
        self.handed_hard_state = recovery.hard_state;
        self.inline = inline::InlineState::restarted(recovery.hard_state);
        self.reported_durable = recovery.last_index;
        Ok(recovery)
    }
}
