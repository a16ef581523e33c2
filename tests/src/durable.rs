//! [`DurableImage`]: what a simulated node's disk holds durably, read from the disk's own bytes.
//!
//! Owns: an independent reading of one log directory in a [`SimDisk`]'s durable image (its
//! durable name table and the durable bytes of the segment files and of the hard state file),
//! following docs/format.md: the log a crash without a tear would leave, each entry's term and
//! content hash, and the hard state. The checker judges durability against this reading, never
//! against what the log store believes.
//! Must not: change the disk, or use the log store's bookkeeping (it reads bytes only). It uses
//! the storage engine's record and header decoders (pure, unit-tested and fuzzed code) but reads
//! the hard state slots with its own decoder, a second reading of docs/format.md.
//!
//! Reading is incremental, because the checker consults the image after every step: between two
//! refreshes that do not ask for a [`Reread::Full`], the store is assumed only to append records
//! to the last segment and to add segments after it (a batch, a roll-over). The caller asks for a
//! full reading after anything else (a truncation, a crash, a recovery); an incremental refresh
//! still re-reads the last record it had read (the partial block every O_DIRECT batch rewrites)
//! and falls back to a full reading when that record changed.
//!
//! Invariants:
//! 1. `entries[k]` describes the entry of index `first + k`; their terms never decrease, and
//!    `prev_term` is the term of `first - 1`.
//! 2. Each read segment starts right after the previous one's last entry; every segment but
//!    the last holds every index up to the next segment's first index minus one.
//! 3. After a refresh the image equals a full reading of the disk's durable bytes (under the
//!    incremental assumption above).

use crate::checker::entry_hash;
use raftwal::storage::format::{
    decode_record_seeded, record_size_bytes, SegmentHeader, SegmentId, BLOCK_SIZE_BYTES,
    RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use raftwal::storage::{SimDisk, HARD_STATE_FILE};
use raftwal_wire::types::{HardState, LogIndex, NodeId, Term};
use std::fmt;
use std::path::{Path, PathBuf};

/// One durable entry: its term and the hash of its kind and payload ([`entry_hash`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurableEntry {
    /// The entry's term.
    pub term: Term,
    /// [`entry_hash`] of its kind and payload.
    pub hash: u64,
}

/// How much of the disk to read again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reread {
    /// Only what may have changed since the last refresh (nothing, if the disk ran no write or
    /// sync point since), assuming the store only appended.
    IfChanged,
    /// Everything.
    Full,
}

/// The durable image breaks docs/format.md in a way no crash explains: a sealed segment that
/// ends early, a record out of sequence, a corrupt hard state slot, a hard state that went back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageError(pub String);

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How far one durable segment has been read.
#[derive(Clone, Debug)]
struct SegmentRead {
    id: SegmentId,
    path: PathBuf,
    /// The offset after the last record read.
    end_offset: usize,
    /// The offset of the last record read, if any.
    last_record: Option<usize>,
    /// The initial value of its records' CRC (`SegmentHeader::record_seed`).
    seed: u32,
}

/// The durable image of one log directory. See the module documentation.
#[derive(Clone, Debug)]
pub struct DurableImage {
    dir: PathBuf,
    hard_state: HardState,
    first: LogIndex,
    prev_term: Term,
    entries: Vec<DurableEntry>,
    segments: Vec<SegmentRead>,
    /// The disk's point count at the last refresh.
    points_read: Option<u64>,
    /// The disk's count of namespace points (creations, renames, removals, allocations,
    /// directory fsyncs: points that are neither writes nor file fsyncs) when the durable name
    /// table was last listed: while it stands still, the table cannot have changed.
    names_read: Option<u64>,
    hard_state_path: PathBuf,
    /// The durable bytes of the hard state file when last decoded.
    hard_state_bytes: Vec<u8>,
    /// A reset's base segment still under its pending name (`<first index>.base`), which is the
    /// log when no segment is left (recovery renames it into place).
    pending_base: Option<SegmentId>,
}

impl DurableImage {
    /// The image of `dir`, not read yet (empty).
    pub fn new(dir: &Path) -> DurableImage {
        DurableImage {
            dir: dir.to_path_buf(),
            hard_state: HardState::default(),
            first: LogIndex(1),
            prev_term: Term::ZERO,
            entries: Vec::new(),
            segments: Vec::new(),
            points_read: None,
            names_read: None,
            hard_state_path: dir.join(HARD_STATE_FILE),
            hard_state_bytes: Vec::new(),
            pending_base: None,
        }
    }

