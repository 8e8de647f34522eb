//! zram simulation: page sets go through a `PageStore` as zram would receive them (no hot
//! tier), are read back and compared, and the result is reported with zram's `mm_stat`
//! fields, per class, and against single-codec baselines run on the same pages.
//!
//! Inputs stream through in chunks ([`crate::source`]): beyond the store itself (its
//! `mem_used_total` and metadata, the point of a simulation), a run holds a few chunks of
//! pages and their baseline forms, whatever the input's size.
//!
//! Invariants: every page stored is read back and compared byte for byte right after its
//! chunk is stored, and every page is read back again once the whole input is stored,
//! against a digest of the originals (per page its id and CRC-32), before any figure is
//! reported: a mismatch is an error, so `verified` is always true in a report. Each input
//! gets its own store, like a zram device per file, and totals are sums over them; times
//! are measured around the store calls only (not around reading inputs or comparing).

use crate::compare::{self, Baseline, BaselineKind, SchemeResult, ZramBest, ZramSample};
use crate::source::{CHUNK_PAGES, PageSource, Skipped};
use crate::zram_model::{self, InputDevices, ZramConfig, ZramModel, ZramPrediction};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use zpage::codec::Class;
use zpage::codec::dictset::DictionarySet;
use zpage::engine::Engine;
use zpage::page::Page;
use zpage::store::{PageStore, Stats, StoreBuilder, StoreError};

/// The JSON schema name and version of [`Report`]; bumped on any incompatible change.
pub const SCHEMA: &str = "zpage-sim/1";

/// Per-class figures of a simulation.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClassReport {
    pub pages: u64,
    pub orig_bytes: u64,
    pub stored_bytes: u64,
    /// Share of the compress time spent on pages of this class (0 when the simulation
    /// ran without detail).
    pub time_share: f64,
}

/// One input's headline figures.
#[derive(Clone, Debug, Serialize)]
pub struct InputReport {
    pub name: String,
    pub pages: u64,
    pub orig_data_size: u64,
    pub compr_data_size: u64,
    pub mem_used_total: u64,
    pub metadata_bytes: u64,
    pub ratio: f64,
    pub effective_ratio: f64,
    /// Touched pages the source left out (a live process's zero-page mappings and pages
    /// that changed under the read).
    pub skipped: Skipped,
}

/// A baseline's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BaselineReport {
    pub compr_data_size: u64,
    pub ratio: f64,
    pub compress_mb_s: f64,
    pub decompress_mb_s: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Timing {
    /// Input bytes per second through `PageStore::insert` (classify, encode, allocate).
    pub compress_mb_s: f64,
    /// Bytes per second through `PageStore::read_into`.
    pub decompress_mb_s: f64,
    /// Features and tree, measured in a separate pass over the same pages (0 when the
    /// simulation ran without detail).
    pub classify_ns_per_page: f64,
}

/// The whole report; its JSON form is the schema [`SCHEMA`] (see README).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub profile: String,
    pub inputs: Vec<InputReport>,
    pub pages: u64,
    pub orig_data_size: u64,
    pub compr_data_size: u64,
    pub mem_used_total: u64,
    /// Per-page metadata plus allocator bookkeeping, summed over the inputs' stores.
    pub metadata_bytes: u64,
    /// Of `metadata_bytes`, the page tables alone (the per-page metadata).
    pub page_table_bytes: u64,
    /// Of `metadata_bytes`, the dictionaries the stores trained (0 without them).
    pub dictionary_bytes: u64,
    /// Dictionaries the stores hold at the end.
    pub dictionaries: u64,
    pub same_pages: u64,
    pub huge_pages: u64,
    /// `orig_data_size / compr_data_size`.
    pub ratio: f64,
    /// `orig_data_size / (mem_used_total + metadata_bytes)`.
    pub effective_ratio: f64,
    /// `mem_used_total / compr_data_size - 1`.
    pub allocator_overhead: f64,
    pub verified: bool,
    pub classes: BTreeMap<Class, ClassReport>,
    /// The baselines asked for, by name, in the order given.
    #[serde(serialize_with = "in_order")]
    pub baselines: Vec<(String, BaselineReport)>,
    pub timing: Timing,
    /// This process's peak resident memory (0 where unknown): the store's memory plus a
    /// bounded working set.
    pub peak_rss_bytes: u64,
    /// Inputs the `zram-best` baseline could not run on (a live process cannot be read
    /// twice); when any is, the column is left out.
    pub zram_best_left_out: Vec<String>,
    /// The kernel's zram predicted (`--zram`), one entry per configuration, in order.
    pub zram_model: Vec<ZramPrediction>,
    /// Pages the memory limit refused (not stored, as zram fails such writes).
    pub refused_pages: u64,
}

