//! `jobq`: a replicated job queue over HTTP/1.1, built on understudy's
//! library: a [`StateMachine`] (the queue) and a [`FrontEnd`] (HTTP, parsed
//! with `httparse`), run by [`Node`](understudy_node::Node). Kill -9 the primary and the backup
//! goes live with every job it acknowledged, every claim and every
//! completion. docs/API.md walks through it.
//!
//! ```text
//! cargo run --example jobq -- --cluster jobs --node a --arbiter understudy://127.0.0.1:7000 \
//!     --listen 127.0.0.1:8100 --repl-listen 127.0.0.1:8101
//! curl -d 'resize img-1.png' http://127.0.0.1:8100/jobs             # 201 {"id":1}
//! curl -X POST 'http://127.0.0.1:8100/claim?worker=w1&lease_ms=30000' # 200 {"id":1,"payload":…,"attempt":1}
//! curl -X POST 'http://127.0.0.1:8100/jobs/1/done?worker=w1'          # 200 {"id":1,"state":"done"}
//! curl http://127.0.0.1:8100/jobs/1                                   # 200 {"id":1,"state":"done"}
//! ```
//!
//! | request | change | reply |
//! | --- | --- | --- |
//! | `POST /jobs` (body: the payload) | enqueue | `201 {"id"}` |
//! | `POST /claim?worker=W&lease_ms=N` | the oldest job whose lease expired, else the oldest queued | `200 {"id","payload","attempt"}`, `204` if none |
//! | `POST /jobs/ID/done?worker=W` | completes a job W holds | `200`, `409` if W does not hold it |
//! | `GET /jobs/ID` | — | `200 {"id","state",…}`, `404` |
//! | `GET /stats` | — | `200 {"queued","claimed","done"}` |
//! | `GET /health` | — | `200 {"role"}`, from any node |
//!
//! A node that is not the primary answers `307` with the primary in
//! `Location`. A completed job's payload is forgotten (the state stays
//! bounded by the jobs not done); its id reads as done.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use understudy_node::{Access, Ctx, FrontEnd, NodeView, Request, SnapshotError, SnapshotWriter, StateMachine};

/// Largest request body (a job's payload).
const BODY_MAX: usize = 1 << 20;
/// Largest request head.
const HEAD_MAX: usize = 16 << 10;

#[derive(Clone, Debug, Hash)]
struct Job {
    payload: String,
    /// Claims so far; a job is queued while it has none.
    attempt: u32,
    worker: String,
    lease_until_us: u64,
}

#[derive(Clone, Default, Hash)]
struct Queue {
    /// Jobs not done, by id (ids grow: the first is the oldest).
    jobs: BTreeMap<u64, Job>,
    next_id: u64,
    done: u64,
}

/// The replicated state, copy-on-write for cheap snapshots.
#[derive(Default)]
struct Jobs {
    q: Arc<Queue>,
    restoring: Vec<u8>,
}

/// Operations and reads, as the front end encodes them: words separated
/// by spaces (`ENQ payload` takes the rest of the op as the payload).
fn op_words(op: &[u8]) -> Vec<&str> {
    std::str::from_utf8(op).unwrap_or("").split(' ').collect()
}

fn reply(out: &mut Vec<u8>, code: u16, body: serde_json::Value) {
    out.extend_from_slice(format!("{code} {body}").as_bytes());
}

impl StateMachine for Jobs {
    fn apply(&mut self, ctx: &mut dyn Ctx, op: &[u8], out: &mut Vec<u8>) {
        let q = Arc::make_mut(&mut self.q);
        if let Some(payload) = op.strip_prefix(b"ENQ ") {
            q.next_id += 1;
            let payload = String::from_utf8_lossy(payload).into_owned();
            q.jobs.insert(q.next_id, Job { payload, attempt: 0, worker: String::new(), lease_until_us: 0 });
            return reply(out, 201, json!({ "id": q.next_id }));
        }
        match op_words(op).as_slice() {
            ["CLAIM", worker, lease_ms] => {
                let now = ctx.now_us();
                let lease_us = lease_ms.parse::<u64>().unwrap_or(0).saturating_mul(1000);
                // A job whose worker's lease ran out goes first, then the oldest queued.
                let id = q.jobs.iter().find(|(_, j)| j.attempt > 0 && j.lease_until_us <= now).map(|(id, _)| *id);
                let id = id.or_else(|| q.jobs.iter().find(|(_, j)| j.attempt == 0).map(|(id, _)| *id));
                match id.and_then(|id| q.jobs.get_mut(&id).map(|j| (id, j))) {
                    Some((id, j)) => {
                        j.attempt += 1;
                        j.worker = worker.to_string();
                        j.lease_until_us = now.saturating_add(lease_us);
                        reply(out, 200, json!({ "id": id, "payload": j.payload, "attempt": j.attempt }));
                    }
                    None => reply(out, 204, json!(null)),
                }
            }
            ["DONE", id, worker] => {
                let now = ctx.now_us();
                let id: u64 = id.parse().unwrap_or(0);
                let holds = q.jobs.get(&id).is_some_and(|j| j.attempt > 0 && j.worker == *worker && j.lease_until_us > now);
                if holds {
                    q.jobs.remove(&id);
                    q.done += 1;
                    reply(out, 200, json!({ "id": id, "state": "done" }));
                } else {
                    reply(out, 409, json!({ "error": format!("{worker} holds no lease on job {id}") }));
                }
            }
            _ => reply(out, 500, json!({ "error": "cannot apply this operation" })),
        }
    }

