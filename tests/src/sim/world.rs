//! The simulated world: virtual time, the event queue, the network, the replicas, the clients
//! and the fault injector, with the checker consulted after every step.
//!
//! Owns: [`World`] and its event loop.
//! Must not: let anything but the run's seed influence it (no clock, no hash-order iteration,
//! no threads); skip the checker after a step that touched a replica.
//! Invariants:
//! 1. Events run in `(time, sequence)` order; the sequence breaks ties in scheduling order.
//! 2. A replica's events from before a crash (fsync completions, restarts) are ignored after it
//!    (`epochs`).
//! 3. A message crosses a link only if the link is open both when it is sent and when it
//!    arrives.

use super::profile::{Profile, CLIENT_TIMEOUT_US, ELECTION_TIMEOUT_TICKS, TICK_US};
use super::trace::{MessageSummary, Trace, TraceEvent};
use super::{Failure, RunSummary, SimOptions};
use crate::checker::{Checker, Property, Violation};
use crate::replica::Replica;
use crate::rng::SimRng;
use crate::store::ModelStore;
use bytes::Bytes;
use raftwal::raft::{Config, ProposeError, Role};
use raftwal_wire::message::Message;
use raftwal_wire::types::{LogId, LogIndex, NodeId, Term};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt::Write;

#[derive(Debug)]
enum Event {
    Tick(usize),
    Deliver(Message),
    Drain(usize),
    SyncDone { node: usize, epoch: u64 },
    Propose(usize),
    Read(usize),
    Chaos,
    Restart { node: usize, epoch: u64 },
    EndOfFaults,
    LivenessDeadline,
}

#[derive(Debug)]
struct Scheduled {
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
enum Phase {
    Faults,
    /// Everything healed at `healed_at`; a proposal above `baseline` must be acknowledged.
    Liveness {
        healed_at: u64,
        baseline: LogIndex,
    },
}

/// What the world last saw of a replica, to trace changes only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    role: Role,
    term: Term,
    leader: Option<NodeId>,
    commit: LogIndex,
}

#[derive(Clone, Copy, Debug)]
struct PendingRead {
    node: usize,
    request_id: u64,
    acknowledged_at_start: LogIndex,
}

pub(super) struct World {
    options: SimOptions,
    profile: Profile,
    rng: SimRng,
    now: u64,
    sequence: u64,
    queue: BinaryHeap<Scheduled>,
    replicas: Vec<Replica>,
    epochs: Vec<u64>,
    drain_scheduled: Vec<bool>,
    seen: Vec<Option<Seen>>,
    /// `blocked[from * n + to]`: the link from `from` to `to` is cut.
    blocked: Vec<bool>,
    drop_per_million: u64,
    duplicate_per_million: u64,
    reorder_per_million: u64,
    /// `link_arrival[from * n + to]`: when the last in-order message on the link arrives.
    link_arrival: Vec<u64>,
    believed_leader: Vec<Option<usize>>,
    /// Proposals clients wait for: `(tag, client, deadline)`.
    outstanding: Vec<(u64, usize, u64)>,
    checker: Checker,
    trace: Trace,
    phase: Phase,
    reads: Vec<PendingRead>,
    next_tag: u64,
    next_request_id: u64,
    summary: RunSummary,
    done: bool,
}

fn id_of(position: usize) -> NodeId {
    NodeId(position as u64 + 1)
}

fn position_of(id: NodeId) -> usize {
    usize::try_from(id.get() - 1).expect("simulated node ids are small")
}

impl World {
    pub(super) fn new(options: SimOptions) -> World {
        assert!(options.nodes >= 1, "a cluster has at least one replica");
        let mut rng = SimRng::new(options.seed);
        let profile = Profile::draw(&mut rng, options.nodes);
        let voters: Vec<NodeId> = (0..options.nodes).map(id_of).collect();
        let bugs: Vec<_> = options.bug.into_iter().collect();
        let replicas = (0..options.nodes)
            .map(|position| {
                let mut config =
                    profile.config(Config::new(id_of(position), LogId(7), voters.clone()));
                config.timeout_seed = rng.fork();
                Replica::start(config, Box::new(ModelStore::new()), bugs.clone())
                    .expect("a fresh replica with a valid config starts")
            })
            .collect();
        let drop_per_million = rng.below(profile.drop_per_million_max + 1);
        let duplicate_per_million = rng.below(profile.duplicate_per_million_max + 1);
        let reorder_per_million = profile.reorder_per_million;
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
            summary: RunSummary::default(),
            done: false,
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
        self.summary.committed = self.checker.committed_count();
        self.summary.leader_terms = self.checker.leader_terms() as u64;
        Ok(self.summary)
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.sequence += 1;
        self.queue.push(Scheduled { at, sequence: self.sequence, event });
    }

