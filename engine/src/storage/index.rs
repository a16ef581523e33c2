//! The index file of a sealed segment: what recovery would learn by scanning the segment's
//! records (their offsets, where the term changes, where the records end), written when the
//! segment is sealed so that opening a log need not read every stored byte.
//!
//! Owns: the byte layout of an index file (docs/format.md, "Segment index files"). It is pure:
//! no file, no disk. Whether an index may stand for its segment is decided by recovery
//! (`log/open.rs`), which checks it against the segment's header and records.
//!
//! Invariants of a decoded [`SegmentIndex`]:
//! 1. Its checksum held, and its length is exactly what its counts say.
//! 2. Nothing else is trusted: offsets and terms are only claims until recovery checks them.
//! 3. Decoding never panics and never allocates more than the bytes it was given justify.

use crate::storage::format::{SegmentId, SEGMENT_HEADER_FIELDS_BYTES};
use raftwal_wire::types::{LogIndex, Term};

/// The magic number at the start of every index file.
pub(crate) const INDEX_MAGIC: [u8; 8] = *b"RAFTWALI";
/// The index format version this build writes and reads.
pub(crate) const INDEX_VERSION: u32 = 1;
/// Bytes of the segment header copied into the index (the segment header's fields and
/// checksum; docs/format.md): the index belongs to the segment whose first bytes equal them.
pub(crate) const INDEX_SEGMENT_HEADER_BYTES: usize = SEGMENT_HEADER_FIELDS_BYTES;
/// Bytes before the term changes: magic, version, reserved, the segment header's bytes, the
/// record count, the term change count, the end offset and the highest index written.
const FIXED_BYTES: usize = 8 + 4 + 4 + INDEX_SEGMENT_HEADER_BYTES + 4 + 4 + 8 + 8;
/// Bytes of one term change: (index, term).
const TERM_CHANGE_BYTES: usize = 16;
/// Bytes of the checksum at the end.
const CRC_BYTES: usize = 4;

/// What an index file says about its segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentIndex {
    /// The first [`INDEX_SEGMENT_HEADER_BYTES`] of the segment file when it was sealed.
    pub(crate) segment_header: [u8; INDEX_SEGMENT_HEADER_BYTES],
    /// The offset after the last record.
    pub(crate) end_offset: u64,
    /// The highest index whose record the segment file may hold, live or not (see
    /// `Segment::written_max`).
    pub(crate) written_max: LogIndex,
    /// (index, term) where the term changes, starting with the first record.
    pub(crate) term_changes: Vec<(LogIndex, Term)>,
    /// The offset of each record, from the segment's first index on.
    pub(crate) offsets: Vec<u32>,
}

impl SegmentId {
    /// The name of this segment's index file: the first index, zero-padded, and `.idx`.
    pub fn index_file_name(self) -> String {
        format!("{:020}.idx", self.0.get())
    }

    /// Parses a file name made by [`SegmentId::index_file_name`].
    pub fn parse_index_file_name(name: &str) -> Option<SegmentId> {
        let digits = name.strip_suffix(".idx")?;
        if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<u64>().ok().map(|v| SegmentId(LogIndex(v)))
    }
}

impl SegmentIndex {
    /// Where the record offsets start in the encoded file.
    pub(crate) fn offsets_at(&self) -> u64 {
        (FIXED_BYTES + self.term_changes.len() * TERM_CHANGE_BYTES) as u64
    }

