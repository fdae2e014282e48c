//! The simulation measured against KMDF's own source (microsoft/Windows-Driver-Frameworks,
//! `src/framework/shared`): I/O target stop, purge, close and delete with sent and held
//! requests, synchronous sends against closed targets and their `BytesReturned`, memory copies
//! out of range, the driver's registry path, which I/O a device removal reports, the constants
//! of the mirrored surface, and WDF functions the simulation does not implement.
//!
//! Each test states what KMDF does and names the file and function it does it in.
// The simulation's own copy of the binding macro counts as a local macro here, so its internal
// unsafe blocks are linted as if they were this file's.
#![allow(
    clippy::missing_safety_doc,
    clippy::multiple_unsafe_ops_per_block,
    clippy::undocumented_unsafe_blocks
)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wdk_sys::sim::pnp::{Device, Driver};
use wdk_sys::sim::target::{ProgrammableTarget, Response};
use wdk_sys::sim::{self, Session, verifier::rules};
use wdk_sys::*;

mod common;

use common::{
    create_driver, create_memory, create_request, create_target, delete, driver_config,
    open_by_name, state,
};

/// `STATUS_WDF_DEVICE_REMOVED_NOT_SENT` (wdfstatus.h). wdk-sys 0.5 does not export the
/// wdfstatus.h statuses (bindgen cannot evaluate their `((NTSTATUS)0xC0200206L)` casts and
/// wdk-sys hand-writes only ntstatus.h's), so driver code defines it, as here.
const STATUS_WDF_DEVICE_REMOVED_NOT_SENT: NTSTATUS = 0xC020_0206_u32.cast_signed();

const IOCTL: u32 = 0x22_2004; // FILE_DEVICE_UNKNOWN, function 0x801, METHOD_BUFFERED

// ---------------------------------------------------------------------------------------------
// A driver with any number of devices, as the PnP manager adds them.

/// The registry path `DriverEntry` received, and what `WdfDriverGetRegistryPath` returned in
/// `EvtDriverDeviceAdd` (after `DriverEntry` returned and its string was gone).
static ENTRY_PATH: Mutex<Vec<u16>> = Mutex::new(Vec::new());
static ADD_PATH: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// Reads a NUL-terminated UTF-16 string.
fn read_wide(text: PWSTR) -> Vec<u16> {
    assert!(!text.is_null());
    let mut units = Vec::new();
    for index in 0.. {
        // SAFETY: the framework returned a NUL-terminated string; we stop at the NUL.
        let unit = unsafe { text.add(index).read() };
        if unit == 0 {
            break;
        }
        units.push(unit);
    }
    units
}

unsafe extern "C" fn device_add(driver: WDFDRIVER, init: PWDFDEVICE_INIT) -> NTSTATUS {
    // SAFETY: a valid driver handle, at PASSIVE_LEVEL.
    let path = unsafe { call_unsafe_wdf_function_binding!(WdfDriverGetRegistryPath, driver) };
    *ADD_PATH.lock().unwrap() = read_wide(path);
    // SAFETY: the framework's init, passed on.
    unsafe { common::device_add(driver, init) }
}

unsafe extern "C" fn driver_entry(
    driver_object: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: the I/O manager passes a valid counted string.
    let path = unsafe { &*registry_path };
    // SAFETY: the buffer holds `Length` bytes.
    let units = unsafe { core::slice::from_raw_parts(path.Buffer, usize::from(path.Length) / 2) };
    *ENTRY_PATH.lock().unwrap() = units.to_vec();
    let mut config = driver_config(Some(device_add));
    // SAFETY: arguments as DriverEntry received them.
    unsafe { create_driver(driver_object, registry_path, &mut config) }
}

struct Host {
    driver: Option<Driver>,
    devices: Vec<Option<Device>>,
}

impl Host {
    fn new(devices: usize) -> Self {
        let driver = Driver::load(driver_entry).expect("driver loads");
        let devices = (0..devices)
            .map(|_| {
                let device = driver.add_device().expect("device added");
                device.start().expect("device starts");
                Some(device)
            })
            .collect();
        Self {
            driver: Some(driver),
            devices,
        }
    }

    fn device(&self, index: usize) -> WDFDEVICE {
        self.devices[index].as_ref().unwrap().handle()
    }

    fn create_target(&self, device: usize) -> WDFIOTARGET {
        create_target(self.device(device))
    }

    fn open(&self, device: usize, name: &str) -> WDFIOTARGET {
        let target = self.create_target(device);
        assert_eq!(open_by_name(target, name), STATUS_SUCCESS, "open {name}");
        target
    }

    fn remove(&mut self, device: usize) {
        self.devices[device].take().unwrap().remove();
    }

    fn finish(mut self) {
        for device in self.devices.iter_mut().filter_map(Option::take) {
            device.remove();
        }
        self.driver.take().unwrap().unload();
    }
}

