//! The zram life cycle on real memory: pages are stored with the insert engine (timed),
//! marked idle, re-encoded by the idle pass with the dense engine and dictionaries, then
//! by the cold pass at a stronger zstd level where one is given, and written back to a
//! backing file where one is given, each step timed and followed by
//! the store's `mm_stat`; at the end every page is read back (from memory and from the
//! backing file) and compared.
//!
//! Invariants: as in [`crate::sim`], every stored page is compared right after its
//! chunk is stored and again at the end, against a digest of the originals, before any
//! figure is reported (a page the memory limit refused is counted, not stored, and left
//! out of the digest); each input gets its own store (and, with writeback, its own use of
//! the backing file), and a stage's figures are sums over the inputs. Memory: the stores
//! plus a chunk of pages, whatever the input's size.

use crate::compare::{self, ZramSample};
use crate::sim::{self, Dictionaries, page_digest};
use crate::source::{CHUNK_PAGES, PageSource};
use crate::zram_model::{self, InputDevices, KernelCycle, Kind, ZramConfig, ZramModel};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use zpage::engine::Engine;
use zpage::page::{PAGE_SIZE, Page};
use zpage::store::{BackingFile, BdStat, IoStat, MmStat, PageStore, Selection, Stats, StoreError};

/// The JSON schema name and version of [`Lifecycle`] reports.
pub const SCHEMA: &str = "zpage-lifecycle/1";

/// Where written-back pages go: a file or block device, or a Valkey/Redis server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackingTarget {
    File(PathBuf),
    /// `redis://HOST:PORT[/DB]` (built with the `redis` feature).
    Redis(String),
}

/// How long a Redis backing waits to connect and for each reply.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

impl BackingTarget {
    /// A URL `redis://...` or `rediss://...` names a server; anything else a file.
    pub fn parse(text: &str) -> Result<BackingTarget, String> {
        if text.starts_with("redis://") || text.starts_with("rediss://") {
            Ok(BackingTarget::Redis(text.to_string()))
        } else {
            Ok(BackingTarget::File(PathBuf::from(text)))
        }
    }

    /// Opens it with room for `pages` records.
    pub fn open(&self, pages: u64) -> Result<std::sync::Arc<dyn zpage::store::Backing>, String> {
        match self {
            BackingTarget::File(path) => BackingFile::open(path, pages * PAGE_SIZE as u64)
                .map(|f| std::sync::Arc::new(f) as _)
                .map_err(|e| format!("backing file {}: {e}", path.display())),
            #[cfg(feature = "redis")]
            BackingTarget::Redis(url) => {
                let options = zpage::RedisOptions::new(pages).timeout(REDIS_TIMEOUT);
                zpage::RedisBacking::open(url, options)
                    .map(|r| std::sync::Arc::new(r) as _)
                    .map_err(|e| format!("backing {e}"))
            }
            #[cfg(not(feature = "redis"))]
            BackingTarget::Redis(url) => Err(format!(
                "backing {url}: this zpage was built without the redis feature (cargo build --release --features redis)"
            )),
        }
    }
}

/// Which pages the writeback step takes (zram's `writeback` types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WritebackType {
    /// Pages still stored uncompressed after the idle pass.
    Huge,
    /// Every idle page.
    Idle,
    /// Pages both huge and idle.
    HugeIdle,
}

impl WritebackType {
    /// Parses `huge`, `idle` or `huge_idle`.
    pub fn parse(text: &str) -> Result<WritebackType, String> {
        match text {
            "huge" => Ok(WritebackType::Huge),
            "idle" => Ok(WritebackType::Idle),
            "huge_idle" => Ok(WritebackType::HugeIdle),
            other => Err(format!(
                "{other:?} is not a writeback type (huge, idle, huge_idle)"
            )),
        }
    }

