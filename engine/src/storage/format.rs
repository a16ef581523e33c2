//! The on-disk byte layout of segments and records (docs/format.md describes it for people).
//!
//! Owns: encoding and decoding of the segment header and of one record, the CRC rules, the
//! alignment constants. It is pure: no file, no disk, no clock.
//!
//! Invariants:
//! 1. A record starts at an offset that is a multiple of [`RECORD_ALIGN`] and occupies
//!    [`record_size_bytes`] of its payload length.
//! 2. A record's CRC covers every header byte after the CRC field and the payload, so a flipped
//!    bit anywhere in the record is detected.
//! 3. Decoding never panics and never trusts a length field beyond the bytes it was given.

use raftwal_wire::types::{ClusterId, EntryKind, LogId, LogIndex, Term};
use std::fmt;

/// The identity of a segment: the index of its first entry (its file is named after it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub LogIndex);

impl SegmentId {
    /// The file name of this segment: the first index, zero-padded so names sort like indexes.
    pub fn file_name(self) -> String {
        format!("{:020}.seg", self.0.get())
    }

    /// Parses a file name made by [`SegmentId::file_name`]; `None` for any other name.
    pub fn parse_file_name(name: &str) -> Option<SegmentId> {
        parse_digits(name.strip_suffix(".seg")?)
    }

    /// The name a reset gives a new base segment while segments of the old log, all of them
    /// starting after it, are still in place (`LogStore::reset_to`, docs/format.md "Reset"):
    /// the first index, zero-padded, and `.base`. Recovery renames it to
    /// [`SegmentId::file_name`] if no segment is left, and removes it otherwise.
    pub fn pending_base_file_name(self) -> String {
        format!("{:020}.base", self.0.get())
    }

    /// Parses a file name made by [`SegmentId::pending_base_file_name`].
    pub fn parse_pending_base_file_name(name: &str) -> Option<SegmentId> {
        parse_digits(name.strip_suffix(".base")?)
    }
}

/// Twenty decimal digits as a segment id.
fn parse_digits(digits: &str) -> Option<SegmentId> {
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok().map(|v| SegmentId(LogIndex(v)))
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file_name())
    }
}

/// The block size that O_DIRECT writes are aligned to, and the size of the segment header block.
pub const BLOCK_SIZE_BYTES: usize = 4096;
/// The sector size: the unit the media is assumed to write atomically (docs/format.md).
pub const SECTOR_SIZE_BYTES: usize = 512;
/// Records start at multiples of this many bytes.
pub const RECORD_ALIGN: usize = 8;
/// Bytes of a record header.
pub const RECORD_HEADER_BYTES: usize = 32;
/// Bytes of the segment header block; records start right after it.
pub const SEGMENT_HEADER_BYTES: usize = BLOCK_SIZE_BYTES;
/// The magic number at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RAFTWALS";
/// The newest segment format version this build writes and reads. Version 1 is a segment made
/// from a new file; version 2 adds the flags field, written when a flag is set: for a recycled
/// file (its bytes after the records may hold records of the file's earlier use) or a base
/// segment (a reset's new start). A segment with no flag is still written as version 1.
pub const SEGMENT_VERSION: u32 = 2;
/// The oldest segment format version this build reads.
pub const SEGMENT_VERSION_MIN: u32 = 1;
/// Header flag (version 2): the file was recycled from a compacted segment, so records of its
/// earlier use (all of indexes below this segment's first index) may follow the last record.
pub const SEGMENT_FLAG_RECYCLED: u32 = 1;
/// Header flag (version 2): a base segment, written by `LogStore::reset_to`. Segments with a
/// smaller first index are not part of the log: recovery starts the log at the base segment
/// with the highest first index and removes the segments before it. A build that knows only
/// [`SEGMENT_FLAG_RECYCLED`] refuses the header (`unknown segment header flags`) rather than
/// read the old segments before it as part of the log.
pub const SEGMENT_FLAG_BASE: u32 = 2;
/// Every flag this build knows.
const SEGMENT_FLAGS_KNOWN: u32 = SEGMENT_FLAG_RECYCLED | SEGMENT_FLAG_BASE;
/// The largest payload a record may carry (the length field is 32 bits, and the whole record
/// must fit in one O_DIRECT batch buffer of a reasonable size).
pub const PAYLOAD_BYTES_MAX: usize = 64 << 20;