fn stop(target: WDFIOTARGET, action: WDF_IO_TARGET_SENT_IO_ACTION) {
    // SAFETY: a valid target.
    unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetStop, target, action) };
}

fn start(target: WDFIOTARGET) -> NTSTATUS {
    // SAFETY: a valid target.
    unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetStart, target) }
}

/// What one request's completion routine saw.
struct Log {
    completions: AtomicUsize,
    status: AtomicI32,
    information: AtomicUsize,
}

impl Log {
    const fn new() -> Self {
        Self {
            completions: AtomicUsize::new(0),
            status: AtomicI32::new(0),
            information: AtomicUsize::new(usize::MAX),
        }
    }

    fn completions(&self) -> usize {
        self.completions.load(Ordering::SeqCst)
    }

    fn status(&self) -> NTSTATUS {
        self.status.load(Ordering::SeqCst)
    }

    fn wait(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.completions() < count {
            assert!(Instant::now() < deadline, "completion did not arrive");
            std::thread::yield_now();
        }
    }
}

unsafe extern "C" fn record(
    request: WDFREQUEST,
    _target: WDFIOTARGET,
    params: PWDF_REQUEST_COMPLETION_PARAMS,
    context: WDFCONTEXT,
) {
    // SAFETY: the context is the `Log` the test keeps alive until completion.
    let log = unsafe { &*context.cast::<Log>() };
    // SAFETY: a valid request.
    let status = unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetStatus, request) };
    log.status.store(status, Ordering::SeqCst);
    // SAFETY: the framework passes valid parameters.
    let information = unsafe { (*params).IoStatus.Information };
    log.information
        .store(information as usize, Ordering::SeqCst);
    log.completions.fetch_add(1, Ordering::SeqCst);
}

/// Formats `request` as an IOCTL with `output`, sets `record` with `log`, sends it.
fn send_ioctl(request: WDFREQUEST, target: WDFIOTARGET, output: WDFMEMORY, log: &Log) -> bool {
    // SAFETY: valid handles.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetFormatRequestForIoctl,
            target,
            request,
            IOCTL,
            core::ptr::null_mut(),
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
    // SAFETY: valid handles, no options.
    unsafe {
        call_unsafe_wdf_function_binding!(WdfRequestSend, request, target, core::ptr::null_mut())
            != 0
    }
}

/// `WdfIoTargetSendIoctlSynchronously` with a buffer descriptor for `output`; returns the status
/// and what it left in `BytesReturned` (which starts at `bytes`).
fn send_ioctl_synchronously(
    target: WDFIOTARGET,
    output: &mut [u8],
    bytes: ULONG_PTR,
) -> (NTSTATUS, ULONG_PTR) {
    let mut descriptor = WDF_MEMORY_DESCRIPTOR {
        Type: _WDF_MEMORY_DESCRIPTOR_TYPE::WdfMemoryDescriptorTypeBuffer,
        ..Default::default()
    };
    descriptor.u.BufferType.Buffer = output.as_mut_ptr().cast();
    descriptor.u.BufferType.Length = output.len() as u32;
    let mut bytes = bytes;
    // SAFETY: valid target, a descriptor over a live buffer, a valid out pointer.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetSendIoctlSynchronously,
            target,
            core::ptr::null_mut(),
            IOCTL,
            core::ptr::null_mut(),
            &raw mut descriptor,
            core::ptr::null_mut(),
            &raw mut bytes
        )
    };
    (status, bytes)
}

// ---------------------------------------------------------------------------------------------
// 2. Stop cancels only sent requests; held ones stay held and go out at start.

