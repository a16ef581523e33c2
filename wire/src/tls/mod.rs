//! Certificates and TLS configuration: the cluster CA, node and client certificates, and the
//! rustls/quinn configurations built from them.
//!
//! Owns the naming scheme that binds a certificate to a cluster id and a node id (see
//! [`names`]), certificate generation for `raftwal certs` ([`certs`]), loading an identity from
//! PEM files and building mutual-TLS configurations ([`identity`]). It opens no socket.
//!
//! Invariants:
//! 1. Every connection, peer or client, is mutually authenticated against the cluster CA:
//!    servers require a client certificate, clients verify the server's.
//! 2. A node's certificate names exactly one node of exactly one cluster
//!    (`n<node>.c<cluster>.raftwal`); a client certificate names the cluster's clients
//!    (`client.c<cluster>.raftwal`). A peer or client whose certificate does not carry the name
//!    it claims is refused.
//! 3. Only TLS 1.3 with the `ring` provider is configured (QUIC requires TLS 1.3).

pub mod certs;
pub mod identity;
pub mod names;

pub use certs::{CertError, ClusterCerts, IssuedCert};
pub use identity::{
    check_peer_name, client_crypto, server_crypto, IdentityError, NameCheckError, TlsIdentity,
};

/// ALPN of the peer (Raft) protocol.
pub const ALPN_PEER: &[u8] = b"raftwal-peer/1";

/// ALPN of the client protocol.
pub const ALPN_CLIENT: &[u8] = b"raftwal-client/1";
