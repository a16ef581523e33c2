//! Segmented, CRC-checked log storage with group fsync and crash recovery.
//!
//! One log per directory ([`LogStore`]), made of segment files named by their first index and a
//! small hard state file. The store reaches the disk only through the [`Disk`] seam, which has
//! a real io_uring implementation ([`UringDisk`]) and a deterministic simulated one
//! ([`SimDisk`]) used by the crash tests and the cluster simulator. docs/format.md describes
//! the bytes on disk, every fsync and rename, and the media assumptions.
//!
//! Layers inside: [`format`](mod@format) (pure byte layout) and the record scan are pure; [`disk`] holds
//! the effects; the log store glues them.
//!
//! ```
//! use raftwal::storage::{LogOptions, LogStore, SimDisk};
//! use raftwal_wire::types::{Entry, EntryKind, LogIndex, Term};
//! use std::path::Path;
//! use std::rc::Rc;
//!
//! let disk = Rc::new(SimDisk::new());
//! let options = LogOptions { segment_size_bytes: 1 << 20, ..LogOptions::default() };
//! let (mut log, recovery) = LogStore::open(Path::new("/log/1"), options, disk.clone()).unwrap();
//! assert_eq!(recovery.last_index, LogIndex(0));
//! let e = Entry { index: LogIndex(1), term: Term(1), kind: EntryKind::Normal, data: "hi".into() };
//! log.append(&[e]).unwrap();
//! log.submit().unwrap(); // one write + one fdatasync for everything queued
//! assert_eq!(log.process_completions().unwrap(), LogIndex(1)); // durable: acknowledge now
//! assert_eq!(log.read(LogIndex(1), 1 << 20).unwrap()[0].data, "hi");
//! ```

mod client_seqs;
pub mod disk;
mod error;
pub mod format;
mod hard_state;
mod index;
mod log;
mod segment;
mod terms;

pub use client_seqs::{ClientSeqs, CLIENT_SEQS_FILE, CLIENT_SEQS_GAPS_MAX, CLIENT_SEQS_MAX};
pub use disk::{
    Disk, FsyncMode, IoBuf, OwnerId, SimDisk, SimFaults, SimStats, Tear, UringDisk, UringOptions,
    UringStats,
};
pub use error::{
    AppendError, ClientSeqsError, CompactError, CompletionError, Corruption, FlushError,
    HardStateError, OpenError, Poisoned, ReadError, ResetError, SubmitError, TruncateError,
};
pub use format::SegmentId;
pub use hard_state::HARD_STATE_FILE;
pub use log::{LogOptions, LogStats, LogStore, Recovery, ZeroFill, BATCHES_IN_FLIGHT_LIMIT};
