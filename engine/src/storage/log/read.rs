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
use crate::storage::format::{decode_record_seeded, RECORD_HEADER_BYTES};
use crate::storage::segment::Segment;
use bytes::{Bytes, BytesMut};
use raftwal_wire::types::{Entry, LogIndex};

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
    fn read_segment(
        &self,
        seg: &Segment,
        from: LogIndex,
        stop: LogIndex,
        max_bytes: usize,
        bytes: &mut usize,
        out: &mut Vec<Entry>,
    ) -> Result<(), ReadError> {
        let last = seg.last_index().min(stop.prev());
        let mut to = from;
        let mut payload = 0usize;
        // Choose the run first, from the offset table alone: record sizes bound payload sizes.
        while to <= last {
            let size = (seg.end_of(to) - seg.offset_of(to)) as usize - RECORD_HEADER_BYTES;
            if !(out.is_empty() && to == from) && *bytes + payload + size > max_bytes {
                break;
            }
            payload += size;
            to = to.next();
        }
        if to == from {
            return Ok(());
        }
        let (start, end) = (seg.offset_of(from), seg.end_of(to.prev()));
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
        let mut index = from;
        while index < to {
            let at = (seg.offset_of(index) - start) as usize;
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
            index = index.next();
        }
        Ok(())
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
fn read_fully(
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
