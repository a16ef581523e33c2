//! A small DSL for hand-written scenario tests of the consensus core.
//!
//! Owns: [`Cluster`], a cluster whose every step the test decides: which replica ticks, which
//! messages are delivered, dropped, reordered or duplicated, when fsyncs complete, which links
//! are cut, who crashes and restarts.
//! Must not: let anything happen that the test did not ask for (no timers, no randomness); skip
//! the safety checker: every step runs [`crate::checker::Checker`] (all ten properties) and
//! panics on a violation, so each scenario also proves the properties along its path.
//! Invariants:
//! 1. Messages wait on the wire in send order until delivered, dropped or taken.
//! 2. With `auto_sync` on (the default), each replica's writes become durable as soon as they
//!    are handed out; with it off, they wait for [`Cluster::sync`].
//! 3. Replicas run the real log store on their own simulated disks, like the simulator's, and
//!    save every change of the commit index (so restarts exercise the persisted commit index).
//!
//! ```
//! use raftwal_tests::scenario::Cluster;
//! use raftwal::raft::Role;
//!
//! let mut cluster = Cluster::new(3);
//! cluster.elect(1);
//! let proposed = cluster.propose(1, &["a", "b"]).expect("1 leads");
//! cluster.settle();
//! assert_eq!(cluster.role(1), Role::Leader);
//! assert_eq!(cluster.commit(1), proposed.last_index);
//! ```

use crate::checker::Checker;
use crate::replica::{CommitPersistence, Down, DriverOrder, Replica};
use crate::store::SimStore;
use bytes::Bytes;
use raftwal::raft::{Config, ProposeError, Proposed, RaftCore, ReadState, Role};
use raftwal::storage::{LogOptions, Tear, ZeroFill};
use raftwal_wire::message::Message;
use raftwal_wire::types::{Entry, EntryKind, HardState, LogId, LogIndex, NodeId, Term};
use std::collections::BTreeSet;

pub mod filter;
mod network;
mod time;

/// The log id every scenario cluster uses.
pub const SCENARIO_LOG: LogId = LogId(1);

/// The log store settings of every scenario replica: small segments, so a few dozen entries
/// already roll over to a new one.
pub const SCENARIO_LOG_OPTIONS: LogOptions = LogOptions {
    segment_size_bytes: 16 << 10,
    direct_io: true,
    batch_bytes_max: 8 << 20,
    tail_cache_bytes_max: 16 << 20,
    write_chunk_bytes: 512 << 10,
    write_chunk_first_bytes: 128 << 10,
    cluster_id: raftwal_wire::types::ClusterId(0),
    log_id: SCENARIO_LOG,
    zero_fill: ZeroFill::BatchBytesBelow(1 << 20),
    zero_chunk_bytes: 4 << 10,
    batches_in_flight_max: 1,
    // Compacted segments are kept for reuse, as the node does.
    recycled_segments_max: 2,
    // Sealed segments open from their index files, as the node's do.
    check_sealed_at_open: false,
    sealed_segments_mapped_max: 16,
};

/// A cluster under a test's complete control.
#[derive(Debug)]
pub struct Cluster {
    replicas: Vec<Replica>,
    configs: Vec<Config>,
    wire: Vec<Message>,
    blocked: BTreeSet<(u64, u64)>,
    checker: Checker,
    auto_sync: bool,
    next_request_id: u64,
    next_tag: u64,
    read_states: Vec<(u64, ReadState)>,
    acknowledged: Vec<(u64, Proposed)>,
    sent_log: Vec<Message>,
}

/// Shorthand for a replica's id.
pub fn id(node: u64) -> NodeId {
    NodeId(node)
}

/// The payload of entry `index` of term `term` in logs built by [`Cluster::with_logs`].
pub fn scripted_payload(index: u64, term: u64) -> Bytes {
    Bytes::from(format!("{index}/{term}"))
}

impl Cluster {
    /// `size` replicas with ids 1..=size, empty logs, default configuration (election timeout
    /// 10 ticks, heartbeat every tick, PreVote and CheckQuorum on).
    pub fn new(size: u64) -> Cluster {
        Cluster::with(size, |_| {})
    }

