//! `WDFREQUEST`: driver-created requests (create, reuse, format, send with a completion routine,
//! synchronously or with a timeout, cancel) and requests a queue presents to a driver.
//!
//! A sent request is owned by its target until its packet completes. The packet's completion
//! records status, information and the completion parameters, then runs the completion routine
//! inline, in the context that completed the packet and at its IRQL, as KMDF does (see
//! [`super::completion`]): a target that completes in its queue callback completes the sender
//! before `WdfRequestSend` returns. A synchronous `WdfRequestSend` also calls the routine before
//! the sender wakes; the synchronous helpers do not. Cancel and completion meet in the packet's
//! single lock, so every request completes exactly once.

use std::cell::UnsafeCell;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use super::io::{Irp, MajorFunction, Range, lock};
use super::object::{self, Attributes, Object, Payload};
use super::table::Entry;
use super::verifier::{self, rules};
use super::{boolean, completion, exec, faults, iotarget, irql, memory, wdf_entry};
use crate::constants::{
    STATUS_CANCELLED, STATUS_INFO_LENGTH_MISMATCH, STATUS_INTEGER_OVERFLOW,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER,
    STATUS_IO_TIMEOUT, STATUS_SUCCESS, STATUS_WDF_REQUEST_INVALID_STATE,
};
use crate::types::{
    _WDF_REQUEST_REUSE_FLAGS, _WDF_REQUEST_SEND_OPTIONS_FLAGS as SEND, _WDF_REQUEST_TYPE, BOOLEAN,
    NTSTATUS, PFN_WDF_REQUEST_COMPLETION_ROUTINE, PWDF_DRIVER_GLOBALS, PWDF_OBJECT_ATTRIBUTES,
    PWDF_REQUEST_COMPLETION_PARAMS, PWDF_REQUEST_REUSE_PARAMS, PWDF_REQUEST_SEND_OPTIONS,
    PWDFMEMORY_OFFSET, ULONG_PTR, WDF_REQUEST_COMPLETION_PARAMS, WDF_REQUEST_REUSE_PARAMS,
    WDF_REQUEST_SEND_OPTIONS, WDFCONTEXT, WDFIOTARGET, WDFMEMORY, WDFMEMORY_OFFSET, WDFREQUEST,
};

/// KMDF type name of request objects.
pub(crate) const KIND: &str = "WDFREQUEST";

/// One buffer a request was formatted with.
#[derive(Clone, Copy, Default)]
pub(crate) struct Buffer {
    /// The WDFMEMORY handle (0: none).
    pub(crate) memory: usize,
    /// Offset into the memory's buffer.
    pub(crate) offset: usize,
    /// The range the packet carries.
    pub(crate) range: Range,
}

/// How a request is formatted.
#[derive(Clone, Copy)]
pub(crate) struct Format {
    pub(crate) major: MajorFunction,
    pub(crate) ioctl: u32,
    pub(crate) input: Buffer,
    pub(crate) output: Buffer,
}

/// Where a queue-presented request is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Owner {
    /// Driver-created, or presented to / retrieved by the driver.
    Driver,
    /// On a queue, not yet presented.
    Queue,
    /// Sent to a target (owned by the target until completion).
    Target,
    /// Completed.
    Completed,
}

pub(crate) struct State {
    pub(crate) format: Option<Format>,
    format_references: Vec<Arc<Object>>,
    routine: PFN_WDF_REQUEST_COMPLETION_ROUTINE,
    context: usize,
    pub(crate) status: NTSTATUS,
    pub(crate) information: usize,
    /// The packet while the request is sent.
    sent: Option<Arc<Irp>>,
    pub(crate) owner: Owner,
    /// For a queue-presented request: the packet it came in with.
    pub(crate) incoming: Option<Arc<Irp>>,
    /// For a queue-presented request: the queue that holds or presented it.
    pub(crate) queue: usize,
    /// Driver's cancel routine while marked cancelable.
    pub(crate) cancel_routine: crate::types::PFN_WDF_REQUEST_CANCEL,
    /// Memory objects the driver retrieved (input, output), created on demand.
    pub(crate) memories: [usize; 2],
}

