//! `simulate`: runs the deterministic cluster simulator over a range of seeds.
//!
//! `cargo run --release -p raftwal-tests --bin simulate -- --seeds N [--from S] [--nodes 3|5]
//! [--inject-bug NAME]` runs seeds `S..S+N` and exits with status 1 at the first violation,
//! after printing its seed, a replay command, the last events and every replica's state. Without
//! `--nodes`, even seeds run 3 replicas and odd seeds 5. The same seed always replays the same
//! run.

use clap::Parser;
use raftwal_tests::sim::{self, PlantedBug, RunSummary, SimOptions};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The seed (and its cluster size) running now, for the panic hook: a panic inside the store or
/// the core (an assertion) ends the process, and without the seed it could not be replayed.
static RUNNING_SEED: AtomicU64 = AtomicU64::new(u64::MAX);
static RUNNING_NODES: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Parser)]
#[command(about = "Deterministic simulation of a raftwal cluster under faults")]
struct Args {
    /// Number of seeds to run.
    #[arg(long, default_value_t = 1000)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Cluster size; without it, even seeds run 3 replicas and odd seeds 5.
    #[arg(long)]
    nodes: Option<usize>,
    /// Plant a known bug in the core (commit-old-term, vote-not-durable, ack-before-fsync,
    /// no-election-restriction) or in recovery (reopen-poisoned-log).
    #[arg(long)]
    inject_bug: Option<String>,
    /// Events shown when a violation is found.
    #[arg(long, default_value_t = 120)]
    trace: usize,
    /// Report a run that processes more events than this as a livelock.
    #[arg(long, default_value_t = 3_000_000)]
    event_limit: u64,
    /// Check only the five Raft properties, acknowledged durability, reads, the core's
    /// invariants and the storage's own promises (not the lemmas: promise 3 at the network
    /// boundary, one vote per term, committed entries protected against elections, recovery
    /// equal to the durable image).
    #[arg(long)]
    raft_properties_only: bool,
    /// Election timeouts within which commits must resume after the faults heal.
    #[arg(long, default_value_t = 10)]
    liveness_timeouts: u64,
    /// Print one line per seed.
    #[arg(long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let bug = match args.inject_bug.as_deref().map(|name| (name, PlantedBug::from_name(name))) {
        None => None,
        Some((_, Some(bug))) => Some(bug),
        Some((name, None)) => {
            let known: Vec<_> = PlantedBug::all().iter().map(|bug| bug.name()).collect();
            eprintln!("unknown bug {name:?}; known bugs: {}", known.join(", "));
            return ExitCode::from(2);
        }
    };
    if let Some(nodes) = args.nodes {
        if nodes == 0 {
            eprintln!("--nodes must be at least 1");
            return ExitCode::from(2);
        }
    }
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        let seed = RUNNING_SEED.load(Ordering::Relaxed);
        if seed != u64::MAX {
            let nodes = RUNNING_NODES.load(Ordering::Relaxed);
            eprintln!(
                "the panic above happened in seed {seed} ({nodes} nodes; a store invariant's \
                 panic is reported as a violation below, any other ends the run)\nreplay: cargo \
                 run --release -p raftwal-tests --bin simulate -- --seeds 1 --from {seed} \
                 --nodes {nodes}"
            );
        }
    }));
    let mut total = RunSummary::default();
    // The slowest recovery (microseconds, seed) of fully healed runs and of runs where a replica
    // stayed sick (which have a longer deadline), and how many runs were of the second kind.
    let (mut slowest_healed, mut slowest_sick, mut sick_runs) = ((0, args.from), (0, args.from), 0);
    // Fully healed runs by the cores' options (PreVote, CheckQuorum): runs, the slowest recovery
    // and its seed, and how many recoveries took more than half the deadline. Recovery without
    // PreVote is slower by design (a candidate whose term ran ahead during the faults deposes the
    // first leaders), so one maximum over all runs would hide how the other classes fare.
    let mut by_options = [ClassTail::default(); 4];
    let half_deadline_us = args.liveness_timeouts * sim::ELECTION_TIMEOUT_US / 2;
    for seed in args.from..args.from.saturating_add(args.seeds) {
        let nodes = args.nodes.unwrap_or_else(|| SimOptions::default_nodes(seed));
        RUNNING_SEED.store(seed, Ordering::Relaxed);
        RUNNING_NODES.store(nodes, Ordering::Relaxed);
        let options = SimOptions {
            seed,
            nodes,
            bug,
            trace_capacity: args.trace,
            event_limit: args.event_limit,
            lemma_checks: !args.raft_properties_only,
            liveness_timeouts: args.liveness_timeouts,
        };
        match sim::run(&options) {
            Ok(summary) => {
                if args.verbose {
                    println!("seed {seed} ({nodes} nodes): {summary:?}");
                }
                add(&mut total, &summary);
                let slowest = if summary.stayed_sick {
                    sick_runs += 1;
                    &mut slowest_sick
                } else {
                    let class = ClassTail::index(&summary);
                    let half = half_deadline_us * ClassTail::DEADLINE_FACTORS[class];
                    by_options[class].add(&summary, seed, half);
                    &mut slowest_healed
                };
                if summary.recovery_us > slowest.0 {
                    *slowest = (summary.recovery_us, seed);
                }
            }
            Err(failure) => {
                println!("{failure}");
                println!("seeds without violation before it: {}", seed - args.from);
                return ExitCode::from(1);
            }
        }
    }
    println!(
        "{} seeds from {} without violation{}",
        args.seeds,
        args.from,
        bug.map_or(String::new(), |bug| format!(" (bug planted: {})", bug.name()))
    );
    println!(
        "totals: {} events, {:.1} s virtual, {} entries committed, {} proposals acknowledged, \
         {} leader terms, {} network faults, {} messages delivered, {} dropped, \
         {} reads answered, {} transfers, {} compactions, {} log starts sent, {} replicas \
         wiped, {} rejoins completed",
        total.events,
        total.virtual_us as f64 / 1e6,
        total.committed,
        total.acknowledged,
        total.leader_terms,
        total.network_faults,
        total.delivered,
        total.dropped,
        total.reads_answered,
        total.transfers,
        total.compactions,
        total.log_starts,
        total.wipes,
        total.rejoins
    );
    println!(
        "storage: {} crashes ({} inside a disk operation, {} with a torn last write, {} after a \
         partial writeback; {} recoveries cut a torn tail; {} of {} sealed segments reopened from their index file), {} downs of the process only (crashes or poisoned logs, in a boot that went on), {} disk faults ({} logs poisoned, {} steps refused by a \
         full disk, {} writes held until a full disk had room (truncations, log starts, hard state saves)), {} batches of {} \
         entries ({:.2} entries per batch and fdatasync; {} pipelined, {} withdrawn after a write \
         found no space); background: {} zero-fill writes, {} \
         fdatasyncs of prepared segments, {} roll-overs or truncations into a prepared segment, \
         {} segments created on the spot",
        total.crashes,
        total.crashes_in_disk_ops,
        total.torn_crashes,
        total.written_back_crashes,
        total.torn_tails_cut,
        total.segments_indexed,
        total.segments_sealed,
        total.process_kills,
        total.disk_faults,
        total.poisoned,
        total.disk_full_refusals,
        total.full_disk_holds,
        total.batches,
        total.batched_entries,
        total.batched_entries as f64 / total.batches.max(1) as f64,
        total.pipelined_batches,
        total.withdrawn_batches,
        total.background_writes,
        total.background_syncs,
        total.roll_overs_prepared,
        total.segments_created
    );
    println!(
        "slowest recovery after healing: {:.1} ms at seed {} (deadline: {} election timeouts, \
         {} with CheckQuorum only, {} times as many while a wiped replica rejoins)",
        slowest_healed.0 as f64 / 1e3,
        slowest_healed.1,
        args.liveness_timeouts,
        args.liveness_timeouts * sim::CHECK_QUORUM_ONLY_LIVENESS_FACTOR,
        sim::REJOIN_LIVENESS_FACTOR
    );
    for (index, class) in by_options.iter().enumerate() {
        if class.runs > 0 {
            println!(
                "  {:<24} {:>6} runs, slowest {:.1} ms at seed {}, {} above half the deadline",
                ClassTail::NAMES[index],
                class.runs,
                class.slowest_us as f64 / 1e3,
                class.slowest_seed,
                class.above_half
            );
        }
    }
    if sick_runs > 0 {
        println!(
            "slowest recovery with a replica that stayed sick ({sick_runs} runs): {:.1} ms at \
             seed {} (deadline: {} election timeouts)",
            slowest_sick.0 as f64 / 1e3,
            slowest_sick.1,
            args.liveness_timeouts * sim::SICK_LIVENESS_FACTOR
        );
    }
    ExitCode::SUCCESS
}

