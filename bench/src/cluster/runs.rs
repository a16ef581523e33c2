//! One measured run of each system: a fresh cluster, the load, and the figures beside it (the
//! leader's fsyncs, a follower subscriber's tail lag, a failover's unavailability window).

use super::{ClusterArgs, RunExtras, ZeroFillArg};
use crate::floor;
use crate::load::{self, Ack, LoadResult, Workload};
use crate::report::{latency_histogram_ns, Progress};
use crate::systems::{agreed_leader, is_log_0, RaftwalCluster, RaftwalTarget, StorageOverrides};
use raftwal_wire::types::{LogId, LogIndex};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `workload` against a fresh raftwal cluster in `dir`. Returns the load result, the extra
/// figures, and the QUIC round trip measured on it before the load.
pub(super) async fn run_raftwal(
    args: &ClusterArgs,
    dir: &Path,
    workload: &Workload,
    label: &str,
    with_tail: bool,
    progress: &mut Progress,
) -> Result<(LoadResult, RunExtras, Option<f64>), String> {
    progress.set(&format!("[{label}] starting a {}-node raftwal cluster", args.nodes));
    // Starting waits for a leader with blocking calls: do it off this thread's runtime.
    let (nodes, start_dir, fsync, logs) =
        (args.nodes, dir.to_owned(), args.fsync.choice(), args.logs);
    let storage = StorageOverrides {
        fsync,
        zero_fill: args.zero_fill.map(ZeroFillArg::choice),
        segment_size_bytes: args.segment_mib.map(|mib| mib << 20),
        zero_chunk_bytes: args.zero_chunk_kib.map(|kib| (kib as usize) << 10),
        batches_in_flight: args.batches_in_flight.map(|n| n as usize),
    };
    let cluster = tokio::task::spawn_blocking(move || {
        RaftwalCluster::start(nodes, &start_dir, storage, logs)
    })
    .await
    .map_err(|e| e.to_string())??;
    cluster.spread_leaders(logs, Duration::from_secs(30)).await?;
    let leader = agreed_leader(&cluster.logs()).await.ok_or("no leader after start")?;
    let follower = cluster.follower_of(leader);
    let rtt = floor::quic_rtt_us(&cluster.tls_dir, cluster.addrs[follower], 300).await.ok();
    let client = Arc::new(cluster.client(LogId(0))?);
    let mut clients = vec![client.clone()];
    for log in 1..args.logs {
        clients.push(Arc::new(cluster.client(LogId(log))?));
    }
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
        let graceful = args.graceful;
        tokio::task::spawn_local(async move {
            tokio::time::sleep(warmup).await;
            let logs = cluster.borrow().logs();
            let leader = agreed_leader(&logs).await.unwrap_or(leader);
            let follower_id = follower as u64 + 1;
            let before = cluster.borrow().fsync_counters(leader);
            let follower_before = cluster.borrow().fsync_counters(follower_id);
            let mut killed_at = None;
            if failover {
                tokio::time::sleep(duration / 2).await;
                let logs = cluster.borrow().logs();
                if let Some(victim) = agreed_leader(&logs).await {
                    if cluster.borrow_mut().stop_node(victim, graceful) {
                        killed_at = Some(Instant::now());
                    }
                }
                tokio::time::sleep(duration / 2).await;
            } else {
                tokio::time::sleep(duration).await;
            }
            let after = cluster.borrow().fsync_counters(leader);
            let follower_after = cluster.borrow().fsync_counters(follower_id);
            let counters = after.since(&before);
            let follower_counters =
                (follower_id != leader).then(|| follower_after.since(&follower_before));
            (counters, follower_counters, killed_at)
        })
    };

    let target = Rc::new(RaftwalTarget(clients.clone()));
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
    let (fsyncs, follower_fsyncs, killed_at) = window.await.map_err(|e| e.to_string())?;
    let tail_stopped = match tail_task {
        Some(task) => {
            // Let the subscriber take what is committed, then stop it.
            tokio::time::sleep(Duration::from_millis(300)).await;
            task.abort();
            Instant::now()
        }
        None => Instant::now(),
    };
    let mut extras = RunExtras {
        fsyncs: (!args.failover).then_some(fsyncs),
        follower_fsyncs: follower_fsyncs.filter(|_| !args.failover),
        logs: args.logs,
        ..RunExtras::default()
    };
    if with_tail && args.nodes > 1 {
        let tail = tail_lag(&result.acks, &delivered.borrow(), tail_stopped);
        extras.tail_lag_ns = Some(tail.lag_ns);
        extras.tail_delivered = tail.delivered;
        extras.tail_before_ack = tail.before_ack;
        extras.tail_undelivered = tail.undelivered;
    }
    if let Some(killed) = killed_at {
        extras.failover = Some(failover_figures(&result, killed, result.end));
        extras.failover_graceful = args.graceful;
    }
    for c in &clients {
        c.close();
    }
    // Stopping joins node threads: do it off this thread's runtime.
    let mut cluster = Rc::try_unwrap(cluster).map_err(|_| "cluster still shared")?.into_inner();
    tokio::task::spawn_blocking(move || cluster.stop()).await.map_err(|e| e.to_string())?;
    Ok((result, extras, rtt))
}

