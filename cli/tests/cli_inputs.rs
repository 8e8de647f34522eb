//! Inputs an adversarial user gives the tools: special files, symlink loops, huge sparse
//! and large files (memory must stay bounded), processes that exit or may not be read.

mod common;

use common::{child_with_memory, data_dir, fails, json, large_file, sample, skip, stderr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `zpage args`, failing the test if it has not finished within `limit` (it is then
/// killed): a hang is a failure, not a stuck test run.
fn within(limit: Duration, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zpage"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            panic!("{args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
}

#[test]
fn fifos_are_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stream.pages");
    mkfifo(&fifo);
    let fifo = fifo.to_str().unwrap();
    let inside = dir.path().to_str().unwrap();
    for command in ["sim", "entropy", "train"] {
        for path in [fifo, inside] {
            let out = within(Duration::from_secs(20), &[command, path]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{command} {path}: {err}");
            assert!(
                err.contains("stream.pages") && err.contains("not a regular file (a FIFO)"),
                "{command} {path}: {err}"
            );
        }
    }
    fails(&["sim", "/dev/null"], &["/dev/null", "character device"]);
}

#[test]
fn symlink_loops_are_walked_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pages");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::copy(data_dir().join("sqlite.pages"), root.join("a.pages")).unwrap();
    std::os::unix::fs::symlink(".", root.join("self")).unwrap();
    std::os::unix::fs::symlink("..", root.join("sub/up")).unwrap();
    // A second path to the same file is the same file.
    std::os::unix::fs::symlink("a.pages", root.join("again.pages")).unwrap();
    let expected = std::fs::metadata(data_dir().join("sqlite.pages"))
        .unwrap()
        .len()
        / 4096;
    let root = root.to_str().unwrap();
    let out = within(Duration::from_secs(60), &["entropy", root, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pages"].as_u64(), Some(expected), "{v}");
    assert_eq!(v["inputs"].as_array().unwrap().len(), 1);
    let v = json(&["sim", root, "--json"]);
    assert_eq!(v["pages"].as_u64(), Some(expected));
}

/// Working memory beyond the simulated store that the tools may hold (the binary, chunk
/// buffers, codec contexts), whatever the input's size.
const WORKING_SET: u64 = 48 << 20;

#[test]
fn large_and_sparse_inputs_stream_in_bounded_memory() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // 255 MiB of real pages: sim holds its store and a bounded working set, not the input.
    let large = large_file(dir.path(), 68);
    let v = json(&["sim", &large, "--profile", "fast", "--json"]);
    let store = v["mem_used_total"].as_u64().unwrap() + v["metadata_bytes"].as_u64().unwrap();
    let peak = v["peak_rss_bytes"].as_u64().unwrap();
    assert!(v["pages"].as_u64().unwrap() == 68 * 960, "{v}");
    assert!(
        peak <= store + WORKING_SET,
        "sim peak RSS {peak} over its store's {store} + {WORKING_SET}"
    );
    let v = json(&["entropy", &large, "--json"]);
    let peak = v["peak_rss_bytes"].as_u64().unwrap();
    assert!(peak <= WORKING_SET, "entropy peak RSS {peak}");
    // 64 GiB of holes: entropy streams it (it used to allocate 64 GiB and abort); sim on
    // 1 GiB of holes holds only the store's per-page metadata.
    let sparse = dir.path().join("sparse.pages");
    let file = std::fs::File::create(&sparse).unwrap();
    file.set_len(64 << 30).unwrap();
    let sparse = sparse.to_str().unwrap();
    let out = within(Duration::from_secs(600), &["entropy", sparse, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["pages"].as_u64(), Some(16 << 20));
    assert_eq!(v["classes"]["zero"]["pages"].as_u64(), Some(16 << 20));
    assert!(v["peak_rss_bytes"].as_u64().unwrap() <= WORKING_SET, "{v}");
    file.set_len(1 << 30).unwrap();
    let v = json(&["sim", sparse, "--json"]);
    assert_eq!(v["same_pages"].as_u64(), Some(1 << 18));
    let store = v["metadata_bytes"].as_u64().unwrap();
    assert!(
        v["peak_rss_bytes"].as_u64().unwrap() <= store + WORKING_SET,
        "{v}"
    );
}

/// Reads the rest of a process's pages, which must end in an error (its message), not as
/// if the walk were complete.
fn walk_to_its_error(
    process: &mut zpage_tools::procmem::Process,
    chunk: &mut Vec<zpage::Page>,
) -> String {
    use zpage_tools::source::PageSource;
    loop {
        match process.next_chunk(chunk) {
            Ok(true) => continue,
            Ok(false) => panic!("the walk ended as if complete"),
            Err(error) => return error.to_string(),
        }
    }
}

/// Killed but not yet reaped, a process is a zombie: its `/proc/PID/stat` (and start
/// time) stay, its memory is gone. A walk over it must not end as if complete.
#[test]
fn a_zombie_mid_read_is_an_error_not_a_short_result() {
    use zpage_tools::source::PageSource;
    let mut child = child_with_memory();
    let pid = child.id();
    let mut process = zpage_tools::procmem::Process::open(pid).expect("the child is readable");
    let mut chunk = Vec::new();
    assert!(process.next_chunk(&mut chunk).unwrap(), "a first chunk");
    child.kill().unwrap();
    // Not reaped: wait until the kernel has made it a zombie.
    let stat = format!("/proc/{pid}/stat");
    let zombie = |text: &str| {
        text.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    };
    let start = Instant::now();
    while !std::fs::read_to_string(&stat).is_ok_and(|t| zombie(&t)) {
        assert!(start.elapsed() < Duration::from_secs(10), "never a zombie");
        std::thread::sleep(Duration::from_millis(5));
    }
    let error = walk_to_its_error(&mut process, &mut chunk);
    child.wait().unwrap();
    assert!(
        error.contains(&format!("PID {pid} exited while it was read")),
        "{error}"
    );
}

#[test]
fn a_process_that_exits_mid_read_is_an_error_not_a_short_result() {
    use zpage_tools::source::PageSource;
    let mut child = child_with_memory();
    let pid = child.id();
    let mut process = zpage_tools::procmem::Process::open(pid).expect("the child is readable");
    let mut chunk = Vec::new();
    assert!(process.next_chunk(&mut chunk).unwrap(), "a first chunk");
    child.kill().unwrap();
    child.wait().unwrap();
    let error = walk_to_its_error(&mut process, &mut chunk);
    assert!(
        error.contains(&format!("PID {pid} exited while it was read")),
        "{error}"
    );
}

#[test]
fn root_without_ptrace_access_is_told_why() {
    // In a new user namespace this process is root, yet may not read PID 1 outside it.
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user"])
        .arg(env!("CARGO_BIN_EXE_zpage"))
        .args(["sim", "--pid", "1"])
        .output();
    let Ok(out) = out else {
        skip("no unshare here");
        return;
    };
    let err = stderr(&out);
    if err.contains("unshare:") {
        skip(&format!("user namespaces unavailable: {err}"));
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("PID 1") && err.contains("although running as root"),
        "{err}"
    );
    assert!(!err.contains("needs root"), "{err}");
}

#[test]
fn zram_takes_device_names_not_paths() {
    for name in ["..", "../zram0", "zram", "zram0/..", "loop0", "zram-1"] {
        fails(
            &["zram", &sample("sqlite.pages"), "--device", name],
            &["not a zram device name"],
        );
    }
}

/// Model and dictionary files are checked to be regular files of bounded size before they
/// are read: `/dev/zero` is refused (not read without end), a FIFO with no writer too (not
/// waited on), each in one line.
#[test]
fn special_files_as_model_or_dictionaries_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let fifo = fifo.to_str().unwrap();
    let input = sample("sqlite.pages");
    let start = Instant::now();
    fails(
        &["sim", &input, "--model", "/dev/zero"],
        &["/dev/zero", "character device"],
    );
    fails(&["sim", &input, "--model", fifo], &["fifo", "FIFO"]);
    fails(
        &["sim", &input, "--dictionary-file", fifo],
        &["fifo", "not a regular file"],
    );
    fails(
        &["sim", &input, "--dictionary-file", "/dev/zero"],
        &["/dev/zero", "not a regular file"],
    );
    assert!(start.elapsed() < Duration::from_secs(30), "nothing waited");
}

/// `zpage capture` saves a process's memory as a page file any command reads; a PID
/// that cannot be captured leaves no file; `--all` captures every readable process.
#[test]
fn capture_saves_a_process_as_a_page_file() {
    let mut child = child_with_memory();
    let pid = child.id().to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("child.pages");
    let file = path.to_str().unwrap();
    let v = json(&["capture", "--pid", &pid, "-o", file, "--json"]);
    let pages = v["pages"].as_u64().unwrap();
    assert!(pages >= 2048, "the child's 8 MiB: {v}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), pages * 4096);
    let sim = json(&["sim", file, "--json"]);
    assert_eq!(sim["pages"].as_u64(), Some(pages));
    assert!(sim["verified"].as_bool().unwrap());
    child.kill().unwrap();
    child.wait().unwrap();
    let gone = dir.path().join("gone.pages");
    fails(
        &["capture", "--pid", &pid, "-o", gone.to_str().unwrap()],
        &[&format!("PID {pid}")],
    );
    assert!(!gone.exists(), "no file for a capture that failed");
    assert!(!dir.path().join("gone.pages.partial").exists());
    let all = dir.path().join("all.pages");
    let v = json(&["capture", "--all", "-o", all.to_str().unwrap(), "--json"]);
    assert!(v["pages"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(
        std::fs::metadata(&all).unwrap().len(),
        v["pages"].as_u64().unwrap() * 4096
    );
}
