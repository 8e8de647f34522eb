//! A live process's private anonymous memory, read as a swap device would receive it.
//!
//! Selection follows `../shared/tools/capture_pages.py`, which made the corpus: readable,
//! writable, private mappings with no backing file (`[heap]`, anonymous mmaps,
//! `[anon:NAME]`), never the stack (it holds argv and the environment) or the kernel's
//! pseudo-mappings. Within them only touched pages count: `/proc/PID/pagemap` says per
//! page whether it is present or swapped; pages that are neither were never faulted in.
//! Present pages that only map the kernel's shared zero page are skipped when
//! `/proc/kpageflags` can tell (root); otherwise they are kept as zero pages.
//!
//! Invariants: the target is only read (never stopped or written); every failure is a
//! [`ProcError`] naming the PID and what could not be read; a page the kernel refuses
//! mid-read (a mapping changed under us) is skipped and counted, never returned wrong; a
//! process that exits (or whose PID is reused) before the walk ends is an error, not a
//! short result. Pages are read a chunk at a time: the reader holds one chunk and one
//! batch of `pagemap` entries, whatever the process's size.

use crate::source::{CHUNK_PAGES, PageSource, Skipped, SourceError};
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use zpage::page::{PAGE_SIZE, Page};

const PRESENT: u64 = 1 << 63;
const SWAPPED: u64 = 1 << 62;
const PFN_MASK: u64 = (1 << 55) - 1;
const KPF_ZERO_PAGE: u64 = 1 << 24;
const SKIPPED_NAMES: [&str; 5] = ["[stack", "[vvar", "[vdso", "[vsyscall", "[uprobes"];
/// `pagemap` entries read at once (one 4 KiB read).
const BATCH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("no process with PID {0}")]
    Gone(u32),
    #[error(
        "cannot read {what} of PID {pid}: permission denied (reading another process's memory needs root, or ptrace access to it)"
    )]
    Denied { pid: u32, what: &'static str },
    #[error(
        "cannot read {what} of PID {pid}: permission denied although running as root: the kernel refuses ptrace access (this process may be in a user namespace that does not own PID {pid}, Yama's ptrace_scope may be 3, or CAP_SYS_PTRACE may be dropped)"
    )]
    DeniedToRoot { pid: u32, what: &'static str },
    #[error("cannot read {what} of PID {pid}: {source}")]
    Io {
        pid: u32,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("PID {0} has no touched private anonymous memory")]
    Empty(u32),
    #[error(
        "PID {pid} exited while it was read ({read} pages read): a partial snapshot is not reported"
    )]
    Exited { pid: u32, read: u64 },
}

struct Mapping {
    start: u64,
    end: u64,
    /// `[heap]`, `[anon:NAME]`, or empty for plain anonymous memory.
    name: String,
}

/// The touched private anonymous pages of a live process, as a [`PageSource`].
pub struct Process {
    pid: u32,
    name: String,
    /// `/proc/PID/stat`'s start time: the same PID after the walk must be the same process.
    started: Option<String>,
    pagemap: File,
    mem: File,
    kpageflags: Option<File>,
    mappings: Vec<Mapping>,
    /// The next mapping and the address of the next `pagemap` batch in it.
    mapping: usize,
    address: u64,
    entries: Vec<u64>,
    /// The address of `entries[0]` and the next entry to look at.
    batch_address: u64,
    entry: usize,
    expected: u64,
    read: u64,
    skipped: Skipped,
    /// The address of each page of the last chunk.
    addresses: Vec<u64>,
}

impl Process {
    /// The private anonymous mappings read, in address order: start, end, and name
    /// (`[heap]`, `[anon:NAME]`, or empty).
    pub fn mappings(&self) -> Vec<(u64, u64, String)> {
        (self.mappings.iter())
            .map(|m| (m.start, m.end, m.name.clone()))
            .collect()
    }

