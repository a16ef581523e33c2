//! The client protocol's frames.
//!
//! Every request body starts with `request_id u64, log u64`; every response body with
//! `request_id u64`, then (except Error) `log u64`. Layouts of each frame are in
//! `docs/protocol.md`. The 16-byte client id and sequence header of an append sits right before
//! its payload, so a received append is one slice: the data of a Tagged entry.

use super::assembler::RawFrame;
use super::cursor::Cursor;
use super::encoder::{inline_size, FrameEncoder};
use super::entries::{get_run, put_run, run_size};
use super::error::{DecodeError, EncodeError};
use super::frame::FrameType;
use crate::client::{
    AppendBatchRequest, AppendRequest, Appended, AppendedBatch, ClientError, ClientRequest,
    ClientResponse, CompactRequest, Compacted, EntriesBatch, ErrorCode, LeaderHint, LogStatus,
    NotLeader, ReadRequest, RequestId, Role, StatusRequest, SubscribeRequest, TaggedPayload,
    TAG_SIZE_BYTES,
};
use crate::types::{Entry, LogId, LogIndex, NodeId, Term};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Smallest encoded batch item: payload size, client id, sequence number.
const BATCH_ITEM_SIZE_MIN_BYTES: usize = 4 + TAG_SIZE_BYTES;

const HINT_NONE: u8 = 0;
const HINT_NO_ADDR: u8 = 1;
const HINT_V4: u8 = 4;
const HINT_V6: u8 = 6;

fn tagged_sizes(tagged: &TaggedPayload) -> (u64, usize) {
    let size = (TAG_SIZE_BYTES + tagged.payload_size_bytes()) as u64;
    (size, TAG_SIZE_BYTES + inline_size(&tagged.payload()))
}

fn hint_size(hint: &Option<LeaderHint>) -> usize {
    match hint {
        None => 1,
        Some(LeaderHint { client_addr: None, .. }) => 9,
        Some(LeaderHint { client_addr: Some(SocketAddr::V4(_)), .. }) => 9 + 4 + 2,
        Some(LeaderHint { client_addr: Some(SocketAddr::V6(_)), .. }) => 9 + 16 + 2,
    }
}

fn role_byte(role: Role) -> u8 {
    match role {
        Role::Follower => 0,
        Role::Candidate => 1,
        Role::Leader => 2,
    }
}

impl FrameEncoder {
    fn put_tagged(&mut self, tagged: &TaggedPayload) {
        // Header then payload, as the receiver will slice them: one entry's data.
        self.put_u64(tagged.client_id().get());
        self.put_u64(tagged.seq().get());
        self.put_payload(&tagged.payload());
    }

    fn put_hint(&mut self, hint: &Option<LeaderHint>) {
        match hint {
            None => self.put_u8(HINT_NONE),
            Some(h) => {
                match h.client_addr {
                    None => self.put_u8(HINT_NO_ADDR),
                    Some(SocketAddr::V4(_)) => self.put_u8(HINT_V4),
                    Some(SocketAddr::V6(_)) => self.put_u8(HINT_V6),
                }
                self.put_u64(h.node.get());
                match h.client_addr {
                    None => {}
                    Some(SocketAddr::V4(a)) => {
                        self.put_slice(&a.ip().octets());
                        self.put_u16(a.port());
                    }
                    Some(SocketAddr::V6(a)) => {
                        self.put_slice(&a.ip().octets());
                        self.put_u16(a.port());
                    }
                }
            }
        }
    }

