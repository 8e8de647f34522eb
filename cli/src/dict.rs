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

#[derive(Serialize)]
struct Report {
    schema: &'static str,
    output: String,
    /// Pages the dense classifier stores as zstd, which dictionaries serve.
    zstd_pages: u64,
    sampled_pages: u64,
    clusters: usize,
    dictionary_bytes: Vec<usize>,
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
    let mut scratch = Vec::new();
    for source in sources.iter_mut() {
        while source
            .next_chunk(&mut chunk)
            .map_err(|e| format!("{}: {e}", source.name()))?
        {
            for page in &chunk {
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
    set.save(&args.output).map_err(|e| e.to_string())?;
    let report = Report {
        schema: "zpage-dict/1",
        output: args.output.display().to_string(),
        zstd_pages,
        sampled_pages: sample.len() as u64,
        clusters: set.dictionaries().len(),
        dictionary_bytes: set.dictionaries().iter().map(|d| d.bytes().len()).collect(),
        memory_bytes: set.memory_bytes(),
    };
    Ok(if args.json {
        super::json(&report)
    } else {
        format!(
            "zpage dict: {} pages stored as zstd, {} sampled; {} cluster(s), dictionaries of {:?} bytes ({} bytes in memory), written to {}\n",
            report.zstd_pages,
            report.sampled_pages,
            report.clusters,
            report.dictionary_bytes,
            report.memory_bytes,
            report.output
        )
    })
}
