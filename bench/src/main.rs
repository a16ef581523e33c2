//! raftwal's benchmark runner.
//!
//! Each benchmark is a subcommand in a module of its own; all of them report through
//! [`report`] so their JSON and table output share one shape.

// The shared report module is used by the benchmarks that land next (storage, transport).
#[allow(dead_code)]
mod report;

use clap::Parser;

/// raftwal's benchmarks.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {}

fn main() {
    let _args = Args::parse();
    eprintln!("raftwal-bench: no benchmark is built yet");
    std::process::exit(2);
}
