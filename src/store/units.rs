//! The registry of cold units: which units exist, where their frames lie in the
//! allocator, and which of their pages are still members.
//!
//! A unit is made by the cold pass from several neighbouring cold pages, compressed as
//! one frame ([`crate::codec::unit`]); its pages' metadata name the unit and a position
//! in it (see [`member_word`]), not an allocator object, so the frame can move
//! (compaction) without touching any page. A member that is written, removed or evicted
//! leaves its unit; the frame is freed when the last member leaves.
//!
//! Invariants:
//! - A unit's frame lies in the allocator as pieces of at most a page (the allocator's
//!   largest object), in order, or after writeback in the backing store as one record a
//!   piece; the unit owns them until it is freed. Writeback moves a frame by changing
//!   the registry alone (its members' metadata name the unit, not the frame), and only
//!   if the unit is the one whose frame was written (same serial, still in memory).
//! - `live` has a bit set for exactly the members whose metadata name the unit: a bit is
//!   set and cleared only under that page's shard write lock, together with its
//!   metadata. So a page that names a unit finds it registered.
//! - A unit being packed (`packing`) is not freed when its live count reaches zero (the
//!   pass may still add members); the pass frees it at the end if none joined.
//! - Serials are never reused: a decoded unit kept by a reader (named by its serial) is
//!   the bytes of that frame forever.
//! - Lock order: shard, allocator, units, dictionary registry.

use super::slab::{Handle, Slabs};
use crate::codec::unit::MAX_UNIT_PAGES;

// A unit's members are the bits of a `u64`.
const _: () = assert!(MAX_UNIT_PAGES <= u64::BITS as usize);

/// Where a unit's frame lies: its pieces, in order.
#[derive(Clone, Debug)]
pub(super) enum Frame {
    /// In the allocator.
    Memory(Box<[Handle]>),
    /// In the backing store: each piece's slot and length.
    Backed(Box<[(u64, usize)]>),
}

/// One unit: its frame's pieces and its members.
#[derive(Debug)]
pub(super) struct Unit {
    pub(super) frame: Frame,
    pub(super) serial: u64,
    /// The ids of its first and last page as packed (in id order): every member's id
    /// lies between, so its members can be found without an index of them.
    pub(super) ids: (u64, u64),
    /// Pages the frame holds.
    pages: u8,
    /// Bit `i` set: the page at position `i` is still a member.
    live: u64,
    packing: bool,
    /// The coldest pass has weighed the mixed form against the unit (and kept the unit).
    mixed_tried: bool,
    /// CRC-32 of the frame.
    pub(super) checksum: u32,
    /// The dictionary the frame names (0: none).
    dict: u32,
}

impl Unit {
    /// Pages the frame holds.
    pub(super) fn pages(&self) -> usize {
        usize::from(self.pages)
    }

    /// The dictionary the frame names, if any.
    pub(super) fn dict(&self) -> Option<u32> {
        (self.dict != 0).then_some(self.dict)
    }

    /// The frame's bytes.
    pub(super) fn frame_len(&self) -> usize {
        match &self.frame {
            Frame::Memory(pieces) => pieces.iter().map(|piece| piece.len()).sum(),
            Frame::Backed(records) => records.iter().map(|&(_, len)| len).sum(),
        }
    }

    /// Appends the frame's bytes to `out`, if it is in memory.
    pub(super) fn copy_frame(&self, slabs: &Slabs, out: &mut Vec<u8>) -> bool {
        let Frame::Memory(pieces) = &self.frame else {
            return false;
        };
        for &piece in pieces {
            out.extend_from_slice(slabs.get(piece));
        }
        true
    }

    /// Whether the frame is in memory.
    pub(super) fn in_memory(&self) -> bool {
        matches!(self.frame, Frame::Memory(_))
    }

    /// Pages that are still members.
    pub(super) fn live(&self) -> usize {
        self.live.count_ones() as usize
    }
}

/// What the units hold, for [`crate::store::Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct UnitStats {
    /// Units in memory.
    pub units: u64,
    /// Pages that are members of a unit.
    pub pages: u64,
    /// Pages units still hold that are no longer members (written, removed or evicted
    /// since): garbage inside frames, given back when their unit is re-packed or freed.
    pub dead_pages: u64,
    /// Bytes of the frames in memory (in the allocator, counted in `compr_data_size`).
    pub stored_bytes: u64,
    /// Bytes of the frames written back (counted in the store's `backed_bytes`).
    pub backed_bytes: u64,
    /// Bytes of the registry itself (counted in the store's bookkeeping).
    pub registry_bytes: u64,
}