    /// Opens process `pid` for reading and counts its touched pages.
    pub fn open(pid: u32) -> Result<Process, ProcError> {
        let open = |what: &'static str| {
            File::open(format!("/proc/{pid}/{what}")).map_err(|e| classify(pid, what, e))
        };
        let started = start_time(pid);
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .map_err(|e| classify(pid, "maps", e))?;
        let pagemap = open("pagemap")?;
        let mem = open("mem")?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let mut process = Process {
            pid,
            name: format!("pid {pid} ({})", comm.trim()),
            started,
            pagemap,
            mem,
            kpageflags: File::open("/proc/kpageflags").ok(),
            mappings: maps.lines().filter_map(anonymous_private).collect(),
            mapping: 0,
            address: 0,
            entries: Vec::with_capacity(BATCH),
            batch_address: 0,
            entry: 0,
            expected: 0,
            read: 0,
            skipped: Skipped::default(),
            addresses: Vec::with_capacity(CHUNK_PAGES),
        };
        // Counting pass over pagemap alone (8 bytes a page, nothing kept).
        let mut expected = 0;
        while process.next_batch()? {
            expected += process
                .entries
                .iter()
                .filter(|&&e| e & (PRESENT | SWAPPED) != 0)
                .count() as u64;
        }
        if expected == 0 {
            return Err(ProcError::Empty(pid));
        }
        process.expected = expected;
        process.mapping = 0;
        process.address = process.mappings.first().map_or(0, |m| m.start);
        process.entries.clear();
        Ok(process)
    }

    /// Reads the next batch of pagemap entries; false once every mapping is done.
    fn next_batch(&mut self) -> Result<bool, ProcError> {
        self.entries.clear();
        self.entry = 0;
        while let Some(mapping) = self.mappings.get(self.mapping) {
            self.address = self.address.max(mapping.start);
            if self.address >= mapping.end {
                self.mapping += 1;
                continue;
            }
            let count = ((mapping.end - self.address) as usize / PAGE_SIZE).min(BATCH);
            let mut bytes = [0u8; BATCH * 8];
            let bytes = &mut bytes[..count * 8];
            let offset = self.address / PAGE_SIZE as u64 * 8;
            match self.pagemap.read_exact_at(bytes, offset) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                    return Err(denied(self.pid, "pagemap"));
                }
                Err(_) => {
                    // The mapping went away while we read: its pages are gone too.
                    self.mapping += 1;
                    continue;
                }
            }
            self.entries.extend(
                bytes
                    .chunks_exact(8)
                    .map(|e| u64::from_le_bytes(e.try_into().expect("8 bytes"))),
            );
            self.batch_address = self.address;
            self.address += (count * PAGE_SIZE) as u64;
            return Ok(true);
        }
        Ok(false)
    }

    /// The next touched page that is not a zero-page mapping, if any is left, and its
    /// address.
    fn next_page(&mut self, page: &mut Page) -> Result<Option<u64>, ProcError> {
        loop {
            if self.entry == self.entries.len() && !self.next_batch()? {
                return Ok(None);
            }
            let index = self.entry;
            let entry = self.entries[index];
            self.entry += 1;
            if entry & (PRESENT | SWAPPED) == 0 {
                continue;
            }
            let address = self.batch_address + (index * PAGE_SIZE) as u64;
            match self.mem.read_exact_at(page.bytes_mut(), address) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                    return Err(denied(self.pid, "memory"));
                }
                Err(_) => {
                    self.skipped.unreadable += 1;
                    continue;
                }
            }
            if entry & PRESENT != 0
                && page.same_filled_word() == Some(0)
                && is_zero_page(self.kpageflags.as_ref(), entry & PFN_MASK)
            {
                self.skipped.zero_mapped += 1;
                continue;
            }
            self.read += 1;
            return Ok(Some(address));
        }
    }
}

impl PageSource for Process {
    fn name(&self) -> &str {
        &self.name
    }

    fn expected_pages(&self) -> u64 {
        self.expected
    }

    fn next_chunk(&mut self, out: &mut Vec<Page>) -> Result<bool, SourceError> {
        out.clear();
        self.addresses.clear();
        let mut page = Page::zeroed();
        while out.len() < CHUNK_PAGES
            && let Some(address) = self.next_page(&mut page)?
        {
            out.push(page);
            self.addresses.push(address);
        }
        if out.is_empty() {
            // The walk is over: it only counts if the process outlived it.
            if self.started.is_none() || start_time(self.pid) != self.started {
                return Err(ProcError::Exited {
                    pid: self.pid,
                    read: self.read,
                }
                .into());
            }
            if self.read == 0 {
                return Err(ProcError::Empty(self.pid).into());
            }
        }
        Ok(!out.is_empty())
    }

