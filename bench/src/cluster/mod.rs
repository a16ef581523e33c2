//! The cluster benchmark, raftwal-bench's default job: an embedded raftwal cluster on loopback
//! QUIC with real files and fsyncs, driven through the remote client from this process, with
//! etcd side by side when asked.
//!
//! Owns: the workloads (closed loop, open loop, rate sweep, failover), the order of the runs
//! (systems alternate round by round on the same disk), the figures the report prints, and the
//! results directory.
//!
//! What is measured, and how (docs/benchmarks.md has the method in prose):
//! - commit latency: from the append's send (closed loop) or intended send (open loop, so a stall
//!   is charged to every request it delayed) to the client's acknowledgement, in an HDR histogram;
//! - the leader's fsyncs per second and mean entries per fsync, from its storage metrics over the
//!   measured window;
//! - tail lag: a subscriber on a follower (remote, through the client) records when each entry
//!   arrives; its lag is the time from the appender's acknowledgement of that entry to its
//!   delivery (0 when the follower delivered first);
//! - the latency floor: one fdatasync and one QUIC round trip, measured in the same run.
#![allow(clippy::disallowed_methods)] // A benchmark reads the clock.

mod runs;
mod summary;
mod sweep;

use runs::{run_etcd, run_raftwal};
use summary::summarize;
use sweep::sweep;

use crate::floor;
use crate::load::{LoadResult, Workload};
use crate::report::{Format, LatencyUs, Progress, Report, ResultRow};
use crate::results::{self, CellRecord};
use crate::systems::FsyncCounters;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A peer system to compare with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Peer {
    /// A 3-node etcd 3.4 cluster on loopback (Debian's etcd-server, installed when missing).
    Etcd,
}

/// What to sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Sweep {
    /// Open-loop rates from 10% to 110% of the closed-loop throughput.
    Rate,
}

/// Options of the cluster benchmark (the default command).
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct ClusterArgs {
    /// Payload bytes per append.
    #[arg(long, default_value_t = 1024)]
    pub(crate) payload_bytes: usize,
    /// Appenders (closed loop), or the most appends outstanding (open loop).
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) duration_s: f64,
    /// Warm-up seconds before each run.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) warmup_s: f64,
    /// Cluster size.
    #[arg(long, default_value_t = 3, value_parser = parse_nodes)]
    pub(crate) nodes: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    /// Open loop at this many appends per second (latency from the intended send time).
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Open loop: the generator wakes at most once per this many microseconds and sends what is
    /// due (each request's lateness is measured and reported as the send lag).
    #[arg(long, default_value_t = crate::load::SEND_QUANTUM.as_micros() as u64)]
    pub(crate) send_quantum_us: u64,
    /// Sweep a latency-against-throughput curve up to saturation.
    #[arg(long, value_enum)]
    pub(crate) sweep: Option<Sweep>,
    /// Stop the leader halfway through the run; report the time without commits and the
    /// latency spike.
    #[arg(long)]
    pub(crate) failover: bool,
    /// With --failover: stop the leader gracefully instead of killing it. raftwal's leader
    /// hands its leadership to a follower first (`Node::shutdown`, as `raftwal serve` does on
    /// SIGTERM); etcd's leader gets SIGTERM, on which etcd also transfers its leadership.
    #[arg(long, requires = "failover")]
    pub(crate) graceful: bool,
    /// Run a peer system side by side (alternating runs on the same disk).
    #[arg(long, value_enum)]
    pub(crate) peer: Option<Peer>,
    /// Rounds per system when a peer runs (systems alternate each round).
    #[arg(long, default_value_t = 2)]
    pub(crate) rounds: usize,
    /// Skip the 1-appender latency-floor run of the default job.
    #[arg(long)]
    pub(crate) no_floor_run: bool,
    /// Where the clusters keep their data (a fresh subdirectory is made and removed).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// Where results directories are written.
    #[arg(long, default_value = "bench-results")]
    pub(crate) out: PathBuf,
    /// How the raftwal nodes make each batch durable: an RWF_DSYNC write through io_uring
    /// (`dsync`, the node's default), an fdatasync linked after the write (`ring`, run by a
    /// kernel worker) or issued by the shard thread (`thread`). For comparing them.
    #[arg(long, value_enum, default_value_t = FsyncArg::Dsync)]
    pub(crate) fsync: FsyncArg,
    /// The raftwal nodes' `storage.segment_size_bytes`, in MiB (default: the node's, 64 MiB).
    /// For measuring what segment roll-overs cost.
    #[arg(long)]
    pub(crate) segment_mib: Option<u64>,
    /// The raftwal nodes' `storage.zero_fill` (default: the node's, `never`): whether each log
    /// writes zeros ahead of its writer. For measuring what the zeros give or cost.
    #[arg(long, value_enum)]
    pub(crate) zero_fill: Option<ZeroFillArg>,
    /// The raftwal nodes' `storage.zero_chunk_bytes`, in KiB (default: the node's, 128 KiB).
    /// For measuring what the background zero-fill writes cost the batches queued behind them.
    #[arg(long, value_parser = clap::value_parser!(u64).range(4..=65536))]
    pub(crate) zero_chunk_kib: Option<u64>,
    /// The raftwal nodes' `storage.batches_in_flight` (default: the node's). For measuring
    /// what pipelining a log's batches to the disk gives.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=8))]
    pub(crate) batches_in_flight: Option<u64>,
    /// Logs the raftwal cluster keeps (`log_count`); appender k writes to log k mod N, and the
    /// leaderships are spread over the nodes (log i led by node i mod nodes + 1) before the load
    /// starts. The fsync figures and the subscriber are log 0's.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub(crate) logs: u64,
}

