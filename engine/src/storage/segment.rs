//! One segment in memory ([`Segment`]) and the record scan that recovery runs over its bytes.
//!
//! Owns: the per-segment index (the byte offset of every record), the sealed segment's mapped
//! bytes, and the pure scan of a segment's record area. It does no I/O of its own.
//!
//! Invariants of a [`Segment`]:
//! 1. `offsets[k]` is the offset of the record of index `first + k`; offsets increase and the
//!    records are contiguous, `offsets[k + 1] = offsets[k] + record_size_bytes(payload k)`,
//!    except that a record may start at the next block boundary instead, after a gap of zeros
//!    (a pipelined batch: docs/format.md). `offsets[k + 1] - offsets[k]` bounds the payload.
//!    While `unloaded`, `offsets` is empty and the segment's index file (`index_at`) holds
//!    them; only a sealed segment that is not mapped gives them up.
//! 2. `end_offset` is the offset after the last record (or [`SEGMENT_HEADER_BYTES`]).
//! 3. A sealed segment has no open file, and `map`, when it is mapped (the newest
//!    `sealed_segments_mapped_max` sealed segments, and those a reader holds payloads of),
//!    covers at least `[0, end_offset)`. Only the last segment of a log is active (unsealed).
//!    A sealed segment's file is written again only by a truncation that clears its bytes
//!    after its live records, and only when no reader holds a payload of its map
//!    (`SharedMap::has_readers`; otherwise the live records are copied to a new file renamed
//!    over it, and the readers keep the old one); it is recycled after compaction under the
//!    same condition, since a recycled file is written again.

use crate::raft::LAST_INDEX_MAX;
use crate::storage::disk::FileId;
use crate::storage::format::RecordHeader;
use crate::storage::format::SEGMENT_HEADER_FIELDS_BYTES;
use crate::storage::format::{align_up, record_size_bytes, BLOCK_SIZE_BYTES, SEGMENT_HEADER_BYTES};
use crate::storage::format::{
    decode_record_seeded, RecordError, SegmentId, RECORD_ALIGN, RECORD_HEADER_BYTES,
};
use bytes::Bytes;
use raftwal_wire::client::TAG_SIZE_BYTES;
use raftwal_wire::types::{EntryKind, LogIndex, Term};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The first bytes of a segment file: its header's fields and checksum.
pub(crate) type SegmentHeaderBytes = [u8; SEGMENT_HEADER_FIELDS_BYTES];

/// A segment of the log, as the store tracks it.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) id: SegmentId,
    /// The open file, for the active segment.
    pub(crate) file: Option<FileId>,
    /// The offset of each record (empty while `unloaded`).
    pub(crate) offsets: Vec<u32>,
    pub(crate) end_offset: u64,
    /// The mapped bytes of a sealed segment (the newest ones only:
    /// `LogOptions::sealed_segments_mapped_max`).
    pub(crate) map: Option<SharedMap>,
    /// Where the record offsets start in the segment's index file, when that file lists (at
    /// least) its live records: set when the store wrote it, or took it at open.
    pub(crate) index_at: Option<u64>,
    /// The header's fields and checksum, as the file holds them (for its index file, without
    /// reading the file: a freshly sealed segment's header is rarely in the page cache).
    pub(crate) header: SegmentHeaderBytes,
    /// The number of records, while `offsets` is not in memory (a sealed segment no longer
    /// mapped whose index file lists them: reads take the offsets they need from it).
    pub(crate) unloaded: Option<usize>,
    /// The highest index whose record this use of the file may hold, live or not: records a
    /// truncation cut, or a withdrawn batch wrote, stay in the bytes after the live ones. A
    /// recycled file may only serve a segment that starts above it.
    pub(crate) written_max: LogIndex,
    /// The initial value of its records' CRC (`SegmentHeader::record_seed`: 0 unless recycled).
    pub(crate) seed: u32,
}

