//! A counting global allocator, so `proxyscope bench` can report the heap a data structure
//! really holds (live bytes), not an estimate. Two relaxed atomic adds per allocation, over
//! mimalloc (see Cargo.toml for why not the system allocator).

use libmimalloc_sys::{mi_free, mi_malloc, mi_realloc};
use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Every mimalloc block is at least this aligned: block sizes are whole machine words and
/// pages start 16-byte aligned (mimalloc `types.h`, `MI_INTPTR_SIZE` / `MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = std::mem::size_of::<usize>();

/// Why not `MiMalloc.alloc` for everything: the `mimalloc` crate asks for every block through
/// `mi_malloc_aligned`, whose fast path needs a free block in the exact size class. When that
/// page is empty and the size class is not a power of two, mimalloc v3 over-allocates from a
/// bigger class (`mi_theap_malloc_zero_aligned_at_overalloc`), so the exact class never refills
/// and a short-lived `Vec` of 48 or 80 bytes keeps taking the slow path. Callgrind on a traced
/// packet: ~120 instructions per allocation that way. Layouts plain `mi_malloc` already
/// satisfies (like std's `System` does with `malloc`) go there; the rest stay aligned.
fn plain(l: Layout) -> bool {
    l.align() <= PLAIN_ALIGN
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = if plain(l) {
            // SAFETY: a plain mimalloc block of `l.size()` bytes is `PLAIN_ALIGN`-aligned.
            unsafe { mi_malloc(l.size()).cast::<u8>() }
        } else {
            // SAFETY: forwarding the caller's layout to mimalloc.
            unsafe { MiMalloc.alloc(l) }
        };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from mimalloc (either entry point); `mi_free` takes both, as
        // `MiMalloc::dealloc` does.
        unsafe { mi_free(p.cast::<c_void>()) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = if plain(l) {
            // SAFETY: `p` is a live mimalloc block; the new block keeps `PLAIN_ALIGN`.
            unsafe { mi_realloc(p.cast::<c_void>(), new).cast::<u8>() }
        } else {
            // SAFETY: same contract as GlobalAlloc::realloc.
            unsafe { MiMalloc.realloc(p, l, new) }
        };
        if !q.is_null() {
            LIVE.fetch_add(new, Ordering::Relaxed);
            LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        }
        q
    }
}

/// Bytes currently allocated on the heap.
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every layout the fast path takes comes back aligned, through alloc and realloc.
    #[test]
    fn plain_blocks_are_aligned() {
        for size in 1..600 {
            for align in [1, 2, 4, 8] {
                let l = Layout::from_size_align(size, align).expect("layout");
                // SAFETY: non-zero size; freed below with the same layout.
                unsafe {
                    let p = Counting.alloc(l);
                    assert!(
                        !p.is_null() && (p as usize).is_multiple_of(align),
                        "{size}/{align}"
                    );
                    let q = Counting.realloc(p, l, size * 3);
                    assert!(
                        !q.is_null() && (q as usize).is_multiple_of(align),
                        "{size}/{align} realloc"
                    );
                    Counting.dealloc(q, Layout::from_size_align(size * 3, align).expect("l"));
                }
            }
        }
        // Over-aligned layouts still get their alignment.
        let l = Layout::from_size_align(24, 64).expect("layout");
        // SAFETY: as above.
        unsafe {
            let p = Counting.alloc(l);
            assert!(!p.is_null() && (p as usize).is_multiple_of(64));
            Counting.dealloc(p, l);
        }
    }
}
