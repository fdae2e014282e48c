//! Requests sent through I/O targets to the programmable target: round trips, synchronous
//! sends, timeouts, cancel-versus-complete races, stop/purge/close, removal of an opened target,
//! and the verifier rules of requests.
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
use wdk_sys::sim::target::{MajorFunction, ProgrammableTarget, Response};
use wdk_sys::sim::{Session, verifier::rules};
use wdk_sys::*;

mod common;

use common::{
    create_memory, create_request, create_target, delete, driver_entry, open_by_name, reuse, state,
};

struct Host {
    driver: Option<Driver>,
    device: Option<Device>,
}

impl Host {
    fn new() -> Self {
        let driver = Driver::load(driver_entry).expect("driver loads");
        let device = driver.add_device().expect("device added");
        device.start().expect("device starts");
        Self {
            driver: Some(driver),
            device: Some(device),
        }
    }

    fn device(&self) -> WDFDEVICE {
        self.device.as_ref().unwrap().handle()
    }

    fn open(&self, name: &str) -> WDFIOTARGET {
        let target = create_target(self.device());
        let status = open_by_name(target, name);
        assert_eq!(status, STATUS_SUCCESS, "open {name}");
        target
    }

    fn finish(mut self) {
        self.device.take().unwrap().remove();
        self.driver.take().unwrap().unload();
    }
}

/// What completion routines record.
#[derive(Default)]
struct Log {
    completions: AtomicUsize,
    status: AtomicI32,
    information: AtomicUsize,
    irql: AtomicUsize,
    thread_is_test: Mutex<Option<bool>>,
    ioctl: AtomicUsize,
}

static TEST_THREAD: Mutex<Option<std::thread::ThreadId>> = Mutex::new(None);

unsafe extern "C" fn record(
    request: WDFREQUEST,
    _target: WDFIOTARGET,
    params: PWDF_REQUEST_COMPLETION_PARAMS,
    context: WDFCONTEXT,
) {
    // SAFETY: the context is the `Log` the test keeps alive until completion.
    let log = unsafe { &*context.cast::<Log>() };
    // SAFETY: the framework passes valid parameters.
    let params = unsafe { &*params };
    // SAFETY: a valid request.
    let status = unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetStatus, request) };
    // SAFETY: reading the union member matching the type.
    let io_status = unsafe { params.IoStatus.__bindgen_anon_1.Status };
    assert_eq!(status, io_status);
    log.status.store(status, Ordering::SeqCst);
    log.information
        .store(params.IoStatus.Information as usize, Ordering::SeqCst);
    if params.Type == _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControl {
        // SAFETY: the Ioctl member is valid for this type.
        log.ioctl.store(
            unsafe { params.Parameters.Ioctl.IoControlCode } as usize,
            Ordering::SeqCst,
        );
    }
    // SAFETY: no arguments.
    log.irql.store(
        usize::from(unsafe { wdk_sys::ntddk::KeGetCurrentIrql() }),
        Ordering::SeqCst,
    );
    *log.thread_is_test.lock().unwrap() =
        Some(Some(std::thread::current().id()) == *TEST_THREAD.lock().unwrap());
    log.completions.fetch_add(1, Ordering::SeqCst);
}

fn wait_for(log: &Log, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log.completions.load(Ordering::SeqCst) < count {
        assert!(
            std::time::Instant::now() < deadline,
            "completion did not arrive"
        );
        std::thread::yield_now();
    }
}

fn send_ioctl(
    request: WDFREQUEST,
    target: WDFIOTARGET,
    input: WDFMEMORY,
    output: WDFMEMORY,
    log: &Log,
    options: Option<WDF_REQUEST_SEND_OPTIONS>,
) -> bool {
    // SAFETY: valid handles.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetFormatRequestForIoctl,
            target,
            request,
            0x22_2004,
            input,
            core::ptr::null_mut(),
            output,
            core::ptr::null_mut()
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    // SAFETY: the log outlives the request's completion.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestSetCompletionRoutine,
            request,
            Some(record),
            core::ptr::from_ref(log).cast_mut().cast()
        );
    }
    let mut options = options;
    let options_ptr = options
        .as_mut()
        .map_or(core::ptr::null_mut(), core::ptr::from_mut);
    // SAFETY: valid handles and options.
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestSend, request, target, options_ptr) != 0 }
}

