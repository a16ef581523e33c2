//! The server side of the client protocol: accepting client connections and streams, delivering
//! requests to the shard's loop, and carrying its answers and subscription batches back.
//!
//! A client connection must present a client certificate of this cluster
//! (`client.c<cluster>.raftwal`). Each bidirectional stream is either a *session* (any number of
//! Append, AppendBatch, Read, Status and Compact requests, answered by request id, possibly out
//! of order) or a *subscription* (exactly one Subscribe request, then a stream of Entries
//! frames).
//!
//! Invariants:
//! 1. Every delivered request gets exactly one answer: [`Responder::respond`], or, when the
//!    responder is dropped unanswered, an `Internal` error sent on its behalf.
//! 2. Requests a connection has waiting for an answer hold credit from its budget, and room for
//!    their answer in their stream's window ([`answer_bytes_max`]: for a Read what it asked for,
//!    up to a frame, a small bound for the rest); when either is spent (a client that does not read its answers fills
//!    the window), the stream's requests are not read any more, so a client cannot make the node
//!    buffer without bound: a session stream's queued answers stay within its window plus one
//!    answer.
//! 3. A subscription buffers at most its window: [`SubscriptionSink::try_send`] refuses beyond it
//!    and [`SubscriptionSink::ready`] says when to go on.
//! 4. Bytes that are not valid requests close the whole connection with the reason; other clients
//!    and peers are not affected. A session's request whose frame is over the node's frame
//!    limit (a client configured with larger frames), and at most the largest frame any
//!    configuration allows, is no such bytes: it is answered alone with `InvalidRequest` as soon
//!    as its request id is read, and the rest of its frame is read and dropped, never buffered;
//!    the requests after it on the stream are served as usual.
//! 5. Beyond the per-stream bounds, everything a connection makes the node hold (requests
//!    waiting for an answer with the room reserved for it, queued answers and subscription
//!    batches, and each Subscribe waiting for the shard, [`SUBSCRIPTION_HELD_BYTES`]) is charged to the connection's budget and the node's (`budget.rs`): no request is
//!    admitted and no batch queued while either is full (a stream may hold the one request it
//!    read while it waits for admission, uncharged: it cannot know the budgets' room before it
//!    reads, and charging it first would let waiting streams hold the budget among themselves). A node serves at most
//!    `ClientLimits::connections_max` client connections; one more is closed with
//!    [`close_code::BUSY`] and the reason.

use super::budget::{ByteBudget, ClientCharge, HeldCharge};
use super::queue::{PushError, SendQueue};
use super::reader::{FrameReader, ReadFrameError};
use super::{bump, close_code, Shared, TransportEvent};
use crate::client::{
    ClientError, ClientRequest, ClientResponse, ErrorCode, ReadRequest, RequestId, SubscribeRequest,
};
use crate::codec::{
    decode_client_request, Assembled, EncodeError, FrameType, OversizedFrame,
    FRAME_HEADER_SIZE_BYTES, FRAME_SIZE_BYTES_CEILING,
};
use crate::tls::check_peer_name;
use crate::tls::names::client_name;
use crate::types::{Entry, LogId};
use std::borrow::Cow;
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

/// The longest error message sent in an answer; longer ones are cut (at a character boundary)
/// so that every answer but a Read's fits [`SMALL_ANSWER_BYTES_MAX`].
pub(crate) const ANSWER_MESSAGE_BYTES_MAX: usize = 1024;

/// The most an answer other than a Read's takes in its stream's queue: the frame header, the
/// request id and the largest fixed fields (a `Status`, a `NotLeader` with its hint), or an
/// error with a message of at most [`ANSWER_MESSAGE_BYTES_MAX`] bytes.
const SMALL_ANSWER_BYTES_MAX: usize = 2048;

/// Bytes counted for a Subscribe waiting for the shard (its queue, its writer task, its QUIC
/// stream), generously: inbound credit, and a charge to its connection's and the node's memory
/// budgets, from its admission until the shard takes it.
pub const SUBSCRIPTION_HELD_BYTES: u32 = 4096;

/// Payload bytes a Read's answer carries at most besides its first entry, whatever the Read
/// asked for.
pub const READ_ANSWER_PAYLOAD_BYTES_MAX: usize = 4 << 20;

