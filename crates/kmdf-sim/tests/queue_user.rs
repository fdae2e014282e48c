//! A driver with queues, driven by the `PnP` manager and the user-mode side: callback order,
//! interface notifications, round trips through queues, cancelable requests racing with
//! cancellation, handle close, manual queues, forwarding, purge, a driver-to-driver round trip
//! through an I/O target, and the completion verifier rules.
// The simulation's own copy of the binding macro counts as a local macro here, so its internal
// unsafe blocks are linted as if they were this file's.
#![allow(
    clippy::missing_safety_doc,
    clippy::multiple_unsafe_ops_per_block,
    clippy::undocumented_unsafe_blocks
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wdk_sys::sim::pnp::{Driver, GUID_DEVICE_INTERFACE_ARRIVAL};
use wdk_sys::sim::user::File;
use wdk_sys::sim::{Session, verifier::rules};
use wdk_sys::*;

mod common;

use common::{create_driver, create_target, device_create, driver_config, open_by_name_with};

const CLASS: GUID = GUID {
    Data1: 0x1234_5678,
    Data2: 0x9abc,
    Data3: 0xdef0,
    Data4: [1, 2, 3, 4, 5, 6, 7, 8],
};
const IOCTL_ECHO: u32 = 1;
const IOCTL_HOLD: u32 = 2;
const IOCTL_TO_MANUAL: u32 = 3;
const IOCTL_COMPLETE_TWICE: u32 = 4;
const IOCTL_COMPLETE_QUEUED: u32 = 5;

static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());
static HELD: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static MANUAL: AtomicUsize = AtomicUsize::new(0);
static DEVICES: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn log(entry: impl Into<String>) {
    LOG.lock().unwrap().push(entry.into());
}

unsafe extern "C" fn prepare(_d: WDFDEVICE, _r: WDFCMRESLIST, _t: WDFCMRESLIST) -> NTSTATUS {
    log("PrepareHardware");
    STATUS_SUCCESS
}
unsafe extern "C" fn release(_d: WDFDEVICE, _t: WDFCMRESLIST) -> NTSTATUS {
    log("ReleaseHardware");
    STATUS_SUCCESS
}
unsafe extern "C" fn d0_entry(_d: WDFDEVICE, previous: WDF_POWER_DEVICE_STATE) -> NTSTATUS {
    log(format!("D0Entry({previous})"));
    STATUS_SUCCESS
}
unsafe extern "C" fn d0_exit(_d: WDFDEVICE, target: WDF_POWER_DEVICE_STATE) -> NTSTATUS {
    log(format!("D0Exit({target})"));
    STATUS_SUCCESS
}
unsafe extern "C" fn query_remove(_d: WDFDEVICE) -> NTSTATUS {
    log("QueryRemove");
    STATUS_SUCCESS
}
unsafe extern "C" fn surprise(_d: WDFDEVICE) {
    log("SurpriseRemoval");
}
unsafe extern "C" fn unload(_d: WDFDRIVER) {
    log("Unload");
}

/// Completes a held request that was cancelled. It holds `HELD`'s lock while it does, so a
/// thread that takes a request off `HELD` and unmarks it under the same lock never touches a
/// request this routine completed (the synchronisation KMDF's `WdfRequestUnmarkCancelable`
/// documentation asks of drivers).
unsafe extern "C" fn cancel_held(request: WDFREQUEST) {
    let mut held = HELD.lock().unwrap();
    held.retain(|r| *r != request as usize);
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, STATUS_CANCELLED) };
    drop(held);
}

