//! `WDFIOTARGET`: remote targets opened by symbolic link name, the device's local target,
//! their state machine (started, stopped, purged, closed for query-remove, closed), the packets
//! they have in flight, and the synchronous send helpers.
//!
//! As in KMDF's `FxIoTarget`, a target keeps three lists: the packets it sent (delivered to the
//! device), the packets sent with `WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE` (kept apart:
//! stopping and purging neither cancel nor wait for them), and the packets it holds while it is
//! stopped (KMDF's pended queue). Stopping cancels (or waits for) only the sent list; the held
//! packets stay held and are delivered by `WdfIoTargetStart`. Purging, closing and deleting fail
//! the held packets with `STATUS_WDF_DEVICE_REMOVED_NOT_SENT` and cancel the sent ones.
//!
//! A target also counts every request it accepted until that request's completion routine
//! returned; the waits of stop, purge and close are expressed with that count.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;

use super::io::{self, Irp, Link, MajorFunction, Opener, lock};
use super::object::{self, Attributes, Object, Payload};
use super::table::Entry;
use super::verifier::{self, rules};
use super::{device, irql, request, wdf_entry};
use crate::constants::{
    STATUS_CANCELLED, STATUS_INFO_LENGTH_MISMATCH, STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
};
use crate::types::{
    _WDF_IO_TARGET_OPEN_TYPE as OPEN, _WDF_IO_TARGET_PURGE_IO_ACTION as PURGE,
    _WDF_IO_TARGET_SENT_IO_ACTION as SENT, _WDF_IO_TARGET_STATE as STATE,
    _WDF_MEMORY_DESCRIPTOR_TYPE as DESCRIPTOR, NTSTATUS, PFN_WDF_IO_TARGET_QUERY_REMOVE,
    PFN_WDF_IO_TARGET_REMOVE_CANCELED, PFN_WDF_IO_TARGET_REMOVE_COMPLETE, PLONGLONG, PULONG_PTR,
    PWDF_DRIVER_GLOBALS, PWDF_IO_TARGET_OPEN_PARAMS, PWDF_MEMORY_DESCRIPTOR,
    PWDF_OBJECT_ATTRIBUTES, PWDF_REQUEST_SEND_OPTIONS, PWDFMEMORY_OFFSET, ULONG, ULONG_PTR,
    WDF_IO_TARGET_OPEN_PARAMS, WDF_IO_TARGET_PURGE_IO_ACTION, WDF_IO_TARGET_SENT_IO_ACTION,
    WDF_IO_TARGET_STATE, WDF_MEMORY_DESCRIPTOR, WDFDEVICE, WDFIOTARGET, WDFMEMORY, WDFREQUEST,
};

/// KMDF type name of I/O target objects.
pub(crate) const KIND: &str = "WDFIOTARGET";

/// `STATUS_WDF_DEVICE_REMOVED_NOT_SENT` (wdfstatus.h, `0xC0200206`): the status of a request
/// that a target held (never sent) and failed when it was purged, closed or deleted
/// (`FxIoTarget::CompletePendedRequest`). wdk-sys does not export it: bindgen cannot evaluate
/// wdfstatus.h's `((NTSTATUS)0xC0200206L)` casts and wdk-sys hand-writes only ntstatus.h's list,
/// so it is not part of the mirrored surface; driver code defines its own.
pub(crate) const STATUS_WDF_DEVICE_REMOVED_NOT_SENT: NTSTATUS = 0xC020_0206_u32.cast_signed();

#[derive(Clone, Copy, Default)]
struct Callbacks {
    query_remove: PFN_WDF_IO_TARGET_QUERY_REMOVE,
    remove_canceled: PFN_WDF_IO_TARGET_REMOVE_CANCELED,
    remove_complete: PFN_WDF_IO_TARGET_REMOVE_COMPLETE,
}

struct Inner {
    state: WDF_IO_TARGET_STATE,
    name: String,
    link: Option<Arc<Link>>,
    file: u64,
    watch: u64,
    callbacks: Callbacks,
    /// Packets delivered to the device and not completed (KMDF's `m_SentIoListHead`).
    sent: Vec<Arc<Irp>>,
    /// Packets delivered with `WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE` and not completed
    /// (KMDF's `m_IgnoredIoListHead`).
    ignored: Vec<Arc<Irp>>,
    /// Packets held while the target is stopped (KMDF's `m_PendedQueue`).
    queued: Vec<Arc<Irp>>,
    /// Requests accepted whose completion has not finished (routine returned).
    in_flight: usize,
    /// For each request that completed and whose completion has not finished, the thread that
    /// completed it (where its completion routine runs, or is scheduled from).
    completing_on: Vec<ThreadId>,
    /// Whether the target has a device to format requests for. KMDF clears its target pointers
    /// (and `m_TargetStackSize`) once a closed or deleted target has no sent I/O left
    /// (`FxIoTarget::ClearTargetPointers`, from `GotoRemoveState` or
    /// `RemoveCompletedRequestLocked`); a never-opened remote target has none either.
    connected: bool,
}