    /// Queues one client request frame. Append payloads are handed over as chunks.
    pub fn encode_request(
        &mut self,
        id: RequestId,
        request: &ClientRequest,
    ) -> Result<(), EncodeError> {
        let (frame_type, fields_size, inline): (FrameType, u64, usize) = match request {
            ClientRequest::Append(a) => {
                let (size, inline) = tagged_sizes(&a.tagged);
                (FrameType::Append, size, inline)
            }
            ClientRequest::AppendBatch(b) => {
                let mut size = 4u64;
                let mut inline = 4usize;
                for item in &b.items {
                    let (s, i) = tagged_sizes(item);
                    size += 4 + s;
                    inline += 4 + i;
                }
                (FrameType::AppendBatch, size, inline)
            }
            ClientRequest::Read(r) if r.linearizable => (FrameType::ReadLinearizable, 16, 16),
            ClientRequest::Read(_) => (FrameType::Read, 16, 16),
            ClientRequest::Subscribe(_) => (FrameType::Subscribe, 8, 8),
            ClientRequest::Status(_) => (FrameType::Status, 0, 0),
            ClientRequest::Compact(_) => (FrameType::Compact, 8, 8),
        };
        self.begin_frame(frame_type, 16 + fields_size, 16 + inline)?;
        self.put_u64(id.get());
        self.put_u64(request.log().get());
        match request {
            ClientRequest::Append(a) => self.put_tagged(&a.tagged),
            ClientRequest::AppendBatch(b) => {
                // Bounded by the frame limit, checked by begin_frame above.
                self.put_u32(u32::try_from(b.items.len()).expect("count bounded by frame limit"));
                for item in &b.items {
                    let size = item.payload_size_bytes();
                    self.put_u32(u32::try_from(size).expect("size bounded by frame limit"));
                    self.put_tagged(item);
                }
            }
            ClientRequest::Read(r) => {
                self.put_u64(r.from.get());
                self.put_u32(r.count_max);
                self.put_u32(r.size_bytes_max);
            }
            ClientRequest::Subscribe(s) => self.put_u64(s.from.get()),
            ClientRequest::Status(_) => {}
            ClientRequest::Compact(c) => self.put_u64(c.before.get()),
        }
        self.end_frame();
        Ok(())
    }

    /// Queues an Entries response for `entries` (consecutive) without building a
    /// [`ClientResponse`]: the subscription path streams slices of the log this way.
    pub fn encode_entries(
        &mut self,
        id: RequestId,
        log: LogId,
        entries: &[Entry],
    ) -> Result<(), EncodeError> {
        let first = entries.first().map_or(LogIndex::ZERO, |x| x.index);
        let (run, inline) = run_size(first, entries)?;
        self.begin_frame(FrameType::Entries, 24 + run, 24 + inline)?;
        self.put_u64(id.get());
        self.put_u64(log.get());
        self.put_u64(first.get());
        put_run(self, entries);
        self.end_frame();
        Ok(())
    }

    /// Queues one client response frame. Entry payloads are handed over as chunks.
    pub fn encode_response(
        &mut self,
        id: RequestId,
        response: &ClientResponse,
    ) -> Result<(), EncodeError> {
        if let ClientResponse::Entries(e) = response {
            return self.encode_entries(id, e.log, &e.entries);
        }
        if let ClientResponse::Error(e) = response {
            let size = e.message.len();
            if size > usize::from(u16::MAX) {
                return Err(EncodeError::TextTooLong {
                    what: "error message",
                    size_bytes: size,
                    max_bytes: usize::from(u16::MAX),
                });
            }
            self.begin_frame(FrameType::Error, 12 + size as u64, 12 + size)?;
            self.put_u64(id.get());
            self.put_u16(e.code.as_u16());
            self.put_u16(size as u16);
            self.put_slice(e.message.as_bytes());
            self.end_frame();
            return Ok(());
        }
        let (frame_type, log, fields_size, inline): (FrameType, LogId, u64, usize) = match response
        {
            ClientResponse::Appended(a) => (FrameType::Appended, a.log, 16, 16),
            ClientResponse::AppendedBatch(a) => (FrameType::AppendedBatch, a.log, 20, 20),
            ClientResponse::Status(s) => {
                let size = 8 + 1 + 8 + hint_size(&s.leader) + 24;
                (FrameType::StatusResponse, s.log, size as u64, size)
            }
            ClientResponse::Compacted(c) => (FrameType::Compacted, c.log, 16, 16),
            ClientResponse::NotLeader(n) => {
                let size = hint_size(&n.leader);
                (FrameType::NotLeader, n.log, size as u64, size)
            }
            ClientResponse::Entries(_) | ClientResponse::Error(_) => {
                unreachable!("encoded above")
            }
        };
        self.begin_frame(frame_type, 16 + fields_size, 16 + inline)?;
        self.put_u64(id.get());
        self.put_u64(log.get());
        match response {
            ClientResponse::Appended(a) => {
                self.put_u64(a.index.get());
                self.put_u64(a.term.get());
            }
            ClientResponse::AppendedBatch(a) => {
                self.put_u64(a.first_index.get());
                self.put_u32(a.count);
                self.put_u64(a.term.get());
            }
            ClientResponse::Status(s) => {
                self.put_u64(s.node.get());
                self.put_u8(role_byte(s.role));
                self.put_u64(s.term.get());
                self.put_hint(&s.leader);
                self.put_u64(s.first_index.get());
                self.put_u64(s.last_index.get());
                self.put_u64(s.commit_index.get());
            }
            ClientResponse::Compacted(c) => {
                self.put_u64(c.node.get());
                self.put_u64(c.first_index.get());
            }
            ClientResponse::NotLeader(n) => self.put_hint(&n.leader),
            ClientResponse::Entries(_) | ClientResponse::Error(_) => {
                unreachable!("encoded above")
            }
        }
        self.end_frame();
        Ok(())
    }
}

