//! loom models of the store's page state machine. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --test loom`
//! (`.ci/run` does); under `cfg(loom)` every lock and atomic of the store is loom's, so
//! these explore the interleavings of the real code.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use zpage::store::StoreError;
use zpage::{Engine, PAGE_SIZE, Page, PageStore, Profile, Selection};

/// A page that compresses (general class) and carries `tag` in every word.
fn text_page(tag: u64) -> Page {
    let mut page = Page::zeroed();
    for (i, word) in page.words_mut().iter_mut().enumerate() {
        *word = tag << 32 | (i as u64 % 7);
    }
    page
}

/// A page stored raw (incompressible): 4096 bytes in the allocator.
fn noise_page(tag: u64) -> Page {
    let mut page = Page::zeroed();
    let mut x = tag | 1;
    for word in page.words_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *word = x;
    }
    page
}

fn engine() -> Engine {
    Engine::new(Profile::Fast)
}

/// A one-shard store (so every page meets on one lock) with a hot tier of `hot` bytes.
fn store(engine: &Engine, hot: usize) -> Arc<PageStore> {
    Arc::new(
        PageStore::builder()
            .shards(1)
            .hot_budget(hot)
            .engine(engine.clone())
            .build(),
    )
}

/// Runs a loom model whose body and threads have room for codec stacks (LZ4's hash
/// table, pages on the stack); the preemption bound comes from `LOOM_MAX_PREEMPTIONS`.
fn model(body: impl Fn() + Sync + Send + 'static) {
    let body = std::sync::Arc::new(body);
    loom::model(move || {
        let body = body.clone();
        spawn(move || body()).join().unwrap();
    });
}

fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
    thread::Builder::new()
        .stack_size(4 << 20)
        .spawn(f)
        .expect("loom thread")
}

/// Insert, read and remove race on one page: the reader sees the old version, the new
/// one or nothing, and the final state is the one of the last linearised writer.
#[test]
fn insert_read_remove_on_one_page() {
    let engine = engine();
    model(move || {
        let store = store(&engine, 0);
        store.insert(0, &text_page(1)).unwrap();
        let writer = {
            let store = store.clone();
            spawn(move || store.insert(0, &text_page(2)).unwrap())
        };
        let remover = {
            let store = store.clone();
            spawn(move || store.discard(0))
        };
        match store.read(0) {
            Ok(page) => assert!(*page == text_page(1) || *page == text_page(2)),
            Err(error) => assert_eq!(error, StoreError::NotFound(0)),
        }
        writer.join().unwrap();
        let removed = remover.join().unwrap();
        assert!(removed, "page 0 existed throughout until the remove");
        let stats = store.stats();
        match store.read(0) {
            Ok(page) => {
                assert!(*page == text_page(2), "remove ran first, insert last");
                assert_eq!(stats.mm.orig_data_size, PAGE_SIZE as u64);
            }
            Err(_) => assert_eq!((stats.mm.orig_data_size, stats.mm.compr_data_size), (0, 0)),
        }
    });
}

/// `remove` against an overwrite, with and without a hot tier: the page taken is one of
/// the two versions, and exactly the versions not taken remain (never both gone, never
/// one returned and still there).
#[test]
fn remove_against_an_overwrite() {
    let engine = engine();
    for hot in [0, PAGE_SIZE] {
        let engine = engine.clone();
        model(move || {
            let store = store(&engine, hot);
            store.insert(0, &text_page(1)).unwrap();
            let writer = {
                let store = store.clone();
                spawn(move || store.insert(0, &text_page(2)).unwrap())
            };
            let taken = store
                .remove(0)
                .unwrap()
                .expect("page 0 is there until taken");
            writer.join().unwrap();
            let left = store.get(0).unwrap();
            if *taken == text_page(1) {
                // Taken before the overwrite, which then put version 2 back.
                assert!(left.is_some_and(|p| *p == text_page(2)));
            } else {
                assert!(*taken == text_page(2), "one of the versions");
                assert!(left.is_none(), "version 2 taken: nothing is left");
            }
            assert_eq!(store.len(), usize::from(store.contains(0)));
            if hot == 0 {
                // Without a hot tier every page present is a stored form.
                let expected = store.len() as u64 * PAGE_SIZE as u64;
                assert_eq!(store.stats().mm.orig_data_size, expected);
            }
        });
    }
}

