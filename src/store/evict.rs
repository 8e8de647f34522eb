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
//!   written back), or a page of a cold unit in memory, which goes with its whole unit
//!   (evicted, as the frame is freed only with its last page; written back, as a unit
//!   moves whole), the other members found between the ids the registry keeps. Dirty
//!   hot pages, inline and backed pages are passed over.
//! - Every page present is in its shard's small or main FIFO (it entered on its first
//!   insert and the hand keeps the pages it passes over); the FIFOs are rebuilt without
//!   the ids since removed when those outnumber the pages. The ghosts are at most as
//!   many as the pages.

use super::lifecycle::{Shard, in_allocator};
use super::table::Meta;
use super::units::member_of;
use super::{PageStore, StoreError};
use crate::codec::unit::MAX_UNIT_PAGES;
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
/// Pages the hand may look at per step and shard before it gives that shard up (in the
/// last round, per hold of the shard's lock).
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

    /// Drops up to `want` pages the hand picks, a shard at a time from a rotating start,
    /// and with a unit's page the rest of its unit (whose frame goes only with its last
    /// page); how many went.
    fn evict(&self, want: usize) -> usize {
        let mut evicted = Vec::with_capacity(want);
        let mut units = Vec::new();
        self.sweep_hand(want, false, |shard, id| {
            if let Some(meta) = shard.table.get(id).filter(|meta| meta.unit) {
                self.note_unit(&mut units, meta);
            }
            self.unlink(shard, id);
            evicted.push(id);
        });
        for (&(index, serial), ids) in units.iter().zip(self.unit_members(&units)) {
            for id in ids {
                let mut shard = self.slot(id).shard.write();
                // Only if still a member of that unit (an index freed since names another).
                let member = shard.table.get(id).is_some_and(|m| names(m, index))
                    && self.units.read().named(index, serial).is_some();
                if member && self.unlink(&mut shard, id) {
                    let pages = shard.table.len();
                    shard.queues.haunt(id, pages);
                    evicted.push(id);
                }
            }
        }
        let count = evicted.len();
        self.notify(evicted, RemovalCause::Evicted);
        count
    }

    /// Writes up to `want` pages the hand picks to the backing store, a unit's page with
    /// its whole unit; how many went.
    fn write_back_coldest(&self, want: usize) -> usize {
        let mut batch = Vec::with_capacity(want);
        let mut units: Vec<(u32, u64)> = Vec::new();
        self.sweep_hand(want, true, |shard, id| {
            let meta = shard.table.get(id).expect("the hand picks present pages");
            if in_allocator(meta) {
                batch.push(self.candidate(id, meta));
            } else {
                self.note_unit(&mut units, meta);
            }
        });
        let mut done = super::WrittenBack::default();
        if self.write_batch(&mut batch, &mut done) {
            let members = self.unit_members(&units);
            let units = units.iter().zip(members).map(|(&(i, s), ids)| (i, s, ids));
            self.write_units(units, &mut done);
        }
        done.written as usize
    }

    /// Whether the page of metadata `meta` holds allocator memory the hand can free: a
    /// form in the allocator, or a page of a unit whose frame is (under the page's shard
    /// lock, so the unit is registered).
    fn frees_memory(&self, meta: Meta) -> bool {
        in_allocator(meta)
            || (meta.unit && self.units.read().get(member_of(meta.word).0).in_memory())
    }

    /// Adds the unit a member's metadata `meta` names to `units` (index, serial), once
    /// (under the member's shard lock, so the unit is registered).
    fn note_unit(&self, units: &mut Vec<(u32, u64)>, meta: Meta) {
        let index = member_of(meta.word).0;
        let unit = (index, self.units.read().get(index).serial);
        if !units.contains(&unit) {
            units.push(unit);
        }
    }

    /// The ids of the pages that are members now of each of `units` (index, serial), in
    /// `units`' order (none for a unit no longer registered), found between the ids the
    /// registry keeps for it (units are packed in id order), or by one scan of every id
    /// where a unit spreads too thin for that. A member may leave as soon as it is found:
    /// whoever uses the ids checks again under its lock.
    fn unit_members(&self, units: &[(u32, u64)]) -> Vec<Vec<u64>> {
        // Ids tried per unit before a scan of every id is cheaper.
        const SPAN: u64 = 64 * MAX_UNIT_PAGES as u64;
        let member_of_unit = |id: u64| {
            let meta = self.slot(id).shard.read().table.get(id);
            meta.filter(|meta| meta.unit)
                .map(|meta| member_of(meta.word).0)
        };
        let spans: Vec<Option<(u64, u64)>> = (units.iter())
            .map(|&(index, serial)| self.units.read().named(index, serial).map(|u| u.ids))
            .collect();
        if spans
            .iter()
            .flatten()
            .any(|(first, last)| last - first >= SPAN)
        {
            let mut members = vec![Vec::new(); units.len()];
            for id in self.ids() {
                let at = member_of_unit(id).and_then(|i| units.iter().position(|u| u.0 == i));
                if let Some(at) = at.filter(|&at| spans[at].is_some()) {
                    members[at].push(id);
                }
            }
            return members;
        }
        (units.iter().zip(&spans))
            .map(|(&(index, _), span)| match *span {
                Some((first, last)) => (first..=last)
                    .filter(|&id| member_of_unit(id) == Some(index))
                    .collect(),
                None => Vec::new(),
            })
            .collect()
    }

    /// Runs the hand over the shards from a rotating start until `want` pages are
    /// picked (pages whose going frees memory, that `stay` present or not), `take` being called on each under its
    /// shard's write lock. A round that picks nothing but cleared reference bits, or
    /// left pages unvisited, is followed by another; the last of [`ROUNDS`] ignores the
    /// bits and goes on in each shard, [`HAND_REACH`] pages a lock, until it has looked
    /// at every page, so a store under constant reads, or whose FIFOs are long with pages
    /// that cannot go (written back, inline), still makes room without stalling readers.
    fn sweep_hand(&self, want: usize, stay: bool, mut take: impl FnMut(&mut Shard, u64)) {
        let eligible = |meta: Meta| self.frees_memory(meta);
        let n = self.shards.len();
        let start = self.hand.fetch_add(1, Ordering::Relaxed) as usize;
        let mut picked = 0;
        for round in 0..=ROUNDS {
            let force = round == ROUNDS;
            let (mut cleared, mut cut) = (false, false);
            for k in 0..n {
                let mut visited = 0;
                loop {
                    let mut shard = self.shards[(start + k) % n].shard.write();
                    let looked = hand(&mut shard, want - picked, force, stay, &eligible);
                    for id in looked.picked {
                        take(&mut shard, id);
                        picked += 1;
                    }
                    if picked == want {
                        return;
                    }
                    cleared |= looked.cleared;
                    visited += looked.visited;
                    let more = visited < looked.queued && looked.visited > 0;
                    cut |= more;
                    if !(force && more) {
                        break;
                    }
                }
            }
            if picked > 0 || !(cleared || cut) {
                return;
            }
        }
    }
}

