//! The mapped directories in a live snapshot (DESIGN §3: the joiner gets
//! its own copy of the disk, consistent with the memory it resumes).
//!
//! # The cut
//!
//! 1. *Pre-copy*, on the snapshot's thread while the guest runs: round 1
//!    walks every mapped directory and sends every regular file; later
//!    rounds send what the guest changed meanwhile (`track.rs`), until
//!    little is left.
//! 2. *Pause*, on the guest's thread at the snapshot point: the whole tree
//!    is walked once more (names, directories, symlinks, modes), every
//!    file not sent yet or changed since is sent, and the [`Tree`] record
//!    says what goes where — including the files and directories the guest
//!    holds open, with their flags and offsets, even unlinked ones.
//!
//! Files travel as *keys*: a file's content is sent once under its key,
//! whatever its names (hard links stay links), and renames cost nothing.
//!
//! # Verification
//!
//! The [`Tree`] carries a hash of the tree at the cut: every path in walk
//! order (sorted by name), its kind, a file's size and the crc32c of each
//! of its 64 KiB blocks as sent, a symlink's target. The joiner hashes the
//! tree it built from its own files and refuses a difference.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::host::{self, Entry};
use super::track::{DiskTrack, TrackState, BLOCK};
use super::Fs;
use crate::record::{NodeKind, ObjState, ObjWhat, Record, Tree, TreeNode, NODE_DIR, NODE_FILE, NODE_SYMLINK};

/// An entry found by [`walk`].
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub path: Vec<u8>,
    pub ino: (u64, u64),
    pub mode: u32,
    pub size: u64,
    pub kind: Walked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Walked {
    Dir,
    File,
    Symlink(Vec<u8>),
}

/// Every directory, regular file and symlink beneath `root`, parents
/// before children, siblings by name; symlinks are not followed. Other
/// kinds (sockets, fifos, devices) are not part of a guest's disk and are
/// counted in `skipped`. `strict`: an entry that vanishes mid-walk is an
/// error (the guest is paused) rather than skipped (it runs).
pub(crate) fn walk(root: RawFd, strict: bool, out: &mut Vec<Node>, skipped: &mut u64) -> Result<(), String> {
    walk_in(root, &[], strict, out, skipped, 0)
}

const DEPTH_MAX: usize = 4096;

fn walk_in(dir: RawFd, prefix: &[u8], strict: bool, out: &mut Vec<Node>, skipped: &mut u64, depth: usize) -> Result<(), String> {
    if depth > DEPTH_MAX {
        return Err(format!("directories nested deeper than {DEPTH_MAX}"));
    }
    let shown = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
    let entries = match host::list_dir(dir) {
        Ok(e) => e,
        Err(e) if !strict => {
            log::debug!("walking {}: errno {e} (skipped: the guest changes it)", shown(prefix));
            return Ok(());
        }
        Err(e) => return Err(format!("listing {:?}: errno {e}", shown(prefix))),
    };
    for Entry { name, .. } in entries {
        if name == b"." || name == b".." {
            continue;
        }
        let path = if prefix.is_empty() { name.clone() } else { [prefix, b"/", &name].concat() };
        let cname = CString::new(name).map_err(|_| "a name with a NUL byte".to_string())?;
        let st = match host::stat(dir, &cname, false) {
            Ok(st) => st,
            Err(_) if !strict => continue,
            Err(e) => return Err(format!("stat {:?}: errno {e}", shown(&path))),
        };
        let (ino, mode, size) = ((st.st_dev, st.st_ino), st.st_mode & 0o7777, st.st_size as u64);
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                out.push(Node { path: path.clone(), ino, mode, size: 0, kind: Walked::Dir });
                // SAFETY: openat of one name (no slash) relative to a live
                // directory descriptor, not following a symlink.
                let fd = unsafe {
                    libc::openat(dir, cname.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
                };
                if fd < 0 {
                    if !strict {
                        continue;
                    }
                    return Err(format!("open {:?}: {}", shown(&path), std::io::Error::last_os_error()));
                }
                // SAFETY: a fresh descriptor nothing else owns.
                let sub = unsafe { OwnedFd::from_raw_fd(fd) };
                walk_in(sub.as_raw_fd(), &path, strict, out, skipped, depth + 1)?;
            }
            libc::S_IFREG => out.push(Node { path, ino, mode, size, kind: Walked::File }),
            libc::S_IFLNK => {
                let mut b = vec![0u8; libc::PATH_MAX as usize];
                // SAFETY: readlinkat writes at most `b.len()` bytes into `b`.
                let k = unsafe { libc::readlinkat(dir, cname.as_ptr(), b.as_mut_ptr().cast(), b.len()) };
                if k < 0 {
                    if !strict {
                        continue;
                    }
                    return Err(format!("readlink {:?}: {}", shown(&path), std::io::Error::last_os_error()));
                }
                b.truncate(k as usize);
                out.push(Node { path, ino, mode, size: 0, kind: Walked::Symlink(b) });
            }
            _ => *skipped += 1,
        }
    }
    Ok(())
}

