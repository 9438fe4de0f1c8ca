//! Latency CDF plots as inline SVG, drawn with plotters; and line plots
//! over time ([`lines_svg`]: a load profile's target against what a run
//! achieved, window by window).
//!
//! x is latency in ms on a log axis (latencies span orders of magnitude);
//! y is the cumulative fraction. Each sample is drawn as a staircase through
//! at most [`MAX_STEPS`] of its order statistics, which keeps a plot of
//! 200,000-value samples a few tens of kilobytes.
//!
//! The picture is, top to bottom: the title (wrapped to at most
//! [`TITLE_LINES`] lines), the chart, and the legend as its own rows below
//! the chart, so it never covers a curve. The height grows with the title
//! and legend lines. Every text is at least 12 px as emitted (plotters
//! writes `font-size` as the requested size / 1.24; `font` makes up for it).

use plotters::chart::MeshStyle;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::Error;

/// Order statistics drawn per series.
pub const MAX_STEPS: usize = 300;

/// The original's colour.
pub const ORIGINAL: RGBColor = RGBColor(0, 0, 0);

/// Candidates' colours, in order (then repeated): distinct and readable on
/// white, none of them black.
pub const CANDIDATES: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The colour of candidate `i`.
pub fn candidate_color(i: usize) -> RGBColor {
    CANDIDATES[i % CANDIDATES.len()]
}

/// `#rrggbb` of a colour, for CSS.
pub fn css(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// One line of a plot.
pub struct Series<'a> {
    /// Legend text.
    pub label: String,
    /// Line colour.
    pub color: RGBColor,
    /// Latencies in ns, sorted ascending.
    pub values: &'a [i64],
    /// Dashed, for a series that is only a reference.
    pub dashed: bool,
}

/// Plot width in pixels: three plots and their borders fit side by side in
/// the report's flex grid on a 1,400 px window.
pub const WIDTH: u32 = 436;
/// Height of the chart (plotting area, tick labels and axis captions),
/// without the title and legend, in pixels.
pub const CHART_HEIGHT: u32 = 280;
/// Height of a plot with a one-line title and a one-row legend, in pixels;
/// a longer title or legend makes it taller.
pub const HEIGHT: u32 = 8 + TITLE_LINE + CHART_HEIGHT + 4 + LEGEND_ROW + 6;

/// Chart margins (room for the last x tick label) and the y label area
/// (tick labels and caption), px.
const MARGIN_LEFT: u32 = 6;
const MARGIN_RIGHT: u32 = 20;
const Y_LABEL_AREA: u32 = 58;
/// Width of the plotting area, px.
const PLOT_WIDTH: f64 = (WIDTH - MARGIN_LEFT - MARGIN_RIGHT - Y_LABEL_AREA) as f64;

/// Lines of the title at most; the rest is elided.
pub const TITLE_LINES: usize = 2;

/// Emitted text sizes, px.
const TITLE_PX: f64 = 14.0;
const TICK_PX: f64 = 12.0;
const CAPTION_PX: f64 = 12.5;
const LEGEND_PX: f64 = 12.5;

/// Title line height, px.
const TITLE_LINE: u32 = 18;
/// Legend row height, px.
const LEGEND_ROW: u32 = 20;
/// Left and right padding of the title and legend, px.
const PAD: u32 = 12;
/// Legend swatch length and the gap after it, px.
const SWATCH: i32 = 24;
const SWATCH_GAP: i32 = 7;
/// Gap between legend columns, px.
const COLUMN_GAP: i32 = 18;

/// The sans-serif font that plotters' SVG backend writes with
/// `font-size="{px}"` (it divides the requested size by 1.24).
fn font(px: f64) -> FontDesc<'static> {
    ("sans-serif", px * 1.24).into_font()
}

/// A generous estimate of the width of `s` in a sans-serif font of `px`
/// pixels (DejaVu Sans, the widest common default), for layout only.
pub(crate) fn text_width(s: &str, px: f64) -> f64 {
    let em: f64 = s
        .chars()
        .map(|c| match c {
            ' ' | 'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' => 0.34,
            'f' | 't' | 'r' | '(' | ')' | '[' | ']' | '/' | '-' => 0.45,
            'm' | 'w' | 'M' | 'W' | '@' | '%' | '=' | '≤' | '←' | '→' | '<' | '>' | '+' | '&' | '#' | '_' => 0.86,
            c if c.is_ascii_uppercase() => 0.74,
            c if c.is_ascii() => 0.64,
            _ => 0.9,
        })
        .sum();
    em * px
}

