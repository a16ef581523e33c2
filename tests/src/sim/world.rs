//! The simulated world: virtual time, the event queue, the network, the replicas, the clients
//! and the fault injector, with the checker consulted after every step.
//!
//! Owns: [`World`] and its event loop.
//! Must not: let anything but the run's seed influence it (no clock, no hash-order iteration,
//! no threads); skip the checker after a step that touched a replica.
//! Invariants:
//! 1. Events run in `(time, sequence)` order; the sequence breaks ties in scheduling order.
//! 2. A replica's events from before a crash (disk steps, restarts) are ignored after it
//!    (`epochs`).
//! 3. A message crosses a link only if the link is open both when it is sent and when it
//!    arrives.

use super::profile::{Profile, TICK_US};
use super::trace::{Trace, TraceEvent};
use super::{Failure, PlantedBug, RunSummary, SimOptions};
use crate::checker::{Checker, Property, Violation};
use crate::replica::Replica;
use crate::rng::SimRng;
use crate::store::SimStore;
use raftwal::raft::{Config, Role};
use raftwal_wire::message::Message;
use raftwal_wire::types::{LogId, LogIndex, NodeId, Term};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Debug)]
pub(super) enum Event {
    Tick(usize),
    /// A message arrives; it was sent at the given virtual time.
    Deliver(Message, u64),
    Drain(usize),
    /// The disk of `node` had time for the next operation of its writer's group.
    DiskStep {
        node: usize,
        epoch: u64,
    },
    Propose(usize),
    Read(usize),
    Chaos,
    Restart {
        node: usize,
        epoch: u64,
    },
    EndOfFaults,
    LivenessDeadline,
}

#[derive(Debug)]
pub(super) struct Scheduled {
    at: u64,
    sequence: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Scheduled) -> bool {
        (self.at, self.sequence) == (other.at, other.sequence)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Scheduled) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    // Reversed: `BinaryHeap` is a max-heap and the earliest event must come out first.
    fn cmp(&self, other: &Scheduled) -> Ordering {
        (other.at, other.sequence).cmp(&(self.at, self.sequence))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Faults,
    /// Everything healed at `healed_at`; a proposal above `baseline` must be acknowledged.
    Liveness {
        healed_at: u64,
        baseline: LogIndex,
    },
}

/// What the world last saw of a replica, to trace changes only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Seen {
    role: Role,
    term: Term,
    leader: Option<NodeId>,
    commit: LogIndex,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct PendingRead {
    pub(super) node: usize,
    pub(super) request_id: u64,
    pub(super) acknowledged_at_start: LogIndex,
}

pub(super) struct World {
    pub(super) options: SimOptions,
    pub(super) profile: Profile,
    pub(super) rng: SimRng,
    pub(super) now: u64,
    pub(super) sequence: u64,
    pub(super) queue: BinaryHeap<Scheduled>,
    pub(super) replicas: Vec<Replica>,
    pub(super) epochs: Vec<u64>,
    pub(super) drain_scheduled: Vec<bool>,
    /// A `DiskStep` is scheduled for the replica's current epoch.
    pub(super) disk_step_scheduled: Vec<bool>,
    pub(super) seen: Vec<Option<Seen>>,
    /// `blocked[from * n + to]`: the link from `from` to `to` is cut.
    pub(super) blocked: Vec<bool>,
    pub(super) drop_per_million: u64,
    pub(super) duplicate_per_million: u64,
    pub(super) reorder_per_million: u64,
    /// `link_arrival[from * n + to]`: when the last in-order message on the link arrives.
    pub(super) link_arrival: Vec<u64>,
    pub(super) believed_leader: Vec<Option<usize>>,
    /// Proposals clients wait for: `(tag, client, deadline)`.
    pub(super) outstanding: Vec<(u64, usize, u64)>,
    pub(super) checker: Checker,
    pub(super) trace: Trace,
    pub(super) phase: Phase,
    pub(super) reads: Vec<PendingRead>,
    pub(super) next_tag: u64,
    pub(super) next_request_id: u64,
    pub(super) summary: RunSummary,
    pub(super) done: bool,
    /// A proposal made after the heal was acknowledged (the run ends once every wiped replica
    /// that is not the sick one has rejoined too).
    pub(super) recovered: bool,
    /// The replica that does not restart any more (it stays sick through the liveness phase).
    pub(super) stays_down: Option<usize>,
    /// A replica (not the one that stays sick) was still rejoining when the faults healed.
    pub(super) rejoining_at_heal: bool,
    /// When each replica's disk was last wiped (0: never): messages sent to it before then
    /// are not delivered to the new process.
    pub(super) wiped_at: Vec<u64>,
}

