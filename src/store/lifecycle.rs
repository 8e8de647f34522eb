//! The page life cycle: every state a page can be in, and every transition between them.
//! The policies (`hot.rs`, `evict.rs`, `tiers.rs`, `writeback.rs`, `compact.rs`) decide
//! *when*; only the functions here change a page's state, each under the page's shard
//! write lock (it takes the `Shard` by `&mut`).
//!
//! ```text
//!                 insert (no hot tier; zero, same)                      read miss (hot tier on):
//!    Absent ─────────────────────────────────────────▶ Stored ─────────── fill ───────▶ HotClean
//!     ▲  │                                          settled│idle│cold      ◀── drop copy ─┘  │
//!     │  │ insert (hot tier on)                        ▲   │   ▲                            │
//!     │  └─────────────────────▶ HotDirty ── clean ────┼───┼───┼──────▶ HotClean ◀──────────┘
//!     │                            ▲                   │   │   │                 insert
//!     │                            └── insert on HotClean / Stored (old form freed) ──┘
//!     │                                                │   │   │
//!     │                 recompress (idle pass: settled;│   │   │ cold pass: cold)
//!     │                 a smaller form, same content) ─┘   │   │
//!     │                                                    ▼   │
//!     │                                 writeback ──────▶ Backed ── insert: slot freed ──▶ Stored
//!     │                                                          (read: from the record)
//!     └──── remove / discard / evict (from any state; the listener is told) ────────────
//!
//!    Stored (cold) ── pack (cold pass, if unchanged) ──▶ InUnit ── insert / remove / evict:
//!                                                         │  │     leaves the unit ──▶ as above
//!                                     read miss: fill ◀──┘  └── writeback moves the unit's
//!                                     (HotClean, still a member)  frame to records (the page
//!                                                                 stays InUnit; reads from them)
//! ```
//!
//! - **Absent**: no metadata.
//! - **Stored**: a compressed form in the allocator (zero and same-filled pages: the value
//!   in the metadata word). *Settled* (the idle pass has been over it), *idle* (marked by
//!   `mark_idle`) and *cold* (the cold pass has been over it) are sub-states: the first
//!   a metadata bit, the others bits of the access stamp, which reads and writes clear.
//! - **HotClean**: stored, plus a decoded copy in the shard's hot tier.
//! - **HotDirty**: only a decoded copy; its metadata word is a write sequence number,
//!   so that every write changes its metadata.
//! - **Backed**: the stored form is a record in the backing store; only its metadata
//!   (slot, length, CRC) is in memory.
//! - **InUnit**: the page is one of a cold unit's pages ([`super::units`]): its metadata
//!   names the unit and its position, its CRC is the page's own; the unit's frame is
//!   freed with its last member.
//!
//! Compaction moves a Stored form to another place in the allocator (`moved_form`: the
//! same bytes, a new handle) without changing its state.
//!
//! Every transition is optimistic where it has work to do: the page is copied out under
//! its shard lock ([`PageStore::snapshot`]: at most a page, plus the dictionary its form
//! names), the lock is released, the work (decode, encode, I/O) runs with no lock held,
//! and the result is installed under the write lock only if the page's metadata is still
//! the one copied (metadata never repeats for a page while it is present: a new form has a
//! new handle or checksum, a dirty write a new sequence number). A page changed meanwhile
//! keeps its change and the attempt is retried or dropped, never installed over it.

use super::evict::{Queues, RemovalCause};
use super::slab::{Handle, Slabs};
use super::stats::Counters;
use super::table::{Meta, Table};
use super::units::{Frame, Unit, Units, member_of, member_word};
use super::{IoError, PageStore, StoreError, writeback};
use crate::classify::features;
use crate::codec::dict::{Dictionaries, Dictionary};
use crate::codec::{self, Class, RAW_SIZE};
use crate::page::{PAGE_SIZE, Page};
use crate::sync::{Arc, Cell, Hint, Ordering, RefCell, thread_local};
use lru::LruCache;

