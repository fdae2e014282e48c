//! `WDFTIMER`: one-shot and periodic timers whose callback runs on a framework thread, at
//! `DISPATCH_LEVEL` (a DPC) by default or at `PASSIVE_LEVEL` when the attributes ask for
//! `WdfExecutionLevelPassive`.
//!
//! Each start and stop bumps a generation counter, so a callback scheduled before a stop or a
//! restart never fires. `WdfTimerStart` and `WdfTimerStop` return whether the timer was in the
//! timer queue. Deleting a timer stops it and waits for a running callback (except from inside
//! that callback). `AutomaticSerialization` is accepted and ignored: the simulation has no
//! device or queue synchronization scope; `TolerableDelay` and `UseHighResolutionTimer` only
//! change precision in KMDF and are ignored too.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::object::{self, Attributes, Object, Payload};
use super::table::Entry;
use super::verifier::{self, rules};
use super::workitem::{Running, require_parent};
use super::{boolean, exec, irql, wdf_entry};
use crate::constants::{
    STATUS_INFO_LENGTH_MISMATCH, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER,
    STATUS_NOT_SUPPORTED, STATUS_SUCCESS,
};
use crate::types::{
    _WDF_EXECUTION_LEVEL, BOOLEAN, KIRQL, LARGE_INTEGER, LONGLONG, NTSTATUS, PWDF_DRIVER_GLOBALS,
    PWDF_OBJECT_ATTRIBUTES, PWDF_TIMER_CONFIG, WDF_OBJECT_ATTRIBUTES, WDF_TIMER_CONFIG, WDFOBJECT,
    WDFTIMER,
};

/// KMDF type name of timers.
pub(crate) const KIND: &str = "WDFTIMER";

/// `sizeof(WDF_TIMER_CONFIG_V1_7)`: `Size`, `EvtTimerFunc`, `Period`, `AutomaticSerialization`.
const CONFIG_SIZE_V1_7: usize = 24;
/// `sizeof(WDF_TIMER_CONFIG_V1_11)`: adds `TolerableDelay`.
const CONFIG_SIZE_V1_11: usize = 32;
/// Largest accepted period in milliseconds (`MAXLONG`).
const MAX_PERIOD_MS: u32 = i32::MAX as u32;

struct State {
    generation: u64,
    queued: bool,
    running: Running,
    disposed: bool,
}

/// A timer's callback, period and queue state.
pub(crate) struct Timer {
    callback: unsafe extern "C" fn(WDFTIMER),
    period: Option<Duration>,
    level: KIRQL,
    state: Mutex<State>,
    idle: Condvar,
}

impl Timer {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the timer out of the queue; returns whether it was in it.
    fn cancel(state: &mut State) -> bool {
        let was_queued = state.queued;
        state.queued = false;
        state.generation += 1;
        was_queued
    }