/// Every unit, by index; freed indexes are reused (serials are not). Boxed, so that a
/// freed index costs a pointer until reused: the coldest pass frees most units of some
/// programs.
#[derive(Debug, Default)]
pub(super) struct Units {
    entries: Vec<Option<Box<Unit>>>,
    free: Vec<u32>,
    live_pages: u64,
    pages: u64,
    stored_bytes: u64,
    backed_bytes: u64,
}

/// A member's metadata word: its unit's index and its position.
pub(super) fn member_word(index: u32, position: usize) -> u64 {
    u64::from(index) << 8 | position as u64
}

/// A member's unit index and position, from its metadata word.
pub(super) fn member_of(word: u64) -> (u32, usize) {
    ((word >> 8) as u32, (word & 0xff) as usize)
}

impl Units {
    /// Registers a unit being packed, with no member yet, of `pages` pages with ids
    /// from `ids.0` to `ids.1`; returns its index.
    pub(super) fn register(
        &mut self,
        pieces: Box<[Handle]>,
        pages: usize,
        ids: (u64, u64),
        checksum: u32,
        dict: Option<u32>,
    ) -> u32 {
        debug_assert!((1..=MAX_UNIT_PAGES).contains(&pages));
        let unit = Unit {
            frame: Frame::Memory(pieces),
            serial: crate::sync::unique_serial(),
            ids,
            pages: u8::try_from(pages).expect("at most MAX_UNIT_PAGES pages a unit"),
            live: 0,
            packing: true,
            mixed_tried: false,
            checksum,
            dict: dict.unwrap_or(0),
        };
        self.pages += pages as u64;
        self.stored_bytes += unit.frame_len() as u64;
        match self.free.pop() {
            Some(index) => {
                self.entries[index as usize] = Some(Box::new(unit));
                index
            }
            None => {
                self.entries.push(Some(Box::new(unit)));
                u32::try_from(self.entries.len() - 1).expect("fewer than 2^32 units")
            }
        }
    }

    /// The unit at `index` (a member names it: the caller holds the member's shard lock).
    pub(super) fn get(&self, index: u32) -> &Unit {
        self.entries[index as usize]
            .as_deref()
            .expect("a member's unit is registered")
    }

    /// The page at `position` becomes a member (under its shard write lock).
    pub(super) fn join(&mut self, index: u32, position: usize) {
        let unit = self.entries[index as usize]
            .as_deref_mut()
            .expect("a unit being packed is registered");
        debug_assert!(unit.packing && unit.live & 1 << position == 0);
        unit.live |= 1 << position;
        self.live_pages += 1;
    }

    /// The page at `position` leaves its unit (under its shard write lock); returns the
    /// unit if that was its last member and it is no longer being packed: the caller
    /// frees its frame and releases its dictionary.
    pub(super) fn leave(&mut self, index: u32, position: usize) -> Option<Unit> {
        let unit = self.entries[index as usize]
            .as_deref_mut()
            .expect("a member's unit is registered");
        debug_assert!(unit.live & 1 << position != 0);
        unit.live &= !(1 << position);
        self.live_pages -= 1;
        (unit.live == 0 && !unit.packing).then(|| self.remove(index))
    }

    /// The pass has packed the unit at `index`; returns it if no page joined (the
    /// caller frees it as [`Units::leave`]'s caller does).
    pub(super) fn packed(&mut self, index: u32) -> Option<Unit> {
        let unit = self.entries[index as usize]
            .as_deref_mut()
            .expect("a unit being packed is registered");
        unit.packing = false;
        (unit.live == 0).then(|| self.remove(index))
    }

    fn remove(&mut self, index: u32) -> Unit {
        let unit = *self.entries[index as usize]
            .take()
            .expect("a unit removed once");
        self.pages -= u64::from(unit.pages);
        match unit.frame {
            Frame::Memory(_) => self.stored_bytes -= unit.frame_len() as u64,
            Frame::Backed(_) => self.backed_bytes -= unit.frame_len() as u64,
        }
        self.free.push(index);
        if self.free.len() == self.entries.len() {
            // The last unit gone: the registry's memory too.
            self.entries = Vec::new();
            self.free = Vec::new();
        }
        unit
    }

