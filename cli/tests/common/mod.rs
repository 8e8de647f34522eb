//! Shared helpers of the command's tests: running it, its outputs, and inputs to give it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Skips a test whose environment lacks what it needs (root, zram, user namespaces),
/// saying why; where `ZPAGE_REQUIRE_ALL` is set (CI, on a machine that has them all) a
/// skip is a failure instead, so a test can never pass there without running.
pub fn skip(reason: &str) {
    assert!(
        std::env::var_os("ZPAGE_REQUIRE_ALL").is_none(),
        "ZPAGE_REQUIRE_ALL is set, but this test would skip: {reason}"
    );
    eprintln!("skipped: {reason}");
}

/// zram's nine `mm_stat` fields, in its order, as the reports name them.
pub const MM_STAT_FIELDS: [&str; 9] = [
    "orig_data_size",
    "compr_data_size",
    "mem_used_total",
    "mem_limit",
    "mem_used_max",
    "same_pages",
    "pages_compacted",
    "huge_pages",
    "huge_pages_since",
];

/// Runs the `zpage` binary with `args`.
pub fn zpage(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_zpage"))
        .args(args)
        .output()
        .expect("zpage runs")
}

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A successful `--json` run: silent stderr, one JSON object.
pub fn json(args: &[&str]) -> serde_json::Value {
    let out = zpage(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    assert!(out.stderr.is_empty(), "stderr must stay silent with --json");
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// A failing run: exit 1, one line on stderr containing every `needles`, no panic.
pub fn fails(args: &[&str], needles: &[&str]) {
    let out = zpage(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    }
}

pub fn sample(name: &str) -> String {
    data_dir().join(name).to_str().unwrap().to_string()
}

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .join("data")
}

/// A file of `copies` concatenated copies of the shipped sample (3.75 MiB each).
pub fn large_file(dir: &Path, copies: usize) -> String {
    let sample: Vec<u8> = std::fs::read_dir(data_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pages"))
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect();
    let path = dir.join("large.pages");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for _ in 0..copies {
        std::io::Write::write_all(&mut file, &sample).unwrap();
    }
    drop(file);
    path.to_str().unwrap().to_string()
}

/// A child holding 8 MiB of touched memory; its stdout says when it is ready.
pub fn child_with_memory() -> std::process::Child {
    python_child(
        "import sys,time; b=bytearray(8<<20); b[::4096]=b'x'*len(b[::4096]); \
         sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(30)",
    )
}

/// A Python heap of real objects (a dict of 100k lists of ints, floats and strings,
/// about 30 MiB), started with an empty environment; its stdout says when it is ready.
pub fn child_with_a_heap() -> std::process::Child {
    python_child(
        "import sys,time; d={str(i): [i, i*2.5, 'v'*(i%40), (i, -i)] for i in range(100000)}; \
         sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)",
    )
}

/// `python3 -c script` with an empty environment, once it has printed its first line.
fn python_child(script: &str) -> std::process::Child {
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .env_clear()
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    child
}

/// A zram device of our own (hot_add), removed on drop; None where zram is not there or
/// we are not root.
pub struct ScratchZram(pub String);

impl ScratchZram {
    pub fn add() -> Option<ScratchZram> {
        if !zpage_tools::zram::is_root() {
            return None;
        }
        let id = std::fs::read_to_string("/sys/class/zram-control/hot_add").ok()?;
        Some(ScratchZram(format!("zram{}", id.trim())))
    }
}

impl Drop for ScratchZram {
    fn drop(&mut self) {
        let id = self.0.trim_start_matches("zram");
        std::fs::write(format!("/sys/block/{}/reset", self.0), "1").ok();
        std::fs::write("/sys/class/zram-control/hot_remove", id).ok();
    }
}
