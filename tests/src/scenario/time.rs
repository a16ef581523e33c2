//! The scenario cluster's clock: ticks, election timeouts, and letting time pass.
//!
//! Owns: the [`Cluster`] methods that tick replicas.
//! Must not: tick a replica the test did not name.
//! Invariants: every tick is followed by a checked step.

use super::Cluster;
use raftwal::raft::Role;

impl Cluster {
    /// One tick on `node`.
    pub fn tick(&mut self, node: u64) -> &mut Cluster {
        self.ticks(node, 1)
    }

    /// `count` ticks on `node`, each followed by a step.
    pub fn ticks(&mut self, node: u64, count: u32) -> &mut Cluster {
        for _ in 0..count {
            self.core_mut(node).tick();
            self.step(node);
        }
        self
    }

    /// `count` ticks on every replica that is up.
    pub fn tick_all(&mut self, count: u32) -> &mut Cluster {
        for _ in 0..count {
            for node in 1..=self.replicas.len() as u64 {
                if self.replica(node).is_up() {
                    self.tick(node);
                }
            }
        }
        self
    }

    /// Ticks `node` until its election timer fires (it becomes a pre-candidate or candidate).
    pub fn time_out(&mut self, node: u64) -> &mut Cluster {
        let limit = 2 * self.config(node).election_timeout_ticks + 1;
        for _ in 0..limit {
            if self.role(node) != Role::Follower {
                return self;
            }
            self.tick(node);
        }
        assert_ne!(self.role(node), Role::Follower, "n{node} never timed out");
        self
    }

    /// Lets time pass for `nodes` only: each round ticks every one of them once and settles the
    /// network, until `done` holds (at most `rounds_max` rounds). Panics if it never holds.
    pub fn run_until(
        &mut self,
        nodes: &[u64],
        rounds_max: u32,
        done: impl Fn(&Cluster) -> bool,
    ) -> &mut Cluster {
        for _ in 0..rounds_max {
            if done(self) {
                return self;
            }
            for node in nodes {
                if self.replica(*node).is_up() {
                    self.tick(*node);
                }
            }
            self.settle();
        }
        assert!(done(self), "the condition did not hold within {rounds_max} rounds");
        self
    }

    /// Lets time pass for `nodes` only, for exactly `rounds` rounds (see [`Cluster::run_until`]).
    pub fn run(&mut self, nodes: &[u64], rounds: u32) -> &mut Cluster {
        for _ in 0..rounds {
            for node in nodes {
                if self.replica(*node).is_up() {
                    self.tick(*node);
                }
            }
            self.settle();
        }
        self
    }

    /// `node` times out and the cluster settles; `node` must then lead.
    pub fn elect(&mut self, node: u64) -> &mut Cluster {
        self.time_out(node).settle();
        assert_eq!(self.role(node), Role::Leader, "n{node} should have won the election");
        self
    }
}
