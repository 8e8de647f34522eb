//! The tiers: the idle pass (fast-stored pages re-encoded dense, with and without
//! dictionaries) and writeback to a backing file, as throughput over the pages they take;
//! the latency of a read of a recompressed, a mixed (cold-pass) and a written-back
//! page (criterion's
//! mean, plus percentiles over single reads printed beside it); and the latency of warm
//! reads alone and beside a thread decoding cold pages and one inserting
//! (`reads-under-load`, printed). The backing file lives in
//! a temporary directory, so its reads come from the page cache: a device adds its own
//! latency to them.

mod common;
// Shared with the tests, which use all of it.
#[cfg(feature = "redis")]
#[allow(dead_code)]
#[path = "../tests/common/redis_server.rs"]
mod redis_server;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zpage::codec::dictset::DictionarySet;
use zpage::store::{Backing, BackingFile, DEFAULT_UNIT_PAGES, Selection};
use zpage::{PAGE_SIZE, Page, PageStore, Profile};

/// 256 pages of each corpus file (all of the shipped sample when the corpus is absent).
fn pages() -> Vec<Page> {
    common::mixed(256)
}

/// Words in, dense when idle; a cold pass packs `unit_pages` pages a unit (1: each page
/// alone, mixed where smaller).
fn tiered(pages: &[Page], dictionaries: Option<&DictionarySet>, unit_pages: usize) -> PageStore {
    let mut builder = PageStore::builder()
        .profile(Profile::Words)
        .idle_profile(Profile::Dense)
        .cold_unit_pages(unit_pages);
    if let Some(set) = dictionaries {
        builder = builder.dictionaries(set.clone());
    }
    common::filled(builder, pages)
}

/// Dictionaries trained once on a dense store of the pages, as a user would load a file.
fn trained(pages: &[Page]) -> Option<DictionarySet> {
    common::filled(PageStore::builder().profile(Profile::Dense), pages)
        .train_dictionaries()
        .unwrap()
        .map(|set| (*set).clone())
}

