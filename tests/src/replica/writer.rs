//! The replica loop's group-commit writer ([`super::DriverOrder::Groups`]): the queued
//! `Ready`s' writes, carried out by the real log store, one disk step at a time.
//!
//! Owns: the group in progress and its stages: save the hard state (one synchronous write and
//! fdatasync of its slot), hand the entries to the store (truncating a conflicting suffix
//! first), let the store write them in batches (one write and one fdatasync each, or chunk
//! writes and one fdatasync), and release the group's messages once all of it is durable.
//! Must not: run a disk op the caller did not ask for (the simulator decides when each op
//! completes, so completions interleave with network events); tell the core anything the store
//! did not report durable; carry on after a failed write or fsync.
//! Invariants:
//! 1. A group's hard state is saved before its entries reach the store, and the group's
//!    messages are released only when the hard state is saved and every entry handed to the
//!    store is durable (the store's durable index reaches its last index).
//! 2. Queued ops of the disk run only in a disk step, as many as the caller allows.
//! 3. A full disk changes nothing: the step is retried later, the log is not poisoned and its
//!    durable index does not move.

use super::{Down, PendingWrite, Replica};
use crate::checker::{Property, Violation};
use raftwal::storage::{
    AppendError, CompletionError, HardStateError, ResetError, SubmitError, TruncateError,
};
use raftwal_wire::message::Message;
use raftwal_wire::types::{HardState, LogIndex};

/// The writes of consecutive `Ready`s handed to the writer together.
#[derive(Debug)]
pub(super) struct Group {
    writes: Vec<PendingWrite>,
    /// The hard state to save before the entries, until it is saved.
    hard_state: Option<HardState>,
    /// How many of `writes` have their entries in the store.
    applied: usize,
}

/// What one step of the group writer did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum GroupStep {
    /// Disk work remains: step again once the disk had time for it.
    Busy,
    /// The disk is full; nothing changed. Try the step again later.
    Blocked,
    /// Every write of the group is durable; these messages may leave now.
    Done(Vec<Message>),
}

/// Where a step starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The group was just formed: nothing may take disk time yet.
    Start,
    /// The disk had time for up to `ops_max` queued operations.
    DiskStep { ops_max: usize },
}

impl Replica {
    /// Starts a group with every queued `Ready`, if none is in progress. Without a hard state
    /// to save, the entries go to the store at once (and its first batch is queued on the
    /// disk). `None` when no group started.
    pub(super) fn start_group(&mut self) -> Option<Result<GroupStep, Down>> {
        if self.core.is_none() || self.group.is_some() || self.queued.is_empty() {
            return None;
        }
        let writes: Vec<PendingWrite> = self.queued.drain(..).collect();
        let hard_state = writes.iter().rev().find_map(|write| write.hard_state);
        self.group = Some(Group { writes, hard_state, applied: 0 });
        Some(self.advance(Stage::Start))
    }

    /// One disk step of the group in progress: the hard state save, or up to `ops_max` of the
    /// ops queued on the disk (chunk writes of a batch are in flight together, so the device
    /// may complete several at once), then whatever follows at once (the store's completion
    /// handling: the batch's fdatasync after its chunk writes, its next batch).
    pub(super) fn group_step(&mut self, ops_max: usize) -> Result<GroupStep, Down> {
        assert!(self.group.is_some(), "a disk step belongs to a group");
        self.advance(Stage::DiskStep { ops_max })
    }

