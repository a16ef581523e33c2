//! The QUIC transport of one shard: peer links for Raft traffic and the server side of the
//! client protocol, on one quinn endpoint, delivered to the shard's event loop.
//!
//! Owns the shard's quinn endpoint, one long-lived connection per peer node, the send queues and
//! their windows, the stream readers, and the accept path for client connections. It does not
//! interpret Raft or client requests: it hands them to the shard's loop as [`TransportEvent`]s
//! and sends what the loop gives it.
//!
//! # Threading
//! A [`Transport`] lives on one thread's tokio runtime, normally the shard's current-thread
//! runtime (a multi-thread runtime works too). [`Transport::bind`] must be called inside it.
//! [`Transport::send`] is synchronous and never blocks: it encodes into the peer's queue and wakes
//! that queue's writer task, so the shard's loop calls it straight from its step code. Incoming
//! traffic arrives on [`TransportEvents`], a channel the loop selects on next to its disk
//! completions and timers.
//!
//! # Peer links
//! Of two nodes, the one with the lower id dials and redials (with exponential backoff); the
//! other accepts. The connection carries two unidirectional streams each way: *control* (votes,
//! heartbeats, every response, TimeoutNow, ReadIndex) with a higher send priority, and *bulk*
//! (AppendEntries, in order). Each stream starts with a [`Hello`](crate::codec::Hello) naming
//! cluster and node; the acceptor checks it against its own cluster id and against the name in
//! the dialer's certificate, the dialer checks the acceptor's certificate during the TLS
//! handshake (it asks for the name of the node it dials). A refused or misbehaving peer gets its
//! connection closed with a reason, which is logged on both sides; every other link goes on.
//!
//! # Invariants
//! 1. A message is sent on the link to `message.to` only; messages to a peer with no live link are
//!    dropped at once ([`SendError::NotConnected`]), never queued: Raft retries.
//! 2. Each stream's queue holds at most its window (plus one frame); a refused send is reported
//!    ([`SendError::WindowFull`]) and later followed by [`TransportEvent::Writable`].
//! 3. Incoming messages wait in the event channel only while they hold credit from a byte budget
//!    (bulk and control separately), for their frame's size plus what decoding added
//!    ([`Message::decoded_extra_bytes`]), at most the whole budget; when it is spent, the stream readers stop reading, QUIC flow
//!    control stops the sender, and the sender's window fills: backpressure end to end.
//! 4. Every message delivered came from the authenticated peer (`from` is the peer's node id,
//!    `to` is ours) on the stream its kind belongs to; anything else closes the connection.

mod budget;
mod client_conn;
mod link;
mod queue;
mod quic;
mod reader;
mod serve_client;

pub use budget::ClientLimits;
pub use client_conn::{ClientConnection, ClientEndpoint, ConnectError, RequestError, Subscription};
pub use quic::{
    client_config, open_endpoint, open_node_endpoint, server_config, EndpointError, QuicTuning,
    MTU_UPPER_BOUND_MAX_BYTES,
};
pub use serve_client::{
    read_answer_body_bytes_max, ClientRequestEvent, RespondError, Responder, SinkError,
    SubscribeEvent, SubscriptionSink, READ_ANSWER_ENTRY_OVERHEAD_BYTES, READ_ANSWER_FIXED_BYTES,
    READ_ANSWER_PAYLOAD_BYTES_MAX, SUBSCRIPTION_HELD_BYTES,
};

use crate::codec::{EncodeError, FrameLimits};
use crate::message::{Message, MessageBody};
use crate::tls::{IdentityError, TlsIdentity, ALPN_CLIENT, ALPN_PEER};
use crate::types::{ClusterId, NodeId};
use link::Link;
use queue::PushError;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// Application close codes carried in QUIC CONNECTION_CLOSE frames, with a reason text.
pub mod close_code {
    /// The node is shutting down.
    pub const SHUTDOWN: u32 = 0;
    /// The remote sent bytes that are not valid frames, or frames out of place.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// The remote is not who it may be: wrong cluster, certificate not matching its claim, or a
    /// peer removed from the configuration ([`super::Transport::remove_peer`]).
    pub const REFUSED: u32 = 2;
    /// A newer connection from the same peer replaced this one.
    pub const REPLACED: u32 = 3;
    /// The remote did not complete the link set-up in time.
    pub const SETUP_TIMEOUT: u32 = 4;
    /// The node serves as many client connections as it may; try again later or elsewhere.
    pub const BUSY: u32 = 5;
}

