//! More than 512 binary uploads at once: each new one's data socket gets
//! its share of the receive-buffer budget, through a session's real STOR
//! (the unit tests in `transfer` drive `receive_file` directly). A test
//! binary of its own: the count of running uploads is process-wide.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Uploads running at once from which each new one's socket is sized.
const CROWD: usize = 513;

/// Uploads the test starts, one after another. A session's upload starts
/// counting just after its 150, so the last one may start before the one
/// or two before it are counted; with a margin it starts among at least
/// [`CROWD`] all the same.
const STARTED: usize = CROWD + 7;

/// A writable account with a cheap bcrypt hash: 520 logins with argon2's
/// would take most of the test's time.
const UPLOADER: (&str, &str) = ("uploader", "uploader-pw");

/// The receive buffer the kernel reports (`ss`'s `rb`, twice what
/// SO_RCVBUF set) for the server's end of a data connection: local port
/// `server_port`, the client at `client`.
fn server_side_rcvbuf(server_port: u16, client: SocketAddr) -> usize {
    let filter = format!("( sport = :{server_port} and dport = :{} )", client.port());
    let out = Command::new("ss")
        .args(["-tmnH", "state", "established", &filter])
        .output()
        .expect("ss (iproute2) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let rb = text
        .split("rb")
        .nth(1)
        .unwrap_or_else(|| panic!("no skmem in ss's output: {text:?}"));
    let digits: String = rb.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

/// Lets this process hold the descriptors of 520 sessions on both ends
/// (two sockets each side, the file and its clone: about 3600).
fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit with a valid pointer to a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        // Root may raise the hard limit too.
        limit.rlim_cur = limit.rlim_max.max(8192);
        limit.rlim_max = limit.rlim_cur;
        assert_eq!(
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit),
            0,
            "could not raise the descriptor limit to {}",
            limit.rlim_cur
        );
    }
}

/// A session with a binary STOR under way: the data connection is open,
/// the 150 came, and some bytes went; the upload waits for more.
struct Upload {
    control: RawClient,
    data: TcpStream,
    server_port: u16,
}

async fn start_upload(server: &TestServer, name: &str) -> Upload {
    let mut c = RawClient::login(server.addr, UPLOADER).await;
    c.expect("TYPE I", 200).await;
    let addr = c.pasv().await;
    let mut data = c.data_connect(addr).await;
    c.expect(&format!("STOR {name}"), 150).await;
    data.write_all(&[7u8; 1000]).await.unwrap();
    Upload {
        control: c,
        data,
        server_port: addr.port(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_among_many_gets_a_small_socket_receive_buffer() {
    raise_descriptor_limit();
    let hash = bcrypt::hash(UPLOADER.1, 4).unwrap();
    let users = format!(
        "\n[[user]]\nname = \"{}\"\npassword-hash = \"{hash}\"\nhome = \"alice\"\n",
        UPLOADER.0
    );
    let server = TestServer::start_with_users(&users, |c| {
        c.limits.max_sessions = STARTED;
        c.limits.max_sessions_per_ip = STARTED;
    })
    .await;

    let mut uploads = Vec::new();
    for i in 0..STARTED {
        uploads.push(start_upload(&server, &format!("up-{i}")).await);
    }
    let rcvbuf = |u: &Upload| server_side_rcvbuf(u.server_port, u.data.local_addr().unwrap());
    // 128 MiB shared by 513 to 520: 252-255 KiB each, a power of two at
    // most 128 KiB; Linux reports twice what was set.
    let expected = 2 * 128 * 1024;
    // The first upload started alone, so the kernel sized its buffer: at
    // `tcp_rmem`'s default, which must differ for the test to tell.
    let first = rcvbuf(&uploads[0]);
    if first == expected {
        eprintln!("this machine's tcp_rmem default is {first}, the size under test: not checked");
        return;
    }
    // The server counts an upload and sizes its socket just after its 150.
    let last = uploads.last().unwrap();
    let sized = eventually(Duration::from_secs(10), async || rcvbuf(last) == expected).await;
    assert!(sized, "the last upload's socket: rb {}", rcvbuf(last));

    // Every upload still completes.
    for (i, mut u) in uploads.into_iter().enumerate() {
        u.data.shutdown().await.unwrap();
        drop(u.data);
        assert_eq!(u.control.read_reply().await.0, 226, "upload {i}");
        assert_eq!(
            std::fs::metadata(server.alice_path(&format!("up-{i}")))
                .unwrap()
                .len(),
            1000
        );
    }
}
