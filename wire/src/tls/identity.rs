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
use super::names::{client_name, format_cluster_id, node_name, parse_cluster_id};
use crate::types::{ClusterId, NodeId};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, RootCertStore};
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
    /// The private key is not the key of the certificate (their public keys differ): the two
    /// files are not from one `raftwal certs` run, or one was replaced.
    #[error(
        "the {key} does not match the {certificate} (their public keys differ): use the key \
         written with that certificate"
    )]
    KeyMismatch {
        /// The key document (with its file, when loaded from one).
        key: String,
        /// The certificate document (with its file, when loaded from one).
        certificate: String,
    },
    /// The certificate is not the one the cluster id file and the node id ask for: the
    /// `cluster-id` file and the certificate are not from one `raftwal certs` run, or the
    /// certificate is another node's (or the client's) renamed.
    #[error(
        "the {certificate} is not valid for {expected}, the name that {cluster_id} ({cluster}) \
         asks for: use the cluster-id and certificate files of one `raftwal certs` run"
    )]
    NameMismatch {
        /// The certificate document (with its file).
        certificate: String,
        /// The name the certificate must carry.
        expected: String,
        /// The cluster id file.
        cluster_id: PathBuf,
        /// The cluster id that file holds, as 16 hex digits.
        cluster: String,
    },
    /// rustls refused the certificates or key (a bad CA, ...).
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

/// One PEM document of an identity: its text, and what it is called in errors (its kind, and
/// its file when it was read from one).
struct Document<'a> {
    name: String,
    pem: &'a str,
}