    fn skipped(&self) -> Skipped {
        self.skipped
    }

    fn addresses(&self) -> Option<&[u64]> {
        Some(&self.addresses)
    }
}

/// The process's start time (field 22 of `/proc/PID/stat`), which tells a PID's reuse;
/// `None` once it is gone, or a zombie or dead (state `Z` or `X`: its stat stays until
/// it is reaped, its memory does not).
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is parenthesised and may hold spaces.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    if matches!(rest.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    rest.nth(18).map(str::to_string)
}

fn denied(pid: u32, what: &'static str) -> ProcError {
    if crate::zram::is_root() {
        ProcError::DeniedToRoot { pid, what }
    } else {
        ProcError::Denied { pid, what }
    }
}

fn classify(pid: u32, what: &'static str, error: std::io::Error) -> ProcError {
    match error.kind() {
        ErrorKind::NotFound => ProcError::Gone(pid),
        ErrorKind::PermissionDenied => denied(pid, what),
        _ if error.raw_os_error() == Some(libc::ESRCH) => ProcError::Gone(pid),
        _ => ProcError::Io {
            pid,
            what,
            source: error,
        },
    }
}

/// A `/proc/PID/maps` line's range if it is private, writable, anonymous memory.
fn anonymous_private(line: &str) -> Option<Mapping> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let perms = fields.next()?;
    let path = fields.nth(3).unwrap_or("");
    let perms = perms.as_bytes();
    if perms.len() < 4 || perms[0] != b'r' || perms[1] != b'w' || perms[3] != b'p' {
        return None;
    }
    let anonymous = path.is_empty() || path == "[heap]" || path.starts_with("[anon:");
    if !anonymous || SKIPPED_NAMES.iter().any(|name| path.starts_with(name)) {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        name: path.to_string(),
    })
}

fn is_zero_page(kpageflags: Option<&File>, pfn: u64) -> bool {
    let mut flags = [0u8; 8];
    match kpageflags {
        Some(file) if pfn != 0 => file
            .read_exact_at(&mut flags, pfn * 8)
            .is_ok_and(|()| u64::from_le_bytes(flags) & KPF_ZERO_PAGE != 0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_private_writable_anonymous_mappings_only() {
        let pick = |line: &str| anonymous_private(line).map(|m| (m.start, m.end));
        assert_eq!(
            pick("7f00-7f10 rw-p 00000000 00:00 0"),
            Some((0x7f00, 0x7f10))
        );
        assert!(pick("5000-6000 rw-p 00000000 00:00 0    [heap]").is_some());
        assert!(pick("5000-6000 rw-p 00000000 00:00 0    [anon:arena]").is_some());
        assert!(pick("5000-6000 rw-p 00000000 00:00 0    [stack]").is_none());
        assert!(pick("5000-6000 r--p 00000000 00:00 0").is_none());
        assert!(pick("5000-6000 rw-s 00000000 00:00 0").is_none());
        assert!(pick("5000-6000 rw-p 00001000 08:01 1234  /usr/lib/libc.so.6").is_none());
    }

    #[test]
    fn reads_its_own_process() {
        // A touched buffer with a recognisable pattern must be among the pages.
        let marker: Vec<u64> = (0..4 * 512).map(|i| 0x5a5a_0000_0000 + i).collect();
        let mut process = Process::open(std::process::id()).expect("own memory is readable");
        let (mut chunk, mut found, mut pages) = (Vec::new(), false, 0);
        while process.next_chunk(&mut chunk).unwrap() {
            pages += chunk.len();
            found |= chunk.iter().any(|p| {
                p.words()
                    .windows(2)
                    .any(|w| w == [marker[600], marker[601]])
            });
        }
        assert!(found, "{pages} pages read");
        std::hint::black_box(&marker);
    }

    #[test]
    fn a_gone_process_is_a_clear_error() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(matches!(Process::open(pid), Err(ProcError::Gone(p)) if p == pid));
    }
}
