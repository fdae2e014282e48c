//! `NotifyUserWithRequest`: park requests (typically IOCTLs from user mode) and complete them
//! when the driver has something to report; optionally keep the last data items so that a
//! request arriving later is completed at once with the oldest one.
//!
//! A request given to [`event_request_add`](NotifyUserWithRequestNode::event_request_add) or
//! [`request_process`](NotifyUserWithRequestNode::request_process) is forwarded to a private
//! manual queue that is **not power-managed** (parked requests stay parked across D0 exit and
//! entry) and stays cancelable there: if its issuer cancels it (`CancelIoEx`, closing the
//! handle) the module forgets it and it completes with `STATUS_CANCELLED` (or goes to the
//! client's cancel callback). From then on the module owns it. The client gets it back only as
//! a [`ParkedRequest`] handed to a callback, a value that completes the request exactly once:
//! explicitly ([`ParkedRequest::complete`], [`ParkedRequest::complete_with_information`],
//! [`ParkedRequest::complete_with_data`]) or, if dropped, with the status the module was given
//! and no data. A rejected request is handed back as a [`RejectedRequest`] for the caller to
//! complete.
//!
//! With data buffers (`maximum_number_of_pending_data_buffers > 0`),
//! [`data_process`](NotifyUserWithRequestNode::data_process) copies a data item into one of
//! the buffers preallocated at creation (a [`BufferQueue`](super::buffer_queue) child) and
//! pairs data and parked requests first-in first-out: the oldest data item goes to the oldest
//! parked request. When every buffer holds data nobody asked for yet, the oldest item is dropped
//! to make room (its cleanup callback runs), unless look-aside lets the queue grow.
//!
//! # Configuration ([`NotifyUserWithRequestConfig`])
//!
//! | Field | Meaning |
//! |---|---|
//! | `maximum_number_of_pending_requests` | requests parked at once (> 0); one more is rejected with `STATUS_INVALID_DEVICE_STATE` |
//! | `maximum_number_of_pending_data_buffers` | data items kept while no request waits (0: no data buffers, `data_process` is refused) |
//! | `size_of_data_buffer` | largest data item in bytes (may be 0: items carry only a status); a request must have an output buffer of at least this size |
//! | `pending_requests_cancel` | receives each parked request its issuer cancelled (status `STATUS_CANCELLED`); without it such a request completes with `STATUS_CANCELLED` |
//! | `data_complete` | populates and completes the request paired with a data item; without it the item's bytes are copied to the output buffer and the request completes with the item's status and their length |
//! | `data_cleanup` | called with a data item's bytes once the module lets go of it: after it was delivered, when it is dropped as the oldest, at close |
//! | `time_stamping` | record the performance counter when a request is parked and when a data item arrives |
//! | `enable_look_aside` | the data buffers grow on demand instead of dropping the oldest item |
//! | `client_driver_provider_name` | name used for this module's trace messages |
//!
//! Invalid combinations are a [`ConfigError`] at creation: zero pending requests
//! ([`ConfigError::NoPendingRequests`]), or data settings without data buffers
//! ([`ConfigError::DataSettingsWithoutDataBuffers`]). Child: the data buffer queue
//! ("`NotifyUserWithRequestBufferQueue`", only with data buffers), with this module's
//! passive-level option (its buffers are then paged pool).
//!
//! # Callbacks (IRQL)
//!
//! No callback runs under a lock of the module, so each may call the module's methods again.
//!
//! | Callback | Runs | IRQL |
//! |---|---|---|
//! | the `request_return*` callback | in the method's caller, once per request taken | the caller's (`<= DISPATCH_LEVEL`) |
//! | `data_complete` | in the caller of `data_process` or `request_process` that made the pair | the caller's (`<= DISPATCH_LEVEL`) |
//! | `pending_requests_cancel` | in the context that cancelled the request: the issuer's `CancelIoEx` or handle close, or a purge of the queue by the framework | `<= DISPATCH_LEVEL` (`PASSIVE_LEVEL` for a passive-level module, whose queue is a passive-level queue) |
//! | `data_cleanup` | where the item is let go: after delivery (see `data_complete`), in `data_process` when the oldest is dropped, at close | as there; close is `PASSIVE_LEVEL` |
//!
//! Assume `DISPATCH_LEVEL` in each callback of a default (dispatch-level) module: no waits, no
//! paged memory.
//!
//! # Methods
//!
//! Every method takes a module reference and is callable at `IRQL <= DISPATCH_LEVEL`
//! (`PASSIVE_LEVEL` for a module created with the passive-level option, whose lock is then a
//! wait lock). On a module that is not open, methods returning a status return
//! `STATUS_INVALID_DEVICE_STATE` and the others do nothing. No method allocates: requests park
//! on the framework's queue and data items go into the buffers preallocated at creation
//! (look-aside growth excepted).
//!
//! | Method | DMF | Result |
//! |---|---|---|
//! | [`event_request_add`](NotifyUserWithRequestNode::event_request_add) | `EventRequestAdd` | parks the request; `Err(RejectedRequest)` with `STATUS_INVALID_DEVICE_STATE` at the limit, `STATUS_BUFFER_TOO_SMALL` when its output buffer cannot hold a data item, or the forward's status |
//! | [`request_process`](NotifyUserWithRequestNode::request_process) | `RequestProcess` | as `event_request_add`, then pairs waiting data with parked requests |
//! | [`data_process`](NotifyUserWithRequestNode::data_process) | `DataProcess` | stores a data item, then pairs; `STATUS_BUFFER_TOO_SMALL` for an item larger than `size_of_data_buffer`, `STATUS_INVALID_DEVICE_REQUEST` without data buffers |
//! | [`request_return`](NotifyUserWithRequestNode::request_return) | `RequestReturn` | hands the oldest parked request (if any) to a callback |
//! | [`request_return_ex`](NotifyUserWithRequestNode::request_return_ex) | `RequestReturnEx` | as `request_return`: `Ok` if a request was handed over, `STATUS_UNSUCCESSFUL` if none was parked |
//! | [`request_return_all`](NotifyUserWithRequestNode::request_return_all) | `RequestReturnAll` | hands every request parked when called to the callback; returns how many |
//! | [`request_timestamp_get`](NotifyUserWithRequestNode::request_timestamp_get) | `RequestTimestampGet` | when a parked request arrived (time stamping on) |
//! | [`data_buffer_timestamp_get`](NotifyUserWithRequestNode::data_buffer_timestamp_get) | `DataBufferTimestampGet` | when a data item arrived (time stamping on) |
//! | [`pending_request_count`](NotifyUserWithRequestNode::pending_request_count) / [`pending_data_count`](NotifyUserWithRequestNode::pending_data_count) | | requests parked / data items waiting |
//!
//! The `request_return*` methods do not touch the data items. Pass `drop` as their callback to
//! complete the requests with the given status and no data (DMF's `NULL` callback).
//!
//! Close completes every parked request with `STATUS_CANCELLED` (no callback), waits for
//! cancellations in progress, deletes the queue, then lets go of the data items still waiting
//! (cleanup runs for each). Close the module before the device's queues are purged at removal
//! (in `ReleaseHardware`, or by dropping a dynamic module earlier).
//!
//! # Example
//!
//! A driver parks every "wait for event" IOCTL; the user-mode side issues one and gets the next
//! event.
//!
//! ```
//! # use std::sync::Mutex;
//! # use std::time::Duration;
//! # use dmf::wdf::device::DeviceInit;
//! # use dmf::wdf::driver::Driver;
//! # use dmf::wdf::entry::{DriverCallbacks, create_queue};
//! # use dmf::wdf::queue::{DispatchType, QueueConfig};
//! use dmf::core::ModuleAttributes;
//! use dmf::modules::notify_user_with_request::{
//!     NotifyUserWithRequest, NotifyUserWithRequestConfig,
//! };
//! use dmf::wdf::NtStatus;
//! use dmf::wdf::entry::IoQueueHandler;
//! use dmf::wdf::queue::{Queue, QueueRequest};
//!
//! static NOTIFY: Mutex<Option<NotifyUserWithRequest>> = Mutex::new(None);
//!
//! /// The device's IOCTL queue: every request waits for the next event.
//! struct Ioctls;
//!
//! impl IoQueueHandler for Ioctls {
//!     fn device_control(&self, _: Queue, request: QueueRequest, _: u32, _: usize, _: usize) {
//!         match &*NOTIFY.lock().unwrap() {
//!             Some(notify) => {
//!                 if let Err(rejected) = notify.request_process(request) {
//!                     rejected.complete(); // at the limit: STATUS_INVALID_DEVICE_STATE
//!                 }
//!             }
//!             None => request.complete(NtStatus::INVALID_DEVICE_STATE),
//!         }
//!     }
//! }
//! # const CLASS: wdk_sys::GUID = wdk_sys::GUID { Data1: 0x4e55_5752, Data2: 1, Data3: 2, Data4: [0; 8] };
//! # struct Example;
//! # impl DriverCallbacks for Example {
//! #     fn device_add(_: Driver, init: DeviceInit) -> Result<(), NtStatus> {
//! #         let device = init.create(None)?;
//! #         device.create_device_interface(&CLASS, None)?;
//! #         create_queue(device, &QueueConfig::new(DispatchType::Parallel, true), false, Ioctls)?;
//! #         Ok(())
//! #     }
//! # }
//! # dmf::driver_entry!(Example);
//! # let session = wdk_sys::sim::Session::begin();
//! # let driver = wdk_sys::sim::pnp::Driver::load(driver_entry).unwrap();
//! # let pnp_device = driver.add_device().unwrap();
//! # pnp_device.start().unwrap();
//! # let device = dmf::wdf::device::Device::from_raw(pnp_device.handle());
//!
//! // EvtDriverDeviceAdd (or PrepareHardware), once the device exists:
//! let config = NotifyUserWithRequestConfig {
//!     maximum_number_of_pending_requests: 16,
//!     maximum_number_of_pending_data_buffers: 8,
//!     size_of_data_buffer: 4,
//!     ..NotifyUserWithRequestConfig::default()
//! };
//! let notify = NotifyUserWithRequest::create(device, config, ModuleAttributes::new())?;
//! *NOTIFY.lock().unwrap() = Some(notify);
//!
//! // User mode waits for an event:
//! let file = wdk_sys::sim::user::File::open_interface(&CLASS).unwrap();
//! let waiting = file.device_io_control_overlapped(0x22_2000, &[], 4);
//! assert!(!waiting.is_complete());
//!
//! // Something happened (from a DPC, say): the parked request completes with the data.
//! if let Some(notify) = &*NOTIFY.lock().unwrap() {
//!     notify.data_process(&7u32.to_le_bytes(), NtStatus::SUCCESS)?;
//!     assert_eq!(notify.pending_request_count(), 0);
//! }
//! assert_eq!(waiting.wait(Duration::from_secs(5)), Some((0, 4)));
//! assert_eq!(waiting.output(), &7u32.to_le_bytes());
//! # drop(waiting);
//! # drop(file);
//! // ReleaseHardware: closing completes whatever is still parked with STATUS_CANCELLED.
//! drop(NOTIFY.lock().unwrap().take());
//! # pnp_device.remove();
//! # driver.unload();
//! # session.end();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A parked request completes once: it cannot be completed twice.
//!
//! ```compile_fail
//! # fn f(request: dmf::modules::notify_user_with_request::ParkedRequest) {
//! # use dmf::wdf::NtStatus;
//! request.complete(NtStatus::SUCCESS);
//! request.complete(NtStatus::SUCCESS); // error: use of moved value
//! # }
//! ```
//!
//! # Differences from DMF
//!
//! * A parked request reaches the client as a [`ParkedRequest`] that completes exactly once
//!   (a dropped one completes with the method's status and no data); a rejected request comes
//!   back as a [`RejectedRequest`] holding it and the status. DMF hands out raw `WDFREQUEST`s.
//! * When every data buffer is full, the oldest item is dropped **with its cleanup callback
//!   called** (DMF reuses its buffer without calling `EvtDataCleanup`). The cleanup callback
//!   runs exactly once for every item stored.
//! * The data callback is fixed at creation (`data_complete`) and `data_process` takes the
//!   item's bytes (up to `size_of_data_buffer`, the length is kept): nothing is stored per item
//!   but the bytes, the status and the time stamp, so nothing is allocated. DMF stores a
//!   callback pointer per item and copies exactly `SizeOfDataBuffer` bytes from a pointer.
//! * With data buffers, a request whose output buffer cannot hold `size_of_data_buffer` bytes
//!   is refused with `STATUS_BUFFER_TOO_SMALL` when it arrives, so no data item is lost on it
//!   (DMF parks it and the client's callback fails it, dropping the item). If the default
//!   delivery still fails, the item goes back to the head of the data queue.
//! * A failed forward leaves the pending-request count unchanged and hands the request back
//!   (DMF keeps the count incremented after a failed forward or time-stamp allocation, so the
//!   module eventually rejects everything). The limit is checked before the count is raised, so it is never exceeded even
//!   for a moment.
//! * `data_process` returns a status: an item larger than `size_of_data_buffer` is refused with
//!   `STATUS_BUFFER_TOO_SMALL`, a module without data buffers refuses with
//!   `STATUS_INVALID_DEVICE_REQUEST` (DMF asserts), and when every buffer is being delivered at
//!   that instant the item is refused with `STATUS_INSUFFICIENT_RESOURCES` (DMF asserts and
//!   drops it).
//! * Pairing repeats until data or parked requests run out (DMF pairs once per call, so items
//!   and requests parked with `event_request_add` can both wait).
//! * Request time stamps live in a table preallocated for `maximum_number_of_pending_requests`
//!   entries instead of a context allocated on each request.
//! * `ClientDriverProviderName` names the module in traces; there is no event log.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::buffer_pool::{PoolBuffer, SourceSettings};
use super::buffer_queue::{BufferQueueConfig, BufferQueueNode};
use crate::core::{Module, ModuleAttributes, ModuleCore, ModuleLock, ModuleNode, OpenOption};
use crate::dmf_trace;
use crate::error::{ConfigError, ModuleError};
use crate::wdf::device::Device;
use crate::wdf::entry::{IoQueueHandler, create_owned_queue, performance_counter};
use crate::wdf::queue::{
    DispatchType, OwnedQueue, Queue, QueueConfig, QueueRequest, RequestParameters,
};
use crate::wdf::spin_lock::SpinLock;
use crate::wdf::trace::TraceLevel;
use crate::wdf::{NtStatus, PoolType};

