//! Opening a log: recovery.
//!
//! Owns: the checks a log directory must pass before the store trusts it. It removes leftover
//! temporary files (from a creation or truncation that crashed before its rename), checks every
//! segment header and every record checksum (a sealed segment's records are taken from its
//! index file instead when that passes its checks: module `index`), cuts a torn tail off the
//! last segment, and rebuilds the in-memory index.
//!
//! The rules (docs/format.md, "Recovery"):
//! 1. A sealed segment (any but the last) must hold every index up to the next segment's first
//!    index minus one, all valid; bytes after that are ignored (a truncation leaves them).
//! 2. In the last segment, the first invalid record ends the log *if* every valid record with a
//!    later index after it was written while it was not yet durable (its `unsynced_from` is not
//!    past it): that is a torn tail (writes not covered by a completed fdatasync; with
//!    pipelined batches, a later batch may have reached the disk and an earlier one not). Its
//!    bytes are zeroed and synced, and their count logged.
//! 3. Anything else (a bad record with valid ones after it, a valid record out of sequence, a
//!    gap between segments) is corruption: open fails, naming file, offset and index. So is a
//!    cut at or below the hard state's commit index (committed entries were durable), a
//!    record running past the end of a last segment shorter than a segment, or a last segment
//!    ending inside a record's padding (a crash never shortens a preallocated file), and
//!    segments without a hard state file.
//! 4. What recovery read is synced before it is reported durable (a killed process may have
//!    left it in the caches only).
//! 5. A reset's base segment (header flag `base`) starts the log: the segments before the base
//!    segment with the highest first index are removed (and the directory synced) before any
//!    record is read. A base segment still under its pending name (`<first index>.base`: a
//!    reset below every segment crashed before renaming it into place) is removed while any
//!    segment is left (the reset had not reached its commit point) and renamed into place
//!    otherwise (docs/format.md, "Reset").

use super::index::check_index;
use super::prepare::Background;
use super::{LogOptions, LogStats, LogStore, Recovery, BATCHES_IN_FLIGHT_LIMIT};
use crate::raft::LAST_INDEX_MAX;
use crate::storage::client_seqs::ClientSeqsFile;
use crate::storage::disk::{Disk, FileId, IoBuf, OpenOptions};
use crate::storage::error::{Corruption, OpenError};
use crate::storage::format::{align_down, align_up, SegmentHeader, SegmentId, BLOCK_SIZE_BYTES};
use crate::storage::format::{RecordError, SEGMENT_HEADER_BYTES};
use crate::storage::hard_state::{HardStateFile, LoadError, HARD_STATE_FILE};
use crate::storage::index::SegmentIndex;
use crate::storage::segment::{find_record_after, nonzero_end, records_end_after, scan};
use crate::storage::segment::{max_index_after, Segment, SharedMap, Stop};
use crate::storage::terms::TermRuns;
use bytes::Bytes;
use raftwal_wire::tls::names::format_cluster_id;
use raftwal_wire::types::{HardState, LogIndex, Term};
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// How many segments ahead of the one it checks recovery reads index files (each starts the
/// device's reads of the records its checks decode, so they arrive together): at most this many
/// decoded indexes (4 bytes per record) are held at once.
const INDEX_READ_AHEAD: usize = 16;

/// How many segments ahead of the one it checks recovery asks the device for headers and index
/// files (`Disk::prefetch`): enough reads in flight to keep a device busy, and a bounded share
/// of the page cache however many segments the log holds (64 index files of full 64 MiB
/// segments of 1 KiB entries are 16 MiB).
const PREFETCH_AHEAD: usize = 64;

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> OpenError {
    let context = context.into();
    move |source| OpenError::Io { context, source }
}

