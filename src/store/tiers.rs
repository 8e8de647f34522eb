//! Tiers by temperature: which pages are idle, the idle pass that re-encodes them with
//! the stronger engine and the dictionaries, writeback of cold pages to the backing
//! store, and the background worker that runs the pass.
//!
//! Invariants:
//! - No shard lock is held while a page is encoded or a record is written: a page is
//!   copied out under its shard's read lock, the work is done unlocked, and the result
//!   is installed under the write lock only if the page's metadata is what was copied
//!   (a page written, removed, read into the hot tier or moved meanwhile keeps what it
//!   has: the attempt is counted as raced and undone).
//! - A writeback batch whose write fails leaves every page of it in memory; its slots
//!   are freed and the pages counted in `failed_writes`.
//! - A recompressed page keeps its content (its new form decodes to the bytes the old one
//!   did: both came from one decoded copy) and is marked settled, so later passes skip it
//!   until it is written again; so is a page whose new form was not smaller. A cold pass
//!   ([`Selection::level`]) marks what it has been over cold instead, and later cold
//!   passes skip those until they are read or written.

use super::lifecycle::{Encoding, in_allocator, stored_len};
use super::table::{Access, Meta};
use super::units::{Units, member_of};
use super::{PageStore, WrittenBack};
use crate::classify::features;
use crate::codec;
use crate::codec::Class;
use crate::engine;
use crate::page::{PAGE_SIZE, Page};
use std::time::{Duration, Instant};

/// Which pages an idle pass or a writeback takes, and how much it may do (zram's
/// `recompress type=idle|huge max_pages=` and `writeback` types, in one filter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    idle: bool,
    huge: bool,
    again: bool,
    level: Option<i32>,
    mixed: bool,
    min_age: Option<Duration>,
    max_pages: Option<u64>,
    time_budget: Option<Duration>,
}

impl Selection {
    /// Every page in memory.
    pub fn all() -> Selection {
        Selection::default()
    }

    /// Only pages marked idle ([`PageStore::mark_idle`]).
    pub fn idle(mut self) -> Selection {
        self.idle = true;
        self
    }

    /// Only pages stored uncompressed (zram's huge pages); with [`Selection::idle`],
    /// pages both huge and idle.
    pub fn huge(mut self) -> Selection {
        self.huge = true;
        self
    }

    /// Pages the idle pass has been over already too (after new dictionaries, say);
    /// without it a pass skips them until they are written again.
    pub fn again(mut self) -> Selection {
        self.again = true;
        self
    }

    /// A cold pass at zstd `level` (say 16, where the default idle pass runs the
    /// dictionary's level 8), for pages that stay idle long enough to be worth it: their
    /// neighbours packed into units compressed as one
    /// ([`crate::StoreBuilder::cold_unit_pages`]), or with units of one page, every zstd
    /// form (plain, with a dictionary, delta residuals) at `level` and the mixed form
    /// where it is smaller still by a margin ([`crate::engine::MIXED_MARGIN`]). Pages the
    /// warm pass settled are taken again, those a cold pass has been over are not.
    pub fn level(mut self, level: i32) -> Selection {
        self.level = Some(level.clamp(1, 22));
        self
    }

    /// The coldest pass: the pages of each cold unit alone, in the mixed form (context
    /// mixing from their cluster's primer, [`crate::codec::mixed`]) or, where that would
    /// pass the decoder's budget, in the idle pass's form, where together they are smaller
    /// than the unit by a margin ([`crate::engine::MIXED_MARGIN`]); the unit is freed as
    /// its pages leave it. The pages the cold pass left alone (their unit did not pay) are
    /// weighed too, each kept mixed where that is smaller than its form by the margin.
    /// Denser than a unit where a page's own context predicts it best, and far slower to
    /// encode and to read (the README's "Cold units" has both), so for pages idle longer
    /// still. Each unit is weighed once, each page alone once while it stays cold.
    pub fn mixed(mut self) -> Selection {
        self.mixed = true;
        self
    }

    /// Only pages not read or written for at least `age` (to the second).
    pub fn min_age(mut self, age: Duration) -> Selection {
        self.min_age = Some(age);
        self
    }