/// Receives a parked request its issuer cancelled (DMF's `EvtPendingRequestsCancel`); its
/// [`status`](ParkedRequest::status) is `STATUS_CANCELLED`. `IRQL <= DISPATCH_LEVEL`.
pub type CancelCallback = Box<dyn Fn(ParkedRequest) + Send + Sync>;

/// Populates and completes the request paired with a data item (the callback DMF's
/// `DataProcess` takes). Runs in the caller of `data_process` / `request_process`, at its IRQL.
pub type DataCallback = Box<dyn Fn(ParkedRequest, &DataBuffer<'_>) + Send + Sync>;

/// Called with a data item's bytes when the module lets go of it (DMF's `EvtDataCleanup`).
pub type DataCleanupCallback = Box<dyn Fn(&mut [u8]) + Send + Sync>;

/// Configuration of a [`NotifyUserWithRequest`] (DMF's `DMF_CONFIG_NotifyUserWithRequest`);
/// see the [module documentation](self) for each field.
#[derive(Default)]
pub struct NotifyUserWithRequestConfig {
    /// Requests parked at once; must be greater than zero.
    pub maximum_number_of_pending_requests: usize,
    /// Data items kept while no request waits; 0 for none.
    pub maximum_number_of_pending_data_buffers: usize,
    /// Largest data item, in bytes.
    pub size_of_data_buffer: usize,
    /// See [`CancelCallback`].
    pub pending_requests_cancel: Option<CancelCallback>,
    /// See [`DataCallback`].
    pub data_complete: Option<DataCallback>,
    /// See [`DataCleanupCallback`].
    pub data_cleanup: Option<DataCleanupCallback>,
    /// Record when requests and data items arrive.
    pub time_stamping: bool,
    /// Let the data buffers grow instead of dropping the oldest item.
    pub enable_look_aside: bool,
    /// Name of this module in trace messages (DMF's `ClientDriverProviderName`).
    pub client_driver_provider_name: Option<&'static str>,
}

impl NotifyUserWithRequestConfig {
    /// Checks the rules listed in the module documentation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.maximum_number_of_pending_requests == 0 {
            return Err(ConfigError::NoPendingRequests);
        }
        if self.maximum_number_of_pending_data_buffers == 0
            && (self.size_of_data_buffer > 0
                || self.enable_look_aside
                || self.data_complete.is_some()
                || self.data_cleanup.is_some())
        {
            return Err(ConfigError::DataSettingsWithoutDataBuffers);
        }
        Ok(())
    }
}

