//! How a binary upload's bytes reach the disk.
//!
//! Every upload is fsynced before its 226, so the page cache buys nothing:
//! the bytes must reach the disk before the client hears back anyway. Where
//! the filesystem allows, [`DiskWriter`] therefore writes with `O_DIRECT`,
//! from the upload's own buffers straight to the device: no copy into the
//! page cache, no writeback to wait for in the final fsync. Direct I/O
//! wants aligned buffers, offsets and lengths, so an upload that starts at
//! an unaligned offset (REST, APPE), the unaligned tail of a file, and
//! filesystems that refuse `O_DIRECT` (EINVAL) are written through the page
//! cache instead, with writeback started as the data arrives.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// Alignment of direct writes: buffer addresses, file offsets and lengths
/// are multiples of it. 4 KiB covers the logical block size of common
/// devices; a device that wants more refuses with EINVAL, and the upload
/// falls back to the page cache.
pub const DIRECT_ALIGN: usize = 4096;

/// Through the page cache, start writing back every this many bytes, so
/// the fsync before 226 finds most of the file already on disk.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// A zeroed byte buffer whose start is aligned to [`DIRECT_ALIGN`].
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    pub fn new(len: usize) -> AlignedBuf {
        let storage = vec![0u8; len + DIRECT_ALIGN];
        let start = storage.as_ptr().align_offset(DIRECT_ALIGN);
        AlignedBuf {
            storage,
            start,
            len,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// Writes an upload sequentially from a starting offset, directly to the
/// device while it can, through the page cache otherwise. Blocking: it runs
/// on tokio's blocking pool.
pub struct DiskWriter {
    file: File,
    /// Where the next byte goes.
    offset: u64,
    /// `O_DIRECT` is set on the file.
    direct: bool,
    /// Through the page cache: how far writeback has been started.
    written_back: u64,
}

impl DiskWriter {
    /// A writer appending at `start` in `file`, direct when `start` is
    /// aligned and the filesystem takes `O_DIRECT`.
    pub fn new(file: File, start: u64) -> DiskWriter {
        let direct = start % DIRECT_ALIGN as u64 == 0 && set_direct(&file, true).is_ok();
        DiskWriter {
            file,
            offset: start,
            direct,
            written_back: start,
        }
    }

    /// Whether the next aligned write goes straight to the device.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Writes `data` after what was written so far. Direct writes need
    /// `data` to start at an aligned address (an [`AlignedBuf`]); an
    /// unaligned length ends direct I/O for the rest of the upload, as only
    /// the last piece of an upload has one.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let mut rest = data;
        if self.direct {
            let aligned = data.len() - data.len() % DIRECT_ALIGN;
            let direct_ok = data.as_ptr().align_offset(DIRECT_ALIGN) == 0;
            if direct_ok {
                match self.file.write_all_at(&data[..aligned], self.offset) {
                    Ok(()) => {
                        self.offset += aligned as u64;
                        self.written_back = self.offset;
                        rest = &data[aligned..];
                    }
                    // The filesystem or device refuses this direct write:
                    // the page cache takes the upload from here (a partly
                    // written piece is written again at the same offset).
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                    Err(e) => return Err(e),
                }
            }
            if !rest.is_empty() {
                self.stop_direct()?;
            }
        }
        if !rest.is_empty() {
            self.file.write_all_at(rest, self.offset)?;
            self.offset += rest.len() as u64;
            if self.offset - self.written_back >= WRITEBACK_EVERY {
                start_writeback(
                    &self.file,
                    self.written_back,
                    self.offset - self.written_back,
                );
                self.written_back = self.offset;
            }
        }
        Ok(())
    }

    /// Ends the upload's writes: the file is left without `O_DIRECT` and
    /// positioned after the last byte written, as sequential writes would
    /// leave it. Durability is the caller's fsync.
    pub fn finish(mut self) -> io::Result<()> {
        if self.direct {
            self.stop_direct()?;
        }
        io::Seek::seek(&mut self.file, io::SeekFrom::Start(self.offset))?;
        Ok(())
    }

    fn stop_direct(&mut self) -> io::Result<()> {
        self.direct = false;
        set_direct(&self.file, false)
    }
}

/// Sets or clears `O_DIRECT` on the open file (shared by its duplicates).
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on an open descriptor with integer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts writeback of `len` bytes at `offset`, so that the disk works
/// while the rest arrives. It only starts it: durability still comes from
/// the fsync at commit.
fn start_writeback(file: &File, offset: u64, len: u64) {
    // SAFETY: sync_file_range on an open fd; advisory only, so its result
    // does not matter.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as i64,
            len as i64,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    fn flags(file: &File) -> i32 {
        // SAFETY: fcntl F_GETFL on an open descriptor.
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) }
    }

    /// Writes `pieces` from aligned buffers through a writer starting at
    /// `prefix.len()`, after `prefix` was written normally; returns the
    /// file's contents and whether the writer began direct.
    fn write_pieces(dir: &std::path::Path, prefix: &[u8], pieces: &[Vec<u8>]) -> (Vec<u8>, bool) {
        let path = dir.join("upload");
        std::fs::write(&path, prefix).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut writer = DiskWriter::new(file.try_clone().unwrap(), prefix.len() as u64);
        let began_direct = writer.is_direct();
        for piece in pieces {
            let mut buf = AlignedBuf::new(piece.len());
            buf.as_mut_slice().copy_from_slice(piece);
            writer.write(buf.as_slice()).unwrap();
        }
        writer.finish().unwrap();
        assert_eq!(flags(&file) & libc::O_DIRECT, 0, "O_DIRECT left set");
        let end = io::Seek::stream_position(&mut &file).unwrap();
        let contents = std::fs::read(&path).unwrap();
        assert_eq!(end, contents.len() as u64, "position after the last byte");
        (contents, began_direct)
    }

    /// Whether `dir`'s filesystem opens files with O_DIRECT.
    fn direct_io_allowed(dir: &std::path::Path) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(dir.join("probe"))
            .is_ok()
    }

    #[test]
    fn aligned_buffers_are_aligned() {
        for len in [0, 1, 4096, 65536 + 3] {
            let mut buf = AlignedBuf::new(len);
            assert_eq!(buf.as_slice().len(), len);
            assert_eq!(buf.as_mut_slice().as_ptr().align_offset(DIRECT_ALIGN), 0);
        }
    }

    /// Full pieces then an unaligned tail, from an aligned start: direct
    /// on a filesystem that allows it (the test directory's), and the
    /// bytes are exactly those written either way.
    #[test]
    fn writes_every_byte_in_order_with_an_unaligned_tail() {
        let dir = tempfile::tempdir().unwrap();
        let pieces = vec![
            pattern(64 * 1024, 1),
            pattern(64 * 1024, 2),
            pattern(5000, 3),
        ];
        let (contents, direct) = write_pieces(dir.path(), &[], &pieces);
        assert_eq!(contents, pieces.concat());
        assert_eq!(direct, direct_io_allowed(dir.path()));
    }

    /// A resumed upload from an unaligned offset goes through the page
    /// cache from the start and keeps the prefix.
    #[test]
    fn an_unaligned_start_is_not_direct() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = pattern(1000, 9);
        let pieces = vec![pattern(8192, 4), pattern(10, 5)];
        let (contents, direct) = write_pieces(dir.path(), &prefix, &pieces);
        assert!(!direct);
        assert_eq!(contents, [prefix, pieces.concat()].concat());
    }

    /// An aligned resume offset keeps direct I/O where the filesystem
    /// allows it; data from an unaligned buffer address is still written.
    #[test]
    fn aligned_resume_and_unaligned_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = pattern(8192, 7);
        let (contents, direct) = write_pieces(dir.path(), &prefix, &[pattern(4096, 8)]);
        assert_eq!(contents, [prefix.clone(), pattern(4096, 8)].concat());
        // Where O_DIRECT works, an unaligned address ends direct I/O but
        // loses nothing.
        if direct {
            let path = dir.path().join("upload");
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            let mut writer = DiskWriter::new(file, 8192);
            let data = pattern(4096 + 1, 6);
            writer.write(&data[1..]).unwrap();
            assert!(!writer.is_direct());
            writer.finish().unwrap();
            assert_eq!(
                std::fs::read(&path).unwrap(),
                [prefix, data[1..].to_vec()].concat()
            );
        }
    }
}
