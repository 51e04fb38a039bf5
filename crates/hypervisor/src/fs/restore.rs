//! The joiner's side of the mapped directories in a snapshot (`copy.rs`):
//! its own copy of each directory is emptied, the files arrive under their
//! keys in a staging directory inside the first mapped directory, and the
//! [`Tree`] record builds the tree from them — a file's names become hard
//! links to its staged copy — reopens what the guest held open, checks the
//! tree hash, and removes the staging directory. The guest runs only after
//! all of that, so it never sees the staging directory.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::copy::{walk, TreeHasher, Walked};
use super::host;
use super::track::BLOCK;
use super::{Fs, Obj};
use crate::record::{NodeKind, ObjWhat, Tree};

/// A restore in progress.
pub(crate) struct Restore {
    /// The staging directory, inside mapped directory 0, and its name.
    staging: Option<(OwnedFd, CString)>,
    /// Bytes of file contents received.
    pub bytes: u64,
    pub files: u64,
}

fn os(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn cpath(p: &[u8]) -> Result<CString, String> {
    // Paths come from the primary's walk: relative, without `.`/`..`.
    if p.is_empty() || p[0] == b'/' || p.split(|&b| b == b'/').any(|c| c.is_empty() || c == b"." || c == b"..") {
        return Err(format!("a bad path in the snapshot's tree: {:?}", String::from_utf8_lossy(p)));
    }
    CString::new(p).map_err(|_| "a path with a NUL byte in the snapshot's tree".to_string())
}

/// Removes everything beneath the directory `dir` (not following symlinks).
pub(crate) fn empty_dir(dir: RawFd) -> Result<(), String> {
    for e in host::list_dir(dir).map_err(|e| format!("listing a directory to empty it: errno {e}"))? {
        if e.name == b"." || e.name == b".." {
            continue;
        }
        let name = CString::new(e.name).expect("no NUL in a listed name");
        let st = host::stat(dir, &name, false).map_err(|e| format!("emptying: stat: errno {e}"))?;
        let flags = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            let sub = host::open_beneath_c(dir, &name, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW, 0)
                .map_err(|e| format!("emptying: open: errno {e}"))?;
            empty_dir(sub.as_raw_fd())?;
            libc::AT_REMOVEDIR
        } else {
            0
        };
        // SAFETY: unlinkat with a live descriptor and a NUL-terminated name.
        if unsafe { libc::unlinkat(dir, name.as_ptr(), flags) } < 0 {
            return Err(os(&format!("removing {:?}", name)));
        }
    }
    Ok(())
}

impl Restore {
    /// Empties every mapped directory of `fs` and makes the staging
    /// directory.
    pub fn begin(fs: &Fs) -> Result<Restore, String> {
        for root in 0..fs.roots {
            let fd = fs.get(root as u64).ok_or("a mapped directory is not open")?.raw();
            log::info!("emptying {} for the primary's copy of the guest's files", fs.root_paths[root].display());
            empty_dir(fd).map_err(|e| format!("{}: {e}", fs.root_paths[root].display()))?;
        }
        let staging = match fs.get(0) {
            Some(o) if fs.roots > 0 => Some(make_staging(o.raw())?),
            _ => None,
        };
        Ok(Restore { staging, bytes: 0, files: 0 })
    }

    fn blob(&self, key: u64, flags: i32) -> Result<OwnedFd, String> {
        let (dir, _) = self.staging.as_ref().ok_or("file contents in a snapshot of a guest without mapped directories")?;
        let name = CString::new(key.to_string()).expect("digits");
        host::open_beneath_c(dir.as_raw_fd(), &name, flags, 0o600).map_err(|e| format!("staging file {key}: errno {e}"))
    }

