//! zpage as a cache beside the caches embedders use: quick_cache and moka holding raw
//! 4 KiB pages, zpage (fast profile, a hot tier, evicting on full) holding them
//! compressed, each in the same byte budget, on one Zipf trace over real pages. Reports
//! each cache's hit rate and operations per second at budgets of 1/8, 1/4 and 1/2 of the
//! working set (a miss fetches the page from the working set and inserts it, as a cache
//! in front of a slower store would), and zpage's memory at the end against the budget.
//!
//! Run: `cargo bench --bench cache` (uses the development corpus beside the checkout
//! when present, otherwise the shipped sample).

mod common;

use std::sync::Arc;
use std::time::Instant;
use zpage::{OnFull, PAGE_SIZE, Page, PageStore, Profile};

/// Zipf's exponent (YCSB's).
const ZIPF_S: f64 = 0.99;
/// Operations in the trace.
const OPS: usize = 1_000_000;

/// A Zipf trace over `n` ids, the popular ones scattered over the id space (so that
/// popularity does not follow the order pages were captured in).
fn zipf_trace(n: usize, ops: usize) -> Vec<u64> {
    let mut cumulative = Vec::with_capacity(n);
    let mut sum = 0.0;
    for rank in 1..=n {
        sum += 1.0 / (rank as f64).powf(ZIPF_S);
        cumulative.push(sum);
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // A fixed permutation of ranks to ids.
    let mut ids: Vec<u64> = (0..n as u64).collect();
    for i in (1..n).rev() {
        ids.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    (0..ops)
        .map(|_| {
            let u = (next() >> 11) as f64 / (1u64 << 53) as f64 * sum;
            let rank = cumulative.partition_point(|&c| c < u).min(n - 1);
            ids[rank]
        })
        .collect()
}

/// One cache under test: a lookup that copies the page out on a hit, an insert.
trait Cache {
    fn get(&self, id: u64, out: &mut Page) -> bool;
    fn insert(&self, id: u64, page: &Page);
}

struct Zpage(PageStore);

impl Cache for Zpage {
    fn get(&self, id: u64, out: &mut Page) -> bool {
        self.0.read_into(id, out).is_ok()
    }
    fn insert(&self, id: u64, page: &Page) {
        self.0
            .insert(id, page)
            .expect("an evicting store never refuses");
    }
}

/// A cache of raw pages behind `Arc`s: a hit copies the page out, as zpage's does.
macro_rules! raw_page_cache {
    ($name:ident, $cache:ty) => {
        struct $name($cache);

        impl Cache for $name {
            fn get(&self, id: u64, out: &mut Page) -> bool {
                self.0
                    .get(&id)
                    .map(|page| out.bytes_mut().copy_from_slice(page.bytes()))
                    .is_some()
            }
            fn insert(&self, id: u64, page: &Page) {
                self.0.insert(id, Arc::new(*page));
            }
        }
    };
}

raw_page_cache!(Quick, quick_cache::sync::Cache<u64, Arc<Page>>);
raw_page_cache!(Moka, moka::sync::Cache<u64, Arc<Page>>);

/// Runs the trace; hit rate and operations per second.
fn run(cache: &dyn Cache, pages: &[Page], trace: &[u64]) -> (f64, f64) {
    let mut out = Page::zeroed();
    let mut hits = 0u64;
    let start = Instant::now();
    for &id in trace {
        if cache.get(id, &mut out) {
            hits += 1;
        } else {
            cache.insert(id, &pages[id as usize]);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    (
        hits as f64 / trace.len() as f64,
        trace.len() as f64 / seconds,
    )
}

/// A zpage store within `budget` bytes in all: an eighth as hot tier, the metadata's
/// share for `pages` ids (page table, eviction queues and ghosts, allocator
/// bookkeeping), the rest compressed.
fn zpage_store(budget: u64, pages: usize) -> PageStore {
    let hot = budget / 8;
    let metadata = pages as u64 * 80;
    PageStore::builder()
        .profile(Profile::Fast)
        .hot_budget(hot as usize)
        .mem_limit(budget - hot - metadata)
        .on_full(OnFull::Evict)
        .build()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing: run only
    // when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let pages = common::mixed(1024);
    let working_set = (pages.len() * PAGE_SIZE) as u64;
    let trace = zipf_trace(pages.len(), OPS);
    println!(
        "cache: {} real pages ({:.1} MiB), Zipf {ZIPF_S} trace of {OPS} operations",
        pages.len(),
        working_set as f64 / (1 << 20) as f64
    );
    println!("| budget | cache | hit rate | ops/s | memory at the end |");
    println!("|---|---|---|---|---|");
    for divisor in [8u64, 4, 2] {
        let budget = working_set / divisor;
        let raw_pages = budget / PAGE_SIZE as u64;
        let store = Zpage(zpage_store(budget, pages.len()));
        let quick = Quick(quick_cache::sync::Cache::new(raw_pages as usize));
        let moka = Moka(moka::sync::Cache::new(raw_pages));
        // Interleaved per budget, so a drift of the machine's speed hits all three.
        for (name, cache) in [
            ("zpage", &store as &dyn Cache),
            ("quick_cache", &quick),
            ("moka", &moka),
        ] {
            let (hit_rate, ops) = run(cache, &pages, &trace);
            let memory = if name == "zpage" {
                let stats = store.0.stats();
                let used = stats.mm.mem_used_total + stats.metadata_total() + stats.hot_bytes;
                format!(
                    "{:.2} MiB: {} pages ({} raw pages fit the budget), {:.0} KiB of it metadata",
                    used as f64 / (1 << 20) as f64,
                    stats.pages,
                    raw_pages,
                    stats.metadata_total() as f64 / 1024.0
                )
            } else {
                format!("{:.2} MiB of pages", budget as f64 / (1 << 20) as f64)
            };
            println!(
                "| 1/{divisor} ({:.1} MiB) | {name} | {:.1}% | {:.0} | {memory} |",
                budget as f64 / (1 << 20) as f64,
                hit_rate * 100.0,
                ops
            );
        }
    }
}
