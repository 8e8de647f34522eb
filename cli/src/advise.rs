//! `zpage advise`: which zram configuration to use for these pages, with the frontier of
//! memory against write speed, the reason, and the lines that apply it; `--verify`
//! applies them to a free zram device here and compares what it holds with the
//! prediction.

use super::progress::Progress;
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use zpage_tools::advise::{self, Advice, DEFAULT_GRID, KernelOffer, Options, Recommendation};
use zpage_tools::capture::{self, Target};
use zpage_tools::source::{Concat, PageSource};
use zpage_tools::zram::{Device, KernelSetup};
use zpage_tools::zram_model::ZramConfig;

#[derive(Args, Debug)]
pub struct AdviseArgs {
    /// Page files or directories (walked for *.pages), taken as one device receives them.
    #[arg(required_unless_present_any = ["pid", "all"], conflicts_with_all = ["pid", "all"])]
    paths: Vec<PathBuf>,
    /// A live process: captured first (the grid reads its pages twice).
    #[arg(long, conflicts_with = "all")]
    pid: Vec<u32>,
    /// Every process's private anonymous memory (what swap would receive), captured first.
    #[arg(long)]
    all: bool,
    /// The configurations to weigh (as `sim --zram` takes them); lzo-rle, zram's default,
    /// is the one the others are weighed against.
    #[arg(long, value_delimiter = ',', value_parser = ZramConfig::parse, default_values = DEFAULT_GRID)]
    grid: Vec<ZramConfig>,
    /// The recommendation writes at least lzo-rle's MB/s divided by this.
    #[arg(long, default_value_t = 4.0, value_parser = slowdown)]
    max_slowdown: f64,
    /// The zram device the printed lines configure (and --verify uses; it must be free).
    #[arg(long, default_value = "zram0")]
    device: String,
    /// Apply the recommendation this kernel can run to --device (root), write the pages
    /// and compare what the kernel holds with the prediction.
    #[arg(long)]
    verify: bool,
    /// Save the dictionary the `dict` configurations trained on the input here.
    #[arg(long, value_name = "FILE")]
    dict_out: Option<PathBuf>,
    /// Write an SVG of the frontier.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Dictionaries for zpage's idle pass.
    #[command(flatten)]
    dictionaries: super::sim::DictionaryArgs,
    /// The zstd level of zpage's cold step (0: none).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=22))]
    cold_level: i32,
    /// Zero-fill a partial last page instead of refusing the file.
    #[arg(long)]
    pad: bool,
    /// Print one JSON object (schema zpage-advise/1) instead of the report.
    #[arg(long)]
    json: bool,
}

fn slowdown(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 1.0)
        .ok_or_else(|| format!("{text:?} is not a slowdown of 1 or more"))
}

/// The kernel's zram holding the pages, beside the prediction.
#[derive(Serialize)]
struct Verification {
    device: String,
    config: String,
    sysfs: Vec<String>,
    kernel: zpage::MmStat,
    predicted: zpage::MmStat,
    /// `(predicted - kernel) / kernel`, in percent.
    compr_data_size_error_pct: f64,
    mem_used_total_error_pct: f64,
}

#[derive(Serialize)]
struct Report {
    #[serde(flatten)]
    advice: Advice,
    verification: Option<Verification>,
}

/// A captured page file, removed when dropped.
struct Captured(PathBuf);

