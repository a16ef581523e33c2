//! The flight recorder: the last events of a run, printed when a property breaks.
//!
//! Owns: [`Trace`] (a ring buffer of compact, `Copy` events) and their readable rendering.
//! Must not: format anything while the run goes well (100,000 seeds must stay fast); events are
//! rendered only on failure.
//! Invariants: at most `capacity` events are kept, the newest last.

use super::disk::{DiskFault, DownCause};
use raftwal::raft::{ProposeError, Role};
use raftwal::storage::Tear;
use raftwal_wire::message::{AppendEntriesResponse, Message, MessageBody};
use raftwal_wire::types::{LogIndex, NodeId, Term};
use std::collections::VecDeque;
use std::fmt::{self, Write};

/// The essentials of a message, without its payloads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MessageSummary {
    from: NodeId,
    to: NodeId,
    term: Term,
    kind: &'static str,
    detail: Detail,
}

#[derive(Clone, Copy, Debug)]
enum Detail {
    Vote { last_index: LogIndex, last_term: Term, transfer: bool },
    VoteAnswer { granted: bool },
    Append { prev_index: LogIndex, prev_term: Term, count: usize, commit: LogIndex },
    Success { match_index: LogIndex },
    Reject { rejected: LogIndex, hint_index: LogIndex, hint_term: Term },
    Heartbeat { commit: LogIndex, context: Option<u64> },
    Context { context: Option<u64> },
    Read { request_id: u64, index: Option<LogIndex> },
    Nothing,
}

impl MessageSummary {
    pub(crate) fn of(message: &Message) -> MessageSummary {
        let detail = match &message.body {
            MessageBody::RequestVote(request) => Detail::Vote {
                last_index: request.last_log_index,
                last_term: request.last_log_term,
                transfer: request.leadership_transfer,
            },
            MessageBody::RequestVoteResponse(response) => {
                Detail::VoteAnswer { granted: response.granted }
            }
            MessageBody::AppendEntries(append) => Detail::Append {
                prev_index: append.prev_log_index,
                prev_term: append.prev_log_term,
                count: append.entries.len(),
                commit: append.leader_commit,
            },
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { match_index }) => {
                Detail::Success { match_index: *match_index }
            }
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Reject {
                rejected_index,
                hint_index,
                hint_term,
            }) => Detail::Reject {
                rejected: *rejected_index,
                hint_index: *hint_index,
                hint_term: *hint_term,
            },
            MessageBody::Heartbeat(heartbeat) => Detail::Heartbeat {
                commit: heartbeat.leader_commit,
                context: heartbeat.read_context,
            },
            MessageBody::HeartbeatResponse(response) => {
                Detail::Context { context: response.read_context }
            }
            MessageBody::ReadIndex(request) => {
                Detail::Read { request_id: request.request_id, index: None }
            }
            MessageBody::ReadIndexResponse(response) => {
                Detail::Read { request_id: response.request_id, index: response.read_index }
            }
            MessageBody::TimeoutNow => Detail::Nothing,
            MessageBody::LogStart(start) => Detail::Append {
                prev_index: start.index,
                prev_term: start.term,
                count: 0,
                commit: start.leader_commit,
            },
        };
        MessageSummary {
            from: message.from,
            to: message.to,
            term: message.term,
            kind: message.kind_name(),
            detail,
        }
    }
}

impl fmt::Display for MessageSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}->{:?} {} {:?}", self.from, self.to, self.kind, self.term)?;
        match self.detail {
            Detail::Vote { last_index, last_term, transfer } => {
                write!(f, " last {last_index:?}/{last_term:?}")?;
                if transfer {
                    write!(f, " (transfer)")?;
                }
                Ok(())
            }
            Detail::VoteAnswer { granted } => {
                write!(f, " {}", if granted { "granted" } else { "refused" })
            }
            Detail::Append { prev_index, prev_term, count, commit } => {
                write!(f, " prev {prev_index:?}/{prev_term:?} +{count} commit {commit:?}")
            }
            Detail::Success { match_index } => write!(f, " match {match_index:?}"),
            Detail::Reject { rejected, hint_index, hint_term } => {
                write!(f, " rejects {rejected:?} hint {hint_index:?}/{hint_term:?}")
            }
            Detail::Heartbeat { commit, context } => {
                write!(f, " commit {commit:?} ctx {context:?}")
            }
            Detail::Context { context } => write!(f, " ctx {context:?}"),
            Detail::Read { request_id, index } => write!(f, " read {request_id} {index:?}"),
            Detail::Nothing => Ok(()),
        }
    }
}

