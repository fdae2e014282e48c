//! Kernel pool: `ExAllocatePool2`, `ExFreePoolWithTag`, `ExFreePool`, with leak and bad-free
//! detection.

use std::alloc::Layout;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use super::verifier::{self, rules};
use super::{faults, irql};
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
}

static BLOCKS: LazyLock<Mutex<HashMap<usize, Block>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn blocks() -> MutexGuard<'static, HashMap<usize, Block>> {
    BLOCKS.lock().unwrap_or_else(PoisonError::into_inner)
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
    let memory = unsafe { std::alloc::alloc(layout) };
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
    blocks().insert(memory as usize, Block { size, tag, layout });
    faults::pool_allocated();
    memory.cast()
}

/// `ExFreePoolWithTag` (`tag: None` for `ExFreePool`).
pub(crate) fn free(pointer: PVOID, tag: Option<ULONG>, api: &str) {
    if !irql::require_at_most(irql::DISPATCH, api) {
        return;
    }
    let mut blocks = blocks();
    let Some(block) = blocks.get(&(pointer as usize)).copied() else {
        drop(blocks);
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
        drop(blocks);
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
    blocks.remove(&(pointer as usize));
    drop(blocks);
    // SAFETY: the block was allocated by `allocate` with this layout and is freed once (it was
    // just removed from the live set).
    unsafe { std::alloc::dealloc(pointer.cast(), block.layout) };
    faults::pool_freed();
}

/// Every live block (address, block).
pub(crate) fn live() -> Vec<(usize, Block)> {
    let mut live: Vec<_> = blocks()
        .iter()
        .map(|(address, block)| (*address, *block))
        .collect();
    live.sort_by_key(|(address, _)| *address);
    live
}

/// Forgets every block (between test sessions), leaking them on purpose.
pub(crate) fn reset() {
    blocks().clear();
}