impl Drop for Captured {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn run(args: AdviseArgs) -> Result<String, String> {
    if let Some(plot) = &args.plot {
        super::check_extension("--plot", plot, "svg")?;
    }
    let mut paths = args.paths.clone();
    let captured = if args.all || !args.pid.is_empty() {
        let path = std::env::temp_dir().join(format!("zpage-advise-{}.pages", std::process::id()));
        let target = if args.all {
            Target::All
        } else {
            Target::Pids(args.pid.clone())
        };
        let mut progress = Progress::new(0, "capturing", args.json);
        capture::capture(&target, &path, &mut |n| progress.inc(n))?;
        paths.push(path.clone());
        Some(Captured(path))
    } else {
        None
    };
    let sources = super::open_sources(&paths, args.pad)?;
    let mut source = Concat::new(sources);
    let kernel = KernelOffer::probe();
    let options = Options {
        grid: args.grid.clone(),
        max_slowdown: args.max_slowdown,
        kernel: kernel.clone(),
        device: args.device.clone(),
        dictionaries: (args.dictionaries).for_lifecycle(args.dictionaries.resolve()?.as_ref()),
        cold_level: (args.cold_level > 0).then_some(args.cold_level),
    };
    let total = source.expected_pages();
    let mut progress = Progress::new(
        advise::progress_units(total, &options),
        "advising",
        args.json,
    );
    let advice = advise::advise(&mut source, &options, &mut |n| progress.inc(n))?;
    drop(progress);
    if let (Some(path), Some(dictionary)) = (&args.dict_out, &advice.dictionary) {
        std::fs::write(path, dictionary.as_slice())
            .map_err(|e| format!("--dict-out {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        super::plot::frontier_svg(&advice, path)?;
    }
    let verification = if args.verify {
        let chosen = advice
            .for_this_kernel
            .as_ref()
            .unwrap_or(&advice.recommendation);
        Some(verify(&args, chosen, &mut source, kernel.as_ref())?)
    } else {
        None
    };
    drop(captured);
    let report = Report {
        advice,
        verification,
    };
    Ok(if args.json {
        super::json(&report)
    } else {
        print(&report, &args)
    })
}

/// Applies `chosen` to the device and writes the pages; the kernel's `mm_stat` beside
/// the prediction.
fn verify(
    args: &AdviseArgs,
    chosen: &Recommendation,
    source: &mut dyn PageSource,
    kernel: Option<&KernelOffer>,
) -> Result<Verification, String> {
    let config = (args.grid.iter())
        .find(|c| c.name == chosen.config)
        .expect("a recommendation is from the grid");
    if !kernel.is_some_and(|k| k.runs(config)) {
        return Err(format!(
            "--verify: this kernel's zram cannot run {} (it offers: {})",
            chosen.config,
            kernel.map_or("no zram".into(), |k| k.algorithms.join(" "))
        ));
    }
    if !config.recomp.is_empty() || config.primary.wants_training() {
        return Err(format!(
            "--verify: {} needs recompression or a trained dictionary; only a plain algorithm is checked here",
            chosen.config
        ));
    }
    let device = Device::open_free(&args.device).map_err(|e| e.to_string())?;
    let setup = KernelSetup {
        algorithm: config.primary.name().to_string(),
        params: chosen.params.clone(),
        mem_limit: None,
    };
    if !source.rewind().map_err(|e| e.to_string())? {
        return Err("--verify: the input cannot be read again".into());
    }
    let pages = source.expected_pages();
    let configured = device.configure(&setup, pages).map_err(|e| e.to_string())?;
    let mut chunk = Vec::new();
    let mut at = 0;
    while source.next_chunk(&mut chunk).map_err(|e| e.to_string())? {
        configured.write_at(at, &chunk).map_err(|e| e.to_string())?;
        at += chunk.len() as u64;
    }
    let measured = configured.mm_stat().map_err(|e| e.to_string())?;
    drop(configured);
    let error = |p: u64, k: u64| 100.0 * (p as f64 - k as f64) / k.max(1) as f64;
    Ok(Verification {
        device: args.device.clone(),
        config: chosen.config.clone(),
        sysfs: (setup.sysfs_writes(pages).into_iter())
            .map(|(attr, value)| format!("echo \"{value}\" > /sys/block/{}/{attr}", args.device))
            .collect(),
        compr_data_size_error_pct: error(
            chosen.predicted.compr_data_size,
            measured.compr_data_size,
        ),
        mem_used_total_error_pct: error(chosen.predicted.mem_used_total, measured.mem_used_total),
        kernel: measured,
        predicted: chosen.predicted,
    })
}

fn print(report: &Report, args: &AdviseArgs) -> String {
    let a = &report.advice;
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    let mut out = String::new();
    outln!(
        out,
        "zpage advise: {}, {} pages ({:.1} MiB), as one zram device receives them",
        a.input,
        a.pages,
        mib(a.pages * zpage::PAGE_SIZE as u64)
    );
    outln!(
        out,
        "memory: mem_used_total after zram's life cycle (recompression of every page once idle, where configured) + dictionaries; MB/s: the model's coder on one core"
    );
    outln!(out);
    outln!(
        out,
        "{:<26} {:>10} {:>9} {:>10} {:>11} {:>6} {:>14}  {}",
        "configuration",
        "MiB held",
        "mem ratio",
        "write MB/s",
        "recomp MB/s",
        "huge",
        "wb huge: MiB",
        "frontier"
    );
    for p in &a.grid {
        let after = p.recompressed.unwrap_or(p.written);
        let here = match p.kernel_has {
            Some(false) => "  (not in this kernel)",
            _ => "",
        };
        outln!(
            out,
            "{:<26} {:>10.2} {:>9.3} {:>10.0} {:>11} {:>6} {:>14.2}  {}{}",
            p.config,
            mib(p.memory_bytes),
            p.mem_ratio,
            p.write_mb_s,
            p.recompress_mb_s.map_or("-".into(), |m| format!("{m:.0}")),
            after.huge_pages,
            mib(p.writeback_huge_memory_bytes),
            if p.frontier { "*" } else { "" },
            here
        );
    }
    let z = &a.zpage;
    outln!(
        out,
        "{:<26} {:>10.2} {:>9.3} {:>10.0} {:>11.0}   (words in, dense + dictionaries when idle; metadata counted)",
        "zpage tiers",
        mib(z.memory_bytes),
        z.effective_ratio,
        z.insert_mb_s,
        z.idle_pass_mb_s,
    );
    if let Some(cold) = z.cold_memory_bytes {
        outln!(
            out,
            "{:<26} {:>10.2}   (after the cold step)",
            "",
            mib(cold)
        );
    }
    print_recommendation(&mut out, "recommendation", &a.recommendation);
    if let Some(here) = &a.for_this_kernel {
        let offer = a.kernel.as_ref().map_or(String::new(), |k| {
            format!(
                " ({}{})",
                k.algorithms.join(" "),
                if k.recompression {
                    ""
                } else {
                    "; no recompression"
                }
            )
        });
        print_recommendation(&mut out, &format!("for this kernel{offer}"), here);
    }
    if let Some(v) = &report.verification {
        outln!(out);
        outln!(out, "verified on {}: {}", v.device, v.config);
        for line in &v.sysfs {
            outln!(out, "  {line}");
        }
        outln!(
            out,
            "  compr_data_size: kernel {}, predicted {} ({:+.2}%)",
            v.kernel.compr_data_size,
            v.predicted.compr_data_size,
            v.compr_data_size_error_pct
        );
        outln!(
            out,
            "  mem_used_total:  kernel {}, predicted {} ({:+.2}%)",
            v.kernel.mem_used_total,
            v.predicted.mem_used_total,
            v.mem_used_total_error_pct
        );
    }
    if let Some(path) = &args.plot {
        outln!(out);
        outln!(out, "plot: {}", path.display());
    }
    if let Some(path) = &args.dict_out {
        match &a.dictionary {
            Some(_) => outln!(out, "dictionary: {}", path.display()),
            None => outln!(
                out,
                "dictionary: none trained (no dict configuration, or too few pages)"
            ),
        }
    }
    out
}

fn print_recommendation(out: &mut String, title: &str, r: &Recommendation) {
    outln!(out);
    outln!(out, "{title}: {}", r.config);
    outln!(out, "  {}", r.reason);
    outln!(out, "  sysfs, on a fresh device:");
    for line in &r.sysfs {
        outln!(out, "    {line}");
    }
    outln!(out, "  /etc/systemd/zram-generator.conf:");
    for line in r.zram_generator.lines() {
        outln!(out, "    {line}");
    }
}