    /// The encoded file, checksum last.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let len = FIXED_BYTES
            + self.term_changes.len() * TERM_CHANGE_BYTES
            + self.offsets.len() * 4
            + CRC_BYTES;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&INDEX_MAGIC);
        out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.segment_header);
        out.extend_from_slice(&(self.offsets.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.term_changes.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.end_offset.to_le_bytes());
        out.extend_from_slice(&self.written_max.get().to_le_bytes());
        for (index, term) in &self.term_changes {
            out.extend_from_slice(&index.get().to_le_bytes());
            out.extend_from_slice(&term.get().to_le_bytes());
        }
        for offset in &self.offsets {
            out.extend_from_slice(&offset.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(out.len(), len);
        out
    }

    /// Decodes an index file; an error says why it cannot be used (recovery then scans the
    /// segment instead).
    pub(crate) fn decode(bytes: &[u8]) -> Result<SegmentIndex, String> {
        if bytes.len() < FIXED_BYTES + CRC_BYTES {
            return Err(format!("{} bytes, shorter than an index", bytes.len()));
        }
        if bytes[0..8] != INDEX_MAGIC {
            return Err("bad magic: not a raftwal segment index".to_owned());
        }
        let (body, crc) = bytes.split_at(bytes.len() - CRC_BYTES);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("four bytes")) {
            return Err("checksum mismatch".to_owned());
        }
        let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4"));
        let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8"));
        let version = u32_at(8);
        if version != INDEX_VERSION {
            return Err(format!("unsupported index version {version}"));
        }
        let mut segment_header = [0u8; INDEX_SEGMENT_HEADER_BYTES];
        segment_header.copy_from_slice(&body[16..16 + INDEX_SEGMENT_HEADER_BYTES]);
        let at = 16 + INDEX_SEGMENT_HEADER_BYTES;
        let records = u32_at(at) as usize;
        let changes = u32_at(at + 4) as usize;
        let end_offset = u64_at(at + 8);
        let written_max = LogIndex(u64_at(at + 16));
        let expected = changes
            .checked_mul(TERM_CHANGE_BYTES)
            .and_then(|c| records.checked_mul(4).and_then(|r| r.checked_add(c)))
            .and_then(|n| n.checked_add(FIXED_BYTES));
        if expected != Some(body.len()) {
            return Err(format!(
                "{} bytes, but {records} records and {changes} term changes take {}",
                bytes.len(),
                expected.map_or_else(|| "more".to_owned(), |n| (n + CRC_BYTES).to_string())
            ));
        }
        let mut term_changes = Vec::with_capacity(changes);
        let mut at = FIXED_BYTES;
        for _ in 0..changes {
            term_changes.push((LogIndex(u64_at(at)), Term(u64_at(at + 8))));
            at += TERM_CHANGE_BYTES;
        }
        let offsets =
            body[at..].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        Ok(SegmentIndex {
            segment_header,
            end_offset,
            written_max,
            term_changes,
            offsets: offsets.collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentIndex {
        SegmentIndex {
            segment_header: [7; INDEX_SEGMENT_HEADER_BYTES],
            end_offset: 9000,
            written_max: LogIndex(14),
            term_changes: vec![(LogIndex(10), Term(2)), (LogIndex(12), Term(3))],
            offsets: vec![4096, 4200, 4400, 8192],
        }
    }

    #[test]
    fn round_trips() {
        let index = sample();
        assert_eq!(SegmentIndex::decode(&index.encode()), Ok(index));
        let empty = SegmentIndex { term_changes: vec![], offsets: vec![], ..sample() };
        assert_eq!(SegmentIndex::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn refuses_every_damage() {
        let bytes = sample().encode();
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[at] ^= 1 << bit;
                assert!(SegmentIndex::decode(&bad).is_err(), "flip at {at} bit {bit} accepted");
            }
        }
        for len in 0..bytes.len() {
            assert!(SegmentIndex::decode(&bytes[..len]).is_err(), "cut at {len} accepted");
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 4]);
        assert!(SegmentIndex::decode(&longer).is_err());
        assert!(SegmentIndex::decode(&[0; 4096]).is_err(), "zeros are no index");
    }

    #[test]
    fn counts_that_disagree_with_the_length_are_refused_without_allocating() {
        let mut bytes = sample().encode();
        let at = 16 + INDEX_SEGMENT_HEADER_BYTES;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        bytes[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        let body = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        let err = SegmentIndex::decode(&bytes).unwrap_err();
        assert!(err.contains("records"), "{err}");
    }

    #[test]
    fn file_names() {
        let id = SegmentId(LogIndex(42));
        assert_eq!(id.index_file_name(), "00000000000000000042.idx");
        assert_eq!(SegmentId::parse_index_file_name(&id.index_file_name()), Some(id));
        assert_eq!(SegmentId::parse_index_file_name("00000000000000000042.seg"), None);
        assert_eq!(SegmentId::parse_index_file_name("42.idx"), None);
    }
}
