//! What moves over data connections: file contents in either direction
//! (with TYPE A line-ending conversion) and directory listings. Each function
//! owns its inputs, so a session can run it while still reading its control
//! connection (for ABOR and STAT).

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter, Interest};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::disk_writer::{AlignedBuf, DiskWriter};
use crate::idle::timed_out;
use crate::listing::Entry;

/// Copy buffer size: large enough that per-syscall cost vanishes.
const BUF_SIZE: usize = 256 * 1024;

/// Bytes moved so far, readable by STAT while the transfer runs.
pub type Progress = Arc<AtomicU64>;

/// Copies `from` to `to`, converting line endings when `ascii` is set:
/// LF to CRLF towards the client (`outbound`), CRLF to LF from it. Returns
/// the number of bytes read from `from`.
pub async fn copy<R, W>(
    mut from: R,
    mut to: W,
    ascii: Option<Direction>,
    progress: Progress,
) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF_SIZE];
    let mut converted = Vec::new();
    let mut converter = LineEndings::default();
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let chunk = match ascii {
            None => &buf[..n],
            Some(dir) => {
                converted.clear();
                converter.convert(dir, &buf[..n], &mut converted);
                &converted[..]
            }
        };
        to.write_all(chunk).await?;
        total += n as u64;
        progress.fetch_add(n as u64, Ordering::Relaxed);
    }
    if let Some(Direction::Inbound) = ascii {
        converter.finish(&mut converted);
        to.write_all(&converted).await?;
    }
    // Flushes; on a TLS data connection also sends close_notify, which
    // tells the client the file is complete.
    to.shutdown().await?;
    Ok(total)
}

/// Most bytes one sendfile(2) call may move; the socket buffer usually
/// takes less.
const SENDFILE_CHUNK: usize = 4 * 1024 * 1024;

/// Sends `file` from its current position (REST) to its end over a plain
/// TCP connection with sendfile(2): page cache to socket, no copy through
/// user space, no buffer per transfer. TLS and ASCII transfers use [`copy`].
/// A page-cache miss makes the call wait for the disk on this worker, as a
/// read would on a blocking-pool thread; readahead keeps that rare. Fails
/// with `TimedOut` when the client reads nothing for `idle_limit`.
pub async fn send_file(
    file: tokio::fs::File,
    mut to: TcpStream,
    progress: Progress,
    idle_limit: Duration,
) -> io::Result<u64> {
    let file = file.into_std().await;
    // SAFETY: fadvise on an fd we own; the hint is advisory.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
    let mut total = 0u64;
    loop {
        let sent = to.async_io(Interest::WRITABLE, || sendfile(&to, &file));
        let n = tokio::time::timeout(idle_limit, sent)
            .await
            .map_err(|_| timed_out(idle_limit))??;
        if n == 0 {
            break;
        }
        total += n;
        progress.fetch_add(n, Ordering::Relaxed);
    }
    tokio::time::timeout(idle_limit, to.shutdown())
        .await
        .map_err(|_| timed_out(idle_limit))??;
    Ok(total)
}

/// One sendfile(2) call from the file's current position.
fn sendfile(to: &TcpStream, file: &std::fs::File) -> io::Result<u64> {
    // SAFETY: both fds stay open across the call; a null offset uses and
    // advances the file position.
    let n = unsafe {
        libc::sendfile(
            to.as_raw_fd(),
            file.as_raw_fd(),
            std::ptr::null_mut(),
            SENDFILE_CHUNK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as u64)
    }
}

/// Upload buffers (two per binary upload: one filling, one being written)
/// of all running uploads together aim at this size, each upload's
/// between [`RECV_BUF_MIN`] and [`RECV_BUF_MAX`]. A lone upload gets large
/// buffers: each direct write is one trip to the device while the next
/// buffer fills, and 2 MiB writes took a single 1 GiB STOR to ~83% of the
/// disk's durable write rate where 512 KiB reached ~70% (`make bench-ftp`,
/// kubeftp alone, single phase, two runs each). Many uploads get small
/// ones, so memory stays bounded, and where uploads go through the page
/// cache (no direct I/O) the buffer is still in the CPU cache when it is
/// copied there: with 512 KiB each, 1000 buffered uploads at once spent
/// half the server's CPU in that copy and ran 2-5× slower
/// (`make bench-ftp`).
const RECV_BUDGET: usize = 16 * 1024 * 1024;
const RECV_BUF_MAX: usize = 2 * 1024 * 1024;
const RECV_BUF_MIN: usize = 64 * 1024;

/// Binary uploads running now, for [`recv_buf_size`].
static UPLOADS: AtomicUsize = AtomicUsize::new(0);

/// The buffer size for an upload when `running` uploads (itself
/// included) share [`RECV_BUDGET`].
fn recv_buf_size(running: usize) -> usize {
    (RECV_BUDGET / (2 * running.max(1))).clamp(RECV_BUF_MIN, RECV_BUF_MAX)
}

/// Counts an upload in [`UPLOADS`] while it lives.
struct Running;

