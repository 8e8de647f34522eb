//! The backing store: where cold and incompressible pages go when they leave memory
//! (zram's `backing_dev`). A small trait, [`Backing`], addresses records by slot, so a
//! file, a block device or a remote key-value tier can serve; [`BackingFile`] is the
//! file and block-device one.
//!
//! Invariants:
//! - A slot holds at most one record of at most [`PAGE_SIZE`] bytes; it belongs to one
//!   page from its allocation until that page is overwritten or removed (or the write
//!   that filled it failed), and is reused only after.
//! - A record's length and CRC-32 stay in memory, in the page's metadata: a record the
//!   backing store damaged or cut short fails its check on read, never decodes.
//! - The allocator of slots ([`Slots`]) also remembers the dictionary each record's form
//!   names, so that freeing a page's slot never reads the backing store.

use crate::page::PAGE_SIZE;
use crate::sync::Mutex;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Where written-back pages are kept: records of at most one page, addressed by slot.
/// An implementation must be safe to call from many threads at once; a failed write
/// may leave its slots with any content (the store never reads a slot it could not
/// write), and a read returns an error or exactly `out.len()` bytes.
pub trait Backing: Send + Sync + std::fmt::Debug {
    /// Slots it has room for.
    fn slots(&self) -> u64;

    /// Writes records into slots, in one batch where the medium allows.
    fn write(&self, records: &[(u64, &[u8])]) -> io::Result<()>;

    /// Reads the first `out.len()` bytes of slot `slot`'s record.
    fn read(&self, slot: u64, out: &mut [u8]) -> io::Result<()>;

    /// Drops the records of `slots`, whose pages were overwritten or removed (or whose
    /// write failed), so the medium can give their room back. The store hands a slot
    /// out again only once this has returned `Ok` for it, so a late drop never takes a
    /// newer record. Called with no lock held, before a writeback batch. The default
    /// drops nothing (a file's slot is simply written over).
    fn discard(&self, slots: &[u64]) -> io::Result<()> {
        let _ = slots;
        Ok(())
    }
}

/// A backing file or block device: slot `n` at byte offset `n * 4096`.
#[derive(Debug)]
pub struct BackingFile {
    file: File,
    slots: u64,
}

impl BackingFile {
    /// Opens a block device (its size is its room), or creates a regular file of
    /// `bytes` bytes (sparse until written; an existing file's content is given up).
    ///
    /// # Errors
    /// The I/O error of opening or sizing it; a directory or other special file is
    /// refused.
    ///
    /// # Examples
    /// See [`crate::PageStore::writeback`].
    pub fn open(path: &Path, bytes: u64) -> io::Result<BackingFile> {
        use std::os::unix::fs::FileTypeExt;
        let kind = std::fs::metadata(path).map(|m| m.file_type()).ok();
        if kind.is_some_and(|k| k.is_block_device()) {
            let file = OpenOptions::new().read(true).write(true).open(path)?;
            let size = io::Seek::seek(&mut &file, io::SeekFrom::End(0))?;
            return Ok(BackingFile {
                file,
                slots: size / PAGE_SIZE as u64,
            });
        }
        if kind.is_some_and(|k| !k.is_file()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file or block device",
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        file.set_len(bytes)?;
        Ok(BackingFile {
            file,
            slots: bytes / PAGE_SIZE as u64,
        })
    }
}

impl Backing for BackingFile {
    fn slots(&self) -> u64 {
        self.slots
    }

    fn write(&self, records: &[(u64, &[u8])]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        // Runs of consecutive slots go out in one write, each record padded to its slot.
        let mut run: Vec<u8> = Vec::new();
        let mut start = 0;
        for (i, &(slot, record)) in records.iter().enumerate() {
            if run.is_empty() {
                start = slot;
            }
            run.extend_from_slice(record);
            let next = records.get(i + 1).map(|r| r.0);
            if next == Some(slot + 1) {
                run.resize(run.len().next_multiple_of(PAGE_SIZE), 0);
            } else {
                self.file.write_all_at(&run, start * PAGE_SIZE as u64)?;
                run.clear();
            }
        }
        Ok(())
    }

    fn read(&self, slot: u64, out: &mut [u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.read_exact_at(out, slot * PAGE_SIZE as u64)
    }
}

/// Which slots are in use, and the dictionary each record names.
#[derive(Debug)]
pub(super) struct Slots {
    inner: Mutex<SlotsInner>,
    capacity: u64,
}

#[derive(Debug, Default)]
struct SlotsInner {
    /// Freed slots whose records are dropped, reused before new ones.
    free: Vec<u64>,
    /// Freed slots whose records the backing store has not been asked to drop yet.
    dropping: Vec<u64>,
    /// Slots below this have been handed out at least once.
    next: u64,
    /// The dictionary id each used slot's record names (0: none), by slot.
    dicts: Vec<u32>,
}

impl Slots {
    pub(super) fn new(capacity: u64) -> Slots {
        Slots {
            inner: Mutex::new(SlotsInner::default()),
            capacity,
        }
    }