/// Bytes of the distinct regular files beneath `root` (its usage).
pub(crate) fn usage(root: RawFd) -> Result<u64, String> {
    let (mut nodes, mut skipped) = (Vec::new(), 0);
    walk(root, true, &mut nodes, &mut skipped)?;
    let mut seen = HashSet::new();
    Ok(nodes.iter().filter(|n| n.kind == Walked::File && seen.insert(n.ino)).map(|n| n.size).sum())
}

/// The tree hash (see the module docs), fed in walk order.
pub(crate) struct TreeHasher(Sha256);

impl TreeHasher {
    pub fn new() -> TreeHasher {
        TreeHasher(Sha256::new())
    }

    pub fn root(&mut self, index: usize) {
        self.0.update([0]);
        self.0.update((index as u64).to_le_bytes());
    }

    fn path(&mut self, kind: u8, path: &[u8]) {
        self.0.update([kind]);
        self.0.update((path.len() as u64).to_le_bytes());
        self.0.update(path);
    }

    pub fn dir(&mut self, path: &[u8]) {
        self.path(NODE_DIR, path);
    }

    pub fn file(&mut self, path: &[u8], size: u64, crcs: &[u32]) {
        self.path(NODE_FILE, path);
        self.0.update(size.to_le_bytes());
        for c in crcs {
            self.0.update(c.to_le_bytes());
        }
    }

    pub fn symlink(&mut self, path: &[u8], target: &[u8]) {
        self.path(NODE_SYMLINK, path);
        self.0.update((target.len() as u64).to_le_bytes());
        self.0.update(target);
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// One file being sent: its size record, then its blocks in data records.
pub(crate) struct FileSend {
    fd: OwnedFd,
    ino: (u64, u64),
    key: u64,
    size: u64,
    /// Blocks still to send, ascending.
    blocks: VecDeque<u64>,
}

impl FileSend {
    /// Starts sending the file open at `fd` (of `ino`, now `size` bytes):
    /// all of it (`changed` None, or a file not sent before), or the
    /// blocks changed since it was sent, and everything from where its
    /// size changed. Returns the size record first.
    pub fn start(
        state: &mut TrackState,
        fd: OwnedFd,
        ino: (u64, u64),
        size: u64,
        changed: Option<&BTreeSet<u64>>,
    ) -> (Record, FileSend) {
        let key = state.key(ino);
        let sent = state.sent.get_mut(&ino).expect("keyed");
        let nblocks = size.div_ceil(BLOCK);
        let blocks: VecDeque<u64> = match changed {
            Some(c) if sent.size != u64::MAX => {
                let mut b: BTreeSet<u64> = c.iter().copied().filter(|&b| b < nblocks).collect();
                if sent.size != size {
                    // Blocks a size change cut or zero-filled.
                    b.extend(sent.size.min(size) / BLOCK..nblocks);
                }
                b.into_iter().collect()
            }
            _ => (0..nblocks).collect(),
        };
        sent.size = size;
        sent.crcs.resize(nblocks as usize, 0);
        (Record::File { key, size }, FileSend { fd, ino, key, size, blocks })
    }

    /// The next data record, of at most about `max_bytes` (contiguous
    /// blocks); None when the file is sent.
    pub fn next(&mut self, state: &mut TrackState, max_bytes: usize) -> Result<Option<Record>, String> {
        Ok(self.read(max_bytes)?.map(|(offset, data)| self.record(state, offset, data)))
    }

    /// The next run of blocks, read (without the tracking state, whose
    /// lock the guest's marks take).
    fn read(&mut self, max_bytes: usize) -> Result<Option<(u64, Vec<u8>)>, String> {
        let Some(&first) = self.blocks.front() else { return Ok(None) };
        let mut n = 0u64;
        while self.blocks.front() == Some(&(first + n)) && (n == 0 || ((n + 1) * BLOCK) as usize <= max_bytes) {
            self.blocks.pop_front();
            n += 1;
        }
        let offset = first * BLOCK;
        let len = (n * BLOCK).min(self.size - offset) as usize;
        let mut data = vec![0u8; len];
        let mut got = 0;
        while got < len {
            // SAFETY: pread into the unfilled part of `data`, which we own.
            let k = unsafe {
                libc::pread(
                    self.fd.as_raw_fd(),
                    data[got..].as_mut_ptr().cast(),
                    len - got,
                    (offset as usize + got) as libc::off_t,
                )
            };
            if k < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("reading a file to send: {e}"));
            }
            if k == 0 {
                break; // it shrank meanwhile: marked, sent again later
            }
            got += k as usize;
        }
        data.truncate(got);
        Ok(Some((offset, data)))
    }

