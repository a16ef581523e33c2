//! A node's or client's TLS identity (cluster CA, own certificate and key) and the mutual-TLS
//! configurations built from it for quinn.
//!
//! The TLS handshake checks the certificate chain against the cluster CA in both directions.
//! Which node or client a certificate belongs to is checked by name: a dialing node asks for
//! the name of the node it dials (`rustls` refuses a server certificate without it), and an
//! accepting node checks the name of the dialer with [`check_peer_name`] once the dialer has
//! said who it is.

use super::certs::{
    node_cert_file, node_key_file, CA_CERT_FILE, CLIENT_CERT_FILE, CLIENT_KEY_FILE, CLUSTER_ID_FILE,
};
use super::names::parse_cluster_id;
use crate::types::{ClusterId, NodeId};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::RootCertStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Why an identity could not be loaded or turned into a TLS configuration.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A PEM document holds no certificate or key of the expected kind.
    #[error("invalid PEM in {what}: {detail}")]
    Pem {
        /// Which document.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// The cluster id file does not hold 16 hex digits.
    #[error("invalid cluster id in {path}")]
    ClusterId {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the certificates or key (wrong key for the certificate, bad CA, ...).
    #[error("TLS configuration refused: {0}")]
    Tls(String),
}

/// Why a connected peer's certificate does not prove the identity it claims.
#[derive(Debug, Error)]
pub enum NameCheckError {
    /// The connection carries no client certificate (impossible with our server config, kept as
    /// a refusal rather than a panic).
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// The certificate could not be parsed.
    #[error("the peer's certificate cannot be parsed: {0}")]
    Unparsable(rustls::Error),
    /// The certificate does not name what the peer claims to be.
    #[error("the peer's certificate is not valid for {expected}: {source}")]
    NameMismatch {
        /// The name the claim requires.
        expected: String,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// The cluster CA plus one certificate chain and its key.
pub struct TlsIdentity {
    cluster: ClusterId,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsIdentity(cluster {:?}, {} certificates)", self.cluster, self.chain.len())
    }
}

impl Clone for TlsIdentity {
    fn clone(&self) -> TlsIdentity {
        TlsIdentity {
            cluster: self.cluster,
            roots: self.roots.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

fn read(path: &Path) -> Result<String, IdentityError> {
    std::fs::read_to_string(path)
        .map_err(|source| IdentityError::Read { path: path.into(), source })
}

impl TlsIdentity {
    /// An identity from PEM text: the cluster CA certificate, this party's certificate chain
    /// (leaf first) and its private key.
    pub fn from_pem(
        cluster: ClusterId,
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<TlsIdentity, IdentityError> {
        let pem_err = |what: &str| {
            let what = what.to_owned();
            move |e: rustls::pki_types::pem::Error| IdentityError::Pem {
                what,
                detail: e.to_string(),
            }
        };
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(ca.map_err(pem_err("CA certificate"))?).map_err(|e| IdentityError::Pem {
                what: "CA certificate".into(),
                detail: e.to_string(),
            })?;
        }
        if roots.is_empty() {
            return Err(IdentityError::Pem {
                what: "CA certificate".into(),
                detail: "no certificate".into(),
            });
        }
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem_err("certificate"))?;
        if chain.is_empty() {
            return Err(IdentityError::Pem {
                what: "certificate".into(),
                detail: "no certificate".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(pem_err("key"))?;
        Ok(TlsIdentity { cluster, roots: Arc::new(roots), chain, key })
    }

    /// Loads node `node`'s identity from a directory written by `raftwal certs`.
    pub fn load_node(dir: &Path, node: NodeId) -> Result<TlsIdentity, IdentityError> {
        let cluster = read_cluster_id(dir)?;
        TlsIdentity::from_pem(
            cluster,
            &read(&dir.join(CA_CERT_FILE))?,
            &read(&node_cert_file(dir, node))?,
            &read(&node_key_file(dir, node))?,
        )
    }

    /// Loads the client identity from a directory written by `raftwal certs`.
    pub fn load_client(dir: &Path) -> Result<TlsIdentity, IdentityError> {
        let cluster = read_cluster_id(dir)?;
        TlsIdentity::from_pem(
            cluster,
            &read(&dir.join(CA_CERT_FILE))?,
            &read(&dir.join(CLIENT_CERT_FILE))?,
            &read(&dir.join(CLIENT_KEY_FILE))?,
        )
    }

    /// The cluster this identity belongs to.
    pub fn cluster(&self) -> ClusterId {
        self.cluster
    }
}

fn read_cluster_id(dir: &Path) -> Result<ClusterId, IdentityError> {
    let path = dir.join(CLUSTER_ID_FILE);
    parse_cluster_id(&read(&path)?).ok_or(IdentityError::ClusterId { path })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side of mutual TLS for quinn: presents `identity`'s certificate, requires a client
/// certificate signed by the cluster CA, and offers the given ALPN protocols.
pub fn server_crypto(
    identity: &TlsIdentity,
    alpn: &[&[u8]],
) -> Result<Arc<QuicServerConfig>, IdentityError> {
    let tls = |e: &dyn std::fmt::Display| IdentityError::Tls(e.to_string());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        identity.roots.clone(),
        provider(),
    )
    .build()
    .map_err(|e| tls(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(QuicServerConfig::try_from(config).map_err(|e| tls(&e))?))
}

/// The client side of mutual TLS for quinn: presents `identity`'s certificate, trusts only the
/// cluster CA, and asks for the ALPN protocol `alpn`. The server name given to `connect` is
/// checked against the server's certificate.
pub fn client_crypto(
    identity: &TlsIdentity,
    alpn: &[u8],
) -> Result<Arc<QuicClientConfig>, IdentityError> {
    let tls = |e: &dyn std::fmt::Display| IdentityError::Tls(e.to_string());
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(&e))?
        .with_root_certificates(identity.roots.clone())
        .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(QuicClientConfig::try_from(config).map_err(|e| tls(&e))?))
}

/// Checks that the certificate `connection`'s remote side authenticated with carries the name
/// `expected` (the chain itself was verified by the handshake).
pub fn check_peer_name(
    connection: &quinn::Connection,
    expected: &str,
) -> Result<(), NameCheckError> {
    let chain = connection
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or(NameCheckError::NoCertificate)?;
    let leaf = chain.first().ok_or(NameCheckError::NoCertificate)?;
    let parsed =
        rustls::server::ParsedCertificate::try_from(leaf).map_err(NameCheckError::Unparsable)?;
    let name =
        ServerName::try_from(expected.to_owned()).map_err(|e| NameCheckError::NameMismatch {
            expected: expected.to_owned(),
            source: rustls::Error::General(e.to_string()),
        })?;
    rustls::client::verify_server_name(&parsed, &name)
        .map_err(|source| NameCheckError::NameMismatch { expected: expected.to_owned(), source })
}
