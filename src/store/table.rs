//! Per-page metadata: 17 bytes per page id, kept in blocks of 64 ids of one shard.
//!
//! A page's metadata is a `word` (the allocator handle, the backing slot and length of a
//! written-back page, or the value of a same-filled page), a CRC-32 of its stored bytes,
//! one `meta` byte (state bits and class) and an access stamp (the second of its last
//! read or write, an idle, a cold and a mixed mark), held as four arrays per block so no
//! padding is paid: 8 + 4 + 1 + 4 = 17 bytes a page. Blocks are
//! found through a hash map keyed by the id's group (see [`Table::locate`]), which adds
//! about 21 bytes per block
//! (key, box pointer, control byte, at the map's 7/8 load), 0.3 bytes a page when ids are
//! dense (swap offsets, region page numbers); a sparse id costs its whole block (833
//! bytes). [`Table::memory_bytes`] counts all of it from the live sizes and capacities.
//! The map hashes with a fixed seed: passes and compaction walk pages in its order, so a
//! seed drawn per process would lay the same pages out differently in every run (the
//! ids are the embedder's own, so there is no untrusted input to randomise against).
//!
//! Invariants: a block exists only while it holds at least one present page; `meta == 0`
//! means absent; a page with `STORED` set owns the allocator object its handle names
//! (unless its class is zero or same, whose value is the word itself, or it is `BACKED`,
//! when it owns the backing slot instead). The access stamp is a hint for the tiers
//! (which pages are idle) and never decides what a page holds: it is written with
//! relaxed atomics under the shard's read lock too, so that reads can clear the mark.

use crate::codec::Class;
use crate::sync::Hint;
use foldhash::fast::FixedState as Fixed;
use hashbrown::HashMap;
use std::sync::atomic::Ordering::Relaxed;

pub const BLOCK_PAGES: usize = 64;

/// The page is present.
const PRESENT: u8 = 0x80;
/// A stored (compressed) form exists; the low 3 bits are its class.
const STORED: u8 = 0x40;
/// A decoded copy is in the hot tier.
const HOT: u8 = 0x20;
/// The stored form lives in the backing store, not the allocator. With the zero class
/// (which is never backed) it marks a member of a cold unit instead.
const BACKED: u8 = 0x10;
/// The stored form is the idle pass's (recompressed, or found not worth it): the pass
/// skips it until the page is written again.
const SETTLED: u8 = 0x08;
/// The access stamp's idle mark.
const IDLE: u32 = 1 << 31;
/// The access stamp's cold mark: the cold pass has been over the page's form (a read or
/// a write clears it with the idle mark).
const COLD: u32 = 1 << 30;
/// The access stamp's reference bit: read or rewritten since it entered the eviction
/// hand's queue or the hand last passed it (CLOCK's bit).
const REFERENCED: u32 = 1 << 29;
/// The access stamp's mixed mark: the coldest pass has weighed the page's form alone
/// (a page no cold unit took; a read or a write clears it with the cold mark).
const MIXED: u32 = 1 << 28;
/// The access stamp's second of the last access.
const SECOND: u32 = MIXED - 1;

/// A page's access stamp, unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// The second of its last read or write.
    pub second: u32,
    pub idle: bool,
    pub cold: bool,
    pub referenced: bool,
    /// The coldest pass has weighed the page alone since its last access.
    pub mixed: bool,
}
const CLASS_BITS: u8 = 0x07;

/// A page's metadata, unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub word: u64,
    pub checksum: u32,
    /// The stored form's class, if one exists (a dirty hot page has none).
    pub stored: Option<Class>,
    pub hot: bool,
    /// The stored form is in the backing store (`word` names its slot and length).
    pub backed: bool,
    /// The idle pass has been over this form (a write clears it).
    pub settled: bool,
    /// The page is a member of a cold unit (`word` names the unit and the position,
    /// `checksum` is the page's own CRC); its class is then [`Class::Zstd`], the unit's.
    pub unit: bool,
}