    /// The data record of bytes read at `offset`; their checksums as sent.
    fn record(&self, state: &mut TrackState, offset: u64, data: Vec<u8>) -> Record {
        if let Some(sent) = state.sent.get_mut(&self.ino) {
            for (i, chunk) in data.chunks(BLOCK as usize).enumerate() {
                if let Some(c) = sent.crcs.get_mut((offset / BLOCK) as usize + i) {
                    *c = crc32c::crc32c(chunk);
                }
            }
        }
        Record::FileData { key: self.key, offset, data }
    }
}

/// A file a round sends: (mapped directory, path, (device, inode), the
/// blocks changed since it was sent, or None for all of it).
type Work = (usize, Vec<u8>, (u64, u64), Option<BTreeSet<u64>>);

/// The pre-copy on the snapshot's thread (step 1 of the module docs).
pub(crate) struct Copier {
    track: Arc<DiskTrack>,
    work: VecDeque<Work>,
    cur: Option<FileSend>,
    pub rounds: u32,
    /// Bytes of file contents sent.
    pub bytes: u64,
    /// Bytes the first round found.
    pub found: u64,
}

impl Copier {
    /// Starts tracking the guest's changes and plans round 1.
    pub fn new(track: Arc<DiskTrack>) -> Copier {
        track.start();
        let mut c = Copier { track, work: VecDeque::new(), cur: None, rounds: 0, bytes: 0, found: 0 };
        c.found = c.plan();
        c
    }

    /// Plans the next round: files not sent yet, and those changed since
    /// the last round took the marks. Returns the bytes planned.
    pub fn plan(&mut self) -> u64 {
        self.rounds += 1;
        let mut changed = self.track.take_changed();
        let mut planned = 0;
        let mut seen = HashSet::new();
        for (root, fd) in self.track.roots.iter().enumerate() {
            let (mut nodes, mut skipped) = (Vec::new(), 0);
            let _ = walk(fd.as_raw_fd(), false, &mut nodes, &mut skipped);
            let state = self.track.lock();
            for n in nodes.into_iter().filter(|n| n.kind == Walked::File) {
                if !seen.insert(n.ino) {
                    continue;
                }
                if !state.sent.contains_key(&n.ino) {
                    planned += n.size;
                    self.work.push_back((root, n.path, n.ino, None));
                } else if let Some(blocks) = changed.remove(&n.ino) {
                    planned += (blocks.len() as u64 * BLOCK).min(n.size) + BLOCK;
                    self.work.push_back((root, n.path, n.ino, Some(blocks)));
                }
            }
        }
        // Files the walk did not find (unlinked but open, or moved during
        // the walk): the pause looks at them.
        let mut state = self.track.lock();
        for (ino, blocks) in changed {
            state.remark(ino, blocks);
        }
        planned
    }

