//! The compressed-object allocator: stored forms packed byte-exact into 64 KiB slabs of
//! anonymous memory (memmap2), with size-class free lists and a compactor.
//!
//! Why not zsmalloc's layout (one slab chain per 16-byte size class)? Every populated
//! class then keeps a partly filled zspage, about half a page on average; with ~250
//! classes that is ~0.5 MiB, 28% of a 16 MiB postgres snapshot's 1.8 MiB of compressed
//! data, and rounding every object up to its class costs another ~1.5%. Here objects are
//! appended back to back at the head slab instead (no rounding), and the size classes
//! index the *holes* that frees leave: an allocation takes the smallest hole that fits and
//! returns the rest to its class, so freed space is reused without a class per object.
//! Compaction moves live objects out of slabs with garbage and unmaps them.
//!
//! Invariants:
//! - `resident` (zram's `mem_used_total`) is the sum over slabs of their populated bytes:
//!   the pages up to the high-water mark, rounded up to 4 KiB, plus at most
//!   [`POPULATE_STEP`] (and 1/32 of `resident`) populated ahead of it at the head slab;
//!   an anonymous mapping's untouched pages take no memory.
//! - With a limit set, `resident` never exceeds it: every growth is checked first and an
//!   allocation that would cross it fails and changes nothing.
//! - `live` (zram's `compr_data_size`) is the sum of live object lengths; a slab whose live
//!   count drops to zero is unmapped at once (its memory goes back to the kernel).
//! - A [`Handle`] names bytes owned by exactly one caller until it frees them; holes carry
//!   their slab's generation, so a hole of an unmapped or evacuating slab is never reused.

use crate::page::PAGE_SIZE;
use memmap2::MmapMut;
use std::collections::BTreeMap;

/// Makes `mem[from..to]` resident in one call. Failure (kernels before 5.14 lack
/// `MADV_POPULATE_WRITE`) only means the pages fault in one by one on first write.
fn populate(mem: &MmapMut, from: usize, to: usize) {
    if to > from {
        let _ = mem.advise_range(memmap2::Advice::PopulateWrite, from, to - from);
    }
}

/// Bytes per slab; offsets inside a slab fit a `u16`.
pub const SLAB_BYTES: usize = 64 * 1024;
/// Free-list granularity: a hole of `n` bytes is listed under class `n / HOLE_STEP`.
const HOLE_STEP: usize = 16;
const HOLE_CLASSES: usize = PAGE_SIZE / HOLE_STEP + 1;
/// The head slab is populated up to this far ahead with one `MADV_POPULATE_WRITE`: the
/// kernel fills several pages per call instead of taking a fault for each (about 5% of
/// insert time). A small allocator populates less, at most 1/32 of its size ahead, so memory
/// resident before use stays under ~3% of any allocator.
const POPULATE_STEP: usize = 16 * 1024;

/// Where an object lives: slab, offset and length packed in 8 bytes, so a page's metadata
/// holds it in the same word as a same-filled page's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle(u64);

impl Handle {
    fn new(slab: u32, offset: usize, len: usize) -> Handle {
        debug_assert!(offset < SLAB_BYTES && len <= PAGE_SIZE);
        Handle(u64::from(slab) | (offset as u64) << 32 | (len as u64) << 48)
    }

    pub fn from_bits(bits: u64) -> Handle {
        Handle(bits)
    }

    pub fn bits(self) -> u64 {
        self.0
    }

    pub fn slab(self) -> u32 {
        self.0 as u32
    }

    fn offset(self) -> usize {
        (self.0 >> 32) as u16 as usize
    }

    pub fn len(self) -> usize {
        (self.0 >> 48) as usize
    }
}

/// Why an allocation failed; either way nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// Resident memory would have become `needed` bytes, over the `limit`.
    Limit { needed: u64, limit: u64 },
    /// The kernel refused a new mapping.
    OutOfMemory,
}

struct Slab {
    mem: MmapMut,
    generation: u32,
    /// Bytes handed out from the start so far (appends happen only at the head slab).
    high_water: usize,
    /// Bytes from the start counted resident: a page multiple, at least `high_water`.
    populated: usize,
    live: usize,
    evacuating: bool,
    /// The slab's holes, offset to length: adjacent holes are merged as they appear, so
    /// freed space comes back in the largest runs it can.
    free: BTreeMap<u16, u16>,
}