    /// Record 4: file `key` has `size` bytes (created if new).
    pub fn file(&mut self, key: u64, size: u64) -> Result<(), String> {
        let fd = self.blob(key, libc::O_WRONLY | libc::O_CREAT)?;
        // SAFETY: ftruncate on a descriptor we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } < 0 {
            return Err(os("sizing a staged file"));
        }
        self.files += 1;
        Ok(())
    }

    /// Record 5: bytes of file `key` at `offset`.
    pub fn data(&mut self, key: u64, offset: u64, data: &[u8]) -> Result<(), String> {
        let fd = self.blob(key, libc::O_WRONLY)?;
        let mut done = 0;
        while done < data.len() {
            // SAFETY: pwrite from a live buffer to a descriptor we own.
            let k = unsafe {
                libc::pwrite(
                    fd.as_raw_fd(),
                    data[done..].as_ptr().cast(),
                    data.len() - done,
                    (offset as usize + done) as libc::off_t,
                )
            };
            if k < 0 {
                return Err(os("writing a staged file"));
            }
            done += k as usize;
        }
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// Record 6: builds the tree, reopens the guest's objects into `fs`,
    /// checks the hash, removes the staging directory.
    pub fn finish(self, fs: &mut Fs, tree: &Tree) -> Result<(), String> {
        if tree.roots.len() != fs.roots {
            return Err(format!("the snapshot has {} mapped directories, this guest {}", tree.roots.len(), fs.roots));
        }
        let staging = self.staging.as_ref();
        let result = self.build(fs, tree, staging);
        if let Some((fd, name)) = staging {
            let _ = empty_dir(fd.as_raw_fd());
            let root0 = fs.get(0).map(|o| o.raw());
            if let Some(r) = root0 {
                // SAFETY: unlinkat with a live descriptor and a NUL-terminated name.
                unsafe { libc::unlinkat(r, name.as_ptr(), libc::AT_REMOVEDIR) };
            }
        }
        result?;
        let got = hash_tree(fs)?;
        if got != tree.hash {
            return Err("the joiner's copy of the mapped directories differs from the primary's (tree hash)".into());
        }
        log::info!(
            "restored the guest's files: {} files, {} bytes received; the tree matches the primary's",
            self.files,
            self.bytes
        );
        Ok(())
    }

    fn build(&self, fs: &mut Fs, tree: &Tree, staging: Option<&(OwnedFd, CString)>) -> Result<(), String> {
        let stage = || staging.map(|(fd, _)| fd.as_raw_fd()).ok_or("no staging directory");
        // Where each file landed in each mapped directory (for open files).
        let mut placed: HashMap<(usize, u64), CString> = HashMap::new();
        let mut modes = Vec::new();
        for (root, (_, nodes)) in tree.roots.iter().enumerate() {
            let rootfd = fs.get(root as u64).ok_or("a mapped directory is not open")?.raw();
            for n in nodes {
                let p = cpath(&n.path)?;
                let shown = String::from_utf8_lossy(&n.path);
                match &n.kind {
                    NodeKind::Dir => {
                        // SAFETY: mkdirat with a live descriptor and a NUL-terminated path.
                        if unsafe { libc::mkdirat(rootfd, p.as_ptr(), 0o700) } < 0 {
                            return Err(os(&format!("creating {shown}")));
                        }
                        modes.push((rootfd, p.clone(), n.mode));
                    }
                    NodeKind::File { key } => {
                        let name = CString::new(key.to_string()).expect("digits");
                        // SAFETY: linkat with live descriptors and NUL-terminated names.
                        let r = unsafe { libc::linkat(stage()?, name.as_ptr(), rootfd, p.as_ptr(), 0) };
                        if r < 0 {
                            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EXDEV) {
                                return Err(os(&format!("placing {shown}")));
                            }
                            copy_file(stage()?, &name, rootfd, &p).map_err(|e| format!("placing {shown}: {e}"))?;
                        }
                        placed.entry((root, *key)).or_insert_with(|| p.clone());
                        modes.push((rootfd, p.clone(), n.mode));
                    }
                    NodeKind::Symlink(target) => {
                        let t = CString::new(target.clone()).map_err(|_| "a symlink target with a NUL byte")?;
                        // SAFETY: symlinkat with a live descriptor and NUL-terminated strings.
                        if unsafe { libc::symlinkat(t.as_ptr(), rootfd, p.as_ptr()) } < 0 {
                            return Err(os(&format!("creating the symlink {shown}")));
                        }
                    }
                }
            }
            if fs.limit.is_some() {
                fs.usage[root] = tree.roots[root].0;
            }
        }
        for o in &tree.objects {
            let root = o.root as usize;
            if root >= fs.roots {
                return Err(format!("an open object under mapped directory {root} of {}", fs.roots));
            }
            let rootfd = fs.get(root as u64).ok_or("a mapped directory is not open")?.raw();
            let fd = match &o.what {
                ObjWhat::Preopen => {
                    let obj = fs.get_mut(o.id).ok_or_else(|| format!("mapped directory object {} is not open", o.id))?;
                    obj.listing = listing(&o.listing);
                    continue;
                }
                ObjWhat::File { key, flags, offset } => {
                    let flags = *flags as i32 & (libc::O_ACCMODE | libc::O_APPEND | libc::O_DSYNC | libc::O_SYNC);
                    let fd = match placed.get(&(root, *key)) {
                        Some(p) => host::open_beneath_c(rootfd, p, flags | libc::O_NOFOLLOW, 0),
                        None => host::open_beneath_c(stage()?, &CString::new(key.to_string()).expect("digits"), flags, 0),
                    }
                    .map_err(|e| format!("reopening {}: errno {e}", o.guest_path))?;
                    // SAFETY: lseek on a descriptor we own.
                    if unsafe { libc::lseek(fd.as_raw_fd(), *offset as libc::off_t, libc::SEEK_SET) } < 0 {
                        return Err(os(&format!("seeking {}", o.guest_path)));
                    }
                    fd
                }
                ObjWhat::Dir { path } => {
                    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
                    match path {
                        Some(p) if p.is_empty() => host::open_beneath(rootfd, ".", flags, 0),
                        Some(p) => host::open_beneath_c(rootfd, &cpath(p)?, flags, 0),
                        None => removed_dir(stage()?, o.id),
                    }
                    .map_err(|e| format!("reopening the directory {}: errno {e}", o.guest_path))?
                }
            };
            let st = host::fstat(fd.as_raw_fd()).map_err(|e| format!("stat of {}: errno {e}", o.guest_path))?;
            let obj = Obj { fd, path: o.guest_path.clone(), listing: listing(&o.listing), root, ino: (st.st_dev, st.st_ino) };
            fs.put(o.id, obj);
        }
        fs.set_next_id(tree.next_id);
        for (dir, p, mode) in modes {
            // SAFETY: fchmodat with a live descriptor and a NUL-terminated path.
            if unsafe { libc::fchmodat(dir, p.as_ptr(), mode, 0) } < 0 {
                return Err(os(&format!("setting the mode of {:?}", p)));
            }
        }
        Ok(())
    }
}

