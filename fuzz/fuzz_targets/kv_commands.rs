//! The whole client path of the KV service without sockets: arbitrary RESP
//! bytes are parsed, dispatched by a `Session` (MULTI/EXEC included), and
//! reads run on the store while writes are logged and applied, as the
//! primary's node does. Nothing panics, and a second replica that replays
//! the logged ops reaches the same digest and the same replies.
//!
//! Input: a RESP stream (multibulk or inline commands).
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy_core::StateMachine;
use understudy_fuzz::{ScriptedCtx, NOW_US};
use understudy_kv::{parse_command, Dispatch, Kv, Session};

fuzz_target!(|data: &[u8]| {
    let (mut primary, mut backup) = (Kv::new(), Kv::new());
    let mut session = Session::new(1);
    session.set_op_bytes_max(1 << 16);
    let (mut ctx, mut replay) = (ScriptedCtx::new(NOW_US), ScriptedCtx::new(NOW_US));
    let (mut args, mut op, mut out, mut shadow) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut off = 0;
    let mut now_ms = NOW_US / 1000;
    while let Ok(Some(n)) = parse_command(&data[off..], 1 << 16, &mut args) {
        let buf = &data[off..off + n];
        off += n;
        let argv: Vec<&[u8]> = args.iter().map(|r| &buf[r.clone()]).collect();
        out.clear();
        let mut dispatch = session.dispatch(&argv, &mut op, &mut out);
        if dispatch == Dispatch::Keyspace {
            dispatch = session.keyspace(&primary, now_ms, &argv, &mut op, &mut out);
        }
        match dispatch {
            Dispatch::Done | Dispatch::Status | Dispatch::Gated | Dispatch::Keyspace | Dispatch::PubSub => {}
            Dispatch::Close => break,
            Dispatch::Read => primary.read_argv(now_ms, &argv, &mut out),
            Dispatch::Write => {
                primary.apply(&mut ctx, &op, &mut out);
                shadow.clear();
                backup.apply(&mut replay, &op, &mut shadow);
                assert_eq!(out, shadow, "the backup's reply differs for {:?}", argv);
            }
        }
        now_ms += 1;
        if primary.expire_cycle_op(now_ms, 16, &mut op) {
            out.clear();
            primary.apply(&mut ctx, &op, &mut out);
            backup.apply(&mut replay, &op, &mut out);
        }
    }
    assert_eq!(primary.digest(), backup.digest(), "replicas diverged");
});
