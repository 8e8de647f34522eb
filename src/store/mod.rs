//! `PageStore`: a concurrent, memory-limited store of 4 KiB pages, compressed by the
//! pattern engine, with a hot tier of decoded pages. This file is the store's face (its
//! fields and its calls); what happens to a page is in its own file:
//!
//! | file | job |
//! |---|---|
//! | `lifecycle` | the page states and every transition (the state diagram) |
//! | `hot` | the hot tier's policy (second-chance LRU, reads without a write lock) |
//! | `evict` | what full means ([`OnFull`]), the eviction hand, [`RemovalCause`] |
//! | `compact` | incremental compaction: memory given back by itself |
//! | `tiers` | idle marking, the idle and cold passes, the background worker |
//! | `writeback` | moving cold forms to the backing store |
//! | `builder`, `error`, `stats` | configuration, errors, statistics |
//! | `table`, `slab`, `dicts`, `backing` | metadata, allocator, dictionaries, devices |
//!
//! # Invariants
//! - Lock order: compactor, shard, allocator, dictionary registry. No lock is held while
//!   a page is encoded or decoded, while the backing store does I/O, or while the
//!   listener runs: work is done on a copy and installed only if the page is unchanged
//!   (see `lifecycle`).
//! - Accessors copy decoded bytes out (into the caller's buffer, an owned page, or a
//!   stack page lent to a closure); no reference into the store ever leaves a lock.
//! - An operation that fails (memory limit, corrupt form, an I/O error of the backing
//!   store) changes no page's content.
//! - Stored bytes carry a CRC-32, checked on every read: corruption is an error, never
//!   wrong data.

mod backing;
mod builder;
mod compact;
mod dicts;
mod error;
mod evict;
mod hot;
mod lifecycle;
#[cfg(feature = "redis")]
mod redis;
mod slab;
mod stats;
mod table;
mod tiers;
mod units;
mod writeback;

pub use backing::{Backing, BackingFile};
pub use builder::StoreBuilder;
pub use error::{IoError, StoreError};
pub use evict::{OnFull, RemovalCause};
#[cfg(feature = "redis")]
pub use redis::{RedisBacking, RedisOpenError, RedisOptions};
pub use slab::SLAB_BYTES;
pub use stats::{BdStat, ClassStats, IoStat, MmStat, Stats};
pub use tiers::{Background, IdlePass, Recompressed, Selection};
pub use units::UnitStats;
pub use writeback::WrittenBack;

use crate::codec::Class;
use crate::codec::dictset::{self, DictionarySet, TrainTarget};
use crate::engine::Engine;
use crate::page::Page;
use crate::sync::{Arc, AtomicU64, Ordering, RwLock, RwLockWriteGuard};
use backing::Slots;
use compact::Compactor;
use dicts::Dicts;
use evict::Listener;
use lifecycle::{Encoding, Shard};
use slab::Slabs;
use stats::Counters;

/// The zstd level of pages encoded with a dictionary unless the builder says otherwise
/// (zram's best configuration runs level 8 with a dictionary too).
pub const DICTIONARY_LEVEL: i32 = 8;

/// The zstd level of a cold pass the tools run ([`Selection::level`]) unless told
/// otherwise (the README's "Tiers" has what level 16 buys over the idle pass's level 8,
/// and what 19 adds).
pub const COLD_LEVEL: i32 = 16;

/// Pages a cold unit holds unless [`StoreBuilder::cold_unit_pages`] says otherwise,
/// chosen by ratio against read cost (the README's "Cold units" has the measurements).
pub const DEFAULT_UNIT_PAGES: usize = 64;

/// The allocator under its write lock; dropping it publishes the allocator's totals to
/// the store's counters, so every change is published, whichever path made it.
struct SlabsMut<'a> {
    slabs: RwLockWriteGuard<'a, Slabs>,
    counters: &'a Counters,
}

impl std::ops::Deref for SlabsMut<'_> {
    type Target = Slabs;
    fn deref(&self) -> &Slabs {
        &self.slabs
    }
}

impl std::ops::DerefMut for SlabsMut<'_> {
    fn deref_mut(&mut self) -> &mut Slabs {
        &mut self.slabs
    }
}

impl Drop for SlabsMut<'_> {
    fn drop(&mut self) {
        self.counters.publish(self.slabs.totals());
    }
}

