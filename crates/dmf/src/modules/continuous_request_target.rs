//! `ContinuousRequestTarget`: keep a fixed number of requests permanently in flight
//! ("streaming") to an I/O target, each re-armed on completion with fresh buffers, and hand the
//! data they bring back to the client. Also sends single requests to the same target.
//!
//! At open the module creates `continuous_request_count` requests and two buffer pools (input
//! and output). [`start`](ContinuousRequestTargetNode::start) sends every request: each gets an
//! input buffer (filled by the input callback) and an output buffer. When one completes, the
//! output callback sees the data and the status and returns a [`BufferDisposition`]: who owns
//! the output buffer now, and whether that request goes on streaming. A request that goes on is
//! sent again at once with fresh buffers; one that stops leaves the others alone.
//!
//! # Configuration ([`ContinuousRequestTargetConfig`])
//!
//! | Field | Meaning |
//! |---|---|
//! | `continuous_request_count` | requests created at open and streamed (0: no streaming) |
//! | `buffer_count_input` / `buffer_count_output` | buffers preallocated in each pool |
//! | `buffer_input_size` / `buffer_output_size` | bytes per buffer; 0 means no such buffer is attached |
//! | `buffer_context_input_size` / `buffer_context_output_size` | client context bytes per buffer |
//! | `request_type`, `ioctl` | how streaming requests are formatted ([`RequestType`]) and their IOCTL |
//! | `enable_look_aside_output` | the output pool grows on demand (the input pool never does) |
//! | `pool_type_input` / `pool_type_output` | paged pool requires the module's passive-level option |
//! | `buffer_input` | fills each input buffer before it is sent; required when `buffer_input_size > 0` |
//! | `buffer_output` | receives each completed output buffer; without it success continues and failure stops |
//! | `purge_and_start_target_in_d0_callbacks` | stop streaming and purge the target in `D0Exit`, restart both in `D0Entry` (the module must then be static) |
//! | `mode` | [`Mode::Automatic`]: streaming starts on `io_target_set` and stops on `io_target_clear`; [`Mode::Manual`]: the client calls `start`/`stop` |
//!
//! # Callbacks (IRQL)
//!
//! With the default (dispatch-level) module both callbacks run at `IRQL <= DISPATCH_LEVEL`,
//! wherever the stream is at that moment: the input callback where the request is sent, the
//! output callback where its completion is processed. That is the completion routine, in the
//! context that completed the request and at its IRQL (KMDF raises nothing: a DPC at
//! `DISPATCH_LEVEL`, a passive thread at `PASSIVE_LEVEL`); or a sending loop of this module
//! (the caller of `start`, or an earlier completion routine), for a completion that arrived
//! while one of its sends was in progress; or the module's work item at `PASSIVE_LEVEL` when a
//! loop handed over (see below). With the passive-level option both run at `PASSIVE_LEVEL`: a
//! completion that arrives above it is processed on the work item (and `start` must be called
//! at `PASSIVE_LEVEL`). Single send completions run as chosen per call ([`CompletionOption`]).
//! Do not hold a lock around `start`, `stop` or `io_target_set` that the output callback
//! takes: with a target that completes inline, the callback runs inside them.
//!
//! # Targets that complete inline
//!
//! In KMDF a request sent to a local device's queue is presented in the sender's thread, and
//! a queue callback that completes it at once runs the completion routine before
//! `WdfRequestSend` returns (a sequential queue may also complete, there, another request it
//! was holding). A resend from inside that completion routine would nest one level deeper per
//! request until the kernel stack overflows. This module never processes a completion inside
//! one of its sends: such a completion only records itself, and the sending code, once its
//! send returned, processes it and sends again, in a loop. Completion routines of the module
//! nest at most two deep on a thread (one running a loop, the inline one inside its send). A
//! loop processes at most a few dozen completions, then hands the rest to the module's work
//! item, which goes on the same way and re-queues itself, so a target that always completes
//! inline holds neither the caller of `start` nor a DPC for ever.
//!
//! # Methods and IRQL
//!
//! | Method | IRQL | Notes |
//! |---|---|---|
//! | [`buffer_put`](ContinuousRequestTargetNode::buffer_put) | `<= DISPATCH_LEVEL` | returns a client-owned output buffer; a foreign one is refused and handed back |
//! | [`io_target_set`](ContinuousRequestTargetNode::io_target_set) | `<= DISPATCH_LEVEL` (Manual) | Automatic: also starts streaming |
//! | [`io_target_clear`](ContinuousRequestTargetNode::io_target_clear) | `PASSIVE_LEVEL` (Automatic), `<= DISPATCH_LEVEL` (Manual) | Automatic: stops streaming and waits first |
//! | [`send`](ContinuousRequestTargetNode::send) / [`send_ex`](ContinuousRequestTargetNode::send_ex) | `<= DISPATCH_LEVEL` | single asynchronous request; `send_ex` returns a [`DmfRequest`] token |
//! | [`cancel`](ContinuousRequestTargetNode::cancel) | `<= DISPATCH_LEVEL` | true only if the request was still out |
//! | [`send_synchronously`](ContinuousRequestTargetNode::send_synchronously) | `PASSIVE_LEVEL` | bytes transferred |
//! | [`start`](ContinuousRequestTargetNode::start) | `<= DISPATCH_LEVEL` | sends every idle streaming request |
//! | [`stop`](ContinuousRequestTargetNode::stop) | `<= DISPATCH_LEVEL` | marks streaming stopped and cancels what is in flight; does not wait |
//! | [`stop_and_wait`](ContinuousRequestTargetNode::stop_and_wait) | `PASSIVE_LEVEL` | returns when every streaming request is back; no output callback runs afterwards |
//!
//! Every method takes a module reference (`STATUS_INVALID_DEVICE_STATE` when the module is not
//! open). Sends without a target fail with `STATUS_DEVICE_NOT_CONNECTED`. Each streaming send
//! holds a module reference until its completion has been processed. Nothing is allocated per
//! streamed request: requests, buffers and their bookkeeping are created at open.
//!
//! # Example
//!
//! ```
//! # let session = wdk_sys::sim::Session::begin();
//! # let device_object = dmf::wdf::Memory::create(1, dmf::wdf::PoolType::NonPaged, None).unwrap();
//! # let parent = device_object.handle().cast();
//! use dmf::core::ModuleAttributes;
//! use dmf::modules::continuous_request_target::{
//!     BufferDisposition, ContinuousRequestTarget, ContinuousRequestTargetConfig, Mode,
//! };
//! use dmf::modules::request_target::RequestType;
//!
//! let config = ContinuousRequestTargetConfig {
//!     continuous_request_count: 4,
//!     buffer_count_output: 8,
//!     buffer_output_size: 16,
//!     request_type: RequestType::Ioctl,
//!     ioctl: 0x22_2000,
//!     mode: Mode::Automatic,
//!     buffer_output: Some(Box::new(|output, status| {
//!         if let Some(buffer) = output.as_ref() {
//!             let _sample = buffer.data(); // the bytes the target returned
//!         }
//!         if status.is_success() {
//!             BufferDisposition::ContinuousRequestTargetAndContinueStreaming
//!         } else {
//!             BufferDisposition::ContinuousRequestTargetAndStopStreaming
//!         }
//!     })),
//!     ..ContinuousRequestTargetConfig::default()
//! };
//! let streamer = ContinuousRequestTarget::create(parent, config, ModuleAttributes::new())?;
//! // streamer.io_target_set(&target)?;  // Automatic: streaming starts here
//! // ...
//! // streamer.io_target_clear();         // stops streaming, waits, forgets the target
//! # drop(streamer);
//! # drop(device_object);
//! # session.end();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Differences from DMF
//!
//! * Automatic mode starts streaming on `io_target_set` and stops it (waiting) on
//!   `io_target_clear`, as the module's documentation says (DMF's code leaves that to the
//!   device-interface wrappers).
//! * `D0Entry` restarts the purged target *before* resending (DMF resends first, into a purged
//!   target, so streaming silently stays off). `D0Exit` stops streaming only if it was on, and
//!   `D0Entry` restarts it only then.
//! * The output callback gets the buffer as an owned [`OutputBuffer`] in an `Option`: taking it
//!   is what keeps it; a buffer the client keeps goes back to its pool when it is dropped or
//!   given to `buffer_put`, and one from another module is refused with [`BufferPutError`]
//!   (DMF corrupts its pool). The disposition then only says whether the request streams on.
//! * `stop` (non-waiting) and `send_ex` with a per-call completion option are kept from the
//!   2020 interface, with `cancel` taking id-based tokens (never reused) as current DMF does.
//! * `start` on a module already streaming sends only the requests that are idle, and a `start`
//!   racing with a `stop` from another thread is safe: every request completes exactly once and
//!   every buffer returns to its pool.
//! * A resend without a target ends that stream (DMF crashes on a NULL target); sends without a
//!   target fail with `STATUS_DEVICE_NOT_CONNECTED`.
//! * Close stops streaming and cancels single requests still out before waiting for them (DMF
//!   waits forever if the client forgot `StopAndWait`).
//! * The input callback returns how many bytes to send; 0 or the full size sends the whole
//!   buffer (DMF always attaches the whole buffer).
//! * `CancelAndResendRequestInD0Callbacks` and the reuse methods of current DMF are not
//!   provided; passive-level stream completions never get lost (their queue is preallocated).
//! * A target that completes inline does not make the stream recurse (see above); DMF resends
//!   from its completion routine, one stack level deeper per request.
//! * A resend reuses the input and output buffers of its request's last send (zeroed, as the
//!   pool zeroes a returned buffer) instead of putting them back and getting new ones; an output
//!   buffer the client took is replaced from the pool. What the client and the target see is
//!   the same; the pools' locks are not taken per request. `output_buffers_free` and
//!   `input_buffers_free` count the buffers of streaming requests as in use.
//! * `buffer_put` on a module that is not open is refused with `STATUS_INVALID_DEVICE_STATE`
//!   (its module reference fails), handing the buffer back: dropped, it returns to its pool, or
//!   is freed once that pool is closed; it is never lost.
//! * Close, and dropping the module, return only when no completion routine of the module is
//!   still running: every framework object the module owns is deleted by then, never later on
//!   a completion's thread.

