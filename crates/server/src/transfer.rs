//! What moves over data connections: file contents in either direction
//! (with TYPE A line-ending conversion) and directory listings. Each function
//! owns its inputs, so a session can run it while still reading its control
//! connection (for ABOR and STAT).

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter, Interest};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use crate::disk_writer::{AlignedBuf, DiskWriter, Route};
use crate::idle::timed_out;
use crate::listing::Entry;

/// Copy buffer size: large enough that per-syscall cost vanishes.
const BUF_SIZE: usize = 256 * 1024;

/// Bytes moved so far, readable by STAT while the transfer runs.
pub type Progress = Arc<AtomicU64>;

/// Copies `from` to `to` in `direction`, converting line endings when
/// `ascii` is set: LF to CRLF towards the client, CRLF to LF from it.
/// Errors on the file's side (`from` outbound, `to` inbound) are marked
/// [`LocalError`], so a full or failing disk gets its own reply and not a
/// 426. Returns the number of bytes read from `from`.
pub async fn copy<R, W>(
    mut from: R,
    mut to: W,
    direction: Direction,
    ascii: bool,
    progress: Progress,
) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // The file is read on the way out and written on the way in.
    let file_is_source = direction == Direction::Outbound;
    let read_error = |e| LocalError::wrap_if(file_is_source, e);
    let write_error = |e| LocalError::wrap_if(!file_is_source, e);
    let mut buf = vec![0u8; BUF_SIZE];
    let mut converted = Vec::new();
    let mut converter = LineEndings::default();
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).await.map_err(read_error)?;
        if n == 0 {
            break;
        }
        let chunk = if ascii {
            converted.clear();
            converter.convert(direction, &buf[..n], &mut converted);
            &converted[..]
        } else {
            &buf[..n]
        };
        to.write_all(chunk).await.map_err(write_error)?;
        total += n as u64;
        progress.fetch_add(n as u64, Ordering::Relaxed);
    }
    if ascii && direction == Direction::Inbound {
        converter.finish(&mut converted);
        to.write_all(&converted).await.map_err(write_error)?;
    }
    // Flushes (a file's last writes fail here, if anywhere); on a TLS data
    // connection also sends close_notify, which tells the client the file
    // is complete.
    to.shutdown().await.map_err(write_error)?;
    Ok(total)
}

/// Most bytes one sendfile(2) call may move. With 1000 downloads at once
/// (kubeftp alone, `kubeftp-bench ftp --phases concurrent --kubeftp-only`,
/// interleaved rounds) 1 MiB calls cost the server 0.157-0.187 CPU seconds
/// per GiB against 0.193-0.215 in 128 KiB calls, and ran at 2683-3333
/// MiB/s against 2227-2759; with 100 the two sizes were alike, and so was a
/// single 1 GiB RETR (2135-2229 against 1974-2184 MiB/s, medians of 5).
/// Much larger calls gained nothing more (16 MiB), and 4 MiB calls once
/// ran a single RETR slower on loopback with BBR, which paces with timers.
pub const SENDFILE_CHUNK: usize = 1024 * 1024;

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

/// One sendfile(2) call of at most [`SENDFILE_CHUNK`] bytes from the
/// file's current position; 0 at its end.
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

/// An error on the server's own side of a transfer (its disk, its
/// memory), as opposed to the data connection's: the client gets the
/// reply for what went wrong here (451, 452, 550), not a 426 that blames
/// the connection.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct LocalError(io::Error);

impl LocalError {
    /// `e`, marked as local; its kind stays.
    pub fn wrap(e: io::Error) -> io::Error {
        io::Error::new(e.kind(), LocalError(e))
    }

    /// `e`, marked as local if `local`.
    pub fn wrap_if(local: bool, e: io::Error) -> io::Error {
        if local { LocalError::wrap(e) } else { e }
    }

    /// Whether `e` was marked by [`LocalError::wrap`].
    pub fn is_local(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|inner| inner.is::<LocalError>())
    }
}

