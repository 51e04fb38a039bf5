//! Every disk operation of this crate goes through [`Storage`], so the same
//! log and recovery code runs on real files ([`FsStorage`]) and on a
//! simulated disk ([`MemStorage`]) that, at a crash, loses unsynced writes,
//! tears the last one and rots a sector. Recovery is only as good as the
//! faults it was tested against, and real power cuts are too rare and too
//! slow to test with.
//!
//! The trait is deliberately small: one flat directory, append-only files,
//! reads at an offset, and the three metadata operations the log needs.
//! Durability is explicit in every doc comment because the callers' proofs
//! (an acknowledged entry survives) rest on exactly these promises.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// One directory of files, as the log and snapshots need it.
pub trait Storage: Clone + Send + 'static {
    type File: StorageFile;
    /// Names of the files in the directory (no subdirectories), any order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Current length of a file, synced or not.
    fn len(&self, name: &str) -> io::Result<u64>;
    /// Reads `buf.len()` bytes at `offset` (error if past the end).
    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Creates (or truncates) a file for appending.
    fn create(&self, name: &str) -> io::Result<Self::File>;
    /// Cuts a file to `len` bytes, durably (the cut is synced).
    fn truncate(&self, name: &str, len: u64) -> io::Result<()>;
    /// Atomic rename, durable once it returns (directory synced).
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes a file, durable once it returns.
    fn remove(&self, name: &str) -> io::Result<()>;
}

/// A file open for appending.
pub trait StorageFile: Send {
    /// Appends `bytes`; nothing is durable until [`StorageFile::sync`].
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Everything appended so far is on disk once this returns (fdatasync),
    /// and so is the file's directory entry.
    fn sync(&mut self) -> io::Result<()>;
}

/// Real files in one directory.
#[derive(Debug, Clone)]
pub struct FsStorage {
    dir: PathBuf,
}

impl FsStorage {
    /// Uses `dir`, creating it (and its parents) if needed.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(FsStorage { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// fsync of a directory: makes the names created, renamed or removed in it
/// durable (a file's own fsync does not cover its directory entry).
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Storage for FsStorage {
    type File = FsFile;

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            // Names this crate writes are ASCII; anything else is not ours.
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn len(&self, name: &str) -> io::Result<u64> {
        Ok(std::fs::metadata(self.path(name))?.len())
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        File::open(self.path(name))?.read_exact_at(buf, offset)
    }

    fn create(&self, name: &str) -> io::Result<FsFile> {
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(self.path(name))?;
        Ok(FsFile { file, dir: self.dir.clone(), entry_synced: false })
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(self.path(name))?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.path(from), self.path(to))?;
        sync_dir(&self.dir)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.path(name))?;
        sync_dir(&self.dir)
    }
}

/// A real file open for appending.
#[derive(Debug)]
pub struct FsFile {
    file: File,
    dir: PathBuf,
    /// Whether the directory was fsynced since the file was created: the
    /// first sync must make the name durable too, later ones need not.
    entry_synced: bool,
}

impl StorageFile for FsFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        if !self.entry_synced {
            sync_dir(&self.dir)?;
            self.entry_synced = true;
        }
        Ok(())
    }
}

/// Size of the unit [`CrashFaults::corrupt_sector`] damages.
pub const SECTOR_BYTES: u64 = 512;

/// What else a simulated power loss does besides losing unsynced bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrashFaults {
    /// The last file written keeps a random prefix of its unsynced bytes.
    pub torn_tail: bool,
    /// One random sector of a random non-empty file is garbage afterwards,
    /// synced or not (a bad sector: only checksums can tell).
    pub corrupt_sector: bool,
}

/// A simulated disk. Clones share it, as processes share a real disk.
///
/// Each file is an inode (bytes plus how many of them are synced); the
/// directory exists twice, as the processes see it and as it is durable.
/// A crash replaces the first by the second and cuts every inode to its
/// synced length, so a file created and never synced vanishes, and a write
/// never synced is lost.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    disk: Arc<Mutex<Disk>>,
}

#[derive(Debug, Default)]
struct Disk {
    inodes: BTreeMap<u64, Inode>,
    /// The directory as seen: name → inode.
    names: BTreeMap<String, u64>,
    /// The directory as it would be after a crash.
    durable_names: BTreeMap<String, u64>,
    next_inode: u64,
    /// Inode of the last append, whose unsynced tail a crash may tear.
    last_written: Option<u64>,
    /// Bumped at each crash: handles from before it refuse to work, as the
    /// processes that held them are gone.
    generation: u64,
}