/// The mapped bytes of a sealed segment, handing out slices that the store can count: it may
/// write the file again (a truncation's clearing, recycling) only while no reader holds one,
/// since a reader's payload is a view of the file's pages.
#[derive(Debug)]
pub(crate) struct SharedMap(Arc<Bytes>);

/// The owner of the slices a [`SharedMap`] hands out: one `Arc` per slice handed out, so the
/// `Arc`'s count says how many are alive (`Bytes` counts its clones apart, unseen).
struct Held {
    map: Arc<Bytes>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.end]
    }
}

impl SharedMap {
    pub(crate) fn new(bytes: Bytes) -> SharedMap {
        SharedMap(Arc::new(bytes))
    }

    /// The bytes of `range`, as a `Bytes` that keeps the map counted while it (or any slice of
    /// it) is alive. One small allocation per call (the owner), not per entry.
    pub(crate) fn slice(&self, range: std::ops::Range<usize>) -> Bytes {
        assert!(range.start <= range.end && range.end <= self.0.len(), "slice inside the map");
        Bytes::from_owner(Held { map: self.0.clone(), start: range.start, end: range.end })
    }

    /// True while a slice handed out by [`SharedMap::slice`] (or a slice of one) is alive.
    pub(crate) fn has_readers(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }
}

impl Segment {
    pub(crate) fn first_index(&self) -> LogIndex {
        self.id.0
    }

    /// The number of records.
    pub(crate) fn records(&self) -> usize {
        self.unloaded.unwrap_or(self.offsets.len())
    }

    /// The index of the last record, or `first - 1` when the segment holds none.
    pub(crate) fn last_index(&self) -> LogIndex {
        LogIndex(self.id.0.get() + self.records() as u64 - 1)
    }

    pub(crate) fn path(&self, dir: &Path) -> PathBuf {
        dir.join(self.id.file_name())
    }
}

/// Why a scan stopped before its limit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The bytes at `offset` are not a valid record (zero, torn or corrupt).
    Invalid { offset: usize, error: RecordError },
    /// A record with a valid checksum that does not continue the log (wrong index, falling
    /// term) or holds a field this build does not know (`RecordError::checksum_held`): never
    /// the result of a torn write, so always corruption. (In a recycled segment a
    /// record of an index below the segment's first one is `Invalid` with
    /// [`RecordError::Stale`] instead: the file's earlier use left it.)
    Inconsistent { offset: usize, reason: String },
}

/// What a scan of one segment found.
#[derive(Debug)]
pub(crate) struct Scan {
    pub(crate) offsets: Vec<u32>,
    /// (index, term) where the term changes, starting with the first record.
    pub(crate) term_changes: Vec<(LogIndex, Term)>,
    pub(crate) end_offset: usize,
    pub(crate) stop: Option<Stop>,
}