    /// Like [`Cluster::new`], with `configure` applied to every replica's configuration.
    pub fn with(size: u64, configure: impl Fn(&mut Config)) -> Cluster {
        let logs: Vec<Vec<u64>> = vec![Vec::new(); size as usize];
        Cluster::with_logs(&logs, configure)
    }

    /// Replicas whose durable logs hold entries of the given terms (replica `k + 1` gets
    /// `logs[k]`; entry `i` gets payload [`scripted_payload`]), each with a hard state at its
    /// last entry's term, and no vote.
    pub fn with_logs(logs: &[Vec<u64>], configure: impl Fn(&mut Config)) -> Cluster {
        Cluster::with_logs_in_term(logs, 0, configure)
    }

    /// Like [`Cluster::with_logs`], with every hard state at least at term `term` (so the
    /// replicas know of a term later than their logs show, as in the paper's figures).
    pub fn with_logs_in_term(
        logs: &[Vec<u64>],
        term: u64,
        configure: impl Fn(&mut Config),
    ) -> Cluster {
        let voters: Vec<NodeId> = (1..=logs.len() as u64).map(NodeId).collect();
        let mut replicas = Vec::new();
        let mut configs = Vec::new();
        for (position, terms) in logs.iter().enumerate() {
            let node = NodeId(position as u64 + 1);
            let mut config = Config::new(node, SCENARIO_LOG, voters.clone());
            config.timeout_seed = node.get();
            configure(&mut config);
            let entries: Vec<Entry> = terms
                .iter()
                .enumerate()
                .map(|(offset, term)| Entry {
                    index: LogIndex(offset as u64 + 1),
                    term: Term(*term),
                    kind: EntryKind::Normal,
                    data: scripted_payload(offset as u64 + 1, *term),
                })
                .collect();
            let hard_state = HardState {
                term: Term(terms.last().copied().unwrap_or(0).max(term)),
                vote: None,
                commit: LogIndex::ZERO,
            };
            let store = SimStore::with_durable(SCENARIO_LOG_OPTIONS, hard_state, &entries);
            // The group writer: nothing a replica writes is durable until the test lets its disk
            // complete it (`sync`), which the scenarios about persist-before-send need.
            let replica = Replica::start(
                config.clone(),
                store,
                Vec::new(),
                DriverOrder::Groups,
                CommitPersistence::EveryChange,
            )
            .unwrap_or_else(|violation| panic!("scenario replicas start: {violation}"));
            replicas.push(replica);
            configs.push(config);
        }
        Cluster {
            checker: Checker::new(replicas.len()),
            replicas,
            configs,
            wire: Vec::new(),
            blocked: BTreeSet::new(),
            auto_sync: true,
            next_request_id: 0,
            next_tag: 0,
            read_states: Vec::new(),
            acknowledged: Vec::new(),
            sent_log: Vec::new(),
        }
    }

    fn position(node: u64) -> usize {
        usize::try_from(node).expect("small ids") - 1
    }

    fn replica(&self, node: u64) -> &Replica {
        &self.replicas[Cluster::position(node)]
    }

    /// The core of `node` (which must be up).
    pub fn core(&self, node: u64) -> &RaftCore {
        self.replica(node).core().expect("the replica is up")
    }

    /// The core of `node`, mutably (changes are drained and checked by the next step).
    pub fn core_mut(&mut self, node: u64) -> &mut RaftCore {
        self.replicas[Cluster::position(node)].core_mut().expect("the replica is up")
    }

    /// The store of `node`.
    pub fn store(&self, node: u64) -> &SimStore {
        self.replica(node).store()
    }

    /// The configuration `node` was started with.
    pub fn config(&self, node: u64) -> &Config {
        &self.configs[Cluster::position(node)]
    }

    /// `node`'s role.
    pub fn role(&self, node: u64) -> Role {
        self.core(node).role()
    }

    /// `node`'s term, as a number.
    pub fn term(&self, node: u64) -> u64 {
        self.core(node).term().get()
    }

    /// The leader `node` knows of, as a number.
    pub fn leader_of(&self, node: u64) -> Option<u64> {
        self.core(node).leader().map(NodeId::get)
    }

