//! `WDFIOTARGET`: remote targets opened by symbolic link name, and the device's local target.

use alloc::boxed::Box;

use wdk_sys::{
    _WDF_EXECUTION_LEVEL, _WDF_IO_TARGET_OPEN_TYPE, _WDF_IO_TARGET_PURGE_IO_ACTION,
    _WDF_IO_TARGET_SENT_IO_ACTION, _WDF_IO_TARGET_STATE, _WDF_MEMORY_DESCRIPTOR_TYPE,
    _WDF_REQUEST_SEND_OPTIONS_FLAGS as SEND, _WDF_SYNCHRONIZATION_SCOPE, FILE_SHARE_READ,
    FILE_SHARE_WRITE, GENERIC_READ, GENERIC_WRITE, NTSTATUS, PFN_WDF_IO_TARGET_QUERY_REMOVE,
    PFN_WDF_IO_TARGET_REMOVE_CANCELED, PFN_WDF_IO_TARGET_REMOVE_COMPLETE, PVOID, ULONG_PTR,
    UNICODE_STRING, WDF_IO_TARGET_OPEN_PARAMS, WDF_MEMORY_DESCRIPTOR, WDF_NO_OBJECT_ATTRIBUTES,
    WDF_OBJECT_ATTRIBUTES, WDF_OBJECT_CONTEXT_TYPE_INFO, WDF_REQUEST_SEND_OPTIONS, WDFIOTARGET,
    WDFOBJECT, call_unsafe_wdf_function_binding,
};

use super::device::Device;
use super::request::Timeout;
use super::status::NtStatus;

/// `WDF_IO_TARGET_STATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoTargetState {
    /// Accepting and delivering requests.
    Started,
    /// Accepting requests, holding them until started.
    Stopped,
    /// Closed because its device is being query-removed.
    ClosedForQueryRemove,
    /// Closed.
    Closed,
    /// Being deleted.
    Deleted,
    /// Purged: failing new requests until started.
    Purged,
    /// Any other value.
    Undefined,
}

/// What `stop` does with requests already sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentIoAction {
    /// Cancel them and wait for them (`PASSIVE_LEVEL`).
    Cancel,
    /// Wait for them to complete (`PASSIVE_LEVEL`).
    Wait,
    /// Leave them pending.
    LeavePending,
}

/// Callbacks for removal of the target's device (raw WDF callbacks; `None` for the framework's
/// default behaviour).
#[derive(Debug, Clone, Copy, Default)]
pub struct RemoveCallbacks {
    /// `EvtIoTargetQueryRemove`.
    pub query_remove: PFN_WDF_IO_TARGET_QUERY_REMOVE,
    /// `EvtIoTargetRemoveCanceled`.
    pub remove_canceled: PFN_WDF_IO_TARGET_REMOVE_CANCELED,
    /// `EvtIoTargetRemoveComplete`.
    pub remove_complete: PFN_WDF_IO_TARGET_REMOVE_COMPLETE,
}

/// The access and sharing a remote target is opened with (`WDF_IO_TARGET_OPEN_PARAMS`'s
/// `DesiredAccess` and `ShareAccess`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenAccess {
    /// `DesiredAccess` (e.g. `GENERIC_READ | GENERIC_WRITE`).
    pub desired_access: u32,
    /// `ShareAccess` (`FILE_SHARE_*` bits).
    pub share_access: u32,
}

impl Default for OpenAccess {
    /// Read/write access, shared for reading and writing.
    fn default() -> Self {
        Self {
            desired_access: GENERIC_READ | GENERIC_WRITE,
            share_access: FILE_SHARE_READ | FILE_SHARE_WRITE,
        }
    }
}

/// What a remote target's owner does when the target's device is removed
/// (`EvtIoTargetQueryRemove`, `EvtIoTargetRemoveCanceled`, `EvtIoTargetRemoveComplete`, all at
/// `PASSIVE_LEVEL`). Installed with [`IoTarget::create_with_handler`]; the framework frees it
/// with the target, after its last callback returned.
pub trait RemoveHandler: Send + Sync {
    /// The device is asked whether it may be removed: `Err` vetoes. The handler closes the
    /// target for the query (`IoTarget::close_for_query_remove`) if it agrees.
    fn query_remove(&self, target: &IoTarget) -> Result<(), NtStatus>;
    /// A removal the target agreed to was cancelled: the handler may reopen it.
    fn remove_canceled(&self, target: &IoTarget);
    /// The device is gone: the handler closes the target.
    fn remove_complete(&self, target: &IoTarget);
}