/// `s` shortened with an ellipsis in the middle to fit `width` px (the end
/// of a legend label is its sample size, which stays).
fn elide_middle(s: &str, px: f64, width: f64) -> String {
    if text_width(s, px) <= width {
        return s.to_string();
    }
    let chars: Vec<char> = s.chars().collect();
    let (mut head, mut tail) = (chars.len() / 2, chars.len() - chars.len() / 2);
    loop {
        let t: String = chars[..head].iter().chain(std::iter::once(&'…')).chain(&chars[chars.len() - tail..]).collect();
        if text_width(&t, px) <= width || head + tail == 0 {
            return t;
        }
        // Shorten the longer side, keeping more of the end.
        if head >= tail && head > 0 {
            head -= 1;
        } else {
            tail -= 1;
        }
    }
}

/// `s` wrapped at spaces into lines of at most `width` px, at most
/// `max_lines` of them (the last ends with an ellipsis if text was left
/// out); a word longer than a line is cut.
fn wrap(s: &str, px: f64, width: f64, max_lines: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in s.split(' ').filter(|w| !w.is_empty()) {
        let joined = if line.is_empty() { word.to_string() } else { format!("{line} {word}") };
        if text_width(&joined, px) <= width {
            line = joined;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        // A word alone too wide for a line: cut it into pieces.
        let mut rest: Vec<char> = word.chars().collect();
        while text_width(&rest.iter().collect::<String>(), px) > width && rest.len() > 1 {
            let mut k = rest.len() - 1;
            while k > 1 && text_width(&rest[..k].iter().collect::<String>(), px) > width {
                k -= 1;
            }
            lines.push(rest[..k].iter().collect());
            rest.drain(..k);
        }
        line = rest.into_iter().collect();
    }
    if !line.is_empty() {
        lines.push(line);
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        let last = lines.last_mut().expect("max_lines > 0");
        let mut chars: Vec<char> = last.chars().collect();
        while !chars.is_empty() && text_width(&format!("{}…", chars.iter().collect::<String>()), px) > width {
            chars.pop();
        }
        *last = format!("{}…", chars.iter().collect::<String>().trim_end());
    }
    lines
}

/// Where the legend's entries go: `(columns, rows, column width)`, for
/// labels as already elided to fit.
fn legend_grid(labels: &[String]) -> (usize, usize, i32) {
    if labels.is_empty() {
        return (0, 0, 0);
    }
    let avail = (WIDTH - 2 * PAD) as i32;
    let widest = labels.iter().map(|l| text_width(l, LEGEND_PX).ceil() as i32).max().unwrap_or(0);
    let column = SWATCH + SWATCH_GAP + widest + COLUMN_GAP;
    // The last column needs no gap after it.
    let columns = (((avail + COLUMN_GAP) / column.max(1)) as usize).clamp(1, labels.len());
    (columns, labels.len().div_ceil(columns), column)
}

/// Tick labels on the log axis: `0.05`, `1`, `20`, `1.5k`.
fn tick(ms: f64) -> String {
    if ms >= 1000.0 {
        let s = format!("{:.1}", ms / 1000.0);
        format!("{}k", s.trim_end_matches(".0"))
    } else if ms >= 1.0 {
        let s = format!("{ms:.1}");
        s.trim_end_matches(".0").to_string()
    } else {
        let s = format!("{ms:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Axis ticks on a log scale `[lo, hi]` drawn `width` px wide: labelled
/// ticks at 1-2-5 in each decade, else 1-3, else powers of ten (else every
/// other, third… one), the first of these whose labels do not crowd; and
/// light grid lines at every integer multiple of each power of ten.
fn log_ticks(lo: f64, hi: f64, width: f64) -> (Vec<f64>, Vec<f64>) {
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let px = |v: f64| width * (v / lo).log10() / (hi / lo).log10();
    let label = |v: f64| text_width(&tick(v), TICK_PX);
    let ticks = |multiples: &[f64], every: i32| -> Vec<f64> {
        (first..=last)
            .filter(|k| k.rem_euclid(every) == 0)
            // m / 10^-k rather than m * 10^k: 0.3, not 0.30000000000000004.
            .flat_map(|k| multiples.iter().map(move |m| if k < 0 { m / 10f64.powi(-k) } else { m * 10f64.powi(k) }))
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    let fits = |t: &[f64]| t.windows(2).all(|w| px(w[1]) - px(w[0]) >= (label(w[0]) + label(w[1])) / 2.0 + 10.0);
    let options = [(&[1.0, 2.0, 5.0][..], 1), (&[1.0, 3.0][..], 1)]
        .into_iter()
        .chain((1..=last - first).map(|e| (&[1.0][..], e)));
    let mut bold = Vec::new();
    for (multiples, every) in options {
        bold = ticks(multiples, every);
        if fits(&bold) {
            break;
        }
    }
    let light = ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], 1);
    (bold, light)
}

/// Staircase points `(ms, F)` of a sorted sample, clamped below at `lo`.
fn staircase(values: &[i64], lo: f64, hi: f64) -> Vec<(f64, f64)> {
    let n = values.len();
    if n == 0 {
        return Vec::new();
    }
    let steps = n.min(MAX_STEPS);
    let mut out = Vec::with_capacity(2 * steps + 2);
    let mut prev_y = 0.0;
    let mut last_idx = usize::MAX;
    for k in 1..=steps {
        let idx = (k * n).div_ceil(steps) - 1;
        if idx == last_idx {
            continue;
        }
        last_idx = idx;
        let x = (values[idx] as f64 / 1e6).max(lo);
        let y = (idx + 1) as f64 / n as f64;
        out.push((x, prev_y));
        out.push((x, y));
        prev_y = y;
    }
    out.push((hi, 1.0));
    out
}

/// The x range shared by every series: smallest positive to largest value,
/// in ms, padded a little on the log scale.
fn x_range(series: &[Series]) -> (f64, f64) {
    let lo = series
        .iter()
        .filter_map(|s| s.values.iter().find(|&&v| v > 0))
        .map(|&v| v as f64 / 1e6)
        .fold(f64::INFINITY, f64::min);
    let hi = series.iter().filter_map(|s| s.values.last()).map(|&v| v as f64 / 1e6).fold(0.0, f64::max);
    if !lo.is_finite() || hi <= 0.0 {
        return (0.001, 1.0);
    }
    let (lo, hi) = (lo / 1.15, hi.max(lo) * 1.15);
    if hi / lo < 10.0 {
        // Less than a decade: widen around the middle so the axis has ticks.
        let mid = (lo * hi).sqrt();
        return (mid / 3.3, mid * 3.3);
    }
    (lo, hi)
}

/// Line width of series `i`: candidates are drawn over a wider original, so
/// a candidate that matches shows as a coloured line with a black rim.
fn line_width(i: usize, s: &Series) -> u32 {
    if i == 0 {
        4
    } else if s.dashed {
        1
    } else {
        2
    }
}

/// The picture around a chart: the title wrapped above it, the legend's
/// labels elided to fit in a grid below it, and the height that follows.
struct Frame {
    title_lines: Vec<String>,
    labels: Vec<String>,
    /// `(columns, rows, column width)` of the legend.
    grid: (usize, usize, i32),
    title_height: u32,
    height: u32,
}

impl Frame {
    fn new<'l>(title: &str, labels: impl Iterator<Item = &'l str>) -> Frame {
        let inner = f64::from(WIDTH - 2 * PAD);
        let title_lines = wrap(title, TITLE_PX, inner, TITLE_LINES);
        let labels: Vec<String> =
            labels.map(|l| elide_middle(l, LEGEND_PX, inner - f64::from(SWATCH + SWATCH_GAP))).collect();
        let grid = legend_grid(&labels);
        // Keep in step with HEIGHT.
        let title_height = 8 + TITLE_LINE * title_lines.len().max(1) as u32;
        let legend_height = if grid.1 == 0 { 0 } else { 4 + LEGEND_ROW * grid.1 as u32 + 6 };
        Frame { title_lines, labels, grid, title_height, height: title_height + CHART_HEIGHT + legend_height }
    }
}

/// How a line is drawn, in the chart and by its legend entry.
struct Swatch {
    color: RGBColor,
    /// Stroke width, px.
    width: u32,
    dashed: bool,
}

impl Swatch {
    fn style(&self) -> ShapeStyle {
        self.color.stroke_width(self.width)
    }
}

/// The drawing area of the chart, between the title and the legend.
type ChartArea<'s> = DrawingArea<SVGBackend<'s>, Shift>;
/// What drawing on an SVG string can fail with.
type DrawError = DrawingAreaErrorKind<std::io::Error>;

/// An SVG document of `frame` (title above, legend of `swatches` below)
/// around what `chart` draws in the chart area; drawing errors name the
/// plot by `title`.
fn framed_svg(
    title: &str,
    frame: &Frame,
    swatches: &[Swatch],
    chart: impl FnOnce(&ChartArea) -> Result<(), DrawError>,
) -> Result<String, Error> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, frame.height)).into_drawing_area();
        let drawn = (|| {
            root.fill(&WHITE)?;
            let (title_area, rest) = root.split_vertically(frame.title_height);
            let (chart_area, legend_area) = rest.split_vertically(CHART_HEIGHT);
            draw_title(&title_area, &frame.title_lines)?;
            chart(&chart_area)?;
            draw_legend(&legend_area, frame, swatches)?;
            root.present()
        })();
        drawn.map_err(|e| Error::Plot { title: title.to_string(), message: e.to_string() })?;
    }
    Ok(svg)
}

