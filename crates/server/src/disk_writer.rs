//! How a binary upload's bytes reach the disk.
//!
//! Every upload is fsynced before its 226, so the page cache only helps if
//! it gets the bytes to the disk sooner. Two routes, chosen per upload
//! ([`Route`]):
//!
//! - Direct (`O_DIRECT`): from the upload's own buffers straight to the
//!   device, no copy into the page cache. One write at a time per upload,
//!   so it fills the device's queue only when many uploads run at once.
//! - Page cache: written in pieces of at most [`PAGE_CACHE_PIECE`], with
//!   writeback started every 8 MiB; the kernel's writeback keeps several
//!   requests in flight, which a lone direct writer does not. At most eight
//!   started ranges are outstanding ([`WRITEBACK`]): past that the oldest
//!   is waited for and dropped from the page cache, so one upload holds a
//!   bounded amount of dirty memory (charged to the pod) and does not push
//!   other files out of the cache.
//!
//! Direct I/O wants aligned buffers, offsets and lengths, so on the direct
//! route an upload that starts at an unaligned offset (REST, APPE), the
//! unaligned tail of a file, and filesystems that refuse `O_DIRECT`
//! (EINVAL) take the page-cache route instead.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::buffer_pool::{Pool, Slot};
use crate::transfer::RECV_BUDGET;

/// Alignment of direct writes: buffer addresses, file offsets and lengths
/// are multiples of it. 4 KiB covers the logical block size of common
/// devices; a device that wants more refuses with EINVAL, and the upload
/// falls back to the page cache.
pub const DIRECT_ALIGN: usize = 4096;

/// Largest single write into the page cache. On the benchmark machine
/// (ext4, Linux 6.18) writes of 2 MiB with writeback every 8 MiB reached
/// the disk at 0.4x the rate of 1 MiB writes; 512 KiB and 1 MiB did alike.
const PAGE_CACHE_PIECE: usize = 1024 * 1024;

/// When the page-cache route starts writeback and waits for it.
#[derive(Clone, Copy, Debug)]
struct Writeback {
    /// Start writing back every this many bytes, so the fsync before 226
    /// finds most of the file already on disk.
    every: u64,
    /// Started ranges an upload may have outstanding.
    window: usize,
}

/// Writeback of 8 MiB ranges, at most 64 MiB of an upload's pages dirty or
/// in flight. A lone 1 GiB upload reached the disk at 1.30x the direct
/// route's rate with this window, 1.33x unbounded, 1.27x with twice the
/// window (fsync included; 8 interleaved rounds on the benchmark machine).
const WRITEBACK: Writeback = Writeback {
    every: 8 * 1024 * 1024,
    window: 8,
};

/// How an upload's bytes go to the disk; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Direct,
    PageCache,
}

/// Upload buffers' memory: up to twice the upload buffers' budget comes
/// from huge pages (see [`crate::buffer_pool`]); past that, buffers are mappings
/// of their own.
static UPLOAD_POOL: Pool = Pool::new(2 * RECV_BUDGET);

/// Gives the kernel back the upload pool's chunks that no buffer uses.
pub fn release_empty_buffers() {
    UPLOAD_POOL.release_empty();
}

/// Memory the upload pool has mapped now, in use or kept empty.
pub fn pooled_bytes() -> usize {
    UPLOAD_POOL.chunks() * crate::buffer_pool::CHUNK
}

/// Bytes of upload buffers mapped outside the pool now.
static MAPPED_OUTSIDE: AtomicUsize = AtomicUsize::new(0);

/// Memory all upload buffers hold now: the pool's chunks (in use or kept
/// empty) and the buffers mapped outside it. Served as a metric, as it is
/// the part of the server's memory that grows with concurrent uploads.
pub fn upload_buffer_bytes() -> usize {
    pooled_bytes() + MAPPED_OUTSIDE.load(Ordering::Relaxed)
}

/// A byte buffer whose start is aligned to [`DIRECT_ALIGN`]: a slot of the
/// upload pool, physically contiguous where the kernel gave a huge page, or
/// else an anonymous mapping of its own (advised for huge pages too, which
/// large ones get). A mapping of its own goes back to the kernel when the
/// buffer is dropped; a pool chunk once uploads have stopped for a moment
/// ([`release_empty_buffers`]). From the heap, the buffers of a burst of
/// uploads stayed with the process afterwards: after rounds of 1000 uploads
/// at once its PSS read 144-201 MiB where the first round's read 16; with
/// mappings, 33-37 (`make bench-ftp`).
pub struct AlignedBuf {
    memory: Memory,
}

enum Memory {
    Pooled(Slot),
    Mapped { map: OwnMapping, len: usize },
}

