//! A store's statistics: zram's `mm_stat` fields plus per-class and hot-tier counters.
//!
//! Invariant: a [`Stats`] is one consistent snapshot — it is built while every shard and the
//! allocator are locked, so its sizes and counts describe one instant.

use crate::codec::Class;
use serde::Serialize;
use std::collections::BTreeMap;

/// Pages and bytes of one class among the stored (compressed) forms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClassStats {
    /// Pages stored in this class.
    pub pages: u64,
    /// `pages * 4096`.
    pub orig_bytes: u64,
    /// Bytes in the allocator (0 for zero and same-filled pages, which live in metadata).
    pub stored_bytes: u64,
}

impl ClassStats {
    pub(crate) fn add(&mut self, stored_bytes: usize) {
        self.pages += 1;
        self.orig_bytes += crate::PAGE_SIZE as u64;
        self.stored_bytes += stored_bytes as u64;
    }

    pub(crate) fn sub(&mut self, stored_bytes: usize) {
        self.pages -= 1;
        self.orig_bytes -= crate::PAGE_SIZE as u64;
        self.stored_bytes -= stored_bytes as u64;
    }

    pub(crate) fn merge(&mut self, other: &ClassStats) {
        self.pages += other.pages;
        self.orig_bytes += other.orig_bytes;
        self.stored_bytes += other.stored_bytes;
    }
}

/// One snapshot of a store. The first eight fields are zram's `mm_stat`, in its order and
/// with its meaning; sizes are bytes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Pages held in compressed form, times 4096 (dirty hot pages are not yet counted).
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
    /// Pages present, in any state.
    pub pages: u64,
    /// Per-page metadata (the page table), in bytes.
    pub metadata_bytes: u64,
    /// The allocator's own bookkeeping (slab table, free lists), in bytes.
    pub bookkeeping_bytes: u64,
    /// Decoded pages in the hot tier, and how many of them have no compressed form yet.
    pub hot_pages: u64,
    /// Of `hot_pages`, those written since they were last compressed.
    pub hot_dirty_pages: u64,
    /// Reads served from the hot tier.
    pub hot_hits: u64,
    /// Reads that decoded a stored form.
    pub hot_misses: u64,
    /// Reads that found a corrupt stored form.
    pub failed_reads: u64,
    /// Per class, by name.
    pub classes: BTreeMap<&'static str, ClassStats>,
}

impl Stats {
    /// `orig_data_size / compr_data_size`, as zram users compute it.
    pub fn ratio(&self) -> f64 {
        self.orig_data_size as f64 / self.compr_data_size.max(1) as f64
    }

    /// Memory spent besides the compressed data: the page table and the allocator's
    /// bookkeeping.
    pub fn metadata_total(&self) -> u64 {
        self.metadata_bytes + self.bookkeeping_bytes
    }

    /// `orig_data_size / (mem_used_total + metadata + bookkeeping)`: what the memory
    /// really buys.
    pub fn effective_ratio(&self) -> f64 {
        let used = self.mem_used_total + self.metadata_total();
        self.orig_data_size as f64 / used.max(1) as f64
    }

    /// Adds another store's sizes and page counts (as for stores side by side); limits,
    /// maxima and counters of events are not summed.
    pub fn absorb(&mut self, other: &Stats) {
        self.pages += other.pages;
        self.orig_data_size += other.orig_data_size;
        self.compr_data_size += other.compr_data_size;
        self.mem_used_total += other.mem_used_total;
        self.metadata_bytes += other.metadata_bytes;
        self.bookkeeping_bytes += other.bookkeeping_bytes;
        self.same_pages += other.same_pages;
        self.huge_pages += other.huge_pages;
        for (name, class) in &other.classes {
            self.classes.entry(name).or_default().merge(class);
        }
    }

    /// Allocator overhead: `mem_used_total / compr_data_size - 1`.
    pub fn allocator_overhead(&self) -> f64 {
        self.mem_used_total as f64 / self.compr_data_size.max(1) as f64 - 1.0
    }

    /// The line zram prints in `/sys/block/zramN/mm_stat` (its first eight fields).
    pub fn mm_stat(&self) -> String {
        format!(
            "{} {} {} {} {} {} {} {}",
            self.orig_data_size,
            self.compr_data_size,
            self.mem_used_total,
            self.mem_limit,
            self.mem_used_max,
            self.same_pages,
            self.pages_compacted,
            self.huge_pages
        )
    }

    /// The figures of one class (zero for a class with no page).
    pub fn class(&self, class: Class) -> ClassStats {
        self.classes.get(class.name()).copied().unwrap_or_default()
    }
}
