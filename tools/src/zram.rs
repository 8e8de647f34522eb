//! Driving the kernel's own zram on the same pages, for a side-by-side comparison.
//!
//! Invariants: a device is named, not a path (`zram` and a number), and touched only if
//! it is free (disksize 0, not swap, not mounted) and we are root; once configured, it is
//! reset on every way out (a guard's `Drop`), so it is left as found: while it is
//! configured SIGINT, SIGTERM and SIGHUP only raise a flag, checked after every request,
//! which ends the run through the guard (a second signal takes the default action). Pages
//! are written and read with O_DIRECT in 1 MiB requests (like `dd bs=1M oflag=direct`), so
//! the page cache never holds a copy and the timings are the device's (the clock runs
//! around each request only, not around reading the input); the input streams through a
//! request at a time and is read again to compare what the device returns, before any
//! figure is reported.

use crate::source::{CHUNK_PAGES, PageSource, SourceError};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use zpage::page::{PAGE_SIZE, Page};

/// The signals that end a run cleanly (the device is reset first).
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

#[derive(Debug, thiserror::Error)]
pub enum ZramError {
    #[error("zpage zram needs root (it configures /sys/block/{0}); run it with sudo")]
    NotRoot(String),
    #[error("no zram device {0} (/sys/block/{0} is missing; load the module: modprobe zram)")]
    Missing(String),
    #[error("zram device {device} is in use ({reason}); pick a free one with --device")]
    Busy { device: String, reason: String },
    #[error("zram device {device} has no algorithm {algo}; it offers: {available}")]
    UnknownAlgo {
        device: String,
        algo: String,
        available: String,
    },
    #[error("zram device {device}: {what}: {source}")]
    Io {
        device: String,
        what: String,
        source: std::io::Error,
    },
    #[error("zram device {device}: page {page} read back differs from what was written")]
    Mismatch { device: String, page: usize },
    #[error("{0:?} is not a zram device name (zram0, zram1, ...)")]
    BadName(String),
    #[error("interrupted by a signal; zram device {0} was reset")]
    Interrupted(String),
    #[error("{0}")]
    Input(String),
}

/// What the kernel's zram reported for one page set.
#[derive(Clone, Debug, Serialize)]
pub struct KernelRun {
    pub algorithm: String,
    pub pages: u64,
    pub orig_data_size: u64,
    pub compr_data_size: u64,
    pub mem_used_total: u64,
    pub same_pages: u64,
    pub huge_pages: u64,
    /// `orig_data_size / compr_data_size`.
    pub ratio: f64,
    /// `orig_data_size / mem_used_total` (allocator overhead included).
    pub mem_ratio: f64,
    pub write_mb_s: f64,
    pub read_mb_s: f64,
    pub verified: bool,
}

pub struct Device {
    name: String,
    sys: PathBuf,
}