/// The transport's settings.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// This node's id.
    pub node: NodeId,
    /// The UDP address of this shard's endpoint.
    pub listen_addr: SocketAddr,
    /// The bound on every frame's size, sent or received.
    pub frame_limits: FrameLimits,
    /// Window of a peer's bulk (AppendEntries) queue. Set it at least as large as the Raft core's
    /// in-flight byte limit per follower, so that the core's own flow control acts first.
    pub bulk_window_bytes: usize,
    /// Window of a peer's control queue.
    pub control_window_bytes: usize,
    /// Bytes of received AppendEntries that may wait in the event channel (all peers).
    pub inbound_bulk_budget_bytes: usize,
    /// Bytes of received control messages that may wait in the event channel (all peers).
    pub inbound_control_budget_bytes: usize,
    /// Bytes of requests one client connection may have waiting for an answer.
    pub client_inbound_budget_bytes: usize,
    /// Bytes one client connection may make the node hold, all its streams together: requests
    /// waiting for an answer, Subscribes waiting for the shard, the room reserved for their
    /// answers, queued answers and subscription batches. Nothing more is read or queued for it while it holds this much.
    pub client_connection_memory_bytes: usize,
    /// Node-wide client limits (connections, bytes held for all of them): give every shard's
    /// config a clone of the same value, so that they share the counts.
    pub client_limits: ClientLimits,
    /// Window of one client stream's responses (requests stop being read while it is full).
    pub client_response_window_bytes: usize,
    /// Window of one subscription's stream.
    pub subscription_window_bytes: usize,
    /// The largest entry data (payload and, for a client's entry, its 16-byte tag) the node
    /// stores: a Read's answer always carries its first entry, so the room reserved for the
    /// answer counts one entry of this size ([`read_answer_body_bytes_max`]).
    pub entry_data_bytes_max: usize,
    /// Time allowed for the TLS handshake plus the Hello exchange.
    pub setup_timeout: Duration,
    /// Handshakes in progress above which a connection attempt from an address QUIC has not
    /// validated is answered with a stateless Retry: the sender must show it receives at its
    /// address before the endpoint keeps any state for it, so a flood from spoofed addresses
    /// costs one packet each and holds nothing.
    pub handshakes_before_retry: usize,
    /// Handshakes in progress above which connection attempts are refused outright. A
    /// connection on the peer protocol counts until its Hellos are read (at most
    /// `setup_timeout`), a client's until its TLS handshake is done.
    pub handshakes_max: usize,
    /// First pause before redialing a peer; doubled after each failure.
    pub reconnect_backoff_min: Duration,
    /// Longest pause before redialing a peer.
    pub reconnect_backoff_max: Duration,
    /// QUIC parameters.
    pub quic: QuicTuning,
}

impl TransportConfig {
    /// Default settings for node `node` listening on `listen_addr`.
    pub fn new(node: NodeId, listen_addr: SocketAddr) -> TransportConfig {
        TransportConfig {
            node,
            listen_addr,
            frame_limits: FrameLimits::default(),
            bulk_window_bytes: 8 * 1024 * 1024,
            control_window_bytes: 1024 * 1024,
            inbound_bulk_budget_bytes: 64 * 1024 * 1024,
            inbound_control_budget_bytes: 4 * 1024 * 1024,
            client_inbound_budget_bytes: 32 * 1024 * 1024,
            client_connection_memory_bytes: 64 * 1024 * 1024,
            client_limits: ClientLimits::new(1024, 1 << 30),
            client_response_window_bytes: 4 * 1024 * 1024,
            subscription_window_bytes: 4 * 1024 * 1024,
            entry_data_bytes_max: (1 << 20) + crate::client::TAG_SIZE_BYTES,
            setup_timeout: Duration::from_secs(5),
            handshakes_before_retry: 64,
            handshakes_max: 1024,
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
            quic: QuicTuning::default(),
        }
    }
}

