//! raftwal's benchmark runner.

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
