//! raftwal's benchmark runner.
//!
//! Each benchmark is a subcommand in a module of its own; all of them report through
//! [`report`] so their JSON and table output share one shape. Until the cluster benchmark
//! exists, running with no subcommand runs the storage benchmark.

mod report;
mod storage;
mod storage_raft_engine;
mod storage_raw;
mod transport;

use clap::{Parser, Subcommand};

/// raftwal's benchmarks.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    bench: Option<Bench>,
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
        None => storage::run(&storage::StorageArgs::default()).map_err(|e| e.to_string()),
    };
    if let Err(e) = result {
        eprintln!("raftwal-bench: {e}");
        std::process::exit(1);
    }
}
