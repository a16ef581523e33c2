//! The disk seam: the narrow interface between the log store and a disk.
//!
//! Owns: the [`Disk`] trait and the values that cross it ([`FileId`], [`OwnerId`], [`IoBuf`],
//! [`WriteOp`], [`Completion`]). Two implementations sit side by side: [`UringDisk`] (io_uring,
//! real files) and [`SimDisk`] (deterministic, in memory, with crashes and faults).
//!
//! Shape of the seam:
//! - Rare namespace and setup operations (create, rename, remove, preallocate, a header write, a
//!   directory fsync) are synchronous calls: they happen at open, segment roll-over, truncation
//!   and compaction, never per entry.
//! - The data path is queued: [`Disk::submit`] hands over a [`WriteOp`] (one buffer, one write,
//!   and, when `sync` is set, one fdatasync after it) and returns at once; its [`Completion`]
//!   comes back later from [`Disk::reap`].
//! - Background work (preparing the next segment: zero-filling it, syncing it) is queued the
//!   same way, marked `background`: it is always asynchronous (on io_uring, the kernel's
//!   workers run it), whatever the disk does with data ops, so it never holds the writer's
//!   thread.
//! - Multi-raft: one disk serves several log stores on one thread. Each store registers as an
//!   owner ([`Disk::register`]); completions are routed to their owner's queue, so a store only
//!   ever sees its own.
//!
//! Invariants every implementation keeps:
//! 1. A completion with `Ok(())` for a `sync` op means the whole buffer is written and an
//!    fdatasync that started after the write finished has completed: the bytes are durable.
//! 2. Ops may complete in any order. The log store never has two ops in flight that write the
//!    same bytes, and it submits a batch's separate fdatasync only after all the batch's writes
//!    completed. A sync op with an empty buffer is an fdatasync alone.
//! 3. A failed fdatasync is reported, never retried by the disk (a retry could report success for
//!    pages the kernel already dropped).
//! 4. Every submitted op yields exactly one completion, carrying its buffer back.

mod buf;
mod sim;
mod uring;
mod uring_options;

pub use buf::IoBuf;
pub use sim::{SimDisk, SimFaults, SimStats, Tear};
pub use uring::{UringDisk, RING_ENTRIES_MIN};
pub use uring_options::{FsyncMode, UringOptions, UringStats};

use bytes::Bytes;
use std::io;
use std::path::Path;
use std::time::SystemTime;

/// An open file of one disk. Only meaningful to the disk that returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

/// A client of a disk (one log store) whose completions are routed to its own queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerId(pub u32);

/// How to open a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// Create the file; fail if it exists.
    pub create_new: bool,
    /// Write with O_DIRECT: every write's buffer, offset and length must be multiples of
    /// [`crate::storage::format::BLOCK_SIZE_BYTES`]. Reads and maps are not affected.
    pub direct: bool,
}

/// One queued write: `buf` at `offset` of `file`, then an fdatasync of the file if `sync`.
#[derive(Debug)]
pub struct WriteOp {
    /// The file to write.
    pub file: FileId,
    /// Where the buffer's first byte goes.
    pub offset: u64,
    /// The bytes; handed back in the completion so the caller can reuse the allocation.
    pub buf: IoBuf,
    /// Follow the write with an fdatasync, and complete only after it.
    pub sync: bool,
    /// The caller's label for this op, returned in the completion.
    pub tag: u64,
    /// Background work, off the data path: never run on the caller's thread (not even in the
    /// modes that run a data op's fdatasync or write there), and counted apart.
    pub background: bool,
}

/// The outcome of one [`WriteOp`].
#[derive(Debug)]
pub struct Completion {
    /// The op's tag.
    pub tag: u64,
    /// The op's buffer, given back.
    pub buf: IoBuf,
    /// `Ok` when the whole buffer was written (and synced, for a sync op).
    pub result: io::Result<()>,
    /// True when the error came from the fdatasync rather than from the write.
    pub sync_failed: bool,
}

/// A [`WriteOp`] the disk could not queue, with the op handed back.
#[derive(Debug)]
pub struct SubmitRejected {
    /// The op, unchanged.
    pub op: WriteOp,
    /// Why it was refused.
    pub error: io::Error,
}

