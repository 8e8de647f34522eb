//! PageStore behaviour: round trips, statistics, hot tier, memory limit, compaction, and a
//! multi-threaded stress run checked against a reference model.

mod common;

use common::{Rng, sample_pages};
use std::collections::HashMap;
use std::sync::Arc;
use zpage::store::{SLAB_BYTES, StoreError};
use zpage::{Class, PAGE_SIZE, Page, PageStore, Profile, Stats};

/// A page whose content is a function of (id, version), in every class zpage has.
/// Pages other than zero/same carry id and version in their first two words, so any
/// reader can tell which write it is looking at.
fn make_page(id: u64, version: u64, samples: &[Page]) -> Page {
    let mut rng = Rng(id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ version.wrapping_add(1) << 20 | 1);
    let mut page = match (id + version) % 6 {
        0 => return Page::zeroed(),
        1 => return *Page::filled(same_word(id)),
        2 | 3 => samples[rng.below(samples.len() as u64) as usize],
        4 => {
            let mut p = Page::zeroed();
            let (base, step) = (rng.next() >> 8, rng.below(1000));
            for (i, w) in p.words_mut().iter_mut().enumerate() {
                *w = base + i as u64 * step + rng.below(16);
            }
            p
        }
        _ => {
            let mut p = Page::zeroed();
            p.words_mut().iter_mut().for_each(|w| *w = rng.next());
            p
        }
    };
    page.words_mut()[0] = id;
    page.words_mut()[1] = version;
    page
}

fn same_word(id: u64) -> u64 {
    id << 16 | 0xabcd
}

/// Whether `page` is some write of `id` (for readers racing with writers).
fn is_some_version_of(id: u64, page: &Page, samples: &[Page]) -> bool {
    match page.same_filled_word() {
        Some(0) => true,
        Some(word) => word == same_word(id),
        None => page.words()[0] == id && *page == make_page(id, page.words()[1], samples),
    }
}

fn samples() -> Vec<Page> {
    sample_pages().into_iter().step_by(7).collect()
}

#[test]
fn every_sample_page_round_trips_with_zram_accounting() {
    let pages = sample_pages();
    let store = PageStore::new();
    for (id, page) in pages.iter().enumerate() {
        store.insert(id as u64, page).unwrap();
    }
    let mut out = Page::zeroed();
    for (id, page) in pages.iter().enumerate() {
        store.read_into(id as u64, &mut out).unwrap();
        assert!(out == *page, "page {id}");
    }
    let stats = store.stats();
    assert_eq!(stats.pages, pages.len() as u64);
    assert_eq!(stats.mm.orig_data_size, (pages.len() * PAGE_SIZE) as u64);
    let class_pages: u64 = stats.classes.values().map(|c| c.pages).sum();
    let class_bytes: u64 = stats.classes.values().map(|c| c.stored_bytes).sum();
    assert_eq!(class_pages, pages.len() as u64);
    assert_eq!(class_bytes, stats.mm.compr_data_size);
    assert_eq!(
        stats.mm.same_pages,
        stats.class(Class::Zero).pages + stats.class(Class::Same).pages
    );
    assert_eq!(
        stats.mm.huge_pages,
        stats.class(Class::Incompressible).pages
    );
    assert!(stats.ratio() > 2.0, "sample compresses: {}", stats.ratio());
    assert!(
        stats.allocator_overhead() <= 0.03,
        "overhead {:.4}",
        stats.allocator_overhead()
    );
    assert_eq!(stats.mm.to_string().split(' ').count(), 9);
    // Read without locks, the counters agree with the snapshot when nothing moves.
    assert_eq!(store.mm_stat(), stats.mm);
}

/// Per-page metadata on a store the size of a corpus snapshot (16 MiB, dense ids), with
/// the most shards a store can have (the sparsest blocks): under zram's 24 bytes a slot
/// when it tracks access times too.
#[test]
fn metadata_is_at_most_eighteen_bytes_a_page() {
    let pages = sample_pages();
    let store = PageStore::builder().shards(64).build();
    for id in 0..4096 {
        store.insert(id, &pages[id as usize % pages.len()]).unwrap();
    }
    let stats = store.stats();
    let per_page = stats.metadata_bytes as f64 / stats.pages as f64;
    assert!(per_page <= 18.0, "metadata {per_page:.2} B/page");
}

