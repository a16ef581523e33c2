//! The `raftwal` command line: run a node, a local development cluster, and the client commands
//! that append to, read, tail, inspect and compact a cluster.
//!
//! Owns: argument parsing (clap), logging set-up, and the mapping of each command's outcome to
//! an exit status. Each command group lives in a file of its own; the work itself is done by the
//! `raftwal` library (nodes, the remote client) and `raftwal_wire` (certificates).
//! Must not: implement anything the library offers; this binary only parses, calls and prints.
//!
//! Exit status: 0 on success, 1 when the command failed (the reason is on standard error), 2 for
//! a usage error (clap's own). Data commands print JSON lines on standard output (see
//! `output.rs`); logs and errors go to standard error.

mod append;
mod certs;
mod client_args;
mod compact;
mod dev;
mod input;
mod interrupt;
mod output;
mod read;
mod serve;
mod status;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// raftwal: a Raft-replicated write-ahead log engine.
///
/// Start with `raftwal dev --dir /tmp/raftwal-dev` for a local three-node cluster; it prints the
/// commands to append to it and tail it.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one node of a cluster until SIGTERM or SIGINT (or until one of its shards fails:
    /// then it halts the node and exits with status 1).
    Serve(serve::ServeArgs),
    /// Write a cluster CA, node certificates (node ids 1..=N) and a client certificate.
    Certs(certs::CertsArgs),
    /// Run a local N-node cluster in this process on loopback, until Ctrl-C.
    Dev(dev::DevArgs),
    /// Append standard input, one entry per line; print each entry's position as a JSON line.
    Append(append::AppendArgs),
    /// Print committed entries from an index, one JSON line each, then exit.
    Read(read::ReadArgs),
    /// Print committed entries from an index as they commit, until interrupted.
    Tail(read::TailArgs),
    /// Print each node's view of a log, one JSON line per node.
    Status(status::StatusArgs),
    /// Ask each node to forget its entries of a log before an index; one JSON line per node.
    Compact(compact::CompactArgs),
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Serve(_) => "serve",
            Command::Certs(_) => "certs",
            Command::Dev(_) => "dev",
            Command::Append(_) => "append",
            Command::Read(_) => "read",
            Command::Tail(_) => "tail",
            Command::Status(_) => "status",
            Command::Compact(_) => "compact",
        }
    }

    /// The log level when `RUST_LOG` is not set: servers tell what they do, client commands
    /// keep standard error for warnings and errors.
    fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Serve(_) | Command::Dev(_) => "info",
            _ => "warn",
        }
    }
}

/// Sends `tracing` output to standard error, filtered by `RUST_LOG` when set.
fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    use std::io::IsTerminal;
    // Thread names tell which node and shard speaks (`raftwal-n2-s0`), which matters in `dev`,
    // where every node shares the process.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_thread_names(true)
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.command.default_log_filter());
    let name = cli.command.name();
    let outcome = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Certs(args) => certs::run(args),
        Command::Dev(args) => dev::run(args),
        Command::Append(args) => append::run(args),
        Command::Read(args) => read::run_read(args),
        Command::Tail(args) => read::run_tail(args),
        Command::Status(args) => status::run(args),
        Command::Compact(args) => compact::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("raftwal {name}: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_command_parses_and_has_help() {
        Cli::command().debug_assert();
        for name in ["serve", "certs", "dev", "append", "read", "tail", "status"] {
            let e = Cli::try_parse_from(["raftwal", name, "--help"]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{name}");
            assert!(e.to_string().contains("Usage: raftwal"), "{name}: {e}");
        }
    }

    #[test]
    fn a_malformed_cluster_id_is_a_usage_error() {
        // docs/operations.md: a malformed value exits with status 2, before anything is written.
        for bad in ["zz", "00000000000000000ab", ""] {
            let args = ["raftwal", "certs", "--out", "x", "--nodes", "3", "--cluster-id", bad];
            let e = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad:?}: {e}");
            assert_eq!(e.exit_code(), 2);
        }
        let args = ["raftwal", "certs", "--out", "x", "--nodes", "3", "--cluster-id", "0xab"];
        assert!(Cli::try_parse_from(args).is_ok());
    }
}