thread_local! {
    /// Each thread's encode buffer, taken and put back (a nested use just gets a fresh
    /// one): saves a 4 KiB allocation per insert.
    static SCRATCH: Cell<Vec<u8>> = Cell::new(Vec::with_capacity(RAW_SIZE));
    /// Each thread's buffer for a form copied out to be decoded, taken and put back.
    static READ_BUFFER: Cell<Vec<u8>> = Cell::new(Vec::with_capacity(PAGE_SIZE));
    /// The cold unit this thread decoded last (serial 0: none), so a scan of neighbours
    /// decodes each unit once. Serials are never reused, so it is never stale.
    static DECODED: RefCell<(u64, Vec<u8>)> = RefCell::new(Default::default());
}

/// One shard's pages: their metadata, the hot tier's decoded copies, and the eviction
/// hand's queue.
pub(super) struct Shard {
    pub(super) table: Table,
    /// Decoded copies, most recently filled or promoted first; the table's `hot` bit
    /// mirrors membership.
    pub(super) hot: LruCache<u64, HotCopy>,
    /// The eviction policy's queues (filled only when the store evicts or writes back
    /// on full).
    pub(super) queues: Queues,
}

/// A decoded page in the hot tier, with the reference bit hits set under the read lock.
pub(super) struct HotCopy {
    pub(super) page: Box<Page>,
    pub(super) referenced: Hint,
}

impl Shard {
    pub(super) fn new(shard_bits: u32) -> Shard {
        Shard {
            table: Table::new(shard_bits),
            hot: LruCache::unbounded(),
            queues: Queues::default(),
        }
    }
}

/// The kinds of stored form, as the transitions see them.
pub(super) fn in_allocator(meta: Meta) -> bool {
    !meta.backed && !meta.unit && meta.stored.is_some_and(|class| !class.is_inline())
}

/// A stored form's bytes in the allocator (0 for inline, backed and dirty pages).
pub(super) fn stored_len(meta: Meta) -> usize {
    if in_allocator(meta) {
        Handle::from_bits(meta.word).len()
    } else {
        0
    }
}

/// A page encoded for storing: its class, its form (tag first) in a per-thread buffer, and
/// the dictionary set it was encoded with, held until the form is counted so that a set
/// replaced meanwhile cannot drop a dictionary the form names.
pub(super) struct Encoded {
    pub(super) class: Class,
    pub(super) bytes: Vec<u8>,
    pub(super) word: u64,
    _dicts: Option<Arc<crate::codec::dictset::DictionarySet>>,
}

impl Drop for Encoded {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.bytes);
        SCRATCH.with(|cell| cell.set(bytes));
    }
}

/// How to encode: the insert path's engine, or a pass's (the idle engine, a cold level).
#[derive(Clone, Copy)]
pub(super) enum Encoding {
    /// The store's engine, as an insert does.
    Insert,
    /// A page already found filled with this word (its scan is not done again).
    Filled(u64),
    /// The idle engine; at a cold zstd level (and with the mixed form) if given.
    Idle(Option<i32>),
    /// The coldest pass's form of a page alone: mixed, from the primer of the page's
    /// cluster, or the idle engine's where the mixed form is not kept (its decoder would
    /// pass the budget, or it is no smaller than the page).
    Mixed,
}

/// A page's content as copied out under its shard lock, to be turned into its bytes
/// with no lock held ([`PageStore::finish`]).
pub(super) enum Snapshot {
    /// The bytes are already in the caller's page (a hot copy, a zero or same page).
    Done,
    /// A form in the allocator, copied into the caller's buffer.
    Payload {
        class: Class,
        len: usize,
        checksum: u32,
        dict: Option<Arc<Dictionary>>,
    },
    /// A page of a cold unit, whose frame is where `frame` says.
    Unit {
        serial: u64,
        pages: usize,
        position: usize,
        frame: UnitFrame,
        frame_checksum: u32,
        checksum: u32,
        dict: Option<Arc<Dictionary>>,
    },
    /// A record in the backing store.
    Backed {
        class: Class,
        slot: u64,
        len: usize,
        checksum: u32,
        dict: Option<Arc<Dictionary>>,
    },
}