/// A buffer's mapping outside the pool, counted in [`MAPPED_OUTSIDE`]
/// while it lives.
struct OwnMapping(memmap2::MmapMut);

impl OwnMapping {
    fn new(len: usize) -> io::Result<OwnMapping> {
        let map = memmap2::MmapMut::map_anon(len)?;
        MAPPED_OUTSIDE.fetch_add(map.len(), Ordering::Relaxed);
        Ok(OwnMapping(map))
    }
}

impl Drop for OwnMapping {
    fn drop(&mut self) {
        MAPPED_OUTSIDE.fetch_sub(self.0.len(), Ordering::Relaxed);
    }
}

impl AlignedBuf {
    /// Fails when the kernel has no memory to map.
    pub fn new(len: usize) -> io::Result<AlignedBuf> {
        if let Some(slot) = UPLOAD_POOL.take(len) {
            return Ok(AlignedBuf {
                memory: Memory::Pooled(slot),
            });
        }
        // A mapping is never empty; one page stands in for a zero length.
        let map = OwnMapping::new(len.max(1))?;
        // Advisory: only whole aligned huge pages inside the mapping count.
        let _ = map.0.advise(memmap2::Advice::HugePage);
        Ok(AlignedBuf {
            memory: Memory::Mapped { map, len },
        })
    }

    /// This buffer at `len` bytes for its next fill (contents not kept):
    /// itself if it has that size and a pool slot; else a new buffer, which
    /// takes a slot if one is free. In a burst of uploads the first ones
    /// fill the pool before their buffers shrink; the others' buffers move
    /// in as slots free up (without this, 100 uploads at once kept 23-43
    /// writes in flight instead of 80-85).
    pub fn renew(self, len: usize) -> io::Result<AlignedBuf> {
        match self.memory {
            Memory::Pooled(_) if self.as_slice().len() == len => Ok(self),
            Memory::Mapped { len: mapped, .. } if mapped == len => match UPLOAD_POOL.take(len) {
                Some(slot) => Ok(AlignedBuf {
                    memory: Memory::Pooled(slot),
                }),
                None => Ok(self),
            },
            _ => {
                drop(self);
                AlignedBuf::new(len)
            }
        }
    }

    /// Whether the buffer is a slot of the upload pool.
    pub fn is_pooled(&self) -> bool {
        matches!(self.memory, Memory::Pooled(_))
    }

    pub fn as_slice(&self) -> &[u8] {
        match &self.memory {
            Memory::Pooled(slot) => slot.as_slice(),
            Memory::Mapped { map, len } => &map.0[..*len],
        }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match &mut self.memory {
            Memory::Pooled(slot) => slot.as_mut_slice(),
            Memory::Mapped { map, len } => &mut map.0[..*len],
        }
    }
}

/// Writes an upload sequentially from a starting offset, by its [`Route`].
/// Blocking: it runs on tokio's blocking pool.
pub struct DiskWriter {
    file: File,
    /// Where the next byte goes.
    offset: u64,
    /// `O_DIRECT` is set on the file.
    direct: bool,
    /// Through the page cache: where the next writeback range starts.
    written_back: u64,
    writeback: Writeback,
    /// Writeback ranges started and not yet waited for, oldest first.
    in_writeback: VecDeque<(u64, u64)>,
}

impl DiskWriter {
    /// A writer appending at `start` in `file`. The direct route is taken
    /// only when `start` is aligned and the filesystem takes `O_DIRECT`.
    pub fn new(file: File, start: u64, route: Route) -> DiskWriter {
        let direct = route == Route::Direct
            && start % DIRECT_ALIGN as u64 == 0
            && set_direct(&file, true).is_ok();
        DiskWriter {
            file,
            offset: start,
            direct,
            written_back: start,
            writeback: WRITEBACK,
            in_writeback: VecDeque::new(),
        }
    }

