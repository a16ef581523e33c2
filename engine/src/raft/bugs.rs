//! Known Raft bugs that the simulator's checker must be able to catch, planted on request.
//!
//! Owns: [`InjectedBug`] and the set of bugs a core was asked to exhibit.
//! Must not: be reachable in production. The only way to plant a bug is
//! `RaftCore::inject_bug`, which exists only when the `bug-injection` cargo feature is on; only
//! the test package (`raftwal-tests`) turns it on. Without the feature, [`BugSet::has`] is the
//! constant `false` and every planted branch compiles away.
//! Invariants: an empty set leaves the core exactly as specified by the paper.

macro_rules! injected_bug {
    ($vis:vis) => {
        /// A deliberate protocol bug, planted to prove that the simulator's checker bites.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum InjectedBug {
            /// The leader counts replicas of entries from earlier terms toward commitment
            /// (the Figure 8 bug).
            CommitOldTerm,
            /// A vote grant is sent before the vote is persisted.
            VoteNotDurable,
            /// The leader counts its own copy of an entry before its fsync completed.
            AckBeforeFsync,
            /// Votes are granted without the election restriction (paper 5.4.1).
            NoElectionRestriction,
            /// A follower that replaces its log on a leader's log start acknowledges the start
            /// at once, before the replaced log is durable.
            LogStartAckEarly,
            /// A replica restarted to rejoin after losing its durable state skips the rejoin
            /// protocol and takes part at once, as a fresh replica (planted by
            /// `RaftCore::inject_bug` itself, so only test builds name it).
            #[cfg_attr(not(feature = "bug-injection"), allow(dead_code))]
            RejoinWithoutQuery,
        }
    };
}

#[cfg(feature = "bug-injection")]
injected_bug!(pub);
#[cfg(not(feature = "bug-injection"))]
injected_bug!(pub(crate));

impl InjectedBug {
    /// Every plantable bug.
    #[cfg(feature = "bug-injection")]
    pub const ALL: [InjectedBug; 6] = [
        InjectedBug::CommitOldTerm,
        InjectedBug::VoteNotDurable,
        InjectedBug::AckBeforeFsync,
        InjectedBug::NoElectionRestriction,
        InjectedBug::LogStartAckEarly,
        InjectedBug::RejoinWithoutQuery,
    ];

    /// The bug's command-line name (`commit-old-term`, ...).
    #[cfg(feature = "bug-injection")]
    pub fn name(self) -> &'static str {
        match self {
            InjectedBug::CommitOldTerm => "commit-old-term",
            InjectedBug::VoteNotDurable => "vote-not-durable",
            InjectedBug::AckBeforeFsync => "ack-before-fsync",
            InjectedBug::NoElectionRestriction => "no-election-restriction",
            InjectedBug::LogStartAckEarly => "log-start-ack-early",
            InjectedBug::RejoinWithoutQuery => "rejoin-without-query",
        }
    }

    /// The bug with this command-line name.
    #[cfg(feature = "bug-injection")]
    pub fn from_name(name: &str) -> Option<InjectedBug> {
        InjectedBug::ALL.into_iter().find(|bug| bug.name() == name)
    }

    fn bit(self) -> u8 {
        match self {
            InjectedBug::CommitOldTerm => 1,
            InjectedBug::VoteNotDurable => 2,
            InjectedBug::AckBeforeFsync => 4,
            InjectedBug::NoElectionRestriction => 8,
            InjectedBug::LogStartAckEarly => 16,
            InjectedBug::RejoinWithoutQuery => 32,
        }
    }
}

/// The bugs planted in one core; empty unless a test planted some.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BugSet(u8);

impl BugSet {
    /// Whether `bug` is planted. Constant `false` without the `bug-injection` feature.
    #[inline(always)]
    pub(crate) fn has(self, bug: InjectedBug) -> bool {
        cfg!(feature = "bug-injection") && self.0 & bug.bit() != 0
    }

    #[cfg(feature = "bug-injection")]
    pub(crate) fn insert(&mut self, bug: InjectedBug) {
        self.0 |= bug.bit();
    }
}
