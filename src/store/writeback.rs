//! Writeback: cold pages' forms move to the backing store in batches, and their memory
//! is given back (zram's `writeback`); the same batches serve [`crate::OnFull::WriteBack`].
//!
//! Invariants:
//! - Payloads are copied out under their shard's lock, written with no lock held (runs of
//!   consecutive slots in one `pwrite`), and each page is moved to its record only if its
//!   metadata is unchanged since the copy ([`PageStore::written_back`]); a page changed
//!   meanwhile keeps memory and its slot is freed.
//! - A batch whose write fails leaves every page of it in memory; its slots are freed and
//!   the pages counted in `failed_writes`.
//! - A freed slot is reused only after the backing store dropped its record
//!   ([`super::Backing::discard`], before each batch), so a late drop never removes a
//!   newer record.
//! - A record's length and CRC stay in the page's metadata, so a damaged or short record
//!   is a checksum error on read, an unreadable one a `BackingRead` error.

use super::evict::RemovalCause;
use super::lifecycle::{Shard, form_dict};
use super::slab::Handle;
use super::table::Meta;
use super::tiers::Pass;
use super::units::{Frame, member_of};
use super::{BackedTier, PageStore, Selection, StoreError};
use crate::sync::Ordering;
use hashbrown::HashMap;

/// What [`PageStore::writeback`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct WrittenBack {
    /// Pages now in the backing store that were in memory.
    pub written: u64,
    /// Their allocator bytes, given back.
    pub bytes_freed: u64,
    /// Pages changed while their record was written: left in memory, slot freed.
    pub raced: u64,
    /// Pages whose write failed: left in memory (counted in `failed_writes`).
    pub failed: u64,
    /// The backing store's error, if a write failed (the pass stops at the first).
    pub error: Option<String>,
    /// Whether it stopped for want of slots, of `writeback_limit`, or at its bound.
    pub cut_short: bool,
    /// Pages of memory the compaction after the pass gave back.
    pub pages_compacted: u64,
}

impl std::fmt::Display for WrittenBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} pages written back ({} bytes freed), {} raced, {} failed{}{}",
            self.written,
            self.bytes_freed,
            self.raced,
            self.failed,
            if self.cut_short { ", cut short" } else { "" },
            self.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )
    }
}

/// The word of a written-back page: its slot and its record's length.
pub(super) fn backed_word(slot: u64, len: usize) -> u64 {
    slot << 16 | len as u64
}

/// The slot a written-back page's word names.
pub(super) fn backed_slot(word: u64) -> u64 {
    word >> 16
}

/// The record length a written-back page's word names.
pub(super) fn backed_len(word: u64) -> usize {
    (word & 0xffff) as usize
}

/// A page copied out for writeback.
pub(super) struct Candidate {
    id: u64,
    meta: Meta,
    payload: Vec<u8>,
    dict: u32,
}

/// The members of one unit a writeback took: the unit's serial and their ids.
type TakenUnit = (u64, Vec<u64>);

impl PageStore {
    /// The backing store (the caller knows there is one: a backed page, or a writeback
    /// that checked).
    pub(super) fn tier(&self) -> &BackedTier {
        self.tier
            .as_ref()
            .expect("a backed page has a backing store")
    }

    /// Copies page `id` (metadata `meta`, a form in the allocator) out for writeback
    /// (under its shard's lock).
    pub(super) fn candidate(&self, id: u64, meta: Meta) -> Candidate {
        let slabs = self.slabs.read();
        Candidate {
            id,
            meta,
            payload: slabs.get(Handle::from_bits(meta.word)).to_vec(),
            dict: form_dict(&slabs, meta).unwrap_or(0),
        }
    }