/// Where a unit's frame is for a read.
pub(super) enum UnitFrame {
    /// This thread has the unit decoded already.
    Decoded,
    /// Copied into the caller's buffer (this many bytes).
    Copied(usize),
    /// In these backing records, to be read with no lock held.
    Backed(Box<[(u64, usize)]>),
}

/// One dictionary (or none) as a decoder's view.
struct Held<'a>(Option<&'a Dictionary>);

impl Dictionaries for Held<'_> {
    fn get(&self, id: u32) -> Option<&Dictionary> {
        self.0.filter(|d| d.id() == id)
    }
}

impl PageStore {
    /// Encodes `page` as `how` says (no lock held).
    pub(super) fn encode(&self, page: &Page, how: Encoding) -> Encoded {
        let mut bytes = SCRATCH.with(Cell::take);
        let dicts = self.dicts.current();
        let class = match how {
            Encoding::Insert => self.engine.encode_with(page, dicts.as_deref(), &mut bytes),
            Encoding::Filled(word) => codec::encode_filled(word, &mut bytes),
            Encoding::Idle(None) => {
                self.idle_engine()
                    .encode_at(page, dicts.as_deref(), None, &mut bytes)
            }
            Encoding::Idle(Some(level)) => {
                self.idle_engine()
                    .encode_cold(page, dicts.as_deref(), level, &mut bytes)
            }
            Encoding::Mixed => {
                let dict = dicts
                    .as_deref()
                    .map(|set| &**set.dictionary_for(&features::extract(page)));
                match codec::encode_mixed(page, dict, self.idle_engine().codec(), &mut bytes) {
                    Class::Mixed => Class::Mixed,
                    _ => self
                        .idle_engine()
                        .encode_at(page, dicts.as_deref(), None, &mut bytes),
                }
            }
        };
        Encoded {
            class,
            word: page.words()[0],
            bytes,
            _dicts: dicts,
        }
    }

    /// Copies page `id` (of metadata `meta`) out of its shard (held locked by the
    /// caller, read or write): a hot copy or an inline page straight into `out`, a form
    /// into `buffer`, with the dictionary it names held so that it outlives the lock.
    pub(super) fn snapshot(
        &self,
        shard: &Shard,
        id: u64,
        meta: Meta,
        out: &mut Page,
        buffer: &mut Vec<u8>,
    ) -> Snapshot {
        if meta.hot {
            // A use of the copy: the hot tier's second chance.
            let copy = shard.hot.peek(&id).expect("the hot bit mirrors the tier");
            copy.referenced.store(1, Ordering::Relaxed);
            out.bytes_mut().copy_from_slice(copy.page.bytes());
            return Snapshot::Done;
        }
        let class = meta
            .stored
            .expect("a page that is not hot has a stored form");
        if class.is_inline() {
            out.words_mut().fill(meta.word);
            return Snapshot::Done;
        }
        if meta.unit {
            let (index, position) = member_of(meta.word);
            let slabs = self.slabs.read();
            let units = self.units.read();
            let unit = units.get(index);
            buffer.clear();
            let frame = if DECODED.with(|cell| cell.borrow().0 == unit.serial) {
                UnitFrame::Decoded
            } else if unit.copy_frame(&slabs, buffer) {
                UnitFrame::Copied(buffer.len())
            } else {
                let Frame::Backed(records) = &unit.frame else {
                    unreachable!("a frame not in memory is backed")
                };
                UnitFrame::Backed(records.clone())
            };
            let dict = match frame {
                UnitFrame::Decoded => None,
                _ => self.dicts.hold(unit.dict()),
            };
            return Snapshot::Unit {
                serial: unit.serial,
                pages: unit.pages(),
                position,
                frame,
                frame_checksum: unit.checksum,
                checksum: meta.checksum,
                dict,
            };
        }
        if meta.backed {
            let slot = writeback::backed_slot(meta.word);
            let dict = self.tier().slots.dictionary(slot);
            return Snapshot::Backed {
                class,
                slot,
                len: writeback::backed_len(meta.word),
                checksum: meta.checksum,
                dict: self.dicts.hold(dict),
            };
        }
        let slabs = self.slabs.read();
        let bytes = slabs.get(Handle::from_bits(meta.word));
        buffer.clear();
        buffer.extend_from_slice(bytes);
        drop(slabs);
        let len = stored_len(meta);
        Snapshot::Payload {
            class,
            len,
            checksum: meta.checksum,
            dict: self
                .dicts
                .hold(codec::form_dictionary(class, &buffer[..len])),
        }
    }