#[path = "continuous_request_target/stream.rs"]
mod stream;

use alloc::boxed::Box;
use alloc::sync::Arc;

use wdk_sys::WDFOBJECT;

use super::buffer_pool::{BufferPool, BufferPoolConfig, PoolBuffer, SourceSettings};
use super::request_target::single::SingleShared;
pub use super::request_target::{
    CompletionOption, DmfRequest, RequestType, SendCompletion, SendResult,
};
use crate::core::{Module, ModuleAttributes, ModuleCore, ModuleNode, OpenOption, PowerState};
use crate::error::{ConfigError, ModuleError};
use crate::wdf::io_target::IoTarget;
use crate::wdf::{NtStatus, PoolType};
use stream::{StreamSettings, StreamShared};

/// When streaming starts and stops (DMF's `ContinuousRequestTarget_ModeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The client calls `start` and `stop`/`stop_and_wait`.
    #[default]
    Manual,
    /// `io_target_set` starts streaming; `io_target_clear` stops it.
    Automatic,
}

/// What happens after the output callback returned
/// (DMF's `ContinuousRequestTarget_BufferDisposition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferDisposition {
    /// The module keeps the buffer; the request is sent again.
    ContinuousRequestTargetAndContinueStreaming,
    /// The module keeps the buffer; this request stops streaming (the others go on).
    ContinuousRequestTargetAndStopStreaming,
    /// The client took the buffer; the request is sent again.
    ClientAndContinueStreaming,
    /// The client took the buffer; this request stops streaming.
    ClientAndStopStreaming,
}

