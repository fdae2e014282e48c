//! Kernel pool: `ExAllocatePool2`, `ExFreePoolWithTag`, `ExFreePool`, with leak and bad-free
//! detection.
//!
//! Pool memory comes from the system allocator, never from the global one: a driver's global
//! allocator may itself be pool (`wdk_alloc::WdkAllocator`), and the pool must not call back
//! into it. When it is, the process's other heap allocations arrive here too; they are served
//! untracked (see `driver_heap`), and what the bookkeeping below allocates while it holds its
//! lock is served without bookkeeping at all (a small header keeps its size).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use super::verifier::{self, rules};
use super::{driver_heap, faults, irql};
use crate::constants::{POOL_FLAG_PAGED, POOL_FLAG_UNINITIALIZED};
use crate::types::{POOL_FLAGS, PVOID, SIZE_T, ULONG};

/// Pool blocks are 16-byte aligned on x64.
const POOL_ALIGNMENT: usize = 16;

/// One live allocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Block {
    /// Requested size.
    pub(crate) size: usize,
    /// Pool tag.
    pub(crate) tag: ULONG,
    layout: Layout,
    /// The driver's pool (false: heap of the host process served through a pool-backed global
    /// allocator, never reported).
    tracked: bool,
}

static BLOCKS: LazyLock<Mutex<HashMap<usize, Block>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

