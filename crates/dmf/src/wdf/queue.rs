//! `WDFQUEUE` and the requests a queue presents to the driver.
//!
//! A [`QueueRequest`] is a request the driver owns: it must be completed (which consumes it),
//! forwarded to another queue, or handed back through a raw call. Its buffers borrow it, so they
//! cannot outlive its completion.

use wdk_sys::{
    _WDF_IO_QUEUE_DISPATCH_TYPE, _WDF_IO_QUEUE_STATE, _WDF_REQUEST_TYPE, _WDF_TRI_STATE,
    PFN_WDF_IO_QUEUE_IO_CANCELED_ON_QUEUE, PFN_WDF_IO_QUEUE_IO_DEFAULT,
    PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL, PFN_WDF_IO_QUEUE_IO_INTERNAL_DEVICE_CONTROL,
    PFN_WDF_IO_QUEUE_IO_READ, PFN_WDF_IO_QUEUE_IO_WRITE, PFN_WDF_REQUEST_CANCEL, PVOID, ULONG_PTR,
    WDF_IO_QUEUE_CONFIG, WDF_NO_OBJECT_ATTRIBUTES, WDF_REQUEST_PARAMETERS, WDFMEMORY, WDFQUEUE,
    WDFREQUEST, call_unsafe_wdf_function_binding,
};

use super::device::Device;
use super::status::NtStatus;

/// How a queue presents requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchType {
    /// One at a time.
    Sequential,
    /// As they arrive.
    Parallel,
    /// Never: the driver retrieves them.
    Manual,
}

/// Which requests a queue receives from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    /// Reads.
    Read,
    /// Writes.
    Write,
    /// Device controls.
    DeviceControl,
    /// Internal device controls.
    InternalDeviceControl,
}

impl RequestType {
    const fn raw(self) -> wdk_sys::WDF_REQUEST_TYPE {
        match self {
            Self::Read => _WDF_REQUEST_TYPE::WdfRequestTypeRead,
            Self::Write => _WDF_REQUEST_TYPE::WdfRequestTypeWrite,
            Self::DeviceControl => _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControl,
            Self::InternalDeviceControl => _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControlInternal,
        }
    }
}

/// A queue's configuration (`WDF_IO_QUEUE_CONFIG`); request handlers are raw WDF callbacks.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// Presentation.
    pub dispatch: DispatchType,
    /// `Some(false)` for a queue that works while the device is not in D0; `None` for the
    /// framework's default (power-managed for a function driver).
    pub power_managed: Option<bool>,
    /// Whether this is the device's default queue.
    pub default_queue: bool,
    /// `EvtIoDefault`.
    pub io_default: PFN_WDF_IO_QUEUE_IO_DEFAULT,
    /// `EvtIoRead`.
    pub io_read: PFN_WDF_IO_QUEUE_IO_READ,
    /// `EvtIoWrite`.
    pub io_write: PFN_WDF_IO_QUEUE_IO_WRITE,
    /// `EvtIoDeviceControl`.
    pub io_device_control: PFN_WDF_IO_QUEUE_IO_DEVICE_CONTROL,
    /// `EvtIoInternalDeviceControl`.
    pub io_internal_device_control: PFN_WDF_IO_QUEUE_IO_INTERNAL_DEVICE_CONTROL,
    /// `EvtIoCanceledOnQueue`.
    pub io_canceled_on_queue: PFN_WDF_IO_QUEUE_IO_CANCELED_ON_QUEUE,
}

impl QueueConfig {
    /// A configuration with no handlers.
    #[must_use]
    pub const fn new(dispatch: DispatchType, default_queue: bool) -> Self {
        Self {
            dispatch,
            power_managed: None,
            default_queue,
            io_default: None,
            io_read: None,
            io_write: None,
            io_device_control: None,
            io_internal_device_control: None,
            io_canceled_on_queue: None,
        }
    }
}

/// A queue (deleted with its device; a copyable handle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue(WDFQUEUE);

// SAFETY: a WDFQUEUE handle may be used from any thread.
unsafe impl Send for Queue {}
// SAFETY: as above; the framework serializes the queue's state.
unsafe impl Sync for Queue {}

impl Queue {
    /// `WdfIoQueueCreate` on `device`.
    pub fn create(device: Device, config: &QueueConfig) -> Result<Self, NtStatus> {
        Self::create_with_attributes(device, config, WDF_NO_OBJECT_ATTRIBUTES)
    }

