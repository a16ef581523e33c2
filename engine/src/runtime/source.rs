//! The consensus core's read-only window onto a log store.
//!
//! Owns: [`StoreSource`], the adapter that implements [`LogSource`] for a [`LogStore`].
//! Must not: write. The core asks only for entries it was told are durable (or that were durable
//! at restore), so reads never race the writer.

use crate::raft::{LogReadError, LogSource};
use crate::storage::{Disk, LogStore, ReadError as StoreReadError};
use raftwal_wire::types::{Entry, LogIndex, Term};

/// A [`LogSource`] over a borrowed [`LogStore`].
#[derive(Debug)]
pub(crate) struct StoreSource<'a, D: Disk>(pub(crate) &'a LogStore<D>);

impl<D: Disk> LogSource for StoreSource<'_, D> {
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
        let mut entries = self.0.read(first, size_bytes_max).map_err(|e| match e {
            StoreReadError::Compacted { .. } => LogReadError::Unavailable { index: first },
            other => LogReadError::Storage { reason: other.to_string() },
        })?;
        while entries.last().is_some_and(|e| e.index > last) {
            entries.pop();
        }
        if entries.is_empty() && first <= last {
            return Err(LogReadError::Unavailable { index: first });
        }
        Ok(entries)
    }
}