    /// The route the next aligned write takes.
    pub fn route(&self) -> Route {
        if self.direct {
            Route::Direct
        } else {
            Route::PageCache
        }
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
            self.write_through_cache(rest)?;
        }
        Ok(())
    }

    /// The page-cache route: bounded pieces, writeback started and waited
    /// for by [`Writeback`].
    fn write_through_cache(&mut self, data: &[u8]) -> io::Result<()> {
        for piece in data.chunks(PAGE_CACHE_PIECE) {
            self.file.write_all_at(piece, self.offset)?;
            self.offset += piece.len() as u64;
        }
        if self.offset - self.written_back >= self.writeback.every {
            let range = (self.written_back, self.offset - self.written_back);
            start_writeback(&self.file, range);
            self.in_writeback.push_back(range);
            self.written_back = self.offset;
        }
        while self.in_writeback.len() > self.writeback.window
            && let Some(oldest) = self.in_writeback.pop_front()
        {
            wait_for_writeback(&self.file, oldest)?;
            drop_from_cache(&self.file, oldest);
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

/// Starts writeback of a range (offset, length), so that the disk works
/// while the rest arrives. It only starts it: durability still comes from
/// the fsync at commit.
fn start_writeback(file: &File, (offset, len): (u64, u64)) {
    // SAFETY: sync_file_range on an open fd; advisory only, so its result
    // does not matter (a failed write shows in the fsync).
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as i64,
            len as i64,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

/// Waits until a range's writeback has finished (starting it for pages
/// dirtied since); an I/O error writing it is returned. It must not be
/// dropped: the kernel reports a writeback error once per open file, so
/// the fsync at commit would not see it again.
fn wait_for_writeback(file: &File, (offset, len): (u64, u64)) -> io::Result<()> {
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: sync_file_range on an open fd with integer arguments.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, flags) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops a range that is on disk from the page cache.
fn drop_from_cache(file: &File, (offset, len): (u64, u64)) {
    // SAFETY: fadvise on an open fd; the hint is advisory.
    unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            offset as i64,
            len as i64,
            libc::POSIX_FADV_DONTNEED,
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
        let mut writer = DiskWriter::new(
            file.try_clone().unwrap(),
            prefix.len() as u64,
            Route::Direct,
        );
        let began_direct = writer.route() == Route::Direct;
        for piece in pieces {
            let mut buf = AlignedBuf::new(piece.len()).unwrap();
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

    /// Which 4 KiB pages of the file's first `len` bytes are in the page
    /// cache (mincore on a mapping, which faults nothing in).
    fn resident_pages(file: &File, len: usize) -> Vec<bool> {
        let mut vec = vec![0u8; len.div_ceil(4096)];
        // SAFETY: a read-only shared mapping of an open file, unmapped
        // before returning; mincore writes one byte per page into `vec`.
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(map, libc::MAP_FAILED);
            assert_eq!(libc::mincore(map, len, vec.as_mut_ptr()), 0);
            libc::munmap(map, len);
        }
        vec.iter().map(|page| page & 1 == 1).collect()
    }

    /// tmpfs keeps its pages whatever the hints say.
    fn on_tmpfs(dir: &std::path::Path) -> bool {
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statfs into a zeroed struct, from a valid C string.
        unsafe {
            let mut fs: libc::statfs = std::mem::zeroed();
            assert_eq!(libc::statfs(path.as_ptr(), &mut fs), 0);
            fs.f_type == libc::TMPFS_MAGIC
        }
    }

    /// Through the page cache, no more than the window of started
    /// writeback ranges is outstanding at any time, the ranges waited for
    /// have left the page cache, and every byte arrives in order.
    #[test]
    fn the_page_cache_route_bounds_writeback_and_drops_what_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upload");
        let file = std::fs::OpenOptions::new()
            .read(true) // for the mapping in resident_pages
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let mut writer = DiskWriter::new(file.try_clone().unwrap(), 0, Route::PageCache);
        assert_eq!(writer.route(), Route::PageCache);
        assert_eq!(flags(&file) & libc::O_DIRECT, 0, "O_DIRECT set");
        writer.writeback = Writeback {
            every: 64 * 1024,
            window: 2,
        };
        let data = pattern(1024 * 1024 + 5, 3);
        for piece in data.chunks(48 * 1024) {
            writer.write(piece).unwrap();
            assert!(writer.in_writeback.len() <= 2);
        }
        let (still_outstanding, _) = writer.in_writeback[0];
        assert!(still_outstanding >= 512 * 1024, "ranges were waited for");
        writer.finish().unwrap();
        if !on_tmpfs(dir.path()) {
            let resident = resident_pages(&file, data.len());
            let dropped = &resident[..still_outstanding as usize / 4096];
            assert!(dropped.iter().all(|page| !page), "{resident:?}");
        }
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[test]
    fn aligned_buffers_are_aligned() {
        for len in [0, 1, 4096, 65536 + 3] {
            let mut buf = AlignedBuf::new(len).unwrap();
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
            let mut writer = DiskWriter::new(file, 8192, Route::Direct);
            let data = pattern(4096 + 1, 6);
            writer.write(&data[1..]).unwrap();
            assert_eq!(writer.route(), Route::PageCache);
            writer.finish().unwrap();
            assert_eq!(
                std::fs::read(&path).unwrap(),
                [prefix, data[1..].to_vec()].concat()
            );
        }
    }
}
