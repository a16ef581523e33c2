//! The core's view of its log: terms of every entry, the recent entries themselves, and three
//! marks (commit, durable, handed out).
//!
//! Owns: [`LogView`]. It combines the [`TermRuns`] (all terms, in memory), the [`EntryCache`]
//! (recent payloads, in memory) and the [`LogSource`] (older payloads, read on demand).
//! Must not: hold the whole log's payloads; write storage (it hands new entries out through
//! [`LogView::take_unstable`]); overwrite a committed entry.
//! Invariants:
//! 1. `commit <= last_index` and `durable <= last_index`.
//! 2. `cache.first_index() <= max(durable, base) + 1` (every entry not yet durable is cached)
//!    and `cache.first_index() <= unstable_from` (every entry not yet handed out is cached); the
//!    cache ends at `last_index`. `base` is the entry before the first one the log holds (0
//!    unless compacted or reset); every entry up to it is committed.
//! 3. `unstable_from <= last_index + 1`: entries `unstable_from..=last_index` have not been
//!    handed to the driver yet.
//! 4. `durable` only counts entries of this very log: when a suffix is overwritten, `durable`
//!    drops below it, and a durability report is accepted only if its term matches.
//! 5. `pending_start`, when set, is `(base, term of base)`: the log was reset to start after it
//!    (a leader's [`raftwal_wire::message::LogStart`]) and the driver has not been told yet.
//!    Until the reset is reported durable, `durable` may lie below `base`.

use crate::raft::entry_cache::{entry_size_bytes, EntryCache};
use crate::raft::errors::RestoreError;
use crate::raft::log_source::{LogReadError, LogSource};
use crate::raft::term_runs::TermRuns;
use bytes::Bytes;
use raftwal_wire::types::{Entry, EntryKind, LogIndex, Term};

/// The largest index a log holds: one below the top of the range, so that the index after the
/// last entry (`last_index + 1`, where the next entry goes and where reads and subscriptions stop)
/// always exists. The gateway refuses peers' entries and log starts past it, a leader refuses
/// proposals past it ([`crate::raft::ProposeError::LogFull`]) and a replica whose log reached it
/// does not campaign (a new leader's no-op would not fit).
pub const LAST_INDEX_MAX: LogIndex = LogIndex(u64::MAX - 1);

/// The log as the consensus core sees it.
#[derive(Clone, Debug)]
pub(crate) struct LogView {
    terms: TermRuns,
    cache: EntryCache,
    commit: LogIndex,
    durable: LogIndex,
    unstable_from: LogIndex,
    cache_size_bytes_max: usize,
    pending_start: Option<(LogIndex, Term)>,
}

/// A batch of entries read for one AppendEntries, with their total charged size.
#[derive(Debug, Default)]
pub(crate) struct EntryBatch {
    pub(crate) entries: Vec<Entry>,
    pub(crate) size_bytes: usize,
}

impl LogView {
    /// The view of a stored log, all of it durable (it was recovered from stable storage).
    /// The core only ever persists a commit index its durable log covers
    /// (`RaftCore::hard_state`), so a stored log that ends before `commit` lost durable,
    /// committed entries: that is corruption, reported rather than papered over.
    pub(crate) fn restore<S: LogSource + ?Sized>(
        source: &S,
        commit: LogIndex,
        cache_size_bytes_max: usize,
    ) -> Result<LogView, RestoreError> {
        let terms = TermRuns::from_source(source)?;
        let last = terms.last_index();
        if commit > last {
            return Err(RestoreError::CommitBeyondLog { commit, last });
        }
        // Entries up to the base were committed when they were compacted away (or when a leader
        // started this log after them); the persisted commit index may be older.
        let commit = commit.max(terms.base());
        Ok(LogView {
            cache: EntryCache::new(last.next()),
            pending_start: None,
            commit,
            durable: last,
            unstable_from: last.next(),
            terms,
            cache_size_bytes_max,
        })
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        self.terms.last_index()
    }

    pub(crate) fn last_term(&self) -> Term {
        self.terms.last_term()
    }

