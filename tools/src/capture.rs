//! Saving live memory as a page file: one process's touched private anonymous pages, or
//! every process's (what a swap device would receive), so that any command can be run
//! again on the same pages.
//!
//! Invariants: the file appears only once it is whole (written beside it, renamed at the
//! end; removed on an error); a process that exits or cannot be read while it is
//! captured leaves nothing of itself in the file (it is cut back to where that process
//! began, and counted as skipped with the reason); memory stays one chunk.

use crate::procmem::Process;
use crate::source::{PageSource, SourceError};
use serde::Serialize;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use zpage::{PAGE_SIZE, Page};

/// What to capture.
#[derive(Clone, Debug)]
pub enum Target {
    /// These processes (an error in any one is the capture's error).
    Pids(Vec<u32>),
    /// Every process but this one (those that cannot be read are skipped, with why).
    All,
}

/// One process captured.
#[derive(Clone, Debug, Serialize)]
pub struct Captured {
    pub pid: u32,
    pub name: String,
    pub pages: u64,
}

/// What a capture wrote.
#[derive(Clone, Debug, Serialize)]
pub struct Capture {
    pub path: PathBuf,
    pub pages: u64,
    pub processes: Vec<Captured>,
    /// Processes left out with `All`, and why (one line each).
    pub skipped: Vec<(u32, String)>,
}

/// Captures `target` into the page file `path`; `tick` gets the pages written as they
/// are.
pub fn capture(target: &Target, path: &Path, tick: &mut dyn FnMut(u64)) -> Result<Capture, String> {
    let partial = path.with_extension("pages.partial");
    let result = write(target, path, &partial, tick);
    match result {
        Ok(capture) => std::fs::rename(&partial, path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .map(|()| capture),
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            Err(error)
        }
    }
}

fn write(
    target: &Target,
    path: &Path,
    partial: &Path,
    tick: &mut dyn FnMut(u64),
) -> Result<Capture, String> {
    let io = |e: std::io::Error| format!("{}: {e}", partial.display());
    let mut file = std::io::BufWriter::new(std::fs::File::create(partial).map_err(io)?);
    let mut capture = Capture {
        path: path.to_path_buf(),
        pages: 0,
        processes: Vec::new(),
        skipped: Vec::new(),
    };
    let (pids, all) = match target {
        Target::Pids(pids) => (pids.clone(), false),
        Target::All => (every_other_process(), true),
    };
    let mut chunk = Vec::new();
    for pid in pids {
        let start = file.stream_position().map_err(io)?;
        match copy_process(pid, &mut file, &mut chunk, tick) {
            Ok(captured) => {
                capture.pages += captured.pages;
                capture.processes.push(captured);
            }
            Err(Failure::Io(e)) => return Err(io(e)),
            Err(Failure::Process(e)) if !all => return Err(e.to_string()),
            Err(Failure::Process(e)) => {
                // Nothing of a process that could not be read whole stays in the file.
                file.flush().map_err(io)?;
                file.get_ref().set_len(start).map_err(io)?;
                file.seek(std::io::SeekFrom::Start(start)).map_err(io)?;
                capture.skipped.push((pid, e.to_string()));
            }
        }
    }
    file.flush().map_err(io)?;
    file.get_ref().sync_all().map_err(io)?;
    if capture.pages == 0 {
        return Err("no process had touched private anonymous memory to capture".into());
    }
    Ok(capture)
}

enum Failure {
    Io(std::io::Error),
    Process(SourceError),
}

/// Writes one process's pages; its name and count.
fn copy_process(
    pid: u32,
    file: &mut impl Write,
    chunk: &mut Vec<Page>,
    tick: &mut dyn FnMut(u64),
) -> Result<Captured, Failure> {
    let mut process = Process::open(pid).map_err(|e| Failure::Process(e.into()))?;
    let mut pages = 0u64;
    while process.next_chunk(chunk).map_err(Failure::Process)? {
        let bytes: &[u8] = bytemuck::cast_slice(chunk.as_slice());
        file.write_all(bytes).map_err(Failure::Io)?;
        pages += chunk.len() as u64;
        tick(chunk.len() as u64);
    }
    debug_assert_eq!(size_of::<Page>(), PAGE_SIZE);
    Ok(Captured {
        pid,
        name: process.name().to_string(),
        pages,
    })
}

/// Every process's PID but this one's, in order.
fn every_other_process() -> Vec<u32> {
    let me = std::process::id();
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|&pid| pid != me)
        .collect();
    pids.sort_unstable();
    pids
}
