//! Background preparation of segments: the next segment is made ahead of time, and blocks are
//! written with zeros ahead of the writer, so that neither costs the data path.
//!
//! Owns: the spare segment file (created under a temporary name and preallocated as soon as the
//! active segment starts, then zero-filled and synced in the background), the zero-fill of the
//! active segment's blocks ahead of the writer, the zero-fill policy, and the one background op
//! in flight.
//!
//! Why zeros: an O_DIRECT write into preallocated but never-written blocks (unwritten extents)
//! needs an extent conversion. io_uring cannot issue it without blocking, so it hands the write
//! to a kernel worker on another CPU, and the batch's fdatasync must also commit the
//! conversion. Writing into blocks that were written before avoids both (docs/benchmarks.md has
//! the figures). Zeros cost device bandwidth, so [`ZeroFill`] decides when they are worth it.
//!
//! Must not: write any byte that holds or may come to hold a record while a batch could write
//! it; block the writer's thread on the device (background ops go through the disk's queue,
//! marked `background`); issue anything once the log is poisoned.
//!
//! Invariants:
//! 1. At most one background op is in flight, and the store knows which (`Background::in_flight`).
//! 2. A zero-fill write of the active segment covers only blocks at or after the block-aligned
//!    end of every record written or in flight, and no batch write overlaps a zero-fill write in
//!    flight (`submit` stops a batch before it).
//! 3. The spare is a `.tmp` file (removed by `open`) until roll-over or truncation writes its
//!    header, syncs it and renames it into place: recovery never reads it before. One made from
//!    a new file never holds a record, so a torn or partial zero-fill is zeros either way; one
//!    made from a recycled file holds its earlier use's (invariant 6).
//! 4. A failed background op never poisons the log: it concerns bytes that hold no record. The
//!    spare is discarded (roll-over falls back to creating a segment), or zero-filling of the
//!    active segment stops.
//! 5. Under [`ZeroFill::BatchBytesBelow`], a zero-fill write of the spare starts below 4/3 of the
//!    active segment's fill plus one chunk (`spare_zero_pace`): the zeros follow the writer.
//! 6. A recycled file (a compacted segment kept under a `.tmp` name, `Recycled`) becomes the
//!    spare only for a segment whose first index is at or above its `held_below`: every record
//!    it holds from earlier uses then has an index below the new segment's first, which is how
//!    recovery tells them from the new use's records. It needs no zeros and no sync: its
//!    blocks were written and synced in its earlier use.

use super::write::Prepared;
use super::LogStore;
use crate::storage::disk::{Completion, Disk, FileId, IoBuf, OpenOptions, WriteOp};
use crate::storage::format::SEGMENT_HEADER_BYTES;
use crate::storage::format::{align_up, SegmentId, BLOCK_SIZE_BYTES};
use raftwal_wire::types::{LogIndex, Term};
use std::io;
use std::path::PathBuf;

/// When the log writes zeros over preallocated blocks ahead of the writer. docs/benchmarks.md
/// has the measurements behind the default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroFill {
    /// Never: segments are only preallocated (`fallocate`), except for the header block of a
    /// prepared segment.
    Never,
    /// Always, as fast as the device completes one zero-fill write after another.
    Always,
    /// Only while the recent mean batch is smaller than this many bytes: small batches pay the
    /// unwritten-extent cost per batch, large ones amortize it and need the device's bandwidth
    /// for themselves. The next segment's zeros follow the writer's pace (see
    /// `spare_zero_pace`).
    BatchBytesBelow(usize),
}

/// Tags of background ops carry this bit; batch tags never do.
pub(super) const BACKGROUND_TAG: u64 = 1 << 63;

/// The file a zero-fill write goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Active,
    Spare,
}

/// The background op in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// Zeros over `[from, to)` of the target.
    Zero { target: Target, from: u64, to: u64 },
    /// An fdatasync of the spare, covering its zero-fill up to `zeroed_to`.
    SyncSpare { zeroed_to: u64 },
}