/// A shard and its read-side counters, on their own cache lines so that threads working
/// in different shards share nothing.
#[repr(align(128))]
struct ShardSlot {
    shard: RwLock<Shard>,
    /// Pages the shard's hot tier may hold (fixed at build time, so read without the lock).
    hot_capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    failed_reads: AtomicU64,
}

impl std::fmt::Debug for PageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageStore")
            .field("pages", &self.len())
            .field("shards", &self.shards.len())
            .field("profile", &self.engine.model().profile())
            .field("on_full", &self.on_full)
            .finish_non_exhaustive()
    }
}

/// A concurrent compressed page store. See the module docs for its state machine.
///
/// `Send + Sync`: share it in an `Arc`; readers of different pages do not meet on a lock.
///
/// ```
/// use std::sync::Arc;
/// use zpage::{Page, PageStore, StoreError};
///
/// let store = Arc::new(PageStore::builder().mem_limit(1 << 20).build());
/// let writer = {
///     let store = store.clone();
///     std::thread::spawn(move || {
///         for id in 0..64 {
///             store.insert(id, &Page::filled(id)).unwrap(); // same-filled: metadata only
///         }
///     })
/// };
/// writer.join().unwrap();
/// assert_eq!(store.len(), 64);
/// assert!(*store.remove(3)?.unwrap() == *Page::filled(3));
/// assert!(!store.contains(3));
/// // Bytes that are not one page are refused, not truncated.
/// assert_eq!(store.insert_bytes(9, &[0; 10]), Err(StoreError::PageLength { len: 10 }));
/// # Ok::<(), StoreError>(())
/// ```
pub struct PageStore {
    engine: Engine,
    shards: Box<[ShardSlot]>,
    shard_bits: u32,
    slabs: RwLock<Slabs>,
    /// Cold units (after the allocator in the lock order).
    units: RwLock<units::Units>,
    /// Pages a cold pass packs into one unit (1: each page alone, with the mixed form).
    unit_pages: usize,
    counters: Counters,
    dicts: Dicts,
    /// The zstd level of forms encoded with a dictionary.
    dictionary_level: i32,
    /// The engine of the idle pass, when it differs from the insert path's.
    idle_engine: Option<Engine>,
    tier: Option<BackedTier>,
    /// Pages writeback may still write (`u64::MAX`: no limit), as zram's `writeback_limit`.
    writeback_limit: AtomicU64,
    /// Second 0 of the access stamps, on the coarse monotonic clock.
    epoch: u64,
    /// Set when a background worker runs; dropping it (with the store) stops the worker.
    worker: tiers::WorkerLink,
    /// Dirty hot writes so far: each dirty page's metadata word, so that a write always
    /// changes a page's metadata.
    writes: AtomicU64,
    /// Where the eviction hand starts next (a shard index, modulo the shards).
    hand: AtomicU64,
    compactor: Compactor,
    on_full: OnFull,
    listener: Option<Listener>,
}

/// The backing store and the slots in use.
struct BackedTier {
    /// The user's device, outside what loom models (a plain `Arc`).
    device: std::sync::Arc<dyn Backing>,
    slots: Slots,
}

impl PageStore {
    /// A builder with the defaults (dense profile, no hot tier, no limit).
    pub fn builder() -> StoreBuilder {
        StoreBuilder::default()
    }

    /// A store with the default configuration (dense profile, no hot tier, no limit).
    pub fn new() -> PageStore {
        StoreBuilder::default().build()
    }