    fn handle(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Tick(node) => {
                let drift = self.profile.tick_drift_per_million[node];
                let period = TICK_US + TICK_US * drift / 1_000_000;
                self.schedule(self.now + period, Event::Tick(node));
                if let Some(core) = self.replicas[node].core_mut() {
                    core.tick();
                    self.after_input(node)?;
                }
            }
            Event::Deliver(message) => self.deliver(message)?,
            Event::Drain(node) => {
                self.drain_scheduled[node] = false;
                if self.replicas[node].is_up() {
                    self.drain_now(node)?;
                    self.check(node)?;
                }
            }
            Event::SyncDone { node, epoch } => {
                if epoch == self.epochs[node] && self.replicas[node].is_up() {
                    let synced = self.replicas[node].finish_sync();
                    let durable_last = self.replicas[node].store().durable_last_index();
                    self.trace.record(
                        self.now,
                        TraceEvent::Durable {
                            node: id_of(node),
                            index: durable_last,
                            lost_from: synced.durable_lost_from,
                        },
                    );
                    if let Some(from) = synced.durable_lost_from {
                        self.checker.on_durable_loss(from, &self.replicas)?;
                    }
                    for message in synced.send {
                        self.send(message)?;
                    }
                    self.drain_now(node)?;
                    self.check(node)?;
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
                    return Err(Violation {
                        property: Property::Liveness,
                        detail: format!(
                            "no proposal above {baseline:?} was acknowledged within {} election \
                             timeouts ({} ms) after the faults healed at {} ms",
                            self.options.liveness_timeouts,
                            (self.now - healed_at) / 1000,
                            healed_at / 1000
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn deliver(&mut self, message: Message) -> Result<(), Violation> {
        let (from, to) = (position_of(message.from), position_of(message.to));
        let summary = MessageSummary::of(&message);
        if self.blocked[from * self.options.nodes + to] {
            self.summary.dropped += 1;
            self.trace.record(self.now, TraceEvent::Drop(summary, "link cut"));
            return Ok(());
        }
        let Some(core) = self.replicas[to].core_mut() else {
            self.summary.dropped += 1;
            self.trace.record(self.now, TraceEvent::Drop(summary, "receiver down"));
            return Ok(());
        };
        self.summary.delivered += 1;
        self.trace.record(self.now, TraceEvent::Deliver(summary));
        if let Err(error) = core.step(message) {
            return Err(Violation {
                property: Property::CoreError,
                detail: format!("{:?} refused a message: {error}", id_of(to)),
            });
        }
        self.after_input(to)
    }

    /// After an input to a replica: drain it (or let the loop batch a few inputs first), then
    /// check.
    fn after_input(&mut self, node: usize) -> Result<(), Violation> {
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

    fn drain_now(&mut self, node: usize) -> Result<(), Violation> {
        let drained = self.replicas[node].drain();
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
                if proposed.last_index > baseline {
                    self.summary.recovery_us = self.now - healed_at;
                    self.done = true;
                }
            }
        }
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
        if self.replicas[node].start_sync() {
            let latency =
                self.rng.range(self.profile.disk_latency_min_us, self.profile.disk_latency_max_us);
            let epoch = self.epochs[node];
            self.schedule(self.now + latency, Event::SyncDone { node, epoch });
        }
        Ok(())
    }

    /// Runs the checker on a replica and traces its role and commit changes.
    fn check(&mut self, node: usize) -> Result<(), Violation> {
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

    fn send(&mut self, message: Message) -> Result<(), Violation> {
        let (from, to) = (position_of(message.from), position_of(message.to));
        if self.options.lemma_checks {
            self.checker.on_send(&self.replicas[from], &message)?;
        }
        if self.blocked[from * self.options.nodes + to] {
            self.summary.dropped += 1;
            self.trace.record(self.now, TraceEvent::Drop(MessageSummary::of(&message), "link cut"));
            return Ok(());
        }
        if self.rng.chance(self.drop_per_million) {
            self.summary.dropped += 1;
            self.trace.record(self.now, TraceEvent::Drop(MessageSummary::of(&message), "lost"));
            return Ok(());
        }
        if self.rng.chance(self.duplicate_per_million) {
            self.trace.record(self.now, TraceEvent::Duplicate(MessageSummary::of(&message)));
            // A duplicate takes its own path and may arrive in any order.
            let (delay, _) = self.network_delay();
            self.schedule(self.now + delay, Event::Deliver(message.clone()));
        }
        let link = from * self.options.nodes + to;
        let (delay, straggler) = self.network_delay();
        let mut arrival = self.now + delay;
        if straggler || self.rng.chance(self.reorder_per_million) {
            // This one leaves the link's order: it may overtake earlier messages, and a
            // straggler does not hold back the ones behind it.
        } else {
            // Links are ordered like the QUIC streams raftwal uses: a message never overtakes
            // the one sent before it on the same link.
            arrival = arrival.max(self.link_arrival[link]);
            self.link_arrival[link] = arrival;
        }
        self.schedule(arrival, Event::Deliver(message));
        Ok(())
    }

    /// A delay between the profile's bounds; during the faults, one message in a hundred
    /// straggles far behind (and says so).
    fn network_delay(&mut self) -> (u64, bool) {
        let (low, high) = (self.profile.net_delay_min_us, self.profile.net_delay_max_us);
        let delay = self.rng.range(low, high);
        if self.phase == Phase::Faults && self.rng.chance(10_000) {
            (delay + self.rng.range(0, 10 * high), true)
        } else {
            (delay, false)
        }
    }

    /// Where a client sends: the replica it believes leads, or a random one.
    fn client_target(&mut self, client: usize) -> usize {
        match self.believed_leader[client] {
            Some(node) => node,
            None => self.rng.index(self.options.nodes),
        }
    }

    fn learn_leader(&mut self, client: usize, error: ProposeError) {
        self.believed_leader[client] = match error {
            ProposeError::NotLeader { leader } => leader.map(position_of),
            ProposeError::TransferInProgress { to } => Some(position_of(to)),
            ProposeError::EmptyBatch => self.believed_leader[client],
        };
    }

    fn propose(&mut self, client: usize) -> Result<(), Violation> {
        let next = self.rng.range(200, self.profile.propose_interval_max_us.max(200));
        self.schedule(self.now + next, Event::Propose(client));
        let now = self.now;
        self.outstanding.retain(|(_, _, deadline)| *deadline > now);
        let waiting = self.outstanding.iter().filter(|(_, owner, _)| *owner == client).count();
        if waiting >= self.profile.client_window {
            return Ok(());
        }
        let node = self.client_target(client);
        let count = self.rng.range(1, self.profile.batch_size_max);
        let mut payloads = Vec::with_capacity(count as usize);
        for _ in 0..count {
            self.next_tag += 1;
            let size = self.rng.range(8, self.profile.payload_size_max) as usize;
            let mut payload = vec![0u8; size];
            payload[..8].copy_from_slice(&self.next_tag.to_le_bytes());
            payloads.push(Bytes::from(payload));
        }
        let tag = self.next_tag;
        let result = self.replicas[node].propose(&payloads, tag);
        self.trace.record(
            self.now,
            TraceEvent::Propose {
                node: id_of(node),
                tag,
                result: result.map(|p| (p.first_index, p.last_index, p.term)),
            },
        );
        match result {
            Ok(_) => {
                self.outstanding.push((tag, client, self.now + CLIENT_TIMEOUT_US));
                self.after_input(node)
            }
            Err(error) => {
                self.learn_leader(client, error);
                Ok(())
            }
        }
    }

    fn read(&mut self, client: usize) -> Result<(), Violation> {
        let next = self.rng.range(1_000, self.profile.read_interval_max_us.max(1_000));
        self.schedule(self.now + next, Event::Read(client));
        let node = self.client_target(client);
        self.next_request_id += 1;
        let request_id = self.next_request_id;
        let Some(core) = self.replicas[node].core_mut() else {
            self.believed_leader[client] = None;
            return Ok(());
        };
        if core.read_index(request_id).is_err() {
            self.believed_leader[client] = None;
            return Ok(());
        }
        let acknowledged_at_start = self.checker.max_acknowledged();
        self.reads.push(PendingRead { node, request_id, acknowledged_at_start });
        self.trace.record(
            self.now,
            TraceEvent::ReadStart {
                node: id_of(node),
                request_id,
                acknowledged: acknowledged_at_start,
            },
        );
        self.after_input(node)
    }

    fn chaos(&mut self) -> Result<(), Violation> {
        let weights = self.profile.chaos;
        let mut pick = self.rng.below(weights.total().max(1));
        let n = self.options.nodes;
        let mut choose = |weight: u64| {
            if pick < weight {
                true
            } else {
                pick -= weight;
                false
            }
        };
        if choose(weights.crash) {
            // Half the crashes hit a replica in the middle of an fsync, when the most state is
            // at stake.
            let syncing: Vec<usize> =
                (0..n).filter(|node| self.replicas[*node].is_syncing()).collect();
            let up: Vec<usize> = (0..n).filter(|node| self.replicas[*node].is_up()).collect();
            let pool = if !syncing.is_empty() && self.rng.chance(500_000) { syncing } else { up };
            if !pool.is_empty() {
                let node = pool[self.rng.index(pool.len())];
                self.crash(node)?;
            }
        } else if choose(weights.depose_leader) {
            let leader = (0..n).find(|node| {
                self.replicas[*node].core().is_some_and(|core| core.role() == Role::Leader)
            });
            if let Some(leader) = leader {
                if self.rng.chance(500_000) {
                    self.crash(leader)?;
                } else {
                    self.blocked.iter_mut().for_each(|link| *link = false);
                    for other in (0..n).filter(|other| *other != leader) {
                        self.blocked[leader * n + other] = true;
                        self.blocked[other * n + leader] = true;
                    }
                    self.network_fault();
                }
            }
        } else if choose(weights.partition) {
            if n > 1 {
                let mut order: Vec<usize> = (0..n).collect();
                for position in (1..n).rev() {
                    let other = self.rng.index(position + 1);
                    order.swap(position, other);
                }
                let split = self.rng.range(1, n as u64 - 1) as usize;
                self.blocked.iter_mut().for_each(|link| *link = false);
                for a in &order[..split] {
                    for b in &order[split..] {
                        self.blocked[a * n + b] = true;
                        self.blocked[b * n + a] = true;
                    }
                }
                self.network_fault();
            }
        } else if choose(weights.isolate) {
            let node = self.rng.index(n);
            self.blocked.iter_mut().for_each(|link| *link = false);
            for other in 0..n {
                if other != node {
                    self.blocked[node * n + other] = true;
                    self.blocked[other * n + node] = true;
                }
            }
            self.network_fault();
        } else if choose(weights.one_way) {
            for _ in 0..self.rng.range(1, n as u64) {
                let from = self.rng.index(n);
                let to = self.rng.index(n);
                if from != to {
                    self.blocked[from * n + to] = true;
                }
            }
            self.network_fault();
        } else if choose(weights.heal) {
            self.blocked.iter_mut().for_each(|link| *link = false);
            self.trace.record(self.now, TraceEvent::HealNetwork);
        } else if choose(weights.transfer) {
            let leader = (0..n).find(|node| {
                self.replicas[*node].core().is_some_and(|core| core.role() == Role::Leader)
            });
            if let (Some(leader), true) = (leader, n > 1) {
                let mut to = self.rng.index(n - 1);
                if to >= leader {
                    to += 1;
                }
                let core = self.replicas[leader].core_mut().expect("the leader is up");
                let accepted = core.transfer_leadership(id_of(to)).is_ok();
                self.summary.transfers += u64::from(accepted);
                self.trace.record(
                    self.now,
                    TraceEvent::Transfer { from: id_of(leader), to: id_of(to), accepted },
                );
                self.after_input(leader)?;
            }
        } else {
            self.drop_per_million = self.rng.below(self.profile.drop_per_million_max + 1);
            self.duplicate_per_million = self.rng.below(self.profile.duplicate_per_million_max + 1);
            self.trace.record(
                self.now,
                TraceEvent::NetworkQuality {
                    drop_per_million: self.drop_per_million,
                    duplicate_per_million: self.duplicate_per_million,
                },
            );
        }
        Ok(())
    }

    fn network_fault(&mut self) {
        self.summary.network_faults += 1;
        let mut mask = 0u64;
        for (position, blocked) in self.blocked.iter().enumerate() {
            if *blocked && position < 64 {
                mask |= 1 << position;
            }
        }
        self.trace
            .record(self.now, TraceEvent::Partition { blocked: mask, nodes: self.options.nodes });
    }

    fn crash(&mut self, node: usize) -> Result<(), Violation> {
        let unsynced = self.replicas[node].store().unsynced_units();
        let surviving_units = if self.profile.torn_writes && self.rng.chance(500_000) {
            self.rng.below(unsynced as u64 + 1) as usize
        } else {
            0
        };
        let lost_from = self.replicas[node].crash(surviving_units);
        self.epochs[node] += 1;
        self.drain_scheduled[node] = false;
        self.seen[node] = None;
        self.reads.retain(|read| read.node != node);
        self.summary.crashes += 1;
        self.trace.record(
            self.now,
            TraceEvent::Crash {
                node: id_of(node),
                surviving_units,
                durable_last: self.replicas[node].store().durable_last_index(),
            },
        );
        if let Some(from) = lost_from {
            self.checker.on_durable_loss(from, &self.replicas)?;
        }
        // Some restarts are immediate (a supervisor restarts the process), most take longer.
        let downtime = if self.rng.chance(250_000) {
            self.rng.range(500, 5_000)
        } else {
            self.rng.range(1_000, self.profile.downtime_max_us)
        };
        let epoch = self.epochs[node];
        self.schedule(self.now + downtime, Event::Restart { node, epoch });
        Ok(())
    }

    fn restart(&mut self, node: usize) -> Result<(), Violation> {
        let seed = self.rng.fork();
        self.replicas[node].restart(seed).map_err(|error| Violation {
            property: Property::CoreError,
            detail: format!("{:?} could not restart from its durable state: {error}", id_of(node)),
        })?;
        self.checker.on_restart(node);
        let core = self.replicas[node].core().expect("just restarted");
        self.trace.record(
            self.now,
            TraceEvent::Restart {
                node: id_of(node),
                term: core.term(),
                last: core.last_index(),
                commit: core.commit_index(),
            },
        );
        self.check(node)
    }

    fn end_faults(&mut self) -> Result<(), Violation> {
        self.trace.record(self.now, TraceEvent::EndOfFaults);
        self.blocked.iter_mut().for_each(|link| *link = false);
        self.drop_per_million = 0;
        self.duplicate_per_million = 0;
        self.reorder_per_million = 0;
        for node in 0..self.options.nodes {
            if !self.replicas[node].is_up() {
                self.epochs[node] += 1;
                self.restart(node)?;
            }
        }
        self.phase = Phase::Liveness {
            healed_at: self.now,
            baseline: LogIndex(self.checker.committed_count()),
        };
        let deadline = self.options.liveness_timeouts * u64::from(ELECTION_TIMEOUT_TICKS) * TICK_US;
        self.schedule(self.now + deadline, Event::LivenessDeadline);
        Ok(())
    }

    fn failure(&self, violation: Violation) -> Box<Failure> {
        let mut state = String::new();
        for (position, replica) in self.replicas.iter().enumerate() {
            let store = replica.store();
            match replica.core() {
                Some(core) => {
                    let _ = writeln!(
                        state,
                        "{:?}: {:?} {:?} vote {:?} leader {:?}, log {:?}/{:?}, commit {:?}, \
                         durable {:?} (store: durable log ends at {:?})",
                        id_of(position),
                        core.role(),
                        core.term(),
                        core.vote(),
                        core.leader(),
                        core.last_index(),
                        core.last_term(),
                        core.commit_index(),
                        core.durable_index(),
                        store.durable_last_index(),
                    );
                    for peer in core.config().voters.iter().filter(|peer| **peer != core.id()) {
                        if let Some(progress) = core.progress(*peer) {
                            let _ = writeln!(state, "    progress of {peer:?}: {progress:?}");
                        }
                    }
                }
                None => {
                    let _ = writeln!(
                        state,
                        "{:?}: down (store: durable log ends at {:?}, hard state {:?})",
                        id_of(position),
                        store.durable_last_index(),
                        store.hard_state(),
                    );
                }
            }
        }
        Box::new(Failure {
            options: self.options,
            at_us: self.now,
            violation,
            trace: self.trace.render(),
            state,
        })
    }
}
