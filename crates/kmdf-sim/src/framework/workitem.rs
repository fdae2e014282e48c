//! `WDFWORKITEM`: a driver callback run at `PASSIVE_LEVEL` on a framework thread.
//!
//! As in KMDF: enqueuing a work item that is already queued (not yet started) does nothing;
//! `WdfWorkItemFlush` waits until the queued or running callback has returned; deleting a work
//! item waits the same way (except from inside its own callback, where waiting would deadlock).
//! The framework holds a reference on the work item from enqueue until its callback returns.
//! `AutomaticSerialization` is accepted and ignored: the simulation has no device or queue
//! synchronization scope to serialize with.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;

use super::object::{self, Attributes, Object, Payload};
use super::table::Entry;
use super::verifier::{self, rules};
use super::{irql, wdf_entry};
use crate::constants::{
    STATUS_INFO_LENGTH_MISMATCH, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS,
};
use crate::types::{
    NTSTATUS, PWDF_DRIVER_GLOBALS, PWDF_OBJECT_ATTRIBUTES, PWDF_WORKITEM_CONFIG,
    WDF_WORKITEM_CONFIG, WDFOBJECT, WDFWORKITEM,
};

/// KMDF type name of work items.
pub(crate) const KIND: &str = "WDFWORKITEM";

/// `STATUS_WDF_PARENT_NOT_SPECIFIED` (wdfstatus.h).
pub(crate) const STATUS_WDF_PARENT_NOT_SPECIFIED: NTSTATUS = 0xC020_0212_u32.cast_signed();

/// Checks that creation attributes name a parent, as work items and timers require.
pub(crate) fn require_parent(attributes: &Attributes, api: &str) -> Result<(), NTSTATUS> {
    if attributes.parent().is_some() {
        return Ok(());
    }
    verifier::report(
        rules::PARENT_REQUIRED,
        api,
        "WDF_OBJECT_ATTRIBUTES.ParentObject must name the parent (a device or queue in KMDF)"
            .to_string(),
    );
    Err(STATUS_WDF_PARENT_NOT_SPECIFIED)
}

/// Which threads are running an object's callback, so that waits can detect self-waits and
/// wait for the callbacks to return.
#[derive(Default)]
pub(crate) struct Running {
    threads: Vec<ThreadId>,
}

impl Running {
    /// Whether the calling thread is inside the callback.
    pub(crate) fn on_current_thread(&self) -> bool {
        self.threads.contains(&std::thread::current().id())
    }

    /// Whether any thread is inside the callback.
    pub(crate) fn any(&self) -> bool {
        !self.threads.is_empty()
    }

    /// Notes that the calling thread enters the callback.
    pub(crate) fn enter(&mut self) {
        self.threads.push(std::thread::current().id());
    }

    /// Notes that the calling thread left the callback.
    pub(crate) fn leave(&mut self) {
        let me = std::thread::current().id();
        if let Some(index) = self.threads.iter().position(|&thread| thread == me) {
            self.threads.swap_remove(index);
        }
    }
}

struct State {
    enqueued: bool,
    running: Running,
    running_down: bool,
}

/// A work item's callback and its queue state.
pub(crate) struct WorkItem {
    callback: unsafe extern "C" fn(WDFWORKITEM),
    state: Mutex<State>,
    idle: Condvar,
}

