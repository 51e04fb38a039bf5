//! The plot: a hand-written SVG with throughput per system, latency
//! percentiles, and the failover timeline.

use std::fmt::Write as _;

use super::stats::Summary;

#[derive(Default)]
pub struct Plot {
    /// (group, system, throughput runs): bars are scaled within a group.
    pub throughput: Vec<(String, String, Summary)>,
    /// (label, p50 ms, p99 ms).
    pub latency: Vec<(String, f64, f64)>,
    /// Failover of each trial, in ms.
    pub failover: Vec<f64>,
}

const COLORS: [&str; 6] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];
const W: f64 = 960.0;
const LABEL_W: f64 = 330.0;
const BAR_W: f64 = 480.0;
const ROW_H: f64 = 18.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn color(systems: &[String], s: &str) -> &'static str {
    COLORS[systems.iter().position(|x| x == s).unwrap_or(0) % COLORS.len()]
}

impl Plot {
    pub fn svg(&self, title: &str) -> String {
        let mut body = String::new();
        let mut y = 40.0;
        let _ = writeln!(body, r#"<text x="10" y="24" font-size="18" font-weight="bold">{}</text>"#, esc(title));
        let systems: Vec<String> = self.throughput.iter().fold(Vec::new(), |mut v, (_, s, _)| {
            if !v.contains(s) {
                v.push(s.clone());
            }
            v
        });
        if !self.throughput.is_empty() {
            y = self.throughput_panel(&mut body, y, &systems);
        }
        if !self.latency.is_empty() {
            y = self.latency_panel(&mut body, y);
        }
        if !self.failover.is_empty() {
            y = self.failover_panel(&mut body, y);
        }
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n",
            h = y + 20.0
        )
    }

    fn throughput_panel(&self, out: &mut String, mut y: f64, systems: &[String]) -> f64 {
        let _ = writeln!(
            out,
            r#"<text x="10" y="{}" font-size="15" font-weight="bold">Throughput (median; whiskers: min–max; scaled within each group)</text>"#,
            y + 14.0
        );
        y += 26.0;
        let mut group = "";
        for (g, s, sum) in &self.throughput {
            if g != group {
                group = g;
                let _ = writeln!(out, r#"<text x="10" y="{}" font-weight="bold">{}</text>"#, y + 13.0, esc(g));
                y += ROW_H;
            }
            let max = self.throughput.iter().filter(|(gg, _, _)| gg == g).map(|(_, _, x)| x.max).fold(0.0, f64::max);
            let scale = if max > 0.0 { BAR_W / max } else { 0.0 };
            let w = sum.median.max(0.0) * scale;
            let _ = writeln!(out, r#"<text x="24" y="{}">{}</text>"#, y + 12.0, esc(s));
            let _ = writeln!(
                out,
                r#"<rect x="{LABEL_W}" y="{}" width="{w:.1}" height="{}" fill="{}"/>"#,
                y + 2.0,
                ROW_H - 5.0,
                color(systems, s)
            );
            if sum.n > 1 {
                let (x0, x1) = (LABEL_W + sum.min * scale, LABEL_W + sum.max * scale);
                let _ = writeln!(out, r#"<line x1="{x0:.1}" x2="{x1:.1}" y1="{yy}" y2="{yy}" stroke="black"/>"#, yy = y + 8.0);
            }
            let _ = writeln!(out, r#"<text x="{:.1}" y="{}">{:.0}</text>"#, LABEL_W + BAR_W + 8.0, y + 12.0, sum.median);
            y += ROW_H;
        }
        y + 10.0
    }

    fn latency_panel(&self, out: &mut String, mut y: f64) -> f64 {
        let _ = writeln!(
            out,
            r#"<text x="10" y="{}" font-size="15" font-weight="bold">KV latency: p50 (dark) and p99 (light), ms</text>"#,
            y + 14.0
        );
        y += 26.0;
        let max = self.latency.iter().map(|(_, _, p99)| *p99).fold(0.0, f64::max);
        let scale = if max > 0.0 { BAR_W / max } else { 0.0 };
        for (label, p50, p99) in &self.latency {
            let _ = writeln!(out, r#"<text x="24" y="{}">{}</text>"#, y + 12.0, esc(label));
            let _ = writeln!(
                out,
                r##"<rect x="{LABEL_W}" y="{}" width="{:.1}" height="{}" fill="#aec7e8"/>"##,
                y + 2.0,
                p99 * scale,
                ROW_H - 5.0
            );
            let _ = writeln!(
                out,
                r##"<rect x="{LABEL_W}" y="{}" width="{:.1}" height="{}" fill="#1f77b4"/>"##,
                y + 2.0,
                p50 * scale,
                ROW_H - 5.0
            );
            let _ = writeln!(out, r#"<text x="{:.1}" y="{}">{p50:.3} / {p99:.3}</text>"#, LABEL_W + BAR_W + 8.0, y + 12.0);
            y += ROW_H;
        }
        y + 10.0
    }

    fn failover_panel(&self, out: &mut String, mut y: f64) -> f64 {
        let _ = writeln!(
            out,
            r#"<text x="10" y="{}" font-size="15" font-weight="bold">Failover per trial (kill -9 trials, then SIGSTOP trials): fault to first acknowledged write, ms; dashed: 300 ms target</text>"#,
            y + 14.0
        );
        y += 26.0;
        let h = 200.0;
        let max = self.failover.iter().copied().fold(300.0, f64::max) * 1.1;
        let (x0, x1) = (60.0, W - 40.0);
        let n = self.failover.len().max(1) as f64;
        let py = |v: f64| y + h - v / max * h;
        let _ = writeln!(out, r#"<line x1="{x0}" x2="{x0}" y1="{y}" y2="{}" stroke="black"/>"#, y + h);
        let _ = writeln!(out, r#"<line x1="{x0}" x2="{x1}" y1="{yb}" y2="{yb}" stroke="black"/>"#, yb = y + h);
        let _ = writeln!(
            out,
            r#"<line x1="{x0}" x2="{x1}" y1="{t:.1}" y2="{t:.1}" stroke="red" stroke-dasharray="6,4"/>"#,
            t = py(300.0)
        );
        for tick in [0.0, max / 2.0, max] {
            let _ = writeln!(out, r#"<text x="8" y="{:.1}">{tick:.0}</text>"#, py(tick) + 4.0);
        }
        let mut points = String::new();
        for (i, v) in self.failover.iter().enumerate() {
            let x = x0 + (i as f64 + 0.5) * (x1 - x0) / n;
            let _ = write!(points, "{x:.1},{:.1} ", py(*v));
            let _ = writeln!(out, r##"<circle cx="{x:.1}" cy="{:.1}" r="4" fill="#d62728"/>"##, py(*v));
        }
        let _ = writeln!(out, r##"<polyline points="{points}" fill="none" stroke="#d62728" stroke-opacity="0.5"/>"##);
        let _ = writeln!(out, r#"<text x="{}" y="{}">trial</text>"#, (x0 + x1) / 2.0, y + h + 16.0);
        y + h + 30.0
    }
}
