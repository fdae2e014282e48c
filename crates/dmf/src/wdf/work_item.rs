//! `WDFWORKITEM`: a client handler run at `PASSIVE_LEVEL` on a system thread.
//!
//! The handler is fixed at creation: it is boxed once and its pointer is kept in the work
//! item's object context (a context type declared as `WDF_DECLARE_CONTEXT_TYPE` would), so
//! enqueuing allocates nothing. The box is freed by the object's destroy callback, which KMDF
//! runs only after the last reference is gone, that is after any running callback returned.

use alloc::boxed::Box;

use wdk_sys::{
    _WDF_EXECUTION_LEVEL, _WDF_SYNCHRONIZATION_SCOPE, PVOID, WDF_OBJECT_ATTRIBUTES,
    WDF_OBJECT_CONTEXT_TYPE_INFO, WDF_WORKITEM_CONFIG, WDFOBJECT, WDFWORKITEM,
    call_unsafe_wdf_function_binding,
};

use super::status::NtStatus;

/// A client callback as stored in an object context.
pub(crate) type Handler = dyn Fn() + Send + Sync;

/// The object context of work items and timers: the boxed handler, boxed again so that the
/// slot is a thin pointer (null in a zeroed context).
#[repr(C)]
struct HandlerSlot {
    handler: *mut Box<Handler>,
}

/// A context type description that may live in a `static` (it holds only pointers to
/// statics).
#[repr(transparent)]
struct ContextType(WDF_OBJECT_CONTEXT_TYPE_INFO);

// SAFETY: the description is immutable and points only at `'static` data.
unsafe impl Sync for ContextType {}

/// The context type of [`HandlerSlot`], as `WDF_DECLARE_CONTEXT_TYPE` declares one.
static HANDLER_CONTEXT: ContextType = ContextType(WDF_OBJECT_CONTEXT_TYPE_INFO {
    Size: size_of::<WDF_OBJECT_CONTEXT_TYPE_INFO>() as u32,
    ContextName: c"DmfHandlerContext".as_ptr(),
    ContextSize: size_of::<HandlerSlot>(),
    UniqueType: &raw const HANDLER_CONTEXT.0,
    EvtDriverGetUniqueContextType: None,
});

/// Attributes for an object whose context holds a handler: parent, handler context, the
/// destroy callback that frees the handler, and the callback execution level.
pub(crate) fn handler_attributes(parent: WDFOBJECT, passive: bool) -> WDF_OBJECT_ATTRIBUTES {
    WDF_OBJECT_ATTRIBUTES {
        Size: size_of::<WDF_OBJECT_ATTRIBUTES>() as u32,
        EvtDestroyCallback: Some(free_handler),
        ExecutionLevel: if passive {
            _WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive
        } else {
            _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent
        },
        SynchronizationScope: _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
        ParentObject: parent,
        ContextTypeInfo: &raw const HANDLER_CONTEXT.0,
        ..WDF_OBJECT_ATTRIBUTES::default()
    }
}

fn slot_of(object: WDFOBJECT) -> *mut HandlerSlot {
    // SAFETY: `object` is a live object created with `handler_attributes`; the type info is a
    // static.
    let context: PVOID = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfObjectGetTypedContextWorker,
            object,
            &raw const HANDLER_CONTEXT.0
        )
    };
    context.cast()
}

/// Stores `handler` in the context of a just-created object; on failure the handler is
/// dropped and the object must be deleted by the caller.
pub(crate) fn install_handler(object: WDFOBJECT, handler: Box<Handler>) -> Result<(), NtStatus> {
    let slot = slot_of(object);
    if slot.is_null() {
        return Err(NtStatus::INTERNAL_ERROR);
    }
    let boxed = Box::into_raw(Box::new(handler));
    // SAFETY: the context area is a zeroed, aligned `HandlerSlot` owned by the object; no
    // callback can run yet (the object was never enqueued or started).
    unsafe {
        slot.write(HandlerSlot { handler: boxed });
    }
    Ok(())
}

/// Runs the handler stored in `object`'s context.
///
/// # Safety
/// `object` is a live object created with [`handler_attributes`].
pub(crate) unsafe fn invoke_handler(object: WDFOBJECT) {
    let slot = slot_of(object);
    if slot.is_null() {
        return;
    }
    // SAFETY: the slot is a valid `HandlerSlot` (written at creation, before any callback).
    let handler = unsafe { (*slot).handler };
    if handler.is_null() {
        return;
    }
    // SAFETY: the handler is freed only by the destroy callback, which runs after every
    // callback returned.
    unsafe { (**handler)() }
}

