//! `zpage zram`: the kernel's zram and zpage on the same pages, side by side.

use super::progress::Progress;
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use zpage::Engine;
use zpage::classify::model::Profile;
use zpage_tools::compare;
use zpage_tools::lifecycle;
use zpage_tools::pagefile::{self, PageFile};
use zpage_tools::sim;
use zpage_tools::source::{PageSource, SourceError};
use zpage_tools::zram::{Device, KernelRun, KernelSetup};
use zpage_tools::zram_model::ZramConfig;

/// The JSON schema name and version of the `zpage zram` report.
pub const SCHEMA: &str = "zpage-zram/1";

#[derive(Args, Debug)]
pub struct ZramArgs {
    /// Page files or directories (walked for *.pages).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The kernel's compression algorithm (one of the device's comp_algorithm).
    #[arg(long, default_value = "lzo-rle")]
    algo: String,
    /// A free zram device (disksize 0, not swap, not mounted).
    #[arg(long, default_value = "zram0")]
    device: String,
    /// Print one JSON object (schema zpage-zram/1) instead of the report.
    #[arg(long)]
    json: bool,
    /// Zero-fill a partial last page instead of refusing the file.
    #[arg(long)]
    pad: bool,
    /// Runs per input, kernel and zpage interleaved; each speed is the best run's. One run
    /// on a shared machine is at the mercy of whatever else it does at that moment.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Dictionaries for zpage dense's stores.
    #[command(flatten)]
    dictionaries: super::sim::DictionaryArgs,
    /// The zstd level of the tiered store's cold pass (0: none); it runs in the first
    /// run only (its ratio is the same in every run).
    #[arg(long, default_value_t = zpage::store::COLD_LEVEL, value_parser = clap::value_parser!(i32).range(0..=22))]
    cold_level: i32,
}

/// zpage's figures for one input under one profile.
#[derive(Serialize)]
struct ZpageRun {
    ratio: f64,
    effective_ratio: f64,
    compress_mb_s: f64,
    decompress_mb_s: f64,
}

/// zpage's tiers on one input: stored by the words profile, then the idle pass (every
/// page idle) re-encodes it with the dense profile and dictionaries it trains.
#[derive(Serialize)]
struct TieredRun {
    /// The insert path's speed (the words profile).
    store_mb_s: f64,
    /// The insert path's effective ratio: the store as the way in leaves it, before any
    /// pass.
    store_effective_ratio: f64,
    /// The idle pass's speed (training included), over the pages it examined.
    idle_pass_mb_s: f64,
    /// After the idle pass.
    ratio: f64,
    effective_ratio: f64,
    /// Reading every page back after the idle pass.
    read_mb_s: f64,
    /// After the cold pass (the idle pass's figures when there is none).
    cold_ratio: f64,
    cold_effective_ratio: f64,
    cold_pass_mb_s: f64,
}

#[derive(Serialize)]
struct InputRun {
    name: String,
    pages: u64,
    kernel: KernelRun,
    fast: ZpageRun,
    dense: ZpageRun,
    tiered: TieredRun,
    /// zram's best configuration on a 6.12+ kernel (zstd level 8 with a dictionary
    /// trained on a tenth of the input), emulated with the same library: this kernel has
    /// no zstd backend. Its ratio pays for no allocator or metadata.
    zram_best_ratio: f64,
    /// The kernel's zram predicted by zpage's model of it (`sim --zram`), where it models
    /// the algorithm; `null` otherwise.
    predicted: Option<zpage::MmStat>,
}

