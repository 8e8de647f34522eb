//! Per corpus file, side by side in one run: zpage auto (classify + encode, both profiles)
//! vs LZ4 for every page vs zstd-3 for every page vs the oracle — ratio and MB/s — then
//! criterion throughput (encode and verifying decode) of auto and LZ4 on a mix of
//! 256 pages per file.
//!
//! `cargo bench --bench corpus` (uses ../shared/corpus when present, else data/).

#[path = "../../benches/common/mod.rs"]
mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use zpage::codec::{Class, CodecConfig};
use zpage::{Engine, Page, Profile};
use zpage_tools::compare::{Comparison, Scheme, SchemeResult, compare, run_scheme};

fn print_table() {
    println!(
        "\n{:<20} {:>7} | {:>7} {:>7} {:>7} {:>7} | {:>8} {:>8} {:>8}",
        "file", "pages", "fast", "dense", "lz4", "zstd-3", "fast", "dense", "lz4"
    );
    println!(
        "{:<20} {:>7} | {:>31} | {:>26}",
        "", "", "ratio (oracle in brackets)", "compress MB/s"
    );
    let (fast, dense) = (Engine::new(Profile::Fast), Engine::new(Profile::Dense));
    let mut totals: Vec<(u64, u64, u64, u64, u64)> = Vec::new();
    let (mut all_fast, mut all_lz4) = (SchemeResult::default(), SchemeResult::default());
    for set in common::sets() {
        let f: Comparison = compare(&set.pages, &fast).expect("verified");
        let d: Comparison = compare(&set.pages, &dense).expect("verified");
        all_fast.absorb(&f.auto);
        all_lz4.absorb(&f.lz4);
        let n = f.auto.input_bytes;
        println!(
            "{:<20} {:>7} | {:>7.2} {:>7.2} {:>7.2} {:>7.2} [{:.2}] | {:>8.0} {:>8.0} {:>8.0}",
            set.name,
            f.pages,
            f.auto.ratio(),
            d.auto.ratio(),
            f.lz4.ratio(),
            f.zstd3.ratio(),
            d.oracle.ratio(),
            f.auto.compress_mb_s(),
            d.auto.compress_mb_s(),
            f.lz4.compress_mb_s()
        );
        if ["postgres", "python-numpy", "redis-mixed", "sqlite"].contains(&set.name.as_str()) {
            totals.push((
                n,
                f.auto.compr_data_size,
                d.auto.compr_data_size,
                f.lz4.compr_data_size,
                f.zstd3.compr_data_size,
            ));
        }
    }
    println!(
        "whole corpus, compress only: fast {:.0} MB/s (ratio {:.3}), lz4-all {:.0} MB/s (ratio {:.3})",
        all_fast.compress_mb_s(),
        all_fast.ratio(),
        all_lz4.compress_mb_s(),
        all_lz4.ratio()
    );
    if !totals.is_empty() {
        let sum =
            |k: fn(&(u64, u64, u64, u64, u64)) -> u64| totals.iter().map(k).sum::<u64>() as f64;
        let lz4 = sum(|t| t.3);
        println!(
            "real snapshots in total, bytes stored relative to LZ4-all: fast {:.3}x smaller, dense {:.3}x, zstd-3 {:.3}x",
            lz4 / sum(|t| t.1),
            lz4 / sum(|t| t.2),
            lz4 / sum(|t| t.4)
        );
    }
}

/// Per file, with dictionaries trained on the file's own pages: zram's best configuration
/// emulated (zstd-8, one 110 KB dictionary trained on a tenth of the pages, no allocator
/// counted) against zpage dense with a per-cluster set trained on its zstd pages (as
/// `zpage dict` trains it; the set's memory added to its bytes).
fn print_dictionary_table() {
    use zpage::codec::dictset::{DictionarySet, TrainTarget};
    use zpage_tools::compare::ZramSample;
    println!(
        "\n{:<20} | {:>9} {:>7} {:>10} | {:>9} {:>7} {:>10}   (dictionaries trained on each file)",
        "file", "zram-best", "dense", "dense+dict", "zram-best", "dense", "dense+dict"
    );
    println!("{:<20} | {:>28} | {:>28}", "", "ratio", "compress MB/s");
    let dense = Engine::new(Profile::Dense);
    let (mut all_best, mut all_dense, mut all_dict) = (0f64, 0f64, 0f64);
    let mut files = 0;
    for set in common::sets() {
        let mut sample = ZramSample::default();
        sample.sample(&set.pages, set.pages.len() as u64);
        let best = sample.train().run(&set.pages).expect("verified");
        let plain = run_scheme(&set.pages, Scheme::Engine(&dense)).expect("verified");
        let zstd: Vec<&Page> = set
            .pages
            .iter()
            .filter(|p| dense.classify(p).class == Class::Zstd)
            .collect();
        let step = zstd.len().div_ceil(1536).max(1);
        let sample: Vec<&Page> = zstd.iter().step_by(step).copied().collect();
        let target = TrainTarget {
            budget_bytes: ((plain.compr_data_size / 16) as usize).min(512 << 10),
            level: zpage::store::DICTIONARY_LEVEL,
            plain_level: dense.codec().zstd_level,
            first_id: 1,
            served_pages: zstd.len() as u64,
            max_clusters: 8,
        };
        let (with, memory) = match DictionarySet::train(&sample, target) {
            Some(dicts) => (
                run_scheme(&set.pages, Scheme::EngineWith(&dense, &dicts)).expect("verified"),
                dicts.memory_bytes() as u64,
            ),
            None => (plain.clone(), 0),
        };
        let ratio = |r: &SchemeResult, extra: u64| {
            r.input_bytes as f64 / (r.compr_data_size + extra).max(1) as f64
        };
        println!(
            "{:<20} | {:>9.2} {:>7.2} {:>10.2} | {:>9.0} {:>7.0} {:>10.0}",
            set.name,
            best.ratio(),
            plain.ratio(),
            ratio(&with, memory),
            best.compress_mb_s(),
            plain.compress_mb_s(),
            with.compress_mb_s()
        );
        all_best += best.ratio().ln();
        all_dense += plain.ratio().ln();
        all_dict += ratio(&with, memory).ln();
        files += 1;
    }
    let mean = |s: f64| (s / f64::from(files.max(1))).exp();
    println!(
        "geometric mean: zram-best {:.3}, dense {:.3}, dense with dictionaries {:.3}",
        mean(all_best),
        mean(all_dense),
        mean(all_dict)
    );
}

fn throughput(c: &mut Criterion) {
    print_table();
    print_dictionary_table();
    let pages: Vec<Page> = common::mixed(256);
    let mut g = c.benchmark_group("corpus-compress");
    g.throughput(Throughput::Bytes((pages.len() * zpage::PAGE_SIZE) as u64));
    for (name, profile) in [("auto-fast", Profile::Fast), ("auto-dense", Profile::Dense)] {
        let engine = Engine::new(profile);
        g.bench_function(name, |b| {
            b.iter(|| {
                run_scheme(&pages, Scheme::Engine(&engine))
                    .unwrap()
                    .compr_data_size
            })
        });
    }
    g.bench_function("lz4-all", |b| {
        b.iter(|| {
            run_scheme(&pages, Scheme::Fixed(Class::General, CodecConfig::FAST))
                .unwrap()
                .compr_data_size
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_millis(500));
    targets = throughput
}
criterion_main!(benches);
