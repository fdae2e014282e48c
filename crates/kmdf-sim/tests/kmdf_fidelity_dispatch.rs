//! The simulation's threading model against KMDF's: a request sent to a local device's queue is
//! presented in the sender's thread at the sender's IRQL, a request completed there completes
//! the sender inline, sequential and passive-level queues defer as `FxIoQueue` does, synchronous
//! sends call (or do not call) the completion routine as `FxIoTarget::SubmitSync` does, cancel
//! returns what `IoCancelIrp` returns, and `METHOD_BUFFERED` data travels in one system buffer.
//!
//! Each test names the KMDF source (microsoft/Windows-Driver-Frameworks) that fixes the
//! behaviour it pins.
// The simulation's own copy of the binding macro counts as a local macro here, so its internal
// unsafe blocks are linted as if they were this file's.
#![allow(
    clippy::missing_safety_doc,
    clippy::multiple_unsafe_ops_per_block,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_panics_doc
)]

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use wdk_sys::sim::pnp::{Device, Driver};
use wdk_sys::sim::target::{ProgrammableTarget, Response};
use wdk_sys::sim::{Session, completion, verifier::rules};
use wdk_sys::*;

mod common;

use common::{
    create_driver, create_memory, create_request, create_spin_lock, create_target, delete,
    device_create, driver_config, open_by_name, reuse,
};

// ---------------------------------------------------------------------------------------------
// A driver whose devices are both the target (a queue behind a symbolic link) and the sender.

/// How the target device's queue is configured (set before `add_device`).
static QUEUE_SEQUENTIAL: AtomicBool = AtomicBool::new(false);
static QUEUE_PASSIVE: AtomicBool = AtomicBool::new(false);
/// Asks for a queue-level presentation lock (which the simulation refuses).
static QUEUE_LOCKED: AtomicBool = AtomicBool::new(false);
/// The symbolic link the next device publishes (empty: none).
static NEXT_LINK: Mutex<String> = Mutex::new(String::new());

/// What the queue callback does with a request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Writes `0x5A` over the whole output buffer and completes with `information` bytes.
    CompleteInline { information: usize },
    /// Keeps the request (in `KEPT`), not cancelable.
    Keep,
    /// Keeps the request and marks it cancelable.
    KeepCancelable,
    /// Waits in the callback until `RELEASE_CALLBACK` is set, then completes.
    BlockThenComplete,
}

static IN_BLOCKING_CALLBACK: AtomicBool = AtomicBool::new(false);
static RELEASE_CALLBACK: AtomicBool = AtomicBool::new(false);

/// The target device's manual queue (no callbacks), for forwarding.
static MANUAL_QUEUE: AtomicUsize = AtomicUsize::new(0);

static ANSWER: Mutex<Answer> = Mutex::new(Answer::CompleteInline { information: 0 });
static KEPT: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// What the queue callback saw.
#[derive(Default, Clone)]
struct Presented {
    thread: Option<ThreadId>,
    irql: u8,
    input: Vec<u8>,
    /// Whether the input and output buffers were the same memory.
    same_buffer: bool,
    /// Presentations running when this one started (recursion into the queue).
    nesting: u32,
}

static PRESENTED: Mutex<Vec<Presented>> = Mutex::new(Vec::new());
static IN_CALLBACK: AtomicU32 = AtomicU32::new(0);
static CANCEL_CALLBACKS: AtomicUsize = AtomicUsize::new(0);

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

unsafe extern "C" fn on_cancel(request: WDFREQUEST) {
    CANCEL_CALLBACKS.fetch_add(1, Ordering::SeqCst);
    locked(&KEPT).retain(|r| *r != request as usize);
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, request, STATUS_CANCELLED) };
}

unsafe extern "C" fn on_device_control(
    _queue: WDFQUEUE,
    request: WDFREQUEST,
    output_length: usize,
    input_length: usize,
    _code: ULONG,
) {
    let nesting = IN_CALLBACK.fetch_add(1, Ordering::SeqCst);
    let mut input_buffer: PVOID = core::ptr::null_mut();
    let mut input = Vec::new();
    if input_length > 0 {
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveInputBuffer,
                request,
                input_length,
                &raw mut input_buffer,
                core::ptr::null_mut()
            )
        };
        assert_eq!(status, STATUS_SUCCESS);
        input = unsafe { core::slice::from_raw_parts(input_buffer.cast::<u8>(), input_length) }
            .to_vec();
    }
    let mut output_buffer: PVOID = core::ptr::null_mut();
    if output_length > 0 {
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveOutputBuffer,
                request,
                output_length,
                &raw mut output_buffer,
                core::ptr::null_mut()
            )
        };
        assert_eq!(status, STATUS_SUCCESS);
    }
    locked(&PRESENTED).push(Presented {
        thread: Some(std::thread::current().id()),
        irql: unsafe { ntddk::KeGetCurrentIrql() },
        input,
        same_buffer: input_length > 0 && output_length > 0 && input_buffer == output_buffer,
        nesting,
    });
    let answer = *locked(&ANSWER);
    match answer {
        Answer::CompleteInline { information } => {
            if output_length > 0 {
                unsafe { core::ptr::write_bytes(output_buffer.cast::<u8>(), 0x5A, output_length) };
            }
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfRequestCompleteWithInformation,
                    request,
                    STATUS_SUCCESS,
                    information as ULONG_PTR
                );
            }
        }
        Answer::Keep => locked(&KEPT).push(request as usize),
        Answer::BlockThenComplete => {
            IN_BLOCKING_CALLBACK.store(true, Ordering::SeqCst);
            while !RELEASE_CALLBACK.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            unsafe {
                call_unsafe_wdf_function_binding!(WdfRequestComplete, request, STATUS_SUCCESS);
            }
            IN_BLOCKING_CALLBACK.store(false, Ordering::SeqCst);
        }
        Answer::KeepCancelable => {
            locked(&KEPT).push(request as usize);
            let status = unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfRequestMarkCancelableEx,
                    request,
                    Some(on_cancel)
                )
            };
            assert_eq!(status, STATUS_SUCCESS);
        }
    }
    IN_CALLBACK.fetch_sub(1, Ordering::SeqCst);
}

