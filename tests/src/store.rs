//! The storage seam of a simulated replica, and a faithful model of written versus durable state.
//!
//! Owns: the [`SimStore`] trait (what the replica loop needs from storage: write, fsync, crash,
//! recover, and read-only inspection for the checker) and [`ModelStore`], its model.
//! Must not: let a crash keep a write whose fsync had not completed unless the caller asks for it
//! (the `surviving_units` of [`SimStore::crash`]), nor lose a write that was fsynced.
//! The seam is deliberately narrow so the real log store running on the storage engine's
//! simulated disk can replace [`ModelStore`] without touching the simulator.
//!
//! Invariants of [`ModelStore`]:
//! 1. `written` is `durable` with every unsynced write applied in order.
//! 2. Both images are logs without holes: entry `k` of the vector has index `k + 1`.
//! 3. A sync makes `durable` equal to `written`; a crash makes `written` equal to `durable`
//!    after applying the surviving prefix of the unsynced writes.

use raftwal::raft::{LogReadError, LogSource, ENTRY_OVERHEAD_BYTES};
use raftwal_wire::types::{Entry, HardState, LogIndex, Term};

/// What the simulated replica loop needs from its storage.
pub trait SimStore: LogSource + std::fmt::Debug {
    /// The hard state as last written (after a crash: as recovered).
    fn hard_state(&self) -> HardState;

    /// Writes a hard state and entries (not yet durable). Entries replace the stored suffix from
    /// the first entry's index on, as [`raftwal::raft::Ready`] specifies.
    fn write(&mut self, hard_state: Option<HardState>, entries: &[Entry]);

    /// Makes every write so far durable (the group fsync completed). Returns the lowest index the
    /// durable log lost in the process (a durable suffix replaced by new entries), if any.
    fn sync(&mut self) -> Option<LogIndex>;

    /// How many units (one per hard-state write, one per entry) were written since the last sync.
    fn unsynced_units(&self) -> usize;

    /// Crashes: everything not durable is lost, except the first `surviving_units` units of the
    /// unsynced writes, in order (a process crash whose page cache still reached the disk).
    /// Returns the lowest index the durable log lost, if a surviving write replaced a suffix.
    fn crash(&mut self, surviving_units: usize) -> Option<LogIndex>;

    /// The hard state as it is durable.
    fn durable_hard_state(&self) -> HardState;

    /// Term of the durable entry at `index`, if the durable log has one.
    fn durable_term(&self, index: LogIndex) -> Option<Term>;

    /// Last index of the durable log.
    fn durable_last_index(&self) -> LogIndex;
}

/// A hard state and a log.
#[derive(Clone, Debug, Default)]
struct Image {
    hard_state: HardState,
    entries: Vec<Entry>,
}

/// One write: a hard state, or entries replacing the suffix from their first index on.
#[derive(Clone, Debug)]
enum Write {
    HardState(HardState),
    Entries(Vec<Entry>),
}

impl Write {
    fn units(&self) -> usize {
        match self {
            Write::HardState(_) => 1,
            Write::Entries(entries) => entries.len(),
        }
    }
}

impl Image {
    fn last_index(&self) -> LogIndex {
        LogIndex(self.entries.len() as u64)
    }

    fn term(&self, index: LogIndex) -> Option<Term> {
        if index == LogIndex::ZERO {
            return Some(Term::ZERO);
        }
        self.entries.get(usize::try_from(index.get()).ok()? - 1).map(|entry| entry.term)
    }

    /// Applies at most `units` units of `write`; returns the lowest index it removed, if any.
    fn apply(&mut self, write: &Write, units: usize) -> Option<LogIndex> {
        match write {
            Write::HardState(hard_state) => {
                if units > 0 {
                    self.hard_state = *hard_state;
                }
                None
            }
            Write::Entries(entries) => {
                let first = entries.first()?;
                if units == 0 {
                    return None;
                }
                let keep = usize::try_from(first.index.get() - 1).expect("index fits");
                assert!(keep <= self.entries.len(), "a write never leaves a hole (invariant 2)");
                let removed = (keep < self.entries.len()).then_some(first.index);
                self.entries.truncate(keep);
                self.entries.extend(entries.iter().take(units).cloned());
                removed
            }
        }
    }
}

/// The model disk: a written image, a durable image, and the writes between them.
#[derive(Clone, Debug, Default)]
pub struct ModelStore {
    durable: Image,
    written: Image,
    unsynced: Vec<Write>,
}

impl ModelStore {
    /// An empty disk.
    pub fn new() -> ModelStore {
        ModelStore::default()
    }

    /// A disk that already holds `hard_state` and `entries`, durably (for scenarios that start
    /// from given logs, such as the paper's Figure 7).
    pub fn with_durable(hard_state: HardState, entries: Vec<Entry>) -> ModelStore {
        let image = Image { hard_state, entries };
        for (position, entry) in image.entries.iter().enumerate() {
            assert_eq!(entry.index.get(), position as u64 + 1, "no holes (invariant 2)");
        }
        ModelStore { durable: image.clone(), written: image, unsynced: Vec::new() }
    }

