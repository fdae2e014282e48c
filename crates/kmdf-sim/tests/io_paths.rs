//! Less common paths: sends that ignore the target state, stop-and-wait, the driver's own
//! removal callbacks on a target (veto and remove-complete), send-and-forget from a queue, a
//! sequential power-managed queue, requests cancelled while on a queue, and the verifier rule
//! for I/O still in flight when a device is removed.
// The simulation's own copy of the binding macro counts as a local macro here, so its internal
// unsafe blocks are linted as if they were this file's.
#![allow(
    clippy::missing_safety_doc,
    clippy::multiple_unsafe_ops_per_block,
    clippy::undocumented_unsafe_blocks
)]

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wdk_sys::sim::pnp::{Device, Driver};
use wdk_sys::sim::target::{ProgrammableTarget, Response};
use wdk_sys::sim::user::File;
use wdk_sys::sim::{Session, verifier::rules};
use wdk_sys::*;

mod common;

use common::{
    create_driver, create_target, device_create, driver_config, open_by_name_with, reuse, state,
};

static FORWARD_TARGET: AtomicUsize = AtomicUsize::new(0);
static SEQUENTIAL: AtomicUsize = AtomicUsize::new(0);
static PRESENTED: AtomicUsize = AtomicUsize::new(0);
static IN_CALLBACK: AtomicUsize = AtomicUsize::new(0);
static MAX_IN_CALLBACK: AtomicUsize = AtomicUsize::new(0);
static CANCELED_ON_QUEUE: AtomicUsize = AtomicUsize::new(0);
static OWNED: Mutex<Vec<usize>> = Mutex::new(Vec::new());
const LINK: &str = "\\??\\IoPathsDevice";

unsafe extern "C" fn sequential_io(
    _queue: WDFQUEUE,
    request: WDFREQUEST,
    _output: usize,
    _input: usize,
    code: u32,
) {
    let now = IN_CALLBACK.fetch_add(1, Ordering::SeqCst) + 1;
    MAX_IN_CALLBACK.fetch_max(now, Ordering::SeqCst);
    PRESENTED.fetch_add(1, Ordering::SeqCst);
    if code == 1 {
        // Forward to the lower target as is.
        let target = FORWARD_TARGET.load(Ordering::SeqCst) as WDFIOTARGET;
        let mut options = WDF_REQUEST_SEND_OPTIONS {
            Size: size_of::<WDF_REQUEST_SEND_OPTIONS>() as u32,
            Flags: _WDF_REQUEST_SEND_OPTIONS_FLAGS::WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET as u32,
            Timeout: 0,
        };
        if unsafe {
            call_unsafe_wdf_function_binding!(WdfRequestSend, request, target, &raw mut options)
        } == 0
        {
            let status = unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetStatus, request) };
            unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, status) };
        }
    } else {
        // Keep it: the test completes it later (one at a time, sequential queue).
        OWNED.lock().unwrap().push(request as usize);
    }
    IN_CALLBACK.fetch_sub(1, Ordering::SeqCst);
}

unsafe extern "C" fn canceled_on_queue(_queue: WDFQUEUE, request: WDFREQUEST) {
    CANCELED_ON_QUEUE.fetch_add(1, Ordering::SeqCst);
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, STATUS_CANCELLED) };
}

unsafe extern "C" fn device_add(_driver: WDFDRIVER, mut init: PWDFDEVICE_INIT) -> NTSTATUS {
    let (status, device) = device_create(&mut init);
    if status < 0 {
        return status;
    }
    let wide: Vec<u16> = LINK.encode_utf16().collect();
    let name = UNICODE_STRING {
        Length: (wide.len() * 2) as u16,
        MaximumLength: (wide.len() * 2) as u16,
        Buffer: wide.as_ptr().cast_mut(),
    };
    // Only the first device gets the link and the queue.
    if SEQUENTIAL.load(Ordering::SeqCst) == 0 {
        assert_eq!(
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfDeviceCreateSymbolicLink,
                    device,
                    &raw const name
                )
            },
            STATUS_SUCCESS
        );
        let mut config = WDF_IO_QUEUE_CONFIG {
            Size: size_of::<WDF_IO_QUEUE_CONFIG>() as u32,
            DispatchType: _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchSequential,
            PowerManaged: _WDF_TRI_STATE::WdfTrue,
            DefaultQueue: 1,
            EvtIoDeviceControl: Some(sequential_io),
            EvtIoCanceledOnQueue: Some(canceled_on_queue),
            ..Default::default()
        };
        let mut queue: WDFQUEUE = core::ptr::null_mut();
        assert_eq!(
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfIoQueueCreate,
                    device,
                    &raw mut config,
                    WDF_NO_OBJECT_ATTRIBUTES,
                    &raw mut queue
                )
            },
            STATUS_SUCCESS
        );
        SEQUENTIAL.store(queue as usize, Ordering::SeqCst);
    }
    STATUS_SUCCESS
}