    /// `node`'s commit index.
    pub fn commit(&self, node: u64) -> LogIndex {
        self.core(node).commit_index()
    }

    /// The terms of `node`'s log, entry by entry.
    pub fn log_terms(&self, node: u64) -> Vec<u64> {
        let core = self.core(node);
        (1..=core.last_index().get())
            .map(|index| core.term_at(LogIndex(index)).expect("within the log").get())
            .collect()
    }

    /// The terms of `node`'s durable log (as its disk holds it), entry by entry.
    pub fn durable_log_terms(&self, node: u64) -> Vec<u64> {
        let image = self.store(node).durable();
        (1..=image.last_index().get())
            .map(|index| image.term(LogIndex(index)).expect("within the log").get())
            .collect()
    }

    /// Turns automatic fsync completion on or off (invariant 2).
    pub fn set_auto_sync(&mut self, on: bool) -> &mut Cluster {
        self.auto_sync = on;
        self
    }

    /// Drains `node`, handles its writes (durable at once under `auto_sync`) and runs the
    /// checker. Call after changing a core through [`Cluster::core_mut`].
    pub fn step(&mut self, node: u64) -> &mut Cluster {
        let position = Cluster::position(node);
        loop {
            self.drain(position);
            if !self.auto_sync || !self.finish_group(position) {
                break;
            }
        }
        self.check(position);
        self
    }

    fn drain(&mut self, position: usize) {
        let drained = match self.replicas[position].drain() {
            Ok(drained) => drained,
            Err(down) => return self.handle_down(position, down),
        };
        self.after_disk(position);
        if !drained.entries.is_empty() {
            if let Err(violation) = self.checker.on_entries(
                NodeId(position as u64 + 1),
                drained.prev_term,
                &drained.entries,
            ) {
                panic!("{violation}");
            }
        }
        for message in drained.send {
            self.put_on_wire(message);
        }
        if !drained.resolved.is_empty() {
            self.check(position);
        }
        for (proposal, acknowledged) in drained.resolved {
            if acknowledged {
                if let Err(violation) = self.checker.on_acknowledged(&proposal, &self.replicas) {
                    panic!("{violation}");
                }
                self.acknowledged.push((position as u64 + 1, proposal.proposed));
            }
        }
        for read_state in drained.read_states {
            self.read_states.push((position as u64 + 1, read_state));
        }
    }

    /// A replica stopped in the middle of a disk operation: it goes down as a crashed one does
    /// (a poisoned log, a crash fired inside the operation); a broken storage promise fails the
    /// test.
    fn handle_down(&mut self, position: usize, down: Down) {
        match down {
            Down::Broken(violation) => panic!("{violation}"),
            Down::Crashed | Down::Poisoned(_) => {
                self.crash(position as u64 + 1);
            }
        }
    }

    /// After a replica's disk may have changed: reads its durable image again (checking the
    /// acknowledged entries if a truncation removed durable ones) and the log store's invariants.
    fn after_disk(&mut self, position: usize) {
        if !self.replicas[position].is_up() {
            return;
        }
        match self.replicas[position].store_mut().refresh() {
            Ok(Some(from)) => {
                if let Err(violation) = self.checker.on_durable_loss(from, &self.replicas) {
                    panic!("{violation}");
                }
            }
            Ok(None) => {}
            Err(error) => panic!("n{}: {error}", position + 1),
        }
        if let Err(detail) = self.replicas[position].store_mut().check_log_invariants() {
            panic!("n{}: {detail}", position + 1);
        }
    }

    /// Runs one writer operation of `position` and handles its outcome: the released messages go
    /// on the wire. Returns false when the replica went down.
    fn writer_op(
        &mut self,
        position: usize,
        op: impl FnOnce(&mut Replica) -> Result<Vec<Message>, Down>,
    ) -> bool {
        match op(&mut self.replicas[position]) {
            Ok(released) => {
                self.after_disk(position);
                for message in released {
                    self.put_on_wire(message);
                }
                true
            }
            Err(down) => {
                self.handle_down(position, down);
                false
            }
        }
    }

