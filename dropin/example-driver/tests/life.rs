//! The example driver's whole life on kmdf-sim: load, add, start, remove, unload, with its debug
//! output captured, no verifier report and no leak; its heap is pool through `WdkAllocator`.
#![cfg(not(windows))]

use wdk_sys::sim::{self, Session, pnp::Driver};

#[test]
fn the_driver_runs_its_life() {
    let session = Session::begin();
    let driver = Driver::load_with(|object, path| {
        // SAFETY: the driver's entry point, called with the driver object and registry path.
        unsafe { example_kmdf_driver::driver_entry(object, path) }
    })
    .expect("DriverEntry succeeds");
    let device = driver.add_device().expect("device added");
    device.start().expect("device started");
    device.remove();
    driver.unload();
    session.wait_idle();
    assert_eq!(
        sim::take_debug_output().concat(),
        "Example driver loading, step 1\n\
         DriverEntry done: 0x0\n\
         EvtDriverDeviceAdd Entered!\n\
         WdfDeviceCreate NTSTATUS: 0x0\n\
         EvtDriverUnload: entry, device\n"
    );
    assert!(sim::counters().allocations > 0, "the driver's heap is pool");
    session.check_leaks();
    let reports = sim::verifier::take_reports();
    assert!(reports.is_empty(), "{reports:?}");
    assert_eq!(sim::counters().live_pool_allocations, 0);
    session.end();
}
