//! A model of the replica loop that drives one consensus core against one store.
//!
//! Owns: [`Replica`]: the core, its [`SimStore`], the group-commit writer's queue, the messages
//! held until their persist completes, and the proposals waiting for acknowledgement.
//! Must not: send a message from `messages_after_persist` before every write handed out up to
//! and including its `Ready` is durable; acknowledge a proposal before the commit index covers
//! it with its own term; keep anything but the store across a crash.
//! Invariants:
//! 1. Writes reach the store in the order the core handed them out; one fsync covers every
//!    write submitted since the previous one (group commit), and writes handed out while an
//!    fsync runs wait for the next one.
//! 2. While the replica is down, `core` is `None` and nothing is queued.

use raftwal::raft::{
    Config, InjectedBug, ProposeError, Proposed, RaftCore, ReadState, RestoreError,
};
use raftwal_wire::message::Message;
use raftwal_wire::types::{Entry, EntryKind, HardState, LogIndex, NodeId, Term};
use std::collections::VecDeque;

use crate::store::SimStore;
use bytes::Bytes;

/// One `Ready`'s writes and the messages that wait for them.
#[derive(Debug, Default)]
struct PendingWrite {
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

/// What the completion of one fsync released.
#[derive(Debug, Default)]
pub struct Synced {
    /// Messages whose persist is now complete.
    pub send: Vec<Message>,
    /// Lowest index the durable log lost (a durable suffix was overwritten), if any.
    pub durable_lost_from: Option<LogIndex>,
}

/// A simulated replica: core, store and the loop between them.
#[derive(Debug)]
pub struct Replica {
    config: Config,
    core: Option<RaftCore>,
    store: Box<dyn SimStore>,
    queued: VecDeque<PendingWrite>,
    syncing: Vec<PendingWrite>,
    pending: Vec<PendingProposal>,
    bugs: Vec<InjectedBug>,
}

impl Replica {
    /// A replica restored from whatever `store` holds durably, with `bugs` planted.
    pub fn start(
        config: Config,
        store: Box<dyn SimStore>,
        bugs: Vec<InjectedBug>,
    ) -> Result<Replica, RestoreError> {
        let mut replica = Replica {
            config,
            core: None,
            store,
            queued: VecDeque::new(),
            syncing: Vec::new(),
            pending: Vec::new(),
            bugs,
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
    pub fn store(&self) -> &dyn SimStore {
        &*self.store
    }

    /// Whether the replica is up.
    pub fn is_up(&self) -> bool {
        self.core.is_some()
    }

    /// Whether an fsync is running.
    pub fn is_syncing(&self) -> bool {
        !self.syncing.is_empty()
    }

    /// Whether writes wait for the next fsync.
    pub fn has_queued_writes(&self) -> bool {
        !self.queued.is_empty()
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

    /// Drains the core's `Ready`: queues its writes, releases what may leave now, resolves
    /// proposals covered by the new commit index.
    pub fn drain(&mut self) -> Drained {
        let mut drained = Drained::default();
        let Some(core) = self.core.as_mut() else {
            return drained;
        };
        if !core.has_ready() {
            return drained;
        }
        let ready = core.ready(&*self.store);
        if let Some(first) = ready.entries.first() {
            drained.prev_term = core
                .term_at(first.index.prev())
                .expect("the entry before handed-out entries is in the core's log");
            drained.entries = ready.entries.clone();
        }
        drained.send = ready.messages;
        let write = PendingWrite {
            hard_state: ready.hard_state,
            entries: ready.entries,
            after_persist: ready.messages_after_persist,
        };
        let nothing_to_write = write.hard_state.is_none() && write.entries.is_empty();
        if nothing_to_write && self.queued.is_empty() && self.syncing.is_empty() {
            // Every earlier write is durable already: the messages may leave at once.
            drained.send.extend(write.after_persist);
        } else if !(nothing_to_write && write.after_persist.is_empty()) {
            self.queued.push_back(write);
        }
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

    /// Starts an fsync covering every queued write, if none runs (group commit). Returns whether
    /// one started.
    pub fn start_sync(&mut self) -> bool {
        if self.core.is_none() || !self.syncing.is_empty() || self.queued.is_empty() {
            return false;
        }
        self.syncing = self.queued.drain(..).collect();
        for write in &self.syncing {
            self.store.write(write.hard_state, &write.entries);
        }
        true
    }

    /// Completes the running fsync: the store makes the writes durable, the core hears of it,
    /// and the messages that waited for it are released.
    pub fn finish_sync(&mut self) -> Synced {
        let mut synced = Synced::default();
        let Some(core) = self.core.as_mut() else {
            return synced;
        };
        if self.syncing.is_empty() {
            return synced;
        }
        synced.durable_lost_from = self.store.sync();
        let batch = std::mem::take(&mut self.syncing);
        if let Some(last) = batch.iter().rev().find_map(|write| write.entries.last()) {
            core.persisted(last.index, last.term);
        }
        for write in batch {
            synced.send.extend(write.after_persist);
        }
        synced
    }

    /// Crashes: the core and everything in memory are gone; the store keeps what was durable and
    /// the first `surviving_units` unsynced units. Returns the lowest durable index lost.
    pub fn crash(&mut self, surviving_units: usize) -> Option<LogIndex> {
        self.core = None;
        self.queued.clear();
        self.syncing.clear();
        self.pending.clear();
        self.store.crash(surviving_units)
    }

    /// Restarts from the store with a fresh election-timeout seed.
    pub fn restart(&mut self, timeout_seed: u64) -> Result<(), RestoreError> {
        assert!(self.core.is_none(), "only a crashed replica restarts");
        self.config.timeout_seed = timeout_seed;
        let mut core =
            RaftCore::restore(self.config.clone(), self.store.hard_state(), &*self.store)?;
        for bug in &self.bugs {
            core.inject_bug(*bug);
        }
        self.core = Some(core);
        Ok(())
    }
}
