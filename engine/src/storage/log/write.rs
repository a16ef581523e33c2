//! The write path of [`LogStore`]: append, batch submission, completions, segment roll-over.
//!
//! Owns: turning queued entries into one block-aligned batch buffer per batch, and the segment
//! creation protocol (temporary file, preallocation, header, fdatasync, rename, directory
//! fsync). It must not block on the disk except in segment creation, which happens once per
//! `segment_size_bytes`.
//!
//! No allocation per entry: an append clones `Bytes` handles into the tail (`VecDeque` growth
//! is amortized), the batch buffer is reused, and the per-segment offset table grows by
//! doubling.

use super::{InFlight, LogStore};
use crate::storage::disk::{Completion, Disk, FileId, IoBuf, OpenOptions, WriteOp};
use crate::storage::error::{AppendError, CompletionError, SubmitError};
use crate::storage::format::{
    align_down, align_up, encode_record, record_size_bytes, SegmentHeader, SegmentId,
};
use crate::storage::format::{BLOCK_SIZE_BYTES, SEGMENT_HEADER_BYTES};
use crate::storage::segment::Segment;
use raftwal_wire::types::{Entry, LogIndex, Term};
use std::io;
use std::path::PathBuf;

/// A segment file made and synced under its temporary name, not yet renamed into place.
pub(super) struct Prepared {
    id: SegmentId,
    pub(super) file: FileId,
    tmp: PathBuf,
    path: PathBuf,
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

    /// Starts a batch with every queued entry (up to `batch_bytes_max`) if no batch is in
    /// flight: one write and one fdatasync. Returns whether a batch was started. Never blocks,
    /// except to create the next segment when the active one is full.
    pub fn submit(&mut self) -> Result<bool, SubmitError> {
        self.check_poison()?;
        if self.in_flight.is_some() || self.written_index == self.last_index {
            return Ok(false);
        }
        let seg_size = self.options.segment_size_bytes;
        let tail_start = self.tail.front().map_or(self.last_index.next(), |e| e.index);
        let first_pos = self.written_index.next().distance_from(tail_start) as usize;
        let first_size = record_size_bytes(self.tail[first_pos].data.len()) as u64;
        let active_end =
            self.segments.back().expect("a log always has an active segment").end_offset;
        if active_end + first_size > seg_size {
            self.roll_over()?;
        }
        let align = self.alignment();
        let batch_bytes_max = self.options.batch_bytes_max;
        let active = self.segments.back_mut().expect("a log always has an active segment");
        let file = active.file.expect("the active segment has an open file");
        let (mut bytes, mut count, mut end) = (0usize, 0usize, active.end_offset);
        for e in self.tail.range(first_pos..) {
            let size = record_size_bytes(e.data.len());
            if end + size as u64 > seg_size || (count > 0 && bytes + size > batch_bytes_max) {
                break;
            }
            (bytes, count, end) = (bytes + size, count + 1, end + size as u64);
        }
        assert!(count > 0, "the first entry fits a fresh segment (checked at append)");
        let mut buf = self.buf.take().expect("the buffer is idle when nothing is in flight");
        let prefix = buf.len();
        let records_end = prefix + bytes;
        let total = align_up(records_end, align);
        buf.reserve(total);
        buf.set_len(total);
        let (prev_end_offset, prev_records) = (active.end_offset, active.offsets.len());
        let mut pos = prefix;
        for e in self.tail.range(first_pos..first_pos + count) {
            let size = record_size_bytes(e.data.len());
            encode_record(
                &mut buf.as_mut_slice()[pos..pos + size],
                e.index,
                e.term,
                e.kind,
                &e.data,
            );
            let offset = u32::try_from(active.end_offset)
                .expect("segments are at most 4 GiB (checked at open)");
            active.offsets.push(offset);
            active.end_offset += size as u64;
            pos += size;
        }
        buf.as_mut_slice()[records_end..total].fill(0);
        let tag = self.next_tag;
        self.next_tag += 1;
        let op = WriteOp { file, offset: prev_end_offset - prefix as u64, buf, sync: true, tag };
        match self.disk.submit(self.owner, op) {
            Ok(()) => {
                let through = self.written_index.plus(count as u64);
                self.in_flight = Some(InFlight {
                    tag,
                    through,
                    records_end,
                    prev_end_offset,
                    prev_records,
                    prefix_bytes: prefix,
                });
                self.written_index = through;
                self.stats.batches += 1;
                self.stats.entries += count as u64;
                self.stats.data_syncs += 1;
                self.stats.bytes_written += total as u64;
                Ok(true)
            }
            Err(rejected) => {
                let active = self.segments.back_mut().expect("a log always has an active segment");
                active.offsets.truncate(prev_records);
                active.end_offset = prev_end_offset;
                let mut buf = rejected.op.buf;
                buf.set_len(prefix);
                self.buf = Some(buf);
                self.set_poison(format!("the disk refused a batch: {}", rejected.error));
                Err(SubmitError::Io {
                    context: "submitting a batch".into(),
                    source: rejected.error,
                })
            }
        }
    }