/// The next segment's file, made ahead under a temporary name.
#[derive(Debug)]
struct Spare {
    file: FileId,
    tmp: PathBuf,
    /// Bytes from the start known written (zeros; for a recycled file, the whole file, written
    /// in its earlier use).
    zeroed_to: u64,
    /// `zeroed_to` as of the last completed fdatasync, if any.
    synced_to: Option<u64>,
    /// For a recycled file: every record it holds has an index below this.
    held_below: Option<LogIndex>,
}

/// A compacted segment's file kept for reuse, under a temporary name (`open` removes it).
#[derive(Debug)]
pub(super) struct Recycled {
    path: PathBuf,
    /// Every record the file holds (from this and earlier uses) has an index below this.
    held_below: LogIndex,
}

/// The background state of a [`LogStore`].
#[derive(Debug)]
pub(super) struct Background {
    spare: Option<Spare>,
    /// Files of compacted segments kept for reuse, at most `recycled_segments_max`.
    recycled: Vec<Recycled>,
    /// Zero-fill ahead of the writer in the active segment may write from here on (the
    /// segment size when it must not: the segment was prepared, or zero-filling it failed).
    active_zero_from: u64,
    in_flight: Option<(u64, Op)>,
    /// The zero buffer, reused; `None` while a zero-fill write has it.
    zeros: Option<IoBuf>,
    /// Mean bytes of recent batches (an exponential moving average).
    batch_bytes_mean: Option<u64>,
    /// Creating the spare failed (no space, say): try again after the next roll-over only.
    spare_failed: bool,
    /// Set when the store closes: start nothing new.
    closing: bool,
    next_tag: u64,
    /// The active segment's end when the spare's zero-fill write in flight was started (the
    /// pace it was started under: a withdrawal may shrink the active segment meanwhile).
    spare_paced_at: u64,
}

impl Background {
    pub(super) fn new() -> Background {
        Background {
            spare: None,
            recycled: Vec::new(),
            active_zero_from: 0,
            in_flight: None,
            zeros: None,
            batch_bytes_mean: None,
            spare_failed: false,
            closing: false,
            next_tag: 0,
            spare_paced_at: 0,
        }
    }

    /// True while a background op is with the disk.
    pub(super) fn has_in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Where a zero-fill write of the active segment in flight starts: a batch must end before.
    pub(super) fn active_write_limit(&self) -> Option<u64> {
        match self.in_flight {
            Some((_, Op::Zero { target: Target::Active, from, .. })) => Some(from),
            _ => None,
        }
    }

    /// Records the size of a batch just started, for the zero-fill policy.
    pub(super) fn note_batch(&mut self, bytes: usize) {
        let bytes = bytes as u64;
        self.batch_bytes_mean = Some(match self.batch_bytes_mean {
            None => bytes,
            Some(mean) => (mean * 7 + bytes) / 8,
        });
    }

    pub(super) fn close(&mut self) {
        self.closing = true;
    }
}

impl<D: Disk> LogStore<D> {
    fn zero_fill_allowed(&self) -> bool {
        match self.options.zero_fill {
            ZeroFill::Never => false,
            ZeroFill::Always => true,
            // Before the first batch nothing is known of the load: wait for it.
            ZeroFill::BatchBytesBelow(limit) => {
                self.bg.batch_bytes_mean.is_some_and(|mean| mean < limit as u64)
            }
        }
    }

    fn zero_chunk_bytes(&self) -> u64 {
        (self.options.zero_chunk_bytes as u64).min(self.options.segment_size_bytes)
    }

