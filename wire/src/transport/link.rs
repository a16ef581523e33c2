//! Peer links: dialing with backoff, accepting, the Hello exchange, and the stream tasks of a
//! live link. Also the endpoint's accept loop, which sends client connections to
//! [`serve_client`](super::serve_client).
//!
//! Set-up of a link, dialer D (lower node id) and acceptor A:
//! 1. D connects with ALPN `raftwal-peer/1`, asking for A's certificate name
//!    `n<A>.c<cluster>.raftwal`; the TLS handshake verifies both chains against the cluster CA.
//! 2. D opens its control and bulk streams, each starting with Hello{cluster, D, kind}.
//! 3. A reads both Hellos, refuses (closing with [`close_code::REFUSED`]) unless the cluster is
//!    its own and D's certificate carries `n<D>.c<cluster>.raftwal`; then A registers the link
//!    and opens its own two streams with Hellos.
//! 4. D reads A's Hellos, checks they name A in D's cluster, and registers the link.
//!
//! Invariant: a link is registered for a node only after its identity was checked, and it is
//! unregistered (queues closed, PeerDisconnected emitted) exactly once, by the task that
//! registered it, when its connection ends.

use super::queue::SendQueue;
use super::reader::{FrameReader, ReadFrameError};
use super::{bump, close_code, serve_client, InboundMessage, PeerEntry, Shared, TransportEvent};
use crate::codec::{decode_peer_frame, FrameLimits, Hello, PeerFrame, StreamKind};
use crate::message::MessageBody;
use crate::tls::names::node_name;
use crate::tls::{check_peer_name, ALPN_CLIENT, ALPN_PEER};
use crate::types::NodeId;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use thiserror::Error;
use tracing::{debug, info, warn};

/// Send priority of the control stream over the bulk stream (quinn sends higher first).
const CONTROL_PRIORITY: i32 = 1;

/// A live, verified connection to a peer.
#[derive(Debug)]
pub(super) struct Link {
    id: u64,
    connection: quinn::Connection,
    pub(super) control: Arc<SendQueue>,
    pub(super) bulk: Arc<SendQueue>,
}

impl Link {
    pub(super) fn close(&self, code: u32, reason: &str) {
        self.control.close();
        self.bulk.close();
        self.connection.close(quinn::VarInt::from_u32(code), reason.as_bytes());
    }
}

/// Why a link could not be set up or ended.
#[derive(Debug, Error)]
enum LinkError {
    /// The remote is not who it may be; closed with REFUSED.
    #[error("refused: {0}")]
    Refused(String),
    /// The remote broke the protocol; closed with PROTOCOL_ERROR.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The connection failed or was closed by the remote.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The set-up took longer than the configured timeout.
    #[error("link set-up timed out")]
    Timeout,
}

impl LinkError {
    /// Closes `connection` with the code and reason this error calls for, counting and logging it.
    fn close(&self, shared: &Shared, connection: &quinn::Connection, who: &str) {
        let (code, counter) = match self {
            LinkError::Refused(_) => (close_code::REFUSED, &shared.counters.connections_refused),
            LinkError::Protocol(_) => {
                (close_code::PROTOCOL_ERROR, &shared.counters.protocol_errors)
            }
            LinkError::Timeout => (close_code::SETUP_TIMEOUT, &shared.counters.protocol_errors),
            LinkError::Connection(e) => {
                if let quinn::ConnectionError::ApplicationClosed(close) = e {
                    if close.error_code == quinn::VarInt::from_u32(close_code::REFUSED) {
                        bump(&shared.counters.connections_refused);
                        warn!(
                            "link to {who}: refused by the remote: {}",
                            String::from_utf8_lossy(&close.reason)
                        );
                        return;
                    }
                }
                debug!("link to {who} ended: {e}");
                return;
            }
        };
        bump(counter);
        warn!("closing connection to {who}: {self}");
        connection.close(quinn::VarInt::from_u32(code), self.to_string().as_bytes());
    }
}

/// Accepts connections until the endpoint closes.
pub(super) async fn accept_loop(shared: Arc<Shared>) {
    while let Some(incoming) = shared.endpoint.accept().await {
        tokio::spawn(handle_incoming(shared.clone(), incoming));
    }
}