    /// Up to `n` free slots, ascending (runs of them go out in one write).
    pub(super) fn alloc(&self, n: usize) -> Vec<u64> {
        let mut inner = self.inner.lock();
        let mut slots = Vec::with_capacity(n);
        while slots.len() < n {
            if let Some(slot) = inner.free.pop() {
                slots.push(slot);
            } else if inner.next < self.capacity {
                slots.push(inner.next);
                inner.next += 1;
            } else {
                break;
            }
        }
        slots.sort_unstable();
        slots
    }

    /// Records that `slot` now holds a record whose form names `dict` (0: none).
    pub(super) fn assign(&self, slot: u64, dict: u32) {
        let mut inner = self.inner.lock();
        let at = slot as usize;
        if inner.dicts.len() <= at {
            inner.dicts.resize(at + 1, 0);
        }
        inner.dicts[at] = dict;
    }

    /// The dictionary the record in `slot` names, if any.
    pub(super) fn dictionary(&self, slot: u64) -> Option<u32> {
        let inner = self.inner.lock();
        inner.dicts.get(slot as usize).copied().filter(|&d| d != 0)
    }

    /// Frees `slot` (to be reused once its record is dropped: [`Slots::to_drop`]);
    /// returns the dictionary its record named (0: none).
    pub(super) fn free(&self, slot: u64) -> u32 {
        let mut inner = self.inner.lock();
        let dict = inner.dicts.get_mut(slot as usize).map_or(0, std::mem::take);
        inner.dropping.push(slot);
        dict
    }

    /// The freed slots whose records are to be dropped now; hand them back with
    /// [`Slots::dropped`].
    pub(super) fn to_drop(&self) -> Vec<u64> {
        std::mem::take(&mut self.inner.lock().dropping)
    }

    /// Slots from [`Slots::to_drop`]: free for reuse if their records were dropped,
    /// else to be dropped again later.
    pub(super) fn dropped(&self, slots: Vec<u64>, done: bool) {
        let mut inner = self.inner.lock();
        if done {
            inner.free.extend(slots);
        } else {
            inner.dropping.extend(slots);
        }
    }

    /// Bytes of memory this bookkeeping takes.
    pub(super) fn memory_bytes(&self) -> usize {
        let inner = self.inner.lock();
        (inner.free.capacity() + inner.dropping.capacity()) * 8 + inner.dicts.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_remember_their_dictionary() {
        let slots = Slots::new(3);
        assert_eq!(slots.alloc(2), vec![0, 1]);
        slots.assign(1, 7);
        assert_eq!(slots.alloc(5), vec![2], "only the room there is");
        assert_eq!(slots.free(1), 7);
        assert_eq!(slots.free(0), 0);
        assert_eq!(
            slots.alloc(1),
            Vec::<u64>::new(),
            "not reused before its record is dropped"
        );
        let freed = slots.to_drop();
        slots.dropped(freed, false);
        assert_eq!(
            slots.alloc(1),
            Vec::<u64>::new(),
            "nor when the drop failed"
        );
        let freed = slots.to_drop();
        assert_eq!(freed, vec![1, 0]);
        slots.dropped(freed, true);
        assert_eq!(slots.alloc(2), vec![0, 1]);
        assert_eq!(slots.free(1), 0, "a reused slot starts with no dictionary");
    }

    #[test]
    fn a_file_round_trips_records_in_runs_and_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = BackingFile::open(&dir.path().join("b"), 8 * PAGE_SIZE as u64).unwrap();
        assert_eq!(file.slots(), 8);
        let (a, b, c) = (vec![1u8; 100], vec![2u8; PAGE_SIZE], vec![3u8; 7]);
        file.write(&[(2, &a), (3, &b), (6, &c)]).unwrap();
        let mut out = vec![0; 100];
        file.read(2, &mut out).unwrap();
        assert_eq!(out, a);
        let mut out = vec![0; PAGE_SIZE];
        file.read(3, &mut out).unwrap();
        assert_eq!(out, b);
        let mut out = vec![0; 7];
        file.read(6, &mut out).unwrap();
        assert_eq!(out, c);
        let mut out = vec![0; 10];
        assert!(file.read(8, &mut out).is_err(), "past the end");
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error = BackingFile::open(dir.path(), 4096).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
