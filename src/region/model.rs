//! An exhaustive model of the region's paging: the real [`Handler`] (and a real
//! `PageStore`) on a model of the kernel's page tables, with application threads whose
//! accesses fault, block and are woken as userfaultfd does, and every interleaving of the
//! threads with the handler's kernel operations explored up to a delay bound: a
//! deterministic scheduler (the running actor goes on; a blocked thread hands over to the
//! handler) from which every schedule with at most `delays` deviations is tried, where a
//! deviation is another actor running, or a thread running between two kernel operations
//! of the handler (stateless search with replay, as loom does for atomics).
//!
//! The model kernel keeps, per page, its page-table entry (none, the shared zero page, or
//! a frame; write-protected or not) and, per frame, its bytes and pins. A write to an
//! unprotected zero page copies it on write without the handler hearing of it; a pinned
//! frame is written by its "device" whether or not it is still mapped; `UFFDIO_MOVE`
//! refuses a pinned frame. Each thread owns one byte of every page and checks every read
//! of it against what it last wrote, and at the end every page's bytes are checked where
//! they are: in the page tables, or else in the store, which must hold every page the
//! handler evicted. A run fails on a wrong byte, on a thread that can never be woken, on
//! no end in sight (a livelock), or on an operation the handler should never ask for
//! (protecting a missing page).

use super::handler::Handler;
use super::kernel::{Fault, Kernel};
use super::{Counters, Shared};
use crate::page::Page;
use crate::store::PageStore;
use crate::sync::Arc;
use std::collections::VecDeque;
use std::io;

/// The choices of one run: replayed from `prefix`, then the first option of each new
/// branch point; `trail` records every branch point met, for the next prefix.
struct Chooser {
    prefix: Vec<usize>,
    trail: Vec<(usize, usize)>,
    delays: usize,
    max_delays: usize,
}

impl Chooser {
    fn choose(&mut self, options: usize) -> usize {
        if options <= 1 {
            return 0;
        }
        let at = self.trail.len();
        let choice = self.prefix.get(at).copied().unwrap_or(0);
        self.trail.push((choice, options));
        choice
    }

    /// The prefix of the next run in depth-first order; `None` once every run was made.
    fn next(mut self) -> Option<Vec<usize>> {
        while let Some((choice, options)) = self.trail.pop() {
            if choice + 1 < options {
                let mut prefix: Vec<usize> = self.trail.iter().map(|(c, _)| *c).collect();
                prefix.push(choice + 1);
                return Some(prefix);
            }
        }
        None
    }
}

#[derive(Clone, Copy, Debug)]
enum Pte {
    None,
    Zero { wp: bool },
    Frame { frame: usize, wp: bool },
}

/// One step of a thread's program, on its own byte of a page.
#[derive(Clone, Copy, Debug)]
enum Op {
    Read(usize),
    Write(usize, u8),
    /// Pins the page for a device's write (as `read(2)` with `O_DIRECT` does: the kernel
    /// first faults it in writable).
    Pin(usize),
    /// The device writes the pinned frame and unpins it.
    Dma(u8),
}

struct App {
    program: Vec<Op>,
    pc: usize,
    /// Blocked in a fault until a wake of `page`.
    waiting: Option<usize>,
    /// The page and frame pinned by the last `Pin`.
    pinned: Option<(usize, usize)>,
    /// What this thread last wrote to its byte of each page.
    shadow: Vec<u8>,
}

struct Frame {
    page: Box<Page>,
    pins: u32,
}

/// The kernel's side: page tables, frames, the fault queue and the threads.
struct World {
    ptes: Vec<Pte>,
    frames: Vec<Frame>,
    staging: Vec<usize>,
    queue: VecDeque<Fault>,
    apps: Vec<App>,
    chooser: Chooser,
    /// A broken kernel for the model's own test: MOVE takes pinned frames too.
    ignore_pins: bool,
    error: Option<String>,
    /// What happened, for a failure's report.
    trace: Vec<Event>,
}