struct ParamsCell(UnsafeCell<WDF_REQUEST_COMPLETION_PARAMS>);
// SAFETY: the parameters are written only while the request is owned by its target (before the
// completion routine is scheduled) and read by the driver afterwards, as in KMDF.
unsafe impl Sync for ParamsCell {}
// SAFETY: as above; the raw handles inside are plain numbers.
unsafe impl Send for ParamsCell {}

/// A request object.
pub(crate) struct Request {
    pub(crate) driver_created: bool,
    pub(crate) state: Mutex<State>,
    params: ParamsCell,
}

impl Request {
    /// The packet this request is pending with at an I/O target, if it is sent.
    pub(crate) fn sent_packet(&self) -> Option<Arc<Irp>> {
        lock(&self.state).sent.clone()
    }

    pub(crate) fn new(driver_created: bool, incoming: Option<Arc<Irp>>) -> Self {
        Self {
            driver_created,
            state: Mutex::new(State {
                format: None,
                format_references: Vec::new(),
                routine: None,
                context: 0,
                status: STATUS_SUCCESS,
                information: 0,
                sent: None,
                owner: if driver_created {
                    Owner::Driver
                } else {
                    Owner::Queue
                },
                incoming,
                queue: 0,
                cancel_routine: None,
                memories: [0; 2],
            }),
            // SAFETY: all-zero is a valid WDF_REQUEST_COMPLETION_PARAMS (integers, handles, unions).
            params: ParamsCell(UnsafeCell::new(unsafe { core::mem::zeroed() })),
        }
    }

    fn params_ptr(&self) -> PWDF_REQUEST_COMPLETION_PARAMS {
        self.params.0.get()
    }
}

impl Payload for Request {
    fn dispose(&self, _handle: usize) {
        let references = core::mem::take(&mut lock(&self.state).format_references);
        for memory in references {
            object::dereference(&memory, "WdfObjectDelete(WDFREQUEST)");
        }
    }

    fn driver_may_delete(&self) -> Result<(), &'static str> {
        let state = lock(&self.state);
        if !self.driver_created {
            return Err("a request a queue presented is completed, not deleted");
        }
        if state.sent.is_some() {
            return Err("the request is still pending at an I/O target");
        }
        Ok(())
    }
}

/// Handles of queue-presented requests that were completed (to name a double completion).
static COMPLETED: LazyLock<Mutex<HashSet<usize>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// Records that a presented request completed.
pub(crate) fn note_completed(handle: usize) {
    lock(&COMPLETED).insert(handle);
}

/// Whether a presented request with this handle was completed already.
pub(crate) fn was_completed(handle: usize) -> bool {
    lock(&COMPLETED).contains(&handle)
}

/// Forgets completed handles (between sessions).
pub(crate) fn reset() {
    lock(&COMPLETED).clear();
}

/// Finds a request.
pub(crate) fn find(request: WDFREQUEST, api: &str) -> Option<Arc<Object>> {
    object::lookup_payload::<Request>(object::handle_of(request), KIND, api)
}

/// The request payload of a found object.
pub(crate) fn payload(object: &Object) -> &Request {
    object.payload::<Request>().expect("looked up as a request")
}

// ---------------------------------------------------------------------------------------------
// Formatting (called by the WdfIoTargetFormatRequestFor* functions).

/// Resolves a WDFMEMORY + optional offsets into a buffer, reporting on behalf of `api`.
pub(crate) fn resolve(
    memory: WDFMEMORY,
    offsets: PWDFMEMORY_OFFSET,
    api: &str,
) -> Result<(Buffer, Option<Arc<Object>>), NTSTATUS> {
    if memory.is_null() {
        return Ok((Buffer::default(), None));
    }
    let handle = object::handle_of(memory);
    let object = object::lookup_payload::<memory::Memory>(handle, memory::KIND, api)
        .ok_or(STATUS_INVALID_PARAMETER)?;
    let (address, length) = object
        .payload::<memory::Memory>()
        .map(memory::Memory::buffer)
        .unwrap_or_default();
    let (offset, count) = if offsets.is_null() {
        (0, length)
    } else {
        // SAFETY: a non-null offsets pointer is a valid WDFMEMORY_OFFSET by the API contract.
        let offsets: WDFMEMORY_OFFSET = unsafe { offsets.read() };
        let count = if offsets.BufferLength == 0 {
            length.saturating_sub(offsets.BufferOffset)
        } else {
            offsets.BufferLength
        };
        (offsets.BufferOffset, count)
    };
    // KMDF checks the window with `IFxMemory::ValidateMemoryOffsets` (ifxmemory.hpp) and fails
    // the format with STATUS_INTEGER_OVERFLOW, without a verifier break.
    if offset.checked_add(count).is_none_or(|end| end > length) {
        return Err(STATUS_INTEGER_OVERFLOW);
    }
    Ok((
        Buffer {
            memory: handle,
            offset,
            range: Range {
                address: address + offset,
                length: count,
            },
        },
        Some(object),
    ))
}

