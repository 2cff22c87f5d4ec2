//! The `peershare` binary: see `peershare --help`.

use clap::Parser;

fn main() {
    let cli = peershare::cli::Cli::parse();
    std::process::exit(peershare::cli::main_with(cli));
}
