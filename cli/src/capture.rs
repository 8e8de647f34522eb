//! `zpage capture`: a live process's memory (or every process's) saved as a page file.

use clap::Args;
use std::path::PathBuf;
use zpage_tools::capture::{self, Target};

#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// The process to capture (its touched private anonymous pages); repeat for several.
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    pid: Vec<u32>,
    /// Every process's private anonymous memory (what a swap device would receive);
    /// processes that cannot be read, or exit while read, are skipped and listed.
    #[arg(long)]
    all: bool,
    /// The page file to write (it appears only once whole).
    #[arg(short, long, value_name = "FILE.pages")]
    output: PathBuf,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    json: bool,
}

pub fn run(args: CaptureArgs) -> Result<String, String> {
    let target = if args.all {
        Target::All
    } else {
        Target::Pids(args.pid.clone())
    };
    let done = capture::capture(&target, &args.output, &mut |_| {})?;
    if args.json {
        return Ok(super::json(&done));
    }
    let mut out = String::new();
    outln!(
        out,
        "zpage capture: {} pages ({:.1} MiB) of {} process(es) into {}",
        done.pages,
        (done.pages * zpage::PAGE_SIZE as u64) as f64 / (1 << 20) as f64,
        done.processes.len(),
        done.path.display()
    );
    for p in &done.processes {
        outln!(out, "  {:>8} pages  {}", p.pages, p.name);
    }
    if !done.skipped.is_empty() {
        outln!(out, "skipped {} process(es):", done.skipped.len());
        for (pid, why) in done.skipped.iter().take(20) {
            outln!(out, "  PID {pid}: {why}");
        }
        if done.skipped.len() > 20 {
            outln!(out, "  ... and {} more", done.skipped.len() - 20);
        }
    }
    Ok(out)
}
