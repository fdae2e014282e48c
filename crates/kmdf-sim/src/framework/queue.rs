//! `WDFQUEUE` and the driver's side of requests a queue presents: queue creation (default or
//! not; parallel, sequential or manual; power-managed or not), request dispatching by type,
//! presentation to `EvtIo*`, retrieval from manual queues, forwarding, cancelable requests,
//! completion, buffer retrieval with minimum lengths, and stop / start / purge.
//!
//! Every presented request is in exactly one place: on a queue, owned by the driver, sent to a
//! target, or completed. Cancellation of the packet behind it, the driver's completion and
//! `WdfRequestUnmarkCancelable` meet under the request's lock, so each completes once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use super::io::{Irp, MajorFunction, lock};
use super::object::{self, Attributes, Object, Payload};
use super::request::{self, Owner, Request};
use super::table::Entry;
use super::verifier::{self, rules};
use super::{boolean, device, exec, irql, memory, wdf_entry};
use crate::constants::{
    STATUS_BUFFER_TOO_SMALL, STATUS_CANCELLED, STATUS_INFO_LENGTH_MISMATCH,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER,
    STATUS_NO_MORE_ENTRIES, STATUS_SUCCESS,
};
use crate::types::{
    _WDF_IO_QUEUE_DISPATCH_TYPE as DISPATCH, _WDF_IO_QUEUE_STATE, _WDF_REQUEST_TYPE,
    _WDF_TRI_STATE, BOOLEAN, NTSTATUS, PFN_WDF_IO_QUEUE_STATE, PFN_WDF_REQUEST_CANCEL, PULONG,
    PVOID, PWDF_DRIVER_GLOBALS, PWDF_IO_QUEUE_CONFIG, PWDF_OBJECT_ATTRIBUTES,
    PWDF_REQUEST_PARAMETERS, ULONG_PTR, WDF_IO_QUEUE_CONFIG, WDF_IO_QUEUE_STATE,
    WDF_REQUEST_PARAMETERS, WDF_REQUEST_TYPE, WDFCONTEXT, WDFDEVICE, WDFMEMORY, WDFQUEUE,
    WDFREQUEST,
};

/// KMDF type name of queue objects.
pub(crate) const KIND: &str = "WDFQUEUE";

#[derive(Clone, Copy)]
struct Config {
    dispatch: i32,
    power_managed: bool,
    default_cb: crate::types::PFN_WDF_IO_QUEUE_IO_DEFAULT,
    read: crate::types::PFN_WDF_IO_QUEUE_IO_READ,
    write: crate::types::PFN_WDF_IO_QUEUE_IO_WRITE,
    device_control: crate::types::PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL,
    internal_device_control: crate::types::PFN_WDF_IO_QUEUE_IO_INTERNAL_DEVICE_CONTROL,
    canceled_on_queue: crate::types::PFN_WDF_IO_QUEUE_IO_CANCELED_ON_QUEUE,
    /// `WdfExecutionLevelPassive`: callbacks run at `PASSIVE_LEVEL` only.
    passive: bool,
}

#[allow(
    clippy::struct_excessive_bools,
    reason = "independent queue states, as KMDF's FxIoQueue keeps them"
)]
struct Inner {
    /// Requests waiting on the queue (handles), oldest first.
    waiting: VecDeque<usize>,
    /// Requests the queue presented that the driver still owns.
    driver_owned: usize,
    accepting: bool,
    dispatching: bool,
    powered: bool,
    /// Callbacks to run once the driver owns no request (stop / purge completion).
    idle_callbacks: Vec<(PFN_WDF_IO_QUEUE_STATE, usize)>,
    /// Threads inside this queue's presentation loop (KMDF's `m_Dispatching`).
    presenting: u32,
    /// A passive-level presentation was handed to a work item and has not started yet.
    deferred: bool,
}

