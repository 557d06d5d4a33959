//! Upload buffers give their memory back to the kernel when dropped. A
//! test binary of its own: no other test maps or frees memory meanwhile.

use std::sync::Mutex;

use kubeftp_server::buffer_pool::CHUNK;
use kubeftp_server::disk_writer::{AlignedBuf, upload_buffer_bytes};

/// Taken by each test: the accounting checks want no other buffers made or
/// dropped meanwhile.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Whether the page at `addr` is mapped (mincore fails with ENOMEM where
/// nothing is).
fn mapped(addr: *const u8) -> bool {
    let mut residency = [0u8; 1];
    // SAFETY: mincore only inspects the address range; it writes one byte
    // per page into `residency`.
    unsafe { libc::mincore(addr as *mut libc::c_void, 4096, residency.as_mut_ptr()) == 0 }
}

/// glibc serves allocations below its mmap threshold from its heaps and
/// keeps what is freed there; freeing a large mapped chunk raises that
/// threshold to the chunk's size, as a burst of uploads did in the server.
#[test]
fn a_dropped_buffer_is_unmapped_whatever_the_allocator_did_before() {
    let _alone = ONE_AT_A_TIME.lock().unwrap();
    drop(std::hint::black_box(vec![1u8; 16 * 1024 * 1024]));
    let before = upload_buffer_bytes();
    // Larger than a pool chunk: a mapping of its own.
    let buf = AlignedBuf::new(3 * 1024 * 1024).unwrap();
    assert!(!buf.is_pooled());
    assert_eq!(
        upload_buffer_bytes(),
        before + 3 * 1024 * 1024,
        "not counted"
    );
    let page = buf.as_slice().as_ptr();
    assert!(mapped(page));
    drop(buf);
    assert!(!mapped(page), "the buffer's memory stayed with the process");
    assert_eq!(upload_buffer_bytes(), before, "still counted once unmapped");
}

/// Buffers made while the upload pool is full are mappings of their own;
/// renewed once a slot is free, they move into the pool.
#[test]
fn a_buffer_from_outside_the_pool_moves_in_when_a_slot_frees() {
    let _alone = ONE_AT_A_TIME.lock().unwrap();
    let mut held = Vec::new();
    let outside = loop {
        let buf = AlignedBuf::new(CHUNK).unwrap();
        if !buf.is_pooled() {
            break buf;
        }
        held.push(buf);
        assert!(held.len() < 1000, "the upload pool has no bound");
    };
    let outside = outside.renew(CHUNK).unwrap();
    assert!(!outside.is_pooled(), "the pool lent more than it has");
    held.pop();
    let moved = outside.renew(CHUNK).unwrap();
    assert!(moved.is_pooled());
    // A pooled buffer of the right size is kept as it is.
    let at = moved.as_slice().as_ptr();
    let kept = moved.renew(CHUNK).unwrap();
    assert_eq!(kept.as_slice().as_ptr(), at);
}