fn validate(options: &LogOptions, disk: &impl Disk) -> Result<(), OpenError> {
    let size = options.segment_size_bytes;
    if !size.is_multiple_of(BLOCK_SIZE_BYTES as u64) {
        return Err(OpenError::InvalidOptions("segment_size_bytes must be a multiple of 4096"));
    }
    if size < 4 * BLOCK_SIZE_BYTES as u64 || size > u64::from(u32::MAX) {
        return Err(OpenError::InvalidOptions(
            "segment_size_bytes must be between 16 KiB and 4 GiB",
        ));
    }
    if options.zero_chunk_bytes == 0 || !options.zero_chunk_bytes.is_multiple_of(BLOCK_SIZE_BYTES) {
        return Err(OpenError::InvalidOptions(
            "zero_chunk_bytes must be a positive multiple of 4096",
        ));
    }
    if options.write_chunk_bytes == 0 || options.write_chunk_first_bytes == 0 {
        return Err(OpenError::InvalidOptions(
            "write_chunk_bytes and write_chunk_first_bytes must be positive",
        ));
    }
    if options.batch_bytes_max == 0 {
        return Err(OpenError::InvalidOptions("batch_bytes_max must be positive"));
    }
    if options.batches_in_flight_max == 0 || options.batches_in_flight_max > BATCHES_IN_FLIGHT_LIMIT
    {
        return Err(OpenError::InvalidOptions("batches_in_flight_max must be between 1 and 8"));
    }
    if options.batches_in_flight_max > 1
        && !options.direct_io
        && disk.concurrent_syncs_share_errors()
    {
        return Err(OpenError::InvalidOptions(
            "batches_in_flight_max above 1 needs direct_io, or an fsync mode that syncs on the \
             writer's thread (thread, blocking): buffered batches synced at once may lose a \
             writeback error",
        ));
    }
    Ok(())
}

/// Whether the last segment's scan stopped at a record that runs past the end of a file shorter
/// than a segment: a crash never shortens a preallocated file, so something cut it and the
/// records past the cut are lost. (A last segment cut inside the padding of a record is
/// refused too, and a sealed one cut inside its last live record's padding loses nothing and
/// is accepted: `recover_one`.)
fn cut_short(bytes: &[u8], offset: usize, error: &RecordError, segment_size: u64) -> bool {
    let truncated =
        matches!(error, RecordError::HeaderTruncated | RecordError::PayloadTruncated(_));
    truncated
        && (bytes.len() as u64) < segment_size
        && bytes.get(offset..).is_some_and(|rest| rest.iter().any(|&b| b != 0))
}

fn corrupt(path: &Path, offset: usize, index: Option<LogIndex>, reason: String) -> OpenError {
    OpenError::Corrupt(Corruption {
        file: path.to_path_buf(),
        offset: offset as u64,
        index,
        reason,
    })
}

/// Finishes or undoes a reset that crashed while its base segment had its pending name
/// (`<first index>.base`, docs/format.md "Reset"): with no segment left, the reset had passed
/// its commit point (the removal of the old log's last segment), and the file is renamed to
/// its segment name; with segments left, it had not, and the file is removed. Returns whether
/// it changed the directory (and synced it).
fn resolve_pending_base(disk: &impl Disk, dir: &Path, names: &[String]) -> Result<bool, OpenError> {
    let mut pending: Vec<SegmentId> =
        names.iter().filter_map(|n| SegmentId::parse_pending_base_file_name(n)).collect();
    if pending.is_empty() {
        return Ok(false);
    }
    pending.sort();
    let segments_left = names.iter().any(|n| SegmentId::parse_file_name(n).is_some());
    let newest = pending.last().copied();
    for id in pending {
        let from = dir.join(id.pending_base_file_name());
        if !segments_left && Some(id) == newest {
            tracing::warn!(file = %from.display(), "finishing a reset that crashed after its commit point");
            disk.rename(&from, &dir.join(id.file_name()))
                .map_err(io_err(format!("renaming {} into place", from.display())))?;
        } else {
            tracing::warn!(file = %from.display(), "undoing a reset that crashed before its commit point");
            disk.remove(&from).map_err(io_err(format!("removing {}", from.display())))?;
        }
    }
    disk.sync_dir(dir).map_err(io_err("syncing the directory"))?;
    Ok(true)
}

/// Creates `dir` and the directories missing above it, each made durable in its parent (an
/// fsync of the parent, top down) before anything is written in it: a directory's entry, like a
/// file's name, survives a power loss only after that fsync, and a log whose directory vanished
/// would come back empty, its vote and its acknowledged entries gone with it (docs/format.md,
/// media assumption 5). A directory that exists is left as it is, unless it holds no hard state
/// yet (a new log): an open killed between its `mkdir` and that fsync left it there, possibly
/// not durable, so its parent is synced then too. (Not the directories above it: only a store
/// that made several levels and was killed before syncing them leaves those behind.)
fn create_dir_durably(disk: &impl Disk, dir: &Path) -> Result<(), OpenError> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    let mut names = None;
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty()) {
        match disk.list_dir(d) {
            Ok(found) => {
                names = Some(found);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(d),
            Err(e) => return Err(io_err(format!("listing {}", d.display()))(e)),
        }
        at = d.parent();
    }
    if missing.is_empty() {
        if names.is_some_and(|names| names.iter().any(|n| n == HARD_STATE_FILE)) {
            return Ok(());
        }
        missing.push(dir);
    } else {
        disk.create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    }
    // Top down: a directory's entry is durable only once the directory holding it is.
    for d in missing.iter().rev() {
        let parent = match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        disk.sync_dir(parent).map_err(io_err(format!("syncing {}", parent.display())))?;
    }
    Ok(())
}

