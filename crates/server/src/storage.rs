//! File access for one user, confined to that user's home directory.
//!
//! Every operation goes through a cap-std [`Dir`] handle opened on the home
//! directory. cap-std resolves each path beneath that handle (openat2
//! `RESOLVE_BENEATH` where the kernel has it, component-wise resolution
//! otherwise), so neither `..`, absolute paths nor symlinks can reach outside;
//! [`VPath`] only gives clients a tidy view of the same tree.
//!
//! Uploads go to a hidden temporary file beside the target, are fsynced, and
//! are renamed over the target only when the transfer completed ([`Upload`]).

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use cap_std::fs::{Dir, OpenOptions};
use tokio::sync::mpsc;

use crate::listing::Entry;
use crate::reply::Reply;
use crate::vpath::VPath;

/// Names of in-flight uploads start with this; they are hidden from listings
/// and cannot be addressed by clients.
pub const UPLOAD_PREFIX: &str = ".kubeftp-upload-";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("permission denied: this account is read-only")]
    ReadOnly,
    #[error("file name not allowed")]
    BadName,
    #[error("not a plain file")]
    NotAFile,
    #[error("restart offset {0} is beyond the end of the file")]
    BadRestart(u64),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl StorageError {
    /// The FTP reply for this error. Messages never include server paths.
    pub fn reply(&self) -> Reply {
        match self {
            StorageError::ReadOnly => {
                Reply::new(550, "Permission denied: this account is read-only")
            }
            StorageError::BadName => Reply::new(553, "File name not allowed"),
            StorageError::NotAFile => Reply::new(550, "Not a plain file"),
            StorageError::BadRestart(_) => {
                Reply::new(554, "Restart offset is beyond the end of the file")
            }
            StorageError::Io(e) => io_reply(e),
        }
    }
}

