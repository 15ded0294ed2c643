//! A FUSE file system that forgets, at a power cut, everything that was not made durable.
//!
//! It keeps every file and directory in memory twice: as written, and as last made durable.
//! `fsync` / `fdatasync` of a file makes its bytes durable; `fsync` of a directory makes its
//! entries durable (a file created, renamed or removed is reachable after a power cut only
//! once its directory was synced), as POSIX promises and no more. The page cache of a real
//! disk keeps what was written but not synced across a `kill -9`; this keeps it only until
//! [`PowerFs::cut`].
//!
//! The cut can be armed to happen after a chosen number of changes ([`PowerFs::cut_after`]):
//! from then on every change fails with EIO, as writes to a disk that lost power would, until
//! [`PowerFs::restore`] turns the durable state into the state and power back on.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyWrite, Request, WriteFlags,
};

/// Nothing is cached by the kernel: every lookup and attribute comes from here.
const TTL: Duration = Duration::ZERO;
const ROOT: u64 = 1;

enum Content {
    File {
        data: Vec<u8>,
        durable: Vec<u8>,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
        durable: BTreeMap<OsString, u64>,
    },
}

#[derive(Default)]
struct State {
    nodes: HashMap<u64, Content>,
    next: u64,
    /// Changes so far.
    changes: u64,
    /// Power goes off once `changes` reaches this.
    cut_at: Option<u64>,
    off: bool,
}

impl State {
    fn new() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Content::Dir {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
            },
        );
        Self {
            nodes,
            next: ROOT + 1,
            ..Self::default()
        }
    }

    /// Counts one change; `Err` when the power is (or just went) off.
    fn change(&mut self) -> Result<(), Errno> {
        if self.cut_at.is_some_and(|at| self.changes >= at) {
            self.off = true;
        }
        if self.off {
            return Err(Errno::EIO);
        }
        self.changes += 1;
        Ok(())
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, size, perm) = match self.nodes.get(&ino)? {
            Content::File { data, .. } => (FileType::RegularFile, data.len() as u64, 0o644),
            Content::Dir { entries, .. } => (FileType::Directory, entries.len() as u64, 0o755),
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind,
            perm,
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn entries(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match self.nodes.get_mut(&ino) {
            Some(Content::Dir { entries, .. }) => Ok(entries),
            Some(Content::File { .. }) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn child(&mut self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.entries(parent)?
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    fn is_empty_dir(&self, ino: u64) -> bool {
        matches!(self.nodes.get(&ino), Some(Content::Dir { entries, .. }) if entries.is_empty())
    }

    /// Removes the entry `name` of `parent`: a file, or with `dir` an empty directory.
    fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        self.change()?;
        let ino = self.child(parent, name)?;
        match (self.nodes.get(&ino), dir) {
            (Some(Content::Dir { .. }), false) => return Err(Errno::EISDIR),
            (Some(Content::File { .. }), true) => return Err(Errno::ENOTDIR),
            (_, true) if !self.is_empty_dir(ino) => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        self.entries(parent)?.remove(name);
        Ok(())
    }

    /// Adds a node named `name` in `parent`.
    fn make(&mut self, parent: u64, name: &OsStr, content: Content) -> Result<u64, Errno> {
        self.change()?;
        if self.entries(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(ino, content);
        self.entries(parent)?.insert(name.to_owned(), ino);
        Ok(ino)
    }
}

/// The file system; clones share it.
#[derive(Clone)]
pub struct PowerFs(Arc<Mutex<State>>);

/// A mount of a [`PowerFs`]; dropping it unmounts.
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
    path: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // A lazy unmount: the store under test may still hold files open as it goes away.
        if let Ok(path) = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()) {
            // SAFETY: umount2 with a valid NUL-terminated path.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
        if let Some(session) = self.session.take() {
            let _ = session.join();
        }
    }
}

impl PowerFs {
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(State::new())))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mounts the file system at `path` (an empty directory), served by a background thread.
    pub fn mount(&self, path: &Path) -> Mounted {
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("powerfs".into()),
            fuser::MountOption::DefaultPermissions,
        ];
        let session = fuser::spawn_mount(self.clone(), path, &config)
            .unwrap_or_else(|e| panic!("mount powerfs at {}: {e}", path.display()));
        Mounted {
            session: Some(session),
            path: path.to_owned(),
        }
    }

    /// Changes made so far.
    pub fn changes(&self) -> u64 {
        self.state().changes
    }

    /// The power goes off once `n` more changes are made.
    pub fn cut_after(&self, n: u64) {
        let mut state = self.state();
        state.cut_at = Some(state.changes + n);
    }

    /// The power goes off now: every further change fails.
    pub fn cut(&self) {
        self.state().off = true;
    }

    /// Power comes back: what was made durable is all there is.
    pub fn restore(&self) {
        let mut state = self.state();
        for content in state.nodes.values_mut() {
            match content {
                Content::File { data, durable } => *data = durable.clone(),
                Content::Dir { entries, durable } => *entries = durable.clone(),
            }
        }
        state.off = false;
        state.cut_at = None;
    }
}

