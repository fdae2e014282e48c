//! `WDFREQUEST`: driver-created requests that are formatted, sent to an I/O target and reused.
//!
//! Completion reaches Rust through one trampoline, [`completion_trampoline`], monomorphized per
//! handler type: the handler is registered as a pointer that outlives the send (no allocation
//! per send), and is called with the request's completion parameters.
//!
//! A completion routine runs in the context that completed the request, at its IRQL
//! (`<= DISPATCH_LEVEL`; KMDF raises nothing): a DPC, a work item, or, when the target completes
//! the request inside its dispatch (a local device's queue callback that completes at once),
//! the sender's own thread, *before* `WdfRequestSend` returns. A handler that sends again from
//! inside itself must not recurse into a target that completes inline: record the completion
//! and let the sending code loop (see `ContinuousRequestTarget`). Never hold a lock across a
//! send that the completion routine takes too.

use wdk_sys::{
    _WDF_REQUEST_SEND_OPTIONS_FLAGS as SEND, _WDF_REQUEST_TYPE, NTSTATUS,
    PWDF_REQUEST_COMPLETION_PARAMS, WDF_NO_OBJECT_ATTRIBUTES, WDF_REQUEST_COMPLETION_PARAMS,
    WDF_REQUEST_REUSE_PARAMS, WDF_REQUEST_SEND_OPTIONS, WDFCONTEXT, WDFIOTARGET, WDFMEMORY,
    WDFMEMORY_OFFSET, WDFOBJECT, WDFREQUEST, call_unsafe_wdf_function_binding,
};

use alloc::boxed::Box;
use alloc::sync::Arc;

use super::io_target::IoTarget;
use super::object::ObjectAttributes;
use super::status::NtStatus;

/// A send timeout (converted to WDF's relative 100 ns units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout {
    milliseconds: u32,
}

impl Timeout {
    /// A timeout of `milliseconds` (0 means none, as in DMF).
    #[must_use]
    pub const fn from_millis(milliseconds: u32) -> Self {
        Self { milliseconds }
    }

    /// The relative WDF timeout value (negative 100 ns units).
    #[must_use]
    pub const fn relative_100ns(self) -> i64 {
        -(self.milliseconds as i64) * 10_000
    }

    /// Whether this is "no timeout".
    #[must_use]
    pub const fn is_none(self) -> bool {
        self.milliseconds == 0
    }
}

/// A buffer for formatting: a memory handle with an optional offset and length.
#[derive(Debug, Clone, Copy)]
pub struct MemoryRange {
    /// The memory object.
    pub memory: WDFMEMORY,
    /// `Some((offset, length))` to use part of the buffer (length 0: to the end).
    pub range: Option<(usize, usize)>,
}

impl MemoryRange {
    /// The whole buffer of `memory`.
    #[must_use]
    pub const fn whole(memory: WDFMEMORY) -> Self {
        Self {
            memory,
            range: None,
        }
    }

    /// `length` bytes at `offset` of `memory`.
    #[must_use]
    pub const fn part(memory: WDFMEMORY, offset: usize, length: usize) -> Self {
        Self {
            memory,
            range: Some((offset, length)),
        }
    }
}

/// Splits an optional range into the (handle, offsets) pair a format call takes. The offsets
/// live in `storage`.
fn raw_range(
    range: Option<MemoryRange>,
    storage: &mut WDFMEMORY_OFFSET,
) -> (WDFMEMORY, *mut WDFMEMORY_OFFSET) {
    match range {
        None => (core::ptr::null_mut(), core::ptr::null_mut()),
        Some(MemoryRange {
            memory,
            range: None,
        }) => (memory, core::ptr::null_mut()),
        Some(MemoryRange {
            memory,
            range: Some((offset, length)),
        }) => {
            storage.BufferOffset = offset;
            storage.BufferLength = length;
            (memory, &raw mut *storage)
        }
    }
}

/// What a completed request reports.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    /// The request's final status.
    pub status: NtStatus,
    /// Bytes transferred (`IoStatus.Information`).
    pub information: usize,
    /// The I/O control code for IOCTL requests, else 0.
    pub ioctl: u32,
}

impl Completion {
    fn from_params(params: &WDF_REQUEST_COMPLETION_PARAMS) -> Self {
        // SAFETY: `Status` is the member the framework writes.
        let status = unsafe { params.IoStatus.__bindgen_anon_1.Status };
        let ioctl = if params.Type == _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControl
            || params.Type == _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControlInternal
        {
            // SAFETY: the Ioctl member is the valid one for these request types.
            unsafe { params.Parameters.Ioctl.IoControlCode }
        } else {
            0
        };
        Self {
            status: NtStatus::from_raw(status),
            information: params.IoStatus.Information as usize,
            ioctl,
        }
    }
}

