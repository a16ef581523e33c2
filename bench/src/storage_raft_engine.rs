//! The `raft-engine` reference of the storage benchmark: tikv's raft-engine appending the same
//! entries with sync writes.
//!
//! Owns: one raft-engine instance per cell with its default configuration (only the directory
//! set), and a closed loop that writes `concurrency` entries per `LogBatch` with `sync = true`,
//! the way a raft store hands it one ready batch at a time. Entries are protobuf `BytesValue`
//! messages whose first 8 bytes carry the index (raft-engine needs the index from the message);
//! the messages are built once and reused, so the loop measures raft-engine, not the benchmark.

use crate::report::latency_histogram_ns;
use crate::storage::{now, payload_for, Measured};
use bytes::Bytes;
use protobuf::well_known_types::BytesValue;
use raft_engine::{Config, Engine, LogBatch, MessageExt};
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
) -> io::Result<Measured> {
    std::fs::create_dir_all(dir)?;
    let config = Config { dir: dir.to_string_lossy().into_owned(), ..Config::default() };
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
    let mut hist = latency_histogram_ns();
    let mut next = 1u64;
    let (mut entries, mut writes) = (0u64, 0u64);
    let start = now();
    let deadline = start + duration;
    loop {
        for m in &mut pool {
            m.value[..8].copy_from_slice(&next.to_le_bytes());
            next += 1;
        }
        let began = now();
        let mut batch = LogBatch::default();
        batch.add_entries::<Entries>(REGION_ID, &pool).map_err(io::Error::other)?;
        engine.write(&mut batch, true).map_err(io::Error::other)?;
        let done = now();
        writes += 1;
        entries += concurrency as u64;
        let latency = done.duration_since(began).as_nanos() as u64;
        hist.record_n(latency.max(1), concurrency as u64).map_err(io::Error::other)?;
        if done >= deadline {
            break;
        }
    }
    Ok(Measured {
        entries,
        payload_bytes_total: entries * payload as u64,
        elapsed: start.elapsed(),
        latency_ns: hist,
        // Sync writes issued from one thread: raft-engine fsyncs once per write.
        fsyncs: writes,
        batches: writes,
        fdatasync_ns: None,
        raftwal: None,
    })
}
