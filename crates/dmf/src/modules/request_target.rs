//! `RequestTarget`: send single requests to an I/O target, synchronously or asynchronously,
//! and get each asynchronous completion in a client callback.
//!
//! The client gives the module a target ([`RequestTargetNode::io_target_set`]); each send then
//! creates a request, copies the caller's input into a framework buffer, attaches an output
//! buffer of the requested length, formats it as a read, a write, an IOCTL or an internal
//! IOCTL, and sends it with an optional timeout. The completion callback sees the input bytes,
//! the output bytes the target returned, and the completion status.
//!
//! # Configuration
//!
//! None (as in DMF). [`RequestTarget::create`] takes the parent object (the device) that
//! owns the module's work item and the module attributes; with `passive_level` set, plain
//! [`send`](RequestTargetNode::send) completions run at `PASSIVE_LEVEL`.
//!
//! # Callbacks
//!
//! [`SendCompletion`]: called once per asynchronous send with a [`SendResult`]: for a read, the
//! output holds the bytes read; for a write, the input holds the bytes written; for an IOCTL the
//! input is the whole input buffer and the output the bytes returned. With
//! [`CompletionOption::Dispatch`] it runs in the completion routine, in the context that
//! completed the request and at its IRQL (`<= DISPATCH_LEVEL`): for a target that completes
//! inline (a local device's queue callback), in the sender's thread before `send` returns, so
//! do not hold a lock across `send` that the callback takes. With
//! [`CompletionOption::Passive`] it runs at `PASSIVE_LEVEL` on a work item.
//!
//! # Methods and IRQL
//!
//! | Method | IRQL | Returns |
//! |---|---|---|
//! | [`io_target_set`](RequestTargetNode::io_target_set) | `<= DISPATCH_LEVEL` | `INVALID_DEVICE_STATE` if a target is already set or the module is not open |
//! | [`io_target_clear`](RequestTargetNode::io_target_clear) | `<= DISPATCH_LEVEL` | — (requests in flight finish normally) |
//! | [`send`](RequestTargetNode::send) | `<= DISPATCH_LEVEL` | the send/format/allocation status |
//! | [`send_ex`](RequestTargetNode::send_ex) | `<= DISPATCH_LEVEL` | a [`DmfRequest`] token for [`cancel`](RequestTargetNode::cancel) |
//! | [`send_synchronously`](RequestTargetNode::send_synchronously) | `PASSIVE_LEVEL` | bytes transferred, or the request's status (`STATUS_IO_TIMEOUT` on timeout) |
//! | [`cancel`](RequestTargetNode::cancel) | `<= DISPATCH_LEVEL` | true only if the request was still out and cancellation started |
//!
//! Every method takes a module reference: on a module that is not open (or closing) sends fail
//! with `STATUS_INVALID_DEVICE_STATE` and `cancel` returns false. Sends without a target fail
//! with `STATUS_DEVICE_NOT_CONNECTED`. An asynchronous send holds a module reference until its
//! completion callback has returned, so close waits for it.
//!
//! # Example
//!
//! ```
//! # use std::sync::mpsc;
//! # use dmf::core::ModuleAttributes;
//! # use dmf::modules::request_target::{CompletionOption, RequestTarget, RequestType};
//! # use dmf::wdf::NtStatus;
//! # let session = wdk_sys::sim::Session::begin();
//! # let target_device = wdk_sys::sim::target::ProgrammableTarget::create("\\??\\RtDocExample");
//! # target_device.set_responder(|r| wdk_sys::sim::target::Response::data(&r.input));
//! # let device_object = dmf::wdf::Memory::create(1, dmf::wdf::PoolType::NonPaged, None).unwrap();
//! # let parent = device_object.handle().cast();
//! # fn open(name: &str) -> dmf::wdf::io_target::IoTarget { unimplemented!() }
//! let requests = RequestTarget::create(parent, ModuleAttributes::new())?;
//! # /*
//! requests.io_target_set(&target)?;
//! let (sender, receiver) = mpsc::channel();
//! let token = requests.send_ex(&[1, 2, 3], 8, RequestType::Ioctl, 0x22_2000, 1000,
//!     CompletionOption::Dispatch,
//!     Some(Box::new(move |result| sender.send((result.status, result.output.to_vec())).unwrap())))?;
//! assert_eq!(receiver.recv().unwrap(), (NtStatus::SUCCESS, vec![1, 2, 3]));
//! assert!(!requests.cancel(token)); // it already completed
//! # */
//! # drop(requests);
//! # drop(device_object);
//! # session.end();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Differences from DMF
//!
//! * The caller's buffers are copied (input) or returned in the callback (output) instead of
//!   being used in place, so nothing the caller owns must outlive the call.
//! * [`send_ex`](RequestTargetNode::send_ex) takes the completion option per call (the 2020
//!   interface); [`send`](RequestTargetNode::send) uses the module's passive-level option, as
//!   current DMF does for both.
//! * Tokens are opaque unique ids that only `cancel` accepts; a token whose request completed is
//!   never valid again (ids are never reused).
//! * A passive-level completion is never lost: room for it in the work queue is reserved when
//!   the request is sent (DMF drops it when its work-item queue is full, and close then hangs).
//!   The per-send record is freed on a failed send (DMF leaks it).
//! * Close cancels the asynchronous requests still out before waiting for them.
//! * A send without a target fails with `STATUS_DEVICE_NOT_CONNECTED` (DMF asserts).
//! * The reuse methods (`ReuseCreate`/`ReuseSend`/`ReuseDelete`) are not provided.