/// One recorded event.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TraceEvent {
    Deliver(MessageSummary),
    Drop(MessageSummary, &'static str),
    Duplicate(MessageSummary),
    RoleChange {
        node: NodeId,
        role: Role,
        term: Term,
        leader: Option<NodeId>,
    },
    Commit {
        node: NodeId,
        index: LogIndex,
    },
    Durable {
        node: NodeId,
        index: LogIndex,
    },
    DurableLoss {
        node: NodeId,
        from: LogIndex,
    },
    DiskFull {
        node: NodeId,
    },
    /// A full disk refused a truncation or log start (`held`), or the held `Ready` went through.
    Held {
        node: NodeId,
        held: bool,
    },
    DiskFault {
        node: NodeId,
        fault: DiskFault,
    },
    ArmCrash {
        node: NodeId,
        points: u64,
    },
    Propose {
        node: NodeId,
        tag: u64,
        result: Result<(LogIndex, LogIndex, Term), ProposeError>,
    },
    Acknowledged {
        node: NodeId,
        tag: u64,
        first: LogIndex,
        last: LogIndex,
        term: Term,
    },
    Down {
        node: NodeId,
        cause: DownCause,
        in_place: bool,
        tear: Tear,
        durable_last: LogIndex,
    },
    Restart {
        node: NodeId,
        term: Term,
        last: LogIndex,
        commit: LogIndex,
    },
    Wipe {
        node: NodeId,
        was_up: bool,
    },
    Rejoined {
        node: NodeId,
    },
    Partition {
        blocked: u64,
        nodes: usize,
    },
    HealNetwork,
    EndOfFaults,
    NetworkQuality {
        drop_per_million: u64,
        duplicate_per_million: u64,
    },
    Transfer {
        from: NodeId,
        to: NodeId,
        accepted: bool,
    },
    Compact {
        node: NodeId,
        before: LogIndex,
        first: LogIndex,
    },
    ReadStart {
        node: NodeId,
        request_id: u64,
        acknowledged: LogIndex,
    },
    ReadAnswer {
        node: NodeId,
        request_id: u64,
        index: Option<LogIndex>,
    },
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceEvent::Deliver(message) => write!(f, "deliver {message}"),
            TraceEvent::Drop(message, why) => write!(f, "drop ({why}) {message}"),
            TraceEvent::Duplicate(message) => write!(f, "duplicate {message}"),
            TraceEvent::RoleChange { node, role, term, leader } => {
                write!(f, "{node:?} is {role:?} in {term:?} (leader {leader:?})")
            }
            TraceEvent::Commit { node, index } => write!(f, "{node:?} commits up to {index:?}"),
            TraceEvent::Durable { node, index } => {
                write!(f, "{node:?} writer group durable; the disk holds the log to {index:?}")
            }
            TraceEvent::DurableLoss { node, from } => {
                write!(f, "{node:?} truncated its durable log from {from:?}")
            }
            TraceEvent::DiskFull { node } => {
                write!(f, "{node:?} disk full: the writer's step is refused, retried later")
            }
            TraceEvent::Held { node, held: true } => write!(
                f,
                "{node:?} disk full: a truncation or log start is refused; the loop holds its \
                 Ready and takes no other until a tick's retry finds room"
            ),
            TraceEvent::Held { node, held: false } => {
                write!(f, "{node:?} carries out the Ready it held: the disk had room")
            }
            TraceEvent::DiskFault { node, fault } => match fault {
                DiskFault::FsyncFails => write!(f, "{node:?} DISK: its next fsync will fail"),
                DiskFault::WriteNoSpace => {
                    write!(f, "{node:?} DISK: its next write will find no space")
                }
                DiskFault::Full { slack_bytes } => {
                    write!(f, "{node:?} DISK FULL: {slack_bytes} bytes left")
                }
                DiskFault::Freed => write!(f, "{node:?} disk has room again"),
            },
            TraceEvent::Compact { node, before, first } => {
                write!(f, "{node:?} compacts before {before:?}: its log starts at {first:?}")
            }
            TraceEvent::ArmCrash { node, points } => {
                write!(f, "{node:?} will crash after {points} more disk write or sync points")
            }
            TraceEvent::Propose { node, tag, result } => match result {
                Ok((first, last, term)) => {
                    write!(f, "{node:?} accepts proposal {tag} at {first:?}..={last:?} {term:?}")
                }
                Err(error) => write!(f, "{node:?} refuses proposal {tag}: {error}"),
            },
            TraceEvent::Acknowledged { node, tag, first, last, term } => write!(
                f,
                "{node:?} acknowledges proposal {tag} ({first:?}..={last:?} {term:?}) to its client"
            ),
            TraceEvent::Down { node, cause, in_place, tear, durable_last } => {
                let what = match cause {
                    DownCause::Crash => "CRASHES",
                    DownCause::CrashInDiskOp => "CRASHES inside a disk operation",
                    DownCause::Poisoned => "STOPS: a failed write or fsync poisoned its log",
                    DownCause::Sick => "GOES DOWN for the liveness phase",
                };
                let tear = match tear {
                    Tear::None => "",
                    Tear::LastWrite { .. } => ", the last unsynced write torn",
                    Tear::Writeback { .. } => ", part of what was not synced written back",
                };
                let boot = if *in_place {
                    ", its process only: the caches keep what it wrote"
                } else {
                    ""
                };
                write!(f, "{node:?} {what} (durable log ends at {durable_last:?}{tear}{boot})")
            }
            TraceEvent::Wipe { node, was_up } => write!(
                f,
                "{node:?} WIPED{}: its disk is replaced by an empty one; it restarts to rejoin",
                if *was_up { " (it was up)" } else { "" }
            ),
            TraceEvent::Rejoined { node } => write!(f, "{node:?} has rejoined"),
            TraceEvent::Restart { node, term, last, commit } => {
                write!(f, "{node:?} restarts: {term:?}, log ends at {last:?}, commit {commit:?}")
            }
            TraceEvent::Partition { blocked, nodes } => {
                write!(f, "network: blocked links")?;
                let mut any = false;
                for from in 0..*nodes {
                    for to in 0..*nodes {
                        if blocked & (1 << (from * nodes + to)) != 0 {
                            write!(f, " n{}->n{}", from + 1, to + 1)?;
                            any = true;
                        }
                    }
                }
                if !any {
                    write!(f, " none")?;
                }
                Ok(())
            }
            TraceEvent::HealNetwork => write!(f, "network heals"),
            TraceEvent::EndOfFaults => {
                write!(
                    f,
                    "END OF FAULTS: network and disks heal, every replica restarts (one may stay \
                     sick), liveness phase"
                )
            }
            TraceEvent::NetworkQuality { drop_per_million, duplicate_per_million } => write!(
                f,
                "network quality: drop {drop_per_million} ppm, duplicate {duplicate_per_million} \
                 ppm"
            ),
            TraceEvent::Transfer { from, to, accepted } => {
                write!(f, "{from:?} asked to transfer leadership to {to:?}: {accepted}")
            }
            TraceEvent::ReadStart { node, request_id, acknowledged } => write!(
                f,
                "read {request_id} starts at {node:?} (acknowledged so far: {acknowledged:?})"
            ),
            TraceEvent::ReadAnswer { node, request_id, index } => {
                write!(f, "read {request_id} answered at {node:?}: {index:?}")
            }
        }
    }
}

/// The last events of a run.
#[derive(Debug)]
pub(crate) struct Trace {
    events: VecDeque<(u64, TraceEvent)>,
    capacity: usize,
}

impl Trace {
    pub(crate) fn new(capacity: usize) -> Trace {
        Trace { events: VecDeque::with_capacity(capacity), capacity }
    }

    pub(crate) fn record(&mut self, at_us: u64, event: TraceEvent) {
        if self.capacity == 0 {
            return;
        }
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back((at_us, event));
    }

    /// The events, one per line, with their virtual time.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for (at_us, event) in &self.events {
            let _ = writeln!(out, "[{:>6}.{:03} ms] {event}", at_us / 1000, at_us % 1000);
        }
        out
    }
}
