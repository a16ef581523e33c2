//! The engine's fuzzing oracles, shared by the cargo-fuzz targets in `fuzz/` and by the tests
//! that replay the fuzz corpora on stable Rust (`engine/tests/fuzz_corpus.rs`).
//!
//! Owns: [`record`] (the record and segment header decoders), [`recovery`] (a log directory
//! damaged in arbitrary ways, opened by the real [`LogStore`] on the simulated disk) and
//! [`raft_step`] (a consensus core fed arbitrary peer messages, ticks, proposals and drains).
//! Each feeds untrusted bytes where the engine takes them from a disk or a network (promise 5 of
//! the design: an error, never a panic) and checks what must hold on whatever gets through. A
//! panic here is a bug the fuzzer found. Each returns whether the input got past the first
//! check, so the corpus tests can tell stale seeds.
//! Must not: depend on time or on the host's file system (the simulated disk only).

use crate::raft::{Config, LogReadError, LogSource, RaftCore, ENTRY_OVERHEAD_BYTES};
use crate::storage::format::{
    decode_record, encode_record, record_size_bytes, SegmentHeader, RECORD_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
};
use crate::storage::{LogOptions, LogStore, SimDisk, ZeroFill};
use bytes::Bytes;
use raftwal_wire::message::{
    AppendEntries, AppendEntriesResponse, Heartbeat, HeartbeatResponse, LogStart, Message,
    MessageBody, ReadIndex, ReadIndexResponse, RequestVote, RequestVoteResponse,
};
use raftwal_wire::types::{Entry, EntryKind, LogId, LogIndex, NodeId, Term};
use std::path::Path;
use std::rc::Rc;

/// Decodes `data` as a record and as a segment header. What decodes must encode to the same
/// bytes (a record: header and payload) or decode again to the same value (a header).
pub fn record(data: &[u8]) -> bool {
    let mut decoded = false;
    if let Ok(header) = decode_record(data) {
        decoded = true;
        let len = header.payload_bytes as usize;
        let payload = &data[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len];
        let mut again = vec![0u8; record_size_bytes(len)];
        encode_record(
            &mut again,
            header.index,
            header.term,
            header.kind,
            header.batch_offset,
            payload,
        );
        assert_eq!(
            &again[..RECORD_HEADER_BYTES + len],
            &data[..RECORD_HEADER_BYTES + len],
            "a decoded record encodes to other bytes"
        );
        assert_eq!(decode_record(&again), Ok(header), "a re-encoded record decodes differently");
    }
    if let Ok(header) = SegmentHeader::decode(data) {
        decoded = true;
        let mut again = [0u8; SEGMENT_HEADER_BYTES];
        header.encode(&mut again);
        assert_eq!(SegmentHeader::decode(&again), Ok(header), "a segment header changed");
    }
    decoded
}

/// Consumes `data` a few bytes at a time; missing bytes read as zero.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

/// Options for the recovery oracle: the smallest segments, so the base log spans several.
fn recovery_options() -> LogOptions {
    LogOptions {
        segment_size_bytes: 16 << 10,
        direct_io: true,
        batch_bytes_max: 4 << 10,
        tail_cache_bytes_max: 0,
        write_chunk_bytes: 4 << 10,
        write_chunk_first_bytes: 1 << 10,
        zero_fill: ZeroFill::Never,
        // Every other batch is pipelined behind the one before: the base log has the gaps
        // before pipelined batches too.
        batches_in_flight_max: 2,
        // The two newest sealed segments mapped: reads of the others pread.
        sealed_segments_mapped_max: 2,
        ..LogOptions::default()
    }
}

const RECOVERY_DIR: &str = "/fuzz/log";