    /// Appends the next record of the round; false when the round is done.
    pub fn next(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> Result<bool, String> {
        loop {
            if let Some(cur) = &mut self.cur {
                let rec = cur.read(max_bytes)?.map(|(offset, data)| cur.record(&mut self.track.lock(), offset, data));
                match rec {
                    Some(r) => {
                        if let Record::FileData { data, .. } = &r {
                            self.bytes += data.len() as u64;
                        }
                        r.encode(out);
                        return Ok(true);
                    }
                    None => self.cur = None,
                }
            }
            let Some((root, path, ino, blocks)) = self.work.pop_front() else { return Ok(false) };
            let opened = CString::new(path)
                .map_err(|_| 0u16)
                .and_then(|p| host::open_beneath_c(self.track.roots[root].as_raw_fd(), &p, libc::O_RDONLY | libc::O_NOFOLLOW, 0))
                .and_then(|fd| host::fstat(fd.as_raw_fd()).map(|st| (fd, st)));
            let mut state = self.track.lock();
            match opened {
                Ok((fd, st)) if (st.st_dev, st.st_ino) == ino && st.st_mode & libc::S_IFMT == libc::S_IFREG => {
                    let (rec, send) = FileSend::start(&mut state, fd, ino, st.st_size as u64, blocks.as_ref());
                    rec.encode(out);
                    self.cur = Some(send);
                    return Ok(true);
                }
                // Gone or replaced meanwhile: the pause sees what is there.
                _ => {
                    if let Some(b) = blocks {
                        state.remark(ino, b);
                    }
                }
            }
        }
    }
}

impl Drop for Copier {
    fn drop(&mut self) {
        self.track.stop();
    }
}

/// The pause (step 2 of the module docs), on the guest's thread: the
/// records that complete the copy, the [`Tree`] record last.
pub(crate) fn capture(
    fs: &Fs,
    state: &mut TrackState,
    changed: HashMap<(u64, u64), BTreeSet<u64>>,
) -> Result<Vec<Record>, String> {
    const RECORD_BYTES: usize = 1 << 20;
    let mut records = Vec::new();
    let mut walked = Vec::new();
    let mut dirs: HashMap<(u64, u64), (usize, Vec<u8>)> = HashMap::new();
    let mut files: HashSet<(u64, u64)> = HashSet::new();
    let mut to_send: Vec<(OwnedFd, (u64, u64))> = Vec::new();
    // Sent before, unchanged since and of the same size: nothing to send.
    let unchanged = |state: &TrackState, ino: &(u64, u64), size: u64| {
        !changed.contains_key(ino) && state.sent.get(ino).is_some_and(|s| s.size == size)
    };
    for root in 0..fs.roots {
        let rootfd = fs.get(root as u64).ok_or("a mapped directory is not open")?.raw();
        let (mut nodes, mut skipped) = (Vec::new(), 0);
        walk(rootfd, true, &mut nodes, &mut skipped).map_err(|e| format!("{}: {e}", fs.root_paths[root].display()))?;
        if skipped > 0 {
            log::warn!(
                "{}: {skipped} entries that are neither files, directories nor symlinks are not copied to the joiner",
                fs.root_paths[root].display()
            );
        }
        let st = host::fstat(rootfd).map_err(|e| format!("stat of a mapped directory: errno {e}"))?;
        dirs.insert((st.st_dev, st.st_ino), (root, Vec::new()));
        for n in &nodes {
            match n.kind {
                Walked::Dir => {
                    dirs.entry(n.ino).or_insert_with(|| (root, n.path.clone()));
                }
                Walked::File if files.insert(n.ino) && !unchanged(state, &n.ino, n.size) => {
                    let p = CString::new(n.path.clone()).map_err(|_| "a name with a NUL byte")?;
                    let fd = host::open_beneath_c(rootfd, &p, libc::O_RDONLY | libc::O_NOFOLLOW, 0)
                        .map_err(|e| format!("opening {:?} to send it: errno {e}", String::from_utf8_lossy(&n.path)))?;
                    to_send.push((fd, n.ino));
                }
                _ => {}
            }
        }
        walked.push(nodes);
    }
    // Open files the tree no longer names (unlinked while open).
    for (_, o) in fs.objects() {
        if dirs.contains_key(&o.ino) || !files.insert(o.ino) {
            continue;
        }
        if let Ok(st) = host::fstat(o.raw()) {
            if st.st_mode & libc::S_IFMT == libc::S_IFREG && !unchanged(state, &o.ino, st.st_size as u64) {
                to_send.push((reopen(o.raw())?, o.ino));
            }
        }
    }
    for (fd, ino) in to_send {
        let st = host::fstat(fd.as_raw_fd()).map_err(|e| format!("stat of a file to send: errno {e}"))?;
        let fresh = state.sent.get(&ino).is_none_or(|s| s.size == u64::MAX);
        let since = if fresh { None } else { Some(changed.get(&ino).cloned().unwrap_or_default()) };
        let (rec, mut send) = FileSend::start(state, fd, ino, st.st_size as u64, since.as_ref());
        records.push(rec);
        while let Some(r) = send.next(state, RECORD_BYTES)? {
            records.push(r);
        }
    }
    records.push(Record::Tree(Box::new(tree(fs, state, &walked, &dirs)?)));
    Ok(records)
}

fn is_file(fd: RawFd) -> bool {
    host::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
}

/// A readable descriptor of the file open at `fd` (which may be
/// write-only, and have no name left).
fn reopen(fd: RawFd) -> Result<OwnedFd, String> {
    let p = CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL");
    // SAFETY: open of a NUL-terminated path; returns a new descriptor or -1.
    let n = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if n < 0 {
        return Err(format!("reopening an unlinked open file to send it: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// The [`Tree`] record from the walk and what was sent.
fn tree(
    fs: &Fs,
    state: &mut TrackState,
    walked: &[Vec<Node>],
    dirs: &HashMap<(u64, u64), (usize, Vec<u8>)>,
) -> Result<Tree, String> {
    let mut hasher = TreeHasher::new();
    let mut roots = Vec::new();
    for (root, nodes) in walked.iter().enumerate() {
        hasher.root(root);
        let mut out = Vec::with_capacity(nodes.len());
        for n in nodes {
            let kind = match &n.kind {
                Walked::Dir => {
                    hasher.dir(&n.path);
                    NodeKind::Dir
                }
                Walked::File => {
                    let sent = state.sent.get(&n.ino).ok_or("a file of the tree was not sent")?;
                    hasher.file(&n.path, sent.size, &sent.crcs);
                    NodeKind::File { key: sent.key }
                }
                Walked::Symlink(t) => {
                    hasher.symlink(&n.path, t);
                    NodeKind::Symlink(t.clone())
                }
            };
            out.push(TreeNode { path: n.path.clone(), mode: n.mode, kind });
        }
        roots.push((fs.usage.get(root).copied().unwrap_or(0), out));
    }
    let mut objects = Vec::new();
    let mut ids: Vec<u64> = fs.objects().map(|(id, _)| id).collect();
    ids.sort_unstable();
    for id in ids {
        let o = fs.get(id).expect("listed");
        let what = if id < fs.roots as u64 {
            ObjWhat::Preopen
        } else if is_file(o.raw()) {
            let sent = state.sent.get(&o.ino).ok_or("an open file was not sent")?;
            // SAFETY: fcntl and lseek on a descriptor this replica owns.
            let (flags, offset) = unsafe { (libc::fcntl(o.raw(), libc::F_GETFL), libc::lseek(o.raw(), 0, libc::SEEK_CUR)) };
            if flags < 0 || offset < 0 {
                return Err(format!("the open file {}: {}", o.path, std::io::Error::last_os_error()));
            }
            let keep = libc::O_ACCMODE | libc::O_APPEND | libc::O_DSYNC | libc::O_SYNC;
            ObjWhat::File { key: sent.key, flags: (flags & keep) as u32, offset: offset as u64 }
        } else {
            ObjWhat::Dir { path: dirs.get(&o.ino).map(|(_, p)| p.clone()) }
        };
        let listing = o.listing.as_ref().map(|l| l.iter().map(|e| (e.name.clone(), e.ino, e.filetype)).collect());
        objects.push(ObjState { id, root: o.root as u32, guest_path: o.path.clone(), what, listing });
    }
    Ok(Tree { roots, objects, next_id: fs.next_id(), hash: hasher.finish() })
}
