//! Full is a policy: what an insert does when the store is at its memory limit
//! ([`OnFull`]), the eviction hand that picks the pages to let go, and the removal
//! listener's causes.
//!
//! The hand is CLOCK over each shard's pages in the order they entered it: it takes the
//! oldest page whose reference bit (set by a read or a rewrite, in the access stamp) is
//! clear, and gives a referenced page a second chance (clears the bit, moves it to the
//! back). Why CLOCK and not S3-FIFO or an LRU list: the bit is set with one relaxed store
//! under the shard's *read* lock, so a hit never takes a write lock, and the queue costs
//! 8 bytes a page only in stores that evict; a compressed store holds several times the
//! pages a raw cache holds in the same memory, which is where its hit rate comes from
//! (the cache bench measures it against quick_cache and moka).
//!
//! Invariants:
//! - A page is chosen and unlinked (or copied out for writeback) under its shard's write
//!   lock; the listener is told after every lock is released.
//! - Only pages whose going frees allocator memory are chosen: a form in the allocator
//!   (a clean hot copy goes with its page when evicted, and stays when its form is
//!   written back). Dirty hot pages, inline and backed pages are passed over.
//! - Every page present is in its shard's queue (it entered on its first insert and the
//!   hand keeps the pages it passes over); the queue is rebuilt without the ids since
//!   removed when they outnumber the pages.

use super::lifecycle::{Shard, in_allocator};
use super::{PageStore, StoreError};
use crate::sync::Ordering;

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
    /// Puts `id` in its shard's eviction queue (it has just entered the shard).
    pub(super) fn enqueue(&self, shard: &mut Shard, id: u64) {
        shard.clock.push_back(id);
        if shard.clock.len() > 2 * shard.table.len() + 1024 {
            let mut seen = hashbrown::HashSet::with_capacity(shard.table.len());
            let table = &shard.table;
            shard
                .clock
                .retain(|&id| table.get(id).is_some() && seen.insert(id));
        }
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
        self.sweep_hand(want, |shard, id| {
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
        self.sweep_hand(want, |shard, id| {
            let meta = shard.table.get(id).expect("the hand picks present pages");
            batch.push(self.candidate(id, meta));
        });
        let mut done = super::WrittenBack::default();
        self.write_batch(&mut batch, &mut done);
        done.written as usize
    }

    /// Runs the hand over the shards from a rotating start until `want` pages are
    /// picked, `take` being called on each under its shard's write lock. A round that
    /// picks nothing but cleared reference bits is followed by another; after
    /// [`ROUNDS`] the bits are ignored, so a store under constant reads still makes room.
    fn sweep_hand(&self, want: usize, mut take: impl FnMut(&mut Shard, u64)) {
        let n = self.shards.len();
        let start = self.hand.fetch_add(1, Ordering::Relaxed) as usize;
        let mut picked = 0;
        for round in 0..=ROUNDS {
            let mut cleared = false;
            for k in 0..n {
                let mut shard = self.shards[(start + k) % n].shard.write();
                let (ids, passed) = hand(&mut shard, want - picked, round == ROUNDS);
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

/// The hand over one shard: up to `want` unreferenced pages in the allocator (any, with
/// `force`), oldest first, passing over at most [`HAND_REACH`] others; every page it
/// passes goes back to the queue's end, every page it picks too (an evicted one is
/// skipped when met again). Returns the pages and whether it cleared a reference bit.
fn hand(shard: &mut Shard, want: usize, force: bool) -> (Vec<u64>, bool) {
    let mut picked = Vec::with_capacity(want);
    let mut cleared = false;
    let reach = shard.clock.len().min(HAND_REACH + want);
    for _ in 0..reach {
        if picked.len() == want {
            break;
        }
        let Some(id) = shard.clock.pop_front() else {
            break;
        };
        let (Some(meta), Some(access)) = (shard.table.get(id), shard.table.access(id)) else {
            continue; // removed since it was queued
        };
        if access.referenced && !force {
            shard.table.unreference(id);
            cleared = true;
        } else if in_allocator(meta) {
            picked.push(id);
        }
        shard.clock.push_back(id);
    }
    (picked, cleared)
}
