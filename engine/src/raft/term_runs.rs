//! The term of every entry in the log, kept in memory as runs of consecutive same-term entries.
//!
//! Owns: [`TermRuns`]. A log of billions of entries written under a few hundred leaders needs a
//! few hundred runs, so every term lookup (consistency check, commit rule, election restriction,
//! fast backtracking) is a binary search in memory and never touches storage.
//! Must not: hold payloads (that is the entry cache's job).
//! Invariants:
//! 1. Runs are sorted by strictly increasing `first` and strictly increasing `term`, every term
//!    at least `base_term`.
//! 2. When non-empty, the first run starts at `base + 1` and the last run starts at or before
//!    `last_index`; a run covers `[first, next run's first)` and the last run ends at `last_index`.
//!    `base` is the entry just before the first one held (0 for a log never compacted); its term
//!    `base_term` is known, the terms of entries before it are not.
//! 3. The list is empty exactly when `last_index == base`.

use crate::raft::errors::RestoreError;
use crate::raft::log_source::LogSource;
use raftwal_wire::types::{LogIndex, Term};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TermRun {
    first: LogIndex,
    term: Term,
}

/// Terms of the log's entries `base + 1..=last_index`, as runs, and the term of `base`.
#[derive(Clone, Debug, Default)]
pub(crate) struct TermRuns {
    runs: Vec<TermRun>,
    last_index: LogIndex,
    base: LogIndex,
    base_term: Term,
}

impl TermRuns {
    /// Learns the runs of a stored log through `source`, with a binary search per run boundary
    /// (terms never decrease along the log), so restoring costs O(runs * log(entries)) lookups.
    pub(crate) fn from_source<S: LogSource + ?Sized>(source: &S) -> Result<TermRuns, RestoreError> {
        let last_index = source.last_index();
        let base = source.first_index().prev();
        if base > last_index {
            return Err(RestoreError::InconsistentLog {
                index: base,
                reason: "the stored log starts after its last entry",
            });
        }
        let base_term = stored_term(source, base)?;
        let mut runs = TermRuns { base, base_term, last_index: base, runs: Vec::new() };
        let mut first = base.next();
        while first <= last_index {
            let term = stored_term(source, first)?;
            let increases = match runs.runs.last() {
                Some(previous) => term > previous.term,
                None => term >= base_term,
            };
            if !increases {
                return Err(RestoreError::InconsistentLog {
                    index: first,
                    reason: "term does not increase at a term boundary",
                });
            }
            // Largest index in [first, last_index] whose term is still `term`.
            let (mut low, mut high) = (first, last_index);
            while low < high {
                let middle = LogIndex(low.get() + (high.get() - low.get()).div_ceil(2));
                let middle_term = stored_term(source, middle)?;
                if middle_term < term {
                    return Err(RestoreError::InconsistentLog {
                        index: middle,
                        reason: "term decreases along the log",
                    });
                }
                if middle_term == term {
                    low = middle;
                } else {
                    high = middle.prev();
                }
            }
            runs.runs.push(TermRun { first, term });
            first = low.next();
        }
        runs.last_index = last_index;
        Ok(runs)
    }

    /// The entry just before the first one held: 0 for a log never compacted.
    pub(crate) fn base(&self) -> LogIndex {
        self.base
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        self.last_index
    }

    pub(crate) fn last_term(&self) -> Term {
        self.runs.last().map_or(self.base_term, |run| run.term)
    }

