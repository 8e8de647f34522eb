//! Per-page metadata: 13 bytes per page id, kept in blocks of 64 ids of one shard.
//!
//! A page's metadata is a `word` (the allocator handle, or the value of a same-filled
//! page), a CRC-32 of its stored bytes and one `meta` byte (state bits and class), held as
//! three arrays per block so no padding is paid: 8 + 4 + 1 = 13 bytes a page. Blocks are
//! found through a hash map keyed by the id's group (see [`Table::locate`]), which adds
//! about 21 bytes per block
//! (key, box pointer, control byte, at the map's 7/8 load), 0.3 bytes a page when ids are
//! dense (swap offsets, region page numbers); a sparse id costs its whole block (833
//! bytes). [`Table::memory_bytes`] counts all of it from the live sizes and capacities.
//!
//! Invariants: a block exists only while it holds at least one present page; `meta == 0`
//! means absent; a page with `STORED` set owns the allocator object its handle names
//! (unless its class is zero or same, whose value is the word itself).

use crate::codec::Class;
use hashbrown::HashMap;

pub const BLOCK_PAGES: usize = 64;

/// The page is present.
const PRESENT: u8 = 0x80;
/// A stored (compressed) form exists; the low 3 bits are its class.
const STORED: u8 = 0x40;
/// A decoded copy is in the hot tier.
const HOT: u8 = 0x20;
const CLASS_BITS: u8 = 0x07;

/// A page's metadata, unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub word: u64,
    pub checksum: u32,
    /// The stored form's class, if one exists (a dirty hot page has none).
    pub stored: Option<Class>,
    pub hot: bool,
}

impl Meta {
    fn pack(self) -> u8 {
        let stored = self.stored.map_or(0, |class| STORED | class.tag());
        PRESENT | stored | if self.hot { HOT } else { 0 }
    }

    fn unpack(word: u64, checksum: u32, meta: u8) -> Option<Meta> {
        (meta & PRESENT != 0).then(|| Meta {
            word,
            checksum,
            stored: (meta & STORED != 0)
                .then(|| Class::from_tag(meta & CLASS_BITS).expect("valid class bits")),
            hot: meta & HOT != 0,
        })
    }
}

struct Block {
    words: [u64; BLOCK_PAGES],
    checksums: [u32; BLOCK_PAGES],
    metas: [u8; BLOCK_PAGES],
    present: u8,
    /// The low `shard_bits` bits shared by every id of this block.
    low: u8,
}

pub struct Table {
    blocks: HashMap<u64, Box<Block>>,
    len: usize,
    shard_bits: u32,
}

impl Table {
    /// A table for one of `1 << shard_bits` shards (at most 64).
    pub fn new(shard_bits: u32) -> Table {
        assert!(shard_bits <= 6);
        Table {
            blocks: HashMap::new(),
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

    pub fn get(&self, id: u64) -> Option<Meta> {
        let (key, slot) = self.locate(id);
        let block = self.blocks.get(&key)?;
        Meta::unpack(block.words[slot], block.checksums[slot], block.metas[slot])
    }

    /// Sets a page's metadata, returning what it replaces.
    pub fn set(&mut self, id: u64, meta: Meta) -> Option<Meta> {
        let (key, slot) = self.locate(id);
        let low = (id & ((1 << self.shard_bits) - 1)) as u8;
        let block = self.blocks.entry(key).or_insert_with(|| {
            Box::new(Block {
                words: [0; BLOCK_PAGES],
                checksums: [0; BLOCK_PAGES],
                metas: [0; BLOCK_PAGES],
                present: 0,
                low,
            })
        });
        debug_assert_eq!(block.low, low, "one shard, one residue per group");
        let old = Meta::unpack(block.words[slot], block.checksums[slot], block.metas[slot]);
        block.words[slot] = meta.word;
        block.checksums[slot] = meta.checksum;
        block.metas[slot] = meta.pack();
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
    fn block_is_thirteen_bytes_a_page() {
        assert_eq!(size_of::<Block>(), BLOCK_PAGES * 13 + 8);
    }

    #[test]
    fn set_get_remove_round_trip() {
        let mut table = Table::new(2);
        let meta = Meta {
            word: 0xdead_beef,
            checksum: 7,
            stored: Some(Class::Delta),
            hot: true,
        };
        assert_eq!(table.locate(130), (0, 32));
        assert_eq!(table.locate(131 + 256), (1, 32));
        assert_eq!(table.set(130, meta), None);
        assert_eq!(table.get(130), Some(meta));
        assert_eq!(table.get(134), None);
        assert_eq!(table.len(), 1);
        assert_eq!(table.iter().collect::<Vec<_>>(), vec![(130, meta)]);
        assert_eq!(table.remove(130), Some(meta));
        assert_eq!(table.len(), 0);
        assert_eq!(table.memory_bytes() / 1024, 0, "empty blocks are dropped");
    }
}
