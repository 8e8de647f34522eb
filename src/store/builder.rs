//! [`StoreBuilder`]: a store's configuration, checked and fixed when it is built.

use super::backing::{Backing, Slots};
use super::compact::Compactor;
use super::dicts::Dicts;
use super::evict::{Listener, OnFull, RemovalCause};
use super::lifecycle::Shard;
use super::slab::Slabs;
use super::stats::Counters;
use super::tiers::{self, Background};
use super::{BackedTier, DEFAULT_UNIT_PAGES, DICTIONARY_LEVEL, PageStore, ShardSlot};
use crate::classify::model::{Model, Profile};
use crate::codec::dictset::DictionarySet;
use crate::codec::unit::MAX_UNIT_PAGES;
use crate::engine::Engine;
use crate::page::PAGE_SIZE;
use crate::sync::{AtomicU64, RwLock};

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
#[derive(Clone)]
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
    on_full: OnFull,
    listener: Option<Listener>,
    unit_pages: usize,
}

impl std::fmt::Debug for StoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBuilder")
            .field("shards", &self.shards)
            .field("hot_budget", &self.hot_budget)
            .field("mem_limit", &self.mem_limit)
            .field("profile", &self.engine.model().profile())
            .field("on_full", &self.on_full)
            .field("listener", &self.listener.is_some())
            .finish_non_exhaustive()
    }
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
            on_full: OnFull::Refuse,
            listener: None,
            unit_pages: DEFAULT_UNIT_PAGES,
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

    /// Most memory the compressed-object allocator may take (`mem_used_total`). What
    /// happens when a page does not fit is [`StoreBuilder::on_full`]'s choice.
    pub fn mem_limit(mut self, bytes: u64) -> Self {
        self.mem_limit = Some(bytes);
        self
    }

    /// What an insert does when the store is at its memory limit (default
    /// [`OnFull::Refuse`], zram's behaviour). Whatever the policy, the store first
    /// compacts when enough of its memory is garbage.
    ///
    /// ```
    /// use zpage::{OnFull, Page, PageStore};
    ///
    /// let store = PageStore::builder().mem_limit(256 << 10).on_full(OnFull::Evict).build();
    /// let mut page = Page::zeroed();
    /// for id in 0..1000u64 {
    ///     page.words_mut().iter_mut().enumerate().for_each(|(i, w)| *w = id * i as u64 ^ 0x9e37_79b9_7f4a_7c15u64.rotate_left(i as u32));
    ///     store.insert(id, &page)?; // never fails: the coldest pages make room
    /// }
    /// assert!(store.mm_stat().mem_used_total <= 256 << 10);
    /// assert!(store.contains(999));
    /// # Ok::<(), zpage::StoreError>(())
    /// ```
    pub fn on_full(mut self, policy: OnFull) -> Self {
        self.on_full = policy;
        self
    }

    /// A listener told of every page that leaves the store or its memory, with why
    /// ([`RemovalCause`]). It runs on the thread that caused the removal, after the
    /// store's locks are released, so it may use the store; it should be quick, since
    /// that thread (an insert making room, say) waits for it.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use zpage::{Page, PageStore, RemovalCause};
    ///
    /// let heard = Arc::new(Mutex::new(Vec::new()));
    /// let store = {
    ///     let heard = heard.clone();
    ///     PageStore::builder()
    ///         .on_removal(move |id, cause| heard.lock().unwrap().push((id, cause)))
    ///         .build()
    /// };
    /// store.insert(1, &Page::filled(7))?;
    /// store.insert(1, &Page::filled(8))?;
    /// store.discard(1);
    /// assert_eq!(
    ///     *heard.lock().unwrap(),
    ///     [(1, RemovalCause::Replaced), (1, RemovalCause::Removed)]
    /// );
    /// # Ok::<(), zpage::StoreError>(())
    /// ```
    pub fn on_removal(mut self, f: impl Fn(u64, RemovalCause) + Send + Sync + 'static) -> Self {
        self.listener = Some(std::sync::Arc::new(f));
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
    /// zstd, and again each time that count has grown fourfold. Training (sampling,
    /// clustering and zstd's trainer: on the order of a second) never runs on an insert:
    /// the background worker of a [`StoreBuilder::build_shared`] store runs it within a
    /// second of the mark, the idle pass runs it too, and otherwise the owner calls
    /// [`PageStore::train_if_due`]. Pages stored before keep their form until
    /// [`PageStore::recompress`] or a rewrite.
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

    /// Pages a cold pass ([`crate::Selection::level`]) compresses together as one unit
    /// (default [`DEFAULT_UNIT_PAGES`], at most [`MAX_UNIT_PAGES`]): neighbouring cold
    /// pages, by id, in one zstd frame with the first page's cluster dictionary, where it
    /// is smaller than the pages' forms. A read of one page decodes its unit (the last
    /// unit a thread decoded is kept, so a scan of neighbours decodes once); a write or
    /// removal takes the page out of its unit, and a unit at least half garbage is packed
    /// again by the next cold pass. 1 keeps every page alone, with the mixed form where it
    /// is smaller (the densest per page, and the slowest: see the README).
    pub fn cold_unit_pages(mut self, pages: usize) -> Self {
        self.unit_pages = pages.clamp(1, MAX_UNIT_PAGES);
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

    /// Where [`PageStore::writeback`] puts cold pages (a [`BackingFile`](super::BackingFile), or a remote
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

    /// The store in an `Arc`, with its background worker started if one is configured
    /// (a [`Background`] pass, or [`StoreBuilder::auto_dictionaries`], which the worker
    /// trains). The worker holds only a weak reference: it ends when the store is
    /// dropped.
    pub fn build_shared(mut self) -> std::sync::Arc<PageStore> {
        let background = self.background.take();
        if background.is_none() && self.auto_dictionaries.is_none() {
            return std::sync::Arc::new(self.build());
        }
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
                    shard: RwLock::new(Shard::new(self.shards.trailing_zeros())),
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
            units: RwLock::default(),
            unit_pages: self.unit_pages,
            counters: Counters::default(),
            dicts: Dicts::new(self.auto_dictionaries),
            dictionary_level,
            idle_engine: self.idle_engine,
            tier: self.backing.map(|device| BackedTier {
                slots: Slots::new(device.slots()),
                device,
            }),
            writeback_limit: AtomicU64::new(u64::MAX),
            epoch: super::coarse_seconds(),
            worker: Default::default(),
            writes: AtomicU64::new(0),
            hand: AtomicU64::new(0),
            compactor: Compactor::default(),
            on_full: self.on_full,
            listener: self.listener,
        };
        store.slabs_mut(); // publishes the limit
        if let Some(set) = self.dictionaries {
            store.set_dictionaries(&set);
        }
        store
    }
}
