//! `zpage train`: label pages with the oracle, fit the tree, report on held-out pages.

use super::progress::Progress;
use clap::Args;
use std::path::PathBuf;
use zpage::classify::model::Profile;
use zpage::page::Page;
use zpage_tools::source::{CHUNK_PAGES, PageSource};
use zpage_tools::train::{self, Labelled, Oracle, TreeLimits};

/// The JSON schema names and versions of `zpage train --json` and of its
/// `--leave-one-out` form.
const SCHEMA: &str = "zpage-train/1";
const LEAVE_ONE_OUT_SCHEMA: &str = "zpage-train-leave-one-out/1";

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Page files or directories (walked for *.pages) to train on.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Test on these instead of every fifth 64-page run of the training input.
    #[arg(long, num_args = 1..)]
    test: Vec<PathBuf>,
    /// The profile to train: fast (never slower than LZ4 to compress) or dense (zstd
    /// where its ratio pays).
    #[arg(long, default_value = "dense", value_parser = super::profile_arg())]
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
    /// Price the zstd leaf as a store with these dictionaries (from `zpage dict`) encodes
    /// it: with the page's cluster dictionary, at --dictionary-level, and that much
    /// slower; the oracle, regret and leave-one-out then include the dictionary forms.
    #[arg(long, value_name = "FILE")]
    dictionary_file: Option<PathBuf>,
    /// The zstd level of the dictionary forms.
    #[arg(long, requires = "dictionary_file", default_value_t = zpage::store::DICTIONARY_LEVEL, value_parser = clap::value_parser!(i32).range(1..=22))]
    dictionary_level: i32,
    /// Judge the tree on what the store keeps after its cold passes too: the test pages
    /// packed into units of neighbours (zstd at the cold level, with the cluster
    /// dictionary where --dictionary-file gives one) and weighed against the mixed form,
    /// each pass's rule replayed over the tree's forms and over the oracle's (slower:
    /// every test page is coded twice more).
    #[arg(long)]
    cold: bool,
}

