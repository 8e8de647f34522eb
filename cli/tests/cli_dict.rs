//! `zpage dict` and the dictionary options of `zpage sim`, as a user runs them.

mod common;

use common::{data_dir, fails, json, sample};

/// `zpage dict` on the shipped sample, saved in `dir`: the file and the command's report.
fn trained_on_the_sample(dir: &tempfile::TempDir) -> (String, serde_json::Value) {
    let file = dir.path().join("sample.zpd");
    let file = file.to_str().unwrap().to_string();
    let data = data_dir();
    let trained = json(&["dict", data.to_str().unwrap(), "-o", &file, "--json"]);
    (file, trained)
}

/// Trained offline on the sample, saved, and loaded by `sim`: every input's store
/// encodes with the set (its memory counted in each), the pages read back, and the
/// stored data is smaller than without it.
#[test]
fn dictionaries_trained_offline_are_used_by_sim() {
    let dir = tempfile::tempdir().unwrap();
    let (file, trained) = trained_on_the_sample(&dir);
    let file = file.as_str();
    let data = data_dir();
    let data = data.to_str().unwrap();
    assert_eq!(trained["schema"], "zpage-dict/1");
    assert!(trained["clusters"].as_u64().unwrap() >= 1, "{trained}");
    assert!(trained["zstd_pages"].as_u64().unwrap() > 0);
    // A twin (or 0) per cluster, each at most the largest size tried.
    let twins = trained["twin_bytes"].as_array().unwrap();
    assert_eq!(twins.len() as u64, trained["clusters"].as_u64().unwrap());
    assert!(
        twins.iter().all(|t| t.as_u64().unwrap() <= 64 << 10),
        "{trained}"
    );
    let plain = json(&["sim", data, "--json", "--codecs", "lz4"]);
    let with = json(&[
        "sim",
        data,
        "--json",
        "--codecs",
        "lz4",
        "--dictionary-file",
        file,
    ]);
    assert_eq!(with["verified"], true);
    assert_eq!(
        with["dictionaries"],
        with["inputs"].as_array().unwrap().len() * trained["clusters"].as_u64().unwrap() as usize
    );
    assert!(with["dictionary_bytes"].as_u64().unwrap() > 0);
    assert!(with["compr_data_size"].as_u64() < plain["compr_data_size"].as_u64());
    // A damaged or foreign file is one line, not a panic or a store without it.
    let bad = dir.path().join("bad.zpd");
    let bytes = std::fs::read(file).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() - 3]).unwrap();
    let bad = bad.to_str().unwrap();
    fails(
        &["sim", data, "--dictionary-file", bad],
        &["not a zpage dictionary set"],
    );
    fails(
        &["sim", data, "--dictionary-file", &sample("sqlite.pages")],
        &["not a zpage dictionary set"],
    );
    fails(
        &["sim", data, "--dictionary-file", "/nonexistent.zpd"],
        &["/nonexistent.zpd"],
    );
    // Input no dictionary serves: said so.
    fails(
        &["dict", &sample("random-int64-small.pages"), "-o", file],
        &["no page of the input is stored as zstd"],
    );
}

/// `sim --dictionaries N`: each store trains by itself; with N above what any input
/// holds, none does, and the report says 0.
#[test]
fn sim_trains_dictionaries_online_when_asked() {
    let data = data_dir();
    let data = data.to_str().unwrap();
    let never = json(&[
        "sim",
        data,
        "--json",
        "--codecs",
        "lz4",
        "--dictionaries",
        "100000",
    ]);
    assert_eq!(never["dictionaries"], 0);
    let file = sample("sqlite.pages");
    let online = json(&[
        "sim",
        &file,
        "--json",
        "--codecs",
        "lz4",
        "--dictionaries",
        "20",
    ]);
    assert_eq!(online["verified"], true);
    assert!(online["dictionaries"].as_u64().is_some());
}

/// The emulated zram-best column runs on page files by default and is left out for a
/// live process (which cannot be read twice).
#[test]
fn zram_best_is_a_default_baseline() {
    let v = json(&["sim", &sample("sqlite.pages"), "--json"]);
    let best = &v["baselines"]["zram-best"];
    assert!(best["ratio"].as_f64().unwrap() > v["baselines"]["zstd-3"]["ratio"].as_f64().unwrap());
}

/// A life cycle over several inputs with one dictionary file charges the set once (the
/// inputs stand for one machine's memory), not once per input.
#[test]
fn a_life_cycle_charges_a_dictionary_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let (file, trained) = trained_on_the_sample(&dir);
    let file = file.as_str();
    let data = data_dir();
    let data = data.to_str().unwrap();
    let clusters = trained["clusters"].as_u64().unwrap();
    let v = json(&[
        "sim",
        data,
        "--lifecycle",
        "--cold-level",
        "0",
        "--dictionary-file",
        file,
        "--json",
    ]);
    assert!(v["inputs"].as_array().unwrap().len() > 1);
    for stage in v["stages"].as_array().unwrap() {
        assert_eq!(stage["dictionaries"].as_u64(), Some(clusters), "{stage}");
    }
}
