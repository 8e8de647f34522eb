//! The tiers: idle marking, the idle pass (recompression), writeback to a backing store,
//! the background worker, and the failures they claim to survive (a backing write that
//! fails, a backing record that is damaged or cannot be read), each checked against a
//! shadow copy of what was written.

mod common;

use common::{assert_holds, insert_all};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zpage::store::{Background, Backing, BackingFile, Selection, StoreError};
use zpage::{Class, PAGE_SIZE, PageStore, Profile};

/// A tiered store: fast on the way in, dense in the idle pass.
fn tiered() -> zpage::StoreBuilder {
    PageStore::builder()
        .shards(4)
        .profile(Profile::Fast)
        .idle_profile(Profile::Dense)
}

/// A backing store in memory whose writes can be made to fail and whose records can be
/// damaged: the failures writeback and reads claim to survive.
#[derive(Debug, Default)]
struct Faulty {
    records: Mutex<Vec<Vec<u8>>>,
    /// Writes fail with ENOSPC while set.
    refuse_writes: Mutex<bool>,
    /// Reads of this slot fail with EIO.
    bad_read: Mutex<Option<u64>>,
    slots: u64,
}

impl Faulty {
    fn new(slots: u64) -> Faulty {
        Faulty {
            records: Mutex::new(vec![Vec::new(); slots as usize]),
            slots,
            ..Faulty::default()
        }
    }
}

impl Backing for Faulty {
    fn slots(&self) -> u64 {
        self.slots
    }