/// Memory: per page its label (features and per-codec sizes, about 130 bytes, not the
/// page), plus one chunk and [`train::TIMING_PAGES`] pages per input for timing.
pub fn run(args: TrainArgs) -> Result<String, String> {
    let mut sources = super::open_sources(&args.paths, args.pad)?;
    let mut test_sources = if args.test.is_empty() {
        Vec::new()
    } else {
        super::open_sources(&args.test, args.pad)?
    };
    let mut oracle = Oracle::new(args.profile);
    if let Some(path) = &args.dictionary_file {
        let set = zpage::codec::dictset::DictionarySet::load(path, 1, args.dictionary_level)
            .map_err(|e| e.to_string())?;
        oracle.dictionaries = Some(set);
    }
    if let Some(w) = args.speed_weight {
        oracle.speed_weight = w;
    }
    if let Some(level) = args.zstd_level {
        if !(-7..=22).contains(&level) {
            return Err(format!("--zstd-level {level}: must be in -7..=22"));
        }
        oracle.codec.zstd_level = level;
    }
    if args
        .max_depth
        .is_some_and(|d| d >= zpage::classify::model::MAX_DEPTH)
    {
        return Err(format!(
            "--max-depth must be below {}",
            zpage::classify::model::MAX_DEPTH
        ));
    }
    let defaults = TreeLimits::for_profile(args.profile);
    let limits = TreeLimits {
        max_depth: args.max_depth.unwrap_or(defaults.max_depth),
        min_leaf: args.min_leaf.unwrap_or(defaults.min_leaf).max(1),
        min_gain: args.min_gain.unwrap_or(defaults.min_gain).max(0.0),
    };
    let total: u64 = sources
        .iter()
        .chain(&test_sources)
        .map(|s| s.expected_pages())
        .sum();
    let mut progress = Progress::new(total, "labelling", args.json);
    if args.leave_one_out {
        let inputs = sources
            .iter_mut()
            .map(|source| label_whole(source.as_mut(), &oracle, args.cold, &mut progress))
            .collect::<Result<Vec<_>, String>>()?;
        drop(progress);
        return leave_one_out(&inputs, &oracle, limits, args.json);
    }
    // Without --test, every fifth 64-page run of each input is held out.
    let held_out = |index| args.test.is_empty() && train::is_test_page(index);
    let (mut train_samples, mut test) = (Vec::new(), Vec::new());
    for source in &mut sources {
        let (train_part, test_part) = label(
            source.as_mut(),
            &oracle,
            held_out,
            [false, args.cold],
            &mut progress,
        )?;
        train_samples.extend(train_part.samples);
        test.push(test_part);
    }
    for source in &mut test_sources {
        test.push(label_whole(
            source.as_mut(),
            &oracle,
            args.cold,
            &mut progress,
        )?);
    }
    drop(progress);
    let (test_samples, test_units) = train::concat(&test);
    let timing: Vec<_> = test.iter().flat_map(|t| t.timing.iter().copied()).collect();
    if test_samples.is_empty() {
        return Err("no test pages: give more than 128 pages or --test PATH".into());
    }
    let train_pages = train_samples.len();
    let mut model = train::model_of(&train_samples, &oracle, limits);
    let eval = train::evaluate(&model, &test_samples, &test_units, &timing);
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
        v["schema"] = SCHEMA.into();
        v["profile"] = args.profile.name().into();
        v["train_pages"] = (train_pages as u64).into();
        v["speed_weight"] = oracle.speed_weight.into();
        v["tree_nodes"] = model.nodes().len().into();
        v["tree_depth"] = model.depth().into();
        return Ok(super::json(&v));
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
        train_pages,
        eval.test_pages
    );
    outln!(
        out,
        "  tree: {} nodes, depth {}; classify {:.1} ns/page (features + tree, cache-warm pages)",
        model.nodes().len(),
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
    if let Some(cold) = &eval.cold {
        print_cycle(&mut out, cold, eval.input_bytes);
    }
    if let Some(path) = &args.output {
        outln!(out, "  model written to {}", path.display());
    }
    Ok(out)
}

/// The life cycle's bytes and regret after each step.
fn print_cycle(out: &mut String, cold: &train::ColdEvaluation, input_bytes: u64) {
    outln!(
        out,
        "  the store's life cycle on the test pages ({} units of neighbours: {} kept by the cold pass, {} turned mixed by the coldest)",
        cold.units,
        cold.units_kept,
        cold.units_mixed
    );
    outln!(
        out,
        "  {:<10} {:>12} {:>12} {:>8} {:>8} {:>8}",
        "step",
        "tree B",
        "oracle B",
        "ratio",
        "oracle",
        "regret"
    );
    let (t, o) = (cold.tree, cold.oracle);
    for (name, tree, oracle) in [
        ("idle", t.idle, o.idle),
        ("cold", t.cold, o.cold),
        ("coldest", t.coldest, o.coldest),
    ] {
        outln!(
            out,
            "  {name:<10} {tree:>12} {oracle:>12} {:>8.3} {:>8.3} {:>7.2}%",
            input_bytes as f64 / tree.max(1) as f64,
            input_bytes as f64 / oracle.max(1) as f64,
            train::regret(tree, oracle) * 100.0
        );
    }
}

/// Labels every page of a source (none held out), pricing their cold forms if `cold`.
fn label_whole(
    source: &mut dyn PageSource,
    oracle: &Oracle,
    cold: bool,
    progress: &mut Progress,
) -> Result<Labelled, String> {
    Ok(label(source, oracle, |_| false, [cold, false], progress)?.0)
}

