//! The safety properties, checked after every step of a simulated cluster.
//!
//! Owns: [`Checker`], the global record it keeps (leaders per term, every entry ever handed to
//! a store, the committed log, acknowledged proposals), and [`Violation`].
//! Must not: influence the run (it only observes), or accept a property on partial evidence:
//! every check compares against what some replica really holds.
//!
//! What is checked (Raft paper, Figure 3, plus raftwal's promises):
//! 1. Election Safety: at most one leader per term.
//! 2. Leader Append-Only: while a replica leads a term, its log only grows.
//! 3. Log Matching: every `(index, term)` ever written anywhere names one entry, with one
//!    payload and one previous term; by induction, two logs that share an entry share the
//!    prefix before it.
//! 4. Leader Completeness: a new leader of term `T` holds every entry committed in a term below
//!    `T`.
//! 5. State Machine Safety: replicas that commit an index commit the same entry there.
//! 6. An acknowledged proposal is committed with its payloads and durable on a majority, then
//!    and after every later fsync or crash.
//! 7. A read-index answer is at least the index of every proposal acknowledged before the read
//!    started (linearizable reads).
//! 8. The core's own invariants (`RaftCore::check_invariants`).
//! 9. raftwal's promise 3, at the network boundary: a vote request or grant leaves only once the
//!    sender's durable hard state records it (or a later term); a leader's messages only carry a
//!    durable term; a follower acknowledges only entries its durable log holds. And a replica
//!    never grants two candidates its vote in one term (the lemma behind Election Safety).
//! 10. The lemma behind Leader Completeness, checked at every step rather than only when a
//!     leader appears: the last committed entry is held, durably and in memory, by enough
//!     replicas whose logs are more up-to-date than any replica lacking it that no such replica
//!     could collect a majority of votes. This catches a commit that is unsafe (Figure 8) as
//!     soon as it happens, without waiting for the unlucky election that would lose it.
//!
//! "Durable" always means the disk's durable image as [`crate::durable::DurableImage`] reads it
//! from the simulated disk's bytes, never what a log store believes. The storage's own promises
//! (durable entries vanish only through a requested truncation, recovery returns exactly the
//! durable image, a failed fsync poisons the log, a full disk changes nothing) are checked where
//! the replica loop meets the store ([`crate::store`], [`crate::replica`]) and reported with the
//! properties [`Property::DurableImage`] and [`Property::StorageFault`].

use crate::durable::DurableEntry;
use crate::replica::{PendingProposal, Replica};
use raftwal::raft::{RaftCore, Role};
use raftwal_wire::message::{AppendEntriesResponse, Message, MessageBody};
use raftwal_wire::types::{Entry, EntryKind, LogIndex, NodeId, Term};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Which property a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Property {
    /// Two leaders in one term.
    ElectionSafety,
    /// A leader lost or changed an entry of its log.
    LeaderAppendOnly,
    /// Two different entries share an index and a term.
    LogMatching,
    /// A new leader lacks a committed entry.
    LeaderCompleteness,
    /// Two replicas committed different entries at one index.
    StateMachineSafety,
    /// An acknowledged proposal is not durable on a majority (or not committed as proposed).
    AcknowledgedDurability,
    /// A read-index answer missed an acknowledged write.
    LinearizableRead,
    /// Commits did not resume after the faults healed.
    Liveness,
    /// A core's internal invariant broke.
    CoreInvariant,
    /// A core refused a message that a correct peer could have sent, or failed to restart.
    CoreError,
    /// A message left before what it depends on was durable (promise 3).
    PersistBeforeSend,
    /// The disk's durable image lost an entry that no truncation removed, broke the on-disk
    /// format, or disagreed with what recovery returned.
    DurableImage,
    /// A failed write or fsync did not poison the log for good, a full disk changed something
    /// (poisoned the log, moved its durable index), or the log store broke its own invariants.
    StorageFault,
}

/// A broken property, with what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The property.
    pub property: Property,
    /// What happened, in words.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.property, self.detail)
    }
}

fn violation(property: Property, detail: String) -> Violation {
    Violation { property, detail }
}

