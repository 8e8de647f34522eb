//! PageStore benches: insert and read throughput on one thread; read scaling at 1 and 2
//! threads; a hot-tier hit against a plain 4 KiB copy; a mixed read/write workload with
//! Zipf-distributed ids and a hot tier of 10% of the pages.

mod common;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};
use zpage::{PAGE_SIZE, Page, PageStore, Profile};

/// 256 pages of each corpus file (all of the shipped sample when the corpus is absent).
fn pages() -> Vec<Page> {
    common::mixed(256)
}

fn filled_store(pages: &[Page], profile: Profile, hot_budget: usize) -> PageStore {
    let builder = PageStore::builder().profile(profile).hot_budget(hot_budget);
    common::filled(builder, pages)
}

fn insert_and_read(c: &mut Criterion) {
    let pages = pages();
    let bytes = (pages.len() * PAGE_SIZE) as u64;
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Bytes(bytes));
    for profile in Profile::ALL {
        g.bench_function(format!("insert/{profile:?}"), |b| {
            b.iter_batched(
                || PageStore::builder().profile(profile).build(),
                |store| {
                    for (id, page) in pages.iter().enumerate() {
                        store.insert(id as u64, page).unwrap();
                    }
                    store
                },
                BatchSize::LargeInput,
            )
        });
        let store = filled_store(&pages, profile, 0);
        for threads in [1, 2] {
            g.bench_function(format!("read/{profile:?}/{threads}-threads"), |b| {
                b.iter_custom(|iters| read_all(&store, pages.len(), threads, iters))
            });
        }
    }
    g.finish();
}

/// Reads every page `iters` times, the ids split between `threads` threads; the
/// throughput is per pass over all pages, so 2 threads at twice the speed halve the time.
fn read_all(store: &PageStore, pages: usize, threads: usize, iters: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            scope.spawn(move || {
                let mut out = Page::zeroed();
                for _ in 0..iters {
                    for id in (thread..pages).step_by(threads) {
                        store.read_into(id as u64, &mut out).unwrap();
                    }
                }
                black_box(&out);
            });
        }
    });
    start.elapsed()
}

fn hot_hit(c: &mut Criterion) {
    let pages: Vec<Page> = pages().into_iter().take(64).collect();
    let store = filled_store(&pages, Profile::Fast, pages.len() * PAGE_SIZE);
    let mut g = c.benchmark_group("hot-hit");
    g.throughput(Throughput::Elements(1));
    let mut out = Page::zeroed();
    g.bench_function("memcpy-4KiB", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % pages.len();
            out.bytes_mut()
                .copy_from_slice(black_box(&pages[i]).bytes());
            black_box(&out);
        })
    });
    g.bench_function("store-read", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % pages.len();
            store.read_into(black_box(i as u64), &mut out).unwrap();
            black_box(&out);
        })
    });
    g.finish();
}

/// Zipf(s) over `n` ids by inverse CDF, deterministic.
struct Zipf {
    cdf: Vec<f64>,
    state: u64,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                total += 1.0 / (k as f64).powf(s);
                total
            })
            .collect();
        cdf.iter_mut().for_each(|p| *p /= total);
        Zipf {
            cdf,
            state: 0x2545_F491_4F6C_DD1D,
        }
    }

    fn sample(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let u = (self.state >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf.partition_point(|&p| p < u) as u64
    }
}

fn mixed_zipf(c: &mut Criterion) {
    let pages = pages();
    let n = pages.len();
    let store = filled_store(&pages, Profile::Fast, n / 10 * PAGE_SIZE);
    let mut zipf = Zipf::new(n, 0.99);
    // Ranks are scattered over the ids, so the hot ids are not one block.
    let ids: Vec<u64> = (0..n as u64).map(|k| k * 7919 % n as u64).collect();
    let mut g = c.benchmark_group("mixed");
    const OPS: u64 = 1024;
    g.throughput(Throughput::Elements(OPS));
    g.bench_function("zipf-0.99/90%-read/hot-10%", |b| {
        let mut out = Page::zeroed();
        b.iter(|| {
            for op in 0..OPS {
                let id = ids[zipf.sample() as usize];
                if op % 10 == 9 {
                    store
                        .insert(id, &pages[(id as usize + op as usize) % n])
                        .unwrap();
                } else {
                    // A write may have put another page's content there: any page is fine.
                    store.read_into(id, &mut out).unwrap();
                }
            }
            black_box(&out);
        })
    });
    g.finish();
    let stats = store.stats();
    let lookups = stats.hot_hits + stats.hot_misses;
    eprintln!(
        "mixed: hot hit rate {:.1}% over {lookups} reads",
        100.0 * stats.hot_hits as f64 / lookups.max(1) as f64
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = insert_and_read, hot_hit, mixed_zipf
}
criterion_main!(benches);