/// The recovery tail of the fully healed runs with one setting of the cores' options.
#[derive(Clone, Copy, Debug, Default)]
struct ClassTail {
    runs: u64,
    slowest_us: u64,
    slowest_seed: u64,
    above_half: u64,
}

impl ClassTail {
    const NAMES: [&'static str; 4] =
        ["PreVote and CheckQuorum:", "PreVote only:", "CheckQuorum only:", "neither:"];
    /// Each class's deadline, in multiples of the option's.
    const DEADLINE_FACTORS: [u64; 4] = [1, 1, sim::CHECK_QUORUM_ONLY_LIVENESS_FACTOR, 1];

    fn index(summary: &RunSummary) -> usize {
        match (summary.pre_vote, summary.check_quorum) {
            (true, true) => 0,
            (true, false) => 1,
            (false, true) => 2,
            (false, false) => 3,
        }
    }

    fn add(&mut self, summary: &RunSummary, seed: u64, half_deadline_us: u64) {
        self.runs += 1;
        if summary.recovery_us > self.slowest_us {
            self.slowest_us = summary.recovery_us;
            self.slowest_seed = seed;
        }
        if summary.recovery_us > half_deadline_us {
            self.above_half += 1;
        }
    }
}

fn add(total: &mut RunSummary, run: &RunSummary) {
    total.events += run.events;
    total.virtual_us += run.virtual_us;
    total.committed += run.committed;
    total.acknowledged += run.acknowledged;
    total.leader_terms += run.leader_terms;
    total.crashes += run.crashes;
    total.network_faults += run.network_faults;
    total.delivered += run.delivered;
    total.dropped += run.dropped;
    total.reads_answered += run.reads_answered;
    total.transfers += run.transfers;
    total.compactions += run.compactions;
    total.log_starts += run.log_starts;
    total.wipes += run.wipes;
    total.rejoins += run.rejoins;
    total.torn_crashes += run.torn_crashes;
    total.written_back_crashes += run.written_back_crashes;
    total.process_kills += run.process_kills;
    total.torn_tails_cut += run.torn_tails_cut;
    total.segments_indexed += run.segments_indexed;
    total.segments_sealed += run.segments_sealed;
    total.crashes_in_disk_ops += run.crashes_in_disk_ops;
    total.disk_faults += run.disk_faults;
    total.poisoned += run.poisoned;
    total.full_disk_holds += run.full_disk_holds;
    total.disk_full_refusals += run.disk_full_refusals;
    total.batches += run.batches;
    total.batched_entries += run.batched_entries;
    total.pipelined_batches += run.pipelined_batches;
    total.withdrawn_batches += run.withdrawn_batches;
    total.background_writes += run.background_writes;
    total.background_syncs += run.background_syncs;
    total.roll_overs_prepared += run.roll_overs_prepared;
    total.segments_created += run.segments_created;
}