    /// Turns a snapshot into the page's bytes in `out`, with no lock held: the backing
    /// store's read, the checksum, the decode.
    pub(super) fn finish(
        &self,
        id: u64,
        snapshot: Snapshot,
        buffer: &mut Vec<u8>,
        out: &mut Page,
    ) -> Result<(), StoreError> {
        let (class, len, checksum, dict) = match snapshot {
            Snapshot::Done => return Ok(()),
            Snapshot::Unit {
                serial,
                pages,
                position,
                frame,
                frame_checksum,
                checksum,
                dict,
            } => {
                let frame_len = match frame {
                    UnitFrame::Decoded => None,
                    UnitFrame::Copied(len) => Some(len),
                    UnitFrame::Backed(records) => match self.read_records(&records, buffer) {
                        Ok(len) => Some(len),
                        Err(source) => {
                            self.dicts.let_go(dict);
                            return Err(StoreError::BackingRead { id, source });
                        }
                    },
                };
                let result = DECODED.with(|cell| {
                    let (decoded, bytes) = &mut *cell.borrow_mut();
                    if let Some(frame_len) = frame_len {
                        let frame = &buffer[..frame_len];
                        if crc32fast::hash(frame) != frame_checksum {
                            return Err(StoreError::Checksum { id });
                        }
                        *decoded = 0;
                        bytes.resize(pages * PAGE_SIZE, 0);
                        codec::unit::decode(frame, &Held(dict.as_deref()), bytes)
                            .map_err(|source| StoreError::Corrupt { id, source })?;
                        *decoded = serial;
                    }
                    let page = &bytes[position * PAGE_SIZE..][..PAGE_SIZE];
                    if crc32fast::hash(page) != checksum {
                        return Err(StoreError::Checksum { id });
                    }
                    out.bytes_mut().copy_from_slice(page);
                    Ok(())
                });
                self.dicts.let_go(dict);
                return result;
            }
            Snapshot::Payload {
                class,
                len,
                checksum,
                dict,
            } => (class, len, checksum, dict),
            Snapshot::Backed {
                class,
                slot,
                len,
                checksum,
                dict,
            } => {
                buffer.clear();
                buffer.resize(len, 0);
                let read = self.tier().device.read(slot, buffer);
                if let Err(error) = read {
                    self.dicts.let_go(dict);
                    return Err(StoreError::BackingRead {
                        id,
                        source: error.into(),
                    });
                }
                self.counters.bd_reads.fetch_add(1, Ordering::Relaxed);
                (class, len, checksum, dict)
            }
        };
        let bytes = &buffer[..len];
        let result = if crc32fast::hash(bytes) != checksum {
            Err(StoreError::Checksum { id })
        } else {
            codec::decode_payload_with(class, bytes, &Held(dict.as_deref()), out)
                .map_err(|source| StoreError::Corrupt { id, source })
        };
        self.dicts.let_go(dict);
        result
    }

    /// Reads a written-back unit's records into `buffer` (no lock held); the frame's
    /// length.
    fn read_records(
        &self,
        records: &[(u64, usize)],
        buffer: &mut Vec<u8>,
    ) -> Result<usize, IoError> {
        let total = records.iter().map(|&(_, len)| len).sum();
        buffer.clear();
        buffer.resize(total, 0);
        let mut at = 0;
        for &(slot, len) in records {
            self.tier().device.read(slot, &mut buffer[at..at + len])?;
            self.counters.bd_reads.fetch_add(1, Ordering::Relaxed);
            at += len;
        }
        Ok(total)
    }

