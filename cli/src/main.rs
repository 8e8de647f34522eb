//! The `zpage` command: argument parsing and one module per subcommand, over the analysis
//! tools of `zpage-tools`. See `zpage --help` and README.md.
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

mod advise;
mod capture;
mod cold;
mod dict;
mod entropy;
mod map;
mod plot;
mod progress;
mod quantize;
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
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Simulate zram: store page files or a live process's memory, read it back, and
    /// report mm_stat figures, per-class figures and baselines.
    Sim(sim::SimArgs),
    /// Order-0 entropy before and after the class transforms, per class and in total.
    Entropy(entropy::EntropyArgs),
    /// A picture of memory: every page a cell in address order, coloured by its class
    /// and shaded by how much its stored form keeps, under each mapping's name.
    Map(map::MapArgs),
    /// Run the kernel's zram and zpage on the same page files, side by side (root).
    Zram(zram::ZramArgs),
    /// Train a page classifier on page files and report accuracy, regret and speed.
    Train(train::TrainArgs),
    /// Train zstd dictionaries (one per cluster of similar pages) on page files and save
    /// them for `sim --dictionary-file`.
    Dict(dict::DictArgs),
    /// The cold tier's coders side by side on held-out pages: zstd-19 with cluster
    /// dictionaries, xz -9e, and the mixed form from the dictionaries' primers.
    Cold(cold::ColdArgs),
    /// Which zram configuration to use for these pages: a grid of algorithms, levels,
    /// dictionaries, recompression and writeback beside zpage's tiers, the frontier of
    /// memory against write speed, a recommendation and the lines that apply it.
    Advise(advise::AdviseArgs),
    /// Save a live process's memory (--pid) or every process's (--all, what swap would
    /// receive) as a page file, to run any command on the same pages again.
    Capture(capture::CaptureArgs),
    /// Quantise an image's colours by clustering (k-means, mini-batch, Gaussian mixture)
    /// and measure what the lossy step buys: PSNR, entropy, stored bytes.
    Quantize(quantize::QuantizeArgs),
}

fn main() {
    let cli = Cli::parse();
    if let Err(message) = run(cli) {
        eprintln!("zpage: {message}");
        std::process::exit(1);
    }
}

/// Runs the parsed command line and writes its output.
fn run(cli: Cli) -> Result<(), String> {
    let output = match cli.command {
        Command::Advise(args) => advise::run(args),
        Command::Capture(args) => capture::run(args),
        Command::Cold(args) => cold::run(args),
        Command::Dict(args) => dict::run(args),
        Command::Entropy(args) => entropy::run(args),
        Command::Map(args) => map::run(args),
        Command::Quantize(args) => quantize::run(args),
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

/// Refuses an output path whose name does not end in `.ext`, the one format the file
/// given by `flag` is written in.
fn check_extension(flag: &str, path: &std::path::Path, ext: &str) -> Result<(), String> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
    {
        return Ok(());
    }
    Err(format!(
        "{flag} {}: it is written as {}; give a file name ending in .{ext}",
        path.display(),
        ext.to_uppercase()
    ))
}

/// The page files `paths` expand to, as sources (checked now, opened when read).
fn open_sources(
    paths: &[PathBuf],
    pad: bool,
) -> Result<Vec<Box<dyn zpage_tools::source::PageSource>>, String> {
    let files = zpage_tools::pagefile::expand(paths).map_err(|e| e.to_string())?;
    files
        .iter()
        .map(|path| {
            zpage_tools::pagefile::PageFile::open(path, pad)
                .map(|f| Box::new(f) as Box<dyn zpage_tools::source::PageSource>)
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// `--profile`: one of the profile names (listed in `--help`).
fn profile_arg() -> impl clap::builder::TypedValueParser<Value = zpage::Profile> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(["fast", "dense", "words"])
        .map(|name| name.parse().expect("a listed profile name"))
}

/// Loads the model a command was given, or the embedded one of its profile.
fn load_engine(model: Option<&PathBuf>, profile: zpage::Profile) -> Result<zpage::Engine, String> {
    match model {
        Some(path) => zpage::Model::load(path)
            .map(zpage::Engine::with_model)
            .map_err(|e| match e {
                zpage::classify::model::ModelError::Io { .. } => e.to_string(),
                _ => format!("{}: {e}", path.display()),
            }),
        None => Ok(zpage::Engine::new(profile)),
    }
}