/// Formats a request (shared by the four format functions).
pub(crate) fn format(
    request: WDFREQUEST,
    target: WDFIOTARGET,
    major: MajorFunction,
    ioctl: u32,
    input: (WDFMEMORY, PWDFMEMORY_OFFSET),
    output: (WDFMEMORY, PWDFMEMORY_OFFSET),
    api: &str,
) -> NTSTATUS {
    if !irql::require_at_most(irql::DISPATCH, api) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let Some(object) = find(request, api) else {
        return STATUS_INVALID_PARAMETER;
    };
    let Some(target_object) = iotarget::find(target, api) else {
        return STATUS_INVALID_PARAMETER;
    };
    // FxRequestBase::ValidateTarget (fxrequestbase.cpp) starts every format.
    if let Err(status) = iotarget::check_accepts_format(&target_object) {
        return status;
    }
    let (input, input_ref) = match resolve(input.0, input.1, api) {
        Ok(value) => value,
        Err(status) => return status,
    };
    let (output, output_ref) = match resolve(output.0, output.1, api) {
        Ok(value) => value,
        Err(status) => return status,
    };
    let request = payload(&object);
    let old = {
        let mut state = lock(&request.state);
        if state.sent.is_some() {
            drop(state);
            verifier::report(
                rules::REQUEST_STILL_PENDING,
                &*object,
                format!("{api} on a request still pending at an I/O target"),
            );
            return STATUS_INVALID_DEVICE_STATE;
        }
        if state.owner == Owner::Queue || state.owner == Owner::Completed {
            drop(state);
            verifier::report(
                rules::COMPLETION_NOT_OWNED,
                &*object,
                format!("{api} on a request the driver does not own"),
            );
            return STATUS_INVALID_DEVICE_STATE;
        }
        state.format = Some(Format {
            major,
            ioctl,
            input,
            output,
        });
        let mut references: Vec<Arc<Object>> = input_ref.into_iter().chain(output_ref).collect();
        for reference in &references {
            object::reference(reference);
        }
        core::mem::swap(&mut state.format_references, &mut references);
        references
    };
    for memory in old {
        object::dereference(&memory, api);
    }
    STATUS_SUCCESS
}

// ---------------------------------------------------------------------------------------------
// Sending.

/// A send timeout in 100 ns units (negative: relative; positive: absolute system time).
fn timeout_duration(timeout: i64) -> Duration {
    if timeout < 0 {
        Duration::from_nanos(timeout.unsigned_abs().saturating_mul(100))
    } else {
        let mut now = crate::types::LARGE_INTEGER::default();
        // SAFETY: `now` is a valid out pointer.
        unsafe { crate::framework::time::kernel::KeQuerySystemTimePrecise(&raw mut now) };
        // SAFETY: QuadPart is the whole of the union on 64-bit targets.
        let now = unsafe { now.QuadPart };
        Duration::from_nanos(
            u64::try_from(timeout - now)
                .unwrap_or(0)
                .saturating_mul(100),
        )
    }
}

