//! `PageAlignedLarge`: the global allocator of `psrtd` and `psrt-cli`. It is
//! the system allocator, except that every block of more than
//! [`LARGE_ABOVE`] bytes starts on a page boundary.
//!
//! Why: a large message is copied by the kernel between socket buffers and
//! the buffer it is assembled in (`recv`) or sent from (`send`). On the x86
//! CPU measured here that copy (`rep movsb`) runs 2–5× slower for some
//! placements of the destination relative to the source within a page
//! (`benches/recv_alignment.py`), and glibc's `malloc` puts a block it maps
//! on its own 16 bytes past a page boundary. With the reference client's
//! traffic that placement was a slow one: psrtd's `recvfrom` of 256 KiB
//! took 0.47–0.53 ms/MB at +16 bytes and 0.08–0.13 ms/MB page-aligned
//! (BENCHMARKS.md, "Buffer alignment").
//! Page-aligned large blocks are also what mmap and most allocators
//! (mimalloc, jemalloc) give, so the server's copies cost what any
//! client's copies cost.
//!
//! The rule is decided by the size alone, so `dealloc` and `realloc` see
//! the same layout `alloc` chose. Smaller blocks are untouched — among
//! them the server's 64 KiB input buffers, which many connections take and
//! give back in turn and which hold many small frames each: only a frame
//! larger than one of them gets a buffer of its own, and that is a large
//! block.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of more than this many bytes start on a page boundary (the
/// server's input buffer size, `conn::recv::RX_CHUNK`).
pub const LARGE_ABOVE: usize = 64 * 1024;
/// The alignment given to large blocks.
const PAGE: usize = 4096;

/// The system allocator with page-aligned large blocks (see the module).
#[derive(Debug, Clone, Copy, Default)]
pub struct PageAlignedLarge;

/// The layout actually requested from the system for `layout`.
fn actual(layout: Layout) -> Layout {
    if layout.size() > LARGE_ABOVE && layout.align() < PAGE {
        // A size valid with a smaller alignment stays valid with PAGE unless
        // rounding it up to PAGE overflows isize; then keep the request as is.
        Layout::from_size_align(layout.size(), PAGE).unwrap_or(layout)
    } else {
        layout
    }
}

// SAFETY: every method forwards to `System` with the layout `actual` derives
// from the caller's layout, a pure function of size and alignment, so a
// block is always freed or resized with the layout it was allocated with.
unsafe impl GlobalAlloc for PageAlignedLarge {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `actual` keeps the size (non-zero per the caller's contract)
        // and only raises the alignment to a valid power of two.
        unsafe { System.alloc(actual(layout)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(actual(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator with `layout`, so by
        // `System` with `actual(layout)`.
        unsafe { System.dealloc(ptr, actual(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = actual(layout);
        let Ok(wanted) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let new = actual(wanted);
        if old.align() == new.align() {
            // SAFETY: `ptr` came from `System` with `old`; the new size with
            // the same alignment is a valid layout (checked above).
            return unsafe { System.realloc(ptr, old, new_size) };
        }
        // Crossing LARGE_ABOVE: a new block with the other alignment, then copy.
        // SAFETY: `new` is a valid non-zero layout (new_size > 0 per the
        // caller's contract).
        let fresh = unsafe { System.alloc(new) };
        if !fresh.is_null() {
            // SAFETY: both blocks are live, distinct, and at least
            // min(old, new) bytes long; `ptr` is freed with its own layout.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, fresh, old.size().min(new_size));
                System.dealloc(ptr, old);
            }
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_start_on_a_page_and_small_ones_keep_their_alignment() {
        let a = PageAlignedLarge;
        for (size, align) in [
            (LARGE_ABOVE + 1, 1),
            (1 << 20, 8),
            (LARGE_ABOVE, 1),
            (100, 16),
            (8192, 8192),
        ] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero size; freed below with the same layout.
            let p = unsafe { a.alloc(l) };
            assert!(!p.is_null());
            let want = if size > LARGE_ABOVE {
                PAGE.max(align)
            } else {
                align
            };
            assert_eq!(p as usize % want, 0, "size {size} align {align}");
            // SAFETY: `p` is live for `size` bytes.
            unsafe {
                p.write_bytes(0xa5, size);
                a.dealloc(p, l);
            }
        }
    }

    #[test]
    fn realloc_across_the_threshold_keeps_the_bytes_and_the_rule() {
        let a = PageAlignedLarge;
        let small = Layout::from_size_align(1000, 1).unwrap();
        // SAFETY: non-zero sizes; each block is resized or freed with the
        // layout it currently has.
        unsafe {
            let p = a.alloc(small);
            for i in 0..1000 {
                p.add(i).write(i as u8);
            }
            let big = a.realloc(p, small, 3 * LARGE_ABOVE);
            assert_eq!(big as usize % PAGE, 0);
            assert!((0..1000).all(|i| big.add(i).read() == i as u8));
            let big_l = Layout::from_size_align(3 * LARGE_ABOVE, 1).unwrap();
            let bigger = a.realloc(big, big_l, 5 * LARGE_ABOVE);
            assert_eq!(bigger as usize % PAGE, 0);
            assert!((0..1000).all(|i| bigger.add(i).read() == i as u8));
            let bigger_l = Layout::from_size_align(5 * LARGE_ABOVE, 1).unwrap();
            let back = a.realloc(bigger, bigger_l, 500);
            assert!((0..500).all(|i| back.add(i).read() == i as u8));
            a.dealloc(back, Layout::from_size_align(500, 1).unwrap());
        }
    }

    #[test]
    fn a_large_message_buffer_layout_is_raised_to_a_page() {
        // The library's tests run on the default allocator; this checks the
        // rule the binaries apply to a Vec<u8> of a large message (and that
        // one of exactly 64 KiB, an input buffer, is left alone).
        let l = Layout::array::<u8>(1 << 20).unwrap();
        assert_eq!(actual(l).align(), PAGE);
        assert_eq!(actual(Layout::array::<u8>(100).unwrap()).align(), 1);
        assert_eq!(actual(Layout::array::<u8>(LARGE_ABOVE).unwrap()).align(), 1);
    }
}
