//! The `raft-engine` reference of the storage benchmark: tikv's raft-engine appending the same
//! entries with sync writes.
//!
//! Owns: one raft-engine instance per cell with its default configuration (only the directory
//! set, and under retention the file size and purge threshold, below), and a closed loop that writes `concurrency` entries per `LogBatch` with `sync = true`,
//! the way a raft store hands it one ready batch at a time. Entries are protobuf `BytesValue`
//! messages whose first 8 bytes carry the index (raft-engine needs the index from the message);
//! the messages are built once and reused, so the loop measures raft-engine, not the benchmark.
//!
//! Under retention (the default: `Retention`) its files are raftwal's segment size and its purge
//! threshold twice that (its own defaults, 128 MiB and 10 GiB, would never purge within a
//! cell), and the loop calls `compact_to` and `purge_expired_files` each time half the span
//! kept was written; raft-engine then recycles its purged files (`enable_log_recycle`, on by
//! default), as raftwal recycles its compacted segments.

use crate::report::latency_histogram_ns;
use crate::storage::{now, payload_for, Measured, Retention};
use bytes::Bytes;
use protobuf::well_known_types::BytesValue;
use raft_engine::{Config, Engine, LogBatch, MessageExt, ReadableSize};
use std::io;
use std::path::Path;
use std::time::Duration;

/// raft-engine's view of our entries.
#[derive(Debug, Clone, Copy)]
struct Entries;

impl MessageExt for Entries {
    type Entry = BytesValue;

    fn index(e: &BytesValue) -> u64 {
        let mut index = [0u8; 8];
        if let Some(prefix) = e.value.get(..8) {
            index.copy_from_slice(prefix);
        }
        u64::from_le_bytes(index)
    }
}

const REGION_ID: u64 = 1;

/// Appends `concurrency` entries of `payload` bytes per sync write for `duration`.
pub(crate) fn run(
    dir: &Path,
    payload: usize,
    concurrency: usize,
    duration: Duration,
    source: &Bytes,
    retention: Option<Retention>,
) -> io::Result<Measured> {
    std::fs::create_dir_all(dir)?;
    let mut config = Config { dir: dir.to_string_lossy().into_owned(), ..Config::default() };
    if let Some(r) = retention {
        config.target_file_size = ReadableSize(r.raft_engine_file_bytes);
        config.purge_threshold = ReadableSize(2 * r.raft_engine_file_bytes);
    }
    let engine = Engine::open(config).map_err(io::Error::other)?;
    let mut pool: Vec<BytesValue> = (0..concurrency as u64)
        .map(|k| {
            let mut m = BytesValue::new();
            m.value = Vec::with_capacity(8 + payload);
            m.value.extend_from_slice(&0u64.to_le_bytes());
            m.value.extend_from_slice(&payload_for(source, k, payload));
            m
        })
        .collect();
    let mut next = 1u64;
    let mut compacted_at = 0u64;
    // One sync write of `concurrency` entries; then, under retention, every half span kept,
    // compaction and a purge. Returns the write's latency.
    let mut one_write = |engine: &Engine| -> io::Result<u64> {
        for m in &mut pool {
            m.value[..8].copy_from_slice(&next.to_le_bytes());
            next += 1;
        }
        let began = now();
        let mut batch = LogBatch::default();
        batch.add_entries::<Entries>(REGION_ID, &pool).map_err(io::Error::other)?;
        engine.write(&mut batch, true).map_err(io::Error::other)?;
        let latency = now().duration_since(began).as_nanos() as u64;
        if let Some(r) = retention {
            let (durable, keep) = (next - 1, r.entries(payload));
            if durable > keep && durable - compacted_at >= keep / 2 {
                engine.compact_to(REGION_ID, durable + 1 - keep);
                engine.purge_expired_files().map_err(io::Error::other)?;
                compacted_at = durable;
            }
        }
        Ok(latency)
    };
    if let Some(r) = retention {
        let start = now();
        let mut written = 0u64;
        while !r.warmed_up(start, written, payload) {
            one_write(&engine)?;
            written += concurrency as u64;
        }
    }
    let mut hist = latency_histogram_ns();
    let (mut entries, mut writes) = (0u64, 0u64);
    let start = now();
    let deadline = start + duration;
    loop {
        let latency = one_write(&engine)?;
        writes += 1;
        entries += concurrency as u64;
        hist.record_n(latency.max(1), concurrency as u64).map_err(io::Error::other)?;
        if now() >= deadline {
            break;
        }
    }
    Ok(Measured {
        entries,
        payload_bytes_total: entries * payload as u64,
        elapsed: start.elapsed(),
        latency_ns: hist,
        // Sync writes issued from one thread, one fsync each. Not counted: the fsyncs of a file
        // rotation inside a write (old file, new header, directory) and of a purge (the rewrite
        // queue's), which raftwal's count has its equivalents of.
        fsyncs: writes,
        batches: writes,
        fdatasync_ns: None,
        raftwal: None,
    })
}