impl Slab {
    fn resident(&self) -> usize {
        self.populated
    }

    /// Bytes handed out but no longer live (memory populated ahead of the head's
    /// high-water mark is not garbage).
    fn garbage(&self) -> usize {
        self.high_water.next_multiple_of(PAGE_SIZE) - self.live
    }
}

#[derive(Clone, Copy, Debug)]
struct Hole {
    slab: u32,
    generation: u32,
    offset: u16,
    len: u16,
}

impl Hole {
    /// Whether this listed hole is still one: its slab is the one it was listed in (not
    /// unmapped and reused) and holds exactly this hole (not merged away or taken).
    fn is_current(&self, slabs: &[Option<Slab>]) -> bool {
        slabs
            .get(self.slab as usize)
            .and_then(Option::as_ref)
            .is_some_and(|s| {
                s.generation == self.generation && s.free.get(&self.offset) == Some(&self.len)
            })
    }
}

/// Allocator totals, all in bytes except `pages_compacted`: each a field read, so the
/// store publishes them after every change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlabTotals {
    pub live: u64,
    pub resident: u64,
    pub resident_max: u64,
    pub limit: Option<u64>,
    pub pages_compacted: u64,
}

pub struct Slabs {
    slabs: Vec<Option<Slab>>,
    unused_ids: Vec<u32>,
    next_generation: u32,
    head: Option<u32>,
    holes: Vec<Vec<Hole>>,
    /// Entries in `holes` (current or not), and holes in the slabs' maps: when the
    /// first outgrows the second the lists are rebuilt.
    listed: usize,
    holes_now: usize,
    /// The compaction pass in progress was begun in place (relocations take holes only).
    in_place: bool,
    /// Bit c set when `holes[c]` may be non-empty.
    hole_bits: [u64; HOLE_CLASSES.div_ceil(64)],
    limit: Option<u64>,
    live: u64,
    resident: u64,
    resident_max: u64,
    pages_compacted: u64,
}

impl Slabs {
    pub fn new(limit: Option<u64>) -> Slabs {
        Slabs {
            slabs: Vec::new(),
            unused_ids: Vec::new(),
            next_generation: 0,
            head: None,
            holes: Vec::new(),
            listed: 0,
            holes_now: 0,
            in_place: false,
            hole_bits: [0; HOLE_CLASSES.div_ceil(64)],
            limit,
            live: 0,
            resident: 0,
            resident_max: 0,
            pages_compacted: 0,
        }
    }

    pub fn set_limit(&mut self, limit: Option<u64>) {
        self.limit = limit;
    }

    /// Stores `bytes` (1..=4096 of them) and returns their handle.
    pub fn alloc(&mut self, bytes: &[u8]) -> Result<Handle, AllocError> {
        let len = bytes.len();
        assert!((1..=PAGE_SIZE).contains(&len), "object of {len} bytes");
        let handle = match self.take_hole(len) {
            Some(handle) => handle,
            None => self.append(len)?,
        };
        Ok(self.fill(handle, bytes))
    }

    /// Writes `bytes` at `handle` (space just taken for them) and counts them live.
    fn fill(&mut self, handle: Handle, bytes: &[u8]) -> Handle {
        let slab = self.slab_mut(handle);
        slab.mem[handle.offset()..handle.offset() + bytes.len()].copy_from_slice(bytes);
        slab.live += bytes.len();
        self.live += bytes.len() as u64;
        handle
    }

    /// Puts `bytes` (1 to `old.len()` of them) where the live object `old` lies, and
    /// returns their handle; the tail they no longer need becomes a hole. It needs no
    /// memory, so it cannot fail: a store at its limit overwrites a page this way when the
    /// new form is no larger. Not for objects of an evacuating slab (compaction may
    /// already have passed them).
    pub fn replace_in_place(&mut self, old: Handle, bytes: &[u8]) -> Handle {
        let (len, old_len, offset) = (bytes.len(), old.len(), old.offset());
        assert!((1..=old_len).contains(&len), "{len} bytes into {old_len}");
        assert!(!self.is_evacuating(old), "in place into an evacuating slab");
        let slab = self.slab_mut(old);
        slab.mem[offset..offset + len].copy_from_slice(bytes);
        slab.live -= old_len - len;
        self.live -= (old_len - len) as u64;
        if len < old_len {
            self.add_hole(old.slab(), offset + len, old_len - len);
        }
        Handle::new(old.slab(), offset, len)
    }