/// The nodes' `storage.fsync` setting, as a command-line value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FsyncArg {
    /// The shard thread issues the fdatasync after the ring's write.
    Thread,
    /// The fdatasync is linked after the write in io_uring.
    Ring,
    /// The write itself is durable (RWF_DSYNC), through io_uring.
    Dsync,
}

impl FsyncArg {
    pub(crate) fn choice(self) -> raftwal::config::FsyncChoice {
        match self {
            FsyncArg::Thread => raftwal::config::FsyncChoice::Thread,
            FsyncArg::Ring => raftwal::config::FsyncChoice::Ring,
            FsyncArg::Dsync => raftwal::config::FsyncChoice::Dsync,
        }
    }
}

/// The nodes' `storage.zero_fill` setting, as a command-line value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ZeroFillArg {
    /// Batches write into blocks only preallocated.
    Never,
    /// Zeros while the recent batches average below 1 MiB.
    Auto,
    /// Zeros as fast as the device takes them.
    Always,
}

impl ZeroFillArg {
    pub(crate) fn choice(self) -> raftwal::config::ZeroFillChoice {
        match self {
            ZeroFillArg::Never => raftwal::config::ZeroFillChoice::Never,
            ZeroFillArg::Auto => raftwal::config::ZeroFillChoice::Auto,
            ZeroFillArg::Always => raftwal::config::ZeroFillChoice::Always,
        }
    }
}

fn parse_nodes(text: &str) -> Result<usize, String> {
    match text {
        "1" | "3" | "5" => text.parse().map_err(|e| format!("{e}")),
        _ => Err("a cluster has 1, 3 or 5 nodes".into()),
    }
}

/// Which system a run drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    Raftwal,
    Etcd,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Raftwal => "raftwal",
            System::Etcd => "etcd",
        }
    }
}

