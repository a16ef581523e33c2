//! The in-memory tail of the log: recent entries, so replication rarely reads storage.
//!
//! Owns: [`EntryCache`], a contiguous run of entries ending at the log's last index.
//! Must not: evict an entry that is not yet durable (storage may not have it yet, so the cache is
//! its only copy the core can send), nor copy payloads (entries hold `Bytes`; a clone is a
//! reference-count increment).
//! Invariants:
//! 1. Entries are consecutive: the k-th entry has index `first + k`.
//! 2. `size_bytes` is the sum of [`entry_size_bytes`] over the entries.
//! 3. When empty, `first` is the index the next pushed entry must have.

use crate::raft::config::ENTRY_OVERHEAD_BYTES;
use raftwal_wire::types::{Entry, LogIndex};
use std::collections::VecDeque;

/// The bytes an entry is charged in batches, windows and the cache.
#[inline]
pub(crate) fn entry_size_bytes(entry: &Entry) -> usize {
    entry.data.len() + ENTRY_OVERHEAD_BYTES
}

/// Recent entries of the log, oldest first.
#[derive(Clone, Debug)]
pub(crate) struct EntryCache {
    entries: VecDeque<Entry>,
    first: LogIndex,
    size_bytes: usize,
}

impl EntryCache {
    /// An empty cache whose next entry will have index `first`.
    pub(crate) fn new(first: LogIndex) -> EntryCache {
        EntryCache { entries: VecDeque::new(), first, size_bytes: 0 }
    }

    /// Index of the oldest cached entry (or of the next entry, when empty).
    pub(crate) fn first_index(&self) -> LogIndex {
        self.first
    }

