//! `raftwal dev`: a local cluster of N nodes in this one process, on loopback, until Ctrl-C.
//!
//! Owns: the development cluster's layout in its directory (`tls/` with certificates made on the
//! first run, `node-I/` per node), its ports, and the instructions it prints.
//! Must not: be mistaken for a deployment: every node shares this process, so one crash takes
//! them all; `raftwal serve` is how nodes run for real.
//!
//! Running it again on the same directory keeps the logs: the certificates and data
//! directories are reused (ports may differ; nodes find each other by the configuration, not by
//! anything stored).

use crate::interrupt;
use clap::Args;
use raftwal::{Node, NodeConfig, PeerConfig};
use raftwal_wire::tls::certs::{node_cert_file, ClusterCerts, CA_CERT_FILE};
use raftwal_wire::tls::names::format_cluster_id;
use raftwal_wire::types::{LogId, NodeId};
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::{error, info};

/// Ports between one dev node's shard 0 and the next node's.
const PORT_STRIDE: u16 = 10;

/// Arguments of `raftwal dev`.
#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Number of nodes (an odd number survives the most failures for its size).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,
    /// Directory for the certificates (`tls/`) and the nodes' data (`node-I/`); reused on the
    /// next run.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// UDP port of node 1's shard 0; node i uses base + 10*(i-1). 0 picks free ports.
    #[arg(long, default_value_t = 7400, value_name = "PORT")]
    base_port: u16,
    /// Shard threads per node.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=10))]
    shards: u16,
}

/// Makes certificates for nodes 1..=n in `dir`, unless a previous run did (then they must be
/// for exactly these nodes: the nodes' logs are those of that run's cluster, and a run with
/// fewer nodes would let a minority of it elect a leader and commit alone, overwriting, when
/// the whole cluster runs again, entries the others had committed).
fn ensure_certs(dir: &Path, nodes: u64) -> Result<(), String> {
    if dir.join(CA_CERT_FILE).exists() {
        if let Some(missing) = (1..=nodes).find(|n| !node_cert_file(dir, NodeId(*n)).exists()) {
            return Err(format!(
                "{} holds the certificates of a smaller dev cluster (no certificate for node \
                 {missing}): use a new --dir, or the same --nodes as before",
                dir.display()
            ));
        }
        let extra = nodes + 1;
        if node_cert_file(dir, NodeId(extra)).exists() {
            return Err(format!(
                "{} holds the certificates of a larger dev cluster (a certificate for node \
                 {extra}), whose logs the nodes hold: use a new --dir, or the same --nodes as \
                 before",
                dir.display()
            ));
        }
        return Ok(());
    }
    let ids: Vec<NodeId> = (1..=nodes).map(NodeId).collect();
    let certs = ClusterCerts::generate(None, &ids).map_err(|e| e.to_string())?;
    certs.write_to_dir(dir).map_err(|e| e.to_string())?;
    Ok(())
}

/// A base port whose `shards` consecutive UDP ports are free on loopback now, with the sockets
/// that hold them (so that the next node's pick cannot take them).
fn free_base_port(shards: u16) -> Result<(u16, Vec<UdpSocket>), String> {
    for _ in 0..100 {
        let first = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let base = first.local_addr().map_err(|e| e.to_string())?.port();
        let Some(last) = base.checked_add(shards - 1) else { continue };
        let rest: Result<Vec<UdpSocket>, _> =
            (base + 1..=last).map(|port| UdpSocket::bind(("127.0.0.1", port))).collect();
        if let Ok(mut held) = rest {
            held.push(first);
            return Ok((base, held));
        }
    }
    Err(format!("found no {shards} consecutive free UDP ports on loopback"))
}

/// Every node's shard-0 address. Free ports are held until all are picked, then released for
/// the nodes to bind.
fn addresses(args: &DevArgs) -> Result<Vec<SocketAddr>, String> {
    let mut held = Vec::new();
    (0..args.nodes)
        .map(|i| {
            let port = if args.base_port == 0 {
                let (base, sockets) = free_base_port(args.shards)?;
                held.extend(sockets);
                base
            } else {
                let offset = u16::try_from(i).map_err(|e| e.to_string())? * PORT_STRIDE;
                args.base_port
                    .checked_add(offset + args.shards - 1)
                    .map(|_| args.base_port + offset)
                    .ok_or_else(|| format!("--base-port {} is too high", args.base_port))?
            };
            Ok(SocketAddr::from(([127, 0, 0, 1], port)))
        })
        .collect()
}

/// The configurations of every dev node.
fn configs(args: &DevArgs, addrs: &[SocketAddr]) -> Vec<NodeConfig> {
    let tls = args.dir.join("tls");
    (1..=args.nodes)
        .map(|id| {
            let peers = (1..=args.nodes)
                .filter(|p| *p != id)
                .map(|p| PeerConfig { id: NodeId(p), addr: addrs[(p - 1) as usize] })
                .collect();
            let mut config = NodeConfig::new(
                NodeId(id),
                addrs[(id - 1) as usize],
                peers,
                args.dir.join(format!("node-{id}")),
                &tls,
            );
            config.shards = Some(usize::from(args.shards));
            config
        })
        .collect()
}

