//! `zpage advise`: a grid of zram configurations (algorithms, levels, a dictionary
//! trained on the input, recompression with a second algorithm, writeback of huge pages)
//! and zpage's tiers run on the same pages; the frontier of memory against write speed; a
//! recommendation with its reason and the lines that apply it (sysfs writes, a
//! `zram-generator.conf` section).
//!
//! Invariants: every configuration sees every page of the inputs, in order, as one zram
//! device receiving them all (so the lines it prints, applied to one device, hold what it
//! predicts); memory is what zram would
//! hold after its life cycle (`mem_used_total` after `recompress type=idle` where the
//! configuration recompresses, plus the dictionaries zram loads outside zsmalloc); the
//! recommendation is the least memory among configurations the kernel can be given
//! without a rebuild (zsmalloc's default chain) whose write speed is within
//! `max_slowdown` of lzo-rle's (zram's default), and the reason says so in figures.
//! Memory: the predicted devices (a few bytes per page each) and a chunk of pages.

use crate::compare::ZramSample;
use crate::lifecycle;
use crate::source::{CHUNK_PAGES, PageSource};
use crate::zram_model::{self, Algorithm, InputDevices, Kind, ZramConfig, ZramModel};
use serde::Serialize;
use std::sync::Arc;
use zpage::{MmStat, PAGE_SIZE, Page};

/// The JSON schema name and version of [`Advice`].
pub const SCHEMA: &str = "zpage-advise/1";

/// The configurations tried when none are given.
pub const DEFAULT_GRID: [&str; 14] = [
    "lzo-rle",
    "lzo",
    "lz4",
    "lz4hc",
    "zstd:level=1",
    "zstd",
    "zstd:level=8",
    "zstd:dict",
    "zstd:level=8:dict",
    "deflate",
    "deflate:winbits=15",
    "lzo-rle:recomp=zstd@8",
    "lz4:recomp=zstd@8",
    "lz4:recomp=zstd@8+dict",
];

/// Where a trained dictionary is to be saved, as the applied lines name it.
pub const DICT_PATH: &str = "/etc/zram/zpage.dict";

/// What the advice is weighed with.
#[derive(Clone, Debug)]
pub struct Options {
    pub grid: Vec<ZramConfig>,
    /// The recommendation writes at least lzo-rle's MB/s divided by this.
    pub max_slowdown: f64,
    /// The algorithms this machine's zram offers (`None`: no zram here), and whether it
    /// has recompression (`recomp_algorithm`).
    pub kernel: Option<KernelOffer>,
    /// The zram device the applied lines name.
    pub device: String,
    /// zpage's tiers: the idle pass's dictionaries, the cold step's zstd level (`None`:
    /// no cold step).
    pub dictionaries: crate::sim::Dictionaries,
    pub cold_level: Option<i32>,
}

/// What a kernel's zram can be configured with.
#[derive(Clone, Debug, Serialize)]
pub struct KernelOffer {
    pub algorithms: Vec<String>,
    pub recompression: bool,
}

impl KernelOffer {
    /// What `/sys/block/zram*/` offers here, from the first device found.
    pub fn probe() -> Option<KernelOffer> {
        let dir = std::fs::read_dir("/sys/block").ok()?;
        let device = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("zram"))
            })
            .find(|p| p.join("comp_algorithm").exists())?;
        let text = std::fs::read_to_string(device.join("comp_algorithm")).ok()?;
        Some(KernelOffer {
            algorithms: (text.split_whitespace())
                .map(|a| a.trim_matches(['[', ']']).to_string())
                .collect(),
            recompression: device.join("recomp_algorithm").exists(),
        })
    }

    /// This kernel can run `config` as it is.
    pub fn runs(&self, config: &ZramConfig) -> bool {
        let has = |a: &Algorithm| self.algorithms.iter().any(|n| n == a.name());
        has(&config.primary)
            && (config.recomp.is_empty() || self.recompression)
            && config.recomp.iter().all(has)
    }
}

