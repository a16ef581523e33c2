//! The latency floor of a replicated append on this machine, measured in the same run as the
//! cluster: one fdatasync of a small O_DIRECT write on the data directory's disk, and one QUIC
//! round trip on loopback. A committed append needs at least the leader's fdatasync, one round
//! trip to a follower and the follower's fdatasync (in parallel with the leader's), and one round
//! trip between client and leader: the floor is 2 fdatasyncs + 2 round trips.
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

/// Medians over `samples` durable writes, each a 4 KiB O_DIRECT write appended to a preallocated
/// file and its fdatasync (the pattern of a one-entry batch in the log's active segment).
pub(crate) fn durable_write(dir: &Path, samples: usize) -> Result<DiskFloor, String> {
    let path = dir.join("floor-fdatasync.dat");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let len = (samples as i64 + 8) * BLOCK_SIZE_BYTES as i64;
    // SAFETY: fallocate takes a valid open descriptor and plain integers; the result is checked.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc != 0 {
        return Err(format!("fallocate: {}", std::io::Error::last_os_error()));
    }
    file.sync_all().map_err(|e| e.to_string())?;
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
