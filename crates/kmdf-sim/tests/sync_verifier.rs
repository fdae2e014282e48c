//! Spin locks, wait locks, kernel events, waits and system threads at the raw `wdk_sys`
//! surface: their semantics, and one firing test per verifier rule they check.
#![allow(clippy::missing_panics_doc, reason = "tests")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use wdk_sys::sim::{self, Session, verifier::rules};
use wdk_sys::{
    _EVENT_TYPE, _KWAIT_REASON, _WAIT_TYPE, APC_LEVEL, DISPATCH_LEVEL, HANDLE, HIGH_LEVEL, KEVENT,
    LARGE_INTEGER, PASSIVE_LEVEL, PVOID, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS, STATUS_TIMEOUT, STATUS_WAIT_0, WDF_NO_OBJECT_ATTRIBUTES, WDFSPINLOCK,
    WDFWAITLOCK, call_unsafe_wdf_function_binding, ntddk,
};

mod common;

use common::create_spin_lock;

const DISPATCH: u8 = DISPATCH_LEVEL as u8;

fn irql() -> u8 {
    // SAFETY: reads the calling thread's IRQL.
    unsafe { ntddk::KeGetCurrentIrql() }
}

fn wait_lock() -> WDFWAITLOCK {
    let mut lock: WDFWAITLOCK = core::ptr::null_mut();
    // SAFETY: the out pointer is a valid local.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfWaitLockCreate,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut lock
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    lock
}

fn acquire(lock: WDFSPINLOCK) {
    // SAFETY: `lock` is a live spin lock.
    unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockAcquire, lock) };
}

fn release(lock: WDFSPINLOCK) {
    // SAFETY: `lock` is a live spin lock.
    unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockRelease, lock) };
}

fn wait_acquire(lock: WDFWAITLOCK, timeout: Option<i64>) -> i32 {
    let mut value = timeout.unwrap_or(0);
    let pointer = if timeout.is_some() {
        &raw mut value
    } else {
        core::ptr::null_mut()
    };
    // SAFETY: `lock` is a live wait lock; the timeout is null or a valid local.
    unsafe { call_unsafe_wdf_function_binding!(WdfWaitLockAcquire, lock, pointer) }
}

fn wait_release(lock: WDFWAITLOCK) {
    // SAFETY: `lock` is a live wait lock.
    unsafe { call_unsafe_wdf_function_binding!(WdfWaitLockRelease, lock) };
}

fn delete<T>(handle: *mut T) {
    // SAFETY: `handle` is a live framework object.
    unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, handle.cast()) };
}

fn set(event: *mut KEVENT) -> i32 {
    // SAFETY: the tests pass live, initialized events (or deliberately uninitialized memory).
    unsafe { ntddk::KeSetEvent(event, 0, 0) }
}

fn read(event: *mut KEVENT) -> i32 {
    // SAFETY: the tests pass live, initialized events.
    unsafe { ntddk::KeReadStateEvent(event) }
}

fn reset(event: *mut KEVENT) -> i32 {
    // SAFETY: the tests pass live, initialized events.
    unsafe { ntddk::KeResetEvent(event) }
}

fn clear(event: *mut KEVENT) {
    // SAFETY: the tests pass live, initialized events.
    unsafe { ntddk::KeClearEvent(event) };
}

fn delay_100ns(value: i64) -> i32 {
    let mut interval = LARGE_INTEGER { QuadPart: value };
    // SAFETY: the interval is a valid local.
    unsafe { ntddk::KeDelayExecutionThread(0, 0, &raw mut interval) }
}

fn terminate() -> i32 {
    // SAFETY: the tests call this on system threads, which return right after, or on purpose
    // from another thread.
    unsafe { ntddk::PsTerminateSystemThread(STATUS_SUCCESS) }
}

#[allow(
    clippy::unnecessary_box_returns,
    reason = "the KEVENT needs a stable address"
)]
fn event(kind: wdk_sys::EVENT_TYPE, signaled: bool) -> Box<KEVENT> {
    let mut event = Box::new(KEVENT::default());
    // SAFETY: the event memory is valid and owned by the box.
    unsafe { ntddk::KeInitializeEvent(&raw mut *event, kind, u8::from(signaled)) };
    event
}