/// One configuration's figures on the input.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub config: String,
    /// `mem_used_total` after the life cycle plus the dictionaries.
    pub memory_bytes: u64,
    pub dictionary_bytes: u64,
    /// `orig_data_size / memory_bytes`.
    pub mem_ratio: f64,
    /// The model's coder on one core, over the pages written.
    pub write_mb_s: f64,
    /// The recompression algorithms' speed over the idle pages (where it recompresses).
    pub recompress_mb_s: Option<f64>,
    /// `mm_stat` once every page is written.
    pub written: MmStat,
    /// `mm_stat` after `recompress type=idle` (where it recompresses).
    pub recompressed: Option<MmStat>,
    /// With a backing device, `writeback huge` after that: pages written, memory left.
    pub writeback_huge_pages: u64,
    pub writeback_huge_memory_bytes: u64,
    /// No other point holds less memory at a higher write speed.
    pub frontier: bool,
    /// This machine's zram can run it (`None`: no zram here).
    pub kernel_has: Option<bool>,
}

/// zpage's tiers on the same pages.
#[derive(Clone, Debug, Serialize)]
pub struct ZpagePoint {
    /// Allocator, metadata and dictionaries after its idle (and cold) pass.
    pub memory_bytes: u64,
    pub effective_ratio: f64,
    pub insert_mb_s: f64,
    pub idle_pass_mb_s: f64,
    /// The cold step's figures where it ran.
    pub cold_memory_bytes: Option<u64>,
}

/// A recommendation and how to apply it.
#[derive(Clone, Debug, Serialize)]
pub struct Recommendation {
    pub config: String,
    pub reason: String,
    /// Shell lines writing the sysfs attributes, in the order zram needs them.
    pub sysfs: Vec<String>,
    /// A `zram-generator.conf` section.
    pub zram_generator: String,
    /// `algorithm_params` words for the primary algorithm (to apply it here).
    pub params: Vec<String>,
    /// What zram would hold once every page is written (for checking it on a kernel).
    pub predicted: MmStat,
}

/// The advice; its JSON form is the schema [`SCHEMA`].
#[derive(Clone, Debug, Serialize)]
pub struct Advice {
    pub schema: &'static str,
    /// The inputs, as one device receives them.
    pub input: String,
    pub pages: u64,
    pub grid: Vec<Point>,
    pub zpage: ZpagePoint,
    pub max_slowdown: f64,
    pub recommendation: Recommendation,
    /// Where this machine's zram cannot run the recommendation: the best it can run.
    pub for_this_kernel: Option<Recommendation>,
    pub kernel: Option<KernelOffer>,
    /// The dictionary trained on the input for the `dict` configurations (`--dict-out`).
    #[serde(skip)]
    pub dictionary: Option<Arc<Vec<u8>>>,
}

/// Progress units per page: the grid's coders, then zpage's life cycle.
pub fn progress_units(pages: u64, options: &Options) -> u64 {
    pages * options.grid.len() as u64 + lifecycle::progress_units(pages, &tiers(options))
}

/// zpage's tiers as advice runs them: words in, dense with trained dictionaries when idle.
fn tiers(options: &Options) -> lifecycle::Config {
    lifecycle::Config {
        engine: zpage::Engine::new(zpage::Profile::Words),
        idle: zpage::Engine::new(zpage::Profile::Dense),
        dictionaries: Some(options.dictionaries.clone()),
        mem_limit: None,
        cold_level: options.cold_level,
        unit_pages: zpage::store::DEFAULT_UNIT_PAGES,
        coldest: false,
        backing: None,
        zram_best: false,
        zram: Vec::new(),
    }
}

