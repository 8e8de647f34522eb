//! A model of the kernel's zsmalloc, the allocator behind zram: which size class an
//! object goes to and how many zspages (of how many pages) a class holds, so that
//! `mem_used_total` comes out as the kernel's would. Written from the allocator's
//! documented behaviour, not its code:
//!
//! - Size classes step by 16 bytes from 32 up to a page; an object takes the smallest
//!   class that holds it plus its 8-byte handle.
//! - Each class's zspage is the chain of 1 to `chain_size` pages (the kernel's
//!   `CONFIG_ZSMALLOC_CHAIN_SIZE`, 8 by default) that leaves the fewest bytes unused
//!   (the shortest of equals; one page for a power of two); classes
//!   next to each other with the same pages per zspage and objects per zspage are merged
//!   into the larger one.
//! - A class whose zspage is one page holding one object is huge: zram stores a page
//!   whole when its object (compressed size plus handle) would land in the first such
//!   class (its `huge_class_size`).
//! - An object goes to the class's fullest zspage that is not full (zspages are kept in
//!   fullness groups of 10% steps, the one that moved into a group last first); a new
//!   zspage is made when none has room, and an empty one is freed at once.
//! - Compaction, per class, while at least a zspage's worth of objects is wasted, moves
//!   objects from the emptiest zspage into the fullest non-full one until the first is
//!   empty (freed: `pages_compacted`) or the second full.
//!
//! Checked against this kernel's zram (6.18, lz4) with pages of one compressed size each,
//! written by `zpage zram`: `mem_used_total` exact for objects of 529 to 3623 bytes with
//! chains of 8 pages and an 8-byte handle (chains of 7 or 9 miss some); pages of 3624
//! bytes stored compressed, of 3625 whole. Frees and compaction: see the `compaction`
//! test in `cli/tests/zram.rs`, which runs the kernel beside the model.

use std::cmp::Reverse;
use std::collections::BTreeSet;
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

/// Where an object lives: its (merged) class and its zspage there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle {
    class: u16,
    zspage: u32,
}

/// One zspage: the owners (zram slots) of the objects it holds.
#[derive(Clone, Debug, Default)]
struct Zspage {
    owners: Vec<u32>,
    /// When it last moved into its fullness group (newer first within a group).
    stamp: u64,
}

/// A class's zspages.
#[derive(Clone, Debug, Default)]
struct ClassPages {
    /// By zspage number; `None` once freed (its number is reused).
    zspages: Vec<Option<Zspage>>,
    unused: Vec<u32>,
    /// Zspages neither empty nor full, fullest group first, newest first in a group.
    partial: BTreeSet<(Reverse<u8>, Reverse<u64>, u32)>,
    objects: u64,
    live_zspages: u64,
}

impl ClassPages {
    /// Objects zspage `z` holds (0 once freed).
    fn inuse(&self, z: u32) -> usize {
        self.zspages[z as usize]
            .as_ref()
            .map_or(0, |p| p.owners.len())
    }

    /// Zspage `z`, which is live.
    fn live(&mut self, z: u32) -> &mut Zspage {
        self.zspages[z as usize].as_mut().expect("a live zspage")
    }
}

/// A pool's classes and what is allocated in them.
#[derive(Clone, Debug)]
pub struct Pool {
    /// By class index (`(size - MIN_ALLOC) / CLASS_DELTA`), the merged class serving it.
    classes: Vec<Class>,
    /// By class index, the index that stands for its merged class (the largest).
    rep: Vec<usize>,
    /// By standing index, the merged class's zspages.
    pages_of: Vec<ClassPages>,
    /// Pages of the zspages allocated now.
    pages: u64,
    /// Pages compaction has freed.
    compacted: u64,
    clock: u64,
    huge_class_size: usize,
}

