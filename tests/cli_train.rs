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
    assert!(v["test_pages"].as_u64().unwrap() > 0);
    assert!((0.0..=1.0).contains(&v["accuracy"].as_f64().unwrap()));
    assert_eq!(v["confusion"].as_array().unwrap().len(), 6);
}

#[test]
fn bad_inputs_get_one_line_errors() {
    let dir = std::env::temp_dir().join(format!("zpage-cli-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let partial = dir.join("partial.pages");
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