/// Writes a log of 150 entries (terms 1 to 7, payloads of 0 to 899 bytes) in batches of 1 to 7
/// entries, every other one submitted while the one before is in flight (pipelined), to a fresh
/// simulated disk; after entry 80 it compacts the first two segments away, whose files the
/// next segments reuse, so the last segment is a recycled file with an earlier use's records
/// after its own; after entry 110 it resets the log to start after entry 105 of term 4 (the
/// old log holds term 5 there) and writes 106 on again, so the log's first segment is a base
/// segment (`LogStore::reset_to`). Closes it and returns the entries it holds (from its first
/// index on).
fn base_log(disk: &Rc<SimDisk>) -> Vec<Entry> {
    let dir = Path::new(RECOVERY_DIR);
    let (mut log, _) =
        LogStore::open(dir, recovery_options(), disk.clone()).expect("a fresh log opens");
    let mut index = 0u64;
    let mut batch = 0u64;
    let mut written = Vec::new();
    while index < 150 {
        if index >= 80 && log.first_index() == LogIndex(1) {
            log.compact_before(LogIndex(60)).expect("the base log compacts");
        }
        if index >= 110 && log.first_index() < LogIndex(106) {
            log.reset_to(LogIndex(105), Term(4)).expect("the base log resets");
            index = 105;
            written.clear();
        }
        batch += 1;
        let entries: Vec<Entry> = (0..(batch % 7 + 1))
            .map(|_| {
                index += 1;
                let len = (index * 37 % 900) as usize;
                Entry {
                    index: LogIndex(index),
                    term: Term(1 + index / 25),
                    kind: EntryKind::Normal,
                    data: Bytes::from(vec![index as u8; len]),
                }
            })
            .collect();
        log.append(&entries).expect("the base log appends");
        written.extend(entries);
        if batch % 2 == 1 {
            log.submit().expect("the base log submits");
            continue;
        }
        while log.durable_index() < log.last_index() {
            log.submit().expect("the base log submits");
            log.wait().expect("the simulated disk completes");
        }
    }
    assert!(log.stats().pipelined_batches > 0, "the base log pipelines batches");
    assert!(log.stats().roll_overs_recycled >= 2, "the base log reuses compacted files");
    assert_eq!(log.first_index(), LogIndex(106), "the base log was reset");
    let first = log.first_index();
    drop(log);
    written.retain(|e| e.index >= first);
    written
}

/// One edit of a file of the base log.
enum Edit {
    Overwrite(String, usize, Vec<u8>),
    Cut(String, usize),
    Flip(String, usize, u8),
}

impl Edit {
    fn apply(&self, disk: &SimDisk, dir: &Path) {
        match self {
            Edit::Overwrite(name, offset, bytes) => {
                disk.overwrite(&dir.join(name), *offset, bytes);
            }
            Edit::Cut(name, len) => {
                disk.set_file_len(&dir.join(name), *len);
            }
            Edit::Flip(name, offset, bit) => {
                disk.flip_bit(&dir.join(name), *offset, *bit);
            }
        }
    }
}

/// Every entry of `log`, read in runs; panics if a read fails.
fn read_all(log: &LogStore<SimDisk>) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut next = log.first_index();
    while next <= log.last_index() {
        let got = log.read(next, 1 << 20).expect("a recovered entry reads back");
        let last = got.last().expect("a read below the last index returns entries");
        assert_eq!(got[0].index, next, "a read starts where asked");
        next = last.index.next();
        entries.extend(got);
    }
    entries
}

/// The entries of `log` that read back, one at a time: a read may find a damaged record (a
/// sealed segment's records are checked when read, not at open, unless
/// `check_sealed_at_open`), which must be an error, never a panic nor other bytes.
fn read_each(log: &LogStore<SimDisk>) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut next = log.first_index();
    while next <= log.last_index() {
        match log.read(next, 0) {
            Ok(got) => {
                assert_eq!(got.len(), 1, "a read of at most 0 bytes returns one entry");
                assert_eq!(got[0].index, next, "a read starts where asked");
                entries.extend(got);
            }
            Err(crate::storage::ReadError::Corrupt(_)) => {}
            Err(e) => panic!("reading recovered entry {next}: {e}"),
        }
        next = next.next();
    }
    entries
}