/// Runs the grid and zpage's tiers on `source` (page files: a trained dictionary reads
/// its input twice) and weighs them.
pub fn advise(
    source: &mut dyn PageSource,
    options: &Options,
    tick: &mut dyn FnMut(u64),
) -> Result<Advice, String> {
    let name = source.name().to_string();
    let mut chunk = Vec::with_capacity(CHUNK_PAGES);
    let weight = options.grid.len() as u64;
    let mut input = InputDevices::new(&options.grid, None)?;
    let mut sample = ZramSample::default();
    while source.next_chunk(&mut chunk).map_err(|e| e.to_string())? {
        input.write(&chunk);
        sample.sample(&chunk, source.expected_pages());
        tick(chunk.len() as u64 * weight);
    }
    let dictionary = input
        .training()
        .then(|| sample.train().dictionary())
        .flatten();
    let mut devices = input.finish(dictionary.as_ref(), source, &mut chunk)?;
    if !source.rewind().map_err(|e| e.to_string())? {
        return Err(format!("{}: advice reads its input twice", source.name()));
    }
    let mut grid: Vec<Point> = (options.grid.iter())
        .zip(devices.iter_mut())
        .map(|(config, device)| {
            point(
                config,
                std::slice::from_mut(device),
                options.kernel.as_ref(),
            )
        })
        .collect();
    let mut one: [Box<dyn PageSource + '_>; 1] = [Box::new(Reborrow(source))];
    let cycle = lifecycle::run(&mut one, &tiers(options), ("words", "dense"), tick)?;
    let idle = cycle
        .stage("recompress")
        .expect("every life cycle recompresses");
    let memory = |s: &lifecycle::Stage| s.mm.mem_used_total + s.metadata_bytes;
    let zpage = ZpagePoint {
        memory_bytes: memory(idle),
        effective_ratio: idle.effective_ratio,
        insert_mb_s: cycle.stage("store").and_then(|s| s.mb_s).unwrap_or(0.0),
        idle_pass_mb_s: idle.mb_s.unwrap_or(0.0),
        cold_memory_bytes: cycle.stage("cold").map(memory),
    };
    mark_frontier(&mut grid);
    let recommendation = recommend(&grid, options, |_| true)?;
    let for_this_kernel = match &options.kernel {
        Some(kernel) if !runs(kernel, &options.grid, &recommendation.config) => {
            recommend(&grid, options, |c| kernel.runs(c)).ok()
        }
        _ => None,
    };
    Ok(Advice {
        schema: SCHEMA,
        input: name,
        pages: cycle.pages,
        grid,
        zpage,
        max_slowdown: options.max_slowdown,
        recommendation,
        for_this_kernel,
        kernel: options.kernel.clone(),
        dictionary,
    })
}

/// A source lent to a function that takes boxed sources.
struct Reborrow<'a>(&'a mut dyn PageSource);

impl PageSource for Reborrow<'_> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn expected_pages(&self) -> u64 {
        self.0.expected_pages()
    }
    fn next_chunk(&mut self, out: &mut Vec<Page>) -> Result<bool, crate::source::SourceError> {
        self.0.next_chunk(out)
    }
    fn rewind(&mut self) -> Result<bool, crate::source::SourceError> {
        self.0.rewind()
    }
}

fn runs(kernel: &KernelOffer, grid: &[ZramConfig], name: &str) -> bool {
    grid.iter().any(|c| c.name == name && kernel.runs(c))
}

/// One configuration's point: written, then its life cycle (idle, recompress type=idle,
/// writeback huge).
fn point(config: &ZramConfig, devices: &mut [ZramModel], kernel: Option<&KernelOffer>) -> Point {
    let prediction = zram_model::predict(config, devices);
    let written = prediction.mm_stat;
    let mut recompressed = None;
    let mut recompress_mb_s = None;
    if !config.recomp.is_empty() {
        devices.iter_mut().for_each(|d| {
            d.mark_idle();
        });
        let (done, time) = zram_model::recompress_idle(devices);
        recompressed = Some(zram_model::total(devices).0);
        recompress_mb_s = Some(crate::compare::mb_s(done.tried * PAGE_SIZE as u64, time));
    }
    let after = recompressed.unwrap_or(written);
    let memory_bytes = after.mem_used_total + prediction.dictionary_bytes;
    let writeback_huge_pages = devices.iter_mut().map(|d| d.writeback(Kind::Huge, 0)).sum();
    Point {
        config: config.name.clone(),
        memory_bytes,
        dictionary_bytes: prediction.dictionary_bytes,
        mem_ratio: after.orig_data_size as f64 / memory_bytes.max(1) as f64,
        write_mb_s: prediction.compress_mb_s,
        recompress_mb_s,
        written,
        recompressed,
        writeback_huge_pages,
        writeback_huge_memory_bytes: zram_model::total(devices).0.mem_used_total
            + prediction.dictionary_bytes,
        frontier: false,
        kernel_has: kernel.map(|k| k.runs(config)),
    }
}

