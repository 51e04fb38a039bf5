//! `--config FILE` and `UNDERSTUDY_<FLAG>` with real processes: a node and
//! an arbiter started from files, the precedence command line >
//! environment > file, bad files failing before anything is claimed, and
//! the log line format (RFC 3339 UTC time, node name, `--log-format json`).

mod common;
use common::*;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use understudy_node::listening::{ArbiterListening, Listening};

/// A kv node's config for the harness's cluster: everything but `--dir`.
fn node_config(h: &Harness, node: &str) -> String {
    format!(
        "# a node of the test cluster\ncluster = \"{CLUSTER}\"\nnode = \"{node}\"\narbiter = \"{}\"\n\
         client-listen = \"127.0.0.1:0\"\nrepl_listen = \"127.0.0.1:0\"\nsecret-file = \"{}\"\n\
         heartbeat-ms = 50\nchannel-backlog-bytes-max = \"64MiB\"\n",
        h.arbiter_url(),
        h.path("secret").display()
    )
}

/// Starts `understudy kv ARGS` with `env`, its log in `dir.log`, and waits
/// for its listening.json in `dir`; registers it with the harness (which
/// kills it at the end) under the node name it reports.
fn start(h: &mut Harness, dir: &str, args: &[&str], env: &[(&str, &str)]) -> Listening {
    let log = h.path(&format!("{dir}.log"));
    let mut child = Command::new(BIN)
        .arg("kv")
        .args(args)
        .arg("--dir")
        .arg(h.path(dir))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let l: Option<Listening> = wait_listening(&mut child, &h.path(dir));
    let l = l.unwrap_or_else(|| panic!("{dir} exited at start: {}", std::fs::read_to_string(&log).unwrap_or_default()));
    let node = Node {
        kind: Kind::Kv,
        name: l.node.clone(),
        child: Some(child),
        client: l.client.to_string(),
        repl: l.repl.to_string(),
        log,
    };
    h.nodes.insert(l.node.clone(), node);
    l
}

/// Runs a command that must exit by itself within a minute.
fn run_to_exit(mut c: Command) -> Output {
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for("the command to exit", Duration::from_secs(60), || child.try_wait().unwrap());
    child.wait_with_output().unwrap()
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.display().to_string()
}

/// `TIME NODE LEVEL ` at the start of a text log line.
fn assert_text_prefix(line: &str, node: &str) {
    let (ts, rest) = line.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
    let shape = ts.len() == 24
        && ts.chars().enumerate().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => c == '.',
            23 => c == 'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(shape, "RFC 3339 UTC with milliseconds: {line:?}");
    assert!(ts[..4] >= *"2025", "a real date: {line:?}");
    assert!(rest.starts_with(&format!("{node} ")), "the node's name follows the time: {line:?}");
}

#[test]
fn a_pair_from_one_file_the_environment_and_the_command_line_override_it() {
    let _s = serial();
    let mut h = Harness::new();
    let cfg = write(&h.path("node.toml"), &node_config(&h, "from-file"));

    // The file alone (and --dir): the node claims and serves.
    let a = start(&mut h, "d1", &["--config", &cfg], &[]);
    assert_eq!(a.node, "from-file");
    let r = h.wait_primary("from-file");
    assert_eq!(r.primary.client, a.advertise_client, "it published what it bound");
    let log = h.log_of("from-file");
    let first = log.lines().next().unwrap_or_default();
    assert_text_prefix(first, "from-file");
    assert!(log.lines().all(|l| l.contains(" from-file ")), "every line names the node:\n{log}");

    // The environment beats the file: the same file, another node name.
    let b = start(&mut h, "d2", &["--config", &cfg], &[("UNDERSTUDY_NODE", "from-env"), ("UNDERSTUDY_HEARTBEAT_MS", "40")]);
    assert_eq!(b.node, "from-env");
    h.wait_in_sync("from-env");

    // The command line beats both: a third node, in another cluster.
    let c = start(
        &mut h,
        "d3",
        &["--node", "from-cli", "--config", &cfg, "--cluster=other"],
        &[("UNDERSTUDY_NODE", "from-env-2"), ("UNDERSTUDY_CLUSTER", "t")],
    );
    assert_eq!(c.node, "from-cli");
    let other = wait_for("from-cli to claim cluster other", Duration::from_secs(30), || h.arbiter().read("other").ok().flatten());
    assert_eq!(other.primary.node, "from-cli");
    assert_eq!(h.record().unwrap().primary.node, "from-file", "cluster t is untouched");
}

