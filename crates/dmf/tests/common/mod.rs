//! Shared test scaffolding: a minimal driver with one device, and an I/O target opened on a
//! programmable target device.

#![allow(dead_code, reason = "each test file uses part of it")]

pub mod fault_sweep;
pub mod schedules;

use std::time::{Duration, Instant};

use dmf::wdf::io_target::{IoTarget, RemoveCallbacks};
use wdk_sys::WDFOBJECT;
use wdk_sys::sim::pnp::{Device, Driver};

/// A driver whose devices have no callbacks of their own.
struct PlainDriver;

impl dmf::wdf::entry::DriverCallbacks for PlainDriver {
    fn device_add(
        _driver: dmf::wdf::driver::Driver,
        init: dmf::wdf::device::DeviceInit,
    ) -> Result<(), dmf::wdf::NtStatus> {
        init.create(None).map(|_| ())
    }
}

dmf::driver_entry!(PlainDriver);

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
