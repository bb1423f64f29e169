//! The comparison's SVG charts (plotters): msg/s and server CPU per message per server,
//! latency percentiles per server, msg/s against worker count, and memory per idle
//! connection, and server CPU per message against the number of idle connections (the
//! `--idle-connections` sweep). One panel per scenario; bars show the median with a min–max
//! whisker. With a sweep, the bar charts show the sweep's first count.

use std::error::Error;
use std::path::Path;

use plotters::coord::combinators::BindKeyPoints;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::micros;
use crate::scenario::Scenario;
use crate::summary::{CellSummary, CompareReport, Spread};

/// Chart files and their titles, in the order the Markdown report shows them.
pub(crate) const FILES: [(&str, &str); 6] = [
    ("throughput.svg", "Throughput per server"),
    ("cpu_per_msg.svg", "Server CPU time per message"),
    (
        "idle_sweep.svg",
        "Server CPU time per message against idle connections",
    ),
    ("latency.svg", "Latency percentiles"),
    ("workers.svg", "Throughput against worker count"),
    ("idle_rss.svg", "Server memory per idle connection"),
];

const WIDTH: u32 = 960;
const PANEL_HEIGHT: u32 = 300;
const TITLE_HEIGHT: u32 = 50;
const FONT: &str = "sans-serif";
/// A colour-blind-friendly palette (seaborn "deep").
const PALETTE: [RGBColor; 10] = [
    RGBColor(76, 114, 176),
    RGBColor(221, 132, 82),
    RGBColor(85, 168, 104),
    RGBColor(196, 78, 82),
    RGBColor(129, 114, 179),
    RGBColor(147, 120, 96),
    RGBColor(218, 139, 195),
    RGBColor(140, 140, 140),
    RGBColor(204, 185, 116),
    RGBColor(100, 181, 205),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The charts `write_all` draws for `report`, as (file, title), in `FILES` order.
pub(crate) fn planned(report: &CompareReport) -> Vec<(&'static str, &'static str)> {
    let timed = !timed_scenarios(report).is_empty();
    let idle = report
        .scenarios
        .iter()
        .any(|s| s.scenario == Scenario::Idle);
    FILES
        .into_iter()
        .filter(|&(file, _)| match file {
            "workers.svg" => timed && worker_series(report).is_some(),
            "idle_rss.svg" => idle,
            "idle_sweep.svg" => !swept_timed(report).is_empty(),
            _ => timed,
        })
        .collect()
}

/// Draws every planned chart into `dir`.
pub(crate) fn write_all(dir: &Path, report: &CompareReport) -> Result<()> {
    let files: Vec<&str> = planned(report).into_iter().map(|(file, _)| file).collect();
    let timed = timed_scenarios(report);
    let cells: Vec<&str> = report.cells.iter().map(|c| c.label.as_str()).collect();
    let panels_of = |metric: fn(&CellSummary) -> Option<Spread>| -> Vec<Panel> {
        timed
            .iter()
            .map(|&sc| Panel {
                caption: caption(report, sc),
                bars: cells
                    .iter()
                    .map(|c| (c.to_string(), report.find(sc, c).and_then(metric)))
                    .collect(),
            })
            .collect()
    };
    if files.contains(&"throughput.svg") {
        bar_chart(
            &dir.join("throughput.svg"),
            "Throughput (messages per second; connrate: connections per second)",
            "per second",
            &panels_of(|s| s.msgs_per_sec),
            short_number,
        )?;
    }
    if files.contains(&"cpu_per_msg.svg") {
        bar_chart(
            &dir.join("cpu_per_msg.svg"),
            "Server CPU time per message (user + system), lower is better",
            "µs (connrate: per connection)",
            &panels_of(|s| s.server_cpu_per_msg_us),
            |v| format!("{v:.2}"),
        )?;
    }
    if files.contains(&"idle_sweep.svg") {
        idle_sweep_chart(&dir.join("idle_sweep.svg"), report, &swept_timed(report))?;
    }
    if files.contains(&"latency.svg") {
        latency_chart(&dir.join("latency.svg"), report, &timed)?;
    }
    if files.contains(&"workers.svg") {
        workers_chart(&dir.join("workers.svg"), report, &timed)?;
    }
    if files.contains(&"idle_rss.svg") {
        let panel = Panel {
            caption: caption(report, Scenario::Idle),
            bars: cells
                .iter()
                .map(|c| {
                    (
                        c.to_string(),
                        report
                            .find(Scenario::Idle, c)
                            .and_then(|s| s.rss_per_connection_bytes),
                    )
                })
                .collect(),
        };
        bar_chart(
            &dir.join("idle_rss.svg"),
            "Server resident memory per idle connection, lower is better",
            "bytes per connection",
            &[panel],
            |v| format!("{v:.0}"),
        )?;
    }
    Ok(())
}

/// Timed scenarios, each once (a sweep lists a scenario once per idle count).
fn timed_scenarios(report: &CompareReport) -> Vec<Scenario> {
    let mut out: Vec<Scenario> = Vec::new();
    for s in &report.scenarios {
        if s.scenario.is_timed() && !out.contains(&s.scenario) {
            out.push(s.scenario);
        }
    }
    out
}

/// Timed scenarios swept over idle-connection counts.
fn swept_timed(report: &CompareReport) -> Vec<Scenario> {
    report
        .swept_scenarios()
        .into_iter()
        .filter(|s| s.is_timed())
        .collect()
}

/// Server CPU per message against idle connections: one panel per swept scenario, a line
/// per cell (median, min–max whiskers), log scale. A cell not served at some counts has no point there,
/// and its legend entry says from which count on.
fn idle_sweep_chart(path: &Path, report: &CompareReport, scenarios: &[Scenario]) -> Result<()> {
    let height = TITLE_HEIGHT + PANEL_HEIGHT * scenarios.len() as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Server CPU time per message against idle connections (median, min–max)",
        (FONT, 20),
    )?;
    let areas = root.split_evenly((scenarios.len(), 1));
    for (&sc, area) in scenarios.iter().zip(areas.iter()) {
        let counts = report.idle_counts(sc);
        let max_x = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
        // Log scale: poll's cost grows a hundredfold while epoll's stays flat; on a linear
        // axis the flat lines would merge at the bottom.
        let values = report
            .summary
            .iter()
            .filter(|s| s.scenario == sc)
            .filter_map(|s| s.server_cpu_per_msg_us)
            .flat_map(|m| [m.min, m.max])
            .filter(|v| *v > 0.0);
        let (lo, hi) = values.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (lo, hi) = if hi > 0.0 {
            (lo / 1.5, hi * 1.5)
        } else {
            (0.1, 10.0)
        };
        let load = report
            .scenarios
            .iter()
            .find(|s| s.scenario == sc)
            .map(|s| format!("{sc}: {}", s.describe_load()))
            .unwrap_or_else(|| sc.to_string());
        let mut chart = ChartBuilder::on(area)
            .caption(load, (FONT, 15))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(
                -max_x * 0.03..max_x * 1.03,
                (lo..hi).log_scale().with_key_points(log_key_points(lo, hi)),
            )?;
        chart
            .configure_mesh()
            .x_desc("idle connections")
            .x_label_formatter(&|x| short_number(*x))
            .y_desc(format!("µs per {} (log scale)", sc.unit()))
            .y_label_formatter(&|v| short_number(*v))
            .light_line_style(BLACK.mix(0.04))
            .draw()?;
        for (i, cell) in report.cells.iter().enumerate() {
            let c = color(i);
            let mut points: Vec<(f64, Spread)> = Vec::new();
            let mut not_served = None;
            for &n in &counts {
                let Some(s) = report.find_at(sc, n, &cell.label) else {
                    continue;
                };
                if s.runs == 0 {
                    not_served = not_served.or(Some(n));
                } else if let Some(v) = s.server_cpu_per_msg_us {
                    points.push((n as f64, v));
                }
            }
            let label = match not_served {
                Some(n) => format!(
                    "{} ({} at {} idle)",
                    cell.label,
                    crate::summary::NOT_SERVED,
                    crate::report::thousands(n as u64)
                ),
                None => cell.label.clone(),
            };
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|(x, v)| (*x, v.median)),
                    c.stroke_width(2),
                ))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart.draw_series(
                points
                    .iter()
                    .map(|(x, v)| Circle::new((*x, v.median), 4, c.filled())),
            )?;
            for (x, v) in points.iter().filter(|(_, v)| v.max > v.min) {
                chart.draw_series(whisker(*x, *v, max_x * 0.006, c))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK.mix(0.3))
            .background_style(WHITE.mix(0.9))
            .label_font((FONT, 13))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn caption(report: &CompareReport, sc: Scenario) -> String {
    report
        .scenarios
        .iter()
        .find(|s| s.scenario == sc)
        .map(|s| format!("{sc}: {}", s.describe()))
        .unwrap_or_else(|| sc.to_string())
}