fn get_tagged(cur: &mut Cursor, payload_size: usize) -> Result<TaggedPayload, DecodeError> {
    let data =
        cur.bytes(TAG_SIZE_BYTES + payload_size, "append client id, sequence and payload")?;
    // The slice is at least TAG_SIZE_BYTES long, so the wrap cannot fail.
    Ok(TaggedPayload::from_entry_data(data).expect("slice holds the tag"))
}

fn get_hint(cur: &mut Cursor) -> Result<Option<LeaderHint>, DecodeError> {
    let tag = cur.u8("leader hint tag")?;
    if tag == HINT_NONE {
        return Ok(None);
    }
    let node = NodeId(cur.u64("leader hint node")?);
    let client_addr = match tag {
        HINT_NO_ADDR => None,
        HINT_V4 => {
            let ip = Ipv4Addr::from(cur.array::<4>("leader hint IPv4 address")?);
            Some(SocketAddr::new(IpAddr::V4(ip), cur.u16("leader hint port")?))
        }
        HINT_V6 => {
            let ip = Ipv6Addr::from(cur.array::<16>("leader hint IPv6 address")?);
            Some(SocketAddr::new(IpAddr::V6(ip), cur.u16("leader hint port")?))
        }
        other => {
            return Err(DecodeError::InvalidValue {
                what: "leader hint tag",
                value: u64::from(other),
            })
        }
    };
    Ok(Some(LeaderHint { node, client_addr }))
}

/// Decodes one client request frame.
pub fn decode_client_request(frame: RawFrame) -> Result<(RequestId, ClientRequest), DecodeError> {
    let frame_type = frame.header().frame_type();
    let mut cur = Cursor::new(frame.into_body());
    let id = RequestId(cur.u64("request id")?);
    let log = LogId(cur.u64("request log id")?);
    let (request, name) = match frame_type {
        FrameType::Append => {
            let remaining = cur.remaining();
            if remaining < TAG_SIZE_BYTES {
                return Err(DecodeError::Truncated {
                    what: "append client id and sequence",
                    needed: TAG_SIZE_BYTES,
                    available: remaining,
                });
            }
            let tagged = get_tagged(&mut cur, remaining - TAG_SIZE_BYTES)?;
            (ClientRequest::Append(AppendRequest { log, tagged }), "Append")
        }
        FrameType::AppendBatch => {
            let count = u64::from(cur.u32("batch count")?);
            let count = cur.check_count(count, BATCH_ITEM_SIZE_MIN_BYTES, "batch item")?;
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                let size = cur.u32("batch item payload size")? as usize;
                items.push(get_tagged(&mut cur, size)?);
            }
            (ClientRequest::AppendBatch(AppendBatchRequest { log, items }), "AppendBatch")
        }
        FrameType::Read | FrameType::ReadLinearizable => {
            let request = ReadRequest {
                log,
                from: LogIndex(cur.u64("read from index")?),
                count_max: cur.u32("read count max")?,
                size_bytes_max: cur.u32("read size max")?,
                linearizable: frame_type == FrameType::ReadLinearizable,
            };
            let name = if request.linearizable { "ReadLinearizable" } else { "Read" };
            (ClientRequest::Read(request), name)
        }
        FrameType::Subscribe => {
            let from = LogIndex(cur.u64("subscribe from index")?);
            (ClientRequest::Subscribe(SubscribeRequest { log, from }), "Subscribe")
        }
        FrameType::Status => (ClientRequest::Status(StatusRequest { log }), "Status"),
        FrameType::Compact => {
            let before = LogIndex(cur.u64("compact before index")?);
            (ClientRequest::Compact(CompactRequest { log, before }), "Compact")
        }
        other => {
            return Err(DecodeError::UnexpectedFrameType {
                found: other,
                context: "a client request stream",
            })
        }
    };
    cur.finish(name)?;
    Ok((id, request))
}