impl Device {
    /// Checks that `name` is a free zram device we may configure.
    pub fn open_free(name: &str) -> Result<Device, ZramError> {
        let number = name.strip_prefix("zram").unwrap_or("");
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ZramError::BadName(name.to_string()));
        }
        let sys = Path::new("/sys/block").join(name);
        if !sys.join("comp_algorithm").exists() {
            return Err(ZramError::Missing(name.to_string()));
        }
        if !is_root() {
            return Err(ZramError::NotRoot(name.to_string()));
        }
        let device = Device {
            name: name.to_string(),
            sys,
        };
        let disksize = device.read_attr("disksize")?;
        if disksize.trim() != "0" {
            return Err(device.busy(format!("disksize is {}", disksize.trim())));
        }
        let node = format!("/dev/{name}");
        for (table, what) in [
            ("/proc/swaps", "a swap device"),
            ("/proc/mounts", "mounted"),
        ] {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            if text
                .lines()
                .any(|l| l.split_whitespace().next() == Some(&node))
            {
                return Err(device.busy(what.to_string()));
            }
        }
        Ok(device)
    }

    /// Algorithms the device offers (the current one is bracketed in sysfs).
    pub fn algorithms(&self) -> Result<Vec<String>, ZramError> {
        Ok(self
            .read_attr("comp_algorithm")?
            .split_whitespace()
            .map(|a| a.trim_matches(['[', ']']).to_string())
            .collect())
    }

    /// Configures the device as `setup` says with room for `pages` pages; the device is
    /// reset when the returned handle is dropped.
    pub fn configure(&self, setup: &KernelSetup, pages: u64) -> Result<Configured<'_>, ZramError> {
        let available = self.algorithms()?;
        if !available.contains(&setup.algorithm) {
            return Err(ZramError::UnknownAlgo {
                device: self.name.clone(),
                algo: setup.algorithm.clone(),
                available: available.join(" "),
            });
        }
        let signals = Signals::catch().map_err(|e| self.io("catch signals".into(), e))?;
        let reset = ResetOnDrop(self);
        for (attr, value) in setup.sysfs_writes(pages) {
            self.write_attr(attr, &value)?;
        }
        let node = format!("/dev/{}", self.name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&node)
            .map_err(|e| self.io(format!("open {node} with O_DIRECT"), e))?;
        Ok(Configured {
            device: self,
            file,
            signals,
            _reset: reset,
        })
    }

    /// Configures the device with `setup` and a size of `pages` pages, writes the pages a
    /// source from `open` yields, reads them back and compares them with those of a second
    /// source from `open`, takes `mm_stat` and resets the device.
    pub fn run(
        &self,
        setup: &KernelSetup,
        pages: u64,
        open: &dyn Fn() -> Result<Box<dyn PageSource>, SourceError>,
    ) -> Result<KernelRun, ZramError> {
        let open = || open().map_err(|e| ZramError::Input(e.to_string()));
        let configured = self.configure(setup, pages)?;
        let write = self.write_pages(&configured, open()?.as_mut(), pages)?;
        let (read, verified) = self.read_back(&configured, open()?.as_mut(), pages)?;
        let mm = configured.mm_stat()?;
        let input = pages * PAGE_SIZE as u64;
        let mb_s = |d: Duration| crate::compare::mb_s(input, d);
        // A signal after the last request still ends the run (and the command).
        configured.signals.check(&self.name)?;
        Ok(KernelRun {
            algorithm: setup.algorithm.clone(),
            pages,
            orig_data_size: mm.orig_data_size,
            compr_data_size: mm.compr_data_size,
            mem_used_total: mm.mem_used_total,
            same_pages: mm.same_pages,
            huge_pages: mm.huge_pages,
            ratio: mm.ratio(),
            mem_ratio: mm.mem_ratio(),
            write_mb_s: mb_s(write),
            read_mb_s: mb_s(read),
            verified,
        })
    }

    /// Writes what `source` yields (which must be `pages` pages), a chunk per request;
    /// only the requests are timed.
    fn write_pages(
        &self,
        configured: &Configured<'_>,
        source: &mut dyn PageSource,
        pages: u64,
    ) -> Result<Duration, ZramError> {
        let (file, signals) = (&configured.file, &configured.signals);
        let mut chunk = Vec::with_capacity(CHUNK_PAGES);
        let (mut spent, mut written) = (Duration::ZERO, 0u64);
        while self.next(source, &mut chunk, written, pages)? {
            signals.check(&self.name)?;
            let start = Instant::now();
            file.write_all_at(bytemuck::cast_slice(&chunk), written * PAGE_SIZE as u64)
                .map_err(|e| self.io("write".into(), e))?;
            spent += start.elapsed();
            written += chunk.len() as u64;
        }
        Ok(spent)
    }

    /// Reads the device back a request at a time (timed) and compares it with what
    /// `source` yields (untimed).
    fn read_back(
        &self,
        configured: &Configured<'_>,
        source: &mut dyn PageSource,
        pages: u64,
    ) -> Result<(Duration, bool), ZramError> {
        let (file, signals) = (&configured.file, &configured.signals);
        let mut buffer = vec![Page::zeroed(); CHUNK_PAGES];
        let mut chunk = Vec::with_capacity(CHUNK_PAGES);
        let (mut spent, mut read) = (Duration::ZERO, 0u64);
        while self.next(source, &mut chunk, read, pages)? {
            signals.check(&self.name)?;
            let out = &mut buffer[..chunk.len()];
            let start = Instant::now();
            file.read_exact_at(bytemuck::cast_slice_mut(out), read * PAGE_SIZE as u64)
                .map_err(|e| self.io("read".into(), e))?;
            spent += start.elapsed();
            if let Some(bad) = chunk.iter().zip(out.iter()).position(|(a, b)| a != b) {
                return Err(ZramError::Mismatch {
                    device: self.name.clone(),
                    page: read as usize + bad,
                });
            }
            read += chunk.len() as u64;
        }
        Ok((spent, true))
    }

    /// The source's next chunk, checked against the page count the device was sized for.
    fn next(
        &self,
        source: &mut dyn PageSource,
        chunk: &mut Vec<Page>,
        done: u64,
        pages: u64,
    ) -> Result<bool, ZramError> {
        let more = source
            .next_chunk(chunk)
            .map_err(|e| ZramError::Input(format!("{}: {e}", source.name())))?;
        if done + chunk.len() as u64 > pages || (!more && done != pages) {
            return Err(ZramError::Input(format!(
                "{}: the input changed size while it was read ({pages} pages expected)",
                source.name()
            )));
        }
        Ok(more)
    }

    fn read_attr(&self, attr: &str) -> Result<String, ZramError> {
        std::fs::read_to_string(self.sys.join(attr)).map_err(|e| self.io(format!("read {attr}"), e))
    }

    fn write_attr(&self, attr: &str, value: &str) -> Result<(), ZramError> {
        std::fs::write(self.sys.join(attr), value)
            .map_err(|e| self.io(format!("set {attr} to {value}"), e))
    }

    fn busy(&self, reason: String) -> ZramError {
        ZramError::Busy {
            device: self.name.clone(),
            reason,
        }
    }

    fn io(&self, what: String, source: std::io::Error) -> ZramError {
        ZramError::Io {
            device: self.name.clone(),
            what,
            source,
        }
    }
}