impl BufferDisposition {
    /// Whether the request goes on streaming.
    #[must_use]
    pub const fn continues_streaming(self) -> bool {
        matches!(
            self,
            Self::ContinuousRequestTargetAndContinueStreaming | Self::ClientAndContinueStreaming
        )
    }
}

/// An output buffer handed to the client: the data the target returned, the whole buffer and
/// its context. Goes back to its pool when dropped or given to `buffer_put`.
pub struct OutputBuffer {
    buffer: PoolBuffer,
    valid: usize,
}

impl OutputBuffer {
    fn new(buffer: PoolBuffer, information: usize) -> Self {
        let valid = information.min(buffer.len());
        Self { buffer, valid }
    }

    /// The pool buffer back (the module keeps one the client left for the resend).
    fn into_buffer(self) -> PoolBuffer {
        self.buffer
    }

    /// The bytes the target returned.
    #[must_use]
    pub fn data(&self) -> &[u8] {
        &self.buffer.data()[..self.valid]
    }

    /// The whole buffer (`buffer_output_size` bytes), writable.
    #[must_use]
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        self.buffer.data_mut()
    }

    /// The buffer's client context.
    #[must_use]
    pub fn context(&self) -> &[u8] {
        self.buffer.context()
    }

    /// The buffer's client context, writable.
    #[must_use]
    pub fn context_mut(&mut self) -> &mut [u8] {
        self.buffer.context_mut()
    }
}

