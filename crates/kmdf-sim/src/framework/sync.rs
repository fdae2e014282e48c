//! `WDFSPINLOCK` and `WDFWAITLOCK`: real locks with an owner, so that misuse is caught.
//!
//! A spin lock raises the acquiring thread to `DISPATCH_LEVEL`, remembers the IRQL it was
//! acquired at and restores it on release. A wait lock may block (with an optional timeout) at
//! `PASSIVE_LEVEL`; a zero timeout (a try) is allowed up to `DISPATCH_LEVEL`. Both are checked:
//! acquiring a lock the thread already holds (a deadlock on Windows), releasing a lock the thread
//! does not hold, and deleting a held lock are verifier reports.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;
use std::time::Instant;

use super::object::{self, Attributes, Payload};
use super::table::Entry;
use super::verifier::{self, rules};
use super::{event, irql, wdf_entry};
use crate::constants::{
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER, STATUS_SUCCESS, STATUS_TIMEOUT,
};
use crate::types::{
    KIRQL, NTSTATUS, PLONGLONG, PWDF_DRIVER_GLOBALS, PWDF_OBJECT_ATTRIBUTES, WDFSPINLOCK,
    WDFWAITLOCK,
};

/// KMDF type name of spin locks.
pub(crate) const SPIN_LOCK: &str = "WDFSPINLOCK";
/// KMDF type name of wait locks.
pub(crate) const WAIT_LOCK: &str = "WDFWAITLOCK";

#[derive(Default)]
struct Holder {
    owner: Option<ThreadId>,
    /// The IRQL a spin lock was acquired at.
    saved_irql: KIRQL,
    /// Threads blocked in an acquire: a release signals `released` only when there is one
    /// (signalling a condition variable costs a system call even with nobody waiting).
    waiters: usize,
}

/// The calling thread's id, cached (`std::thread::current()` is not free).
fn current_thread() -> ThreadId {
    thread_local! {
        static ME: ThreadId = std::thread::current().id();
    }
    ME.with(|me| *me)
}

/// A spin lock's or wait lock's state.
#[derive(Default)]
pub(crate) struct Lock {
    holder: Mutex<Holder>,
    released: Condvar,
}