    /// Term of the entry at `index`: `Term::ZERO` for index 0, `None` beyond the last entry and
    /// before the base (compacted).
    pub(crate) fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index > self.last_index || index < self.base {
            return None;
        }
        if index == self.base {
            return Some(self.base_term);
        }
        // Most lookups are near the end of the log (the commit rule, the consistency check of a
        // follower that keeps up), so try the last run before searching.
        let last = self.runs.last().expect("entries after the base have a run (invariant 3)");
        if index >= last.first {
            return Some(last.term);
        }
        let position = self.runs.partition_point(|run| run.first <= index);
        Some(self.runs[position - 1].term)
    }

    /// Appends one entry of `term` at `last_index + 1`.
    pub(crate) fn push(&mut self, term: Term) {
        let index = self.last_index.next();
        match self.runs.last() {
            Some(run) if run.term == term => {}
            Some(run) => {
                assert!(term > run.term, "terms never decrease along the log (invariant 1)");
                self.runs.push(TermRun { first: index, term });
            }
            None => {
                assert!(term >= self.base_term, "terms never decrease along the log");
                self.runs.push(TermRun { first: index, term });
            }
        }
        self.last_index = index;
    }

    /// Removes every entry after `index` (never the base: it is committed).
    pub(crate) fn truncate_after(&mut self, index: LogIndex) {
        if index >= self.last_index {
            return;
        }
        assert!(index >= self.base, "entries at or before the base are committed");
        let keep = self.runs.partition_point(|run| run.first <= index);
        self.runs.truncate(keep);
        self.last_index = index;
    }

    /// The largest index `j <= index` whose term is at most `term` (0 when there is none).
    ///
    /// This is the heart of fast backtracking: a follower answers a failed consistency check with
    /// the last entry that could still match the leader's term, and the leader answers that hint
    /// with its own last entry that could match it, so each round trip skips a whole term.
    /// At or before the base the terms are not known: the answer is then `index` itself (every
    /// entry up to the base is committed, so it matches any leader's).
    pub(crate) fn find_conflict_by_term(&self, index: LogIndex, term: Term) -> LogIndex {
        let index = index.min(self.last_index);
        if index <= self.base {
            return index;
        }
        let mut position = self.runs.partition_point(|run| run.first <= index);
        let mut end = index;
        while position > 0 {
            let run = self.runs[position - 1];
            if run.term <= term {
                return end;
            }
            end = run.first.prev();
            position -= 1;
        }
        self.base
    }

    /// Forgets the terms of the entries before `first` (which must be within the log, at most
    /// `last_index + 1`): the base becomes `first - 1`. A no-op when `first - 1` is at or
    /// before the base.
    pub(crate) fn compact_before(&mut self, first: LogIndex) {
        let base = first.prev();
        if base <= self.base {
            return;
        }
        let base_term = self.term_at(base).expect("the new base is within the log");
        // Runs that start at or before the new base: only the last of them (the base's) may
        // cover entries after it, and then it starts right after the base.
        let covering = self.runs.partition_point(|run| run.first <= base);
        self.runs.drain(..covering.saturating_sub(1));
        let next_first = self.runs.get(1).map_or(self.last_index.next(), |run| run.first);
        if next_first > base.next() {
            self.runs[0].first = base.next();
        } else {
            self.runs.remove(0);
        }
        self.base = base;
        self.base_term = base_term;
    }

    /// Replaces the whole log with an empty one that starts after `index` of `term`.
    pub(crate) fn reset_to(&mut self, index: LogIndex, term: Term) {
        self.runs.clear();
        self.base = index;
        self.base_term = term;
        self.last_index = index;
    }

    /// Checks invariants 1 to 3.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        if self.runs.is_empty() != (self.last_index == self.base) {
            return Err("term runs are empty exactly when the log is (invariant 3)");
        }
        if let Some(first) = self.runs.first() {
            if first.first != self.base.next() || first.term < self.base_term {
                return Err("the first term run starts after the base (invariant 2)");
            }
        }
        if let Some(last) = self.runs.last() {
            if last.first > self.last_index {
                return Err("the last term run starts within the log (invariant 2)");
            }
        }
        for pair in self.runs.windows(2) {
            if pair[0].first >= pair[1].first || pair[0].term >= pair[1].term {
                return Err("term runs increase in index and term (invariant 1)");
            }
        }
        Ok(())
    }
}

