//! Test support for the remote client: certificates of a small cluster, fake nodes (a real
//! [`Transport`] whose client requests and subscriptions a test answers as it scripts), and a
//! node address that never answers.

use super::{Client, ClientConfig};
use raftwal_wire::tls::{ClusterCerts, TlsIdentity};
use raftwal_wire::transport::{Transport, TransportConfig, TransportEvents};
use raftwal_wire::types::{LogId, NodeId};
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

/// A current-thread runtime for one test.
pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The certificates of nodes 1 to `nodes` (and a client) in a fresh directory.
pub(super) fn certs(nodes: u64) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<NodeId> = (1..=nodes).map(NodeId).collect();
    ClusterCerts::generate(None, &ids).unwrap().write_to_dir(dir.path()).unwrap();
    dir
}

/// Starts fake node `node` with its certificate from `dir`, on loopback, serving its events with
/// `serve` on the current runtime (call inside one): returns its address.
pub(super) fn spawn_node<F, Fut>(dir: &Path, node: u64, serve: F) -> SocketAddr
where
    F: FnOnce(TransportEvents) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let identity = TlsIdentity::load_node(dir, NodeId(node)).unwrap();
    let config = TransportConfig::new(NodeId(node), "127.0.0.1:0".parse().unwrap());
    let (transport, events) = Transport::bind(config, &identity).unwrap();
    let addr = transport.local_addr().unwrap();
    let serving = serve(events);
    tokio::spawn(async move {
        let _transport = transport;
        serving.await;
    });
    addr
}

/// A client of log 0 whose one node never answers (a bound socket no one reads: every
/// handshake runs into the connect timeout), with these timeouts. Keep the directory and the
/// socket for as long as the client.
pub(super) fn client_of_a_silent_node(
    connect_timeout: Duration,
    retry_deadline: Duration,
) -> (TempDir, UdpSocket, Arc<Client>) {
    let dir = certs(1);
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut config = ClientConfig::new(vec![silent.local_addr().unwrap()], dir.path(), LogId(0));
    config.connect_timeout = connect_timeout;
    config.retry_deadline = retry_deadline;
    let client = Arc::new(Client::new(config).unwrap());
    (dir, silent, client)
}