const _: () = assert!(RECORD_HEADER_BYTES.is_multiple_of(RECORD_ALIGN));
const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(BLOCK_SIZE_BYTES));
const _: () = assert!(BLOCK_SIZE_BYTES.is_multiple_of(SECTOR_SIZE_BYTES));
const _: () = assert!(SEGMENT_HEADER_FIELDS_BYTES <= SECTOR_SIZE_BYTES);

/// Bytes of the meaningful part of the segment header (the rest of the block is zero).
pub(crate) const SEGMENT_HEADER_FIELDS_BYTES: usize = 56;

/// Rounds `n` up to a multiple of `align` (a power of two).
#[inline]
pub const fn align_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

/// Rounds `n` down to a multiple of `align` (a power of two).
#[inline]
pub const fn align_down(n: usize, align: usize) -> usize {
    n & !(align - 1)
}

/// Bytes a record with `payload_bytes` of payload occupies, padding included.
#[inline]
pub const fn record_size_bytes(payload_bytes: usize) -> usize {
    align_up(RECORD_HEADER_BYTES + payload_bytes, RECORD_ALIGN)
}

/// The fields of a segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The index of the segment's first entry; equals the index in the file name.
    pub first_index: LogIndex,
    /// The term of the entry just before `first_index` (0 before index 1). It lets the log
    /// answer `term(first_index - 1)` after the segments before it were compacted away.
    pub prev_term: Term,
    /// The cluster the log belongs to.
    pub cluster_id: ClusterId,
    /// Which log of the cluster this is.
    pub log_id: LogId,
    /// The file was recycled from a compacted segment of this log: its bytes after the last
    /// record may hold records of its earlier use, every one of an index below `first_index`
    /// (written as version 2 with [`SEGMENT_FLAG_RECYCLED`]; a fresh segment is version 1).
    pub recycled: bool,
    /// A base segment (a reset's new start): segments with a smaller first index are not part
    /// of the log (written as version 2 with [`SEGMENT_FLAG_BASE`]).
    pub base: bool,
}

/// Eight magic bytes as `0x` and hexadecimal, with their text when they are printable ASCII.
fn magic_text(bytes: &[u8; 8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("0x{hex} ({:?})", String::from_utf8_lossy(bytes))
    } else {
        format!("0x{hex}")
    }
}

/// Why a segment header is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer bytes than a header: the file is empty or was cut short.
    #[error("segment header truncated: {0} bytes, need {SEGMENT_HEADER_BYTES}")]
    Truncated(usize),
    /// The file does not start with the segment magic: not a raftwal segment.
    #[error("bad magic {}: not a raftwal segment", magic_text(.0))]
    BadMagic([u8; 8]),
    /// Written by a newer (or unknown) format version.
    #[error(
        "unsupported segment format version {0} (this build reads {SEGMENT_VERSION_MIN} to \
         {SEGMENT_VERSION})"
    )]
    UnsupportedVersion(u32),
    /// A version 2 header with a flag this build does not know.
    #[error("unknown segment header flags {0:#x}")]
    UnknownFlags(u32),
    /// The header's checksum does not match its bytes.
    #[error("segment header checksum mismatch")]
    BadChecksum,
}

