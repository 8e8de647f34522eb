//! The region's paging state machine: what the fault handler does on a fault and on an
//! eviction, written against the [`Kernel`] operations so that the same code runs on
//! userfaultfd ([`super::kernel::Uffd`]) and, in the tests, on a model of the kernel that
//! interleaves application accesses between every operation ([`super::model`]).
//!
//! Per page, one state byte: `RESIDENT` (mapped), `REFERENCED` (written since the hand
//! last passed: writable), `PROTECTED` (write-protected), `STORED` (the store holds the
//! page's exact content). Transitions (every one on the handler thread):
//!
//! ```text
//!  evicted/untouched --read fault--> RESIDENT|PROTECTED (+STORED if mapped by an atomic
//!        |                          write-protected copy of the stored bytes; never for
//!        |                          the zero page, which is protected only afterwards)
//!        +----------write fault---> RESIDENT|REFERENCED (stored copy dropped)
//!  RESIDENT|PROTECTED --WP fault--> RESIDENT|REFERENCED (stored copy dropped, unprotected)
//!  REFERENCED --hand passes--> PROTECTED (write-protect, second chance)
//!  PROTECTED, not recent --hand--> STORED: discarded if STORED, else moved out, stored,
//!        and its staging page dropped later; left resident if pinned or refused
//! ```
//!
//! Invariants (checked exhaustively by the model): an evicted page is in the store; a
//! resident page is `STORED` only if its stored copy is exact; an unreferenced resident
//! page is write-protected; a page is read for compression only once it is out of the
//! application's reach (moved), so neither a racing write nor a device transfer into a
//! pinned page is lost.

use super::kernel::{Fault, Kernel};
use super::{Counters, Shared};
use crate::page::Page;
use crate::sync::{Arc, AtomicU64, Ordering};
use std::collections::VecDeque;

/// Every this many evictions the handler checks the store's garbage (pages faulted back
/// in and then written leave holes) and compacts once it exceeds 1/16 of the live data.
const COMPACT_CHECK_EVICTIONS: u32 = 1024;

const RESIDENT: u8 = 1;
const REFERENCED: u8 = 2;
const PROTECTED: u8 = 4;
const STORED: u8 = 8;

pub(super) struct Handler<K: Kernel> {
    pub(super) kernel: K,
    budget: usize,
    state: Vec<u8>,
    /// Resident pages in CLOCK order: the hand is at the front.
    clock: VecDeque<u32>,
    /// The last pages faulted in (a ring), which eviction skips.
    recent: Vec<u32>,
    recent_next: usize,
    shared: Arc<Shared>,
    scratch: Box<Page>,
    evictions_since_check: u32,
}

/// What became of a page the hand tried to compress.
enum Stored {
    Yes,
    /// Pinned for I/O: left resident.
    Pinned,
    /// The store refused it (memory limit): left resident.
    Refused,
}

impl<K: Kernel> Handler<K> {
    /// A handler for `state.len()` pages, keeping at most `budget` resident and never
    /// evicting the last `recent` pages faulted in. `state` and `clock` come allocated
    /// (the builder reports a failed allocation as an error).
    pub(super) fn new(
        kernel: K,
        budget: usize,
        recent: usize,
        state: Vec<u8>,
        clock: VecDeque<u32>,
        shared: Arc<Shared>,
    ) -> Handler<K> {
        Handler {
            kernel,
            budget,
            state,
            clock,
            recent: vec![u32::MAX; recent],
            recent_next: 0,
            shared,
            scratch: Page::boxed(),
            evictions_since_check: 0,
        }
    }

    /// Whether the hand should make room before the next fault: never where the budget
    /// holds every page (a fault then always has a frame).
    pub(super) fn over_budget(&self) -> bool {
        self.budget < self.state.len() && self.clock.len() >= self.budget
    }

