//! The client side of the client protocol: an endpoint for a remote client, a connection to a
//! node with pipelined requests, and subscriptions.
//!
//! A [`ClientConnection`] keeps one session stream: requests are encoded synchronously into its
//! queue (payloads as chunks, not copies) and sent in order; a reader task matches answers to
//! requests by id, so any number of requests can be in flight at once and appends keep their
//! order. Each subscription has a stream of its own.
//!
//! Invariants: every request gets exactly one outcome (its answer, or a [`RequestError`] when the
//! connection fails); requests in flight are bounded by the session window (a request waits for
//! room rather than growing the queue).
//!
//! Limits: requests are encoded under the endpoint's [`FrameLimits`] (one larger is refused
//! before anything is sent; one within them but over the node's own limit is answered by the
//! node with an `InvalidRequest` error, alone, and the connection goes on); answers and subscription batches are read under the largest limit
//! there is ([`FrameLimits::largest`]), as a node may be configured with frames up to it
//! (`transport.frame_size_bytes_max`) and then holds entries, and answers reads, that need them.
//! A frame's body is allocated only once all of it arrived, so a node cannot make the client
//! hold more than it actually sent.

use super::close_code;
use super::queue::{PushError, SendQueue};
use super::quic::{client_config, open_endpoint, EndpointError, QuicTuning};
use super::reader::{read_error_text, write_error_text, FrameReader, ReadFrameError};
use crate::client::{
    ClientError, ClientRequest, ClientResponse, EntriesBatch, RequestId, SubscribeRequest,
};
use crate::codec::{decode_client_response, DecodeError, EncodeError, FrameEncoder, FrameLimits};
use crate::tls::names::cluster_name;
use crate::tls::{TlsIdentity, ALPN_CLIENT};
use crate::types::ClusterId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use thiserror::Error;
use tokio::sync::oneshot;

/// Why a connection could not be made.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The connection attempt could not start (bad address, endpoint closed).
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The handshake failed (unreachable node, certificate refused either way, timeout).
    #[error("handshake failed: {0}")]
    Handshake(#[from] quinn::ConnectionError),
}

impl ConnectError {
    /// Whether TLS refused the handshake (a certificate not signed by the expected CA, not valid
    /// for the name, or refused by the node), as opposed to an unreachable or slow node: a
    /// retry with the same certificates cannot succeed at that node.
    pub fn is_refused_by_tls(&self) -> bool {
        // TLS alerts travel as QUIC CRYPTO_ERROR codes, 0x100 plus the alert (RFC 9001, 4.8).
        let crypto = |code: quinn::TransportErrorCode| (0x100..0x200).contains(&u64::from(code));
        match self {
            ConnectError::Handshake(quinn::ConnectionError::TransportError(e)) => crypto(e.code),
            ConnectError::Handshake(quinn::ConnectionError::ConnectionClosed(close)) => {
                crypto(close.error_code)
            }
            _ => false,
        }
    }
}

/// Why a request got no answer.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    /// The connection is closed or failed; the request may or may not have been applied:
    /// retry it (with the same sequence number) on a new connection.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The node answered with bytes that are not a valid answer; the connection was closed.
    #[error("invalid answer from the node: {0}")]
    Protocol(DecodeError),
    /// The request cannot be encoded (too large for a frame); nothing was sent.
    #[error("cannot encode the request: {0}")]
    Encode(EncodeError),
    /// Subscribe requests go through [`ClientConnection::subscribe`].
    #[error("use ClientConnection::subscribe for Subscribe requests")]
    SubscribeNotARequest,
    /// The subscription ended with an error from the node.
    #[error("the node ended the subscription ({:?}): {}", .0.code, .0.message)]
    Server(ClientError),
}

/// A client's quinn endpoint with its TLS identity (a client certificate of the cluster).
#[derive(Debug)]
pub struct ClientEndpoint {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    cluster: ClusterId,
    limits: FrameLimits,
    session_window_bytes: usize,
}

impl ClientEndpoint {
    /// Opens an endpoint bound to `bind` (for example `0.0.0.0:0`). Call it inside a tokio runtime.
    pub fn open(
        identity: &TlsIdentity,
        bind: SocketAddr,
        tuning: &QuicTuning,
        limits: FrameLimits,
    ) -> Result<ClientEndpoint, EndpointError> {
        let config = client_config(identity, ALPN_CLIENT, tuning)?;
        let endpoint = open_endpoint(bind, None, tuning)?;
        Ok(ClientEndpoint {
            endpoint,
            config,
            cluster: identity.cluster(),
            limits,
            session_window_bytes: 4 * 1024 * 1024,
        })
    }