/// One connection being set up (its TLS handshake, then a peer's Hellos), counted in
/// `Shared::handshakes` until dropped.
struct HandshakeSlot(Arc<Shared>);

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.handshakes.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle_incoming(shared: Arc<Shared>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let in_progress = shared.handshakes.fetch_add(1, Ordering::Relaxed);
    let slot = HandshakeSlot(shared.clone());
    if in_progress >= shared.config.handshakes_before_retry
        && !incoming.remote_address_validated()
        && incoming.may_retry()
    {
        // Many handshakes at once: before holding any state, make the sender show that it
        // receives at its address (a spoofed flood never answers the Retry).
        bump(&shared.counters.handshake_retries);
        if let Err(e) = incoming.retry() {
            debug!("could not answer {remote} with a Retry: {e}");
        }
        return;
    }
    if in_progress >= shared.config.handshakes_max {
        bump(&shared.counters.handshakes_refused);
        debug!("refused connection from {remote}: {in_progress} handshakes in progress");
        incoming.refuse();
        return;
    }
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => {
            debug!("dropped incoming connection from {remote}: {e}");
            return;
        }
    };
    let deadline = setup_deadline(&shared);
    let connection = match tokio::time::timeout_at(deadline, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            // Certificates from another CA, or no certificate, end here.
            bump(&shared.counters.connections_refused);
            warn!("refused connection from {remote}: TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            bump(&shared.counters.connections_refused);
            warn!("refused connection from {remote}: TLS handshake timed out");
            return;
        }
    };
    let alpn = connection
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    match alpn.as_deref() {
        // A peer's set-up counts until its Hellos are read (a certificate holder that never
        // sends them holds a slot until the set-up deadline, not an uncounted connection); a
        // client's ends with the handshake (client connections have their own bound).
        Some(p) if p == ALPN_PEER => accept_peer(shared, connection, deadline, slot).await,
        Some(p) if p == ALPN_CLIENT => {
            drop(slot);
            serve_client::serve(shared, connection).await
        }
        _ => {
            // rustls only completes a handshake on an ALPN we offered; keep the refusal anyway.
            bump(&shared.counters.connections_refused);
            warn!("refused connection from {remote}: no known ALPN protocol");
            connection.close(quinn::VarInt::from_u32(close_code::REFUSED), b"unknown ALPN");
        }
    }
}

/// Reads the Hello that opens a peer stream.
async fn read_hello(reader: &mut FrameReader) -> Result<Hello, LinkError> {
    match reader.next().await {
        Ok(Some(frame)) => match decode_peer_frame(frame) {
            Ok(PeerFrame::Hello(hello)) => Ok(hello),
            Ok(PeerFrame::Message(m)) => Err(LinkError::Protocol(format!(
                "stream opened with {} instead of Hello",
                m.kind_name()
            ))),
            Err(e) => Err(LinkError::Protocol(e.to_string())),
        },
        Ok(None) => Err(LinkError::Protocol("stream ended before its Hello".into())),
        Err(ReadFrameError::Decode(e)) => Err(LinkError::Protocol(e.to_string())),
        Err(ReadFrameError::Stream(quinn::ReadError::ConnectionLost(e))) => Err(e.into()),
        Err(ReadFrameError::Stream(e)) => Err(LinkError::Protocol(format!("stream failed: {e}"))),
    }
}

/// Accepts the remote's two streams and reads their Hellos: (control, bulk).
async fn accept_streams(
    shared: &Shared,
    connection: &quinn::Connection,
) -> Result<((Hello, FrameReader), (Hello, FrameReader)), LinkError> {
    let limits = shared.config.frame_limits;
    let mut control = None;
    let mut bulk = None;
    for _ in 0..2 {
        let stream = connection.accept_uni().await?;
        // The Hello is 17 bytes and comes before the sender's name is checked (a client
        // certificate passes TLS on this protocol too): a larger first frame is refused at its
        // header rather than buffered up to the frame limit.
        let mut reader = FrameReader::new(stream, FrameLimits::smallest());
        let hello = read_hello(&mut reader).await?;
        reader.set_limits(limits);
        let slot = match hello.stream {
            StreamKind::Control => &mut control,
            StreamKind::Bulk => &mut bulk,
        };
        if slot.is_some() {
            return Err(LinkError::Protocol(format!("two {:?} streams", hello.stream)));
        }
        *slot = Some((hello, reader));
    }
    match (control, bulk) {
        (Some(c), Some(b)) if c.0.node == b.0.node && c.0.cluster == b.0.cluster => Ok((c, b)),
        _ => Err(LinkError::Protocol("the two stream Hellos disagree".into())),
    }
}

