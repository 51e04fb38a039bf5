//! The demo's picture of a failover: acknowledged writes per time bucket
//! (50 ms in the demo), with the moments of the story marked under them —
//! the kill -9, the backup going live, the join. Drawn twice from the same
//! numbers: a sparkline on the terminal and an SVG file (written by hand,
//! no dependency), so the dip and the recovery show at a glance.

use std::fmt::Write as _;
use std::time::Duration;

/// A moment on the timeline, as an offset from its start.
#[derive(Debug, Clone)]
pub struct Marker {
    pub at: Duration,
    /// The letter that marks it on the terminal.
    pub symbol: char,
    pub label: String,
}

/// Counts per bucket and the markers.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub bucket: Duration,
    pub counts: Vec<u64>,
    pub markers: Vec<Marker>,
}

/// Sparkline levels, lowest first; a bucket with no write shows as `ZERO`.
const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const ZERO: char = '·';

/// SVG geometry, in pixels: the plot is `PLOT_W` wide whatever the
/// number of buckets.
const PLOT_W: f64 = 720.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 24.0;
/// Where the markers' letters start.
const TOP: f64 = 50.0;
const PLOT_H: f64 = 160.0;
/// Under the plot, the time axis's labels.
const AXIS_H: f64 = 36.0;
/// A row of letters above the plot, or a line of the legend.
const ROW_H: f64 = 14.0;
/// Letters closer than this share no row.
const LETTER_W: f64 = 12.0;

impl Timeline {
    /// Counts `events` (offsets from the start) per `bucket`, over at least
    /// `span`; a later event extends the timeline.
    pub fn new(bucket: Duration, span: Duration, events: impl IntoIterator<Item = Duration>, markers: Vec<Marker>) -> Timeline {
        assert!(!bucket.is_zero(), "a timeline needs a bucket width");
        let n = span.as_nanos().div_ceil(bucket.as_nanos()).max(1);
        let mut t = Timeline { bucket, counts: vec![0; n as usize], markers };
        for e in events {
            let i = t.slot(e);
            if i >= t.counts.len() {
                t.counts.resize(i + 1, 0);
            }
            t.counts[i] += 1;
        }
        t
    }

    fn slot(&self, at: Duration) -> usize {
        usize::try_from(at.as_nanos() / self.bucket.as_nanos()).unwrap_or(usize::MAX)
    }

    /// The bucket a moment falls in (the last one for a moment past the end).
    pub fn column(&self, at: Duration) -> usize {
        self.slot(at).min(self.counts.len() - 1)
    }

    pub fn peak(&self) -> u64 {
        self.counts.iter().copied().max().unwrap_or(0)
    }

    /// The sparkline character of a count.
    fn spark(&self, count: u64) -> char {
        let peak = self.peak();
        if count == 0 || peak == 0 {
            return ZERO;
        }
        // 1..=peak onto the 8 levels: any write shows, the peak is full.
        let i = ((count - 1) * LEVELS.len() as u64 / peak) as usize;
        LEVELS[i.min(LEVELS.len() - 1)]
    }

    /// The terminal picture: rows of at most `width` buckets, each a
    /// sparkline prefixed with its start time, with the markers' letters
    /// under their buckets (a second line when two share one), then a
    /// legend.
    pub fn text(&self, width: usize) -> String {
        let width = width.max(1);
        let ms = self.bucket.as_millis();
        let mut s = format!("  acknowledged writes per {ms} ms (peak {}; {ZERO} = none)\n", self.peak());
        for (row, chunk) in self.counts.chunks(width).enumerate() {
            let first = row * width;
            let start = self.bucket * u32::try_from(first).unwrap_or(u32::MAX);
            let prefix = format!("  {:5.1}s ", start.as_secs_f64());
            let line: String = chunk.iter().map(|&c| self.spark(c)).collect();
            let _ = writeln!(s, "{prefix}{line}");
            let mut lines: Vec<Vec<char>> = Vec::new();
            for m in &self.markers {
                let col = self.column(m.at);
                if col < first || col >= first + chunk.len() {
                    continue;
                }
                let at = col - first;
                let free = lines.iter().position(|l| l[at] == ' ');
                let l = match free {
                    Some(i) => &mut lines[i],
                    None => {
                        lines.push(vec![' '; chunk.len()]);
                        lines.last_mut().expect("just pushed")
                    }
                };
                l[at] = m.symbol;
            }
            for l in lines {
                let text: String = l.into_iter().collect();
                let _ = writeln!(s, "{}{}", " ".repeat(prefix.chars().count()), text.trim_end());
            }
        }
        for m in &self.markers {
            let _ = writeln!(s, "  {} {:5.2}s  {}", m.symbol, m.at.as_secs_f64(), m.label);
        }
        s
    }

