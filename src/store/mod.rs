//! `PageStore`: a concurrent, memory-limited store of 4 KiB pages, compressed by the
//! pattern engine, with a hot tier of decoded pages.
//!
//! # Per-page state machine
//!
//! ```text
//!            insert (no hot room / zero, same)        read miss (hot tier on)
//!   Absent ──────────────────────────────────▶ Stored ─────────────────────▶ HotClean
//!     │  ▲                                      ▲  ▲                            │
//!     │  │ remove (from any state)              │  └──── evict (drop copy) ─────┘
//!     │  └──────────────────────────────────    │
//!     │ insert (hot tier on)                    │ evict (compress; may fail on the limit)
//!     └──────────────────────────▶ HotDirty ────┘
//!                   insert on HotClean/Stored ──▶ HotDirty (old form freed)
//!
//!   Stored ── recompress (idle pass: a smaller form, same content) ──▶ Stored
//!   Stored ── writeback (record written, then the allocator's copy freed) ──▶ Backed
//!   Backed ── read: decoded from the backing record, stays Backed (or HotClean)
//!   Backed ── insert / remove: the slot is freed with the page
//! ```
//!
//! - **Absent**: no metadata.
//! - **Stored**: a compressed form in the allocator (or, for zero and same-filled pages,
//!   the value in the metadata word).
//! - **HotClean**: stored, plus a decoded copy in the shard's LRU.
//! - **HotDirty**: only a decoded copy; it is compressed when the LRU evicts it.
//! - **Backed**: the stored form is a record in the backing store ([`Backing`]); only
//!   its metadata (slot, length, CRC) is in memory.
//!
//! Every page also carries an access stamp and an idle mark (see [`PageStore::mark_idle`]);
//! they steer the tiers (`tiers.rs`) and never decide what a page holds.
//!
//! Every transition of a page happens entirely under its shard's write lock, so no other
//! thread ever sees a page "in transition": readers of a page hold the shard's read lock
//! (write lock when the hot tier is on, since a hit reorders the LRU) until its bytes are
//! copied out. Inserts compress *before* taking the lock and install atomically; of two
//! racing inserts of one id, the later install wins.
//!
//! # Invariants
//! - Lock order is shard, then allocator; compaction follows it too.
//! - Accessors copy decoded bytes out (into the caller's buffer, an owned page, or a
//!   stack page lent to a closure); no reference into the store ever leaves a lock.
//! - An operation that fails (memory limit, corrupt form, an I/O error of the backing
//!   store) changes no page's content.
//! - Background work (recompression, writeback) never holds a shard lock while it
//!   encodes or writes: it copies a page out under the lock, works unlocked, and
//!   installs the result only if the page's metadata is unchanged since the copy.
//! - Stored bytes carry a CRC-32, checked on every read: corruption is an error, never
//!   wrong data.

mod backing;
mod dicts;
mod slab;
mod stats;
mod table;
mod tiers;

pub use backing::{Backing, BackingFile};
pub use slab::SLAB_BYTES;
pub use stats::{BdStat, ClassStats, IoStat, MmStat, Stats};
pub use tiers::{Background, IdlePass, Recompressed, Selection, WrittenBack};

use crate::classify::model::{Model, Profile};
use crate::codec::dictset::{self, DictionarySet, TrainTarget};
use crate::codec::{self, Class, DecodeError, RAW_SIZE};
use crate::engine::Engine;
use crate::page::{PAGE_SIZE, Page};
use crate::sync::{Arc, AtomicU64, Cell, Ordering, RwLock, RwLockWriteGuard, thread_local};
use backing::Slots;
use dicts::Dicts;
use lru::LruCache;
use slab::{AllocError, Handle, Slabs};
use stats::Counters;
use table::{Meta, Table};

/// The zstd level of pages encoded with a dictionary unless the builder says otherwise
/// (zram's best configuration runs level 8 with a dictionary too).
pub const DICTIONARY_LEVEL: i32 = 8;

thread_local! {
    /// Each thread's encode buffer, taken and put back (a nested use just gets a fresh
    /// one): saves a 4 KiB allocation per insert.
    static SCRATCH: Cell<Vec<u8>> = Cell::new(Vec::with_capacity(RAW_SIZE));
}

