//! Shared helpers of the transport tests: in-memory certificates, transports on loopback,
//! waiting for events with a generous deadline (a guard against hangs, not a timing check),
//! and a log capture so tests can check that refusals are logged with their reason.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use bytes::Bytes;
use raftwal_wire::message::*;
use raftwal_wire::tls::certs::ClusterCa;
use raftwal_wire::tls::TlsIdentity;
use raftwal_wire::transport::*;
use raftwal_wire::types::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Long enough for a loaded 2-core machine; only reached when something is broken.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub fn node_identity(ca: &ClusterCa, node: u64) -> TlsIdentity {
    let cert = ca.issue_node(NodeId(node)).unwrap();
    TlsIdentity::from_pem(ca.cluster(), ca.cert_pem(), &cert.cert_pem, &cert.key_pem).unwrap()
}

pub fn client_identity(ca: &ClusterCa) -> TlsIdentity {
    let cert = ca.issue_client().unwrap();
    TlsIdentity::from_pem(ca.cluster(), ca.cert_pem(), &cert.cert_pem, &cert.key_pem).unwrap()
}

pub fn fast_config(node: u64, addr: SocketAddr) -> TransportConfig {
    let mut config = TransportConfig::new(NodeId(node), addr);
    config.reconnect_backoff_min = Duration::from_millis(20);
    config.reconnect_backoff_max = Duration::from_millis(200);
    config
}

pub fn start(config: TransportConfig, identity: &TlsIdentity) -> (Transport, TransportEvents) {
    Transport::bind(config, identity).unwrap()
}

/// Waits for the first event `pick` accepts, dropping the others.
pub async fn wait_for<T>(
    events: &mut TransportEvents,
    mut pick: impl FnMut(TransportEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let event = events.recv().await.expect("transport closed");
            if let Some(t) = pick(event) {
                return t;
            }
        }
    })
    .await
    .expect("event did not arrive before the deadline")
}

pub async fn wait_connected(events: &mut TransportEvents, peer: u64) {
    wait_for(events, |e| {
        matches!(e, TransportEvent::PeerConnected(p) if p == NodeId(peer)).then_some(())
    })
    .await
}

pub async fn wait_message(events: &mut TransportEvents) -> Message {
    wait_for(events, |e| match e {
        TransportEvent::Message(m) => Some(m.into_message()),
        _ => None,
    })
    .await
}

/// Polls `cond` until it holds; yields to the runtime between polls.
pub async fn wait_until(mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(DEADLINE, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition did not hold before the deadline")
}

pub fn heartbeat(from: u64, to: u64, context: u64) -> Message {
    Message {
        log: LogId(7),
        from: NodeId(from),
        to: NodeId(to),
        term: Term(3),
        body: MessageBody::Heartbeat(Heartbeat {
            leader_commit: LogIndex(0),
            read_context: Some(context),
        }),
    }
}

pub fn append(from: u64, to: u64, prev: u64, count: u64, size: usize) -> Message {
    let payload = Bytes::from(vec![(prev % 251) as u8; size]);
    Message {
        log: LogId(7),
        from: NodeId(from),
        to: NodeId(to),
        term: Term(3),
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: LogIndex(prev),
            prev_log_term: Term(3),
            leader_commit: LogIndex(prev),
            entries: (0..count)
                .map(|i| Entry {
                    index: LogIndex(prev + 1 + i),
                    term: Term(3),
                    kind: EntryKind::Normal,
                    data: payload.clone(),
                })
                .collect(),
        }),
    }
}

/// Captures the log output of the current thread (the test's current-thread runtime).
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> LogCapture {
        self.clone()
    }
}
