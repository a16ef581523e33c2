//! Shared report plumbing for every benchmark: latency summaries from HDR histograms, the JSON
//! document shape (`{"bench":NAME,"results":[...]}`), a plain-text table, and a progress line.
//!
//! Every benchmark builds [`ResultRow`]s and hands them to [`Report`]; nothing else prints
//! results, so the JSON shape and the table stay the same across benchmarks.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::io::Write;

/// Checks that `value` (the flag `--name`) is a number of seconds a `Duration` holds, finite
/// and non-negative, and positive unless `zero_ok`: what the command line must pass before a
/// run starts (a value a `Duration` cannot hold panicked where a clock was set).
pub(crate) fn check_seconds(name: &str, value: f64, zero_ok: bool) -> Result<(), String> {
    match std::time::Duration::try_from_secs_f64(value) {
        Ok(d) if zero_ok || !d.is_zero() => Ok(()),
        _ => Err(format!(
            "--{name} must be a {} number of seconds, not {value}",
            if zero_ok { "finite non-negative" } else { "finite positive" }
        )),
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct LatencyUs {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

impl LatencyUs {
    /// Summarizes a histogram whose values are nanoseconds.
    pub(crate) fn from_histogram_ns(h: &Histogram<u64>) -> LatencyUs {
        let us = |v: u64| v as f64 / 1000.0;
        if h.is_empty() {
            return LatencyUs::default();
        }
        LatencyUs {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// A histogram for latencies in nanoseconds, from 1 ns to 100 s at 3 significant digits.
pub(crate) fn latency_histogram_ns() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; failure would be a programming error.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// One cell of a benchmark: one system under one workload.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ResultRow {
    /// What was measured: `raftwal`, or a reference such as `raw`, `raft-engine`, `etcd`.
    pub(crate) system: String,
    pub(crate) payload_bytes: u64,
    pub(crate) concurrency: u64,
    pub(crate) entries_per_s: f64,
    pub(crate) mb_per_s: f64,
    pub(crate) latency_us: LatencyUs,
    /// Benchmark-specific figures (fsync count, mean batch size, ...), flattened into the row.
    #[serde(flatten)]
    pub(crate) extra: serde_json::Map<String, serde_json::Value>,
}

impl ResultRow {
    /// Adds a benchmark-specific figure to the row.
    pub(crate) fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> ResultRow {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
}

/// Output format of a benchmark run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// A human-readable table on standard output.
    Table,
    /// One JSON document on standard output.
    Json,
}

/// The results of one benchmark run.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) bench: String,
    pub(crate) results: Vec<ResultRow>,
}

impl Report {
    pub(crate) fn new(bench: &str) -> Report {
        Report { bench: bench.to_owned(), results: Vec::new() }
    }

    /// Prints the report to standard output in `format`.
    pub(crate) fn print(&self, format: Format) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        match format {
            Format::Json => {
                serde_json::to_writer(&mut out, self)?;
                writeln!(out)?;
            }
            Format::Table => self.write_table(&mut out)?,
        }
        out.flush()
    }

    fn write_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out, "bench: {}", self.bench)?;
        // The system column is as wide as its longest name.
        let width = self.results.iter().map(|r| r.system.len()).chain([12]).max().unwrap_or(12);
        writeln!(
            out,
            "{:<width$} {:>8} {:>5} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}  extra",
            "system",
            "payload",
            "conc",
            "entries/s",
            "MB/s",
            "p50 us",
            "p90 us",
            "p99 us",
            "p99.9 us",
            "max us"
        )?;
        for r in &self.results {
            let extra: Vec<String> = r.extra.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(
                out,
                "{:<width$} {:>8} {:>5} {:>12.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.1}  {}",
                r.system,
                r.payload_bytes,
                r.concurrency,
                r.entries_per_s,
                r.mb_per_s,
                r.latency_us.p50,
                r.latency_us.p90,
                r.latency_us.p99,
                r.latency_us.p999,
                r.latency_us.max,
                extra.join(" ")
            )?;
        }
        Ok(())
    }
}

/// A one-line progress indicator on standard error, rewritten in place.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    width: usize,
}

impl Progress {
    /// Replaces the progress line with `text`.
    pub(crate) fn set(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        let pad = self.width.saturating_sub(text.len());
        // Progress output is best effort: a closed stderr must not stop a benchmark.
        let _ = write!(err, "\r{text}{:pad$}", "");
        let _ = err.flush();
        self.width = text.len();
    }

    /// Ends the progress line so later output starts on a fresh line.
    pub(crate) fn finish(&mut self) {
        if self.width > 0 {
            let _ = writeln!(std::io::stderr().lock());
            self.width = 0;
        }
    }
}

impl Drop for Progress {
    /// A benchmark that stops early (an error) still ends its progress line, so the error
    /// message starts on a line of its own.
    fn drop(&mut self) {
        self.finish();
    }
}
