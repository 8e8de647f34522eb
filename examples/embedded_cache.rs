//! An application that keeps its working data in a `PageStore`: a table of sensor
//! readings, 64 records to a 4 KiB page, cached compressed with a small hot tier and a
//! memory limit. Queries look records up by id through `with_page`, several threads at
//! once; the application never sees a codec.
//!
//! Run: `cargo run --release --example embedded_cache`

use bytemuck::{Pod, Zeroable};
use std::time::Instant;
use zpage::{PAGE_SIZE, Page, PageStore, Profile};

/// One reading: 64 bytes, so 64 to a page.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
struct Reading {
    id: u64,
    timestamp_ms: u64,
    sensor: u32,
    status: u32,
    temperature: f64,
    pressure: f64,
    label: [u8; 24],
}

const PER_PAGE: usize = PAGE_SIZE / size_of::<Reading>();
const READINGS: u64 = 1 << 20;

fn reading(id: u64) -> Reading {
    let sensor = (id % 97) as u32;
    let mut label = [0u8; 24];
    let text = format!("site-{:02}/rack-{}", sensor % 13, sensor % 7);
    label[..text.len()].copy_from_slice(text.as_bytes());
    Reading {
        id,
        timestamp_ms: 1_700_000_000_000 + id * 250,
        sensor,
        status: u32::from(id.is_multiple_of(1000)),
        temperature: 20.0 + (id as f64 / 5000.0).sin() * 3.0,
        pressure: 1013.25 + (id % 17) as f64 * 0.5,
        label,
    }
}

fn main() -> Result<(), zpage::StoreError> {
    let pages = READINGS / PER_PAGE as u64;
    let store = PageStore::builder()
        .profile(Profile::Fast)
        .hot_budget(4 << 20)
        .mem_limit(48 << 20)
        .build();

    let start = Instant::now();
    let mut page = Page::zeroed();
    for page_id in 0..pages {
        let records: &mut [Reading] = bytemuck::cast_slice_mut(page.bytes_mut());
        for (slot, record) in records.iter_mut().enumerate() {
            *record = reading(page_id * PER_PAGE as u64 + slot as u64);
        }
        store.insert(page_id, &page)?;
    }
    store.flush()?;
    let load = start.elapsed();

    // Queries: recent readings are hot (a skewed mix), run on two threads.
    let start = Instant::now();
    let lookups = 200_000u64;
    let found = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2u64)
            .map(|thread| {
                let store = &store;
                scope.spawn(move || {
                    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ thread;
                    let mut matched = 0u64;
                    for _ in 0..lookups / 2 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // 90% of lookups in the newest 1/16 of the table.
                        let span = if x % 10 < 9 { READINGS / 16 } else { READINGS };
                        let id = READINGS - 1 - (x >> 8) % span;
                        let record = store.with_page(id / PER_PAGE as u64, |page| {
                            let records: &[Reading] = bytemuck::cast_slice(page.bytes());
                            records[id as usize % PER_PAGE]
                        });
                        matched += u64::from(record.is_ok_and(|r| r == reading(id)));
                    }
                    matched
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum::<u64>()
    });
    let query = start.elapsed();
    assert_eq!(found, lookups, "every record comes back exactly");

    let stats = store.stats();
    println!(
        "{} readings in {} pages ({} MiB), loaded in {:.2?}",
        READINGS,
        pages,
        (pages * PAGE_SIZE as u64) >> 20,
        load
    );
    println!(
        "memory: {:.1} MiB compressed + {:.1} MiB hot + {:.2} MiB metadata (ratio {:.2}, limit {} MiB)",
        stats.mm.mem_used_total as f64 / (1 << 20) as f64,
        stats.hot_bytes as f64 / (1 << 20) as f64,
        (stats.metadata_bytes + stats.bookkeeping_bytes) as f64 / (1 << 20) as f64,
        stats.ratio(),
        stats.mm.mem_limit >> 20
    );
    println!(
        "{} lookups on 2 threads in {:.2?} ({:.0} ns each); hot tier hit rate {:.1}%",
        lookups,
        query,
        query.as_nanos() as f64 / lookups as f64,
        100.0 * stats.hot_hits as f64 / (stats.hot_hits + stats.hot_misses).max(1) as f64
    );
    for (class, c) in &stats.classes {
        if c.pages > 0 {
            println!(
                "  {class:>14}: {:>6} pages, {:>9} bytes",
                c.pages, c.stored_bytes
            );
        }
    }
    println!("mm_stat: {}", stats.mm);
    Ok(())
}