    /// Page `id`'s bytes into `out` with no lock held across the work: the metadata it
    /// was read at (`None`: absent, or `wanted` said no). `wanted` runs under the shard's
    /// read lock on a present page (a read's stamp and counters, a pass's choice). A
    /// backed page whose record was
    /// replaced while it was read (its slot freed and reused: a checksum or I/O error on
    /// a page that changed meanwhile) is read again.
    pub(super) fn read_page(
        &self,
        id: u64,
        out: &mut Page,
        wanted: impl Fn(&Shard, Meta) -> bool,
    ) -> Result<Option<Meta>, StoreError> {
        let slot = self.slot(id);
        // A per-thread buffer: a read neither allocates nor clears a page for the form.
        let mut buffer = READ_BUFFER.with(Cell::take);
        let result = loop {
            let (meta, snapshot) = {
                let shard = slot.shard.read();
                let Some(meta) = shard.table.get(id) else {
                    break Ok(None);
                };
                if !wanted(&shard, meta) {
                    break Ok(None);
                }
                (meta, self.snapshot(&shard, id, meta, out, &mut buffer))
            };
            match self.finish(id, snapshot, &mut buffer, out) {
                // A record read while its slot was freed and reused: the page changed
                // (a backed page rewritten, or a unit's last member gone).
                Err(StoreError::Checksum { .. } | StoreError::BackingRead { .. })
                    if (meta.backed || meta.unit)
                        && slot.shard.read().table.get(id) != Some(meta) => {}
                Err(error) => {
                    slot.failed_reads.fetch_add(1, Ordering::Relaxed);
                    break Err(error);
                }
                Ok(()) => break Ok(Some(meta)),
            }
        };
        READ_BUFFER.with(|cell| cell.set(buffer));
        result
    }

    /// Absent or any state ──insert──▶ Stored: puts an encoded page in place of whatever
    /// `id` held (its old form freed, or at the limit overwritten in place when no
    /// larger). Returns whether a page was replaced.
    pub(super) fn install(
        &self,
        shard: &mut Shard,
        id: u64,
        encoded: &Encoded,
    ) -> Result<bool, StoreError> {
        let old = shard.table.get(id);
        let mut slabs = self.slabs_mut();
        let old_dict = old.and_then(|old| form_dict(&slabs, old));
        let meta = replace_form(&mut slabs, old, encoded)?;
        drop(slabs);
        if let Some(old) = old {
            self.forget(shard, id, old);
            let old_dict = if old.backed {
                self.free_slot(old)
            } else if old.unit {
                self.leave_unit(old)
            } else {
                old_dict
            };
            self.dicts.release(old_dict);
        }
        self.record(meta, &encoded.bytes);
        self.set_written(shard, id, meta, old.is_some());
        Ok(old.is_some())
    }

    /// Absent ──insert──▶ Stored, only if `id` is still absent (`get_or_insert_with`);
    /// whether it was.
    pub(super) fn install_vacant(
        &self,
        shard: &mut Shard,
        id: u64,
        encoded: &Encoded,
    ) -> Result<bool, StoreError> {
        if shard.table.get(id).is_some() {
            return Ok(false);
        }
        self.install(shard, id, encoded)
    }

    /// Any state ──▶ Absent: table, allocator or slot, counters, hot tier; whether the
    /// page was there.
    pub(super) fn unlink(&self, shard: &mut Shard, id: u64) -> bool {
        let Some(meta) = shard.table.remove(id) else {
            return false;
        };
        self.release_form(meta);
        self.forget(shard, id, meta);
        true
    }

    /// Absent or any state ──insert (hot tier)──▶ HotDirty, into the copy `buffer` (the
    /// page's own copy if it was hot, or one the hot policy made room for). Returns
    /// whether a page was replaced.
    pub(super) fn write_hot(
        &self,
        shard: &mut Shard,
        id: u64,
        page: &Page,
        mut buffer: Box<Page>,
    ) -> bool {
        let old = shard.table.get(id);
        buffer.bytes_mut().copy_from_slice(page.bytes());
        if let Some(old) = old {
            self.release_form(old);
            self.forget(shard, id, old);
        }
        self.put_hot(shard, id, buffer);
        self.counters.hot_dirty.fetch_add(1, Ordering::Relaxed);
        let meta = Meta {
            word: self.writes.fetch_add(1, Ordering::Relaxed),
            checksum: 0,
            stored: None,
            hot: true,
            backed: false,
            settled: false,
            unit: false,
        };
        self.set_written(shard, id, meta, old.is_some());
        old.is_some()
    }

