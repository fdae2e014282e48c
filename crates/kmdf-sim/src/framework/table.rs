//! The WDF function table that `WdfFunctions` points at.

use crate::types::{_WDFFUNCENUM, WDF_DRIVER_GLOBALS, WDFFUNC, WDFFUNCENUM};

/// Number of slots, as in KMDF 1.33.
pub const TABLE_LEN: usize = _WDFFUNCENUM::WdfFunctionTableNumEntries as usize;

/// One implemented slot.
pub(crate) type Entry = (WDFFUNCENUM, WDFFUNC);

/// Every area's entries. An area adds its list here once.
const AREAS: &[&[Entry]] = &[
    super::object::ENTRIES,
    super::memory::ENTRIES,
    super::sync::ENTRIES,
    super::event::ENTRIES,
    super::thread::ENTRIES,
    super::workitem::ENTRIES,
    super::timer::ENTRIES,
    super::collection::ENTRIES,
    super::request::ENTRIES,
    super::iotarget::ENTRIES,
    super::device::ENTRIES,
    super::queue::ENTRIES,
];

/// Slots the simulation does not implement call this. Reaching it is a test-setup error, and a
/// WDF function cannot unwind, so it stops the process with a message.
unsafe extern "C" fn not_simulated() {
    eprintln!("kmdf-sim: a WDF function that the simulation does not implement was called");
    std::process::abort();
}

#[allow(
    clippy::cast_sign_loss,
    reason = "table indexes are small non-negative enum values"
)]
const fn build() -> [WDFFUNC; TABLE_LEN] {
    let fallback: WDFFUNC = Some(not_simulated);
    let mut table = [fallback; TABLE_LEN];
    let mut area = 0;
    while area < AREAS.len() {
        let entries = AREAS[area];
        let mut i = 0;
        while i < entries.len() {
            table[entries[i].0 as usize] = entries[i].1;
            i += 1;
        }
        area += 1;
    }
    table
}

/// The table itself.
pub static TABLE: [WDFFUNC; TABLE_LEN] = build();

/// What `WdfDriverGlobals` points at.
// SAFETY: all-zero is a valid `WDF_DRIVER_GLOBALS` (handles, integers and a char array).
pub static mut DRIVER_GLOBALS: WDF_DRIVER_GLOBALS = unsafe { core::mem::zeroed() };
