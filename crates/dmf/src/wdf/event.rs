//! Kernel events (`KEVENT`): notification and synchronization events, and waits on them.

use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::time::Duration;

use wdk_sys::{
    _EVENT_TYPE, _KWAIT_REASON, _MODE, _WAIT_TYPE, KEVENT, LARGE_INTEGER, PLARGE_INTEGER, PRKEVENT,
    PVOID, STATUS_SUCCESS, STATUS_TIMEOUT, STATUS_WAIT_0, THREAD_WAIT_OBJECTS, ntddk,
};

use super::status::NtStatus;
use super::wait_lock::relative_timeout;

/// What a signaled event does to its waiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Stays signaled, releasing every waiter, until reset (`NotificationEvent`).
    Notification,
    /// Releases exactly one waiter and resets itself (`SynchronizationEvent`).
    Synchronization,
}

/// The most events [`wait_any`] and [`wait_all`] accept (the kernel's `THREAD_WAIT_OBJECTS`:
/// more would need a caller-supplied wait block array).
pub const MAX_WAIT_EVENTS: usize = THREAD_WAIT_OBJECTS as usize;

/// A kernel event at a stable address, owned by this value.
///
/// Setting, resetting and reading are allowed at IRQL `<= DISPATCH_LEVEL`. Waiting with a
/// non-zero timeout requires IRQL `<= APC_LEVEL`; a zero-timeout poll is allowed at
/// `DISPATCH_LEVEL`.
pub struct Event {
    event: Box<UnsafeCell<KEVENT>>,
}

// SAFETY: a KEVENT is made to be signaled and waited on from any thread; every access goes
// through the kernel's event functions, which synchronize internally.
unsafe impl Send for Event {}
// SAFETY: as above: shared use only calls the kernel's thread-safe event functions.
unsafe impl Sync for Event {}

fn timeout_value(timeout: Option<Duration>) -> Option<LARGE_INTEGER> {
    timeout.map(|duration| LARGE_INTEGER {
        QuadPart: relative_timeout(duration),
    })
}

fn timeout_ptr(value: &mut Option<LARGE_INTEGER>) -> PLARGE_INTEGER {
    value
        .as_mut()
        .map_or(core::ptr::null_mut(), core::ptr::from_mut)
}

impl Event {
    /// Creates an event of `kind`, initially signaled or not (`KeInitializeEvent`).
    #[must_use]
    pub fn new(kind: EventKind, signaled: bool) -> Self {
        let event = Box::new(UnsafeCell::new(KEVENT::default()));
        let kind = match kind {
            EventKind::Notification => _EVENT_TYPE::NotificationEvent,
            EventKind::Synchronization => _EVENT_TYPE::SynchronizationEvent,
        };
        // SAFETY: the event memory is boxed (stable address) and owned by the new value.
        unsafe { ntddk::KeInitializeEvent(event.get(), kind, u8::from(signaled)) };
        Self { event }
    }

    /// The `KEVENT` pointer, for kernel calls that take one. Valid while `self` lives.
    #[must_use]
    pub fn as_ptr(&self) -> PRKEVENT {
        self.event.get()
    }