pub(super) fn id_of(position: usize) -> NodeId {
    NodeId(position as u64 + 1)
}

pub(super) fn position_of(id: NodeId) -> usize {
    usize::try_from(id.get() - 1).expect("simulated node ids are small")
}

impl World {
    pub(super) fn new(options: SimOptions) -> World {
        assert!(options.nodes >= 1, "a cluster has at least one replica");
        let mut rng = SimRng::new(options.seed);
        let mut profile = Profile::draw(&mut rng, options.nodes);
        profile.draw_pipelining(options.seed);
        profile.draw_wipes(options.seed);
        let voters: Vec<NodeId> = (0..options.nodes).map(id_of).collect();
        let bugs: Vec<_> = match options.bug {
            Some(PlantedBug::Core(bug)) => vec![bug],
            _ => Vec::new(),
        };
        let replicas = (0..options.nodes)
            .map(|position| {
                let mut config =
                    profile.config(Config::new(id_of(position), LogId(7), voters.clone()));
                config.timeout_seed = rng.fork();
                let mut store = SimStore::new(profile.log_options);
                if profile.disk_reorder {
                    store = store.with_disk_reorder(options.seed ^ position as u64);
                }
                if !options.lemma_checks {
                    store = store.without_recovery_check();
                }
                if options.bug == Some(PlantedBug::ReopenPoisonedLog) {
                    store.disk().set_keeps_stale_cache(true);
                }
                Replica::start(
                    config,
                    store,
                    bugs.clone(),
                    profile.driver_order,
                    profile.commit_persistence,
                )
                .expect("a fresh replica with a valid config starts on an empty disk")
            })
            .collect();
        let drop_per_million = rng.below(profile.drop_per_million_max + 1);
        let duplicate_per_million = rng.below(profile.duplicate_per_million_max + 1);
        let reorder_per_million = profile.reorder_per_million;
        let summary = RunSummary {
            pre_vote: profile.pre_vote,
            check_quorum: profile.check_quorum,
            ..RunSummary::default()
        };
        World {
            believed_leader: vec![None; profile.client_count],
            outstanding: Vec::new(),
            profile,
            rng,
            now: 0,
            sequence: 0,
            queue: BinaryHeap::new(),
            replicas,
            epochs: vec![0; options.nodes],
            drain_scheduled: vec![false; options.nodes],
            disk_step_scheduled: vec![false; options.nodes],
            seen: vec![None; options.nodes],
            blocked: vec![false; options.nodes * options.nodes],
            drop_per_million,
            duplicate_per_million,
            reorder_per_million,
            link_arrival: vec![0; options.nodes * options.nodes],
            checker: Checker::new(options.nodes),
            trace: Trace::new(options.trace_capacity),
            phase: Phase::Faults,
            reads: Vec::new(),
            next_tag: 0,
            next_request_id: 0,
            summary,
            done: false,
            recovered: false,
            stays_down: None,
            rejoining_at_heal: false,
            wiped_at: vec![0; options.nodes],
            options,
        }
    }

    pub(super) fn run(mut self) -> Result<RunSummary, Box<Failure>> {
        for node in 0..self.options.nodes {
            let offset = self.rng.below(TICK_US);
            self.schedule(offset, Event::Tick(node));
        }
        for client in 0..self.profile.client_count {
            let propose_at = self.rng.below(self.profile.propose_interval_max_us);
            self.schedule(propose_at, Event::Propose(client));
            let read_at = self.rng.below(self.profile.read_interval_max_us);
            self.schedule(read_at, Event::Read(client));
        }
        let chaos_at =
            self.rng.range(self.profile.chaos_interval_min_us, self.profile.chaos_interval_max_us);
        self.schedule(chaos_at, Event::Chaos);
        self.schedule(self.profile.fault_duration_us, Event::EndOfFaults);
        while let Some(scheduled) = self.queue.pop() {
            self.now = scheduled.at;
            self.summary.events += 1;
            let outcome = self.handle(scheduled.event).and_then(|()| {
                if self.options.lemma_checks {
                    self.checker.check_committed_protected(&self.replicas)
                } else {
                    Ok(())
                }
            });
            if let Err(violation) = outcome {
                return Err(self.failure(violation));
            }
            if self.done {
                break;
            }
            if self.summary.events > self.options.event_limit {
                let violation = Violation {
                    property: Property::Liveness,
                    detail: format!(
                        "the run did not finish within {} events",
                        self.options.event_limit
                    ),
                };
                return Err(self.failure(violation));
            }
        }
        self.summary.virtual_us = self.now;
        for replica in &self.replicas {
            let stats = replica.store().batch_stats();
            self.summary.batches += stats.batches;
            self.summary.batched_entries += stats.entries;
            self.summary.pipelined_batches += stats.pipelined_batches;
            self.summary.withdrawn_batches += stats.withdrawn_batches;
            self.summary.background_writes += stats.background_writes;
            self.summary.background_syncs += stats.background_syncs;
            self.summary.roll_overs_prepared += stats.roll_overs_prepared;
            self.summary.segments_created += stats.segments_created;
            self.summary.disk_full_refusals += replica.full_disk_refusals();
            self.summary.full_disk_holds += replica.full_disk_holds();
        }
        self.summary.committed = self.checker.committed_count();
        self.summary.leader_terms = self.checker.leader_terms() as u64;
        Ok(self.summary)
    }

