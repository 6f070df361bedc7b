//! The job's plot: training reward and held-out accuracy against wall time,
//! one line per mode, as SVG and PNG.
//!
//! Text needs a TrueType font: `MONARCH_PLOT_FONT`, else the first of a few
//! usual system paths. Without one the plot is drawn without text (lines
//! and axes only) and the caller is told so.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// One mode's line in each panel: `(wall seconds, value)`.
pub(crate) struct Series {
    /// The legend's name.
    pub name: String,
    /// Mean training reward per step.
    pub reward: Vec<(f64, f64)>,
    /// Held-out accuracy (0..1) of the kept versions.
    pub accuracy: Vec<(f64, f64)>,
}

/// Where the plot went, and whether it has text.
pub(crate) struct Written {
    /// The SVG and the PNG.
    pub files: [PathBuf; 2],
    /// The font used, if one was found.
    pub font: Option<PathBuf>,
}

/// Writes `stem.svg` and `stem.png`.
pub(crate) fn write(stem: &Path, series: &[Series]) -> Result<Written, String> {
    let font = font();
    let labels = font.is_some();
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    if let Some(dir) = stem.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    draw(
        SVGBackend::new(&svg, SIZE).into_drawing_area(),
        series,
        labels,
    )
    .map_err(|e| format!("{}: {e}", svg.display()))?;
    draw(
        BitMapBackend::new(&png, SIZE).into_drawing_area(),
        series,
        labels,
    )
    .map_err(|e| format!("{}: {e}", png.display()))?;
    Ok(Written {
        files: [svg, png],
        font: font.cloned(),
    })
}

const SIZE: (u32, u32) = (1200, 480);

/// One half of the plot: what it shows of each series.
struct Panel {
    title: String,
    y_desc: &'static str,
    values: fn(&Series) -> &[(f64, f64)],
    /// Draw the values thin and their trailing mean over this many points
    /// thick (for per-step values, too noisy to read one by one), instead
    /// of a line with a marker at each value.
    mean_over: Option<usize>,
}

/// Steps the training reward's thick line is the trailing mean of.
const REWARD_MEAN_STEPS: usize = 20;

const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    series: &[Series],
    labels: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    let end = series
        .iter()
        .flat_map(|s| s.reward.iter().chain(&s.accuracy))
        .map(|&(t, _)| t)
        .fold(1.0_f64, f64::max);
    let panels: [(&DrawingArea<DB, Shift>, Panel); 2] = [
        (
            &left,
            Panel {
                title: format!(
                    "Training reward (thick: mean of the last {REWARD_MEAN_STEPS} steps)"
                ),
                y_desc: "mean reward of the batch",
                values: |s| &s.reward,
                mean_over: Some(REWARD_MEAN_STEPS),
            },
        ),
        (
            &right,
            Panel {
                title: "Held-out accuracy (greedy)".into(),
                y_desc: "accuracy, mean over the specs",
                values: |s| &s.accuracy,
                mean_over: None,
            },
        ),
    ];
    for (
        area,
        Panel {
            title,
            y_desc,
            values,
            mean_over,
        },
    ) in panels
    {
        let top = series
            .iter()
            .flat_map(|s| values(s).iter().map(|&(_, v)| v))
            .fold(1.0_f64, f64::max);
        let bottom = series
            .iter()
            .flat_map(|s| values(s).iter().map(|&(_, v)| v))
            .fold(0.0_f64, f64::min);
        let mut builder = ChartBuilder::on(area);
        builder
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(50);
        if labels {
            builder.caption(title, ("sans-serif", 20));
        }
        let mut chart = builder.build_cartesian_2d(0.0..end * 1.02, bottom..top * 1.05)?;
        let mut mesh = chart.configure_mesh();
        if labels {
            mesh.x_desc("wall time (s)").y_desc(y_desc);
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw()?;
        for (i, s) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let line = match mean_over {
                Some(window) => {
                    chart.draw_series(LineSeries::new(
                        values(s).iter().copied(),
                        colour.mix(0.3).stroke_width(1),
                    ))?;
                    chart.draw_series(LineSeries::new(
                        trailing_mean(values(s), window),
                        colour.stroke_width(3),
                    ))?
                }
                None => {
                    chart.draw_series(
                        values(s)
                            .iter()
                            .map(|&point| Circle::new(point, 3, colour.filled())),
                    )?;
                    chart.draw_series(LineSeries::new(
                        values(s).iter().copied(),
                        colour.stroke_width(2),
                    ))?
                }
            };
            if labels {
                line.label(s.name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
            }
        }
        if labels {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()?;
        }
    }
    root.present()
}

/// Each point's value replaced by the mean of it and the `window - 1`
/// points before it (fewer at the start).
fn trailing_mean(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let window = window.max(1);
    let mut sum = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(t, v))| {
            sum += v;
            if i >= window {
                sum -= points[i - window].1;
            }
            (t, sum / (i + 1).min(window) as f64)
        })
        .collect()
}

/// The font text is drawn with, registered with plotters once.
fn font() -> Option<&'static PathBuf> {
    static FONT: OnceLock<Option<PathBuf>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates = std::env::var_os("MONARCH_PLOT_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(SYSTEM_FONTS.iter().map(PathBuf::from));
        for path in candidates {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            // plotters keeps registered fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return Some(path);
            }
        }
        None
    })
    .as_ref()
}

const SYSTEM_FONTS: [&str; 7] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trailing_mean_covers_the_window_before_each_point() {
        let points: Vec<(f64, f64)> = [1.0, 3.0, 5.0, 7.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as f64, v))
            .collect();
        let mean = trailing_mean(&points, 2);
        assert_eq!(mean, [(0.0, 1.0), (1.0, 2.0), (2.0, 4.0), (3.0, 6.0)]);
        assert_eq!(trailing_mean(&points, 10)[3], (3.0, 4.0));
        assert_eq!(trailing_mean(&points, 0), points);
    }
}