    /// The classifier and codecs this store uses.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The allocator, to change it (see [`SlabsMut`]).
    fn slabs_mut(&self) -> SlabsMut<'_> {
        SlabsMut {
            slabs: self.slabs.write(),
            counters: &self.counters,
        }
    }

    /// Stores (or overwrites) page `id`. The page is encoded with no lock held. At the
    /// memory limit the store compacts if enough of its memory is garbage, then does
    /// what [`StoreBuilder::on_full`] says: fail (the default), evict the least recently
    /// used pages, or write them back.
    ///
    /// # Errors
    /// [`StoreError::MemoryLimit`] when the page does not fit and the policy could not
    /// make room, [`StoreError::OutOfMemory`] when the kernel refuses memory; either way
    /// nothing changed, and the refusal is counted in `failed_writes`.
    ///
    /// # Examples
    /// ```
    /// use zpage::{Page, PageStore, StoreError};
    ///
    /// let store = PageStore::builder().mem_limit(8192).build(); // refuses when full
    /// let mut noise = Page::zeroed();
    /// let mut x = 1u64;
    /// for id in 0..3 {
    ///     for w in noise.words_mut() {
    ///         x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    ///         *w = x;
    ///     }
    ///     let result = store.insert(id, &noise);
    ///     assert_eq!(result.is_ok(), id < 2, "{result:?}");
    /// }
    /// assert!(matches!(store.insert(2, &noise), Err(StoreError::MemoryLimit { .. })));
    /// assert_eq!(store.stats().io.failed_writes, 2);
    /// # Ok::<(), StoreError>(())
    /// ```
    pub fn insert(&self, id: u64, page: &Page) -> Result<(), StoreError> {
        let slot = self.slot(id);
        // With a hot tier, one scan decides both the tier and a same-filled page's form
        // (without one, the engine's own scan does).
        let filled = (slot.hot_capacity > 0).then(|| page.same_filled_word());
        let result = if let Some(None) = filled {
            self.insert_hot(slot, id, page)
        } else {
            let how = filled.flatten().map_or(Encoding::Insert, Encoding::Filled);
            let encoded = self.encode(page, how);
            let replaced = self.with_room(|| self.install(&mut slot.shard.write(), id, &encoded));
            drop(encoded);
            replaced.map(|replaced| {
                if replaced {
                    self.notify([id], RemovalCause::Replaced);
                    self.compact_if_wasteful();
                }
            })
        };
        if result.is_err() {
            self.counters.failed_writes.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// The second of the store's clock (access stamps count from the store's start).
    fn now(&self) -> u32 {
        (coarse_seconds() - self.epoch).min(u64::from(u32::MAX >> 3)) as u32
    }

    /// Copies page `id` into `out`. The stored form is copied out under the page's shard
    /// lock and decoded with no lock held, so a slow decode (a cold page) holds up no
    /// other reader or writer.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the store does not hold `id`; [`StoreError::Checksum`],
    /// [`StoreError::Corrupt`] or [`StoreError::BackingRead`] if its stored form cannot be
    /// read (counted in `failed_reads`; the page stays).
    ///
    /// # Examples
    /// ```
    /// use zpage::{Page, PageStore, StoreError};
    ///
    /// let store = PageStore::new();
    /// store.insert(4, &Page::filled(9))?;
    /// let mut out = Page::zeroed();
    /// store.read_into(4, &mut out)?;
    /// assert!(out == *Page::filled(9));
    /// assert_eq!(store.read_into(5, &mut out), Err(StoreError::NotFound(5)));
    /// # Ok::<(), StoreError>(())
    /// ```
    pub fn read_into(&self, id: u64, out: &mut Page) -> Result<(), StoreError> {
        let slot = self.slot(id);
        if slot.hot_capacity > 0 {
            return self.read_hot(slot, id, out);
        }
        let now = self.now();
        self.read_page(id, out, |shard, _| {
            shard.table.touch(id, now);
            slot.misses.fetch_add(1, Ordering::Relaxed);
            true
        })?
        .map(drop)
        .ok_or(StoreError::NotFound(id))
    }

    /// Page `id` as a read gives it, but not counted as an access (the tiers' own reads).
    fn peek(&self, id: u64) -> Result<Option<Box<Page>>, StoreError> {
        let mut page = Page::boxed();
        Ok(self.read_page(id, &mut page, |_, _| true)?.map(|_| page))
    }

    /// Page `id`, or `None` if the store does not hold it.
    ///
    /// # Errors
    /// As [`PageStore::read_into`], but for `NotFound`.
    ///
    /// # Examples
    /// ```
    /// use zpage::{Page, PageStore};
    ///
    /// let store = PageStore::new();
    /// store.insert(1, &Page::filled(2))?;
    /// assert!(store.get(1)?.is_some_and(|page| *page == *Page::filled(2)));
    /// assert!(store.get(2)?.is_none());
    /// # Ok::<(), zpage::StoreError>(())
    /// ```
    pub fn get(&self, id: u64) -> Result<Option<Box<Page>>, StoreError> {
        match self.read(id) {
            Ok(page) => Ok(Some(page)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Stores `bytes`, which must be one page long, as page `id` (see [`PageStore::insert`]).
    ///
    /// # Errors
    /// [`StoreError::PageLength`] if `bytes` is not one page long; otherwise as
    /// [`PageStore::insert`].
    ///
    /// # Examples
    /// ```
    /// use zpage::{PageStore, StoreError};
    ///
    /// let store = PageStore::new();
    /// store.insert_bytes(1, &[7; 4096])?;
    /// assert_eq!(store.insert_bytes(2, &[7; 100]), Err(StoreError::PageLength { len: 100 }));
    /// # Ok::<(), StoreError>(())
    /// ```
    pub fn insert_bytes(&self, id: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let page = Page::from_slice(bytes).ok_or(StoreError::PageLength { len: bytes.len() })?;
        self.insert(id, &page)
    }

    /// Removes page `id` and returns what it held (`None` if absent), atomically: the
    /// page is decoded with no lock held, then unlinked only if it did not change
    /// meanwhile (else it is read again), so a concurrent insert of `id` is either
    /// returned or stays. The listener hears [`RemovalCause::Removed`]. To drop a page
    /// without decoding it, see [`PageStore::discard`].
    ///
    /// # Errors
    /// As [`PageStore::read_into`]: a page that cannot be read stays where it is.
    ///
    /// # Examples
    /// ```
    /// use zpage::{Page, PageStore};
    ///
    /// let store = PageStore::new();
    /// store.insert(1, &Page::filled(2))?;
    /// assert!(store.remove(1)?.is_some_and(|page| *page == *Page::filled(2)));
    /// assert!(store.remove(1)?.is_none());
    /// # Ok::<(), zpage::StoreError>(())
    /// ```
    pub fn remove(&self, id: u64) -> Result<Option<Box<Page>>, StoreError> {
        let slot = self.slot(id);
        let mut page = Page::boxed();
        loop {
            let Some(meta) = self.read_page(id, &mut page, |_, _| true)? else {
                return Ok(None);
            };
            let mut shard = slot.shard.write();
            if shard.table.get(id) != Some(meta) {
                continue;
            }
            self.unlink(&mut shard, id);
            drop(shard);
            self.removed(id);
            return Ok(Some(page));
        }
    }

    /// After a user's removal: counted, told, and compaction's chance.
    fn removed(&self, id: u64) {
        self.counters.notify_free.fetch_add(1, Ordering::Relaxed);
        self.notify([id], RemovalCause::Removed);
        self.compact_if_wasteful();
    }

    /// Page `id`; if absent, stores `make()`'s page first and returns it. `make` runs
    /// without any lock held (it may use the store); if another thread stores `id` in
    /// the meantime, that page is kept and returned, and `make`'s is dropped, so every
    /// caller gets the page the store holds. The page is stored compressed (the hot tier
    /// fills on reads).
    ///
    /// # Errors
    /// As [`PageStore::read_into`] for a present page, as [`PageStore::insert`] for a
    /// new one.
    ///
    /// # Examples
    /// ```
    /// use zpage::{Page, PageStore};
    ///
    /// let store = PageStore::new();
    /// let page = store.get_or_insert_with(3, || Page::filled(5))?;
    /// assert!(*page == *Page::filled(5));
    /// let again = store.get_or_insert_with(3, || unreachable!())?;
    /// assert!(*again == *Page::filled(5));
    /// # Ok::<(), zpage::StoreError>(())
    /// ```
    pub fn get_or_insert_with(
        &self,
        id: u64,
        make: impl FnOnce() -> Box<Page>,
    ) -> Result<Box<Page>, StoreError> {
        let (mut make, mut made) = (Some(make), None);
        loop {
            if let Some(page) = self.get(id)? {
                return Ok(page);
            }
            let page = made
                .take()
                .unwrap_or_else(|| make.take().expect("made once")());
            let encoded = self.encode(&page, Encoding::Insert);
            let installed = self
                .with_room(|| self.install_vacant(&mut self.slot(id).shard.write(), id, &encoded));
            drop(encoded);
            if installed? {
                return Ok(page);
            }
            // Stored by another thread since the first look: return that page (or, if it
            // is gone again, try this one once more).
            made = Some(page);
        }
    }

    /// Page `id` as an owned page.
    ///
    /// # Errors
    /// As [`PageStore::read_into`].
    ///
    /// # Examples
    /// ```
    /// use zpage::{Page, PageStore};
    ///
    /// let store = PageStore::new();
    /// store.insert(1, &Page::filled(2))?;
    /// assert!(*store.read(1)? == *Page::filled(2));
    /// assert!(store.read(2).is_err());
    /// # Ok::<(), zpage::StoreError>(())
    /// ```
    pub fn read(&self, id: u64) -> Result<Box<Page>, StoreError> {
        let mut page = Page::boxed();
        self.read_into(id, &mut page)?;
        Ok(page)
    }

    /// Runs `f` on a decoded copy of page `id`; the copy lives only for the call, so `f`
    /// may use the store freely (no lock is held while it runs).
    ///
    /// # Errors
    /// As [`PageStore::read_into`] (then `f` does not run).
    ///
    /// # Examples
    /// ```
    /// use zpage::{Page, PageStore};
    ///
    /// let store = PageStore::new();
    /// store.insert(1, &Page::filled(2))?;
    /// assert_eq!(store.with_page(1, |page| page.words()[0])?, 2);
    /// # Ok::<(), zpage::StoreError>(())
    /// ```
    pub fn with_page<R>(&self, id: u64, f: impl FnOnce(&Page) -> R) -> Result<R, StoreError> {
        let mut page = Page::zeroed();
        self.read_into(id, &mut page)?;
        Ok(f(&page))
    }

    /// Drops page `id` without decoding it; returns whether it was present. The
    /// listener hears [`RemovalCause::Removed`].
    pub fn discard(&self, id: u64) -> bool {
        let gone = self.unlink(&mut self.slot(id).shard.write(), id);
        if gone {
            self.removed(id);
        }
        gone
    }

    /// The class page `id` is stored as; for a page held only as a changed copy in the
    /// hot tier, the class the engine picks for it now (what it will be stored as).
    /// `None` when absent.
    pub fn stored_class(&self, id: u64) -> Option<Class> {
        let shard = self.slot(id).shard.read();
        let meta = shard.table.get(id)?;
        meta.stored.or_else(|| {
            let copy = shard.hot.peek(&id).expect("a dirty page is hot");
            Some(self.engine.classify(&copy.page).class)
        })
    }

    /// Whether the store holds page `id`.
    pub fn contains(&self, id: u64) -> bool {
        self.slot(id).shard.read().table.get(id).is_some()
    }

    /// How many pages the store holds.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.shard.read().table.len()).sum()
    }

    /// Whether the store holds no page.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids of the pages present, in no particular order. One shard at a time: a
    /// shard's ids are copied out under its read lock when the iterator reaches it
    /// (into one buffer the size of the largest shard, reused), so no lock is held
    /// between items and the store may be used freely while iterating. Every page
    /// present throughout the iteration is yielded once; one inserted or removed
    /// meanwhile may or may not be.
    pub fn ids(&self) -> Ids<'_> {
        Ids {
            store: self,
            next_shard: 0,
            batch: Vec::new(),
        }
    }

    /// Changes the memory limit (None: unlimited). Memory already used above a lower
    /// limit stays; only growth is refused.
    pub fn set_mem_limit(&self, limit: Option<u64>) {
        self.slabs_mut().set_limit(limit);
    }

    /// Trains dictionaries on the pages the store holds as zstd (in a store with an idle
    /// engine, the pages that engine would encode with zstd) and encodes new zstd pages
    /// with them from then on (pages stored before keep their form until they are
    /// rewritten or [`PageStore::recompress`]ed). Samples up to 1536 of those pages evenly, clusters them by their
    /// features, trains one dictionary per cluster and keeps the number of clusters (or
    /// none) that stores a held-out tenth of the sample smallest, counting the
    /// dictionaries' memory against what they save on the store's zstd pages; their
    /// total size is at most 1/16 of the compressed data (and 512 KiB), so a small store
    /// gets small dictionaries or none. A store that packs cold units also samples 64
    /// runs of neighbouring pages and gives each dictionary a planes twin where they show
    /// it pays ([`DictionarySet::with_twins`]). Returns the set installed, if any. No
    /// lock is held while it trains; stores and reads go on meanwhile.
    pub fn train_dictionaries(&self) -> Result<Option<Arc<DictionarySet>>, StoreError> {
        // 6 MiB of samples: about a hundred times the dictionaries zstd's trainer makes.
        const SAMPLE: usize = 1536;
        let idle = self.idle_engine.as_ref();
        let candidate = |class: Class| match idle {
            None => class == Class::Zstd,
            Some(_) => !class.is_inline(),
        };
        let mut ids: Vec<u64> = self
            .ids()
            .filter(|&id| self.stored_class(id).is_some_and(candidate))
            .collect();
        // In id order, so that the same pages give the same sample (and dictionaries)
        // whatever order the shards' maps keep them in.
        ids.sort_unstable();
        let step = ids.len().div_ceil(SAMPLE).max(1);
        let (mut pages, mut sampled) = (Vec::with_capacity(ids.len() / step + 1), 0);
        for &id in ids.iter().step_by(step) {
            if let Some(page) = self.peek(id)? {
                sampled += 1;
                if idle.is_none_or(|engine| engine.classify(&page).uses(Class::Zstd)) {
                    pages.push(page);
                }
            }
        }
        let zstd_pages = (ids.len() * pages.len() / sampled.max(1)) as u64;
        let refs: Vec<&Page> = pages.iter().map(|p| &**p).collect();
        let Some(first_id) = self.dicts.reserve_ids(dictset::MAX_TRAINED_CLUSTERS) else {
            return Ok(None);
        };
        let mm = self.counters.mm_stat();
        let target = TrainTarget {
            budget_bytes: ((mm.compr_data_size / 16) as usize).min(512 << 10),
            level: self.dictionary_level,
            plain_level: self.idle_engine().codec().zstd_level,
            first_id,
            served_pages: zstd_pages,
            max_clusters: dictset::MAX_TRAINED_CLUSTERS,
        };
        // A trainer that fails (samples too uniform) leaves the store as it was.
        let Some(set) = DictionarySet::train(&refs, target) else {
            return Ok(None);
        };
        let set = match self.unit_pages {
            pages if pages > 1 => {
                let units = self.sample_units(&ids, pages)?;
                let units: Vec<&[u8]> = units.iter().map(|u| &u[..]).collect();
                set.with_twins(&units, ids.len() as u64)
            }
            _ => set,
        };
        self.dicts.install(set);
        Ok(self.dicts.current())
    }

    /// Runs of `pages` neighbouring pages (in id order, as the cold pass packs them) from
    /// among `ids`, spread evenly, each as its concatenated pages: what planes twins are
    /// judged on ([`DictionarySet::with_twins`]). Pages gone meanwhile are skipped.
    fn sample_units(&self, ids: &[u64], pages: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        // 4 MiB of units: enough for a quarter of them to judge a twin.
        const UNITS: usize = 64;
        let step = ids.len().div_ceil(UNITS).max(pages);
        let mut units = Vec::new();
        for run in ids.chunks(step).filter_map(|chunk| chunk.get(..pages)) {
            let mut unit = Vec::with_capacity(pages * crate::PAGE_SIZE);
            for &id in run {
                if let Some(page) = self.peek(id)? {
                    unit.extend_from_slice(page.bytes());
                }
            }
            if !unit.is_empty() {
                units.push(unit);
            }
        }
        Ok(units)
    }

    /// Encodes new zstd pages with `set` from now on (renamed to ids of this store's and
    /// prepared at its dictionary level); pages stored before keep their form and their
    /// dictionaries, which are freed once no page names them.
    pub fn set_dictionaries(&self, set: &DictionarySet) {
        // Four billion dictionaries later there is no id left: keep the current set.
        let Some(first) = self.dicts.reserve_ids(set.dictionaries().len()) else {
            return;
        };
        let set = set
            .renamed(first, self.dictionary_level)
            .expect("a checked dictionary renames");
        self.dicts.install(set);
    }

    /// The dictionaries new zstd pages are encoded with, if any (to save with
    /// [`DictionarySet::save`]).
    pub fn dictionaries(&self) -> Option<Arc<DictionarySet>> {
        self.dicts.current()
    }

    /// Trains dictionaries if [`StoreBuilder::auto_dictionaries`] says it is time;
    /// whether it trained. Inserts never train: the background worker of a store built
    /// with [`StoreBuilder::build_shared`] calls this every second, and so does every
    /// idle pass; a store with neither calls it when it suits its owner (say, from a
    /// thread of its own, or between batches of inserts).
    ///
    /// ```
    /// use zpage::{Page, PageStore};
    ///
    /// let store = PageStore::builder().auto_dictionaries(1_000_000).build();
    /// store.insert(1, &Page::filled(3))?;
    /// assert!(!store.train_if_due()); // far from the mark: a counter read
    /// # Ok::<(), zpage::StoreError>(())
    /// ```
    pub fn train_if_due(&self) -> bool {
        let pages = match self.idle_engine {
            None => self.counters.pages_of(Class::Zstd),
            Some(_) => {
                let classes = self.counters.classes();
                Class::ALL
                    .iter()
                    .filter(|class| !class.is_inline())
                    .map(|class| classes[class.index()].pages)
                    .sum()
            }
        };
        if !self.dicts.begin_auto(pages) {
            return false;
        }
        // A failure to read a sampled page is the reader's to report, not the trainer's.
        let _ = self.train_dictionaries();
        self.dicts.trained(pages);
        true
    }

    /// The engine the idle pass encodes with.
    fn idle_engine(&self) -> &Engine {
        self.idle_engine.as_ref().unwrap_or(&self.engine)
    }

    /// zram's `mm_stat` fields, read without stopping any shard (each field exact at some
    /// instant of the call). `orig_data_size` counts the hot tier's changed copies too;
    /// the hot tier's memory is in [`Stats::hot_bytes`], outside zram's nine fields.
    pub fn mm_stat(&self) -> MmStat {
        self.counters.mm_stat()
    }

    /// The store's statistics: the counters (each exact at some instant of the call), and
    /// the per-shard figures (metadata, idle pages) gathered a shard at a time under its
    /// read lock, so no reader or writer waits for the whole store.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats {
            mm: self.counters.mm_stat(),
            bd: self.counters.bd_stat(),
            io: IoStat {
                failed_writes: self.counters.failed_writes.load(Ordering::Relaxed),
                notify_free: self.counters.notify_free.load(Ordering::Relaxed),
                ..IoStat::default()
            },
            backed_bytes: self.counters.bd_bytes.load(Ordering::Relaxed),
            bookkeeping_bytes: self.slabs.read().bookkeeping(),
            units: self.units.read().stats(),
            dictionary_bytes: self.dicts.memory_bytes(),
            dictionaries: self.dicts.count() as u64,
            hot_pages: self.counters.hot_pages.load(Ordering::Relaxed),
            hot_dirty_pages: self.counters.hot_dirty.load(Ordering::Relaxed),
            classes: Class::ALL
                .iter()
                .zip(self.counters.classes())
                .map(|(&class, figures)| (class, figures))
                .collect(),
            ..Stats::default()
        };
        stats.hot_bytes = stats.hot_pages * crate::PAGE_SIZE as u64;
        for slot in self.shards.iter() {
            let shard = slot.shard.read();
            stats.pages += shard.table.len() as u64;
            stats.metadata_bytes +=
                (shard.table.memory_bytes() + shard.queues.memory_bytes()) as u64;
            stats.idle_pages += shard.table.idle_count();
            stats.hot_hits += slot.hits.load(Ordering::Relaxed);
            stats.hot_misses += slot.misses.load(Ordering::Relaxed);
            stats.io.failed_reads += slot.failed_reads.load(Ordering::Relaxed);
        }
        if let Some(tier) = &self.tier {
            stats.bookkeeping_bytes += tier.slots.memory_bytes() as u64;
        }
        stats.bookkeeping_bytes += stats.units.registry_bytes;
        stats
    }

    /// Pages marked idle, counted a shard at a time.
    fn idle_pages(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.shard.read().table.idle_count())
            .sum()
    }

    fn slot(&self, id: u64) -> &ShardSlot {
        // Consecutive ids go to consecutive shards, rotated per group of
        // `64 << shard_bits` ids by a Fibonacci hash of the group, so that strided ids
        // do not all meet in one shard (see `Table::locate` for the metadata side).
        if self.shard_bits == 0 {
            return &self.shards[0];
        }
        let group = id >> (table::BLOCK_PAGES.trailing_zeros() + self.shard_bits);
        let rotation = group.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.shard_bits);
        &self.shards[(id.wrapping_add(rotation) & ((1 << self.shard_bits) - 1)) as usize]
    }
}

