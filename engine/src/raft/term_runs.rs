//! The term of every entry in the log, kept in memory as runs of consecutive same-term entries.
//!
//! Owns: [`TermRuns`]. A log of billions of entries written under a few hundred leaders needs a
//! few hundred runs, so every term lookup (consistency check, commit rule, election restriction,
//! fast backtracking) is a binary search in memory and never touches storage.
//! Must not: hold payloads (that is the entry cache's job).
//! Invariants:
//! 1. Runs are sorted by strictly increasing `first` and strictly increasing `term`.
//! 2. When non-empty, the first run starts at index 1 and the last run starts at or before
//!    `last_index`; a run covers `[first, next run's first)` and the last run ends at `last_index`.
//! 3. The list is empty exactly when `last_index` is 0.

use crate::raft::errors::RestoreError;
use crate::raft::log_source::LogSource;
use raftwal_wire::types::{LogIndex, Term};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TermRun {
    first: LogIndex,
    term: Term,
}

/// Terms of the log's entries `1..=last_index`, as runs.
#[derive(Clone, Debug, Default)]
pub(crate) struct TermRuns {
    runs: Vec<TermRun>,
    last_index: LogIndex,
}

impl TermRuns {
    /// Learns the runs of a stored log through `source`, with a binary search per run boundary
    /// (terms never decrease along the log), so restoring costs O(runs * log(entries)) lookups.
    pub(crate) fn from_source<S: LogSource + ?Sized>(source: &S) -> Result<TermRuns, RestoreError> {
        let last_index = source.last_index();
        let mut runs = TermRuns::default();
        let mut first = LogIndex(1);
        while first <= last_index {
            let term = stored_term(source, first)?;
            if let Some(previous) = runs.runs.last() {
                if term <= previous.term {
                    return Err(RestoreError::InconsistentLog {
                        index: first,
                        reason: "term does not increase at a term boundary",
                    });
                }
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

    pub(crate) fn last_index(&self) -> LogIndex {
        self.last_index
    }

    pub(crate) fn last_term(&self) -> Term {
        self.runs.last().map_or(Term::ZERO, |run| run.term)
    }

    /// Term of the entry at `index`: `Term::ZERO` for index 0, `None` beyond the last entry.
    pub(crate) fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index > self.last_index {
            return None;
        }
        if index == LogIndex::ZERO {
            return Some(Term::ZERO);
        }
        // Most lookups are near the end of the log (the commit rule, the consistency check of a
        // follower that keeps up), so try the last run before searching.
        let last = self.runs.last().expect("a non-empty log has a run (invariant 3)");
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
            None => self.runs.push(TermRun { first: index, term }),
        }
        self.last_index = index;
    }

    /// Removes every entry after `index`.
    pub(crate) fn truncate_after(&mut self, index: LogIndex) {
        if index >= self.last_index {
            return;
        }
        let keep = self.runs.partition_point(|run| run.first <= index);
        self.runs.truncate(keep);
        self.last_index = index;
    }

    /// The largest index `j <= index` whose term is at most `term` (0 when there is none).
    ///
    /// This is the heart of fast backtracking: a follower answers a failed consistency check with
    /// the last entry that could still match the leader's term, and the leader answers that hint
    /// with its own last entry that could match it, so each round trip skips a whole term.
    pub(crate) fn find_conflict_by_term(&self, index: LogIndex, term: Term) -> LogIndex {
        let index = index.min(self.last_index);
        if index == LogIndex::ZERO {
            return LogIndex::ZERO;
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
        LogIndex::ZERO
    }

    /// Checks invariants 1 to 3.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        if self.runs.is_empty() != (self.last_index == LogIndex::ZERO) {
            return Err("term runs are empty exactly when the log is (invariant 3)");
        }
        if let Some(first) = self.runs.first() {
            if first.first != LogIndex(1) {
                return Err("the first term run starts at index 1 (invariant 2)");
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
}
