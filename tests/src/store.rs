//! The storage of a simulated node: the real [`LogStore`] on the node's own [`SimDisk`].
//!
//! Owns: [`SimStore`]: the node's disk (which outlives crashes), the log store while the node
//! is up, the [`DurableImage`] the checker reads, the faults that outlive a crash (a full disk
//! stays full), and the checks the storage must pass at the seams: recovery returns exactly the
//! durable image, durable entries vanish only through a truncation the driver asked for, a
//! failed fsync poisons the log for good.
//! Must not: make anything durable on its own (only the disk's completions, which the driver
//! schedules, and the store's own synchronous calls do), or read the durable image through the
//! log store.
//! Invariants:
//! 1. The disk runs in manual mode: a queued write or fsync completes only when the driver runs
//!    it ([`SimDisk::run_pending`]).
//! 2. `log` is `Some` exactly while the node is up.
//! 3. After [`SimStore::refresh`], `durable` matches the disk's durable image.

use crate::durable::{DurableImage, ImageError, Reread};
use raftwal::raft::{LogReadError, LogSource, ENTRY_OVERHEAD_BYTES};
use raftwal::storage::{
    AppendError, HardStateError, LogOptions, LogStats, LogStore, ReadError, Recovery, SimDisk,
    SubmitError, Tear, TruncateError,
};
use raftwal_wire::types::{Entry, EntryKind, HardState, LogIndex, Term};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Where every simulated node keeps its log, on its own disk.
pub const LOG_DIR: &str = "/raftwal/log";

/// A simulated node's storage. See the module documentation.
#[derive(Debug)]
pub struct SimStore {
    disk: Rc<SimDisk>,
    dir: PathBuf,
    options: LogOptions,
    log: Option<LogStore<SimDisk>>,
    durable: DurableImage,
    /// The lowest index a truncation may have removed since the durable image was last read:
    /// durable entries from there on may vanish.
    truncated_from: Option<LogIndex>,
    /// A full disk: the space the files may use, restored after every crash.
    capacity_bytes: Option<u64>,
    /// What the log stores closed so far wrote.
    retired: LogStats,
}

impl SimStore {
    /// A node with an empty disk (the log is created at the first [`SimStore::open`]).
    pub fn new(options: LogOptions) -> SimStore {
        let disk = Rc::new(SimDisk::new());
        disk.set_manual(true);
        let dir = PathBuf::from(LOG_DIR);
        SimStore {
            durable: DurableImage::new(&dir),
            disk,
            dir,
            options,
            log: None,
            truncated_from: None,
            capacity_bytes: None,
            retired: LogStats::default(),
        }
    }

    /// A node whose disk already holds `hard_state` and `entries` durably (for scenarios that
    /// start from given logs, such as the paper's Figure 7).
    pub fn with_durable(options: LogOptions, hard_state: HardState, entries: &[Entry]) -> SimStore {
        let store = SimStore::new(options);
        let (mut log, _) = LogStore::open(&store.dir, options, store.disk.clone())
            .expect("a fresh simulated disk opens");
        log.save_hard_state(hard_state).expect("a fresh simulated disk saves");
        log.append(entries).expect("scenario logs are consecutive with terms that never fall");
        log.flush().expect("a fresh simulated disk syncs");
        drop(log);
        store
    }

    /// The node's disk.
    pub fn disk(&self) -> &SimDisk {
        &self.disk
    }

    /// The log store, while the node is up.
    pub fn log(&self) -> Option<&LogStore<SimDisk>> {
        self.log.as_ref()
    }

    /// The log store, mutably, while the node is up.
    pub fn log_mut(&mut self) -> Option<&mut LogStore<SimDisk>> {
        self.log.as_mut()
    }

