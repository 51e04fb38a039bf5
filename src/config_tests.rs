//! Unit tests of the config file and its precedence (the environment is
//! tested with real processes in tests/config_file.rs: clap reads it when
//! the command is built, and tests share one process environment).

use super::*;
use crate::cli::Cmd;

fn file(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(f.path(), text).unwrap();
    f
}

fn argv(args: &[&str]) -> Vec<OsString> {
    std::iter::once("understudy").chain(args.iter().copied()).map(OsString::from).collect()
}

fn parse(args: &[&str]) -> Result<Cli, String> {
    parse_from(argv(args)).map(|(c, _)| c).map_err(|(f, _)| match f {
        Failure::Clap(e) => e.to_string(),
        Failure::Config(s) => s,
    })
}

fn err(args: &[&str]) -> String {
    match parse(args) {
        Ok(_) => panic!("{args:?} parsed"),
        Err(e) => e,
    }
}

fn kv(args: &[&str]) -> crate::cli::KvArgs {
    match parse(args).unwrap().cmd {
        Cmd::Kv(a) => *a,
        _ => panic!("not kv"),
    }
}

const NODE: &str = r#"
cluster = "shop"
node = "a"
arbiter = "understudy://127.0.0.1:7700"
client-listen = "127.0.0.1:6379"
repl_listen = "127.0.0.1:7701"
heartbeat-ms = 70
channel-backlog-bytes-max = "32MiB"
"#;

#[test]
fn the_example_in_docs_parses_with_every_commented_setting() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/understudy.toml");
    let p = path.to_str().unwrap();
    let a = kv(&["kv", "--config", p]);
    assert_eq!((a.cluster.as_str(), a.node.as_str()), ("shop", "a"));
    assert_eq!(a.client_listen.to_string(), "0.0.0.0:6379");
    assert_eq!(a.dir.as_deref(), Some(Path::new("/var/lib/understudy")));
    // The settings shown commented out are keys and values the node takes too.
    let text = std::fs::read_to_string(&path).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) && rest.contains(" = ") => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(uncommented.matches('\n').count() == text.matches('\n').count() - 1);
    let all = file(&uncommented);
    let a = kv(&["kv", "--config", all.path().to_str().unwrap()]);
    assert_eq!(a.common.channel_backlog_bytes_max, 64 << 20);
    assert_eq!(a.common.advertise_client.as_deref(), Some("shop-a.example.net:6379"));
    assert!(a.common.metrics_listen.is_some());
    // …and status reads the same file.
    match parse(&["status", "--config", all.path().to_str().unwrap()]).unwrap().cmd {
        Cmd::Status(s) => assert_eq!((s.cluster.as_str(), s.arbiter.as_str()), ("shop", "understudy://10.0.0.9:7700")),
        _ => panic!("not status"),
    }
}

#[test]
fn a_file_alone_starts_a_node_and_the_command_line_wins() {
    let f = file(NODE);
    let p = f.path().to_str().unwrap();
    let a = kv(&["kv", "--config", p]);
    assert_eq!(a.cluster, "shop");
    assert_eq!(a.repl_listen.port(), 7701, "snake_case keys are accepted");
    assert_eq!(a.common.heartbeat_ms, 70);
    assert_eq!(a.common.channel_backlog_bytes_max, 32 << 20);
    assert_eq!(a.common.failover_timeout_ms, understudy_core::Config::default().failover_timeout_ms, "default");
    // Before or after --config, with or without `=`.
    let a = kv(&["kv", "--heartbeat-ms", "9", "--config", p, "--cluster=other"]);
    assert_eq!((a.common.heartbeat_ms, a.cluster.as_str()), (9, "other"));
    // Global flags before the subcommand do not hide it.
    let c = parse(&["--log-level", "debug", "kv", "--config", p]).unwrap();
    assert_eq!(c.log_level.as_deref(), Some("debug"));
}