#[allow(clippy::too_many_lines, reason = "one handler per test IOCTL")]
unsafe extern "C" fn io_device_control(
    _queue: WDFQUEUE,
    request: WDFREQUEST,
    output_length: usize,
    input_length: usize,
    code: u32,
) {
    match code {
        IOCTL_ECHO => {
            let mut input: PVOID = core::ptr::null_mut();
            let mut output: PVOID = core::ptr::null_mut();
            let mut length = 0usize;
            let status = unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfRequestRetrieveInputBuffer,
                    request,
                    1,
                    &raw mut input,
                    &raw mut length
                )
            };
            if status < 0 {
                unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, status) };
                return;
            }
            assert_eq!(length, input_length);
            let status = unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfRequestRetrieveOutputBuffer,
                    request,
                    input_length,
                    &raw mut output,
                    core::ptr::null_mut()
                )
            };
            if status < 0 {
                unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, status) };
                return;
            }
            let _ = output_length;
            unsafe {
                core::ptr::copy_nonoverlapping(
                    input.cast::<u8>(),
                    output.cast::<u8>(),
                    input_length,
                );
            };
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfRequestCompleteWithInformation,
                    request,
                    STATUS_SUCCESS,
                    input_length as ULONG_PTR
                );
            };
        }
        IOCTL_HOLD => {
            HELD.lock().unwrap().push(request as usize);
            let status = unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfRequestMarkCancelableEx,
                    request,
                    Some(cancel_held)
                )
            };
            if status < 0 {
                HELD.lock().unwrap().retain(|r| *r != request as usize);
                unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, status) };
            }
        }
        IOCTL_TO_MANUAL => {
            let status = unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfRequestForwardToIoQueue,
                    request,
                    MANUAL.load(Ordering::SeqCst) as WDFQUEUE
                )
            };
            assert_eq!(status, STATUS_SUCCESS);
        }
        IOCTL_COMPLETE_TWICE => {
            unsafe {
                call_unsafe_wdf_function_binding!(WdfRequestComplete, request, STATUS_SUCCESS);
            };
            unsafe {
                call_unsafe_wdf_function_binding!(WdfRequestComplete, request, STATUS_SUCCESS);
            };
        }
        IOCTL_COMPLETE_QUEUED => {
            let status = unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfRequestForwardToIoQueue,
                    request,
                    MANUAL.load(Ordering::SeqCst) as WDFQUEUE
                )
            };
            assert_eq!(status, STATUS_SUCCESS);
            // The request now waits on the manual queue: completing it is a bug.
            unsafe {
                call_unsafe_wdf_function_binding!(WdfRequestComplete, request, STATUS_SUCCESS);
            };
        }
        _ => unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestComplete,
                request,
                STATUS_INVALID_DEVICE_REQUEST
            );
        },
    }
}

unsafe extern "C" fn io_write(_queue: WDFQUEUE, request: WDFREQUEST, length: usize) {
    let mut memory: WDFMEMORY = core::ptr::null_mut();
    assert_eq!(
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveInputMemory,
                request,
                &raw mut memory
            )
        },
        STATUS_SUCCESS
    );
    let mut parameters = WDF_REQUEST_PARAMETERS {
        Size: size_of::<WDF_REQUEST_PARAMETERS>() as u16,
        ..Default::default()
    };
    unsafe {
        call_unsafe_wdf_function_binding!(WdfRequestGetParameters, request, &raw mut parameters);
    };
    assert_eq!(parameters.Type, _WDF_REQUEST_TYPE::WdfRequestTypeWrite);
    assert_eq!(unsafe { parameters.Parameters.Write.Length }, length);
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestCompleteWithInformation,
            request,
            STATUS_SUCCESS,
            length as ULONG_PTR
        );
    };
}