/// The FTP reply for a failed file operation.
pub fn io_reply(e: &io::Error) -> Reply {
    use io::ErrorKind as K;
    match e.kind() {
        K::NotFound => Reply::new(550, "No such file or directory"),
        K::PermissionDenied => Reply::new(550, "Permission denied"),
        K::AlreadyExists => Reply::new(550, "File exists"),
        K::DirectoryNotEmpty => Reply::new(550, "Directory not empty"),
        K::NotADirectory => Reply::new(550, "Not a directory"),
        K::IsADirectory => Reply::new(550, "Is a directory"),
        K::StorageFull | K::QuotaExceeded => Reply::new(452, "Insufficient storage space"),
        K::FileTooLarge => Reply::new(552, "File too large for this file system"),
        // Permanent for this path: retrying (a 4xx) cannot help.
        K::InvalidFilename => Reply::new(553, "File name not allowed: too long"),
        K::InvalidInput => Reply::new(550, "Not possible for this path"),
        K::ReadOnlyFilesystem => Reply::new(550, "Read-only file system"),
        K::CrossesDevices => Reply::new(550, "Cannot move across file systems"),
        K::TooManyLinks => Reply::new(550, "Too many links"),
        _ => Reply::new(451, "Local error in processing"),
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// How an upload relates to an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// STOR: replace.
    Replace,
    /// REST n + STOR: keep the first n bytes, write from there.
    Resume(u64),
    /// APPE: keep all existing bytes.
    Append,
}

/// One user's view of the file tree.
#[derive(Clone)]
pub struct Storage {
    home: Arc<Dir>,
    read_only: bool,
}

impl Storage {
    /// Opens (creating if needed) `home`, a path relative to `root`.
    pub fn open(root: &Path, home: &str, read_only: bool) -> io::Result<Storage> {
        let root = Dir::open_ambient_dir(root, cap_std::ambient_authority())?;
        let home_rel = VPath::root().resolve(home).relative();
        root.create_dir_all(&home_rel)?;
        Ok(Storage {
            home: Arc::new(root.open_dir(&home_rel)?),
            read_only,
        })
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Runs a blocking file operation on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Dir) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let home = self.home.clone();
        tokio::task::spawn_blocking(move || op(&home))
            .await
            .map_err(|e| StorageError::Io(io::Error::other(e)))?
    }

    fn check_writable(&self, path: &VPath) -> Result<()> {
        if self.read_only {
            return Err(StorageError::ReadOnly);
        }
        check_name(path)
    }

    pub async fn entry(&self, path: &VPath) -> Result<Entry> {
        check_name(path)?;
        let rel = path.relative();
        let name = path.file_name().unwrap_or("/").to_string();
        self.blocking(move |home| Ok(entry_from(name, &home.metadata(rel)?)))
            .await
    }

    pub async fn is_dir(&self, path: &VPath) -> bool {
        matches!(self.entry(path).await, Ok(e) if e.is_dir)
    }

    /// Streams the entries of a directory (or the single entry of a file)
    /// through a bounded channel, so huge directories take bounded memory.
    /// The directory is read in batches, one blocking job each, so a client
    /// that reads its listing slowly holds no blocking thread meanwhile.
    pub async fn list(&self, path: &VPath) -> Result<mpsc::Receiver<io::Result<Entry>>> {
        const BATCH: usize = 64;
        let first = self.entry(path).await?;
        let (tx, rx) = mpsc::channel(BATCH);
        if !first.is_dir {
            tx.send(Ok(first)).await.ok();
            return Ok(rx);
        }
        let rel = path.relative();
        let mut entries = {
            let rel = rel.clone();
            self.blocking(move |home| Ok(home.read_dir(&rel)?)).await?
        };
        let home = self.home.clone();
        tokio::spawn(async move {
            loop {
                let (home, rel) = (home.clone(), rel.clone());
                let batch = tokio::task::spawn_blocking(move || {
                    let batch: Vec<_> = entries
                        .by_ref()
                        .take(BATCH)
                        .map(|dirent| entry_of(&home, &rel, dirent))
                        .collect();
                    (entries, batch)
                })
                .await;
                let Ok((rest, batch)) = batch else { return };
                if batch.is_empty() {
                    return;
                }
                for item in batch {
                    let item = match item {
                        Ok(Some(entry)) if !hidden(&entry.name) => Ok(entry),
                        Ok(_) => continue,
                        Err(e) => Err(e),
                    };
                    if tx.send(item).await.is_err() {
                        return; // the transfer was aborted
                    }
                }
                entries = rest;
            }
        });
        Ok(rx)
    }

    /// Opens a plain file for reading at `offset`.
    pub async fn open_read(&self, path: &VPath, offset: u64) -> Result<(tokio::fs::File, u64)> {
        check_name(path)?;
        let rel = path.relative();
        self.blocking(move |home| {
            let mut file = home.open(rel)?.into_std();
            let meta = file.metadata()?;
            if !meta.is_file() {
                return Err(StorageError::NotAFile);
            }
            if offset > meta.len() {
                return Err(StorageError::BadRestart(offset));
            }
            file.seek(SeekFrom::Start(offset))?;
            Ok((tokio::fs::File::from_std(file), meta.len()))
        })
        .await
    }

    pub async fn mkdir(&self, path: &VPath) -> Result<()> {
        self.check_writable(path)?;
        let rel = path.relative();
        self.blocking(move |home| Ok(home.create_dir(rel)?)).await
    }

    pub async fn rmdir(&self, path: &VPath) -> Result<()> {
        self.check_writable(path)?;
        if path.is_root() {
            return Err(StorageError::Io(io::ErrorKind::PermissionDenied.into()));
        }
        let rel = path.relative();
        self.blocking(move |home| Ok(home.remove_dir(rel)?)).await
    }

    pub async fn delete(&self, path: &VPath) -> Result<()> {
        self.check_writable(path)?;
        let rel = path.relative();
        self.blocking(move |home| Ok(home.remove_file(rel)?)).await
    }

    pub async fn rename(&self, from: &VPath, to: &VPath) -> Result<()> {
        self.check_writable(from)?;
        self.check_writable(to)?;
        if from.is_root() || to.is_root() {
            return Err(StorageError::Io(io::ErrorKind::PermissionDenied.into()));
        }
        let (from, to) = (from.relative(), to.relative());
        self.blocking(move |home| Ok(home.rename(from, home, to)?))
            .await
    }

    /// Starts an upload to `path`. Nothing is visible under the target name
    /// until [`Upload::commit`].
    pub async fn begin_upload(&self, path: &VPath, mode: UploadMode) -> Result<Upload> {
        self.check_writable(path)?;
        let Some(target) = path.file_name().map(str::to_owned) else {
            return Err(StorageError::Io(io::ErrorKind::IsADirectory.into()));
        };
        let parent_rel = path.parent().relative();
        self.blocking(move |home| {
            let dir = home.open_dir(parent_rel)?;
            // The rename at commit could not replace a directory: refuse
            // now, before the client sends the data. A link (to anything)
            // is replaced, not followed.
            match dir.symlink_metadata(&target) {
                Ok(meta) if meta.is_dir() => {
                    return Err(StorageError::Io(io::ErrorKind::IsADirectory.into()));
                }
                _ => {}
            }
            let temp = format!("{UPLOAD_PREFIX}{:016x}", rand::random::<u64>());
            let mut file = dir
                .open_with(&temp, OpenOptions::new().write(true).create_new(true))?
                .into_std();
            let mut upload = Upload {
                dir: Some(dir),
                temp,
                target,
                file: None,
            };
            let keep = match mode {
                UploadMode::Replace => None,
                UploadMode::Resume(n) => Some(n),
                UploadMode::Append => Some(u64::MAX),
            };
            if let Some(keep) = keep {
                copy_prefix(
                    upload.dir.as_ref().unwrap(),
                    &upload.target,
                    keep,
                    mode,
                    &mut file,
                )?;
            }
            upload.file = Some(tokio::fs::File::from_std(file));
            Ok(upload)
        })
        .await
    }

    /// A name for STOU that does not exist yet in `dir`.
    pub async fn unique_name(&self, dir: &VPath) -> Result<VPath> {
        for _ in 0..16 {
            let candidate = dir.join(&format!("stou-{:08x}", rand::random::<u32>()));
            match self.entry(&candidate).await {
                Err(StorageError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(candidate);
                }
                Err(other) => return Err(other),
                Ok(_) => continue,
            }
        }
        Err(StorageError::Io(io::ErrorKind::AlreadyExists.into()))
    }
}

