//! Full is a policy: what an insert does when the store is at its memory limit
//! ([`OnFull`]), the eviction hand that picks the pages to let go, and the removal
//! listener's causes.
//!
//! The policy is S3-FIFO (Yang et al., SOSP 2023) per shard, with one reference bit for
//! its frequency: a new page enters a small FIFO (a tenth of the shard's pages); one that
//! leaves it unreferenced is evicted and remembered in a ghost FIFO, one referenced moves
//! to the main FIFO, where the hand is CLOCK (a referenced page gets a second chance); a
//! page inserted again while its id is a ghost goes straight to the main FIFO. Why: the
//! reference bit (in the access stamp) is set with one relaxed store under the shard's
//! *read* lock, so a hit never takes a write lock; and one-hit pages, which dominate a
//! cache's misses, leave from the small FIFO before they push out pages in use. Plain
//! CLOCK was measured first: on the cache bench's Zipf trace it hit 1.2 points less
//! than quick_cache at an eighth of the working set, with more pages held.
//!
//! Invariants:
//! - A page is chosen and unlinked (or copied out for writeback) under its shard's write
//!   lock; the listener is told after every lock is released.
//! - Only pages whose going frees allocator memory are chosen: a form in the allocator
//!   (a clean hot copy goes with its page when evicted, and stays when its form is
//!   written back). Dirty hot pages, inline and backed pages are passed over.
//! - Every page present is in its shard's small or main FIFO (it entered on its first
//!   insert and the hand keeps the pages it passes over); the FIFOs are rebuilt without
//!   the ids since removed when those outnumber the pages. The ghosts are at most as
//!   many as the pages.

use super::lifecycle::{Shard, in_allocator};
use super::{PageStore, StoreError};
use crate::sync::Ordering;
use hashbrown::HashSet;
use std::collections::VecDeque;

/// What an insert does when the store is at its memory limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnFull {
    /// The insert fails with [`StoreError::MemoryLimit`] and nothing changes (zram's
    /// behaviour).
    #[default]
    Refuse,
    /// The least recently used pages (CLOCK) are dropped until the page fits; the
    /// listener hears [`RemovalCause::Evicted`] for each.
    Evict,
    /// The least recently used pages are written to the backing store (zswap's
    /// behaviour) until the page fits; the listener hears [`RemovalCause::WrittenBack`].
    /// The insert fails only when the backing store is full too (or absent).
    WriteBack,
}

impl OnFull {
    /// Whether the store keeps the eviction hand's queue.
    pub(super) fn tracks_order(self) -> bool {
        self != OnFull::Refuse
    }
}

/// Why a page left the store, or its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemovalCause {
    /// Dropped to make room at the memory limit ([`OnFull::Evict`]).
    Evicted,
    /// Removed or discarded by the store's user.
    Removed,
    /// Overwritten by an insert (the id now holds the new page).
    Replaced,
    /// Moved to the backing store (by writeback, or [`OnFull::WriteBack`]); it is still
    /// present and reads back from there.
    WrittenBack,
}

/// One shard's S3-FIFO queues (ids; ids since removed, and an id twice, are skipped).
#[derive(Debug, Default)]
pub(super) struct Queues {
    small: VecDeque<u64>,
    main: VecDeque<u64>,
    ghosts: VecDeque<u64>,
    ghost_set: HashSet<u64>,
}

impl Queues {
    /// A page enters: the main FIFO if it is a ghost, the small one otherwise. When the
    /// FIFOs hold twice the shard's `pages` (and more), they are rebuilt with only the
    /// ids `present` says are, each once.
    fn enter(&mut self, id: u64, pages: usize, present: impl Fn(u64) -> bool) {
        if self.ghost_set.remove(&id) {
            self.main.push_back(id);
        } else {
            self.small.push_back(id);
        }
        if self.small.len() + self.main.len() > 2 * pages + 1024 {
            let mut seen = HashSet::with_capacity(pages);
            self.main.retain(|&id| present(id) && seen.insert(id));
            self.small.retain(|&id| present(id) && seen.insert(id));
        }
    }

    /// Remembers an evicted id, forgetting the oldest ghost past `pages` of them.
    fn haunt(&mut self, id: u64, pages: usize) {
        if self.ghost_set.insert(id) {
            self.ghosts.push_back(id);
        }
        while self.ghosts.len() > pages {
            if let Some(old) = self.ghosts.pop_front() {
                self.ghost_set.remove(&old);
            }
        }
    }

    /// Bytes the queues take (counted with the page table).
    pub(super) fn memory_bytes(&self) -> usize {
        (self.small.capacity() + self.main.capacity() + self.ghosts.capacity()) * 8
            + self.ghost_set.allocation_size()
    }
}

/// The removal listener.
pub(super) type Listener = std::sync::Arc<dyn Fn(u64, RemovalCause) + Send + Sync>;