#[test]
fn lists_and_booleans_become_repeated_and_bare_flags() {
    let f = file(
        "cluster = \"j\"\nnode = \"a\"\narbiter = \"file:///x\"\nrepl-listen = \"127.0.0.1:0\"\n\
         map-dir = [\"/srv/a::/a\", \"/srv/b::/b\"]\nenv = [\"K=V\", \"-x=--y\"]\nfuel = true\nverify-memory = false\n\
         log-format = \"json\"\n",
    );
    let p = f.path().to_str().unwrap();
    let w = |args: &[&str]| match parse(args).unwrap() {
        Cli { cmd: Cmd::Wasm(w), log_format, .. } => (*w, log_format),
        _ => panic!("not wasm"),
    };
    let (a, format) = w(&["wasm", "g.wasm", "--config", p, "--", "arg"]);
    assert_eq!(a.map_dir.iter().map(|d| d.guest.as_str()).collect::<Vec<_>>(), ["/a", "/b"]);
    assert_eq!(a.env, ["K=V", "-x=--y"], "values that look like flags stay values");
    assert!(a.fuel && !a.verify_memory);
    assert_eq!(a.args, ["arg"]);
    assert_eq!(a.guest, Path::new("g.wasm"));
    assert_eq!(format, crate::logger::Format::Json, "global flags can come from the file");
    for args in
        [&["wasm", "g.wasm", "--config", p, "--log-format", "text"][..], &["--log-format=text", "wasm", "g.wasm", "--config", p]]
    {
        assert_eq!(w(args).1, crate::logger::Format::Text, "{args:?}: the command line wins for global flags too");
    }
    // The command line's list replaces the file's.
    let (a, _) = w(&["wasm", "g.wasm", "--config", p, "--map-dir", "/c::/c"]);
    assert_eq!(a.map_dir.len(), 1);
    assert_eq!(a.env.len(), 2);
}

#[test]
fn unknown_keys_and_bad_values_name_the_key_and_the_file() {
    for (text, want) in [
        ("clustr = \"x\"", vec!["\"clustr\"", "unknown key", "did you mean \"cluster\"?"]),
        ("heartbeat-ms = \"fast\"", vec!["\"heartbeat-ms\"", "\"fast\"", "whole number"]),
        ("heartbeat-ms = -5", vec!["\"heartbeat-ms\"", "\"-5\""]),
        ("client-listen = \"nowhere\"", vec!["\"client-listen\"", "HOST:PORT"]),
        ("channel-backlog-bytes-max = \"64XB\"", vec!["\"channel-backlog-bytes-max\"", "unknown unit"]),
        ("cluster = [\"a\", \"b\"]", vec!["\"cluster\"", "single value"]),
        ("log-format = \"xml\"", vec!["\"log-format\"", "text, json"]),
        ("log-level = \"loud\"", vec!["\"log-level\"", "\"loud\"", "error, warn"]),
        ("[kv]\ncluster = \"x\"", vec!["\"kv\"", "unknown key"]),
        ("cluster = \"x\"\ncluster-name = 1", vec!["\"cluster-name\""]),
        ("config = \"other.toml\"", vec!["\"config\"", "cannot name another"]),
        ("cluster = \"x\"\n_cluster_ = 3", vec!["\"_cluster_\""]),
        ("cluster = \"a\"\ncluster_ = 1\nnode = { x = 1 }", vec!["\"cluster_\""]),
    ] {
        let f = file(text);
        let p = f.path().to_str().unwrap();
        let e = err(&["kv", "--config", p, "--cluster", "c"]);
        assert!(e.contains(p), "{text}: the error names the file: {e}");
        for w in want {
            assert!(e.contains(w), "{text}: {w:?} in {e}");
        }
    }
    let f = file("cluster = \"a\"\ncluster_x = 1");
    let e = err(&["kv", "--config", f.path().to_str().unwrap()]);
    assert!(e.contains("cluster_x"), "{e}");
    // Booleans are TOML booleans.
    let f = file("fuel = \"yes\"");
    let e = err(&["wasm", "g.wasm", "--config", f.path().to_str().unwrap()]);
    assert!(e.contains("\"fuel\"") && e.contains("true or false"), "{e}");
    // Both spellings of one key.
    let f = file("heartbeat-ms = 1\nheartbeat_ms = 2");
    let e = err(&["kv", "--config", f.path().to_str().unwrap()]);
    assert!(e.contains("set twice"), "{e}");
    // A node-only key is not an arbiter's.
    let f = file("listen = \"127.0.0.1:0\"\ndir = \"/x\"\nclient-listen = \"127.0.0.1:0\"");
    let e = err(&["arbiter", "--config", f.path().to_str().unwrap()]);
    assert!(e.contains("\"client-listen\"") && e.contains("understudy arbiter"), "{e}");
    // A missing file and a file that is not TOML.
    let e = err(&["kv", "--config", "/nonexistent/u.toml"]);
    assert!(e.contains("/nonexistent/u.toml") && e.contains("cannot read"), "{e}");
    let f = file("cluster = ");
    let e = err(&["kv", "--config", f.path().to_str().unwrap()]);
    assert!(e.contains("not valid TOML") && e.contains("line 1"), "{e}");
}

