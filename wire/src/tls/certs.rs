//! Generation of a cluster's certificates (`raftwal certs`): a cluster CA, one certificate per
//! node and a client certificate, written as PEM files.
//!
//! Files written by [`ClusterCerts::write_to_dir`] (keys are created with mode 0600, and no
//! existing file is ever overwritten):
//!
//! ```text
//! cluster-id                      the cluster id, 16 hex digits
//! ca.pem       ca.key.pem         the cluster CA (keep the key offline to add nodes later)
//! node-<N>.pem node-<N>.key.pem   node N's certificate (names n<N>.c<cluster>.raftwal)
//! client.pem   client.key.pem     a client certificate (names client.c<cluster>.raftwal)
//! ```
//!
//! Key pairs are ECDSA P-256 from `ring`'s system random generator.

use super::names::{client_name, cluster_name, format_cluster_id, node_name};
use crate::types::{ClusterId, NodeId};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why certificates could not be generated or written.
#[derive(Debug, Error)]
pub enum CertError {
    /// Key generation or signing failed inside rcgen (an environment problem, such as no
    /// system randomness).
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written; nothing is overwritten, so remove old files first.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A request the generator refuses (no nodes, duplicate node ids).
    #[error("invalid certificate request: {0}")]
    Invalid(String),
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print private keys into logs.
        f.write_str("IssuedCert { .. }")
    }
}

/// A cluster's certificate authority, able to issue node and client certificates.
pub struct ClusterCa {
    cluster: ClusterId,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterCa({})", format_cluster_id(self.cluster))
    }
}

impl ClusterCa {
    /// A new CA for `cluster`, or for a cluster id derived from the CA's fresh key when `None`.
    pub fn generate(cluster: Option<ClusterId>) -> Result<ClusterCa, CertError> {
        let key = KeyPair::generate()?;
        let cluster = cluster.unwrap_or_else(|| {
            // The key pair is fresh randomness, so a hash of its public key is a random id
            // without another source of randomness.
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.public_key_raw().hash(&mut h);
            ClusterId(h.finish())
        });
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("raftwal cluster {} CA", format_cluster_id(cluster)));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(ClusterCa { cluster, cert_pem: cert.pem(), issuer: Issuer::new(params, key) })
    }

    /// The cluster this CA issues for.
    pub fn cluster(&self) -> ClusterId {
        self.cluster
    }

    /// The CA certificate (what nodes and clients trust).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's certificate and key.
    pub fn to_issued(&self) -> IssuedCert {
        IssuedCert { cert_pem: self.cert_pem.clone(), key_pem: self.issuer.key().serialize_pem() }
    }

    /// A certificate for node `node` of this CA's cluster.
    pub fn issue_node(&self, node: NodeId) -> Result<IssuedCert, CertError> {
        self.issue_node_in(self.cluster, node)
    }

    /// A node certificate naming `cluster`, which may differ from the CA's own cluster. Only a
    /// misconfiguration does that; tests use it to check that such a peer is refused.
    pub fn issue_node_in(&self, cluster: ClusterId, node: NodeId) -> Result<IssuedCert, CertError> {
        let name = node_name(cluster, node);
        self.issue(
            vec![name.clone(), cluster_name(cluster)],
            &name,
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// A client certificate of this CA's cluster.
    pub fn issue_client(&self) -> Result<IssuedCert, CertError> {
        let name = client_name(self.cluster);
        self.issue(vec![name.clone()], &name, vec![ExtendedKeyUsagePurpose::ClientAuth])
    }

    fn issue(
        &self,
        names: Vec<String>,
        common_name: &str,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<IssuedCert, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// Everything `raftwal certs` produces.
#[derive(Debug)]
pub struct ClusterCerts {
    /// The cluster id every certificate names.
    pub cluster: ClusterId,
    /// The CA certificate and key.
    pub ca: IssuedCert,
    /// One certificate per node.
    pub nodes: Vec<(NodeId, IssuedCert)>,
    /// A client certificate.
    pub client: IssuedCert,
}

impl ClusterCerts {
    /// A new CA, certificates for `nodes` and one client certificate.
    pub fn generate(
        cluster: Option<ClusterId>,
        nodes: &[NodeId],
    ) -> Result<ClusterCerts, CertError> {
        if nodes.is_empty() {
            return Err(CertError::Invalid("at least one node is needed".into()));
        }
        let mut sorted = nodes.to_vec();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(CertError::Invalid("node ids must be distinct".into()));
        }
        let ca = ClusterCa::generate(cluster)?;
        let mut issued = Vec::with_capacity(nodes.len());
        for &node in nodes {
            issued.push((node, ca.issue_node(node)?));
        }
        Ok(ClusterCerts {
            cluster: ca.cluster(),
            ca: ca.to_issued(),
            nodes: issued,
            client: ca.issue_client()?,
        })
    }

    /// Writes the files listed in the module doc into `dir` (created if missing) and returns
    /// their paths. Refuses to overwrite any existing file.
    pub fn write_to_dir(&self, dir: &Path) -> Result<Vec<PathBuf>, CertError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| CertError::Write { path: dir.to_owned(), source })?;
        let mut files: Vec<(PathBuf, String, bool)> = vec![
            (dir.join(CLUSTER_ID_FILE), format!("{}\n", format_cluster_id(self.cluster)), false),
            (dir.join(CA_CERT_FILE), self.ca.cert_pem.clone(), false),
            (dir.join(CA_KEY_FILE), self.ca.key_pem.clone(), true),
            (dir.join(CLIENT_CERT_FILE), self.client.cert_pem.clone(), false),
            (dir.join(CLIENT_KEY_FILE), self.client.key_pem.clone(), true),
        ];
        for (node, cert) in &self.nodes {
            files.push((node_cert_file(dir, *node), cert.cert_pem.clone(), false));
            files.push((node_key_file(dir, *node), cert.key_pem.clone(), true));
        }
        // Check first, so that a refused run writes nothing at all.
        if let Some((path, _, _)) = files.iter().find(|(p, _, _)| p.exists()) {
            return Err(CertError::Write {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "file exists"),
            });
        }
        for (path, text, secret) in &files {
            write_new(path, text.as_bytes(), *secret)
                .map_err(|source| CertError::Write { path: path.clone(), source })?;
        }
        Ok(files.into_iter().map(|(p, _, _)| p).collect())
    }
}

/// File holding the cluster id.
pub const CLUSTER_ID_FILE: &str = "cluster-id";
/// File holding the CA certificate.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File holding the CA key.
pub const CA_KEY_FILE: &str = "ca.key.pem";
/// File holding the client certificate.
pub const CLIENT_CERT_FILE: &str = "client.pem";
/// File holding the client key.
pub const CLIENT_KEY_FILE: &str = "client.key.pem";

/// Path of node `node`'s certificate in `dir`.
pub fn node_cert_file(dir: &Path, node: NodeId) -> PathBuf {
    dir.join(format!("node-{}.pem", node.get()))
}

/// Path of node `node`'s key in `dir`.
pub fn node_key_file(dir: &Path, node: NodeId) -> PathBuf {
    dir.join(format!("node-{}.key.pem", node.get()))
}

fn write_new(path: &Path, data: &[u8], secret: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path)?;
    file.write_all(data)?;
    file.sync_all()
}