    /// The bytes of a live object.
    pub fn get(&self, handle: Handle) -> &[u8] {
        let slab = self.slabs[handle.slab() as usize]
            .as_ref()
            .expect("handle into an unmapped slab");
        &slab.mem[handle.offset()..handle.offset() + handle.len()]
    }

    /// Frees a live object; a slab left empty is unmapped.
    pub fn free(&mut self, handle: Handle) {
        let len = handle.len();
        let id = handle.slab();
        let slab = self.slab_mut(handle);
        slab.live -= len;
        let now_empty = slab.live == 0;
        self.live -= len as u64;
        if now_empty {
            self.unmap(id);
        } else {
            self.add_hole(id, handle.offset(), len);
        }
    }

    pub fn totals(&self) -> SlabTotals {
        SlabTotals {
            live: self.live,
            resident: self.resident,
            resident_max: self.resident_max,
            limit: self.limit,
            pages_compacted: self.pages_compacted,
        }
    }

    /// The allocator's own bookkeeping (slab table and free lists), on the heap, in bytes.
    pub fn bookkeeping(&self) -> u64 {
        (self.slabs.capacity() * size_of::<Option<Slab>>()
            + self.unused_ids.capacity() * size_of::<u32>()
            + self.holes.capacity() * size_of::<Vec<Hole>>()
            + self
                .holes
                .iter()
                .map(|list| list.capacity() * size_of::<Hole>())
                .sum::<usize>()
            // The slabs' hole maps: B-tree leaves of eleven 4-byte entries, about half
            // full at worst.
            + self.holes_now * 8) as u64
    }

    /// Starts a compaction pass: marks the slabs worth evacuating (at least `min_garbage`
    /// bytes of garbage: a page, so that moving one slab's objects gains memory, or less
    /// after a pass that shrank every object a little, where the slabs' small holes add up;
    /// a slab's sealed tail, shorter than one object, never qualifies alone at a page) and
    /// seals the head so moved objects land elsewhere. Where the limit leaves less room
    /// than the marked slabs' live bytes (their objects could not move to new slabs), it
    /// marks as [`Slabs::begin_compaction_in_place`] does instead.
    /// Returns `None` if there is nothing to move, else whether the pass is in place.
    pub fn begin_compaction(&mut self, min_garbage: usize) -> Option<bool> {
        let moving: usize = (self.slabs.iter().flatten())
            .filter(|slab| slab.garbage() >= min_garbage.max(1))
            .map(|slab| slab.live)
            .sum();
        if let Some(limit) = self.limit
            && self.resident + moving as u64 > limit
        {
            return self.begin_compaction_in_place().then_some(true);
        }
        let mut any = false;
        for slab in self.slabs.iter_mut().flatten() {
            if slab.garbage() >= min_garbage.max(1) {
                slab.evacuating = true;
                any = true;
            }
        }
        if let Some(head) = self.head
            && self.slabs[head as usize]
                .as_ref()
                .is_some_and(|slab| slab.evacuating)
        {
            self.head = None;
        }
        any.then_some(false)
    }