impl Running {
    /// Counts one more upload; returns the count, itself included.
    fn start() -> (Running, usize) {
        (Running, UPLOADS.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        UPLOADS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Receives a binary upload into `file` (from its current position). The
/// socket is read into one buffer while the previous one is written on a
/// blocking thread, by a [`DiskWriter`]: directly to the device where it
/// can, so the fsync before 226 has little left to do. ASCII uploads use
/// [`copy`].
pub async fn receive_file<R: AsyncRead + Unpin>(
    mut from: R,
    file: &tokio::fs::File,
    progress: Progress,
) -> io::Result<u64> {
    let mut file = file.try_clone().await?.into_std().await;
    let start = io::Seek::stream_position(&mut file)?;
    // The writer travels to the blocking thread with each write and comes
    // back with the emptied buffer.
    let mut writer = Some(DiskWriter::new(file, start));
    let (_running, count) = Running::start();
    let size = recv_buf_size(count);
    let (mut buf, mut spare) = (AlignedBuf::new(size), Some(AlignedBuf::new(size)));
    let mut writing: Option<WriteJob> = None;
    let mut total = 0u64;
    loop {
        let n = fill(&mut from, buf.as_mut_slice()).await?;
        if let Some(job) = writing.take() {
            let (w, b) = job.await.map_err(io::Error::other)??;
            (writer, spare) = (Some(w), Some(b));
        }
        if n == 0 {
            break;
        }
        total += n as u64;
        progress.fetch_add(n as u64, Ordering::Relaxed);
        let chunk = std::mem::replace(&mut buf, spare.take().expect("the buffer is back"));
        let mut w = writer.take().expect("the writer is back after each write");
        writing = Some(tokio::task::spawn_blocking(move || -> io::Result<_> {
            w.write(&chunk.as_slice()[..n])?;
            Ok((w, chunk))
        }));
    }
    let w = writer
        .take()
        .expect("the writer is back after the last write");
    tokio::task::spawn_blocking(move || w.finish())
        .await
        .map_err(io::Error::other)??;
    Ok(total)
}

/// A write on the blocking pool: gives back the writer and the buffer.
type WriteJob = tokio::task::JoinHandle<io::Result<(DiskWriter, AlignedBuf)>>;

/// Reads until `buf` is full or the stream ends; returns the bytes read.
async fn fill<R: AsyncRead + Unpin>(from: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match from.read(&mut buf[n..]).await? {
            0 => break,
            m => n += m,
        }
    }
    Ok(n)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Server to client: LF becomes CRLF.
    Outbound,
    /// Client to server: CRLF becomes LF.
    Inbound,
}

/// Line-ending conversion that carries its state across buffer boundaries.
#[derive(Default)]
struct LineEndings {
    /// Outbound: the previous byte was CR. Inbound: a CR is held back.
    pending_cr: bool,
}

impl LineEndings {
    fn convert(&mut self, dir: Direction, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            match dir {
                Direction::Outbound => {
                    if b == b'\n' && !self.pending_cr {
                        out.push(b'\r');
                    }
                    self.pending_cr = b == b'\r';
                    out.push(b);
                }
                Direction::Inbound => {
                    if self.pending_cr && b != b'\n' {
                        out.push(b'\r');
                    }
                    self.pending_cr = b == b'\r';
                    if !self.pending_cr {
                        out.push(b);
                    }
                }
            }
        }
    }

    /// Inbound: a CR at the very end is data, not half a line ending.
    fn finish(&mut self, out: &mut Vec<u8>) {
        out.clear();
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

/// Writes a listing, one CRLF-terminated line per entry, as entries arrive.
pub async fn send_listing<W: AsyncWrite + Unpin>(
    mut entries: mpsc::Receiver<io::Result<Entry>>,
    to: W,
    format: impl Fn(&Entry) -> String,
    progress: Progress,
) -> io::Result<u64> {
    let mut out = BufWriter::new(to);
    let mut total = 0u64;
    while let Some(entry) = entries.recv().await {
        let line = format(&entry?);
        out.write_all(line.as_bytes()).await?;
        out.write_all(b"\r\n").await?;
        total += line.len() as u64 + 2;
        progress.fetch_add(line.len() as u64 + 2, Ordering::Relaxed);
    }
    out.shutdown().await?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert_in_pieces(dir: Direction, input: &[u8], piece: usize) -> Vec<u8> {
        let mut c = LineEndings::default();
        let mut out = vec![];
        for chunk in input.chunks(piece) {
            c.convert(dir, chunk, &mut out);
        }
        let mut tail = vec![];
        if dir == Direction::Inbound {
            c.finish(&mut tail);
        }
        out.extend(tail);
        out
    }

    #[test]
    fn ascii_conversion_survives_any_split() {
        for piece in 1..5 {
            assert_eq!(
                convert_in_pieces(Direction::Outbound, b"a\nb\r\nc\n", piece),
                b"a\r\nb\r\nc\r\n"
            );
            assert_eq!(
                convert_in_pieces(Direction::Inbound, b"a\r\nb\rc\r\n\r", piece),
                b"a\nb\rc\n\r"
            );
        }
    }

    #[test]
    fn upload_buffers_shrink_as_uploads_add_up() {
        assert_eq!(recv_buf_size(0), RECV_BUF_MAX);
        assert_eq!(recv_buf_size(1), RECV_BUF_MAX);
        assert_eq!(recv_buf_size(4), RECV_BUF_MAX);
        assert_eq!(recv_buf_size(16), 512 * 1024);
        assert_eq!(recv_buf_size(64), 128 * 1024);
        assert_eq!(recv_buf_size(128), RECV_BUF_MIN);
        assert_eq!(recv_buf_size(1000), RECV_BUF_MIN);
    }

    #[tokio::test]
    async fn copy_counts_progress() {
        let progress = Progress::default();
        let mut out = vec![];
        let n = copy(
            &b"x\ny\n"[..],
            &mut out,
            Some(Direction::Outbound),
            progress.clone(),
        )
        .await
        .unwrap();
        assert_eq!((n, out.as_slice()), (4, &b"x\r\ny\r\n"[..]));
        assert_eq!(progress.load(Ordering::Relaxed), 4);
    }
}