impl core::fmt::Debug for NotifyUserWithRequestConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NotifyUserWithRequestConfig")
            .field(
                "maximum_number_of_pending_requests",
                &self.maximum_number_of_pending_requests,
            )
            .field(
                "maximum_number_of_pending_data_buffers",
                &self.maximum_number_of_pending_data_buffers,
            )
            .field("size_of_data_buffer", &self.size_of_data_buffer)
            .field("time_stamping", &self.time_stamping)
            .field("enable_look_aside", &self.enable_look_aside)
            .finish_non_exhaustive()
    }
}

/// A request the module parked and now hands to the client. It completes exactly once: with
/// one of the `complete*` methods, or when dropped, with [`status`](Self::status) and no data.
#[must_use = "a parked request is completed when dropped; complete it to choose what it returns"]
pub struct ParkedRequest {
    request: Option<QueueRequest>,
    status: NtStatus,
    timestamp: Option<i64>,
}

impl ParkedRequest {
    fn new(request: QueueRequest, status: NtStatus, timestamp: Option<i64>) -> Self {
        Self {
            request: Some(request),
            status,
            timestamp,
        }
    }

    /// The status the module was asked to return (the method's status, the data item's, or
    /// `STATUS_CANCELLED` for a cancelled request); dropping the request completes it with it.
    #[must_use]
    pub fn status(&self) -> NtStatus {
        self.status
    }