/// The buffers of all running uploads together aim at this size, each
/// upload's between [`RECV_BUF_MIN`] and [`RECV_BUF_MAX`]. A lone upload
/// gets large buffers, so its writer wakes up rarely (when lone uploads
/// still wrote directly, where each write is one trip to the device, 2 MiB
/// writes took a 1 GiB STOR to ~83% of the disk's durable write rate and
/// 512 KiB to ~70%; `make bench-ftp`). Many uploads get small ones, so memory
/// stays bounded, and where uploads go through the page cache (no direct
/// I/O) the buffer is still in the CPU cache when it is copied there: with
/// 512 KiB each, 1000 buffered uploads at once spent half the server's CPU
/// in that copy and ran 2-5× slower (`make bench-ftp`). Larger requests
/// get more from the disk when many uploads write directly: with buffers
/// refitted ([`refit`]), 100 uploads at once ran at 945 MiB/s with 32 MiB
/// against 752 with 16 MiB, the server's peak anonymous memory 62 against
/// 38 MiB (medians of 9 interleaved rounds, kubeftp alone, `kubeftp-bench
/// ftp --phases concurrent --concurrent 100 --kubeftp-only`); 16 MiB
/// without refitting: 847 MiB/s, 73 MiB. More does not pay: with 64 MiB
/// (256 KiB writes at 100 uploads) 100 uploads went at 781-977 MiB/s
/// (median 866) against 846-1097 (970), at the same CPU per GiB; with 256 MiB
/// (1 MiB writes at 100 uploads, the size the disk likes best) 100 uploads
/// went at 514-712 MiB/s against 792-880 and cost 1.5-1.8 CPU seconds per
/// GiB against 1.0-1.2, faulting in fresh memory for the buffers (6
/// interleaved rounds each, a fresh server per round).
pub(crate) const RECV_BUDGET: usize = 32 * 1024 * 1024;
const RECV_BUF_MAX: usize = 2 * 1024 * 1024;
const RECV_BUF_MIN: usize = 64 * 1024;

/// Binary uploads running now, for [`recv_buffers`].
static UPLOADS: AtomicUsize = AtomicUsize::new(0);

/// Binary uploads started so far, for [`until_quiet`].
static UPLOAD_STARTS: AtomicUsize = AtomicUsize::new(0);

/// How long the upload buffers' pool keeps its empty chunks mapped after
/// the last upload ended ([`crate::buffer_pool`]): long enough for the
/// next file of a client's batch (mput), short enough that an idle server
/// soon gives the memory back.
const KEEP_BUFFERS: Duration = Duration::from_secs(2);

/// Buffers per binary upload: one filling from the socket while another
/// is written; up to [`RECV_BUFFERS_MAX`] when the budget has room, which
/// lets reading go on through a slow write (single 2 MiB direct writes
/// took 2-5 ms on a virtual disk) instead of the socket stalling. They are
/// made as the reader needs them, not up front: at the start of a burst the
/// first uploads, sized for a few, no longer each take four 2 MiB buffers
/// they drop as soon as the rest have started (100 uploads at once then 1000,
/// kubeftp alone: 58-61 huge pages faulted against 83-85, and 1.11 CPU
/// seconds per GiB for the 100 against 1.19-1.32).
const RECV_BUFFERS_MIN: usize = 2;
const RECV_BUFFERS_MAX: usize = 4;

/// Buffer size and count for an upload when `running` uploads (itself
/// included) share [`RECV_BUDGET`]: large buffers first, then more of them.
/// Sizes are powers of two, so they fill the slots of the upload pool
/// ([`crate::buffer_pool`]) without waste, and so multiples of
/// [`crate::disk_writer::DIRECT_ALIGN`]: a direct upload fed one unaligned
/// buffer goes on through the page cache.
fn recv_buffers(running: usize) -> (usize, usize) {
    let running = running.max(1);
    let share = RECV_BUDGET / (RECV_BUFFERS_MIN * running);
    let size = (1 << share.max(1).ilog2()).clamp(RECV_BUF_MIN, RECV_BUF_MAX);
    let count = (RECV_BUDGET / (size * running)).clamp(RECV_BUFFERS_MIN, RECV_BUFFERS_MAX);
    (size, count)
}

/// The size an upload's emptied buffer should take before it is filled
/// again, now that `running` uploads share [`RECV_BUDGET`]; `None` while its
/// `len` is within a factor of two of that. Without it sizes would stay as
/// they were when each upload began: in a burst the first uploads would
/// keep buffers sized for a few and all together overshoot the budget, and
/// the last ones would go on with small writes after the others ended.
fn refit(len: usize, running: usize) -> Option<usize> {
    let (size, _) = recv_buffers(running);
    (len >= 2 * size || 2 * len <= size).then_some(size)
}

/// Uploads running at once up to which each goes through the page cache
/// (each gets full-size buffers); beyond, each writes directly. A lone
/// direct writer keeps one request in flight where the kernel's writeback
/// keeps several: a lone 1 GiB STOR went from 0.94x to 1.36x vsftpd's
/// rate (`make bench-ftp`). Many direct writers fill the queue together
/// and skip the copy: 100 uploads at once, kubeftp alone, 6 rounds each,
/// direct 832-1049 MiB/s (median 850), page cache 804-908 (median 819).
/// Splicing into the page cache lost to direct writes here (100 at once:
/// median 611 against 850 MiB/s) and was removed; docs/server.md says why.
const PAGE_CACHE_UPLOADS_MAX: usize = 4;

/// The route of an upload when `running` uploads (itself included) run.
fn upload_route(running: usize) -> Route {
    if running <= PAGE_CACHE_UPLOADS_MAX {
        Route::PageCache
    } else {
        Route::Direct
    }
}

