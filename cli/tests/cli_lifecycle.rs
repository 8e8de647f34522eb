//! `zpage sim --lifecycle` as a user runs it: the stages in order with their mm_stat
//! fields, writeback to a backing file, the memory limit, and the errors a user can cause.

mod common;

use common::{child_with_memory, fails, json, sample, stderr, zpage};

/// A usage error clap reports: exit 2, its first line naming the problem, no panic.
fn refused(args: &[&str], needles: &[&str]) {
    let out = zpage(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    let first = err.lines().next().unwrap_or("");
    assert!(!err.contains("panicked"), "{err}");
    for needle in needles {
        assert!(
            first.contains(needle),
            "{args:?}: {first:?} lacks {needle:?}"
        );
    }
}

/// A stage's fields besides the nine `mm_stat` ones.
const STAGE_FIELDS: [&str; 9] = [
    "name",
    "seconds",
    "mb_s",
    "input_bytes",
    "bd_stat",
    "io_stat",
    "metadata_bytes",
    "ratio",
    "effective_ratio",
];

#[test]
fn the_life_cycle_reports_each_stage_and_writes_back() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("backing");
    let file = sample("redis-mixed.pages");
    let v = json(&[
        "sim",
        &file,
        "--lifecycle",
        "--backing",
        backing.to_str().unwrap(),
        "--writeback",
        "idle",
        "--json",
    ]);
    assert_eq!(v["schema"], "zpage-lifecycle/1");
    assert_eq!(v["profile"], "words");
    assert_eq!(v["idle_profile"], "dense");
    assert_eq!(v["verified"], true);
    let stages = v["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "store",
            "mark_idle",
            "recompress",
            "cold",
            "writeback",
            "read"
        ]
    );
    for stage in stages {
        for field in STAGE_FIELDS.into_iter().chain(common::MM_STAT_FIELDS) {
            // Marking pages idle reads none: its speed is null, not a number.
            let none = field == "mb_s" && stage["name"] == "mark_idle";
            assert_eq!(stage[field].is_null(), none, "{field} in {stage}");
        }
        assert!(stage.get("note").is_some(), "{stage}");
    }
    let (store, idle, cold, back) = (&stages[0], &stages[2], &stages[3], &stages[4]);
    // The cold pass spends more on the same pages and stores them smaller still.
    assert!(cold["compr_data_size"].as_u64().unwrap() < idle["compr_data_size"].as_u64().unwrap());
    let pages = v["pages"].as_u64().unwrap();
    assert_eq!(store["orig_data_size"].as_u64(), Some(pages * 4096));
    assert!(store["mb_s"].as_f64().unwrap() > 0.0);
    // The idle pass stores the fast path's pages in less memory.
    assert!(idle["effective_ratio"].as_f64().unwrap() > store["effective_ratio"].as_f64().unwrap());
    assert!(idle["compr_data_size"].as_u64().unwrap() < store["compr_data_size"].as_u64().unwrap());
    // Writeback of every idle page: the allocator empties, the backing store holds them,
    // the cold units as one record a 4 KiB piece (bd_count counts records, as zram's
    // counts blocks), fewer than their pages.
    assert_eq!(back["compr_data_size"], 0);
    let same = back["same_pages"].as_u64().unwrap();
    let records = back["bd_stat"]["bd_count"].as_u64().unwrap();
    assert!(records > 0 && records < pages - same, "{records} records");
    assert_eq!(back["io_stat"]["failed_writes"], 0);
    // The read stage, in page order, read every record once (a unit decoded once).
    assert_eq!(stages[5]["bd_stat"]["bd_reads"].as_u64(), Some(records));
}