/// Copies the first `keep` bytes of an existing `target` into the new
/// temporary file (all of it for APPE). A missing target is an empty file.
fn copy_prefix(
    dir: &Dir,
    target: &str,
    keep: u64,
    mode: UploadMode,
    out: &mut std::fs::File,
) -> Result<()> {
    let existing = match dir.open(target) {
        Ok(f) => f.into_std(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // APPE to, or REST 0 on, a missing file starts an empty one.
            return if mode == UploadMode::Append || keep == 0 {
                Ok(())
            } else {
                Err(StorageError::BadRestart(keep))
            };
        }
        Err(e) => return Err(e.into()),
    };
    let len = existing.metadata()?.len();
    if mode != UploadMode::Append && keep > len {
        return Err(StorageError::BadRestart(keep));
    }
    io::copy(&mut existing.take(keep), out)?;
    Ok(())
}

/// An upload in progress. Dropping it without [`commit`](Upload::commit)
/// removes the temporary file, so an interrupted transfer leaves the target
/// as it was.
pub struct Upload {
    dir: Option<Dir>,
    temp: String,
    target: String,
    file: Option<tokio::fs::File>,
}

impl Upload {
    pub fn file(&mut self) -> &mut tokio::fs::File {
        self.file
            .as_mut()
            .expect("upload file is present until commit")
    }