/// What the data sockets of all running binary uploads may be given
/// together as their receive buffers (SO_RCVBUF; Linux doubles each for its
/// bookkeeping, so they may hold up to twice this) once many run. An upload
/// that waits for the disk stops reading its socket, and the kernel lets
/// each socket's buffer grow to `net.ipv4.tcp_rmem`'s maximum (6 MiB by
/// default, 32 MiB on the benchmark machine); a thousand such sockets push
/// the node's TCP memory, which all its pods share, into pressure, where the
/// kernel drops segments and connections sit out retransmission timeouts
/// with the CPUs and the disk idle. 1000 uploads at once, kubeftp alone, 10
/// MiB each, 7 interleaved rounds: 862-1400 MiB/s (median 1345) against
/// 645-1408 (median 945) with the kernel's sizing (`kubeftp-bench ftp
/// --phases concurrent --concurrent 1000 --kubeftp-only`); over one whole
/// round of the latter (`nstat`) the kernel was under TCP memory pressure
/// for 11.7 s and counted 4061 retransmission timeouts. Fixed sizes at 1000
/// uploads (interleaved rounds): 64 KiB each 1035-1310 MiB/s,
/// 128 KiB 1293-1512, 256 KiB 990-1001, 512 KiB 619-737. With 100 uploads
/// the kernel's sizing did as well as any (1331-1805 MiB/s, against
/// 1378-1790 at 128 KiB and 1361-1570 at 1 MiB, 4 rounds each).
const SOCKET_RECV_BUDGET: usize = 128 * 1024 * 1024;
/// The largest receive buffer an upload's socket is given; with a larger
/// share the kernel sizes the buffer itself. It is below 208 KiB, the
/// kernel's default `net.core.rmem_max`, which caps what SO_RCVBUF sets, so
/// the size set is the size used.
const SOCKET_RECV_MAX: usize = 128 * 1024;
/// The smallest: beyond 2048 uploads the budget is exceeded rather than
/// each socket's window shrinking further. Doubled, it is the size a socket
/// starts with (`tcp_rmem`'s default, 128 KiB), so no socket is set below
/// its starting size.
const SOCKET_RECV_MIN: usize = 64 * 1024;

/// The receive buffer (SO_RCVBUF) an upload's data socket should have when
/// `running` uploads run: its share of [`SOCKET_RECV_BUDGET`], a power of
/// two, once that is at most [`SOCKET_RECV_MAX`] (from 513 uploads);
/// `None` below, where the kernel sizes it.
fn socket_recv_buffer(running: usize) -> Option<usize> {
    let share = SOCKET_RECV_BUDGET / running.max(1);
    let size = 1 << share.max(1).ilog2();
    (size <= SOCKET_RECV_MAX).then_some(size.max(SOCKET_RECV_MIN))
}

/// The receive buffer of an upload's data socket, which follows
/// [`socket_recv_buffer`] as uploads start. It only ever shrinks: once
/// set, the kernel no longer sizes a socket's buffer itself, so one that
/// would grow again keeps its size until the upload ends. Shrinking does
/// not take back a window already offered to the client.
#[derive(Default)]
struct RecvBuffer {
    set: Option<usize>,
}

impl RecvBuffer {
    /// Sets `tcp`'s receive buffer to its share when `running` uploads
    /// run, if that is smaller than what it has.
    fn follow(&mut self, tcp: &TcpStream, running: usize) {
        let Some(size) = socket_recv_buffer(running) else {
            return;
        };
        // Advisory: if refused, the kernel's sizing stays.
        if self.set.is_none_or(|set| size < set)
            && socket2::SockRef::from(tcp)
                .set_recv_buffer_size(size)
                .is_ok()
        {
            self.set = Some(size);
        }
    }
}

/// Finds the TCP connection under an upload's data stream, if it has one.
pub type TcpOf<R> = fn(&R) -> Option<&TcpStream>;

/// Counts an upload in [`UPLOADS`] while it lives.
struct Running;

impl Running {
    /// Counts one more upload; returns the count, itself included.
    fn start() -> (Running, usize) {
        UPLOAD_STARTS.fetch_add(1, Ordering::Relaxed);
        (Running, UPLOADS.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if UPLOADS.fetch_sub(1, Ordering::Relaxed) == 1 {
            release_buffers_when_quiet();
        }
    }
}

/// Unmaps the upload pool's empty chunks once uploads have been quiet for
/// [`KEEP_BUFFERS`]; one such wait at a time.
fn release_buffers_when_quiet() {
    static WAITING: AtomicBool = AtomicBool::new(false);
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if WAITING.swap(true, Ordering::AcqRel) {
        return;
    }
    /// Lets the next upload to end start a wait, also if this one is
    /// dropped with its runtime (tests run one runtime after another).
    struct Waited;
    impl Drop for Waited {
        fn drop(&mut self) {
            WAITING.store(false, Ordering::Release);
        }
    }
    runtime.spawn(async {
        let waited = Waited;
        until_quiet(&UPLOAD_STARTS, &UPLOADS, KEEP_BUFFERS).await;
        drop(waited);
        // Chunks that got lent again meanwhile stay.
        crate::disk_writer::release_empty_buffers();
    });
}

/// Returns at the end of the first whole `period` in which no upload
/// started (`starts` unchanged) and after which none runs.
async fn until_quiet(starts: &AtomicUsize, running: &AtomicUsize, period: Duration) {
    let mut seen = starts.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(period).await;
        let now = starts.load(Ordering::Relaxed);
        if now == seen && running.load(Ordering::Relaxed) == 0 {
            return;
        }
        seen = now;
    }
}