impl SegmentHeader {
    /// Writes the header into the first [`SEGMENT_HEADER_BYTES`] of `out` (the rest is zeroed):
    /// version 1 (checksum at byte 48) when no flag is set, version 2 (flags at byte 48,
    /// checksum at byte 52) for a recycled or base segment.
    pub fn encode(&self, out: &mut [u8]) {
        assert!(out.len() >= SEGMENT_HEADER_BYTES, "segment header buffer too small");
        out[..SEGMENT_HEADER_BYTES].fill(0);
        let (fields, crc_at) = self.fields();
        out[..crc_at].copy_from_slice(&fields[..crc_at]);
        let crc = crc32fast::hash(&out[0..crc_at]);
        out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// The header's bytes before its checksum, and where the checksum goes.
    fn fields(&self) -> ([u8; 52], usize) {
        let mut out = [0u8; 52];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        let flags = self.flags();
        let version = if flags != 0 { 2u32 } else { 1 };
        out[8..12].copy_from_slice(&version.to_le_bytes());
        out[12..16].copy_from_slice(&(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.first_index.get().to_le_bytes());
        out[24..32].copy_from_slice(&self.prev_term.get().to_le_bytes());
        out[32..40].copy_from_slice(&self.cluster_id.get().to_le_bytes());
        out[40..48].copy_from_slice(&self.log_id.get().to_le_bytes());
        if flags != 0 {
            out[48..52].copy_from_slice(&flags.to_le_bytes());
            (out, 52)
        } else {
            (out, 48)
        }
    }

    /// The flags field (0 for a version 1 header).
    fn flags(&self) -> u32 {
        let mut flags = 0;
        if self.recycled {
            flags |= SEGMENT_FLAG_RECYCLED;
        }
        if self.base {
            flags |= SEGMENT_FLAG_BASE;
        }
        flags
    }

    /// The initial value of the CRC of every record of this segment: 0 in a fresh segment
    /// (version 1: plain CRC32), and in a recycled one (version 2) the header's own checksum,
    /// so that a record's CRC covers the header's bytes 0..52 followed by the record's. The
    /// bytes after a recycled segment's records are what the file's earlier use wrote there,
    /// payloads included, and a payload may hold bytes that form a valid record of any index
    /// (a copy of another log's or another segment's records, say): checksummed without the
    /// header, they could read as this segment's records. Records of an earlier use, or copied
    /// from any segment with another first index or log, fail this segment's checksum.
    pub fn record_seed(&self) -> u32 {
        if !self.recycled {
            return 0;
        }
        let (fields, crc_at) = self.fields();
        crc32fast::hash(&fields[..crc_at])
    }

    /// Decodes and checks a header from the start of a segment file.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if bytes.len() < SEGMENT_HEADER_BYTES {
            return Err(HeaderError::Truncated(bytes.len()));
        }
        let magic: [u8; 8] = array(&bytes[0..8]);
        if magic != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic(magic));
        }
        let version = u32::from_le_bytes(array(&bytes[8..12]));
        // Version 1 keeps its checksum at byte 48, version 2 at byte 52 (after the flags).
        let sound = |crc_at: usize| {
            crc32fast::hash(&bytes[0..crc_at]) == u32::from_le_bytes(array(&bytes[crc_at..]))
        };
        let (v1, v2) = (sound(48), sound(52));
        // The version is checked after the checksum so that a bit flip in the version field is
        // reported as corruption, not as a file from the future.
        let flags = match version {
            1 if v1 => 0,
            2 if v2 => u32::from_le_bytes(array(&bytes[48..52])),
            1 | 2 => return Err(HeaderError::BadChecksum),
            _ if v1 || v2 => return Err(HeaderError::UnsupportedVersion(version)),
            _ => return Err(HeaderError::BadChecksum),
        };
        if flags & !SEGMENT_FLAGS_KNOWN != 0 {
            return Err(HeaderError::UnknownFlags(flags));
        }
        Ok(SegmentHeader {
            first_index: LogIndex(u64_at(bytes, 16)),
            prev_term: Term(u64_at(bytes, 24)),
            cluster_id: ClusterId(u64_at(bytes, 32)),
            log_id: LogId(u64_at(bytes, 40)),
            recycled: flags & SEGMENT_FLAG_RECYCLED != 0,
            base: flags & SEGMENT_FLAG_BASE != 0,
        })
    }
}

/// The fields of a record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// The entry's index.
    pub index: LogIndex,
    /// The entry's term.
    pub term: Term,
    /// The entry's kind.
    pub kind: EntryKind,
    /// Bytes of payload that follow the header.
    pub payload_bytes: u32,
    /// How many entries before this one start the entries that were not durable when its
    /// batch was submitted: its batch's first entry, or, for a batch submitted while earlier
    /// ones were in flight, the first entry of the oldest of them. Recovery uses it to tell
    /// a torn tail (or a hole left by batches in flight at a crash) from corruption.
    pub batch_offset: u32,
}