#[test]
fn errors_about_a_flag_from_the_file_say_so() {
    let f = file(NODE);
    let p = f.path().to_str().unwrap();
    let (_, origins) = parse_from(argv(&["kv", "--config", p])).unwrap();
    let n = origins.notes("--cluster \"shop\": something is wrong");
    assert!(n.contains("--cluster was set by cluster in config file") && n.contains(p), "{n}");
    assert!(origins.notes("--cluster-x: unrelated").is_empty());
    let (_, origins) = parse_from(argv(&["kv", "--config", p, "--cluster", "c"])).unwrap();
    assert!(origins.notes("--cluster \"c\"").is_empty(), "the command line set it");
    // A required flag missing from both: clap's error, with the file's notes.
    let f = file("cluster = \"a\"");
    let e = err(&["kv", "--config", f.path().to_str().unwrap()]);
    assert!(e.contains("--node"), "{e}");
}

#[test]
fn every_single_valued_flag_of_a_node_has_its_variable() {
    let cmd = command();
    let kv = cmd.find_subcommand("kv").unwrap();
    let env = |long: &str| {
        kv.get_arguments().find(|a| a.get_long() == Some(long)).and_then(|a| a.get_env()).map(|e| e.to_str().unwrap().to_string())
    };
    assert_eq!(env("cluster").as_deref(), Some("UNDERSTUDY_CLUSTER"));
    assert_eq!(env("client-listen").as_deref(), Some("UNDERSTUDY_CLIENT_LISTEN"));
    assert_eq!(env("channel-backlog-bytes-max").as_deref(), Some("UNDERSTUDY_CHANNEL_BACKLOG_BYTES_MAX"));
    assert_eq!(env("config").as_deref(), Some("UNDERSTUDY_CONFIG"));
    let wasm = cmd.find_subcommand("wasm").unwrap();
    assert!(wasm.get_arguments().find(|a| a.get_long() == Some("map-dir")).unwrap().get_env().is_none());
    // The names in use elsewhere stay theirs.
    let globals: Vec<_> = cmd.get_arguments().filter_map(|a| a.get_env()).collect();
    assert!(globals.contains(&std::ffi::OsStr::new("UNDERSTUDY_LOG")));
    for sub in CONFIGURABLE {
        for a in cmd.find_subcommand(sub).unwrap().get_arguments() {
            let e = a.get_env().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
            for taken in ["UNDERSTUDY_LOG", "UNDERSTUDY_ETCD_USER", "UNDERSTUDY_ETCD_PASSWORD", "UNDERSTUDY_WASM_OPT"] {
                assert_ne!(e, taken, "--{:?} of {sub}", a.get_long());
            }
        }
    }
}

#[test]
fn status_exits_3_on_a_bad_command_line_and_others_2() {
    assert_eq!(usage_exit_code(&argv(&["status", "--clustr", "x"])), 3);
    assert_eq!(usage_exit_code(&argv(&["--log-level", "info", "status"])), 3);
    assert_eq!(usage_exit_code(&argv(&["kv", "--clustr", "x"])), 2);
    assert_eq!(usage_exit_code(&argv(&[])), 2);
}

#[test]
fn edit_distance_counts_single_character_edits() {
    assert_eq!(edit_distance("cluster", "clustr"), 1);
    assert_eq!(edit_distance("heartbeat-ms", "hearbeat-ms"), 1);
    assert_eq!(edit_distance("node", "dir"), 4);
    assert_eq!(edit_distance("", "ab"), 2);
}