#[allow(clippy::too_many_lines, reason = "one device with every kind of queue")]
unsafe extern "C" fn device_add(_driver: WDFDRIVER, mut init: PWDFDEVICE_INIT) -> NTSTATUS {
    log("DeviceAdd");
    let mut callbacks = WDF_PNPPOWER_EVENT_CALLBACKS {
        Size: size_of::<WDF_PNPPOWER_EVENT_CALLBACKS>() as u32,
        EvtDevicePrepareHardware: Some(prepare),
        EvtDeviceReleaseHardware: Some(release),
        EvtDeviceD0Entry: Some(d0_entry),
        EvtDeviceD0Exit: Some(d0_exit),
        EvtDeviceQueryRemove: Some(query_remove),
        EvtDeviceSurpriseRemoval: Some(surprise),
        ..Default::default()
    };
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetPnpPowerEventCallbacks,
            init,
            &raw mut callbacks
        );
    };
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceInitSetIoType,
            init,
            _WDF_DEVICE_IO_TYPE::WdfDeviceIoBuffered
        );
    };
    let (status, device) = device_create(&mut init);
    if status < 0 {
        return status;
    }
    assert!(init.is_null(), "WdfDeviceCreate clears the init pointer");
    DEVICES.lock().unwrap().push(device as usize);
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreateDeviceInterface,
            device,
            &CLASS,
            core::ptr::null()
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    let mut config = WDF_IO_QUEUE_CONFIG {
        Size: size_of::<WDF_IO_QUEUE_CONFIG>() as u32,
        DispatchType: _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel,
        PowerManaged: _WDF_TRI_STATE::WdfUseDefault,
        DefaultQueue: 1,
        EvtIoDeviceControl: Some(io_device_control),
        EvtIoWrite: Some(io_write),
        ..Default::default()
    };
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut config,
            WDF_NO_OBJECT_ATTRIBUTES,
            core::ptr::null_mut()
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    let mut manual_config = WDF_IO_QUEUE_CONFIG {
        Size: size_of::<WDF_IO_QUEUE_CONFIG>() as u32,
        DispatchType: _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchManual,
        PowerManaged: _WDF_TRI_STATE::WdfFalse,
        ..Default::default()
    };
    let mut manual: WDFQUEUE = core::ptr::null_mut();
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut manual_config,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut manual
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    MANUAL.store(manual as usize, Ordering::SeqCst);
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceConfigureRequestDispatching,
            device,
            manual,
            _WDF_REQUEST_TYPE::WdfRequestTypeRead
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    STATUS_SUCCESS
}

unsafe extern "C" fn driver_entry(
    driver_object: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let mut config = WDF_DRIVER_CONFIG {
        EvtDriverUnload: Some(unload),
        ..driver_config(Some(device_add))
    };
    unsafe { create_driver(driver_object, registry_path, &mut config) }
}

fn reset() {
    LOG.lock().unwrap().clear();
    HELD.lock().unwrap().clear();
    DEVICES.lock().unwrap().clear();
}

static ARRIVALS: Mutex<Vec<(bool, String)>> = Mutex::new(Vec::new());

unsafe extern "C" fn on_interface(notification: PVOID, _context: PVOID) -> NTSTATUS {
    let notification = unsafe { &*notification.cast::<DEVICE_INTERFACE_CHANGE_NOTIFICATION>() };
    let name = unsafe { &*notification.SymbolicLinkName };
    let units = unsafe { core::slice::from_raw_parts(name.Buffer, usize::from(name.Length) / 2) };
    let arrival = notification.Event.Data1 == GUID_DEVICE_INTERFACE_ARRIVAL.Data1;
    ARRIVALS
        .lock()
        .unwrap()
        .push((arrival, String::from_utf16_lossy(units)));
    STATUS_SUCCESS
}

