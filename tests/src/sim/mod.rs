//! The seeded whole-cluster simulator.
//!
//! Owns: [`run`], its options and its outcome ([`RunSummary`] or [`Failure`]).
//! Must not: use a clock, a thread or entropy: a run is a pure function of its options, so a
//! failing seed replays exactly (the `simulate` binary and the regression tests rely on it).
//!
//! A run: 3 or 5 replicas running the real [`raftwal::raft::RaftCore`] on the real log store,
//! each on its own simulated disk ([`crate::store::SimStore`]) whose every write and fsync
//! completes when the run's scheduler says so; a network that delays, reorders, drops,
//! duplicates and partitions (both ways or one way); crashes (some tearing the last write, some
//! landing inside a disk operation) and restarts from what the disk holds; failed fsyncs that
//! poison a replica's log; full disks; clients that propose and read through whichever replica
//! they believe leads; leadership transfers. After every step the [`crate::checker::Checker`]
//! checks the safety properties against the disks' durable images. After the fault phase
//! everything heals (in some runs one replica stays down or its disk stays full), and commits
//! must resume within ten election timeouts.

mod chaos;
mod clients;
mod disk;
mod network;
mod profile;
mod report;
mod trace;
mod world;

use crate::checker::Violation;
pub use chaos::{CHECK_QUORUM_ONLY_LIVENESS_FACTOR, REJOIN_LIVENESS_FACTOR, SICK_LIVENESS_FACTOR};

/// One election timeout of the simulated cores, in virtual microseconds (the liveness deadline
/// is counted in these).
pub const ELECTION_TIMEOUT_US: u64 = profile::ELECTION_TIMEOUT_TICKS as u64 * profile::TICK_US;
use raftwal::raft::InjectedBug;
use std::fmt;

/// A known bug to plant, to show the checker bites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// A bug in every replica's consensus core (`RaftCore::inject_bug`).
    Core(InjectedBug),
    /// A bug in recovery: a replica whose log a failed fsync poisoned restarts in the same boot
    /// and reads the writes the fsync failed to make durable from the page cache (fsyncgate):
    /// recovery does not drop the cached pages first (`SimDisk::set_keeps_stale_cache`).
    ReopenPoisonedLog,
}

impl PlantedBug {
    /// Every bug, core bugs first.
    pub fn all() -> Vec<PlantedBug> {
        let mut all: Vec<PlantedBug> =
            InjectedBug::ALL.iter().map(|bug| PlantedBug::Core(*bug)).collect();
        all.push(PlantedBug::ReopenPoisonedLog);
        all
    }

    /// The name `--inject-bug` takes.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::Core(bug) => bug.name(),
            PlantedBug::ReopenPoisonedLog => "reopen-poisoned-log",
        }
    }

    /// The bug called `name`, if any.
    pub fn from_name(name: &str) -> Option<PlantedBug> {
        PlantedBug::all().into_iter().find(|bug| bug.name() == name)
    }
}

/// What to simulate.
#[derive(Clone, Copy, Debug)]
pub struct SimOptions {
    /// The run's seed: it fixes everything.
    pub seed: u64,
    /// Cluster size (3 or 5 in the standard runs; any size from 1 works).
    pub nodes: usize,
    /// A bug to plant.
    pub bug: Option<PlantedBug>,
    /// How many of the last events a failure report shows.
    pub trace_capacity: usize,
    /// A run that processes more events than this without finishing is reported as a livelock.
    pub event_limit: u64,
    /// Also check the lemmas (promise 3 at the network boundary, one vote per term, committed
    /// entries protected against elections; checker properties 9 and 10; and that recovery
    /// returns exactly the disk's durable image). Off, only the five Raft properties,
    /// acknowledged durability, reads, the core's invariants and the storage's own promises are
    /// checked: useful to measure how fast those alone catch a planted bug.
    pub lemma_checks: bool,
    /// After the faults heal, a commit must be acknowledged within this many election timeouts.
    pub liveness_timeouts: u64,
}

impl SimOptions {
    /// Options for `seed` with `nodes` replicas, no bug, and a 120-event trace.
    pub fn new(seed: u64, nodes: usize) -> SimOptions {
        SimOptions {
            seed,
            nodes,
            bug: None,
            trace_capacity: 120,
            event_limit: 3_000_000,
            lemma_checks: true,
            liveness_timeouts: 10,
        }
    }

    /// The cluster size the standard runs use for `seed` when none is forced: 3 for even seeds,
    /// 5 for odd ones.
    pub fn default_nodes(seed: u64) -> usize {
        if seed.is_multiple_of(2) {
            3
        } else {
            5
        }
    }
}