    /// Number of cached entries.
    pub(crate) fn entry_count(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    /// Appends the entry that follows the cached ones.
    pub(crate) fn push(&mut self, entry: Entry) {
        let expected = self.first.plus(self.entries.len() as u64);
        assert_eq!(entry.index, expected, "cached entries are consecutive (invariant 1)");
        self.size_bytes += entry_size_bytes(&entry);
        self.entries.push_back(entry);
    }

    /// Removes every entry at or after `index`; when `index` precedes the cache, the cache
    /// empties and restarts at `index`.
    pub(crate) fn truncate_from(&mut self, index: LogIndex) {
        if index <= self.first {
            self.entries.clear();
            self.size_bytes = 0;
            self.first = index;
            return;
        }
        let keep = usize::try_from(index.distance_from(self.first)).unwrap_or(usize::MAX);
        while self.entries.len() > keep {
            let removed = self.entries.pop_back().expect("len > keep >= 0");
            self.size_bytes -= entry_size_bytes(&removed);
        }
    }

    /// Drops the oldest entries while the cache holds more than `size_bytes_max`, but never one
    /// above `durable` (invariant of the module: undurable entries stay).
    pub(crate) fn evict(&mut self, durable: LogIndex, size_bytes_max: usize) {
        while self.size_bytes > size_bytes_max {
            match self.entries.front() {
                Some(front) if front.index <= durable => {
                    self.size_bytes -= entry_size_bytes(front);
                    self.entries.pop_front();
                    self.first = self.first.next();
                }
                _ => break,
            }
        }
    }

    /// Drops the entries before `index` (compacted away; they must be durable), or every entry
    /// when `index` is past the cache, which then restarts at `index`.
    pub(crate) fn drop_before(&mut self, index: LogIndex) {
        while self.first < index {
            match self.entries.pop_front() {
                Some(front) => self.size_bytes -= entry_size_bytes(&front),
                None => {
                    self.first = index;
                    return;
                }
            }
            self.first = self.first.next();
        }
    }

    /// The cached entry at `index`, if cached.
    #[cfg(test)]
    pub(crate) fn get(&self, index: LogIndex) -> Option<&Entry> {
        if index < self.first {
            return None;
        }
        let offset = usize::try_from(index.distance_from(self.first)).ok()?;
        self.entries.get(offset)
    }

    /// Appends to `out` clones of the cached entries from `from` on, stopping before the total
    /// size would exceed `size_bytes_max` (but taking at least one entry) or at `count_max`
    /// entries. Returns the bytes taken.
    pub(crate) fn copy_from(
        &self,
        from: LogIndex,
        size_bytes_max: usize,
        count_max: usize,
        out: &mut Vec<Entry>,
    ) -> usize {
        let Some(offset) = (from >= self.first)
            .then(|| usize::try_from(from.distance_from(self.first)).ok())
            .flatten()
        else {
            return 0;
        };
        let mut taken_bytes = 0;
        for entry in self.entries.iter().skip(offset).take(count_max) {
            let size = entry_size_bytes(entry);
            if !out.is_empty() && taken_bytes + size > size_bytes_max {
                break;
            }
            taken_bytes += size;
            out.push(entry.clone());
        }
        taken_bytes
    }

    /// Checks invariants 1 and 2 at the ends of the cache, in constant time (it runs after
    /// every simulated step; `push` asserts consecutiveness for every entry).
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        if let (Some(front), Some(back)) = (self.entries.front(), self.entries.back()) {
            let expected_back = self.first.plus(self.entries.len() as u64 - 1);
            if front.index != self.first || back.index != expected_back {
                return Err("cached entries are consecutive (invariant 1)");
            }
            if self.size_bytes < self.entries.len() * ENTRY_OVERHEAD_BYTES {
                return Err("the cache's size counts every entry (invariant 2)");
            }
        } else if self.size_bytes != 0 {
            return Err("an empty cache has size 0 (invariant 2)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use raftwal_wire::types::{EntryKind, Term};

    fn entry(index: u64, size: usize) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(1),
            kind: EntryKind::Normal,
            data: Bytes::from(vec![0u8; size]),
        }
    }

    #[test]
    fn push_truncate_and_copy() {
        let mut cache = EntryCache::new(LogIndex(5));
        for index in 5..10 {
            cache.push(entry(index, 8));
        }
        cache.check().expect("valid");
        let mut out = Vec::new();
        let bytes = cache.copy_from(LogIndex(6), 2 * (8 + ENTRY_OVERHEAD_BYTES), 100, &mut out);
        assert_eq!(out.iter().map(|e| e.index.get()).collect::<Vec<_>>(), vec![6, 7]);
        assert_eq!(bytes, 2 * (8 + ENTRY_OVERHEAD_BYTES));
        out.clear();
        cache.copy_from(LogIndex(6), usize::MAX, 1, &mut out);
        assert_eq!(out.len(), 1, "count limit");
        cache.truncate_from(LogIndex(8));
        cache.check().expect("valid after truncation");
        assert!(cache.get(LogIndex(8)).is_none());
        assert_eq!(cache.get(LogIndex(7)).map(|e| e.index), Some(LogIndex(7)));
        cache.truncate_from(LogIndex(2));
        assert_eq!(cache.first_index(), LogIndex(2));
        assert_eq!(cache.size_bytes(), 0);
        cache.push(entry(2, 1));
        cache.check().expect("valid after restart");
    }

    #[test]
    fn a_single_oversized_entry_is_still_taken() {
        let mut cache = EntryCache::new(LogIndex(1));
        cache.push(entry(1, 1000));
        let mut out = Vec::new();
        cache.copy_from(LogIndex(1), 10, 10, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn eviction_keeps_undurable_entries() {
        let mut cache = EntryCache::new(LogIndex(1));
        for index in 1..=10 {
            cache.push(entry(index, 100));
        }
        cache.evict(LogIndex(4), 0);
        assert_eq!(cache.first_index(), LogIndex(5), "only durable entries are evicted");
        cache.evict(LogIndex(10), 3 * (100 + ENTRY_OVERHEAD_BYTES));
        assert_eq!(cache.first_index(), LogIndex(8));
        cache.check().expect("valid after eviction");
    }
}
