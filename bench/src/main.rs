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
mod recovery;
mod report;
mod results;
mod storage;
mod storage_raft_engine;
mod storage_raw;
mod systems;
mod timer;
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
    /// Opening a stored log: from the sealed segments' index files and checking every record.
    Recovery(recovery::RecoveryArgs),
}

/// The nodes' own log (elections, warnings) goes to standard error only when `RUST_LOG` asks
/// for it (`RUST_LOG=raftwal=info`): by default the report is all a run prints.
fn init_logging() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_thread_names(true)
            .with_target(false)
            .try_init();
    }
}

fn main() {
    init_logging();
    let args = Args::parse();
    let result = match args.bench {
        Some(Bench::Storage(a)) => storage::run(&a).map_err(|e| e.to_string()),
        Some(Bench::Transport(a)) => transport::run(&a),
        Some(Bench::Recovery(a)) => recovery::run(&a),
        None => cluster::run(&args.cluster),
    };
    if let Err(e) = result {
        eprintln!("raftwal-bench: {e}");
        std::process::exit(1);
    }
}
