//! The Lua VM scripts run in: one per `Kv`, created on first use and
//! dropped by SCRIPT FLUSH, as Redis keeps one. It is NOT replicated
//! state: everything a script can observe of it is made the same on every
//! replica (`glue.lua`), and what must carry over between scripts (the
//! body cache, the `math.random` state) lives in `Scripts`.
//!
//! Built on mlua (docs.rs/mlua 0.12: `Lua::new_with`, `Lua::scope` for the
//! per-script `redis.call` that borrows the store, `Lua::set_global_hook`
//! with `HookTriggers::every_nth_instruction` for the instruction budget,
//! `Lua::inspect_stack` for the error position).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

use super::convert::{c_i64, error_table, error_text, fmt_g17, parse, sort_unordered, to_lua};
use super::rand::{random_unit, srand48};
use super::Caller;
use crate::cmd::Cmd;
use crate::subcommands::REDIS_VERSION;

/// The glue's chunk name: its frames are not the script's.
const INTERNAL: &str = "=understudy";
/// Instructions between two looks at the budget.
const TICK: u32 = 10_000;
/// `REDIS_VERSION_NUM` of 7.0.15.
const VERSION_NUM: i64 = 0x07_00_0f;

/// State the VM's Rust functions share with the runner.
#[derive(Default)]
struct Shared {
    /// rand48 state for the script running (copied in and out of `Scripts`).
    rand: AtomicU64,
    /// Budget ticks used by the script running, and allowed.
    ticks: AtomicU64,
    limit: AtomicU64,
    /// The budget is spent: the script is being stopped.
    over: AtomicBool,
}

pub struct Vm {
    lua: Lua,
    /// The real globals table (scripts see a read-only proxy of it).
    globals: Table,
    /// The real `redis` table: `call` and `pcall` are set per script.
    redis: Table,
    /// `slot.reset` (from the glue) and `slot.pending` (values raised by
    /// Rust functions, emptied per script).
    slot: Table,
    xpcall: Function,
    handler: Function,
    /// `slot.reset`, called before each script.
    reset: Function,
    /// Compiled scripts by sha (Redis's `f_<sha>` functions).
    compiled: HashMap<String, Function>,
    shared: Arc<Shared>,
}

/// How a run ended.
pub enum Outcome {
    /// The reply (RESP2) is in `out`.
    Done,
    /// The instruction budget ran out.
    OverBudget,
}

/// Prefix of the message of an mlua error that stands for a Lua value
/// raised by one of our Rust functions (kept in `slot.pending`).
const RAISED: &str = "understudy raised #";

/// Raises `v` from a Rust function: mlua raises its own error object, which
/// `unwrap` turns back into `v` where a script or Redis's handler sees it.
fn raise(slot: &Table, v: impl mlua::IntoLua) -> mlua::Error {
    let stored = slot.raw_get::<Table>("pending").and_then(|pending| {
        let id = pending.raw_len() + 1;
        pending.raw_set(id, v)?;
        Ok(id)
    });
    match stored {
        Ok(id) => mlua::Error::runtime(format!("{RAISED}{id}")),
        Err(e) => e,
    }
}

fn raised_id(e: &mlua::Error) -> Option<usize> {
    match e {
        mlua::Error::RuntimeError(s) => s.strip_prefix(RAISED)?.parse().ok(),
        mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => raised_id(cause),
        _ => None,
    }
}

/// The Lua value a Rust function raised, for an error object; `v` itself
/// for anything else.
fn unwrap(slot: &Table, v: Value) -> Value {
    if let Value::Error(e) = &v {
        if let Some(id) = raised_id(e) {
            if let Ok(found) = slot.raw_get::<Table>("pending").and_then(|p| p.raw_get::<Value>(id)) {
                if !found.is_nil() {
                    return found;
                }
            }
        }
    }
    v
}