#[test]
fn overwrite_remove_ids_contains() {
    let samples = samples();
    let store = PageStore::builder().shards(4).build();
    for id in 0..200 {
        store
            .insert(id * 3, &make_page(id * 3, 0, &samples))
            .unwrap();
    }
    for id in 0..200 {
        store
            .insert(id * 3, &make_page(id * 3, 1, &samples))
            .unwrap();
    }
    for id in (0..200).step_by(2) {
        assert!(store.discard(id * 3));
        assert!(!store.discard(id * 3));
    }
    assert_eq!(store.len(), 100);
    let mut ids: Vec<u64> = store.ids().collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..200)
            .filter(|i| i % 2 == 1)
            .map(|i| i * 3)
            .collect::<Vec<_>>()
    );
    for id in 0..600 {
        let expected = (id % 6 == 3).then(|| make_page(id, 1, &samples));
        assert_eq!(store.contains(id), expected.is_some());
        match (store.read(id), expected) {
            (Ok(page), Some(expected)) => assert!(*page == expected, "page {id}"),
            (Err(StoreError::NotFound(missing)), None) => assert_eq!(missing, id),
            (other, expected) => panic!("page {id}: {other:?} vs {}", expected.is_some()),
        }
    }
    let words = store
        .with_page(9, |page| page.words()[..2].to_vec())
        .unwrap();
    assert_eq!(words, vec![9, 1]);
    let stats = store.stats();
    assert_eq!(stats.pages, 100);
    assert_eq!(stats.mm.orig_data_size, 100 * PAGE_SIZE as u64);
    for id in store.ids() {
        store.discard(id);
    }
    let empty = store.stats();
    assert_eq!(
        (
            empty.mm.compr_data_size,
            empty.mm.mem_used_total,
            empty.mm.orig_data_size
        ),
        (0, 0, 0),
        "an empty store gives all its memory back"
    );
}

#[test]
fn hot_tier_counts_hits_and_compresses_dirty_pages_on_eviction() {
    let samples = samples();
    let store = PageStore::builder()
        .shards(1)
        .hot_budget(8 * PAGE_SIZE)
        .build();
    // Non-trivial pages only (ids where make_page is not zero/same).
    let ids: Vec<u64> = (0..64).filter(|id| id % 6 >= 2).collect();
    for &id in &ids {
        store.insert(id, &make_page(id, 0, &samples)).unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.hot_pages, 8);
    assert_eq!(stats.hot_dirty_pages, 8);
    assert_eq!(stats.hot_bytes, 8 * PAGE_SIZE as u64);
    // Dirty copies count as stored data (and in the effective ratio's memory).
    assert_eq!(stats.mm.orig_data_size, (ids.len() * PAGE_SIZE) as u64);
    let newest = ids[ids.len() - 1];
    assert_eq!(
        store.stored_class(newest),
        Some(
            store
                .engine()
                .classify(&make_page(newest, 0, &samples))
                .class
        )
    );
    // The 8 most recent are hot: reading them hits.
    for &id in &ids[ids.len() - 8..] {
        assert!(*store.read(id).unwrap() == make_page(id, 0, &samples));
    }
    assert_eq!(store.stats().hot_hits, 8);
    // The oldest are compressed: reading them misses; a read never encodes, so they do
    // not displace the dirty copies.
    for &id in &ids[..4] {
        assert!(*store.read(id).unwrap() == make_page(id, 0, &samples));
    }
    let stats = store.stats();
    assert_eq!((stats.hot_misses, stats.hot_pages), (4, 8));
    assert_eq!(stats.hot_dirty_pages, 8);
    store.flush().unwrap();
    let stats = store.stats();
    assert_eq!(stats.hot_dirty_pages, 0);
    assert_eq!(stats.mm.orig_data_size, (ids.len() * PAGE_SIZE) as u64);
    // Clean now: misses displace them.
    for &id in &ids[..4] {
        assert!(*store.read(id).unwrap() == make_page(id, 0, &samples));
    }
    let stats = store.stats();
    assert_eq!((stats.hot_misses, stats.hot_pages), (8, 8));
    for &id in &ids[..4] {
        assert!(*store.read(id).unwrap() == make_page(id, 0, &samples));
    }
    assert_eq!(store.stats().hot_hits, 12, "the misses filled the tier");
    for &id in &ids {
        assert!(*store.read(id).unwrap() == make_page(id, 0, &samples));
    }
}