#[path = "request_target/single.rs"]
pub(crate) mod single;

use alloc::boxed::Box;
use alloc::sync::Arc;

use wdk_sys::WDFOBJECT;

use crate::core::{Module, ModuleAttributes, ModuleCore, ModuleNode, OpenOption};
use crate::error::ModuleError;
use crate::wdf::NtStatus;
use crate::wdf::io_target::IoTarget;
use single::SingleShared;

/// How a request is formatted (DMF's `ContinuousRequestTarget_RequestType`; the default is
/// `Ioctl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestType {
    /// `IRP_MJ_INTERNAL_DEVICE_CONTROL` with the given IOCTL (kernel targets only).
    InternalIoctl,
    /// `IRP_MJ_DEVICE_CONTROL` with the given IOCTL.
    #[default]
    Ioctl,
    /// `IRP_MJ_READ` into the output buffer.
    Read,
    /// `IRP_MJ_WRITE` from the input buffer.
    Write,
}

/// At which level an asynchronous completion callback runs
/// (DMF's `ContinuousRequestTarget_CompletionOptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompletionOption {
    /// In the completion routine, at the completing context's IRQL (`<= DISPATCH_LEVEL`;
    /// DMF's `Default`/`Dispatch`).
    #[default]
    Dispatch,
    /// On a work item, at `PASSIVE_LEVEL`.
    Passive,
}

/// An opaque token for one asynchronous request (DMF's `RequestTarget_DmfRequest`): only
/// `cancel` accepts it. Ids are unique for the life of the driver and never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DmfRequest(pub(crate) u64);

/// What an asynchronous completion callback sees.
#[derive(Debug)]
pub struct SendResult<'a> {
    /// Input bytes: the bytes written (write) or the whole input buffer (IOCTL); empty for reads.
    pub input: &'a [u8],
    /// Output bytes the target returned (read, IOCTL); empty for writes.
    pub output: &'a [u8],
    /// The completion status (`STATUS_CANCELLED` when cancelled, `STATUS_IO_TIMEOUT` on timeout).
    pub status: NtStatus,
    /// Bytes transferred as reported by the target.
    pub information: usize,
}

