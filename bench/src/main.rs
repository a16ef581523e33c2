//! raftwal's benchmark runner.
//!
//! Each benchmark is a subcommand in a module of its own; all of them report through
//! [`report`] so their JSON and table output share one shape.

// The shared report module is used by the benchmarks that land next (storage, transport).
#[allow(dead_code)]
mod report;
mod transport;

use clap::Parser;

/// raftwal's benchmarks.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    bench: Option<Bench>,
}

#[derive(Debug, clap::Subcommand)]
enum Bench {
    /// QUIC transport: AppendEntries streaming and round trips, beside raw quinn.
    Transport(transport::TransportArgs),
}

fn main() {
    let args = Args::parse();
    let result = match args.bench {
        Some(Bench::Transport(a)) => transport::run(&a),
        None => {
            eprintln!("raftwal-bench: name a benchmark (see --help)");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("raftwal-bench: {e}");
        std::process::exit(1);
    }
}
