//! Region: data integrity under eviction and refault, with threads; writes after
//! eviction; zero pages; a clean skip where userfaultfd is unavailable.

mod common;

use common::{Rng, region};
use zpage::PAGE_SIZE;
use zpage::region::{Region, RegionStats};

/// Content of page `index` at `version`: compressible, distinct per page and version.
fn fill(page: &mut [u8], index: usize, version: u64) {
    for (i, word) in page.chunks_exact_mut(8).enumerate() {
        let value = (index as u64) << 32 | version << 16 | (i as u64 % 37);
        word.copy_from_slice(&value.to_le_bytes());
    }
}

fn check(page: &[u8], index: usize, version: u64) {
    let mut expected = vec![0u8; PAGE_SIZE];
    fill(&mut expected, index, version);
    assert!(
        page == expected.as_slice(),
        "page {index} version {version}"
    );
}

/// The region's statistics once its handler is idle: after the last fault it evicts ahead
/// until a slot is free, so a region filled to `resident` settles one page below it.
fn settled(region: &Region, resident: u64) -> RegionStats {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let stats = region.stats();
        if stats.resident < resident || std::time::Instant::now() > deadline {
            return stats;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn never_touched_pages_read_as_zero_and_cost_nothing() {
    let Some(region) = region(256, 16) else {
        return;
    };
    assert!(region.as_slice().iter().all(|&b| b == 0));
    let stats = settled(&region, 16);
    assert_eq!(stats.zero_faults, 256);
    assert!(stats.resident_max <= 16, "{stats:?}");
    assert_eq!(stats.resident, 15, "{stats:?}");
    assert_eq!(stats.store.same_pages, 256 - stats.resident);
    assert_eq!(stats.store.mem_used_total, 0, "zero pages take no memory");
    assert_eq!(stats.evictions, 256 - stats.resident);
}

#[test]
fn pages_survive_eviction_and_are_written_after_it() {
    let pages = 512;
    let Some(mut region) = region(pages, 64) else {
        return;
    };
    let memory = region.as_mut_slice();
    for (index, page) in memory.chunks_exact_mut(PAGE_SIZE).enumerate() {
        fill(page, index, 1);
    }
    // Every page but the last 64 was evicted; read them all back (refaults).
    for (index, page) in memory.chunks_exact(PAGE_SIZE).enumerate() {
        check(page, index, 1);
    }
    // Write evicted pages (write faults on evicted pages), then read again.
    for (index, page) in memory.chunks_exact_mut(PAGE_SIZE).enumerate().step_by(3) {
        fill(page, index, 2);
    }
    for (index, page) in memory.chunks_exact(PAGE_SIZE).enumerate() {
        check(page, index, if index % 3 == 0 { 2 } else { 1 });
    }
    let stats = region.stats();
    assert!(stats.evictions >= (pages - 64) as u64 * 2, "{stats:?}");
    assert!(stats.refaults > 0 && stats.resident_max <= 64, "{stats:?}");
    // Every page is resident, stored, or both (read back and not written since).
    assert!(
        stats.store.pages + stats.resident >= pages as u64,
        "{stats:?}"
    );
    assert!(
        stats.store.ratio() > 2.0,
        "compressible pages compress: {stats:?}"
    );
}

#[test]
fn two_threads_touching_pages_under_eviction() {
    let pages = 768;
    let Some(mut region) = region(pages, 96) else {
        return;
    };
    let memory = region.as_mut_slice();
    for (index, page) in memory.chunks_exact_mut(PAGE_SIZE).enumerate() {
        fill(page, index, 0);
    }
    // Each thread owns every other 16-page chunk and rewrites random pages of its own
    // while reading random pages of its own, checking against its version table.
    let (a, b): (Vec<_>, Vec<_>) = memory
        .chunks_mut(16 * PAGE_SIZE)
        .enumerate()
        .partition(|(chunk, _)| chunk % 2 == 0);
    std::thread::scope(|scope| {
        for (seed, chunks) in [(1u64, a), (2, b)] {
            scope.spawn(move || {
                let mut chunks = chunks;
                let mut versions = vec![0u64; chunks.len() * 16];
                let mut rng = Rng(seed * 7919);
                for step in 1..4000u64 {
                    let slot = rng.below(versions.len() as u64) as usize;
                    let (chunk_index, chunk) = &mut chunks[slot / 16];
                    let index = *chunk_index * 16 + slot % 16;
                    let page = &mut chunk[(slot % 16) * PAGE_SIZE..][..PAGE_SIZE];
                    if rng.below(3) == 0 {
                        fill(page, index, step);
                        versions[slot] = step;
                    } else {
                        check(page, index, versions[slot]);
                    }
                }
            });
        }
    });
    let stats = region.stats();
    assert!(stats.refaults > 1000 && stats.wp_faults > 0, "{stats:?}");
}

#[test]
fn clock_keeps_a_hot_set_resident() {
    // 64 hot pages written often, a cold scan over the other 448: with 128 resident
    // pages, the hot pages should rarely refault.
    let pages = 512;
    let Some(mut region) = region(pages, 128) else {
        return;
    };
    let memory = region.as_mut_slice();
    for (index, page) in memory.chunks_exact_mut(PAGE_SIZE).enumerate() {
        fill(page, index, 0);
    }
    let before = region.stats().refaults;
    let memory = region.as_mut_slice();
    let mut hot_touches = 0;
    for round in 1..=4u64 {
        for cold in 64..pages {
            check(&memory[cold * PAGE_SIZE..][..PAGE_SIZE], cold, 0);
            let hot = cold % 64;
            fill(&mut memory[hot * PAGE_SIZE..][..PAGE_SIZE], hot, round);
            hot_touches += 1;
        }
    }
    let stats = region.stats();
    let refaults = stats.refaults - before;
    eprintln!(
        "hot set of 64 + cold scan of 448, 128 resident: {refaults} refaults for {} touches",
        448 * 4 + hot_touches
    );
    // Cold pages refault on every pass (448 x 4). Hot ones rarely: FIFO would evict each
    // hot page every 128 evictions whatever its use, refaulting on about every other hot
    // touch; CLOCK with write-fault references keeps them, bar races with the handler
    // under CPU contention (0% alone, 6-15% of hot touches when the four region tests
    // share the two CPUs). A quarter still tells CLOCK from FIFO.
    let hot_refaults = refaults.saturating_sub(448 * 4);
    assert!(
        hot_refaults < hot_touches / 4,
        "hot refaults {hot_refaults} of {hot_touches}: {stats:?}"
    );
}
