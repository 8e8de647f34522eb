//! `zpage sim`: run page files or a live process through a `PageStore` and report what
//! zram would (`mm_stat`), per class, and against baselines on the same pages.

use super::progress::Progress;
use clap::Args;
use std::path::{Path, PathBuf};
use zpage::classify::model::Profile;
use zpage::codec::dictset::DictionarySet;
use zpage_tools::compare::Baseline;
use zpage_tools::lifecycle::{self, Lifecycle, WritebackType};
use zpage_tools::procmem;
use zpage_tools::sim::{self, Report};
use zpage_tools::zram_model::ZramConfig;

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Page files or directories (walked for *.pages); default: the sample shipped in
    /// the repository's data/ directory.
    paths: Vec<PathBuf>,
    /// Also (or instead) read the private anonymous memory of this live process.
    #[arg(long)]
    pid: Option<u32>,
    /// The embedded classifier to use: fast (never slower than LZ4 to compress), dense
    /// (zstd where its ratio pays) or words (the word form, no classifier: a tiered
    /// store's way in). Default: dense; with --lifecycle, words (the insert path).
    #[arg(long, value_parser = super::profile_arg())]
    profile: Option<Profile>,
    /// A model file from `zpage train` instead of the profile's embedded model.
    #[arg(long, conflicts_with = "profile")]
    model: Option<PathBuf>,
    /// Print one JSON object (schema zpage-sim/1) instead of the report.
    #[arg(long)]
    json: bool,
    /// Zero-fill a partial last page instead of refusing the file.
    #[arg(long)]
    pad: bool,
    /// Schemes to run beside zpage on the same pages, in one table (as `zstd -b` does):
    /// lz4, zstd-1 to zstd-22 (each: that codec for every page), zram-best (zram's best
    /// configuration on Linux 6.12+, emulated: zstd level 8 with a 110 KB dictionary
    /// trained on a tenth of the input; page files only, as it reads the input twice),
    /// oracle (per page the smallest of every codec).
    #[arg(long, value_delimiter = ',', default_values = Baseline::DEFAULT, value_parser = Baseline::parse)]
    codecs: Vec<Baseline>,
    /// The kernel's zram predicted on the same pages, without root: each configuration
    /// ALGO[:OPTION]... (lzo, lzo-rle, lz4, lz4hc, zstd, deflate; options level=N,
    /// winbits=N for deflate, dict (trained on the input; page files only) or dict=PATH
    /// for zstd, recomp=ALGO[@LEVEL][+dict] per recompression priority, chain=N for
    /// zsmalloc's chain size) compressed as the kernel's algorithm does and placed in a
    /// model of zsmalloc; its mm_stat fields in the report. With --lifecycle, the
    /// kernel's life cycle beside zpage's: idle, recompress type=idle, writeback of
    /// --writeback's type (with --backing), compact.
    #[arg(long, value_delimiter = ',', value_parser = ZramConfig::parse)]
    zram: Vec<ZramConfig>,
    #[command(flatten)]
    dictionaries: DictionaryArgs,
    #[command(flatten)]
    lifecycle: LifecycleArgs,
}