unsafe extern "C" fn device_add(_driver: WDFDRIVER, mut init: PWDFDEVICE_INIT) -> NTSTATUS {
    let (status, device) = device_create(&mut init);
    if status < 0 {
        return status;
    }
    let link = locked(&NEXT_LINK).clone();
    if link.is_empty() {
        return STATUS_SUCCESS;
    }
    let mut config = WDF_IO_QUEUE_CONFIG {
        Size: size_of::<WDF_IO_QUEUE_CONFIG>() as u32,
        DispatchType: if QUEUE_SEQUENTIAL.load(Ordering::SeqCst) {
            _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchSequential
        } else {
            _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel
        },
        PowerManaged: _WDF_TRI_STATE::WdfFalse,
        DefaultQueue: 1,
        EvtIoDeviceControl: Some(on_device_control),
        ..Default::default()
    };
    let mut attributes = WDF_OBJECT_ATTRIBUTES {
        Size: size_of::<WDF_OBJECT_ATTRIBUTES>() as u32,
        ExecutionLevel: if QUEUE_PASSIVE.load(Ordering::SeqCst) {
            _WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive
        } else {
            _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent
        },
        SynchronizationScope: if QUEUE_LOCKED.load(Ordering::SeqCst) {
            _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeQueue
        } else {
            _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent
        },
        ..Default::default()
    };
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut config,
            &raw mut attributes,
            core::ptr::null_mut()
        )
    };
    if status < 0 {
        return status;
    }
    let mut manual = WDF_IO_QUEUE_CONFIG {
        Size: size_of::<WDF_IO_QUEUE_CONFIG>() as u32,
        DispatchType: _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchManual,
        PowerManaged: _WDF_TRI_STATE::WdfFalse,
        ..Default::default()
    };
    let mut queue: WDFQUEUE = core::ptr::null_mut();
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoQueueCreate,
            device,
            &raw mut manual,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut queue
        )
    };
    if status < 0 {
        return status;
    }
    MANUAL_QUEUE.store(queue as usize, Ordering::SeqCst);
    let wide: Vec<u16> = link.encode_utf16().collect();
    let name = UNICODE_STRING {
        Length: (wide.len() * 2) as u16,
        MaximumLength: (wide.len() * 2) as u16,
        Buffer: wide.as_ptr().cast_mut(),
    };
    unsafe {
        call_unsafe_wdf_function_binding!(WdfDeviceCreateSymbolicLink, device, &raw const name)
    }
}

unsafe extern "C" fn driver_entry(
    driver_object: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let mut config = driver_config(Some(device_add));
    unsafe { create_driver(driver_object, registry_path, &mut config) }
}

/// One driver with a target device (its queue behind `link`) and a host device that sends.
struct Rig {
    driver: Option<Driver>,
    target_device: Option<Device>,
    host: Option<Device>,
}

impl Rig {
    fn boot(link: &str, sequential: bool, passive: bool) -> Self {
        QUEUE_SEQUENTIAL.store(sequential, Ordering::SeqCst);
        QUEUE_PASSIVE.store(passive, Ordering::SeqCst);
        *locked(&ANSWER) = Answer::CompleteInline { information: 0 };
        locked(&PRESENTED).clear();
        locked(&KEPT).clear();
        CANCEL_CALLBACKS.store(0, Ordering::SeqCst);
        let driver = Driver::load(driver_entry).expect("driver loads");
        link.clone_into(&mut locked(&NEXT_LINK));
        let target_device = driver.add_device().expect("target device");
        target_device.start().expect("target starts");
        locked(&NEXT_LINK).clear();
        let host = driver.add_device().expect("host device");
        host.start().expect("host starts");
        Self {
            driver: Some(driver),
            target_device: Some(target_device),
            host: Some(host),
        }
    }

    fn open(&self, name: &str) -> Result<WDFIOTARGET, NTSTATUS> {
        let target = create_target(self.host.as_ref().unwrap().handle());
        let status = open_by_name(target, name);
        if status < 0 {
            delete(target.cast());
            return Err(status);
        }
        Ok(target)
    }

    fn finish(mut self) {
        self.host.take().unwrap().remove();
        self.target_device.take().unwrap().remove();
        self.driver.take().unwrap().unload();
    }
}

