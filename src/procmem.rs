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
//! mid-read (a mapping changed under us) is skipped and counted, never returned wrong.

use crate::page::{PAGE_SIZE, Page};
use crate::pagefile::PageSet;
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;

const PRESENT: u64 = 1 << 63;
const SWAPPED: u64 = 1 << 62;
const PFN_MASK: u64 = (1 << 55) - 1;
const KPF_ZERO_PAGE: u64 = 1 << 24;
const SKIPPED_NAMES: [&str; 5] = ["[stack", "[vvar", "[vdso", "[vsyscall", "[uprobes"];

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("no process with PID {0}")]
    Gone(u32),
    #[error(
        "cannot read {what} of PID {pid}: permission denied (reading another process's memory needs root, or ptrace access to it)"
    )]
    Denied { pid: u32, what: &'static str },
    #[error("cannot read {what} of PID {pid}: {source}")]
    Io {
        pid: u32,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("PID {0} has no touched private anonymous memory")]
    Empty(u32),
}

/// Pages read from a process, and how many touched pages were left out.
pub struct ProcessPages {
    pub set: PageSet,
    /// Present pages that map the shared zero page (not memory a swap device sees).
    pub zero_mapped: u64,
    /// Pages the kernel refused to read (the mapping changed while reading).
    pub unreadable: u64,
}

struct Mapping {
    start: u64,
    end: u64,
}

/// Reads the touched private anonymous pages of process `pid`.
pub fn read(pid: u32) -> Result<ProcessPages, ProcError> {
    let open = |what: &'static str| {
        File::open(format!("/proc/{pid}/{what}")).map_err(|e| classify(pid, what, e))
    };
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| classify(pid, "maps", e))?;
    let pagemap = open("pagemap")?;
    let mem = open("mem")?;
    let kpageflags = File::open("/proc/kpageflags").ok();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();

    let mut pages = Vec::new();
    let (mut zero_mapped, mut unreadable) = (0, 0);
    let mut entries = vec![0u8; 512 * 8];
    for mapping in maps.lines().filter_map(anonymous_private) {
        let mut address = mapping.start;
        while address < mapping.end {
            let count = ((mapping.end - address) as usize / PAGE_SIZE).min(512);
            let bytes = &mut entries[..count * 8];
            let offset = address / PAGE_SIZE as u64 * 8;
            match pagemap.read_exact_at(bytes, offset) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                    return Err(ProcError::Denied {
                        pid,
                        what: "pagemap",
                    });
                }
                Err(_) => {
                    // The mapping went away while we read: its pages are gone too.
                    break;
                }
            }
            for (index, entry) in bytes.chunks_exact(8).enumerate() {
                let entry = u64::from_le_bytes(entry.try_into().expect("8 bytes"));
                if entry & (PRESENT | SWAPPED) == 0 {
                    continue;
                }
                let page_address = address + (index * PAGE_SIZE) as u64;
                let mut page = Page::zeroed();
                match mem.read_exact_at(page.bytes_mut(), page_address) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                        return Err(ProcError::Denied {
                            pid,
                            what: "memory",
                        });
                    }
                    Err(_) => {
                        unreadable += 1;
                        continue;
                    }
                }
                if entry & PRESENT != 0
                    && page.same_filled_word() == Some(0)
                    && is_zero_page(kpageflags.as_ref(), entry & PFN_MASK)
                {
                    zero_mapped += 1;
                    continue;
                }
                pages.push(page);
            }
            address += (count * PAGE_SIZE) as u64;
        }
    }
    if pages.is_empty() {
        return Err(ProcError::Empty(pid));
    }
    Ok(ProcessPages {
        set: PageSet {
            name: format!("pid {pid} ({})", comm.trim()),
            pages,
        },
        zero_mapped,
        unreadable,
    })
}

fn classify(pid: u32, what: &'static str, error: std::io::Error) -> ProcError {
    match error.kind() {
        ErrorKind::NotFound => ProcError::Gone(pid),
        ErrorKind::PermissionDenied => ProcError::Denied { pid, what },
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
        let pages = read(std::process::id()).expect("own memory is readable");
        let found = pages.set.pages.iter().any(|p| {
            p.words()
                .windows(2)
                .any(|w| w == [marker[600], marker[601]])
        });
        assert!(found, "{} pages read", pages.set.pages.len());
        std::hint::black_box(&marker);
    }

    #[test]
    fn a_gone_process_is_a_clear_error() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(matches!(read(pid), Err(ProcError::Gone(p)) if p == pid));
    }
}