    /// Runs `position`'s writer until its group (started first if writes wait) is durable and
    /// releases its messages. Returns false when there was nothing to write, the disk is full,
    /// or the replica went down.
    fn finish_group(&mut self, position: usize) -> bool {
        if !self.replicas[position].needs_disk_step() {
            if !self.replicas[position].has_pending_writes() {
                return false;
            }
            if !self.writer_op(position, Replica::start_writes) {
                return false;
            }
            if !self.replicas[position].needs_disk_step() {
                return true;
            }
        }
        loop {
            if !self.writer_op(position, |replica| replica.disk_step(usize::MAX)) {
                return false;
            }
            let replica = &self.replicas[position];
            if !replica.needs_disk_step() {
                return true;
            }
            if replica.disk_blocked() {
                return false;
            }
        }
    }

    /// Starts `position`'s next group, if writes wait, up to the point where its first batch
    /// is queued on the disk: the hard state is saved and the entries are in the store, none
    /// of them durable yet.
    fn begin_group(&mut self, position: usize) {
        if !self.replicas[position].needs_disk_step()
            && !self.writer_op(position, Replica::start_writes)
        {
            return;
        }
        loop {
            let replica = &self.replicas[position];
            // A batch on the disk ends the beginning; background ops queued alone (zeros, the
            // next segment's preparation) do not: the group still has to submit its batch.
            let batch_in_flight = replica.store().log().is_some_and(|log| log.has_in_flight());
            if !replica.needs_disk_step() || batch_in_flight || replica.disk_blocked() {
                return;
            }
            if !self.writer_op(position, |replica| replica.disk_step(usize::MAX)) {
                return;
            }
        }
    }

    fn put_on_wire(&mut self, message: Message) {
        let from = Cluster::position(message.from.get());
        if let Err(violation) = self.checker.on_send(&self.replicas[from], &message) {
            panic!("{violation}");
        }
        self.sent_log.push(message.clone());
        self.wire.push(message);
    }

    fn check(&mut self, position: usize) {
        if let Some(core) = self.replicas[position].core() {
            if let Err(violation) = self.checker.after_step(position, core) {
                panic!("{violation}");
            }
        }
        if let Err(violation) = self.checker.check_committed_protected(&self.replicas) {
            panic!("{violation}");
        }
    }

    /// Completes `node`'s writer group in progress (starting one first if writes wait),
    /// releasing the messages that waited for it, then starts the next one
    /// ([`Cluster::begin_sync`]).
    pub fn sync(&mut self, node: u64) -> &mut Cluster {
        let position = Cluster::position(node);
        if self.finish_group(position) {
            self.drain(position);
        }
        if self.replicas[position].is_up() {
            self.begin_group(position);
        }
        self.check(position);
        self
    }

    /// Starts `node`'s writer group over its queued writes without completing it: its hard state
    /// is saved and its entries are in the store, whose batch waits on the disk (not durable).
    pub fn begin_sync(&mut self, node: u64) -> &mut Cluster {
        let position = Cluster::position(node);
        self.begin_group(position);
        self
    }

    /// Completes every replica's pending writes.
    pub fn sync_all(&mut self) -> &mut Cluster {
        for node in 1..=self.replicas.len() as u64 {
            while self.replica(node).is_up() && self.replica(node).has_pending_writes() {
                self.sync(node);
                if self.replica(node).disk_blocked() {
                    break;
                }
            }
        }
        self
    }

    /// The replica that leads the highest term among those up, if any.
    pub fn leader(&self) -> Option<u64> {
        (1..=self.replicas.len() as u64)
            .filter(|node| {
                self.replica(*node).core().is_some_and(|core| core.role() == Role::Leader)
            })
            .max_by_key(|node| self.term(*node))
    }

    /// Whether `node` is up.
    pub fn is_up(&self, node: u64) -> bool {
        self.replica(node).is_up()
    }

    /// Crashes `node`: only what its disk holds durably survives.
    pub fn crash(&mut self, node: u64) -> &mut Cluster {
        self.crash_with(node, Tear::None)
    }

