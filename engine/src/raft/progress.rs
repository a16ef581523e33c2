//! What the leader knows about each follower's log, and the flow control of its replication.
//!
//! Owns: [`Progress`] (one per follower, leader only) and its in-flight window ([`Inflights`]).
//! Must not: build messages (replication does that) or decide commits (commit does that).
//! Invariants:
//! 1. `match_index < next_index`: entries up to `match_index` are known to be durable on the
//!    follower and to match the leader's log; `next_index` is the next entry to send.
//! 2. In `Probe` state at most one AppendEntries is outstanding (`probe_paused` after a send),
//!    and the window is empty; in `Replicate` state, messages are sent optimistically up to the
//!    window, whose every slot covers entries above `match_index`.
//! 3. The window holds at most `inflight_message_count_max` messages and stops accepting new
//!    ones once `inflight_size_bytes_max` bytes are outstanding.

use raftwal_wire::types::{LogIndex, NodeId};
use std::collections::VecDeque;

/// How the leader replicates to one follower (etcd's progress states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationState {
    /// The leader does not know where the follower's log matches its own: it sends one
    /// AppendEntries at a time and waits for the answer (paper 5.3, with fast backtracking).
    Probe,
    /// The logs match up to `match_index`: the leader pipelines AppendEntries without waiting,
    /// within the in-flight window.
    Replicate,
}

/// A read-only snapshot of one follower's progress, for metrics and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgressView {
    /// Highest index known durable on the follower and matching the leader's log.
    pub match_index: LogIndex,
    /// Next index the leader will send.
    pub next_index: LogIndex,
    /// Probe or Replicate.
    pub state: ReplicationState,
    /// AppendEntries messages sent and not yet acknowledged.
    pub inflight_message_count: usize,
    /// Entry bytes sent and not yet acknowledged.
    pub inflight_size_bytes: usize,
    /// The follower answered within the current CheckQuorum period.
    pub recently_active: bool,
}

/// The window of AppendEntries sent to one follower and not yet acknowledged.
#[derive(Clone, Debug)]
pub(crate) struct Inflights {
    /// Last index and charged bytes of each outstanding message, oldest first.
    sent: VecDeque<(LogIndex, usize)>,
    size_bytes: usize,
    count_max: usize,
    size_bytes_max: usize,
}

/// Slots of a window allocated ahead: `count_max` is a limit (any `usize` is valid
/// configuration), not a size to allocate; a larger window grows as messages are sent.
const INFLIGHTS_PREALLOCATED_MAX: usize = 256;