impl fuser::Filesystem for PowerFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut state = self.state();
        match state.child(parent.0, name) {
            Ok(ino) => match state.attr(ino) {
                Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
                None => reply.error(Errno::ENOENT),
            },
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.state();
        if let Some(size) = size {
            if let Err(e) = state.change() {
                return reply.error(e);
            }
            match state.nodes.get_mut(&ino.0) {
                Some(Content::File { data, .. }) => data.resize(size as usize, 0),
                Some(Content::Dir { .. }) => return reply.error(Errno::EISDIR),
                None => return reply.error(Errno::ENOENT),
            }
        }
        match state.attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut state = self.state();
        let dir = Content::Dir {
            entries: BTreeMap::new(),
            durable: BTreeMap::new(),
        };
        match state.make(parent.0, name, dir) {
            Ok(ino) => reply.entry(&TTL, &state.attr(ino).expect("made"), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.state();
        let file = Content::File {
            data: Vec::new(),
            durable: Vec::new(),
        };
        match state.make(parent.0, name, file) {
            Ok(ino) => reply.created(
                &TTL,
                &state.attr(ino).expect("made"),
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.state().remove(parent.0, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.state().remove(parent.0, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        let renamed = state.change().and_then(|()| {
            let ino = state.child(parent.0, name)?;
            if let Ok(old) = state.child(newparent.0, newname)
                && matches!(state.nodes.get(&old), Some(Content::Dir { .. }))
                && !state.is_empty_dir(old)
            {
                return Err(Errno::ENOTEMPTY);
            }
            state.entries(parent.0)?.remove(name);
            state.entries(newparent.0)?.insert(newname.to_owned(), ino);
            Ok(())
        });
        match renamed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.state().nodes.get(&ino.0) {
            Some(Content::File { data, .. }) => {
                let start = (offset as usize).min(data.len());
                let end = (start + size as usize).min(data.len());
                reply.data(&data[start..end]);
            }
            Some(Content::Dir { .. }) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        bytes: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.state();
        if let Err(e) = state.change() {
            return reply.error(e);
        }
        match state.nodes.get_mut(&ino.0) {
            Some(Content::File { data, .. }) => {
                let end = offset as usize + bytes.len();
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[offset as usize..end].copy_from_slice(bytes);
                reply.written(bytes.len() as u32);
            }
            Some(Content::Dir { .. }) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        if let Err(e) = state.change() {
            return reply.error(e);
        }
        match state.nodes.get_mut(&ino.0) {
            Some(Content::File { data, durable }) => *durable = data.clone(),
            Some(Content::Dir { entries, durable }) => *durable = entries.clone(),
            None => return reply.error(Errno::ENOENT),
        }
        reply.ok();
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let state = self.state();
        let Some(Content::Dir { entries, .. }) = state.nodes.get(&ino.0) else {
            return reply.error(Errno::ENOTDIR);
        };
        let mut listing = vec![
            (ino.0, FileType::Directory, OsString::from(".")),
            (ROOT, FileType::Directory, OsString::from("..")),
        ];
        for (name, child) in entries {
            let kind = match state.nodes.get(child) {
                Some(Content::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            listing.push((*child, kind, name.clone()));
        }
        for (i, (child, kind, name)) in listing.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        if let Err(e) = state.change() {
            return reply.error(e);
        }
        match state.nodes.get_mut(&ino.0) {
            Some(Content::Dir { entries, durable }) => *durable = entries.clone(),
            Some(Content::File { .. }) => return reply.error(Errno::ENOTDIR),
            None => return reply.error(Errno::ENOENT),
        }
        reply.ok();
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}