    /// At most this many pages examined.
    pub fn max_pages(mut self, pages: u64) -> Selection {
        self.max_pages = Some(pages);
        self
    }

    /// Stops after about this long (checked between pages); `Duration::MAX` is no bound.
    pub fn time_budget(mut self, budget: Duration) -> Selection {
        self.time_budget = Some(budget);
        self
    }
}

/// What an idle pass ([`PageStore::recompress`]) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Recompressed {
    /// Pages decoded and encoded again; for the coldest pass, the pages of the units and
    /// of the runs of pages alone it weighed, each encoded or judged with its unit or run
    /// from the others ([`crate::engine::mixing_hopeless`]).
    pub examined: u64,
    /// Of those, pages whose smaller new form took the old one's place.
    pub rewritten: u64,
    /// Allocator bytes the new forms saved.
    pub bytes_saved: u64,
    /// Pages written (or removed) while they were being encoded again: left as written.
    pub raced: u64,
    /// Pages the memory limit had no room for (old and new form at once): left as they were.
    pub refused: u64,
    /// Pages whose stored form failed its check (counted in `failed_reads` too).
    pub failed: u64,
    /// Whether the pass stopped at its page or time bound with pages left.
    pub cut_short: bool,
    /// Pages of memory the compaction after the pass gave back.
    pub pages_compacted: u64,
}

impl Recompressed {
    /// Counts what became of a page's new form ([`PageStore::recompressed`]'s result):
    /// raced, kept (no smaller: nothing), installed, or refused at the memory limit.
    fn tally(&mut self, result: Result<Option<usize>, super::StoreError>) {
        match result {
            Ok(None) => self.raced += 1,
            Ok(Some(0)) => {}
            Ok(Some(saved)) => {
                self.rewritten += 1;
                self.bytes_saved += saved as u64;
            }
            Err(_) => self.refused += 1,
        }
    }
}

impl std::fmt::Display for Recompressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} pages examined, {} rewritten ({} bytes saved), {} raced, {} refused, {} failed{}; \
             {} pages compacted",
            self.examined,
            self.rewritten,
            self.bytes_saved,
            self.raced,
            self.refused,
            self.failed,
            if self.cut_short { ", cut short" } else { "" },
            self.pages_compacted
        )
    }
}

impl std::fmt::Display for IdlePass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "idle: {}", self.recompressed)?;
        if let Some(cold) = &self.cold {
            write!(f, "; cold: {cold}")?;
        }
        if let Some(coldest) = &self.coldest {
            write!(f, "; coldest: {coldest}")?;
        }
        if let Some(written) = &self.written_back {
            write!(f, "; writeback: {written}")?;
        }
        Ok(())
    }
}

/// What one idle pass of the background worker does: every `every`, mark pages idle
/// that were not touched for `idle_after`, re-encode the idle ones with the idle engine,
/// then (with [`Background::cold_after`]) re-encode those untouched for longer at a
/// stronger zstd level, and (with [`Background::writeback_after`] and a backing store)
/// write back pages untouched for longer still.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Background {
    every: Duration,
    idle_after: Duration,
    max_pages: Option<u64>,
    cold_after: Option<(Duration, i32)>,
    mixed_after: Option<Duration>,
    writeback_after: Option<Duration>,
}

/// What [`PageStore::idle_pass`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdlePass {
    /// The warm pass over the idle pages.
    pub recompressed: Recompressed,
    /// The cold pass, if configured.
    pub cold: Option<Recompressed>,
    /// The coldest pass, if configured.
    pub coldest: Option<Recompressed>,
    /// Writeback, if configured (and the store has a backing store).
    pub written_back: Option<WrittenBack>,
}