fn read_options(
    options: PWDF_REQUEST_SEND_OPTIONS,
    api: &str,
) -> Result<(u32, Option<Duration>), NTSTATUS> {
    if options.is_null() {
        return Ok((0, None));
    }
    // SAFETY: a non-null options pointer is a valid WDF_REQUEST_SEND_OPTIONS by the API contract.
    let options: WDF_REQUEST_SEND_OPTIONS = unsafe { options.read() };
    if options.Size as usize != size_of::<WDF_REQUEST_SEND_OPTIONS>() {
        verifier::report(
            rules::BAD_STRUCTURE_SIZE,
            api,
            format!(
                "WDF_REQUEST_SEND_OPTIONS.Size is {}, expected {}",
                options.Size,
                size_of::<WDF_REQUEST_SEND_OPTIONS>()
            ),
        );
        return Err(STATUS_INFO_LENGTH_MISMATCH);
    }
    let timeout = (options.Flags & SEND::WDF_REQUEST_SEND_OPTION_TIMEOUT as u32 != 0
        && options.Timeout != 0)
        .then(|| timeout_duration(options.Timeout));
    Ok((options.Flags, timeout))
}

fn fill_params(request: &Request, format: &Format, status: NTSTATUS, information: usize) {
    // SAFETY: the request is still owned by the target (its completion routine has not been
    // scheduled), so nobody else reads or writes the parameters now.
    let params = unsafe { &mut *request.params_ptr() };
    // SAFETY: all-zero is a valid value (see `Request::new`).
    *params = unsafe { core::mem::zeroed() };
    params.Size = size_of::<WDF_REQUEST_COMPLETION_PARAMS>() as u32;
    params.IoStatus.__bindgen_anon_1.Status = status;
    params.IoStatus.Information = information as ULONG_PTR;
    let memory = |b: &Buffer| object::handle_ptr::<crate::types::WDFMEMORY__>(b.memory);
    match format.major {
        MajorFunction::Read => {
            params.Type = _WDF_REQUEST_TYPE::WdfRequestTypeRead;
            params.Parameters.Read.Buffer = memory(&format.output);
            params.Parameters.Read.Length = information;
            params.Parameters.Read.Offset = format.output.offset;
        }
        MajorFunction::Write => {
            params.Type = _WDF_REQUEST_TYPE::WdfRequestTypeWrite;
            params.Parameters.Write.Buffer = memory(&format.input);
            params.Parameters.Write.Length = information;
            params.Parameters.Write.Offset = format.input.offset;
        }
        MajorFunction::DeviceControl | MajorFunction::InternalDeviceControl => {
            params.Type = if format.major == MajorFunction::DeviceControl {
                _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControl
            } else {
                _WDF_REQUEST_TYPE::WdfRequestTypeDeviceControlInternal
            };
            // SAFETY: writing plain fields of the Ioctl member of the union.
            let ioctl = unsafe { &mut params.Parameters.Ioctl };
            ioctl.IoControlCode = format.ioctl;
            ioctl.Input.Buffer = memory(&format.input);
            ioctl.Input.Offset = format.input.offset;
            ioctl.Output.Buffer = memory(&format.output);
            ioctl.Output.Offset = format.output.offset;
            ioctl.Output.Length = information;
        }
    }
}

/// What happens when a sent packet completes: the request gets its status, information and
/// completion parameters, then its completion routine runs right here, in the context that
/// completed the packet and at its IRQL (see [`super::completion`]). `call_routine` is false for
/// the synchronous helpers, which KMDF submits without the driver's completion routine.
fn on_packet_complete(
    request_handle: usize,
    target_handle: usize,
    irp: &Arc<Irp>,
    call_routine: bool,
) {
    let Some(object) = object::lookup(request_handle, Some(KIND), "request completion") else {
        return;
    };
    let request = payload(&object);
    let (mut status, information) = irp.result();
    if status == STATUS_CANCELLED && irp.timed_out.load(Ordering::Acquire) {
        status = STATUS_IO_TIMEOUT;
    }
    let (routine, context) = {
        let mut state = lock(&request.state);
        state.sent = None;
        state.owner = Owner::Driver;
        state.status = status;
        state.information = information;
        if let Some(format) = state.format {
            fill_params(request, &format, status, information);
        }
        (state.routine, state.context)
    };
    iotarget::packet_done(target_handle, irp);
    if let Some(routine) = routine.filter(|_| call_routine) {
        let params = request.params_ptr();
        object::with_driver(object::driver_of(request_handle), || {
            completion::run_nested("EvtRequestCompletionRoutine", || {
                irql::run_callback(irql::current(), "EvtRequestCompletionRoutine", || {
                    // SAFETY: the driver set this routine for this request; the request is
                    // referenced until the routine returns, so its parameters stay valid.
                    unsafe {
                        routine(
                            object::handle_ptr(request_handle),
                            object::handle_ptr(target_handle),
                            params,
                            context as WDFCONTEXT,
                        );
                    }
                });
            });
        });
    }
    iotarget::request_finished(target_handle);
    object::dereference(&object, "request completion");
}

