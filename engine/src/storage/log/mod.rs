//! [`LogStore`]: one log in one directory, driven from a shard's event loop.
//!
//! Owns: the log's segments, its in-memory tail of recent entries, the batch buffer, the batch
//! in flight, the term runs and the hard state. It reaches the disk only through [`Disk`].
//!
//! The write path, step by step (docs/format.md has the on-disk side):
//! 1. [`LogStore::append`] checks the entries and queues them in the tail (a `Bytes` clone per
//!    entry, no copy, no I/O); they are readable at once.
//! 2. [`LogStore::submit`], when fewer than `batches_in_flight_max` batches are in flight,
//!    encodes every queued entry into reused, block-aligned batch buffers and hands them to the
//!    disk: one write followed by one fdatasync, or, for a batch larger than
//!    `write_chunk_first_bytes`, one write per chunk (doubling from that size up to
//!    `write_chunk_bytes`) handed over as soon as it is encoded (so encoding overlaps the
//!    device) and one fdatasync after the last. A batch started while another is in flight
//!    (pipelined) starts at the next block boundary (O_DIRECT), so no two writes in flight
//!    share a block; the gap stays zero (docs/format.md, "Pipelined batches").
//! 3. Appends that arrive meanwhile wait in the tail and form the next batch (group commit).
//! 4. [`LogStore::process_completions`] moves the durable index to the last entry of the
//!    earliest batches that completed, in order: a batch that completed before an earlier one
//!    still in flight waits for it. Only then may the caller acknowledge those entries.
//! 5. After every submit and completion, the next background op starts if none is in flight:
//!    zeros ahead of the writer, the next segment's creation, zero-fill and fdatasync
//!    (`prepare.rs`). Their completions come back through the same calls; they never delay a
//!    batch, except that a batch stops before a zero-fill write in flight.
//!
//! Invariants (checked by [`LogStore::check_invariants`]):
//! 1. `first_index <= durable_index + 1`, `durable_index <= written_index <= last_index`.
//! 2. The tail holds every entry in `(durable_index, last_index]`, contiguously, possibly with
//!    some durable entries before them (a read cache bounded by `tail_cache_bytes_max`).
//! 3. Segments are contiguous: each starts right after the previous one's last record; only the
//!    last is active; together they hold every entry in `[first_index, written_index]`.
//! 4. At most `batches_in_flight_max` batches are in flight, in index order, and no two writes in
//!    flight overlap; when none is, the partial last block of the active segment is held in
//!    `tail_block` (O_DIRECT). Every record's `batch_offset` counts back to the first index that
//!    was not durable when its batch was submitted (recovery relies on it).
//! 5. Once poisoned, no write of any kind is issued again (background ones included).
//! 6. At most one background op is in flight; its tag has `BACKGROUND_TAG` set, a batch's
//!    never does (`prepare.rs` lists its own invariants).

mod index;
mod open;
mod prepare;
mod read;
mod reset;
mod truncate;
mod write;

use crate::storage::client_seqs::{ClientSeqs, ClientSeqsFile};
use crate::storage::disk::{Completion, Disk, IoBuf, OwnerId};
use crate::storage::error::{
    ClientSeqsError, CompletionError, FlushError, HardStateError, Poisoned,
};
use crate::storage::format::{BLOCK_SIZE_BYTES, SEGMENT_HEADER_BYTES};
use crate::storage::hard_state::{HardStateFile, SaveError};
use crate::storage::segment::Segment;
use crate::storage::terms::TermRuns;
use raftwal_wire::types::{ClusterId, Entry, HardState, LogId, LogIndex, Term};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::SystemTime;

pub use prepare::ZeroFill;