/// A segment found on disk, before its records are scanned.
struct Found {
    id: SegmentId,
    path: PathBuf,
    file: FileId,
    header: SegmentHeader,
    bytes: Bytes,
}

impl<D: Disk> LogStore<D> {
    /// Opens (creating if needed) the log in `dir` on `disk`, recovering what is durable.
    ///
    /// Several logs may share one disk (one io_uring ring per shard thread): each store
    /// registers as its own owner, so completions reach the right log.
    pub fn open(
        dir: &Path,
        options: LogOptions,
        disk: Rc<D>,
    ) -> Result<(LogStore<D>, Recovery), OpenError> {
        validate(&options, &*disk)?;
        create_dir_durably(&*disk, dir)?;
        let mut names = disk.list_dir(dir).map_err(io_err(format!("listing {}", dir.display())))?;
        let tmp: Vec<String> = names.iter().filter(|n| n.ends_with(".tmp")).cloned().collect();
        for name in &tmp {
            disk.remove(&dir.join(name)).map_err(io_err(format!("removing leftover {name}")))?;
        }
        if !tmp.is_empty() {
            disk.sync_dir(dir).map_err(io_err("syncing the directory"))?;
            names.retain(|n| !n.ends_with(".tmp"));
        }
        if resolve_pending_base(&*disk, dir, &names)? {
            names = disk.list_dir(dir).map_err(io_err(format!("listing {}", dir.display())))?;
        }
        let hard = HardStateFile::open(&*disk, dir, &names).map_err(|e| match e {
            LoadError::Io(context, source) if source.kind() == io::ErrorKind::StorageFull => {
                OpenError::NoSpace(context.to_owned())
            }
            LoadError::Io(context, source) => OpenError::Io { context: context.to_owned(), source },
            LoadError::Corrupt(c) => OpenError::Corrupt(c),
        })?;
        let (client_seqs, client_seqs_found) = match ClientSeqsFile::open(&*disk, dir, &names) {
            Ok(opened) => opened,
            Err(e) => {
                hard.close(&*disk);
                return Err(e);
            }
        };
        let mut ids: Vec<SegmentId> =
            names.iter().filter_map(|n| SegmentId::parse_file_name(n)).collect();
        ids.sort();
        let owner = disk.register();
        let mut store = LogStore {
            disk: disk.clone(),
            owner,
            dir: dir.to_path_buf(),
            options,
            segments: VecDeque::new(),
            terms: TermRuns::new(LogIndex::ZERO, Term::ZERO),
            last_index: LogIndex::ZERO,
            written_index: LogIndex::ZERO,
            durable_index: LogIndex::ZERO,
            tail: VecDeque::new(),
            tail_payload_bytes: 0,
            spare: Vec::new(),
            tail_block: Vec::with_capacity(BLOCK_SIZE_BYTES),
            prev_tail_block: Vec::with_capacity(BLOCK_SIZE_BYTES),
            in_flight: VecDeque::new(),
            next_tag: 0,
            hard,
            client_seqs,
            client_seqs_found,
            poison: None,
            completions: Vec::new(),
            stats: LogStats::default(),
            bg: Background::new(),
            scrub: None,
            indexed_at_open: 0,
        };
        let torn_tail_bytes = if ids.is_empty() {
            let saved = store.hard.state();
            if saved != HardState::default() {
                // The first segment is made in the open that makes the hard state, before
                // anything can be saved in it, and no operation removes the last segment:
                // the segments were lost, and with them entries this node may have
                // acknowledged. Starting over would break the quorums they counted in.
                let reason = format!(
                    "the log has no segment while its hard state holds term {}, vote {:?} and                      commit index {} (its entries are lost; see docs/operations.md,                      \"Rejoining after a loss of data\")",
                    saved.term, saved.vote, saved.commit
                );
                let file = store.hard.path().to_path_buf();
                store.hard.close(&*store.disk);
                return Err(OpenError::Corrupt(Corruption {
                    file,
                    offset: 0,
                    index: None,
                    reason,
                }));
            }
            store.create_segment(SegmentId(LogIndex(1)), Term::ZERO).map_err(|e| {
                if e.kind() == io::ErrorKind::StorageFull {
                    OpenError::NoSpace("creating the first segment".into())
                } else {
                    OpenError::Io { context: "creating the first segment".into(), source: e }
                }
            })?;
            0
        } else {
            let torn = store.recover_segments(&ids, &names)?;
            store.unmap_old();
            store.sync_recovered()?;
            torn
        };
        let recovery = Recovery {
            hard_state: store.hard.state(),
            first_index: store.first_index(),
            last_index: store.last_index,
            torn_tail_bytes,
            segments: store.segments.len(),
            segments_indexed: store.indexed_at_open,
        };
        Ok((store, recovery))
    }