impl Background {
    /// A pass every `every`; pages idle after twice that (change with
    /// [`Background::idle_after`]). `Duration::MAX` (here or in any of the ages) means
    /// never.
    ///
    /// ```
    /// use std::time::Duration;
    /// use zpage::store::Background;
    /// use zpage::{Page, PageStore, Profile};
    ///
    /// let minute = Duration::from_secs(60);
    /// let store = PageStore::builder()
    ///     .profile(Profile::Words) // fast on the way in
    ///     .idle_profile(Profile::Dense) // dense once idle
    ///     .background(Background::every(minute).cold_after(10 * minute, 16))
    ///     .build_shared(); // its worker stops when the store is dropped
    /// store.insert(1, &Page::filled(1))?;
    /// // A pass run now, with no page old enough for it:
    /// let pass = store.idle_pass(&Background::every(Duration::MAX));
    /// assert_eq!(pass.recompressed.examined, 0);
    /// println!("{pass}");
    /// # Ok::<(), zpage::StoreError>(())
    /// ```
    pub fn every(every: Duration) -> Background {
        Background {
            every,
            idle_after: every.saturating_mul(2),
            max_pages: None,
            cold_after: None,
            mixed_after: None,
            writeback_after: None,
        }
    }

    /// Pages untouched this long are re-encoded at zstd `level` (see [`Selection::level`]).
    pub fn cold_after(mut self, age: Duration, level: i32) -> Background {
        self.cold_after = Some((age, level));
        self
    }

    /// The cold units of pages untouched this long are weighed against their pages
    /// alone, mixed (see [`Selection::mixed`]).
    pub fn mixed_after(mut self, age: Duration) -> Background {
        self.mixed_after = Some(age);
        self
    }

    /// Pages untouched this long are idle.
    pub fn idle_after(mut self, age: Duration) -> Background {
        self.idle_after = age;
        self
    }

    /// At most this many pages a pass (for recompression and writeback each).
    pub fn max_pages(mut self, pages: u64) -> Background {
        self.max_pages = Some(pages);
        self
    }

    /// Pages untouched this long go to the backing store.
    pub fn writeback_after(mut self, age: Duration) -> Background {
        self.writeback_after = Some(age);
        self
    }
}

/// The store's end of its background worker: dropped with the store, it stops the worker.
pub(super) type WorkerLink = Option<crossbeam::channel::Sender<()>>;

/// A channel for a worker: the link goes in the store, the receiver to the worker.
pub(super) fn worker_link() -> (
    crossbeam::channel::Sender<()>,
    crossbeam::channel::Receiver<()>,
) {
    crossbeam::channel::bounded(0)
}

/// Starts the worker of a shared store; it holds only a weak reference, and ends when the
/// store (and with it the link) is dropped.
pub(super) fn spawn_worker(
    store: &std::sync::Arc<PageStore>,
    stop: crossbeam::channel::Receiver<()>,
    background: Option<Background>,
) {
    // Training, when due, waits at most this long (checking is a counter read).
    const TRAIN_CHECK: Duration = Duration::from_secs(1);
    let store = std::sync::Arc::downgrade(store);
    let tick = background.map_or(TRAIN_CHECK, |b| b.every.min(TRAIN_CHECK));
    std::thread::Builder::new()
        .name("zpage-idle".into())
        .spawn(move || {
            let mut last_pass = Instant::now();
            while let Err(crossbeam::channel::RecvTimeoutError::Timeout) = stop.recv_timeout(tick) {
                let Some(store) = store.upgrade() else { break };
                match &background {
                    Some(background) if last_pass.elapsed() >= background.every => {
                        last_pass = Instant::now();
                        store.idle_pass(background);
                    }
                    _ => {
                        store.train_if_due();
                    }
                }
            }
        })
        .expect("the idle worker's thread starts");
}

/// How a pass decides whether to take a page, and when to stop.
pub(super) struct Pass {
    select: Selection,
    /// Pages last touched at or before this second qualify (with `min_age`); `Some(None)`
    /// when the store is younger than the age, so no page does.
    cutoff: Option<Option<u32>>,
    deadline: Option<Instant>,
    pub(super) taken: u64,
}

impl Pass {
    pub(super) fn new(store: &PageStore, select: Selection) -> Pass {
        Pass {
            select,
            cutoff: select.min_age.map(|age| store.untouched_since(age)),
            // A budget past the end of time (`Duration::MAX`) is no bound.
            deadline: select
                .time_budget
                .and_then(|budget| Instant::now().checked_add(budget)),
            taken: 0,
        }
    }

