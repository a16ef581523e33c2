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
    /// probes upwards; probes a path cannot carry are lost and cost nothing else). Larger packets
    /// mean fewer packets, and per-packet work (encryption calls, acknowledgements, system
    /// calls) dominates a replication stream of small entries: on loopback, 8952 instead of
    /// quinn's 1452 raised a 3-node cluster's appends per second by about a third
    /// (docs/benchmarks.md).
    pub mtu_upper_bound_bytes: u16,
}

impl Default for QuicTuning {
    fn default() -> QuicTuning {
        QuicTuning {
            idle_timeout: Duration::from_secs(10),
            stream_receive_window_bytes: 8 * 1024 * 1024,
            connection_receive_window_bytes: 16 * 1024 * 1024,
            send_window_bytes: 16 * 1024 * 1024,
            bidi_streams_max: 256,
            mtu_upper_bound_bytes: 8952,
        }
    }
}

impl QuicTuning {
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
        mtu.upper_bound(self.mtu_upper_bound_bytes);
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
/// runtime), serving `server` when given.
pub fn open_endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> Result<quinn::Endpoint, EndpointError> {
    let socket =
        std::net::UdpSocket::bind(addr).map_err(|source| EndpointError::Bind { addr, source })?;
    size_socket_buffers(&socket);
    let runtime = quinn::default_runtime().ok_or_else(|| EndpointError::Bind {
        addr,
        source: std::io::Error::other("no tokio runtime is running on this thread"),
    })?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime)
        .map_err(|source| EndpointError::Bind { addr, source })
}