/// Why the transport could not start.
#[derive(Debug, Error)]
pub enum BindError {
    /// The identity could not be turned into a TLS configuration.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The endpoint could not be opened.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

/// Why a message was not sent. In every case the message was dropped; Raft's own retries
/// (heartbeats, probes, re-sent AppendEntries) recover.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SendError {
    /// `message.to` was never added with [`Transport::add_peer`] and never connected.
    #[error("unknown peer {0:?}")]
    UnknownPeer(NodeId),
    /// No live connection to the peer right now (it is being dialed, or refused us).
    #[error("peer {0:?} is not connected")]
    NotConnected(NodeId),
    /// The peer's queue is full; a [`TransportEvent::Writable`] follows once it drains, or once
    /// its link is gone (closed, or replaced by a newer connection: then look again).
    #[error("send window to peer {0:?} is full")]
    WindowFull(NodeId),
    /// The message cannot be encoded (too large for a frame, entries not consecutive).
    #[error("cannot encode message: {0}")]
    Encode(EncodeError),
}

/// A Raft message received from a peer.
///
/// It holds credit from the inbound budget until dropped (or until [`InboundMessage::into_message`]),
/// so that a shard loop that falls behind slows the senders down instead of buffering without
/// bound.
#[derive(Debug)]
pub struct InboundMessage {
    /// The message; `message.from` is the authenticated peer.
    pub message: Message,
    _credit: OwnedSemaphorePermit,
}

impl InboundMessage {
    /// Takes the message and returns its credit.
    pub fn into_message(self) -> Message {
        self.message
    }
}

/// What the transport delivers to the shard's loop.
#[derive(Debug)]
pub enum TransportEvent {
    /// A Raft message from a peer. Its `log` may belong to another shard: forward it.
    Message(InboundMessage),
    /// A link to the peer is up; sends to it are accepted.
    PeerConnected(NodeId),
    /// The link to the peer is gone; sends to it fail until it is back. Raft may treat the peer
    /// as unreachable (probe it).
    PeerDisconnected(NodeId),
    /// A send to the peer was refused because its window was full, and the window has drained
    /// or its link is gone (a send then goes to the link that replaced it, or fails with
    /// [`SendError::NotConnected`]).
    Writable(NodeId),
    /// A client request other than Subscribe, with the handle to answer it.
    ClientRequest(ClientRequestEvent),
    /// A client subscription, with the sink to stream committed entries into.
    Subscribe(SubscribeEvent),
}

/// The receiving end of a transport's events.
#[derive(Debug)]
pub struct TransportEvents {
    rx: mpsc::UnboundedReceiver<TransportEvent>,
}

impl TransportEvents {
    /// The next event; `None` once the transport is closed and every event was taken.
    pub async fn recv(&mut self) -> Option<TransportEvent> {
        self.rx.recv().await
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<TransportEvent> {
        self.rx.try_recv().ok()
    }
}

/// Counters of the transport's unusual events, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Connections refused or closed for identity: TLS failures, wrong cluster, wrong name.
    pub connections_refused: u64,
    /// Connections closed because the remote sent invalid frames, or (a peer) did not finish
    /// setting its link up in time.
    pub protocol_errors: u64,
    /// Client connections closed at once because the node served its maximum
    /// ([`close_code::BUSY`]).
    pub clients_refused_busy: u64,
    /// Connection attempts answered with a Retry because many handshakes were in progress
    /// ([`TransportConfig::handshakes_before_retry`]).
    pub handshake_retries: u64,
    /// Connection attempts refused because [`TransportConfig::handshakes_max`] handshakes were
    /// in progress.
    pub handshakes_refused: u64,
    /// Peer links that came up (each reconnect counts).
    pub links_established: u64,
    /// Messages dropped because the peer was not connected.
    pub dropped_not_connected: u64,
    /// Messages dropped because the peer's window was full.
    pub dropped_window_full: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections_refused: AtomicU64,
    protocol_errors: AtomicU64,
    clients_refused_busy: AtomicU64,
    handshake_retries: AtomicU64,
    handshakes_refused: AtomicU64,
    links_established: AtomicU64,
    dropped_not_connected: AtomicU64,
    dropped_window_full: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug)]