/// Scans the records of a segment whose bytes (header included) are `bytes`, expecting indexes
/// from `first` on and terms not below `prev_term`, and stopping after `last` if given; records'
/// checksums start from `seed` (`SegmentHeader::record_seed`). In a `recycled` segment a valid
/// record of an index below `first` ends the scan as invalid ([`RecordError::Stale`]): the
/// file's earlier use left it.
pub(crate) fn scan(
    bytes: &[u8],
    first: LogIndex,
    prev_term: Term,
    last: Option<LogIndex>,
    seed: u32,
    recycled: bool,
) -> Scan {
    let mut out = Scan {
        offsets: Vec::new(),
        term_changes: Vec::new(),
        end_offset: SEGMENT_HEADER_BYTES,
        stop: None,
    };
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut expected = first;
    let mut term = prev_term;
    while last.is_none_or(|l| expected <= l) {
        let header = match decode_record_seeded(bytes.get(offset..).unwrap_or_default(), seed) {
            Ok(h) => h,
            // Its checksum held: written whole where it lies (a later build's kind, say), so
            // never the end of a torn tail, which recovery would cut.
            Err(error) if error.checksum_held() => {
                let reason = format!("{error} (in a record whose checksum holds)");
                out.stop = Some(Stop::Inconsistent { offset, reason });
                break;
            }
            // A gap shorter than a record header does not decode as zeros: check for one
            // whatever the error.
            Err(_) if gap_before_record(bytes, offset, expected, term, seed) => {
                offset = align_up(offset, BLOCK_SIZE_BYTES);
                continue;
            }
            Err(error) => {
                out.stop = Some(Stop::Invalid { offset, error });
                break;
            }
        };
        if recycled && header.index < first {
            let error = RecordError::Stale(header.index.get());
            out.stop = Some(Stop::Invalid { offset, error });
            break;
        }
        if header.index != expected {
            let reason =
                format!("record holds index {} where {} was expected", header.index, expected);
            out.stop = Some(Stop::Inconsistent { offset, reason });
            break;
        }
        if header.term < term {
            let reason = format!("record term {} is below the previous term {}", header.term, term);
            out.stop = Some(Stop::Inconsistent { offset, reason });
            break;
        }
        if let Some(reason) = kind_mismatch(header.kind, header.payload_bytes) {
            // The writer stores what the consensus core and the wire accept: never this.
            out.stop = Some(Stop::Inconsistent { offset, reason });
            break;
        }
        if header.index > LAST_INDEX_MAX {
            // No log holds it: no index could follow the log's last entry.
            let reason =
                format!("record holds index {}, past the largest a log holds", header.index);
            out.stop = Some(Stop::Inconsistent { offset, reason });
            break;
        }
        let Ok(offset32) = u32::try_from(offset) else {
            let reason = "record offset beyond 4 GiB".to_owned();
            out.stop = Some(Stop::Inconsistent { offset, reason });
            break;
        };
        if out.term_changes.last().is_none_or(|c| c.1 != header.term) {
            out.term_changes.push((expected, header.term));
        }
        term = header.term;
        out.offsets.push(offset32);
        offset += record_size_bytes(header.payload_bytes as usize);
        out.end_offset = offset;
        expected = expected.next();
    }
    out
}

/// Why a record's payload size does not fit its kind, if it does not: a no-op carries no data
/// and a tagged entry at least its client id and sequence number (the rules the wire decoder
/// enforces, so a record breaking them could not even be sent to a follower or a client).
pub(crate) fn kind_mismatch(kind: EntryKind, payload_bytes: u32) -> Option<String> {
    match kind {
        EntryKind::Noop if payload_bytes != 0 => {
            Some(format!("no-op record with {payload_bytes} bytes of payload"))
        }
        EntryKind::Tagged if (payload_bytes as usize) < TAG_SIZE_BYTES => Some(format!(
            "tagged record of {payload_bytes} bytes, shorter than its {TAG_SIZE_BYTES}-byte tag"
        )),
        _ => None,
    }
}

/// True when the bytes from `offset` (inside a block) to the next block boundary are zero and a
/// valid record of index `expected` (term not below `term`) starts at that boundary, or one
/// whose checksum holds with a field this build does not know: the gap a pipelined batch
/// leaves before itself. Nothing else leaves one: a record of the index that
/// was due at `offset` can only sit further on if the writer put it there.
fn gap_before_record(
    bytes: &[u8],
    offset: usize,
    expected: LogIndex,
    term: Term,
    seed: u32,
) -> bool {
    let boundary = align_up(offset, BLOCK_SIZE_BYTES);
    if boundary == offset || boundary >= bytes.len() {
        return false;
    }
    if bytes[offset..boundary].iter().any(|&b| b != 0) {
        return false;
    }
    match decode_record_seeded(&bytes[boundary..], seed) {
        Ok(h) => h.index == expected && h.term >= term,
        // A record whose checksum holds was written at the boundary, as only the writer does
        // after a gap: step over the gap, and the scan stops at the record as inconsistent
        // rather than at the gap, where recovery would take it for a torn tail and cut it.
        Err(error) => error.checksum_held(),
    }
}