/// An I/O target.
pub(crate) struct Target {
    pub(crate) device: usize,
    /// Whether this is the device's local (default) target.
    pub(crate) local: bool,
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl Target {
    pub(crate) fn new(device: usize, local: bool) -> Self {
        Self {
            device,
            local,
            inner: Mutex::new(Inner {
                state: if local {
                    STATE::WdfIoTargetStarted
                } else {
                    STATE::WdfIoTargetClosed
                },
                name: String::new(),
                link: None,
                file: 0,
                watch: 0,
                callbacks: Callbacks::default(),
                sent: Vec::new(),
                ignored: Vec::new(),
                queued: Vec::new(),
                in_flight: 0,
                completing_on: Vec::new(),
                connected: local,
            }),
            changed: Condvar::new(),
        }
    }

    /// Requests accepted and not finished.
    pub(crate) fn in_flight(&self) -> usize {
        lock(&self.inner).in_flight
    }

    /// Packets the target holds or has delivered and that have not completed.
    pub(crate) fn pending_packets(&self) -> Vec<Arc<Irp>> {
        let inner = lock(&self.inner);
        inner
            .sent
            .iter()
            .chain(&inner.ignored)
            .chain(&inner.queued)
            .cloned()
            .collect()
    }
}

impl Payload for Target {
    fn dispose(&self, _handle: usize) {
        // Deleting a target closes it: held requests fail, sent ones are cancelled and waited for
        // (`FxIoTarget::Remove`).
        close_inner(self, STATE::WdfIoTargetDeleted, true);
    }

    fn driver_may_delete(&self) -> Result<(), &'static str> {
        if self.local {
            return Err("the device's local I/O target belongs to the framework");
        }
        Ok(())
    }
}

/// Whether a state is one of the closed ones (`GotoRemoveState`'s states).
fn is_closed(state: WDF_IO_TARGET_STATE) -> bool {
    matches!(
        state,
        STATE::WdfIoTargetClosed
            | STATE::WdfIoTargetClosedForQueryRemove
            | STATE::WdfIoTargetDeleted
    )
}

/// Whether `target` accepts a request formatted for it: `STATUS_INVALID_DEVICE_STATE` once it
/// is closed, closed for query-remove or deleted (and before a remote target is opened).
///
/// KMDF: every `FxIoTarget::Format*Request` and `FxRequest::_Create` with a target (that is,
/// `WdfRequestCreate` with an `IoTarget`) start with `FxRequestBase::ValidateTarget`, which fails
/// with `STATUS_INVALID_DEVICE_STATE` when `FxIoTarget::HasValidStackSize` is false, i.e. the
/// target's pointers were cleared. While a close still waits for sent I/O (`m_Removing`), the
/// pointers are kept and formatting still succeeds; sending then fails in `SubmitLocked`.
pub(crate) fn check_accepts_format(target: &Object) -> Result<(), NTSTATUS> {
    let Some(t) = target.payload::<Target>() else {
        return Err(STATUS_INVALID_PARAMETER);
    };
    if lock(&t.inner).connected {
        Ok(())
    } else {
        Err(STATUS_INVALID_DEVICE_STATE)
    }
}

/// Finds a target.
pub(crate) fn find(target: WDFIOTARGET, api: &str) -> Option<Arc<Object>> {
    object::lookup_payload::<Target>(object::handle_of(target), KIND, api)
}

fn target_of(object: &Object) -> &Target {
    object.payload::<Target>().expect("looked up as a target")
}

fn quiet(handle: usize) -> Option<Arc<Object>> {
    object::live_object(handle).filter(|o| o.payload::<Target>().is_some())
}

/// Accepts a packet: delivers it, queues it (stopped target) or refuses it
/// (`FxIoTarget::SubmitLocked`).
pub(crate) fn submit(target: usize, irp: &Arc<Irp>, ignore_state: bool) -> Result<(), NTSTATUS> {
    let object = quiet(target).ok_or(STATUS_INVALID_DEVICE_STATE)?;
    let t = target_of(&object);
    let mut inner = lock(&t.inner);
    if ignore_state {
        // Ignoring the state is refused only once a closed or deleted target has let go of its
        // device (KMDF: closed and not `m_Removing`).
        if is_closed(inner.state) && !inner.connected {
            return Err(STATUS_INVALID_DEVICE_STATE);
        }
        inner.in_flight += 1;
        inner.ignored.push(irp.clone());
        let link = inner.link.clone();
        drop(inner);
        deliver(link.as_ref(), irp);
        return Ok(());
    }
    match inner.state {
        STATE::WdfIoTargetStarted => {
            inner.in_flight += 1;
            inner.sent.push(irp.clone());
            let link = inner.link.clone();
            drop(inner);
            deliver(link.as_ref(), irp);
        }
        STATE::WdfIoTargetStopped => {
            inner.in_flight += 1;
            inner.queued.push(irp.clone());
            drop(inner);
            // A held request is cancelable; cancelling it completes it with STATUS_CANCELLED
            // (`FxIoTarget::_RequestCancelled` -> `FailPendedRequest(STATUS_CANCELLED)`).
            let routine = Box::new(move |irp: &Arc<Irp>| {
                if let Some(object) = quiet(target) {
                    lock(&target_of(&object).inner)
                        .queued
                        .retain(|q| !Arc::ptr_eq(q, irp));
                }
                irp.complete(STATUS_CANCELLED, 0);
            });
            if irp.set_cancel_routine(routine).is_err() {
                lock(&t.inner).queued.retain(|q| !Arc::ptr_eq(q, irp));
                irp.complete(STATUS_CANCELLED, 0);
            }
        }
        _ => return Err(STATUS_INVALID_DEVICE_STATE),
    }
    Ok(())
}

fn deliver(link: Option<&Arc<Link>>, irp: &Arc<Irp>) {
    match link {
        Some(link) => link.node.dispatch(irp.clone()),
        // The local target of a simulated device has no lower driver.
        None => {
            irp.complete(STATUS_INVALID_DEVICE_REQUEST, 0);
        }
    }
}