/// The client's completion callback of one asynchronous send
/// (DMF's `EVT_DMF_RequestTarget_SendCompletion`; the client context is what it captures).
pub type SendCompletion = Box<dyn FnOnce(&SendResult<'_>) + Send>;

/// The module object of a [`RequestTarget`].
pub struct RequestTargetNode {
    core: ModuleCore,
    single: Arc<SingleShared>,
}

/// A `RequestTarget` module (see the [module documentation](self)).
pub struct RequestTarget(Module<RequestTargetNode>);

impl AsRef<Module<RequestTargetNode>> for RequestTarget {
    fn as_ref(&self) -> &Module<RequestTargetNode> {
        &self.0
    }
}

impl core::ops::Deref for RequestTarget {
    type Target = RequestTargetNode;

    fn deref(&self) -> &RequestTargetNode {
        &self.0
    }
}

impl RequestTarget {
    /// Creates the module; `parent` (the device) owns its work item. A dynamic module (the
    /// default attributes) is open when this returns.
    pub fn create(parent: WDFOBJECT, attributes: ModuleAttributes) -> Result<Self, ModuleError> {
        let core = ModuleCore::new("RequestTarget", OpenOption::OpenCreate, true, attributes)?;
        let single = SingleShared::new(core.reference_source(), parent)?;
        Ok(Self(Module::new(RequestTargetNode { core, single })?))
    }
}

impl RequestTargetNode {
    fn default_option(&self) -> CompletionOption {
        if self.core.is_passive_level() {
            CompletionOption::Passive
        } else {
            CompletionOption::Dispatch
        }
    }

    /// Sets the target requests go to (`DMF_RequestTarget_IoTargetSet`). The caller keeps
    /// owning it and must clear it before deleting it.
    pub fn io_target_set(&self, target: &IoTarget) -> Result<(), NtStatus> {
        let _reference = self.core.reference()?;
        self.single.set_target(target)
    }

    /// Forgets the target (`DMF_RequestTarget_IoTargetClear`); requests in flight complete
    /// normally, new sends fail with `STATUS_DEVICE_NOT_CONNECTED`.
    pub fn io_target_clear(&self) {
        self.single.clear_target();
    }

    /// Sends `input` (copied) with an output buffer of `output_length` bytes, asynchronously
    /// (`DMF_RequestTarget_Send`). `timeout_ms` 0 means no timeout. The callback runs at the
    /// module's level (passive if the module has the passive-level option).
    #[allow(clippy::too_many_arguments, reason = "DMF's Send parameters")]
    pub fn send(
        &self,
        input: &[u8],
        output_length: usize,
        request_type: RequestType,
        ioctl: u32,
        timeout_ms: u32,
        callback: Option<SendCompletion>,
    ) -> Result<(), NtStatus> {
        self.single
            .send(
                input,
                output_length,
                request_type,
                ioctl,
                timeout_ms,
                self.default_option(),
                callback,
            )
            .map(|_| ())
    }

    /// As [`send`](Self::send), with the completion level chosen per call, returning a token
    /// that [`cancel`](Self::cancel) accepts (`DMF_RequestTarget_SendEx`).
    #[allow(clippy::too_many_arguments, reason = "DMF's SendEx parameters")]
    pub fn send_ex(
        &self,
        input: &[u8],
        output_length: usize,
        request_type: RequestType,
        ioctl: u32,
        timeout_ms: u32,
        completion_option: CompletionOption,
        callback: Option<SendCompletion>,
    ) -> Result<DmfRequest, NtStatus> {
        self.single.send(
            input,
            output_length,
            request_type,
            ioctl,
            timeout_ms,
            completion_option,
            callback,
        )
    }

    /// Sends and waits (`DMF_RequestTarget_SendSynchronously`, `PASSIVE_LEVEL`): returns the
    /// bytes transferred (output copied into `output`), or the request's failure status.
    pub fn send_synchronously(
        &self,
        input: &[u8],
        output: &mut [u8],
        request_type: RequestType,
        ioctl: u32,
        timeout_ms: u32,
    ) -> Result<usize, NtStatus> {
        self.single
            .send_synchronously(input, output, request_type, ioctl, timeout_ms)
    }

    /// Cancels the request of `token` (`DMF_RequestTarget_Cancel`): true if it was still out and
    /// cancellation started; false if it completed already or the module is not open.
    pub fn cancel(&self, token: DmfRequest) -> bool {
        self.single.cancel(token)
    }

    /// Asynchronous requests sent and not completed yet.
    #[must_use]
    pub fn pending_requests(&self) -> usize {
        self.single.pending()
    }
}

impl ModuleNode for RequestTargetNode {
    fn core(&self) -> &ModuleCore {
        &self.core
    }

    fn open(&self) -> Result<(), NtStatus> {
        self.single.open()
    }

    fn before_close(&self) {
        self.single.cancel_all();
    }

    fn close(&self) {
        self.single.close();
    }
}

impl core::fmt::Debug for RequestTargetNode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RequestTarget")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for RequestTarget {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (**self).fmt(f)
    }
}