    /// Signals the event (`KeSetEvent`); returns whether it was already signaled.
    #[allow(
        clippy::must_use_candidate,
        reason = "callers usually signal without asking"
    )]
    pub fn set(&self) -> bool {
        // SAFETY: the event is initialized and lives as long as `self`.
        let previous = unsafe { ntddk::KeSetEvent(self.as_ptr(), 0, 0) };
        previous != 0
    }

    /// Resets the event (`KeResetEvent`); returns whether it was signaled.
    #[allow(
        clippy::must_use_candidate,
        reason = "callers usually reset without asking"
    )]
    pub fn reset(&self) -> bool {
        // SAFETY: the event is initialized and lives as long as `self`.
        let previous = unsafe { ntddk::KeResetEvent(self.as_ptr()) };
        previous != 0
    }

    /// Resets the event without reading its state (`KeClearEvent`).
    pub fn clear(&self) {
        // SAFETY: the event is initialized and lives as long as `self`.
        unsafe { ntddk::KeClearEvent(self.as_ptr()) };
    }

    /// Whether the event is signaled now (`KeReadStateEvent`).
    #[must_use]
    pub fn is_set(&self) -> bool {
        // SAFETY: the event is initialized and lives as long as `self`.
        let state = unsafe { ntddk::KeReadStateEvent(self.as_ptr()) };
        state != 0
    }

    /// Waits until the event is signaled. IRQL `<= APC_LEVEL`.
    pub fn wait(&self) {
        let _ = self.wait_for(None);
    }

    /// Waits at most `timeout`; returns whether the event was signaled (a synchronization
    /// event is reset by a successful wait). `Duration::ZERO` polls.
    #[must_use]
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_for(Some(timeout))
    }

    fn wait_for(&self, timeout: Option<Duration>) -> bool {
        let mut timeout = timeout_value(timeout);
        // SAFETY: the event is initialized and lives as long as `self`; the timeout is null or
        // a valid local.
        let status = unsafe {
            ntddk::KeWaitForSingleObject(
                self.as_ptr().cast(),
                _KWAIT_REASON::Executive,
                _MODE::KernelMode as i8,
                0,
                timeout_ptr(&mut timeout),
            )
        };
        status == STATUS_SUCCESS
    }
}

impl core::fmt::Debug for Event {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Event")
            .field("signaled", &self.is_set())
            .finish()
    }
}

fn wait_multiple(
    events: &[&Event],
    wait_type: wdk_sys::WAIT_TYPE,
    timeout: Option<Duration>,
) -> Result<i32, NtStatus> {
    if events.is_empty() || events.len() > MAX_WAIT_EVENTS {
        return Err(NtStatus::INVALID_PARAMETER);
    }
    let mut objects: [PVOID; MAX_WAIT_EVENTS] = [core::ptr::null_mut(); MAX_WAIT_EVENTS];
    for (slot, event) in objects.iter_mut().zip(events) {
        *slot = event.as_ptr().cast();
    }
    let mut timeout = timeout_value(timeout);
    // SAFETY: `objects` holds `events.len()` (at most THREAD_WAIT_OBJECTS, so no wait block
    // array is needed) initialized events borrowed for the call; the timeout is null or a local.
    let status = unsafe {
        ntddk::KeWaitForMultipleObjects(
            events.len() as u32,
            objects.as_mut_ptr(),
            wait_type,
            _KWAIT_REASON::Executive,
            _MODE::KernelMode as i8,
            0,
            timeout_ptr(&mut timeout),
            core::ptr::null_mut(),
        )
    };
    Ok(status)
}

/// Waits until any of up to [`MAX_WAIT_EVENTS`] events is signaled. Returns the index of the
/// signaled event (the lowest if several are), `Ok(None)` on timeout (`None`: wait forever),
/// `INVALID_PARAMETER` for an empty or too long list.
pub fn wait_any(events: &[&Event], timeout: Option<Duration>) -> Result<Option<usize>, NtStatus> {
    let status = wait_multiple(events, _WAIT_TYPE::WaitAny, timeout)?;
    if status == STATUS_TIMEOUT {
        return Ok(None);
    }
    match usize::try_from(status - STATUS_WAIT_0) {
        Ok(index) if index < events.len() => Ok(Some(index)),
        _ => Err(NtStatus::from_raw(status)),
    }
}

/// Waits until all of up to [`MAX_WAIT_EVENTS`] events are signaled at once. Returns `true`
/// when they were, `false` on timeout (`None`: wait forever).
pub fn wait_all(events: &[&Event], timeout: Option<Duration>) -> Result<bool, NtStatus> {
    match wait_multiple(events, _WAIT_TYPE::WaitAll, timeout)? {
        STATUS_SUCCESS => Ok(true),
        STATUS_TIMEOUT => Ok(false),
        other => Err(NtStatus::from_raw(other)),
    }
}