    fn wait_for_callbacks(&self) {
        let mut state = self.state();
        while state.running.any() {
            state = self
                .idle
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Payload for Timer {
    fn dispose(&self, _handle: usize) {
        let inside = {
            let mut state = self.state();
            state.disposed = true;
            Self::cancel(&mut state);
            state.running.on_current_thread()
        };
        if !inside {
            self.wait_for_callbacks();
        }
    }
}

fn schedule(object: &Arc<Object>, timer: &Timer, due: Instant, generation: u64) {
    let job = Arc::clone(object);
    let driver = crate::framework::object::driver_of(object.handle);
    exec::submit_at_as(driver, due, timer.level, "EvtTimerFunc", move || {
        fire(&job, due, generation);
    });
}

fn fire(object: &Arc<Object>, due: Instant, generation: u64) {
    let Some(timer) = object.payload::<Timer>() else {
        return;
    };
    {
        let mut state = timer.state();
        if state.generation != generation || !state.queued {
            return;
        }
        match timer.period {
            Some(period) => {
                let next = (due + period).max(Instant::now());
                schedule(object, timer, next, generation);
            }
            None => state.queued = false,
        }
        state.running.enter();
        // The framework holds the timer while its callback runs, so a delete from inside the
        // callback destroys it only once the callback has returned.
        object::reference(object);
    }
    // SAFETY: the driver registered this callback for this timer, which is alive (referenced).
    unsafe { (timer.callback)(object::handle_ptr(object.handle)) };
    timer.state().running.leave();
    timer.idle.notify_all();
    object::dereference(object, "EvtTimerFunc");
}

/// Converts a `DueTime` (100 ns units; negative relative, positive absolute system time) into
/// an instant.
fn due_instant(due_time: LONGLONG) -> Instant {
    let now = Instant::now();
    let relative_100ns = if due_time < 0 {
        due_time.unsigned_abs()
    } else {
        let mut system_time = LARGE_INTEGER { QuadPart: 0 };
        // SAFETY: the out pointer is a valid local.
        unsafe { super::time::kernel::KeQuerySystemTimePrecise(&raw mut system_time) };
        // SAFETY: `QuadPart` is the integer view of the union KeQuerySystemTimePrecise wrote.
        let current = unsafe { system_time.QuadPart };
        u64::try_from(due_time - current).unwrap_or(0)
    };
    let relative = Duration::from_nanos(relative_100ns.saturating_mul(100));
    // A due time beyond what `Instant` can hold never comes; a year away is as good.
    now.checked_add(relative)
        .unwrap_or_else(|| now + Duration::from_hours(365 * 24))
}

fn execution_level(attributes: PWDF_OBJECT_ATTRIBUTES, api: &str) -> Result<KIRQL, NTSTATUS> {
    if attributes.is_null() {
        return Ok(irql::DISPATCH);
    }
    // SAFETY: a non-null attributes pointer is a valid WDF_OBJECT_ATTRIBUTES (already read and
    // size-checked by `Attributes::read`).
    let attributes: WDF_OBJECT_ATTRIBUTES = unsafe { attributes.read() };
    match attributes.ExecutionLevel {
        _WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive => Ok(irql::PASSIVE),
        // With no device in the simulation, inheriting means the default: a DPC.
        _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent
        | _WDF_EXECUTION_LEVEL::WdfExecutionLevelDispatch => Ok(irql::DISPATCH),
        other => {
            verifier::report(
                rules::INVALID_ARGUMENT,
                api,
                format!("WDF_OBJECT_ATTRIBUTES.ExecutionLevel {other} is out of range"),
            );
            Err(STATUS_INVALID_PARAMETER)
        }
    }
}

fn read_config(config: PWDF_TIMER_CONFIG, api: &str) -> Result<WDF_TIMER_CONFIG, NTSTATUS> {
    // SAFETY: the caller checked `config` is non-null; its first field is the Size.
    let size = unsafe { config.cast::<u32>().read() } as usize;
    if size != size_of::<WDF_TIMER_CONFIG>()
        && size != CONFIG_SIZE_V1_11
        && size != CONFIG_SIZE_V1_7
    {
        verifier::report(
            rules::BAD_STRUCTURE_SIZE,
            api,
            format!(
                "WDF_TIMER_CONFIG.Size is {size}, expected {}",
                size_of::<WDF_TIMER_CONFIG>()
            ),
        );
        return Err(STATUS_INFO_LENGTH_MISMATCH);
    }
    let mut value = WDF_TIMER_CONFIG::default();
    // SAFETY: the driver's structure is `size` bytes long (an older, shorter version or the
    // current one); `value` is at least that large.
    unsafe {
        core::ptr::copy_nonoverlapping(config.cast::<u8>(), (&raw mut value).cast::<u8>(), size);
    }
    Ok(value)
}

unsafe extern "C" fn wdf_timer_create(
    _globals: PWDF_DRIVER_GLOBALS,
    config: PWDF_TIMER_CONFIG,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    timer: *mut WDFTIMER,
) -> NTSTATUS {
    const API: &str = "WdfTimerCreate";
    if !irql::require_at_most(irql::DISPATCH, API) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    if config.is_null() || timer.is_null() {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "null Config or Timer pointer".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let parsed = match Attributes::read(attributes, API) {
        Ok(parsed) => parsed,
        Err(status) => return status,
    };
    if let Err(status) = require_parent(&parsed, API) {
        return status;
    }
    let config = match read_config(config, API) {
        Ok(config) => config,
        Err(status) => return status,
    };
    if config.Period > MAX_PERIOD_MS {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            format!("Period {} ms is greater than MAXLONG", config.Period),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let Some(callback) = config.EvtTimerFunc else {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "WDF_TIMER_CONFIG.EvtTimerFunc is null".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    };
    let level = match execution_level(attributes, API) {
        Ok(level) => level,
        Err(status) => return status,
    };
    if config.Period > 0 && level == irql::PASSIVE {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "a passive-level timer cannot be periodic; restart a one-shot timer from its callback"
                .to_string(),
        );
        return STATUS_NOT_SUPPORTED;
    }
    let payload = Timer {
        callback,
        period: (config.Period > 0).then(|| Duration::from_millis(u64::from(config.Period))),
        level,
        state: Mutex::new(State {
            generation: 0,
            queued: false,
            running: Running::default(),
            disposed: false,
        }),
        idle: Condvar::new(),
    };
    match object::create(KIND, &parsed, 0, Box::new(payload)) {
        Ok(handle) => {
            // SAFETY: `timer` is non-null and writable by the API contract.
            unsafe { timer.write(object::handle_ptr(handle)) };
            STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

unsafe extern "C" fn wdf_timer_start(
    _globals: PWDF_DRIVER_GLOBALS,
    timer: WDFTIMER,
    due_time: LONGLONG,
) -> BOOLEAN {
    const API: &str = "WdfTimerStart";
    if !irql::require_at_most(irql::DISPATCH, API) {
        return boolean(false);
    }
    let Some(object) = object::lookup_payload::<Timer>(object::handle_of(timer), KIND, API) else {
        return boolean(false);
    };
    let Some(payload) = object.payload::<Timer>() else {
        return boolean(false);
    };
    let due = due_instant(due_time);
    let mut state = payload.state();
    if state.disposed {
        drop(state);
        verifier::report(
            rules::USE_WHILE_DELETING,
            &*object,
            "started while being deleted".to_string(),
        );
        return boolean(false);
    }
    let was_queued = Timer::cancel(&mut state);
    state.queued = true;
    schedule(&object, payload, due, state.generation);
    boolean(was_queued)
}

unsafe extern "C" fn wdf_timer_stop(
    _globals: PWDF_DRIVER_GLOBALS,
    timer: WDFTIMER,
    wait: BOOLEAN,
) -> BOOLEAN {
    const API: &str = "WdfTimerStop";
    let wait = wait != 0;
    let allowed = if wait { irql::PASSIVE } else { irql::DISPATCH };
    if !irql::require_at_most(
        allowed,
        if wait {
            "WdfTimerStop(Wait = TRUE)"
        } else {
            API
        },
    ) {
        return boolean(false);
    }
    let Some(object) = object::lookup_payload::<Timer>(object::handle_of(timer), KIND, API) else {
        return boolean(false);
    };
    let Some(payload) = object.payload::<Timer>() else {
        return boolean(false);
    };
    let (was_queued, inside) = {
        let mut state = payload.state();
        (Timer::cancel(&mut state), state.running.on_current_thread())
    };
    if wait {
        if inside {
            verifier::report(
                rules::WAIT_FOR_OWN_CALLBACK,
                &*object,
                "WdfTimerStop(Wait = TRUE) called from the timer's own callback would deadlock"
                    .to_string(),
            );
        } else {
            payload.wait_for_callbacks();
        }
    }
    boolean(was_queued)
}

unsafe extern "C" fn wdf_timer_get_parent_object(
    _globals: PWDF_DRIVER_GLOBALS,
    timer: WDFTIMER,
) -> WDFOBJECT {
    const API: &str = "WdfTimerGetParentObject";
    if !irql::require_at_most(irql::DISPATCH, API) {
        return core::ptr::null_mut();
    }
    object::lookup_payload::<Timer>(object::handle_of(timer), KIND, API)
        .map_or(core::ptr::null_mut(), |object| {
            object::handle_ptr(object.parent())
        })
}

pub(crate) const ENTRIES: &[Entry] = &[
    wdf_entry!(
        WdfTimerCreateTableIndex,
        PFN_WDFTIMERCREATE,
        wdf_timer_create
    ),
    wdf_entry!(WdfTimerStartTableIndex, PFN_WDFTIMERSTART, wdf_timer_start),
    wdf_entry!(WdfTimerStopTableIndex, PFN_WDFTIMERSTOP, wdf_timer_stop),
    wdf_entry!(
        WdfTimerGetParentObjectTableIndex,
        PFN_WDFTIMERGETPARENTOBJECT,
        wdf_timer_get_parent_object
    ),
];

/// Kernel functions of this area, re-exported from `ntddk`.
#[allow(non_snake_case)]
pub mod kernel {}
