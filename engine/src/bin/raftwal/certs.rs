//! `raftwal certs`: writes a cluster CA, one certificate per node (ids 1..=N) and a client
//! certificate, so that a cluster is set up with one command.
//!
//! Owns: the command's arguments and its report. The certificate logic is
//! `raftwal_wire::tls::certs`; this file only parses and reports.
//! Must not: overwrite existing files (the library refuses, and the error says which file).

use clap::Args;
use raftwal_wire::tls::certs::ClusterCerts;
use raftwal_wire::tls::names::{format_cluster_id, parse_cluster_id};
use raftwal_wire::types::{ClusterId, NodeId};
use std::path::{Path, PathBuf};

/// Arguments of `raftwal certs`.
#[derive(Debug, Args)]
pub(crate) struct CertsArgs {
    /// Directory to write into (created if missing; existing files are never overwritten).
    #[arg(long)]
    out: PathBuf,
    /// Number of nodes.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
    nodes: u64,
    /// Cluster id as hexadecimal (up to 16 digits); a random one when omitted.
    #[arg(long, value_name = "HEX", value_parser = parse_cluster_id_arg)]
    cluster_id: Option<ClusterId>,
}

/// Parses `--cluster-id`, so that a malformed id is a usage error (status 2) like any other
/// malformed value.
fn parse_cluster_id_arg(text: &str) -> Result<ClusterId, String> {
    parse_cluster_id(text)
        .ok_or_else(|| format!("invalid cluster id {text:?}: expected up to 16 hex digits"))
}

pub(crate) fn run(args: CertsArgs) -> Result<(), String> {
    let report = certs(&args.out, args.nodes, args.cluster_id)?;
    print!("{report}");
    Ok(())
}

/// Writes the certificates and returns the report to print.
pub(crate) fn certs(out: &Path, nodes: u64, cluster: Option<ClusterId>) -> Result<String, String> {
    let ids: Vec<NodeId> = (1..=nodes).map(NodeId).collect();
    let generated = ClusterCerts::generate(cluster, &ids).map_err(|e| e.to_string())?;
    let files = generated.write_to_dir(out).map_err(|e| e.to_string())?;
    let mut report = format!(
        "cluster id {} ({} nodes); wrote {} files to {}:\n",
        format_cluster_id(generated.cluster),
        nodes,
        files.len(),
        out.display()
    );
    for file in files {
        report.push_str(&format!("  {}\n", file.display()));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftwal_wire::tls::TlsIdentity;

    #[test]
    fn certs_writes_loadable_identities_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("certs");
        let report = certs(&out, 3, Some(ClusterId(0xab))).unwrap();
        assert!(
            report.contains("cluster id 00000000000000ab (3 nodes); wrote 11 files"),
            "{report}"
        );
        for node in 1..=3 {
            let id = TlsIdentity::load_node(&out, NodeId(node)).unwrap();
            assert_eq!(id.cluster(), ClusterId(0xab));
        }
        assert_eq!(TlsIdentity::load_client(&out).unwrap().cluster(), ClusterId(0xab));
        let again = certs(&out, 3, None).unwrap_err();
        assert!(again.contains("exists"), "{again}");
        assert!(parse_cluster_id_arg("not-hex").unwrap_err().contains("invalid cluster id"));
    }
}
