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

mod handler;
mod kernel;
mod mapping;
#[cfg(test)]
mod model;
mod uffd;

pub use uffd::Access;

use crate::classify::model::Profile;
use crate::page::PAGE_SIZE;
use crate::store::{PageStore, Stats, StoreBuilder};
use crate::sync::{Arc, AtomicU64, Ordering, RwLock};
use handler::{Handler, fatal};
use kernel::{Fault, Uffd};
use mapping::Mapping;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use uffd::{Message, Userfaultfd};

/// Why a region could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegionError {
    #[error(
        "userfaultfd is not available here ({0}): a Region needs Linux with userfaultfd (and write-protect support for anonymous memory)"
    )]
    /// No usable userfaultfd (or no `UFFDIO_MOVE`): what the kernel said.
    Unavailable(io::Error),
    /// The region's memory (or its bookkeeping) could not be reserved.
    #[error("cannot reserve {bytes} bytes for the region: {source}")]
    Reserve {
        /// The region's size.
        bytes: usize,
        /// Why.
        source: io::Error,
    },
    /// A region of zero bytes.
    #[error("a region needs at least one page of memory")]
    Empty,
    #[error(
        "resident_pages({resident}) is below the minimum of {min}: one instruction can touch several pages at once, and the handler needs room to evict around them"
    )]
    /// `resident_pages` below [`MIN_RESIDENT_PAGES`].
    Budget {
        /// The budget asked for.
        resident: usize,
        /// [`MIN_RESIDENT_PAGES`].
        min: usize,
    },
    /// More pages than a region can index.
    #[error("a region of {bytes} bytes is too large: at most {max} pages")]
    TooLarge {
        /// The size asked for.
        bytes: usize,
        /// The most pages a region holds.
        max: u64,
    },
    /// The handler's stop pipe or thread could not be made.
    #[error("cannot set up the region's {what}: {source}")]
    Setup {
        /// Which.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
}

/// The fewest resident pages a region accepts: the last four pages faulted in are never
/// evicted (one instruction can need four), and the hand needs others to choose from.
pub const MIN_RESIDENT_PAGES: usize = 8;

/// Pages faulted in last that eviction skips: one x86 instruction touches at most four
/// data pages (a string move whose source and destination both cross a page boundary).
const RECENT_FAULTS: usize = 4;

/// Fault and eviction counters, and the store's statistics. Each is read on its own while
/// the handler may be working, so they agree exactly only once it is idle. After serving
/// a fault the handler evicts ahead, off the faulting thread's path, until a slot is free:
/// an idle region holds at most `resident_pages - 1` pages.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RegionStats {
    /// The region's size in pages.
    pub pages: u64,
    /// Pages in RAM now (published after every fault and eviction).
    pub resident: u64,
    /// The most pages ever in RAM at once.
    pub resident_max: u64,
    /// First touches served with a zero page.
    pub zero_faults: u64,
    /// Touches of evicted pages (served from the store).
    pub refaults: u64,
    /// Writes to write-protected pages (the CLOCK's reference information).
    pub wp_faults: u64,
    /// Pages dropped from RAM (their content in the store).
    pub evictions: u64,
    /// Evictions skipped because the store refused the page (its memory limit).
    pub evictions_refused: u64,
    /// Evictions skipped because the page was pinned for I/O (see the module docs).
    pub evictions_busy: u64,
    /// The statistics of the store holding the evicted pages.
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
    /// Why the handler stopped, once it has: the region is poisoned.
    poisoned: RwLock<Option<String>>,
}

/// Configures a [`Region`].
#[derive(Clone, Debug)]
pub struct RegionBuilder {
    bytes: usize,
    resident: usize,
    store: StoreBuilder,
}

impl RegionBuilder {
    /// Pages kept in RAM at most (default: a quarter of the region, at least
    /// [`MIN_RESIDENT_PAGES`]; a budget above the region's size is the region's size).
    /// Pages pinned for I/O stay resident beyond it while pinned.
    pub fn resident_pages(mut self, pages: usize) -> Self {
        self.resident = pages;
        self
    }

    /// The store evicted pages go to, configured as any store (memory limit, model or
    /// profile, shards); default: the fast profile, four shards. Its hot tier is not
    /// used (the resident pages are the region's hot tier). At the store's memory limit
    /// the hand keeps pages resident (`evictions_refused`), beyond the budget if need be;
    /// its [`OnFull`](crate::OnFull) policy is always `Refuse`, since the store holds the
    /// only copy of an evicted page.
    pub fn store(mut self, store: StoreBuilder) -> Self {
        self.store = store;
        self
    }