/// Receives the completion of requests sent with [`Request::set_completion`].
pub trait RequestCompletion: Sync {
    /// Called once per completed send, in the completing context (see the module docs).
    fn request_completed(&self, request: WDFREQUEST, target: WDFIOTARGET, completion: &Completion);
}

/// The one completion routine every Rust handler goes through.
///
/// # Safety
/// Called by the framework only, with `context` the `*const C` registered by
/// [`Request::set_completion`], which the caller guaranteed to outlive the completion.
pub unsafe extern "C" fn completion_trampoline<C: RequestCompletion>(
    request: WDFREQUEST,
    target: WDFIOTARGET,
    params: PWDF_REQUEST_COMPLETION_PARAMS,
    context: WDFCONTEXT,
) {
    if context.is_null() || params.is_null() {
        return;
    }
    // SAFETY: the framework passes the request's valid completion parameters.
    let completion = Completion::from_params(unsafe { &*params });
    // SAFETY: `context` is the `*const C` registered for this send, alive until it completes.
    let handler = unsafe { &*context.cast_const().cast::<C>() };
    handler.request_completed(request, target, &completion);
}

/// A completion handler that owns its state and is handed back by value when the send
/// completes ([`Request::send_boxed`]): one allocation made by the caller, no lifetime rules.
pub trait BoxedCompletion: Send + 'static {
    /// Called once, in the completing context (see the module docs), when the send completes.
    fn completed(self: Box<Self>, completion: &Completion);
}

/// A shared completion handler ([`Request::send_shared`]): each send holds one `Arc` clone,
/// released after the handler ran (no allocation per send).
pub trait SharedCompletion: Send + Sync + 'static {
    /// Called once, in the completing context (see the module docs), when the send completes.
    fn completed(self: Arc<Self>, completion: &Completion);
}

fn completion_of(params: PWDF_REQUEST_COMPLETION_PARAMS) -> Completion {
    if params.is_null() {
        return Completion {
            status: NtStatus::UNSUCCESSFUL,
            information: 0,
            ioctl: 0,
        };
    }
    // SAFETY: the framework passes the request's valid completion parameters.
    Completion::from_params(unsafe { &*params })
}

/// Completion routine of [`Request::send_boxed`].
///
/// # Safety
/// Called by the framework only, with `context` the pointer `send_boxed` produced with
/// `Box::into_raw` for this send (reclaimed exactly once, here).
unsafe extern "C" fn boxed_trampoline<C: BoxedCompletion>(
    _request: WDFREQUEST,
    _target: WDFIOTARGET,
    params: PWDF_REQUEST_COMPLETION_PARAMS,
    context: WDFCONTEXT,
) {
    if context.is_null() {
        return;
    }
    let completion = completion_of(params);
    // SAFETY: `context` came from `Box::into_raw` in `send_boxed`; this is its only reclaim.
    let handler = unsafe { Box::from_raw(context.cast::<C>()) };
    handler.completed(&completion);
}

/// Completion routine of [`Request::send_shared`].
///
/// # Safety
/// Called by the framework only, with `context` the pointer `send_shared` produced with
/// `Arc::into_raw` for this send (reclaimed exactly once, here).
unsafe extern "C" fn shared_trampoline<C: SharedCompletion>(
    _request: WDFREQUEST,
    _target: WDFIOTARGET,
    params: PWDF_REQUEST_COMPLETION_PARAMS,
    context: WDFCONTEXT,
) {
    if context.is_null() {
        return;
    }
    let completion = completion_of(params);
    // SAFETY: `context` came from `Arc::into_raw` in `send_shared`; this is its only reclaim.
    let handler = unsafe { Arc::from_raw(context.cast_const().cast::<C>()) };
    handler.completed(&completion);
}

/// A driver-created request; deleted when dropped (it must not be pending then).
#[derive(Debug)]
pub struct Request {
    handle: WDFREQUEST,
}

// SAFETY: a WDFREQUEST handle may be used from any thread; the framework serializes its state.
unsafe impl Send for Request {}
// SAFETY: every method goes through the framework, which is thread-safe for these calls.
unsafe impl Sync for Request {}

