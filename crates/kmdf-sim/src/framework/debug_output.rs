//! The kernel debugger's output (`DbgPrint`): printed to stderr and kept for tests to read.

use std::sync::{Mutex, PoisonError};

static CAPTURED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Where `DbgPrint` (framework/dbgprint.c) delivers each formatted line.
///
/// # Safety
/// `text` points at `length` readable bytes.
#[unsafe(no_mangle)]
unsafe extern "C" fn kmdf_sim_debug_print(text: *const core::ffi::c_char, length: usize) {
    let bytes = if text.is_null() || length == 0 {
        &[][..]
    } else {
        // SAFETY: `length` readable bytes at `text`, by the caller's contract.
        unsafe { core::slice::from_raw_parts(text.cast::<u8>(), length) }
    };
    super::driver_heap::framework_code(|| emit(&String::from_utf8_lossy(bytes)));
}

/// Prints and keeps one line of debug output.
pub(crate) fn emit(text: &str) {
    super::driver_heap::framework_code(|| keep(text));
}

fn keep(text: &str) {
    if std::env::var_os("KMDF_SIM_QUIET").is_none() {
        eprint!("{text}");
    }
    CAPTURED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(text.to_string());
}

/// Removes and returns what was printed so far.
pub(crate) fn take() -> Vec<String> {
    core::mem::take(&mut *CAPTURED.lock().unwrap_or_else(PoisonError::into_inner))
}
