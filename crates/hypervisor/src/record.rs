//! The records of a snapshot stream (`snapshot.rs`) and their encoding,
//! the directory tree of record 6 included: what travels from the primary
//! to a joiner, and into a log file's checkpoints. A leaf: `fs::copy`
//! produces these records, `fs::restore` and `machine` consume them,
//! `snapshot` streams them.
//!
//! # Stream
//!
//! ```text
//! stream := record*        (in snapshot chunks on the wire; in checkpoint records of a log file)
//! record := 1 module:bytes                       the module every replica runs (transformed)
//!         | 2 first_page:varint data:bytes       whole 64 KiB pages from first_page on; later ones win
//!         | 3 final                              the pause: the rest, then the stream ends
//!         | 4 key:varint size:varint             a file of the mapped directories, sized (created if new)
//!         | 5 key:varint offset:varint data:bytes   bytes of that file
//!         | 6 tree                               the mapped directories at the pause ([`Tree`])
//! final  := seq:varint memory_pages:varint nglobals:varint (tag:u8 bits:u128 LE)×n
//!           unwind_at:varint unwind_orig:bytes gate:bytes fuel_flag:u8 [fuel:varint]
//!           limit_hits:varint state_hash[32]
//! ```

use understudy_wire::codec::{put_bytes, put_varint, Reader};
use understudy_wire::WireError;

/// The unit of snapshot pages and of the state hash: a WebAssembly page.
pub const PAGE_BYTES: usize = 64 * 1024;

const REC_MODULE: u8 = 1;
pub(crate) const REC_PAGES: u8 = 2;
const REC_FINAL: u8 = 3;
const REC_FILE: u8 = 4;
const REC_FILE_DATA: u8 = 5;
const REC_TREE: u8 = 6;

/// What the guest thread hands over at the pause, besides pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalState {
    /// Seq of the last event recorded before the snapshot point.
    pub seq: u64,
    pub memory_pages: u32,
    /// Mutable globals before the unwind, as (tag, bits).
    pub globals: Vec<(u8, u128)>,
    /// Address of the unwind region, where Asyncify's data starts.
    pub unwind_at: u32,
    /// The region's bytes before the unwind wrote the stack there.
    pub unwind_orig: Vec<u8>,
    /// The gate's state (`Gate::encode_state`).
    pub gate: Vec<u8>,
    pub fuel_remaining: Option<u64>,
    pub limit_hits: u32,
    /// Hash of memory and globals at the snapshot point.
    pub state_hash: [u8; 32],
}

/// One record of a snapshot stream (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Module(Vec<u8>),
    Pages {
        first: u32,
        data: Vec<u8>,
    },
    Final(Box<FinalState>),
    /// A file of the mapped directories has `size` bytes.
    File {
        key: u64,
        size: u64,
    },
    FileData {
        key: u64,
        offset: u64,
        data: Vec<u8>,
    },
    Tree(Box<Tree>),
}

/// A snapshot stream that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad snapshot record: {0}")]
pub struct BadRecord(pub String);

