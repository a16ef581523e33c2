//! The server side of the client protocol: accepting client connections and streams, delivering
//! requests to the shard's loop, and carrying its answers and subscription batches back.
//!
//! A client connection must present a client certificate of this cluster
//! (`client.c<cluster>.raftwal`). Each bidirectional stream is either a *session* (any number of
//! Append, AppendBatch, Read and Status requests, answered by request id, possibly out of order)
//! or a *subscription* (exactly one Subscribe request, then a stream of Entries frames).
//!
//! Invariants:
//! 1. Every delivered request gets exactly one answer: [`Responder::respond`], or, when the
//!    responder is dropped unanswered, an `Internal` error sent on its behalf.
//! 2. Requests a connection has waiting for an answer hold credit from its budget; when it is
//!    spent, or a stream's answers are not being read (its window is full), the stream's requests
//!    are not read any more, so a client cannot make the node buffer without bound.
//! 3. A subscription buffers at most its window: [`SubscriptionSink::try_send`] refuses beyond it
//!    and [`SubscriptionSink::ready`] says when to go on.
//! 4. Bytes that are not valid requests close the whole connection with the reason; other clients
//!    and peers are not affected.

use super::queue::{PushError, SendQueue};
use super::reader::{FrameReader, ReadFrameError};
use super::{bump, close_code, Shared, TransportEvent};
use crate::client::{
    ClientError, ClientRequest, ClientResponse, ErrorCode, RequestId, SubscribeRequest,
};
use crate::codec::{decode_client_request, EncodeError};
use crate::tls::check_peer_name;
use crate::tls::names::client_name;
use crate::types::{Entry, LogId};
use std::net::SocketAddr;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

/// Why an answer could not be sent.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RespondError {
    /// The client's stream or connection is gone; nothing more can reach it.
    #[error("the client is gone")]
    Closed,
    /// The answer cannot be encoded (too large for a frame); an `Internal` error is sent instead.
    #[error("cannot encode the answer: {0}")]
    Encode(EncodeError),
}

/// Why a subscription batch was not queued.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SinkError {
    /// The window is full: wait for [`SubscriptionSink::ready`], then send from where this batch
    /// started (read it from the log again rather than holding it).
    #[error("the subscription's window is full")]
    Full,
    /// The subscriber is gone: drop the subscription.
    #[error("the subscriber is gone")]
    Closed,
    /// The batch cannot be encoded (too large for a frame, not consecutive): send smaller ones.
    #[error("cannot encode the batch: {0}")]
    Encode(EncodeError),
}

/// One client stream's outgoing side; finishing it cleanly once the last holder is gone.
#[derive(Debug)]
struct StreamOut {
    queue: Arc<SendQueue>,
}

impl Drop for StreamOut {
    fn drop(&mut self) {
        self.queue.finish();
    }
}

/// A client request delivered to the shard's loop.
#[derive(Debug)]
pub struct ClientRequestEvent {
    /// The request (never a Subscribe: that arrives as [`TransportEvent::Subscribe`]).
    pub request: ClientRequest,
    /// The handle to answer it with.
    pub responder: Responder,
}

/// Answers one client request. Holds the request's credit until it is answered or dropped.
#[derive(Debug)]
pub struct Responder {
    out: Arc<StreamOut>,
    id: RequestId,
    remote: SocketAddr,
    answered: bool,
    _credit: OwnedSemaphorePermit,
}

impl Responder {
    /// The id the client gave the request.
    pub fn request_id(&self) -> RequestId {
        self.id
    }

    /// The client's address, for logs.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// Bytes of answers queued on this request's stream and not yet taken by QUIC (for metrics
    /// and tests).
    pub fn queued_answer_bytes(&self) -> usize {
        self.out.queue.in_flight_bytes()
    }

    /// Sends the answer. Never blocks; the answer is queued even when the stream's window is
    /// full (the number of unanswered requests is already bounded by the connection's budget).
    pub fn respond(mut self, response: &ClientResponse) -> Result<(), RespondError> {
        let result = self.out.queue.push_with(true, |enc| enc.encode_response(self.id, response));
        match result {
            Ok(()) => {
                self.answered = true;
                Ok(())
            }
            Err(PushError::Encode(e)) => Err(RespondError::Encode(e)),
            Err(PushError::Closed | PushError::WindowFull) => {
                self.answered = true;
                Err(RespondError::Closed)
            }
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            let error = ClientResponse::Error(ClientError {
                code: ErrorCode::Internal,
                message: "the node dropped the request without an answer".into(),
            });
            // The client may already be gone; then there is no one left to tell.
            let _ = self.out.queue.push_with(true, |enc| enc.encode_response(self.id, &error));
        }
    }
}

/// A client subscription delivered to the shard's loop.
#[derive(Debug)]
pub struct SubscribeEvent {
    /// What the client asked for.
    pub request: SubscribeRequest,
    /// Where committed entries go.
    pub sink: SubscriptionSink,
}

/// The outgoing side of one subscription: batches of committed entries, bounded by a window.
#[derive(Debug)]
pub struct SubscriptionSink {
    out: Arc<StreamOut>,
    id: RequestId,
    log: LogId,
}