/// KMDF runs a completion routine in the context that completed the request
/// (`FxRequestBase::CompleteSubmitted`, fxrequestbase.cpp, called from the IRP's completion):
/// a target that answers in its dispatch routine completes the sender before `WdfRequestSend`
/// returns, on the sender's thread and at its IRQL.
#[test]
fn async_ioctl_round_trip_completes_inline_on_the_senders_thread() {
    let session = Session::begin();
    *TEST_THREAD.lock().unwrap() = Some(std::thread::current().id());
    let device = ProgrammableTarget::create("\\??\\SimTargetRoundTrip");
    device.set_responder(|received| {
        let mut answer = received.input.clone();
        answer.reverse();
        Response::data(&answer)
    });
    let host = Host::new();
    let target = host.open(device.symbolic_link());
    assert_eq!(state(target), _WDF_IO_TARGET_STATE::WdfIoTargetStarted);
    let (input, input_buffer) = create_memory(4);
    let (output, output_buffer) = create_memory(8);
    // SAFETY: the buffer holds 4 bytes.
    unsafe { core::ptr::copy_nonoverlapping([1u8, 2, 3, 4].as_ptr(), input_buffer, 4) };
    let request = create_request(target);
    let log = Log::default();
    for round in 0..3 {
        if round > 0 {
            reuse(request);
        }
        assert!(send_ioctl(request, target, input, output, &log, None));
        assert_eq!(
            log.completions.load(Ordering::SeqCst),
            round + 1,
            "the completion routine ran before WdfRequestSend returned"
        );
    }
    assert_eq!(log.status.load(Ordering::SeqCst), STATUS_SUCCESS);
    assert_eq!(log.information.load(Ordering::SeqCst), 4);
    assert_eq!(log.ioctl.load(Ordering::SeqCst), 0x22_2004);
    assert_eq!(log.irql.load(Ordering::SeqCst), PASSIVE_LEVEL as usize);
    assert_eq!(*log.thread_is_test.lock().unwrap(), Some(true));
    // SAFETY: the buffer holds 8 bytes.
    let out = unsafe { core::slice::from_raw_parts(output_buffer, 8) };
    assert_eq!(&out[..4], &[4, 3, 2, 1]);
    assert_eq!(device.counters().ioctls, 3);
    assert_eq!(
        device.last_received().unwrap().major,
        MajorFunction::DeviceControl
    );
    delete(request.cast());
    delete(input.cast());
    delete(output.cast());
    host.finish();
    session.end();
}

#[test]
fn synchronous_ioctl_with_buffer_descriptors_returns_bytes() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\SimTargetSync");
    device.set_responder(|received| {
        Response::data(&[received.input[0] + 1; 3]).after(Duration::from_millis(5))
    });
    let host = Host::new();
    let target = host.open(device.symbolic_link());
    let mut input = [41u8; 2];
    let mut output = [0u8; 6];
    let mut input_descriptor = WDF_MEMORY_DESCRIPTOR {
        Type: _WDF_MEMORY_DESCRIPTOR_TYPE::WdfMemoryDescriptorTypeBuffer,
        ..Default::default()
    };
    input_descriptor.u.BufferType.Buffer = input.as_mut_ptr().cast();
    input_descriptor.u.BufferType.Length = 2;
    let mut output_descriptor = WDF_MEMORY_DESCRIPTOR {
        Type: _WDF_MEMORY_DESCRIPTOR_TYPE::WdfMemoryDescriptorTypeBuffer,
        ..Default::default()
    };
    output_descriptor.u.BufferType.Buffer = output.as_mut_ptr().cast();
    output_descriptor.u.BufferType.Length = 6;
    let mut bytes: ULONG_PTR = 0;
    // SAFETY: valid target, descriptors over live buffers, valid out pointer.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetSendIoctlSynchronously,
            target,
            core::ptr::null_mut(),
            7,
            &raw mut input_descriptor,
            &raw mut output_descriptor,
            core::ptr::null_mut(),
            &raw mut bytes
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(bytes, 3);
    assert_eq!(output, [42, 42, 42, 0, 0, 0]);
    host.finish();
    session.end();
}

