//! The `zpage` binary: see `zpage --help` and README.md.

use clap::Parser;

fn main() {
    let cli = zpage::cli::Cli::parse();
    if let Err(message) = zpage::cli::run(cli) {
        eprintln!("zpage: {message}");
        std::process::exit(1);
    }
}
