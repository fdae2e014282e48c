//! A strict user-mode simulation of the KMDF 1.33 subset that `dmf` and its drivers use.
//!
//! The crate's library is named `wdk_sys` and mirrors the surface of windows-drivers-rs's
//! `wdk-sys`: the same type names and struct fields (bindgen shape), the same constants, the
//! `ntddk` kernel functions and the real `call_unsafe_wdf_function_binding!` macro, which here
//! dispatches through a simulated WDF function table. Driver code therefore compiles unchanged
//! against either crate, and the exact code that ships in a `.sys` runs in `cargo test`.
//!
//! The simulation is strict, like KMDF with its verifier on: it tracks object lifetimes and IRQL
//! per thread and records a [`sim::verifier::Report`] for every rule a driver breaks. Everything
//! that only a test may touch (sessions, fault injection, counters, the verifier log, the PnP
//! manager and the user-mode side) lives in [`sim`]; library and driver code never use it.
#![allow(
    clippy::missing_safety_doc,
    reason = "the mirrored functions carry KMDF's contracts"
)]

extern crate self as wdk_sys;

#[doc(hidden)]
pub use wdk_macros as __proc_macros;

pub use self::constants::*;
pub use self::types::*;

/// Types of the mirrored surface (bindgen shape, as in wdk-sys).
#[allow(
    missing_docs,
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case
)]
#[allow(dead_code, unnecessary_transmutes, clippy::all, clippy::pedantic)]
pub mod types;

/// Constants and statics of the mirrored surface.
#[allow(
    missing_docs,
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case
)]
#[allow(dead_code, clippy::all, clippy::pedantic)]
pub mod constants;

pub mod ntddk;

/// WDF function bindings. As in wdk-sys, every WDF function is reached through
/// `call_unsafe_wdf_function_binding!`; this module only carries the macro's helper.
pub mod wdf {
    #[doc(hidden)]
    pub mod __private {
        /// Number of entries in the WDF function table.
        #[must_use]
        pub fn get_wdf_function_count() -> usize {
            crate::framework::table::TABLE_LEN
        }
    }
}

pub(crate) mod framework;
pub mod sim;

include!(concat!(
    env!("OUT_DIR"),
    "/call_unsafe_wdf_function_binding.rs"
));

/// Asserts that the caller runs at or below `APC_LEVEL`, as wdk-sys's macro does.
#[macro_export]
#[allow(non_snake_case)]
macro_rules! PAGED_CODE {
    () => {
        debug_assert!(unsafe { $crate::ntddk::KeGetCurrentIrql() <= $crate::APC_LEVEL as u8 });
    };
}

/// True for success and informational statuses.
#[must_use]
#[allow(non_snake_case)]
pub const fn NT_SUCCESS(nt_status: NTSTATUS) -> bool {
    nt_status >= 0
}

/// True for informational statuses.
#[must_use]
#[allow(non_snake_case)]
pub const fn NT_INFORMATION(nt_status: NTSTATUS) -> bool {
    (nt_status as u32 >> 30) == 1
}

/// True for warning statuses.
#[must_use]
#[allow(non_snake_case)]
pub const fn NT_WARNING(nt_status: NTSTATUS) -> bool {
    (nt_status as u32 >> 30) == 2
}

/// True for error statuses.
#[must_use]
#[allow(non_snake_case)]
pub const fn NT_ERROR(nt_status: NTSTATUS) -> bool {
    (nt_status as u32 >> 30) == 3
}