/// `luaL_where(L, 1)` from a Rust function: the caller's `source:line: `.
fn where_caller(lua: &Lua) -> String {
    lua.inspect_stack(1, |d| match d.current_line() {
        Some(line) if line > 0 => format!("{}:{line}: ", d.source().short_src.unwrap_or_default()),
        _ => String::new(),
    })
    .unwrap_or_default()
}

/// `luaL_argerror`'s message (positioned at the caller): the function's
/// name as its caller called it.
fn arg_error(lua: &Lua, n: usize, extra: &str) -> String {
    let name = lua.inspect_stack(0, |d| d.names().name.map(|n| n.into_owned())).flatten().unwrap_or_else(|| "?".into());
    format!("{}bad argument #{n} to '{name}' ({extra})", where_caller(lua))
}

/// `luaL_checkint` for argument `n`: a number or a string that reads as
/// one, truncated to a C `int` as Lua 5.1 on x86-64 does.
fn check_int(lua: &Lua, n: usize, v: Option<&Value>) -> Result<i32, String> {
    let number = match v {
        Some(Value::Integer(i)) => Some(*i as f64),
        Some(Value::Number(x)) => Some(*x),
        Some(s @ Value::String(_)) => lua.coerce_number(s.clone()).ok().flatten(),
        _ => None,
    };
    match number {
        Some(x) => Ok(c_i64(x) as i32),
        None => {
            let got = v.map_or("no value", type_name);
            Err(arg_error(lua, n, &format!("number expected, got {got}")))
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::Integer(_) | Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Table(_) => "table",
        Value::Function(_) => "function",
        Value::Thread(_) => "thread",
        _ => "userdata",
    }
}

/// Redis's `redis_math_random`: the number, or the error message.
fn math_random(lua: &Lua, shared: &Shared, args: &MultiValue) -> Result<f64, String> {
    let mut state = shared.rand.load(Ordering::Relaxed);
    let r = random_unit(&mut state);
    shared.rand.store(state, Ordering::Relaxed);
    match args.len() {
        0 => Ok(r),
        1 => {
            let u = check_int(lua, 1, args.front())?;
            if u < 1 {
                return Err(arg_error(lua, 1, "interval is empty"));
            }
            Ok((r * f64::from(u)).floor() + 1.0)
        }
        2 => {
            let l = check_int(lua, 1, args.front())?;
            let u = check_int(lua, 2, args.get(1))?;
            if l > u {
                return Err(arg_error(lua, 2, "interval is empty"));
            }
            Ok((r * (f64::from(u) - f64::from(l) + 1.0)).floor() + f64::from(l))
        }
        _ => Err(format!("{}wrong number of arguments", where_caller(lua))),
    }
}

/// An argument as C's `lua_tostring` reads it: a string or a number.
fn c_string(lua: &Lua, v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(_) | Value::Number(_) => lua.coerce_string(v.clone()).ok().flatten().map(|s| s.as_bytes().to_vec()),
        _ => None,
    }
}

/// A table `{err = msg}`.
fn err_table(lua: &Lua, msg: &[u8]) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("err", lua.create_string(msg)?)?;
    Ok(t)
}