    /// `WdfIoQueueCreate` with raw attributes (context, destroy callback, execution level).
    pub(crate) fn create_with_attributes(
        device: Device,
        config: &QueueConfig,
        attributes: *mut wdk_sys::WDF_OBJECT_ATTRIBUTES,
    ) -> Result<Self, NtStatus> {
        let mut raw = WDF_IO_QUEUE_CONFIG {
            Size: size_of::<WDF_IO_QUEUE_CONFIG>() as u32,
            DispatchType: match config.dispatch {
                DispatchType::Sequential => {
                    _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchSequential
                }
                DispatchType::Parallel => _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel,
                DispatchType::Manual => _WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchManual,
            },
            PowerManaged: match config.power_managed {
                None => _WDF_TRI_STATE::WdfUseDefault,
                Some(true) => _WDF_TRI_STATE::WdfTrue,
                Some(false) => _WDF_TRI_STATE::WdfFalse,
            },
            DefaultQueue: u8::from(config.default_queue),
            EvtIoDefault: config.io_default,
            EvtIoRead: config.io_read,
            EvtIoWrite: config.io_write,
            EvtIoDeviceControl: config.io_device_control,
            EvtIoInternalDeviceControl: config.io_internal_device_control,
            EvtIoCanceledOnQueue: config.io_canceled_on_queue,
            ..WDF_IO_QUEUE_CONFIG::default()
        };
        let mut handle: WDFQUEUE = core::ptr::null_mut();
        // SAFETY: a valid device, an initialized config, attributes initialized by the caller
        // (or none) and a valid out pointer.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoQueueCreate,
                device.handle(),
                &raw mut raw,
                attributes,
                &raw mut handle
            )
        };
        NtStatus::from_raw(status).into_result()?;
        Ok(Self(handle))
    }

    /// Wraps a handle the framework passed to a callback.
    #[must_use]
    pub const fn from_raw(handle: WDFQUEUE) -> Self {
        Self(handle)
    }

    /// The raw handle.
    #[must_use]
    pub const fn handle(self) -> WDFQUEUE {
        self.0
    }

    /// `WdfDeviceConfigureRequestDispatching`: requests of `request_type` go to this queue.
    pub fn receive(self, device: Device, request_type: RequestType) -> Result<(), NtStatus> {
        // SAFETY: valid handles.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceConfigureRequestDispatching,
                device.handle(),
                self.0,
                request_type.raw()
            )
        };
        NtStatus::from_raw(status).into_result()
    }

    /// `WdfIoQueueRetrieveNextRequest`: `Err(NO_MORE_ENTRIES)` when empty.
    pub fn retrieve_next_request(self) -> Result<QueueRequest, NtStatus> {
        let mut request: WDFREQUEST = core::ptr::null_mut();
        // SAFETY: a valid queue and out pointer.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoQueueRetrieveNextRequest,
                self.0,
                &raw mut request
            )
        };
        NtStatus::from_raw(status).into_result()?;
        Ok(QueueRequest(request))
    }

    /// `WdfIoQueueGetState`: how many requests wait on the queue and how many it presented
    /// that the driver still owns. Callable at `IRQL <= DISPATCH_LEVEL`.
    #[must_use]
    pub fn status(self) -> QueueStatus {
        let mut queued: u32 = 0;
        let mut driver_owned: u32 = 0;
        // SAFETY: a valid queue and valid out pointers.
        let state = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoQueueGetState,
                self.0,
                &raw mut queued,
                &raw mut driver_owned
            )
        };
        QueueStatus {
            queued: queued as usize,
            driver_owned: driver_owned as usize,
            accepting: state & _WDF_IO_QUEUE_STATE::WdfIoQueueAcceptRequests != 0,
            dispatching: state & _WDF_IO_QUEUE_STATE::WdfIoQueueDispatchRequests != 0,
        }
    }

    /// `WdfIoQueueStart`.
    pub fn start(self) {
        // SAFETY: a valid queue.
        unsafe { call_unsafe_wdf_function_binding!(WdfIoQueueStart, self.0) };
    }

    /// `WdfIoQueueStopSynchronously` (`PASSIVE_LEVEL`).
    pub fn stop_synchronously(self) {
        // SAFETY: a valid queue.
        unsafe { call_unsafe_wdf_function_binding!(WdfIoQueueStopSynchronously, self.0) };
    }

    /// `WdfIoQueuePurgeSynchronously` (`PASSIVE_LEVEL`).
    pub fn purge_synchronously(self) {
        // SAFETY: a valid queue.
        unsafe { call_unsafe_wdf_function_binding!(WdfIoQueuePurgeSynchronously, self.0) };
    }
}