/// Decodes one client response frame.
pub fn decode_client_response(frame: RawFrame) -> Result<(RequestId, ClientResponse), DecodeError> {
    let frame_type = frame.header().frame_type();
    let mut cur = Cursor::new(frame.into_body());
    let id = RequestId(cur.u64("request id")?);
    if frame_type == FrameType::Error {
        let code_value = cur.u16("error code")?;
        let code = ErrorCode::from_u16(code_value).ok_or(DecodeError::InvalidValue {
            what: "error code",
            value: u64::from(code_value),
        })?;
        let size = usize::from(cur.u16("error message size")?);
        let text = cur.bytes(size, "error message")?;
        let message = std::str::from_utf8(&text)
            .map_err(|_| DecodeError::InvalidUtf8 { what: "error message" })?
            .to_owned();
        cur.finish("Error")?;
        return Ok((id, ClientResponse::Error(ClientError { code, message })));
    }
    let log = LogId(cur.u64("response log id")?);
    let (response, name) = match frame_type {
        FrameType::Appended => {
            let a = Appended {
                log,
                index: LogIndex(cur.u64("appended index")?),
                term: Term(cur.u64("appended term")?),
            };
            (ClientResponse::Appended(a), "Appended")
        }
        FrameType::AppendedBatch => {
            let a = AppendedBatch {
                log,
                first_index: LogIndex(cur.u64("appended batch first index")?),
                count: cur.u32("appended batch count")?,
                term: Term(cur.u64("appended batch term")?),
            };
            (ClientResponse::AppendedBatch(a), "AppendedBatch")
        }
        FrameType::Entries => {
            let first = LogIndex(cur.u64("entries first index")?);
            let entries = get_run(&mut cur, first)?;
            (ClientResponse::Entries(EntriesBatch { log, entries }), "Entries")
        }
        FrameType::StatusResponse => {
            let node = NodeId(cur.u64("status node")?);
            let role = match cur.u8("status role")? {
                0 => Role::Follower,
                1 => Role::Candidate,
                2 => Role::Leader,
                other => {
                    return Err(DecodeError::InvalidValue {
                        what: "status role",
                        value: u64::from(other),
                    })
                }
            };
            let s = LogStatus {
                log,
                node,
                role,
                term: Term(cur.u64("status term")?),
                leader: get_hint(&mut cur)?,
                first_index: LogIndex(cur.u64("status first index")?),
                last_index: LogIndex(cur.u64("status last index")?),
                commit_index: LogIndex(cur.u64("status commit index")?),
            };
            (ClientResponse::Status(s), "StatusResponse")
        }
        FrameType::Compacted => {
            let c = Compacted {
                log,
                node: NodeId(cur.u64("compacted node")?),
                first_index: LogIndex(cur.u64("compacted first index")?),
            };
            (ClientResponse::Compacted(c), "Compacted")
        }
        FrameType::NotLeader => {
            let n = NotLeader { log, leader: get_hint(&mut cur)? };
            (ClientResponse::NotLeader(n), "NotLeader")
        }
        other => {
            return Err(DecodeError::UnexpectedFrameType {
                found: other,
                context: "a client response stream",
            })
        }
    };
    cur.finish(name)?;
    Ok((id, response))
}
