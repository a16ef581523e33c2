//! `raftwal serve`: runs one node until SIGTERM or SIGINT, then shuts it down cleanly; or until
//! one of its shards stops on its own, then halts it and fails (exit status 1), so that a
//! supervisor restarts a process that lost part of itself rather than leaving it half alive.
//!
//! Owns: the node's configuration from flags or from a TOML file (never both: clap refuses the
//! mix, so a flag can never silently lose to the file or the other way round), the
//! explanations added to start errors, and the watch that warns when no leader appears and
//! ends the node when a shard failed ([`raftwal::Node::failure`]).
//! Must not: weaken any safety default; every setting goes through `NodeConfig::validate`.

use crate::client_args::parse_addr;
use crate::interrupt;
use clap::Args;
use raftwal::storage::OpenError;
use raftwal::{Node, NodeConfig, PeerConfig, ShardFailure, StartError};
use raftwal_wire::tls::names::format_cluster_id;
use raftwal_wire::types::{LogId, NodeId};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tracing::{error, info, warn};

/// Flags that describe the node; `--config` replaces all of them.
const NODE_FLAGS: [&str; 7] = ["id", "listen", "peers", "data_dir", "tls_dir", "shards", "metrics"];

/// How long a node may know no leader before it says so.
const NO_LEADER_WARNING_AFTER: Duration = Duration::from_secs(10);

/// Arguments of `raftwal serve`.
#[derive(Debug, Args)]
#[command(after_help = "Either give --config FILE, or the flags --id, --listen, --data-dir and \
    --tls-dir (with --peers, --shards and --metrics as needed); the two ways cannot be mixed. \
    See docs/operations.md for every setting.")]
pub(crate) struct ServeArgs {
    /// Read the whole node configuration from this TOML file (NodeConfig's fields; see
    /// docs/operations.md). Cannot be combined with the other node flags.
    #[arg(long, value_name = "FILE", conflicts_with_all = NODE_FLAGS)]
    config: Option<PathBuf>,
    /// This node's id (1 or more), matching its certificate `node-ID.pem` in the TLS directory.
    #[arg(long, required_unless_present = "config")]
    id: Option<u64>,
    /// Address of this node's shard 0 (`host:port`); shard i listens on port + i. Peers and
    /// clients both connect here.
    #[arg(long, value_name = "ADDR", required_unless_present = "config", value_parser = parse_addr)]
    listen: Option<SocketAddr>,
    /// The other nodes, comma-separated `ID=HOST:PORT` (their --listen addresses). Omit for a
    /// cluster of one.
    #[arg(long, value_name = "ID=ADDR,...", value_delimiter = ',', value_parser = parse_peer)]
    peers: Vec<PeerConfig>,
    /// Directory of this node's logs (created if missing; it remembers its cluster and node).
    #[arg(long, value_name = "DIR", required_unless_present = "config")]
    data_dir: Option<PathBuf>,
    /// Directory with the cluster CA and this node's certificate and key (`raftwal certs`).
    #[arg(long, value_name = "DIR", required_unless_present = "config")]
    tls_dir: Option<PathBuf>,
    /// Shard threads (one per core when omitted). Every node of a cluster should use the same.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    shards: Option<u16>,
    /// Serve Prometheus metrics on this address (`GET /metrics`).
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    metrics: Option<SocketAddr>,
    /// This node lost the data of some logs (a replaced disk, a log directory gone): those logs
    /// rejoin the cluster, taking no vote until they caught up with a leader (every peer must
    /// answer first). Never on a cluster's first start. Works with --config too.
    #[arg(long)]
    rejoin: bool,
}

/// Parses one `ID=HOST:PORT` peer.
pub(crate) fn parse_peer(text: &str) -> Result<PeerConfig, String> {
    let (id, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("peer {text:?} is not ID=HOST:PORT (the '=' is missing)"))?;
    let id: u64 = id.trim().parse().map_err(|_| {
        format!("peer {text:?}: the id {:?} is not a number (ids are 1, 2, ...)", id.trim())
    })?;
    let addr = parse_addr(addr.trim()).map_err(|e| format!("peer {text:?}: {e}"))?;
    Ok(PeerConfig { id: NodeId(id), addr })
}

