//! `poll_oneoff`: waits for fd readiness and clocks. What fired (which
//! subscriptions, with what byte counts and hang-up flags) is recorded; the
//! rest of each output event (userdata, type) is copied from the guest's own
//! subscriptions, which the argument digest covers.

use wasmtime::Linker;

use super::{begin, commit, errno, pure, range, split, unwindable, write_bytes, write_u32, Cx, Dig, Host, Ret, MODULE};
use crate::event::Func;
use crate::fdtable::FdKind;
use crate::world::{SubKind, SubTarget};

const SUB_BYTES: u64 = 48;
const EVENT_BYTES: usize = 32;

pub(super) fn link(l: &mut Linker<Host>) -> wasmtime::Result<()> {
    l.func_wrap(MODULE, "poll_oneoff", |mut c: Cx<'_>, subs: i32, events: i32, n: i32, nevents: i32| {
        unwindable(&mut c, |c| poll_oneoff(c, subs, events, n, nevents))
    })?;
    Ok(())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn parse(sub: &[u8]) -> Result<SubKind, u16> {
    Ok(match sub[8] {
        0 => SubKind::Clock { id: u32_at(sub, 16), timeout: u64_at(sub, 24), abstime: sub[40] & 1 != 0 },
        1 => SubKind::Read(u32_at(sub, 16)),
        2 => SubKind::Write(u32_at(sub, 16)),
        _ => return Err(errno::INVAL),
    })
}

fn target(h: &Host, kind: &SubKind) -> SubTarget {
    let fd = match kind {
        SubKind::Clock { .. } => return SubTarget::Bad,
        SubKind::Read(fd) | SubKind::Write(fd) => *fd,
    };
    match h.gate.fds.get(fd).map(|f| f.kind) {
        None => SubTarget::Bad,
        Some(FdKind::Stdin) => SubTarget::Stdin,
        Some(FdKind::Stdout | FdKind::Stderr) => SubTarget::Stdout,
        Some(FdKind::Listener) => SubTarget::Listener,
        Some(FdKind::Conn { id, read_shut, write_shut, reset }) => SubTarget::Conn { id, read_shut, write_shut, reset },
        // Regular files are always ready (as POSIX poll says).
        Some(FdKind::File { .. }) => SubTarget::File,
        Some(FdKind::Dir { .. }) => SubTarget::Bad,
    }
}

fn poll_oneoff(c: &mut Cx<'_>, subs_ptr: i32, events_ptr: i32, n: i32, nevents_ptr: i32) -> Ret {
    let args = [subs_ptr as u32 as u64, events_ptr as u32 as u64, n as u32 as u64, nevents_ptr as u32 as u64];
    let n = n as u32 as u64;
    let (mem, h) = split(c);
    let checked = if n == 0 {
        Err(errno::INVAL)
    } else {
        range(mem, subs_ptr, n * SUB_BYTES).and_then(|r| range(mem, events_ptr, n * EVENT_BYTES as u64).map(|_| r))
    };
    let subs_range = match checked {
        Ok(r) => r,
        Err(e) => return pure(c, Func::PollOneoff, &args, e),
    };
    let mut subs = std::mem::take(&mut h.subs);
    subs.clear();
    for sub in mem[subs_range.clone()].chunks_exact(SUB_BYTES as usize) {
        match parse(sub) {
            Ok(k) => subs.push((k, target(h, &k))),
            Err(e) => {
                h.subs = subs;
                return pure(c, Func::PollOneoff, &args, e);
            }
        }
    }
    let d = Dig::new(Func::PollOneoff).u64(args[1]).u64(args[3]).bytes(&mem[subs_range.clone()]);
    h.subs = subs;
    if begin(c, Func::PollOneoff, d.0, &args)? {
        let h = c.data_mut();
        let mut polls = std::mem::take(&mut h.gate.out.polls);
        let r = h.gate.live().poll(&h.subs, &mut polls);
        h.gate.out.polls = polls;
        if let Err(s) = r {
            return Err(h.halt(s));
        }
    }
    let (mem, h) = split(c);
    let e =
        if h.gate.out.errno != 0 { h.gate.out.errno } else { write_events(mem, h, subs_range.start, events_ptr, nevents_ptr) };
    commit(c, e)
}

/// Writes the output events of the fired subscriptions.
fn write_events(mem: &mut [u8], h: &Host, subs_at: usize, events_ptr: i32, nevents_ptr: i32) -> u16 {
    let polls = &h.gate.out.polls;
    if polls.len() > h.subs.len() {
        return errno::IO;
    }
    for (i, p) in polls.iter().enumerate() {
        let Some(&(kind, _)) = h.subs.get(p.index as usize) else { return errno::IO };
        let sub_at = subs_at + p.index as usize * SUB_BYTES as usize;
        let mut ev = [0u8; EVENT_BYTES];
        ev[..8].copy_from_slice(&mem[sub_at..sub_at + 8]);
        ev[8..10].copy_from_slice(&p.errno.to_le_bytes());
        ev[10] = match kind {
            SubKind::Clock { .. } => 0,
            SubKind::Read(_) => 1,
            SubKind::Write(_) => 2,
        };
        if !matches!(kind, SubKind::Clock { .. }) {
            ev[16..24].copy_from_slice(&p.nbytes.to_le_bytes());
            ev[24..26].copy_from_slice(&u16::from(p.flags).to_le_bytes());
        }
        if let Err(e) = write_bytes(mem, events_ptr.wrapping_add((i * EVENT_BYTES) as i32), &ev) {
            return e;
        }
    }
    write_u32(mem, nevents_ptr, polls.len() as u32).err().unwrap_or(0)
}