    /// The durable hard state (the default before the file is durable).
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The first index of the durable log (1 unless compacted or reset).
    pub fn first_index(&self) -> LogIndex {
        self.first
    }

    /// The last durable index (`first - 1` when no entry is durable).
    pub fn last_index(&self) -> LogIndex {
        self.first.prev().plus(self.entries.len() as u64)
    }

    /// The durable entry at `index`, if any.
    pub fn entry(&self, index: LogIndex) -> Option<DurableEntry> {
        let offset = index.get().checked_sub(self.first.get())?;
        self.entries.get(usize::try_from(offset).ok()?).copied()
    }

    /// The term of the durable entry at `index`; for `first - 1`, the term the first segment's
    /// header records (`Term::ZERO` before index 1).
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index.next() == self.first {
            return Some(self.prev_term);
        }
        self.entry(index).map(|entry| entry.term)
    }

    /// Reads the disk's durable image again. Returns the lowest index whose durable entry
    /// vanished or changed since the last refresh, if any (only a full reading can see that).
    pub fn refresh(
        &mut self,
        disk: &SimDisk,
        reread: Reread,
    ) -> Result<Option<LogIndex>, ImageError> {
        let stats = disk.stats();
        if reread == Reread::IfChanged && self.points_read == Some(stats.points) {
            return Ok(None);
        }
        self.points_read = Some(stats.points);
        self.refresh_hard_state(disk, reread)?;
        let namespace_points = stats.points - stats.writes - stats.file_syncs;
        let ids: Vec<SegmentId> =
            if reread == Reread::IfChanged && self.names_read == Some(namespace_points) {
                self.segments.iter().map(|read| read.id).collect()
            } else {
                self.names_read = Some(namespace_points);
                let names = disk.durable_file_names(&self.dir);
                let mut ids: Vec<SegmentId> =
                    names.iter().filter_map(|name| SegmentId::parse_file_name(name)).collect();
                ids.sort();
                self.log_segments(disk, ids, &names)?
            };
        if reread == Reread::IfChanged && self.read_appended(disk, &ids)? {
            return Ok(None);
        }
        let (old_first, old_entries) = (self.first, std::mem::take(&mut self.entries));
        self.first = LogIndex(1);
        self.prev_term = Term::ZERO;
        self.segments.clear();
        for position in 0..ids.len() {
            self.read_segment(disk, &ids, position)?;
        }
        let mut lost = None;
        for (offset, old_entry) in old_entries.iter().enumerate() {
            let index = old_first.plus(offset as u64);
            if index < self.first {
                // Compacted away from the front (or replaced by a log start): the caller
                // judges a moved first index on its own ([`DurableImage::first_index`]).
                continue;
            }
            if self.entry(index) != Some(*old_entry) {
                lost = Some(index);
                break;
            }
        }
        Ok(lost)
    }

    /// The segments that make up the log, as recovery reads them (docs/format.md, "Reset"): from
    /// the base segment with the highest first index on (the segments before it are the log a
    /// reset replaced); with no segment at all, a reset's base segment under its pending name.
    fn log_segments(
        &mut self,
        disk: &SimDisk,
        ids: Vec<SegmentId>,
        names: &[String],
    ) -> Result<Vec<SegmentId>, ImageError> {
        self.pending_base = None;
        if ids.is_empty() {
            let pending =
                names.iter().filter_map(|name| SegmentId::parse_pending_base_file_name(name)).max();
            self.pending_base = pending;
            return Ok(pending.into_iter().collect());
        }
        let mut start = 0;
        for (position, id) in ids.iter().enumerate() {
            let path = self.dir.join(id.file_name());
            let header = disk
                .with_durable_bytes(&path, SegmentHeader::decode)
                .ok_or_else(|| ImageError(format!("{} vanished while being read", path.display())))?
                .map_err(|error| ImageError(format!("durable {}: {error}", path.display())))?;
            if header.base {
                start = position;
            }
        }
        Ok(ids[start..].to_vec())
    }

    /// The incremental reading: continues the last segment and reads segments added after it.
    /// Returns false when the assumption behind it does not hold (a full reading is needed).
    fn read_appended(&mut self, disk: &SimDisk, ids: &[SegmentId]) -> Result<bool, ImageError> {
        let known = self.segments.len();
        if known == 0 || ids.len() < known {
            return Ok(false);
        }
        if self.segments.iter().zip(ids).any(|(read, id)| read.id != *id) {
            return Ok(false);
        }
        let last = known - 1;
        let still_there = disk.with_durable_bytes(&self.segments[last].path, |bytes| {
            self.last_record_unchanged(bytes)
        });
        if still_there != Some(true) {
            return Ok(false);
        }
        if ids[known..].first().is_some_and(|next| next.0.prev() < self.last_index()) {
            // A new segment starts inside what was read: entries were replaced.
            return Ok(false);
        }
        self.continue_segment(disk, ids, last)?;
        for position in known..ids.len() {
            self.read_segment(disk, ids, position)?;
        }
        Ok(true)
    }

    /// Whether the last record read from the last segment still holds the same entry.
    fn last_record_unchanged(&self, bytes: &[u8]) -> bool {
        let Some(read) = self.segments.last() else { return false };
        let Some(at) = read.last_record else { return true };
        let record = bytes.get(at..).unwrap_or_default();
        let Ok(header) = decode_record_seeded(record, read.seed) else { return false };
        let payload = &bytes[at + RECORD_HEADER_BYTES..][..header.payload_bytes as usize];
        let entry = DurableEntry { term: header.term, hash: entry_hash(header.kind, payload) };
        header.index == self.last_index() && self.entries.last() == Some(&entry)
    }

    /// Reads segment `ids[position]` from its start.
    fn read_segment(
        &mut self,
        disk: &SimDisk,
        ids: &[SegmentId],
        position: usize,
    ) -> Result<(), ImageError> {
        let id = ids[position];
        let path = if self.pending_base == Some(id) {
            self.dir.join(id.pending_base_file_name())
        } else {
            self.dir.join(id.file_name())
        };
        let header = disk
            .with_durable_bytes(&path, SegmentHeader::decode)
            .ok_or_else(|| ImageError(format!("{} vanished while being read", path.display())))?
            .map_err(|error| ImageError(format!("durable {}: {error}", path.display())))?;
        if header.first_index != id.0 {
            return Err(ImageError(format!(
                "durable {} says its first index is {}",
                path.display(),
                header.first_index
            )));
        }
        if position == 0 {
            self.first = id.0;
            self.prev_term = header.prev_term;
        } else if id.0 != self.last_index().next() {
            return Err(ImageError(format!(
                "durable segment {} does not follow the durable log, which ends at {}",
                id.0,
                self.last_index()
            )));
        } else if self.term(id.0.prev()) != Some(header.prev_term) {
            return Err(ImageError(format!(
                "durable segment {} records previous term {}, the durable log has {:?}",
                id.0,
                header.prev_term,
                self.term(id.0.prev())
            )));
        }
        self.segments.push(SegmentRead {
            id,
            path,
            end_offset: SEGMENT_HEADER_BYTES,
            last_record: None,
            seed: header.record_seed(),
        });
        self.continue_segment(disk, ids, position)
    }

    /// Reads the records of segment `ids[position]` (already started) that follow what was read,
    /// up to the next segment's first index; checks that a sealed segment reaches it.
    fn continue_segment(
        &mut self,
        disk: &SimDisk,
        ids: &[SegmentId],
        position: usize,
    ) -> Result<(), ImageError> {
        let limit = ids.get(position + 1).map(|next| next.0.prev());
        let (mut end_offset, mut last_record) =
            (self.segments[position].end_offset, self.segments[position].last_record);
        let path = &self.segments[position].path;
        let seed = self.segments[position].seed;
        let (mut entries, mut last_term) = (Vec::new(), self.term(self.last_index()));
        let outcome = disk.with_durable_bytes(path, |bytes| {
            let mut next = self.last_index().next();
            while limit.is_none_or(|limit| next <= limit) {
                // The first invalid record ends the log (zeros, or a torn tail), unless it is
                // the gap before a pipelined batch: zeros up to the next block boundary, where
                // the record of the expected index starts (docs/format.md, "Recovery").
                let header =
                    match decode_record_seeded(bytes.get(end_offset..).unwrap_or_default(), seed) {
                        Ok(header) => header,
                        Err(_) => {
                            let boundary = end_offset.next_multiple_of(BLOCK_SIZE_BYTES);
                            let gap = bytes.get(end_offset..boundary).unwrap_or_default();
                            let after = bytes.get(boundary..).unwrap_or_default();
                            match decode_record_seeded(after, seed) {
                                Ok(h)
                                    if boundary > end_offset
                                        && gap.len() == boundary - end_offset
                                        && gap.iter().all(|&b| b == 0)
                                        && h.index == next
                                        && last_term.is_none_or(|term| h.term >= term) =>
                                {
                                    end_offset = boundary;
                                    h
                                }
                                _ => break,
                            }
                        }
                    };
                if header.index != next || last_term.is_some_and(|term| header.term < term) {
                    return Err(ImageError(format!(
                        "durable {} holds {}/{} at offset {} where index {next} (term at least \
                         {last_term:?}) was expected",
                        path.display(),
                        header.index,
                        header.term,
                        end_offset
                    )));
                }
                let start = end_offset + RECORD_HEADER_BYTES;
                let payload = &bytes[start..start + header.payload_bytes as usize];
                entries.push(DurableEntry {
                    term: header.term,
                    hash: entry_hash(header.kind, payload),
                });
                last_term = Some(header.term);
                last_record = Some(end_offset);
                end_offset += record_size_bytes(header.payload_bytes as usize);
                next = next.next();
            }
            Ok(())
        });
        outcome
            .ok_or_else(|| ImageError(format!("{} vanished while being read", path.display())))??;
        self.entries.extend(entries);
        self.segments[position].end_offset = end_offset;
        self.segments[position].last_record = last_record;
        if let Some(limit) = limit {
            if self.last_index() < limit {
                return Err(ImageError(format!(
                    "sealed durable segment {} ends at {}, but the next one starts at {}",
                    ids[position].0,
                    self.last_index(),
                    limit.next()
                )));
            }
        }
        Ok(())
    }
}