/// FNV-1a over the kind and payload: the identity of an entry's content.
pub fn entry_hash(kind: EntryKind, data: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in std::iter::once(kind.as_u8()).chain(data.iter().copied()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[derive(Clone, Copy, Debug)]
struct CommittedEntry {
    term: Term,
    /// The term of the replica that first showed the entry committed: the committing leader's.
    commit_term: Term,
}

#[derive(Clone, Copy, Debug, Default)]
struct ReplicaView {
    /// The term this replica was seen leading at the last check, if it led.
    leader_term: Option<Term>,
    last_index: LogIndex,
    last_term: Term,
    /// Committed entries of this replica already compared with the committed log.
    commit_checked: LogIndex,
}

#[derive(Clone, Debug)]
struct Acknowledged {
    first: LogIndex,
    last: LogIndex,
    term: Term,
    /// Content hash of each entry, in order.
    hashes: Vec<u64>,
}

/// The global observer of one simulated cluster.
#[derive(Debug)]
pub struct Checker {
    majority: usize,
    leaders: BTreeMap<Term, NodeId>,
    /// `(index, term)` to `(content hash, previous term)` for every entry ever handed out.
    entries: HashMap<(u64, u64), (u64, Term)>,
    committed: Vec<CommittedEntry>,
    acknowledged: Vec<Acknowledged>,
    views: Vec<ReplicaView>,
    max_acknowledged: LogIndex,
    /// `(voter, term)` to the candidate it granted its vote.
    votes: HashMap<(u64, u64), NodeId>,
}

impl Checker {
    /// A checker for a cluster of `replica_count` replicas, indexed from 0.
    pub fn new(replica_count: usize) -> Checker {
        Checker {
            majority: replica_count / 2 + 1,
            leaders: BTreeMap::new(),
            entries: HashMap::new(),
            committed: Vec::new(),
            acknowledged: Vec::new(),
            views: vec![ReplicaView::default(); replica_count],
            max_acknowledged: LogIndex::ZERO,
            votes: HashMap::new(),
        }
    }

    /// The highest index acknowledged to a client so far.
    pub fn max_acknowledged(&self) -> LogIndex {
        self.max_acknowledged
    }

    /// Number of entries known committed.
    pub fn committed_count(&self) -> u64 {
        self.committed.len() as u64
    }

    /// Number of distinct terms that had a leader.
    pub fn leader_terms(&self) -> usize {
        self.leaders.len()
    }

    /// Property 3, for entries a replica handed to its store after an entry of `prev_term`.
    pub fn on_entries(
        &mut self,
        replica: NodeId,
        prev_term: Term,
        entries: &[Entry],
    ) -> Result<(), Violation> {
        let mut prev_term = prev_term;
        for entry in entries {
            let key = (entry.index.get(), entry.term.get());
            let value = (entry_hash(entry.kind, &entry.data), prev_term);
            match self.entries.get(&key) {
                Some(seen) if *seen != value => {
                    return Err(violation(
                        Property::LogMatching,
                        format!(
                            "{replica:?} wrote entry {:?}/{:?} (hash {:x}, previous term {:?}) \
                             but that index and term already named (hash {:x}, previous term \
                             {:?})",
                            entry.index, entry.term, value.0, value.1, seen.0, seen.1
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    self.entries.insert(key, value);
                }
            }
            prev_term = entry.term;
        }
        Ok(())
    }

    /// A replica restarted: its commit index is checked again from the start.
    pub fn on_restart(&mut self, position: usize) {
        self.views[position] = ReplicaView::default();
    }

    /// Properties 1, 2, 4, 5 and 8 for the replica at `position`, after a step that touched it.
    pub fn after_step(&mut self, position: usize, core: &RaftCore) -> Result<(), Violation> {
        core.check_invariants()
            .map_err(|error| violation(Property::CoreInvariant, error.to_string()))?;
        let id = core.id();
        let term = core.term();
        let view = self.views[position];
        if core.role() == Role::Leader {
            match self.leaders.get(&term) {
                Some(other) if *other != id => {
                    return Err(violation(
                        Property::ElectionSafety,
                        format!("{id:?} and {other:?} both lead term {term:?}"),
                    ));
                }
                Some(_) => {}
                None => {
                    self.leaders.insert(term, id);
                }
            }
            if view.leader_term == Some(term) {
                if core.last_index() < view.last_index
                    || core.term_at(view.last_index) != Some(view.last_term)
                {
                    return Err(violation(
                        Property::LeaderAppendOnly,
                        format!(
                            "leader {id:?} of {term:?} had {:?}/{:?}, now its log ends at {:?} \
                             with {:?} there",
                            view.last_index,
                            view.last_term,
                            core.last_index(),
                            core.term_at(view.last_index)
                        ),
                    ));
                }
            } else {
                self.check_leader_completeness(core)?;
            }
        }
        let commit = core.commit_index();
        // Entries before the base (the entry before the first one the log holds) were compacted
        // away or replaced by a leader's log start: only the base's term is still known.
        let base = core.first_index().prev();
        let mut index = view.commit_checked.next().max(base).max(LogIndex(1));
        while index <= commit {
            let Some(entry_term) = core.term_at(index) else {
                return Err(violation(
                    Property::CoreInvariant,
                    format!("{id:?} committed {commit:?} beyond its log"),
                ));
            };
            let offset = usize::try_from(index.get() - 1).expect("index fits");
            if offset > self.committed.len() {
                return Err(violation(
                    Property::StateMachineSafety,
                    format!(
                        "{id:?} committed {index:?}, but only {} entries were seen committed: its \
                         log starts after entries no replica committed",
                        self.committed.len()
                    ),
                ));
            }
            match self.committed.get(offset) {
                Some(committed) if committed.term != entry_term => {
                    return Err(violation(
                        Property::StateMachineSafety,
                        format!(
                            "{id:?} committed {index:?} with {entry_term:?}, but {:?} was \
                             committed there (in {:?})",
                            committed.term, committed.commit_term
                        ),
                    ));
                }
                Some(_) => {}
                None => self.committed.push(CommittedEntry { term: entry_term, commit_term: term }),
            }
            index = index.next();
        }
        let view = &mut self.views[position];
        view.commit_checked = view.commit_checked.max(commit);
        if core.role() == Role::Leader {
            view.leader_term = Some(term);
            view.last_index = core.last_index();
            view.last_term = core.last_term();
        } else {
            view.leader_term = None;
        }
        Ok(())
    }

    fn check_leader_completeness(&self, core: &RaftCore) -> Result<(), Violation> {
        let term = core.term();
        // With Log Matching, holding the last entry committed below `term` implies holding the
        // whole prefix before it.
        let Some(offset) = self.committed.iter().rposition(|entry| entry.commit_term < term) else {
            return Ok(());
        };
        let index = LogIndex(offset as u64 + 1);
        let expected = self.committed[offset];
        if index < core.first_index().prev() {
            // The leader's log starts after it: it compacted the entry away, or a leader told it
            // to start there; either way the entry was committed when it went, and the base's
            // term, checked when it was committed, ties the rest to it.
            return Ok(());
        }
        if core.term_at(index) != Some(expected.term) {
            return Err(violation(
                Property::LeaderCompleteness,
                format!(
                    "{:?} leads {term:?} with {:?} at {index:?}, but {:?} was committed there in \
                     {:?}",
                    core.id(),
                    core.term_at(index),
                    expected.term,
                    expected.commit_term
                ),
            ));
        }
        Ok(())
    }

    /// Property 6 when a replica acknowledges `proposal` to its client.
    pub fn on_acknowledged(
        &mut self,
        proposal: &PendingProposal,
        replicas: &[Replica],
    ) -> Result<(), Violation> {
        let proposed = proposal.proposed;
        let mut index = proposed.first_index;
        for hash in &proposal.hashes {
            let offset = usize::try_from(index.get() - 1).expect("index fits");
            match self.committed.get(offset) {
                Some(committed) if committed.term == proposed.term => {}
                other => {
                    return Err(violation(
                        Property::AcknowledgedDurability,
                        format!(
                            "proposal {} acknowledged at {index:?}/{:?} but the committed log has \
                             {:?} there",
                            proposal.tag,
                            proposed.term,
                            other.map(|entry| entry.term)
                        ),
                    ));
                }
            }
            let stored = self.entries.get(&(index.get(), proposed.term.get())).map(|seen| seen.0);
            if stored != Some(*hash) {
                return Err(violation(
                    Property::AcknowledgedDurability,
                    format!("proposal {} acknowledged at {index:?} holds other data", proposal.tag),
                ));
            }
            index = index.next();
        }
        let acknowledged = Acknowledged {
            first: proposed.first_index,
            last: proposed.last_index,
            term: proposed.term,
            hashes: proposal.hashes.clone(),
        };
        self.check_durable(&acknowledged, proposed.first_index, replicas, "when acknowledged")?;
        self.acknowledged.push(acknowledged);
        self.max_acknowledged = self.max_acknowledged.max(proposed.last_index);
        Ok(())
    }

    /// Property 6 again when a replica's durable log lost entries from `from` on.
    pub fn on_durable_loss(&self, from: LogIndex, replicas: &[Replica]) -> Result<(), Violation> {
        for acknowledged in &self.acknowledged {
            if acknowledged.last >= from {
                self.check_durable(acknowledged, from, replicas, "after a durable overwrite")?;
            }
        }
        Ok(())
    }

    fn check_durable(
        &self,
        acknowledged: &Acknowledged,
        from: LogIndex,
        replicas: &[Replica],
        when: &str,
    ) -> Result<(), Violation> {
        let mut index = acknowledged.first.max(from);
        while index <= acknowledged.last {
            let offset = usize::try_from(index.distance_from(acknowledged.first.prev()) - 1)
                .expect("a proposal's size fits in memory");
            let expected =
                DurableEntry { term: acknowledged.term, hash: acknowledged.hashes[offset] };
            // A replica whose durable log starts after the entry compacted it away (only
            // committed entries go, and the committed log's terms are checked) or was told by a
            // leader to start after it: it held the entry as long as the log needed it.
            // A replica that lost its durable state and has not rejoined yet counts as a holder:
            // the loss is a failure outside Raft's model, which the rejoin protocol repairs
            // (it catches up past every committed entry before it votes), and when it has
            // rejoined every acknowledged entry is checked again without this allowance.
            let holders = replicas
                .iter()
                .filter(|replica| {
                    let image = replica.store().durable();
                    replica.rejoining()
                        || image.entry(index) == Some(expected)
                        || index < image.first_index()
                })
                .count();
            if holders < self.majority {
                return Err(violation(
                    Property::AcknowledgedDurability,
                    format!(
                        "acknowledged entry {index:?}/{:?} is durable on {holders} replicas {when}, \
                         a majority is {}",
                        acknowledged.term, self.majority
                    ),
                ));
            }
            index = index.next();
        }
        Ok(())
    }

    /// Property 7: a read started when `acknowledged_at_start` was the highest acknowledged
    /// index was answered with `read_index`.
    pub fn check_read(
        &self,
        replica: NodeId,
        request_id: u64,
        acknowledged_at_start: LogIndex,
        read_index: LogIndex,
    ) -> Result<(), Violation> {
        if read_index < acknowledged_at_start {
            return Err(violation(
                Property::LinearizableRead,
                format!(
                    "read {request_id} at {replica:?} got read index {read_index:?}, but \
                     {acknowledged_at_start:?} was acknowledged before it started"
                ),
            ));
        }
        Ok(())
    }

    /// Property 9 for a message `sender` puts on the network.
    pub fn on_send(&mut self, sender: &Replica, message: &Message) -> Result<(), Violation> {
        let image = sender.store().durable();
        let durable = image.hard_state();
        let term = message.term;
        let broken = |what: String| {
            Err(violation(
                Property::PersistBeforeSend,
                format!(
                    "{:?} sent {} {term:?} to {:?} but {what} (durable hard state {durable:?})",
                    message.from,
                    message.kind_name(),
                    message.to
                ),
            ))
        };
        match &message.body {
            MessageBody::RequestVote(request)
                if !request.pre_vote
                    && (durable.term < term
                        || (durable.term == term && durable.vote != Some(message.from))) =>
            {
                return broken("its own vote is not durable".to_string());
            }
            MessageBody::RequestVoteResponse(response)
                if !response.pre_vote && response.granted =>
            {
                if durable.term < term || (durable.term == term && durable.vote != Some(message.to))
                {
                    return broken("the vote it grants is not durable".to_string());
                }
                let key = (message.from.get(), term.get());
                match self.votes.get(&key) {
                    Some(candidate) if *candidate != message.to => {
                        return Err(violation(
                            Property::ElectionSafety,
                            format!(
                                "{:?} granted its {term:?} vote to {:?} and to {candidate:?}",
                                message.from, message.to
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.votes.insert(key, message.to);
                    }
                }
            }
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { match_index }) => {
                let in_log = sender.core().and_then(|core| core.term_at(*match_index));
                let on_disk = image.term(*match_index);
                // Below the durable log's base the entry was compacted away (or replaced by a
                // log start): it is committed, so it matches the leader's.
                let compacted = match_index.next() < image.first_index();
                // Below the base of the core's log the entry is committed too: the answer was
                // queued while the core held it, and a log start stepped before the drain
                // replaced the core's log (not the disk yet) with one starting after it. The
                // disk must still hold it.
                let below_core_base = in_log.is_none()
                    && sender.core().is_some_and(|core| match_index.next() < core.first_index());
                let in_log = if below_core_base { on_disk } else { in_log };
                if !compacted && (on_disk.is_none() || on_disk != in_log) {
                    return broken(format!(
                        "it acknowledges {match_index:?}, which its durable log holds as \
                         {on_disk:?} and its log as {in_log:?}"
                    ));
                }
            }
            MessageBody::AppendEntries(_)
            | MessageBody::LogStart(_)
            | MessageBody::Heartbeat(_)
            | MessageBody::TimeoutNow
                if durable.term < term =>
            {
                return broken("its term as leader is not durable".to_string());
            }
            MessageBody::ReadIndexResponse(response)
                if response.read_index.is_some() && durable.term < term =>
            {
                return broken("its term as leader is not durable".to_string());
            }
            _ => {}
        }
        Ok(())
    }

    /// Property 10 over the whole cluster.
    pub fn check_committed_protected(&self, replicas: &[Replica]) -> Result<(), Violation> {
        let Some(last) = self.committed.last() else {
            return Ok(());
        };
        let index = LogIndex(self.committed.len() as u64);
        let term = last.term;
        // Positions compare as (last term, last index): the election restriction's order.
        let mut refusers: Vec<(Term, LogIndex)> = Vec::with_capacity(replicas.len());
        let mut threats: Vec<(NodeId, (Term, LogIndex))> = Vec::new();
        for replica in replicas {
            if replica.rejoining() {
                // It refuses every vote and never campaigns until it holds every committed
                // entry (module `rejoin` of the core).
                refusers.push((Term(u64::MAX), LogIndex(u64::MAX)));
                continue;
            }
            let image = replica.store().durable();
            let durable_last = image.last_index();
            let durable_position = (image.term(durable_last).unwrap_or(Term::ZERO), durable_last);
            let durable_holds = image.term(index) == Some(term);
            // A replica that is down holds what its disk holds durably.
            let (written_holds, written_position) = match replica.core() {
                Some(core) => {
                    (core.term_at(index) == Some(term), (core.last_term(), core.last_index()))
                }
                None => (durable_holds, durable_position),
            };
            if written_holds && durable_holds {
                refusers.push(written_position.min(durable_position));
            }
            if !written_holds {
                threats.push((replica.id(), written_position.max(durable_position)));
            } else if !durable_holds {
                // Holds it in memory only: after a crash it would campaign without it.
                threats.push((replica.id(), durable_position));
            }
        }
        let needed = replicas.len() - self.majority + 1;
        for (threat, position) in threats {
            let refusing = refusers.iter().filter(|refuser| **refuser > position).count();
            if refusing < needed {
                return Err(violation(
                    Property::LeaderCompleteness,
                    format!(
                        "committed entry {index:?}/{term:?} is not protected: {threat:?} lacks it \
                         with a log ending at {:?}/{:?}, and only {refusing} replicas would refuse \
                         it their vote ({needed} must)",
                        position.1, position.0
                    ),
                ));
            }
        }
        Ok(())
    }
}