unsafe extern "C" fn driver_entry(
    driver_object: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let mut config = driver_config(Some(device_add));
    unsafe { create_driver(driver_object, registry_path, &mut config) }
}

fn reset() {
    for value in [
        &FORWARD_TARGET,
        &SEQUENTIAL,
        &PRESENTED,
        &IN_CALLBACK,
        &MAX_IN_CALLBACK,
        &CANCELED_ON_QUEUE,
    ] {
        value.store(0, Ordering::SeqCst);
    }
    OWNED.lock().unwrap().clear();
}

fn boot() -> (Driver, Device) {
    reset();
    let driver = Driver::load(driver_entry).unwrap();
    let device = driver.add_device().unwrap();
    device.start().unwrap();
    (driver, device)
}

fn open_target(device: WDFDEVICE, name: &str, params: WDF_IO_TARGET_OPEN_PARAMS) -> WDFIOTARGET {
    let target = create_target(device);
    assert_eq!(open_by_name_with(target, name, params), STATUS_SUCCESS);
    target
}

static COMPLETIONS: AtomicUsize = AtomicUsize::new(0);
static LAST_STATUS: AtomicI32 = AtomicI32::new(0);

unsafe extern "C" fn count_completion(
    request: WDFREQUEST,
    _t: WDFIOTARGET,
    _p: PWDF_REQUEST_COMPLETION_PARAMS,
    _c: WDFCONTEXT,
) {
    LAST_STATUS.store(
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetStatus, request) },
        Ordering::SeqCst,
    );
    COMPLETIONS.fetch_add(1, Ordering::SeqCst);
}

fn send(target: WDFIOTARGET, request: WDFREQUEST, flags: i32) -> bool {
    let formatted = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetFormatRequestForIoctl,
            target,
            request,
            5,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut()
        )
    };
    assert_eq!(formatted, STATUS_SUCCESS);
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestSetCompletionRoutine,
            request,
            Some(count_completion),
            core::ptr::null_mut()
        );
    };
    let mut options = WDF_REQUEST_SEND_OPTIONS {
        Size: size_of::<WDF_REQUEST_SEND_OPTIONS>() as u32,
        Flags: flags.cast_unsigned(),
        Timeout: 0,
    };
    unsafe {
        call_unsafe_wdf_function_binding!(WdfRequestSend, request, target, &raw mut options) != 0
    }
}

fn wait_completions(count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while COMPLETIONS.load(Ordering::SeqCst) < count {
        assert!(std::time::Instant::now() < deadline);
        std::thread::yield_now();
    }
}

fn new_request(target: WDFIOTARGET) -> WDFREQUEST {
    let mut request: WDFREQUEST = core::ptr::null_mut();
    assert_eq!(
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestCreate,
                WDF_NO_OBJECT_ATTRIBUTES,
                target,
                &raw mut request
            )
        },
        STATUS_SUCCESS
    );
    request
}