/// The kernel's life cycle beside zpage's (`--zram`): the steps in order, recompression
/// shrinking what it keeps and leaving the slots it tried not idle (so `writeback idle`
/// takes only the others, as zram's does), writeback emptying the pool of what it took,
/// the read counting the backed blocks.
#[test]
fn the_kernels_life_cycle_runs_beside() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("backing");
    let file = sample("redis-mixed.pages");
    let v = json(&[
        "sim",
        &file,
        "--lifecycle",
        "--cold-level",
        "0",
        "--backing",
        backing.to_str().unwrap(),
        "--writeback",
        "idle",
        "--zram",
        "lz4:recomp=zstd@8,lzo-rle",
        "--json",
    ]);
    let cycles = v["zram_lifecycle"].as_array().unwrap();
    assert_eq!(cycles.len(), 2);
    assert_eq!(cycles[0]["config"], "lz4:recomp=zstd@8");
    let names: Vec<&str> = (cycles[0]["stages"].as_array().unwrap().iter())
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "store",
            "mark_idle",
            "recompress",
            "writeback",
            "compact",
            "read"
        ]
    );
    let stage = |c: usize, i: usize| &cycles[c]["stages"][i];
    let compr = |c: usize, i: usize| stage(c, i)["mm_stat"]["compr_data_size"].as_u64().unwrap();
    assert!(
        compr(0, 2) < compr(0, 1),
        "recompression kept smaller forms: {v}"
    );
    let pages = v["pages"].as_u64().unwrap();
    assert_eq!(
        stage(0, 0)["mm_stat"]["orig_data_size"].as_u64(),
        Some(pages * 4096)
    );
    // lz4 then zstd: every idle slot tried, so none left idle for writeback.
    assert_eq!(stage(0, 3)["bd_stat"]["bd_count"], 0, "{v}");
    // lzo-rle without recompression: writeback takes every stored (not same-filled) slot.
    let same = stage(1, 0)["mm_stat"]["same_pages"].as_u64().unwrap();
    assert_eq!(
        stage(1, 3)["bd_stat"]["bd_count"].as_u64(),
        Some(pages - same)
    );
    assert_eq!(compr(1, 3), 0);
    assert_eq!(
        stage(1, 5)["bd_stat"]["bd_reads"].as_u64(),
        Some(pages - same)
    );
    assert!(
        stage(1, 2)["note"]
            .as_str()
            .unwrap()
            .contains("no recompression")
    );
}

