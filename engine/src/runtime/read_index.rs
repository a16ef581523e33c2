//! Linearizable reads: read points from the core's ReadIndex (thesis 6.4), for the embedding
//! API's [`crate::Log::read_index`] and a remote client's linearizable Read.
//!
//! Owns: [`ReadIndexes`], the reads waiting for the core's answer and then for this replica to
//! be able to serve reads up to it, and [`ReadIndexReply`], the ways to answer one.
//! Must not: answer before the replica's readable commit index (committed, and in its store as
//! the committed entry) reached the read index: a read served earlier could miss an entry the
//! cluster committed before the request.
//!
//! Invariants:
//! 1. Every registered read is answered exactly once: by the replica once its read index is
//!    readable, with a failure when the core could not confirm it (the core answers every
//!    request: an index, or `None` when leadership could not be confirmed), when the log
//!    stops (storage failure, shutdown), before the core answered when the replica holds a
//!    `Ready` a full disk refused (the core takes no message or tick meanwhile, so its answer
//!    would wait for as long as the disk stays full), or, once confirmed, when the replica
//!    loses its leader before its index became readable (a client retries; it would otherwise
//!    wait as long as the partition lasts), or when its index did not become readable within
//!    `CONFIRMED_WAIT_ELECTION_TIMEOUTS` election timeouts (a replica far behind, or a leader
//!    that answered an index it never commits: the read is sent to the leader instead).
//! 2. Request ids are unique across restarts of the process (they start at a random point
//!    below `u64::MAX / 2`, so they never reach the rejoin read's id either): the core matches a
//!    leader's answer to a forwarded read by id alone, and an answer to the previous process's
//!    read must not answer a read of this one, which may have started after entries the old
//!    read's index misses were acknowledged.

use crate::error::ReadIndexError;
use crate::runtime::command::Reply;
use raftwal_wire::client::ReadRequest;
use raftwal_wire::transport::Responder;
use raftwal_wire::types::LogIndex;
use std::collections::HashMap;

/// How many election timeouts a confirmed read waits for its index to become readable before it
/// fails with [`ReadIndexError::Lagging`]: a follower that keeps its leader catches up within
/// milliseconds unless it is far behind, when the leader serves the read sooner.
pub(crate) const CONFIRMED_WAIT_ELECTION_TIMEOUTS: u32 = 10;

/// How to answer one linearizable read.
#[derive(Debug)]
pub(crate) enum ReadIndexReply {
    /// The embedding API: the read index itself.
    Local(Reply<Result<LogIndex, ReadIndexError>>),
    /// A remote client's linearizable Read, served from this replica once its read index is
    /// readable.
    Remote { responder: Responder, read: ReadRequest },
}

/// The linearizable reads of one replica.
#[derive(Debug)]
pub(crate) struct ReadIndexes {
    /// The id of the last read registered (invariant 2).
    next_id: u64,
    /// Waiting for the core's answer, by request id.
    asked: HashMap<u64, ReadIndexReply>,
    /// Answered by the core: waiting until the replica can serve reads up to the index, with
    /// the ticks waited so.
    confirmed: Vec<(LogIndex, u32, ReadIndexReply)>,
}

impl ReadIndexes {
    /// No reads; ids from a point drawn from `unique` (invariant 2).
    pub(crate) fn new(unique: u64) -> ReadIndexes {
        ReadIndexes { next_id: unique >> 1, asked: HashMap::new(), confirmed: Vec::new() }
    }

    /// The id of the read registered last (for tests that answer it as a leader would).
    #[cfg(test)]
    pub(crate) fn last_id(&self) -> u64 {
        self.next_id
    }

    /// Registers a read; returns the request id to hand to the core.
    pub(crate) fn register(&mut self, reply: ReadIndexReply) -> u64 {
        self.next_id += 1;
        self.asked.insert(self.next_id, reply);
        self.next_id
    }

    /// Takes back a read the core refused at once.
    pub(crate) fn withdraw(&mut self, id: u64) -> Option<ReadIndexReply> {
        self.asked.remove(&id)
    }

    /// The core's answer to request `id`: the read waits for `index` to become readable, or,
    /// when leadership could not be confirmed, is handed back to be failed.
    pub(crate) fn answered(&mut self, id: u64, index: Option<LogIndex>) -> Option<ReadIndexReply> {
        let reply = self.asked.remove(&id)?;
        match index {
            Some(index) => {
                self.confirmed.push((index, 0, reply));
                None
            }
            None => Some(reply),
        }
    }

    /// Whether a confirmed read waits for its index to become readable.
    pub(crate) fn has_confirmed(&self) -> bool {
        !self.confirmed.is_empty()
    }

    /// The confirmed reads whose index `readable` covers, to be answered now.
    pub(crate) fn take_readable(&mut self, readable: LogIndex) -> Vec<(LogIndex, ReadIndexReply)> {
        let (now, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.confirmed).into_iter().partition(|(i, ..)| *i <= readable);
        self.confirmed = later;
        now.into_iter().map(|(index, _, reply)| (index, reply)).collect()
    }

    /// One tick passed: the confirmed reads that have now waited `limit_ticks`, to be failed
    /// with their index (invariant 1).
    pub(crate) fn age(&mut self, limit_ticks: u32) -> Vec<(LogIndex, ReadIndexReply)> {
        for (_, waited, _) in &mut self.confirmed {
            *waited = waited.saturating_add(1);
        }
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.confirmed)
            .into_iter()
            .partition(|(_, waited, _)| *waited >= limit_ticks);
        self.confirmed = waiting;
        expired.into_iter().map(|(index, _, reply)| (index, reply)).collect()
    }

    /// The confirmed reads, to be failed: their replica lost its leader, and nothing says when
    /// it will hear of the commits that make their indexes readable.
    pub(crate) fn take_confirmed(&mut self) -> Vec<ReadIndexReply> {
        self.confirmed.drain(..).map(|(.., reply)| reply).collect()
    }

    /// The reads still waiting for the core's answer, to be failed: their replica holds a
    /// `Ready` a full disk refused, and its core takes no message and no tick until a retry
    /// finds room, so it neither hears the leader's answer nor ages the request out.
    pub(crate) fn take_asked(&mut self) -> Vec<ReadIndexReply> {
        self.asked.drain().map(|(_, reply)| reply).collect()
    }

    /// Every read, to be failed (the log stops on this node).
    pub(crate) fn take_all(&mut self) -> Vec<ReadIndexReply> {
        let mut all: Vec<ReadIndexReply> = self.asked.drain().map(|(_, reply)| reply).collect();
        all.extend(self.confirmed.drain(..).map(|(.., reply)| reply));
        all
    }
}
