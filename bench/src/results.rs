//! The files a cluster benchmark run leaves behind: `bench-results/<timestamp>/results.json`
//! (the printed report plus the floor, timelines and machine) and `report.html` (self-contained:
//! the table and SVG plots inline).

use crate::load::TIMELINE_BUCKET;
use crate::plot::{percentile_series, Chart, Series, XScale};
use crate::report::Report;
use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One measured cell, kept for the plots.
#[derive(Debug)]
pub(crate) struct CellRecord {
    pub(crate) label: String,
    pub(crate) latency_ns: Histogram<u64>,
    /// Acknowledgements per timeline bucket, from the start of the warm-up.
    pub(crate) timeline: Vec<u64>,
}

/// One point of a latency-against-throughput sweep.
#[derive(Clone, Debug)]
pub(crate) struct SweepPoint {
    pub(crate) system: String,
    pub(crate) entries_per_s: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

/// `YYYYMMDD-HHMMSS` (UTC) for `unix_secs`.
pub(crate) fn timestamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Writes the run's files into `root/<timestamp>/` and returns that directory.
pub(crate) fn write(
    root: &Path,
    stamp: &str,
    report: &Report,
    extra: serde_json::Map<String, serde_json::Value>,
    cells: &[CellRecord],
    sweep: &[SweepPoint],
    summary: &str,
) -> Result<PathBuf, String> {
    let dir = root.join(stamp);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut doc = serde_json::to_value(report).map_err(|e| e.to_string())?;
    if let Some(map) = doc.as_object_mut() {
        map.extend(extra);
        let timelines: Vec<serde_json::Value> = cells
            .iter()
            .map(|c| {
                serde_json::json!({
                    "label": c.label,
                    "bucket_ms": TIMELINE_BUCKET.as_millis() as u64,
                    "acks": c.timeline,
                })
            })
            .collect();
        map.insert("timelines".into(), timelines.into());
    }
    let json = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("results.json"), json).map_err(|e| e.to_string())?;
    let charts = charts(cells, sweep);
    for (name, chart) in &charts {
        std::fs::write(dir.join(format!("{name}.svg")), chart.to_svg())
            .map_err(|e| e.to_string())?;
    }
    std::fs::write(dir.join("report.html"), html(report, &charts, summary))
        .map_err(|e| e.to_string())?;
    Ok(dir)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The run's charts, by file name: latency by percentile, throughput over time, and the sweep.
fn charts(cells: &[CellRecord], sweep: &[SweepPoint]) -> Vec<(&'static str, Chart)> {
    let mut out = vec![(
        "latency",
        Chart {
            title: "Commit latency by percentile".into(),
            x_label: "percentile".into(),
            y_label: "latency (ms, log scale)".into(),
            x_scale: XScale::Percentile,
            y_log: true,
            series: cells.iter().map(|c| percentile_series(&c.label, &c.latency_ns)).collect(),
        },
    )];
    let bucket_s = TIMELINE_BUCKET.as_secs_f64();
    out.push((
        "throughput",
        Chart {
            title: "Throughput over time (warm-up included)".into(),
            x_label: "seconds since start".into(),
            y_label: "appends per second".into(),
            x_scale: XScale::Linear,
            y_log: false,
            series: cells
                .iter()
                .map(|c| Series {
                    name: c.label.clone(),
                    points: c
                        .timeline
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (i as f64 * bucket_s, *n as f64 / bucket_s))
                        .collect(),
                })
                .collect(),
        },
    ));
    if !sweep.is_empty() {
        // Each system once (rounds alternate the systems, so a system's points are not
        // neighbours), its points drawn from left to right whatever round they came from.
        let mut systems: Vec<&str> = Vec::new();
        for point in sweep {
            if !systems.contains(&point.system.as_str()) {
                systems.push(&point.system);
            }
        }
        let mut series = Vec::new();
        for system in systems {
            let mut points: Vec<&SweepPoint> =
                sweep.iter().filter(|p| p.system == system).collect();
            points.sort_by(|a, b| a.entries_per_s.total_cmp(&b.entries_per_s));
            series.push(Series {
                name: format!("{system} p50"),
                points: points.iter().map(|p| (p.entries_per_s, p.p50_ms)).collect(),
            });
            series.push(Series {
                name: format!("{system} p99"),
                points: points.iter().map(|p| (p.entries_per_s, p.p99_ms)).collect(),
            });
        }
        out.push((
            "sweep",
            Chart {
                title: "Latency against throughput (open loop)".into(),
                x_label: "achieved appends per second".into(),
                y_label: "latency (ms, log scale)".into(),
                x_scale: XScale::Linear,
                y_log: true,
                series,
            },
        ));
    }
    out
}

fn html(report: &Report, charts: &[(&str, Chart)], summary: &str) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>raftwal {} benchmark</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#eee}}\
         pre{{background:#f6f6f6;padding:1em}}</style></head><body><h1>raftwal {} benchmark</h1>",
        escape(&report.bench),
        escape(&report.bench)
    );
    let _ = write!(page, "<pre>{}</pre>", escape(summary));
    page.push_str("<table><tr><th>system</th><th>payload B</th><th>concurrency</th><th>entries/s</th><th>MB/s</th><th>p50 us</th><th>p90 us</th><th>p99 us</th><th>p99.9 us</th><th>max us</th><th>more</th></tr>");
    for r in &report.results {
        let more: Vec<String> = r.extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.1}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td style=\"text-align:left\">{}</td></tr>",
            escape(&r.system),
            r.payload_bytes,
            r.concurrency,
            r.entries_per_s,
            r.mb_per_s,
            r.latency_us.p50,
            r.latency_us.p90,
            r.latency_us.p99,
            r.latency_us.p999,
            r.latency_us.max,
            escape(&more.join(" "))
        );
    }
    page.push_str("</table>");
    for (_, chart) in charts {
        page.push_str(&chart.to_svg());
    }
    page.push_str("</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sweep of two rounds alternating two systems: one p50 and one p99 series per system,
    /// each with all its points in order of throughput.
    #[test]
    fn a_sweep_over_rounds_draws_each_system_once() {
        let point = |system: &str, entries_per_s: f64| SweepPoint {
            system: system.into(),
            entries_per_s,
            p50_ms: entries_per_s / 1000.0,
            p99_ms: entries_per_s / 100.0,
        };
        let sweep = [
            point("raftwal", 1000.0),
            point("raftwal", 3000.0),
            point("etcd", 500.0),
            point("etcd", 1500.0),
            point("raftwal", 900.0),
            point("raftwal", 3100.0),
            point("etcd", 600.0),
            point("etcd", 1400.0),
        ];
        let charts = charts(&[], &sweep);
        let (_, sweep_chart) = charts.last().expect("a sweep chart");
        let names: Vec<&str> = sweep_chart.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["raftwal p50", "raftwal p99", "etcd p50", "etcd p99"]);
        let xs: Vec<f64> = sweep_chart.series[0].points.iter().map(|p| p.0).collect();
        assert_eq!(xs, [900.0, 1000.0, 3000.0, 3100.0]);
        let xs: Vec<f64> = sweep_chart.series[3].points.iter().map(|p| p.0).collect();
        assert_eq!(xs, [500.0, 600.0, 1400.0, 1500.0]);
    }

    #[test]
    fn timestamps_are_civil_utc() {
        assert_eq!(timestamp(0), "19700101-000000");
        assert_eq!(timestamp(951_782_400), "20000229-000000");
        assert_eq!(timestamp(1_798_499_045), "20261228-230405");
    }
}
