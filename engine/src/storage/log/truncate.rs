//! Suffix truncation and prefix compaction of [`LogStore`].
//!
//! Owns: the order of file operations that keeps every crash point a valid log (docs/format.md,
//! "Truncation" and "Compaction"):
//! - `truncate_after(i)`: if segments start after `i + 1`, the segment before them (the one
//!   holding `i`, or the one starting at `i + 1` that the new segment replaces) will be the
//!   last one for a moment, and recovery reads a last segment to its end: so first, while the
//!   segments after it still limit what recovery reads of it, the bytes after its last record
//!   (the records an earlier truncation cut, which must never come back) are overwritten with
//!   zeros and synced, and so are those of every segment between it and the last one that
//!   holds such records (each is the last one for a moment while the ones after it go).
//!   Then a new segment starting at `i + 1` is prepared under a temporary name (the segment
//!   prepared ahead, if there is one; so running out of space changes nothing). Then the
//!   segments after `i + 1` are removed from the last one backwards with a directory fsync
//!   after each, and the new segment is renamed into place and the directory synced. A crash
//!   at any point leaves the old log or a prefix of it that still holds `[first, i]`; the
//!   segment holding `i` keeps its records after `i` on disk (they are the old log's), and
//!   recovery ignores them because the next segment starts at `i + 1`.
//! - `compact_before(i)` removes whole sealed segments from the front, with a directory fsync
//!   after each, so a crash leaves a suffix of the log, never a gap. A removal may instead be a
//!   rename to a `.tmp` name (the file is kept for reuse, `recycled_segments_max`): for the
//!   log the same, since `open` removes `.tmp` files.

use super::LogStore;
use crate::storage::disk::{Disk, FileId, IoBuf, OpenOptions};
use crate::storage::error::{CompactError, CompletionError, TruncateError};
use crate::storage::format::{align_down, align_up, SegmentId, BLOCK_SIZE_BYTES};
use crate::storage::segment::SharedMap;
use raftwal_wire::types::LogIndex;
use std::io;

/// Why [`LogStore::wait_in_flight`] failed: waiting for the disk (which poisons the log), or
/// completing a batch (which poisoned it already).
pub(super) enum InFlightWaitError {
    Wait(io::Error),
    Completion(io::Error),
}

/// The largest write of zeros [`LogStore::zero_after_records`] issues at once.
const ZERO_WRITE_BYTES_MAX: usize = 1 << 20;

