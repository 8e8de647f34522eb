//! `zpage map`: a picture of where each pattern lives in memory and how well each part
//! compresses (SVG with the mappings named, a legend and the scale, or a bare PNG), and
//! with `--json` the per-mapping figures.

use super::progress::Progress;
use base64::Engine as _;
use clap::Args;
use std::fmt::Write as _;
use std::path::PathBuf;
use zpage::codec::Class;
use zpage_tools::map::{self, LABEL_ROWS, Map, Row, WIDTH};
use zpage_tools::procmem;

#[derive(Args, Debug)]
pub struct MapArgs {
    /// Page files or directories (walked for *.pages), each file a band of the map.
    #[arg(required_unless_present = "pid", conflicts_with = "pid")]
    paths: Vec<PathBuf>,
    /// A live process: its private anonymous mappings in address order.
    #[arg(long)]
    pid: Option<u32>,
    /// The picture: FILE.svg (mappings named, legend, scale) or FILE.png (the cells
    /// alone).
    #[arg(short, long, value_name = "FILE.svg|FILE.png")]
    output: PathBuf,
    /// Pixels a cell (0: by the input's size).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=16))]
    cell: u32,
    /// Print the per-mapping figures as one JSON object (schema zpage-map/1).
    #[arg(long)]
    json: bool,
    /// Zero-fill a partial last page instead of refusing the file.
    #[arg(long)]
    pad: bool,
}

pub fn run(args: MapArgs) -> Result<String, String> {
    let ext = args
        .output
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let svg = match ext.as_deref() {
        Some("svg") => true,
        Some("png") => false,
        _ => {
            return Err(format!(
                "-o {}: the map is written as SVG or PNG; give a name ending in .svg or .png",
                args.output.display()
            ));
        }
    };
    let engine = zpage::Engine::new(zpage::Profile::Dense);
    let map = match args.pid {
        Some(pid) => {
            let mut process = procmem::Process::open(pid).map_err(|e| e.to_string())?;
            let mappings = process.mappings();
            let mut progress = Progress::new(
                zpage_tools::source::PageSource::expected_pages(&process),
                "mapping",
                args.json,
            );
            map::build(&mut process, Some(mappings), &engine, &mut |n| {
                progress.inc(n)
            })?
        }
        None => {
            let files = super::open_sources(&args.paths, args.pad)?;
            let (mut files, regions) = map::Files::new(files);
            let total = zpage_tools::source::PageSource::expected_pages(&files);
            let mut progress = Progress::new(total, "mapping", args.json);
            map::build(&mut files, Some(regions), &engine, &mut |n| progress.inc(n))?
        }
    };
    let cell = match args.cell {
        0 => auto_cell(&map),
        n => n as usize,
    };
    let bytes = if svg {
        picture(&map, cell)?.into_bytes()
    } else {
        map.png(cell)?
    };
    std::fs::write(&args.output, bytes)
        .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
    if args.json {
        return Ok(super::json(&map));
    }
    let mut out = summary(&map);
    outln!(out, "map: {}", args.output.display());
    Ok(out)
}

/// Cells big enough to see on a small input, one pixel on a large one.
fn auto_cell(map: &Map) -> usize {
    match map.rows.len() {
        0..=200 => 6,
        201..=500 => 4,
        501..=1000 => 2,
        _ => 1,
    }
}

