//! Issue 10 §2: a node never waits silently and never retries blindly.
//! Every wait says what it waits for (which node, which address) at once
//! and then at growing intervals; errors that waiting cannot fix end the
//! process with exit code 2 and a message naming the flag.

mod common;
use common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A kv node of `cluster` started by hand (so a test can give it a name
/// already in use, another secret or arbiter); its stderr goes to `log`.
fn spawn(h: &Harness, cluster: &str, name: &str, arbiter: &str, secret: &str, extra: &[&str]) -> Child {
    let log = h.path(&format!("{name}-{cluster}.manual.log"));
    Command::new(BIN)
        .args(["kv", "--cluster", cluster, "--node", name, "--arbiter", arbiter])
        .args(["--client-listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--secret-file"])
        .arg(h.path(secret))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn manual_log(h: &Harness, cluster: &str, name: &str) -> String {
    std::fs::read_to_string(h.path(&format!("{name}-{cluster}.manual.log"))).unwrap_or_default()
}

/// Waits for the process to end by itself; its exit code.
fn exit_code(child: &mut Child, limit: Duration) -> i32 {
    let status = wait_for("the node to exit by itself", limit, || child.try_wait().unwrap());
    status.code().expect("exited, not killed")
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_wrong_secret_ends_the_node_naming_the_flag() {
    let _s = serial();
    let h = Harness::new();
    std::fs::write(h.path("wrong"), "not-the-secret").unwrap();
    let mut c = spawn(&h, CLUSTER, "w", &h.arbiter_url(), "wrong", &[]);
    assert_eq!(exit_code(&mut c, Duration::from_secs(30)), 2, "{}", manual_log(&h, CLUSTER, "w"));
    let log = manual_log(&h, CLUSTER, "w");
    assert!(log.contains("--secret-file") && log.contains("cannot start"), "{log}");
    assert!(h.arbiter().read(CLUSTER).unwrap().is_none(), "nothing was claimed");
}

#[test]
fn a_spare_waits_quietly_and_a_name_in_use_ends_the_node() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_pair();

    // A third node is a spare: it says so, keeps trying with back-off, and
    // neither it nor the primary logs every attempt.
    let spare = Kill(spawn(&h, CLUSTER, "c", &h.arbiter_url(), "secret", &["--log-level", "debug"]));
    let attempts = |log: &str| log.lines().filter(|l| l.contains("joining the primary at")).count();
    wait_for("the spare to try 5 times", Duration::from_secs(60), || {
        (attempts(&manual_log(&h, CLUSTER, "c")) >= 5).then_some(())
    });
    let log = manual_log(&h, CLUSTER, "c");
    let told = log.lines().filter(|l| l.contains("WARN") && l.contains("spare")).collect::<Vec<_>>();
    assert!(!told.is_empty() && told.len() < attempts(&log), "told at growing intervals, not at each attempt: {log}");
    assert!(
        told[0].contains("\"a\"") && told[0].contains(&h.node("a").repl),
        "the wait names the primary and its address: {}",
        told[0]
    );
    let primary_told = h.log_of("a").lines().filter(|l| l.contains("refused the join of node \"c\"")).count();
    assert_eq!(primary_told, 1, "the primary tells of the spare once: {}", h.log_of("a"));
    drop(spare);

    // A second live "b": refused as a name in use through the grace
    // period (its own former process could be attached), then it ends.
    let mut dup = spawn(&h, CLUSTER, "b", &h.arbiter_url(), "secret", &[]);
    assert_eq!(exit_code(&mut dup, Duration::from_secs(60)), 2);
    let log = manual_log(&h, CLUSTER, "b");
    assert!(log.contains("--node") && log.contains("goes by this node's name"), "{log}");
    assert!(h.record().unwrap().protected, "the real b is still the in-sync backup");
}

#[test]
fn an_unreachable_primary_is_named_and_another_clusters_node_ends_the_joiner() {
    let _s = serial();
    let mut h = Harness::new();
    // A file arbiter whose record names a primary at a port where nothing
    // listens: the node waits, saying for whom, and keeps running.
    let arb = h.path("file-arbiter");
    std::fs::create_dir(&arb).unwrap();
    let url = format!("file://{}", arb.display());
    let fa = understudy_arbiter::connect(&url, b"").unwrap();
    let dead = refusing_port();
    let me = understudy_arbiter::NodeAddrs {
        node: "gone".into(),
        client: "127.0.0.1:1".into(),
        repl: format!("127.0.0.1:{}", dead.port),
    };
    fa.claim("lost", 1, &me).unwrap();
    let mut waiting = Kill(spawn(&h, "lost", "n", &url, "secret", &[]));
    let said = wait_for("the wait to be told", Duration::from_secs(30), || {
        let log = manual_log(&h, "lost", "n");
        log.contains("does not answer").then_some(log)
    });
    assert!(said.contains("\"gone\"") && said.contains(&dead.port.to_string()), "it names the primary and address: {said}");
    wait_for("the wait to be told again", Duration::from_secs(30), || {
        (manual_log(&h, "lost", "n").matches("does not answer").count() >= 2).then_some(())
    });
    assert!(waiting.0.try_wait().unwrap().is_none(), "a wait is not an error: the node keeps running");

    // A record naming a live node of another cluster: the joiner ends.
    h.start_node("a", &[]);
    h.wait_primary("a");
    let other =
        understudy_arbiter::NodeAddrs { node: "a".into(), client: h.node("a").client.clone(), repl: h.node("a").repl.clone() };
    fa.claim("elsewhere", 1, &other).unwrap();
    let mut lost = spawn(&h, "elsewhere", "x", &url, "secret", &[]);
    assert_eq!(exit_code(&mut lost, Duration::from_secs(30)), 2);
    let log = manual_log(&h, "elsewhere", "x");
    assert!(log.contains("--cluster") && log.contains("another cluster"), "{log}");
}

/// Errors name the flag and carry each OS error once (not once per layer).
#[test]
fn a_busy_port_and_a_bad_dir_are_each_said_once() {
    let h = Harness::new();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().to_string();
    for (extra, flag, os) in [
        (vec!["--client-listen", port.as_str()], "--client-listen", "Address already in use"),
        (vec!["--client-listen", "127.0.0.1:0", "--dir", "/proc/no-such-dir"], "--dir", "No such file or directory"),
    ] {
        let out = Command::new(BIN)
            .args(["kv", "--cluster", CLUSTER, "--node", "n", "--arbiter", &h.arbiter_url(), "--repl-listen", "127.0.0.1:0"])
            .arg("--secret-file")
            .arg(h.path("secret"))
            .args(&extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(flag), "{err}");
        assert_eq!(err.matches(os).count(), 1, "the OS error once: {err}");
    }
    assert!(h.record().is_none(), "nothing was claimed");
}