    fn read(&self, now_us: u64, request: &[u8], out: &mut Vec<u8>) {
        let q = &self.q;
        match op_words(request).as_slice() {
            ["STATS"] => {
                let claimed = q.jobs.values().filter(|j| j.attempt > 0 && j.lease_until_us > now_us).count();
                reply(out, 200, json!({ "queued": q.jobs.len() - claimed, "claimed": claimed, "done": q.done }));
            }
            ["JOB", id] => {
                let id: u64 = id.parse().unwrap_or(0);
                match q.jobs.get(&id) {
                    Some(j) if j.attempt > 0 && j.lease_until_us > now_us => reply(
                        out,
                        200,
                        json!({ "id": id, "state": "claimed", "payload": j.payload, "worker": j.worker, "attempt": j.attempt, "lease_ms_left": (j.lease_until_us - now_us) / 1000 }),
                    ),
                    Some(j) => {
                        reply(out, 200, json!({ "id": id, "state": "queued", "payload": j.payload, "attempt": j.attempt }))
                    }
                    None if id >= 1 && id <= q.next_id => reply(out, 200, json!({ "id": id, "state": "done" })),
                    None => reply(out, 404, json!({ "error": format!("no job {id}") })),
                }
            }
            _ => reply(out, 500, json!({ "error": "cannot answer this read" })),
        }
    }

    fn snapshot(&self) -> Box<dyn SnapshotWriter> {
        Box::new(JobsSnapshot { q: self.q.clone(), next: Some(0) })
    }

    fn restore_chunk(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        self.restoring.extend_from_slice(chunk);
        Ok(())
    }

    /// The snapshot is JSON lines: `[next_id, done]`, then one
    /// `[id, payload, attempt, worker, lease_until_us]` per job.
    fn restore_finish(&mut self) -> Result<(), SnapshotError> {
        let text = std::mem::take(&mut self.restoring);
        let bad = |e: serde_json::Error| SnapshotError(format!("jobq snapshot: {e}"));
        let mut lines = text.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        let (next_id, done): (u64, u64) =
            serde_json::from_slice(lines.next().ok_or_else(|| SnapshotError("jobq snapshot: empty".into()))?).map_err(bad)?;
        let mut q = Queue { jobs: BTreeMap::new(), next_id, done };
        for line in lines {
            let (id, payload, attempt, worker, lease_until_us): (u64, String, u32, String, u64) =
                serde_json::from_slice(line).map_err(bad)?;
            q.jobs.insert(id, Job { payload, attempt, worker, lease_until_us });
        }
        self.q = Arc::new(q);
        Ok(())
    }

    fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        self.q.hash(&mut h);
        h.finish()
    }
}

/// Writes at most about `max_bytes` of JSON lines per chunk.
struct JobsSnapshot {
    q: Arc<Queue>,
    /// The first job id not written yet; None once done.
    next: Option<u64>,
}

