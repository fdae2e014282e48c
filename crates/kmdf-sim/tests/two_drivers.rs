//! Two drivers loaded in one simulation: objects a driver creates without naming a parent belong
//! to that driver (its default parent), whichever driver was loaded first, and work it schedules
//! keeps running as its code. Unloading one driver never deletes the other's objects.
#![allow(clippy::missing_panics_doc, reason = "tests")]

use std::sync::atomic::{AtomicUsize, Ordering};

use wdk_sys::sim::pnp::Driver;
use wdk_sys::sim::{self, Session};
use wdk_sys::{
    _WDF_EXECUTION_LEVEL, _WDF_SYNCHRONIZATION_SCOPE, NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT,
    PWDFDEVICE_INIT, STATUS_SUCCESS, WDF_DRIVER_CONFIG, WDF_NO_HANDLE, WDF_NO_OBJECT_ATTRIBUTES,
    WDF_OBJECT_ATTRIBUTES, WDF_WORKITEM_CONFIG, WDFDEVICE, WDFDRIVER, WDFSPINLOCK, WDFWORKITEM,
    call_unsafe_wdf_function_binding,
};

mod common;

use common::{create_spin_lock, device_create};

/// The spin lock each driver creates in its device-add callback, with no parent named.
static FIRST_LOCK: AtomicUsize = AtomicUsize::new(0);
static SECOND_LOCK: AtomicUsize = AtomicUsize::new(0);
/// The spin lock the second driver creates from its work item, with no parent named.
static SECOND_WORK_LOCK: AtomicUsize = AtomicUsize::new(0);
static SECOND_WORK_ITEM: AtomicUsize = AtomicUsize::new(0);

fn create_device(init: PWDFDEVICE_INIT) -> WDFDEVICE {
    let mut init = init;
    let (status, device) = device_create(&mut init);
    assert_eq!(status, STATUS_SUCCESS);
    device
}

unsafe extern "C" fn first_device_add(_driver: WDFDRIVER, init: PWDFDEVICE_INIT) -> NTSTATUS {
    create_device(init);
    FIRST_LOCK.store(create_spin_lock() as usize, Ordering::SeqCst);
    STATUS_SUCCESS
}

unsafe extern "C" fn second_work(_item: WDFWORKITEM) {
    SECOND_WORK_LOCK.store(create_spin_lock() as usize, Ordering::SeqCst);
}

unsafe extern "C" fn second_device_add(_driver: WDFDRIVER, init: PWDFDEVICE_INIT) -> NTSTATUS {
    let device = create_device(init);
    SECOND_LOCK.store(create_spin_lock() as usize, Ordering::SeqCst);
    let mut config = WDF_WORKITEM_CONFIG {
        Size: size_of::<WDF_WORKITEM_CONFIG>() as u32,
        EvtWorkItemFunc: Some(second_work),
        AutomaticSerialization: 0,
    };
    let mut attributes = WDF_OBJECT_ATTRIBUTES {
        Size: size_of::<WDF_OBJECT_ATTRIBUTES>() as u32,
        ExecutionLevel: _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent,
        SynchronizationScope: _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
        ParentObject: device.cast(),
        ..WDF_OBJECT_ATTRIBUTES::default()
    };
    let mut item: WDFWORKITEM = core::ptr::null_mut();
    // SAFETY: valid locals.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfWorkItemCreate,
            &raw mut config,
            &raw mut attributes,
            &raw mut item
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    SECOND_WORK_ITEM.store(item as usize, Ordering::SeqCst);
    STATUS_SUCCESS
}

fn entry(
    driver: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
    add: wdk_sys::PFN_WDF_DRIVER_DEVICE_ADD,
) -> NTSTATUS {
    let mut config = WDF_DRIVER_CONFIG {
        Size: size_of::<WDF_DRIVER_CONFIG>() as u32,
        EvtDriverDeviceAdd: add,
        ..WDF_DRIVER_CONFIG::default()
    };
    // SAFETY: the simulated I/O manager's arguments, a valid config.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDriverCreate,
            driver,
            registry_path,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut config,
            WDF_NO_HANDLE.cast()
        )
    }
}

unsafe extern "C" fn first_entry(driver: PDRIVER_OBJECT, path: PCUNICODE_STRING) -> NTSTATUS {
    entry(driver, path, Some(first_device_add))
}

unsafe extern "C" fn second_entry(driver: PDRIVER_OBJECT, path: PCUNICODE_STRING) -> NTSTATUS {
    entry(driver, path, Some(second_device_add))
}

fn acquire_and_release(lock: usize) {
    let lock = lock as WDFSPINLOCK;
    // SAFETY: the simulation validates the handle (a stale one is a verifier report).
    unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockAcquire, lock) };
    // SAFETY: as above.
    unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockRelease, lock) };
}

#[test]
fn unloading_one_driver_leaves_the_other_drivers_objects_alone() {
    let session = Session::begin();
    let first = Driver::load(first_entry).expect("first driver loads");
    let second = Driver::load(second_entry).expect("second driver loads");
    let first_device = first.add_device().expect("first device");
    let second_device = second.add_device().expect("second device");
    let item = SECOND_WORK_ITEM.load(Ordering::SeqCst) as WDFWORKITEM;
    // SAFETY: the work item is live; enqueue and flush at PASSIVE_LEVEL.
    unsafe { call_unsafe_wdf_function_binding!(WdfWorkItemEnqueue, item) };
    // SAFETY: as above.
    unsafe { call_unsafe_wdf_function_binding!(WdfWorkItemFlush, item) };

    // Unload the driver that was loaded first (the simulation's fallback default parent).
    first_device.remove();
    first.unload();
    let live_after_first = sim::counters().live_objects;

    // The second driver's parentless objects, made in its device-add callback and in its work
    // item, are still alive and usable: using a deleted handle would be a verifier report,
    // which fails the session.
    acquire_and_release(SECOND_LOCK.load(Ordering::SeqCst));
    acquire_and_release(SECOND_WORK_LOCK.load(Ordering::SeqCst));
    assert!(
        live_after_first >= 5,
        "second driver, device, work item and two locks"
    );

    second_device.remove();
    second.unload();
    // The work item's last framework reference goes when its job has fully finished.
    session.wait_idle();
    assert_eq!(
        sim::counters().live_objects,
        0,
        "each driver took its own objects with it"
    );
    session.end();
}