struct PeerEntry {
    addr: Option<SocketAddr>,
    link: Option<Arc<Link>>,
    /// Removed from the configuration ([`Transport::remove_peer`]): its connections are
    /// refused and nothing is sent to it until it is added again.
    removed: bool,
    /// The dial loop that owns this peer, if this node dials it. A loop whose id is no longer
    /// here (the peer was removed, or removed and added again) stops.
    dialer: Option<u64>,
}

impl PeerEntry {
    /// A peer known only from its connection, or before it is added.
    fn unknown() -> PeerEntry {
        PeerEntry { addr: None, link: None, removed: false, dialer: None }
    }
}

/// State shared by the transport handle and its tasks.
#[derive(Debug)]
struct Shared {
    config: TransportConfig,
    cluster: ClusterId,
    endpoint: quinn::Endpoint,
    peer_client_config: quinn::ClientConfig,
    events: mpsc::UnboundedSender<TransportEvent>,
    peers: Mutex<HashMap<NodeId, PeerEntry>>,
    bulk_credit: Arc<Semaphore>,
    control_credit: Arc<Semaphore>,
    /// The budgets' sizes (each at least one frame).
    bulk_credit_bytes: usize,
    control_credit_bytes: usize,
    counters: Counters,
    shutdown: watch::Sender<bool>,
    next_link_id: AtomicU64,
    /// TLS handshakes (and Hello exchanges) in progress on this endpoint.
    handshakes: AtomicUsize,
}

impl Shared {
    fn peers(&self) -> MutexGuard<'_, HashMap<NodeId, PeerEntry>> {
        // Only map operations run under this lock; none can leave the map half-updated.
        self.peers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn emit(&self, event: TransportEvent) {
        // The loop dropped its receiver only when it is shutting down; events are moot then.
        let _ = self.events.send(event);
    }

    fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// A shard's QUIC transport. Cloning gives another handle to the same transport.
#[derive(Clone, Debug)]
pub struct Transport {
    shared: Arc<Shared>,
}

impl Transport {
    /// Opens the endpoint on `config.listen_addr` with `identity` (a node certificate of the
    /// cluster) and starts accepting peers and clients. Call it inside the shard's tokio runtime.
    pub fn bind(
        config: TransportConfig,
        identity: &TlsIdentity,
    ) -> Result<(Transport, TransportEvents), BindError> {
        let server = server_config(identity, &[ALPN_PEER, ALPN_CLIENT], &config.quic)?;
        let peer_client_config = client_config(identity, ALPN_PEER, &config.quic)?;
        let endpoint = open_node_endpoint(config.listen_addr, server, &config.quic, identity)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let frame_max = config.frame_limits.frame_size_bytes_max() as usize;
        // A budget smaller than one frame could never admit that frame: round it up.
        let bulk = config.inbound_bulk_budget_bytes.max(frame_max);
        let control = config.inbound_control_budget_bytes.max(frame_max);
        let shared = Arc::new(Shared {
            cluster: identity.cluster(),
            endpoint,
            peer_client_config,
            events: tx,
            peers: Mutex::new(HashMap::new()),
            bulk_credit: Arc::new(Semaphore::new(bulk)),
            control_credit: Arc::new(Semaphore::new(control)),
            bulk_credit_bytes: bulk,
            control_credit_bytes: control,
            counters: Counters::default(),
            shutdown: watch::channel(false).0,
            next_link_id: AtomicU64::new(1),
            handshakes: AtomicUsize::new(0),
            config,
        });
        tokio::spawn(link::accept_loop(shared.clone()));
        Ok((Transport { shared }, TransportEvents { rx }))
    }

    /// The endpoint's bound address (useful when binding port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.shared.endpoint.local_addr()
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.shared.config.node
    }

    /// This node's cluster.
    pub fn cluster(&self) -> ClusterId {
        self.shared.cluster
    }

    /// Makes `peer` (reachable at `addr`, the same shard's endpoint on that node) a destination.
    /// Panics if `peer` is this node (a configuration validated before start never does that).
    /// If this node's id is the lower one, it dials the peer now and redials whenever the link
    /// drops; otherwise it waits for the peer to dial. Adding a known peer updates its address.
    pub fn add_peer(&self, peer: NodeId, addr: SocketAddr) {
        assert_ne!(peer, self.shared.config.node, "a node is not its own peer");
        let dial = self.shared.config.node < peer;
        let mut peers = self.shared.peers();
        let entry = peers.entry(peer).or_insert_with(PeerEntry::unknown);
        entry.addr = Some(addr);
        entry.removed = false;
        if dial && entry.dialer.is_none() {
            let id = self.shared.next_link_id.fetch_add(1, Ordering::Relaxed);
            entry.dialer = Some(id);
            tokio::spawn(link::dial_loop(self.shared.clone(), peer, id));
        }
    }