    /// Opens and maps segment `id` (`last`: the log's last segment, written with O_DIRECT if
    /// the options say so); `drop_cache`: read what the device holds (below).
    fn open_segment(
        &self,
        id: SegmentId,
        last: bool,
        drop_cache: bool,
    ) -> Result<Found, OpenError> {
        let path = self.dir.join(id.file_name());
        let direct = last && self.options.direct_io;
        let file = self
            .disk
            .open(&path, OpenOptions { create_new: false, direct })
            .map_err(io_err(format!("opening {}", path.display())))?;
        // The last segment can hold writes whose fdatasync failed, and so can a sealed one:
        // the zeros a truncation writes over the records cut after its live ones, before it
        // removes the segments after it (`truncate_after`). Linux keeps serving such pages
        // from its cache in this boot, so read what the device holds instead: a sealed
        // segment's bytes after its live records say how far its file holds records
        // (`written_max`), which a later truncation must clear before the segment is the last
        // one for a moment.
        let dropped = if drop_cache { self.disk.drop_clean_cache(file) } else { Ok(()) };
        let found = dropped
            .map_err(io_err(format!("dropping the cached pages of {}", path.display())))
            .and_then(|()| self.load_segment(id, &path, file));
        if found.is_err() {
            self.disk.close(file);
        }
        found
    }

    fn load_segment(&self, id: SegmentId, path: &Path, file: FileId) -> Result<Found, OpenError> {
        let size = self.disk.size(file).map_err(io_err(format!("sizing {}", path.display())))?;
        let bytes =
            self.disk.map(file, size).map_err(io_err(format!("mapping {}", path.display())))?;
        let header = SegmentHeader::decode(&bytes)
            .map_err(|reason| OpenError::BadSegment { file: path.to_path_buf(), reason })?;
        let foreign = |reason: String| OpenError::Foreign { file: path.to_path_buf(), reason };
        if header.first_index != id.0 {
            return Err(foreign(format!(
                "header says first index {}, name says {}",
                header.first_index, id.0
            )));
        }
        if header.first_index == LogIndex::ZERO {
            // Index 0 is the empty prefix before a log's first entry, never an entry: counting
            // a segment's records from it would count below it.
            let reason = "the header says the segment starts at index 0, which holds no entry \
                          (a log's first entry has index 1)";
            return Err(corrupt(path, 16, None, reason.to_owned()));
        }
        if header.cluster_id != self.options.cluster_id || header.log_id != self.options.log_id {
            return Err(foreign(format!(
                "cluster {} log {}, expected cluster {} log {}",
                format_cluster_id(header.cluster_id),
                header.log_id,
                format_cluster_id(self.options.cluster_id),
                self.options.log_id
            )));
        }
        Ok(Found { id, path: path.to_path_buf(), file, header, bytes })
    }