fn listing(l: &Option<Vec<(Vec<u8>, u64, u8)>>) -> Option<Vec<host::Entry>> {
    l.as_ref().map(|l| l.iter().map(|(name, ino, ty)| host::Entry { name: name.clone(), ino: *ino, filetype: *ty }).collect())
}

/// A directory the guest holds open after it was removed: made, opened
/// and removed again.
fn removed_dir(stage: RawFd, id: u64) -> Result<OwnedFd, u16> {
    let name = CString::new(format!("removed-dir-{id}")).expect("no NUL");
    // SAFETY: mkdirat/unlinkat with a live descriptor and a NUL-terminated name.
    host::check(|| unsafe { libc::mkdirat(stage, name.as_ptr(), 0o700) as libc::c_long })?;
    let fd = host::open_beneath_c(stage, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    // SAFETY: as above.
    host::check(|| unsafe { libc::unlinkat(stage, name.as_ptr(), libc::AT_REMOVEDIR) as libc::c_long })?;
    Ok(fd)
}

fn make_staging(root: RawFd) -> Result<(OwnedFd, CString), String> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let name = CString::new(format!(".understudy-join-{}-{nanos}", std::process::id())).expect("no NUL");
    // SAFETY: mkdirat with a live descriptor and a NUL-terminated name.
    if unsafe { libc::mkdirat(root, name.as_ptr(), 0o700) } < 0 {
        return Err(os("creating the staging directory for the joiner's files"));
    }
    let fd = host::open_beneath_c(root, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
        .map_err(|e| format!("opening the staging directory: errno {e}"))?;
    Ok((fd, name))
}

/// Copies a staged file to its place in another filesystem.
fn copy_file(from_dir: RawFd, from: &CString, to_dir: RawFd, to: &CString) -> Result<(), String> {
    let src = host::open_beneath_c(from_dir, from, libc::O_RDONLY, 0).map_err(|e| format!("errno {e}"))?;
    let dst = host::open_beneath_c(to_dir, to, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o600)
        .map_err(|e| format!("errno {e}"))?;
    let mut buf = vec![0u8; BLOCK as usize];
    loop {
        // SAFETY: read into / write from a buffer we own, on descriptors we own.
        let n = unsafe { libc::read(src.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(os("reading"));
        }
        if n == 0 {
            return Ok(());
        }
        let mut done = 0;
        while done < n as usize {
            // SAFETY: as above.
            let k = unsafe { libc::write(dst.as_raw_fd(), buf[done..].as_ptr().cast(), n as usize - done) };
            if k < 0 {
                return Err(os("writing"));
            }
            done += k as usize;
        }
    }
}

/// The tree hash of this replica's mapped directories, from their files.
pub(crate) fn hash_tree(fs: &Fs) -> Result<[u8; 32], String> {
    let mut h = TreeHasher::new();
    for root in 0..fs.roots {
        h.root(root);
        let rootfd = fs.get(root as u64).ok_or("a mapped directory is not open")?.raw();
        let (mut nodes, mut skipped) = (Vec::new(), 0);
        walk(rootfd, true, &mut nodes, &mut skipped)?;
        for n in nodes {
            match &n.kind {
                Walked::Dir => h.dir(&n.path),
                Walked::Symlink(t) => h.symlink(&n.path, t),
                Walked::File => {
                    let fd = host::open_beneath_c(rootfd, &cpath(&n.path)?, libc::O_RDONLY | libc::O_NOFOLLOW, 0)
                        .map_err(|e| format!("hashing {:?}: errno {e}", String::from_utf8_lossy(&n.path)))?;
                    let mut crcs = Vec::new();
                    let mut buf = vec![0u8; BLOCK as usize];
                    loop {
                        let mut got = 0;
                        while got < buf.len() {
                            // SAFETY: read into a buffer we own.
                            let k = unsafe { libc::read(fd.as_raw_fd(), buf[got..].as_mut_ptr().cast(), buf.len() - got) };
                            if k < 0 {
                                return Err(os("hashing a file"));
                            }
                            if k == 0 {
                                break;
                            }
                            got += k as usize;
                        }
                        if got == 0 {
                            break;
                        }
                        crcs.push(crc32c::crc32c(&buf[..got]));
                        if got < buf.len() {
                            break;
                        }
                    }
                    h.file(&n.path, n.size, &crcs);
                }
            }
        }
    }
    Ok(h.finish())
}