#[derive(Debug, Default)]
struct Inode {
    bytes: Vec<u8>,
    synced: usize,
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{name}: no such file"))
}

impl MemStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        // A panic while holding the lock is a test failure already; the
        // disk itself stays consistent between operations.
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Total bytes of the files in the directory (synced or not).
    pub fn bytes(&self) -> u64 {
        let disk = self.disk();
        disk.names.values().map(|id| disk.inodes[id].bytes.len() as u64).sum()
    }

    /// Simulates a power loss; `rand` drives every random choice so a seed
    /// replays the same crash. Handles from before the crash stop working.
    pub fn crash(&self, faults: CrashFaults, rand: &mut dyn FnMut() -> u64) {
        let mut disk = self.disk();
        let disk = &mut *disk;
        disk.generation += 1;
        let torn = if faults.torn_tail { disk.last_written } else { None };
        for (&id, inode) in disk.inodes.iter_mut() {
            let unsynced = inode.bytes.len() - inode.synced;
            let keep = if torn == Some(id) { (rand() % (unsynced as u64 + 1)) as usize } else { 0 };
            inode.bytes.truncate(inode.synced + keep);
            inode.synced = inode.bytes.len();
        }
        disk.names = disk.durable_names.clone();
        let live: Vec<u64> = disk.names.values().copied().collect();
        disk.inodes.retain(|id, _| live.contains(id));
        disk.last_written = None;
        if faults.corrupt_sector {
            let nonempty: Vec<u64> = disk.names.values().copied().filter(|id| !disk.inodes[id].bytes.is_empty()).collect();
            if !nonempty.is_empty() {
                let inode = disk.inodes.get_mut(&nonempty[(rand() % nonempty.len() as u64) as usize]).expect("live inode");
                let sectors = (inode.bytes.len() as u64).div_ceil(SECTOR_BYTES);
                let start = ((rand() % sectors) * SECTOR_BYTES) as usize;
                let end = (start + SECTOR_BYTES as usize).min(inode.bytes.len());
                // Every byte of the sector changes: a bad sector reads back
                // as garbage, not as a single flipped bit.
                for b in &mut inode.bytes[start..end] {
                    *b ^= (rand() as u8).max(1);
                }
            }
        }
    }

    fn inode_of(disk: &Disk, name: &str) -> io::Result<u64> {
        disk.names.get(name).copied().ok_or_else(|| not_found(name))
    }
}

impl Storage for MemStorage {
    type File = MemFile;

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.disk().names.keys().cloned().collect())
    }

    fn len(&self, name: &str) -> io::Result<u64> {
        let disk = self.disk();
        let id = Self::inode_of(&disk, name)?;
        Ok(disk.inodes[&id].bytes.len() as u64)
    }

    fn read_at(&self, name: &str, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let disk = self.disk();
        let id = Self::inode_of(&disk, name)?;
        let bytes = &disk.inodes[&id].bytes;
        let end = offset.checked_add(buf.len() as u64).filter(|&end| end <= bytes.len() as u64);
        let Some(end) = end else {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{name}: read past the end at offset {offset}")));
        };
        buf.copy_from_slice(&bytes[offset as usize..end as usize]);
        Ok(())
    }

    fn create(&self, name: &str) -> io::Result<MemFile> {
        let mut disk = self.disk();
        let id = disk.next_inode;
        disk.next_inode += 1;
        disk.inodes.insert(id, Inode::default());
        // The new name is not durable until the file is synced; until then
        // a crash brings back whatever the name meant before (or nothing).
        disk.names.insert(name.to_string(), id);
        Ok(MemFile { storage: self.clone(), inode: id, generation: disk.generation })
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        let mut disk = self.disk();
        let id = Self::inode_of(&disk, name)?;
        let inode = disk.inodes.get_mut(&id).expect("named inode exists");
        inode.bytes.resize(len as usize, 0);
        inode.synced = inode.bytes.len();
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut disk = self.disk();
        let id = disk.names.remove(from).ok_or_else(|| not_found(from))?;
        disk.names.insert(to.to_string(), id);
        disk.durable_names.remove(from);
        disk.durable_names.insert(to.to_string(), id);
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut disk = self.disk();
        disk.names.remove(name).ok_or_else(|| not_found(name))?;
        disk.durable_names.remove(name);
        Ok(())
    }
}

/// A file of a [`MemStorage`] open for appending.
#[derive(Debug)]
pub struct MemFile {
    storage: MemStorage,
    inode: u64,
    generation: u64,
}

