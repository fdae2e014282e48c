//! `DbgPrint` (C-variadic, with the kernel's conversions) and the WDM driver object `DriverEntry`
//! receives: its fields, and what `WdfDriverCreate` does to its `DriverUnload`.
#![cfg(not(windows))]
#![allow(clippy::missing_panics_doc, reason = "tests")]

use core::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::atomic::{AtomicU32, Ordering};

use wdk_sys::sim::pnp::Driver;
use wdk_sys::sim::{self, Session, verifier::rules};
use wdk_sys::{
    _WDF_DRIVER_INIT_FLAGS, DRIVER_OBJECT, NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT, ULONG,
    UNICODE_STRING, WDF_DRIVER_CONFIG, WDF_NO_HANDLE, WDF_NO_OBJECT_ATTRIBUTES, WDFDRIVER,
    call_unsafe_wdf_function_binding, ntddk::DbgPrint,
};

fn printed(session: &Session) -> String {
    session.wait_idle();
    sim::take_debug_output().concat()
}

#[test]
fn dbgprint_formats_the_kernel_conversions() {
    let session = Session::begin();
    let wide: Vec<u16> = "wide ✓".encode_utf16().chain([0]).collect();
    let counted_units: Vec<u16> = "counted".encode_utf16().collect();
    let counted = UNICODE_STRING {
        Length: (counted_units.len() * 2) as u16,
        MaximumLength: (counted_units.len() * 2) as u16,
        Buffer: counted_units.as_ptr().cast_mut(),
    };
    // SAFETY: every argument matches its conversion, as DbgPrint's contract requires.
    let status = unsafe {
        DbgPrint(
            c"[%s] %d %i %u %x %X %c %% %5d|%-4d|%04x %.3s\n".as_ptr(),
            c"text".as_ptr(),
            -42 as c_int,
            7 as c_int,
            4_000_000_000u32 as c_uint,
            0xbeef as c_uint,
            0xbeef as c_uint,
            c_int::from(b'Z'),
            12 as c_int,
            3 as c_int,
            0xa as c_uint,
            c"truncated".as_ptr(),
        )
    };
    assert_eq!(status, 0);
    // SAFETY: as above: 64-bit, 32-bit `l`, pointer, wide string, counted string, NULL string.
    unsafe {
        DbgPrint(
            c"%I64d %lld %lu %p %ws %wZ %s\n".as_ptr(),
            -9_000_000_000i64,
            9_000_000_000i64,
            0xFFFF_FFFFu32 as c_uint,
            0x1234usize as *const c_void,
            wide.as_ptr(),
            &raw const counted,
            core::ptr::null::<c_char>(),
        );
    }
    // SAFETY: strings for `%s`, with a width.
    unsafe {
        wdk_sys::ntddk::DbgPrintEx(
            77,
            0,
            c"[%6s|%-4s|%.2ws]\n".as_ptr(),
            c"ab".as_ptr(),
            c"cd".as_ptr(),
            wide.as_ptr(),
        );
    }
    assert_eq!(
        printed(&session),
        "[text] -42 7 4000000000 beef BEEF Z %    12|3   |000a tru\n\
         -9000000000 9000000000 4294967295 0000000000001234 wide ✓ counted (null)\n\
         [    ab|cd  |wi]\n"
    );
}

#[test]
fn dbgprint_cuts_output_at_512_bytes() {
    let session = Session::begin();
    let long = format!("{}\0", "x".repeat(1000));
    // SAFETY: a NUL-terminated string for `%s`.
    unsafe { DbgPrint(c"%s".as_ptr(), long.as_ptr().cast::<c_char>()) };
    assert_eq!(printed(&session).len(), 511);
}

static UNLOADS: AtomicU32 = AtomicU32::new(0);

unsafe extern "C" fn own_unload(_driver: PDRIVER_OBJECT) {
    UNLOADS.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn evt_unload(_driver: WDFDRIVER) {
    UNLOADS.fetch_add(100, Ordering::SeqCst);
}

fn create_driver(driver: &mut DRIVER_OBJECT, path: PCUNICODE_STRING, flags: ULONG) -> NTSTATUS {
    let mut config = WDF_DRIVER_CONFIG {
        Size: size_of::<WDF_DRIVER_CONFIG>() as ULONG,
        EvtDriverUnload: Some(evt_unload),
        DriverInitFlags: flags,
        ..WDF_DRIVER_CONFIG::default()
    };
    // SAFETY: a valid driver object, registry path and config; no handle is asked for.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDriverCreate,
            driver as PDRIVER_OBJECT,
            path,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut config,
            WDF_NO_HANDLE.cast::<WDFDRIVER>(),
        )
    }
}

