//! The region's memory: one anonymous private mapping, and the raw page operations the
//! fault handler needs on it.
//!
//! Invariants:
//! - The mapping lives from `reserve` until `Mapping` is dropped, which the region does
//!   only after its handler thread has stopped; `Pages` (the handler's view) never
//!   outlives it.
//! - Transparent huge pages are disabled on the range: userfaultfd and eviction work per
//!   4 KiB page.
//! - The handler reads a page only while it is write-protected (no writer can change it
//!   during the copy) and discards a page only after its content is saved in the store,
//!   so any later access faults and gets it back: application references into the range
//!   observe the same bytes before and after an eviction.

use crate::page::{PAGE_SIZE, Page};
use std::io;
use std::ptr::NonNull;

pub struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; sharing its address between
// threads is what the region does by design, under the module's invariants.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only exposes the address and length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Reserves `pages` pages of anonymous memory (no swap reservation, no THP).
    pub fn reserve(pages: usize) -> io::Result<Mapping> {
        let len = pages
            .checked_mul(PAGE_SIZE)
            .filter(|&len| len > 0)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "region size"))?;
        // SAFETY: a fresh anonymous private mapping at an address of the kernel's choice;
        // it aliases nothing, and failure is checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
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
        if unsafe { libc::madvise(base, len, libc::MADV_NOHUGEPAGE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(mapping)
    }

    pub fn base(&self) -> usize {
        self.base.as_ptr() as usize
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The whole range as bytes.
    ///
    /// # Safety
    /// The caller must hold the only reference into the range for `'a` (the region hands
    /// it out through `&mut self`), and the range must be registered with a running
    /// fault handler so that discarded pages read back as they were.
    pub unsafe fn slice_mut<'a>(&self) -> &'a mut [u8] {
        // SAFETY: the mapping is `len` readable, writable bytes while it lives; the caller
        // guarantees exclusivity and the handler keeps contents stable.
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
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Raw access to the region's pages for the fault handler.
#[derive(Clone, Copy, Debug)]
pub struct Pages {
    base: usize,
    count: usize,
}

impl Pages {
    pub fn address(&self, index: usize) -> usize {
        debug_assert!(index < self.count);
        self.base + index * PAGE_SIZE
    }

    /// The page index of a faulting address, if it is inside the region.
    pub fn index_of(&self, address: u64) -> Option<usize> {
        let offset = (address as usize).checked_sub(self.base)?;
        (offset < self.count * PAGE_SIZE).then_some(offset / PAGE_SIZE)
    }

    /// Copies a present page out.
    ///
    /// # Safety
    /// The page must be present (a missing page would fault on the handler thread itself,
    /// which nobody would serve) and write-protected, so no writer changes it while it is
    /// copied.
    pub unsafe fn copy_out(&self, index: usize, out: &mut Page) {
        assert!(index < self.count);
        // SAFETY: in bounds of the live mapping (asserted); present and stable by the
        // caller's contract; `out` is a distinct 4 KiB buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.address(index) as *const u8,
                out.bytes_mut().as_mut_ptr(),
                PAGE_SIZE,
            )
        };
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