    /// Whether at least half of the unit at `index` is garbage and it is in memory: its
    /// members are worth packing again (a written-back unit's garbage is not memory).
    pub(super) fn sparse(&self, index: u32) -> bool {
        let unit = self.get(index);
        2 * unit.live() <= unit.pages() && unit.in_memory()
    }

    /// Whether the coldest pass should weigh the mixed form for the unit at `index` (in
    /// memory: a written-back unit stays where it is).
    pub(super) fn worth_mixing(&self, index: u32) -> bool {
        let unit = self.get(index);
        !unit.mixed_tried && unit.in_memory()
    }

    /// The coldest pass weighed the unit at `index` and kept it.
    pub(super) fn mixed_tried(&mut self, index: u32) {
        if let Some(unit) = self.entries[index as usize].as_mut() {
            unit.mixed_tried = true;
        }
    }

    /// Gives back the slack the registry grew, and the freed indexes at its end (after a
    /// pass).
    pub(super) fn shrink(&mut self) {
        while self.entries.last().is_some_and(Option::is_none) {
            self.entries.pop();
        }
        let len = self.entries.len();
        self.free.retain(|&index| (index as usize) < len);
        self.entries.shrink_to_fit();
        self.free.shrink_to_fit();
    }

    /// The unit at `index`, if it is the one of `serial` (a writeback that copied its
    /// frame checks that the unit was not freed and its index reused meanwhile).
    pub(super) fn named(&self, index: u32, serial: u64) -> Option<&Unit> {
        self.entries
            .get(index as usize)?
            .as_deref()
            .filter(|unit| unit.serial == serial)
    }

    /// The frame of the unit at `index` (of `serial`, still in memory) now lies in
    /// `records`; returns its pieces for the caller to free (it holds the allocator's
    /// lock), or `None` if the unit is not that one any more.
    pub(super) fn written_back(
        &mut self,
        index: u32,
        serial: u64,
        records: Box<[(u64, usize)]>,
    ) -> Option<Box<[Handle]>> {
        let unit = self.entries.get_mut(index as usize)?.as_deref_mut()?;
        if unit.serial != serial || !unit.in_memory() {
            return None;
        }
        let len = unit.frame_len() as u64;
        let Frame::Memory(pieces) = std::mem::replace(&mut unit.frame, Frame::Backed(records))
        else {
            unreachable!("checked in memory above")
        };
        self.stored_bytes -= len;
        self.backed_bytes += len;
        Some(pieces)
    }

    /// Moves the pieces in slabs being evacuated (the caller holds the allocator's write
    /// lock); a piece with no room stays where it is.
    pub(super) fn relocate(&mut self, slabs: &mut Slabs) {
        for unit in self.entries.iter_mut().flatten() {
            let Frame::Memory(pieces) = &mut unit.frame else {
                continue;
            };
            for piece in pieces.iter_mut() {
                if slabs.is_evacuating(*piece)
                    && let Some(moved) = slabs.relocate(*piece)
                {
                    *piece = moved;
                }
            }
        }
    }