/// How to set a device up: the sysfs writes a user would make.
#[derive(Clone, Debug, Default)]
pub struct KernelSetup {
    /// `comp_algorithm`.
    pub algorithm: String,
    /// `algorithm_params` words (`level=8`), none for the defaults.
    pub params: Vec<String>,
    /// `mem_limit` in bytes.
    pub mem_limit: Option<u64>,
}

impl KernelSetup {
    /// An algorithm with zram's defaults.
    pub fn algorithm(name: &str) -> KernelSetup {
        KernelSetup {
            algorithm: name.to_string(),
            ..KernelSetup::default()
        }
    }

    /// The sysfs attributes to write, in order, for a device of `pages` pages.
    pub fn sysfs_writes(&self, pages: u64) -> Vec<(&'static str, String)> {
        let mut writes = vec![("comp_algorithm", self.algorithm.clone())];
        if !self.params.is_empty() {
            writes.push((
                "algorithm_params",
                format!("algo={} {}", self.algorithm, self.params.join(" ")),
            ));
        }
        let size = (pages * PAGE_SIZE as u64).max(PAGE_SIZE as u64);
        writes.push(("disksize", size.to_string()));
        if let Some(limit) = self.mem_limit {
            writes.push(("mem_limit", limit.to_string()));
        }
        writes
    }
}

/// A configured device, open for direct I/O; reset on drop.
pub struct Configured<'a> {
    device: &'a Device,
    file: File,
    signals: Signals,
    _reset: ResetOnDrop<'a>,
}

impl Configured<'_> {
    /// Writes `pages` from block `first` on (one request).
    pub fn write_at(&self, first: u64, pages: &[Page]) -> Result<(), ZramError> {
        self.signals.check(&self.device.name)?;
        self.file
            .write_all_at(bytemuck::cast_slice(pages), first * PAGE_SIZE as u64)
            .map_err(|e| self.device.io("write".into(), e))
    }

    /// Asks zram to compact its pool.
    pub fn compact(&self) -> Result<(), ZramError> {
        self.device.write_attr("compact", "1")
    }

    /// The device's `mm_stat` now.
    pub fn mm_stat(&self) -> Result<zpage::MmStat, ZramError> {
        let stat = self.device.read_attr("mm_stat")?;
        let field = |i: usize| -> u64 {
            stat.split_whitespace()
                .nth(i)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        // MmStat grows fields (non_exhaustive): set the nine zram reports.
        let mut mm = zpage::MmStat::default();
        mm.orig_data_size = field(0);
        mm.compr_data_size = field(1);
        mm.mem_used_total = field(2);
        mm.mem_limit = field(3);
        mm.mem_used_max = field(4);
        mm.same_pages = field(5);
        mm.pages_compacted = field(6);
        mm.huge_pages = field(7);
        mm.huge_pages_since = field(8);
        Ok(mm)
    }
}

/// SIGINT, SIGTERM and SIGHUP caught into a flag while this lives (a second one takes the
/// default action); the default handling is restored on drop.
struct Signals {
    raised: Arc<AtomicBool>,
    ids: Vec<signal_hook::SigId>,
}

impl Signals {
    fn catch() -> std::io::Result<Signals> {
        let raised = Arc::new(AtomicBool::new(false));
        let mut signals = Signals {
            raised: raised.clone(),
            ids: Vec::new(),
        };
        for signal in SIGNALS {
            // The conditional default first: it acts only once the flag is already set.
            let id = signal_hook::flag::register_conditional_default(signal, raised.clone())?;
            signals.ids.push(id);
            signals
                .ids
                .push(signal_hook::flag::register(signal, raised.clone())?);
        }
        Ok(signals)
    }

    fn check(&self, device: &str) -> Result<(), ZramError> {
        if self.raised.load(Ordering::SeqCst) {
            return Err(ZramError::Interrupted(device.to_string()));
        }
        Ok(())
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Resets the device (frees its memory, disksize back to 0) however `run` ends.
struct ResetOnDrop<'a>(&'a Device);

impl Drop for ResetOnDrop<'_> {
    fn drop(&mut self) {
        // Nothing better to do if the reset itself fails; the next open_free reports it.
        let _ = std::fs::write(self.0.sys.join("reset"), "1");
    }
}

/// Effective uid 0, from /proc/self/status (no libc call, so no unsafe here).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
            .unwrap_or(false)
    })
}
