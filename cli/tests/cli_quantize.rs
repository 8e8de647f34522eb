//! `zpage quantize` as a user runs it: K colours by each method on the shipped slice of
//! scipy's face, the PNGs and the plot it writes, and every error a user can cause.

mod common;

use common::{fails, json, sample, stderr, zpage};
use zpage_tools::quantize::Image;

/// The shipped slice: the first 85 rows of the 1024-pixel-wide face (the page file's
/// last 1024 bytes are the next row's start).
fn face() -> Vec<String> {
    let file = sample("scipy-face-rgb8.pages");
    ["quantize", &file, "--width", "1024", "--height", "85"]
        .map(String::from)
        .to_vec()
}

fn args<'a>(base: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    base.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

#[test]
fn sixteen_colours_by_each_method() {
    let dir = tempfile::tempdir().unwrap();
    let base = face();
    for method in ["kmeans", "minibatch", "gmm"] {
        let out = dir.path().join(format!("{method}.png"));
        let side = dir.path().join(format!("{method}-side.png"));
        let (out_s, side_s) = (out.to_str().unwrap(), side.to_str().unwrap());
        let run = args(
            &base,
            &[
                "--k",
                "16",
                "--method",
                method,
                "-o",
                out_s,
                "--side-by-side",
                side_s,
                "--json",
            ],
        );
        let v = json(&run);
        assert_eq!(v["method"], method);
        assert_eq!(v["k"], 16);
        for field in [
            "mse",
            "psnr_db",
            "entropy_before",
            "entropy_after",
            "stored_bytes_original",
            "stored_bytes_quantised",
            "stored_bytes_palette",
            "seconds",
        ] {
            assert!(v[field].is_number(), "{method}: {field} in {v}");
        }
        assert!(v["psnr_db"].as_f64().unwrap() > 22.0, "{method}: {v}");
        assert!(v["entropy_after"].as_f64().unwrap() <= 4.0 + 1e-9);
        let original = v["stored_bytes_original"].as_u64().unwrap();
        let palette = v["stored_bytes_palette"].as_u64().unwrap();
        assert!(
            palette * 4 <= original,
            "{method}: palette {palette} vs {original}"
        );
        assert_eq!(v["ignored_tail_bytes"], 1024);
        let (png, _) = Image::load(&out, None, 3).unwrap();
        assert_eq!((png.width, png.height, png.channels), (1024, 85, 3));
        let (both, _) = Image::load(&side, None, 3).unwrap();
        assert_eq!((both.width, both.height), (2048, 85));
        // Seeded: the same run gives the same figures.
        let again = json(&run);
        assert_eq!(again["mse"], v["mse"], "{method}");
    }
}

#[test]
fn the_mse_threshold_raises_k_and_the_plot_shows_each_step() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("k.svg");
    let base = face();
    let v = json(&args(
        &base,
        &[
            "--max-mse",
            "150",
            "--plot",
            plot.to_str().unwrap(),
            "--json",
        ],
    ));
    let steps = v["steps"].as_array().unwrap();
    let ks: Vec<u64> = steps.iter().map(|s| s["k"].as_u64().unwrap()).collect();
    assert_eq!(ks, [2, 4, 8, 16], "{v}");
    assert!(v["mse"].as_f64().unwrap() <= 150.0);
    assert!(steps[2]["mse"].as_f64().unwrap() > 150.0);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("PSNR"));
}

#[test]
fn quantize_errors_are_one_line() {
    let base = face();
    let file = sample("scipy-face-rgb8.pages");
    fails(
        &[
            "quantize", &file, "--width", "1000", "--height", "85", "--k", "4",
        ],
        &["262144 bytes do not match 1000x85x3"],
    );
    fails(&args(&base, &["--k", "0"]), &["K = 0"]);
    let dir = tempfile::tempdir().unwrap();
    let tiny = dir.path().join("tiny.raw");
    std::fs::write(&tiny, [7u8; 4 * 4 * 3]).unwrap();
    let tiny = tiny.to_str().unwrap();
    fails(
        &[
            "quantize", tiny, "--width", "4", "--height", "4", "--k", "17",
        ],
        &["K = 17", "16 pixels"],
    );
    let png = dir.path().join("bad.png");
    std::fs::write(&png, b"\x89PNG\r\n\x1a\ntruncated").unwrap();
    fails(
        &["quantize", png.to_str().unwrap(), "--k", "4"],
        &["not a readable PNG"],
    );
    fails(&["quantize", &file, "--k", "4"], &["--width and --height"]);
    fails(&args(&base, &["--max-mse=-1"]), &["--max-mse"]);
    fails(&args(&base, &["--k", "4", "-o", "out.jpg"]), &["PNG"]);
    fails(
        &["quantize", "/no/such/file", "--k", "4"],
        &["/no/such/file"],
    );
    let out = zpage(&args(&base, &["--method", "dbscan", "--k", "4"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("kmeans, minibatch, gmm"));
}
