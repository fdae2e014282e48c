//! Work items, timers and collections on the raw WDF surface: one firing test per verifier rule
//! of the area, plus the KMDF behaviours the rules guard.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use wdk_sys::sim::{self, Session, verifier::rules};
use wdk_sys::{
    _WDF_EXECUTION_LEVEL, _WDF_SYNCHRONIZATION_SCOPE, DISPATCH_LEVEL, NTSTATUS,
    STATUS_INFO_LENGTH_MISMATCH, STATUS_NOT_SUPPORTED, STATUS_SUCCESS, WDF_OBJECT_ATTRIBUTES,
    WDF_TIMER_CONFIG, WDF_WORKITEM_CONFIG, WDFCOLLECTION, WDFOBJECT, WDFTIMER, WDFWORKITEM,
    call_unsafe_wdf_function_binding,
};

const DISPATCH: u8 = DISPATCH_LEVEL as u8;
const WAIT: Duration = Duration::from_secs(5);

fn attributes(parent: WDFOBJECT) -> WDF_OBJECT_ATTRIBUTES {
    WDF_OBJECT_ATTRIBUTES {
        Size: size_of::<WDF_OBJECT_ATTRIBUTES>() as u32,
        ExecutionLevel: _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent,
        SynchronizationScope: _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
        ParentObject: parent,
        ..WDF_OBJECT_ATTRIBUTES::default()
    }
}

fn collection() -> WDFCOLLECTION {
    let mut handle: WDFCOLLECTION = core::ptr::null_mut();
    // SAFETY: null attributes are allowed; the out pointer is a valid local.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfCollectionCreate,
            core::ptr::null_mut(),
            &raw mut handle
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    handle
}

fn delete(object: WDFOBJECT) {
    // SAFETY: the tests pass live handles they own.
    unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, object) };
}

fn create_work_item(
    parent: WDFOBJECT,
    callback: unsafe extern "C" fn(WDFWORKITEM),
    size: u32,
) -> (NTSTATUS, WDFWORKITEM) {
    let mut config = WDF_WORKITEM_CONFIG {
        Size: size,
        EvtWorkItemFunc: Some(callback),
        AutomaticSerialization: 0,
    };
    let mut attributes = attributes(parent);
    let mut handle: WDFWORKITEM = core::ptr::null_mut();
    // SAFETY: valid config, attributes and out pointer.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfWorkItemCreate,
            &raw mut config,
            &raw mut attributes,
            &raw mut handle
        )
    };
    (status, handle)
}

fn create_timer(
    parent: WDFOBJECT,
    callback: unsafe extern "C" fn(WDFTIMER),
    size: u32,
    period: u32,
    level: wdk_sys::WDF_EXECUTION_LEVEL,
) -> (NTSTATUS, WDFTIMER) {
    let mut config = WDF_TIMER_CONFIG {
        Size: size,
        EvtTimerFunc: Some(callback),
        Period: period,
        ..WDF_TIMER_CONFIG::default()
    };
    let mut attributes = attributes(parent);
    attributes.ExecutionLevel = level;
    let mut handle: WDFTIMER = core::ptr::null_mut();
    // SAFETY: valid config, attributes and out pointer.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfTimerCreate,
            &raw mut config,
            &raw mut attributes,
            &raw mut handle
        )
    };
    (status, handle)
}

const WORK_ITEM_CONFIG_SIZE: u32 = size_of::<WDF_WORKITEM_CONFIG>() as u32;
const TIMER_CONFIG_SIZE: u32 = size_of::<WDF_TIMER_CONFIG>() as u32;
const INHERIT: wdk_sys::WDF_EXECUTION_LEVEL =
    _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent;

/// Tells the test thread that a callback happened (and what it saw).
static EVENTS: Mutex<Option<mpsc::Sender<u32>>> = Mutex::new(None);

fn listen() -> mpsc::Receiver<u32> {
    let (sender, receiver) = mpsc::channel();
    *EVENTS.lock().unwrap_or_else(PoisonError::into_inner) = Some(sender);
    receiver
}

fn signal(value: u32) {
    if let Some(sender) = EVENTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
    {
        let _ = sender.send(value);
    }
}

fn irql() -> u32 {
    // SAFETY: no preconditions.
    u32::from(unsafe { wdk_sys::ntddk::KeGetCurrentIrql() })
}

unsafe extern "C" fn report_irql(_work_item: WDFWORKITEM) {
    signal(irql());
}