/// The `redis` table's functions other than call/pcall (set per script).
fn redis_table(lua: &Lua, slot: &Table) -> mlua::Result<Table> {
    let redis = lua.create_table()?;
    let sl = slot.clone();
    redis.raw_set(
        "sha1hex",
        lua.create_function(move |lua, args: MultiValue| {
            if args.len() != 1 {
                return Err(raise(&sl, err_table(lua, b"ERR wrong number of arguments")?));
            }
            let bytes = c_string(lua, &args[0]).unwrap_or_default();
            lua.create_string(super::sha1_hex(&bytes))
        })?,
    )?;
    redis.raw_set(
        "error_reply",
        lua.create_function(|lua, args: MultiValue| match (args.len(), args.front()) {
            (1, Some(Value::String(s))) => {
                let b = s.as_bytes();
                let b = &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())];
                let text = if b.first() == Some(&b'-') { b.to_vec() } else { [b"-", b].concat() };
                err_table(lua, &error_text(&text))
            }
            _ => err_table(lua, b"ERR wrong number or type of arguments"),
        })?,
    )?;
    redis.raw_set(
        "status_reply",
        lua.create_function(|lua, args: MultiValue| match (args.len(), args.front()) {
            (1, Some(Value::String(s))) => {
                let t = lua.create_table()?;
                t.raw_set("ok", s.clone())?;
                Ok(t)
            }
            _ => err_table(lua, b"ERR wrong number or type of arguments"),
        })?,
    )?;
    let sl = slot.clone();
    redis.raw_set(
        "log",
        lua.create_function(move |lua, args: MultiValue| {
            if args.len() < 2 {
                return Err(raise(&sl, err_table(lua, b"ERR redis.log() requires two arguments or more.")?));
            }
            let Some(level) = lua.coerce_number(args[0].clone()).ok().flatten() else {
                return Err(raise(&sl, err_table(lua, b"ERR First argument must be a number (log level).")?));
            };
            if !(0..=3).contains(&c_i64(level)) {
                return Err(raise(&sl, err_table(lua, b"ERR Invalid debug level.")?));
            }
            Ok(())
        })?,
    )?;
    let sl = slot.clone();
    redis.raw_set(
        "setresp",
        lua.create_function(move |lua, args: MultiValue| {
            if args.len() != 1 {
                return Err(raise(&sl, err_table(lua, b"ERR redis.setresp() requires one argument.")?));
            }
            let resp = c_i64(lua.coerce_number(args[0].clone()).ok().flatten().unwrap_or(0.0)) as i32;
            match resp {
                2 => Ok(()),
                3 => {
                    Err(raise(&sl, err_table(lua, b"ERR understudy: RESP3 inside scripts (redis.setresp(3)) is not supported")?))
                }
                _ => Err(raise(&sl, err_table(lua, b"ERR RESP version must be 2 or 3.")?)),
            }
        })?,
    )?;
    let sl = slot.clone();
    redis.raw_set(
        "set_repl",
        lua.create_function(move |lua, args: MultiValue| {
            if args.len() != 1 {
                return Err(raise(&sl, err_table(lua, b"ERR redis.set_repl() requires one argument.")?));
            }
            let flags = c_i64(lua.coerce_number(args[0].clone()).ok().flatten().unwrap_or(0.0)) as i32;
            if flags & !3 != 0 {
                let msg = b"ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.";
                return Err(raise(&sl, err_table(lua, msg)?));
            }
            Ok(())
        })?,
    )?;
    redis.raw_set("replicate_commands", lua.create_function(|_, ()| Ok(true))?)?;
    redis.raw_set("breakpoint", lua.create_function(|_, ()| Ok(false))?)?;
    redis.raw_set("debug", lua.create_function(|_, _: MultiValue| Ok(()))?)?;
    let sl = slot.clone();
    redis.raw_set(
        "acl_check_cmd",
        lua.create_function(move |lua, args: MultiValue| {
            if args.is_empty() {
                let msg = b"ERR Please specify at least one argument for this redis lib call";
                return Err(raise(&sl, err_table(lua, msg)?));
            }
            let Some(argv) = args.iter().map(|v| c_string(lua, v)).collect::<Option<Vec<_>>>() else {
                let msg = b"ERR Lua redis lib command arguments must be strings or integers";
                return Err(raise(&sl, err_table(lua, msg)?));
            };
            if Cmd::lookup(&argv[0]).is_none() {
                return Err(raise(&sl, err_table(lua, b"ERR Invalid command passed to redis.acl_check_cmd()")?));
            }
            Ok(true)
        })?,
    )?;
    for (name, v) in [("LOG_DEBUG", 0), ("LOG_VERBOSE", 1), ("LOG_NOTICE", 2), ("LOG_WARNING", 3)] {
        redis.raw_set(name, v)?;
    }
    for (name, v) in [("REPL_NONE", 0), ("REPL_AOF", 1), ("REPL_SLAVE", 2), ("REPL_REPLICA", 2), ("REPL_ALL", 3)] {
        redis.raw_set(name, v)?;
    }
    redis.raw_set("REDIS_VERSION", REDIS_VERSION)?;
    redis.raw_set("REDIS_VERSION_NUM", VERSION_NUM)?;
    Ok(redis)
}