    /// The log as the core reads it. Panics if the node is down.
    pub fn source(&self) -> StoredLog<'_> {
        StoredLog(self.log.as_ref().expect("the log is read only while the node is up"))
    }

    /// What the disk holds durably, as of the last [`SimStore::refresh`].
    pub fn durable(&self) -> &DurableImage {
        &self.durable
    }

    /// Opens the log on the disk, recovering what it holds, and checks the recovery: it must
    /// lose nothing durable and return exactly the disk's durable image (entries, terms,
    /// payloads and hard state).
    pub fn open(&mut self) -> Result<Recovery, ImageError> {
        assert!(self.log.is_none(), "only a closed log opens");
        let (log, recovery) = LogStore::open(&self.dir, self.options, self.disk.clone())
            .map_err(|error| ImageError(format!("the log does not reopen: {error}")))?;
        if let Some(from) = self.durable.refresh(&self.disk, Reread::Full)? {
            return Err(ImageError(format!("recovery lost durable entries from {from}")));
        }
        let durable = &self.durable;
        let mismatch = |what: String| {
            Err(ImageError(format!("recovery disagrees with the durable image: {what}")))
        };
        if recovery.hard_state != durable.hard_state() {
            return mismatch(format!(
                "hard state {:?}, durable {:?}",
                recovery.hard_state,
                durable.hard_state()
            ));
        }
        if recovery.last_index != durable.last_index() {
            return mismatch(format!(
                "log ends at {}, durable at {}",
                recovery.last_index,
                durable.last_index()
            ));
        }
        let entries = if recovery.last_index < recovery.first_index {
            Vec::new()
        } else {
            log.read(recovery.first_index, usize::MAX)
                .map_err(|error| ImageError(format!("the recovered log does not read: {error}")))?
        };
        if entries.len() as u64 != recovery.last_index.distance_from(recovery.first_index.prev()) {
            return mismatch(format!("{} entries read back", entries.len()));
        }
        for entry in &entries {
            let stored = durable.entry(entry.index);
            let read = crate::checker::entry_hash(entry.kind, &entry.data);
            if stored.map(|durable| (durable.term, durable.hash)) != Some((entry.term, read)) {
                return mismatch(format!(
                    "entry {}/{} reads back as {stored:?}",
                    entry.index, entry.term
                ));
            }
        }
        self.log = Some(log);
        Ok(recovery)
    }

    /// Removes the stored entries after `index` (durably, before returning), noting that durable
    /// entries from `index + 1` on may vanish.
    pub fn truncate_after(&mut self, index: LogIndex) -> Result<(), TruncateError> {
        let log = self.log.as_mut().expect("only an open log truncates");
        let from = index.next();
        self.truncated_from = Some(self.truncated_from.map_or(from, |earlier| earlier.min(from)));
        log.truncate_after(index)
    }

    /// Reads the durable image again. Returns the lowest index whose durable entry a truncation
    /// removed, if any; a durable entry that vanished any other way is an error.
    pub fn refresh(&mut self) -> Result<Option<LogIndex>, ImageError> {
        let reread = if self.truncated_from.is_some() { Reread::Full } else { Reread::IfChanged };
        let lost = self.durable.refresh(&self.disk, reread)?;
        let allowed = self.truncated_from.take();
        match lost {
            Some(from) if allowed.is_none_or(|allowed| from < allowed) => Err(ImageError(format!(
                "durable entry {from} vanished, but no truncation removed it (truncated from \
                 {allowed:?})"
            ))),
            lost => Ok(lost),
        }
    }

    /// The node crashes: the disk loses everything not durable (keeping a torn prefix of its
    /// last unsynced write if `tear` says so) and the log store is gone. Returns the lowest
    /// durable index a truncation in progress removed, if any.
    pub fn crash(&mut self, tear: Tear) -> Result<Option<LogIndex>, ImageError> {
        // The disk crashes first: dropping the store first would let its batch in flight finish.
        self.disk.crash(tear);
        self.retire_log();
        self.apply_capacity();
        let allowed = self.truncated_from.take();
        match self.durable.refresh(&self.disk, Reread::Full)? {
            Some(from) if allowed.is_none_or(|allowed| from < allowed) => Err(ImageError(format!(
                "the crash lost durable entry {from}, which no truncation removed"
            ))),
            lost => Ok(lost),
        }
    }

    /// Closes the log without crashing the disk: what was written stays readable, durable or
    /// not. Only the planted driver bug that reopens a poisoned log in the same boot does this.
    pub fn close(&mut self) {
        self.retire_log();
    }

    fn retire_log(&mut self) {
        if let Some(log) = self.log.take() {
            let stats = log.stats();
            self.retired.batches += stats.batches;
            self.retired.entries += stats.entries;
            self.retired.data_syncs += stats.data_syncs;
            self.retired.bytes_written += stats.bytes_written;
        }
    }

    /// What every log store of this node wrote: batches, entries, data fsyncs, bytes.
    pub fn batch_stats(&self) -> LogStats {
        let mut stats = self.retired;
        if let Some(log) = &self.log {
            let live = log.stats();
            stats.batches += live.batches;
            stats.entries += live.entries;
            stats.data_syncs += live.data_syncs;
            stats.bytes_written += live.bytes_written;
        }
        stats
    }

    /// Lets the queued ops run into a crash: `points` more write or sync points succeed, the
    /// next one fails and the disk is down until [`SimStore::crash`].
    pub fn run_into_crash(&self, points: u64) {
        let mut faults = self.disk.faults();
        faults.crash_at_point = Some(self.disk.stats().points + points);
        self.disk.set_faults(faults);
        self.disk.run_pending(usize::MAX);
    }

    /// Arms a crash: `points` more write or sync points succeed, whatever runs them.
    pub fn arm_crash(&self, points: u64) {
        let mut faults = self.disk.faults();
        faults.crash_at_point = Some(self.disk.stats().points + points);
        self.disk.set_faults(faults);
    }

    /// Disarms a crash that has not fired.
    pub fn disarm_crash(&self) {
        let mut faults = self.disk.faults();
        faults.crash_at_point = None;
        self.disk.set_faults(faults);
    }

    /// Makes the next fdatasync fail (EIO), as a dying device does.
    pub fn fail_next_sync(&self) {
        let mut faults = self.disk.faults();
        faults.fail_next_sync = true;
        self.disk.set_faults(faults);
    }

    /// Fills the disk: the files may grow by `slack_bytes` at most (`None` frees it again).
    pub fn set_full(&mut self, slack_bytes: Option<u64>) {
        self.capacity_bytes = slack_bytes.map(|slack| self.disk.used_bytes() + slack);
        self.apply_capacity();
    }

    /// Heals the disk: no armed crash, no failing fsync, room again.
    pub fn clear_faults(&mut self) {
        self.capacity_bytes = None;
        self.disk.set_faults(raftwal::storage::SimFaults::default());
    }

    /// Whether the disk is full (a capacity is set).
    pub fn is_full(&self) -> bool {
        self.capacity_bytes.is_some()
    }

    fn apply_capacity(&self) {
        let mut faults = self.disk.faults();
        faults.capacity_bytes = self.capacity_bytes;
        self.disk.set_faults(faults);
    }

    /// Checks that the log is poisoned for good after a failed write or fsync: it says so, it
    /// refuses every kind of write, and its durable index did not pass `durable_before`.
    pub fn confirm_poisoned(&mut self, durable_before: LogIndex) -> Result<(), String> {
        let log = self.log.as_mut().expect("only an open log is poisoned");
        let Some(poison) = log.poisoned().cloned() else {
            return Err("a failed write or fsync did not poison the log".to_string());
        };
        if log.durable_index() > durable_before {
            return Err(format!(
                "the durable index moved from {durable_before} to {} in a failed batch ({poison})",
                log.durable_index()
            ));
        }
        let next = Entry {
            index: log.last_index().next(),
            term: log.last_term(),
            kind: EntryKind::Normal,
            data: bytes::Bytes::new(),
        };
        let hard_state = log.hard_state();
        let refused = matches!(log.append(&[next]), Err(AppendError::Poisoned(_)))
            && matches!(log.submit(), Err(SubmitError::Poisoned(_)))
            && matches!(log.save_hard_state(hard_state), Err(HardStateError::Poisoned(_)))
            && matches!(log.truncate_after(LogIndex::ZERO), Err(TruncateError::Poisoned(_)));
        if refused {
            Ok(())
        } else {
            Err(format!("the poisoned log ({poison}) accepted a write"))
        }
    }

    /// The directory of the log on the disk.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The stored log as the core reads it ([`LogSource`]): everything handed to the store,