/// What to print once the cluster is up: addresses and the commands that use them.
fn instructions(nodes: &[Node], tls: &Path, leader: Option<NodeId>) -> String {
    let cluster: Vec<String> = nodes.iter().map(|n| n.client_addr().to_string()).collect();
    let cluster = cluster.join(",");
    let tls = tls.display();
    let mut text = format!(
        "raftwal dev: {} nodes of cluster {} running\n",
        nodes.len(),
        nodes.first().map(|n| format_cluster_id(n.cluster())).unwrap_or_default()
    );
    for node in nodes {
        text.push_str(&format!(
            "  node {}: {}  data {}\n",
            node.id(),
            node.client_addr(),
            node.config().data_dir.display()
        ));
    }
    match leader {
        Some(leader) => text.push_str(&format!("leader of log 0: node {leader}\n")),
        None => text.push_str("no leader elected yet\n"),
    }
    text.push_str(&format!("cluster: {cluster}\ntls-dir: {tls}\n"));
    text.push_str(&format!(
        "try:\n  seq 1 5 | raftwal append --cluster {cluster} --tls-dir {tls}\n  \
         raftwal tail --cluster {cluster} --tls-dir {tls} --from 1\n  \
         raftwal read --cluster {cluster} --tls-dir {tls} --from 1\n  \
         raftwal status --cluster {cluster} --tls-dir {tls}\n\
         Ctrl-C stops the cluster.\n"
    ));
    text
}

pub(crate) fn run(args: DevArgs) -> Result<(), String> {
    let tls = args.dir.join("tls");
    ensure_certs(&tls, args.nodes)?;
    let addrs = addresses(&args)?;
    // Handlers first, as in `serve`: a signal during the start stops the cluster once it is up.
    let runtime = interrupt::runtime()?;
    let interrupted = {
        let _entered = runtime.enter();
        interrupt::interrupted()?
    };
    let mut nodes = Vec::new();
    for config in configs(&args, &addrs) {
        let id = config.id;
        // Started nodes are shut down when `nodes` drops on this early return.
        let node = Node::start(config)
            .map_err(|e| format!("node {id}: {}", crate::serve::explain_start_error(&e)))?;
        nodes.push(node);
    }
    let signal = runtime.block_on(async {
        tokio::pin!(interrupted);
        let leader = match nodes[0].log(LogId(0)) {
            Some(log) => tokio::select! {
                leader = log.wait_for_leader(Duration::from_secs(10)) => leader,
                signal = &mut interrupted => return Ok(signal),
            },
            None => None,
        };
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(instructions(&nodes, &tls, leader).as_bytes());
        let _ = out.flush();
        drop(out);
        // Or until a shard of any node stops on its own, as `serve` watches its node.
        let mut failures: Vec<_> = nodes.iter().map(|n| Box::pin(n.wait_for_failure())).collect();
        let failed = std::future::poll_fn(|cx| {
            failures
                .iter_mut()
                .find_map(|f| match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(failure) => Some(failure),
                    std::task::Poll::Pending => None,
                })
                .map_or(std::task::Poll::Pending, std::task::Poll::Ready)
        });
        tokio::select! {
            signal = &mut interrupted => Ok(signal),
            failure = failed => Err(failure),
        }
    });
    let signal = match signal {
        Ok(signal) => signal,
        Err(failure) => {
            error!("{failure}; halting the dev cluster");
            for node in nodes {
                node.halt();
            }
            return Err(format!("{failure}; the dev cluster was halted"));
        }
    };
    info!("{} received; stopping the dev cluster", signal.name());
    for node in nodes {
        node.shutdown();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(base_port: u16, shards: u16) -> DevArgs {
        DevArgs { nodes: 3, dir: PathBuf::from("/tmp/dev"), base_port, shards }
    }

    #[test]
    fn certificates_are_made_once_and_must_match_the_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        ensure_certs(&tls, 2).unwrap();
        ensure_certs(&tls, 2).unwrap();
        let e = ensure_certs(&tls, 3).unwrap_err();
        assert!(e.contains("no certificate for node 3"), "{e}");
        // Fewer nodes on the logs of a larger cluster: a minority would commit alone.
        let e = ensure_certs(&tls, 1).unwrap_err();
        assert!(e.contains("larger dev cluster (a certificate for node 2)"), "{e}");
    }

    #[test]
    fn fixed_ports_are_strided_and_free_ports_have_room_for_the_shards() {
        let a = addresses(&args(7400, 1)).unwrap();
        let ports: Vec<u16> = a.iter().map(SocketAddr::port).collect();
        assert_eq!(ports, [7400, 7410, 7420]);
        assert!(addresses(&args(65530, 1)).unwrap_err().contains("too high"));
        let free = addresses(&args(0, 2)).unwrap();
        assert_eq!(free.len(), 3);
        let configs = configs(&args(0, 2), &free);
        assert_eq!(configs[1].peers.len(), 2);
        assert_eq!(configs[1].peers[0].addr, free[0]);
        for c in &configs {
            c.validate().unwrap();
        }
    }
}
