//! Tiers by temperature: which pages are idle, the idle pass that re-encodes them with
//! the stronger engine and the dictionaries, writeback of cold pages to the backing
//! store, and the background worker that runs the pass.
//!
//! Invariants:
//! - No shard lock is held while a page is encoded or a record is written: a page is
//!   copied out under its shard's read lock, the work is done unlocked, and the result
//!   is installed under the write lock only if the page's metadata is what was copied
//!   (a page written, removed, read into the hot tier or moved meanwhile keeps what it
//!   has: the attempt is counted as raced and undone).
//! - A writeback batch whose write fails leaves every page of it in memory; its slots
//!   are freed and the pages counted in `failed_writes`.
//! - A recompressed page keeps its content (its new form decodes to the bytes the old one
//!   did: both came from one decoded copy) and is marked settled, so later passes skip it
//!   until it is written again; so is a page whose new form was not smaller. A cold pass
//!   ([`Selection::level`]) marks what it has been over cold instead, and later cold
//!   passes skip those until they are read or written.

use super::table::{Access, Meta};
use super::{PageStore, Shard, StoreError, free_form, in_allocator, store_form, stored_len};
use crate::codec::{self, Class, RAW_SIZE};
use crate::page::{PAGE_SIZE, Page};
use crate::sync::Ordering;
use std::time::{Duration, Instant};

/// Which pages an idle pass or a writeback takes, and how much it may do (zram's
/// `recompress type=idle|huge max_pages=` and `writeback` types, in one filter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    idle: bool,
    huge: bool,
    again: bool,
    level: Option<i32>,
    min_age: Option<Duration>,
    max_pages: Option<u64>,
    time_budget: Option<Duration>,
}

impl Selection {
    /// Every page in memory.
    pub fn all() -> Selection {
        Selection::default()
    }

    /// Only pages marked idle ([`PageStore::mark_idle`]).
    pub fn idle(mut self) -> Selection {
        self.idle = true;
        self
    }

    /// Only pages stored uncompressed (zram's huge pages); with [`Selection::idle`],
    /// pages both huge and idle.
    pub fn huge(mut self) -> Selection {
        self.huge = true;
        self
    }

    /// Pages the idle pass has been over already too (after new dictionaries, say);
    /// without it a pass skips them until they are written again.
    pub fn again(mut self) -> Selection {
        self.again = true;
        self
    }

    /// A cold pass: every zstd form (plain, with a dictionary, delta residuals) at zstd
    /// `level` (say 16, where the default idle pass runs the dictionary's level 8), and
    /// the mixed form where it is smaller still by a margin ([`crate::engine::MIXED_MARGIN`]),
    /// for pages that stay idle long enough to be worth it; pages the warm pass settled
    /// are taken again, those a cold pass has been over are not.
    pub fn level(mut self, level: i32) -> Selection {
        self.level = Some(level.clamp(1, 22));
        self
    }

    /// Only pages not read or written for at least `age` (to the second).
    pub fn min_age(mut self, age: Duration) -> Selection {
        self.min_age = Some(age);
        self
    }

    /// At most this many pages examined.
    pub fn max_pages(mut self, pages: u64) -> Selection {
        self.max_pages = Some(pages);
        self
    }

    /// Stops after about this long (checked between pages).
    pub fn time_budget(mut self, budget: Duration) -> Selection {
        self.time_budget = Some(budget);
        self
    }
}

/// What an idle pass ([`PageStore::recompress`]) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Recompressed {
    /// Pages decoded and encoded again.
    pub examined: u64,
    /// Of those, pages whose smaller new form took the old one's place.
    pub rewritten: u64,
    /// Allocator bytes the new forms saved.
    pub bytes_saved: u64,
    /// Pages written (or removed) while they were being encoded again: left as written.
    pub raced: u64,
    /// Pages the memory limit had no room for (old and new form at once): left as they were.
    pub refused: u64,
    /// Pages whose stored form failed its check (counted in `failed_reads` too).
    pub failed: u64,
    /// Whether the pass stopped at its page or time bound with pages left.
    pub cut_short: bool,
    /// Pages of memory the compaction after the pass gave back.
    pub pages_compacted: u64,
}

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