/// Bytes counted for each entry of a Read's answer besides its data: more than the entry run's
/// 13 bytes of framing, so that the count is an upper bound.
pub const READ_ANSWER_ENTRY_OVERHEAD_BYTES: usize = 32;

/// Bytes counted for a Read's answer besides its entries (request id, log, first index, entry
/// count), generously.
pub const READ_ANSWER_FIXED_BYTES: usize = 64;

/// The most the body of the answer to `read` may take: at most `count_max` entries with their
/// framing, their data within the size the Read asked for (at most
/// [`READ_ANSWER_PAYLOAD_BYTES_MAX`]) or one entry of up to `entry_data_bytes_max`, whichever is
/// more, and never more than a frame, nor less than any other answer. The node reserves room for
/// this much when it admits the Read, and cuts the answer to it (counting each entry's data
/// plus [`READ_ANSWER_ENTRY_OVERHEAD_BYTES`], and [`READ_ANSWER_FIXED_BYTES`] once, and keeping
/// at least one entry): a Read that asks for little holds little of its stream's window and of
/// the connection's and node's budgets.
pub fn read_answer_body_bytes_max(
    read: &ReadRequest,
    frame_size_bytes_max: u32,
    entry_data_bytes_max: usize,
) -> usize {
    let data = (read.size_bytes_max as usize).min(READ_ANSWER_PAYLOAD_BYTES_MAX);
    let data = data.max(entry_data_bytes_max);
    let framing = (read.count_max as usize).saturating_mul(READ_ANSWER_ENTRY_OVERHEAD_BYTES);
    READ_ANSWER_FIXED_BYTES
        .saturating_add(framing)
        .saturating_add(data)
        .min(frame_size_bytes_max as usize)
        .max(SMALL_ANSWER_BYTES_MAX)
}

/// The most the answer to `request` can take in its stream's queue, reserved when the request is
/// admitted: a Read's answer is a batch of entries ([`read_answer_body_bytes_max`]), any other
/// answer is small.
pub(crate) fn answer_bytes_max(
    request: &ClientRequest,
    frame_size_bytes_max: u32,
    entry_data_bytes_max: usize,
) -> usize {
    match request {
        ClientRequest::Read(read) => {
            FRAME_HEADER_SIZE_BYTES
                + read_answer_body_bytes_max(read, frame_size_bytes_max, entry_data_bytes_max)
        }
        _ => SMALL_ANSWER_BYTES_MAX,
    }
}

/// The response as sent: an error message cut to [`ANSWER_MESSAGE_BYTES_MAX`] bytes.
fn bounded(response: &ClientResponse) -> Cow<'_, ClientResponse> {
    match response {
        ClientResponse::Error(e) if e.message.len() > ANSWER_MESSAGE_BYTES_MAX => {
            let mut cut = ANSWER_MESSAGE_BYTES_MAX - 3;
            while !e.message.is_char_boundary(cut) {
                cut -= 1;
            }
            let message = format!("{}...", &e.message[..cut]);
            Cow::Owned(ClientResponse::Error(ClientError { code: e.code, message }))
        }
        other => Cow::Borrowed(other),
    }
}

/// Answers one client request. Holds the request's credit, and the room reserved for its
/// answer, until it is answered or dropped.
#[derive(Debug)]
pub struct Responder {
    out: Arc<StreamOut>,
    id: RequestId,
    remote: SocketAddr,
    answered: bool,
    reserved_bytes: usize,
    _credit: OwnedSemaphorePermit,
    /// The request and its answer's room, charged to the connection's and the node's budgets.
    _held: HeldCharge,
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

    /// Sends the answer. Never blocks; the answer always has room in the stream's queue (it was
    /// reserved when the request was admitted). An error message longer than
    /// [`ANSWER_MESSAGE_BYTES_MAX`] is cut.
    pub fn respond(mut self, response: &ClientResponse) -> Result<(), RespondError> {
        let response = bounded(response);
        let result = self.out.queue.push_with(true, |enc| enc.encode_response(self.id, &response));
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
        // The answer, if any, is queued and counted by the queue itself now.
        self.out.queue.release(self.reserved_bytes);
    }
}

