//! The `storage` benchmark: durable single-node appends through raftwal's log store, next to
//! the device's limit for the same pattern (`raw`) and tikv's raft-engine, in one run on one
//! disk.
//!
//! Owns: the grid of cells (payload size x appends outstanding x system), the closed-loop load
//! of each cell, and the `--modes` comparison of raftwal's I/O settings (O_DIRECT or buffered,
//! fdatasync on the ring or on the writer's thread).
//!
//! Method: each cell keeps `concurrency` appends outstanding. raftwal appends them, submits one
//! batch (one write + one fdatasync) and waits for its completion; latency runs from the append
//! to the completion that made the entry durable. The load is closed-loop (a new append starts
//! when one completes), so there is no schedule for coordinated omission to distort. `raw` then
//! writes batches of the mean size raftwal formed in the same cell, with pwrite + fdatasync on
//! the same kind of file (same O_DIRECT choice, blocks written before as raftwal's zero-filled
//! segments are), so it is the device's limit for this pattern without any log logic. raft-engine writes `concurrency` entries per
//! sync write. With `--rounds N` each system (with `--modes`, each I/O setting) measures every
//! cell N times, the order rotating by one each round so that all share the disk's swings; a
//! row sums its rounds.
//!
//! Payloads: raftwal and raft-engine append the same payload bytes. The k-th entry of every
//! batch carries the k-th of `concurrency` slices of one source buffer: raftwal appends `Bytes`
//! handles to those slices; raft-engine's messages are copies of them made once (each with an
//! 8-byte index in front, which raft-engine needs) and reused. Both systems therefore copy the
//! same payloads from the same `concurrency` buffers into their write buffers every batch,
//! which for 256 entries of 1 KiB stay in the CPU's cache across batches.
//!
//! Retention: by default both logs run as a write-ahead log does in its steady state, dropping
//! what lies more than `--retain-mib` behind the durable end. raftwal calls `compact_before` after
//! every batch (it keeps the compacted files and writes later segments into them); raft-engine
//! gets `compact_to` and `purge_expired_files` each time half of that span was written, with
//! its files of raftwal's segment size and a purge threshold of twice that (so it recycles
//! its purged files too). Each cell first runs untimed until three times the span was written
//! or `--warmup-s` passed, so the clock starts in that steady state. `--grow` keeps everything
//! instead: the log grows into new files for the whole cell (the method before retention).