/// What one idle pass of the background worker does: every `every`, mark pages idle
/// that were not touched for `idle_after`, re-encode the idle ones with the idle engine,
/// then (with [`Background::cold_after`]) re-encode those untouched for longer at a
/// stronger zstd level, and (with [`Background::writeback_after`] and a backing store)
/// write back pages untouched for longer still.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Background {
    every: Duration,
    idle_after: Duration,
    max_pages: Option<u64>,
    cold_after: Option<(Duration, i32)>,
    writeback_after: Option<Duration>,
}

/// What [`PageStore::idle_pass`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdlePass {
    /// The warm pass over the idle pages.
    pub recompressed: Recompressed,
    /// The cold pass, if configured.
    pub cold: Option<Recompressed>,
    /// Writeback, if configured (and the store has a backing store).
    pub written_back: Option<WrittenBack>,
}

impl Background {
    /// A pass every `every`; pages idle after twice that (change with
    /// [`Background::idle_after`]).
    pub fn every(every: Duration) -> Background {
        Background {
            every,
            idle_after: every * 2,
            max_pages: None,
            cold_after: None,
            writeback_after: None,
        }
    }

    /// Pages untouched this long are re-encoded at zstd `level` (see [`Selection::level`]).
    pub fn cold_after(mut self, age: Duration, level: i32) -> Background {
        self.cold_after = Some((age, level));
        self
    }

    /// Pages untouched this long are idle.
    pub fn idle_after(mut self, age: Duration) -> Background {
        self.idle_after = age;
        self
    }

    /// At most this many pages a pass (for recompression and writeback each).
    pub fn max_pages(mut self, pages: u64) -> Background {
        self.max_pages = Some(pages);
        self
    }

    /// Pages untouched this long go to the backing store.
    pub fn writeback_after(mut self, age: Duration) -> Background {
        self.writeback_after = Some(age);
        self
    }
}

/// The store's end of its background worker: dropped with the store, it stops the worker.
pub(super) type WorkerLink = Option<crossbeam::channel::Sender<()>>;

/// A channel for a worker: the link goes in the store, the receiver to the worker.
pub(super) fn worker_link() -> (
    crossbeam::channel::Sender<()>,
    crossbeam::channel::Receiver<()>,
) {
    crossbeam::channel::bounded(0)
}

/// Starts the worker of a shared store; it holds only a weak reference, and ends when the
/// store (and with it the link) is dropped.
pub(super) fn spawn_worker(
    store: &std::sync::Arc<PageStore>,
    stop: crossbeam::channel::Receiver<()>,
    background: Background,
) {
    let store = std::sync::Arc::downgrade(store);
    std::thread::Builder::new()
        .name("zpage-idle".into())
        .spawn(move || {
            while let Err(crossbeam::channel::RecvTimeoutError::Timeout) =
                stop.recv_timeout(background.every)
            {
                let Some(store) = store.upgrade() else { break };
                store.idle_pass(&background);
            }
        })
        .expect("the idle worker's thread starts");
}