    /// Flushes and fsyncs the data, renames it over the target and fsyncs
    /// the directory, so a 226 reply means the file is durable.
    pub async fn commit(mut self) -> Result<()> {
        let mut file = self
            .file
            .take()
            .expect("upload file is present until commit");
        tokio::io::AsyncWriteExt::flush(&mut file).await?;
        file.sync_all().await?;
        drop(file);
        let dir = self.dir.take().expect("upload dir is present until commit");
        let (temp, target) = (std::mem::take(&mut self.temp), self.target.clone());
        let result = tokio::task::spawn_blocking(move || -> Result<()> {
            if let Err(e) = dir.rename(&temp, &dir, &target) {
                dir.remove_file(&temp).ok();
                return Err(e.into());
            }
            // Make the rename itself durable (the dir handle is O_PATH).
            dir.open(".")?.sync_all()?;
            Ok(())
        })
        .await;
        result.map_err(|e| StorageError::Io(io::Error::other(e)))?
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            self.file.take();
            // Best effort: a failed removal leaves only a hidden temp file.
            dir.remove_file(&self.temp).ok();
        }
    }
}

/// Names clients may not use: in-flight uploads, line breaks (which would
/// break the framing of listings and replies; CR is the only one a command
/// line can carry), and NUL anywhere in the path (no file name has one).
fn check_name(path: &VPath) -> Result<()> {
    let hidden_name = path.file_name().is_some_and(hidden);
    if hidden_name || path.contains('\0') {
        return Err(StorageError::BadName);
    }
    Ok(())
}

/// Entries left out of listings: in-flight uploads, and names with line
/// breaks (made by other means than FTP), which no listing line can carry.
fn hidden(name: &str) -> bool {
    name.starts_with(UPLOAD_PREFIX) || name.contains(['\r', '\n'])
}

/// An entry of the directory `dir` (relative to `home`) as listed. A
/// symbolic link is listed as what it leads to, as every other command
/// (SIZE, RETR, CWD, MLST) sees it; one that leads nowhere or out of the
/// home cannot be used, and is left out (`None`).
fn entry_of(
    home: &Dir,
    dir: &Path,
    dirent: io::Result<cap_std::fs::DirEntry>,
) -> io::Result<Option<Entry>> {
    let dirent = dirent?;
    let name = dirent.file_name().to_string_lossy().into_owned();
    if !dirent.file_type()?.is_symlink() {
        return Ok(Some(entry_from(name, &dirent.metadata()?)));
    }
    Ok(home
        .metadata(dir.join(dirent.file_name()))
        .ok()
        .map(|target| entry_from(name, &target)))
}

