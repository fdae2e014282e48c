//! A counting global allocator for host benchmarks and tests: install it with
//! `#[global_allocator] static HEAP: wdk_sys::sim::heap::CountingAllocator =
//! wdk_sys::sim::heap::CountingAllocator;` and read [`allocations`] around the code measured
//! (on Windows a driver's heap is pool, which the simulation counts separately); and
//! [`PoolAllocator`], which serves the heap from the simulated pool as a driver's allocator does.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting every allocation and reallocation.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAllocator;

// SAFETY: forwards every call to the system allocator unchanged; it only counts them.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Heap allocations (and reallocations) made so far by the process, when
/// [`CountingAllocator`] is its global allocator (always 0 otherwise).
#[must_use]
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// A global allocator that serves the heap from the simulated pool exactly as
/// `wdk_alloc::WdkAllocator` does in a driver (`ExAllocatePool2(POOL_FLAG_NON_PAGED, size,
/// 'rust')`, `ExFreePool`), for host tests of code that ships with that allocator:
/// `#[global_allocator] static HEAP: wdk_sys::sim::heap::PoolAllocator =
/// wdk_sys::sim::heap::PoolAllocator;`. The whole test process then allocates through the pool;
/// only what driver code allocates counts as the driver's pool (leak-checked, tag `'rust'`).
/// Pool blocks are 16-byte aligned; the few over-aligned allocations (the standard library's
/// cache-padded types, which pool could not serve either) come from the system allocator.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolAllocator;

/// The pool tag of [`PoolAllocator`], as `wdk_alloc::WdkAllocator` uses.
pub const RUST_TAG: crate::types::ULONG = u32::from_ne_bytes(*b"rust");

// SAFETY: pool blocks are 16-byte aligned and hold at least the requested size; over-aligned
// layouts go to the system allocator both ways (`dealloc` gets the same layout); `dealloc`
// frees exactly what `alloc` returned, once.
unsafe impl GlobalAlloc for PoolAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() > 16 {
            // SAFETY: the caller's contract is the system allocator's.
            return unsafe { System.alloc(layout) };
        }
        crate::framework::pool::allocate_for_caller(
            crate::constants::POOL_FLAG_NON_PAGED,
            layout.size() as crate::types::SIZE_T,
            RUST_TAG,
        )
        .cast()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.align() > 16 {
            // SAFETY: allocated by the system allocator with this layout (see `alloc`).
            unsafe { System.dealloc(ptr, layout) };
            return;
        }
        crate::framework::pool::free(ptr.cast(), None, "ExFreePool");
    }
}