    /// The performance counter when the request was parked (time stamping on), as
    /// `RequestTimestampGet` returns it.
    #[must_use]
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// What the request asks for.
    #[must_use]
    pub fn parameters(&self) -> RequestParameters {
        self.request
            .as_ref()
            .map_or(RequestParameters::Other, QueueRequest::parameters)
    }

    /// The input buffer, at least `minimum` bytes (`STATUS_BUFFER_TOO_SMALL` otherwise).
    pub fn input_buffer(&self, minimum: usize) -> Result<&[u8], NtStatus> {
        self.request
            .as_ref()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?
            .input_buffer(minimum)
    }

    /// The output buffer, at least `minimum` bytes (`STATUS_BUFFER_TOO_SMALL` otherwise).
    pub fn output_buffer(&mut self, minimum: usize) -> Result<&mut [u8], NtStatus> {
        self.request
            .as_mut()
            .ok_or(NtStatus::INVALID_DEVICE_STATE)?
            .output_buffer(minimum)
    }

    /// Whether the issuer asked to cancel the request (it is not cancelable while the client
    /// holds it; complete it promptly).
    #[must_use]
    pub fn is_canceled(&self) -> bool {
        self.request.as_ref().is_some_and(QueueRequest::is_canceled)
    }

    /// Completes the request with `status` and no data.
    pub fn complete(self, status: NtStatus) {
        self.complete_with_information(status, 0);
    }

    /// Completes the request with `status`, reporting `information` bytes returned.
    pub fn complete_with_information(mut self, status: NtStatus, information: usize) {
        if let Some(request) = self.request.take() {
            request.complete_with_information(status, information);
        }
    }

    /// Copies `data` to the start of the output buffer and completes the request with `status`
    /// and `data.len()` bytes returned. If the output buffer is smaller, the request completes
    /// with that error (`STATUS_BUFFER_TOO_SMALL`) instead, which is returned.
    pub fn complete_with_data(mut self, data: &[u8], status: NtStatus) -> Result<(), NtStatus> {
        if data.is_empty() {
            self.complete(status);
            return Ok(());
        }
        match self.output_buffer(data.len()) {
            Ok(output) => {
                output[..data.len()].copy_from_slice(data);
                self.complete_with_information(status, data.len());
                Ok(())
            }
            Err(error) => {
                self.complete(error);
                Err(error)
            }
        }
    }
}

impl Drop for ParkedRequest {
    fn drop(&mut self) {
        if let Some(request) = self.request.take() {
            request.complete_with_information(self.status, 0);
        }
    }
}

impl core::fmt::Debug for ParkedRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ParkedRequest")
            .field("status", &self.status)
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

