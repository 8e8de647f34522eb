//! The kernel operations the fault handler needs, as a trait, and their userfaultfd
//! implementation over the region's mapping.
//!
//! Each operation is atomic with respect to the application's accesses; *between* two of
//! them an application thread may run (a woken thread, or any other one), which is what
//! the handler's state machine must be correct under and what the model checks.
//!
//! Invariants of [`Uffd`]: pages are addressed by index inside the region; eviction
//! stages moved-out pages in the staging slots after the application's pages, filled in
//! order and all dropped at once when they run out, and [`Kernel::staged`] only ever
//! names the slot filled last, so it never reads a missing page.

use super::mapping::{Pages, STAGING_PAGES};
use super::uffd::Userfaultfd;
use crate::page::Page;
use crate::sync::Arc;
use std::io;

/// A page fault, decoded: which page, and whether a write or a write-protect fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub index: usize,
    pub write: bool,
    pub wp: bool,
}

/// What the handler can ask of the kernel, on pages of the region by index.
pub trait Kernel {
    /// Maps a copy of `page` at the missing page `index` (write-protected, atomically, if
    /// `protected`) and wakes the threads waiting on it.
    fn copy(&mut self, index: usize, page: &Page, protected: bool) -> io::Result<()>;
    /// Maps the shared zero page at the missing page `index`, writable until protected,
    /// and wakes the threads waiting on it.
    fn zeropage(&mut self, index: usize) -> io::Result<()>;
    /// Write-protects a present page.
    fn protect(&mut self, index: usize) -> io::Result<()>;
    /// Lifts write protection and wakes the writers waiting on it.
    fn unprotect(&mut self, index: usize) -> io::Result<()>;
    /// Wakes the threads waiting on a fault at `index` (they retry the access).
    fn wake(&mut self, index: usize) -> io::Result<()>;
    /// Moves the present page `index` out of the application's reach into a staging page;
    /// `Ok(false)` if the kernel refuses because the page is pinned for I/O.
    fn move_out(&mut self, index: usize) -> io::Result<bool>;
    /// The page moved out last.
    fn staged(&self) -> &Page;
    /// Moves the page moved out last back to `index` (missing since), mapped writable.
    fn move_back(&mut self, index: usize) -> io::Result<()>;
    /// Drops page `index`'s memory; the next access faults. The caller holds its exact
    /// content in the store.
    fn discard(&mut self, index: usize) -> io::Result<()>;
}

/// The real kernel: a userfaultfd registered over the region's mapping.
pub struct Uffd {
    pub uffd: Arc<Userfaultfd>,
    pub pages: Pages,
    /// Staging slots filled since they were last dropped.
    staged: usize,
}

impl Uffd {
    pub fn new(uffd: Arc<Userfaultfd>, pages: Pages) -> Uffd {
        Uffd {
            uffd,
            pages,
            staged: 0,
        }
    }

    /// Drops every staging slot's page; the next move fills slot 0. Only between
    /// evictions: every page staged so far is stored or moved back.
    fn drop_staging(&mut self) -> io::Result<()> {
        self.pages.discard_staging()?;
        self.staged = 0;
        Ok(())
    }

    /// Makes the region safe to use without a handler: every missing page is poisoned
    /// (an access raises SIGBUS, a system call on it fails with EFAULT) and every present
    /// one unprotected, waking whoever waits on either, so no access ever waits for a
    /// handler again or reads a page that is not its content. Whatever state the handler
    /// left a page in, one of the two applies. The first page neither can be done to is
    /// the error.
    pub fn poison_all(&self) -> io::Result<()> {
        for index in 0..self.pages.count() {
            let address = self.pages.address(index);
            match self.uffd.poison(address) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => self.uffd.unprotect(address)?,
                result => result?,
            }
        }
        Ok(())
    }
}

/// Makes the next `Uffd::copy` fail, as a kernel refusing it would (tests only).
#[cfg(test)]
pub static FAIL_NEXT_COPY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Makes the next successful `Uffd::move_out` leave its slot uncounted, so that the move
/// after it finds its slot occupied (tests only).
#[cfg(test)]
pub static FORGET_NEXT_STAGED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

impl Kernel for Uffd {
    fn copy(&mut self, index: usize, page: &Page, protected: bool) -> io::Result<()> {
        #[cfg(test)]
        if FAIL_NEXT_COPY.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.uffd
            .copy(self.pages.address(index), page.bytes(), protected)
    }

    fn zeropage(&mut self, index: usize) -> io::Result<()> {
        self.uffd.zeropage(self.pages.address(index))
    }

    fn protect(&mut self, index: usize) -> io::Result<()> {
        self.uffd.protect(self.pages.address(index))
    }

    fn unprotect(&mut self, index: usize) -> io::Result<()> {
        self.uffd.unprotect(self.pages.address(index))
    }

    fn wake(&mut self, index: usize) -> io::Result<()> {
        self.uffd.wake(self.pages.address(index))
    }

    fn move_out(&mut self, index: usize) -> io::Result<bool> {
        if self.staged == STAGING_PAGES {
            self.drop_staging()?;
        }
        let (src, dst) = (self.pages.address(index), self.pages.staging(self.staged));
        let moved = match self.uffd.move_page(src, dst) {
            // The slot is not empty, though every move into one is counted (seen twice
            // in some hundred runs of the region's tests, cause not found). Every page
            // staged before this move is stored or moved back already, so the slots hold
            // nothing needed: they are dropped and the move tried once more (a refused
            // move moved nothing).
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.drop_staging()?;
                self.uffd.move_page(src, self.pages.staging(0))?
            }
            result => result?,
        };
        #[cfg(test)]
        if moved && FORGET_NEXT_STAGED.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return Ok(moved);
        }
        self.staged += usize::from(moved);
        Ok(moved)
    }

    fn staged(&self) -> &Page {
        assert!(self.staged > 0, "no page was moved out");
        // SAFETY: slot `staged - 1` was filled by the last successful move and is dropped
        // only by a later `move_out` (`&mut self`), which this borrow of `self` excludes
        // while the page is in use.
        unsafe { self.pages.staged(self.staged - 1) }
    }

    fn move_back(&mut self, index: usize) -> io::Result<()> {
        assert!(self.staged > 0, "no page was moved out");
        let slot = self.staged - 1;
        match self
            .uffd
            .move_page(self.pages.staging(slot), self.pages.address(index))?
        {
            true => {
                self.staged = slot;
                Ok(())
            }
            // Nothing but the handler knows a staging page, so nothing can pin it.
            false => Err(io::Error::other("staging page busy")),
        }
    }

    fn discard(&mut self, index: usize) -> io::Result<()> {
        // SAFETY: the caller holds the page's exact content in the store, from which the
        // fault path restores it; the range is registered for missing faults.
        unsafe { self.pages.discard(index) }
    }
}