/// A client subscription delivered to the shard's loop.
#[derive(Debug)]
pub struct SubscribeEvent {
    /// What the client asked for.
    pub request: SubscribeRequest,
    /// Where committed entries go.
    pub sink: SubscriptionSink,
    /// Credit from the connection's inbound budget, and [`SUBSCRIPTION_HELD_BYTES`] charged to
    /// its and the node's memory budgets, while the event waits for the shard: given back when
    /// the shard has taken the request and the sink out of it. (A live subscription holds no
    /// charge of its own: QUIC's stream limit bounds how many a connection has, and a charge
    /// held for its whole life could fill a budget with nothing queued, which no reading would
    /// ever empty.)
    _credit: OwnedSemaphorePermit,
    _held: HeldCharge,
}

/// The outgoing side of one subscription: batches of committed entries, bounded by a window.
///
/// Dropping it (the last holder: a task waiting for room may share it) ends the subscription as
/// [`SubscriptionSink::end`] without an error does: the stream is finished once what is queued
/// is sent, and the subscriber sees a clean end.
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
    /// [`ErrorCode::SubscriberLagged`]); the stream is finished once everything queued is sent,
    /// also while other holders of the sink (a task waiting for room) still keep it: nothing
    /// more is queued after this ([`SubscriptionSink::try_send`] answers `Closed`), and
    /// [`SubscriptionSink::ready`] fails once the stream is finished.
    pub fn end(&self, error: Option<ClientError>) {
        if let Some(error) = error {
            let response = ClientResponse::Error(error);
            // A gone subscriber needs no explanation.
            let _ = self.out.queue.push_with(true, |enc| enc.encode_response(self.id, &response));
        }
        self.out.queue.finish();
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
    let limits = &shared.config.client_limits;
    let Some(slot) = limits.try_connect() else {
        bump(&shared.counters.clients_refused_busy);
        let reason = format!(
            "the node serves its maximum of {} client connections; try again later or another node",
            limits.connections_max()
        );
        warn!("refused client at {remote}: {reason}");
        connection.close(quinn::VarInt::from_u32(close_code::BUSY), reason.as_bytes());
        return;
    };
    let frame_max = shared.config.frame_limits.frame_size_bytes_max() as usize;
    let budget_bytes = shared.config.client_inbound_budget_bytes.max(frame_max);
    let budget = Arc::new(Semaphore::new(budget_bytes));
    let charge = ClientCharge {
        connection: Arc::new(ByteBudget::new(shared.config.client_connection_memory_bytes)),
        node: limits.node_budget(),
    };
    loop {
        match connection.accept_bi().await {
            Ok((send, recv)) => {
                tokio::spawn(serve_stream(
                    shared.clone(),
                    connection.clone(),
                    send,
                    recv,
                    budget.clone(),
                    budget_bytes,
                    charge.clone(),
                ));
            }
            Err(e) => {
                if e == quinn::ConnectionError::TimedOut {
                    slot.timed_out();
                }
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
    budget_bytes: usize,
    charge: ClientCharge,
) {
    let config = &shared.config;
    let remote = connection.remote_address();
    let mut reader = FrameReader::new(recv, config.frame_limits);
    // A request over this node's frame limit may come from a working client configured with
    // larger frames: it is refused alone (below), its body dropped as it arrives. A frame
    // declaring more than any configuration allows comes from no working client.
    reader.skip_oversized(FRAME_SIZE_BYTES_CEILING);
    let mut send = Some(send);
    // A session stream's outgoing side, shared with the responders of its requests. A
    // subscription's is not kept here: its sink is its only holder, so that the stream finishes
    // once the node drops the sink, ended or not (this task reads on only to refuse a second
    // request, and may wait for the client's end of the stream as long as the connection lives).
    let mut session_out: Option<Arc<StreamOut>> = None;
    let mut subscribed = false;
    loop {
        let frame = match reader.next_item().await {
            Ok(Some(Assembled::Frame(frame))) => frame,
            Ok(Some(Assembled::Oversized(oversized))) => {
                // Only a session's requests are refused alone; anything else this large (a
                // Subscribe, an answer's frame type, a request after a Subscribe) is no valid
                // frame here.
                if subscribed || !is_session_request(oversized.frame_type()) {
                    return protocol_error(&shared, &connection, oversized.error().to_string());
                }
                let out = stream_out(&shared, remote, &charge, &mut session_out, &mut send, false);
                if !refuse_oversized(&out, &oversized, remote).await {
                    return;
                }
                continue;
            }
            Ok(None) => return,
            Err(ReadFrameError::Decode(e)) => {
                return protocol_error(&shared, &connection, e.to_string())
            }
            Err(ReadFrameError::Stream(e)) => {
                debug!("client stream from {remote} ended: {e}");
                return;
            }
        };
        let frame_bytes = frame.body().len().max(1);
        let (id, request) = match decode_client_request(frame) {
            Ok(r) => r,
            Err(e) => return protocol_error(&shared, &connection, e.to_string()),
        };
        // The frame and what decoding added to it, within the budget (at least one frame), so
        // that a request always fits an empty budget.
        let cost = frame_bytes.saturating_add(request.decoded_extra_bytes()).min(budget_bytes);
        let cost = u32::try_from(cost).unwrap_or(u32::MAX);
        if subscribed {
            return protocol_error(
                &shared,
                &connection,
                "request after Subscribe on its stream".into(),
            );
        }
        let is_subscribe = matches!(request, ClientRequest::Subscribe(_));
        if is_subscribe && session_out.is_some() {
            return protocol_error(&shared, &connection, "Subscribe on a session stream".into());
        }
        let out = stream_out(&shared, remote, &charge, &mut session_out, &mut send, is_subscribe);
        if let ClientRequest::Subscribe(request) = request {
            subscribed = true;
            // A Subscribe waits for the shard with memory of its own (its queue, its writer
            // task): admitted and charged like a request until the shard takes it, so that a
            // client that opens and drops subscriptions faster than the shard takes them cannot
            // queue them without bound.
            let cost = SUBSCRIPTION_HELD_BYTES.min(u32::try_from(budget_bytes).unwrap_or(u32::MAX));
            let Some(credit) = admit(&budget, &charge, &connection, cost).await else {
                return;
            };
            let held = HeldCharge::new(charge.clone(), cost as usize);
            let sink = SubscriptionSink { out, id, log: request.log };
            let event = SubscribeEvent { request, sink, _credit: credit, _held: held };
            shared.emit(TransportEvent::Subscribe(event));
            continue;
        }
        // Stop reading while the client does not read its answers (their room in the window is
        // taken), or while its connection has too many requests waiting for one.
        let reserved_bytes = answer_bytes_max(
            &request,
            config.frame_limits.frame_size_bytes_max(),
            config.entry_data_bytes_max,
        );
        if !out.queue.reserve(reserved_bytes).await {
            return;
        }
        let Some(credit) = admit(&budget, &charge, &connection, cost).await else {
            out.queue.release(reserved_bytes);
            return;
        };
        let held = HeldCharge::new(charge.clone(), cost as usize + reserved_bytes);
        let responder = Responder {
            out,
            id,
            remote,
            answered: false,
            reserved_bytes,
            _credit: credit,
            _held: held,
        };
        shared.emit(TransportEvent::ClientRequest(ClientRequestEvent { request, responder }));
    }
}

/// The outgoing side for a request on a stream: the session's (`session_out`), or, for the
/// stream's first request, a new one on its send side (`send`), kept as the session's unless
/// the request is a Subscribe (whose sink is its only holder).
fn stream_out(
    shared: &Shared,
    remote: SocketAddr,
    charge: &ClientCharge,
    session_out: &mut Option<Arc<StreamOut>>,
    send: &mut Option<quinn::SendStream>,
    is_subscribe: bool,
) -> Arc<StreamOut> {
    let config = &shared.config;
    match (&*session_out, send.take()) {
        (Some(out), _) => out.clone(),
        (None, Some(stream)) => {
            let window = if is_subscribe {
                config.subscription_window_bytes
            } else {
                config.client_response_window_bytes
            };
            let queue = SendQueue::charging(config.frame_limits, window, Some(charge.clone()));
            let writer = queue.clone();
            tokio::spawn(async move {
                if let Err(e) = writer.run_writer(stream, || {}).await {
                    debug!("client stream to {remote} failed: {e}");
                }
            });
            let created = Arc::new(StreamOut { queue });
            if !is_subscribe {
                *session_out = Some(created.clone());
            }
            created
        }
        // After a Subscribe, every further request is refused before it gets here.
        (None, None) => unreachable!("the send side is taken only by a session or a Subscribe"),
    }
}

/// Whether a frame of this type is a request a session stream carries.
fn is_session_request(frame_type: FrameType) -> bool {
    matches!(
        frame_type,
        FrameType::Append
            | FrameType::AppendBatch
            | FrameType::Read
            | FrameType::ReadLinearizable
            | FrameType::Status
            | FrameType::Compact
    )
}

/// The answer to a request whose frame is over the node's frame limit: `InvalidRequest`, saying
/// both sizes.
fn oversized_refusal(oversized: &OversizedFrame) -> ClientResponse {
    ClientResponse::Error(ClientError {
        code: ErrorCode::InvalidRequest,
        message: format!(
            "request of {} bytes is over this node's frame limit of {} bytes \
             (transport.frame_size_bytes_max); nothing of it was applied: split it (a batch \
             into smaller batches)",
            oversized.body_size_bytes(),
            oversized.max_bytes()
        ),
    })
}

/// Answers a request whose frame is over the node's frame limit ([`oversized_refusal`]) on its
/// session stream, in room reserved as for any answer (so a client that does not read its
/// answers stops being read here too). The request is never delivered: nothing of it was kept
/// but its id. `false` when the stream is gone.
async fn refuse_oversized(out: &StreamOut, oversized: &OversizedFrame, remote: SocketAddr) -> bool {
    let id = RequestId(u64::from_le_bytes(oversized.prefix()));
    debug!("refused a request from {remote}: {}", oversized.error());
    if !out.queue.reserve(SMALL_ANSWER_BYTES_MAX).await {
        return false;
    }
    let refusal = oversized_refusal(oversized);
    let pushed = out.queue.push_with(true, |enc| enc.encode_response(id, &refusal));
    out.queue.release(SMALL_ANSWER_BYTES_MAX);
    pushed.is_ok()
}

/// Waits until a connection may have one more request (or subscription) of `cost` bytes waiting
/// for the shard: credit from its inbound budget, then room in its and the node's memory
/// budgets. `None` when the connection is gone first.
async fn admit(
    budget: &Arc<Semaphore>,
    charge: &ClientCharge,
    connection: &quinn::Connection,
    cost: u32,
) -> Option<OwnedSemaphorePermit> {
    // The waits race the connection's end, and `Connection::closed` takes quinn's connection
    // lock and registers a waker: only when there is something to wait for, not once per
    // request.
    let credit = match budget.clone().try_acquire_many_owned(cost) {
        Ok(credit) => credit,
        // The semaphore is never closed: no credit means the connection is gone.
        Err(_) => tokio::select! {
            credit = budget.clone().acquire_many_owned(cost) => credit.ok()?,
            _ = connection.closed() => return None,
        },
    };
    let room = charge.has_room()
        || tokio::select! {
            _ = charge.wait_for_room() => true,
            _ = connection.closed() => false,
        };
    room.then_some(credit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Compacted, LeaderHint, LogStatus, NotLeader, Role};
    use crate::codec::{FrameEncoder, FrameLimits};
    use crate::types::{LogIndex, NodeId, Term};

    fn encoded_bytes(response: &ClientResponse) -> usize {
        let mut enc = FrameEncoder::new(FrameLimits::default());
        enc.encode_response(RequestId(u64::MAX), &bounded(response)).expect("encodes");
        enc.pending_size_bytes()
    }

    #[test]
    fn long_error_messages_are_cut_at_a_character_boundary() {
        let long = ClientResponse::Error(ClientError {
            code: ErrorCode::Internal,
            message: "é".repeat(40_000),
        });
        let ClientResponse::Error(cut) = bounded(&long).into_owned() else { panic!() };
        assert!(cut.message.len() <= ANSWER_MESSAGE_BYTES_MAX, "{}", cut.message.len());
        assert!(cut.message.ends_with("...") && cut.message.starts_with("éé"));
        let short = ClientResponse::Error(ClientError {
            code: ErrorCode::Internal,
            message: "x".repeat(ANSWER_MESSAGE_BYTES_MAX),
        });
        assert_eq!(bounded(&short).into_owned(), short);
    }

    /// The refusal of an oversized request says both sizes and fits the room reserved for it.
    #[test]
    fn the_refusal_of_an_oversized_request_fits_the_small_bound() {
        let limits = FrameLimits::new(4096).unwrap();
        let mut asm = crate::codec::FrameAssembler::new(limits);
        asm.skip_oversized(FRAME_SIZE_BYTES_CEILING);
        let size = FRAME_SIZE_BYTES_CEILING;
        asm.push(bytes::Bytes::from(
            crate::codec::FrameHeader::for_encode(FrameType::AppendBatch, size).encode().to_vec(),
        ));
        asm.push(bytes::Bytes::from(7u64.to_le_bytes().to_vec()));
        let Ok(Some(Assembled::Oversized(oversized))) = asm.next_item() else { panic!() };
        let refusal = oversized_refusal(&oversized);
        let ClientResponse::Error(e) = &refusal else { panic!("{refusal:?}") };
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.contains(&format!("{size} bytes")), "{}", e.message);
        assert!(e.message.contains("4096 bytes"), "{}", e.message);
        assert!(encoded_bytes(&refusal) <= SMALL_ANSWER_BYTES_MAX);
        assert!(is_session_request(oversized.frame_type()));
        assert!(!is_session_request(FrameType::Subscribe));
    }

    #[test]
    fn every_answer_but_a_reads_fits_the_small_bound() {
        let addr = Some("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535".parse().unwrap());
        let hint = Some(LeaderHint { node: NodeId(u64::MAX), client_addr: addr });
        let big = LogIndex(u64::MAX);
        let answers = [
            ClientResponse::Error(ClientError {
                code: ErrorCode::Internal,
                message: "x".repeat(100_000),
            }),
            ClientResponse::NotLeader(NotLeader { log: LogId(u64::MAX), leader: hint }),
            ClientResponse::Status(LogStatus {
                log: LogId(u64::MAX),
                node: NodeId(u64::MAX),
                role: Role::Leader,
                term: Term(u64::MAX),
                leader: hint,
                first_index: big,
                last_index: big,
                commit_index: big,
            }),
            ClientResponse::Compacted(Compacted {
                log: LogId(u64::MAX),
                node: NodeId(u64::MAX),
                first_index: big,
            }),
        ];
        for answer in &answers {
            let bytes = encoded_bytes(answer);
            assert!(bytes <= SMALL_ANSWER_BYTES_MAX, "{} takes {bytes}", answer.kind_name());
        }
    }

    fn entries_answer(sizes: &[usize]) -> ClientResponse {
        let entries = sizes
            .iter()
            .enumerate()
            .map(|(i, size)| Entry {
                index: LogIndex(u64::MAX / 2 + i as u64),
                term: Term(u64::MAX),
                kind: crate::types::EntryKind::Normal,
                data: bytes::Bytes::from(vec![7u8; *size]),
            })
            .collect();
        ClientResponse::Entries(crate::client::EntriesBatch { log: LogId(u64::MAX), entries })
    }

    fn read(count_max: u32, size_bytes_max: u32) -> ClientRequest {
        ClientRequest::Read(ReadRequest {
            log: LogId(1),
            from: LogIndex(1),
            count_max,
            size_bytes_max,
            linearizable: false,
        })
    }

    #[test]
    fn a_reads_answer_fits_the_room_reserved_for_it() {
        let frame = 16 << 20;
        let entry_max = 4096 + 16;
        // As many entries as asked for, with the bytes asked for between them.
        let answer = entries_answer(&[100; 10]);
        let room = answer_bytes_max(&read(10, 1000), frame, entry_max);
        assert!(encoded_bytes(&answer) <= room);
        // Empty entries: their framing alone.
        let answer = entries_answer(&[0; 500]);
        assert!(encoded_bytes(&answer) <= answer_bytes_max(&read(500, 1), frame, entry_max));
        // One entry larger than the Read asked for, sent all the same.
        let answer = entries_answer(&[entry_max]);
        assert!(encoded_bytes(&answer) <= answer_bytes_max(&read(1, 1), frame, entry_max));
        // A small Read holds little: about what it asked for and one entry of the largest size.
        assert!(room < 2 * entry_max + 1000, "{room}");
        // A Read that asks for everything holds a frame at most, and any answer at least.
        let all = answer_bytes_max(&read(u32::MAX, u32::MAX), frame, usize::MAX);
        assert_eq!(all, FRAME_HEADER_SIZE_BYTES + frame as usize);
        let none = answer_bytes_max(&read(0, 0), frame, 0);
        assert!(none >= SMALL_ANSWER_BYTES_MAX);
        let refused = ClientResponse::Error(ClientError {
            code: ErrorCode::InvalidRequest,
            message: "x".repeat(5000),
        });
        assert!(encoded_bytes(&refused) <= none);
    }
}