    /// The written entry at `index`, if any.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.written.entries.get(usize::try_from(index.get()).ok()?.checked_sub(1)?)
    }
}

impl LogSource for ModelStore {
    fn last_index(&self) -> LogIndex {
        self.written.last_index()
    }

    fn term(&self, index: LogIndex) -> Option<Term> {
        self.written.term(index)
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
            let Some(entry) = self.entry(index) else {
                break;
            };
            let entry_size = entry.data.len() + ENTRY_OVERHEAD_BYTES;
            if !out.is_empty() && size + entry_size > size_bytes_max {
                break;
            }
            size += entry_size;
            out.push(entry.clone());
            index = index.next();
        }
        if out.is_empty() {
            return Err(LogReadError::Unavailable { index: first });
        }
        Ok(out)
    }
}

impl SimStore for ModelStore {
    fn hard_state(&self) -> HardState {
        self.written.hard_state
    }

    fn write(&mut self, hard_state: Option<HardState>, entries: &[Entry]) {
        if let Some(hard_state) = hard_state {
            let write = Write::HardState(hard_state);
            self.written.apply(&write, 1);
            self.unsynced.push(write);
        }
        if !entries.is_empty() {
            let write = Write::Entries(entries.to_vec());
            self.written.apply(&write, usize::MAX);
            self.unsynced.push(write);
        }
    }

    fn sync(&mut self) -> Option<LogIndex> {
        let mut lost = None::<LogIndex>;
        for write in self.unsynced.drain(..) {
            if let Some(index) = self.durable.apply(&write, usize::MAX) {
                lost = Some(lost.map_or(index, |previous| previous.min(index)));
            }
        }
        lost
    }

    fn unsynced_units(&self) -> usize {
        self.unsynced.iter().map(Write::units).sum()
    }

    fn crash(&mut self, surviving_units: usize) -> Option<LogIndex> {
        let mut remaining = surviving_units;
        let mut lost = None::<LogIndex>;
        for write in self.unsynced.drain(..) {
            if remaining == 0 {
                break;
            }
            let units = write.units().min(remaining);
            remaining -= units;
            if let Some(index) = self.durable.apply(&write, units) {
                lost = Some(lost.map_or(index, |previous| previous.min(index)));
            }
        }
        self.written = self.durable.clone();
        lost
    }

    fn durable_hard_state(&self) -> HardState {
        self.durable.hard_state
    }

    fn durable_term(&self, index: LogIndex) -> Option<Term> {
        self.durable.term(index)
    }

    fn durable_last_index(&self) -> LogIndex {
        self.durable.last_index()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use raftwal_wire::types::{EntryKind, NodeId};

    fn entries(first: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(offset, term)| Entry {
                index: LogIndex(first + offset as u64),
                term: Term(*term),
                kind: EntryKind::Normal,
                data: Bytes::from_static(b"p"),
            })
            .collect()
    }

    #[test]
    fn a_crash_keeps_exactly_the_durable_state() {
        let mut store = ModelStore::new();
        let voted = HardState { term: Term(1), vote: Some(NodeId(1)), commit: LogIndex(0) };
        store.write(Some(voted), &entries(1, &[1, 1]));
        assert_eq!(store.sync(), None);
        store.write(Some(HardState { term: Term(2), ..voted }), &entries(3, &[2]));
        assert_eq!(store.last_index(), LogIndex(3));
        assert_eq!(store.durable_last_index(), LogIndex(2));
        assert_eq!(store.crash(0), None);
        assert_eq!(store.hard_state(), voted);
        assert_eq!(store.last_index(), LogIndex(2));
    }

    #[test]
    fn a_crash_may_keep_a_prefix_of_unsynced_writes() {
        let mut store = ModelStore::new();
        store.write(None, &entries(1, &[1, 1, 1]));
        store.sync();
        store.write(None, &entries(2, &[2, 2, 2]));
        assert_eq!(store.unsynced_units(), 3);
        // Two units survive: the overwrite of the suffix from 2 on, with two of its entries.
        assert_eq!(store.crash(2), Some(LogIndex(2)));
        assert_eq!(store.last_index(), LogIndex(3));
        assert_eq!(store.term(LogIndex(3)), Some(Term(2)));
    }

    #[test]
    fn sync_reports_a_durable_suffix_replaced() {
        let mut store = ModelStore::new();
        store.write(None, &entries(1, &[1, 1, 1]));
        store.sync();
        store.write(None, &entries(3, &[2]));
        assert_eq!(store.durable_term(LogIndex(3)), Some(Term(1)));
        assert_eq!(store.sync(), Some(LogIndex(3)));
        assert_eq!(store.durable_term(LogIndex(3)), Some(Term(2)));
        let read = store.read(LogIndex(1), LogIndex(3), 0).expect("stored");
        assert_eq!(read.len(), 1, "one entry even when it exceeds the size limit");
    }
}
