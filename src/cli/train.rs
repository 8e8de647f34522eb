//! `zpage train`: label pages with the oracle, fit the tree, report on held-out pages.

use crate::model::Profile;
use crate::page::Page;
use crate::pagefile;
use crate::train::{self, Oracle, TreeLimits};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Page files or directories (walked for *.pages) to train on.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Test on these instead of every fifth 64-page run of the training input.
    #[arg(long, num_args = 1..)]
    test: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "dense")]
    profile: Profile,
    /// Write the model here (JSON).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
    /// Bytes a codec must save per unit of relative compress cost (default per profile).
    #[arg(long)]
    speed_weight: Option<f64>,
    /// zstd level of the dense class.
    #[arg(long)]
    zstd_level: Option<i32>,
    /// Deepest split level (default per profile: fast 3, dense 5).
    #[arg(long)]
    max_depth: Option<usize>,
    /// Fewest training pages in a leaf (default 24).
    #[arg(long)]
    min_leaf: Option<usize>,
    /// A split must lower the cost by this fraction of the root's cost (default 0.0002).
    #[arg(long)]
    min_gain: Option<f64>,
    /// Zero-fill a partial last page instead of refusing the file.
    #[arg(long)]
    pad: bool,
    /// Train on all inputs but one and test on that one, for each input in turn: the
    /// regret to expect on memory of a program the training set lacks (writes no model).
    #[arg(long, conflicts_with_all = ["test", "output"])]
    leave_one_out: bool,
}

pub fn run(args: TrainArgs) -> Result<String, String> {
    let sets = pagefile::read_all(&args.paths, args.pad).map_err(|e| e.to_string())?;
    let test_sets = pagefile::read_all(&args.test, args.pad).map_err(|e| e.to_string())?;
    let (mut train_pages, mut test_pages) = (Vec::new(), Vec::new());
    for set in &sets {
        if args.test.is_empty() {
            let (tr, te) = train::split_runs(&set.pages);
            train_pages.extend(tr);
            test_pages.extend(te);
        } else {
            train_pages.extend(set.pages.iter());
        }
    }
    for set in &test_sets {
        test_pages.extend(set.pages.iter());
    }
    if test_pages.is_empty() {
        return Err("no test pages: give more than 128 pages or --test PATH".into());
    }
    let mut oracle = Oracle::new(args.profile);
    if let Some(w) = args.speed_weight {
        oracle.speed_weight = w;
    }
    if let Some(level) = args.zstd_level {
        if !(-7..=22).contains(&level) {
            return Err(format!("--zstd-level {level}: must be in -7..=22"));
        }
        oracle.codec.zstd_level = level;
    }
    let defaults = TreeLimits::for_profile(args.profile);
    let limits = TreeLimits {
        max_depth: args.max_depth.unwrap_or(defaults.max_depth),
        min_leaf: args.min_leaf.unwrap_or(defaults.min_leaf).max(1),
        min_gain: args.min_gain.unwrap_or(defaults.min_gain).max(0.0),
    };
    if args.leave_one_out {
        return leave_one_out(&sets, &oracle, limits, args.json);
    }
    let (mut model, _) = train::train(&train_pages, &oracle, limits);
    let test_samples = oracle.label_all(&test_pages);
    let eval = train::evaluate(&model, &test_pages, &test_samples);
    model.provenance.test_pages = eval.test_pages;
    model.provenance.accuracy = eval.accuracy;
    model.provenance.regret = eval.regret;
    model.provenance.command = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('/'))
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(path) = &args.output {
        std::fs::write(path, model.to_json() + "\n")
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if args.json {
        let mut v = serde_json::to_value(&eval).expect("evaluation serialises");
        v["profile"] = args.profile.name().into();
        v["train_pages"] = (train_pages.len() as u64).into();
        v["speed_weight"] = oracle.speed_weight.into();
        v["tree_nodes"] = model.nodes.len().into();
        v["tree_depth"] = model.depth().into();
        return Ok(format!("{v}\n"));
    }
    let mut out = String::new();
    outln!(
        out,
        "zpage train: profile {}, speed weight {} bytes per LZ4-cost unit",
        args.profile.name(),
        oracle.speed_weight
    );
    outln!(
        out,
        "  train pages {}, test pages {}",
        train_pages.len(),
        eval.test_pages
    );
    outln!(
        out,
        "  tree: {} nodes, depth {}; classify {:.1} ns/page (features + tree, cache-warm pages)",
        model.nodes.len(),
        model.depth(),
        eval.classify_ns_per_page
    );
    outln!(
        out,
        "  accuracy {:.2}%   regret {:.2}% (tree {} B vs oracle {} B; ratio {:.3} vs {:.3})",
        eval.accuracy * 100.0,
        eval.regret * 100.0,
        eval.tree_bytes,
        eval.oracle_bytes,
        eval.input_bytes as f64 / eval.tree_bytes.max(1) as f64,
        eval.input_bytes as f64 / eval.oracle_bytes.max(1) as f64,
    );
    outln!(
        out,
        "  confusion (rows: oracle's class, columns: tree's class)"
    );
    out!(out, "  {:>15}", "");
    for c in &eval.classes {
        out!(out, " {:>14}", c);
    }
    outln!(out);
    for (row, name) in eval.confusion.iter().zip(&eval.classes) {
        out!(out, "  {name:>15}");
        for v in row {
            out!(out, " {v:>14}");
        }
        outln!(out);
    }
    if let Some(path) = &args.output {
        outln!(out, "  model written to {}", path.display());
    }
    Ok(out)
}

fn leave_one_out(
    sets: &[pagefile::PageSet],
    oracle: &Oracle,
    limits: TreeLimits,
    json: bool,
) -> Result<String, String> {
    if sets.len() < 2 {
        return Err("--leave-one-out needs at least two inputs".into());
    }
    let inputs: Vec<(String, Vec<&Page>)> = sets
        .iter()
        .map(|s| (s.name.clone(), s.pages.iter().collect()))
        .collect();
    let held = train::leave_one_out(&inputs, oracle, limits);
    let (tree, best): (u64, u64) = held
        .iter()
        .fold((0, 0), |(t, o), h| (t + h.tree_bytes, o + h.oracle_bytes));
    let regret = (tree as f64 - best as f64) / best.max(1) as f64;
    if json {
        let v = serde_json::json!({
            "profile": oracle.profile.name(),
            "max_depth": limits.max_depth,
            "regret": regret,
            "inputs": held,
        });
        return Ok(format!("{v}\n"));
    }
    let mut out = String::new();
    outln!(
        out,
        "zpage train --leave-one-out: profile {}, max depth {}; each input tested on a tree trained on the others",
        oracle.profile.name(),
        limits.max_depth
    );
    outln!(
        out,
        "  {:<28} {:>7} {:>10}",
        "held-out input",
        "pages",
        "regret"
    );
    for h in &held {
        outln!(
            out,
            "  {:<28} {:>7} {:>9.2}%",
            h.name,
            h.pages,
            h.regret * 100.0
        );
    }
    outln!(out, "  all inputs: regret {:.2}%", regret * 100.0);
    Ok(out)
}