/// A data item paired with a request, as [`DataCallback`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct DataBuffer<'a> {
    data: &'a [u8],
    status: NtStatus,
    timestamp: Option<i64>,
}

impl<'a> DataBuffer<'a> {
    /// The bytes given to `data_process`.
    #[must_use]
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The status given to `data_process`.
    #[must_use]
    pub fn status(&self) -> NtStatus {
        self.status
    }

    /// The performance counter when the item arrived (time stamping on), as
    /// `DataBufferTimestampGet` returns it.
    #[must_use]
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }
}

/// A request the module did not park: still the caller's, to complete (usually with
/// [`status`](Self::status), which [`complete`](Self::complete) does).
#[derive(Debug)]
#[must_use = "a rejected request must still be completed"]
pub struct RejectedRequest {
    /// Why it was rejected.
    pub status: NtStatus,
    /// The request, owned by the caller again.
    pub request: QueueRequest,
}

impl RejectedRequest {
    fn new(request: QueueRequest, status: NtStatus) -> Self {
        Self { status, request }
    }

    /// Completes the request with the rejection status.
    pub fn complete(self) {
        self.request.complete(self.status);
    }
}

/// Bytes kept in front of each data item, in its buffer's context: status (`i32`), length
/// (`u32`), time stamp (`i64`), little-endian.
const HEADER: usize = 16;

#[derive(Clone, Copy)]
struct ItemHeader {
    status: NtStatus,
    length: usize,
    timestamp: i64,
}

impl ItemHeader {
    fn read(context: &[u8]) -> Self {
        let mut status = [0u8; 4];
        let mut length = [0u8; 4];
        let mut timestamp = [0u8; 8];
        status.copy_from_slice(&context[..4]);
        length.copy_from_slice(&context[4..8]);
        timestamp.copy_from_slice(&context[8..HEADER]);
        Self {
            status: NtStatus::from_raw(i32::from_le_bytes(status)),
            length: u32::from_le_bytes(length) as usize,
            timestamp: i64::from_le_bytes(timestamp),
        }
    }

    fn write(self, context: &mut [u8]) {
        context[..4].copy_from_slice(&self.status.raw().to_le_bytes());
        context[4..8].copy_from_slice(&(self.length as u32).to_le_bytes());
        context[8..HEADER].copy_from_slice(&self.timestamp.to_le_bytes());
    }
}

/// When a parked request arrived, keyed by its handle.
#[derive(Clone, Copy)]
struct Stamp {
    request: usize,
    ticks: i64,
}

/// What the queue's cancel callback shares with the module.
struct Shared {
    maximum_requests: usize,
    /// Requests parked (DMF's `EventCountHeld`): raised before a request is forwarded to the
    /// queue, lowered when it leaves the queue (taken, or cancelled).
    held: AtomicUsize,
    /// Arrival times of parked requests (time stamping only): one slot per request that can
    /// be parked, preallocated.
    stamps: Option<SpinLock<Vec<Option<Stamp>>>>,
    on_cancel: Option<CancelCallback>,
}

fn key(request: &QueueRequest) -> usize {
    request.handle() as usize
}

impl Shared {
    /// Counts one more parked request unless the limit is reached.
    fn admit(&self) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < self.maximum_requests).then_some(held + 1)
            })
            .is_ok()
    }

    fn stamp(&self, request: &QueueRequest) {
        if let Some(stamps) = &self.stamps {
            let ticks = performance_counter();
            let mut stamps = stamps.lock();
            // Entries never outnumber counted requests, which never exceed the slots.
            if let Some(slot) = stamps.iter_mut().find(|slot| slot.is_none()) {
                *slot = Some(Stamp {
                    request: key(request),
                    ticks,
                });
            }
        }
    }

    fn take_stamp(&self, request: &QueueRequest) -> Option<i64> {
        let stamps = self.stamps.as_ref()?;
        let key = key(request);
        let mut stamps = stamps.lock();
        let slot = stamps
            .iter_mut()
            .find(|slot| slot.is_some_and(|stamp| stamp.request == key))?;
        slot.take().map(|stamp| stamp.ticks)
    }

    /// A request left the queue: forget it (its stamp first, then the count, so stamps never
    /// outnumber counted requests) and hand it on.
    fn leave(&self, request: QueueRequest, status: NtStatus) -> ParkedRequest {
        let timestamp = self.take_stamp(&request);
        self.held.fetch_sub(1, Ordering::AcqRel);
        ParkedRequest::new(request, status, timestamp)
    }
}

/// The parking queue's handler: only cancellations reach it (the queue is manual).
struct ParkingQueue(Arc<Shared>);

impl IoQueueHandler for ParkingQueue {
    fn canceled_on_queue(&self, _queue: Queue, request: QueueRequest) {
        let parked = self.0.leave(request, NtStatus::CANCELLED);
        match &self.0.on_cancel {
            Some(callback) => callback(parked),
            None => drop(parked),
        }
    }
}

/// The module object of a [`NotifyUserWithRequest`].
pub struct NotifyUserWithRequestNode {
    core: ModuleCore,
    trace_name: &'static str,
    device: Device,
    shared: Arc<Shared>,
    /// The parking queue (while open). Its lock also makes each pairing (oldest data item with
    /// oldest request) one step.
    queue: ModuleLock<Option<OwnedQueue>>,
    data: Option<Module<BufferQueueNode>>,
    size_of_data_buffer: usize,
    time_stamping: bool,
    on_data: Option<DataCallback>,
    on_cleanup: Option<DataCleanupCallback>,
}