/// `EvtDestroyCallback`: frees the handler box.
unsafe extern "C" fn free_handler(object: WDFOBJECT) {
    let slot = slot_of(object);
    if slot.is_null() {
        return;
    }
    // `HandlerSlot` is `repr(C)` with the handler pointer as its only field.
    let field = slot.cast::<*mut Box<Handler>>();
    // SAFETY: the slot is a valid `HandlerSlot`; the destroy callback runs once, last.
    let handler = unsafe { core::ptr::replace(field, core::ptr::null_mut()) };
    if !handler.is_null() {
        // SAFETY: the pointer came from `Box::into_raw` in `install_handler` and is freed once.
        drop(unsafe { Box::from_raw(handler) });
    }
}

/// `EvtWorkItemFunc` of every [`WorkItem`].
unsafe extern "C" fn work_item_callback(work_item: WDFWORKITEM) {
    // SAFETY: the framework passes the live work item, created with `handler_attributes`.
    unsafe { invoke_handler(work_item.cast()) };
}

/// A framework work item that runs a client handler at `PASSIVE_LEVEL`; deleted when dropped.
///
/// Enqueuing an item that is queued and has not started yet does nothing, as in KMDF: the
/// handler runs once for both enqueues.
#[derive(Debug)]
pub struct WorkItem {
    handle: WDFWORKITEM,
}

// SAFETY: work item handles may be used from any thread; enqueue and flush are thread-safe.
unsafe impl Send for WorkItem {}
// SAFETY: as above; `&WorkItem` only enqueues and flushes.
unsafe impl Sync for WorkItem {}

impl WorkItem {
    /// Creates a work item under `parent` (a device or queue on Windows; the work item is
    /// deleted with it) that calls `handler` each time it runs. Callable at `IRQL <= DISPATCH_LEVEL`.
    pub fn new(
        parent: WDFOBJECT,
        handler: impl Fn() + Send + Sync + 'static,
    ) -> Result<Self, NtStatus> {
        let handler: Box<Handler> = Box::new(handler);
        let mut config = WDF_WORKITEM_CONFIG {
            Size: size_of::<WDF_WORKITEM_CONFIG>() as u32,
            EvtWorkItemFunc: Some(work_item_callback),
            AutomaticSerialization: 0,
        };
        let mut attributes = handler_attributes(parent, false);
        let mut handle: WDFWORKITEM = core::ptr::null_mut();
        // SAFETY: config and attributes are initialized; the out pointer is a valid local.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfWorkItemCreate,
                &raw mut config,
                &raw mut attributes,
                &raw mut handle
            )
        };
        NtStatus::from_raw(status).into_result()?;
        let item = Self { handle };
        install_handler(handle.cast(), handler)?;
        Ok(item)
    }

    /// The raw handle.
    #[must_use]
    pub fn handle(&self) -> WDFWORKITEM {
        self.handle
    }

    /// Queues the handler to run (`WdfWorkItemEnqueue`). Callable at `IRQL <= DISPATCH_LEVEL`.
    pub fn enqueue(&self) {
        // SAFETY: `self` owns the live handle.
        unsafe { call_unsafe_wdf_function_binding!(WdfWorkItemEnqueue, self.handle) };
    }

    /// Waits until a queued or running handler has returned (`WdfWorkItemFlush`).
    /// `PASSIVE_LEVEL` only, and never from the handler itself.
    pub fn flush(&self) {
        // SAFETY: `self` owns the live handle.
        unsafe { call_unsafe_wdf_function_binding!(WdfWorkItemFlush, self.handle) };
    }

    /// The parent object given at creation.
    #[must_use]
    pub fn parent(&self) -> WDFOBJECT {
        // SAFETY: `self` owns the live handle.
        unsafe { call_unsafe_wdf_function_binding!(WdfWorkItemGetParentObject, self.handle) }
    }
}

impl Drop for WorkItem {
    /// Deletes the work item. KMDF's delete of a work item flushes it first (waits for a queued
    /// or running handler), except when called from the handler itself, where the handler is
    /// freed once it returns.
    fn drop(&mut self) {
        // SAFETY: `self` owns the handle; it is deleted exactly once.
        unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, self.handle.cast()) };
    }
}