    pub(super) fn schedule(&mut self, at: u64, event: Event) {
        self.sequence += 1;
        self.queue.push(Scheduled { at, sequence: self.sequence, event });
    }

    fn handle(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Tick(node) => {
                let drift = self.profile.tick_drift_per_million[node];
                let period = TICK_US + TICK_US * drift / 1_000_000;
                self.schedule(self.now + period, Event::Tick(node));
                if self.replicas[node].is_up() {
                    match self.replicas[node].tick() {
                        Ok(()) => self.after_input(node)?,
                        Err(down) => self.handle_down(node, down)?,
                    }
                }
            }
            Event::Deliver(message, sent_at) => self.deliver(message, sent_at)?,
            Event::Drain(node) => {
                self.drain_scheduled[node] = false;
                if self.replicas[node].is_up() {
                    self.drain_now(node)?;
                    self.check(node)?;
                }
            }
            Event::DiskStep { node, epoch } => {
                if epoch == self.epochs[node] {
                    self.disk_step_scheduled[node] = false;
                    if self.replicas[node].needs_disk_step() && self.disk_step(node)? {
                        // The core may have heard of durability: drain what that produced.
                        self.drain_now(node)?;
                        self.check(node)?;
                    }
                }
            }
            Event::Propose(client) => self.propose(client)?,
            Event::Read(client) => self.read(client)?,
            Event::Chaos => {
                if self.phase == Phase::Faults {
                    self.chaos()?;
                    let next = self.rng.range(
                        self.profile.chaos_interval_min_us,
                        self.profile.chaos_interval_max_us,
                    );
                    self.schedule(self.now + next, Event::Chaos);
                }
            }
            Event::Restart { node, epoch } => {
                if epoch == self.epochs[node] && !self.replicas[node].is_up() {
                    self.restart(node)?;
                }
            }
            Event::EndOfFaults => self.end_faults()?,
            Event::LivenessDeadline => {
                if let Phase::Liveness { healed_at, baseline } = self.phase {
                    if self.recovered {
                        let waiting = |waits: fn(&Replica) -> bool| -> Vec<NodeId> {
                            (0..self.options.nodes)
                                .filter(|node| waits(&self.replicas[*node]))
                                .map(id_of)
                                .collect()
                        };
                        return Err(Violation {
                            property: Property::Liveness,
                            detail: format!(
                                "commits resumed, but {:?} did not finish rejoining and {:?} \
                                 still held a write their full disk had refused, within {} \
                                 election timeouts after the faults healed at {} ms",
                                waiting(Replica::rejoining),
                                waiting(Replica::holds_ready),
                                self.liveness_timeouts(),
                                healed_at / 1000
                            ),
                        });
                    }
                    return Err(Violation {
                        property: Property::Liveness,
                        detail: format!(
                            "no proposal above {baseline:?} was acknowledged within {} election \
                             timeouts ({} ms) after the faults healed at {} ms",
                            self.liveness_timeouts(),
                            (self.now - healed_at) / 1000,
                            healed_at / 1000
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// After an input to a replica: drain it (or let the loop batch a few inputs first), then
    /// check.
    pub(super) fn after_input(&mut self, node: usize) -> Result<(), Violation> {
        if self.profile.drain_delay_max_us > 0 && self.rng.chance(300_000) {
            if !self.drain_scheduled[node] {
                self.drain_scheduled[node] = true;
                let delay = self.rng.range(1, self.profile.drain_delay_max_us);
                self.schedule(self.now + delay, Event::Drain(node));
            }
        } else {
            self.drain_now(node)?;
        }
        self.check(node)
    }

    pub(super) fn drain_now(&mut self, node: usize) -> Result<(), Violation> {
        // A drain can make more work for the core (a truncation that waited for the batch in
        // flight reports durability): drain until the core has nothing more to say.
        for _ in 0..16 {
            self.drain_once(node)?;
            let replica = &self.replicas[node];
            if replica.holds_ready() || !replica.core().is_some_and(|core| core.has_ready()) {
                break;
            }
        }
        self.start_writes(node)?;
        self.after_disk_activity(node)
    }

    fn drain_once(&mut self, node: usize) -> Result<(), Violation> {
        if !self.replicas[node].is_up() {
            return Ok(());
        }
        let held_before = self.replicas[node].holds_ready();
        let drained = match self.replicas[node].drain() {
            Ok(drained) => drained,
            Err(down) => return self.handle_down(node, down),
        };
        let held = self.replicas[node].holds_ready();
        if held != held_before {
            self.trace.record(self.now, TraceEvent::Held { node: id_of(node), held });
        }
        // The drain may have saved a hard state or truncated: the messages are judged against
        // the disk as it is now.
        self.refresh_durable(node)?;
        if !drained.entries.is_empty() {
            self.checker.on_entries(id_of(node), drained.prev_term, &drained.entries)?;
        }
        for message in drained.send {
            self.send(message)?;
        }
        if !drained.resolved.is_empty() {
            // The checker must know the new commits before it judges acknowledgements.
            self.check(node)?;
        }
        for (proposal, acknowledged) in drained.resolved {
            self.outstanding.retain(|(tag, _, _)| *tag != proposal.tag);
            if !acknowledged {
                continue;
            }
            self.checker.on_acknowledged(&proposal, &self.replicas)?;
            let proposed = proposal.proposed;
            self.summary.acknowledged += 1;
            self.trace.record(
                self.now,
                TraceEvent::Acknowledged {
                    node: id_of(node),
                    tag: proposal.tag,
                    first: proposed.first_index,
                    last: proposed.last_index,
                    term: proposed.term,
                },
            );
            if let Phase::Liveness { healed_at, baseline } = self.phase {
                if proposed.last_index > baseline && !self.recovered {
                    self.summary.recovery_us = self.now - healed_at;
                    self.recovered = true;
                }
            }
        }
        if drained.rejoined {
            self.summary.rejoins += 1;
            self.trace.record(self.now, TraceEvent::Rejoined { node: id_of(node) });
            // Caught up: every acknowledged entry is durable on a majority again, this replica
            // counted as what its disk holds.
            self.checker.on_durable_loss(LogIndex(1), &self.replicas)?;
        }
        // The liveness phase ends with a new commit, with every wiped replica rejoined (but the
        // one that stays sick) and with no replica holding a write its full disk refused (every
        // disk has room since the heal): both must happen within the same deadline.
        self.done = self.recovered
            && (0..self.options.nodes).all(|other| {
                let replica = &self.replicas[other];
                Some(other) == self.stays_down || !(replica.rejoining() || replica.holds_ready())
            });
        for read_state in drained.read_states {
            let Some(position) = self
                .reads
                .iter()
                .position(|read| read.node == node && read.request_id == read_state.request_id)
            else {
                continue;
            };
            let read = self.reads.swap_remove(position);
            self.trace.record(
                self.now,
                TraceEvent::ReadAnswer {
                    node: id_of(node),
                    request_id: read.request_id,
                    index: read_state.read_index,
                },
            );
            if let Some(read_index) = read_state.read_index {
                self.summary.reads_answered += 1;
                self.checker.check_read(
                    id_of(node),
                    read.request_id,
                    read.acknowledged_at_start,
                    read_index,
                )?;
            }
        }
        Ok(())
    }

    /// Runs the checker on a replica and traces its role and commit changes.
    pub(super) fn check(&mut self, node: usize) -> Result<(), Violation> {
        let Some(core) = self.replicas[node].core() else {
            return Ok(());
        };
        self.checker.after_step(node, core)?;
        let now_seen = Seen {
            role: core.role(),
            term: core.term(),
            leader: core.leader(),
            commit: core.commit_index(),
        };
        let before = self.seen[node];
        if before.is_none_or(|seen| {
            (seen.role, seen.term, seen.leader) != (now_seen.role, now_seen.term, now_seen.leader)
        }) {
            self.trace.record(
                self.now,
                TraceEvent::RoleChange {
                    node: id_of(node),
                    role: now_seen.role,
                    term: now_seen.term,
                    leader: now_seen.leader,
                },
            );
        }
        if before.is_none_or(|seen| seen.commit != now_seen.commit) {
            self.trace
                .record(self.now, TraceEvent::Commit { node: id_of(node), index: now_seen.commit });
        }
        self.seen[node] = Some(now_seen);
        Ok(())
    }
}