/// A queue the driver deletes itself: `WdfObjectDelete` when dropped (made by
/// [`create_owned_queue`](super::entry::create_owned_queue)).
///
/// Drop it at `PASSIVE_LEVEL`: KMDF purges the queue and waits for the requests it presented
/// and for its running callbacks before the queue is gone.
#[derive(Debug)]
pub struct OwnedQueue(Queue);

impl OwnedQueue {
    /// Takes ownership of a queue just created by this layer (deleted exactly once, on drop).
    pub(crate) const fn new(queue: Queue) -> Self {
        Self(queue)
    }

    /// The queue, for framework calls; valid while `self` lives.
    #[must_use]
    pub const fn queue(&self) -> Queue {
        self.0
    }
}

impl Drop for OwnedQueue {
    fn drop(&mut self) {
        // SAFETY: `self` owns the live queue handle; it is deleted exactly once, here.
        unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, self.0.handle().cast()) };
    }
}

/// A queue's state (`WdfIoQueueGetState`), a snapshot that may change as soon as it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStatus {
    /// Requests waiting on the queue.
    pub queued: usize,
    /// Requests the queue presented (or the driver retrieved) that the driver still owns.
    pub driver_owned: usize,
    /// The queue accepts new requests.
    pub accepting: bool,
    /// The queue presents requests (for a manual queue: may be retrieved from).
    pub dispatching: bool,
}

/// What a presented request asks for (`WdfRequestGetParameters`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestParameters {
    /// A read of `length` bytes.
    Read {
        /// Bytes requested.
        length: usize,
    },
    /// A write of `length` bytes.
    Write {
        /// Bytes supplied.
        length: usize,
    },
    /// A device control (internal or not).
    DeviceControl {
        /// Whether it is an internal device control.
        internal: bool,
        /// The control code.
        ioctl: u32,
        /// Input buffer length.
        input_length: usize,
        /// Output buffer length.
        output_length: usize,
    },
    /// Another type.
    Other,
}

/// A request a queue presented, owned by the driver until completed or forwarded.
#[derive(Debug)]
#[must_use = "a presented request must be completed or forwarded"]
pub struct QueueRequest(WDFREQUEST);

// SAFETY: a WDFREQUEST handle may be used from any thread; ownership moves with the value.
unsafe impl Send for QueueRequest {}

impl QueueRequest {
    /// Takes ownership of the request an `EvtIo*` callback received.
    ///
    /// # Safety
    /// `request` must be a request the framework presented to the driver that nothing else
    /// completes.
    pub const unsafe fn from_raw(request: WDFREQUEST) -> Self {
        Self(request)
    }

    /// The raw handle.
    #[must_use]
    pub const fn handle(&self) -> WDFREQUEST {
        self.0
    }