impl DurableImage {
    /// Reads the durable hard state again if its bytes changed; checks that it never goes back.
    fn refresh_hard_state(&mut self, disk: &SimDisk, reread: Reread) -> Result<(), ImageError> {
        let unchanged = disk
            .with_durable_bytes(&self.hard_state_path, |bytes| bytes == self.hard_state_bytes)
            .unwrap_or(self.hard_state_bytes.is_empty());
        if unchanged && reread == Reread::IfChanged {
            return Ok(());
        }
        self.hard_state_bytes =
            disk.with_durable_bytes(&self.hard_state_path, <[u8]>::to_vec).unwrap_or_default();
        let hard_state = read_hard_state(disk, &self.hard_state_path)?;
        let old = self.hard_state;
        if hard_state.term < old.term
            || (hard_state.term == old.term && old.vote.is_some() && hard_state.vote != old.vote)
        {
            return Err(ImageError(format!(
                "the durable hard state went back from {old:?} to {hard_state:?}"
            )));
        }
        self.hard_state = hard_state;
        Ok(())
    }
}

/// Reads the durable hard state file at `path` (docs/format.md, "Hard state file"): the valid
/// slot with the higher sequence number; the default when the file is not durable yet or both
/// slots are zero.
fn read_hard_state(disk: &SimDisk, path: &Path) -> Result<HardState, ImageError> {
    let slots =
        disk.with_durable_bytes(path, |bytes| -> Result<Option<(u64, HardState)>, String> {
            if bytes.len() != 1024 {
                return Err(format!("the durable hard state file has {} bytes", bytes.len()));
            }
            let mut best: Option<(u64, HardState)> = None;
            for slot in bytes.chunks(512) {
                if let Some(found) = decode_slot(slot)? {
                    if best.is_none_or(|(seq, _)| found.0 > seq) {
                        best = Some(found);
                    }
                }
            }
            Ok(best)
        });
    match slots {
        None => Ok(HardState::default()),
        Some(Ok(best)) => Ok(best.map(|(_, hard_state)| hard_state).unwrap_or_default()),
        Some(Err(reason)) => Err(ImageError(format!("durable {}: {reason}", path.display()))),
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// One 512-byte slot: `None` when all zero.
fn decode_slot(slot: &[u8]) -> Result<Option<(u64, HardState)>, String> {
    if slot.iter().all(|byte| *byte == 0) {
        return Ok(None);
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&slot[40..44]);
    if &slot[0..4] != b"RWHS"
        || slot[4..6] != 1u16.to_le_bytes()
        || crc32fast::hash(&slot[0..40]) != u32::from_le_bytes(crc)
        || slot[44..].iter().any(|byte| *byte != 0)
    {
        return Err("a hard state slot is neither zero nor valid".to_string());
    }
    let vote = match u16::from_le_bytes([slot[6], slot[7]]) {
        0 => None,
        1 => Some(NodeId(u64_at(slot, 24))),
        flags => return Err(format!("a hard state slot has flags {flags}")),
    };
    let hard_state =
        HardState { term: Term(u64_at(slot, 16)), vote, commit: LogIndex(u64_at(slot, 32)) };
    Ok(Some((u64_at(slot, 8), hard_state)))
}
