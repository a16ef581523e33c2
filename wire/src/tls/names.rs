//! The DNS names that bind certificates to a cluster and a node.
//!
//! Certificates are never checked against host names or addresses (nodes move between hosts);
//! they are checked against these names, derived from ids both sides already know. A node's
//! certificate carries `n<node>.c<cluster>.raftwal` (node in decimal, cluster as 16 hex digits);
//! a client certificate carries `client.c<cluster>.raftwal`. The `.raftwal` suffix is not a
//! real domain; the names exist only inside certificates.

use crate::types::{ClusterId, NodeId};

/// The name in node `node`'s certificate for cluster `cluster`.
pub fn node_name(cluster: ClusterId, node: NodeId) -> String {
    format!("n{}.c{:016x}.raftwal", node.get(), cluster.get())
}

/// The name in the client certificates of cluster `cluster`.
pub fn client_name(cluster: ClusterId) -> String {
    format!("client.c{:016x}.raftwal", cluster.get())
}

/// The name every node certificate of cluster `cluster` also carries, so that a client can
/// verify "a node of my cluster" before it knows which node it reached.
pub fn cluster_name(cluster: ClusterId) -> String {
    format!("any.c{:016x}.raftwal", cluster.get())
}

/// Formats a cluster id as written in `cluster-id` files and on the command line.
pub fn format_cluster_id(cluster: ClusterId) -> String {
    format!("{:016x}", cluster.get())
}

/// Parses a cluster id written as hexadecimal (an optional `0x` prefix is allowed).
pub fn parse_cluster_id(text: &str) -> Option<ClusterId> {
    let text = text.trim();
    let digits = text.strip_prefix("0x").unwrap_or(text);
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok().map(ClusterId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_dns_names_and_ids_roundtrip() {
        let c = ClusterId(0xdead_beef_0000_0001);
        for name in [node_name(c, NodeId(u64::MAX)), client_name(c), cluster_name(c)] {
            assert!(rustls_pki_types::ServerName::try_from(name.clone()).is_ok(), "{name}");
        }
        assert_eq!(parse_cluster_id(&format_cluster_id(c)), Some(c));
        assert_eq!(parse_cluster_id("0x10\n"), Some(ClusterId(16)));
        assert_eq!(parse_cluster_id("xyz"), None);
        assert_eq!(parse_cluster_id("00000000000000001"), None);
    }
}
