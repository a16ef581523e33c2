//! Helpers shared by the storage tests: deterministic entries and small-segment options.
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use raftwal::storage::{Disk, LogOptions, LogStore, ZeroFill};
use raftwal_wire::types::{ClusterId, Entry, EntryKind, HardState, LogId, LogIndex, Term};

/// A payload that depends only on (index, term), so any stored copy can be checked.
pub fn payload(index: u64, term: u64) -> Bytes {
    let len = ((index * 7919 + term * 104_729) % 700) as usize;
    let mut v = Vec::with_capacity(len);
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ term;
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    Bytes::from(v)
}

/// The entry (index, term) with its deterministic payload.
pub fn entry(index: u64, term: u64) -> Entry {
    let kind = if index.is_multiple_of(11) { EntryKind::Noop } else { EntryKind::Normal };
    let data = if kind == EntryKind::Noop { Bytes::new() } else { payload(index, term) };
    Entry { index: LogIndex(index), term: Term(term), kind, data }
}

/// Entries `from..from+count` of `term`.
pub fn entries(from: u64, count: u64, term: u64) -> Vec<Entry> {
    (from..from + count).map(|i| entry(i, term)).collect()
}

/// Options with small segments so that tests cross many segment boundaries.
pub fn small_options(direct_io: bool) -> LogOptions {
    LogOptions {
        segment_size_bytes: 16 * 1024,
        direct_io,
        batch_bytes_max: 6 * 1024,
        tail_cache_bytes_max: 2 * 1024,
        // Batches above 1 KiB go out in several chunk writes (1 KiB, then 2 KiB each) and one
        // fdatasync.
        write_chunk_bytes: 2 * 1024,
        write_chunk_first_bytes: 1024,
        cluster_id: ClusterId(7),
        log_id: LogId(3),
        // Zeros ahead of the writer and over the next segment, in several writes per segment.
        zero_fill: ZeroFill::Always,
        zero_chunk_bytes: 4 * 1024,
        // Batches submitted while one is in flight are pipelined (where a test submits twice).
        batches_in_flight_max: 2,
        // Compacted segments are kept and reused as later ones (where a test compacts).
        recycled_segments_max: 2,
        // Sealed segments open from their index files, where they are valid.
        check_sealed_at_open: false,
        // The newest two sealed segments mapped: reads of older ones pread.
        sealed_segments_mapped_max: 2,
    }
}

/// Checks that `e` is exactly the deterministic entry for its (index, term).
pub fn assert_genuine(e: &Entry) {
    assert_eq!(*e, entry(e.index.get(), e.term.get()), "entry {:?} has foreign bytes", e.index);
}

/// Checks that the log holds exactly `from..=to`, every entry genuine and of the term
/// `term_of` gives, which `LogStore::term` agrees with.
pub fn assert_holds<D: Disk>(log: &LogStore<D>, from: u64, to: u64, term_of: impl Fn(u64) -> u64) {
    assert_eq!(log.first_index(), LogIndex(from));
    assert_eq!(log.last_index(), LogIndex(to));
    let mut next = from;
    while next <= to {
        let got = log.read(LogIndex(next), 1 << 20).unwrap();
        for e in &got {
            assert_genuine(e);
            assert_eq!(e.term.get(), term_of(e.index.get()), "entry {} of the wrong term", e.index);
            assert_eq!(log.term(e.index), Some(e.term), "term({}) disagrees", e.index);
        }
        next += got.len() as u64;
    }
}

/// The indexes of every entry the log holds, read front to back in reads of at most
/// `read_bytes_max` payload bytes, each entry checked genuine on the way.
pub fn read_all<D: Disk>(log: &LogStore<D>, read_bytes_max: usize) -> Vec<u64> {
    let mut out = Vec::new();
    let mut next = log.first_index();
    while next <= log.last_index() {
        let got = log.read(next, read_bytes_max).unwrap();
        for e in &got {
            assert_genuine(e);
            out.push(e.index.get());
        }
        next = next.plus(got.len() as u64);
    }
    out
}

/// Bytes of every file in `dir` on the simulated disk (to give it a capacity just above).
pub fn bytes_used(disk: &raftwal::storage::SimDisk, dir: &std::path::Path) -> u64 {
    disk.file_names(dir)
        .iter()
        .map(|n| disk.file_bytes(&dir.join(n)).map_or(0, |b| b.len() as u64))
        .sum()
}

/// One segment of 1 MiB holds a whole test's entries; no zero-fill (for the truncation tests,
/// whose crash points are the truncation's own).
pub fn one_segment_options() -> LogOptions {
    LogOptions { segment_size_bytes: 1 << 20, zero_fill: ZeroFill::Never, ..small_options(true) }
}

/// Appends entries of term 1, four at a time from `*next`, flushing each time, until a flush
/// fails; returns the error. Panics if 1,000 entries went in (the disk never filled up).
pub fn append_until_flush_fails<D: Disk>(
    log: &mut LogStore<D>,
    next: &mut u64,
) -> raftwal::storage::FlushError {
    loop {
        log.append(&entries(*next, 4, 1)).unwrap();
        *next += 4;
        match log.flush() {
            Ok(_) => assert!(*next < 1000, "the disk never filled up"),
            Err(e) => return e,
        }
    }
}

/// Appends `count` entries of `term` after the log's last one, one at a time, flushing after
/// each index that is a multiple of `flush_every` and at the end: batches of several sizes,
/// all durable on return.
pub fn append_durably<D: Disk>(log: &mut LogStore<D>, count: u64, term: u64, flush_every: u64) {
    for _ in 0..count {
        let next = log.last_index().get() + 1;
        log.append(&entries(next, 1, term)).unwrap();
        if next.is_multiple_of(flush_every) {
            log.flush().unwrap();
        }
    }
    log.flush().unwrap();
}

/// A log as the store should hold it, for the model tests: its entries from `first`, how far
/// they are durable, the term new entries get, the hard state, and the term of entry
/// `first - 1` when the model knows it (after a reset, until the next compaction).
#[derive(Clone, Debug)]
pub struct LogModel {
    pub entries: Vec<Entry>,
    pub first: u64,
    pub durable: u64,
    pub term: u64,
    pub hard_state: HardState,
    pub prev_term: Option<u64>,
}

impl LogModel {
    /// A new log's model: no entry, nothing durable, term 1, the default hard state.
    pub fn empty(prev_term: Option<u64>) -> LogModel {
        LogModel {
            entries: Vec::new(),
            first: 1,
            durable: 0,
            term: 1,
            hard_state: HardState::default(),
            prev_term,
        }
    }

    pub fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    pub fn get(&self, index: u64) -> &Entry {
        &self.entries[(index - self.first) as usize]
    }
}