#[derive(Serialize)]
struct Summary {
    /// Geometric means over inputs of zpage-tiered's effective ratio after the idle pass
    /// over the kernel's mem ratio and over the emulated zram-best ratio.
    tiered_effective_over_kernel_mem: f64,
    tiered_effective_over_zram_best: f64,
    /// The same after the cold pass.
    tiered_cold_effective_over_kernel_mem: f64,
    tiered_cold_effective_over_zram_best: f64,
    /// Over all inputs: the tiered store's insert speed (the words profile).
    tiered_store_mb_s: f64,
    /// The way in against the kernel, geometric means over inputs (each input's speeds
    /// from the same runs): insert MB/s over the kernel's write MB/s, and the insert
    /// path's effective ratio over the kernel's mem ratio.
    way_in_speed_over_kernel_write: f64,
    way_in_effective_over_kernel_mem: f64,
    /// Geometric mean over inputs of zpage-dense effective ratio / kernel mem ratio.
    dense_effective_over_kernel_mem: f64,
    /// Geometric mean over inputs of zpage-dense effective ratio / the emulated
    /// zram-best ratio.
    dense_effective_over_zram_best: f64,
    /// Over all inputs: zpage-fast compress MB/s and the kernel's write MB/s.
    fast_compress_mb_s: f64,
    kernel_write_mb_s: f64,
    /// Inputs under [`SMALL_INPUT_PAGES`], whose kernel mem ratio the zram allocator's
    /// fixed cost weighs on.
    small_inputs: Vec<String>,
}

/// Below 16 MiB, the half MiB or so of partly filled pages that zram's allocator keeps
/// whatever the input (one per size class in use) is a large part of its memory, and the
/// comparison flatters zpage.
const SMALL_INPUT_PAGES: u64 = 4096;

#[derive(Serialize)]
struct ZramReport {
    schema: &'static str,
    device: String,
    algorithm: String,
    runs: u32,
    inputs: Vec<InputRun>,
    summary: Summary,
}

