//! Self-contained SVG line charts for benchmark reports: latency by percentile (HDR style, the
//! x axis stretched towards the tail), throughput over time, and latency against throughput.
//!
//! Hand-written SVG keeps reports viewable in any browser with no plotting dependency.

use hdrhistogram::Histogram;
use std::fmt::Write;

/// One named line.
#[derive(Clone, Debug)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) points: Vec<(f64, f64)>,
}

/// How the x axis maps values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum XScale {
    Linear,
    /// x is a percentile in [0, 100); the axis is linear in log10(1 / (1 - q)), so 90, 99, 99.9
    /// and 99.99 are evenly spaced, as in HDR histogram plots.
    Percentile,
}

/// A line chart.
#[derive(Clone, Debug)]
pub(crate) struct Chart {
    pub(crate) title: String,
    pub(crate) x_label: String,
    pub(crate) y_label: String,
    pub(crate) x_scale: XScale,
    /// Plot y on a log10 axis (latencies spanning orders of magnitude).
    pub(crate) y_log: bool,
    pub(crate) series: Vec<Series>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
/// Dash patterns for the rounds of one series (first round solid).
const DASHES: [&str; 4] = [
    "",
    r#" stroke-dasharray="7 3""#,
    r#" stroke-dasharray="2 3""#,
    r#" stroke-dasharray="9 3 2 3""#,
];

/// The percentile series of a latency histogram (ns), in milliseconds, from p0 to the max.
pub(crate) fn percentile_series(name: &str, h: &Histogram<u64>) -> Series {
    let mut points = Vec::new();
    if !h.is_empty() {
        // Evenly spaced in log10(1/(1-q)) from q = 0 to q = 0.99999.
        for step in 0..=100 {
            let t = step as f64 / 20.0;
            let q = 1.0 - 10f64.powf(-t);
            points.push((q * 100.0, h.value_at_quantile(q) as f64 / 1e6));
        }
    }
    Series { name: name.to_owned(), points }
}

fn x_transform(scale: XScale, x: f64) -> f64 {
    match scale {
        XScale::Linear => x,
        XScale::Percentile => {
            let q = (x / 100.0).clamp(0.0, 0.999_999);
            (1.0 / (1.0 - q)).log10()
        }
    }
}

fn y_transform(log: bool, y: f64) -> f64 {
    if log {
        y.max(1e-6).log10()
    } else {
        y
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".to_owned()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Round tick values (1, 2 or 5 times a power of ten apart) inside `[lo, hi]`, about five.
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * magnitude);
    let mut ticks = Vec::new();
    let mut t = (lo / step).ceil() * step;
    while t <= hi + step * 1e-9 {
        ticks.push(t);
        t += step;
    }
    ticks
}

/// Tick positions (in log10 units) at 1, 2 and 5 times powers of ten inside `[lo, hi]`.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = lo.floor() as i32;
    while f64::from(decade) <= hi {
        for m in [1.0f64, 2.0, 5.0] {
            let t = f64::from(decade) + m.log10();
            if t >= lo - 1e-9 && t <= hi + 1e-9 {
                ticks.push(t);
            }
        }
        decade += 1;
    }
    ticks
}