/// Opens this side's two streams and queues their Hellos; returns the queues.
async fn open_streams(
    shared: &Arc<Shared>,
    connection: &quinn::Connection,
    peer: NodeId,
) -> Result<(Arc<SendQueue>, Arc<SendQueue>), LinkError> {
    let config = &shared.config;
    let control = SendQueue::new(config.frame_limits, config.control_window_bytes);
    let bulk = SendQueue::new(config.frame_limits, config.bulk_window_bytes);
    for (queue, kind) in [(&control, StreamKind::Control), (&bulk, StreamKind::Bulk)] {
        let stream = connection.open_uni().await?;
        if kind == StreamKind::Control {
            // Fails only when the stream is already closed, which the writer will report.
            let _ = stream.set_priority(CONTROL_PRIORITY);
        }
        let hello = Hello { cluster: shared.cluster, node: config.node, stream: kind };
        queue
            .push_with(true, |enc| enc.encode_hello(&hello))
            .map_err(|e| LinkError::Protocol(format!("cannot queue Hello: {e:?}")))?;
        let writer_shared = shared.clone();
        let q = queue.clone();
        tokio::spawn(async move {
            let on_writable = || writer_shared.emit(TransportEvent::Writable(peer));
            if let Err(e) = q.run_writer(stream, on_writable).await {
                debug!("{kind:?} stream to {peer:?} ended: {e}");
            }
        });
    }
    Ok((control, bulk))
}

/// Registers a verified link, runs its readers until the connection ends, then unregisters it.
async fn run_link(
    shared: Arc<Shared>,
    connection: quinn::Connection,
    peer: NodeId,
    queues: (Arc<SendQueue>, Arc<SendQueue>),
    readers: (FrameReader, FrameReader),
) {
    let id = shared.next_link_id.fetch_add(1, Ordering::Relaxed);
    let link =
        Arc::new(Link { id, connection: connection.clone(), control: queues.0, bulk: queues.1 });
    let replaced = {
        let mut peers = shared.peers();
        let entry = peers.entry(peer).or_insert_with(PeerEntry::unknown);
        if entry.removed {
            drop(peers);
            bump(&shared.counters.connections_refused);
            warn!(
                "refused peer {peer:?} at {}: removed from the configuration",
                connection.remote_address()
            );
            link.close(close_code::REFUSED, "peer removed from the configuration");
            return;
        }
        entry.link.replace(link.clone())
    };
    if let Some(old) = replaced {
        old.close(close_code::REPLACED, "replaced by a newer connection");
    }
    if shared.is_shutting_down() {
        link.close(close_code::SHUTDOWN, "node shutting down");
    }
    bump(&shared.counters.links_established);
    info!("link to peer {peer:?} at {} is up", connection.remote_address());
    shared.emit(TransportEvent::PeerConnected(peer));

    let (control_reader, bulk_reader) = readers;
    let control = tokio::spawn(read_stream(
        shared.clone(),
        connection.clone(),
        peer,
        StreamKind::Control,
        control_reader,
    ));
    let bulk = tokio::spawn(read_stream(
        shared.clone(),
        connection.clone(),
        peer,
        StreamKind::Bulk,
        bulk_reader,
    ));
    let reason = connection.closed().await;
    // The readers end on their own once the connection is closed; wait so that no message of
    // this link is delivered after PeerDisconnected.
    let _ = control.await;
    let _ = bulk.await;
    link.control.close();
    link.bulk.close();
    let unregistered = {
        let mut peers = shared.peers();
        match peers.get_mut(&peer) {
            Some(entry) if entry.link.as_ref().is_some_and(|l| l.id == id) => {
                entry.link = None;
                true
            }
            _ => false,
        }
    };
    info!("link to peer {peer:?} is down: {reason}");
    if unregistered {
        shared.emit(TransportEvent::PeerDisconnected(peer));
    }
}