impl Record {
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Module(m) => {
                out.push(REC_MODULE);
                put_bytes(out, m);
            }
            Record::Pages { first, data } => {
                debug_assert_eq!(data.len() % PAGE_BYTES, 0);
                encode_pages(out, *first, data);
            }
            Record::Final(f) => {
                out.push(REC_FINAL);
                put_varint(out, f.seq);
                put_varint(out, u64::from(f.memory_pages));
                put_varint(out, f.globals.len() as u64);
                for (tag, bits) in &f.globals {
                    out.push(*tag);
                    out.extend_from_slice(&bits.to_le_bytes());
                }
                put_varint(out, u64::from(f.unwind_at));
                put_bytes(out, &f.unwind_orig);
                put_bytes(out, &f.gate);
                out.push(u8::from(f.fuel_remaining.is_some()));
                if let Some(x) = f.fuel_remaining {
                    put_varint(out, x);
                }
                put_varint(out, u64::from(f.limit_hits));
                out.extend_from_slice(&f.state_hash);
            }
            Record::File { key, size } => {
                out.push(REC_FILE);
                put_varint(out, *key);
                put_varint(out, *size);
            }
            Record::FileData { key, offset, data } => {
                out.push(REC_FILE_DATA);
                put_varint(out, *key);
                put_varint(out, *offset);
                put_bytes(out, data);
            }
            Record::Tree(t) => {
                out.push(REC_TREE);
                t.encode(out);
            }
        }
    }

    /// Decodes one record from `r`.
    pub fn decode(r: &mut Reader<'_>) -> Result<Record, BadRecord> {
        let bad = |e: understudy_wire::WireError| BadRecord(e.to_string());
        Ok(match r.u8().map_err(bad)? {
            REC_MODULE => Record::Module(r.bytes().map_err(bad)?.to_vec()),
            REC_PAGES => {
                let first = u32::try_from(r.varint().map_err(bad)?).map_err(|_| BadRecord("page index".into()))?;
                let data = r.bytes().map_err(bad)?.to_vec();
                if data.len() % PAGE_BYTES != 0 {
                    return Err(BadRecord(format!("{} page bytes are not whole pages", data.len())));
                }
                Record::Pages { first, data }
            }
            REC_FINAL => {
                let seq = r.varint().map_err(bad)?;
                let memory_pages = u32::try_from(r.varint().map_err(bad)?).map_err(|_| BadRecord("memory size".into()))?;
                let n = r.varint().map_err(bad)?;
                if n > 1 << 20 {
                    return Err(BadRecord(format!("{n} globals")));
                }
                let mut globals = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let tag = r.u8().map_err(bad)?;
                    let bits = u128::from_le_bytes(r.take(16).map_err(bad)?.try_into().expect("16 bytes"));
                    globals.push((tag, bits));
                }
                let unwind_at = u32::try_from(r.varint().map_err(bad)?).map_err(|_| BadRecord("unwind address".into()))?;
                let unwind_orig = r.bytes().map_err(bad)?.to_vec();
                let gate = r.bytes().map_err(bad)?.to_vec();
                let fuel_remaining = match r.u8().map_err(bad)? {
                    0 => None,
                    1 => Some(r.varint().map_err(bad)?),
                    f => return Err(BadRecord(format!("fuel flag {f}"))),
                };
                let limit_hits = r.varint().map_err(bad)? as u32;
                let state_hash = r.take(32).map_err(bad)?.try_into().expect("32 bytes");
                Record::Final(Box::new(FinalState {
                    seq,
                    memory_pages,
                    globals,
                    unwind_at,
                    unwind_orig,
                    gate,
                    fuel_remaining,
                    limit_hits,
                    state_hash,
                }))
            }
            REC_FILE => Record::File { key: r.varint().map_err(bad)?, size: r.varint().map_err(bad)? },
            REC_FILE_DATA => {
                let (key, offset) = (r.varint().map_err(bad)?, r.varint().map_err(bad)?);
                Record::FileData { key, offset, data: r.bytes().map_err(bad)?.to_vec() }
            }
            REC_TREE => Record::Tree(Box::new(Tree::decode(r).map_err(bad)?)),
            k => return Err(BadRecord(format!("record kind {k}"))),
        })
    }
}

pub(crate) fn encode_pages(out: &mut Vec<u8>, first: u32, data: &[u8]) {
    out.push(REC_PAGES);
    put_varint(out, u64::from(first));
    put_bytes(out, data);
}

/// What a tree entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    /// A regular file: its content is the file sent under `key`.
    File {
        key: u64,
    },
    Symlink(Vec<u8>),
}

/// An entry of a mapped directory, by its path below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeNode {
    pub path: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    pub kind: NodeKind,
}

/// What an open object of the guest is on the joiner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjWhat {
    /// A mapped directory (already open on the joiner).
    Preopen,
    /// An open file: the file sent under `key`, opened with these
    /// `open(2)` flags, at this offset.
    File { key: u64, flags: u32, offset: u64 },
    /// A directory below its mapped directory; `None`: one removed while open.
    Dir { path: Option<Vec<u8>> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjState {
    pub id: u64,
    pub root: u32,
    /// The guest's path of it (for messages).
    pub guest_path: String,
    pub what: ObjWhat,
    /// A directory listing the guest is reading (`fd_readdir` cookies).
    pub listing: Option<Vec<(Vec<u8>, u64, u8)>>,
}

/// The mapped directories at the snapshot point (record 6 of a snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// Each mapped directory: its usage under the size limit, its entries
    /// (parents before children).
    pub roots: Vec<(u64, Vec<TreeNode>)>,
    pub objects: Vec<ObjState>,
    pub next_id: u64,
    pub hash: [u8; 32],
}

/// Node kinds, in the encoding and in the tree hash (`fs::copy::TreeHasher`).
pub(crate) const NODE_DIR: u8 = 1;
pub(crate) const NODE_FILE: u8 = 2;
pub(crate) const NODE_SYMLINK: u8 = 3;
const OBJ_PREOPEN: u8 = 0;
const OBJ_FILE: u8 = 1;
const OBJ_DIR: u8 = 2;
const OBJ_DIR_GONE: u8 = 3;
/// Sanity bound on counts in a decoded tree.
const COUNT_MAX: u64 = 1 << 28;

