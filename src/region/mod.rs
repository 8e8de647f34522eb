//! `Region`: ordinary memory that compresses itself. At most `resident` of its pages stay
//! in RAM; the rest live compressed in a `PageStore` and come back, through userfaultfd,
//! when touched. The application calls nothing on the access path.
//!
//! # How it works
//! One handler thread owns all of the region's paging state. Every page enters RAM through
//! it: a first touch is served with the zero page (a read) or a zeroed copy (a write), a
//! touch of an evicted page with the decoded page (`UFFDIO_COPY`). When RAM holds
//! `resident` pages, the handler evicts one by CLOCK, with write faults as the reference
//! bit:
//! - a page brought in by a write is *referenced* and writable; one brought in by a read
//!   is mapped write-protected and unreferenced, and keeps its compressed copy;
//! - a write to a write-protected page faults: the handler sets the page's bit, drops its
//!   now stale compressed copy and lifts the protection;
//! - the hand clears a referenced page's bit and write-protects it;
//! - the hand evicts an unreferenced page. It is write-protected, so its bytes cannot
//!   change through its mapping: if it still has its compressed copy it is simply dropped
//!   (`MADV_DONTNEED`, no compression at all); otherwise the handler first *moves* it out
//!   of the region (`UFFDIO_MOVE` to a staging page only the handler knows), compresses
//!   it there, and drops the staging pages in batches.
//! - the four pages faulted in last are never evicted: one instruction can need that many
//!   at once (a string move whose source and destination both cross a page boundary), and
//!   evicting one of them would make it fault again forever.
//!
//! So pages written since the hand last passed get a second chance and read-only pages
//! (scans) go first, cheaply. Reads do not fault, so a page that is only read is evicted
//! after one pass; its refault costs a decode, not a compression.
//!
//! # Why references into the region stay valid
//! A page's bytes are never absent when the application looks: eviction copies a page
//! while writes to it are blocked, saves the copy, and only then drops the memory; any
//! later access (read or write, from any thread) faults, and the handler maps the saved
//! bytes back before the access completes. So `&mut [u8]` from [`Region::as_mut_slice`]
//! behaves like ordinary memory across evictions.
//!
//! # Zero pages
//! A page read while it holds only zeros is mapped to the kernel's shared zero page and
//! then write-protected: two operations, and a write between them (from any thread)
//! replaces the zero page by a private copy that the handler never hears of. So such a
//! page never counts as having an exact stored copy: its eviction moves and compresses
//! whatever it holds (a zero page costs the store only metadata).
//!
//! # Pinned I/O
//! A page the kernel has pinned for a transfer (`O_DIRECT` reads and writes, io_uring
//! fixed buffers, vmsplice, RDMA) is written or read by the device, not through the page
//! tables, so write protection does not stop a transfer into it. Eviction never takes
//! such a page: `UFFDIO_MOVE` refuses a pinned page (the kernel rechecks the pin after
//! unmapping it and puts it back), and the page stays resident, counted in
//! `evictions_busy`, until the transfer ends. A page with an exact stored copy is dropped
//! without a move: a pin on it can only be a reader's (a writer must first take a
//! write-protect fault, which clears the copy), and a reader keeps the frame it pinned.
//! While pins last the region may hold more than `resident_pages` pages. This needs
//! Linux 6.8 (`UFFDIO_MOVE`); on 6.8 and 6.9, whose `UFFDIO_MOVE` cannot move the shared
//! zero page, a page read as zeros stays resident until it is written.
//!
//! # What the application must not do
//! `mremap`, `munmap`, `mprotect` or its own `madvise` on the range; `fork` while the
//! region lives (the child's copy is not served); with [`Access::UserModeOnly`], hand an
//! evicted page to a system call (e.g. `write(2)` from it), which then fails with EFAULT
//! instead of faulting the page in: touch the buffer first.
//!
//! Invariants: the handler thread is the only writer of paging state; the mapping outlives
//! the handler (joined in `Drop` before the mapping is unmapped); an evicted page is in
//! the store; a resident page is in the store only while it was mapped by an atomic
//! write-protected copy of its stored bytes and has not been written since (its stored
//! copy is exact); an unreferenced resident page is always write-protected; a page is
//! read for compression only once it is out of the application's reach (moved).

mod mapping;
mod uffd;

pub use uffd::Access;