/// Two `get_or_insert_with` calls race a `discard` on an absent page: each caller gets
/// the page the store held when its call returned (one of the two made pages), and
/// the counters end consistent with what is left.
#[test]
fn get_or_insert_with_against_another_and_a_discard() {
    let engine = engine();
    model(move || {
        let store = store(&engine, 0);
        let other = {
            let store = store.clone();
            spawn(move || {
                *store
                    .get_or_insert_with(0, || Box::new(text_page(2)))
                    .unwrap()
            })
        };
        let discarder = {
            let store = store.clone();
            spawn(move || store.discard(0))
        };
        let mine = *store
            .get_or_insert_with(0, || Box::new(text_page(1)))
            .unwrap();
        let other = other.join().unwrap();
        discarder.join().unwrap();
        for page in [&mine, &other] {
            assert!(*page == text_page(1) || *page == text_page(2));
        }
        let discarded = !store.contains(0);
        if !discarded {
            // Nothing removed the page after both calls: they agree on it.
            let held = store.get(0).unwrap().expect("present");
            assert!(mine == *held || other == *held);
        }
        let expected = store.len() as u64 * PAGE_SIZE as u64;
        assert_eq!(store.stats().mm.orig_data_size, expected);
        assert_eq!(store.mm_stat(), store.stats().mm);
    });
}

/// A hot tier of one page: inserting page 1 evicts dirty page 0 (compressing it) while
/// page 0 is overwritten and read; the reader gets one of page 0's versions, and the
/// overwrite is never lost to the eviction.
#[test]
fn eviction_of_a_dirty_page_against_a_reader_and_a_writer() {
    let engine = engine();
    model(move || {
        let store = store(&engine, PAGE_SIZE);
        store.insert(0, &text_page(10)).unwrap();
        let inserter = {
            let store = store.clone();
            spawn(move || store.insert(1, &text_page(11)).unwrap())
        };
        let overwriter = {
            let store = store.clone();
            spawn(move || store.insert(0, &text_page(12)).unwrap())
        };
        let page = store.read(0).unwrap();
        assert!(*page == text_page(10) || *page == text_page(12));
        inserter.join().unwrap();
        overwriter.join().unwrap();
        assert!(*store.read(1).unwrap() == text_page(11));
        assert!(*store.read(0).unwrap() == text_page(12));
        let stats = store.stats();
        assert_eq!(stats.pages, 2);
        assert_eq!(stats.hot_pages, 1);
    });
}

/// Compaction moves the surviving objects out of a slab with garbage while a reader
/// reads them: the reader always decodes the right bytes, and the memory comes back.
#[test]
fn compaction_against_a_reader() {
    let engine = engine();
    model(move || {
        let store = Arc::new(
            PageStore::builder()
                .shards(2)
                .engine(engine.clone())
                .build(),
        );
        for id in 0..4 {
            store.insert(id, &noise_page(id + 1)).unwrap();
        }
        store.discard(1);
        store.discard(2);
        let compactor = {
            let store = store.clone();
            spawn(move || store.compact())
        };
        assert!(*store.read(3).unwrap() == noise_page(4));
        assert!(*store.read(0).unwrap() == noise_page(1));
        compactor.join().unwrap();
        let stats = store.stats();
        assert_eq!(stats.mm.compr_data_size, 2 * PAGE_SIZE as u64);
        assert!(stats.mm.pages_compacted > 0);
        assert!(stats.allocator_overhead() <= 0.03);
    });
}

/// Text the dense tree stores as zstd: words and numbers, `tag` among them.
fn words_page(tag: u64) -> Page {
    let mut text = String::new();
    let mut i = 0u64;
    while text.len() < PAGE_SIZE {
        text.push_str(&format!(
            "user_{} session={} path=/api/v{}/item ",
            (i * 7 + tag) % 97,
            i ^ tag,
            i % 5
        ));
        i += 1;
    }
    *Page::from_slice(&text.as_bytes()[..PAGE_SIZE]).unwrap()
}