/// Pages the hand frees per step before the insert tries again.
const EVICT_BATCH: usize = 16;
/// Pages the hand may pass over per step and shard before it gives that shard up.
const HAND_REACH: usize = 256;
/// Rounds over every shard that may only clear reference bits before the hand ignores
/// them.
const ROUNDS: usize = 2;

impl PageStore {
    /// Puts `id` in its shard's queues (it has just entered the shard).
    pub(super) fn enqueue(&self, shard: &mut Shard, id: u64) {
        let pages = shard.table.len();
        shard
            .queues
            .enter(id, pages, |id| shard.table.get(id).is_some());
    }

    /// Runs `attempt` until it succeeds, making room as the store's policy says each time
    /// it fails on the memory limit; the error of the last attempt if no room could be
    /// made.
    pub(super) fn with_room<T>(
        &self,
        mut attempt: impl FnMut() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        loop {
            match attempt() {
                Err(StoreError::MemoryLimit { .. }) if self.make_room() => {}
                result => return result,
            }
        }
    }

    /// Frees memory at the limit: compaction first when enough of the memory is
    /// garbage, then the policy's evictions or writebacks. Whether anything was freed.
    fn make_room(&self) -> bool {
        if self.compact_if_wasteful_at_limit() {
            return true;
        }
        match self.on_full {
            OnFull::Refuse => false,
            OnFull::Evict => self.evict(EVICT_BATCH) > 0,
            OnFull::WriteBack => self.tier.is_some() && self.write_back_coldest(EVICT_BATCH) > 0,
        }
    }

    /// Drops up to `want` pages the hand picks, a shard at a time from a rotating start;
    /// how many went.
    fn evict(&self, want: usize) -> usize {
        let mut evicted = Vec::with_capacity(want);
        self.sweep_hand(want, false, |shard, id| {
            self.unlink(shard, id);
            evicted.push(id);
        });
        let count = evicted.len();
        self.notify(evicted, RemovalCause::Evicted);
        count
    }

    /// Writes up to `want` pages the hand picks to the backing store; how many went.
    fn write_back_coldest(&self, want: usize) -> usize {
        let mut batch = Vec::with_capacity(want);
        self.sweep_hand(want, true, |shard, id| {
            let meta = shard.table.get(id).expect("the hand picks present pages");
            batch.push(self.candidate(id, meta));
        });
        let mut done = super::WrittenBack::default();
        self.write_batch(&mut batch, &mut done);
        done.written as usize
    }

    /// Runs the hand over the shards from a rotating start until `want` pages are
    /// picked (that `stay` present, or not), `take` being called on each under its
    /// shard's write lock. A round that
    /// picks nothing but cleared reference bits is followed by another; after
    /// [`ROUNDS`] the bits are ignored, so a store under constant reads still makes room.
    fn sweep_hand(&self, want: usize, stay: bool, mut take: impl FnMut(&mut Shard, u64)) {
        let n = self.shards.len();
        let start = self.hand.fetch_add(1, Ordering::Relaxed) as usize;
        let mut picked = 0;
        for round in 0..=ROUNDS {
            let mut cleared = false;
            for k in 0..n {
                let mut shard = self.shards[(start + k) % n].shard.write();
                let (ids, passed) = hand(&mut shard, want - picked, round == ROUNDS, stay);
                cleared |= passed;
                for id in ids {
                    take(&mut shard, id);
                    picked += 1;
                }
                if picked == want {
                    return;
                }
            }
            if picked > 0 || !cleared {
                return;
            }
        }
    }
}

/// The hand over one shard: up to `want` pages to let go (see the module docs; with
/// `force`, reference bits are ignored), passing over at most [`HAND_REACH`] others.
/// With `stay` the pages picked stay present (written back), so they go back to the main
/// FIFO; evicted ones become ghosts. Returns the pages and whether it cleared a
/// reference bit.
fn hand(shard: &mut Shard, want: usize, force: bool, stay: bool) -> (Vec<u64>, bool) {
    let mut picked = Vec::with_capacity(want);
    let mut cleared = false;
    let Shard { table, queues, .. } = shard;
    let pages = table.len();
    let reach = (queues.small.len() + queues.main.len()).min(HAND_REACH + want);
    for _ in 0..reach {
        if picked.len() == want {
            break;
        }
        // The small FIFO is drained while it holds more than a tenth of the pages.
        let from_small = queues.small.len() * 10 > pages || queues.main.is_empty();
        let popped = if from_small {
            queues.small.pop_front()
        } else {
            queues.main.pop_front()
        };
        let Some(id) = popped else { break };
        let (Some(meta), Some(access)) = (table.get(id), table.access(id)) else {
            continue; // removed since it was queued
        };
        if access.referenced && !force {
            table.unreference(id);
            cleared = true;
        } else if in_allocator(meta) || (meta.unit && !stay) {
            // A unit's page can go (its unit is freed with its last page), not be
            // written back alone (writeback moves whole units).
            picked.push(id);
            if !stay {
                queues.haunt(id, pages);
                continue;
            }
        }
        queues.main.push_back(id);
    }
    (picked, cleared)
}