/// Whether `meta` is that of a member of unit `index`.
fn names(meta: Meta, index: u32) -> bool {
    meta.unit && member_of(meta.word).0 == index
}

/// What the hand did in one shard.
struct Looked {
    /// The pages to let go.
    picked: Vec<u64>,
    /// It cleared a reference bit.
    cleared: bool,
    /// Pages it looked at, of those queued when it started.
    visited: usize,
    queued: usize,
}

/// The hand over one shard: up to `want` pages to let go that are `eligible` (see the
/// module docs; with `force`, reference bits are ignored), passing over at most
/// [`HAND_REACH`] others. With `stay` the pages picked stay present (written back), so
/// they go back to the main FIFO; evicted ones become ghosts.
fn hand(
    shard: &mut Shard,
    want: usize,
    force: bool,
    stay: bool,
    eligible: &dyn Fn(Meta) -> bool,
) -> Looked {
    let mut picked = Vec::with_capacity(want);
    let mut cleared = false;
    let Shard { table, queues, .. } = shard;
    let pages = table.len();
    let queued = queues.small.len() + queues.main.len();
    let reach = queued.min(HAND_REACH + want);
    // Main-FIFO pages in a row that gave nothing before the small FIFO's turn: pages
    // written back stay present, in the main FIFO, and can fill it.
    let patience = queues.main.len().min(HAND_REACH / 2);
    let (mut visited, mut fruitless) = (0, 0);
    while visited < reach && picked.len() < want {
        visited += 1;
        // The small FIFO is drained while it holds more than a tenth of the pages.
        let from_small =
            queues.small.len() * 10 > pages || queues.main.is_empty() || fruitless >= patience;
        let popped = if from_small {
            queues.small.pop_front().or_else(|| queues.main.pop_front())
        } else {
            queues.main.pop_front()
        };
        let Some(id) = popped else { break };
        let (Some(meta), Some(access)) = (table.get(id), table.access(id)) else {
            continue; // removed since it was queued
        };
        fruitless += usize::from(!from_small);
        if access.referenced && !force {
            table.unreference(id);
            cleared = true;
            fruitless = 0;
        } else if eligible(meta) {
            picked.push(id);
            fruitless = 0;
            if !stay {
                queues.haunt(id, pages);
                continue;
            }
        }
        queues.main.push_back(id);
    }
    Looked {
        picked,
        cleared,
        visited,
        queued,
    }
}