/// The iterator of [`PageStore::ids`].
#[derive(Debug)]
pub struct Ids<'a> {
    store: &'a PageStore,
    next_shard: usize,
    /// The current shard's ids not yet yielded (taken from the end).
    batch: Vec<u64>,
}

impl Iterator for Ids<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        loop {
            if let Some(id) = self.batch.pop() {
                return Some(id);
            }
            let slot = self.store.shards.get(self.next_shard)?;
            self.next_shard += 1;
            let shard = slot.shard.read();
            self.batch.extend(shard.table.iter().map(|(id, _)| id));
        }
    }
}

/// Seconds on the monotonic clock, coarse (its ticks are the kernel's, a few ms): all an
/// access stamp needs, read without the precise clock's cost.
fn coarse_seconds() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    now.tv_sec as u64
}

impl Default for PageStore {
    fn default() -> Self {
        PageStore::new()
    }
}

#[cfg(test)]
mod tests {
    use super::lifecycle::in_allocator;
    use super::slab::Handle;
    use super::table::Meta;
    use super::*;
    use crate::Profile;

    /// A store holding one general (LZ4) page, and that page's metadata.
    fn store_with_text_page() -> (PageStore, Page, Meta) {
        let store = PageStore::builder()
            .shards(1)
            .profile(Profile::Fast)
            .build();
        let mut page = Page::zeroed();
        for (i, byte) in page.bytes_mut().iter_mut().enumerate() {
            *byte = b"the quick brown fox jumps over the lazy dog "[i % 44] ^ (i / 512) as u8;
        }
        store.insert(5, &page).unwrap();
        let meta = store.shards[0].shard.read().table.get(5).unwrap();
        assert!(in_allocator(meta));
        (store, page, meta)
    }

