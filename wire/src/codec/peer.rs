//! The peer protocol's frames: the stream-opening Hello and one frame per Raft message.
//!
//! Every Raft message body starts with the same 32-byte header `log u64, from u64, to u64,
//! term u64`, followed by the fields of its kind (see `docs/protocol.md` for each layout).
//! Flags bytes reject unknown bits, so a later version cannot be silently misread.

use super::assembler::RawFrame;
use super::cursor::Cursor;
use super::encoder::FrameEncoder;
use super::entries::{get_run, put_run, run_size};
use super::error::{DecodeError, EncodeError};
use super::frame::{FrameLimits, FrameType};
use crate::client::{ClientId, ClientSeq};
use crate::message::{
    AppendEntries, AppendEntriesResponse, Heartbeat, HeartbeatResponse, LogStart, Message,
    MessageBody, ReadIndex, ReadIndexResponse, RequestVote, RequestVoteResponse,
};
use crate::types::{ClusterId, LogId, LogIndex, NodeId, Term};

/// Which of a connection's two peer streams a Hello opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Votes, heartbeats, responses, TimeoutNow, ReadIndex: small and latency-sensitive.
    Control,
    /// AppendEntries: bulk data, in order, pipelined.
    Bulk,
}

impl StreamKind {
    fn as_u8(self) -> u8 {
        match self {
            StreamKind::Control => 0,
            StreamKind::Bulk => 1,
        }
    }
}

/// The first frame on every peer stream: who is speaking, for which cluster, on which stream.
///
/// The receiver checks that `cluster` is its own and that the TLS certificate the connection was
/// authenticated with is the certificate of `node` in that cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's cluster.
    pub cluster: ClusterId,
    /// The sender's node id.
    pub node: NodeId,
    /// The stream this Hello opens.
    pub stream: StreamKind,
}

/// One frame of the peer protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerFrame {
    /// A stream opener.
    Hello(Hello),
    /// A Raft message.
    Message(Message),
}

const MESSAGE_HEADER_SIZE_BYTES: u64 = 32;
/// A LogStart's fields before its clients: index, term, leader commit, client count.
const LOG_START_FIXED_SIZE_BYTES: usize = 28;
/// One (client id, sequence number) of a LogStart.
const LOG_START_CLIENT_SIZE_BYTES: usize = 16;
const HELLO_SIZE_BYTES: u64 = 17;

const VOTE_PRE_VOTE: u8 = 0b01;
const VOTE_TRANSFER: u8 = 0b10;
const VOTE_RESPONSE_PRE_VOTE: u8 = 0b01;
const VOTE_RESPONSE_GRANTED: u8 = 0b10;

/// The most `(client id, sequence number)` pairs a [`LogStart`] may carry in one frame under
/// `limits` (`LogStart::client_seqs`): 252 at the smallest frame limit, 4,096 from 64 KiB and
/// 60 bytes on. A sender with more leaves some out rather than send what cannot be encoded.
pub fn log_start_clients_max(limits: &FrameLimits) -> usize {
    let fixed = MESSAGE_HEADER_SIZE_BYTES as usize + LOG_START_FIXED_SIZE_BYTES;
    (limits.frame_size_bytes_max() as usize).saturating_sub(fixed) / LOG_START_CLIENT_SIZE_BYTES
}

fn option_size(value: Option<u64>) -> u64 {
    if value.is_some() {
        9
    } else {
        1
    }
}

impl FrameEncoder {
    /// Queues a Hello frame.
    pub fn encode_hello(&mut self, hello: &Hello) -> Result<(), EncodeError> {
        self.begin_frame(FrameType::Hello, HELLO_SIZE_BYTES, HELLO_SIZE_BYTES as usize)?;
        self.put_u64(hello.cluster.get());
        self.put_u64(hello.node.get());
        self.put_u8(hello.stream.as_u8());
        self.end_frame();
        Ok(())
    }

