//! The leader's commit rule.
//!
//! Owns: [`RaftCore::maybe_commit`].
//! Must not: count the leader's own copy of an entry before its fsync completed (it counts its
//! durable index, so its disk write can run in parallel with replication, thesis 10.2.1); commit
//! by counting replicas of an entry from an earlier term (paper 5.4.2, Figure 8).
//! Invariants:
//! 1. The commit index only grows, and only to an index durable on a majority whose entry has
//!    the leader's current term; earlier entries are committed indirectly with it.

use crate::raft::bugs::InjectedBug;
use crate::raft::core::{RaftCore, Role};

impl RaftCore {
    /// Advances the commit index to the highest index durable on a majority, if that entry is of
    /// the current term.
    pub(super) fn maybe_commit(&mut self) {
        assert_eq!(self.role, Role::Leader, "only a leader decides commitment");
        let own = if self.bugs.has(InjectedBug::AckBeforeFsync) {
            self.log.last_index()
        } else {
            self.log.durable()
        };
        self.scratch.clear();
        self.scratch.push(own.get());
        self.scratch.extend(self.peers.iter().map(|progress| progress.match_index.get()));
        self.scratch.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_index = raftwal_wire::types::LogIndex(self.scratch[self.config.quorum() - 1]);
        if quorum_index <= self.log.commit() {
            return;
        }
        let current_term = self.log.term_at(quorum_index) == Some(self.term);
        if current_term || self.bugs.has(InjectedBug::CommitOldTerm) {
            self.log.commit_to(quorum_index);
            if current_term {
                // Reads that waited for the leader's first commit in its term may proceed.
                self.release_reads_awaiting_commit();
            }
        }
    }

    /// Whether the leader has committed an entry of its own term (thesis 6.4: only then does it
    /// know the commit index of the whole cluster).
    pub(super) fn committed_in_term(&self) -> bool {
        self.log.term_at(self.log.commit()) == Some(self.term)
    }
}

#[cfg(test)]
mod tests {
    use crate::raft::{Config, RaftCore, Role};
    use bytes::Bytes;
    use raftwal_wire::types::{EntryKind, LogId, LogIndex, NodeId};

    struct ThreeEntries;

    impl crate::raft::LogSource for ThreeEntries {
        fn last_index(&self) -> LogIndex {
            LogIndex(3)
        }
        fn term(&self, index: LogIndex) -> Option<raftwal_wire::types::Term> {
            (index <= LogIndex(3)).then_some(raftwal_wire::types::Term(index.get().min(1)))
        }
        fn read(
            &self,
            first: LogIndex,
            _: LogIndex,
            _: usize,
        ) -> Result<Vec<raftwal_wire::types::Entry>, crate::raft::LogReadError> {
            Err(crate::raft::LogReadError::Unavailable { index: first })
        }
    }

    #[test]
    fn a_persisted_commit_beyond_the_stored_log_is_refused_at_restore() {
        let config = Config::new(NodeId(1), LogId(0), vec![NodeId(1), NodeId(2), NodeId(3)]);
        let hard_state = raftwal_wire::types::HardState {
            term: raftwal_wire::types::Term(1),
            vote: None,
            commit: LogIndex(5),
        };
        let restored = RaftCore::restore(config.clone(), hard_state, &ThreeEntries);
        assert!(matches!(restored, Err(crate::raft::RestoreError::CommitBeyondLog { .. })));
        let fine = raftwal_wire::types::HardState { commit: LogIndex(3), ..hard_state };
        let core = RaftCore::restore(config, fine, &ThreeEntries).expect("consistent");
        assert_eq!(core.commit_index(), LogIndex(3));
        assert_eq!(core.durable_index(), LogIndex(3));
    }

    #[test]
    fn a_single_voter_commits_once_its_own_write_is_durable() {
        let config = Config::new(NodeId(1), LogId(0), vec![NodeId(1)]);
        let mut core = RaftCore::new(config).expect("valid config");
        for _ in 0..30 {
            core.tick();
        }
        assert_eq!(core.role(), Role::Leader);
        let proposed =
            core.propose([(EntryKind::Normal, Bytes::from_static(b"a"))]).expect("leader");
        assert_eq!(core.commit_index(), LogIndex(0), "nothing is durable yet");
        let ready = core.ready(&crate::raft::EmptyLog);
        let (index, term) = ready.persist_point().expect("entries to write");
        assert_eq!(index, proposed.last_index);
        core.persisted(index, term);
        assert_eq!(core.commit_index(), proposed.last_index);
    }
}