impl<'a> Document<'a> {
    fn text(kind: &str, pem: &'a str) -> Document<'a> {
        Document { name: kind.to_owned(), pem }
    }

    fn file(kind: &str, path: &Path, pem: &'a str) -> Document<'a> {
        Document { name: format!("{kind} {}", path.display()), pem }
    }

    fn invalid(&self, detail: impl std::fmt::Display) -> IdentityError {
        IdentityError::Pem { what: self.name.clone(), detail: detail.to_string() }
    }
}

impl TlsIdentity {
    /// An identity from PEM text: the cluster CA certificate, this party's certificate chain
    /// (leaf first) and its private key, which must be the key of the leaf certificate.
    pub fn from_pem(
        cluster: ClusterId,
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<TlsIdentity, IdentityError> {
        TlsIdentity::from_documents(
            cluster,
            Document::text("CA certificate", ca_pem),
            Document::text("certificate", cert_pem),
            Document::text("key", key_pem),
        )
    }

    fn from_documents(
        cluster: ClusterId,
        ca: Document<'_>,
        cert: Document<'_>,
        key: Document<'_>,
    ) -> Result<TlsIdentity, IdentityError> {
        let mut roots = RootCertStore::empty();
        for root in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
            roots.add(root.map_err(|e| ca.invalid(e))?).map_err(|e| ca.invalid(e))?;
        }
        if roots.is_empty() {
            return Err(ca.invalid("no certificate"));
        }
        let chain = CertificateDer::pem_slice_iter(cert.pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cert.invalid(e))?;
        if chain.is_empty() {
            return Err(cert.invalid("no certificate"));
        }
        let private =
            PrivateKeyDer::from_pem_slice(key.pem.as_bytes()).map_err(|e| key.invalid(e))?;
        check_key_matches(&chain, &private, &cert, &key)?;
        Ok(TlsIdentity { cluster, roots: Arc::new(roots), chain, key: private })
    }

    /// Loads node `node`'s identity from a directory written by `raftwal certs`. The
    /// certificate must carry node `node`'s name in the cluster of the `cluster-id` file.
    pub fn load_node(dir: &Path, node: NodeId) -> Result<TlsIdentity, IdentityError> {
        let cert_path = node_cert_file(dir, node);
        TlsIdentity::load(dir, &cert_path, &node_key_file(dir, node), |c| node_name(c, node))
    }

    /// Loads the client identity from a directory written by `raftwal certs`. The certificate
    /// must carry the client name of the cluster of the `cluster-id` file.
    pub fn load_client(dir: &Path) -> Result<TlsIdentity, IdentityError> {
        let cert_path = dir.join(CLIENT_CERT_FILE);
        TlsIdentity::load(dir, &cert_path, &dir.join(CLIENT_KEY_FILE), client_name)
    }

    /// Loads the cluster id and CA from `dir`, and the certificate and key from their files;
    /// errors name the file they are about. The certificate must carry the name `name` gives
    /// for the cluster id: otherwise peers would refuse this party only once it connects, and
    /// a node would first have written the wrong cluster id into its data directory.
    fn load(
        dir: &Path,
        cert_path: &Path,
        key_path: &Path,
        name: impl Fn(ClusterId) -> String,
    ) -> Result<TlsIdentity, IdentityError> {
        let cluster = read_cluster_id(dir)?;
        let ca_path = dir.join(CA_CERT_FILE);
        let (ca, cert, key) = (read(&ca_path)?, read(cert_path)?, read(key_path)?);
        let identity = TlsIdentity::from_documents(
            cluster,
            Document::file("CA certificate", &ca_path, &ca),
            Document::file("certificate", cert_path, &cert),
            Document::file("key", key_path, &key),
        )?;
        let expected = name(cluster);
        let document = Document::file("certificate", cert_path, &cert);
        let leaf = identity.chain.first().ok_or_else(|| document.invalid("no certificate"))?;
        if !carries_name(leaf, &expected, &document)? {
            return Err(IdentityError::NameMismatch {
                certificate: document.name,
                expected,
                cluster_id: dir.join(CLUSTER_ID_FILE),
                cluster: format_cluster_id(cluster),
            });
        }
        Ok(identity)
    }

    /// The cluster this identity belongs to.
    pub fn cluster(&self) -> ClusterId {
        self.cluster
    }

    /// A secret that stays the same across restarts with this identity: HMAC-SHA256, keyed
    /// with the private key, of a fixed label. A node keys its QUIC stateless resets with it
    /// (RFC 9000, 10.3), which a peer recognises only when they come from the key that issued
    /// its connection's ids: so a node that lost its connections in a crash can reset them.
    pub fn stateless_reset_key(&self) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.key.secret_der());
        let tag = ring::hmac::sign(&key, b"raftwal QUIC stateless reset key v1");
        let mut out = [0; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

/// Whether `leaf` carries the DNS name `expected`.
fn carries_name(
    leaf: &CertificateDer<'static>,
    expected: &str,
    document: &Document<'_>,
) -> Result<bool, IdentityError> {
    let parsed =
        rustls::server::ParsedCertificate::try_from(leaf).map_err(|e| document.invalid(e))?;
    let name = ServerName::try_from(expected.to_owned()).map_err(|e| document.invalid(e))?;
    Ok(rustls::client::verify_server_name(&parsed, &name).is_ok())
}

fn read_cluster_id(dir: &Path) -> Result<ClusterId, IdentityError> {
    let path = dir.join(CLUSTER_ID_FILE);
    parse_cluster_id(&read(&path)?).ok_or(IdentityError::ClusterId { path })
}

/// Checks that `key` is the private key of the leaf of `chain`, as TLS would find out only when a
/// configuration is built (at the node's first listen, with a message that names no file).
fn check_key_matches(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    cert_document: &Document<'_>,
    key_document: &Document<'_>,
) -> Result<(), IdentityError> {
    let signing = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| key_document.invalid(format!("the key cannot be used: {e}")))?;
    match CertifiedKey::new(chain.to_vec(), signing).keys_match() {
        // A key that cannot tell its public key is left to the TLS configuration, as rustls
        // itself does.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(IdentityError::KeyMismatch {
                key: key_document.name.clone(),
                certificate: cert_document.name.clone(),
            })
        }
        Err(e) => Err(cert_document.invalid(e)),
    }
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