impl ServeArgs {
    /// The node's configuration: the file's, or the flags'.
    fn node_config(self) -> Result<NodeConfig, String> {
        if let Some(path) = &self.config {
            let mut config = NodeConfig::from_toml_file(path).map_err(|e| e.to_string())?;
            config.rejoin |= self.rejoin;
            refuse_listen_port_zero(&config)?;
            return Ok(config);
        }
        // clap enforces these without --config; say so rather than panic if that ever changes.
        let missing = |flag: &str| format!("--{flag} is required without --config");
        let id = self.id.ok_or_else(|| missing("id"))?;
        let listen = self.listen.ok_or_else(|| missing("listen"))?;
        let data_dir = self.data_dir.ok_or_else(|| missing("data-dir"))?;
        let tls_dir = self.tls_dir.ok_or_else(|| missing("tls-dir"))?;
        let mut config = NodeConfig::new(NodeId(id), listen, self.peers, data_dir, tls_dir);
        config.shards = self.shards.map(usize::from);
        config.metrics = self.metrics;
        config.rejoin = self.rejoin;
        config.validate().map_err(|e| e.to_string())?;
        refuse_listen_port_zero(&config)?;
        Ok(config)
    }
}

/// `serve` runs a node that clients and peers reach at a configured address, so its port must be
/// fixed even where validation would let the system pick it (a one-shard node without peers,
/// which an embedding program may want).
fn refuse_listen_port_zero(config: &NodeConfig) -> Result<(), String> {
    if config.listen.port() == 0 {
        return Err(format!(
            "listen address {} has port 0: give the node a fixed port (clients and peers connect \
             to it)",
            config.listen
        ));
    }
    Ok(())
}

/// A start error with what to do about it.
pub(crate) fn explain_start_error(error: &StartError) -> String {
    match error {
        StartError::Tls { dir, .. } => format!(
            "{error}\n  (the directory needs ca.pem, cluster-id and this node's node-ID.pem and \
             node-ID.key.pem; create them with `raftwal certs --out {} --nodes N`)",
            dir.display()
        ),
        StartError::Storage { source, .. } if is_damage(source) => {
            format!("{error}\n  {DAMAGE_HINT}")
        }
        StartError::Restore { .. } => format!("{error}\n  {DAMAGE_HINT}"),
        _ => error.to_string(),
    }
}

/// What to do about a log whose files are damaged or not its own.
const DAMAGE_HINT: &str = "(the files are left as they are: corruption is never repaired \
    silently; see docs/operations.md, \"Start errors\")";

/// Whether the store refused a log for what its files hold (a bad record, a segment that is
/// not a segment or not this log's), as opposed to a disk it cannot use (I/O error, no space)
/// or options it refuses: only the first leaves files an operator must look at.
fn is_damage(error: &OpenError) -> bool {
    match error {
        OpenError::Corrupt(_) | OpenError::BadSegment { .. } | OpenError::Foreign { .. } => true,
        OpenError::InvalidOptions(_) | OpenError::Io { .. } | OpenError::NoSpace(_) => false,
    }
}

pub(crate) fn run(args: ServeArgs) -> Result<(), String> {
    let config = args.node_config()?;
    let peers: Vec<String> = config.peers.iter().map(|p| format!("{}={}", p.id, p.addr)).collect();
    // The handlers go in before the node starts: a SIGTERM that arrives while it opens its logs
    // then stops it cleanly as soon as it is up, instead of killing the process mid-start.
    let runtime = interrupt::runtime()?;
    let interrupted = {
        let _entered = runtime.enter();
        interrupt::interrupted()?
    };
    let node = Node::start(config).map_err(|e| explain_start_error(&e))?;
    info!(
        "node {} of cluster {} serving on {} (shards {:?}), data in {}, peers [{}]",
        node.id(),
        format_cluster_id(node.cluster()),
        node.client_addr(),
        node.shard_addrs(),
        node.config().data_dir.display(),
        peers.join(", ")
    );
    if let Some(addr) = node.metrics_addr() {
        info!("metrics on http://{addr}/metrics");
    }
    let signal = match runtime.block_on(watch_until(&node, interrupted)) {
        Ok(signal) => signal,
        Err(failure) => {
            // The failed shard's logs are gone from this node: no handover is possible for
            // them, and the other shards' handover would only delay the restart.
            error!("{failure}; halting the node");
            node.halt();
            return Err(format!(
                "{failure}; the node was halted (docs/operations.md, \"A shard stopped while the \
                 node was running\")"
            ));
        }
    };
    info!("{} received; shutting down (a second signal stops at once)", signal.name());
    // The graceful stop waits for the leadership handover (at most two election timeouts); a
    // second signal halts the node without waiting for it.
    let second = {
        let _entered = runtime.enter();
        interrupt::interrupted()?
    };
    let halt = node.halt_handle();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let stopper = std::thread::Builder::new()
        .name("raftwal-stop".into())
        .spawn(move || {
            node.shutdown();
            let _ = done_tx.send(());
        })
        .map_err(|e| format!("cannot start the stopping thread: {e}"))?;
    runtime.block_on(async {
        tokio::select! {
            _ = done_rx => {}
            signal = second => {
                warn!("{} received again; stopping without waiting for the handover", signal.name());
                halt.halt();
            }
        }
    });
    // The shutdown thread ends once every shard has stopped.
    let _ = stopper.join();
    if let Some(failure) = halt.failure() {
        // A shard that failed during the stop: the stop was not clean, and the exit says so.
        error!("{failure}");
        return Err(format!(
            "{failure} (during the stop; docs/operations.md, \"A shard stopped while the node \
             was running\")"
        ));
    }
    info!("stopped");
    Ok(())
}