/// A follower subscriber's lag behind the appenders' acknowledgements of log 0.
struct TailLag {
    /// Per acknowledged entry of log 0, ns: from its acknowledgement to its delivery (1 when
    /// the subscriber had it no later than the ack), or, for an entry never delivered, to when
    /// the subscriber was stopped (a lower bound of its lag).
    lag_ns: hdrhistogram::Histogram<u64>,
    /// Entries delivered, of those acknowledged.
    delivered: u64,
    /// Of `delivered`, the entries the subscriber had no later than the appender's ack (the
    /// follower's commit notice and the leader's answer travel in parallel).
    before_ack: u64,
    /// Acknowledged entries the subscriber had not received when it was stopped at `stopped`.
    undelivered: u64,
}

/// The tail lag of the entries of log 0 in `acks`, given what the subscriber `delivered` until
/// it was stopped at `stopped`. An entry never delivered stays in the figures with the lag it
/// had at least, as an append never answered stays in the errors: leaving it out would report
/// the lag of the entries that arrived and hide the slowest.
fn tail_lag(acks: &[Ack], delivered: &[(u64, Instant)], stopped: Instant) -> TailLag {
    let arrived: HashMap<u64, Instant> = delivered.iter().copied().collect();
    let mut tail =
        TailLag { lag_ns: latency_histogram_ns(), delivered: 0, before_ack: 0, undelivered: 0 };
    for ack in acks.iter().filter(|a| is_log_0(a.position)) {
        let at = match arrived.get(&ack.position) {
            Some(at) => {
                tail.delivered += 1;
                if *at <= ack.done {
                    tail.before_ack += 1;
                }
                *at
            }
            None => {
                tail.undelivered += 1;
                stopped
            }
        };
        let ns =
            u64::try_from(at.saturating_duration_since(ack.done).as_nanos()).unwrap_or(u64::MAX);
        tail.lag_ns.saturating_record(ns.max(1));
    }
    tail
}

/// The longest time without an acknowledgement around the kill, and the slowest append
/// acknowledged after it, both in ms.
///
/// The stop is requested at `killed`, but a node finishes what is in flight while it stops, so
/// the window is the longest gap between consecutive acknowledgements from the last one before
/// the request (or the request itself, when there was none) to the end of the run, the end
/// counting as an acknowledgement (a run that never recovered reports the whole time left).
fn failover_figures(result: &LoadResult, killed: Instant, end: Instant) -> (f64, f64) {
    let mut acks: Vec<Instant> = result.acks.iter().map(|a| a.done).collect();
    acks.sort();
    // From the last acknowledgement at or before the kill, or from the kill itself when the
    // window had none before it (starting at the first one after the kill left out the wait
    // for it, the failover itself).
    let mut tail: Vec<Instant> = match acks.iter().rposition(|at| *at <= killed) {
        Some(last) => acks[last..].to_vec(),
        None => std::iter::once(killed).chain(acks.iter().copied()).collect(),
    };
    tail.push(end.max(*tail.last().unwrap_or(&end)));
    let gap = tail.windows(2).map(|w| w[1].duration_since(w[0])).max().unwrap_or_default();
    // Only the appends answered after the kill: the slowest of the whole run may predate it.
    let max = result
        .acks
        .iter()
        .filter(|a| a.done > killed)
        .map(|a| a.done.duration_since(a.issued))
        .max()
        .unwrap_or_default();
    (gap.as_secs_f64() * 1000.0, max.as_secs_f64() * 1000.0)
}

