//! The upload buffers' pool: an upload takes buffers only as it needs
//! them, the pool keeps their chunks from one upload to the next, and gives
//! them back to the kernel once uploads stop. A test binary of its own: the
//! pool is the whole process's.

mod support;

use std::time::Duration;

use kubeftp_server::buffer_pool::CHUNK;
use kubeftp_server::disk_writer::pooled_bytes;
use support::{ALICE, RawClient, TestServer, eventually, http_get, metric, random_bytes};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn server() -> TestServer {
    TestServer::start_with(|c| c.ops.listen = Some("127.0.0.1:0".parse().unwrap())).await
}

/// The upload buffers' memory as the server's metrics report it.
async fn buffer_metric(server: &TestServer) -> usize {
    let (_, page) = http_get(server.ops.unwrap(), "/metrics").await;
    metric(&page, "kubeftp_upload_buffer_bytes ") as usize
}

/// Uploads `file` as `name` to `server`; returns the pool's bytes right
/// after the 226, checking that the metrics report them.
async fn upload(server: &TestServer, name: &str, file: &[u8]) -> usize {
    let mut client = RawClient::login(server.addr, ALICE).await;
    assert_eq!(
        client.transfer_out(&format!("STOR {name}"), file).await,
        226
    );
    let kept = pooled_bytes();
    assert_eq!(buffer_metric(server).await, kept);
    assert_eq!(std::fs::read(server.alice_path(name)).unwrap(), file);
    kept
}

#[test]
fn chunks_are_taken_as_needed_kept_between_uploads_and_given_back() {
    assert_eq!(pooled_bytes(), 0);
    // Smaller than one buffer (a lone upload's are 2 MiB): the reader fills
    // one, and takes a second at most while the first is being written.
    let file = random_bytes(1024 * 1024);

    // The first server's runtime ends while the pool waits for quiet; the
    // wait ends with it, and must not keep the next one from starting.
    let kept = runtime().block_on(async { upload(&server().await, "a.bin", &file).await });
    assert!(kept > 0, "the upload's chunks were unmapped as it ended");
    assert!(kept <= 2 * CHUNK, "{kept} bytes of buffers for 1 MiB");

    runtime().block_on(async {
        let server = server().await;
        let kept = upload(&server, "b.bin", &file).await;
        assert!(kept > 0 && kept <= 2 * CHUNK, "{kept} bytes");
        let given_back = eventually(Duration::from_secs(20), async || pooled_bytes() == 0).await;
        assert!(given_back, "{} bytes still mapped", pooled_bytes());
        assert_eq!(buffer_metric(&server).await, 0);
    });
}
