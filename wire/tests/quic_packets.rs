//! Packet size on loopback QUIC: both ends advertise and probe past Ethernet's 1472-byte UDP
//! payload (quinn's default endpoint would cap path MTU discovery there), stay within the bound
//! that keeps segmentation-offload sends inside one 64 KiB datagram, and still talk to a peer
//! that keeps quinn's defaults.

#![allow(clippy::unwrap_used)]

mod support;

use raftwal_wire::tls::certs::ClusterCa;
use raftwal_wire::tls::names::node_name;
use raftwal_wire::tls::ALPN_PEER;
use raftwal_wire::transport::*;
use raftwal_wire::types::NodeId;
use support::*;

/// quinn's default `max_udp_payload_size`: Ethernet's 1500 bytes less the IP and UDP headers.
const ETHERNET_UDP_PAYLOAD_BYTES: u16 = 1472;

/// Bytes streamed over each connection: enough packets for discovery to finish meanwhile.
const STREAM_BYTES: usize = 4 << 20;

/// What the server saw: the stream's checksum and length, and its path MTU at the end.
type Received = (u64, usize, u16);

/// Serves `endpoint`: accepts one peer connection, reads one unidirectional stream to its end
/// and reports what it saw; then keeps the connection until the client closes it.
fn serve(endpoint: quinn::Endpoint) -> tokio::sync::oneshot::Receiver<Received> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let connection = endpoint.accept().await.unwrap().await.unwrap();
        let mut stream = connection.accept_uni().await.unwrap();
        let (mut sum, mut len) = (0u64, 0usize);
        while let Some(chunk) = stream.read_chunk(usize::MAX, true).await.unwrap() {
            sum = checksum_from(sum, &chunk.bytes);
            len += chunk.bytes.len();
        }
        let _ = tx.send((sum, len, connection.stats().path.current_mtu));
        connection.closed().await;
    });
    rx
}

fn payload() -> Vec<u8> {
    (0..STREAM_BYTES).map(|i| (i % 251) as u8).collect()
}

/// A running checksum, so that chunks summed one after the other give the whole's.
fn checksum_from(sum: u64, data: &[u8]) -> u64 {
    data.iter().fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)))
}

/// Streams the payload to the server at `addr` from `endpoint`; once the server has it all,
/// waits until the path MTU passes `above` (0: no wait), closes the connection and returns
/// what the server saw and the client's path MTU.
async fn stream_to(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    server: (std::net::SocketAddr, tokio::sync::oneshot::Receiver<Received>),
    name: &str,
    above: u16,
) -> (Received, u16) {
    let connection = endpoint.connect_with(config, server.0, name).unwrap().await.unwrap();
    let mut stream = connection.open_uni().await.unwrap();
    stream.write_all(&payload()).await.unwrap();
    stream.finish().unwrap();
    let received = tokio::time::timeout(DEADLINE, server.1).await.unwrap().unwrap();
    if above > 0 {
        wait_until(|| connection.stats().path.current_mtu > above).await;
    }
    let mtu = connection.stats().path.current_mtu;
    connection.close(0u32.into(), b"done");
    (received, mtu)
}

/// The loopback interface's MTU, when Linux reports it.
fn loopback_mtu() -> Option<u32> {
    std::fs::read_to_string("/sys/class/net/lo/mtu").ok()?.trim().parse().ok()
}

#[tokio::test]
async fn path_mtu_climbs_past_ethernet_size_and_stays_within_the_offload_bound() {
    // Linux's loopback carries 65,536 bytes; one configured below Ethernet's payload plus
    // headers could not show the climb.
    if let Some(mtu) = loopback_mtu().filter(|&m| m < 1600) {
        eprintln!("skipped: the loopback MTU is {mtu} bytes");
        return;
    }
    let ca = ClusterCa::generate(None).unwrap();
    let (server_id, client_id) = (node_identity(&ca, 2), node_identity(&ca, 1));
    let tuning = QuicTuning::default();
    assert_eq!(tuning.mtu_bytes(), MTU_UPPER_BOUND_MAX_BYTES);
    let server = server_config(&server_id, &[ALPN_PEER], &tuning).unwrap();
    let server_endpoint = open_endpoint(loopback(), Some(server), &tuning).unwrap();
    let addr = server_endpoint.local_addr().unwrap();
    let server = (addr, serve(server_endpoint));

    let endpoint = open_endpoint(loopback(), None, &tuning).unwrap();
    let config = client_config(&client_id, ALPN_PEER, &tuning).unwrap();
    let name = node_name(ca.cluster(), NodeId(2));
    let ((sum, len, server_mtu), client_mtu) =
        stream_to(&endpoint, config, server, &name, ETHERNET_UDP_PAYLOAD_BYTES).await;

    assert_eq!(
        (sum, len),
        (checksum_from(0, &payload()), STREAM_BYTES),
        "every byte arrived, in order"
    );
    assert!(client_mtu > ETHERNET_UDP_PAYLOAD_BYTES, "client's path MTU {client_mtu}");
    assert!(client_mtu <= MTU_UPPER_BOUND_MAX_BYTES, "client's path MTU {client_mtu}");
    assert!(server_mtu <= MTU_UPPER_BOUND_MAX_BYTES, "server's path MTU {server_mtu}");
}

#[tokio::test]
async fn a_peer_with_quinns_default_payload_limit_is_sent_no_larger_packets() {
    let ca = ClusterCa::generate(None).unwrap();
    let (server_id, client_id) = (node_identity(&ca, 2), node_identity(&ca, 1));
    let tuning = QuicTuning::default();
    // The server keeps quinn's default endpoint configuration (and so says it accepts 1472
    // bytes); the client is raftwal's.
    let server = server_config(&server_id, &[ALPN_PEER], &tuning).unwrap();
    let socket = std::net::UdpSocket::bind(loopback()).unwrap();
    let server_endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        quinn::default_runtime().unwrap(),
    )
    .unwrap();
    let addr = server_endpoint.local_addr().unwrap();
    let server = (addr, serve(server_endpoint));

    let endpoint = open_endpoint(loopback(), None, &tuning).unwrap();
    let config = client_config(&client_id, ALPN_PEER, &tuning).unwrap();
    let name = node_name(ca.cluster(), NodeId(2));
    let ((sum, len, _), client_mtu) = stream_to(&endpoint, config, server, &name, 0).await;

    assert_eq!(
        (sum, len),
        (checksum_from(0, &payload()), STREAM_BYTES),
        "every byte arrived, in order"
    );
    assert!(client_mtu <= ETHERNET_UDP_PAYLOAD_BYTES, "client's path MTU {client_mtu}");
}

#[test]
fn the_mtu_bound_is_held_between_quics_minimum_and_the_offload_bound() {
    let mut tuning = QuicTuning { mtu_upper_bound_bytes: 9000, ..QuicTuning::default() };
    assert_eq!(tuning.mtu_bytes(), MTU_UPPER_BOUND_MAX_BYTES);
    tuning.mtu_upper_bound_bytes = 100;
    assert_eq!(tuning.mtu_bytes(), 1200);
    tuning.mtu_upper_bound_bytes = 4000;
    assert_eq!(tuning.mtu_bytes(), 4000);
}