/// A dictionary-set file (the `DictionarySet::to_bytes` layout) of one dictionary
/// trained on words pages: made outside the model, where loom objects cannot exist.
fn dictionary_file(seed: u64) -> Vec<u8> {
    let pages: Vec<Page> = (0..64).map(|i| words_page(seed * 1000 + i)).collect();
    let samples: Vec<&[u8]> = pages.iter().map(|p| &p.bytes()[..]).collect();
    let dict = zstd::dict::from_samples(&samples, 4096).expect("trains");
    let mut file = b"ZPGDICT\0".to_vec();
    file.extend_from_slice(&1u32.to_le_bytes());
    file.extend_from_slice(&1u32.to_le_bytes());
    file.extend_from_slice(&[0; 4 * zpage::classify::features::COUNT]);
    file.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    file.extend_from_slice(&dict);
    let crc = crc32fast::hash(&file);
    file.extend_from_slice(&crc.to_le_bytes());
    file
}

/// A dictionary set is replaced while a page is encoded with the old one and another
/// page (encoded with the old one too) is read and discarded: every read finds its
/// dictionary, and once no page names the old set it is gone.
#[test]
fn dictionary_install_against_encode_decode_and_retire() {
    use zpage::codec::dictset::DictionarySet;
    let dense = Engine::new(Profile::Dense);
    assert_eq!(dense.classify(&words_page(1)).class, zpage::Class::Zstd);
    let (file_a, file_b) = (dictionary_file(1), dictionary_file(2));
    model(move || {
        let a = DictionarySet::from_bytes(&file_a, 1, 3).unwrap();
        let b = DictionarySet::from_bytes(&file_b, 1, 3).unwrap();
        let store = Arc::new(
            PageStore::builder()
                .shards(1)
                .engine(dense.clone())
                .dictionary_level(3)
                .dictionaries(a)
                .build(),
        );
        store.insert(0, &words_page(1)).unwrap();
        assert_eq!(store.stats().dictionaries, 1);
        let installer = {
            let store = store.clone();
            spawn(move || {
                store.set_dictionaries(&b);
                store.discard(0)
            })
        };
        let writer = {
            let store = store.clone();
            spawn(move || store.insert(1, &words_page(2)).unwrap())
        };
        match store.get(0) {
            Ok(Some(page)) => assert!(*page == words_page(1)),
            Ok(None) => {}
            Err(e) => panic!("a read lost its dictionary: {e}"),
        }
        assert!(installer.join().unwrap(), "page 0 was there to discard");
        writer.join().unwrap();
        assert!(*store.read(1).unwrap() == words_page(2));
        store.discard(1);
        let stats = store.stats();
        assert_eq!(stats.dictionaries, 1, "only the current set is left");
        assert_eq!(stats.mm.compr_data_size, 0);
    });
}

/// Recompression against an overwrite of the same page: whichever runs first, the page
/// ends as the overwrite wrote it, and the counters match what is stored.
#[test]
fn recompression_against_an_overwrite() {
    use zpage::codec::dictset::DictionarySet;
    let dense = Engine::new(Profile::Dense);
    // Trained on pages 0 to 63: page 1's dictionary form is far smaller, so unless the
    // overwrite came first the recompression has a new form to install (without the
    // check that the page is unchanged, the model finds the overwrite lost).
    let file = dictionary_file(0);
    model(move || {
        let store = Arc::new(
            PageStore::builder()
                .shards(1)
                .engine(dense.clone())
                .dictionary_level(3)
                .build(),
        );
        store.insert(0, &words_page(1)).unwrap();
        store.set_dictionaries(&DictionarySet::from_bytes(&file, 1, 3).unwrap());
        let writer = {
            let store = store.clone();
            spawn(move || store.insert(0, &words_page(2)).unwrap())
        };
        let done = store.recompress();
        writer.join().unwrap();
        assert_eq!(done.failed, 0);
        assert_eq!(done.examined, 1);
        assert!(
            *store.read(0).unwrap() == words_page(2),
            "the overwrite stays"
        );
        let stats = store.stats();
        assert_eq!(stats.pages, 1);
        assert_eq!(stats.mm.orig_data_size, PAGE_SIZE as u64);
        assert_eq!(store.mm_stat(), stats.mm);
    });
}