#[test]
fn timeouts_complete_with_io_timeout_async_and_sync() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\SimTargetTimeout");
    device.set_responder(|_| Response::Hold);
    let host = Host::new();
    let target = host.open(device.symbolic_link());
    let (output, _) = create_memory(4);
    let request = create_request(target);
    let log = Log::default();
    let options = WDF_REQUEST_SEND_OPTIONS {
        Size: size_of::<WDF_REQUEST_SEND_OPTIONS>() as u32,
        Flags: _WDF_REQUEST_SEND_OPTIONS_FLAGS::WDF_REQUEST_SEND_OPTION_TIMEOUT as u32,
        Timeout: -20 * 10_000, // 20 ms, relative
    };
    assert!(send_ioctl(
        request,
        target,
        core::ptr::null_mut(),
        output,
        &log,
        Some(options)
    ));
    wait_for(&log, 1);
    assert_eq!(log.status.load(Ordering::SeqCst), STATUS_IO_TIMEOUT);
    assert_eq!(device.counters().cancelled, 1);

    // Synchronous with a timeout.
    reuse(request);
    let mut sync = options;
    sync.Flags |= _WDF_REQUEST_SEND_OPTIONS_FLAGS::WDF_REQUEST_SEND_OPTION_SYNCHRONOUS as u32;
    assert!(send_ioctl(
        request,
        target,
        core::ptr::null_mut(),
        output,
        &log,
        Some(sync)
    ));
    // SAFETY: a valid request.
    assert_eq!(
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetStatus, request) },
        STATUS_IO_TIMEOUT
    );
    // WdfRequestSend with WDF_REQUEST_SEND_OPTION_SYNCHRONOUS submits with
    // SubmitSyncCallCompletion (fxrequestapi.cpp), and FxIoTarget::_SyncCompletionRoutine
    // (fxiotarget.cpp) calls the driver's routine before it wakes the sender.
    assert_eq!(
        log.completions.load(Ordering::SeqCst),
        2,
        "a synchronous WdfRequestSend calls the completion routine"
    );
    assert_eq!(log.status.load(Ordering::SeqCst), STATUS_IO_TIMEOUT);
    assert_eq!(device.counters().cancelled, 2);
    delete(request.cast());
    delete(output.cast());
    host.finish();
    session.end();
}