use crate::report::{latency_histogram_ns, Format, LatencyUs, Progress, Report, ResultRow};
use crate::storage_raft_engine;
use crate::storage_raw;
use bytes::Bytes;
use hdrhistogram::Histogram;
use raftwal::storage::{
    FsyncMode, LogOptions, LogStats, LogStore, UringDisk, UringOptions, UringStats, ZeroFill,
};
use raftwal_wire::types::{Entry, EntryKind, LogIndex, Term};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Options of the `storage` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StorageArgs {
    /// Seconds of measurement per cell.
    #[arg(long, default_value_t = 2.5)]
    pub(crate) duration_s: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    /// Directory for the benchmark's files (a fresh subdirectory is made and removed).
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
    /// Payload sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 1024, 16384])]
    pub(crate) payloads: Vec<usize>,
    /// Appends outstanding.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 256])]
    pub(crate) concurrency: Vec<usize>,
    /// Systems to measure (raw needs raftwal in the same run for its batch size).
    #[arg(long, value_delimiter = ',', default_values_t = [String::from("raftwal"), String::from("raw"), String::from("raft-engine")])]
    pub(crate) systems: Vec<String>,
    /// Instead of the comparison, measure raftwal under each I/O setting: O_DIRECT or
    /// buffered; fdatasync linked on the ring, issued by the writer's thread after a ring write,
    /// replaced by an RWF_DSYNC write, or pwrite + fdatasync both blocking; and, with O_DIRECT
    /// and the thread's fdatasync, each zero-fill policy.
    #[arg(long)]
    pub(crate) modes: bool,
    /// Who makes raftwal's batches durable: `thread` (the writer's own fdatasync after a ring
    /// write), `ring` (fdatasync linked after the write on the ring), `dsync` (the ring write
    /// itself with RWF_DSYNC), `blocking` (pwrite + fdatasync system calls). Default: the
    /// shipped one.
    #[arg(long, value_parser = parse_fsync_mode)]
    pub(crate) fsync: Option<FsyncMode>,
    /// raftwal's `write_chunk_bytes` in KiB (the largest chunk of a batch written in chunks).
    #[arg(long)]
    pub(crate) write_chunk_kib: Option<usize>,
    /// raftwal's `write_chunk_first_bytes` in KiB (batches above it are written in chunks
    /// doubling from it up to `--write-chunk-kib`).
    #[arg(long)]
    pub(crate) write_chunk_first_kib: Option<usize>,
    /// raftwal's zero-fill policy: `never`, `always`, or `below:KIB` (only while the mean batch
    /// is below KIB KiB). Default: the shipped one.
    #[arg(long, value_parser = parse_zero_fill)]
    pub(crate) zero_fill: Option<ZeroFill>,
    /// raftwal's `zero_chunk_bytes` in KiB (one background zero-fill write).
    #[arg(long)]
    pub(crate) zero_chunk_kib: Option<usize>,
    /// `raw` writes into blocks only preallocated, never written (each fdatasync then also
    /// commits their conversion to written extents), instead of into blocks written before as
    /// raftwal's zero-filled segments are. The reference before the change; for comparison.
    #[arg(long)]
    pub(crate) raw_unwritten: bool,
    /// Keep this many MiB of the newest entries and compact the rest away after every batch
    /// (raftwal) or every half of it (raft-engine), as a write-ahead log in its steady state
    /// does; the compacted files are recycled.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) retain_mib: u64,
    /// raft-engine's file size in MiB under retention (its purge threshold is twice that).
    /// Default: raftwal's segment size.
    #[arg(long)]
    pub(crate) raft_engine_file_mib: Option<u64>,
    /// Never compact: the log grows into new files for the whole cell.
    #[arg(long)]
    pub(crate) grow: bool,
    /// Untimed appends before each cell of raftwal and raft-engine (not with `--grow`): until
    /// three times `--retain-mib` was written or this many seconds passed.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup_s: f64,
    /// Rounds per cell: each round measures every system (with `--modes`, every I/O setting)
    /// for `--duration-s`, starting one later than the round before, so they alternate in time
    /// and share the disk's ups and downs. A row sums its rounds (and lists each round's
    /// entries/s).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) rounds: u32,
}

/// Parses `thread`, `ring`, `dsync` or `blocking`.
fn parse_fsync_mode(text: &str) -> Result<FsyncMode, String> {
    match text {
        "thread" => Ok(FsyncMode::Thread),
        "ring" => Ok(FsyncMode::Ring),
        "dsync" => Ok(FsyncMode::Dsync),
        "blocking" => Ok(FsyncMode::Blocking),
        _ => Err(format!("expected thread, ring, dsync or blocking, got {text}")),
    }
}

/// Parses `never`, `always` or `below:KIB`.
fn parse_zero_fill(text: &str) -> Result<ZeroFill, String> {
    match text {
        "never" => Ok(ZeroFill::Never),
        "always" => Ok(ZeroFill::Always),
        _ => text
            .strip_prefix("below:")
            .and_then(|kib| kib.parse::<usize>().ok())
            .map(|kib| ZeroFill::BatchBytesBelow(kib << 10))
            .ok_or_else(|| format!("expected never, always or below:KIB, got {text}")),
    }
}

