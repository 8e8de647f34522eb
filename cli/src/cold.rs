//! `zpage cold`: the cold tier's coders side by side on each input's held-out pages.

use clap::Args;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use zpage_tools::cold::{self, ColdRow};
use zpage_tools::compare;
use zpage_tools::pagefile;

/// The JSON schema name and version of the `zpage cold` report.
pub const SCHEMA: &str = "zpage-cold/1";

#[derive(Args, Debug)]
pub struct ColdArgs {
    /// Page files or directories (walked for *.pages).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Held-out pages coded per input (the others train dictionaries and primers).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    test_pages: u64,
    /// Zero-fill a partial last page instead of refusing the file.
    #[arg(long)]
    pad: bool,
    /// Print one JSON object (schema zpage-cold/1) instead of the report.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    schema: &'static str,
    inputs: Vec<ColdRow>,
    /// Geometric means over the inputs of each coder's bytes over zstd-19 with
    /// dictionaries.
    mixed_vs_zstd: f64,
    mixed_unprimed_vs_zstd: f64,
    xz_vs_zstd: f64,
}

pub fn run(args: ColdArgs) -> Result<String, String> {
    let files = pagefile::expand(&args.paths).map_err(|e| e.to_string())?;
    let mut inputs = Vec::new();
    for path in &files {
        let (name, pages) = cold::sample(path, args.pad).map_err(|e| e.to_string())?;
        let row =
            cold::compare(&name, &pages, args.test_pages as usize).map_err(|e| e.to_string())?;
        inputs.push(row);
    }
    let report = Report {
        schema: SCHEMA,
        mixed_vs_zstd: compare::geomean(inputs.iter().map(|r| r.mixed_vs_zstd)),
        mixed_unprimed_vs_zstd: compare::geomean(inputs.iter().map(|r| r.mixed_unprimed_vs_zstd)),
        xz_vs_zstd: compare::geomean(inputs.iter().map(|r| r.xz_vs_zstd)),
        inputs,
    };
    if args.json {
        return Ok(super::json(&report));
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "zpage cold: held-out pages of each input, bytes over zstd-19 with the cluster dictionaries trained on its other pages; every mixed page decoded and compared\n"
    );
    let _ = writeln!(
        s,
        "{:<24} {:>6} {:>10} {:>7} {:>7} {:>9} {:>8} {:>8} {:>9} {:>8} {:>6} {:>8}",
        "input",
        "pages",
        "zstd19+d",
        "xz-9e",
        "mixed",
        "unprimed",
        "enc MB/s",
        "dec MB/s",
        "zstd dec",
        "xz dec",
        "dicts",
        "primers"
    );
    for r in &report.inputs {
        let _ = writeln!(
            s,
            "{:<24} {:>6} {:>10} {:>7.3} {:>7.3} {:>9.3} {:>8.2} {:>8.2} {:>9.0} {:>8.1} {:>6} {:>7}K",
            r.name,
            r.pages,
            r.zstd19_dict_bytes,
            r.xz_vs_zstd,
            r.mixed_vs_zstd,
            r.mixed_unprimed_vs_zstd,
            r.mixed_encode_mb_s,
            r.mixed_decode_mb_s,
            r.zstd19_dict_decode_mb_s,
            r.xz_decode_mb_s,
            r.dictionaries,
            r.primer_bytes / 1024,
        );
    }
    let _ = writeln!(
        s,
        "\ngeometric mean over inputs: mixed {:.3}, mixed unprimed {:.3}, xz-9e {:.3} (of zstd-19 with dictionaries)",
        report.mixed_vs_zstd, report.mixed_unprimed_vs_zstd, report.xz_vs_zstd
    );
    Ok(s)
}