#[test]
fn work_item_runs_at_passive_and_knows_its_parent() {
    let session = Session::begin();
    let events = listen();
    let parent = collection();
    let (status, item) = create_work_item(parent.cast(), report_irql, WORK_ITEM_CONFIG_SIZE);
    assert_eq!(status, STATUS_SUCCESS);
    // SAFETY: live handle.
    let reported = unsafe { call_unsafe_wdf_function_binding!(WdfWorkItemGetParentObject, item) };
    assert_eq!(reported, parent.cast());
    // Enqueue at DISPATCH (allowed); the callback still runs at PASSIVE.
    // SAFETY: live handle.
    sim::at_irql(DISPATCH, || unsafe {
        call_unsafe_wdf_function_binding!(WdfWorkItemEnqueue, item);
    });
    assert_eq!(
        events.recv_timeout(WAIT),
        Ok(0),
        "EvtWorkItemFunc runs at PASSIVE_LEVEL"
    );
    delete(parent.cast());
    session.end();
}

#[test]
fn flush_at_dispatch_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::IRQL_TOO_HIGH);
    let parent = collection();
    let (_, item) = create_work_item(parent.cast(), report_irql, WORK_ITEM_CONFIG_SIZE);
    // SAFETY: live handle.
    sim::at_irql(DISPATCH, || unsafe {
        call_unsafe_wdf_function_binding!(WdfWorkItemFlush, item);
    });
    let reports = sim::verifier::take_reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].rule, rules::IRQL_TOO_HIGH);
    assert!(reports[0].object.contains("WdfWorkItemFlush"));
    delete(parent.cast());
    session.end();
}

static SELF_FLUSHED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn flush_self(work_item: WDFWORKITEM) {
    // SAFETY: the framework passes the live work item.
    unsafe { call_unsafe_wdf_function_binding!(WdfWorkItemFlush, work_item) };
    SELF_FLUSHED.fetch_add(1, Ordering::SeqCst);
    signal(1);
}

#[test]
fn flush_from_own_callback_is_reported_not_a_deadlock() {
    let mut session = Session::begin();
    session.expect_violation(rules::WAIT_FOR_OWN_CALLBACK);
    let events = listen();
    let parent = collection();
    let (_, item) = create_work_item(parent.cast(), flush_self, WORK_ITEM_CONFIG_SIZE);
    // SAFETY: live handle.
    unsafe { call_unsafe_wdf_function_binding!(WdfWorkItemEnqueue, item) };
    assert_eq!(events.recv_timeout(WAIT), Ok(1), "the callback returned");
    session.wait_idle();
    let reports = sim::verifier::take_reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].rule, rules::WAIT_FOR_OWN_CALLBACK);
    assert!(reports[0].object.starts_with("WDFWORKITEM"));
    delete(parent.cast());
    session.end();
}

unsafe extern "C" fn delete_self_then_enqueue(work_item: WDFWORKITEM) {
    // SAFETY: the framework passes the live work item; it holds a reference during the call.
    unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, work_item.cast()) };
    // SAFETY: still valid: the framework's reference keeps it until this callback returns.
    unsafe { call_unsafe_wdf_function_binding!(WdfWorkItemEnqueue, work_item) };
    signal(2);
}

#[test]
fn work_item_deleted_in_its_callback_survives_until_return_and_rejects_enqueue() {
    let mut session = Session::begin();
    session.expect_violation(rules::USE_WHILE_DELETING);
    let events = listen();
    let parent = collection();
    let (_, item) = create_work_item(
        parent.cast(),
        delete_self_then_enqueue,
        WORK_ITEM_CONFIG_SIZE,
    );
    let live = sim::counters().live_objects;
    // SAFETY: live handle.
    unsafe { call_unsafe_wdf_function_binding!(WdfWorkItemEnqueue, item) };
    assert_eq!(events.recv_timeout(WAIT), Ok(2));
    session.wait_idle();
    assert_eq!(
        sim::counters().live_objects,
        live - 1,
        "destroyed once the callback returned"
    );
    let reports = sim::verifier::take_reports();
    assert_eq!(
        reports.iter().map(|r| r.rule).collect::<Vec<_>>(),
        vec![rules::USE_WHILE_DELETING]
    );
    delete(parent.cast());
    session.end();
}