impl Meta {
    fn pack(self) -> u8 {
        if self.unit {
            debug_assert!(self.stored == Some(Class::Zstd) && !self.backed);
            let hot = if self.hot { HOT } else { 0 };
            return PRESENT | STORED | BACKED | SETTLED | hot | Class::Zero.tag();
        }
        let stored = self.stored.map_or(0, |class| STORED | class.tag());
        let flag = |on: bool, bit: u8| if on { bit } else { 0 };
        PRESENT
            | stored
            | flag(self.backed, BACKED)
            | flag(self.settled, SETTLED)
            | flag(self.hot, HOT)
    }

    fn unpack(word: u64, checksum: u32, meta: u8) -> Option<Meta> {
        const UNIT: u8 = STORED | BACKED | CLASS_BITS;
        if meta & PRESENT != 0 && meta & UNIT == STORED | BACKED | Class::Zero.tag() {
            return Some(Meta {
                word,
                checksum,
                stored: Some(Class::Zstd),
                hot: meta & HOT != 0,
                backed: false,
                settled: true,
                unit: true,
            });
        }
        (meta & PRESENT != 0).then(|| Meta {
            word,
            checksum,
            stored: (meta & STORED != 0)
                .then(|| Class::from_tag(meta & CLASS_BITS).expect("valid class bits")),
            hot: meta & HOT != 0,
            backed: meta & BACKED != 0,
            settled: meta & SETTLED != 0,
            unit: false,
        })
    }
}

struct Block {
    words: [u64; BLOCK_PAGES],
    checksums: [u32; BLOCK_PAGES],
    metas: [u8; BLOCK_PAGES],
    access: [Hint; BLOCK_PAGES],
    present: u8,
    /// The low `shard_bits` bits shared by every id of this block.
    low: u8,
}

pub struct Table {
    blocks: HashMap<u64, Box<Block>, Fixed>,
    len: usize,
    shard_bits: u32,
}

impl Table {
    /// A table for one of `1 << shard_bits` shards (at most 64).
    pub fn new(shard_bits: u32) -> Table {
        assert!(shard_bits <= 6);
        Table {
            blocks: HashMap::with_hasher(Fixed::with_seed(0)),
            len: 0,
            shard_bits,
        }
    }

    /// Ids are interleaved over the shards one by one (so a run of consecutive ids
    /// spreads its work and its hot-tier share over every shard), in groups of
    /// `64 << shard_bits` ids; the ids a shard gets from one group fill one block:
    /// the group is the block's key and `(id >> shard_bits) % 64` the slot.
    pub fn locate(&self, id: u64) -> (u64, usize) {
        (
            id >> (BLOCK_PAGES.trailing_zeros() + self.shard_bits),
            (id >> self.shard_bits) as usize % BLOCK_PAGES,
        )
    }

    /// Page `id`'s access stamp.
    pub fn access(&self, id: u64) -> Option<Access> {
        let (key, slot) = self.locate(id);
        let block = self.blocks.get(&key)?;
        (block.metas[slot] != 0).then(|| {
            let stamp = block.access[slot].load(Relaxed);
            Access {
                second: stamp & SECOND,
                idle: stamp & IDLE != 0,
                cold: stamp & COLD != 0,
                referenced: stamp & REFERENCED != 0,
                mixed: stamp & MIXED != 0,
            }
        })
    }

    /// Marks page `id` as gone over by the cold pass. Needs only the shard's read lock.
    pub fn mark_cold(&self, id: u64) {
        let (key, slot) = self.locate(id);
        if let Some(block) = self.blocks.get(&key) {
            block.access[slot].fetch_or(COLD, Relaxed);
        }
    }

    /// Marks page `id` as weighed alone by the coldest pass. Needs only the shard's read
    /// lock.
    pub fn mark_mixed(&self, id: u64) {
        let (key, slot) = self.locate(id);
        if let Some(block) = self.blocks.get(&key) {
            block.access[slot].fetch_or(MIXED, Relaxed);
        }
    }