/// Sends a request as the `WdfIoTargetSend*Synchronously` helpers do: with
/// `WDF_REQUEST_SEND_OPTION_SYNCHRONOUS` the driver's completion routine is not called (KMDF's
/// `FxIoTarget::SubmitSync` without `SubmitSyncCallCompletion`, fxiotarget.cpp). Returns whether
/// it was sent (queued on a stopped target counts as sent).
pub(crate) fn send(
    request: WDFREQUEST,
    target: WDFIOTARGET,
    options: PWDF_REQUEST_SEND_OPTIONS,
    api: &str,
) -> bool {
    send_request(request, target, options, false, api)
}

#[allow(
    clippy::too_many_lines,
    reason = "one linear sequence of KMDF's send checks"
)]
/// Sends a request; returns whether it was sent (queued on a stopped target counts as sent).
/// `routine_when_synchronous`: whether a synchronous send still calls the driver's completion
/// routine, as `WdfRequestSend` does (`SubmitSyncCallCompletion`, fxrequestapi.cpp).
fn send_request(
    request: WDFREQUEST,
    target: WDFIOTARGET,
    options: PWDF_REQUEST_SEND_OPTIONS,
    routine_when_synchronous: bool,
    api: &str,
) -> bool {
    let Some(object) = find(request, api) else {
        return false;
    };
    let req = payload(&object);
    let set_status = |status: NTSTATUS| lock(&req.state).status = status;
    let (flags, timeout) = match read_options(options, api) {
        Ok(value) => value,
        Err(status) => {
            set_status(STATUS_INVALID_PARAMETER);
            let _ = status;
            return false;
        }
    };
    let synchronous = flags & SEND::WDF_REQUEST_SEND_OPTION_SYNCHRONOUS as u32 != 0;
    let forget = flags & SEND::WDF_REQUEST_SEND_OPTION_SEND_AND_FORGET as u32 != 0;
    let ignore_state = flags & SEND::WDF_REQUEST_SEND_OPTION_IGNORE_TARGET_STATE as u32 != 0;
    let allowed = if synchronous {
        irql::PASSIVE
    } else {
        irql::DISPATCH
    };
    if !irql::require_at_most(allowed, api) {
        set_status(STATUS_INVALID_DEVICE_STATE);
        return false;
    }
    let Some(target_object) = iotarget::find(target, api) else {
        set_status(STATUS_INVALID_PARAMETER);
        return false;
    };
    let target_handle = target_object.handle;
    let request_handle = object.handle;

    if forget && !synchronous {
        return send_and_forget(&object, target_handle, ignore_state, api);
    }

    let irp = {
        let state = lock(&req.state);
        if state.sent.is_some() {
            drop(state);
            verifier::report(
                rules::REQUEST_STILL_PENDING,
                &*object,
                format!("{api} of a request still pending at an I/O target"),
            );
            return false;
        }
        if state.owner != Owner::Driver {
            drop(state);
            verifier::report(
                rules::COMPLETION_NOT_OWNED,
                &*object,
                format!("{api} of a request the driver does not own"),
            );
            return false;
        }
        let Some(format) = state.format else {
            drop(state);
            verifier::report(
                rules::INVALID_ARGUMENT,
                &*object,
                format!("{api} of a request that was never formatted"),
            );
            set_status(STATUS_INVALID_DEVICE_REQUEST);
            return false;
        };
        if !req.driver_created && state.routine.is_none() && !synchronous {
            drop(state);
            set_status(STATUS_INVALID_DEVICE_REQUEST);
            return false;
        }
        Irp::new(
            format.major,
            format.ioctl,
            format.input.range,
            format.output.range,
            0,
            Some(Box::new(move |irp: &Arc<Irp>| {
                on_packet_complete(
                    request_handle,
                    target_handle,
                    irp,
                    !synchronous || routine_when_synchronous,
                );
            })),
        )
    };
    if let Err(status) = faults::hit(faults::FaultPoint::Send) {
        set_status(status);
        return false;
    }
    {
        let mut state = lock(&req.state);
        state.sent = Some(irp.clone());
        state.owner = Owner::Target;
        state.status = crate::constants::STATUS_PENDING;
        state.information = 0;
    }
    object::reference(&object);
    if let Err(status) = iotarget::submit(target_handle, &irp, ignore_state) {
        {
            let mut state = lock(&req.state);
            state.sent = None;
            state.owner = Owner::Driver;
            state.status = status;
        }
        object::dereference(&object, api);
        return false;
    }
    if let Some(timeout) = timeout
        && !synchronous
    {
        let timer_irp = irp.clone();
        exec::submit_at(
            Instant::now() + timeout,
            irql::DISPATCH,
            "request send timeout",
            move || {
                if !timer_irp.is_completed() {
                    timer_irp.timed_out.store(true, Ordering::Release);
                    timer_irp.cancel();
                }
            },
        );
    }
    if synchronous && !irp.wait(timeout) {
        irp.timed_out.store(true, Ordering::Release);
        irp.cancel();
        irp.wait(None);
    }
    true
}

