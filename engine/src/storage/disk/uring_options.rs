//! The settings and counters of [`super::UringDisk`]: which thread issues a batch's fdatasync,
//! what the disk did.
//!
//! Plain values; they own no resource and have no invariants beyond their field docs.

/// Who issues the fdatasync that ends a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncMode {
    /// The write and an fdatasync linked after it go through the ring (the kernel runs the
    /// fdatasync on one of its workers); the thread stays free meanwhile.
    Ring,
    /// The write goes through the ring; when its completion is reaped, the reaping thread (the
    /// writer's own shard thread) issues the fdatasync system call itself, then queues the
    /// completion. This avoids waking a kernel worker on another CPU for the fdatasync.
    Thread,
    /// As `Ring`, except that a batch written in one write makes that write itself durable: it
    /// goes through the ring with `RWF_DSYNC`, so the kernel makes its data (and any metadata
    /// needed to read it back) durable before completing it, as the write and its fdatasync
    /// would, in one op instead of two linked ones. A batch written in several chunks still
    /// ends with one fdatasync on the ring: one chunk's durable write would not cover chunks
    /// still in flight.
    Dsync,
    /// For comparison only: `pwrite` and `fdatasync` system calls, both on the writer's thread
    /// inside [`super::Disk::submit`], bypassing the ring (the completion is queued at once and the
    /// eventfd signalled).
    Blocking,
}

/// Counters of what a [`super::UringDisk`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UringStats {
    /// Queued writes (batches) accepted by [`super::Disk::submit`].
    pub ops: u64,
    /// fdatasyncs issued for queued ops (one per sync op, plus one per retry after a short
    /// write).
    pub op_syncs: u64,
    /// Writes made durable by themselves (`RWF_DSYNC`, [`FsyncMode::Dsync`]); counted in
    /// `op_syncs` too.
    pub dsync_writes: u64,
    /// Synchronous fdatasyncs and directory fsyncs (segment creation and roll-over, hard state,
    /// truncation).
    pub other_syncs: u64,
    /// Queued background writes (zero-filling a segment ahead of the writer).
    pub background_ops: u64,
    /// fdatasyncs of background ops (making a prepared segment's allocation durable), issued on
    /// the ring.
    pub background_syncs: u64,
}

impl UringStats {
    /// What was counted since `earlier` (a reading of the same disk's counters).
    pub fn since(&self, earlier: &UringStats) -> UringStats {
        self.zip(earlier, u64::saturating_sub)
    }

    /// The counters of two disks (or two stretches of one) together.
    pub fn plus(&self, other: &UringStats) -> UringStats {
        self.zip(other, u64::saturating_add)
    }

    fn zip(&self, other: &UringStats, f: fn(u64, u64) -> u64) -> UringStats {
        UringStats {
            ops: f(self.ops, other.ops),
            op_syncs: f(self.op_syncs, other.op_syncs),
            dsync_writes: f(self.dsync_writes, other.dsync_writes),
            other_syncs: f(self.other_syncs, other.other_syncs),
            background_ops: f(self.background_ops, other.background_ops),
            background_syncs: f(self.background_syncs, other.background_syncs),
        }
    }
}

/// Settings of a [`super::UringDisk`].
#[derive(Clone, Copy, Debug)]
pub struct UringOptions {
    /// Submission queue entries of the ring: at least [`super::RING_ENTRIES_MIN`] (a write and
    /// its linked fdatasync are queued together); [`super::UringDisk::new`] refuses fewer.
    pub ring_entries: u32,
    /// Who issues a batch's fdatasync.
    pub fsync_mode: FsyncMode,
}

impl Default for UringOptions {
    fn default() -> UringOptions {
        UringOptions { ring_entries: 256, fsync_mode: FsyncMode::Thread }
    }
}