    /// Whether the pass must stop before another page.
    pub(super) fn spent(&self) -> bool {
        self.select.max_pages.is_some_and(|max| self.taken >= max)
            || self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// Whether a page in memory of this metadata and access stamp qualifies.
    pub(super) fn takes(&self, meta: Meta, access: Access) -> bool {
        in_allocator(meta) && self.qualifies(meta, access)
    }

    /// Whether a member of a unit of this metadata and access stamp qualifies.
    pub(super) fn takes_member(&self, meta: Meta, access: Access) -> bool {
        meta.unit && self.qualifies(meta, access)
    }

    /// Whether a page of this metadata and access stamp that no cold unit took qualifies
    /// for the coldest pass: in memory, gone over by the cold pass and not weighed alone
    /// since, and neither mixed already nor stored raw (noise no model predicts).
    pub(super) fn takes_alone(&self, meta: Meta, access: Access) -> bool {
        self.takes(meta, access)
            && access.cold
            && !access.mixed
            && !matches!(meta.stored, Some(Class::Mixed | Class::Incompressible))
    }

    fn qualifies(&self, meta: Meta, access: Access) -> bool {
        !meta.hot
            && (!self.select.idle || access.idle)
            && (!self.select.huge || meta.stored == Some(Class::Incompressible))
            && self
                .cutoff
                .is_none_or(|cutoff| cutoff.is_some_and(|cutoff| access.second <= cutoff))
    }

    /// Whether a member of a unit that is half garbage qualifies to be packed again.
    fn repacks(&self, store: &PageStore, meta: Meta, access: Access) -> bool {
        self.takes_member(meta, access) && store.units.read().sparse(member_of(meta.word).0)
    }

    /// Whether a pass that re-encodes pages has been over this one already.
    fn done_before(&self, meta: Meta, access: Access) -> bool {
        !self.select.again
            && match self.select.level {
                Some(_) => access.cold,
                None => meta.settled,
            }
    }
}

impl PageStore {
    /// Marks idle every page not read or written for at least `age` (`None`: every page),
    /// as zram's `idle` file does; a read or a write clears a page's mark. Returns the
    /// pages marked idle now. Takes only read locks.
    pub fn mark_idle(&self, age: Option<Duration>) -> u64 {
        let before = match age.map(|age| self.untouched_since(age)) {
            None => u32::MAX,
            Some(Some(before)) => before,
            Some(None) => return self.idle_pages(),
        };
        self.shards
            .iter()
            .map(|slot| slot.shard.read().table.mark_idle(before))
            .sum()
    }

    /// The last second a page untouched for `age` was touched in at the latest; `None`
    /// while the store is younger than `age` (no page is that old).
    fn untouched_since(&self, age: Duration) -> Option<u32> {
        self.now()
            .checked_sub(u32::try_from(age.as_secs()).unwrap_or(u32::MAX))
    }

    /// Re-encodes every page stored in the allocator with the idle engine and the current
    /// dictionaries, keeping a new form where it is smaller: [`PageStore::recompress_selected`]
    /// with `Selection::all().again()`.
    pub fn recompress(&self) -> Recompressed {
        self.recompress_selected(Selection::all().again())
    }

    /// The idle pass over the pages `select` takes: each is re-encoded with the idle
    /// engine ([`crate::StoreBuilder::idle_profile`]; the store's own engine if none) and
    /// the current dictionaries, and the new form kept where it is smaller; pages stored
    /// before a training so get its dictionaries, and the dictionaries they named are
    /// freed once no page names them. In a store with an idle engine and
    /// auto-dictionaries, the pass trains them first when it is time. Each page is decoded
    /// under its shard's read lock (as a read is) and encoded with no lock held; the new
    /// form goes in only if the page is unchanged since, so a page written meanwhile keeps
    /// what was written. Hot pages are left to the tier, pages the pass has been over
    /// (and not written since) are skipped. A page the memory limit has no room for keeps
    /// its form, a corrupt one is counted and left as it is. The allocator is compacted
    /// after a pass that rewrote pages, so the memory the smaller forms saved is given
    /// back.
    pub fn recompress_selected(&self, select: Selection) -> Recompressed {
        self.recompress_observed(select, &mut |_| {})
    }

