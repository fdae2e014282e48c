//! Driver glue: `DriverEntry` and the framework callbacks of a driver written in safe Rust.
//!
//! A driver crate implements [`DriverCallbacks`] and invokes [`driver_entry!`](crate::driver_entry)
//! once; its queues get a handler object ([`IoQueueHandler`]) through [`create_queue`]. All the
//! raw-pointer work (the exported `DriverEntry` symbol, wrapping the `WDFDEVICE_INIT`, taking
//! ownership of presented requests, keeping a queue's handler in the queue's object context)
//! happens here, so the driver itself contains no `unsafe`.
//!
//! ```ignore
//! struct MyDriver;
//! impl dmf::wdf::entry::DriverCallbacks for MyDriver {
//!     fn device_add(_driver: Driver, init: DeviceInit) -> Result<(), NtStatus> { ... }
//! }
//! dmf::driver_entry!(MyDriver);
//! ```

use alloc::boxed::Box;
use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, Ordering};

use wdk_sys::{
    _WDF_EXECUTION_LEVEL, _WDF_SYNCHRONIZATION_SCOPE, PVOID, PWDFDEVICE_INIT,
    WDF_OBJECT_ATTRIBUTES, WDF_OBJECT_CONTEXT_TYPE_INFO, WDFDRIVER, WDFOBJECT, WDFQUEUE,
    WDFREQUEST, call_unsafe_wdf_function_binding,
};
#[doc(hidden)]
pub use wdk_sys::{NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT};

use super::device::{Device, DeviceInit};
use super::driver::{Driver, DriverConfig};
use super::queue::{DispatchType, OwnedQueue, Queue, QueueConfig, QueueRequest};
use super::status::NtStatus;

/// The driver-wide callbacks of a driver written on this crate.
pub trait DriverCallbacks: 'static {
    /// `EvtDriverDeviceAdd`: configure `init` and create the device (at `PASSIVE_LEVEL`).
    fn device_add(driver: Driver, init: DeviceInit) -> Result<(), NtStatus>;

    /// `EvtDriverUnload` (at `PASSIVE_LEVEL`). Nothing by default.
    fn unload(driver: Driver) {
        let _ = driver;
    }
}

unsafe extern "C" fn device_add_trampoline<D: DriverCallbacks>(
    driver: WDFDRIVER,
    init: PWDFDEVICE_INIT,
) -> NTSTATUS {
    // SAFETY: `init` is the pointer the framework passed to this `EvtDriverDeviceAdd`.
    let init = unsafe { DeviceInit::from_raw(init) };
    NtStatus::from_result(D::device_add(Driver::from_raw(driver), init)).raw()
}

unsafe extern "C" fn unload_trampoline<D: DriverCallbacks>(driver: WDFDRIVER) {
    D::unload(Driver::from_raw(driver));
}

/// The body of the `DriverEntry` that [`driver_entry!`](crate::driver_entry) generates:
/// `WdfDriverCreate` with `D`'s callbacks.
///
/// # Safety
/// `driver_object` and `registry_path` must be the arguments the I/O manager passed to
/// `DriverEntry`.
#[doc(hidden)]
pub unsafe fn run_driver_entry<D: DriverCallbacks>(
    driver_object: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let config = DriverConfig {
        device_add: Some(device_add_trampoline::<D>),
        unload: Some(unload_trampoline::<D>),
    };
    // SAFETY: the caller passes `DriverEntry`'s own arguments.
    let created = unsafe { Driver::create(driver_object, registry_path, config) };
    NtStatus::from_result(created.map(|_| ())).raw()
}