/// The object context of targets with a [`RemoveHandler`]: the boxed handler, boxed again so
/// the slot is a thin pointer (null in a zeroed context).
#[repr(C)]
struct RemoveSlot {
    handler: *mut Box<dyn RemoveHandler>,
}

/// A context type description that may live in a `static`.
#[repr(transparent)]
struct ContextType(WDF_OBJECT_CONTEXT_TYPE_INFO);

// SAFETY: the description is immutable and points only at `'static` data.
unsafe impl Sync for ContextType {}

/// The context type of [`RemoveSlot`], as `WDF_DECLARE_CONTEXT_TYPE` declares one.
static REMOVE_CONTEXT: ContextType = ContextType(WDF_OBJECT_CONTEXT_TYPE_INFO {
    Size: size_of::<WDF_OBJECT_CONTEXT_TYPE_INFO>() as u32,
    ContextName: c"DmfIoTargetRemoveContext".as_ptr(),
    ContextSize: size_of::<RemoveSlot>(),
    UniqueType: &raw const REMOVE_CONTEXT.0,
    EvtDriverGetUniqueContextType: None,
});

fn remove_slot(target: WDFIOTARGET) -> *mut RemoveSlot {
    // SAFETY: `target` is a live target created by `create_with_handler`; the type info is a
    // static.
    let context: PVOID = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfObjectGetTypedContextWorker,
            target.cast(),
            &raw const REMOVE_CONTEXT.0
        )
    };
    context.cast()
}

/// Runs `f` with the handler of `target`, if it has one.
fn with_handler<R>(
    target: WDFIOTARGET,
    f: impl FnOnce(&dyn RemoveHandler, &IoTarget) -> R,
) -> Option<R> {
    if target.is_null() {
        return None;
    }
    let slot = remove_slot(target);
    if slot.is_null() {
        return None;
    }
    // SAFETY: the slot is a valid `RemoveSlot` written at creation, before the target was
    // opened (so before any removal callback).
    let handler = unsafe { (*slot).handler };
    if handler.is_null() {
        return None;
    }
    let borrowed = IoTarget::borrowed(target);
    // Keep the target (and so its context and handler) alive through the call even if the
    // handler deletes the target: its destroy callback runs at the last dereference.
    // SAFETY: a live target; balanced below.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfObjectReferenceActual,
            target.cast(),
            core::ptr::null_mut(),
            0,
            core::ptr::null()
        );
    };
    // SAFETY: the handler is freed only by the destroy callback, which cannot run before the
    // reference just taken is released.
    let result = f(unsafe { &**handler }, &borrowed);
    // SAFETY: releases the reference taken above (the object may be destroyed now).
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfObjectDereferenceActual,
            target.cast(),
            core::ptr::null_mut(),
            0,
            core::ptr::null()
        );
    };
    Some(result)
}

unsafe extern "C" fn on_query_remove(target: WDFIOTARGET) -> NTSTATUS {
    with_handler(target, |handler, target| handler.query_remove(target))
        .unwrap_or(Ok(()))
        .map_or_else(NtStatus::raw, |()| NtStatus::SUCCESS.raw())
}

unsafe extern "C" fn on_remove_canceled(target: WDFIOTARGET) {
    with_handler(target, |handler, target| handler.remove_canceled(target));
}

unsafe extern "C" fn on_remove_complete(target: WDFIOTARGET) {
    with_handler(target, |handler, target| handler.remove_complete(target));
}

/// `EvtDestroyCallback` of targets with a handler: frees the handler box.
unsafe extern "C" fn free_remove_handler(object: WDFOBJECT) {
    let slot = remove_slot(object.cast());
    if slot.is_null() {
        return;
    }
    let field = slot.cast::<*mut Box<dyn RemoveHandler>>();
    // SAFETY: the slot is a valid `RemoveSlot`; the destroy callback runs once, last.
    let handler = unsafe { core::ptr::replace(field, core::ptr::null_mut()) };
    if !handler.is_null() {
        // SAFETY: the pointer came from `Box::into_raw` in `create_with_handler`, freed once.
        drop(unsafe { Box::from_raw(handler) });
    }
}

/// An I/O target. Created targets are deleted when dropped; borrowed ones (the device's local
/// target) are not.
#[derive(Debug)]
pub struct IoTarget {
    handle: WDFIOTARGET,
    owned: bool,
    handled: bool,
}

// SAFETY: a WDFIOTARGET handle may be used from any thread.
unsafe impl Send for IoTarget {}
// SAFETY: every method goes through the framework, which serializes the target's state.
unsafe impl Sync for IoTarget {}