    /// What the type takes, as a report says it.
    fn describe(self) -> &'static str {
        match self {
            WritebackType::Huge => "stored uncompressed",
            WritebackType::Idle => "idle",
            WritebackType::HugeIdle => "both uncompressed and idle",
        }
    }

    /// zram's type of the same name.
    fn kind(self) -> Kind {
        match self {
            WritebackType::Huge => Kind::Huge,
            WritebackType::Idle => Kind::Idle,
            WritebackType::HugeIdle => Kind::HugeIdle,
        }
    }

    fn selection(self) -> Selection {
        match self {
            WritebackType::Huge => Selection::all().huge(),
            WritebackType::Idle => Selection::all().idle(),
            WritebackType::HugeIdle => Selection::all().idle().huge(),
        }
    }
}

/// What a life cycle runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// The engine inserts use (the words profile, by default).
    pub engine: Engine,
    /// The engine of the idle pass.
    pub idle: Engine,
    /// Dictionaries for the idle pass (auto-trained by it, or from a file).
    pub dictionaries: Option<Dictionaries>,
    /// zram's `mem_limit` for each input's store.
    pub mem_limit: Option<u64>,
    /// The zstd level of the cold step (none: no cold step).
    pub cold_level: Option<i32>,
    /// Pages the cold step packs into one unit (1: each page alone, with the mixed form).
    pub unit_pages: usize,
    /// After the cold step, the coldest: units' pages in the mixed form where smaller.
    pub coldest: bool,
    /// A backing store for the writeback step (a file, a block device or a Redis
    /// server), and what it takes.
    pub backing: Option<(BackingTarget, WritebackType)>,
    /// Also run the emulated zram-best baseline on the same pages (page files only).
    pub zram_best: bool,
    /// zram configurations whose kernel life cycle is predicted beside zpage's.
    pub zram: Vec<ZramConfig>,
}

/// One step of the life cycle and the store's state after it, summed over the inputs.
#[derive(Clone, Debug, Serialize)]
pub struct Stage {
    /// `store`, `mark_idle`, `recompress`, `cold`, `coldest`, `writeback`, `read`.
    pub name: &'static str,
    pub seconds: f64,
    /// The step's input bytes per second (`None` where a speed means nothing: marking
    /// pages idle reads no page).
    pub mb_s: Option<f64>,
    /// Bytes of the pages the step worked on (stored, examined, written, read).
    pub input_bytes: u64,
    /// zram's `mm_stat` fields after the step.
    #[serde(flatten)]
    pub mm: MmStat,
    pub bd_stat: BdStat,
    pub io_stat: IoStat,
    /// Page table, allocator bookkeeping and dictionaries.
    pub metadata_bytes: u64,
    pub dictionaries: u64,
    /// `orig_data_size / compr_data_size`.
    pub ratio: f64,
    /// `orig_data_size / (mem_used_total + metadata_bytes)`.
    pub effective_ratio: f64,
    /// Why the step did nothing, or less than asked (no idle page, too few pages to
    /// train dictionaries, no page the writeback type takes).
    pub note: Option<String>,
}

/// A life cycle's report; its JSON form is the schema [`SCHEMA`].
#[derive(Clone, Debug, Serialize)]
pub struct Lifecycle {
    pub schema: &'static str,
    pub profile: String,
    pub idle_profile: String,
    pub inputs: Vec<String>,
    pub pages: u64,
    /// Pages the memory limit refused (not stored, as zram fails such writes).
    pub refused_pages: u64,
    pub stages: Vec<Stage>,
    /// The emulated zram-best baseline's ratio on the same pages (0 when not run).
    pub zram_best_ratio: f64,
    /// The kernel's life cycle predicted for each `--zram` configuration, in order.
    pub zram_lifecycle: Vec<KernelCycle>,
    /// Every stored page read back after the last step and compared.
    pub verified: bool,
}

