//! A store's statistics: zram's `mm_stat`, `bd_stat` and `io_stat` fields, plus
//! per-class and per-tier counters.
//!
//! Invariants: the `mm_stat` counters and the per-class counts live in atomics
//! ([`Counters`]), changed only under the lock that guards what they count (a page's shard
//! lock for its class, the allocator's lock for its sizes), so
//! - a [`Stats`] is one consistent snapshot: it is built while every shard and the
//!   allocator are locked, so its sizes and counts describe one instant;
//! - an [`MmStat`] is read without any lock (no shard stops): each field is exact at
//!   some instant of the read, but fields may come from different instants, as zram's
//!   own `mm_stat` does (`mem_used_total <= mem_used_max` holds in every reading).

use super::slab::SlabTotals;
use crate::codec::Class;
use crate::store::UnitStats;
use crate::sync::{AtomicU64, Ordering};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const CLASSES: usize = Class::ALL.len();

/// Pages and bytes of one class among the stored (compressed) forms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassStats {
    /// Pages stored in this class.
    pub pages: u64,
    /// `pages * 4096`.
    pub orig_bytes: u64,
    /// Bytes in the allocator (0 for zero and same-filled pages, which live in metadata).
    pub stored_bytes: u64,
}

/// zram's `mm_stat` fields, in its order and with its meaning; sizes are bytes. Read
/// without stopping the store ([`crate::PageStore::mm_stat`]); its `Display` is the line
/// zram prints in `/sys/block/zramN/mm_stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MmStat {
    /// Pages stored, times 4096: in compressed form, or only as a decoded copy in the hot
    /// tier (changed since last compressed).
    pub orig_data_size: u64,
    /// Bytes of compressed data in the allocator.
    pub compr_data_size: u64,
    /// Memory the allocator takes (resident slab pages).
    pub mem_used_total: u64,
    /// The memory limit; 0 when there is none, as in zram.
    pub mem_limit: u64,
    /// The most `mem_used_total` has been.
    pub mem_used_max: u64,
    /// Zero and same-filled pages (stored in metadata only).
    pub same_pages: u64,
    /// Pages of memory compaction has given back.
    pub pages_compacted: u64,
    /// Pages stored uncompressed (nothing beat the huge threshold).
    pub huge_pages: u64,
    /// Pages ever stored uncompressed since the store was made (zram 5.15's ninth field).
    pub huge_pages_since: u64,
}

/// zram's `bd_stat` fields: the backing store, in pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BdStat {
    /// Pages in the backing store now.
    pub bd_count: u64,
    /// Pages read from it.
    pub bd_reads: u64,
    /// Pages written to it.
    pub bd_writes: u64,
}

impl BdStat {
    /// Adds another backing store's counts to these (as zram devices side by side).
    pub fn absorb(&mut self, other: &BdStat) {
        *self = sum_fields(self, other);
    }
}

impl std::fmt::Display for BdStat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.bd_count, self.bd_reads, self.bd_writes)
    }
}

/// zram's `io_stat` fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct IoStat {
    /// Reads that failed: a corrupt stored form, or a backing-store read error.
    pub failed_reads: u64,
    /// Writes that failed: stores refused by the memory limit, and writeback batches
    /// the backing store refused (those pages stayed in memory).
    pub failed_writes: u64,
    /// Requests for page ids the store cannot address (always 0: every id is valid).
    pub invalid_io: u64,
    /// Pages freed by their owner (removes and discards).
    pub notify_free: u64,
}

impl std::fmt::Display for IoStat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.failed_reads, self.failed_writes, self.invalid_io, self.notify_free
        )
    }
}

impl MmStat {
    /// `orig_data_size / compr_data_size`, zram's compression ratio.
    pub fn ratio(&self) -> f64 {
        self.orig_data_size as f64 / self.compr_data_size.max(1) as f64
    }

    /// `orig_data_size / mem_used_total`, what the allocator's memory buys.
    pub fn mem_ratio(&self) -> f64 {
        self.orig_data_size as f64 / self.mem_used_total.max(1) as f64
    }

