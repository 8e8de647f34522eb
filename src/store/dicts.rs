//! The store's dictionaries: the set new pages are encoded with, every dictionary a
//! stored page still names, and when to train.
//!
//! Invariants:
//! - Dictionaries are immutable and never renamed; a new set gets ids no live
//!   dictionary has (ids only grow).
//! - A dictionary leaves the registry only when it is not in the current set, no stored
//!   page names it (its page count, changed under the page's shard lock, is 0) and
//!   nothing else holds it (an encoder holds the set it encodes with until its page is
//!   counted): so every stored form's dictionary is found when it is read.
//! - Lock order: shard, then allocator, then registry; `current` is never taken while
//!   the registry is held.
//! - Training policy: with `auto_after(n)`, a store trains once it holds `n` pages stored
//!   as zstd and again each time that count has grown fourfold since the last training
//!   (data that keeps growing drifts). Pages stored before keep their form, and so
//!   their dictionary, until rewritten: each training can leave one more set alive, so
//!   retraining is rare (a logarithm of the store's growth).

use crate::codec::dict::{Dictionaries, Dictionary};
use crate::codec::dictset::DictionarySet;
use crate::sync::{Arc, AtomicU64, Ordering, RwLock};
use std::collections::BTreeMap;

/// Every dictionary a stored page may name, by id.
#[derive(Debug, Default)]
pub(super) struct Registry {
    dicts: BTreeMap<u32, Arc<Dictionary>>,
    current: Vec<u32>,
}

impl Dictionaries for Registry {
    fn get(&self, id: u32) -> Option<&Dictionary> {
        self.dicts.get(&id).map(|d| &**d)
    }
}

impl Registry {
    /// Drops dictionary `id` if nothing needs it any more.
    fn sweep(&mut self, id: u32) {
        let unused = self.dicts.get(&id).is_some_and(|d| {
            !self.current.contains(&id) && d.pages() == 0 && Arc::strong_count(d) == 1
        });
        if unused {
            self.dicts.remove(&id);
        }
    }
}

#[derive(Debug)]
pub(super) struct Dicts {
    current: RwLock<Option<Arc<DictionarySet>>>,
    registry: RwLock<Registry>,
    /// The next id a new dictionary gets.
    next_id: AtomicU64,
    /// Zstd pages at which to train next (`u64::MAX`: never by itself).
    train_at: AtomicU64,
    /// 1 while a training runs (so racing inserts do not start another).
    training: AtomicU64,
}

impl Dicts {
    pub(super) fn new(auto_after: Option<u64>) -> Dicts {
        Dicts {
            current: RwLock::new(None),
            registry: RwLock::new(Registry::default()),
            next_id: AtomicU64::new(1),
            train_at: AtomicU64::new(auto_after.map_or(u64::MAX, |n| n.max(1))),
            training: AtomicU64::new(0),
        }
    }

    /// The set to encode with (held until the page encoded with it is counted). A store
    /// that never reserved an id has no set: that case, every insert of a store without
    /// dictionaries, costs one load of a line nobody writes, not a lock.
    pub(super) fn current(&self) -> Option<Arc<DictionarySet>> {
        if self.next_id.load(Ordering::Relaxed) == 1 {
            return None;
        }
        self.current.read().clone()
    }

    /// The first of `count` ids no dictionary has had (reserved); `None` once the ids
    /// a frame can name are used up, rather than one named twice.
    pub(super) fn reserve_ids(&self, count: usize) -> Option<u32> {
        let first = self.next_id.fetch_add(count as u64, Ordering::Relaxed);
        u32::try_from(first + count as u64)
            .ok()
            .map(|_| first as u32)
    }

    /// Makes `set` the one new pages are encoded with; the dictionaries it replaces stay
    /// for as long as stored pages name them.
    pub(super) fn install(&self, set: DictionarySet) {
        let set = Arc::new(set);
        {
            let mut registry = self.registry.write();
            registry.current = set.dictionaries().iter().map(|d| d.id()).collect();
            for d in set.dictionaries() {
                registry.dicts.insert(d.id(), d.clone());
            }
            let ids: Vec<u32> = registry.dicts.keys().copied().collect();
            for id in ids {
                registry.sweep(id);
            }
        }
        *self.current.write() = Some(set);
    }

    /// Counts a stored page naming dictionary `id` (under the page's shard lock).
    pub(super) fn retain(&self, id: u32) {
        let registry = self.registry.read();
        let dict = registry
            .dicts
            .get(&id)
            .expect("an encoder's dictionary is registered");
        dict.add_page();
    }

    /// Uncounts a stored page naming dictionary `id`, if it names one (under the page's
    /// shard lock), dropping the dictionary if that was its last use.
    pub(super) fn release(&self, id: Option<u32>) {
        let Some(id) = id else { return };
        let last = {
            let registry = self.registry.read();
            registry.dicts.get(&id).is_some_and(|d| d.remove_page())
        };
        if last {
            self.registry.write().sweep(id);
        }
    }

    /// Dictionary `id` (a stored form names it: the caller holds the page's shard lock),
    /// held so that it outlives the lock while the form is decoded; give it back with
    /// [`Dicts::let_go`].
    pub(super) fn hold(&self, id: Option<u32>) -> Option<Arc<Dictionary>> {
        self.registry.read().dicts.get(&id?).cloned()
    }

    /// Gives back a dictionary [`Dicts::hold`] lent: dropped from the registry if no page
    /// names it any more (the page went while it was held, so its release could not).
    /// The check comes after the drop, under the registry's lock: a release that saw the
    /// lent copy swept before it (under the write lock), so it is seen here.
    pub(super) fn let_go(&self, dict: Option<Arc<Dictionary>>) {
        let Some(dict) = dict else { return };
        let id = dict.id();
        drop(dict);
        let unused = {
            let registry = self.registry.read();
            registry.dicts.get(&id).is_some_and(|d| d.pages() == 0)
                && !registry.current.contains(&id)
        };
        if unused {
            self.registry.write().sweep(id);
        }
    }

    /// Memory every registered dictionary takes.
    pub(super) fn memory_bytes(&self) -> u64 {
        let registry = self.registry.read();
        registry
            .dicts
            .values()
            .map(|d| d.memory_bytes() as u64)
            .sum()
    }

    /// How many dictionaries are registered.
    pub(super) fn count(&self) -> usize {
        self.registry.read().dicts.len()
    }

    /// Whether a store holding `zstd_pages` zstd pages should train now; if so, the
    /// caller trains and then calls [`Dicts::trained`].
    pub(super) fn begin_auto(&self, zstd_pages: u64) -> bool {
        zstd_pages >= self.train_at.load(Ordering::Relaxed)
            && self
                .training
                .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Ends a training begun by [`Dicts::begin_auto`] at `zstd_pages`: the next one is
    /// due when that count has grown fourfold.
    pub(super) fn trained(&self, zstd_pages: u64) {
        let next = zstd_pages.saturating_mul(4).max(1);
        if self.train_at.load(Ordering::Relaxed) != u64::MAX {
            self.train_at.store(next, Ordering::Relaxed);
        }
        self.training.store(0, Ordering::Release);
    }
}