/// Looks for a valid record (checksum from `seed`) after `from` whose index is past `after` (a
/// record that a torn write cannot explain). Cheap field checks come before the checksum, so
/// garbage costs little.
pub(crate) fn find_record_after(
    bytes: &[u8],
    from: usize,
    after: LogIndex,
    seed: u32,
) -> Option<(usize, RecordHeader)> {
    find_record_from(bytes, from - from % RECORD_ALIGN + RECORD_ALIGN, after, seed)
}

/// [`find_record_after`], looking at `offset` (a multiple of [`RECORD_ALIGN`]) first.
fn find_record_from(
    bytes: &[u8],
    mut offset: usize,
    after: LogIndex,
    seed: u32,
) -> Option<(usize, RecordHeader)> {
    while offset + RECORD_HEADER_BYTES <= bytes.len() {
        let h = &bytes[offset..offset + RECORD_HEADER_BYTES];
        let mut idx = [0u8; 8];
        idx.copy_from_slice(&h[8..16]);
        let index = u64::from_le_bytes(idx);
        let plausible = index > after.get()
            && index - after.get() <= (bytes.len() / RECORD_HEADER_BYTES) as u64
            && EntryKind::from_u8(h[24]).is_some()
            && h[25..28].iter().all(|&b| b == 0);
        if plausible {
            if let Ok(header) = decode_record_seeded(&bytes[offset..], seed) {
                return Some((offset, header));
            }
        }
        offset += RECORD_ALIGN;
    }
    None
}

/// The end of the last valid record after `from` whose index is past `after`, or `from` if
/// there is none: in a recycled segment, how far a cut tail holds records of the segment's own
/// use (what follows them is the file's earlier use, or nothing).
pub(crate) fn records_end_after(bytes: &[u8], from: usize, after: LogIndex, seed: u32) -> usize {
    let mut end = from;
    let mut at = from;
    while let Some((offset, header)) = find_record_after(bytes, at, after, seed) {
        end = end.max(offset + record_size_bytes(header.payload_bytes as usize));
        at = offset;
    }
    end
}

/// The highest index of a valid record at or after `from` whose index is past `after`, if
/// any: what a truncation cut (or a withdrawn batch wrote) after a sealed segment's live
/// records, which end at `from`. The first of them starts right there (a truncation cuts the
/// records that follow the live ones), so `from` itself is looked at: a single record cut from
/// a segment's end must count, or a later truncation would not clear it before the segment is
/// the last one for a moment, and a crash then would bring the cut entry back.
pub(crate) fn max_index_after(
    bytes: &[u8],
    from: usize,
    after: LogIndex,
    seed: u32,
) -> Option<LogIndex> {
    let mut max = None;
    let mut found = find_record_from(bytes, align_up(from, RECORD_ALIGN), after, seed);
    while let Some((offset, header)) = found {
        max = max.max(Some(header.index));
        found = find_record_after(bytes, offset, after, seed);
    }
    max
}