    /// Connects to the node at `addr`, which must present a node certificate of this cluster.
    pub async fn connect(&self, addr: SocketAddr) -> Result<ClientConnection, ConnectError> {
        let connection = self
            .endpoint
            .connect_with(self.config.clone(), addr, &cluster_name(self.cluster))?
            .await?;
        let (send, recv) = connection.open_bi().await?;
        let queue = SendQueue::new(self.limits, self.session_window_bytes);
        let writer = queue.clone();
        tokio::spawn(async move {
            // A failed write closes the queue; the reader then fails the pending requests.
            let _ = writer.run_writer(send, || {}).await;
        });
        let session = Arc::new(Session {
            queue,
            pending: Mutex::new(Pending { waiting: HashMap::new(), failed: None }),
            next_id: AtomicU64::new(1),
            send_turn: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(read_answers(
            session.clone(),
            connection.clone(),
            FrameReader::new(recv, FrameLimits::largest()),
        ));
        Ok(ClientConnection { connection, session, limits: self.limits })
    }

    /// Closes the endpoint and every connection on it. The closes leave with the endpoint's
    /// tasks: a program that exits right after should wait for [`ClientEndpoint::wait_idle`]
    /// first, or the nodes hold its connections until their idle timeout.
    pub fn close(&self) {
        self.endpoint.close(quinn::VarInt::from_u32(close_code::SHUTDOWN), b"client closing");
    }

    /// Waits until every connection of the endpoint is closed and its close was sent.
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}

#[derive(Debug)]
struct Pending {
    waiting: HashMap<RequestId, oneshot::Sender<Result<ClientResponse, RequestError>>>,
    failed: Option<RequestError>,
}

#[derive(Debug)]
struct Session {
    queue: Arc<SendQueue>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    /// Requests take turns to enter the send queue, first come first served (tokio's mutex
    /// queues its waiters in order): when the window is full, every waiter wakes at once, and
    /// without turns whichever ran first would be sent first.
    send_turn: tokio::sync::Mutex<()>,
}

impl Session {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        // Only map operations run under this lock.
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fail_all(&self, error: RequestError) {
        let mut pending = self.pending();
        pending.failed = Some(error.clone());
        for (_, tx) in pending.waiting.drain() {
            // A requester that gave up does not need the outcome.
            let _ = tx.send(Err(error.clone()));
        }
        drop(pending);
        self.queue.close();
    }
}

/// Forgets a request's pending entry when its requester stops waiting (its future is dropped,
/// by a timeout for example), so that requests given up on do not pile up; an answer that
/// arrives later is ignored.
struct GiveUp<'a> {
    session: &'a Session,
    id: RequestId,
}

impl Drop for GiveUp<'_> {
    fn drop(&mut self) {
        self.session.pending().waiting.remove(&self.id);
    }
}

/// A client's connection to one node.
#[derive(Debug)]
pub struct ClientConnection {
    connection: quinn::Connection,
    session: Arc<Session>,
    limits: FrameLimits,
}

impl ClientConnection {
    /// Sends `request` and waits for its answer. Many requests may be in flight at once (call
    /// from several tasks, or join the futures); they are sent in call order.
    pub async fn request(&self, request: &ClientRequest) -> Result<ClientResponse, RequestError> {
        if matches!(request, ClientRequest::Subscribe(_)) {
            return Err(RequestError::SubscribeNotARequest);
        }
        let id = RequestId(self.session.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.session.pending();
            if let Some(e) = &pending.failed {
                return Err(e.clone());
            }
            pending.waiting.insert(id, tx);
        }
        let _give_up = GiveUp { session: &self.session, id };
        {
            // Held until the request is queued, not while it is answered.
            let _turn = self.session.send_turn.lock().await;
            loop {
                match self.session.queue.push_with(false, |enc| enc.encode_request(id, request)) {
                    Ok(()) => break,
                    Err(PushError::WindowFull) => {
                        if !self.session.queue.wait_for_room().await {
                            break; // Closed: the reader reports why through the pending entry.
                        }
                    }
                    Err(PushError::Closed) => break,
                    Err(PushError::Encode(e)) => return Err(RequestError::Encode(e)),
                }
            }
        }
        match rx.await {
            Ok(outcome) => outcome,
            Err(_) => Err(RequestError::ConnectionLost("session ended".into())),
        }
    }