fn send_and_forget(object: &Arc<Object>, target: usize, ignore_state: bool, api: &str) -> bool {
    let req = payload(object);
    let incoming = {
        let state = lock(&req.state);
        if req.driver_created || state.incoming.is_none() {
            drop(state);
            lock(&req.state).status = STATUS_INVALID_DEVICE_STATE;
            return false;
        }
        if state.owner != Owner::Driver {
            drop(state);
            verifier::report(
                rules::COMPLETION_NOT_OWNED,
                &**object,
                format!("{api} of a request the driver does not own"),
            );
            return false;
        }
        state.incoming.clone().expect("checked above")
    };
    // The packet goes to the target as is; the driver no longer owns the request.
    let forwarded = Irp::new(
        incoming.major,
        incoming.ioctl,
        incoming.input,
        incoming.output,
        0,
        Some(Box::new(move |irp: &Arc<Irp>| {
            let (status, information) = irp.result();
            incoming.complete(status, information);
            iotarget::packet_done(target, irp);
            iotarget::request_finished(target);
        })),
    );
    if let Err(status) = iotarget::submit(target, &forwarded, ignore_state) {
        lock(&req.state).status = status;
        return false;
    }
    lock(&req.state).owner = Owner::Completed;
    note_completed(object.handle);
    crate::framework::queue::request_left_driver(object);
    object::delete(object);
    true
}

// ---------------------------------------------------------------------------------------------
// WDF functions.

