//! A KMDF driver in the style of windows-drivers-rs's sample: `DriverEntry` prints, creates the
//! `WDFDRIVER` and keeps some heap; `EvtDriverDeviceAdd` creates a device and a spin lock through
//! `wdk`; `EvtDriverUnload` frees the heap. Its heap is pool (`wdk_alloc::WdkAllocator`) and it
//! panics through `wdk-panic`, exactly as it would in a `.sys`.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

#[cfg(not(test))]
extern crate wdk_panic;

use alloc::{boxed::Box, string::String, vec::Vec};
use core::sync::atomic::{AtomicPtr, Ordering};

use wdk::println;
#[cfg(not(test))]
use wdk_alloc::WdkAllocator;
use wdk_sys::{
    DRIVER_OBJECT, NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT, ULONG, WDF_DRIVER_CONFIG,
    WDF_NO_HANDLE, WDF_NO_OBJECT_ATTRIBUTES, WDF_OBJECT_ATTRIBUTES, WDFDEVICE, WDFDEVICE_INIT,
    WDFDRIVER, call_unsafe_wdf_function_binding, ntddk::DbgPrint,
};

#[cfg(not(test))]
#[global_allocator]
static GLOBAL_ALLOCATOR: WdkAllocator = WdkAllocator;

/// What the driver keeps on the heap between `DriverEntry` and unload.
static EVENTS: AtomicPtr<Vec<String>> = AtomicPtr::new(core::ptr::null_mut());

fn note(event: &str) {
    let events = EVENTS.load(Ordering::Acquire);
    if !events.is_null() {
        // SAFETY: set in DriverEntry and taken back only at unload; the framework does not run
        // this driver's callbacks concurrently.
        unsafe { &mut *events }.push(String::from(event));
    }
}

/// `DriverEntry`.
///
/// # Safety
/// Called by the I/O manager with a valid driver object and registry path.
#[cfg_attr(not(test), unsafe(export_name = "DriverEntry"))]
pub unsafe extern "system" fn driver_entry(
    driver: &mut DRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: a NUL-terminated format and string.
    unsafe {
        DbgPrint(
            c"%s %d\n".as_ptr(),
            c"Example driver loading, step".as_ptr(),
            1,
        )
    };
    EVENTS.store(Box::into_raw(Box::new(Vec::new())), Ordering::Release);
    let mut config = WDF_DRIVER_CONFIG {
        Size: core::mem::size_of::<WDF_DRIVER_CONFIG>() as ULONG,
        EvtDriverDeviceAdd: Some(evt_driver_device_add),
        EvtDriverUnload: Some(evt_driver_unload),
        ..WDF_DRIVER_CONFIG::default()
    };
    // SAFETY: the driver object and registry path DriverEntry received, a valid config.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDriverCreate,
            driver as PDRIVER_OBJECT,
            registry_path,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut config,
            WDF_NO_HANDLE.cast::<WDFDRIVER>(),
        )
    };
    note("entry");
    println!("DriverEntry done: {status:#x}");
    status
}

extern "C" fn evt_driver_device_add(
    _driver: WDFDRIVER,
    mut device_init: *mut WDFDEVICE_INIT,
) -> NTSTATUS {
    println!("EvtDriverDeviceAdd Entered!");
    let mut device: WDFDEVICE = WDF_NO_HANDLE.cast();
    // SAFETY: the init this callback received, no attributes, a handle out pointer.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreate,
            &raw mut device_init,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut device,
        )
    };
    let mut attributes = WDF_OBJECT_ATTRIBUTES {
        Size: core::mem::size_of::<WDF_OBJECT_ATTRIBUTES>() as ULONG,
        ParentObject: device.cast(),
        ..WDF_OBJECT_ATTRIBUTES::default()
    };
    match wdk::wdf::SpinLock::create(&mut attributes) {
        Ok(lock) => {
            lock.acquire();
            note("device");
            lock.release();
        }
        Err(error) => println!("SpinLock::create failed: {error:#x}"),
    }
    println!("WdfDeviceCreate NTSTATUS: {status:#x}");
    status
}

extern "C" fn evt_driver_unload(_driver: WDFDRIVER) {
    let events = EVENTS.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !events.is_null() {
        // SAFETY: from Box::into_raw in DriverEntry, taken back once.
        let events = unsafe { Box::from_raw(events) };
        println!("EvtDriverUnload: {}", events.join(", "));
    }
}