#[test]
fn stop_cancel_sent_io_cancels_only_sent_requests_and_start_sends_the_held_ones() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\FidelityStopHeld");
    device.set_responder(|_| Response::Hold);
    let host = Host::new(1);
    let target = host.open(0, device.symbolic_link());
    let (output, _) = create_memory(4);
    let sent = create_request(target);
    let held = create_request(target);
    let (sent_log, held_log) = (Log::new(), Log::new());

    assert!(send_ioctl(sent, target, output, &sent_log));
    assert!(device.wait_held(1, Duration::from_secs(5)));
    stop(
        target,
        _WDF_IO_TARGET_SENT_IO_ACTION::WdfIoTargetLeaveSentIoPending,
    );
    assert!(
        send_ioctl(held, target, output, &held_log),
        "a stopped target accepts the request and holds it"
    );
    assert_eq!(
        device.counters().received,
        1,
        "the held request was not sent"
    );

    // KMDF, fxiotarget.cpp `FxIoTarget::GotoStopState` / `Stop`: WdfIoTargetCancelSentIo takes
    // only m_SentIoListHead (GetSentRequestsListLocked) to cancel and waits for it
    // (WaitForSentIoToComplete); the pended queue (m_PendedQueue) is left alone. Only `Purge`
    // and `GotoRemoveState` drain it (DrainPendedRequestsLocked).
    stop(
        target,
        _WDF_IO_TARGET_SENT_IO_ACTION::WdfIoTargetCancelSentIo,
    );
    assert_eq!(
        sent_log.completions(),
        1,
        "stop waited for the sent request"
    );
    assert_eq!(sent_log.status(), STATUS_CANCELLED);
    assert_eq!(device.counters().cancelled, 1);
    assert_eq!(held_log.completions(), 0, "the held request stays held");
    assert_eq!(state(target), _WDF_IO_TARGET_STATE::WdfIoTargetStopped);

    // WdfIoTargetWaitForSentIoToComplete waits for the sent list only (GotoStopState: no wait
    // when m_SentIoListHead is empty), so with nothing sent it returns although a request is
    // held; the held request is not completed by it.
    let begun = Instant::now();
    stop(
        target,
        _WDF_IO_TARGET_SENT_IO_ACTION::WdfIoTargetWaitForSentIoToComplete,
    );
    assert!(begun.elapsed() < Duration::from_secs(5));
    assert_eq!(held_log.completions(), 0);
    assert_eq!(device.counters().received, 1);

    // `FxIoTarget::Start` -> GotoStartState drains the pended queue and SubmitPendedRequests
    // sends each one.
    assert_eq!(start(target), STATUS_SUCCESS);
    assert!(device.wait_held(1, Duration::from_secs(5)));
    assert_eq!(device.counters().received, 2, "start sent the held request");
    assert_eq!(device.release_all(&Response::data(&[7, 7])), 1);
    held_log.wait(1);
    assert_eq!(held_log.status(), STATUS_SUCCESS);
    assert_eq!(held_log.information.load(Ordering::SeqCst), 2);
    session.wait_idle();
    delete(sent.cast());
    delete(held.cast());
    delete(output.cast());
    host.finish();
    session.end();
}

// ---------------------------------------------------------------------------------------------
// 3. Held requests fail with STATUS_WDF_DEVICE_REMOVED_NOT_SENT on purge, close and delete;
//    cancelling a held request completes it with STATUS_CANCELLED.

#[derive(Clone, Copy, Debug)]
enum Teardown {
    Purge,
    PurgeNoWait,
    Close,
    Delete,
}

#[test]
fn held_requests_fail_not_sent_when_the_target_is_purged_closed_or_deleted() {
    for teardown in [
        Teardown::Purge,
        Teardown::PurgeNoWait,
        Teardown::Close,
        Teardown::Delete,
    ] {
        let session = Session::begin();
        let device = ProgrammableTarget::create("\\??\\FidelityNotSent");
        let host = Host::new(1);
        let target = host.open(0, device.symbolic_link());
        let (output, _) = create_memory(4);
        let request = create_request(target);
        let log = Log::new();
        stop(
            target,
            _WDF_IO_TARGET_SENT_IO_ACTION::WdfIoTargetLeaveSentIoPending,
        );
        assert!(send_ioctl(request, target, output, &log));
        assert_eq!(log.completions(), 0, "{teardown:?}: held");
        // KMDF: `FxIoTarget::Purge` (GotoPurgeState), `FxIoTargetRemote::Close` and
        // `FxIoTarget::Remove` (GotoRemoveState) all drain the pended queue with
        // DrainPendedRequestsLocked(.., FALSE) and then CompletePendedRequestList, whose
        // `CompletePendedRequest` is FailPendedRequest(Request, STATUS_WDF_DEVICE_REMOVED_NOT_SENT)
        // with Information 0.
        match teardown {
            // SAFETY: a valid target.
            Teardown::Purge => unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfIoTargetPurge,
                    target,
                    _WDF_IO_TARGET_PURGE_IO_ACTION::WdfIoTargetPurgeIoAndWait
                );
            },
            // SAFETY: a valid target.
            Teardown::PurgeNoWait => unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfIoTargetPurge,
                    target,
                    _WDF_IO_TARGET_PURGE_IO_ACTION::WdfIoTargetPurgeIo
                );
            },
            // SAFETY: a valid target.
            Teardown::Close => unsafe {
                call_unsafe_wdf_function_binding!(WdfIoTargetClose, target);
            },
            Teardown::Delete => delete(target.cast()),
        }
        log.wait(1);
        session.wait_idle();
        assert_eq!(log.completions(), 1, "{teardown:?}");
        assert_eq!(
            log.status(),
            STATUS_WDF_DEVICE_REMOVED_NOT_SENT,
            "{teardown:?}"
        );
        assert_eq!(log.information.load(Ordering::SeqCst), 0, "{teardown:?}");
        assert_eq!(
            device.counters().received,
            0,
            "{teardown:?}: never reached the device"
        );
        delete(request.cast());
        delete(output.cast());
        host.finish();
        session.end();
    }
}

