//! The latency floor of a replicated append on this machine, measured in the same run as the
//! cluster: one fdatasync of a small O_DIRECT write on the data directory's disk, and one QUIC
//! round trip on loopback. A committed append needs at least the leader's fdatasync, one round
//! trip to a follower and the follower's fdatasync (in parallel with the leader's), and one round
//! trip between client and leader: the floor is 2 fdatasyncs + 2 round trips. A single
//! node commits after its own fdatasync and the client's round trip: 1 + 1.
#![allow(unsafe_code)] // fallocate through libc, with a SAFETY comment.
#![allow(clippy::disallowed_methods)] // A benchmark reads the clock.

use crate::report::latency_histogram_ns;
use raftwal::storage::format::BLOCK_SIZE_BYTES;
use raftwal::storage::IoBuf;
use raftwal_wire::client::{ClientRequest, StatusRequest};
use raftwal_wire::codec::FrameLimits;
use raftwal_wire::tls::TlsIdentity;
use raftwal_wire::transport::{ClientEndpoint, QuicTuning};
use raftwal_wire::types::LogId;
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

/// The medians of one durable small write on this disk.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DiskFloor {
    /// The fdatasync call alone, after the write it makes durable (us).
    pub(crate) fdatasync_us: f64,
    /// The write and its fdatasync together: what a one-entry batch costs at least (us).
    pub(crate) write_fdatasync_us: f64,
}

/// An O_DIRECT file of `blocks` blocks prepared as the log prepares its active segment:
/// preallocated, then written with zeros and synced, so that a later write into it needs no
/// extent conversion and its fdatasync only flushes. (A write into blocks that were only
/// preallocated makes its fdatasync commit the conversion to the file system's journal too,
/// which the log's zero-fill exists to avoid: on the benchmark machine that doubled the
/// fdatasync, and a floor measured that way was one the log does not pay.)
fn prepared_file(path: &Path, blocks: usize) -> Result<std::fs::File, String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let len = blocks * BLOCK_SIZE_BYTES;
    // SAFETY: fallocate takes a valid open descriptor and plain integers; the result is checked.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as i64) };
    if rc != 0 {
        return Err(format!("fallocate: {}", std::io::Error::last_os_error()));
    }
    let mut zeros = IoBuf::with_capacity(len);
    zeros.resize_zeroed(len);
    file.write_all_at(zeros.as_slice(), 0).map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())?;
    Ok(file)
}

/// Medians over `samples` durable writes, each a 4 KiB O_DIRECT write into the next block of a
/// file prepared as the log's active segment (preallocated and zero-filled) and its fdatasync:
/// the pattern of a one-entry batch.
pub(crate) fn durable_write(dir: &Path, samples: usize) -> Result<DiskFloor, String> {
    let path = dir.join("floor-fdatasync.dat");
    let file = prepared_file(&path, samples + 8)?;
    let mut buf = IoBuf::with_capacity(BLOCK_SIZE_BYTES);
    buf.resize_zeroed(BLOCK_SIZE_BYTES);
    let mut sync = latency_histogram_ns();
    let mut both = latency_histogram_ns();
    for i in 0..samples + 8 {
        let offset = (i * BLOCK_SIZE_BYTES) as u64;
        let start = Instant::now();
        file.write_all_at(buf.as_slice(), offset).map_err(|e| e.to_string())?;
        let written = Instant::now();
        file.sync_data().map_err(|e| e.to_string())?;
        let done = Instant::now();
        // The first few warm the file's metadata.
        if i >= 8 {
            sync.saturating_record((done - written).as_nanos().max(1) as u64);
            both.saturating_record((done - start).as_nanos().max(1) as u64);
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(DiskFloor {
        fdatasync_us: sync.value_at_quantile(0.5) as f64 / 1000.0,
        write_fdatasync_us: both.value_at_quantile(0.5) as f64 / 1000.0,
    })
}

/// Median microseconds of `samples` round trips of a small request (a status query) to the node
/// at `addr` over the client protocol, on an otherwise idle connection.
pub(crate) async fn quic_rtt_us(
    tls_dir: &Path,
    addr: SocketAddr,
    samples: usize,
) -> Result<f64, String> {
    let identity = TlsIdentity::load_client(tls_dir).map_err(|e| e.to_string())?;
    let endpoint = ClientEndpoint::open(
        &identity,
        "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        &QuicTuning::default(),
        FrameLimits::default(),
    )
    .map_err(|e| e.to_string())?;
    let connection = endpoint.connect(addr).await.map_err(|e| e.to_string())?;
    let request = ClientRequest::Status(StatusRequest { log: LogId(0) });
    let mut hist = latency_histogram_ns();
    for i in 0..samples + 20 {
        let start = Instant::now();
        connection.request(&request).await.map_err(|e| e.to_string())?;
        let ns = start.elapsed().as_nanos() as u64;
        if i >= 20 {
            hist.saturating_record(ns.max(1));
        }
    }
    connection.close();
    endpoint.close();
    Ok(hist.value_at_quantile(0.5) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The floor's writes go to blocks already written, as a batch's do in the log's active
    /// segment: the prepared file has no unwritten extent left (on ext4, `SEEK_HOLE` reports
    /// preallocated but never-written blocks as a hole).
    #[test]
    fn the_floor_writes_into_blocks_written_before() {
        let dir = tempfile::tempdir().unwrap();
        let blocks = 64;
        let file = prepared_file(&dir.path().join("floor.dat"), blocks).unwrap();
        // SAFETY: lseek on a valid open descriptor with plain integers.
        let hole = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_HOLE) };
        assert_eq!(hole, (blocks * BLOCK_SIZE_BYTES) as libc::off_t, "first hole");
    }
}