    /// Adds another device's fields to these (as zram devices side by side; limits and
    /// maxima summed too).
    pub fn absorb(&mut self, other: &MmStat) {
        *self = sum_fields(self, other);
    }
}

impl std::fmt::Display for MmStat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {} {} {} {}",
            self.orig_data_size,
            self.compr_data_size,
            self.mem_used_total,
            self.mem_limit,
            self.mem_used_max,
            self.same_pages,
            self.pages_compacted,
            self.huge_pages,
            self.huge_pages_since
        )
    }
}

/// The store's live counters: per class pages and allocator bytes, and the allocator's
/// totals as of its last change.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pages: [AtomicU64; CLASSES],
    stored_bytes: [AtomicU64; CLASSES],
    live: AtomicU64,
    resident: AtomicU64,
    resident_max: AtomicU64,
    limit: AtomicU64,
    pages_compacted: AtomicU64,
    huge_since: AtomicU64,
    pub(crate) bd_count: AtomicU64,
    pub(crate) bd_bytes: AtomicU64,
    pub(crate) bd_reads: AtomicU64,
    pub(crate) bd_writes: AtomicU64,
    pub(crate) failed_writes: AtomicU64,
    pub(crate) notify_free: AtomicU64,
    /// Decoded copies in the hot tier, and those of them with no stored form (changed
    /// under the page's shard lock).
    pub(crate) hot_pages: AtomicU64,
    pub(crate) hot_dirty: AtomicU64,
    /// Pages that are members of a cold unit (changed under the page's shard lock).
    pub(crate) unit_pages: AtomicU64,
}

