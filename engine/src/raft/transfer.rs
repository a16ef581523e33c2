//! Leadership transfer (thesis 3.10).
//!
//! Owns: [`RaftCore::transfer_leadership`], the transfer's timeout and TimeoutNow handling.
//! Must not: let the target start its election before its log is as up-to-date as the leader's
//! (it would lose); accept proposals while a transfer runs (the target could never catch up).
//! Invariants:
//! 1. At most one transfer runs; it ends when the leader steps down or after one election
//!    timeout.

use crate::raft::core::{RaftCore, Role};
use crate::raft::errors::TransferError;
use raftwal_wire::message::MessageBody;
use raftwal_wire::types::NodeId;

/// A transfer under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transfer {
    pub(crate) to: NodeId,
    elapsed_ticks: u32,
}

impl RaftCore {
    /// Asks the leader to hand leadership to `to`: it brings `to`'s log up to date, then tells it
    /// to start an election at once (TimeoutNow). Proposals are refused until the transfer ends;
    /// it is abandoned after an election timeout.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader { leader: self.leader });
        }
        if to == self.config.id {
            return Err(TransferError::AlreadyLeader);
        }
        let Some(position) = self.peer_position(to) else {
            return Err(TransferError::UnknownPeer { to });
        };
        if let Some(transfer) = &self.transfer {
            return if transfer.to == to {
                Ok(())
            } else {
                Err(TransferError::Busy { to: transfer.to })
            };
        }
        self.transfer = Some(Transfer { to, elapsed_ticks: 0 });
        self.maybe_send_timeout_now(position);
        Ok(())
    }

    /// Sends TimeoutNow once the transfer's target holds the leader's whole log.
    pub(super) fn maybe_send_timeout_now(&mut self, position: usize) {
        let progress = &self.peers[position];
        let target = progress.node;
        if self.transfer.is_some_and(|transfer| transfer.to == target)
            && progress.match_index == self.log.last_index()
        {
            self.send(target, MessageBody::TimeoutNow);
        }
    }

    /// Abandons a transfer that did not complete within an election timeout (invariant 1).
    pub(super) fn tick_transfer(&mut self) {
        if let Some(transfer) = &mut self.transfer {
            transfer.elapsed_ticks += 1;
            if transfer.elapsed_ticks >= self.config.election_timeout_ticks {
                self.transfer = None;
            }
        }
    }

    /// TimeoutNow from the current leader: campaign at once, skipping PreVote, and mark the
    /// requests so voters set aside their leader lease.
    pub(super) fn handle_timeout_now(&mut self, from: NodeId) {
        if self.role == Role::Follower && self.leader == Some(from) && self.rejoin.is_none() {
            self.campaign(true);
        }
    }
}