impl Vm {
    pub fn new() -> mlua::Result<Vm> {
        let lua = Lua::new_with(StdLib::TABLE | StdLib::STRING | StdLib::MATH, LuaOptions::default())?;
        // A cycle once the heap has grown to 4× what the last one left
        // (Lua's default: 2×): the garbage of a call (KEYS, ARGV, replies)
        // is collected half as often. Scripts still read Lua's default
        // figures (`collectgarbage`, in the glue).
        lua.load("collectgarbage('setpause', 400)").exec()?;
        let shared = Arc::new(Shared::default());
        let globals = lua.globals();
        let real_tostring: Function = globals.get("tostring")?;
        let xpcall: Function = globals.get("xpcall")?;
        let slot = lua.create_table()?;
        slot.raw_set("pending", lua.create_table()?)?;
        let math: Table = globals.get("math")?;
        let (s, sl) = (Arc::clone(&shared), slot.clone());
        math.raw_set(
            "random",
            lua.create_function(move |lua, args: MultiValue| {
                math_random(lua, &s, &args).map_err(|msg| match lua.create_string(msg) {
                    Ok(msg) => raise(&sl, msg),
                    Err(e) => e,
                })
            })?,
        )?;
        let (s, sl) = (Arc::clone(&shared), slot.clone());
        math.raw_set(
            "randomseed",
            lua.create_function(move |lua, args: MultiValue| match check_int(lua, 1, args.front()) {
                Ok(seed) => {
                    let mut state = 0;
                    srand48(&mut state, seed);
                    s.rand.store(state, Ordering::Relaxed);
                    Ok(())
                }
                Err(msg) => Err(raise(&sl, lua.create_string(msg)?)),
            })?,
        )?;
        let redis = redis_table(&lua, &slot)?;
        let host = lua.create_table()?;
        let s = Arc::clone(&shared);
        host.raw_set("over", lua.create_function(move |_, ()| Ok(s.over.load(Ordering::Relaxed)))?)?;
        let sl = slot.clone();
        host.raw_set("unwrap", lua.create_function(move |_, v: Value| Ok(unwrap(&sl, v)))?)?;
        host.raw_set("redis", redis.clone())?;
        let sl = slot.clone();
        let handler = lua.create_function(move |lua, err: Value| error_handler(lua, &real_tostring, unwrap(&sl, err)))?;
        host.raw_set("handler", handler.clone())?;
        let glue = lua.load(include_str!("glue.lua")).set_name(INTERNAL).into_function()?;
        let proxy: Table = glue.call((globals.clone(), host, slot.clone()))?;
        lua.set_globals(proxy)?;
        let s = Arc::clone(&shared);
        lua.set_global_hook(HookTriggers::new().every_nth_instruction(TICK), move |_, _| {
            let used = s.ticks.fetch_add(1, Ordering::Relaxed) + 1;
            if used > s.limit.load(Ordering::Relaxed) {
                s.over.store(true, Ordering::Relaxed);
                return Err(mlua::Error::runtime("script instruction budget exhausted"));
            }
            Ok(VmState::Continue)
        })?;
        let reset = slot.get::<Function>("reset")?;
        Ok(Vm { lua, globals, redis, slot, xpcall, handler, reset, compiled: HashMap::new(), shared })
    }

