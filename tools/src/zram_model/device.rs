//! One predicted zram device: its slots (one per 4 KiB block) and the zsmalloc pool
//! behind them, driven through zram's operations: writes, `idle`, `recompress`,
//! `writeback`, `compact`, reads; `mm_stat` and `bd_stat` as the kernel's would read.
//!
//! A slot's life, as zram's flags move it:
//!
//! ```text
//!            write (same-filled)              write (compressed; huge if it reaches
//!   empty ─────────────────────────▶ same     huge_class_size: stored whole)
//!     │                                        │
//!     └──────────────────────────────▶ stored{len, priority, huge, idle, incompressible}
//!                                        │  ▲        │ recompress: kept only if the new
//!                 writeback (by type) ◀──┘  └────────┘ size lands in a smaller class;
//!                          │                            incompressible if the last
//!                          ▼                            priority could not
//!                       backed (bd_count; a read is a bd_read)
//! ```
//!
//! Invariants: `compr` is the sum of the stored slots' lengths (a huge one counts a
//! page), `pages_stored` counts stored and same slots (a backed page is out of
//! `orig_data_size`, as zram frees its object); a write that would take the pool past
//! `mem_limit` fails and leaves the slot as it was; every object in the pool has exactly
//! one slot pointing at it (compaction reports each move).

use super::ZramConfig;
use super::algorithm::Compressor;
use super::zsmalloc::{Handle, Pool};
use std::time::{Duration, Instant};
use zpage::{BdStat, MmStat, PAGE_SIZE, Page};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Empty,
    Same,
    Stored {
        handle: Handle,
        len: u16,
        priority: u8,
    },
    Backed,
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    state: State,
    idle: bool,
    huge: bool,
    incompressible: bool,
    /// What each recompression algorithm (priority 1, 2, 3) codes the page into, found
    /// when it was written: the model keeps no page, so its memory does not grow with
    /// the input's (the time is charged to recompression).
    alt: [u16; MAX_RECOMP],
}

/// zram's recompression priorities after the primary (`ZRAM_MAX_COMPS` is 4).
pub const MAX_RECOMP: usize = 3;

/// Which slots `recompress` and `writeback` take (zram's `type=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Every stored slot (recompress without a type).
    All,
    Idle,
    Huge,
    HugeIdle,
    /// Slots recompression marked incompressible (writeback only).
    Incompressible,
}

impl Kind {
    fn takes(self, slot: &Slot) -> bool {
        match self {
            Kind::All => true,
            Kind::Idle => slot.idle,
            Kind::Huge => slot.huge,
            Kind::HugeIdle => slot.idle && slot.huge,
            Kind::Incompressible => slot.incompressible,
        }
    }

    /// The word zram takes (`type=idle`).
    pub fn word(self) -> &'static str {
        match self {
            Kind::All => "all",
            Kind::Idle => "idle",
            Kind::Huge => "huge",
            Kind::HugeIdle => "huge_idle",
            Kind::Incompressible => "incompressible",
        }
    }
}

/// A `recompress` request.
#[derive(Clone, Copy, Debug)]
pub struct Recompress {
    pub kind: Kind,
    /// Only objects at least this large (0: any).
    pub threshold: usize,
    /// Most pages tried (0: no limit).
    pub max_pages: u64,
    /// Only this priority (`priority=` or `algo=`); `None`: each in turn.
    pub priority: Option<usize>,
}

/// What a `recompress` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recompressed {
    /// Slots tried.
    pub tried: u64,
    /// Of those, slots now held smaller.
    pub smaller: u64,
    /// Of those, slots marked incompressible.
    pub incompressible: u64,
}

/// One predicted zram device.
pub struct ZramModel {
    config: ZramConfig,
    /// By priority: the primary's, then the recompression algorithms'.
    compressors: Vec<Compressor>,
    pool: Pool,
    huge_threshold: usize,
    slots: Vec<Slot>,
    stored: u64,
    same: u64,
    huge: u64,
    huge_since: u64,
    compr: u64,
    max_used: u64,
    bd: BdStat,
    /// Writes the memory limit refused.
    pub(super) refused: u64,
    /// Time compressing writes (not recompression).
    pub(super) write_time: Duration,
    /// Time the recompression algorithms took on the pages written, and how many.
    recomp_time: Duration,
    recomp_pages: u64,
}