    pub(crate) fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.terms.term_at(index)
    }

    /// The entry before the first one the log holds (0 unless compacted or reset).
    pub(crate) fn base(&self) -> LogIndex {
        self.terms.base()
    }

    /// Forgets the entries before `first`, which must be committed and durable (the caller
    /// clamps). Returns whether the base moved.
    pub(crate) fn compact_before(&mut self, first: LogIndex) -> bool {
        let base = first.prev();
        if base <= self.base() {
            return false;
        }
        assert!(
            base <= self.commit && base <= self.durable,
            "only committed, durable entries are compacted"
        );
        self.terms.compact_before(first);
        self.cache.drop_before(first);
        true
    }

    /// Replaces the whole log with an empty one that starts after `(index, term)`, which the
    /// leader has committed; the driver is told through [`LogView::take_pending_start`].
    /// Entries at or below the commit index are never replaced: the caller only resets when the
    /// log does not hold `(index, term)` and `index` is above the commit index.
    pub(crate) fn reset_to(&mut self, index: LogIndex, term: Term) {
        assert!(index > self.commit, "a reset never replaces committed entries");
        // What is durable and committed stays true of the new log (those entries match every
        // leader's); nothing after the commit index is known durable any more.
        self.durable = self.durable.min(self.commit);
        self.terms.reset_to(index, term);
        self.cache = EntryCache::new(index.next());
        self.unstable_from = index.next();
        self.commit = index;
        self.pending_start = Some((index, term));
    }

    /// The reset the driver has not been told about yet, if any (see [`LogView::reset_to`]).
    pub(crate) fn take_pending_start(&mut self) -> Option<(LogIndex, Term)> {
        self.pending_start.take()
    }

    /// Whether a reset waits to be handed to the driver.
    pub(crate) fn has_pending_start(&self) -> bool {
        self.pending_start.is_some()
    }

    /// The reset that waits to be handed to the driver, if any.
    pub(crate) fn pending_start(&self) -> Option<(LogIndex, Term)> {
        self.pending_start
    }

    pub(crate) fn commit(&self) -> LogIndex {
        self.commit
    }

    pub(crate) fn durable(&self) -> LogIndex {
        self.durable
    }

    pub(crate) fn cached_size_bytes(&self) -> usize {
        self.cache.size_bytes()
    }

    /// The election restriction (paper 5.4.1): a log ending in `(last_term, last_index)` is at
    /// least as up-to-date as this one.
    pub(crate) fn is_up_to_date(&self, last_term: Term, last_index: LogIndex) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// See [`TermRuns::find_conflict_by_term`].
    pub(crate) fn find_conflict_by_term(&self, index: LogIndex, term: Term) -> LogIndex {
        self.terms.find_conflict_by_term(index, term)
    }

    /// Appends a new entry at the end (the leader's path) and returns its index.
    pub(crate) fn append(&mut self, term: Term, kind: EntryKind, data: Bytes) -> LogIndex {
        let index = self.last_index().next();
        self.push(Entry { index, term, kind, data });
        index
    }

    /// Merges entries from the leader whose first entry follows an entry known to match the
    /// leader's log (the caller did the consistency check). Entries already present are kept;
    /// at the first conflicting entry the suffix is replaced (paper 5.3, receiver rule 3).
    /// Refuses, changing nothing, when the conflict is at or below the commit index, which
    /// returns that index.
    pub(crate) fn append_from_leader(&mut self, entries: Vec<Entry>) -> Result<(), LogIndex> {
        let present = entries
            .iter()
            .take_while(|entry| self.term_at(entry.index) == Some(entry.term))
            .count();
        let Some(first_new) = entries.get(present) else {
            return Ok(());
        };
        let conflict = first_new.index;
        if conflict <= self.last_index() {
            if conflict <= self.commit {
                return Err(conflict);
            }
            self.truncate_from(conflict);
        }
        for entry in entries.into_iter().skip(present) {
            self.push(entry);
        }
        Ok(())
    }

    /// Removes the entries from `index` on (none of them committed).
    pub(crate) fn truncate_from(&mut self, index: LogIndex) {
        assert!(index > self.commit, "committed entries are never removed");
        self.terms.truncate_after(index.prev());
        self.cache.truncate_from(index);
        self.unstable_from = self.unstable_from.min(index);
        self.durable = self.durable.min(index.prev());
    }

    fn push(&mut self, entry: Entry) {
        self.terms.push(entry.term);
        self.cache.push(entry);
    }

    /// Records that storage holds the log up to `(index, term)` durably. A report whose term does
    /// not match (the entries were overwritten since they were handed out) is ignored.
    /// Returns whether the durable index advanced.
    pub(crate) fn mark_durable(&mut self, index: LogIndex, term: Term) -> bool {
        if index <= self.durable || index >= self.unstable_from {
            return false;
        }
        if self.term_at(index) != Some(term) {
            return false;
        }
        self.durable = index;
        self.cache.evict(self.durable, self.cache_size_bytes_max);
        true
    }

    /// Advances the commit index to `index` (never backwards). Returns whether it moved.
    pub(crate) fn commit_to(&mut self, index: LogIndex) -> bool {
        if index <= self.commit {
            return false;
        }
        assert!(index <= self.last_index(), "the commit index never passes the log's end");
        self.commit = index;
        true
    }

    /// Whether entries wait to be handed to the driver.
    pub(crate) fn has_unstable(&self) -> bool {
        self.unstable_from <= self.last_index()
    }

    /// Hands out the entries not yet given to the driver (clones of `Bytes`, no payload copy).
    pub(crate) fn take_unstable(&mut self) -> Vec<Entry> {
        let last = self.last_index();
        if self.unstable_from > last {
            return Vec::new();
        }
        let count = usize::try_from(last.distance_from(self.unstable_from.prev()))
            .expect("unstable entries are cached, so their count fits in memory");
        let mut out = Vec::with_capacity(count);
        self.cache.copy_from(self.unstable_from, usize::MAX, usize::MAX, &mut out);
        assert_eq!(out.len(), count, "every unstable entry is cached (invariant 2)");
        self.unstable_from = last.next();
        out
    }

    /// Entries from `from` for one AppendEntries: from the cache when it holds them, otherwise
    /// from `source` (only durable entries live outside the cache). Takes at least one entry
    /// when `from <= last_index`.
    pub(crate) fn entries_for_send<S: LogSource + ?Sized>(
        &self,
        from: LogIndex,
        size_bytes_max: usize,
        count_max: usize,
        source: &S,
    ) -> Result<EntryBatch, LogReadError> {
        let mut batch = EntryBatch::default();
        if from > self.last_index() {
            return Ok(batch);
        }
        if from <= self.base() {
            return Err(LogReadError::Unavailable { index: from });
        }
        if from >= self.cache.first_index() {
            batch.size_bytes =
                self.cache.copy_from(from, size_bytes_max, count_max, &mut batch.entries);
            return Ok(batch);
        }
        let last = self.cache.first_index().prev();
        let mut entries = source.read(from, last, size_bytes_max)?;
        entries.truncate(count_max);
        if entries.is_empty() {
            return Err(LogReadError::Unavailable { index: from });
        }
        for (offset, entry) in entries.iter().enumerate() {
            let index = from.plus(offset as u64);
            if entry.index != index || index > last || self.term_at(index) != Some(entry.term) {
                return Err(LogReadError::Inconsistent { index });
            }
            batch.size_bytes += entry_size_bytes(entry);
        }
        batch.entries = entries;
        Ok(batch)
    }

    /// Checks invariants 1 to 3 and those of the parts.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        self.terms.check()?;
        self.cache.check()?;
        let last = self.last_index();
        if self.commit > last || self.durable > last {
            return Err("commit and durable indexes stay within the log (invariant 1)");
        }
        if self.cache.first_index() > self.durable.max(self.base()).next()
            || self.cache.first_index() > self.unstable_from
        {
            return Err("entries not durable or not handed out are cached (invariant 2)");
        }
        if self.unstable_from > last.next() {
            return Err("the handed-out mark stays within the log (invariant 3)");
        }
        if self.commit < self.base() {
            return Err("entries up to the base are committed (invariant 2)");
        }
        if self.pending_start.is_some_and(|(index, term)| {
            index != self.base() || self.terms.term_at(index) != Some(term)
        }) {
            return Err("a pending reset names the log's base (invariant 5)");
        }
        if self.cache.first_index().plus(self.cache.entry_count() as u64) != last.next() {
            return Err("the cache ends at the log's last entry (invariant 2)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::log_source::EmptyLog;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            kind: EntryKind::Normal,
            data: Bytes::from_static(b"x"),
        }
    }

    fn view() -> LogView {
        LogView::restore(&EmptyLog, LogIndex::ZERO, 1 << 20).expect("empty log")
    }

    #[test]
    fn leader_appends_are_handed_out_once() {
        let mut log = view();
        assert_eq!(log.append(Term(1), EntryKind::Noop, Bytes::new()), LogIndex(1));
        assert_eq!(log.append(Term(1), EntryKind::Normal, Bytes::from_static(b"a")), LogIndex(2));
        let handed = log.take_unstable();
        assert_eq!(handed.len(), 2);
        assert!(log.take_unstable().is_empty());
        assert!(log.mark_durable(LogIndex(2), Term(1)));
        assert_eq!(log.durable(), LogIndex(2));
        log.check().expect("valid");
    }

    #[test]
    fn follower_overwrites_a_conflicting_suffix_only() {
        let mut log = view();
        log.append_from_leader(vec![entry(1, 1), entry(2, 1), entry(3, 2)]).expect("fresh");
        log.take_unstable();
        assert!(log.mark_durable(LogIndex(3), Term(2)));
        // A stale duplicate of a prefix changes nothing (paper 5.3: never truncate on a match).
        log.append_from_leader(vec![entry(2, 1)]).expect("duplicate");
        assert_eq!(log.last_index(), LogIndex(3));
        // A conflict at 3 replaces the suffix and moves the durable mark below it.
        log.append_from_leader(vec![entry(3, 3), entry(4, 3)]).expect("conflict");
        assert_eq!(log.term_at(LogIndex(3)), Some(Term(3)));
        assert_eq!(log.durable(), LogIndex(2));
        let handed = log.take_unstable();
        assert_eq!(handed.first().map(|e| e.index), Some(LogIndex(3)));
        // A late durability report for the overwritten entry is ignored.
        assert!(!log.mark_durable(LogIndex(3), Term(2)));
        assert!(log.mark_durable(LogIndex(4), Term(3)));
        log.check().expect("valid");
    }

    #[test]
    fn committed_entries_are_never_overwritten() {
        let mut log = view();
        log.append_from_leader(vec![entry(1, 1), entry(2, 1)]).expect("fresh");
        log.commit_to(LogIndex(2));
        assert_eq!(log.append_from_leader(vec![entry(2, 2)]), Err(LogIndex(2)));
        assert_eq!(log.term_at(LogIndex(2)), Some(Term(1)));
    }
}
