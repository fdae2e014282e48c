//! `WDFTIMER`: a one-shot or periodic timer that calls a client handler at `DISPATCH_LEVEL`
//! (a DPC) or at `PASSIVE_LEVEL`.
//!
//! The handler is fixed at creation and kept in the timer's object context (see
//! [`super::work_item`]); starting and stopping allocate nothing.

use alloc::boxed::Box;
use core::time::Duration;

use wdk_sys::{WDF_TIMER_CONFIG, WDFOBJECT, WDFTIMER, call_unsafe_wdf_function_binding};

use super::status::NtStatus;
use super::work_item::{Handler, handler_attributes, install_handler, invoke_handler};

/// IRQL at which a timer's handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallbackLevel {
    /// `DISPATCH_LEVEL`, as a DPC (KMDF's default).
    #[default]
    Dispatch,
    /// `PASSIVE_LEVEL` (`WdfExecutionLevelPassive`); such a timer cannot be periodic.
    Passive,
}

/// How a [`Timer`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimerConfig {
    /// `None`: one-shot. `Some(period)`: fires every `period` after the first due time,
    /// rounded up to whole milliseconds (at least 1 ms), as `WDF_TIMER_CONFIG.Period`.
    pub period: Option<Duration>,
    /// IRQL of the handler.
    pub level: CallbackLevel,
}

/// `EvtTimerFunc` of every [`Timer`].
unsafe extern "C" fn timer_callback(timer: WDFTIMER) {
    // SAFETY: the framework passes the live timer, created with `handler_attributes`.
    unsafe { invoke_handler(timer.cast()) };
}

/// 100 ns units of a duration, saturated.
fn units_100ns(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos() / 100).unwrap_or(i64::MAX)
}

/// A framework timer running a client handler; stopped and deleted when dropped.
#[derive(Debug)]
pub struct Timer {
    handle: WDFTIMER,
}

// SAFETY: timer handles may be used from any thread; start and stop are thread-safe.
unsafe impl Send for Timer {}
// SAFETY: as above; `&Timer` only starts and stops.
unsafe impl Sync for Timer {}

impl Timer {
    /// Creates a timer under `parent` (a device or queue on Windows; the timer is deleted with
    /// it) that calls `handler` each time it fires. Callable at `IRQL <= DISPATCH_LEVEL`.
    /// A periodic passive-level timer is `NOT_SUPPORTED`, as in KMDF.
    pub fn new(
        parent: WDFOBJECT,
        config: TimerConfig,
        handler: impl Fn() + Send + Sync + 'static,
    ) -> Result<Self, NtStatus> {
        let handler: Box<Handler> = Box::new(handler);
        let period_ms = config.period.map_or(0, |period| {
            let ms = period.as_nanos().div_ceil(1_000_000).max(1);
            u32::try_from(ms).unwrap_or(u32::MAX)
        });
        let mut raw_config = WDF_TIMER_CONFIG {
            Size: size_of::<WDF_TIMER_CONFIG>() as u32,
            EvtTimerFunc: Some(timer_callback),
            Period: period_ms,
            AutomaticSerialization: 0,
            ..WDF_TIMER_CONFIG::default()
        };
        let mut attributes = handler_attributes(parent, config.level == CallbackLevel::Passive);
        let mut handle: WDFTIMER = core::ptr::null_mut();
        // SAFETY: config and attributes are initialized; the out pointer is a valid local.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfTimerCreate,
                &raw mut raw_config,
                &raw mut attributes,
                &raw mut handle
            )
        };
        NtStatus::from_raw(status).into_result()?;
        let timer = Self { handle };
        install_handler(handle.cast(), handler)?;
        Ok(timer)
    }

    /// The raw handle.
    #[must_use]
    pub fn handle(&self) -> WDFTIMER {
        self.handle
    }

    fn start_raw(&self, due_time: i64) -> bool {
        // SAFETY: `self` owns the live handle.
        let was_queued =
            unsafe { call_unsafe_wdf_function_binding!(WdfTimerStart, self.handle, due_time) };
        was_queued != 0
    }

    /// Starts (or restarts) the timer to fire `due` from now (at least 100 ns).
    /// Returns whether it was already queued. Callable at `IRQL <= DISPATCH_LEVEL`.
    #[allow(
        clippy::must_use_candidate,
        reason = "starting or stopping is the point; the result is extra"
    )]
    pub fn start(&self, due: Duration) -> bool {
        self.start_raw(-units_100ns(due).max(1))
    }

    /// Starts (or restarts) the timer to fire at an absolute system time, in 100 ns units since
    /// 1601-01-01 (as `KeQuerySystemTimePrecise` reports; a time in the past fires at once).
    /// Returns whether it was already queued.
    #[allow(
        clippy::must_use_candidate,
        reason = "starting or stopping is the point; the result is extra"
    )]
    pub fn start_absolute(&self, system_time: i64) -> bool {
        self.start_raw(system_time.max(1))
    }

    /// Takes the timer out of the queue; returns whether it was in it. With `wait`, also waits
    /// for a running handler to return (`PASSIVE_LEVEL` only, never from the handler itself).
    #[allow(
        clippy::must_use_candidate,
        reason = "starting or stopping is the point; the result is extra"
    )]
    pub fn stop(&self, wait: bool) -> bool {
        // SAFETY: `self` owns the live handle.
        let was_queued =
            unsafe { call_unsafe_wdf_function_binding!(WdfTimerStop, self.handle, u8::from(wait)) };
        was_queued != 0
    }

    /// The parent object given at creation.
    #[must_use]
    pub fn parent(&self) -> WDFOBJECT {
        // SAFETY: `self` owns the live handle.
        unsafe { call_unsafe_wdf_function_binding!(WdfTimerGetParentObject, self.handle) }
    }
}

impl Drop for Timer {
    /// Deletes the timer; KMDF stops it and waits for a running handler first (except when
    /// called from the handler, where the handler is freed once it returns).
    fn drop(&mut self) {
        // SAFETY: `self` owns the handle; it is deleted exactly once.
        unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, self.handle.cast()) };
    }
}
