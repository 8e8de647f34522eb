//! The store as a cache: full is a policy (evict, or write back), the listener hears of
//! every page that leaves, and memory comes back by itself. Real memory: the shipped
//! sample, repeated with a mark per copy so that no two pages are the same.

mod common;

use common::{Rng, sample_pages};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use zpage::store::BackingFile;
use zpage::{OnFull, PAGE_SIZE, Page, PageStore, RemovalCause, StoreError};

/// `mib` MiB of real pages: the sample over and over, each copy's pages marked in their
/// first word.
fn real_memory(mib: usize) -> Vec<Page> {
    let sample = sample_pages();
    (0..mib * 256)
        .map(|i| {
            let mut page = sample[i % sample.len()];
            page.words_mut()[0] ^= (i / sample.len()) as u64 + 1;
            page
        })
        .collect()
}

type Heard = Arc<Mutex<Vec<(u64, RemovalCause)>>>;

fn listening(builder: zpage::StoreBuilder) -> (PageStore, Heard) {
    let heard: Heard = Arc::default();
    let sink = heard.clone();
    let store = builder
        .on_removal(move |id, cause| sink.lock().unwrap().push((id, cause)))
        .build();
    (store, heard)
}

/// Inserts every page into a store of `limit` bytes, checking the limit after every
/// insert and keeping the set of pages the listener says are present; returns it.
fn fill(store: &PageStore, heard: &Heard, pages: &[Page], limit: u64) -> HashSet<u64> {
    let mut present = HashSet::new();
    for (id, page) in (0..).zip(pages) {
        store.insert(id, page).unwrap();
        present.insert(id);
        let mm = store.mm_stat();
        assert!(mm.mem_used_total <= limit, "page {id}: {mm:?}");
        for (gone, cause) in heard.lock().unwrap().drain(..) {
            match cause {
                RemovalCause::Evicted => assert!(present.remove(&gone), "{gone} twice"),
                RemovalCause::WrittenBack => assert!(present.contains(&gone)),
                other => panic!("page {gone}: {other:?}"),
            }
        }
    }
    present
}

#[test]
fn evicting_on_full_never_fails_and_keeps_the_limit() {
    const LIMIT: u64 = 8 << 20;
    let pages = real_memory(40);
    let (store, heard) = listening(
        PageStore::builder()
            .profile(zpage::Profile::Fast)
            .mem_limit(LIMIT)
            .on_full(OnFull::Evict),
    );
    let present = fill(&store, &heard, &pages, LIMIT);
    assert!(present.len() < pages.len(), "the limit was reached");
    for (id, page) in (0..).zip(&pages) {
        assert_eq!(store.contains(id), present.contains(&id), "page {id}");
        if present.contains(&id) {
            assert!(*store.read(id).unwrap() == *page, "page {id}");
        }
    }
    let newest = pages.len() as u64 - 256;
    assert!((newest..pages.len() as u64).all(|id| present.contains(&id)));
    let stats = store.stats();
    assert!(stats.mm.mem_used_total >= LIMIT / 2, "{stats:?}");
    assert_eq!(stats.io.failed_writes, 0);
    assert_eq!(stats.pages, present.len() as u64);
}

#[test]
fn writing_back_on_full_keeps_every_page() {
    const LIMIT: u64 = 8 << 20;
    let pages = real_memory(32);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = BackingFile::open(&dir.path().join("backing"), 64 << 20).unwrap();
    let (store, heard) = listening(
        PageStore::builder()
            .profile(zpage::Profile::Fast)
            .mem_limit(LIMIT)
            .backing(Arc::new(file))
            .on_full(OnFull::WriteBack),
    );
    let present = fill(&store, &heard, &pages, LIMIT);
    assert_eq!(present.len(), pages.len(), "nothing is lost");
    for (id, page) in (0..).zip(&pages) {
        assert!(*store.read(id).unwrap() == *page, "page {id}");
    }
    let stats = store.stats();
    assert!(stats.bd.bd_count > 0, "{stats:?}");
    assert!(stats.mm.mem_used_total >= LIMIT / 2, "{stats:?}");
    assert_eq!(stats.io.failed_writes, 0);
}

#[test]
fn writing_back_fails_only_when_the_backing_store_is_full_too() {
    const LIMIT: u64 = 1 << 20;
    let pages = real_memory(8);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = BackingFile::open(&dir.path().join("backing"), 1 << 20).unwrap();
    let store = PageStore::builder()
        .profile(zpage::Profile::Fast)
        .mem_limit(LIMIT)
        .backing(Arc::new(file))
        .on_full(OnFull::WriteBack)
        .build();
    let mut refused = None;
    for (id, page) in (0..).zip(&pages) {
        if let Err(error) = store.insert(id, page) {
            assert!(matches!(error, StoreError::MemoryLimit { .. }), "{error}");
            refused = Some(id);
            break;
        }
    }
    let refused = refused.expect("1 MiB of memory and 1 MiB of backing store fill up");
    assert_eq!(store.stats().bd.bd_count, 256, "every slot was used first");
    assert!(!store.contains(refused));
    for id in 0..refused {
        assert!(*store.read(id).unwrap() == pages[id as usize], "page {id}");
    }
}

#[test]
fn memory_comes_back_by_itself_after_removals() {
    let pages = real_memory(16);
    let store = PageStore::builder().profile(zpage::Profile::Fast).build();
    for (id, page) in (0..).zip(&pages) {
        store.insert(id, page).unwrap();
    }
    let mut rng = Rng(11);
    let mut kept = Vec::new();
    for id in 0..pages.len() as u64 {
        if rng.below(2) == 0 {
            assert!(store.discard(id));
        } else {
            kept.push(id);
        }
    }
    let mm = store.mm_stat();
    let bound = mm.compr_data_size as f64 * 1.25 + (256 << 10) as f64;
    assert!(mm.mem_used_total as f64 <= bound, "{mm:?}");
    assert!(mm.pages_compacted > 0);
    for id in kept {
        assert!(*store.read(id).unwrap() == pages[id as usize], "page {id}");
    }
}