#[test]
fn bad_config_sizes_are_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::BAD_STRUCTURE_SIZE);
    let parent = collection();
    let (status, item) = create_work_item(parent.cast(), report_irql, WORK_ITEM_CONFIG_SIZE - 8);
    assert_eq!(status, STATUS_INFO_LENGTH_MISMATCH);
    assert!(item.is_null());
    let (status, timer) = create_timer(parent.cast(), count_tick, 12, 0, INHERIT);
    assert_eq!(status, STATUS_INFO_LENGTH_MISMATCH);
    assert!(timer.is_null());
    // The KMDF 1.7 and 1.11 layouts are still accepted.
    for size in [24, 32] {
        let (status, timer) = create_timer(parent.cast(), count_tick, size, 0, INHERIT);
        assert_eq!(status, STATUS_SUCCESS, "size {size}");
        delete(timer.cast());
    }
    let reports = sim::verifier::take_reports();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(reports.iter().all(|r| r.rule == rules::BAD_STRUCTURE_SIZE));
    assert_eq!(sim::counters().live_objects, 1, "only the parent is alive");
    delete(parent.cast());
    session.end();
}

#[test]
fn missing_parent_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::PARENT_REQUIRED);
    let (status, item) =
        create_work_item(core::ptr::null_mut(), report_irql, WORK_ITEM_CONFIG_SIZE);
    assert_eq!(
        status.cast_unsigned(),
        0xC020_0212,
        "STATUS_WDF_PARENT_NOT_SPECIFIED"
    );
    assert!(item.is_null());
    let (status, timer) = create_timer(
        core::ptr::null_mut(),
        count_tick,
        TIMER_CONFIG_SIZE,
        0,
        INHERIT,
    );
    assert_eq!(status.cast_unsigned(), 0xC020_0212);
    assert!(timer.is_null());
    let reports = sim::verifier::take_reports();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(reports.iter().all(|r| r.rule == rules::PARENT_REQUIRED));
    session.end();
}

static TICKS: AtomicU32 = AtomicU32::new(0);

unsafe extern "C" fn count_tick(_timer: WDFTIMER) {
    TICKS.fetch_add(1, Ordering::SeqCst);
    signal(irql());
}

#[test]
fn timer_runs_at_dispatch_by_default_and_passive_on_request() {
    let session = Session::begin();
    let events = listen();
    let parent = collection();
    let (_, dpc) = create_timer(parent.cast(), count_tick, TIMER_CONFIG_SIZE, 0, INHERIT);
    // SAFETY: live handle.
    let reported = unsafe { call_unsafe_wdf_function_binding!(WdfTimerGetParentObject, dpc) };
    assert_eq!(reported, parent.cast());
    // SAFETY: live handle.
    let was_queued = unsafe { call_unsafe_wdf_function_binding!(WdfTimerStart, dpc, -10_000) };
    assert_eq!(was_queued, 0);
    assert_eq!(events.recv_timeout(WAIT), Ok(DISPATCH_LEVEL));
    let (status, passive) = create_timer(
        parent.cast(),
        count_tick,
        TIMER_CONFIG_SIZE,
        0,
        _WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive,
    );
    assert_eq!(status, STATUS_SUCCESS);
    // An absolute due time in the past fires at once.
    // SAFETY: live handle.
    let _ = unsafe { call_unsafe_wdf_function_binding!(WdfTimerStart, passive, 1) };
    assert_eq!(events.recv_timeout(WAIT), Ok(0));
    delete(parent.cast());
    session.end();
}

#[test]
fn passive_periodic_timer_is_not_supported() {
    let mut session = Session::begin();
    session.expect_violation(rules::INVALID_ARGUMENT);
    let parent = collection();
    let (status, timer) = create_timer(
        parent.cast(),
        count_tick,
        TIMER_CONFIG_SIZE,
        10,
        _WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive,
    );
    assert_eq!(status, STATUS_NOT_SUPPORTED);
    assert!(timer.is_null());
    assert_eq!(sim::verifier::take_reports().len(), 1);
    delete(parent.cast());
    session.end();
}

#[test]
fn timer_stop_with_wait_at_dispatch_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::IRQL_TOO_HIGH);
    let parent = collection();
    let (_, timer) = create_timer(parent.cast(), count_tick, TIMER_CONFIG_SIZE, 0, INHERIT);
    // SAFETY: live handle.
    let _ = unsafe { call_unsafe_wdf_function_binding!(WdfTimerStart, timer, -600_000_000) };
    // SAFETY: live handle.
    let stopped = sim::at_irql(DISPATCH, || unsafe {
        call_unsafe_wdf_function_binding!(WdfTimerStop, timer, 1)
    });
    assert_eq!(stopped, 0, "rejected: nothing stopped");
    let reports = sim::verifier::take_reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].rule, rules::IRQL_TOO_HIGH);
    // Without waiting, DISPATCH is fine, and the timer was still queued.
    // SAFETY: live handle.
    let stopped = sim::at_irql(DISPATCH, || unsafe {
        call_unsafe_wdf_function_binding!(WdfTimerStop, timer, 0)
    });
    assert_eq!(stopped, 1);
    // The farthest relative due time is accepted (it never comes).
    // SAFETY: live handle.
    let was_queued = unsafe { call_unsafe_wdf_function_binding!(WdfTimerStart, timer, i64::MIN) };
    assert_eq!(was_queued, 0);
    delete(parent.cast());
    session.end();
}