fn wait_single(object: PVOID, timeout: Option<i64>) -> i32 {
    let mut value = LARGE_INTEGER {
        QuadPart: timeout.unwrap_or(0),
    };
    let pointer = if timeout.is_some() {
        &raw mut value
    } else {
        core::ptr::null_mut()
    };
    // SAFETY: `object` is a live dispatcher object; the timeout is null or a valid local.
    unsafe { ntddk::KeWaitForSingleObject(object, _KWAIT_REASON::Executive, 0, 0, pointer) }
}

fn ptr(event: &mut KEVENT) -> PVOID {
    core::ptr::from_mut(event).cast()
}

fn rules_of(reports: &[sim::verifier::Report]) -> Vec<&'static str> {
    reports.iter().map(|report| report.rule).collect()
}

#[test]
fn spin_lock_raises_to_dispatch_and_restores_the_irql() {
    let session = Session::begin();
    let lock = create_spin_lock();
    acquire(lock);
    assert_eq!(irql(), DISPATCH);
    release(lock);
    assert_eq!(irql(), PASSIVE_LEVEL as u8);
    // Acquired at DISPATCH_LEVEL (as in a DPC), released back to DISPATCH_LEVEL.
    sim::at_irql(DISPATCH, || {
        acquire(lock);
        assert_eq!(irql(), DISPATCH);
        release(lock);
        assert_eq!(irql(), DISPATCH);
    });
    delete(lock);
    session.end();
}

#[test]
fn spin_lock_recursive_acquire_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::SPIN_LOCK_MISUSE);
    let lock = create_spin_lock();
    acquire(lock);
    acquire(lock);
    let reports = sim::verifier::take_reports();
    assert_eq!(rules_of(&reports), [rules::SPIN_LOCK_MISUSE]);
    assert!(
        reports[0].object.starts_with("WDFSPINLOCK"),
        "{}",
        reports[0]
    );
    assert!(
        reports[0].message.contains("acquired again"),
        "{}",
        reports[0]
    );
    release(lock);
    assert_eq!(
        irql(),
        PASSIVE_LEVEL as u8,
        "the one real acquire was released"
    );
    delete(lock);
    session.end();
}

#[test]
fn spin_lock_release_by_another_thread_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::SPIN_LOCK_MISUSE);
    let lock = create_spin_lock();
    acquire(lock);
    let raw = lock as usize;
    std::thread::spawn(move || release(raw as WDFSPINLOCK))
        .join()
        .unwrap();
    let reports = sim::verifier::take_reports();
    assert_eq!(rules_of(&reports), [rules::SPIN_LOCK_MISUSE]);
    assert!(
        reports[0].message.contains("does not hold"),
        "{}",
        reports[0]
    );
    release(lock);
    delete(lock);
    session.end();
}

#[test]
fn spin_lock_held_when_a_callback_returns_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::SPIN_LOCK_HELD_ON_RETURN);
    let lock = create_spin_lock();
    sim::at_irql(PASSIVE_LEVEL as u8, || acquire(lock));
    let reports = sim::verifier::take_reports();
    assert_eq!(rules_of(&reports), [rules::SPIN_LOCK_HELD_ON_RETURN]);
    release(lock);
    delete(lock);
    session.end();
}

#[test]
fn spin_lock_excludes_other_threads() {
    let session = Session::begin();
    let lock = create_spin_lock() as usize;
    let counter = std::sync::Arc::new(std::sync::Mutex::new(0u64));
    let inside = std::sync::Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let inside = inside.clone();
            let counter = counter.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    acquire(lock as WDFSPINLOCK);
                    assert_eq!(
                        inside.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two threads inside the spin lock"
                    );
                    std::thread::yield_now();
                    *counter.lock().unwrap() += 1;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    release(lock as WDFSPINLOCK);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(*counter.lock().unwrap(), 800);
    delete(lock as WDFSPINLOCK);
    session.end();
}