    /// Writes the pages `select` takes to the backing store, in batches, and frees their
    /// memory (zram's `writeback`): a written-back page keeps only its metadata in memory
    /// and is read back from its record, checked against its CRC, on access. At most
    /// [`PageStore::set_writeback_limit`] pages are written. A cold unit goes whole, one
    /// record a piece of its frame (its pages still name it), when the pass takes every
    /// page still in it. A failed batch leaves its
    /// pages in memory and stops the pass; the error is in the result and counted in
    /// `failed_writes`. The allocator is compacted after. The listener hears
    /// [`RemovalCause::WrittenBack`] for each page written.
    ///
    /// # Errors
    /// [`StoreError::NoBacking`] if the store has no backing store.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use zpage::store::{BackingFile, Selection};
    /// use zpage::{Page, PageStore};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let file = BackingFile::open(&dir.path().join("backing"), 1 << 20)?;
    /// let store = PageStore::builder().backing(Arc::new(file)).build();
    /// let mut page = Page::zeroed();
    /// page.bytes_mut()[..11].copy_from_slice(b"hello world");
    /// store.insert(1, &page)?;
    /// let done = store.writeback(Selection::all())?;
    /// assert_eq!(done.written, 1);
    /// assert_eq!(store.stats().bd.bd_count, 1);
    /// assert!(*store.read(1)? == page); // read back from its record
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn writeback(&self, select: Selection) -> Result<WrittenBack, StoreError> {
        const BATCH: usize = 64;
        if self.tier.is_none() {
            return Err(StoreError::NoBacking);
        }
        let mut pass = Pass::new(self, select);
        let mut done = WrittenBack::default();
        let mut batch: Vec<Candidate> = Vec::with_capacity(BATCH);
        let mut units: HashMap<u32, TakenUnit> = HashMap::new();
        for id in self.ids() {
            // The limit counts down as batches are written: what is taken but not yet
            // written is the batch.
            let limit = self.writeback_limit.load(Ordering::Relaxed);
            if pass.spent() || batch.len() as u64 >= limit {
                done.cut_short = true;
                break;
            }
            {
                let shard = self.slot(id).shard.read();
                let (Some(meta), Some(access)) = (shard.table.get(id), shard.table.access(id))
                else {
                    continue;
                };
                if pass.takes(meta, access) {
                    pass.taken += 1;
                    batch.push(self.candidate(id, meta));
                } else if pass.takes_member(meta, access) {
                    let index = member_of(meta.word).0;
                    let registry = self.units.read();
                    let unit = registry.get(index);
                    let taken = units
                        .entry(index)
                        .or_insert_with(|| (unit.serial, Vec::new()));
                    // An index freed and reused during the pass names another unit.
                    if unit.in_memory() && taken.0 == unit.serial {
                        pass.taken += 1;
                        taken.1.push(id);
                    }
                }
            }
            if batch.len() == BATCH && !self.write_batch(&mut batch, &mut done) {
                break;
            }
        }
        if self.write_batch(&mut batch, &mut done) && done.error.is_none() {
            let units = units
                .into_iter()
                .map(|(index, (serial, ids))| (index, serial, ids));
            self.write_units(units, &mut done);
        }
        if done.written > 0 {
            done.pages_compacted = self.compact();
        }
        Ok(done)
    }

    /// Writes one batch and moves the pages that did not change meanwhile to their
    /// records, then tells the listener; false if the pass must stop (a failed write, no
    /// slot left).
    pub(super) fn write_batch(&self, batch: &mut Vec<Candidate>, done: &mut WrittenBack) -> bool {
        let tier = self.tier();
        if batch.is_empty() {
            return true;
        }
        let slots = self.fresh_slots(batch.len());
        let full = slots.len() < batch.len();
        batch.truncate(slots.len());
        let payloads = batch.iter().map(|c| &c.payload[..]);
        if !self.write_records(&slots, payloads, batch.len() as u64, done) {
            batch.clear();
            return false;
        }
        let mut written = Vec::with_capacity(batch.len());
        for (slot, candidate) in slots.into_iter().zip(batch.drain(..)) {
            let Candidate { id, meta, dict, .. } = candidate;
            let moved = {
                let shard: &mut Shard = &mut self.slot(id).shard.write();
                self.written_back(shard, id, meta, slot, dict)
            };
            if !moved {
                tier.slots.free(slot);
                done.raced += 1;
                continue;
            }
            self.count_down(1);
            done.written += 1;
            done.bytes_freed += super::lifecycle::stored_len(meta) as u64;
            written.push(id);
        }
        self.notify(written, RemovalCause::WrittenBack);
        if full {
            done.cut_short = true;
        }
        !full
    }

    /// Writes whole each unit (index, serial, the ids of its pages taken) that has
    /// pages taken, as [`PageStore::write_unit`] does; stops at the first failure. For a
    /// pass and for the writeback at the memory limit ([`crate::OnFull::WriteBack`]).
    pub(super) fn write_units(
        &self,
        units: impl IntoIterator<Item = (u32, u64, Vec<u64>)>,
        done: &mut WrittenBack,
    ) {
        for (index, serial, ids) in units {
            if !ids.is_empty() && !self.write_unit(index, serial, &ids, done) {
                return;
            }
        }
    }

