//! The simulated clients: closed-loop proposers and readers that address whichever replica they
//! believe leads.
//!
//! Owns: proposals and reads issued by clients, and what clients learn from refusals.
//! Must not: keep more proposals outstanding than the profile's window (a client waits for
//! answers, or gives up after a timeout, like a real one).
//! Invariants: every accepted proposal is tracked until it is acknowledged, refused by the
//! commit of another leader's entry, lost in a crash, or timed out.

use super::profile::CLIENT_TIMEOUT_US;
use super::trace::TraceEvent;
use super::world::{id_of, position_of, Event, PendingRead, World};
use crate::checker::Violation;
use bytes::Bytes;
use raftwal::raft::ProposeError;

impl World {
    /// Where a client sends: the replica it believes leads, or a random one.
    pub(super) fn client_target(&mut self, client: usize) -> usize {
        match self.believed_leader[client] {
            Some(node) => node,
            None => self.rng.index(self.options.nodes),
        }
    }

    pub(super) fn learn_leader(&mut self, client: usize, error: ProposeError) {
        self.believed_leader[client] = match error {
            ProposeError::NotLeader { leader } => leader.map(position_of),
            ProposeError::TransferInProgress { to } => Some(position_of(to)),
            ProposeError::EmptyBatch | ProposeError::LogFull { .. } => self.believed_leader[client],
        };
    }

    pub(super) fn propose(&mut self, client: usize) -> Result<(), Violation> {
        let next = self.rng.range(200, self.profile.propose_interval_max_us.max(200));
        self.schedule(self.now + next, Event::Propose(client));
        let now = self.now;
        self.outstanding.retain(|(_, _, deadline)| *deadline > now);
        let waiting = self.outstanding.iter().filter(|(_, owner, _)| *owner == client).count();
        if waiting >= self.profile.client_window {
            return Ok(());
        }
        let node = self.client_target(client);
        let count = self.rng.range(1, self.profile.batch_size_max);
        let mut payloads = Vec::with_capacity(count as usize);
        for _ in 0..count {
            self.next_tag += 1;
            let size = self.rng.range(8, self.profile.payload_size_max) as usize;
            let mut payload = vec![0u8; size];
            payload[..8].copy_from_slice(&self.next_tag.to_le_bytes());
            payloads.push(Bytes::from(payload));
        }
        let tag = self.next_tag;
        let result = self.replicas[node].propose(&payloads, tag);
        self.trace.record(
            self.now,
            TraceEvent::Propose {
                node: id_of(node),
                tag,
                result: result.map(|p| (p.first_index, p.last_index, p.term)),
            },
        );
        match result {
            Ok(_) => {
                self.outstanding.push((tag, client, self.now + CLIENT_TIMEOUT_US));
                self.after_input(node)
            }
            Err(error) => {
                self.learn_leader(client, error);
                Ok(())
            }
        }
    }

    pub(super) fn read(&mut self, client: usize) -> Result<(), Violation> {
        let next = self.rng.range(1_000, self.profile.read_interval_max_us.max(1_000));
        self.schedule(self.now + next, Event::Read(client));
        let node = self.client_target(client);
        self.next_request_id += 1;
        let request_id = self.next_request_id;
        // A replica that holds a `Ready` a full disk refused refuses reads, as the runtime's.
        let holds = self.replicas[node].holds_ready();
        let Some(core) = self.replicas[node].core_mut().filter(|_| !holds) else {
            self.believed_leader[client] = None;
            return Ok(());
        };
        if core.read_index(request_id).is_err() {
            self.believed_leader[client] = None;
            return Ok(());
        }
        let acknowledged_at_start = self.checker.max_acknowledged();
        self.reads.push(PendingRead { node, request_id, acknowledged_at_start });
        self.trace.record(
            self.now,
            TraceEvent::ReadStart {
                node: id_of(node),
                request_id,
                acknowledged: acknowledged_at_start,
            },
        );
        self.after_input(node)
    }
}