/// `CTL_CODE(FILE_DEVICE_UNKNOWN, 0x801, METHOD_BUFFERED, FILE_ANY_ACCESS)`.
const IOCTL_BUFFERED: u32 = 0x22_2004;
/// `CTL_CODE(FILE_DEVICE_UNKNOWN, 0x802, METHOD_NEITHER, FILE_ANY_ACCESS)`.
const IOCTL_NEITHER: u32 = 0x22_200B;

fn format_ioctl(
    request: WDFREQUEST,
    target: WDFIOTARGET,
    code: u32,
    input: WDFMEMORY,
    output: WDFMEMORY,
) {
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetFormatRequestForIoctl,
            target,
            request,
            code,
            input,
            core::ptr::null_mut(),
            output,
            core::ptr::null_mut()
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
}

/// What a completion routine records.
#[derive(Default)]
struct Completions {
    count: AtomicUsize,
    status: AtomicI32,
    information: AtomicUsize,
    irql: AtomicU32,
    thread: Mutex<Option<ThreadId>>,
    depth: AtomicU32,
}

unsafe extern "C" fn record(
    _request: WDFREQUEST,
    _target: WDFIOTARGET,
    params: PWDF_REQUEST_COMPLETION_PARAMS,
    context: WDFCONTEXT,
) {
    let log = unsafe { &*context.cast::<Completions>() };
    let params = unsafe { &*params };
    log.status.store(
        unsafe { params.IoStatus.__bindgen_anon_1.Status },
        Ordering::SeqCst,
    );
    log.information
        .store(params.IoStatus.Information as usize, Ordering::SeqCst);
    log.irql.store(
        u32::from(unsafe { ntddk::KeGetCurrentIrql() }),
        Ordering::SeqCst,
    );
    *locked(&log.thread) = Some(std::thread::current().id());
    log.depth.store(completion::depth(), Ordering::SeqCst);
    log.count.fetch_add(1, Ordering::SeqCst);
}

fn set_routine(request: WDFREQUEST, log: &Completions) {
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestSetCompletionRoutine,
            request,
            Some(record),
            core::ptr::from_ref(log).cast_mut().cast()
        );
    }
}

fn send(request: WDFREQUEST, target: WDFIOTARGET, flags: u32) -> bool {
    let mut options = WDF_REQUEST_SEND_OPTIONS {
        Size: size_of::<WDF_REQUEST_SEND_OPTIONS>() as u32,
        Flags: flags,
        Timeout: 0,
    };
    let sent = unsafe {
        call_unsafe_wdf_function_binding!(WdfRequestSend, request, target, &raw mut options)
    };
    sent != 0
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------------------------

/// `FxIoQueue::QueueRequest` calls `DispatchEvents` in the sender's context, which presents the
/// request through `DispatchRequestToDriver` without changing IRQL (fxioqueue.cpp); the IRP's
/// completion then runs the sender's routine in the completing context, so a queue callback that
/// completes at once completes the sender before `WdfRequestSend` returns. Sent while holding a
/// spin lock, all of it happens at `DISPATCH_LEVEL`.
#[test]
fn a_local_queue_is_presented_and_completes_inline_at_the_senders_irql() {
    let session = Session::begin();
    let rig = Rig::boot("\\??\\FidelityInline", false, false);
    let target = rig.open("\\??\\FidelityInline").unwrap();
    let request = create_request(target);
    let (output, _) = create_memory(8);
    let log = Completions::default();
    let me = std::thread::current().id();

    for (round, at_dispatch) in [false, true].into_iter().enumerate() {
        if round > 0 {
            reuse(request);
        }
        *locked(&ANSWER) = Answer::CompleteInline { information: 8 };
        format_ioctl(
            request,
            target,
            IOCTL_NEITHER,
            core::ptr::null_mut(),
            output,
        );
        set_routine(request, &log);
        let lock = create_spin_lock();
        if at_dispatch {
            unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockAcquire, lock) };
        }
        assert!(send(request, target, 0));
        assert_eq!(
            log.count.load(Ordering::SeqCst),
            round + 1,
            "completed before WdfRequestSend returned"
        );
        if at_dispatch {
            unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockRelease, lock) };
        }
        delete(lock.cast());
        let expected = if at_dispatch {
            DISPATCH_LEVEL
        } else {
            PASSIVE_LEVEL
        };
        let presented = locked(&PRESENTED).last().cloned().unwrap();
        assert_eq!(
            presented.thread,
            Some(me),
            "presented in the sender's thread"
        );
        assert_eq!(u32::from(presented.irql), expected, "at the sender's IRQL");
        assert_eq!(
            *locked(&log.thread),
            Some(me),
            "completed in the sender's thread"
        );
        assert_eq!(log.irql.load(Ordering::SeqCst), expected);
        assert_eq!(log.depth.load(Ordering::SeqCst), 1);
        assert_eq!(log.status.load(Ordering::SeqCst), STATUS_SUCCESS);
        assert_eq!(log.information.load(Ordering::SeqCst), 8);
    }
    delete(request.cast());
    delete(output.cast());
    delete(target.cast());
    rig.finish();
    session.end();
}