#[derive(Clone, Copy, Debug)]
#[allow(dead_code, reason = "read through Debug, in failure reports")]
enum Event {
    Step { thread: usize, op: Op },
    Fault(Fault),
    Kernel { op: &'static str, page: usize },
}

impl World {
    fn runnable(&self) -> Vec<usize> {
        (0..self.apps.len())
            .filter(|&a| {
                self.apps[a].waiting.is_none() && self.apps[a].pc < self.apps[a].program.len()
            })
            .collect()
    }

    /// Records the run's first failure, with the events that led to it.
    fn fail(&mut self, error: String) {
        if self.error.is_none() {
            let trace: Vec<String> = self.trace[self.trace.len().saturating_sub(40)..]
                .iter()
                .map(|e| format!("{e:?}"))
                .collect();
            self.error = Some(format!("{error}; last events:\n{}", trace.join("\n")));
        }
    }

    fn new_frame(&mut self, page: &Page) -> usize {
        self.frames.push(Frame {
            page: Box::new(*page),
            pins: 0,
        });
        self.frames.len() - 1
    }

    fn wake(&mut self, page: usize) {
        for app in &mut self.apps {
            if app.waiting == Some(page) {
                app.waiting = None;
            }
        }
    }

    fn block(&mut self, app: usize, page: usize, write: bool, wp: bool) {
        let fault = Fault {
            index: page,
            write,
            wp,
        };
        self.trace.push(Event::Fault(fault));
        self.queue.push_back(fault);
        self.apps[app].waiting = Some(page);
    }

    /// The frame of a page made writable for `app`, or `None` if `app` faulted.
    fn writable(&mut self, app: usize, page: usize) -> Option<usize> {
        match self.ptes[page] {
            Pte::None => self.block(app, page, true, false),
            Pte::Zero { wp: true } | Pte::Frame { wp: true, .. } => {
                self.block(app, page, true, true)
            }
            Pte::Zero { wp: false } => {
                // Copy on write: a private page the handler never hears of.
                let frame = self.new_frame(&Page::zeroed());
                self.ptes[page] = Pte::Frame { frame, wp: false };
                return Some(frame);
            }
            Pte::Frame { frame, wp: false } => return Some(frame),
        }
        None
    }

    /// Runs one step of thread `app` (it may fault and block instead).
    fn step(&mut self, app: usize) {
        let op = self.apps[app].program[self.apps[app].pc];
        self.trace.push(Event::Step { thread: app, op });
        match op {
            Op::Read(page) => {
                let value = match self.ptes[page] {
                    Pte::None => return self.block(app, page, false, false),
                    Pte::Zero { .. } => 0,
                    Pte::Frame { frame, .. } => self.frames[frame].page.0[app],
                };
                let expected = self.apps[app].shadow[page];
                if value != expected {
                    self.fail(format!(
                        "thread {app} read {value} from page {page}, wrote {expected} (op {})",
                        self.apps[app].pc
                    ));
                }
            }
            Op::Write(page, value) => {
                let Some(frame) = self.writable(app, page) else {
                    return;
                };
                self.frames[frame].page.0[app] = value;
                self.apps[app].shadow[page] = value;
            }
            Op::Pin(page) => {
                let Some(frame) = self.writable(app, page) else {
                    return;
                };
                self.frames[frame].pins += 1;
                self.apps[app].pinned = Some((page, frame));
            }
            Op::Dma(value) => {
                let (page, frame) = self.apps[app].pinned.take().expect("Dma after Pin");
                self.frames[frame].page.0[app] = value;
                self.frames[frame].pins -= 1;
                self.apps[app].shadow[page] = value;
            }
        }
        self.apps[app].pc += 1;
    }