    fn write(&self, records: &[(u64, &[u8])]) -> io::Result<()> {
        if *self.refuse_writes.lock().unwrap() {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let mut stored = self.records.lock().unwrap();
        for &(slot, record) in records {
            stored[slot as usize] = record.to_vec();
        }
        Ok(())
    }

    fn read(&self, slot: u64, out: &mut [u8]) -> io::Result<()> {
        if *self.bad_read.lock().unwrap() == Some(slot) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let stored = self.records.lock().unwrap();
        let record = &stored[slot as usize];
        if record.len() < out.len() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        out.copy_from_slice(&record[..out.len()]);
        Ok(())
    }
}

#[test]
fn reads_and_writes_clear_the_idle_mark() {
    let pages = common::sample_pages();
    let store = tiered().build();
    insert_all(&store, &pages[..64]);
    assert_eq!(
        store.mark_idle(Some(Duration::from_secs(3600))),
        0,
        "all young"
    );
    assert_eq!(store.mark_idle(None), 64);
    store.get(3).unwrap();
    store.insert(4, &pages[4]).unwrap();
    assert_eq!(store.stats().idle_pages, 62);
    let done = store.recompress_selected(Selection::all().idle());
    let in_allocator = (0..64u64)
        .filter(|&id| ![3, 4].contains(&id))
        .filter(|&id| {
            !matches!(
                store.stored_class(id),
                Some(zpage::Class::Zero | zpage::Class::Same)
            )
        })
        .count() as u64;
    assert_eq!(done.examined, in_allocator, "only the idle pages");
    // The pass settled them: a second one has nothing to do, unless asked again.
    assert_eq!(
        store.recompress_selected(Selection::all().idle()).examined,
        0
    );
    assert_eq!(
        store
            .recompress_selected(Selection::all().idle().again())
            .examined,
        in_allocator
    );
    assert_holds(&store, &pages[..64]);
}

#[test]
fn the_idle_pass_stores_fast_pages_dense_and_loses_nothing() {
    let pages = common::sample_pages();
    let store = tiered().build();
    insert_all(&store, &pages);
    let fast = store.stats();
    store.mark_idle(None);
    let done = store.recompress_selected(Selection::all().idle());
    let dense = store.stats();
    assert!(done.rewritten > 0 && done.bytes_saved > 0, "{done:?}");
    assert_eq!(
        fast.mm.compr_data_size - dense.mm.compr_data_size,
        done.bytes_saved
    );
    assert!(
        dense.effective_ratio() > fast.effective_ratio() * 1.1,
        "fast {:.2}, after the idle pass {:.2}",
        fast.effective_ratio(),
        dense.effective_ratio()
    );
    // As small as a store that was dense all along, within the allocator's slack.
    let reference = PageStore::builder().profile(Profile::Dense).build();
    insert_all(&reference, &pages);
    let dense_all_along = reference.stats().mm.compr_data_size as f64;
    assert!((dense.mm.compr_data_size as f64) < dense_all_along * 1.01);
    assert_holds(&store, &pages);
}

/// The cold pass re-encodes settled pages at a stronger level, once: a second cold pass
/// skips them, a read puts a page back in its reach.
#[test]
fn word_forms_on_the_way_in_turn_dense_in_the_idle_pass() {
    let pages = common::sample_pages();
    let store = PageStore::builder()
        .shards(4)
        .profile(Profile::Words)
        .idle_profile(Profile::Dense)
        .build();
    insert_all(&store, &pages);
    let in_words = |store: &PageStore| {
        (0..pages.len() as u64)
            .filter(|&id| store.stored_class(id) == Some(Class::Words))
            .count()
    };
    let (words, before) = (in_words(&store), store.stats());
    // The sample is a quarter word data; the probe leaves text, records and runs of
    // words LZ4 is expected to store smaller to LZ4.
    assert!(words > pages.len() / 8, "{words} of {} pages", pages.len());
    assert_holds(&store, &pages);
    store.mark_idle(None);
    store.recompress_selected(Selection::all().idle());
    let after = store.stats();
    // A word form stays only where no dense form is smaller.
    assert!(in_words(&store) < words / 20, "{} still", in_words(&store));
    assert!(
        after.effective_ratio() > before.effective_ratio() * 1.2,
        "words {:.2}, after the idle pass {:.2}",
        before.effective_ratio(),
        after.effective_ratio()
    );
    assert_holds(&store, &pages);
}

/// Pages alone (a unit's member stays in its unit after a read, so is not taken again).
#[test]
fn the_cold_pass_spends_more_once() {
    let pages = common::sample_pages();
    let store = tiered().cold_unit_pages(1).build();
    insert_all(&store, &pages);
    store.mark_idle(None);
    let warm = store.recompress_selected(Selection::all().idle());
    let before = store.stats().mm.compr_data_size;
    let cold = store.recompress_selected(Selection::all().idle().level(19));
    assert_eq!(
        cold.examined, warm.examined,
        "the cold pass takes settled pages"
    );
    assert!(cold.rewritten > 0 && cold.bytes_saved > 0, "{cold:?}");
    assert_eq!(before - store.stats().mm.compr_data_size, cold.bytes_saved);
    let again = store.recompress_selected(Selection::all().idle().level(19));
    assert_eq!(again.examined, 0, "cold pages are not redone");
    let coldest = store.recompress_selected(Selection::all().idle().mixed());
    assert_eq!(
        coldest.examined, 0,
        "a page alone was weighed against its mixed form by the cold pass"
    );
    // A read clears the marks: the page is neither idle nor cold until marked again.
    store.get(100).unwrap();
    store.mark_idle(None);
    let one = store.recompress_selected(Selection::all().idle().level(19));
    assert_eq!(one.examined, 1);
    assert_holds(&store, &pages);
}

/// Without units, the cold pass stores pages in the mixed form from their cluster's primer
/// where that is smaller; each names its dictionary, which outlives a new set for as long
/// as it does.
#[test]
fn the_cold_pass_stores_mixed_forms_that_keep_their_dictionary() {
    let pages = common::sample_pages();
    let backing = Arc::new(Faulty::new(pages.len() as u64));
    let store = tiered().backing(backing).cold_unit_pages(1).build();
    insert_all(&store, &pages);
    store.mark_idle(None);
    store.recompress_selected(Selection::all().idle());
    let set = store
        .train_dictionaries()
        .unwrap()
        .expect("the sample trains a set");
    assert!(set.dictionaries().iter().all(|d| d.primer().is_some()));
    store.recompress_selected(Selection::all().idle().again());
    let warm = store.stats();
    store.recompress_selected(Selection::all().idle().level(16));
    let cold = store.stats();
    let mixed: Vec<u64> = (0..pages.len() as u64)
        .filter(|&id| store.stored_class(id) == Some(Class::Mixed))
        .collect();
    assert!(
        mixed.len() > pages.len() / 10,
        "{} of {} mixed",
        mixed.len(),
        pages.len()
    );
    assert!(
        cold.effective_ratio() > warm.effective_ratio() * 1.03,
        "warm {:.3}, cold {:.3}",
        warm.effective_ratio(),
        cold.effective_ratio()
    );
    assert_holds(&store, &pages);
    // A new set replaces the current one; the mixed pages still decode with theirs, in
    // memory and written back.
    store.set_dictionaries(&set);
    assert!(store.stats().dictionaries > set.dictionaries().len() as u64);
    assert_holds(&store, &pages);
    let back = store.writeback(Selection::all()).unwrap();
    assert!(back.written >= mixed.len() as u64, "{back:?}");
    assert_holds(&store, &pages);
    // Once no page names the replaced dictionaries (and no one holds them), they go.
    let current = set.dictionaries().len() as u64;
    drop(set);
    for (id, page) in (0..).zip(&pages) {
        assert!(*store.remove(id).unwrap().unwrap() == *page, "page {id}");
    }
    assert_eq!(store.stats().dictionaries, current);
}

#[test]
fn bounds_stop_a_pass() {
    let pages = common::sample_pages();
    let store = tiered().build();
    insert_all(&store, &pages);
    let done = store.recompress_selected(Selection::all().max_pages(10));
    assert_eq!(done.examined, 10);
    assert!(done.cut_short);
    let done = store.recompress_selected(Selection::all().time_budget(Duration::ZERO));
    assert_eq!(done.examined, 0);
    // A store younger than the age has no page that old (not: every page of second 0).
    let done = store.recompress_selected(Selection::all().min_age(Duration::from_secs(3600)));
    assert_eq!(done.examined, 0);
    assert_eq!(store.mark_idle(Some(Duration::from_secs(3600))), 0);
    assert_eq!(
        store.mark_idle(Some(Duration::MAX)),
        0,
        "not a wrapped-around age"
    );
    let huge_pages = store.stats().mm.huge_pages;
    let huge = store.recompress_selected(Selection::all().huge());
    assert_eq!(huge.examined, huge_pages);
    assert_holds(&store, &pages);
}

#[test]
fn written_back_pages_read_back_and_free_their_slots() {
    let pages = common::sample_pages();
    let dir = tempfile::tempdir().unwrap();
    let file = BackingFile::open(&dir.path().join("backing"), 64 << 20).unwrap();
    let store = tiered().backing(Arc::new(file)).build();
    insert_all(&store, &pages);
    let before = store.stats();
    let done = store.writeback(Selection::all()).unwrap();
    let after = store.stats();
    assert!(
        done.written > 0 && done.failed == 0 && done.raced == 0,
        "{done:?}"
    );
    assert_eq!(after.bd.bd_count, done.written);
    assert_eq!(after.bd.bd_writes, done.written);
    assert_eq!(after.mm.compr_data_size, 0, "every allocator page left");
    assert_eq!(before.mm.compr_data_size, done.bytes_freed);
    assert_eq!(after.backed_bytes, done.bytes_freed);
    assert_eq!(after.mm.orig_data_size, before.mm.orig_data_size);
    assert_holds(&store, &pages);
    assert_eq!(store.stats().bd.bd_reads, done.written);
    // Overwrites and removes free slots; writeback reuses them.
    store.insert(0, &pages[1]).unwrap();
    store.remove(1).unwrap();
    let stats = store.stats();
    assert!(stats.bd.bd_count < done.written);
    store.writeback(Selection::all()).unwrap();
    let mut expected = pages.clone();
    expected[0] = pages[1];
    assert!(store.get(1).unwrap().is_none());
    for (id, page) in (0..).zip(&expected).skip(2) {
        assert!(*store.get(id).unwrap().unwrap() == *page, "page {id}");
    }
    assert!(*store.get(0).unwrap().unwrap() == pages[1]);
}

#[test]
fn the_writeback_limit_counts_down() {
    let pages = common::sample_pages();
    let store = tiered().backing(Arc::new(Faulty::new(1 << 16))).build();
    insert_all(&store, &pages);
    store.set_writeback_limit(Some(5));
    let done = store.writeback(Selection::all()).unwrap();
    assert_eq!(done.written, 5);
    assert!(done.cut_short);
    assert_eq!(store.writeback_limit(), Some(0));
    assert_eq!(store.writeback(Selection::all()).unwrap().written, 0);
    // A limit beyond one batch (64 pages) is used up exactly, across batches.
    store.set_writeback_limit(Some(150));
    assert_eq!(store.writeback(Selection::all()).unwrap().written, 150);
    assert_eq!(store.writeback_limit(), Some(0));
    store.set_writeback_limit(None);
    assert!(store.writeback(Selection::all()).unwrap().written > 0);
    assert_eq!(store.writeback_limit(), None);
    assert_holds(&store, &pages);
}

#[test]
fn a_failed_backing_write_loses_nothing_and_is_counted() {
    let pages = common::sample_pages();
    let backing = Arc::new(Faulty::new(1 << 16));
    let store = tiered().backing(backing.clone()).build();
    insert_all(&store, &pages);
    let before = store.stats();
    *backing.refuse_writes.lock().unwrap() = true;
    let done = store.writeback(Selection::all()).unwrap();
    assert_eq!(done.written, 0);
    assert!(done.failed > 0);
    assert!(
        done.error.as_deref().unwrap().contains("No space"),
        "{done:?}"
    );
    let stats = store.stats();
    assert_eq!(stats.io.failed_writes, done.failed);
    assert_eq!(stats.bd.bd_count, 0);
    assert_eq!(stats.mm.compr_data_size, before.mm.compr_data_size);
    assert_holds(&store, &pages);
    // The device recovers: the next pass writes them, and they still read back.
    *backing.refuse_writes.lock().unwrap() = false;
    assert!(store.writeback(Selection::all()).unwrap().written > 0);
    assert_holds(&store, &pages);
}

#[test]
fn a_damaged_or_unreadable_record_is_an_error_never_wrong_bytes() {
    let pages = common::sample_pages();
    let backing = Arc::new(Faulty::new(1 << 16));
    let store = tiered().backing(backing.clone()).build();
    insert_all(&store, &pages);
    store.writeback(Selection::all()).unwrap();
    // Which page went to slot 0 and slot 1: find them by damaging and reading.
    backing.records.lock().unwrap()[0][0] ^= 0xff;
    *backing.bad_read.lock().unwrap() = Some(1);
    let (mut checksum, mut unreadable) = (0, 0);
    for (id, page) in (0..).zip(&pages) {
        match store.get(id) {
            Ok(Some(read)) => assert!(*read == *page, "page {id}"),
            Err(StoreError::Checksum { .. }) => checksum += 1,
            Err(StoreError::BackingRead { source, .. }) => {
                assert!(source.to_string().contains("Input/output"), "{source}");
                unreadable += 1
            }
            other => panic!("page {id}: {other:?}"),
        }
    }
    assert_eq!((checksum, unreadable), (1, 1));
    assert_eq!(store.stats().io.failed_reads, 2);
}

#[test]
fn writeback_without_a_backing_store_is_an_error() {
    let store = PageStore::new();
    assert_eq!(
        store.writeback(Selection::all()),
        Err(StoreError::NoBacking)
    );
}

/// Writers racing the idle pass, the cold pass's units and writeback: every page ends as
/// its last write (against a shadow copy), none is lost, and the counters match the
/// pages.
#[test]
fn tiers_never_lose_a_racing_write() {
    racing_writes(false);
}

/// As [`tiers_never_lose_a_racing_write`], at the memory limit the store reached after a
/// first cold pass, so that the writes make room by writing back at the limit
/// (`OnFull::WriteBack`: pages, and units whole; no writeback pass) while the idle and
/// cold passes race them.
#[test]
fn tiers_at_the_limit_never_lose_a_racing_write() {
    racing_writes(true);
}

fn racing_writes(at_the_limit: bool) {
    let pages = Arc::new(common::sample_pages());
    let n = pages.len() as u64;
    let store = tiered()
        .backing(Arc::new(Faulty::new(1 << 16)))
        .on_full(zpage::OnFull::WriteBack);
    let store = Arc::new(store.build());
    insert_all(&store, &pages);
    if at_the_limit {
        store.recompress_selected(Selection::all());
        store.recompress_selected(Selection::all().level(3));
        store.set_mem_limit(Some(store.mm_stat().mem_used_total));
    }
    let writer = {
        let (store, pages) = (store.clone(), pages.clone());
        std::thread::spawn(move || {
            let mut rng = common::Rng(5);
            let mut shadow: Vec<usize> = (0..n as usize).collect();
            for _ in 0..20_000 {
                let id = rng.below(n) as usize;
                let version = rng.below(n) as usize;
                store.insert(id as u64, &pages[version]).unwrap();
                shadow[id] = version;
                if rng.below(8) == 0 {
                    assert!(*store.get(id as u64).unwrap().unwrap() == pages[version]);
                }
            }
            shadow
        })
    };
    let mut rounds = 0;
    while !writer.is_finished() || rounds == 0 {
        store.mark_idle(None);
        store.recompress_selected(Selection::all().idle());
        store.recompress_selected(Selection::all().level(3));
        // At the limit only the inserts write back.
        if !at_the_limit {
            store.writeback(Selection::all().max_pages(200)).unwrap();
        }
        rounds += 1;
    }
    let shadow = writer.join().unwrap();
    for (id, &version) in shadow.iter().enumerate() {
        assert!(
            *store.get(id as u64).unwrap().unwrap() == pages[version],
            "page {id}"
        );
    }
    let stats = store.stats();
    assert_eq!(stats.pages, n);
    assert_eq!(stats.mm.orig_data_size, n * PAGE_SIZE as u64);
    let held: u64 = stats.classes.values().map(|c| c.stored_bytes).sum();
    assert_eq!(held + stats.units.stored_bytes, stats.mm.compr_data_size);
    // The cold passes packed units (at the limit they cannot: no room for a frame, and
    // the units written back go with their pages).
    assert!(
        at_the_limit || rounds < 2 || stats.units.units > 0,
        "{rounds} rounds: {:?}",
        stats.units
    );
    if at_the_limit {
        assert!(
            stats.mm.mem_used_total <= stats.mm.mem_limit,
            "{:?}",
            stats.mm
        );
        // (Units written back may since have gone with their pages.)
        assert!(stats.bd.bd_writes > 0, "{:?}", stats.bd);
    }
}

/// The cold pass packs neighbours into units: smaller than their forms, read back whole,
/// a rewrite or removal takes a page out (its unit freed with its last member, re-packed
/// when half garbage, its frames moved by the compaction after the pass). A damaged frame
/// is a unit test of the store (`a_damaged_unit_is_a_checksum_error`).
#[test]
fn cold_units_pack_neighbours_and_let_them_go() {
    let pages = common::sample_pages();
    let n = pages.len() as u64;
    let store = tiered().build();
    insert_all(&store, &pages);
    store.recompress_selected(Selection::all());
    let warm = store.stats();
    let cold = store.recompress_selected(Selection::all().level(14));
    let packed = store.stats();
    assert!(
        packed.units.units > 0 && packed.units.pages > n / 2,
        "{:?}",
        packed.units
    );
    assert_eq!(packed.mm.orig_data_size, warm.mm.orig_data_size);
    assert!(
        packed.mm.compr_data_size < warm.mm.compr_data_size * 95 / 100,
        "warm {} cold {} ({cold})",
        warm.mm.compr_data_size,
        packed.mm.compr_data_size
    );
    assert_holds(&store, &pages);
    // Reads of neighbours, backwards (each unit decoded once per thread either way).
    for id in (0..n).rev() {
        assert!(
            *store.get(id).unwrap().unwrap() == pages[id as usize],
            "page {id}"
        );
    }
    // Rewrite half the pages: they leave their units, which are then half garbage.
    for id in (0..n).step_by(2) {
        store
            .insert(id, &pages[(id as usize + 1) % pages.len()])
            .unwrap();
    }
    let halved = store.stats();
    assert_eq!(halved.units.units, packed.units.units);
    assert_eq!(
        halved.units.dead_pages,
        packed.units.pages / 2,
        "{:?}",
        halved.units
    );
    let again = store.recompress_selected(Selection::all().level(14));
    assert!(again.rewritten > 0, "{again}");
    let repacked = store.stats();
    assert!(
        repacked.units.dead_pages < halved.units.dead_pages,
        "{:?}",
        repacked.units
    );
    for id in 0..n {
        let want = if id % 2 == 0 {
            (id as usize + 1) % pages.len()
        } else {
            id as usize
        };
        assert!(*store.get(id).unwrap().unwrap() == pages[want], "page {id}");
    }
    // Remove every page: the units go with their last members.
    for id in 0..n {
        store.discard(id);
    }
    let empty = store.stats();
    assert_eq!(empty.units, zpage::store::UnitStats::default());
    assert_eq!(empty.mm.compr_data_size, 0);
    assert_eq!(empty.mm.orig_data_size, 0);
}

#[test]
fn the_background_worker_runs_the_idle_pass_and_stops_with_the_store() {
    let pages = common::sample_pages();
    let store = tiered()
        .background(Background::every(Duration::from_millis(20)).idle_after(Duration::ZERO))
        .build_shared();
    insert_all(&store, &pages);
    let fast = store.stats().mm.compr_data_size;
    let mut waited = 0;
    while store.stats().mm.compr_data_size >= fast * 9 / 10 {
        std::thread::sleep(Duration::from_millis(20));
        waited += 1;
        assert!(waited < 500, "the worker did not run");
    }
    assert_holds(&store, &pages);
    let weak = Arc::downgrade(&store);
    drop(store);
    // The worker holds the store only during a pass: it is gone soon after.
    for _ in 0..250 {
        if weak.strong_count() == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the worker kept the store alive");
}

/// `Duration::MAX` is "no bound" wherever a duration is taken: never a panic.
#[test]
fn duration_max_means_no_bound() {
    let store = PageStore::builder()
        .profile(Profile::Words)
        .idle_profile(Profile::Dense)
        .background(
            Background::every(Duration::MAX)
                .idle_after(Duration::MAX)
                .cold_after(Duration::MAX, 16)
                .mixed_after(Duration::MAX)
                .writeback_after(Duration::MAX),
        )
        .build_shared();
    let pages = common::sample_pages();
    for (id, page) in (0..).zip(pages.iter().take(64)) {
        store.insert(id, page).unwrap();
    }
    let done = store.recompress_selected(Selection::all().time_budget(Duration::MAX));
    assert_eq!(done.examined, 64);
    assert!(!done.cut_short);
    let pass = store.idle_pass(
        &Background::every(Duration::MAX)
            .cold_after(Duration::MAX, 16)
            .mixed_after(Duration::MAX),
    );
    assert_eq!(
        pass.cold.map(|cold| cold.examined),
        Some(0),
        "no page is that old"
    );
    assert_eq!(pass.coldest.map(|coldest| coldest.examined), Some(0));
    assert_eq!(store.mark_idle(Some(Duration::MAX)), 0);
}

/// Writeback moves whole units, one record a piece of the frame, their pages untouched:
/// a failed write leaves them in memory, a unit a page left during the pass is not taken,
/// every page reads back from the records (a damaged one is an error), and the records
/// are freed with the unit's last page.
#[test]
fn writeback_moves_whole_units() {
    let pages = common::sample_pages();
    let backing = Arc::new(Faulty::new(pages.len() as u64));
    let store = tiered().backing(backing.clone()).build();
    insert_all(&store, &pages);
    store.recompress_selected(Selection::all());
    store.recompress_selected(Selection::all().level(14));
    let packed = store.stats();
    assert!(packed.units.units > 1, "{:?}", packed.units);
    // A failed write: nothing moves.
    *backing.refuse_writes.lock().unwrap() = true;
    let failed = store.writeback(Selection::all()).unwrap();
    *backing.refuse_writes.lock().unwrap() = false;
    assert!(failed.error.is_some() && failed.failed > 0, "{failed}");
    assert_eq!(store.stats().units, packed.units);
    assert_holds(&store, &pages);
    let back = store.writeback(Selection::all()).unwrap();
    let after = store.stats();
    assert_eq!(back.error, None, "{back}");
    assert_eq!(after.mm.compr_data_size, 0, "{back}");
    assert_eq!(after.mm.orig_data_size, packed.mm.orig_data_size);
    assert_eq!(
        after.units.pages, packed.units.pages,
        "its pages still name it"
    );
    assert_eq!(after.units.stored_bytes, 0);
    assert_eq!(after.units.backed_bytes, packed.units.stored_bytes);
    assert_eq!(back.written, packed.pages - packed.mm.same_pages);
    // bd_count counts records (4 KiB blocks), as zram's does: a unit's are its pieces.
    let held: u64 = after.classes.values().map(|c| c.stored_bytes).sum();
    assert_eq!(held, 0);
    assert_eq!(after.backed_bytes, back.bytes_freed);
    assert!(after.bd.bd_count < back.written, "{:?}", after.bd);
    assert_holds(&store, &pages);
    // A damaged record of a unit is an error for its pages, never other bytes.
    let member = (0..pages.len() as u64)
        .find(|&id| store.stored_class(id) == Some(Class::Zstd))
        .expect("a unit page");
    let mut corrupted = 0;
    for slot in 0..pages.len() {
        let mut records = backing.records.lock().unwrap();
        if !records[slot].is_empty() {
            records[slot][0] ^= 1;
            corrupted += 1;
        }
    }
    assert!(corrupted > 0);
    let read = std::thread::spawn({
        let store = Arc::new(store);
        move || (store.read(member).map(|_| ()), store)
    });
    let (result, store) = read.join().unwrap();
    assert!(
        matches!(
            result,
            Err(StoreError::Checksum { .. } | StoreError::Corrupt { .. })
        ),
        "{result:?}"
    );
    // Every page gone: the records go with the units.
    for id in 0..pages.len() as u64 {
        store.discard(id);
    }
    let empty = store.stats();
    assert_eq!(empty.units, zpage::store::UnitStats::default());
    assert_eq!((empty.bd.bd_count, empty.backed_bytes), (0, 0));
}

/// The coldest pass weighs each unit once against its pages alone (mixed, or in the idle
/// form where a mixed form would pass the decoder's budget), and each page the cold pass
/// left alone against its mixed form: it keeps whichever is smaller, frees the units its
/// pages left, and loses nothing.
#[test]
fn the_coldest_pass_weighs_each_unit_and_page_once() {
    let pages = common::sample_pages();
    let store = tiered().build();
    insert_all(&store, &pages);
    store.recompress_selected(Selection::all());
    store
        .train_dictionaries()
        .unwrap()
        .expect("the sample trains a set");
    store.recompress_selected(Selection::all().again());
    store.recompress_selected(Selection::all().level(16));
    let cold = store.stats();
    let done = store.recompress_selected(Selection::all().mixed());
    let coldest = store.stats();
    // Every unit's pages are weighed (encoded, or judged from a sample of the unit), and
    // every page no unit took that is not raw; some units stay.
    let alone: u64 = [Class::Delta, Class::General, Class::Zstd, Class::Words]
        .into_iter()
        .map(|class| cold.class(class).pages)
        .sum();
    assert!(
        alone > 0,
        "some pages of the sample are left alone by the cold pass"
    );
    assert_eq!(done.examined, cold.units.pages + alone, "{done}");
    assert!(done.examined > done.rewritten, "{done}");
    assert_eq!(done.failed + done.raced + done.refused, 0, "{done}");
    assert!(done.rewritten > 0, "{done}");
    // Those rewritten left their units, or were pages alone.
    let left = cold.units.pages - coldest.units.pages;
    assert!(
        left > 0 && left <= done.rewritten,
        "{done}: {left} left units"
    );
    assert!(coldest.units.units < cold.units.units);
    assert!(
        coldest.mm.compr_data_size < cold.mm.compr_data_size,
        "{done}: {} then {}",
        cold.mm.compr_data_size,
        coldest.mm.compr_data_size
    );
    // The pages that left are mixed, or in the idle form.
    let mixed = coldest.class(Class::Mixed).pages;
    assert!(
        mixed > 0 && mixed <= done.rewritten,
        "{done}: {mixed} mixed"
    );
    let held: u64 = coldest.classes.values().map(|c| c.stored_bytes).sum();
    assert_eq!(
        held + coldest.units.stored_bytes,
        coldest.mm.compr_data_size
    );
    assert_holds(&store, &pages);
    let again = store.recompress_selected(Selection::all().mixed());
    assert_eq!(again.examined, 0, "{again}");
}

/// One pass of the worker with every tier: idle, cold units, coldest, each over what the
/// one before left, and every page reads back.
#[test]
fn an_idle_pass_runs_every_tier_in_turn() {
    let pages = common::sample_pages();
    let store = tiered().build();
    insert_all(&store, &pages);
    let pass = store.idle_pass(
        &Background::every(Duration::ZERO)
            .idle_after(Duration::ZERO)
            .cold_after(Duration::ZERO, 16)
            .mixed_after(Duration::ZERO),
    );
    assert!(pass.recompressed.rewritten > 0, "{pass}");
    assert!(
        pass.cold.as_ref().is_some_and(|c| c.rewritten > 0),
        "{pass}"
    );
    let coldest = pass.coldest.as_ref().expect("configured");
    assert!(coldest.examined > 0, "{pass}");
    assert_eq!(coldest.failed, 0, "{pass}");
    assert_holds(&store, &pages);
}

/// A full store that evicts lets cold units go too, each whole (its frame is freed only
/// with its last page): new pages keep going in, what stays reads back, the listener
/// hears every eviction.
#[test]
fn eviction_at_the_limit_takes_pages_of_units() {
    let pages = common::sample_pages();
    let evicted = Arc::new(Mutex::new(Vec::new()));
    let store = {
        let sink = evicted.clone();
        tiered()
            .on_full(zpage::OnFull::Evict)
            .on_removal(move |id, _| sink.lock().unwrap().push(id))
            .build()
    };
    insert_all(&store, &pages);
    store.recompress_selected(Selection::all());
    store.recompress_selected(Selection::all().level(14));
    let packed = store.stats();
    assert!(packed.units.pages > 0);
    // Reads of some pages give them a second chance: the hand comes to a unit's pages
    // out of order.
    for id in (0..pages.len() as u64).step_by(3) {
        store.get(id).unwrap();
    }
    // Room for about half of what the units hold: new pages push units' pages out.
    store.set_mem_limit(Some(packed.mm.mem_used_total / 2));
    let n = pages.len() as u64;
    for (id, page) in (n..).zip(&pages) {
        store.insert(id, page).unwrap();
    }
    let evicted = evicted.lock().unwrap().clone();
    assert!(evicted.iter().any(|&id| id < n), "units' pages evicted");
    let after = store.stats();
    assert!(
        after.mm.mem_used_max <= packed.mm.mem_used_max,
        "memory never grew"
    );
    assert!(after.units.units < packed.units.units, "{:?}", after.units);
    // A unit goes whole (a page of it alone frees nothing): none is left part dead.
    assert_eq!(after.units.dead_pages, 0, "{:?}", after.units);
    for (id, page) in (0..).zip(pages.iter().chain(&pages)) {
        if let Some(stored) = store.get(id).unwrap() {
            assert!(*stored == *page, "page {id}");
        } else {
            assert!(evicted.contains(&id), "page {id} lost, not evicted");
        }
    }
}

/// Written-back units stay written back: neither the cold pass (packing again) nor the
/// coldest (the mixed form) brings their pages into memory.
#[test]
fn passes_leave_written_back_units_where_they_are() {
    let pages = common::sample_pages();
    let store = tiered()
        .backing(Arc::new(Faulty::new(pages.len() as u64)))
        .build();
    insert_all(&store, &pages);
    store.recompress_selected(Selection::all());
    store.recompress_selected(Selection::all().level(14));
    store.writeback(Selection::all()).unwrap();
    // Half of every unit's pages rewritten (in memory now): the units are half garbage.
    let n = pages.len() as u64;
    for id in (0..n).step_by(2) {
        store.insert(id, &pages[id as usize]).unwrap();
    }
    let before = store.stats();
    assert!(before.units.dead_pages > 0 && before.units.stored_bytes == 0);
    store.recompress_selected(Selection::all().level(14));
    store.recompress_selected(Selection::all().mixed());
    let after = store.stats();
    assert_eq!(after.units.backed_bytes, before.units.backed_bytes);
    assert_eq!(after.units.dead_pages, before.units.dead_pages);
    assert_holds(&store, &pages);
}

/// At its memory limit a store that writes back (OnFull::WriteBack) makes room from its
/// cold units too: where the hand finds only units' pages, it writes their units whole,
/// so inserts go on succeeding and every page reads back.
#[test]
fn writeback_at_the_limit_moves_units() {
    let pages = common::sample_pages();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = zpage::store::BackingFile::open(&dir.path().join("backing"), 64 << 20).unwrap();
    let store = tiered()
        .backing(Arc::new(file))
        .on_full(zpage::OnFull::WriteBack)
        .build();
    let half = pages.len() / 2;
    insert_all(&store, &pages[..half]);
    store.recompress_selected(Selection::all());
    store.recompress_selected(Selection::all().level(16));
    let cold = store.stats();
    assert!(cold.units.pages as usize > half / 2, "{:?}", cold.units);
    // The limit where the store is now: every later insert needs room.
    store.set_mem_limit(Some(cold.mm.mem_used_total));
    for (id, page) in (0..).zip(&pages).skip(half) {
        store
            .insert(id, page)
            .unwrap_or_else(|e| panic!("page {id}: {e}"));
    }
    let full = store.stats();
    assert!(
        full.units.backed_bytes > 0,
        "units written back: {:?}",
        full.units
    );
    assert_eq!(full.io.failed_writes, 0);
    assert!(full.mm.mem_used_total <= cold.mm.mem_used_total, "{full:?}");
    assert_holds(&store, &pages);
}
