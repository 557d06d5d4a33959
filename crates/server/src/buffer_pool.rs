//! Memory for upload buffers, cut from 2 MiB huge pages so that each
//! buffer is physically contiguous.
//!
//! A direct write reaches the device as a request with one segment per
//! physically contiguous run of its buffer. On a virtio disk without
//! indirect descriptors (the benchmark machine's) every segment takes one
//! entry of the device's ring of 256, so 160 KiB buffers of scattered 4 KiB
//! pages (40 segments each) let about six writes be in flight at once,
//! however many uploads wait: 100 uploads kept 6-9 writes in flight. A
//! buffer inside one huge page is a single segment: 80-85 in flight, and
//! 100 uploads at once ran at 834-1092 MiB/s (median 1003) against 751-974
//! (median 830), 8 interleaved rounds each, kubeftp alone (`kubeftp-bench
//! ftp --phases concurrent --concurrent 100 --kubeftp-only`). Other devices
//! also map, and the block layer walks, fewer segments.
//!
//! The pool maps chunks of [`CHUNK`] bytes, aligned to it and advised
//! for transparent huge pages, and cuts each into equal slots of a power
//! of two between [`SLOT_MIN`] and [`CHUNK`]; a buffer never straddles two
//! chunks. A chunk whose last slot comes back stays mapped, empty, and is
//! cut again for whatever size is asked next: a huge page is zeroed by the
//! kernel when first touched (and on a virtual machine that hands freed
//! memory back to its host, fetched from the host first), so a chunk
//! unmapped as soon as it emptied cost that again each time: uploads of
//! 10 MiB one after another (a client's mput) faulted four huge pages
//! each; with the chunks kept, the server spent 500-510 ms of CPU per 600
//! MiB instead of 640-680, and they ran at 516-548 MiB/s instead of
//! 434-497 (3 runs each). [`Pool::release_empty`] unmaps the empty
//! chunks; the server calls it once uploads have stopped for a while, so
//! memory still returns to the kernel. The pool is bounded; past its
//! bound, and where the kernel gives no huge pages (THP off), buffers are
//! ordinary pages, which cost nothing but the device's parallelism.

use std::io;
use std::ptr::NonNull;
use std::sync::Mutex;

use memmap2::{Advice, MmapMut};

/// A huge page on x86-64 and arm64 (4 KiB base pages).
pub const CHUNK: usize = 2 * 1024 * 1024;

/// The smallest slot, so a chunk has at most 32 slots (one `u32` bitmap).
pub const SLOT_MIN: usize = CHUNK / 32;

/// Chunks, each cut into slots of one size.
pub struct Pool {
    max_chunks: usize,
    chunks: Mutex<Vec<Chunk>>,
}

struct Chunk {
    /// Twice [`CHUNK`] of address space, so an aligned chunk fits inside;
    /// only the chunk is ever touched, and only through `base`.
    _map: MmapMut,
    /// The aligned chunk's first byte.
    base: NonNull<u8>,
    slot: usize,
    /// Bit `i` is set while slot `i` is lent out.
    used: u32,
}

// SAFETY: `base` points into `_map`, which the chunk owns; the pool hands
// each slot of it to one Slot at a time.
unsafe impl Send for Chunk {}

impl Chunk {
    fn new(slot: usize) -> io::Result<Chunk> {
        let mut map = MmapMut::map_anon(2 * CHUNK)?;
        let start = map.as_ptr().align_offset(CHUNK);
        // Advisory: without huge pages the buffers are ordinary pages.
        let _ = map.advise_range(Advice::HugePage, start, CHUNK);
        // The mapping's raw pointer (no reference to its bytes is made).
        let base = NonNull::new(map.as_mut_ptr().wrapping_add(start))
            .ok_or_else(|| io::Error::other("mapped at address zero"))?;
        Ok(Chunk {
            _map: map,
            base,
            slot,
            used: 0,
        })
    }

    /// The chunk's address, which names it.
    fn addr(&self) -> usize {
        self.base.as_ptr() as usize
    }

    /// Lends a free slot, if any.
    fn lend(&mut self) -> Option<NonNull<u8>> {
        let index = (!self.used).trailing_zeros();
        if (index as usize) < CHUNK / self.slot {
            self.used |= 1 << index;
            // SAFETY: slot `index` lies inside the chunk.
            Some(unsafe { self.base.add(index as usize * self.slot) })
        } else {
            None
        }
    }
}