/// Settings of one log.
#[derive(Clone, Copy, Debug)]
pub struct LogOptions {
    /// Bytes each segment file is preallocated to; a multiple of 4096 from 16 KiB to 4 GiB minus
    /// 4 KiB (record offsets are 32-bit).
    pub segment_size_bytes: u64,
    /// Write segments with O_DIRECT (block-aligned batch writes) instead of through the page
    /// cache. docs/benchmarks.md has the measurement behind the default.
    pub direct_io: bool,
    /// The largest batch written at once; larger backlogs go out in several batches.
    pub batch_bytes_max: usize,
    /// Payload bytes of durable entries kept in memory for reads, besides the non-durable ones.
    pub tail_cache_bytes_max: usize,
    /// The largest chunk of a batch written in chunks (see `write_chunk_first_bytes`).
    pub write_chunk_bytes: usize,
    /// A batch larger than this is written in chunks, each handed to the disk as soon as it is
    /// encoded, so that encoding the next chunk overlaps the device writing the previous one;
    /// one fdatasync follows the last chunk. The first chunk is about this size (at most
    /// `write_chunk_bytes`), so the device starts early; each next one doubles, up to
    /// `write_chunk_bytes`, so a large batch is still a few large writes. docs/benchmarks.md has
    /// the measurement behind the defaults.
    pub write_chunk_first_bytes: usize,
    /// The cluster this log belongs to (written in every segment header, checked at open).
    pub cluster_id: ClusterId,
    /// Which log of the cluster this is (written in every segment header, checked at open).
    pub log_id: LogId,
    /// When to write zeros over preallocated blocks ahead of the writer, in the background, so
    /// that batches write into blocks written before (see [`ZeroFill`]).
    pub zero_fill: ZeroFill,
    /// Bytes of one background zero-fill write; a multiple of 4096.
    pub zero_chunk_bytes: usize,
    /// How many batches may be with the disk at once (1 to [`BATCHES_IN_FLIGHT_LIMIT`]). With
    /// more than one, appends that arrive while a batch is being written start the next batch
    /// at once instead of waiting for it; the device works on both. A batch so started begins
    /// at a block boundary (O_DIRECT), leaving the rest of the previous block unused. The
    /// default, 1, waits: on the benchmark machine (two vCPUs, a 3-node cluster) pipelining
    /// gained no throughput and worsened the tail (docs/benchmarks.md, "Pipelined batches").
    pub batches_in_flight_max: usize,
    /// How many files of compacted segments [`LogStore::compact_before`] keeps, under a
    /// temporary name, to reuse as later segments instead of creating and zero-filling new
    /// ones: a recycled file's blocks were all written before, so batches written into it need
    /// no extent conversion and no zeros (docs/format.md, "Recycled segments"). 0 removes every
    /// compacted segment. Kept files hold disk space until they are reused or the log is closed
    /// or reopened (open removes them).
    pub recycled_segments_max: usize,
    /// Open scans every sealed segment's records, checking each checksum, instead of taking
    /// what its index file says (docs/format.md, "Segment index files"): a start then reads
    /// every stored byte. Off, a sealed segment's records are checked when they are read, as
    /// every read does, and only the records an index's checks decode are read at open.
    pub check_sealed_at_open: bool,
    /// How many sealed segments stay mapped (the newest ones): reads from a mapped segment
    /// hand out its bytes without a copy, reads from an unmapped one `pread` a copy (one
    /// `open`, `pread`, `close` per run of entries read). The kernel bounds the maps of a
    /// process (`vm.max_map_count`, 65,530 by default), so mapping every sealed segment of
    /// every log would bound what a node can store. A segment a reader still holds payloads of
    /// stays mapped until they are dropped.
    pub sealed_segments_mapped_max: usize,
}

/// The most batches [`LogOptions::batches_in_flight_max`] allows.
pub const BATCHES_IN_FLIGHT_LIMIT: usize = 8;

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions {
            segment_size_bytes: 64 << 20,
            direct_io: true,
            batch_bytes_max: 8 << 20,
            tail_cache_bytes_max: 16 << 20,
            write_chunk_bytes: 512 << 10,
            write_chunk_first_bytes: 128 << 10,
            cluster_id: ClusterId(0),
            log_id: LogId(0),
            zero_fill: ZeroFill::BatchBytesBelow(1 << 20),
            zero_chunk_bytes: 1 << 20,
            batches_in_flight_max: 1,
            recycled_segments_max: 2,
            check_sealed_at_open: false,
            sealed_segments_mapped_max: 16,
        }
    }
}

