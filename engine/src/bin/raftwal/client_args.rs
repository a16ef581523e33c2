//! The arguments every client command shares (`--cluster`, `--tls-dir`, `--log`, timeouts), and
//! the parsing of addresses (`host:port`, resolved once at start).
//!
//! Owns: turning those arguments into a [`ClientConfig`].
//! Must not: connect anywhere; the client connects lazily.

use clap::Args;
use raftwal::client::ClientConfig;
use raftwal_wire::types::LogId;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How to reach a cluster.
#[derive(Clone, Debug, Args)]
pub(crate) struct ClusterArgs {
    /// Client addresses of the cluster's nodes, comma-separated (`host:port`; any subset works,
    /// more gives more places to retry).
    #[arg(long, value_name = "ADDR,...", value_delimiter = ',', required = true,
          value_parser = parse_addr)]
    pub(crate) cluster: Vec<SocketAddr>,
    /// Directory with the cluster CA and the client certificate (from `raftwal certs`).
    #[arg(long, value_name = "DIR")]
    pub(crate) tls_dir: PathBuf,
    /// The log to work on.
    #[arg(long, default_value_t = 0)]
    pub(crate) log: u64,
    /// How long one attempt may take before the client tries another node, in milliseconds (at
    /// least 1).
    #[arg(long, default_value_t = 5000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) attempt_timeout_ms: u64,
    /// How long a request is retried across failures and leader changes before the command
    /// fails, in seconds (at most a year); 0 makes one attempt.
    #[arg(long, default_value_t = 30, value_name = "S",
          value_parser = clap::value_parser!(u64).range(0..=RETRY_S_MAX))]
    pub(crate) retry_s: u64,
}

/// The longest `--retry-s`: a year.
const RETRY_S_MAX: u64 = 365 * 24 * 3600;

impl ClusterArgs {
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(self.cluster.clone(), &self.tls_dir, LogId(self.log));
        config.attempt_timeout = Duration::from_millis(self.attempt_timeout_ms);
        config.retry_deadline = Duration::from_secs(self.retry_s);
        config
    }
}

/// Parses `host:port` (an IP address or a name, resolved now; the first address wins), as a
/// config file's addresses are read.
pub(crate) fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    raftwal::config::resolve_addr(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_parsed_or_refused_with_a_reason() {
        assert_eq!(parse_addr("127.0.0.1:7000").unwrap(), "127.0.0.1:7000".parse().unwrap());
        assert_eq!(parse_addr("[::1]:7000").unwrap(), "[::1]:7000".parse().unwrap());
        assert_eq!(parse_addr("localhost:7000").unwrap().port(), 7000);
        assert!(parse_addr("127.0.0.1").unwrap_err().contains("port is missing"));
        assert!(parse_addr("127.0.0.1:notaport").unwrap_err().contains("cannot resolve"));
    }
}