#[test]
fn memory_limit_is_never_exceeded_and_a_refused_insert_changes_nothing() {
    let samples = samples();
    let limit = 64 * 1024;
    for hot in [0, 4 * PAGE_SIZE] {
        let store = PageStore::builder()
            .shards(2)
            .hot_budget(hot)
            .mem_limit(limit)
            .build();
        let mut reference: HashMap<u64, Page> = HashMap::new();
        let mut refused = 0;
        for step in 0..400u64 {
            let id = step % 150;
            let page = make_page(id, step, &samples);
            match store.insert(id, &page) {
                Ok(()) => {
                    reference.insert(id, page);
                }
                Err(StoreError::MemoryLimit { needed, limit: l }) => {
                    assert!(needed > l && l == limit);
                    refused += 1;
                }
                Err(other) => panic!("{other}"),
            }
            let stats = store.stats();
            assert!(stats.mm.mem_used_total <= limit && stats.mm.mem_used_max <= limit);
        }
        assert!(refused > 0, "the limit was reached (hot {hot})");
        for (id, page) in &reference {
            assert!(*store.read(*id).unwrap() == *page, "page {id} (hot {hot})");
        }
        assert_eq!(store.len(), reference.len());
    }
}

/// A store at its limit still takes a rewrite whose form is no larger than the page's
/// old one (it used to allocate the new form before freeing the old, and refused).
#[test]
fn a_store_at_its_limit_rewrites_a_page_with_content_of_the_same_size() {
    let limit = 64 * 1024;
    let store = PageStore::builder().shards(1).mem_limit(limit).build();
    let mut made = 0;
    let mut random = || {
        made += 1;
        noise(made, 0)
    };
    // Incompressible pages are stored raw, 4096 bytes each, until the limit refuses one.
    let mut stored = Vec::new();
    loop {
        let page = random();
        match store.insert(stored.len() as u64, &page) {
            Ok(()) => stored.push(page),
            Err(StoreError::MemoryLimit { .. }) => break,
            Err(other) => panic!("{other}"),
        }
    }
    assert!(stored.len() >= 8, "{} pages", stored.len());
    for (id, slot) in stored.iter_mut().enumerate() {
        let page = random();
        store
            .insert(id as u64, &page)
            .expect("same-size rewrite at the limit");
        *slot = page;
    }
    for (id, page) in stored.iter().enumerate() {
        assert!(*store.read(id as u64).unwrap() == *page, "page {id}");
    }
    assert!(store.stats().mm.mem_used_total <= limit);
    // A smaller form takes a raw page's place too; a new page still fails cleanly.
    let mut small = *Page::filled(0x6161_6161_6161_6162);
    small.0[100] = b'x';
    store.insert(0, &small).unwrap();
    assert!(*store.read(0).unwrap() == small);
    let new = random();
    assert!(matches!(
        store.insert(stored.len() as u64 + 1, &new),
        Err(StoreError::MemoryLimit { .. })
    ));
    assert!(store.read(stored.len() as u64 + 1).is_err());
}

#[test]
fn compaction_gives_memory_back_and_keeps_every_page() {
    let pages = sample_pages();
    let store = PageStore::builder().profile(Profile::Fast).build();
    for (id, page) in pages.iter().enumerate() {
        store.insert(id as u64, page).unwrap();
    }
    let mut rng = Rng(7);
    for id in 0..pages.len() as u64 {
        if rng.below(3) > 0 {
            store.discard(id);
        }
    }
    // The store gave the memory back by itself, as the removals went.
    let before = store.stats();
    assert!(before.mm.pages_compacted > 0);
    let bound = before.mm.compr_data_size as f64 * 1.25 + (256 << 10) as f64;
    assert!(before.mm.mem_used_total as f64 <= bound, "{before:?}");
    let given_back = store.compact();
    let after = store.stats();
    assert_eq!(
        after.mm.pages_compacted,
        before.mm.pages_compacted + given_back
    );
    assert!(after.mm.mem_used_total <= before.mm.mem_used_total);
    assert_compacted(&after);
    for id in store.ids() {
        assert!(*store.read(id).unwrap() == pages[id as usize], "page {id}");
    }
    // Freed holes are reused: re-inserting does not grow memory beyond a fresh store.
    assert_eq!(store.compact(), 0, "nothing left to compact");
}