impl MemFile {
    fn with_inode<T>(&self, f: impl FnOnce(&mut Disk) -> T) -> io::Result<T> {
        let mut disk = self.storage.disk();
        if disk.generation != self.generation || !disk.inodes.contains_key(&self.inode) {
            return Err(io::Error::other("file handle from before a simulated crash"));
        }
        Ok(f(&mut disk))
    }
}

impl StorageFile for MemFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let id = self.inode;
        self.with_inode(|disk| {
            disk.inodes.get_mut(&id).expect("checked").bytes.extend_from_slice(bytes);
            disk.last_written = Some(id);
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        let id = self.inode;
        self.with_inode(|disk| {
            let inode = disk.inodes.get_mut(&id).expect("checked");
            inode.synced = inode.bytes.len();
            // Like the directory fsync after a create: every name this
            // inode has becomes durable (an unlinked inode has none).
            let names: Vec<String> = disk.names.iter().filter(|(_, &i)| i == id).map(|(n, _)| n.clone()).collect();
            for name in names {
                disk.durable_names.insert(name, id);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> impl FnMut() -> u64 {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn crash_keeps_synced_bytes_and_drops_unsynced_names() {
        let s = MemStorage::new();
        let mut a = s.create("a").unwrap();
        a.append(b"hello").unwrap();
        a.sync().unwrap();
        a.append(b" world").unwrap();
        let mut b = s.create("b").unwrap();
        b.append(b"never synced").unwrap();
        s.crash(CrashFaults::default(), &mut counter());
        assert_eq!(s.list().unwrap(), vec!["a".to_string()]);
        let mut buf = [0u8; 5];
        s.read_at("a", 0, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(s.len("a").unwrap(), 5);
        assert!(a.append(b"x").is_err(), "a handle from before the crash must not write to the new disk");
    }

    #[test]
    fn torn_tail_keeps_a_prefix_of_the_last_write_only() {
        for seed in 0..50u64 {
            let s = MemStorage::new();
            let mut a = s.create("a").unwrap();
            a.append(&[1; 100]).unwrap();
            a.sync().unwrap();
            a.append(&[2; 100]).unwrap();
            let mut rand = counter();
            for _ in 0..seed {
                rand();
            }
            s.crash(CrashFaults { torn_tail: true, corrupt_sector: false }, &mut rand);
            let len = s.len("a").unwrap();
            assert!((100..=200).contains(&len));
            let mut buf = vec![0; len as usize];
            s.read_at("a", 0, &mut buf).unwrap();
            assert!(buf[..100].iter().all(|&b| b == 1) && buf[100..].iter().all(|&b| b == 2));
        }
    }

    #[test]
    fn corrupt_sector_changes_one_sector() {
        let s = MemStorage::new();
        let mut a = s.create("a").unwrap();
        a.append(&[7; 2048]).unwrap();
        a.sync().unwrap();
        s.crash(CrashFaults { torn_tail: false, corrupt_sector: true }, &mut counter());
        let mut buf = vec![0; 2048];
        s.read_at("a", 0, &mut buf).unwrap();
        let changed: Vec<usize> = (0..2048).filter(|&i| buf[i] != 7).collect();
        assert_eq!(changed.len(), 512);
        assert_eq!(changed[0] % 512, 0);
        assert_eq!(changed[511], changed[0] + 511);
    }

    #[test]
    fn rename_and_remove_are_durable_at_once() {
        let s = MemStorage::new();
        let mut a = s.create("a.tmp").unwrap();
        a.append(b"x").unwrap();
        a.sync().unwrap();
        s.rename("a.tmp", "a").unwrap();
        let mut b = s.create("b").unwrap();
        b.sync().unwrap();
        s.remove("b").unwrap();
        s.crash(CrashFaults::default(), &mut counter());
        assert_eq!(s.list().unwrap(), vec!["a".to_string()]);
        assert_eq!(s.bytes(), 1);
    }

    #[test]
    fn fs_storage_basics() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::new(dir.path().join("sub")).unwrap();
        let mut f = s.create("f").unwrap();
        f.append(b"abcdef").unwrap();
        f.sync().unwrap();
        assert_eq!(s.len("f").unwrap(), 6);
        let mut buf = [0u8; 3];
        s.read_at("f", 2, &mut buf).unwrap();
        assert_eq!(&buf, b"cde");
        assert!(s.read_at("f", 4, &mut buf).is_err());
        s.truncate("f", 2).unwrap();
        s.rename("f", "g").unwrap();
        assert_eq!(s.list().unwrap(), vec!["g".to_string()]);
        assert_eq!(s.len("g").unwrap(), 2);
        s.remove("g").unwrap();
        assert!(s.list().unwrap().is_empty());
    }
}