/// Opens a log whose files `data` damaged: it writes a valid base log on the simulated disk,
/// then applies edits read from `data` (pick a file among the segments, their index files and
/// the hard state; overwrite bytes at an offset, cut the file, or flip a bit), and opens it
/// again, twice over: on one copy checking every record at open (`check_sealed_at_open`), on
/// another trusting the sealed segments' index files where they pass their checks. Opening
/// may fail with an error; it must not panic. When the checking open succeeds, every
/// recovered entry must read back, and opening once more must recover the same log (a cut
/// torn tail stays cut). When the edits only cut files and flipped at most three bits, the
/// recovered log must moreover be a prefix of the written one, entry for entry, starting after
/// the reset's (105, term 4): CRC32 catches every error of up to three bits in a record, a
/// header or an index of this size, and a cut only removes; and then the trusting open must
/// recover the same log whenever the checking one does. (Overwrites and more flips are left
/// out of those checks: they can make a record or an index whose checksum matches, which no
/// checksum can tell from a written one.) The trusting open's reads may find damage the
/// checking open would have refused to open with; every entry they return must be the
/// written one when the edits were few flips and cuts.
pub fn recovery(data: &[u8]) -> bool {
    let checked = Rc::new(SimDisk::new());
    let trusting = Rc::new(SimDisk::new());
    let written = base_log(&checked);
    base_log(&trusting);
    let (mut overwrote, mut flips) = (false, 0);
    let dir = Path::new(RECOVERY_DIR);
    let mut input = Reader(data);
    let mut edits = 0;
    while !input.is_empty() && edits < 16 {
        edits += 1;
        let files = checked.file_names(dir);
        if files.is_empty() {
            break;
        }
        let name = files[usize::from(input.u8()) % files.len()].clone();
        let len = checked.file_bytes(&dir.join(&name)).map_or(0, |b| b.len());
        let op = input.u8();
        let offset = usize::from(input.u16()) % len.max(1);
        let edit = match op % 3 {
            0 => {
                let n = usize::from(input.u8() % 32);
                let bytes = input.bytes(n).to_vec();
                overwrote |= !bytes.is_empty();
                Edit::Overwrite(name, offset, bytes)
            }
            1 => Edit::Cut(name, offset),
            _ => {
                flips += 1;
                Edit::Flip(name, offset, input.u8() % 8)
            }
        };
        edit.apply(&checked, dir);
        edit.apply(&trusting, dir);
    }
    let few = !overwrote && flips <= 3;
    let checking = LogOptions { check_sealed_at_open: true, ..recovery_options() };
    let checked_log = match LogStore::open(dir, checking, checked.clone()) {
        Ok((log, recovery)) => {
            let first = read_all(&log);
            assert_eq!(first.len() as u64, recovery.last_index.get() + 1 - log.first_index().get());
            assert_eq!(recovery.segments_indexed, 0, "a checking open took an index");
            if few {
                assert!(first.len() <= written.len(), "recovered more entries than were written");
                let head = written.first().map_or(LogIndex(1), |e| e.index);
                assert_eq!(log.first_index(), head, "recovery dropped the log's head");
                assert_eq!(
                    log.term(head.prev()),
                    Some(Term(4)),
                    "the reset's previous term was lost"
                );
                if let Some(i) = first.iter().zip(&written).position(|(got, wrote)| got != wrote) {
                    panic!(
                        "entry {} recovered as {:?} but written as {:?} (payloads equal: {})",
                        written[i].index,
                        first[i],
                        written[i],
                        first[i].data == written[i].data
                    );
                }
            }
            drop(log);
            let (again, _) =
                LogStore::open(dir, checking, checked.clone()).expect("a recovered log reopens");
            assert_eq!(read_all(&again), first, "opening twice recovered different logs");
            Some(first)
        }
        Err(_) => None,
    };
    let trusted = match LogStore::open(dir, recovery_options(), trusting.clone()) {
        Ok((log, _)) => {
            let got = read_each(&log);
            if few {
                for e in &got {
                    let k = written.iter().position(|w| w.index == e.index);
                    assert_eq!(
                        k.map(|k| &written[k]),
                        Some(e),
                        "entry {} read back wrong",
                        e.index
                    );
                }
            }
            let range = (log.first_index(), log.last_index());
            drop(log);
            let (again, _) = LogStore::open(dir, recovery_options(), trusting.clone())
                .expect("a log recovered from its index files reopens");
            assert_eq!((again.first_index(), again.last_index()), range, "reopened differently");
            assert_eq!(read_each(&again), got, "opening twice read different entries");
            Some((range, got))
        }
        Err(_) => None,
    };
    if let (Some(first), true) = (&checked_log, few) {
        let (range, got) = trusted.expect("the trusting open fails where the checking one did not");
        let first_index = first.first().map_or(range.0, |e| e.index);
        assert_eq!(range.0, first_index, "the trusting open starts elsewhere");
        assert_eq!(&got, first, "the trusting open recovered another log");
    }
    checked_log.is_some()
}