#[test]
fn the_listener_hears_every_cause_and_may_use_the_store() {
    let heard: Heard = Arc::default();
    let store = Arc::new_cyclic(|weak: &std::sync::Weak<PageStore>| {
        let (sink, weak) = (heard.clone(), weak.clone());
        PageStore::builder()
            .hot_budget(4 * PAGE_SIZE)
            .on_removal(move |id, cause| {
                // The listener runs with no lock held: it may read the store.
                let store = weak.upgrade().expect("the store outlives its calls");
                let present = store.contains(id);
                sink.lock().unwrap().push((id, cause));
                assert_eq!(present, cause == RemovalCause::Replaced, "{id} {cause:?}");
            })
            .build()
    });
    let pages = real_memory(1);
    store.insert(1, &pages[0]).unwrap();
    store.insert(1, &pages[1]).unwrap(); // hot, dirty: replaced
    store.insert(2, &Page::filled(3)).unwrap();
    store.insert(2, &pages[2]).unwrap(); // compressed, then hot
    assert!(store.remove(1).unwrap().is_some());
    assert!(store.discard(2));
    assert!(!store.discard(2));
    assert_eq!(
        *heard.lock().unwrap(),
        [
            (1, RemovalCause::Replaced),
            (2, RemovalCause::Replaced),
            (1, RemovalCause::Removed),
            (2, RemovalCause::Removed)
        ]
    );
}

/// Threads insert, read and remove their own pages while the store evicts at a small
/// limit: a read gives the page's latest version or nothing, never another version;
/// every page found missing was reported evicted; every page present reads back exactly.
#[test]
fn racing_evictions_never_give_a_wrong_page() {
    const THREADS: u64 = 4;
    const IDS: u64 = 512;
    let pages = Arc::new(real_memory(4));
    let (store, heard) = listening(
        PageStore::builder()
            .profile(zpage::Profile::Fast)
            .shards(4)
            .hot_budget(16 * PAGE_SIZE)
            .mem_limit(512 << 10)
            .on_full(OnFull::Evict),
    );
    let store = Arc::new(store);
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, pages) = (store.clone(), pages.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(t + 1);
                // id -> index into pages of the version last written (None: removed).
                let mut mine: HashMap<u64, Option<usize>> = HashMap::new();
                for _ in 0..20_000 {
                    let id = t * IDS + rng.below(IDS);
                    match rng.below(8) {
                        0..=3 => {
                            let version = rng.below(pages.len() as u64) as usize;
                            store.insert(id, &pages[version]).unwrap();
                            mine.insert(id, Some(version));
                        }
                        4..=6 => match (store.get(id).unwrap(), mine.get(&id)) {
                            (None, _) => {}
                            (Some(page), Some(Some(v))) => {
                                assert!(*page == pages[*v], "page {id}: another version")
                            }
                            (Some(_), _) => panic!("page {id} was never written or removed"),
                        },
                        _ => {
                            store.discard(id);
                            mine.insert(id, None);
                        }
                    }
                }
                mine
            })
        })
        .collect();
    let owned: Vec<HashMap<u64, Option<usize>>> =
        workers.into_iter().map(|w| w.join().unwrap()).collect();
    let evicted: HashSet<u64> = heard
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, cause)| *cause == RemovalCause::Evicted)
        .map(|&(id, _)| id)
        .collect();
    assert!(!evicted.is_empty(), "the limit was reached");
    for (id, version) in owned.iter().flatten() {
        match (store.get(*id).unwrap(), version) {
            (Some(page), Some(v)) => assert!(*page == pages[*v], "page {id}"),
            (None, Some(_)) => assert!(evicted.contains(id), "page {id} lost, not evicted"),
            (None, None) => {}
            (Some(_), None) => panic!("page {id} came back after its removal"),
        }
    }
    assert!(store.mm_stat().mem_used_total <= 512 << 10);
}

/// A store near its limit re-encodes its pages smaller in an idle pass: the memory the
/// smaller forms saved comes back although the limit leaves no room for new slabs.
#[test]
fn an_idle_pass_at_the_limit_gives_its_savings_back() {
    use zpage::{Profile, Selection};
    let pages = real_memory(8);
    let probe = PageStore::builder().profile(Profile::Words).build();
    for (id, page) in (0..).zip(&pages) {
        probe.insert(id, page).unwrap();
    }
    let need = probe.mm_stat().mem_used_total;
    let store = PageStore::builder()
        .profile(Profile::Words)
        .idle_profile(Profile::Dense)
        .mem_limit(need + need / 32)
        .build();
    for (id, page) in (0..).zip(&pages) {
        store.insert(id, page).unwrap();
    }
    let pass = store.recompress_selected(Selection::all());
    assert!(pass.rewritten > 0 && pass.refused == 0, "{pass}");
    let stats = store.stats();
    assert!(stats.mm.mem_used_total < need * 3 / 4, "{:?}", stats.mm);
    assert!(stats.allocator_overhead() < 0.10, "{:?}", stats.mm);
    eprintln!(
        "idle pass at the limit: {pass}; overhead {:.3}",
        stats.allocator_overhead()
    );
    for (id, page) in (0..).zip(&pages) {
        assert!(*store.read(id).unwrap() == *page, "page {id}");
    }
}
