//! Debug tracing: leveled, per-module lines printed with `DbgPrint`, without heap allocation.
//!
//! ```no_run
//! use dmf::wdf::trace::TraceLevel;
//! let left = 3;
//! dmf::dmf_trace!(TraceLevel::Warning, "BufferPool", "{} buffers left", left);
//! ```
//!
//! A line reads `[Level] Module: message` and is formatted into a fixed stack buffer of
//! [`LINE_CAPACITY`] bytes; a longer line is cut on a character boundary and ends with `...`.
//! Lines above the runtime level ([`set_level`], default [`TraceLevel::Warning`]) are skipped
//! before any formatting. Callable at any `IRQL <= DISPATCH_LEVEL`.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, Ordering};

/// Severity of a trace line; lower is more severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum TraceLevel {
    /// A failure.
    Error = 1,
    /// Something unexpected that the code handles.
    Warning = 2,
    /// Normal events worth noting.
    Info = 3,
    /// Detail for debugging.
    Verbose = 4,
}

impl TraceLevel {
    /// The name printed for the level.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Error => "Error",
            Self::Warning => "Warning",
            Self::Info => "Info",
            Self::Verbose => "Verbose",
        }
    }

    const fn from_raw(raw: u8) -> Self {
        match raw {
            1 => Self::Error,
            2 => Self::Warning,
            3 => Self::Info,
            _ => Self::Verbose,
        }
    }
}

/// Bytes of one formatted line, including its newline and terminating NUL.
pub const LINE_CAPACITY: usize = 256;

/// Marker appended to a truncated line.
const ELLIPSIS: &str = "...";

static LEVEL: AtomicU8 = AtomicU8::new(TraceLevel::Warning as u8);

/// Prints lines of `level` and more severe from now on.
pub fn set_level(level: TraceLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// The most detailed level printed.
#[must_use]
pub fn level() -> TraceLevel {
    TraceLevel::from_raw(LEVEL.load(Ordering::Relaxed))
}

/// Whether lines of `level` are printed.
#[must_use]
pub fn enabled(level: TraceLevel) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// A line being formatted: text, then room for the ellipsis, newline and NUL.
struct Line {
    buffer: [u8; LINE_CAPACITY],
    length: usize,
    truncated: bool,
}

impl Line {
    /// Bytes available to text.
    const TEXT_CAPACITY: usize = LINE_CAPACITY - ELLIPSIS.len() - 2;

    const fn new() -> Self {
        Self {
            buffer: [0; LINE_CAPACITY],
            length: 0,
            truncated: false,
        }
    }

    /// Ends the line (ellipsis if cut, newline, NUL) and returns it with its NUL.
    fn finish(&mut self) -> &[u8] {
        if self.truncated {
            self.buffer[self.length..self.length + ELLIPSIS.len()]
                .copy_from_slice(ELLIPSIS.as_bytes());
            self.length += ELLIPSIS.len();
        }
        self.buffer[self.length] = b'\n';
        self.buffer[self.length + 1] = 0;
        &self.buffer[..self.length + 2]
    }
}

impl Write for Line {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if self.truncated {
            return Ok(());
        }
        let room = Self::TEXT_CAPACITY - self.length;
        let mut take = text.len();
        if take > room {
            take = room;
            while !text.is_char_boundary(take) {
                take -= 1;
            }
            self.truncated = true;
        }
        for (slot, &byte) in self.buffer[self.length..self.length + take]
            .iter_mut()
            .zip(&text.as_bytes()[..take])
        {
            // An interior NUL would end the C string early.
            *slot = if byte == 0 { b' ' } else { byte };
        }
        self.length += take;
        Ok(())
    }
}

/// Prints one line if `level` is enabled. Use [`dmf_trace!`](crate::dmf_trace) rather than
/// calling this directly.
pub fn emit(level: TraceLevel, module: &str, message: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let mut line = Line::new();
    // Writing to `Line` never fails; a `Display` impl that fails only cuts the line short.
    let _ = write!(line, "[{}] {}: ", level.name(), module);
    let _ = line.write_fmt(message);
    let text = line.finish();
    // SAFETY: both arguments are NUL-terminated strings that outlive the call; "%s" consumes
    // exactly the one argument passed.
    unsafe { wdk_sys::ntddk::DbgPrint(c"%s".as_ptr(), text.as_ptr().cast::<core::ffi::c_char>()) };
}

/// Prints a trace line: `dmf_trace!(level, "Module", "format {}", args)`.
///
/// Nothing is formatted when `level` is above the runtime level.
#[macro_export]
macro_rules! dmf_trace {
    ($level:expr, $module:expr, $($arg:tt)+) => {{
        let level: $crate::wdf::trace::TraceLevel = $level;
        if $crate::wdf::trace::enabled(level) {
            $crate::wdf::trace::emit(level, $module, ::core::format_args!($($arg)+));
        }
    }};
}