#[test]
fn driver_entry_gets_a_full_driver_object() {
    let _session = Session::begin();
    let driver = Driver::load_with(|driver, path| {
        assert_eq!(driver.Type, 4, "IO_TYPE_DRIVER");
        assert_eq!(
            usize::from(driver.Size.cast_unsigned()),
            size_of::<DRIVER_OBJECT>()
        );
        assert!(driver.DriverUnload.is_none());
        assert!(driver.MajorFunction.iter().all(Option::is_none));
        assert!(!driver.DriverExtension.is_null());
        // SAFETY: the extension the I/O manager set up, live while the driver is loaded.
        let extension = unsafe { &*driver.DriverExtension };
        assert!(core::ptr::eq(extension.DriverObject, driver));
        assert!(extension.AddDevice.is_none());
        assert_eq!(
            extension.ServiceKeyName.Length,
            2 * "SimDriver".len() as u16
        );
        let status = create_driver(driver, path, 0);
        assert!(driver.DriverUnload.is_some(), "KMDF's unload routine");
        assert!(driver.MajorFunction.iter().all(Option::is_some));
        // SAFETY: as above.
        assert!(unsafe { &*driver.DriverExtension }.AddDevice.is_some());
        status
    })
    .expect("loads");
    driver.unload();
}

#[test]
fn a_driver_unload_set_before_wdf_driver_create_is_replaced_by_kmdfs() {
    let _session = Session::begin();
    UNLOADS.store(0, Ordering::SeqCst);
    let driver = Driver::load_with(|driver, path| {
        driver.DriverUnload = Some(own_unload);
        create_driver(driver, path, 0)
    })
    .expect("loads");
    driver.unload();
    assert_eq!(
        UNLOADS.load(Ordering::SeqCst),
        100,
        "only EvtDriverUnload runs"
    );
}

#[test]
fn a_driver_unload_set_after_wdf_driver_create_skips_kmdfs_unload() {
    let mut session = Session::begin();
    session.expect_violation(rules::INVALID_ARGUMENT);
    UNLOADS.store(0, Ordering::SeqCst);
    let driver = Driver::load_with(|driver, path| {
        let status = create_driver(driver, path, 0);
        driver.DriverUnload = Some(own_unload);
        status
    })
    .expect("loads");
    driver.unload();
    assert_eq!(
        UNLOADS.load(Ordering::SeqCst),
        1,
        "EvtDriverUnload never ran"
    );
    let reports = sim::verifier::take_reports();
    assert!(
        reports
            .iter()
            .any(|r| r.rule == rules::INVALID_ARGUMENT && r.to_string().contains("replaced")),
        "{reports:?}"
    );
}

#[test]
fn no_dispatch_override_leaves_the_driver_object_alone() {
    let _session = Session::begin();
    UNLOADS.store(0, Ordering::SeqCst);
    let flags = _WDF_DRIVER_INIT_FLAGS::WdfDriverInitNoDispatchOverride.cast_unsigned();
    let driver = Driver::load_with(|driver, path| {
        driver.DriverUnload = Some(own_unload);
        let status = create_driver(driver, path, flags);
        assert!(driver.MajorFunction.iter().all(Option::is_none));
        status
    })
    .expect("loads");
    driver.unload();
    assert_eq!(UNLOADS.load(Ordering::SeqCst), 1);
}

fn version_available(driver: WDFDRIVER, major: ULONG, minor: ULONG) -> bool {
    let mut params = wdk_sys::WDF_DRIVER_VERSION_AVAILABLE_PARAMS {
        Size: size_of::<wdk_sys::WDF_DRIVER_VERSION_AVAILABLE_PARAMS>() as ULONG,
        MajorVersion: major,
        MinorVersion: minor,
    };
    // SAFETY: a live driver handle and valid params.
    let available = unsafe {
        call_unsafe_wdf_function_binding!(WdfDriverIsVersionAvailable, driver, &raw mut params)
    };
    available != 0
}

#[test]
fn version_checks_and_the_verifier_break_point() {
    let session = Session::begin();
    let driver = Driver::load_with(|driver, path| create_driver(driver, path, 0)).expect("loads");
    assert!(version_available(driver.handle(), 1, 33));
    assert!(version_available(driver.handle(), 1, 9));
    assert!(!version_available(driver.handle(), 1, 35));
    assert!(!version_available(driver.handle(), 2, 0));
    // SAFETY: no arguments beyond the globals.
    unsafe { call_unsafe_wdf_function_binding!(WdfVerifierDbgBreakPoint) };
    assert!(printed(&session).contains("WdfVerifierDbgBreakPoint"));
    driver.unload();
}