#[test]
fn holes_are_reused_before_memory_grows() {
    let samples = samples();
    let store = PageStore::builder().shards(1).build();
    for id in 0..300 {
        store.insert(id, &make_page(id, 0, &samples)).unwrap();
    }
    let full = store.stats().mm.mem_used_total;
    for round in 1..5 {
        for id in 0..300 {
            store
                .insert(id, &make_page(id, round * 6, &samples))
                .unwrap();
        }
    }
    let stats = store.stats();
    assert!(
        stats.mm.mem_used_total <= full + full / 2,
        "overwrites reuse freed space: {} vs {full}",
        stats.mm.mem_used_total
    );
    store.compact();
    assert_compacted(&store.stats());
}

/// What compaction leaves by design: under a page of garbage in each slab it kept (a slab
/// with less is not worth moving), plus the head's populated-ahead pages (16 KiB at most).
fn assert_compacted(stats: &Stats) {
    let slabs = stats.mm.mem_used_total.div_ceil(SLAB_BYTES as u64);
    let garbage = stats.mm.mem_used_total - stats.mm.compr_data_size;
    assert!(
        garbage < (slabs + 4) * PAGE_SIZE as u64,
        "{garbage} bytes of garbage in {slabs} slabs after compaction"
    );
}

/// Several threads do random operations; each owns the ids congruent to its index (so
/// its reference model is exact) while ids interleave across shards and blocks. Another
/// thread reads every id and checks it sees some write of that id; another compacts.
#[test]
fn stress_against_reference_model() {
    for (hot, limit) in [(0, None), (24 * PAGE_SIZE, None), (0, Some(600 * 1024))] {
        stress(hot, limit);
    }
}