impl Default for StorageArgs {
    fn default() -> StorageArgs {
        StorageArgs {
            duration_s: 2.5,
            format: Format::Table,
            dir: None,
            payloads: vec![64, 1024, 16384],
            concurrency: vec![1, 16, 256],
            systems: vec!["raftwal".into(), "raw".into(), "raft-engine".into()],
            modes: false,
            fsync: None,
            write_chunk_kib: None,
            write_chunk_first_kib: None,
            zero_fill: None,
            zero_chunk_kib: None,
            raw_unwritten: false,
            retain_mib: 64,
            grow: false,
            raft_engine_file_mib: None,
            warmup_s: 1.0,
            rounds: 1,
        }
    }
}

/// raftwal's I/O settings for one measurement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IoMode {
    pub(crate) direct_io: bool,
    pub(crate) fsync_mode: FsyncMode,
    pub(crate) zero_fill: ZeroFill,
}

impl IoMode {
    /// The storage layer's defaults (`LogOptions::default` and `UringOptions::default`), which
    /// this benchmark runs raftwal with; a node's configuration defaults differ (`dsync`, 128
    /// KiB zero-fill writes: `NodeConfig`), and the cluster benchmark runs those.
    fn shipped() -> IoMode {
        IoMode {
            direct_io: LogOptions::default().direct_io,
            fsync_mode: UringOptions::default().fsync_mode,
            zero_fill: LogOptions::default().zero_fill,
        }
    }

    fn label(self) -> String {
        let io = if self.direct_io { "direct" } else { "buffered" };
        let sync = match self.fsync_mode {
            FsyncMode::Ring => "ring-fsync",
            FsyncMode::Thread => "thread-fsync",
            FsyncMode::Dsync => "dsync-write",
            FsyncMode::Blocking => "blocking-pwrite",
        };
        let zero = match self.zero_fill {
            ZeroFill::Never => "zero-fill:never".to_owned(),
            ZeroFill::Always => "zero-fill:always".to_owned(),
            ZeroFill::BatchBytesBelow(bytes) => format!("zero-fill:below:{}", bytes >> 10),
        };
        format!("{io},{sync},{zero}")
    }
}

/// What one measured cell produced, before it becomes a report row.
#[derive(Debug)]
pub(crate) struct Measured {
    pub(crate) entries: u64,
    pub(crate) payload_bytes_total: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latency_ns: Histogram<u64>,
    pub(crate) fsyncs: u64,
    pub(crate) batches: u64,
    /// raftwal only: its counters and the disk's, for the report's extra columns.
    pub(crate) raftwal: Option<(LogStats, UringStats)>,
    /// The fdatasync calls alone (the `raw` reference measures them).
    pub(crate) fdatasync_ns: Option<Histogram<u64>>,
}