impl Counters {
    /// Counts a stored form of `class` taking `stored_bytes` in the allocator (the
    /// caller holds the page's shard lock).
    pub(crate) fn add(&self, class: Class, stored_bytes: usize) {
        self.pages[class.index()].fetch_add(1, Ordering::Relaxed);
        self.stored_bytes[class.index()].fetch_add(stored_bytes as u64, Ordering::Relaxed);
        if class == Class::Incompressible {
            self.huge_since.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Uncounts a stored form counted by [`Counters::add`].
    pub(crate) fn sub(&self, class: Class, stored_bytes: usize) {
        self.pages[class.index()].fetch_sub(1, Ordering::Relaxed);
        self.stored_bytes[class.index()].fetch_sub(stored_bytes as u64, Ordering::Relaxed);
    }

    /// Uncounts the allocator bytes of a form that left for the backing store (the page
    /// stays counted in its class).
    pub(crate) fn moved_out(&self, class: Class, stored_bytes: usize) {
        self.stored_bytes[class.index()].fetch_sub(stored_bytes as u64, Ordering::Relaxed);
    }

    /// Counts a record of `len` bytes written to the backing store.
    pub(crate) fn backed_in(&self, len: usize) {
        self.bd_count.fetch_add(1, Ordering::Relaxed);
        self.bd_writes.fetch_add(1, Ordering::Relaxed);
        self.bd_bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Uncounts a record of `len` bytes whose slot was freed.
    pub(crate) fn backed_out(&self, len: usize) {
        self.bd_count.fetch_sub(1, Ordering::Relaxed);
        self.bd_bytes.fetch_sub(len as u64, Ordering::Relaxed);
    }

    /// The allocator's live bytes and resident memory, as last published.
    pub(crate) fn allocator_sizes(&self) -> (u64, u64) {
        (
            self.live.load(Ordering::Relaxed),
            self.resident.load(Ordering::Acquire),
        )
    }

    /// Records the allocator's totals (the caller holds the allocator's write lock).
    pub(crate) fn publish(&self, totals: SlabTotals) {
        self.live.store(totals.live, Ordering::Relaxed);
        // The maximum first, released with the total: a reader that sees a total sees a
        // maximum at least as large.
        self.resident_max
            .store(totals.resident_max, Ordering::Relaxed);
        self.resident.store(totals.resident, Ordering::Release);
        self.limit
            .store(totals.limit.unwrap_or(0), Ordering::Relaxed);
        self.pages_compacted
            .store(totals.pages_compacted, Ordering::Relaxed);
    }

    /// Pages of memory compaction has given back, as last published.
    pub(crate) fn pages_compacted(&self) -> u64 {
        self.pages_compacted.load(Ordering::Relaxed)
    }

    /// Pages stored as `class`.
    pub(crate) fn pages_of(&self, class: Class) -> u64 {
        self.pages[class.index()].load(Ordering::Relaxed)
    }

    /// Per class, by [`Class::index`].
    pub(crate) fn classes(&self) -> [ClassStats; CLASSES] {
        std::array::from_fn(|i| {
            let pages = self.pages[i].load(Ordering::Relaxed);
            ClassStats {
                pages,
                orig_bytes: pages * crate::PAGE_SIZE as u64,
                stored_bytes: self.stored_bytes[i].load(Ordering::Relaxed),
            }
        })
    }

    pub(crate) fn mm_stat(&self) -> MmStat {
        let classes = self.classes();
        let mem_used_total = self.resident.load(Ordering::Acquire);
        let dirty = self.hot_dirty.load(Ordering::Relaxed);
        let in_units = self.unit_pages.load(Ordering::Relaxed);
        MmStat {
            orig_data_size: classes.iter().map(|c| c.orig_bytes).sum::<u64>()
                + (dirty + in_units) * crate::PAGE_SIZE as u64,
            compr_data_size: self.live.load(Ordering::Relaxed),
            mem_used_total,
            mem_limit: self.limit.load(Ordering::Relaxed),
            mem_used_max: self.resident_max.load(Ordering::Relaxed),
            same_pages: classes[Class::Zero.index()].pages + classes[Class::Same.index()].pages,
            pages_compacted: self.pages_compacted.load(Ordering::Relaxed),
            huge_pages: classes[Class::Incompressible.index()].pages,
            huge_pages_since: self.huge_since.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn bd_stat(&self) -> BdStat {
        BdStat {
            bd_count: self.bd_count.load(Ordering::Relaxed),
            bd_reads: self.bd_reads.load(Ordering::Relaxed),
            bd_writes: self.bd_writes.load(Ordering::Relaxed),
        }
    }
}

/// One snapshot of a store: zram's `mm_stat` fields ([`Stats::mm`]) and the rest;
/// sizes are bytes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// zram's `mm_stat` fields (flattened into the JSON object).
    #[serde(flatten)]
    pub mm: MmStat,
    /// zram's `bd_stat` fields.
    pub bd: BdStat,
    /// zram's `io_stat` fields.
    pub io: IoStat,
    /// Bytes of the records in the backing store (`bd.bd_count` pages).
    pub backed_bytes: u64,
    /// Pages marked idle (see [`crate::PageStore::mark_idle`]).
    pub idle_pages: u64,
    /// Pages present, in any state.
    pub pages: u64,
    /// Per-page metadata (the page table), in bytes.
    pub metadata_bytes: u64,
    /// The allocator's own bookkeeping (slab table, free lists) and the units' registry,
    /// in bytes.
    pub bookkeeping_bytes: u64,
    /// Memory the store's dictionaries take (their bytes and zstd's prepared tables).
    pub dictionary_bytes: u64,
    /// Dictionaries registered: the current set's and older ones pages still name.
    pub dictionaries: u64,
    /// Decoded pages in the hot tier.
    pub hot_pages: u64,
    /// Memory the hot tier's decoded pages take (`hot_pages * 4096`); counted in
    /// [`Stats::effective_ratio`], outside zram's `mem_used_total`.
    pub hot_bytes: u64,
    /// Of `hot_pages`, those written since they were last compressed.
    pub hot_dirty_pages: u64,
    /// Reads served from the hot tier.
    pub hot_hits: u64,
    /// Reads that decoded a stored form.
    pub hot_misses: u64,
    /// Per class (every class, in tag order); pages in cold units are in `units`.
    pub classes: BTreeMap<Class, ClassStats>,
    /// Cold units: their pages, garbage and bytes.
    #[serde(default)]
    pub units: UnitStats,
}

impl Stats {
    /// `orig_data_size / compr_data_size`, as zram users compute it.
    pub fn ratio(&self) -> f64 {
        self.mm.ratio()
    }

    /// Memory spent besides the compressed data: the page table, the allocator's
    /// bookkeeping and the dictionaries.
    pub fn metadata_total(&self) -> u64 {
        self.metadata_bytes + self.bookkeeping_bytes + self.dictionary_bytes
    }

    /// `orig_data_size / (mem_used_total + metadata + bookkeeping + hot tier)`: what
    /// the memory really buys.
    pub fn effective_ratio(&self) -> f64 {
        let used = self.mm.mem_used_total + self.metadata_total() + self.hot_bytes;
        self.mm.orig_data_size as f64 / used.max(1) as f64
    }

    /// Adds another store's figures to these, every one of them (as for stores side by
    /// side, like zram devices): sizes, page counts, event counters, and the limits and
    /// maxima too, as the memory the stores together may take and took at most. Every
    /// field is summed through the snapshot's serialised form, so a field added to
    /// `Stats` is summed with the rest, never forgotten.
    pub fn absorb(&mut self, other: &Stats) {
        *self = sum_fields(self, other);
    }

    /// Allocator overhead: `mem_used_total / compr_data_size - 1`.
    pub fn allocator_overhead(&self) -> f64 {
        self.mm.mem_used_total as f64 / self.mm.compr_data_size.max(1) as f64 - 1.0
    }

    /// The figures of one class (zero for a class with no page).
    pub fn class(&self, class: Class) -> ClassStats {
        self.classes.get(&class).copied().unwrap_or_default()
    }
}

/// `a` and `b` added field by field, through their serialised forms: one rule for every
/// figure, so a field added to a statistics type is summed with the rest.
fn sum_fields<T: Serialize + serde::de::DeserializeOwned>(a: &T, b: &T) -> T {
    let mut sum = serde_json::to_value(a).expect("statistics serialise");
    add_numbers(
        &mut sum,
        &serde_json::to_value(b).expect("statistics serialise"),
    );
    serde_json::from_value(sum).expect("a sum of statistics is statistics")
}

/// Adds every number of `other` to the same field of `sum` (fields only `other` has are
/// taken as they are).
fn add_numbers(sum: &mut serde_json::Value, other: &serde_json::Value) {
    use serde_json::Value;
    match (sum, other) {
        (Value::Number(a), Value::Number(b)) => {
            let total = a.as_u64().unwrap_or(0) + b.as_u64().unwrap_or(0);
            *a = total.into();
        }
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in b {
                match a.get_mut(key) {
                    Some(slot) => add_numbers(slot, value),
                    None => {
                        a.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absorb_sums_every_field() {
        let mut one = Stats {
            hot_pages: 2,
            hot_bytes: 8192,
            hot_hits: 5,
            pages: 3,
            ..Stats::default()
        };
        one.mm.orig_data_size = 4096;
        one.classes.insert(
            Class::Zero,
            ClassStats {
                pages: 1,
                orig_bytes: 4096,
                stored_bytes: 0,
            },
        );
        let mut two = one.clone();
        two.io.failed_reads = 1;
        two.classes.insert(
            Class::Delta,
            ClassStats {
                pages: 2,
                orig_bytes: 8192,
                stored_bytes: 100,
            },
        );
        one.absorb(&two);
        assert_eq!(
            (one.hot_pages, one.hot_bytes, one.hot_hits, one.pages),
            (4, 16384, 10, 6)
        );
        assert_eq!((one.mm.orig_data_size, one.io.failed_reads), (8192, 1));
        assert_eq!(one.class(Class::Zero).pages, 2);
        assert_eq!(one.class(Class::Delta).stored_bytes, 100);
    }
}