impl Tree {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_varint(out, self.roots.len() as u64);
        for (usage, nodes) in &self.roots {
            put_varint(out, *usage);
            put_varint(out, nodes.len() as u64);
            for n in nodes {
                put_bytes(out, &n.path);
                put_varint(out, u64::from(n.mode));
                match &n.kind {
                    NodeKind::Dir => out.push(NODE_DIR),
                    NodeKind::File { key } => {
                        out.push(NODE_FILE);
                        put_varint(out, *key);
                    }
                    NodeKind::Symlink(t) => {
                        out.push(NODE_SYMLINK);
                        put_bytes(out, t);
                    }
                }
            }
        }
        put_varint(out, self.next_id);
        put_varint(out, self.objects.len() as u64);
        for o in &self.objects {
            put_varint(out, o.id);
            put_varint(out, u64::from(o.root));
            put_bytes(out, o.guest_path.as_bytes());
            match &o.what {
                ObjWhat::Preopen => out.push(OBJ_PREOPEN),
                ObjWhat::File { key, flags, offset } => {
                    out.push(OBJ_FILE);
                    put_varint(out, *key);
                    put_varint(out, u64::from(*flags));
                    put_varint(out, *offset);
                }
                ObjWhat::Dir { path: Some(p) } => {
                    out.push(OBJ_DIR);
                    put_bytes(out, p);
                }
                ObjWhat::Dir { path: None } => out.push(OBJ_DIR_GONE),
            }
            match &o.listing {
                None => out.push(0),
                Some(l) => {
                    out.push(1);
                    put_varint(out, l.len() as u64);
                    for (name, ino, ty) in l {
                        put_bytes(out, name);
                        put_varint(out, *ino);
                        out.push(*ty);
                    }
                }
            }
        }
        out.extend_from_slice(&self.hash);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Tree, WireError> {
        let bad = |detail: String| WireError::Malformed { what: "snapshot tree", detail };
        let count = |r: &mut Reader<'_>| -> Result<u64, WireError> {
            let n = r.varint()?;
            if n > COUNT_MAX {
                return Err(bad(format!("count {n}")));
            }
            Ok(n)
        };
        let u32_of = |v: u64, what: &str| u32::try_from(v).map_err(|_| bad(format!("{what} {v}")));
        let nroots = count(r)?;
        let mut roots = Vec::new();
        for _ in 0..nroots {
            let usage = r.varint()?;
            let n = count(r)?;
            let mut nodes = Vec::new();
            for _ in 0..n {
                let path = r.bytes()?.to_vec();
                let mode = u32_of(r.varint()?, "mode")?;
                let kind = match r.u8()? {
                    NODE_DIR => NodeKind::Dir,
                    NODE_FILE => NodeKind::File { key: r.varint()? },
                    NODE_SYMLINK => NodeKind::Symlink(r.bytes()?.to_vec()),
                    k => return Err(bad(format!("node kind {k}"))),
                };
                nodes.push(TreeNode { path, mode, kind });
            }
            roots.push((usage, nodes));
        }
        let next_id = r.varint()?;
        let nobj = count(r)?;
        let mut objects = Vec::new();
        for _ in 0..nobj {
            let id = r.varint()?;
            let root = u32_of(r.varint()?, "root")?;
            let guest_path = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| bad("a guest path is not UTF-8".into()))?;
            let what = match r.u8()? {
                OBJ_PREOPEN => ObjWhat::Preopen,
                OBJ_FILE => {
                    let key = r.varint()?;
                    let flags = u32_of(r.varint()?, "flags")?;
                    ObjWhat::File { key, flags, offset: r.varint()? }
                }
                OBJ_DIR => ObjWhat::Dir { path: Some(r.bytes()?.to_vec()) },
                OBJ_DIR_GONE => ObjWhat::Dir { path: None },
                k => return Err(bad(format!("object kind {k}"))),
            };
            let listing = match r.u8()? {
                0 => None,
                1 => {
                    let n = count(r)?;
                    let mut l = Vec::new();
                    for _ in 0..n {
                        let name = r.bytes()?.to_vec();
                        let ino = r.varint()?;
                        l.push((name, ino, r.u8()?));
                    }
                    Some(l)
                }
                f => return Err(bad(format!("listing flag {f}"))),
            };
            objects.push(ObjState { id, root, guest_path, what, listing });
        }
        let hash = r.take(32)?.try_into().expect("32 bytes");
        Ok(Tree { roots, objects, next_id, hash })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_survives_encoding() {
        let t = Tree {
            roots: vec![(
                12,
                vec![
                    TreeNode { path: b"d".to_vec(), mode: 0o755, kind: NodeKind::Dir },
                    TreeNode { path: b"d/f".to_vec(), mode: 0o644, kind: NodeKind::File { key: 3 } },
                    TreeNode { path: b"l".to_vec(), mode: 0o777, kind: NodeKind::Symlink(b"d/f".to_vec()) },
                ],
            )],
            objects: vec![
                ObjState { id: 0, root: 0, guest_path: "/data".into(), what: ObjWhat::Preopen, listing: None },
                ObjState {
                    id: 4,
                    root: 0,
                    guest_path: "/data/d/f".into(),
                    what: ObjWhat::File { key: 3, flags: 1026, offset: 77 },
                    listing: None,
                },
                ObjState {
                    id: 5,
                    root: 0,
                    guest_path: "/data/x".into(),
                    what: ObjWhat::Dir { path: None },
                    listing: Some(vec![(b".".to_vec(), 9, 3)]),
                },
            ],
            next_id: 6,
            hash: [7; 32],
        };
        let mut b = Vec::new();
        t.encode(&mut b);
        let mut r = Reader::new(&b, "t");
        assert_eq!(Tree::decode(&mut r).unwrap(), t);
        assert!(r.is_empty());
        assert!(Tree::decode(&mut Reader::new(&b[..b.len() - 1], "t")).is_err());
    }
}
