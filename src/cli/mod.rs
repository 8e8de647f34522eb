//! The `zpage` command line: argument parsing and one module per subcommand.
//!
//! Invariants: every failure a user can cause (bad path, partial page file, unparsable
//! model, unreadable PID, busy zram device) is returned as an error with a one-line message
//! and a non-zero exit; nothing here panics on input. With `--json`, stdout carries exactly
//! one JSON object and stderr stays silent.

mod train;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "zpage",
    version,
    about = "Transparent compressed memory page store: simulate zram, train the page classifier, measure entropy"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a page classifier on page files and report accuracy, regret and speed.
    Train(train::TrainArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Train(args) => train::run(args),
    }
}

/// Loads the model a command was given, or the embedded one of its profile.
pub fn load_engine(
    model: Option<&PathBuf>,
    profile: crate::Profile,
) -> Result<crate::Engine, String> {
    match model {
        Some(path) => crate::Model::load(path)
            .map(crate::Engine::with_model)
            .map_err(|e| e.to_string()),
        None => Ok(crate::Engine::new(profile)),
    }
}