/// Dictionaries for each input's store, encoding at `level`.
#[derive(Clone, Debug)]
pub enum Dictionaries {
    /// Trained by the store as it fills (`PageStore`'s `auto_dictionaries`), from this
    /// many pages stored as zstd on.
    Auto { after_zstd_pages: u64, level: i32 },
    /// Trained beforehand (a `zpage dict` file): every store encodes with it from the
    /// start.
    Set { set: DictionarySet, level: i32 },
}

impl Dictionaries {
    /// A store builder set up to get these dictionaries.
    pub fn configure(&self, builder: StoreBuilder) -> StoreBuilder {
        match self {
            &Dictionaries::Auto {
                after_zstd_pages,
                level,
            } => builder
                .auto_dictionaries(after_zstd_pages)
                .dictionary_level(level),
            Dictionaries::Set { set, level } => {
                builder.dictionary_level(*level).dictionaries(set.clone())
            }
        }
    }
}

/// Simulates every source. With `detailed` it also runs the baselines (most of the time:
/// the oracle encodes every page five ways), the separate classify-timing pass, and times
/// each insert for the per-class time shares (a clock read per page, ~1% of an insert);
/// without it (`zpage zram`, which shows none of these, and times the kernel's writes
/// with one clock) those figures are 0 and the insert loop is timed as a whole. `tick`
/// is called with the number of pages just processed, twice per page (stored, then read
/// back at the end of its input).
pub fn simulate(
    sources: &mut [Box<dyn PageSource + '_>],
    engine: &Engine,
    dictionaries: Option<&Dictionaries>,
    profile: &str,
    beside: Beside<'_>,
    detailed: bool,
    tick: &mut dyn FnMut(u64),
) -> Result<Report, String> {
    let baselines = beside.baselines;
    // One predicted zram device per configuration and input, as a store per input.
    let mut devices: Vec<Vec<ZramModel>> = beside.zram.iter().map(|_| Vec::new()).collect();
    let mut totals = Stats::default();
    let mut refused = 0u64;
    let mut inputs = Vec::new();
    let mut class_time = [Duration::ZERO; Class::ALL.len()];
    let (mut compress, mut decompress, mut classify) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut sums = vec![SchemeResult::default(); baselines.len()];
    let zram_best = baselines
        .iter()
        .position(|b| matches!(b.kind, BaselineKind::ZramBest))
        .filter(|_| detailed);
    // Inputs the zram-best column could not run on (a live process is not the same twice).
    let mut zram_best_missing = Vec::new();
    let mut chunk = Vec::with_capacity(CHUNK_PAGES);
    let mut back = vec![Page::zeroed(); CHUNK_PAGES];
    let mut spent = Vec::with_capacity(CHUNK_PAGES);
    for source in sources.iter_mut() {
        let name = source.name().to_string();
        // One thread inserts, so one shard: its metadata blocks fill densely, as a zram
        // device's table does.
        let mut builder = PageStore::builder().shards(1).engine(engine.clone());
        if let Some(dictionaries) = dictionaries {
            builder = dictionaries.configure(builder);
        }
        if let Some(limit) = beside.mem_limit {
            builder = builder.mem_limit(limit);
        }
        let store = builder.build();
        let (mut next_id, mut digest) = (0u64, 0u64);
        let mut stored = Vec::with_capacity(CHUNK_PAGES);
        let mut zram_sample = ZramSample::default();
        let mut input_devices = InputDevices::new(beside.zram, beside.mem_limit)?;
        // zram-best's sample also trains the dictionaries of `--zram ...:dict`.
        let sampling = zram_best.is_some() || input_devices.training();
        while source
            .next_chunk(&mut chunk)
            .map_err(|e| format!("{name}: {e}"))?
        {
            let first = next_id;
            // In detail, one clock read per page (each costs ~35 ns on a VM); classes are
            // looked up afterwards, outside the timed loop.
            spent.clear();
            stored.clear();
            let start = Instant::now();
            let mut last = start;
            for (id, page) in (first..).zip(&chunk) {
                match store.insert(id, page) {
                    Ok(()) => stored.push(true),
                    Err(StoreError::MemoryLimit { .. }) => stored.push(false),
                    Err(e) => return Err(format!("{name}: page {id}: {e}")),
                }
                if detailed {
                    let now = Instant::now();
                    spent.push(now - last);
                    last = now;
                }
            }
            compress += start.elapsed();
            // Auto-dictionaries train off the insert path (a shared store's worker would),
            // so outside the insert time.
            store.train_if_due();
            input_devices.write(&chunk);
            if sampling {
                zram_sample.sample(&chunk, source.expected_pages());
            }
            next_id += chunk.len() as u64;
            for ((id, spent), _) in (first..).zip(&spent).zip(&stored).filter(|(_, ok)| **ok) {
                let class = store.stored_class(id).expect("inserted above");
                class_time[class.index()] += *spent;
            }
            refused += stored.iter().filter(|ok| !**ok).count() as u64;
            for ((id, (page, out)), _) in (first..)
                .zip(chunk.iter().zip(back.iter_mut()))
                .zip(&stored)
                .filter(|(_, ok)| **ok)
            {
                store
                    .read_into(id, out)
                    .map_err(|e| format!("{name}: read back page {id}: {e}"))?;
                if out != page {
                    return Err(format!(
                        "{name}: verification failed: page {id} read back differs from what was stored"
                    ));
                }
                digest = digest.wrapping_add(page_digest(id, page));
            }
            if detailed {
                let start = Instant::now();
                let delta_pages = chunk
                    .iter()
                    .filter(|p| engine.classify(std::hint::black_box(p)).class == Class::Delta)
                    .count();
                std::hint::black_box(delta_pages);
                classify += start.elapsed();
                for (sum, baseline) in sums.iter_mut().zip(baselines) {
                    let BaselineKind::PerChunk(scheme) = baseline.kind else {
                        continue;
                    };
                    let found = compare::run_scheme(&chunk, scheme)
                        .map_err(|e| format!("{name}: {}: {e}", baseline.name))?;
                    sum.absorb(&found);
                }
            }
            tick(chunk.len() as u64);
        }
        decompress += read_back(&store, next_id, digest, &mut back, &name, tick)?.0;
        let trained = sampling.then(|| zram_sample.train());
        if let (Some(at), Some(best)) = (zram_best, &trained) {
            match store_again(best, &mut **source, &mut chunk)
                .map_err(|e| format!("{name}: zram-best: {e}"))?
            {
                Some(result) => sums[at].absorb(&result),
                None => zram_best_missing.push(name.clone()),
            }
        }
        input_devices.finish_into(trained.as_ref(), &mut **source, &mut chunk, &mut devices)?;
        let stats = store.stats();
        inputs.push(InputReport {
            name,
            pages: stats.pages,
            orig_data_size: stats.mm.orig_data_size,
            compr_data_size: stats.mm.compr_data_size,
            mem_used_total: stats.mm.mem_used_total,
            metadata_bytes: stats.metadata_total(),
            ratio: stats.ratio(),
            effective_ratio: stats.effective_ratio(),
            skipped: source.skipped(),
        });
        totals.absorb(&stats);
    }
    let input_bytes = totals.mm.orig_data_size;
    let mb_s = |time: Duration| compare::mb_s(input_bytes, time);
    let total_time = compress.as_secs_f64().max(1e-9);
    let classes = Class::ALL
        .iter()
        .map(|class| {
            let c = totals.class(*class);
            let report = ClassReport {
                pages: c.pages,
                orig_bytes: c.orig_bytes,
                stored_bytes: c.stored_bytes,
                time_share: class_time[class.index()].as_secs_f64() / total_time,
            };
            (*class, report)
        })
        .collect();
    let baselines = baselines
        .iter()
        .zip(sums)
        .filter(|_| detailed)
        .filter(|(b, _)| !matches!(b.kind, BaselineKind::ZramBest) || zram_best_missing.is_empty())
        .map(|(baseline, scheme)| {
            let report = BaselineReport {
                compr_data_size: scheme.compr_data_size,
                ratio: scheme.ratio(),
                compress_mb_s: scheme.compress_mb_s(),
                decompress_mb_s: scheme.decompress_mb_s(),
            };
            (baseline.name.clone(), report)
        })
        .collect();
    let pages = totals.pages;
    Ok(Report {
        schema: SCHEMA,
        profile: profile.to_string(),
        inputs,
        pages,
        orig_data_size: totals.mm.orig_data_size,
        compr_data_size: totals.mm.compr_data_size,
        mem_used_total: totals.mm.mem_used_total,
        metadata_bytes: totals.metadata_total(),
        page_table_bytes: totals.metadata_bytes,
        dictionary_bytes: totals.dictionary_bytes,
        dictionaries: totals.dictionaries,
        same_pages: totals.mm.same_pages,
        huge_pages: totals.mm.huge_pages,
        ratio: totals.ratio(),
        effective_ratio: totals.effective_ratio(),
        allocator_overhead: totals.allocator_overhead(),
        verified: true,
        classes,
        baselines,
        timing: Timing {
            compress_mb_s: mb_s(compress),
            decompress_mb_s: mb_s(decompress),
            classify_ns_per_page: classify.as_nanos() as f64 / pages.max(1) as f64,
        },
        peak_rss_bytes: crate::source::peak_rss_bytes(),
        zram_best_left_out: zram_best_missing,
        zram_model: beside
            .zram
            .iter()
            .zip(&devices)
            .map(|(config, devices)| zram_model::predict(config, devices))
            .collect(),
        refused_pages: refused,
    })
}

/// What a simulation runs beside zpage's store on the same pages, and the stores' limit.
#[derive(Clone, Copy, Debug, Default)]
pub struct Beside<'a> {
    /// Single-codec baselines (with `detailed`).
    pub baselines: &'a [Baseline],
    /// zram configurations whose kernel memory is predicted.
    pub zram: &'a [ZramConfig],
    /// zram's `mem_limit` for each input's store: a write past it fails, is counted and
    /// leaves the page out, as zram's does.
    pub mem_limit: Option<u64>,
}