/// A sequential queue presents one request at a time (`m_Type == WdfIoQueueDispatchSequential
/// && m_DriverIoCount > 0` inserts the new request instead, `FxIoQueue::DispatchEvents`). When
/// the driver completes the presented request inside its callback, the completion does not
/// re-enter the dispatch loop (`DispatchInternalEvents` sees `m_Dispatching != 0`,
/// fxioqueue.hpp); the loop in progress presents the next request after the callback returned,
/// so the stack does not grow.
#[test]
fn a_sequential_queue_presents_one_at_a_time_without_recursing() {
    let session = Session::begin();
    let rig = Rig::boot("\\??\\FidelitySequential", true, false);
    let target = rig.open("\\??\\FidelitySequential").unwrap();
    *locked(&ANSWER) = Answer::Keep;
    let (output, _) = create_memory(4);
    let logs: Vec<Completions> = (0..3).map(|_| Completions::default()).collect();
    let requests: Vec<WDFREQUEST> = (0..3).map(|_| create_request(target)).collect();
    for (request, log) in requests.iter().zip(&logs) {
        format_ioctl(
            *request,
            target,
            IOCTL_NEITHER,
            core::ptr::null_mut(),
            output,
        );
        set_routine(*request, log);
        assert!(send(*request, target, 0));
    }
    assert_eq!(
        locked(&PRESENTED).len(),
        1,
        "one request presented, two wait"
    );
    assert_eq!(locked(&KEPT).len(), 1);

    // From now on the callback completes at once: completing the kept request presents the
    // second, whose inline completion must not present the third from inside the callback.
    *locked(&ANSWER) = Answer::CompleteInline { information: 0 };
    let first = locked(&KEPT).pop().unwrap() as WDFREQUEST;
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, first, STATUS_SUCCESS) };
    for log in &logs {
        assert_eq!(log.count.load(Ordering::SeqCst), 1);
    }
    let presented = locked(&PRESENTED).clone();
    assert_eq!(presented.len(), 3);
    assert!(
        presented.iter().all(|p| p.nesting == 0),
        "each presentation started with no other on the stack"
    );
    for request in requests {
        delete(request.cast());
    }
    delete(output.cast());
    delete(target.cast());
    rig.finish();
    session.end();
}

/// `FxIoQueue::CanThreadDispatchEventsLocked` (fxioqueue.cpp): a queue whose execution level is
/// passive, reached above `PASSIVE_LEVEL`, posts the presentation to a work item; reached at
/// `PASSIVE_LEVEL` it presents in the caller's thread.
#[test]
fn a_passive_level_queue_defers_to_a_work_item_when_sent_at_dispatch() {
    let session = Session::begin();
    let rig = Rig::boot("\\??\\FidelityPassive", false, true);
    let target = rig.open("\\??\\FidelityPassive").unwrap();
    let request = create_request(target);
    let (output, _) = create_memory(4);
    let log = Completions::default();
    let me = std::thread::current().id();
    *locked(&ANSWER) = Answer::CompleteInline { information: 4 };

    format_ioctl(
        request,
        target,
        IOCTL_NEITHER,
        core::ptr::null_mut(),
        output,
    );
    set_routine(request, &log);
    assert!(send(request, target, 0));
    assert_eq!(log.count.load(Ordering::SeqCst), 1, "at PASSIVE: inline");
    assert_eq!(locked(&PRESENTED)[0].thread, Some(me));

    reuse(request);
    format_ioctl(
        request,
        target,
        IOCTL_NEITHER,
        core::ptr::null_mut(),
        output,
    );
    set_routine(request, &log);
    let lock = create_spin_lock();
    unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockAcquire, lock) };
    assert!(send(request, target, 0));
    unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockRelease, lock) };
    delete(lock.cast());
    wait_until("the deferred presentation", || {
        log.count.load(Ordering::SeqCst) == 2
    });
    let presented = locked(&PRESENTED)[1].clone();
    assert_eq!(
        u32::from(presented.irql),
        PASSIVE_LEVEL,
        "callback at PASSIVE"
    );
    assert_ne!(presented.thread, Some(me), "on a work item's thread");
    assert_eq!(log.irql.load(Ordering::SeqCst), PASSIVE_LEVEL);
    delete(request.cast());
    delete(output.cast());
    delete(target.cast());
    rig.finish();
    session.end();
}

