//! A pipe that moves an upload's bytes from its TCP socket to its file
//! with splice(2), so they never pass through a buffer of ours: the
//! socket's pages are handed to the pipe, and the pipe's copied once into
//! the page cache. See [`crate::transfer::receive_from_tcp`].

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A pipe's two ends, both non-blocking; `len` bytes sit in it.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    len: usize,
}

/// What one splice from a socket into a [`Pipe`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Spliced {
    /// This many bytes moved into the pipe.
    Bytes(usize),
    /// Nothing moved and the pipe holds bytes: write them out before
    /// splicing again. The pipe may be full (its room is counted in pages,
    /// so a few small pieces can fill it), and a full pipe hides whether
    /// the socket has more or has ended.
    WriteFirst,
    /// The peer finished sending and everything it sent was taken.
    End,
}

impl Pipe {
    /// A pipe that holds at least `capacity` bytes where the kernel allows
    /// it: above `/proc/sys/fs/pipe-max-size`, or past the per-user limit
    /// on pipe memory, an unprivileged process keeps the default size
    /// (64 KiB), which only makes the pieces smaller.
    pub fn with_capacity(capacity: usize) -> io::Result<Pipe> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two-element array on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors we own.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let size = libc::c_int::try_from(capacity).unwrap_or(libc::c_int::MAX);
        // SAFETY: fcntl on an open descriptor with an integer argument; a
        // refusal leaves the pipe as it was.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
        Ok(Pipe {
            read,
            write,
            len: 0,
        })
    }

    /// The bytes the pipe can hold when its pages are full.
    pub fn capacity(&self) -> io::Result<usize> {
        // SAFETY: fcntl F_GETPIPE_SZ on an open descriptor.
        let size = unsafe { libc::fcntl(self.write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        usize::try_from(size).map_err(|_| io::Error::last_os_error())
    }

    /// Bytes in the pipe, not yet written out.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Moves up to `max` bytes from the non-blocking `socket` into the
    /// pipe, without waiting. `WouldBlock` only when the pipe is empty and
    /// the socket has nothing.
    pub fn splice_from_socket(&mut self, socket: &impl AsRawFd, max: usize) -> io::Result<Spliced> {
        // SAFETY: splice between two open descriptors; null offsets are
        // required for a socket and a pipe.
        let n = unsafe {
            libc::splice(
                socket.as_raw_fd(),
                std::ptr::null_mut(),
                self.write.as_raw_fd(),
                std::ptr::null_mut(),
                max,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        match n {
            0 => Ok(Spliced::End),
            n if n > 0 => {
                self.len += n as usize;
                Ok(Spliced::Bytes(n as usize))
            }
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::WouldBlock && !self.is_empty() {
                    Ok(Spliced::WriteFirst)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Writes up to `max` bytes from the pipe to `file` at `offset`
    /// (through the page cache; blocking). `InvalidInput` when the
    /// filesystem cannot take spliced writes.
    pub fn splice_to_file(&mut self, file: &File, offset: u64, max: usize) -> io::Result<usize> {
        let mut offset = i64::try_from(offset).map_err(io::Error::other)?;
        // SAFETY: splice between two open descriptors; the offset is ours
        // and the file's own position is left alone.
        let n = unsafe {
            libc::splice(
                self.read.as_raw_fd(),
                std::ptr::null_mut(),
                file.as_raw_fd(),
                &mut offset,
                max.min(self.len),
                libc::SPLICE_F_MOVE,
            )
        };
        self.taken(n)
    }

    /// Reads up to `buf.len()` bytes out of the pipe: for a file that
    /// refuses [`Pipe::splice_to_file`].
    pub fn read_into(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = buf.len().min(self.len);
        // SAFETY: read into a buffer of at least `max` bytes.
        let n = unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), max) };
        self.taken(n)
    }

    /// Accounts for `n` bytes taken out of the pipe (a syscall's result).
    fn taken(&mut self, n: isize) -> io::Result<usize> {
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n == 0 && self.len > 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the pipe gave no bytes",
            ));
        }
        self.len -= n;
        Ok(n)
    }
}

/// Test support: sends `data` over loopback TCP from another thread and
/// splices it into `pipe` until the sender is done, handing the pipe to
/// `empty` after each splice.
#[cfg(test)]
pub(crate) fn send_through(pipe: &mut Pipe, data: &[u8], mut empty: impl FnMut(&mut Pipe)) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (socket, _) = listener.accept().unwrap();
    socket.set_nonblocking(true).unwrap();
    let sender = std::thread::spawn({
        let data = data.to_vec();
        move || client.write_all(&data).unwrap()
    });
    let room = pipe.capacity().unwrap();
    loop {
        match pipe.splice_from_socket(&socket, room) {
            Ok(Spliced::End) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            Err(e) => panic!("{e}"),
        }
        empty(pipe);
    }
    sender.join().unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (client, server)
    }

    /// Splices until the socket has nothing or the pipe is full.
    fn splice_all(pipe: &mut Pipe, socket: &TcpStream, max: usize) -> Option<Spliced> {
        loop {
            match pipe.splice_from_socket(socket, max) {
                Ok(Spliced::Bytes(_)) => continue,
                Ok(other) => return Some(other),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn bytes_go_from_a_socket_through_the_pipe_to_a_file_in_order() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("f")).unwrap();
        let mut pipe = Pipe::with_capacity(64 * 1024).unwrap();
        let mut written = 0u64;
        send_through(&mut pipe, &data, |pipe| {
            while !pipe.is_empty() {
                written += pipe.splice_to_file(&file, written, usize::MAX).unwrap() as u64;
            }
        });
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), data);
    }

    #[test]
    fn a_full_pipe_asks_to_be_written_out_and_then_takes_more() {
        let (mut client, server) = socket_pair();
        let mut pipe = Pipe::with_capacity(4096).unwrap();
        let capacity = pipe.capacity().unwrap();
        // Nothing sent yet: an empty pipe and an empty socket would block.
        assert!(splice_all(&mut pipe, &server, 1 << 20).is_none());
        client.write_all(&vec![7u8; 4 * capacity]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(
            splice_all(&mut pipe, &server, 1 << 20),
            Some(Spliced::WriteFirst)
        );
        assert!(!pipe.is_empty());
        // Emptied, the pipe takes more from the same socket.
        let mut buf = vec![0u8; pipe.len()];
        let n = pipe.read_into(&mut buf).unwrap();
        assert!(buf[..n].iter().all(|&b| b == 7));
        assert!(pipe.is_empty());
        assert!(matches!(
            pipe.splice_from_socket(&server, 1 << 20),
            Ok(Spliced::Bytes(_))
        ));
    }

    #[test]
    fn the_end_of_the_stream_is_seen_once_the_pipe_is_written_out() {
        let (mut client, server) = socket_pair();
        client.write_all(b"last bytes").unwrap();
        drop(client);
        std::thread::sleep(std::time::Duration::from_millis(50));
        // One page: the first piece fills it.
        let mut pipe = Pipe::with_capacity(4096).unwrap();
        assert_eq!(
            pipe.splice_from_socket(&server, 1 << 20).unwrap(),
            Spliced::Bytes(10)
        );
        assert_eq!(
            pipe.splice_from_socket(&server, 1 << 20).unwrap(),
            Spliced::WriteFirst
        );
        let mut buf = [0u8; 32];
        let n = pipe.read_into(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"last bytes");
        assert_eq!(
            pipe.splice_from_socket(&server, 1 << 20).unwrap(),
            Spliced::End
        );
        let mut rest = Vec::new();
        (&server).read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
}
