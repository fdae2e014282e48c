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
    /// conversions: `%s %d %i %u %x %X %o %c %p %%` (flags, width and precision); size
    /// prefixes `h`, `l` (32-bit, as on Windows), `ll`/`I64` (64-bit), `I32`, `I` (pointer-sized);
    /// `%ws`/`%ls`/`%S` a NUL-terminated UTF-16 string and `%wc`/`%lc`/`%C` a UTF-16 character,
    /// `%wZ` a `PCUNICODE_STRING` and `%Z` a `PCANSI_STRING` (UTF-16 is written as UTF-8). Output
    /// beyond 512 bytes is cut off, as the kernel does. Returns `STATUS_SUCCESS`.
    pub fn DbgPrint(Format: PCSTR, ...) -> ULONG;

    /// `DbgPrint` with a component and a level. The kernel shows a line only if that component's
    /// filter lets its level through (by default only `DPFLTR_ERROR_LEVEL`); the simulation
    /// shows every line. Returns `STATUS_SUCCESS`.
    pub fn DbgPrintEx(ComponentId: ULONG, Level: ULONG, Format: PCSTR, ...) -> ULONG;
}

/// Kernel functions that allocate, run as framework code: with a pool-backed global allocator,
/// what the simulation allocates for them is not the driver's pool (see `framework/driver_heap`).
/// Each forwards to its implementation unchanged.
macro_rules! as_framework_code {
    ($( $area:ident :: $name:ident ( $($argument:ident : $ty:ty),* ) -> $result:ty; )*) => {
        $(
            #[doc = concat!("`", stringify!($name), "` (see the simulation's implementation).")]
            pub unsafe extern "C" fn $name($($argument: $ty),*) -> $result {
                crate::framework::driver_heap::framework_code(|| {
                    // SAFETY: the caller's call, forwarded unchanged under the same contract.
                    unsafe { crate::framework::$area::kernel::$name($($argument),*) }
                })
            }
        )*
    };
}

as_framework_code! {
    thread::PsCreateSystemThread(
        ThreadHandle: crate::types::PHANDLE,
        DesiredAccess: ULONG,
        ObjectAttributes: crate::types::POBJECT_ATTRIBUTES,
        ProcessHandle: crate::types::HANDLE,
        ClientId: crate::types::PCLIENT_ID,
        StartRoutine: crate::types::PKSTART_ROUTINE,
        StartContext: PVOID
    ) -> crate::types::NTSTATUS;
    thread::ObReferenceObjectByHandle(
        Handle: crate::types::HANDLE,
        DesiredAccess: crate::types::ACCESS_MASK,
        ObjectType: crate::types::POBJECT_TYPE,
        AccessMode: crate::types::KPROCESSOR_MODE,
        Object: *mut PVOID,
        HandleInformation: crate::types::POBJECT_HANDLE_INFORMATION
    ) -> crate::types::NTSTATUS;
    thread::ObfDereferenceObject(Object: PVOID) -> crate::types::LONG_PTR;
    thread::ZwClose(Handle: crate::types::HANDLE) -> crate::types::NTSTATUS;
    io::IoRegisterPlugPlayNotification(
        EventCategory: crate::types::IO_NOTIFICATION_EVENT_CATEGORY,
        EventCategoryFlags: ULONG,
        EventCategoryData: PVOID,
        DriverObject: crate::types::PDRIVER_OBJECT,
        CallbackRoutine: crate::types::PDRIVER_NOTIFICATION_CALLBACK_ROUTINE,
        Context: PVOID,
        NotificationEntry: *mut PVOID
    ) -> crate::types::NTSTATUS;
    io::IoUnregisterPlugPlayNotificationEx(NotificationEntry: PVOID) -> crate::types::NTSTATUS;
    event::KeWaitForSingleObject(
        Object: PVOID,
        WaitReason: crate::types::KWAIT_REASON,
        WaitMode: crate::types::KPROCESSOR_MODE,
        Alertable: crate::types::BOOLEAN,
        Timeout: crate::types::PLARGE_INTEGER
    ) -> crate::types::NTSTATUS;
    event::KeWaitForMultipleObjects(
        Count: ULONG,
        Object: *mut PVOID,
        WaitType: crate::types::WAIT_TYPE,
        WaitReason: crate::types::KWAIT_REASON,
        WaitMode: crate::types::KPROCESSOR_MODE,
        Alertable: crate::types::BOOLEAN,
        Timeout: crate::types::PLARGE_INTEGER,
        WaitBlockArray: crate::types::PKWAIT_BLOCK
    ) -> crate::types::NTSTATUS;
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
