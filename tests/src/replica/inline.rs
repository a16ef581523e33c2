//! The replica loop in the runtime's order of effects: the order `engine/src/runtime` carries out
//! for every `Ready` (its replica driver documents it), so the simulator checks the protocol that
//! production runs, on the same store.
//!
//! Owns: [`InlineState`]: the persist points handed to the store and not yet reported durable,
//! the messages waiting for durability, the hard state last saved, the ticks since the commit
//! index was last saved, whether the disk refused the last submit for lack of space, and the
//! `Ready` held because a full disk refused its truncation or log start.
//! Must not: complete a disk op itself (only a disk step, or the store's own synchronous calls,
//! do); send a message from `messages_after_persist` before the store is durable up to the last
//! index it held when the message was handed out.
//!
//! The order of effects for one `Ready`:
//! 1. A changed term or vote is saved synchronously (a hard-state slot written and fdatasynced)
//!    before anything of the `Ready` leaves, with its commit index capped at the store's durable
//!    index. A change of the commit index alone is saved every [`COMMIT_SAVE_INTERVAL_TICKS`].
//! 2. Entries go to the store's pending batch; a conflicting suffix is truncated first, durably
//!    (the store waits for its batch in flight to do so). The batch is submitted when none is in
//!    flight (the store's group commit).
//! 3. `messages` leave at once.
//! 4. `messages_after_persist` wait until the store is durable up to its last index at the time.
//! 5. When the store reports durability, the core hears the highest persist point covered.
//!
//! A full disk that refuses the truncation or the log start of step 2 changes nothing on disk:
//! the loop holds that `Ready` (its hard state saved), takes no other from the core, and tries
//! it again after the next tick ([`HeldReady`]). Meanwhile the core takes no tick (nor, in the
//! world, a message or a read).
//!
//! Invariants:
//! 1. `persist_points` increase and each is above the durable index when queued; none covers
//!    an entry that a `Ready` taken from the core replaces (dropped when it is carried out, or
//!    held).
//! 2. The indexes `after_persist` waits for never decrease along the queue, except where a
//!    truncation lowered them (to the truncation point, which is durable).

use super::{Down, Replica};
use crate::checker::{Property, Violation};
use raftwal::raft::ReadState;
use raftwal::storage::{
    AppendError, CompletionError, HardStateError, ResetError, SubmitError, TruncateError,
};
use raftwal_wire::message::Message;
use raftwal_wire::types::{Entry, HardState, LogIndex, Term};
use std::collections::VecDeque;

/// Ticks between saves of a commit-index-only change of the hard state (as the runtime).
const COMMIT_SAVE_INTERVAL_TICKS: u64 = 100;

/// The runtime-order loop's state. See the module documentation.
#[derive(Debug, Default)]
pub(super) struct InlineState {
    persist_points: VecDeque<(LogIndex, Term)>,
    after_persist: VecDeque<(LogIndex, Vec<Message>)>,
    saved: HardState,
    ticks_since_commit_save: u64,
    pub(super) blocked: bool,
    /// The `Ready` a full disk refused; nothing else is taken from the core while it is held.
    pub(super) held: Option<HeldReady>,
    /// A tick passed since the held `Ready` was last tried.
    pub(super) retry_held: bool,
}

/// What of one `Ready` the runtime order carries out (its hard state first, then the rest);
/// held whole, but for the hard state saved already, when a full disk refuses its truncation
/// or log start.
#[derive(Debug)]
pub(super) struct HeldReady {
    pub(super) hard_state: Option<HardState>,
    pub(super) log_start: Option<(LogIndex, Term)>,
    pub(super) entries: Vec<Entry>,
    pub(super) persist_point: Option<(LogIndex, Term)>,
    pub(super) messages: Vec<Message>,
    pub(super) after_persist: Vec<Message>,
    pub(super) read_states: Vec<ReadState>,
    pub(super) rejoined: bool,
}

/// How carrying out a `Ready` ended.
pub(super) enum Carried {
    /// Done: these messages may leave now (`messages`, and those of `after_persist` that need
    /// nothing more), with the `Ready`'s read states and rejoin report.
    Done { send: Vec<Message>, read_states: Vec<ReadState>, rejoined: bool },
    /// A full disk refused its truncation or log start; nothing of it changed the disk (but
    /// its hard state, saved). It is held for a retry.
    Held,
}

impl InlineState {
    /// The state of a replica that just restarted with `saved` on its disk.
    pub(super) fn restarted(saved: HardState) -> InlineState {
        InlineState { saved, ..InlineState::default() }
    }
}