/// Delivers the messages of one of a peer's streams until it ends; closes the connection on a
/// protocol violation.
async fn read_stream(
    shared: Arc<Shared>,
    connection: quinn::Connection,
    peer: NodeId,
    kind: StreamKind,
    mut reader: FrameReader,
) {
    let me = shared.config.node;
    let who = format!("peer {peer:?} at {}", connection.remote_address());
    let error = loop {
        let frame = match reader.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => break LinkError::Protocol(format!("peer finished its {kind:?} stream")),
            Err(ReadFrameError::Decode(e)) => break LinkError::Protocol(e.to_string()),
            Err(ReadFrameError::Stream(quinn::ReadError::ConnectionLost(e))) => break e.into(),
            Err(ReadFrameError::Stream(e)) => {
                break LinkError::Protocol(format!("{kind:?} stream failed: {e}"))
            }
        };
        let cost = frame.body().len().max(1);
        let message = match decode_peer_frame(frame) {
            Ok(PeerFrame::Message(m)) => m,
            Ok(PeerFrame::Hello(_)) => break LinkError::Protocol("a second Hello".into()),
            Err(e) => break LinkError::Protocol(e.to_string()),
        };
        if message.from != peer || message.to != me {
            break LinkError::Protocol(format!(
                "message from {:?} to {:?} on the link between {peer:?} and {me:?}",
                message.from, message.to
            ));
        }
        let is_bulk =
            matches!(message.body, MessageBody::AppendEntries(_) | MessageBody::LogStart(_));
        if is_bulk != (kind == StreamKind::Bulk) {
            break LinkError::Protocol(format!("{} on the {kind:?} stream", message.kind_name()));
        }
        let (budget, capacity) = if is_bulk {
            (&shared.bulk_credit, shared.bulk_credit_bytes)
        } else {
            (&shared.control_credit, shared.control_credit_bytes)
        };
        // The frame and what decoding added to it (a frame of many tiny entries takes several
        // times its size once decoded), but never more than the whole budget, which was
        // rounded up to at least one frame: a message always fits an empty budget.
        let cost = cost.saturating_add(message.decoded_extra_bytes()).min(capacity);
        let cost = u32::try_from(cost).unwrap_or(u32::MAX);
        let credit = tokio::select! {
            credit = budget.clone().acquire_many_owned(cost) => match credit {
                Ok(c) => c,
                Err(_) => return, // The semaphore is never closed; nothing to deliver to.
            },
            _ = connection.closed() => return,
        };
        shared.emit(TransportEvent::Message(InboundMessage { message, _credit: credit }));
    };
    reader.stop(close_code::PROTOCOL_ERROR);
    error.close(&shared, &connection, &who);
}

/// When a link's set-up (the TLS handshake and the Hellos together) must be done by.
fn setup_deadline(shared: &Shared) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(shared.config.setup_timeout)
        .unwrap_or(now + std::time::Duration::from_secs(3600))
}

async fn accept_peer(
    shared: Arc<Shared>,
    connection: quinn::Connection,
    deadline: tokio::time::Instant,
    slot: HandshakeSlot,
) {
    let remote = connection.remote_address();
    let who = format!("peer at {remote}");
    let setup = async {
        let ((hello, control_reader), (_, bulk_reader)) =
            accept_streams(&shared, &connection).await?;
        if hello.cluster != shared.cluster {
            return Err(LinkError::Refused(format!(
                "peer says it belongs to cluster {:016x}, this node to cluster {:016x}",
                hello.cluster.get(),
                shared.cluster.get()
            )));
        }
        if hello.node == shared.config.node {
            return Err(LinkError::Refused(format!(
                "peer claims this node's own id {:?}",
                hello.node
            )));
        }
        check_peer_name(&connection, &node_name(shared.cluster, hello.node))
            .map_err(|e| LinkError::Refused(format!("peer claims to be {:?}: {e}", hello.node)))?;
        let queues = open_streams(&shared, &connection, hello.node).await?;
        Ok((hello.node, queues, (control_reader, bulk_reader)))
    };
    let setup = tokio::time::timeout_at(deadline, setup).await;
    drop(slot);
    match setup {
        Ok(Ok((peer, queues, readers))) => {
            run_link(shared, connection, peer, queues, readers).await
        }
        Ok(Err(e)) => e.close(&shared, &connection, &who),
        Err(_) => LinkError::Timeout.close(&shared, &connection, &who),
    }
}