/// `WdfRequestSend` with `WDF_REQUEST_SEND_OPTION_SYNCHRONOUS` submits with
/// `SubmitSyncCallCompletion` (fxrequestapi.cpp), so `FxIoTarget::_SyncCompletionRoutine`
/// (fxiotarget.cpp) calls the driver's completion routine before waking the sender. The
/// `WdfIoTargetSend*Synchronously` helpers call `SubmitSync` without that action: a completion
/// routine set on the request they are given is not called.
#[test]
fn synchronous_sends_call_the_completion_routine_but_the_helpers_do_not() {
    let session = Session::begin();
    let rig = Rig::boot("\\??\\FidelitySync", false, false);
    let target = rig.open("\\??\\FidelitySync").unwrap();
    let request = create_request(target);
    let (output, _) = create_memory(4);
    let log = Completions::default();
    *locked(&ANSWER) = Answer::CompleteInline { information: 3 };

    format_ioctl(
        request,
        target,
        IOCTL_NEITHER,
        core::ptr::null_mut(),
        output,
    );
    set_routine(request, &log);
    assert!(send(
        request,
        target,
        _WDF_REQUEST_SEND_OPTIONS_FLAGS::WDF_REQUEST_SEND_OPTION_SYNCHRONOUS as u32
    ));
    assert_eq!(
        log.count.load(Ordering::SeqCst),
        1,
        "WdfRequestSend: called"
    );
    assert_eq!(
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetStatus, request) },
        STATUS_SUCCESS
    );

    reuse(request);
    set_routine(request, &log);
    let mut out = [0u8; 4];
    let mut descriptor = WDF_MEMORY_DESCRIPTOR {
        Type: _WDF_MEMORY_DESCRIPTOR_TYPE::WdfMemoryDescriptorTypeBuffer,
        ..Default::default()
    };
    descriptor.u.BufferType.Buffer = out.as_mut_ptr().cast();
    descriptor.u.BufferType.Length = 4;
    let mut bytes: ULONG_PTR = 0;
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetSendIoctlSynchronously,
            target,
            request,
            IOCTL_NEITHER,
            core::ptr::null_mut(),
            &raw mut descriptor,
            core::ptr::null_mut(),
            &raw mut bytes
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(bytes, 3);
    assert_eq!(
        log.count.load(Ordering::SeqCst),
        1,
        "the helper: not called"
    );
    delete(request.cast());
    delete(output.cast());
    delete(target.cast());
    rig.finish();
    session.end();
}

/// `WdfRequestCancelSentRequest` returns what `IoCancelIrp` returns (`FxRequestBase::Cancel`,
/// fxrequestbase.cpp): FALSE while the target owns the request without having made it
/// cancelable, and then the target's own completion status wins; TRUE once the target marked it
/// cancelable, and then its cancel routine runs.
#[test]
fn cancel_sent_request_returns_whether_the_target_made_it_cancelable() {
    let session = Session::begin();
    let rig = Rig::boot("\\??\\FidelityCancel", false, false);
    let target = rig.open("\\??\\FidelityCancel").unwrap();
    let (output, _) = create_memory(4);

    *locked(&ANSWER) = Answer::Keep;
    let request = create_request(target);
    let log = Completions::default();
    format_ioctl(
        request,
        target,
        IOCTL_NEITHER,
        core::ptr::null_mut(),
        output,
    );
    set_routine(request, &log);
    assert!(send(request, target, 0));
    assert_eq!(
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestCancelSentRequest, request) },
        0,
        "not cancelable: IoCancelIrp returns FALSE"
    );
    assert_eq!(log.count.load(Ordering::SeqCst), 0);
    let kept = locked(&KEPT).pop().unwrap() as WDFREQUEST;
    assert_ne!(
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestIsCanceled, kept) },
        0,
        "the target can see the cancel"
    );
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestCompleteWithInformation,
            kept,
            STATUS_SUCCESS,
            2
        );
    }
    assert_eq!(log.count.load(Ordering::SeqCst), 1);
    assert_eq!(
        log.status.load(Ordering::SeqCst),
        STATUS_SUCCESS,
        "the target's status wins"
    );

    *locked(&ANSWER) = Answer::KeepCancelable;
    reuse(request);
    format_ioctl(
        request,
        target,
        IOCTL_NEITHER,
        core::ptr::null_mut(),
        output,
    );
    set_routine(request, &log);
    assert!(send(request, target, 0));
    assert_ne!(
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestCancelSentRequest, request) },
        0,
        "marked cancelable: IoCancelIrp returns TRUE"
    );
    assert_eq!(CANCEL_CALLBACKS.load(Ordering::SeqCst), 1);
    assert_eq!(log.count.load(Ordering::SeqCst), 2);
    assert_eq!(log.status.load(Ordering::SeqCst), STATUS_CANCELLED);
    assert_eq!(
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestCancelSentRequest, request) },
        0,
        "completed: FALSE"
    );
    delete(request.cast());
    delete(output.cast());
    delete(target.cast());
    rig.finish();
    session.end();
}

