//! `zpage quantize`: an image's colours clustered to K, the result measured (MSE, PSNR,
//! entropy, the bytes zpage's store needs) and written as PNG, beside the original if
//! asked, with a plot of PSNR and stored bytes against K.

use clap::Args;
use std::path::PathBuf;
use zpage_tools::quantize::{self, Choice, Image, Method, Report};

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// Raw interleaved 8-bit pixels (a page file or any raw file), or a PNG.
    file: PathBuf,
    /// Width in pixels (raw input; a PNG has its own).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    width: Option<u32>,
    /// Height in pixels (raw input).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    height: Option<u32>,
    /// Samples per pixel of raw input (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=4))]
    channels: u8,
    /// The number of colours (1 to 256).
    #[arg(long, conflicts_with = "max_mse")]
    k: Option<usize>,
    /// Instead of --k: double K from 2 until the mean squared error is at most this.
    #[arg(long)]
    max_mse: Option<f64>,
    /// The clustering: kmeans, minibatch (mini-batch k-means) or gmm (a Gaussian
    /// mixture).
    #[arg(long, default_value = "kmeans", value_parser = Method::parse)]
    method: Method,
    /// Write the quantised image as a PNG.
    #[arg(short, long, value_name = "FILE.png")]
    output: Option<PathBuf>,
    /// Write the original and the quantised image side by side as a PNG.
    #[arg(long, value_name = "FILE.png")]
    side_by_side: Option<PathBuf>,
    /// Write an SVG of PSNR and stored bytes against K (with --k, every power of two up
    /// to it is run too).
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

pub fn run(args: QuantizeArgs) -> Result<String, String> {
    if let Some(plot) = &args.plot {
        super::check_extension("--plot", plot, "svg")?;
    }
    if let Some(path) = &args.output {
        super::check_extension("-o", path, "png")?;
    }
    if let Some(path) = &args.side_by_side {
        super::check_extension("--side-by-side", path, "png")?;
    }
    let size = match (args.width, args.height) {
        (Some(w), Some(h)) => Some((w as usize, h as usize)),
        (None, None) => None,
        _ => return Err("give both --width and --height, or neither (a PNG)".into()),
    };
    let (image, tail) =
        Image::load(&args.file, size, usize::from(args.channels)).map_err(|e| e.to_string())?;
    let choice = match (args.k, args.max_mse) {
        (Some(k), _) => Choice::Fixed {
            k,
            sweep: args.plot.is_some(),
        },
        (None, Some(max)) => Choice::MaxMse(max),
        (None, None) => return Err("give --k K or --max-mse E".into()),
    };
    let (report, quantised) =
        quantize::run(&image, choice, args.method, tail).map_err(|e| e.to_string())?;
    if let Some(path) = &args.output {
        quantised.image.write_png(path).map_err(|e| e.to_string())?;
    }
    if let Some(path) = &args.side_by_side {
        image
            .beside(&quantised.image)
            .write_png(path)
            .map_err(|e| e.to_string())?;
    }
    if let Some(path) = &args.plot {
        super::plot::quantize_svg(&report, path)?;
    }
    Ok(if args.json {
        super::json(&report)
    } else {
        print_report(&report, &args)
    })
}

fn db(psnr: Option<f64>) -> String {
    psnr.map_or("lossless".to_string(), |p| format!("{p:.2} dB"))
}

fn print_report(r: &Report, args: &QuantizeArgs) -> String {
    let mut out = String::new();
    outln!(
        out,
        "zpage quantize: {} ({}x{}, {} channels), {:?}, K = {}",
        args.file.display(),
        r.width,
        r.height,
        r.channels,
        r.method,
        r.chosen.k
    );
    if r.ignored_tail_bytes > 0 {
        outln!(
            out,
            "  ({} bytes past the image in the page file's last page ignored)",
            r.ignored_tail_bytes
        );
    }
    outln!(out);
    outln!(out, "  MSE                {:.3}", r.chosen.mse);
    outln!(out, "  PSNR               {}", db(r.chosen.psnr_db));
    outln!(
        out,
        "  entropy            {:.3} -> {:.3} bits per pixel (order 0, a pixel's colour one symbol)",
        r.entropy_before,
        r.entropy_after
    );
    let raw = (r.width * r.height * r.channels) as f64;
    for (name, bytes) in [
        ("stored, original", r.stored_bytes_original),
        ("stored, quantised", r.chosen.stored_bytes_quantised),
        ("stored, palette form", r.chosen.stored_bytes_palette),
    ] {
        outln!(
            out,
            "  {name:<20} {bytes:>10} bytes ({:.2}x the raw pixels; {:.2}x less than the original stored)",
            raw / bytes.max(1) as f64,
            r.stored_bytes_original as f64 / bytes.max(1) as f64
        );
    }
    outln!(
        out,
        "  time               {:.2} s (fit and assign)",
        r.chosen.seconds
    );
    if r.steps.len() > 1 {
        outln!(out);
        outln!(
            out,
            "  {:>4} {:>10} {:>11} {:>14} {:>14} {:>8}",
            "K",
            "MSE",
            "PSNR",
            "quantised B",
            "palette B",
            "seconds"
        );
        for s in &r.steps {
            outln!(
                out,
                "  {:>4} {:>10.3} {:>11} {:>14} {:>14} {:>8.2}",
                s.k,
                s.mse,
                db(s.psnr_db),
                s.stored_bytes_quantised,
                s.stored_bytes_palette,
                s.seconds
            );
        }
    }
    out
}
