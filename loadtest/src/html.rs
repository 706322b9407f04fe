//! A report as one self-contained HTML page: tables and inline SVG charts,
//! no scripts, fonts or stylesheets from elsewhere, so it can be mailed or
//! archived and still open the same way years later.

use std::fmt::Write as _;

use crate::report::Report;
use crate::stats::Percentiles;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 280.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 56.0;
const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22",
];

pub fn render(report: &Report) -> String {
    let mut page = String::new();
    let verdict = if report.passed { "PASSED" } else { "FAILED" };
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>meshi load test: {scenario} ({verdict})</title><style>{STYLE}</style></head><body>\
         <h1>meshi load test: <code>{scenario}</code> <span class=\"{class}\">{verdict}</span></h1>\
         <p>{tool}, started {started}; {elapsed:.1} s in all, {load:.1} s of load. Machine: {cpus} \
         cpus, {memory} MiB, open-file limit {nofile}.</p>",
        scenario = escape(&report.scenario),
        class = verdict.to_lowercase(),
        tool = escape(&report.tool),
        started = escape(&report.started_at),
        elapsed = report.elapsed_secs,
        load = report.load_secs,
        cpus = report.machine.cpus,
        memory = report.machine.memory_mib,
        nofile = report.machine.nofile_limit,
    );
    for failure in &report.failures {
        let _ = write!(page, "<p class=\"failed\">Failed: {}</p>", escape(failure));
    }
    for warning in &report.warnings {
        let _ = write!(
            page,
            "<p class=\"warning\">Warning: {}</p>",
            escape(warning)
        );
    }
    for note in &report.notes {
        let _ = write!(page, "<p>Note: {}</p>", escape(note));
    }

    let load = (report.load_secs > 0.0).then_some((
        report.load_start_secs,
        report.load_start_secs + report.load_secs,
    ));
    page.push_str("<h2>Throughput</h2>");
    let rates: Vec<(String, String)> = report
        .rates
        .iter()
        .map(|(name, rate)| (name.clone(), format!("{rate:.1}")))
        .collect();
    page.push_str(&table(&["per second of load", "value"], &rates));
    if !report.figures.is_empty() {
        let figures: Vec<(String, String)> = report
            .figures
            .iter()
            .map(|(name, value)| (name.clone(), format!("{value:.1}")))
            .collect();
        page.push_str(&table(&["figure", "value"], &figures));
    }
    let throughput = series_matching(report, |name| {
        name.ends_with("_per_sec") && !name.starts_with("error") && !name.starts_with("unparsed")
    });
    if !throughput.is_empty() {
        page.push_str(&line_chart(
            "Throughput over time (per second)",
            &report.timeline.t_secs,
            &throughput,
            load,
        ));
    }

    page.push_str("<h2>Latency</h2>");
    page.push_str(&latency_table(report));
    if !report.latency_ms.is_empty() {
        page.push_str(&percentile_chart(report));
    }
    // The latencies of the scenario's purpose, when it has them; every
    // latency otherwise.
    let primary = |name: &str| {
        name.ends_with("_ms")
            && ["delivery", "round_trip", "churn_cycle"]
                .iter()
                .any(|p| name.contains(p))
    };
    let mut over_time = series_matching(report, primary);
    if over_time.is_empty() {
        over_time = series_matching(report, |name| name.ends_with("_ms"));
    }
    if !over_time.is_empty() {
        page.push_str(&line_chart(
            "Latency over time, p50 and p99 of each second (ms)",
            &report.timeline.t_secs,
            &over_time,
            load,
        ));
    }

    page.push_str("<h2>Sockets and resources</h2>");
    let sockets = series_matching(report, |name| name == "sockets_open");
    if !sockets.is_empty() {
        page.push_str(&line_chart(
            "Sockets open",
            &report.timeline.t_secs,
            &sockets,
            load,
        ));
    }
    let cpu = series_matching(report, |name| name.ends_with("cpu_percent"));
    if !cpu.is_empty() {
        page.push_str(&line_chart(
            "CPU, percent of one core",
            &report.timeline.t_secs,
            &cpu,
            load,
        ));
    }
    let rss = series_matching(report, |name| name == "server_rss_mib");
    if !rss.is_empty() {
        page.push_str(&line_chart(
            "Server resident memory (MiB)",
            &report.timeline.t_secs,
            &rss,
            load,
        ));
    }
    let mut usage = vec![
        (
            "tool CPU (user + system)".to_owned(),
            format!(
                "{:.2} s + {:.2} s ({:.1}% of a core)",
                report.tool_usage.cpu_user_secs,
                report.tool_usage.cpu_system_secs,
                report.tool_usage.cpu_percent
            ),
        ),
        (
            "tool peak memory".to_owned(),
            format!("{} MiB", report.tool_usage.max_rss_kib / 1024),
        ),
    ];
    if let Some(server) = &report.server {
        usage.push((
            format!("server {} CPU", server.pid),
            format!(
                "{:.2} s ({:.1}% of a core)",
                server.cpu_secs, server.cpu_percent
            ),
        ));
        usage.push((
            "server memory".to_owned(),
            format!(
                "{} MiB at start, {} MiB at end, {} MiB peak; {} threads",
                server.rss_start_kib / 1024,
                server.rss_end_kib / 1024,
                server.rss_peak_kib / 1024,
                server.threads
            ),
        ));
    }
    page.push_str(&table(&["what", "value"], &usage));

    page.push_str("<h2>Correctness</h2>");
    let c = &report.correctness;
    page.push_str(&table(
        &["check", "count"],
        &[
            ("streams checked".into(), c.streams.to_string()),
            ("messages checked".into(), c.messages.to_string()),
            ("lost".into(), c.lost.to_string()),
            ("duplicated".into(), c.duplicated.to_string()),
            ("out of order".into(), c.out_of_order.to_string()),
        ],
    ));
    for (title, map) in [
        ("error frames by code", &report.errors_by_code),
        (
            "sockets closed by the server, by code",
            &report.closes_by_code,
        ),
        ("transport failures", &report.transport_errors),
    ] {
        if !map.is_empty() {
            let rows: Vec<(String, String)> = map
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect();
            page.push_str(&table(&[title, "count"], &rows));
        }
    }

    page.push_str("<h2>Counters and phases</h2>");
    let counters: Vec<(String, String)> = report
        .counters
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    page.push_str(&table(&["counter", "total"], &counters));
    let phases: Vec<(String, String)> = report
        .phases
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                format!("{:.2} s, from {:.2} s", p.secs, p.start_secs),
            )
        })
        .collect();
    page.push_str(&table(&["phase", "time"], &phases));
    let _ = writeln!(
        page,
        "<h2>Parameters</h2><pre>{}</pre><pre>{}</pre></body></html>",
        escape(&serde_json::to_string_pretty(&report.params).unwrap_or_default()),
        escape(&serde_json::to_string_pretty(&report.env).unwrap_or_default()),
    );
    page
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:800px;margin:2em auto;\
color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;\
padding:.2em .6em;text-align:right}td:first-child,th:first-child{text-align:left}\
.passed{color:#2ca02c}.failed{color:#d62728}.warning{color:#b8860b}\
pre{background:#f6f6f6;padding:.5em}svg{display:block;margin:1em 0}";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn table(head: &[&str], rows: &[(String, String)]) -> String {
    let mut out = String::from("<table><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>");
    for (name, value) in rows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(name),
            escape(value)
        );
    }
    out.push_str("</table>");
    out
}