    /// Reserves the region and starts its fault handler.
    ///
    /// # Errors
    /// [`RegionError::Unavailable`] where userfaultfd cannot be used (no kernel support,
    /// no permission); [`RegionError::Empty`], [`RegionError::TooLarge`] or
    /// [`RegionError::Budget`] for sizes it cannot serve; the other variants for a
    /// mapping or thread the system refused.
    ///
    /// # Examples
    /// See [`Region`].
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
            // Evicted pages live only in the store: it must never drop one (a full store
            // refuses, and the hand keeps the page resident).
            store: self
                .store
                .hot_budget(0)
                .on_full(crate::OnFull::Refuse)
                .build(),
            counters: Counters::default(),
            poisoned: RwLock::new(None),
        });
        let uffd = Arc::new(uffd);
        let kernel = Uffd::new(uffd.clone(), mapping.pages());
        let handler = Handler::new(kernel, budget, RECENT_FAULTS, state, clock, shared.clone());
        let thread = std::thread::Builder::new()
            .name("zpage-region".into())
            .spawn(move || run_handler(handler, OwnedFd::from(stop_reader)))
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

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("bytes", &self.len())
            .field("access", &self.access())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Memory that compresses itself; see the module docs.
///
/// ```
/// use zpage::region::{Region, RegionError};
/// use zpage::{PAGE_SIZE, PageStore};
///
/// let built = Region::builder(64 * PAGE_SIZE)
///     .resident_pages(16)
///     .store(PageStore::builder().mem_limit(1 << 20))
///     .build();
/// let mut region = match built {
///     Ok(region) => region,
///     // No userfaultfd here (or no UFFDIO_MOVE): nothing to show.
///     Err(RegionError::Unavailable(_)) => return,
///     Err(e) => panic!("{e}"),
/// };
/// let memory = region.as_mut_slice();
/// for (i, page) in memory.chunks_exact_mut(PAGE_SIZE).enumerate() {
///     page[..8].copy_from_slice(&(i as u64).to_le_bytes()); // most pages get evicted
/// }
/// for (i, page) in region.as_slice().chunks_exact(PAGE_SIZE).enumerate() {
///     assert_eq!(page[..8], (i as u64).to_le_bytes()); // and come back when touched
/// }
/// assert!(region.stats().evictions > 0);
/// ```
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
            store: PageStore::builder().profile(Profile::Fast).shards(4),
        }
    }

    /// The region's size in bytes (whole pages).
    pub fn len(&self) -> usize {
        self.mapping.len()
    }

    /// Never: a region holds at least one page.
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

    /// Why the region is poisoned, if it is: its fault handler hit an error it cannot
    /// serve around (the kernel refused an operation, a saved page failed its
    /// checksum). From then on every page that was not resident is poisoned: touching it
    /// raises SIGBUS (as a memory error would) and a system call given it fails with
    /// EFAULT; resident pages keep their content and stay usable. Nothing waits forever
    /// and nothing reads wrong data; the process is not aborted. The reason is also
    /// written to stderr once, when the handler stops, since an access to a poisoned page
    /// usually ends the process before anyone asks.
    pub fn poisoned(&self) -> Option<String> {
        self.shared.poisoned.read().clone()
    }

    /// The fault, eviction and store counters (see [`RegionStats`] on their agreement).
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

/// The handler thread: serves faults until `stop` fires. If serving fails, the region is
/// poisoned (see [`Region::poisoned`]; the reason also goes to stderr, one line) and the
/// thread waits for `stop`, so that the
/// region's `Drop` finds it as always. Only if the kernel refuses the poisoning too does
/// the process stop, with the reason: waiting threads would otherwise hang.
fn run_handler(mut handler: Handler<Uffd>, stop: OwnedFd) {
    let served =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(&mut handler, &stop)));
    let reason = match served {
        Ok(()) => return,
        Err(payload) => match payload.downcast::<handler::Fatal>() {
            Ok(fatal) => fatal.0,
            // A bug in the handler itself: poison, and tell.
            Err(payload) => payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the fault handler panicked".into()),
        },
    };
    // Said once on stderr (past any test harness's capture), since the access that
    // finds a poisoned page ends the process with SIGBUS before it can ask `poisoned`.
    let _ = writeln!(
        io::stderr(),
        "zpage region: fault handler stopped ({reason}); pages not resident are poisoned"
    );
    *handler.shared().poisoned.write() = Some(reason.clone());
    if let Err(e) = handler.kernel.poison_all() {
        let _ = writeln!(
            io::stderr(),
            "zpage region: the region cannot be poisoned either ({e}); aborting"
        );
        std::process::abort();
    }
    let _ = Userfaultfd::wait_for_stop(&stop);
}

