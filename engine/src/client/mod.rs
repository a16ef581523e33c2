//! The remote client: append, read, subscribe, status and compact over QUIC, to any node of a cluster.
//!
//! Owns: [`Client`] (one QUIC endpoint with the cluster's client certificate, a connection to
//! the node it believes leads, the client id and the next sequence number), its retry policy,
//! and [`RemoteSubscription`].
//! Must not: give up an append on a leader change, or append one twice: every append carries the
//! client id and a sequence number, a retry carries the same ones, and the log deduplicates it;
//! no number is handed out a deduplication window past the oldest unsettled append
//! (`seq_window`), so a retry is always recognised.
//!
//! Appends follow the leader: a `NotLeader` answer names it (with its address), and the client
//! reconnects there; a lost connection or a timeout moves on to the next node. Reads and
//! subscriptions are served by whichever node the client reaches, from its own log, up to its own
//! commit index: committed entries are the same on every replica, so consumers spread over them.

#[cfg(test)]
mod fake_nodes;
mod seq_window;
mod subscribe;

pub use subscribe::RemoteSubscription;

use crate::log::{BatchPosition, LogEntry, Position};
use bytes::Bytes;
use raftwal_wire::client::{
    AppendBatchRequest, AppendRequest, AppendedBatch, ClientId, ClientRequest, ClientResponse,
    ClientSeq, CompactRequest, Compacted, ErrorCode, LogStatus, ReadRequest, StatusRequest,
    TaggedPayload,
};
use raftwal_wire::codec::FrameLimits;
use raftwal_wire::tls::TlsIdentity;
use raftwal_wire::transport::{ClientConnection, ClientEndpoint, QuicTuning, RequestError};
use raftwal_wire::types::{Entry, LogId, LogIndex};
use seq_window::{SeqWindow, DEDUP_WINDOW_SEQS};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tracing::debug;

/// How to reach a cluster.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Addresses of the cluster's nodes (any subset; more gives more places to retry).
    pub nodes: Vec<SocketAddr>,
    /// A directory with the cluster CA and a client certificate (see `raftwal certs`).
    pub tls_dir: PathBuf,
    /// The log to work on.
    pub log: LogId,
    /// How long one attempt of a request may take before the client moves to another node.
    pub attempt_timeout: Duration,
    /// How long a connection attempt (QUIC and TLS handshake) may take. A stopped node never
    /// answers, so this bounds how long a client spends on one before it tries another.
    pub connect_timeout: Duration,
    /// How long a request is retried (across leader changes) before it fails. Every request
    /// makes at least one attempt, so zero means exactly one.
    pub retry_deadline: Duration,
}

impl ClientConfig {
    /// A configuration with the default timeouts (1 s to connect, 5 s per attempt, 30 s in all).
    pub fn new(nodes: Vec<SocketAddr>, tls_dir: impl Into<PathBuf>, log: LogId) -> ClientConfig {
        ClientConfig {
            nodes,
            tls_dir: tls_dir.into(),
            log,
            attempt_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            retry_deadline: Duration::from_secs(30),
        }
    }
}

/// Why a client request failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The configuration is unusable (no node address, unreadable certificates, or
    /// certificates that every node's TLS refuses: reported at once, not retried).
    #[error("client configuration: {0}")]
    Config(String),
    /// No node could be reached, or none answered, before the retry deadline. The last failure
    /// is given. An append may or may not have been applied: retrying it with a new client
    /// would append it again.
    #[error("no node answered before the deadline; last failure: {0}")]
    Unavailable(String),
    /// A node refused the request for a reason a retry does not fix, or the client could not
    /// send it at all (`InvalidRequest`: a request larger than a frame, such as a batch of many
    /// large entries; nothing of it was sent). A request larger than the node's frames
    /// (`transport.frame_size_bytes_max`, which may be smaller than the client's 16 MiB) is
    /// refused by the node alone, `InvalidRequest` with both sizes, and nothing of it applied.
    #[error("refused ({code:?}): {message}")]
    Refused {
        /// What the node said, for programs.
        code: ErrorCode,
        /// What the node said, for people.
        message: String,
    },
    /// A node answered with something that does not answer the request (a protocol bug).
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// The client was closed ([`Client::close`]) before the request got its answer. An append
    /// may or may not have been applied, as for `Unavailable`.
    #[error("the client was closed")]
    Closed,
}

/// The error once TLS refused the handshake with every node (`last`: the latest refusal).
pub(super) fn refused_by_tls(last: &str) -> ClientError {
    ClientError::Config(format!(
        "every node refused the TLS handshake (certificates of another cluster?); last: {last}"
    ))
}

