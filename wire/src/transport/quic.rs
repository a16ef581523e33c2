//! quinn configuration shared by every endpoint raftwal opens: the QUIC transport parameters
//! (flow-control windows, timeouts, stream counts) and endpoint construction.
//!
//! The benchmark's `raw-quinn` reference uses the same functions, so that it measures QUIC with
//! exactly the settings the transport runs with.

use crate::tls::{client_crypto, server_crypto, IdentityError, TlsIdentity};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// QUIC transport parameters.
#[derive(Clone, Debug)]
pub struct QuicTuning {
    /// A connection with no packet for this long is dead. Keep-alives are sent at a third of it.
    pub idle_timeout: Duration,
    /// Bytes one stream may have in flight unread by the receiver (QUIC stream flow control).
    pub stream_receive_window_bytes: u32,
    /// Bytes a connection may have in flight unread by the receiver (all streams together).
    pub connection_receive_window_bytes: u32,
    /// Bytes a connection may have sent and not yet acknowledged.
    pub send_window_bytes: u64,
    /// Bidirectional streams a client may have open at once (client sessions, subscriptions).
    pub bidi_streams_max: u32,
    /// The largest UDP payload path MTU discovery tries (it starts at QUIC's 1200 bytes and
    /// probes upwards; probes a path cannot carry are lost and cost nothing else), and the
    /// largest this endpoint says it accepts (QUIC's `max_udp_payload_size` transport
    /// parameter: a peer never sends more, so both ends must raise it). Larger packets mean
    /// fewer packets, and per-packet work (encryption calls, headers, acknowledgements)
    /// dominates a replication stream of small entries. At most [`MTU_UPPER_BOUND_MAX_BYTES`]:
    /// quinn hands the kernel up to ten packets in one UDP segmentation-offload send, which
    /// must fit one 64 KiB datagram; above that bound every such send fails and the connection
    /// crawls (docs/benchmarks.md, "Packet size").
    pub mtu_upper_bound_bytes: u16,
}

/// The largest `mtu_upper_bound_bytes` that keeps quinn's segmentation-offload sends (up to ten
/// packets of that size in one call) within a 64 KiB UDP datagram.
pub const MTU_UPPER_BOUND_MAX_BYTES: u16 = 6500;

/// Packets quinn puts in one segmentation-offload send, at most (its `MAX_TRANSMIT_SEGMENTS`).
const GSO_PACKETS_MAX: u32 = 10;

/// The largest UDP payload one IPv4 datagram carries (65,535 bytes less the IP and UDP headers).
const UDP_PAYLOAD_MAX_BYTES: u32 = 65_507;

const _: () = assert!(MTU_UPPER_BOUND_MAX_BYTES as u32 * GSO_PACKETS_MAX <= UDP_PAYLOAD_MAX_BYTES);

impl Default for QuicTuning {
    fn default() -> QuicTuning {
        QuicTuning {
            idle_timeout: Duration::from_secs(10),
            stream_receive_window_bytes: 8 * 1024 * 1024,
            connection_receive_window_bytes: 16 * 1024 * 1024,
            send_window_bytes: 16 * 1024 * 1024,
            bidi_streams_max: 256,
            mtu_upper_bound_bytes: MTU_UPPER_BOUND_MAX_BYTES,
        }
    }
}

impl QuicTuning {
    /// `mtu_upper_bound_bytes`, held between QUIC's minimum (1200) and
    /// [`MTU_UPPER_BOUND_MAX_BYTES`].
    pub fn mtu_bytes(&self) -> u16 {
        self.mtu_upper_bound_bytes.clamp(1200, MTU_UPPER_BOUND_MAX_BYTES)
    }

    /// The quinn transport configuration for these parameters.
    pub fn transport_config(&self) -> Arc<quinn::TransportConfig> {
        let mut t = quinn::TransportConfig::default();
        // An idle timeout above quinn's bound is clamped to the bound rather than refused.
        let idle = quinn::IdleTimeout::try_from(self.idle_timeout)
            .unwrap_or_else(|_| quinn::IdleTimeout::from(quinn::VarInt::MAX));
        t.max_idle_timeout(Some(idle));
        t.keep_alive_interval(Some(self.idle_timeout / 3));
        t.stream_receive_window(quinn::VarInt::from_u32(self.stream_receive_window_bytes));
        t.receive_window(quinn::VarInt::from_u32(self.connection_receive_window_bytes));
        t.send_window(self.send_window_bytes);
        t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(self.bidi_streams_max));
        // Peers open exactly two unidirectional streams each; a few more leave room for a
        // replacement stream without ever allowing a flood of them.
        t.max_concurrent_uni_streams(quinn::VarInt::from_u32(4));
        let mut mtu = quinn::MtuDiscoveryConfig::default();
        mtu.upper_bound(self.mtu_bytes());
        t.mtu_discovery_config(Some(mtu));
        Arc::new(t)
    }
}