    /// [`PageStore::recompress_selected`], telling `progress` the pages examined as it
    /// goes (every 64 pages, and the rest at the end), for a caller that shows progress
    /// through a long pass (a cold pass runs at a few MB/s).
    ///
    /// ```
    /// use zpage::{Page, PageStore, Profile, Selection};
    ///
    /// let store = PageStore::builder().profile(Profile::Words).idle_profile(Profile::Dense).build();
    /// let mut page = Page::zeroed();
    /// for id in 0..100u64 {
    ///     page.bytes_mut()[..8].copy_from_slice(&id.to_le_bytes());
    ///     store.insert(id, &page)?;
    /// }
    /// let mut seen = 0;
    /// let done = store.recompress_observed(Selection::all(), &mut |pages| seen += pages);
    /// assert_eq!(seen, done.examined);
    /// # Ok::<(), zpage::StoreError>(())
    /// ```
    pub fn recompress_observed(
        &self,
        select: Selection,
        progress: &mut dyn FnMut(u64),
    ) -> Recompressed {
        const EVERY: u64 = 64;
        let mut told = 0;
        if self.idle_engine.is_some() {
            self.train_if_due();
        }
        let mut pass = Pass::new(self, select);
        if select.mixed {
            return self.mix_units(&mut pass, progress);
        }
        if let Some(level) = select.level.filter(|_| self.unit_pages > 1) {
            return self.pack_cold(&mut pass, level, progress);
        }
        let mut done = Recompressed::default();
        let mut page = Page::boxed();
        let cold = select.level.is_some();
        for id in self.ids() {
            if pass.spent() {
                done.cut_short = true;
                break;
            }
            let taken = |shard: &super::lifecycle::Shard, meta: Meta| {
                shard.table.access(id).is_some_and(|access| {
                    !pass.done_before(meta, access) && pass.takes(meta, access)
                })
            };
            let old = match self.read_page(id, &mut page, taken) {
                Ok(Some(meta)) => meta,
                Ok(None) => continue,
                Err(_) => {
                    pass.taken += 1;
                    done.failed += 1;
                    continue;
                }
            };
            pass.taken += 1;
            done.examined += 1;
            if done.examined - told == EVERY {
                progress(EVERY);
                told = done.examined;
            }
            let encoded = self.encode(&page, Encoding::Idle(select.level));
            let result = {
                let mut shard = self.slot(id).shard.write();
                let result = self.recompressed(&mut shard, id, old, &encoded, cold);
                if cold && matches!(result, Ok(Some(_))) {
                    // The cold form of a page alone was weighed against its mixed form.
                    shard.table.mark_mixed(id);
                }
                result
            };
            done.tally(result);
        }
        if done.examined > told {
            progress(done.examined - told);
        }
        if done.rewritten > 0 {
            // A pass shrinks many objects a little (the cold pass especially): the holes
            // it leaves are small in every slab but add up, so slabs with an eighth of a
            // page of garbage are evacuated too (the pass has just rewritten them anyway).
            done.pages_compacted = self.compact_slabs(PAGE_SIZE / 8);
        }
        done
    }

    /// The cold pass with units: the pages it takes, in id order, in groups of
    /// `unit_pages`, each group compressed as one unit at zstd `level` with the cluster
    /// dictionary of its first page; a group whose unit is not smaller than its pages'
    /// forms keeps them (and is marked cold). Members of units half garbage are taken
    /// again. Each page goes into its unit only if unchanged since it was read.
    fn pack_cold(
        &self,
        pass: &mut Pass,
        level: i32,
        progress: &mut dyn FnMut(u64),
    ) -> Recompressed {
        let mut ids: Vec<u64> = self.ids().collect();
        ids.sort_unstable();
        let mut done = Recompressed::default();
        let mut group = Group::default();
        let mut page = Page::boxed();
        for id in ids {
            if pass.spent() {
                done.cut_short = true;
                break;
            }
            let taken = |shard: &super::lifecycle::Shard, meta: Meta| {
                shard.table.access(id).is_some_and(|access| {
                    (!pass.done_before(meta, access) && pass.takes(meta, access))
                        || pass.repacks(self, meta, access)
                })
            };
            match self.read_page(id, &mut page, taken) {
                Ok(Some(meta)) => group.push(id, meta, &page),
                Ok(None) => continue,
                Err(_) => done.failed += 1,
            }
            pass.taken += 1;
            if group.members.len() == self.unit_pages {
                self.pack(&mut group, level, &mut done);
                progress(self.unit_pages as u64);
            }
        }
        let rest = group.members.len() as u64;
        self.pack(&mut group, level, &mut done);
        progress(rest);
        self.units.write().shrink();
        if done.rewritten > 0 {
            done.pages_compacted = self.compact_slabs(PAGE_SIZE / 8);
        }
        done
    }