/// durable or not (the core reads only entries it knows durable).
#[derive(Clone, Copy, Debug)]
pub struct StoredLog<'a>(&'a LogStore<SimDisk>);

impl LogSource for StoredLog<'_> {
    fn last_index(&self) -> LogIndex {
        self.0.last_index()
    }

    fn term(&self, index: LogIndex) -> Option<Term> {
        self.0.term(index)
    }

    fn read(
        &self,
        first: LogIndex,
        last: LogIndex,
        size_bytes_max: usize,
    ) -> Result<Vec<Entry>, LogReadError> {
        if first > last || first > self.0.last_index() {
            return Err(LogReadError::Unavailable { index: first });
        }
        let mut entries = self.0.read(first, size_bytes_max).map_err(|error| match error {
            ReadError::Compacted { .. } | ReadError::BeyondEnd { .. } => {
                LogReadError::Unavailable { index: first }
            }
            other => LogReadError::Storage { reason: other.to_string() },
        })?;
        // The store counts payload bytes; the core's budget also counts each entry's overhead.
        let (mut size, mut keep) = (0, 0);
        for entry in &entries {
            let entry_size = entry.data.len() + ENTRY_OVERHEAD_BYTES;
            if entry.index > last || (keep > 0 && size + entry_size > size_bytes_max) {
                break;
            }
            size += entry_size;
            keep += 1;
        }
        entries.truncate(keep);
        if entries.is_empty() {
            return Err(LogReadError::Unavailable { index: first });
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::entry_hash;
    use raftwal::storage::format::SegmentId;
    use raftwal::storage::HARD_STATE_FILE;
    use raftwal_wire::types::NodeId;

    const OPTIONS: LogOptions = crate::scenario::SCENARIO_LOG_OPTIONS;

    fn entries(first: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(offset, term)| Entry {
                index: LogIndex(first + offset as u64),
                term: Term(*term),
                kind: EntryKind::Normal,
                data: bytes::Bytes::from(vec![b'x'; 100 + offset]),
            })
            .collect()
    }

    fn open(store: &mut SimStore) {
        store.open().expect("a consistent disk opens");
    }

    /// Appends and makes durable through the disk's queue, as the replica loop does.
    fn write_durably(store: &mut SimStore, batch: &[Entry]) {
        store.log_mut().expect("open").append(batch).expect("continues the log");
        loop {
            let log = store.log_mut().expect("open");
            if !log.has_pending() && !log.has_in_flight() {
                break;
            }
            if !log.has_in_flight() {
                log.submit().expect("room on the disk");
            }
            store.disk().run_pending(1);
            store.log_mut().expect("open").process_completions().expect("no fault");
        }
        let log = store.log_mut().expect("open");
        assert_eq!(log.durable_index(), log.last_index());
    }

    #[test]
    fn the_durable_image_holds_only_what_the_disk_completed() {
        let mut store = SimStore::new(OPTIONS);
        open(&mut store);
        let batch = entries(1, &[1, 1, 2]);
        let log = store.log_mut().expect("open");
        log.append(&batch).expect("continues the log");
        log.submit().expect("room");
        assert_eq!(store.refresh(), Ok(None));
        assert_eq!(store.durable().last_index(), LogIndex(0), "queued on the disk, not run");
        store.disk().run_pending(1);
        assert_eq!(store.refresh(), Ok(None));
        assert_eq!(store.durable().last_index(), LogIndex(3), "the batch's fdatasync ran");
        for entry in &batch {
            let durable = store.durable().entry(entry.index).expect("durable");
            assert_eq!(durable.term, entry.term);
            assert_eq!(durable.hash, entry_hash(entry.kind, &entry.data));
        }
        let hard_state = HardState { term: Term(2), vote: Some(NodeId(3)), commit: LogIndex(1) };
        store.log_mut().expect("open").save_hard_state(hard_state).expect("saved");
        assert_eq!(store.refresh(), Ok(None));
        assert_eq!(store.durable().hard_state(), hard_state);
    }

    #[test]
    fn the_image_reads_on_across_segments_and_matches_a_full_reading() {
        let mut store = SimStore::new(OPTIONS);
        open(&mut store);
        // About 120 bytes a record: a 16 KiB segment holds about a hundred.
        for round in 0..10u64 {
            write_durably(&mut store, &entries(round * 40 + 1, &[1; 40]));
            assert_eq!(store.refresh(), Ok(None));
        }
        assert!(store.disk().durable_file_names(store.dir()).len() > 4, "several segments");
        let mut full = DurableImage::new(store.dir());
        assert_eq!(full.refresh(store.disk(), Reread::Full), Ok(None));
        assert_eq!(full.last_index(), LogIndex(400));
        for index in 1..=400 {
            assert_eq!(full.entry(LogIndex(index)), store.durable().entry(LogIndex(index)));
        }
    }

    #[test]
    fn only_a_requested_truncation_may_remove_durable_entries() {
        let mut store = SimStore::new(OPTIONS);
        open(&mut store);
        write_durably(&mut store, &entries(1, &[1; 150]));
        assert_eq!(store.refresh(), Ok(None));
        store.truncate_after(LogIndex(120)).expect("truncated");
        assert_eq!(store.refresh(), Ok(Some(LogIndex(121))));
        assert_eq!(store.durable().last_index(), LogIndex(120));
        write_durably(&mut store, &entries(121, &[2]));
        assert_eq!(store.refresh(), Ok(None));
        // Now durable bytes change behind the store's back: a flipped bit in record 121, the
        // first of the segment the truncation started.
        let segment = store.dir().join(SegmentId(LogIndex(121)).file_name());
        assert!(store.disk().flip_bit(&segment, 4096 + 40, 1));
        // Any disk activity makes the next refresh look again (a hard state save here; a batch
        // would rewrite the damaged partial block from the store's memory and heal it).
        let hard_state = store.log().expect("open").hard_state();
        store.log_mut().expect("open").save_hard_state(hard_state).expect("saved");
        let error = store.refresh().expect_err("a durable entry vanished without a truncation");
        assert!(error.0.contains("no truncation removed it"), "{error}");
    }

    #[test]
    fn a_sealed_segment_that_ends_early_is_an_image_error() {
        let mut store = SimStore::new(OPTIONS);
        open(&mut store);
        write_durably(&mut store, &entries(1, &[1; 150]));
        let first_segment = store.dir().join(SegmentId(LogIndex(1)).file_name());
        assert!(store.disk().flip_bit(&first_segment, 4096 + 10 * 136 + 9, 3));
        let mut image = DurableImage::new(store.dir());
        let error = image.refresh(store.disk(), Reread::Full).expect_err("a hole");
        assert!(error.0.contains("sealed durable segment"), "{error}");
    }

    #[test]
    fn a_hard_state_that_goes_back_is_an_image_error() {
        let mut store = SimStore::new(OPTIONS);
        open(&mut store);
        let hard_state = HardState { term: Term(3), vote: Some(NodeId(1)), commit: LogIndex(0) };
        store.log_mut().expect("open").save_hard_state(hard_state).expect("saved");
        assert_eq!(store.refresh(), Ok(None));
        assert!(store.disk().overwrite(&store.dir().join(HARD_STATE_FILE), 0, &[0; 1024]));
        write_durably(&mut store, &entries(1, &[3]));
        let error = store.refresh().expect_err("the vote of term 3 is gone");
        assert!(error.0.contains("went back"), "{error}");
    }

    #[test]
    fn a_recovery_that_claims_writes_the_disk_does_not_hold_durably_is_caught() {
        let mut store = SimStore::new(OPTIONS);
        open(&mut store);
        write_durably(&mut store, &entries(1, &[1, 1]));
        let log = store.log_mut().expect("open");
        log.append(&entries(3, &[1])).expect("continues");
        log.submit().expect("room");
        store.fail_next_sync();
        store.disk().run_pending(1);
        let failed = store.log_mut().expect("open").process_completions();
        assert!(failed.is_err(), "the fdatasync failed");
        assert_eq!(store.confirm_poisoned(LogIndex(2)), Ok(()));
        // Reopening in the same boot reads the write whose fdatasync failed (fsyncgate).
        store.close();
        let error = store.open().expect_err("recovery returns more than the durable image");
        assert!(error.0.contains("recovery disagrees"), "{error}");
        // After a reboot the disk holds what it really holds, and recovery agrees with it.
        assert_eq!(store.crash(Tear::None), Ok(None));
        open(&mut store);
        assert_eq!(store.log().expect("open").last_index(), LogIndex(2));
    }

    #[test]
    fn a_healthy_log_is_not_taken_for_a_poisoned_one() {
        let mut store = SimStore::new(OPTIONS);
        open(&mut store);
        write_durably(&mut store, &entries(1, &[1]));
        let error = store.confirm_poisoned(LogIndex(1)).expect_err("not poisoned");
        assert!(error.contains("did not poison"), "{error}");
    }

    #[test]
    fn a_full_disk_refuses_a_new_segment_and_loses_nothing() {
        let mut store = SimStore::new(OPTIONS);
        open(&mut store);
        write_durably(&mut store, &entries(1, &[1; 60]));
        store.set_full(Some(0));
        let log = store.log_mut().expect("open");
        log.append(&entries(61, &[1; 200])).expect("queued in memory");
        let mut refused = false;
        for _ in 0..50 {
            let log = store.log_mut().expect("open");
            if !log.has_in_flight() {
                match log.submit() {
                    Err(SubmitError::NoSpace(_)) => {
                        refused = true;
                        break;
                    }
                    other => assert!(other.is_ok(), "{other:?}"),
                }
            }
            store.disk().run_pending(1);
            store.log_mut().expect("open").process_completions().expect("no fault");
        }
        assert!(refused, "the segment roll-over needs space");
        let log = store.log().expect("open");
        assert!(log.poisoned().is_none());
        let durable = log.durable_index();
        assert_eq!(store.refresh(), Ok(None));
        assert_eq!(store.crash(Tear::None), Ok(None));
        open(&mut store);
        assert_eq!(store.log().expect("open").last_index(), durable, "everything durable stays");
        assert!(store.is_full(), "a full disk stays full across a crash");
    }

    #[test]
    fn the_log_source_counts_overhead_and_stops_at_last() {
        let mut store = SimStore::new(OPTIONS);
        open(&mut store);
        write_durably(&mut store, &entries(1, &[1; 10]));
        let source = store.source();
        // Entry i carries 99 + i payload bytes.
        let two = 101 + 102 + 2 * ENTRY_OVERHEAD_BYTES;
        let read = source.read(LogIndex(2), LogIndex(9), two).expect("stored");
        assert_eq!(read.iter().map(|e| e.index.get()).collect::<Vec<_>>(), [2, 3]);
        let read = source.read(LogIndex(2), LogIndex(9), two - 1).expect("stored");
        assert_eq!(read.iter().map(|e| e.index.get()).collect::<Vec<_>>(), [2]);
        let read = source.read(LogIndex(2), LogIndex(9), 1 << 20).expect("stored");
        assert_eq!(read.len(), 8, "never past last");
        assert_eq!(source.read(LogIndex(4), LogIndex(9), 0).expect("stored").len(), 1);
        assert!(source.read(LogIndex(11), LogIndex(12), usize::MAX).is_err());
    }
}
