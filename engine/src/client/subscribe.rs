//! [`RemoteSubscription`]: a tail of committed entries over the network that survives node
//! failures.
//!
//! Owns: one subscription stream at a time, the next index it expects, and the move to another
//! node when the stream fails (a node stopped, or ended the stream because it lagged) or its
//! node knows no leader (cut off from the cluster, so nothing commits there).
//! Must not: skip, repeat or reorder an entry: every entry it yields has the index right after
//! the previous one, whichever node served it (no-ops excepted, which it does not yield), and a
//! stream that breaks that rule is treated as a failed node.

use super::{Client, ClientError};
use crate::log::LogEntry;
use raftwal_wire::client::{
    ClientRequest, ClientResponse, ErrorCode, StatusRequest, SubscribeRequest,
};
use raftwal_wire::transport::{ClientConnection, RequestError, Subscription};
use raftwal_wire::types::{Entry, LogId, LogIndex};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A stream of committed entries from a cluster. See the module documentation.
#[derive(Debug)]
pub struct RemoteSubscription {
    client: Arc<Client>,
    next: LogIndex,
    /// Index in the client's node list of the node to use.
    node: usize,
    stream: Option<(ClientConnection, Subscription)>,
    buffer: VecDeque<LogEntry>,
    /// Why the last stream failed, for the error once every node failed for too long.
    last_failure: String,
    /// Handshakes TLS refused in a row (each at the next node in turn): once every node did,
    /// the certificates are wrong for this cluster and no retry helps.
    refused_by_tls: usize,
    /// Per node of the client's list, whether it answered `Compacted` since the last batch
    /// (each node compacts its own log, so another may still hold the entries wanted): once
    /// every node did, the entries are gone. Per node, not a count: a node asked again after
    /// another failed for an unrelated reason (a restart) is still one node.
    compacted_at: Vec<bool>,
}

impl RemoteSubscription {
    pub(super) fn new(client: Arc<Client>, from: LogIndex, node: usize) -> RemoteSubscription {
        RemoteSubscription {
            // 0 stays 0 until the first entry arrives: the node serving it starts at its own
            // first entry.
            next: from,
            node,
            stream: None,
            buffer: VecDeque::new(),
            last_failure: String::new(),
            refused_by_tls: 0,
            compacted_at: vec![false; client.config().nodes.len()],
            client,
        }
    }

    /// The index of the next entry this subscription will yield (or skip, if it is a no-op); 0
    /// until the first entry of a subscription from 0 arrived.
    pub fn next_index(&self) -> LogIndex {
        self.next
    }

    /// The node currently serving the subscription, if connected.
    pub fn node(&self) -> Option<SocketAddr> {
        self.stream.as_ref().map(|(c, _)| c.remote_addr())
    }

    fn node_addr(&self) -> SocketAddr {
        let nodes = &self.client.config().nodes;
        nodes[self.node % nodes.len()]
    }

    async fn open(&mut self) -> Result<(), String> {
        let addr = self.node_addr();
        let timeout = self.client.config().attempt_timeout;
        let connect_timeout = self.client.config().connect_timeout;
        let connection =
            tokio::time::timeout(connect_timeout, self.client.endpoint().connect(addr))
                .await
                .map_err(|_| format!("{addr}: connection timed out"))?;
        let connection = match connection {
            Ok(connection) => {
                self.refused_by_tls = 0;
                connection
            }
            Err(e) => {
                self.refused_by_tls =
                    if e.is_refused_by_tls() { self.refused_by_tls + 1 } else { 0 };
                return Err(format!("{addr}: {e}"));
            }
        };
        let request = SubscribeRequest { log: self.client.config().log, from: self.next };
        let stream = tokio::time::timeout(timeout, connection.subscribe(request))
            .await
            .map_err(|_| format!("{addr}: no answer in time"))?
            .map_err(|e| format!("{addr}: {e}"))?;
        self.stream = Some((connection, stream));
        Ok(())
    }

    fn fail_over(&mut self, why: String) {
        self.last_failure = why;
        if let Some((connection, _)) = self.stream.take() {
            connection.close();
        }
        self.node = self.node.wrapping_add(1);
    }