    /// Queues one Raft message as one frame. Entries of an AppendEntries must be consecutive
    /// from `prev_log_index + 1`; their payloads are handed over as chunks, not copied.
    pub fn encode_message(&mut self, message: &Message) -> Result<(), EncodeError> {
        let (frame_type, fields_size, inline) = match &message.body {
            MessageBody::RequestVote(_) => (FrameType::RequestVote, 17, 17),
            MessageBody::RequestVoteResponse(_) => (FrameType::RequestVoteResponse, 1, 1),
            MessageBody::AppendEntries(a) => {
                let (run, inline) = run_size(a.prev_log_index.next_wrapping(), &a.entries)?;
                (FrameType::AppendEntries, 24 + run, 24 + inline)
            }
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { .. }) => {
                (FrameType::AppendEntriesResponse, 9, 9)
            }
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Reject { .. }) => {
                (FrameType::AppendEntriesResponse, 25, 25)
            }
            MessageBody::Heartbeat(h) => {
                let size = 8 + option_size(h.read_context);
                (FrameType::Heartbeat, size, size as usize)
            }
            MessageBody::HeartbeatResponse(h) => {
                let size = option_size(h.read_context);
                (FrameType::HeartbeatResponse, size, size as usize)
            }
            MessageBody::TimeoutNow => (FrameType::TimeoutNow, 0, 0),
            MessageBody::ReadIndex(_) => (FrameType::ReadIndex, 8, 8),
            MessageBody::ReadIndexResponse(r) => {
                let size = 8 + option_size(r.read_index.map(LogIndex::get));
                (FrameType::ReadIndexResponse, size, size as usize)
            }
            MessageBody::LogStart(l) => {
                let size =
                    LOG_START_FIXED_SIZE_BYTES + LOG_START_CLIENT_SIZE_BYTES * l.client_seqs.len();
                (FrameType::LogStart, size as u64, size)
            }
        };
        self.begin_frame(
            frame_type,
            MESSAGE_HEADER_SIZE_BYTES + fields_size,
            MESSAGE_HEADER_SIZE_BYTES as usize + inline,
        )?;
        self.put_u64(message.log.get());
        self.put_u64(message.from.get());
        self.put_u64(message.to.get());
        self.put_u64(message.term.get());
        match &message.body {
            MessageBody::RequestVote(v) => {
                let mut flags = 0;
                if v.pre_vote {
                    flags |= VOTE_PRE_VOTE;
                }
                if v.leadership_transfer {
                    flags |= VOTE_TRANSFER;
                }
                self.put_u8(flags);
                self.put_u64(v.last_log_index.get());
                self.put_u64(v.last_log_term.get());
            }
            MessageBody::RequestVoteResponse(v) => {
                let mut flags = 0;
                if v.pre_vote {
                    flags |= VOTE_RESPONSE_PRE_VOTE;
                }
                if v.granted {
                    flags |= VOTE_RESPONSE_GRANTED;
                }
                self.put_u8(flags);
            }
            MessageBody::AppendEntries(a) => {
                self.put_u64(a.prev_log_index.get());
                self.put_u64(a.prev_log_term.get());
                self.put_u64(a.leader_commit.get());
                put_run(self, &a.entries);
            }
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Success { match_index }) => {
                self.put_u8(0);
                self.put_u64(match_index.get());
            }
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Reject {
                rejected_index,
                hint_index,
                hint_term,
            }) => {
                self.put_u8(1);
                self.put_u64(rejected_index.get());
                self.put_u64(hint_index.get());
                self.put_u64(hint_term.get());
            }
            MessageBody::Heartbeat(h) => {
                self.put_u64(h.leader_commit.get());
                self.put_option_u64(h.read_context);
            }
            MessageBody::HeartbeatResponse(h) => self.put_option_u64(h.read_context),
            MessageBody::TimeoutNow => {}
            MessageBody::ReadIndex(r) => self.put_u64(r.request_id),
            MessageBody::ReadIndexResponse(r) => {
                self.put_u64(r.request_id);
                self.put_option_u64(r.read_index.map(LogIndex::get));
            }
            MessageBody::LogStart(l) => {
                self.put_u64(l.index.get());
                self.put_u64(l.term.get());
                self.put_u64(l.leader_commit.get());
                // At most one per client the runtime's table holds (thousands), far below u32.
                self.put_u32(l.client_seqs.len() as u32);
                for (client, seq) in &l.client_seqs {
                    self.put_u64(client.get());
                    self.put_u64(seq.get());
                }
            }
        }
        self.end_frame();
        Ok(())
    }
}

trait NextWrapping {
    fn next_wrapping(self) -> Self;
}

impl NextWrapping for LogIndex {
    /// The index after this one, wrapping at the top: the encoder only uses it to name the
    /// first entry of a run, and a run after index u64::MAX cannot hold entries.
    fn next_wrapping(self) -> LogIndex {
        LogIndex(self.get().wrapping_add(1))
    }
}

fn check_flags(flags: u8, known: u8, what: &'static str) -> Result<u8, DecodeError> {
    if flags & !known != 0 {
        return Err(DecodeError::InvalidValue { what, value: u64::from(flags) });
    }
    Ok(flags)
}