fn stress(hot_budget: usize, limit: Option<u64>) {
    const WRITERS: u64 = 3;
    const IDS: u64 = 600;
    const OPS: u64 = 25_000;
    let samples = Arc::new(samples());
    let mut builder = PageStore::builder().shards(4).hot_budget(hot_budget);
    if let Some(limit) = limit {
        builder = builder.mem_limit(limit);
    }
    let store = Arc::new(builder.build());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checker = {
        let (store, samples, done) = (store.clone(), samples.clone(), done.clone());
        std::thread::spawn(move || {
            let mut checked = 0u64;
            let mut out = Page::zeroed();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for id in 0..IDS {
                    match store.read_into(id, &mut out) {
                        Ok(()) => assert!(is_some_version_of(id, &out, &samples), "id {id}"),
                        Err(StoreError::NotFound(_)) => {}
                        Err(other) => panic!("{other}"),
                    }
                    checked += 1;
                }
                store.compact();
                let stats = store.stats();
                if let Some(limit) = limit {
                    assert!(stats.mm.mem_used_max <= limit);
                }
            }
            checked
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|thread| {
            let (store, samples) = (store.clone(), samples.clone());
            std::thread::spawn(move || {
                let mut reference: HashMap<u64, Page> = HashMap::new();
                let mut rng = Rng(thread + 11);
                let mut out = Page::zeroed();
                for step in 0..OPS {
                    let id = rng.below(IDS / WRITERS) * WRITERS + thread;
                    match rng.below(10) {
                        0..=3 => {
                            let page = make_page(id, step, &samples);
                            match store.insert(id, &page) {
                                Ok(()) => {
                                    reference.insert(id, page);
                                }
                                Err(StoreError::MemoryLimit { .. }) if limit.is_some() => {}
                                Err(other) => panic!("{other}"),
                            }
                        }
                        4 => assert_eq!(store.discard(id), reference.remove(&id).is_some()),
                        _ => match (store.read_into(id, &mut out), reference.get(&id)) {
                            (Ok(()), Some(expected)) => assert!(out == *expected, "id {id}"),
                            (Err(StoreError::NotFound(_)), None) => {}
                            (result, expected) => {
                                panic!("id {id}: {result:?} vs {}", expected.is_some())
                            }
                        },
                    }
                }
                reference
            })
        })
        .collect();
    let mut all = HashMap::new();
    for writer in writers {
        all.extend(writer.join().expect("writer thread"));
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(checker.join().expect("checker thread") > 0);
    assert_eq!(store.len(), all.len());
    for (id, page) in &all {
        assert!(*store.read(*id).unwrap() == *page, "final id {id}");
    }
    store
        .flush()
        .unwrap_or_else(|e| assert!(limit.is_some(), "{e}"));
    let stats = store.stats();
    assert_eq!(stats.pages, all.len() as u64);
    assert_eq!(stats.io.failed_reads, 0);
}

/// The cache calls: `get` answers absent with `None`, `remove` returns what it removes,
/// `insert_bytes` checks the length; with and without a hot tier.
#[test]
fn get_remove_and_insert_bytes() {
    for hot in [0, 8 * PAGE_SIZE] {
        let store = PageStore::builder().hot_budget(hot).build();
        let page = *Page::filled(0x0102_0304_0506_0708);
        let mut text = page;
        text.0[..11].copy_from_slice(b"hello pages");
        assert_eq!(store.get(1), Ok(None));
        assert_eq!(store.remove(1), Ok(None));
        store.insert(1, &text).unwrap();
        assert!(*store.get(1).unwrap().unwrap() == text);
        assert!(*store.remove(1).unwrap().unwrap() == text, "hot {hot}");
        assert_eq!(store.get(1), Ok(None));
        assert!(store.is_empty() && store.stats().mm.compr_data_size == 0);
        assert_eq!(
            store.insert_bytes(2, &[0; 100]),
            Err(StoreError::PageLength { len: 100 })
        );
        store.insert_bytes(2, text.bytes()).unwrap();
        assert!(*store.read(2).unwrap() == text);
        assert!(format!("{store:?}").contains("pages: 1"));
    }
}

/// `remove` racing inserts of the same page: every page taken is one that was inserted,
/// and whatever was not taken is still there at the end.
#[test]
fn remove_races_inserts_without_losing_a_page() {
    for hot in [0, 4 * PAGE_SIZE] {
        let store = Arc::new(PageStore::builder().hot_budget(hot).build());
        let version = |v: u64| {
            let mut page = Page::zeroed();
            page.words_mut()[..64].iter_mut().for_each(|w| *w = v * 977);
            page
        };
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                for v in 1..=20_000u64 {
                    store.insert(7, &version(v)).unwrap();
                }
            })
        };
        let (mut taken, mut last) = (0u64, 0u64);
        while !writer.is_finished() || taken == 0 {
            if let Some(page) = store.remove(7).unwrap() {
                let v = page.words()[0] / 977;
                assert!(*page == version(v), "a page that was inserted");
                assert!(v > last, "versions only go up: {v} after {last}");
                (taken, last) = (taken + 1, v);
            }
        }
        writer.join().unwrap();
        if let Some(page) = store.get(7).unwrap() {
            assert!(page.words()[0] / 977 > last);
        }
        assert!(taken > 0);
    }
}

/// `get_or_insert_with` makes a page only when absent, and of racing callers every one
/// gets the page the store ends up holding: one `make` wins, the others' pages are dropped.
#[test]
fn get_or_insert_with_makes_once_and_agrees() {
    let store = PageStore::new();
    let text = |v: u8| {
        let mut page = Page::zeroed();
        page.bytes_mut()[..64].fill(v);
        page.bytes_mut()[100] = 1;
        Box::new(page)
    };
    assert!(*store.get_or_insert_with(3, || text(1)).unwrap() == *text(1));
    let calls = std::cell::Cell::new(0);
    let got = store
        .get_or_insert_with(3, || {
            calls.set(calls.get() + 1);
            text(2)
        })
        .unwrap();
    assert!(*got == *text(1) && calls.get() == 0, "present: no make");
    for round in 0..200u64 {
        let store = Arc::new(PageStore::new());
        let threads: Vec<_> = (1..=2u8)
            .map(|v| {
                let store = store.clone();
                std::thread::spawn(move || *store.get_or_insert_with(round, || text(v)).unwrap())
            })
            .collect();
        let got: Vec<Page> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let held = store.get(round).unwrap().expect("inserted");
        assert!(got.iter().all(|page| *page == *held), "round {round}");
        assert_eq!(store.len(), 1);
    }
}

