//! The kernel debugger's output (`DbgPrint`): printed to stderr and kept for tests to read.

use std::ffi::CStr;
use std::sync::{Mutex, PoisonError};

use crate::types::PCSTR;

static CAPTURED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Formats a `DbgPrint` call: `%s` takes the argument, `%%` is a percent sign, anything else is
/// copied.
///
/// # Safety
/// `format` and a non-null `argument` are NUL-terminated strings.
pub(crate) unsafe fn format(format: PCSTR, argument: PCSTR) -> String {
    if format.is_null() {
        return String::new();
    }
    // SAFETY: NUL-terminated by the caller's contract.
    let format = unsafe { CStr::from_ptr(format) }.to_string_lossy();
    let argument = if argument.is_null() {
        String::new()
    } else {
        // SAFETY: NUL-terminated by the caller's contract.
        unsafe { CStr::from_ptr(argument) }
            .to_string_lossy()
            .into_owned()
    };
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push_str(&argument),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Prints and keeps one line of debug output.
pub(crate) fn emit(text: &str) {
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
