//! The write path of [`LogStore`]: append, batch submission, completions, segment roll-over.
//!
//! Owns: turning queued entries into block-aligned batch buffers (one write per batch, or, for
//! a batch above `write_chunk_first_bytes`, one write per chunk, the chunks doubling from that
//! size up to `write_chunk_bytes`; then one fdatasync), and the segment
//! creation protocol (temporary file, preallocation, header, fdatasync, rename, directory
//! fsync). It must not block on the disk except at roll-over (once per `segment_size_bytes`:
//! with the next segment prepared ahead in the background (`prepare.rs`), that is a header
//! write, an fdatasync, a rename and a directory fsync; the preallocation was done earlier
//! (on this thread, right after a batch was handed to the disk, so the device works meanwhile)
//! and the zero-fill in the background), and in the first batch after a withdrawal (ENOSPC),
//! which first clears what the withdrawn batches wrote.
//!
//! No allocation per entry: an append clones `Bytes` handles into the tail (`VecDeque` growth
//! is amortized), the batch buffer is reused, and the per-segment offset table grows by
//! doubling.

use super::prepare::BACKGROUND_TAG;
use super::{InFlight, LogStore};
use crate::storage::disk::{Completion, Disk, FileId, IoBuf, OpenOptions, WriteOp};
use crate::storage::error::{AppendError, CompletionError, SubmitError};
use crate::storage::format::SEGMENT_HEADER_BYTES;
use crate::storage::format::SEGMENT_HEADER_FIELDS_BYTES;
use crate::storage::format::{
    align_down, align_up, encode_record_seeded, record_size_bytes, SegmentHeader, SegmentId,
};
use crate::storage::segment::{Segment, SegmentHeaderBytes, SharedMap};
use raftwal_wire::types::{Entry, LogIndex, Term};
use std::io;
use std::path::PathBuf;

/// A segment file made and synced under its temporary name, not yet renamed into place.
pub(super) struct Prepared {
    id: SegmentId,
    pub(super) file: FileId,
    tmp: PathBuf,
    path: PathBuf,
    /// Made ahead in the background (the spare), rather than on the spot.
    prepared_ahead: bool,
    /// The initial value of its records' CRC (`SegmentHeader::record_seed` of its header).
    seed: u32,
    /// Its header's fields and checksum, as written (copied into its index file when sealed).
    header: SegmentHeaderBytes,
}

impl Prepared {
    pub(super) fn new(
        id: SegmentId,
        file: FileId,
        tmp: PathBuf,
        path: PathBuf,
        prepared_ahead: bool,
        block: &IoBuf,
        seed: u32,
    ) -> Prepared {
        let header = header_bytes(block.as_slice());
        Prepared { id, file, tmp, path, prepared_ahead, seed, header }
    }

    /// The name it has now (its temporary name until [`Prepared::renamed`] says otherwise).
    pub(super) fn tmp(&self) -> &std::path::Path {
        &self.tmp
    }

    /// The caller renamed the file to `name` (still not its segment name):
    /// `LogStore::install_segment` renames it from there.
    pub(super) fn renamed(&mut self, name: PathBuf) {
        self.tmp = name;
    }
}