    /// Crashes `node` while its last unsynced write is torn: a prefix of its sectors (chosen by
    /// `seed`) reached the disk.
    pub fn crash_tearing(&mut self, node: u64, seed: u64) -> &mut Cluster {
        self.crash_with(node, Tear::LastWrite { seed })
    }

    /// Crashes `node` in the middle of its batch on the disk (see [`Cluster::begin_sync`]): the
    /// batch's write ran but not its fdatasync, and the write is torn, keeping a prefix of its
    /// sectors chosen by `seed`.
    pub fn crash_mid_batch(&mut self, node: u64, seed: u64) -> &mut Cluster {
        let store = self.replicas[Cluster::position(node)].store();
        // Background ops queued ahead of the batch (zeros, the next segment's preparation)
        // complete first, so that the crash strikes the batch itself.
        while store.disk().next_pending_is_background() {
            store.disk().run_pending(1);
        }
        assert!(store.disk().pending_ops() > 0, "n{node} has a batch on its disk");
        store.run_into_crash(1);
        self.crash_tearing(node, seed)
    }

    fn crash_with(&mut self, node: u64, tear: Tear) -> &mut Cluster {
        let position = Cluster::position(node);
        match self.replicas[position].crash(tear) {
            Ok(Some(from)) => {
                if let Err(violation) = self.checker.on_durable_loss(from, &self.replicas) {
                    panic!("{violation}");
                }
            }
            Ok(None) => {}
            Err(error) => panic!("n{node}: {error}"),
        }
        self.wire.retain(|message| message.from.get() != node);
        self
    }

    /// Makes `node`'s next fdatasync fail.
    pub fn fail_next_sync(&mut self, node: u64) -> &mut Cluster {
        self.replicas[Cluster::position(node)].store().fail_next_sync();
        self
    }

    /// Fills `node`'s disk: its files may grow by `slack_bytes` at most (`None` frees it).
    pub fn fill_disk(&mut self, node: u64, slack_bytes: Option<u64>) -> &mut Cluster {
        self.replicas[Cluster::position(node)].store_mut().set_full(slack_bytes);
        self
    }

    /// Compacts `node`'s log before `before` (as `Log::compact`: whole segments of committed,
    /// durable entries); returns its first index afterwards.
    pub fn compact(&mut self, node: u64, before: LogIndex) -> LogIndex {
        let position = Cluster::position(node);
        let first = match self.replicas[position].compact(before) {
            Ok(first) => first,
            Err(down) => panic!("n{node} compacts: {down:?}"),
        };
        self.after_disk(position);
        self.step(node);
        first
    }

    /// Restarts `node` from its durable state.
    pub fn restart(&mut self, node: u64) -> &mut Cluster {
        let position = Cluster::position(node);
        if let Err(violation) = self.replicas[position].restart(node) {
            panic!("n{node} restarts from its disk: {violation}");
        }
        self.checker.on_restart(position);
        self.step(node)
    }

    /// Proposes the payloads at `node`.
    pub fn propose(&mut self, node: u64, payloads: &[&str]) -> Result<Proposed, ProposeError> {
        self.next_tag += 1;
        let payloads: Vec<Bytes> =
            payloads.iter().map(|payload| Bytes::copy_from_slice(payload.as_bytes())).collect();
        let position = Cluster::position(node);
        let result = self.replicas[position].propose(&payloads, self.next_tag);
        if result.is_ok() {
            self.step(node);
        }
        result
    }

    /// Starts a read at `node`; returns the request id.
    pub fn read_index(&mut self, node: u64) -> u64 {
        self.next_request_id += 1;
        let request_id = self.next_request_id;
        self.core_mut(node).read_index(request_id).expect("a leader is known");
        self.step(node);
        request_id
    }

    /// The answer to read `request_id`, once it arrived.
    pub fn read_answer(&self, request_id: u64) -> Option<(u64, ReadState)> {
        self.read_states.iter().find(|(_, state)| state.request_id == request_id).copied()
    }

    /// Proposals acknowledged so far: `(replica, where they went)`.
    pub fn acknowledged(&self) -> &[(u64, Proposed)] {
        &self.acknowledged
    }
}