/// A `NotifyUserWithRequest` module (see the [module documentation](self)).
pub struct NotifyUserWithRequest(Module<NotifyUserWithRequestNode>);

impl AsRef<Module<NotifyUserWithRequestNode>> for NotifyUserWithRequest {
    fn as_ref(&self) -> &Module<NotifyUserWithRequestNode> {
        &self.0
    }
}

impl core::ops::Deref for NotifyUserWithRequest {
    type Target = NotifyUserWithRequestNode;

    fn deref(&self) -> &NotifyUserWithRequestNode {
        &self.0
    }
}

impl NotifyUserWithRequest {
    /// Creates the module on `device` (its parking queue is created there when the module
    /// opens) and its data buffers. A dynamic module (the default attributes) is open when this
    /// returns. Invalid settings fail with a typed error before anything is allocated.
    pub fn create(
        device: Device,
        config: NotifyUserWithRequestConfig,
        attributes: ModuleAttributes,
    ) -> Result<Self, ModuleError> {
        Ok(Self(Module::new(NotifyUserWithRequestNode::new(
            device, config, attributes,
        )?)?))
    }
}

impl NotifyUserWithRequestNode {
    fn new(
        device: Device,
        config: NotifyUserWithRequestConfig,
        attributes: ModuleAttributes,
    ) -> Result<Self, ModuleError> {
        config.validate()?;
        let passive_level = attributes.passive_level;
        let core = ModuleCore::new(
            "NotifyUserWithRequest",
            OpenOption::OpenCreate,
            true,
            attributes,
        )?;
        let stamps = if config.time_stamping {
            let mut slots = Vec::new();
            slots
                .try_reserve_exact(config.maximum_number_of_pending_requests)
                .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
            slots.resize(config.maximum_number_of_pending_requests, None);
            Some(SpinLock::create(slots)?)
        } else {
            None
        };
        let shared = Arc::new(Shared {
            maximum_requests: config.maximum_number_of_pending_requests,
            held: AtomicUsize::new(0),
            stamps,
            on_cancel: config.pending_requests_cancel,
        });
        let queue = ModuleLock::create(None, passive_level)?;
        let data = if config.maximum_number_of_pending_data_buffers > 0 {
            let settings = SourceSettings {
                buffer_count: config.maximum_number_of_pending_data_buffers,
                // A pool buffer holds at least one byte; items use `size_of_data_buffer`.
                buffer_size: config.size_of_data_buffer.max(1),
                buffer_context_size: HEADER,
                enable_look_aside: config.enable_look_aside,
                create_with_timer: false,
                pool_type: if passive_level {
                    PoolType::Paged
                } else {
                    PoolType::NonPaged
                },
            };
            Some(Module::new(BufferQueueNode::new(
                device.handle().cast(),
                BufferQueueConfig::new(settings),
                ModuleAttributes::child_of(passive_level, "NotifyUserWithRequestBufferQueue"),
            )?)?)
        } else {
            None
        };
        Ok(Self {
            trace_name: config
                .client_driver_provider_name
                .unwrap_or_else(|| core.name()),
            core,
            device,
            shared,
            queue,
            data,
            size_of_data_buffer: config.size_of_data_buffer,
            time_stamping: config.time_stamping,
            on_data: config.data_complete,
            on_cleanup: config.data_cleanup,
        })
    }

    fn parking_queue(&self) -> Option<Queue> {
        self.queue.lock().as_ref().map(OwnedQueue::queue)
    }

    /// Parks `request` (`DMF_NotifyUserWithRequest_EventRequestAdd`); no data is paired with it
    /// now. On `Err` the request is not parked and is the caller's again, with the status to
    /// complete it with: `STATUS_INVALID_DEVICE_STATE` when the module is not open or
    /// `maximum_number_of_pending_requests` are parked already, `STATUS_BUFFER_TOO_SMALL` when
    /// the module has data buffers and the request's output buffer is smaller than
    /// `size_of_data_buffer`, or the status of the forward to the parking queue.
    pub fn event_request_add(&self, request: QueueRequest) -> Result<(), RejectedRequest> {
        let Ok(_reference) = self.core.reference() else {
            return Err(RejectedRequest::new(
                request,
                NtStatus::INVALID_DEVICE_STATE,
            ));
        };
        self.park(request)
    }

    fn park(&self, mut request: QueueRequest) -> Result<(), RejectedRequest> {
        if self.data.is_some() && self.size_of_data_buffer > 0 {
            let fits = request.output_buffer(self.size_of_data_buffer).map(|_| ());
            if let Err(status) = fits {
                dmf_trace!(
                    TraceLevel::Verbose,
                    self.trace_name,
                    "request refused: its output buffer cannot hold a data item ({status})"
                );
                return Err(RejectedRequest::new(request, status));
            }
        }
        if !self.shared.admit() {
            // Verbose: a flood of requests must not become a flood of debug output.
            dmf_trace!(
                TraceLevel::Verbose,
                self.trace_name,
                "request refused: {} requests are pending already",
                self.shared.maximum_requests
            );
            return Err(RejectedRequest::new(
                request,
                NtStatus::INVALID_DEVICE_STATE,
            ));
        }
        let Some(queue) = self.parking_queue() else {
            self.shared.held.fetch_sub(1, Ordering::AcqRel);
            return Err(RejectedRequest::new(
                request,
                NtStatus::INVALID_DEVICE_STATE,
            ));
        };
        self.shared.stamp(&request);
        // The request may be cancelled (and handed to the cancel callback) as soon as it is on
        // the queue, even before the forward returns: it is counted and stamped already.
        request.forward_to(queue).map_err(|(request, status)| {
            let _ = self.shared.take_stamp(&request);
            self.shared.held.fetch_sub(1, Ordering::AcqRel);
            RejectedRequest::new(request, status)
        })
    }