/// The report sets the way in beside each predicted kernel's: zpage's store step's
/// effective ratio over that zram's mem ratio after its store step.
#[test]
fn the_way_in_is_set_beside_the_kernels() {
    let file = sample("redis-mixed.pages");
    let args = [
        "sim",
        &file,
        "--lifecycle",
        "--cold-level",
        "0",
        "--zram",
        "lzo-rle",
    ];
    let v = json(&[&args[..], &["--json"]].concat());
    let ours = v["stages"][0]["effective_ratio"].as_f64().unwrap();
    let mm = &v["zram_lifecycle"][0]["stages"][0]["mm_stat"];
    let kernel = mm["orig_data_size"].as_f64().unwrap() / mm["mem_used_total"].as_f64().unwrap();
    let out = zpage(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = common::stdout(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("the way in: "))
        .unwrap_or_else(|| panic!("no way-in line in {text}"));
    assert_eq!(
        line,
        format!(
            "the way in: zpage {ours:.3} effective, {:.2}x this zram's mem ratio",
            ours / kernel
        )
    );
}

#[test]
fn the_memory_limit_refuses_writes_as_zram_does() {
    let file = sample("redis-mixed.pages");
    let v = json(&["sim", &file, "--lifecycle", "--mem-limit", "64K", "--json"]);
    let refused = v["refused_pages"].as_u64().unwrap();
    assert!(refused > 0, "{v}");
    let store = &v["stages"][0];
    assert_eq!(store["mem_limit"].as_u64(), Some(64 << 10));
    assert!(store["mem_used_total"].as_u64().unwrap() <= 64 << 10);
    assert_eq!(store["io_stat"]["failed_writes"].as_u64(), Some(refused));
    assert_eq!(v["verified"], true);
}

/// A live process sampled into one store: a sample each interval, the pages that did not
/// change stay (and go idle), and the SVG is written.
#[test]
fn a_live_process_is_sampled_over_time() {
    let mut child = child_with_memory();
    let pid = child.id().to_string();
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("mm.svg");
    let v = json(&[
        "sim",
        "--lifecycle",
        "--pid",
        &pid,
        "--count",
        "3",
        "--interval",
        "1.1",
        "--plot",
        plot.to_str().unwrap(),
        "--json",
    ]);
    child.kill().ok();
    child.wait().ok();
    assert_eq!(v["schema"], "zpage-lifecycle-samples/1");
    assert_eq!(v["verified"], true);
    let samples = v["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 3);
    let first = samples[0]["pages"].as_u64().unwrap();
    assert!(first >= 2048, "the 8 MiB buffer: {v}");
    assert_eq!(samples[0]["written"].as_u64(), Some(first));
    // The sleeping child changes little: most pages are not stored again.
    let later = samples[2]["written"].as_u64().unwrap();
    assert!(later < first / 4, "{v}");
    for field in [
        "orig_data_size",
        "mem_used_total",
        "effective_ratio",
        "idle_pages",
    ] {
        assert!(!samples[2][field].is_null(), "{field}");
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("mm_stat"));
    fails(
        &[
            "sim",
            "--lifecycle",
            "--pid",
            &pid,
            "--count",
            "2",
            "--interval",
            "0",
        ],
        &["--interval"],
    );
}

#[test]
fn life_cycle_errors_are_one_line() {
    let file = sample("redis-mixed.pages");
    refused(
        &["sim", &file, "--lifecycle", "--mem-limit", "lots"],
        &["lots", "not a size"],
    );
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_str().unwrap();
    fails(
        &["sim", &file, "--lifecycle", "--backing", dir_path],
        &["backing file", "not a regular file or block device"],
    );
    // A limit without a life cycle is plain sim's (tested in cli_tools); a bad one is
    // refused there too.
    refused(&["sim", &file, "--mem-limit", "1Q"], &["1Q", "not a size"]);
    refused(
        &[
            "sim",
            &file,
            "--lifecycle",
            "--backing",
            "/tmp/x",
            "--writeback",
            "cold",
        ],
        &["cold", "huge, idle, huge_idle"],
    );
}

/// A step that does nothing says why: zero pages give the passes nothing to re-encode,
/// and writeback nothing to write.
#[test]
fn a_step_that_did_nothing_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let zeros = dir.path().join("zeros.pages");
    std::fs::write(&zeros, vec![0u8; 64 * 4096]).unwrap();
    let backing = dir.path().join("backing");
    let v = json(&[
        "sim",
        zeros.to_str().unwrap(),
        "--lifecycle",
        "--backing",
        backing.to_str().unwrap(),
        "--json",
    ]);
    let stages = v["stages"].as_array().unwrap();
    let note = |name: &str| {
        let stage = stages.iter().find(|s| s["name"] == name).unwrap();
        stage["note"].as_str().unwrap_or("").to_string()
    };
    assert!(note("recompress").contains("no page to re-encode"), "{v}");
    assert!(note("writeback").contains("no page to write back"), "{v}");
    assert_eq!(stages[0]["note"], serde_json::Value::Null);
    let out = zpage(&[
        "sim",
        zeros.to_str().unwrap(),
        "--lifecycle",
        "--backing",
        backing.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("recompress:\n") && text.contains("no page to re-encode"),
        "{text}"
    );
}

/// `--plot` draws the steps of a life cycle over page files (not only a sampled
/// process's evolution), and refuses a name that is not an SVG's.
#[test]
fn the_life_cycle_plots_its_steps() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("steps.svg");
    let out = zpage(&[
        "sim",
        &sample("sqlite.pages"),
        "--lifecycle",
        "--cold-level",
        "0",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = std::fs::read_to_string(&plot).unwrap();
    for step in ["store", "mark_idle", "recompress", "read", "mem_used_total"] {
        assert!(svg.contains(step), "{step} not in the plot");
    }
    let png = dir.path().join("steps.png");
    fails(
        &[
            "sim",
            &sample("sqlite.pages"),
            "--lifecycle",
            "--plot",
            png.to_str().unwrap(),
        ],
        &["--plot", ".svg"],
    );
}

// Shared with the library's tests.
#[allow(dead_code)]
#[path = "../../tests/common/redis_server.rs"]
mod redis_server;

/// A Redis server for the life cycle: CI's (`ZPAGE_REDIS_URL`), or one of the test's own.
fn redis_url() -> Option<(String, Option<redis_server::Server>)> {
    if let Ok(url) = std::env::var("ZPAGE_REDIS_URL") {
        return Some((url, None));
    }
    let server = redis_server::Server::start(&[]);
    if server.is_none() {
        common::skip("no valkey-server or redis-server on the PATH, and no ZPAGE_REDIS_URL");
    }
    server.map(|s| (s.url(), Some(s)))
}

/// The life cycle with its writeback step on a Valkey/Redis server: every idle page goes
/// there, every page reads back exactly (from memory or from its record), `bd_stat`
/// counts them; a server that stops answering ends the run within its timeout with one
/// line.
#[test]
fn the_life_cycle_writes_back_to_redis() {
    let Some((url, _server)) = redis_url() else {
        return;
    };
    let file = sample("redis-mixed.pages");
    let v = json(&[
        "sim",
        &file,
        "--lifecycle",
        "--cold-level",
        "0",
        "--backing",
        &url,
        "--writeback",
        "idle",
        "--json",
    ]);
    assert_eq!(v["verified"], true);
    let stages = v["stages"].as_array().unwrap();
    let back = stages.iter().find(|s| s["name"] == "writeback").unwrap();
    let pages = v["pages"].as_u64().unwrap();
    let same = back["same_pages"].as_u64().unwrap();
    assert_eq!(
        back["bd_stat"]["bd_count"].as_u64(),
        Some(pages - same),
        "{back}"
    );
    let read = stages.last().unwrap();
    assert_eq!(read["bd_stat"]["bd_reads"].as_u64(), Some(pages - same));

    let Some(paused) = redis_server::Server::start(&[]) else {
        common::skip("no valkey-server or redis-server on the PATH");
        return;
    };
    paused.pause(true);
    let start = std::time::Instant::now();
    fails(
        &[
            "sim",
            &file,
            "--lifecycle",
            "--backing",
            &paused.url(),
            "--writeback",
            "idle",
        ],
        &["timed out"],
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(15));
}