    /// Before a kernel operation: threads may run (each a delay of the handler).
    fn interleave(&mut self) {
        loop {
            let runnable = self.runnable();
            if runnable.is_empty() || self.chooser.delays >= self.chooser.max_delays {
                return;
            }
            match self.chooser.choose(1 + runnable.len()) {
                0 => return,
                k => {
                    self.chooser.delays += 1;
                    self.step(runnable[k - 1]);
                }
            }
        }
    }
}

struct ModelKernel(World);

impl ModelKernel {
    /// Before each operation: threads may run, then the operation is recorded.
    fn before(&mut self, op: &'static str, page: usize) -> &mut World {
        let w = &mut self.0;
        w.interleave();
        w.trace.push(Event::Kernel { op, page });
        w
    }
}

impl Kernel for ModelKernel {
    fn copy(&mut self, index: usize, page: &Page, protected: bool) -> io::Result<()> {
        let w = self.before("copy", index);
        if let Pte::None = w.ptes[index] {
            let frame = w.new_frame(page);
            w.ptes[index] = Pte::Frame {
                frame,
                wp: protected,
            };
        }
        w.wake(index);
        Ok(())
    }

    fn zeropage(&mut self, index: usize) -> io::Result<()> {
        let w = self.before("zeropage", index);
        if let Pte::None = w.ptes[index] {
            w.ptes[index] = Pte::Zero { wp: false };
        }
        w.wake(index);
        Ok(())
    }

    fn protect(&mut self, index: usize) -> io::Result<()> {
        let w = self.before("protect", index);
        w.ptes[index] = match w.ptes[index] {
            Pte::None => {
                w.fail(format!("protect of missing page {index}"));
                Pte::None
            }
            Pte::Zero { .. } => Pte::Zero { wp: true },
            Pte::Frame { frame, .. } => Pte::Frame { frame, wp: true },
        };
        Ok(())
    }

    fn unprotect(&mut self, index: usize) -> io::Result<()> {
        let w = self.before("unprotect", index);
        w.ptes[index] = match w.ptes[index] {
            Pte::Zero { .. } => Pte::Zero { wp: false },
            Pte::Frame { frame, .. } => Pte::Frame { frame, wp: false },
            Pte::None => Pte::None,
        };
        w.wake(index);
        Ok(())
    }

    fn wake(&mut self, index: usize) -> io::Result<()> {
        let w = self.before("wake", index);
        w.wake(index);
        Ok(())
    }

    fn move_out(&mut self, index: usize) -> io::Result<bool> {
        let w = self.before("move_out", index);
        let frame = match w.ptes[index] {
            Pte::None => return Err(io::Error::other(format!("move of missing page {index}"))),
            Pte::Zero { .. } => w.new_frame(&Page::zeroed()),
            Pte::Frame { frame, .. } if w.frames[frame].pins > 0 && !w.ignore_pins => {
                return Ok(false);
            }
            Pte::Frame { frame, .. } => frame,
        };
        w.ptes[index] = Pte::None;
        w.staging.push(frame);
        Ok(true)
    }

    fn staged(&self) -> &Page {
        &self.0.frames[*self.0.staging.last().expect("a moved page")].page
    }

    fn move_back(&mut self, index: usize) -> io::Result<()> {
        let w = self.before("move_back", index);
        let frame = w.staging.pop().expect("a moved page");
        w.ptes[index] = Pte::Frame { frame, wp: false };
        w.wake(index);
        Ok(())
    }