thread_local! {
    /// This thread is inside the bookkeeping (holding `BLOCKS`).
    static BOOKKEEPING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the bookkeeping lock held. Allocations `f` causes (the map growing) are served
/// by [`untracked_allocate`] and freed by [`untracked_free`].
fn with_blocks<R>(f: impl FnOnce(&mut HashMap<usize, Block>) -> R) -> R {
    let mut blocks = BLOCKS.lock().unwrap_or_else(PoisonError::into_inner);
    BOOKKEEPING.with(|b| b.set(true));
    let result = f(&mut blocks);
    BOOKKEEPING.with(|b| b.set(false));
    drop(blocks);
    result
}

/// Memory for the bookkeeping itself: a 16-byte header holding the size, then the block.
fn untracked_allocate(size: usize) -> PVOID {
    let Ok(layout) = Layout::from_size_align(size + POOL_ALIGNMENT, POOL_ALIGNMENT) else {
        return core::ptr::null_mut();
    };
    // SAFETY: the layout has a nonzero size.
    let base = unsafe { System.alloc(layout) };
    if base.is_null() {
        return core::ptr::null_mut();
    }
    #[allow(clippy::cast_ptr_alignment, reason = "the block is 16-byte aligned")]
    let header = base.cast::<usize>();
    // SAFETY: the header fits in the first 16 bytes of the fresh, 16-aligned block.
    unsafe { header.write(layout.size()) };
    // SAFETY: within the block (its size is at least 16).
    unsafe { base.add(POOL_ALIGNMENT) }.cast()
}

/// Frees memory from [`untracked_allocate`].
fn untracked_free(pointer: PVOID) {
    // SAFETY: `pointer` came from `untracked_allocate`, 16 bytes into its block.
    let base = unsafe { pointer.cast::<u8>().sub(POOL_ALIGNMENT) };
    #[allow(clippy::cast_ptr_alignment, reason = "the block is 16-byte aligned")]
    let header = base.cast::<usize>();
    // SAFETY: the header written by `untracked_allocate`.
    let size = unsafe { header.read() };
    let Ok(layout) = Layout::from_size_align(size, POOL_ALIGNMENT) else {
        return;
    };
    // SAFETY: the block was allocated with exactly this layout and is freed once.
    unsafe { System.dealloc(base, layout) };
}

/// `ExAllocatePool2` as a driver calls it: the driver's pool, or plain heap when the global
/// allocator is pool-backed and the caller is not driver code (see `driver_heap`).
pub(crate) fn allocate_for_caller(flags: POOL_FLAGS, size: SIZE_T, tag: ULONG) -> PVOID {
    if BOOKKEEPING.with(Cell::get) {
        return untracked_allocate(usize::try_from(size).unwrap_or(usize::MAX));
    }
    if driver_heap::allocation_is_the_drivers() {
        driver_heap::framework_code(|| allocate(flags, size, tag))
    } else {
        heap_allocate(size, tag)
    }
}

/// Host heap served through a pool-backed global allocator: recorded (so that freeing it is
/// recognised) but never checked or reported.
///
/// Such an allocator passes only the size (`WdkAllocator` does), and the host's standard library
/// has over-aligned types (cache-padded channel counters, aligned to 128): the block is aligned to
/// the largest power of two dividing its size (at least 16, at most 4096), which is enough for
/// any type of that size, since a type's size is a multiple of its alignment.
fn heap_allocate(size: SIZE_T, tag: ULONG) -> PVOID {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let alignment = (size & size.wrapping_neg()).clamp(POOL_ALIGNMENT, 4096);
    let Ok(layout) = Layout::from_size_align(size.max(1), alignment) else {
        return core::ptr::null_mut();
    };
    // SAFETY: the layout has a nonzero size.
    let memory = unsafe { System.alloc(layout) };
    if !memory.is_null() {
        let block = Block {
            size,
            tag,
            layout,
            tracked: false,
        };
        with_blocks(|blocks| blocks.insert(memory as usize, block));
    }
    memory.cast()
}

/// `ExAllocatePool2`.
pub(crate) fn allocate(flags: POOL_FLAGS, size: SIZE_T, tag: ULONG) -> PVOID {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let paged = flags & POOL_FLAG_PAGED != 0;
    if paged && irql::current() > irql::APC {
        verifier::report(
            rules::PAGED_ALLOCATION_AT_DISPATCH,
            "ExAllocatePool2",
            format!(
                "{size} bytes of paged pool requested at IRQL {}",
                irql::current()
            ),
        );
        return core::ptr::null_mut();
    }
    if !irql::require_at_most(irql::DISPATCH, "ExAllocatePool2")
        || faults::hit(faults::FaultPoint::Allocation).is_err()
    {
        return core::ptr::null_mut();
    }
    let Ok(layout) = Layout::from_size_align(size.max(1), POOL_ALIGNMENT) else {
        return core::ptr::null_mut();
    };
    // SAFETY: the layout has a nonzero size.
    let memory = unsafe { System.alloc(layout) };
    if memory.is_null() {
        return core::ptr::null_mut();
    }
    // Uninitialized pool is filled with a pattern so that reading it before writing shows.
    let fill = if flags & POOL_FLAG_UNINITIALIZED != 0 {
        0xCD
    } else {
        0
    };
    // SAFETY: `memory` is a fresh allocation of `layout.size()` bytes.
    unsafe { memory.write_bytes(fill, layout.size()) };
    let block = Block {
        size,
        tag,
        layout,
        tracked: true,
    };
    with_blocks(|blocks| blocks.insert(memory as usize, block));
    faults::pool_allocated();
    memory.cast()
}

/// `ExFreePoolWithTag` (`tag: None` for `ExFreePool`).
pub(crate) fn free(pointer: PVOID, tag: Option<ULONG>, api: &str) {
    if BOOKKEEPING.with(Cell::get) {
        untracked_free(pointer);
        return;
    }
    driver_heap::framework_code(|| free_block(pointer, tag, api));
}

fn free_block(pointer: PVOID, tag: Option<ULONG>, api: &str) {
    let block = with_blocks(|blocks| blocks.get(&(pointer as usize)).copied());
    if let Some(block) = block
        && !block.tracked
    {
        with_blocks(|blocks| blocks.remove(&(pointer as usize)));
        // SAFETY: allocated by `heap_allocate` with this layout, freed once (just removed).
        unsafe { System.dealloc(pointer.cast(), block.layout) };
        return;
    }
    if !irql::require_at_most(irql::DISPATCH, api) {
        return;
    }
    let Some(block) = block else {
        verifier::report(
            rules::INVALID_POOL_FREE,
            api,
            format!("{pointer:p} is not an allocated pool block"),
        );
        return;
    };
    if let Some(tag) = tag
        && tag != block.tag
    {
        verifier::report(
            rules::INVALID_POOL_FREE,
            api,
            format!(
                "{pointer:p} was allocated with tag {:#x}, freed with tag {tag:#x}",
                block.tag
            ),
        );
        return;
    }
    if with_blocks(|blocks| blocks.remove(&(pointer as usize))).is_none() {
        // Freed by another thread in between: a double free.
        verifier::report(
            rules::INVALID_POOL_FREE,
            api,
            format!("{pointer:p} is not an allocated pool block"),
        );
        return;
    }
    // SAFETY: the block was allocated by `allocate` with this layout and is freed once (it was
    // just removed from the live set).
    unsafe { System.dealloc(pointer.cast(), block.layout) };
    faults::pool_freed();
}

/// Every live block of the driver's pool (address, block).
pub(crate) fn live() -> Vec<(usize, Block)> {
    // The list is allocated outside the lock (it may be pool itself) and filled inside without
    // growing.
    let mut live = Vec::new();
    loop {
        let count = with_blocks(|blocks| blocks.len());
        live.reserve(count + 16);
        let filled = with_blocks(|blocks| {
            if blocks.len() > live.capacity() {
                return false;
            }
            live.extend(
                blocks
                    .iter()
                    .filter(|(_, block)| block.tracked)
                    .map(|(address, block)| (*address, *block)),
            );
            true
        });
        if filled {
            break;
        }
    }
    live.sort_by_key(|(address, _)| *address);
    live
}

/// Forgets every block of the driver's pool (between test sessions), leaking them on purpose.
/// Host heap served through the pool stays known, so that freeing it later is recognised.
pub(crate) fn reset() {
    with_blocks(|blocks| blocks.retain(|_, block| !block.tracked));
}
