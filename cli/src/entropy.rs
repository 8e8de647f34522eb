//! `zpage entropy`: order-0 entropy before and after the class transforms, per class and
//! in total, with an optional SVG plot.

use super::progress::Progress;
use clap::Args;
use std::path::PathBuf;
use zpage::classify::model::Profile;
use zpage_tools::entropy::{self, Report};

#[derive(Args, Debug)]
pub struct EntropyArgs {
    /// Page files or directories (walked for *.pages).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print one JSON object (schema zpage-entropy/1) instead of the report.
    #[arg(long)]
    json: bool,
    /// Write an SVG plot: per-page entropy before vs after, and per-class bars.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// The embedded classifier to use: fast (never slower than LZ4 to compress) or dense
    /// (zstd where its ratio pays).
    #[arg(long, default_value = "dense", value_parser = super::profile_arg())]
    profile: Profile,
    /// A model file from `zpage train` instead of the profile's embedded model (it
    /// assigns each page its class, and so its transform).
    #[arg(long, conflicts_with = "profile")]
    model: Option<PathBuf>,
    /// Zero-fill a partial last page instead of refusing the file.
    #[arg(long)]
    pad: bool,
}

pub fn run(args: EntropyArgs) -> Result<String, String> {
    if let Some(plot) = &args.plot {
        super::check_extension("--plot", plot, "svg")?;
    }
    let engine = super::load_engine(args.model.as_ref(), args.profile)?;
    let mut sources = super::open_sources(&args.paths, args.pad)?;
    let total: u64 = sources.iter().map(|s| s.expected_pages()).sum();
    // Twice over: a first read samples what the ladder's dictionaries train on.
    let mut progress = Progress::new(2 * total, "entropy", args.json);
    let report = entropy::analyse(&mut sources, &engine, &mut |n| progress.inc(n))?;
    drop(progress);
    if let Some(path) = &args.plot {
        super::plot::entropy_svg(&report, path)?;
    }
    Ok(if args.json {
        super::json(&report)
    } else {
        print_report(&report, args.plot.as_ref())
    })
}

fn print_report(r: &Report, plot: Option<&PathBuf>) -> String {
    let mut out = String::new();
    outln!(
        out,
        "order-0 entropy of {} pages ({} bytes), in bits per input byte",
        r.pages,
        r.input_bytes
    );
    outln!(
        out,
        "  input (before the class transforms): {:.3}",
        r.input_entropy
    );
    outln!(
        out,
        "  output (after them):                 {:.3}   ({:+.1}%)",
        r.output_entropy,
        100.0 * (r.output_entropy / r.input_entropy.max(1e-12) - 1.0)
    );
    outln!(out);
    outln!(
        out,
        "{:<16} {:>8} {:>8} {:>8}",
        "class",
        "pages",
        "input",
        "output"
    );
    for (name, f) in &r.classes {
        outln!(
            out,
            "{name:<16} {:>8} {:>8.3} {:>8.3}",
            f.pages,
            f.input_entropy,
            f.output_entropy
        );
    }
    outln!(out);
    outln!(
        out,
        "the ladder, bits per input byte: order-0 before and after the transforms, order-1 and order-2 conditional entropy of the transformed bytes (per page), and the stored forms"
    );
    outln!(
        out,
        "{:<16} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "class",
        "before",
        "order0",
        "order1",
        "order2",
        "fast",
        "dense",
        "dicts",
        "mixed"
    );
    let rows = r
        .classes
        .iter()
        .map(|(c, f)| (c.name().to_string(), f))
        .chain(std::iter::once(("total".to_string(), &r.total)));
    for (name, f) in rows {
        let stored = |p: &str| {
            f.stored
                .get(p)
                .map_or("-".to_string(), |b| format!("{b:.3}"))
        };
        outln!(
            out,
            "{name:<16} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7} {:>7} {:>7} {:>7}",
            f.input_entropy,
            f.order0,
            f.order1,
            f.order2,
            stored("fast"),
            stored("dense"),
            stored("dense_dictionaries"),
            stored("mixed")
        );
    }
    if let Some(note) = &r.stored_note {
        outln!(out, "({note})");
    }
    if r.inputs.len() > 1 {
        outln!(out);
        outln!(
            out,
            "{:<28} {:>8} {:>8} {:>8}",
            "input",
            "pages",
            "input",
            "output"
        );
        for i in &r.inputs {
            outln!(
                out,
                "{:<28} {:>8} {:>8.3} {:>8.3}",
                i.name,
                i.figures.pages,
                i.figures.input_entropy,
                i.figures.output_entropy
            );
        }
    }
    if let Some(path) = plot {
        outln!(out);
        outln!(out, "plot written to {}", path.display());
    }
    out
}