impl SnapshotWriter for JobsSnapshot {
    fn next_chunk(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> bool {
        let Some(from) = self.next else { return false };
        let start = out.len();
        if from == 0 {
            out.extend_from_slice(format!("{}\n", json!([self.q.next_id, self.q.done])).as_bytes());
        }
        self.next = None;
        for (id, j) in self.q.jobs.range(from.max(1)..) {
            if out.len() - start >= max_bytes {
                self.next = Some(*id);
                break;
            }
            let line = json!([id, j.payload, j.attempt, j.worker, j.lease_until_us]);
            out.extend_from_slice(format!("{line}\n").as_bytes());
        }
        true
    }

    fn bytes_hint(&self) -> u64 {
        self.q.jobs.values().map(|j| j.payload.len() as u64 + 64).sum()
    }
}

/// HTTP/1.1 with keep-alive.
struct Http;

/// A query parameter of `path`'s query string.
fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

fn word(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl FrontEnd for Http {
    type Machine = Jobs;
    type Conn = ();

    fn open(&self, _id: u64) {}

    fn decode(
        &self,
        _: &mut (),
        input: &[u8],
        node: &NodeView<'_, Jobs>,
        op: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Option<Request> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let head = match req.parse(input) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if input.len() <= HEAD_MAX => return None,
            Ok(httparse::Status::Partial) => return Some(fail(out, input.len(), 431, "request head too large")),
            Err(e) => return Some(fail(out, input.len(), 400, &format!("bad request: {e}"))),
        };
        let header = |name: &str| req.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
        if header("transfer-encoding").is_some() {
            return Some(fail(out, input.len(), 411, "send the body with a Content-Length"));
        }
        let body_len = match header("content-length").map(|v| std::str::from_utf8(v).ok().and_then(|v| v.trim().parse().ok())) {
            None => 0,
            Some(Some(n)) if n <= BODY_MAX => n,
            Some(Some(_)) => return Some(fail(out, input.len(), 413, &format!("a job is at most {BODY_MAX} bytes"))),
            Some(None) => return Some(fail(out, input.len(), 400, "bad Content-Length")),
        };
        if input.len() < head + body_len {
            return None;
        }
        let close = req.version == Some(0) || header("connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
        let body = &input[head..head + body_len];
        let (path, query) = req.path.unwrap_or("/").split_once('?').unwrap_or((req.path.unwrap_or("/"), ""));
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let access = match (req.method.unwrap_or(""), segments.as_slice()) {
            ("POST", ["jobs"]) => {
                op.extend_from_slice(b"ENQ ");
                op.extend_from_slice(String::from_utf8_lossy(body).as_bytes());
                Access::Write
            }
            ("POST", ["claim"]) => match (param(query, "worker"), param(query, "lease_ms").map(str::parse::<u64>)) {
                (Some(w), Some(Ok(ms))) if word(w) => {
                    op.extend_from_slice(format!("CLAIM {w} {ms}").as_bytes());
                    Access::Write
                }
                _ => local(out, 400, "POST /claim?worker=NAME&lease_ms=N"),
            },
            ("POST", ["jobs", id, "done"]) => match (id.parse::<u64>(), param(query, "worker")) {
                (Ok(id), Some(w)) if word(w) => {
                    op.extend_from_slice(format!("DONE {id} {w}").as_bytes());
                    Access::Write
                }
                _ => local(out, 400, "POST /jobs/ID/done?worker=NAME"),
            },
            ("GET", ["jobs", id]) => match id.parse::<u64>() {
                Ok(id) => {
                    op.extend_from_slice(format!("JOB {id}").as_bytes());
                    Access::Read
                }
                Err(_) => local(out, 400, "GET /jobs/ID: ID is a number"),
            },
            ("GET", ["stats"]) => {
                op.extend_from_slice(b"STATS");
                Access::Read
            }
            ("GET", ["health"]) => {
                let role = node.status().role.as_str();
                reply(out, 200, json!({ "node": node.node(), "role": role, "primary": node.primary_client() }));
                Access::Status
            }
            _ => local(out, 404, "no such resource (POST /jobs, POST /claim, POST /jobs/ID/done, GET /jobs/ID, GET /stats)"),
        };
        let r = Request::new(head + body_len, access);
        Some(if close { r.then_close() } else { r })
    }

    /// `out[start..]` is `CODE BODY`: write the status line and headers
    /// before the body (a 307's body is the primary's address).
    fn encode(&self, _: &mut (), out: &mut Vec<u8>, start: usize) {
        let reply = out.split_off(start);
        let code: u16 = std::str::from_utf8(&reply[..3]).ok().and_then(|c| c.parse().ok()).unwrap_or(500);
        let body = &reply[4.min(reply.len())..];
        let (reason, extra, body) = match code {
            200 => ("OK", String::new(), body),
            201 => ("Created", String::new(), body),
            204 => ("No Content", String::new(), &b""[..]),
            307 => ("Temporary Redirect", format!("Location: http://{}\r\n", String::from_utf8_lossy(body)), &b""[..]),
            400 => ("Bad Request", String::new(), body),
            404 => ("Not Found", String::new(), body),
            409 => ("Conflict", String::new(), body),
            411 => ("Length Required", String::new(), body),
            413 => ("Content Too Large", String::new(), body),
            431 => ("Request Header Fields Too Large", String::new(), body),
            503 => ("Service Unavailable", String::new(), body),
            _ => ("Internal Server Error", String::new(), body),
        };
        let head = format!(
            "HTTP/1.1 {code} {reason}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(body);
    }

    fn redirect(&self, _: &mut (), primary: Option<&str>, out: &mut Vec<u8>) {
        match primary {
            Some(p) => out.extend_from_slice(format!("307 {p}").as_bytes()),
            None => reply(out, 503, json!({ "error": "no primary yet" })),
        }
    }
}

/// A reply the front end gives itself.
fn local(out: &mut Vec<u8>, code: u16, msg: &str) -> Access {
    reply(out, code, json!({ "error": msg }));
    Access::Local
}

/// A request that cannot be framed: answer, then close.
fn fail(out: &mut Vec<u8>, len: usize, code: u16, msg: &str) -> Request {
    local(out, code, msg);
    Request::new(len, Access::Local).then_close()
}

fn main() -> std::process::ExitCode {
    understudy_node::builder::main("jobq: a replicated job queue over HTTP (understudy example)", |node| {
        node.machine_tag("jobq/1").serve(Jobs::default, Http)
    })
}