impl Measured {
    /// Adds a later measurement of the same system and cell: counts and times add up, the
    /// histograms merge.
    fn absorb(&mut self, other: Measured) -> std::io::Result<()> {
        self.entries += other.entries;
        self.payload_bytes_total += other.payload_bytes_total;
        self.elapsed += other.elapsed;
        self.latency_ns.add(&other.latency_ns).map_err(std::io::Error::other)?;
        self.fsyncs += other.fsyncs;
        self.batches += other.batches;
        self.raftwal = match (self.raftwal, other.raftwal) {
            (Some((log, disk)), Some((log2, disk2))) => Some((log.plus(&log2), disk.plus(&disk2))),
            (mine, theirs) => mine.or(theirs),
        };
        match (&mut self.fdatasync_ns, other.fdatasync_ns) {
            (Some(h), Some(h2)) => h.add(&h2).map_err(std::io::Error::other)?,
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
        Ok(())
    }

    /// Entries per batch (per sync write for the references).
    fn batch_entries_mean(&self) -> f64 {
        self.entries as f64 / self.batches.max(1) as f64
    }

    pub(crate) fn row(&self, system: &str, payload: usize, concurrency: usize) -> ResultRow {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let row = ResultRow {
            system: system.to_owned(),
            payload_bytes: payload as u64,
            concurrency: concurrency as u64,
            entries_per_s: self.entries as f64 / secs,
            mb_per_s: self.payload_bytes_total as f64 / secs / 1e6,
            latency_us: LatencyUs::from_histogram_ns(&self.latency_ns),
            extra: serde_json::Map::new(),
        }
        .with("fsyncs", self.fsyncs);
        let row = match self.raftwal {
            Some((log, disk)) => row
                .with("batches", log.batches)
                .with("data_fsyncs", disk.op_syncs)
                .with("other_fsyncs", disk.other_syncs)
                .with("background_fsyncs", disk.background_syncs)
                .with("background_mb", (log.background_bytes as f64 / 1e5).round() / 10.0)
                .with("segments_prepared", log.roll_overs_prepared)
                .with("segments_created", log.segments_created)
                .with("segments_recycled", log.roll_overs_recycled)
                .with(
                    "prepared_unzeroed_mb",
                    (log.prepared_unzeroed_bytes as f64 / 1e5).round() / 10.0,
                ),
            None => row,
        };
        match &self.fdatasync_ns {
            Some(h) => row.with(
                "fdatasync_p50_us",
                (LatencyUs::from_histogram_ns(h).p50 * 10.0).round() / 10.0,
            ),
            None => row,
        }
    }
}

/// One system's measurements of one cell, summed over the rounds.
#[derive(Default)]
struct Totals {
    sum: Option<Measured>,
    /// Entries per second of each round, in order.
    per_round: Vec<f64>,
    /// `raw` only: the batch size (bytes) it wrote in each round.
    raw_batch_bytes: Vec<f64>,
}

impl Totals {
    fn add(&mut self, m: Measured) -> std::io::Result<()> {
        let rate = m.entries as f64 / m.elapsed.as_secs_f64().max(1e-9);
        self.per_round.push((rate * 10.0).round() / 10.0);
        match &mut self.sum {
            None => self.sum = Some(m),
            Some(sum) => sum.absorb(m)?,
        }
        Ok(())
    }
}

/// The benchmark's clock. Benchmarks measure time; the pure core never does.
#[allow(clippy::disallowed_methods)]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// A buffer of incompressible bytes that payloads are sliced from (zero-copy, as in a node).
pub(crate) fn payload_source() -> Bytes {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let v: Vec<u8> = (0..(8 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    Bytes::from(v)
}

/// Slices a payload of `len` bytes for entry `index` out of `source`.
pub(crate) fn payload_for(source: &Bytes, index: u64, len: usize) -> Bytes {
    let at = (index as usize * 4099) % (source.len() - len);
    source.slice(at..at + len)
}

/// The batch `raw` writes in a cell: raftwal's mean batch there, in entries and in bytes.
///
/// raftwal's mean batch can hold fewer entries than `concurrency`: an append that crosses a
/// segment's end goes out as two batches (at 16 KiB x 256, one append in about 16), and so
/// `raw`, writing batches of the mean size, must be credited with the entries those bytes hold,
/// not with `concurrency` per batch, or its MB/s counts payload it never wrote.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawBatch {
    /// Entries per batch: raftwal's `batch_entries_mean`.
    pub(crate) entries: f64,
    /// Bytes per batch: those entries' records.
    pub(crate) bytes: f64,
}

impl RawBatch {
    fn of(raftwal: &Measured, payload: usize) -> RawBatch {
        let entries = raftwal.batch_entries_mean();
        let record = raftwal::storage::format::record_size_bytes(payload) as f64;
        RawBatch { entries, bytes: entries * record }
    }

    /// Measures `raw` writing this batch again and again for `duration`.
    fn run_raw(
        self,
        dir: &Path,
        mode: IoMode,
        payload: usize,
        duration: Duration,
        unwritten: bool,
    ) -> std::io::Result<Measured> {
        let bytes = self.bytes.round() as usize;
        storage_raw::run(dir, mode, bytes, self.entries, payload, duration, unwritten)
    }
}

/// How a cell keeps its log's size (`--retain-mib`, `--warmup-s`); `None` with `--grow`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retention {
    /// Bytes of the newest entries kept (payload and record framing).
    pub(crate) bytes: u64,
    /// The longest untimed run before the clock starts.
    pub(crate) warmup: Duration,
    /// raft-engine's file size (`--raft-engine-file-mib`).
    pub(crate) raft_engine_file_bytes: u64,
}

impl Retention {
    fn of(args: &StorageArgs) -> Option<Retention> {
        (!args.grow).then(|| Retention {
            bytes: args.retain_mib << 20,
            // `run` refused what a `Duration` cannot hold.
            warmup: Duration::try_from_secs_f64(args.warmup_s).unwrap_or_default(),
            raft_engine_file_bytes: args
                .raft_engine_file_mib
                .map_or(LogOptions::default().segment_size_bytes, |m| m << 20),
        })
    }