/// `FxIoTarget::FormatIoctlRequest` (fxiotargetkm.cpp) gives a `METHOD_BUFFERED` I/O control
/// one system buffer of `max(input, output)` bytes holding the input; the target reads the input
/// from it and writes the output over it, and only `Information` bytes are copied back into the
/// sender's output buffer.
#[test]
fn method_buffered_uses_one_system_buffer_and_copies_back_information_bytes() {
    let session = Session::begin();
    let rig = Rig::boot("\\??\\FidelityBuffered", false, false);
    let target = rig.open("\\??\\FidelityBuffered").unwrap();
    let request = create_request(target);
    let (input, input_buffer) = create_memory(3);
    let (output, output_buffer) = create_memory(6);
    unsafe {
        core::ptr::copy_nonoverlapping([1u8, 2, 3].as_ptr(), input_buffer, 3);
        core::ptr::write_bytes(output_buffer, 0xEE, 6);
    }
    let log = Completions::default();
    *locked(&ANSWER) = Answer::CompleteInline { information: 2 };
    format_ioctl(request, target, IOCTL_BUFFERED, input, output);
    set_routine(request, &log);
    assert!(send(request, target, 0));
    let presented = locked(&PRESENTED).last().cloned().unwrap();
    assert!(
        presented.same_buffer,
        "input and output share the system buffer"
    );
    assert_eq!(presented.input, vec![1, 2, 3]);
    let out = unsafe { core::slice::from_raw_parts(output_buffer, 6) };
    assert_eq!(
        out,
        &[0x5A, 0x5A, 0xEE, 0xEE, 0xEE, 0xEE],
        "Information bytes only"
    );

    reuse(request);
    unsafe { core::ptr::write_bytes(output_buffer, 0xEE, 6) };
    format_ioctl(request, target, IOCTL_NEITHER, input, output);
    set_routine(request, &log);
    assert!(send(request, target, 0));
    let presented = locked(&PRESENTED).last().cloned().unwrap();
    assert!(
        !presented.same_buffer,
        "METHOD_NEITHER: the sender's own buffers"
    );
    let out = unsafe { core::slice::from_raw_parts(output_buffer, 6) };
    assert_eq!(out, &[0x5A; 6], "written in place");
    delete(request.cast());
    delete(input.cast());
    delete(output.cast());
    delete(target.cast());
    rig.finish();
    session.end();
}

/// The object manager resolves `\DosDevices\` and `\GLOBAL??\` to the `\??\` directory, and the
/// Win32 prefixes `\\?\` and `\\.\` name the same place: all open the same device.
#[test]
fn symbolic_link_prefixes_name_the_same_device() {
    let session = Session::begin();
    let rig = Rig::boot("\\DosDevices\\FidelityLink", false, false);
    for name in [
        "\\??\\FidelityLink",
        "\\DosDevices\\fidelitylink",
        "\\GLOBAL??\\FidelityLink",
        "\\\\?\\FidelityLink",
        "\\\\.\\FidelityLink",
    ] {
        let target = rig.open(name).unwrap_or_else(|s| panic!("{name}: {s:#x}"));
        delete(target.cast());
    }
    assert_eq!(
        rig.open("\\Device\\FidelityLink").unwrap_err(),
        STATUS_OBJECT_NAME_NOT_FOUND
    );
    rig.finish();
    session.end();
}

/// `IFxMemory::ValidateMemoryOffsets` (ifxmemory.hpp) fails a window that runs past the end of
/// the memory with `STATUS_INTEGER_OVERFLOW`; KMDF does not break into the debugger for it.
#[test]
fn a_format_window_past_the_end_of_the_memory_is_an_integer_overflow() {
    let session = Session::begin();
    let rig = Rig::boot("\\??\\FidelityWindow", false, false);
    let target = rig.open("\\??\\FidelityWindow").unwrap();
    let request = create_request(target);
    let (output, _) = create_memory(8);
    for (offset, length) in [(4usize, 8usize), (9, 0), (usize::MAX, 2)] {
        let mut window = WDFMEMORY_OFFSET {
            BufferOffset: offset,
            BufferLength: length,
        };
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoTargetFormatRequestForRead,
                target,
                request,
                output,
                &raw mut window,
                core::ptr::null_mut()
            )
        };
        assert_eq!(
            status, STATUS_INTEGER_OVERFLOW,
            "offset {offset} length {length}"
        );
    }
    assert!(wdk_sys::sim::verifier::take_reports().is_empty());
    delete(request.cast());
    delete(output.cast());
    delete(target.cast());
    rig.finish();
    session.end();
}

static CHAIN_TARGET: AtomicUsize = AtomicUsize::new(0);
static CHAIN_LEFT: AtomicU32 = AtomicU32::new(0);

unsafe extern "C" fn resend(
    request: WDFREQUEST,
    target: WDFIOTARGET,
    _params: PWDF_REQUEST_COMPLETION_PARAMS,
    _context: WDFCONTEXT,
) {
    if CHAIN_LEFT.fetch_sub(1, Ordering::SeqCst) <= 1 {
        return;
    }
    reuse(request);
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetFormatRequestForRead,
            target,
            request,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut()
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestSetCompletionRoutine,
            request,
            Some(resend),
            core::ptr::null_mut()
        );
    }
    assert_eq!(target as usize, CHAIN_TARGET.load(Ordering::SeqCst));
    assert!(send(request, target, 0));
}

/// A completion routine that resends into a target that completes inline nests one completion
/// inside the other, as it does on Windows until the kernel stack overflows. The simulation
/// reports it once the nesting passes its bound.
#[test]
fn verifier_resending_from_an_inline_completion_recurses() {
    let mut session = Session::begin();
    session.expect_violation(rules::COMPLETION_RECURSION);
    let device = ProgrammableTarget::create("\\??\\FidelityRecursion");
    device.set_responder(|_| Response::data(&[]));
    let rig = Rig::boot("\\??\\FidelityRecursionHost", false, false);
    let target = rig.open(device.symbolic_link()).unwrap();
    CHAIN_TARGET.store(target as usize, Ordering::SeqCst);
    let limit = completion::NESTING_LIMIT;
    CHAIN_LEFT.store(limit + 4, Ordering::SeqCst);
    let request = create_request(target);
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetFormatRequestForRead,
            target,
            request,
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut()
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestSetCompletionRoutine,
            request,
            Some(resend),
            core::ptr::null_mut()
        );
    }
    assert!(send(request, target, 0));
    assert_eq!(CHAIN_LEFT.load(Ordering::SeqCst), 0, "every resend ran");
    assert_eq!(completion::high_water(), limit + 4);
    let reports = wdk_sys::sim::verifier::take_reports();
    assert_eq!(
        reports
            .iter()
            .filter(|r| r.rule == rules::COMPLETION_RECURSION)
            .count(),
        1,
        "{reports:?}"
    );
    delete(request.cast());
    delete(target.cast());
    rig.finish();
    drop(device);
    session.end();
}