    /// The coldest pass ([`Selection::mixed`]): unit by unit, its members that the pass
    /// takes alone (mixed), kept where together they are smaller than the unit; and the
    /// pages the cold pass left alone (no unit paid for them), in runs of a unit's size in
    /// id order (the groups the cold pass tried), each kept mixed where that pays for it.
    fn mix_units(&self, pass: &mut Pass, progress: &mut dyn FnMut(u64)) -> Recompressed {
        let mut ids: Vec<u64> = self.ids().collect();
        ids.sort_unstable();
        let mut done = Recompressed::default();
        let mut members: Vec<(u64, Meta)> = Vec::new();
        let mut unit = None;
        let mut alone: Vec<(u64, Meta)> = Vec::new();
        for id in ids {
            if pass.spent() {
                done.cut_short = true;
                break;
            }
            let taken = {
                let shard = self.slot(id).shard.read();
                let (Some(meta), Some(access)) = (shard.table.get(id), shard.table.access(id))
                else {
                    continue;
                };
                if pass.takes_member(meta, access) {
                    let index = member_of(meta.word).0;
                    self.units
                        .read()
                        .worth_mixing(index)
                        .then_some((meta, Some(index)))
                } else {
                    pass.takes_alone(meta, access).then_some((meta, None))
                }
            };
            let Some((meta, index)) = taken else {
                continue;
            };
            pass.taken += 1;
            // Members of a unit and runs of pages alone are gathered apart: a page written
            // since its unit was packed may lie among its members.
            match index {
                Some(index) => {
                    if unit != Some(index) {
                        self.mix_unit(unit, &mut members, &mut done);
                        progress(members.len() as u64);
                        members.clear();
                        unit = Some(index);
                    }
                    members.push((id, meta));
                }
                None => {
                    if alone.len() == self.unit_pages {
                        self.mix_alone(&alone, &mut done);
                        progress(alone.len() as u64);
                        alone.clear();
                    }
                    alone.push((id, meta));
                }
            }
        }
        self.mix_unit(unit, &mut members, &mut done);
        progress(members.len() as u64);
        self.mix_alone(&alone, &mut done);
        progress(alone.len() as u64);
        self.units.write().shrink();
        if done.rewritten > 0 {
            done.pages_compacted = self.compact_slabs(PAGE_SIZE / 8);
        }
        done
    }

    /// Weighs a run of pages no cold unit took, each decoded and encoded as
    /// [`Encoding::Mixed`] says, in [`engine::mixing_order`]: each kept mixed where that is
    /// smaller than its form by the margin ([`engine::mixed_pays`]), unless the run is
    /// given up first, as a unit is, when the mixed forms so far stop paying for the
    /// run's forms ([`engine::mixing_hopeless`]). Every page of the run is marked weighed.
    fn mix_alone(&self, run: &[(u64, Meta)], done: &mut Recompressed) {
        if run.is_empty() {
            return;
        }
        done.examined += run.len() as u64;
        let forms: usize = run.iter().map(|&(_, meta)| stored_len(meta)).sum();
        let mut page = Page::boxed();
        let (mut weighed, mut mixed) = (0, 0);
        for position in engine::mixing_order(run.len()) {
            let (id, meta) = run[position];
            match self.read_page(id, &mut page, |_, now| now == meta) {
                Ok(Some(_)) => {
                    let form = self.encode(&page, Encoding::Mixed);
                    let size = codec::stored_size(form.class, form.bytes.len());
                    (weighed, mixed) = (weighed + 1, mixed + size);
                    if form.class == Class::Mixed && engine::mixed_pays(size, stored_len(meta)) {
                        let mut shard = self.slot(id).shard.write();
                        done.tally(self.recompressed(&mut shard, id, meta, &form, true));
                    }
                    if engine::mixing_hopeless(mixed, weighed, run.len(), forms) {
                        break;
                    }
                }
                Ok(None) => done.raced += 1,
                Err(_) => done.failed += 1,
            }
        }
        for &(id, meta) in run {
            let shard = self.slot(id).shard.read();
            if shard.table.get(id) == Some(meta) {
                shard.table.mark_mixed(id);
            }
        }
    }