    /// HotDirty ──clean──▶ HotClean: the dirty page `dirty` (its metadata when it was
    /// copied out) gets the form encoded from that copy; Ok(false) if it changed meanwhile.
    pub(super) fn clean_hot(
        &self,
        shard: &mut Shard,
        id: u64,
        dirty: Meta,
        encoded: &Encoded,
    ) -> Result<bool, StoreError> {
        if shard.table.get(id) != Some(dirty) {
            return Ok(false);
        }
        let meta = store_form(&mut self.slabs_mut(), encoded)?;
        self.counters.hot_dirty.fetch_sub(1, Ordering::Relaxed);
        self.record(meta, &encoded.bytes);
        shard.table.set(id, Meta { hot: true, ..meta }, None);
        Ok(true)
    }

    /// Stored or Backed ──read miss──▶ HotClean: the page (of metadata `meta` when read)
    /// keeps the decoded copy `buffer`, if unchanged.
    pub(super) fn fill_hot(
        &self,
        shard: &mut Shard,
        id: u64,
        meta: Meta,
        page: &Page,
        mut buffer: Box<Page>,
    ) {
        if meta.hot || shard.table.get(id) != Some(meta) {
            return;
        }
        buffer.bytes_mut().copy_from_slice(page.bytes());
        self.put_hot(shard, id, buffer);
        shard.table.set(id, Meta { hot: true, ..meta }, None);
    }

    /// Puts a decoded copy in the shard's hot tier (most recent, unreferenced), counted.
    fn put_hot(&self, shard: &mut Shard, id: u64, page: Box<Page>) {
        let copy = HotCopy {
            page,
            referenced: Hint::new(0),
        };
        shard.hot.put(id, copy);
        self.counters.hot_pages.fetch_add(1, Ordering::Relaxed);
    }

    /// HotClean ──drop copy──▶ Stored (or Backed): returns the copy's buffer.
    pub(super) fn drop_hot(&self, shard: &mut Shard, id: u64) -> Box<Page> {
        let copy = shard.hot.pop(&id).expect("the hot bit mirrors the tier");
        let meta = shard.table.get(id).expect("hot pages are present");
        debug_assert!(meta.stored.is_some(), "only clean copies are dropped");
        self.counters.hot_pages.fetch_sub(1, Ordering::Relaxed);
        shard.table.set(id, Meta { hot: false, ..meta }, None);
        copy.page
    }

    /// Stored ──recompress──▶ Stored (settled, or cold after a cold pass): the page keeps
    /// `encoded` (made from its content when its metadata was `old`) if unchanged and
    /// smaller. Ok(None) if it changed meanwhile, Ok(Some(bytes saved)) otherwise.
    /// InUnit ──coldest pass──▶ Stored: a unit's member has no bytes of its own to
    /// compare (its pass weighed the whole unit), so it keeps `encoded` if unchanged.
    pub(super) fn recompressed(
        &self,
        shard: &mut Shard,
        id: u64,
        old: Meta,
        encoded: &Encoded,
        cold: bool,
    ) -> Result<Option<usize>, StoreError> {
        if shard.table.get(id) != Some(old) {
            return Ok(None);
        }
        let (before, after) = (
            stored_len(old),
            codec::stored_size(encoded.class, encoded.bytes.len()),
        );
        let mut meta = old;
        if after < before || old.unit {
            meta = store_form(&mut self.slabs_mut(), encoded)?;
            self.release_form(old);
            self.forget(shard, id, old);
            self.record(meta, &encoded.bytes);
        }
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
        Ok(Some(before.saturating_sub(after)))
    }