unsafe extern "C" fn wdf_request_create(
    _globals: PWDF_DRIVER_GLOBALS,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    io_target: WDFIOTARGET,
    request: *mut WDFREQUEST,
) -> NTSTATUS {
    const API: &str = "WdfRequestCreate";
    if !irql::require_at_most(irql::DISPATCH, API) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    if request.is_null() {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "null Request out pointer".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let attributes = match Attributes::read(attributes, API) {
        Ok(attributes) => attributes,
        Err(status) => return status,
    };
    if !io_target.is_null() {
        let Some(target) = iotarget::find(io_target, API) else {
            return STATUS_INVALID_PARAMETER;
        };
        // FxRequest::_Create validates a given target (FxRequestBase::ValidateTarget) and
        // hands back no request when it is closed.
        if let Err(status) = iotarget::check_accepts_format(&target) {
            return status;
        }
    }
    if let Err(status) = faults::hit(faults::FaultPoint::Allocation) {
        return status;
    }
    match object::create(
        KIND,
        &attributes,
        object::default_parent(),
        Box::new(Request::new(true, None)),
    ) {
        Ok(handle) => {
            // SAFETY: checked non-null; writable by the API contract.
            unsafe { request.write(object::handle_ptr(handle)) };
            STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

unsafe extern "C" fn wdf_request_reuse(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    params: PWDF_REQUEST_REUSE_PARAMS,
) -> NTSTATUS {
    const API: &str = "WdfRequestReuse";
    if !irql::require_at_most(irql::DISPATCH, API) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let Some(object) = find(request, API) else {
        return STATUS_INVALID_PARAMETER;
    };
    if params.is_null() {
        verifier::report(rules::INVALID_ARGUMENT, API, "null ReuseParams".to_string());
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: non-null, a valid WDF_REQUEST_REUSE_PARAMS by the API contract.
    let params: WDF_REQUEST_REUSE_PARAMS = unsafe { params.read() };
    if params.Size as usize != size_of::<WDF_REQUEST_REUSE_PARAMS>() {
        verifier::report(
            rules::BAD_STRUCTURE_SIZE,
            API,
            format!(
                "WDF_REQUEST_REUSE_PARAMS.Size is {}, expected {}",
                params.Size,
                size_of::<WDF_REQUEST_REUSE_PARAMS>()
            ),
        );
        return STATUS_INFO_LENGTH_MISMATCH;
    }
    let req = payload(&object);
    let new_irp =
        params.Flags & _WDF_REQUEST_REUSE_FLAGS::WDF_REQUEST_REUSE_SET_NEW_IRP as u32 != 0;
    if new_irp && !req.driver_created {
        // FxRequest::Reuse (fxrequest.cpp): a request presented by a queue cannot take a new IRP.
        return STATUS_WDF_REQUEST_INVALID_STATE;
    }
    if new_irp {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "WDF_REQUEST_REUSE_SET_NEW_IRP is not simulated".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let old = {
        let mut state = lock(&req.state);
        if state.sent.is_some() {
            drop(state);
            verifier::report(
                rules::REQUEST_STILL_PENDING,
                &*object,
                "WdfRequestReuse of a request still pending at an I/O target".to_string(),
            );
            return STATUS_INVALID_DEVICE_STATE;
        }
        // A request a queue presented may be reused too (a driver that sends it on with a new
        // format); it keeps the packet it came in with (FxRequest::Reuse, fxrequest.cpp).
        state.format = None;
        state.routine = None;
        state.context = 0;
        state.status = params.Status;
        state.information = 0;
        core::mem::take(&mut state.format_references)
    };
    for memory in old {
        object::dereference(&memory, API);
    }
    STATUS_SUCCESS
}

unsafe extern "C" fn wdf_request_send(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    target: WDFIOTARGET,
    options: PWDF_REQUEST_SEND_OPTIONS,
) -> BOOLEAN {
    boolean(send_request(
        request,
        target,
        options,
        true,
        "WdfRequestSend",
    ))
}

unsafe extern "C" fn wdf_request_get_status(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> NTSTATUS {
    const API: &str = "WdfRequestGetStatus";
    let Some(object) = find(request, API) else {
        return STATUS_INVALID_PARAMETER;
    };
    lock(&payload(&object).state).status
}

unsafe extern "C" fn wdf_request_cancel_sent_request(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> BOOLEAN {
    const API: &str = "WdfRequestCancelSentRequest";
    if !irql::require_at_most(irql::DISPATCH, API) {
        return 0;
    }
    let Some(object) = find(request, API) else {
        return 0;
    };
    let irp = lock(&payload(&object).state).sent.clone();
    boolean(irp.is_some_and(|irp| irp.cancel()))
}

unsafe extern "C" fn wdf_request_set_completion_routine(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    routine: PFN_WDF_REQUEST_COMPLETION_ROUTINE,
    context: WDFCONTEXT,
) {
    const API: &str = "WdfRequestSetCompletionRoutine";
    let Some(object) = find(request, API) else {
        return;
    };
    let mut state = lock(&payload(&object).state);
    if state.sent.is_some() {
        drop(state);
        verifier::report(
            rules::REQUEST_STILL_PENDING,
            &*object,
            format!("{API} on a request still pending at an I/O target"),
        );
        return;
    }
    state.routine = routine;
    state.context = context as usize;
}

unsafe extern "C" fn wdf_request_get_completion_params(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    params: PWDF_REQUEST_COMPLETION_PARAMS,
) {
    const API: &str = "WdfRequestGetCompletionParams";
    let Some(object) = find(request, API) else {
        return;
    };
    if params.is_null() {
        verifier::report(rules::INVALID_ARGUMENT, API, "null Params".to_string());
        return;
    }
    let req = payload(&object);
    if lock(&req.state).sent.is_some() {
        verifier::report(
            rules::REQUEST_STILL_PENDING,
            &*object,
            format!("{API} on a request still pending at an I/O target"),
        );
        return;
    }
    // SAFETY: the request is not pending, so nobody writes its parameters now.
    let value = unsafe { req.params_ptr().read() };
    // SAFETY: `params` is non-null and writable by the API contract.
    unsafe { params.write(value) };
}

unsafe extern "C" fn wdf_request_allocate_timer(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> NTSTATUS {
    const API: &str = "WdfRequestAllocateTimer";
    if find(request, API).is_none() {
        return STATUS_INVALID_PARAMETER;
    }
    match faults::hit(faults::FaultPoint::Allocation) {
        Ok(()) => STATUS_SUCCESS,
        Err(status) => status,
    }
}

unsafe extern "C" fn wdf_request_get_information(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
) -> ULONG_PTR {
    const API: &str = "WdfRequestGetInformation";
    let Some(object) = find(request, API) else {
        return 0;
    };
    lock(&payload(&object).state).information as ULONG_PTR
}

unsafe extern "C" fn wdf_request_set_information(
    _globals: PWDF_DRIVER_GLOBALS,
    request: WDFREQUEST,
    information: ULONG_PTR,
) {
    const API: &str = "WdfRequestSetInformation";
    let Some(object) = find(request, API) else {
        return;
    };
    let mut state = lock(&payload(&object).state);
    if state.owner != Owner::Driver {
        let owner = state.owner;
        drop(state);
        verifier::report(
            rules::COMPLETION_NOT_OWNED,
            &*object,
            format!("{API} on a request owned by {owner:?}"),
        );
        return;
    }
    state.information = information as usize;
}

pub(crate) const ENTRIES: &[Entry] = &[
    wdf_entry!(
        WdfRequestCreateTableIndex,
        PFN_WDFREQUESTCREATE,
        wdf_request_create
    ),
    wdf_entry!(
        WdfRequestReuseTableIndex,
        PFN_WDFREQUESTREUSE,
        wdf_request_reuse
    ),
    wdf_entry!(
        WdfRequestSendTableIndex,
        PFN_WDFREQUESTSEND,
        wdf_request_send
    ),
    wdf_entry!(
        WdfRequestGetStatusTableIndex,
        PFN_WDFREQUESTGETSTATUS,
        wdf_request_get_status
    ),
    wdf_entry!(
        WdfRequestCancelSentRequestTableIndex,
        PFN_WDFREQUESTCANCELSENTREQUEST,
        wdf_request_cancel_sent_request
    ),
    wdf_entry!(
        WdfRequestSetCompletionRoutineTableIndex,
        PFN_WDFREQUESTSETCOMPLETIONROUTINE,
        wdf_request_set_completion_routine
    ),
    wdf_entry!(
        WdfRequestGetCompletionParamsTableIndex,
        PFN_WDFREQUESTGETCOMPLETIONPARAMS,
        wdf_request_get_completion_params
    ),
    wdf_entry!(
        WdfRequestAllocateTimerTableIndex,
        PFN_WDFREQUESTALLOCATETIMER,
        wdf_request_allocate_timer
    ),
    wdf_entry!(
        WdfRequestGetInformationTableIndex,
        PFN_WDFREQUESTGETINFORMATION,
        wdf_request_get_information
    ),
    wdf_entry!(
        WdfRequestSetInformationTableIndex,
        PFN_WDFREQUESTSETINFORMATION,
        wdf_request_set_information
    ),
];

/// Kernel functions of this area, re-exported from `ntddk`.
#[allow(non_snake_case)]
pub mod kernel {}