/// `ids` holds no lock between items: the store can be changed while iterating, and
/// every page present throughout is yielded exactly once.
#[test]
fn ids_iterate_while_the_store_changes() {
    let store = PageStore::builder().shards(4).build();
    for id in 0..1000 {
        store.insert(id, &Page::filled(id + 1)).unwrap();
    }
    let mut seen = Vec::new();
    for id in store.ids() {
        seen.push(id);
        // Removing and adding pages mid-iteration neither deadlocks nor repeats ids.
        if id % 2 == 0 {
            store.discard(id);
        }
        store.insert(10_000 + id, &Page::filled(7)).unwrap();
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "no id twice");
    let originals: Vec<u64> = sorted.iter().copied().filter(|&id| id < 1000).collect();
    assert_eq!(originals, (0..1000).collect::<Vec<_>>());
}

/// `mm_stat` is read without stopping the store: while writers insert and remove, every
/// reading is sane (sizes within what was ever stored), and at rest it equals `stats`.
#[test]
fn mm_stat_reads_while_writers_run() {
    let store = Arc::new(PageStore::builder().shards(4).build());
    let pages = Arc::new(sample_pages());
    let writers: Vec<_> = (0..2u64)
        .map(|t| {
            let (store, pages) = (store.clone(), pages.clone());
            std::thread::spawn(move || {
                for (i, page) in pages.iter().enumerate().take(400) {
                    let id = t * 1000 + i as u64;
                    store.insert(id, page).unwrap();
                    if i % 3 == 0 {
                        store.discard(id);
                    }
                }
            })
        })
        .collect();
    while writers.iter().any(|w| !w.is_finished()) {
        let mm = store.mm_stat();
        assert!(mm.orig_data_size <= 800 * PAGE_SIZE as u64);
        assert!(mm.mem_used_total <= mm.mem_used_max);
    }
    for writer in writers {
        writer.join().unwrap();
    }
    let stats = store.stats();
    assert_eq!(store.mm_stat(), stats.mm);
    assert_eq!(stats.pages * PAGE_SIZE as u64, stats.mm.orig_data_size);
}

/// Text-like pages the sort a dictionary helps: words drawn from one vocabulary of a few
/// hundred (field names, paths, log words) with numbers between, every page different;
/// zstd alone sees each word once or twice a page.
fn text_pages(n: u64) -> Vec<Page> {
    let vocabulary: Vec<String> = (0..300u64)
        .map(|w| {
            let stem = [
                "session", "user", "order", "worker", "request", "latency", "cache",
            ];
            format!(
                "{}_{:x}",
                stem[(w % 7) as usize],
                w * 2_654_435_761 % 65_521
            )
        })
        .collect();
    let mut rng = common::Rng(7);
    (0..n)
        .map(|_| {
            let mut text = String::new();
            while text.len() < PAGE_SIZE {
                text.push_str(&vocabulary[rng.below(300) as usize]);
                text.push_str(&format!("={} ", rng.below(10_000)));
            }
            Page::from_slice(&text.as_bytes()[..PAGE_SIZE])
                .map(|p| *p)
                .unwrap()
        })
        .collect()
}