impl Inflights {
    pub(crate) fn new(count_max: usize, size_bytes_max: usize) -> Inflights {
        Inflights {
            sent: VecDeque::with_capacity(count_max.min(INFLIGHTS_PREALLOCATED_MAX)),
            size_bytes: 0,
            count_max,
            size_bytes_max,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.sent.len() >= self.count_max || self.size_bytes >= self.size_bytes_max
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    pub(crate) fn add(&mut self, last: LogIndex, size_bytes: usize) {
        assert!(!self.is_full(), "nothing is sent into a full window (invariant 3)");
        self.sent.push_back((last, size_bytes));
        self.size_bytes += size_bytes;
    }

    /// Frees every message whose entries are all at or below `index`.
    pub(crate) fn free_up_to(&mut self, index: LogIndex) {
        while let Some(&(last, size)) = self.sent.front() {
            if last > index {
                break;
            }
            self.sent.pop_front();
            self.size_bytes -= size;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.sent.clear();
        self.size_bytes = 0;
    }
}

/// The leader's record of one follower.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    pub(crate) node: NodeId,
    pub(crate) match_index: LogIndex,
    pub(crate) next_index: LogIndex,
    pub(crate) state: ReplicationState,
    /// In Probe state: an AppendEntries is outstanding; send nothing until an answer or a
    /// heartbeat response arrives.
    pub(crate) probe_paused: bool,
    pub(crate) inflight: Inflights,
    /// Heard from in the current CheckQuorum period.
    pub(crate) recent_active: bool,
    /// Leader ticks since the follower last acknowledged entries or, if later, since a message
    /// went into an empty window; a pipeline that stays silent for an election timeout lost a
    /// message and falls back to probing.
    pub(crate) ticks_since_ack: u32,
    /// Highest read-index context the follower echoed in this term (0: none; contexts start at 1).
    pub(crate) read_context_acked: u64,
    /// Highest commit index sent to the follower (in an AppendEntries or a heartbeat).
    pub(crate) commit_sent: LogIndex,
}

impl Progress {
    /// A follower about which a new leader knows nothing yet: probe from the leader's end.
    pub(crate) fn new(
        node: NodeId,
        last_index: LogIndex,
        count_max: usize,
        size_bytes_max: usize,
    ) -> Progress {
        Progress {
            node,
            match_index: LogIndex::ZERO,
            next_index: last_index.next(),
            state: ReplicationState::Probe,
            probe_paused: false,
            inflight: Inflights::new(count_max, size_bytes_max),
            recent_active: false,
            ticks_since_ack: 0,
            read_context_acked: 0,
            commit_sent: LogIndex::ZERO,
        }
    }

    pub(crate) fn view(&self) -> ProgressView {
        ProgressView {
            match_index: self.match_index,
            next_index: self.next_index,
            state: self.state,
            inflight_message_count: self.inflight.sent.len(),
            inflight_size_bytes: self.inflight.size_bytes,
            recently_active: self.recent_active,
        }
    }

    pub(crate) fn become_probe(&mut self) {
        self.state = ReplicationState::Probe;
        self.next_index = self.match_index.next();
        self.probe_paused = false;
        self.inflight.clear();
        self.ticks_since_ack = 0;
    }

    /// The follower lost its log (it is rejoining, `rejoin`): nothing is known to match any
    /// more. Probe again from the leader's end, as a new leader does.
    pub(crate) fn forget_match(&mut self, last_index: LogIndex) {
        self.match_index = LogIndex::ZERO;
        self.become_probe();
        self.next_index = last_index.next();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.next_index = self.match_index.next();
        self.probe_paused = false;
        self.inflight.clear();
        self.ticks_since_ack = 0;
    }

    /// Whether an AppendEntries should go to this follower now.
    pub(crate) fn wants_append(&self, last_index: LogIndex) -> bool {
        match self.state {
            // A probe is due while the match point is unconfirmed or entries remain.
            ReplicationState::Probe => {
                !self.probe_paused
                    && (self.next_index <= last_index || self.match_index.next() < self.next_index)
            }
            ReplicationState::Replicate => {
                self.next_index <= last_index && !self.inflight.is_full()
            }
        }
    }

    /// Records an AppendEntries whose entries end at `last_sent` (the previous index when empty).
    pub(crate) fn sent_append(&mut self, last_sent: LogIndex, size_bytes: usize) {
        match self.state {
            ReplicationState::Probe => self.probe_paused = true,
            ReplicationState::Replicate => {
                assert!(last_sent >= self.next_index, "a pipelined AppendEntries carries entries");
                if self.inflight.is_empty() {
                    // Silence while nothing was outstanding lost nothing: the stall clock
                    // starts with the first message of the window.
                    self.ticks_since_ack = 0;
                }
                self.next_index = last_sent.next();
                self.inflight.add(last_sent, size_bytes);
            }
        }
    }

    /// A success answer: the follower holds `match_index` durably. Returns whether the match
    /// index advanced. A success that answers the outstanding probe (or anything after it)
    /// switches to pipelining; an older one, overtaken by later messages, only teaches the
    /// match index (switching on it would resend a whole window for nothing).
    pub(crate) fn handle_success(&mut self, match_index: LogIndex) -> bool {
        let advanced = match_index > self.match_index;
        if advanced {
            self.match_index = match_index;
            self.ticks_since_ack = 0;
        }
        match self.state {
            ReplicationState::Probe => {
                if match_index.next() >= self.next_index {
                    self.become_replicate();
                }
            }
            ReplicationState::Replicate => {
                if self.next_index <= match_index {
                    self.next_index = match_index.next();
                }
                self.inflight.free_up_to(match_index);
            }
        }
        advanced
    }

    /// A rejection of the AppendEntries whose previous index was `rejected_index`, with the
    /// follower's hint (`hint_index`, the last entry that could still match) and `next_hint`,
    /// where the leader's own search (fast backtracking) suggests probing next. Returns whether
    /// the answer was current; stale answers to older messages change nothing.
    pub(crate) fn handle_reject(
        &mut self,
        rejected_index: LogIndex,
        hint_index: LogIndex,
        next_hint: LogIndex,
    ) -> bool {
        match self.state {
            ReplicationState::Replicate => {
                // The follower's log matches up to `match_index` durably, so a current refusal
                // always points at or above it: one that does not was sent before the follower
                // learned those entries (reordered or duplicated on the way).
                if rejected_index <= self.match_index || hint_index < self.match_index {
                    return false;
                }
                self.become_probe();
            }
            ReplicationState::Probe => {
                if rejected_index.next() != self.next_index {
                    return false;
                }
            }
        }
        // Move back, never past the rejected index (progress is guaranteed) and never below the
        // confirmed match point.
        self.next_index = next_hint.min(rejected_index).max(self.match_index.next());
        self.probe_paused = false;
        true
    }

    /// Lets a paused probe go again (a heartbeat answer shows the follower is reachable).
    pub(crate) fn resume_probe(&mut self) {
        self.probe_paused = false;
    }

    /// One leader tick: a pipeline with messages outstanding and no acknowledgement for
    /// `stall_ticks` lost a message on the way; fall back to probing from the match point.
    pub(crate) fn tick(&mut self, stall_ticks: u32) {
        self.ticks_since_ack = self.ticks_since_ack.saturating_add(1);
        if self.state == ReplicationState::Replicate
            && !self.inflight.is_empty()
            && self.ticks_since_ack >= stall_ticks
        {
            self.become_probe();
        }
    }

    /// Checks invariants 1 to 3.
    pub(crate) fn check(&self, last_index: LogIndex) -> Result<(), &'static str> {
        if self.match_index >= self.next_index {
            return Err("a follower's next index is above its match index (invariant 1)");
        }
        if self.match_index > last_index || self.next_index > last_index.next() {
            return Err("a follower's progress stays within the leader's log (invariant 1)");
        }
        if self.state == ReplicationState::Probe && !self.inflight.is_empty() {
            return Err("a probing follower has no pipelined messages (invariant 2)");
        }
        if self.inflight.sent.iter().any(|(last, _)| *last <= self.match_index) {
            return Err("the window holds only unacknowledged messages (invariant 2)");
        }
        if self.inflight.sent.len() > self.inflight.count_max {
            return Err("the window holds at most its message count (invariant 3)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress() -> Progress {
        Progress::new(NodeId(2), LogIndex(10), 3, 1000)
    }

    /// A window of any count can be made: `raft.inflight_message_count_max` is a limit, not a
    /// size to allocate. (Found by a review: a node configured with a count near the largest a
    /// TOML file holds passed validation, and its shard thread panicked with "capacity
    /// overflow" as soon as it won an election, leaving the cluster without a leader.)
    #[test]
    fn a_window_of_any_count_is_made_without_allocating_it() {
        for count_max in [usize::MAX, i64::MAX as usize, 1 << 40] {
            let inflights = Inflights::new(count_max, usize::MAX);
            assert!(inflights.is_empty() && !inflights.is_full());
        }
    }

    #[test]
    fn probe_sends_one_message_then_waits() {
        let mut pr = progress();
        assert!(pr.wants_append(LogIndex(10)), "the match point is unknown: probe");
        pr.sent_append(LogIndex(10), 0);
        assert!(!pr.wants_append(LogIndex(12)), "one probe at a time");
        pr.resume_probe();
        assert!(pr.wants_append(LogIndex(12)));
    }

    #[test]
    fn success_switches_to_pipelining_within_the_window() {
        let mut pr = progress();
        pr.sent_append(LogIndex(10), 0);
        assert!(pr.handle_success(LogIndex(10)));
        assert_eq!(pr.state, ReplicationState::Replicate);
        for last in [12, 14, 16] {
            assert!(pr.wants_append(LogIndex(20)));
            pr.sent_append(LogIndex(last), 100);
        }
        assert!(!pr.wants_append(LogIndex(20)), "three messages fill the window");
        pr.handle_success(LogIndex(14));
        assert_eq!(pr.view().inflight_message_count, 1);
        assert!(pr.wants_append(LogIndex(20)));
        pr.check(LogIndex(20)).expect("valid");
    }

    #[test]
    fn byte_limit_closes_the_window() {
        let mut pr = Progress::new(NodeId(2), LogIndex(0), 100, 250);
        pr.handle_success(LogIndex(0));
        pr.sent_append(LogIndex(1), 200);
        assert!(pr.wants_append(LogIndex(5)));
        pr.sent_append(LogIndex(2), 200);
        assert!(!pr.wants_append(LogIndex(5)), "400 bytes outstanding exceed 250");
    }

    #[test]
    fn rejects_back_off_and_stale_rejects_are_ignored() {
        let mut pr = progress();
        pr.sent_append(LogIndex(10), 0);
        assert!(!pr.handle_reject(LogIndex(7), LogIndex(3), LogIndex(3)), "not the probe");
        assert!(pr.handle_reject(LogIndex(10), LogIndex(3), LogIndex(4)));
        assert_eq!(pr.next_index, LogIndex(4));
        assert!(pr.wants_append(LogIndex(10)));
        // In Replicate, a reject above the match point falls back to probing.
        pr.sent_append(LogIndex(10), 0);
        pr.handle_success(LogIndex(2));
        assert_eq!(pr.state, ReplicationState::Probe, "an overtaken success does not switch");
        pr.handle_success(LogIndex(10));
        assert_eq!(pr.state, ReplicationState::Replicate);
        pr.sent_append(LogIndex(12), 10);
        assert!(!pr.handle_reject(LogIndex(9), LogIndex(8), LogIndex(9)), "below match: stale");
        assert!(!pr.handle_reject(LogIndex(11), LogIndex(7), LogIndex(8)), "hint below match");
        assert!(pr.handle_reject(LogIndex(11), LogIndex(10), LogIndex(11)));
        assert_eq!(pr.state, ReplicationState::Probe);
        assert_eq!(pr.next_index, LogIndex(11));
    }

    #[test]
    fn an_idle_pipeline_is_not_stalled_by_its_next_message() {
        // Nothing was outstanding for a long while (no proposals): the silence since the last
        // acknowledgement lost no message, so the first message after it gets its own
        // election timeout before the pipeline is declared stalled.
        let mut pr = progress();
        pr.handle_success(LogIndex(10));
        for _ in 0..20 {
            pr.tick(5);
        }
        assert_eq!(pr.state, ReplicationState::Replicate, "an empty window never stalls");
        pr.sent_append(LogIndex(12), 10);
        pr.tick(5);
        assert_eq!(pr.state, ReplicationState::Replicate, "sent one tick ago, not lost");
        for _ in 0..4 {
            pr.tick(5);
        }
        assert_eq!(pr.state, ReplicationState::Probe, "silent for an election timeout: lost");
    }

    #[test]
    fn a_silent_pipeline_falls_back_to_probing() {
        let mut pr = progress();
        pr.handle_success(LogIndex(10));
        pr.sent_append(LogIndex(12), 10);
        for _ in 0..4 {
            pr.tick(5);
        }
        assert_eq!(pr.state, ReplicationState::Replicate);
        pr.tick(5);
        assert_eq!(pr.state, ReplicationState::Probe);
        assert_eq!(pr.next_index, LogIndex(11));
    }
}