/// Labels a source's pages a chunk at a time, keeping labels (not pages): those for which
/// `held_out(index)` is true go to the second result, the rest to the first; each keeps up
/// to [`train::TIMING_PAGES`] of its pages for timing. Where `price` says so for a part,
/// its pages' cold forms are priced too, in runs of neighbours.
fn label(
    source: &mut dyn PageSource,
    oracle: &Oracle,
    held_out: impl Fn(u64) -> bool,
    price: [bool; 2],
    progress: &mut Progress,
) -> Result<(Labelled, Labelled), String> {
    let name = source.name().to_string();
    let empty = || Labelled {
        name: name.clone(),
        samples: Vec::new(),
        units: Vec::new(),
        timing: Vec::new(),
    };
    let mut parts = [empty(), empty()];
    let (mut chunk, mut index) = (Vec::with_capacity(CHUNK_PAGES), 0u64);
    let mut split: [Vec<Page>; 2] = Default::default();
    // Per part, where each run of neighbours in this chunk starts.
    let mut runs: [Vec<usize>; 2] = Default::default();
    while source
        .next_chunk(&mut chunk)
        .map_err(|e| format!("{name}: {e}"))?
    {
        split.iter_mut().for_each(Vec::clear);
        runs.iter_mut().for_each(Vec::clear);
        let mut last = None;
        for page in &chunk {
            let part = usize::from(held_out(index));
            if last != Some(part) {
                runs[part].push(split[part].len());
            }
            last = Some(part);
            split[part].push(*page);
            index += 1;
        }
        for (((part, pages), starts), price) in parts.iter_mut().zip(&split).zip(&runs).zip(price) {
            let first = part.samples.len();
            part.samples.extend(oracle.label_all(pages));
            if price {
                let ends = starts.iter().skip(1).copied().chain([pages.len()]);
                let runs: Vec<_> = starts.iter().zip(ends).map(|(&s, e)| s..e).collect();
                let units = oracle.price_cold(pages, &mut part.samples[first..], first, &runs);
                part.units.extend(units);
            }
            let room = train::TIMING_PAGES - part.timing.len();
            part.timing.extend(pages.iter().take(room));
        }
        progress.inc(chunk.len() as u64);
    }
    let [train, test] = parts;
    Ok((train, test))
}

fn leave_one_out(
    inputs: &[Labelled],
    oracle: &Oracle,
    limits: TreeLimits,
    json: bool,
) -> Result<String, String> {
    if inputs.len() < 2 {
        return Err("--leave-one-out needs at least two inputs".into());
    }
    let held = train::leave_one_out(inputs, oracle, limits);
    let (tree, best): (u64, u64) = held
        .iter()
        .fold((0, 0), |(t, o), h| (t + h.tree_bytes, o + h.oracle_bytes));
    let regret = train::regret(tree, best);
    if json {
        let v = serde_json::json!({
            "schema": LEAVE_ONE_OUT_SCHEMA,
            "profile": oracle.profile.name(),
            "max_depth": limits.max_depth,
            "regret": regret,
            "inputs": held,
        });
        return Ok(super::json(&v));
    }
    let mut out = String::new();
    outln!(
        out,
        "zpage train --leave-one-out: profile {}, max depth {}; each input tested on a tree trained on the others",
        oracle.profile.name(),
        limits.max_depth
    );
    let cold: Option<Vec<&train::ColdEvaluation>> = held.iter().map(|h| h.cold.as_ref()).collect();
    outln!(
        out,
        "  {:<28} {:>7} {:>10}{}",
        "held-out input",
        "pages",
        "regret",
        if cold.is_some() {
            "  after the coldest pass"
        } else {
            ""
        }
    );
    for h in &held {
        let after = (h.cold.as_ref()).map_or(String::new(), |c| {
            format!(" {:>22.2}%", c.regret_coldest * 100.0)
        });
        outln!(
            out,
            "  {:<28} {:>7} {:>9.2}%{after}",
            h.name,
            h.pages,
            h.regret * 100.0
        );
    }
    out!(out, "  all inputs: regret {:.2}%", regret * 100.0);
    if let Some(cold) = cold {
        let (tree, best) = (cold.iter()).fold((0, 0), |(t, o), c| {
            (t + c.tree.coldest, o + c.oracle.coldest)
        });
        out!(
            out,
            "; after the coldest pass {:.2}%",
            train::regret(tree, best) * 100.0
        );
    }
    outln!(out);
    Ok(out)
}