/// zram's life cycle (`sim --lifecycle`).
#[derive(Args, Debug)]
pub struct LifecycleArgs {
    /// Run zram's life cycle instead of one store pass: store every page with --profile
    /// (timed), mark all idle, recompress the idle pages with --idle-profile and the
    /// dictionaries (trained by the pass on the input's own pages unless a file is
    /// given), write back to --backing, and read every page back; mm_stat after each step.
    #[arg(long)]
    lifecycle: bool,
    /// The profile of the idle pass.
    #[arg(long, default_value = "dense", value_parser = super::profile_arg(), requires = "lifecycle")]
    idle_profile: Profile,
    /// The zstd level of the cold step, which re-encodes the idle pages once more for
    /// pages that stay idle (0: no cold step). Sampling a process, the pages untouched
    /// for four intervals.
    #[arg(long, default_value_t = zpage::store::COLD_LEVEL, value_parser = clap::value_parser!(i32).range(0..=22), requires = "lifecycle")]
    cold_level: i32,
    /// Pages the cold step compresses together as one unit (neighbours by id, for a
    /// process its address order); 1 keeps each page alone, with the mixed form where
    /// it is smaller.
    #[arg(long, default_value_t = zpage::store::DEFAULT_UNIT_PAGES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=zpage::codec::unit::MAX_UNIT_PAGES as u64), requires = "lifecycle")]
    unit_pages: usize,
    /// After the cold step, a coldest one: each unit's pages in the mixed form (context
    /// mixing) where together they are smaller than the unit; slower to encode and read.
    #[arg(long, requires = "lifecycle")]
    coldest: bool,
    /// zram's mem_limit for each input's store (bytes, or with K, M or G): writes past it
    /// fail and are counted, as zram's do.
    #[arg(long, value_parser = parse_size)]
    mem_limit: Option<u64>,
    /// Where the writeback step writes: a file (created, the input's size), a block
    /// device, or a Valkey/Redis server, redis://HOST:PORT[/DB] (records under a
    /// namespace of this run's own, deleted at the end; 2-second timeouts).
    #[arg(long, value_name = "FILE|redis://HOST:PORT", value_parser = lifecycle::BackingTarget::parse, requires = "lifecycle")]
    backing: Option<lifecycle::BackingTarget>,
    /// Which pages the writeback step takes: huge (still uncompressed after the idle
    /// pass), idle (all idle pages) or huge_idle.
    #[arg(long, default_value = "huge", value_parser = WritebackType::parse, requires = "backing")]
    writeback: WritebackType,
    /// With --pid: sample the process this many times into one store, --interval apart,
    /// storing what changed, removing what is gone and running the idle pass over pages
    /// untouched for an interval, and report mm_stat after each sample.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000), requires = "pid")]
    count: u32,
    /// Seconds between samples (with --count).
    #[arg(long, default_value_t = 5.0, requires = "count")]
    interval: f64,
    /// Write an SVG of mm_stat and the effective ratio after each step (with --count:
    /// over time).
    #[arg(long, value_name = "FILE.svg", requires = "lifecycle")]
    plot: Option<PathBuf>,
}

/// A size in bytes, with an optional K, M or G suffix (powers of 1024, as zram's).
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, shift) = match text.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&text[..text.len() - 1], 10),
        Some(b'M') => (&text[..text.len() - 1], 20),
        Some(b'G') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{text:?} is not a size (bytes, or a number with K, M or G)"))
}

/// How the stores get zstd dictionaries (`sim` and `zram`'s dense runs).
#[derive(Args, Debug)]
pub struct DictionaryArgs {
    /// Let each input's store train zstd dictionaries on its own pages once this many
    /// are stored as zstd (and again at four times as many): one per cluster of similar
    /// pages, or none where none pays for its memory. Pages stored before keep their form.
    #[arg(long, value_name = "ZSTD_PAGES")]
    dictionaries: Option<u64>,
    /// Encode zstd pages with the dictionaries of this file (from `zpage dict`) from the
    /// first page on, as a zram configured with `algorithm_params dict=` does.
    #[arg(long, value_name = "FILE", conflicts_with = "dictionaries")]
    dictionary_file: Option<PathBuf>,
    /// The zstd level of pages encoded with a dictionary (at the dense profile's level 3
    /// a dictionary loses on some programs).
    #[arg(long, default_value_t = zpage::store::DICTIONARY_LEVEL, value_parser = clap::value_parser!(i32).range(1..=22))]
    dictionary_level: i32,
}

impl DictionaryArgs {
    /// The dictionaries of a life cycle's idle pass: those `resolved` from the options,
    /// or else trained by the pass after [`LIFECYCLE_TRAIN_AFTER`] pages.
    pub fn for_lifecycle(&self, resolved: Option<&sim::Dictionaries>) -> sim::Dictionaries {
        resolved.cloned().unwrap_or(sim::Dictionaries::Auto {
            after_zstd_pages: LIFECYCLE_TRAIN_AFTER,
            level: self.dictionary_level,
        })
    }

    /// What the options ask for (a dictionary file is read and checked now).
    pub fn resolve(&self) -> Result<Option<sim::Dictionaries>, String> {
        let level = self.dictionary_level;
        Ok(match (&self.dictionaries, &self.dictionary_file) {
            (Some(after), _) => Some(sim::Dictionaries::Auto {
                after_zstd_pages: *after,
                level,
            }),
            (None, Some(path)) => Some(sim::Dictionaries::Set {
                set: DictionarySet::load(path, 1, level).map_err(|e| e.to_string())?,
                level,
            }),
            (None, None) => None,
        })
    }
}