/// A packet the target delivered (or queued) completed.
pub(crate) fn packet_done(target: usize, irp: &Arc<Irp>) {
    if let Some(object) = quiet(target) {
        let mut inner = lock(&target_of(&object).inner);
        inner.sent.retain(|s| !Arc::ptr_eq(s, irp));
        inner.ignored.retain(|s| !Arc::ptr_eq(s, irp));
        inner.queued.retain(|s| !Arc::ptr_eq(s, irp));
        inner.completing_on.push(std::thread::current().id());
        // The last sent packet of a closing target lets go of the device
        // (`RemoveCompletedRequestLocked` -> `ClearTargetPointers`).
        if is_closed(inner.state) && inner.sent.is_empty() && inner.ignored.is_empty() {
            inner.connected = false;
        }
    }
}

/// A request's completion finished (its routine returned).
pub(crate) fn request_finished(target: usize) {
    if let Some(object) = quiet(target) {
        let t = target_of(&object);
        let mut inner = lock(&t.inner);
        inner.in_flight -= 1;
        // Normally the thread that completed the packet (completion routines run inline); a
        // routine run elsewhere retires the oldest entry.
        let me = std::thread::current().id();
        let index = inner
            .completing_on
            .iter()
            .position(|thread| *thread == me)
            .unwrap_or(0);
        if index < inner.completing_on.len() {
            inner.completing_on.remove(index);
        }
        drop(inner);
        t.changed.notify_all();
    }
}

/// Takes the held packets off the queue. Those whose cancel routine already ran (or is running)
/// stay: that routine completes them (KMDF's cancel-safe queue does not return them).
fn take_queued(inner: &mut Inner) -> Vec<Arc<Irp>> {
    let mut taken = Vec::new();
    for irp in core::mem::take(&mut inner.queued) {
        if irp.clear_cancel_routine() {
            taken.push(irp);
        } else {
            inner.queued.push(irp);
        }
    }
    taken
}

/// Fails packets that were held and never sent (`FxIoTarget::CompletePendedRequestList`).
fn fail_not_sent(packets: Vec<Arc<Irp>>) {
    for irp in packets {
        irp.complete(STATUS_WDF_DEVICE_REMOVED_NOT_SENT, 0);
    }
}