/// The title's lines, centred at the top.
fn draw_title(area: &ChartArea, lines: &[String]) -> Result<(), DrawError> {
    let title_style = font(TITLE_PX).color(&RGBColor(0x22, 0x22, 0x22)).pos(Pos::new(HPos::Center, VPos::Top));
    for (k, line) in lines.iter().enumerate() {
        let y = 6 + (TITLE_LINE as usize * k) as i32;
        area.draw(&Text::new(line.clone(), ((WIDTH / 2) as i32, y), title_style.clone()))?;
    }
    Ok(())
}

/// The legend: a grid of swatch-and-label entries below the chart, row by
/// row; a dashed line's swatch is two dashes.
fn draw_legend(area: &ChartArea, frame: &Frame, swatches: &[Swatch]) -> Result<(), DrawError> {
    let (columns, _, column) = frame.grid;
    let label_style = font(LEGEND_PX).color(&RGBColor(0x22, 0x22, 0x22)).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (swatch, label)) in swatches.iter().zip(&frame.labels).enumerate() {
        let (row, col) = (i / columns.max(1), i % columns.max(1));
        let x = PAD as i32 + col as i32 * column;
        let y = 4 + (LEGEND_ROW as usize * row) as i32 + LEGEND_ROW as i32 / 2;
        let style = swatch.style();
        if swatch.dashed {
            area.draw(&PathElement::new(vec![(x, y), (x + 9, y)], style))?;
            area.draw(&PathElement::new(vec![(x + 14, y), (x + SWATCH, y)], style))?;
        } else {
            area.draw(&PathElement::new(vec![(x, y), (x + SWATCH, y)], style))?;
        }
        area.draw(&Text::new(label.clone(), (x + SWATCH + SWATCH_GAP, y), label_style.clone()))?;
    }
    Ok(())
}