/// The sample shipped with the source tree (at the workspace root).
fn shipped_sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .join("data")
}

pub fn run(args: SimArgs) -> Result<String, String> {
    let default = if args.lifecycle.lifecycle {
        Profile::Words
    } else {
        Profile::Dense
    };
    let chosen = args.profile.unwrap_or(default);
    let engine = super::load_engine(args.model.as_ref(), chosen)?;
    let mut paths = args.paths.clone();
    if paths.is_empty() && args.pid.is_none() {
        let sample = shipped_sample();
        if !sample.is_dir() {
            return Err(format!(
                "no input given and the shipped sample {} is not there: pass page files or --pid PID",
                sample.display()
            ));
        }
        paths.push(sample);
    }
    if args.lifecycle.lifecycle && args.lifecycle.count > 1 {
        if !args.zram.is_empty() {
            return Err(
                "--zram with --count: the kernel's zram is predicted on whole inputs, not on samples of a process; capture it (zpage capture) and run --lifecycle on the file".into(),
            );
        }
        return sample(&args, engine, chosen);
    }
    let mut sources = super::open_sources(&paths, args.pad)?;
    if let Some(pid) = args.pid {
        sources.push(Box::new(
            procmem::Process::open(pid).map_err(|e| e.to_string())?,
        ));
    }
    let total: u64 = sources.iter().map(|s| s.expected_pages()).sum();
    let profile = match &args.model {
        Some(path) => format!("model {}", path.display()),
        None => chosen.name().to_string(),
    };
    if args.lifecycle.lifecycle {
        let lc = &args.lifecycle;
        let zram_best = args.codecs.iter().any(|c| c.name == "zram-best");
        if let Some(plot) = &lc.plot {
            super::check_extension("--plot", plot, "svg")?;
        }
        let config = lifecycle_config(&args, engine, zram_best)?;
        let mut progress = Progress::new(
            lifecycle::progress_units(total, &config),
            "life cycle",
            args.json,
        );
        let report = lifecycle::run(
            &mut sources,
            &config,
            (&profile, lc.idle_profile.name()),
            &mut |n| progress.inc(n),
        )?;
        drop(progress);
        if let Some(path) = &lc.plot {
            super::plot::lifecycle_svg(&report, path)?;
        }
        let mut out = if args.json {
            super::json(&report)
        } else {
            print_lifecycle(&report)
        };
        if let (Some(path), false) = (&lc.plot, args.json) {
            outln!(out, "plot: {}", path.display());
        }
        return Ok(out);
    }
    let dictionaries = args.dictionaries.resolve()?;
    let mut progress = Progress::new(2 * total, "simulating", args.json);
    let report = sim::simulate(
        &mut sources,
        &engine,
        dictionaries.as_ref(),
        &profile,
        sim::Beside {
            baselines: &args.codecs,
            zram: &args.zram,
            mem_limit: args.lifecycle.mem_limit,
        },
        true,
        &mut |n| progress.inc(n),
    )?;
    drop(progress);
    Ok(if args.json {
        super::json(&report)
    } else {
        print_report(&report)
    })
}

/// What `--lifecycle` runs with: inserts by `engine`, the idle pass by --idle-profile
/// with the dictionaries asked for (by default trained by the pass).
fn lifecycle_config(
    args: &SimArgs,
    engine: zpage::Engine,
    zram_best: bool,
) -> Result<lifecycle::Config, String> {
    let lc = &args.lifecycle;
    let dictionaries = args.dictionaries.resolve()?;
    Ok(lifecycle::Config {
        engine,
        idle: zpage::Engine::new(lc.idle_profile),
        dictionaries: Some(args.dictionaries.for_lifecycle(dictionaries.as_ref())),
        mem_limit: lc.mem_limit,
        cold_level: (lc.cold_level > 0).then_some(lc.cold_level),
        unit_pages: lc.unit_pages,
        coldest: lc.coldest,
        backing: lc.backing.clone().map(|path| (path, lc.writeback)),
        zram_best,
        zram: args.zram.clone(),
    })
}