/// A backing store in memory (its lock is never held across a loom point, so a plain
/// mutex is safe inside a model).
#[derive(Debug, Default)]
struct MemoryBacking(std::sync::Mutex<Vec<Vec<u8>>>);

impl zpage::store::Backing for MemoryBacking {
    fn slots(&self) -> u64 {
        4
    }
    fn write(&self, records: &[(u64, &[u8])]) -> std::io::Result<()> {
        let mut slots = self.0.lock().unwrap();
        slots.resize(4, Vec::new());
        for &(slot, record) in records {
            slots[slot as usize] = record.to_vec();
        }
        Ok(())
    }
    fn read(&self, slot: u64, out: &mut [u8]) -> std::io::Result<()> {
        let slots = self.0.lock().unwrap();
        // A record replaced by a shorter one reads short, as a file's end would.
        let record = slots[slot as usize].get(..out.len());
        out.copy_from_slice(record.ok_or(std::io::ErrorKind::UnexpectedEof)?);
        Ok(())
    }
    /// Dropped records are gone, as a Redis server's deleted keys are: a read of one is
    /// an error.
    fn discard(&self, dropped: &[u64]) -> std::io::Result<()> {
        let mut slots = self.0.lock().unwrap();
        for &slot in dropped {
            if let Some(record) = slots.get_mut(slot as usize) {
                record.clear();
            }
        }
        Ok(())
    }
}

/// A one-shard store of `engine`'s with a backing store in memory.
fn backed(engine: &Engine) -> zpage::StoreBuilder {
    PageStore::builder()
        .shards(1)
        .engine(engine.clone())
        .backing(std::sync::Arc::new(MemoryBacking::default()))
}

/// [`backed`], built.
fn backed_store(engine: &Engine) -> Arc<PageStore> {
    Arc::new(backed(engine).build())
}

/// Writeback against an overwrite of the same page: whichever runs first, the page ends
/// as the overwrite wrote it, its slot is freed if the write lost, and the counters match
/// what is stored.
#[test]
fn writeback_against_an_overwrite() {
    let engine = engine();
    model(move || {
        let store = backed_store(&engine);
        store.insert(0, &text_page(1)).unwrap();
        let writer = {
            let store = store.clone();
            spawn(move || store.insert(0, &text_page(2)).unwrap())
        };
        let done = store.writeback(zpage::store::Selection::all()).unwrap();
        writer.join().unwrap();
        assert_eq!(done.failed, 0);
        assert!(
            *store.read(0).unwrap() == text_page(2),
            "the overwrite stays"
        );
        let stats = store.stats();
        assert_eq!(stats.pages, 1);
        // The page is in one place: its slot or the allocator (a write that lost the race
        // to the overwrite freed its slot; one that wrote the overwrite holds it).
        let in_memory = u64::from(stats.mm.compr_data_size > 0);
        assert_eq!(stats.bd.bd_count + in_memory, 1);
        assert_eq!(done.written + done.raced, 1);
        assert_eq!(stats.bd.bd_writes, done.written);
        assert_eq!(store.mm_stat(), stats.mm);
    });
}

/// A read of a written-back page decodes its record with no lock held, while the page
/// is overwritten and written back again into the slot it had (freed slots are reused
/// first): the reader gets one of the page's versions, never an error (a record replaced
/// under it is read again).
#[test]
fn a_backed_read_against_an_overwrite_that_reuses_its_slot() {
    let engine = engine();
    model(move || {
        let store = backed_store(&engine);
        store.insert(0, &text_page(1)).unwrap();
        let first = store.writeback(zpage::store::Selection::all()).unwrap();
        assert_eq!(first.written, 1);
        let writer = {
            let store = store.clone();
            spawn(move || {
                store.insert(0, &text_page(2)).unwrap();
                store.writeback(zpage::store::Selection::all()).unwrap()
            })
        };
        let page = store.read(0).expect("a replaced record is read again");
        assert!(*page == text_page(1) || *page == text_page(2));
        let second = writer.join().unwrap();
        assert_eq!(second.written + second.raced, 1);
        assert!(*store.read(0).unwrap() == text_page(2));
        let stats = store.stats();
        assert_eq!(stats.io.failed_reads, 0);
        assert_eq!(
            stats.bd.bd_count + u64::from(stats.mm.compr_data_size > 0),
            1
        );
    });
}