fn latency_table(report: &Report) -> String {
    let mut out = String::from(
        "<table><tr><th>latency (ms)</th><th>count</th><th>p50</th><th>p90</th><th>p99</th>\
         <th>p99.9</th><th>max</th><th>mean</th></tr>",
    );
    for (name, p) in &report.latency_ms {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td>\
             <td>{:.2}</td><td>{:.2}</td></tr>",
            escape(name),
            p.count,
            p.p50,
            p.p90,
            p.p99,
            p.p999,
            p.max,
            p.mean
        );
    }
    out.push_str("</table>");
    out
}

type Series<'a> = (&'a str, Vec<Option<f64>>);

fn series_matching<'a>(report: &'a Report, wanted: impl Fn(&str) -> bool) -> Vec<Series<'a>> {
    report
        .timeline
        .series
        .iter()
        .filter(|(name, _)| wanted(name))
        .map(|(name, values)| (name.as_str(), values.clone()))
        .collect()
}

/// Each latency's percentiles, on a log scale so p50 and max both show.
fn percentile_chart(report: &Report) -> String {
    let labels = ["p50", "p90", "p99", "p99.9", "max"];
    let pick = |p: &Percentiles| [p.p50, p.p90, p.p99, p.p999, p.max];
    let series: Vec<Series<'_>> = report
        .latency_ms
        .iter()
        .map(|(name, p)| {
            (
                name.as_str(),
                pick(p).iter().map(|v| Some(v.max(0.001).log10())).collect(),
            )
        })
        .collect();
    let x: Vec<f64> = (0..labels.len()).map(|i| i as f64).collect();
    chart(
        "Latency by percentile (ms, log scale)",
        &x,
        &series,
        Axis::Categories(&labels),
        true,
        None,
    )
}

enum Axis<'a> {
    Seconds,
    Categories(&'a [&'a str]),
}