#[test]
fn bad_files_and_variables_fail_fast_naming_the_key_and_the_file() {
    let _s = serial();
    let h = Harness::new();
    let good = node_config(&h, "a");
    let cases = [
        (format!("{good}clustr = \"t\"\n"), vec!["\"clustr\"", "unknown key", "did you mean \"cluster\"?"], vec![]),
        (
            good.replace("heartbeat-ms = 50", "heartbeat-ms = \"fast\""),
            vec!["\"heartbeat-ms\"", "\"fast\"", "whole number"],
            vec![],
        ),
        (good.replace("\"64MiB\"", "\"64 parsecs\""), vec!["\"channel-backlog-bytes-max\"", "unit"], vec![]),
        (good.clone(), vec!["--heartbeat-ms", "$UNDERSTUDY_HEARTBEAT_MS"], vec![("UNDERSTUDY_HEARTBEAT_MS", "fast")]),
    ];
    for (i, (text, want, env)) in cases.into_iter().enumerate() {
        let cfg = write(&h.path(&format!("bad{i}.toml")), &text);
        let mut c = Command::new(BIN);
        c.args(["kv", "--config", &cfg, "--dir"]).arg(h.path(&format!("bad{i}"))).envs(env.iter().copied());
        let out = run_to_exit(c);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {i}: a usage error: {err}");
        if env.is_empty() {
            assert!(err.contains(&cfg), "case {i}: the error names the file: {err}");
        }
        for w in want {
            assert!(err.contains(w), "case {i}: {w:?} in: {err}");
        }
        assert!(!h.path(&format!("bad{i}/listening.json")).exists(), "case {i}: nothing started");
    }
    assert!(h.record().is_none(), "nothing was claimed at the arbiter");
}

/// Kills the child on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_arbiter_from_a_file_logs_json_and_status_reads_a_nodes_file() {
    let _s = serial();
    let d = tempfile::tempdir().unwrap();
    let secret = write(&d.path().join("secret"), "s3cret");
    let adir = d.path().join("arb");
    let cfg = write(
        &d.path().join("arbiter.toml"),
        &format!("listen = \"127.0.0.1:0\"\ndir = \"{}\"\nsecret_file = \"{secret}\"\n", adir.display()),
    );
    let mut arb = Killed(
        Command::new(BIN)
            .args(["arbiter", "--config", &cfg])
            .env("UNDERSTUDY_LOG_FORMAT", "json")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let l: Option<ArbiterListening> = wait_listening(&mut arb.0, &adir);
    let l = l.expect("the arbiter started from its file");

    // A node's file serves status: it reads arbiter, cluster and
    // secret-file, and skips the node's own keys.
    let node = format!(
        "cluster = \"none-yet\"\nnode = \"a\"\narbiter = \"understudy://{}\"\nsecret-file = \"{secret}\"\n\
         client-listen = \"127.0.0.1:0\"\nrepl-listen = \"127.0.0.1:0\"\nheartbeat-ms = 50\n",
        l.arbiter
    );
    let ncfg = write(&d.path().join("node.toml"), &node);
    let mut c = Command::new(BIN);
    c.args(["status", "--json", "--config", &ncfg]);
    let out = run_to_exit(c);
    assert_eq!(out.status.code(), Some(2), "no primary yet: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cluster"], "none-yet");
    // …but a key no command has is still an error.
    let typo = write(&d.path().join("typo.toml"), &format!("{node}arbitre = \"x\"\n"));
    let mut c = Command::new(BIN);
    c.args(["status", "--config", &typo]);
    let out = run_to_exit(c);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"arbitre\""));

    // The arbiter's log: one JSON object per line, node "arbiter".
    let _ = arb.0.kill();
    let _ = arb.0.wait();
    let mut text = String::new();
    std::io::Read::read_to_string(arb.0.stderr.as_mut().unwrap(), &mut text).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"))).collect();
    assert!(lines.iter().any(|v| v["msg"].as_str().is_some_and(|m| m.contains("arbiter listening on"))), "{text}");
    for v in &lines {
        assert_eq!(v["node"], "arbiter", "{v}");
        assert_eq!(v["level"], "info", "{v}");
        assert!(v["ts"].as_str().is_some_and(|t| t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T'), "{v}");
    }
}
