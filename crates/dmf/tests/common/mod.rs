//! Shared test scaffolding: a minimal driver with one device, and an I/O target opened on a
//! programmable target device.

#![allow(dead_code, reason = "each test file uses part of it")]

use std::time::{Duration, Instant};

use dmf::wdf::io_target::{IoTarget, RemoveCallbacks};
use wdk_sys::sim::pnp::{Device, Driver};
use wdk_sys::{
    NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT, PWDFDEVICE_INIT, WDF_DRIVER_CONFIG,
    WDF_NO_OBJECT_ATTRIBUTES, WDFDEVICE, WDFDRIVER, WDFOBJECT, call_unsafe_wdf_function_binding,
};

unsafe extern "C" fn device_add(_driver: WDFDRIVER, mut init: PWDFDEVICE_INIT) -> NTSTATUS {
    let mut device: WDFDEVICE = core::ptr::null_mut();
    // SAFETY: the framework's init and a valid out pointer.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreate,
            &raw mut init,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut device
        )
    }
}

unsafe extern "C" fn driver_entry(
    driver_object: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let mut config = WDF_DRIVER_CONFIG {
        Size: size_of::<WDF_DRIVER_CONFIG>() as u32,
        EvtDriverDeviceAdd: Some(device_add),
        ..Default::default()
    };
    // SAFETY: arguments as DriverEntry received them.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDriverCreate,
            driver_object,
            registry_path,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut config,
            core::ptr::null_mut()
        )
    }
}

/// A loaded driver with one started device.
pub fn boot() -> (Driver, Device) {
    let driver = Driver::load(driver_entry).expect("driver loads");
    let device = driver.add_device().expect("device added");
    device.start().expect("device starts");
    (driver, device)
}

/// The device as a module parent.
pub fn parent(device: &Device) -> WDFOBJECT {
    device.handle().cast()
}

/// An I/O target on `device`, opened on the symbolic link `name`.
pub fn open_target(device: &Device, name: &str) -> IoTarget {
    let target = IoTarget::create(dmf::wdf::device::Device::from_raw(device.handle()))
        .expect("target created");
    let wide: Vec<u16> = name.encode_utf16().collect();
    target
        .open_by_name(&wide, RemoveCallbacks::default())
        .expect("target opened");
    target
}

/// Polls `condition` until it holds (bounded: panics after 10 s).
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}