/// Receives a binary upload into `file` (from its current position). The
/// socket is read into a few buffers in turn ([`recv_buffers`], made when
/// none is free, resized by [`refit`] as other uploads start and end); jobs
/// on the blocking pool write the full ones in order with a [`DiskWriter`],
/// by the route [`upload_route`] picks, so the fsync before 226 has little
/// left to do. The TCP connection `tcp_of` finds under `from` gets its
/// receive buffer sized by [`RecvBuffer::follow`]. ASCII uploads use
/// [`copy`]. If the
/// upload is dropped (ABOR) or its socket fails, no write starts after the
/// one running.
pub async fn receive_file<R: AsyncRead + Unpin>(
    mut from: R,
    file: &tokio::fs::File,
    progress: Progress,
    tcp_of: Option<TcpOf<R>>,
) -> io::Result<u64> {
    let mut file = file.try_clone().await?.into_std().await;
    let start = io::Seek::stream_position(&mut file)?;
    let (_running, count) = Running::start();
    let (_, buffers) = recv_buffers(count);
    let route = upload_route(count);
    // Buffers go round: empty ones to the reader, full ones to the writer.
    let (empty_tx, mut empty_rx) = mpsc::channel::<AlignedBuf>(buffers);
    let (full_tx, full_rx) = mpsc::channel::<(AlignedBuf, usize)>(buffers);
    // Full buffers are written in order by jobs on the blocking pool, each
    // job writing what is queued when it runs; no thread waits there for
    // the client, so uploads that stall cannot take the pool from other
    // sessions' file operations.
    let writing = async move {
        let mut queue = WriteQueue {
            disk: DiskWriter::new(file, start, route),
            full: full_rx,
            empty: empty_tx,
        };
        while let Some(first) = queue.full.recv().await {
            let (returned, written) = tokio::task::spawn_blocking(move || {
                let written = queue.write_queued(first);
                (queue, written)
            })
            .await
            .map_err(|e| LocalError::wrap(io::Error::other(e)))?;
            written.map_err(LocalError::wrap)?;
            queue = returned;
        }
        queue.disk.finish().map_err(LocalError::wrap)
    };
    // Dropping the writer's end of the channel ends its loop once it has
    // written what is queued.
    let reading = async move {
        let mut total = 0u64;
        let mut made = 0;
        let mut recv_buffer = RecvBuffer::default();
        loop {
            let running = UPLOADS.load(Ordering::Relaxed);
            // A buffer is made only when none is free: where writes keep up
            // with the socket, an upload has two.
            let mut buf = match empty_rx.try_recv() {
                Ok(buf) => buf,
                Err(TryRecvError::Empty) if made < buffers => {
                    made += 1;
                    AlignedBuf::new(recv_buffers(running).0).map_err(LocalError::wrap)?
                }
                Err(TryRecvError::Empty) => match empty_rx.recv().await {
                    Some(buf) => buf,
                    None => break,
                },
                Err(TryRecvError::Disconnected) => break,
            };
            let len = buf.as_slice().len();
            buf = buf
                .renew(refit(len, running).unwrap_or(len))
                .map_err(LocalError::wrap)?;
            // Counted again: a stalled upload may have waited for its buffer
            // while uploads started.
            if let Some(tcp) = tcp_of.and_then(|tcp_of| tcp_of(&from)) {
                recv_buffer.follow(tcp, UPLOADS.load(Ordering::Relaxed));
            }
            let n = fill(&mut from, buf.as_mut_slice()).await?;
            if n == 0 {
                break;
            }
            total += n as u64;
            progress.fetch_add(n as u64, Ordering::Relaxed);
            if full_tx.send((buf, n)).await.is_err() {
                break; // the writer failed: its error is returned
            }
        }
        drop(full_tx);
        Ok::<_, io::Error>(total)
    };
    // The first error ends both: a failed socket stops the writes still
    // queued (the upload is lost anyway), a failed write stops reading.
    let (total, ()) = tokio::try_join!(reading, writing)?;
    Ok(total)
}

/// An upload's writing side: full buffers in, written, empty ones out.
struct WriteQueue {
    disk: DiskWriter,
    full: mpsc::Receiver<(AlignedBuf, usize)>,
    empty: mpsc::Sender<AlignedBuf>,
}