/// One run's figures beside the load result.
#[derive(Debug, Default)]
struct RunExtras {
    fsyncs: Option<FsyncCounters>,
    follower_fsyncs: Option<FsyncCounters>,
    tail_lag_ns: Option<hdrhistogram::Histogram<u64>>,
    tail_delivered: u64,
    /// Of `tail_delivered`, the entries the subscriber had no later than the appender's ack.
    tail_before_ack: u64,
    /// Acknowledged entries of log 0 the subscriber had not received when it was stopped (in
    /// the tail lag with the lag they had at least).
    tail_undelivered: u64,
    /// Logs the load was spread over (raftwal), when more than one.
    logs: u64,
    failover: Option<(f64, f64)>,
    /// The failover stopped the leader gracefully (`--graceful`) rather than killing it.
    failover_graceful: bool,
}

/// The highest `--rate`: one send per nanosecond, the open loop's schedule resolution.
const RATE_PER_S_MAX: f64 = 1e9;

/// The command line's numbers the job cannot run with, as a message (before anything starts:
/// a value `Duration` cannot hold panicked, a rate of 0 panicked inside the generator and left
/// the run without load, an infinite one sent with no schedule).
fn check_args(args: &ClusterArgs) -> Result<(), String> {
    if args.payload_bytes == 0 || args.concurrency == 0 {
        return Err("payload and concurrency must be positive".into());
    }
    crate::report::check_seconds("duration-s", args.duration_s, false)?;
    crate::report::check_seconds("warmup-s", args.warmup_s, true)?;
    if let Some(rate) = args.rate {
        // The schedule's resolution is a nanosecond: above 10^9 appends/s every send was due
        // at the start, and the schedule never reached the end of the window.
        if !(rate.is_finite() && rate > 0.0 && rate <= RATE_PER_S_MAX) {
            return Err(format!(
                "--rate must be a positive number of appends/s up to {RATE_PER_S_MAX:e}, not {rate}"
            ));
        }
    }
    Ok(())
}

/// The whole job.
pub(crate) fn run(args: &ClusterArgs) -> Result<(), String> {
    check_args(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run_job(args))
}