/// Reads fault messages and serves them until `stop` fires.
fn serve(handler: &mut Handler<Uffd>, stop: &OwnedFd) {
    let uffd = handler.kernel.uffd.clone();
    let pages = handler.kernel.pages;
    let mut messages = [Message::default(); 16];
    let handle = |handler: &mut Handler<Uffd>, messages: &[Message]| {
        for message in messages {
            if message.event != uffd::EVENT_PAGEFAULT {
                continue;
            }
            if let Some(index) = pages.index_of(message.address) {
                handler.fault(Fault {
                    index,
                    write: message.flags & uffd::PAGEFAULT_FLAG_WRITE != 0,
                    wp: message.flags & uffd::PAGEFAULT_FLAG_WP != 0,
                });
            }
        }
    };
    let mut last_fault = std::time::Instant::now();
    loop {
        // Faults come in bursts: polling the fd for a moment after one is cheaper than
        // the wakeup a blocking wait costs the next faulting thread.
        if last_fault.elapsed() > SPIN {
            match uffd.wait(stop) {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => fatal(&format!("waiting for faults: {e}")),
            }
        }
        let n = match uffd.read(&mut messages) {
            Ok(n) => n,
            Err(e) => fatal(&format!("reading fault messages: {e}")),
        };
        if n == 0 {
            std::hint::spin_loop();
            continue;
        }
        handle(handler, &messages[..n]);
        // Room for the next fault is made after the waiters are woken, off their path;
        // faults that arrive meanwhile go first (a pending write fault is reference
        // information the hand must see).
        while handler.over_budget() {
            match uffd.read(&mut messages) {
                Ok(0) => {}
                Ok(n) => {
                    handle(handler, &messages[..n]);
                    continue;
                }
                Err(e) => fatal(&format!("reading fault messages: {e}")),
            }
            if !handler.evict_one() {
                break;
            }
        }
        last_fault = std::time::Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A kernel refusal in the handler poisons the region instead of aborting: the
    /// access that needed the page fails cleanly (a system call gets EFAULT; a CPU
    /// access would get SIGBUS), the reason is reported, resident pages keep their
    /// content, and the region drops as usual.
    /// Held by the tests that inject a failure into the one real kernel (the switches are
    /// global: a region of another test would take the failure).
    static INJECTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// A region of 64 pages, 8 resident, with kernel-side faults handled; `None` (the
    /// test is skipped) where userfaultfd cannot do that here.
    fn small_region() -> Option<Region> {
        let region = match Region::builder(64 * PAGE_SIZE).resident_pages(8).build() {
            Ok(region) => region,
            Err(RegionError::Unavailable(e)) => {
                eprintln!("skipped: no userfaultfd here ({e})");
                return None;
            }
            Err(e) => panic!("{e}"),
        };
        if region.access() != Access::Full {
            eprintln!("skipped: kernel-side faults are not handled here");
            return None;
        }
        Some(region)
    }

    /// A staging slot found occupied (as the kernel has once reported) is dropped with
    /// the others and the move tried again: eviction goes on and no page is lost.
    #[test]
    fn an_occupied_staging_slot_is_dropped_and_the_move_retried() {
        let _one = INJECTING.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut region) = small_region() else {
            return;
        };
        let fill = |memory: &mut [u8], round: u64| {
            for (i, page) in memory.chunks_exact_mut(PAGE_SIZE).enumerate() {
                page[..8].copy_from_slice(&(i as u64 * 1000 + round).to_le_bytes());
            }
        };
        fill(region.as_mut_slice(), 1);
        kernel::FORGET_NEXT_STAGED.store(true, std::sync::atomic::Ordering::Relaxed);
        for round in 2..5 {
            fill(region.as_mut_slice(), round);
        }
        assert!(!kernel::FORGET_NEXT_STAGED.load(std::sync::atomic::Ordering::Relaxed));
        assert_eq!(region.poisoned(), None);
        for (i, page) in region.as_mut_slice().chunks_exact(PAGE_SIZE).enumerate() {
            assert_eq!(page[..8], (i as u64 * 1000 + 4).to_le_bytes(), "page {i}");
        }
        assert!(region.stats().evictions > 3 * 56, "{:?}", region.stats());
    }

    #[test]
    fn a_refused_fault_poisons_the_region() {
        let _one = INJECTING.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut region) = small_region() else {
            return;
        };
        let memory = region.as_mut_slice();
        for (i, page) in memory.chunks_exact_mut(PAGE_SIZE).enumerate() {
            page[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            page[100] = 1;
        }
        assert!(region.stats().evictions > 0, "early pages were evicted");
        assert_eq!(region.poisoned(), None);
        kernel::FAIL_NEXT_COPY.store(true, std::sync::atomic::Ordering::Relaxed);
        // The kernel writes into evicted page 0 on our behalf; restoring it fails.
        let page0 = &mut region.as_mut_slice()[..PAGE_SIZE];
        let error = std::fs::File::open("/dev/zero")
            .unwrap()
            .read(page0)
            .expect_err("the page cannot be restored");
        assert_eq!(error.raw_os_error(), Some(libc::EFAULT), "{error}");
        let reason = region.poisoned().expect("the region is poisoned");
        assert!(reason.contains("copy"), "{reason}");
        // The last page written is resident: still readable and writable.
        let last = &mut region.as_mut_slice()[63 * PAGE_SIZE..];
        assert_eq!(last[..8], 64u64.to_le_bytes());
        last[9] = 3;
        assert_eq!(last[9], 3);
    }
}