use crate::model::Profile;
use crate::page::{PAGE_SIZE, Page};
use crate::store::{PageStore, Stats};
use crate::sync::{Arc, AtomicU64, Ordering};
use mapping::{Mapping, Pages, STAGING_PAGES};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use uffd::{Message, Userfaultfd};

/// Why a region could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error(
        "userfaultfd is not available here ({0}): a Region needs Linux with userfaultfd (and write-protect support for anonymous memory)"
    )]
    Unavailable(io::Error),
    #[error("cannot reserve {bytes} bytes for the region: {source}")]
    Reserve { bytes: usize, source: io::Error },
    #[error("a region needs at least one page of memory")]
    Empty,
    #[error(
        "resident_pages({resident}) is below the minimum of {min}: one instruction can touch several pages at once, and the handler needs room to evict around them"
    )]
    Budget { resident: usize, min: usize },
    #[error("a region of {bytes} bytes is too large: at most {max} pages")]
    TooLarge { bytes: usize, max: u64 },
    #[error("cannot set up the region's {what}: {source}")]
    Setup {
        what: &'static str,
        source: io::Error,
    },
}

/// The fewest resident pages a region accepts: the last [`RECENT_FAULTS`] pages faulted
/// in are never evicted, and the hand needs others to choose from.
pub const MIN_RESIDENT_PAGES: usize = 8;

/// Pages faulted in last that eviction skips: one x86 instruction touches at most four
/// data pages (a string move whose source and destination both cross a page boundary).
const RECENT_FAULTS: usize = 4;

/// Fault and eviction counters, and the store's statistics. Each is read on its own while
/// the handler may be working, so they agree exactly only once it is idle. After serving
/// a fault the handler evicts ahead, off the faulting thread's path, until a slot is free:
/// an idle region holds at most `resident_pages - 1` pages.
#[derive(Clone, Debug)]
pub struct RegionStats {
    pub pages: u64,
    /// Pages in RAM now (published after every fault and eviction).
    pub resident: u64,
    pub resident_max: u64,
    /// First touches served with a zero page.
    pub zero_faults: u64,
    /// Touches of evicted pages (served from the store).
    pub refaults: u64,
    /// Writes to write-protected pages (the CLOCK's reference information).
    pub wp_faults: u64,
    pub evictions: u64,
    /// Evictions skipped because the store refused the page (its memory limit).
    pub evictions_refused: u64,
    /// Evictions skipped because the page was pinned for I/O (see the module docs).
    pub evictions_busy: u64,
    pub store: Stats,
}

#[derive(Default)]
struct Counters {
    resident: AtomicU64,
    resident_max: AtomicU64,
    zero_faults: AtomicU64,
    refaults: AtomicU64,
    wp_faults: AtomicU64,
    evictions: AtomicU64,
    evictions_refused: AtomicU64,
    evictions_busy: AtomicU64,
}

struct Shared {
    store: PageStore,
    counters: Counters,
}

/// Configures a [`Region`].
pub struct RegionBuilder {
    bytes: usize,
    resident: usize,
    profile: Profile,
}

impl RegionBuilder {
    /// Pages kept in RAM at most (default: a quarter of the region, at least
    /// [`MIN_RESIDENT_PAGES`]; a budget above the region's size is the region's size).
    /// Pages pinned for I/O stay resident beyond it while pinned.
    pub fn resident_pages(mut self, pages: usize) -> Self {
        self.resident = pages;
        self
    }

