//! The programmable target's answer contexts (inline, from a worker, after a delay, released by
//! the test) and cancel policies (honour, ignore, delay), driven through an I/O target with raw
//! WDF calls.
//!
//! Each test pins where the *target* completed the packet (`ProgrammableTarget::last_completed`:
//! thread and IRQL), which is the target's own behaviour. Where the sender's completion routine
//! then runs is the framework's choice: in the completing context at its IRQL (as KMDF does), or,
//! in the older simulation model, on a framework worker at `DISPATCH_LEVEL`. The routine's
//! context is checked against exactly those two possibilities (`assert_routine_context`).
// The simulation's own copy of the binding macro counts as a local macro here, so its internal
// unsafe blocks are linted as if they were this file's.
#![allow(
    clippy::missing_safety_doc,
    clippy::multiple_unsafe_ops_per_block,
    clippy::undocumented_unsafe_blocks
)]

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use wdk_sys::sim::Session;
use wdk_sys::sim::pnp::{Device, Driver};
use wdk_sys::sim::target::{CancelPolicy, Completed, ProgrammableTarget, Response};
use wdk_sys::*;

const IOCTL: u32 = 0x22_2004;
const PASSIVE: KIRQL = PASSIVE_LEVEL as KIRQL;
const DISPATCH: KIRQL = DISPATCH_LEVEL as KIRQL;
const WAIT: Duration = Duration::from_secs(10);

mod common;

use common::{
    create_memory, create_request, create_target, delete, driver_entry, open_by_name, reuse,
};

/// A session, a started device of a test driver, and an I/O target opened on a programmable
/// target, with one request and an output buffer.
struct Bench {
    session: Option<Session>,
    driver: Option<Driver>,
    device: Option<Device>,
    target: WDFIOTARGET,
    request: WDFREQUEST,
    output: WDFMEMORY,
    output_buffer: *mut u8,
}

impl Bench {
    /// Begins a session first (the target must be created inside it), then opens `device`.
    fn new(device: &ProgrammableTarget) -> Self {
        let driver = Driver::load(driver_entry).expect("driver loads");
        let sim_device = driver.add_device().expect("device added");
        sim_device.start().expect("device starts");
        let target = create_target(sim_device.handle());
        let status = open_by_name(target, device.symbolic_link());
        assert_eq!(status, STATUS_SUCCESS);
        let request = create_request(target);
        let (output, output_buffer) = create_memory(8);
        Self {
            session: None,
            driver: Some(driver),
            device: Some(sim_device),
            target,
            request,
            output,
            output_buffer,
        }
    }

    /// Formats `request` as an IOCTL into the bench's output buffer and sends it with `log`'s
    /// completion routine; returns what `WdfRequestSend` returned.
    fn send_request(
        &self,
        request: WDFREQUEST,
        log: &Log,
        options: Option<WDF_REQUEST_SEND_OPTIONS>,
    ) -> bool {
        // SAFETY: valid handles.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoTargetFormatRequestForIoctl,
                self.target,
                request,
                IOCTL,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                self.output,
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
        unsafe {
            call_unsafe_wdf_function_binding!(WdfRequestSend, request, self.target, options_ptr)
                != 0
        }
    }

    /// Sends the bench's request.
    fn send(&self, log: &Log) -> bool {
        self.send_request(self.request, log, None)
    }

    /// The first `length` bytes of the output buffer.
    fn output(&self, length: usize) -> Vec<u8> {
        // SAFETY: the buffer holds 8 bytes and lives as long as the bench.
        unsafe { core::slice::from_raw_parts(self.output_buffer, length.min(8)) }.to_vec()
    }

    fn finish(mut self, extra: &[WDFREQUEST]) {
        for request in extra {
            delete(request.cast());
        }
        delete(self.request.cast());
        delete(self.output.cast());
        self.device.take().unwrap().remove();
        self.driver.take().unwrap().unload();
        if let Some(session) = self.session.take() {
            session.end();
        }
    }
}

fn status_of(request: WDFREQUEST) -> NTSTATUS {
    // SAFETY: a valid request.
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetStatus, request) }
}

fn cancel(request: WDFREQUEST) -> bool {
    // SAFETY: a valid request.
    unsafe { call_unsafe_wdf_function_binding!(WdfRequestCancelSentRequest, request) != 0 }
}

