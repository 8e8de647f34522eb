//! Page input for the analysis tools (simulation, entropy, training): a [`PageSource`]
//! yields its pages in chunks of at most [`CHUNK_PAGES`], so what a tool holds of its
//! input does not grow with the input's size.
//!
//! Invariants: a source yields each of its pages once, in order, and never a page it could
//! not read whole; `expected_pages` is known before the first chunk (for progress) and is
//! exact for files, an estimate for a live process (it runs on); a source that
//! cannot finish returns an error, never a silently short input.

use serde::Serialize;
use zpage::page::Page;

/// Pages per chunk: 1 MiB, enough to amortise a read, small beside any store.
pub const CHUNK_PAGES: usize = 256;

/// Why a source could not yield its pages (a [`crate::pagefile::PageFileError`] or a
/// [`crate::procmem::ProcError`]).
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Touched pages a source left out, and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// A process's pages that only map the kernel's shared zero page (a swap device never
    /// receives them).
    pub zero_mapped: u64,
    /// A process's pages the kernel refused to read (their mapping changed meanwhile).
    pub unreadable: u64,
}

/// A stream of pages, read a chunk at a time.
pub trait PageSource {
    /// The name reports use for this input.
    fn name(&self) -> &str;

    /// How many pages the source expects to yield.
    fn expected_pages(&self) -> u64;

    /// Replaces `out`'s contents with the next (at most [`CHUNK_PAGES`]) pages; `false`
    /// once there are none left.
    fn next_chunk(&mut self, out: &mut Vec<Page>) -> Result<bool, SourceError>;

    /// The virtual address of each page of the last chunk, for a source whose pages have
    /// one (a live process); `None` for the others.
    fn addresses(&self) -> Option<&[u64]> {
        None
    }

    /// What the source left out so far.
    fn skipped(&self) -> Skipped {
        Skipped::default()
    }

    /// Starts the source over, to yield the same pages again; `false` for a source that
    /// cannot (a live process's memory is not the same twice).
    fn rewind(&mut self) -> Result<bool, SourceError> {
        Ok(false)
    }
}

/// Memory this process holds at its peak (`VmHWM`), in bytes; 0 where unknown. Reports
/// show it so a reader can check the bounds the tools state.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
            line.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Several sources read as one, in order: what one device receiving them all would see.
pub struct Concat<'a> {
    parts: Vec<Box<dyn PageSource + 'a>>,
    at: usize,
    name: String,
}

impl<'a> Concat<'a> {
    /// `parts` in order, named by their names joined.
    pub fn new(parts: Vec<Box<dyn PageSource + 'a>>) -> Concat<'a> {
        let name = (parts.iter())
            .map(|p| p.name())
            .collect::<Vec<_>>()
            .join(" + ");
        Concat { parts, at: 0, name }
    }
}

impl PageSource for Concat<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn expected_pages(&self) -> u64 {
        self.parts.iter().map(|p| p.expected_pages()).sum()
    }

    fn next_chunk(&mut self, out: &mut Vec<Page>) -> Result<bool, SourceError> {
        while let Some(part) = self.parts.get_mut(self.at) {
            if part.next_chunk(out)? {
                return Ok(true);
            }
            self.at += 1;
        }
        out.clear();
        Ok(false)
    }

    fn skipped(&self) -> Skipped {
        let mut all = Skipped::default();
        for part in &self.parts {
            let s = part.skipped();
            all.zero_mapped += s.zero_mapped;
            all.unreadable += s.unreadable;
        }
        all
    }

    fn rewind(&mut self) -> Result<bool, SourceError> {
        for part in &mut self.parts {
            if !part.rewind()? {
                return Ok(false);
            }
        }
        self.at = 0;
        Ok(true)
    }
}
