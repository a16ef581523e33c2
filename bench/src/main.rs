//! raftwal's benchmark runner.
//!
//! With no subcommand it runs the cluster benchmark (an embedded 3-node cluster driven over
//! QUIC, with `--peer etcd` side by side); `storage` and `transport` measure the layers below.
//! Each benchmark is a module of its own; all of them report through [`report`] so their JSON
//! and table output share one shape.

mod cluster;
#[cfg(feature = "etcd")]
mod etcd;
mod floor;
mod load;
mod plot;
mod report;
mod results;
mod storage;
mod storage_raft_engine;
mod storage_raw;
mod systems;
mod transport;

use clap::{Parser, Subcommand};

/// raftwal's benchmarks. Without a subcommand: the cluster benchmark.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    bench: Option<Bench>,
    #[command(flatten)]
    cluster: cluster::ClusterArgs,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Durable single-node appends: raftwal's log store vs raw pwrite+fdatasync vs raft-engine.
    Storage(storage::StorageArgs),
    /// QUIC transport: AppendEntries streaming and round trips, beside raw quinn.
    Transport(transport::TransportArgs),
}

fn main() {
    let args = Args::parse();
    let result = match args.bench {
        Some(Bench::Storage(a)) => storage::run(&a).map_err(|e| e.to_string()),
        Some(Bench::Transport(a)) => transport::run(&a),
        None => cluster::run(&args.cluster),
    };
    if let Err(e) = result {
        eprintln!("raftwal-bench: {e}");
        std::process::exit(1);
    }
}