    /// Takes the entries of a batch the node streamed: those from `next` on, in order, into the
    /// buffer (internal ones only move `next`), and those below `next` (already taken) are
    /// passed over. An entry past `next` is a skip: the entries before it are kept and `next`
    /// stays right after them, and the error says why the stream must be dropped.
    fn take_batch(&mut self, entries: &[Entry]) -> Result<(), String> {
        for entry in entries {
            if entry.index < self.next {
                continue;
            }
            if self.next == LogIndex::ZERO {
                // From the node's first entry: wherever that is.
                self.next = entry.index;
            }
            if entry.index != self.next {
                return Err(format!(
                    "stream skipped from {} to {}; resubscribing",
                    self.next, entry.index
                ));
            }
            self.next = entry.index.next();
            if let Some(user) = LogEntry::from_entry(entry) {
                self.buffer.push_back(user);
            }
        }
        Ok(())
    }

    /// The next committed entry. Fails when no node could serve the subscription for the
    /// client's retry deadline (counted from the failure, however long the tail had waited for
    /// entries before), or at once when a node refused it for a reason no retry fixes
    /// (no such log, an invalid request), or when every configured node answered that the
    /// entries wanted were compacted away (each node compacts its own log: one that did moves
    /// the subscription to the next; a node that answered so twice counts once).
    ///
    /// While its stream delivers nothing, it asks the node every second whether it knows a
    /// leader, and moves to the next node when it knows none (a node cut off from the rest of
    /// the cluster keeps the stream open, but nothing commits there) or does not answer within
    /// the attempt timeout. A cluster with no leader at all therefore fails the tail after the
    /// retry deadline, as it fails appends.
    pub async fn next(&mut self) -> Result<LogEntry, ClientError> {
        let retry_deadline = self.client.config().retry_deadline;
        // Counts from the first moment since the last progress that there was no stream (the
        // call's start, or the failure of the stream): not from the call's start, which on an
        // idle log may be long before a node failed.
        let mut deadline = None;
        let mut backoff = Duration::from_millis(5);
        // Each call opens a stream at least once whatever the deadline (a zero retry deadline
        // means one attempt), so a failure always has a reason.
        let mut opened = false;
        // Whether the last attempt failed before its stream served a batch (the connection
        // failed, or the node ended the subscription at once): the next one waits `backoff`
        // first, so that a node that refuses every subscription is not asked again in a loop
        // as fast as handshakes complete. A stream that served and then failed is replaced
        // at once.
        let mut pause = false;
        loop {
            if let Some(entry) = self.buffer.pop_front() {
                return Ok(entry);
            }
            if self.stream.is_none() {
                if self.client.is_closed() {
                    return Err(ClientError::Closed);
                }
                let deadline =
                    *deadline.get_or_insert_with(|| super::deadline_after(retry_deadline));
                if pause {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                if opened && tokio::time::Instant::now() >= deadline {
                    return Err(ClientError::Unavailable(self.last_failure.clone()));
                }
                opened = true;
                pause = true;
                if let Err(e) = self.open().await {
                    if self.refused_by_tls >= self.client.config().nodes.len() {
                        return Err(super::refused_by_tls(&e));
                    }
                    self.fail_over(e);
                    continue;
                }
            }
            let Some((connection, stream)) = self.stream.as_mut() else { continue };
            let log = self.client.config().log;
            let timeout = self.client.config().attempt_timeout;
            // Waits for the next batch; while none comes, asks the node now and then whether it
            // still knows a leader (`Subscription::next` keeps a partial frame across the
            // cancellation, so the batch is not lost when the check wins).
            let next = tokio::select! {
                next = stream.next() => Ok(next),
                why = leaderless(connection, log, timeout) => Err(why),
            };
            let next = match next {
                Ok(next) => next,
                Err(why) => {
                    self.fail_over(why);
                    continue;
                }
            };
            match next {
                Ok(Some(batch)) => {
                    self.compacted_at.fill(false);
                    if let Err(why) = self.take_batch(&batch.entries) {
                        self.fail_over(why);
                    }
                    // Progress: the node serves us; the deadline counts from the next failure.
                    deadline = None;
                    backoff = Duration::from_millis(5);
                    pause = false;
                }
                Ok(None) => self.fail_over("the node ended the subscription".into()),
                Err(RequestError::Server(e)) if e.code == ErrorCode::Compacted => {
                    // That node's own compaction or retention went past `next`; another
                    // replica may still hold it.
                    let at = self.node % self.compacted_at.len();
                    self.compacted_at[at] = true;
                    if self.compacted_at.iter().all(|c| *c) {
                        return Err(ClientError::Refused { code: e.code, message: e.message });
                    }
                    let addr = self.node_addr();
                    self.fail_over(format!("{addr}: {}", e.message));
                }
                Err(RequestError::Server(e)) if no_retry_fixes(e.code) => {
                    return Err(ClientError::Refused { code: e.code, message: e.message });
                }
                Err(e) => self.fail_over(e.to_string()),
            }
        }
    }
}

/// How long a stream may deliver nothing before the subscription asks its node whether it
/// knows a leader, and then again each time it did.
const LEADER_CHECK_IDLE: Duration = Duration::from_secs(1);

/// Resolves, with the reason to move to another node, once the node at the other end of
/// `connection` knows no leader for `log` (it is cut off from the rest of the cluster, or the
/// cluster has none: either way no new entry commits there), or does not answer whether it
/// does. Asks after [`LEADER_CHECK_IDLE`] and again after each answer naming a leader; never
/// resolves while the node knows one.
async fn leaderless(connection: &ClientConnection, log: LogId, timeout: Duration) -> String {
    let addr = connection.remote_addr();
    let request = ClientRequest::Status(StatusRequest { log });
    loop {
        tokio::time::sleep(LEADER_CHECK_IDLE).await;
        match tokio::time::timeout(timeout, connection.request(&request)).await {
            Ok(Ok(ClientResponse::Status(status))) if status.leader.is_some() => {}
            Ok(Ok(ClientResponse::Status(status))) => {
                return format!(
                    "{addr} knows no leader (term {}, commit index {}): no entry commits there",
                    status.term, status.commit_index
                )
            }
            Ok(Ok(other)) => {
                return format!("{addr}: the status check got {}", super::refusal(other, "status"))
            }
            Ok(Err(e)) => return format!("{addr}: the status check failed: {e}"),
            Err(_) => return format!("{addr}: no answer to the status check in time"),
        }
    }
}

/// Whether a node that ended a subscription with `code` refused it for a reason that no other
/// node and no later attempt can fix (the same refusals a read or an append reports at once).
fn no_retry_fixes(code: ErrorCode) -> bool {
    match code {
        ErrorCode::UnknownLog | ErrorCode::Compacted | ErrorCode::InvalidRequest => true,
        ErrorCode::Overloaded
        | ErrorCode::ShuttingDown
        | ErrorCode::Poisoned
        | ErrorCode::Internal
        | ErrorCode::SubscriberLagged => false,
    }
}

impl Client {
    /// Tails committed entries from `from` on (0: from the first entry the node reached still
    /// has, wherever compaction left it), starting at the first configured node and moving to
    /// the next one when a node fails.
    pub fn subscribe(self: &Arc<Self>, from: LogIndex) -> RemoteSubscription {
        RemoteSubscription::new(self.clone(), from, 0)
    }