    /// Starts a compaction pass where memory cannot grow (at the limit): marks the slabs
    /// with the most garbage, at least a page each, as long as the holes of the slabs
    /// left unmarked can take their live objects (with room to spare, since an object
    /// needs one hole that fits it). Holes are never merged, so at the limit freeing
    /// small objects alone may never make room for a large one: emptying whole slabs
    /// does. Returns whether there is anything to move.
    fn begin_compaction_in_place(&mut self) -> bool {
        let mut room: usize = self.slabs.iter().flatten().map(Slab::garbage).sum();
        let mut order: Vec<(usize, u32)> = self
            .slabs
            .iter()
            .enumerate()
            .filter_map(|(id, slab)| slab.as_ref().map(|slab| (slab.garbage(), id as u32)))
            .filter(|&(garbage, _)| garbage >= PAGE_SIZE)
            .collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        let mut any = false;
        self.in_place = true;
        for (garbage, id) in order {
            let slab = self.slabs[id as usize].as_mut().expect("listed above");
            // Its own holes take nothing once it is marked.
            room = room.saturating_sub(garbage);
            if slab.live * 2 > room {
                break;
            }
            room -= slab.live;
            slab.evacuating = true;
            any = true;
            if self.head == Some(id) {
                self.head = None;
            }
        }
        any
    }

    pub fn is_evacuating(&self, handle: Handle) -> bool {
        self.slabs[handle.slab() as usize]
            .as_ref()
            .is_some_and(|slab| slab.evacuating)
    }

    /// Moves an object out of an evacuating slab; `None` when there is no room (the
    /// object stays where it is). In a pass begun in place it takes a hole or nothing:
    /// growing there would fill the limit with the objects of slabs that never empty.
    pub fn relocate(&mut self, handle: Handle) -> Option<Handle> {
        let mut buffer = [0u8; PAGE_SIZE];
        let len = handle.len();
        buffer[..len].copy_from_slice(self.get(handle));
        let moved = if self.in_place {
            let hole = self.take_hole(len)?;
            self.fill(hole, &buffer[..len])
        } else {
            self.alloc(&buffer[..len]).ok()?
        };
        let pages_before = self.resident;
        self.free(handle);
        self.pages_compacted += (pages_before - self.resident) / PAGE_SIZE as u64;
        Some(moved)
    }

    /// Ends a compaction pass: slabs that could not be emptied become ordinary again.
    pub fn end_compaction(&mut self) {
        self.in_place = false;
        for slab in self.slabs.iter_mut().flatten() {
            slab.evacuating = false;
        }
        // The lists again from the slabs' holes: without those of the slabs just
        // unmapped, with those of evacuated slabs that allocations passed over.
        self.reindex();
    }