    /// Writes the frame of unit `index` (of `serial`, the pass having taken `ids`, every
    /// page still in it) as one record a piece, and moves the unit to them if it is still
    /// that unit in memory (its pages, which name the unit, are not touched); false if
    /// the pass must stop.
    fn write_unit(&self, index: u32, serial: u64, ids: &[u64], done: &mut WrittenBack) -> bool {
        let pages = ids.len() as u64;
        if pages > self.writeback_limit.load(Ordering::Relaxed) {
            done.cut_short = true;
            return false;
        }
        let pieces: Vec<Vec<u8>> = {
            let slabs = self.slabs.read();
            let registry = self.units.read();
            let unit = registry.named(index, serial);
            match unit.map(|unit| (&unit.frame, unit.live())) {
                Some((Frame::Memory(pieces), live)) if live == ids.len() => {
                    pieces.iter().map(|&p| slabs.get(p).to_vec()).collect()
                }
                _ => {
                    done.raced += pages;
                    return true;
                }
            }
        };
        let slots = self.fresh_slots(pieces.len());
        if slots.len() < pieces.len() {
            slots.iter().for_each(|&slot| {
                self.tier().slots.free(slot);
            });
            done.cut_short = true;
            return false;
        }
        if !self.write_records(&slots, pieces.iter().map(|p| &p[..]), pages, done) {
            return false;
        }
        // Counted before the unit names the records: a member leaving right after frees
        // them and uncounts them.
        let records: Box<[(u64, usize)]> = slots
            .iter()
            .zip(&pieces)
            .map(|(&s, p)| (s, p.len()))
            .collect();
        records
            .iter()
            .for_each(|&(_, len)| self.counters.backed_in(len));
        let moved = {
            let mut slabs = self.slabs_mut();
            let freed = self
                .units
                .write()
                .written_back(index, serial, records.clone());
            freed.map(|pieces| pieces.iter().for_each(|&piece| slabs.free(piece)))
        };
        if moved.is_none() {
            for &(slot, len) in records.iter() {
                self.tier().slots.free(slot);
                self.counters.backed_out(len);
            }
            done.raced += pages;
            return true;
        }
        self.count_down(pages);
        done.written += pages;
        done.bytes_freed += records.iter().map(|&(_, len)| len as u64).sum::<u64>();
        self.notify(ids.iter().copied(), RemovalCause::WrittenBack);
        true
    }

    /// Up to `n` slots to write, after the freed slots' records are dropped (so the
    /// backing store holds only live records and the slots can be reused; a failed drop
    /// keeps them for the next batch).
    fn fresh_slots(&self, n: usize) -> Vec<u64> {
        let tier = self.tier();
        let freed = tier.slots.to_drop();
        if !freed.is_empty() {
            let done = tier.device.discard(&freed).is_ok();
            tier.slots.dropped(freed, done);
        }
        tier.slots.alloc(n)
    }

    /// Writes `payloads` to `slots` in one batch; on failure frees the slots, counts the
    /// `pages` they held as failed and returns false.
    fn write_records<'a>(
        &self,
        slots: &[u64],
        payloads: impl Iterator<Item = &'a [u8]>,
        pages: u64,
        done: &mut WrittenBack,
    ) -> bool {
        let tier = self.tier();
        let records: Vec<(u64, &[u8])> = slots.iter().copied().zip(payloads).collect();
        let Err(error) = tier.device.write(&records) else {
            return true;
        };
        for &slot in slots {
            tier.slots.free(slot);
        }
        self.counters
            .failed_writes
            .fetch_add(pages, Ordering::Relaxed);
        done.failed += pages;
        done.error = Some(error.to_string());
        false
    }

    /// Counts `pages` written down from the limit (zram's `writeback_limit`), unless
    /// there is none.
    fn count_down(&self, pages: u64) {
        let _ = self
            .writeback_limit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                (l != u64::MAX).then(|| l.saturating_sub(pages))
            });
    }

    /// Pages writeback may still write (`None`: no limit, the default); each page
    /// written counts it down, as zram's `writeback_limit` with `writeback_limit_enable`.
    pub fn set_writeback_limit(&self, pages: Option<u64>) {
        self.writeback_limit
            .store(pages.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// What is left of the writeback limit (`None`: no limit).
    pub fn writeback_limit(&self) -> Option<u64> {
        let limit = self.writeback_limit.load(Ordering::Relaxed);
        (limit != u64::MAX).then_some(limit)
    }
}
