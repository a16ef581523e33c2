//! The gateway where untrusted messages enter the core, and the answer to messages from older
//! terms.
//!
//! Owns: [`RaftCore::validate`] (shape checks: right log, right recipient, known sender, and the
//! protocol rules a message's fields must obey) and [`RaftCore::handle_stale_term`].
//! Must not: change state. A refused message changes nothing; everything downstream of the
//! gateway assumes its checks held (consecutive entries, non-decreasing terms no higher than the
//! sender's, hints at or below the refused index).
//! Invariants: every `StepError` it returns names the rule that was broken.

use crate::raft::core::RaftCore;
use crate::raft::errors::StepError;
use raftwal_wire::message::{
    AppendEntriesResponse, HeartbeatResponse, Message, MessageBody, RequestVoteResponse,
};
use raftwal_wire::types::{LogIndex, NodeId, Term};

impl RaftCore {
    /// Refuses messages that are not for this replica or break the protocol's shape: the gateway
    /// where untrusted input enters the core (everything downstream assumes it).
    pub(super) fn validate(&self, message: &Message) -> Result<(), StepError> {
        if message.log != self.config.log {
            return Err(StepError::WrongLog { expected: self.config.log, got: message.log });
        }
        if message.to != self.config.id {
            return Err(StepError::WrongRecipient { id: self.config.id, to: message.to });
        }
        if message.from == self.config.id || !self.config.voters.contains(&message.from) {
            return Err(StepError::UnknownSender { from: message.from });
        }
        let malformed =
            |reason| StepError::Malformed { kind: message.kind_name(), from: message.from, reason };
        match &message.body {
            MessageBody::AppendEntries(append) => {
                if append.prev_log_term > message.term {
                    return Err(malformed("previous entry's term is above the leader's term"));
                }
                if append.prev_log_index == LogIndex::ZERO && append.prev_log_term != Term::ZERO {
                    return Err(malformed("index 0 has term 0"));
                }
                let mut expected_index = append.prev_log_index.next();
                let mut previous_term = append.prev_log_term;
                for entry in &append.entries {
                    if entry.index != expected_index {
                        return Err(malformed(
                            "entries are not consecutive after the previous one",
                        ));
                    }
                    if entry.term < previous_term || entry.term > message.term {
                        return Err(malformed("entry terms decrease or exceed the leader's term"));
                    }
                    expected_index = expected_index.next();
                    previous_term = entry.term;
                }
            }
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Reject {
                rejected_index,
                hint_index,
                ..
            }) => {
                if hint_index > rejected_index {
                    return Err(malformed("the hint is above the rejected index"));
                }
            }
            MessageBody::RequestVote(request) => {
                if request.last_log_term > message.term {
                    return Err(malformed("the candidate's last term is above its term"));
                }
                if request.last_log_index == LogIndex::ZERO && request.last_log_term != Term::ZERO {
                    return Err(malformed("index 0 has term 0"));
                }
            }
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { .. })
            | MessageBody::RequestVoteResponse(_)
            | MessageBody::Heartbeat(_)
            | MessageBody::HeartbeatResponse(_)
            | MessageBody::TimeoutNow
            | MessageBody::ReadIndex(_)
            | MessageBody::ReadIndexResponse(_) => {}
        }
        Ok(())
    }

    /// A message from an older term. A stale leader gets an answer carrying the current term,
    /// so it steps down; a stale pre-candidate gets a refusal with the current term, so it
    /// catches up. Everything else is dropped.
    pub(super) fn handle_stale_term(&mut self, from: NodeId, body: &MessageBody) {
        match body {
            MessageBody::AppendEntries(_) | MessageBody::Heartbeat(_) => self.send(
                from,
                MessageBody::HeartbeatResponse(HeartbeatResponse { read_context: None }),
            ),
            MessageBody::RequestVote(request) if request.pre_vote => self.send(
                from,
                MessageBody::RequestVoteResponse(RequestVoteResponse {
                    pre_vote: true,
                    granted: false,
                }),
            ),
            _ => {}
        }
    }
}
