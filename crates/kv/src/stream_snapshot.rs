//! A stream's snapshot records (`crate::snapshot`, type code 6).
//!
//! ```text
//! first  = meta entries                       (entries may be empty)
//! cont   = entries                            (at least one entry)
//! meta   = last:id first:id max_deleted:id entries_added:u64
//!          count:varint node*count count:varint group*count
//! node   = master:id count:varint live:varint last:id bytes:varint
//!          count:varint field:bytes*count      (the master entry's field names)
//! group  = name:bytes last:id entries_read:u64 (i64 bits)
//!          count:varint (id consumer:bytes delivery_time:u64 delivery_count:u64)*count
//!          count:varint (name:bytes seen_time:u64)*count
//! entries= count:varint (id count:varint field:bytes*count)*count
//! id     = ms:u64 LE seq:u64 LE
//! ```
//!
//! A consumer's own pending list is rebuilt from the group's.

use understudy_wire::codec::{put_bytes, put_varint, Reader};

use crate::entry::Bytes;
use crate::op::read_count;
use crate::stream::{Consumer, Group, Nack, Node, StreamId, StreamVal};

fn put_id(buf: &mut Vec<u8>, id: StreamId) {
    buf.extend_from_slice(&id.ms.to_le_bytes());
    buf.extend_from_slice(&id.seq.to_le_bytes());
}

fn w(e: understudy_wire::WireError) -> String {
    e.to_string()
}

fn read_id(r: &mut Reader) -> Result<StreamId, String> {
    Ok(StreamId::new(r.u64().map_err(w)?, r.u64().map_err(w)?))
}

/// Everything but the entries.
pub fn write_meta(buf: &mut Vec<u8>, s: &StreamVal) {
    for id in [s.last_id, s.first_id, s.max_deleted] {
        put_id(buf, id);
    }
    buf.extend_from_slice(&s.entries_added.to_le_bytes());
    put_varint(buf, s.nodes.len() as u64);
    for (k, n) in &s.nodes {
        put_id(buf, *k);
        put_varint(buf, u64::from(n.count));
        put_varint(buf, u64::from(n.live));
        put_id(buf, n.last);
        put_varint(buf, n.bytes);
        put_varint(buf, n.master.len() as u64);
        n.master.iter().for_each(|f| put_bytes(buf, f));
    }
    put_varint(buf, s.groups.len() as u64);
    for (name, g) in &s.groups {
        put_bytes(buf, name);
        put_id(buf, g.last_id);
        buf.extend_from_slice(&g.entries_read.to_le_bytes());
        put_varint(buf, g.pel.len() as u64);
        for (id, nack) in &g.pel {
            put_id(buf, *id);
            put_bytes(buf, &nack.consumer);
            buf.extend_from_slice(&nack.delivery_time.to_le_bytes());
            buf.extend_from_slice(&nack.delivery_count.to_le_bytes());
        }
        put_varint(buf, g.consumers.len() as u64);
        for (name, c) in &g.consumers {
            put_bytes(buf, name);
            buf.extend_from_slice(&c.seen_time.to_le_bytes());
        }
    }
}

pub fn read_meta(r: &mut Reader) -> Result<StreamVal, String> {
    let mut s = StreamVal { last_id: read_id(r)?, first_id: read_id(r)?, max_deleted: read_id(r)?, ..Default::default() };
    s.entries_added = r.u64().map_err(w)?;
    for _ in 0..read_count(r)? {
        let key = read_id(r)?;
        let count = u32::try_from(r.varint().map_err(w)?).map_err(|e| e.to_string())?;
        let live = u32::try_from(r.varint().map_err(w)?).map_err(|e| e.to_string())?;
        let (last, bytes) = (read_id(r)?, r.varint().map_err(w)?);
        let n = read_count(r)?;
        let master: Box<[Bytes]> = (0..n).map(|_| r.bytes().map(Bytes::from)).collect::<Result<_, _>>().map_err(w)?;
        let node = Node { count, live, last, bytes, master };
        s.nodes.insert(key, node);
    }
    for _ in 0..read_count(r)? {
        let name: Bytes = r.bytes().map_err(w)?.into();
        let mut g = Group::new(read_id(r)?, r.u64().map_err(w)? as i64);
        let mut owners = Vec::new();
        for _ in 0..read_count(r)? {
            let id = read_id(r)?;
            let consumer: Bytes = r.bytes().map_err(w)?.into();
            let nack =
                Nack { consumer: consumer.clone(), delivery_time: r.u64().map_err(w)?, delivery_count: r.u64().map_err(w)? };
            owners.push((consumer, id));
            g.pel.insert(id, nack);
        }
        for _ in 0..read_count(r)? {
            let cname: Bytes = r.bytes().map_err(w)?.into();
            g.consumers.insert(cname, Consumer { seen_time: r.u64().map_err(w)?, ..Default::default() });
        }
        for (consumer, id) in owners {
            g.consumers.get_mut(&consumer).ok_or("pending entry of an unknown consumer")?.pel.insert(id);
        }
        if s.groups.insert(name, g).is_some() {
            return Err("duplicate consumer group".into());
        }
    }
    Ok(s)
}

/// Serialized entries from `from` on, up to about `part_bytes`; returns
/// the count written and where to continue.
pub fn write_entries(out: &mut Vec<u8>, s: &StreamVal, from: Option<StreamId>, part_bytes: usize) -> (u64, Option<StreamId>) {
    let mut count = 0;
    let mut iter = match from {
        Some(id) => s.entries.range(id..),
        None => s.entries.range(..),
    };
    for (id, fields) in iter.by_ref() {
        if out.len() >= part_bytes {
            return (count, Some(*id));
        }
        put_id(out, *id);
        put_varint(out, fields.len() as u64);
        fields.iter().for_each(|f| put_bytes(out, f));
        count += 1;
    }
    (count, None)
}

/// Reads `count:varint` entries into `s`, each after the last.
pub fn read_entries(r: &mut Reader, s: &mut StreamVal) -> Result<usize, String> {
    let count = read_count(r)?;
    for _ in 0..count {
        let id = read_id(r)?;
        if s.entries.keys().next_back().is_some_and(|last| *last >= id) || id > s.last_id {
            return Err(format!("stream entry {} out of order", id.text()));
        }
        let n = read_count(r)?;
        let fields: Vec<Bytes> = (0..n).map(|_| r.bytes().map(Bytes::from)).collect::<Result<_, _>>().map_err(w)?;
        s.entries.insert(id, fields.into());
    }
    Ok(count)
}