/// Memory: each input streams through a request (1 MiB) at a time, to the device and
/// through zpage's stores, which hold what they simulate.
pub fn run(args: ZramArgs) -> Result<String, String> {
    let device = Device::open_free(&args.device).map_err(|e| e.to_string())?;
    let files = pagefile::expand(&args.paths).map_err(|e| e.to_string())?;
    let open = |path: &std::path::Path| PageFile::open(path, args.pad).map_err(|e| e.to_string());
    let sizes = files
        .iter()
        .map(|path| open(path).map(|file| (file.expected_pages(), file.name().to_string())))
        .collect::<Result<Vec<_>, String>>()?;
    let total: u64 = sizes.iter().map(|(pages, _)| pages).sum();
    let dictionaries = args.dictionaries.resolve()?;
    // The prediction beside the measurement, for an algorithm the model knows.
    let model = ZramConfig::parse(&args.algo).ok();
    // The tiered store's life cycle of each run (the cold pass in the first only).
    let tiered_config = |run: u32| lifecycle::Config {
        engine: Engine::new(Profile::Words),
        idle: Engine::new(Profile::Dense),
        dictionaries: Some(args.dictionaries.for_lifecycle(dictionaries.as_ref())),
        mem_limit: None,
        cold_level: (args.cold_level > 0 && run == 0).then_some(args.cold_level),
        unit_pages: zpage::store::DEFAULT_UNIT_PAGES,
        coldest: false,
        backing: None,
        zram_best: false,
        zram: Vec::new(),
    };
    // Per run and input: the kernel's write (one unit a page), each profile's store and
    // read back (two), then the tiered store's life cycle (its own units).
    let units = (0..args.runs)
        .map(|run| 5 * total + lifecycle::progress_units(total, &tiered_config(run)))
        .sum();
    let mut progress = Progress::new(units, "kernel zram and zpage", args.json);
    let mut inputs = Vec::new();
    let engines = [Profile::Fast, Profile::Dense].map(|p| (p, Engine::new(p)));
    for (path, (pages, name)) in files.iter().zip(sizes) {
        let source = || -> Result<Box<dyn PageSource>, SourceError> {
            Ok(Box::new(PageFile::open(path, args.pad)?))
        };
        let mut best: Option<InputRun> = None;
        // Its ratio is the same in every run: measured once.
        let zram_best = sim::zram_best(&mut *source().map_err(|e| e.to_string())?)?
            .expect("a page file reads twice");
        let predicted = match &model {
            Some(config) => {
                let mut device = config.device()?;
                let mut input = source().map_err(|e| e.to_string())?;
                let mut chunk = Vec::new();
                while input.next_chunk(&mut chunk).map_err(|e| e.to_string())? {
                    device.write(&chunk);
                }
                Some(device.mm_stat())
            }
            None => None,
        };
        for run in 0..args.runs {
            let kernel = device
                .run(&KernelSetup::algorithm(&args.algo), pages, &source)
                .map_err(|e| e.to_string())?;
            progress.inc(pages);
            let mut zpage = |(profile, engine): &(Profile, Engine)| -> Result<ZpageRun, String> {
                let mut one = [source().map_err(|e| e.to_string())?];
                let dictionaries = dictionaries.as_ref().filter(|_| *profile == Profile::Dense);
                let report = sim::simulate(
                    &mut one,
                    engine,
                    dictionaries,
                    profile.name(),
                    sim::Beside::default(),
                    false,
                    &mut |n| progress.inc(n),
                )?;
                Ok(ZpageRun {
                    ratio: report.ratio,
                    effective_ratio: report.effective_ratio,
                    compress_mb_s: report.timing.compress_mb_s,
                    decompress_mb_s: report.timing.decompress_mb_s,
                })
            };
            let (fast, dense) = (zpage(&engines[0])?, zpage(&engines[1])?);
            let mut one = [source().map_err(|e| e.to_string())?];
            let config = tiered_config(run);
            let cycle = lifecycle::run(&mut one, &config, ("words", "dense"), &mut |n| {
                progress.inc(n)
            })?;
            let stage = |name| cycle.stage(name).expect("every life cycle has it");
            let cold = cycle.stage("cold").unwrap_or(stage("recompress"));
            let tiered = TieredRun {
                store_mb_s: stage("store").mb_s.unwrap_or(0.0),
                store_effective_ratio: stage("store").effective_ratio,
                idle_pass_mb_s: stage("recompress").mb_s.unwrap_or(0.0),
                ratio: stage("recompress").ratio,
                effective_ratio: stage("recompress").effective_ratio,
                read_mb_s: stage("read").mb_s.unwrap_or(0.0),
                cold_ratio: cold.ratio,
                cold_effective_ratio: cold.effective_ratio,
                cold_pass_mb_s: cycle.stage("cold").and_then(|s| s.mb_s).unwrap_or(0.0),
            };
            let run = InputRun {
                name: name.clone(),
                pages,
                kernel,
                fast,
                dense,
                tiered,
                zram_best_ratio: zram_best.ratio(),
                predicted,
            };
            best = Some(match best {
                None => run,
                Some(best) => best.fastest(run),
            });
        }
        inputs.extend(best);
    }
    drop(progress);
    let report = ZramReport {
        schema: SCHEMA,
        device: args.device.clone(),
        algorithm: args.algo.clone(),
        runs: args.runs,
        summary: summarise(&inputs),
        inputs,
    };
    Ok(if args.json {
        super::json(&report)
    } else {
        print_report(&report)
    })
}

impl InputRun {
    /// Each speed the best of the two runs; the ratios are the same in every run (the
    /// stores are deterministic, and zram's are taken from the first).
    fn fastest(mut self, other: InputRun) -> InputRun {
        let k = &mut self.kernel;
        k.write_mb_s = k.write_mb_s.max(other.kernel.write_mb_s);
        k.read_mb_s = k.read_mb_s.max(other.kernel.read_mb_s);
        for (mine, theirs) in [(&mut self.fast, other.fast), (&mut self.dense, other.dense)] {
            mine.compress_mb_s = mine.compress_mb_s.max(theirs.compress_mb_s);
            mine.decompress_mb_s = mine.decompress_mb_s.max(theirs.decompress_mb_s);
        }
        let (t, o) = (&mut self.tiered, other.tiered);
        t.store_mb_s = t.store_mb_s.max(o.store_mb_s);
        t.idle_pass_mb_s = t.idle_pass_mb_s.max(o.idle_pass_mb_s);
        t.read_mb_s = t.read_mb_s.max(o.read_mb_s);
        self
    }
}