    /// Scans every segment (or reads its index: module `index`); returns the bytes of torn
    /// tail cut off. `names` lists the directory.
    fn recover_segments(&mut self, ids: &[SegmentId], names: &[String]) -> Result<u64, OpenError> {
        // What recovery reads is asked of the device a window ahead, so that its reads are in
        // flight together rather than one after another (advice only, `Disk::prefetch`): each
        // segment's first blocks, `PREFETCH_AHEAD` segments ahead of the header check, and
        // index files as far ahead of the check of their segments (the first window now).
        let prefetch = !self.options.check_sealed_at_open;
        let mut headers_asked = 0;
        if prefetch {
            let listed: Vec<SegmentId> =
                names.iter().filter_map(|n| SegmentId::parse_index_file_name(n)).collect();
            for &id in ids.iter().take(PREFETCH_AHEAD) {
                if listed.contains(&id) {
                    self.prefetch_index_file(id);
                }
            }
        }
        // Every header first: a stray or foreign file is named as what it is, rather than
        // making the segment before it look cut short (a sealed segment is read up to the next
        // one's first index).
        let mut start = 0;
        for (k, &id) in ids.iter().enumerate() {
            while prefetch && headers_asked < ids.len() && headers_asked <= k + PREFETCH_AHEAD {
                self.prefetch_header(ids[headers_asked]);
                headers_asked += 1;
            }
            let found = self.open_segment(id, false, false)?;
            self.disk.close(found.file);
            if found.header.base {
                start = k;
            }
        }
        // The log starts at the base segment with the highest first index (a reset's): the
        // segments before it are the log it replaced, which the reset was removing.
        if start > 0 {
            for id in &ids[..start] {
                let path = self.dir.join(id.file_name());
                tracing::warn!(file = %path.display(), "removing a segment before the log's base segment");
                self.remove_index(*id)
                    .and_then(|()| self.disk.remove(&path))
                    .map_err(io_err(format!("removing {}", path.display())))?;
            }
            self.disk.sync_dir(&self.dir).map_err(io_err("syncing the directory"))?;
        }
        let ids = &ids[start..];
        // Index files stand only beside sealed segments: the last segment's (it will be
        // written again) and those left without a segment go, before anything is written.
        let sealed = &ids[..ids.len() - 1];
        let mut indexed = Vec::new();
        let mut stale = false;
        for id in names.iter().filter_map(|n| SegmentId::parse_index_file_name(n)) {
            if sealed.binary_search(&id).is_ok() {
                indexed.push(id);
                continue;
            }
            let path = self.dir.join(id.index_file_name());
            tracing::debug!(file = %path.display(), "removing an index file of no sealed segment");
            // (Those of segments before the base segment went with them above.)
            self.remove_index(id).map_err(io_err(format!("removing {}", path.display())))?;
            stale = true;
        }
        if stale {
            self.disk.sync_dir(&self.dir).map_err(io_err("syncing the directory"))?;
        }
        indexed.sort();
        // A sealed segment's index file is read first: the segment's cached pages are dropped
        // (its bytes read from the device) only if what follows its live records will be
        // searched (module `index`; `open_segment`), which an index that says nothing follows
        // them spares. Index files are read a few segments ahead, each starting the device's
        // reads of the records its checks will decode.
        let reads_index: Vec<bool> = (0..ids.len())
            .map(|k| {
                k + 1 < ids.len()
                    && !self.options.check_sealed_at_open
                    && indexed.binary_search(&ids[k]).is_ok()
            })
            .collect();
        let mut ahead: VecDeque<(usize, Result<SegmentIndex, String>)> = VecDeque::new();
        let mut read_to = 0;
        // (The first window of index files was asked for before the base segment was known.)
        let mut indexes_asked = PREFETCH_AHEAD.saturating_sub(start);
        let mut torn = 0u64;
        for (k, &id) in ids.iter().enumerate() {
            let last = k + 1 == ids.len();
            let next = ids.get(k + 1).copied();
            let has_index = indexed.binary_search(&id).is_ok();
            while indexes_asked < ids.len() && indexes_asked <= k + PREFETCH_AHEAD {
                if reads_index[indexes_asked] {
                    self.prefetch_index_file(ids[indexes_asked]);
                }
                indexes_asked += 1;
            }
            while read_to < ids.len() && read_to <= k + INDEX_READ_AHEAD {
                if reads_index[read_to] {
                    let (ahead_id, ahead_next) = (ids[read_to], ids[read_to + 1]);
                    let index = self.read_index(ahead_id);
                    if let Ok(index) = &index {
                        self.prefetch_checked_records(ahead_id, index, ahead_next.0);
                    }
                    ahead.push_back((read_to, index));
                }
                read_to += 1;
            }
            let index = match ahead.front() {
                Some((j, _)) if *j == k => ahead.pop_front().map(|(_, index)| index),
                _ => None,
            };
            let searches_after = match (&index, next) {
                (Some(Ok(ix)), Some(n)) => ix.written_max > n.0.prev(),
                _ => true,
            };
            let mut found = self.open_segment(id, last, searches_after)?;
            let result = self.recover_one(&mut found, next, has_index, index);
            // Only the newest sealed segments stay mapped (and keep their offsets): unmap the
            // others as recovery goes, so it never holds more maps than the log will.
            let mapped_from = sealed.len().saturating_sub(self.options.sealed_segments_mapped_max);
            if result.is_ok() && !last && k < mapped_from {
                self.unmap_segment(self.segments.len() - 1);
            }
            match result {
                Ok(t) => torn = t,
                Err(e) => {
                    self.disk.close(found.file);
                    return Err(e);
                }
            }
        }
        Ok(torn)
    }