    /// Test hook: overwrites an object's bytes in place, as memory corruption would.
    #[cfg(test)]
    pub fn overwrite(&mut self, handle: Handle, bytes: &[u8]) {
        let offset = handle.offset();
        self.slab_mut(handle).mem[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    fn slab_mut(&mut self, handle: Handle) -> &mut Slab {
        self.slabs[handle.slab() as usize]
            .as_mut()
            .expect("handle into an unmapped slab")
    }

    /// Best fit among the holes: the smallest class that surely fits, then larger ones.
    fn take_hole(&mut self, len: usize) -> Option<Handle> {
        let mut class = len.div_ceil(HOLE_STEP);
        while let Some(found) = self.next_hole_class(class) {
            class = found;
            while let Some(hole) = self.holes[class].pop() {
                self.listed -= 1;
                if !hole.is_current(&self.slabs) || (hole.len as usize) < len {
                    continue;
                }
                let slab = self.slabs[hole.slab as usize].as_mut().expect("current");
                if slab.evacuating {
                    // Dropped from the lists; `end_compaction` lists it again.
                    continue;
                }
                slab.free.remove(&hole.offset);
                let rest = hole.len as usize - len;
                if rest == 0 {
                    self.holes_now -= 1;
                } else {
                    // The space after a hole is never a hole (it would have merged).
                    let offset = hole.offset + len as u16;
                    slab.free.insert(offset, rest as u16);
                    self.index_hole(Hole {
                        offset,
                        len: rest as u16,
                        ..hole
                    });
                }
                return Some(Handle::new(hole.slab, hole.offset as usize, len));
            }
            self.hole_bits[class / 64] &= !(1 << (class % 64));
            class += 1;
        }
        None
    }

    fn next_hole_class(&self, from: usize) -> Option<usize> {
        (from / 64..self.hole_bits.len()).find_map(|word| {
            let mask = if word == from / 64 {
                !0u64 << (from % 64)
            } else {
                !0
            };
            let bits = self.hole_bits[word] & mask;
            (bits != 0).then(|| word * 64 + bits.trailing_zeros() as usize)
        })
    }

    /// Makes `len` bytes at `offset` of slab `id` a hole, merged with the holes before
    /// and after it.
    fn add_hole(&mut self, id: u32, offset: usize, len: usize) {
        let slab = self.slabs[id as usize]
            .as_mut()
            .expect("a hole in a mapped slab");
        let (mut start, mut end, mut merged) = (offset, offset + len, 0);
        if let Some((&before, &before_len)) = slab.free.range(..offset as u16).next_back()
            && before as usize + before_len as usize == start
        {
            slab.free.remove(&before);
            start = before as usize;
            merged += 1;
        }
        if end < SLAB_BYTES
            && let Some(after_len) = slab.free.remove(&(end as u16))
        {
            end += after_len as usize;
            merged += 1;
        }
        // A slab with a live object has a hole of at most SLAB_BYTES - 1 bytes.
        slab.free.insert(start as u16, (end - start) as u16);
        let generation = slab.generation;
        self.holes_now = self.holes_now + 1 - merged;
        self.index_hole(Hole {
            slab: id,
            generation,
            offset: start as u16,
            len: (end - start) as u16,
        });
        if self.listed > 2 * self.holes_now + 1024 {
            self.reindex();
        }
    }

    /// Lists every hole of every slab afresh (dropping entries of holes since merged,
    /// taken or unmapped).
    fn reindex(&mut self) {
        for list in &mut self.holes {
            list.clear();
        }
        self.hole_bits = [0; HOLE_CLASSES.div_ceil(64)];
        self.listed = 0;
        let holes: Vec<Hole> = self
            .slabs
            .iter()
            .enumerate()
            .filter_map(|(id, slab)| slab.as_ref().map(|slab| (id as u32, slab)))
            .flat_map(|(id, slab)| {
                slab.free.iter().map(move |(&offset, &len)| Hole {
                    slab: id,
                    generation: slab.generation,
                    offset,
                    len,
                })
            })
            .collect();
        for hole in holes {
            self.index_hole(hole);
        }
        for list in &mut self.holes {
            list.shrink_to_fit();
        }
    }

    /// Lists a hole under its size class (the last class takes every hole of a page or
    /// more); the lists may keep entries of holes since merged or taken, which
    /// [`Hole::is_current`] tells apart.
    fn index_hole(&mut self, hole: Hole) {
        let class = (hole.len as usize / HOLE_STEP).min(HOLE_CLASSES - 1);
        self.listed += 1;
        // Lists are created on first use: a store that never frees pays nothing.
        if self.holes.len() <= class {
            self.holes.resize_with(class + 1, Vec::new);
        }
        self.holes[class].push(hole);
        self.hole_bits[class / 64] |= 1 << (class % 64);
    }

    /// Charges a slab's growth so that `end` bytes are resident (plus `extra` bytes
    /// elsewhere), populating ahead when the limit allows; returns the slab's new populated
    /// length.
    fn grow(&mut self, end: usize, populated: usize, extra: usize) -> Result<usize, AllocError> {
        let needed = end.next_multiple_of(PAGE_SIZE).max(populated);
        if needed == populated && extra == 0 {
            return Ok(populated);
        }
        let step = (self.resident as usize / 32).clamp(PAGE_SIZE, POPULATE_STEP) & !(PAGE_SIZE - 1);
        let ahead = end.next_multiple_of(step).min(SLAB_BYTES);
        if self.charge((ahead - populated + extra) as u64).is_ok() {
            return Ok(ahead);
        }
        self.charge((needed - populated + extra) as u64)?;
        Ok(needed)
    }

    /// Appends at the head slab, opening a new slab when the head is full.
    fn append(&mut self, len: usize) -> Result<Handle, AllocError> {
        // The head's unused tail (shorter than `len`, so under a page) becomes a hole;
        // it is counted resident from now on, like any handed-out bytes.
        let mut tail = None;
        if let Some(head) = self.head {
            let slab = self.slabs[head as usize].as_ref().expect("head is mapped");
            let (start, populated) = (slab.high_water, slab.populated);
            if start + len <= SLAB_BYTES {
                let populated = self.grow(start + len, populated, 0)?;
                let slab = self.slabs[head as usize].as_mut().expect("head is mapped");
                populate(&slab.mem, slab.populated, populated);
                slab.populated = populated;
                slab.high_water += len;
                return Ok(Handle::new(head, start, len));
            }
            tail = Some((head, start, SLAB_BYTES - populated));
        }
        let tail_growth = tail.map_or(0, |(.., growth)| growth);
        let populated = self.grow(len, 0, tail_growth)?;
        let Ok(mem) = MmapMut::map_anon(SLAB_BYTES) else {
            self.resident -= (tail_growth + populated) as u64;
            return Err(AllocError::OutOfMemory);
        };
        populate(&mem, 0, populated);
        if let Some((old, start, _)) = tail {
            let old_slab = self.slabs[old as usize].as_mut().expect("head is mapped");
            old_slab.high_water = SLAB_BYTES;
            old_slab.populated = SLAB_BYTES;
            if start < SLAB_BYTES {
                self.add_hole(old, start, SLAB_BYTES - start);
            }
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let slab = Slab {
            mem,
            generation,
            high_water: len,
            populated,
            live: 0,
            evacuating: false,
            free: BTreeMap::new(),
        };
        let id = match self.unused_ids.pop() {
            Some(id) => {
                self.slabs[id as usize] = Some(slab);
                id
            }
            None => {
                self.slabs.push(Some(slab));
                (self.slabs.len() - 1) as u32
            }
        };
        self.head = Some(id);
        Ok(Handle::new(id, 0, len))
    }

    /// Accounts `bytes` more resident memory, or fails if that crosses the limit.
    fn charge(&mut self, bytes: u64) -> Result<(), AllocError> {
        let needed = self.resident + bytes;
        if let Some(limit) = self.limit
            && needed > limit
        {
            return Err(AllocError::Limit { needed, limit });
        }
        self.resident = needed;
        self.resident_max = self.resident_max.max(needed);
        Ok(())
    }

    fn unmap(&mut self, id: u32) {
        let slab = self.slabs[id as usize]
            .take()
            .expect("unmapping a live slab");
        self.holes_now -= slab.free.len();
        self.resident -= slab.resident() as u64;
        if self.head == Some(id) {
            self.head = None;
        }
        self.unused_ids.push(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_holes_merge_and_take_a_larger_object() {
        let mut slabs = Slabs::new(None);
        let a = slabs.alloc(&[1; 1000]).unwrap();
        let b = slabs.alloc(&[2; 1000]).unwrap();
        let c = slabs.alloc(&[3; 1000]).unwrap();
        let d = slabs.alloc(&[4; 100]).unwrap();
        // Freed out of order: the middle one merges with both neighbours.
        slabs.free(a);
        slabs.free(c);
        slabs.free(b);
        let resident = slabs.totals().resident;
        // (A request looks in the classes that surely fit: 2990 bytes, not 3000.)
        let big = slabs.alloc(&[5; 2990]).unwrap();
        assert_eq!((big.slab(), big.offset()), (a.slab(), a.offset()));
        assert_eq!(slabs.totals().resident, resident, "no growth");
        assert_eq!(slabs.get(big), &[5; 2990][..]);
        assert_eq!(slabs.get(d), &[4; 100][..]);
        // A slab's whole free space is one hole after the rest goes: freeing the last
        // object unmaps it.
        slabs.free(big);
        slabs.free(d);
        assert_eq!(slabs.totals().resident, 0);
    }

    #[test]
    fn a_hole_shrunk_in_place_merges_with_the_next() {
        let mut slabs = Slabs::new(None);
        let a = slabs.alloc(&[1; 2000]).unwrap();
        let b = slabs.alloc(&[2; 500]).unwrap();
        let _keep = slabs.alloc(&[3; 10]).unwrap();
        slabs.free(b);
        let a = slabs.replace_in_place(a, &[7; 1000]);
        // 1000 bytes after `a` and `b`'s 500 are one hole of 1500.
        let next = slabs.alloc(&[8; 1480]).unwrap();
        assert_eq!(next.offset(), a.offset() + 1000);
        assert_eq!(slabs.get(a), &[7; 1000][..]);
    }
}