fn line_chart(title: &str, x: &[f64], series: &[Series<'_>], load: Window) -> String {
    chart(title, x, series, Axis::Seconds, false, load)
}

/// The load window, as (start, end) seconds, shaded on time charts.
type Window = Option<(f64, f64)>;

fn chart(
    title: &str,
    x: &[f64],
    series: &[Series<'_>],
    axis: Axis<'_>,
    log_y: bool,
    load: Window,
) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{h}\" \
         viewBox=\"0 0 {WIDTH} {h}\" font-size=\"11\"><text x=\"{LEFT}\" y=\"16\" \
         font-size=\"13\" font-weight=\"bold\">{title}</text>",
        h = HEIGHT + 16.0 * series.len().div_ceil(3) as f64,
        title = escape(title)
    );
    let values = series.iter().flat_map(|(_, v)| v.iter().flatten().copied());
    let (mut y_min, mut y_max) =
        values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if y_min > y_max {
        out.push_str("<text x=\"64\" y=\"60\">no data</text></svg>");
        return out;
    }
    let ticks = if log_y {
        y_min = y_min.floor();
        y_max = y_max.ceil().max(y_min + 1.0);
        (y_max - y_min) as usize
    } else {
        y_min = 0.0;
        let step = nice_step(y_max.max(1e-9) / 5.0);
        let ticks = (y_max / step).ceil().max(1.0);
        y_max = ticks * step;
        ticks as usize
    };
    let x_min = x.first().copied().unwrap_or(0.0);
    let x_max = x.last().copied().unwrap_or(1.0).max(x_min + 1e-9);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let px = |v: f64| LEFT + (v - x_min) / (x_max - x_min) * plot_w;
    let py = |v: f64| TOP + plot_h - (v - y_min) / (y_max - y_min) * plot_h;

    let _ = write!(
        out,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" \
         stroke=\"#999\"/>"
    );
    for i in 0..=ticks {
        let v = y_min + (y_max - y_min) * i as f64 / ticks as f64;
        let label = if log_y {
            number(10f64.powf(v))
        } else {
            number(v)
        };
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{lx}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>",
            x2 = LEFT + plot_w,
            y = py(v),
            lx = LEFT - 4.0,
            ty = py(v) + 4.0,
        );
    }
    match axis {
        Axis::Seconds => {
            for i in 0..=5 {
                let v = x_min + (x_max - x_min) * i as f64 / 5.0;
                let _ = write!(
                    out,
                    "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"middle\">{v:.0} s</text>",
                    x = px(v),
                    y = TOP + plot_h + 14.0
                );
            }
        }
        Axis::Categories(labels) => {
            for (i, label) in labels.iter().enumerate() {
                let _ = write!(
                    out,
                    "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"middle\">{label}</text>",
                    x = px(i as f64),
                    y = TOP + plot_h + 14.0
                );
            }
        }
    }
    if let (Axis::Seconds, Some((from, to))) = (&axis, load) {
        let (from, to) = (px(from.clamp(x_min, x_max)), px(to.clamp(x_min, x_max)));
        let _ = write!(
            out,
            "<rect x=\"{from:.1}\" y=\"{TOP}\" width=\"{w:.1}\" height=\"{plot_h}\" \
             fill=\"#f0f4ff\"/><text x=\"{tx:.1}\" y=\"{ty}\" fill=\"#668\">load</text>",
            w = (to - from).max(0.0),
            tx = from + 4.0,
            ty = TOP + 12.0,
        );
    }
    for (n, (name, values)) in series.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        // A gap in a series (a second without samples) breaks its line.
        let mut segment = String::new();
        let flush = |segment: &mut String, out: &mut String| {
            if segment.matches(' ').count() >= 2 {
                let _ = write!(
                    out,
                    "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" \
                     points=\"{}\"/>",
                    segment.trim()
                );
            } else if !segment.is_empty() {
                let mut xy = segment.trim().split(',');
                let (cx, cy) = (xy.next().unwrap_or("0"), xy.next().unwrap_or("0"));
                let _ = write!(
                    out,
                    "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"2\" fill=\"{color}\"/>"
                );
            }
            segment.clear();
        };
        for (t, value) in x.iter().zip(values) {
            match value {
                Some(v) => {
                    let _ = write!(segment, "{:.1},{:.1} ", px(*t), py(*v));
                }
                None => flush(&mut segment, &mut out),
            }
        }
        flush(&mut segment, &mut out);
        let lx = LEFT + (n % 3) as f64 * (plot_w / 3.0);
        let ly = HEIGHT - BOTTOM + 34.0 + (n / 3) as f64 * 16.0;
        let _ = write!(
            out,
            "<rect x=\"{lx}\" y=\"{ry}\" width=\"12\" height=\"3\" fill=\"{color}\"/>\
             <text x=\"{tx}\" y=\"{ly}\">{name}</text>",
            ry = ly - 4.0,
            tx = lx + 16.0,
            name = escape(name)
        );
    }
    out.push_str("</svg>");
    out
}

/// The step of 1, 2 or 5 times a power of ten at or above `raw`.
fn nice_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * power)
}

/// A short axis label: 1.2k, 35, 0.25.
fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_break_lines_and_text_is_escaped() {
        let svg = line_chart(
            "a <b>",
            &[0.0, 1.0, 2.0, 3.0],
            &[("s", vec![Some(1.0), Some(2.0), None, Some(3.0)])],
            Some((1.0, 2.0)),
        );
        assert!(svg.contains("a &lt;b&gt;"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(line_chart("empty", &[], &[("s", vec![])], None).contains("no data"));
        assert_eq!(nice_step(183.0), 200.0);
        assert_eq!(nice_step(0.3), 0.5);
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(number(1500.0), "1.5k");
        assert_eq!(number(25_000.0), "25k");
        assert_eq!(number(0.25), "0.25");
    }
}
