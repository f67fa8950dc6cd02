//! SVG charts for `cargo xtask bench`, drawn with plotters (SVG backend only): one or more
//! side-by-side panels of lines with points, sharing an x axis, optionally on log scales.
//!
//! Log scales are drawn as the log10 of the values on a linear axis, labelled with the values
//! themselves, which keeps one chart type for every panel.

use std::path::Path;

use plotters::prelude::*;

/// One line of a panel.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One panel: a title, the y axis and its lines.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub y_label: String,
    pub log_y: bool,
    pub series: Vec<Series>,
}

/// The x axis shared by the panels of a chart.
#[derive(Debug, Clone)]
pub struct XAxis {
    pub label: String,
    pub log: bool,
    /// Labels for the x values (a categorical axis), instead of the numbers.
    pub names: Vec<(f64, String)>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn scale(v: f64, log: bool) -> f64 {
    if log { v.max(1e-9).log10() } else { v }
}

/// A number as a short axis label: 1, 2.5, 1k, 10k, 0.25.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

/// The label of the log10 value `key`: only at 1, 2 and 5 times a power of ten (only at
/// powers of ten when `decades`), blank elsewhere.
fn log_label(key: f64, decades: bool) -> String {
    let power = 10f64.powf(key.floor());
    let mantissa = 10f64.powf(key) / power;
    let near = |m: &&f64| (mantissa - **m).abs() < 0.03 * **m;
    let nice: &[f64] = if decades { &[1.0, 10.0] } else { &[1.0, 2.0, 5.0, 10.0] };
    nice.iter().find(near).map_or_else(String::new, |m| short(m * power))
}

/// Label positions for a log axis spanning `span` decades: steps of 0.1 decade (which hit
/// log10 of 1, 2 and 5).
fn log_ticks(span: f64) -> usize {
    ((span / 0.1).ceil() as usize + 1).clamp(2, 60)
}

/// Draws `panels` side by side into the SVG file `path`.
pub fn chart(path: &Path, caption: &str, x: &XAxis, panels: &[Panel]) -> anyhow::Result<()> {
    anyhow::ensure!(!panels.is_empty(), "chart {caption}: no panels");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("create {dir:?}: {e}"))?;
    }
    let width = 460 * u32::try_from(panels.len()).unwrap_or(1) + 40;
    let root = SVGBackend::new(path, (width, 400)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<std::io::Error>| anyhow::anyhow!("draw {caption}: {e:?}");
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(caption, ("sans-serif", 20)).map_err(err)?;
    let areas = root.split_evenly((1, panels.len()));
    for (area, panel) in areas.iter().zip(panels) {
        let xs = panel.series.iter().flat_map(|s| s.points.iter().map(|p| scale(p.0, x.log)));
        let ys = panel.series.iter().flat_map(|s| s.points.iter().map(|p| scale(p.1, panel.log_y)));
        let (x0, x1) = bounds(xs, false);
        let (y0, y1) = bounds(ys, !panel.log_y);
        let pad = if x1 > x0 { (x1 - x0) * 0.05 } else { 0.5 };
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(38)
            .y_label_area_size(56)
            .build_cartesian_2d(x0 - pad..x1 + pad, y0..y1)
            .map_err(err)?;
        let (xlog, ylog) = (x.log, panel.log_y);
        let names = x.names.clone();
        let x_decades = x1 - x0 >= 2.0;
        let x_fmt = move |v: &f64| {
            if names.is_empty() {
                if xlog { log_label(*v, x_decades) } else { short(*v) }
            } else {
                names
                    .iter()
                    .find(|(at, _)| (at - v).abs() < 1e-6)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_default()
            }
        };
        let y_decades = y1 - y0 >= 3.0;
        let y_fmt = move |v: &f64| if ylog { log_label(*v, y_decades) } else { short(*v) };
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(x.label.as_str())
            .y_desc(panel.y_label.as_str())
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.08));
        if !x.names.is_empty() {
            mesh.x_labels(x.names.len() * 4 + 1);
        } else if x.log {
            mesh.x_labels(log_ticks(x1 - x0 + 2.0 * pad));
        }
        if panel.log_y {
            mesh.y_labels(log_ticks(y1 - y0));
        }
        mesh.draw().map_err(err)?;
        for (i, s) in panel.series.iter().enumerate() {
            let color = COLORS.get(i % COLORS.len()).copied().unwrap_or(BLACK);
            let pts: Vec<(f64, f64)> =
                s.points.iter().map(|&(a, b)| (scale(a, x.log), scale(b, panel.log_y))).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(s.name.as_str())
                .legend(move |(lx, ly)| {
                    PathElement::new(vec![(lx, ly), (lx + 18, ly)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(err)?;
        }
        if panel.series.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(err)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

/// The range of `values` with some room above (and from 0 when `from_zero`).
fn bounds(values: impl Iterator<Item = f64>, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if from_zero {
        lo = lo.min(0.0);
        let top = if hi > lo { hi * 1.15 } else { lo + 1.0 };
        return (lo, top);
    }
    let span = if hi > lo { hi - lo } else { 1.0 };
    (lo - span * 0.08, hi + span * 0.12)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn short_labels() {
        assert_eq!(short(10_000.0), "10k");
        assert_eq!(short(1.0), "1");
        assert_eq!(short(2.5), "2.5");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(1500.0), "1.5k");
        assert_eq!(log_label(50f64.log10() + 0.001, false), "50");
        assert_eq!(log_label(3f64.log10(), false), "");
        assert_eq!(log_label(20f64.log10(), true), "");
    }

    #[test]
    fn draws_an_svg() {
        let dir = std::env::temp_dir().join(format!("xtask-plot-{}", std::process::id()));
        let path = dir.join("t.svg");
        let panel = Panel {
            title: "cpu".to_owned(),
            y_label: "ms".to_owned(),
            log_y: false,
            series: vec![Series { name: "a".to_owned(), points: vec![(10.0, 1.0), (100.0, 4.0)] }],
        };
        let x = XAxis { label: "gateways".to_owned(), log: true, names: Vec::new() };
        chart(&path, "test", &x, &[panel.clone(), panel]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("gateways") && svg.contains("<polyline"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