#[test]
fn deleting_a_held_lock_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::LOCK_DELETED_WHILE_HELD);
    session.expect_violation(rules::SPIN_LOCK_HELD_ON_RETURN);
    let lock = wait_lock();
    assert_eq!(wait_acquire(lock, None), STATUS_SUCCESS);
    delete(lock);
    let reports = sim::verifier::take_reports();
    assert_eq!(rules_of(&reports), [rules::LOCK_DELETED_WHILE_HELD]);
    let spin = create_spin_lock();
    sim::at_irql(DISPATCH, || {
        acquire(spin);
        delete(spin);
    });
    let reports = sim::verifier::take_reports();
    assert_eq!(
        rules_of(&reports),
        [
            rules::LOCK_DELETED_WHILE_HELD,
            rules::SPIN_LOCK_HELD_ON_RETURN
        ]
    );
    session.end();
}

#[test]
fn wait_lock_acquire_with_a_timeout_at_dispatch_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::WAIT_AT_DISPATCH);
    let lock = wait_lock();
    let (infinite, timed, zero) = sim::at_irql(DISPATCH, || {
        let infinite = wait_acquire(lock, None);
        let timed = wait_acquire(lock, Some(-10_000));
        let zero = wait_acquire(lock, Some(0));
        wait_release(lock);
        (infinite, timed, zero)
    });
    assert_eq!(infinite, STATUS_INVALID_DEVICE_REQUEST);
    assert_eq!(timed, STATUS_INVALID_DEVICE_REQUEST);
    assert_eq!(
        zero, STATUS_SUCCESS,
        "KMDF allows a zero timeout at DISPATCH_LEVEL"
    );
    let reports = sim::verifier::take_reports();
    assert_eq!(
        rules_of(&reports),
        [rules::WAIT_AT_DISPATCH, rules::WAIT_AT_DISPATCH]
    );
    delete(lock);
    session.end();
}

#[test]
fn wait_lock_misuse_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::WAIT_LOCK_MISUSE);
    let lock = wait_lock();
    assert_eq!(wait_acquire(lock, None), STATUS_SUCCESS);
    assert_eq!(
        wait_acquire(lock, Some(-10_000)),
        STATUS_TIMEOUT,
        "a recursive timed acquire times out"
    );
    assert_eq!(
        wait_acquire(lock, None),
        STATUS_INVALID_DEVICE_REQUEST,
        "a recursive acquire is refused"
    );
    let raw = lock as usize;
    std::thread::spawn(move || wait_release(raw as WDFWAITLOCK))
        .join()
        .unwrap();
    let reports = sim::verifier::take_reports();
    assert_eq!(rules_of(&reports), [rules::WAIT_LOCK_MISUSE; 3]);
    wait_release(lock);
    delete(lock);
    session.end();
}