    /// Starts the next background op if none is in flight: zeros ahead of the writer in the
    /// active segment, then the spare's creation, zero-fill and fdatasync. Called after every
    /// submit and completion, so the work advances as the ring turns, with no timer.
    pub(super) fn advance_background(&mut self) {
        if self.poison.is_some() || self.bg.closing || self.bg.in_flight.is_some() {
            return;
        }
        let allowed = self.zero_fill_allowed();
        let size = self.options.segment_size_bytes;
        let chunk = self.zero_chunk_bytes();
        if allowed {
            let active = self.segments.back().expect("a log always has an active segment");
            // One chunk of slack between the writer and the zeros, so a batch rarely has to
            // stop before a zero-fill write in flight. Not paced: while zeros are written into
            // the active file, each batch's fdatasync commits their extent conversions, so
            // the sooner they are done the better (docs/benchmarks.md measured pacing).
            let frontier = align_up(active.end_offset as usize, BLOCK_SIZE_BYTES) as u64 + chunk;
            let from = self.bg.active_zero_from.max(frontier);
            if from < size {
                let to = (from + chunk).min(size);
                return self.submit_zero(Target::Active, from, to);
            }
        }
        if self.bg.spare.is_none() && !self.bg.spare_failed {
            self.create_spare();
        }
        let Some(spare) = &self.bg.spare else { return };
        let active_end = self.segments.back().map_or(0, |s| s.end_offset);
        if spare.zeroed_to < size {
            // The header block is always zeroed, so that writing the header at roll-over needs
            // no extent conversion; the rest only when the policy allows.
            if allowed && spare.zeroed_to < self.spare_zero_pace(active_end) {
                let (from, to) = (spare.zeroed_to, (spare.zeroed_to + chunk).min(size));
                self.bg.spare_paced_at = active_end;
                return self.submit_zero(Target::Spare, from, to);
            }
            if spare.zeroed_to == 0 {
                return self.submit_zero(Target::Spare, 0, SEGMENT_HEADER_BYTES as u64);
            }
        }
        // A pause of the pace (below) is neither: the last fdatasync waits for the end.
        let done_or_paused = spare.zeroed_to == size || !allowed;
        // The first sync commits the allocation early (its header block is zeroed by then).
        let first = spare.synced_to.is_none() && spare.zeroed_to > 0;
        if first || (done_or_paused && spare.synced_to != Some(spare.zeroed_to)) {
            // Commits the allocation and the extent conversions now, so the roll-over's own
            // fdatasync has nothing left to commit.
            let (file, zeroed_to) = (spare.file, spare.zeroed_to);
            let op = WriteOp {
                file,
                offset: 0,
                buf: IoBuf::default(),
                sync: true,
                tag: 0,
                background: true,
            };
            self.submit_background(op, Op::SyncSpare { zeroed_to });
        }
    }

    /// How far the spare may be zero-filled while the active segment holds `active_end` bytes.
    ///
    /// Under [`ZeroFill::BatchBytesBelow`] the spare's zeros follow the writer: up to 4/3 of the
    /// active segment's fill plus one chunk, so the spare is complete (and synced) when the
    /// active segment is three-quarters full, and the zeros take about as much of the device's
    /// bandwidth as the records do, spread over the segment's life instead of in one burst
    /// right after each roll-over. The burst mattered where several logs share a device: in a
    /// 3-node cluster on one disk, every roll-over (all replicas roll over at the same index)
    /// queued 3 x 64 MiB of zeros ahead of the batches' writes and fdatasyncs, and the commit
    /// rate fell to a third for a few hundred milliseconds (docs/benchmarks.md). Under
    /// [`ZeroFill::Always`] the spare is zero-filled as fast as the device goes.
    fn spare_zero_pace(&self, active_end: u64) -> u64 {
        let size = self.options.segment_size_bytes;
        match self.options.zero_fill {
            ZeroFill::BatchBytesBelow(_) => {
                (active_end.saturating_mul(4) / 3).saturating_add(self.zero_chunk_bytes()).min(size)
            }
            ZeroFill::Always | ZeroFill::Never => size,
        }
    }