/// A page's share of an input's digest: its id and CRC-32, mixed (splitmix64) so that a
/// page read back under the wrong id, or wrong, changes the sum.
pub(crate) fn page_digest(id: u64, page: &Page) -> u64 {
    let mut x = id << 32 ^ u64::from(crc32fast::hash(page.bytes()));
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Reads pages `0..pages` back in batches (timed), and checks the ones present against
/// `digest` (untimed): a page the digest counts that is missing, or wrong, is an error.
/// Returns the time and the pages present.
pub(crate) fn read_back(
    store: &PageStore,
    pages: u64,
    digest: u64,
    buffer: &mut [Page],
    name: &str,
    tick: &mut dyn FnMut(u64),
) -> Result<(Duration, u64), String> {
    let mut spent = Duration::ZERO;
    let (mut found, mut present) = (0u64, 0u64);
    let mut here = vec![false; buffer.len()];
    let mut first = 0;
    while first < pages {
        let batch = (pages - first).min(buffer.len() as u64);
        let start = Instant::now();
        for ((id, out), here) in (first..first + batch).zip(buffer.iter_mut()).zip(&mut here) {
            *here = match store.read_into(id, out) {
                Ok(()) => true,
                Err(StoreError::NotFound(_)) => false,
                Err(e) => return Err(format!("{name}: read back page {id}: {e}")),
            };
        }
        spent += start.elapsed();
        for ((id, page), &here) in (first..).zip(&buffer[..batch as usize]).zip(&here) {
            if here {
                present += 1;
                found = found.wrapping_add(page_digest(id, page));
            }
        }
        tick(batch);
        first += batch;
    }
    if found != digest {
        return Err(format!(
            "{name}: verification failed: the pages read back differ from those stored"
        ));
    }
    Ok((spent, present))
}

/// The baselines as one JSON object, keyed by name in the order they were asked for.
fn in_order<S: serde::Serializer>(
    baselines: &[(String, BaselineReport)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(baselines.iter().map(|(name, report)| (name, report)))
}

/// zram's best configuration (emulated, see [`BaselineKind::ZramBest`]) on `source`:
/// one pass samples it, a second (after a rewind) stores it; `None` if the source
/// cannot be read twice.
pub fn zram_best(source: &mut dyn PageSource) -> Result<Option<SchemeResult>, String> {
    let mut sample = ZramSample::default();
    let mut chunk = Vec::with_capacity(CHUNK_PAGES);
    while source.next_chunk(&mut chunk).map_err(|e| e.to_string())? {
        sample.sample(&chunk, source.expected_pages());
    }
    store_again(&sample.train(), source, &mut chunk)
}

/// Stores `source` again (from its start) with a trained zram-best; `None` if the source
/// cannot be read twice.
pub(crate) fn store_again(
    best: &ZramBest,
    source: &mut dyn PageSource,
    chunk: &mut Vec<Page>,
) -> Result<Option<SchemeResult>, String> {
    if !source.rewind().map_err(|e| e.to_string())? {
        return Ok(None);
    }
    let mut total = SchemeResult::default();
    while source.next_chunk(chunk).map_err(|e| e.to_string())? {
        total.absorb(&best.run(chunk)?);
    }
    Ok(Some(total))
}
