//! Upload buffers give their memory back to the kernel when dropped. A
//! test binary of its own: no other test maps or frees memory meanwhile.

use kubeftp_server::disk_writer::AlignedBuf;

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
    drop(std::hint::black_box(vec![1u8; 16 * 1024 * 1024]));
    let buf = AlignedBuf::new(3 * 1024 * 1024).unwrap();
    let page = buf.as_slice().as_ptr();
    assert!(mapped(page));
    drop(buf);
    assert!(!mapped(page), "the buffer's memory stayed with the process");
}
