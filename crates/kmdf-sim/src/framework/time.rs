//! Kernel clocks. Interrupt time counts 100 ns units since the simulation started; the
//! performance counter runs at 10 MHz, as on most x64 machines.

use std::sync::LazyLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static START: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Performance-counter frequency (ticks per second).
pub(crate) const PERFORMANCE_FREQUENCY: i64 = 10_000_000;

/// 100 ns units since the simulation started.
pub(crate) fn interrupt_time() -> u64 {
    u64::try_from(START.elapsed().as_nanos() / 100).unwrap_or(u64::MAX)
}

/// The kernel functions of this area.
#[allow(non_snake_case)]
pub mod kernel {
    use super::{PERFORMANCE_FREQUENCY, SystemTime, UNIX_EPOCH, interrupt_time};
    use crate::types::{LARGE_INTEGER, PLARGE_INTEGER, PULONG64, ULONG, ULONG64, ULONGLONG};

    /// Seconds between 1601-01-01 (the kernel's epoch) and 1970-01-01.
    const EPOCH_DIFFERENCE_100NS: i64 = 116_444_736_000_000_000;

    fn large(value: i64) -> LARGE_INTEGER {
        LARGE_INTEGER { QuadPart: value }
    }

    /// Performance counter; writes its frequency when asked.
    #[must_use]
    pub unsafe extern "C" fn KeQueryPerformanceCounter(
        PerformanceFrequency: PLARGE_INTEGER,
    ) -> LARGE_INTEGER {
        if !PerformanceFrequency.is_null() {
            // SAFETY: a non-null out pointer is writable by the API contract.
            unsafe { PerformanceFrequency.write(large(PERFORMANCE_FREQUENCY)) };
        }
        large(i64::try_from(interrupt_time()).unwrap_or(i64::MAX))
    }

    /// Interrupt time, not counting sleep.
    #[must_use]
    pub unsafe extern "C" fn KeQueryUnbiasedInterruptTime() -> ULONGLONG {
        interrupt_time()
    }

    /// Interrupt time; writes the matching performance-counter value when asked.
    #[must_use]
    pub unsafe extern "C" fn KeQueryInterruptTimePrecise(QpcTimeStamp: PULONG64) -> ULONG64 {
        let now = interrupt_time();
        if !QpcTimeStamp.is_null() {
            // SAFETY: a non-null out pointer is writable by the API contract.
            unsafe { QpcTimeStamp.write(now) };
        }
        now
    }

    /// System time in 100 ns units since 1601-01-01.
    pub unsafe extern "C" fn KeQuerySystemTimePrecise(CurrentTime: PLARGE_INTEGER) {
        let since_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let value =
            i64::try_from(since_unix.as_nanos() / 100).unwrap_or(i64::MAX) + EPOCH_DIFFERENCE_100NS;
        if !CurrentTime.is_null() {
            // SAFETY: a non-null out pointer is writable by the API contract.
            unsafe { CurrentTime.write(large(value)) };
        }
    }

    /// Busy-waits for the given microseconds.
    pub unsafe extern "C" fn KeStallExecutionProcessor(MicroSeconds: ULONG) {
        let until =
            std::time::Instant::now() + std::time::Duration::from_micros(u64::from(MicroSeconds));
        while std::time::Instant::now() < until {
            core::hint::spin_loop();
        }
    }
}