/// Dictionaries trained on the store's own pages: new zstd pages are encoded with them
/// and read back exactly; pages stored before keep their form and read back too; a
/// replaced set lives exactly as long as pages name it; a saved set loads into another
/// store, and a damaged file is refused.
#[test]
fn dictionaries_train_encode_retire_and_load() {
    let pages = text_pages(3000);
    let store = PageStore::builder().shards(2).build();
    for (id, page) in (0..).zip(&pages[..1500]) {
        store.insert(id, page).unwrap();
    }
    let before = store.stats();
    assert_eq!(before.dictionaries, 0);
    let set = store
        .train_dictionaries()
        .unwrap()
        .expect("text pages get a dictionary");
    let trained = set.dictionaries().len() as u64;
    // Saved now; held, it would keep its dictionaries alive after they are replaced.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dicts.zpd");
    set.save(&path).unwrap();
    drop(set);
    // The same content again, now with the dictionaries: smaller.
    for (id, page) in (1500..).zip(&pages[..1500]) {
        store.insert(id, page).unwrap();
    }
    for (id, page) in (0..).zip(pages[..1500].iter().chain(&pages[..1500])) {
        assert!(*store.get(id).unwrap().unwrap() == *page, "page {id}");
    }
    let after = store.stats();
    assert_eq!(after.dictionaries, trained);
    assert!(after.dictionary_bytes > 0);
    let with = after.mm.compr_data_size - before.mm.compr_data_size;
    assert!(
        with < before.mm.compr_data_size * 97 / 100,
        "{with} vs {}",
        before.mm.compr_data_size
    );
    // Retrain on new content: the old set stays while pages name it, and goes with them.
    for (id, page) in (3000..).zip(&pages[1500..]) {
        store.insert(id, page).unwrap();
    }
    store.train_dictionaries().unwrap().expect("a second set");
    assert!(
        store.stats().dictionaries > trained,
        "the old set is still named"
    );
    // Every page encoded with the first set: the copies and the new content.
    for id in 1500..4500 {
        assert!(store.discard(id));
    }
    let now = store.stats();
    assert_eq!(
        now.dictionaries,
        store.dictionaries().unwrap().dictionaries().len() as u64
    );
    for (id, page) in (0..).zip(&pages[..1500]) {
        assert!(
            *store.get(id).unwrap().unwrap() == *page,
            "old form, page {id}"
        );
    }
    // Loaded into a new store, which encodes with it from the start.
    let loaded = zpage::codec::dictset::DictionarySet::load(&path, 1, 3).unwrap();
    let fresh = PageStore::builder().dictionaries(loaded).build();
    for (id, page) in (0..).zip(&pages[..300]) {
        fresh.insert(id, page).unwrap();
        assert!(*fresh.get(id).unwrap().unwrap() == *page);
    }
    assert!(fresh.stats().mm.compr_data_size < with / 4);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&path, &bytes).unwrap();
    let err = zpage::codec::dictset::DictionarySet::load(&path, 1, 3).unwrap_err();
    assert!(
        err.to_string().contains("not a zpage dictionary set"),
        "{err}"
    );
}

/// `auto_dictionaries`: the store trains by itself once enough zstd pages are in, and
/// every page reads back.
#[test]
fn a_store_trains_its_dictionaries_by_itself() {
    let pages = text_pages(2400);
    let store = PageStore::builder().auto_dictionaries(600).build();
    for (id, page) in (0..).zip(&pages) {
        store.insert(id, page).unwrap();
    }
    assert!(store.dictionaries().is_none(), "an insert never trains");
    assert!(store.train_if_due());
    assert!(!store.train_if_due(), "the next mark is four times further");
    assert!(store.dictionaries().is_some());
    assert!(store.stats().dictionaries >= 1);
    for (id, page) in (0..).zip(&pages) {
        assert!(*store.get(id).unwrap().unwrap() == *page, "page {id}");
    }
}