#[test]
fn cancel_versus_complete_races_complete_each_request_exactly_once() {
    let session = Session::begin();
    let device = Arc::new(ProgrammableTarget::create("\\??\\SimTargetRace"));
    device.set_responder(|_| Response::Hold);
    let host = Host::new();
    let target = host.open(device.symbolic_link());
    let (output, _) = create_memory(4);
    let request = create_request(target);
    let log = Log::default();
    let rounds = 200;
    let mut cancelled = 0;
    for round in 0..rounds {
        if round > 0 {
            reuse(request);
        }
        assert!(send_ioctl(
            request,
            target,
            core::ptr::null_mut(),
            output,
            &log,
            None
        ));
        assert!(device.wait_held(1, Duration::from_secs(5)));
        let releaser = {
            let device = device.clone();
            std::thread::spawn(move || device.release_all(&Response::data(&[1])))
        };
        let handle = request as usize;
        // Alternate which side starts first.
        if round % 2 == 0 {
            std::thread::yield_now();
        }
        // SAFETY: a valid request.
        let cancel_initiated = unsafe {
            call_unsafe_wdf_function_binding!(WdfRequestCancelSentRequest, handle as WDFREQUEST)
        } != 0;
        let released_count = releaser.join().unwrap();
        wait_for(&log, round + 1);
        let status = log.status.load(Ordering::SeqCst);
        assert!(
            status == STATUS_SUCCESS || status == STATUS_CANCELLED,
            "status {status:#x}"
        );
        if status == STATUS_CANCELLED {
            cancelled += 1;
            assert!(cancel_initiated);
            assert_eq!(released_count, 0);
        } else {
            assert_eq!(released_count, 1);
        }
    }
    session.wait_idle();
    assert_eq!(log.completions.load(Ordering::SeqCst), rounds);
    let counters = device.counters();
    assert_eq!(counters.answered + counters.cancelled, rounds as u64);
    assert_eq!(counters.cancelled, cancelled);
    delete(request.cast());
    delete(output.cast());
    host.finish();
    session.end();
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario through every target state"
)]
fn stop_purge_and_close_with_requests_in_flight() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\SimTargetStates");
    device.set_responder(|_| Response::Hold);
    let host = Host::new();
    let target = host.open(device.symbolic_link());
    let (output, _) = create_memory(4);
    let first = create_request(target);
    let second = create_request(target);
    let log = Log::default();

    // Stop, leaving sent I/O pending: the held request stays; a new one is queued by the target.
    assert!(send_ioctl(
        first,
        target,
        core::ptr::null_mut(),
        output,
        &log,
        None
    ));
    assert!(device.wait_held(1, Duration::from_secs(5)));
    // SAFETY: a valid target.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetStop,
            target,
            _WDF_IO_TARGET_SENT_IO_ACTION::WdfIoTargetLeaveSentIoPending
        );
    };
    assert_eq!(state(target), _WDF_IO_TARGET_STATE::WdfIoTargetStopped);
    assert!(
        send_ioctl(second, target, core::ptr::null_mut(), output, &log, None),
        "a stopped target accepts and queues"
    );
    assert_eq!(device.counters().received, 1);
    // Start delivers the queued request.
    // SAFETY: a valid target.
    assert_eq!(
        unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetStart, target) },
        STATUS_SUCCESS
    );
    assert!(device.wait_held(2, Duration::from_secs(5)));
    // Stop and cancel sent I/O: both complete cancelled before Stop returns.
    // SAFETY: a valid target.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetStop,
            target,
            _WDF_IO_TARGET_SENT_IO_ACTION::WdfIoTargetCancelSentIo
        );
    };
    assert_eq!(log.completions.load(Ordering::SeqCst), 2);
    assert_eq!(log.status.load(Ordering::SeqCst), STATUS_CANCELLED);

    // A request queued on a stopped target is failed by purge with
    // STATUS_WDF_DEVICE_REMOVED_NOT_SENT (KMDF `FxIoTarget::CompletePendedRequest`); then
    // sends fail.
    reuse(first);
    assert!(send_ioctl(
        first,
        target,
        core::ptr::null_mut(),
        output,
        &log,
        None
    ));
    // SAFETY: a valid target.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetPurge,
            target,
            _WDF_IO_TARGET_PURGE_IO_ACTION::WdfIoTargetPurgeIoAndWait
        );
    };
    assert_eq!(log.completions.load(Ordering::SeqCst), 3);
    assert_eq!(
        log.status.load(Ordering::SeqCst).cast_unsigned(),
        0xC020_0206,
        "STATUS_WDF_DEVICE_REMOVED_NOT_SENT"
    );
    assert_eq!(state(target), _WDF_IO_TARGET_STATE::WdfIoTargetPurged);
    reuse(first);
    assert!(!send_ioctl(
        first,
        target,
        core::ptr::null_mut(),
        output,
        &log,
        None
    ));
    // SAFETY: a valid request.
    assert_eq!(
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetStatus, first) },
        STATUS_INVALID_DEVICE_STATE
    );

    // Started again, then closed with a request in flight.
    // SAFETY: a valid target.
    assert_eq!(
        unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetStart, target) },
        STATUS_SUCCESS
    );
    reuse(first);
    assert!(send_ioctl(
        first,
        target,
        core::ptr::null_mut(),
        output,
        &log,
        None
    ));
    assert!(device.wait_held(1, Duration::from_secs(5)));
    // SAFETY: a valid target.
    unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetClose, target) };
    assert_eq!(log.completions.load(Ordering::SeqCst), 4);
    assert_eq!(state(target), _WDF_IO_TARGET_STATE::WdfIoTargetClosed);
    assert_eq!(device.open_count(), 0);
    reuse(first);
    // A closed target fails the format (FxRequestBase::ValidateTarget, fxrequestbase.cpp).
    // SAFETY: valid handles.
    let formatted = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetFormatRequestForIoctl,
            target,
            first,
            0x22_2004,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            output,
            core::ptr::null_mut()
        )
    };
    assert_eq!(formatted, STATUS_INVALID_DEVICE_STATE);
    assert_eq!(device.counters().cancelled, 3);
    delete(first.cast());
    delete(second.cast());
    delete(output.cast());
    host.finish();
    session.end();
}