impl<D: Disk> LogStore<D> {
    /// Removes every entry after `index`, durably before returning (the batches in flight are
    /// waited for first). A no-op when `index >= last_index`.
    pub fn truncate_after(&mut self, index: LogIndex) -> Result<(), TruncateError> {
        self.check_poison()?;
        if index >= self.last_index {
            return Ok(());
        }
        if index < self.terms.prev_index() {
            return Err(TruncateError::Compacted { index, first_index: self.first_index() });
        }
        if index >= self.written_index {
            // Only queued entries go: they never reached the disk, but for the records of
            // withdrawn batches, which go first.
            self.clear_withdrawn_for_truncation()?;
            self.drop_tail_after(index);
            return Ok(());
        }
        self.wait_idle()?;
        if index >= self.written_index {
            // The batch in flight was withdrawn (no space): the cut entries are all queued, and
            // what its writes left on the disk goes first.
            self.clear_withdrawn_for_truncation()?;
            self.drop_tail_after(index);
            return Ok(());
        }
        let prev_term = self.terms.term(index).expect("index is inside the log");
        let id = SegmentId(index.next());
        // A zero-fill write ahead of the writer must not land after the cut (nor in a segment
        // about to be removed); the segment prepared ahead, if any, becomes the new last one.
        if let Err(e) = self.wait_background() {
            return Err(self.truncate_failed("waiting for background work", e));
        }
        // The segments after the new end are removed before the new segment is renamed into
        // place, last first: for a moment the segment before them is the last one. That is the
        // segment holding `index`, or, when the new segment replaces one that starts at
        // `index + 1`, that one. Recovery reads a last segment to its end, so clear what an
        // earlier truncation left after its records first, while the segments after it still
        // bound what recovery reads of it (and before anything is prepared, so running out of
        // space here leaves nothing behind). (None when no segment starts at or before
        // `index + 1`: the new one replaces them all.)
        let exposed =
            self.segments.partition_point(|s| s.first_index() <= index.next()).checked_sub(1);
        // The segments between it and the last one are each the last one for a moment too,
        // while the ones after them are removed: those that may hold records after their live
        // ones (an earlier truncation cut into them) are cleared as well.
        if let Some(k) = exposed.filter(|&k| k + 1 < self.segments.len()) {
            let from = self.segments[k].end_offset;
            if let Err(e) =
                self.zero_after_records(k, from, None).and_then(|()| self.clear_exposed(k + 1))
            {
                if e.kind() == io::ErrorKind::StorageFull {
                    return Err(TruncateError::NoSpace(e));
                }
                return Err(self.truncate_failed("clearing a segment's bytes after its records", e));
            }
        }
        let prepared = self.take_spare(id, prev_term, false);
        let prepared = match prepared.map_or_else(|| self.prepare_segment(id, prev_term, false), Ok)
        {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::StorageFull => {
                return Err(TruncateError::NoSpace(e))
            }
            Err(e) => return Err(self.truncate_failed("preparing the new last segment", e)),
        };
        // The active segment is about to be sealed or removed: the records of withdrawn
        // batches after its end need no clearing of their own any more (a later truncation
        // that makes it the last segment again clears them with the rest).
        self.scrub = None;
        // Remove whole segments after the new end, last first.
        while self.segments.len() > 1
            && self.segments.back().is_some_and(|s| s.first_index() > index.next())
        {
            let seg = self.segments.pop_back().expect("checked non-empty");
            if let Some(f) = seg.file {
                self.disk.close(f);
            }
            let path = seg.path(&self.dir);
            let removed = self
                .remove_index(seg.id)
                .and_then(|()| self.disk.remove(&path))
                .and_then(|()| self.disk.sync_dir(&self.dir));
            if let Err(e) = removed {
                self.disk.close(prepared.file);
                return Err(self.truncate_failed("removing a truncated segment", e));
            }
        }
        let k = self.segments.len() - 1;
        let keep = (index.get() + 1).saturating_sub(self.segments[k].first_index().get()) as usize;
        let cut_into = self.segments[k].first_index() <= index;
        if cut_into && self.segments[k].unloaded.is_some() && keep < self.segments[k].records() {
            // The cut needs the offset of its first cut record.
            if let Err(e) = self.reload_offsets(k) {
                self.disk.close(prepared.file);
                return Err(self.truncate_failed("reading the offsets of the segment cut into", e));
            }
        }
        let back = self.segments.back_mut().expect("a log always has a segment");
        if back.first_index() == index.next() {
            // The new segment replaces this one (the rename below is atomic); its index goes
            // first, or it would describe the new one.
            let seg = self.segments.pop_back().expect("checked non-empty");
            if let Some(f) = seg.file {
                self.disk.close(f);
            }
            if let Err(e) = self.remove_index(seg.id) {
                self.disk.close(prepared.file);
                return Err(self.truncate_failed("removing a replaced segment's index", e));
            }
        } else {
            if keep < back.offsets.len() {
                back.end_offset = u64::from(back.offsets[keep]);
                back.offsets.truncate(keep);
            }
            if back.file.is_some() {
                self.seal_active();
            }
        }
        if let Err(e) = self.install_segment(prepared) {
            return Err(self.truncate_failed("installing the new last segment", e));
        }
        self.unmap_old();
        self.drop_tail_after(index);
        self.written_index = index;
        self.durable_index = index;
        Ok(())
    }

    /// Removes whole sealed segments whose entries are all before `index`. Entries before
    /// `index` that share a segment with later ones stay readable; `first_index` says where the
    /// log now starts.
    pub fn compact_before(&mut self, index: LogIndex) -> Result<(), CompactError> {
        self.check_poison()?;
        while self.segments.len() > 1 && self.segments[1].first_index() <= index {
            let seg = self.segments.pop_front().expect("checked non-empty");
            let next_first = self.segments[0].first_index();
            self.terms.compact_before(next_first);
            while self.tail.front().is_some_and(|e| e.index < next_first) {
                let e = self.tail.pop_front().expect("checked non-empty");
                self.tail_payload_bytes -= e.data.len();
            }
            let (id, path) = (seg.id, seg.path(&self.dir));
            let readers = seg.map.as_ref().is_some_and(|m| m.has_readers());
            let held_below = seg.written_max.next().max(next_first);
            drop(seg);
            // A recycled file is written again: only when no reader still holds a payload
            // mapped from it (an unlinked file's map stays valid; a rewritten one's would not).
            let recycle = self.wants_recycled() && !readers;
            let kept = recycle.then(|| self.dir.join(format!("recycled-{}.tmp", seg_stem(&path))));
            let gone = self.remove_index(id).and_then(|()| match &kept {
                Some(tmp) => self.disk.rename(&path, tmp),
                None => self.disk.remove(&path),
            });
            if let Err(e) = gone.and_then(|()| self.disk.sync_dir(&self.dir)) {
                self.set_poison(format!("removing compacted segment {}: {e}", path.display()));
                return Err(CompactError::Io {
                    context: format!("removing {}", path.display()),
                    source: e,
                });
            }
            if let Some(tmp) = kept {
                self.keep_recycled(tmp, held_below);
            }
        }
        Ok(())
    }