fn wait_until(t: &Target, done: impl Fn(&Inner) -> bool) {
    let mut inner = lock(&t.inner);
    while !done(&inner) {
        inner = t
            .changed
            .wait(inner)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

/// Requests completed on this thread whose completion has not finished: a stop, purge or close
/// called from their completion routine. KMDF takes a request off its sent list before calling
/// its completion routine, so such a call does not wait for the request it is called from.
fn completing_here(inner: &Inner) -> usize {
    let me = std::thread::current().id();
    inner
        .completing_on
        .iter()
        .filter(|thread| **thread == me)
        .count()
}

/// Waits for the sent I/O of a stop or purge (KMDF's `m_SentIoEvent`): until the sent list is
/// empty and the completion routines of those requests (and of held requests failed meanwhile)
/// returned. Held requests and requests sent ignoring the state are not waited for, nor the
/// requests whose completion routine is this thread's caller (`here`, [`completing_here`]).
fn wait_for_sent_io(t: &Target, here: usize) {
    wait_until(t, |inner| {
        inner.sent.is_empty() && inner.in_flight <= inner.queued.len() + inner.ignored.len() + here
    });
}

fn start(t: &Target) -> NTSTATUS {
    let (queued, link) = {
        let mut inner = lock(&t.inner);
        match inner.state {
            STATE::WdfIoTargetStarted | STATE::WdfIoTargetStopped | STATE::WdfIoTargetPurged => {}
            _ => return STATUS_INVALID_DEVICE_STATE,
        }
        inner.state = STATE::WdfIoTargetStarted;
        // Held requests are resent (`GotoStartState` -> `SubmitPendedRequests`).
        let queued = take_queued(&mut inner);
        inner.sent.extend(queued.iter().cloned());
        (queued, inner.link.clone())
    };
    for irp in &queued {
        deliver(link.as_ref(), irp);
    }
    STATUS_SUCCESS
}

/// Closes or deletes a target (`FxIoTarget::GotoRemoveState` and `FxIoTargetRemote::Close`):
/// held requests fail with `STATUS_WDF_DEVICE_REMOVED_NOT_SENT`, sent ones (including those
/// sent ignoring the state) are cancelled, and the close waits until all have completed.
///
/// Closing waits for the requests it failed or cancelled, as KMDF waits for its sent I/O; like
/// the stop wait it does not wait for a completion routine it is called from. Deleting waits for
/// every request: KMDF's dispose waits for the target's I/O count (`WaitForDisposeEvent`), which
/// drops only after completion routines returned.
fn close_inner(t: &Target, state: WDF_IO_TARGET_STATE, unwatch: bool) {
    let (link, file, watch, held, sent, here) = {
        let mut inner = lock(&t.inner);
        inner.state = state;
        let here = completing_here(&inner);
        let held = take_queued(&mut inner);
        let sent: Vec<Arc<Irp>> = inner.sent.iter().chain(&inner.ignored).cloned().collect();
        if sent.is_empty() {
            inner.connected = false;
        }
        (
            inner.link.clone(),
            core::mem::take(&mut inner.file),
            inner.watch,
            held,
            sent,
            here,
        )
    };
    fail_not_sent(held);
    for irp in &sent {
        irp.cancel();
    }
    let deleted = state == STATE::WdfIoTargetDeleted;
    wait_until(t, |inner| {
        if deleted {
            inner.in_flight == 0
        } else {
            inner.sent.is_empty()
                && inner.ignored.is_empty()
                && inner.in_flight <= inner.queued.len() + here
        }
    });
    if let Some(link) = &link {
        if file != 0 {
            link.close(file);
        }
        if unwatch {
            link.unwatch(watch);
        }
    }
    if unwatch {
        let mut inner = lock(&t.inner);
        inner.link = None;
        inner.watch = 0;
    }
}

/// Opens (or reopens) `name` on a target.
fn open_by_name(
    object: &Arc<Object>,
    name: &str,
    callbacks: Option<Callbacks>,
    access: Option<(u32, u32)>,
) -> NTSTATUS {
    let t = target_of(object);
    let (link, file) = match io::open(name) {
        Ok(value) => value,
        Err(status) => return status,
    };
    if let Some((desired, share)) = access {
        link.record_access(desired, share);
    }
    let mut inner = lock(&t.inner);
    if let Some(callbacks) = callbacks {
        inner.callbacks = callbacks;
    }
    let watch = if inner.watch != 0 && inner.link.as_ref().is_some_and(|l| Arc::ptr_eq(l, &link)) {
        inner.watch
    } else {
        link.watch(Arc::new(TargetOpener {
            target: object.handle,
        }))
    };
    inner.name = name.to_string();
    inner.link = Some(link);
    inner.file = file;
    inner.watch = watch;
    inner.state = STATE::WdfIoTargetStarted;
    inner.connected = true;
    STATUS_SUCCESS
}

/// Target-device-change notifications for one target.
struct TargetOpener {
    target: usize,
}

impl Opener for TargetOpener {
    fn driver(&self) -> usize {
        object::driver_of(self.target)
    }

    fn query_remove(&self) -> NTSTATUS {
        let Some(object) = quiet(self.target) else {
            return STATUS_SUCCESS;
        };
        let callback = lock(&target_of(&object).inner).callbacks.query_remove;
        if let Some(callback) = callback {
            // SAFETY: the driver registered this callback for this target.
            unsafe { callback(object::handle_ptr(self.target)) }
        } else {
            close_inner(
                target_of(&object),
                STATE::WdfIoTargetClosedForQueryRemove,
                false,
            );
            STATUS_SUCCESS
        }
    }

    fn remove_canceled(&self) {
        let Some(object) = quiet(self.target) else {
            return;
        };
        let (callback, name) = {
            let inner = lock(&target_of(&object).inner);
            (inner.callbacks.remove_canceled, inner.name.clone())
        };
        match callback {
            // SAFETY: the driver registered this callback for this target.
            Some(callback) => unsafe { callback(object::handle_ptr(self.target)) },
            None => {
                let _ = open_by_name(&object, &name, None, None);
            }
        }
    }

    fn remove_complete(&self) {
        let Some(object) = quiet(self.target) else {
            return;
        };
        let callback = lock(&target_of(&object).inner).callbacks.remove_complete;
        match callback {
            // SAFETY: the driver registered this callback for this target.
            Some(callback) => unsafe { callback(object::handle_ptr(self.target)) },
            None => close_inner(target_of(&object), STATE::WdfIoTargetClosed, true),
        }
    }
}

/// Creates a device's local target (used by the device area).
pub(crate) fn create_local(device: usize) -> Result<usize, NTSTATUS> {
    object::create(
        KIND,
        &Attributes::default(),
        device,
        Box::new(Target::new(device, true)),
    )
}

fn unicode(text: &crate::types::UNICODE_STRING) -> Option<String> {
    if text.Buffer.is_null() {
        return None;
    }
    // SAFETY: a UNICODE_STRING's buffer holds `Length` bytes.
    let units = unsafe { core::slice::from_raw_parts(text.Buffer, usize::from(text.Length) / 2) };
    Some(String::from_utf16_lossy(units))
}

// ---------------------------------------------------------------------------------------------
// WDF functions.

unsafe extern "C" fn wdf_io_target_create(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    io_target: *mut WDFIOTARGET,
) -> NTSTATUS {
    const API: &str = "WdfIoTargetCreate";
    if !irql::require_passive(API) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let Some(device) = object::lookup(object::handle_of(device), Some(device::KIND), API) else {
        return STATUS_INVALID_PARAMETER;
    };
    if io_target.is_null() {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "null IoTarget out pointer".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let attributes = match Attributes::read(attributes, API) {
        Ok(attributes) => attributes,
        Err(status) => return status,
    };
    match object::create(
        KIND,
        &attributes,
        device.handle,
        Box::new(Target::new(device.handle, false)),
    ) {
        Ok(handle) => {
            // SAFETY: checked non-null; writable by the API contract.
            unsafe { io_target.write(object::handle_ptr(handle)) };
            STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

unsafe extern "C" fn wdf_io_target_open(
    _globals: PWDF_DRIVER_GLOBALS,
    io_target: WDFIOTARGET,
    params: PWDF_IO_TARGET_OPEN_PARAMS,
) -> NTSTATUS {
    const API: &str = "WdfIoTargetOpen";
    if !irql::require_passive(API) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let Some(object) = find(io_target, API) else {
        return STATUS_INVALID_PARAMETER;
    };
    if params.is_null() {
        verifier::report(rules::INVALID_ARGUMENT, API, "null OpenParams".to_string());
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: non-null, a valid WDF_IO_TARGET_OPEN_PARAMS by the API contract.
    let params: WDF_IO_TARGET_OPEN_PARAMS = unsafe { params.read() };
    if params.Size as usize != size_of::<WDF_IO_TARGET_OPEN_PARAMS>() {
        verifier::report(
            rules::BAD_STRUCTURE_SIZE,
            API,
            format!(
                "WDF_IO_TARGET_OPEN_PARAMS.Size is {}, expected {}",
                params.Size,
                size_of::<WDF_IO_TARGET_OPEN_PARAMS>()
            ),
        );
        return STATUS_INFO_LENGTH_MISMATCH;
    }
    let t = target_of(&object);
    if t.local {
        verifier::report(
            rules::INVALID_ARGUMENT,
            &*object,
            "the local target cannot be opened".to_string(),
        );
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let callbacks = Callbacks {
        query_remove: params.EvtIoTargetQueryRemove,
        remove_canceled: params.EvtIoTargetRemoveCanceled,
        remove_complete: params.EvtIoTargetRemoveComplete,
    };
    match params.Type {
        OPEN::WdfIoTargetOpenByName => {
            let Some(name) = unicode(&params.TargetDeviceName) else {
                verifier::report(
                    rules::INVALID_ARGUMENT,
                    API,
                    "TargetDeviceName is empty".to_string(),
                );
                return STATUS_INVALID_PARAMETER;
            };
            let state = lock(&t.inner).state;
            if state == STATE::WdfIoTargetStarted || state == STATE::WdfIoTargetStopped {
                verifier::report(
                    rules::INVALID_ARGUMENT,
                    &*object,
                    "opened while already open".to_string(),
                );
                return STATUS_INVALID_DEVICE_STATE;
            }
            open_by_name(
                &object,
                &name,
                Some(callbacks),
                Some((params.DesiredAccess, params.ShareAccess)),
            )
        }
        OPEN::WdfIoTargetOpenReopen => {
            let name = lock(&t.inner).name.clone();
            if name.is_empty() {
                return STATUS_INVALID_DEVICE_STATE;
            }
            open_by_name(&object, &name, None, None)
        }
        _ => {
            verifier::report(
                rules::INVALID_ARGUMENT,
                API,
                format!("open type {} is not simulated", params.Type),
            );
            STATUS_INVALID_PARAMETER
        }
    }
}

unsafe extern "C" fn wdf_io_target_close_for_query_remove(
    _globals: PWDF_DRIVER_GLOBALS,
    io_target: WDFIOTARGET,
) {
    const API: &str = "WdfIoTargetCloseForQueryRemove";
    if !irql::require_passive(API) {
        return;
    }
    let Some(object) = find(io_target, API) else {
        return;
    };
    close_inner(
        target_of(&object),
        STATE::WdfIoTargetClosedForQueryRemove,
        false,
    );
}

unsafe extern "C" fn wdf_io_target_close(_globals: PWDF_DRIVER_GLOBALS, io_target: WDFIOTARGET) {
    const API: &str = "WdfIoTargetClose";
    if !irql::require_passive(API) {
        return;
    }
    let Some(object) = find(io_target, API) else {
        return;
    };
    close_inner(target_of(&object), STATE::WdfIoTargetClosed, true);
}

unsafe extern "C" fn wdf_io_target_start(
    _globals: PWDF_DRIVER_GLOBALS,
    io_target: WDFIOTARGET,
) -> NTSTATUS {
    const API: &str = "WdfIoTargetStart";
    if !irql::require_passive(API) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let Some(object) = find(io_target, API) else {
        return STATUS_INVALID_PARAMETER;
    };
    start(target_of(&object))
}

unsafe extern "C" fn wdf_io_target_stop(
    _globals: PWDF_DRIVER_GLOBALS,
    io_target: WDFIOTARGET,
    action: WDF_IO_TARGET_SENT_IO_ACTION,
) {
    const API: &str = "WdfIoTargetStop";
    let allowed = if action == SENT::WdfIoTargetLeaveSentIoPending {
        irql::DISPATCH
    } else {
        irql::PASSIVE
    };
    if !irql::require_at_most(allowed, API) {
        return;
    }
    let Some(object) = find(io_target, API) else {
        return;
    };
    if !matches!(
        action,
        SENT::WdfIoTargetCancelSentIo
            | SENT::WdfIoTargetWaitForSentIoToComplete
            | SENT::WdfIoTargetLeaveSentIoPending
    ) {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            format!("invalid action {action}"),
        );
        return;
    }
    let t = target_of(&object);
    // `FxIoTarget::GotoStopState`: only the sent list is cancelled or waited for; held requests
    // stay held (resent by WdfIoTargetStart) and requests sent ignoring the state are left alone.
    let (sent, here) = {
        let mut inner = lock(&t.inner);
        if inner.state == STATE::WdfIoTargetStarted || inner.state == STATE::WdfIoTargetPurged {
            inner.state = STATE::WdfIoTargetStopped;
        }
        let sent = if action == SENT::WdfIoTargetCancelSentIo {
            inner.sent.clone()
        } else {
            Vec::new()
        };
        (sent, completing_here(&inner))
    };
    for irp in &sent {
        irp.cancel();
    }
    if action != SENT::WdfIoTargetLeaveSentIoPending {
        wait_for_sent_io(t, here);
    }
}

unsafe extern "C" fn wdf_io_target_purge(
    _globals: PWDF_DRIVER_GLOBALS,
    io_target: WDFIOTARGET,
    action: WDF_IO_TARGET_PURGE_IO_ACTION,
) {
    const API: &str = "WdfIoTargetPurge";
    let allowed = if action == PURGE::WdfIoTargetPurgeIo {
        irql::DISPATCH
    } else {
        irql::PASSIVE
    };
    if !irql::require_at_most(allowed, API) {
        return;
    }
    let Some(object) = find(io_target, API) else {
        return;
    };
    if !matches!(
        action,
        PURGE::WdfIoTargetPurgeIoAndWait | PURGE::WdfIoTargetPurgeIo
    ) {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            format!("invalid action {action}"),
        );
        return;
    }
    let t = target_of(&object);
    // `FxIoTarget::GotoPurgeState` and `Purge`: held requests fail with
    // STATUS_WDF_DEVICE_REMOVED_NOT_SENT, sent ones are cancelled (and waited for).
    let (held, sent, here) = {
        let mut inner = lock(&t.inner);
        if inner.state == STATE::WdfIoTargetStarted || inner.state == STATE::WdfIoTargetStopped {
            inner.state = STATE::WdfIoTargetPurged;
        }
        let here = completing_here(&inner);
        (take_queued(&mut inner), inner.sent.clone(), here)
    };
    fail_not_sent(held);
    for irp in &sent {
        irp.cancel();
    }
    if action == PURGE::WdfIoTargetPurgeIoAndWait {
        wait_for_sent_io(t, here);
    }
}

unsafe extern "C" fn wdf_io_target_get_state(
    _globals: PWDF_DRIVER_GLOBALS,
    io_target: WDFIOTARGET,
) -> WDF_IO_TARGET_STATE {
    const API: &str = "WdfIoTargetGetState";
    let Some(object) = find(io_target, API) else {
        return STATE::WdfIoTargetStateUndefined;
    };
    lock(&target_of(&object).inner).state
}

unsafe extern "C" fn wdf_io_target_get_device(
    _globals: PWDF_DRIVER_GLOBALS,
    io_target: WDFIOTARGET,
) -> WDFDEVICE {
    const API: &str = "WdfIoTargetGetDevice";
    find(io_target, API).map_or(core::ptr::null_mut(), |object| {
        object::handle_ptr(target_of(&object).device)
    })
}

unsafe extern "C" fn wdf_io_target_format_request_for_read(
    _globals: PWDF_DRIVER_GLOBALS,
    io_target: WDFIOTARGET,
    request: WDFREQUEST,
    output: WDFMEMORY,
    output_offset: PWDFMEMORY_OFFSET,
    _device_offset: PLONGLONG,
) -> NTSTATUS {
    let none = (core::ptr::null_mut(), core::ptr::null_mut());
    request::format(
        request,
        io_target,
        MajorFunction::Read,
        0,
        none,
        (output, output_offset),
        "WdfIoTargetFormatRequestForRead",
    )
}

unsafe extern "C" fn wdf_io_target_format_request_for_write(
    _globals: PWDF_DRIVER_GLOBALS,
    io_target: WDFIOTARGET,
    request: WDFREQUEST,
    input: WDFMEMORY,
    input_offset: PWDFMEMORY_OFFSET,
    _device_offset: PLONGLONG,
) -> NTSTATUS {
    let none = (core::ptr::null_mut(), core::ptr::null_mut());
    request::format(
        request,
        io_target,
        MajorFunction::Write,
        0,
        (input, input_offset),
        none,
        "WdfIoTargetFormatRequestForWrite",
    )
}

unsafe extern "C" fn wdf_io_target_format_request_for_ioctl(
    _globals: PWDF_DRIVER_GLOBALS,
    io_target: WDFIOTARGET,
    request: WDFREQUEST,
    ioctl: ULONG,
    input: WDFMEMORY,
    input_offset: PWDFMEMORY_OFFSET,
    output: WDFMEMORY,
    output_offset: PWDFMEMORY_OFFSET,
) -> NTSTATUS {
    request::format(
        request,
        io_target,
        MajorFunction::DeviceControl,
        ioctl,
        (input, input_offset),
        (output, output_offset),
        "WdfIoTargetFormatRequestForIoctl",
    )
}

unsafe extern "C" fn wdf_io_target_format_request_for_internal_ioctl(
    _globals: PWDF_DRIVER_GLOBALS,
    io_target: WDFIOTARGET,
    request: WDFREQUEST,
    ioctl: ULONG,
    input: WDFMEMORY,
    input_offset: PWDFMEMORY_OFFSET,
    output: WDFMEMORY,
    output_offset: PWDFMEMORY_OFFSET,
) -> NTSTATUS {
    request::format(
        request,
        io_target,
        MajorFunction::InternalDeviceControl,
        ioctl,
        (input, input_offset),
        (output, output_offset),
        "WdfIoTargetFormatRequestForInternalIoctl",
    )
}

/// A memory descriptor resolved to a temporary WDFMEMORY (for buffer descriptors) or the
/// caller's handle and offsets.
struct Described {
    memory: WDFMEMORY,
    offsets: PWDFMEMORY_OFFSET,
    temporary: bool,
}

fn describe(
    descriptor: PWDF_MEMORY_DESCRIPTOR,
    parent: usize,
    api: &str,
) -> Result<Described, NTSTATUS> {
    let none = Described {
        memory: core::ptr::null_mut(),
        offsets: core::ptr::null_mut(),
        temporary: false,
    };
    if descriptor.is_null() {
        return Ok(none);
    }
    // SAFETY: non-null, a valid WDF_MEMORY_DESCRIPTOR by the API contract.
    let descriptor: WDF_MEMORY_DESCRIPTOR = unsafe { descriptor.read() };
    match descriptor.Type {
        DESCRIPTOR::WdfMemoryDescriptorTypeBuffer => {
            // SAFETY: the type says the buffer member is the valid one.
            let buffer = unsafe { descriptor.u.BufferType };
            if buffer.Buffer.is_null() || buffer.Length == 0 {
                return Ok(none);
            }
            let handle = super::memory::create_view(
                &Attributes::default(),
                parent,
                buffer.Buffer as usize,
                buffer.Length as usize,
            )?;
            Ok(Described {
                memory: object::handle_ptr(handle),
                offsets: core::ptr::null_mut(),
                temporary: true,
            })
        }
        DESCRIPTOR::WdfMemoryDescriptorTypeHandle => {
            // SAFETY: the type says the handle member is the valid one.
            let handle = unsafe { descriptor.u.HandleType };
            Ok(Described {
                memory: handle.Memory,
                offsets: handle.Offsets,
                temporary: false,
            })
        }
        other => {
            verifier::report(
                rules::INVALID_ARGUMENT,
                api,
                format!("memory descriptor type {other} is not simulated"),
            );
            Err(STATUS_INVALID_PARAMETER)
        }
    }
}

/// The synchronous send helpers: format `request` (or a temporary one), send synchronously.
#[allow(clippy::too_many_arguments)]
fn send_synchronously(
    io_target: WDFIOTARGET,
    request: WDFREQUEST,
    major: MajorFunction,
    ioctl: u32,
    input: PWDF_MEMORY_DESCRIPTOR,
    output: PWDF_MEMORY_DESCRIPTOR,
    options: PWDF_REQUEST_SEND_OPTIONS,
    bytes: PULONG_PTR,
    api: &str,
) -> NTSTATUS {
    if !irql::require_passive(api) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let Some(target) = find(io_target, api) else {
        return STATUS_INVALID_PARAMETER;
    };
    // Formatting validates the target first (`FxRequestBase::ValidateTarget`); a failed format
    // leaves `BytesReturned` untouched (`FxIoTargetSendIoctl`, `FxIoTargetSendIo`).
    if let Err(status) = check_accepts_format(&target) {
        return status;
    }
    // A temporary request when the driver passes none.
    let (request, temporary) = if request.is_null() {
        match object::create(
            request::KIND,
            &Attributes::default(),
            target.handle,
            Box::new(request::Request::new(true, None)),
        ) {
            Ok(handle) => (
                object::handle_ptr::<crate::types::WDFREQUEST__>(handle),
                true,
            ),
            Err(status) => return status,
        }
    } else {
        (request, false)
    };
    let parent = object::handle_of(request);
    let result = (|| {
        let input = describe(input, parent, api)?;
        let output = describe(output, parent, api)?;
        let status = request::format(
            request,
            io_target,
            major,
            ioctl,
            (input.memory, input.offsets),
            (output.memory, output.offsets),
            api,
        );
        let temporaries: Vec<usize> = [&input, &output]
            .iter()
            .filter(|d| d.temporary)
            .map(|d| object::handle_of(d.memory))
            .collect();
        Ok::<_, NTSTATUS>((status, temporaries))
    })();
    let (status, temporaries) = match result {
        Ok(value) => value,
        Err(status) => {
            if temporary && let Some(object) = object::live_object(parent) {
                object::delete(&object);
            }
            return status;
        }
    };
    let mut final_status = status;
    if status >= 0 {
        let mut sync_options = if options.is_null() {
            crate::types::WDF_REQUEST_SEND_OPTIONS {
                Size: size_of::<crate::types::WDF_REQUEST_SEND_OPTIONS>() as u32,
                Flags: 0,
                Timeout: 0,
            }
        } else {
            // SAFETY: non-null, valid by the API contract.
            unsafe { options.read() }
        };
        sync_options.Flags |=
            crate::types::_WDF_REQUEST_SEND_OPTIONS_FLAGS::WDF_REQUEST_SEND_OPTION_SYNCHRONOUS
                as u32;
        request::send(request, io_target, &raw mut sync_options, api);
        if let Some(object) = request::find(request, api) {
            let state = lock(&request::payload(&object).state);
            final_status = state.status;
            // Whatever the status: after `SubmitSync`, KMDF writes the IRP's
            // IoStatus.Information (`FxIoTargetSendIoctl`, `FxIoTargetSendIo`), so a
            // STATUS_BUFFER_OVERFLOW with data reports how much data came back.
            if !bytes.is_null() {
                // SAFETY: a non-null out pointer is writable by the API contract.
                unsafe { bytes.write(state.information as ULONG_PTR) };
            }
        }
    }
    for memory in temporaries {
        if let Some(object) = object::live_object(memory) {
            object::delete(&object);
        }
    }
    if temporary && let Some(object) = object::live_object(parent) {
        object::delete(&object);
    }
    final_status
}

unsafe extern "C" fn wdf_io_target_send_read_synchronously(
    _globals: PWDF_DRIVER_GLOBALS,
    io_target: WDFIOTARGET,
    request: WDFREQUEST,
    output: PWDF_MEMORY_DESCRIPTOR,
    _device_offset: PLONGLONG,
    options: PWDF_REQUEST_SEND_OPTIONS,
    bytes_read: PULONG_PTR,
) -> NTSTATUS {
    send_synchronously(
        io_target,
        request,
        MajorFunction::Read,
        0,
        core::ptr::null_mut(),
        output,
        options,
        bytes_read,
        "WdfIoTargetSendReadSynchronously",
    )
}

unsafe extern "C" fn wdf_io_target_send_write_synchronously(
    _globals: PWDF_DRIVER_GLOBALS,
    io_target: WDFIOTARGET,
    request: WDFREQUEST,
    input: PWDF_MEMORY_DESCRIPTOR,
    _device_offset: PLONGLONG,
    options: PWDF_REQUEST_SEND_OPTIONS,
    bytes_written: PULONG_PTR,
) -> NTSTATUS {
    send_synchronously(
        io_target,
        request,
        MajorFunction::Write,
        0,
        input,
        core::ptr::null_mut(),
        options,
        bytes_written,
        "WdfIoTargetSendWriteSynchronously",
    )
}

unsafe extern "C" fn wdf_io_target_send_ioctl_synchronously(
    _globals: PWDF_DRIVER_GLOBALS,
    io_target: WDFIOTARGET,
    request: WDFREQUEST,
    ioctl: ULONG,
    input: PWDF_MEMORY_DESCRIPTOR,
    output: PWDF_MEMORY_DESCRIPTOR,
    options: PWDF_REQUEST_SEND_OPTIONS,
    bytes_returned: PULONG_PTR,
) -> NTSTATUS {
    send_synchronously(
        io_target,
        request,
        MajorFunction::DeviceControl,
        ioctl,
        input,
        output,
        options,
        bytes_returned,
        "WdfIoTargetSendIoctlSynchronously",
    )
}

unsafe extern "C" fn wdf_io_target_send_internal_ioctl_synchronously(
    _globals: PWDF_DRIVER_GLOBALS,
    io_target: WDFIOTARGET,
    request: WDFREQUEST,
    ioctl: ULONG,
    input: PWDF_MEMORY_DESCRIPTOR,
    output: PWDF_MEMORY_DESCRIPTOR,
    options: PWDF_REQUEST_SEND_OPTIONS,
    bytes_returned: PULONG_PTR,
) -> NTSTATUS {
    send_synchronously(
        io_target,
        request,
        MajorFunction::InternalDeviceControl,
        ioctl,
        input,
        output,
        options,
        bytes_returned,
        "WdfIoTargetSendInternalIoctlSynchronously",
    )
}

pub(crate) const ENTRIES: &[Entry] = &[
    wdf_entry!(
        WdfIoTargetCreateTableIndex,
        PFN_WDFIOTARGETCREATE,
        wdf_io_target_create
    ),
    wdf_entry!(
        WdfIoTargetOpenTableIndex,
        PFN_WDFIOTARGETOPEN,
        wdf_io_target_open
    ),
    wdf_entry!(
        WdfIoTargetCloseForQueryRemoveTableIndex,
        PFN_WDFIOTARGETCLOSEFORQUERYREMOVE,
        wdf_io_target_close_for_query_remove
    ),
    wdf_entry!(
        WdfIoTargetCloseTableIndex,
        PFN_WDFIOTARGETCLOSE,
        wdf_io_target_close
    ),
    wdf_entry!(
        WdfIoTargetStartTableIndex,
        PFN_WDFIOTARGETSTART,
        wdf_io_target_start
    ),
    wdf_entry!(
        WdfIoTargetStopTableIndex,
        PFN_WDFIOTARGETSTOP,
        wdf_io_target_stop
    ),
    wdf_entry!(
        WdfIoTargetPurgeTableIndex,
        PFN_WDFIOTARGETPURGE,
        wdf_io_target_purge
    ),
    wdf_entry!(
        WdfIoTargetGetStateTableIndex,
        PFN_WDFIOTARGETGETSTATE,
        wdf_io_target_get_state
    ),
    wdf_entry!(
        WdfIoTargetGetDeviceTableIndex,
        PFN_WDFIOTARGETGETDEVICE,
        wdf_io_target_get_device
    ),
    wdf_entry!(
        WdfIoTargetFormatRequestForReadTableIndex,
        PFN_WDFIOTARGETFORMATREQUESTFORREAD,
        wdf_io_target_format_request_for_read
    ),
    wdf_entry!(
        WdfIoTargetFormatRequestForWriteTableIndex,
        PFN_WDFIOTARGETFORMATREQUESTFORWRITE,
        wdf_io_target_format_request_for_write
    ),
    wdf_entry!(
        WdfIoTargetFormatRequestForIoctlTableIndex,
        PFN_WDFIOTARGETFORMATREQUESTFORIOCTL,
        wdf_io_target_format_request_for_ioctl
    ),
    wdf_entry!(
        WdfIoTargetFormatRequestForInternalIoctlTableIndex,
        PFN_WDFIOTARGETFORMATREQUESTFORINTERNALIOCTL,
        wdf_io_target_format_request_for_internal_ioctl
    ),
    wdf_entry!(
        WdfIoTargetSendReadSynchronouslyTableIndex,
        PFN_WDFIOTARGETSENDREADSYNCHRONOUSLY,
        wdf_io_target_send_read_synchronously
    ),
    wdf_entry!(
        WdfIoTargetSendWriteSynchronouslyTableIndex,
        PFN_WDFIOTARGETSENDWRITESYNCHRONOUSLY,
        wdf_io_target_send_write_synchronously
    ),
    wdf_entry!(
        WdfIoTargetSendIoctlSynchronouslyTableIndex,
        PFN_WDFIOTARGETSENDIOCTLSYNCHRONOUSLY,
        wdf_io_target_send_ioctl_synchronously
    ),
    wdf_entry!(
        WdfIoTargetSendInternalIoctlSynchronouslyTableIndex,
        PFN_WDFIOTARGETSENDINTERNALIOCTLSYNCHRONOUSLY,
        wdf_io_target_send_internal_ioctl_synchronously
    ),
];

/// Kernel functions of this area, re-exported from `ntddk`.
#[allow(non_snake_case)]
pub mod kernel {}
