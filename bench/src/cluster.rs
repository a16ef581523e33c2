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

use crate::floor;
use crate::load::{self, LoadResult, Workload};
use crate::report::{latency_histogram_ns, Format, LatencyUs, Progress, Report, ResultRow};
use crate::results::{self, CellRecord, SweepPoint};
use crate::systems::{agreed_leader, FsyncCounters, RaftwalCluster, RaftwalTarget};
use raftwal_wire::types::LogIndex;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    /// Sweep a latency-against-throughput curve up to saturation.
    #[arg(long, value_enum)]
    pub(crate) sweep: Option<Sweep>,
    /// Stop the leader halfway through the run; report the time without commits and the
    /// latency spike.
    #[arg(long)]
    pub(crate) failover: bool,
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
    tail_lag_ns: Option<hdrhistogram::Histogram<u64>>,
    tail_delivered: u64,
    failover: Option<(f64, f64)>,
}

/// The whole job.
pub(crate) fn run(args: &ClusterArgs) -> Result<(), String> {
    if args.payload_bytes == 0 || args.concurrency == 0 || args.duration_s <= 0.0 {
        return Err("payload, concurrency and duration must be positive".into());
    }
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
    let fsync_us = floor::fdatasync_us(work.path(), 300)?;
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
            // The latency floor run: one appender, default job only.
            if !args.no_floor_run && !args.failover && args.rate.is_none() {
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

    let summary = summarize(args, &report, fsync_us, rtt_us);
    let mut extra = serde_json::Map::new();
    extra.insert(
        "floor".into(),
        serde_json::json!({ "fdatasync_us_p50": fsync_us, "quic_rtt_us_p50": rtt_us }),
    );
    extra.insert("machine".into(), machine());
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
    if let Some(rate) = workload.rate_per_s {
        row = row.with("rate", rate).with("dropped", result.dropped);
    }
    if let Some(first) = result.error_samples.first() {
        row = row.with("first_error", first.clone());
    }
    if let Some(f) = extras.fsyncs {
        let secs = result.elapsed.as_secs_f64().max(1e-9);
        row = row.with("leader_fsyncs_per_s", (f.batches as f64 / secs).round());
        if f.batches > 0 {
            row = row.with(
                "mean_batch_entries",
                ((f.entries as f64 / f.batches as f64) * 10.0).round() / 10.0,
            );
        }
    }
    if let Some(lag) = &extras.tail_lag_ns {
        let us = |q: f64| (lag.value_at_quantile(q) as f64 / 100.0).round() / 10.0;
        row = row
            .with("tail_lag_us_p50", us(0.5))
            .with("tail_lag_us_p99", us(0.99))
            .with("tail_delivered", extras.tail_delivered);
    }
    if let Some((gap_ms, spike_ms)) = extras.failover {
        row = row.with("unavailable_ms", gap_ms).with("max_latency_after_kill_ms", spike_ms);
    }
    row
}

/// Runs `workload` against a fresh raftwal cluster in `dir`. Returns the load result, the extra
/// figures, and the QUIC round trip measured on it before the load.
async fn run_raftwal(
    args: &ClusterArgs,
    dir: &Path,
    workload: &Workload,
    label: &str,
    with_tail: bool,
    progress: &mut Progress,
) -> Result<(LoadResult, RunExtras, Option<f64>), String> {
    progress.set(&format!("[{label}] starting a {}-node raftwal cluster", args.nodes));
    // Starting waits for a leader with blocking calls: do it off this thread's runtime.
    let (nodes, start_dir) = (args.nodes, dir.to_owned());
    let cluster = tokio::task::spawn_blocking(move || RaftwalCluster::start(nodes, &start_dir))
        .await
        .map_err(|e| e.to_string())??;
    let leader = agreed_leader(&cluster.logs()).await.ok_or("no leader after start")?;
    let follower = cluster.follower_of(leader);
    let rtt = floor::quic_rtt_us(&cluster.tls_dir, cluster.addrs[follower], 300).await.ok();
    let client = Arc::new(cluster.client()?);
    let cluster = Rc::new(RefCell::new(cluster));

    // The follower's subscriber (only with followers).
    let delivered: Rc<RefCell<Vec<(u64, Instant)>>> = Rc::new(RefCell::new(Vec::new()));
    let tail_task = (with_tail && args.nodes > 1).then(|| {
        let mut tail = client.subscribe_at(follower, LogIndex(1));
        let delivered = delivered.clone();
        tokio::task::spawn_local(async move {
            while let Ok(entry) = tail.next().await {
                delivered.borrow_mut().push((entry.index.get(), Instant::now()));
            }
        })
    });

    // Fsync counters over the measured window, and the failover kill.
    let window = {
        let cluster = cluster.clone();
        let (warmup, duration, failover) = (workload.warmup, workload.duration, args.failover);
        tokio::task::spawn_local(async move {
            tokio::time::sleep(warmup).await;
            let logs = cluster.borrow().logs();
            let leader = agreed_leader(&logs).await.unwrap_or(leader);
            let before = cluster.borrow().fsync_counters(leader);
            let mut killed_at = None;
            if failover {
                tokio::time::sleep(duration / 2).await;
                let logs = cluster.borrow().logs();
                if let Some(victim) = agreed_leader(&logs).await {
                    if cluster.borrow_mut().stop_node(victim) {
                        killed_at = Some(Instant::now());
                    }
                }
                tokio::time::sleep(duration / 2).await;
            } else {
                tokio::time::sleep(duration).await;
            }
            let after = cluster.borrow().fsync_counters(leader);
            let counters = FsyncCounters {
                batches: after.batches.saturating_sub(before.batches),
                entries: after.entries.saturating_sub(before.entries),
                latency_us_sum: after.latency_us_sum.saturating_sub(before.latency_us_sum),
            };
            (counters, killed_at)
        })
    };

    let target = Rc::new(RaftwalTarget(client.clone()));
    let started = Instant::now();
    let total = (workload.warmup + workload.duration).as_secs_f64();
    let result = load::run(target, workload, with_tail || args.failover, |elapsed, done| {
        let rate = done as f64 / elapsed.saturating_sub(workload.warmup).as_secs_f64().max(1e-3);
        let shown = if elapsed > workload.warmup {
            format!("{rate:>9.0} appends/s")
        } else {
            "warming up".into()
        };
        progress.set(&format!("[{label}] {:>5.1}/{total:.1} s  {shown}", elapsed.as_secs_f64()));
    })
    .await;
    let _ = started;
    let (fsyncs, killed_at) = window.await.map_err(|e| e.to_string())?;
    if let Some(task) = tail_task {
        // Let the subscriber take what is committed, then stop it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        task.abort();
    }
    let mut extras =
        RunExtras { fsyncs: (!args.failover).then_some(fsyncs), ..RunExtras::default() };
    if with_tail && args.nodes > 1 {
        let (lag, count) = tail_lag(&result.acks, &delivered.borrow());
        extras.tail_lag_ns = Some(lag);
        extras.tail_delivered = count;
    }
    if let Some(killed) = killed_at {
        extras.failover = Some(failover_figures(&result, killed));
    }
    client.close();
    // Stopping joins node threads: do it off this thread's runtime.
    let mut cluster = Rc::try_unwrap(cluster).map_err(|_| "cluster still shared")?.into_inner();
    tokio::task::spawn_blocking(move || cluster.stop()).await.map_err(|e| e.to_string())?;
    Ok((result, extras, rtt))
}

/// Lag of each delivered entry behind its acknowledgement.
fn tail_lag(
    acks: &[(u64, Instant)],
    delivered: &[(u64, Instant)],
) -> (hdrhistogram::Histogram<u64>, u64) {
    let acked: HashMap<u64, Instant> = acks.iter().copied().collect();
    let mut lag = latency_histogram_ns();
    let mut count = 0;
    for (index, at) in delivered {
        if let Some(acked_at) = acked.get(index) {
            let ns = at.saturating_duration_since(*acked_at).as_nanos() as u64;
            lag.saturating_record(ns.max(1));
            count += 1;
        }
    }
    (lag, count)
}

/// The longest time without an acknowledgement around the kill, and the slowest append that
/// completed after it, both in ms.
fn failover_figures(result: &LoadResult, killed: Instant) -> (f64, f64) {
    let mut acks: Vec<Instant> = result.acks.iter().map(|(_, at)| *at).collect();
    acks.sort();
    let before = acks.iter().rev().find(|at| **at <= killed).copied().unwrap_or(killed);
    let after = acks.iter().find(|at| **at > killed).copied();
    let gap = after.map_or(f64::NAN, |a| a.duration_since(before).as_secs_f64() * 1000.0);
    let max_ms = result.latency_ns.max() as f64 / 1e6;
    (gap, max_ms)
}

#[cfg(feature = "etcd")]
async fn run_etcd(
    args: &ClusterArgs,
    dir: &Path,
    workload: &Workload,
    label: &str,
    progress: &mut Progress,
) -> Result<(LoadResult, RunExtras), String> {
    use crate::etcd::EtcdCluster;
    progress.set(&format!("[{label}] starting a {}-node etcd cluster", args.nodes));
    let base_port = 23_790 + (std::process::id() % 200) as u16 * 10;
    let mut cluster = EtcdCluster::start(args.nodes, dir, base_port).await?;
    let target = Rc::new(cluster.target().await?);
    // The killer task owns the cluster while the load runs, and hands it back at the end.
    let at = workload.warmup + workload.duration / 2;
    let failover = args.failover;
    let killer = tokio::task::spawn_local(async move {
        let mut killed = None;
        if failover {
            tokio::time::sleep(at).await;
            let when = Instant::now();
            killed = cluster.kill_leader().await.ok().map(|_| when);
        }
        (cluster, killed)
    });
    let total = (workload.warmup + workload.duration).as_secs_f64();
    let result = load::run(target, workload, args.failover, |elapsed, done| {
        let rate = done as f64 / elapsed.saturating_sub(workload.warmup).as_secs_f64().max(1e-3);
        let shown = if elapsed > workload.warmup {
            format!("{rate:>9.0} puts/s")
        } else {
            "warming up".into()
        };
        progress.set(&format!("[{label}] {:>5.1}/{total:.1} s  {shown}", elapsed.as_secs_f64()));
    })
    .await;
    let mut extras = RunExtras::default();
    let (cluster, killed) = killer.await.map_err(|e| e.to_string())?;
    if let Some(killed) = killed {
        extras.failover = Some(failover_figures(&result, killed));
    }
    drop(cluster);
    Ok((result, extras))
}

#[cfg(not(feature = "etcd"))]
async fn run_etcd(
    _args: &ClusterArgs,
    _dir: &Path,
    _workload: &Workload,
    _label: &str,
    _progress: &mut Progress,
) -> Result<(LoadResult, RunExtras), String> {
    Err("this raftwal-bench was built without the `etcd` feature; build it with \
         `--features etcd` (the default) to run --peer etcd"
        .into())
}

/// The rate sweep of one system: a short closed-loop run finds the saturation throughput, then
/// open-loop runs at fractions of it.
async fn sweep(
    args: &ClusterArgs,
    system: System,
    dir: &Path,
    report: &mut Report,
    points: &mut Vec<SweepPoint>,
    progress: &mut Progress,
) -> Result<(), String> {
    let step = Duration::from_secs_f64((args.duration_s / 4.0).clamp(2.0, 10.0));
    let closed = Workload {
        payload_bytes: args.payload_bytes,
        concurrency: args.concurrency,
        rate_per_s: None,
        warmup: Duration::from_secs(1),
        duration: step,
    };
    let label = format!("{} saturation", system.name());
    let saturation =
        run_system(args, system, &dir.join("closed"), &closed, &label, progress).await?;
    let max_rate = saturation.entries_per_s().max(1.0);
    for fraction in [0.1, 0.25, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1] {
        let open =
            Workload { rate_per_s: Some(max_rate * fraction), concurrency: 4096, ..closed.clone() };
        let label = format!("{} {:.0}%", system.name(), fraction * 100.0);
        let dir = dir.join(format!("open-{}", (fraction * 100.0) as u32));
        let result = run_system(args, system, &dir, &open, &label, progress).await?;
        let latency = LatencyUs::from_histogram_ns(&result.latency_ns);
        points.push(SweepPoint {
            system: system.name().into(),
            entries_per_s: result.entries_per_s(),
            p50_ms: latency.p50 / 1000.0,
            p99_ms: latency.p99 / 1000.0,
        });
        report.results.push(
            row(system, &open, &result, &RunExtras::default(), 0).with("rate_fraction", fraction),
        );
    }
    Ok(())
}

async fn run_system(
    args: &ClusterArgs,
    system: System,
    dir: &Path,
    workload: &Workload,
    label: &str,
    progress: &mut Progress,
) -> Result<LoadResult, String> {
    let args = ClusterArgs { failover: false, ..args.clone() };
    Ok(match system {
        System::Raftwal => run_raftwal(&args, dir, workload, label, false, progress).await?.0,
        System::Etcd => run_etcd(&args, dir, workload, label, progress).await?.0,
    })
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

/// The figures a reader wants first, as text.
fn summarize(args: &ClusterArgs, report: &Report, fsync_us: f64, rtt_us: Option<f64>) -> String {
    let mut lines = Vec::new();
    let pick = |system: &str, concurrency: u64| -> Vec<&ResultRow> {
        report
            .results
            .iter()
            .filter(|r| {
                r.system == system
                    && r.concurrency == concurrency
                    && !r.extra.contains_key("rate_fraction")
            })
            .collect()
    };
    let conc = args.concurrency as u64;
    let main = pick("raftwal", conc);
    if let Some(rate) = median(main.iter().map(|r| r.entries_per_s).collect()) {
        let p99 = median(main.iter().map(|r| r.latency_us.p99).collect()).unwrap_or(f64::NAN);
        lines.push(format!(
            "raftwal, {} nodes, {} B, {} appenders: {:.0} appends/s, {:.1} MB/s, commit p99 {:.0} us",
            args.nodes,
            args.payload_bytes,
            conc,
            rate,
            rate * args.payload_bytes as f64 / 1e6,
            p99
        ));
    }
    for r in &main {
        if let (Some(f), Some(b)) =
            (r.extra.get("leader_fsyncs_per_s"), r.extra.get("mean_batch_entries"))
        {
            lines.push(format!("leader: {f} fsyncs/s, {b} entries per fsync (mean)"));
        }
        if let (Some(p50), Some(p99)) =
            (r.extra.get("tail_lag_us_p50"), r.extra.get("tail_lag_us_p99"))
        {
            lines.push(format!("subscriber on a follower: tail lag p50 {p50} us, p99 {p99} us (after the appender's ack)"));
        }
        if let Some(gap) = r.extra.get("unavailable_ms") {
            lines.push(format!("failover: {gap} ms without a commit"));
        }
    }
    let floor = 2.0 * fsync_us + 2.0 * rtt_us.unwrap_or(f64::NAN);
    lines.push(format!(
        "floor (same run): fdatasync p50 {fsync_us:.0} us, QUIC round trip p50 {} us => 2 fdatasyncs + 2 round trips = {floor:.0} us",
        rtt_us.map_or("n/a".into(), |r| format!("{r:.0}"))
    ));
    let single = pick("raftwal", 1);
    if let Some(p50) = median(single.iter().map(|r| r.latency_us.p50).collect()) {
        lines.push(format!(
            "raftwal 1 appender: commit p50 {p50:.0} us = {:.2} x the floor",
            p50 / floor
        ));
    }
    let etcd = pick("etcd", conc);
    if let (Some(ours), Some(theirs)) = (
        median(main.iter().map(|r| r.entries_per_s).collect()),
        median(etcd.iter().map(|r| r.entries_per_s).collect()),
    ) {
        let our_p99 = median(main.iter().map(|r| r.latency_us.p99).collect()).unwrap_or(f64::NAN);
        let their_p99 = median(etcd.iter().map(|r| r.latency_us.p99).collect()).unwrap_or(f64::NAN);
        lines.push(format!(
            "raftwal/etcd (medians of {} rounds): throughput {:.1}x ({ours:.0} vs {theirs:.0}/s), commit p99 {:.3}x ({our_p99:.0} vs {their_p99:.0} us)",
            args.rounds.max(1),
            ours / theirs,
            our_p99 / their_p99
        ));
        let ours1 = median(single.iter().map(|r| r.latency_us.p50).collect());
        let theirs1 = median(pick("etcd", 1).iter().map(|r| r.latency_us.p50).collect());
        if let (Some(a), Some(b)) = (ours1, theirs1) {
            lines
                .push(format!("1 appender p50: raftwal {a:.0} us, etcd {b:.0} us ({:.2}x)", a / b));
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole job on a real 3-node cluster, briefly: every run row has the documented shape,
    /// the figures are positive, and the results directory holds the JSON and the plots. (A
    /// smoke test of the harness; speed is measured by running the benchmark, not here.)
    #[test]
    fn a_short_default_job_writes_a_complete_report() {
        let out = tempfile::tempdir().unwrap();
        let args = ClusterArgs {
            payload_bytes: 256,
            concurrency: 8,
            duration_s: 1.0,
            warmup_s: 0.3,
            nodes: 3,
            format: Format::Json,
            rate: None,
            sweep: None,
            failover: false,
            peer: None,
            rounds: 1,
            no_floor_run: false,
            dir: None,
            out: out.path().to_owned(),
        };
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
    }

    #[test]
    fn cluster_sizes_are_1_3_or_5() {
        assert_eq!(parse_nodes("5"), Ok(5));
        assert!(parse_nodes("2").is_err());
    }
}
