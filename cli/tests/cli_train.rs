//! The `zpage train` command as a user runs it.

mod common;

use common::zpage;

#[test]
fn train_json_has_the_documented_fields() {
    let data = common::data_dir();
    let out = zpage(&[
        "train",
        data.to_str().unwrap(),
        "--profile",
        "fast",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty(), "stderr must stay silent with --json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for key in [
        "accuracy",
        "regret",
        "classify_ns_per_page",
        "test_pages",
        "confusion",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["schema"], "zpage-train/1");
    // Pretty-printed, as every command's JSON.
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("{\n  \""));
    assert!(v["test_pages"].as_u64().unwrap() > 0);
    assert!((0.0..=1.0).contains(&v["accuracy"].as_f64().unwrap()));
    // A row per class, in tag order.
    assert_eq!(
        v["confusion"].as_array().unwrap().len(),
        zpage::Class::ALL.len()
    );
}

#[test]
fn leave_one_out_tests_each_input_on_a_tree_trained_on_the_others() {
    let data = common::data_dir();
    let out = zpage(&["train", data.to_str().unwrap(), "--leave-one-out", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["schema"], "zpage-train-leave-one-out/1");
    let inputs = v["inputs"].as_array().unwrap();
    let files = std::fs::read_dir(&data).unwrap().count();
    assert_eq!(inputs.len(), files, "{v}");
    let (mut tree, mut oracle) = (0, 0);
    for input in inputs {
        let (t, o) = (
            input["tree_bytes"].as_u64().unwrap(),
            input["oracle_bytes"].as_u64().unwrap(),
        );
        (tree, oracle) = (tree + t, oracle + o);
    }
    let regret = v["regret"].as_f64().unwrap();
    assert!((regret - (tree as f64 - oracle as f64) / oracle as f64).abs() < 1e-9);
    // One input leaves nothing to train on.
    let one = data.join("sqlite.pages");
    let out = zpage(&["train", one.to_str().unwrap(), "--leave-one-out"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least two inputs"));
}

#[test]
fn bad_inputs_get_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("partial.pages");
    std::fs::write(&partial, vec![1u8; 4096 * 3 + 10]).unwrap();
    for (args, needle) in [
        (vec!["train", "/no/such/file.pages"], "no such file"),
        (
            vec!["train", partial.to_str().unwrap()],
            "not a whole number",
        ),
    ] {
        let out = zpage(&args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle) && err.trim().lines().count() == 1,
            "{err}"
        );
    }
}

/// With a dictionary file the oracle prices the zstd leaf with the dictionary form: the
/// labels change (the zstd pages got smaller and slower), and a bad file is one line.
#[test]
fn training_prices_dictionary_forms_when_given_them() {
    let dir = tempfile::tempdir().unwrap();
    let dicts = dir.path().join("sample.zpd");
    let dicts = dicts.to_str().unwrap();
    let data = common::data_dir();
    let file = data.to_str().unwrap().to_string();
    let made = zpage(&["dict", &file, "-o", dicts]);
    assert!(made.status.success(), "{}", common::stderr(&made));
    let plain = common::json(&["train", &file, "--json"]);
    let priced = common::json(&["train", &file, "--json", "--dictionary-file", dicts]);
    assert_eq!(priced["test_pages"], plain["test_pages"]);
    assert_ne!(
        priced["oracle_bytes"], plain["oracle_bytes"],
        "dictionary forms priced"
    );
    common::fails(
        &[
            "train",
            &file,
            "--dictionary-file",
            &common::sample("sqlite.pages"),
        ],
        &["not a zpage dictionary set"],
    );
}

/// `--cold` judges the tree on what the store keeps after its cold passes: the life
/// cycle's bytes after each step, never growing, the idle step's equal to the plain
/// figures, and the leave-one-out summed over its inputs.
#[test]
fn the_cold_passes_are_priced_when_asked() {
    let data = common::data_dir();
    let file = data.to_str().unwrap().to_string();
    let plain = common::json(&["train", &file, "--json"]);
    assert!(plain["cold"].is_null(), "not priced unless asked");
    let v = common::json(&["train", &file, "--json", "--cold"]);
    let cold = &v["cold"];
    for who in ["tree", "oracle"] {
        let step = |name: &str| cold[who][name].as_u64().unwrap();
        assert!(
            step("coldest") <= step("cold") && step("cold") <= step("idle"),
            "{cold}"
        );
    }
    assert_eq!(cold["tree"]["idle"], plain["tree_bytes"]);
    assert_eq!(cold["oracle"]["idle"], plain["oracle_bytes"]);
    // The sample's pages are memory: neighbours pack smaller than the pages alone.
    assert!(cold["units_kept"].as_u64().unwrap() > 0, "{cold}");
    assert!(cold["units"].as_u64() >= cold["units_kept"].as_u64());
    let out = zpage(&["train", &file, "--cold", "--leave-one-out"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = common::stdout(&out);
    assert!(text.contains("after the coldest pass"), "{text}");
    let loo = common::json(&["train", &file, "--cold", "--leave-one-out", "--json"]);
    for input in loo["inputs"].as_array().unwrap() {
        let c = &input["cold"];
        assert_eq!(c["tree"]["idle"], input["tree_bytes"], "{input}");
        assert!(c["regret_coldest"].is_f64(), "{input}");
    }
}