    fn drop_tail_after(&mut self, index: LogIndex) {
        while self.tail.back().is_some_and(|e| e.index > index) {
            let e = self.tail.pop_back().expect("checked non-empty");
            self.tail_payload_bytes -= e.data.len();
        }
        self.terms.truncate_after(index);
        self.last_index = index;
    }

    /// Waits for the batches in flight, if any, and takes their completions, before a
    /// truncation or a reset. Batches that ran out of space are withdrawn, which is no failure
    /// here (a truncation keeps their entries queued, a reset drops them).
    pub(super) fn wait_in_flight(&mut self) -> Result<(), InFlightWaitError> {
        while self.has_in_flight() {
            self.disk.wait(self.owner).map_err(InFlightWaitError::Wait)?;
            match self.process_completions() {
                Ok(_) | Err(CompletionError::NoSpace(_)) => {}
                Err(e) => {
                    return Err(InFlightWaitError::Completion(io::Error::other(e.to_string())))
                }
            }
        }
        Ok(())
    }

    /// [`LogStore::wait_in_flight`] for a truncation: a failed wait poisons the log.
    fn wait_idle(&mut self) -> Result<(), TruncateError> {
        self.wait_in_flight().map_err(|e| match e {
            InFlightWaitError::Wait(e) => {
                self.truncate_failed("waiting for the batch in flight", e)
            }
            InFlightWaitError::Completion(source) => {
                TruncateError::Io { context: "completing the batch in flight".into(), source }
            }
        })
    }

    /// Clears the records withdrawn batches left after the active segment's records (`scrub`),
    /// durably (zeros, then an fdatasync), if any: before the next batch writes after them,
    /// and before a truncation or a reset drops their entries without writing a batch (a crash
    /// would read them back as entries, some of them durable: a later batch's fdatasync covered
    /// them). Nothing is in flight while they are pending.
    pub(super) fn clear_withdrawn(&mut self) -> io::Result<()> {
        if let Some((from, to)) = self.scrub {
            let last = self.segments.len() - 1;
            self.zero_after_records(last, from, Some(to))?;
            self.scrub = None;
        }
        Ok(())
    }

    fn clear_withdrawn_for_truncation(&mut self) -> Result<(), TruncateError> {
        match self.clear_withdrawn() {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::StorageFull => Err(TruncateError::NoSpace(e)),
            Err(e) => Err(self.truncate_failed("clearing the records of withdrawn batches", e)),
        }
    }

    /// Clears the bytes after the live records of the segments from `from` up to the one before
    /// the last, where records may follow them (records an earlier truncation cut, or that
    /// withdrawn batches wrote: `written_max` is above the last live index). A truncation or a
    /// reset removes the segments after such a segment last first, which makes it the last
    /// segment for a moment, and recovery reads a last segment to its end: those records must
    /// be gone first, while the segments after it still bound what recovery reads of it.
    pub(super) fn clear_exposed(&mut self, from: usize) -> io::Result<()> {
        for k in from..self.segments.len().saturating_sub(1) {
            let seg = &self.segments[k];
            if seg.written_max <= seg.last_index() {
                // Zeros after its records (or an earlier use's records, of indexes below its
                // first one): nothing there reads as an entry.
                continue;
            }
            let end = seg.end_offset;
            self.zero_after_records(k, end, None)?;
        }
        Ok(())
    }

    /// Overwrites the bytes of segment `k` from `from` up to `to` (to the end of its file when
    /// `None`), rounded out to whole blocks, with zeros, keeping the bytes before `from` in its
    /// first block, and fdatasyncs the file. Records there can never be read again, after any
    /// crash. Blocks the thread: it runs only for a truncation that makes a sealed segment the
    /// last one and after a withdrawal, never per batch.
    ///
    /// A sealed segment whose map a reader still holds a payload of is not written in place
    /// (the payload is a view of the file's pages, and would change under the reader): its
    /// bytes up to `from` are copied to a new file, which is synced and renamed over it; the
    /// readers keep the old file's pages, and so does the store's map (its live records are
    /// the same) until it maps the new file.
    pub(super) fn zero_after_records(
        &mut self,
        k: usize,
        from: u64,
        to: Option<u64>,
    ) -> io::Result<()> {
        let seg = &self.segments[k];
        let path = seg.path(&self.dir);
        let (file, opened) = match seg.file {
            Some(file) => (file, false),
            None if seg.map.as_ref().is_some_and(|m| m.has_readers()) => {
                assert!(to.is_none(), "a sealed segment is cleared to its end");
                self.rewrite_sealed(&path, from)?;
                self.stats.segments_rewritten += 1;
                // Map the new file; if that fails, the old map still holds the same records.
                let options = OpenOptions { create_new: false, direct: false };
                let end = self.segments[k].end_offset;
                if let Ok(file) = self.disk.open(&path, options) {
                    if let Ok(bytes) = self.disk.map(file, end) {
                        self.segments[k].map = Some(SharedMap::new(bytes));
                    }
                    self.disk.close(file);
                }
                return Ok(());
            }
            None => {
                let options = OpenOptions { create_new: false, direct: self.options.direct_io };
                (self.disk.open(&path, options)?, true)
            }
        };
        let done = self.zero_file_range(file, from, to);
        if opened {
            self.disk.close(file);
        }
        done
    }

