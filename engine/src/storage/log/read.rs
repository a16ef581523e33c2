//! The read path of [`LogStore`]: entries by index, as `Bytes`.
//!
//! Owns: choosing where an entry's bytes come from: the in-memory tail (recent and not yet
//! durable entries, no copy), a sealed segment's map (no copy), or, for the active segment and
//! sealed segments no longer mapped (`LogOptions::sealed_segments_mapped_max`), the file (one
//! `pread` for a whole run of entries; a sealed segment's file is opened for the read). Every record read from a segment has its checksum
//! and index checked again: bytes from a disk are never trusted.

use super::LogStore;
use crate::storage::disk::{Disk, FileId, OpenOptions};
use crate::storage::error::{Corruption, ReadError};
use crate::storage::format::{decode_record_seeded, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use crate::storage::segment::Segment;
use bytes::{Bytes, BytesMut};
use raftwal_wire::types::{Entry, LogIndex};

/// The most record offsets a read takes from an index file at once (16 KiB).
const OFFSETS_READ_MAX: usize = 4096;

impl<D: Disk> LogStore<D> {
    /// Reads entries from `from` on, up to `max_bytes` of payload (always at least one entry
    /// when `from <= last_index`). Returns an empty list when `from == last_index + 1`.
    pub fn read(&self, from: LogIndex, max_bytes: usize) -> Result<Vec<Entry>, ReadError> {
        if from < self.first_index() {
            return Err(ReadError::Compacted { index: from, first_index: self.first_index() });
        }
        if from > self.last_index.next() {
            return Err(ReadError::BeyondEnd { index: from, last_index: self.last_index });
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let tail_start = self.tail.front().map_or(self.last_index.next(), |e| e.index);
        let mut next = from;
        while next <= self.last_index && next < tail_start {
            let seg = self.segment_of(next);
            let before = out.len();
            self.read_segment(seg, next, tail_start, max_bytes, &mut bytes, &mut out)?;
            next = next.plus((out.len() - before) as u64);
            if out.len() == before || bytes >= max_bytes {
                return Ok(out);
            }
        }
        for e in self.tail.range(next.distance_from(tail_start) as usize..) {
            if !out.is_empty() && bytes + e.data.len() > max_bytes {
                break;
            }
            bytes += e.data.len();
            out.push(e.clone());
        }
        Ok(out)
    }

    fn segment_of(&self, index: LogIndex) -> &Segment {
        let at = self.segments.partition_point(|s| s.first_index() <= index);
        &self.segments[at - 1]
    }

    /// Appends entries of `seg` from `from` (below `stop`) to `out` while they fit `max_bytes`.
    /// A segment whose offsets are not in memory gives at most [`OFFSETS_READ_MAX`] entries
    /// per call (the offsets it reads from the index file at once).
    fn read_segment(
        &self,
        seg: &Segment,
        from: LogIndex,
        stop: LogIndex,
        max_bytes: usize,
        bytes: &mut usize,
        out: &mut Vec<Entry>,
    ) -> Result<(), ReadError> {
        let k0 = (from.get() - seg.first_index().get()) as usize;
        // `view[j]` is the offset of the record of `from + j`; the record's end is the next
        // one's offset, or the segment's end after its last record.
        let loaded;
        let view: &[u32] = match seg.unloaded {
            None => &seg.offsets[k0..],
            Some(count) => {
                loaded = self.offsets_from_index(seg, k0, count)?;
                &loaded
            }
        };
        let available = match seg.unloaded {
            None => view.len(),
            Some(count) => (count - k0).min(OFFSETS_READ_MAX),
        };
        let end_of = |j: usize| view.get(j + 1).map_or(seg.end_offset, |&o| u64::from(o));
        let last = seg.last_index().min(stop.prev()).min(from.plus(available as u64 - 1));
        let mut to = from;
        let mut payload = 0usize;
        // Choose the run first, from the offset table alone: record sizes bound payload sizes.
        while to <= last {
            let j = (to.get() - from.get()) as usize;
            let size = (end_of(j) - u64::from(view[j])) as usize - RECORD_HEADER_BYTES;
            if !(out.is_empty() && to == from) && *bytes + payload + size > max_bytes {
                break;
            }
            payload += size;
            to = to.next();
        }
        if to == from {
            return Ok(());
        }
        let run = (to.get() - from.get()) as usize;
        let (start, end) = (u64::from(view[0]), end_of(run - 1));
        let data = match (&seg.map, seg.file) {
            (Some(map), _) => map.slice(start as usize..end as usize),
            (None, open) => {
                // The active segment's open file, or a sealed segment no longer mapped
                // (`LogOptions::sealed_segments_mapped_max`): opened for this read.
                let io = |source| ReadError::Io { segment: seg.id, source };
                let file = match open {
                    Some(file) => file,
                    None => {
                        let options = OpenOptions { create_new: false, direct: false };
                        self.disk.open(&seg.path(&self.dir), options).map_err(io)?
                    }
                };
                let mut buf = BytesMut::zeroed((end - start) as usize);
                let read = read_fully(&*self.disk, file, start, &mut buf);
                if open.is_none() {
                    self.disk.close(file);
                }
                let n = read.map_err(io)?;
                if n != buf.len() {
                    return Err(self.corrupt(
                        seg,
                        start,
                        from,
                        "segment shorter than its index says",
                    ));
                }
                buf.freeze()
            }
        };
        for (j, &offset) in view[..run].iter().enumerate() {
            let index = from.plus(j as u64);
            let at = (u64::from(offset) - start) as usize;
            let header = decode_record_seeded(&data[at..], seg.seed)
                .map_err(|e| self.corrupt(seg, start + at as u64, index, &e.to_string()))?;
            if header.index != index {
                return Err(self.corrupt(
                    seg,
                    start + at as u64,
                    index,
                    "record holds another index",
                ));
            }
            let body = at + RECORD_HEADER_BYTES;
            let payload: Bytes = data.slice(body..body + header.payload_bytes as usize);
            *bytes += payload.len();
            out.push(Entry { index, term: header.term, kind: header.kind, data: payload });
        }
        Ok(())
    }

    /// The offsets of records `k0..` of `seg` (of `count`), read from its index file: at most
    /// [`OFFSETS_READ_MAX`], and the next record's offset after them if there is one. Checked
    /// as recovery checks an index (they follow the header, grow by at least a record header,
    /// and end inside the records), so the read path can trust their arithmetic; their records'
    /// checksums are checked as they are read.
    fn offsets_from_index(
        &self,
        seg: &Segment,
        k0: usize,
        count: usize,
    ) -> Result<Vec<u32>, ReadError> {
        let at = seg.index_at.expect("an unloaded segment's index file lists its offsets");
        let n = (count - k0).min(OFFSETS_READ_MAX);
        let want = n + usize::from(k0 + n < count);
        let path = self.dir.join(seg.id.index_file_name());
        let io = |source| ReadError::Io { segment: seg.id, source };
        let file =
            self.disk.open(&path, OpenOptions { create_new: false, direct: false }).map_err(io)?;
        let mut buf = vec![0u8; want * 4];
        let read = read_fully(&*self.disk, file, at + 4 * k0 as u64, &mut buf);
        self.disk.close(file);
        let bad = |reason: String| {
            ReadError::Corrupt(Corruption {
                file: path.clone(),
                offset: at + 4 * k0 as u64,
                index: Some(seg.first_index().plus(k0 as u64)),
                reason,
            })
        };
        if read.map_err(io)? != buf.len() {
            return Err(bad("the index file is shorter than its segment's records".to_owned()));
        }
        let offsets: Vec<u32> =
            buf.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let first_ok = k0 > 0 || offsets[0] as usize == SEGMENT_HEADER_BYTES;
        let ordered =
            offsets.windows(2).all(|w| w[1] >= w[0].saturating_add(RECORD_HEADER_BYTES as u32));
        let starts_ok = offsets[0] as usize >= SEGMENT_HEADER_BYTES;
        let last = u64::from(offsets[offsets.len() - 1]);
        let end_ok = if want > n {
            last <= seg.end_offset
        } else {
            last + RECORD_HEADER_BYTES as u64 <= seg.end_offset
        };
        if !(first_ok && ordered && starts_ok && end_ok) {
            return Err(bad("the index file's offsets do not fit its segment".to_owned()));
        }
        Ok(offsets)
    }

    fn corrupt(&self, seg: &Segment, offset: u64, index: LogIndex, reason: &str) -> ReadError {
        ReadError::Corrupt(Corruption {
            file: seg.path(&self.dir),
            offset,
            index: Some(index),
            reason: reason.to_owned(),
        })
    }
}

/// Reads into `buf` from `offset` until it is full or the file ends; the bytes read.
pub(super) fn read_fully(
    disk: &impl Disk,
    file: FileId,
    offset: u64,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = disk.read_at(file, offset + got as u64, &mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}
