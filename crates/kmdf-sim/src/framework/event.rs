//! Kernel events and dispatcher waits: `KeInitializeEvent`, `KeSetEvent`, `KeResetEvent`,
//! `KeClearEvent`, `KeReadStateEvent`, `KeWaitForSingleObject`, `KeWaitForMultipleObjects`.
//!
//! A `KEVENT` belongs to the caller, so the simulation keeps an event's whole state inside the
//! caller's 24-byte `DISPATCHER_HEADER` (the first 8 bytes, as an atomic word: a marker, the
//! object kind and the signal state). Waiters block on one process-wide condition variable;
//! every state change happens under its mutex, so no wake-up is lost, and nothing is left
//! behind when the caller's memory goes away. System-thread objects (see `thread`) start with
//! the same header and become signaled when their thread exits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::irql;
use super::table::Entry;
use super::verifier::{self, rules};

pub(crate) const ENTRIES: &[Entry] = &[];

/// Marks an initialized header ("KEVT") in the high 32 bits of the state word.
const MARKER: u64 = 0x4B45_5654;
/// Bit 0 of the state word: signaled.
const SIGNALED: u64 = 1;

/// What a dispatcher header belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A notification (manual-reset) event.
    Notification = 1,
    /// A synchronization (auto-reset) event.
    Synchronization = 2,
    /// A system thread object: signaled once the thread has exited.
    Thread = 3,
    /// A thread object whose last reference is gone.
    DeadThread = 4,
}

impl Kind {
    fn from_bits(bits: u64) -> Option<Self> {
        match bits {
            1 => Some(Self::Notification),
            2 => Some(Self::Synchronization),
            3 => Some(Self::Thread),
            4 => Some(Self::DeadThread),
            _ => None,
        }
    }
}

const fn encode(kind: Kind, signaled: bool) -> u64 {
    (MARKER << 32) | ((kind as u64) << 8) | if signaled { SIGNALED } else { 0 }
}

fn decode(word: u64) -> Option<(Kind, bool)> {
    if word >> 32 != MARKER {
        return None;
    }
    Kind::from_bits((word >> 8) & 0xFF).map(|kind| (kind, word & SIGNALED != 0))
}

/// The process-wide dispatcher lock and the condition waiters sleep on.
static DISPATCHER: Mutex<()> = Mutex::new(());
static WAKE: Condvar = Condvar::new();

fn dispatcher() -> MutexGuard<'static, ()> {
    DISPATCHER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The state word of a dispatcher object (its first 8 bytes).
///
/// # Safety
/// `object` must point at a live, 8-byte-aligned dispatcher header (a `KEVENT` or a simulated
/// thread object) for as long as the returned reference is used.
pub(crate) unsafe fn state_word<'a>(object: *const core::ffi::c_void) -> &'a AtomicU64 {
    // SAFETY: by the caller's contract the header is live and aligned; `AtomicU64` has the
    // layout of `u64`, and every access to the word in the simulation is atomic.
    unsafe { &*object.cast::<AtomicU64>() }
}

/// Writes a fresh header for `kind` (used by `KeInitializeEvent` and thread creation).
pub(crate) fn initialize(word: &AtomicU64, kind: Kind, signaled: bool) {
    let _dispatcher = dispatcher();
    word.store(encode(kind, signaled), Ordering::SeqCst);
}

/// Signals a header and wakes its waiters; returns the previous signal state.
pub(crate) fn signal(word: &AtomicU64) -> bool {
    let guard = dispatcher();
    let previous = word.fetch_or(SIGNALED, Ordering::SeqCst);
    drop(guard);
    WAKE.notify_all();
    previous & SIGNALED != 0
}

/// Re-marks a header as `kind` keeping its signal state (a thread object that died).
pub(crate) fn change_kind(word: &AtomicU64, kind: Kind) {
    let _dispatcher = dispatcher();
    let signaled = word.load(Ordering::SeqCst) & SIGNALED != 0;
    word.store(encode(kind, signaled), Ordering::SeqCst);
}

/// Turns a kernel timeout (100 ns units: negative relative, positive absolute system time,
/// zero a poll) into a deadline; `None` waits forever.
pub(crate) fn deadline(timeout: Option<i64>) -> Option<Instant> {
    let value = timeout?;
    let now = Instant::now();
    let units = match value.cmp(&0) {
        core::cmp::Ordering::Less => value.unsigned_abs(),
        core::cmp::Ordering::Equal => 0,
        core::cmp::Ordering::Greater => {
            let mut system_time = crate::types::LARGE_INTEGER::default();
            // SAFETY: the out pointer is a valid local.
            unsafe { super::time::kernel::KeQuerySystemTimePrecise(&raw mut system_time) };
            // SAFETY: the simulation always writes the `QuadPart` view.
            let current = unsafe { system_time.QuadPart };
            u64::try_from(value.saturating_sub(current)).unwrap_or(0)
        }
    };
    // A deadline too far to represent is, in practice, never.
    Some(
        now.checked_add(Duration::from_nanos(units.saturating_mul(100)))
            .unwrap_or(now + Duration::from_hours(24 * 365)),
    )
}

