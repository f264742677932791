//! Fuzz target: see `livepool::fuzzing::pooled` for the input and the checks.
//!
//! Adds one check the stable-toolchain run cannot make: no single heap
//! allocation during a run is larger than [`ALLOCATION_LIMIT`]. The body
//! limit the input picks is at most 64 bytes and a frame header can
//! announce up to 4 GiB, so a decoder that reserved what a header says
//! before checking it against the limit would allocate far beyond this; the
//! limit itself only leaves room for the read buffers' fixed capacities
//! (8 KiB in tokio-util's `FramedRead`).
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The largest single allocation a run may make.
const ALLOCATION_LIMIT: usize = 64 * 1024;

/// The system allocator, recording the largest request since the last reset.
struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// only addition is a relaxed atomic max, which allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `layout` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as for `alloc`; `ptr` came from this allocator, i.e. System.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. System.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The first run builds the thread's tokio runtime, whose one-off tables
/// are not the code under test: run an empty input once before measuring.
static WARM_UP: Once = Once::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    WARM_UP.call_once(|| livepool::fuzzing::pooled(&[]));
    LARGEST.store(0, Ordering::Relaxed);
    livepool::fuzzing::pooled(data);
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= ALLOCATION_LIMIT,
        "one allocation of {largest} bytes, above the {ALLOCATION_LIMIT}-byte limit (body limit at most 64)"
    );
});