impl WorkItem {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the item is neither queued nor running. The caller checked it is not inside
    /// the callback.
    fn wait_idle(&self) {
        let mut state = self.state();
        while state.enqueued || state.running.any() {
            state = self
                .idle
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Payload for WorkItem {
    fn dispose(&self, _handle: usize) {
        let inside = {
            let mut state = self.state();
            state.running_down = true;
            state.running.on_current_thread()
        };
        if !inside {
            self.wait_idle();
        }
    }
}

fn run(object: &Arc<Object>) {
    let Some(item) = object.payload::<WorkItem>() else {
        return;
    };
    {
        let mut state = item.state();
        state.enqueued = false;
        state.running.enter();
    }
    // SAFETY: the driver registered this callback for this work item, which is alive (the
    // framework holds a reference on it until the callback returns).
    unsafe { (item.callback)(object::handle_ptr(object.handle)) };
    {
        let mut state = item.state();
        state.running.leave();
    }
    item.idle.notify_all();
    object::dereference(object, "EvtWorkItemFunc");
}

unsafe extern "C" fn wdf_work_item_create(
    _globals: PWDF_DRIVER_GLOBALS,
    config: PWDF_WORKITEM_CONFIG,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    work_item: *mut WDFWORKITEM,
) -> NTSTATUS {
    const API: &str = "WdfWorkItemCreate";
    if !irql::require_at_most(irql::DISPATCH, API) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    if config.is_null() || work_item.is_null() {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "null Config or WorkItem pointer".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let attributes = match Attributes::read(attributes, API) {
        Ok(attributes) => attributes,
        Err(status) => return status,
    };
    if let Err(status) = require_parent(&attributes, API) {
        return status;
    }
    // SAFETY: a non-null config is a readable WDF_WORKITEM_CONFIG by the API contract.
    let config: WDF_WORKITEM_CONFIG = unsafe { config.read() };
    if config.Size as usize != size_of::<WDF_WORKITEM_CONFIG>() {
        verifier::report(
            rules::BAD_STRUCTURE_SIZE,
            API,
            format!(
                "WDF_WORKITEM_CONFIG.Size is {}, expected {}",
                config.Size,
                size_of::<WDF_WORKITEM_CONFIG>()
            ),
        );
        return STATUS_INFO_LENGTH_MISMATCH;
    }
    let Some(callback) = config.EvtWorkItemFunc else {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "WDF_WORKITEM_CONFIG.EvtWorkItemFunc is null".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    };
    let payload = WorkItem {
        callback,
        state: Mutex::new(State {
            enqueued: false,
            running: Running::default(),
            running_down: false,
        }),
        idle: Condvar::new(),
    };
    match object::create(KIND, &attributes, 0, Box::new(payload)) {
        Ok(handle) => {
            // SAFETY: `work_item` is non-null and writable by the API contract.
            unsafe { work_item.write(object::handle_ptr(handle)) };
            STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

unsafe extern "C" fn wdf_work_item_enqueue(_globals: PWDF_DRIVER_GLOBALS, work_item: WDFWORKITEM) {
    const API: &str = "WdfWorkItemEnqueue";
    if !irql::require_at_most(irql::DISPATCH, API) {
        return;
    }
    let Some(object) = object::lookup_payload::<WorkItem>(object::handle_of(work_item), KIND, API)
    else {
        return;
    };
    let Some(item) = object.payload::<WorkItem>() else {
        return;
    };
    {
        let mut state = item.state();
        if state.enqueued {
            return;
        }
        if state.running_down {
            drop(state);
            verifier::report(
                rules::USE_WHILE_DELETING,
                &*object,
                "enqueued while being deleted".to_string(),
            );
            return;
        }
        state.enqueued = true;
    }
    object::reference(&object);
    let job = Arc::clone(&object);
    // The callback is the work item's driver's code, whoever enqueued it.
    let driver = object::driver_of(object.handle);
    super::exec::submit_as(driver, irql::PASSIVE, "EvtWorkItemFunc", move || run(&job));
}

unsafe extern "C" fn wdf_work_item_get_parent_object(
    _globals: PWDF_DRIVER_GLOBALS,
    work_item: WDFWORKITEM,
) -> WDFOBJECT {
    const API: &str = "WdfWorkItemGetParentObject";
    if !irql::require_at_most(irql::DISPATCH, API) {
        return core::ptr::null_mut();
    }
    object::lookup_payload::<WorkItem>(object::handle_of(work_item), KIND, API)
        .map_or(core::ptr::null_mut(), |object| {
            object::handle_ptr(object.parent())
        })
}

unsafe extern "C" fn wdf_work_item_flush(_globals: PWDF_DRIVER_GLOBALS, work_item: WDFWORKITEM) {
    const API: &str = "WdfWorkItemFlush";
    if !irql::require_passive(API) {
        return;
    }
    let Some(object) = object::lookup_payload::<WorkItem>(object::handle_of(work_item), KIND, API)
    else {
        return;
    };
    let Some(item) = object.payload::<WorkItem>() else {
        return;
    };
    if item.state().running.on_current_thread() {
        verifier::report(
            rules::WAIT_FOR_OWN_CALLBACK,
            &*object,
            "WdfWorkItemFlush called from the work item's own callback would deadlock".to_string(),
        );
        return;
    }
    item.wait_idle();
}

pub(crate) const ENTRIES: &[Entry] = &[
    wdf_entry!(
        WdfWorkItemCreateTableIndex,
        PFN_WDFWORKITEMCREATE,
        wdf_work_item_create
    ),
    wdf_entry!(
        WdfWorkItemEnqueueTableIndex,
        PFN_WDFWORKITEMENQUEUE,
        wdf_work_item_enqueue
    ),
    wdf_entry!(
        WdfWorkItemGetParentObjectTableIndex,
        PFN_WDFWORKITEMGETPARENTOBJECT,
        wdf_work_item_get_parent_object
    ),
    wdf_entry!(
        WdfWorkItemFlushTableIndex,
        PFN_WDFWORKITEMFLUSH,
        wdf_work_item_flush
    ),
];

/// Kernel functions of this area, re-exported from `ntddk`.
#[allow(non_snake_case)]
pub mod kernel {}
