//! The `recovery` benchmark: how long a log takes to open, as a function of what it stores.
//!
//! Owns: writing a log of `--gib` GiB of `--payload-bytes` entries through raftwal's store (the
//! node's segment size), then reopening it `--rounds` times each way: trusting the sealed
//! segments' index files (the default) and checking every record of every sealed segment
//! (`check_sealed_at_open`), alternating which goes first, each once with a cold page cache
//! (every file's cached pages dropped with `posix_fadvise(POSIX_FADV_DONTNEED)` first) and once
//! right after (warm). The time is `LogStore::open` alone: recovery, index checks, the last
//! segment's scan and the syncs it ends with.

use crate::report::Progress;
use bytes::Bytes;
use raftwal::storage::disk::OpenOptions;
use raftwal::storage::{Disk, LogOptions, LogStore, UringDisk, UringOptions};
use raftwal_wire::types::{Entry, EntryKind, LogIndex, Term};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// Options of the `recovery` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RecoveryArgs {
    /// GiB of payload the log holds.
    #[arg(long, default_value_t = 4.0)]
    pub(crate) gib: f64,
    /// Bytes of each entry's payload.
    #[arg(long, default_value_t = 1024)]
    pub(crate) payload_bytes: usize,
    /// Opens of each kind (cold and warm, trusting the index files and checking every record).
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: usize,
    /// Directory for the benchmark's files (a fresh subdirectory is made and removed).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// One open: the way, the cache, its time and what recovery reported.
struct Opened {
    checked: bool,
    cold: bool,
    took: Duration,
    segments: usize,
    indexed: usize,
}

fn options(checked: bool) -> LogOptions {
    LogOptions { check_sealed_at_open: checked, ..LogOptions::default() }
}

fn disk() -> std::io::Result<Rc<UringDisk>> {
    Ok(Rc::new(UringDisk::new(UringOptions::default())?))
}

/// Writes the log: batches of about 1 MiB, each made durable before the next.
fn write_log(dir: &Path, args: &RecoveryArgs, progress: &mut Progress) -> std::io::Result<u64> {
    let (mut log, _) =
        LogStore::open(dir, options(false), disk()?).map_err(std::io::Error::other)?;
    let total = (args.gib * f64::from(1 << 30)) as u64;
    let per_batch = ((1 << 20) / args.payload_bytes.max(1)).max(1);
    let payload = Bytes::from(vec![0x5a; args.payload_bytes]);
    let mut written = 0u64;
    let mut next = 1u64;
    let mut batch = Vec::with_capacity(per_batch);
    let started = crate::storage::now();
    while written < total {
        batch.clear();
        for _ in 0..per_batch {
            batch.push(Entry {
                index: LogIndex(next),
                term: Term(1 + next / 1_000_000),
                kind: EntryKind::Normal,
                data: payload.clone(),
            });
            next += 1;
        }
        log.append(&batch).map_err(std::io::Error::other)?;
        log.flush().map_err(std::io::Error::other)?;
        let before = written;
        written += (per_batch * args.payload_bytes) as u64;
        if written >> 26 == before >> 26 && written < total {
            continue;
        }
        progress.set(&format!(
            "writing the log: {:.2} of {:.2} GiB ({:.0} s)",
            written as f64 / f64::from(1 << 30),
            args.gib,
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(next - 1)
}

/// Drops the cached pages of every file in `dir` (the store's own seam does it: clean pages
/// only, which is all a closed log leaves).
fn drop_cache(dir: &Path) -> std::io::Result<()> {
    let disk = disk()?;
    for entry in std::fs::read_dir(dir)? {
        let options = OpenOptions { create_new: false, direct: false };
        let file = disk.open(&entry?.path(), options)?;
        let dropped = disk.drop_clean_cache(file);
        disk.close(file);
        dropped?;
    }
    Ok(())
}

fn open_once(dir: &Path, checked: bool, cold: bool, last: u64) -> std::io::Result<Opened> {
    if cold {
        drop_cache(dir)?;
    }
    let disk = disk()?;
    let started = crate::storage::now();
    let (log, recovery) =
        LogStore::open(dir, options(checked), disk).map_err(std::io::Error::other)?;
    let took = started.elapsed();
    if recovery.last_index != LogIndex(last) {
        return Err(std::io::Error::other(format!(
            "recovered up to {}, wrote up to {last}",
            recovery.last_index
        )));
    }
    drop(log);
    Ok(Opened {
        checked,
        cold,
        took,
        segments: recovery.segments,
        indexed: recovery.segments_indexed,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs the benchmark and prints its report.
pub(crate) fn run(args: &RecoveryArgs) -> Result<(), String> {
    if !(args.gib.is_finite() && args.gib > 0.0) || args.payload_bytes == 0 || args.rounds == 0 {
        return Err("--gib must be positive, --payload-bytes and --rounds at least 1".into());
    }
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).map_err(|e| e.to_string())?;
    let root = tempfile::Builder::new()
        .prefix("raftwal-bench-recovery-")
        .tempdir_in(&parent)
        .map_err(|e| e.to_string())?;
    let dir = root.path().join("log");
    let mut progress = Progress::default();
    let last = write_log(&dir, args, &mut progress).map_err(|e| format!("writing: {e}"))?;
    let mut opens = Vec::new();
    for round in 0..args.rounds {
        let order = if round % 2 == 0 { [false, true] } else { [true, false] };
        for checked in order {
            for cold in [true, false] {
                progress.set(&format!(
                    "round {} of {}: opening {} ({})",
                    round + 1,
                    args.rounds,
                    if checked { "checking every record" } else { "from the index files" },
                    if cold { "cold" } else { "warm" }
                ));
                opens.push(
                    open_once(&dir, checked, cold, last).map_err(|e| format!("opening: {e}"))?,
                );
            }
        }
    }
    drop(progress);
    let secs = |checked: bool, cold: bool| -> Vec<f64> {
        opens
            .iter()
            .filter(|o| o.checked == checked && o.cold == cold)
            .map(|o| o.took.as_secs_f64())
            .collect()
    };
    let segments = opens.first().map_or(0, |o| o.segments);
    let indexed = opens.iter().filter(|o| !o.checked).map(|o| o.indexed).min().unwrap_or(0);
    if args.json {
        let row = |checked: bool, cold: bool| {
            serde_json::json!({
                "mode": if checked { "check_every_record" } else { "index_files" },
                "cache": if cold { "cold" } else { "warm" },
                "open_s": secs(checked, cold),
                "median_s": median(secs(checked, cold)),
            })
        };
        let out = serde_json::json!({
            "bench": "recovery",
            "gib": args.gib,
            "payload_bytes": args.payload_bytes,
            "entries": last,
            "segments": segments,
            "segments_indexed": indexed,
            "results": [row(false, true), row(false, false), row(true, true), row(true, false)],
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "log: {:.2} GiB of {}-byte entries, {last} entries in {segments} segments ({indexed} opened from their index file)",
        args.gib, args.payload_bytes
    );
    println!("{:<24} {:<6} {:>10}  each (s)", "open", "cache", "median s");
    for (checked, name) in [(false, "from the index files"), (true, "checking every record")] {
        for cold in [true, false] {
            let each: Vec<String> = secs(checked, cold).iter().map(|s| format!("{s:.3}")).collect();
            println!(
                "{:<24} {:<6} {:>10.3}  {}",
                name,
                if cold { "cold" } else { "warm" },
                median(secs(checked, cold)),
                each.join(", ")
            );
        }
    }
    Ok(())
}
