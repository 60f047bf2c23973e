//! Best-so-far curves of a comparison, as `curves.png` and `curves.svg`: per strategy, the median
//! over repeats with the interquartile band; a log-scale regret axis for bench objectives.
//!
//! Text is laid out with ab_glyph and an embedded subset of DejaVu Sans (host/assets), so plots
//! look the same everywhere and need no system fonts.

use std::path::Path;
use std::sync::Once;

use anyhow::{Context, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::stats::{self, REGRET_FLOOR};
use super::{Comparison, Metric};

const FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans-subset.ttf");
const SIZE: (u32, u32) = (1000, 620);

/// Tableau 10: distinct, colour-blind-friendlier hues.
pub(crate) const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for family in ["sans-serif", "serif", "monospace"] {
            // The font is compiled in and known to parse (tested); nothing to report at run time.
            let _ = plotters::style::register_font(family, FontStyle::Normal, FONT);
        }
    });
}

/// One strategy's band: (trial, q25, median, q75) where at least one successful run has a value.
pub struct Band {
    pub name: String,
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// Median and interquartile band per trial over the successful runs of each strategy.
pub fn bands(c: &Comparison) -> Vec<Band> {
    let log = c.metric.is_regret();
    c.strategies
        .iter()
        .enumerate()
        .map(|(s, entry)| {
            let curves: Vec<Vec<Option<f64>>> =
                c.runs.iter().filter(|r| r.strategy == s && r.error.is_none()).map(|r| r.curve(&c.metric)).collect();
            let len = curves.iter().map(Vec::len).max().unwrap_or(0);
            let mut points = Vec::with_capacity(len);
            for t in 0..len {
                let ys: Vec<f64> = curves
                    .iter()
                    // A run that ended early (its strategy had nothing more to suggest) keeps its last value.
                    .filter_map(|c| c.get(t).or_else(|| c.last()).copied().flatten())
                    .map(|y| if log { y.max(REGRET_FLOOR) } else { y })
                    .collect();
                if let (Some(a), Some(m), Some(b)) =
                    (stats::quantile(&ys, 0.25), stats::median(&ys), stats::quantile(&ys, 0.75))
                {
                    points.push(((t + 1) as f64, a, m, b));
                }
            }
            Band { name: entry.name.clone(), points }
        })
        .collect()
}

/// Tick labels for a log axis: 1e-3, 0.01, 0.1, 1, 10, 100, 1e3.
fn log_label(y: f64) -> String {
    if y == 0.0 {
        "0".into()
    } else if (1e-2..=1e2).contains(&y.abs()) {
        let s = format!("{y:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{y:.0e}")
    }
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &Comparison, bands: &[Band]) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the curves failed: {e}");
    root.fill(&WHITE).map_err(err)?;
    let log = c.metric.is_regret();
    let n = bands.iter().flat_map(|b| b.points.last().map(|p| p.0)).fold(c.trials as f64, f64::max).max(2.0);
    let lows = bands.iter().flat_map(|b| b.points.iter().map(|p| p.1));
    let highs = bands.iter().flat_map(|b| b.points.iter().map(|p| p.3));
    let (mut lo, mut hi) = (lows.fold(f64::INFINITY, f64::min), highs.fold(f64::NEG_INFINITY, f64::max));
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = if log { (1e-3, 1.0) } else { (0.0, 1.0) };
    }
    let what = if log { "regret" } else { "objective" };
    // A config path is long: its file name is enough in a title.
    let objective = if log {
        c.objective.clone()
    } else {
        Path::new(&c.objective).file_name().map_or(c.objective.clone(), |f| f.to_string_lossy().into_owned())
    };
    let caption = format!("{objective}: best-so-far {what}, median and interquartile band over {} repeats", c.repeats);
    let mut builder = ChartBuilder::on(root);
    builder.caption(caption, ("sans-serif", 20)).margin(16).x_label_area_size(48).y_label_area_size(80);
    let y_desc = match c.metric {
        Metric::Regret { .. } => "best-so-far simple regret (log scale)".to_string(),
        Metric::Best { direction } => format!("best-so-far objective ({})", direction.as_str()),
        Metric::Hypervolume { .. } => "hypervolume of the front so far".to_string(),
    };
    let legend_at = if log || c.metric.direction() == alcf_host::config::Direction::Minimize {
        SeriesLabelPosition::UpperRight
    } else {
        SeriesLabelPosition::LowerRight
    };

    macro_rules! finish {
        ($chart:expr) => {{
            let chart = &mut $chart;
            for (i, band) in bands.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                if band.points.is_empty() {
                    continue;
                }
                let mut outline: Vec<(f64, f64)> = band.points.iter().map(|p| (p.0, p.3)).collect();
                outline.extend(band.points.iter().rev().map(|p| (p.0, p.1)));
                chart.draw_series(std::iter::once(Polygon::new(outline, color.mix(0.18).filled()))).map_err(err)?;
                chart
                    .draw_series(LineSeries::new(band.points.iter().map(|p| (p.0, p.2)), color.stroke_width(2)))
                    .map_err(err)?
                    .label(band.name.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3)));
            }
            chart
                .configure_series_labels()
                .position(legend_at)
                .label_font(("sans-serif", 15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .draw()
                .map_err(err)?;
        }};
    }

    if log {
        let (lo, hi) = (lo / 1.5, hi * 1.5);
        let mut chart = builder.build_cartesian_2d(1f64..n, (lo..hi).log_scale()).map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("trial")
            .y_desc(y_desc)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .y_label_formatter(&|y| log_label(*y))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .light_line_style(BLACK.mix(0.04))
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(err)?;
        finish!(chart);
    } else {
        let pad = ((hi - lo) * 0.05).max(if hi == lo { 1.0 } else { 0.0 });
        let mut chart = builder.build_cartesian_2d(1f64..n, (lo - pad)..(hi + pad)).map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("trial")
            .y_desc(y_desc)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| alcf_host::space::Assignment::format_float(*y))
            .light_line_style(BLACK.mix(0.04))
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(err)?;
        finish!(chart);
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Writes `curves.png` and `curves.svg` into `dir`.
pub fn write_curves(c: &Comparison, dir: &Path) -> anyhow::Result<()> {
    register_font();
    let bands = bands(c);

    let svg_path = dir.join("curves.svg");
    {
        let root = SVGBackend::new(&svg_path, SIZE).into_drawing_area();
        draw(&root, c, &bands)?;
    }

    let (w, h) = SIZE;
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
        draw(&root, c, &bands)?;
    }
    write_png(&dir.join("curves.png"), &buf, SIZE, png::Compression::Best)?;
    Ok(())
}

/// An RGB buffer of `size` as a PNG file.
pub(crate) fn write_png(
    path: &Path,
    rgb: &[u8],
    size: (u32, u32),
    compression: png::Compression,
) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), size.0, size.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(compression);
    let mut writer = encoder.write_header().with_context(|| format!("cannot write {}", path.display()))?;
    writer.write_image_data(rgb).with_context(|| format!("cannot write {}", path.display()))?;
    writer.finish().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn font_parses() {
        assert!(plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok());
    }

    #[test]
    fn log_labels_read_well() {
        assert_eq!(log_label(1.0), "1");
        assert_eq!(log_label(0.1), "0.1");
        assert_eq!(log_label(100.0), "100");
        assert_eq!(log_label(1e-5), "1e-5");
        assert_eq!(log_label(1e4), "1e4");
    }
}