#[test]
fn surprise_removal_closes_an_opened_target_and_cancels_its_io() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\SimTargetSurprise");
    device.set_responder(|_| Response::Hold);
    let host = Host::new();
    let target = host.open(device.symbolic_link());
    let (output, _) = create_memory(4);
    let request = create_request(target);
    let log = Log::default();
    assert!(send_ioctl(
        request,
        target,
        core::ptr::null_mut(),
        output,
        &log,
        None
    ));
    assert!(device.wait_held(1, Duration::from_secs(5)));
    device.surprise_remove();
    wait_for(&log, 1);
    assert_eq!(log.status.load(Ordering::SeqCst), STATUS_CANCELLED);
    assert_eq!(state(target), _WDF_IO_TARGET_STATE::WdfIoTargetClosed);
    delete(request.cast());
    delete(output.cast());
    host.finish();
    session.end();
}

#[test]
fn query_remove_closes_for_query_remove_and_cancel_reopens() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\SimTargetQuery");
    let host = Host::new();
    let target = host.open(device.symbolic_link());
    assert!(device.query_remove_then_cancel());
    assert_eq!(
        state(target),
        _WDF_IO_TARGET_STATE::WdfIoTargetStarted,
        "reopened after remove-canceled"
    );
    assert_eq!(device.open_count(), 1);
    assert!(device.query_remove());
    assert_eq!(state(target), _WDF_IO_TARGET_STATE::WdfIoTargetClosed);
    assert_eq!(device.open_count(), 0);
    host.finish();
    session.end();
}

#[test]
fn verifier_formatting_or_deleting_a_pending_request_and_sending_a_deleted_one() {
    let mut session = Session::begin();
    session.expect_violation(rules::REQUEST_STILL_PENDING);
    session.expect_violation(rules::INVALID_DELETE);
    session.expect_violation(rules::INVALID_HANDLE);
    let device = ProgrammableTarget::create("\\??\\SimTargetVerifier");
    device.set_responder(|_| Response::Hold);
    let host = Host::new();
    let target = host.open(device.symbolic_link());
    let (output, _) = create_memory(4);
    let request = create_request(target);
    let log = Log::default();
    assert!(send_ioctl(
        request,
        target,
        core::ptr::null_mut(),
        output,
        &log,
        None
    ));
    assert!(device.wait_held(1, Duration::from_secs(5)));
    // SAFETY: valid handles; formatting a pending request is the misuse under test.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetFormatRequestForRead,
            target,
            request,
            output,
            core::ptr::null_mut(),
            core::ptr::null_mut()
        )
    };
    assert_eq!(status, STATUS_INVALID_DEVICE_STATE);
    delete(request.cast());
    let reports = wdk_sys::sim::verifier::take_reports();
    assert!(
        reports
            .iter()
            .any(|r| r.rule == rules::REQUEST_STILL_PENDING)
    );
    assert!(reports.iter().any(|r| r.rule == rules::INVALID_DELETE));
    assert_eq!(device.release_all(&Response::status(STATUS_SUCCESS)), 1);
    wait_for(&log, 1);
    session.wait_idle();
    delete(request.cast());
    // Sending the deleted request.
    // SAFETY: the handle is stale on purpose.
    let sent = unsafe {
        call_unsafe_wdf_function_binding!(WdfRequestSend, request, target, core::ptr::null_mut())
    };
    assert_eq!(sent, 0);
    let reports = wdk_sys::sim::verifier::take_reports();
    assert!(reports.iter().any(|r| r.rule == rules::INVALID_HANDLE));
    delete(output.cast());
    host.finish();
    session.end();
}

#[test]
fn verifier_request_never_deleted_is_reported_at_unload() {
    let mut session = Session::begin();
    session.expect_violation(rules::IO_ALIVE_AT_REMOVE);
    let host = Host::new();
    let _leaked = create_request(core::ptr::null_mut());
    host.finish();
    let reports = wdk_sys::sim::verifier::take_reports();
    assert!(
        reports
            .iter()
            .any(|r| r.rule == rules::IO_ALIVE_AT_REMOVE && r.object.starts_with("WDFREQUEST"))
    );
    session.end();
}
