//! The region's memory: one anonymous private mapping, and the raw page operations the
//! fault handler needs on it. The mapping ends in [`STAGING_PAGES`] pages the application
//! never sees: eviction moves a page there (`UFFDIO_MOVE`, which refuses pinned pages)
//! before compressing it, and drops them all at once when they are used up.
//!
//! Invariants:
//! - The mapping lives from `reserve` until `Mapping` is dropped, which the region does
//!   only after its handler thread has stopped; `Pages` (the handler's view) never
//!   outlives it.
//! - Transparent huge pages are disabled on the range: userfaultfd and eviction work per
//!   4 KiB page.
//! - The handler reads an application page only while it is write-protected (no writer
//!   can change it during the copy), or after moving it to a staging page, which nothing
//!   but the handler can reach; it discards a page only after its content is saved in the
//!   store, so any later access faults and gets it back: application references into the
//!   range observe the same bytes before and after an eviction.

use crate::page::{PAGE_SIZE, Page};
use std::io;
use std::ptr::NonNull;

/// Staging pages after the application's: evictions between two discards of them.
pub const STAGING_PAGES: usize = 64;

pub struct Mapping {
    base: NonNull<u8>,
    /// The application's bytes; the staging pages follow them.
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; sharing its address between
// threads is what the region does by design, under the module's invariants.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only exposes the address and length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Reserves `pages` pages of anonymous memory and the staging pages after them (no
    /// swap reservation, no THP).
    pub fn reserve(pages: usize) -> io::Result<Mapping> {
        let len = pages
            .checked_mul(PAGE_SIZE)
            .filter(|&len| len > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "region size"))?;
        let total = len
            .checked_add(STAGING_PAGES * PAGE_SIZE)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "region size"))?;
        // SAFETY: a fresh anonymous private mapping at an address of the kernel's choice;
        // it aliases nothing, and failure is checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mapping = Mapping {
            base: NonNull::new(base.cast()).expect("mmap does not return null on success"),
            len,
        };
        // SAFETY: the range is exactly the mapping just created; NOHUGEPAGE changes no
        // content.
        if unsafe { libc::madvise(base, total, libc::MADV_NOHUGEPAGE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(mapping)
    }

    pub fn base(&self) -> usize {
        self.base.as_ptr() as usize
    }

    /// The application's bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The application's bytes and the staging pages: what is registered.
    pub fn registered_len(&self) -> usize {
        self.len + STAGING_PAGES * PAGE_SIZE
    }

    /// The application's bytes, shared.
    ///
    /// # Safety
    /// The range must be registered with a running fault handler, so that discarded pages
    /// read back as they were.
    pub unsafe fn slice(&self) -> &[u8] {
        // SAFETY: `len` readable bytes while the mapping lives (the borrow of `self`); the
        // only `&mut` into them comes from `slice_mut(&mut self)`, which this shared borrow
        // excludes; the handler keeps their contents stable (caller's contract).
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.len) }
    }

    /// The application's bytes, exclusively.
    ///
    /// # Safety
    /// As for [`Mapping::slice`].
    pub unsafe fn slice_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `slice`; `&mut self` makes this the only reference into the
        // range for its lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.len) }
    }

    /// The handler's view of the pages.
    pub fn pages(&self) -> Pages {
        Pages {
            base: self.base(),
            count: self.len / PAGE_SIZE,
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the range reserved; nothing refers to it any more
        // (the region's slices borrow the region, and the handler has stopped).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.registered_len()) };
    }
}

/// Raw access to the region's pages for the fault handler.
#[derive(Clone, Copy, Debug)]
pub struct Pages {
    base: usize,
    count: usize,
}

impl Pages {
    /// The application's pages.
    pub fn count(&self) -> usize {
        self.count
    }

    pub fn address(&self, index: usize) -> usize {
        debug_assert!(index < self.count);
        self.base + index * PAGE_SIZE
    }

    /// The address of staging page `slot`.
    pub fn staging(&self, slot: usize) -> usize {
        assert!(slot < STAGING_PAGES);
        self.base + (self.count + slot) * PAGE_SIZE
    }

    /// A staging page that holds a page moved out of the region.
    ///
    /// # Safety
    /// The staging page must be present (a page was moved there since the last
    /// [`Pages::discard_staging`]), and the reference must be dropped before the next
    /// discard. Nothing but the handler knows the staging addresses, so nothing else
    /// reads or writes them meanwhile.
    pub unsafe fn staged(&self, slot: usize) -> &Page {
        let address = self.staging(slot);
        // SAFETY: a page-aligned, present page of the live mapping (caller's contract),
        // so a valid, aligned `Page`; nothing writes it while the reference lives.
        unsafe { &*(address as *const Page) }
    }

    /// Drops every staging page's memory.
    pub fn discard_staging(&self) -> io::Result<()> {
        // SAFETY: the staging pages are in bounds of the live mapping, hold nothing the
        // application can reach, and no reference into them lives across this call
        // (`staged`'s contract).
        let result = unsafe {
            libc::madvise(
                self.staging(0) as *mut libc::c_void,
                STAGING_PAGES * PAGE_SIZE,
                libc::MADV_DONTNEED,
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The page index of a faulting address, if it is inside the region.
    pub fn index_of(&self, address: u64) -> Option<usize> {
        let offset = (address as usize).checked_sub(self.base)?;
        (offset < self.count * PAGE_SIZE).then_some(offset / PAGE_SIZE)
    }

    /// Drops a page's memory (MADV_DONTNEED); the next access faults.
    ///
    /// # Safety
    /// The page's content must be saved where the fault handler restores it from, and the
    /// range must be registered for missing faults; otherwise the application would read
    /// zeros where its data was.
    pub unsafe fn discard(&self, index: usize) -> io::Result<()> {
        assert!(index < self.count);
        // SAFETY: one page in bounds of the live mapping; its content is restorable by the
        // caller's contract.
        let result = unsafe {
            libc::madvise(
                self.address(index) as *mut libc::c_void,
                PAGE_SIZE,
                libc::MADV_DONTNEED,
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
