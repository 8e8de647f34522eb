//! The `sim`, `entropy` and `zram` commands as a user runs them, including every error a
//! user can cause; the JSON schemas are checked field by field.

mod common;

use common::{
    ScratchZram, child_with_memory, data_dir, fails, json, large_file, sample, skip, stderr,
    stdout, zpage,
};
use std::path::Path;
use std::process::Command;
use zpage_tools::zram::is_root;

#[test]
fn sim_without_input_runs_on_the_shipped_sample() {
    let out = zpage(&["sim"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "verified",
        "orig_data_size",
        "mem_used_total",
        "effective ratio",
        "lz4, every page",
        "oracle",
        "classify",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

/// `--codecs` runs any codecs and levels beside zpage in one table, in the order given,
/// and refuses a name it does not know in one line.
#[test]
fn sim_codecs_side_by_side() {
    let file = sample("sqlite.pages");
    let args = ["sim", &file, "--json", "--codecs", "zstd-9,lz4,zstd-1"];
    let v = json(&args);
    let mut names: Vec<&String> = v["baselines"].as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(names, ["lz4", "zstd-1", "zstd-9"]);
    // In the text of the object, the order given.
    let raw = stdout(&zpage(&args));
    let at = |name: &str| raw.find(&format!("\"{name}\": {{")).unwrap();
    assert!(
        at("zstd-9") < at("lz4") && at("lz4") < at("zstd-1"),
        "{raw}"
    );
    let ratio = |name: &str| v["baselines"][name]["ratio"].as_f64().unwrap();
    assert!(ratio("zstd-9") >= ratio("zstd-1") && ratio("zstd-1") > ratio("lz4"));
    let out = zpage(&["sim", &file, "--codecs", "zstd-19,oracle"]);
    let text = stdout(&out);
    assert!(
        text.contains("zstd-19, every page") && text.contains("oracle"),
        "{text}"
    );
    // A usage error, as clap reports them: exit 2, the reason on the first line.
    for (bad, needle) in [
        ("zstd-23", "no codec \"zstd-23\""),
        ("brotli", "lz4, zstd-1 to zstd-22, zram-best or oracle"),
    ] {
        let out = zpage(&["sim", &file, "--codecs", bad]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        let first = err.lines().next().unwrap_or("");
        assert!(first.contains(needle) && !err.contains("panicked"), "{err}");
    }
}

/// Both commands ask the engine for each page's class the same way, so they agree on
/// every page: the per-class page counts are equal, for both profiles.
#[test]
fn sim_and_entropy_agree_on_every_class() {
    let data = data_dir();
    for profile in ["fast", "dense"] {
        let args = |command| {
            [
                command,
                data.to_str().unwrap(),
                "--profile",
                profile,
                "--json",
            ]
        };
        let sim = json(&args("sim"));
        let entropy = json(&args("entropy"));
        let counts = |v: &serde_json::Value| {
            v["classes"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(name, class)| (name.clone(), class["pages"].as_u64().unwrap()))
                .filter(|&(_, pages)| pages > 0)
                .collect::<Vec<_>>()
        };
        assert_eq!(counts(&sim), counts(&entropy), "{profile}");
        assert!(counts(&sim).len() >= 3, "{profile}: {:?}", counts(&sim));
    }
}

#[test]
fn sim_json_schema() {
    let v = json(&["sim", data_dir().to_str().unwrap(), "--json"]);
    assert_eq!(v["schema"], "zpage-sim/1");
    for key in [
        "pages",
        "orig_data_size",
        "compr_data_size",
        "mem_used_total",
        "metadata_bytes",
        "same_pages",
        "huge_pages",
        "effective_ratio",
        "ratio",
    ] {
        assert!(v[key].is_number(), "{key}: {v}");
    }
    assert_eq!(v["verified"], true);
    let n = |key: &str| v[key].as_f64().unwrap();
    assert_eq!(n("orig_data_size"), n("pages") * 4096.0);
    let effective = n("orig_data_size") / (n("mem_used_total") + n("metadata_bytes"));
    assert!((effective - n("effective_ratio")).abs() < 1e-9);
    let classes = v["classes"].as_object().unwrap();
    let mut pages = 0.0;
    for (name, class) in classes {
        for key in ["pages", "orig_bytes", "stored_bytes"] {
            assert!(class[key].is_number(), "{name}.{key}");
        }
        pages += class["pages"].as_f64().unwrap();
    }
    assert_eq!(pages, n("pages"));
    for name in ["lz4", "zstd-3", "oracle"] {
        for key in ["compr_data_size", "compress_mb_s", "decompress_mb_s"] {
            assert!(
                v["baselines"][name][key].as_f64().unwrap() > 0.0,
                "{name}.{key}"
            );
        }
    }
    // zpage beats LZ4-for-every-page on the same pages, and stays near the oracle.
    let lz4 = v["baselines"]["lz4"]["compr_data_size"].as_f64().unwrap();
    let oracle = v["baselines"]["oracle"]["compr_data_size"]
        .as_f64()
        .unwrap();
    assert!(n("compr_data_size") < lz4);
    assert!(n("compr_data_size") < oracle * 1.1);
    for key in ["compress_mb_s", "decompress_mb_s", "classify_ns_per_page"] {
        assert!(v["timing"][key].as_f64().unwrap() > 0.0, "timing.{key}");
    }
    assert_eq!(v["inputs"].as_array().unwrap().len(), 7);
}

#[test]
fn sim_errors_are_one_line() {
    fails(&["sim", "/no/such/file.pages"], &["/no/such/file.pages"]);
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("partial.pages");
    std::fs::write(&partial, vec![1u8; 4096 + 100]).unwrap();
    let partial = partial.to_str().unwrap();
    fails(&["sim", partial], &["partial.pages", "4196", "--pad"]);
    let v = json(&["sim", partial, "--pad", "--json"]);
    assert_eq!(v["pages"], 2);
    let model = dir.path().join("model.json");
    std::fs::write(&model, "{ not a model").unwrap();
    fails(
        &["sim", "--model", model.to_str().unwrap()],
        &["model.json"],
    );
}

#[test]
fn sim_reads_a_live_process() {
    let mut child = child_with_memory();
    let pid = child.id().to_string();
    let v = json(&["sim", "--pid", &pid, "--profile", "fast", "--json"]);
    child.kill().ok();
    child.wait().ok();
    assert_eq!(v["verified"], true);
    // What the read left out is in the JSON too, not only on stderr.
    let skipped = &v["inputs"][0]["skipped"];
    assert!(
        skipped["zero_mapped"].is_u64() && skipped["unreadable"].is_u64(),
        "{v}"
    );
    assert!(
        v["pages"].as_u64().unwrap() >= 2048,
        "the 8 MiB buffer: {v}"
    );
    assert!(v["inputs"][0]["name"].as_str().unwrap().contains(&pid));
    // A live process is not the same twice: the zram-best column says why it is absent.
    assert!(v["baselines"].get("zram-best").is_none(), "{v}");
    assert_eq!(v["zram_best_left_out"].as_array().unwrap().len(), 1);
}

#[test]
fn sim_errors_for_gone_and_unreadable_processes() {
    let mut child = Command::new("true").spawn().unwrap();
    let gone = child.id().to_string();
    child.wait().unwrap();
    fails(&["sim", "--pid", &gone], &["no process with PID", &gone]);
    // Unreadable: as an unprivileged user, PID 1 (needs root to drop privileges).
    if is_root() && Path::new("/usr/bin/setpriv").exists() {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_zpage"))
            .args(["sim", "--pid", "1"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(
            err.contains("PID 1") && err.contains("permission denied"),
            "{err}"
        );
    } else {
        skip("the unreadable-PID case needs root and setpriv");
    }
}

#[test]
fn entropy_json_plot_and_headline() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("entropy.svg");
    let names = [
        "scipy-face-rgb8.pages",
        "scipy-ecg-float64.pages",
        "random-int64-small.pages",
    ];
    let paths: Vec<String> = names.iter().map(|n| sample(n)).collect();
    let mut args = vec!["entropy", "--json", "--plot", plot.to_str().unwrap()];
    args.extend(paths.iter().map(String::as_str));
    let v = json(&args);
    assert_eq!(v["schema"], "zpage-entropy/1");
    let (input, output) = (
        v["input_entropy"].as_f64().unwrap(),
        v["output_entropy"].as_f64().unwrap(),
    );
    assert!(
        output < input,
        "total output entropy below input: {output} vs {input}"
    );
    for input in v["inputs"].as_array().unwrap() {
        assert!(
            input["output_entropy"].as_f64() < input["input_entropy"].as_f64(),
            "{input}"
        );
    }
    // The ladder, per class and in total: conditional entropy never above order-0, and
    // the stored forms of every profile, the dictionary rungs trained on these pages.
    let rungs = |name: &str, f: &serde_json::Value| {
        for key in [
            "pages",
            "input_entropy",
            "output_entropy",
            "order0",
            "order1",
            "order2",
        ] {
            assert!(f[key].is_number(), "{name}.{key}");
        }
        let (o0, o1, o2) = (
            f["order0"].as_f64().unwrap(),
            f["order1"].as_f64().unwrap(),
            f["order2"].as_f64().unwrap(),
        );
        assert!(o2 <= o1 + 1e-9 && o1 <= o0 + 1e-9, "{name}: {o0} {o1} {o2}");
        for profile in ["fast", "dense", "dense_dictionaries", "mixed"] {
            assert!(
                f["stored"][profile].as_f64().unwrap() >= 0.0,
                "{name}.stored.{profile}"
            );
        }
        let stored = |p: &str| f["stored"][p].as_f64().unwrap();
        assert!(
            stored("mixed") <= stored("dense_dictionaries") + 1e-9,
            "{name}"
        );
    };
    for (name, class) in v["classes"].as_object().unwrap() {
        rungs(name, class);
    }
    rungs("total", &v["total"]);
    assert!(v["total"]["stored"]["dense"].as_f64() < v["total"]["stored"]["fast"].as_f64());
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    assert!(svg.starts_with("<svg") && svg.contains("Entropy by class"));
    assert!(svg.contains("From order-0 entropy to the stored bits"));
}

/// `zpage map` on page files (each a band) and on a live process (its mappings): the
/// SVG names them and carries the cells, the PNG is an image, `--json` has the
/// per-mapping figures; a name that is neither is refused.
#[test]
fn the_map_of_files_and_of_a_process() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("map.svg");
    let png = dir.path().join("map.png");
    let data = data_dir();
    let v = json(&[
        "map",
        data.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(v["schema"], "zpage-map/1");
    assert_eq!(v["pages"], 960);
    let regions = v["regions"].as_array().unwrap();
    assert_eq!(regions.len(), 7, "a band per file");
    let pages: u64 = regions.iter().map(|r| r["pages"].as_u64().unwrap()).sum();
    assert_eq!(pages, 960);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("sqlite") && text.contains("data:image/png;base64,"));
    assert!(text.contains("share of the page stored"));
    let out = zpage(&["map", data.to_str().unwrap(), "-o", png.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
    fails(
        &["map", data.to_str().unwrap(), "-o", "/tmp/x.jpg"],
        &[".svg or .png"],
    );
    if !is_root() {
        skip("reading another process's memory needs root");
        return;
    }
    let mut child = child_with_memory();
    let pid = child.id().to_string();
    let v = json(&["map", "--pid", &pid, "-o", svg.to_str().unwrap(), "--json"]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        v["pages"].as_u64().unwrap() >= 2048,
        "its 8 MiB buffer: {}",
        v["pages"]
    );
    assert!(v["regions"].as_array().unwrap().len() > 1);
}

#[test]
fn entropy_errors_are_one_line() {
    fails(&["entropy", "/no/such/dir"], &["/no/such/dir"]);
    // The plot is an SVG: a .png name is refused, not written with SVG inside.
    fails(
        &[
            "entropy",
            &sample("sqlite.pages"),
            "--plot",
            "/tmp/zpage-plot.png",
        ],
        &["zpage-plot.png", ".svg"],
    );
    assert!(!Path::new("/tmp/zpage-plot.png").exists());
    // A model file and a profile are two answers to one question.
    let out = zpage(&[
        "entropy",
        &sample("sqlite.pages"),
        "--profile",
        "fast",
        "--model",
        "m.json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
    fails(
        &[
            "entropy",
            &sample("sqlite.pages"),
            "--plot",
            "/no/such/dir/x.svg",
        ],
        &["x.svg"],
    );
}

#[test]
fn zram_side_by_side_and_its_errors() {
    fails(
        &["zram", &sample("sqlite.pages"), "--device", "zram99"],
        &["no zram device zram99"],
    );
    let Some(device) = ScratchZram::add() else {
        skip("kernel zram needs root and /sys/class/zram-control");
        return;
    };
    let v = json(&[
        "zram",
        &sample("redis-mixed.pages"),
        &sample("sqlite.pages"),
        "--device",
        &device.0,
        "--runs",
        "2",
        "--json",
    ]);
    assert_eq!(v["schema"], "zpage-zram/1");
    assert_eq!(v["runs"], 2);
    for input in v["inputs"].as_array().unwrap() {
        let kernel = &input["kernel"];
        assert_eq!(kernel["verified"], true);
        assert!(kernel["mem_ratio"].as_f64().unwrap() > 1.0, "{kernel}");
        for profile in ["fast", "dense"] {
            assert!(input[profile]["effective_ratio"].as_f64().unwrap() > 1.0);
        }
        assert!(input["zram_best_ratio"].as_f64().unwrap() > kernel["ratio"].as_f64().unwrap());
        // The way in: the store as inserts leave it, below what the idle pass makes of it.
        let way_in = input["tiered"]["store_effective_ratio"].as_f64().unwrap();
        assert!(way_in > 1.0 && way_in < input["tiered"]["effective_ratio"].as_f64().unwrap());
    }
    for field in [
        "way_in_speed_over_kernel_write",
        "way_in_effective_over_kernel_mem",
    ] {
        assert!(v["summary"][field].as_f64().unwrap() > 0.0, "{field}");
    }
    assert!(
        v["summary"]["dense_effective_over_zram_best"]
            .as_f64()
            .unwrap()
            > 0.5
    );
    assert!(
        v["summary"]["dense_effective_over_kernel_mem"]
            .as_f64()
            .unwrap()
            > 1.0
    );
    // Both sample files are under 16 MiB, which the report points out.
    assert_eq!(
        v["summary"]["small_inputs"].as_array().unwrap().len(),
        2,
        "{v}"
    );
    let disksize = std::fs::read_to_string(format!("/sys/block/{}/disksize", device.0)).unwrap();
    assert_eq!(disksize.trim(), "0", "the device is reset afterwards");
    fails(
        &[
            "zram",
            &sample("sqlite.pages"),
            "--device",
            &device.0,
            "--algo",
            "nope",
        ],
        &["no algorithm nope"],
    );
    // Busy: a device with a disksize is someone's.
    std::fs::write(format!("/sys/block/{}/disksize", device.0), "1048576").unwrap();
    fails(
        &["zram", &sample("sqlite.pages"), "--device", &device.0],
        &["in use", "disksize"],
    );
    // Not root.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_zpage"))
        .args(["zram", &sample("sqlite.pages"), "--device", &device.0])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("needs root"), "{}", stderr(&out));
}

/// SIGINT, SIGTERM or SIGHUP while the device holds the pages: the run ends with an
/// error and the device is reset (it used to stay configured, and busy for the next run).
#[test]
fn an_interrupted_zram_run_resets_the_device() {
    let Some(device) = ScratchZram::add() else {
        skip("kernel zram needs root and /sys/class/zram-control");
        return;
    };
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let input = large_file(dir.path(), 34);
    let disksize = format!("/sys/block/{}/disksize", device.0);
    let configured = || std::fs::read_to_string(&disksize).unwrap().trim() != "0";
    for signal in ["INT", "TERM", "HUP"] {
        // The signal may land between kernel runs, where the default action applies (the
        // device is reset then): try until one lands during a run.
        let mut interrupted = false;
        for _ in 0..5 {
            let child = Command::new(env!("CARGO_BIN_EXE_zpage"))
                .args(["zram", &input, "--device", &device.0, "--runs", "100"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let start = std::time::Instant::now();
            while !configured() {
                assert!(
                    start.elapsed().as_secs() < 120,
                    "the device was never configured"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let kill = Command::new("kill")
                .args([format!("-{signal}"), child.id().to_string()])
                .status()
                .unwrap();
            assert!(kill.success());
            let out = child.wait_with_output().unwrap();
            assert!(!configured(), "SIG{signal}: the device is left configured");
            if out.status.code() == Some(1) {
                let err = stderr(&out);
                assert!(err.contains("interrupted by a signal"), "{err}");
                interrupted = true;
                break;
            }
        }
        assert!(interrupted, "SIG{signal} never landed during a kernel run");
    }
    // And the device is free for the next run.
    let v = json(&[
        "zram",
        &sample("sqlite.pages"),
        "--device",
        &device.0,
        "--runs",
        "1",
        "--json",
    ]);
    assert_eq!(v["inputs"][0]["kernel"]["verified"], true);
}

#[test]
fn a_reader_that_goes_away_is_not_a_crash() {
    // `zpage sim | head -1`: the pipe closes before the report is written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_zpage"))
        .arg("sim")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

/// `sim --zram` predicts the kernel's zram beside zpage's store; an algorithm the model
/// does not know is a usage error that says why.
#[test]
fn sim_predicts_the_kernels_zram() {
    let v = json(&[
        "sim",
        &sample("sqlite.pages"),
        "--zram",
        "lz4,lz4:chain=4",
        "--json",
    ]);
    let model = v["zram_model"].as_array().unwrap();
    assert_eq!(model.len(), 2);
    assert_eq!(model[0]["config"], "lz4");
    let mm = &model[0]["mm_stat"];
    for field in common::MM_STAT_FIELDS {
        assert!(mm[field].is_u64(), "{field}: {mm}");
    }
    assert_eq!(mm["orig_data_size"], v["orig_data_size"]);
    let compr = mm["compr_data_size"].as_u64().unwrap();
    assert!(compr > 0 && compr <= mm["mem_used_total"].as_u64().unwrap());
    assert!(model[0]["compress_mb_s"].as_f64().unwrap() > 0.0);
    let v = json(&[
        "sim",
        &sample("sqlite.pages"),
        "--zram",
        "lzo-rle,lzo",
        "--json",
    ]);
    let (rle, plain) = (
        &v["zram_model"][0]["mm_stat"],
        &v["zram_model"][1]["mm_stat"],
    );
    assert!(rle["compr_data_size"].as_u64().unwrap() > 0, "{v}");
    assert!(plain["compr_data_size"].as_u64().unwrap() > 0, "{v}");
    let out = zpage(&["sim", &sample("sqlite.pages"), "--zram", "zstdd"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not an algorithm"),
        "{}",
        stderr(&out)
    );
    // The algorithms this kernel lacks, with their settings and a dictionary trained on
    // the input: stronger settings store no more.
    let v = json(&[
        "sim",
        &sample("sqlite.pages"),
        "--zram",
        "lz4hc,zstd,zstd:level=8:dict,deflate:winbits=15,lz4:recomp=zstd@8",
        "--json",
    ]);
    let compr = |i: usize| {
        v["zram_model"][i]["mm_stat"]["compr_data_size"]
            .as_u64()
            .unwrap()
    };
    assert!(compr(2) < compr(1), "a dictionary helps: {v}");
    assert!(v["zram_model"][2]["dictionary_bytes"].as_u64().unwrap() > 0);
    assert!(compr(0) > compr(1), "zstd beats lz4hc: {v}");
    assert!(compr(3) > 0 && compr(4) > 0, "{v}");
}

/// The model's zsmalloc against the kernel's through frees and compaction: pages written
/// one at a time (each one's compressed size read off the kernel's `compr_data_size` and
/// given to the model, so the allocator alone is compared), a third overwritten with zeros
/// (their objects freed), then `compact`: `mem_used_total`, `pages_compacted` and
/// `compr_data_size` match exactly at each step.
#[test]
fn the_model_follows_the_kernel_through_frees_and_compaction() {
    use zpage::{PAGE_SIZE, Page};
    use zpage_tools::zram::{Device, KernelSetup};
    use zpage_tools::zram_model::{MAX_RECOMP, ZramConfig};
    let Some(scratch) = ScratchZram::add() else {
        skip("kernel zram needs root and /sys/class/zram-control");
        return;
    };
    // Noise of 100 to 3900 bytes, then zeros: every size class, and huge pages.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pages: Vec<Page> = (0..3000)
        .map(|_| {
            let mut page = Page::zeroed();
            let noise = 100 + (next() % 3800) as usize;
            for b in &mut page.bytes_mut()[..noise] {
                *b = next() as u8;
            }
            page
        })
        .collect();
    let freed: Vec<usize> = (0..pages.len()).filter(|_| next() % 3 == 0).collect();
    let device = Device::open_free(&scratch.0).unwrap();
    let kernel = device
        .configure(&KernelSetup::algorithm("lz4"), pages.len() as u64)
        .unwrap();
    let mut model = ZramConfig::parse("lz4").unwrap().device().unwrap();
    let mut compr = 0;
    for (i, page) in pages.iter().enumerate() {
        kernel
            .write_at(i as u64, std::slice::from_ref(page))
            .unwrap();
        let now = kernel.mm_stat().unwrap();
        let len = (now.compr_data_size - compr) as usize;
        compr = now.compr_data_size;
        // A page the kernel stored whole counts a page; the model's rule gives the same.
        assert!(model.write_sized(i, len, [0; MAX_RECOMP]));
    }
    let check = |what: &str, model: &zpage::MmStat| {
        let kernel = kernel.mm_stat().unwrap();
        assert_eq!(
            (
                kernel.compr_data_size,
                kernel.mem_used_total,
                kernel.pages_compacted
            ),
            (
                model.compr_data_size,
                model.mem_used_total,
                model.pages_compacted
            ),
            "{what}: kernel (compr, mem, compacted) vs the model"
        );
    };
    check("written", &model.mm_stat());
    for &i in &freed {
        kernel.write_at(i as u64, &[Page::zeroed()]).unwrap();
        assert!(model.write_at(i, &Page::zeroed()));
    }
    check("a third freed", &model.mm_stat());
    kernel.compact().unwrap();
    model.compact();
    let after = model.mm_stat();
    assert!(after.pages_compacted > 0, "compaction had work: {after:?}");
    check("compacted", &after);
    assert_eq!(after.same_pages as usize, freed.len());
    assert!(after.orig_data_size == (pages.len() * PAGE_SIZE) as u64);
}

/// `--mem-limit` works in plain `sim` too: writes past it fail and are counted, the pages
/// stored read back, and the predicted zram refuses its own.
#[test]
fn sim_honours_a_memory_limit() {
    let v = json(&[
        "sim",
        &sample("sqlite.pages"),
        "--mem-limit",
        "64K",
        "--zram",
        "lz4",
        "--json",
    ]);
    assert!(v["refused_pages"].as_u64().unwrap() > 0, "{v}");
    assert!(v["mem_used_total"].as_u64().unwrap() <= 64 << 10);
    assert_eq!(v["verified"], true);
    let model = &v["zram_model"][0];
    assert!(model["failed_writes"].as_u64().unwrap() > 0, "{model}");
    assert!(model["mm_stat"]["mem_used_total"].as_u64().unwrap() <= 64 << 10);
    assert_eq!(model["mm_stat"]["mem_limit"].as_u64(), Some(64 << 10));
}