/// 1, 2, 5, 10, 20, 50, ... within `lo..=hi`: labels for a log axis.
fn log_key_points(lo: f64, hi: f64) -> Vec<f64> {
    let mut points = Vec::new();
    let mut decade = 10f64.powf(lo.max(1e-9).log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if (lo..=hi).contains(&v) {
                points.push(v);
            }
        }
        decade *= 10.0;
    }
    points
}

/// 1234567 → "1.23M".
fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// A line of the latency chart: palette index, label, (percentile index, µs) points.
type LatencyLine = (usize, String, Vec<(f64, f64)>);
/// A model measured at several worker counts: its name and (workers, cell label) pairs.
type WorkerSeries = (String, Vec<(usize, String)>);

/// One panel of a bar chart: a caption and a bar per cell.
struct Panel {
    caption: String,
    bars: Vec<(String, Option<Spread>)>,
}

/// Panels of bars (median) with min–max whiskers and the median written above each bar.
fn bar_chart(
    path: &Path,
    title: &str,
    y_desc: &str,
    panels: &[Panel],
    label: fn(f64) -> String,
) -> Result<()> {
    let height = TITLE_HEIGHT + PANEL_HEIGHT * panels.len() as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, (FONT, 20))?;
    let areas = root.split_evenly((panels.len(), 1));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let n = panel.bars.len();
        let top = panel
            .bars
            .iter()
            .filter_map(|(_, s)| s.map(|s| s.max))
            .fold(0.0f64, f64::max);
        let top = if top > 0.0 { top * 1.18 } else { 1.0 };
        let names: Vec<String> = panel.bars.iter().map(|(n, _)| n.clone()).collect();
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.caption, (FONT, 15))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n.max(1))
            .x_label_formatter(&|x| category(&names, *x))
            .y_labels(6)
            .y_desc(y_desc)
            .y_label_formatter(&|v| short_number(*v))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let bars: Vec<(usize, Spread)> = panel
            .bars
            .iter()
            .enumerate()
            .filter_map(|(i, (_, s))| s.map(|s| (i, s)))
            .collect();
        chart.draw_series(bars.iter().map(|&(i, s)| {
            let x = i as f64;
            Rectangle::new([(x - 0.32, 0.0), (x + 0.32, s.median)], color(i).filled())
        }))?;
        for &(i, s) in bars.iter().filter(|(_, s)| s.max > s.min) {
            chart.draw_series(whisker(i as f64, s, 0.06, BLACK))?;
        }
        let style =
            TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(bars.iter().map(|&(i, s)| {
            Text::new(
                label(s.median),
                (i as f64, s.max + top * 0.02),
                style.clone(),
            )
        }))?;
    }
    root.present()?;
    Ok(())
}

