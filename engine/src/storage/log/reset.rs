//! Replacing the whole log by an empty one that starts after a given entry:
//! [`LogStore::reset_to`] (a Raft follower told "your log starts after (index, term)").
//!
//! Owns: the order of file operations that keeps every crash point a valid log (docs/format.md,
//! "Reset"). The new log's first segment is a *base* segment (header flag `base`): recovery
//! starts the log at the base segment with the highest first index and removes every segment
//! before it. So:
//! 1. Wait for the batches and the background op in flight.
//! 2. Clear the bytes after the live records of every segment that will be the last one for a
//!    moment while the segments after it are removed (step 4), where records may follow them
//!    (records an earlier truncation cut, or withdrawn batches wrote), and those withdrawn
//!    batches left after the active segment's records: recovery reads a last segment to its
//!    end, and until the commit point (step 5) it reads the old log, whose removed records
//!    must never read as entries.
//! 3. Prepare the base segment `index + 1` (previous term `term`, flag `base`) under a
//!    temporary name, synced. Running out of space here (or in step 2) changes nothing.
//! 4. Remove the segments that start after `index + 1`, last first, each followed by a
//!    directory fsync (a crash leaves the old log without some of its entries after `index`),
//!    but keep the first one if every segment starts after `index + 1`.
//! 5. The commit point:
//!    - some segment starts at or before `index + 1`: rename the base segment into place
//!      (atomically replacing a segment that starts at `index + 1`) and fsync the directory.
//!      From then on it is the base segment with the highest first index, and recovery drops
//!      what is before it;
//!    - every segment starts after it (one is left): the base segment would sort before it,
//!      so the rename alone cannot say which is newer. It is renamed to
//!      `<index + 1>.base` (directory fsync), then the last old segment is removed (directory
//!      fsync: the commit), then it is renamed to its segment name (directory fsync). Recovery
//!      removes a `.base` file while any segment is left and renames it into place otherwise.
//! 6. Remove the segments before the base segment, then one directory fsync, before
//!    returning: a later truncation may replace the base segment by one without the flag.

use super::truncate::InFlightWaitError;
use super::LogStore;
use crate::storage::disk::Disk;
use crate::storage::error::ResetError;
use crate::storage::format::SegmentId;
use crate::storage::terms::TermRuns;
use raftwal_wire::types::{LogIndex, Term};
use std::io;

