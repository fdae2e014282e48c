//! Kernel (WDM) functions of the mirrored surface, as `wdk_sys::ntddk` offers them.
//!
//! `DbgPrint` is C-variadic, as in the WDK: stable Rust can declare such a function but not define
//! one, so its definition is C (`framework/dbgprint.c`, compiled by build.rs).
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
    pool::allocate_for_caller(Flags, NumberOfBytes, Tag)
}

/// Frees pool allocated with the same tag.
pub unsafe extern "C" fn ExFreePoolWithTag(P: PVOID, Tag: ULONG) {
    pool::free(P, Some(Tag), "ExFreePoolWithTag");
}

/// Frees pool.
pub unsafe extern "C" fn ExFreePool(P: PVOID) {
    pool::free(P, None, "ExFreePool");
}

unsafe extern "C" {
    /// Prints a formatted line to the kernel debugger: here, to the simulation's debug output
    /// (stderr, and kept for tests). Implemented in C (`framework/dbgprint.c`) with the kernel's
    /// conversions: `%s %d %i %u %x %X %o %c %p %%` (numbers with flags, width and precision); size
    /// prefixes `h`, `l` (32-bit, as on Windows), `ll`/`I64` (64-bit), `I32`, `I` (pointer-sized);
    /// `%ws`/`%ls`/`%S` a NUL-terminated UTF-16 string and `%wc`/`%lc`/`%C` a UTF-16 character,
    /// `%wZ` a `PCUNICODE_STRING` and `%Z` a `PCANSI_STRING` (UTF-16 is written as UTF-8). Output
    /// beyond 512 bytes is cut off, as the kernel does. Returns `STATUS_SUCCESS`.
    pub fn DbgPrint(Format: PCSTR, ...) -> ULONG;
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