fn wait_until(mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "condition not reached"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn pnp_callbacks_run_in_kmdf_order_and_interfaces_notify_listeners() {
    let session = Session::begin();
    reset();
    ARRIVALS.lock().unwrap().clear();
    let mut entry: PVOID = core::ptr::null_mut();
    let mut class = CLASS;
    let status = unsafe {
        wdk_sys::ntddk::IoRegisterPlugPlayNotification(
            _IO_NOTIFICATION_EVENT_CATEGORY::EventCategoryDeviceInterfaceChange,
            PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES,
            (&raw mut class).cast(),
            core::ptr::null_mut(),
            Some(on_interface),
            core::ptr::null_mut(),
            &raw mut entry,
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    let driver = Driver::load(driver_entry).unwrap();
    let device = driver.add_device().unwrap();
    assert!(
        wdk_sys::sim::user::interfaces(&CLASS).is_empty(),
        "interfaces are enabled at start"
    );
    device.start().unwrap();
    assert_eq!(wdk_sys::sim::user::interfaces(&CLASS).len(), 1);
    device.power_down();
    device.power_up().unwrap();
    assert!(device.query_remove());
    device.cancel_remove();
    device.surprise_remove();
    device.remove();
    driver.unload();
    session.wait_idle();
    let expected = [
        "DeviceAdd",
        "PrepareHardware",
        "D0Entry(5)",
        "D0Exit(4)",
        "D0Entry(4)",
        "QueryRemove",
        // KMDF's surprise-removal sequence calls EvtDeviceSurpriseRemoval first.
        "SurpriseRemoval",
        "D0Exit(5)",
        "ReleaseHardware",
        "Unload",
    ];
    assert_eq!(*LOG.lock().unwrap(), expected);
    let arrivals = ARRIVALS.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 2, "{arrivals:?}");
    assert!(arrivals[0].0 && !arrivals[1].0);
    assert_eq!(arrivals[0].1, arrivals[1].1);
    assert_eq!(
        unsafe { wdk_sys::ntddk::IoUnregisterPlugPlayNotificationEx(entry) },
        STATUS_SUCCESS
    );
    session.end();
}

#[test]
fn user_mode_round_trips_through_queues() {
    let session = Session::begin();
    reset();
    let driver = Driver::load(driver_entry).unwrap();
    let device = driver.add_device().unwrap();
    device.start().unwrap();
    let file = File::open_interface(&CLASS).expect("the interface opens");
    let mut output = [0u8; 8];
    assert_eq!(
        file.device_io_control(IOCTL_ECHO, &[9, 8, 7], &mut output),
        Ok(3)
    );
    assert_eq!(&output[..3], &[9, 8, 7]);
    assert_eq!(
        file.device_io_control(IOCTL_ECHO, &[1, 2, 3], &mut [0u8; 2]),
        Err(STATUS_BUFFER_TOO_SMALL)
    );
    assert_eq!(
        file.device_io_control(IOCTL_ECHO, &[], &mut output),
        Err(STATUS_BUFFER_TOO_SMALL)
    );
    assert_eq!(file.write(&[1, 2, 3, 4]), Ok(4));
    // Reads go to the manual queue and wait for the driver to retrieve them.
    let read = file.read_overlapped(4);
    let forwarded = file.device_io_control_overlapped(IOCTL_TO_MANUAL, &[5], 4);
    assert!(!read.is_complete() && !forwarded.is_complete());
    for expected in [4usize, 2] {
        let mut request: WDFREQUEST = core::ptr::null_mut();
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoQueueRetrieveNextRequest,
                MANUAL.load(Ordering::SeqCst) as WDFQUEUE,
                &raw mut request
            )
        };
        assert_eq!(status, STATUS_SUCCESS);
        let mut buffer: PVOID = core::ptr::null_mut();
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveOutputBuffer,
                request,
                1,
                &raw mut buffer,
                core::ptr::null_mut()
            )
        };
        assert_eq!(status, STATUS_SUCCESS);
        unsafe { core::ptr::write_bytes(buffer.cast::<u8>(), 0xAB, expected) };
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestCompleteWithInformation,
                request,
                STATUS_SUCCESS,
                expected as ULONG_PTR
            );
        };
    }
    let mut request: WDFREQUEST = core::ptr::null_mut();
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueRetrieveNextRequest,
            MANUAL.load(Ordering::SeqCst) as WDFQUEUE,
            &raw mut request
        )
    };
    assert_eq!(status, STATUS_NO_MORE_ENTRIES);
    assert_eq!(read.wait(Duration::from_secs(5)), Some((STATUS_SUCCESS, 4)));
    assert_eq!(read.output(), &[0xAB; 4]);
    assert_eq!(
        forwarded.wait(Duration::from_secs(5)),
        Some((STATUS_SUCCESS, 2))
    );
    drop(file);
    device.remove();
    driver.unload();
    session.end();
}