    /// Stored ──writeback──▶ Backed: the page (of metadata `meta` when its payload was
    /// copied out) now lives in backing slot `slot`, if unchanged; whether it was.
    pub(super) fn written_back(
        &self,
        shard: &mut Shard,
        id: u64,
        meta: Meta,
        slot: u64,
        dict: u32,
    ) -> bool {
        if shard.table.get(id) != Some(meta) {
            return false;
        }
        self.tier().slots.assign(slot, dict);
        let len = stored_len(meta);
        free_form(&mut self.slabs_mut(), meta);
        let class = meta.stored.expect("an allocator page has a form");
        self.counters.moved_out(class, len);
        shard.table.set(
            id,
            Meta {
                word: writeback::backed_word(slot, len),
                backed: true,
                ..meta
            },
            None,
        );
        self.counters.backed_in(len);
        true
    }

    /// Sets a written page's metadata: a new page joins the eviction hand's queue, a
    /// rewritten one counts as referenced.
    fn set_written(&self, shard: &mut Shard, id: u64, meta: Meta, existed: bool) {
        shard.table.set(id, meta, Some(self.now()));
        if existed {
            shard.table.reference(id);
        } else if self.on_full.tracks_order() {
            self.enqueue(shard, id);
        }
    }

    /// Counts a newly stored form, and the dictionary it names (under its shard lock).
    fn record(&self, meta: Meta, encoded: &[u8]) {
        self.counters.record(meta);
        if let Some(class) = meta.stored
            && let Some(dict) = codec::form_dictionary(class, &encoded[1..])
        {
            self.dicts.retain(dict);
        }
    }

