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
            let early = r.extra.get("tail_before_ack_pct").map_or(String::new(), |pct| {
                format!("; {pct} % arrived before the ack, counted as 0")
            });
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
            let strict = 2.0 * disk.fdatasync_us + 2.0 * rtt;
            let durable = 2.0 * disk.write_fdatasync_us + 2.0 * rtt;
            lines.push(format!(
                "floor (same run): fdatasync p50 {:.0} us (write + fdatasync {:.0} us), QUIC round trip p50 {rtt:.0} us \
                 => 2 fdatasyncs + 2 round trips = {strict:.0} us ({durable:.0} us counting the writes)",
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
    use super::median;

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![f64::NAN]), None);
    }
}