/// A slot lent by a [`Pool`]: `len` bytes that only it may touch, given
/// back when it is dropped.
pub struct Slot {
    pool: &'static Pool,
    /// Inside a chunk, which is aligned to [`CHUNK`]: the pointer names
    /// both.
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Slot owns its bytes exclusively (the pool lends each slot
// once until it is given back), as a Box<[u8]> would.
unsafe impl Send for Slot {}
unsafe impl Sync for Slot {}

impl Pool {
    /// A pool of at most `max_bytes` (rounded down to whole chunks).
    pub const fn new(max_bytes: usize) -> Pool {
        Pool {
            max_chunks: max_bytes / CHUNK,
            chunks: Mutex::new(Vec::new()),
        }
    }

    /// A slot of at least `len` bytes, or `None` when `len` is zero or over
    /// [`CHUNK`], or the pool is full (or the kernel refused a mapping).
    pub fn take(&'static self, len: usize) -> Option<Slot> {
        if len == 0 || len > CHUNK {
            return None;
        }
        let size = len.next_power_of_two().max(SLOT_MIN);
        let mut chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        let found = chunks
            .iter_mut()
            .filter(|chunk| chunk.slot == size)
            .find_map(Chunk::lend)
            .or_else(|| {
                // An empty chunk, cut again for this size.
                let empty = chunks.iter_mut().find(|chunk| chunk.used == 0)?;
                empty.slot = size;
                empty.lend()
            });
        let ptr = match found {
            Some(ptr) => ptr,
            None if chunks.len() < self.max_chunks => {
                let mut chunk = Chunk::new(size).ok()?;
                let ptr = chunk.lend()?;
                chunks.push(chunk);
                ptr
            }
            None => return None,
        };
        Some(Slot {
            pool: self,
            ptr,
            len,
        })
    }

    /// Unmaps the chunks that have no slot lent out.
    pub fn release_empty(&self) {
        let mut chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        chunks.retain(|chunk| chunk.used != 0);
    }

    /// Chunks mapped now, in use or empty.
    pub fn chunks(&self) -> usize {
        self.chunks.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn give_back(&self, ptr: NonNull<u8>) {
        let addr = ptr.as_ptr() as usize;
        let chunk = addr - addr % CHUNK;
        let mut chunks = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = chunks.iter().position(|c| c.addr() == chunk) {
            let index = (addr - chunk) / chunks[at].slot;
            chunks[at].used &= !(1 << index);
        }
    }
}

impl Slot {
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` bytes at `ptr` are this slot's alone while it lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.give_back(self.ptr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(max_bytes: usize) -> &'static Pool {
        Box::leak(Box::new(Pool::new(max_bytes)))
    }

    fn range(slot: &Slot) -> std::ops::Range<usize> {
        let start = slot.as_slice().as_ptr() as usize;
        start..start + slot.as_slice().len()
    }

    #[test]
    fn slots_are_disjoint_and_inside_one_aligned_chunk() {
        let pool = pool(4 * CHUNK);
        let mut slots: Vec<Slot> = (0..16).map(|_| pool.take(160 * 1024).unwrap()).collect();
        // 256 KiB slots: eight to a chunk.
        assert_eq!(pool.chunks(), 2);
        for (i, slot) in slots.iter_mut().enumerate() {
            let r = range(slot);
            assert_eq!(
                r.start / CHUNK,
                (r.end - 1) / CHUNK,
                "slot {i} straddles chunks"
            );
            assert_eq!(r.start % (256 * 1024), 0);
            slot.as_mut_slice().fill(i as u8);
        }
        for (i, slot) in slots.iter().enumerate() {
            assert!(
                slot.as_slice().iter().all(|&b| b == i as u8),
                "slot {i} overwritten"
            );
        }
    }

    #[test]
    fn a_returned_slot_is_lent_again() {
        let pool = pool(CHUNK);
        let first = pool.take(CHUNK / 2).unwrap();
        let _second = pool.take(CHUNK / 2).unwrap();
        let at = range(&first).start;
        drop(first);
        assert_eq!(range(&pool.take(CHUNK / 2).unwrap()).start, at);
        assert_eq!(pool.chunks(), 1);
    }

    #[test]
    fn an_empty_chunk_is_kept_and_cut_again_until_released() {
        let pool = pool(CHUNK);
        let large = pool.take(CHUNK).unwrap();
        let chunk = range(&large).start;
        drop(large);
        assert_eq!(pool.chunks(), 1, "the empty chunk was unmapped");
        // The same memory, now in small slots, with no second mapping
        // (the bound is one chunk).
        let small: Vec<Slot> = (0..32).map(|_| pool.take(SLOT_MIN).unwrap()).collect();
        assert!(
            small
                .iter()
                .all(|s| range(s).start / CHUNK == chunk / CHUNK)
        );
        pool.release_empty();
        assert_eq!(pool.chunks(), 1, "a chunk in use was unmapped");
        drop(small);
        pool.release_empty();
        assert_eq!(pool.chunks(), 0);
    }

    #[test]
    fn the_pool_keeps_to_its_bound_and_to_chunk_sized_slots() {
        let pool = pool(2 * CHUNK);
        let held: Vec<Slot> = (0..4).map(|_| pool.take(CHUNK / 2).unwrap()).collect();
        assert!(pool.take(CHUNK / 2).is_none(), "a third chunk was mapped");
        assert!(pool.take(CHUNK + 1).is_none());
        assert!(pool.take(0).is_none());
        drop(held);
        pool.release_empty();
        assert_eq!(pool.chunks(), 0);
        // Sizes sort into their own chunks.
        let _small = pool.take(SLOT_MIN).unwrap();
        let _large = pool.take(CHUNK).unwrap();
        assert_eq!(pool.chunks(), 2);
        assert!(pool.take(CHUNK).is_none());
    }

    /// The chunks are eligible for huge pages wherever the kernel offers
    /// them (`enabled` not `[never]`); whether it finds a free huge page
    /// is up to it.
    #[test]
    fn chunks_are_advised_for_huge_pages() {
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        if thp.is_empty() || thp.contains("[never]") {
            return;
        }
        let pool = pool(CHUNK);
        let slot = pool.take(SLOT_MIN).unwrap();
        let addr = slot.as_slice().as_ptr() as usize;
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((span, _)) = line.split_once(' ')
                && let Some((from, to)) = span.split_once('-')
                && let (Ok(from), Ok(to)) = (
                    usize::from_str_radix(from, 16),
                    usize::from_str_radix(to, 16),
                )
            {
                inside = (from..to).contains(&addr);
            } else if inside && let Some(flag) = line.strip_prefix("THPeligible:") {
                assert_eq!(flag.trim(), "1", "{line}");
                return;
            }
        }
        panic!("the slot's mapping is not in smaps");
    }
}