impl Replica {
    /// Carries out one `Ready` in the runtime's order (steps 1 to 4), or holds it (module
    /// documentation).
    pub(super) fn carry_out_inline(&mut self, mut ready: HeldReady) -> Result<Carried, Down> {
        if let Some(hard_state) = ready.hard_state.take() {
            let saved = self.inline.saved;
            if (hard_state.term, hard_state.vote) != (saved.term, saved.vote)
                && !self.save_hard_state_inline(hard_state)?
            {
                // Nothing of this `Ready` was carried out: held whole, its hard state with it.
                ready.hard_state = Some(hard_state);
                self.hold(ready);
                return Ok(Carried::Held);
            }
        }
        if let Some((index, term)) = ready.log_start {
            if !self.reset_inline(index, term)? {
                self.hold(ready);
                return Ok(Carried::Held);
            }
            ready.log_start = None;
        }
        if let Some(first) = ready.entries.first().map(|entry| entry.index) {
            let log = self.store.log().expect("a Ready is handled only while the replica is up");
            let durable_before = log.durable_index();
            if first <= log.last_index() {
                let keep = first.prev();
                match self.store.truncate_after(keep) {
                    Ok(()) => {}
                    Err(TruncateError::NoSpace(_)) => {
                        // Nothing changed (but for the batch in flight, which the truncation
                        // waited for): held for a retry.
                        self.check_refusal(durable_before, true)?;
                        self.hold(ready);
                        return Ok(Carried::Held);
                    }
                    Err(error) => {
                        let what = format!("truncating after {keep}: {error}");
                        return Err(self.down(what, durable_before));
                    }
                }
                self.inline.persist_points.retain(|(index, _)| *index <= keep);
                for (need, _) in &mut self.inline.after_persist {
                    *need = (*need).min(keep);
                }
                let durable = self.store.log().expect("up").durable_index();
                self.reported_durable = self.reported_durable.min(durable);
            }
            let log = self.store.log_mut().expect("up");
            match log.append(&ready.entries) {
                Ok(()) => {}
                Err(AppendError::Poisoned(error)) => {
                    return Err(self.down(format!("appending: {error}"), durable_before));
                }
                Err(error) => {
                    return Err(Down::Broken(Violation {
                        property: Property::CoreError,
                        detail: format!(
                            "{:?}: the entries of a Ready do not continue the stored log: {error}",
                            self.config.id
                        ),
                    }));
                }
            }
        }
        if let Some(point) = ready.persist_point {
            self.inline.persist_points.push_back(point);
        }
        let mut send = ready.messages;
        if !ready.after_persist.is_empty() {
            let log = self.store.log().expect("up");
            let need = log.last_index();
            if need <= log.durable_index() && self.inline.after_persist.is_empty() {
                send.extend(ready.after_persist);
            } else {
                self.inline.after_persist.push_back((need, ready.after_persist));
            }
        }
        Ok(Carried::Done { send, read_states: ready.read_states, rejoined: ready.rejoined })
    }

    fn hold(&mut self, ready: HeldReady) {
        // As the runtime: the core's log is the held `Ready`'s, so the points of batches whose
        // entries it replaces are not reported while it is held.
        if ready.log_start.is_some() {
            self.inline.persist_points.clear();
        } else if let Some(first) = ready.entries.first().map(|entry| entry.index) {
            let last = self.store.log().map_or(LogIndex::ZERO, |log| log.last_index());
            if first <= last {
                let keep = first.prev();
                self.inline.persist_points.retain(|(index, _)| *index <= keep);
            }
        }
        self.inline.held = Some(ready);
        self.inline.retry_held = false;
    }

    /// A leader's log start: the store replaces its log, durably (waiting for its batch in
    /// flight), and the points and messages that waited for the old log wait for the new start.
    /// False when a full disk refused it (nothing changed).
    fn reset_inline(&mut self, index: LogIndex, term: Term) -> Result<bool, Down> {
        let durable_before = self.store.log().expect("up").durable_index();
        match self.store.reset_to(index, term) {
            Ok(()) => {}
            Err(ResetError::NoSpace(_)) => {
                // Nothing changed (but for the batch in flight, which the reset waited for).
                self.check_refusal(durable_before, true)?;
                return Ok(false);
            }
            Err(error) => {
                let what = format!("starting the log after {index}: {error}");
                return Err(self.down(what, durable_before));
            }
        }
        self.inline.persist_points.clear();
        for (need, _) in &mut self.inline.after_persist {
            *need = (*need).min(index);
        }
        self.reported_durable = self.reported_durable.min(index.prev());
        Ok(true)
    }