    /// The codec profile of the backing store (default: fast).
    pub fn profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    pub fn build(self) -> Result<Region, RegionError> {
        let pages = self.bytes.div_ceil(PAGE_SIZE);
        if pages == 0 {
            return Err(RegionError::Empty);
        }
        // The clock keeps page indices as u32.
        if pages > u32::MAX as usize {
            return Err(RegionError::TooLarge {
                bytes: self.bytes,
                max: u32::MAX.into(),
            });
        }
        if self.resident < MIN_RESIDENT_PAGES {
            return Err(RegionError::Budget {
                resident: self.resident,
                min: MIN_RESIDENT_PAGES,
            });
        }
        let budget = self.resident.min(pages);
        let reserve = |source| RegionError::Reserve {
            bytes: pages * PAGE_SIZE,
            source,
        };
        let mut state = Vec::new();
        state
            .try_reserve_exact(pages)
            .map_err(|e| reserve(io::Error::new(io::ErrorKind::OutOfMemory, e)))?;
        state.resize(pages, 0);
        let mut clock = VecDeque::new();
        clock
            .try_reserve_exact(budget + 1)
            .map_err(|e| reserve(io::Error::new(io::ErrorKind::OutOfMemory, e)))?;
        let uffd = Userfaultfd::open().map_err(RegionError::Unavailable)?;
        let mapping = Mapping::reserve(pages).map_err(reserve)?;
        uffd.register(mapping.base(), mapping.registered_len())
            .map_err(RegionError::Unavailable)?;
        let (stop_reader, stop_writer) = io::pipe().map_err(|source| RegionError::Setup {
            what: "stop pipe",
            source,
        })?;
        let shared = Arc::new(Shared {
            store: PageStore::builder().profile(self.profile).shards(4).build(),
            counters: Counters::default(),
        });
        let uffd = Arc::new(uffd);
        let handler = Handler {
            uffd: uffd.clone(),
            pages: mapping.pages(),
            budget,
            state,
            clock,
            recent: [u32::MAX; RECENT_FAULTS],
            recent_next: 0,
            staged: 0,
            shared: shared.clone(),
            scratch: Page::boxed(),
            evictions_since_check: 0,
        };
        let thread = std::thread::Builder::new()
            .name("zpage-region".into())
            .spawn(move || handler.run(OwnedFd::from(stop_reader)))
            .map_err(|source| RegionError::Setup {
                what: "fault handler thread",
                source,
            })?;
        Ok(Region {
            mapping,
            uffd,
            stop: Some(stop_writer),
            thread: Some(thread),
            shared,
        })
    }
}

/// Memory that compresses itself; see the module docs.
pub struct Region {
    mapping: Mapping,
    uffd: Arc<Userfaultfd>,
    stop: Option<io::PipeWriter>,
    thread: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Region {
    /// A region of `bytes` (rounded up to whole pages).
    pub fn builder(bytes: usize) -> RegionBuilder {
        RegionBuilder {
            bytes,
            resident: bytes
                .div_ceil(PAGE_SIZE)
                .div_ceil(4)
                .max(MIN_RESIDENT_PAGES),
            profile: Profile::Fast,
        }
    }

    pub fn len(&self) -> usize {
        self.mapping.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mapping.len() == 0
    }

    /// The region as ordinary memory, for as long as `self` is borrowed.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the range is registered with the handler, which runs until `Drop` (see
        // the module docs for why contents stay stable across evictions).
        unsafe { self.mapping.slice_mut() }
    }