/// The disk seam. See the module documentation for its shape and invariants.
///
/// Methods take `&self`: a disk is shared (through `Rc`) by every log store of one shard thread,
/// and implementations keep their mutable state in a `RefCell`. No method may be called from
/// inside another (none calls back into the caller), so the borrows never overlap.
pub trait Disk {
    /// Registers a new owner with its own completion queue.
    fn register(&self) -> OwnerId;
    /// Forgets an owner; completions of its ops still in flight are dropped when they arrive.
    fn unregister(&self, owner: OwnerId);

    /// Creates a directory and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries of a directory (files only matter to the log store).
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens (or creates) a file.
    fn open(&self, path: &Path, options: OpenOptions) -> io::Result<FileId>;
    /// Closes a file. Ops still in flight on it complete first (the caller waits for them).
    fn close(&self, file: FileId);
    /// The file's size in bytes.
    fn size(&self, file: FileId) -> io::Result<u64>;
    /// Makes the file at least `len` bytes long, allocating the space now (fallocate), so later
    /// writes inside it cannot fail for lack of space. Reports ENOSPC as an error of kind
    /// `StorageFull`.
    fn allocate(&self, file: FileId, len: u64) -> io::Result<()>;
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at end of file).
    fn read_at(&self, file: FileId, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `data` at `offset`, synchronously (no fdatasync).
    fn write_at(&self, file: FileId, offset: u64, data: &[u8]) -> io::Result<()>;
    /// fdatasync, synchronously.
    fn sync(&self, file: FileId) -> io::Result<()>;
    /// fsync of a directory, making creations, renames and removals in it durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Drops the file's clean cached pages, so that the next reads come from the device
    /// (`posix_fadvise(POSIX_FADV_DONTNEED)`). After a failed fdatasync Linux marks the pages it
    /// could not write clean and keeps serving them: without this, a process restarted in the
    /// same boot reads them as if they were on disk. Dirty pages stay (they are written back
    /// later); pages of direct I/O never enter the cache.
    fn drop_clean_cache(&self, file: FileId) -> io::Result<()>;
    /// Advice that `len` bytes of the file from `offset` will be read soon: the device may
    /// start reading them into the cache now, alongside other such reads
    /// (`posix_fadvise(POSIX_FADV_WILLNEED)`), so a cold start does not wait for one random
    /// read after another. Advice only: nothing depends on it, and failures are ignored. The
    /// default does nothing.
    fn prefetch(&self, file: FileId, offset: u64, len: u64) {
        let _ = (file, offset, len);
    }
    /// Renames a file (atomically replacing `to` if it exists).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// When the file was last written (its mtime), for time-based retention. A disk that keeps
    /// no times answers an error of kind `Unsupported`.
    fn modified(&self, path: &Path) -> io::Result<SystemTime>;
    /// A read-only view of the first `len` bytes of a file whose first `len` bytes will not
    /// change again (a sealed segment; a later truncation may still clear bytes after them):
    /// an mmap on a real disk.
    fn map(&self, file: FileId, len: u64) -> io::Result<Bytes>;

    /// Whether two fdatasyncs of one buffered file may run at once and a writeback error then
    /// reach only one of them (Linux reports such an error once per open file: to whichever
    /// sync checks first). With two batches in flight the earlier one's sync could succeed
    /// while the later one's consumed the error of the earlier one's pages, so the log refuses
    /// pipelined batches with buffered I/O on such a disk.
    fn concurrent_syncs_share_errors(&self) -> bool {
        false
    }

    /// Queues a write (and fdatasync); returns at once.
    fn submit(&self, owner: OwnerId, op: WriteOp) -> Result<(), SubmitRejected>;
    /// Moves `owner`'s finished ops into `out` without blocking.
    fn reap(&self, owner: OwnerId, out: &mut Vec<Completion>);
    /// Blocks until `owner` has a completion to reap, or has nothing in flight.
    fn wait(&self, owner: OwnerId) -> io::Result<()>;
}