/// A min–max whisker at `x`: a vertical line with caps `half` wide (in x units).
fn whisker(x: f64, s: Spread, half: f64, color: RGBColor) -> Vec<PathElement<(f64, f64)>> {
    let style = color.stroke_width(1);
    vec![
        PathElement::new(vec![(x, s.min), (x, s.max)], style),
        PathElement::new(vec![(x - half, s.min), (x + half, s.min)], style),
        PathElement::new(vec![(x - half, s.max), (x + half, s.max)], style),
    ]
}

/// The category name at an integer x, nothing between.
fn category(names: &[String], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() < 1e-6 && i >= 0.0 {
        names.get(i as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// One panel per scenario: p50, p90, p99, p99.9 on a log scale, a line per cell.
fn latency_chart(path: &Path, report: &CompareReport, scenarios: &[Scenario]) -> Result<()> {
    let names: Vec<String> = ["p50", "p90", "p99", "p99.9"].map(String::from).to_vec();
    let height = TITLE_HEIGHT + PANEL_HEIGHT * scenarios.len() as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Latency percentiles (median over repetitions), log scale",
        (FONT, 20),
    )?;
    let areas = root.split_evenly((scenarios.len(), 1));
    for (&sc, area) in scenarios.iter().zip(areas.iter()) {
        let lines: Vec<LatencyLine> = report
            .cells
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let s = report.find(sc, &c.label)?;
                let points: Vec<(f64, f64)> = [s.p50_us, s.p90_us, s.p99_us, s.p999_us]
                    .iter()
                    .enumerate()
                    .filter_map(|(x, v)| v.map(|v| (x as f64, v.median.max(0.1))))
                    .collect();
                (!points.is_empty()).then(|| (i, c.label.clone(), points))
            })
            .collect();
        let values = lines.iter().flat_map(|(_, _, p)| p.iter().map(|(_, y)| *y));
        let (lo, hi) = values.fold((f64::MAX, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
        let (lo, hi) = if hi > 0.0 {
            (lo / 1.5, hi * 1.5)
        } else {
            (1.0, 10.0)
        };
        let mut chart = ChartBuilder::on(area)
            .caption(caption(report, sc), (FONT, 15))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.3f64..3.3f64, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(4)
            .x_label_formatter(&|x| category(&names, *x))
            .y_desc("latency")
            .y_label_formatter(&|v| micros(*v))
            .light_line_style(BLACK.mix(0.04))
            .draw()?;
        for (i, label, points) in lines {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK.mix(0.3))
            .background_style(WHITE.mix(0.9))
            .label_font((FONT, 13))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// Models measured at two or more worker counts, with their (workers, cell label) pairs.
fn worker_series(report: &CompareReport) -> Option<Vec<WorkerSeries>> {
    let mut series: Vec<WorkerSeries> = Vec::new();
    for c in &report.cells {
        let Some(w) = c.workers else { continue };
        match series.iter_mut().find(|(m, _)| *m == c.model) {
            Some((_, points)) => points.push((w, c.label.clone())),
            None => series.push((c.model.clone(), vec![(w, c.label.clone())])),
        }
    }
    series.retain(|(_, points)| points.len() >= 2);
    for (_, points) in &mut series {
        points.sort();
    }
    (!series.is_empty()).then_some(series)
}

/// msg/s against worker count, a line per scaling model; other cells as dashed levels.
fn workers_chart(path: &Path, report: &CompareReport, scenarios: &[Scenario]) -> Result<()> {
    let Some(series) = worker_series(report) else {
        return Ok(());
    };
    let max_workers = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(w, _)| *w))
        .max()
        .unwrap_or(1);
    let height = TITLE_HEIGHT + PANEL_HEIGHT * scenarios.len() as u32;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Throughput against worker count (median, min–max)",
        (FONT, 20),
    )?;
    let areas = root.split_evenly((scenarios.len(), 1));
    let cell_index = |label: &str| {
        report
            .cells
            .iter()
            .position(|c| c.label == label)
            .unwrap_or(0)
    };
    for (&sc, area) in scenarios.iter().zip(areas.iter()) {
        let top = report
            .summary
            .iter()
            .filter(|s| s.scenario == sc)
            .filter_map(|s| s.msgs_per_sec.map(|m| m.max))
            .fold(0.0f64, f64::max);
        let top = if top > 0.0 { top * 1.15 } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .caption(caption(report, sc), (FONT, 15))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0.5f64..(max_workers as f64 + 0.5), 0f64..top)?;
        chart
            .configure_mesh()
            .x_labels(max_workers.min(16))
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{}", x.round() as i64)
                } else {
                    String::new()
                }
            })
            .x_desc("workers")
            .y_desc("per second")
            .y_label_formatter(&|v| short_number(*v))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (model, points) in &series {
            let c = color(cell_index(&points[0].1));
            let data: Vec<(f64, Spread)> = points
                .iter()
                .filter_map(|(w, label)| {
                    report
                        .find(sc, label)
                        .and_then(|s| s.msgs_per_sec)
                        .map(|m| (*w as f64, m))
                })
                .collect();
            chart
                .draw_series(LineSeries::new(
                    data.iter().map(|(w, m)| (*w, m.median)),
                    c.stroke_width(2),
                ))?
                .label(model.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart.draw_series(
                data.iter()
                    .map(|(w, m)| Circle::new((*w, m.median), 4, c.filled())),
            )?;
            for (w, m) in data.iter().filter(|(_, m)| m.max > m.min) {
                chart.draw_series(whisker(*w, *m, 0.05, c))?;
            }
        }
        // Servers without a worker count (peers, single-threaded models) as levels.
        for (i, cell) in report.cells.iter().enumerate() {
            if cell.workers.is_some() {
                continue;
            }
            let Some(m) = report.find(sc, &cell.label).and_then(|s| s.msgs_per_sec) else {
                continue;
            };
            let c = color(i);
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.5, m.median), (max_workers as f64 + 0.5, m.median)],
                    8,
                    5,
                    c.stroke_width(2),
                ))?
                .label(cell.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .border_style(BLACK.mix(0.3))
            .background_style(WHITE.mix(0.9))
            .label_font((FONT, 13))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers() {
        assert_eq!(short_number(1_234_567.0), "1.23M");
        assert_eq!(short_number(45_678.0), "46k");
        assert_eq!(short_number(4_567.0), "4.6k");
        assert_eq!(short_number(456.0), "456");
        assert_eq!(short_number(4.5), "4.5");
        assert_eq!(short_number(5.0), "5");
        assert_eq!(short_number(0.25), "0.25");
    }

    #[test]
    fn log_axis_labels_are_one_two_five() {
        assert_eq!(log_key_points(1.2, 60.0), vec![2.0, 5.0, 10.0, 20.0, 50.0]);
        assert_eq!(log_key_points(0.5, 1.0), vec![0.5, 1.0]);
    }

    #[test]
    fn categories_only_at_integers() {
        let names = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(category(&names, 1.0), "b");
        assert_eq!(category(&names, 0.5), "");
        assert_eq!(category(&names, 2.0), "");
    }
}