/// zsmalloc's fullness group of a zspage holding `inuse` of `capacity` objects: 0 empty,
/// 1 to 10 by tenths, 11 full.
fn group(inuse: usize, capacity: usize) -> u8 {
    match inuse {
        0 => 0,
        n if n == capacity => 11,
        n => (100 * n / capacity / 10 + 1) as u8,
    }
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
            pages_of: vec![ClassPages::default(); count],
            rep,
            classes,
            pages: 0,
            compacted: 0,
            clock: 0,
            huge_class_size,
        }
    }

    /// The compressed size from which zram stores a page whole: the smallest whose
    /// object (with its handle) lands in the first huge class.
    pub fn huge_threshold(&self) -> usize {
        self.huge_class_size - CLASS_DELTA + 1 - HANDLE
    }

    /// The merged class a compressed size falls in, as zram compares classes when it
    /// recompresses (the size alone, without the handle).
    pub fn class_of(&self, len: usize) -> usize {
        let size = len.clamp(MIN_ALLOC, PAGE_SIZE);
        self.rep[(size - MIN_ALLOC).div_ceil(CLASS_DELTA)]
    }

    /// Allocates an object of `len` bytes (1 to a page) for slot `owner`.
    pub fn alloc(&mut self, len: usize, owner: u32) -> Handle {
        let at = self.rep[self.index(len)];
        let class = self.classes[at];
        let pages = &mut self.pages_of[at];
        let zspage = match pages.partial.first() {
            Some(&(_, _, z)) => z,
            None => {
                self.pages += class.pages_per_zspage as u64;
                pages.live_zspages += 1;
                match pages.unused.pop() {
                    Some(z) => {
                        pages.zspages[z as usize] = Some(Zspage::default());
                        z
                    }
                    None => {
                        pages.zspages.push(Some(Zspage::default()));
                        (pages.zspages.len() - 1) as u32
                    }
                }
            }
        };
        pages.objects += 1;
        self.clock += 1;
        let clock = self.clock;
        let page = pages.zspages[zspage as usize]
            .as_mut()
            .expect("a live zspage");
        let before = group(page.owners.len(), class.objs_per_zspage);
        page.owners.push(owner);
        let after = group(page.owners.len(), class.objs_per_zspage);
        if before != after {
            pages
                .partial
                .remove(&(Reverse(before), Reverse(page.stamp), zspage));
            page.stamp = clock;
            if after < 11 {
                pages
                    .partial
                    .insert((Reverse(after), Reverse(clock), zspage));
            }
        }
        Handle {
            class: at as u16,
            zspage,
        }
    }

    /// Frees slot `owner`'s object at `handle`; an emptied zspage is freed at once.
    pub fn free(&mut self, handle: Handle, owner: u32) {
        let at = handle.class as usize;
        let capacity = self.classes[at].objs_per_zspage;
        let pages = &mut self.pages_of[at];
        let page = pages.zspages[handle.zspage as usize]
            .as_mut()
            .expect("a handle names a live zspage");
        let before = group(page.owners.len(), capacity);
        let i = page
            .owners
            .iter()
            .position(|&o| o == owner)
            .expect("an object's owner is in its zspage");
        page.owners.swap_remove(i);
        pages.objects -= 1;
        let after = group(page.owners.len(), capacity);
        if before == after {
            return;
        }
        pages
            .partial
            .remove(&(Reverse(before), Reverse(page.stamp), handle.zspage));
        if after == 0 {
            pages.zspages[handle.zspage as usize] = None;
            pages.unused.push(handle.zspage);
            pages.live_zspages -= 1;
            self.pages -= self.classes[at].pages_per_zspage as u64;
        } else {
            self.clock += 1;
            page.stamp = self.clock;
            pages
                .partial
                .insert((Reverse(after), Reverse(self.clock), handle.zspage));
        }
    }

    /// Compacts every class (zram's `compact`); `moved` learns each object that moved
    /// (its owner and new handle). Returns the pages freed.
    pub fn compact(&mut self, moved: &mut dyn FnMut(u32, Handle)) -> u64 {
        let before = self.pages;
        for at in 0..self.pages_of.len() {
            if self.rep[at] == at {
                self.compact_class(at, moved);
            }
        }
        let freed = before - self.pages;
        self.compacted += freed;
        freed
    }

    fn compact_class(&mut self, at: usize, moved: &mut dyn FnMut(u32, Handle)) {
        let class = self.classes[at];
        let capacity = class.objs_per_zspage;
        let pages = &mut self.pages_of[at];
        let wasted = |p: &ClassPages| p.live_zspages * capacity as u64 - p.objects;
        let mut dst: Option<u32> = None;
        while wasted(pages) >= capacity as u64 {
            // Destination: the fullest partial zspage (taken out of its group while used).
            let d = match dst {
                Some(d) => d,
                None => match pages.partial.pop_first() {
                    Some((_, _, d)) => d,
                    None => break,
                },
            };
            dst = Some(d);
            // Source: the newest of the emptiest group.
            let Some(&(Reverse(lowest), _, _)) = pages.partial.last() else {
                break;
            };
            let key = *pages
                .partial
                .range((Reverse(lowest), Reverse(u64::MAX), 0)..)
                .next()
                .expect("the group has a zspage");
            pages.partial.remove(&key);
            let s = key.2;
            while pages.inuse(s) > 0 && pages.inuse(d) < capacity {
                let owner = pages.live(s).owners.pop().expect("a source with objects");
                pages.live(d).owners.push(owner);
                moved(
                    owner,
                    Handle {
                        class: at as u16,
                        zspage: d,
                    },
                );
            }
            let left = pages.inuse(s);
            self.clock += 1;
            if left == 0 {
                pages.zspages[s as usize] = None;
                pages.unused.push(s);
                pages.live_zspages -= 1;
                self.pages -= class.pages_per_zspage as u64;
            } else {
                // Back at the head of its group.
                pages.live(s).stamp = self.clock;
                pages
                    .partial
                    .insert((Reverse(group(left, capacity)), Reverse(self.clock), s));
            }
            if pages.inuse(d) == capacity {
                dst = None;
            }
        }
        if let Some(d) = dst {
            // Back into its group.
            self.clock += 1;
            pages.live(d).stamp = self.clock;
            let g = group(pages.inuse(d), capacity);
            if g < 11 {
                pages.partial.insert((Reverse(g), Reverse(self.clock), d));
            }
        }
    }

    /// Bytes of memory the pool takes (zram's `mem_used_total`).
    pub fn mem_used(&self) -> u64 {
        self.pages * PAGE_SIZE as u64
    }

    /// Pages compaction has freed so far (zram's `pages_compacted`).
    pub fn pages_compacted(&self) -> u64 {
        self.compacted
    }

    fn index(&self, len: usize) -> usize {
        let size = (len + HANDLE).clamp(MIN_ALLOC, PAGE_SIZE);
        (size - MIN_ALLOC).div_ceil(CLASS_DELTA)
    }
}