/// A queue.
pub(crate) struct Queue {
    device: usize,
    config: Config,
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl Payload for Queue {
    fn dispose(&self, handle: usize) {
        // A deleted queue fails what waits on it, then waits for callbacks other threads are
        // running in its presentation loop: KMDF's `FxIoQueue::Dispose` waits for
        // `m_FinishDisposing`, which the loop sets once no other dispatcher is left
        // (`FxIoQueue::DispatchEvents`, fxioqueue.cpp). Its context, which the callbacks use,
        // is freed only afterwards.
        purge(handle, self);
        let mine =
            PRESENTING_HERE.with(|here| here.borrow().iter().filter(|q| **q == handle).count());
        let mut inner = lock(&self.inner);
        while inner.presenting as usize > mine {
            inner = self
                .changed
                .wait(inner)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

thread_local! {
    /// Queues whose presentation loop the calling thread is in (innermost last), so a queue
    /// deleted from inside its own callback does not wait for itself.
    static PRESENTING_HERE: core::cell::RefCell<Vec<usize>> = const {
        core::cell::RefCell::new(Vec::new())
    };
}

/// A device's queue table.
#[derive(Default)]
pub(crate) struct DeviceQueues {
    inner: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    default: usize,
    by_type: HashMap<MajorFunction, usize>,
    all: Vec<usize>,
}

impl DeviceQueues {
    /// The default queue (0: none).
    pub(crate) fn default_queue(&self) -> usize {
        lock(&self.inner).default
    }

    fn route(&self, major: MajorFunction) -> usize {
        let table = lock(&self.inner);
        table.by_type.get(&major).copied().unwrap_or(table.default)
    }

    fn all(&self) -> Vec<usize> {
        lock(&self.inner).all.clone()
    }
}

fn queue_object(handle: usize) -> Option<Arc<Object>> {
    object::live_object(handle).filter(|o| o.payload::<Queue>().is_some())
}

fn queue_of(object: &Object) -> &Queue {
    object.payload::<Queue>().expect("a queue")
}

fn find(queue: WDFQUEUE, api: &str) -> Option<Arc<Object>> {
    object::lookup_payload::<Queue>(object::handle_of(queue), KIND, api)
}

fn can_dispatch(q: &Queue, inner: &Inner) -> bool {
    inner.dispatching
        && (inner.powered || !q.config.power_managed)
        && q.config.dispatch != DISPATCH::WdfIoQueueDispatchManual
}

/// Why the presentation loop is entered; KMDF treats the two cases differently.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// New I/O arrived (or the queue was started or powered up): present in this thread.
    NewRequest,
    /// A presented request left the driver (completed, forwarded, sent and forgotten). If any
    /// thread is in the loop already it will pick up what is waiting; entering it again from
    /// a completion would recurse (`FxIoQueue::DispatchInternalEvents`, fxioqueue.hpp).
    RequestLeftDriver,
}

/// Presents waiting requests while the queue's rules allow it, in the calling thread and at its
/// IRQL, as `FxIoQueue::DispatchEvents` (fxioqueue.cpp) does: a sequential queue presents one
/// request at a time, a power-managed queue nothing while the device is off, and a passive-level
/// queue called above `PASSIVE_LEVEL` hands the presentation to a work item
/// (`FxIoQueue::CanThreadDispatchEventsLocked`).
fn pump(handle: usize, origin: Origin) {
    let Some(object) = queue_object(handle) else {
        return;
    };
    let q = queue_of(&object);
    {
        let mut inner = lock(&q.inner);
        if origin == Origin::RequestLeftDriver && inner.presenting > 0 {
            return;
        }
        if q.config.passive && irql::current() > irql::PASSIVE {
            if !inner.deferred {
                inner.deferred = true;
                drop(inner);
                exec::submit_as(
                    object::driver_of(handle),
                    irql::PASSIVE,
                    "passive-level queue presentation",
                    move || {
                        if let Some(object) = queue_object(handle) {
                            lock(&queue_of(&object).inner).deferred = false;
                        }
                        pump(handle, Origin::NewRequest);
                    },
                );
            }
            return;
        }
        inner.presenting += 1;
    }
    PRESENTING_HERE.with(|here| here.borrow_mut().push(handle));
    loop {
        let next = {
            let mut inner = lock(&q.inner);
            let next = next_to_present(q, &mut inner);
            if next.is_none() {
                inner.presenting -= 1;
            }
            next
        };
        let Some(next) = next else {
            PRESENTING_HERE.with(|here| here.borrow_mut().pop());
            // A dispose may wait for this loop to end.
            q.changed.notify_all();
            return;
        };
        present(handle, q, &next);
    }
}

/// Takes the next request the queue may present now and makes the driver its owner.
fn next_to_present(q: &Queue, inner: &mut Inner) -> Option<Arc<Object>> {
    if !can_dispatch(q, inner) {
        return None;
    }
    if q.config.dispatch == DISPATCH::WdfIoQueueDispatchSequential && inner.driver_owned > 0 {
        return None;
    }
    while let Some(request) = inner.waiting.pop_front() {
        let Some(request_object) = object::live_object(request) else {
            continue;
        };
        take_for_driver(&request_object);
        inner.driver_owned += 1;
        return Some(request_object);
    }
    None
}

/// The driver becomes a waiting request's owner: it is not cancelable until the driver marks it.
fn take_for_driver(request_object: &Arc<Object>) {
    let mut state = lock(&request::payload(request_object).state);
    state.owner = Owner::Driver;
    if let Some(irp) = &state.incoming {
        // If a cancel already took the routine, the cancel path finds the driver the owner
        // and leaves the request to it (it sees WdfRequestIsCanceled).
        irp.clear_cancel_routine();
    }
}

/// Makes a request's packet cancelable through the queue (waiting on it, or marked cancelable
/// by the driver); if it was cancelled already, the cancel is processed now.
fn arm_cancel(request_handle: usize, irp: &Irp) {
    if irp
        .set_cancel_routine(Box::new(move |_| on_packet_cancel(request_handle)))
        .is_err()
    {
        on_packet_cancel(request_handle);
    }
}

fn present(queue: usize, q: &Queue, request_object: &Arc<Object>) {
    object::with_driver(object::driver_of(queue), || {
        present_as_driver(queue, q, request_object);
    });
}

fn present_as_driver(queue: usize, q: &Queue, request_object: &Arc<Object>) {
    let Some(irp) = lock(&request::payload(request_object).state)
        .incoming
        .clone()
    else {
        return;
    };
    let queue_ptr: WDFQUEUE = object::handle_ptr(queue);
    let request_ptr: WDFREQUEST = object::handle_ptr(request_object.handle);
    let level = irql::current();
    let c = q.config;
    let handled = match irp.major {
        MajorFunction::Read => c.read.map(|f| {
            // SAFETY: the driver's callback with a request it now owns.
            irql::run_callback(level, "EvtIoRead", || unsafe {
                f(queue_ptr, request_ptr, irp.output.length);
            });
        }),
        MajorFunction::Write => c.write.map(|f| {
            // SAFETY: as above.
            irql::run_callback(level, "EvtIoWrite", || unsafe {
                f(queue_ptr, request_ptr, irp.input.length);
            });
        }),
        MajorFunction::DeviceControl => c.device_control.map(|f| {
            // SAFETY: as above.
            irql::run_callback(level, "EvtIoDeviceControl", || unsafe {
                f(
                    queue_ptr,
                    request_ptr,
                    irp.output.length,
                    irp.input.length,
                    irp.ioctl,
                );
            });
        }),
        MajorFunction::InternalDeviceControl => c.internal_device_control.map(|f| {
            // SAFETY: as above.
            irql::run_callback(level, "EvtIoInternalDeviceControl", || unsafe {
                f(
                    queue_ptr,
                    request_ptr,
                    irp.output.length,
                    irp.input.length,
                    irp.ioctl,
                );
            });
        }),
    };
    if handled.is_none() {
        if let Some(f) = c.default_cb {
            // SAFETY: as above.
            irql::run_callback(level, "EvtIoDefault", || unsafe {
                f(queue_ptr, request_ptr);
            });
        } else {
            complete(
                request_object,
                STATUS_INVALID_DEVICE_REQUEST,
                0,
                "the framework",
            );
        }
    }
}

/// The packet behind a presented request was cancelled.
fn on_packet_cancel(request_handle: usize) {
    let Some(request_object) = object::live_object(request_handle) else {
        return;
    };
    let req = request::payload(&request_object);
    let queue = lock(&req.state).queue;
    let queue_object = queue_object(queue);
    // Lock order: queue, then request.
    let action = {
        let mut queue_inner = queue_object.as_ref().map(|o| lock(&queue_of(o).inner));
        let mut state = lock(&req.state);
        match state.owner {
            Owner::Queue => {
                if let Some(inner) = queue_inner.as_mut() {
                    inner.waiting.retain(|r| *r != request_handle);
                }
                let on_queue = queue_object
                    .as_ref()
                    .and_then(|o| queue_of(o).config.canceled_on_queue);
                if on_queue.is_some() {
                    state.owner = Owner::Driver;
                    if let Some(inner) = queue_inner.as_mut() {
                        inner.driver_owned += 1;
                    }
                }
                Cancel::OnQueue(on_queue)
            }
            Owner::Driver => state
                .cancel_routine
                .take()
                .map_or(Cancel::Nothing, |routine| Cancel::Driver(Some(routine))),
            _ => Cancel::Nothing,
        }
    };
    match action {
        Cancel::OnQueue(Some(callback)) => {
            // As every callback into the driver in KMDF (FxIoQueue::Dispose), this one holds a
            // reference on the queue: a delete racing with it destroys the queue (and frees its
            // context) only once the callback returned.
            if let Some(object) = &queue_object {
                object::reference(object);
            }
            object::with_driver(object::driver_of(queue), || {
                // SAFETY: the driver's callback; the driver now owns the request and completes it.
                irql::run_callback(irql::current(), "EvtIoCanceledOnQueue", || unsafe {
                    callback(
                        object::handle_ptr(queue),
                        object::handle_ptr(request_handle),
                    );
                });
            });
            if let Some(object) = &queue_object {
                object::dereference(object, "EvtIoCanceledOnQueue");
            }
        }
        Cancel::OnQueue(None) => finish(&request_object, STATUS_CANCELLED, 0, true),
        Cancel::Driver(Some(routine)) => {
            object::with_driver(object::driver_of(request_handle), || {
                // SAFETY: the cancel routine the driver registered for this request.
                irql::run_callback(irql::current(), "EvtRequestCancel", || unsafe {
                    routine(object::handle_ptr(request_handle));
                });
            });
        }
        Cancel::Driver(None) | Cancel::Nothing => {}
    }
}

enum Cancel {
    OnQueue(crate::types::PFN_WDF_IO_QUEUE_IO_CANCELED_ON_QUEUE),
    Driver(PFN_WDF_REQUEST_CANCEL),
    Nothing,
}

/// Completes a request: its packet completes, the request object is deleted.
fn finish(request_object: &Arc<Object>, status: NTSTATUS, information: usize, was_on_queue: bool) {
    let req = request::payload(request_object);
    let (irp, queue) = {
        let mut state = lock(&req.state);
        if state.owner == Owner::Completed {
            return;
        }
        state.owner = Owner::Completed;
        state.cancel_routine = None;
        (state.incoming.clone(), state.queue)
    };
    request::note_completed(request_object.handle);
    if !was_on_queue {
        release_ownership(queue);
    }
    if let Some(irp) = irp {
        irp.complete(status, information);
    }
    object::delete(request_object);
    pump(queue, Origin::RequestLeftDriver);
}

/// The driver gave a request back (completed or forwarded or sent-and-forgotten).
fn release_ownership(queue: usize) {
    let Some(object) = queue_object(queue) else {
        return;
    };
    let q = queue_of(&object);
    let callbacks = {
        let mut inner = lock(&q.inner);
        inner.driver_owned = inner.driver_owned.saturating_sub(1);
        if inner.driver_owned == 0 {
            core::mem::take(&mut inner.idle_callbacks)
        } else {
            Vec::new()
        }
    };
    q.changed.notify_all();
    run_idle_callbacks(queue, callbacks);
}

fn run_idle_callbacks(queue: usize, callbacks: Vec<(PFN_WDF_IO_QUEUE_STATE, usize)>) {
    for (callback, context) in callbacks {
        if let Some(callback) = callback {
            exec::submit(irql::DISPATCH, "EvtIoQueueState", move || {
                // SAFETY: the driver's callback with the context it passed.
                unsafe { callback(object::handle_ptr(queue), context as WDFCONTEXT) };
            });
        }
    }
}

/// Completion by the driver (`WdfRequestComplete*`), with the ownership checks.
fn complete(request_object: &Arc<Object>, status: NTSTATUS, information: usize, api: &str) {
    let req = request::payload(request_object);
    let owner = lock(&req.state).owner;
    if req.driver_created {
        verifier::report(
            rules::COMPLETION_NOT_OWNED,
            &**request_object,
            format!(
                "{api}: a request the driver created is deleted, not completed (owner: {owner:?})"
            ),
        );
        return;
    }
    match owner {
        Owner::Driver => finish(request_object, status, information, false),
        Owner::Queue => verifier::report(
            rules::COMPLETION_NOT_OWNED,
            &**request_object,
            format!("{api}: the request is still on a queue"),
        ),
        Owner::Target => verifier::report(
            rules::COMPLETION_NOT_OWNED,
            &**request_object,
            format!("{api}: the request was sent to an I/O target"),
        ),
        Owner::Completed => verifier::report(
            rules::DOUBLE_COMPLETION,
            &**request_object,
            format!("{api}: completed twice"),
        ),
    }
}

/// Presents a packet that reached `device` to the right queue.
pub(crate) fn dispatch(device: usize, irp: &Arc<Irp>) {
    let Some(device_object) = object::live_object(device) else {
        irp.complete(crate::constants::STATUS_NO_SUCH_DEVICE, 0);
        return;
    };
    let Some(dev) = device_object.payload::<device::Device>() else {
        return;
    };
    let queue = dev.queues.route(irp.major);
    let Some(queue_object) = queue_object(queue) else {
        irp.complete(STATUS_INVALID_DEVICE_REQUEST, 0);
        return;
    };
    let request = Request::new(false, Some(irp.clone()));
    lock(&request.state).queue = queue;
    let Ok(handle) = object::create(request::KIND, &Attributes::default(), 0, Box::new(request))
    else {
        irp.complete(crate::constants::STATUS_INSUFFICIENT_RESOURCES, 0);
        return;
    };
    {
        let mut inner = lock(&queue_of(&queue_object).inner);
        if !inner.accepting {
            drop(inner);
            if let Some(object) = object::live_object(handle) {
                object::delete(&object);
            }
            irp.complete(STATUS_INVALID_DEVICE_STATE, 0);
            return;
        }
        inner.waiting.push_back(handle);
    }
    arm_cancel(handle, irp);
    pump(queue, Origin::NewRequest);
}

/// Cancels the packets of a closed handle that wait on, or are owned by, `device`'s driver.
pub(crate) fn cancel_file(_device: usize, file: u64) {
    if file == 0 {
        return;
    }
    for object in object::live_objects() {
        if object.kind != request::KIND {
            continue;
        }
        let irp = object
            .payload::<Request>()
            .and_then(|r| lock(&r.state).incoming.clone());
        if let Some(irp) = irp
            && irp.file == file
        {
            irp.cancel();
        }
    }
}

/// A presented request left the driver without a completion (sent-and-forgotten).
pub(crate) fn request_left_driver(request_object: &Arc<Object>) {
    let queue = lock(&request::payload(request_object).state).queue;
    release_ownership(queue);
}

/// The device entered (true) or left (false) D0: power-managed queues start or stop.
pub(crate) fn device_powered(device: usize, on: bool) {
    let Some(device_object) = object::live_object(device) else {
        return;
    };
    let Some(dev) = device_object.payload::<device::Device>() else {
        return;
    };
    for queue in dev.queues.all() {
        if let Some(object) = queue_object(queue) {
            lock(&queue_of(&object).inner).powered = on;
        }
        if on {
            pump(queue, Origin::NewRequest);
        }
    }
}

fn purge(handle: usize, q: &Queue) {
    let waiting = {
        let mut inner = lock(&q.inner);
        inner.accepting = false;
        inner.dispatching = false;
        core::mem::take(&mut inner.waiting)
    };
    for request in waiting {
        if let Some(object) = object::live_object(request) {
            finish(&object, STATUS_CANCELLED, 0, true);
        }
    }
    // Driver-owned requests are cancelled (their cancel routine runs if marked cancelable).
    for object in object::live_objects() {
        if object.kind != request::KIND {
            continue;
        }
        let irp = object.payload::<Request>().and_then(|r| {
            let state = lock(&r.state);
            (state.queue == handle && state.owner == Owner::Driver)
                .then(|| state.incoming.clone())
                .flatten()
        });
        if let Some(irp) = irp {
            irp.cancel();
        }
    }
}

/// The device is going away: every queue fails what it holds.
pub(crate) fn purge_device(device: usize) {
    let Some(device_object) = object::live_object(device) else {
        return;
    };
    let Some(dev) = device_object.payload::<device::Device>() else {
        return;
    };
    for queue in dev.queues.all() {
        if let Some(object) = queue_object(queue) {
            purge(queue, queue_of(&object));
        }
    }
}

fn wait_idle(q: &Queue) {
    let mut inner = lock(&q.inner);
    while inner.driver_owned > 0 {
        inner = q
            .changed
            .wait(inner)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

// ---------------------------------------------------------------------------------------------
// WDF functions: queues.

#[allow(
    clippy::too_many_lines,
    reason = "one linear sequence of KMDF's queue checks"
)]
unsafe extern "C" fn wdf_io_queue_create(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    config: PWDF_IO_QUEUE_CONFIG,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    queue: *mut WDFQUEUE,
) -> NTSTATUS {
    const API: &str = "WdfIoQueueCreate";
    if !irql::require_at_most(irql::DISPATCH, API) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let Some(device_object) = device::find(device, API) else {
        return STATUS_INVALID_PARAMETER;
    };
    if config.is_null() {
        verifier::report(rules::INVALID_ARGUMENT, API, "null Config".to_string());
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: non-null, valid by the API contract.
    let config: WDF_IO_QUEUE_CONFIG = unsafe { config.read() };
    if config.Size as usize != size_of::<WDF_IO_QUEUE_CONFIG>() {
        verifier::report(
            rules::BAD_STRUCTURE_SIZE,
            API,
            format!("WDF_IO_QUEUE_CONFIG.Size is {}", config.Size),
        );
        return STATUS_INFO_LENGTH_MISMATCH;
    }
    let dispatch = config.DispatchType;
    if !(DISPATCH::WdfIoQueueDispatchSequential..=DISPATCH::WdfIoQueueDispatchManual)
        .contains(&dispatch)
    {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            format!("invalid DispatchType {dispatch}"),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let has_handler = config.EvtIoDefault.is_some()
        || config.EvtIoRead.is_some()
        || config.EvtIoWrite.is_some()
        || config.EvtIoDeviceControl.is_some()
        || config.EvtIoInternalDeviceControl.is_some();
    if dispatch != DISPATCH::WdfIoQueueDispatchManual && !has_handler {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "a sequential or parallel queue needs a request handler".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    if queue.is_null() && config.DefaultQueue == 0 {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "null Queue out pointer for a non-default queue".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    if !attributes.is_null() {
        // SAFETY: as below.
        let scope = unsafe { (*attributes).SynchronizationScope };
        if scope == crate::types::_WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeDevice
            || scope == crate::types::_WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeQueue
        {
            // The presentation lock (and KMDF's deferral when its owner re-enters) is not
            // simulated; silently ignoring it would hide the lock re-entry it is there for.
            verifier::report(
                rules::INVALID_ARGUMENT,
                API,
                format!("SynchronizationScope {scope} (a presentation lock) is not simulated"),
            );
            return STATUS_INVALID_PARAMETER;
        }
    }
    let passive = !attributes.is_null()
        // SAFETY: a non-null attributes pointer is a valid WDF_OBJECT_ATTRIBUTES by the API
        // contract (its Size is checked by `Attributes::read` below).
        && unsafe { (*attributes).ExecutionLevel }
            == crate::types::_WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive;
    let attributes = match Attributes::read(attributes, API) {
        Ok(attributes) => attributes,
        Err(status) => return status,
    };
    let dev = device::device_of(&device_object);
    if config.DefaultQueue != 0 && dev.queues.default_queue() != 0 {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "the device already has a default queue".to_string(),
        );
        return STATUS_INVALID_DEVICE_STATE;
    }
    let powered = crate::sim::pnp::is_started(device_object.handle);
    let payload = Queue {
        device: device_object.handle,
        config: Config {
            dispatch,
            power_managed: config.PowerManaged != _WDF_TRI_STATE::WdfFalse,
            default_cb: config.EvtIoDefault,
            read: config.EvtIoRead,
            write: config.EvtIoWrite,
            device_control: config.EvtIoDeviceControl,
            internal_device_control: config.EvtIoInternalDeviceControl,
            canceled_on_queue: config.EvtIoCanceledOnQueue,
            passive,
        },
        inner: Mutex::new(Inner {
            waiting: VecDeque::new(),
            driver_owned: 0,
            accepting: true,
            dispatching: true,
            powered,
            idle_callbacks: Vec::new(),
            presenting: 0,
            deferred: false,
        }),
        changed: Condvar::new(),
    };
    let handle = match object::create(KIND, &attributes, device_object.handle, Box::new(payload)) {
        Ok(handle) => handle,
        Err(status) => return status,
    };
    {
        let mut table = lock(&dev.queues.inner);
        table.all.push(handle);
        if config.DefaultQueue != 0 {
            table.default = handle;
        }
    }
    if !queue.is_null() {
        // SAFETY: a non-null out pointer is writable by the API contract.
        unsafe { queue.write(object::handle_ptr(handle)) };
    }
    STATUS_SUCCESS
}

unsafe extern "C" fn wdf_device_configure_request_dispatching(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    queue: WDFQUEUE,
    request_type: WDF_REQUEST_TYPE,
) -> NTSTATUS {
    const API: &str = "WdfDeviceConfigureRequestDispatching";
    let Some(device_object) = device::find(device, API) else {
        return STATUS_INVALID_PARAMETER;
    };
    let Some(queue_object) = find(queue, API) else {
        return STATUS_INVALID_PARAMETER;
    };
    let major = match request_type {
        _WDF_REQUEST_TYPE::WdfRequestTypeRead => MajorFunction::Read,
        _WDF_REQUEST_TYPE::WdfRequestTypeWrite => MajorFunction::Write,
        _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControl => MajorFunction::DeviceControl,
        _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControlInternal => {
            MajorFunction::InternalDeviceControl
        }
        other => {
            verifier::report(
                rules::INVALID_ARGUMENT,
                API,
                format!("request type {other} is not simulated"),
            );
            return STATUS_INVALID_PARAMETER;
        }
    };
    if queue_of(&queue_object).device != device_object.handle {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            format!("{queue_object} belongs to another device"),
        );
        return STATUS_INVALID_PARAMETER;
    }
    lock(&device::device_of(&device_object).queues.inner)
        .by_type
        .insert(major, queue_object.handle);
    STATUS_SUCCESS
}

unsafe extern "C" fn wdf_io_queue_retrieve_next_request(
    _globals: PWDF_DRIVER_GLOBALS,
    queue: WDFQUEUE,
    out: *mut WDFREQUEST,
) -> NTSTATUS {
    const API: &str = "WdfIoQueueRetrieveNextRequest";
    if !irql::require_at_most(irql::DISPATCH, API) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let Some(object) = find(queue, API) else {
        return STATUS_INVALID_PARAMETER;
    };
    if out.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    let q = queue_of(&object);
    let mut inner = lock(&q.inner);
    if q.config.power_managed && !inner.powered {
        return STATUS_NO_MORE_ENTRIES;
    }
    while let Some(request) = inner.waiting.pop_front() {
        let Some(request_object) = object::live_object(request) else {
            continue;
        };
        take_for_driver(&request_object);
        inner.driver_owned += 1;
        // SAFETY: checked non-null; writable by the API contract.
        unsafe { out.write(object::handle_ptr(request)) };
        return STATUS_SUCCESS;
    }
    STATUS_NO_MORE_ENTRIES
}

unsafe extern "C" fn wdf_io_queue_start(_globals: PWDF_DRIVER_GLOBALS, queue: WDFQUEUE) {
    let Some(object) = find(queue, "WdfIoQueueStart") else {
        return;
    };
    {
        let mut inner = lock(&queue_of(&object).inner);
        inner.accepting = true;
        inner.dispatching = true;
    }
    pump(object.handle, Origin::NewRequest);
}

fn stop_or_purge(
    queue: WDFQUEUE,
    callback: PFN_WDF_IO_QUEUE_STATE,
    context: WDFCONTEXT,
    purge_it: bool,
    wait: bool,
    api: &str,
) {
    if wait && !irql::require_passive(api) {
        return;
    }
    let Some(object) = find(queue, api) else {
        return;
    };
    let q = queue_of(&object);
    if purge_it {
        purge(object.handle, q);
    } else {
        lock(&q.inner).dispatching = false;
    }
    let run_now = {
        let mut inner = lock(&q.inner);
        if inner.driver_owned == 0 {
            true
        } else {
            inner.idle_callbacks.push((callback, context as usize));
            false
        }
    };
    if run_now {
        run_idle_callbacks(object.handle, vec![(callback, context as usize)]);
    }
    if wait {
        wait_idle(q);
    }
}

unsafe extern "C" fn wdf_io_queue_stop(
    _globals: PWDF_DRIVER_GLOBALS,
    queue: WDFQUEUE,
    callback: PFN_WDF_IO_QUEUE_STATE,
    context: WDFCONTEXT,
) {
    stop_or_purge(queue, callback, context, false, false, "WdfIoQueueStop");
}

unsafe extern "C" fn wdf_io_queue_stop_synchronously(
    _globals: PWDF_DRIVER_GLOBALS,
    queue: WDFQUEUE,
) {
    stop_or_purge(
        queue,
        None,
        core::ptr::null_mut(),
        false,
        true,
        "WdfIoQueueStopSynchronously",
    );
}

unsafe extern "C" fn wdf_io_queue_purge(
    _globals: PWDF_DRIVER_GLOBALS,
    queue: WDFQUEUE,
    callback: PFN_WDF_IO_QUEUE_STATE,
    context: WDFCONTEXT,
) {
    stop_or_purge(queue, callback, context, true, false, "WdfIoQueuePurge");
}

unsafe extern "C" fn wdf_io_queue_purge_synchronously(
    _globals: PWDF_DRIVER_GLOBALS,
    queue: WDFQUEUE,
) {
    stop_or_purge(
        queue,
        None,
        core::ptr::null_mut(),
        true,
        true,
        "WdfIoQueuePurgeSynchronously",
    );
}

unsafe extern "C" fn wdf_io_queue_get_state(
    _globals: PWDF_DRIVER_GLOBALS,
    queue: WDFQUEUE,
    queue_requests: PULONG,
    driver_requests: PULONG,
) -> WDF_IO_QUEUE_STATE {
    let Some(object) = find(queue, "WdfIoQueueGetState") else {
        return 0;
    };
    let inner = lock(&queue_of(&object).inner);
    if !queue_requests.is_null() {
        // SAFETY: a non-null out pointer is writable by the API contract.
        unsafe { queue_requests.write(inner.waiting.len() as u32) };
    }
    if !driver_requests.is_null() {
        // SAFETY: as above.
        unsafe { driver_requests.write(inner.driver_owned as u32) };
    }
    let mut state = 0;
    if inner.accepting {
        state |= _WDF_IO_QUEUE_STATE::WdfIoQueueAcceptRequests;
    }
    if inner.dispatching {
        state |= _WDF_IO_QUEUE_STATE::WdfIoQueueDispatchRequests;
    }
    if inner.waiting.is_empty() {
        state |= _WDF_IO_QUEUE_STATE::WdfIoQueueNoRequests;
    }
    if inner.driver_owned == 0 {
        state |= _WDF_IO_QUEUE_STATE::WdfIoQueueDriverNoRequests;
    }
    state
}

unsafe extern "C" fn wdf_io_queue_get_device(
    _globals: PWDF_DRIVER_GLOBALS,
    queue: WDFQUEUE,
) -> WDFDEVICE {
    find(queue, "WdfIoQueueGetDevice").map_or(core::ptr::null_mut(), |o| {
        object::handle_ptr(queue_of(&o).device)
    })
}

// ---------------------------------------------------------------------------------------------
// WDF functions: the driver's side of presented requests.

fn owned_request(request: WDFREQUEST, api: &str) -> Option<Arc<Object>> {
    let object = request::find(request, api)?;
    let owner = lock(&request::payload(&object).state).owner;
    if owner != Owner::Driver {
        verifier::report(
            rules::COMPLETION_NOT_OWNED,
            &*object,
            format!("{api} on a request the driver does not own ({owner:?})"),
        );
        return None;
    }
    Some(object)
}

fn complete_api(request: WDFREQUEST, status: NTSTATUS, information: Option<usize>, api: &str) {
    if !irql::require_at_most(irql::DISPATCH, api) {
        return;
    }
    let handle = object::handle_of(request);
    if request::was_completed(handle) && object::live_object(handle).is_none() {
        verifier::report(
            rules::DOUBLE_COMPLETION,
            format!("WDFREQUEST {handle:#x}"),
            format!("{api}: completed twice"),
        );
        return;
    }
    let Some(object) = request::find(request, api) else {
        return;
    };
    let information =
        information.unwrap_or_else(|| lock(&request::payload(&object).state).information);
    complete(&object, status, information, api);
}

unsafe extern "C" fn wdf_request_complete(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    status: NTSTATUS,
) {
    complete_api(request, status, None, "WdfRequestComplete");
}

unsafe extern "C" fn wdf_request_complete_with_information(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    status: NTSTATUS,
    information: ULONG_PTR,
) {
    complete_api(
        request,
        status,
        Some(information as usize),
        "WdfRequestCompleteWithInformation",
    );
}

unsafe extern "C" fn wdf_request_mark_cancelable_ex(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    routine: PFN_WDF_REQUEST_CANCEL,
) -> NTSTATUS {
    const API: &str = "WdfRequestMarkCancelableEx";
    let Some(object) = owned_request(request, API) else {
        return STATUS_INVALID_DEVICE_REQUEST;
    };
    if routine.is_none() {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "null EvtRequestCancel".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let mut state = lock(&request::payload(&object).state);
    let Some(irp) = state.incoming.clone() else {
        return STATUS_INVALID_DEVICE_REQUEST;
    };
    state.cancel_routine = routine;
    let handle = object.handle;
    if irp
        .set_cancel_routine(Box::new(move |_| on_packet_cancel(handle)))
        .is_err()
    {
        // Already cancelled: the driver keeps the request and completes it itself.
        state.cancel_routine = None;
        return STATUS_CANCELLED;
    }
    STATUS_SUCCESS
}

unsafe extern "C" fn wdf_request_unmark_cancelable(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> NTSTATUS {
    const API: &str = "WdfRequestUnmarkCancelable";
    let Some(object) = owned_request(request, API) else {
        return STATUS_INVALID_DEVICE_REQUEST;
    };
    let mut state = lock(&request::payload(&object).state);
    if let Some(routine) = state.cancel_routine.take() {
        if state
            .incoming
            .as_ref()
            .is_none_or(|irp| irp.clear_cancel_routine())
        {
            return STATUS_SUCCESS;
        }
        // A cancel took the packet's routine and waits for this lock: it calls the driver's
        // EvtRequestCancel, which owns the completion.
        state.cancel_routine = Some(routine);
        return STATUS_CANCELLED;
    }
    if state
        .incoming
        .as_ref()
        .is_some_and(|irp| irp.is_cancel_requested())
    {
        // The cancel routine ran or is running: it owns the completion.
        return STATUS_CANCELLED;
    }
    drop(state);
    verifier::report(
        rules::INVALID_ARGUMENT,
        &*object,
        format!("{API} on a request that was not marked cancelable"),
    );
    STATUS_INVALID_DEVICE_REQUEST
}

unsafe extern "C" fn wdf_request_is_canceled(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> BOOLEAN {
    let Some(object) = request::find(request, "WdfRequestIsCanceled") else {
        return 0;
    };
    let state = lock(&request::payload(&object).state);
    boolean(
        state
            .incoming
            .as_ref()
            .is_some_and(|irp| irp.is_cancel_requested()),
    )
}

fn buffer(
    request: WDFREQUEST,
    input: bool,
    minimum: usize,
    api: &str,
) -> Result<(Arc<Object>, usize, usize), NTSTATUS> {
    let object = owned_request(request, api).ok_or(STATUS_INVALID_DEVICE_REQUEST)?;
    let irp = lock(&request::payload(&object).state)
        .incoming
        .clone()
        .ok_or(STATUS_INVALID_DEVICE_REQUEST)?;
    let range = match (irp.major, input) {
        (MajorFunction::Read, true) | (MajorFunction::Write, false) => {
            return Err(STATUS_INVALID_DEVICE_REQUEST);
        }
        (_, true) => irp.input,
        (_, false) => irp.output,
    };
    if range.length == 0 || range.length < minimum {
        return Err(STATUS_BUFFER_TOO_SMALL);
    }
    Ok((object, range.address, range.length))
}

fn retrieve_buffer(
    request: WDFREQUEST,
    input: bool,
    minimum: usize,
    out: *mut PVOID,
    length: *mut usize,
    api: &str,
) -> NTSTATUS {
    if out.is_null() {
        verifier::report(
            rules::INVALID_ARGUMENT,
            api,
            "null Buffer out pointer".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    match buffer(request, input, minimum, api) {
        Ok((_, address, len)) => {
            // SAFETY: checked non-null; writable by the API contract.
            unsafe { out.write(address as PVOID) };
            if !length.is_null() {
                // SAFETY: a non-null out pointer is writable by the API contract.
                unsafe { length.write(len) };
            }
            STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

unsafe extern "C" fn wdf_request_retrieve_input_buffer(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    minimum: usize,
    out: *mut PVOID,
    length: *mut usize,
) -> NTSTATUS {
    retrieve_buffer(
        request,
        true,
        minimum,
        out,
        length,
        "WdfRequestRetrieveInputBuffer",
    )
}

unsafe extern "C" fn wdf_request_retrieve_output_buffer(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    minimum: usize,
    out: *mut PVOID,
    length: *mut usize,
) -> NTSTATUS {
    retrieve_buffer(
        request,
        false,
        minimum,
        out,
        length,
        "WdfRequestRetrieveOutputBuffer",
    )
}

fn retrieve_memory(request: WDFREQUEST, input: bool, out: *mut WDFMEMORY, api: &str) -> NTSTATUS {
    if out.is_null() {
        verifier::report(
            rules::INVALID_ARGUMENT,
            api,
            "null Memory out pointer".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let (object, address, length) = match buffer(request, input, 0, api) {
        Ok(value) => value,
        Err(status) => return status,
    };
    let slot = usize::from(!input);
    let existing = lock(&request::payload(&object).state).memories[slot];
    let handle = if existing != 0 && object::live_object(existing).is_some() {
        existing
    } else {
        match memory::create_view(&Attributes::default(), object.handle, address, length) {
            Ok(handle) => {
                lock(&request::payload(&object).state).memories[slot] = handle;
                handle
            }
            Err(status) => return status,
        }
    };
    // SAFETY: checked non-null; writable by the API contract.
    unsafe { out.write(object::handle_ptr(handle)) };
    STATUS_SUCCESS
}

unsafe extern "C" fn wdf_request_retrieve_input_memory(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    out: *mut WDFMEMORY,
) -> NTSTATUS {
    retrieve_memory(request, true, out, "WdfRequestRetrieveInputMemory")
}

unsafe extern "C" fn wdf_request_retrieve_output_memory(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    out: *mut WDFMEMORY,
) -> NTSTATUS {
    retrieve_memory(request, false, out, "WdfRequestRetrieveOutputMemory")
}

unsafe extern "C" fn wdf_request_get_parameters(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    parameters: PWDF_REQUEST_PARAMETERS,
) {
    const API: &str = "WdfRequestGetParameters";
    let Some(object) = request::find(request, API) else {
        return;
    };
    if parameters.is_null() {
        verifier::report(rules::INVALID_ARGUMENT, API, "null Parameters".to_string());
        return;
    }
    // SAFETY: non-null and valid by the API contract.
    let size = unsafe { (*parameters).Size };
    if usize::from(size) != size_of::<WDF_REQUEST_PARAMETERS>() {
        verifier::report(
            rules::BAD_STRUCTURE_SIZE,
            API,
            format!("WDF_REQUEST_PARAMETERS.Size is {size}"),
        );
        return;
    }
    let Some(irp) = lock(&request::payload(&object).state).incoming.clone() else {
        return;
    };
    let mut value = WDF_REQUEST_PARAMETERS {
        Size: size,
        ..Default::default()
    };
    match irp.major {
        MajorFunction::Read => {
            value.Type = _WDF_REQUEST_TYPE::WdfRequestTypeRead;
            value.Parameters.Read.Length = irp.output.length;
        }
        MajorFunction::Write => {
            value.Type = _WDF_REQUEST_TYPE::WdfRequestTypeWrite;
            value.Parameters.Write.Length = irp.input.length;
        }
        MajorFunction::DeviceControl | MajorFunction::InternalDeviceControl => {
            value.Type = if irp.major == MajorFunction::DeviceControl {
                _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControl
            } else {
                _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControlInternal
            };
            value.Parameters.DeviceIoControl.OutputBufferLength = irp.output.length;
            value.Parameters.DeviceIoControl.InputBufferLength = irp.input.length;
            value.Parameters.DeviceIoControl.IoControlCode = irp.ioctl;
        }
    }
    // SAFETY: non-null and writable by the API contract.
    unsafe { parameters.write(value) };
}

unsafe extern "C" fn wdf_request_forward_to_io_queue(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    destination: WDFQUEUE,
) -> NTSTATUS {
    const API: &str = "WdfRequestForwardToIoQueue";
    let Some(object) = owned_request(request, API) else {
        return STATUS_INVALID_DEVICE_REQUEST;
    };
    let Some(destination) = find(destination, API) else {
        return STATUS_INVALID_PARAMETER;
    };
    let req = request::payload(&object);
    let source = lock(&req.state).queue;
    let source_device = queue_object(source).map(|o| queue_of(&o).device);
    let dq = queue_of(&destination);
    if source_device != Some(dq.device) {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "the destination queue belongs to another device".to_string(),
        );
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    if source == destination.handle {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "forwarded to the queue it came from".to_string(),
        );
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    {
        let mut inner = lock(&dq.inner);
        if !inner.accepting {
            return STATUS_INVALID_DEVICE_STATE;
        }
        let mut state = lock(&req.state);
        if state.cancel_routine.is_some() {
            drop(state);
            drop(inner);
            verifier::report(
                rules::INVALID_ARGUMENT,
                &*object,
                format!("{API} of a request still marked cancelable"),
            );
            return STATUS_INVALID_DEVICE_REQUEST;
        }
        state.owner = Owner::Queue;
        state.queue = destination.handle;
        inner.waiting.push_back(object.handle);
    }
    release_ownership(source);
    // Waiting on the destination, the request is cancelable again (and a cancel that arrived
    // while the driver owned it is processed now).
    // (The state lock must be released first: a cancel that already arrived is processed
    // right away, and takes it.)
    let incoming = lock(&req.state).incoming.clone();
    if let Some(irp) = incoming {
        arm_cancel(object.handle, &irp);
    }
    pump(destination.handle, Origin::NewRequest);
    pump(source, Origin::RequestLeftDriver);
    STATUS_SUCCESS
}

unsafe extern "C" fn wdf_request_get_io_queue(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> WDFQUEUE {
    request::find(request, "WdfRequestGetIoQueue").map_or(core::ptr::null_mut(), |o| {
        object::handle_ptr(lock(&request::payload(&o).state).queue)
    })
}

pub(crate) const ENTRIES: &[Entry] = &[
    wdf_entry!(
        WdfIoQueueCreateTableIndex,
        PFN_WDFIOQUEUECREATE,
        wdf_io_queue_create
    ),
    wdf_entry!(
        WdfDeviceConfigureRequestDispatchingTableIndex,
        PFN_WDFDEVICECONFIGUREREQUESTDISPATCHING,
        wdf_device_configure_request_dispatching
    ),
    wdf_entry!(
        WdfIoQueueRetrieveNextRequestTableIndex,
        PFN_WDFIOQUEUERETRIEVENEXTREQUEST,
        wdf_io_queue_retrieve_next_request
    ),
    wdf_entry!(
        WdfIoQueueStartTableIndex,
        PFN_WDFIOQUEUESTART,
        wdf_io_queue_start
    ),
    wdf_entry!(
        WdfIoQueueStopTableIndex,
        PFN_WDFIOQUEUESTOP,
        wdf_io_queue_stop
    ),
    wdf_entry!(
        WdfIoQueueStopSynchronouslyTableIndex,
        PFN_WDFIOQUEUESTOPSYNCHRONOUSLY,
        wdf_io_queue_stop_synchronously
    ),
    wdf_entry!(
        WdfIoQueuePurgeTableIndex,
        PFN_WDFIOQUEUEPURGE,
        wdf_io_queue_purge
    ),
    wdf_entry!(
        WdfIoQueuePurgeSynchronouslyTableIndex,
        PFN_WDFIOQUEUEPURGESYNCHRONOUSLY,
        wdf_io_queue_purge_synchronously
    ),
    wdf_entry!(
        WdfIoQueueGetStateTableIndex,
        PFN_WDFIOQUEUEGETSTATE,
        wdf_io_queue_get_state
    ),
    wdf_entry!(
        WdfIoQueueGetDeviceTableIndex,
        PFN_WDFIOQUEUEGETDEVICE,
        wdf_io_queue_get_device
    ),
    wdf_entry!(
        WdfRequestCompleteTableIndex,
        PFN_WDFREQUESTCOMPLETE,
        wdf_request_complete
    ),
    wdf_entry!(
        WdfRequestCompleteWithInformationTableIndex,
        PFN_WDFREQUESTCOMPLETEWITHINFORMATION,
        wdf_request_complete_with_information
    ),
    wdf_entry!(
        WdfRequestMarkCancelableExTableIndex,
        PFN_WDFREQUESTMARKCANCELABLEEX,
        wdf_request_mark_cancelable_ex
    ),
    wdf_entry!(
        WdfRequestUnmarkCancelableTableIndex,
        PFN_WDFREQUESTUNMARKCANCELABLE,
        wdf_request_unmark_cancelable
    ),
    wdf_entry!(
        WdfRequestIsCanceledTableIndex,
        PFN_WDFREQUESTISCANCELED,
        wdf_request_is_canceled
    ),
    wdf_entry!(
        WdfRequestRetrieveInputBufferTableIndex,
        PFN_WDFREQUESTRETRIEVEINPUTBUFFER,
        wdf_request_retrieve_input_buffer
    ),
    wdf_entry!(
        WdfRequestRetrieveOutputBufferTableIndex,
        PFN_WDFREQUESTRETRIEVEOUTPUTBUFFER,
        wdf_request_retrieve_output_buffer
    ),
    wdf_entry!(
        WdfRequestRetrieveInputMemoryTableIndex,
        PFN_WDFREQUESTRETRIEVEINPUTMEMORY,
        wdf_request_retrieve_input_memory
    ),
    wdf_entry!(
        WdfRequestRetrieveOutputMemoryTableIndex,
        PFN_WDFREQUESTRETRIEVEOUTPUTMEMORY,
        wdf_request_retrieve_output_memory
    ),
    wdf_entry!(
        WdfRequestGetParametersTableIndex,
        PFN_WDFREQUESTGETPARAMETERS,
        wdf_request_get_parameters
    ),
    wdf_entry!(
        WdfRequestForwardToIoQueueTableIndex,
        PFN_WDFREQUESTFORWARDTOIOQUEUE,
        wdf_request_forward_to_io_queue
    ),
    wdf_entry!(
        WdfRequestGetIoQueueTableIndex,
        PFN_WDFREQUESTGETIOQUEUE,
        wdf_request_get_io_queue
    ),
];

/// Kernel functions of this area, re-exported from `ntddk`.
#[allow(non_snake_case)]
pub mod kernel {}
