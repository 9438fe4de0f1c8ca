//! Latency CDF plots as inline SVG, drawn with plotters.
//!
//! x is latency in ms on a log axis (latencies span orders of magnitude);
//! y is the cumulative fraction. Each sample is drawn as a staircase through
//! at most [`MAX_STEPS`] of its order statistics, which keeps a plot of
//! 200,000-value samples a few tens of kilobytes.

use plotters::prelude::*;

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

/// Plot size in pixels.
pub const WIDTH: u32 = 460;
pub const HEIGHT: u32 = 300;

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

/// Axis ticks on a log scale: 1-2-5 in each decade of `[lo, hi]` (only
/// powers of ten past four decades), and light grid lines at every integer
/// multiple of each power of ten.
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let multiples: &[f64] = if last - first > 4 { &[1.0] } else { &[1.0, 2.0, 5.0] };
    let (mut bold, mut light) = (Vec::new(), Vec::new());
    for k in first..=last {
        let p = 10f64.powi(k);
        bold.extend(multiples.iter().map(|m| m * p).filter(|v| (lo..=hi).contains(v)));
        light.extend((1..10).map(|m| m as f64 * p).filter(|v| (lo..=hi).contains(v)));
    }
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

/// An SVG document with the CDFs of `series`, titled `title`.
pub fn cdf_svg(title: &str, series: &[Series]) -> Result<String, Error> {
    let fail = |e: &dyn std::fmt::Display| Error::Plot { title: title.to_string(), message: e.to_string() };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let (lo, hi) = x_range(series);
        let (bold, light) = log_ticks(lo, hi);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 14))
            .margin(10)
            .x_label_area_size(38)
            .y_label_area_size(46)
            .build_cartesian_2d((lo..hi).log_scale().with_key_points(bold).with_light_points(light), 0.0f64..1.0)
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("latency (ms, log scale)")
            .y_desc("cumulative fraction")
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .y_labels(11)
            .light_line_style(RGBColor(242, 242, 242))
            .bold_line_style(RGBColor(215, 215, 215))
            .label_style(("sans-serif", 11))
            .axis_desc_style(("sans-serif", 12))
            .draw()
            .map_err(|e| fail(&e))?;
        // Candidates are drawn over a wider original, so a candidate that
        // matches shows as a coloured line with a black rim.
        for (i, s) in series.iter().enumerate() {
            let color = s.color;
            let width = if i == 0 {
                4
            } else if s.dashed {
                1
            } else {
                2
            };
            let points = staircase(s.values, lo, hi);
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(width)))
                .map_err(|e| fail(&e))?
                .label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(width)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 11))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (bold, light) = log_ticks(1.8, 46.0);
        assert_eq!(bold, vec![2.0, 5.0, 10.0, 20.0]);
        assert_eq!(light.first(), Some(&2.0));
        assert_eq!(light.last(), Some(&40.0));
        let (bold, _) = log_ticks(0.01, 10_000.0);
        assert_eq!(bold, vec![0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10_000.0]);
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
        assert!(svg.contains("latency (ms, log scale)") && svg.contains("cumulative fraction"));
        assert!(svg.contains(">palette<") || svg.contains("palette\n"), "legend");
        assert!(svg.contains("&lt;via&gt; A &amp; C"), "title escaped");
        let links = svg.matches("http").count();
        assert_eq!(links, svg.matches("xmlns=\"http://www.w3.org/2000/svg\"").count());
        // Empty series still draw a valid (empty) plot.
        assert!(cdf_svg("empty", &[]).unwrap().contains("<svg"));
    }
}