/// The zspage length (in pages, 1 to `chain_size`) that leaves the fewest bytes unused
/// by objects of `size` bytes, the shortest of equals; one page for a power of two.
fn best_chain(size: usize, chain_size: usize) -> usize {
    if size.is_power_of_two() {
        return 1;
    }
    (1..=chain_size)
        .min_by_key(|pages| (pages * PAGE_SIZE % size, *pages))
        .unwrap_or(1)
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
        pool.alloc(24, 0); // 24 + 8 = 32 bytes: the first class
        assert_eq!(pool.mem_used(), PAGE_SIZE as u64);
        for owner in 1..128 {
            pool.alloc(24, owner);
        }
        assert_eq!(pool.mem_used(), PAGE_SIZE as u64, "128 fit one page");
        let last = pool.alloc(24, 128);
        assert_eq!(pool.mem_used(), 2 * PAGE_SIZE as u64);
        pool.free(last, 128);
        assert_eq!(
            pool.mem_used(),
            PAGE_SIZE as u64,
            "an emptied zspage is freed"
        );
    }

    /// Half the objects of four one-page zspages freed: compaction packs the rest into
    /// two and frees two pages; the handles it reports lead to the objects' new places.
    #[test]
    fn compaction_packs_a_class() {
        let mut pool = Pool::new(DEFAULT_CHAIN_SIZE);
        let mut handles: Vec<Handle> = (0..512).map(|o| pool.alloc(24, o)).collect();
        for owner in (0..512).step_by(2) {
            pool.free(handles[owner as usize], owner);
        }
        assert_eq!(pool.mem_used(), 4 * PAGE_SIZE as u64);
        let freed = pool.compact(&mut |owner, handle| handles[owner as usize] = handle);
        assert_eq!((freed, pool.pages_compacted()), (2, 2));
        assert_eq!(pool.mem_used(), 2 * PAGE_SIZE as u64);
        for owner in (1..512).step_by(2) {
            pool.free(handles[owner as usize], owner);
        }
        assert_eq!(
            pool.mem_used(),
            0,
            "every object was found where compaction put it"
        );
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
            for owner in 0..pages {
                pool.alloc(len, owner);
            }
            assert_eq!(pool.mem_used(), kernel, "{pages} objects of {len} bytes");
        }
    }
}