/// A chart builder on `area` with the margins and label areas of every
/// plot here.
fn chart_builder<'a, 'b>(area: &'a ChartArea<'b>) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(area);
    builder
        .margin_top(6)
        .margin_left(MARGIN_LEFT)
        .margin_right(MARGIN_RIGHT)
        .margin_bottom(2)
        .x_label_area_size(46)
        .y_label_area_size(Y_LABEL_AREA);
    builder
}

/// The grid line, tick label and axis caption styles of every plot here.
fn mesh_style<'m, 'a, 'b, X: Ranged, Y: Ranged, DB: DrawingBackend>(
    mesh: &'m mut MeshStyle<'a, 'b, X, Y, DB>,
) -> &'m mut MeshStyle<'a, 'b, X, Y, DB> {
    mesh.light_line_style(RGBColor(242, 242, 242))
        .bold_line_style(RGBColor(215, 215, 215))
        .label_style(font(TICK_PX).color(&RGBColor(0x33, 0x33, 0x33)))
        .axis_desc_style(font(CAPTION_PX).color(&RGBColor(0x22, 0x22, 0x22)))
}

/// An SVG document with the CDFs of `series`, titled `title`.
pub fn cdf_svg(title: &str, series: &[Series]) -> Result<String, Error> {
    let frame = Frame::new(title, series.iter().map(|s| s.label.as_str()));
    let swatches: Vec<Swatch> = series
        .iter()
        .enumerate()
        .map(|(i, s)| Swatch { color: s.color, width: line_width(i, s), dashed: false })
        .collect();
    framed_svg(title, &frame, &swatches, |area| {
        let (lo, hi) = x_range(series);
        let (bold, light) = log_ticks(lo, hi, PLOT_WIDTH);
        let mut chart = chart_builder(area)
            .build_cartesian_2d((lo..hi).log_scale().with_key_points(bold).with_light_points(light), 0.0f64..1.0)?;
        mesh_style(&mut chart.configure_mesh())
            .x_desc("latency (ms, log scale)")
            .y_desc("fraction with latency ≤ x")
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .y_labels(11)
            .y_max_light_lines(1)
            .draw()?;
        for (s, swatch) in series.iter().zip(&swatches) {
            chart.draw_series(LineSeries::new(staircase(s.values, lo, hi), swatch.style()))?;
        }
        Ok(())
    })
}