/// A shared store's worker trains within about a second of the mark, off the insert
/// path.
#[test]
fn a_shared_store_trains_on_its_worker() {
    let pages = text_pages(1200);
    let store = PageStore::builder().auto_dictionaries(600).build_shared();
    for (id, page) in (0..).zip(&pages) {
        store.insert(id, page).unwrap();
    }
    let start = std::time::Instant::now();
    while store.dictionaries().is_none() {
        assert!(start.elapsed().as_secs() < 60, "the worker never trained");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for (id, page) in (0..).zip(&pages) {
        assert!(*store.get(id).unwrap().unwrap() == *page, "page {id}");
    }
}

/// `recompress` gives pages stored before a training the new dictionaries (smaller),
/// frees the set they named once none does, and every page reads back.
#[test]
fn recompression_moves_old_pages_to_the_new_dictionaries() {
    let pages = text_pages(2000);
    let store = PageStore::builder().shards(2).build();
    for (id, page) in (0..).zip(&pages) {
        store.insert(id, page).unwrap();
    }
    let before = store.stats();
    assert!(store.train_dictionaries().unwrap().is_some());
    let done = store.recompress();
    assert_eq!(done.failed + done.raced + done.refused, 0, "{done:?}");
    assert!(done.rewritten > 1000, "{done:?}");
    let after = store.stats();
    assert_eq!(
        before.mm.compr_data_size - after.mm.compr_data_size,
        done.bytes_saved
    );
    assert!(after.mm.compr_data_size < before.mm.compr_data_size * 95 / 100);
    // A second set: recompressing again moves the pages its dictionaries code smaller;
    // the first set stays only as far as pages still name it, and goes with them.
    let first = store.stats().dictionaries;
    assert!(store.train_dictionaries().unwrap().is_some());
    store.recompress();
    let current = store.dictionaries().unwrap().dictionaries().len() as u64;
    assert!(store.stats().dictionaries <= first + current);
    for (id, page) in (0..).zip(&pages) {
        assert!(*store.get(id).unwrap().unwrap() == *page, "page {id}");
    }
    for (id, page) in (0..).zip(&pages) {
        store.insert(id, page).unwrap();
    }
    assert_eq!(
        store.stats().dictionaries,
        current,
        "rewritten: only the current set"
    );
    for (id, page) in (0..).zip(&pages) {
        assert!(*store.get(id).unwrap().unwrap() == *page, "page {id}");
    }
    assert_eq!(store.stats().pages, 2000);
}

/// `recompress` racing writers: every page ends as its last write, whatever the
/// interleaving (checked against a shadow copy), and none is lost.
#[test]
fn recompression_never_loses_a_racing_write() {
    let pages = Arc::new(text_pages(600));
    let store = Arc::new(PageStore::builder().shards(4).build());
    for (id, page) in (0..).zip(pages.iter()) {
        store.insert(id, page).unwrap();
    }
    store.train_dictionaries().unwrap();
    let writer = {
        let (store, pages) = (store.clone(), pages.clone());
        std::thread::spawn(move || {
            let mut rng = common::Rng(11);
            let mut shadow: Vec<usize> = (0..600).collect();
            for _ in 0..6000 {
                let id = rng.below(600) as usize;
                let version = rng.below(600) as usize;
                store.insert(id as u64, &pages[version]).unwrap();
                shadow[id] = version;
            }
            shadow
        })
    };
    let mut rounds = 0;
    while !writer.is_finished() || rounds == 0 {
        store.recompress();
        rounds += 1;
    }
    let shadow = writer.join().unwrap();
    store.recompress();
    for (id, &version) in shadow.iter().enumerate() {
        assert!(
            *store.get(id as u64).unwrap().unwrap() == pages[version],
            "page {id}"
        );
    }
}

/// A page of noise (stored raw, 4 KiB) that only `id` and `version` make.
fn noise(id: u64, version: u64) -> Page {
    let mut rng = Rng(id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (version + 1) << 40 | 1);
    let mut page = Page::zeroed();
    for word in page.words_mut() {
        *word = rng.next();
    }
    page
}

/// A large store: two threads fill it to 78 MiB (1,250 slabs), pages are overwritten and
/// removed, and every page reads back; memory is counted within 4 MiB of the live bytes
/// after compaction, and comes back to nothing when the store is emptied.
#[test]
fn a_large_store_loses_nothing_and_gives_its_memory_back() {
    const PAGES: u64 = 20_000;
    let store = PageStore::builder().profile(Profile::Fast).build();
    std::thread::scope(|scope| {
        for half in 0..2 {
            let store = &store;
            scope.spawn(move || {
                for id in (half..PAGES).step_by(2) {
                    store.insert(id, &noise(id, 0)).unwrap();
                }
            });
        }
    });
    assert!(store.stats().mm.mem_used_total > 64 << 20);
    let version = |id: u64| u64::from(id.is_multiple_of(5));
    for id in 0..PAGES {
        if id.is_multiple_of(3) {
            store.discard(id);
        } else if version(id) == 1 {
            store.insert(id, &noise(id, 1)).unwrap();
        }
    }
    store.compact();
    let mm = store.stats().mm;
    assert!(
        mm.mem_used_total <= mm.compr_data_size + (4 << 20),
        "{} bytes used for {} stored",
        mm.mem_used_total,
        mm.compr_data_size
    );
    for id in 0..PAGES {
        let page = store.get(id).unwrap();
        if id.is_multiple_of(3) {
            assert!(page.is_none(), "page {id} was removed");
        } else {
            assert!(*page.unwrap() == noise(id, version(id)), "page {id}");
        }
    }
    for id in 0..PAGES {
        store.discard(id);
    }
    store.compact();
    assert_eq!(store.stats().mm.mem_used_total, 0);
}