/// What one attempt at a request came to.
enum Attempt<T> {
    Done(T),
    /// Try again at the leader the node named, if any.
    Redirect(Option<SocketAddr>),
    /// Try again elsewhere (connection lost, timeout, node overloaded or stopping).
    Retry(String),
}

/// A client of one log of a cluster. Cheap to share: wrap it in an `Arc` and call it from many
/// tasks; requests from all of them are pipelined over one connection.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    endpoint: ClientEndpoint,
    client_id: ClientId,
    /// Sequence numbers for appends, kept within the node's deduplication window.
    seqs: SeqWindow,
    /// The node appends go to, and the connection to it.
    current: Mutex<Current>,
    /// Held while connecting, so that concurrent requests wait for one connection attempt
    /// instead of each making their own.
    connecting: tokio::sync::Mutex<()>,
    /// Set by [`Client::close`]: requests and tails in flight end with `Closed` instead of
    /// retrying against an endpoint that can no longer connect.
    closed: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct Current {
    /// Index in `config.nodes` of the node to try next when there is no better idea.
    rotation: usize,
    /// The node believed to lead (from a redirect).
    preferred: Option<SocketAddr>,
    connection: Option<Arc<ClientConnection>>,
    /// Nodes that just failed (a lost connection, a failed connect), with when to try them
    /// again: a stopped node is skipped while others remain, rather than tried again at once.
    down: Vec<(SocketAddr, tokio::time::Instant)>,
    /// Nodes whose last handshake TLS refused (certificates of another cluster, say).
    refused_by_tls: Vec<SocketAddr>,
}

/// The longest [`Client::close_and_wait`] waits for its closes to leave.
pub const CLOSE_WAIT_MAX: Duration = Duration::from_secs(1);

/// How long a node that just failed is skipped.
const DOWN_FOR: Duration = Duration::from_secs(2);

impl Current {
    fn is_down(&self, addr: SocketAddr, now: tokio::time::Instant) -> bool {
        self.down.iter().any(|(a, until)| *a == addr && *until > now)
    }

    fn mark_down(&mut self, addr: SocketAddr, now: tokio::time::Instant) {
        self.down.retain(|(a, until)| *a != addr && *until > now);
        self.down.push((addr, now + DOWN_FOR));
    }

    /// A node named `addr` as the leader: prefer it, and forget that it failed lately. The
    /// redirect is newer than the failure (an attempt that timed out on a slow leader, say);
    /// skipping it would send the client back to a follower that redirects it again at once,
    /// a loop without a pause until the mark expires.
    fn prefer(&mut self, addr: SocketAddr) {
        self.down.retain(|(a, _)| *a != addr);
        self.preferred = Some(addr);
    }

    /// The node to connect to: the preferred one, else the next in turn that is not down (or
    /// the next in turn, when every node is down).
    fn target(&mut self, nodes: &[SocketAddr], now: tokio::time::Instant) -> SocketAddr {
        if let Some(preferred) = self.preferred.filter(|p| !self.is_down(*p, now)) {
            return preferred;
        }
        for _ in 0..nodes.len() {
            let candidate = nodes[self.rotation % nodes.len()];
            if !self.is_down(candidate, now) {
                return candidate;
            }
            self.rotation = self.rotation.wrapping_add(1);
        }
        nodes[self.rotation % nodes.len()]
    }
}

/// A client id that differs between clients and runs: it keys the log's deduplication table.
fn new_client_id() -> ClientId {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the operating system's randomness.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    ClientId(hasher.finish())
}