fn idle_pass_and_writeback(c: &mut Criterion) {
    let pages = pages();
    let bytes = (pages.len() * PAGE_SIZE) as u64;
    let set = trained(&pages);
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("tiers");
    g.throughput(Throughput::Bytes(bytes));
    for (name, dicts) in [("plain", None), ("dictionaries", set.as_ref())] {
        g.bench_function(format!("idle-pass/{name}"), |b| {
            b.iter_batched(
                || tiered(&pages, dicts, DEFAULT_UNIT_PAGES),
                |store| {
                    black_box(store.recompress_selected(Selection::all()));
                    store
                },
                BatchSize::LargeInput,
            )
        });
    }
    let path = dir.path().join("backing");
    for (name, open) in backings(&path, pages.len()) {
        g.bench_function(format!("writeback/{name}"), |b| {
            b.iter_batched(
                || backed(&pages, open()),
                |store| {
                    black_box(store.writeback(Selection::all()).unwrap());
                    store
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

/// A backing store's name and how to open one with room for `pages` records.
type Open<'a> = Box<dyn Fn() -> Arc<dyn Backing> + 'a>;

/// The backing stores measured: a file at `path`, and (feature `redis`) a Valkey/Redis
/// server of the bench's own on loopback, where one is installed.
fn backings(path: &std::path::Path, pages: usize) -> Vec<(&'static str, Open<'_>)> {
    let bytes = (pages * PAGE_SIZE) as u64;
    #[allow(unused_mut)]
    let mut all: Vec<(&'static str, Open<'_>)> = vec![(
        "file",
        Box::new(move || Arc::new(BackingFile::open(path, bytes).unwrap())),
    )];
    #[cfg(feature = "redis")]
    match redis_server::Server::start(&[]) {
        Some(server) => {
            let server = Arc::new(server);
            all.push((
                "redis",
                Box::new(move || {
                    let options = zpage::RedisOptions::new(pages as u64);
                    Arc::new(zpage::RedisBacking::open(&server.url(), options).unwrap())
                }),
            ));
        }
        None => eprintln!("no valkey-server or redis-server: the redis backing is not measured"),
    }
    all
}

/// A fast store with `backing`, holding `pages` (none written back yet).
fn backed(pages: &[Page], backing: Arc<dyn Backing>) -> PageStore {
    let builder = PageStore::builder().profile(Profile::Fast).backing(backing);
    common::filled(builder, pages)
}

/// Reads of single pages at spread-out ids: criterion's mean per read, then percentiles
/// of 20,000 single reads (each timed alone).
fn read_latency(c: &mut Criterion) {
    let pages = pages();
    let set = trained(&pages);
    let recompressed = tiered(&pages, set.as_ref(), DEFAULT_UNIT_PAGES);
    recompressed.recompress_selected(Selection::all());
    let dir = tempfile::tempdir().unwrap();
    // The openers own the servers: kept until the reads are done.
    let path = dir.path().join("backing");
    let openers = backings(&path, pages.len());
    let stores: Vec<(&str, PageStore)> = openers
        .iter()
        .map(|(name, open)| {
            let store = backed(&pages, open());
            store.writeback(Selection::all()).unwrap();
            (*name, store)
        })
        .collect();
    let cold = tiered(&pages, set.as_ref(), 1);
    cold.recompress_selected(Selection::all().level(16));
    let all: Vec<u64> = (0..pages.len() as u64).collect();
    let mixed: Vec<u64> = all
        .iter()
        .copied()
        .filter(|&id| cold.stored_class(id) == Some(zpage::Class::Mixed))
        .collect();
    assert!(!mixed.is_empty(), "the cold pass stores some pages mixed");
    let units = tiered(&pages, set.as_ref(), DEFAULT_UNIT_PAGES);
    units.recompress_selected(Selection::all());
    units.recompress_selected(Selection::all().level(16));
    let in_units: Vec<u64> = all
        .iter()
        .copied()
        .filter(|&id| units.stored_class(id) == Some(zpage::Class::Zstd))
        .collect();
    assert!(units.stats().units.pages > 0, "the cold pass packs units");
    // The whole life cycle: units, then the coldest pass mixing those where it pays. Its
    // reads are what a cold page costs as the store keeps it (units and mixed pages).
    let coldest = tiered(&pages, set.as_ref(), DEFAULT_UNIT_PAGES);
    coldest.recompress_selected(Selection::all());
    coldest.recompress_selected(Selection::all().level(16));
    coldest.recompress_selected(Selection::all().mixed());
    let mixed_share = all
        .iter()
        .filter(|&&id| coldest.stored_class(id) == Some(zpage::Class::Mixed))
        .count() as f64
        / all.len() as f64;
    eprintln!(
        "tiers-read/coldest: {:.0}% of the pages mixed, {} in units",
        100.0 * mixed_share,
        coldest.stats().units.pages
    );
    let mut g = c.benchmark_group("tiers-read");
    // Reads jump 7919 pages (a unit decoded for every read), or scan in order.
    let (jump, scan) = (7919, 1);
    let mut cases = vec![
        (
            "recompressed".to_string(),
            &recompressed,
            &all,
            20_000u64,
            jump,
        ),
        ("mixed".to_string(), &cold, &mixed, 2_000, jump),
        ("unit".to_string(), &units, &in_units, 20_000, jump),
        ("unit-scan".to_string(), &units, &in_units, 20_000, scan),
        ("coldest".to_string(), &coldest, &all, 20_000, jump),
    ];
    for (name, store) in &stores {
        cases.push((format!("written-back/{name}"), store, &all, 20_000, jump));
    }
    for (name, store, ids, reads, stride) in cases {
        let mut page = Page::zeroed();
        let n = ids.len() as u64;
        let mut at = 0u64;
        g.bench_function(&name, |b| {
            b.iter(|| {
                at = (at + stride) % n;
                store.read_into(ids[at as usize], &mut page).unwrap();
            })
        });
        let mut times: Vec<Duration> = (0..reads)
            .map(|i| {
                let start = Instant::now();
                store
                    .read_into(ids[(i * stride % n) as usize], &mut page)
                    .unwrap();
                start.elapsed()
            })
            .collect();
        times.sort_unstable();
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        eprintln!(
            "tiers-read/{name}: p50 {:?} p99 {:?} p99.9 {:?} (single reads)",
            at(0.5),
            at(0.99),
            at(0.999)
        );
    }
    g.finish();
}

/// Percentiles of single reads of warm pages (word forms, just inserted) over `spell`,
/// while `load` runs on other threads of the same store.
fn warm_reads(store: &PageStore, warm: &[u64], spell: Duration) -> Vec<Duration> {
    let mut page = Page::zeroed();
    let mut times = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    let mut at = 0usize;
    while start.elapsed() < spell {
        at = (at + 7919) % warm.len();
        let t = Instant::now();
        store.read_into(warm[at], &mut page).unwrap();
        times.push(t.elapsed());
    }
    times.sort_unstable();
    times
}

/// A warm page's read does not wait behind a cold page's decode: the p99.9 of reads of
/// warm pages alone, then while one thread reads mixed (cold) pages in a loop and another
/// inserts a page every millisecond into the same store; interleaved, twice each.
fn reads_under_load(_: &mut Criterion) {
    const WARM_FROM: u64 = 1 << 20;
    const NEW_FROM: u64 = 2 << 20;
    let pages = pages();
    let set = trained(&pages);
    let store = Arc::new(tiered(&pages, set.as_ref(), 1));
    store.recompress_selected(Selection::all().level(16));
    let mixed: Vec<u64> = (0..pages.len() as u64)
        .filter(|&id| store.stored_class(id) == Some(zpage::Class::Mixed))
        .collect();
    assert!(!mixed.is_empty(), "the cold pass stores some pages mixed");
    let warm: Vec<u64> = (WARM_FROM..WARM_FROM + pages.len() as u64).collect();
    for (&id, page) in warm.iter().zip(&pages) {
        store.insert(id, page).unwrap();
    }
    let spell = Duration::from_secs(3);
    let quantile = |times: &[Duration], q: f64| {
        times[((times.len() as f64 * q) as usize).min(times.len() - 1)]
    };
    for round in 0..2 {
        let alone = warm_reads(&store, &warm, spell);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cold_reader = {
            let (store, stop, mixed) = (store.clone(), stop.clone(), mixed.clone());
            std::thread::spawn(move || {
                let (mut page, mut n) = (Page::zeroed(), 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    store
                        .read_into(mixed[n as usize % mixed.len()], &mut page)
                        .unwrap();
                    n += 1;
                }
                n
            })
        };
        let inserter = {
            let (store, stop, pages) = (store.clone(), stop.clone(), pages.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let page = &pages[n as usize % pages.len()];
                    store
                        .insert(NEW_FROM + round * 1_000_000 + n, page)
                        .unwrap();
                    n += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                n
            })
        };
        let loaded = warm_reads(&store, &warm, spell);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (cold, inserted) = (cold_reader.join().unwrap(), inserter.join().unwrap());
        eprintln!(
            "reads-under-load (round {round}): warm p50 {:?} p99 {:?} p99.9 {:?} alone; \
             p50 {:?} p99 {:?} p99.9 {:?} beside {cold} mixed reads and {inserted} inserts \
             ({:.1}x)",
            quantile(&alone, 0.5),
            quantile(&alone, 0.99),
            quantile(&alone, 0.999),
            quantile(&loaded, 0.5),
            quantile(&loaded, 0.99),
            quantile(&loaded, 0.999),
            quantile(&loaded, 0.999).as_secs_f64() / quantile(&alone, 0.999).as_secs_f64()
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3));
    targets = idle_pass_and_writeback, read_latency, reads_under_load
}
criterion_main!(benches);
