//! Kernel (WDM) functions of the mirrored surface, as `wdk_sys::ntddk` offers them.
//!
//! `DbgPrint` is variadic in the WDK; a stable Rust function cannot be, so the simulation takes
//! exactly one argument after the format, which is how `dmf` calls it (`"%s"` and a string).
#![allow(non_snake_case)]

use crate::framework::{irql, pool};
use crate::types::{KIRQL, PCSTR, POOL_FLAGS, PVOID, SIZE_T, ULONG};

/// Current IRQL of the calling thread.
#[must_use]
pub unsafe extern "C" fn KeGetCurrentIrql() -> KIRQL {
    irql::current()
}

/// Allocates pool memory (zeroed unless `POOL_FLAG_UNINITIALIZED`).
#[must_use]
pub unsafe extern "C" fn ExAllocatePool2(
    Flags: POOL_FLAGS,
    NumberOfBytes: SIZE_T,
    Tag: ULONG,
) -> PVOID {
    pool::allocate(Flags, NumberOfBytes, Tag)
}

/// Frees pool allocated with the same tag.
pub unsafe extern "C" fn ExFreePoolWithTag(P: PVOID, Tag: ULONG) {
    pool::free(P, Some(Tag), "ExFreePoolWithTag");
}

/// Frees pool.
pub unsafe extern "C" fn ExFreePool(P: PVOID) {
    pool::free(P, None, "ExFreePool");
}

/// Prints `Format` with one C-string argument to the simulation's debug output.
#[allow(
    clippy::must_use_candidate,
    reason = "wdk-sys does not mark DbgPrint must_use"
)]
pub unsafe extern "C" fn DbgPrint(Format: PCSTR, Argument: PCSTR) -> ULONG {
    // SAFETY: both are NUL-terminated strings by the calling convention of DbgPrint("%s", s).
    let text = unsafe { crate::framework::debug_output::format(Format, Argument) };
    crate::framework::debug_output::emit(&text);
    0
}

#[allow(
    unused_imports,
    reason = "areas without kernel functions export nothing"
)]
pub use crate::framework::{
    collection::kernel::*, device::kernel::*, event::kernel::*, io::kernel::*, iotarget::kernel::*,
    queue::kernel::*, request::kernel::*, sync::kernel::*, thread::kernel::*, time::kernel::*,
    timer::kernel::*, workitem::kernel::*,
};

/// The calling thread's ID (unique among live threads; as on Windows, a multiple of 4).
#[must_use]
pub unsafe extern "C" fn PsGetCurrentThreadId() -> crate::types::HANDLE {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(4);
    std::thread_local! {
        static ID: usize = NEXT.fetch_add(4, Ordering::Relaxed);
    }
    ID.with(|id| *id) as crate::types::HANDLE
}