    /// Records an access to page `id` at second `now` (clearing its idle, cold and mixed marks,
    /// setting its reference bit); a no-op for an absent page. Needs only the shard's
    /// read lock.
    pub fn touch(&self, id: u64, now: u32) {
        let (key, slot) = self.locate(id);
        let stamp = now & SECOND | REFERENCED;
        if let Some(block) = self.blocks.get(&key)
            && block.access[slot].load(Relaxed) != stamp
        {
            block.access[slot].store(stamp, Relaxed);
        }
    }

    /// Sets page `id`'s reference bit. Needs only the shard's read lock.
    pub fn reference(&self, id: u64) {
        let (key, slot) = self.locate(id);
        if let Some(block) = self.blocks.get(&key) {
            block.access[slot].fetch_or(REFERENCED, Relaxed);
        }
    }

    /// Clears page `id`'s reference bit (the eviction hand passing it).
    pub fn unreference(&self, id: u64) {
        let (key, slot) = self.locate(id);
        if let Some(block) = self.blocks.get(&key) {
            block.access[slot].fetch_and(!REFERENCED, Relaxed);
        }
    }

    /// Marks idle every page last accessed at or before second `before`; returns how
    /// many pages are marked now. Needs only the shard's read lock.
    pub fn mark_idle(&self, before: u32) -> u64 {
        let mut marked = 0;
        for block in self.blocks.values() {
            for slot in 0..BLOCK_PAGES {
                if block.metas[slot] == 0 {
                    continue;
                }
                let stamp = block.access[slot].load(Relaxed);
                if stamp & SECOND <= before {
                    block.access[slot].fetch_or(IDLE, Relaxed);
                    marked += 1;
                } else if stamp & IDLE != 0 {
                    marked += 1;
                }
            }
        }
        marked
    }

    /// How many pages are marked idle.
    pub fn idle_count(&self) -> u64 {
        let idle = |block: &Block, slot: usize| {
            block.metas[slot] != 0 && block.access[slot].load(Relaxed) & IDLE != 0
        };
        self.blocks
            .values()
            .map(|block| (0..BLOCK_PAGES).filter(|&slot| idle(block, slot)).count() as u64)
            .sum()
    }

    pub fn get(&self, id: u64) -> Option<Meta> {
        let (key, slot) = self.locate(id);
        let block = self.blocks.get(&key)?;
        Meta::unpack(block.words[slot], block.checksums[slot], block.metas[slot])
    }

    /// Sets a page's metadata, returning what it replaces; `now` (a write's second)
    /// becomes its access stamp, or with `None` the stamp stays (a move, not an access).
    pub fn set(&mut self, id: u64, meta: Meta, now: Option<u32>) -> Option<Meta> {
        let (key, slot) = self.locate(id);
        let low = (id & ((1 << self.shard_bits) - 1)) as u8;
        let block = self.blocks.entry(key).or_insert_with(|| {
            Box::new(Block {
                words: [0; BLOCK_PAGES],
                checksums: [0; BLOCK_PAGES],
                metas: [0; BLOCK_PAGES],
                access: std::array::from_fn(|_| Hint::new(0)),
                present: 0,
                low,
            })
        });
        debug_assert_eq!(block.low, low, "one shard, one residue per group");
        let old = Meta::unpack(block.words[slot], block.checksums[slot], block.metas[slot]);
        block.words[slot] = meta.word;
        block.checksums[slot] = meta.checksum;
        block.metas[slot] = meta.pack();
        if let Some(now) = now {
            block.access[slot].store(now & SECOND, Relaxed);
        }
        if old.is_none() {
            block.present += 1;
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, id: u64) -> Option<Meta> {
        let (key, slot) = self.locate(id);
        let block = self.blocks.get_mut(&key)?;
        let old = Meta::unpack(block.words[slot], block.checksums[slot], block.metas[slot])?;
        block.metas[slot] = 0;
        block.present -= 1;
        self.len -= 1;
        if block.present == 0 {
            self.blocks.remove(&key);
        }
        Some(old)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Every present id with its metadata, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Meta)> + '_ {
        let bits = self.shard_bits;
        self.blocks.iter().flat_map(move |(&key, block)| {
            (0..BLOCK_PAGES).filter_map(move |slot| {
                Meta::unpack(block.words[slot], block.checksums[slot], block.metas[slot]).map(
                    |meta| {
                        let group = key << BLOCK_PAGES.trailing_zeros() | slot as u64;
                        (group << bits | u64::from(block.low), meta)
                    },
                )
            })
        })
    }