impl<D: Disk> LogStore<D> {
    /// Queues `entries` for the next batch. They must continue the log (`entries[0].index ==
    /// last_index + 1`, consecutive, terms not decreasing). They are readable at once and become
    /// durable after a later `submit` and `process_completions`. No disk I/O.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), AppendError> {
        self.check_poison()?;
        let max = self.payload_bytes_max();
        let (mut prev, mut prev_term) = (self.last_index, self.terms.last_term());
        for e in entries {
            if e.index != prev.next() {
                return Err(AppendError::NotContiguous { expected_prev: prev, got: e.index });
            }
            if e.term < prev_term {
                return Err(AppendError::TermRegressed { index: e.index, term: e.term, prev_term });
            }
            if e.data.len() > max {
                return Err(AppendError::EntryTooLarge {
                    index: e.index,
                    payload_bytes: e.data.len(),
                    limit_bytes: max,
                });
            }
            (prev, prev_term) = (e.index, e.term);
        }
        for e in entries {
            self.terms.push(e.index, e.term);
            self.tail_payload_bytes += e.data.len();
            self.tail.push_back(e.clone());
        }
        self.last_index = prev;
        Ok(())
    }

    /// Starts batches with the queued entries (each up to `batch_bytes_max`) while fewer than
    /// `batches_in_flight_max` are in flight: a batch's records are written (in one write, or,
    /// above `write_chunk_first_bytes`, in chunks that double from that size up to
    /// `write_chunk_bytes`, each handed to the disk as soon as it is encoded) and then made
    /// durable by one fdatasync. A batch started while another is in flight begins at the next
    /// block boundary (O_DIRECT). Returns whether a batch was started (none when enough are in
    /// flight or one failed, nothing is queued, the active segment is full while a batch is in
    /// flight, or a background zero-fill write in flight covers where the first record would
    /// go: its completion makes the next `submit` start it). Then starts the next background
    /// op if none is in flight. Never blocks, except at roll-over when the active segment is
    /// full and no batch is in flight (header, fdatasync, rename and directory fsync of the
    /// segment prepared ahead).
    pub fn submit(&mut self) -> Result<bool, SubmitError> {
        let mut started = Ok(false);
        loop {
            match self.submit_batch() {
                Ok(true) => started = Ok(true),
                Ok(false) => break,
                Err(e) => {
                    started = Err(e);
                    break;
                }
            }
        }
        if started.is_ok() {
            self.advance_background();
        }
        started
    }

    fn submit_batch(&mut self) -> Result<bool, SubmitError> {
        self.check_poison()?;
        if !self.can_start_batch() {
            return Ok(false);
        }
        if self.scrub.is_some() {
            // Withdrawn batches left records after the durable end: clear them (nothing is in
            // flight after a withdrawal), or keep the entries queued while space lacks.
            match self.clear_withdrawn() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::StorageFull => {
                    return Err(SubmitError::NoSpace(e))
                }
                Err(e) => {
                    let context = "clearing the records of withdrawn batches";
                    self.set_poison(format!("{context}: {e}"));
                    return Err(SubmitError::Io { context: context.into(), source: e });
                }
            }
        }
        let pipelined = self.has_in_flight();
        let align = self.alignment();
        let seg_size = self.options.segment_size_bytes;
        let tail_start = self.tail.front().map_or(self.last_index.next(), |e| e.index);
        let first_pos = self.written_index.next().distance_from(tail_start) as usize;
        let first_size = record_size_bytes(self.tail[first_pos].data.len()) as u64;
        let active_end =
            self.segments.back().expect("a log always has an active segment").end_offset;
        // A pipelined batch must not write the block the batch before it ends in (two writes in
        // flight never share a block): it starts at the next boundary, after a zero gap.
        let mut start =
            if pipelined { align_up(active_end as usize, align) as u64 } else { active_end };
        if start + first_size > seg_size {
            if pipelined {
                // Roll-over waits until no batch is in flight.
                return Ok(false);
            }
            self.roll_over()?;
            start = self.segments.back().expect("a log always has an active segment").end_offset;
        }
        let batch_bytes_max = self.options.batch_bytes_max;
        let chunk_bytes_max = self.options.write_chunk_bytes;
        // Chunks start small, so the device gets the first write soon, and double up to the
        // maximum (see `LogOptions::write_chunk_first_bytes`).
        let mut chunk_bytes = self.options.write_chunk_first_bytes.min(chunk_bytes_max);
        // A zero-fill write in flight ahead of the writer: the batch's writes end before it.
        let zero_limit = self.bg.active_write_limit();
        let active = self.segments.back_mut().expect("a log always has an active segment");
        let file = active.file.expect("the active segment has an open file");
        let seed = active.seed;
        let (mut bytes, mut count, mut end) = (0usize, 0usize, start);
        for e in self.tail.range(first_pos..) {
            let size = record_size_bytes(e.data.len());
            if end + size as u64 > seg_size || (count > 0 && bytes + size > batch_bytes_max) {
                break;
            }
            let write_end = align_up(end as usize + size, align) as u64;
            if zero_limit.is_some_and(|limit| write_end > limit) {
                break;
            }
            (bytes, count, end) = (bytes + size, count + 1, end + size as u64);
        }
        if count == 0 {
            assert!(
                zero_limit.is_some(),
                "the first entry fits a fresh segment (checked at append)"
            );
            return Ok(false);
        }
        self.bg.note_batch(bytes);
        active.end_offset = start;
        let (prev_end_offset, prev_records) = (active.end_offset, active.offsets.len());
        if pipelined {
            // Nothing is carried: the batch starts on a block of its own. `prev_tail_block`
            // keeps the oldest batch's, to withdraw from there.
            self.tail_block.clear();
        } else {
            std::mem::swap(&mut self.tail_block, &mut self.prev_tail_block);
            self.tail_block.clear();
        }
        let tag = self.next_tag;
        self.next_tag += 1;
        let single = bytes <= chunk_bytes;
        let mut flight = InFlight {
            tag,
            through: self.written_index.plus(count as u64),
            writes_pending: 0,
            sync_after_writes: !single,
            sync_submitted: false,
            error: None,
            done: false,
            pipelined,
            prev_end_offset,
            prev_records,
        };
        let mut next = first_pos;
        let batch_end = first_pos + count;
        // Every record says how far back the entries go that were not durable when its batch
        // was submitted (this batch's and those of the batches in flight): recovery must not
        // mistake a hole they left at a crash for corruption (docs/format.md).
        let unsynced_from = self.durable_index.next();
        let mut first_chunk = true;
        while next < batch_end {
            // One chunk: the carried partial block, then records up to the chunk size.
            let mut buf = self.spare.pop().unwrap_or_default();
            let prefix_len = match (first_chunk, pipelined) {
                (true, true) => 0,
                (true, false) => self.prev_tail_block.len(),
                (false, _) => self.tail_block.len(),
            };
            let mut chunk_records = 0usize;
            for e in self.tail.range(next..batch_end) {
                let size = record_size_bytes(e.data.len());
                if chunk_records > 0 && chunk_records + size > chunk_bytes {
                    break;
                }
                chunk_records += size;
            }
            chunk_bytes = chunk_bytes.saturating_mul(2).min(chunk_bytes_max);
            let records_end = prefix_len + chunk_records;
            buf.reserve(records_end + align);
            buf.set_len(records_end);
            let prefix = if first_chunk { &self.prev_tail_block } else { &self.tail_block };
            buf.as_mut_slice()[..prefix_len].copy_from_slice(&prefix[..prefix_len]);
            first_chunk = false;
            let active = self.segments.back_mut().expect("a log always has an active segment");
            let write_offset = active.end_offset - prefix_len as u64;
            let mut pos = prefix_len;
            while pos < records_end {
                let e = &self.tail[next];
                let size = record_size_bytes(e.data.len());
                let batch_offset = u32::try_from(e.index.get() - unsynced_from.get())
                    .expect("fewer than 2^32 entries are in flight (batches are bounded)");
                encode_record_seeded(
                    &mut buf.as_mut_slice()[pos..pos + size],
                    e.index,
                    e.term,
                    e.kind,
                    batch_offset,
                    &e.data,
                    seed,
                );
                let offset = u32::try_from(active.end_offset)
                    .expect("segments are at most 4 GiB (checked at open)");
                active.offsets.push(offset);
                active.end_offset += size as u64;
                pos += size;
                next += 1;
            }
            // A chunk that is not the batch's last ends at a block boundary: its partial last
            // block goes to the next chunk, so two writes in flight never share a block.
            let last_chunk = next == batch_end;
            let carry_from = align_down(records_end, align);
            let write_len = if last_chunk { align_up(records_end, align) } else { carry_from };
            self.tail_block.clear();
            self.tail_block.extend_from_slice(&buf.as_slice()[carry_from..records_end]);
            buf.resize_zeroed(write_len);
            if write_len == 0 {
                self.spare.push(buf);
                continue;
            }
            let sync = single && last_chunk;
            self.stats.bytes_written += write_len as u64;
            let op = WriteOp { file, offset: write_offset, buf, sync, tag, background: false };
            if let Err(rejected) = self.disk.submit(self.owner, op) {
                self.spare.push(rejected.op.buf);
                let error = rejected.error;
                self.set_poison(format!("the disk refused a batch write: {error}"));
                if flight.writes_pending == 0 {
                    self.withdraw(&flight);
                    return Err(SubmitError::Io {
                        context: "submitting a batch".into(),
                        source: error,
                    });
                }
                // Chunks already handed over must complete before anything else happens; the
                // poison stops every later write, and their completions are reaped as usual.
                flight.error = Some((error, false));
                break;
            }
            flight.writes_pending += 1;
        }
        self.written_index = flight.through;
        let active = self.segments.back_mut().expect("a log always has an active segment");
        active.written_max = active.written_max.max(flight.through);
        self.stats.batches += 1;
        self.stats.entries += count as u64;
        self.stats.data_syncs += 1;
        if pipelined {
            self.stats.pipelined_batches += 1;
        }
        self.in_flight.push_back(flight);
        Ok(true)
    }

    /// Takes finished ops, if any, and returns the durable index. Call it when the disk's
    /// eventfd fires (or after `Disk::wait`). Never blocks on the device, except that in
    /// `FsyncMode::Thread` the fdatasync of a batch written in chunks runs here.
    pub fn process_completions(&mut self) -> Result<LogIndex, CompletionError> {
        let mut result = Ok(self.durable_index);
        while self.has_in_flight() || self.bg.has_in_flight() {
            let mut completions = std::mem::take(&mut self.completions);
            self.disk.reap(self.owner, &mut completions);
            if completions.is_empty() {
                self.completions = completions;
                break;
            }
            for c in completions.drain(..) {
                if c.tag & BACKGROUND_TAG != 0 {
                    self.complete_background(c);
                } else if let Err(e) = self.complete(c) {
                    result = Err(e);
                }
            }
            self.completions = completions;
        }
        self.advance_background();
        result.map(|_| self.durable_index)
    }

    pub(super) fn complete(&mut self, c: Completion) -> Result<(), CompletionError> {
        let at = self
            .in_flight
            .iter()
            .position(|f| f.tag == c.tag)
            .expect("a completion arrives only for a batch in flight");
        let flight = &mut self.in_flight[at];
        let is_sync_op = flight.sync_submitted;
        if !is_sync_op {
            flight.writes_pending -= 1;
        }
        let mut failed_now = None;
        if let Err(e) = c.result {
            let sync_failed = c.sync_failed || is_sync_op;
            if !sync_failed && e.kind() == io::ErrorKind::StorageFull && self.poison.is_none() {
                // Withdrawn once every batch in flight completed (`settle`).
                if flight.error.is_none() {
                    flight.error = Some((e, false));
                }
            } else {
                // Any other failure poisons the log at once. A failed fdatasync may have
                // dropped the dirty pages of every batch in flight, so none of them may be
                // reported durable from now on, even if its own fdatasync succeeds later.
                let what = if sync_failed { "fdatasync" } else { "write" };
                let through = flight.through;
                if flight.error.is_none() {
                    flight.error = Some((io::Error::new(e.kind(), e.to_string()), sync_failed));
                }
                self.set_poison(format!("batch {what} through index {through} failed: {e}"));
                failed_now = Some(if sync_failed {
                    CompletionError::SyncFailed(e)
                } else {
                    CompletionError::WriteFailed(e)
                });
            }
        }
        // The sync-only op carries an empty buffer that owns no memory: keep only real ones, so
        // the next batch reuses an allocation instead of faulting in a fresh one.
        if c.buf.capacity() > 0 {
            self.spare.push(c.buf);
        }
        let poisoned = self.poison.is_some();
        let flight = &mut self.in_flight[at];
        if flight.writes_pending > 0 {
            return failed_now.map_or(Ok(()), Err);
        }
        if flight.error.is_none() && !poisoned && flight.sync_after_writes && !flight.sync_submitted
        {
            // Every chunk is written: one fdatasync makes the batch durable.
            flight.sync_submitted = true;
            let file = self
                .segments
                .back()
                .and_then(|s| s.file)
                .expect("the active segment has an open file");
            // An empty buffer: the op is the fdatasync alone (`Vec::new` does not allocate).
            let op = WriteOp {
                file,
                offset: 0,
                buf: IoBuf::default(),
                sync: true,
                tag: flight.tag,
                background: false,
            };
            match self.disk.submit(self.owner, op) {
                Ok(()) => return failed_now.map_or(Ok(()), Err),
                Err(rejected) => {
                    let through = flight.through;
                    flight.error = Some((io::Error::other("fdatasync refused"), true));
                    self.set_poison(format!(
                        "the disk refused the fdatasync of the batch through index {through}: {}",
                        rejected.error
                    ));
                    failed_now = Some(CompletionError::SyncFailed(rejected.error));
                }
            }
        }
        self.in_flight[at].done = true;
        let settled = self.settle();
        match failed_now {
            Some(e) => Err(e),
            None => settled,
        }
    }

    /// Moves the durable index over the oldest batches that completed, in order (never once the
    /// log is poisoned). When every batch in flight has completed, forgets them; if the oldest
    /// left failed with ENOSPC (and the log is not poisoned), withdraws it and every later one:
    /// their entries stay queued, and the next batch rewrites from where it started.
    fn settle(&mut self) -> Result<(), CompletionError> {
        if self.poison.is_none() {
            let durable_before = self.durable_index;
            while self.in_flight.front().is_some_and(|f| f.done && f.error.is_none()) {
                let flight = self.in_flight.pop_front().expect("checked above");
                self.durable_index = flight.through;
            }
            if self.durable_index > durable_before {
                self.trim_tail();
            }
        }
        if self.in_flight.iter().any(|f| !f.done) {
            return Ok(());
        }
        // (Emptied in place: the queue keeps its allocation for the next batches.)
        let left = self.in_flight.len() as u64;
        let Some(flight) = self.in_flight.pop_front() else { return Ok(()) };
        self.in_flight.clear();
        if self.poison.is_some() {
            // The failure was reported when it arrived; the log takes no more writes.
            return Ok(());
        }
        self.stats.withdrawn_batches += left;
        self.withdraw(&flight);
        self.written_index = self.durable_index;
        let (e, _) = flight.error.expect("a batch that completed without error left the queue");
        Err(CompletionError::NoSpace(e))
    }

    /// Puts the active segment back as it was before `flight` (and every batch after it) was
    /// encoded: its records are forgotten, and the partial last block is the one it started
    /// from (none for a pipelined batch, which began on a block of its own).
    ///
    /// Writes of the withdrawn batches may have reached the disk, a later batch's whole and
    /// durable (pipelined behind the one that failed): their records must be cleared before
    /// anything is written before them, or recovery could read them after the next batch's
    /// records as if they continued the log. The next batch clears them first (`scrub`).
    fn withdraw(&mut self, flight: &InFlight) {
        let active = self.segments.back_mut().expect("a log always has an active segment");
        let stale = (flight.prev_end_offset, active.end_offset);
        self.scrub = Some(match self.scrub {
            Some((from, to)) => (from.min(stale.0), to.max(stale.1)),
            None => stale,
        });
        active.offsets.truncate(flight.prev_records);
        active.end_offset = flight.prev_end_offset;
        if flight.pipelined {
            self.tail_block.clear();
        } else {
            std::mem::swap(&mut self.tail_block, &mut self.prev_tail_block);
        }
    }

    /// Drops durable entries from the front of the tail while it holds more than the cache
    /// budget.
    pub(super) fn trim_tail(&mut self) {
        while self.tail_payload_bytes > self.options.tail_cache_bytes_max {
            match self.tail.front() {
                Some(e) if e.index <= self.durable_index => {
                    self.tail_payload_bytes -= e.data.len();
                    self.tail.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Seals the full active segment and starts the next one: the segment prepared ahead if
    /// there is one, else a new one made now. No batch is in flight.
    fn roll_over(&mut self) -> Result<(), SubmitError> {
        assert!(self.in_flight.is_empty(), "roll-over waits for the batches in flight");
        let next = SegmentId(self.written_index.next());
        let prev_term =
            self.terms.term(self.written_index).expect("the written index is in the log");
        if let Err(e) = self.wait_background() {
            self.set_poison(format!("waiting for background work before segment {next}: {e}"));
            return Err(SubmitError::Io {
                context: format!("waiting for background work before segment {next}"),
                source: e,
            });
        }
        let prepared = match self
            .take_spare(next, prev_term, false)
            .map_or_else(|| self.prepare_segment(next, prev_term, false), Ok)
        {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::StorageFull => {
                return Err(SubmitError::NoSpace(e))
            }
            Err(e) => {
                self.set_poison(format!("creating segment {next}: {e}"));
                return Err(SubmitError::Io {
                    context: format!("creating segment {next}"),
                    source: e,
                });
            }
        };
        self.seal_active();
        // Before the next segment is installed, whose directory fsync names it durably (its
        // bytes need no fdatasync: module `index`).
        self.write_index(self.segments.len() - 1);
        let sealed = self.install_segment(prepared);
        self.unmap_old();
        if let Err(e) = sealed {
            self.set_poison(format!("rolling over to segment {next}: {e}"));
            return Err(SubmitError::Io {
                context: format!("rolling over to segment {next}"),
                source: e,
            });
        }
        Ok(())
    }

    /// Maps the active segment read-only and closes its file: it is never written again.
    /// When it cannot be mapped (the process is out of maps, `vm.max_map_count`, or of address
    /// space), it is sealed unmapped, as a segment beyond `sealed_segments_mapped_max` is, and
    /// reads `pread` it: a log does not fail for want of a map.
    pub(super) fn seal_active(&mut self) {
        let active = self.segments.back_mut().expect("a log always has an active segment");
        let file = active.file.expect("the active segment has an open file");
        match self.disk.map(file, active.end_offset) {
            Ok(bytes) => active.map = Some(SharedMap::new(bytes)),
            Err(e) => tracing::warn!(
                segment = %active.id,
                error = %e,
                "cannot map a sealed segment; reads of it read the file instead (with many \
                 logs, raise the vm.max_map_count sysctl or lower \
                 storage.sealed_segments_mapped_max)"
            ),
        }
        active.file = None;
        self.disk.close(file);
    }

    /// Creates a segment under a temporary name: preallocated, header written and synced;
    /// `base` for a reset's base segment.
    pub(super) fn prepare_segment(
        &mut self,
        id: SegmentId,
        prev_term: Term,
        base: bool,
    ) -> io::Result<Prepared> {
        self.stats.segments_created += 1;
        let path = self.dir.join(id.file_name());
        let tmp = self.dir.join(format!("{}.tmp", id.file_name()));
        let file = self
            .disk
            .open(&tmp, OpenOptions { create_new: true, direct: self.options.direct_io })?;
        let (block, seed) = self.header_block(id, prev_term, false, base);
        let made = self
            .disk
            .allocate(file, self.options.segment_size_bytes)
            .and_then(|()| self.disk.write_at(file, 0, block.as_slice()))
            .and_then(|()| self.disk.sync(file));
        if let Err(e) = made {
            self.disk.close(file);
            // The leftover temporary file is removed here if possible, and by the next open
            // otherwise.
            let _ = self.disk.remove(&tmp);
            return Err(e);
        }
        Ok(Prepared::new(id, file, tmp, path, false, &block, seed))
    }

    /// Renames a prepared segment into place, syncs the directory and makes it the active one.
    pub(super) fn install_segment(&mut self, p: Prepared) -> io::Result<()> {
        let installed =
            self.disk.rename(&p.tmp, &p.path).and_then(|()| self.disk.sync_dir(&self.dir));
        if let Err(e) = installed {
            self.disk.close(p.file);
            return Err(e);
        }
        self.segments.push_back(Segment {
            id: p.id,
            file: Some(p.file),
            offsets: Vec::new(),
            end_offset: SEGMENT_HEADER_BYTES as u64,
            map: None,
            index_at: None,
            unloaded: None,
            header: p.header,
            written_max: p.id.0.prev(),
            seed: p.seed,
        });
        self.tail_block.clear();
        self.activated(p.prepared_ahead);
        Ok(())
    }

    /// The header block of segment `id`, zero-padded to its full size, and the initial value of
    /// its records' CRC; `recycled` for a file recycled from a compacted segment, `base` for a
    /// reset's base segment.
    pub(super) fn header_block(
        &self,
        id: SegmentId,
        prev_term: Term,
        recycled: bool,
        base: bool,
    ) -> (IoBuf, u32) {
        let header = SegmentHeader {
            first_index: id.0,
            prev_term,
            cluster_id: self.options.cluster_id,
            log_id: self.options.log_id,
            recycled,
            base,
        };
        let mut block = IoBuf::with_capacity(SEGMENT_HEADER_BYTES);
        block.resize_zeroed(SEGMENT_HEADER_BYTES);
        header.encode(block.as_mut_slice());
        (block, header.record_seed())
    }

    /// Creates and installs a segment (used for the first segment of a new log).
    pub(super) fn create_segment(&mut self, id: SegmentId, prev_term: Term) -> io::Result<()> {
        let prepared = self.prepare_segment(id, prev_term, false)?;
        self.install_segment(prepared)
    }
}

/// The first [`SEGMENT_HEADER_FIELDS_BYTES`] of a segment file (its header's fields and
/// checksum): `bytes` holds at least a header block.
pub(super) fn header_bytes(bytes: &[u8]) -> SegmentHeaderBytes {
    let mut out = [0u8; SEGMENT_HEADER_FIELDS_BYTES];
    out.copy_from_slice(&bytes[..SEGMENT_HEADER_FIELDS_BYTES]);
    out
}