/// The replica's stored log, as the oracle's driver keeps it: the entries after `base`, whose
/// term is `base_term` (a compacted or reset log starts after its base).
#[derive(Default)]
struct Stored {
    base: LogIndex,
    base_term: Term,
    entries: Vec<Entry>,
}

impl Stored {
    fn offset(&self, index: LogIndex) -> Option<usize> {
        let offset = index.get().checked_sub(self.base.get() + 1)?;
        usize::try_from(offset).ok()
    }

    /// Writes a `Ready`'s entries, replacing the stored suffix from the first one on.
    fn write(&mut self, entries: &[Entry]) {
        if let Some(first) = entries.first() {
            let keep = self.offset(first.index).expect("entries follow the base");
            self.entries.truncate(keep);
            self.entries.extend(entries.iter().cloned());
        }
    }

    /// Forgets the entries before `first`.
    fn compact_before(&mut self, first: LogIndex) {
        let Some(drop) = self.offset(first) else { return };
        if drop == 0 {
            return;
        }
        let base = first.prev();
        self.base_term = self.term(base).expect("the new base is stored");
        self.entries.drain(..drop.min(self.entries.len()));
        self.base = base;
    }
}

impl LogSource for Stored {
    fn first_index(&self) -> LogIndex {
        self.base.next()
    }

    fn last_index(&self) -> LogIndex {
        self.base.plus(self.entries.len() as u64)
    }

    fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.base {
            return Some(self.base_term);
        }
        self.offset(index).and_then(|offset| self.entries.get(offset)).map(|e| e.term)
    }

    fn read(
        &self,
        first: LogIndex,
        last: LogIndex,
        size_bytes_max: usize,
    ) -> Result<Vec<Entry>, LogReadError> {
        let mut out = Vec::new();
        let mut size = 0;
        let mut index = first;
        while index <= last {
            let Some(entry) = self.offset(index).and_then(|offset| self.entries.get(offset)) else {
                return Err(LogReadError::Unavailable { index });
            };
            if !out.is_empty() && size + entry.data.len() + ENTRY_OVERHEAD_BYTES > size_bytes_max {
                break;
            }
            size += entry.data.len() + ENTRY_OVERHEAD_BYTES;
            out.push(entry.clone());
            index = index.next();
        }
        Ok(out)
    }
}

/// `byte % modulo`, except that the top four byte values give the top four `u64`s: a peer may
/// send any value, and arithmetic on the largest ones overflows.
fn small_or_top(byte: u8, modulo: u8) -> u64 {
    if byte >= 252 {
        u64::MAX - u64::from(u8::MAX - byte)
    } else {
        u64::from(byte % modulo)
    }
}