impl Lifecycle {
    /// The stage of this name.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// Accumulates one stage over the inputs.
#[derive(Default)]
struct Acc {
    time: Duration,
    bytes: u64,
    stats: Stats,
    /// The stage's notes, one per input that had one.
    notes: Vec<String>,
}

impl Acc {
    /// Adds one input's store after the step. A dictionary file's set is the same in
    /// every input's store: it is charged once per run, not once per input.
    fn absorb(&mut self, stats: &Stats, shared_set: bool) {
        let (bytes, count) = (self.stats.dictionary_bytes, self.stats.dictionaries);
        self.stats.absorb(stats);
        if shared_set {
            self.stats.dictionary_bytes = bytes.max(stats.dictionary_bytes);
            self.stats.dictionaries = count.max(stats.dictionaries);
        }
    }
}

/// Progress units per page of each step, by what the step costs (the cold pass encodes
/// at zstd 16 and tries the mixed form, tens of times an insert's work).
const STORE_WEIGHT: u64 = 1;
const IDLE_WEIGHT: u64 = 4;
const COLD_WEIGHT: u64 = 40;
const COLDEST_WEIGHT: u64 = 60;
const READ_WEIGHT: u64 = 2;

/// The progress units [`run`] ticks in all for `pages` pages under `config`.
pub fn progress_units(pages: u64, config: &Config) -> u64 {
    let cold = config.cold_level.map_or(0, |_| COLD_WEIGHT);
    let coldest = if coldest(config) { COLDEST_WEIGHT } else { 0 };
    pages * (STORE_WEIGHT + IDLE_WEIGHT + cold + coldest + READ_WEIGHT)
}

/// Whether the life cycle has a coldest step (it weighs the cold step's units).
fn coldest(config: &Config) -> bool {
    config.coldest && config.cold_level.is_some() && config.unit_pages > 1
}

/// Runs the life cycle on every source; `tick` gets progress units as the steps go
/// ([`progress_units`] in all: each step's pages, weighted by its cost).
pub fn run(
    sources: &mut [Box<dyn PageSource + '_>],
    config: &Config,
    profile: (&str, &str),
    tick: &mut dyn FnMut(u64),
) -> Result<Lifecycle, String> {
    let mut names: Vec<&'static str> = vec!["store", "mark_idle", "recompress"];
    if config.cold_level.is_some() {
        names.push("cold");
    }
    if coldest(config) {
        names.push("coldest");
    }
    if config.backing.is_some() {
        names.push("writeback");
    }
    names.push("read");
    let mut acc: Vec<Acc> = names.iter().map(|_| Acc::default()).collect();
    let shared_set = matches!(config.dictionaries, Some(Dictionaries::Set { .. }));
    let (mut inputs, mut refused, mut best_result) =
        (Vec::new(), 0, compare::SchemeResult::default());
    let mut devices: Vec<Vec<ZramModel>> = config.zram.iter().map(|_| Vec::new()).collect();
    let mut chunk = Vec::with_capacity(CHUNK_PAGES);
    let mut back = vec![Page::zeroed(); CHUNK_PAGES];
    for source in sources.iter_mut() {
        let name = source.name().to_string();
        let store = build(config, source.expected_pages())?;
        let (mut next_id, mut digest) = (0u64, 0u64);
        let mut stored = Vec::new();
        let mut sample = ZramSample::default();
        let mut input_devices = InputDevices::new(&config.zram, config.mem_limit)?;
        let sampling = config.zram_best || input_devices.training();
        let mut step = 0;
        while source
            .next_chunk(&mut chunk)
            .map_err(|e| format!("{name}: {e}"))?
        {
            let first = next_id;
            let start = Instant::now();
            stored.clear();
            for (id, page) in (first..).zip(&chunk) {
                match store.insert(id, page) {
                    Ok(()) => stored.push(true),
                    Err(StoreError::MemoryLimit { .. }) => stored.push(false),
                    Err(e) => return Err(format!("{name}: page {id}: {e}")),
                }
            }
            acc[step].time += start.elapsed();
            next_id += chunk.len() as u64;
            for ((id, page), &ok) in (first..).zip(&chunk).zip(&stored) {
                if !ok {
                    refused += 1;
                    continue;
                }
                acc[step].bytes += PAGE_SIZE as u64;
                store
                    .read_into(id, &mut back[0])
                    .map_err(|e| format!("{name}: read back page {id}: {e}"))?;
                if back[0] != *page {
                    return Err(format!(
                        "{name}: verification failed: page {id} read back differs from what was stored"
                    ));
                }
                digest = digest.wrapping_add(page_digest(id, page));
            }
            input_devices.write(&chunk);
            if sampling {
                sample.sample(&chunk, source.expected_pages());
            }
            tick(chunk.len() as u64 * STORE_WEIGHT);
        }
        acc[step].absorb(&store.stats(), shared_set);
        step += 1;

        let start = Instant::now();
        let idle = store.mark_idle(None);
        acc[step].time += start.elapsed();
        acc[step].bytes += idle * PAGE_SIZE as u64;
        acc[step].absorb(&store.stats(), shared_set);
        step += 1;

        // The idle pass, then the cold one (units at its level), then the coldest (the
        // units' pages mixed where smaller).
        let passes = std::iter::once(("idle", Selection::all().idle(), IDLE_WEIGHT))
            .chain(
                config
                    .cold_level
                    .map(|level| ("cold", Selection::all().idle().level(level), COLD_WEIGHT)),
            )
            .chain(
                coldest(config)
                    .then(|| ("coldest", Selection::all().idle().mixed(), COLDEST_WEIGHT)),
            );
        let stored_pages = next_id;
        for (what, select, weight) in passes {
            let start = Instant::now();
            let done = store.recompress_observed(select, &mut |pages| tick(pages * weight));
            acc[step].time += start.elapsed();
            acc[step].bytes += done.examined * PAGE_SIZE as u64;
            if done.failed > 0 {
                return Err(format!(
                    "{name}: {} pages failed their check in the {what} pass",
                    done.failed
                ));
            }
            // The pages a pass left out still count as progress.
            tick(stored_pages.saturating_sub(done.examined) * weight);
            let stats = store.stats();
            if done.examined == 0 {
                acc[step].notes.push(format!(
                    "{name}: no page to re-encode (every stored page is zero or same-filled, hot, or settled)"
                ));
            } else if what == "idle"
                && stats.dictionaries == 0
                && matches!(config.dictionaries, Some(Dictionaries::Auto { .. }))
            {
                let after = match config.dictionaries {
                    Some(Dictionaries::Auto {
                        after_zstd_pages, ..
                    }) => after_zstd_pages,
                    _ => 0,
                };
                acc[step].notes.push(format!(
                    "{name}: no dictionaries: {} pages a dictionary could serve, training starts at {after}",
                    stats.pages - stats.mm.same_pages
                ));
            }
            acc[step].absorb(&stats, shared_set);
            step += 1;
        }

        if let Some((_, kind)) = &config.backing {
            let start = Instant::now();
            let written = write_back(&store, *kind, &name)?;
            acc[step].time += start.elapsed();
            acc[step].bytes += written * PAGE_SIZE as u64;
            if written == 0 {
                acc[step].notes.push(format!(
                    "{name}: no page to write back (none in the allocator is {})",
                    kind.describe()
                ));
            }
            acc[step].absorb(&store.stats(), shared_set);
            step += 1;
        }

        // Every page, from wherever it now lives, timed; compared after.
        let mut read_tick = |pages: u64| tick(pages * READ_WEIGHT);
        let (spent, present) =
            sim::read_back(&store, next_id, digest, &mut back, &name, &mut read_tick)?;
        acc[step].time += spent;
        acc[step].bytes += present * PAGE_SIZE as u64;
        acc[step].absorb(&store.stats(), shared_set);
        drop(store);
        let trained = sampling.then(|| sample.train());
        if config.zram_best
            && let Some(best) = &trained
            && let Some(result) = sim::store_again(best, &mut **source, &mut chunk)
                .map_err(|e| format!("{name}: zram-best: {e}"))?
        {
            best_result.absorb(&result);
        }
        input_devices.finish_into(trained.as_ref(), &mut **source, &mut chunk, &mut devices)?;
        inputs.push(name);
    }
    let pages = acc[0].stats.pages + refused;
    let stages = names
        .iter()
        .zip(acc)
        .map(|(&name, acc)| Stage {
            name,
            seconds: acc.time.as_secs_f64(),
            mb_s: (name != "mark_idle").then(|| compare::mb_s(acc.bytes, acc.time)),
            note: (!acc.notes.is_empty()).then(|| acc.notes.join("; ")),
            input_bytes: acc.bytes,
            mm: acc.stats.mm,
            bd_stat: acc.stats.bd,
            io_stat: acc.stats.io,
            metadata_bytes: acc.stats.metadata_total(),
            dictionaries: acc.stats.dictionaries,
            ratio: acc.stats.ratio(),
            effective_ratio: acc.stats.effective_ratio(),
        })
        .collect();
    Ok(Lifecycle {
        schema: SCHEMA,
        profile: profile.0.to_string(),
        idle_profile: profile.1.to_string(),
        inputs,
        pages,
        refused_pages: refused,
        stages,
        zram_best_ratio: if config.zram_best {
            best_result.ratio()
        } else {
            0.0
        },
        zram_lifecycle: (config.zram.iter())
            .zip(&mut devices)
            .map(|(zram, devices)| {
                let writeback = config.backing.as_ref().map(|(_, kind)| kind.kind());
                zram_model::life_cycle(zram, devices, writeback)
            })
            .collect(),
        verified: true,
    })
}

/// The writeback step: the pages written, or the error that stopped it (a failed batch
/// stays in memory, but a life cycle asked to write back reports it).
fn write_back(store: &PageStore, kind: WritebackType, name: &str) -> Result<u64, String> {
    let done = store
        .writeback(kind.selection())
        .map_err(|e| format!("{name}: {e}"))?;
    match done.error {
        Some(error) => Err(format!("{name}: writeback: {error}")),
        None => Ok(done.written),
    }
}

/// One input's store: one shard (one thread inserts, as a zram device's table fills),
/// the idle engine, the dictionaries, the limit and the backing file.
fn build(config: &Config, pages: u64) -> Result<PageStore, String> {
    let mut builder = PageStore::builder()
        .shards(1)
        .engine(config.engine.clone())
        .idle_engine(config.idle.clone())
        .cold_unit_pages(config.unit_pages);
    if let Some(dictionaries) = &config.dictionaries {
        builder = dictionaries.configure(builder);
    }
    if let Some(limit) = config.mem_limit {
        builder = builder.mem_limit(limit);
    }
    if let Some((target, _)) = &config.backing {
        builder = builder.backing(target.open(pages.max(1))?);
    }
    Ok(builder.build())
}

/// One sample of a live process in [`sample_process`]: what changed since the last, the
/// time each step took, and the store's state after the idle pass.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the first sample began.
    pub at_seconds: f64,
    /// Pages the process had in this sample.
    pub pages: u64,
    /// Of those, pages new or changed since the last sample (stored again).
    pub written: u64,
    /// Pages gone since the last sample (freed or unmapped): removed from the store.
    pub removed: u64,
    /// Pages the memory limit refused.
    pub refused: u64,
    /// Insert speed over the pages written.
    pub store_mb_s: f64,
    /// Pages the idle pass examined (idle for at least the interval), and its speed.
    pub idle_pass_pages: u64,
    pub idle_pass_mb_s: f64,
    /// Pages the cold pass examined (untouched for four intervals).
    pub cold_pass_pages: u64,
    /// Pages written back in this sample.
    pub written_back: u64,
    #[serde(flatten)]
    pub mm: MmStat,
    pub bd_stat: BdStat,
    pub idle_pages: u64,
    pub effective_ratio: f64,
}

/// How a live process's memory evolves in a tiered store; its JSON form is the schema
/// [`SAMPLES_SCHEMA`].
#[derive(Clone, Debug, Serialize)]
pub struct Evolution {
    pub schema: &'static str,
    pub process: String,
    pub profile: String,
    pub idle_profile: String,
    pub interval_seconds: f64,
    pub samples: Vec<Sample>,
    /// Every page of the last sample read back from the store and compared.
    pub verified: bool,
}

/// The JSON schema name and version of [`Evolution`] reports.
pub const SAMPLES_SCHEMA: &str = "zpage-lifecycle-samples/1";

/// Samples process `pid` `count` times, `interval` apart, into one tiered store, as zram
/// would see its pages over time: each sample stores the pages that are new or changed
/// (by address; a page's CRC-32 tells a change), removes the ones that are gone, then
/// marks idle the pages untouched for an interval and runs the idle pass over them, the
/// cold pass over those untouched for four (with a cold level), and writeback (with a
/// backing file). At the end every page of the last sample is read back
/// and compared with its CRC. Memory: the store, a chunk, and 12 bytes per page of the
/// process (its address and CRC).
pub fn sample_process(
    open: &mut dyn FnMut() -> Result<Box<dyn PageSource>, String>,
    config: &Config,
    interval: Duration,
    count: u32,
    profile: (&str, &str),
    tick: &mut dyn FnMut(u64),
) -> Result<Evolution, String> {
    use std::collections::HashMap;
    let mut source = open()?;
    let process = source.name().to_string();
    // The backing file gets room for twice the first sample (the process may grow).
    let store = build(config, 2 * source.expected_pages())?;
    let mut known: HashMap<u64, u32> = HashMap::new();
    let mut samples = Vec::new();
    let mut chunk = Vec::with_capacity(CHUNK_PAGES);
    let begin = Instant::now();
    for round in 0..count {
        if round > 0 {
            std::thread::sleep(interval);
            source = open()?;
        }
        let at_seconds = begin.elapsed().as_secs_f64();
        let mut seen: HashMap<u64, u32> = HashMap::with_capacity(known.len());
        let (mut written, mut refused, mut spent) = (0u64, 0u64, Duration::ZERO);
        while source
            .next_chunk(&mut chunk)
            .map_err(|e| format!("{process}: {e}"))?
        {
            let addresses = source
                .addresses()
                .ok_or_else(|| format!("{process}: a sampled source needs page addresses"))?;
            for (page, &address) in chunk.iter().zip(addresses) {
                let id = address / PAGE_SIZE as u64;
                let crc = crc32fast::hash(page.bytes());
                if known.get(&id) != Some(&crc) {
                    let start = Instant::now();
                    let stored = store.insert(id, page);
                    spent += start.elapsed();
                    match stored {
                        Ok(()) => written += 1,
                        Err(StoreError::MemoryLimit { .. }) => {
                            // Not stored: the store keeps whatever it had of the page.
                            refused += 1;
                            if let Some(&old) = known.get(&id) {
                                seen.insert(id, old);
                            }
                            continue;
                        }
                        Err(e) => return Err(format!("{process}: page {id:#x}: {e}")),
                    }
                }
                seen.insert(id, crc);
            }
            tick(chunk.len() as u64);
        }
        let mut removed = 0u64;
        for id in known.keys().filter(|id| !seen.contains_key(id)) {
            store.discard(*id);
            removed += 1;
        }
        known = seen;
        store.mark_idle(Some(interval));
        let start = Instant::now();
        let pass = store.recompress_selected(Selection::all().idle());
        let pass_time = start.elapsed();
        let cold = config.cold_level.map_or(0, |level| {
            let select = Selection::all().min_age(interval * 4).level(level);
            store.recompress_selected(select).examined
        });
        let written_back = match &config.backing {
            Some((_, kind)) => write_back(&store, *kind, &process)?,
            None => 0,
        };
        let stats = store.stats();
        samples.push(Sample {
            at_seconds,
            pages: known.len() as u64,
            written,
            removed,
            refused,
            store_mb_s: compare::mb_s(written * PAGE_SIZE as u64, spent),
            idle_pass_pages: pass.examined,
            idle_pass_mb_s: compare::mb_s(pass.examined * PAGE_SIZE as u64, pass_time),
            cold_pass_pages: cold,
            written_back,
            mm: stats.mm,
            bd_stat: stats.bd,
            idle_pages: stats.idle_pages,
            effective_ratio: stats.effective_ratio(),
        });
    }
    let mut page = Page::zeroed();
    for (&id, &crc) in &known {
        store
            .read_into(id, &mut page)
            .map_err(|e| format!("{process}: read back page {id:#x}: {e}"))?;
        if crc32fast::hash(page.bytes()) != crc {
            return Err(format!(
                "{process}: verification failed: page {id:#x} read back differs from what was stored"
            ));
        }
    }
    Ok(Evolution {
        schema: SAMPLES_SCHEMA,
        process,
        profile: profile.0.to_string(),
        idle_profile: profile.1.to_string(),
        interval_seconds: interval.as_secs_f64(),
        samples,
        verified: true,
    })
}