#[test]
fn wait_lock_times_out_while_another_thread_holds_it() {
    let session = Session::begin();
    let lock = wait_lock();
    assert_eq!(wait_acquire(lock, None), STATUS_SUCCESS);
    let raw = lock as usize;
    let started = Instant::now();
    let (poll, timed) = std::thread::spawn(move || {
        let poll = wait_acquire(raw as WDFWAITLOCK, Some(0));
        let timed = wait_acquire(raw as WDFWAITLOCK, Some(-200_000)); // 20 ms
        (poll, timed)
    })
    .join()
    .unwrap();
    let elapsed = started.elapsed();
    assert_eq!((poll, timed), (STATUS_TIMEOUT, STATUS_TIMEOUT));
    assert!(
        elapsed >= Duration::from_millis(20) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    wait_release(lock);
    let status = std::thread::spawn(move || {
        let status = wait_acquire(raw as WDFWAITLOCK, Some(0));
        wait_release(raw as WDFWAITLOCK);
        status
    })
    .join()
    .unwrap();
    assert_eq!(status, STATUS_SUCCESS);
    delete(lock);
    session.end();
}

#[test]
fn event_set_reset_and_read() {
    let session = Session::begin();
    let mut notification = event(_EVENT_TYPE::NotificationEvent, false);
    let e = &raw mut *notification;
    assert_eq!(read(e), 0);
    assert_eq!(set(e), 0, "previous state: not signaled");
    assert_eq!(set(e), 1, "previous state: signaled");
    assert_eq!(read(e), 1);
    assert_eq!(wait_single(ptr(&mut notification), Some(0)), STATUS_SUCCESS);
    assert_eq!(
        wait_single(ptr(&mut notification), Some(0)),
        STATUS_SUCCESS,
        "a notification event stays signaled"
    );
    assert_eq!(reset(e), 1);
    assert_eq!(wait_single(ptr(&mut notification), Some(0)), STATUS_TIMEOUT);
    let mut synchronization = event(_EVENT_TYPE::SynchronizationEvent, true);
    assert_eq!(
        wait_single(ptr(&mut synchronization), Some(0)),
        STATUS_SUCCESS
    );
    assert_eq!(
        wait_single(ptr(&mut synchronization), Some(0)),
        STATUS_TIMEOUT,
        "a satisfied wait resets it"
    );
    set(&raw mut *synchronization);
    clear(&raw mut *synchronization);
    assert_eq!(read(&raw mut *synchronization), 0);
    session.end();
}

#[test]
fn relative_and_absolute_timeouts_expire() {
    let session = Session::begin();
    let mut e = event(_EVENT_TYPE::NotificationEvent, false);
    let started = Instant::now();
    assert_eq!(wait_single(ptr(&mut e), Some(-300_000)), STATUS_TIMEOUT); // 30 ms relative
    let relative = started.elapsed();
    assert!(
        relative >= Duration::from_millis(30) && relative < Duration::from_secs(5),
        "{relative:?}"
    );
    let mut now = LARGE_INTEGER::default();
    // SAFETY: the out pointer is a valid local.
    unsafe { ntddk::KeQuerySystemTimePrecise(&raw mut now) };
    // SAFETY: the simulation writes QuadPart.
    let absolute_deadline = unsafe { now.QuadPart } + 300_000;
    let started = Instant::now();
    assert_eq!(
        wait_single(ptr(&mut e), Some(absolute_deadline)),
        STATUS_TIMEOUT
    );
    let absolute = started.elapsed();
    assert!(
        absolute >= Duration::from_millis(20) && absolute < Duration::from_secs(5),
        "{absolute:?}"
    );
    session.end();
}

#[test]
fn wait_for_multiple_objects_any_and_all() {
    let session = Session::begin();
    let mut a = event(_EVENT_TYPE::NotificationEvent, false);
    let mut b = event(_EVENT_TYPE::SynchronizationEvent, true);
    let mut c = event(_EVENT_TYPE::NotificationEvent, true);
    let mut objects = [ptr(&mut a), ptr(&mut b), ptr(&mut c)];
    let mut zero = LARGE_INTEGER { QuadPart: 0 };
    let mut wait = |wait_type| {
        // SAFETY: three live events; the timeout is a valid local.
        unsafe {
            ntddk::KeWaitForMultipleObjects(
                3,
                objects.as_mut_ptr(),
                wait_type,
                _KWAIT_REASON::Executive,
                0,
                0,
                &raw mut zero,
                core::ptr::null_mut(),
            )
        }
    };
    assert_eq!(
        wait(_WAIT_TYPE::WaitAny),
        STATUS_WAIT_0 + 1,
        "the first signaled object wins"
    );
    assert_eq!(
        wait(_WAIT_TYPE::WaitAny),
        STATUS_WAIT_0 + 2,
        "b reset itself; c is next"
    );
    assert_eq!(wait(_WAIT_TYPE::WaitAll), STATUS_TIMEOUT);
    set(&raw mut *a);
    set(&raw mut *b);
    assert_eq!(wait(_WAIT_TYPE::WaitAll), STATUS_SUCCESS);
    assert_eq!(
        read(&raw mut *b),
        0,
        "WaitAll consumed the synchronization event"
    );
    session.end();
}

#[test]
fn too_many_objects_without_wait_blocks_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::INVALID_ARGUMENT);
    let mut events: Vec<_> = (0..4)
        .map(|_| event(_EVENT_TYPE::NotificationEvent, true))
        .collect();
    let mut objects: Vec<PVOID> = events.iter_mut().map(|e| ptr(e)).collect();
    // SAFETY: four live events, no timeout.
    let status = unsafe {
        ntddk::KeWaitForMultipleObjects(
            4,
            objects.as_mut_ptr(),
            _WAIT_TYPE::WaitAny,
            _KWAIT_REASON::Executive,
            0,
            0,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        )
    };
    assert_eq!(status, STATUS_INVALID_PARAMETER);
    assert_eq!(
        rules_of(&sim::verifier::take_reports()),
        [rules::INVALID_ARGUMENT]
    );
    session.end();
}