impl RecordHeader {
    /// The first index that was not durable when this record's batch was submitted: every
    /// entry before it was durable (and may have been acknowledged) by then.
    pub fn unsynced_from(&self) -> LogIndex {
        LogIndex(self.index.get().saturating_sub(u64::from(self.batch_offset)))
    }
}

/// Why the bytes at some offset are not a valid record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes remain than a record header.
    #[error("record header truncated")]
    HeaderTruncated,
    /// The header and payload bytes are all zero: never written (the end of the log, or a gap).
    #[error("zeroed record header (never written)")]
    Zero,
    /// The length field points past the end of the available bytes.
    #[error("payload length {0} runs past the end of the segment")]
    PayloadTruncated(u32),
    /// The checksum does not match.
    #[error("record checksum mismatch")]
    BadChecksum,
    /// The checksum matches but a field holds a value this version does not know.
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    /// The checksum matches but the reserved bytes are not zero.
    #[error("reserved record bytes are not zero")]
    ReservedNotZero,
    /// The checksum matches but the batch offset points before index 1.
    #[error("batch offset {0} points before the first index")]
    BadBatchOffset(u32),
    /// A valid record of an index below the segment's first index, in a recycled segment: left
    /// by the file's earlier use (never returned by [`decode_record`]; the scan reports it).
    #[error("record of index {0} from the recycled file's earlier use")]
    Stale(u64),
}

impl RecordError {
    /// Whether the record's checksum held (a field then holds a value this build does not
    /// know): such a record was written whole where it lies, by a writer that meant it, never
    /// by a torn write.
    pub fn checksum_held(&self) -> bool {
        matches!(
            self,
            RecordError::UnknownKind(_)
                | RecordError::ReservedNotZero
                | RecordError::BadBatchOffset(_)
        )
    }
}

/// Writes one record (header and payload, padded with zeros) at the start of `out`, which must
/// be exactly [`record_size_bytes`]`(payload.len())` long, as a fresh (version 1) segment holds
/// it: [`encode_record_seeded`] with seed 0.
#[inline]
pub fn encode_record(
    out: &mut [u8],
    index: LogIndex,
    term: Term,
    kind: EntryKind,
    batch_offset: u32,
    payload: &[u8],
) {
    encode_record_seeded(out, index, term, kind, batch_offset, payload, 0);
}

/// [`encode_record`] for a segment whose records' CRC starts from `seed`
/// ([`SegmentHeader::record_seed`]).
#[inline]
pub fn encode_record_seeded(
    out: &mut [u8],
    index: LogIndex,
    term: Term,
    kind: EntryKind,
    batch_offset: u32,
    payload: &[u8],
    seed: u32,
) {
    debug_assert_eq!(out.len(), record_size_bytes(payload.len()));
    let len = u32::try_from(payload.len()).expect("payload size was checked at append");
    out[4..8].copy_from_slice(&len.to_le_bytes());
    out[8..16].copy_from_slice(&index.get().to_le_bytes());
    out[16..24].copy_from_slice(&term.get().to_le_bytes());
    out[24] = kind.as_u8();
    out[25..28].fill(0);
    out[28..32].copy_from_slice(&batch_offset.to_le_bytes());
    let end = RECORD_HEADER_BYTES + payload.len();
    out[RECORD_HEADER_BYTES..end].copy_from_slice(payload);
    out[end..].fill(0);
    let mut hasher = crc32fast::Hasher::new_with_initial(seed);
    hasher.update(&out[4..end]);
    out[0..4].copy_from_slice(&hasher.finalize().to_le_bytes());
}

/// Decodes and checks the record at the start of `bytes` (which may run on past the record),
/// as a fresh (version 1) segment holds it: [`decode_record_seeded`] with seed 0. Returns the
/// header; the payload is `bytes[RECORD_HEADER_BYTES..][..payload_bytes]`.
#[inline]
pub fn decode_record(bytes: &[u8]) -> Result<RecordHeader, RecordError> {
    decode_record_seeded(bytes, 0)
}

