//! The consensus core's configuration: membership, timing in ticks, replication limits.
//!
//! Owns: [`Config`] and its validation ([`ConfigError`]).
//! Must not: hold state that changes at run time (that belongs to the core).
//! Invariants of a valid config (checked by [`Config::validate`]):
//! 1. `voters` is non-empty, has no duplicates and contains `id`.
//! 2. `heartbeat_interval_ticks >= 1` and `election_timeout_ticks > heartbeat_interval_ticks`, so
//!    a healthy leader's heartbeats always arrive before a follower's election timer fires.
//! 3. Every size and count limit is at least 1.

use raftwal_wire::types::{LogId, NodeId};
use thiserror::Error;

/// Bytes an entry is charged beyond its payload when the core sizes batches, in-flight windows and
/// its cache: a fair stand-in for the entry's framing, so empty entries (no-ops) still cost
/// something and a window of empty entries stays bounded.
pub const ENTRY_OVERHEAD_BYTES: usize = 32;

/// The configuration of one replica of one log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This replica.
    pub id: NodeId,
    /// The log (raft group) this replica belongs to; stamped on every message it sends.
    pub log: LogId,
    /// Every voting member, this replica included. Membership is static.
    pub voters: Vec<NodeId>,
    /// Base election timeout. A follower's actual timeout is drawn from
    /// `[election_timeout_ticks, 2 * election_timeout_ticks)` each time its timer resets (paper 5.2).
    /// CheckQuorum and the leader lease also use this period.
    pub election_timeout_ticks: u32,
    /// A leader sends heartbeats this often.
    pub heartbeat_interval_ticks: u32,
    /// Run a PreVote round before a real election (thesis 9.6), so a node that rejoins after a
    /// partition does not depose a healthy leader. On by default.
    pub pre_vote: bool,
    /// A leader that has not heard from a majority within an election timeout steps down, and
    /// followers that heard from a leader within an election timeout ignore vote requests
    /// (thesis 6.2 and 4.2.3). On by default.
    pub check_quorum: bool,
    /// Upper bound on the entry bytes (payload plus [`ENTRY_OVERHEAD_BYTES`] each) of one
    /// AppendEntries. A single entry larger than this is still sent, alone.
    pub append_size_bytes_max: usize,
    /// Upper bound on the entry count of one AppendEntries.
    pub append_entry_count_max: usize,
    /// Upper bound on AppendEntries messages in flight (sent, not yet acknowledged) to one follower.
    pub inflight_message_count_max: usize,
    /// Upper bound on entry bytes in flight to one follower.
    pub inflight_size_bytes_max: usize,
    /// The in-memory cache of recent entries keeps at most this many bytes of entries that are
    /// already durable; entries not yet durable are always kept, whatever their size.
    pub entry_cache_size_bytes_max: usize,
    /// Seed of the generator that randomizes election timeouts. Give each replica its own (for
    /// instance derived from its id and the wall clock at start); the simulator derives it from
    /// its run seed so that a run replays exactly.
    pub timeout_seed: u64,
    /// Start in the rejoin state (module `rejoin`): this replica lost its durable Raft state
    /// (log and hard state) and must learn the cluster's terms and catch up before it votes or
    /// acknowledges anything. Off by default; the driver sets it while its rejoin marker
    /// exists.
    pub rejoin: bool,
}

impl Config {
    /// A configuration with the defaults: election timeout 10 ticks, heartbeat every tick,
    /// PreVote and CheckQuorum on, AppendEntries up to 1 MiB or 4,096 entries, a window of 64
    /// messages or 32 MiB per follower, a 64 MiB cache of durable entries.
    pub fn new(id: NodeId, log: LogId, voters: Vec<NodeId>) -> Config {
        Config {
            id,
            log,
            voters,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            append_size_bytes_max: 1 << 20,
            append_entry_count_max: 4096,
            inflight_message_count_max: 64,
            inflight_size_bytes_max: 32 << 20,
            entry_cache_size_bytes_max: 64 << 20,
            timeout_seed: id.get(),
            rejoin: false,
        }
    }

    /// Checks the invariants listed in the module documentation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.voters.is_empty() {
            return Err(ConfigError::NoVoters);
        }
        for (position, voter) in self.voters.iter().enumerate() {
            if self.voters[..position].contains(voter) {
                return Err(ConfigError::DuplicateVoter { voter: *voter });
            }
        }
        if !self.voters.contains(&self.id) {
            return Err(ConfigError::NotAVoter { id: self.id });
        }
        if self.heartbeat_interval_ticks == 0
            || self.election_timeout_ticks <= self.heartbeat_interval_ticks
        {
            return Err(ConfigError::Timing {
                election_timeout_ticks: self.election_timeout_ticks,
                heartbeat_interval_ticks: self.heartbeat_interval_ticks,
            });
        }
        let limits = [
            ("append_size_bytes_max", self.append_size_bytes_max),
            ("append_entry_count_max", self.append_entry_count_max),
            ("inflight_message_count_max", self.inflight_message_count_max),
            ("inflight_size_bytes_max", self.inflight_size_bytes_max),
            ("entry_cache_size_bytes_max", self.entry_cache_size_bytes_max),
        ];
        for (name, value) in limits {
            if value == 0 {
                return Err(ConfigError::ZeroLimit { name });
            }
        }
        Ok(())
    }

    /// The number of voters that makes a majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

/// Why a [`Config`] is invalid. Fix the configuration; nothing else can be done with it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The voter list is empty.
    #[error("the voter list is empty")]
    NoVoters,
    /// A voter appears twice.
    #[error("voter {voter} appears more than once")]
    DuplicateVoter {
        /// The repeated voter.
        voter: NodeId,
    },
    /// This replica is not in the voter list.
    #[error("this replica ({id}) is not one of the voters")]
    NotAVoter {
        /// This replica's id.
        id: NodeId,
    },
    /// The election timeout must exceed the heartbeat interval, which must be at least 1 tick.
    #[error(
        "election timeout ({election_timeout_ticks} ticks) must exceed the heartbeat interval \
         ({heartbeat_interval_ticks} ticks), which must be at least 1"
    )]
    Timing {
        /// The configured election timeout.
        election_timeout_ticks: u32,
        /// The configured heartbeat interval.
        heartbeat_interval_ticks: u32,
    },
    /// A size or count limit is zero.
    #[error("{name} must be at least 1")]
    ZeroLimit {
        /// The field's name.
        name: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(raw: &[u64]) -> Vec<NodeId> {
        raw.iter().map(|id| NodeId(*id)).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::new(NodeId(1), LogId(0), ids(&[1, 2, 3]));
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.quorum(), 2);
    }

    #[test]
    fn invalid_configs_say_why() {
        let mut config = Config::new(NodeId(1), LogId(0), vec![]);
        assert_eq!(config.validate(), Err(ConfigError::NoVoters));
        config.voters = ids(&[1, 2, 2]);
        assert_eq!(config.validate(), Err(ConfigError::DuplicateVoter { voter: NodeId(2) }));
        config.voters = ids(&[2, 3]);
        assert_eq!(config.validate(), Err(ConfigError::NotAVoter { id: NodeId(1) }));
        config.voters = ids(&[1, 2, 3]);
        config.election_timeout_ticks = 1;
        assert!(matches!(config.validate(), Err(ConfigError::Timing { .. })));
        config.election_timeout_ticks = 10;
        config.inflight_message_count_max = 0;
        assert_eq!(
            config.validate(),
            Err(ConfigError::ZeroLimit { name: "inflight_message_count_max" })
        );
    }
}
