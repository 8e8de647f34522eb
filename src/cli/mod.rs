//! The `zpage` command line: argument parsing and one module per subcommand.
//!
//! Invariants: every failure a user can cause (bad path, partial page file, unparsable
//! model, unreadable PID, busy zram device) is returned as an error with a one-line message
//! and a non-zero exit; nothing here panics on input. With `--json`, stdout carries exactly
//! one JSON object and stderr stays silent.

/// `writeln!` into a command's output (a `String`, which cannot fail to take it).
macro_rules! outln {
    ($out:expr) => {
        $out.push('\n')
    };
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

/// `write!` into a command's output.
macro_rules! out {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = write!($out, $($arg)*);
    }};
}

mod entropy;
mod plot;
mod progress;
mod sim;
mod train;
mod zram;

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
    /// Simulate zram: store page files or a live process's memory, read it back, and
    /// report mm_stat figures, per-class figures and baselines.
    Sim(sim::SimArgs),
    /// Order-0 entropy before and after the class transforms, per class and in total.
    Entropy(entropy::EntropyArgs),
    /// Run the kernel's zram and zpage on the same page files, side by side (root).
    Zram(zram::ZramArgs),
    /// Train a page classifier on page files and report accuracy, regret and speed.
    Train(train::TrainArgs),
}

/// Runs the parsed command line and writes its output.
pub fn run(cli: Cli) -> Result<(), String> {
    let output = match cli.command {
        Command::Entropy(args) => entropy::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Train(args) => train::run(args),
        Command::Zram(args) => zram::run(args),
    }?;
    emit(&output)
}

/// Writes a command's output to stdout. A reader that has gone (`zpage sim | head`) ends
/// the output, not the program with a panic.
fn emit(output: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("writing output: {e}")),
        _ => Ok(()),
    }
}

/// A report as the one JSON object a `--json` run prints.
fn json(report: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(report).expect("reports serialise") + "\n"
}

/// The page files `paths` expand to, as sources (checked now, opened when read).
fn open_sources(
    paths: &[PathBuf],
    pad: bool,
) -> Result<Vec<Box<dyn crate::source::PageSource>>, String> {
    let files = crate::pagefile::expand(paths).map_err(|e| e.to_string())?;
    files
        .iter()
        .map(|path| {
            crate::pagefile::PageFile::open(path, pad)
                .map(|f| Box::new(f) as Box<dyn crate::source::PageSource>)
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Loads the model a command was given, or the embedded one of its profile.
pub fn load_engine(
    model: Option<&PathBuf>,
    profile: crate::Profile,
) -> Result<crate::Engine, String> {
    match model {
        Some(path) => crate::Model::load(path)
            .map(crate::Engine::with_model)
            .map_err(|e| match e {
                crate::model::ModelError::Io { .. } => e.to_string(),
                _ => format!("{}: {e}", path.display()),
            }),
        None => Ok(crate::Engine::new(profile)),
    }
}
