//! Region benches (custom harness: percentiles, which criterion does not report):
//! fault service latency p50/p99 for zero pages and for compressed pages, as seen by the
//! faulting thread (the round trip to the handler thread included), and scan throughput
//! over a region at 25% residency against plain memory. Prints where the two threads ran.

#[path = "../tests/common/mod.rs"]
mod common;

use common::region;
use std::hint::black_box;
use std::time::{Duration, Instant};
use zpage::PAGE_SIZE;

/// Compressible page content (numbers and text, about 4x with the fast profile).
fn fill(page: &mut [u8], index: usize) {
    for (i, chunk) in page.chunks_exact_mut(16).enumerate() {
        let n = (index * 256 + i) as u64;
        chunk[..8].copy_from_slice(&n.to_le_bytes());
        chunk[8..].copy_from_slice(b"row-data");
    }
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}

/// The CPU a thread last ran on (field 39 of its stat).
fn cpu_of(stat_path: &str) -> String {
    std::fs::read_to_string(stat_path)
        .ok()
        .and_then(|s| {
            let after_comm = &s[s.rfind(')')? + 2..];
            after_comm.split_whitespace().nth(36).map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}

fn handler_cpu() -> String {
    let tasks = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten();
    for task in tasks {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() == "zpage-region" {
            return cpu_of(task.path().join("stat").to_str().unwrap_or(""));
        }
    }
    "?".into()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let quick = std::env::args().any(|a| a == "--test");
    let pages = if quick { 1024 } else { 8192 };

    // Zero pages: first touches of a region with room for all of them.
    let Some(zero) = region(pages, pages) else {
        return;
    };
    let memory = zero.as_slice();
    let mut samples = Vec::with_capacity(pages);
    for page in memory.chunks_exact(PAGE_SIZE) {
        let start = Instant::now();
        black_box(page[0]);
        samples.push(start.elapsed());
    }
    let (p50, p99) = percentiles(samples);
    println!(
        "zero-page fault (read, first touch): p50 {p50:.2?} p99 {p99:.2?}  [faulting thread on CPU {}, handler on CPU {}]",
        cpu_of("/proc/thread-self/stat"),
        handler_cpu()
    );
    drop(zero);

    // Compressed pages: fill, so all but the resident quarter are evicted, then touch
    // evicted pages one by one (each fault also evicts one page to make room).
    let Some(mut compressed) = region(pages, pages / 4) else {
        return;
    };
    let memory = compressed.as_mut_slice();
    for (index, page) in memory.chunks_exact_mut(PAGE_SIZE).enumerate() {
        fill(page, index);
    }
    let mut samples = Vec::with_capacity(pages);
    for page in memory.chunks_exact(PAGE_SIZE).take(pages * 3 / 4) {
        let start = Instant::now();
        black_box(page[8]);
        samples.push(start.elapsed());
    }
    let (p50, p99) = percentiles(samples);
    let stats = compressed.stats();
    println!(
        "compressed-page fault (read: decode + map; room was made after the previous fault): p50 {p50:.2?} p99 {p99:.2?}  [faulting thread on CPU {}, handler on CPU {}; store ratio {:.2}]",
        cpu_of("/proc/thread-self/stat"),
        handler_cpu(),
        stats.store.ratio()
    );

    // Scan throughput at 25% residency vs plain memory: sum every word, 3 passes.
    let scan = |memory: &[u8]| {
        let start = Instant::now();
        let mut sum = 0u64;
        for _ in 0..3 {
            for word in memory.chunks_exact(8) {
                sum = sum.wrapping_add(u64::from_le_bytes(word.try_into().unwrap()));
            }
        }
        black_box(sum);
        (3 * memory.len()) as f64 / 1e6 / start.elapsed().as_secs_f64()
    };
    let region_mb_s = scan(compressed.as_slice());
    let mut plain = vec![0u8; pages * PAGE_SIZE];
    for (index, page) in plain.chunks_exact_mut(PAGE_SIZE).enumerate() {
        fill(page, index);
    }
    let plain_mb_s = scan(&plain);
    println!(
        "scan at 25% residency: {region_mb_s:.0} MB/s (plain memory {plain_mb_s:.0} MB/s, {:.1}x slower)",
        plain_mb_s / region_mb_s
    );
}