fn buffer_descriptor(address: *mut u8, length: usize) -> WDF_MEMORY_DESCRIPTOR {
    let mut descriptor = WDF_MEMORY_DESCRIPTOR {
        Type: _WDF_MEMORY_DESCRIPTOR_TYPE::WdfMemoryDescriptorTypeBuffer,
        ..Default::default()
    };
    descriptor.u.BufferType.Buffer = address.cast();
    descriptor.u.BufferType.Length = length as u32;
    descriptor
}

impl IoTarget {
    /// `WdfIoTargetCreate` on `device` (parented to it). `PASSIVE_LEVEL`.
    pub fn create(device: Device) -> Result<Self, NtStatus> {
        let device = device.handle();
        let mut handle: WDFIOTARGET = core::ptr::null_mut();
        // SAFETY: a valid device and out pointer.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoTargetCreate,
                device,
                WDF_NO_OBJECT_ATTRIBUTES,
                &raw mut handle
            )
        };
        NtStatus::from_raw(status).into_result()?;
        Ok(Self {
            handle,
            owned: true,
            handled: false,
        })
    }

    /// `WdfIoTargetCreate` on `device` (parented to it) with `handler` in the target's context:
    /// a target opened with [`open_by_name_with`](Self::open_by_name_with) reports its
    /// device's removal to it. `PASSIVE_LEVEL`.
    pub fn create_with_handler(
        device: Device,
        handler: Box<dyn RemoveHandler>,
    ) -> Result<Self, NtStatus> {
        let device = device.handle();
        let mut attributes = WDF_OBJECT_ATTRIBUTES {
            Size: size_of::<WDF_OBJECT_ATTRIBUTES>() as u32,
            EvtDestroyCallback: Some(free_remove_handler),
            ExecutionLevel: _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent,
            SynchronizationScope:
                _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
            ContextTypeInfo: &raw const REMOVE_CONTEXT.0,
            ..WDF_OBJECT_ATTRIBUTES::default()
        };
        let mut handle: WDFIOTARGET = core::ptr::null_mut();
        // SAFETY: a valid device, initialized attributes and a valid out pointer.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoTargetCreate,
                device,
                &raw mut attributes,
                &raw mut handle
            )
        };
        NtStatus::from_raw(status).into_result()?;
        let mut target = Self {
            handle,
            owned: true,
            handled: false,
        };
        let slot = remove_slot(handle);
        if slot.is_null() {
            return Err(NtStatus::INTERNAL_ERROR);
        }
        let boxed = Box::into_raw(Box::new(handler));
        // SAFETY: the context area is a zeroed, aligned `RemoveSlot` owned by the target; no
        // callback can run yet (the target was never opened).
        unsafe { slot.write(RemoveSlot { handler: boxed }) };
        target.handled = true;
        Ok(target)
    }

    /// The device's local target (`WdfDeviceGetIoTarget`), borrowed.
    #[must_use]
    pub fn local(device: Device) -> Self {
        let device = device.handle();
        // SAFETY: a valid device.
        let handle = unsafe { call_unsafe_wdf_function_binding!(WdfDeviceGetIoTarget, device) };
        Self {
            handle,
            owned: false,
            handled: false,
        }
    }

    /// Wraps a handle the caller keeps owning.
    #[must_use]
    pub fn borrowed(handle: WDFIOTARGET) -> Self {
        Self {
            handle,
            owned: false,
            handled: false,
        }
    }

    /// The raw handle.
    #[must_use]
    pub fn handle(&self) -> WDFIOTARGET {
        self.handle
    }

    /// `WdfIoTargetOpen` by symbolic link name (UTF-16, no terminator), read/write access.
    pub fn open_by_name(&self, name: &[u16], callbacks: RemoveCallbacks) -> Result<(), NtStatus> {
        let length = u16::try_from(name.len() * 2).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let mut params = WDF_IO_TARGET_OPEN_PARAMS {
            Size: size_of::<WDF_IO_TARGET_OPEN_PARAMS>() as u32,
            Type: _WDF_IO_TARGET_OPEN_TYPE::WdfIoTargetOpenByName,
            EvtIoTargetQueryRemove: callbacks.query_remove,
            EvtIoTargetRemoveCanceled: callbacks.remove_canceled,
            EvtIoTargetRemoveComplete: callbacks.remove_complete,
            TargetDeviceName: UNICODE_STRING {
                Length: length,
                MaximumLength: length,
                Buffer: name.as_ptr().cast_mut(),
            },
            DesiredAccess: GENERIC_READ | GENERIC_WRITE,
            ..Default::default()
        };
        // SAFETY: a valid target; the params and the name outlive the call.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(WdfIoTargetOpen, self.handle, &raw mut params)
        };
        NtStatus::from_raw(status).into_result()
    }

    /// `WdfIoTargetOpen` by symbolic link name (UTF-16, no terminator) with the given access
    /// and sharing; a target created with [`create_with_handler`](Self::create_with_handler)
    /// gets its handler's removal callbacks. `PASSIVE_LEVEL`.
    pub fn open_by_name_with(&self, name: &[u16], access: OpenAccess) -> Result<(), NtStatus> {
        let length = u16::try_from(name.len() * 2).map_err(|_| NtStatus::INVALID_PARAMETER)?;
        let handled = self.handled;
        let mut params = WDF_IO_TARGET_OPEN_PARAMS {
            Size: size_of::<WDF_IO_TARGET_OPEN_PARAMS>() as u32,
            Type: _WDF_IO_TARGET_OPEN_TYPE::WdfIoTargetOpenByName,
            EvtIoTargetQueryRemove: if handled { Some(on_query_remove) } else { None },
            EvtIoTargetRemoveCanceled: if handled {
                Some(on_remove_canceled)
            } else {
                None
            },
            EvtIoTargetRemoveComplete: if handled {
                Some(on_remove_complete)
            } else {
                None
            },
            TargetDeviceName: UNICODE_STRING {
                Length: length,
                MaximumLength: length,
                Buffer: name.as_ptr().cast_mut(),
            },
            DesiredAccess: access.desired_access,
            ShareAccess: access.share_access,
            ..Default::default()
        };
        // SAFETY: a valid target; the params and the name outlive the call.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(WdfIoTargetOpen, self.handle, &raw mut params)
        };
        NtStatus::from_raw(status).into_result()
    }

    /// `WdfIoTargetOpen` with `WdfIoTargetOpenReopen` (from a remove-canceled callback).
    pub fn reopen(&self) -> Result<(), NtStatus> {
        let mut params = WDF_IO_TARGET_OPEN_PARAMS {
            Size: size_of::<WDF_IO_TARGET_OPEN_PARAMS>() as u32,
            Type: _WDF_IO_TARGET_OPEN_TYPE::WdfIoTargetOpenReopen,
            ..Default::default()
        };
        // SAFETY: a valid target and params.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(WdfIoTargetOpen, self.handle, &raw mut params)
        };
        NtStatus::from_raw(status).into_result()
    }

    /// `WdfIoTargetStart`.
    pub fn start(&self) -> Result<(), NtStatus> {
        // SAFETY: a valid target.
        NtStatus::from_raw(unsafe {
            call_unsafe_wdf_function_binding!(WdfIoTargetStart, self.handle)
        })
        .into_result()
    }

    /// `WdfIoTargetStop`.
    pub fn stop(&self, action: SentIoAction) {
        let action = match action {
            SentIoAction::Cancel => _WDF_IO_TARGET_SENT_IO_ACTION::WdfIoTargetCancelSentIo,
            SentIoAction::Wait => _WDF_IO_TARGET_SENT_IO_ACTION::WdfIoTargetWaitForSentIoToComplete,
            SentIoAction::LeavePending => {
                _WDF_IO_TARGET_SENT_IO_ACTION::WdfIoTargetLeaveSentIoPending
            }
        };
        // SAFETY: a valid target.
        unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetStop, self.handle, action) };
    }

    /// `WdfIoTargetPurge`: cancel pending I/O and fail new I/O until started; `wait` waits.
    pub fn purge(&self, wait: bool) {
        let action = if wait {
            _WDF_IO_TARGET_PURGE_IO_ACTION::WdfIoTargetPurgeIoAndWait
        } else {
            _WDF_IO_TARGET_PURGE_IO_ACTION::WdfIoTargetPurgeIo
        };
        // SAFETY: a valid target.
        unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetPurge, self.handle, action) };
    }

    /// `WdfIoTargetClose`: cancels and waits for sent I/O, then closes.
    pub fn close(&self) {
        // SAFETY: a valid target.
        unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetClose, self.handle) };
    }

    /// `WdfIoTargetCloseForQueryRemove`.
    pub fn close_for_query_remove(&self) {
        // SAFETY: a valid target.
        unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetCloseForQueryRemove, self.handle) };
    }

    /// `WdfIoTargetGetState`.
    #[must_use]
    pub fn state(&self) -> IoTargetState {
        // SAFETY: a valid target.
        match unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetGetState, self.handle) } {
            _WDF_IO_TARGET_STATE::WdfIoTargetStarted => IoTargetState::Started,
            _WDF_IO_TARGET_STATE::WdfIoTargetStopped => IoTargetState::Stopped,
            _WDF_IO_TARGET_STATE::WdfIoTargetClosedForQueryRemove => {
                IoTargetState::ClosedForQueryRemove
            }
            _WDF_IO_TARGET_STATE::WdfIoTargetClosed => IoTargetState::Closed,
            _WDF_IO_TARGET_STATE::WdfIoTargetDeleted => IoTargetState::Deleted,
            _WDF_IO_TARGET_STATE::WdfIoTargetPurged => IoTargetState::Purged,
            _ => IoTargetState::Undefined,
        }
    }

    fn options(timeout: Timeout) -> WDF_REQUEST_SEND_OPTIONS {
        WDF_REQUEST_SEND_OPTIONS {
            Size: size_of::<WDF_REQUEST_SEND_OPTIONS>() as u32,
            Flags: if timeout.is_none() {
                0
            } else {
                SEND::WDF_REQUEST_SEND_OPTION_TIMEOUT.cast_unsigned()
            },
            Timeout: timeout.relative_100ns(),
        }
    }

    /// `WdfIoTargetSendIoctlSynchronously` (or the internal variant) over caller buffers;
    /// returns the bytes returned. `PASSIVE_LEVEL`.
    pub fn send_ioctl_synchronously(
        &self,
        ioctl: u32,
        internal: bool,
        input: &[u8],
        output: &mut [u8],
        timeout: Timeout,
    ) -> Result<usize, NtStatus> {
        let mut input_descriptor = buffer_descriptor(input.as_ptr().cast_mut(), input.len());
        let mut output_descriptor = buffer_descriptor(output.as_mut_ptr(), output.len());
        let input_ptr = if input.is_empty() {
            core::ptr::null_mut()
        } else {
            &raw mut input_descriptor
        };
        let output_ptr = if output.is_empty() {
            core::ptr::null_mut()
        } else {
            &raw mut output_descriptor
        };
        let mut options = Self::options(timeout);
        let mut bytes: ULONG_PTR = 0;
        let status = if internal {
            // SAFETY: valid target; descriptors over buffers that outlive the synchronous call.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfIoTargetSendInternalIoctlSynchronously,
                    self.handle,
                    core::ptr::null_mut(),
                    ioctl,
                    input_ptr,
                    output_ptr,
                    &raw mut options,
                    &raw mut bytes
                )
            }
        } else {
            // SAFETY: as above.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfIoTargetSendIoctlSynchronously,
                    self.handle,
                    core::ptr::null_mut(),
                    ioctl,
                    input_ptr,
                    output_ptr,
                    &raw mut options,
                    &raw mut bytes
                )
            }
        };
        NtStatus::from_raw(status).into_result()?;
        Ok(bytes as usize)
    }

    /// `WdfIoTargetSendReadSynchronously` into `output`; returns the bytes read.
    pub fn send_read_synchronously(
        &self,
        output: &mut [u8],
        timeout: Timeout,
    ) -> Result<usize, NtStatus> {
        let mut descriptor = buffer_descriptor(output.as_mut_ptr(), output.len());
        let mut options = Self::options(timeout);
        let mut bytes: ULONG_PTR = 0;
        // SAFETY: valid target; the descriptor's buffer outlives the synchronous call.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoTargetSendReadSynchronously,
                self.handle,
                core::ptr::null_mut(),
                &raw mut descriptor,
                core::ptr::null_mut(),
                &raw mut options,
                &raw mut bytes
            )
        };
        NtStatus::from_raw(status).into_result()?;
        Ok(bytes as usize)
    }

    /// `WdfIoTargetSendWriteSynchronously` from `input`; returns the bytes written.
    pub fn send_write_synchronously(
        &self,
        input: &[u8],
        timeout: Timeout,
    ) -> Result<usize, NtStatus> {
        let mut descriptor = buffer_descriptor(input.as_ptr().cast_mut(), input.len());
        let mut options = Self::options(timeout);
        let mut bytes: ULONG_PTR = 0;
        // SAFETY: valid target; the descriptor's buffer outlives the synchronous call.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoTargetSendWriteSynchronously,
                self.handle,
                core::ptr::null_mut(),
                &raw mut descriptor,
                core::ptr::null_mut(),
                &raw mut options,
                &raw mut bytes
            )
        };
        NtStatus::from_raw(status).into_result()?;
        Ok(bytes as usize)
    }
}

impl Drop for IoTarget {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: `self` owns the handle; deleting a target closes it first.
            unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, self.handle.cast()) };
        }
    }
}