#[test]
fn a_held_request_cancelled_by_the_driver_completes_cancelled() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\FidelityCancelHeld");
    let host = Host::new(1);
    let target = host.open(0, device.symbolic_link());
    let (output, _) = create_memory(4);
    let request = create_request(target);
    let log = Log::new();
    stop(
        target,
        _WDF_IO_TARGET_SENT_IO_ACTION::WdfIoTargetLeaveSentIoPending,
    );
    assert!(send_ioctl(request, target, output, &log));
    // KMDF: a pended request sits in the target's cancel-safe queue; cancelling its IRP runs
    // `FxIoTarget::_RequestCancelled` (fxiotarget.cpp), which calls
    // FailPendedRequest(pRequest, STATUS_CANCELLED).
    // SAFETY: a valid request.
    let cancelled =
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestCancelSentRequest, request) };
    assert_ne!(cancelled, 0, "the held request was cancelable");
    log.wait(1);
    assert_eq!(log.status(), STATUS_CANCELLED);
    assert_eq!(log.information.load(Ordering::SeqCst), 0);
    // Nothing is left to send at start.
    assert_eq!(start(target), STATUS_SUCCESS);
    session.wait_idle();
    assert_eq!(device.counters().received, 0);
    assert_eq!(log.completions(), 1);
    delete(request.cast());
    delete(output.cast());
    host.finish();
    session.end();
}

// ---------------------------------------------------------------------------------------------
// 4 (target side) and 6. Synchronous sends: a closed target fails formatting and leaves
//    BytesReturned alone; otherwise BytesReturned is the IRP's Information whatever the status.

#[test]
fn synchronous_ioctl_to_a_closed_target_fails_invalid_device_state_and_leaves_bytes_alone() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\FidelitySyncClosed");
    device.set_responder(|_| Response::data(&[1, 2, 3]));
    let host = Host::new(1);
    let mut output = [0u8; 4];
    // KMDF, fxiotargetapi.cpp `FxIoTargetSendIoctl`: FormatIoctlRequest runs
    // `FxRequestBase::ValidateTarget` (fxrequestbase.cpp), which fails with
    // STATUS_INVALID_DEVICE_STATE when the target has no valid stack size, i.e. it was never
    // opened or was closed (`ClearTargetPointers`); on a failed format SubmitSync is not called
    // and BytesReturned is not written.
    let never_opened = host.create_target(0);
    assert_eq!(
        send_ioctl_synchronously(never_opened, &mut output, 0xAB),
        (STATUS_INVALID_DEVICE_STATE, 0xAB)
    );
    let target = host.open(0, device.symbolic_link());
    assert_eq!(
        send_ioctl_synchronously(target, &mut output, 0xAB),
        (STATUS_SUCCESS, 3)
    );
    for close in ["WdfIoTargetCloseForQueryRemove", "WdfIoTargetClose"] {
        if close == "WdfIoTargetClose" {
            assert_eq!(open_by_name(target, device.symbolic_link()), STATUS_SUCCESS);
            // SAFETY: a valid target.
            unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetClose, target) };
        } else {
            // SAFETY: a valid target.
            unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetCloseForQueryRemove, target) };
        }
        assert_eq!(
            send_ioctl_synchronously(target, &mut output, 0xAB),
            (STATUS_INVALID_DEVICE_STATE, 0xAB),
            "after {close}"
        );
    }
    assert_eq!(device.counters().received, 1);
    // Reopened, it formats and sends again.
    assert_eq!(open_by_name(target, device.symbolic_link()), STATUS_SUCCESS);
    assert_eq!(
        send_ioctl_synchronously(target, &mut output, 0xAB),
        (STATUS_SUCCESS, 3)
    );
    assert_eq!(device.counters().received, 2);
    delete(never_opened.cast());
    host.finish();
    session.end();
}

#[test]
fn synchronous_ioctl_reports_bytes_returned_whatever_the_status() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\FidelitySyncBytes");
    let host = Host::new(1);
    let target = host.open(0, device.symbolic_link());
    // KMDF, fxiotargetapi.cpp `FxIoTargetSendIoctl` (and `FxIoTargetSendIo`): after SubmitSync,
    // `*BytesReturned = GetSubmitFxIrp()->GetInformation()` unconditionally, so a warning such
    // as STATUS_BUFFER_OVERFLOW (partial data) or even an error reports the target's Information.
    for (status, information) in [
        (STATUS_BUFFER_OVERFLOW, 4),
        (STATUS_SUCCESS, 2),
        (STATUS_UNSUCCESSFUL, 1),
    ] {
        device.set_responder(move |_| {
            Response::Complete {
                status,
                data: vec![9, 8, 7, 6, 5, 4],
                information: None,
                delay: Duration::ZERO,
                from_worker: false,
            }
            .with_information(information)
        });
        let mut output = [0u8; 4];
        assert_eq!(
            send_ioctl_synchronously(target, &mut output, 0xAB),
            (status, information as ULONG_PTR),
            "status {status:#x}"
        );
        if !NT_ERROR(status) {
            // METHOD_BUFFERED: only Information bytes come back from the system buffer.
            let mut expected = [0u8; 4];
            expected[..information].copy_from_slice(&[9, 8, 7, 6][..information]);
            assert_eq!(output, expected, "status {status:#x}");
        }
    }
    host.finish();
    session.end();
}