    /// Bytes this table takes: the blocks, plus the map's buckets (key, box pointer and a
    /// control byte each, buckets = capacity * 8/7).
    pub fn memory_bytes(&self) -> usize {
        let bucket = size_of::<u64>() + size_of::<Box<Block>>() + 1;
        self.blocks.len() * size_of::<Block>() + self.blocks.capacity() * 8 / 7 * bucket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_is_seventeen_bytes_a_page() {
        assert_eq!(size_of::<Block>(), BLOCK_PAGES * 17 + 8);
    }

    #[test]
    fn every_state_packs_and_unpacks() {
        let mut metas = vec![];
        for class in Class::ALL {
            for bits in 0..8u8 {
                let (hot, backed, settled) = (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0);
                if backed && class.is_inline() {
                    continue;
                }
                metas.push(Meta {
                    word: 1,
                    checksum: 2,
                    stored: Some(class),
                    hot,
                    backed,
                    settled,
                    unit: false,
                });
            }
        }
        for hot in [false, true] {
            let unit = Meta {
                word: 3,
                checksum: 4,
                stored: Some(Class::Zstd),
                hot,
                backed: false,
                settled: true,
                unit: true,
            };
            metas.push(unit);
            let dirty = Meta {
                stored: None,
                unit: false,
                settled: false,
                ..unit
            };
            metas.push(dirty);
        }
        for meta in metas {
            assert_eq!(
                Meta::unpack(meta.word, meta.checksum, meta.pack()),
                Some(meta)
            );
        }
    }

    #[test]
    fn set_get_remove_round_trip() {
        let mut table = Table::new(2);
        let meta = Meta {
            word: 0xdead_beef,
            checksum: 7,
            stored: Some(Class::Delta),
            hot: true,
            backed: false,
            settled: true,
            unit: false,
        };
        assert_eq!(table.locate(130), (0, 32));
        assert_eq!(table.locate(131 + 256), (1, 32));
        assert_eq!(table.set(130, meta, Some(5)), None);
        assert_eq!(table.get(130), Some(meta));
        let at = |second, idle, cold| {
            Some(Access {
                second,
                idle,
                cold,
                referenced: false,
                mixed: false,
            })
        };
        assert_eq!(table.access(130), at(5, false, false));
        assert_eq!(table.mark_idle(4), 0);
        assert_eq!(table.mark_idle(5), 1);
        table.mark_cold(130);
        assert_eq!(table.access(130), at(5, true, true));
        table.mark_mixed(130);
        let mixed = at(5, true, true).map(|a| Access { mixed: true, ..a });
        assert_eq!(table.access(130), mixed);
        table.touch(130, 9);
        let touched = at(9, false, false).map(|a| Access {
            referenced: true,
            ..a
        });
        assert_eq!(table.access(130), touched, "an access clears the marks");
        table.unreference(130);
        assert_eq!(table.access(130), at(9, false, false));
        table.set(130, Meta { hot: false, ..meta }, None);
        assert_eq!(
            table.access(130),
            at(9, false, false),
            "a move keeps the stamp"
        );
        table.set(130, meta, None);
        assert_eq!(table.get(134), None);
        assert_eq!(table.len(), 1);
        assert_eq!(table.iter().collect::<Vec<_>>(), vec![(130, meta)]);
        assert_eq!(table.remove(130), Some(meta));
        assert_eq!(table.len(), 0);
        assert_eq!(table.memory_bytes() / 1024, 0, "empty blocks are dropped");
    }
}
