//! The consensus core's read-only window onto a log store.
//!
//! Owns: [`StoreSource`], the adapter that implements [`LogSource`] for a [`LogStore`]. The
//! runtime's replicas and the cluster simulator (package raftwal-tests) use this one adapter, so
//! the simulator checks the code the nodes run.
//! Must not: write. The core asks only for entries it was told are durable (or that were durable
//! at restore), so reads never race the writer.

use crate::raft::{LogReadError, LogSource, ENTRY_OVERHEAD_BYTES};
use crate::storage::{Disk, LogStore, ReadError as StoreReadError};
use raftwal_wire::types::{Entry, LogIndex, Term};

/// A [`LogSource`] over a borrowed [`LogStore`]: everything handed to the store, durable or
/// not (the core reads only entries it knows durable).
#[derive(Debug)]
pub struct StoreSource<'a, D: Disk>(pub &'a LogStore<D>);

impl<D: Disk> Clone for StoreSource<'_, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D: Disk> Copy for StoreSource<'_, D> {}

impl<D: Disk> LogSource for StoreSource<'_, D> {
    fn last_index(&self) -> LogIndex {
        self.0.last_index()
    }

    fn first_index(&self) -> LogIndex {
        self.0.first_index()
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
            StoreReadError::Compacted { .. } | StoreReadError::BeyondEnd { .. } => {
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