    /// Replaces the sealed segment file at `path` by a copy of its bytes up to `from` (zeros
    /// after, to the same length): made as `<name>.rewrite.tmp`, synced, renamed over it, and
    /// the directory synced. A crash before the rename leaves the old file (and a `.tmp` file
    /// that open removes); after it, the copy.
    fn rewrite_sealed(&mut self, path: &std::path::Path, from: u64) -> io::Result<()> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = self.dir.join(format!("{name}.rewrite.tmp"));
        let direct = self.options.direct_io;
        let old = self.disk.open(path, OpenOptions { create_new: false, direct })?;
        let new = match self.disk.open(&tmp, OpenOptions { create_new: true, direct }) {
            Ok(new) => new,
            Err(e) => {
                self.disk.close(old);
                return Err(e);
            }
        };
        let copied = self.copy_prefix(old, new, from);
        self.disk.close(old);
        self.disk.close(new);
        let installed = copied
            .and_then(|()| self.disk.rename(&tmp, path))
            .and_then(|()| self.disk.sync_dir(&self.dir));
        if installed.is_err() {
            let _ = self.disk.remove(&tmp);
        }
        installed
    }

    /// Copies `[0, from)` of `old` into `new` (allocated to `old`'s size, zeros after `from`)
    /// and syncs `new`.
    fn copy_prefix(&mut self, old: FileId, new: FileId, from: u64) -> io::Result<()> {
        let size = self.disk.size(old)?;
        self.disk.allocate(new, size)?;
        let end = align_up(from as usize, BLOCK_SIZE_BYTES) as u64;
        let mut buf = IoBuf::with_capacity(ZERO_WRITE_BYTES_MAX);
        let mut at = 0u64;
        while at < end {
            let len = ((end - at) as usize).min(ZERO_WRITE_BYTES_MAX);
            buf.resize_zeroed(len);
            buf.as_mut_slice().fill(0);
            let keep = ((from - at) as usize).min(len);
            let mut got = 0;
            // Reads whole blocks (O_DIRECT); a file cut inside the padding of its last record
            // ends early, and the missing bytes are padding, zeros by format.
            while got < keep {
                let n =
                    self.disk.read_at(old, at + got as u64, &mut buf.as_mut_slice()[got..len])?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            buf.as_mut_slice()[keep..].fill(0);
            self.disk.write_at(new, at, buf.as_slice())?;
            at += len as u64;
        }
        self.disk.sync(new)
    }

    fn zero_file_range(&mut self, file: FileId, from: u64, to: Option<u64>) -> io::Result<()> {
        let size = self.disk.size(file)?;
        let end = align_up(to.unwrap_or(size).min(size) as usize, BLOCK_SIZE_BYTES) as u64;
        if end <= from {
            return Ok(());
        }
        let mut at = align_down(from as usize, BLOCK_SIZE_BYTES) as u64;
        let chunk = ((end - at) as usize).min(ZERO_WRITE_BYTES_MAX);
        let mut buf = IoBuf::with_capacity(chunk);
        buf.resize_zeroed(chunk);
        // The first block keeps the records before `from`.
        let keep = (from - at) as usize;
        if keep > 0 {
            // A file cut inside the padding of its last record (recovery accepts it) ends
            // before `from`: the bytes it lacks are padding, zeros by format, as the buffer is.
            self.disk.read_at(file, at, &mut buf.as_mut_slice()[..keep])?;
        }
        while at < end {
            // Both ends are block-aligned, and so is the buffer's length.
            let len = ((end - at) as usize).min(buf.len());
            self.disk.write_at(file, at, &buf.as_slice()[..len])?;
            buf.as_mut_slice()[..keep].fill(0);
            at += len as u64;
        }
        self.disk.sync(file)
    }

    fn truncate_failed(&mut self, context: &str, e: io::Error) -> TruncateError {
        self.set_poison(format!("truncation failed while {context}: {e}"));
        TruncateError::Io { context: context.to_owned(), source: e }
    }
}

/// The file name of a segment's path without its `.seg` suffix.
fn seg_stem(path: &std::path::Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}