    /// Entries of `payload` bytes that fill the span kept.
    pub(crate) fn entries(&self, payload: usize) -> u64 {
        let record = raftwal::storage::format::record_size_bytes(payload) as u64;
        (self.bytes / record).max(1)
    }

    /// Whether the untimed run that started at `start` and wrote `entries` is long enough.
    pub(crate) fn warmed_up(&self, start: Instant, entries: u64, payload: usize) -> bool {
        entries >= 3 * self.entries(payload) || start.elapsed() >= self.warmup
    }
}

fn run_raftwal(
    dir: &Path,
    mode: IoMode,
    args: &StorageArgs,
    payload: usize,
    concurrency: usize,
    duration: Duration,
    source: &Bytes,
) -> std::io::Result<Measured> {
    let disk = Rc::new(UringDisk::new(UringOptions {
        fsync_mode: mode.fsync_mode,
        ..UringOptions::default()
    })?);
    let defaults = LogOptions::default();
    let write_chunk_bytes = args.write_chunk_kib.map_or(defaults.write_chunk_bytes, |k| k << 10);
    let write_chunk_first_bytes =
        args.write_chunk_first_kib.map_or(defaults.write_chunk_first_bytes, |k| k << 10);
    let zero_chunk_bytes = args.zero_chunk_kib.map_or(defaults.zero_chunk_bytes, |k| k << 10);
    let options = LogOptions {
        direct_io: mode.direct_io,
        write_chunk_bytes,
        write_chunk_first_bytes,
        zero_fill: mode.zero_fill,
        zero_chunk_bytes,
        ..defaults
    };
    let retention = Retention::of(args);
    let (mut log, _) = LogStore::open(dir, options, disk.clone()).map_err(std::io::Error::other)?;
    let mut batch: Vec<Entry> = Vec::with_capacity(concurrency);
    let mut next = 1u64;
    // One batch of `concurrency` appends, made durable; then, under retention, what lies more
    // than the span kept behind the durable end is compacted. Returns the batch's latency.
    let mut one_batch = |log: &mut LogStore<UringDisk>| -> std::io::Result<u64> {
        batch.clear();
        for _ in 0..concurrency {
            batch.push(Entry {
                index: LogIndex(next),
                term: Term(1),
                kind: EntryKind::Normal,
                // The payload raft-engine's k-th message carries (see the module doc).
                data: payload_for(source, (next - 1) % concurrency as u64, payload),
            });
            next += 1;
        }
        let appended_at = now();
        log.append(&batch).map_err(std::io::Error::other)?;
        let target = log.last_index();
        while log.durable_index() < target {
            log.submit().map_err(std::io::Error::other)?;
            log.wait().map_err(std::io::Error::other)?;
        }
        let latency = now().duration_since(appended_at).as_nanos() as u64;
        if let Some(r) = retention {
            let durable = log.durable_index().get();
            let keep = r.entries(payload);
            if durable > keep {
                log.compact_before(LogIndex(durable + 1 - keep)).map_err(std::io::Error::other)?;
            }
        }
        Ok(latency)
    };
    if let Some(r) = retention {
        let start = now();
        let mut written = 0u64;
        while !r.warmed_up(start, written, payload) {
            one_batch(&mut log)?;
            written += concurrency as u64;
        }
    }
    let mut hist = latency_histogram_ns();
    let start = now();
    let deadline = start + duration;
    let before = disk.stats();
    let log_before = log.stats();
    let mut entries = 0u64;
    loop {
        let latency = one_batch(&mut log)?;
        hist.record_n(latency.max(1), concurrency as u64).map_err(std::io::Error::other)?;
        entries += concurrency as u64;
        if now() >= deadline {
            break;
        }
    }
    let elapsed = start.elapsed();
    let after = disk.stats();
    let stats = log.stats();
    let log_delta = stats.since(&log_before);
    let disk_delta = after.since(&before);
    Ok(Measured {
        entries,
        payload_bytes_total: entries * payload as u64,
        elapsed,
        latency_ns: hist,
        // Every fdatasync and directory fsync: the batches', the roll-overs', the compactions'
        // and the background ones of the segment prepared ahead.
        fsyncs: disk_delta.op_syncs + disk_delta.other_syncs + disk_delta.background_syncs,
        batches: log_delta.batches,
        fdatasync_ns: None,
        raftwal: Some((log_delta, disk_delta)),
    })
}

/// The numbers of seconds the benchmark cannot run with, as a message (before anything starts:
/// one `Duration` cannot hold panicked where the cell's clock was set).
fn check_seconds(args: &StorageArgs) -> Result<(), String> {
    crate::report::check_seconds("duration-s", args.duration_s, false)?;
    crate::report::check_seconds("warmup-s", args.warmup_s, true)
}

/// Runs the benchmark and prints its report.
pub(crate) fn run(args: &StorageArgs) -> std::io::Result<()> {
    if args.concurrency.contains(&0) {
        return Err(std::io::Error::other(
            "appends outstanding (--concurrency) must be at least 1",
        ));
    }
    check_seconds(args).map_err(std::io::Error::other)?;
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)?;
    let root = tempfile::Builder::new().prefix("raftwal-bench-storage-").tempdir_in(&parent)?;
    let duration = Duration::from_secs_f64(args.duration_s);
    let source = payload_source();
    let mut report = Report::new("storage");
    let mut progress = Progress::default();
    let modes: Vec<IoMode> = if args.modes {
        let mut all = Vec::new();
        let zero_fill = args.zero_fill.unwrap_or(IoMode::shipped().zero_fill);
        for direct_io in [true, false] {
            for fsync_mode in
                [FsyncMode::Thread, FsyncMode::Ring, FsyncMode::Dsync, FsyncMode::Blocking]
            {
                all.push(IoMode { direct_io, fsync_mode, zero_fill });
            }
        }
        for policy in [ZeroFill::Never, ZeroFill::Always] {
            if policy != zero_fill {
                all.push(IoMode {
                    direct_io: true,
                    fsync_mode: FsyncMode::Thread,
                    zero_fill: policy,
                });
            }
        }
        all
    } else {
        let shipped = IoMode::shipped();
        vec![IoMode {
            zero_fill: args.zero_fill.unwrap_or(shipped.zero_fill),
            fsync_mode: args.fsync.unwrap_or(shipped.fsync_mode),
            ..shipped
        }]
    };
    let systems: Vec<&str> = if args.modes {
        vec!["raftwal"]
    } else {
        args.systems.iter().map(String::as_str).collect()
    };
    let rounds = args.rounds as usize;
    // What a cell measures: each system under each I/O setting (one setting unless `--modes`).
    let items: Vec<(IoMode, &str)> =
        modes.iter().flat_map(|&mode| systems.iter().map(move |&system| (mode, system))).collect();
    let steps = args.payloads.len() * args.concurrency.len() * items.len() * rounds;
    let mut step = 0;
    let mut cell_dir = 0;
    for &payload in &args.payloads {
        for &concurrency in &args.concurrency {
            // The mean batch raftwal formed in this cell so far, which `raw` writes.
            let mut raftwal_batch: Option<RawBatch> = None;
            let mut totals: Vec<Totals> = items.iter().map(|_| Totals::default()).collect();
            for round in 0..rounds {
                // Each round starts one item later, so none always runs first (or right after
                // another's deleted files) in its cell, and all share the disk's swings.
                for k in 0..items.len() {
                    let at = (k + round) % items.len();
                    let (mode, system) = items[at];
                    step += 1;
                    cell_dir += 1;
                    let what = if args.modes {
                        format!("raftwal[{}]", mode.label())
                    } else {
                        system.to_owned()
                    };
                    let of_rounds = if rounds > 1 {
                        format!(", round {}/{rounds}", round + 1)
                    } else {
                        String::new()
                    };
                    progress.set(&format!("storage: step {step}/{steps}: {what}, {payload} B payloads, {concurrency} outstanding{of_rounds}"));
                    let dir = root.path().join(format!("cell-{cell_dir}"));
                    let measured = match system {
                        "raftwal" => {
                            run_raftwal(&dir, mode, args, payload, concurrency, duration, &source)?
                        }
                        "raw" => {
                            let Some(batch) = raftwal_batch else {
                                return Err(std::io::Error::other(
                                    "raw needs raftwal measured first in the same run",
                                ));
                            };
                            totals[at].raw_batch_bytes.push(batch.bytes);
                            batch.run_raw(&dir, mode, payload, duration, args.raw_unwritten)?
                        }
                        "raft-engine" => storage_raft_engine::run(
                            &dir,
                            payload,
                            concurrency,
                            duration,
                            &source,
                            Retention::of(args),
                        )?,
                        other => {
                            return Err(std::io::Error::other(format!("unknown system {other}")))
                        }
                    };
                    let _ = std::fs::remove_dir_all(&dir);
                    totals[at].add(measured)?;
                    if system == "raftwal" {
                        if let Some(m) = &totals[at].sum {
                            raftwal_batch = Some(RawBatch::of(m, payload));
                        }
                    }
                }
            }
            for (&(mode, system), t) in items.iter().zip(totals) {
                let Some(m) = &t.sum else { continue };
                let name = match system {
                    "raftwal" if args.modes => format!("raftwal[{}]", mode.label()),
                    other => other.to_owned(),
                };
                let mut row = m.row(&name, payload, concurrency);
                if system == "raftwal" {
                    let batch_entries = m.batch_entries_mean();
                    row = row
                        .with("batch_entries_mean", (batch_entries * 10.0).round() / 10.0)
                        .with("io", mode.label());
                }
                if !t.raw_batch_bytes.is_empty() {
                    let mean =
                        t.raw_batch_bytes.iter().sum::<f64>() / t.raw_batch_bytes.len() as f64;
                    row = row.with("batch_bytes", mean.round());
                }
                if rounds > 1 {
                    row = row.with("rounds_entries_per_s", t.per_round);
                }
                report.results.push(row);
            }
        }
    }
    progress.finish();
    report.print(args.format)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seconds a `Duration` cannot hold are refused with a message before anything starts
    /// (they panicked: `--duration-s -1`, `--duration-s NaN`, `--warmup-s inf`).
    #[test]
    fn bad_seconds_are_refused_before_anything_starts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = [
            StorageArgs { duration_s: -1.0, ..StorageArgs::default() },
            StorageArgs { duration_s: f64::NAN, ..StorageArgs::default() },
            StorageArgs { duration_s: 0.0, ..StorageArgs::default() },
            StorageArgs { warmup_s: f64::INFINITY, ..StorageArgs::default() },
            StorageArgs { warmup_s: -0.5, ..StorageArgs::default() },
        ];
        for args in bad {
            let args = StorageArgs { dir: Some(dir.path().to_owned()), ..args };
            let err = run(&args).expect_err("refused").to_string();
            assert!(err.contains("must be"), "{err}");
        }
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "nothing ran");
        assert!(check_seconds(&StorageArgs { warmup_s: 0.0, ..StorageArgs::default() }).is_ok());
    }

    fn measured(entries: u64, secs: u64, latency_ns: u64, raftwal: bool) -> Measured {
        let mut hist = latency_histogram_ns();
        hist.record_n(latency_ns, entries).expect("in range");
        let stats = (
            LogStats { batches: entries / 2, ..LogStats::default() },
            UringStats { op_syncs: entries / 2, ..UringStats::default() },
        );
        Measured {
            entries,
            payload_bytes_total: entries * 1024,
            elapsed: Duration::from_secs(secs),
            latency_ns: hist,
            fsyncs: entries / 2,
            batches: entries / 2,
            raftwal: raftwal.then_some(stats),
            fdatasync_ns: None,
        }
    }

    /// At 16 KiB x 256 raftwal's appends of 256 entries go out as 241 entries per batch on
    /// average (each roll-over splits one append in two); `raw` writes batches of that size and
    /// must report the payload those batches hold, not 256 entries' worth per batch.
    #[test]
    fn raw_is_credited_with_the_entries_its_batches_hold() {
        let payload = 16384;
        let record = raftwal::storage::format::record_size_bytes(payload) as f64;
        // 1,600 appends of 256 entries in 1,700 batches: 100 appends crossed a segment's end.
        let mut raftwal = measured(1600 * 256, 1, 100_000, true);
        raftwal.batches = 1700;
        let batch = RawBatch::of(&raftwal, payload);
        assert!((batch.entries - 1600.0 * 256.0 / 1700.0).abs() < 1e-9);
        assert!((batch.bytes - batch.entries * record).abs() < 1e-6);

        let dir = tempfile::tempdir().expect("temp dir");
        let mode =
            IoMode { direct_io: true, fsync_mode: FsyncMode::Thread, zero_fill: ZeroFill::Never };
        let raw = batch.run_raw(dir.path(), mode, payload, Duration::from_millis(20), false);
        let raw = raw.expect("raw runs");
        assert!(raw.batches > 0);
        // The payload credited is the payload of the records written, to within one entry.
        let written = raw.batches as f64 * batch.bytes.round() / record * payload as f64;
        let credited = raw.payload_bytes_total as f64;
        assert!(
            (credited - written).abs() <= payload as f64,
            "credited {credited} B of payload for {written} B written in {} batches",
            raw.batches
        );
    }

    #[test]
    fn rounds_add_up_to_one_row_and_keep_each_rate() {
        let mut t = Totals::default();
        t.add(measured(1000, 1, 100_000, true)).expect("add");
        t.add(measured(3000, 2, 300_000, true)).expect("add");
        assert_eq!(t.per_round, vec![1000.0, 1500.0]);
        let sum = t.sum.as_ref().expect("two rounds");
        assert_eq!(
            (sum.entries, sum.elapsed, sum.fsyncs, sum.batches),
            (4000, Duration::from_secs(3), 2000, 2000)
        );
        assert_eq!(sum.latency_ns.len(), 4000);
        let (log, disk) = sum.raftwal.expect("raftwal counters");
        assert_eq!((log.batches, disk.op_syncs), (2000, 2000));
        let row = sum.row("raftwal", 1024, 16);
        assert!((row.entries_per_s - 4000.0 / 3.0).abs() < 1e-6);
        // Three quarters of the entries took 300 us: the merged median is theirs.
        assert!((row.latency_us.p50 - 300.0).abs() < 1.0, "p50 {}", row.latency_us.p50);
    }
}
