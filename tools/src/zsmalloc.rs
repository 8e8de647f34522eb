//! A model of the kernel's zsmalloc, the allocator behind zram: which size class an
//! object goes to and how many zspages (of how many pages) a class holds, so that
//! `mem_used_total` comes out as the kernel's would. Written from the allocator's
//! documented behaviour, not its code:
//!
//! - Size classes step by 16 bytes from 32 up to a page; an object takes the smallest
//!   class that holds it plus its 8-byte handle.
//! - Each class's zspage is the chain of 1 to `chain_size` pages (the kernel's
//!   `CONFIG_ZSMALLOC_CHAIN_SIZE`, 8 by default) that wastes the least of itself; classes
//!   next to each other with the same pages per zspage and objects per zspage are merged
//!   into the larger one.
//! - A class whose zspage is one page holding one object is huge: zram stores a page
//!   whole when its object (compressed size plus handle) would land in the first such
//!   class (its `huge_class_size`).
//! - Objects fill a class's zspages in order (a fresh device written once, as `zpage
//!   zram` writes it), so a class of `n` objects holds `ceil(n / objs_per_zspage)`
//!   zspages.
//!
//! Checked against this kernel's zram (6.18, lz4) with pages of one compressed size each,
//! written by `zpage zram`: `mem_used_total` exact for objects of 529 to 3623 bytes with
//! chains of 8 pages and an 8-byte handle (chains of 7 or 9 miss some); pages of 3624
//! bytes stored compressed, of 3625 whole.

use zpage::PAGE_SIZE;

/// The kernel's default `CONFIG_ZSMALLOC_CHAIN_SIZE`.
pub const DEFAULT_CHAIN_SIZE: usize = 8;
const MIN_ALLOC: usize = 32;
const CLASS_DELTA: usize = 16;
/// The handle zsmalloc keeps with each object (one word).
const HANDLE: usize = 8;

/// One (merged) size class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Class {
    size: usize,
    pages_per_zspage: usize,
    objs_per_zspage: usize,
}

/// A pool's classes and what is allocated in them.
#[derive(Clone, Debug)]
pub struct Pool {
    /// By class index (`(size - MIN_ALLOC) / CLASS_DELTA`), the merged class serving it.
    classes: Vec<Class>,
    /// By class index, the index that stands for its merged class (the largest).
    rep: Vec<usize>,
    /// Objects per merged class, at its standing index.
    objects: Vec<u64>,
    /// Pages of the zspages allocated so far.
    pages: u64,
    huge_class_size: usize,
}

impl Pool {
    /// A pool whose zspages chain at most `chain_size` pages.
    pub fn new(chain_size: usize) -> Pool {
        let count = (PAGE_SIZE - MIN_ALLOC) / CLASS_DELTA + 1;
        let mut classes: Vec<Class> = (0..count)
            .map(|i| {
                let size = MIN_ALLOC + i * CLASS_DELTA;
                let pages = best_chain(size, chain_size);
                Class {
                    size,
                    pages_per_zspage: pages,
                    objs_per_zspage: pages * PAGE_SIZE / size,
                }
            })
            .collect();
        // The huge class is the smallest one whose zspage is a page holding one object
        // (before merging, which gives merged classes the largest size of their run).
        let huge_class_size = classes
            .iter()
            .find(|c| c.pages_per_zspage == 1 && c.objs_per_zspage == 1)
            .map_or(PAGE_SIZE, |c| c.size);
        // From the largest down: a class with the same zspage shape as the one above it
        // is served by that one.
        for i in (0..count - 1).rev() {
            let above = classes[i + 1];
            if classes[i].pages_per_zspage == above.pages_per_zspage
                && classes[i].objs_per_zspage == above.objs_per_zspage
            {
                classes[i] = above;
            }
        }
        let mut rep: Vec<usize> = (0..count).collect();
        for i in (0..count - 1).rev() {
            if classes[i] == classes[i + 1] {
                rep[i] = rep[i + 1];
            }
        }
        Pool {
            objects: vec![0; count],
            rep,
            classes,
            pages: 0,
            huge_class_size,
        }
    }

