//! Corruption and bad-file tests: flipped bits in a sealed segment, in a record header, in the
//! middle of the active segment and in the hard state make open fail with an error naming the
//! file (and the offset and index for records); bad segment files (wrong magic, future version,
//! zero length, cut-short header, foreign cluster) give a clear error. Nothing is dropped
//! silently.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod storage_common;

use bytes::Bytes;
use raftwal::storage::format::{
    decode_record, record_size_bytes, SegmentHeader, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use raftwal::storage::{LogStore, OpenError, SimDisk, CLIENT_SEQS_FILE, HARD_STATE_FILE};
use raftwal_wire::types::{ClusterId, Entry, EntryKind, HardState, LogIndex, NodeId, Term};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use storage_common::{entries, small_options};

const DIR: &str = "/logs/c";

/// A closed log with several sealed segments and a partly filled active one, all durable.
fn build() -> (Rc<SimDisk>, Vec<String>) {
    let disk = Rc::new(SimDisk::new());
    let (mut log, _) = LogStore::open(Path::new(DIR), small_options(true), disk.clone()).unwrap();
    for round in 0..20 {
        let next = log.last_index().get() + 1;
        log.append(&entries(next, 5, 1 + round / 7)).unwrap();
        log.flush().unwrap();
    }
    log.save_hard_state(HardState { term: Term(3), vote: Some(NodeId(1)), commit: LogIndex(50) })
        .unwrap();
    drop(log);
    let segments: Vec<String> =
        disk.file_names(Path::new(DIR)).into_iter().filter(|n| n.ends_with(".seg")).collect();
    assert!(segments.len() >= 3, "the fixture needs sealed segments: {segments:?}");
    (disk, segments)
}

fn path(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

fn open(disk: &Rc<SimDisk>) -> Result<LogStore<SimDisk>, OpenError> {
    LogStore::open(Path::new(DIR), small_options(true), disk.clone()).map(|(log, _)| log)
}

fn expect_corrupt(disk: &Rc<SimDisk>, file: &str, offset: Option<u64>) {
    match open(disk) {
        Err(OpenError::Corrupt(c)) => {
            assert_eq!(c.file, path(file), "the error names the file: {c}");
            if let Some(offset) = offset {
                assert_eq!(c.offset, offset, "the error names the offset: {c}");
                assert!(c.index.is_some(), "the error names the index: {c}");
            }
        }
        Err(other) => panic!("expected corruption in {file}, got {other}"),
        Ok(_) => panic!("a corrupt log opened without error"),
    }
}

#[test]
fn clean_fixture_opens() {
    let (disk, _) = build();
    let log = open(&disk).unwrap();
    assert_eq!(log.last_index(), LogIndex(100));
    assert_eq!(log.hard_state().term, Term(3));
}

#[test]
fn flipped_bit_in_a_sealed_segment_payload() {
    let (disk, segs) = build();
    // The first record's payload starts right after the header block and a 32-byte record header.
    let at = SEGMENT_HEADER_BYTES + 32 + 3;
    disk.flip_bit(&path(&segs[0]), at, 2);
    expect_corrupt(&disk, &segs[0], Some(SEGMENT_HEADER_BYTES as u64));
}

#[test]
fn flipped_bit_in_the_last_record_of_a_sealed_segment() {
    let (disk, segs) = build();
    let bytes = disk.file_bytes(&path(&segs[1])).unwrap();
    // The last non-zero byte of a sealed segment belongs to its last record.
    let last = bytes.iter().rposition(|&b| b != 0).unwrap();
    disk.flip_bit(&path(&segs[1]), last, 0);
    expect_corrupt(&disk, &segs[1], None);
}

#[test]
fn flipped_bit_in_a_record_header() {
    let (disk, segs) = build();
    // The index field of the first record of the second segment.
    disk.flip_bit(&path(&segs[1]), SEGMENT_HEADER_BYTES + 9, 4);
    expect_corrupt(&disk, &segs[1], Some(SEGMENT_HEADER_BYTES as u64));
}

#[test]
fn flipped_bit_in_the_middle_of_the_active_segment() {
    let (disk, segs) = build();
    let active = segs.last().unwrap();
    let log = open(&disk).unwrap();
    let first = log.read(LogIndex(1), 0).unwrap();
    assert_eq!(first.len(), 1);
    drop(log);
    let bytes = disk.file_bytes(&path(active)).unwrap();
    let used = bytes.iter().rposition(|&b| b != 0).unwrap();
    assert!(used > SEGMENT_HEADER_BYTES + 200, "the active segment needs several records");
    // A byte in the first half of the used area: valid records follow it.
    let at = SEGMENT_HEADER_BYTES + (used - SEGMENT_HEADER_BYTES) / 3;
    disk.flip_bit(&path(active), at, 5);
    expect_corrupt(&disk, active, None);
}

#[test]
fn flipped_bit_in_the_hard_state() {
    let (disk, _) = build();
    disk.flip_bit(&path(HARD_STATE_FILE), 17, 3);
    expect_corrupt(&disk, HARD_STATE_FILE, None);
}

/// The one case the format cannot tell from a crash: damage to the very last record of the
/// log looks like a torn write. It is cut and reported in `Recovery::torn_tail_bytes` (and
/// logged), and docs/format.md states the limit.
#[test]
fn damage_to_the_last_record_reads_as_a_torn_tail() {
    let (disk, segs) = build();
    let active = segs.last().unwrap();
    let bytes = disk.file_bytes(&path(active)).unwrap();
    let last = bytes.iter().rposition(|&b| b != 0).unwrap();
    disk.flip_bit(&path(active), last, 1);
    let (log, recovery) =
        LogStore::open(Path::new(DIR), small_options(true), disk.clone()).unwrap();
    assert_eq!(log.last_index(), LogIndex(99));
    assert!(recovery.torn_tail_bytes > 0);
}

fn expect_bad_segment(disk: &Rc<SimDisk>, name: &str, needle: &str) {
    match open(disk) {
        Err(e @ OpenError::BadSegment { .. }) => {
            let text = e.to_string();
            assert!(text.contains(name) && text.contains(needle), "unclear error: {text}");
        }
        Err(other) => panic!("expected a bad segment error, got {other}"),
        Ok(_) => panic!("a bad segment was accepted"),
    }
}

#[test]
fn wrong_magic() {
    let (disk, segs) = build();
    disk.overwrite(&path(&segs[1]), 0, b"NOTRAFT!");
    expect_bad_segment(&disk, &segs[1], "bad magic 0x4e4f545241465421 (\"NOTRAFT!\")");
}

#[test]
fn future_version() {
    // A version after this build's, its checksum where version 1 or version 2 keeps it.
    for crc_at in [48, 52] {
        let (disk, segs) = build();
        let mut header = disk.file_bytes(&path(&segs[0])).unwrap()[..SEGMENT_HEADER_BYTES].to_vec();
        header[8..12].copy_from_slice(&3u32.to_le_bytes());
        header[48..56].fill(0);
        let crc = crc32fast::hash(&header[0..crc_at]);
        header[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        disk.overwrite(&path(&segs[0]), 0, &header);
        expect_bad_segment(&disk, &segs[0], "version 3");
    }
}

#[test]
fn zero_length_segment() {
    let (disk, segs) = build();
    disk.set_file_len(&path(segs.last().unwrap()), 0);
    expect_bad_segment(&disk, segs.last().unwrap(), "truncated");
}

#[test]
fn truncated_header() {
    let (disk, segs) = build();
    disk.set_file_len(&path(&segs[1]), 100);
    expect_bad_segment(&disk, &segs[1], "truncated");
}

#[test]
fn segment_of_another_cluster() {
    let (disk, segs) = build();
    let mut header = vec![0u8; SEGMENT_HEADER_BYTES];
    let decoded = SegmentHeader::decode(&disk.file_bytes(&path(&segs[0])).unwrap()).unwrap();
    SegmentHeader { cluster_id: ClusterId(99), ..decoded }.encode(&mut header);
    disk.overwrite(&path(&segs[0]), 0, &header);
    match open(&disk) {
        Err(OpenError::Foreign { file, reason }) => {
            assert_eq!(file, path(&segs[0]));
            // Cluster ids as everywhere else: 16 hexadecimal digits.
            assert!(reason.starts_with("cluster 0000000000000063 log"), "{reason}");
        }
        Err(other) => panic!("expected a foreign segment error, got {other}"),
        Ok(_) => panic!("a foreign segment was accepted"),
    }
}

#[test]
fn missing_middle_segment_is_a_gap() {
    let (disk, segs) = build();
    use raftwal::storage::Disk;
    disk.remove(&path(&segs[1])).unwrap();
    disk.sync_dir(Path::new(DIR)).unwrap();
    // The segment before the gap ends before the next one starts: entries are missing.
    expect_corrupt(&disk, &segs[0], None);
}

/// A log whose hard state file is gone (its term and vote with it) is refused, whether
/// segments or the clients' sequence numbers file (made right after it) show it existed;
/// opened as a new log, the node could vote twice in a term.
#[test]
fn a_missing_hard_state_file_is_corruption() {
    use raftwal::storage::Disk;
    let (disk, segs) = build();
    disk.remove(&path(HARD_STATE_FILE)).unwrap();
    disk.sync_dir(Path::new(DIR)).unwrap();
    expect_corrupt(&disk, HARD_STATE_FILE, None);
    for seg in &segs {
        disk.remove(&path(seg)).unwrap();
    }
    let names = disk.file_names(Path::new(DIR));
    assert!(names.iter().any(|n| n == CLIENT_SEQS_FILE), "{names:?}");
    match open(&disk) {
        Err(OpenError::Corrupt(c)) => {
            assert_eq!(c.file, path(HARD_STATE_FILE), "{c}");
            assert!(c.reason.contains("clients' sequence numbers"), "{c}");
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("a log without its hard state opened as a new one"),
    }
}

/// Bytes that are not zero in the zero-filled space after the last record of the active
/// segment (a torn write there, or damage) are a torn tail: cut, counted, nothing else lost.
#[test]
fn garbage_in_the_zero_filled_space_after_the_end() {
    let (disk, segs) = build();
    let active = segs.last().unwrap();
    let bytes = disk.file_bytes(&path(active)).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    let at = (end + 4096).min(bytes.len() - 1);
    disk.flip_bit(&path(active), at, 6);
    let (log, recovery) =
        LogStore::open(Path::new(DIR), small_options(true), disk.clone()).unwrap();
    assert_eq!(log.last_index(), LogIndex(100));
    // From the end of the last record (its padding may end in zeros) to the flipped byte.
    let torn = recovery.torn_tail_bytes;
    assert!(torn <= (at + 1 - end) as u64 && torn + 8 > (at + 1 - end) as u64, "{torn}");
    drop(log);
    assert!(disk.file_bytes(&path(active)).unwrap()[end..].iter().all(|&b| b == 0), "zeroed");
}

/// A segment that became active from the segment prepared ahead carries a header like any
/// other: damage to it is reported with the file's name.
#[test]
fn flipped_bit_in_the_header_of_a_prepared_segment() {
    let (disk, segs) = build();
    // Every segment but the first was prepared ahead (the fixture rolls over several times).
    disk.flip_bit(&path(&segs[2]), 30, 1);
    expect_bad_segment(&disk, &segs[2], "checksum");
}

/// A sealed segment's file cut inside the zero padding after its last record (found by the
/// `recovery` fuzz target, where it panicked at open) loses no record: the record's header and
/// payload are whole, the padding is zeros by format, and the next segment says where its
/// records end; the log then takes more appends. The active segment cut there is corruption,
/// named, with nothing changed: no record bounds what the cut took after it
/// (`a_last_segment_cut_inside_the_padding_of_an_earlier_record_is_corruption`).
#[test]
fn a_file_cut_inside_the_padding_of_its_last_record_keeps_every_record() {
    let record = |index: u64| Entry {
        index: LogIndex(index),
        term: Term(1),
        kind: EntryKind::Normal,
        data: Bytes::from(vec![index as u8 | 1; 13]),
    };
    for sealed in [true, false] {
        let disk = Rc::new(SimDisk::new());
        let mut log = open(&disk).unwrap();
        for batch in 0..30 {
            let batch: Vec<Entry> = (batch * 20 + 1..=batch * 20 + 20).map(record).collect();
            log.append(&batch).unwrap();
            log.flush().unwrap();
        }
        drop(log);
        let segs: Vec<String> =
            disk.file_names(Path::new(DIR)).into_iter().filter(|n| n.ends_with(".seg")).collect();
        assert!(segs.len() >= 3, "{segs:?}");
        let name = if sealed { &segs[0] } else { segs.last().unwrap() };
        let bytes = disk.file_bytes(&path(name)).unwrap();
        // The end of the last record's payload, before its padding.
        let (mut at, mut end) = (SEGMENT_HEADER_BYTES, 0);
        while let Ok(header) = decode_record(&bytes[at..]) {
            let len = header.payload_bytes as usize;
            end = at + RECORD_HEADER_BYTES + len;
            at += record_size_bytes(len);
        }
        assert!(end < at, "the last record must have padding to cut");
        disk.set_file_len(&path(name), end);
        if !sealed {
            let cut = disk.file_bytes(&path(name)).unwrap();
            match open(&disk) {
                Err(OpenError::Corrupt(c)) => {
                    assert_eq!((c.file, c.offset), (path(name), end as u64));
                    assert_eq!(c.index, Some(LogIndex(601)));
                }
                Err(other) => panic!("expected corruption, got {other}"),
                Ok(_) => panic!("an active segment cut inside its padding opened"),
            }
            assert_eq!(disk.file_bytes(&path(name)).unwrap(), cut, "the file was changed");
            continue;
        }
        let mut log = open(&disk).unwrap_or_else(|e| panic!("sealed {sealed}: {e}"));
        assert_eq!(log.last_index(), LogIndex(600));
        let all: Vec<Entry> = log.read(LogIndex(1), usize::MAX).unwrap();
        assert_eq!(all, (1..=600).map(record).collect::<Vec<_>>(), "sealed {sealed}");
        log.append(&(601..=605).map(record).collect::<Vec<_>>()).unwrap();
        log.flush().unwrap();
        drop(log);
        let log = open(&disk).unwrap();
        assert_eq!(log.last_index(), LogIndex(605), "sealed {sealed}");
        assert_eq!(log.read(LogIndex(601), usize::MAX).unwrap().len(), 5);
    }
}

/// Pipelined batches: a flipped bit in either batch of a pair that was in flight together is
/// corruption once a batch written after both were durable follows (its records say so: their
/// `unsynced_from` is past the bad record). A crash hole is never that.
#[test]
fn flipped_bit_in_a_pipelined_pair_with_a_later_batch_after_it() {
    let options = raftwal::storage::LogOptions {
        segment_size_bytes: 1 << 20,
        batches_in_flight_max: 2,
        ..small_options(true)
    };
    let build = || {
        let disk = Rc::new(SimDisk::new());
        let (mut log, _) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
        log.append(&entries(1, 5, 1)).unwrap();
        assert!(log.submit().unwrap());
        log.append(&entries(6, 5, 1)).unwrap();
        assert!(log.submit().unwrap(), "the second batch is pipelined");
        assert_eq!(log.stats().pipelined_batches, 1);
        assert_eq!(log.flush().unwrap(), LogIndex(10));
        log.append(&entries(11, 5, 1)).unwrap();
        assert_eq!(log.flush().unwrap(), LogIndex(15));
        drop(log);
        disk
    };
    let name = raftwal::storage::SegmentId(LogIndex(1)).file_name();
    let bytes = build().file_bytes(&path(&name)).unwrap();
    // Where each record is: walk the records, skipping the zero gap before the pipelined batch.
    let mut offsets = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    while offsets.len() < 15 {
        match decode_record(&bytes[at..]) {
            Ok(h) => {
                assert_eq!(h.index, LogIndex(offsets.len() as u64 + 1));
                offsets.push(at);
                at += record_size_bytes(h.payload_bytes as usize);
            }
            Err(_) => {
                assert!(bytes[at..at.next_multiple_of(4096)].iter().all(|&b| b == 0));
                at = at.next_multiple_of(4096);
            }
        }
    }
    assert_eq!(offsets[5] % 4096, 0, "the pipelined batch starts on a block boundary");
    assert!(offsets[5] > offsets[4] + record_size_bytes(0), "after a gap");
    let clean = build();
    assert_eq!(open(&clean).map(|_| ()).err().map(|e| e.to_string()), None::<String>);
    // The scan names where record 6 was due: right after record 5, at the gap.
    let gap = offsets[4] + record_size_bytes(storage_common::entry(5, 1).data.len());
    for (index, offset, named) in [
        (1, offsets[0], offsets[0]),
        (5, offsets[4], offsets[4]),
        (6, offsets[5], gap),
        (10, offsets[9], offsets[9]),
    ] {
        let disk = build();
        disk.flip_bit(&path(&name), offset + RECORD_HEADER_BYTES + 1, 4);
        match LogStore::open(Path::new(DIR), options, disk.clone()) {
            Err(OpenError::Corrupt(c)) => {
                assert_eq!(c.offset, named as u64, "index {index}: {c}");
                assert_eq!(c.index, Some(LogIndex(index)), "{c}");
            }
            Err(other) => panic!("index {index}: expected corruption, got {other}"),
            Ok(_) => panic!("index {index}: a corrupt log opened without error"),
        }
    }
}

/// Damage to the last records is a torn tail only above the persisted commit index: at or
/// below it the entries were durable (and committed) when it was saved, so it is corruption,
/// and nothing is cut: the bytes stay for inspection.
#[test]
fn damage_at_or_below_the_persisted_commit_is_corruption_and_nothing_is_cut() {
    let (disk, segs) = build();
    {
        let mut log = open(&disk).unwrap();
        let commit = log.last_index();
        log.save_hard_state(HardState { term: Term(3), vote: Some(NodeId(1)), commit }).unwrap();
    }
    let active = segs.last().unwrap();
    let bytes = disk.file_bytes(&path(active)).unwrap();
    let last = bytes.iter().rposition(|&b| b != 0).unwrap();
    disk.flip_bit(&path(active), last, 1);
    let damaged = disk.file_bytes(&path(active)).unwrap();
    match open(&disk) {
        Err(OpenError::Corrupt(c)) => {
            assert_eq!(c.file, path(active), "{c}");
            assert_eq!(c.index, Some(LogIndex(100)), "{c}");
            assert!(c.reason.contains("commit index 100"), "{c}");
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("committed entries were cut as a torn tail"),
    }
    assert_eq!(disk.file_bytes(&path(active)).unwrap(), damaged, "the file was changed");
}

/// A stray file named like a segment after the real ones is named as what it is, not blamed
/// on the segment before it (which would look cut short against the stray one's name).
#[test]
fn a_stray_segment_file_is_named_not_the_healthy_one_before_it() {
    let (disk, _) = build();
    let stray = "00000000000000999999.seg";
    disk.put_file(&path(stray), &[0x5a; 8192]);
    expect_bad_segment(&disk, stray, "magic");
}

/// A last segment cut short (by something outside raftwal: a crash never shortens a
/// preallocated file) inside its records is corruption, not a torn tail: the records after the
/// cut were durable.
#[test]
fn a_last_segment_cut_inside_its_records_is_corruption() {
    let (disk, segs) = build();
    let active = segs.last().unwrap();
    let bytes = disk.file_bytes(&path(active)).unwrap();
    // Cut in the middle of the second record's payload.
    let first = decode_record(&bytes[SEGMENT_HEADER_BYTES..]).unwrap();
    let second_at = SEGMENT_HEADER_BYTES + record_size_bytes(first.payload_bytes as usize);
    let second = decode_record(&bytes[second_at..]).unwrap();
    assert!(second.payload_bytes > 2, "the fixture's record needs a payload to cut");
    disk.set_file_len(&path(active), second_at + RECORD_HEADER_BYTES + 1);
    match open(&disk) {
        Err(OpenError::Corrupt(c)) => {
            assert_eq!(c.file, path(active), "{c}");
            assert_eq!(c.offset, second_at as u64, "{c}");
            assert!(c.reason.contains("ends inside a record"), "{c}");
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("a cut-short segment lost its records silently"),
    }
}

/// A sealed segment whose file was cut inside the padding of its last record (accepted) is
/// cleared after its records when a deeper truncation makes it the last one: the bytes the file
/// lacks are padding and read as zeros, and the truncation goes through.
#[test]
fn a_truncation_clears_a_segment_cut_inside_its_last_padding() {
    let (disk, segs) = build();
    let first = path(&segs[0]);
    let bytes = disk.file_bytes(&first).unwrap();
    // The end of the last record's payload, before its padding.
    let (mut at, mut end, mut count) = (SEGMENT_HEADER_BYTES, 0, 0u64);
    while let Ok(header) = decode_record(&bytes[at..]) {
        let len = header.payload_bytes as usize;
        end = at + RECORD_HEADER_BYTES + len;
        at += record_size_bytes(len);
        count += 1;
    }
    assert!(end < at && end % 4096 != 0, "the fixture's last record needs padding to cut");
    disk.set_file_len(&first, end);
    let mut log = open(&disk).unwrap();
    // Raft never truncates committed entries: a commit index below the cut.
    log.save_hard_state(HardState { term: Term(3), vote: Some(NodeId(1)), commit: LogIndex(1) })
        .unwrap();
    log.truncate_after(LogIndex(count - 1)).expect("the truncation clears and goes through");
    drop(log);
    let log = open(&disk).unwrap();
    assert_eq!(log.last_index(), LogIndex(count - 1));
}

/// A log directory whose only segment starts at `first` and holds records of the indexes
/// `records` (term 1 each, one byte of payload).
fn only_segment_at(first: u64, records: &[u64]) -> Rc<SimDisk> {
    let records: Vec<Record<'_>> =
        records.iter().map(|&index| (index, EntryKind::Normal, &b"x"[..])).collect();
    only_segment_with(first, &records)
}

/// A log directory whose only segment starts at `first` and holds `records` (index, kind and
/// payload; term 1 each).
fn only_segment_with(first: u64, records: &[Record<'_>]) -> Rc<SimDisk> {
    segments_with(&[(first, records)])
}

/// A record to write: index, kind and payload.
type Record<'a> = (u64, EntryKind, &'a [u8]);

/// A log directory whose segments are `segments`: the first index of each and its records
/// (term 1 each), one after the other from the header on.
fn segments_with(segments: &[(u64, &[Record<'_>])]) -> Rc<SimDisk> {
    use raftwal::storage::Disk;
    let disk = Rc::new(SimDisk::new());
    let (mut log, _) = LogStore::open(Path::new(DIR), small_options(true), disk.clone()).unwrap();
    log.save_hard_state(HardState { term: Term(1), vote: None, commit: LogIndex(0) }).unwrap();
    drop(log);
    for name in disk.file_names(Path::new(DIR)).into_iter().filter(|n| n.ends_with(".seg")) {
        disk.remove(&path(&name)).unwrap();
    }
    disk.sync_dir(Path::new(DIR)).unwrap();
    let options = small_options(true);
    for &(first, records) in segments {
        let header = SegmentHeader {
            first_index: LogIndex(first),
            prev_term: Term(1),
            cluster_id: options.cluster_id,
            log_id: options.log_id,
            recycled: false,
            base: false,
        };
        let mut bytes = vec![0u8; options.segment_size_bytes as usize];
        header.encode(&mut bytes);
        let mut at = SEGMENT_HEADER_BYTES;
        for &(index, kind, payload) in records {
            let size = record_size_bytes(payload.len());
            raftwal::storage::format::encode_record(
                &mut bytes[at..at + size],
                LogIndex(index),
                Term(1),
                kind,
                0,
                payload,
            );
            at += size;
        }
        disk.put_file(&path(&format!("{first:020}.seg")), &bytes);
    }
    disk
}

/// A record at index u64::MAX leaves no index after the log's last entry: recovery refuses it
/// as corruption, naming the file, rather than overflow counting past it (a panic).
#[test]
fn a_record_at_the_largest_index_is_corruption_not_a_panic() {
    let disk = only_segment_at(u64::MAX, &[u64::MAX]);
    expect_corrupt(&disk, &format!("{:020}.seg", u64::MAX), Some(SEGMENT_HEADER_BYTES as u64));
    let disk = only_segment_at(u64::MAX - 1, &[u64::MAX - 1, u64::MAX]);
    let name = format!("{:020}.seg", u64::MAX - 1);
    let second = SEGMENT_HEADER_BYTES + record_size_bytes(1);
    expect_corrupt(&disk, &name, Some(second as u64));
    // Up to the index below it, a log opens and reads.
    let disk = only_segment_at(u64::MAX - 2, &[u64::MAX - 2, u64::MAX - 1]);
    let log = open(&disk).unwrap();
    assert_eq!(log.last_index(), LogIndex(u64::MAX - 1));
    let read = log.read(LogIndex(u64::MAX - 2), usize::MAX).unwrap();
    assert_eq!(read.len(), 2);
    log.check_invariants();
}

/// Index 0 is the empty prefix before every log's first entry, never an entry: a segment that
/// says it starts there is refused, naming the file (before the fix, counting its records from
/// index 0 underflowed: a panic).
#[test]
fn a_segment_starting_at_index_0_is_refused() {
    for records in [&[][..], &[0][..], &[0, 1][..]] {
        let disk = only_segment_at(0, records);
        match open(&disk) {
            Err(OpenError::Corrupt(c)) => {
                assert_eq!(c.file, path(&format!("{:020}.seg", 0)), "{records:?}: {c}");
                assert!(c.reason.contains("index 0"), "{records:?}: {c}");
            }
            Err(other) => panic!("{records:?}: expected corruption, got {other}"),
            Ok(_) => panic!("{records:?}: a segment of index 0 was accepted"),
        }
    }
}

/// A no-op carries no data and a tagged entry at least its 16-byte client id and sequence
/// number: the wire decoder refuses anything else, so a record breaking that rule (checksum
/// valid) could be sent to no follower and no client, and their links would fail on it again and
/// again. Recovery refuses it as corruption, naming file and offset.
#[test]
fn a_record_whose_payload_does_not_fit_its_kind_is_corruption() {
    let tag = [7u8; 16];
    for (kind, payload) in [
        (EntryKind::Noop, &b"x"[..]),
        (EntryKind::Tagged, &tag[..15]),
        (EntryKind::Tagged, &b""[..]),
    ] {
        let second = SEGMENT_HEADER_BYTES + record_size_bytes(1);
        let records = [(1, EntryKind::Normal, &b"x"[..]), (2, kind, payload)];
        let disk = only_segment_with(1, &records);
        expect_corrupt(&disk, &format!("{:020}.seg", 1), Some(second as u64));
    }
    let records = [(1, EntryKind::Noop, &b""[..]), (2, EntryKind::Tagged, &tag[..])];
    let log = open(&only_segment_with(1, &records)).unwrap();
    assert_eq!(log.last_index(), LogIndex(2));
}

/// Records after a sealed segment's live ones (a truncation cut them) are not part of the log,
/// but the highest index among them bounds which later segment the file may be recycled for.
/// One of index u64::MAX (checksum valid) is no record this log ever wrote: open refuses it as
/// corruption (before the fix, compacting the segment away counted one past it: a panic).
#[test]
fn a_cut_record_of_the_largest_index_after_a_sealed_segment_is_corruption() {
    let top = u64::MAX;
    let x = &b"x"[..];
    let live: Vec<Record<'_>> =
        (top - 10..=top - 6).map(|index| (index, EntryKind::Normal, x)).collect();
    let mut sealed = live.clone();
    sealed.extend([(top - 5, EntryKind::Normal, x), (top, EntryKind::Normal, x)]);
    let last: Vec<Record<'_>> = vec![(top - 5, EntryKind::Normal, x)];
    let disk = segments_with(&[(top - 10, &sealed), (top - 5, &last)]);
    match open(&disk) {
        Err(OpenError::Corrupt(c)) => {
            assert_eq!(c.file, path(&format!("{:020}.seg", top - 10)), "{c}");
            assert_eq!(c.index, Some(LogIndex(top)), "{c}");
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(mut log) => {
            let compacted = log.compact_before(LogIndex(top - 5));
            panic!("opened (and compacted: {compacted:?})");
        }
    }
    // Without it, the log opens and compacts.
    let mut sealed = live;
    sealed.push((top - 5, EntryKind::Normal, x));
    let mut log = open(&segments_with(&[(top - 10, &sealed), (top - 5, &last)])).unwrap();
    log.compact_before(LogIndex(top - 5)).unwrap();
    assert_eq!(log.first_index(), LogIndex(top - 5));
    assert_eq!(log.last_index(), LogIndex(top - 5));
}

/// Every segment gone while the hard state holds a term, a vote and a commit index (an
/// operator's removal, a restore that missed them): the entries this node acknowledged are
/// lost, and opening an empty log would let it count in quorums as if it never had them. Open
/// refuses it as corruption of the hard state file, pointing at the rejoin procedure. A hard
/// state never written (a crash between its creation and the first segment's) opens as new.
#[test]
fn a_log_whose_segments_are_gone_is_refused_while_its_hard_state_holds_a_term() {
    use raftwal::storage::Disk;
    let (disk, _) = build();
    for name in disk.file_names(Path::new(DIR)) {
        if name.ends_with(".seg") || name.ends_with(".idx") {
            disk.remove(&path(&name)).unwrap();
        }
    }
    expect_corrupt(&disk, HARD_STATE_FILE, None);
    match open(&disk) {
        Err(OpenError::Corrupt(c)) => assert!(c.reason.contains("term 3"), "{c}"),
        other => panic!("{:?}", other.err()),
    }

    let fresh = Rc::new(SimDisk::new());
    drop(open(&fresh).unwrap());
    for name in fresh.file_names(Path::new(DIR)) {
        if name.ends_with(".seg") {
            fresh.remove(&path(&name)).unwrap();
        }
    }
    let log = open(&fresh).expect("a never-written hard state without a segment opens as new");
    assert_eq!(log.last_index(), LogIndex(0));
}

/// The offsets of the records of a segment file's bytes, walking from the header on (every
/// record follows the one before it: no pipelined gaps in the fixtures that use it).
fn record_offsets(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    while let Ok(header) = decode_record(&bytes[at..]) {
        let len = header.payload_bytes as usize;
        out.push((at, len));
        at += record_size_bytes(len);
    }
    out
}

/// A sealed segment cut inside the padding of its last record opens with every record (the
/// next segment's first index says where its records end), and they stay readable once the
/// segment is no longer mapped and reads take its bytes from the file, which lacks the padding.
#[test]
fn a_sealed_segment_cut_inside_its_last_padding_stays_readable_unmapped() {
    let disk = Rc::new(SimDisk::new());
    let (mut log, _) = LogStore::open(Path::new(DIR), small_options(true), disk.clone()).unwrap();
    for _ in 0..60 {
        let next = log.last_index().get() + 1;
        log.append(&entries(next, 5, 1)).unwrap();
        log.flush().unwrap();
    }
    let last = log.last_index().get();
    drop(log);
    let segs: Vec<String> =
        disk.file_names(Path::new(DIR)).into_iter().filter(|n| n.ends_with(".seg")).collect();
    let mapped_max = small_options(true).sealed_segments_mapped_max;
    assert!(segs.len() > mapped_max + 2, "the first segment must be unmapped: {segs:?}");
    let first = path(&segs[0]);
    let bytes = disk.file_bytes(&first).unwrap();
    let second_first: u64 = segs[1].trim_end_matches(".seg").parse().unwrap();
    let records = record_offsets(&bytes);
    let (at, len) = records[second_first as usize - 2];
    assert_eq!(decode_record(&bytes[at..]).unwrap().index, LogIndex(second_first - 1));
    assert_ne!((RECORD_HEADER_BYTES + len) % 8, 0, "the last live record needs padding to cut");
    disk.set_file_len(&first, at + RECORD_HEADER_BYTES + len);
    let (log, _) = LogStore::open(Path::new(DIR), small_options(true), disk.clone()).unwrap();
    assert_eq!(log.last_index(), LogIndex(last));
    assert!(log.unloaded_segments() > 0, "the cut segment is read from its file");
    for from in 1..=last {
        let got = log
            .read(LogIndex(from), 1)
            .unwrap_or_else(|e| panic!("entry {from} of an opened log is unreadable: {e}"));
        storage_common::assert_genuine(&got[0]);
    }
}

/// A last segment cut (by something outside raftwal) inside the zero padding of a record that
/// is not its last lost the records after it, which were durable: the file then looks exactly
/// like one cut inside the padding of its last record, so neither is read as a whole log.
#[test]
fn a_last_segment_cut_inside_the_padding_of_an_earlier_record_is_corruption() {
    let (disk, segs) = build();
    let active = segs.last().unwrap();
    let bytes = disk.file_bytes(&path(active)).unwrap();
    let records = record_offsets(&bytes);
    // A record with padding after its payload, followed by at least one more.
    let (at, len) = *records[..records.len() - 1]
        .iter()
        .find(|&&(_, len)| !(RECORD_HEADER_BYTES + len).is_multiple_of(8))
        .expect("a record with padding before the last one");
    disk.set_file_len(&path(active), at + RECORD_HEADER_BYTES + len);
    match open(&disk) {
        Err(OpenError::Corrupt(c)) => {
            assert_eq!(c.file, path(active), "{c}");
            assert_eq!(c.offset, (at + RECORD_HEADER_BYTES + len) as u64, "{c}");
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(log) => panic!(
            "a cut-short segment lost durable records silently (the log ends at {})",
            log.last_index()
        ),
    }
}

/// `record` (header and payload of a fresh segment's record) with one field this build does not
/// know (`what`: "unknown kind", "reserved bytes" or "batch offset"), and its checksum made
/// again so that it holds.
fn with_unknown_field(record: &[u8], what: &str) -> Vec<u8> {
    let mut record = record.to_vec();
    match what {
        "unknown kind" => record[24] = 3,
        "reserved bytes" => record[26] = 1,
        _ => record[28..32].copy_from_slice(&u32::MAX.to_le_bytes()),
    }
    let crc = crc32fast::hash(&record[4..]);
    record[..4].copy_from_slice(&crc.to_le_bytes());
    record
}

/// A record whose checksum holds was written whole where it lies: no torn write makes one.
/// When such a record in the last batch of the log holds a field this build does not know (a
/// kind a later build writes, reserved bytes set, a batch offset before index 1), it is
/// corruption, not a torn tail: cutting it would drop a durable, perhaps acknowledged, entry
/// (say one a newer build wrote, after a downgrade).
#[test]
fn a_checksummed_record_with_an_unknown_field_is_never_cut_as_a_torn_tail() {
    for what in ["unknown kind", "reserved bytes", "batch offset"] {
        let (disk, segs) = build();
        let active = segs.last().unwrap();
        let bytes = disk.file_bytes(&path(active)).unwrap();
        let &(at, len) = record_offsets(&bytes).last().unwrap();
        assert_eq!(decode_record(&bytes[at..]).unwrap().index, LogIndex(100));
        let record = with_unknown_field(&bytes[at..at + RECORD_HEADER_BYTES + len], what);
        assert!(decode_record(&record).is_err(), "{what}: the edit must not decode");
        disk.overwrite(&path(active), at, &record);
        match open(&disk) {
            Err(OpenError::Corrupt(c)) => {
                assert_eq!((c.file, c.offset), (path(active), at as u64), "{what}");
                assert_eq!(c.index, Some(LogIndex(100)), "{what}");
            }
            Err(other) => panic!("{what}: expected corruption, got {other}"),
            Ok(log) => panic!(
                "{what}: a record written whole was cut as a torn tail (the log ends at {})",
                log.last_index()
            ),
        }
    }
}

/// The same at the start of a pipelined batch, after the gap of zeros before it: a record whose
/// checksum holds at the block boundary was written there, so the gap is stepped over and the
/// record is corruption, not the start of a torn tail.
#[test]
fn a_checksummed_record_with_an_unknown_field_after_a_pipelined_gap_is_never_cut() {
    let options = raftwal::storage::LogOptions {
        segment_size_bytes: 1 << 20,
        batches_in_flight_max: 2,
        ..small_options(true)
    };
    let disk = Rc::new(SimDisk::new());
    let (mut log, _) = LogStore::open(Path::new(DIR), options, disk.clone()).unwrap();
    log.append(&entries(1, 5, 1)).unwrap();
    assert!(log.submit().unwrap());
    log.append(&entries(6, 5, 1)).unwrap();
    assert!(log.submit().unwrap(), "the second batch is pipelined");
    assert_eq!(log.flush().unwrap(), LogIndex(10));
    drop(log);
    let name = path(&raftwal::storage::SegmentId(LogIndex(1)).file_name());
    let bytes = disk.file_bytes(&name).unwrap();
    let fifth = record_offsets(&bytes).len();
    assert_eq!(fifth, 5, "the pipelined batch starts after a gap");
    let at = (SEGMENT_HEADER_BYTES + 1..bytes.len())
        .step_by(4096)
        .map(|b| b.next_multiple_of(4096))
        .find(|&b| decode_record(&bytes[b..]).is_ok_and(|h| h.index == LogIndex(6)))
        .expect("record 6 at a block boundary");
    let len = decode_record(&bytes[at..]).unwrap().payload_bytes as usize;
    let record = with_unknown_field(&bytes[at..at + RECORD_HEADER_BYTES + len], "unknown kind");
    disk.overwrite(&name, at, &record);
    match LogStore::open(Path::new(DIR), options, disk.clone()) {
        Err(OpenError::Corrupt(c)) => {
            assert_eq!((c.file, c.offset), (name, at as u64));
            assert_eq!(c.index, Some(LogIndex(6)));
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok((log, _)) => panic!(
            "a record written whole was cut as a torn tail (the log ends at {})",
            log.last_index()
        ),
    }
}
