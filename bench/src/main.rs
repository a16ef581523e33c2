//! raftwal's benchmark runner.
//!
//! Each benchmark is a subcommand in a module of its own; all of them report through
//! [`report`] so their JSON and table output share one shape.

mod report;
mod storage;
mod storage_raft_engine;
mod storage_raw;

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
}

fn main() {
    let args = Args::parse();
    // Until the cluster benchmark exists, the default job is the storage benchmark.
    let result = match args.bench {
        Some(Bench::Storage(a)) => storage::run(&a),
        None => storage::run(&storage::StorageArgs::default()),
    };
    if let Err(e) = result {
        eprintln!("raftwal-bench: {e}");
        std::process::exit(1);
    }
}
