//! The text summary a reader wants first: throughput, latency against the floor, the leader's
//! batching, the tail lag, and the ratios to a peer.

use super::ClusterArgs;
use crate::floor::DiskFloor;
use crate::report::{Report, ResultRow};

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    })
}

/// `ours / theirs` with `digits` decimals and an x, or "no ratio" when `theirs` is no positive
/// figure (a peer that acknowledged nothing has a throughput and latencies of 0).
fn ratio(ours: f64, theirs: f64, digits: usize) -> String {
    if ours.is_finite() && theirs.is_finite() && theirs > 0.0 {
        format!("{:.*}x", digits, ours / theirs)
    } else {
        "no ratio".into()
    }
}

/// The figures a reader wants first, as text.
pub(super) fn summarize(
    args: &ClusterArgs,
    report: &Report,
    disk: DiskFloor,
    rtt_us: Option<f64>,
) -> String {
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
        let load = match args.rate {
            Some(r) => format!("open loop at {r:.0}/s (at most {conc} outstanding)"),
            None => format!("{conc} appenders"),
        };
        let load = if args.logs > 1 {
            format!("{load} over {} logs (fsync and tail figures: log 0's)", args.logs)
        } else {
            load
        };
        lines.push(format!(
            "raftwal, {} nodes, {} B, {load}: {:.0} appends/s, {:.1} MB/s, commit p99 {:.0} us",
            args.nodes,
            args.payload_bytes,
            rate,
            rate * args.payload_bytes as f64 / 1e6,
            p99
        ));
    }
    for r in &main {
        if let (Some(f), Some(b)) =
            (r.extra.get("leader_fsyncs_per_s"), r.extra.get("mean_batch_entries"))
        {
            let mean = |key: &str| {
                r.extra.get(key).map_or(String::new(), |us| format!(", batch {us} us (mean)"))
            };
            lines.push(format!(
                "leader: {f} fsyncs/s, {b} entries per fsync (mean){}",
                mean("leader_batch_us_mean")
            ));
            if let Some(ff) = r.extra.get("follower_fsyncs_per_s") {
                lines.push(format!(
                    "follower: {ff} fsyncs/s{} (a batch: submitted to durable)",
                    mean("follower_batch_us_mean")
                ));
            }
        }
        if let (Some(p50), Some(p99)) =
            (r.extra.get("tail_lag_us_p50"), r.extra.get("tail_lag_us_p99"))
        {
            let mut early = r.extra.get("tail_before_ack_pct").map_or(String::new(), |pct| {
                format!("; {pct} % arrived before the ack, counted as 0")
            });
            if let Some(n) = r.extra.get("tail_undelivered").filter(|n| n.as_u64() != Some(0)) {
                early.push_str(&format!(
                    "; {n} never arrived before the subscriber stopped, counted to its stop"
                ));
            }
            lines.push(format!(
                "subscriber on a follower: tail lag p50 {p50} us, p99 {p99} us (after the appender's ack{early})"
            ));
        }
        if let (Some(p50), Some(p99)) =
            (r.extra.get("send_lag_us_p50"), r.extra.get("send_lag_us_p99"))
        {
            lines.push(format!(
                "open loop: requests left p50 {p50} us, p99 {p99} us after their intended time (included in the latencies)"
            ));
        }
        if let Some(gap) = r.extra.get("unavailable_ms") {
            let how = match r.extra.get("failover_stop").and_then(|s| s.as_str()) {
                Some("graceful") => "leader stopped gracefully",
                _ => "leader killed",
            };
            lines.push(format!("failover ({how}): {gap} ms without a commit"));
        }
    }
    // Two readings of "an fdatasync": the bare call after its write (strict), and a small
    // write with its fdatasync (what a one-entry batch costs at least on this disk).
    let single = pick("raftwal", 1);
    match rtt_us {
        Some(rtt) => {
            // A replicated commit waits for the leader's fdatasync, a round trip to a follower
            // and the follower's fdatasync, and the client's round trip; a single node commits
            // after its own fdatasync and the client's round trip alone.
            let (steps, what) = if args.nodes == 1 {
                (1.0, "1 fdatasync + 1 round trip")
            } else {
                (2.0, "2 fdatasyncs + 2 round trips")
            };
            let strict = steps * (disk.fdatasync_us + rtt);
            let durable = steps * (disk.write_fdatasync_us + rtt);
            lines.push(format!(
                "floor (same run): fdatasync p50 {:.0} us (write + fdatasync {:.0} us), QUIC round trip p50 {rtt:.0} us \
                 => {what} = {strict:.0} us ({durable:.0} us counting the writes)",
                disk.fdatasync_us, disk.write_fdatasync_us,
            ));
            if let Some(p50) = median(single.iter().map(|r| r.latency_us.p50).collect()) {
                lines.push(format!(
                    "raftwal 1 appender: commit p50 {p50:.0} us = {:.2} x the floor ({:.2} x counting the writes)",
                    p50 / strict,
                    p50 / durable
                ));
            }
        }
        // A sweep keeps no round trip of its points: there is no bound to show.
        None => lines.push(format!(
            "floor (same run): fdatasync p50 {:.0} us (write + fdatasync {:.0} us); no QUIC round trip measured in this mode",
            disk.fdatasync_us, disk.write_fdatasync_us,
        )),
    }
    let etcd = pick("etcd", conc);
    if let (Some(ours), Some(theirs)) = (
        median(main.iter().map(|r| r.entries_per_s).collect()),
        median(etcd.iter().map(|r| r.entries_per_s).collect()),
    ) {
        let our_p99 = median(main.iter().map(|r| r.latency_us.p99).collect()).unwrap_or(f64::NAN);
        let their_p99 = median(etcd.iter().map(|r| r.latency_us.p99).collect()).unwrap_or(f64::NAN);
        lines.push(format!(
            "raftwal/etcd (medians of {} rounds): throughput {} ({ours:.0} vs {theirs:.0}/s), commit p99 {} ({our_p99:.0} vs {their_p99:.0} us)",
            args.rounds.max(1),
            ratio(ours, theirs, 1),
            ratio(our_p99, their_p99, 3)
        ));
        let ours1 = median(single.iter().map(|r| r.latency_us.p50).collect());
        let theirs1 = median(pick("etcd", 1).iter().map(|r| r.latency_us.p50).collect());
        if let (Some(a), Some(b)) = (ours1, theirs1) {
            lines.push(format!(
                "1 appender p50: raftwal {a:.0} us, etcd {b:.0} us ({})",
                ratio(a, b, 2)
            ));
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::super::tests::ARGS;
    use super::super::ClusterArgs;
    use super::{median, summarize};
    use crate::floor::DiskFloor;
    use crate::report::{LatencyUs, Report, ResultRow};

    fn row(system: &str, concurrency: u64, entries_per_s: f64, p50: f64, p99: f64) -> ResultRow {
        ResultRow {
            system: system.into(),
            payload_bytes: 1024,
            concurrency,
            entries_per_s,
            mb_per_s: entries_per_s * 1024.0 / 1e6,
            latency_us: LatencyUs { p50, p90: p99, p99, p999: p99, max: p99 },
            extra: serde_json::Map::new(),
        }
    }

    const DISK: DiskFloor = DiskFloor { fdatasync_us: 100.0, write_fdatasync_us: 150.0 };

    /// A single node commits after its own fdatasync and the client's round trip: its floor is
    /// 1 fdatasync + 1 round trip, not the replicated 2 + 2 (which made its ratio half of what
    /// it is). With followers the floor stays 2 + 2.
    #[test]
    fn the_floor_of_a_single_node_is_one_fdatasync_and_one_round_trip() {
        let mut report = Report::new("cluster");
        report.results.push(row("raftwal", 64, 40_000.0, 1_000.0, 3_000.0));
        report.results.push(row("raftwal", 1, 2_000.0, 450.0, 600.0));
        let one = summarize(&ClusterArgs { nodes: 1, ..ARGS }, &report, DISK, Some(50.0));
        assert!(
            one.contains("1 fdatasync + 1 round trip = 150 us (200 us counting the writes)"),
            "{one}"
        );
        assert!(one.contains("3.00 x the floor (2.25 x counting the writes)"), "{one}");
        let three = summarize(&ARGS, &report, DISK, Some(50.0));
        assert!(
            three.contains("2 fdatasyncs + 2 round trips = 300 us (400 us counting the writes)"),
            "{three}"
        );
        assert!(three.contains("1.50 x the floor (1.12 x counting the writes)"), "{three}");
    }

    /// An etcd that acknowledged nothing (every put failed: 0/s, an empty histogram) has no
    /// ratio to show; dividing by its zeros printed "inf" and "NaN" as the comparison.
    #[test]
    fn ratios_to_a_peer_that_served_nothing_are_not_printed_as_numbers() {
        let mut report = Report::new("cluster");
        report.results.push(row("raftwal", 64, 40_000.0, 1_000.0, 3_000.0));
        report.results.push(row("raftwal", 1, 2_000.0, 450.0, 600.0));
        report.results.push(row("etcd", 64, 0.0, 0.0, 0.0));
        report.results.push(row("etcd", 1, 0.0, 0.0, 0.0));
        let text = summarize(&ClusterArgs { rounds: 1, ..ARGS }, &report, DISK, Some(50.0));
        assert!(text.contains("raftwal/etcd"), "{text}");
        for bad in ["inf", "NaN"] {
            assert!(!text.contains(bad), "{bad} in {text}");
        }
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![f64::NAN]), None);
    }
}