/// Marks the points no other beats on both memory and write speed.
fn mark_frontier(grid: &mut [Point]) {
    let beaten: Vec<bool> = (grid.iter())
        .map(|p| {
            grid.iter().any(|q| {
                q.memory_bytes <= p.memory_bytes
                    && q.write_mb_s >= p.write_mb_s
                    && (q.memory_bytes < p.memory_bytes || q.write_mb_s > p.write_mb_s)
            })
        })
        .collect();
    for (p, beaten) in grid.iter_mut().zip(beaten) {
        p.frontier = !beaten;
    }
}

/// The least memory among the points `allowed` takes that write within `max_slowdown` of
/// lzo-rle and need no kernel rebuild.
fn recommend(
    grid: &[Point],
    options: &Options,
    allowed: impl Fn(&ZramConfig) -> bool,
) -> Result<Recommendation, String> {
    let find = |name: &str| grid.iter().position(|p| p.config == name);
    let base = find("lzo-rle").ok_or("the grid needs lzo-rle, zram's default, to weigh against")?;
    let floor = grid[base].write_mb_s / options.max_slowdown;
    let (at, point) = (grid.iter().enumerate())
        .filter(|(i, p)| {
            let config = &options.grid[*i];
            p.write_mb_s >= floor && config.default_chain() && allowed(config)
        })
        .min_by_key(|(_, p)| p.memory_bytes)
        .ok_or("no configuration of the grid writes fast enough; raise --max-slowdown")?;
    let config = &options.grid[at];
    let base = &grid[base];
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let mut reason = if point.config == base.config {
        format!(
            "lzo-rle, zram's default, is the least memory within {}x of its own write speed: {:.1} MiB for {:.1} MiB of pages",
            options.max_slowdown,
            mib(point.memory_bytes),
            mib(point.written.orig_data_size),
        )
    } else {
        format!(
            "{} holds these pages in {:.1} MiB, {:.1}% less than lzo-rle (zram's default, {:.1} MiB), writing at {:.0} MB/s against lzo-rle's {:.0} (the least memory within {}x of lzo-rle's write speed)",
            point.config,
            mib(point.memory_bytes),
            100.0 * (1.0 - point.memory_bytes as f64 / base.memory_bytes.max(1) as f64),
            mib(base.memory_bytes),
            point.write_mb_s,
            base.write_mb_s,
            options.max_slowdown
        )
    };
    if point.dictionary_bytes > 0 {
        reason.push_str(&format!(
            "; its dictionary ({} KiB, counted in) is trained on these pages: save it with --dict-out and install it as {DICT_PATH}",
            point.dictionary_bytes >> 10
        ));
    }
    if let Some(mb_s) = point.recompress_mb_s {
        reason.push_str(&format!(
            "; recompression of idle pages runs at {mb_s:.0} MB/s (the memory assumes every page went idle once)"
        ));
    }
    Ok(Recommendation {
        config: point.config.clone(),
        reason,
        sysfs: sysfs_lines(config, &options.device),
        zram_generator: generator_section(config, &options.device),
        params: config.primary.params(DICT_PATH),
        predicted: point.written,
    })
}