/// [`decode_record`] for a segment whose records' CRC starts from `seed`
/// ([`SegmentHeader::record_seed`]).
#[inline]
pub fn decode_record_seeded(bytes: &[u8], seed: u32) -> Result<RecordHeader, RecordError> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err(RecordError::HeaderTruncated);
    }
    let stored_crc = u32::from_le_bytes(array(&bytes[0..4]));
    let payload_bytes = u32::from_le_bytes(array(&bytes[4..8]));
    let end = RECORD_HEADER_BYTES.checked_add(payload_bytes as usize);
    let end = match end {
        Some(end) if end <= bytes.len() && payload_bytes as usize <= PAYLOAD_BYTES_MAX => end,
        _ => {
            if bytes[..RECORD_HEADER_BYTES].iter().all(|&b| b == 0) {
                return Err(RecordError::Zero);
            }
            return Err(RecordError::PayloadTruncated(payload_bytes));
        }
    };
    let mut hasher = crc32fast::Hasher::new_with_initial(seed);
    hasher.update(&bytes[4..end]);
    if hasher.finalize() != stored_crc {
        if stored_crc == 0 && bytes[..end].iter().all(|&b| b == 0) {
            return Err(RecordError::Zero);
        }
        return Err(RecordError::BadChecksum);
    }
    let kind = EntryKind::from_u8(bytes[24]).ok_or(RecordError::UnknownKind(bytes[24]))?;
    if bytes[25..28].iter().any(|&b| b != 0) {
        return Err(RecordError::ReservedNotZero);
    }
    let index = u64_at(bytes, 8);
    let batch_offset = u32::from_le_bytes(array(&bytes[28..32]));
    if u64::from(batch_offset) >= index.max(1) {
        return Err(RecordError::BadBatchOffset(batch_offset));
    }
    Ok(RecordHeader {
        index: LogIndex(index),
        term: Term(u64_at(bytes, 16)),
        kind,
        payload_bytes,
        batch_offset,
    })
}

#[inline]
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