/// Defines the driver's `DriverEntry` for a type implementing [`DriverCallbacks`]:
/// `dmf::driver_entry!(MyDriver);`.
///
/// On Windows this is `pub unsafe extern "system" fn driver_entry` exported as the
/// `DriverEntry` symbol the I/O manager calls (as in windows-drivers-rs's samples). Elsewhere it
/// is an `unsafe extern "C"` function of the same name that tests hand to the simulation's
/// loader. It is `unsafe` because its arguments are raw pointers it passes to the framework.
#[macro_export]
macro_rules! driver_entry {
    ($driver:ty) => {
        /// `DriverEntry`: creates the framework driver object with this driver's callbacks.
        ///
        /// # Safety
        /// Called by the I/O manager only, with the driver object and registry path it owns.
        #[cfg(windows)]
        // SAFETY: "DriverEntry" is the one entry symbol a KMDF driver exports; nothing else in
        // the driver uses that name.
        #[cfg_attr(not(test), unsafe(export_name = "DriverEntry"))]
        pub unsafe extern "system" fn driver_entry(
            driver_object: $crate::wdf::entry::PDRIVER_OBJECT,
            registry_path: $crate::wdf::entry::PCUNICODE_STRING,
        ) -> $crate::wdf::entry::NTSTATUS {
            // SAFETY: per this function's contract, DriverEntry's own arguments.
            unsafe { $crate::wdf::entry::run_driver_entry::<$driver>(driver_object, registry_path) }
        }

        /// `DriverEntry`: creates the framework driver object with this driver's callbacks
        /// (the simulation's loader calls it).
        ///
        /// # Safety
        /// Called by the loader only, with a driver object and registry path it owns.
        #[cfg(not(windows))]
        pub unsafe extern "C" fn driver_entry(
            driver_object: $crate::wdf::entry::PDRIVER_OBJECT,
            registry_path: $crate::wdf::entry::PCUNICODE_STRING,
        ) -> $crate::wdf::entry::NTSTATUS {
            // SAFETY: per this function's contract, DriverEntry's own arguments.
            unsafe { $crate::wdf::entry::run_driver_entry::<$driver>(driver_object, registry_path) }
        }
    };
}

/// A queue's request handlers, kept in the queue's object context for the queue's lifetime.
///
/// Each method receives a request the driver now owns: complete it (possibly later, from
/// another thread) or forward it. The defaults complete with `STATUS_INVALID_DEVICE_REQUEST`,
/// as KMDF does for a request type a queue has no handler for.
pub trait IoQueueHandler: Send + Sync + 'static {
    /// `EvtIoDeviceControl`.
    fn device_control(
        &self,
        queue: Queue,
        request: QueueRequest,
        ioctl: u32,
        input_length: usize,
        output_length: usize,
    ) {
        let _ = (queue, ioctl, input_length, output_length);
        request.complete(NtStatus::INVALID_DEVICE_REQUEST);
    }

    /// `EvtIoRead`.
    fn read(&self, queue: Queue, request: QueueRequest, length: usize) {
        let _ = (queue, length);
        request.complete(NtStatus::INVALID_DEVICE_REQUEST);
    }

    /// `EvtIoWrite`.
    fn write(&self, queue: Queue, request: QueueRequest, length: usize) {
        let _ = (queue, length);
        request.complete(NtStatus::INVALID_DEVICE_REQUEST);
    }

    /// `EvtIoCanceledOnQueue`: a request waiting on the queue (typically one the driver
    /// forwarded to it) was cancelled by its issuer. The driver owns it again and must complete
    /// it. Called at `IRQL <= DISPATCH_LEVEL`, in the context that cancelled the request (the
    /// issuer's `CancelIoEx` or handle close, or a purge of the queue). The default completes it
    /// with `STATUS_CANCELLED`, as the framework does for a queue without this callback.
    fn canceled_on_queue(&self, queue: Queue, request: QueueRequest) {
        let _ = queue;
        request.complete(NtStatus::CANCELLED);
    }
}

/// The object context of a queue created by [`create_queue`]: its handler, boxed (null in the
/// zeroed context until installed; atomic so a callback racing the installation sees null).
#[repr(C)]
struct HandlerSlot {
    handler: AtomicPtr<c_void>,
}

/// A context type description that may live in a `static`.
#[repr(transparent)]
struct ContextType(WDF_OBJECT_CONTEXT_TYPE_INFO);

// SAFETY: the description is immutable and points only at `'static` data.
unsafe impl Sync for ContextType {}

/// The context type of [`HandlerSlot`], as `WDF_DECLARE_CONTEXT_TYPE` declares one.
static QUEUE_HANDLER_CONTEXT: ContextType = ContextType(WDF_OBJECT_CONTEXT_TYPE_INFO {
    Size: size_of::<WDF_OBJECT_CONTEXT_TYPE_INFO>() as u32,
    ContextName: c"DmfQueueHandlerContext".as_ptr(),
    ContextSize: size_of::<HandlerSlot>(),
    UniqueType: &raw const QUEUE_HANDLER_CONTEXT.0,
    EvtDriverGetUniqueContextType: None,
});

