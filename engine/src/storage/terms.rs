//! [`TermRuns`]: the term of every stored index, kept in memory as runs, so `term(index)` never
//! touches the disk.
//!
//! Owns: the list of (first index, term) of each run of equal terms, and the term of the entry
//! just before the first stored one (the compaction boundary).
//!
//! Invariants:
//! 1. Run starts strictly increase and run terms strictly increase (a Raft log's terms never
//!    decrease, and equal neighbours are merged).
//! 2. The first run starts at `prev_index + 1` when the log is not empty.
//! 3. Memory is proportional to the number of term changes, not to the number of entries.

use raftwal_wire::types::{LogIndex, Term};

/// The terms of a log's stored entries, as runs.
#[derive(Clone, Debug, Default)]
pub(crate) struct TermRuns {
    runs: Vec<(LogIndex, Term)>,
    prev_index: LogIndex,
    prev_term: Term,
    last_index: LogIndex,
}

impl TermRuns {
    /// Runs for an empty log that starts after `prev_index` (whose term is `prev_term`).
    pub(crate) fn new(prev_index: LogIndex, prev_term: Term) -> TermRuns {
        TermRuns { runs: Vec::new(), prev_index, prev_term, last_index: prev_index }
    }

    /// The index before the first stored entry.
    pub(crate) fn prev_index(&self) -> LogIndex {
        self.prev_index
    }

    /// The term of the last entry (or of `prev_index` when empty).
    pub(crate) fn last_term(&self) -> Term {
        self.runs.last().map_or(self.prev_term, |r| r.1)
    }

    /// Records that the entries `first..=last` (`first` must be `last_index + 1`) have the
    /// terms `changes` says: (index, term) where the term changes, the first at `first`.
    pub(crate) fn push_runs(&mut self, changes: &[(LogIndex, Term)], last: LogIndex) {
        for &(index, term) in changes {
            debug_assert!(index <= last);
            self.last_index = index.prev();
            self.push(index, term);
        }
        self.last_index = last;
    }

    /// (index, term) where the term changes among the entries `first..=last` (stored ones),
    /// starting with `first`'s term at `first`.
    pub(crate) fn changes_in(&self, first: LogIndex, last: LogIndex) -> Vec<(LogIndex, Term)> {
        let mut out = Vec::new();
        if first > last {
            return out;
        }
        if let Some(term) = self.term(first) {
            out.push((first, term));
        }
        let from = self.runs.partition_point(|r| r.0 <= first);
        out.extend(self.runs[from..].iter().take_while(|r| r.0 <= last).copied());
        out
    }

    /// Records that entry `index` (which must be `last_index + 1`) has `term`.
    #[inline]
    pub(crate) fn push(&mut self, index: LogIndex, term: Term) {
        debug_assert_eq!(index, self.last_index.next());
        debug_assert!(term >= self.last_term());
        if self.runs.last().is_none_or(|r| r.1 != term) {
            self.runs.push((index, term));
        }
        self.last_index = index;
    }

    /// The term of `index`, if it is `prev_index` or a stored entry.
    pub(crate) fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.prev_index {
            return Some(self.prev_term);
        }
        if index < self.prev_index || index > self.last_index {
            return None;
        }
        let at = self.runs.partition_point(|r| r.0 <= index);
        Some(self.runs[at - 1].1)
    }

    /// Forgets every entry after `index` (`prev_index <= index <= last_index`).
    pub(crate) fn truncate_after(&mut self, index: LogIndex) {
        assert!(
            index >= self.prev_index && index <= self.last_index,
            "truncate_after out of range"
        );
        let keep = self.runs.partition_point(|r| r.0 <= index);
        self.runs.truncate(keep);
        self.last_index = index;
    }

    /// Forgets every entry before `first` (`prev_index < first <= last_index + 1`).
    pub(crate) fn compact_before(&mut self, first: LogIndex) {
        let prev = first.prev();
        let prev_term = self.term(prev).expect("compaction point is inside the log");
        let drop = self.runs.partition_point(|r| r.0 <= first).saturating_sub(1);
        self.runs.drain(..drop);
        if let Some(run) = self.runs.first_mut() {
            if run.0 < first {
                run.0 = first;
            }
        }
        if first > self.last_index {
            self.runs.clear();
        }
        self.prev_index = prev;
        self.prev_term = prev_term;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_truncation_and_compaction() {
        let mut t = TermRuns::new(LogIndex(0), Term(0));
        for (i, term) in [(1, 1), (2, 1), (3, 2), (4, 2), (5, 5)] {
            t.push(LogIndex(i), Term(term));
        }
        assert_eq!(t.term(LogIndex(0)), Some(Term(0)));
        assert_eq!(t.term(LogIndex(2)), Some(Term(1)));
        assert_eq!(t.term(LogIndex(4)), Some(Term(2)));
        assert_eq!(t.term(LogIndex(5)), Some(Term(5)));
        assert_eq!(t.term(LogIndex(6)), None);
        t.truncate_after(LogIndex(3));
        assert_eq!(t.term(LogIndex(4)), None);
        t.push(LogIndex(4), Term(7));
        assert_eq!(t.last_term(), Term(7));
        t.compact_before(LogIndex(4));
        assert_eq!(t.term(LogIndex(3)), Some(Term(2)));
        assert_eq!(t.term(LogIndex(2)), None);
        assert_eq!(t.term(LogIndex(4)), Some(Term(7)));
        t.compact_before(LogIndex(5));
        assert_eq!(t.term(LogIndex(4)), Some(Term(7)));
        assert_eq!(t.last_term(), Term(7));
    }

    #[test]
    fn changes_in_a_range_rebuild_the_same_runs() {
        let mut t = TermRuns::new(LogIndex(9), Term(1));
        for (i, term) in [(10, 1), (11, 1), (12, 3), (13, 3), (14, 3), (15, 4), (16, 6)] {
            t.push(LogIndex(i), Term(term));
        }
        let c = |v: &[(u64, u64)]| -> Vec<(LogIndex, Term)> {
            v.iter().map(|&(i, t)| (LogIndex(i), Term(t))).collect()
        };
        assert_eq!(
            t.changes_in(LogIndex(10), LogIndex(16)),
            c(&[(10, 1), (12, 3), (15, 4), (16, 6)])
        );
        assert_eq!(t.changes_in(LogIndex(13), LogIndex(15)), c(&[(13, 3), (15, 4)]));
        assert_eq!(t.changes_in(LogIndex(12), LogIndex(12)), c(&[(12, 3)]));
        assert_eq!(t.changes_in(LogIndex(14), LogIndex(13)), c(&[]));
        // Two segments' worth of changes, pushed as runs, give the terms pushed one by one.
        let mut u = TermRuns::new(LogIndex(9), Term(1));
        u.push_runs(&t.changes_in(LogIndex(10), LogIndex(13)), LogIndex(13));
        u.push_runs(&t.changes_in(LogIndex(14), LogIndex(16)), LogIndex(16));
        for i in 9..=17 {
            assert_eq!(u.term(LogIndex(i)), t.term(LogIndex(i)), "term of {i}");
        }
        assert_eq!(u.last_term(), Term(6));
        assert_eq!(u.runs, t.runs, "equal neighbours merged");
    }
}