/// A completion from a DPC runs at `DISPATCH_LEVEL` on that DPC's (framework) thread: KMDF
/// raises nothing on its own, the completing context decides.
#[test]
fn a_completion_from_a_timer_runs_at_dispatch_on_a_framework_thread() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\FidelityLater");
    device.set_responder(|_| Response::data(&[7]).after(Duration::from_millis(2)));
    let rig = Rig::boot("\\??\\FidelityLaterHost", false, false);
    let target = rig.open(device.symbolic_link()).unwrap();
    let request = create_request(target);
    let (output, _) = create_memory(1);
    let log = Completions::default();
    format_ioctl(
        request,
        target,
        IOCTL_NEITHER,
        core::ptr::null_mut(),
        output,
    );
    set_routine(request, &log);
    assert!(send(request, target, 0));
    wait_until("the delayed completion", || {
        log.count.load(Ordering::SeqCst) == 1
    });
    assert_eq!(log.irql.load(Ordering::SeqCst), DISPATCH_LEVEL);
    assert_ne!(*locked(&log.thread), Some(std::thread::current().id()));
    assert_eq!(log.depth.load(Ordering::SeqCst), 1);
    delete(request.cast());
    delete(output.cast());
    delete(target.cast());
    rig.finish();
    drop(device);
    session.end();
}

/// `FxRequest::Reuse` (fxrequest.cpp): a request a queue presented may be reused (it keeps its
/// IRP); only `WDF_REQUEST_REUSE_SET_NEW_IRP` is refused, with
/// `STATUS_WDF_REQUEST_INVALID_STATE`.
#[test]
fn a_presented_request_may_be_reused_but_not_given_a_new_irp() {
    let session = Session::begin();
    let rig = Rig::boot("\\??\\FidelityReuse", false, false);
    let target = rig.open("\\??\\FidelityReuse").unwrap();
    *locked(&ANSWER) = Answer::Keep;
    let request = create_request(target);
    let log = Completions::default();
    format_ioctl(
        request,
        target,
        IOCTL_NEITHER,
        core::ptr::null_mut(),
        core::ptr::null_mut(),
    );
    set_routine(request, &log);
    assert!(send(request, target, 0));
    let kept = locked(&KEPT).pop().unwrap() as WDFREQUEST;
    let mut params = WDF_REQUEST_REUSE_PARAMS {
        Size: size_of::<WDF_REQUEST_REUSE_PARAMS>() as u32,
        Status: STATUS_SUCCESS,
        ..Default::default()
    };
    assert_eq!(
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestReuse, kept, &raw mut params) },
        STATUS_SUCCESS
    );
    params.Flags = _WDF_REQUEST_REUSE_FLAGS::WDF_REQUEST_REUSE_SET_NEW_IRP as u32;
    assert_eq!(
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestReuse, kept, &raw mut params) },
        STATUS_WDF_REQUEST_INVALID_STATE
    );
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, kept, STATUS_SUCCESS) };
    assert_eq!(log.count.load(Ordering::SeqCst), 1);
    delete(request.cast());
    delete(target.cast());
    rig.finish();
    session.end();
}

/// KMDF serialises the callbacks of a queue with `WdfSynchronizationScopeQueue` under a
/// presentation lock and defers to a DPC or work item when its owner re-enters
/// (`FxIoQueue::CanThreadDispatchEventsLocked`). The simulation does not model that lock, so it
/// refuses the configuration with a report instead of silently running the callbacks unlocked.
#[test]
fn verifier_a_queue_presentation_lock_is_refused_not_ignored() {
    let mut session = Session::begin();
    session.expect_violation(rules::INVALID_ARGUMENT);
    QUEUE_LOCKED.store(true, Ordering::SeqCst);
    let driver = Driver::load(driver_entry).expect("driver loads");
    "\\??\\FidelityLocked".clone_into(&mut locked(&NEXT_LINK));
    let added = driver.add_device();
    QUEUE_LOCKED.store(false, Ordering::SeqCst);
    locked(&NEXT_LINK).clear();
    assert_eq!(added.err(), Some(STATUS_INVALID_PARAMETER));
    let reports = wdk_sys::sim::verifier::take_reports();
    assert!(
        reports.iter().any(
            |r| r.rule == rules::INVALID_ARGUMENT && r.message.contains("SynchronizationScope")
        ),
        "{reports:?}"
    );
    driver.unload();
    session.end();
}