/// What [`LogStore::open`] recovered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The last saved hard state.
    pub hard_state: HardState,
    /// The first stored index (`last_index + 1` when the log is empty).
    pub first_index: LogIndex,
    /// The last stored index; every entry up to it is durable (open syncs what it recovered).
    pub last_index: LogIndex,
    /// Bytes of a torn tail (a write not covered by a completed fdatasync) cut off.
    pub torn_tail_bytes: u64,
    /// Segment files found.
    pub segments: usize,
    /// Of those, sealed segments opened from their index file instead of a scan of their
    /// records (docs/format.md, "Segment index files").
    pub segments_indexed: usize,
}

/// Counters of the log's write path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Batches written (each one write and one fdatasync).
    pub batches: u64,
    /// Entries written in those batches.
    pub entries: u64,
    /// fdatasyncs issued on the data path (one per batch, by construction).
    pub data_syncs: u64,
    /// Bytes handed to the disk in batch writes (including O_DIRECT block padding).
    pub bytes_written: u64,
    /// Of the batches, those started while an earlier one was in flight.
    pub pipelined_batches: u64,
    /// Batches withdrawn after a write found no space (their entries stayed queued and went
    /// out again in later batches).
    pub withdrawn_batches: u64,
    /// Background zero-fill writes issued (ahead of the writer, or of the next segment).
    pub background_writes: u64,
    /// Bytes of those writes.
    pub background_bytes: u64,
    /// Background fdatasyncs of the prepared next segment (never on the data path).
    pub background_syncs: u64,
    /// Roll-overs (and truncations) that used the segment prepared ahead, instead of creating
    /// one on the spot.
    pub roll_overs_prepared: u64,
    /// Segments created on the spot (the first one, or when none was prepared in time).
    pub segments_created: u64,
    /// Bytes of prepared segments that were not zero-filled yet when they became active (the
    /// policy did not allow it, or the zero-fill had not kept up with the writer).
    pub prepared_unzeroed_bytes: u64,
    /// Compacted segments whose files were kept for reuse instead of removed.
    pub segments_recycled: u64,
    /// Of `roll_overs_prepared`, those whose segment was a recycled file.
    pub roll_overs_recycled: u64,
    /// Sealed segments a truncation cleared by copying their live records to a new file,
    /// because a reader held a payload of the old one.
    pub segments_rewritten: u64,
    /// Index files of sealed segments written (docs/format.md, "Segment index files").
    pub indexes_written: u64,
}

impl LogStats {
    /// Every counter combined with its twin in `other` by `op`.
    fn zip(&self, other: &LogStats, op: fn(u64, u64) -> u64) -> LogStats {
        LogStats {
            batches: op(self.batches, other.batches),
            entries: op(self.entries, other.entries),
            data_syncs: op(self.data_syncs, other.data_syncs),
            bytes_written: op(self.bytes_written, other.bytes_written),
            pipelined_batches: op(self.pipelined_batches, other.pipelined_batches),
            withdrawn_batches: op(self.withdrawn_batches, other.withdrawn_batches),
            background_writes: op(self.background_writes, other.background_writes),
            background_bytes: op(self.background_bytes, other.background_bytes),
            background_syncs: op(self.background_syncs, other.background_syncs),
            roll_overs_prepared: op(self.roll_overs_prepared, other.roll_overs_prepared),
            segments_created: op(self.segments_created, other.segments_created),
            prepared_unzeroed_bytes: op(
                self.prepared_unzeroed_bytes,
                other.prepared_unzeroed_bytes,
            ),
            segments_recycled: op(self.segments_recycled, other.segments_recycled),
            roll_overs_recycled: op(self.roll_overs_recycled, other.roll_overs_recycled),
            segments_rewritten: op(self.segments_rewritten, other.segments_rewritten),
            indexes_written: op(self.indexes_written, other.indexes_written),
        }
    }

    /// What was counted since `earlier` (a reading of the same log's counters).
    pub fn since(&self, earlier: &LogStats) -> LogStats {
        self.zip(earlier, u64::saturating_sub)
    }

    /// The counters of two logs (or two lives of one) together.
    pub fn plus(&self, other: &LogStats) -> LogStats {
        self.zip(other, u64::saturating_add)
    }
}

