//! The plots, SVGs (plotters' SVG backend, no font libraries): the entropy plot (the
//! per-page entropy distribution before and after the class transforms, and per-class
//! bars), how a sampled process's `mm_stat` evolves in a tiered store, and a life
//! cycle's steps.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::Path;
use zpage_tools::entropy::{Distribution, Report};
use zpage_tools::lifecycle::{Evolution, Lifecycle};
use zpage_tools::quantize;

const BEFORE: RGBColor = RGBColor(0x4c, 0x72, 0xb0);
const AFTER: RGBColor = RGBColor(0xdd, 0x84, 0x52);

/// The entropy plot: the per-page distribution, per-class order-0 bars, and the ladder
/// from order-0 to the stored bits.
pub fn entropy_svg(report: &Report, path: &Path) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot write plot {}: {e}", path.display());
    let root = SVGBackend::new(path, (1800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let panels = root.split_evenly((1, 3));
    cdf(report, &panels[0]).map_err(|e| fail(&e))?;
    bars(report, &panels[1]).map_err(|e| fail(&e))?;
    ladder(report, &panels[2]).map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}

/// Per class and in total, the ladder's rungs side by side, bits per input byte.
fn ladder(report: &Report, area: &Area) -> DrawResult {
    let rows: Vec<(&str, &zpage_tools::entropy::Figures)> = report
        .classes
        .iter()
        .map(|(class, f)| (class.name(), f))
        .chain([("total", &report.total)])
        .collect();
    type Rung = fn(&zpage_tools::entropy::Figures) -> Option<f64>;
    let rungs: [(&str, RGBColor, Rung); 8] = [
        ("order-0 before", BEFORE, |f| Some(f.input_entropy)),
        ("order-0 after", AFTER, |f| Some(f.order0)),
        ("order-1", RGBColor(0x8c, 0x61, 0x3c), |f| Some(f.order1)),
        ("order-2", RGBColor(0xc4, 0x4e, 0x52), |f| Some(f.order2)),
        ("stored fast", RGBColor(0x81, 0x72, 0xb3), |f| {
            f.stored.get("fast").copied()
        }),
        ("stored dense", RGBColor(0x55, 0xa8, 0x68), |f| {
            f.stored.get("dense").copied()
        }),
        ("dense + dictionaries", RGBColor(0x64, 0xb5, 0xcd), |f| {
            f.stored.get("dense_dictionaries").copied()
        }),
        ("mixed (cold)", RGBColor(0x33, 0x33, 0x33), |f| {
            f.stored.get("mixed").copied()
        }),
    ];
    let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let series =
        rungs.map(|(label, color, rung)| (label, color, rows.iter().map(|r| rung(r.1)).collect()));
    grouped_bars(
        area,
        "From order-0 entropy to the stored bits",
        &names,
        &series,
    )
}

/// Bars in bits per input byte, a group per name with a bar per series (a series
/// without a value for a name leaves its place empty), labelled under each group.
fn grouped_bars(
    area: &Area,
    caption: &str,
    names: &[&str],
    series: &[(&str, RGBColor, Vec<Option<f64>>)],
) -> DrawResult {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..names.len() as f64, 0f64..8f64)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 && i < names.len() {
                names[i].to_string()
            } else {
                String::new()
            }
        })
        .y_desc("bits per input byte")
        .draw()?;
    let width = 0.8 / series.len() as f64;
    for (k, &(label, color, ref values)) in series.iter().enumerate() {
        chart
            .draw_series(values.iter().enumerate().filter_map(|(i, value)| {
                let x = i as f64 + 0.1 + k as f64 * width;
                Some(Rectangle::new(
                    [(x, 0.0), (x + width, (*value)?)],
                    color.filled(),
                ))
            }))?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// An SVG of two panels side by side, drawn by `left` and `right`.
fn two_panels(
    path: &Path,
    left: impl FnOnce(&Area) -> DrawResult,
    right: impl FnOnce(&Area) -> DrawResult,
) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot write plot {}: {e}", path.display());
    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (left_area, right_area) = root.split_horizontally(620);
    left(&left_area).map_err(|e| fail(&e))?;
    right(&right_area).map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

/// PSNR and stored bytes (quantised pixels, palette form) against K.
pub fn quantize_svg(report: &quantize::Report, path: &Path) -> Result<(), String> {
    two_panels(
        path,
        |area| psnr_against_k(report, area),
        |area| bytes_against_k(report, area),
    )
}

fn k_range(report: &quantize::Report) -> std::ops::Range<f64> {
    let top = report.steps.iter().map(|s| s.k).max().unwrap_or(2) as f64;
    0.0..top * 1.05
}

fn psnr_against_k(report: &quantize::Report, area: &Area) -> DrawResult {
    // A lossless step has no PSNR; it is drawn at the top of the axis.
    let top = report
        .steps
        .iter()
        .filter_map(|s| s.psnr_db)
        .fold(10.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("PSNR against K ({:?})", report.method),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(k_range(report), 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("K (colours)")
        .y_desc("PSNR (dB)")
        .draw()?;
    let points: Vec<(f64, f64)> = report
        .steps
        .iter()
        .map(|s| (s.k as f64, s.psnr_db.unwrap_or(top)))
        .collect();
    marked_line(&mut chart, points, BEFORE, None)
}

fn bytes_against_k(report: &quantize::Report, area: &Area) -> DrawResult {
    let kib = |bytes: u64| bytes as f64 / 1024.0;
    let top = kib(report.stored_bytes_original) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("bytes zpage stores, against K", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(k_range(report), 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("K (colours)")
        .y_desc("KiB")
        .draw()?;
    let original = kib(report.stored_bytes_original);
    let range = k_range(report);
    chart
        .draw_series(LineSeries::new(
            vec![(range.start, original), (range.end, original)],
            BLACK.stroke_width(1),
        ))?
        .label("original")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    type Field = fn(&quantize::Step) -> u64;
    let series: [(&str, RGBColor, Field); 2] = [
        ("quantised pixels", BEFORE, |s| s.stored_bytes_quantised),
        ("palette form", AFTER, |s| s.stored_bytes_palette),
    ];
    for (label, color, field) in series {
        let points: Vec<(f64, f64)> = report
            .steps
            .iter()
            .map(|s| (s.k as f64, kib(field(s))))
            .collect();
        marked_line(&mut chart, points, color, Some(label))?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// `mm_stat` sizes (MiB) over time, one line each, and the effective ratio on its own axis.
pub fn evolution_svg(evolution: &Evolution, path: &Path) -> Result<(), String> {
    two_panels(
        path,
        |area| sizes(evolution, area),
        |area| ratio(evolution, area),
    )
}

/// A life cycle's steps: `mm_stat` sizes (MiB) after each, and the effective ratio.
pub fn lifecycle_svg(report: &Lifecycle, path: &Path) -> Result<(), String> {
    two_panels(
        path,
        |area| stage_sizes(report, area),
        |area| stage_ratio(report, area),
    )
}

/// `mm_stat`'s three sizes (MiB) as lines through `points` (an x and the mm_stat there).
fn mm_lines<'m>(
    chart: &mut Chart,
    points: impl Iterator<Item = (f64, &'m zpage::store::MmStat)> + Clone,
) -> DrawResult {
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    type Field = fn(&zpage::store::MmStat) -> u64;
    let series: [(&str, RGBColor, Field); 3] = [
        ("orig_data_size", BEFORE, |m| m.orig_data_size),
        ("compr_data_size", AFTER, |m| m.compr_data_size),
        ("mem_used_total", RGBColor(0x55, 0xa8, 0x68), |m| {
            m.mem_used_total
        }),
    ];
    for (label, color, field) in series {
        let line = points.clone().map(|(x, mm)| (x, mib(field(mm)))).collect();
        marked_line(chart, line, color, Some(label))?;
    }
    Ok(())
}

/// The steps' axis: x is a step's index.
fn step_range(report: &Lifecycle) -> std::ops::Range<f64> {
    -0.3..report.stages.len().saturating_sub(1) as f64 + 0.3
}

/// The mesh of a chart over the steps, each labelled with its name.
fn step_mesh(chart: &mut Chart, report: &Lifecycle, y_desc: &str) -> DrawResult {
    let names: Vec<&str> = report.stages.iter().map(|s| s.name).collect();
    chart
        .configure_mesh()
        .x_labels(names.len())
        .x_label_formatter(&|x| {
            let at = x.round();
            match names.get(at as usize) {
                Some(name) if (x - at).abs() < 1e-6 && at >= 0.0 => name.to_string(),
                _ => String::new(),
            }
        })
        .y_desc(y_desc)
        .draw()
}

fn stage_sizes(report: &Lifecycle, area: &Area) -> DrawResult {
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    let top = report
        .stages
        .iter()
        .map(|s| mib(s.mm.orig_data_size))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("mm_stat after each step ({} pages)", report.pages),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(step_range(report), 0f64..top * 1.05)?;
    step_mesh(&mut chart, report, "MiB")?;
    let at_step = (0..)
        .zip(&report.stages)
        .map(|(i, s)| (f64::from(i), &s.mm));
    mm_lines(&mut chart, at_step)?;
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn stage_ratio(report: &Lifecycle, area: &Area) -> DrawResult {
    let top = report
        .stages
        .iter()
        .map(|s| s.effective_ratio)
        .filter(|r| r.is_finite())
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption("effective ratio after each step", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(step_range(report), 0f64..top * 1.1)?;
    step_mesh(&mut chart, report, "orig / (mem_used_total + metadata)")?;
    let points: Vec<(f64, f64)> = (0..)
        .zip(&report.stages)
        .map(|(i, s)| (f64::from(i), s.effective_ratio))
        .collect();
    marked_line(&mut chart, points, AFTER, None)
}

fn time_range(evolution: &Evolution) -> std::ops::Range<f64> {
    let last = evolution.samples.last().map_or(0.0, |s| s.at_seconds);
    0.0..(last * 1.05).max(1.0)
}

fn sizes(evolution: &Evolution, area: &Area) -> DrawResult {
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    let top = evolution
        .samples
        .iter()
        .map(|s| mib(s.mm.orig_data_size))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("mm_stat of {}", evolution.process),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(time_range(evolution), 0f64..top * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("MiB")
        .draw()?;
    let at_time = evolution.samples.iter().map(|s| (s.at_seconds, &s.mm));
    mm_lines(&mut chart, at_time)?;
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

fn ratio(evolution: &Evolution, area: &Area) -> DrawResult {
    let top = evolution
        .samples
        .iter()
        .map(|s| s.effective_ratio)
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption("effective ratio after each idle pass", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(time_range(evolution), 0f64..top * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("orig / (mem_used_total + metadata)")
        .draw()?;
    let points: Vec<(f64, f64)> = evolution
        .samples
        .iter()
        .map(|s| (s.at_seconds, s.effective_ratio))
        .collect();
    marked_line(&mut chart, points, AFTER, None)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A line through `points` with a dot on each, labelled for the legend if `label` is.
fn marked_line(
    chart: &mut Chart,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    label: Option<&'static str>,
) -> DrawResult {
    let line = chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?;
    if let Some(label) = label {
        line.label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart.draw_series(
        points
            .into_iter()
            .map(|p| Circle::new(p, 3, color.filled())),
    )?;
    Ok(())
}

/// The legend box, where it hides the least.
fn legend<'b>(chart: &mut Chart<'b, 'b>, position: SeriesLabelPosition) -> DrawResult {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(position)
        .draw()
}

/// Share of pages at or below each entropy (bits per input byte), before and after.
fn cdf(report: &Report, area: &Area) -> DrawResult {
    let mut chart = ChartBuilder::on(area)
        .caption("Per-page order-0 entropy (CDF)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..8f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("bits per input byte")
        .y_desc("share of pages")
        .draw()?;
    let d = &report.distribution;
    for (label, color, counts) in [
        ("before transform", BEFORE, &d.before),
        ("after transform", AFTER, &d.after),
    ] {
        let n = counts.iter().sum::<u64>().max(1) as f64;
        let mut below = 0u64;
        // A step per non-empty bin: the share of pages at or below its upper edge.
        let points: Vec<(f64, f64)> = std::iter::once((0.0, 0.0))
            .chain(
                counts
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(|(i, c)| {
                        below += c;
                        (Distribution::edge(i), below as f64 / n)
                    }),
            )
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    Ok(())
}

/// Per class: bits per input byte before and after, side by side.
fn bars(report: &Report, area: &Area) -> DrawResult {
    let classes: Vec<(&str, f64, f64)> = report
        .classes
        .iter()
        .map(|(class, f)| (class.name(), f.input_entropy, f.output_entropy))
        .chain([("total", report.input_entropy, report.output_entropy)])
        .collect();
    let names: Vec<&str> = classes.iter().map(|c| c.0).collect();
    let series = [
        (
            "before",
            BEFORE,
            classes.iter().map(|c| Some(c.1)).collect(),
        ),
        ("after", AFTER, classes.iter().map(|c| Some(c.2)).collect()),
    ];
    grouped_bars(area, "Entropy by class", &names, &series)
}

/// `zpage advise`'s frontier: each configuration's memory (MiB, after its life cycle)
/// against its write speed (MB/s, log scale), the frontier joined, zpage's tiers apart,
/// the recommendation ringed.
pub fn frontier_svg(advice: &zpage_tools::advise::Advice, path: &Path) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot write plot {}: {e}", path.display());
    let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    frontier(advice, &root).map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}

fn frontier(advice: &zpage_tools::advise::Advice, area: &Area) -> DrawResult {
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    let zpage_point = (advice.zpage.insert_mb_s, mib(advice.zpage.memory_bytes));
    let points: Vec<(f64, f64, &str, bool)> = (advice.grid.iter())
        .map(|p| {
            (
                p.write_mb_s,
                mib(p.memory_bytes),
                p.config.as_str(),
                p.frontier,
            )
        })
        .collect();
    let speeds = points.iter().map(|p| p.0).chain([zpage_point.0]);
    let (lo, hi) = speeds.fold((f64::MAX, 1.0f64), |(lo, hi), s| (lo.min(s), hi.max(s)));
    let top = points
        .iter()
        .map(|p| p.1)
        .chain([zpage_point.1])
        .fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "memory after zram's life cycle against write speed ({} pages)",
                advice.pages
            ),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((lo.max(0.1) * 0.7..hi * 1.5).log_scale(), 0f64..top * 1.12)?;
    chart
        .configure_mesh()
        .x_desc("write MB/s (the model's coder, one core; log scale)")
        .y_desc("MiB held (mem_used_total + dictionaries)")
        .draw()?;
    let mut line: Vec<(f64, f64)> = points.iter().filter(|p| p.3).map(|p| (p.0, p.1)).collect();
    line.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(LineSeries::new(line, AFTER.stroke_width(2)))?
        .label("frontier")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], AFTER));
    chart.draw_series(points.iter().map(|&(x, y, name, on)| {
        let color = if on { AFTER } else { BEFORE };
        EmptyElement::at((x, y))
            + Circle::new((0, 0), 4, color.filled())
            + Text::new(name.to_string(), (6, -12), ("sans-serif", 12))
    }))?;
    let chosen = advice.recommendation.config.as_str();
    chart.draw_series(
        points
            .iter()
            .filter(|p| p.2 == chosen)
            .map(|&(x, y, _, _)| Circle::new((x, y), 9, BLACK.stroke_width(2))),
    )?;
    let green = RGBColor(0x55, 0xa8, 0x68);
    chart
        .draw_series(std::iter::once(
            EmptyElement::at(zpage_point)
                + Circle::new((0, 0), 5, green.filled())
                + Text::new("zpage tiers".to_string(), (6, -12), ("sans-serif", 12)),
        ))?
        .label("zpage's tiers (words in, dense + dictionaries idle)")
        .legend(move |(x, y)| Circle::new((x + 10, y), 4, green.filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
}