/// One line of a plot over time.
pub struct Line {
    /// Legend text.
    pub label: String,
    pub color: RGBColor,
    /// `(x, y)` in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Dashed: a second figure of the same run (p99 beside p50), or a
    /// reference (the target) under the measured lines.
    pub dashed: bool,
    /// Stroke width, px: a reference drawn wider shows through the lines
    /// that match it.
    pub width: u32,
}

/// A round upper end for a linear axis at least `max`: 1, 2 or 5 × 10^k.
fn round_up(max: f64) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let k = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * k).find(|&v| v >= max).unwrap_or(10.0 * k)
}

/// An SVG document with `lines` on linear axes from 0, titled `title`,
/// the legend below the chart as in [`cdf_svg`].
pub fn lines_svg(title: &str, x_desc: &str, y_desc: &str, lines: &[Line]) -> Result<String, Error> {
    let frame = Frame::new(title, lines.iter().map(|l| l.label.as_str()));
    let swatches: Vec<Swatch> =
        lines.iter().map(|l| Swatch { color: l.color, width: l.width, dashed: l.dashed }).collect();
    let all = || lines.iter().flat_map(|l| l.points.iter()).filter(|p| p.0.is_finite() && p.1.is_finite());
    let x_max = round_up(all().map(|p| p.0).fold(0.0, f64::max));
    let y_max = round_up(all().map(|p| p.1).fold(0.0, f64::max) * 1.05);
    framed_svg(title, &frame, &swatches, |area| {
        let mut chart = chart_builder(area).build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        mesh_style(&mut chart.configure_mesh())
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .x_labels(7)
            .y_labels(6)
            .draw()?;
        for (l, swatch) in lines.iter().zip(&swatches) {
            let points: Vec<(f64, f64)> =
                l.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
            if l.dashed {
                chart.draw_series(DashedLineSeries::new(points, 6, 4, swatch.style()))?;
            } else {
                chart.draw_series(LineSeries::new(points, swatch.style()))?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_plots_have_round_axes_every_line_and_a_legend() {
        assert_eq!((round_up(37.0), round_up(40.0), round_up(0.3), round_up(0.0)), (50.0, 50.0, 0.5, 1.0));
        let target = Line {
            label: "target".into(),
            color: ORIGINAL,
            points: vec![(2.5, 5.0), (7.5, 20.0)],
            dashed: true,
            width: 4,
        };
        let run = Line {
            label: "palette run 1".into(),
            color: candidate_color(0),
            points: vec![(2.5, 4.9), (7.5, f64::NAN), (12.5, 19.0)],
            dashed: false,
            width: 2,
        };
        let svg = lines_svg("requests/s per window", "seconds into the window", "requests/s", &[target, run]).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("seconds into the window"), "{}", &svg[..200]);
        assert!(svg.contains(">target<") || svg.contains("target\n"), "legend");
        assert!(svg.contains(">palette run 1<") || svg.contains("palette run 1\n"), "legend");
        // The dashed target is many short segments; the run one polyline
        // (its NaN point left out, not drawn at 0).
        assert!(svg.matches("<polyline").count() >= 3, "{svg}");
        assert!(!svg.contains("NaN"));
        assert!(lines_svg("empty", "x", "y", &[]).unwrap().contains("<svg"));
    }

    #[test]
    fn ticks() {
        assert_eq!(tick(20.0), "20");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(0.05), "0.05");
        assert_eq!(tick(1500.0), "1.5k");
        assert_eq!(tick(1000.0), "1k");
    }

    #[test]
    fn log_axis_ticks() {
        let (bold, light) = log_ticks(1.8, 46.0, PLOT_WIDTH);
        assert_eq!(bold, vec![2.0, 5.0, 10.0, 20.0]);
        assert_eq!(light.first(), Some(&2.0));
        assert_eq!(light.last(), Some(&40.0));
        // Fewer labels as the range widens, so they do not crowd.
        let (bold, _) = log_ticks(0.001, 1.0, PLOT_WIDTH);
        assert_eq!(bold, vec![0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]);
        let (bold, _) = log_ticks(0.01, 10_000.0, PLOT_WIDTH);
        assert_eq!(bold, vec![0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10_000.0]);
        let (bold, light) = log_ticks(0.0001, 1e6, PLOT_WIDTH);
        assert_eq!(bold, vec![0.0001, 0.01, 1.0, 100.0, 10_000.0, 1e6]);
        assert_eq!(light.len(), 9 * 10 + 1);
        // A narrow plot of the same range thins further.
        assert!(log_ticks(1.0, 1000.0, 120.0).0.len() < log_ticks(1.0, 1000.0, PLOT_WIDTH).0.len());
    }

    #[test]
    fn labels_wrap_and_elide() {
        let title = "frontend/HTTP GET /hotels/recommendations ← search/Nearby (end to end)";
        let lines = wrap(title, TITLE_PX, 412.0, 2);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines.join(" "), title);
        assert!(lines.iter().all(|l| text_width(l, TITLE_PX) <= 412.0));
        let long = "x".repeat(200);
        let lines = wrap(&long, TITLE_PX, 412.0, 2);
        assert_eq!(lines.len(), 2);
        assert!(lines[1].ends_with('…') && lines.iter().all(|l| text_width(l, TITLE_PX) <= 412.0));
        assert_eq!(wrap("a b", TITLE_PX, 412.0, 2), vec!["a b"]);

        assert_eq!(elide_middle("palette (n=1,234)", LEGEND_PX, 400.0), "palette (n=1,234)");
        let label = format!("{} (n=1,234)", "candidate-".repeat(10));
        let short = elide_middle(&label, LEGEND_PX, 300.0);
        assert!(
            text_width(&short, LEGEND_PX) <= 300.0 && short.contains('…') && short.ends_with("(n=1,234)"),
            "{short}"
        );
    }

    #[test]
    fn staircase_is_monotone_and_bounded() {
        let values: Vec<i64> = (1..=10_000).map(|i| i * 1000).collect();
        let pts = staircase(&values, 0.001, 20.0);
        assert!(pts.len() <= 2 * MAX_STEPS + 1);
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(pts.last(), Some(&(20.0, 1.0)));
        assert_eq!(staircase(&[0, 5_000_000], 0.5, 10.0)[0], (0.5, 0.0));
    }

    #[test]
    fn svg_has_axes_legend_and_no_links() {
        let a: Vec<i64> = (1..=1000).map(|i| i * 10_000).collect();
        let b: Vec<i64> = (1..=500).map(|i| i * 25_000).collect();
        let svg = cdf_svg(
            "B b <via> A & C",
            &[
                Series { label: "original".into(), color: ORIGINAL, values: &a, dashed: false },
                Series { label: "palette".into(), color: candidate_color(0), values: &b, dashed: false },
            ],
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        assert!(svg.starts_with(&format!("<svg width=\"{WIDTH}\" height=\"{HEIGHT}\"")), "{}", &svg[..100]);
        assert!(svg.contains("latency (ms, log scale)") && svg.contains("fraction with latency ≤ x"));
        assert!(svg.contains(">palette<") || svg.contains("palette\n"), "legend");
        assert!(svg.contains("&lt;via&gt; A &amp; C"), "title escaped");
        let links = svg.matches("http").count();
        assert_eq!(links, svg.matches("xmlns=\"http://www.w3.org/2000/svg\"").count());
        // Empty series still draw a valid (empty) plot.
        assert!(cdf_svg("empty", &[]).unwrap().contains("<svg"));
    }

    /// The value of attribute `name` in the tag `tag`.
    fn attr<'s>(tag: &'s str, name: &str) -> Option<&'s str> {
        let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(&tag[start..start + tag[start..].find('"')?])
    }

    /// `(tag, content)` of every `<text>` of an SVG.
    fn texts(svg: &str) -> Vec<(&str, &str)> {
        svg.match_indices("<text")
            .map(|(i, _)| {
                let rest = &svg[i..];
                let end = rest.find('>').unwrap();
                let close = rest.find("</text>").unwrap();
                (&rest[..end], rest[end + 1..close].trim())
            })
            .collect()
    }

    /// The y of every point of the polylines with more than two points (the
    /// curves; a legend swatch has two).
    fn curve_ys(svg: &str) -> Vec<f64> {
        svg.match_indices("<polyline")
            .filter_map(|(i, _)| attr(&svg[i..i + svg[i..].find("/>").unwrap()], "points"))
            .map(|p| p.split_whitespace().map(|xy| xy.split_once(',').unwrap().1.parse::<f64>().unwrap()).collect())
            .filter(|ys: &Vec<f64>| ys.len() > 2)
            .flatten()
            .collect()
    }

    #[test]
    fn text_is_readable_and_legend_is_below_the_chart() {
        let a: Vec<i64> = (1..=1000).map(|i| i * 10_000).collect();
        let b: Vec<i64> = (1..=500).map(|i| i * 25_000).collect();
        let c: Vec<i64> = (1..=800).map(|i| 5_000_000 + i * 1_000).collect();
        let labels = ["original traces (n=1,000)", "palette simulation (n=500)", "baseline generator (n=800)"];
        let series: Vec<Series> = [(&a, ORIGINAL), (&b, candidate_color(0)), (&c, candidate_color(1))]
            .iter()
            .zip(labels)
            .map(|(&(v, color), label)| Series { label: label.into(), color, values: v, dashed: false })
            .collect();
        let title = "reservation/CheckAvailability ← frontend/HTTP GET /hotels (end to end)";
        let svg = cdf_svg(title, &series).unwrap();
        assert_eq!(svg, cdf_svg(title, &series).unwrap(), "deterministic");

        // Every text is at least 12 px as emitted.
        let sizes: Vec<f64> = svg
            .match_indices("font-size=\"")
            .map(|(i, _)| attr(&svg[i - 1..], "font-size").unwrap().parse().unwrap())
            .collect();
        assert!(sizes.len() > 10, "{sizes:?}");
        assert!(sizes.iter().all(|&s| s >= 12.0), "{sizes:?}");

        // The legend is below the curves and every other text of the chart
        // (tick labels, axis captions), inside the picture.
        let height: f64 = attr(&svg, "height").unwrap().parse().unwrap();
        let width: f64 = attr(&svg, "width").unwrap().parse().unwrap();
        assert!((430.0..=480.0).contains(&width), "{width}");
        let all = texts(&svg);
        let legend: Vec<(f64, f64)> = all
            .iter()
            .filter(|(_, t)| labels.contains(t))
            .map(|(tag, _)| (attr(tag, "x").unwrap().parse().unwrap(), attr(tag, "y").unwrap().parse().unwrap()))
            .collect();
        assert_eq!(legend.len(), 3, "one entry per series: {all:?}");
        let chart_bottom = all
            .iter()
            .filter(|(_, t)| !labels.contains(t))
            .map(|(tag, _)| attr(tag, "y").unwrap().parse::<f64>().unwrap())
            .chain(curve_ys(&svg))
            .fold(0.0, f64::max);
        let legend_top = legend.iter().map(|l| l.1).fold(f64::INFINITY, f64::min);
        assert!(legend_top > chart_bottom + LEGEND_PX, "legend at y {legend_top}, chart down to {chart_bottom}");
        assert!(legend.iter().all(|l| l.1 + LEGEND_PX <= height), "{legend:?} in {height}");
        for ((x, _), label) in legend.iter().zip(labels) {
            assert!(x + text_width(label, LEGEND_PX) <= width, "{label} at {x}");
        }
        // Three long labels do not fit on one row: the legend wraps and the
        // picture grows.
        let rows: std::collections::BTreeSet<i64> = legend.iter().map(|l| l.1 as i64).collect();
        assert!(rows.len() >= 2, "{legend:?}");
        let one = cdf_svg("t", &series[..1]).unwrap();
        assert!(attr(&one, "height").unwrap().parse::<f64>().unwrap() < height);
        // The long title is on two lines.
        assert_eq!(all.iter().filter(|(tag, _)| attr(tag, "font-size") == Some("14")).count(), 2);
    }
}