/// At its memory limit (two raw pages) a store that evicts makes room for a third page
/// while another thread reads the oldest and a third overwrites the second: the reader
/// gets the page or nothing, never other bytes; every page missing at the end was
/// reported evicted, and the limit held throughout.
#[test]
fn eviction_on_full_against_a_reader_and_an_overwrite() {
    let engine = engine();
    model(move || {
        let evicted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = evicted.clone();
        let store = Arc::new(
            PageStore::builder()
                .shards(1)
                .engine(engine.clone())
                .mem_limit(2 * PAGE_SIZE as u64)
                .on_full(zpage::OnFull::Evict)
                .on_removal(move |id, cause| {
                    if cause == zpage::RemovalCause::Evicted {
                        sink.lock().unwrap().push(id);
                    }
                })
                .build(),
        );
        store.insert(0, &noise_page(1)).unwrap();
        store.insert(1, &noise_page(2)).unwrap();
        let inserter = {
            let store = store.clone();
            spawn(move || store.insert(2, &noise_page(3)).unwrap())
        };
        let overwriter = {
            let store = store.clone();
            spawn(move || store.insert(1, &noise_page(4)).unwrap())
        };
        if let Some(page) = store.get(0).unwrap() {
            assert!(*page == noise_page(1));
        }
        inserter.join().unwrap();
        overwriter.join().unwrap();
        let evicted = evicted.lock().unwrap().clone();
        let versions = [(0, noise_page(1)), (1, noise_page(4)), (2, noise_page(3))];
        for (id, page) in versions {
            match store.get(id).unwrap() {
                Some(read) => assert!(*read == page, "page {id}"),
                None => assert!(evicted.contains(&id), "page {id} lost, not evicted"),
            }
        }
        let mm = store.mm_stat();
        assert!(mm.mem_used_max <= 2 * PAGE_SIZE as u64, "{mm:?}");
        assert!(store.len() <= 2);
    });
}

/// A cold pass packs two pages (in two shards) into one unit while one is overwritten and
/// the other read: the overwrite stays (without the pack's "only if unchanged" check the
/// model finds it lost), the read sees the page, the unit holds what it still serves, and
/// once its last member goes its frame is freed (accounting back to the one page left).
#[test]
fn packing_a_unit_against_an_overwrite_and_a_read() {
    model(|| {
        let store = Arc::new(
            PageStore::builder()
                .shards(2)
                .engine(Engine::new(Profile::Dense))
                .cold_unit_pages(2)
                .build(),
        );
        store.insert(0, &words_page(1)).unwrap();
        store.insert(1, &words_page(3)).unwrap();
        let packer = {
            let store = store.clone();
            spawn(move || store.recompress_selected(Selection::all().level(1)))
        };
        store.insert(0, &words_page(2)).unwrap();
        assert!(
            *store.read(1).unwrap() == words_page(3),
            "the read sees page 1"
        );
        let done = packer.join().unwrap();
        assert_eq!(done.failed, 0);
        assert!(
            *store.read(0).unwrap() == words_page(2),
            "the overwrite stays"
        );
        assert!(*store.read(1).unwrap() == words_page(3));
        let stats = store.stats();
        assert_eq!(stats.pages, 2);
        assert_eq!(stats.mm.orig_data_size, 2 * PAGE_SIZE as u64);
        // Page 1 never changes, so it is in the unit whatever the order.
        assert!(
            stats.units.units == 1 && stats.units.pages >= 1,
            "{:?}",
            stats.units
        );
        assert_eq!(store.mm_stat(), stats.mm);
        store.discard(1);
        let alone = store.stats();
        assert!(alone.units.pages <= 1, "{:?}", alone.units);
        store.discard(0);
        let empty = store.stats();
        assert_eq!(empty.units.units, 0, "{:?}", empty.units);
        assert_eq!(empty.mm.compr_data_size, 0);
        assert_eq!(empty.mm.orig_data_size, 0);
    });
}