/// Decodes one frame of the peer protocol.
pub fn decode_peer_frame(frame: RawFrame) -> Result<PeerFrame, DecodeError> {
    let frame_type = frame.header().frame_type();
    let mut cur = Cursor::new(frame.into_body());
    if frame_type == FrameType::Hello {
        let cluster = ClusterId(cur.u64("hello cluster id")?);
        let node = NodeId(cur.u64("hello node id")?);
        let stream = match cur.u8("hello stream kind")? {
            0 => StreamKind::Control,
            1 => StreamKind::Bulk,
            other => {
                return Err(DecodeError::InvalidValue {
                    what: "hello stream kind",
                    value: u64::from(other),
                })
            }
        };
        cur.finish("Hello")?;
        return Ok(PeerFrame::Hello(Hello { cluster, node, stream }));
    }
    let log = LogId(cur.u64("message log id")?);
    let from = NodeId(cur.u64("message sender")?);
    let to = NodeId(cur.u64("message receiver")?);
    let term = Term(cur.u64("message term")?);
    let (body, name) = match frame_type {
        FrameType::RequestVote => {
            let flags =
                check_flags(cur.u8("vote flags")?, VOTE_PRE_VOTE | VOTE_TRANSFER, "vote flags")?;
            let body = MessageBody::RequestVote(RequestVote {
                pre_vote: flags & VOTE_PRE_VOTE != 0,
                leadership_transfer: flags & VOTE_TRANSFER != 0,
                last_log_index: LogIndex(cur.u64("vote last log index")?),
                last_log_term: Term(cur.u64("vote last log term")?),
            });
            (body, "RequestVote")
        }
        FrameType::RequestVoteResponse => {
            let flags = check_flags(
                cur.u8("vote response flags")?,
                VOTE_RESPONSE_PRE_VOTE | VOTE_RESPONSE_GRANTED,
                "vote response flags",
            )?;
            let body = MessageBody::RequestVoteResponse(RequestVoteResponse {
                pre_vote: flags & VOTE_RESPONSE_PRE_VOTE != 0,
                granted: flags & VOTE_RESPONSE_GRANTED != 0,
            });
            (body, "RequestVoteResponse")
        }
        FrameType::AppendEntries => {
            let prev_log_index = LogIndex(cur.u64("append prev log index")?);
            let prev_log_term = Term(cur.u64("append prev log term")?);
            let leader_commit = LogIndex(cur.u64("append leader commit")?);
            let entries = get_run(&mut cur, prev_log_index.next_wrapping())?;
            if !entries.is_empty() && prev_log_index.get() == u64::MAX {
                return Err(DecodeError::IndexOverflow {
                    first: prev_log_index.get(),
                    count: entries.len() as u64,
                });
            }
            let body = MessageBody::AppendEntries(AppendEntries {
                prev_log_index,
                prev_log_term,
                leader_commit,
                entries,
            });
            (body, "AppendEntries")
        }
        FrameType::AppendEntriesResponse => {
            let response = match cur.u8("append response tag")? {
                0 => AppendEntriesResponse::Success {
                    match_index: LogIndex(cur.u64("append response match index")?),
                },
                1 => AppendEntriesResponse::Reject {
                    rejected_index: LogIndex(cur.u64("append reject index")?),
                    hint_index: LogIndex(cur.u64("append reject hint index")?),
                    hint_term: Term(cur.u64("append reject hint term")?),
                },
                other => {
                    return Err(DecodeError::InvalidValue {
                        what: "append response tag",
                        value: u64::from(other),
                    })
                }
            };
            (MessageBody::AppendEntriesResponse(response), "AppendEntriesResponse")
        }
        FrameType::Heartbeat => {
            let body = MessageBody::Heartbeat(Heartbeat {
                leader_commit: LogIndex(cur.u64("heartbeat leader commit")?),
                read_context: cur.option_u64("heartbeat read context")?,
            });
            (body, "Heartbeat")
        }
        FrameType::HeartbeatResponse => {
            let body = MessageBody::HeartbeatResponse(HeartbeatResponse {
                read_context: cur.option_u64("heartbeat response read context")?,
            });
            (body, "HeartbeatResponse")
        }
        FrameType::TimeoutNow => (MessageBody::TimeoutNow, "TimeoutNow"),
        FrameType::ReadIndex => {
            let body =
                MessageBody::ReadIndex(ReadIndex { request_id: cur.u64("read index request id")? });
            (body, "ReadIndex")
        }
        FrameType::ReadIndexResponse => {
            let body = MessageBody::ReadIndexResponse(ReadIndexResponse {
                request_id: cur.u64("read index response request id")?,
                read_index: cur.option_u64("read index response index")?.map(LogIndex),
            });
            (body, "ReadIndexResponse")
        }
        FrameType::LogStart => {
            let index = LogIndex(cur.u64("log start index")?);
            let term = Term(cur.u64("log start term")?);
            let leader_commit = LogIndex(cur.u64("log start leader commit")?);
            let count = cur.u32("log start client count")?;
            let count =
                cur.check_count(count.into(), LOG_START_CLIENT_SIZE_BYTES, "log start client")?;
            let mut client_seqs = Vec::with_capacity(count);
            for _ in 0..count {
                let client = ClientId(cur.u64("log start client id")?);
                client_seqs.push((client, ClientSeq(cur.u64("log start client seq")?)));
            }
            (
                MessageBody::LogStart(LogStart { index, term, leader_commit, client_seqs }),
                "LogStart",
            )
        }
        other => {
            return Err(DecodeError::UnexpectedFrameType { found: other, context: "a peer stream" })
        }
    };
    cur.finish(name)?;
    Ok(PeerFrame::Message(Message { log, from, to, term, body }))
}