/// The offset after the last non-zero byte of `bytes[from..]`, or `from` if all are zero.
pub(crate) fn nonzero_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..].iter().rposition(|&b| b != 0).map_or(from, |p| from + p + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::format::encode_record;

    fn segment_bytes(terms: &[u64]) -> Vec<u8> {
        let mut bytes = vec![0u8; SEGMENT_HEADER_BYTES + 4096];
        let mut at = SEGMENT_HEADER_BYTES;
        for (k, &t) in terms.iter().enumerate() {
            let size = record_size_bytes(5);
            encode_record(
                &mut bytes[at..at + size],
                LogIndex(10 + k as u64),
                Term(t),
                EntryKind::Normal,
                k as u32,
                b"abcde",
            );
            at += size;
        }
        bytes
    }

    #[test]
    fn scan_reads_records_and_stops_at_zeros() {
        let bytes = segment_bytes(&[1, 1, 2]);
        let s = scan(&bytes, LogIndex(10), Term(1), None, 0, false);
        assert_eq!(s.offsets.len(), 3);
        assert_eq!(s.term_changes, vec![(LogIndex(10), Term(1)), (LogIndex(12), Term(2))]);
        assert!(matches!(s.stop, Some(Stop::Invalid { error: RecordError::Zero, .. })));
        let s = scan(&bytes, LogIndex(10), Term(1), Some(LogIndex(11)), 0, false);
        assert_eq!(s.offsets.len(), 2);
        assert_eq!(s.stop, None);
    }

    /// The gap before a pipelined batch (zeros to the next block boundary, the expected index
    /// there) is stepped over, whatever its length; a gap with a non-zero byte, or a record of
    /// another index at the boundary, ends the scan.
    #[test]
    fn scan_steps_over_the_gap_before_a_pipelined_batch() {
        for records_before in [1usize, 9, 10] {
            let size = record_size_bytes(300);
            let mut bytes = vec![0u8; SEGMENT_HEADER_BYTES + 3 * 4096];
            let put = |bytes: &mut Vec<u8>, at: usize, k: u64| {
                encode_record(
                    &mut bytes[at..at + size],
                    LogIndex(10 + k),
                    Term(1),
                    EntryKind::Normal,
                    0,
                    &[7u8; 300],
                );
            };
            let mut at = SEGMENT_HEADER_BYTES;
            for k in 0..records_before as u64 {
                put(&mut bytes, at, k);
                at += size;
            }
            // 1, 9 and 10 records of 336 bytes leave gaps of 3760, 1072 and 736 bytes.
            let boundary = at.next_multiple_of(4096);
            let gap = boundary - at;
            put(&mut bytes, boundary, records_before as u64);
            put(&mut bytes, boundary + size, records_before as u64 + 1);
            let s = scan(&bytes, LogIndex(10), Term(1), None, 0, false);
            assert_eq!(s.offsets.len(), records_before + 2, "gap of {gap} bytes");
            assert_eq!(s.offsets[records_before] as usize, boundary);
            assert_eq!(s.end_offset, boundary + 2 * size);
            // A non-zero byte in the gap: not a gap, the scan stops there.
            let mut dirty = bytes.clone();
            dirty[boundary - 1] = 1;
            let s = scan(&dirty, LogIndex(10), Term(1), None, 0, false);
            assert_eq!(s.offsets.len(), records_before);
            assert!(matches!(s.stop, Some(Stop::Invalid { offset, .. }) if offset == at));
            // The record at the boundary is not the one due: the scan stops at the gap.
            let mut skip = bytes.clone();
            put(&mut skip, boundary, records_before as u64 + 1);
            let s = scan(&skip, LogIndex(10), Term(1), None, 0, false);
            assert_eq!(s.offsets.len(), records_before);
        }
        // A gap shorter than a record header (24 bytes): the bytes there do not decode as
        // zeros, but the gap is still recognized.
        let payload = vec![5u8; 4096 - 24 - RECORD_HEADER_BYTES];
        let size = record_size_bytes(payload.len());
        let mut bytes = vec![0u8; SEGMENT_HEADER_BYTES + 2 * 4096];
        encode_record(
            &mut bytes[SEGMENT_HEADER_BYTES..SEGMENT_HEADER_BYTES + size],
            LogIndex(10),
            Term(1),
            EntryKind::Normal,
            0,
            &payload,
        );
        let boundary = SEGMENT_HEADER_BYTES + 4096;
        assert_eq!(boundary - (SEGMENT_HEADER_BYTES + size), 24);
        encode_record(
            &mut bytes[boundary..boundary + record_size_bytes(5)],
            LogIndex(11),
            Term(1),
            EntryKind::Normal,
            1,
            b"abcde",
        );
        let s = scan(&bytes, LogIndex(10), Term(1), None, 0, false);
        assert_eq!(s.offsets.len(), 2);
    }

    #[test]
    fn falling_terms_and_wrong_indexes_are_inconsistent() {
        let bytes = segment_bytes(&[3, 2]);
        let s = scan(&bytes, LogIndex(10), Term(1), None, 0, false);
        assert!(matches!(s.stop, Some(Stop::Inconsistent { .. })));
        let s = scan(&bytes, LogIndex(9), Term(1), None, 0, false);
        assert!(matches!(s.stop, Some(Stop::Inconsistent { .. })));
    }

    /// In a recycled segment, a valid record of an index below the segment's first one (the
    /// file's earlier use) ends the scan as invalid, where a fresh segment calls it corruption;
    /// a record of a later index out of place stays corruption in both.
    #[test]
    fn a_stale_record_ends_a_recycled_segment_and_is_corruption_in_a_fresh_one() {
        let mut bytes = segment_bytes(&[1, 1, 1]);
        // The third record becomes one of index 3: what an earlier use of the file left there.
        let at = SEGMENT_HEADER_BYTES + 2 * record_size_bytes(5);
        encode_record(
            &mut bytes[at..at + record_size_bytes(5)],
            LogIndex(3),
            Term(1),
            EntryKind::Normal,
            0,
            b"abcde",
        );
        let s = scan(&bytes, LogIndex(10), Term(1), None, 0, true);
        assert_eq!(s.offsets.len(), 2);
        assert_eq!(s.end_offset, at);
        assert_eq!(s.stop, Some(Stop::Invalid { offset: at, error: RecordError::Stale(3) }));
        let s = scan(&bytes, LogIndex(10), Term(1), None, 0, false);
        assert!(matches!(s.stop, Some(Stop::Inconsistent { offset, .. }) if offset == at));
        // The records of this use after it are found; the stale one is not.
        assert_eq!(records_end_after(&bytes, SEGMENT_HEADER_BYTES, LogIndex(9), 0), at);
        assert_eq!(records_end_after(&bytes, at, LogIndex(9), 0), at);
        let mut out_of_place = segment_bytes(&[1, 1, 1, 1]);
        let third = SEGMENT_HEADER_BYTES + 2 * record_size_bytes(5);
        let fourth = third + record_size_bytes(5);
        out_of_place.copy_within(fourth..fourth + record_size_bytes(5), third);
        let s = scan(&out_of_place, LogIndex(10), Term(1), None, 0, true);
        assert!(matches!(s.stop, Some(Stop::Inconsistent { offset, .. }) if offset == third));
    }

    /// A truncation that cut only the last record leaves it right where the live records end:
    /// the highest index after them counts it, as it counts any record further on.
    #[test]
    fn the_record_right_after_the_live_ones_counts_for_the_highest_index_after_them() {
        let bytes = segment_bytes(&[1, 1, 1]);
        let live_end = SEGMENT_HEADER_BYTES + 2 * record_size_bytes(5);
        assert_eq!(max_index_after(&bytes, live_end, LogIndex(11), 0), Some(LogIndex(12)));
        let one_live = SEGMENT_HEADER_BYTES + record_size_bytes(5);
        assert_eq!(max_index_after(&bytes, one_live, LogIndex(10), 0), Some(LogIndex(12)));
        let end = SEGMENT_HEADER_BYTES + 3 * record_size_bytes(5);
        assert_eq!(max_index_after(&bytes, end, LogIndex(12), 0), None);
        // Records of indexes not past `after` do not count, wherever they are.
        assert_eq!(max_index_after(&bytes, live_end, LogIndex(12), 0), None);
    }

    #[test]
    fn finds_a_valid_record_behind_a_bad_one() {
        let mut bytes = segment_bytes(&[1, 1, 1]);
        bytes[SEGMENT_HEADER_BYTES + 36] ^= 1;
        let s = scan(&bytes, LogIndex(10), Term(1), None, 0, false);
        let Some(Stop::Invalid { offset, .. }) = s.stop else { panic!("expected a stop") };
        assert_eq!(
            find_record_after(&bytes, offset, LogIndex(9), 0).map(|f| f.1.index),
            Some(LogIndex(11))
        );
        assert_eq!(
            nonzero_end(&bytes, offset),
            SEGMENT_HEADER_BYTES + 3 * record_size_bytes(5) - 3
        );
    }
}