/// What can go wrong with a store operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store holds no page of this id.
    #[error("page {0} is not in the store")]
    NotFound(u64),
    #[error(
        "memory limit reached: storing needs {needed} bytes of compressed memory, the limit is {limit}"
    )]
    /// Storing would take the compressed memory over the limit; nothing changed.
    MemoryLimit {
        /// What `mem_used_total` would have become.
        needed: u64,
        /// The store's memory limit.
        limit: u64,
    },
    /// The kernel refused memory for a new slab; nothing changed.
    #[error("out of memory: the kernel refused a new slab")]
    OutOfMemory,
    /// The page's stored bytes match their checksum but do not decode.
    #[error("page {id}: stored form is corrupt: {source}")]
    Corrupt {
        /// The page.
        id: u64,
        /// Why it does not decode.
        source: DecodeError,
    },
    /// The page's stored bytes changed since they were stored.
    #[error("page {id}: stored bytes do not match their checksum")]
    Checksum {
        /// The page.
        id: u64,
    },
    /// Bytes given as a page are not one page long.
    #[error("a page is {PAGE_SIZE} bytes, not {len}")]
    PageLength {
        /// Their length.
        len: usize,
    },
    /// The backing store failed to read a written-back page (it stays where it is).
    #[error("page {id}: backing store read failed: {reason}")]
    BackingRead {
        /// The page.
        id: u64,
        /// The I/O error.
        reason: String,
    },
    /// Writeback was asked of a store without a backing store.
    #[error("the store has no backing store")]
    NoBacking,
}

impl From<AllocError> for StoreError {
    fn from(error: AllocError) -> Self {
        match error {
            AllocError::Limit { needed, limit } => StoreError::MemoryLimit { needed, limit },
            AllocError::OutOfMemory => StoreError::OutOfMemory,
        }
    }
}

/// Configures a [`PageStore`].
///
/// ```
/// use zpage::{PageStore, Profile};
///
/// let store = PageStore::builder()
///     .profile(Profile::Dense)  // zstd where its ratio pays
///     .hot_budget(16 << 20)     // 16 MiB of decoded pages kept hot
///     .mem_limit(256 << 20)     // at most 256 MiB of compressed memory
///     .shards(8)
///     .build();
/// assert!(store.is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct StoreBuilder {
    shards: usize,
    hot_budget: usize,
    mem_limit: Option<u64>,
    engine: Engine,
    dictionaries: Option<DictionarySet>,
    auto_dictionaries: Option<u64>,
    dictionary_level: Option<i32>,
    idle_engine: Option<Engine>,
    backing: Option<std::sync::Arc<dyn Backing>>,
    background: Option<Background>,
}

impl Default for StoreBuilder {
    fn default() -> Self {
        // Four shards per core keep two threads on different pages apart nearly always;
        // more would only spread small stores' metadata blocks thinner.
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        StoreBuilder {
            shards: (4 * cores).clamp(4, 64).next_power_of_two(),
            hot_budget: 0,
            mem_limit: None,
            engine: Engine::default(),
            dictionaries: None,
            auto_dictionaries: None,
            dictionary_level: None,
            idle_engine: None,
            backing: None,
            background: None,
        }
    }
}