/// Where a completion routine ran.
#[derive(Debug, Clone, Copy)]
struct Seen {
    thread: ThreadId,
    /// The thread is one of the framework's own.
    framework_thread: bool,
    irql: KIRQL,
    at: Instant,
}

/// What completion routines record.
#[derive(Default)]
struct Log {
    completions: AtomicUsize,
    status: AtomicI32,
    information: AtomicUsize,
    seen: Mutex<Option<Seen>>,
}

impl Log {
    fn status(&self) -> NTSTATUS {
        self.status.load(Ordering::SeqCst)
    }

    fn count(&self) -> usize {
        self.completions.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .expect("the completion routine ran")
    }

    /// Waits until `count` completion routines ran.
    fn wait_for(&self, count: usize) {
        let deadline = Instant::now() + WAIT;
        while self.count() < count {
            assert!(Instant::now() < deadline, "completion did not arrive");
            std::thread::sleep(Duration::from_millis(1));
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
    // SAFETY: the framework passes valid parameters.
    let params = unsafe { &*params };
    // SAFETY: no arguments.
    let irql = unsafe { wdk_sys::ntddk::KeGetCurrentIrql() };
    let thread = std::thread::current();
    *log.seen.lock().unwrap() = Some(Seen {
        thread: thread.id(),
        framework_thread: thread.name().is_some_and(|n| n.starts_with("kmdf-sim-")),
        irql,
        at: Instant::now(),
    });
    log.status.store(status_of(request), Ordering::SeqCst);
    log.information
        .store(params.IoStatus.Information as usize, Ordering::SeqCst);
    log.completions.fetch_add(1, Ordering::SeqCst);
}

/// The completion routine ran either in the context that completed the packet, at its IRQL
/// (KMDF's model), or on a framework thread at `DISPATCH_LEVEL` (the simulation's older model
/// that deferred every completion routine to a worker). Nothing else is acceptable.
fn assert_routine_context(log: &Log, completed: &Completed) {
    let seen = log.seen();
    let inline = seen.thread == completed.thread && seen.irql == completed.irql;
    let deferred = seen.framework_thread && seen.irql == DISPATCH;
    assert!(
        inline || deferred,
        "completion routine ran at {seen:?}; the target completed at {completed:?}"
    );
}

fn last_completed(device: &ProgrammableTarget) -> Completed {
    device
        .last_completed()
        .expect("the target completed a request")
}

/// Begins a session and creates a target under `name` in it.
fn begin(name: &str) -> (Session, ProgrammableTarget) {
    let session = Session::begin();
    let device = ProgrammableTarget::create(name);
    (session, device)
}

fn bench(session: Session, device: &ProgrammableTarget) -> Bench {
    let mut bench = Bench::new(device);
    bench.session = Some(session);
    bench
}

#[test]
fn inline_answer_completes_in_the_senders_thread_at_its_irql_before_send_returns() {
    let (session, device) = begin("\\??\\SimProgInline");
    let test_thread = std::thread::current().id();
    let responder_thread = Arc::new(Mutex::new(None));
    {
        let responder_thread = responder_thread.clone();
        device.set_responder(move |received| {
            *responder_thread.lock().unwrap() = Some(std::thread::current().id());
            Response::data(&[7, 8, 9, received.sequence as u8])
        });
    }
    let bench = bench(session, &device);
    let log = Log::default();

    assert!(bench.send(&log));
    // Completed inside WdfRequestSend: the status is final and the target holds nothing.
    assert_eq!(status_of(bench.request), STATUS_SUCCESS);
    assert_eq!(device.pending(), 0);
    assert_eq!(device.counters().answered, 1);
    let completed = last_completed(&device);
    assert_eq!(completed.sequence, 1);
    assert_eq!(completed.status, STATUS_SUCCESS);
    assert_eq!(completed.information, 4);
    assert_eq!(completed.thread, test_thread);
    assert_eq!(completed.irql, PASSIVE);
    assert!(!completed.cancel_requested);
    assert_eq!(*responder_thread.lock().unwrap(), Some(test_thread));
    log.wait_for(1);
    assert_eq!(log.status(), STATUS_SUCCESS);
    assert_eq!(log.information.load(Ordering::SeqCst), 4);
    assert_eq!(bench.output(4), [7, 8, 9, 1]);
    assert_routine_context(&log, &completed);

    // Sent at DISPATCH_LEVEL (as from a DPC), it completes at DISPATCH_LEVEL in the same thread.
    reuse(bench.request);
    assert!(wdk_sys::sim::at_irql(DISPATCH, || bench.send(&log)));
    assert_eq!(status_of(bench.request), STATUS_SUCCESS);
    let completed = last_completed(&device);
    assert_eq!(completed.sequence, 2);
    assert_eq!(completed.thread, test_thread);
    assert_eq!(completed.irql, DISPATCH);
    log.wait_for(2);
    assert_routine_context(&log, &completed);

    let counters = device.counters();
    assert_eq!(
        (counters.received, counters.ioctls, counters.answered),
        (2, 2, 2)
    );
    assert_eq!((counters.cancelled, counters.cancels_received), (0, 0));
    bench.finish(&[]);
}

#[test]
fn worker_answer_completes_on_a_framework_thread_at_dispatch_before_a_delayed_one() {
    let (session, device) = begin("\\??\\SimProgWorker");
    let test_thread = std::thread::current().id();
    // The first request is answered after a long delay, the second from a worker at once.
    device.set_responder(|received| {
        if received.sequence == 1 {
            Response::data(&[1]).after(Duration::from_millis(400))
        } else {
            Response::data(&[2, 2]).from_worker()
        }
    });
    let bench = bench(session, &device);
    let slow_log = Log::default();
    let fast_log = Log::default();
    let fast = create_request(bench.target);
    let start = Instant::now();
    assert!(bench.send(&slow_log));
    assert!(bench.send_request(fast, &fast_log, None));
    fast_log.wait_for(1);
    let completed = last_completed(&device);
    assert_eq!(completed.sequence, 2, "the worker answer came first");
    assert_eq!(completed.status, STATUS_SUCCESS);
    assert_eq!(completed.information, 2);
    assert_ne!(completed.thread, test_thread);
    assert_eq!(completed.irql, DISPATCH);
    assert_eq!(fast_log.status(), STATUS_SUCCESS);
    assert!(fast_log.seen().framework_thread);
    assert_routine_context(&fast_log, &completed);
    assert_eq!(slow_log.count(), 0, "the delayed answer is still pending");
    assert_eq!(device.pending(), 1);

    slow_log.wait_for(1);
    assert!(slow_log.seen().at >= fast_log.seen().at);
    assert!(start.elapsed() >= Duration::from_millis(400));
    let completed = last_completed(&device);
    assert_eq!(completed.sequence, 1);
    assert_ne!(completed.thread, test_thread);
    assert_eq!(completed.irql, DISPATCH);
    assert_routine_context(&slow_log, &completed);
    assert_eq!(device.counters().answered, 2);
    assert_eq!(device.pending(), 0);
    bench.finish(&[fast]);
}

#[test]
fn delayed_answer_completes_from_a_timer_at_dispatch_after_the_delay() {
    let (session, device) = begin("\\??\\SimProgDelay");
    let delay = Duration::from_millis(200);
    device.set_responder(move |_| Response::status(STATUS_DEVICE_BUSY).after(delay));
    let bench = bench(session, &device);
    let log = Log::default();
    let start = Instant::now();
    assert!(bench.send(&log));
    assert_eq!(status_of(bench.request), STATUS_PENDING);
    assert_eq!(device.pending(), 1);
    assert_eq!(device.held(), 0, "a delayed request is not held");
    log.wait_for(1);
    assert!(log.seen().at - start >= delay);
    assert_eq!(log.status(), STATUS_DEVICE_BUSY);
    let completed = last_completed(&device);
    assert_eq!(completed.status, STATUS_DEVICE_BUSY);
    assert_ne!(completed.thread, std::thread::current().id());
    assert_eq!(completed.irql, DISPATCH);
    assert_routine_context(&log, &completed);
    assert_eq!(device.counters().answered, 1);
    bench.finish(&[]);
}

#[test]
fn held_requests_are_released_oldest_first_in_the_releasing_thread_at_its_irql() {
    let (session, device) = begin("\\??\\SimProgRelease");
    device.set_responder(|_| Response::Hold);
    let device = Arc::new(device);
    let bench = bench(session, &device);
    let first_log = Log::default();
    let second_log = Log::default();
    let second = create_request(bench.target);
    assert!(bench.send(&first_log));
    assert!(bench.send_request(second, &second_log, None));
    assert!(device.wait_held(2, WAIT));
    assert_eq!(status_of(bench.request), STATUS_PENDING);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(
        first_log.count() + second_log.count(),
        0,
        "held until released"
    );
    assert_eq!(
        device.release(1, &Response::Hold),
        0,
        "Hold releases nothing"
    );
    assert_eq!(device.held(), 2);

    // Released from another thread at PASSIVE_LEVEL: completed there, before release returns.
    let other_thread = {
        let device = device.clone();
        std::thread::spawn(move || {
            let released = device.release(1, &Response::data(&[5, 6]));
            (
                std::thread::current().id(),
                released,
                device.counters().answered,
            )
        })
    };
    let (releaser_thread, released, answered_when_release_returned) = other_thread.join().unwrap();
    assert_eq!(released, 1);
    assert_eq!(answered_when_release_returned, 1);
    let completed = last_completed(&device);
    assert_eq!(completed.sequence, 1, "oldest first");
    assert_eq!(completed.thread, releaser_thread);
    assert_eq!(completed.irql, PASSIVE);
    first_log.wait_for(1);
    assert_eq!(first_log.status(), STATUS_SUCCESS);
    assert_eq!(bench.output(2), [5, 6]);
    assert_routine_context(&first_log, &completed);
    assert_eq!(device.held(), 1);
    assert_eq!(second_log.count(), 0);

    // Released at DISPATCH_LEVEL from the test thread: completed there, at DISPATCH_LEVEL.
    let released = wdk_sys::sim::at_irql(DISPATCH, || {
        device.release_all(&Response::status(STATUS_END_OF_FILE))
    });
    assert_eq!(released, 1);
    let completed = last_completed(&device);
    assert_eq!(completed.sequence, 2);
    assert_eq!(completed.status, STATUS_END_OF_FILE);
    assert_eq!(completed.thread, std::thread::current().id());
    assert_eq!(completed.irql, DISPATCH);
    second_log.wait_for(1);
    assert_eq!(second_log.status(), STATUS_END_OF_FILE);
    assert_routine_context(&second_log, &completed);
    assert_eq!(device.counters().answered, 2);
    assert_eq!(device.pending(), 0);
    bench.finish(&[second]);
}

#[test]
fn a_deferred_release_completes_from_a_framework_thread() {
    let (session, device) = begin("\\??\\SimProgReleaseDeferred");
    device.set_responder(|_| Response::Hold);
    let bench = bench(session, &device);
    let test_thread = std::thread::current().id();
    let log = Log::default();

    // Released to a worker: release returns at once, the request is pending but no longer held.
    assert!(bench.send(&log));
    assert!(device.wait_held(1, WAIT));
    assert_eq!(device.release_all(&Response::data(&[3]).from_worker()), 1);
    log.wait_for(1);
    let completed = last_completed(&device);
    assert_eq!(completed.status, STATUS_SUCCESS);
    assert_ne!(completed.thread, test_thread);
    assert_eq!(completed.irql, DISPATCH);
    assert_routine_context(&log, &completed);

    // Released with a delay.
    reuse(bench.request);
    assert!(bench.send(&log));
    assert!(device.wait_held(1, WAIT));
    let delay = Duration::from_millis(150);
    let start = Instant::now();
    assert_eq!(device.release_all(&Response::data(&[4]).after(delay)), 1);
    assert_eq!(device.held(), 0);
    assert_eq!(device.pending(), 1);
    assert_eq!(
        device.release_all(&Response::data(&[9])),
        0,
        "a released request is not held any more"
    );
    log.wait_for(2);
    assert!(log.seen().at - start >= delay);
    let completed = last_completed(&device);
    assert_eq!(completed.sequence, 2);
    assert_ne!(completed.thread, test_thread);
    assert_eq!(completed.irql, DISPATCH);
    assert_eq!(bench.output(1), [4]);
    assert_routine_context(&log, &completed);
    assert_eq!(device.counters().answered, 2);
    bench.finish(&[]);
}

#[test]
fn honour_policy_cancel_completes_cancelled_at_once_in_the_cancelling_thread() {
    let (session, device) = begin("\\??\\SimProgHonour");
    assert_eq!(device.cancel_policy(), CancelPolicy::Honour, "the default");
    device.set_responder(|received| {
        if received.sequence == 1 {
            Response::Hold
        } else {
            Response::data(&[1]).after(Duration::from_secs(30))
        }
    });
    let bench = bench(session, &device);
    let test_thread = std::thread::current().id();
    let log = Log::default();

    // A held request. The policy is fixed when the request is parked: changing it afterwards
    // does not make this one ignore its cancel.
    assert!(bench.send(&log));
    assert!(device.wait_held(1, WAIT));
    device.set_cancel_policy(CancelPolicy::Ignore);
    // TRUE under both simulation models: a cancel routine was set, and it ran.
    assert!(cancel(bench.request));
    let counters = device.counters();
    assert_eq!((counters.cancels_received, counters.cancelled), (1, 1));
    assert_eq!(counters.answered, 0);
    assert_eq!(device.pending(), 0, "completed before the cancel returned");
    let completed = last_completed(&device);
    assert_eq!(completed.status, STATUS_CANCELLED);
    assert_eq!(completed.thread, test_thread);
    assert_eq!(completed.irql, PASSIVE);
    assert!(completed.cancel_requested);
    log.wait_for(1);
    assert_eq!(log.status(), STATUS_CANCELLED);
    assert_routine_context(&log, &completed);
    assert_eq!(device.release_all(&Response::data(&[1])), 0);

    // A request whose answer is 30 s away completes cancelled at once too.
    device.set_cancel_policy(CancelPolicy::Honour);
    reuse(bench.request);
    assert!(bench.send(&log));
    assert_eq!(device.pending(), 1);
    let start = Instant::now();
    assert!(cancel(bench.request));
    assert_eq!(device.pending(), 0);
    log.wait_for(2);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(log.status(), STATUS_CANCELLED);
    let completed = last_completed(&device);
    assert_eq!(
        (completed.sequence, completed.status),
        (2, STATUS_CANCELLED)
    );
    assert_eq!(completed.thread, test_thread);
    let counters = device.counters();
    assert_eq!((counters.cancels_received, counters.cancelled), (2, 2));
    assert_eq!((counters.answered, counters.cancels_ignored), (0, 0));
    bench.finish(&[]);
}

#[test]
fn ignore_policy_cancel_is_not_honoured_and_the_answer_completes_the_request() {
    let (session, device) = begin("\\??\\SimProgIgnore");
    device.set_cancel_policy(CancelPolicy::Ignore);
    let answer_delay = Duration::from_millis(150);
    device.set_responder(move |received| {
        if received.sequence == 1 {
            Response::Hold
        } else {
            Response::data(&[received.sequence as u8]).after(answer_delay)
        }
    });
    let bench = bench(session, &device);
    let log = Log::default();

    // Held: a cancel does not complete it; the target sees only the packet's cancel flag.
    assert!(bench.send(&log));
    assert!(device.wait_held(1, WAIT));
    // WdfRequestCancelSentRequest returns what IoCancelIrp returns (FxRequestBase::Cancel,
    // fxrequestbase.cpp): FALSE, since the target set no cancel routine.
    assert!(
        !cancel(bench.request),
        "no cancel routine: IoCancelIrp returns FALSE"
    );
    let counters = device.counters();
    assert_eq!((counters.cancels_received, counters.cancelled), (0, 0));
    assert_eq!(device.pending(), 1);
    assert_eq!(device.held(), 1);
    assert_eq!(device.pending_cancel_requested(), 1);
    assert_eq!(status_of(bench.request), STATUS_PENDING);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(log.count(), 0, "the ignored cancel completed nothing");
    assert_eq!(device.release_all(&Response::data(&[42])), 1);
    log.wait_for(1);
    assert_eq!(log.status(), STATUS_SUCCESS);
    assert_eq!(bench.output(1), [42]);
    let completed = last_completed(&device);
    assert_eq!(completed.status, STATUS_SUCCESS);
    assert!(completed.cancel_requested);
    assert_routine_context(&log, &completed);
    let counters = device.counters();
    assert_eq!((counters.answered, counters.cancels_ignored), (1, 1));
    assert_eq!((counters.cancels_received, counters.cancelled), (0, 0));
    assert_eq!(device.pending_cancel_requested(), 0);

    // A send timeout cancels the request, which the target ignores: it completes with its
    // answer after the answer's delay, not with STATUS_IO_TIMEOUT.
    reuse(bench.request);
    let options = WDF_REQUEST_SEND_OPTIONS {
        Size: size_of::<WDF_REQUEST_SEND_OPTIONS>() as u32,
        Flags: _WDF_REQUEST_SEND_OPTIONS_FLAGS::WDF_REQUEST_SEND_OPTION_TIMEOUT as u32,
        Timeout: -10 * 10_000, // 10 ms, relative
    };
    let start = Instant::now();
    assert!(bench.send_request(bench.request, &log, Some(options)));
    log.wait_for(2);
    assert!(log.seen().at - start >= answer_delay);
    assert_eq!(log.status(), STATUS_SUCCESS);
    assert_eq!(bench.output(1), [2]);
    let completed = last_completed(&device);
    assert_eq!((completed.sequence, completed.status), (2, STATUS_SUCCESS));
    assert!(
        completed.cancel_requested,
        "the timeout requested the cancel"
    );
    assert_eq!(completed.irql, DISPATCH);
    assert_routine_context(&log, &completed);

    // Not cancelled: not counted as an ignored cancel.
    reuse(bench.request);
    assert!(bench.send(&log));
    log.wait_for(3);
    let counters = device.counters();
    assert_eq!((counters.answered, counters.cancels_ignored), (3, 2));
    assert_eq!((counters.cancels_received, counters.cancelled), (0, 0));
    assert!(!last_completed(&device).cancel_requested);
    bench.finish(&[]);
}

#[test]
fn ignore_policy_does_not_hold_back_removal() {
    let (session, device) = begin("\\??\\SimProgIgnoreRemoval");
    device.set_cancel_policy(CancelPolicy::Ignore);
    device.set_responder(|_| Response::Hold);
    let bench = bench(session, &device);
    let log = Log::default();
    assert!(bench.send(&log));
    assert!(device.wait_held(1, WAIT));
    let _ = cancel(bench.request);
    device.surprise_remove();
    log.wait_for(1);
    assert_eq!(log.status(), STATUS_CANCELLED);
    let counters = device.counters();
    assert_eq!(counters.failed_removed, 1);
    assert_eq!((counters.cancelled, counters.answered), (0, 0));
    assert_eq!(device.pending(), 0);
    bench.finish(&[]);
}

#[test]
fn delay_policy_cancel_is_noticed_and_completes_cancelled_after_the_delay() {
    let (session, device) = begin("\\??\\SimProgCancelDelay");
    let cancel_delay = Duration::from_millis(200);
    device.set_cancel_policy(CancelPolicy::Delay(cancel_delay));
    device.set_responder(|received| {
        if received.sequence == 1 {
            Response::Hold
        } else {
            // Due before the delayed cancel: dropped once the cancel is noticed.
            Response::data(&[1]).after(Duration::from_millis(100))
        }
    });
    let bench = bench(session, &device);
    let test_thread = std::thread::current().id();
    let log = Log::default();

    assert!(bench.send(&log));
    assert!(device.wait_held(1, WAIT));
    let start = Instant::now();
    // TRUE under both simulation models: a cancel routine was set, and it ran.
    assert!(cancel(bench.request));
    let counters = device.counters();
    assert_eq!((counters.cancels_received, counters.cancelled), (1, 0));
    assert_eq!(device.pending(), 1);
    assert_eq!(device.held(), 0, "the cancel owns it now");
    assert_eq!(device.pending_cancel_requested(), 1);
    assert_eq!(device.release_all(&Response::data(&[1])), 0);
    assert_eq!(status_of(bench.request), STATUS_PENDING);
    log.wait_for(1);
    assert!(log.seen().at - start >= cancel_delay);
    assert_eq!(log.status(), STATUS_CANCELLED);
    let completed = last_completed(&device);
    assert_eq!(completed.status, STATUS_CANCELLED);
    assert!(completed.cancel_requested);
    assert_ne!(completed.thread, test_thread);
    assert_eq!(completed.irql, DISPATCH);
    assert_routine_context(&log, &completed);
    let counters = device.counters();
    assert_eq!((counters.cancels_received, counters.cancelled), (1, 1));
    assert_eq!(counters.answered, 0);

    // A delayed answer due before the delayed cancel: the noticed cancel wins, after its delay.
    reuse(bench.request);
    assert!(bench.send(&log));
    let start = Instant::now();
    assert!(cancel(bench.request));
    log.wait_for(2);
    assert!(log.seen().at - start >= cancel_delay);
    assert_eq!(log.status(), STATUS_CANCELLED);
    let completed = last_completed(&device);
    assert_eq!(
        (completed.sequence, completed.status),
        (2, STATUS_CANCELLED)
    );
    assert_eq!(completed.irql, DISPATCH);
    let counters = device.counters();
    assert_eq!((counters.cancels_received, counters.cancelled), (2, 2));
    assert_eq!((counters.answered, counters.cancels_ignored), (0, 0));
    assert_eq!(device.pending(), 0);
    bench.finish(&[]);
}