impl ZramModel {
    pub(super) fn new(config: &ZramConfig) -> Result<ZramModel, String> {
        let pool = Pool::new(config.chain_size);
        let compressors = std::iter::once(&config.primary)
            .chain(&config.recomp)
            .map(|a| a.compressor())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("--zram {}: {e}", config.name))?;
        Ok(ZramModel {
            huge_threshold: pool.huge_threshold(),
            pool,
            compressors,
            config: config.clone(),
            slots: Vec::new(),
            stored: 0,
            same: 0,
            huge: 0,
            huge_since: 0,
            compr: 0,
            max_used: 0,
            bd: BdStat::default(),
            refused: 0,
            write_time: Duration::ZERO,
            recomp_time: Duration::ZERO,
            recomp_pages: 0,
        })
    }

    /// Writes `pages` after the last block written (as a swap device fills), as zram's
    /// writes would store them.
    pub fn write(&mut self, pages: &[Page]) {
        let (start, recomp) = (Instant::now(), self.recomp_time);
        for page in pages {
            let index = self.slots.len();
            self.slots.push(Slot::default());
            if !self.write_at(index, page) {
                self.slots.pop();
            }
        }
        // The recompression algorithms' share is recompression's time, not the write's.
        self.write_time += start.elapsed().saturating_sub(self.recomp_time - recomp);
    }

    /// Writes `page` to block `index`; `false` if the memory limit refused it (the block
    /// keeps what it held).
    pub fn write_at(&mut self, index: usize, page: &Page) -> bool {
        if index >= self.slots.len() {
            self.slots.resize(index + 1, Slot::default());
        }
        if page.same_filled_word().is_some() {
            self.free(index);
            self.slots[index].state = State::Same;
            self.same += 1;
            self.stored += 1;
            return true;
        }
        let len = self.compressors[0].compressed_len(page);
        let mut alt = [0u16; MAX_RECOMP];
        if self.compressors.len() > 1 {
            let start = Instant::now();
            for (alt, compressor) in alt.iter_mut().zip(&mut self.compressors[1..]) {
                *alt = compressor.compressed_len(page).min(u16::MAX as usize) as u16;
            }
            self.recomp_time += start.elapsed();
            self.recomp_pages += 1;
        }
        self.store(index, len, alt)
    }

    /// Stores, at block `index`, a page the primary algorithm codes into `len` bytes (and
    /// the recompression algorithms into `alt`): a write whose sizes are known, as when a
    /// kernel's own sizes are replayed. `false` if the memory limit refused it.
    pub fn write_sized(&mut self, index: usize, len: usize, alt: [u16; MAX_RECOMP]) -> bool {
        if index >= self.slots.len() {
            self.slots.resize(index + 1, Slot::default());
        }
        self.store(index, len, alt)
    }

    fn store(&mut self, index: usize, len: usize, alt: [u16; MAX_RECOMP]) -> bool {
        let huge = len >= self.huge_threshold;
        let len = if huge { PAGE_SIZE } else { len };
        let handle = self.pool.alloc(len, index as u32);
        self.max_used = self.max_used.max(self.pool.mem_used());
        if let Some(limit) = self.config.mem_limit
            && self.pool.mem_used() > limit
        {
            // zram frees the new object and fails the write.
            self.pool.free(handle, index as u32);
            self.refused += 1;
            return false;
        }
        self.free(index);
        self.slots[index] = Slot {
            state: State::Stored {
                handle,
                len: len as u16,
                priority: 0,
            },
            huge,
            alt,
            ..Slot::default()
        };
        self.stored += 1;
        self.compr += len as u64;
        if huge {
            self.huge += 1;
            self.huge_since += 1;
        }
        true
    }

    /// Empties block `index` (zram's free of a slot: its object, flags and counts).
    fn free(&mut self, index: usize) {
        let slot = std::mem::take(&mut self.slots[index]);
        match slot.state {
            State::Empty => {}
            State::Same => {
                self.same -= 1;
                self.stored -= 1;
            }
            State::Stored { handle, len, .. } => {
                self.pool.free(handle, index as u32);
                self.compr -= u64::from(len);
                self.stored -= 1;
                self.huge -= u64::from(slot.huge);
            }
            State::Backed => self.bd.bd_count -= 1,
        }
    }

    /// zram's `echo all > idle`: every written slot idle; returns how many.
    pub fn mark_idle(&mut self) -> u64 {
        let mut marked = 0;
        for slot in &mut self.slots {
            if matches!(slot.state, State::Same | State::Stored { .. }) {
                slot.idle = true;
                marked += 1;
            }
        }
        marked
    }

    /// zram's `recompress`: each slot `request` takes is coded with the
    /// recompression algorithms (from the one after the slot's own priority, or only the
    /// one asked for) and kept only where it lands in a smaller size class.
    pub fn recompress(&mut self, request: Recompress) -> Recompressed {
        let mut done = Recompressed::default();
        let active = self.compressors.len();
        let (first, end) = match request.priority {
            Some(p) => (p, p + 1),
            None => (1, active),
        };
        if first >= end || end > active {
            return done;
        }
        let mut budget = request.max_pages;
        for index in 0..self.slots.len() {
            if request.max_pages > 0 && budget == 0 {
                break;
            }
            let slot = self.slots[index];
            let State::Stored {
                handle,
                len,
                priority,
            } = slot.state
            else {
                continue;
            };
            if slot.incompressible || !request.kind.takes(&slot) || usize::from(priority) + 1 >= end
            {
                continue;
            }
            let old = usize::from(len);
            if old < request.threshold {
                continue;
            }
            // Tried: the slot is no longer idle (so writeback does not take it for idle).
            self.slots[index].idle = false;
            done.tried += 1;
            budget = budget.saturating_sub(1);
            let old_class = self.pool.class_of(old);
            let mut kept = None;
            for p in first.max(usize::from(priority) + 1)..end {
                let new = usize::from(slot.alt[p - 1]);
                if self.pool.class_of(new) < old_class
                    && (request.threshold == 0 || new < request.threshold)
                {
                    kept = Some((p, new));
                    break;
                }
            }
            match kept {
                None => {
                    if end >= active {
                        self.slots[index].incompressible = true;
                        done.incompressible += 1;
                    }
                }
                Some((p, new)) => {
                    let handle_new = self.pool.alloc(new, index as u32);
                    self.max_used = self.max_used.max(self.pool.mem_used());
                    self.pool.free(handle, index as u32);
                    self.compr = self.compr - old as u64 + new as u64;
                    self.huge -= u64::from(slot.huge);
                    self.slots[index] = Slot {
                        state: State::Stored {
                            handle: handle_new,
                            len: new as u16,
                            priority: p as u8,
                        },
                        alt: slot.alt,
                        ..Slot::default()
                    };
                    done.smaller += 1;
                }
            }
        }
        done
    }

    /// zram's `writeback` of the slots `kind` takes, at most `limit` pages (zram's
    /// `writeback_limit`, 0: none); returns the pages written.
    pub fn writeback(&mut self, kind: Kind, limit: u64) -> u64 {
        let mut written = 0;
        for index in 0..self.slots.len() {
            if limit > 0 && written == limit {
                break;
            }
            let slot = self.slots[index];
            if !matches!(slot.state, State::Stored { .. }) || !kind.takes(&slot) {
                continue;
            }
            self.free(index);
            self.slots[index].state = State::Backed;
            self.bd.bd_count += 1;
            self.bd.bd_writes += 1;
            written += 1;
        }
        written
    }

    /// zram's `compact`; returns the pages it freed.
    pub fn compact(&mut self) -> u64 {
        let slots = &mut self.slots;
        self.pool.compact(&mut |owner, handle| {
            if let State::Stored { handle: h, .. } = &mut slots[owner as usize].state {
                *h = handle;
            }
        })
    }

    /// Reads every block once (a backed block is a read from the backing device).
    pub fn read_all(&mut self) {
        let backed = (self.slots.iter())
            .filter(|s| s.state == State::Backed)
            .count();
        self.bd.bd_reads += backed as u64;
    }

    /// The device's `mm_stat` now.
    pub fn mm_stat(&self) -> MmStat {
        // MmStat grows fields (non_exhaustive): set the ones zram's model knows.
        let mut mm = MmStat::default();
        mm.orig_data_size = self.stored * PAGE_SIZE as u64;
        mm.compr_data_size = self.compr;
        mm.mem_used_total = self.pool.mem_used();
        mm.mem_limit = self.config.mem_limit.unwrap_or(0);
        mm.mem_used_max = self.max_used;
        mm.same_pages = self.same;
        mm.pages_compacted = self.pool.pages_compacted();
        mm.huge_pages = self.huge;
        mm.huge_pages_since = self.huge_since;
        mm
    }

    /// Bytes of the dictionaries the device loads.
    pub fn dictionary_bytes(&self) -> u64 {
        self.config.dictionary_bytes()
    }

    /// The device's `bd_stat` now.
    pub fn bd_stat(&self) -> BdStat {
        self.bd
    }

    /// The time recompressing `pages` pages takes, at the recompression algorithms'
    /// speed on the pages written (the model codes each page with them as it is written).
    pub fn recompress_time(&self, pages: u64) -> Duration {
        if self.recomp_pages == 0 {
            return Duration::ZERO;
        }
        self.recomp_time
            .mul_f64(pages as f64 / self.recomp_pages as f64)
    }
}
