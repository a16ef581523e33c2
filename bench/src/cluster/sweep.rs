//! The rate sweep: a latency-against-throughput curve up to saturation, per system.

use super::runs::{run_etcd, run_raftwal};
use super::{row, ClusterArgs, RunExtras, System};
use crate::load::{LoadResult, Workload};
use crate::report::{LatencyUs, Progress, Report};
use crate::results::SweepPoint;
use std::path::Path;
use std::time::Duration;

/// The rate sweep of one system: a short closed-loop run finds the saturation throughput, then
/// open-loop runs at fractions of it.
pub(super) async fn sweep(
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
        send_quantum: Duration::from_micros(args.send_quantum_us),
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