    /// The region as ordinary read-only memory, for as long as `self` is borrowed.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: as for `as_mut_slice`.
        unsafe { self.mapping.slice() }
    }

    /// How the userfaultfd was obtained (what kernel-side accesses can do).
    pub fn access(&self) -> Access {
        self.uffd.access
    }

    pub fn stats(&self) -> RegionStats {
        let c = &self.shared.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RegionStats {
            pages: (self.mapping.len() / PAGE_SIZE) as u64,
            resident: load(&c.resident),
            resident_max: load(&c.resident_max),
            zero_faults: load(&c.zero_faults),
            refaults: load(&c.refaults),
            wp_faults: load(&c.wp_faults),
            evictions: load(&c.evictions),
            evictions_refused: load(&c.evictions_refused),
            evictions_busy: load(&c.evictions_busy),
            store: self.shared.store.stats(),
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if let Some(mut stop) = self.stop.take() {
            // The handler stops on the first byte (or on the pipe closing).
            let _ = stop.write_all(&[1]);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = self
            .uffd
            .unregister(self.mapping.base(), self.mapping.registered_len());
    }
}

/// How long the handler keeps polling after a fault before it blocks.
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// Every this many evictions the handler checks the store's garbage (pages faulted back
/// in and then written leave holes) and compacts once it exceeds 1/16 of the live data.
const COMPACT_CHECK_EVICTIONS: u32 = 1024;

/// Paging state bits, one byte per page.
const RESIDENT: u8 = 1;
const REFERENCED: u8 = 2;
const PROTECTED: u8 = 4;
/// The store holds the page's exact content.
const STORED: u8 = 8;

struct Handler {
    uffd: Arc<Userfaultfd>,
    pages: Pages,
    budget: usize,
    state: Vec<u8>,
    /// Resident pages in CLOCK order: the hand is at the front.
    clock: VecDeque<u32>,
    /// The last pages faulted in (a ring), which eviction skips.
    recent: [u32; RECENT_FAULTS],
    recent_next: usize,
    /// Staging pages holding moved-out pages since they were last discarded.
    staged: usize,
    shared: Arc<Shared>,
    scratch: Box<Page>,
    evictions_since_check: u32,
}

impl Handler {
    fn run(mut self, stop: OwnedFd) {
        let mut messages = [Message::default(); 16];
        let mut last_fault = std::time::Instant::now();
        loop {
            // Faults come in bursts: polling the fd for a moment after one is cheaper
            // than the wakeup a blocking wait costs the next faulting thread.
            if last_fault.elapsed() > SPIN {
                match self.uffd.wait(&stop) {
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(e) => fatal(&format!("waiting for faults: {e}")),
                }
            }
            let n = match self.uffd.read(&mut messages) {
                Ok(n) => n,
                Err(e) => fatal(&format!("reading fault messages: {e}")),
            };
            if n == 0 {
                std::hint::spin_loop();
                continue;
            }
            self.handle(&messages[..n]);
            // Room for the next fault is made after the waiters are woken, off their
            // path; faults that arrive meanwhile go first (a pending write fault is
            // reference information the hand must see).
            while self.clock.len() >= self.budget {
                match self.uffd.read(&mut messages) {
                    Ok(0) => {}
                    Ok(n) => {
                        self.handle(&messages[..n]);
                        continue;
                    }
                    Err(e) => fatal(&format!("reading fault messages: {e}")),
                }
                if !self.evict_one() {
                    break;
                }
            }
            last_fault = std::time::Instant::now();
        }
    }

    fn handle(&mut self, messages: &[Message]) {
        for message in messages {
            if message.event == uffd::EVENT_PAGEFAULT {
                self.fault(message);
            }
        }
    }

    fn fault(&mut self, message: &Message) {
        let Some(index) = self.pages.index_of(message.address) else {
            return;
        };
        let address = self.pages.address(index);
        let state = self.state[index];
        if message.flags & uffd::PAGEFAULT_FLAG_WP != 0 {
            if state & RESIDENT == 0 {
                // Evicted while the writer waited: it retries and faults the page in.
                check(self.uffd.wake(address), "wake");
                return;
            }
            self.count(|c| &c.wp_faults);
            if state & STORED != 0 {
                self.shared.store.remove(index as u64);
            }
            self.state[index] = RESIDENT | REFERENCED;
            check(self.uffd.unprotect(address), "unprotect");
            return;
        }
        if state & RESIDENT != 0 {
            // A second thread's fault on a page the first one's already brought in.
            check(self.uffd.wake(address), "wake");
            return;
        }
        while self.clock.len() >= self.budget {
            if !self.evict_one() {
                break;
            }
        }
        let write = message.flags & uffd::PAGEFAULT_FLAG_WRITE != 0;
        let id = index as u64;
        if state & STORED != 0 {
            self.count(|c| &c.refaults);
            if let Err(e) = self.shared.store.read_into(id, &mut self.scratch) {
                fatal(&format!("page {index} cannot be restored: {e}"));
            }
            if write {
                self.shared.store.remove(id);
            }
        } else {
            self.count(|c| &c.zero_faults);
            self.scratch.bytes_mut().fill(0);
        }
        let zero = !write && self.scratch.same_filled_word() == Some(0);
        if zero && state & STORED != 0 {
            // Mapped from the zero page, it cannot keep the exact-copy state (module docs).
            self.shared.store.remove(id);
        }
        self.state[index] = if write {
            RESIDENT | REFERENCED
        } else if zero {
            RESIDENT | PROTECTED
        } else {
            RESIDENT | PROTECTED | (state & STORED)
        };
        self.clock.push_back(index as u32);
        self.recent[self.recent_next] = index as u32;
        self.recent_next = (self.recent_next + 1) % RECENT_FAULTS;
        // Published before the mapping wakes the faulting thread, so what it reads next
        // already counts its page.
        self.publish_resident();
        self.map(address, write, zero);
    }

    /// Publishes the resident count; called wherever the clock gains or loses a page.
    fn publish_resident(&self) {
        let resident = self.clock.len() as u64;
        let c = &self.shared.counters;
        c.resident.store(resident, Ordering::Relaxed);
        c.resident_max.fetch_max(resident, Ordering::Relaxed);
    }

    /// Maps the scratch page at `address`: for a write, a writable copy; for a read, the
    /// shared zero page (no memory until written; `zero`: the scratch page is all zero)
    /// or a copy, write-protected.
    fn map(&self, address: usize, write: bool, zero: bool) {
        if write {
            check(self.uffd.copy(address, self.scratch.bytes(), false), "copy");
        } else if zero {
            check(self.uffd.zeropage(address), "zeropage");
            check(self.uffd.protect(address), "protect");
        } else {
            check(self.uffd.copy(address, self.scratch.bytes(), true), "copy");
        }
    }

    /// Advances the CLOCK hand until one page is evicted; false if none could be.
    fn evict_one(&mut self) -> bool {
        for _ in 0..2 * self.clock.len() + 1 {
            let Some(index) = self.clock.pop_front() else {
                return false;
            };
            let state = self.state[index as usize];
            if self.recent.contains(&index) {
                self.clock.push_back(index);
                continue;
            }
            if state & REFERENCED != 0 {
                self.state[index as usize] = (state & !REFERENCED) | PROTECTED;
                check(
                    self.uffd.protect(self.pages.address(index as usize)),
                    "protect",
                );
                self.clock.push_back(index);
                continue;
            }
            if state & STORED == 0 {
                match self.move_and_store(index as usize) {
                    Stored::Yes => {}
                    Stored::Pinned => {
                        self.count(|c| &c.evictions_busy);
                        self.clock.push_back(index);
                        continue;
                    }
                    Stored::Refused => {
                        self.count(|c| &c.evictions_refused);
                        self.clock.push_back(index);
                        return false;
                    }
                }
            } else {
                // SAFETY: the page's exact content is in the store, from which the fault
                // path restores it; the range is registered for missing faults.
                check(unsafe { self.pages.discard(index as usize) }, "discard");
            }
            self.state[index as usize] = STORED;
            self.count(|c| &c.evictions);
            self.publish_resident();
            self.evictions_since_check += 1;
            if self.evictions_since_check >= COMPACT_CHECK_EVICTIONS {
                self.evictions_since_check = 0;
                let stats = self.shared.store.stats();
                if stats.mem_used_total > stats.compr_data_size + stats.compr_data_size / 16 {
                    self.shared.store.compact();
                }
            }
            return true;
        }
        false
    }

    /// Moves an unreferenced (so write-protected) page out of the region and stores it.
    /// A pinned page is left where it is; a page the store refuses is moved back.
    fn move_and_store(&mut self, index: usize) -> Stored {
        let (address, staging) = (self.pages.address(index), self.pages.staging(self.staged));
        match self.uffd.move_page(address, staging) {
            Ok(true) => {}
            Ok(false) => return Stored::Pinned,
            Err(e) => fatal(&format!("move page {index} out: {e}")),
        }
        // SAFETY: a page was just moved into this staging slot; the reference ends with
        // the insert, before the staging pages are next discarded.
        let page = unsafe { self.pages.staged(self.staged) };
        let result = self.shared.store.insert(index as u64, page);
        if result.is_err() {
            // The region's page is missing meanwhile: an access waits for this handler,
            // which finds the page resident again and wakes it.
            match self.uffd.move_page(staging, address) {
                Ok(true) => {}
                Ok(false) => fatal(&format!("page {index} cannot be moved back: busy")),
                Err(e) => fatal(&format!("page {index} cannot be moved back: {e}")),
            }
            // A moved page is mapped writable: referenced, as after a write fault.
            self.state[index] = RESIDENT | REFERENCED;
            return Stored::Refused;
        }
        self.staged += 1;
        if self.staged == STAGING_PAGES {
            check(self.pages.discard_staging(), "discard staging pages");
            self.staged = 0;
        }
        Stored::Yes
    }

    fn count(&self, counter: impl Fn(&Counters) -> &AtomicU64) {
        counter(&self.shared.counters).fetch_add(1, Ordering::Relaxed);
    }
}

/// What became of a page the hand tried to compress.
enum Stored {
    Yes,
    /// Pinned for I/O: left resident.
    Pinned,
    /// The store refused it (memory limit): left resident.
    Refused,
}

/// The handler cannot continue (the kernel refused an operation on our own registered
/// range, or a saved page is corrupt): threads waiting on faults would hang or read wrong
/// data, so the process stops with the reason.
fn fatal(reason: &str) -> ! {
    eprintln!("zpage region: fault handler cannot continue: {reason}");
    std::process::abort()
}

fn check(result: io::Result<()>, what: &str) {
    if let Err(e) = result {
        fatal(&format!("{what}: {e}"));
    }
}
