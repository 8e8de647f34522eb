//! Per corpus file, side by side in one run: zpage auto (classify + encode, both profiles)
//! vs LZ4 for every page vs zstd-3 for every page vs the oracle — ratio and MB/s — then
//! criterion throughput (encode and verifying decode) of auto and LZ4 on a mix of
//! 256 pages per file.
//!
//! `cargo bench --bench corpus` (uses ../shared/corpus when present, else data/).

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use zpage::codec::{Class, CodecConfig};
use zpage::tools::compare::{Comparison, Scheme, SchemeResult, compare, run_scheme};
use zpage::{Engine, Page, Profile};

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

fn throughput(c: &mut Criterion) {
    print_table();
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