#[test]
fn cancel_versus_driver_completion_of_cancelable_requests() {
    let session = Session::begin();
    reset();
    let driver = Driver::load(driver_entry).unwrap();
    let device = driver.add_device().unwrap();
    device.start().unwrap();
    let file = Arc::new(File::open_interface(&CLASS).unwrap());
    let rounds = 200;
    let mut cancelled = 0;
    for round in 0..rounds {
        let operation = file.device_io_control_overlapped(IOCTL_HOLD, &[], 0);
        wait_until(|| HELD.lock().unwrap().len() == 1);
        let completer = std::thread::spawn(move || {
            let mut held = HELD.lock().unwrap();
            let Some(request) = held.pop() else {
                return false;
            };
            let status = unsafe {
                call_unsafe_wdf_function_binding!(WdfRequestUnmarkCancelable, request as WDFREQUEST)
            };
            drop(held);
            if status == STATUS_SUCCESS {
                unsafe {
                    call_unsafe_wdf_function_binding!(
                        WdfRequestComplete,
                        request as WDFREQUEST,
                        STATUS_SUCCESS
                    );
                };
                true
            } else {
                assert_eq!(status, STATUS_CANCELLED);
                false
            }
        });
        if round % 2 == 1 {
            std::thread::yield_now();
        }
        let _ = operation.cancel();
        completer.join().unwrap();
        let (status, _) = operation
            .wait(Duration::from_secs(5))
            .expect("completes once");
        assert!(status == STATUS_SUCCESS || status == STATUS_CANCELLED);
        if status == STATUS_CANCELLED {
            cancelled += 1;
        }
        HELD.lock().unwrap().clear();
    }
    eprintln!("{cancelled} of {rounds} cancelled");
    // Closing the handle cancels what it has pending.
    let pending = file.device_io_control_overlapped(IOCTL_HOLD, &[], 0);
    wait_until(|| HELD.lock().unwrap().len() == 1);
    drop(Arc::try_unwrap(file).unwrap());
    assert_eq!(
        pending.wait(Duration::from_secs(5)),
        Some((STATUS_CANCELLED, 0))
    );
    device.remove();
    driver.unload();
    session.end();
}

#[test]
fn purge_cancels_queued_requests_and_refuses_new_ones() {
    let session = Session::begin();
    reset();
    let driver = Driver::load(driver_entry).unwrap();
    let device = driver.add_device().unwrap();
    device.start().unwrap();
    let file = File::open_interface(&CLASS).unwrap();
    let read = file.read_overlapped(4);
    let manual = MANUAL.load(Ordering::SeqCst) as WDFQUEUE;
    let (mut waiting, mut owned) = (0u32, 0u32);
    let _state = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueGetState,
            manual,
            &raw mut waiting,
            &raw mut owned
        )
    };
    assert_eq!((waiting, owned), (1, 0));
    unsafe { call_unsafe_wdf_function_binding!(WdfIoQueuePurgeSynchronously, manual) };
    assert_eq!(
        read.wait(Duration::from_secs(5)),
        Some((STATUS_CANCELLED, 0))
    );
    assert_eq!(file.read(&mut [0u8; 4]), Err(STATUS_INVALID_DEVICE_STATE));
    unsafe { call_unsafe_wdf_function_binding!(WdfIoQueueStart, manual) };
    let read = file.read_overlapped(4);
    assert!(!read.is_complete());
    drop(read);
    drop(file);
    device.remove();
    driver.unload();
    session.end();
}

unsafe extern "C" fn forward_completion(
    request: WDFREQUEST,
    _target: WDFIOTARGET,
    params: PWDF_REQUEST_COMPLETION_PARAMS,
    _context: WDFCONTEXT,
) {
    let params = unsafe { &*params };
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestCompleteWithInformation,
            request,
            params.IoStatus.__bindgen_anon_1.Status,
            params.IoStatus.Information
        );
    };
}

