//! A driver in the shape of windows-drivers-rs's sample KMDF driver (written here, not copied),
//! whose global allocator serves the heap from pool exactly as `wdk_alloc::WdkAllocator` does
//! (`ExAllocatePool2(POOL_FLAG_NON_PAGED, size, 'rust')`, `ExFreePool`), run through its whole
//! life: load, add, start, remove, unload, with its debug output captured, no verifier report and
//! no leak. The same test process's harness, standard library and simulation share that
//! allocator; only the driver's own allocations count as its pool.
//!
//! The `wdk`, `wdk-alloc` and `wdk-panic` crates themselves cannot be built in this workspace on
//! a non-Windows host (their build scripts need `wdk-build`); `dropin/` runs the same life with
//! them, against kmdf-sim under the name `wdk-sys`.
#![cfg(not(windows))]
#![allow(clippy::missing_panics_doc, reason = "tests")]

use core::alloc::{GlobalAlloc, Layout};

use wdk_sys::sim::pnp::Driver;
use wdk_sys::sim::{self, Session, verifier::rules};
use wdk_sys::{POOL_FLAG_NON_PAGED, SIZE_T, ULONG, ntddk};

/// The pool tag `wdk_alloc::WdkAllocator` uses.
const RUST_TAG: ULONG = u32::from_ne_bytes(*b"rust");

/// The heap as a kernel driver has it: non-paged pool.
struct PoolAllocator;

// SAFETY: pool blocks are 16-byte aligned, at least what every type of this test needs, and
// `ExFreePool` frees exactly what `ExAllocatePool2` returned.
unsafe impl GlobalAlloc for PoolAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: any size may be asked for; NULL on failure.
        unsafe { ntddk::ExAllocatePool2(POOL_FLAG_NON_PAGED, layout.size() as SIZE_T, RUST_TAG) }
            .cast()
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from `alloc`.
        unsafe { ntddk::ExFreePool(ptr.cast()) };
    }
}

#[global_allocator]
static GLOBAL_ALLOCATOR: PoolAllocator = PoolAllocator;

/// The driver, in the sample's style.
mod driver {
    extern crate alloc;

    use alloc::{boxed::Box, ffi::CString, format, string::String, vec::Vec};
    use core::sync::atomic::{AtomicPtr, Ordering};

    use wdk_sys::{
        DRIVER_OBJECT, NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT, ULONG, UNICODE_STRING,
        WDF_DRIVER_CONFIG, WDF_NO_HANDLE, WDF_NO_OBJECT_ATTRIBUTES, WDFDEVICE, WDFDEVICE_INIT,
        WDFDRIVER, call_unsafe_wdf_function_binding, ntddk::DbgPrint,
    };

    /// Prints one line through `DbgPrint`, as `wdk::println!` does.
    fn print(text: &str) {
        let Ok(line) = CString::new(format!("{text}\n")) else {
            return;
        };
        // SAFETY: a NUL-terminated string for `%s`.
        unsafe { DbgPrint(c"%s".as_ptr(), line.as_ptr()) };
    }

    /// Heap the driver keeps from `DriverEntry` to unload.
    static KEPT: AtomicPtr<Vec<String>> = AtomicPtr::new(core::ptr::null_mut());

    /// Whether the driver forgets to free what it kept (the leak test).
    pub(super) static LEAK: core::sync::atomic::AtomicBool =
        core::sync::atomic::AtomicBool::new(false);

    /// `DriverEntry`, with the sample's signature.
    ///
    /// # Safety
    /// Called by the I/O manager with a valid driver object and registry path.
    pub unsafe extern "system" fn driver_entry(
        driver: &mut DRIVER_OBJECT,
        registry_path: PCUNICODE_STRING,
    ) -> NTSTATUS {
        let hello = CString::new("Hello from DriverEntry\n").unwrap_or_default();
        // SAFETY: a NUL-terminated string for `%s`.
        unsafe { DbgPrint(c"%s".as_ptr(), hello.as_ptr()) };
        // As the sample does: KMDF replaces this routine in WdfDriverCreate, so it never runs.
        driver.DriverUnload = Some(driver_exit);
        let mut config = WDF_DRIVER_CONFIG {
            Size: core::mem::size_of::<WDF_DRIVER_CONFIG>() as ULONG,
            EvtDriverDeviceAdd: Some(evt_driver_device_add),
            EvtDriverUnload: Some(evt_driver_unload),
            ..WDF_DRIVER_CONFIG::default()
        };
        // SAFETY: the driver object and registry path DriverEntry received, a valid config, no
        // attributes and no handle asked for.
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
        // SAFETY: the registry path DriverEntry received is valid for its whole run.
        let path: UNICODE_STRING = unsafe { *registry_path };
        // SAFETY: `Buffer` holds `Length` bytes of UTF-16.
        let units =
            unsafe { core::slice::from_raw_parts(path.Buffer, usize::from(path.Length) / 2) };
        let path = String::from_utf16_lossy(units);
        print(&format!(
            "Driver Entry Complete! Registry Parameter Key: {path}"
        ));
        let kept = Box::new(alloc::vec![path]);
        KEPT.store(Box::into_raw(kept), Ordering::Release);
        status
    }