impl<D: Disk> LogStore<D> {
    /// Replaces the whole log by an empty log that starts after entry `index` of term `term`,
    /// durably before returning: afterwards `first_index() == index + 1`, `last_index() ==
    /// durable_index() == index`, `term(index) == Some(term)`, `last_term() == term`, reads
    /// below `index + 1` fail with `ReadError::Compacted`, and the next `append` starts at
    /// `index + 1` (the log goes on from there like any other: roll-overs, truncation,
    /// compaction). The batches in flight are waited for first; queued entries are dropped.
    ///
    /// `index` may be below, inside or beyond the current log, and the old log may hold any
    /// term at `index` (or none). Index 0 is allowed with term 0 only (an empty log from
    /// index 1, as a new one); index `u64::MAX` is refused, and so is an index below the saved
    /// hard state's commit index (a reset never drops what this node saved as committed). Those
    /// return [`ResetError::InvalidStart`] or [`ResetError::BelowCommit`] and change nothing.
    ///
    /// The caller guarantees that every entry at or below `index` is committed in the cluster
    /// and that no old entry after it is. At every crash point, recovery ([`LogStore::open`])
    /// finds either the old log, possibly without some of its entries after `index` (it still
    /// holds every entry up to `min(index, old last index)`), or the new log (empty, starting
    /// after `(index, term)`, plus whatever was appended and made durable since): never a gap,
    /// never old entries after the new start (docs/format.md, "Reset").
    ///
    /// [`ResetError::NoSpace`]: no space for the new segment; nothing changed and the log stays
    /// usable. [`ResetError::Io`]: the log is poisoned.
    pub fn reset_to(&mut self, index: LogIndex, term: Term) -> Result<(), ResetError> {
        self.check_poison()?;
        let invalid = |reason| Err(ResetError::InvalidStart { index, term, reason });
        if index == LogIndex::ZERO && term != Term::ZERO {
            return invalid("there is no entry 0, whose term is 0");
        }
        if index.get() == u64::MAX {
            return invalid("no entry can follow it");
        }
        let commit = self.hard.state().commit;
        if index < commit {
            return Err(ResetError::BelowCommit { index, commit });
        }
        self.wait_batches_for_reset()?;
        if let Err(e) = self.wait_background() {
            return Err(self.reset_failed("waiting for background work", e));
        }
        let id = SegmentId(index.next());
        // Step 2: the segments that become the last one while those after them are removed:
        // from the last one starting at or before the base (the first one if none does) to
        // the one before the active segment.
        let exposed_from =
            self.segments.partition_point(|s| s.first_index() <= id.0).saturating_sub(1);
        if let Err(e) = self.clear_withdrawn().and_then(|()| self.clear_exposed(exposed_from)) {
            if e.kind() == io::ErrorKind::StorageFull {
                return Err(ResetError::NoSpace(e));
            }
            return Err(self.reset_failed("clearing a segment's bytes after its records", e));
        }
        // Step 3.
        let prepared = self.take_spare(id, term, true);
        let mut prepared = match prepared.map_or_else(|| self.prepare_segment(id, term, true), Ok) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::StorageFull => return Err(ResetError::NoSpace(e)),
            Err(e) => return Err(self.reset_failed("preparing the base segment", e)),
        };
        // Step 4.
        while self.segments.len() > 1
            && self.segments.back().is_some_and(|s| s.first_index() > id.0)
        {
            let seg = self.segments.pop_back().expect("checked non-empty");
            if let Some(f) = seg.file {
                self.disk.close(f);
            }
            let path = seg.path(&self.dir);
            let removed = self
                .remove_index(seg.id)
                .and_then(|()| self.disk.remove(&path))
                .and_then(|()| self.disk.sync_dir(&self.dir));
            if let Err(e) = removed {
                self.disk.close(prepared.file);
                return Err(self.reset_failed("removing a segment after the new start", e));
            }
        }
        let back = self.segments.back().expect("a log always has a segment");
        if back.first_index() == id.0 {
            // The base segment replaces this one (the rename is atomic); its index goes first.
            let seg = self.segments.pop_back().expect("checked non-empty");
            if let Some(f) = seg.file {
                self.disk.close(f);
            }
            if let Err(e) = self.remove_index(seg.id) {
                self.disk.close(prepared.file);
                return Err(self.reset_failed("removing a replaced segment's index", e));
            }
        } else if back.file.is_some() {
            // Kept readable (from its map, or its file) until its file is removed, or if the
            // reset fails.
            self.seal_active();
        }
        // Step 5.
        let pending = self.segments.front().is_some_and(|s| s.first_index() > id.0);
        if pending {
            let name = self.dir.join(id.pending_base_file_name());
            let renamed = self
                .disk
                .rename(prepared.tmp(), &name)
                .and_then(|()| self.disk.sync_dir(&self.dir));
            if let Err(e) = renamed {
                self.disk.close(prepared.file);
                return Err(self.reset_failed("naming the base segment pending", e));
            }
            prepared.renamed(name);
            let (id, path) = (self.segments[0].id, self.segments[0].path(&self.dir));
            // The commit point: no segment is left, so recovery takes the pending base segment.
            let removed = self
                .remove_index(id)
                .and_then(|()| self.disk.remove(&path))
                .and_then(|()| self.disk.sync_dir(&self.dir));
            if let Err(e) = removed {
                self.disk.close(prepared.file);
                return Err(self.reset_failed("removing the old log's last segment", e));
            }
        }
        if let Err(e) = self.install_segment(prepared) {
            return Err(self.reset_failed("installing the base segment", e));
        }
        self.unmap_old();
        // The new log, in memory (its base segment is durably in place).
        self.tail.clear();
        self.tail_payload_bytes = 0;
        self.terms = TermRuns::new(index, term);
        self.last_index = index;
        self.written_index = index;
        self.durable_index = index;
        // Step 6.
        let old: Vec<_> = self.segments.drain(..self.segments.len() - 1).collect();
        if pending || old.is_empty() {
            // (Pending: the one old segment was removed before the commit.)
            return Ok(());
        }
        for seg in old {
            let (id, path) = (seg.id, seg.path(&self.dir));
            drop(seg);
            if let Err(e) = self.remove_index(id).and_then(|()| self.disk.remove(&path)) {
                return Err(self.reset_failed("removing a segment before the new start", e));
            }
        }
        if let Err(e) = self.disk.sync_dir(&self.dir) {
            return Err(self.reset_failed("syncing the directory after the reset", e));
        }
        Ok(())
    }

    /// [`LogStore::wait_in_flight`] for a reset: a failed wait poisons the log.
    fn wait_batches_for_reset(&mut self) -> Result<(), ResetError> {
        self.wait_in_flight().map_err(|e| match e {
            InFlightWaitError::Wait(e) => self.reset_failed("waiting for the batch in flight", e),
            InFlightWaitError::Completion(source) => {
                ResetError::Io { context: "completing the batch in flight".into(), source }
            }
        })
    }

    fn reset_failed(&mut self, context: &str, e: io::Error) -> ResetError {
        self.set_poison(format!("reset failed while {context}: {e}"));
        ResetError::Io { context: context.to_owned(), source: e }
    }
}