/// Reads an optional `PLARGE_INTEGER` timeout.
///
/// # Safety
/// `timeout` is null or points at a readable `LARGE_INTEGER`.
pub(crate) unsafe fn read_timeout(timeout: crate::types::PLARGE_INTEGER) -> Option<i64> {
    if timeout.is_null() {
        return None;
    }
    // SAFETY: non-null and readable by the caller's contract.
    let value = unsafe { timeout.read() };
    // SAFETY: every bit pattern of the union is a valid `QuadPart`.
    Some(unsafe { value.QuadPart })
}

/// The verifier check every wait makes: a wait that may block (non-zero or infinite timeout)
/// is allowed at `APC_LEVEL` or below. Reports and returns false otherwise.
pub(crate) fn check_wait_irql(timeout: Option<i64>, api: &str) -> bool {
    let now = irql::current();
    if timeout == Some(0) {
        return irql::require_at_most(irql::DISPATCH, api);
    }
    if now <= irql::APC {
        return true;
    }
    verifier::report(
        rules::WAIT_AT_DISPATCH,
        api,
        format!(
            "a wait with a non-zero timeout at IRQL {now}; such waits are allowed at IRQL <= APC_LEVEL only"
        ),
    );
    false
}

/// The most objects one wait takes (`MAXIMUM_WAIT_OBJECTS`).
const MAX_OBJECTS: usize = crate::constants::MAXIMUM_WAIT_OBJECTS as usize;

/// Stands in for unused entries of a wait's fixed-size object list.
static UNUSED: AtomicU64 = AtomicU64::new(0);

/// Why a wait did not wait.
enum Invalid {
    Uninitialized(usize),
}