/// What a run did, when no property broke.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Events processed.
    pub events: u64,
    /// Virtual time simulated, in microseconds.
    pub virtual_us: u64,
    /// Entries committed.
    pub committed: u64,
    /// Proposals acknowledged to clients.
    pub acknowledged: u64,
    /// Terms that had a leader.
    pub leader_terms: u64,
    /// Crashes injected (including those that landed inside a disk operation).
    pub crashes: u64,
    /// Crashes that kept a torn prefix of the last unsynced write.
    pub torn_crashes: u64,
    /// Power losses after which part of what was not synced survived (the caches had written
    /// back some of the pages and, in order, some of the name changes no fsync covered).
    pub written_back_crashes: u64,
    /// Replicas that went down as a process in a boot that went on (the caches kept what was
    /// written and not synced): some crashes, some poisoned logs.
    pub process_kills: u64,
    /// Crashes that fired inside a disk operation (an armed crash point, or queued writes and
    /// fsyncs run into the crash).
    pub crashes_in_disk_ops: u64,
    /// Restarts whose recovery cut a torn tail off the log.
    pub torn_tails_cut: u64,
    /// Sealed segments restarts took from their index files instead of scanning them.
    pub segments_indexed: u64,
    /// Sealed segments restarts found (every segment but the last).
    pub segments_sealed: u64,
    /// Disk faults injected: fsyncs made to fail, disks filled.
    pub disk_faults: u64,
    /// Logs poisoned by a failed fsync (each replica then went down).
    pub poisoned: u64,
    /// Truncations and log starts a full disk refused, in the runtime's order: the loop held
    /// their `Ready` and tried it again on later ticks.
    pub full_disk_holds: u64,
    /// Disk steps a full disk refused (retried later).
    pub disk_full_refusals: u64,
    /// Batches the log stores wrote (each one write or a few chunk writes, and one fdatasync).
    pub batches: u64,
    /// Entries in those batches.
    pub batched_entries: u64,
    /// Of the batches, those started while an earlier one of the same log was in flight.
    pub pipelined_batches: u64,
    /// Batches withdrawn after a write found no space.
    pub withdrawn_batches: u64,
    /// Background zero-fill writes (ahead of the writer, or of the next segment).
    pub background_writes: u64,
    /// Background fdatasyncs of a prepared next segment.
    pub background_syncs: u64,
    /// Roll-overs and truncations that used a segment prepared in the background.
    pub roll_overs_prepared: u64,
    /// Segments created on the spot (a log's first, or when none was prepared).
    pub segments_created: u64,
    /// Network faults injected (partitions, isolations, one-way cuts).
    pub network_faults: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Messages dropped (lost, partitioned, or addressed to a crashed replica).
    pub dropped: u64,
    /// Reads answered with an index.
    pub reads_answered: u64,
    /// Compactions that removed segments (the replica's first index moved).
    pub compactions: u64,
    /// Log starts sent by leaders to followers behind their first index.
    pub log_starts: u64,
    /// Leadership transfers requested and accepted.
    pub transfers: u64,
    /// Replicas whose disk was replaced by an empty one (they restart to rejoin).
    pub wipes: u64,
    /// Wiped replicas whose core completed the rejoin protocol.
    pub rejoins: u64,
    /// Virtual microseconds from the end of the faults to the first acknowledged new commit.
    pub recovery_us: u64,
    /// Whether a replica stayed sick (down, or poisoned) through the liveness phase.
    pub stayed_sick: bool,
    /// Whether the cores ran PreVote (the profile turns it off in a fifth of the runs).
    pub pre_vote: bool,
    /// Whether the cores ran CheckQuorum (the profile turns it off in a fifth of the runs).
    pub check_quorum: bool,
}

/// A broken property, with everything needed to understand and replay it.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The options that replay it.
    pub options: SimOptions,
    /// Virtual time of the violation, in microseconds.
    pub at_us: u64,
    /// The property and what was seen.
    pub violation: Violation,
    /// The last events, readable.
    pub trace: String,
    /// Every replica's state at the violation.
    pub state: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bug =
            self.options.bug.map_or(String::new(), |bug| format!(" --inject-bug {}", bug.name()));
        writeln!(
            f,
            "VIOLATION at seed {} ({} nodes{}) at {}.{:03} ms: {}",
            self.options.seed,
            self.options.nodes,
            if bug.is_empty() { "" } else { ", bug planted" },
            self.at_us / 1000,
            self.at_us % 1000,
            self.violation
        )?;
        writeln!(
            f,
            "replay: cargo run --release -p raftwal-tests --bin simulate -- --seeds 1 --from {} \
             --nodes {}{bug}",
            self.options.seed, self.options.nodes
        )?;
        writeln!(f, "--- last {} events ---", self.trace.lines().count())?;
        write!(f, "{}", self.trace)?;
        writeln!(f, "--- replicas ---")?;
        write!(f, "{}", self.state)
    }
}

/// Runs one seed.
pub fn run(options: &SimOptions) -> Result<RunSummary, Box<Failure>> {
    world::World::new(*options).run()
}

/// Runs `count` seeds from `from` (with [`SimOptions::default_nodes`] unless `nodes` is given)
/// and returns the first failure, with the number of seeds run before it.
pub fn first_failure(
    from: u64,
    count: u64,
    nodes: Option<usize>,
    bug: Option<PlantedBug>,
) -> Option<(u64, Box<Failure>)> {
    for seed in from..from + count {
        let mut options =
            SimOptions::new(seed, nodes.unwrap_or_else(|| SimOptions::default_nodes(seed)));
        options.bug = bug;
        if let Err(failure) = run(&options) {
            return Some((seed - from + 1, failure));
        }
    }
    None
}