#[derive(Debug)]
struct InFlight {
    tag: u64,
    /// The last index the batch carries.
    through: LogIndex,
    /// The batch's writes not completed yet.
    writes_pending: usize,
    /// True when the batch needs a separate fdatasync after all its writes (a batch written in
    /// several chunks); false when its single write carries the fdatasync.
    sync_after_writes: bool,
    /// True once that separate fdatasync was submitted.
    sync_submitted: bool,
    /// The first failure among the batch's ops (and whether it was the fdatasync).
    error: Option<(std::io::Error, bool)>,
    /// Every op of the batch completed (it leaves the queue once every earlier batch did too).
    done: bool,
    /// Started while an earlier batch was in flight: it begins at a block boundary, with no
    /// partial block carried from before.
    pipelined: bool,
    /// The segment's `end_offset` (after the gap, for a pipelined batch) and record count before
    /// the batch, to withdraw it on ENOSPC.
    prev_end_offset: u64,
    prev_records: usize,
}

/// One log in one directory. See the module documentation.
#[derive(Debug)]
pub struct LogStore<D: Disk> {
    disk: Rc<D>,
    owner: OwnerId,
    dir: PathBuf,
    options: LogOptions,
    segments: VecDeque<Segment>,
    terms: TermRuns,
    last_index: LogIndex,
    written_index: LogIndex,
    durable_index: LogIndex,
    tail: VecDeque<Entry>,
    tail_payload_bytes: usize,
    /// Batch buffers not with the disk, reused so the write path does not allocate.
    spare: Vec<IoBuf>,
    /// In O_DIRECT mode, the bytes of the active segment's partial last block
    /// (`end_offset % BLOCK_SIZE_BYTES` of them), which the next batch writes again.
    tail_block: Vec<u8>,
    /// `tail_block` before the earliest batch in flight that was not pipelined, to withdraw it
    /// on ENOSPC.
    prev_tail_block: Vec<u8>,
    /// The batches with the disk, oldest first.
    in_flight: VecDeque<InFlight>,
    next_tag: u64,
    hard: HardStateFile,
    client_seqs: ClientSeqsFile,
    /// What the client sequence numbers file held at open, until taken.
    client_seqs_found: Option<ClientSeqs>,
    poison: Option<Poisoned>,
    completions: Vec<Completion>,
    stats: LogStats,
    bg: prepare::Background,
    /// Byte range of the active segment after its last record where withdrawn batches may
    /// have left records; cleared before the next batch is written.
    scrub: Option<(u64, u64)>,
    /// Sealed segments `open` took from their index files (`Recovery::segments_indexed`).
    indexed_at_open: usize,
}

impl<D: Disk> LogStore<D> {
    /// Unmaps the sealed segments beyond the newest `sealed_segments_mapped_max`, except those
    /// a reader still holds payloads of (unmapping them would be safe for the reader, whose
    /// payload keeps its map alive, but the store could no longer tell that the file must not
    /// be written: a truncation's clearing, recycling). Reads of an unmapped segment `pread`.
    /// An unmapped segment whose index file lists its records also gives up its offsets: reads
    /// take the ones they need from the index file.
    /// A segment sealed unmapped (its map failed: the process out of maps) counts as one of
    /// the newest while it keeps its offsets, and gives them up like a mapped one beyond them.
    pub(super) fn unmap_old(&mut self) {
        let cap = self.options.sealed_segments_mapped_max;
        let sealed = self.segments.len().saturating_sub(1);
        let mut kept = 0;
        for k in (0..sealed).rev() {
            let s = &self.segments[k];
            if s.map.is_some() || (s.unloaded.is_none() && s.index_at.is_some()) {
                kept += 1;
                if kept > cap {
                    self.unmap_segment(k);
                }
            }
        }
    }

    /// Unmaps sealed segment `k` (and gives up its offsets if its index file lists them),
    /// unless a reader holds payloads of its map.
    pub(super) fn unmap_segment(&mut self, k: usize) {
        let s = &mut self.segments[k];
        if s.map.as_ref().is_some_and(|m| m.has_readers()) {
            return;
        }
        s.map = None;
        if s.index_at.is_some() && s.unloaded.is_none() {
            s.unloaded = Some(s.offsets.len());
            s.offsets = Vec::new();
        }
    }

    /// Sealed segments whose record offsets are not in memory (see
    /// [`LogOptions::sealed_segments_mapped_max`]).
    pub fn unloaded_segments(&self) -> usize {
        self.segments.iter().filter(|s| s.unloaded.is_some()).count()
    }