// ---------------------------------------------------------------------------------------------
// 5 (memory side). Copies out of range fail as KMDF's source does, with no verifier break.

fn copy_from(memory: WDFMEMORY, offset: usize, data: &[u8]) -> NTSTATUS {
    // SAFETY: a valid memory handle; `data` is readable for its length.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfMemoryCopyFromBuffer,
            memory,
            offset,
            data.as_ptr().cast_mut().cast(),
            data.len()
        )
    }
}

fn copy_to(memory: WDFMEMORY, offset: usize, out: &mut [u8]) -> NTSTATUS {
    // SAFETY: a valid memory handle; `out` is writable for its length.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfMemoryCopyToBuffer,
            memory,
            offset,
            out.as_mut_ptr().cast(),
            out.len()
        )
    }
}

#[test]
fn memory_copies_out_of_range_fail_like_kmdf_without_a_verifier_report() {
    let session = Session::begin();
    let (memory, buffer) = create_memory(8);
    // KMDF, fxmemorybufferapi.cpp `WdfMemoryCopyFromBuffer` -> `IFxMemory::CopyFromPtr` ->
    // `IFxMemory::_CopyPtrToPtr` (fxmemoryobject.cpp), the memory being the destination: a
    // nonzero offset at or past its end, or more bytes than fit after the offset, return
    // STATUS_INVALID_BUFFER_SIZE. No FxVerifierDbgBreakPoint on either path.
    assert_eq!(copy_from(memory, 8, &[1]), STATUS_INVALID_BUFFER_SIZE);
    assert_eq!(
        copy_from(memory, usize::MAX, &[1]),
        STATUS_INVALID_BUFFER_SIZE
    );
    assert_eq!(copy_from(memory, 6, &[1, 2, 3]), STATUS_INVALID_BUFFER_SIZE);
    assert_eq!(copy_from(memory, 0, &[1; 9]), STATUS_INVALID_BUFFER_SIZE);
    // SAFETY: the buffer holds 8 bytes.
    let contents = unsafe { core::slice::from_raw_parts(buffer, 8) };
    assert_eq!(contents, [0; 8], "a failed copy writes nothing");
    assert_eq!(copy_from(memory, 5, &[1, 2, 3]), STATUS_SUCCESS);
    // `WdfMemoryCopyToBuffer` -> `IFxMemory::CopyToPtr` -> `_CopyPtrToPtr`, the memory being the
    // source: the same cases return STATUS_BUFFER_TOO_SMALL.
    let mut out = [0xEEu8; 9];
    assert_eq!(copy_to(memory, 8, &mut out[..1]), STATUS_BUFFER_TOO_SMALL);
    assert_eq!(
        copy_to(memory, usize::MAX, &mut out[..1]),
        STATUS_BUFFER_TOO_SMALL
    );
    assert_eq!(copy_to(memory, 6, &mut out[..3]), STATUS_BUFFER_TOO_SMALL);
    assert_eq!(copy_to(memory, 0, &mut out), STATUS_BUFFER_TOO_SMALL);
    assert_eq!(out, [0xEE; 9], "a failed copy writes nothing");
    assert_eq!(copy_to(memory, 5, &mut out[..3]), STATUS_SUCCESS);
    assert_eq!(out[..3], [1, 2, 3]);
    // Both APIs refuse a zero-byte copy with STATUS_INVALID_PARAMETER (traced, no break).
    assert_eq!(copy_from(memory, 0, &[]), STATUS_INVALID_PARAMETER);
    assert_eq!(copy_to(memory, 0, &mut []), STATUS_INVALID_PARAMETER);
    assert_eq!(
        sim::verifier::take_reports(),
        Vec::new(),
        "KMDF does not break on any of these"
    );
    delete(memory.cast());
    session.end();
}

#[test]
fn memory_copy_with_a_null_buffer_is_a_verifier_report() {
    let mut session = Session::begin();
    session.expect_violation(rules::INVALID_ARGUMENT);
    let (memory, _) = create_memory(8);
    // KMDF: both copy APIs start with `FxPointerNotNull(pFxDriverGlobals, Buffer)`, a verifier
    // bugcheck on NULL.
    // SAFETY: a valid memory handle; the NULL buffer is the misuse under test.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfMemoryCopyToBuffer,
            memory,
            0,
            core::ptr::null_mut(),
            1
        )
    };
    assert_eq!(status, STATUS_INVALID_PARAMETER);
    let reports = sim::verifier::take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].rule, rules::INVALID_ARGUMENT);
    assert_eq!(reports[0].object, "WdfMemoryCopyToBuffer");
    delete(memory.cast());
    session.end();
}