fn summarise(inputs: &[InputRun]) -> Summary {
    let geomean_of = |mine: fn(&InputRun) -> f64, over: fn(&InputRun) -> f64| {
        compare::geomean(inputs.iter().map(|i| mine(i) / over(i).max(1e-9)))
    };
    let geomean = |over: fn(&InputRun) -> f64| geomean_of(|i| i.dense.effective_ratio, over);
    let tiered = |i: &InputRun| i.tiered.effective_ratio;
    let cold = |i: &InputRun| i.tiered.cold_effective_ratio;
    // Aggregate throughput: total bytes over total time, from each input's MB/s.
    let aggregate = |mb_s: fn(&InputRun) -> f64| {
        let bytes = |i: &InputRun| (i.pages * zpage::PAGE_SIZE as u64) as f64;
        let total: f64 = inputs.iter().map(bytes).sum();
        let time: f64 = inputs.iter().map(|i| bytes(i) / mb_s(i).max(1e-9)).sum();
        total / time.max(1e-12)
    };
    Summary {
        tiered_effective_over_kernel_mem: geomean_of(tiered, |i| i.kernel.mem_ratio),
        tiered_effective_over_zram_best: geomean_of(tiered, |i| i.zram_best_ratio),
        tiered_cold_effective_over_kernel_mem: geomean_of(cold, |i| i.kernel.mem_ratio),
        tiered_cold_effective_over_zram_best: geomean_of(cold, |i| i.zram_best_ratio),
        tiered_store_mb_s: aggregate(|i| i.tiered.store_mb_s),
        way_in_speed_over_kernel_write: geomean_of(
            |i| i.tiered.store_mb_s,
            |i| i.kernel.write_mb_s,
        ),
        way_in_effective_over_kernel_mem: geomean_of(
            |i| i.tiered.store_effective_ratio,
            |i| i.kernel.mem_ratio,
        ),
        dense_effective_over_kernel_mem: geomean(|i| i.kernel.mem_ratio),
        dense_effective_over_zram_best: geomean(|i| i.zram_best_ratio),
        fast_compress_mb_s: aggregate(|i| i.fast.compress_mb_s),
        kernel_write_mb_s: aggregate(|i| i.kernel.write_mb_s),
        small_inputs: inputs
            .iter()
            .filter(|i| i.pages < SMALL_INPUT_PAGES)
            .map(|i| i.name.clone())
            .collect(),
    }
}