    /// Sealed segments mapped now (see [`LogOptions::sealed_segments_mapped_max`]).
    pub fn mapped_segments(&self) -> usize {
        self.segments.iter().filter(|s| s.map.is_some()).count()
    }

    /// The first stored index (`last_index + 1` when the log is empty).
    pub fn first_index(&self) -> LogIndex {
        self.terms.prev_index().next()
    }

    /// The first index of each segment and the bytes of its records (header and the bytes
    /// after the last record not counted), oldest first; the last one is the segment written
    /// to. `compact_before(i)` removes the segments before the one holding `i`.
    pub fn segment_extents(&self) -> impl DoubleEndedIterator<Item = (LogIndex, u64)> + '_ {
        self.segments.iter().map(|segment| {
            let record_bytes = segment.end_offset.saturating_sub(SEGMENT_HEADER_BYTES as u64);
            (segment.first_index(), record_bytes)
        })
    }

    /// Where time-based retention may compact up to: the first index of the oldest sealed
    /// segment last written at or after `cutoff` (the segment being written when every sealed
    /// one is older). Looks at the sealed segments oldest first and stops at the first one that
    /// is not older, or whose time the disk cannot tell (it is kept, and so is every segment
    /// after it): one file status per segment that may go, and one more.
    pub fn sealed_before(&self, cutoff: SystemTime) -> LogIndex {
        let sealed = self.segments.len().saturating_sub(1);
        for segment in self.segments.iter().take(sealed) {
            let written = self.disk.modified(&self.dir.join(segment.id.file_name()));
            if !written.is_ok_and(|time| time < cutoff) {
                return segment.first_index();
            }
        }
        self.segments.back().map_or(self.first_index(), Segment::first_index)
    }

    /// The last index appended (durable or not).
    pub fn last_index(&self) -> LogIndex {
        self.last_index
    }

    /// A lower bound of the payload bytes appended and not durable yet, which the store holds
    /// in memory until they are (its tail holds them and at most `tail_cache_bytes_max` of
    /// durable ones): how far the disk is behind the appends.
    pub fn undurable_payload_bytes_min(&self) -> usize {
        self.tail_payload_bytes.saturating_sub(self.options.tail_cache_bytes_max)
    }

    /// Every entry up to this index is durable: acknowledge up to here, no further.
    pub fn durable_index(&self) -> LogIndex {
        self.durable_index
    }

    /// The term of `index`, for `first_index - 1 <= index <= last_index`; no disk I/O.
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        self.terms.term(index)
    }

    /// The term of the last entry (of `first_index - 1` when the log is empty).
    pub fn last_term(&self) -> Term {
        self.terms.last_term()
    }

    /// The last saved hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard.state()
    }

    /// True while a batch is with the disk.
    pub fn has_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// True when appended entries wait although no batch is in flight: the next batch's first
    /// record would overlap the background zero-fill write in flight, and starts once that
    /// completes (`process_completions`, then `submit`). The disk must run for the log to move.
    pub fn waits_for_background(&self) -> bool {
        self.has_pending() && self.in_flight.is_empty() && self.bg.has_in_flight()
    }

    /// The last index of each batch in flight, oldest first.
    pub fn batch_ends_in_flight(&self) -> impl Iterator<Item = LogIndex> + '_ {
        self.in_flight.iter().map(|f| f.through)
    }

    /// True when appended entries wait for a batch and one could start now: fewer than
    /// `batches_in_flight_max` are in flight and none of them failed. (`submit` may still start
    /// none: at a segment's end it waits for every batch in flight, and it stops before a
    /// zero-fill write in flight.)
    pub fn can_start_batch(&self) -> bool {
        self.has_pending()
            && self.in_flight.len() < self.options.batches_in_flight_max
            && self.in_flight.iter().all(|f| f.error.is_none())
    }

    /// True when appended entries wait for a batch.
    pub fn has_pending(&self) -> bool {
        self.written_index < self.last_index
    }

    /// True while records of withdrawn batches (a write found no space) may still be on the
    /// disk after the durable end, some of them durable (a later batch's fdatasync covers the
    /// whole file): the next batch clears them before it writes, and a truncation instead.
    /// They were never reported durable, so nothing acknowledged depends on them.
    pub fn has_withdrawn_records(&self) -> bool {
        self.scrub.is_some()
    }

    /// The poison, if an earlier failure poisoned the log.
    pub fn poisoned(&self) -> Option<&Poisoned> {
        self.poison.as_ref()
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counters of the write path.
    pub fn stats(&self) -> LogStats {
        self.stats
    }

    /// Saves the hard state durably (write and fdatasync) before returning. Call it when the
    /// term or vote changes, before sending any message that depends on them; the commit index
    /// needs no durability for safety, so saving it on every commit is optional.
    ///
    /// A write the file system refuses for lack of space ([`HardStateError::NoSpace`]) changes
    /// nothing (the saved state stays the last one, in the other slot) and does not poison the
    /// log: call again later. Any other failure, and a failed fdatasync whatever its cause,
    /// poisons it.
    pub fn save_hard_state(&mut self, hs: HardState) -> Result<(), HardStateError> {
        self.check_poison()?;
        match self.hard.save(&*self.disk, hs) {
            Ok(()) => Ok(()),
            Err(SaveError::Write(e)) if e.kind() == std::io::ErrorKind::StorageFull => {
                Err(HardStateError::NoSpace(e))
            }
            Err(SaveError::Write(e) | SaveError::Sync(e)) => {
                self.set_poison(format!(
                    "saving the hard state to {}: {e}",
                    self.hard.path().display()
                ));
                Err(HardStateError::Io(e))
            }
        }
    }

    /// The client sequence numbers file (docs/format.md, "Client sequence numbers") as open
    /// found it, the first time this is called; `None` afterwards or when there was none.
    pub fn take_client_seqs(&mut self) -> Option<ClientSeqs> {
        self.client_seqs_found.take()
    }

    /// Saves `seqs` in the client sequence numbers file, durably (fdatasynced) before
    /// returning; a synchronous write of about 70 KiB at most, for the node to call every few
    /// tens of thousands of entries and before it compacts. The store does not interpret the
    /// numbers. A failure leaves the previous save in place and does not poison the log.
    pub fn save_client_seqs(&mut self, seqs: &ClientSeqs) -> Result<(), ClientSeqsError> {
        self.client_seqs.save(&*self.disk, seqs)
    }

    /// Blocks until every appended entry is durable (submitting batches as needed) and returns
    /// the durable index. For simple callers and tests; an event loop uses `submit` and
    /// `process_completions` instead.
    pub fn flush(&mut self) -> Result<LogIndex, FlushError> {
        loop {
            self.process_completions()?;
            if self.durable_index == self.last_index {
                return Ok(self.durable_index);
            }
            self.submit()?;
            // No batch started while a background write is in the way: wait for it too.
            if self.has_in_flight() || self.bg.has_in_flight() {
                if let Err(e) = self.disk.wait(self.owner) {
                    self.set_poison(format!("waiting for the disk: {e}"));
                    return Err(FlushError::Completion(
                        crate::storage::error::CompletionError::WriteFailed(e),
                    ));
                }
            }
        }
    }

    /// Blocks until the oldest batch in flight (if any) leaves the queue, or, with no batch in
    /// flight, until the background op in flight (if any) completes; then takes the
    /// completions and returns the durable index. For callers without an event loop; others
    /// wait on the disk's eventfd and call `process_completions`.
    pub fn wait(&mut self) -> Result<LogIndex, CompletionError> {
        let oldest = self.in_flight.front().map(|f| f.tag);
        if oldest.is_some() || self.bg.has_in_flight() {
            loop {
                if let Err(e) = self.disk.wait(self.owner) {
                    self.set_poison(format!("waiting for the disk: {e}"));
                    return Err(CompletionError::WriteFailed(e));
                }
                let durable = self.process_completions()?;
                if oldest.is_none() || self.in_flight.front().map(|f| f.tag) != oldest {
                    return Ok(durable);
                }
            }
        }
        self.process_completions()
    }

    /// Asserts the invariants of the module documentation (for tests and the simulator).
    pub fn check_invariants(&self) {
        assert!(self.first_index() <= self.durable_index.next(), "first <= durable + 1");
        assert!(self.durable_index <= self.written_index, "durable <= written");
        assert!(self.written_index <= self.last_index, "written <= last");
        let tail_start = self.tail.front().map_or(self.last_index.next(), |e| e.index);
        assert!(tail_start <= self.durable_index.next(), "tail holds every non-durable entry");
        for (k, e) in self.tail.iter().enumerate() {
            assert_eq!(e.index, tail_start.plus(k as u64), "tail is contiguous");
            assert_eq!(self.terms.term(e.index), Some(e.term), "term runs match the tail");
        }
        assert_eq!(
            tail_start.plus(self.tail.len() as u64),
            self.last_index.next(),
            "tail ends at last"
        );
        let mut next = self.first_index();
        for (k, s) in self.segments.iter().enumerate() {
            let active = k + 1 == self.segments.len();
            assert!(s.first_index() <= next, "segments leave no gap");
            assert!(!active || s.map.is_none(), "only sealed segments are mapped");
            if s.unloaded.is_some() {
                assert!(!active, "the active segment keeps its offsets");
                assert!(s.offsets.is_empty() && s.map.is_none(), "an unloaded segment is unmapped");
                assert!(s.index_at.is_some(), "an unloaded segment's index file lists its records");
            }
            assert_eq!(active, s.file.is_some(), "only the active segment has an open file");
            if active || s.last_index() >= next {
                next = s.last_index().next();
            }
        }
        assert_eq!(next, self.written_index.next(), "segments hold every written entry");
        self.check_background_invariants();
        assert!(
            self.in_flight.len() <= self.options.batches_in_flight_max,
            "at most batches_in_flight_max batches in flight"
        );
        let mut prev_through = self.durable_index;
        for (k, f) in self.in_flight.iter().enumerate() {
            assert!(f.through > prev_through, "batches in flight are in index order");
            assert!(k == 0 || f.pipelined, "every batch in flight but the oldest is pipelined");
            prev_through = f.through;
        }
        if let (true, Some(active)) = (self.in_flight.is_empty(), self.segments.back()) {
            if self.options.direct_io {
                assert_eq!(
                    self.tail_block.len() as u64,
                    active.end_offset % BLOCK_SIZE_BYTES as u64,
                    "partial block held"
                );
            }
        }
    }

    fn check_poison(&self) -> Result<(), Poisoned> {
        match &self.poison {
            Some(p) => Err(p.clone()),
            None => Ok(()),
        }
    }

    fn set_poison(&mut self, reason: String) {
        tracing::error!(dir = %self.dir.display(), %reason, "log poisoned");
        if self.poison.is_none() {
            self.poison = Some(Poisoned(Arc::from(reason)));
        }
    }

    fn alignment(&self) -> usize {
        if self.options.direct_io {
            BLOCK_SIZE_BYTES
        } else {
            1
        }
    }

    /// The largest payload one entry may carry under these options.
    pub fn payload_bytes_max(&self) -> usize {
        let room =
            self.options.segment_size_bytes as usize - SEGMENT_HEADER_BYTES - BLOCK_SIZE_BYTES;
        room.min(crate::storage::format::PAYLOAD_BYTES_MAX)
    }
}

impl<D: Disk> Drop for LogStore<D> {
    fn drop(&mut self) {
        // Ops in flight must finish before their files are closed; their outcome no longer
        // matters to anyone (recovery will find what is durable).
        self.bg.close();
        let mut completions = std::mem::take(&mut self.completions);
        while self.has_in_flight() || self.bg.has_in_flight() {
            if self.disk.wait(self.owner).is_err() {
                break;
            }
            self.disk.reap(self.owner, &mut completions);
            if completions.is_empty() {
                // The disk has nothing of ours left (a simulated crash forgot its queue).
                break;
            }
            for c in completions.drain(..) {
                if c.tag & prepare::BACKGROUND_TAG != 0 {
                    self.complete_background(c);
                } else if self.has_in_flight() {
                    let _ = self.complete(c);
                }
            }
        }
        if !self.bg.has_in_flight() {
            self.discard_spare();
        }
        self.discard_recycled();
        for s in &self.segments {
            if let Some(f) = s.file {
                self.disk.close(f);
            }
        }
        self.hard.close(&*self.disk);
        self.client_seqs.close(&*self.disk);
        self.disk.unregister(self.owner);
    }
}