#[test]
fn ignore_target_state_and_stop_waiting_for_sent_io() {
    let session = Session::begin();
    COMPLETIONS.store(0, Ordering::SeqCst);
    let lower = Arc::new(ProgrammableTarget::create("\\??\\IoPathsIgnoreState"));
    lower.set_responder(|_| Response::Hold);
    let (driver, device) = boot();
    let target = open_target(
        device.handle(),
        lower.symbolic_link(),
        WDF_IO_TARGET_OPEN_PARAMS::default(),
    );
    let request = new_request(target);
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetStop,
            target,
            _WDF_IO_TARGET_SENT_IO_ACTION::WdfIoTargetLeaveSentIoPending
        );
    };
    assert!(send(
        target,
        request,
        _WDF_REQUEST_SEND_OPTIONS_FLAGS::WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE
    ));
    assert!(
        lower.wait_held(1, Duration::from_secs(5)),
        "delivered although the target is stopped"
    );
    // KMDF keeps a request sent with IGNORE_TARGET_STATE on its own list
    // (`FxIoTarget::SubmitLocked` puts it on m_IgnoredIoListHead, not m_SentIoListHead), and
    // `FxIoTarget::GotoStopState` waits for and cancels only m_SentIoListHead: neither stop
    // waits for it nor cancels it.
    for action in [
        _WDF_IO_TARGET_SENT_IO_ACTION::WdfIoTargetWaitForSentIoToComplete,
        _WDF_IO_TARGET_SENT_IO_ACTION::WdfIoTargetCancelSentIo,
    ] {
        unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetStop, target, action) };
        assert_eq!(COMPLETIONS.load(Ordering::SeqCst), 0, "stop {action}");
        assert_eq!(lower.held(), 1, "stop {action}");
    }
    assert_eq!(lower.counters().cancelled, 0);
    assert_eq!(lower.release_all(&Response::status(STATUS_SUCCESS)), 1);
    wait_completions(1);

    // A request on the sent list is waited for: Stop returns after its completion routine.
    assert_eq!(
        unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetStart, target) },
        STATUS_SUCCESS
    );
    reuse(request);
    assert!(send(target, request, 0));
    assert!(lower.wait_held(1, Duration::from_secs(5)));
    let releaser = {
        let lower = lower.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            lower.release_all(&Response::status(STATUS_SUCCESS))
        })
    };
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetStop,
            target,
            _WDF_IO_TARGET_SENT_IO_ACTION::WdfIoTargetWaitForSentIoToComplete
        );
    };
    assert_eq!(
        COMPLETIONS.load(Ordering::SeqCst),
        2,
        "stop waited for the completion routine"
    );
    assert_eq!(releaser.join().unwrap(), 1);
    assert_eq!(LAST_STATUS.load(Ordering::SeqCst), STATUS_SUCCESS);
    unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, request.cast()) };
    unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetClose, target) };
    device.remove();
    driver.unload();
    session.end();
}

static QUERY_REMOVES: AtomicUsize = AtomicUsize::new(0);
static REMOVE_COMPLETES: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn veto_query_remove(_target: WDFIOTARGET) -> NTSTATUS {
    QUERY_REMOVES.fetch_add(1, Ordering::SeqCst);
    STATUS_UNSUCCESSFUL
}

unsafe extern "C" fn on_remove_complete(target: WDFIOTARGET) {
    REMOVE_COMPLETES.fetch_add(1, Ordering::SeqCst);
    unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetClose, target) };
}

#[test]
fn driver_removal_callbacks_veto_and_close_on_remove_complete() {
    let session = Session::begin();
    QUERY_REMOVES.store(0, Ordering::SeqCst);
    REMOVE_COMPLETES.store(0, Ordering::SeqCst);
    COMPLETIONS.store(0, Ordering::SeqCst);
    let lower = ProgrammableTarget::create("\\??\\IoPathsCallbacks");
    lower.set_responder(|_| Response::Hold);
    let (driver, device) = boot();
    let params = WDF_IO_TARGET_OPEN_PARAMS {
        EvtIoTargetQueryRemove: Some(veto_query_remove),
        EvtIoTargetRemoveComplete: Some(on_remove_complete),
        ..Default::default()
    };
    let target = open_target(device.handle(), lower.symbolic_link(), params);
    assert!(!lower.query_remove(), "the driver vetoed");
    assert_eq!(QUERY_REMOVES.load(Ordering::SeqCst), 1);
    assert_eq!(state(target), _WDF_IO_TARGET_STATE::WdfIoTargetStarted);
    let request = new_request(target);
    assert!(send(target, request, 0));
    assert!(lower.wait_held(1, Duration::from_secs(5)));
    lower.surprise_remove();
    assert_eq!(REMOVE_COMPLETES.load(Ordering::SeqCst), 1);
    wait_completions(1);
    assert_eq!(LAST_STATUS.load(Ordering::SeqCst), STATUS_CANCELLED);
    assert_eq!(state(target), _WDF_IO_TARGET_STATE::WdfIoTargetClosed);
    reuse(request);
    // A closed target has no stack size: FxRequestBase::ValidateTarget fails the format.
    assert_eq!(
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoTargetFormatRequestForIoctl,
                target,
                request,
                5,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                core::ptr::null_mut()
            )
        },
        STATUS_INVALID_DEVICE_STATE,
        "a closed target fails formats"
    );
    unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, request.cast()) };
    device.remove();
    driver.unload();
    session.end();
}