impl core::fmt::Debug for OutputBuffer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OutputBuffer")
            .field("valid", &self.valid)
            .finish_non_exhaustive()
    }
}

/// A buffer `buffer_put` refused, handed back: it comes from another module, or this module
/// is not open. Dropping it returns it to its own pool (or frees it, if that pool is closed).
#[derive(Debug)]
pub struct BufferPutError {
    /// The buffer, still the caller's.
    pub buffer: OutputBuffer,
    status: NtStatus,
}

impl BufferPutError {
    /// `STATUS_INVALID_PARAMETER` for a buffer of another module, `STATUS_INVALID_DEVICE_STATE`
    /// when this module is not open.
    #[must_use]
    pub const fn status(&self) -> NtStatus {
        self.status
    }
}

impl core::fmt::Display for BufferPutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.status == NtStatus::INVALID_DEVICE_STATE {
            f.write_str("the module is not open")
        } else {
            f.write_str("the buffer does not belong to this module's output pool")
        }
    }
}

impl core::error::Error for BufferPutError {}

/// Fills an input buffer before it is sent: `(data, context) -> bytes to send`
/// (DMF's `EVT_DMF_ContinuousRequestTarget_BufferInput`).
pub type BufferInputCallback = Box<dyn Fn(&mut [u8], &mut [u8]) -> usize + Send + Sync>;

/// Receives a completed output buffer and the completion status; `take()` the buffer to keep
/// it (DMF's `EVT_DMF_ContinuousRequestTarget_BufferOutput`).
pub type BufferOutputCallback =
    Box<dyn Fn(&mut Option<OutputBuffer>, NtStatus) -> BufferDisposition + Send + Sync>;

/// Configuration of a [`ContinuousRequestTarget`] (DMF's `DMF_CONFIG_ContinuousRequestTarget`).
#[derive(Default)]
pub struct ContinuousRequestTargetConfig {
    /// Requests streamed at once.
    pub continuous_request_count: usize,
    /// Input buffers preallocated.
    pub buffer_count_input: usize,
    /// Output buffers preallocated.
    pub buffer_count_output: usize,
    /// How streaming requests are formatted.
    pub request_type: RequestType,
    /// Bytes per input buffer (0: no input buffer).
    pub buffer_input_size: usize,
    /// Client context bytes per input buffer.
    pub buffer_context_input_size: usize,
    /// Bytes per output buffer (0: no output buffer).
    pub buffer_output_size: usize,
    /// Client context bytes per output buffer.
    pub buffer_context_output_size: usize,
    /// Let the output pool grow on demand.
    pub enable_look_aside_output: bool,
    /// Pool of the input buffers.
    pub pool_type_input: PoolType,
    /// Pool of the output buffers.
    pub pool_type_output: PoolType,
    /// Fills input buffers.
    pub buffer_input: Option<BufferInputCallback>,
    /// Receives output buffers.
    pub buffer_output: Option<BufferOutputCallback>,
    /// IOCTL of streaming requests (IOCTL request types).
    pub ioctl: u32,
    /// Stop streaming and purge the target in `D0Exit`; restart both in `D0Entry`.
    pub purge_and_start_target_in_d0_callbacks: bool,
    /// Automatic or manual streaming.
    pub mode: Mode,
}