    /// Weighs the members of unit `index` the pass took as pages alone: each decoded and
    /// encoded as [`Encoding::Mixed`] says (mixed, or the idle pass's form where the
    /// mixed one is not kept), in [`engine::mixing_order`]; all kept if together smaller
    /// than the unit by the margin, else the unit is marked tried (as soon as
    /// [`engine::mixing_hopeless`] says so, without encoding the rest).
    fn mix_unit(&self, index: Option<u32>, members: &mut [(u64, Meta)], done: &mut Recompressed) {
        let Some(index) = index.filter(|_| !members.is_empty()) else {
            return;
        };
        let Some(frame) = self.with_live_unit(members, |units| units.get(index).frame_len()) else {
            return;
        };
        done.examined += members.len() as u64;
        let mut page = Page::boxed();
        let (mut encoded, mut alone) = (Vec::with_capacity(members.len()), 0);
        for position in engine::mixing_order(members.len()) {
            let (id, meta) = members[position];
            match self.read_page(id, &mut page, |_, now| now == meta) {
                Ok(Some(_)) => {
                    let form = self.encode(&page, Encoding::Mixed);
                    alone += form.bytes.len() - 1;
                    if engine::mixing_hopeless(alone, encoded.len() + 1, members.len(), frame) {
                        self.with_live_unit(members, |units| units.mixed_tried(index));
                        return;
                    }
                    encoded.push((id, meta, form));
                }
                Ok(None) => done.raced += 1,
                Err(_) => done.failed += 1,
            }
        }
        // Only if every page still in the unit leaves it is its frame freed.
        let whole = self.with_live_unit(members, |units| units.get(index).live() == encoded.len());
        if whole != Some(true) {
            done.raced += encoded.len() as u64;
            return;
        }
        done.bytes_saved += (frame - alone) as u64;
        for (id, meta, encoded) in &encoded {
            let result =
                self.recompressed(&mut self.slot(*id).shard.write(), *id, *meta, encoded, true);
            match result {
                Ok(Some(_)) => done.rewritten += 1,
                Ok(None) => done.raced += 1,
                Err(_) => done.refused += 1,
            }
        }
    }

    /// Runs `look` on the units' registry under the shard lock of a page of `members`
    /// that is unchanged (so still in its unit, which therefore stays registered; the
    /// lock order, shard before units); `None` if every one changed.
    fn with_live_unit<T>(
        &self,
        members: &[(u64, Meta)],
        look: impl FnOnce(&mut Units) -> T,
    ) -> Option<T> {
        for &(id, meta) in members {
            let shard = self.slot(id).shard.read();
            if shard.table.get(id) == Some(meta) {
                return Some(look(&mut self.units.write()));
            }
        }
        None
    }

