//! XREAD and XREADGROUP with BLOCK: whether the node must wait.
//!
//! As for the blocking pops (`blocking`), the waiting is the node's: it
//! holds the command, unlogged, until a write names one of its streams or
//! its timeout passes. XREAD's `$` means "after the last entry when the
//! command arrived", so the node pins it to that entry's ID at the first
//! attempt (`resolved`); later attempts use the pinned argv, and no entry
//! added while it waits is missed.

use crate::cmd::streams::parse_id;
use crate::entry::AggVal;
use crate::store::{FixedClock, Store};
use crate::stream::StreamId;

/// What a blocking stream read waits for.
pub struct StreamWait<'a> {
    pub keys: Vec<&'a [u8]>,
    /// BLOCK's milliseconds (0: for ever).
    pub timeout_ms: u64,
    /// It may run now: an entry is there, or its arguments are wrong.
    pub ready: bool,
    /// `argv` with XREAD's `$` pinned to each stream's last ID.
    pub resolved: Vec<Vec<u8>>,
}

/// `None` unless `argv` is XREAD or XREADGROUP with a valid BLOCK.
pub fn stream_wait<'a>(store: &Store, now_ms: u64, argv: &[&'a [u8]]) -> Option<StreamWait<'a>> {
    let group_cmd = argv[0].eq_ignore_ascii_case(b"xreadgroup");
    if !group_cmd && !argv[0].eq_ignore_ascii_case(b"xread") {
        return None;
    }
    let (mut timeout, mut group, mut streams_at) = (None, None, None);
    let mut i = 1;
    while i < argv.len() {
        let o = argv[i];
        let more = argv.len() - i - 1;
        if o.eq_ignore_ascii_case(b"block") && more > 0 {
            timeout = Some(crate::num::parse_i64(argv[i + 1]));
            i += 2;
        } else if o.eq_ignore_ascii_case(b"count") && more > 0 {
            i += 2;
        } else if o.eq_ignore_ascii_case(b"group") && more > 1 {
            group = Some(argv[i + 1]);
            i += 3;
        } else if o.eq_ignore_ascii_case(b"streams") && more > 0 {
            streams_at = Some(i + 1);
            break;
        } else {
            i += 1;
        }
    }
    let timeout = timeout?;
    let resolved: Vec<Vec<u8>> = argv.iter().map(|a| a.to_vec()).collect();
    let mut wait = StreamWait { keys: Vec::new(), timeout_ms: 0, ready: true, resolved };
    let (Some(ms), Some(at)) = (timeout, streams_at) else { return Some(wait) };
    let n = argv.len() - at;
    if ms < 0 || n == 0 || !n.is_multiple_of(2) || group_cmd != group.is_some() {
        return Some(wait);
    }
    wait.timeout_ms = ms as u64;
    let (keys, ids) = argv[at..].split_at(n / 2);
    let mut clock = FixedClock(now_ms);
    let mut any = false;
    for (j, (key, id)) in keys.iter().zip(ids).enumerate() {
        let stream = match store.get(key, &mut clock).map(|e| e.agg()) {
            None => None,
            Some(Some(AggVal::Stream(s))) => Some(s),
            Some(_) => return Some(wait), // WRONGTYPE: answered at once
        };
        let last = stream.map_or(StreamId::MIN, |s| s.last_valid_id());
        let after = match (group, *id) {
            (None, b"$") => {
                let pinned = stream.map_or(StreamId::MIN, |s| s.last_id);
                wait.resolved[at + n / 2 + j] = pinned.text().into_bytes();
                pinned
            }
            (None, id) => match parse_id(id, 0, false, false) {
                Some((id, _)) => id,
                None => return Some(wait),
            },
            (Some(g), b">") => match stream.and_then(|s| s.groups.get(g)) {
                Some(grp) => grp.last_id,
                None => return Some(wait), // NOGROUP: answered at once
            },
            // History of the pending list: answered at once, as in Redis.
            (Some(_), _) => return Some(wait),
        };
        any |= stream.is_some_and(|s| !s.is_empty()) && last > after;
    }
    wait.keys = keys.to_vec();
    wait.ready = any;
    Some(wait)
}