// ---------------------------------------------------------------------------------------------
// 9 (driver side). The registry path.

#[test]
fn driver_get_registry_path_returns_the_path_given_to_driver_entry() {
    let mut session = Session::begin();
    session.expect_violation(rules::IRQL_TOO_HIGH);
    ENTRY_PATH.lock().unwrap().clear();
    ADD_PATH.lock().unwrap().clear();
    let host = Host::new(1);
    // KMDF: `FxDriver::Initialize` (fxdriver.cpp) copies the RegistryPath that WdfDriverCreate
    // got (DriverEntry's) into m_RegistryPath, NUL-terminated, and `WdfDriverGetRegistryPath`
    // (fxdriverapi.cpp) returns that copy's Buffer. The device-add callback read it after
    // DriverEntry had returned.
    let entry = ENTRY_PATH.lock().unwrap().clone();
    assert!(!entry.is_empty());
    assert_eq!(*ADD_PATH.lock().unwrap(), entry);
    let driver = host.driver.as_ref().unwrap().handle();
    // SAFETY: a valid driver handle, at PASSIVE_LEVEL.
    let path = unsafe { call_unsafe_wdf_function_binding!(WdfDriverGetRegistryPath, driver) };
    assert_eq!(read_wide(path), entry);
    assert!(
        String::from_utf16_lossy(&entry).starts_with("\\Registry\\Machine\\System\\"),
        "a service key path"
    );
    // It is PASSIVE_LEVEL only (FxVerifierCheckIrqlLevel), NULL otherwise.
    let above = sim::at_irql(DISPATCH_LEVEL as KIRQL, || {
        // SAFETY: a valid driver handle; the IRQL is the misuse under test.
        unsafe { call_unsafe_wdf_function_binding!(WdfDriverGetRegistryPath, driver) as usize }
    });
    assert_eq!(above, 0);
    assert!(
        sim::verifier::take_reports()
            .iter()
            .any(|r| r.rule == rules::IRQL_TOO_HIGH && r.object == "WdfDriverGetRegistryPath")
    );
    host.finish();
    session.end();
}

// ---------------------------------------------------------------------------------------------
// 10. A device's removal reports only its own I/O.