    /// Forgets `peer`: closes its link, stops dialing it, and refuses its connections (sends
    /// to it fail with [`SendError::UnknownPeer`]) until it is added again.
    pub fn remove_peer(&self, peer: NodeId) {
        let link = {
            let mut peers = self.shared.peers();
            let entry = peers.entry(peer).or_insert_with(PeerEntry::unknown);
            entry.removed = true;
            entry.addr = None;
            entry.dialer = None;
            entry.link.take()
        };
        if let Some(link) = link {
            link.close(close_code::REFUSED, "peer removed from the configuration");
        }
    }

    /// Whether a link to `peer` is up.
    pub fn is_connected(&self, peer: NodeId) -> bool {
        self.shared.peers().get(&peer).is_some_and(|e| e.link.is_some())
    }

    /// Queues `message` for `message.to` without blocking. AppendEntries go on the bulk stream,
    /// everything else on the control stream. Entry payloads are not copied.
    pub fn send(&self, message: &Message) -> Result<(), SendError> {
        let peer = message.to;
        let link = {
            let peers = self.shared.peers();
            let entry =
                peers.get(&peer).filter(|e| !e.removed).ok_or(SendError::UnknownPeer(peer))?;
            entry.link.clone()
        };
        let Some(link) = link else {
            bump(&self.shared.counters.dropped_not_connected);
            return Err(SendError::NotConnected(peer));
        };
        let queue = match message.body {
            MessageBody::AppendEntries(_) | MessageBody::LogStart(_) => &link.bulk,
            _ => &link.control,
        };
        queue.push_with(false, |enc| enc.encode_message(message)).map_err(|e| match e {
            PushError::WindowFull => {
                bump(&self.shared.counters.dropped_window_full);
                SendError::WindowFull(peer)
            }
            PushError::Closed => {
                bump(&self.shared.counters.dropped_not_connected);
                SendError::NotConnected(peer)
            }
            PushError::Encode(e) => SendError::Encode(e),
        })
    }

    /// Bytes queued for `peer`'s bulk stream and not yet accepted by QUIC (0 when not connected).
    pub fn bulk_in_flight_bytes(&self, peer: NodeId) -> usize {
        let link = self.shared.peers().get(&peer).and_then(|e| e.link.clone());
        link.map_or(0, |l| l.bulk.in_flight_bytes())
    }

    /// The transport's counters.
    pub fn stats(&self) -> TransportStats {
        let c = &self.shared.counters;
        TransportStats {
            connections_refused: c.connections_refused.load(Ordering::Relaxed),
            protocol_errors: c.protocol_errors.load(Ordering::Relaxed),
            clients_refused_busy: c.clients_refused_busy.load(Ordering::Relaxed),
            handshake_retries: c.handshake_retries.load(Ordering::Relaxed),
            handshakes_refused: c.handshakes_refused.load(Ordering::Relaxed),
            links_established: c.links_established.load(Ordering::Relaxed),
            dropped_not_connected: c.dropped_not_connected.load(Ordering::Relaxed),
            dropped_window_full: c.dropped_window_full.load(Ordering::Relaxed),
        }
    }

    /// Closes every connection (peers see [`close_code::SHUTDOWN`]) and stops dialing. Await
    /// [`Transport::wait_idle`] to let the close reach the peers before dropping the runtime.
    pub fn close(&self) {
        self.shared.shutdown.send_replace(true);
        let links: Vec<Arc<Link>> =
            self.shared.peers().values_mut().filter_map(|e| e.link.take()).collect();
        for link in links {
            link.close(close_code::SHUTDOWN, "node shutting down");
        }
        self.shared
            .endpoint
            .close(quinn::VarInt::from_u32(close_code::SHUTDOWN), b"node shutting down");
    }

    /// Waits until every connection is closed and its close was sent.
    pub async fn wait_idle(&self) {
        self.shared.endpoint.wait_idle().await;
    }
}
