//! The `peershare` binary: see `peershare --help`.

use clap::Parser;
use peershare::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    // The node (`run`) keeps Rust's default of ignoring SIGPIPE: a peer or a reader that
    // goes away must cost it one connection, never the process. Every other subcommand is
    // a client printing to stdout and ends quietly when its reader goes (`ls | head`).
    if !matches!(cli.command, Command::Run(_)) {
        peershare::cli::end_quietly_on_closed_stdout();
    }
    std::process::exit(peershare::cli::main_with(cli));
}