#[test]
fn device_removal_reports_only_io_pending_on_its_own_targets() {
    let mut session = Session::begin();
    session.expect_violation(rules::IO_ALIVE_AT_REMOVE);
    let lower = ProgrammableTarget::create("\\??\\FidelityRemovalScope");
    lower.set_responder(|_| Response::Hold);
    let mut host = Host::new(2);
    // Device 0 sends a request that stays pending; device 1 has a target of its own, idle.
    let busy = host.open(0, lower.symbolic_link());
    let _idle = host.open(1, lower.symbolic_link());
    let (output, _) = create_memory(4);
    let request = create_request(busy);
    let log = Log::new();
    assert!(send_ioctl(request, busy, output, &log));
    assert!(lower.wait_held(1, Duration::from_secs(5)));
    // Removing device 1 deletes its own (idle) target: nothing of device 0's is its business.
    host.remove(1);
    let reports = sim::verifier::take_reports();
    assert!(
        reports.iter().all(|r| r.rule != rules::IO_ALIVE_AT_REMOVE),
        "device 1 owns none of that I/O: {reports:?}"
    );
    assert_eq!(log.completions(), 0, "device 0's request is untouched");
    // Removing device 0 reports its target and the request pending on it.
    host.remove(0);
    let reports = sim::verifier::take_reports();
    let alive: Vec<&str> = reports
        .iter()
        .filter(|r| r.rule == rules::IO_ALIVE_AT_REMOVE)
        .map(|r| r.object.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(alive, ["WDFIOTARGET", "WDFREQUEST"], "{reports:?}");
    log.wait(1);
    assert_eq!(log.status(), STATUS_CANCELLED);
    session.wait_idle();
    delete(request.cast());
    delete(output.cast());
    host.finish();
    session.end();
}

// ---------------------------------------------------------------------------------------------
// 11. Constants of the mirrored surface, with wdk-sys's types and values.

// Type checks: each must have exactly wdk-sys 0.5's type (bindgen's `u32` for small unsigned
// macros, the hand-written `NTSTATUS` for statuses).
const _: u32 = TRUE;
const _: u32 = FALSE;
const _: u32 = FILE_NON_DIRECTORY_FILE;

/// Every STATUS_* the project touches: value as in ntstatus.h, type NTSTATUS (i32), as in
/// wdk-sys 0.5.2's src/constants.rs.
const STATUSES: &[(NTSTATUS, u32, &str)] = &[
    (STATUS_ABANDONED, 0x0000_0080, "STATUS_ABANDONED"),
    (
        STATUS_ABANDONED_WAIT_0,
        0x0000_0080,
        "STATUS_ABANDONED_WAIT_0",
    ),
    (STATUS_ACCESS_DENIED, 0xC000_0022, "STATUS_ACCESS_DENIED"),
    (STATUS_ALERTED, 0x0000_0101, "STATUS_ALERTED"),
    (
        STATUS_BUFFER_OVERFLOW,
        0x8000_0005,
        "STATUS_BUFFER_OVERFLOW",
    ),
    (
        STATUS_BUFFER_TOO_SMALL,
        0xC000_0023,
        "STATUS_BUFFER_TOO_SMALL",
    ),
    (STATUS_CANCELLED, 0xC000_0120, "STATUS_CANCELLED"),
    (STATUS_DATA_ERROR, 0xC000_003E, "STATUS_DATA_ERROR"),
    (STATUS_DELETE_PENDING, 0xC000_0056, "STATUS_DELETE_PENDING"),
    (
        STATUS_DEVICE_ALREADY_ATTACHED,
        0xC000_0038,
        "STATUS_DEVICE_ALREADY_ATTACHED",
    ),
    (STATUS_DEVICE_BUSY, 0x8000_0011, "STATUS_DEVICE_BUSY"),
    (
        STATUS_DEVICE_DATA_ERROR,
        0xC000_009C,
        "STATUS_DEVICE_DATA_ERROR",
    ),
    (
        STATUS_DEVICE_DOES_NOT_EXIST,
        0xC000_00C0,
        "STATUS_DEVICE_DOES_NOT_EXIST",
    ),
    (
        STATUS_DEVICE_NOT_CONNECTED,
        0xC000_009D,
        "STATUS_DEVICE_NOT_CONNECTED",
    ),
    (
        STATUS_DEVICE_NOT_READY,
        0xC000_00A3,
        "STATUS_DEVICE_NOT_READY",
    ),
    (STATUS_DEVICE_REMOVED, 0xC000_02B6, "STATUS_DEVICE_REMOVED"),
    (STATUS_END_OF_FILE, 0xC000_0011, "STATUS_END_OF_FILE"),
    (STATUS_FILE_CLOSED, 0xC000_0128, "STATUS_FILE_CLOSED"),
    (
        STATUS_INFO_LENGTH_MISMATCH,
        0xC000_0004,
        "STATUS_INFO_LENGTH_MISMATCH",
    ),
    (
        STATUS_INSUFFICIENT_RESOURCES,
        0xC000_009A,
        "STATUS_INSUFFICIENT_RESOURCES",
    ),
    (STATUS_INTERNAL_ERROR, 0xC000_00E5, "STATUS_INTERNAL_ERROR"),
    (
        STATUS_INVALID_BUFFER_SIZE,
        0xC000_0206,
        "STATUS_INVALID_BUFFER_SIZE",
    ),
    (
        STATUS_INVALID_DEVICE_REQUEST,
        0xC000_0010,
        "STATUS_INVALID_DEVICE_REQUEST",
    ),
    (
        STATUS_INVALID_DEVICE_STATE,
        0xC000_0184,
        "STATUS_INVALID_DEVICE_STATE",
    ),
    (STATUS_INVALID_HANDLE, 0xC000_0008, "STATUS_INVALID_HANDLE"),
    (
        STATUS_INVALID_PARAMETER,
        0xC000_000D,
        "STATUS_INVALID_PARAMETER",
    ),
    (
        STATUS_INVALID_USER_BUFFER,
        0xC000_00E8,
        "STATUS_INVALID_USER_BUFFER",
    ),
    (STATUS_IO_TIMEOUT, 0xC000_00B5, "STATUS_IO_TIMEOUT"),
    (STATUS_NOT_FOUND, 0xC000_0225, "STATUS_NOT_FOUND"),
    (
        STATUS_NOT_IMPLEMENTED,
        0xC000_0002,
        "STATUS_NOT_IMPLEMENTED",
    ),
    (STATUS_NOT_SUPPORTED, 0xC000_00BB, "STATUS_NOT_SUPPORTED"),
    (
        STATUS_NO_DATA_DETECTED,
        0x8000_0022,
        "STATUS_NO_DATA_DETECTED",
    ),
    (STATUS_NO_MEMORY, 0xC000_0017, "STATUS_NO_MEMORY"),
    (
        STATUS_NO_MORE_ENTRIES,
        0x8000_001A,
        "STATUS_NO_MORE_ENTRIES",
    ),
    (STATUS_NO_SUCH_DEVICE, 0xC000_000E, "STATUS_NO_SUCH_DEVICE"),
    (
        STATUS_OBJECT_NAME_EXISTS,
        0x4000_0000,
        "STATUS_OBJECT_NAME_EXISTS",
    ),
    (
        STATUS_OBJECT_NAME_NOT_FOUND,
        0xC000_0034,
        "STATUS_OBJECT_NAME_NOT_FOUND",
    ),
    (
        STATUS_OBJECT_TYPE_MISMATCH,
        0xC000_0024,
        "STATUS_OBJECT_TYPE_MISMATCH",
    ),
    (STATUS_PENDING, 0x0000_0103, "STATUS_PENDING"),
    (
        STATUS_PNP_DEVICE_CONFIGURATION_PENDING,
        0xC000_0495,
        "STATUS_PNP_DEVICE_CONFIGURATION_PENDING",
    ),
    (
        STATUS_REQUEST_NOT_ACCEPTED,
        0xC000_00D0,
        "STATUS_REQUEST_NOT_ACCEPTED",
    ),
    (
        STATUS_SHARING_VIOLATION,
        0xC000_0043,
        "STATUS_SHARING_VIOLATION",
    ),
    (STATUS_SUCCESS, 0x0000_0000, "STATUS_SUCCESS"),
    (STATUS_TIMEOUT, 0x0000_0102, "STATUS_TIMEOUT"),
    (STATUS_UNSUCCESSFUL, 0xC000_0001, "STATUS_UNSUCCESSFUL"),
    (STATUS_USER_APC, 0x0000_00C0, "STATUS_USER_APC"),
    (STATUS_WAIT_0, 0x0000_0000, "STATUS_WAIT_0"),
    (STATUS_WAIT_1, 0x0000_0001, "STATUS_WAIT_1"),
    (STATUS_WAIT_63, 0x0000_003F, "STATUS_WAIT_63"),
];

#[test]
fn constants_have_wdk_sys_types_and_values() {
    assert_eq!((TRUE, FALSE, FILE_NON_DIRECTORY_FILE), (1, 0, 0x40));
    // Used as the C code uses them: TRUE/FALSE narrowed to a BOOLEAN, create options as a ULONG.
    let wait: BOOLEAN = TRUE as BOOLEAN;
    let options: ULONG = FILE_NON_DIRECTORY_FILE | FILE_OPEN;
    assert_eq!((wait, options), (1, 0x41));
    for &(status, expected, name) in STATUSES {
        assert_eq!(status.cast_unsigned(), expected, "{name}");
    }
    assert!(NT_SUCCESS(STATUS_PENDING) && NT_WARNING(STATUS_BUFFER_OVERFLOW));
    assert!(NT_ERROR(STATUS_WDF_DEVICE_REMOVED_NOT_SENT));
}

// ---------------------------------------------------------------------------------------------
// 12. A WDF function the simulation does not implement fails the test that called it.

/// WDF functions that wdk-sys declares (their `PFN_*` types are in the bindings) and the
/// simulation does not implement. If one of them gets implemented, pick another one here.
fn call_unimplemented() -> (NTSTATUS, WDFDEVICE) {
    // SAFETY: none of these is implemented: the fallback ignores its arguments.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueFindRequest,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut()
        )
    };
    // SAFETY: as above.
    let device =
        unsafe { call_unsafe_wdf_function_binding!(WdfFileObjectGetDevice, core::ptr::null_mut()) };
    // SAFETY: as above (no return value).
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetFileObjectConfig,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut()
        );
    }
    (status, device)
}