    fn advance(&mut self, stage: Stage) -> Result<GroupStep, Down> {
        let group = self.group.as_mut().expect("checked by the callers");
        if let Some(hard_state) = group.hard_state {
            if stage == Stage::Start {
                return Ok(GroupStep::Busy);
            }
            let log = self.store.log_mut().expect("a group runs only while the replica is up");
            let durable_before = log.durable_index();
            match log.save_hard_state(hard_state) {
                Ok(()) => {}
                // Nothing changed; the group keeps its hard state for the retry.
                Err(HardStateError::NoSpace(_)) => return self.blocked(durable_before),
                Err(error) => {
                    let what = format!("saving the hard state: {error}");
                    return Err(self.down(what, durable_before));
                }
            }
            group.hard_state = None;
        } else if let (Stage::DiskStep { ops_max }, true) =
            (stage, self.store.log().is_some_and(super::needs_disk))
        {
            self.store.disk().run_pending(ops_max);
            let log = self.store.log_mut().expect("up");
            let durable_before = log.durable_index();
            match log.process_completions() {
                Ok(_) => {}
                Err(CompletionError::NoSpace(_)) => {
                    // Batches that completed before the withdrawn one may have moved the
                    // durable index forward in the same call; never back.
                    self.check_refusal(durable_before, true)?;
                    self.store.note_withdrawal();
                    self.report_durable();
                    return Ok(GroupStep::Blocked);
                }
                Err(error) => {
                    return Err(self.down(format!("completing a batch: {error}"), durable_before));
                }
            }
            self.report_durable();
        }
        if let Some(step) = self.apply()? {
            return Ok(step);
        }
        let log = self.store.log_mut().expect("up");
        let durable_before = log.durable_index();
        if !log.has_in_flight() && log.has_pending() {
            match log.submit() {
                Ok(_) => {}
                Err(SubmitError::NoSpace(_)) => return self.blocked(durable_before),
                Err(error) => {
                    return Err(self.down(format!("submitting a batch: {error}"), durable_before))
                }
            }
        }
        let log = self.store.log().expect("up");
        if super::needs_disk(log) {
            assert!(
                self.store.disk().pending_ops() > 0,
                "a batch in flight, or the zero-fill write the next one waits for, has an op \
                 queued on the disk (manual mode)"
            );
            return Ok(GroupStep::Busy);
        }
        assert_eq!(log.durable_index(), log.last_index(), "nothing in flight, nothing pending");
        let group = self.group.take().expect("checked above");
        let mut send = Vec::new();
        for write in group.writes {
            send.extend(write.after_persist);
        }
        Ok(GroupStep::Done(send))
    }

    /// Hands the group's entries not yet in the store to it, truncating a conflicting suffix
    /// first. `Some` when the step ends here (the disk is full).
    fn apply(&mut self) -> Result<Option<GroupStep>, Down> {
        loop {
            let group = self.group.as_mut().expect("a group runs");
            let Some(write) = group.writes.get(group.applied) else {
                return Ok(None);
            };
            let durable_before = self.store.log().expect("up").durable_index();
            if let Some((index, term)) = write.log_start {
                assert!(!self.store.log().expect("up").has_in_flight(), "a reset never waits");
                match self.store.reset_to(index, term) {
                    Ok(()) => {}
                    Err(ResetError::NoSpace(_)) => return self.blocked(durable_before).map(Some),
                    Err(error) => {
                        let what = format!("starting the log after {index}: {error}");
                        return Err(self.down(what, durable_before));
                    }
                }
                // Its start is durable now (the reset syncs): the core hears it at once.
                self.reported_durable = self.reported_durable.min(index.prev());
                self.report_durable();
                let group = self.group.as_mut().expect("a group runs");
                let applied = group.applied;
                group.writes[applied].log_start = None;
            }
            let group = self.group.as_ref().expect("a group runs");
            let write = &group.writes[group.applied];
            if let Some(first) = write.entries.first() {
                let log = self.store.log().expect("up");
                if first.index <= log.last_index() {
                    assert!(!log.has_in_flight(), "a truncation never waits for a batch");
                    match self.store.truncate_after(first.index.prev()) {
                        Ok(()) => {}
                        Err(TruncateError::NoSpace(_)) => {
                            return self.blocked(durable_before).map(Some);
                        }
                        Err(error) => {
                            let what = format!("truncating after {}: {error}", first.index.prev());
                            return Err(self.down(what, durable_before));
                        }
                    }
                    let durable = self.store.log().expect("up").durable_index();
                    self.reported_durable = self.reported_durable.min(durable);
                }
                let group = self.group.as_ref().expect("a group runs");
                let entries = &group.writes[group.applied].entries;
                let log = self.store.log_mut().expect("up");
                match log.append(entries) {
                    Ok(()) => {}
                    Err(AppendError::Poisoned(error)) => {
                        return Err(self.down(format!("appending: {error}"), durable_before));
                    }
                    Err(error) => {
                        return Err(Down::Broken(Violation {
                            property: Property::CoreError,
                            detail: format!(
                                "{:?}: the entries of a Ready do not continue the stored log: \
                                 {error}",
                                self.config.id
                            ),
                        }));
                    }
                }
            }
            self.group.as_mut().expect("a group runs").applied += 1;
        }
    }

    /// Tells the core how far the store's log is durable, when that advanced.
    fn report_durable(&mut self) {
        let log = self.store.log().expect("up");
        let durable = log.durable_index();
        if durable > self.reported_durable {
            let term = log.term(durable).expect("the durable index is in the log");
            self.core.as_mut().expect("up").persisted(durable, term);
            self.reported_durable = durable;
        }
    }

    /// The disk is full: checks that this changed nothing, and asks for a later retry.
    fn blocked(&mut self, durable_before: LogIndex) -> Result<GroupStep, Down> {
        // A group truncates only with no batch in flight: nothing can have completed.
        self.check_refusal(durable_before, false)?;
        Ok(GroupStep::Blocked)
    }
}
