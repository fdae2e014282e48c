//! The current IRQL, for code that must check where it runs (assertions, choosing a path).

/// `PASSIVE_LEVEL`.
pub const PASSIVE_LEVEL: u8 = wdk_sys::PASSIVE_LEVEL as u8;
/// `APC_LEVEL`.
pub const APC_LEVEL: u8 = wdk_sys::APC_LEVEL as u8;
/// `DISPATCH_LEVEL`.
pub const DISPATCH_LEVEL: u8 = wdk_sys::DISPATCH_LEVEL as u8;

/// The calling thread's IRQL (`KeGetCurrentIrql`); callable at any IRQL.
#[must_use]
pub fn current() -> u8 {
    // SAFETY: KeGetCurrentIrql has no preconditions.
    unsafe { wdk_sys::ntddk::KeGetCurrentIrql() }
}