    fn recover_one(
        &mut self,
        found: &mut Found,
        next: Option<SegmentId>,
        has_index: bool,
        index: Option<Result<SegmentIndex, String>>,
    ) -> Result<u64, OpenError> {
        let first = found.id.0;
        if self.segments.is_empty() {
            self.terms = TermRuns::new(first.prev(), found.header.prev_term);
            self.last_index = first.prev();
        } else if first.prev() > self.last_index {
            let reason = format!("gap: the previous segment ends at {}", self.last_index);
            return Err(corrupt(&found.path, 0, Some(first), reason));
        } else if self.terms.term(first.prev()) != Some(found.header.prev_term) {
            let reason =
                format!("header's previous term {} disagrees with the log", found.header.prev_term);
            return Err(corrupt(&found.path, 0, Some(first.prev()), reason));
        }
        let limit = next.map(|n| n.0.prev());
        let recycled = found.header.recycled;
        let seed = found.header.record_seed();
        // A sealed segment's index stands for its scan if it passes the checks against the
        // segment (module `index`); a missing or refused one costs the scan, which writes it.
        let indexed = match (next, index) {
            (Some(next), Some(index)) => {
                let prev_term = found.header.prev_term;
                let checked = index
                    .and_then(|ix| check_index(&ix, first, &found.bytes, next.0, prev_term, seed));
                match checked {
                    Ok(indexed) => Some(indexed),
                    Err(reason) => {
                        let file = self.dir.join(found.id.index_file_name());
                        tracing::warn!(file = %file.display(), %reason, "not using a segment's index file: scanning the segment");
                        None
                    }
                }
            }
            _ => None,
        };
        let from_index = indexed.as_ref().map(|i| (i.written_max, i.searched));
        let index_at = indexed.as_ref().map(|i| i.offsets_at);
        let s = match indexed {
            Some(indexed) => indexed.scan,
            None => scan(&found.bytes, first, found.header.prev_term, limit, seed, recycled),
        };
        let len = found.bytes.len();
        if s.end_offset > len && next.is_none() {
            // The last segment ends inside the zero padding after a valid record. No write of
            // raftwal leaves a file there (records are written whole with their padding, and
            // segments preallocated): something outside raftwal cut it, and nothing bounds
            // what it took after that record, which may be durable records (a cut inside a
            // record is refused alike: `cut_short`).
            let index = first.plus(s.offsets.len() as u64);
            let reason = format!(
                "the file ends inside the padding of the record before index {index} ({len} \
                 bytes; no raftwal write ends a segment file there: something outside raftwal \
                 cut it, and the records after the cut are lost)"
            );
            return Err(corrupt(&found.path, len, Some(index), reason));
        }
        if s.end_offset > len {
            // A sealed segment's file ends inside the zero padding after its last valid record
            // (the record's header and payload are whole: their checksum held). Its live
            // records end there (the next segment starts after them), the padding is zeros by
            // format and outside the checksum, so read the missing bytes as zeros.
            tracing::warn!(
                file = %found.path.display(),
                len,
                end = s.end_offset,
                "segment file ends inside the padding of its last record"
            );
            // Up to a segment's size (4 GiB at most): a failed allocation is an error, not an
            // abort.
            let mut padded = Vec::new();
            padded.try_reserve_exact(s.end_offset).map_err(|e| OpenError::Io {
                context: format!("reading {} with its padding", found.path.display()),
                source: std::io::Error::new(std::io::ErrorKind::OutOfMemory, e.to_string()),
            })?;
            padded.extend_from_slice(&found.bytes);
            padded.resize(s.end_offset, 0);
            found.bytes = Bytes::from(padded);
            if s.stop.is_none() {
                // The segment is read from its file once it is no longer mapped (a read of the
                // record would find the file shorter than its index says): give the file its
                // padding back, durably, as a torn tail's zeros are.
                self.zero_range(found, len, s.end_offset)?;
            }
        }
        let mut torn = 0u64;
        match (&s.stop, next) {
            (None, _) => {}
            (Some(Stop::Inconsistent { offset, reason }), _) => {
                let index = first.plus(s.offsets.len() as u64);
                return Err(corrupt(&found.path, *offset, Some(index), reason.clone()));
            }
            (Some(Stop::Invalid { offset, error }), Some(_)) => {
                let index = first.plus(s.offsets.len() as u64);
                let reason = format!("{error} in a sealed segment");
                return Err(corrupt(&found.path, *offset, Some(index), reason));
            }
            (Some(Stop::Invalid { offset, error }), None) => {
                let last_good = first.plus(s.offsets.len() as u64).prev();
                let commit = self.hard.state().commit;
                if last_good < commit {
                    // Entries up to the persisted commit index were durable on this node when it
                    // was saved: damage among them is no torn write. Nothing is cut, so the
                    // bytes stay for inspection.
                    let reason = format!(
                        "{error} at or below the persisted commit index {commit} (committed \
                         entries are never a torn tail)"
                    );
                    return Err(corrupt(&found.path, *offset, Some(last_good.next()), reason));
                }
                if cut_short(&found.bytes, *offset, error, self.options.segment_size_bytes) {
                    let reason = format!(
                        "the file ends inside a record ({} bytes; segment files are preallocated \
                         to {} bytes and never shortened: something outside raftwal cut it)",
                        found.bytes.len(),
                        self.options.segment_size_bytes
                    );
                    return Err(corrupt(&found.path, *offset, Some(last_good.next()), reason));
                }
                // Valid records after the bad one are fine only if they were written while the
                // bad record was not yet durable (its batch, or a batch pipelined behind it,
                // whose writes reached the disk before it at the crash): a record written after
                // the bad one was durable proves it was synced, and perhaps acknowledged.
                let expected = last_good.next();
                let mut from = *offset;
                while let Some((at, header)) =
                    find_record_after(&found.bytes, from, last_good, seed)
                {
                    if header.unsynced_from() > expected {
                        let reason = format!(
                            "{error}, followed by a valid record of index {} (written after it was durable) at offset {at}",
                            header.index
                        );
                        return Err(corrupt(&found.path, *offset, Some(expected), reason));
                    }
                    from = at;
                }
                // A fresh segment holds zeros after its records, so every non-zero byte from
                // the cut on was written by this use of the file: all of it goes. A recycled
                // segment holds what its earlier use wrote there, records of indexes below
                // `first` that no scan takes for this use's (`RecordError::Stale`), and need
                // not go: only this use's records after the cut do (zeroing the rest of a
                // 64 MiB file at every start would cost more than the recycling saves).
                let end = if recycled {
                    records_end_after(&found.bytes, *offset, first.prev(), seed)
                } else {
                    nonzero_end(&found.bytes, *offset)
                };
                if end > *offset {
                    torn = (end - *offset) as u64;
                    tracing::warn!(file = %found.path.display(), offset, bytes = torn, "cutting a torn tail");
                    self.zero_range(found, *offset, end)?;
                }
            }
        }
        if !s.offsets.is_empty() {
            self.terms.push_runs(&s.term_changes, first.plus(s.offsets.len() as u64).prev());
        }
        self.last_index = first.plus(s.offsets.len() as u64).prev();
        self.written_index = self.last_index;
        self.durable_index = self.last_index;
        let end_offset = s.end_offset as u64;
        let last_live = first.plus(s.offsets.len() as u64).prev();
        // A sealed segment may hold records a truncation cut after its live ones (or a
        // withdrawn batch wrote there): the file must not be recycled for a segment that
        // starts at or below them.
        let written_max = match (next, from_index) {
            (Some(_), Some((written_max, _))) => written_max,
            (Some(_), None) => max_index_after(&found.bytes, s.end_offset, last_live, seed)
                .map_or(last_live, |m| m.max(last_live)),
            (None, _) => last_live,
        };
        if written_max > LAST_INDEX_MAX {
            // No log holds that index (the index after it would not exist), so this log never
            // wrote it: the bytes are not a truncation's leftovers.
            let reason = "a record after the live records holds an index past the largest a \
                          log holds"
                .to_owned();
            return Err(corrupt(&found.path, s.end_offset, Some(written_max), reason));
        }
        let map = next.map(|_| SharedMap::new(found.bytes.slice(..s.end_offset)));
        let segment = Segment {
            id: found.id,
            file: next.is_none().then_some(found.file),
            offsets: s.offsets,
            end_offset,
            map,
            index_at,
            unloaded: None,
            header: super::write::header_bytes(&found.bytes),
            written_max,
            seed,
        };
        if next.is_none() && recycled {
            // Its blocks were all written in the file's earlier use: no zeros ahead of the
            // writer.
            self.activated(true);
        }
        // What was read of a sealed segment's bytes after its live records, and stands for
        // its `written_max` from now on, is made durable first: a process killed between a
        // truncation's write of zeros over them and its fdatasync left the zeros in the page
        // cache only, and a power loss after this start would bring the records back.
        let searched_after = from_index.is_none_or(|(_, searched)| searched);
        if next.is_some() && searched_after {
            if let Err(e) = self.disk.sync(found.file) {
                self.disk.close(found.file);
                return Err(io_err(format!("syncing {}", found.path.display()))(e));
            }
        }
        if next.is_some() {
            self.disk.close(found.file);
        } else if self.options.direct_io {
            let partial = align_down(s.end_offset, BLOCK_SIZE_BYTES);
            self.tail_block.clear();
            self.tail_block.extend_from_slice(&found.bytes[partial..s.end_offset]);
        }
        self.segments.push_back(segment);
        if next.is_some() {
            let k = self.segments.len() - 1;
            if from_index.is_some() {
                self.indexed_at_open += 1;
            } else if has_index && self.options.check_sealed_at_open {
                // Scanned on purpose: the index file stays if it lists what the scan found
                // (reads of the segment once unmapped take their offsets from it).
                let next = next.map_or(first, |n| n.0);
                let prev_term = found.header.prev_term;
                match self.load_index(found.id, &found.bytes, next, prev_term, seed) {
                    Ok(i) if i.scan.offsets == self.segments[k].offsets => {
                        self.segments[k].index_at = Some(i.offsets_at);
                    }
                    _ => self.write_index(k),
                }
            } else {
                self.write_index(k);
            }
        }
        Ok(torn)
    }