#[test]
fn driver_to_driver_through_an_io_target_opened_on_a_device_interface() {
    let session = Session::begin();
    reset();
    let driver = Driver::load(driver_entry).unwrap();
    let lower = driver.add_device().unwrap();
    lower.start().unwrap();
    let upper = driver.add_device().unwrap();
    upper.start().unwrap();
    let name = lower.names().into_iter().next().unwrap();
    let target = create_target(upper.handle());
    assert_eq!(
        open_by_name_with(target, &name, WDF_IO_TARGET_OPEN_PARAMS::default()),
        STATUS_SUCCESS
    );
    let mut input = [3u8, 1, 4];
    let mut output = [0u8; 3];
    let mut input_descriptor = WDF_MEMORY_DESCRIPTOR {
        Type: _WDF_MEMORY_DESCRIPTOR_TYPE::WdfMemoryDescriptorTypeBuffer,
        ..Default::default()
    };
    input_descriptor.u.BufferType.Buffer = input.as_mut_ptr().cast();
    input_descriptor.u.BufferType.Length = 3;
    let mut output_descriptor = WDF_MEMORY_DESCRIPTOR {
        Type: _WDF_MEMORY_DESCRIPTOR_TYPE::WdfMemoryDescriptorTypeBuffer,
        ..Default::default()
    };
    output_descriptor.u.BufferType.Buffer = output.as_mut_ptr().cast();
    output_descriptor.u.BufferType.Length = 3;
    let mut bytes: ULONG_PTR = 0;
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetSendIoctlSynchronously,
            target,
            core::ptr::null_mut(),
            IOCTL_ECHO,
            &raw mut input_descriptor,
            &raw mut output_descriptor,
            core::ptr::null_mut(),
            &raw mut bytes
        )
    };
    assert_eq!((status, bytes), (STATUS_SUCCESS, 3));
    assert_eq!(output, [3, 1, 4]);
    // The lower device's local target has no lower driver.
    let local = unsafe { call_unsafe_wdf_function_binding!(WdfDeviceGetIoTarget, lower.handle()) };
    assert!(!local.is_null());
    let _ = forward_completion;
    unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetClose, target) };
    upper.remove();
    lower.remove();
    driver.unload();
    session.end();
}

#[test]
fn verifier_double_completion_and_completing_a_request_on_a_queue() {
    let mut session = Session::begin();
    session.expect_violation(rules::DOUBLE_COMPLETION);
    session.expect_violation(rules::COMPLETION_NOT_OWNED);
    reset();
    let driver = Driver::load(driver_entry).unwrap();
    let device = driver.add_device().unwrap();
    device.start().unwrap();
    let file = File::open_interface(&CLASS).unwrap();
    assert_eq!(
        file.device_io_control(IOCTL_COMPLETE_TWICE, &[], &mut []),
        Ok(0)
    );
    let reports = wdk_sys::sim::verifier::take_reports();
    assert!(
        reports.iter().any(|r| r.rule == rules::DOUBLE_COMPLETION),
        "{reports:?}"
    );
    let queued = file.device_io_control_overlapped(IOCTL_COMPLETE_QUEUED, &[], 0);
    let reports = wdk_sys::sim::verifier::take_reports();
    assert!(
        reports.iter().any(
            |r| r.rule == rules::COMPLETION_NOT_OWNED && r.message.contains("still on a queue")
        ),
        "{reports:?}"
    );
    assert!(
        !queued.is_complete(),
        "the misplaced completion was refused"
    );
    drop(queued);
    drop(file);
    device.remove();
    driver.unload();
    session.end();
}

