//! The hot tier: decoded copies of recently used pages, a per-shard budget, and which copy
//! makes room for a new one.
//!
//! Policy: an LRU list with a second chance. A hit copies the page out under the shard's
//! *read* lock and sets the copy's reference bit (a relaxed store), so hits never take a
//! write lock and never wait for each other; the list's order is only changed when room
//! is made, under the write lock: the least recently filled copy goes unless its bit is
//! set, in which case it is promoted (bit cleared) and the next is looked at.
//!
//! Invariants:
//! - A clean copy (HotClean) is dropped in place; a dirty one (HotDirty) is first
//!   cleaned: copied out, encoded with no lock held, and given its form only if it was not
//!   written meanwhile ([`PageStore::clean_hot`]). An insert that needs room from a dirty
//!   copy cleans it and tries again.
//! - A read miss fills the tier only by displacing a clean copy (or into free room): a
//!   read never encodes.

use super::evict::RemovalCause;
use super::lifecycle::{Encoding, Shard};
use super::table::Meta;
use super::{PageStore, ShardSlot, StoreError};
use crate::page::Page;
use crate::sync::Ordering;

/// What making room in a full tier found.
enum Room {
    /// A buffer for the new copy (free room, or a clean copy dropped).
    Buffer(Box<Page>),
    /// The next copy to go is dirty: this page, with its metadata and a copy of it.
    Dirty(u64, Meta, Box<Page>),
}

impl PageStore {
    /// A read through the hot tier (see the module docs).
    pub(super) fn read_hot(
        &self,
        slot: &ShardSlot,
        id: u64,
        out: &mut Page,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let meta = self.read_page(id, out, |shard, meta| {
            shard.table.touch(id, now);
            if meta.hot {
                slot.hits.fetch_add(1, Ordering::Relaxed);
            } else {
                slot.misses.fetch_add(1, Ordering::Relaxed);
            }
            true
        })?;
        let meta = meta.ok_or(StoreError::NotFound(id))?;
        // Zero and same-filled pages decode faster than a copy: not worth a hot slot.
        if !meta.hot && meta.stored.is_some_and(|class| !class.is_inline()) {
            let mut shard = slot.shard.write();
            if shard.table.get(id) == Some(meta)
                && let Room::Buffer(buffer) = self.room(&mut shard, slot.hot_capacity)
            {
                self.fill_hot(&mut shard, id, meta, out, buffer);
            }
        }
        Ok(())
    }

    /// An insert through the hot tier: the page becomes a dirty copy.
    pub(super) fn insert_hot(
        &self,
        slot: &ShardSlot,
        id: u64,
        page: &Page,
    ) -> Result<(), StoreError> {
        loop {
            let mut shard = slot.shard.write();
            let buffer = match shard.table.get(id) {
                // Its own copy is reused (`write_hot` uncounts the old state).
                Some(meta) if meta.hot => {
                    let copy = shard.hot.pop(&id).expect("the hot bit mirrors the tier");
                    copy.page
                }
                _ => match self.room(&mut shard, slot.hot_capacity) {
                    Room::Buffer(buffer) => buffer,
                    Room::Dirty(victim, meta, copy) => {
                        drop(shard);
                        self.clean(slot, victim, meta, &copy)?;
                        continue;
                    }
                },
            };
            let replaced = self.write_hot(&mut shard, id, page, buffer);
            drop(shard);
            if replaced {
                self.notify([id], RemovalCause::Replaced);
                self.compact_if_wasteful();
            }
            return Ok(());
        }
    }

    /// Gives dirty page `id` (metadata `meta` when `copy` was taken) its stored form,
    /// encoded with no lock held; at the memory limit the store's policy makes room. A
    /// page written meanwhile is left as it is (its writer's copy is newer).
    pub(super) fn clean(
        &self,
        slot: &ShardSlot,
        id: u64,
        meta: Meta,
        copy: &Page,
    ) -> Result<(), StoreError> {
        let encoded = self.encode(copy, Encoding::Insert);
        self.with_room(|| self.clean_hot(&mut slot.shard.write(), id, meta, &encoded))
            .map(drop)
    }

    /// Makes room for one copy in a shard's tier of `capacity` copies (see the module
    /// docs); a buffer, or the dirty copy that must be cleaned first.
    fn room(&self, shard: &mut Shard, capacity: usize) -> Room {
        if shard.hot.len() < capacity {
            return Room::Buffer(Page::boxed());
        }
        // Referenced copies get a second chance; if every copy was referenced, the least
        // recently filled goes after all.
        for _ in 0..shard.hot.len() {
            let (&victim, copy) = shard.hot.peek_lru().expect("a full tier has copies");
            if copy.referenced.swap(0, Ordering::Relaxed) == 0 {
                break;
            }
            shard.hot.promote(&victim);
        }
        let (&victim, copy) = shard.hot.peek_lru().expect("a full tier has copies");
        let meta = shard.table.get(victim).expect("hot pages are present");
        if meta.stored.is_none() {
            return Room::Dirty(victim, meta, copy.page.clone());
        }
        Room::Buffer(self.drop_hot(shard, victim))
    }

    /// Compresses every dirty page of the hot tier (they stay hot, now clean); at the
    /// memory limit the store's [`crate::OnFull`] policy makes room.
    ///
    /// # Errors
    /// [`StoreError::MemoryLimit`] (or [`StoreError::OutOfMemory`]) if a dirty page could
    /// not be given a form; it stays dirty, and the pages cleaned before it stay clean.
    ///
    /// # Examples
    /// ```
    /// use zpage::{Page, PageStore};
    ///
    /// let store = PageStore::builder().hot_budget(1 << 20).build();
    /// let mut page = Page::zeroed();
    /// page.bytes_mut()[..5].copy_from_slice(b"dirty");
    /// store.insert(1, &page)?;
    /// assert_eq!(store.stats().hot_dirty_pages, 1);
    /// store.flush()?;
    /// assert_eq!(store.stats().hot_dirty_pages, 0);
    /// # Ok::<(), zpage::StoreError>(())
    /// ```
    pub fn flush(&self) -> Result<(), StoreError> {
        for slot in self.shards.iter() {
            let dirty: Vec<(u64, Meta, Box<Page>)> = {
                let shard = slot.shard.read();
                shard
                    .table
                    .iter()
                    .filter(|(_, meta)| meta.stored.is_none())
                    .map(|(id, meta)| {
                        let copy = shard.hot.peek(&id).expect("a dirty page is hot");
                        (id, meta, copy.page.clone())
                    })
                    .collect()
            };
            for (id, meta, copy) in dirty {
                self.clean(slot, id, meta, &copy)?;
            }
        }
        Ok(())
    }
}