    pub(super) fn fault(&mut self, fault: Fault) {
        let Fault { index, write, wp } = fault;
        let state = self.state[index];
        if wp {
            if state & RESIDENT == 0 {
                // Evicted while the writer waited: it retries and faults the page in.
                check(self.kernel.wake(index), "wake");
                return;
            }
            self.count(|c| &c.wp_faults);
            if state & STORED != 0 {
                self.shared.store.discard(index as u64);
            }
            self.state[index] = RESIDENT | REFERENCED;
            check(self.kernel.unprotect(index), "unprotect");
            return;
        }
        if state & RESIDENT != 0 {
            // A second thread's fault on a page the first one's already brought in.
            check(self.kernel.wake(index), "wake");
            return;
        }
        while self.over_budget() {
            if !self.evict_one() {
                break;
            }
        }
        let id = index as u64;
        if state & STORED != 0 {
            self.count(|c| &c.refaults);
            if let Err(e) = self.shared.store.read_into(id, &mut self.scratch) {
                fatal(&format!("page {index} cannot be restored: {e}"));
            }
            if write {
                self.shared.store.discard(id);
            }
        } else {
            self.count(|c| &c.zero_faults);
            self.scratch.bytes_mut().fill(0);
        }
        let zero = !write && self.scratch.same_filled_word() == Some(0);
        if zero && state & STORED != 0 {
            // Mapped from the zero page, it cannot keep the exact-copy state (module docs).
            self.shared.store.discard(id);
        }
        self.state[index] = if write {
            RESIDENT | REFERENCED
        } else if zero {
            RESIDENT | PROTECTED
        } else {
            RESIDENT | PROTECTED | (state & STORED)
        };
        self.clock.push_back(index as u32);
        if !self.recent.is_empty() {
            self.recent[self.recent_next] = index as u32;
            self.recent_next = (self.recent_next + 1) % self.recent.len();
        }
        // Published before the mapping wakes the faulting thread, so what it reads next
        // already counts its page.
        self.publish_resident();
        if write {
            check(self.kernel.copy(index, &self.scratch, false), "copy");
        } else if zero {
            // No memory until written; protected after, as the kernel has no atomic way.
            check(self.kernel.zeropage(index), "zeropage");
            check(self.kernel.protect(index), "protect");
        } else {
            check(self.kernel.copy(index, &self.scratch, true), "copy");
        }
    }

    /// Publishes the resident count; called wherever the clock gains or loses a page.
    fn publish_resident(&self) {
        let resident = self.clock.len() as u64;
        let c = &self.shared.counters;
        c.resident.store(resident, Ordering::Relaxed);
        c.resident_max.fetch_max(resident, Ordering::Relaxed);
    }

    /// Advances the CLOCK hand until one page is evicted; false if none could be.
    pub(super) fn evict_one(&mut self) -> bool {
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
                check(self.kernel.protect(index as usize), "protect");
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
                check(self.kernel.discard(index as usize), "discard");
            }
            self.state[index as usize] = STORED;
            self.count(|c| &c.evictions);
            self.publish_resident();
            self.evictions_since_check += 1;
            if self.evictions_since_check >= COMPACT_CHECK_EVICTIONS {
                self.evictions_since_check = 0;
                let mm = self.shared.store.mm_stat();
                if mm.mem_used_total > mm.compr_data_size + mm.compr_data_size / 16 {
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
        match self.kernel.move_out(index) {
            Ok(true) => {}
            Ok(false) => return Stored::Pinned,
            Err(e) => fatal(&format!("move page {index} out: {e}")),
        }
        if self
            .shared
            .store
            .insert(index as u64, self.kernel.staged())
            .is_err()
        {
            // The region's page is missing meanwhile: an access waits for this handler,
            // which finds the page resident again and wakes it.
            if let Err(e) = self.kernel.move_back(index) {
                fatal(&format!("page {index} cannot be moved back: {e}"));
            }
            // A moved page is mapped writable: referenced, as after a write fault.
            self.state[index] = RESIDENT | REFERENCED;
            return Stored::Refused;
        }
        Stored::Yes
    }

    /// What the handler shares with the region.
    pub(super) fn shared(&self) -> &Shared {
        &self.shared
    }

    fn count(&self, counter: impl Fn(&Counters) -> &AtomicU64) {
        counter(&self.shared.counters).fetch_add(1, Ordering::Relaxed);
    }
}

/// Why the handler stopped serving: the kernel refused an operation on our own
/// registered range, or a saved page is corrupt.
pub(super) struct Fatal(pub(super) String);

/// The handler cannot continue: it unwinds (without the panic hook: this is no bug in
/// the caller) to the handler thread's top, which poisons the region (see `serve`).
pub(super) fn fatal(reason: &str) -> ! {
    std::panic::resume_unwind(Box::new(Fatal(reason.to_string())))
}

fn check(result: std::io::Result<()>, what: &str) {
    if let Err(e) = result {
        fatal(&format!("{what}: {e}"));
    }
}