/// Builds a peer message of any kind from `input`: small terms and indexes (so that they meet
/// the replica's own) or the largest ones, any sender (including unknown ones and itself).
fn message(input: &mut Reader<'_>) -> Message {
    let from = NodeId(u64::from(input.u8() % 5));
    let term = Term(small_or_top(input.u8(), 8));
    let mut index = || LogIndex(small_or_top(input.u8(), 24));
    let (a, b, c) = (index(), index(), index());
    let flags = input.u8();
    let small_term = Term(u64::from(flags >> 5));
    let body = match input.u8() % 11 {
        0 => MessageBody::RequestVote(RequestVote {
            pre_vote: flags & 1 != 0,
            last_log_index: a,
            last_log_term: small_term,
            leadership_transfer: flags & 2 != 0,
        }),
        1 => MessageBody::RequestVoteResponse(RequestVoteResponse {
            pre_vote: flags & 1 != 0,
            granted: flags & 2 != 0,
        }),
        2 => {
            let count = input.u8() % 6;
            let entries = (0..u64::from(count))
                .map(|k| Entry {
                    index: LogIndex(a.get().wrapping_add(1 + k)),
                    term: Term(u64::from(input.u8() % 8)),
                    kind: if flags & 4 != 0 { EntryKind::Noop } else { EntryKind::Normal },
                    data: Bytes::from(vec![input.u8(); usize::from(flags & 3)]),
                })
                .collect();
            MessageBody::AppendEntries(AppendEntries {
                prev_log_index: a,
                prev_log_term: small_term,
                leader_commit: b,
                entries,
            })
        }
        3 => MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { match_index: a }),
        4 => MessageBody::AppendEntriesResponse(AppendEntriesResponse::Reject {
            rejected_index: a,
            hint_index: b,
            hint_term: small_term,
        }),
        5 => MessageBody::Heartbeat(Heartbeat {
            leader_commit: a,
            read_context: (flags & 1 != 0).then_some(c.get()),
        }),
        6 => MessageBody::HeartbeatResponse(HeartbeatResponse {
            read_context: (flags & 1 != 0).then_some(c.get()),
        }),
        7 => MessageBody::TimeoutNow,
        8 => MessageBody::ReadIndex(ReadIndex { request_id: c.get() }),
        9 => MessageBody::LogStart(LogStart {
            index: a,
            term: small_term,
            leader_commit: b,
            client_seqs: Vec::new(),
        }),
        _ => MessageBody::ReadIndexResponse(ReadIndexResponse {
            request_id: c.get(),
            read_index: (flags & 1 != 0).then_some(b),
        }),
    };
    Message { log: LogId(1), from, to: NodeId(1), term, body }
}

/// Runs replica 1 of three through a sequence read from `data`: ticks, peer messages of any kind
/// with any fields, proposals and drains whose writes become durable at once. A message may be
/// refused with an error; nothing may panic, and the core's invariants
/// ([`RaftCore::check_invariants`]) must hold after every input. Returns whether any message was
/// accepted.
pub fn raft_step(data: &[u8]) -> bool {
    let voters = vec![NodeId(1), NodeId(2), NodeId(3)];
    let mut config = Config::new(NodeId(1), LogId(1), voters);
    config.election_timeout_ticks = 4;
    config.append_entry_count_max = 8;
    config.inflight_message_count_max = 4;
    let mut core = RaftCore::new(config).expect("a valid configuration");
    let mut stored = Stored::default();
    let mut input = Reader(data);
    let mut accepted = false;
    while !input.is_empty() {
        match input.u8() % 9 {
            0 => core.tick(),
            1 => {
                let payloads = vec![(EntryKind::Normal, Bytes::from(vec![input.u8(); 3]))];
                let _ = core.propose(payloads);
            }
            2 => {
                let ready = core.ready(&stored);
                if let Some((index, term)) = ready.log_start {
                    stored = Stored { base: index, base_term: term, entries: Vec::new() };
                }
                stored.write(&ready.entries);
                if let Some((index, term)) = ready.persist_point() {
                    core.persisted(index, term);
                }
            }
            3 if core.first_index() <= stored.first_index() => {
                // The driver compacts (not while a log start waits for the next drain, as the
                // runtime): the core forgets what it may, the store the same.
                let first = core.compact_before(LogIndex(u64::from(input.u8() % 32)));
                assert!(first <= core.commit_index().next(), "only committed entries go");
                stored.compact_before(first);
            }
            3 => {}
            _ => {
                let message = message(&mut input);
                accepted |= core.step(message).is_ok();
            }
        }
        if let Err(violation) = core.check_invariants() {
            panic!("the core broke an invariant: {violation}");
        }
    }
    accepted
}