fn slot_of(object: WDFOBJECT) -> *mut HandlerSlot {
    // SAFETY: `object` is a live queue created by `create_queue`; the type info is a static.
    let context: PVOID = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfObjectGetTypedContextWorker,
            object,
            &raw const QUEUE_HANDLER_CONTEXT.0
        )
    };
    context.cast()
}

/// The handler of a queue created by `create_queue::<H>`.
///
/// # Safety
/// `queue` must be a live queue created by `create_queue::<H>` (same `H`) whose destroy
/// callback has not run.
unsafe fn handler_of<'a, H: IoQueueHandler>(queue: WDFQUEUE) -> Option<&'a H> {
    let slot = slot_of(queue.cast());
    if slot.is_null() {
        return None;
    }
    // SAFETY: the slot is the queue's zero-initialized (or installed) `HandlerSlot`.
    let handler = unsafe { &(*slot).handler }.load(Ordering::Acquire);
    // SAFETY: a non-null slot value is the `Box<H>` installed by `create_queue::<H>`, freed
    // only by the destroy callback, which runs after every callback of the queue returned.
    unsafe { handler.cast::<H>().as_ref() }
}

unsafe extern "C" fn io_device_control<H: IoQueueHandler>(
    queue: WDFQUEUE,
    request: WDFREQUEST,
    output_length: usize,
    input_length: usize,
    ioctl: u32,
) {
    // SAFETY: the framework presented this request to this callback; the driver owns it now.
    let request = unsafe { QueueRequest::from_raw(request) };
    // SAFETY: the framework calls this only for queues `create_queue::<H>` made.
    match unsafe { handler_of::<H>(queue) } {
        Some(handler) => handler.device_control(
            Queue::from_raw(queue),
            request,
            ioctl,
            input_length,
            output_length,
        ),
        None => request.complete(NtStatus::INVALID_DEVICE_STATE),
    }
}

unsafe extern "C" fn io_read<H: IoQueueHandler>(
    queue: WDFQUEUE,
    request: WDFREQUEST,
    length: usize,
) {
    // SAFETY: the framework presented this request to this callback; the driver owns it now.
    let request = unsafe { QueueRequest::from_raw(request) };
    // SAFETY: the framework calls this only for queues `create_queue::<H>` made.
    match unsafe { handler_of::<H>(queue) } {
        Some(handler) => handler.read(Queue::from_raw(queue), request, length),
        None => request.complete(NtStatus::INVALID_DEVICE_STATE),
    }
}

unsafe extern "C" fn io_write<H: IoQueueHandler>(
    queue: WDFQUEUE,
    request: WDFREQUEST,
    length: usize,
) {
    // SAFETY: the framework presented this request to this callback; the driver owns it now.
    let request = unsafe { QueueRequest::from_raw(request) };
    // SAFETY: the framework calls this only for queues `create_queue::<H>` made.
    match unsafe { handler_of::<H>(queue) } {
        Some(handler) => handler.write(Queue::from_raw(queue), request, length),
        None => request.complete(NtStatus::INVALID_DEVICE_STATE),
    }
}

unsafe extern "C" fn io_canceled_on_queue<H: IoQueueHandler>(queue: WDFQUEUE, request: WDFREQUEST) {
    // SAFETY: the framework hands the cancelled request back to the driver, which owns it now.
    let request = unsafe { QueueRequest::from_raw(request) };
    // SAFETY: the framework calls this only for queues `create_queue::<H>` made.
    match unsafe { handler_of::<H>(queue) } {
        Some(handler) => handler.canceled_on_queue(Queue::from_raw(queue), request),
        None => request.complete(NtStatus::CANCELLED),
    }
}

/// `EvtDestroyCallback` of a queue made by `create_queue::<H>`: frees its handler.
unsafe extern "C" fn free_handler<H: IoQueueHandler>(object: WDFOBJECT) {
    let slot = slot_of(object);
    if slot.is_null() {
        return;
    }
    // SAFETY: the slot is a valid `HandlerSlot`; the destroy callback runs once, last.
    let handler = unsafe { &(*slot).handler }.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !handler.is_null() {
        // SAFETY: the pointer came from `Box::into_raw` in `create_queue::<H>` and is freed
        // only here.
        drop(unsafe { Box::from_raw(handler.cast::<H>()) });
    }
}