/// Waits for the signal, warning meanwhile when log 0 has had no leader for a while (the usual
/// sign of peers that are down, unreachable or listed with wrong addresses); or for a shard of
/// the node to fail, which ends the wait with the failure.
async fn watch_until(
    node: &Node,
    interrupted: impl std::future::Future<Output = interrupt::Signal>,
) -> Result<interrupt::Signal, ShardFailure> {
    tokio::pin!(interrupted);
    let failed = node.wait_for_failure();
    tokio::pin!(failed);
    let log = node.log(LogId(0));
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let mut leaderless = Duration::ZERO;
    loop {
        tokio::select! {
            signal = &mut interrupted => return Ok(signal),
            failure = &mut failed => return Err(failure),
            _ = check.tick() => {}
        }
        let Some(log) = &log else { continue };
        match log.status().await {
            Ok(status) if status.leader.is_none() => {
                leaderless += Duration::from_secs(1);
                if leaderless.as_secs().is_multiple_of(NO_LEADER_WARNING_AFTER.as_secs()) {
                    let peers: Vec<String> = node
                        .config()
                        .peers
                        .iter()
                        .map(|p| format!("node {} at {}", p.id, p.addr))
                        .collect();
                    warn!(
                        "log 0 has had no leader for {} s (term {}): a majority of the cluster \
                         must be running and reachable; peers: [{}]",
                        leaderless.as_secs(),
                        status.term,
                        peers.join(", ")
                    );
                }
            }
            _ => leaderless = Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .map(|w| w.serve)
    }

    #[test]
    fn peers_are_parsed_with_clear_errors() {
        let p = parse_peer("2=127.0.0.1:7100").unwrap();
        assert_eq!((p.id, p.addr), (NodeId(2), "127.0.0.1:7100".parse().unwrap()));
        assert!(parse_peer("127.0.0.1:7100").unwrap_err().contains("'=' is missing"));
        assert!(parse_peer("two=127.0.0.1:7100").unwrap_err().contains("not a number"));
        assert!(parse_peer("2=127.0.0.1").unwrap_err().contains("port is missing"));
    }

    #[test]
    fn flags_build_a_validated_config() {
        let args = parse(&[
            "--id=1",
            "--listen=127.0.0.1:7000",
            "--peers=2=127.0.0.1:7100,3=127.0.0.1:7200",
            "--data-dir=/tmp/d",
            "--tls-dir=/tmp/t",
            "--shards=2",
            "--metrics=127.0.0.1:9100",
        ])
        .unwrap();
        let config = args.node_config().unwrap();
        assert_eq!(config.voters(), vec![NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(config.shards, Some(2));
        assert_eq!(config.metrics, Some("127.0.0.1:9100".parse().unwrap()));
        // Validation runs on flags too: a node listed among its own peers is refused.
        let args = parse(&[
            "--id=1",
            "--listen=127.0.0.1:7000",
            "--peers=1=127.0.0.1:7100",
            "--data-dir=/tmp/d",
            "--tls-dir=/tmp/t",
        ])
        .unwrap();
        assert!(args.node_config().unwrap_err().contains("lists itself"));
    }

    #[test]
    fn listen_port_zero_is_refused_from_flags_and_files() {
        let args = parse(&["--id=1", "--listen=127.0.0.1:0", "--data-dir=/d", "--tls-dir=/t"]);
        let e = args.unwrap().node_config().unwrap_err();
        assert!(e.contains("port 0") && e.contains("fixed port"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let toml =
            "id = 1\nlisten = \"127.0.0.1:0\"\ndata_dir = \"/d\"\ntls_dir = \"/t\"\nshards = 1\n";
        std::fs::write(&path, toml).unwrap();
        let e = parse(&["--config", path.to_str().unwrap()]).unwrap().node_config().unwrap_err();
        assert!(e.contains("port 0"), "{e}");
        // With peers, validation itself refuses it (for embedding programs too).
        let args = parse(&[
            "--id=1",
            "--listen=127.0.0.1:0",
            "--peers=2=127.0.0.1:7100",
            "--data-dir=/d",
            "--tls-dir=/t",
        ]);
        let e = args.unwrap().node_config().unwrap_err();
        assert!(e.contains("port 0") && e.contains("peers"), "{e}");
    }

    #[test]
    fn only_damaged_logs_get_the_corruption_hint() {
        use raftwal::storage::Corruption;
        use raftwal_wire::types::LogIndex;
        let storage =
            |source| StartError::Storage { log: LogId(0), dir: "/d/log-0".into(), source };
        let io = |kind, text: &str| std::io::Error::new(kind, text.to_owned());
        let plain = [
            storage(OpenError::Io {
                context: "creating /d/log-0".into(),
                source: io(std::io::ErrorKind::AlreadyExists, "File exists"),
            }),
            storage(OpenError::NoSpace("creating segment 1".into())),
            storage(OpenError::InvalidOptions("batch_bytes_max must be positive")),
            StartError::Shard { shard: 0, message: "cannot listen on 127.0.0.1:1".into() },
        ];
        for error in &plain {
            let text = explain_start_error(error);
            assert_eq!(text, error.to_string(), "no hint for {error:?}");
        }
        let damaged = [
            storage(OpenError::Corrupt(Corruption {
                file: "/d/log-0/1.seg".into(),
                offset: 4096,
                index: Some(LogIndex(1)),
                reason: "checksum mismatch".into(),
            })),
            storage(OpenError::Foreign { file: "/d/log-0/1.seg".into(), reason: "x".into() }),
            StartError::Restore { log: LogId(0), message: "commit index beyond the log".into() },
        ];
        for error in &damaged {
            let text = explain_start_error(error);
            assert!(text.starts_with(&error.to_string()), "{text}");
            assert!(text.contains("corruption is never repaired silently"), "{text}");
        }
    }

    #[test]
    fn config_file_and_node_flags_cannot_be_mixed() {
        let e = parse(&["--config=node.toml", "--id=1"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        let e = parse(&["--config=node.toml", "--metrics=127.0.0.1:1"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        let e = parse(&["--id=1"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(parse(&["--config=node.toml"]).is_ok());
    }

    /// The annotated TOML example in docs/operations.md parses, validates, and states the real
    /// defaults of every tuning field.
    #[test]
    fn the_documented_config_example_is_valid_and_its_defaults_are_true() {
        let doc = include_str!("../../../../docs/operations.md");
        let start = doc.find("```toml\n").expect("docs/operations.md has a TOML example") + 8;
        let toml = &doc[start..start + doc[start..].find("```").expect("the block ends")];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, toml).unwrap();
        let config = NodeConfig::from_toml_file(&path).unwrap();
        let defaults = NodeConfig::new(
            config.id,
            config.listen,
            config.peers.clone(),
            &config.data_dir,
            &config.tls_dir,
        );
        assert_eq!(config.raft, defaults.raft);
        assert_eq!(config.storage, defaults.storage);
        assert_eq!(config.transport, defaults.transport);
        assert_eq!(config.log_count, defaults.log_count);
        assert_eq!(config.entry_size_bytes_max, defaults.entry_size_bytes_max);
    }

    #[test]
    fn a_malformed_config_file_names_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "id = 1\nlisten = \"127.0.0.1:7000\"\ndata_dir = 3\n").unwrap();
        let args = parse(&["--config", path.to_str().unwrap()]).unwrap();
        let e = args.node_config().unwrap_err();
        assert!(e.contains("invalid config file") && e.contains("data_dir"), "{e}");
    }
}