#[cfg(feature = "etcd")]
pub(super) async fn run_etcd(
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
    let (failover, graceful) = (args.failover, args.graceful);
    let killer = tokio::task::spawn_local(async move {
        let mut killed = None;
        if failover {
            tokio::time::sleep(at).await;
            let when = Instant::now();
            killed = cluster.kill_leader(graceful).await.ok().map(|_| when);
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
        extras.failover = Some(failover_figures(&result, killed, result.end));
        extras.failover_graceful = args.graceful;
    }
    drop(cluster);
    Ok((result, extras))
}

#[cfg(not(feature = "etcd"))]
pub(super) async fn run_etcd(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A run's result with the given acknowledged appends (issued, answered after `t0`, in ms)
    /// and an end at `end_ms`.
    fn result_with(t0: Instant, appends: &[(u64, u64)], end_ms: u64) -> LoadResult {
        let ms = |v: u64| t0 + Duration::from_millis(v);
        let mut latency_ns = latency_histogram_ns();
        let acks: Vec<Ack> = appends
            .iter()
            .enumerate()
            .map(|(i, &(issued, done))| {
                latency_ns.saturating_record((done - issued) * 1_000_000);
                Ack { position: i as u64 + 1, issued: ms(issued), done: ms(done) }
            })
            .collect();
        LoadResult {
            latency_ns,
            acked_in_window: acks.len() as u64,
            errors: 0,
            error_samples: Vec::new(),
            queued: 0,
            send_lag_ns: latency_histogram_ns(),
            elapsed: Duration::from_millis(end_ms),
            end: ms(end_ms),
            timeline: Vec::new(),
            acks,
        }
    }

    /// The slowest append after the kill is one answered after it, not the slowest of the run:
    /// here a 500 ms stall before the kill, and 120 ms for the append the failover delayed.
    #[test]
    fn the_failover_spike_counts_only_appends_answered_after_the_kill() {
        let t0 = Instant::now();
        let appends =
            [(0, 10), (10, 510), (510, 520), (990, 1_000), (1_000, 1_120), (1_120, 1_130)];
        let result = result_with(t0, &appends, 2_000);
        let killed = t0 + Duration::from_millis(1_005);
        let (gap_ms, spike_ms) = failover_figures(&result, killed, result.end);
        assert!((spike_ms - 120.0).abs() < 1e-6, "spike {spike_ms} ms");
        // The longest time without an answer from the last one before the kill: the end of the
        // run after the last answer (870 ms), not the stall before the kill.
        assert!((gap_ms - 870.0).abs() < 1e-6, "gap {gap_ms} ms");
    }

    /// A run with no acknowledgement before the kill: the time without one runs from the kill
    /// to the first one after it (490 ms here), not only between the acknowledgements after it.
    #[test]
    fn the_failover_gap_runs_from_the_kill_when_nothing_was_acknowledged_before_it() {
        let t0 = Instant::now();
        let result = result_with(t0, &[(0, 500), (500, 510), (510, 520)], 600);
        let killed = t0 + Duration::from_millis(10);
        let (gap_ms, spike_ms) = failover_figures(&result, killed, result.end);
        assert!((gap_ms - 490.0).abs() < 1e-6, "gap {gap_ms} ms");
        assert!((spike_ms - 500.0).abs() < 1e-6, "spike {spike_ms} ms");
    }

    /// Every acknowledged entry of log 0 is in the tail lag, delivered or not: here 95 of 100
    /// reached the subscriber 1 ms after their ack and 5 never did.
    #[test]
    fn tail_lag_keeps_the_entries_never_delivered() {
        let t0 = Instant::now();
        let appends: Vec<(u64, u64)> = (0..100).map(|i| (i, i + 1)).collect();
        let result = result_with(t0, &appends, 200);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let delivered: Vec<(u64, Instant)> = (1..=95).map(|i| (i, at(i + 1))).collect();
        // Stopped 300 ms after the last ack (at 100 ms).
        let tail = tail_lag(&result.acks, &delivered, at(400));
        assert_eq!((tail.delivered, tail.undelivered), (95, 5));
        let lag = &tail.lag_ns;
        assert_eq!(lag.len(), 100, "{} of 100 acknowledged entries in the tail lag", lag.len());
        // The p99 is an undelivered entry's, at least 300 ms, not the 1 ms of the delivered.
        assert!(
            lag.value_at_quantile(0.99) >= 299_000_000,
            "p99 {} ns",
            lag.value_at_quantile(0.99)
        );
    }

    /// Tail lag runs from an entry's acknowledgement (not its send) to its delivery; entries
    /// delivered first count as zero.
    #[test]
    fn tail_lag_runs_from_the_acknowledgement() {
        let t0 = Instant::now();
        let result = result_with(t0, &[(0, 10), (5, 20)], 100);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let delivered = [(1, at(13)), (2, at(19)), (3, at(30))];
        let tail = tail_lag(&result.acks, &delivered, at(100));
        assert_eq!((tail.delivered, tail.before_ack, tail.undelivered), (2, 1, 0));
        let lag = &tail.lag_ns;
        assert!(lag.max() >= 2_990_000 && lag.max() <= 3_010_000, "{}", lag.max());
    }
}