impl StoreBuilder {
    /// Number of shards, rounded up to a power of two, at most 64 (default: four per
    /// core).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards.clamp(1, 64).next_power_of_two();
        self
    }

    /// Bytes of decoded pages the hot tier may hold, split evenly over the shards
    /// (default 0: every page is kept compressed, as zram does).
    pub fn hot_budget(mut self, bytes: usize) -> Self {
        self.hot_budget = bytes;
        self
    }

    /// Most memory the compressed-object allocator may take (`mem_used_total`).
    pub fn mem_limit(mut self, bytes: u64) -> Self {
        self.mem_limit = Some(bytes);
        self
    }

    /// The embedded model of a profile (default: dense).
    pub fn profile(mut self, profile: Profile) -> Self {
        self.engine = Engine::new(profile);
        self
    }

    /// A trained model (`zpage train`, or [`Model::load`]) instead of an embedded one.
    pub fn model(mut self, model: Model) -> Self {
        self.engine = Engine::with_model(model);
        self
    }

    /// The classifier and codecs to store pages with (shared by clones).
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// Dictionaries to encode zstd pages with from the start (trained offline, e.g. by
    /// [`PageStore::train_dictionaries`] on another store and saved with
    /// [`DictionarySet::save`]); they are renamed to this store's ids and prepared at
    /// its dictionary level ([`StoreBuilder::dictionary_level`]).
    pub fn dictionaries(mut self, set: DictionarySet) -> Self {
        self.dictionaries = Some(set);
        self
    }

    /// Trains dictionaries by itself: once the store holds `zstd_pages` pages stored as
    /// zstd, and again each time that count has grown fourfold. The insert that crosses the
    /// mark trains on the inserting thread before it returns (sampling, clustering and
    /// zstd's trainer: on the order of a second; an application that cannot wait calls
    /// [`PageStore::train_dictionaries`] from a thread of its own instead); pages stored
    /// before keep their form until [`PageStore::recompress`] or a rewrite.
    pub fn auto_dictionaries(mut self, zstd_pages: u64) -> Self {
        self.auto_dictionaries = Some(zstd_pages);
        self
    }

    /// The zstd level pages are encoded at with a dictionary (default
    /// [`DICTIONARY_LEVEL`]). A dictionary gives a higher level more to work with; at the
    /// dense profile's own level 3 one made the pages of a JVM and of gcc 1-3% larger,
    /// at level 8 every program measured gained. Each level costs compress speed.
    pub fn dictionary_level(mut self, level: i32) -> Self {
        self.dictionary_level = Some(level.clamp(1, 22));
        self
    }

    /// Tiers by temperature: pages are stored with the builder's engine on the way in
    /// (say, [`Profile::Words`], the fastest) and re-encoded with `profile`'s, and the
    /// dictionaries, when [`PageStore::recompress`] finds them idle. Auto-trained
    /// dictionaries are then trained by the idle pass, not by inserts.
    pub fn idle_profile(self, profile: Profile) -> Self {
        self.idle_engine(Engine::new(profile))
    }

    /// [`StoreBuilder::idle_profile`] with an engine of one's own.
    pub fn idle_engine(mut self, engine: Engine) -> Self {
        self.idle_engine = Some(engine);
        self
    }

    /// Where [`PageStore::writeback`] puts cold pages (a [`BackingFile`], or a remote
    /// tier of one's own).
    pub fn backing(mut self, backing: std::sync::Arc<dyn Backing>) -> Self {
        self.backing = Some(backing);
        self
    }

    /// A background worker that runs the idle pass periodically (see [`Background`]);
    /// it runs only in a store built with [`StoreBuilder::build_shared`].
    pub fn background(mut self, background: Background) -> Self {
        self.background = Some(background);
        self
    }

    /// The store in an `Arc`, with its background worker started if one is configured.
    /// The worker holds only a weak reference: it ends when the store is dropped.
    pub fn build_shared(mut self) -> std::sync::Arc<PageStore> {
        let Some(background) = self.background.take() else {
            return std::sync::Arc::new(self.build());
        };
        let (link, stop) = tiers::worker_link();
        let mut store = self.build();
        store.worker = Some(link);
        let store = std::sync::Arc::new(store);
        tiers::spawn_worker(&store, stop, background);
        store
    }

    /// The store, empty.
    pub fn build(self) -> PageStore {
        let pages = self.hot_budget / PAGE_SIZE;
        let shards = (0..self.shards)
            .map(|index| {
                // The remainder goes to the first shards, so the budget is used exactly.
                let capacity = pages / self.shards + usize::from(index < pages % self.shards);
                ShardSlot {
                    shard: RwLock::new(Shard {
                        table: Table::new(self.shards.trailing_zeros()),
                        hot: LruCache::unbounded(),
                        hot_dirty: 0,
                    }),
                    hot_capacity: capacity,
                    hits: AtomicU64::new(0),
                    misses: AtomicU64::new(0),
                    failed_reads: AtomicU64::new(0),
                }
            })
            .collect();
        let dictionary_level = self.dictionary_level.unwrap_or(DICTIONARY_LEVEL);
        let store = PageStore {
            engine: self.engine,
            shards,
            shard_bits: self.shards.trailing_zeros(),
            slabs: RwLock::new(Slabs::new(self.mem_limit)),
            counters: Counters::default(),
            dicts: Dicts::new(self.auto_dictionaries),
            dictionary_level,
            idle_engine: self.idle_engine,
            tier: self.backing.map(|device| BackedTier {
                slots: Slots::new(device.slots()),
                device,
            }),
            writeback_limit: AtomicU64::new(u64::MAX),
            epoch: std::time::Instant::now(),
            worker: Default::default(),
        };
        store.slabs_mut(); // publishes the limit
        if let Some(set) = self.dictionaries {
            store.set_dictionaries(&set);
        }
        store
    }
}