/// The shell lines that set a fresh device up as `config` says.
pub fn sysfs_lines(config: &ZramConfig, device: &str) -> Vec<String> {
    let sys = format!("/sys/block/{device}");
    let name = config.primary.name();
    let mut lines = vec![format!("echo {name} > {sys}/comp_algorithm")];
    let params = config.primary.params(DICT_PATH);
    if !params.is_empty() {
        lines.push(format!(
            "echo \"algo={name} {}\" > {sys}/algorithm_params",
            params.join(" ")
        ));
    }
    for (priority, algorithm) in (1..).zip(&config.recomp) {
        lines.push(format!(
            "echo \"algo={} priority={priority}\" > {sys}/recomp_algorithm",
            algorithm.name()
        ));
        let params = algorithm.params(DICT_PATH);
        if !params.is_empty() {
            lines.push(format!(
                "echo \"priority={priority} {}\" > {sys}/algorithm_params",
                params.join(" ")
            ));
        }
    }
    lines.push(format!(
        "echo 4G > {sys}/disksize   # the most it takes in, uncompressed; memory is what it holds"
    ));
    lines.push(format!(
        "mkswap /dev/{device} && swapon -p 100 /dev/{device}"
    ));
    if !config.recomp.is_empty() {
        lines.push(format!(
            "# when pages have been idle a while (a timer): echo all > {sys}/idle && echo type=idle > {sys}/recompress"
        ));
    }
    lines
}

/// A `zram-generator.conf` section for `config`.
pub fn generator_section(config: &ZramConfig, device: &str) -> String {
    let word = |a: &Algorithm| {
        let params = a.params(DICT_PATH);
        if params.is_empty() {
            a.name().to_string()
        } else {
            format!("{}({})", a.name(), params.join(","))
        }
    };
    let mut algorithms: Vec<String> = std::iter::once(&config.primary)
        .chain(&config.recomp)
        .map(word)
        .collect();
    if !config.recomp.is_empty() {
        algorithms.push("(type=idle)".into());
    }
    format!(
        "[{device}]\nzram-size = min(ram / 2, 4096)\ncompression-algorithm = {}\n",
        algorithms.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lines_that_apply_a_configuration() {
        let config = ZramConfig::parse("lz4:recomp=zstd@8").unwrap();
        let lines = sysfs_lines(&config, "zram0");
        assert_eq!(lines[0], "echo lz4 > /sys/block/zram0/comp_algorithm");
        assert_eq!(
            lines[1],
            "echo \"algo=zstd priority=1\" > /sys/block/zram0/recomp_algorithm"
        );
        assert_eq!(
            lines[2],
            "echo \"priority=1 level=8\" > /sys/block/zram0/algorithm_params"
        );
        assert!(lines[3].starts_with("echo 4G > /sys/block/zram0/disksize"));
        assert_eq!(
            generator_section(&config, "zram0"),
            "[zram0]\nzram-size = min(ram / 2, 4096)\ncompression-algorithm = lz4 zstd(level=8) (type=idle)\n"
        );
        let config = ZramConfig::parse("zstd:level=8:dict").unwrap();
        assert_eq!(
            sysfs_lines(&config, "zram1")[1],
            format!(
                "echo \"algo=zstd level=8 dict={DICT_PATH}\" > /sys/block/zram1/algorithm_params"
            )
        );
    }

    #[test]
    fn the_frontier() {
        let mut grid: Vec<Point> = [(100, 10.0), (80, 5.0), (90, 4.0), (120, 20.0)]
            .iter()
            .map(|&(memory, mb_s)| Point {
                config: String::new(),
                memory_bytes: memory,
                dictionary_bytes: 0,
                mem_ratio: 0.0,
                write_mb_s: mb_s,
                recompress_mb_s: None,
                written: MmStat::default(),
                recompressed: None,
                writeback_huge_pages: 0,
                writeback_huge_memory_bytes: 0,
                frontier: false,
                kernel_has: None,
            })
            .collect();
        mark_frontier(&mut grid);
        let on: Vec<bool> = grid.iter().map(|p| p.frontier).collect();
        assert_eq!(on, [true, true, false, true]);
    }
}
