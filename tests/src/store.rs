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
use raftwal::storage::{
    AppendError, CompactError, HardStateError, LogOptions, LogStats, LogStore, Recovery,
    ResetError, SimDisk, SubmitError, Tear, TruncateError,
};
use raftwal::StoreSource;
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
    /// The durable index when batches were withdrawn: entries after it that reached the disk
    /// may vanish until the log has cleared them (`LogStore::has_withdrawn_records`), however
    /// many refreshes that takes.
    withdrawn_from: Option<LogIndex>,
    /// The highest first index the durable log may have: compactions and log starts the
    /// driver asked for move it; durable entries vanishing from the front beyond it are an
    /// error.
    start_allowed: LogIndex,
    /// A full disk: the space the files may use, restored after every crash.
    capacity_bytes: Option<u64>,
    /// What the log stores closed so far wrote.
    retired: LogStats,
    /// Whether [`SimStore::open`] compares what recovery returns with the durable image.
    check_recovery: bool,
    /// The disk's point count and the log's last and durable indexes at the last invariant check.
    invariants_checked: Option<(u64, LogIndex, LogIndex)>,
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
            withdrawn_from: None,
            start_allowed: LogIndex(1),
            capacity_bytes: None,
            retired: LogStats::default(),
            check_recovery: true,
            invariants_checked: None,
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

    /// Turns off the comparison of what recovery returns with the durable image (to measure
    /// how soon the Raft properties alone notice a recovery that claims too much).
    pub fn without_recovery_check(mut self) -> SimStore {
        self.check_recovery = false;
        self
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
    pub fn source(&self) -> StoreSource<'_, SimDisk> {
        StoreSource(self.log.as_ref().expect("the log is read only while the node is up"))
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
        self.check_start()?;
        if !self.check_recovery {
            self.log = Some(log);
            return Ok(recovery);
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
        if recovery.first_index != durable.first_index() {
            return mismatch(format!(
                "log starts at {}, durable at {}",
                recovery.first_index,
                durable.first_index()
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
    /// entries from `index + 1` on may vanish (and, if a batch it waited for was withdrawn,
    /// those after the durable index: `note_withdrawal`).
    pub fn truncate_after(&mut self, index: LogIndex) -> Result<(), TruncateError> {
        let log = self.log.as_mut().expect("only an open log truncates");
        let from = index.next();
        self.truncated_from = Some(self.truncated_from.map_or(from, |earlier| earlier.min(from)));
        let withdrawn_before = log.stats().withdrawn_batches;
        let result = log.truncate_after(index);
        if self.log.as_ref().is_some_and(|log| log.stats().withdrawn_batches > withdrawn_before) {
            self.note_withdrawal();
        }
        result
    }

    /// Removes the segments whose entries are all before `index` (the driver decided they are
    /// committed and no longer needed): durable entries before the new first index may vanish.
    pub fn compact_before(&mut self, index: LogIndex) -> Result<LogIndex, CompactError> {
        let log = self.log.as_mut().expect("only an open log compacts");
        // A crash in the middle leaves any suffix of the segments removed so far.
        self.start_allowed = self.start_allowed.max(index);
        log.compact_before(index)?;
        Ok(log.first_index())
    }

    /// Replaces the log with an empty one starting after `(index, term)` (a leader's log
    /// start): every durable entry may vanish, the first index may move to `index + 1`, and
    /// entries after `index` may change.
    pub fn reset_to(&mut self, index: LogIndex, term: Term) -> Result<(), ResetError> {
        let log = self.log.as_mut().expect("only an open log resets");
        let from = index.next();
        self.start_allowed = self.start_allowed.max(from);
        self.truncated_from = Some(self.truncated_from.map_or(from, |earlier| earlier.min(from)));
        let withdrawn_before = log.stats().withdrawn_batches;
        let result = log.reset_to(index, term);
        if self.log.as_ref().is_some_and(|log| log.stats().withdrawn_batches > withdrawn_before) {
            self.note_withdrawal();
        }
        result
    }

    /// The durable log may start only where a compaction or a log start allowed it to.
    fn check_start(&self) -> Result<(), ImageError> {
        let first = self.durable.first_index();
        if first > self.start_allowed {
            return Err(ImageError(format!(
                "the durable log starts at {first}, but nothing compacted or reset it past {}",
                self.start_allowed
            )));
        }
        Ok(())
    }

    /// Batches were withdrawn (a write found no space): entries after the durable index that
    /// reached the disk (a withdrawn batch's chunk, or a later batch synced behind the failed
    /// one) were never reported durable, and the next batch clears them before writing, so
    /// they may vanish from the durable image as a truncation's do.
    pub fn note_withdrawal(&mut self) {
        let Some(log) = &self.log else { return };
        let from = log.durable_index().next();
        self.withdrawn_from = Some(self.withdrawn_from.map_or(from, |earlier| earlier.min(from)));
    }

    /// The lowest index whose durable entry may vanish now (a truncation's, or a withdrawal's
    /// until it is cleared); takes the truncation's allowance, and the withdrawal's once the
    /// log no longer holds withdrawn records (or is gone).
    fn take_allowance(&mut self) -> Option<LogIndex> {
        let allowed = match (self.truncated_from.take(), self.withdrawn_from) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if !self.log.as_ref().is_some_and(LogStore::has_withdrawn_records) {
            self.withdrawn_from = None;
        }
        allowed
    }

    /// The log store's own invariants (`LogStore::check_invariants`, which asserts), as an
    /// error instead of a panic so that a run reports its seed. Skipped when neither the disk
    /// nor the log's extent changed since the last check (the check walks the whole tail).
    pub fn check_log_invariants(&mut self) -> Result<(), String> {
        let Some(log) = &self.log else { return Ok(()) };
        let state = (self.disk.stats().points, log.last_index(), log.durable_index());
        if self.invariants_checked == Some(state) {
            return Ok(());
        }
        self.invariants_checked = Some(state);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| log.check_invariants())).map_err(
            |panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_string()));
                format!("the log store broke an invariant: {}", what.unwrap_or_default())
            },
        )
    }

    /// Reads the durable image again. Returns the lowest index whose durable entry a truncation
    /// removed, if any; a durable entry that vanished any other way is an error.
    pub fn refresh(&mut self) -> Result<Option<LogIndex>, ImageError> {
        let reread = if self.truncated_from.is_some() || self.withdrawn_from.is_some() {
            Reread::Full
        } else {
            Reread::IfChanged
        };
        let lost = self.durable.refresh(&self.disk, reread)?;
        self.check_start()?;
        let allowed = self.take_allowance();
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
        let allowed = self.take_allowance();
        let lost = self.durable.refresh(&self.disk, Reread::Full)?;
        self.check_start()?;
        match lost {
            Some(from) if allowed.is_none_or(|allowed| from < allowed) => Err(ImageError(format!(
                "the crash lost durable entry {from}, which no truncation removed"
            ))),
            lost => Ok(lost),
        }
    }

    /// The process dies and the machine stays up: queued disk ops never run, but what was
    /// written stays readable (in the page cache), durable or not, until a crash or a sync.
    pub fn kill(&mut self) {
        self.disk.restart_process();
        self.retire_log();
        self.apply_capacity();
    }

    fn retire_log(&mut self) {
        if let Some(log) = self.log.take() {
            self.retired = self.retired.plus(&log.stats());
        }
    }

    /// The node's disk is replaced by an empty one (a disk swapped after a failure, or a log
    /// directory moved away): its log and hard state are gone. The node must be down. The new
    /// disk keeps the old one's order of running queued ops (the device model) and its
    /// stale-cache setting (a planted bug); its durable image and allowances start over. The
    /// log store, if open, is dropped first.
    pub fn wipe(&mut self, keeps_stale_cache: bool) {
        self.retire_log();
        let disk = Rc::new(SimDisk::new());
        disk.set_manual(true);
        disk.set_keeps_stale_cache(keeps_stale_cache);
        let reorder_seed = self.disk.faults().reorder_seed;
        let mut faults = disk.faults();
        faults.reorder_seed = reorder_seed;
        disk.set_faults(faults);
        self.disk = disk;
        self.durable = DurableImage::new(&self.dir);
        self.truncated_from = None;
        self.withdrawn_from = None;
        self.start_allowed = LogIndex(1);
        self.capacity_bytes = None;
        self.invariants_checked = None;
    }

    /// What every log store of this node wrote: batches, entries, data fsyncs, bytes, and the
    /// background work (zero-fill writes and fsyncs, roll-overs into a prepared segment).
    pub fn batch_stats(&self) -> LogStats {
        let mut stats = self.retired;
        if let Some(log) = &self.log {
            stats = stats.plus(&log.stats());
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

    /// Makes the next write fail with ENOSPC, even inside allocated space.
    pub fn no_space_next_write(&self) {
        let mut faults = self.disk.faults();
        faults.no_space_next_write = true;
        self.disk.set_faults(faults);
    }

    /// Fills the disk: the files may grow by `slack_bytes` at most (`None` frees it again).
    pub fn set_full(&mut self, slack_bytes: Option<u64>) {
        self.capacity_bytes = slack_bytes.map(|slack| self.disk.used_bytes() + slack);
        self.apply_capacity();
    }

    /// Heals the disk: no armed crash, no failing fsync, room again (the order in which it runs
    /// queued ops stays: that is the device, not a fault).
    pub fn clear_faults(&mut self) {
        self.capacity_bytes = None;
        let reorder_seed = self.disk.faults().reorder_seed;
        self.disk.set_faults(raftwal::storage::SimFaults {
            reorder_seed,
            ..raftwal::storage::SimFaults::default()
        });
    }

    /// Makes the disk run queued ops in an order drawn from `seed` instead of submission order
    /// (for the rest of the node's life, crashes included): pipelined batches then complete
    /// and persist out of order, and a crash can leave a later batch durable behind a lost one.
    pub fn with_disk_reorder(self, seed: u64) -> SimStore {
        let mut faults = self.disk.faults();
        faults.reorder_seed = Some(seed);
        self.disk.set_faults(faults);
        self
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

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