    /// Like [`Client::subscribe`], starting at the `node`-th configured node (to spread
    /// consumers over the replicas).
    pub fn subscribe_at(self: &Arc<Self>, node: usize, from: LogIndex) -> RemoteSubscription {
        RemoteSubscription::new(self.clone(), from, node)
    }
}

#[cfg(test)]
mod tests {
    use super::RemoteSubscription;
    use crate::client::{Client, ClientConfig};
    use bytes::Bytes;
    use raftwal_wire::types::{Entry, EntryKind, LogId, LogIndex, Term};
    use std::sync::Arc;

    fn entry(index: u64) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(1),
            kind: EntryKind::Normal,
            data: Bytes::from(index.to_string()),
        }
    }

    /// A stream that skips an index (a faulty node) is dropped and the subscription goes on
    /// elsewhere from the first index it lacks; the entries of the same batch before the skip
    /// were in order and are yielded. Dropping them too, with `next` already past them, left a
    /// gap in what the subscriber saw, which is what the check is there to prevent.
    #[test]
    fn a_stream_that_skips_an_index_leaves_no_gap() {
        let runtime = crate::client::fake_nodes::runtime();
        let _entered = runtime.enter();
        let dir = crate::client::fake_nodes::certs(1);
        let config = ClientConfig::new(vec!["127.0.0.1:9".parse().unwrap()], dir.path(), LogId(0));
        let client = Arc::new(Client::new(config).unwrap());
        let mut subscription = RemoteSubscription::new(client, LogIndex(5), 0);
        let skipping = [entry(5), entry(6), entry(7), entry(9)];
        assert!(subscription.take_batch(&skipping).is_err(), "the skip went unnoticed");
        assert_eq!(subscription.next_index(), LogIndex(8));
        // Another node serves the rest, from 8 (with 7 again, which is passed over).
        subscription.take_batch(&[entry(7), entry(8), entry(9)]).unwrap();
        let seen: Vec<u64> = subscription.buffer.iter().map(|e| e.index.get()).collect();
        assert_eq!(seen, [5, 6, 7, 8, 9], "skipped or repeated entries");
    }

    /// Two nodes: the first compacted the entries wanted, the second is restarting (it ends the
    /// first subscription with `ShuttingDown`) and then serves them. The subscription gives up
    /// as compacted only once every node answered so; the first node answering twice, around
    /// the second's restart, is not every node, and the entries are still there to be had.
    #[test]
    fn a_node_compacted_twice_around_anothers_restart_is_not_every_node() {
        use crate::client::fake_nodes::{certs, runtime, spawn_node};
        use raftwal_wire::client::{ClientError as WireError, ErrorCode};
        use raftwal_wire::transport::TransportEvent;
        let runtime = runtime();
        let _entered = runtime.enter();
        let dir = certs(2);
        let mut addrs = Vec::new();
        for node in [1, 2] {
            addrs.push(spawn_node(dir.path(), node, move |mut events| async move {
                let mut sinks = Vec::new();
                let mut served = 0;
                while let Some(event) = events.recv().await {
                    let TransportEvent::Subscribe(event) = event else { continue };
                    served += 1;
                    let end = |code, message: &str| {
                        Some(WireError { code, message: message.to_string() })
                    };
                    if node == 1 {
                        event.sink.end(end(ErrorCode::Compacted, "compacted here"));
                    } else if served == 1 {
                        event.sink.end(end(ErrorCode::ShuttingDown, "restarting"));
                    } else {
                        let from = event.request.from.get();
                        event.sink.try_send(&[entry(from), entry(from + 1)]).unwrap();
                        sinks.push(event.sink);
                    }
                }
            }));
        }
        let mut config = ClientConfig::new(addrs, dir.path(), LogId(0));
        config.retry_deadline = std::time::Duration::from_secs(10);
        let client = Arc::new(Client::new(config).unwrap());
        let mut subscription = RemoteSubscription::new(client, LogIndex(5), 0);
        let got = runtime.block_on(subscription.next());
        assert_eq!(got.map(|e| e.index), Ok(LogIndex(5)), "the second node holds the entry");
    }

    /// A node that ends every subscription at once with an error worth retrying (its copy of
    /// the log is poisoned, say) is asked again after a pause that grows, as one that cannot be
    /// reached is, not in a loop of handshakes as fast as they complete.
    #[test]
    fn a_node_that_ends_every_subscription_at_once_is_retried_with_pauses() {
        use crate::client::fake_nodes::{certs, runtime, spawn_node};
        use raftwal_wire::client::{ClientError as WireError, ErrorCode};
        use raftwal_wire::transport::TransportEvent;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::Duration;
        let runtime = runtime();
        let _entered = runtime.enter();
        let dir = certs(1);
        let asked = Arc::new(AtomicUsize::new(0));
        let counted = asked.clone();
        let addr = spawn_node(dir.path(), 1, move |mut events| async move {
            while let Some(event) = events.recv().await {
                let TransportEvent::Subscribe(event) = event else { continue };
                counted.fetch_add(1, Ordering::SeqCst);
                let message = "log refuses writes after a storage failure".into();
                event.sink.end(Some(WireError { code: ErrorCode::Poisoned, message }));
            }
        });
        let mut config = ClientConfig::new(vec![addr], dir.path(), LogId(0));
        config.retry_deadline = Duration::from_secs(1);
        let client = Arc::new(Client::new(config).unwrap());
        let mut subscription = RemoteSubscription::new(client, LogIndex(5), 0);
        let got = runtime.block_on(subscription.next());
        assert!(matches!(got, Err(crate::client::ClientError::Unavailable(_))), "{got:?}");
        // Pauses of 5 ms doubling to 500 ms fit 8 attempts in a second.
        let asked = asked.load(Ordering::SeqCst);
        assert!(asked <= 12, "asked {asked} times in a second");
    }

    /// A tail waits on an idle log longer than the retry deadline; then its node restarts (it
    /// ends the subscription, refuses the next one, then serves again). The retry deadline
    /// counts from the failure, not from when the tail started waiting: the tail goes on.
    #[test]
    fn a_tail_idle_longer_than_the_retry_deadline_survives_a_restart_of_its_node() {
        use crate::client::fake_nodes::{certs, runtime, spawn_node};
        use raftwal_wire::client::{ClientError as WireError, ErrorCode};
        use raftwal_wire::transport::TransportEvent;
        use std::time::Duration;
        let runtime = runtime();
        let _entered = runtime.enter();
        let dir = certs(1);
        let idle = Duration::from_millis(2500);
        let addr = spawn_node(dir.path(), 1, move |mut events| async move {
            let mut served = 0;
            let mut sinks = Vec::new();
            while let Some(event) = events.recv().await {
                let TransportEvent::Subscribe(event) = event else { continue };
                served += 1;
                let restarting =
                    || Some(WireError { code: ErrorCode::ShuttingDown, message: "restart".into() });
                let from = event.request.from.get();
                match served {
                    1 => {
                        // Entry 5, then nothing for a while, then the restart.
                        event.sink.try_send(&[entry(from)]).unwrap();
                        tokio::spawn(async move {
                            tokio::time::sleep(idle).await;
                            event.sink.end(restarting());
                        });
                    }
                    2 => event.sink.end(restarting()),
                    _ => {
                        event.sink.try_send(&[entry(from)]).unwrap();
                        sinks.push(event.sink);
                    }
                }
            }
        });
        let mut config = ClientConfig::new(vec![addr], dir.path(), LogId(0));
        config.retry_deadline = Duration::from_secs(1);
        let client = Arc::new(Client::new(config).unwrap());
        let mut subscription = RemoteSubscription::new(client, LogIndex(5), 0);
        runtime.block_on(async {
            assert_eq!(subscription.next().await.map(|e| e.index), Ok(LogIndex(5)));
            let got = subscription.next().await;
            assert_eq!(got.map(|e| e.index), Ok(LogIndex(6)), "the tail ended at a restart");
        });
    }

    /// The first node accepts the subscription but is cut off from the rest of its cluster: it
    /// keeps the stream open, delivers nothing, and answers a status with no leader. The tail
    /// moves to the second node, which serves the entries, instead of waiting on the first for
    /// as long as it is cut off.
    #[test]
    fn a_tail_moves_off_a_node_that_knows_no_leader() {
        use crate::client::fake_nodes::{certs, runtime, spawn_node};
        use raftwal_wire::client::{ClientResponse, LogStatus, Role};
        use raftwal_wire::transport::TransportEvent;
        use raftwal_wire::types::NodeId;
        use std::time::Duration;
        let runtime = runtime();
        let _entered = runtime.enter();
        let dir = certs(2);
        let mut addrs = Vec::new();
        for node in [1, 2] {
            addrs.push(spawn_node(dir.path(), node, move |mut events| async move {
                let mut sinks = Vec::new();
                while let Some(event) = events.recv().await {
                    match event {
                        TransportEvent::Subscribe(event) if node == 1 => sinks.push(event.sink),
                        TransportEvent::Subscribe(event) => {
                            let from = event.request.from.get();
                            event.sink.try_send(&[entry(from)]).unwrap();
                            sinks.push(event.sink);
                        }
                        TransportEvent::ClientRequest(request) => {
                            let status = LogStatus {
                                log: LogId(0),
                                node: NodeId(node),
                                role: Role::Follower,
                                term: Term(7),
                                leader: None,
                                first_index: LogIndex(1),
                                last_index: LogIndex(4),
                                commit_index: LogIndex(4),
                            };
                            let _ = request.responder.respond(&ClientResponse::Status(status));
                        }
                        _ => {}
                    }
                }
            }));
        }
        let config = ClientConfig::new(addrs.clone(), dir.path(), LogId(0));
        let client = Arc::new(Client::new(config).unwrap());
        let mut subscription = RemoteSubscription::new(client, LogIndex(5), 0);
        let got = runtime
            .block_on(tokio::time::timeout(Duration::from_secs(20), subscription.next()))
            .expect("the tail stayed on the node that knows no leader");
        assert_eq!(got.map(|e| e.index), Ok(LogIndex(5)));
        assert_eq!(subscription.node(), Some(addrs[1]), "served by the second node");
    }
}
