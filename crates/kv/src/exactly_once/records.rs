//! The session table in a snapshot, and its digest.
//!
//! ```text
//! session = 0x10 id:bytes last_active_ms:u64 LE highest:varint hits:varint count:varint kept*count
//! kept    = seq:varint 0x00 reply:bytes           a kept reply
//!         | seq:varint 0x01 size:varint           a reply too large to keep: its size
//! ```
//!
//! Session records follow the keyspace's records and precede the end
//! record, whose digest covers both (`Kv::digest`).

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};

use foldhash::fast::FixedState;
use understudy_wire::codec::{put_bytes, put_varint, Reader};

use super::{Kept, State};
use crate::op::read_count;

/// Record kind of a session (the keyspace's kinds use the low 6 bits 1–4,
/// flags 0x40/0x80, and 0x0F for the end).
pub const RECORD_SESSION: u8 = 0x10;

const KEPT_REPLY: u8 = 0;
const KEPT_TOO_LARGE: u8 = 1;

const DIGEST: FixedState = FixedState::with_seed(0x5345_5353_494f_4e53);

/// Appends the record of one session.
pub fn write_session(buf: &mut Vec<u8>, id: &[u8], s: &State) {
    buf.push(RECORD_SESSION);
    put_bytes(buf, id);
    buf.extend_from_slice(&s.last_active_ms.to_le_bytes());
    put_varint(buf, s.highest);
    put_varint(buf, s.hits);
    put_varint(buf, s.replies.len() as u64);
    for (seq, kept) in &s.replies {
        put_varint(buf, *seq);
        match kept {
            Kept::Reply(r) => {
                buf.push(KEPT_REPLY);
                put_bytes(buf, r);
            }
            Kept::TooLarge(n) => {
                buf.push(KEPT_TOO_LARGE);
                put_varint(buf, *n);
            }
        }
    }
}

/// Reads the rest of a session record (after its kind byte).
pub fn read_session<'a>(r: &mut Reader<'a>) -> Result<(&'a [u8], State), String> {
    let w = |e: understudy_wire::WireError| e.to_string();
    let id = r.bytes().map_err(w)?;
    let last_active_ms = r.u64().map_err(w)?;
    let highest = r.varint().map_err(w)?;
    let hits = r.varint().map_err(w)?;
    let n = read_count(r)?;
    let mut replies = VecDeque::with_capacity(n.min(64));
    for _ in 0..n {
        let seq = r.varint().map_err(w)?;
        let kept = match r.u8().map_err(w)? {
            KEPT_REPLY => Kept::Reply(r.bytes().map_err(w)?.into()),
            KEPT_TOO_LARGE => Kept::TooLarge(r.varint().map_err(w)?),
            other => return Err(format!("unknown kept-reply kind {other}")),
        };
        replies.push_back((seq, kept));
    }
    Ok((id, State { last_active_ms, highest, hits, replies }))
}

/// The digest of one session: everything a retry's answer depends on.
pub fn session_digest(id: &[u8], s: &State) -> u64 {
    let mut h = DIGEST.build_hasher();
    part(&mut h, id);
    h.write_u64(s.last_active_ms);
    h.write_u64(s.highest);
    h.write_u64(s.hits);
    h.write_u64(s.replies.len() as u64);
    for (seq, kept) in &s.replies {
        h.write_u64(*seq);
        match kept {
            Kept::Reply(r) => {
                h.write_u8(KEPT_REPLY);
                part(&mut h, r);
            }
            Kept::TooLarge(n) => {
                h.write_u8(KEPT_TOO_LARGE);
                h.write_u64(*n);
            }
        }
    }
    h.finish()
}

fn part(h: &mut impl Hasher, b: &[u8]) {
    h.write_u64(b.len() as u64);
    h.write(b);
}