impl Client {
    /// A client for `config`. Call it inside a tokio runtime; no connection is made yet.
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        if config.nodes.is_empty() {
            return Err(ClientError::Config("no node address given".into()));
        }
        let identity = TlsIdentity::load_client(&config.tls_dir)
            .map_err(|e| ClientError::Config(format!("{}: {e}", config.tls_dir.display())))?;
        // An IPv4 socket cannot reach an IPv6 node, so any IPv6 address in the list takes the
        // IPv6 wildcard (dual-stack: it reaches the IPv4 nodes too); an IPv4-only list keeps
        // an IPv4 socket, which works on hosts without IPv6. (Binding by the first address
        // alone left the IPv6 nodes after an IPv4 one unreachable.)
        let bind: SocketAddr = if config.nodes.iter().all(SocketAddr::is_ipv4) {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let endpoint =
            ClientEndpoint::open(&identity, bind, &QuicTuning::default(), FrameLimits::default())
                .map_err(|e| ClientError::Config(format!("cannot open a QUIC endpoint: {e}")))?;
        Ok(Client {
            config,
            endpoint,
            client_id: new_client_id(),
            seqs: SeqWindow::new(1),
            current: Mutex::new(Current::default()),
            connecting: tokio::sync::Mutex::new(()),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// This client's id in the log's deduplication table.
    pub fn client_id(&self) -> ClientId {
        self.client_id
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        // Only plain field updates happen under this lock; a panic cannot leave it half-done.
        self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The connection appends use, connecting (to the preferred node, else the next in turn
    /// that is not down) when there is none.
    async fn connection(&self) -> Result<Arc<ClientConnection>, String> {
        if let Some(connection) = self.current().connection.clone() {
            return Ok(connection);
        }
        let _connecting = self.connecting.lock().await;
        let target = {
            let mut current = self.current();
            // Another task may have connected while this one waited.
            if let Some(connection) = &current.connection {
                return Ok(connection.clone());
            }
            current.target(&self.config.nodes, tokio::time::Instant::now())
        };
        let connect = self.endpoint.connect(target);
        let failure = match tokio::time::timeout(self.config.connect_timeout, connect).await {
            Ok(Ok(connection)) => {
                let connection = Arc::new(connection);
                let mut current = self.current();
                current.refused_by_tls.retain(|a| *a != target);
                current.connection = Some(connection.clone());
                return Ok(connection);
            }
            Ok(Err(e)) => {
                if e.is_refused_by_tls() {
                    let mut current = self.current();
                    if !current.refused_by_tls.contains(&target) {
                        current.refused_by_tls.push(target);
                    }
                }
                format!("{target}: {e}")
            }
            Err(_) => format!("{target}: connection timed out"),
        };
        self.current().mark_down(target, tokio::time::Instant::now());
        self.move_on(None);
        Err(failure)
    }

    /// Whether TLS refused the last handshake with every node: certificates that no node takes
    /// (another cluster's, or a client certificate its CA did not sign), which no retry fixes.
    fn refused_by_every_node(&self) -> bool {
        let current = self.current();
        self.config.nodes.iter().all(|node| current.refused_by_tls.contains(node))
    }

    /// Drops the connection `failed` (if it is still the current one) and moves to `next`, or to
    /// the next node in turn; `down` marks the failed node to be skipped for a while.
    fn forget(&self, failed: &Arc<ClientConnection>, next: Option<SocketAddr>, down: bool) {
        let mut current = self.current();
        if down {
            current.mark_down(failed.remote_addr(), tokio::time::Instant::now());
        }
        if current.connection.as_ref().is_some_and(|c| Arc::ptr_eq(c, failed)) {
            current.connection = None;
            drop(current);
            self.move_on(next);
        }
    }

    fn move_on(&self, next: Option<SocketAddr>) {
        let mut current = self.current();
        current.connection = None;
        match next {
            Some(addr) => current.prefer(addr),
            None => {
                current.preferred = None;
                current.rotation = current.rotation.wrapping_add(1);
            }
        }
    }

    /// Sends `request` until it gets a final answer, following redirects and retrying elsewhere
    /// on failures, until the retry deadline.
    async fn call<T>(
        &self,
        request: &ClientRequest,
        mut interpret: impl FnMut(ClientResponse) -> Result<Attempt<T>, ClientError>,
    ) -> Result<T, ClientError> {
        let deadline = deadline_after(self.config.retry_deadline);
        let mut backoff = Duration::from_millis(5);
        let mut last_failure = String::new();
        // The first attempt is made whatever the deadline, so a failure always has a reason.
        let mut attempted = false;
        loop {
            if self.is_closed() {
                return Err(ClientError::Closed);
            }
            if attempted && tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Unavailable(last_failure));
            }
            attempted = true;
            // Bounded by the deadline (or one connect timeout, for the first attempt): while
            // the nodes cannot be reached, the requests in flight wait for one connection
            // attempt at a time, and the last in line would otherwise wait for all of them.
            let wait_until = deadline.max(deadline_after(self.config.connect_timeout));
            let connection = match tokio::time::timeout_at(wait_until, self.connection()).await {
                Ok(Ok(connection)) => connection,
                Ok(Err(e)) if self.refused_by_every_node() => return Err(refused_by_tls(&e)),
                Ok(Err(e)) => {
                    last_failure = e;
                    pause(&mut backoff).await;
                    continue;
                }
                Err(_) => {
                    if last_failure.is_empty() {
                        last_failure = "no node reached before the retry deadline (waited for \
                                        other requests' connection attempts)"
                            .into();
                    }
                    continue;
                }
            };
            let attempt =
                tokio::time::timeout(self.config.attempt_timeout, connection.request(request))
                    .await;
            let outcome = match attempt {
                Ok(Ok(response)) => interpret(response)?,
                Ok(Err(RequestError::ConnectionLost(e))) => Attempt::Retry(e),
                Ok(Err(e @ RequestError::Protocol(_))) => Attempt::Retry(e.to_string()),
                // Nothing was sent: the request is larger than a frame, which no node takes.
                Ok(Err(RequestError::Encode(e))) => {
                    return Err(ClientError::Refused {
                        code: ErrorCode::InvalidRequest,
                        message: format!(
                            "the request cannot be sent ({e}): split it (a batch into smaller \
                             batches)"
                        ),
                    })
                }
                Ok(Err(e)) => return Err(ClientError::Protocol(e.to_string())),
                Err(_) => {
                    Attempt::Retry(format!("{}: no answer in time", connection.remote_addr()))
                }
            };
            let outcome = match outcome {
                Attempt::Redirect(Some(hint)) => {
                    Attempt::Redirect(Some(reachable(hint, connection.remote_addr())))
                }
                other => other,
            };
            match outcome {
                Attempt::Done(value) => return Ok(value),
                Attempt::Redirect(Some(addr)) if addr != connection.remote_addr() => {
                    last_failure = format!("redirected to {addr}");
                    self.forget(&connection, Some(addr), false);
                }
                Attempt::Redirect(_) => {
                    // No leader known yet (an election is running): wait a little, then ask
                    // around.
                    last_failure = "no leader known".into();
                    self.forget(&connection, None, false);
                    pause(&mut backoff).await;
                }
                Attempt::Retry(e) => {
                    last_failure = e;
                    self.forget(&connection, None, true);
                    pause(&mut backoff).await;
                }
            }
        }
    }

    /// Appends one entry; returns once it is committed. Retried across leader changes with the
    /// same sequence number, so it is appended once. Waits first while this client's oldest
    /// unsettled append is 1,024 sequence numbers behind (the node's deduplication window), so
    /// that its retries stay recognisable.
    pub async fn append(&self, data: Bytes) -> Result<Position, ClientError> {
        let seq = self.seqs.lease(1).await;
        let request = ClientRequest::Append(AppendRequest {
            log: self.config.log,
            tagged: TaggedPayload::new(self.client_id, ClientSeq(seq.first()), data),
        });
        self.call(&request, |response| match response {
            ClientResponse::Appended(a) => {
                Ok(Attempt::Done(Position { index: a.index, term: a.term }))
            }
            other => common(other),
        })
        .await
    }

    /// Appends entries as consecutive entries; returns once all are committed. A batch must
    /// fit one frame of the node's (`transport.frame_size_bytes_max`, less about 20 bytes per
    /// entry): a larger one is refused at once (`Refused` with `InvalidRequest`), not retried.
    pub async fn append_batch(&self, data: Vec<Bytes>) -> Result<BatchPosition, ClientError> {
        if data.is_empty() {
            return Err(ClientError::Refused {
                code: ErrorCode::InvalidRequest,
                message: "empty batch".into(),
            });
        }
        let count = data.len() as u64;
        if count > DEDUP_WINDOW_SEQS {
            return Err(ClientError::Refused {
                code: ErrorCode::InvalidRequest,
                message: format!(
                    "a batch of {count} entries: at most {DEDUP_WINDOW_SEQS} (the node's \
                     deduplication window; a larger batch could be appended twice on a retry)"
                ),
            });
        }
        let seqs = self.seqs.lease(count).await;
        let items = (seqs.first()..)
            .zip(data)
            .map(|(seq, d)| TaggedPayload::new(self.client_id, ClientSeq(seq), d))
            .collect();
        let request =
            ClientRequest::AppendBatch(AppendBatchRequest { log: self.config.log, items });
        self.call(&request, |response| match response {
            ClientResponse::AppendedBatch(a) => batch_position(&a, count).map(Attempt::Done),
            other => common(other),
        })
        .await
    }

    /// Committed entries from `from` (0: from the first entry the node reached still has,
    /// wherever compaction left it), at most `count_max` of them (fewer at the end of what is
    /// committed), from whichever node the client reaches; when that node has compacted them
    /// away, from any other node that still has them (`Refused` with `Compacted` only when
    /// every node that answers says it compacted them; a node that fails otherwise, restarting
    /// or unreachable, is asked again until the retry deadline).
    pub async fn read(&self, from: LogIndex, count_max: u32) -> Result<Vec<LogEntry>, ClientError> {
        self.read_with(from, count_max, false).await
    }

    /// [`Client::read`], linearizable: the node reached first learns the cluster's commit index
    /// as of the request (its leader confirms with a majority that it still leads) and answers
    /// once it can serve reads up to there, so the entries returned include every entry
    /// committed before this call, whichever replica answers (an append acknowledged to anyone
    /// before is there). Costs a round trip from the leader to a majority; a plain read may
    /// trail the leader by a few hundred microseconds on a follower.
    pub async fn read_linearizable(
        &self,
        from: LogIndex,
        count_max: u32,
    ) -> Result<Vec<LogEntry>, ClientError> {
        self.read_with(from, count_max, true).await
    }

    async fn read_with(
        &self,
        from: LogIndex,
        count_max: u32,
        linearizable: bool,
    ) -> Result<Vec<LogEntry>, ClientError> {
        let mut next = from;
        loop {
            let request = ClientRequest::Read(ReadRequest {
                log: self.config.log,
                from: next,
                count_max: count_max.max(1),
                size_bytes_max: 4 << 20,
                linearizable,
            });
            let answer = self
                .call(&request, |response| match response {
                    ClientResponse::Entries(batch) => Ok(Attempt::Done(batch.entries)),
                    other => common(other),
                })
                .await;
            let raw = match answer {
                Ok(raw) => raw,
                Err(ClientError::Refused { code: ErrorCode::Compacted, message }) => {
                    self.read_elsewhere(&request, message).await?
                }
                Err(e) => return Err(e),
            };
            let Some(last) = raw.last().map(|e| e.index) else { return Ok(Vec::new()) };
            let entries: Vec<LogEntry> = raw.iter().filter_map(LogEntry::from_entry).collect();
            if !entries.is_empty() {
                return Ok(entries);
            }
            next = last.next();
        }
    }

    /// A read that one node refused as compacted (`compacted`: what it said), asked of every
    /// node in turn: each node compacts its own log, so another replica may still hold the
    /// entries. Refused as compacted only when every node answered so; a node that failed
    /// otherwise (restarting, unreachable) may hold them, so the round is repeated until the
    /// retry deadline, and the last such failure is reported after it.
    async fn read_elsewhere(
        &self,
        request: &ClientRequest,
        compacted: String,
    ) -> Result<Vec<Entry>, ClientError> {
        let deadline = deadline_after(self.config.retry_deadline);
        let mut backoff = Duration::from_millis(5);
        loop {
            if self.is_closed() {
                return Err(ClientError::Closed);
            }
            let mut failure = None;
            for node in &self.config.nodes {
                let why = match self.ask(*node, request).await {
                    Ok(ClientResponse::Entries(batch)) => return Ok(batch.entries),
                    Ok(other) => match common::<()>(other) {
                        Ok(Attempt::Retry(why)) => format!("{node}: {why}"),
                        Ok(_) => format!("{node}: no leader to confirm the read"),
                        // Compacted there too, or a refusal no retry at that node fixes.
                        Err(e) => {
                            debug!("{node} did not serve the read: {e}");
                            continue;
                        }
                    },
                    // Says which node.
                    Err(ClientError::Unavailable(why)) => why,
                    Err(e) => format!("{node}: {e}"),
                };
                // A failure that may pass (a restart, an unreachable node): ask again.
                debug!("the read failed: {why}");
                failure = Some(why);
            }
            let Some(failure) = failure else {
                return Err(ClientError::Refused {
                    code: ErrorCode::Compacted,
                    message: compacted,
                });
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::Unavailable(failure));
            }
            pause(&mut backoff).await;
        }
    }

    /// The log's status on the node at `node`.
    pub async fn status_of(&self, node: SocketAddr) -> Result<LogStatus, ClientError> {
        let request = ClientRequest::Status(StatusRequest { log: self.config.log });
        match self.ask(node, &request).await? {
            ClientResponse::Status(status) => Ok(status),
            other => Err(refusal(other, "status")),
        }
    }

    /// Compacts the log on the node at `node`: that node forgets its entries before `before`,
    /// as far as it may (only entries committed, durable and applied there, and only whole
    /// segments; see [`crate::Log::compact`]). Returns the node's first index afterwards, which
    /// may be below `before`. Compaction is per node: ask each node whose disk should be
    /// trimmed. A follower that still needs the removed entries from a leader that compacted
    /// starts its log over after them (docs/design.md, "Compaction").
    pub async fn compact_on(
        &self,
        node: SocketAddr,
        before: LogIndex,
    ) -> Result<Compacted, ClientError> {
        let request = ClientRequest::Compact(CompactRequest { log: self.config.log, before });
        match self.ask(node, &request).await? {
            ClientResponse::Compacted(compacted) => Ok(compacted),
            other => Err(refusal(other, "compact")),
        }
    }

    /// One request to the node at `node`, on a connection of its own, without retries.
    async fn ask(
        &self,
        node: SocketAddr,
        request: &ClientRequest,
    ) -> Result<ClientResponse, ClientError> {
        let connect = self.endpoint.connect(node);
        let connection = match tokio::time::timeout(self.config.connect_timeout, connect).await {
            Ok(Ok(connection)) => connection,
            // No retry fixes it: said as a configuration error, as for requests to any node.
            Ok(Err(e)) if e.is_refused_by_tls() => {
                return Err(ClientError::Config(format!(
                    "{node} refused the TLS handshake or was refused by it (certificates of \
                     another cluster?): {e}"
                )))
            }
            Ok(Err(e)) => return Err(ClientError::Unavailable(format!("{node}: {e}"))),
            Err(_) => {
                return Err(ClientError::Unavailable(format!("{node}: connection timed out")))
            }
        };
        let response =
            tokio::time::timeout(self.config.attempt_timeout, connection.request(request))
                .await
                .map_err(|_| ClientError::Unavailable(format!("{node}: no answer in time")))?
                .map_err(|e| ClientError::Unavailable(format!("{node}: {e}")))?;
        connection.close();
        Ok(response)
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.config
    }

    pub(crate) fn endpoint(&self) -> &ClientEndpoint {
        &self.endpoint
    }

    /// Closes every connection. The closes leave with the client's tasks: a program that exits
    /// right after (its runtime gone) leaves its connections to the nodes' idle timeout; use
    /// [`Client::close_and_wait`] before exiting.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        self.endpoint.close();
    }

    /// Whether [`Client::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Closes every connection and waits until the nodes were told (their closes sent), at
    /// most [`CLOSE_WAIT_MAX`]. Call it before a program exits: a connection whose close never
    /// left is held by its node, with one of its client connection slots
    /// (`transport.client_connections_max`), until the idle timeout (10 s), so a program run
    /// many times a second could fill a node's slots with connections of runs long gone.
    pub async fn close_and_wait(&self) {
        self.close();
        // A node that does not answer is not waited for beyond the bound.
        let _ = tokio::time::timeout(CLOSE_WAIT_MAX, self.endpoint.wait_idle()).await;
    }
}

/// An answer to a one-node request ([`Client::status_of`], [`Client::compact_on`]) that is
/// not its success.
fn refusal(response: ClientResponse, what: &str) -> ClientError {
    match response {
        ClientResponse::Error(e) => ClientError::Refused { code: e.code, message: e.message },
        other => ClientError::Protocol(format!("{} to a {what} request", other.kind_name())),
    }
}

/// How every request reads the answers that are not its own success.
/// The position a node's answer gives a batch of `count` entries, when it can be one: that many
/// entries, from index 1 on, ending below u64::MAX (the index no entry holds). Anything else
/// does not answer the request; taken as it came, a start near u64::MAX made
/// [`BatchPosition::last_index`] overflow (a panic in the caller).
fn batch_position(answer: &AppendedBatch, count: u64) -> Result<BatchPosition, ClientError> {
    let first = answer.first_index.get();
    if u64::from(answer.count) != count || first == 0 || first.checked_add(count).is_none() {
        return Err(ClientError::Protocol(format!(
            "a batch of {count} entries answered as {} entries from index {first}",
            answer.count
        )));
    }
    Ok(BatchPosition { first_index: answer.first_index, count, term: answer.term })
}

fn common<T>(response: ClientResponse) -> Result<Attempt<T>, ClientError> {
    match response {
        ClientResponse::NotLeader(n) => Ok(Attempt::Redirect(n.leader.and_then(|l| l.client_addr))),
        ClientResponse::Error(e) => match e.code {
            ErrorCode::Overloaded
            | ErrorCode::ShuttingDown
            | ErrorCode::Poisoned
            | ErrorCode::Internal => Ok(Attempt::Retry(format!("{:?}: {}", e.code, e.message))),
            code => Err(ClientError::Refused { code, message: e.message }),
        },
        other => Err(ClientError::Protocol(format!("unexpected {} answer", other.kind_name()))),
    }
}

/// The instant `wait` from now; a wait too long to add to the clock (a configured deadline of
/// `u64::MAX` seconds, say) is a century, never an overflow.
pub(super) fn deadline_after(wait: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(wait).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Where to follow a leader hint from the node at `answered_by`. A node that names itself gives
/// its own listening address, which is the unspecified address when it listens on every
/// interface (`0.0.0.0:7000`): not a place another host can reach, so the address the client
/// reached that node at stands in for it, with the hint's port (a shard's).
fn reachable(hint: SocketAddr, answered_by: SocketAddr) -> SocketAddr {
    if hint.ip().is_unspecified() {
        SocketAddr::new(answered_by.ip(), hint.port())
    } else {
        hint
    }
}

/// Waits `backoff`, then doubles it up to 500 ms.
async fn pause(backoff: &mut Duration) {
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(Duration::from_millis(500));
}

#[cfg(test)]
mod tests {
    use super::{batch_position, ClientError, Current};
    use raftwal_wire::client::AppendedBatch;
    use raftwal_wire::types::{LogId, LogIndex, Term};

    /// A redirect to a node the client marked down sends the client there, not back to the
    /// follower that redirected it (which would redirect it again, with no pause between).
    #[test]
    fn a_redirect_to_a_node_marked_down_is_followed() {
        let nodes: Vec<std::net::SocketAddr> =
            (0..3).map(|i| ([127, 0, 0, 1], 7000 + i).into()).collect();
        let now = tokio::time::Instant::now();
        let mut current = Current::default();
        current.mark_down(nodes[2], now);
        assert_eq!(current.target(&nodes, now), nodes[0], "a node marked down is skipped");
        current.prefer(nodes[2]);
        assert_eq!(current.target(&nodes, now), nodes[2]);
        // A later failure of the leader marks it down again.
        current.mark_down(nodes[2], now);
        assert_eq!(current.target(&nodes, now), nodes[0]);
    }

    /// Requests in flight while no node can be reached wait for one connection attempt at a
    /// time; each still fails by its retry deadline (plus one connect timeout), not after every
    /// attempt queued ahead of it. (Found by a review: the last of 16 appends waited for 16
    /// connect timeouts in turn.)
    #[test]
    fn appends_while_no_node_answers_fail_by_their_deadline() {
        use super::fake_nodes::{client_of_a_silent_node, runtime};
        use super::ClientError;
        use bytes::Bytes;
        use std::time::Duration;
        let runtime = runtime();
        let _entered = runtime.enter();
        // Every handshake runs into the connect timeout.
        let (_dir, _silent, client) =
            client_of_a_silent_node(Duration::from_millis(300), Duration::from_secs(1));
        let started = tokio::time::Instant::now();
        let waits = runtime.block_on(async {
            let appends = (0..16).map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    let result = client.append(Bytes::from_static(b"x")).await;
                    (result, started.elapsed())
                })
            });
            let mut waits = Vec::new();
            for append in appends.collect::<Vec<_>>() {
                let (result, waited) = append.await.unwrap();
                assert!(matches!(result, Err(ClientError::Unavailable(_))), "{result:?}");
                waits.push(waited);
            }
            waits
        });
        // Deadline 1 s plus one connect timeout and a pause; 16 attempts in turn take 4.8 s.
        let longest = waits.iter().max().unwrap();
        assert!(*longest < Duration::from_millis(3000), "waited {longest:?}: {waits:?}");
    }

    /// A leader hint naming the unspecified address (a node listening on every interface that
    /// names itself) is followed at the address the client reached that node at; any other
    /// hint as it is.
    #[test]
    fn a_hint_of_the_unspecified_address_is_followed_where_the_node_was_reached() {
        use super::reachable;
        let at = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        assert_eq!(reachable(at("0.0.0.0:7001"), at("10.0.0.5:7000")), at("10.0.0.5:7001"));
        assert_eq!(reachable(at("[::]:7001"), at("[fd00::5]:7000")), at("[fd00::5]:7001"));
        assert_eq!(reachable(at("10.0.0.6:7000"), at("10.0.0.5:7000")), at("10.0.0.6:7000"));
    }

    /// Closing a client ends its requests and tails in flight with `Closed` at once, rather
    /// than leaving them to retry against an endpoint that can no longer connect until their
    /// deadline. (Found by a review: they waited out the whole retry deadline.)
    #[test]
    fn closing_a_client_ends_its_requests_and_tails_in_flight() {
        use super::fake_nodes::{client_of_a_silent_node, runtime};
        use super::ClientError;
        use bytes::Bytes;
        use std::time::Duration;
        let runtime = runtime();
        let _entered = runtime.enter();
        // Every attempt fails and is retried.
        let (_dir, _silent, client) =
            client_of_a_silent_node(Duration::from_millis(200), Duration::from_secs(60));
        runtime.block_on(async {
            let appender = client.clone();
            let append =
                tokio::spawn(async move { appender.append(Bytes::from_static(b"x")).await });
            let mut tail = client.subscribe(LogIndex(1));
            let tail = tokio::spawn(async move { tail.next().await.map(|e| e.index) });
            tokio::time::sleep(Duration::from_millis(500)).await;
            client.close();
            let bound = Duration::from_secs(10);
            let append = tokio::time::timeout(bound, append).await.expect("the append still waits");
            assert_eq!(append.unwrap(), Err(ClientError::Closed));
            let tail = tokio::time::timeout(bound, tail).await.expect("the tail still waits");
            assert_eq!(tail.unwrap(), Err(ClientError::Closed));
        });
    }

    /// Two nodes: the first compacted the entries a read wants, the second is restarting (it
    /// answers its first request with `ShuttingDown`) and then serves them. The read is refused
    /// as compacted only once every node said so: a node that could not answer may still hold
    /// the entries, and it does here.
    #[test]
    fn a_read_is_refused_as_compacted_only_when_every_node_said_so() {
        use super::fake_nodes::{certs, runtime, spawn_node};
        use super::{Client, ClientConfig};
        use bytes::Bytes;
        use raftwal_wire::client::{
            ClientError as WireError, ClientResponse, EntriesBatch, ErrorCode,
        };
        use raftwal_wire::transport::TransportEvent;
        use raftwal_wire::types::{Entry, EntryKind};
        let runtime = runtime();
        let _entered = runtime.enter();
        let dir = certs(2);
        let mut addrs = Vec::new();
        for node in [1, 2] {
            addrs.push(spawn_node(dir.path(), node, move |mut events| async move {
                let mut answered = 0;
                while let Some(event) = events.recv().await {
                    let TransportEvent::ClientRequest(event) = event else { continue };
                    answered += 1;
                    let error = |code, message: &str| {
                        ClientResponse::Error(WireError { code, message: message.to_string() })
                    };
                    let response = if node == 1 {
                        error(ErrorCode::Compacted, "compacted here")
                    } else if answered == 1 {
                        error(ErrorCode::ShuttingDown, "restarting")
                    } else {
                        let entry = Entry {
                            index: LogIndex(5),
                            term: Term(1),
                            kind: EntryKind::Normal,
                            data: Bytes::from_static(b"five"),
                        };
                        ClientResponse::Entries(EntriesBatch {
                            log: LogId(0),
                            entries: vec![entry],
                        })
                    };
                    event.responder.respond(&response).unwrap();
                }
            }));
        }
        let mut config = ClientConfig::new(addrs, dir.path(), LogId(0));
        config.retry_deadline = std::time::Duration::from_secs(10);
        let client = Client::new(config).unwrap();
        let read = runtime.block_on(client.read(LogIndex(5), 10));
        let indices = read.map(|entries| entries.iter().map(|e| e.index).collect::<Vec<_>>());
        assert_eq!(indices, Ok(vec![LogIndex(5)]), "the second node holds the entry");
    }

    /// A node's answer to a batch is taken only when it can be the batch's position; whatever
    /// is taken gives its last index without overflow.
    #[test]
    fn an_answer_that_cannot_be_the_batch_position_is_a_protocol_error() {
        let answer = |first: u64, count: u32| AppendedBatch {
            log: LogId(0),
            first_index: LogIndex(first),
            count,
            term: Term(1),
        };
        let cases = [
            (answer(7, 3), 3, true),
            (answer(u64::MAX - 3, 3), 3, true),
            (answer(u64::MAX - 2, 3), 3, false),
            (answer(u64::MAX, 2), 2, false),
            (answer(7, 2), 3, false),
            (answer(0, 1), 1, false),
        ];
        for (answer, count, taken) in cases {
            match batch_position(&answer, count) {
                Ok(position) => {
                    assert!(taken, "{answer:?} taken for a batch of {count}");
                    assert_eq!(position.count, count);
                    assert_eq!(position.last_index().get(), answer.first_index.get() + count - 1);
                }
                Err(ClientError::Protocol(_)) => assert!(!taken, "{answer:?} refused"),
                Err(other) => panic!("{answer:?}: {other}"),
            }
        }
    }
}