    fn submit_zero(&mut self, target: Target, from: u64, to: u64) {
        let file = match target {
            Target::Active => self.segments.back().and_then(|s| s.file),
            Target::Spare => self.bg.spare.as_ref().map(|s| s.file),
        }
        .expect("the target of a zero-fill has an open file");
        let len = (to - from) as usize;
        let mut buf = self.bg.zeros.take().unwrap_or_default();
        if buf.capacity() < len {
            buf = IoBuf::with_capacity(self.zero_chunk_bytes() as usize);
        }
        // The buffer only ever holds zeros: it is zeroed once when made and never written.
        buf.resize_zeroed(len);
        let op = WriteOp { file, offset: from, buf, sync: false, tag: 0, background: true };
        self.submit_background(op, Op::Zero { target, from, to });
    }

    fn submit_background(&mut self, mut op: WriteOp, what: Op) {
        let tag = BACKGROUND_TAG | self.bg.next_tag;
        self.bg.next_tag = (self.bg.next_tag + 1) & !BACKGROUND_TAG;
        op.tag = tag;
        match self.disk.submit(self.owner, op) {
            Ok(()) => {
                self.bg.in_flight = Some((tag, what));
                match what {
                    Op::Zero { from, to, .. } => {
                        self.stats.background_writes += 1;
                        self.stats.background_bytes += to - from;
                    }
                    Op::SyncSpare { .. } => self.stats.background_syncs += 1,
                }
            }
            Err(rejected) => {
                if rejected.op.buf.capacity() > 0 {
                    self.bg.zeros = Some(rejected.op.buf);
                }
                self.background_failed(what, &rejected.error);
            }
        }
    }

    /// Takes the completion of the background op in flight.
    pub(super) fn complete_background(&mut self, c: Completion) {
        let (tag, what) = self
            .bg
            .in_flight
            .take()
            .expect("a background completion arrives only for the background op in flight");
        assert_eq!(tag, c.tag, "one background op in flight at a time");
        if c.buf.capacity() > 0 {
            self.bg.zeros = Some(c.buf);
        }
        if let Err(e) = c.result {
            return self.background_failed(what, &e);
        }
        match what {
            Op::Zero { target: Target::Active, to, .. } => {
                self.bg.active_zero_from = self.bg.active_zero_from.max(to);
            }
            Op::Zero { target: Target::Spare, to, .. } => {
                if let Some(spare) = &mut self.bg.spare {
                    spare.zeroed_to = to;
                }
            }
            Op::SyncSpare { zeroed_to } => {
                if let Some(spare) = &mut self.bg.spare {
                    spare.synced_to = Some(zeroed_to);
                }
            }
        }
    }