/// A store of `builder`'s with pages 0 and 1 (words pages 1 and 3) packed into one unit.
fn packed_pair(builder: zpage::StoreBuilder) -> Arc<PageStore> {
    let store = Arc::new(builder.cold_unit_pages(2).build());
    store.insert(0, &words_page(1)).unwrap();
    store.insert(1, &words_page(3)).unwrap();
    store.recompress_selected(Selection::all().level(1));
    assert_eq!(store.stats().units.pages, 2);
    store
}

/// Writeback of a unit (whole, its pages untouched) against an overwrite of one page and
/// a read of the other: the overwrite stays, the read sees its page (from memory or the
/// records), and once the unit's last page goes its records are freed.
#[test]
fn writeback_of_a_unit_against_an_overwrite_and_a_read() {
    let dense = Engine::new(Profile::Dense);
    model(move || {
        let store = packed_pair(backed(&dense));
        let writer = {
            let store = store.clone();
            spawn(move || {
                store.insert(0, &words_page(2)).unwrap();
                assert!(
                    *store.read(1).unwrap() == words_page(3),
                    "the read sees page 1"
                );
            })
        };
        let done = store.writeback(Selection::all()).unwrap();
        writer.join().unwrap();
        assert!(done.error.is_none());
        assert!(
            *store.read(0).unwrap() == words_page(2),
            "the overwrite stays"
        );
        assert!(*store.read(1).unwrap() == words_page(3));
        let stats = store.stats();
        assert_eq!(
            (stats.units.units, stats.units.pages),
            (1, 1),
            "{:?}",
            stats.units
        );
        assert_eq!(stats.mm.orig_data_size, 2 * PAGE_SIZE as u64);
        assert_eq!(store.mm_stat(), stats.mm);
        store.discard(1);
        store.discard(0);
        let empty = store.stats();
        assert_eq!(empty.units, zpage::store::UnitStats::default());
        assert_eq!((empty.bd.bd_count, empty.backed_bytes), (0, 0));
    });
}

/// Sets `store`'s memory limit to room for one more page, then writes two whole pages
/// at once (page 2 new, page 0 overwritten): the second needs room the store must make.
/// Returns the limit.
fn two_writes_at_the_limit(store: &Arc<PageStore>) -> u64 {
    let limit = store.mm_stat().mem_used_total + PAGE_SIZE as u64;
    store.set_mem_limit(Some(limit));
    let overwriter = {
        let store = store.clone();
        spawn(move || store.insert(0, &noise_page(7)).unwrap())
    };
    store.insert(2, &noise_page(8)).unwrap();
    overwriter.join().unwrap();
    limit
}

/// At its memory limit a store that writes back makes room for a new page by writing a
/// unit whole (the hand picks one of its pages, the registry's id span finds the other)
/// while one of the unit's pages is overwritten, which needs room too (both pages
/// incompressible, a whole page each, where the unit took less): both inserts
/// succeed, nothing is lost, and the memory limit holds.
#[test]
fn writeback_of_a_unit_at_the_limit_against_an_overwrite() {
    let dense = Engine::new(Profile::Dense);
    model(move || {
        let store = packed_pair(backed(&dense).on_full(zpage::OnFull::WriteBack));
        let limit = two_writes_at_the_limit(&store);
        for (id, page) in [(0, noise_page(7)), (1, words_page(3)), (2, noise_page(8))] {
            assert!(*store.read(id).unwrap() == page, "page {id}");
        }
        let stats = store.stats();
        assert!(stats.mm.mem_used_total <= limit, "{:?}", stats.mm);
        assert!(stats.bd.bd_count > 0, "room was made by writing back");
        assert_eq!(store.mm_stat(), stats.mm);
    });
}