    /// Compiles `body` (a script without its shebang line, whose line feed
    /// stays so lines keep their numbers) unless `sha` is compiled already.
    /// The error is Redis's reply text.
    pub fn compile(&mut self, sha: &str, body: &[u8]) -> Result<(), String> {
        if self.compiled.contains_key(sha) {
            return Ok(());
        }
        // Redis's Lua reads a binary chunk as text; a leading blank makes
        // ours do the same (and changes nothing else).
        let source: Vec<u8> = if body.first() == Some(&27) { [b" ", body].concat() } else { body.to_vec() };
        match self.lua.load(source).set_name("@user_script").into_function() {
            Ok(f) => {
                self.compiled.insert(sha.to_string(), f);
                Ok(())
            }
            Err(mlua::Error::SyntaxError { message, .. }) => Err(format!("ERR Error compiling script (new function): {message}")),
            Err(e) => Err(format!("ERR Error compiling script (new function): {e}")),
        }
    }

    /// Runs the compiled script `sha` with KEYS and ARGV, `rand` as the
    /// rand48 state (updated), within `budget` instructions; `caller` runs
    /// `redis.call`. The reply goes to `out`.
    pub fn run(
        &mut self,
        sha: &str,
        (keys, args): (&[&[u8]], &[&[u8]]),
        rand: &mut u64,
        budget: u64,
        caller: &mut Caller,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let Some(f) = self.compiled.get(sha).cloned() else {
            crate::resp::write_error(out, b"ERR internal: script not compiled");
            return Outcome::Done;
        };
        self.shared.rand.store(*rand, Ordering::Relaxed);
        self.shared.ticks.store(0, Ordering::Relaxed);
        self.shared.limit.store(budget.div_ceil(u64::from(TICK)).max(1), Ordering::Relaxed);
        self.shared.over.store(false, Ordering::Relaxed);
        let result = self.call(f, keys, args, caller);
        *rand = self.shared.rand.load(Ordering::Relaxed);
        if self.shared.over.load(Ordering::Relaxed) {
            return Outcome::OverBudget;
        }
        match result {
            Ok((true, value)) => super::convert::write_reply(&value, out),
            Ok((false, err)) => write_script_error(&err, sha, out),
            Err(e) => crate::resp::write_error(out, format!("ERR Error running script {sha}, {e}").as_bytes()),
        }
        Outcome::Done
    }

    fn call(&self, f: Function, keys: &[&[u8]], args: &[&[u8]], caller: &mut Caller) -> mlua::Result<(bool, Value)> {
        let lua = &self.lua;
        for (name, items) in [("KEYS", keys), ("ARGV", args)] {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, lua.create_string(item)?)?;
            }
            self.globals.raw_set(name, t)?;
        }
        // A fresh `pending` only if the last script left values in it.
        if self.slot.raw_get::<Table>("pending")?.raw_len() > 0 {
            self.slot.raw_set("pending", lua.create_table()?)?;
        }
        self.reset.call::<()>(())?;
        let caller = std::cell::RefCell::new(caller);
        let result = lua.scope(|scope| {
            let slot = &self.slot;
            let call = scope.create_function(|lua, argv: MultiValue| {
                let mut caller = caller.try_borrow_mut().map_err(|_| mlua::Error::RecursiveMutCallback)?;
                match redis_call(lua, &mut caller, argv)? {
                    (v, true) => Err(raise(slot, v)),
                    (v, false) => Ok(v),
                }
            })?;
            let pcall = scope.create_function(|lua, argv: MultiValue| {
                let mut caller = caller.try_borrow_mut().map_err(|_| mlua::Error::RecursiveMutCallback)?;
                Ok(redis_call(lua, &mut caller, argv)?.0)
            })?;
            self.redis.raw_set("call", call)?;
            self.redis.raw_set("pcall", pcall)?;
            self.xpcall.call::<(bool, Value)>((f, self.handler.clone()))
        });
        self.redis.raw_set("call", Value::Nil)?;
        self.redis.raw_set("pcall", Value::Nil)?;
        result
    }
}