    pub(super) fn stats(&self) -> UnitStats {
        let pieces: usize = (self.entries.iter().flatten())
            .map(|unit| match &unit.frame {
                Frame::Memory(pieces) => pieces.len() * size_of::<Handle>(),
                Frame::Backed(records) => records.len() * size_of::<(u64, usize)>(),
            })
            .sum();
        let units = self.entries.len() - self.free.len();
        UnitStats {
            units: units as u64,
            pages: self.live_pages,
            dead_pages: self.pages - self.live_pages,
            stored_bytes: self.stored_bytes,
            backed_bytes: self.backed_bytes,
            registry_bytes: (self.entries.capacity() * size_of::<Option<Box<Unit>>>()
                + units * size_of::<Unit>()
                + self.free.capacity() * size_of::<u32>()
                + pieces) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(slabs: &mut Slabs, bytes: usize) -> Box<[Handle]> {
        let data = vec![7u8; bytes];
        data.chunks(crate::PAGE_SIZE)
            .map(|piece| slabs.alloc(piece).unwrap())
            .collect()
    }

    #[test]
    fn a_unit_lives_while_it_has_members_or_is_being_packed() {
        let mut slabs = Slabs::new(None);
        let mut units = Units::default();
        let index = units.register(frame(&mut slabs, 9000), 4, (10, 13), 1, Some(3));
        assert_eq!(units.get(index).frame_len(), 9000);
        units.join(index, 0);
        units.join(index, 2);
        // The last member leaving while the pass still packs frees nothing.
        assert!(units.leave(index, 0).is_none());
        assert!(units.leave(index, 2).is_none());
        let gone = units.packed(index).expect("no member left");
        assert_eq!(gone.dict(), Some(3));
        let Frame::Memory(pieces) = gone.frame else {
            panic!("never written back")
        };
        pieces.iter().for_each(|&piece| slabs.free(piece));
        assert_eq!(slabs.totals().live, 0);
        assert_eq!(units.stats().units, 0);
        assert_eq!(units.stats().stored_bytes, 0);

        let index = units.register(frame(&mut slabs, 100), 3, (0, 2), 1, None);
        units.join(index, 1);
        assert!(units.packed(index).is_none());
        assert!(units.sparse(index));
        let stats = units.stats();
        assert_eq!((stats.units, stats.pages, stats.dead_pages), (1, 1, 2));
        // Written back: the registry moves the frame; a stale serial moves nothing.
        let serial = units.get(index).serial;
        assert!(
            units
                .written_back(index, serial + 1, Box::new([(0, 100)]))
                .is_none()
        );
        let pieces = units
            .written_back(index, serial, Box::new([(7, 100)]))
            .unwrap();
        assert_eq!(pieces.len(), 1);
        let stats = units.stats();
        assert_eq!((stats.stored_bytes, stats.backed_bytes), (0, 100));
        assert!(
            units
                .written_back(index, serial, Box::new([(8, 100)]))
                .is_none()
        );
        assert!(
            units
                .named(index, serial)
                .is_some_and(|unit| !unit.in_memory())
        );
        assert!(units.leave(index, 1).is_some());
        assert_eq!(units.stats(), UnitStats::default());
    }

    #[test]
    fn every_position_of_a_whole_unit_is_a_member_of_its_own() {
        let mut slabs = Slabs::new(None);
        let mut units = Units::default();
        let last = MAX_UNIT_PAGES as u64 - 1;
        let index = units.register(
            frame(&mut slabs, 20_000),
            MAX_UNIT_PAGES,
            (0, last),
            1,
            None,
        );
        (0..MAX_UNIT_PAGES).for_each(|position| units.join(index, position));
        assert!(units.packed(index).is_none());
        assert_eq!(units.get(index).live(), MAX_UNIT_PAGES);
        // Members leave from the top down: the unit goes with the last, not before.
        for position in (1..MAX_UNIT_PAGES).rev() {
            assert!(units.leave(index, position).is_none(), "{position}");
            assert_eq!(units.get(index).live(), position);
        }
        assert!(units.leave(index, 0).is_some());
        assert_eq!(units.stats().units, 0);
    }

    #[test]
    fn freed_indexes_cost_a_pointer_and_those_at_the_end_are_given_back() {
        let mut slabs = Slabs::new(None);
        let mut units = Units::default();
        let indexes: Vec<u32> = (0..4)
            .map(|i| {
                let index = units.register(frame(&mut slabs, 100), 1, (i, i), 1, None);
                units.join(index, 0);
                assert!(units.packed(index).is_none());
                index
            })
            .collect();
        let full = units.stats().registry_bytes;
        // Units 1 and 3 freed: a hole inside and one at the end.
        for &index in &indexes[1..] {
            if index != indexes[2] {
                assert!(units.leave(index, 0).is_some());
            }
        }
        assert_eq!(size_of::<Option<Box<Unit>>>(), size_of::<usize>());
        assert!(units.stats().registry_bytes < full);
        units.shrink();
        assert_eq!(units.entries.len(), 3);
        assert_eq!(units.free, vec![indexes[1]]);
        // The hole is reused first; then the registry grows again.
        let again = units.register(frame(&mut slabs, 100), 1, (9, 9), 1, None);
        assert_eq!(again, indexes[1]);
        let next = units.register(frame(&mut slabs, 100), 1, (10, 10), 1, None);
        assert_eq!(next, 3);
        assert_eq!(units.get(indexes[2]).ids, (2, 2));
    }

    #[test]
    fn member_words_round_trip() {
        for (index, position) in [(0, 0), (7, MAX_UNIT_PAGES - 1), (u32::MAX, 5)] {
            assert_eq!(member_of(member_word(index, position)), (index, position));
        }
    }
}