#[test]
fn verifier_completing_a_request_sent_to_a_target() {
    let mut session = Session::begin();
    session.expect_violation(rules::COMPLETION_NOT_OWNED);
    reset();
    let target_device =
        wdk_sys::sim::target::ProgrammableTarget::create("\\??\\QueueUserSentTarget");
    target_device.set_responder(|_| wdk_sys::sim::target::Response::Hold);
    let driver = Driver::load(driver_entry).unwrap();
    let device = driver.add_device().unwrap();
    device.start().unwrap();
    let mut target: WDFIOTARGET = core::ptr::null_mut();
    let _ = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetCreate,
            device.handle(),
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut target
        )
    };
    assert_eq!(
        open_by_name_with(
            target,
            target_device.symbolic_link(),
            WDF_IO_TARGET_OPEN_PARAMS::default()
        ),
        STATUS_SUCCESS
    );
    let mut request: WDFREQUEST = core::ptr::null_mut();
    let _ = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestCreate,
            WDF_NO_OBJECT_ATTRIBUTES,
            target,
            &raw mut request
        )
    };
    let _ = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetFormatRequestForIoctl,
            target,
            request,
            9,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut()
        )
    };
    assert_ne!(
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestSend,
                request,
                target,
                core::ptr::null_mut()
            )
        },
        0
    );
    assert!(target_device.wait_held(1, Duration::from_secs(5)));
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, STATUS_SUCCESS) };
    let reports = wdk_sys::sim::verifier::take_reports();
    assert!(
        reports
            .iter()
            .any(|r| r.rule == rules::COMPLETION_NOT_OWNED),
        "{reports:?}"
    );
    unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetClose, target) };
    unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, request.cast()) };
    session.wait_idle();
    device.remove();
    driver.unload();
    session.end();
}

static PURGED: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn purge_done(_queue: WDFQUEUE, context: WDFCONTEXT) {
    PURGED.store(context as usize, Ordering::SeqCst);
}

fn default_queue(device: WDFDEVICE) -> WDFQUEUE {
    unsafe { call_unsafe_wdf_function_binding!(WdfDeviceGetDefaultQueue, device) }
}

#[test]
fn a_stopped_queue_holds_requests_until_started_and_async_purge_reports_completion() {
    let session = Session::begin();
    reset();
    let driver = Driver::load(driver_entry).unwrap();
    let device = driver.add_device().unwrap();
    device.start().unwrap();
    let file = File::open_interface(&CLASS).unwrap();
    let queue = default_queue(device.handle());

    // Stopped: a new request is queued, not presented to the driver.
    unsafe { call_unsafe_wdf_function_binding!(WdfIoQueueStopSynchronously, queue) };
    let echo = file.device_io_control_overlapped(IOCTL_ECHO, b"held", 4);
    std::thread::sleep(Duration::from_millis(20));
    assert!(!echo.is_complete(), "a stopped queue does not dispatch");
    let (mut waiting, mut owned) = (0u32, 0u32);
    let _ = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueGetState,
            queue,
            &raw mut waiting,
            &raw mut owned
        )
    };
    assert_eq!((waiting, owned), (1, 0));

    // Started: the queued request is presented and completes with its data.
    unsafe { call_unsafe_wdf_function_binding!(WdfIoQueueStart, queue) };
    assert_eq!(echo.wait(Duration::from_secs(5)), Some((STATUS_SUCCESS, 4)));
    assert_eq!(echo.output(), b"held");

    // Asynchronous purge of the manual queue: its pending request is cancelled and the
    // completion callback runs with the context it was given.
    let read = file.read_overlapped(4);
    let manual = MANUAL.load(Ordering::SeqCst) as WDFQUEUE;
    PURGED.store(0, Ordering::SeqCst);
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueuePurge,
            manual,
            Some(purge_done),
            0x5eed as WDFCONTEXT
        );
    };
    assert_eq!(
        read.wait(Duration::from_secs(5)),
        Some((STATUS_CANCELLED, 0))
    );
    session.wait_idle();
    assert_eq!(PURGED.load(Ordering::SeqCst), 0x5eed);
    unsafe { call_unsafe_wdf_function_binding!(WdfIoQueueStart, manual) };
    drop(file);
    device.remove();
    driver.unload();
    session.end();
}
