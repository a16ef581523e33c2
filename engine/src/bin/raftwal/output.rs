//! The JSON lines the data commands print, one object per line.
//!
//! Owns: the shape of every line on standard output of `append`, `read`, `tail`, `status` and
//! `compact` (documented in docs/operations.md), and the encoding of entry bytes: a payload that
//! is valid UTF-8 is printed as the string `"data"`, any other as standard base64 in
//! `"data_b64"`, so that every byte survives the round trip.
//! Must not: print anything but these lines on standard output (logs go to standard error).

use base64::Engine as _;
use raftwal::LogEntry;
use raftwal_wire::client::{Compacted, LogStatus, Role};
use serde::Serialize;
use std::io::Write;
use std::net::SocketAddr;

/// `append`: where one input line landed.
#[derive(Debug, Serialize)]
pub(crate) struct PositionLine {
    pub(crate) index: u64,
    pub(crate) term: u64,
}

/// `append`: an input line that was not acknowledged.
#[derive(Debug, Serialize)]
pub(crate) struct AppendErrorLine<'a> {
    /// The input line's number, from 1.
    pub(crate) line: u64,
    pub(crate) error: &'a str,
}

/// `read` and `tail`: one committed entry.
#[derive(Debug, Serialize)]
pub(crate) struct EntryLine<'a> {
    index: u64,
    term: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_b64: Option<String>,
}

impl<'a> EntryLine<'a> {
    pub(crate) fn new(entry: &'a LogEntry) -> EntryLine<'a> {
        let (data, data_b64) = match std::str::from_utf8(&entry.data) {
            Ok(text) => (Some(text), None),
            Err(_) => (None, Some(base64::engine::general_purpose::STANDARD.encode(&entry.data))),
        };
        EntryLine { index: entry.index.get(), term: entry.term.get(), data, data_b64 }
    }
}

/// `status`: one node's view of the log.
#[derive(Debug, Serialize)]
pub(crate) struct StatusLine {
    /// The address asked.
    addr: SocketAddr,
    /// The node's id.
    id: u64,
    log: u64,
    role: &'static str,
    term: u64,
    /// The leader the node knows of, if any.
    leader: Option<u64>,
    commit_index: u64,
    /// Its last durable index.
    last_index: u64,
    first_index: u64,
}

impl StatusLine {
    pub(crate) fn new(addr: SocketAddr, status: &LogStatus) -> StatusLine {
        let role = match status.role {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
        };
        StatusLine {
            addr,
            id: status.node.get(),
            log: status.log.get(),
            role,
            term: status.term.get(),
            leader: status.leader.map(|l| l.node.get()),
            commit_index: status.commit_index.get(),
            last_index: status.last_index.get(),
            first_index: status.first_index.get(),
        }
    }
}

/// `compact`: what one node did.
#[derive(Debug, Serialize)]
pub(crate) struct CompactedLine {
    /// The address asked.
    addr: SocketAddr,
    /// The node's id.
    id: u64,
    log: u64,
    /// The node's first index afterwards.
    first_index: u64,
}

impl CompactedLine {
    pub(crate) fn new(addr: SocketAddr, compacted: &Compacted) -> CompactedLine {
        CompactedLine {
            addr,
            id: compacted.node.get(),
            log: compacted.log.get(),
            first_index: compacted.first_index.get(),
        }
    }
}

/// `status` and `compact`: a node that did not answer, or refused.
#[derive(Debug, Serialize)]
pub(crate) struct NodeErrorLine<'a> {
    pub(crate) addr: SocketAddr,
    pub(crate) error: &'a str,
}

/// Writes `value` as one line of JSON.
pub(crate) fn write_line(out: &mut impl Write, value: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use raftwal_wire::client::LeaderHint;
    use raftwal_wire::types::{LogId, LogIndex, NodeId, Term};

    fn line(value: &impl Serialize) -> String {
        let mut out = Vec::new();
        write_line(&mut out, value).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn entry(data: &'static [u8]) -> LogEntry {
        LogEntry { index: LogIndex(7), term: Term(2), data: Bytes::from_static(data) }
    }

    #[test]
    fn utf8_entries_print_as_text_with_json_escapes() {
        let e = entry("héllo \"q\"\t\\".as_bytes());
        assert_eq!(
            line(&EntryLine::new(&e)),
            "{\"index\":7,\"term\":2,\"data\":\"héllo \\\"q\\\"\\t\\\\\"}\n"
        );
        let empty = entry(b"");
        assert_eq!(line(&EntryLine::new(&empty)), "{\"index\":7,\"term\":2,\"data\":\"\"}\n");
    }

    #[test]
    fn other_bytes_print_as_base64_and_decode_back() {
        let raw: &'static [u8] = &[0xff, 0x00, 0xfe, b'a'];
        let text = line(&EntryLine::new(&entry(raw)));
        assert_eq!(text, "{\"index\":7,\"term\":2,\"data_b64\":\"/wD+YQ==\"}\n");
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(parsed["data_b64"].as_str().unwrap())
            .unwrap();
        assert_eq!(decoded, raw);
        assert!(parsed.get("data").is_none());
    }

    #[test]
    fn positions_errors_and_status_lines() {
        assert_eq!(line(&PositionLine { index: 3, term: 1 }), "{\"index\":3,\"term\":1}\n");
        assert_eq!(
            line(&AppendErrorLine { line: 12, error: "no node answered" }),
            "{\"line\":12,\"error\":\"no node answered\"}\n"
        );
        let status = LogStatus {
            log: LogId(0),
            node: NodeId(2),
            role: Role::Follower,
            term: Term(5),
            leader: Some(LeaderHint { node: NodeId(1), client_addr: None }),
            first_index: LogIndex(1),
            last_index: LogIndex(40),
            commit_index: LogIndex(39),
        };
        let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        assert_eq!(
            line(&StatusLine::new(addr, &status)),
            "{\"addr\":\"127.0.0.1:7000\",\"id\":2,\"log\":0,\"role\":\"follower\",\"term\":5,\
             \"leader\":1,\"commit_index\":39,\"last_index\":40,\"first_index\":1}\n"
        );
        let no_leader = LogStatus { leader: None, role: Role::Candidate, ..status };
        let text = line(&StatusLine::new(addr, &no_leader));
        assert!(text.contains("\"role\":\"candidate\",\"term\":5,\"leader\":null"), "{text}");
        assert_eq!(
            line(&NodeErrorLine { addr, error: "timed out" }),
            "{\"addr\":\"127.0.0.1:7000\",\"error\":\"timed out\"}\n"
        );
    }
}