    /// Uncounts a page's old state (its stored form, its hot copy).
    fn forget(&self, shard: &mut Shard, id: u64, meta: Meta) {
        match meta.stored {
            Some(_) if meta.unit => {
                self.counters.unit_pages.fetch_sub(1, Ordering::Relaxed);
            }
            Some(class) => self.counters.sub(class, stored_len(meta)),
            None => {
                self.counters.hot_dirty.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if meta.hot {
            shard.hot.pop(&id);
            self.counters.hot_pages.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Frees a stored form and uncounts the dictionary it names (under its shard lock).
    fn release_form(&self, meta: Meta) {
        let dict = if meta.backed {
            self.free_slot(meta)
        } else if meta.unit {
            self.leave_unit(meta)
        } else {
            let mut slabs = self.slabs_mut();
            let dict = form_dict(&slabs, meta);
            free_form(&mut slabs, meta);
            dict
        };
        self.dicts.release(dict);
    }

    /// Takes a member out of its unit, freeing the unit if it was its last member;
    /// returns the dictionary the freed unit named.
    fn leave_unit(&self, meta: Meta) -> Option<u32> {
        let (index, position) = member_of(meta.word);
        self.change_units(|units| units.leave(index, position))
    }

    /// The cold pass has packed unit `index`: freed if no page joined it (or none
    /// stayed); returns the dictionary it named then, for the caller to release.
    pub(super) fn unit_packed(&self, index: u32) -> Option<u32> {
        self.change_units(|units| units.packed(index))
    }

    /// Changes the units' registry under the allocator's lock (the lock order), freeing
    /// the frame of the unit the change let go; returns the dictionary it named.
    fn change_units(&self, change: impl FnOnce(&mut Units) -> Option<Unit>) -> Option<u32> {
        let gone = {
            let mut slabs = self.slabs_mut();
            let gone = change(&mut self.units.write())?;
            if let Frame::Memory(pieces) = &gone.frame {
                pieces.iter().for_each(|&piece| slabs.free(piece));
            }
            gone
        };
        if let Frame::Backed(records) = &gone.frame {
            for &(slot, len) in records.iter() {
                self.tier().slots.free(slot);
                self.counters.backed_out(len);
            }
        }
        gone.dict()
    }

    /// Stored ──pack──▶ Stored in a unit (cold): page `id`, whose content (of metadata
    /// `old` when read, CRC `checksum`) is at `position` of unit `index`, becomes its
    /// member if unchanged, and its old form is freed; whether it did.
    pub(super) fn packed_into(
        &self,
        shard: &mut Shard,
        id: u64,
        old: Meta,
        index: u32,
        position: usize,
        checksum: u32,
    ) -> bool {
        if shard.table.get(id) != Some(old) {
            return false;
        }
        self.release_form(old);
        self.forget(shard, id, old);
        self.units.write().join(index, position);
        self.counters.unit_pages.fetch_add(1, Ordering::Relaxed);
        let meta = Meta {
            word: member_word(index, position),
            checksum,
            stored: Some(Class::Zstd),
            hot: false,
            backed: false,
            settled: true,
            unit: true,
        };
        shard.table.set(id, meta, None);
        shard.table.mark_cold(id);
        true
    }

    /// Frees a written-back page's slot; returns the dictionary its form names.
    fn free_slot(&self, meta: Meta) -> Option<u32> {
        self.counters.backed_out(writeback::backed_len(meta.word));
        let dict = self.tier().slots.free(writeback::backed_slot(meta.word));
        (dict != 0).then_some(dict)
    }

    /// Tells the listener, if any, that `ids` left for `cause` (no lock held).
    pub(super) fn notify(&self, ids: impl IntoIterator<Item = u64>, cause: RemovalCause) {
        if let Some(listener) = &self.listener {
            for id in ids {
                listener(id, cause);
            }
        }
    }
}

/// Stored ──compaction──▶ Stored: the form of page `id` (metadata `meta`) now lives at
/// `moved`, the same bytes (the caller holds the shard's and the allocator's write
/// locks). Not an access: the stamp stays.
pub(super) fn moved_form(shard: &mut Shard, id: u64, meta: Meta, moved: Handle) {
    let word = moved.bits();
    shard.table.set(id, Meta { word, ..meta }, None);
}

/// Puts an encoded page where its class keeps it: the metadata word for zero and
/// same-filled pages, the allocator for the rest.
fn store_form(slabs: &mut Slabs, encoded: &Encoded) -> Result<Meta, StoreError> {
    let (word, checksum) = if encoded.class.is_inline() {
        (encoded.word, 0)
    } else {
        let payload = &encoded.bytes[1..];
        (slabs.alloc(payload)?.bits(), crc32fast::hash(payload))
    };
    Ok(Meta {
        word,
        checksum,
        stored: Some(encoded.class),
        hot: false,
        backed: false,
        settled: false,
        unit: false,
    })
}

/// Stores a form in place of `old` (if any), which is freed. At the memory limit a form
/// no larger than the old one takes its place instead, so rewriting a page with content
/// of the same size never fails; otherwise a failure changes nothing.
fn replace_form(
    slabs: &mut Slabs,
    old: Option<Meta>,
    encoded: &Encoded,
) -> Result<Meta, StoreError> {
    let error = match store_form(slabs, encoded) {
        Ok(meta) => {
            if let Some(old) = old {
                free_form(slabs, old);
            }
            return Ok(meta);
        }
        Err(error) => error,
    };
    let payload = &encoded.bytes[1..];
    match old {
        Some(old) if in_allocator(old) && !encoded.class.is_inline() => {
            let handle = Handle::from_bits(old.word);
            if payload.len() > handle.len() || slabs.is_evacuating(handle) {
                return Err(error);
            }
            Ok(Meta {
                word: slabs.replace_in_place(handle, payload).bits(),
                checksum: crc32fast::hash(payload),
                stored: Some(encoded.class),
                hot: false,
                backed: false,
                settled: false,
                unit: false,
            })
        }
        _ => Err(error),
    }
}

/// The dictionary a form in the allocator names, read from its payload: whatever forms
/// [`codec::form_dictionary`] says name one (the same function counted it in `record`).
pub(super) fn form_dict(slabs: &Slabs, meta: Meta) -> Option<u32> {
    let class = meta.stored.filter(|_| in_allocator(meta))?;
    codec::form_dictionary(class, slabs.get(Handle::from_bits(meta.word)))
}

fn free_form(slabs: &mut Slabs, meta: Meta) {
    if in_allocator(meta) {
        slabs.free(Handle::from_bits(meta.word));
    }
}

impl Counters {
    /// Counts a newly stored form (under its shard's lock).
    fn record(&self, meta: Meta) {
        if let Some(class) = meta.stored {
            self.add(class, stored_len(meta));
        }
    }
}