impl Request {
    /// `WdfRequestCreate`, parented to `parent` (or the driver), for `target` if given.
    pub fn create(target: Option<&IoTarget>, parent: Option<WDFOBJECT>) -> Result<Self, NtStatus> {
        let target = target.map_or(core::ptr::null_mut(), IoTarget::handle);
        let mut handle: WDFREQUEST = core::ptr::null_mut();
        let mut attributes = ObjectAttributes::new();
        let attributes_ptr = if let Some(parent) = parent {
            attributes.set_parent(parent);
            attributes.as_mut_ptr()
        } else {
            WDF_NO_OBJECT_ATTRIBUTES
        };
        // SAFETY: valid attributes (or none) and out pointer.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestCreate,
                attributes_ptr,
                target,
                &raw mut handle
            )
        };
        NtStatus::from_raw(status).into_result()?;
        Ok(Self { handle })
    }

    /// The raw handle.
    #[must_use]
    pub fn handle(&self) -> WDFREQUEST {
        self.handle
    }

    /// `WdfRequestReuse` with `status`; clears the format and the completion routine.
    pub fn reuse(&self, status: NtStatus) -> Result<(), NtStatus> {
        let mut params = WDF_REQUEST_REUSE_PARAMS {
            Size: size_of::<WDF_REQUEST_REUSE_PARAMS>() as u32,
            Flags: 0,
            Status: status.raw(),
            NewIrp: core::ptr::null_mut(),
        };
        // SAFETY: a valid request and initialized params.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(WdfRequestReuse, self.handle, &raw mut params)
        };
        NtStatus::from_raw(status).into_result()
    }

    /// `WdfIoTargetFormatRequestForRead` into `output`.
    pub fn format_read(&self, target: &IoTarget, output: MemoryRange) -> Result<(), NtStatus> {
        let mut storage = WDFMEMORY_OFFSET::default();
        let (memory, offsets) = raw_range(Some(output), &mut storage);
        // SAFETY: valid handles; the offsets live in `storage` for the call.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoTargetFormatRequestForRead,
                target.handle(),
                self.handle,
                memory,
                offsets,
                core::ptr::null_mut()
            )
        };
        NtStatus::from_raw(status).into_result()
    }

    /// `WdfIoTargetFormatRequestForWrite` from `input`.
    pub fn format_write(&self, target: &IoTarget, input: MemoryRange) -> Result<(), NtStatus> {
        let mut storage = WDFMEMORY_OFFSET::default();
        let (memory, offsets) = raw_range(Some(input), &mut storage);
        // SAFETY: valid handles; the offsets live in `storage` for the call.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfIoTargetFormatRequestForWrite,
                target.handle(),
                self.handle,
                memory,
                offsets,
                core::ptr::null_mut()
            )
        };
        NtStatus::from_raw(status).into_result()
    }

    /// `WdfIoTargetFormatRequestForIoctl` (internal: `WdfIoTargetFormatRequestForInternalIoctl`).
    pub fn format_ioctl(
        &self,
        target: &IoTarget,
        ioctl: u32,
        internal: bool,
        input: Option<MemoryRange>,
        output: Option<MemoryRange>,
    ) -> Result<(), NtStatus> {
        let mut input_storage = WDFMEMORY_OFFSET::default();
        let mut output_storage = WDFMEMORY_OFFSET::default();
        let (input_memory, input_offsets) = raw_range(input, &mut input_storage);
        let (output_memory, output_offsets) = raw_range(output, &mut output_storage);
        let status = if internal {
            // SAFETY: valid handles; the offsets live in the storages for the call.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfIoTargetFormatRequestForInternalIoctl,
                    target.handle(),
                    self.handle,
                    ioctl,
                    input_memory,
                    input_offsets,
                    output_memory,
                    output_offsets
                )
            }
        } else {
            // SAFETY: as above.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfIoTargetFormatRequestForIoctl,
                    target.handle(),
                    self.handle,
                    ioctl,
                    input_memory,
                    input_offsets,
                    output_memory,
                    output_offsets
                )
            }
        };
        NtStatus::from_raw(status).into_result()
    }

    /// Sets the completion handler for the next send.
    ///
    /// # Safety
    /// `handler` must stay valid (not moved or dropped) until the send completes.
    pub unsafe fn set_completion<C: RequestCompletion>(&self, handler: *const C) {
        // SAFETY: a valid request; the caller keeps `handler` alive until completion.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestSetCompletionRoutine,
                self.handle,
                Some(completion_trampoline::<C>),
                handler.cast_mut().cast()
            );
        }
    }

    /// Sets a `'static` completion handler for the next send.
    pub fn set_completion_static<C: RequestCompletion>(&self, handler: &'static C) {
        // SAFETY: a `'static` handler outlives any completion.
        unsafe { self.set_completion(core::ptr::from_ref(handler)) };
    }

    fn send_with(&self, target: &IoTarget, flags: i32, timeout: Timeout) -> Result<(), NtStatus> {
        let mut flags = flags.cast_unsigned();
        if !timeout.is_none() {
            flags |= SEND::WDF_REQUEST_SEND_OPTION_TIMEOUT.cast_unsigned();
        }
        let mut options = WDF_REQUEST_SEND_OPTIONS {
            Size: size_of::<WDF_REQUEST_SEND_OPTIONS>() as u32,
            Flags: flags,
            Timeout: timeout.relative_100ns(),
        };
        // SAFETY: valid handles and initialized options.
        let sent = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestSend,
                self.handle,
                target.handle(),
                &raw mut options
            )
        };
        if sent == 0 {
            Err(self.status())
        } else {
            Ok(())
        }
    }

    /// Sends asynchronously; on `Err` no completion will run and the error is the status.
    pub fn send(&self, target: &IoTarget, timeout: Timeout) -> Result<(), NtStatus> {
        self.send_with(target, 0, timeout)
    }

    /// Sets `handler` as the completion of this send and sends asynchronously. On success the
    /// handler comes back by value to [`BoxedCompletion::completed`] exactly once; on refusal
    /// no completion runs and the handler is returned with the status.
    pub fn send_boxed<C: BoxedCompletion>(
        &self,
        target: &IoTarget,
        timeout: Timeout,
        handler: Box<C>,
    ) -> Result<(), (NtStatus, Box<C>)> {
        let context = Box::into_raw(handler);
        // SAFETY: a valid request; `context` stays valid until the trampoline reclaims it.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestSetCompletionRoutine,
                self.handle,
                Some(boxed_trampoline::<C>),
                context.cast()
            );
        }
        self.send(target, timeout).map_err(|status| {
            // SAFETY: the send was refused, so the trampoline will never see `context`.
            (status, unsafe { Box::from_raw(context) })
        })
    }

    /// Sets `handler` as the completion of this send and sends asynchronously. On success the
    /// send holds this `Arc` until [`SharedCompletion::completed`] ran; on refusal no completion
    /// runs, the clone is released and the status returned.
    pub fn send_shared<C: SharedCompletion>(
        &self,
        target: &IoTarget,
        timeout: Timeout,
        handler: Arc<C>,
    ) -> Result<(), NtStatus> {
        let context = Arc::into_raw(handler);
        // SAFETY: a valid request; `context` stays valid until the trampoline reclaims it.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestSetCompletionRoutine,
                self.handle,
                Some(shared_trampoline::<C>),
                context.cast_mut().cast()
            );
        }
        self.send(target, timeout).inspect_err(|_| {
            // SAFETY: the send was refused, so the trampoline will never see `context`.
            drop(unsafe { Arc::from_raw(context) });
        })
    }

    /// Sends synchronously (`PASSIVE_LEVEL`); returns the bytes transferred.
    pub fn send_synchronously(
        &self,
        target: &IoTarget,
        timeout: Timeout,
    ) -> Result<usize, NtStatus> {
        self.send_with(target, SEND::WDF_REQUEST_SEND_OPTION_SYNCHRONOUS, timeout)?;
        self.status().into_result()?;
        Ok(self.information())
    }

    /// `WdfRequestCancelSentRequest`: true if cancellation was initiated.
    #[must_use]
    pub fn cancel(&self) -> bool {
        // SAFETY: a valid request.
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestCancelSentRequest, self.handle) != 0 }
    }

    /// `WdfRequestGetStatus`.
    #[must_use]
    pub fn status(&self) -> NtStatus {
        // SAFETY: a valid request.
        NtStatus::from_raw(unsafe {
            call_unsafe_wdf_function_binding!(WdfRequestGetStatus, self.handle)
        })
    }

    /// `WdfRequestGetInformation`.
    #[must_use]
    pub fn information(&self) -> usize {
        // SAFETY: a valid request.
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestGetInformation, self.handle) as usize }
    }

    /// `WdfRequestGetCompletionParams`, summarized.
    #[must_use]
    pub fn completion(&self) -> Completion {
        let mut params = WDF_REQUEST_COMPLETION_PARAMS::default();
        // SAFETY: a valid request and out structure.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfRequestGetCompletionParams,
                self.handle,
                &raw mut params
            );
        };
        Completion::from_params(&params)
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        // SAFETY: `self` owns the handle; deleted once.
        unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, self.handle.cast()) };
    }
}

/// Status a send refusal reports when the framework gives none.
pub const SEND_REFUSED: NTSTATUS = wdk_sys::STATUS_INVALID_DEVICE_STATE;