/// `redis.call` / `redis.pcall`: the reply as a Lua value, and whether it
/// is an error (which `redis.call` raises).
fn redis_call(lua: &Lua, caller: &mut Caller, args: MultiValue) -> mlua::Result<(Value, bool)> {
    if args.is_empty() {
        let t = error_table(lua, b"Please specify at least one argument for this redis lib call", false)?;
        return Ok((Value::Table(t), true));
    }
    let mut argv: Vec<Vec<u8>> = Vec::with_capacity(args.len());
    for v in &args {
        match v {
            Value::String(s) => argv.push(s.as_bytes().to_vec()),
            Value::Integer(i) => argv.push(fmt_g17(*i as f64).into_bytes()),
            Value::Number(n) => argv.push(fmt_g17(*n).into_bytes()),
            _ => {
                let t = error_table(lua, b"Lua redis lib command arguments must be strings or integers", false)?;
                return Ok((Value::Table(t), true));
            }
        }
    }
    let refs: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
    let mut out = Vec::new();
    let name = match caller.exec(&refs, &mut out) {
        Ok(name) => name,
        Err(msg) => return Ok((Value::Table(error_table(lua, msg.as_bytes(), true)?), true)),
    };
    let Some((mut reply, _)) = parse(&out) else {
        let t = error_table(lua, b"internal: unreadable reply", true)?;
        return Ok((Value::Table(t), true));
    };
    sort_unordered(name, &mut reply);
    let failed = matches!(reply, super::convert::Resp::Error(_));
    Ok((to_lua(lua, &reply)?, failed))
}

/// Redis's `__redis__err__handler`: an error table with the position of
/// the script code that raised it (the caller's, if that was a C
/// function). Frames of the glue do not count.
fn error_handler(lua: &Lua, tostring: &Function, err: Value) -> mlua::Result<Value> {
    let t = match err {
        Value::Table(t) => t,
        other => {
            let t = lua.create_table()?;
            let text: mlua::LuaString = tostring.call(other)?;
            let mut msg = b"ERR ".to_vec();
            msg.extend_from_slice(&text.as_bytes());
            t.set("err", lua.create_string(msg)?)?;
            t
        }
    };
    let mut frames = Vec::new();
    for level in 1..200 {
        let Some(frame) = lua.inspect_stack(level, |d| {
            let s = d.source();
            (s.what == "C", s.source.map(|x| x.into_owned()).unwrap_or_default(), d.current_line())
        }) else {
            break;
        };
        if frame.1 != INTERNAL {
            frames.push(frame);
            if frames.len() == 2 {
                break;
            }
        }
    }
    let frame = match frames.first() {
        Some((true, ..)) => frames.get(1),
        first => first,
    };
    if let Some((_, source, line)) = frame {
        t.set("source", source.as_str())?;
        t.set("line", line.map_or(-1, |l| l as i64))?;
    }
    Ok(Value::Table(t))
}

/// The reply for a script that raised `err` (after the handler), as
/// Redis's `luaCallFunction` writes it.
fn write_script_error(err: &Value, sha: &str, out: &mut Vec<u8>) {
    let Value::Table(t) = err else {
        let text = match err {
            Value::String(s) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
            _ => "execution failure".to_string(),
        };
        let text: String = text.chars().take(100).collect();
        return crate::resp::write_error(out, format!("ERR Error running script {sha}, {text}").as_bytes());
    };
    let field = |name: &str| -> Option<Vec<u8>> {
        match t.get::<Value>(name).ok()? {
            Value::String(s) => Some(s.as_bytes().to_vec()),
            Value::Integer(i) => Some(i.to_string().into_bytes()),
            Value::Number(n) => Some(super::convert::fmt_g(n, 14).into_bytes()),
            _ => None,
        }
    };
    let mut msg = field("err").unwrap_or_else(|| b"ERR unknown error".to_vec());
    if let (Some(line), Some(source)) = (field("line"), field("source")) {
        msg.extend_from_slice(format!(" script: {sha}, on ").as_bytes());
        msg.extend_from_slice(&source);
        msg.push(b':');
        msg.extend_from_slice(&line);
        msg.push(b'.');
    }
    crate::resp::write_error(out, &msg);
}