async fn run_job(args: &ClusterArgs) -> Result<(), String> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("raftwal-bench-")
        .tempdir_in(&base)
        .map_err(|e| format!("{}: {e}", base.display()))?;
    let mut systems = vec![System::Raftwal];
    if args.peer == Some(Peer::Etcd) {
        systems.push(System::Etcd);
    }
    let rounds = if systems.len() > 1 { args.rounds.max(1) } else { 1 };
    let mut report = Report::new("cluster");
    let mut cells = Vec::new();
    let mut sweep_points = Vec::new();
    let mut progress = Progress::default();

    // The floor: one fdatasync on this disk, one QUIC round trip on loopback.
    let disk = floor::durable_write(work.path(), 300)?;
    let mut rtt_us = None;

    for round in 0..rounds {
        for &system in &systems {
            let dir = work.path().join(format!("{}-{round}", system.name()));
            if args.sweep.is_some() {
                sweep(args, system, &dir, &mut report, &mut sweep_points, &mut progress).await?;
                continue;
            }
            let workload = Workload {
                payload_bytes: args.payload_bytes,
                concurrency: args.concurrency,
                rate_per_s: args.rate,
                send_quantum: Duration::from_micros(args.send_quantum_us),
                warmup: Duration::from_secs_f64(args.warmup_s),
                duration: Duration::from_secs_f64(args.duration_s),
            };
            let label =
                format!("{} c={}{}", system.name(), args.concurrency, round_tag(rounds, round));
            let (result, extras) = match system {
                System::Raftwal => {
                    let (r, e, rtt) =
                        run_raftwal(args, &dir, &workload, &label, true, &mut progress).await?;
                    rtt_us = rtt_us.or(rtt);
                    (r, e)
                }
                System::Etcd => run_etcd(args, &dir, &workload, &label, &mut progress).await?,
            };
            report.results.push(row(system, &workload, &result, &extras, round));
            cells.push(CellRecord {
                label: label.clone(),
                latency_ns: result.latency_ns.clone(),
                timeline: result.timeline.clone(),
            });
            // The latency floor run: one appender, default job only, and not after a main run
            // of one appender (a second, shorter run of the same load would be mixed with it in
            // the summary's medians).
            if !args.no_floor_run && !args.failover && args.rate.is_none() && args.concurrency > 1 {
                let single = Workload {
                    concurrency: 1,
                    rate_per_s: None,
                    warmup: Duration::from_secs(1),
                    duration: Duration::from_secs_f64((args.duration_s / 4.0).clamp(1.0, 5.0)),
                    ..workload.clone()
                };
                let label = format!("{} c=1{}", system.name(), round_tag(rounds, round));
                let dir = work.path().join(format!("{}-{round}-c1", system.name()));
                let (result, extras) = match system {
                    System::Raftwal => {
                        let (r, e, _) =
                            run_raftwal(args, &dir, &single, &label, false, &mut progress).await?;
                        (r, e)
                    }
                    System::Etcd => run_etcd(args, &dir, &single, &label, &mut progress).await?,
                };
                report.results.push(row(system, &single, &result, &extras, round));
                cells.push(CellRecord {
                    label,
                    latency_ns: result.latency_ns.clone(),
                    timeline: result.timeline.clone(),
                });
            }
        }
    }
    progress.finish();

    let summary = summarize(args, &report, disk, rtt_us);
    let mut extra = serde_json::Map::new();
    extra.insert(
        "floor".into(),
        serde_json::json!({
            "fdatasync_us_p50": disk.fdatasync_us,
            "write_fdatasync_us_p50": disk.write_fdatasync_us,
            "quic_rtt_us_p50": rtt_us,
        }),
    );
    extra.insert("machine".into(), machine());
    extra.insert("settings".into(), settings(args));
    let stamp =
        results::timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    let out = results::write(&args.out, &stamp, &report, extra, &cells, &sweep_points, &summary)?;
    match args.format {
        Format::Json => report.print(Format::Json).map_err(|e| e.to_string())?,
        Format::Table => {
            report.print(Format::Table).map_err(|e| e.to_string())?;
            println!("\n{summary}");
            println!("results: {}/results.json and report.html", out.display());
        }
    }
    Ok(())
}

fn round_tag(rounds: usize, round: usize) -> String {
    if rounds > 1 {
        format!(" #{}", round + 1)
    } else {
        String::new()
    }
}

/// What the run was made with: the load's shape and the raftwal nodes' storage settings (the
/// node's defaults where the command line left them), so a results file says how to repeat it.
fn settings(args: &ClusterArgs) -> serde_json::Value {
    let storage = raftwal::config::StorageTuning::default();
    // The name the command line takes for it.
    let fsync = clap::ValueEnum::to_possible_value(&args.fsync).map(|v| v.get_name().to_owned());
    let zero_fill = match args.zero_fill {
        Some(arg) => clap::ValueEnum::to_possible_value(&arg).map(|v| v.get_name().to_owned()),
        None => Some(format!("{:?}", storage.zero_fill).to_lowercase()),
    };
    serde_json::json!({
        "raftwal_version": env!("CARGO_PKG_VERSION"),
        "nodes": args.nodes,
        "logs": args.logs,
        "duration_s": args.duration_s,
        "warmup_s": args.warmup_s,
        "rate": args.rate,
        "storage": {
            "fsync": fsync,
            "direct_io": storage.direct_io,
            "zero_fill": zero_fill,
            "segment_size_bytes": args.segment_mib.map_or(storage.segment_size_bytes, |mib| mib << 20),
            "zero_chunk_bytes": args
                .zero_chunk_kib
                .map_or(storage.zero_chunk_bytes as u64, |kib| kib << 10),
            "batches_in_flight": args.batches_in_flight.unwrap_or(storage.batches_in_flight as u64),
        },
    })
}

