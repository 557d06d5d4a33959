//! A minimal FTP client: just enough (USER/PASS, TYPE, PASV, RETR, STOR,
//! LIST, QUIT) to drive both servers identically.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

pub struct Ftp {
    control: BufReader<TcpStream>,
    /// Local address both connections are bound to, so many loopback
    /// source IPs (127.0.0.x) can be used at once.
    source: IpAddr,
    line: String,
}

/// Connects from `source` (port chosen by the kernel).
pub async fn connect_from(source: IpAddr, to: SocketAddr) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket
        .connect(to)
        .await
        .with_context(|| format!("connecting {source} -> {to}"))
}

impl Ftp {
    /// Connects, reads the banner and logs in; transfers are binary.
    pub async fn login(server: SocketAddr, source: IpAddr, user: &str, pass: &str) -> Result<Ftp> {
        let stream = connect_from(source, server).await?;
        let mut ftp = Ftp {
            control: BufReader::new(stream),
            source,
            line: String::new(),
        };
        ftp.expect(None, 2).await.context("banner")?;
        let (code, _) = ftp.command(&format!("USER {user}")).await?;
        if code == 331 {
            ftp.expect(Some(&format!("PASS {pass}")), 2).await?;
        } else if code / 100 != 2 {
            bail!("USER answered {code}");
        }
        ftp.expect(Some("TYPE I"), 2).await?;
        Ok(ftp)
    }

    /// Reads one reply, multi-line ones ("ddd-" ... "ddd ") included.
    async fn reply(&mut self) -> Result<(u16, String)> {
        let mut text = String::new();
        let mut open: Option<[u8; 3]> = None;
        loop {
            self.line.clear();
            if self.control.read_line(&mut self.line).await? == 0 {
                bail!("control connection closed");
            }
            text.push_str(&self.line);
            let l = self.line.as_bytes();
            let Some(code) = l.get(..3).filter(|c| c.iter().all(u8::is_ascii_digit)) else {
                continue;
            };
            let more = l.get(3) == Some(&b'-');
            match open {
                None if more => open = Some([code[0], code[1], code[2]]),
                Some(c) if c != code || more => {}
                _ => return Ok((self.line[..3].parse()?, text)),
            }
        }
    }

