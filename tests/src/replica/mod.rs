//! A model of the replica loop that drives one consensus core against the real log store.
//!
//! Owns: [`Replica`]: the core, its [`SimStore`], the `Ready`s waiting for the group-commit
//! writer ([`writer`]), the messages held until their persist completes, and the proposals
//! waiting for acknowledgement.
//! Must not: send a message from `messages_after_persist` before every write handed out up to
//! and including its `Ready` is durable; acknowledge a proposal before the commit index covers
//! it with its own term; keep anything but the disk across a crash; decide by itself when the
//! disk completes anything (the caller schedules every disk step).
//! Invariants:
//! 1. Writes reach the store in the order the core handed them out; one group covers every
//!    `Ready` queued when it starts, and `Ready`s handed out while a group runs wait for the
//!    next one (group commit; the store adds its own batching inside a group).
//! 2. While the replica is down, `core` is `None`, nothing is queued and the log is closed.
//! 3. The core hears of durability only from the store's completions (`persisted` with the
//!    store's durable index and its term).

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

pub use writer::WriterStep;

/// One `Ready`'s writes and the messages that wait for them.
#[derive(Debug, Default)]
struct PendingWrite {
    /// The hard state to save, when its term or vote changed (or its commit index, if the
    /// replica persists it).
    hard_state: Option<HardState>,
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

/// How the replica loop saves the hard state.
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
    queued: VecDeque<PendingWrite>,
    group: Option<writer::Group>,
    pending: Vec<PendingProposal>,
    bugs: Vec<InjectedBug>,
    commit_persistence: CommitPersistence,
    /// The newest hard state handed to the writer (saved or queued).
    handed_hard_state: HardState,
    /// The durable index last reported to the core.
    reported_durable: LogIndex,
}

impl Replica {
    /// A replica restored from whatever `store`'s disk holds durably, with `bugs` planted.
    pub fn start(
        config: Config,
        store: SimStore,
        bugs: Vec<InjectedBug>,
        commit_persistence: CommitPersistence,
    ) -> Result<Replica, Violation> {
        let mut replica = Replica {
            config,
            core: None,
            store,
            queued: VecDeque::new(),
            group: None,
            pending: Vec::new(),
            bugs,
            commit_persistence,
            handed_hard_state: HardState::default(),
            reported_durable: LogIndex::ZERO,
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

    /// Drains the core's `Ready`: queues its writes for the writer, releases what may leave now,
    /// resolves proposals covered by the new commit index.
    pub fn drain(&mut self) -> Drained {
        let mut drained = Drained::default();
        let Some(core) = self.core.as_mut() else {
            return drained;
        };
        if !core.has_ready() {
            return drained;
        }
        let ready = core.ready(&self.store.source());
        if let Some(first) = ready.entries.first() {
            drained.prev_term = core
                .term_at(first.index.prev())
                .expect("the entry before handed-out entries is in the core's log");
            drained.entries = ready.entries.clone();
        }
        drained.send = ready.messages;
        let hard_state = ready.hard_state.filter(|hard_state| self.needs_save(hard_state));
        if let Some(hard_state) = hard_state {
            self.handed_hard_state = hard_state;
        }
        let write = PendingWrite {
            hard_state,
            entries: ready.entries,
            after_persist: ready.messages_after_persist,
        };
        let nothing_to_write = write.hard_state.is_none() && write.entries.is_empty();
        if nothing_to_write && self.queued.is_empty() && self.group.is_none() {
            // Every earlier write is durable already: the messages may leave at once.
            drained.send.extend(write.after_persist);
        } else if !(nothing_to_write && write.after_persist.is_empty()) {
            self.queued.push_back(write);
        }
        let core = self.core.as_mut().expect("checked above");
        if let Some(commit) = ready.committed {
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
        drained.read_states = ready.read_states;
        drained
    }

    /// Crashes: the core and everything in memory are gone; the disk keeps what was durable (and
    /// a torn prefix of its last unsynced write, if `tear` says so). Returns the lowest durable
    /// index that a truncation in progress removed, if any.
    pub fn crash(&mut self, tear: Tear) -> Result<Option<LogIndex>, ImageError> {
        self.forget();
        self.store.crash(tear)
    }

    /// Stops without crashing the disk (the planted driver bug that reopens a poisoned log in
    /// the same boot, where unsynced writes are still readable).
    pub fn stop_without_crash(&mut self) {
        self.forget();
        self.store.close();
    }

    fn forget(&mut self) {
        self.core = None;
        self.queued.clear();
        self.group = None;
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
        self.core = Some(core);
        self.handed_hard_state = recovery.hard_state;
        self.reported_durable = recovery.last_index;
        Ok(recovery)
    }
}