/// `FxRequestBase::ValidateTarget` (fxrequestbase.cpp) starts every `Format*Request` and
/// `FxRequest::_Create` with a target: a target that was never opened, or was closed, has no
/// stack size and fails both with `STATUS_INVALID_DEVICE_STATE` (no request is handed back).
#[test]
fn formatting_for_or_creating_against_a_closed_target_is_an_invalid_device_state() {
    let session = Session::begin();
    let rig = Rig::boot("\\??\\FidelityClosed", false, false);
    let target = rig.open("\\??\\FidelityClosed").unwrap();
    let request = create_request(target);
    let (output, _) = create_memory(4);
    let mut unopened: WDFIOTARGET = core::ptr::null_mut();
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetCreate,
            rig.host.as_ref().unwrap().handle(),
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut unopened
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetClose, target) };
    for closed in [target, unopened] {
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoTargetFormatRequestForIoctl,
                closed,
                request,
                IOCTL_NEITHER,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                output,
                core::ptr::null_mut()
            )
        };
        assert_eq!(status, STATUS_INVALID_DEVICE_STATE, "format");
        let mut created: WDFREQUEST = core::ptr::null_mut();
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestCreate,
                WDF_NO_OBJECT_ATTRIBUTES,
                closed,
                &raw mut created
            )
        };
        assert_eq!(status, STATUS_INVALID_DEVICE_STATE, "create");
        assert!(created.is_null(), "no request handed back");
    }
    assert!(wdk_sys::sim::verifier::take_reports().is_empty());
    delete(request.cast());
    delete(output.cast());
    delete(unopened.cast());
    delete(target.cast());
    rig.finish();
    session.end();
}

/// A request whose cancel arrived while the driver owned it (not cancelable, so
/// `WdfRequestCancelSentRequest` returned FALSE) is cancelled as soon as the driver forwards it to
/// a queue: waiting on a queue it is cancelable again (`FxIoQueue::QueueRequestFromForward`
/// inserts it into the cancel-safe queue, which completes an already cancelled IRP). Forwarding
/// from the sender's own thread must process that cancel without re-entering a lock it holds.
#[test]
fn a_request_cancelled_while_owned_is_cancelled_when_forwarded_to_a_queue() {
    let session = Session::begin();
    let rig = Rig::boot("\\??\\FidelityForward", false, false);
    let target = rig.open("\\??\\FidelityForward").unwrap();
    *locked(&ANSWER) = Answer::Keep;
    let request = create_request(target);
    let log = Completions::default();
    format_ioctl(
        request,
        target,
        IOCTL_NEITHER,
        core::ptr::null_mut(),
        core::ptr::null_mut(),
    );
    set_routine(request, &log);
    assert!(send(request, target, 0));
    assert_eq!(
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestCancelSentRequest, request) },
        0
    );
    let kept = locked(&KEPT).pop().unwrap() as WDFREQUEST;
    let manual = MANUAL_QUEUE.load(Ordering::SeqCst) as WDFQUEUE;
    let status =
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestForwardToIoQueue, kept, manual) };
    assert_eq!(status, STATUS_SUCCESS);
    assert_eq!(log.count.load(Ordering::SeqCst), 1, "cancelled on arrival");
    assert_eq!(log.status.load(Ordering::SeqCst), STATUS_CANCELLED);
    delete(request.cast());
    delete(target.cast());
    rig.finish();
    session.end();
}

/// `FxIoQueue::Dispose` (fxioqueue.cpp) waits until no other thread is in the queue's dispatch
/// loop (`m_FinishDisposing`, set by `DispatchEvents` when `m_Dispatching` drops to its own
/// level), so the queue and its context outlive every callback in progress: deleting a device
/// while another thread is inside its queue callback waits for that callback to return. The
/// request comes from user mode here, so nothing else (an I/O target's close) holds the removal.
#[test]
fn deleting_a_queue_waits_for_a_callback_running_on_another_thread() {
    let session = Session::begin();
    let mut rig = Rig::boot("\\??\\FidelityDispose", false, false);
    *locked(&ANSWER) = Answer::BlockThenComplete;
    IN_BLOCKING_CALLBACK.store(false, Ordering::SeqCst);
    RELEASE_CALLBACK.store(false, Ordering::SeqCst);
    let user = std::thread::spawn(|| {
        let file = wdk_sys::sim::user::File::open("\\\\.\\FidelityDispose").expect("opens");
        let mut output = [0u8; 0];
        let result = file.device_io_control(IOCTL_NEITHER, &[], &mut output);
        drop(file);
        result
    });
    wait_until("the callback", || {
        IN_BLOCKING_CALLBACK.load(Ordering::SeqCst)
    });
    let finished = std::sync::Arc::new(AtomicBool::new(false));
    let device = rig.target_device.take().unwrap();
    let removal = {
        let finished = finished.clone();
        std::thread::spawn(move || {
            device.remove();
            finished.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !finished.load(Ordering::SeqCst),
        "the removal waits for the callback in progress"
    );
    RELEASE_CALLBACK.store(true, Ordering::SeqCst);
    assert_eq!(user.join().unwrap(), Ok(0));
    removal.join().unwrap();
    assert!(finished.load(Ordering::SeqCst));
    rig.host.take().unwrap().remove();
    rig.driver.take().unwrap().unload();
    session.end();
}
