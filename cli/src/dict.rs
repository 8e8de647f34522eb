//! `zpage dict`: train a dictionary set offline on page files (or a live process) and
//! save it, for `zpage sim --dictionary-file` or a store built with it, as zram users
//! train a dictionary for `algorithm_params dict=`.

use super::progress::Progress;
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use zpage::codec::dictset::{DictionarySet, TrainTarget};
use zpage::{Class, Page};
use zpage_tools::source::CHUNK_PAGES;

#[derive(Args, Debug)]
pub struct DictArgs {
    /// Page files or directories (walked for *.pages).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Where to write the set.
    #[arg(short, long)]
    output: PathBuf,
    /// The zstd level the dictionaries are chosen for.
    #[arg(long, default_value_t = zpage::store::DICTIONARY_LEVEL, value_parser = clap::value_parser!(i32).range(1..=22))]
    level: i32,
    /// Most clusters (each with its dictionary) to consider: 1, 2, 4 or 8; 1 trains one
    /// dictionary for every page.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=8))]
    max_clusters: u8,
    /// Print one JSON object (schema zpage-dict/1) instead of the report.
    #[arg(long)]
    json: bool,
    /// Zero-fill a partial last page instead of refusing the file.
    #[arg(long)]
    pad: bool,
}

/// Pages sampled at most (spread evenly over the input), as a store samples itself.
const SAMPLE: usize = 1536;
/// Runs of neighbouring pages sampled (spread evenly) to judge planes twins on, as a
/// store samples itself, each the store's default unit.
const UNITS: u64 = 64;

#[derive(Serialize)]
struct Report {
    schema: &'static str,
    output: String,
    /// Pages the dense classifier stores as zstd, which dictionaries serve.
    zstd_pages: u64,
    sampled_pages: u64,
    clusters: usize,
    dictionary_bytes: Vec<usize>,
    /// Each cluster's planes twin for cold units (0: none paid for itself).
    twin_bytes: Vec<usize>,
    memory_bytes: usize,
}

pub fn run(args: DictArgs) -> Result<String, String> {
    let engine = zpage::Engine::new(zpage::Profile::Dense);
    let mut sources = super::open_sources(&args.paths, args.pad)?;
    let total: u64 = sources.iter().map(|s| s.expected_pages()).sum();
    let mut progress = Progress::new(total, "sampling", args.json);
    // Every n-th zstd page, n doubling whenever the sample fills (then every other kept
    // page goes): an even spread over an input of unknown zstd share, in bounded memory.
    let (mut sample, mut stride, mut zstd_pages) = (Vec::<Page>::new(), 1u64, 0u64);
    let mut chunk = Vec::with_capacity(CHUNK_PAGES);
    let mut plain_bytes = 0u64;
    // Runs of neighbouring stored (not zero- or same-filled) pages, one starting every
    // `run_stride` pages of the input.
    let unit_pages = zpage::store::DEFAULT_UNIT_PAGES;
    let run_stride = (total / UNITS).max(unit_pages as u64);
    let (mut units, mut run, mut index, mut stored_pages) = (Vec::new(), None, 0u64, 0u64);
    let mut scratch = Vec::new();
    for source in sources.iter_mut() {
        while source
            .next_chunk(&mut chunk)
            .map_err(|e| format!("{}: {e}", source.name()))?
        {
            for page in &chunk {
                if index.is_multiple_of(run_stride) && run.is_none() {
                    run = Some(Vec::with_capacity(unit_pages * zpage::PAGE_SIZE));
                }
                index += 1;
                if page.same_filled_word().is_some() {
                    continue;
                }
                stored_pages += 1;
                if let Some(unit) = run.as_mut() {
                    unit.extend_from_slice(page.bytes());
                    if unit.len() == unit_pages * zpage::PAGE_SIZE {
                        units.extend(run.take());
                    }
                }
                if engine.classify(page).class != Class::Zstd {
                    continue;
                }
                if zstd_pages.is_multiple_of(stride) {
                    if sample.len() == SAMPLE {
                        sample = sample.into_iter().step_by(2).collect();
                        stride *= 2;
                    }
                    if zstd_pages.is_multiple_of(stride) {
                        engine.encode(page, &mut scratch);
                        plain_bytes += scratch.len() as u64;
                        sample.push(*page);
                    }
                }
                zstd_pages += 1;
            }
            progress.inc(chunk.len() as u64);
        }
    }
    drop(progress);
    if sample.is_empty() {
        return Err("no page of the input is stored as zstd: no dictionary would serve".into());
    }
    // The store's budget: 1/16 of its compressed zstd pages, at most 512 KiB.
    let compressed = plain_bytes as f64 / sample.len() as f64 * zstd_pages as f64;
    let target = TrainTarget {
        budget_bytes: ((compressed / 16.0) as usize).min(512 << 10),
        level: args.level,
        plain_level: engine.codec().zstd_level,
        first_id: 1,
        served_pages: zstd_pages,
        max_clusters: usize::from(args.max_clusters),
    };
    let refs: Vec<&Page> = sample.iter().collect();
    let set = DictionarySet::train(&refs, target).ok_or(
        "no dictionary pays for its memory on these pages (too few, or too unlike each other)",
    )?;
    let units: Vec<&[u8]> = units.iter().map(|u: &Vec<u8>| &u[..]).collect();
    let set = set.with_twins(&units, stored_pages);
    set.save(&args.output).map_err(|e| e.to_string())?;
    let report = Report {
        schema: "zpage-dict/1",
        output: args.output.display().to_string(),
        zstd_pages,
        sampled_pages: sample.len() as u64,
        clusters: set.dictionaries().len(),
        dictionary_bytes: set.dictionaries().iter().map(|d| d.bytes().len()).collect(),
        twin_bytes: set
            .dictionaries()
            .iter()
            .map(|d| d.planes().map_or(0, |t| t.bytes().len()))
            .collect(),
        memory_bytes: set.memory_bytes(),
    };
    Ok(if args.json {
        super::json(&report)
    } else {
        format!(
            "zpage dict: {} pages stored as zstd, {} sampled; {} cluster(s), dictionaries of {:?} bytes, planes twins of {:?} ({} bytes in memory), written to {}\n",
            report.zstd_pages,
            report.sampled_pages,
            report.clusters,
            report.dictionary_bytes,
            report.twin_bytes,
            report.memory_bytes,
            report.output
        )
    })
}