/// `sim --lifecycle --pid P --count N`: the process sampled into one tiered store.
fn sample(args: &SimArgs, engine: zpage::Engine, profile: Profile) -> Result<String, String> {
    let lc = &args.lifecycle;
    let pid = args.pid.expect("clap requires --pid with --count");
    if !args.paths.is_empty() {
        return Err("--count samples a live process (--pid) alone; give no page files".into());
    }
    if !(lc.interval.is_finite() && lc.interval > 0.0 && lc.interval <= 86_400.0) {
        return Err(format!(
            "--interval {}: give seconds between 0 and 86400",
            lc.interval
        ));
    }
    if let Some(plot) = &lc.plot {
        super::check_extension("--plot", plot, "svg")?;
    }
    let config = lifecycle_config(args, engine, false)?;
    // The first sample's walk is the first sample: its size, times the samples, is the
    // progress estimate.
    let first = procmem::Process::open(pid).map_err(|e| e.to_string())?;
    let expected = zpage_tools::source::PageSource::expected_pages(&first);
    let mut first = Some(first);
    let mut open = || -> Result<Box<dyn zpage_tools::source::PageSource>, String> {
        let process = match first.take() {
            Some(process) => process,
            None => procmem::Process::open(pid).map_err(|e| e.to_string())?,
        };
        Ok(Box::new(process))
    };
    let mut progress = Progress::new(expected * u64::from(lc.count), "sampling", args.json);
    let evolution = lifecycle::sample_process(
        &mut open,
        &config,
        std::time::Duration::from_secs_f64(lc.interval),
        lc.count,
        (profile.name(), lc.idle_profile.name()),
        &mut |n| progress.inc(n),
    )?;
    drop(progress);
    if let Some(path) = &lc.plot {
        super::plot::evolution_svg(&evolution, path)?;
    }
    if args.json {
        return Ok(super::json(&evolution));
    }
    let mut out = String::new();
    outln!(
        out,
        "zpage sim --lifecycle: {} sampled {} times, {:.1} s apart, into one store (inserts {}, idle pass {}); verified: every page of the last sample read back and compared",
        evolution.process,
        evolution.samples.len(),
        evolution.interval_seconds,
        evolution.profile,
        evolution.idle_profile
    );
    outln!(out);
    outln!(
        out,
        "{:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>12} {:>12} {:>8} {:>9}",
        "seconds",
        "pages",
        "written",
        "removed",
        "store MB/s",
        "idle pass",
        "compr_data",
        "mem_used",
        "eff.",
        "bd_count"
    );
    for s in &evolution.samples {
        outln!(
            out,
            "{:>8.1} {:>8} {:>8} {:>8} {:>9.0} {:>8} {:>12} {:>12} {:>8.3} {:>9}",
            s.at_seconds,
            s.pages,
            s.written,
            s.removed,
            s.store_mb_s,
            s.idle_pass_pages,
            s.mm.compr_data_size,
            s.mm.mem_used_total,
            s.effective_ratio,
            s.bd_stat.bd_count
        );
    }
    if let Some(path) = &lc.plot {
        outln!(out);
        outln!(out, "plot: {}", path.display());
    }
    Ok(out)
}

/// The pages (that the idle engine would store as zstd) from which a life cycle's idle
/// pass trains dictionaries, unless --dictionaries or --dictionary-file says otherwise.
pub const LIFECYCLE_TRAIN_AFTER: u64 = 1024;