impl WriteQueue {
    /// Writes `first`, then whatever full buffers are queued, until none
    /// is; each goes back to the reader once written. Blocking.
    fn write_queued(&mut self, first: (AlignedBuf, usize)) -> io::Result<()> {
        let mut next = Some(first);
        while let Some((buf, n)) = next {
            self.disk.write(&buf.as_slice()[..n])?;
            // Fails only once the reader is gone; the buffer is not needed.
            let _ = self.empty.try_send(buf);
            next = self.full.try_recv().ok();
        }
        Ok(())
    }
}

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
    use crate::disk_writer::DIRECT_ALIGN;
    use crate::idle::IdleTimeout;

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
        let mib = 1024 * 1024;
        assert_eq!(recv_buffers(0), (RECV_BUF_MAX, RECV_BUFFERS_MAX));
        assert_eq!(recv_buffers(1), (RECV_BUF_MAX, RECV_BUFFERS_MAX));
        assert_eq!(recv_buffers(4), (RECV_BUF_MAX, 4));
        assert_eq!(recv_buffers(5), (RECV_BUF_MAX, 3));
        assert_eq!(recv_buffers(8), (RECV_BUF_MAX, 2));
        assert_eq!(recv_buffers(16), (mib, 2));
        assert_eq!(recv_buffers(64), (mib / 4, 2));
        assert_eq!(recv_buffers(256), (RECV_BUF_MIN, 2));
        assert_eq!(recv_buffers(1000), (RECV_BUF_MIN, RECV_BUFFERS_MIN));
        // Within the budget until the smallest buffers are reached.
        for running in 1..=256 {
            let (size, count) = recv_buffers(running);
            assert!(size * count * running <= RECV_BUDGET, "{running} uploads");
        }
        // Powers of two (the pool's slots), so fit for direct writes.
        for running in 1..=2000 {
            let size = recv_buffers(running).0;
            assert!(size.is_power_of_two(), "{running} uploads: {size}");
            assert_eq!(size % DIRECT_ALIGN, 0, "{running} uploads");
        }
    }

    /// An upload that starts and ends within a period, and one that runs
    /// past a period's end, each put the release off.
    #[tokio::test(start_paused = true)]
    async fn buffers_are_released_after_a_whole_quiet_period() {
        use tokio::time::{Instant, sleep};
        let period = Duration::from_secs(2);
        let (starts, running) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let upload = async |from: f64, to: f64| {
            sleep(Duration::from_secs_f64(from)).await;
            starts.fetch_add(1, Ordering::Relaxed);
            running.fetch_add(1, Ordering::Relaxed);
            sleep(Duration::from_secs_f64(to - from)).await;
            running.fetch_sub(1, Ordering::Relaxed);
        };

        let begun = Instant::now();
        tokio::join!(until_quiet(&starts, &running, period), upload(0.5, 1.5));
        assert_eq!(begun.elapsed(), 2 * period, "a brief upload went unseen");

        let begun = Instant::now();
        tokio::join!(until_quiet(&starts, &running, period), upload(1.0, 4.5));
        assert_eq!(begun.elapsed(), 3 * period, "a running upload went unseen");

        let begun = Instant::now();
        until_quiet(&starts, &running, period).await;
        assert_eq!(begun.elapsed(), period);
    }

    #[test]
    fn buffers_are_refitted_only_when_off_by_half_or_more() {
        let mib = 1024 * 1024;
        assert_eq!(refit(RECV_BUF_MAX, 1), None);
        assert_eq!(refit(RECV_BUF_MAX, 16), Some(mib));
        assert_eq!(refit(RECV_BUF_MAX, 100), Some(128 * 1024));
        assert_eq!(refit(128 * 1024, 100), None);
        assert_eq!(refit(128 * 1024, 128), None);
        assert_eq!(refit(128 * 1024, 129), Some(64 * 1024));
        assert_eq!(refit(128 * 1024, 60), Some(256 * 1024));
        assert_eq!(refit(RECV_BUF_MIN, 1), Some(RECV_BUF_MAX));
        // What a refit gives is never refitted again at the same load.
        for running in 1..=2000 {
            let size = recv_buffers(running).0;
            assert_eq!(refit(size, running), None, "{running} uploads");
        }
    }

    #[test]
    fn few_uploads_go_through_the_page_cache_many_directly() {
        assert_eq!(PAGE_CACHE_UPLOADS_MAX, 4);
        for running in 0..=4 {
            assert_eq!(upload_route(running), Route::PageCache, "{running} uploads");
            // exactly while each still gets full-size buffers
            assert_eq!(recv_buffers(running).0, RECV_BUF_MAX);
        }
        for running in [5, 16, 1000] {
            assert_eq!(upload_route(running), Route::Direct, "{running} uploads");
        }
    }

    /// A client that sends nothing; it says so when first asked for data.
    struct SendsNothing(Option<tokio::sync::oneshot::Sender<()>>);

    impl AsyncRead for SendsNothing {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            if let Some(asked) = self.0.take() {
                let _ = asked.send(());
            }
            std::task::Poll::Pending
        }
    }

    /// Uploads whose clients send nothing hold no blocking thread: with
    /// more of them than the blocking pool has threads, other file work
    /// still runs. (A hang is what this catches; the timeout is generous.)
    #[test]
    fn stalled_uploads_leave_the_blocking_pool_free() {
        let done = crate::pool_test::with_two_blocking_threads(|| async {
            let (_dir, _, file) = upload_target().await;
            for _ in 0..4 {
                let (asked, waiting) = tokio::sync::oneshot::channel();
                let file = file.try_clone().await.unwrap();
                let client = SendsNothing(Some(asked));
                tokio::spawn(async move {
                    receive_file(client, &file, Progress::default(), None).await
                });
                waiting.await.unwrap();
            }
            tokio::task::spawn_blocking(|| "done").await.unwrap()
        });
        assert_eq!(done, "done");
    }

    /// A file under a fresh directory, and the same file for writing.
    async fn upload_target() -> (tempfile::TempDir, std::path::PathBuf, tokio::fs::File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upload");
        let file = tokio::fs::File::create(&path).await.unwrap();
        (dir, path, file)
    }

    /// Many buffers' worth, arriving in odd-sized pieces: every byte lands
    /// in order, and the count and progress say how many.
    #[tokio::test]
    async fn receive_file_writes_every_byte_in_order() {
        let (_dir, path, file) = upload_target().await;
        let data: Vec<u8> = (0..9 * 1024 * 1024 + 777)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let sent = data.clone();
        let sender = tokio::spawn(async move {
            for piece in sent.chunks(100_003) {
                client.write_all(piece).await.unwrap();
            }
        });
        let progress = Progress::default();
        let n = receive_file(server, &file, progress.clone(), None)
            .await
            .unwrap();
        sender.await.unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(progress.load(Ordering::Relaxed), n);
        assert!(std::fs::read(&path).unwrap() == data, "contents differ");
    }

    /// A disk that refuses the write fails the upload, as the server's own
    /// failure (not the connection's); nothing waits forever for buffers
    /// the writer will not give back.
    #[tokio::test]
    async fn receive_file_reports_a_failed_write() {
        let (_dir, path, _) = upload_target().await;
        let read_only = tokio::fs::File::open(&path).await.unwrap();
        let data = vec![7u8; 12 * 1024 * 1024];
        let err = receive_file(&data[..], &read_only, Progress::default(), None)
            .await
            .unwrap_err();
        assert!(LocalError::is_local(&err), "{err}");
        let cause = err.get_ref().and_then(|e| e.downcast_ref::<LocalError>());
        assert_eq!(cause.unwrap().0.raw_os_error(), Some(libc::EBADF), "{err}");
    }

    /// A data connection that fails is not the server's own failure.
    #[test]
    fn only_marked_errors_are_local() {
        let refused = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(!LocalError::is_local(&refused));
        let marked = LocalError::wrap(io::Error::from(io::ErrorKind::StorageFull));
        assert!(LocalError::is_local(&marked));
        assert_eq!(marked.kind(), io::ErrorKind::StorageFull, "the kind stays");
    }

    /// Held by the tests that start uploads of their own to steer the
    /// upload count, so that they do not steer each other's.
    static CROWDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    /// An upload over TCP in pieces from one byte to 200 KB, alone (page
    /// cache) and among more (direct writes, with large and with small
    /// buffers), from the start of an empty file and after bytes the file
    /// already holds (REST: an unaligned start, so the page cache again):
    /// every byte lands in order, and the count and progress say how many.
    #[tokio::test(flavor = "multi_thread")]
    async fn uploads_over_tcp_land_in_order_by_every_route() {
        let data: Vec<u8> = (0..5 * 1024 * 1024 + 333)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let _alone = CROWDING.lock().await;
        for crowd in [0, PAGE_CACHE_UPLOADS_MAX, 128] {
            for kept in [&b""[..], b"kept"] {
                let others: Vec<_> = (0..crowd).map(|_| Running::start().0).collect();
                let (_dir, path, mut file) = upload_target().await;
                file.write_all(kept).await.unwrap();
                let (mut client, server) = tcp_pair().await;
                let sent = data.clone();
                let sender = tokio::spawn(async move {
                    let mut rest = &sent[..];
                    for size in [1, 7, 4096, 200_003, 13].into_iter().cycle() {
                        let (piece, after) = rest.split_at(size.min(rest.len()));
                        client.write_all(piece).await.unwrap();
                        client.flush().await.unwrap();
                        rest = after;
                        if rest.is_empty() {
                            break;
                        }
                    }
                });
                let progress = Progress::default();
                let n = receive_file(server, &file, progress.clone(), None)
                    .await
                    .unwrap();
                sender.await.unwrap();
                let case = format!("{crowd} others, {} bytes kept", kept.len());
                assert_eq!(n, data.len() as u64, "{case}");
                assert_eq!(progress.load(Ordering::Relaxed), n, "{case}");
                let written = std::fs::read(&path).unwrap();
                assert!(written == [kept, &data].concat(), "{case}");
                drop(others);
            }
        }
    }

    /// A client that stops sending, its connection still open, ends the
    /// upload with `TimedOut` (the session's idle limit on its data
    /// connection).
    #[tokio::test]
    async fn stalled_upload_times_out() {
        let (_dir, _path, file) = upload_target().await;
        let (mut client, server) = tcp_pair().await;
        client
            .write_all(b"the first bytes, then nothing")
            .await
            .unwrap();
        let server = IdleTimeout::new(server, Duration::from_millis(200));
        let err = receive_file(server, &file, Progress::default(), None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }

    /// Gives `len` bytes of a pattern, and notes how much room each read
    /// offered. Once `crowd_at` bytes are out, `crowd` more uploads start
    /// (counted only; they stay until this is dropped).
    struct Crowding {
        sent: usize,
        len: usize,
        crowd_at: usize,
        crowd: usize,
        others: Vec<Running>,
        room: Vec<(usize, usize)>,
    }

    impl AsyncRead for Crowding {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            let (sent, room) = (self.sent, buf.remaining());
            self.room.push((sent, room));
            if sent >= self.crowd_at && self.others.is_empty() {
                let crowd = self.crowd;
                self.others = (0..crowd).map(|_| Running::start().0).collect();
            }
            let n = room.min(self.len - sent);
            buf.put_slice(&(sent..sent + n).map(|i| i as u8).collect::<Vec<_>>());
            self.sent += n;
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// When many uploads start while one runs, its buffers shrink to what
    /// each gets at that count, and the bytes still land in order.
    #[tokio::test]
    async fn upload_buffers_follow_the_number_of_uploads() {
        let _alone = CROWDING.lock().await;
        let (_dir, path, file) = upload_target().await;
        let mut from = Crowding {
            sent: 0,
            len: 24 * 1024 * 1024,
            crowd_at: 8 * 1024 * 1024,
            crowd: 1000,
            others: vec![],
            room: vec![],
        };
        let n = receive_file(&mut from, &file, Progress::default(), None)
            .await
            .unwrap();
        assert_eq!(n, from.len as u64);
        let contents = std::fs::read(&path).unwrap();
        assert!(contents.iter().enumerate().all(|(i, &b)| b == i as u8));
        // Other tests' uploads may run meanwhile, so before the crowd this
        // one's buffers are large but not necessarily the largest.
        let first = from.room[0].1;
        assert!(first > 2 * RECV_BUF_MIN, "first buffer: {first} bytes");
        // Buffers filled before the crowd came (at most 8 MiB) are
        // refitted as they come back; later reads get the small ones.
        let settled = from.crowd_at + 4 * RECV_BUF_MAX;
        for &(sent, room) in from.room.iter().filter(|(sent, _)| *sent >= settled) {
            assert!(room <= RECV_BUF_MIN, "{room} bytes offered at {sent}");
        }
    }

    /// Up to 512 uploads the kernel sizes their sockets' receive buffers;
    /// beyond, each gets its share of the budget, within its bounds.
    #[test]
    fn sockets_receive_buffers_are_set_only_for_many_uploads() {
        for running in [0, 1, 5, 100, 512] {
            assert_eq!(socket_recv_buffer(running), None, "{running} uploads");
        }
        assert_eq!(socket_recv_buffer(513), Some(SOCKET_RECV_MAX));
        assert_eq!(socket_recv_buffer(1000), Some(128 * 1024));
        assert_eq!(socket_recv_buffer(1025), Some(64 * 1024));
        assert_eq!(socket_recv_buffer(100_000), Some(SOCKET_RECV_MIN));
        for running in 513..=2048 {
            let size = socket_recv_buffer(running).unwrap();
            assert!(size * running <= SOCKET_RECV_BUDGET, "{running} uploads");
            assert!(size.is_power_of_two(), "{running} uploads: {size}");
        }
    }

    /// An upload that runs among a thousand sets its socket's receive
    /// buffer to its share, and keeps it when the others end.
    #[tokio::test]
    async fn an_upload_among_many_sets_its_sockets_receive_buffer() {
        let _alone = CROWDING.lock().await;
        let (_dir, path, file) = upload_target().await;
        let (mut client, mut server) = tcp_pair().await;
        let others: Vec<Running> = (0..999).map(|_| Running::start().0).collect();
        fn itself<'a>(tcp: &'a &mut TcpStream) -> Option<&'a TcpStream> {
            Some(tcp)
        }
        let data = vec![7u8; 1024 * 1024];
        let progress = Progress::default();
        let sending = async {
            client.write_all(&data).await.unwrap();
            // The others end once this upload has read while they ran.
            while progress.load(Ordering::Relaxed) == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            drop(others);
            client.write_all(&data).await.unwrap();
            client.shutdown().await.unwrap();
        };
        let receiving = receive_file(&mut server, &file, progress.clone(), Some(itself));
        let ((), received) = tokio::join!(sending, receiving);
        assert_eq!(received.unwrap(), 2 * data.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap().len(), 2 * data.len());
        // Linux reports twice the size set (its bookkeeping included).
        let reported = socket2::SockRef::from(&server).recv_buffer_size().unwrap();
        assert_eq!(reported, 2 * socket_recv_buffer(1000).unwrap());
    }

    /// A socket's receive buffer only shrinks: set to the share of 600
    /// uploads, it shrinks to the smaller share of 1025, and keeps that when
    /// they drop to 1000 (whose share is larger) and to one.
    #[tokio::test]
    async fn an_upload_sockets_receive_buffer_only_shrinks() {
        let (_client, server) = tcp_pair().await;
        let reported = || socket2::SockRef::from(&server).recv_buffer_size().unwrap();
        let mut recv_buffer = RecvBuffer::default();
        recv_buffer.follow(&server, 600);
        assert_eq!(reported(), 2 * socket_recv_buffer(600).unwrap());
        recv_buffer.follow(&server, 1025);
        let smaller = 2 * socket_recv_buffer(1025).unwrap();
        assert!(smaller < 2 * socket_recv_buffer(1000).unwrap());
        assert_eq!(reported(), smaller);
        recv_buffer.follow(&server, 1000);
        assert_eq!(reported(), smaller);
        recv_buffer.follow(&server, 1);
        assert_eq!(reported(), smaller);
    }

    /// Gives `left` zero bytes, then fails as a reset connection would.
    struct ResetAfter {
        left: usize,
    }

    impl AsyncRead for ResetAfter {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            if self.left == 0 {
                return std::task::Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            let n = self.left.min(buf.remaining());
            buf.put_slice(&vec![0; n]);
            self.left -= n;
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// A socket that fails mid-upload fails it with the socket's error
    /// (not the writer's stop), after buffers were already queued.
    #[tokio::test]
    async fn receive_file_reports_a_failed_socket() {
        let (_dir, _, file) = upload_target().await;
        let from = ResetAfter {
            left: 5 * 1024 * 1024 + 3,
        };
        let err = receive_file(from, &file, Progress::default(), None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
        assert!(
            !LocalError::is_local(&err),
            "the connection failed, not the server"
        );
    }

    #[tokio::test]
    async fn copy_counts_progress() {
        let progress = Progress::default();
        let mut out = vec![];
        let n = copy(
            &b"x\ny\n"[..],
            &mut out,
            Direction::Outbound,
            true,
            progress.clone(),
        )
        .await
        .unwrap();
        assert_eq!((n, out.as_slice()), (4, &b"x\r\ny\r\n"[..]));
        assert_eq!(progress.load(Ordering::Relaxed), 4);
    }

    /// A reader or writer whose every call fails with `kind`.
    struct Failing(io::ErrorKind);

    impl AsyncRead for Failing {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Err(self.0.into()))
        }
    }

    impl AsyncWrite for Failing {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            std::task::Poll::Ready(Err(self.0.into()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Err(self.0.into()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Err(self.0.into()))
        }
    }

    /// Only the file's side of a copy fails as the server's own: the sink
    /// of an upload, the source of a download, in either type.
    #[tokio::test]
    async fn copy_marks_only_the_files_errors_local() {
        use io::ErrorKind::{ConnectionReset, FileTooLarge, Other};
        for ascii in [false, true] {
            let upload_disk = copy(
                &b"a\r\n"[..],
                Failing(FileTooLarge),
                Direction::Inbound,
                ascii,
                Progress::default(),
            );
            let err = upload_disk.await.unwrap_err();
            assert!(
                LocalError::is_local(&err) && err.kind() == FileTooLarge,
                "{err:?}"
            );
            let upload_net = copy(
                Failing(ConnectionReset),
                Vec::new(),
                Direction::Inbound,
                ascii,
                Progress::default(),
            );
            assert!(!LocalError::is_local(&upload_net.await.unwrap_err()));
            let download_disk = copy(
                Failing(Other),
                Vec::new(),
                Direction::Outbound,
                ascii,
                Progress::default(),
            );
            assert!(LocalError::is_local(&download_disk.await.unwrap_err()));
            let download_net = copy(
                &b"a\n"[..],
                Failing(ConnectionReset),
                Direction::Outbound,
                ascii,
                Progress::default(),
            );
            assert!(!LocalError::is_local(&download_net.await.unwrap_err()));
        }
    }
}