/// At its memory limit a store that evicts makes room for a new page by dropping a unit
/// whole (a page of it alone frees nothing) while one of its pages is overwritten: every
/// page reads as its last write or is gone and was reported evicted, the limit holds, and
/// no unit is left holding dead pages.
#[test]
fn eviction_of_a_unit_at_the_limit_against_an_overwrite() {
    let dense = Engine::new(Profile::Dense);
    model(move || {
        let evicted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = evicted.clone();
        let store = packed_pair(
            PageStore::builder()
                .shards(1)
                .engine(dense.clone())
                .on_full(zpage::OnFull::Evict)
                .on_removal(move |id, cause| {
                    if cause == zpage::RemovalCause::Evicted {
                        sink.lock().unwrap().push(id);
                    }
                }),
        );
        let limit = two_writes_at_the_limit(&store);
        let evicted = evicted.lock().unwrap().clone();
        for (id, page) in [(0, noise_page(7)), (1, words_page(3)), (2, noise_page(8))] {
            match store.get(id).unwrap() {
                Some(read) => assert!(*read == page, "page {id}"),
                None => assert!(evicted.contains(&id), "page {id} lost, not evicted"),
            }
        }
        let stats = store.stats();
        assert!(stats.mm.mem_used_total <= limit, "{:?}", stats.mm);
        assert_eq!(stats.units.dead_pages, 0, "{:?}", stats.units);
        assert_eq!(store.mm_stat(), stats.mm);
    });
}

/// The coldest pass weighs a page the cold pass left alone (a unit of it alone did not
/// pay) while it is overwritten: the overwrite stays (the mixed form goes in only if the
/// page is unchanged), and the overwrite, not cold, is not weighed.
#[test]
fn mixing_a_page_alone_against_an_overwrite() {
    let dense = Engine::new(Profile::Dense);
    // The shipped sample's first page (a postgres heap page): a unit of it alone does not
    // pay at level 1, its mixed form does.
    let sample = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/data/postgres.pages"))
        .expect("the shipped sample");
    let mut first = Page::zeroed();
    first.bytes_mut().copy_from_slice(&sample[..PAGE_SIZE]);
    model(move || {
        let store = Arc::new(
            PageStore::builder()
                .shards(2)
                .engine(dense.clone())
                .cold_unit_pages(2)
                .build(),
        );
        store.insert(0, &first).unwrap();
        store.recompress_selected(Selection::all().level(1));
        assert_eq!(store.stats().units.pages, 0, "the page is left alone");
        let mixer = {
            let store = store.clone();
            spawn(move || store.recompress_selected(Selection::all().mixed()))
        };
        store.insert(0, &words_page(2)).unwrap();
        let done = mixer.join().unwrap();
        assert_eq!(done.failed, 0);
        // Taken before the overwrite, the page was mixed, or found changed.
        assert_eq!(done.rewritten + done.raced, done.examined, "{done}");
        assert!(
            *store.read(0).unwrap() == words_page(2),
            "the overwrite stays"
        );
        let stats = store.stats();
        assert_eq!(stats.mm.orig_data_size, PAGE_SIZE as u64);
        assert_eq!(store.mm_stat(), stats.mm);
        // The overwrite is not cold: no pass weighs it until a cold pass has been over it.
        let again = store.recompress_selected(Selection::all().mixed());
        assert_eq!(again.examined, 0, "{again}");
    });
}

/// The coldest pass moves a unit's pages to the mixed form while one is overwritten: the
/// overwrite stays (without the "only if unchanged" check the model finds it lost), the
/// other page is mixed (or, raced, left in its unit), and the unit is freed with its
/// last member.
#[test]
fn mixing_a_unit_against_an_overwrite() {
    let dense = Engine::new(Profile::Dense);
    model(move || {
        let store = packed_pair(PageStore::builder().shards(2).engine(dense.clone()));
        let mixer = {
            let store = store.clone();
            spawn(move || store.recompress_selected(Selection::all().mixed()))
        };
        store.insert(0, &words_page(2)).unwrap();
        let done = mixer.join().unwrap();
        assert_eq!(done.failed, 0);
        assert!(
            *store.read(0).unwrap() == words_page(2),
            "the overwrite stays"
        );
        assert!(*store.read(1).unwrap() == words_page(3));
        // Page 1 is mixed and its unit gone, or (page 0 left the unit while the pass
        // weighed it) both stay as they were for the next pass.
        let stats = store.stats();
        match store.stored_class(1) {
            Some(zpage::Class::Mixed) => assert_eq!(stats.units.units, 0, "{:?}", stats.units),
            _ => assert_eq!((stats.units.units, stats.units.pages), (1, 1)),
        }
        assert_eq!(stats.mm.orig_data_size, 2 * PAGE_SIZE as u64);
        assert_eq!(store.mm_stat(), stats.mm);
    });
}