    /// Makes durable what recovery read and is about to report durable. A process killed after
    /// a write and before its fdatasync (or after a rename and before the directory fsync)
    /// leaves the data in the page cache or the device's volatile cache, where recovery reads
    /// it as valid; without this a power loss after the restart could take entries, or a
    /// segment's name, the node had since acknowledged. Sealed segments need nothing more: a
    /// segment is sealed only after every batch in it completed its fdatasync, and those whose
    /// bytes after the live records recovery read were synced then (`recover_one`).
    fn sync_recovered(&self) -> Result<(), OpenError> {
        if let Some(file) = self.segments.back().and_then(|s| s.file) {
            // A segment made under a smaller `segment_size_bytes` is filled to the current one:
            // preallocate it, or the writes past its end would grow the file, and a crash could
            // leave it cut inside a record (which recovery takes for damage).
            let size = self.disk.size(file).map_err(io_err("sizing the last segment"))?;
            if size < self.options.segment_size_bytes {
                self.disk.allocate(file, self.options.segment_size_bytes).map_err(|e| {
                    if e.kind() == io::ErrorKind::StorageFull {
                        OpenError::NoSpace("growing the last segment to the segment size".into())
                    } else {
                        OpenError::Io { context: "growing the last segment".into(), source: e }
                    }
                })?;
            }
            self.disk.sync(file).map_err(io_err("syncing the recovered last segment"))?;
        }
        self.disk.sync_dir(&self.dir).map_err(io_err("syncing the directory"))
    }

    /// Zeroes `[from, to)` of a found segment on disk (keeping the valid bytes of the first
    /// block) and syncs it, so that the cut tail can never be mistaken for records later.
    fn zero_range(&self, found: &Found, from: usize, to: usize) -> Result<(), OpenError> {
        let start = align_down(from, BLOCK_SIZE_BYTES).max(SEGMENT_HEADER_BYTES);
        let end = align_up(to, BLOCK_SIZE_BYTES).min(found.bytes.len()).max(from);
        let mut buf = IoBuf::with_capacity(end - start);
        buf.resize_zeroed(align_up(end - start, BLOCK_SIZE_BYTES));
        buf.as_mut_slice()[..from - start].copy_from_slice(&found.bytes[start..from]);
        let context = format!("zeroing the torn tail of {}", found.path.display());
        self.disk
            .write_at(found.file, start as u64, buf.as_slice())
            .map_err(io_err(context.clone()))?;
        self.disk.sync(found.file).map_err(io_err(context))
    }
}
