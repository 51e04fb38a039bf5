//! The main job: `understudy demo` runs end to end at each level, reports
//! no loss, and draws its timeline as a well-formed SVG.

mod common;
use common::*;
use std::process::Command;

/// Runs the demo at `level` in a directory of its own; returns its stdout
/// (after checking the report and the picture) and the directory.
fn demo(level: &str, path: Option<&str>) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["demo", "--level", level, "--load-secs", "2", "--clients", "4", "--dir"]).arg(dir.path());
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "demo failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("report ({level} level)")), "{text}");
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("the report gives {name}:\n{text}"))
    };
    let (acked, found, lost) = (field("writes acknowledged"), field("found on the survivor (b)"), field("lost"));
    assert!(acked > 0, "{text}");
    assert_eq!(lost, 0, "the report says acknowledged writes were lost:\n{text}");
    assert_eq!(acked, found, "{text}");
    assert!(field("state transferred to c") > 0, "{text}");
    check_picture(&text, &dir.path().join(level).join("timeline.svg"));
    (text, dir)
}

/// The terminal timeline is printed, and the SVG the report names exists
/// and is well-formed: one root, balanced groups, a bar per busy bucket,
/// four markers (kill, live, join, in sync).
fn check_picture(text: &str, svg_path: &std::path::Path) {
    assert!(text.contains("acknowledged writes per 50 ms"), "{text}");
    for legend in ["K ", "L ", "J ", "S "] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(legend)), "legend {legend:?}:\n{text}");
    }
    let named = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("timeline picture"))
        .map(|p| std::path::PathBuf::from(p.trim()))
        .unwrap_or_else(|| panic!("the report names the picture:\n{text}"));
    assert_eq!(&named, svg_path);
    let svg = std::fs::read_to_string(svg_path).unwrap_or_else(|e| panic!("{}: {e}", svg_path.display()));
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
    assert_eq!(svg.matches("<svg").count(), 1);
    assert_eq!(svg.matches("</svg>").count(), 1);
    assert_eq!(svg.matches("<g").count(), svg.matches("</g>").count());
    assert_eq!(svg.matches("<title>").count(), svg.matches("</title>").count());
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    assert_eq!(svg.matches('<').count(), svg.matches('>').count(), "every tag closes");
    assert!(svg.matches("class=\"bar\"").count() > 10, "bars for the buckets with writes");
    assert_eq!(svg.matches("class=\"marker\"").count(), 4, "{svg}");
}

#[test]
fn demo_runs_and_loses_nothing() {
    let _s = serial();
    demo("kv", None);
}

/// The machine level needs no C toolchain (nothing on PATH at all): the
/// guest is the one carried inside the binary. Without wasm-opt either,
/// the join replays the log retained since the guest started.
#[test]
fn machine_level_demo_runs_the_embedded_guest_and_loses_nothing() {
    let _s = serial();
    let (text, dir) = demo("machine", Some("/nonexistent"));
    assert!(text.contains("kvserver.wasm"), "{text}");
    assert!(text.contains("c joined b under load by replaying the log retained"), "{text}");
    let guest = std::fs::read(dir.path().join("machine/kvserver.wasm")).unwrap();
    let committed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/guests/prebuilt/kvserver.wasm")).unwrap();
    assert_eq!(guest, committed, "the demo ran the guest it carries");
}