#[inline]
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array(&bytes[at..at + 8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_every_bit_flip_is_detected() {
        let payload = b"hello, raft";
        let mut buf = vec![0u8; record_size_bytes(payload.len())];
        encode_record(&mut buf, LogIndex(7), Term(3), EntryKind::Tagged, 2, payload);
        let h = decode_record(&buf).unwrap();
        assert_eq!(h.index, LogIndex(7));
        assert_eq!(h.term, Term(3));
        assert_eq!(h.kind, EntryKind::Tagged);
        assert_eq!(h.payload_bytes as usize, payload.len());
        assert_eq!(h.unsynced_from(), LogIndex(5));
        for bit in 0..(RECORD_HEADER_BYTES + payload.len()) * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_record(&bad).is_err(), "flip of bit {bit} went unnoticed");
        }
    }

    #[test]
    fn zeroed_bytes_decode_as_zero() {
        assert_eq!(decode_record(&[0u8; 64]), Err(RecordError::Zero));
        assert_eq!(decode_record(&[0u8; 8]), Err(RecordError::HeaderTruncated));
    }

    #[test]
    fn segment_header_round_trip_and_errors() {
        let h = SegmentHeader {
            first_index: LogIndex(42),
            prev_term: Term(5),
            cluster_id: ClusterId(9),
            log_id: LogId(1),
            recycled: false,
            base: false,
        };
        let mut buf = vec![0u8; SEGMENT_HEADER_BYTES];
        h.encode(&mut buf);
        assert_eq!(SegmentHeader::decode(&buf), Ok(h));
        assert_eq!(SegmentHeader::decode(&buf[..100]), Err(HeaderError::Truncated(100)));
        let mut bad = buf.clone();
        bad[0] = b'X';
        assert!(matches!(SegmentHeader::decode(&bad), Err(HeaderError::BadMagic(_))));
        let mut bad = buf.clone();
        bad[20] ^= 1;
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::BadChecksum));
    }

    /// A recycled segment's records are checksummed from its header's checksum: a record of
    /// another segment (a fresh one, or a recycled one with another first index) fails it, and
    /// so does its own record read as a fresh segment's. A fresh segment's records are plain
    /// CRC32, byte for byte what earlier builds wrote.
    #[test]
    fn recycled_segments_checksum_records_from_their_header() {
        let header = |first: u64, recycled: bool| SegmentHeader {
            first_index: LogIndex(first),
            prev_term: Term(2),
            cluster_id: ClusterId(9),
            log_id: LogId(1),
            recycled,
            base: false,
        };
        assert_eq!(header(100, false).record_seed(), 0);
        let (seed, other) = (header(100, true).record_seed(), header(200, true).record_seed());
        assert_ne!(seed, 0);
        assert_ne!(seed, other);
        let mut block = vec![0u8; SEGMENT_HEADER_BYTES];
        header(100, true).encode(&mut block);
        assert_eq!(seed, u32::from_le_bytes(array(&block[52..56])), "the header's checksum");
        let record = |seed: u32| {
            let mut buf = vec![0u8; record_size_bytes(5)];
            encode_record_seeded(
                &mut buf,
                LogIndex(150),
                Term(2),
                EntryKind::Normal,
                0,
                b"abcde",
                seed,
            );
            buf
        };
        assert_eq!(decode_record_seeded(&record(seed), seed).map(|h| h.index), Ok(LogIndex(150)));
        assert_eq!(decode_record_seeded(&record(0), seed), Err(RecordError::BadChecksum));
        assert_eq!(decode_record_seeded(&record(other), seed), Err(RecordError::BadChecksum));
        assert_eq!(decode_record(&record(seed)), Err(RecordError::BadChecksum));
        let mut plain = vec![0u8; record_size_bytes(5)];
        encode_record(&mut plain, LogIndex(150), Term(2), EntryKind::Normal, 0, b"abcde");
        assert_eq!(plain, record(0));
        let crc = crc32fast::hash(&plain[4..RECORD_HEADER_BYTES + 5]);
        assert_eq!(u32::from_le_bytes(array(&plain[0..4])), crc);
    }

    /// The base flag: a version 2 header, alone or with `recycled`; a header without flags is
    /// still version 1, byte for byte; a build that knows only `recycled` refuses it, and an
    /// unknown bit is refused.
    #[test]
    fn base_segment_headers_are_version_2_with_their_flag() {
        let h = |recycled: bool, base: bool| SegmentHeader {
            first_index: LogIndex(42),
            prev_term: Term(5),
            cluster_id: ClusterId(9),
            log_id: LogId(1),
            recycled,
            base,
        };
        let encoded = |h: SegmentHeader| {
            let mut buf = vec![0u8; SEGMENT_HEADER_BYTES];
            h.encode(&mut buf);
            buf
        };
        let plain = encoded(h(false, false));
        assert_eq!(u32::from_le_bytes(array(&plain[8..12])), 1);
        assert_eq!(u32::from_le_bytes(array(&plain[48..52])), crc32fast::hash(&plain[..48]));
        for (recycled, base, flags) in [(false, true, 2u32), (true, true, 3), (true, false, 1)] {
            let buf = encoded(h(recycled, base));
            assert_eq!(u32::from_le_bytes(array(&buf[8..12])), 2);
            assert_eq!(u32::from_le_bytes(array(&buf[48..52])), flags);
            assert_eq!(SegmentHeader::decode(&buf), Ok(h(recycled, base)));
            // What the build before the base flag checked: any flag but `recycled` is refused.
            assert_eq!(flags & !SEGMENT_FLAG_RECYCLED != 0, base);
        }
        // The seed of a recycled segment covers its flags: base or not, records differ.
        assert_ne!(h(true, true).record_seed(), h(true, false).record_seed());
        assert_eq!(h(false, true).record_seed(), 0);
        let mut unknown = encoded(h(false, true));
        unknown[48..52].copy_from_slice(&6u32.to_le_bytes());
        let crc = crc32fast::hash(&unknown[..52]);
        unknown[52..56].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&unknown), Err(HeaderError::UnknownFlags(6)));
    }

    #[test]
    fn segment_names_round_trip() {
        let id = SegmentId(LogIndex(12345));
        assert_eq!(SegmentId::parse_file_name(&id.file_name()), Some(id));
        assert_eq!(SegmentId::parse_file_name("12345.seg"), None);
        assert_eq!(SegmentId::parse_file_name("hard_state"), None);
        assert_eq!(SegmentId::parse_pending_base_file_name(&id.pending_base_file_name()), Some(id));
        assert_eq!(SegmentId::parse_pending_base_file_name(&id.file_name()), None);
        assert_eq!(SegmentId::parse_file_name(&id.pending_base_file_name()), None);
    }
}