fn print_lifecycle(r: &Lifecycle) -> String {
    let mut out = String::new();
    outln!(
        out,
        "zpage sim --lifecycle: {} input(s), {} pages ({}), stored with {}, idle pass {}; verified: every page read back and compared",
        r.inputs.len(),
        r.pages,
        mib(r.pages * zpage::PAGE_SIZE as u64),
        r.profile,
        r.idle_profile
    );
    if r.refused_pages > 0 {
        outln!(
            out,
            "{} pages refused by the memory limit (not stored, as zram fails such writes)",
            r.refused_pages
        );
    }
    outln!(out);
    outln!(
        out,
        "{:<11} {:>8} {:>8} {:>12} {:>12} {:>12} {:>8} {:>8} {:>9}",
        "step",
        "seconds",
        "MB/s",
        "compr_data",
        "mem_used",
        "metadata",
        "ratio",
        "eff.",
        "bd_count"
    );
    for s in &r.stages {
        // With every page written back there is no compressed data to divide by.
        let ratio = match s.mm.compr_data_size {
            0 => "-".to_string(),
            _ => format!("{:.3}", s.ratio),
        };
        // Marking pages idle reads none: no speed to show.
        let mb_s = s.mb_s.map_or("-".to_string(), |mb_s| format!("{mb_s:.0}"));
        outln!(
            out,
            "{:<11} {:>8.3} {:>8} {:>12} {:>12} {:>12} {:>8} {:>8.3} {:>9}",
            s.name,
            s.seconds,
            mb_s,
            s.mm.compr_data_size,
            s.mm.mem_used_total,
            s.metadata_bytes,
            ratio,
            s.effective_ratio,
            s.bd_stat.bd_count
        );
    }
    for s in &r.stages {
        if let Some(note) = &s.note {
            outln!(out, "{}:", s.name);
            for line in note.split("; ") {
                outln!(out, "  {line}");
            }
        }
    }
    if let Some(last) = r.stages.last() {
        outln!(out);
        outln!(out, "mm_stat   {}", last.mm);
        outln!(out, "bd_stat   {}", last.bd_stat);
        outln!(out, "io_stat   {}", last.io_stat);
        outln!(out, "dictionaries: {}", last.dictionaries);
    }
    if r.zram_best_ratio > 0.0 {
        outln!(
            out,
            "zram best (emulated: zstd-8 + a dictionary trained on a tenth of the pages, no allocator counted): {:.3}",
            r.zram_best_ratio
        );
    }
    for cycle in &r.zram_lifecycle {
        outln!(out);
        outln!(
            out,
            "kernel zram {}, predicted (dictionaries: {} bytes, outside mem_used)",
            cycle.config,
            cycle.dictionary_bytes
        );
        outln!(
            out,
            "{:<11} {:>8} {:>12} {:>12} {:>8} {:>6} {:>9}  note",
            "step",
            "seconds",
            "compr_data",
            "mem_used",
            "mem ratio",
            "huge",
            "bd_count"
        );
        for s in &cycle.stages {
            let mm = &s.mm_stat;
            outln!(
                out,
                "{:<11} {:>8} {:>12} {:>12} {:>8.3} {:>6} {:>9}  {}",
                s.name,
                s.seconds.map_or("-".to_string(), |t| format!("{t:.3}")),
                mm.compr_data_size,
                mm.mem_used_total,
                mm.mem_ratio(),
                mm.huge_pages,
                s.bd_stat.bd_count,
                s.note.as_deref().unwrap_or("")
            );
        }
        // The way in side by side: zpage's store step against the kernel's.
        if let (Some(ours), Some(theirs)) = (r.stages.first(), cycle.stages.first()) {
            let kernel = theirs.mm_stat.mem_ratio();
            if kernel > 0.0 {
                outln!(
                    out,
                    "the way in: zpage {:.3} effective, {:.2}x this zram's mem ratio",
                    ours.effective_ratio,
                    ours.effective_ratio / kernel
                );
            }
        }
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1u64 << 20) as f64)
}

