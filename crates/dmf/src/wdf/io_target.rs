//! `WDFIOTARGET`: remote targets opened by symbolic link name, and the device's local target.

use wdk_sys::{
    _WDF_IO_TARGET_OPEN_TYPE, _WDF_IO_TARGET_PURGE_IO_ACTION, _WDF_IO_TARGET_SENT_IO_ACTION,
    _WDF_IO_TARGET_STATE, _WDF_MEMORY_DESCRIPTOR_TYPE, _WDF_REQUEST_SEND_OPTIONS_FLAGS as SEND,
    GENERIC_READ, GENERIC_WRITE, PFN_WDF_IO_TARGET_QUERY_REMOVE, PFN_WDF_IO_TARGET_REMOVE_CANCELED,
    PFN_WDF_IO_TARGET_REMOVE_COMPLETE, ULONG_PTR, UNICODE_STRING, WDF_IO_TARGET_OPEN_PARAMS,
    WDF_MEMORY_DESCRIPTOR, WDF_NO_OBJECT_ATTRIBUTES, WDF_REQUEST_SEND_OPTIONS, WDFIOTARGET,
    call_unsafe_wdf_function_binding,
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

/// An I/O target. Created targets are deleted when dropped; borrowed ones (the device's local
/// target) are not.
#[derive(Debug)]
pub struct IoTarget {
    handle: WDFIOTARGET,
    owned: bool,
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
        })
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
        }
    }

    /// Wraps a handle the caller keeps owning.
    #[must_use]
    pub fn borrowed(handle: WDFIOTARGET) -> Self {
        Self {
            handle,
            owned: false,
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