impl Lock {
    fn holder(&self) -> MutexGuard<'_, Holder> {
        self.holder.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Payload for Lock {
    fn dispose(&self, handle: usize) {
        if self.holder().owner.is_some() {
            verifier::report(
                rules::LOCK_DELETED_WHILE_HELD,
                format!("lock {handle:#x}"),
                "deleted while a thread holds it".to_string(),
            );
        }
    }
}

fn create(
    kind: &'static str,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    out: *mut usize,
    api: &str,
) -> NTSTATUS {
    if !irql::require_at_most(irql::DISPATCH, api) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    if out.is_null() {
        verifier::report(
            rules::INVALID_ARGUMENT,
            api,
            "null out handle pointer".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let attributes = match Attributes::read(attributes, api) {
        Ok(attributes) => attributes,
        Err(status) => return status,
    };
    match object::create(
        kind,
        &attributes,
        object::default_parent(),
        Box::new(Lock::default()),
    ) {
        Ok(handle) => {
            // SAFETY: `out` is non-null and writable by the API contract.
            unsafe { out.write(handle) };
            STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

unsafe extern "C" fn wdf_spin_lock_create(
    _globals: PWDF_DRIVER_GLOBALS,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    spin_lock: *mut WDFSPINLOCK,
) -> NTSTATUS {
    create(SPIN_LOCK, attributes, spin_lock.cast(), "WdfSpinLockCreate")
}

unsafe extern "C" fn wdf_spin_lock_acquire(_globals: PWDF_DRIVER_GLOBALS, spin_lock: WDFSPINLOCK) {
    const API: &str = "WdfSpinLockAcquire";
    let Some(object) = object::lookup_payload::<Lock>(object::handle_of(spin_lock), SPIN_LOCK, API)
    else {
        return;
    };
    let Some(lock) = object.payload::<Lock>() else {
        return;
    };
    if !irql::require_at_most(irql::DISPATCH, API) {
        return;
    }
    let me = current_thread();
    let mut holder = lock.holder();
    if holder.owner == Some(me) {
        drop(holder);
        verifier::report(
            rules::SPIN_LOCK_MISUSE,
            &*object,
            "acquired again by the thread that holds it (a deadlock on Windows); not acquired"
                .to_string(),
        );
        return;
    }
    // The kernel raises before spinning; a blocked acquirer is at DISPATCH_LEVEL too.
    let saved = irql::raise(irql::DISPATCH);
    while holder.owner.is_some() {
        holder.waiters += 1;
        holder = lock
            .released
            .wait(holder)
            .unwrap_or_else(PoisonError::into_inner);
        holder.waiters -= 1;
    }
    holder.owner = Some(me);
    holder.saved_irql = saved;
    irql::spin_lock_acquired();
}

unsafe extern "C" fn wdf_spin_lock_release(_globals: PWDF_DRIVER_GLOBALS, spin_lock: WDFSPINLOCK) {
    const API: &str = "WdfSpinLockRelease";
    let Some(object) = object::lookup_payload::<Lock>(object::handle_of(spin_lock), SPIN_LOCK, API)
    else {
        return;
    };
    let Some(lock) = object.payload::<Lock>() else {
        return;
    };
    let mut holder = lock.holder();
    if holder.owner != Some(current_thread()) {
        drop(holder);
        verifier::report(
            rules::SPIN_LOCK_MISUSE,
            &*object,
            "released by a thread that does not hold it".to_string(),
        );
        return;
    }
    holder.owner = None;
    let saved = holder.saved_irql;
    let wake = holder.waiters > 0;
    drop(holder);
    if wake {
        lock.released.notify_one();
    }
    irql::spin_lock_released();
    irql::set(saved);
}

unsafe extern "C" fn wdf_wait_lock_create(
    _globals: PWDF_DRIVER_GLOBALS,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    lock: *mut WDFWAITLOCK,
) -> NTSTATUS {
    create(WAIT_LOCK, attributes, lock.cast(), "WdfWaitLockCreate")
}

unsafe extern "C" fn wdf_wait_lock_acquire(
    _globals: PWDF_DRIVER_GLOBALS,
    wait_lock: WDFWAITLOCK,
    timeout: PLONGLONG,
) -> NTSTATUS {
    const API: &str = "WdfWaitLockAcquire";
    let Some(object) = object::lookup_payload::<Lock>(object::handle_of(wait_lock), WAIT_LOCK, API)
    else {
        return STATUS_INVALID_PARAMETER;
    };
    let Some(lock) = object.payload::<Lock>() else {
        return STATUS_INVALID_PARAMETER;
    };
    let timeout = if timeout.is_null() {
        None
    } else {
        // SAFETY: a non-null timeout points at a readable LONGLONG by the API contract.
        Some(unsafe { timeout.read() })
    };
    // KMDF: a wait that can block (null or non-zero timeout) requires PASSIVE_LEVEL; a try
    // (zero timeout) is allowed up to DISPATCH_LEVEL.
    if timeout == Some(0) {
        if !irql::require_at_most(irql::DISPATCH, API) {
            return STATUS_INVALID_DEVICE_REQUEST;
        }
    } else if irql::current() >= irql::DISPATCH {
        verifier::report(
            rules::WAIT_AT_DISPATCH,
            &*object,
            format!(
                "WdfWaitLockAcquire with a non-zero or infinite timeout at IRQL {}; only a zero timeout is allowed above PASSIVE_LEVEL",
                irql::current()
            ),
        );
        return STATUS_INVALID_DEVICE_REQUEST;
    } else if !irql::require_passive(API) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let me = current_thread();
    let deadline: Option<Instant> = event::deadline(timeout);
    let mut holder = lock.holder();
    if holder.owner == Some(me) {
        drop(holder);
        verifier::report(
            rules::WAIT_LOCK_MISUSE,
            &*object,
            "acquired again by the thread that holds it (a deadlock on Windows); not acquired"
                .to_string(),
        );
        return if timeout.is_some() {
            STATUS_TIMEOUT
        } else {
            STATUS_INVALID_DEVICE_REQUEST
        };
    }
    while holder.owner.is_some() {
        match deadline {
            None => {
                holder.waiters += 1;
                holder = lock
                    .released
                    .wait(holder)
                    .unwrap_or_else(PoisonError::into_inner);
                holder.waiters -= 1;
            }
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return STATUS_TIMEOUT;
                }
                holder.waiters += 1;
                holder = lock
                    .released
                    .wait_timeout(holder, deadline - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                holder.waiters -= 1;
            }
        }
    }
    holder.owner = Some(me);
    STATUS_SUCCESS
}

unsafe extern "C" fn wdf_wait_lock_release(_globals: PWDF_DRIVER_GLOBALS, wait_lock: WDFWAITLOCK) {
    const API: &str = "WdfWaitLockRelease";
    let Some(object) = object::lookup_payload::<Lock>(object::handle_of(wait_lock), WAIT_LOCK, API)
    else {
        return;
    };
    let Some(lock) = object.payload::<Lock>() else {
        return;
    };
    if !irql::require_at_most(irql::DISPATCH, API) {
        return;
    }
    let mut holder = lock.holder();
    if holder.owner != Some(current_thread()) {
        drop(holder);
        verifier::report(
            rules::WAIT_LOCK_MISUSE,
            &*object,
            "released by a thread that does not hold it".to_string(),
        );
        return;
    }
    holder.owner = None;
    let wake = holder.waiters > 0;
    drop(holder);
    if wake {
        lock.released.notify_one();
    }
}

pub(crate) const ENTRIES: &[Entry] = &[
    wdf_entry!(
        WdfSpinLockCreateTableIndex,
        PFN_WDFSPINLOCKCREATE,
        wdf_spin_lock_create
    ),
    wdf_entry!(
        WdfSpinLockAcquireTableIndex,
        PFN_WDFSPINLOCKACQUIRE,
        wdf_spin_lock_acquire
    ),
    wdf_entry!(
        WdfSpinLockReleaseTableIndex,
        PFN_WDFSPINLOCKRELEASE,
        wdf_spin_lock_release
    ),
    wdf_entry!(
        WdfWaitLockCreateTableIndex,
        PFN_WDFWAITLOCKCREATE,
        wdf_wait_lock_create
    ),
    wdf_entry!(
        WdfWaitLockAcquireTableIndex,
        PFN_WDFWAITLOCKACQUIRE,
        wdf_wait_lock_acquire
    ),
    wdf_entry!(
        WdfWaitLockReleaseTableIndex,
        PFN_WDFWAITLOCKRELEASE,
        wdf_wait_lock_release
    ),
];

/// Kernel functions of this area, re-exported from `ntddk` (none: WDF locks only).
#[allow(non_snake_case)]
pub mod kernel {}