    fn background_failed(&mut self, what: Op, e: &io::Error) {
        match what {
            Op::Zero { target: Target::Active, .. } => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "zero-filling ahead of the writer failed; stopped for this segment");
                self.bg.active_zero_from = u64::MAX;
            }
            Op::Zero { target: Target::Spare, .. } | Op::SyncSpare { .. } => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "preparing the next segment failed; it will be created at roll-over");
                self.discard_spare();
                self.bg.spare_failed = true;
            }
        }
    }

    /// Whether `compact_before` should keep a compacted segment's file for reuse.
    pub(super) fn wants_recycled(&self) -> bool {
        self.bg.recycled.len() < self.options.recycled_segments_max
    }

    /// Keeps a compacted segment's file, already renamed to `path`, for reuse.
    pub(super) fn keep_recycled(&mut self, path: PathBuf, held_below: LogIndex) {
        self.bg.recycled.push(Recycled { path, held_below });
        self.stats.segments_recycled += 1;
    }

    /// Removes the kept files of compacted segments (best effort, no directory fsync: `open`
    /// removes leftover `.tmp` files).
    pub(super) fn discard_recycled(&mut self) {
        for r in self.bg.recycled.drain(..) {
            let _ = self.disk.remove(&r.path);
        }
    }

    /// Makes a kept file of a compacted segment the spare, if there is one that fits: opened
    /// as it is, nothing written (its blocks were written and synced in its earlier use).
    fn recycle_spare(&mut self) -> bool {
        let size = self.options.segment_size_bytes;
        while let Some(r) = self.bg.recycled.pop() {
            let options = OpenOptions { create_new: false, direct: self.options.direct_io };
            let opened = self.disk.open(&r.path, options).and_then(|file| {
                match self.disk.size(file) {
                    Ok(len) if len >= size => Ok(file),
                    // Made under a smaller segment size: its tail was never written.
                    Ok(_) => {
                        self.disk.close(file);
                        Err(io::Error::other("smaller than a segment"))
                    }
                    Err(e) => {
                        self.disk.close(file);
                        Err(e)
                    }
                }
            });
            match opened {
                Ok(file) => {
                    self.bg.spare = Some(Spare {
                        file,
                        tmp: r.path,
                        zeroed_to: size,
                        synced_to: Some(size),
                        held_below: Some(r.held_below),
                    });
                    return true;
                }
                Err(e) => {
                    tracing::debug!(file = %r.path.display(), error = %e, "not reusing a compacted segment's file");
                    let _ = self.disk.remove(&r.path);
                }
            }
        }
        false
    }

    /// Creates the spare: a kept file of a compacted segment if there is one, else a temporary
    /// file, preallocated. Two system calls on the writer's thread, once per segment (about
    /// 0.25 ms for 64 MiB on ext4 here); the expensive part, committing the allocation, is a
    /// background fdatasync.
    fn create_spare(&mut self) {
        if self.recycle_spare() {
            return;
        }
        let tmp = self.dir.join(SPARE_FILE);
        let opened =
            self.disk.open(&tmp, OpenOptions { create_new: true, direct: self.options.direct_io });
        let file = match opened {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot create the next segment ahead; it will be created at roll-over");
                self.bg.spare_failed = true;
                return;
            }
        };
        if let Err(e) = self.disk.allocate(file, self.options.segment_size_bytes) {
            if e.kind() != io::ErrorKind::StorageFull {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot preallocate the next segment ahead");
            }
            self.disk.close(file);
            let _ = self.disk.remove(&tmp);
            self.bg.spare_failed = true;
            return;
        }
        self.bg.spare = Some(Spare { file, tmp, zeroed_to: 0, synced_to: None, held_below: None });
    }

    /// Closes and removes the spare (best effort: `open` removes a leftover `.tmp` file). No
    /// background op may be in flight on it: its file must stay open until the op completes.
    pub(super) fn discard_spare(&mut self) {
        assert!(
            !matches!(self.bg.in_flight, Some((_, Op::Zero { target: Target::Spare, .. })))
                && !matches!(self.bg.in_flight, Some((_, Op::SyncSpare { .. }))),
            "discarding the spare with an op in flight on it"
        );
        if let Some(spare) = self.bg.spare.take() {
            self.disk.close(spare.file);
            let _ = self.disk.remove(&spare.tmp);
        }
    }

    /// Blocks until no background op is in flight (there is at most one: a zero-fill write or
    /// an fdatasync of the spare). No batch may be in flight.
    pub(super) fn wait_background(&mut self) -> io::Result<()> {
        assert!(self.in_flight.is_empty(), "wait for the batches first");
        let mut completions = std::mem::take(&mut self.completions);
        let mut result = Ok(());
        while self.bg.in_flight.is_some() {
            if let Err(e) = self.disk.wait(self.owner) {
                result = Err(e);
                break;
            }
            self.disk.reap(self.owner, &mut completions);
            if completions.is_empty() {
                // The disk has nothing of ours left (it crashed and forgot its queue).
                self.bg.in_flight = None;
            }
            for c in completions.drain(..) {
                self.complete_background(c);
            }
        }
        self.completions = completions;
        result
    }

    /// Turns the spare, if there is one (else a kept file of a compacted segment, if one fits),
    /// into segment `id` (a base segment if `base`: a reset's): writes its header, syncs it. The
    /// caller renames it into place. `None` when there is neither (or it just failed: the
    /// caller creates a segment the slow way).
    pub(super) fn take_spare(
        &mut self,
        id: SegmentId,
        prev_term: Term,
        base: bool,
    ) -> Option<Prepared> {
        assert!(self.bg.in_flight.is_none(), "wait for the background op first");
        let spare = loop {
            // No spare (making one failed, for lack of space say, and is not tried again before
            // the next roll-over): a kept file of a compacted segment serves, which needs no
            // space. Compaction is how space is freed, and it keeps these files.
            if self.bg.spare.is_none() && !self.recycle_spare() {
                return None;
            }
            let spare = self.bg.spare.take()?;
            if spare.held_below.is_some_and(|below| id.0 < below) {
                // Records of its earlier use could read as this segment's (invariant 6): it
                // held records a truncation cut (or a withdrawn batch wrote) past its live
                // ones, and the log, cut back since, now starts a segment at or below them.
                self.disk.close(spare.file);
                let _ = self.disk.remove(&spare.tmp);
                continue;
            }
            break spare;
        };
        let recycled = spare.held_below.is_some();
        let (block, seed) = self.header_block(id, prev_term, recycled, base);
        let written = self
            .disk
            .write_at(spare.file, 0, block.as_slice())
            .and_then(|()| self.disk.sync(spare.file));
        if let Err(e) = written {
            tracing::warn!(dir = %self.dir.display(), error = %e, "writing the header of the prepared segment failed; creating one instead");
            self.disk.close(spare.file);
            let _ = self.disk.remove(&spare.tmp);
            return None;
        }
        let path = self.dir.join(id.file_name());
        self.stats.roll_overs_prepared += 1;
        self.stats.roll_overs_recycled += u64::from(recycled);
        self.stats.prepared_unzeroed_bytes += self.options.segment_size_bytes - spare.zeroed_to;
        Some(Prepared::new(id, spare.file, spare.tmp, path, true, &block, seed))
    }

    /// Asserts invariants 1, 2 and 5 of the module documentation.
    pub(super) fn check_background_invariants(&self) {
        let active = self.segments.back().expect("a log always has an active segment");
        let written_end = align_up(active.end_offset as usize, BLOCK_SIZE_BYTES) as u64;
        match self.bg.in_flight {
            Some((tag, Op::Zero { target, from, to })) => {
                assert!(tag & BACKGROUND_TAG != 0, "background tags carry the background bit");
                assert!(from < to && to <= self.options.segment_size_bytes, "zero-fill in bounds");
                if target == Target::Active {
                    assert!(from >= written_end, "zero-fill ahead of every record");
                } else {
                    assert!(self.bg.spare.is_some(), "zero-fill of a spare that exists");
                    // Roll-over and truncation wait for the op, and only a withdrawal (ENOSPC)
                    // shrinks the active segment meanwhile: the pace that let it start, or the
                    // active segment's growth since, covers it.
                    let paced_at = self.bg.spare_paced_at.max(active.end_offset);
                    assert!(
                        from < self.spare_zero_pace(paced_at),
                        "the spare's zero-fill keeps the writer's pace"
                    );
                }
            }
            Some((_, Op::SyncSpare { .. })) => {
                assert!(self.bg.spare.is_some(), "sync of a spare that exists");
            }
            None => {}
        }
    }

    /// After a new segment became active: where zero-fill ahead of the writer may start in
    /// it, and a new spare may be made.
    ///
    /// A segment that was prepared ahead gets no zero-fill ahead of the writer, even if its
    /// own zero-fill was not finished: zeros written into the active file convert its extents
    /// while batches are being synced, so each batch's fdatasync would have to commit those
    /// conversions, which costs more than it saves. The background moves on to the next spare.
    pub(super) fn activated(&mut self, prepared_ahead: bool) {
        self.bg.active_zero_from = if prepared_ahead {
            self.options.segment_size_bytes
        } else {
            SEGMENT_HEADER_BYTES as u64
        };
        self.bg.spare_failed = false;
    }
}

/// The temporary name of the spare segment (a `.tmp` file: `open` removes it).
pub(super) const SPARE_FILE: &str = "next-segment.tmp";