struct Shard {
    table: Table,
    /// Decoded copies, most recently used first; the table's `hot` bit mirrors membership.
    hot: LruCache<u64, Box<Page>>,
    hot_dirty: usize,
}

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
    counters: Counters,
    dicts: Dicts,
    /// The zstd level of forms encoded with a dictionary.
    dictionary_level: i32,
    /// The engine of the idle pass, when it differs from the insert path's.
    idle_engine: Option<Engine>,
    tier: Option<BackedTier>,
    /// Pages writeback may still write (`u64::MAX`: no limit), as zram's `writeback_limit`.
    writeback_limit: AtomicU64,
    /// Second 0 of the access stamps.
    epoch: std::time::Instant,
    /// Set when a background worker runs; dropping it (with the store) stops the worker.
    worker: tiers::WorkerLink,
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

    /// Stores (or overwrites) page `id`. On error nothing changed.
    pub fn insert(&self, id: u64, page: &Page) -> Result<(), StoreError> {
        let slot = self.slot(id);
        // With a hot tier, one scan decides both the tier and a same-filled page's form
        // (without one, the engine's own scan does).
        let mut filled = None;
        if slot.hot_capacity > 0 {
            filled = page.same_filled_word();
            if filled.is_none() {
                return self.insert_hot(slot, id, page);
            }
        }
        let mut encoded = SCRATCH.with(Cell::take);
        // Held until the page is counted, so that its dictionary stays registered.
        let dicts = self.dicts.current();
        let class = match filled {
            Some(word) => codec::encode_filled(word, &mut encoded),
            None => self
                .engine
                .encode_with(page, dicts.as_deref(), &mut encoded),
        };
        let result = self.install(slot, id, class, page, &encoded);
        if result.is_err() {
            self.counters.failed_writes.fetch_add(1, Ordering::Relaxed);
        }
        SCRATCH.with(|cell| cell.set(encoded));
        drop(dicts);
        if result.is_ok() && self.idle_engine.is_none() {
            self.maybe_train(self.counters.pages_of(Class::Zstd));
        }
        result
    }

    /// Puts an encoded page in place of whatever `id` held.
    fn install(
        &self,
        slot: &ShardSlot,
        id: u64,
        class: Class,
        page: &Page,
        encoded: &[u8],
    ) -> Result<(), StoreError> {
        let mut shard = slot.shard.write();
        let old = shard.table.get(id);
        let mut slabs = self.slabs_mut();
        let old_dict = old.and_then(|old| form_dict(&slabs, old));
        let meta = replace_form(&mut slabs, old, class, page, encoded)?;
        drop(slabs);
        if let Some(old) = old {
            shard.forget(id, old, &self.counters);
        }
        let old_dict = match old {
            Some(old) if old.backed => self.free_slot(old),
            _ => old_dict,
        };
        if let Some(dict) = old_dict {
            self.dicts.release(dict);
        }
        self.record(meta, encoded);
        shard.table.set(id, meta, Some(self.now()));
        Ok(())
    }

    /// The second of the store's clock (access stamps count from the store's start).
    fn now(&self) -> u32 {
        self.epoch.elapsed().as_secs().min(u64::from(u32::MAX >> 2)) as u32
    }

    /// Counts a newly stored form, and the dictionary it names (under its shard lock).
    fn record(&self, meta: Meta, encoded: &[u8]) {
        self.counters.record(meta);
        if let Some(class) = meta.stored
            && let Some(dict) = codec::form_dictionary(class, &encoded[1..])
        {
            self.dicts.retain(dict);
        }
    }

    /// Frees a stored form and uncounts the dictionary it names (under its shard lock).
    fn release_form(&self, meta: Meta) {
        let dict = if meta.backed {
            self.free_slot(meta)
        } else {
            let mut slabs = self.slabs_mut();
            let dict = form_dict(&slabs, meta);
            free_form(&mut slabs, meta);
            dict
        };
        if let Some(dict) = dict {
            self.dicts.release(dict);
        }
    }

    /// Frees a written-back page's slot; returns the dictionary its form names.
    fn free_slot(&self, meta: Meta) -> Option<u32> {
        let tier = self
            .tier
            .as_ref()
            .expect("a backed page has a backing store");
        self.counters.bd_count.fetch_sub(1, Ordering::Relaxed);
        self.counters
            .bd_bytes
            .fetch_sub(tiers::backed_len(meta.word) as u64, Ordering::Relaxed);
        let dict = tier.slots.free(tiers::backed_slot(meta.word));
        (dict != 0).then_some(dict)
    }

    /// Copies page `id` into `out`.
    pub fn read_into(&self, id: u64, out: &mut Page) -> Result<(), StoreError> {
        let slot = self.slot(id);
        let result = if slot.hot_capacity > 0 {
            self.read_hot(slot, id, out)
        } else {
            let shard = slot.shard.read();
            let meta = shard.table.get(id).ok_or(StoreError::NotFound(id))?;
            shard.table.touch(id, self.now());
            slot.misses.fetch_add(1, Ordering::Relaxed);
            self.decode(id, meta, out)
        };
        if matches!(
            result,
            Err(StoreError::Corrupt { .. }
                | StoreError::Checksum { .. }
                | StoreError::BackingRead { .. })
        ) {
            slot.failed_reads.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Page `id` as a read gives it, but not counted as an access (the tiers' own reads).
    fn peek(&self, id: u64) -> Result<Option<Box<Page>>, StoreError> {
        let shard = self.slot(id).shard.read();
        let Some(meta) = shard.table.get(id) else {
            return Ok(None);
        };
        let mut page = Page::boxed();
        self.copy_out(&shard, id, meta, &mut page)?;
        Ok(Some(page))
    }

    /// A present page's bytes into `out`: its hot copy, or its stored form decoded (the
    /// caller holds its shard lock).
    fn copy_out(
        &self,
        shard: &Shard,
        id: u64,
        meta: Meta,
        out: &mut Page,
    ) -> Result<(), StoreError> {
        if meta.hot {
            let hot = shard.hot.peek(&id).expect("hot bit mirrors the LRU");
            out.bytes_mut().copy_from_slice(hot.bytes());
            Ok(())
        } else {
            self.decode(id, meta, out)
        }
    }

    /// Page `id`, or `None` if the store does not hold it; an error only if its stored
    /// form is corrupt.
    pub fn get(&self, id: u64) -> Result<Option<Box<Page>>, StoreError> {
        match self.read(id) {
            Ok(page) => Ok(Some(page)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Stores `bytes`, which must be one page long, as page `id` (see [`PageStore::insert`]).
    pub fn insert_bytes(&self, id: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let page = Page::from_slice(bytes).ok_or(StoreError::PageLength { len: bytes.len() })?;
        self.insert(id, &page)
    }

    /// Removes page `id` and returns what it held (`None` if absent), in one step under
    /// the page's shard lock: a concurrent insert of `id` is either taken or stays. A
    /// corrupt page is an error and stays where it is. To drop a page without decoding
    /// it, see [`PageStore::discard`].
    pub fn remove(&self, id: u64) -> Result<Option<Box<Page>>, StoreError> {
        let slot = self.slot(id);
        let mut shard = slot.shard.write();
        let Some(meta) = shard.table.get(id) else {
            return Ok(None);
        };
        let mut page = Page::boxed();
        if let Err(error) = self.copy_out(&shard, id, meta, &mut page) {
            slot.failed_reads.fetch_add(1, Ordering::Relaxed);
            return Err(error);
        }
        self.unlink(&mut shard, id);
        Ok(Some(page))
    }

    /// Page `id`; if absent, stores `make()`'s page first and returns it. `make` runs
    /// without any lock held (it may use the store); if another thread stores `id` in
    /// the meantime, that page is kept and returned, and `make`'s is dropped, so every
    /// caller gets the page the store holds. The page is stored compressed (the hot tier
    /// fills on reads).
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
            let mut encoded = SCRATCH.with(Cell::take);
            let dicts = self.dicts.current();
            let class = self
                .engine
                .encode_with(&page, dicts.as_deref(), &mut encoded);
            let installed = {
                let mut shard = self.slot(id).shard.write();
                match shard.table.get(id) {
                    Some(_) => Ok(false),
                    None => store_form(&mut self.slabs_mut(), class, &page, &encoded).map(|meta| {
                        self.record(meta, &encoded);
                        shard.table.set(id, meta, Some(self.now()));
                        true
                    }),
                }
            };
            drop(dicts);
            SCRATCH.with(|cell| cell.set(encoded));
            if installed? {
                return Ok(page);
            }
            // Stored by another thread since the first look: return that page (or, if it
            // is gone again, try this one once more).
            made = Some(page);
        }
    }

    /// Page `id` as an owned page.
    pub fn read(&self, id: u64) -> Result<Box<Page>, StoreError> {
        let mut page = Page::boxed();
        self.read_into(id, &mut page)?;
        Ok(page)
    }

    /// Runs `f` on a decoded copy of page `id`; the copy lives only for the call, so `f`
    /// may use the store freely (no lock is held while it runs).
    pub fn with_page<R>(&self, id: u64, f: impl FnOnce(&Page) -> R) -> Result<R, StoreError> {
        let mut page = Page::zeroed();
        self.read_into(id, &mut page)?;
        Ok(f(&page))
    }

    /// Drops page `id` without decoding it; returns whether it was present.
    pub fn discard(&self, id: u64) -> bool {
        self.unlink(&mut self.slot(id).shard.write(), id)
    }

    /// Drops page `id` from its shard, under the shard's write lock: table, allocator,
    /// counters, hot tier; whether it was there.
    fn unlink(&self, shard: &mut Shard, id: u64) -> bool {
        let Some(meta) = shard.table.remove(id) else {
            return false;
        };
        self.release_form(meta);
        shard.forget(id, meta, &self.counters);
        self.counters.notify_free.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The class page `id` is stored as; `None` when absent or only in the hot tier.
    pub fn stored_class(&self, id: u64) -> Option<Class> {
        self.slot(id).shard.read().table.get(id)?.stored
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

    /// Compresses every dirty page of the hot tier (they stay hot, now clean).
    pub fn flush(&self) -> Result<(), StoreError> {
        for slot in self.shards.iter() {
            let mut shard = slot.shard.write();
            let dirty: Vec<u64> = shard
                .table
                .iter()
                .filter(|(_, meta)| meta.stored.is_none())
                .map(|(id, _)| id)
                .collect();
            for id in dirty {
                let page = shard.hot.peek(&id).expect("dirty page is hot").clone();
                self.clean(&mut shard, id, &page)?;
            }
        }
        Ok(())
    }

    /// Trains dictionaries on the pages the store holds as zstd (in a store with an idle
    /// engine, the pages that engine would encode with zstd) and encodes new zstd pages
    /// with them from then on (pages stored before keep their form until they are
    /// rewritten or [`PageStore::recompress`]ed). Samples up to 1536 of those pages evenly, clusters them by their
    /// features, trains one dictionary per cluster and keeps the number of clusters (or
    /// none) that stores a held-out tenth of the sample smallest, counting the
    /// dictionaries' memory against what they save on the store's zstd pages; their
    /// total size is at most 1/16 of the compressed data (and 512 KiB), so a small store
    /// gets small dictionaries or none. Returns the set installed, if any. No lock is
    /// held while it trains; stores and reads go on meanwhile.
    pub fn train_dictionaries(&self) -> Result<Option<Arc<DictionarySet>>, StoreError> {
        // 6 MiB of samples: about a hundred times the dictionaries zstd's trainer makes.
        const SAMPLE: usize = 1536;
        let idle = self.idle_engine.as_ref();
        let candidate = |class: Class| match idle {
            None => class == Class::Zstd,
            Some(_) => !matches!(class, Class::Zero | Class::Same),
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
        self.dicts.install(set);
        Ok(self.dicts.current())
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

    /// Trains if `auto_dictionaries` says it is time, the store holding `pages` pages a
    /// dictionary may serve (after a successful insert, or in the idle pass of a store
    /// with an idle engine).
    fn maybe_train(&self, pages: u64) {
        if self.dicts.begin_auto(pages) {
            // A failure to read a sampled page is the reader's to report, not this insert's.
            let _ = self.train_dictionaries();
            self.dicts.trained(pages);
        }
    }

    /// The engine the idle pass encodes with.
    fn idle_engine(&self) -> &Engine {
        self.idle_engine.as_ref().unwrap_or(&self.engine)
    }

    /// Moves objects out of slabs with garbage and unmaps the emptied slabs; returns the
    /// pages of memory given back. Readers keep going during compaction: each shard is
    /// locked only while its own objects move.
    pub fn compact(&self) -> u64 {
        self.compact_slabs(PAGE_SIZE)
    }

    /// [`PageStore::compact`], evacuating the slabs with at least `min_garbage` bytes of
    /// garbage.
    fn compact_slabs(&self, min_garbage: usize) -> u64 {
        let before = {
            let mut slabs = self.slabs_mut();
            let before = slabs.pages_compacted();
            if !slabs.begin_compaction(min_garbage) {
                return 0;
            }
            before
        };
        for slot in self.shards.iter() {
            let mut shard = slot.shard.write();
            let mut slabs = self.slabs_mut();
            let movable: Vec<(u64, Meta)> = shard
                .table
                .iter()
                .filter(|(_, meta)| {
                    in_allocator(*meta) && slabs.is_evacuating(Handle::from_bits(meta.word))
                })
                .collect();
            for (id, meta) in movable {
                if let Some(moved) = slabs.relocate(Handle::from_bits(meta.word)) {
                    let word = moved.bits();
                    shard.table.set(id, Meta { word, ..meta }, None);
                }
            }
        }
        let mut slabs = self.slabs_mut();
        slabs.end_compaction();
        slabs.pages_compacted() - before
    }

    /// zram's `mm_stat` fields, read without stopping any shard (each field exact at some
    /// instant of the call; for one consistent instant, see [`PageStore::stats`]).
    pub fn mm_stat(&self) -> MmStat {
        self.counters.mm_stat()
    }

    /// A consistent snapshot of the store's statistics: every shard and the allocator
    /// are locked while it is taken.
    pub fn stats(&self) -> Stats {
        let shards: Vec<_> = self.shards.iter().map(|s| s.shard.write()).collect();
        let slabs = self.slabs.read();
        let classes = self.counters.classes();
        let mut stats = Stats {
            mm: self.counters.mm_stat(),
            bd: self.counters.bd_stat(),
            io: IoStat {
                failed_writes: self.counters.failed_writes.load(Ordering::Relaxed),
                notify_free: self.counters.notify_free.load(Ordering::Relaxed),
                ..IoStat::default()
            },
            backed_bytes: self.counters.bd_bytes.load(Ordering::Relaxed),
            bookkeeping_bytes: slabs.bookkeeping(),
            dictionary_bytes: self.dicts.memory_bytes(),
            dictionaries: self.dicts.count() as u64,
            classes: Class::ALL
                .iter()
                .map(|&class| (class, classes[class.index()]))
                .collect(),
            ..Stats::default()
        };
        for (shard, slot) in shards.iter().zip(self.shards.iter()) {
            stats.pages += shard.table.len() as u64;
            stats.metadata_bytes += shard.table.memory_bytes() as u64;
            stats.hot_pages += shard.hot.len() as u64;
            stats.hot_dirty_pages += shard.hot_dirty as u64;
            stats.hot_hits += slot.hits.load(Ordering::Relaxed);
            stats.hot_misses += slot.misses.load(Ordering::Relaxed);
            stats.io.failed_reads += slot.failed_reads.load(Ordering::Relaxed);
        }
        if let Some(tier) = &self.tier {
            stats.bookkeeping_bytes += tier.slots.memory_bytes() as u64;
        }
        drop((shards, slabs));
        // A scan of every page: after the snapshot, a shard at a time under its read
        // lock, so that it holds up no reader and no other shard's writers (idle marks
        // are hints, which a consistent count would not make truer).
        stats.idle_pages = self.idle_pages();
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

    /// Decodes a page's stored form (the caller holds its shard lock).
    fn decode(&self, id: u64, meta: Meta, out: &mut Page) -> Result<(), StoreError> {
        let class = meta.stored.expect("decode of a page with a stored form");
        match class {
            Class::Zero | Class::Same => {
                out.words_mut().fill(meta.word);
                Ok(())
            }
            _ if meta.backed => self.decode_backed(id, meta, class, out),
            _ => {
                let slabs = self.slabs.read();
                let bytes = slabs.get(Handle::from_bits(meta.word));
                if crc32fast::hash(bytes) != meta.checksum {
                    return Err(StoreError::Checksum { id });
                }
                self.dicts
                    .with_registry(|dicts| codec::decode_payload_with(class, bytes, dicts, out))
                    .map_err(|source| StoreError::Corrupt { id, source })
            }
        }
    }

    fn read_hot(&self, slot: &ShardSlot, id: u64, out: &mut Page) -> Result<(), StoreError> {
        let mut shard = slot.shard.write();
        let meta = shard.table.get(id).ok_or(StoreError::NotFound(id))?;
        if meta.hot {
            let page = shard.hot.get(&id).expect("hot bit mirrors the LRU");
            out.bytes_mut().copy_from_slice(page.bytes());
            shard.table.touch(id, self.now());
            slot.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        shard.table.touch(id, self.now());
        slot.misses.fetch_add(1, Ordering::Relaxed);
        self.decode(id, meta, out)?;
        // Zero and same-filled pages decode faster than a copy: not worth a hot slot.
        if (in_allocator(meta) || meta.backed)
            && let Ok(mut copy) = self.make_room(&mut shard, slot.hot_capacity)
        {
            copy.bytes_mut().copy_from_slice(out.bytes());
            shard.hot.put(id, copy);
            shard.table.set(id, Meta { hot: true, ..meta }, None);
        }
        Ok(())
    }

    fn insert_hot(&self, slot: &ShardSlot, id: u64, page: &Page) -> Result<(), StoreError> {
        let mut shard = slot.shard.write();
        let old = shard.table.get(id);
        let mut copy = match old {
            Some(meta) if meta.hot => shard.hot.pop(&id).expect("hot bit mirrors the LRU"),
            _ => self.make_room(&mut shard, slot.hot_capacity)?,
        };
        copy.bytes_mut().copy_from_slice(page.bytes());
        shard.hot.put(id, copy);
        if let Some(old) = old {
            self.release_form(old);
            shard.forget(id, Meta { hot: false, ..old }, &self.counters);
        }
        shard.hot_dirty += 1;
        shard.table.set(
            id,
            Meta {
                word: 0,
                checksum: 0,
                stored: None,
                hot: true,
                backed: false,
                settled: false,
            },
            Some(self.now()),
        );
        Ok(())
    }

    /// Evicts the least recently used hot page if the shard's tier is full, compressing
    /// it first if dirty; returns a page buffer for the caller to fill.
    fn make_room(&self, shard: &mut Shard, capacity: usize) -> Result<Box<Page>, StoreError> {
        if shard.hot.len() < capacity {
            return Ok(Page::boxed());
        }
        let (&victim, page) = shard.hot.peek_lru().expect("a full tier has pages");
        let meta = shard.table.get(victim).expect("hot pages are present");
        if meta.stored.is_none() {
            let page = page.clone();
            self.clean(shard, victim, &page)?;
        }
        let (_, buffer) = shard.hot.pop_lru().expect("a full tier has pages");
        let meta = shard.table.get(victim).expect("hot pages are present");
        shard.table.set(victim, Meta { hot: false, ..meta }, None);
        Ok(buffer)
    }

    /// Gives a dirty hot page its compressed form.
    fn clean(&self, shard: &mut Shard, id: u64, page: &Page) -> Result<(), StoreError> {
        let mut encoded = SCRATCH.with(Cell::take);
        let dicts = self.dicts.current();
        let class = self
            .engine
            .encode_with(page, dicts.as_deref(), &mut encoded);
        let stored = store_form(&mut self.slabs_mut(), class, page, &encoded);
        if let Ok(meta) = stored {
            shard.hot_dirty -= 1;
            self.record(meta, &encoded);
            shard.table.set(id, Meta { hot: true, ..meta }, None);
        }
        SCRATCH.with(|cell| cell.set(encoded));
        stored.map(|_| ())
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

impl Default for PageStore {
    fn default() -> Self {
        PageStore::new()
    }
}

impl Counters {
    /// Counts a newly stored form (under its shard's lock).
    fn record(&self, meta: Meta) {
        if let Some(class) = meta.stored {
            self.add(class, stored_len(meta));
        }
    }
}

impl Shard {
    /// Uncounts a page's old state (its stored form, its hot copy).
    fn forget(&mut self, id: u64, meta: Meta, counters: &Counters) {
        if let Some(class) = meta.stored {
            counters.sub(class, stored_len(meta));
        } else {
            self.hot_dirty -= 1;
        }
        if meta.hot {
            self.hot.pop(&id);
        }
    }
}

/// Whether a page's stored form is an object in the allocator.
fn in_allocator(meta: Meta) -> bool {
    !meta.backed
        && matches!(meta.stored, Some(class) if class != Class::Zero && class != Class::Same)
}

fn stored_len(meta: Meta) -> usize {
    if in_allocator(meta) {
        Handle::from_bits(meta.word).len()
    } else {
        0
    }
}

/// Puts an encoded page where its class keeps it: the metadata word for zero and
/// same-filled pages, the allocator for the rest.
fn store_form(
    slabs: &mut Slabs,
    class: Class,
    page: &Page,
    encoded: &[u8],
) -> Result<Meta, StoreError> {
    let (word, checksum) = match class {
        Class::Zero | Class::Same => (page.words()[0], 0),
        _ => {
            let payload = &encoded[1..];
            (slabs.alloc(payload)?.bits(), crc32fast::hash(payload))
        }
    };
    Ok(Meta {
        word,
        checksum,
        stored: Some(class),
        hot: false,
        backed: false,
        settled: false,
    })
}

/// Stores a form in place of `old` (if any), which is freed. At the memory limit a form
/// no larger than the old one takes its place instead, so rewriting a page with content
/// of the same size never fails; otherwise a failure changes nothing.
fn replace_form(
    slabs: &mut Slabs,
    old: Option<Meta>,
    class: Class,
    page: &Page,
    encoded: &[u8],
) -> Result<Meta, StoreError> {
    let error = match store_form(slabs, class, page, encoded) {
        Ok(meta) => {
            if let Some(old) = old {
                free_form(slabs, old);
            }
            return Ok(meta);
        }
        Err(error) => error,
    };
    let payload = &encoded[1..];
    match old {
        Some(old) if in_allocator(old) && !matches!(class, Class::Zero | Class::Same) => {
            let handle = Handle::from_bits(old.word);
            if payload.len() > handle.len() || slabs.is_evacuating(handle) {
                return Err(error);
            }
            Ok(Meta {
                word: slabs.replace_in_place(handle, payload).bits(),
                checksum: crc32fast::hash(payload),
                stored: Some(class),
                hot: false,
                backed: false,
                settled: false,
            })
        }
        _ => Err(error),
    }
}

/// The dictionary a form in the allocator names, read from its payload: whatever forms
/// [`codec::form_dictionary`] says name one (the same function counted it in `record`).
fn form_dict(slabs: &Slabs, meta: Meta) -> Option<u32> {
    let class = meta.stored.filter(|_| in_allocator(meta))?;
    codec::form_dictionary(class, slabs.get(Handle::from_bits(meta.word)))
}

fn free_form(slabs: &mut Slabs, meta: Meta) {
    if in_allocator(meta) {
        slabs.free(Handle::from_bits(meta.word));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn untouched_store_reads_back() {
        let (store, page, _) = store_with_text_page();
        assert!(*store.read(5).unwrap() == page);
        assert_eq!(store.stats().io.failed_reads, 0);
    }
}