impl core::fmt::Debug for ContinuousRequestTargetConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ContinuousRequestTargetConfig")
            .field("continuous_request_count", &self.continuous_request_count)
            .field("request_type", &self.request_type)
            .field("buffer_input_size", &self.buffer_input_size)
            .field("buffer_output_size", &self.buffer_output_size)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl ContinuousRequestTargetConfig {
    /// Checks the rules DMF asserts; `passive_level` is the module option.
    pub fn validate(&self, passive_level: bool) -> Result<(), ConfigError> {
        if (self.buffer_input_size > 0 && self.pool_type_input.is_paged()
            || self.buffer_output_size > 0 && self.pool_type_output.is_paged())
            && !passive_level
        {
            return Err(ConfigError::PagedPoolRequiresPassiveLevel);
        }
        if self.buffer_input_size > 0 && self.buffer_input.is_none() {
            return Err(ConfigError::InputCallbackRequired);
        }
        if self.buffer_input_size == 0 && self.buffer_count_input > 0
            || self.buffer_output_size == 0 && self.buffer_count_output > 0
        {
            return Err(ConfigError::ZeroBufferSize);
        }
        if self.buffer_input_size > 0 && self.buffer_count_input == 0
            || self.buffer_output_size > 0
                && self.buffer_count_output == 0
                && !self.enable_look_aside_output
        {
            return Err(ConfigError::NoBuffers);
        }
        let needs = match self.request_type {
            RequestType::Read => self.buffer_output_size == 0,
            RequestType::Write => self.buffer_input_size == 0,
            RequestType::Ioctl | RequestType::InternalIoctl => false,
        };
        if needs && self.continuous_request_count > 0 {
            return Err(ConfigError::BufferRequiredForRequestType);
        }
        Ok(())
    }
}

/// The module object of a [`ContinuousRequestTarget`].
pub struct ContinuousRequestTargetNode {
    core: ModuleCore,
    mode: Mode,
    d0_callbacks: bool,
    single: Arc<SingleShared>,
    stream: Arc<StreamShared>,
}

/// A `ContinuousRequestTarget` module (see the [module documentation](self)).
pub struct ContinuousRequestTarget(Module<ContinuousRequestTargetNode>);

impl AsRef<Module<ContinuousRequestTargetNode>> for ContinuousRequestTarget {
    fn as_ref(&self) -> &Module<ContinuousRequestTargetNode> {
        &self.0
    }
}

impl core::ops::Deref for ContinuousRequestTarget {
    type Target = ContinuousRequestTargetNode;

    fn deref(&self) -> &ContinuousRequestTargetNode {
        &self.0
    }
}

fn pool(
    parent: WDFOBJECT,
    count: usize,
    size: usize,
    context: usize,
    look_aside: bool,
    pool_type: PoolType,
    name: &'static str,
) -> Result<Option<BufferPool>, ModuleError> {
    if size == 0 {
        return Ok(None);
    }
    let settings = SourceSettings {
        buffer_count: count,
        buffer_size: size,
        buffer_context_size: context,
        enable_look_aside: look_aside,
        create_with_timer: false,
        pool_type,
    };
    Ok(Some(BufferPool::create(
        parent,
        BufferPoolConfig::source(settings),
        ModuleAttributes::child_of(pool_type.is_paged(), name),
    )?))
}