#[test]
fn an_unimplemented_wdf_function_is_reported_by_name_and_returns_a_failure() {
    let mut session = Session::begin();
    session.expect_violation(rules::NOT_SIMULATED);
    let (status, device) = call_unimplemented();
    assert_eq!(status, STATUS_NOT_IMPLEMENTED);
    assert!(device.is_null(), "a handle-returning function returns NULL");
    let reports = sim::verifier::take_reports();
    let named: Vec<(&str, &str)> = reports
        .iter()
        .map(|r| (r.rule, r.object.as_str()))
        .collect();
    assert_eq!(
        named,
        [
            (rules::NOT_SIMULATED, "WdfIoQueueFindRequest"),
            (rules::NOT_SIMULATED, "WdfFileObjectGetDevice"),
            (rules::NOT_SIMULATED, "WdfDeviceInitSetFileObjectConfig"),
        ]
    );
    assert!(
        reports[0]
            .message
            .contains("WdfIoQueueFindRequest is not simulated")
    );
    session.end();
}

#[test]
fn a_session_that_calls_an_unimplemented_function_fails_naming_it() {
    // The process survives the call; the session's end fails this test with the name.
    let outcome = std::panic::catch_unwind(|| {
        let session = Session::begin();
        let _ = call_unimplemented();
        session.end();
    });
    let panic = outcome.expect_err("the session fails");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("WdfIoQueueFindRequest is not simulated"),
        "{message}"
    );
    assert!(
        message.contains("WdfDeviceInitSetFileObjectConfig"),
        "{message}"
    );
    // The next session starts clean.
    let session = Session::begin();
    session.end();
}