/// A ratio as reports show it: a mapping of zero or same-filled pages stores next to
/// nothing, and its ratio says only that.
fn ratio(r: f64) -> String {
    if r > 1000.0 {
        "same-filled".to_string()
    } else {
        format!("{r:.2}")
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// One line for the whole, then one per mapping.
fn summary(map: &Map) -> String {
    let mut out = String::new();
    outln!(
        out,
        "{}: {} pages ({}) in {} mapping(s), stored in {} (ratio {:.2}); one cell = {} page(s)",
        map.input,
        map.pages,
        mib(map.pages * zpage::PAGE_SIZE as u64),
        map.regions.len(),
        mib(map.stored_bytes),
        map.ratio,
        map.pages_per_cell
    );
    for r in &map.regions {
        let top = (r.classes.iter())
            .max_by_key(|(_, n)| **n)
            .map_or("", |(c, _)| c.name());
        outln!(
            out,
            "  {:>#14x}  {:<28} {:>8} pages  ratio {:>11}  mostly {top}",
            r.start,
            r.name,
            r.pages,
            ratio(r.ratio)
        );
    }
    out
}

/// The SVG: the cells (an embedded PNG), each mapping's name beside its band, the legend
/// and the scale.
fn picture(map: &Map, cell: usize) -> Result<String, String> {
    let png = map.png(cell)?;
    let (width, height) = (WIDTH * cell, map.pixels(cell).1);
    let (left, top, legend) = (300usize, 56usize, 260usize);
    let total_w = left + width + legend;
    let total_h = (top + height + 20).max(top + 360);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{total_h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let title = format!(
        "{}: {} pages, {} stored in {} (ratio {:.2})",
        map.input,
        map.pages,
        mib(map.pages * zpage::PAGE_SIZE as u64),
        mib(map.stored_bytes),
        map.ratio
    );
    let _ = write!(
        s,
        r#"<text x="10" y="22" font-size="16">{}</text>"#,
        escape(&title)
    );
    let row_bytes = WIDTH as u64 * map.pages_per_cell * zpage::PAGE_SIZE as u64;
    let _ = write!(
        s,
        r##"<text x="10" y="42" fill="#555">address order, left to right, top to bottom; a cell = {} page(s), a row = {} KiB; grey bands: untouched stretches</text>"##,
        map.pages_per_cell,
        row_bytes >> 10
    );
    let _ = write!(
        s,
        r#"<image x="{left}" y="{top}" width="{width}" height="{height}" style="image-rendering:pixelated" href="data:image/png;base64,{}"/>"#,
        base64::engine::general_purpose::STANDARD.encode(&png)
    );
    // Labels: each mapping's name and figures at its label row; folds their size.
    let mut y = top;
    for row in &map.rows {
        match *row {
            Row::Label(i) => {
                let r = &map.regions[i];
                let label = format!(
                    "{} {:#x}: {} pages, ratio {}",
                    r.name,
                    r.start,
                    r.pages,
                    ratio(r.ratio)
                );
                let _ = write!(
                    s,
                    r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                    left - 6,
                    y + LABEL_ROWS * cell,
                    escape(&label)
                );
                y += LABEL_ROWS * cell;
            }
            Row::Cells(..) => y += cell,
            Row::Fold(_, rows) => {
                let h = cell.max(2);
                if h >= 8 || rows * row_bytes >= 64 << 20 {
                    let _ = write!(
                        s,
                        r##"<text x="{}" y="{}" text-anchor="end" fill="#888" font-size="10">{} untouched</text>"##,
                        left - 6,
                        y + h,
                        mib(rows * row_bytes)
                    );
                }
                y += h;
            }
        }
    }
    // The legend: a swatch per class present, then the shading.
    let x = left + width + 20;
    let mut ly = top + 10;
    let present: Vec<Class> = Class::ALL
        .iter()
        .copied()
        .filter(|c| map.regions.iter().any(|r| r.classes.contains_key(c)))
        .collect();
    let _ = write!(
        s,
        r#"<text x="{x}" y="{ly}" font-weight="bold">class</text>"#
    );
    for class in &present {
        ly += 20;
        let [r, g, b] = map::colour(*class);
        let _ = write!(
            s,
            r##"<rect x="{x}" y="{}" width="14" height="14" fill="#{r:02x}{g:02x}{b:02x}"/><text x="{}" y="{}">{}</text>"##,
            ly - 11,
            x + 20,
            ly,
            class.name()
        );
    }
    ly += 36;
    let _ = write!(
        s,
        r#"<text x="{x}" y="{ly}" font-weight="bold">share of the page stored</text>"#
    );
    ly += 8;
    for (k, share) in [0.05, 0.1, 0.25, 0.5, 1.0].iter().enumerate() {
        let [r, g, b] = map::fade(map::colour(Class::Zstd), *share);
        let _ = write!(
            s,
            r##"<rect x="{}" y="{ly}" width="36" height="14" fill="#{r:02x}{g:02x}{b:02x}"/><text x="{}" y="{}" font-size="10">{:.0}%</text>"##,
            x + k * 38,
            x + k * 38 + 6,
            ly + 28,
            share * 100.0
        );
    }
    s.push_str("</svg>\n");
    Ok(s)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