fn print_report(r: &ZramReport) -> String {
    let mut out = String::new();
    outln!(
        out,
        "kernel zram (/dev/{}, {}) and zpage on the same pages; both verified by reading back",
        r.device,
        r.algorithm
    );
    outln!(
        out,
        "  speeds: the best of {} runs, kernel and zpage interleaved (--runs)",
        r.runs
    );
    outln!(
        out,
        "  ratio = orig / compressed data; mem ratio = orig / memory used (zram: mem_used_total; zpage: effective, metadata included)\n  write/read = zram device I/O with O_DIRECT; zpage: PageStore insert (classify + compress + allocate) / read"
    );
    for input in &r.inputs {
        outln!(out);
        outln!(out, "{} ({} pages)", input.name, input.pages);
        outln!(
            out,
            "  {:<18} {:>7} {:>10} {:>12} {:>12}",
            "",
            "ratio",
            "mem ratio",
            "write MB/s",
            "read MB/s"
        );
        let k = &input.kernel;
        outln!(
            out,
            "  {:<18} {:>7.3} {:>10.3} {:>12.0} {:>12.0}",
            format!("zram {}", k.algorithm),
            k.ratio,
            k.mem_ratio,
            k.write_mb_s,
            k.read_mb_s
        );
        if let Some(p) = &input.predicted {
            let off = |mine: u64, kernel: u64| (mine as f64 / kernel.max(1) as f64 - 1.0) * 100.0;
            outln!(
                out,
                "  {:<18} {:>7.3} {:>10.3} {:>12} {:>12}   (compr_data_size {:+.2}%, mem_used_total {:+.2}%)",
                "  predicted",
                p.ratio(),
                p.mem_ratio(),
                "-",
                "-",
                off(p.compr_data_size, k.compr_data_size),
                off(p.mem_used_total, k.mem_used_total)
            );
        }
        outln!(
            out,
            "  {:<18} {:>7.3} {:>10} {:>12} {:>12}",
            "zram best (emul.)",
            input.zram_best_ratio,
            "-",
            "-",
            "-"
        );
        for (name, z) in [("zpage fast", &input.fast), ("zpage dense", &input.dense)] {
            outln!(
                out,
                "  {name:<18} {:>7.3} {:>10.3} {:>12.0} {:>12.0}",
                z.ratio,
                z.effective_ratio,
                z.compress_mb_s,
                z.decompress_mb_s
            );
        }
        let t = &input.tiered;
        outln!(
            out,
            "  {:<18} {:>7} {:>10.3} {:>12.0} {:>12}   (the way in: the store before any pass)",
            "zpage words in",
            "-",
            t.store_effective_ratio,
            t.store_mb_s,
            "-"
        );
        outln!(
            out,
            "  {:<18} {:>7.3} {:>10.3} {:>12} {:>12.0}   (idle pass {:.1} MB/s)",
            "  after idle pass",
            t.ratio,
            t.effective_ratio,
            "-",
            t.read_mb_s,
            t.idle_pass_mb_s
        );
        if t.cold_pass_mb_s > 0.0 {
            outln!(
                out,
                "  {:<18} {:>7.3} {:>10.3} {:>12} {:>12}   (cold pass {:.1} MB/s)",
                "  after cold pass",
                t.cold_ratio,
                t.cold_effective_ratio,
                "-",
                "-",
                t.cold_pass_mb_s
            );
        }
    }
    if !r.summary.small_inputs.is_empty() {
        outln!(out);
        outln!(
            out,
            "note: {} under 16 MiB: zram's allocator keeps about half a MiB in partly filled pages whatever the input, which lowers its mem ratio there; compare on larger inputs",
            r.summary.small_inputs.join(", ")
        );
    }
    outln!(out);
    outln!(
        out,
        "zpage dense mem ratio / zram mem ratio, geometric mean over inputs: {:.3}x",
        r.summary.dense_effective_over_kernel_mem
    );
    outln!(
        out,
        "zpage dense mem ratio / emulated zram-best ratio (zstd-8 with a trained dictionary, no allocator counted), geometric mean: {:.3}x",
        r.summary.dense_effective_over_zram_best
    );
    outln!(
        out,
        "zpage tiered (word-form inserts, dense idle pass) mem ratio after the idle pass / zram mem ratio: {:.3}x; / emulated zram-best: {:.3}x",
        r.summary.tiered_effective_over_kernel_mem,
        r.summary.tiered_effective_over_zram_best
    );
    outln!(
        out,
        "  after its cold pass: {:.3}x the zram mem ratio; {:.3}x emulated zram-best",
        r.summary.tiered_cold_effective_over_kernel_mem,
        r.summary.tiered_cold_effective_over_zram_best
    );
    outln!(
        out,
        "the way in (zpage words inserts) / zram {}, geometric means: {:.2}x its write MB/s, {:.3}x its mem ratio",
        r.algorithm,
        r.summary.way_in_speed_over_kernel_write,
        r.summary.way_in_effective_over_kernel_mem
    );
    outln!(
        out,
        "compress speed, all inputs: zpage fast {:.0} MB/s, zpage tiered inserts {:.0} MB/s, zram {} write {:.0} MB/s",
        r.summary.fast_compress_mb_s,
        r.summary.tiered_store_mb_s,
        r.algorithm,
        r.summary.kernel_write_mb_s
    );
    out
}