impl SubscriptionSink {
    /// Queues a batch of consecutive committed entries, without copying their payloads.
    pub fn try_send(&self, entries: &[Entry]) -> Result<(), SinkError> {
        self.out
            .queue
            .push_with(false, |enc| enc.encode_entries(self.id, self.log, entries))
            .map_err(|e| match e {
                PushError::WindowFull => SinkError::Full,
                PushError::Closed => SinkError::Closed,
                PushError::Encode(e) => SinkError::Encode(e),
            })
    }

    /// Waits until the window has room again.
    pub async fn ready(&self) -> Result<(), SinkError> {
        if self.out.queue.wait_for_room().await {
            Ok(())
        } else {
            Err(SinkError::Closed)
        }
    }

    /// Whether a batch would be accepted now.
    pub fn has_room(&self) -> bool {
        self.out.queue.has_room()
    }

    /// Whether the subscriber is gone.
    pub fn is_closed(&self) -> bool {
        self.out.queue.is_closed()
    }

    /// Ends the subscription, with an error for the subscriber when given (for example
    /// [`ErrorCode::SubscriberLagged`]); the stream is finished once everything queued is sent.
    pub fn end(self, error: Option<ClientError>) {
        if let Some(error) = error {
            let response = ClientResponse::Error(error);
            // A gone subscriber needs no explanation.
            let _ = self.out.queue.push_with(true, |enc| enc.encode_response(self.id, &response));
        }
    }
}

/// Serves one client connection until it closes.
pub(super) async fn serve(shared: Arc<Shared>, connection: quinn::Connection) {
    let remote = connection.remote_address();
    if let Err(e) = check_peer_name(&connection, &client_name(shared.cluster)) {
        bump(&shared.counters.connections_refused);
        warn!("refused client at {remote}: {e}");
        connection.close(quinn::VarInt::from_u32(close_code::REFUSED), e.to_string().as_bytes());
        return;
    }
    let frame_max = shared.config.frame_limits.frame_size_bytes_max() as usize;
    let budget = Arc::new(Semaphore::new(shared.config.client_inbound_budget_bytes.max(frame_max)));
    loop {
        match connection.accept_bi().await {
            Ok((send, recv)) => {
                tokio::spawn(serve_stream(
                    shared.clone(),
                    connection.clone(),
                    send,
                    recv,
                    budget.clone(),
                ));
            }
            Err(e) => {
                debug!("client at {remote} is gone: {e}");
                return;
            }
        }
    }
}

fn protocol_error(shared: &Shared, connection: &quinn::Connection, reason: String) {
    bump(&shared.counters.protocol_errors);
    warn!(
        "closing client connection from {}: protocol error: {reason}",
        connection.remote_address()
    );
    connection.close(quinn::VarInt::from_u32(close_code::PROTOCOL_ERROR), reason.as_bytes());
}

async fn serve_stream(
    shared: Arc<Shared>,
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    budget: Arc<Semaphore>,
) {
    let config = &shared.config;
    let remote = connection.remote_address();
    let mut reader = FrameReader::new(recv, config.frame_limits);
    let mut send = Some(send);
    let mut out: Option<Arc<StreamOut>> = None;
    let mut subscribed = false;
    loop {
        let frame = match reader.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(ReadFrameError::Decode(e)) => {
                return protocol_error(&shared, &connection, e.to_string())
            }
            Err(ReadFrameError::Stream(e)) => {
                debug!("client stream from {remote} ended: {e}");
                return;
            }
        };
        let cost = u32::try_from(frame.body().len().max(1)).unwrap_or(u32::MAX);
        let (id, request) = match decode_client_request(frame) {
            Ok(r) => r,
            Err(e) => return protocol_error(&shared, &connection, e.to_string()),
        };
        if subscribed {
            return protocol_error(
                &shared,
                &connection,
                "request after Subscribe on its stream".into(),
            );
        }
        let is_subscribe = matches!(request, ClientRequest::Subscribe(_));
        if is_subscribe && out.is_some() {
            return protocol_error(&shared, &connection, "Subscribe on a session stream".into());
        }
        let out = match (&out, send.take()) {
            (Some(out), _) => out.clone(),
            (None, Some(stream)) => {
                let window = if is_subscribe {
                    config.subscription_window_bytes
                } else {
                    config.client_response_window_bytes
                };
                let queue = SendQueue::new(config.frame_limits, window);
                let writer = queue.clone();
                tokio::spawn(async move {
                    if let Err(e) = writer.run_writer(stream, || {}).await {
                        debug!("client stream to {remote} failed: {e}");
                    }
                });
                let created = Arc::new(StreamOut { queue });
                out = Some(created.clone());
                created
            }
            (None, None) => unreachable!("the send side is taken exactly when `out` is set"),
        };
        if let ClientRequest::Subscribe(request) = request {
            subscribed = true;
            let sink = SubscriptionSink { out, id, log: request.log };
            shared.emit(TransportEvent::Subscribe(SubscribeEvent { request, sink }));
            continue;
        }
        // Stop reading while the client does not read its answers, or while its connection has
        // too many requests waiting for one.
        if !out.queue.wait_for_room().await {
            return;
        }
        let credit = tokio::select! {
            credit = budget.clone().acquire_many_owned(cost) => match credit {
                Ok(c) => c,
                Err(_) => return, // The semaphore is never closed.
            },
            _ = connection.closed() => return,
        };
        let responder = Responder { out, id, remote, answered: false, _credit: credit };
        shared.emit(TransportEvent::ClientRequest(ClientRequestEvent { request, responder }));
    }
}