#[test]
fn send_and_forget_from_a_sequential_power_managed_queue() {
    let session = Session::begin();
    let lower = ProgrammableTarget::create("\\??\\IoPathsForget");
    lower.set_responder(|r| Response::data(&[r.input.len() as u8; 2]));
    let (driver, device) = boot();
    let target = open_target(
        device.handle(),
        lower.symbolic_link(),
        WDF_IO_TARGET_OPEN_PARAMS::default(),
    );
    FORWARD_TARGET.store(target as usize, Ordering::SeqCst);
    let file = File::open(LINK).unwrap();
    let mut output = [0u8; 2];
    assert_eq!(file.device_io_control(1, &[1, 2, 3], &mut output), Ok(2));
    assert_eq!(output, [3, 3]);
    assert_eq!(lower.counters().ioctls, 1);

    // Powered down, a power-managed queue holds new requests.
    device.power_down();
    let first = file.device_io_control_overlapped(2, &[], 0);
    let second = file.device_io_control_overlapped(2, &[], 0);
    // Presentation is synchronous with the send, so nothing more can arrive later.
    assert_eq!(
        PRESENTED.load(Ordering::SeqCst),
        1,
        "nothing presented while in Dx"
    );
    device.power_up().unwrap();
    // Sequential: only the first is presented until the driver completes it.
    assert_eq!(PRESENTED.load(Ordering::SeqCst), 2);
    assert_eq!(OWNED.lock().unwrap().len(), 1);
    // The second, still on the queue, is cancelled: EvtIoCanceledOnQueue completes it.
    assert!(second.cancel());
    assert_eq!(
        second.wait(Duration::from_secs(5)),
        Some((STATUS_CANCELLED, 0))
    );
    assert_eq!(CANCELED_ON_QUEUE.load(Ordering::SeqCst), 1);
    let owned = OWNED.lock().unwrap().pop().unwrap();
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestCompleteWithInformation,
            owned as WDFREQUEST,
            STATUS_SUCCESS,
            0
        );
    };
    assert_eq!(
        first.wait(Duration::from_secs(5)),
        Some((STATUS_SUCCESS, 0))
    );
    assert_eq!(MAX_IN_CALLBACK.load(Ordering::SeqCst), 1);
    drop(file);
    unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetClose, target) };
    device.remove();
    driver.unload();
    session.end();
}

#[test]
fn verifier_io_in_flight_when_the_device_is_removed() {
    let mut session = Session::begin();
    session.expect_violation(rules::IO_ALIVE_AT_REMOVE);
    COMPLETIONS.store(0, Ordering::SeqCst);
    let lower = ProgrammableTarget::create("\\??\\IoPathsAliveAtRemove");
    lower.set_responder(|_| Response::Hold);
    let (driver, device) = boot();
    let target = open_target(
        device.handle(),
        lower.symbolic_link(),
        WDF_IO_TARGET_OPEN_PARAMS::default(),
    );
    let request = new_request(target);
    assert!(send(target, request, 0));
    assert!(lower.wait_held(1, Duration::from_secs(5)));
    device.remove();
    let reports = wdk_sys::sim::verifier::take_reports();
    assert!(
        reports
            .iter()
            .any(|r| r.rule == rules::IO_ALIVE_AT_REMOVE && r.object.starts_with("WDFREQUEST")),
        "{reports:?}"
    );
    assert!(
        reports
            .iter()
            .any(|r| r.rule == rules::IO_ALIVE_AT_REMOVE && r.object.starts_with("WDFIOTARGET")),
        "{reports:?}"
    );
    // Deleting the target with the device cancelled the request, exactly once.
    wait_completions(1);
    session.wait_idle();
    assert_eq!(COMPLETIONS.load(Ordering::SeqCst), 1);
    assert_eq!(LAST_STATUS.load(Ordering::SeqCst), STATUS_CANCELLED);
    assert_eq!(lower.counters().cancelled, 1);
    unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, request.cast()) };
    driver.unload();
    session.end();
}