    /// Parks `request`, then pairs waiting data items with parked requests, oldest with oldest
    /// (`DMF_NotifyUserWithRequest_RequestProcess`): with data waiting, a request is completed
    /// before this returns. Fails as [`event_request_add`](Self::event_request_add).
    pub fn request_process(&self, request: QueueRequest) -> Result<(), RejectedRequest> {
        let Ok(_reference) = self.core.reference() else {
            return Err(RejectedRequest::new(
                request,
                NtStatus::INVALID_DEVICE_STATE,
            ));
        };
        self.park(request)?;
        self.pair_all();
        Ok(())
    }

    /// Stores a data item (`data` with `status`), then pairs waiting data items with parked
    /// requests, oldest with oldest (`DMF_NotifyUserWithRequest_DataProcess`). When every
    /// buffer holds an item, the oldest is dropped (its cleanup callback runs) to make room,
    /// unless look-aside lets the buffers grow.
    ///
    /// Fails with `STATUS_INVALID_DEVICE_STATE` on a module that is not open,
    /// `STATUS_INVALID_DEVICE_REQUEST` without data buffers, `STATUS_BUFFER_TOO_SMALL` if `data`
    /// is longer than `size_of_data_buffer`, `STATUS_INSUFFICIENT_RESOURCES` if no buffer can be
    /// had (all being delivered right now, or look-aside growth failed with nothing to drop).
    pub fn data_process(&self, data: &[u8], status: NtStatus) -> Result<(), NtStatus> {
        let _reference = self.core.reference()?;
        let Some(items) = &self.data else {
            return Err(NtStatus::INVALID_DEVICE_REQUEST);
        };
        if data.len() > self.size_of_data_buffer {
            return Err(NtStatus::BUFFER_TOO_SMALL);
        }
        let timestamp = if self.time_stamping {
            performance_counter()
        } else {
            0
        };
        let (mut buffer, oldest) = {
            let _pairing = self.queue.lock();
            match items.fetch() {
                Ok(buffer) => (buffer, false),
                Err(_) => (
                    items
                        .dequeue()
                        .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?,
                    true,
                ),
            }
        };
        if oldest {
            dmf_trace!(
                TraceLevel::Verbose,
                self.trace_name,
                "every data buffer is waiting: the oldest item is dropped"
            );
            self.cleanup(&mut buffer);
        }
        let (bytes, context) = buffer.parts_mut();
        bytes[..data.len()].copy_from_slice(data);
        bytes[data.len()..].fill(0);
        ItemHeader {
            status,
            length: data.len(),
            timestamp,
        }
        .write(context);
        if let Err(error) = items.enqueue(buffer) {
            let status = error.status();
            self.release(error.into_buffer());
            return Err(status);
        }
        self.pair_all();
        Ok(())
    }

    /// Runs the cleanup callback on a data item's bytes.
    fn cleanup(&self, buffer: &mut PoolBuffer) {
        if let Some(cleanup) = &self.on_cleanup {
            let header = ItemHeader::read(buffer.context());
            let length = header.length.min(self.size_of_data_buffer);
            cleanup(&mut buffer.data_mut()[..length]);
        }
    }

    /// Lets go of a data item: cleanup, then its buffer goes back to the free list.
    fn release(&self, mut buffer: PoolBuffer) {
        self.cleanup(&mut buffer);
        if let Some(items) = &self.data {
            // Only buffers of this queue reach here.
            let _ = items.reuse(buffer);
        }
    }

    /// Pairs until data items or parked requests run out.
    fn pair_all(&self) {
        while self.pair_one() {}
    }

    /// Takes the oldest data item and the oldest parked request as one step and delivers the
    /// item; false when either is missing.
    fn pair_one(&self) -> bool {
        let Some(items) = &self.data else {
            return false;
        };
        let (request, buffer) = {
            let guard = self.queue.lock();
            let Some(queue) = guard.as_ref().map(OwnedQueue::queue) else {
                return false;
            };
            let Ok(buffer) = items.dequeue() else {
                return false;
            };
            let Ok(request) = queue.retrieve_next_request() else {
                // No request (or the last one was just cancelled): the item stays first.
                let refused = items.enqueue_at_head(buffer).err();
                drop(guard);
                if let Some(error) = refused {
                    self.release(error.into_buffer());
                }
                return false;
            };
            (request, buffer)
        };
        let header = ItemHeader::read(buffer.context());
        let length = header.length.min(self.size_of_data_buffer);
        let item = DataBuffer {
            data: &buffer.data()[..length],
            status: header.status,
            timestamp: self.time_stamping.then_some(header.timestamp),
        };
        let parked = self.shared.leave(request, header.status);
        let delivered = match &self.on_data {
            Some(callback) => {
                callback(parked, &item);
                true
            }
            None => parked.complete_with_data(item.data, item.status).is_ok(),
        };
        if delivered {
            self.release(buffer);
        } else {
            // The request could not take it: the item waits for the next one, first in line.
            let refused = {
                let _pairing = self.queue.lock();
                items.enqueue_at_head(buffer).err()
            };
            if let Some(error) = refused {
                self.release(error.into_buffer());
            }
        }
        true
    }

