//! Memory given back by itself: incremental compaction of the allocator.
//!
//! Removals and re-encodes leave holes in the slabs. When the garbage (resident memory
//! not holding live forms) passes [`wasteful`]'s fraction, the operation that freed it
//! starts a compaction pass: the slabs with at least a page of garbage are marked, and
//! their objects move out shard by shard, a bounded number of pages' metadata per call
//! ([`STEP_PAGES`]), each shard under its write lock; later calls carry the pass on until
//! every shard has been visited and the emptied slabs are unmapped. No worker and no
//! `compact()` call is needed; a store at its memory limit compacts before it evicts.
//!
//! Invariants:
//! - One pass at a time: the pass's state is behind a mutex that the automatic steps
//!   only `try_lock` (a thread never waits for another's compaction); an explicit
//!   [`PageStore::compact`] waits and finishes the pass.
//! - Lock order: compactor, shard, allocator, units; the compactor's lock is never taken
//!   under a shard or the allocator.
//! - An object moves only under its page's shard write lock, so a reader (which copies a
//!   form out under the read lock) sees it at its old place or its new one; a unit's
//!   frame moves under the units' write lock, which its readers hold for reading.

use super::PageStore;
use super::lifecycle::{in_allocator, moved_form};
use super::slab::Handle;
use super::table::Meta;
use crate::page::PAGE_SIZE;
use crate::sync::{AtomicU64, Mutex, Ordering};

/// Pages' metadata one automatic step scans at most (whole shards: at least one).
const STEP_PAGES: usize = 16 * 1024;
/// Passes one explicit compaction may run (each gives memory back, or it stops).
const ROUNDS: usize = 8;
/// Garbage below this is never worth a pass.
const MIN_GARBAGE: u64 = 128 << 10;

/// The compaction pass in progress, if any.
#[derive(Debug, Default)]
pub(super) struct Compactor {
    /// The next shard the pass visits, while one runs.
    pass: Mutex<Option<usize>>,
    /// 1 while a pass runs (read without the mutex by every freeing operation).
    active: AtomicU64,
}

/// Whether `live` bytes of forms in `resident` bytes of memory leave enough garbage for a
/// pass: an eighth of the live bytes, and at least [`MIN_GARBAGE`].
fn wasteful(live: u64, resident: u64) -> bool {
    resident.saturating_sub(live) > live / 8 + MIN_GARBAGE
}

impl PageStore {
    /// Carries a compaction pass on by one bounded step, starting one if the garbage is
    /// [`wasteful`]; does nothing if another thread is compacting. Cheap when there is
    /// nothing to do (two atomic loads).
    pub(super) fn compact_if_wasteful(&self) {
        let (live, resident) = self.counters.allocator_sizes();
        if self.compactor.active.load(Ordering::Relaxed) == 0 && !wasteful(live, resident) {
            return;
        }
        let Some(mut pass) = self.compactor.pass.try_lock() else {
            return;
        };
        if pass.is_none() && self.begin_pass(&mut pass, PAGE_SIZE).is_none() {
            return;
        }
        self.compact_step(&mut pass, STEP_PAGES);
    }

    /// At the memory limit: a whole pass if the garbage is [`wasteful`] (the allocator
    /// marks only the slabs whose objects the others' holes can take, since memory
    /// cannot grow); whether it gave memory back.
    pub(super) fn compact_if_wasteful_at_limit(&self) -> bool {
        let (live, resident) = self.counters.allocator_sizes();
        wasteful(live, resident) && self.compact_slabs(PAGE_SIZE) > 0
    }

    /// Moves objects out of slabs with garbage and unmaps the emptied slabs; returns the
    /// pages of memory given back. Readers keep going during compaction: each shard is
    /// locked only while its own objects move. The store also compacts by itself, a step
    /// at a time, whenever a fraction of its memory is garbage: a call is never needed
    /// to get memory back, only to get it back now.
    ///
    /// ```
    /// use zpage::{Page, PageStore};
    ///
    /// let store = PageStore::new();
    /// let mut page = Page::zeroed();
    /// for id in 0..64u64 {
    ///     page.words_mut().iter_mut().enumerate().for_each(|(i, w)| *w = (id * 31 + i as u64).pow(3));
    ///     store.insert(id, &page)?;
    /// }
    /// for id in (0..64).step_by(2) {
    ///     store.discard(id);
    /// }
    /// store.compact();
    /// let mm = store.mm_stat();
    /// assert!(mm.mem_used_total <= mm.compr_data_size + 64 << 10);
    /// # Ok::<(), zpage::StoreError>(())
    /// ```
    pub fn compact(&self) -> u64 {
        self.compact_slabs(PAGE_SIZE)
    }

    /// [`PageStore::compact`], evacuating the slabs with at least `min_garbage` bytes of
    /// garbage (after finishing a pass in progress).
    pub(super) fn compact_slabs(&self, min_garbage: usize) -> u64 {
        let mut pass = self.compactor.pass.lock();
        let before = self.counters.pages_compacted();
        if pass.is_some() {
            self.compact_step(&mut pass, usize::MAX);
        }
        // Under a limit a pass can only move objects into the holes of slabs it leaves
        // alone, so it may empty few slabs; the memory those give back lets the next
        // pass do more. Such passes go on while they give memory back; one that may
        // grow moves all it can at once.
        let mut last = self.counters.pages_compacted();
        for _ in 0..ROUNDS {
            let Some(in_place) = self.begin_pass(&mut pass, min_garbage) else {
                break;
            };
            self.compact_step(&mut pass, usize::MAX);
            let now = self.counters.pages_compacted();
            if !in_place || now == last {
                break;
            }
            last = now;
        }
        self.counters.pages_compacted() - before
    }

    /// Marks the slabs a pass evacuates; `None` if there are none, else whether the pass
    /// was begun in place (the pass is then on).
    fn begin_pass(&self, pass: &mut Option<usize>, min_garbage: usize) -> Option<bool> {
        let in_place = self.slabs_mut().begin_compaction(min_garbage)?;
        *pass = Some(0);
        self.compactor.active.store(1, Ordering::Relaxed);
        Some(in_place)
    }

    /// Visits shards from the pass's next one until `budget` pages' metadata have been
    /// scanned (at least one shard), moving their objects out of the marked slabs; ends
    /// the pass after the last shard.
    fn compact_step(&self, pass: &mut Option<usize>, budget: usize) {
        let mut scanned = 0;
        while let Some(next) = *pass {
            if next == self.shards.len() {
                // Units' frames last: no page's metadata names where they lie.
                let mut slabs = self.slabs_mut();
                self.units.write().relocate(&mut slabs);
                slabs.end_compaction();
                drop(slabs);
                *pass = None;
                self.compactor.active.store(0, Ordering::Relaxed);
                return;
            }
            if scanned >= budget {
                return;
            }
            let mut shard = self.shards[next].shard.write();
            let mut slabs = self.slabs_mut();
            scanned += shard.table.len().max(1);
            let movable: Vec<(u64, Meta)> = shard
                .table
                .iter()
                .filter(|(_, meta)| {
                    in_allocator(*meta) && slabs.is_evacuating(Handle::from_bits(meta.word))
                })
                .collect();
            for (id, meta) in movable {
                if let Some(moved) = slabs.relocate(Handle::from_bits(meta.word)) {
                    moved_form(&mut shard, id, meta, moved);
                }
            }
            *pass = Some(next + 1);
        }
    }
}
