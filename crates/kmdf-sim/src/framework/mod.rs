//! The simulated framework: one file per KMDF area. Each area that implements WDF functions
//! lists them in its `ENTRIES`, which `table` assembles into the function table.

pub(crate) mod collection;
pub(crate) mod completion;
pub(crate) mod debug_output;
pub(crate) mod device;
pub(crate) mod driver_heap;
pub(crate) mod event;
pub(crate) mod exec;
pub(crate) mod faults;
pub(crate) mod io;
pub(crate) mod iotarget;
pub(crate) mod irql;
pub(crate) mod memory;
pub(crate) mod object;
pub(crate) mod pool;
pub(crate) mod queue;
pub(crate) mod request;
pub(crate) mod sync;
pub(crate) mod table;
pub(crate) mod thread;
pub(crate) mod time;
pub(crate) mod timer;
pub(crate) mod verifier;
pub(crate) mod workitem;

/// Builds one function-table entry, checking the implementation against the `PFN_*` type that
/// wdk-macros will transmute the slot back into.
macro_rules! wdf_entry {
    ($index:ident, $pfn:ident, $implementation:path) => {
        (
            $crate::types::_WDFFUNCENUM::$index,
            // SAFETY: both types are `Option` of an `extern "C"` function pointer; the slot is
            // transmuted back to exactly `$pfn` by the caller's macro expansion.
            unsafe {
                core::mem::transmute::<$crate::types::$pfn, $crate::types::WDFFUNC>(Some(
                    $implementation,
                ))
            },
        )
    };
}
pub(crate) use wdf_entry;

/// Converts a C `BOOLEAN`-returning Rust bool.
pub(crate) const fn boolean(value: bool) -> crate::types::BOOLEAN {
    if value { 1 } else { 0 }
}