/// The word of a written-back page: its slot and its record's length.
fn backed_word(slot: u64, len: usize) -> u64 {
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

/// Ends a re-encoding pass's work on page `id`, whose form is now `meta`'s: settled (later
/// warm passes skip it) and, after a cold pass, marked cold (later cold passes do). The
/// access stamp stays: the pass is not an access.
fn settle(shard: &mut Shard, id: u64, meta: Meta, cold: bool) {
    shard.table.set(
        id,
        Meta {
            settled: true,
            ..meta
        },
        None,
    );
    if cold {
        shard.table.mark_cold(id);
    }
}

/// How a pass decides whether to take a page, and when to stop.
struct Pass {
    select: Selection,
    /// Pages last touched at or before this second qualify (with `min_age`); `Some(None)`
    /// when the store is younger than the age, so no page does.
    cutoff: Option<Option<u32>>,
    deadline: Option<Instant>,
    taken: u64,
}

impl Pass {
    fn new(store: &PageStore, select: Selection) -> Pass {
        Pass {
            select,
            cutoff: select.min_age.map(|age| store.untouched_since(age)),
            deadline: select.time_budget.map(|budget| Instant::now() + budget),
            taken: 0,
        }
    }

    /// Whether the pass must stop before another page.
    fn spent(&self) -> bool {
        self.select.max_pages.is_some_and(|max| self.taken >= max)
            || self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// Whether a page in memory of this metadata and access stamp qualifies.
    fn takes(&self, meta: Meta, access: Access) -> bool {
        in_allocator(meta)
            && !meta.hot
            && (!self.select.idle || access.idle)
            && (!self.select.huge || meta.stored == Some(Class::Incompressible))
            && self
                .cutoff
                .is_none_or(|cutoff| cutoff.is_some_and(|cutoff| access.second <= cutoff))
    }

    /// Whether a pass that re-encodes pages has been over this one already.
    fn done_before(&self, meta: Meta, access: Access) -> bool {
        !self.select.again
            && match self.select.level {
                Some(_) => access.cold,
                None => meta.settled,
            }
    }
}

impl PageStore {
    /// Marks idle every page not read or written for at least `age` (`None`: every page),
    /// as zram's `idle` file does; a read or a write clears a page's mark. Returns the
    /// pages marked idle now. Takes only read locks.
    pub fn mark_idle(&self, age: Option<Duration>) -> u64 {
        let before = match age.map(|age| self.untouched_since(age)) {
            None => u32::MAX,
            Some(Some(before)) => before,
            Some(None) => return self.idle_pages(),
        };
        self.shards
            .iter()
            .map(|slot| slot.shard.read().table.mark_idle(before))
            .sum()
    }

    /// The last second a page untouched for `age` was touched in at the latest; `None`
    /// while the store is younger than `age` (no page is that old).
    fn untouched_since(&self, age: Duration) -> Option<u32> {
        self.now()
            .checked_sub(u32::try_from(age.as_secs()).unwrap_or(u32::MAX))
    }

    /// Re-encodes every page stored in the allocator with the idle engine and the current
    /// dictionaries, keeping a new form where it is smaller: [`PageStore::recompress_selected`]
    /// with `Selection::all().again()`.
    pub fn recompress(&self) -> Recompressed {
        self.recompress_selected(Selection::all().again())
    }

    /// The idle pass over the pages `select` takes: each is re-encoded with the idle
    /// engine ([`crate::StoreBuilder::idle_profile`]; the store's own engine if none) and
    /// the current dictionaries, and the new form kept where it is smaller; pages stored
    /// before a training so get its dictionaries, and the dictionaries they named are
    /// freed once no page names them. In a store with an idle engine and
    /// auto-dictionaries, the pass trains them first when it is time. Each page is decoded
    /// under its shard's read lock (as a read is) and encoded with no lock held; the new
    /// form goes in only if the page is unchanged since, so a page written meanwhile keeps
    /// what was written. Hot pages are left to the tier, pages the pass has been over
    /// (and not written since) are skipped. A page the memory limit has no room for keeps
    /// its form, a corrupt one is counted and left as it is. The allocator is compacted
    /// after a pass that rewrote pages, so the memory the smaller forms saved is given
    /// back.
    pub fn recompress_selected(&self, select: Selection) -> Recompressed {
        if self.idle_engine.is_some() {
            let classes = self.counters.classes();
            let served = Class::ALL
                .iter()
                .filter(|class| !matches!(class, Class::Zero | Class::Same))
                .map(|class| classes[class.index()].pages)
                .sum();
            self.maybe_train(served);
        }
        let mut pass = Pass::new(self, select);
        let mut done = Recompressed::default();
        let mut page = Page::boxed();
        let mut encoded = Vec::with_capacity(RAW_SIZE);
        for id in self.ids() {
            if pass.spent() {
                done.cut_short = true;
                break;
            }
            let slot = self.slot(id);
            let old = {
                let shard = slot.shard.read();
                let (Some(meta), Some(access)) = (shard.table.get(id), shard.table.access(id))
                else {
                    continue;
                };
                if pass.done_before(meta, access) || !pass.takes(meta, access) {
                    continue;
                }
                pass.taken += 1;
                if self.decode(id, meta, &mut page).is_err() {
                    slot.failed_reads.fetch_add(1, Ordering::Relaxed);
                    done.failed += 1;
                    continue;
                }
                meta
            };
            done.examined += 1;
            // Held until the new form is counted, as on insert.
            let dicts = self.dicts.current();
            let engine = self.idle_engine();
            let class = match select.level {
                Some(level) => engine.encode_cold(&page, dicts.as_deref(), level, &mut encoded),
                None => engine.encode_at(&page, dicts.as_deref(), None, &mut encoded),
            };
            let (before, after) = (stored_len(old), codec::stored_size(class, encoded.len()));
            let mut shard = slot.shard.write();
            if shard.table.get(id) != Some(old) {
                done.raced += 1;
                continue;
            }
            if after >= before {
                settle(&mut shard, id, old, select.level.is_some());
                continue;
            }
            let Ok(meta) = store_form(&mut self.slabs_mut(), class, &page, &encoded) else {
                done.refused += 1;
                continue;
            };
            self.release_form(old);
            shard.forget(id, old, &self.counters);
            self.record(meta, &encoded);
            settle(&mut shard, id, meta, select.level.is_some());
            done.rewritten += 1;
            done.bytes_saved += (before - after) as u64;
        }
        if done.rewritten > 0 {
            // A pass shrinks many objects a little (the cold pass especially): the holes
            // it leaves are small in every slab but add up, so slabs with an eighth of a
            // page of garbage are evacuated too (the pass has just rewritten them anyway).
            done.pages_compacted = self.compact_slabs(PAGE_SIZE / 8);
        }
        done
    }

    /// Writes the pages `select` takes to the backing store, in batches, and frees their
    /// memory (zram's `writeback`): a written-back page keeps only its metadata in memory
    /// and is read back from its record, checked against its CRC, on access. At most
    /// [`PageStore::set_writeback_limit`] pages are written. A failed batch leaves its
    /// pages in memory and stops the pass; the error is in the result and counted in
    /// `failed_writes`. The allocator is compacted after. Err only if the store has no
    /// backing store.
    pub fn writeback(&self, select: Selection) -> Result<WrittenBack, StoreError> {
        const BATCH: usize = 64;
        if self.tier.is_none() {
            return Err(StoreError::NoBacking);
        }
        let mut pass = Pass::new(self, select);
        let mut done = WrittenBack::default();
        let mut batch: Vec<Candidate> = Vec::with_capacity(BATCH);
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
                if !pass.takes(meta, access) {
                    continue;
                }
                pass.taken += 1;
                let slabs = self.slabs.read();
                let payload = slabs
                    .get(super::slab::Handle::from_bits(meta.word))
                    .to_vec();
                let dict = super::form_dict(&slabs, meta).unwrap_or(0);
                batch.push(Candidate {
                    id,
                    meta,
                    payload,
                    dict,
                });
            }
            if batch.len() == BATCH && !self.write_batch(&mut batch, &mut done) {
                break;
            }
        }
        self.write_batch(&mut batch, &mut done);
        if done.written > 0 {
            done.pages_compacted = self.compact();
        }
        Ok(done)
    }

    /// Writes one batch and moves the pages that did not change meanwhile to their
    /// records; false if the pass must stop (a failed write, no slot left).
    fn write_batch(&self, batch: &mut Vec<Candidate>, done: &mut WrittenBack) -> bool {
        let tier = self
            .tier
            .as_ref()
            .expect("writeback checked for a backing store");
        if batch.is_empty() {
            return true;
        }
        let slots = tier.slots.alloc(batch.len());
        let full = slots.len() < batch.len();
        batch.truncate(slots.len());
        let records: Vec<(u64, &[u8])> = slots
            .iter()
            .zip(batch.iter())
            .map(|(&slot, c)| (slot, &c.payload[..]))
            .collect();
        if let Err(error) = tier.device.write(&records) {
            for &slot in &slots {
                tier.slots.free(slot);
            }
            let failed = batch.len() as u64;
            self.counters
                .failed_writes
                .fetch_add(failed, Ordering::Relaxed);
            done.failed += failed;
            done.error = Some(error.to_string());
            batch.clear();
            return false;
        }
        for (slot, candidate) in slots.into_iter().zip(batch.drain(..)) {
            let Candidate { id, meta, dict, .. } = candidate;
            let mut shard = self.slot(id).shard.write();
            if shard.table.get(id) != Some(meta) {
                tier.slots.free(slot);
                done.raced += 1;
                continue;
            }
            tier.slots.assign(slot, dict);
            let len = stored_len(meta);
            free_form(&mut self.slabs_mut(), meta);
            let class = meta.stored.expect("an allocator page has a form");
            self.counters.moved_out(class, len);
            shard.table.set(
                id,
                Meta {
                    word: backed_word(slot, len),
                    backed: true,
                    ..meta
                },
                None,
            );
            self.counters.bd_count.fetch_add(1, Ordering::Relaxed);
            self.counters.bd_writes.fetch_add(1, Ordering::Relaxed);
            self.counters
                .bd_bytes
                .fetch_add(len as u64, Ordering::Relaxed);
            // The limit counts down (zram's `writeback_limit`), unless there is none.
            let _ = self
                .writeback_limit
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                    (l != u64::MAX).then(|| l.saturating_sub(1))
                });
            done.written += 1;
            done.bytes_freed += len as u64;
        }
        if full {
            done.cut_short = true;
        }
        !full
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

    /// One pass of the background worker, run now (see [`Background`]).
    pub fn idle_pass(&self, background: &Background) -> IdlePass {
        let bounded = |select: Selection| match background.max_pages {
            Some(max) => select.max_pages(max),
            None => select,
        };
        self.mark_idle(Some(background.idle_after));
        let recompressed = self.recompress_selected(bounded(Selection::all().idle()));
        let cold = background.cold_after.map(|(age, level)| {
            self.recompress_selected(bounded(Selection::all().min_age(age).level(level)))
        });
        let written_back = background
            .writeback_after
            .filter(|_| self.tier.is_some())
            .and_then(|age| self.writeback(bounded(Selection::all().min_age(age))).ok());
        IdlePass {
            recompressed,
            cold,
            written_back,
        }
    }

    /// Decodes a written-back page from its record (the caller holds its shard lock).
    pub(super) fn decode_backed(
        &self,
        id: u64,
        meta: Meta,
        class: Class,
        out: &mut Page,
    ) -> Result<(), StoreError> {
        let tier = self
            .tier
            .as_ref()
            .expect("a backed page has a backing store");
        let mut record = [0u8; PAGE_SIZE];
        let record = &mut record[..backed_len(meta.word)];
        tier.device
            .read(backed_slot(meta.word), record)
            .map_err(|error| StoreError::BackingRead {
                id,
                reason: error.to_string(),
            })?;
        self.counters.bd_reads.fetch_add(1, Ordering::Relaxed);
        if crc32fast::hash(record) != meta.checksum {
            return Err(StoreError::Checksum { id });
        }
        self.dicts
            .with_registry(|dicts| codec::decode_payload_with(class, record, dicts, out))
            .map_err(|source| StoreError::Corrupt { id, source })
    }
}

/// A page copied out for writeback.
struct Candidate {
    id: u64,
    meta: Meta,
    payload: Vec<u8>,
    dict: u32,
}
