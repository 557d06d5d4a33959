//! The upload buffers' pool keeps its chunks from one upload to the next
//! and gives them back to the kernel once uploads stop. A test binary of
//! its own: the pool is the whole process's.

mod support;

use std::time::Duration;

use kubeftp_server::disk_writer::pooled_bytes;
use support::{ALICE, RawClient, TestServer, eventually, random_bytes};

#[tokio::test]
async fn chunks_are_kept_between_uploads_and_given_back_when_uploads_stop() {
    let server = TestServer::start().await;
    let mut client = RawClient::login(server.addr, ALICE).await;
    assert_eq!(pooled_bytes(), 0);
    let file = random_bytes(4 * 1024 * 1024);

    assert_eq!(client.transfer_out("STOR a.bin", &file).await, 226);
    let kept = pooled_bytes();
    assert!(kept > 0, "the upload's chunks were unmapped as it ended");
    // The next upload is served from the kept chunks.
    assert_eq!(client.transfer_out("STOR b.bin", &file).await, 226);
    assert_eq!(pooled_bytes(), kept);

    let given_back = eventually(Duration::from_secs(20), async || pooled_bytes() == 0).await;
    assert!(given_back, "{} bytes still mapped", pooled_bytes());
    assert_eq!(std::fs::read(server.alice_path("b.bin")).unwrap(), file);
}
