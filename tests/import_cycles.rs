//! No crate has an import circle between its top-level modules.
//!
//! A top-level module is a file `x.rs` or a directory `x/` directly under a
//! crate's `src/` (`lib.rs` and `main.rs` are the crate root, not modules).
//! Module `a` depends on module `b` when code under `a` names `crate::b`,
//! `crate::{b, ..}`, or reaches the crate root with `super::` and names `b`
//! there; a name the root re-exports (`pub use b::Name;` in `lib.rs` or
//! `main.rs`) counts as `b`. Comments and string literals are ignored;
//! tests count. Each crate — the root package's `src/` and every
//! `crates/*/src` — must have no strongly connected component of more than
//! one module. A failure prints every edge of each circle with the line
//! that makes it (`cargo test --test import_cycles`).
//!
//! std only: the analysis reads the sources as text, it does not compile
//! them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Dependencies of a crate: module → module it names → (count, where first).
type Graph = BTreeMap<String, BTreeMap<String, (usize, String)>>;

fn ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_ident(t: &str) -> bool {
    t.chars().next().is_some_and(ident_start) && t.chars().all(ident_char)
}

/// The source with comments, strings and char literals blanked out (their
/// newlines kept, so lines still count).
fn strip(src: &str) -> String {
    let s: Vec<char> = src.chars().collect();
    let n = s.len();
    let at = |i: usize, pat: &str| pat.chars().enumerate().all(|(k, p)| s.get(i + k) == Some(&p));
    let newlines = |from: usize, to: usize| "\n".repeat(s[from..to.min(n)].iter().filter(|&&c| c == '\n').count());
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < n {
        let c = s[i];
        let prev_ident = i > 0 && ident_char(s[i - 1]);
        if at(i, "//") {
            while i < n && s[i] != '\n' {
                i += 1;
            }
        } else if at(i, "/*") {
            let (start, mut depth) = (i, 1);
            i += 2;
            while i < n && depth > 0 {
                if at(i, "/*") {
                    depth += 1;
                    i += 2;
                } else if at(i, "*/") {
                    depth -= 1;
                    i += 2;
                } else {
                    i += 1;
                }
            }
            out.push(' ');
            out.push_str(&newlines(start, i));
        } else if (c == 'r' || c == 'b') && !prev_ident && raw_string_hashes(&s[i..]).is_some() {
            let (prefix, hashes) = raw_string_hashes(&s[i..]).expect("checked");
            let start = i;
            i += prefix;
            loop {
                if i >= n {
                    break;
                }
                if s[i] == '"' && (1..=hashes).all(|k| s.get(i + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            out.push_str("\"\"");
            out.push_str(&newlines(start, i));
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < n && s[i] != '"' {
                i += if s[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
            out.push_str(&newlines(start, i));
        } else if c == '\'' {
            match char_literal_len(&s[i..]) {
                Some(len) => {
                    i += len;
                    out.push_str("' '");
                }
                None => {
                    // A lifetime or a label.
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// `r"`, `r#"`, `br##"`…: the length of the opening and the number of `#`.
fn raw_string_hashes(s: &[char]) -> Option<(usize, usize)> {
    let mut i = usize::from(s.first() == Some(&'b'));
    if s.get(i) != Some(&'r') {
        return None;
    }
    i += 1;
    let hashes = s[i..].iter().take_while(|&&c| c == '#').count();
    i += hashes;
    (s.get(i) == Some(&'"')).then_some((i + 1, hashes))
}

/// `'x'`, `'\n'`, `'\''`, `'\u{1F600}'`: the literal's length; None for a
/// lifetime.
fn char_literal_len(s: &[char]) -> Option<usize> {
    match s.get(1)? {
        '\\' => {
            let close = 3 + s.get(3..)?.iter().position(|&c| c == '\'')?;
            Some(close + 1)
        }
        '\'' => None,
        _ => (s.get(2) == Some(&'\'')).then_some(3),
    }
}

/// Identifiers, `::` and single characters, with their line numbers.
fn tokens(text: &str) -> Vec<(String, usize)> {
    let s: Vec<char> = text.chars().collect();
    let (mut out, mut i, mut line) = (Vec::new(), 0, 1);
    while i < s.len() {
        let c = s[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if ident_start(c) {
            let start = i;
            while i < s.len() && ident_char(s[i]) {
                i += 1;
            }
            out.push((s[start..i].iter().collect(), line));
        } else if c == ':' && s.get(i + 1) == Some(&':') {
            out.push(("::".to_string(), line));
            i += 2;
        } else {
            out.push((c.to_string(), line));
            i += 1;
        }
    }
    out
}

/// After `crate ::` at `toks[k]`: the first segment, or each item's first
/// segment of a `{..}` group.
fn first_segments(toks: &[(String, usize)], k: usize) -> Vec<(String, usize)> {
    let Some((t, line)) = toks.get(k) else { return Vec::new() };
    if t != "{" {
        return if is_ident(t) { vec![(t.clone(), *line)] } else { Vec::new() };
    }
    let (mut names, mut depth, mut start) = (Vec::new(), 0, true);
    for (t, line) in &toks[k..] {
        match t.as_str() {
            "{" => {
                depth += 1;
                start = depth == 1;
            }
            "}" => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            "," if depth == 1 => start = true,
            _ if depth == 1 && start && is_ident(t) => {
                names.push((t.clone(), *line));
                start = false;
            }
            _ => {}
        }
    }
    names
}

/// Names reached at the crate root from a file `depth` modules below it
/// (1 for `wasi/mod.rs`, 2 for `wasi/fs.rs`), inline `mod x { .. }` included.
fn references(toks: &[(String, usize)], depth: usize) -> Vec<(String, usize)> {
    let t = |k: usize| toks.get(k).map_or("", |(s, _)| s.as_str());
    let (mut inline, mut braces, mut found) = (Vec::new(), 0, Vec::new());
    for k in 0..toks.len() {
        match t(k) {
            "{" => {
                if k >= 2 && t(k - 2) == "mod" && is_ident(t(k - 1)) {
                    inline.push(braces);
                }
                braces += 1;
            }
            "}" => {
                braces -= 1;
                if inline.last() == Some(&braces) {
                    inline.pop();
                }
            }
            "crate" if t(k + 1) == "::" && (k == 0 || t(k - 1) != "$") => found.extend(first_segments(toks, k + 2)),
            "super" if k < 2 || t(k - 1) != "::" => {
                let (mut j, mut ups) = (k, 0);
                while t(j) == "super" && t(j + 1) == "::" {
                    ups += 1;
                    j += 2;
                }
                if ups > 0 && ups == depth + inline.len() {
                    found.extend(first_segments(toks, j));
                }
            }
            _ => {}
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Each top-level module of `src` and its files.
fn module_files(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut mods: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for e in std::fs::read_dir(src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let p = e.expect("entry").path();
        let name = p.file_name().expect("a name").to_string_lossy().into_owned();
        if p.is_dir() {
            rust_files(&p, mods.entry(name).or_default());
        } else if let Some(stem) = name.strip_suffix(".rs") {
            if stem != "lib" && stem != "main" {
                mods.entry(stem.to_string()).or_default().push(p);
            }
        }
    }
    mods
}

/// How many modules below the crate root a file is.
fn module_depth(src: &Path, p: &Path) -> usize {
    let rel = p.strip_prefix(src).expect("below src");
    let parts = rel.components().count();
    if p.file_name().is_some_and(|n| n == "mod.rs") {
        parts - 1
    } else {
        parts
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Names the crate root re-exports, mapped to the module they come from.
fn reexports(src: &Path, mods: &BTreeMap<String, Vec<PathBuf>>) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for root in ["lib.rs", "main.rs"] {
        let p = src.join(root);
        if !p.exists() {
            continue;
        }
        let toks = tokens(&strip(&read(&p)));
        let t = |k: usize| toks.get(k).map_or("", |(s, _)| s.as_str());
        for k in 0..toks.len() {
            if t(k) != "use" {
                continue;
            }
            let mut j = k + 1;
            if (t(j) == "crate" || t(j) == "self") && t(j + 1) == "::" {
                j += 2;
            }
            let m = t(j);
            if !mods.contains_key(m) {
                continue;
            }
            let end = (j..toks.len()).find(|&e| t(e) == ";").unwrap_or(toks.len());
            for i in j + 1..end {
                let b = t(i);
                if is_ident(b) && b != "self" && b != "as" && t(i + 1) != "::" && t(i + 1) != "as" {
                    names.insert(b.to_string(), m.to_string());
                }
            }
        }
    }
    names
}

fn graph(src: &Path) -> Graph {
    let mods = module_files(src);
    let names = reexports(src, &mods);
    let mut edges: Graph = mods.keys().map(|m| (m.clone(), BTreeMap::new())).collect();
    for (m, files) in &mods {
        for p in files {
            let toks = tokens(&strip(&read(p)));
            for (name, line) in references(&toks, module_depth(src, p)) {
                let to = if mods.contains_key(&name) { Some(&name) } else { names.get(&name) };
                if let Some(to) = to.filter(|to| *to != m) {
                    let e = edges.get_mut(m).expect("a module").entry(to.clone()).or_insert((0, String::new()));
                    if e.0 == 0 {
                        let rel = p.strip_prefix(src).unwrap_or(p);
                        e.1 = format!("{}:{line} names {name}", rel.display());
                    }
                    e.0 += 1;
                }
            }
        }
    }
    edges
}

/// Strongly connected components of more than one module (Tarjan).
fn sccs(edges: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a Graph,
        index: HashMap<&'a str, usize>,
        low: HashMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        for w in t.edges[v].keys() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let l = t.low[v].min(t.low[w]);
                t.low.insert(v, l);
            } else if t.stack.contains(&w) {
                let l = t.low[v].min(t.index[w]);
                t.low.insert(v, l);
            }
        }
        if t.low[v] == t.index[v] {
            let at = t.stack.iter().rposition(|&x| x == v).expect("on the stack");
            let mut comp: Vec<String> = t.stack.drain(at..).map(String::from).collect();
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T { edges, index: HashMap::new(), low: HashMap::new(), stack: Vec::new(), out: Vec::new() };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out.sort();
    t.out
}

/// The circles of the crate at `src`, described; empty when there are none.
fn circles(src: &Path) -> Vec<String> {
    let edges = graph(src);
    sccs(&edges)
        .into_iter()
        .map(|comp| {
            let inside: Vec<String> = comp
                .iter()
                .flat_map(|a| {
                    edges[a]
                        .iter()
                        .filter(|(b, _)| comp.contains(b))
                        .map(move |(b, (n, at))| format!("    {a} -> {b} ({n}×; {at})"))
                })
                .collect();
            format!("  {}:\n{}", comp.join(", "), inside.join("\n"))
        })
        .collect()
}

fn crate_sources() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut srcs = vec![root.join("src")];
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .map(|e| e.expect("entry").path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    crates.sort();
    srcs.extend(crates);
    srcs
}

#[test]
fn no_crate_has_an_import_circle() {
    let srcs = crate_sources();
    assert!(srcs.len() > 5, "found only {srcs:?}");
    let mut bad = Vec::new();
    for src in &srcs {
        let found = circles(src);
        if !found.is_empty() {
            bad.push(format!("{}:\n{}", src.display(), found.join("\n")));
        }
    }
    assert!(
        bad.is_empty(),
        "import circles between top-level modules (move what the back edge needs into a leaf module, \
         or invert the dependency):\n{}",
        bad.join("\n")
    );
}

/// A throwaway crate source tree under the system's temp directory.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, files: &[(&str, &str)]) -> Scratch {
        let dir = std::env::temp_dir().join(format!("import-cycles-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&p, text).expect("write");
        }
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_analysis_finds_circles_through_paths_groups_super_and_reexports() {
    let lib = "mod a;\nmod b;\nmod c;\npub use b::Thing;\n";
    // a -> b by a re-exported name; b -> a through `super::` from b/inner.rs.
    let t = Scratch::new(
        "reexport",
        &[
            ("lib.rs", lib),
            ("a.rs", "use crate::Thing;\n"),
            ("b/mod.rs", "mod inner;\npub struct Thing;\n"),
            ("b/inner.rs", "use super::super::{c, a::X};\n"),
            ("c.rs", "pub fn f() {}\n"),
        ],
    );
    assert_eq!(sccs(&graph(&t.0)), vec![vec!["a".to_string(), "b".to_string()]]);

    // Comments, strings, a test module's `super::` and `$crate` are not
    // dependencies.
    let t = Scratch::new(
        "ignored",
        &[
            ("lib.rs", lib),
            ("a.rs", "use crate::b::Thing;\n"),
            (
                "b/mod.rs",
                "// crate::a\n/* crate::a */\nconst S: &str = \"crate::a\";\nconst R: &str = r#\"crate::a\"#;\n\
                 const C: char = '\"'; fn f<'x>(_: &'x str) {}\n\
                 #[cfg(test)]\nmod tests {\n    use super::*;\n}\nmacro_rules! m { () => { $crate::a::f() } }\n",
            ),
            ("c.rs", ""),
        ],
    );
    assert!(sccs(&graph(&t.0)).is_empty(), "{:?}", graph(&t.0));

    // Through a `crate::{..}` group, and `super::super` from an inline module.
    let t = Scratch::new(
        "ring",
        &[
            ("lib.rs", lib),
            ("a.rs", "use crate::{b::Thing, c};\n"),
            ("b/mod.rs", "pub struct Thing;\n"),
            ("b/inner.rs", ""),
            ("c.rs", "mod x {\n    use super::super::a;\n}\n"),
        ],
    );
    assert_eq!(sccs(&graph(&t.0)), vec![vec!["a".to_string(), "c".to_string()]]);
    assert!(circles(&t.0)[0].contains("c.rs:2 names a"), "{:?}", circles(&t.0));
}
