//! The `raw` reference of the storage benchmark: the device's limit for raftwal's write
//! pattern, with no log logic at all.
//!
//! Owns: a loop of plain `pwrite` + `fdatasync` system calls over one file, with batches of the
//! size raftwal formed in the same cell and the same O_DIRECT choice and block padding. The
//! batches go into blocks written before (a region of [`REGION_BYTES`] preallocated and written
//! with zeros before the clock starts, then written over sequentially, from its start again when
//! a batch would pass its end), as raftwal's batches go into its zero-filled segments: a write
//! into blocks that were only preallocated would make every fdatasync commit an extent
//! conversion to the journal, which raftwal's zero-fill avoids. It must not do anything raftwal
//! can skip, or the ratio would flatter raftwal. (`--raw-unwritten` keeps the earlier reference:
//! 64 MiB chunks preallocated ahead of the writes and never written before, so each batch pays
//! that conversion.)
#![allow(unsafe_code)] // fallocate through libc; each call has a SAFETY comment.

use crate::report::latency_histogram_ns;
use crate::storage::{now, IoMode, Measured};
use raftwal::storage::format::{align_down, align_up, BLOCK_SIZE_BYTES};
use raftwal::storage::IoBuf;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Duration;

const CHUNK_BYTES: u64 = 64 << 20;

/// The written region `raw` writes over, again and again.
const REGION_BYTES: u64 = 256 << 20;

/// Preallocates `len` bytes of `file` and writes them with zeros (`align`-sized writes of at most
/// 8 MiB), then syncs it.
fn prewrite(file: &std::fs::File, len: u64) -> io::Result<()> {
    let at_most: usize = 8 << 20;
    // SAFETY: fallocate takes a descriptor we own and plain integers.
    if unsafe {
        libc::fallocate(file.as_raw_fd(), 0, 0, i64::try_from(len).map_err(io::Error::other)?)
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    let mut zeros = IoBuf::with_capacity(at_most);
    zeros.resize_zeroed(at_most);
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(at_most as u64) as usize;
        file.write_all_at(&zeros.as_slice()[..n], at)?;
        at += n as u64;
    }
    file.sync_all()
}

/// Writes batches of `batch_bytes` (each standing for `entries_per_batch` entries of `payload`
/// bytes, the entries whose records fill `batch_bytes`; a mean, so not always whole) for
/// `duration`, into blocks written before unless `unwritten`.
pub(crate) fn run(
    dir: &Path,
    mode: IoMode,
    batch_bytes: usize,
    entries_per_batch: f64,
    payload: usize,
    duration: Duration,
    unwritten: bool,
) -> io::Result<Measured> {
    std::fs::create_dir_all(dir)?;
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(true);
    if mode.direct_io {
        opts.custom_flags(libc::O_DIRECT);
    }
    let file = opts.open(dir.join("raw.dat"))?;
    let align = if mode.direct_io { BLOCK_SIZE_BYTES } else { 1 };
    let mut buf = IoBuf::with_capacity(batch_bytes + 2 * BLOCK_SIZE_BYTES);
    buf.resize_zeroed(align_up(batch_bytes + BLOCK_SIZE_BYTES, BLOCK_SIZE_BYTES));
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in buf.as_mut_slice() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut hist = latency_histogram_ns();
    let mut sync_hist = latency_histogram_ns();
    let mut offset = BLOCK_SIZE_BYTES as u64;
    let mut allocated = 0u64;
    // A region of at least a few batches, all of it written before the clock starts.
    let region = REGION_BYTES.max(align_up(4 * batch_bytes, BLOCK_SIZE_BYTES) as u64);
    if !unwritten {
        prewrite(&file, region)?;
    }
    let (mut batches, mut fsyncs) = (0u64, 0u64);
    // Each batch's latency counts once per entry it stands for (whole entries: the histogram's
    // weights; the mean's fraction shows in `entries` below).
    let weight = (entries_per_batch.round() as u64).max(1);
    let start = now();
    let deadline = start + duration;
    loop {
        let began = now();
        let mut end = offset + batch_bytes as u64;
        if !unwritten && end + BLOCK_SIZE_BYTES as u64 > region {
            // Over the written region again, from its first block.
            offset = BLOCK_SIZE_BYTES as u64;
            end = offset + batch_bytes as u64;
        }
        if unwritten && end + BLOCK_SIZE_BYTES as u64 > allocated {
            let len = i64::try_from(CHUNK_BYTES).map_err(io::Error::other)?;
            let at = i64::try_from(allocated).map_err(io::Error::other)?;
            // SAFETY: fallocate takes a descriptor we own and plain integers.
            if unsafe { libc::fallocate(file.as_raw_fd(), 0, at, len) } != 0 {
                return Err(io::Error::last_os_error());
            }
            allocated += CHUNK_BYTES;
            // raftwal syncs a new segment once at creation, so its batches never pay for the
            // size change; the reference does the same.
            file.sync_data()?;
            fsyncs += 1;
        }
        let phys_start = align_down(offset as usize, align);
        let phys_end = align_up(end as usize, align);
        file.write_all_at(&buf.as_slice()[..phys_end - phys_start], phys_start as u64)?;
        let sync_began = now();
        file.sync_data()?;
        sync_hist
            .record(now().duration_since(sync_began).as_nanos().max(1) as u64)
            .map_err(io::Error::other)?;
        fsyncs += 1;
        batches += 1;
        offset = end;
        let done = now();
        let latency = done.duration_since(began).as_nanos() as u64;
        hist.record_n(latency.max(1), weight).map_err(io::Error::other)?;
        if done >= deadline {
            break;
        }
    }
    let entries = (batches as f64 * entries_per_batch).round() as u64;
    Ok(Measured {
        entries,
        payload_bytes_total: entries * payload as u64,
        elapsed: start.elapsed(),
        latency_ns: hist,
        fsyncs,
        batches,
        fdatasync_ns: Some(sync_hist),
        raftwal: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftwal::storage::{FsyncMode, ZeroFill};

    /// `raw` writes into blocks written before the clock started, as raftwal's batches go into
    /// its zero-filled segments: its file has no preallocated, never-written blocks (ext4 reports
    /// those as a hole to `SEEK_HOLE`) where the batches go.
    #[test]
    fn raw_writes_into_blocks_written_before() {
        let dir = tempfile::tempdir().unwrap();
        let mode =
            IoMode { direct_io: true, fsync_mode: FsyncMode::Thread, zero_fill: ZeroFill::Never };
        let m =
            run(dir.path(), mode, 64 << 10, 64.0, 1024, Duration::from_millis(20), false).unwrap();
        assert!(m.batches > 0);
        let file = std::fs::File::open(dir.path().join("raw.dat")).unwrap();
        // SAFETY: lseek on a valid open descriptor with plain integers.
        let hole = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_HOLE) };
        assert!(hole >= REGION_BYTES as libc::off_t, "a hole at {hole}");
    }
}