/// `WdfIoQueueCreate` on `device` with `handler` answering its requests.
///
/// `config`'s dispatch type, default-queue flag and power management are used; its raw
/// handler fields are replaced by `H`'s read, write and device-control handlers (none for a
/// manual queue) and its `EvtIoCanceledOnQueue` by [`IoQueueHandler::canceled_on_queue`]. `passive` asks KMDF to call the handlers at `PASSIVE_LEVEL`
/// (`WdfExecutionLevelPassive`). The handler lives in the queue's context and is dropped when
/// the queue is destroyed (with its device). Create a default queue from
/// `EvtDriverDeviceAdd`.
pub fn create_queue<H: IoQueueHandler>(
    device: Device,
    config: &QueueConfig,
    passive: bool,
    handler: H,
) -> Result<Queue, NtStatus> {
    let mut raw_config = *config;
    raw_config.io_default = None;
    raw_config.io_internal_device_control = None;
    if config.dispatch == DispatchType::Manual {
        raw_config.io_read = None;
        raw_config.io_write = None;
        raw_config.io_device_control = None;
    } else {
        raw_config.io_read = Some(io_read::<H>);
        raw_config.io_write = Some(io_write::<H>);
        raw_config.io_device_control = Some(io_device_control::<H>);
    }
    raw_config.io_canceled_on_queue = Some(io_canceled_on_queue::<H>);
    let mut attributes = WDF_OBJECT_ATTRIBUTES {
        Size: size_of::<WDF_OBJECT_ATTRIBUTES>() as u32,
        EvtDestroyCallback: Some(free_handler::<H>),
        ExecutionLevel: if passive {
            _WDF_EXECUTION_LEVEL::WdfExecutionLevelPassive
        } else {
            _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent
        },
        SynchronizationScope: _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
        ContextTypeInfo: &raw const QUEUE_HANDLER_CONTEXT.0,
        ..WDF_OBJECT_ATTRIBUTES::default()
    };
    let queue = Queue::create_with_attributes(device, &raw_config, &raw mut attributes)?;
    let slot = slot_of(queue.handle().cast());
    if slot.is_null() {
        return Err(NtStatus::INTERNAL_ERROR);
    }
    let boxed = Box::into_raw(Box::new(handler));
    // SAFETY: the context area is a zeroed (valid, null) aligned `HandlerSlot` owned by the
    // queue. Until
    // the handler is written the callbacks find a null slot and fail the request instead of
    // reading it; requests reach a new queue only through its handle (returned below) or, for
    // a default queue, once the device started, after `EvtDriverDeviceAdd` returned.
    unsafe { &(*slot).handler }.store(boxed.cast(), Ordering::Release);
    Ok(queue)
}

/// [`create_queue`] for a queue the caller deletes itself: the queue is deleted when the
/// returned [`OwnedQueue`] is dropped (e.g. a module's private manual queue, created when the
/// module opens and deleted when it closes), not only with its device.
pub fn create_owned_queue<H: IoQueueHandler>(
    device: Device,
    config: &QueueConfig,
    passive: bool,
    handler: H,
) -> Result<OwnedQueue, NtStatus> {
    create_queue(device, config, passive, handler).map(OwnedQueue::new)
}

/// The performance counter (`KeQueryPerformanceCounter`): a monotonic tick count, callable at
/// any IRQL; [`performance_frequency`] ticks make one second.
#[must_use]
pub fn performance_counter() -> i64 {
    // SAFETY: a null frequency pointer is allowed; callable at any IRQL.
    let value = unsafe { wdk_sys::ntddk::KeQueryPerformanceCounter(core::ptr::null_mut()) };
    // SAFETY: every bit pattern of the union is a valid `QuadPart`.
    unsafe { value.QuadPart }
}

/// Ticks per second of [`performance_counter`].
#[must_use]
pub fn performance_frequency() -> i64 {
    let mut frequency = wdk_sys::LARGE_INTEGER { QuadPart: 0 };
    // SAFETY: the out pointer is a valid local.
    let _ = unsafe { wdk_sys::ntddk::KeQueryPerformanceCounter(&raw mut frequency) };
    // SAFETY: as in `performance_counter`.
    unsafe { frequency.QuadPart }
}

/// The system's interrupt time in 100 ns units (`KeQueryUnbiasedInterruptTime`): a monotonic
/// clock for timestamps, callable at any IRQL.
#[must_use]
pub fn interrupt_time_100ns() -> u64 {
    // SAFETY: no arguments; callable at any IRQL.
    unsafe { wdk_sys::ntddk::KeQueryUnbiasedInterruptTime() }
}