    extern "C" fn evt_driver_device_add(
        _driver: WDFDRIVER,
        mut device_init: *mut WDFDEVICE_INIT,
    ) -> NTSTATUS {
        print("EvtDriverDeviceAdd Entered!");
        let mut device: WDFDEVICE = WDF_NO_HANDLE.cast();
        // SAFETY: the init EvtDriverDeviceAdd received, no attributes, a handle out pointer.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceCreate,
                &raw mut device_init,
                WDF_NO_OBJECT_ATTRIBUTES,
                &raw mut device,
            )
        };
        print(&format!("WdfDeviceCreate NTSTATUS: {status:#x}"));
        let kept = KEPT.load(Ordering::Acquire);
        if !kept.is_null() {
            // SAFETY: set in DriverEntry, freed only at unload; callbacks do not overlap.
            unsafe { &mut *kept }.push(String::from("device added"));
        }
        status
    }

    extern "C" fn evt_driver_unload(_driver: WDFDRIVER) {
        let kept = KEPT.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if !kept.is_null() {
            // SAFETY: allocated by Box::into_raw in DriverEntry, taken back once.
            let kept = unsafe { Box::from_raw(kept) };
            print(&format!("EvtDriverUnload: {} entries kept", kept.len()));
            if LEAK.load(Ordering::Relaxed) {
                Box::leak(kept);
            }
        }
    }

    extern "C" fn driver_exit(_driver: *mut DRIVER_OBJECT) {
        print("Goodbye World!");
    }
}

fn run_life() -> Vec<String> {
    let driver = Driver::load_with(|object, path| {
        // SAFETY: the driver's entry point, with the driver object and registry path.
        unsafe { driver::driver_entry(object, path) }
    })
    .expect("DriverEntry succeeds");
    let device = driver.add_device().expect("device added");
    device.start().expect("device started");
    device.remove();
    driver.unload();
    sim::take_debug_output()
}

#[test]
fn the_sample_shaped_driver_runs_its_life_on_pool_heap() {
    let session = Session::begin();
    let output = run_life();
    session.wait_idle();
    assert_eq!(
        output,
        [
            "Hello from DriverEntry\n",
            "Driver Entry Complete! Registry Parameter Key: \
             \\Registry\\Machine\\System\\CurrentControlSet\\Services\\SimDriver\n",
            "EvtDriverDeviceAdd Entered!\n",
            "WdfDeviceCreate NTSTATUS: 0x0\n",
            "EvtDriverUnload: 2 entries kept\n",
        ]
    );
    assert!(sim::verifier::take_reports().is_empty());
    session.check_leaks();
    let leaks = sim::verifier::take_reports();
    assert!(leaks.is_empty(), "no leak: {leaks:?}");
    assert_eq!(sim::counters().live_pool_allocations, 0);
    assert!(
        sim::counters().allocations > 0,
        "the driver's heap was pool"
    );
    session.end();
}

#[test]
fn heap_the_driver_leaks_is_reported_as_its_pool() {
    let mut session = Session::begin();
    session.expect_violation(rules::POOL_LEAKED);
    driver::LEAK.store(true, core::sync::atomic::Ordering::Relaxed);
    let _ = run_life();
    driver::LEAK.store(false, core::sync::atomic::Ordering::Relaxed);
    session.wait_idle();
    session.check_leaks();
    let reports = sim::verifier::take_reports();
    assert!(!reports.is_empty(), "the leaked Box and its contents");
    assert!(
        reports
            .iter()
            .all(|r| r.rule == rules::POOL_LEAKED
                && r.to_string().contains(&format!("{RUST_TAG:#x}"))),
        "{reports:?}"
    );
}

/// A system thread's routine: driver code, whose heap is the driver's pool.
unsafe extern "C" fn thread_routine(_context: wdk_sys::PVOID) {
    let words: Vec<String> = ["system", "thread"]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(words.join(" "), "system thread");
}

#[test]
fn system_threads_run_driver_code_on_pool_heap() {
    let session = Session::begin();
    sim::at_irql(wdk_sys::PASSIVE_LEVEL as u8, || {
        let mut handle: wdk_sys::HANDLE = core::ptr::null_mut();
        // SAFETY: a valid out pointer; the routine needs no context.
        let status = unsafe {
            ntddk::PsCreateSystemThread(
                &raw mut handle,
                0,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                Some(thread_routine),
                core::ptr::null_mut(),
            )
        };
        assert_eq!(status, wdk_sys::STATUS_SUCCESS);
        let mut object: wdk_sys::PVOID = core::ptr::null_mut();
        // SAFETY: reads the thread object type pointer.
        let thread_type_pointer = unsafe { wdk_sys::PsThreadType };
        // SAFETY: it points at the thread object type.
        let thread_type = unsafe { *thread_type_pointer };
        // SAFETY: a valid handle and out pointer.
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
        assert_eq!(status, wdk_sys::STATUS_SUCCESS);
        // SAFETY: a referenced thread object; no timeout.
        let status =
            unsafe { ntddk::KeWaitForSingleObject(object, 0, 0, 0, core::ptr::null_mut()) };
        assert_eq!(status, wdk_sys::STATUS_SUCCESS);
        // SAFETY: the reference and the handle taken above, released once.
        unsafe { ntddk::ObfDereferenceObject(object) };
        // SAFETY: as above.
        unsafe { ntddk::ZwClose(handle) };
    });
    session.wait_idle();
    session.check_leaks();
    let reports = sim::verifier::take_reports();
    assert!(reports.is_empty(), "{reports:?}");
    session.end();
}
