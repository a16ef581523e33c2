//! Index files of sealed segments (docs/format.md, "Segment index files"): written when a
//! segment is sealed, read by recovery instead of scanning the segment, removed before the
//! segment file is.
//!
//! Owns: when an index is written and removed, the checks an index must pass against its
//! segment before recovery trusts it, and what recovery asks the device for ahead of those
//! checks (headers, index files, the records the checks decode: advice, `Disk::prefetch`).
//! An index is never needed: a missing, damaged or stale one costs a scan of its segment
//! (which writes it again), never an entry. So it is written without an fdatasync, and any
//! error writing it is logged and ignored.
//!
//! Invariants:
//! 1. An index file `<first>.idx` exists only beside a sealed segment `<first>.seg`: it is
//!    removed before its segment file is removed or replaced (same directory fsync), and
//!    recovery removes those of the last segment and those without a segment.
//! 2. A trusted index satisfies the invariants of `Segment` for the segment's live records:
//!    offsets start after the header, increase by at least a record header, and the last live
//!    record ends inside the file; the first and last live records, and the records on both
//!    sides of every term change, decode with their checksums and hold the index and term the
//!    index says. Every other record is checked when it is read, as every read does.

use super::LogStore;
use crate::raft::LAST_INDEX_MAX;
use crate::storage::disk::{Disk, OpenOptions};
use crate::storage::format::{decode_record_seeded, record_size_bytes, SegmentId};
use crate::storage::format::{SegmentHeader, BLOCK_SIZE_BYTES};
use crate::storage::format::{RECORD_ALIGN, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use crate::storage::index::{SegmentIndex, INDEX_SEGMENT_HEADER_BYTES};
use crate::storage::segment::{kind_mismatch, max_index_after, scan, Scan};
use raftwal_wire::types::{LogIndex, Term};
use std::io;

/// What a trusted index gives recovery: what a scan of the live records would have found, and
/// the highest index the file may hold.
pub(super) struct Indexed {
    pub(super) scan: Scan,
    pub(super) written_max: LogIndex,
    /// Where the record offsets start in the index file.
    pub(super) offsets_at: u64,
    /// The bytes after the live records were read for `written_max` (the index says the file
    /// may hold records there).
    pub(super) searched: bool,
}

impl<D: Disk> LogStore<D> {
    /// Writes the index of segment `k` (sealed: its map holds its bytes), under a temporary
    /// name renamed into place; not synced (module documentation). Errors are logged.
    pub(super) fn write_index(&mut self, k: usize) {
        let seg = &self.segments[k];
        if seg.unloaded.is_some() || seg.file.is_some() || seg.offsets.is_empty() {
            return;
        }
        let index = SegmentIndex {
            segment_header: seg.header,
            end_offset: seg.end_offset,
            written_max: seg.written_max,
            term_changes: self.terms.changes_in(seg.first_index(), seg.last_index()),
            offsets: seg.offsets.clone(),
        };
        let id = seg.id;
        let path = self.dir.join(id.index_file_name());
        let tmp = self.dir.join(format!("{}.tmp", id.index_file_name()));
        let bytes = index.encode();
        let written = (|| {
            match self.disk.remove(&tmp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let file = self.disk.open(&tmp, OpenOptions { create_new: true, direct: false })?;
            let done = self.disk.write_at(file, 0, &bytes);
            self.disk.close(file);
            done.and_then(|()| self.disk.rename(&tmp, &path))
        })();
        match written {
            Ok(()) => {
                self.stats.indexes_written += 1;
                self.segments[k].index_at = Some(index.offsets_at());
            }
            Err(e) => {
                let _ = self.disk.remove(&tmp);
                tracing::warn!(segment = %id, error = %e, "could not write a segment's index file; the next start scans the segment instead");
            }
        }
    }

    /// Brings sealed segment `k`'s record offsets back into memory (it gave them up when it was
    /// unmapped), from a scan of its records: the source of truth, for the rare operation
    /// that needs them all (a truncation that cuts into the segment).
    pub(super) fn reload_offsets(&mut self, k: usize) -> io::Result<()> {
        let seg = &self.segments[k];
        let Some(count) = seg.unloaded else { return Ok(()) };
        let (first, seed, path) = (seg.first_index(), seg.seed, seg.path(&self.dir));
        let prev_term = self.terms.term(first.prev()).unwrap_or(Term::ZERO);
        let file = self.disk.open(&path, OpenOptions { create_new: false, direct: false })?;
        let bytes = self.disk.size(file).and_then(|size| {
            // A map when the process has one to spare, else a copy: a truncation does not fail
            // for want of a map either, and a copy the heap cannot hold (a process out of
            // address space) is an error of this truncation, not an abort.
            self.disk.map(file, size).or_else(|_| {
                let len = usize::try_from(size).map_err(io::Error::other)?;
                let mut buf = Vec::new();
                buf.try_reserve_exact(len)
                    .map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e.to_string()))?;
                buf.resize(len, 0);
                let got = super::read::read_fully(&*self.disk, file, 0, &mut buf)?;
                buf.truncate(got);
                Ok(bytes::Bytes::from(buf))
            })
        });
        self.disk.close(file);
        let bytes = bytes?;
        let header = SegmentHeader::decode(&bytes).map_err(|e| io::Error::other(e.to_string()))?;
        let last = first.plus(count as u64).prev();
        let s = scan(&bytes, first, prev_term, Some(last), seed, header.recycled);
        if s.offsets.len() != count {
            return Err(io::Error::other(format!(
                "{} holds {} valid records where the log has {count}",
                path.display(),
                s.offsets.len()
            )));
        }
        let seg = &mut self.segments[k];
        seg.offsets = s.offsets;
        seg.unloaded = None;
        Ok(())
    }

    /// Removes segment `id`'s index file, if there is one: before the segment file is removed
    /// or replaced (the caller syncs the directory after both).
    pub(super) fn remove_index(&self, id: SegmentId) -> io::Result<()> {
        match self.disk.remove(&self.dir.join(id.index_file_name())) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Reads segment `id`'s index file and checks it against the segment's `bytes` (header
    /// included), whose live records are `id.0..next` and whose records' checksums start from
    /// `seed`. An error says why it cannot stand for a scan.
    pub(super) fn load_index(
        &self,
        id: SegmentId,
        bytes: &[u8],
        next: LogIndex,
        prev_term: Term,
        seed: u32,
    ) -> Result<Indexed, String> {
        let index = self.read_index(id)?;
        check_index(&index, id.0, bytes, next, prev_term, seed)
    }

    /// Starts the device's reads of segment `id`'s first two blocks (header and first record),
    /// which recovery's header check reads. Advice only (`Disk::prefetch`).
    pub(super) fn prefetch_header(&self, id: SegmentId) {
        self.prefetch_file(&id.file_name(), &[(0, 2 * SEGMENT_HEADER_BYTES as u64)]);
    }

    /// Starts the device's reads of segment `id`'s whole index file. Advice only.
    pub(super) fn prefetch_index_file(&self, id: SegmentId) {
        self.prefetch_file(&id.index_file_name(), &[(0, 0)]);
    }

    /// Starts the device's reads of the records [`check_index`] will decode in segment `id`,
    /// whose live records are `id.0..next`, as its (unchecked) `index` places them. Advice
    /// only: an index that places them wrongly fails its checks all the same.
    pub(super) fn prefetch_checked_records(
        &self,
        id: SegmentId,
        index: &SegmentIndex,
        next: LogIndex,
    ) {
        let changes: Vec<(LogIndex, Term)> =
            index.term_changes.iter().copied().take_while(|c| c.0 < next).collect();
        let ranges: Vec<(u64, u64)> = records_to_check(id.0, next.prev(), &changes)
            .into_iter()
            .filter_map(|i| {
                let k = usize::try_from(i.get().checked_sub(id.0.get())?).ok()?;
                let at = u64::from(*index.offsets.get(k)?);
                let block = BLOCK_SIZE_BYTES as u64;
                let end = index.offsets.get(k + 1).map_or(at + block, |&o| u64::from(o));
                Some((at, end.saturating_sub(at).max(1)))
            })
            .collect();
        self.prefetch_file(&id.file_name(), &ranges);
    }

    fn prefetch_file(&self, name: &str, ranges: &[(u64, u64)]) {
        let options = OpenOptions { create_new: false, direct: false };
        if let Ok(file) = self.disk.open(&self.dir.join(name), options) {
            for &(offset, len) in ranges {
                self.disk.prefetch(file, offset, len);
            }
            self.disk.close(file);
        }
    }

    /// Reads and decodes segment `id`'s index file (nothing checked against the segment yet).
    pub(super) fn read_index(&self, id: SegmentId) -> Result<SegmentIndex, String> {
        let path = self.dir.join(id.index_file_name());
        let file = self
            .disk
            .open(&path, OpenOptions { create_new: false, direct: false })
            .map_err(|e| format!("opening it: {e}"))?;
        let read = (|| {
            let size = self.disk.size(file)?;
            // Four bytes per record of at least 32 bytes, plus the term changes: an eighth of
            // a segment and a little (a larger file is no index of one).
            if size > self.options.segment_size_bytes / 8 + (1 << 20) {
                return Err(io::Error::other(format!("{size} bytes, larger than an index")));
            }
            let mut buf = vec![0u8; size as usize];
            let mut got = 0;
            while got < buf.len() {
                let n = self.disk.read_at(file, got as u64, &mut buf[got..])?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            buf.truncate(got);
            Ok(buf)
        })();
        self.disk.close(file);
        let buf = read.map_err(|e| format!("reading it: {e}"))?;
        SegmentIndex::decode(&buf)
    }
}

/// The checks of invariant 2 (module documentation).
pub(super) fn check_index(
    index: &SegmentIndex,
    first: LogIndex,
    bytes: &[u8],
    next: LogIndex,
    prev_term: Term,
    seed: u32,
) -> Result<Indexed, String> {
    if bytes.get(..INDEX_SEGMENT_HEADER_BYTES) != Some(&index.segment_header[..]) {
        return Err("it belongs to another segment header".to_owned());
    }
    let live = next.get().checked_sub(first.get()).filter(|&n| n > 0).ok_or("no live records")?;
    let live = usize::try_from(live).map_err(|_| "too many records")?;
    if live > index.offsets.len() {
        return Err(format!("it lists {} records, the segment holds {live}", index.offsets.len()));
    }
    let offsets = &index.offsets[..live];
    if offsets[0] as usize != SEGMENT_HEADER_BYTES {
        return Err("the first record does not follow the header".to_owned());
    }
    for pair in offsets.windows(2) {
        let (a, b) = (pair[0] as usize, pair[1] as usize);
        if b < a + RECORD_HEADER_BYTES || !b.is_multiple_of(RECORD_ALIGN) {
            return Err(format!("offset {b} does not follow offset {a}"));
        }
    }
    // The term changes among the live records: the first at `first`, strictly increasing in
    // index and term, from a term not below the header's previous one.
    let changes: Vec<(LogIndex, Term)> =
        index.term_changes.iter().copied().take_while(|c| c.0 < next).collect();
    if changes.first().map(|c| c.0) != Some(first) || changes[0].1 < prev_term {
        return Err("its term changes do not start at the first record".to_owned());
    }
    if changes.windows(2).any(|w| w[1].0 <= w[0].0 || w[1].1 <= w[0].1) {
        return Err("its term changes are out of order".to_owned());
    }
    let term_of = |i: LogIndex| changes[changes.partition_point(|c| c.0 <= i) - 1].1;
    let last = next.prev();
    let mut end = 0usize;
    for i in records_to_check(first, last, &changes) {
        let k = (i.get() - first.get()) as usize;
        let at = offsets[k] as usize;
        let limit = offsets.get(k + 1).map_or(bytes.len(), |&o| o as usize);
        let record = bytes.get(at..limit).ok_or_else(|| format!("record {i} is past the file"))?;
        let header = decode_record_seeded(record, seed).map_err(|e| format!("record {i}: {e}"))?;
        if header.index != i || header.term != term_of(i) {
            return Err(format!(
                "record {i} holds ({}, term {}), the index says term {}",
                header.index,
                header.term,
                term_of(i)
            ));
        }
        if let Some(reason) = kind_mismatch(header.kind, header.payload_bytes) {
            return Err(format!("record {i}: {reason}"));
        }
        if i == last {
            end = at + record_size_bytes(header.payload_bytes as usize);
        }
    }
    if end > bytes.len() {
        return Err("the last record ends past the file".to_owned());
    }
    // (The segment's end may lie past its last record's: a batch withdrawn for lack of space
    // leaves it at the block boundary the batch started from.)
    if live == index.offsets.len() && end as u64 > index.end_offset {
        return Err(format!("the records end at {end}, the index says {}", index.end_offset));
    }
    // The index's highest written index was right at sealing; a truncation may have cleared
    // records after the live ones since. Only then is there anything to look for.
    let searched = index.written_max > last;
    let written_max = if searched {
        max_index_after(bytes, end, last, seed).map_or(last, |m| m.max(last))
    } else {
        last
    };
    if written_max > LAST_INDEX_MAX {
        return Err("its highest written index is past the largest a log holds".to_owned());
    }
    let scan =
        Scan { offsets: offsets.to_vec(), term_changes: changes, end_offset: end, stop: None };
    Ok(Indexed { scan, written_max, offsets_at: index.offsets_at(), searched })
}

/// The records [`check_index`] decodes among the live records `first..=last`: the first, the
/// last, and both sides of every term change after the first (`changes`), sorted, each once.
fn records_to_check(
    first: LogIndex,
    last: LogIndex,
    changes: &[(LogIndex, Term)],
) -> Vec<LogIndex> {
    let mut check: Vec<LogIndex> = vec![first, last];
    for &(at, _) in changes.iter().skip(1) {
        check.push(at.prev());
        check.push(at);
    }
    check.sort();
    check.dedup();
    check
}