impl ContinuousRequestTarget {
    /// Creates the module; `parent` (the device) owns its requests and work items. A dynamic
    /// module (the default attributes) is open when this returns; with
    /// `purge_and_start_target_in_d0_callbacks` it must be static. Invalid configurations fail
    /// with a typed error before anything is allocated.
    pub fn create(
        parent: WDFOBJECT,
        mut config: ContinuousRequestTargetConfig,
        attributes: ModuleAttributes,
    ) -> Result<Self, ModuleError> {
        let passive = attributes.passive_level;
        config.validate(passive)?;
        let core = ModuleCore::new(
            "ContinuousRequestTarget",
            OpenOption::OpenCreate,
            true,
            attributes,
        )?;
        let input_pool = pool(
            parent,
            config.buffer_count_input,
            config.buffer_input_size,
            config.buffer_context_input_size,
            false,
            config.pool_type_input,
            "BufferPoolInput",
        )?;
        let output_pool = pool(
            parent,
            config.buffer_count_output,
            config.buffer_output_size,
            config.buffer_context_output_size,
            config.enable_look_aside_output,
            config.pool_type_output,
            "BufferPoolOutput",
        )?;
        let single = SingleShared::new(core.reference_source(), parent)?;
        let stream = StreamShared::new(
            core.reference_source(),
            parent,
            StreamSettings {
                count: config.continuous_request_count,
                request_type: config.request_type,
                ioctl: config.ioctl,
                passive,
                input_pool,
                output_pool,
                input_callback: config.buffer_input.take(),
                output_callback: config.buffer_output.take(),
            },
        )?;
        Ok(Self(Module::new(ContinuousRequestTargetNode {
            core,
            mode: config.mode,
            d0_callbacks: config.purge_and_start_target_in_d0_callbacks,
            single,
            stream,
        })?))
    }
}

impl ContinuousRequestTargetNode {
    /// Returns a client-owned output buffer to the output pool
    /// (`DMF_ContinuousRequestTarget_BufferPut`). A buffer from another module is refused and
    /// handed back. (Dropping the buffer returns it too.)
    ///
    /// On a module that is not open (the module reference fails) the buffer is refused too
    /// (`STATUS_INVALID_DEVICE_STATE`); dropping it returns it to its pool, or frees it once
    /// the pool is closed: it is never lost.
    pub fn buffer_put(&self, buffer: OutputBuffer) -> Result<(), BufferPutError> {
        let Ok(_reference) = self.core.reference() else {
            return Err(BufferPutError {
                buffer,
                status: NtStatus::INVALID_DEVICE_STATE,
            });
        };
        let ours = self
            .stream
            .output_pool
            .as_ref()
            .is_some_and(|pool| buffer.buffer.belongs_to(pool));
        if !ours {
            return Err(BufferPutError {
                buffer,
                status: NtStatus::INVALID_PARAMETER,
            });
        }
        drop(buffer);
        Ok(())
    }

    /// Sets the target (`DMF_ContinuousRequestTarget_IoTargetSet`); the caller keeps owning it
    /// and must clear it before deleting it. In Automatic mode streaming starts; if it cannot,
    /// the target is cleared again and the error returned. `INVALID_DEVICE_STATE` if a target
    /// is set already or the module is not open.
    pub fn io_target_set(&self, target: &IoTarget) -> Result<(), NtStatus> {
        let _reference = self.core.reference()?;
        self.single.set_target(target)?;
        self.stream.set_target(Some(target));
        if self.mode == Mode::Automatic
            && let Err(status) = self.stream.start()
        {
            self.stream.stop();
            self.stream.set_target(None);
            self.single.clear_target();
            return Err(status);
        }
        Ok(())
    }

    /// Forgets the target (`DMF_ContinuousRequestTarget_IoTargetClear`). In Automatic mode
    /// streaming is stopped and waited for first (`PASSIVE_LEVEL`). In Manual mode streams
    /// still running end at their next completion.
    pub fn io_target_clear(&self) {
        let Ok(_reference) = self.core.reference() else {
            return;
        };
        if self.mode == Mode::Automatic {
            self.stream.stop_and_wait();
        }
        self.stream.set_target(None);
        self.single.clear_target();
    }

    /// Starts streaming (`DMF_ContinuousRequestTarget_Start`): sends every idle streaming
    /// request. `STATUS_DEVICE_NOT_CONNECTED` without a target; a send failure stops streaming
    /// and is returned (`STATUS_CANCELLED` when a concurrent `stop` interrupted the start).
    pub fn start(&self) -> Result<(), NtStatus> {
        let _reference = self.core.reference()?;
        self.stream.start()
    }