impl Chart {
    /// Renders the chart as a standalone SVG document.
    pub(crate) fn to_svg(&self) -> String {
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| (x_transform(self.x_scale, x), y_transform(self.y_log, y)))
            .collect();
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in &pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if pts.is_empty() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        if !self.y_log {
            y0 = y0.min(0.0);
        }
        if (x1 - x0).abs() < 1e-12 {
            x1 = x0 + 1.0;
        }
        if (y1 - y0).abs() < 1e-12 {
            y1 = y0 + 1.0;
        }
        y1 += (y1 - y0) * 0.05;
        let pw = WIDTH - LEFT - RIGHT;
        let ph = HEIGHT - TOP - BOTTOM;
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| TOP + ph - (y - y0) / (y1 - y0) * ph;

        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = write!(
            svg,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            LEFT + pw / 2.0,
            escape(&self.title)
        );
        // Axes and grid.
        let _ = write!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
        );
        let y_ticks = if self.y_log { log_ticks(y0, y1) } else { nice_ticks(y0, y1) };
        for t in y_ticks {
            let label = if self.y_log { 10f64.powf(t) } else { t };
            let y = sy(t);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                LEFT + pw,
                LEFT - 6.0,
                y + 4.0,
                fmt_tick(label)
            );
        }
        match self.x_scale {
            XScale::Percentile => {
                for (q, label) in [
                    (0.0, "0%"),
                    (90.0, "90%"),
                    (99.0, "99%"),
                    (99.9, "99.9%"),
                    (99.99, "99.99%"),
                    (99.999, "99.999%"),
                ] {
                    let t = x_transform(XScale::Percentile, q);
                    if t < x0 - 1e-9 || t > x1 + 1e-9 {
                        continue;
                    }
                    let x = sx(t);
                    let _ = write!(
                        svg,
                        r##"<line x1="{x}" x2="{x}" y1="{TOP}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{label}</text>"##,
                        TOP + ph,
                        TOP + ph + 16.0
                    );
                }
            }
            XScale::Linear => {
                for t in nice_ticks(x0, x1) {
                    let x = sx(t);
                    let _ = write!(
                        svg,
                        r##"<line x1="{x}" x2="{x}" y1="{TOP}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{}</text>"##,
                        TOP + ph,
                        TOP + ph + 16.0,
                        fmt_tick(t)
                    );
                }
            }
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            HEIGHT - 18.0,
            escape(&self.x_label)
        );
        let _ = write!(
            svg,
            r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>"#,
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            escape(&self.y_label)
        );
        // Lines and legend. Series that differ only by their round (" #2") share a colour and
        // tell rounds apart by the dash pattern.
        let mut bases: Vec<&str> = Vec::new();
        for (i, s) in self.series.iter().enumerate() {
            let base = s.name.split(" #").next().unwrap_or(&s.name);
            let round =
                self.series[..i].iter().filter(|o| o.name.split(" #").next() == Some(base)).count();
            let slot = bases.iter().position(|b| *b == base).unwrap_or_else(|| {
                bases.push(base);
                bases.len() - 1
            });
            let color = COLORS[slot % COLORS.len()];
            let dash = DASHES[round % DASHES.len()];
            let path: Vec<String> = s
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| {
                    format!(
                        "{:.1},{:.1}",
                        sx(x_transform(self.x_scale, x)),
                        sy(y_transform(self.y_log, y))
                    )
                })
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
                path.join(" ")
            );
            let ly = TOP + 10.0 + i as f64 * 18.0;
            let lx = WIDTH - RIGHT + 12.0;
            let _ = write!(
                svg,
                r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="3"{dash}/><text x="{}" y="{}">{}</text>"#,
                lx + 18.0,
                lx + 24.0,
                ly + 4.0,
                escape(&s.name)
            );
        }
        svg.push_str("</svg>");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_axis_spaces_nines_evenly() {
        let a = x_transform(XScale::Percentile, 90.0);
        let b = x_transform(XScale::Percentile, 99.0);
        let c = x_transform(XScale::Percentile, 99.9);
        assert!((b - a - (c - b)).abs() < 1e-9);
    }

    #[test]
    fn ticks_are_round_numbers_inside_the_range() {
        assert_eq!(
            nice_ticks(0.0, 53_896.0),
            vec![0.0, 10_000.0, 20_000.0, 30_000.0, 40_000.0, 50_000.0]
        );
        let t = nice_ticks(0.0, 4.9);
        assert_eq!(t, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        let l: Vec<f64> = log_ticks(-0.6, 1.0).iter().map(|t| 10f64.powf(*t)).collect();
        let rounded: Vec<f64> = l.iter().map(|v| (v * 1000.0).round() / 1000.0).collect();
        assert_eq!(rounded, vec![0.5, 1.0, 2.0, 5.0, 10.0]);
    }

    #[test]
    fn chart_renders_every_series_and_escapes_text() {
        let chart = Chart {
            title: "a < b".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_scale: XScale::Linear,
            y_log: false,
            series: vec![
                Series { name: "one".into(), points: vec![(0.0, 1.0), (1.0, 2.0)] },
                Series { name: "two".into(), points: vec![(0.0, 3.0), (1.0, f64::NAN)] },
            ],
        };
        let svg = chart.to_svg();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a &lt; b"));
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn rounds_of_one_series_share_a_colour_and_differ_by_dashes() {
        let series =
            |name: &str| Series { name: name.into(), points: vec![(0.0, 1.0), (1.0, 2.0)] };
        let chart = Chart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_scale: XScale::Linear,
            y_log: false,
            series: vec![series("raftwal #1"), series("etcd #1"), series("raftwal #2")],
        };
        let svg = chart.to_svg();
        let lines: Vec<&str> = svg.split("<polyline").skip(1).collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains(COLORS[0]) && !lines[0].contains("dasharray"));
        assert!(lines[1].contains(COLORS[1]) && !lines[1].contains("dasharray"));
        assert!(lines[2].contains(COLORS[0]) && lines[2].contains("stroke-dasharray=\"7 3\""));
    }

    #[test]
    fn percentile_series_is_monotonic() {
        let mut h = crate::report::latency_histogram_ns();
        for v in 1..10_000_u64 {
            h.record(v * 1000).unwrap();
        }
        let s = percentile_series("x", &h);
        assert!(s.points.windows(2).all(|w| w[0].1 <= w[1].1 && w[0].0 < w[1].0));
        assert!((s.points.last().unwrap().1 - 10.0).abs() < 0.1);
    }
}