/// Waits on dispatcher headers (`WaitAny` or `WaitAll`) until `deadline`.
fn wait_on(
    words: &[&AtomicU64],
    wait_all: bool,
    deadline: Option<Instant>,
) -> Result<i32, Invalid> {
    let mut guard = dispatcher();
    // A kernel wait uses the thread's own wait blocks; no heap here either.
    let mut all = [(Kind::Notification, false); MAX_OBJECTS];
    let states = &mut all[..words.len().min(MAX_OBJECTS)];
    loop {
        for (index, (word, state)) in words.iter().zip(states.iter_mut()).enumerate() {
            match decode(word.load(Ordering::SeqCst)) {
                Some((Kind::DeadThread, _)) | None => return Err(Invalid::Uninitialized(index)),
                Some(decoded) => *state = decoded,
            }
        }
        if wait_all {
            if states.iter().all(|&(_, signaled)| signaled) {
                for (word, &(kind, _)) in words.iter().zip(states.iter()) {
                    consume(word, kind);
                }
                return Ok(crate::constants::STATUS_SUCCESS);
            }
        } else if let Some(index) = states.iter().position(|&(_, signaled)| signaled) {
            consume(words[index], states[index].0);
            return Ok(crate::constants::STATUS_WAIT_0 + i32::try_from(index).unwrap_or(i32::MAX));
        }
        match deadline {
            None => guard = WAKE.wait(guard).unwrap_or_else(PoisonError::into_inner),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(crate::constants::STATUS_TIMEOUT);
                }
                guard = WAKE
                    .wait_timeout(guard, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
    }
}

/// A satisfied wait resets a synchronization event (it releases exactly one waiter).
fn consume(word: &AtomicU64, kind: Kind) {
    if kind == Kind::Synchronization {
        word.fetch_and(!SIGNALED, Ordering::SeqCst);
    }
}

/// Checks a header's marker on behalf of `api`; reports an uninitialized or dead object.
fn check_initialized(
    word: &AtomicU64,
    object: *const core::ffi::c_void,
    api: &str,
) -> Option<(Kind, bool)> {
    match decode(word.load(Ordering::SeqCst)) {
        Some((Kind::DeadThread, _)) => {
            verifier::report(
                rules::INVALID_HANDLE,
                api,
                format!("thread object {object:p} is used after its last reference was released"),
            );
            None
        }
        Some(state) => Some(state),
        None => {
            verifier::report(
                rules::INVALID_ARGUMENT,
                api,
                format!(
                    "{object:p} is not an initialized dispatcher object (call KeInitializeEvent first)"
                ),
            );
            None
        }
    }
}

/// The kernel functions of this area.
#[allow(non_snake_case)]
pub mod kernel {
    use super::{
        Invalid, Kind, check_initialized, check_wait_irql, deadline, read_timeout, state_word,
    };
    use crate::constants::{
        MAXIMUM_WAIT_OBJECTS, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER,
        THREAD_WAIT_OBJECTS,
    };
    use crate::framework::irql;
    use crate::framework::verifier::{self, rules};
    use crate::types::{
        _EVENT_TYPE, _WAIT_TYPE, BOOLEAN, EVENT_TYPE, KPRIORITY, KPROCESSOR_MODE, KWAIT_REASON,
        LONG, NTSTATUS, PKWAIT_BLOCK, PLARGE_INTEGER, PRKEVENT, PVOID, ULONG, WAIT_TYPE,
    };

    /// Initializes a caller-owned event as a notification or synchronization event.
    pub unsafe extern "C" fn KeInitializeEvent(Event: PRKEVENT, Type: EVENT_TYPE, State: BOOLEAN) {
        const API: &str = "KeInitializeEvent";
        if Event.is_null() {
            verifier::report(rules::INVALID_ARGUMENT, API, "null Event".to_string());
            return;
        }
        let kind = match Type {
            _EVENT_TYPE::NotificationEvent => Kind::Notification,
            _EVENT_TYPE::SynchronizationEvent => Kind::Synchronization,
            other => {
                verifier::report(
                    rules::INVALID_ARGUMENT,
                    API,
                    format!("unknown EVENT_TYPE {other}"),
                );
                return;
            }
        };
        // SAFETY: a non-null KEVENT pointer is valid, aligned memory by the API contract.
        let word = unsafe { state_word(Event.cast_const().cast()) };
        super::initialize(word, kind, State != 0);
    }

    /// Signals an event; returns its previous state (nonzero if it was signaled).
    pub unsafe extern "C" fn KeSetEvent(
        Event: PRKEVENT,
        _Increment: KPRIORITY,
        _Wait: BOOLEAN,
    ) -> LONG {
        const API: &str = "KeSetEvent";
        if !irql::require_at_most(irql::DISPATCH, API) || Event.is_null() {
            return 0;
        }
        // SAFETY: a non-null KEVENT pointer is valid, aligned memory by the API contract.
        let word = unsafe { state_word(Event.cast_const().cast()) };
        if check_initialized(word, Event.cast_const().cast(), API).is_none() {
            return 0;
        }
        LONG::from(super::signal(word))
    }

    fn reset(Event: PRKEVENT, api: &str) -> LONG {
        if !irql::require_at_most(irql::DISPATCH, api) || Event.is_null() {
            return 0;
        }
        // SAFETY: a non-null KEVENT pointer is valid, aligned memory by the API contract.
        let word = unsafe { state_word(Event.cast_const().cast()) };
        if check_initialized(word, Event.cast_const().cast(), api).is_none() {
            return 0;
        }
        let _dispatcher = super::dispatcher();
        let previous = word.fetch_and(!super::SIGNALED, core::sync::atomic::Ordering::SeqCst);
        LONG::from(previous & super::SIGNALED != 0)
    }

    /// Resets an event to not signaled; returns its previous state.
    pub unsafe extern "C" fn KeResetEvent(Event: PRKEVENT) -> LONG {
        reset(Event, "KeResetEvent")
    }

    /// Resets an event to not signaled.
    pub unsafe extern "C" fn KeClearEvent(Event: PRKEVENT) {
        reset(Event, "KeClearEvent");
    }

    /// The current state of an event: nonzero if signaled.
    pub unsafe extern "C" fn KeReadStateEvent(Event: PRKEVENT) -> LONG {
        const API: &str = "KeReadStateEvent";
        if !irql::require_at_most(irql::DISPATCH, API) || Event.is_null() {
            return 0;
        }
        // SAFETY: a non-null KEVENT pointer is valid, aligned memory by the API contract.
        let word = unsafe { state_word(Event.cast_const().cast()) };
        check_initialized(word, Event.cast_const().cast(), API)
            .map_or(0, |(_, signaled)| LONG::from(signaled))
    }

    /// Waits for an event or a thread object. Returns `STATUS_SUCCESS` or `STATUS_TIMEOUT`;
    /// a wait that breaks the IRQL rule is reported and returns `STATUS_INVALID_DEVICE_REQUEST`
    /// without waiting (the kernel would bug-check).
    #[must_use]
    pub unsafe extern "C" fn KeWaitForSingleObject(
        Object: PVOID,
        _WaitReason: KWAIT_REASON,
        _WaitMode: KPROCESSOR_MODE,
        _Alertable: BOOLEAN,
        Timeout: PLARGE_INTEGER,
    ) -> NTSTATUS {
        let mut objects = [Object];
        // SAFETY: forwards the caller's contract; one object needs no wait block array.
        unsafe { wait("KeWaitForSingleObject", &mut objects, true, Timeout) }
    }

    /// Waits for any or all of up to `MAXIMUM_WAIT_OBJECTS` objects. Returns `STATUS_SUCCESS`
    /// (`WaitAll`), `STATUS_WAIT_0 + n` (`WaitAny`: the first signaled object), `STATUS_TIMEOUT`.
    #[must_use]
    pub unsafe extern "C" fn KeWaitForMultipleObjects(
        Count: ULONG,
        Object: *mut PVOID,
        WaitType: WAIT_TYPE,
        _WaitReason: KWAIT_REASON,
        _WaitMode: KPROCESSOR_MODE,
        _Alertable: BOOLEAN,
        Timeout: PLARGE_INTEGER,
        WaitBlockArray: PKWAIT_BLOCK,
    ) -> NTSTATUS {
        const API: &str = "KeWaitForMultipleObjects";
        if Count == 0 || Count > MAXIMUM_WAIT_OBJECTS || Object.is_null() {
            verifier::report(
                rules::INVALID_ARGUMENT,
                API,
                format!(
                    "Count is {Count}; it must be 1..={MAXIMUM_WAIT_OBJECTS} with a non-null Object array"
                ),
            );
            return STATUS_INVALID_PARAMETER;
        }
        if Count > THREAD_WAIT_OBJECTS && WaitBlockArray.is_null() {
            verifier::report(
                rules::INVALID_ARGUMENT,
                API,
                format!(
                    "waiting on {Count} objects needs a WaitBlockArray (more than THREAD_WAIT_OBJECTS)"
                ),
            );
            return STATUS_INVALID_PARAMETER;
        }
        let wait_all = match WaitType {
            _WAIT_TYPE::WaitAll => true,
            _WAIT_TYPE::WaitAny => false,
            other => {
                verifier::report(
                    rules::INVALID_ARGUMENT,
                    API,
                    format!("unknown WAIT_TYPE {other}"),
                );
                return STATUS_INVALID_PARAMETER;
            }
        };
        // SAFETY: the caller passes `Count` object pointers.
        let objects = unsafe { core::slice::from_raw_parts_mut(Object, Count as usize) };
        // SAFETY: forwards the caller's contract.
        unsafe { wait(API, objects, wait_all, Timeout) }
    }

    /// # Safety
    /// Every object is a live dispatcher object; `timeout` is null or readable.
    unsafe fn wait(
        api: &str,
        objects: &mut [PVOID],
        wait_all: bool,
        timeout: PLARGE_INTEGER,
    ) -> NTSTATUS {
        // SAFETY: forwarded from the caller.
        let timeout = unsafe { read_timeout(timeout) };
        if !check_wait_irql(timeout, api) {
            return STATUS_INVALID_DEVICE_REQUEST;
        }
        let mut all: [&core::sync::atomic::AtomicU64; super::MAX_OBJECTS] =
            [&super::UNUSED; super::MAX_OBJECTS];
        let Some(words) = all.get_mut(..objects.len()) else {
            return STATUS_INVALID_PARAMETER;
        };
        for (slot, &object) in words.iter_mut().zip(objects.iter()) {
            if object.is_null() {
                verifier::report(
                    rules::INVALID_ARGUMENT,
                    api,
                    "null object pointer".to_string(),
                );
                return STATUS_INVALID_PARAMETER;
            }
            // SAFETY: each object is a live dispatcher object by the caller's contract.
            let word = unsafe { state_word(object.cast_const()) };
            if check_initialized(word, object.cast_const(), api).is_none() {
                return STATUS_INVALID_PARAMETER;
            }
            *slot = word;
        }
        match super::wait_on(words, wait_all, deadline(timeout)) {
            Ok(status) => status,
            Err(Invalid::Uninitialized(index)) => {
                verifier::report(
                    rules::INVALID_HANDLE,
                    api,
                    format!(
                        "object {:p} was invalidated during the wait",
                        objects[index]
                    ),
                );
                STATUS_INVALID_PARAMETER
            }
        }
    }
}