    /// The compressed size from which zram stores a page whole: the smallest whose
    /// object (with its handle) lands in the first huge class.
    pub fn huge_threshold(&self) -> usize {
        self.huge_class_size - CLASS_DELTA + 1 - HANDLE
    }

    /// Bytes of memory allocating an object of `len` bytes would add (a new zspage, or
    /// nothing).
    pub fn growth(&self, len: usize) -> u64 {
        let at = self.rep[self.index(len)];
        let class = self.classes[at];
        if self.objects[at].is_multiple_of(class.objs_per_zspage as u64) {
            (class.pages_per_zspage * PAGE_SIZE) as u64
        } else {
            0
        }
    }

    /// Allocates an object of `len` bytes (1 to a page).
    pub fn alloc(&mut self, len: usize) {
        self.pages += self.growth(len) / PAGE_SIZE as u64;
        let at = self.rep[self.index(len)];
        self.objects[at] += 1;
    }

    /// Bytes of memory the pool takes (zram's `mem_used_total`).
    pub fn mem_used(&self) -> u64 {
        self.pages * PAGE_SIZE as u64
    }

    fn index(&self, len: usize) -> usize {
        let size = (len + HANDLE).clamp(MIN_ALLOC, PAGE_SIZE);
        (size - MIN_ALLOC).div_ceil(CLASS_DELTA)
    }
}

/// The zspage length (in pages, 1 to `chain_size`) that wastes the least for objects of
/// `size` bytes: the first of the best.
fn best_chain(size: usize, chain_size: usize) -> usize {
    let mut best = (0, 1);
    for pages in 1..=chain_size {
        let bytes = pages * PAGE_SIZE;
        let used = bytes / size * size * 100 / bytes;
        if used > best.0 {
            best = (used, pages);
        }
        if used == 100 {
            break;
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_the_huge_class() {
        let pool = Pool::new(DEFAULT_CHAIN_SIZE);
        // A page holds 128 objects of 32 bytes: one page, nothing wasted.
        assert_eq!(pool.classes[0].pages_per_zspage, 1);
        assert_eq!(pool.classes[0].objs_per_zspage, 128);
        // Measured on the kernel's zram: 3624 bytes stored compressed, 3625 whole.
        assert_eq!(pool.huge_threshold(), 3625);
    }

    #[test]
    fn objects_fill_zspages_in_order() {
        let mut pool = Pool::new(DEFAULT_CHAIN_SIZE);
        pool.alloc(24); // 24 + 8 = 32 bytes: the first class
        assert_eq!(pool.mem_used(), PAGE_SIZE as u64);
        for _ in 0..127 {
            pool.alloc(24);
        }
        assert_eq!(pool.mem_used(), PAGE_SIZE as u64, "128 fit one page");
        pool.alloc(24);
        assert_eq!(pool.mem_used(), 2 * PAGE_SIZE as u64);
    }

    /// The kernel's `mem_used_total` for 1000 (200 for the last) pages of one compressed
    /// size each, measured with `zpage zram --algo lz4` on this machine.
    #[test]
    fn the_kernels_memory_for_pages_of_one_size() {
        for (len, pages, kernel) in [
            (529, 1000, 548_864),
            (1032, 1000, 1_081_344),
            (1533, 1000, 1_572_864),
            (2034, 1000, 2_048_000),
            (2535, 1000, 2_560_000),
            (3036, 1000, 3_072_000),
            (3436, 1000, 3_514_368),
            (3623, 200, 753_664),
        ] {
            let mut pool = Pool::new(DEFAULT_CHAIN_SIZE);
            for _ in 0..pages {
                pool.alloc(len);
            }
            assert_eq!(pool.mem_used(), kernel, "{pages} objects of {len} bytes");
        }
    }
}