    pub async fn command(&mut self, line: &str) -> Result<(u16, String)> {
        let control = self.control.get_mut();
        control.write_all(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }

    /// Sends `line` (if any) and checks the reply's first digit.
    async fn expect(&mut self, line: Option<&str>, class: u16) -> Result<String> {
        let (code, text) = match line {
            Some(l) => self.command(l).await?,
            None => self.reply().await?,
        };
        if code / 100 != class {
            let what = line.unwrap_or("(greeting)").split(' ').next().unwrap_or("");
            bail!("{what} answered {}", text.trim_end());
        }
        Ok(text)
    }

    /// PASV, then connects the data connection from our source address.
    pub async fn open_data(&mut self) -> Result<TcpStream> {
        let text = self.expect(Some("PASV"), 2).await?;
        let addr = parse_pasv(&text)?;
        connect_from(self.source, addr).await
    }

    /// Starts a download: returns the data connection after the 150 reply.
    pub async fn begin_retr(&mut self, path: &str) -> Result<TcpStream> {
        let data = self.open_data().await?;
        self.send_retr(path).await?;
        Ok(data)
    }

    /// RETR on a data connection opened already; waits for the 150.
    pub async fn send_retr(&mut self, path: &str) -> Result<()> {
        self.expect(Some(&format!("RETR {path}")), 1)
            .await
            .map(|_| ())
    }

    /// STOR on a data connection opened already; waits for the 150.
    pub async fn send_stor(&mut self, path: &str) -> Result<()> {
        self.expect(Some(&format!("STOR {path}")), 1)
            .await
            .map(|_| ())
    }

    /// Reads the final reply of a transfer.
    pub async fn end_transfer(&mut self) -> Result<()> {
        self.expect(None, 2).await.map(|_| ())
    }

    /// Sends `contents` on the data connection of a STOR and closes it;
    /// returns once the server said 226.
    pub async fn finish_stor(
        &mut self,
        mut data: TcpStream,
        contents: &[u8],
        chunk: usize,
    ) -> Result<()> {
        for piece in contents.chunks(chunk) {
            data.write_all(piece).await?;
        }
        data.shutdown().await?;
        drop(data);
        self.end_transfer().await
    }

    /// Downloads `path`, discarding the data; returns its size. The data
    /// is read with blocking reads on this thread, as iperf3's receiver
    /// reads, so that one fast loopback stream is paced by the server, not
    /// by the client's runtime (see docs/performance.md).
    ///
    /// # Panics
    /// On a current-thread runtime (`block_in_place`).
    pub async fn retr_blocking(&mut self, path: &str, buf: &mut [u8]) -> Result<u64> {
        let data = self.begin_retr(path).await?;
        let mut data = into_blocking(data, STALLED)?;
        let n = tokio::task::block_in_place(|| drain_blocking(&mut data, buf))?;
        drop(data); // close at EOF before reading the 226, as real clients do
        self.end_transfer().await?;
        Ok(n)
    }

    /// Uploads `contents` to `path` in `chunk`-sized blocking writes on this
    /// thread, like [`Ftp::retr_blocking`]; returns once the server said 226.
    ///
    /// # Panics
    /// On a current-thread runtime (`block_in_place`).
    pub async fn stor_blocking(&mut self, path: &str, contents: &[u8], chunk: usize) -> Result<()> {
        let data = self.open_data().await?;
        self.send_stor(path).await?;
        let mut data = into_blocking(data, STALLED)?;
        tokio::task::block_in_place(|| -> std::io::Result<()> {
            for piece in contents.chunks(chunk) {
                data.write_all(piece)?;
            }
            data.shutdown(Shutdown::Write)
        })?;
        drop(data);
        self.end_transfer().await
    }

    /// LIST `path`; returns the listing's size in bytes.
    pub async fn list(&mut self, path: &str, buf: &mut [u8]) -> Result<u64> {
        let mut data = self.open_data().await?;
        self.expect(Some(&format!("LIST {path}")), 1).await?;
        let n = drain(&mut data, buf).await?;
        drop(data); // close at EOF before reading the 226, as real clients do
        self.end_transfer().await?;
        Ok(n)
    }

    pub async fn quit(mut self) -> Result<()> {
        self.command("QUIT").await.map(|_| ())
    }
}

/// Reads a stream to its end, returning how many bytes it carried.
pub async fn drain(data: &mut TcpStream, buf: &mut [u8]) -> Result<u64> {
    let mut total = 0u64;
    loop {
        let n = data.read(buf).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// A data connection taken off the runtime, for blocking reads and writes.
/// A server that stops moving data fails them after `stalled`, as no
/// timeout around the future could cancel a blocking call.
fn into_blocking(
    data: TcpStream,
    stalled: std::time::Duration,
) -> std::io::Result<std::net::TcpStream> {
    let data = data.into_std()?;
    data.set_nonblocking(false)?;
    data.set_read_timeout(Some(stalled))?;
    data.set_write_timeout(Some(stalled))?;
    Ok(data)
}

/// How long a blocking read or write on a data connection may wait.
const STALLED: std::time::Duration = std::time::Duration::from_secs(60);

/// [`drain`] with blocking reads.
pub fn drain_blocking(data: &mut std::net::TcpStream, buf: &mut [u8]) -> std::io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = data.read(buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// "227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)."
fn parse_pasv(text: &str) -> Result<SocketAddr> {
    let inner = text
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(inner, _)| inner)
        .with_context(|| format!("odd PASV reply: {text}"))?;
    let n: Vec<u8> = inner
        .split(',')
        .map(|p| p.trim().parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("odd PASV reply: {text}"))?;
    if n.len() != 6 {
        bail!("odd PASV reply: {text}");
    }
    let ip = Ipv4Addr::new(n[0], n[1], n[2], n[3]);
    Ok(SocketAddr::new(
        ip.into(),
        u16::from(n[4]) << 8 | u16::from(n[5]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A blocking read from a server that sends nothing fails once the
    /// connection has been stalled for the given time, and does not hang.
    #[tokio::test]
    async fn a_blocking_read_gives_up_on_a_stalled_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (_silent, _) = listener.accept().await.unwrap();
        let mut client = into_blocking(client, std::time::Duration::from_millis(100)).unwrap();
        // On a thread of its own, so that a read that never returns fails
        // the test rather than hanging it.
        let (done, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(drain_blocking(&mut client, &mut [0u8; 1024])));
        let err = outcome
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the read still waits after 10 s")
            .unwrap_err();
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{err}"
        );
    }

    #[test]
    fn parses_pasv_replies() {
        let a = parse_pasv("227 Entering Passive Mode (127,0,0,1,117,49).\r\n").unwrap();
        assert_eq!(a, "127.0.0.1:30001".parse().unwrap());
        assert!(parse_pasv("227 nope").is_err());
    }
}