fn entry_from(name: String, meta: &cap_std::fs::Metadata) -> Entry {
    Entry {
        name,
        is_dir: meta.is_dir(),
        size: meta.len(),
        modified: meta
            .modified()
            .map(|t| t.into_std())
            .unwrap_or(SystemTime::UNIX_EPOCH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Storage) {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("secret")).unwrap();
        std::fs::write(root.path().join("secret/key"), "top").unwrap();
        let storage = Storage::open(root.path(), "alice", false).unwrap();
        (root, storage)
    }

    /// Listings nobody reads hold no blocking thread: with more of them
    /// than the blocking pool has threads, other file work still runs. (A
    /// hang is what this catches; the timeout is generous.)
    #[test]
    fn unread_listings_leave_the_blocking_pool_free() {
        let (root, storage) = setup();
        let dir = root.path().join("alice/many");
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..300 {
            std::fs::write(dir.join(format!("f{i}")), "").unwrap();
        }
        let path = VPath::root().join("many");
        let outcome = crate::pool_test::with_two_blocking_threads(|| async {
            let mut unread = vec![];
            for _ in 0..4 {
                unread.push(storage.list(&path).await.unwrap());
            }
            let entry = storage.entry(&path).await.unwrap();
            // Reading on still gets every entry.
            let mut listed = 0;
            while let Some(entry) = unread[0].recv().await {
                entry.unwrap();
                listed += 1;
            }
            (entry.is_dir, listed)
        });
        assert_eq!(outcome, (true, 300));
    }

    #[tokio::test]
    async fn symlinks_out_of_home_are_refused() {
        let (root, storage) = setup();
        std::os::unix::fs::symlink(root.path().join("secret"), root.path().join("alice/abs"))
            .unwrap();
        std::os::unix::fs::symlink("../secret", root.path().join("alice/rel")).unwrap();
        for p in ["abs/key", "rel/key"] {
            let err = storage
                .open_read(&VPath::root().resolve(p), 0)
                .await
                .unwrap_err();
            assert_eq!(err.reply().code, 550, "{p} must not be readable");
        }
        assert!(storage.list(&VPath::root().resolve("rel")).await.is_err());
    }

    #[tokio::test]
    async fn dropped_upload_leaves_target_untouched() {
        let (root, storage) = setup();
        std::fs::write(root.path().join("alice/f"), "original").unwrap();
        let path = VPath::root().resolve("f");
        let mut up = storage
            .begin_upload(&path, UploadMode::Replace)
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(up.file(), b"partial")
            .await
            .unwrap();
        drop(up);
        assert_eq!(
            std::fs::read(root.path().join("alice/f")).unwrap(),
            b"original"
        );
        assert_eq!(
            std::fs::read_dir(root.path().join("alice"))
                .unwrap()
                .count(),
            1,
            "temp file removed"
        );
    }

    #[tokio::test]
    async fn resume_and_append_keep_existing_bytes() {
        let (root, storage) = setup();
        std::fs::write(root.path().join("alice/f"), "0123456789").unwrap();
        let path = VPath::root().resolve("f");
        let mut up = storage
            .begin_upload(&path, UploadMode::Resume(4))
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(up.file(), b"ab")
            .await
            .unwrap();
        up.commit().await.unwrap();
        assert_eq!(
            std::fs::read(root.path().join("alice/f")).unwrap(),
            b"0123ab"
        );
        let mut up = storage
            .begin_upload(&path, UploadMode::Append)
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(up.file(), b"!")
            .await
            .unwrap();
        up.commit().await.unwrap();
        assert_eq!(
            std::fs::read(root.path().join("alice/f")).unwrap(),
            b"0123ab!"
        );
        let err = storage
            .begin_upload(&path, UploadMode::Resume(99))
            .await
            .err()
            .unwrap();
        assert_eq!(err.reply().code, 554);
    }

    #[tokio::test]
    async fn read_only_refuses_writes() {
        let root = tempfile::tempdir().unwrap();
        let storage = Storage::open(root.path(), "/", true).unwrap();
        let p = VPath::root().resolve("x");
        assert!(matches!(
            storage.mkdir(&p).await,
            Err(StorageError::ReadOnly)
        ));
        assert!(matches!(
            storage.begin_upload(&p, UploadMode::Replace).await,
            Err(StorageError::ReadOnly)
        ));
    }

    #[tokio::test]
    async fn temp_names_are_hidden_and_unaddressable() {
        let (root, storage) = setup();
        std::fs::write(root.path().join(format!("alice/{UPLOAD_PREFIX}x")), "").unwrap();
        std::fs::write(root.path().join("alice/visible"), "").unwrap();
        let mut rx = storage.list(&VPath::root()).await.unwrap();
        let mut names = vec![];
        while let Some(e) = rx.recv().await {
            names.push(e.unwrap().name);
        }
        assert_eq!(names, vec!["visible"]);
        let hidden = VPath::root().resolve(&format!("{UPLOAD_PREFIX}x"));
        assert!(matches!(
            storage.delete(&hidden).await,
            Err(StorageError::BadName)
        ));
    }
}