    fn discard(&mut self, index: usize) -> io::Result<()> {
        let w = self.before("discard", index);
        // The frame is dropped from the page table; a pinned one lives on, unmapped.
        w.ptes[index] = Pte::None;
        Ok(())
    }
}

/// A model scenario: threads' programs over `pages` pages, `budget` resident, the last
/// `recent` faulted pages never evicted. Progress needs `recent` at least the number of
/// threads (each blocked on one page): with fewer, an adversarial schedule evicts a
/// thread's page before it resumes, forever (the model finds that livelock).
struct Scenario {
    pages: usize,
    budget: usize,
    recent: usize,
    programs: Vec<Vec<Op>>,
    delays: usize,
    ignore_pins: bool,
}

/// Steps after which a run counts as a livelock (the scenarios need under a hundred).
const STEP_LIMIT: usize = 500;

/// Runs one schedule; returns its chooser (for the next prefix) and any failure.
fn run(scenario: &Scenario, prefix: Vec<usize>) -> (Chooser, Option<String>) {
    let pages = scenario.pages;
    let apps = scenario
        .programs
        .iter()
        .map(|program| App {
            program: program.clone(),
            pc: 0,
            waiting: None,
            pinned: None,
            shadow: vec![0; pages],
        })
        .collect();
    let world = World {
        ptes: vec![Pte::None; pages],
        frames: Vec::new(),
        staging: Vec::new(),
        queue: VecDeque::new(),
        apps,
        chooser: Chooser {
            prefix,
            trail: Vec::new(),
            delays: 0,
            max_delays: scenario.delays,
        },
        ignore_pins: scenario.ignore_pins,
        error: None,
        trace: Vec::new(),
    };
    let shared = Arc::new(Shared {
        store: PageStore::builder().shards(1).build(),
        counters: Counters::default(),
        poisoned: crate::sync::RwLock::new(None),
    });
    let mut handler = Handler::new(
        ModelKernel(world),
        scenario.budget,
        scenario.recent,
        vec![0; pages],
        VecDeque::new(),
        shared.clone(),
    );
    // The actor that ran last (thread index, or `None` for the handler). The default
    // next actor: it again if it can go on, else the handler if it has work, else the
    // first thread that can run; any other choice is a delay. The hand stalls (every
    // resident page pinned or recent) until a new fault arrives.
    let mut current = Some(0);
    let mut hand_stalled = false;
    let mut steps = 0;
    loop {
        steps += 1;
        if steps > STEP_LIMIT {
            handler
                .kernel
                .0
                .fail(format!("livelock: no end after {steps} steps"));
        }
        let over_budget = handler.over_budget();
        let w = &mut handler.kernel.0;
        if w.error.is_some() {
            break;
        }
        let handler_work = !w.queue.is_empty() || (over_budget && !hand_stalled);
        let mut actors: Vec<Option<usize>> = w.runnable().into_iter().map(Some).collect();
        if handler_work {
            actors.push(None);
        }
        if actors.is_empty() {
            if w.apps.iter().any(|a| a.pc < a.program.len()) {
                w.fail("a thread waits on a fault nobody will serve".into());
            }
            break;
        }
        let default = actors
            .iter()
            .position(|&a| a == current)
            .or_else(|| actors.iter().position(|&a| a.is_none()))
            .unwrap_or(0);
        let options = if w.chooser.delays < w.chooser.max_delays {
            actors.len()
        } else {
            1
        };
        let choice = w.chooser.choose(options);
        if choice != 0 {
            w.chooser.delays += 1;
        }
        let next = actors[(default + choice) % actors.len()];
        current = next;
        match next {
            Some(app) => w.step(app),
            None => {
                if let Some(fault) = w.queue.pop_front() {
                    hand_stalled = false;
                    handler.fault(fault);
                } else {
                    hand_stalled = !handler.evict_one();
                }
            }
        }
    }
    if handler.kernel.0.error.is_none() {
        final_check(&mut handler.kernel.0, &shared.store);
    }
    let ModelKernel(world) = handler.kernel;
    (world.chooser, world.error)
}

/// Every thread's byte of every page, where the page is: mapped, or in the store.
fn final_check(w: &mut World, store: &PageStore) {
    let mut stored = Page::zeroed();
    let mut wrong = None;
    for page in 0..w.ptes.len() {
        let bytes: &Page = match w.ptes[page] {
            Pte::Zero { .. } => &stored,
            Pte::Frame { frame, .. } => &w.frames[frame].page,
            Pte::None => {
                if store.read_into(page as u64, &mut stored).is_err() {
                    // Never touched, or evicted and lost.
                    stored = Page::zeroed();
                    if w.apps.iter().any(|a| a.shadow[page] != 0) {
                        wrong = Some(format!("page {page} is neither mapped nor stored"));
                        break;
                    }
                }
                &stored
            }
        };
        if let Some(app) = (0..w.apps.len()).find(|&a| bytes.0[a] != w.apps[a].shadow[page]) {
            wrong = Some(format!(
                "at the end, thread {app}'s byte of page {page} is {}, it wrote {}",
                bytes.0[app], w.apps[app].shadow[page]
            ));
            break;
        }
        stored = Page::zeroed();
    }
    if let Some(wrong) = wrong {
        w.fail(wrong);
    }
}

/// Explores every schedule of `scenario`; returns how many runs it took, or the first
/// failing schedule.
fn explore(scenario: &Scenario) -> Result<u64, String> {
    let mut prefix = Vec::new();
    let mut runs = 0u64;
    loop {
        runs += 1;
        let (chooser, error) = run(scenario, prefix.clone());
        if let Some(error) = error {
            return Err(format!("run {runs}, schedule {prefix:?}: {error}"));
        }
        match chooser.next() {
            Some(next) => prefix = next,
            None => {
                eprintln!("explored {runs} schedules");
                return Ok(runs);
            }
        }
    }
}

use Op::{Dma, Pin, Read as R, Write as W};

/// Page 0 is evicted while all zero, read back (mapped from the zero page, then
/// protected: two operations) and written at once, then evicted again.
fn zero_page_race(threads: usize) -> Scenario {
    let mut programs = vec![vec![R(0), R(1), R(2), R(0), W(0, 1), R(1), R(2), R(0)]];
    if threads > 1 {
        programs.push(vec![R(0), W(0, 2), R(2), W(1, 3)]);
    }
    Scenario {
        pages: 3,
        budget: 2,
        recent: threads,
        programs,
        delays: 3,
        ignore_pins: false,
    }
}

#[test]
fn a_write_racing_a_zero_page_mapping_is_never_lost() {
    for threads in [1, 2] {
        let runs = explore(&zero_page_race(threads)).unwrap_or_else(|e| panic!("{e}"));
        assert!(runs > 100, "{threads} threads: {runs} runs");
    }
}

#[test]
fn two_threads_writing_and_reading_the_same_pages() {
    let scenario = Scenario {
        pages: 3,
        budget: 2,
        recent: 2,
        programs: vec![
            vec![W(0, 1), R(1), W(2, 2), R(0), W(1, 3)],
            vec![W(1, 4), R(0), W(0, 5), R(2)],
        ],
        delays: 3,
        ignore_pins: false,
    };
    let runs = explore(&scenario).unwrap_or_else(|e| panic!("{e}"));
    assert!(runs > 100, "{runs} runs");
}

/// A device writes page 0 while another thread's accesses evict around it.
fn pinned_transfer(ignore_pins: bool) -> Scenario {
    Scenario {
        pages: 3,
        budget: 2,
        recent: 2,
        programs: vec![
            vec![Pin(0), Dma(7), R(0)],
            vec![W(1, 1), W(2, 2), R(1), R(2)],
        ],
        delays: 3,
        ignore_pins,
    }
}

#[test]
fn a_transfer_into_a_pinned_page_is_never_lost() {
    let runs = explore(&pinned_transfer(false)).unwrap_or_else(|e| panic!("{e}"));
    assert!(runs > 10, "{runs} runs");
}

/// The model can fail: with a kernel whose MOVE ignored pins (as copying a page out and
/// dropping it does), the device's write lands in a frame the region no longer maps.
#[test]
fn the_model_finds_the_loss_when_pins_are_ignored() {
    let error = explore(&pinned_transfer(true)).expect_err("a lost transfer");
    assert!(error.contains("read 0 from page 0, wrote 7"), "{error}");
}
