//! What other threads ask of a shard: the embedding API's requests, and traffic forwarded from a
//! shard that received it for a log it does not own.
//!
//! Owns: [`Command`], the reply channels, and [`ShardHandle`] (a sender plus the wake-up of the
//! shard's loop).
//! Must not: touch a shard's state; only the shard thread does, when it drains its commands.

use crate::error::{
    AppendError, CompactError, ReadError, ReadIndexError, StatusError, TransferError,
};
use crate::log::{BatchPosition, LogEntry, LogStatus, ReadLimit};
use crate::runtime::subscribers::LocalSink;
use bytes::Bytes;
use raftwal_wire::message::Message;
use raftwal_wire::transport::{ClientRequestEvent, SubscribeEvent};
use raftwal_wire::types::{LogId, LogIndex, NodeId};
use std::sync::Arc;
use tokio::sync::{oneshot, Notify};

/// A reply channel: the caller awaits it (async) or blocks on it.
pub(crate) type Reply<T> = oneshot::Sender<T>;

/// A request to a shard.
#[derive(Debug)]
pub(crate) enum Command {
    /// Append payloads as consecutive entries of `log`.
    Append { log: LogId, payloads: Vec<Bytes>, reply: Reply<Result<BatchPosition, AppendError>> },
    /// Read committed entries.
    Read {
        log: LogId,
        from: LogIndex,
        limit: ReadLimit,
        reply: Reply<Result<Vec<LogEntry>, ReadError>>,
    },
    /// Start streaming committed entries into `sink`.
    Subscribe { log: LogId, from: LogIndex, sink: LocalSink },
    /// A local subscriber drained its buffer after the shard found it full: deliver again.
    ResumeSubscriber { log: LogId, id: u64 },
    /// A log's status.
    Status { log: LogId, reply: Reply<Result<LogStatus, StatusError>> },
    /// A linearizable read point of `log`, once this node can serve reads up to it.
    ReadIndex { log: LogId, reply: Reply<Result<LogIndex, ReadIndexError>> },
    /// Forget the entries of `log` before `before` on this node.
    Compact { log: LogId, before: LogIndex, reply: Reply<Result<LogIndex, CompactError>> },
    /// Hand leadership of `log` to `to`.
    Transfer { log: LogId, to: NodeId, reply: Reply<Result<(), TransferError>> },
    /// A Raft message for a log this shard owns, received by another shard.
    Peer(Message),
    /// A client request for a log this shard owns, received by another shard.
    Client(ClientRequestEvent),
    /// A client subscription for a log this shard owns, received by another shard.
    ClientSubscribe(SubscribeEvent),
    /// Stop: answer what is pending with `ShuttingDown`, save state, close the endpoint. With
    /// `hand_over`, first hand the leadership of every log this shard leads, or comes to lead
    /// meanwhile, to a connected peer (bounded by two election timeouts), so that the cluster
    /// need not wait for an election.
    Shutdown { hand_over: bool },
    /// Test only: panic in the shard's loop with this message, as a bug there would.
    #[cfg(test)]
    Panic { message: &'static str },
    /// Test only: end the shard's loop without telling it to stop, as the end of its transport's
    /// events would (which a test cannot bring about: the shard holds its transport).
    #[cfg(test)]
    EndLoop { reason: &'static str },
}

/// The way into one shard from any thread.
#[derive(Clone, Debug)]
pub(crate) struct ShardHandle {
    tx: crossbeam::channel::Sender<Command>,
    wake: Arc<Notify>,
}

/// The shard's end of its [`ShardHandle`]s.
#[derive(Debug)]
pub(crate) struct ShardInbox {
    pub(crate) rx: crossbeam::channel::Receiver<Command>,
    pub(crate) wake: Arc<Notify>,
}

/// The shard is gone (it stopped or failed); the command was not delivered.
#[derive(Debug)]
pub(crate) struct ShardGone;

impl ShardHandle {
    /// A handle and the inbox the shard thread drains.
    pub(crate) fn new() -> (ShardHandle, ShardInbox) {
        let (tx, rx) = crossbeam::channel::unbounded();
        let wake = Arc::new(Notify::new());
        (ShardHandle { tx, wake: wake.clone() }, ShardInbox { rx, wake })
    }

    /// Queues `command` and wakes the shard's loop. One cross-thread wake-up per call, however
    /// many commands are queued before the shard runs: the loop drains them all at once.
    pub(crate) fn send(&self, command: Command) -> Result<(), ShardGone> {
        self.tx.send(command).map_err(|_| ShardGone)?;
        self.wake.notify_one();
        Ok(())
    }
}