fn print_report(r: &Report) -> String {
    let mut out = String::new();
    outln!(
        out,
        "zpage sim: {} input(s), {} pages ({}), profile {}; verified: every page read back and compared",
        r.inputs.len(),
        r.pages,
        mib(r.orig_data_size),
        r.profile
    );
    if r.refused_pages > 0 {
        outln!(
            out,
            "{} pages refused by --mem-limit (not stored, as zram fails such writes; failed_writes counts them)",
            r.refused_pages
        );
    }
    outln!(out);
    outln!(out, "zram-style statistics (mm_stat fields)");
    let rows: [(&str, String); 8] = [
        ("pages", r.pages.to_string()),
        (
            "orig_data_size",
            format!("{} ({})", r.orig_data_size, mib(r.orig_data_size)),
        ),
        (
            "compr_data_size",
            format!("{} ({})", r.compr_data_size, mib(r.compr_data_size)),
        ),
        (
            "mem_used_total",
            format!("{} ({})", r.mem_used_total, mib(r.mem_used_total)),
        ),
        (
            "metadata",
            match r.dictionaries {
                0 => format!(
                    "{} (page table {:.1} B/page, allocator bookkeeping {} B)",
                    r.metadata_bytes,
                    r.page_table_bytes as f64 / r.pages.max(1) as f64,
                    r.metadata_bytes - r.page_table_bytes
                ),
                n => format!(
                    "{} (page table {:.1} B/page, allocator bookkeeping {} B, {n} dictionaries {} B)",
                    r.metadata_bytes,
                    r.page_table_bytes as f64 / r.pages.max(1) as f64,
                    r.metadata_bytes - r.page_table_bytes - r.dictionary_bytes,
                    r.dictionary_bytes
                ),
            },
        ),
        ("same_pages", r.same_pages.to_string()),
        ("huge_pages", r.huge_pages.to_string()),
        (
            "allocator overhead",
            format!("{:.2}%", 100.0 * r.allocator_overhead),
        ),
    ];
    for (name, value) in rows {
        outln!(out, "  {name:<20} {value}");
    }
    outln!(out, "  {:<20} {:.3}", "ratio", r.ratio);
    outln!(
        out,
        "  {:<20} {:.3}   (orig / (mem_used_total + metadata))",
        "effective ratio",
        r.effective_ratio
    );
    outln!(out);
    outln!(
        out,
        "{:<16} {:>8} {:>12} {:>12} {:>8} {:>7}",
        "class",
        "pages",
        "bytes in",
        "bytes out",
        "ratio",
        "time"
    );
    for (name, c) in &r.classes {
        if c.pages == 0 {
            continue;
        }
        let ratio = if c.stored_bytes == 0 {
            "-".to_string()
        } else {
            format!("{:.2}", c.orig_bytes as f64 / c.stored_bytes as f64)
        };
        outln!(
            out,
            "{name:<16} {:>8} {:>12} {:>12} {:>8} {:>6.1}%",
            c.pages,
            c.orig_bytes,
            c.stored_bytes,
            ratio,
            100.0 * c.time_share
        );
    }
    outln!(out);
    outln!(
        out,
        "{:<20} {:>8} {:>15} {:>17}   (same pages, same run)",
        "scheme",
        "ratio",
        "compress MB/s",
        "decompress MB/s"
    );
    outln!(
        out,
        "{:<20} {:>8.3} {:>15.0} {:>17.0}",
        format!("zpage ({})", r.profile.split(' ').next().unwrap_or("")),
        r.ratio,
        r.timing.compress_mb_s,
        r.timing.decompress_mb_s
    );
    for (name, b) in &r.baselines {
        let label = match name.as_str() {
            "oracle" => "oracle (best/pg)".to_string(),
            "zram-best" => "zram best (emul.)".to_string(),
            _ => format!("{name}, every page"),
        };
        outln!(
            out,
            "{label:<20} {:>8.3} {:>15.0} {:>17.0}",
            b.ratio,
            b.compress_mb_s,
            b.decompress_mb_s
        );
    }
    if !r.zram_best_left_out.is_empty() {
        outln!(
            out,
            "(zram best left out: it reads its input twice, and {} cannot be)",
            r.zram_best_left_out.join(", ")
        );
    }
    if !r.zram_model.is_empty() {
        outln!(out);
        outln!(
            out,
            "kernel zram, predicted   compr_data_size   mem_used_total   mem ratio   same   huge"
        );
        for p in &r.zram_model {
            let mm = &p.mm_stat;
            outln!(
                out,
                "{:<22} {:>17} {:>16} {:>11.3} {:>6} {:>6}",
                p.config,
                mm.compr_data_size,
                mm.mem_used_total,
                mm.mem_ratio(),
                mm.same_pages,
                mm.huge_pages
            );
        }
    }
    outln!(out);
    outln!(
        out,
        "classify: {:.0} ns/page (features + tree)",
        r.timing.classify_ns_per_page
    );
    for input in &r.inputs {
        let skipped = input.skipped;
        if skipped.zero_mapped + skipped.unreadable > 0 {
            outln!(out);
            outln!(
                out,
                "{}: left out {} zero-page mappings and {} unreadable pages",
                input.name,
                skipped.zero_mapped,
                skipped.unreadable
            );
        }
    }
    if r.inputs.len() > 1 {
        outln!(out);
        outln!(
            out,
            "{:<28} {:>8} {:>8} {:>10}",
            "input",
            "pages",
            "ratio",
            "eff.ratio"
        );
        for input in &r.inputs {
            outln!(
                out,
                "{:<28} {:>8} {:>8.3} {:>10.3}",
                input.name,
                input.pages,
                input.ratio,
                input.effective_ratio
            );
        }
    }
    out
}