    /// Saves the hard state; false when a full disk refused it (nothing changed, the log is
    /// not poisoned: checked).
    fn save_hard_state_inline(&mut self, hard_state: HardState) -> Result<bool, Down> {
        let log = self.store.log_mut().expect("up");
        let durable = log.durable_index();
        // A restart must not claim an entry committed that the replica no longer holds.
        let hard_state = HardState { commit: hard_state.commit.min(durable), ..hard_state };
        match log.save_hard_state(hard_state) {
            Ok(()) => {}
            Err(HardStateError::NoSpace(_)) => {
                self.check_refusal(durable, false)?;
                return Ok(false);
            }
            Err(error) => {
                return Err(self.down(format!("saving the hard state: {error}"), durable));
            }
        }
        self.inline.saved = hard_state;
        self.inline.ticks_since_commit_save = 0;
        Ok(true)
    }

    /// Takes the store's completions (step 5): tells the core the highest persist point now
    /// durable and returns the messages that waited for it.
    pub(super) fn reap_inline(&mut self) -> Result<Vec<Message>, Down> {
        let log = self.store.log_mut().expect("up");
        let durable_before = log.durable_index();
        let durable = match log.process_completions() {
            Ok(durable) => durable,
            Err(CompletionError::NoSpace(_)) => {
                // The batch was withdrawn and stays queued; the next submit retries it. Batches
                // that completed before it in the same call may have moved the durable index
                // forward, never back.
                self.check_refusal(durable_before, true)?;
                self.store.note_withdrawal();
                self.store.log().expect("up").durable_index()
            }
            Err(error) => {
                return Err(self.down(format!("completing a batch: {error}"), durable_before))
            }
        };
        let mut persisted = None;
        while let Some(&(index, term)) = self.inline.persist_points.front() {
            if index > durable {
                break;
            }
            self.inline.persist_points.pop_front();
            persisted = Some((index, term));
        }
        if let Some((index, term)) = persisted {
            // The highest point covers the lower ones: everything before it is durable too.
            self.core.as_mut().expect("up").persisted(index, term);
            self.reported_durable = index;
        }
        let mut released = Vec::new();
        while self.inline.after_persist.front().is_some_and(|(need, _)| *need <= durable) {
            if let Some((_, messages)) = self.inline.after_persist.pop_front() {
                released.extend(messages);
            }
        }
        Ok(released)
    }

    /// Hands the store's pending entries to the disk when a batch can start (none in flight, or
    /// fewer than the store's `batches_in_flight_max`: pipelined).
    pub(super) fn submit_inline(&mut self) -> Result<(), Down> {
        let log = self.store.log_mut().expect("up");
        if !log.can_start_batch() {
            self.inline.blocked = false;
            return Ok(());
        }
        let durable_before = log.durable_index();
        match log.submit() {
            Ok(_) => {
                self.inline.blocked = false;
                Ok(())
            }
            Err(SubmitError::NoSpace(_)) => {
                self.check_refusal(durable_before, false)?;
                self.inline.blocked = true;
                self.full_disk_refusals += 1;
                Ok(())
            }
            Err(error) => Err(self.down(format!("submitting a batch: {error}"), durable_before)),
        }
    }

    /// One disk step: up to `ops_max` queued ops complete, then the completions are taken and
    /// the next batch submitted. Returns the messages released.
    pub(super) fn disk_step_inline(&mut self, ops_max: usize) -> Result<Vec<Message>, Down> {
        if self.store.log().is_some_and(super::needs_disk) {
            self.store.disk().run_pending(ops_max);
        }
        let released = self.reap_inline()?;
        self.submit_inline()?;
        Ok(released)
    }

    /// Whether the store needs the disk: a batch in flight, one the full disk refused, or one
    /// that waits for the zero-fill write in flight.
    pub(super) fn needs_disk_step_inline(&self) -> bool {
        self.store
            .log()
            .is_some_and(|log| super::needs_disk(log) || (log.has_pending() && self.inline.blocked))
    }

    /// One tick: the core's, and now and then a save of a commit index that moved alone.
    pub(super) fn tick_inline(&mut self) -> Result<(), Down> {
        if self.inline.held.is_some() {
            // The core waits with the rest, as the runtime's (no messages reach it either).
            self.inline.retry_held = true;
        } else {
            self.core.as_mut().expect("up").tick();
        }
        self.inline.ticks_since_commit_save += 1;
        let log = self.store.log().expect("up");
        // The core's commit capped at its own durable index, as the runtime's: while a `Ready`
        // is held, its commit index covers entries the store does not hold (older ones sit at
        // those indices, durable).
        let commit = self.core.as_ref().expect("up").hard_state().commit.min(log.durable_index());
        if self.inline.ticks_since_commit_save >= COMMIT_SAVE_INTERVAL_TICKS
            && commit > self.inline.saved.commit
        {
            let hard_state = HardState { commit, ..self.inline.saved };
            if !self.save_hard_state_inline(hard_state)? {
                // Optional: tried again after another interval, as the runtime does.
                self.inline.ticks_since_commit_save = 0;
            }
        }
        Ok(())
    }
}