    /// `WdfRequestComplete`.
    pub fn complete(self, status: NtStatus) {
        // SAFETY: the driver owns the request; completing consumes it.
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestComplete, self.0, status.raw()) };
    }

    /// `WdfRequestCompleteWithInformation`.
    pub fn complete_with_information(self, status: NtStatus, information: usize) {
        // SAFETY: as in `complete`.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestCompleteWithInformation,
                self.0,
                status.raw(),
                information as ULONG_PTR
            );
        };
    }

    /// `WdfRequestForwardToIoQueue`; on failure the driver still owns the request.
    pub fn forward_to(self, queue: Queue) -> Result<(), (Self, NtStatus)> {
        // SAFETY: the driver owns the request; valid queue.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(WdfRequestForwardToIoQueue, self.0, queue.handle())
        };
        match NtStatus::from_raw(status).into_result() {
            Ok(()) => Ok(()),
            Err(status) => Err((self, status)),
        }
    }

    fn retrieve(&self, input: bool, minimum: usize) -> Result<(*mut u8, usize), NtStatus> {
        let mut buffer: PVOID = core::ptr::null_mut();
        let mut length = 0usize;
        let status = if input {
            // SAFETY: the driver owns the request; valid out pointers.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfRequestRetrieveInputBuffer,
                    self.0,
                    minimum,
                    &raw mut buffer,
                    &raw mut length
                )
            }
        } else {
            // SAFETY: as above.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfRequestRetrieveOutputBuffer,
                    self.0,
                    minimum,
                    &raw mut buffer,
                    &raw mut length
                )
            }
        };
        NtStatus::from_raw(status).into_result()?;
        Ok((buffer.cast(), length))
    }

    /// The input buffer, at least `minimum` bytes (`BUFFER_TOO_SMALL` otherwise).
    pub fn input_buffer(&self, minimum: usize) -> Result<&[u8], NtStatus> {
        let (address, length) = self.retrieve(true, minimum)?;
        // SAFETY: the framework's buffer holds `length` bytes while the request is owned,
        // which the borrow of `self` guarantees.
        Ok(unsafe { core::slice::from_raw_parts(address, length) })
    }

    /// The output buffer, at least `minimum` bytes (`BUFFER_TOO_SMALL` otherwise).
    pub fn output_buffer(&mut self, minimum: usize) -> Result<&mut [u8], NtStatus> {
        let (address, length) = self.retrieve(false, minimum)?;
        // SAFETY: as in `input_buffer`; `&mut self` makes this the only access.
        Ok(unsafe { core::slice::from_raw_parts_mut(address, length) })
    }

    /// `WdfRequestRetrieveInputMemory` (deleted with the request).
    pub fn input_memory(&self) -> Result<WDFMEMORY, NtStatus> {
        let mut memory: WDFMEMORY = core::ptr::null_mut();
        // SAFETY: the driver owns the request; valid out pointer.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveInputMemory,
                self.0,
                &raw mut memory
            )
        };
        NtStatus::from_raw(status).into_result()?;
        Ok(memory)
    }

    /// `WdfRequestRetrieveOutputMemory` (deleted with the request).
    pub fn output_memory(&self) -> Result<WDFMEMORY, NtStatus> {
        let mut memory: WDFMEMORY = core::ptr::null_mut();
        // SAFETY: as in `input_memory`.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestRetrieveOutputMemory,
                self.0,
                &raw mut memory
            )
        };
        NtStatus::from_raw(status).into_result()?;
        Ok(memory)
    }

    /// `WdfRequestGetParameters`.
    #[must_use]
    pub fn parameters(&self) -> RequestParameters {
        let mut raw = WDF_REQUEST_PARAMETERS {
            Size: size_of::<WDF_REQUEST_PARAMETERS>() as u16,
            ..WDF_REQUEST_PARAMETERS::default()
        };
        // SAFETY: a valid request and out structure.
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetParameters, self.0, &raw mut raw) };
        match raw.Type {
            _WDF_REQUEST_TYPE::WdfRequestTypeRead => {
                // SAFETY: the Read member is valid for reads.
                let read = unsafe { raw.Parameters.Read };
                RequestParameters::Read {
                    length: read.Length,
                }
            }
            _WDF_REQUEST_TYPE::WdfRequestTypeWrite => {
                // SAFETY: the Write member is valid for writes.
                let write = unsafe { raw.Parameters.Write };
                RequestParameters::Write {
                    length: write.Length,
                }
            }
            _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControl
            | _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControlInternal => {
                // SAFETY: the DeviceIoControl member is valid for device controls.
                let control = unsafe { raw.Parameters.DeviceIoControl };
                RequestParameters::DeviceControl {
                    internal: raw.Type == _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControlInternal,
                    ioctl: control.IoControlCode,
                    input_length: control.InputBufferLength,
                    output_length: control.OutputBufferLength,
                }
            }
            _ => RequestParameters::Other,
        }
    }

    /// `WdfRequestMarkCancelableEx`; `Err(CANCELLED)` if the request is already cancelled (the
    /// driver then completes it). While marked, `routine` may run and must complete it.
    pub fn mark_cancelable(&self, routine: PFN_WDF_REQUEST_CANCEL) -> Result<(), NtStatus> {
        // SAFETY: the driver owns the request.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(WdfRequestMarkCancelableEx, self.0, routine)
        };
        NtStatus::from_raw(status).into_result()
    }

    /// `WdfRequestUnmarkCancelable`; `Err(CANCELLED)` if the cancel routine owns the completion.
    pub fn unmark_cancelable(&self) -> Result<(), NtStatus> {
        // SAFETY: the driver owns the request.
        let status =
            unsafe { call_unsafe_wdf_function_binding!(WdfRequestUnmarkCancelable, self.0) };
        NtStatus::from_raw(status).into_result()
    }

    /// `WdfRequestIsCanceled`.
    #[must_use]
    pub fn is_canceled(&self) -> bool {
        // SAFETY: a valid request.
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestIsCanceled, self.0) != 0 }
    }
}