    /// The width of a bucket in the SVG.
    fn bar_w(&self) -> f64 {
        PLOT_W / self.counts.len() as f64
    }

    /// The x coordinate of the middle of a bucket in the SVG.
    pub fn svg_x(&self, column: usize) -> f64 {
        LEFT + (column as f64 + 0.5) * self.bar_w()
    }

    /// The same picture as an SVG document: a bar per bucket; per marker,
    /// its letter above a dashed line down to the axis (letters of nearby
    /// markers stack), and a legend line under the axis, as on the
    /// terminal; a time axis in seconds.
    pub fn svg(&self, title: &str) -> String {
        let (n, bar_w, peak) = (self.counts.len(), self.bar_w(), self.peak());
        let (w, right_end) = (LEFT + PLOT_W + RIGHT, LEFT + PLOT_W);
        let rows = self.letter_rows();
        let letter_rows = rows.iter().map(|r| r + 1).max().unwrap_or(0);
        let top = TOP + letter_rows as f64 * ROW_H;
        let base = top + PLOT_H;
        let h = base + AXIS_H + self.markers.len() as f64 * ROW_H + 8.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(s, "<title>{}</title>", escape(title));
        let _ = writeln!(s, r##"<rect x="0" y="0" width="{w:.0}" height="{h:.0}" fill="#ffffff"/>"##);
        let _ = writeln!(s, r#"<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{}</text>"#, escape(title));
        let ms = self.bucket.as_millis();
        let _ = writeln!(s, r##"<text x="{LEFT}" y="38" fill="#555555">acknowledged writes per {ms} ms (peak {peak})</text>"##);
        // The axes, a tick a second.
        let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{base}" stroke="#333333"/>"##);
        let _ = writeln!(s, r##"<line x1="{LEFT}" y1="{base}" x2="{right_end}" y2="{base}" stroke="#333333"/>"##);
        let _ = writeln!(s, r#"<text x="{:.0}" y="{:.1}" text-anchor="end">{peak}</text>"#, LEFT - 6.0, top + 4.0);
        let _ = writeln!(s, r#"<text x="{:.0}" y="{:.1}" text-anchor="end">0</text>"#, LEFT - 6.0, base + 4.0);
        let per_sec = (Duration::from_secs(1).as_nanos() / self.bucket.as_nanos()).max(1) as usize;
        for col in (0..=n).step_by(per_sec) {
            let x = LEFT + col as f64 * bar_w;
            let _ = writeln!(s, r##"<line x1="{x:.1}" y1="{base}" x2="{x:.1}" y2="{:.1}" stroke="#333333"/>"##, base + 4.0);
            let secs = col as f64 * self.bucket.as_secs_f64();
            let _ = writeln!(s, r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{secs:.0} s</text>"#, base + 16.0);
        }
        // The bars: a bucket's count against the peak.
        let _ = writeln!(s, r##"<g fill="#3b75af">"##);
        for (i, &c) in self.counts.iter().enumerate().filter(|(_, &c)| c > 0) {
            let bh = (c as f64 / peak.max(1) as f64 * PLOT_H).max(1.0);
            let _ = writeln!(
                s,
                r#"<rect class="bar" x="{:.2}" y="{:.1}" width="{:.2}" height="{bh:.1}"/>"#,
                LEFT + (i as f64 + 0.1) * bar_w,
                base - bh,
                bar_w * 0.8
            );
        }
        let _ = writeln!(s, "</g>");
        // The markers, then their legend.
        let _ = writeln!(s, r##"<g fill="#c0392b">"##);
        for (m, row) in self.markers.iter().zip(&rows) {
            let x = self.svg_x(self.column(m.at));
            let ly = TOP + 8.0 + *row as f64 * ROW_H;
            let _ = writeln!(
                s,
                r##"<line class="marker" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{base}" stroke="#c0392b" stroke-dasharray="4 3"/>"##,
                ly + 3.0
            );
            let _ = writeln!(
                s,
                r#"<text x="{x:.1}" y="{ly:.1}" text-anchor="middle" font-weight="bold">{}</text>"#,
                escape_char(m.symbol)
            );
        }
        for (i, m) in self.markers.iter().enumerate() {
            let y = base + AXIS_H + i as f64 * ROW_H;
            let _ = writeln!(
                s,
                r#"<text class="legend" x="{LEFT}" y="{y:.1}"><tspan font-weight="bold">{}</tspan>  {:.2} s  {}</text>"#,
                escape_char(m.symbol),
                m.at.as_secs_f64(),
                escape(&m.label)
            );
        }
        let _ = writeln!(s, "</g>");
        let _ = writeln!(s, "</svg>");
        s
    }

    /// The row of each marker's letter above the plot: the first row where
    /// it is not within a letter's width of an earlier one.
    fn letter_rows(&self) -> Vec<usize> {
        let mut rows: Vec<Vec<f64>> = Vec::new(); // the letters' x in each row
        self.markers
            .iter()
            .map(|m| {
                let x = self.svg_x(self.column(m.at));
                let row = rows.iter().position(|r| r.iter().all(|&o| (o - x).abs() >= LETTER_W)).unwrap_or(rows.len());
                if row == rows.len() {
                    rows.push(Vec::new());
                }
                rows[row].push(x);
                row
            })
            .collect()
    }
}

fn escape_char(c: char) -> String {
    escape(c.encode_utf8(&mut [0; 4]))
}

/// Text for XML: the five predefined entities.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn marker(at: u64, symbol: char, label: &str) -> Marker {
        Marker { at: ms(at), symbol, label: label.into() }
    }

    #[test]
    fn events_are_counted_per_bucket() {
        let t = Timeline::new(ms(50), ms(300), [0, 10, 49, 50, 99, 100, 299].map(ms), vec![]);
        assert_eq!(t.counts, vec![3, 2, 1, 0, 0, 1]);
        // A span that is not a whole number of buckets rounds up; an event
        // past it extends the timeline.
        let t = Timeline::new(ms(50), ms(101), [ms(420)], vec![]);
        assert_eq!(t.counts.len(), 9);
        assert_eq!(t.counts[8], 1);
        assert_eq!(Timeline::new(ms(50), Duration::ZERO, [], vec![]).counts, vec![0]);
        assert_eq!(t.column(ms(10_000)), 8, "a moment past the end is in the last bucket");
    }

    #[test]
    fn sparkline_levels_show_any_write_and_fill_at_the_peak() {
        let t = Timeline::new(ms(50), ms(200), [0, 60, 61, 62, 63, 64, 65, 66, 67].map(ms), vec![]);
        let text = t.text(80);
        let row = text.lines().nth(1).unwrap();
        assert_eq!(row, "    0.0s ▁█··", "{text}");
    }

    /// The marker's letter sits under its bucket, on wrapped rows too, and
    /// two markers in one bucket take two lines.
    #[test]
    fn markers_are_placed_under_their_buckets() {
        let events: Vec<_> = (0..200).map(|i| ms(i * 20)).collect();
        let markers = vec![marker(260, 'K', "kill"), marker(270, 'L', "live"), marker(3_120, 'J', "join")];
        let t = Timeline::new(ms(50), ms(4_000), events, markers);
        assert_eq!(t.counts.len(), 80);
        let text = t.text(60);
        let lines: Vec<&str> = text.lines().collect();
        let col = |line: &str, ch: char| line.chars().position(|c| c == ch);
        let prefix = "    0.0s ".chars().count();
        assert!(lines[1].starts_with("    0.0s "), "{text}");
        assert_eq!(lines[1].chars().count(), prefix + 60, "a row holds 60 buckets: {text}");
        assert_eq!(col(lines[2], 'K'), Some(prefix + 5), "kill at 260 ms is bucket 5:\n{text}");
        assert_eq!(col(lines[3], 'L'), Some(prefix + 5), "live shares bucket 5, on a second line:\n{text}");
        assert!(lines[4].starts_with("    3.0s "), "{text}");
        assert_eq!(lines[4].chars().count(), prefix + 20, "{text}");
        assert_eq!(col(lines[5], 'J'), Some(prefix + 2), "join at 3120 ms is bucket 62, the 3rd of row 2:\n{text}");
        assert!(lines[6].contains("K  0.26s  kill"), "legend: {text}");
        assert!(lines[8].contains("J  3.12s  join"), "legend: {text}");
    }

    /// Parses the document's tags with a stack: every element is closed in
    /// order; returns the start tags.
    fn tags(svg: &str) -> Vec<String> {
        let mut stack: Vec<String> = Vec::new();
        let mut starts = Vec::new();
        let mut rest = svg;
        while let Some(i) = rest.find('<') {
            let j = rest[i..].find('>').expect("a tag is closed") + i;
            let tag = &rest[i + 1..j];
            assert!(!tag.contains('<'), "a '<' inside a tag: {tag}");
            let text = &rest[..i];
            assert!(!text.contains('>'), "a bare '>' in text: {text}");
            for (k, _) in text.match_indices('&') {
                let entity = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| text[k..].starts_with(e));
                assert!(entity, "a bare '&' in text: {text}");
            }
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "closing tag {name} matches");
            } else {
                let name = tag.split_whitespace().next().unwrap().trim_end_matches('/').to_string();
                if !tag.ends_with('/') {
                    stack.push(name.clone());
                }
                starts.push(tag.to_string());
            }
            rest = &rest[j + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        assert!(rest.trim().is_empty(), "text after the root: {rest:?}");
        starts
    }

    fn attr(tag: &str, name: &str) -> f64 {
        let key = format!(" {name}=\"");
        let v = &tag[tag.find(&key).unwrap_or_else(|| panic!("{name} in {tag}")) + key.len()..];
        v[..v.find('"').unwrap()].parse().unwrap()
    }

    #[test]
    fn the_svg_is_well_formed_with_a_bar_per_busy_bucket_and_a_line_per_marker() {
        let events = [10, 20, 30, 120, 130, 900].map(ms);
        let markers = vec![marker(300, 'K', "kill -9 of <a> & co"), marker(620, 'L', "b live")];
        let t = Timeline::new(ms(50), ms(1_000), events, markers);
        let svg = t.svg("understudy demo: 'machine' level");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
        assert!(svg.ends_with("</svg>\n"));
        let starts = tags(&svg);
        assert_eq!(starts.iter().filter(|t| t.starts_with("svg")).count(), 1);
        let bars: Vec<_> = starts.iter().filter(|t| t.contains("class=\"bar\"")).collect();
        assert_eq!(bars.len(), 3, "buckets 0, 2 and 18 have writes: {svg}");
        let h: Vec<f64> = bars.iter().map(|b| attr(b, "height")).collect();
        assert_eq!(h[0], PLOT_H, "the peak bucket is full height");
        assert!((h[1] - PLOT_H * 2.0 / 3.0).abs() < 0.1, "{h:?}");
        assert!(attr(bars[2], "x") > attr(bars[1], "x"));
        let lines: Vec<_> = starts.iter().filter(|t| t.contains("class=\"marker\"")).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(attr(lines[0], "x1"), t.svg_x(6), "kill at 300 ms: bucket 6");
        assert_eq!(attr(lines[1], "x1"), t.svg_x(12), "live at 620 ms: bucket 12");
        assert!(attr(lines[0], "x1") > attr(bars[1], "x") && attr(lines[0], "x1") < attr(bars[2], "x"));
        assert!(svg.contains("kill -9 of &lt;a&gt; &amp; co"), "labels are escaped: {svg}");
        assert!(svg.contains("<title>understudy demo: &apos;machine&apos; level</title>"));
        let w = attr(&starts[0], "width");
        assert!(w >= t.svg_x(19), "the document is wide enough for every bucket");
    }

    /// Letters of markers close together stack in rows, each over its
    /// line; the legend lists every marker under the axis.
    #[test]
    fn svg_markers_stack_when_close_and_have_a_legend() {
        let events = (0..100).map(|i| ms(i * 10));
        let markers =
            vec![marker(300, 'K', "kill"), marker(310, 'L', "live"), marker(320, 'J', "join"), marker(995, 'S', "in sync")];
        let t = Timeline::new(ms(50), ms(1_000), events, markers);
        let svg = t.svg("labels");
        let starts = tags(&svg);
        let letters: Vec<_> =
            starts.iter().filter(|t| t.starts_with("text") && t.contains("text-anchor=\"middle\" font-weight")).collect();
        assert_eq!(letters.len(), 4);
        let ys: Vec<f64> = letters.iter().map(|l| attr(l, "y")).collect();
        assert!(ys[0] < ys[1] && ys[1] < ys[2], "three markers in one bucket: three rows {ys:?}");
        assert_eq!(ys[3], ys[0], "a marker far from the others in the first row: {ys:?}");
        for (l, col) in letters.iter().zip([6, 6, 6, 19]) {
            assert_eq!(attr(l, "x"), t.svg_x(col));
        }
        let lines: Vec<_> = starts.iter().filter(|t| t.contains("class=\"marker\"")).collect();
        assert!(lines.iter().zip(&ys).all(|(l, y)| attr(l, "y1") > *y), "a line starts under its letter");
        // The plot moved down to make room for the rows of letters.
        let bars: Vec<_> = starts.iter().filter(|t| t.contains("class=\"bar\"")).collect();
        assert!(bars.iter().all(|b| attr(b, "y") > ys[2]));
        let legend: Vec<_> = starts.iter().filter(|t| t.contains("class=\"legend\"")).collect();
        assert_eq!(legend.len(), 4);
        assert!(attr(legend[0], "y") > attr(bars[0], "y"), "the legend is under the plot");
        assert!(svg.contains("<tspan font-weight=\"bold\">S</tspan>  0.99 s  in sync</text>"), "{svg}");
        assert!(attr(legend[3], "y") < attr(&starts[0], "height"), "the legend is inside the picture");
    }
}