    /// Takes the finished batch, if any, and returns the durable index. Call it when the disk's
    /// eventfd fires (or after `Disk::wait`). Never blocks.
    pub fn process_completions(&mut self) -> Result<LogIndex, CompletionError> {
        if self.in_flight.is_none() {
            return Ok(self.durable_index);
        }
        let mut completions = std::mem::take(&mut self.completions);
        self.disk.reap(self.owner, &mut completions);
        let mut result = Ok(self.durable_index);
        for c in completions.drain(..) {
            if let Err(e) = self.complete(c) {
                result = Err(e);
            }
        }
        self.completions = completions;
        result.map(|_| self.durable_index)
    }

    fn complete(&mut self, c: Completion) -> Result<(), CompletionError> {
        let flight =
            self.in_flight.take().expect("a completion arrives only for the batch in flight");
        assert_eq!(flight.tag, c.tag, "one batch in flight at a time");
        let mut buf = c.buf;
        match c.result {
            Ok(()) => {
                self.durable_index = flight.through;
                if self.options.direct_io {
                    buf.keep_range(
                        align_down(flight.records_end, BLOCK_SIZE_BYTES),
                        flight.records_end,
                    );
                } else {
                    buf.set_len(0);
                }
                self.buf = Some(buf);
                self.trim_tail();
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::StorageFull && !c.sync_failed => {
                let active = self.segments.back_mut().expect("a log always has an active segment");
                active.offsets.truncate(flight.prev_records);
                active.end_offset = flight.prev_end_offset;
                self.written_index = self.durable_index;
                buf.set_len(flight.prefix_bytes);
                self.buf = Some(buf);
                Err(CompletionError::NoSpace(e))
            }
            Err(e) => {
                self.buf = Some(buf);
                let what = if c.sync_failed { "fdatasync" } else { "write" };
                self.set_poison(format!(
                    "batch {what} through index {} failed: {e}",
                    flight.through
                ));
                Err(if c.sync_failed {
                    CompletionError::SyncFailed(e)
                } else {
                    CompletionError::WriteFailed(e)
                })
            }
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

    /// Seals the full active segment and starts the next one. Nothing is in flight.
    fn roll_over(&mut self) -> Result<(), SubmitError> {
        assert!(self.in_flight.is_none(), "roll-over waits for the batch in flight");
        let next = SegmentId(self.written_index.next());
        let prev_term =
            self.terms.term(self.written_index).expect("the written index is in the log");
        let prepared = match self.prepare_segment(next, prev_term) {
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
        let sealed = self.seal_active().and_then(|()| self.install_segment(prepared));
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
    pub(super) fn seal_active(&mut self) -> io::Result<()> {
        let active = self.segments.back_mut().expect("a log always has an active segment");
        let file = active.file.expect("the active segment has an open file");
        active.map = Some(self.disk.map(file, active.end_offset)?);
        active.file = None;
        self.disk.close(file);
        Ok(())
    }

    /// Creates a segment under a temporary name: preallocated, header written and synced.
    pub(super) fn prepare_segment(
        &mut self,
        id: SegmentId,
        prev_term: Term,
    ) -> io::Result<Prepared> {
        let path = self.dir.join(id.file_name());
        let tmp = self.dir.join(format!("{}.tmp", id.file_name()));
        let file = self
            .disk
            .open(&tmp, OpenOptions { create_new: true, direct: self.options.direct_io })?;
        let header = SegmentHeader {
            first_index: id.0,
            prev_term,
            cluster_id: self.options.cluster_id,
            log_id: self.options.log_id,
        };
        let mut block = IoBuf::with_capacity(SEGMENT_HEADER_BYTES);
        block.resize_zeroed(SEGMENT_HEADER_BYTES);
        header.encode(block.as_mut_slice());
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
        Ok(Prepared { id, file, tmp, path })
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
        });
        if let Some(buf) = self.buf.as_mut() {
            buf.set_len(0);
        }
        Ok(())
    }

    /// Creates and installs a segment (used for the first segment of a new log).
    pub(super) fn create_segment(&mut self, id: SegmentId, prev_term: Term) -> io::Result<()> {
        let prepared = self.prepare_segment(id, prev_term)?;
        self.install_segment(prepared)
    }
}