/// Dials `peer` and keeps a link to it until shutdown or until the peer is removed. `id`
/// identifies this loop in the peer's entry.
pub(super) async fn dial_loop(shared: Arc<Shared>, peer: NodeId, id: u64) {
    let config = &shared.config;
    let mut backoff = config.reconnect_backoff_min;
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if shared.is_shutting_down() {
            return;
        }
        let addr = match shared.peers().get(&peer) {
            Some(PeerEntry { addr: Some(addr), dialer: Some(d), .. }) if *d == id => *addr,
            _ => return, // Removed, or another loop took over.
        };
        match dial_once(&shared, peer, addr).await {
            Ok(()) => backoff = config.reconnect_backoff_min,
            Err(e) => {
                debug!("dialing peer {peer:?} at {addr} failed: {e}; retrying in {backoff:?}")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(config.reconnect_backoff_max);
    }
}

/// One connection attempt; returns `Ok` after a link was up and ended.
async fn dial_once(shared: &Arc<Shared>, peer: NodeId, addr: SocketAddr) -> Result<(), String> {
    let who = format!("peer {peer:?} at {addr}");
    let name = node_name(shared.cluster, peer);
    let connecting = shared
        .endpoint
        .connect_with(shared.peer_client_config.clone(), addr, &name)
        .map_err(|e| e.to_string())?;
    let deadline = setup_deadline(shared);
    let connection = match tokio::time::timeout_at(deadline, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(quinn::ConnectionError::TransportError(e))) => {
            // A certificate that is not the expected node of this cluster (another CA, another
            // cluster id) fails the handshake here, on this side.
            bump(&shared.counters.connections_refused);
            warn!("TLS handshake with {who} failed: {e}");
            return Err(e.to_string());
        }
        Ok(Err(quinn::ConnectionError::ConnectionClosed(close)))
            if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
        {
            // The peer's endpoint turned the attempt away before any TLS: it is stopping, or
            // holds its maximum of handshakes. Nothing is wrong with the certificates, and the
            // next attempt may succeed (a rolling restart meets this at every stop).
            debug!("{who} is not accepting connections (stopping, or too many handshakes)");
            return Err(close.to_string());
        }
        Ok(Err(quinn::ConnectionError::ConnectionClosed(close))) => {
            // The peer refused this node's certificate during the handshake.
            bump(&shared.counters.connections_refused);
            warn!("TLS handshake with {who} refused by the peer: {close}");
            return Err(close.to_string());
        }
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("TLS handshake timed out".into()),
    };
    let setup = async {
        let queues = open_streams(shared, &connection, peer).await?;
        let ((hello, control_reader), (_, bulk_reader)) =
            accept_streams(shared, &connection).await?;
        if hello.cluster != shared.cluster || hello.node != peer {
            return Err(LinkError::Refused(format!(
                "dialed node {peer:?} of cluster {:016x}, it answered as node {:?} of cluster {:016x}",
                shared.cluster.get(),
                hello.node,
                hello.cluster.get()
            )));
        }
        Ok((queues, (control_reader, bulk_reader)))
    };
    match tokio::time::timeout_at(deadline, setup).await {
        Ok(Ok((queues, readers))) => {
            run_link(shared.clone(), connection, peer, queues, readers).await;
            Ok(())
        }
        Ok(Err(e)) => {
            e.close(shared, &connection, &who);
            Err(e.to_string())
        }
        Err(_) => {
            LinkError::Timeout.close(shared, &connection, &who);
            Err("link set-up timed out".into())
        }
    }
}