    #[test]
    fn corrupt_bytes_fail_their_checksum() {
        let (store, _, meta) = store_with_text_page();
        let handle = Handle::from_bits(meta.word);
        let mut bytes = store.slabs.read().get(handle).to_vec();
        bytes[handle.len() / 2] ^= 0x10;
        store.slabs.write().overwrite(handle, &bytes);
        assert_eq!(store.read(5).unwrap_err(), StoreError::Checksum { id: 5 });
        assert_eq!(store.stats().io.failed_reads, 1);
    }

    #[test]
    fn malformed_form_with_a_matching_checksum_is_a_decode_error() {
        let (store, _, meta) = store_with_text_page();
        let handle = Handle::from_bits(meta.word);
        let garbage = vec![0xff; handle.len()];
        store.slabs.write().overwrite(handle, &garbage);
        let forged = Meta {
            checksum: crc32fast::hash(&garbage),
            ..meta
        };
        store.shards[0].shard.write().table.set(5, forged, None);
        assert!(matches!(
            store.read(5),
            Err(StoreError::Corrupt { id: 5, .. })
        ));
    }

    /// A unit whose frame was damaged in memory: its pages' reads are checksum errors,
    /// never other bytes; so is a page whose own CRC does not match its decoded bytes.
    #[test]
    fn a_damaged_unit_is_a_checksum_error() {
        let store = PageStore::builder().shards(1).cold_unit_pages(4).build();
        let pages: Vec<Box<Page>> = (0..4u8)
            .map(|n| {
                let mut page = Page::boxed();
                for (i, byte) in page.bytes_mut().iter_mut().enumerate() {
                    *byte = b"the quick brown fox jumps over the lazy dog "[i % 44] ^ n;
                }
                page
            })
            .collect();
        for (id, page) in (0..).zip(&pages) {
            store.insert(id, page).unwrap();
        }
        store.recompress_selected(crate::Selection::all().level(3));
        let meta = store.shards[0].shard.read().table.get(1).unwrap();
        assert!(meta.unit);
        assert!(*store.read(1).unwrap() == *pages[1]);
        // This thread keeps the unit decoded: a page whose CRC does not match it fails.
        let forged = Meta {
            checksum: meta.checksum ^ 1,
            ..meta
        };
        store.shards[0].shard.write().table.set(1, forged, None);
        assert_eq!(store.read(1).unwrap_err(), StoreError::Checksum { id: 1 });
        store.shards[0].shard.write().table.set(1, meta, None);
        // A damaged frame, read on a thread that has not decoded the unit.
        let piece = match &store.units.read().get(units::member_of(meta.word).0).frame {
            units::Frame::Memory(pieces) => pieces[0],
            units::Frame::Backed(_) => panic!("never written back"),
        };
        let mut bytes = store.slabs.read().get(piece).to_vec();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        store.slabs.write().overwrite(piece, &bytes);
        let store = std::sync::Arc::new(store);
        let reader = store.clone();
        let read = std::thread::spawn(move || reader.read(2).map(|_| ()))
            .join()
            .unwrap();
        assert_eq!(read, Err(StoreError::Checksum { id: 2 }));
        assert_eq!(store.stats().io.failed_reads, 2);
    }

    #[test]
    fn untouched_store_reads_back() {
        let (store, page, _) = store_with_text_page();
        assert!(*store.read(5).unwrap() == page);
        assert_eq!(store.stats().io.failed_reads, 0);
    }
}