    /// Packs a group of pages into one unit, if smaller than their forms (or if any of
    /// them comes from a unit half garbage); empties the group.
    fn pack(&self, group: &mut Group, level: i32, done: &mut Recompressed) {
        if group.members.is_empty() {
            return;
        }
        let pages = group.members.len();
        done.examined += pages as u64;
        let dicts = self.dicts.current();
        let dict = dicts
            .as_deref()
            .zip(group.first.as_ref())
            .map(|(set, first)| &**set.dictionary_for(first));
        group.frame.clear();
        codec::unit::encode(&group.bytes, dict, level, &mut group.frame);
        let before: usize = group
            .members
            .iter()
            .map(|&(_, meta)| stored_len(meta))
            .sum();
        let repacking = group.members.iter().any(|(_, meta)| meta.unit);
        if group.frame.len() >= before && !repacking {
            for &(id, meta) in &group.members {
                let shard = self.slot(id).shard.read();
                if shard.table.get(id) == Some(meta) {
                    shard.table.mark_cold(id);
                }
            }
            group.clear();
            return;
        }
        let ids = (group.members[0].0, group.members[pages - 1].0);
        let Some(index) = self.register_unit(&group.frame, pages, ids, dict.map(|d| d.id())) else {
            done.refused += pages as u64;
            group.clear();
            return;
        };
        let mut joined = 0;
        for (position, &(id, meta)) in group.members.iter().enumerate() {
            let checksum = crc32fast::hash(&group.bytes[position * PAGE_SIZE..][..PAGE_SIZE]);
            let slot = self.slot(id);
            if self.packed_into(&mut slot.shard.write(), id, meta, index, position, checksum) {
                joined += 1;
            } else {
                done.raced += 1;
            }
        }
        self.dicts.release(self.unit_packed(index));
        drop(dicts);
        done.rewritten += joined;
        done.bytes_saved += before.saturating_sub(group.frame.len()) as u64;
        group.clear();
    }

    /// Stores a unit's frame in the allocator (pieces of at most a page) and registers
    /// the unit (of `pages` pages, ids `ids.0` to `ids.1`), being packed, with the
    /// dictionary it names counted; `None` at the memory limit (nothing changed).
    fn register_unit(
        &self,
        frame: &[u8],
        pages: usize,
        ids: (u64, u64),
        dict: Option<u32>,
    ) -> Option<u32> {
        let pieces = {
            let mut slabs = self.slabs_mut();
            let mut pieces = Vec::with_capacity(frame.len().div_ceil(PAGE_SIZE));
            for chunk in frame.chunks(PAGE_SIZE) {
                match slabs.alloc(chunk) {
                    Ok(piece) => pieces.push(piece),
                    Err(_) => {
                        pieces.into_iter().for_each(|piece| slabs.free(piece));
                        return None;
                    }
                }
            }
            pieces.into_boxed_slice()
        };
        if let Some(dict) = dict {
            self.dicts.retain(dict);
        }
        let checksum = crc32fast::hash(frame);
        Some(
            self.units
                .write()
                .register(pieces, pages, ids, checksum, dict),
        )
    }

    /// One pass of the background worker, run now (see [`Background`]).
    pub fn idle_pass(&self, background: &Background) -> IdlePass {
        let bounded = |select: Selection| match background.max_pages {
            Some(max) => select.max_pages(max),
            None => select,
        };
        self.mark_idle(Some(background.idle_after));
        let recompressed = self.recompress_selected(bounded(Selection::all().idle()));
        let cold = background.cold_after.map(|(age, level)| {
            self.recompress_selected(bounded(Selection::all().min_age(age).level(level)))
        });
        let coldest = background
            .mixed_after
            .map(|age| self.recompress_selected(bounded(Selection::all().min_age(age).mixed())));
        let written_back = background
            .writeback_after
            .filter(|_| self.tier.is_some())
            .and_then(|age| self.writeback(bounded(Selection::all().min_age(age))).ok());
        IdlePass {
            recompressed,
            cold,
            coldest,
            written_back,
        }
    }
}

/// Pages read for one unit: their ids and metadata when read, their bytes in order, the
/// first page's features (its cluster names the unit's dictionary) and the frame's buffer.
#[derive(Default)]
struct Group {
    members: Vec<(u64, Meta)>,
    bytes: Vec<u8>,
    first: Option<features::Features>,
    frame: Vec<u8>,
}

impl Group {
    fn push(&mut self, id: u64, meta: Meta, page: &Page) {
        if self.members.is_empty() {
            self.first = Some(features::extract(page));
        }
        self.members.push((id, meta));
        self.bytes.extend_from_slice(page.bytes());
    }

    fn clear(&mut self) {
        self.members.clear();
        self.bytes.clear();
    }
}
