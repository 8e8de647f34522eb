//! `zpage cold`, as a user runs it: the cold tier's coders side by side.

mod common;

use common::{fails, json, sample};

/// On a sample file the report names each coder's bytes against zstd-19 with the
/// dictionaries; every mixed page was decoded and compared (or the command fails).
#[test]
fn cold_compares_the_coders_on_held_out_pages() {
    let report = json(&[
        "cold",
        &sample("redis-mixed.pages"),
        "--test-pages",
        "8",
        "--json",
    ]);
    assert_eq!(report["schema"], "zpage-cold/1");
    let row = &report["inputs"][0];
    assert_eq!(row["pages"], 8);
    for field in [
        "zstd19_dict_bytes",
        "xz_bytes",
        "mixed_bytes",
        "mixed_unprimed_bytes",
    ] {
        assert!(row[field].as_u64().unwrap() > 0, "{field}: {row}");
    }
    // Context mixing beats zstd-19 on these pages, with or without dictionaries.
    assert!(row["mixed_vs_zstd"].as_f64().unwrap() < 1.0, "{row}");
    assert!(row["mixed_decode_mb_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn cold_refuses_bad_inputs_in_one_line() {
    fails(&["cold", "/no/such/file.pages"], &["no such file"]);
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.pages");
    std::fs::write(&short, [1u8; 5000]).unwrap();
    fails(
        &["cold", short.to_str().unwrap()],
        &["whole number of 4096-byte pages"],
    );
    let filled = dir.path().join("filled.pages");
    std::fs::write(&filled, [7u8; 8192]).unwrap();
    fails(
        &["cold", filled.to_str().unwrap()],
        &["no page that is not same-filled"],
    );
}