fn stored_term<S: LogSource + ?Sized>(source: &S, index: LogIndex) -> Result<Term, RestoreError> {
    source.term(index).ok_or(RestoreError::InconsistentLog {
        index,
        reason: "no term for an index within the stored log",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::log_source::LogReadError;
    use raftwal_wire::types::Entry;

    fn runs_of(terms: &[u64]) -> TermRuns {
        let mut runs = TermRuns::default();
        for term in terms {
            runs.push(Term(*term));
        }
        runs.check().expect("valid runs");
        runs
    }

    struct Terms(Vec<u64>);

    impl LogSource for Terms {
        fn last_index(&self) -> LogIndex {
            LogIndex(self.0.len() as u64)
        }
        fn term(&self, index: LogIndex) -> Option<Term> {
            if index == LogIndex::ZERO {
                return Some(Term::ZERO);
            }
            self.0.get(index.get() as usize - 1).map(|t| Term(*t))
        }
        fn read(&self, first: LogIndex, _: LogIndex, _: usize) -> Result<Vec<Entry>, LogReadError> {
            Err(LogReadError::Unavailable { index: first })
        }
    }

    #[test]
    fn lookups_follow_the_runs() {
        let runs = runs_of(&[1, 1, 2, 4, 4, 4, 5]);
        assert_eq!(runs.term_at(LogIndex(0)), Some(Term(0)));
        assert_eq!(runs.term_at(LogIndex(2)), Some(Term(1)));
        assert_eq!(runs.term_at(LogIndex(3)), Some(Term(2)));
        assert_eq!(runs.term_at(LogIndex(6)), Some(Term(4)));
        assert_eq!(runs.term_at(LogIndex(7)), Some(Term(5)));
        assert_eq!(runs.term_at(LogIndex(8)), None);
        assert_eq!(runs.last_term(), Term(5));
    }

    #[test]
    fn truncation_keeps_the_prefix() {
        let mut runs = runs_of(&[1, 1, 2, 4, 4, 4, 5]);
        runs.truncate_after(LogIndex(5));
        runs.check().expect("valid after truncation");
        assert_eq!(runs.last_index(), LogIndex(5));
        assert_eq!(runs.last_term(), Term(4));
        runs.truncate_after(LogIndex(3));
        assert_eq!(runs.last_term(), Term(2));
        runs.push(Term(6));
        assert_eq!(runs.term_at(LogIndex(4)), Some(Term(6)));
        runs.truncate_after(LogIndex(0));
        runs.check().expect("valid when empty");
        assert_eq!(runs.term_at(LogIndex(1)), None);
    }

    #[test]
    fn find_conflict_by_term_skips_whole_terms() {
        let runs = runs_of(&[1, 1, 2, 4, 4, 4, 5]);
        assert_eq!(runs.find_conflict_by_term(LogIndex(7), Term(5)), LogIndex(7));
        assert_eq!(runs.find_conflict_by_term(LogIndex(7), Term(4)), LogIndex(6));
        assert_eq!(runs.find_conflict_by_term(LogIndex(7), Term(3)), LogIndex(3));
        assert_eq!(runs.find_conflict_by_term(LogIndex(5), Term(1)), LogIndex(2));
        assert_eq!(runs.find_conflict_by_term(LogIndex(5), Term(0)), LogIndex(0));
        assert_eq!(runs.find_conflict_by_term(LogIndex(100), Term(9)), LogIndex(7));
    }

    #[test]
    fn restore_from_a_source_finds_every_run() {
        let terms = vec![1, 1, 1, 2, 3, 3, 3, 3, 3, 7, 9, 9];
        let runs = TermRuns::from_source(&Terms(terms.clone())).expect("consistent log");
        runs.check().expect("valid runs");
        for (position, term) in terms.iter().enumerate() {
            assert_eq!(runs.term_at(LogIndex(position as u64 + 1)), Some(Term(*term)));
        }
        let empty = TermRuns::from_source(&Terms(vec![])).expect("empty log");
        assert_eq!(empty.last_index(), LogIndex(0));
    }

    #[test]
    fn restore_rejects_decreasing_terms() {
        let error = TermRuns::from_source(&Terms(vec![1, 3, 2, 2])).expect_err("inconsistent");
        assert!(matches!(error, RestoreError::InconsistentLog { .. }));
    }

    /// A stored log whose entries before `first` were compacted away.
    struct Compacted {
        first: u64,
        terms: Vec<u64>,
    }

    impl LogSource for Compacted {
        fn first_index(&self) -> LogIndex {
            LogIndex(self.first)
        }
        fn last_index(&self) -> LogIndex {
            LogIndex(self.terms.len() as u64)
        }
        fn term(&self, index: LogIndex) -> Option<Term> {
            if index.next() < LogIndex(self.first) || index == LogIndex::ZERO {
                return (index == LogIndex::ZERO && self.first == 1).then_some(Term::ZERO);
            }
            self.terms.get(index.get() as usize - 1).map(|t| Term(*t))
        }
        fn read(&self, first: LogIndex, _: LogIndex, _: usize) -> Result<Vec<Entry>, LogReadError> {
            Err(LogReadError::Unavailable { index: first })
        }
    }

    #[test]
    fn compaction_keeps_the_terms_after_the_base() {
        let mut runs = runs_of(&[1, 1, 2, 4, 4, 4, 5]);
        runs.compact_before(LogIndex(5));
        runs.check().expect("valid after compaction");
        assert_eq!(runs.base(), LogIndex(4));
        assert_eq!(runs.term_at(LogIndex(3)), None, "compacted");
        assert_eq!(runs.term_at(LogIndex(0)), None, "compacted");
        assert_eq!(runs.term_at(LogIndex(4)), Some(Term(4)), "the base's term is kept");
        assert_eq!(runs.term_at(LogIndex(6)), Some(Term(4)));
        assert_eq!(runs.term_at(LogIndex(7)), Some(Term(5)));
        // Fast backtracking stops at the base: everything up to it is committed.
        assert_eq!(runs.find_conflict_by_term(LogIndex(7), Term(3)), LogIndex(4));
        assert_eq!(runs.find_conflict_by_term(LogIndex(2), Term(0)), LogIndex(2));
        runs.compact_before(LogIndex(3));
        assert_eq!(runs.base(), LogIndex(4), "never backwards");
        // A base at the last entry of its run: the run goes, the next one starts after it.
        let mut ends_a_run = runs_of(&[1, 1, 2, 4]);
        ends_a_run.compact_before(LogIndex(3));
        ends_a_run.check().expect("valid when the base ends its run");
        assert_eq!(ends_a_run.term_at(LogIndex(2)), Some(Term(1)));
        assert_eq!(ends_a_run.term_at(LogIndex(3)), Some(Term(2)));
        assert_eq!(ends_a_run.term_at(LogIndex(4)), Some(Term(4)));
        ends_a_run.compact_before(LogIndex(4));
        ends_a_run.check().expect("valid");
        assert_eq!(ends_a_run.term_at(LogIndex(4)), Some(Term(4)));
        // Compacting the whole log leaves the last entry's term.
        runs.compact_before(LogIndex(8));
        runs.check().expect("valid when empty");
        assert_eq!(runs.last_term(), Term(5));
        assert_eq!(runs.last_index(), LogIndex(7));
        runs.push(Term(5));
        runs.push(Term(6));
        runs.check().expect("valid after pushes");
        assert_eq!(runs.term_at(LogIndex(8)), Some(Term(5)));
        assert_eq!(runs.term_at(LogIndex(9)), Some(Term(6)));
        runs.truncate_after(LogIndex(7));
        runs.check().expect("valid after truncation to the base");
        assert_eq!(runs.last_term(), Term(5));
    }

    #[test]
    fn a_reset_log_starts_after_its_base() {
        let mut runs = runs_of(&[1, 1, 2]);
        runs.reset_to(LogIndex(10), Term(3));
        runs.check().expect("valid after reset");
        assert_eq!(
            (runs.base(), runs.last_index(), runs.last_term()),
            (LogIndex(10), LogIndex(10), Term(3))
        );
        assert_eq!(runs.term_at(LogIndex(2)), None);
        runs.push(Term(3));
        assert_eq!(runs.term_at(LogIndex(11)), Some(Term(3)));
        runs.check().expect("valid");
    }

    #[test]
    fn restore_from_a_compacted_source_starts_at_its_first_index() {
        let terms = vec![1, 1, 1, 2, 3, 3, 3, 3, 3, 7, 9, 9];
        for first in 1..=13 {
            let source = Compacted { first, terms: terms.clone() };
            let runs = TermRuns::from_source(&source).expect("consistent log");
            runs.check().expect("valid runs");
            assert_eq!(runs.base(), LogIndex(first - 1));
            for index in first - 1..=12 {
                assert_eq!(runs.term_at(LogIndex(index)), source.term(LogIndex(index)), "{first}");
            }
            assert_eq!(runs.last_term(), Term(9));
        }
        let beyond = Compacted { first: 14, terms };
        assert!(TermRuns::from_source(&beyond).is_err(), "a log cannot start past its end + 1");
    }
}