#[test]
fn uninitialized_event_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::INVALID_ARGUMENT);
    let mut raw = Box::new(KEVENT::default());
    // Valid memory, deliberately not initialized.
    assert_eq!(set(&raw mut *raw), 0);
    assert_eq!(
        wait_single(ptr(&mut raw), Some(0)),
        STATUS_INVALID_PARAMETER
    );
    let reports = sim::verifier::take_reports();
    assert_eq!(rules_of(&reports), [rules::INVALID_ARGUMENT; 2]);
    assert!(
        reports[0].message.contains("KeInitializeEvent"),
        "{}",
        reports[0]
    );
    session.end();
}

#[test]
fn waits_above_apc_level_are_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::WAIT_AT_DISPATCH);
    let mut e = event(_EVENT_TYPE::NotificationEvent, false);
    let object = ptr(&mut e);
    let (infinite, timed, poll) = sim::at_irql(DISPATCH, || {
        (
            wait_single(object, None),
            wait_single(object, Some(-1)),
            wait_single(object, Some(0)),
        )
    });
    assert_eq!(
        (infinite, timed, poll),
        (
            STATUS_INVALID_DEVICE_REQUEST,
            STATUS_INVALID_DEVICE_REQUEST,
            STATUS_TIMEOUT
        )
    );
    let delayed = sim::at_irql(DISPATCH, || delay_100ns(-10));
    assert_eq!(delayed, STATUS_INVALID_DEVICE_REQUEST);
    assert_eq!(
        rules_of(&sim::verifier::take_reports()),
        [rules::WAIT_AT_DISPATCH; 3]
    );
    // APC_LEVEL may wait.
    assert_eq!(
        sim::at_irql(APC_LEVEL as u8, || wait_single(object, Some(-1))),
        STATUS_TIMEOUT
    );
    session.end();
}

#[test]
fn set_event_above_dispatch_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::IRQL_TOO_HIGH);
    let mut e = event(_EVENT_TYPE::NotificationEvent, false);
    let raw = &raw mut *e;
    sim::at_irql(HIGH_LEVEL as u8, || set(raw));
    let reports = sim::verifier::take_reports();
    assert_eq!(rules_of(&reports), [rules::IRQL_TOO_HIGH]);
    assert_eq!(reports[0].object, "KeSetEvent");
    assert_eq!(read(raw), 0, "the refused set did not signal");
    session.end();
}

static STARTED: AtomicU32 = AtomicU32::new(0);

unsafe extern "C" fn count_and_terminate(context: PVOID) {
    STARTED.fetch_add(1, Ordering::SeqCst);
    assert_eq!(irql(), PASSIVE_LEVEL as u8);
    set(context.cast());
    let status = terminate();
    assert_eq!(status, STATUS_SUCCESS);
}