    /// Takes the oldest parked request and hands it to `callback` with `status`.
    fn return_one(&self, status: NtStatus, callback: impl FnOnce(ParkedRequest)) -> bool {
        let Some(queue) = self.parking_queue() else {
            return false;
        };
        let Ok(request) = queue.retrieve_next_request() else {
            return false;
        };
        callback(self.shared.leave(request, status));
        true
    }

    /// Hands the oldest parked request, if any, to `callback` with `status`
    /// (`DMF_NotifyUserWithRequest_RequestReturn`); the callback populates and completes it
    /// (pass `drop` to complete it with `status` and no data). Data items are not touched.
    pub fn request_return(&self, status: NtStatus, callback: impl FnOnce(ParkedRequest)) {
        let _ = self.request_return_ex(status, callback);
    }

    /// As [`request_return`](Self::request_return) (`DMF_NotifyUserWithRequest_RequestReturnEx`):
    /// `Ok` if a request was handed to `callback`, `STATUS_UNSUCCESSFUL` if none was parked
    /// (`STATUS_INVALID_DEVICE_STATE` if the module is not open).
    pub fn request_return_ex(
        &self,
        status: NtStatus,
        callback: impl FnOnce(ParkedRequest),
    ) -> Result<(), NtStatus> {
        let _reference = self.core.reference()?;
        if self.return_one(status, callback) {
            Ok(())
        } else {
            Err(NtStatus::UNSUCCESSFUL)
        }
    }

    /// Hands every request parked when called to `callback` with `status`, oldest first
    /// (`DMF_NotifyUserWithRequest_RequestReturnAll`); returns how many. Requests parked while
    /// this runs may or may not be included. Data items are not touched.
    #[allow(
        clippy::must_use_candidate,
        reason = "completing the requests is the point; the count is extra"
    )]
    pub fn request_return_all(
        &self,
        status: NtStatus,
        mut callback: impl FnMut(ParkedRequest),
    ) -> usize {
        let Ok(_reference) = self.core.reference() else {
            return 0;
        };
        let parked = self.shared.held.load(Ordering::Acquire).max(1);
        let mut returned = 0;
        while returned < parked && self.return_one(status, &mut callback) {
            returned += 1;
        }
        returned
    }

    /// When `request` was parked (`DMF_NotifyUserWithRequest_RequestTimestampGet`): the
    /// performance counter then, or `None` without time stamping.
    #[must_use]
    pub fn request_timestamp_get(&self, request: &ParkedRequest) -> Option<i64> {
        request.timestamp().filter(|_| self.time_stamping)
    }

    /// When `data` arrived (`DMF_NotifyUserWithRequest_DataBufferTimestampGet`): the
    /// performance counter then, or `None` without time stamping.
    #[must_use]
    pub fn data_buffer_timestamp_get(&self, data: &DataBuffer<'_>) -> Option<i64> {
        data.timestamp().filter(|_| self.time_stamping)
    }

    /// Requests parked now.
    #[must_use]
    pub fn pending_request_count(&self) -> usize {
        self.shared.held.load(Ordering::Acquire)
    }

    /// Data items waiting for a request now.
    #[must_use]
    pub fn pending_data_count(&self) -> usize {
        self.data.as_ref().map_or(0, |items| items.count())
    }
}

impl ModuleNode for NotifyUserWithRequestNode {
    fn core(&self) -> &ModuleCore {
        &self.core
    }

    fn child_count(&self) -> usize {
        usize::from(self.data.is_some())
    }

    fn child(&self, index: usize) -> Option<&dyn ModuleNode> {
        match (index, &self.data) {
            (0, Some(items)) => Some(&**items as &dyn ModuleNode),
            _ => None,
        }
    }

    fn open(&self) -> Result<(), NtStatus> {
        let mut config = QueueConfig::new(DispatchType::Manual, false);
        config.power_managed = Some(false);
        let queue = create_owned_queue(
            self.device,
            &config,
            self.core.is_passive_level(),
            ParkingQueue(Arc::clone(&self.shared)),
        )?;
        self.shared.held.store(0, Ordering::Release);
        *self.queue.lock() = Some(queue);
        Ok(())
    }

    fn close(&self) {
        let queue = self.queue.lock().take();
        if let Some(queue) = queue {
            while let Ok(request) = queue.queue().retrieve_next_request() {
                drop(self.shared.leave(request, NtStatus::CANCELLED));
            }
            // Cancellations already under way finish before the queue goes.
            queue.queue().purge_synchronously();
            drop(queue);
        }
        if let Some(items) = &self.data {
            while let Ok(buffer) = items.dequeue() {
                self.release(buffer);
            }
        }
    }
}

impl core::fmt::Debug for NotifyUserWithRequestNode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NotifyUserWithRequest")
            .field("core", &self.core)
            .field("pending_requests", &self.pending_request_count())
            .field("pending_data", &self.pending_data_count())
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for NotifyUserWithRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (**self).fmt(f)
    }
}
