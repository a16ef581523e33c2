//! The fault injector: crashes, partitions (two-way and one-way), leader depositions,
//! leadership transfers, network quality changes, disk faults, and the end of the faults.
//!
//! Owns: [`World::chaos`] and the healing step.
//! Must not: act after the fault phase ended (the liveness phase runs on a healed cluster, but
//! for the one replica that stays sick in some runs).
//! Invariants: a crash bumps the replica's epoch, so events scheduled before it are ignored
//! (world invariant 2); healing restarts every crashed replica but a sick one.

use super::profile::{ELECTION_TIMEOUT_TICKS, TICK_US};
use super::trace::TraceEvent;
use super::world::{id_of, Event, Phase, World};
use crate::checker::Violation;
use raftwal::raft::Role;
use raftwal_wire::types::LogIndex;

/// How many times longer commits may take to resume when a replica stays sick through the
/// liveness phase. With a replica missing, the others split their votes far more often (in a
/// cluster of three, the remaining two must both vote for the same candidate, and with PreVote
/// both pass their pre-votes and stand together whenever their timers fire within a round trip
/// of each other, which includes a disk write of up to 23 ms here): at seed 460,068 of an
/// exploratory run two replicas split six elections in a row, over a second.
pub const SICK_LIVENESS_FACTOR: u64 = 3;

/// How many times longer commits may take to resume in a run with CheckQuorum but without
/// PreVote. There a candidate that cannot win still deposes each new leader through its answer
/// carrying a higher term (the lease keeps the followers from voting for it, not the leader
/// from learning its term; etcd-io/etcd#5451), and with the harshest timings drawn (one-way
/// delays near 20 ms against timeouts of 100 to 200 ms) elections are won and undone within one
/// broadcast time several times in a row: seed 177,550 took 1,279 ms (12.8 timeouts) although
/// every step followed the paper, the pattern docs/testing.md analyses for seed 10,150.
pub const CHECK_QUORUM_ONLY_LIVENESS_FACTOR: u64 = 2;

/// How many times longer commits may take to resume when a wiped replica is still rejoining at
/// the heal. It must first hear from every peer, then receive the whole log before it counts
/// toward a commit of the leader's term, and with one entry per AppendEntries, disk writes of up
/// to 20 ms and the third replica far behind too, that took 1.0 to 1.5 s at seed 2,898,056
/// (3 nodes; it passes with 15 election timeouts), with every step making progress.
pub const REJOIN_LIVENESS_FACTOR: u64 = 2;

impl World {
    pub(super) fn chaos(&mut self) -> Result<(), Violation> {
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
                (0..n).filter(|node| self.replicas[*node].disk_busy()).collect();
            let up: Vec<usize> = (0..n).filter(|node| self.replicas[*node].is_up()).collect();
            let pool = if !syncing.is_empty() && self.rng.chance(500_000) { syncing } else { up };
            if !pool.is_empty() {
                let node = pool[self.rng.index(pool.len())];
                self.chaos_crash(node)?;
            }
        } else if choose(weights.depose_leader) {
            let leader = (0..n).find(|node| {
                self.replicas[*node].core().is_some_and(|core| core.role() == Role::Leader)
            });
            if let Some(leader) = leader {
                if self.rng.chance(500_000) {
                    self.chaos_crash(leader)?;
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
        } else if choose(weights.disk_fault) {
            self.disk_fault();
        } else if choose(weights.compact) {
            let up: Vec<usize> = (0..n).filter(|node| self.replicas[*node].is_up()).collect();
            if !up.is_empty() {
                let node = up[self.rng.index(up.len())];
                self.chaos_compact(node)?;
            }
        } else if choose(weights.wipe) {
            // One replica at a time lost its state: none is wiped while another one still has
            // its rejoin marker (a wipe is a failure, as a crash is).
            let marked = (0..n).any(|node| self.replicas[node].has_rejoin_marker());
            if n > 1 && !marked {
                let node = self.rng.index(n);
                self.chaos_wipe(node)?;
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

    /// Compacts `node`'s log before a random index up to its commit index + 1, as an
    /// application that checkpointed its state would (`Log::compact`).
    fn chaos_compact(&mut self, node: usize) -> Result<(), Violation> {
        let Some(core) = self.replicas[node].core() else {
            return Ok(());
        };
        let (first, commit) = (core.first_index(), core.commit_index());
        if commit < first {
            return Ok(());
        }
        // Half the time all it may (an application that keeps up), else anywhere.
        let before = if self.rng.chance(500_000) {
            commit.next()
        } else {
            LogIndex(self.rng.range(first.get(), commit.get() + 1))
        };
        match self.replicas[node].compact(before) {
            Ok(now_first) => {
                self.summary.compactions += u64::from(now_first > first);
                self.trace.record(
                    self.now,
                    TraceEvent::Compact { node: id_of(node), before, first: now_first },
                );
                self.refresh_durable(node)?;
                self.after_input(node)
            }
            Err(down) => self.handle_down(node, down),
        }
    }

    pub(super) fn network_fault(&mut self) {
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

    pub(super) fn end_faults(&mut self) -> Result<(), Violation> {
        self.trace.record(self.now, TraceEvent::EndOfFaults);
        self.blocked.iter_mut().for_each(|link| *link = false);
        self.drop_per_million = 0;
        self.duplicate_per_million = 0;
        self.reorder_per_million = 0;
        self.heal_disks();
        for node in 0..self.options.nodes {
            if !self.replicas[node].is_up() {
                self.epochs[node] += 1;
                self.restart(node)?;
            }
        }
        self.make_one_sick()?;
        self.summary.stayed_sick = self.stays_down.is_some();
        self.rejoining_at_heal = (0..self.options.nodes)
            .any(|node| Some(node) != self.stays_down && self.replicas[node].rejoining());
        self.phase = Phase::Liveness {
            healed_at: self.now,
            baseline: LogIndex(self.checker.committed_count()),
        };
        let deadline = self.liveness_timeouts() * u64::from(ELECTION_TIMEOUT_TICKS) * TICK_US;
        self.schedule(self.now + deadline, Event::LivenessDeadline);
        Ok(())
    }

    /// Election timeouts within which commits must resume after the heal: the option's,
    /// [`SICK_LIVENESS_FACTOR`] times as many when a replica stays sick, and
    /// [`CHECK_QUORUM_ONLY_LIVENESS_FACTOR`] times as many again with CheckQuorum but no PreVote,
    /// and [`REJOIN_LIVENESS_FACTOR`] times as many again when a replica is still rejoining.
    pub(super) fn liveness_timeouts(&self) -> u64 {
        let mut timeouts = self.options.liveness_timeouts;
        if self.stays_down.is_some() {
            timeouts *= SICK_LIVENESS_FACTOR;
        }
        if self.rejoining_at_heal {
            timeouts *= REJOIN_LIVENESS_FACTOR;
        }
        if self.profile.check_quorum && !self.profile.pre_vote {
            timeouts *= CHECK_QUORUM_ONLY_LIVENESS_FACTOR;
        }
        timeouts
    }
}