#[cfg(test)]
mod tests {
    //! Hand-made inputs at the top of the integer ranges, through the oracles.

    use super::{raft_step, record};
    use crate::storage::format::{encode_record, SegmentHeader, SEGMENT_HEADER_BYTES};
    use raftwal_wire::types::{ClusterId, EntryKind, LogId, LogIndex, Term};

    /// The `raft_step` input of a message from node 2: term byte, three index bytes (252 to
    /// 255 give the top four u64s), flags (the small term in the top three bits), kind.
    fn message(term: u8, indexes: [u8; 3], flags: u8, kind: u8) -> Vec<u8> {
        let mut out = vec![4, 2, term];
        out.extend_from_slice(&indexes);
        out.extend_from_slice(&[flags, kind]);
        out
    }

    /// A leader starts replica 1's log after index u64::MAX - 2 (or u64::MAX - 1); replica 1
    /// campaigns, wins with node 2's (pre-)votes and takes proposals. Before the log's top was
    /// bounded, its no-op and the next proposal went up to u64::MAX and `last_index + 1`
    /// overflowed (a panic). Kept in the corpus as `regress-leader-at-the-top`.
    fn leader_at_the_top(index: u8) -> Vec<u8> {
        // LogStart { index, term 1, leader_commit: index } in term 1; drain.
        let mut input = message(1, [index, index, 0], 1 << 5, 9);
        input.push(2);
        // Ticks past the election timeout, then node 2 grants the pre-vote and the vote of
        // term 2 (whichever the replica asks for; the other is ignored).
        input.extend_from_slice(&[0; 10]);
        input.extend(message(2, [0, 0, 0], 0b11, 1));
        input.extend(message(2, [0, 0, 0], 0b10, 1));
        // Proposals and drains.
        for _ in 0..4 {
            input.extend_from_slice(&[1, 7, 2]);
        }
        input
    }

    #[test]
    fn a_replica_led_to_the_top_of_the_index_range_neither_panics_nor_passes_it() {
        // (u64::MAX as the start is refused at the gateway; the votes are taken all the same.)
        for index in [252, 253, 254, 255] {
            assert!(raft_step(&leader_at_the_top(index)), "index byte {index}");
        }
    }

    /// Records and segment headers with fields at the top of their ranges decode (or are
    /// refused) without a panic, and what decodes encodes back to the same bytes.
    #[test]
    fn records_and_headers_with_the_largest_fields_round_trip() {
        let mut bytes = vec![0u8; 64];
        encode_record(
            &mut bytes[..40],
            LogIndex(u64::MAX),
            Term(u64::MAX),
            EntryKind::Tagged,
            u32::MAX,
            &[9; 8],
        );
        assert!(record(&bytes), "index and term u64::MAX, batch offset u32::MAX");
        // A batch offset reaching before index 1 is refused.
        encode_record(
            &mut bytes[..40],
            LogIndex(u64::from(u32::MAX)),
            Term(1),
            EntryKind::Normal,
            u32::MAX,
            &[9; 8],
        );
        assert!(!record(&bytes));
        // A payload length of u32::MAX runs past the bytes: refused.
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(!record(&bytes));
        let mut block = vec![0u8; SEGMENT_HEADER_BYTES];
        for (first_index, recycled, base) in [(u64::MAX, false, false), (0, true, true)] {
            let header = SegmentHeader {
                first_index: LogIndex(first_index),
                prev_term: Term(u64::MAX),
                cluster_id: ClusterId(u64::MAX),
                log_id: LogId(u64::MAX),
                recycled,
                base,
            };
            header.encode(&mut block);
            assert!(record(&block), "{header:?}");
        }
    }
}