    /// Requests sent on this connection and still waiting for their answer.
    pub fn pending_requests(&self) -> usize {
        self.session.pending().waiting.len()
    }

    /// Opens a subscription: committed entries from `request.from` on, as they commit.
    pub async fn subscribe(&self, request: SubscribeRequest) -> Result<Subscription, RequestError> {
        let lost = |e: quinn::ConnectionError| RequestError::ConnectionLost(e.to_string());
        let (mut send, recv) = self.connection.open_bi().await.map_err(lost)?;
        let id = RequestId(self.session.next_id.fetch_add(1, Ordering::Relaxed));
        let mut enc = FrameEncoder::new(self.limits);
        enc.encode_request(id, &ClientRequest::Subscribe(request)).map_err(RequestError::Encode)?;
        let mut chunks = Vec::new();
        enc.take_chunks(&mut chunks);
        send.write_all_chunks(&mut chunks)
            .await
            .map_err(|e| RequestError::ConnectionLost(write_error_text(&e)))?;
        Ok(Subscription { _send: send, reader: FrameReader::new(recv, FrameLimits::largest()), id })
    }

    /// The node's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.connection.remote_address()
    }

    /// Closes the connection; requests in flight fail with [`RequestError::ConnectionLost`].
    pub fn close(&self) {
        self.connection.close(quinn::VarInt::from_u32(close_code::SHUTDOWN), b"client closing");
    }
}

impl Drop for ClientConnection {
    /// Dropping the connection closes it (and ends its subscriptions): its reader task would
    /// otherwise keep it open, kept alive by keep-alives, forever.
    fn drop(&mut self) {
        self.close();
    }
}

async fn read_answers(
    session: Arc<Session>,
    connection: quinn::Connection,
    mut reader: FrameReader,
) {
    let error = loop {
        let frame = match reader.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => break RequestError::ConnectionLost("the node ended the session".into()),
            Err(ReadFrameError::Decode(e)) => break RequestError::Protocol(e),
            Err(ReadFrameError::Stream(e)) => {
                break RequestError::ConnectionLost(read_error_text(&e))
            }
        };
        match decode_client_response(frame) {
            Ok((id, response)) => {
                let tx = session.pending().waiting.remove(&id);
                // An answer to no pending request is ignored: its requester may have given up.
                if let Some(tx) = tx {
                    let _ = tx.send(Ok(response));
                }
            }
            Err(e) => break RequestError::Protocol(e),
        }
    };
    if let RequestError::Protocol(e) = &error {
        connection
            .close(quinn::VarInt::from_u32(close_code::PROTOCOL_ERROR), e.to_string().as_bytes());
    }
    session.fail_all(error);
}

/// A stream of committed entries from a node.
#[derive(Debug)]
pub struct Subscription {
    // Kept open for the subscription's life; dropping it with the reader ends the subscription.
    _send: quinn::SendStream,
    reader: FrameReader,
    id: RequestId,
}

impl Subscription {
    /// The next batch, `Ok(None)` when the node ended the subscription cleanly, or an error (the
    /// node's, for example `SubscriberLagged`, or the connection's).
    pub async fn next(&mut self) -> Result<Option<EntriesBatch>, RequestError> {
        let frame = match self.reader.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(None),
            Err(ReadFrameError::Decode(e)) => return Err(RequestError::Protocol(e)),
            Err(ReadFrameError::Stream(e)) => {
                return Err(RequestError::ConnectionLost(read_error_text(&e)))
            }
        };
        match decode_client_response(frame).map_err(RequestError::Protocol)? {
            (id, _) if id != self.id => Err(RequestError::Protocol(DecodeError::InvalidValue {
                what: "subscription request id",
                value: id.get(),
            })),
            (_, ClientResponse::Entries(batch)) => Ok(Some(batch)),
            (_, ClientResponse::Error(e)) => Err(RequestError::Server(e)),
            (_, other) => Err(RequestError::Protocol(DecodeError::InvalidValue {
                what: "subscription frame",
                value: u64::from(match other {
                    ClientResponse::NotLeader(_) => 1u8,
                    _ => 0u8,
                }),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientError, ErrorCode};

    #[test]
    fn a_subscription_ended_by_the_node_says_why_in_words() {
        let error = RequestError::Server(ClientError {
            code: ErrorCode::UnknownLog,
            message: "this node has no log 5".into(),
        });
        assert_eq!(
            error.to_string(),
            "the node ended the subscription (UnknownLog): this node has no log 5"
        );
    }
}