unsafe extern "C" fn stop_self_with_wait(timer: WDFTIMER) {
    // SAFETY: the framework passes the live timer.
    let _ = unsafe { call_unsafe_wdf_function_binding!(WdfTimerStop, timer, 1) };
    signal(3);
}

#[test]
fn timer_stop_with_wait_from_own_callback_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::WAIT_FOR_OWN_CALLBACK);
    let events = listen();
    let parent = collection();
    let (_, timer) = create_timer(
        parent.cast(),
        stop_self_with_wait,
        TIMER_CONFIG_SIZE,
        0,
        _WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive,
    );
    // SAFETY: live handle.
    let _ = unsafe { call_unsafe_wdf_function_binding!(WdfTimerStart, timer, -1) };
    assert_eq!(events.recv_timeout(WAIT), Ok(3));
    session.wait_idle();
    let reports = sim::verifier::take_reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].rule, rules::WAIT_FOR_OWN_CALLBACK);
    assert!(reports[0].object.starts_with("WDFTIMER"));
    delete(parent.cast());
    session.end();
}

#[test]
fn restarted_timer_does_not_fire_stale() {
    let session = Session::begin();
    let events = listen();
    TICKS.store(0, Ordering::SeqCst);
    let parent = collection();
    let (_, timer) = create_timer(parent.cast(), count_tick, TIMER_CONFIG_SIZE, 0, INHERIT);
    // Due in 20 ms, then moved to 150 ms: only the second due time fires.
    // SAFETY: live handle.
    let first = unsafe { call_unsafe_wdf_function_binding!(WdfTimerStart, timer, -200_000) };
    // SAFETY: live handle.
    let second = unsafe { call_unsafe_wdf_function_binding!(WdfTimerStart, timer, -1_500_000) };
    assert_eq!((first, second), (0, 1), "the restart found it queued");
    let started = std::time::Instant::now();
    assert!(events.recv_timeout(WAIT).is_ok());
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "the stale 20 ms expiry did not fire"
    );
    assert!(
        events.recv_timeout(Duration::from_millis(200)).is_err(),
        "fired once"
    );
    assert_eq!(TICKS.load(Ordering::SeqCst), 1);
    delete(parent.cast());
    session.end();
}

#[test]
fn collection_bad_index_is_reported_and_returns_null() {
    let mut session = Session::begin();
    session.expect_violation(rules::COLLECTION_ITEM_NOT_FOUND);
    let list = collection();
    let member = collection();
    // SAFETY: live handles.
    let status =
        unsafe { call_unsafe_wdf_function_binding!(WdfCollectionAdd, list, member.cast()) };
    assert_eq!(status, STATUS_SUCCESS);
    // SAFETY: live handle.
    let found = unsafe { call_unsafe_wdf_function_binding!(WdfCollectionGetItem, list, 0) };
    assert_eq!(found, member.cast());
    // SAFETY: live handle.
    let missing = unsafe { call_unsafe_wdf_function_binding!(WdfCollectionGetItem, list, 1) };
    assert!(missing.is_null());
    // SAFETY: live handle.
    unsafe { call_unsafe_wdf_function_binding!(WdfCollectionRemoveItem, list, 7) };
    // SAFETY: live handles.
    unsafe { call_unsafe_wdf_function_binding!(WdfCollectionRemove, list, list.cast()) };
    // SAFETY: live handle.
    let count = unsafe { call_unsafe_wdf_function_binding!(WdfCollectionGetCount, list) };
    assert_eq!(count, 1, "failed removals removed nothing");
    let reports = sim::verifier::take_reports();
    assert_eq!(reports.len(), 3, "{reports:?}");
    assert!(
        reports
            .iter()
            .all(|r| r.rule == rules::COLLECTION_ITEM_NOT_FOUND)
    );
    delete(member.cast());
    delete(list.cast());
    assert_eq!(
        sim::counters().live_objects,
        0,
        "deleting the list dropped its reference"
    );
    session.end();
}
