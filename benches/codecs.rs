//! Codec and classifier benches: per-codec MB/s, classify ns/page, and per corpus file
//! auto (classify + encode) vs LZ4-all vs zstd-3-all vs oracle, ratio and MB/s.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use zpage::classify::features;
use zpage::codec::{self, Class, CodecConfig};
use zpage::{Engine, Page, Profile};

/// Classification per page. `warm`: 4 pages of each corpus file, few enough to stay in
/// cache, as a page being compressed was just written or faulted; `cold`: 64 pages of
/// each file (2.5 MiB on the shared corpus) streamed from memory, where each sampled cache
/// line is a memory round trip.
fn classify(c: &mut Criterion) {
    let engine = Engine::new(Profile::Dense);
    let mut g = c.benchmark_group("classify");
    for (name, pages) in [("warm", common::mixed(4)), ("cold", common::mixed(64))] {
        g.throughput(Throughput::Elements(pages.len() as u64));
        g.bench_function(format!("{name}/features"), |b| {
            b.iter(|| {
                pages
                    .iter()
                    .map(|p| features::extract(black_box(p))[0])
                    .sum::<f32>()
            })
        });
        g.bench_function(format!("{name}/features+tree"), |b| {
            b.iter(|| {
                pages
                    .iter()
                    .filter(|p| engine.classify(black_box(p)).class == Class::Delta)
                    .count()
            })
        });
    }
    g.finish();
}

fn codecs(c: &mut Criterion) {
    let pages = common::mixed(32);
    let bytes = (pages.len() * zpage::PAGE_SIZE) as u64;
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(bytes));
    for (name, class, config) in [
        ("words", Class::Words, CodecConfig::FAST),
        ("lz4", Class::General, CodecConfig::FAST),
        ("zstd-3", Class::Zstd, CodecConfig::DENSE),
        ("delta-lz4", Class::Delta, CodecConfig::FAST),
        ("delta-zstd", Class::Delta, CodecConfig::DENSE),
        ("mixed", Class::Mixed, CodecConfig::DENSE),
    ] {
        let mut out = Vec::new();
        g.bench_function(format!("{name}/compress"), |b| {
            b.iter(|| {
                pages
                    .iter()
                    .map(|p| {
                        codec::encode(class, black_box(p), &config, &mut out);
                        out.len()
                    })
                    .sum::<usize>()
            })
        });
        let stored: Vec<Vec<u8>> = pages
            .iter()
            .map(|p| {
                let mut o = Vec::new();
                codec::encode(class, p, &config, &mut o);
                o
            })
            .collect();
        let mut page = Page::zeroed();
        g.bench_function(format!("{name}/decompress"), |b| {
            b.iter(|| {
                stored
                    .iter()
                    .map(|s| codec::decode(black_box(s), &mut page).is_ok() as usize)
                    .sum::<usize>()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = classify, codecs
}
criterion_main!(benches);