/// Why an endpoint could not be opened.
#[derive(Debug, Error)]
pub enum EndpointError {
    /// The TLS identity could not be turned into a configuration.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The UDP socket could not be bound (address in use, no permission, no runtime).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// The server configuration: `identity`'s certificate, client certificates required, the given
/// ALPN protocols.
pub fn server_config(
    identity: &TlsIdentity,
    alpn: &[&[u8]],
    tuning: &QuicTuning,
) -> Result<quinn::ServerConfig, IdentityError> {
    let mut config = quinn::ServerConfig::with_crypto(server_crypto(identity, alpn)?);
    config.transport_config(tuning.transport_config());
    // Clients and peers move between hosts only by restarting; path migration is not needed
    // and would let a spoofed address take over a connection's return path.
    config.migration(false);
    Ok(config)
}

/// The client configuration: `identity`'s certificate, the cluster CA as the only root, `alpn`.
pub fn client_config(
    identity: &TlsIdentity,
    alpn: &[u8],
    tuning: &QuicTuning,
) -> Result<quinn::ClientConfig, IdentityError> {
    let mut config = quinn::ClientConfig::new(client_crypto(identity, alpn)?);
    config.transport_config(tuning.transport_config());
    Ok(config)
}

/// Bytes asked for each UDP socket's kernel receive and send buffers.
///
/// The default receive buffer (about 208 KiB) overflows when a burst of replication traffic
/// arrives while the shard thread is busy (a batch's fdatasync runs on it), and every datagram
/// dropped there is a QUIC loss: a retransmission and a halved congestion window, seen as a
/// latency spike. The kernel caps the request at `net.core.rmem_max` / `wmem_max`; whatever it
/// grants is used.
pub(crate) const SOCKET_BUFFER_BYTES: usize = 4 << 20;

fn size_socket_buffers(socket: &std::net::UdpSocket) {
    let socket = socket2::SockRef::from(socket);
    // Best effort: a smaller buffer only means more losses under bursts, never wrong results.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
}

/// Opens a quinn endpoint on `addr` on the current tokio runtime (which may be a current-thread
/// runtime), serving `server` when given, accepting UDP payloads up to `tuning`'s MTU bound.
pub fn open_endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
    tuning: &QuicTuning,
) -> Result<quinn::Endpoint, EndpointError> {
    open_endpoint_with(addr, server, tuning, quinn::EndpointConfig::default())
}

/// [`open_endpoint`] for a node: its stateless-reset key is derived from the node's identity
/// (see [`TlsIdentity::stateless_reset_key`]) instead of drawn at random, so that after a
/// crash the restarted node answers its peers' packets on their old connections with resets
/// they recognise. Without that, a peer that dialed the node would keep the dead connection
/// until the idle timeout, and the restarted node, which waits for that peer to dial, would
/// stay cut off from it as long.
pub fn open_node_endpoint(
    addr: SocketAddr,
    server: quinn::ServerConfig,
    tuning: &QuicTuning,
    identity: &TlsIdentity,
) -> Result<quinn::Endpoint, EndpointError> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &identity.stateless_reset_key());
    let mut config = quinn::EndpointConfig::new(Arc::new(key));
    config.cid_generator(|| Box::new(RandomCids { next: 0 }));
    open_endpoint_with(addr, Some(server), tuning, config)
}

/// Random 8-byte connection ids, all of which the endpoint takes for possibly its own. quinn's
/// default generator signs its ids with a key drawn at each start and drops packets for ids it
/// did not sign, so a restarted node would never answer its old connections' packets with the
/// reset that ends them. A reset answers only a packet larger than itself, at most one per
/// 20 ms (quinn's `min_reset_interval`).
struct RandomCids {
    /// Ids handed out when the system has no randomness to give: an id must be unique among
    /// this endpoint's connections, not secret (it travels in clear).
    next: u64,
}

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let mut bytes = [0; 8];
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
            bytes = self.next.to_le_bytes();
            self.next = self.next.wrapping_add(1);
        }
        quinn::ConnectionId::new(&bytes)
    }

    fn cid_len(&self) -> usize {
        8
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

fn open_endpoint_with(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
    tuning: &QuicTuning,
    mut endpoint_config: quinn::EndpointConfig,
) -> Result<quinn::Endpoint, EndpointError> {
    let socket =
        std::net::UdpSocket::bind(addr).map_err(|source| EndpointError::Bind { addr, source })?;
    size_socket_buffers(&socket);
    let runtime = quinn::default_runtime().ok_or_else(|| EndpointError::Bind {
        addr,
        source: std::io::Error::other("no tokio runtime is running on this thread"),
    })?;
    // quinn's default (1472) would cap every peer's path MTU discovery at Ethernet's size, on
    // loopback too, whatever the transport configuration asks for.
    endpoint_config
        .max_udp_payload_size(tuning.mtu_bytes())
        .expect("1200 to 6500 bytes is within QUIC's bounds");
    quinn::Endpoint::new(endpoint_config, server, socket, runtime)
        .map_err(|source| EndpointError::Bind { addr, source })
}