fn machine() -> serde_json::Value {
    let cores = std::thread::available_parallelism().map_or(0, |p| p.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    serde_json::json!({ "cores": cores, "kernel": kernel.trim() })
}

fn row(
    system: System,
    workload: &Workload,
    result: &LoadResult,
    extras: &RunExtras,
    round: usize,
) -> ResultRow {
    let mut row = ResultRow {
        system: system.name().into(),
        payload_bytes: workload.payload_bytes as u64,
        concurrency: workload.concurrency as u64,
        entries_per_s: result.entries_per_s(),
        mb_per_s: result.mb_per_s(workload.payload_bytes),
        latency_us: LatencyUs::from_histogram_ns(&result.latency_ns),
        extra: serde_json::Map::new(),
    }
    .with("round", round as u64 + 1)
    .with("loop", if workload.rate_per_s.is_some() { "open" } else { "closed" })
    .with("errors", result.errors);
    if extras.logs > 1 {
        row = row.with("logs", extras.logs);
    }
    if let Some(rate) = workload.rate_per_s {
        row = row.with("rate", rate.round()).with("queued", result.queued);
        if !result.send_lag_ns.is_empty() {
            // The generator's own lateness, part of every latency above (see `load::SEND_QUANTUM`).
            let lag = &result.send_lag_ns;
            row = row
                .with("send_lag_us_p50", quantile_us(lag, 0.5))
                .with("send_lag_us_p99", quantile_us(lag, 0.99));
        }
    }
    if let Some(first) = result.error_samples.first() {
        row = row.with("first_error", first.clone());
    }
    if let Some(f) = extras.fsyncs {
        let secs = result.elapsed.as_secs_f64().max(1e-9);
        row = row.with("leader_fsyncs_per_s", (f.batches as f64 / secs).round());
        if f.batches > 0 {
            row = row.with("mean_batch_entries", tenth(f.entries as f64 / f.batches as f64));
            row = row
                .with("leader_pipelined_pct", tenth(100.0 * f.pipelined as f64 / f.batches as f64));
        }
        row = row.with("leader_zero_fill_mb_per_s", tenth(f.zero_fill_bytes as f64 / 1e6 / secs));
    }
    if let Some(us) = extras.fsyncs.and_then(|f| f.mean_batch_us()) {
        row = row.with("leader_batch_us_mean", tenth(us));
    }
    if let Some(f) = extras.follower_fsyncs {
        let secs = result.elapsed.as_secs_f64().max(1e-9);
        row = row.with("follower_fsyncs_per_s", (f.batches as f64 / secs).round());
        if let Some(us) = f.mean_batch_us() {
            row = row.with("follower_batch_us_mean", tenth(us));
        }
        if f.batches > 0 {
            row = row.with(
                "follower_pipelined_pct",
                tenth(100.0 * f.pipelined as f64 / f.batches as f64),
            );
        }
    }
    if let Some(lag) = &extras.tail_lag_ns {
        row = row
            .with("tail_lag_us_p50", quantile_us(lag, 0.5))
            .with("tail_lag_us_p99", quantile_us(lag, 0.99))
            .with("tail_delivered", extras.tail_delivered)
            .with("tail_undelivered", extras.tail_undelivered);
        if extras.tail_delivered > 0 {
            let pct = 100.0 * extras.tail_before_ack as f64 / extras.tail_delivered as f64;
            row = row.with("tail_before_ack_pct", tenth(pct));
        }
    }
    if let Some((gap_ms, spike_ms)) = extras.failover {
        row = row
            .with("failover_stop", if extras.failover_graceful { "graceful" } else { "kill" })
            .with("unavailable_ms", tenth(gap_ms))
            .with("max_latency_after_kill_ms", tenth(spike_ms));
    }
    row
}

/// `v` rounded to one decimal, as the report's figures are.
fn tenth(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The `q` quantile of a nanosecond histogram, in microseconds to one decimal.
fn quantile_us(histogram: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    tenth(histogram.value_at_quantile(q) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A one-second job of a 3-node cluster with the command line's defaults otherwise (the
    /// output directory is set by [`short_job`]).
    pub(super) const ARGS: ClusterArgs = ClusterArgs {
        payload_bytes: 1024,
        concurrency: 64,
        duration_s: 1.0,
        warmup_s: 0.3,
        nodes: 3,
        format: Format::Json,
        rate: None,
        send_quantum_us: 50,
        sweep: None,
        failover: false,
        graceful: false,
        peer: None,
        rounds: 1,
        no_floor_run: false,
        dir: None,
        out: PathBuf::new(),
        fsync: FsyncArg::Dsync,
        segment_mib: None,
        zero_fill: None,
        zero_chunk_kib: None,
        batches_in_flight: None,
        logs: 1,
    };

    fn short_job(out: &Path, args: ClusterArgs) -> ClusterArgs {
        ClusterArgs { out: out.to_owned(), ..args }
    }

    /// The `results.json` of the one run written under `out`.
    fn results_document(out: &Path) -> serde_json::Value {
        let dirs: Vec<_> = std::fs::read_dir(out).unwrap().collect();
        let dir = dirs[0].as_ref().unwrap().path();
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap()
    }

    /// The whole job on a real 3-node cluster, briefly: every run row has the documented shape,
    /// the figures are positive, and the results directory holds the JSON and the plots. (A
    /// smoke test of the harness; speed is measured by running the benchmark, not here.)
    #[test]
    fn a_short_default_job_writes_a_complete_report() {
        let out = tempfile::tempdir().unwrap();
        let args =
            short_job(out.path(), ClusterArgs { payload_bytes: 256, concurrency: 8, ..ARGS });
        run(&args).unwrap();
        let dirs: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
        assert_eq!(dirs.len(), 1);
        let dir = dirs[0].as_ref().unwrap().path();
        for file in ["results.json", "report.html", "latency.svg", "throughput.svg"] {
            assert!(dir.join(file).exists(), "{file} missing");
        }
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap())
                .unwrap();
        assert_eq!(doc["bench"], "cluster");
        let rows = doc["results"].as_array().unwrap();
        assert_eq!(rows.len(), 2, "the main run and the 1-appender run");
        for row in rows {
            assert_eq!(row["system"], "raftwal");
            assert_eq!(row["payload_bytes"], 256);
            assert_eq!(row["errors"], 0, "{row}");
            assert!(row["entries_per_s"].as_f64().unwrap() > 0.0);
            for q in ["p50", "p90", "p99", "p999", "max"] {
                assert!(row["latency_us"][q].as_f64().unwrap() > 0.0, "{q} in {row}");
            }
        }
        assert!(rows[0]["tail_delivered"].as_u64().unwrap() > 0, "the follower's tail saw entries");
        assert!(rows[0]["leader_fsyncs_per_s"].as_f64().unwrap() > 0.0);
        assert!(doc["floor"]["fdatasync_us_p50"].as_f64().unwrap() > 0.0);
        let storage = &doc["settings"]["storage"];
        assert_eq!(storage["fsync"], "dsync", "{storage}");
        assert_eq!(storage["zero_chunk_bytes"], 128 << 10, "{storage}");
        assert_eq!(storage["zero_fill"], "never", "{storage}");
        assert_eq!(storage["segment_size_bytes"], 64 << 20, "{storage}");
        assert_eq!(doc["settings"]["nodes"], 3);
    }

    /// With one appender the main run is the 1-appender run: no second one follows it. (It
    /// did, a shorter one of the same concurrency, and the summary took the median of both as
    /// the main run's throughput and latency, and of both again as the 1-appender figures.)
    #[test]
    fn a_one_appender_job_runs_once() {
        let out = tempfile::tempdir().unwrap();
        let args =
            short_job(out.path(), ClusterArgs { payload_bytes: 256, concurrency: 1, ..ARGS });
        run(&args).unwrap();
        let doc = results_document(out.path());
        let rows = doc["results"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0]["concurrency"], 1);
    }

    /// An open-loop run over three logs: one row, marked open, with the generator's own lateness
    /// reported and the schedule's appends acknowledged (a smoke test; speed is measured by the
    /// benchmark).
    #[test]
    fn an_open_loop_run_reports_its_send_lag() {
        let out = tempfile::tempdir().unwrap();
        let args = short_job(
            out.path(),
            ClusterArgs {
                payload_bytes: 128,
                rate: Some(400.0),
                no_floor_run: true,
                fsync: FsyncArg::Thread,
                logs: 3,
                ..ARGS
            },
        );
        run(&args).unwrap();
        let doc = results_document(out.path());
        let rows = doc["results"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "no 1-appender run after an open loop");
        let row = &rows[0];
        assert_eq!(row["loop"], "open");
        assert_eq!(row["rate"], 400.0);
        // Three logs, each led by a different node (the run fails if the leaderships could not
        // be spread), appenders spread over them.
        assert_eq!(row["logs"], 3);
        assert_eq!(row["errors"], 0, "{row}");
        // 400 appends are due in the window, each measured to its answer (a stalled disk makes
        // some wait for a slot, not vanish). The throughput counts the acknowledgements inside
        // the window: at most those 400 and the 64 that may be outstanding when it opens.
        let acked = row["entries_per_s"].as_f64().unwrap();
        assert!(acked <= 400.0 + 64.0, "{row}");
        assert!(row["queued"].as_u64().is_some(), "{row}");
        assert!(row["send_lag_us_p50"].as_f64().unwrap() > 0.0, "{row}");
        assert!(
            row["send_lag_us_p99"].as_f64().unwrap() >= row["send_lag_us_p50"].as_f64().unwrap()
        );
    }

    /// Numbers the job cannot run with are refused with a message before anything starts (they
    /// panicked, or ran a cluster with no load or an unpaced one).
    #[test]
    fn bad_numbers_are_refused_before_anything_starts() {
        let out = tempfile::tempdir().unwrap();
        let bad = [
            ClusterArgs { duration_s: f64::NAN, ..ARGS },
            ClusterArgs { duration_s: f64::INFINITY, ..ARGS },
            ClusterArgs { duration_s: 0.0, ..ARGS },
            ClusterArgs { warmup_s: -1.0, ..ARGS },
            ClusterArgs { rate: Some(0.0), ..ARGS },
            ClusterArgs { rate: Some(-5.0), ..ARGS },
            ClusterArgs { rate: Some(f64::INFINITY), ..ARGS },
            ClusterArgs { concurrency: 0, ..ARGS },
        ];
        for args in bad {
            let args = short_job(out.path(), args);
            let err = run(&args).expect_err("refused");
            assert!(err.contains("must be"), "{err}");
        }
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "nothing ran");
        assert!(check_args(&ClusterArgs { warmup_s: 0.0, rate: Some(0.5), ..ARGS }).is_ok());
        assert!(check_args(&ClusterArgs { rate: Some(1e9), ..ARGS }).is_ok());
    }

    /// A rate above 10^9 appends/s has no interval at the schedule's nanosecond resolution:
    /// every send was due at the start, the schedule never reached the end of the window, and
    /// the run never finished. It is refused like the other numbers the job cannot run with.
    #[test]
    fn a_rate_beyond_the_schedules_resolution_is_refused() {
        for rate in [1.5e9, 1e12, f64::MAX] {
            let err = check_args(&ClusterArgs { rate: Some(rate), ..ARGS }).expect_err("refused");
            assert!(err.contains("must be"), "{err}");
        }
    }

    #[test]
    fn cluster_sizes_are_1_3_or_5() {
        assert_eq!(parse_nodes("5"), Ok(5));
        assert!(parse_nodes("2").is_err());
    }
}