    /// Stops streaming without waiting (`DMF_ContinuousRequestTarget_Stop`): no request is
    /// resent and those in flight are cancelled.
    pub fn stop(&self) {
        let Ok(_reference) = self.core.reference() else {
            return;
        };
        self.stream.stop();
    }

    /// Stops streaming and waits until every streaming request is back
    /// (`DMF_ContinuousRequestTarget_StopAndWait`, `PASSIVE_LEVEL`). No output callback of
    /// those requests runs after it returns.
    pub fn stop_and_wait(&self) {
        let Ok(_reference) = self.core.reference() else {
            return;
        };
        self.stream.stop_and_wait();
    }

    /// Single asynchronous request (`DMF_ContinuousRequestTarget_Send`); see
    /// [`RequestTargetNode::send`](super::request_target::RequestTargetNode::send).
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
        let option = if self.core.is_passive_level() {
            CompletionOption::Passive
        } else {
            CompletionOption::Dispatch
        };
        self.single
            .send(
                input,
                output_length,
                request_type,
                ioctl,
                timeout_ms,
                option,
                callback,
            )
            .map(|_| ())
    }

    /// Single asynchronous request with a per-call completion level, returning its cancel
    /// token (`DMF_ContinuousRequestTarget_SendEx`).
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

    /// Cancels a request sent with `send_ex` (`DMF_ContinuousRequestTarget_Cancel`): true only
    /// if it was still out and cancellation started.
    pub fn cancel(&self, token: DmfRequest) -> bool {
        self.single.cancel(token)
    }

    /// Single synchronous request (`DMF_ContinuousRequestTarget_SendSynchronously`,
    /// `PASSIVE_LEVEL`): bytes transferred, output copied into `output`.
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

    /// Whether any streaming request is live.
    #[must_use]
    pub fn is_streaming(&self) -> bool {
        self.stream.is_streaming()
    }

    /// Streaming requests currently live.
    #[must_use]
    pub fn live_streams(&self) -> usize {
        self.stream.live_streams()
    }

    /// Module references currently held (each streaming or single send holds one).
    #[must_use]
    pub fn core_references(&self) -> u32 {
        self.core.references_held()
    }

    /// Buffers in the output pool now (`None` without output buffers).
    #[must_use]
    pub fn output_buffers_free(&self) -> Option<usize> {
        self.stream.output_pool.as_ref().map(|pool| pool.count())
    }

    /// Buffers in the input pool now (`None` without input buffers).
    #[must_use]
    pub fn input_buffers_free(&self) -> Option<usize> {
        self.stream.input_pool.as_ref().map(|pool| pool.count())
    }
}

impl ModuleNode for ContinuousRequestTargetNode {
    fn core(&self) -> &ModuleCore {
        &self.core
    }

    fn child_count(&self) -> usize {
        2
    }

    fn child(&self, index: usize) -> Option<&dyn ModuleNode> {
        let pool = match index {
            0 => self.stream.input_pool.as_ref(),
            1 => self.stream.output_pool.as_ref(),
            _ => None,
        }?;
        Some(pool.node())
    }

    fn has_pnp_callbacks(&self) -> bool {
        self.d0_callbacks
    }

    fn open(&self) -> Result<(), NtStatus> {
        self.single.open()?;
        if let Err(status) = self.stream.open() {
            self.single.close();
            return Err(status);
        }
        Ok(())
    }

    fn before_close(&self) {
        self.stream.stop();
        self.single.cancel_all();
    }

    fn close(&self) {
        self.stream.close();
        self.single.close();
    }

    fn d0_entry(&self, _previous: PowerState) -> Result<(), NtStatus> {
        if self.d0_callbacks {
            self.stream.d0_entry()?;
        }
        Ok(())
    }

    fn d0_exit(&self, _target: PowerState) {
        if self.d0_callbacks {
            self.stream.d0_exit();
        }
    }
}

impl core::fmt::Debug for ContinuousRequestTargetNode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ContinuousRequestTarget")
            .field("core", &self.core)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for ContinuousRequestTarget {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (**self).fmt(f)
    }
}