fn create_thread(routine: unsafe extern "C" fn(PVOID), context: PVOID) -> HANDLE {
    let mut handle: HANDLE = core::ptr::null_mut();
    // SAFETY: valid out pointer; the routine and context stay valid while the thread runs.
    let status = unsafe {
        ntddk::PsCreateSystemThread(
            &raw mut handle,
            0,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            Some(routine),
            context,
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    handle
}

fn reference(handle: HANDLE) -> PVOID {
    let mut object: PVOID = core::ptr::null_mut();
    // SAFETY: reads the thread type pointer.
    let thread_type_pointer = unsafe { wdk_sys::PsThreadType };
    // SAFETY: it points at the thread object type.
    let thread_type = unsafe { *thread_type_pointer };
    // SAFETY: valid out pointer.
    let status = unsafe {
        ntddk::ObReferenceObjectByHandle(
            handle,
            0,
            thread_type,
            0,
            &raw mut object,
            core::ptr::null_mut(),
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    object
}

#[test]
fn system_thread_runs_and_its_object_signals_at_exit() {
    let session = Session::begin();
    let mut started = event(_EVENT_TYPE::NotificationEvent, false);
    let before = STARTED.load(Ordering::SeqCst);
    let handle = create_thread(count_and_terminate, ptr(&mut started));
    let object = reference(handle);
    assert_eq!(
        wait_single(object, Some(-50_000_000)),
        STATUS_SUCCESS,
        "the thread exits within 5 s"
    );
    assert_eq!(wait_single(ptr(&mut started), Some(0)), STATUS_SUCCESS);
    assert_eq!(STARTED.load(Ordering::SeqCst), before + 1);
    assert_eq!(
        wait_single(object, Some(0)),
        STATUS_SUCCESS,
        "a thread object stays signaled"
    );
    // SAFETY: releases the reference taken above.
    unsafe { ntddk::ObfDereferenceObject(object) };
    // SAFETY: closes the handle once.
    assert_eq!(unsafe { ntddk::ZwClose(handle) }, STATUS_SUCCESS);
    session.end();
}

#[test]
fn terminate_from_a_non_system_thread_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::NOT_A_SYSTEM_THREAD);
    assert_eq!(terminate(), STATUS_INVALID_PARAMETER);
    assert_eq!(
        rules_of(&sim::verifier::take_reports()),
        [rules::NOT_A_SYSTEM_THREAD]
    );
    session.end();
}

unsafe extern "C" fn wait_for_context(context: PVOID) {
    // SAFETY: the context is a leaked, initialized event.
    let _ = unsafe {
        ntddk::KeWaitForSingleObject(
            context,
            _KWAIT_REASON::Executive,
            0,
            0,
            core::ptr::null_mut(),
        )
    };
}

#[test]
fn leaked_handles_references_and_running_threads_are_reported_at_teardown() {
    let mut session = Session::begin();
    session.expect_violation(rules::KERNEL_HANDLE_LEAKED);
    session.expect_violation(rules::SYSTEM_THREAD_RUNNING);
    // Leaked on purpose: the thread may still be finishing after the session.
    let release = Box::leak(event(_EVENT_TYPE::NotificationEvent, false));
    let handle = create_thread(wait_for_context, ptr(release));
    let _object = reference(handle);
    session.check_leaks();
    let reports = sim::verifier::take_reports();
    let mut found = rules_of(&reports);
    found.sort_unstable();
    let mut expected = vec![
        rules::KERNEL_HANDLE_LEAKED,
        rules::KERNEL_HANDLE_LEAKED,
        rules::SYSTEM_THREAD_RUNNING,
    ];
    expected.sort_unstable();
    assert_eq!(found, expected, "{reports:?}");
    assert!(
        reports.iter().any(|r| r.message.contains("ZwClose")),
        "{reports:?}"
    );
    assert!(
        reports
            .iter()
            .any(|r| r.message.contains("ObfDereferenceObject")),
        "{reports:?}"
    );
    set(&raw mut *release);
    session.end();
}

#[test]
fn closing_an_unknown_handle_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::INVALID_HANDLE);
    // SAFETY: deliberately misused: not a handle.
    let status = unsafe { ntddk::ZwClose(0x1234 as HANDLE) };
    assert_eq!(status, wdk_sys::STATUS_INVALID_HANDLE);
    assert_eq!(
        rules_of(&sim::verifier::take_reports()),
        [rules::INVALID_HANDLE]
    );
    session.end();
}

#[test]
fn delay_waits_for_the_interval() {
    let session = Session::begin();
    let started = Instant::now();
    assert_eq!(delay_100ns(-200_000), STATUS_SUCCESS); // 20 ms
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(20) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    session.end();
}

#[test]
fn releasing_the_callers_spin_lock_inside_a_callback_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::IRQL_NOT_RESTORED);
    let lock = create_spin_lock();
    acquire(lock);
    assert_eq!(irql(), DISPATCH);
    // A callback that releases a lock its caller holds returns at a lower IRQL than it was
    // called at.
    sim::at_irql(DISPATCH, || release(lock));
    let reports = sim::verifier::take_reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].rule, rules::IRQL_NOT_RESTORED);
    assert!(
        reports[0].message.contains("returned at IRQL 0"),
        "{}",
        reports[0].message
    );
    // SAFETY: the lock is live and no longer held.
    unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, lock.cast()) };
    session.end();
}
