//! `ThreadedBufferQueue`: serialize work onto one dedicated thread.
//!
//! Callers [`fetch`](ThreadedBufferQueueNode::fetch) an empty buffer, fill it and
//! [`enqueue`](ThreadedBufferQueueNode::enqueue) it; the module's thread takes the queued buffers
//! one at a time, in order, and calls the client's work callback with each. A caller that needs
//! the result uses [`enqueue_and_wait`](ThreadedBufferQueueNode::enqueue_and_wait), which blocks
//! until the work callback (or a later [`work_completed`](ThreadedBufferQueueNode::work_completed))
//! has set the status. The work callback may also keep a buffer ("work pending") and finish it
//! later, from any thread.
//!
//! The module owns a [`BufferQueue`](super::buffer_queue) child (free buffers in its producer,
//! queued work in its consumer) and a [`Thread`](super::thread) child in DMF control. It is
//! created with its thread idle: nothing is processed until [`start`](ThreadedBufferQueueNode::start).
//! Work enqueued before that stays queued and is processed right after the start.
//!
//! # Configuration ([`ThreadedBufferQueueConfig`])
//!
//! | Field | Meaning |
//! |---|---|
//! | `buffer_queue` | the inner queue's [`BufferQueueConfig`]: `source_settings.buffer_count` buffers of `buffer_size` data bytes and `buffer_context_size` client context bytes (the module adds its own 8 bytes of context, invisible to the client); look-aside and pool type as in `BufferPool`. Its callbacks must be left `None` (the module installs its own) |
//! | `pre` | optional; runs on the module's thread after each `start`, before any work |
//! | `work` | required; runs on the module's thread for each queued buffer ([`WorkCallback`]) |
//! | `post` | optional; runs on the module's thread when the loop stops (`stop` or close) |
//! | `on_reuse_cleanup` | optional; sees (data, client context) each time a buffer goes back to the free list: after its work completed, on `reuse`, `flush`, close, or when a fetched buffer is dropped |
//!
//! Invalid configurations are a [`ConfigError`] from `create`, before anything is allocated:
//! the `BufferPool` rules on the source settings (zero buffer size, no buffers, paged pool
//! without the passive-level option) and [`ConfigError::BufferQueueCallbackSet`].
//!
//! # Callbacks and IRQL
//!
//! | Callback | Runs | IRQL |
//! |---|---|---|
//! | `pre`, `post` | on the module's thread, with its [`ThreadContext`] | `PASSIVE_LEVEL` |
//! | `work` | on the module's thread, one buffer at a time, with a [`Work`] view of the buffer; returns a [`BufferDisposition`] | `PASSIVE_LEVEL` |
//! | `on_reuse_cleanup` | where the buffer is returned (the module's thread, or the caller of `reuse`, `flush`, `work_completed`, or of the drop) | that caller's, `<= DISPATCH_LEVEL` (`PASSIVE_LEVEL` for a passive-level module) |
//!
//! The work callback sets the status a waiting caller receives with
//! [`Work::status_set`] (default `STATUS_SUCCESS`) and returns
//! [`BufferDisposition::WorkComplete`]: the module takes the buffer back and the waiter wakes.
//! To finish later, it takes the buffer with [`Work::pend`], which returns an owned
//! [`PendingWork`], and returns [`BufferDisposition::WorkPending`]; the client then passes the
//! `PendingWork` to [`work_completed`](ThreadedBufferQueueNode::work_completed) with the final
//! status, from any thread. As in DMF, no further buffer is taken while that callback returns
//! `WorkPending`; the loop resumes at the next enqueue or `work_completed`.
//!
//! # Methods and IRQL
//!
//! | Method | IRQL | Notes |
//! |---|---|---|
//! | [`fetch`](ThreadedBufferQueueNode::fetch) | `<= DISPATCH_LEVEL` | an empty [`ThreadedBuffer`]; `STATUS_UNSUCCESSFUL` when none is free. Dropping it returns it |
//! | [`enqueue`](ThreadedBufferQueueNode::enqueue) / [`enqueue_at_head`](ThreadedBufferQueueNode::enqueue_at_head) | `<= DISPATCH_LEVEL` | queue at the tail (FIFO) or the head (next to run); allowed before `start`. A refused buffer comes back in [`BufferError`] |
//! | [`enqueue_and_wait`](ThreadedBufferQueueNode::enqueue_and_wait) / [`enqueue_at_head_and_wait`](ThreadedBufferQueueNode::enqueue_at_head_and_wait) | `PASSIVE_LEVEL` | the work's status (`Ok` for success), `STATUS_CANCELLED` if flushed first; refused promptly (see below) |
//! | [`work_completed`](ThreadedBufferQueueNode::work_completed) | `<= DISPATCH_LEVEL` | finishes a [`PendingWork`] with a status |
//! | [`reuse`](ThreadedBufferQueueNode::reuse) | `<= DISPATCH_LEVEL` | returns a fetched buffer unused |
//! | [`flush`](ThreadedBufferQueueNode::flush) | `<= DISPATCH_LEVEL` | every queued (not started) item completes with `STATUS_CANCELLED` |
//! | [`count`](ThreadedBufferQueueNode::count) | `<= DISPATCH_LEVEL` | queued items, not started |
//! | [`start`](ThreadedBufferQueueNode::start) | `PASSIVE_LEVEL` | `STATUS_INVALID_DEVICE_STATE` if started already or the module is not open |
//! | [`stop`](ThreadedBufferQueueNode::stop) | `PASSIVE_LEVEL` | waits for the work callback in progress; queued items stay queued |
//!
//! A passive-level module (created with [`ModuleAttributes::passive`]) takes wait locks, so
//! every method is then `PASSIVE_LEVEL` only. Enqueues take a module reference; they fail with
//! `STATUS_INVALID_DEVICE_STATE` once close has begun. Nothing allocates per item: buffers and
//! the waiters' events are created with the module.
//!
//! `enqueue_and_wait` and `enqueue_at_head_and_wait` return at once, without queuing (the
//! buffer goes back to the free list), with:
//!
//! * `STATUS_POSSIBLE_DEADLOCK` when called on the module's own thread (from `pre`, `work` or
//!   `post`): the wait could never end;
//! * `STATUS_INVALID_DEVICE_STATE` when the module is not started (or stopping), closing or
//!   closed;
//! * `STATUS_INSUFFICIENT_RESOURCES` when every preallocated waiter is in use (one per buffer;
//!   only possible with look-aside);
//! * the buffer's refusal status (`STATUS_INVALID_PARAMETER` for a buffer of another queue).
//!
//! Close stops the thread (waiting for the work callback in progress), then completes every
//! queued item with `STATUS_CANCELLED`, then releases the waiters of buffers the client still
//! holds as `PendingWork` with `STATUS_CANCELLED` and traces an error naming how many there
//! are. When the owner's drop returns, the thread has ended and no callback of the module runs
//! any more (a buffer the client still holds runs `on_reuse_cleanup` when the client returns it).
//!
//! # Example
//!
//! ```
//! # let session = wdk_sys::sim::Session::begin();
//! # let device_object = dmf::wdf::Memory::create(1, dmf::wdf::PoolType::NonPaged, None).unwrap();
//! # let device = device_object.handle().cast();
//! use dmf::core::ModuleAttributes;
//! use dmf::modules::buffer_pool::SourceSettings;
//! use dmf::modules::buffer_queue::BufferQueueConfig;
//! use dmf::modules::threaded_buffer_queue::{
//!     BufferDisposition, ThreadedBufferQueue, ThreadedBufferQueueConfig, Work,
//! };
//! use dmf::wdf::NtStatus;
//!
//! let settings = SourceSettings { buffer_count: 4, buffer_size: 16, ..SourceSettings::default() };
//! let config = ThreadedBufferQueueConfig::new(
//!     BufferQueueConfig::new(settings),
//!     Box::new(|work: &mut Work<'_>| {
//!         // On the module's thread, one buffer at a time, at PASSIVE_LEVEL.
//!         if work.data()[0] == 0 {
//!             work.status_set(NtStatus::INVALID_PARAMETER);
//!         }
//!         BufferDisposition::WorkComplete
//!     }),
//! );
//! let queue = ThreadedBufferQueue::create(device, config, ModuleAttributes::new())?;
//! queue.start()?;
//! let mut buffer = queue.fetch()?;
//! buffer.data_mut()[0] = 7;
//! queue.enqueue(buffer)?; // from any IRQL <= DISPATCH_LEVEL; does not wait
//! let empty = queue.fetch()?; // zeroed: the work callback refuses it
//! assert_eq!(queue.enqueue_and_wait(empty), Err(NtStatus::INVALID_PARAMETER));
//! queue.stop();
//! # drop(queue);
//! # drop(device_object);
//! # session.end();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Differences from DMF
//!
//! * `enqueue_and_wait` / `enqueue_at_head_and_wait` never hang where DMF does: on the module's
//!   own thread they fail with `STATUS_POSSIBLE_DEADLOCK`, on a module that is not started,
//!   stopping, closing or closed with `STATUS_INVALID_DEVICE_STATE`, all without queuing. (A
//!   `stop` that comes after the item was queued leaves it queued: it completes after the next
//!   `start`, or with `STATUS_CANCELLED` at `flush` or close.)
//! * Close releases the waiters of buffers still held as `PendingWork` (`STATUS_CANCELLED`) and
//!   traces how many were held (DMF does not track them: their waiters wait until the client
//!   calls `WorkCompleted`). A `PendingWork` dropped without `work_completed` completes with
//!   `STATUS_CANCELLED` and traces a warning.
//! * `work_completed` wakes the thread, so items queued behind a pending one are not left
//!   waiting for the next enqueue (DMF only resumes on the next `Enqueue`).
//! * `stop` takes effect after the work callback in progress: the remaining queued items stay
//!   queued (DMF's thread drains the whole queue before it sees the stop). `stop` called on the
//!   module's own thread is ignored with a trace (DMF waits for itself forever).
//! * Buffers are owned values: [`ThreadedBuffer`] (fetched; dropping it returns it) and
//!   [`PendingWork`] (kept by the work callback). A buffer or pending work from another queue is
//!   refused and handed back ([`BufferError`], [`WorkCompletedError`]); DMF corrupts its lists.
//!   Enqueues on a closing module are refused with the buffer instead of being stranded.
//! * The work callback takes the buffer by calling [`Work::pend`]; the returned disposition must
//!   agree. If it does not, ownership decides (a buffer the callback did not take is completed
//!   with its status, one it took stays pending) and a warning is traced (DMF asserts).
//! * When work completes, the buffer is back in the free list (its cleanup done) *before* the
//!   waiter wakes, so a caller can fetch it again at once (DMF wakes the waiter first).
//! * The waiters' events are preallocated with the module, one per buffer, instead of a stack
//!   event per call; with look-aside, more simultaneous waiters than `buffer_count` get
//!   `STATUS_INSUFFICIENT_RESOURCES`.
//! * The work callback's buffer size is [`Work::buffer_size`]; callbacks get a [`Work`] view or
//!   the [`ThreadContext`] instead of a module handle. The cleanup callback gets the data and
//!   the client context (the module's header is not visible).

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};

use wdk_sys::WDFOBJECT;

use super::buffer_pool::{PoolBuffer, ReturnCallback};
use super::buffer_queue::{BufferQueueConfig, BufferQueueNode};
use super::thread::{ThreadCallback, ThreadConfig, ThreadContext, ThreadControl, ThreadNode};
use crate::core::{Module, ModuleAttributes, ModuleCore, ModuleNode, OpenOption};
use crate::dmf_trace;
use crate::error::{ConfigError, ModuleError};
use crate::wdf::NtStatus;
use crate::wdf::event::{Event, EventKind};
use crate::wdf::thread::current_thread_id;
use crate::wdf::trace::TraceLevel;

/// Bytes the module keeps in front of the client's context: the waiter slot and its ticket
/// (little-endian `u32`s).
const HEADER: usize = 8;
/// "No waiter" in the header.
const NO_WAITER: u32 = u32::MAX;

/// What the work callback wants done with the buffer it was given
/// (DMF's `ThreadedBufferQueue_BufferDisposition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferDisposition {
    /// The work is done: the module takes the buffer back, reports the status set with
    /// [`Work::status_set`] to a waiting caller, and goes on with the next buffer.
    WorkComplete,
    /// The callback took the buffer with [`Work::pend`] and will pass it to
    /// [`work_completed`](ThreadedBufferQueueNode::work_completed) later. No further buffer is
    /// taken until the next enqueue or `work_completed`.
    WorkPending,
}

/// The work callback (DMF's `EVT_DMF_ThreadedBufferQueue_Callback`). Runs at `PASSIVE_LEVEL` on
/// the module's thread, once per queued buffer.
pub type WorkCallback = Box<dyn Fn(&mut Work<'_>) -> BufferDisposition + Send + Sync>;

/// The reuse-cleanup callback (DMF's `EVT_DMF_ThreadedBufferQueue_ReuseCleanup`): sees the
/// buffer's data and client context before they are zeroed and returned to the free list.
pub type ReuseCleanupCallback = ReturnCallback;

/// Configuration of a [`ThreadedBufferQueue`] (DMF's `DMF_CONFIG_ThreadedBufferQueue`).
pub struct ThreadedBufferQueueConfig {
    /// The buffers (see the module documentation); its callbacks must be `None`.
    pub buffer_queue: BufferQueueConfig,
    /// Runs on the module's thread after each start (`EvtThreadedBufferQueuePre`).
    pub pre: Option<ThreadCallback>,
    /// Runs for each queued buffer (`EvtThreadedBufferQueueWork`).
    pub work: WorkCallback,
    /// Runs on the module's thread when the loop stops (`EvtThreadedBufferQueuePost`).
    pub post: Option<ThreadCallback>,
    /// Sees each buffer returned to the free list (`EvtThreadedBufferQueueReuseCleanup`).
    pub on_reuse_cleanup: Option<ReuseCleanupCallback>,
}

impl ThreadedBufferQueueConfig {
    /// A configuration with the given buffers and work callback, and no other callbacks.
    #[must_use]
    pub fn new(buffer_queue: BufferQueueConfig, work: WorkCallback) -> Self {
        Self {
            buffer_queue,
            pre: None,
            work,
            post: None,
            on_reuse_cleanup: None,
        }
    }

    /// Checks the configuration; `passive_level` is the module option.
    pub fn validate(&self, passive_level: bool) -> Result<(), ConfigError> {
        if self.buffer_queue.on_reuse_cleanup.is_some()
            || self.buffer_queue.on_timer_expired.is_some()
        {
            return Err(ConfigError::BufferQueueCallbackSet);
        }
        self.buffer_queue.source_settings.validate(passive_level)
    }
}

impl core::fmt::Debug for ThreadedBufferQueueConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ThreadedBufferQueueConfig")
            .field("buffer_queue", &self.buffer_queue)
            .field("pre", &self.pre.is_some())
            .field("post", &self.post.is_some())
            .field("on_reuse_cleanup", &self.on_reuse_cleanup.is_some())
            .finish_non_exhaustive()
    }
}

fn header(context: &[u8]) -> (u32, u32) {
    let Some(header) = context.first_chunk::<HEADER>() else {
        return (NO_WAITER, 0);
    };
    let (waiter, ticket) = header.split_at(4);
    let word = |bytes: &[u8]| bytes.try_into().map_or(NO_WAITER, u32::from_le_bytes);
    (word(waiter), word(ticket))
}

fn set_header(context: &mut [u8], waiter: u32, ticket: u32) {
    if let Some(header) = context.first_chunk_mut::<HEADER>() {
        let (slot, rest) = header.split_at_mut(4);
        slot.copy_from_slice(&waiter.to_le_bytes());
        rest.copy_from_slice(&ticket.to_le_bytes());
    }
}

fn client_context(buffer: &PoolBuffer) -> &[u8] {
    buffer.context().get(HEADER..).unwrap_or(&[])
}

fn client_parts(buffer: &mut PoolBuffer) -> (&mut [u8], &mut [u8]) {
    let (data, context) = buffer.parts_mut();
    (data, context.get_mut(HEADER..).unwrap_or(&mut []))
}

/// An empty buffer taken with [`fetch`](ThreadedBufferQueueNode::fetch). Fill it and enqueue
/// it, give it to [`reuse`](ThreadedBufferQueueNode::reuse), or drop it: it then goes back to
/// the free list (the cleanup callback runs).
pub struct ThreadedBuffer {
    buffer: PoolBuffer,
}

impl ThreadedBuffer {
    /// The data bytes (`buffer_size` of them).
    #[must_use]
    pub fn data(&self) -> &[u8] {
        self.buffer.data()
    }

    /// The data bytes, writable.
    #[must_use]
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer.data_mut()
    }

    /// The client context bytes (`buffer_context_size` of them).
    #[must_use]
    pub fn context(&self) -> &[u8] {
        client_context(&self.buffer)
    }

    /// The client context bytes, writable.
    #[must_use]
    pub fn context_mut(&mut self) -> &mut [u8] {
        client_parts(&mut self.buffer).1
    }

    /// Data and client context at once, both writable.
    #[must_use]
    pub fn parts_mut(&mut self) -> (&mut [u8], &mut [u8]) {
        client_parts(&mut self.buffer)
    }

    /// Data size in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// Whether the data is empty (never: buffer sizes are validated).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }
}

impl core::fmt::Debug for ThreadedBuffer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ThreadedBuffer")
            .field("len", &self.len())
            .field("context_len", &self.context().len())
            .finish()
    }
}

/// A buffer the queue refused, handed back with the reason.
#[derive(Debug, thiserror::Error)]
#[error("buffer refused with {status}")]
pub struct BufferError {
    /// `STATUS_INVALID_PARAMETER` (a buffer of another queue), `STATUS_INVALID_DEVICE_STATE`
    /// (the module is closing or closed) or `STATUS_INSUFFICIENT_RESOURCES` (the queue could not
    /// grow, with look-aside).
    pub status: NtStatus,
    /// The buffer, still the caller's.
    pub buffer: ThreadedBuffer,
}

impl BufferError {
    /// The status.
    #[must_use]
    pub const fn status(&self) -> NtStatus {
        self.status
    }

    /// The buffer back.
    #[must_use]
    pub fn into_buffer(self) -> ThreadedBuffer {
        self.buffer
    }
}

/// Pending work given to the wrong queue's `work_completed`, handed back.
#[derive(Debug, thiserror::Error)]
#[error("the pending work belongs to another ThreadedBufferQueue")]
pub struct WorkCompletedError {
    /// The pending work, still the caller's.
    pub work: PendingWork,
}

impl WorkCompletedError {
    /// `STATUS_INVALID_PARAMETER`.
    #[must_use]
    pub const fn status(&self) -> NtStatus {
        NtStatus::INVALID_PARAMETER
    }

    /// The pending work back.
    pub fn into_work(self) -> PendingWork {
        self.work
    }
}

/// The buffer the work callback is working on, and the status it reports.
pub struct Work<'a> {
    buffer: &'a mut Option<PoolBuffer>,
    shared: &'a Arc<Shared>,
    status: NtStatus,
}

impl Work<'_> {
    /// The data bytes that were enqueued (empty once [`Work::pend`] took the buffer).
    #[must_use]
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().map_or(&[], PoolBuffer::data)
    }

    /// The data bytes, writable.
    #[must_use]
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut().map_or(&mut [], PoolBuffer::data_mut)
    }

    /// The client context bytes.
    #[must_use]
    pub fn context(&self) -> &[u8] {
        self.buffer.as_ref().map_or(&[], client_context)
    }

    /// The client context bytes, writable.
    #[must_use]
    pub fn context_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .map_or(&mut [], |buffer| client_parts(buffer).1)
    }

    /// The configured data size of every buffer (DMF's `ClientWorkBufferSize`).
    #[must_use]
    pub fn buffer_size(&self) -> usize {
        self.shared.queue.buffer_size()
    }

    /// Sets the status reported to a caller waiting in `enqueue_and_wait` (the callback's
    /// `NtStatus` out parameter in DMF). Ignored when the work is pended.
    pub fn status_set(&mut self, status: NtStatus) {
        self.status = status;
    }

    /// The status set so far (`STATUS_SUCCESS` unless changed).
    #[must_use]
    pub fn status(&self) -> NtStatus {
        self.status
    }

    /// Takes the buffer to finish the work later: return [`BufferDisposition::WorkPending`]
    /// and pass the result to [`work_completed`](ThreadedBufferQueueNode::work_completed).
    /// `None` if it was taken already.
    pub fn pend(&mut self) -> Option<PendingWork> {
        let buffer = self.buffer.take()?;
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        Some(PendingWork {
            buffer: Some(buffer),
            shared: Arc::downgrade(self.shared),
        })
    }
}

impl core::fmt::Debug for Work<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Work")
            .field("len", &self.data().len())
            .field("status", &self.status)
            .field("pended", &self.buffer.is_none())
            .finish()
    }
}

/// Work the callback kept ([`BufferDisposition::WorkPending`]): the buffer, owned by the client
/// until it is passed to [`work_completed`](ThreadedBufferQueueNode::work_completed). Dropping
/// it instead completes it with `STATUS_CANCELLED` (and traces a warning).
#[must_use = "pending work must be passed to work_completed"]
pub struct PendingWork {
    buffer: Option<PoolBuffer>,
    shared: Weak<Shared>,
}

impl PendingWork {
    /// The data bytes that were enqueued.
    #[must_use]
    pub fn data(&self) -> &[u8] {
        self.buffer.as_ref().map_or(&[], PoolBuffer::data)
    }

    /// The data bytes, writable.
    #[must_use]
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut().map_or(&mut [], PoolBuffer::data_mut)
    }

    /// The client context bytes.
    #[must_use]
    pub fn context(&self) -> &[u8] {
        self.buffer.as_ref().map_or(&[], client_context)
    }

    /// The client context bytes, writable.
    #[must_use]
    pub fn context_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .map_or(&mut [], |buffer| client_parts(buffer).1)
    }

    fn belongs_to(&self, shared: &Arc<Shared>) -> bool {
        core::ptr::eq(self.shared.as_ptr(), Arc::as_ptr(shared))
    }

    /// Completes the work: the buffer goes back, a waiter gets `status`, the thread resumes.
    /// After the module is gone the buffer is only returned (freed).
    fn finish(&mut self, status: NtStatus, dropped: bool) {
        let Some(buffer) = self.buffer.take() else {
            return;
        };
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        if dropped {
            dmf_trace!(
                TraceLevel::Warning,
                shared.name,
                "pending work dropped without work_completed: completed with STATUS_CANCELLED"
            );
        }
        shared.finish_pending(buffer, status);
    }
}

impl Drop for PendingWork {
    fn drop(&mut self) {
        self.finish(NtStatus::CANCELLED, true);
    }
}

impl core::fmt::Debug for PendingWork {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PendingWork")
            .field("len", &self.data().len())
            .finish_non_exhaustive()
    }
}

/// Slot states (low two bits of a waiter's word; the ticket is above them).
const FREE: u64 = 0;
const WAITING: u64 = 1;
const DONE: u64 = 2;
const STATE: u64 = 3;

fn word(ticket: u32, state: u64) -> u64 {
    (u64::from(ticket) << 2) | state
}

/// One preallocated waiter of `enqueue_and_wait`. Its word holds a ticket, bumped at each
/// claim, so a completion meant for an earlier claim of the slot does nothing.
struct Waiter {
    word: AtomicU64,
    status: AtomicI32,
    done: Event,
}

struct Waiters {
    slots: Vec<Waiter>,
}

impl Waiters {
    fn new(count: usize) -> Result<Self, NtStatus> {
        let mut slots = Vec::new();
        slots
            .try_reserve_exact(count)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        for _ in 0..count {
            slots.push(Waiter {
                word: AtomicU64::new(word(0, FREE)),
                status: AtomicI32::new(NtStatus::SUCCESS.raw()),
                done: Event::new(EventKind::Notification, false),
            });
        }
        Ok(Self { slots })
    }

    /// Claims a free slot: its index and ticket. A free slot's event is already reset.
    fn claim(&self) -> Option<(u32, u32)> {
        for (index, slot) in self.slots.iter().enumerate() {
            let current = slot.word.load(Ordering::Acquire);
            if current & STATE != FREE {
                continue;
            }
            let ticket = ((current >> 2) as u32).wrapping_add(1);
            if slot
                .word
                .compare_exchange(
                    current,
                    word(ticket, WAITING),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                return Some((u32::try_from(index).ok()?, ticket));
            }
        }
        None
    }

    /// Completes the claim `(index, ticket)` with `status`, if it is still waiting; true if
    /// this call completed it.
    fn complete(&self, index: u32, ticket: u32, status: NtStatus) -> bool {
        let Some(slot) = self.slots.get(index as usize) else {
            return false;
        };
        if slot
            .word
            .compare_exchange(
                word(ticket, WAITING),
                word(ticket, DONE),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return false;
        }
        slot.status.store(status.raw(), Ordering::Release);
        let _ = slot.done.set();
        true
    }

    /// Waits for the claim of slot `index` to complete and frees the slot.
    fn wait(&self, index: u32) -> NtStatus {
        let Some(slot) = self.slots.get(index as usize) else {
            return NtStatus::INTERNAL_ERROR;
        };
        slot.done.wait();
        let status = NtStatus::from_raw(slot.status.load(Ordering::Acquire));
        Self::free(slot);
        status
    }

    /// Frees a claimed slot whose item was never queued.
    fn abandon(&self, index: u32) {
        if let Some(slot) = self.slots.get(index as usize) {
            Self::free(slot);
        }
    }

    fn free(slot: &Waiter) {
        slot.done.clear();
        let current = slot.word.load(Ordering::Acquire);
        slot.word.store(current & !STATE, Ordering::Release);
    }

    /// Completes every claim still waiting with `status`; returns how many.
    fn release_all(&self, status: NtStatus) -> usize {
        let mut released = 0;
        for (index, slot) in self.slots.iter().enumerate() {
            let current = slot.word.load(Ordering::Acquire);
            if current & STATE == WAITING
                && let Ok(index) = u32::try_from(index)
                && self.complete(index, (current >> 2) as u32, status)
            {
                released += 1;
            }
        }
        released
    }
}

/// What the module's methods, its thread and pending work share.
struct Shared {
    name: &'static str,
    queue: Module<BufferQueueNode>,
    /// `None` only while creation is failing.
    thread: Option<Module<ThreadNode>>,
    work: WorkCallback,
    waiters: Waiters,
    /// `PendingWork` handles alive.
    pending: AtomicUsize,
    /// Id of the module's thread while its loop runs (pre to post), else 0.
    worker: Arc<AtomicUsize>,
}

impl Shared {
    fn on_worker(&self) -> bool {
        self.worker.load(Ordering::Acquire) == current_thread_id()
    }

    /// Wakes the thread for work just queued (or unblocked). A signal still pending is left
    /// alone: the thread takes it before it next takes the consumer's lock, so it will see what
    /// was queued under that lock before this call (saves the event's cost per item while the
    /// thread is busy).
    fn work_ready(&self) {
        if let Some(thread) = &self.thread
            && !thread.is_work_ready()
        {
            thread.work_ready();
        }
    }

    /// Returns a buffer whose work is over and wakes its waiter (after the buffer is back).
    fn complete(&self, buffer: PoolBuffer, status: NtStatus) {
        let (waiter, ticket) = header(buffer.context());
        // Only this queue's buffers get here.
        let _ = self.queue.reuse(buffer);
        if waiter != NO_WAITER {
            self.waiters.complete(waiter, ticket, status);
        }
    }

    fn finish_pending(&self, buffer: PoolBuffer, status: NtStatus) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
        self.complete(buffer, status);
        self.work_ready();
    }

    fn flush(&self) {
        while let Ok(buffer) = self.queue.dequeue() {
            self.complete(buffer, NtStatus::CANCELLED);
        }
    }

    /// The thread's work callback: one buffer at a time until the queue is empty, a buffer is
    /// pended, or a stop is requested.
    fn drain(self: &Arc<Self>, thread: &ThreadContext) {
        while !thread.is_stop_pending() {
            let Ok(buffer) = self.queue.dequeue() else {
                return;
            };
            let mut slot = Some(buffer);
            let mut work = Work {
                buffer: &mut slot,
                shared: self,
                status: NtStatus::SUCCESS,
            };
            let disposition = (self.work)(&mut work);
            let status = work.status;
            let Some(buffer) = slot else {
                if disposition != BufferDisposition::WorkPending {
                    dmf_trace!(
                        TraceLevel::Warning,
                        self.name,
                        "work callback took the buffer but returned {:?}: it stays pending",
                        disposition
                    );
                }
                return;
            };
            if disposition != BufferDisposition::WorkComplete {
                dmf_trace!(
                    TraceLevel::Warning,
                    self.name,
                    "work callback returned {:?} without taking the buffer: completed",
                    disposition
                );
            }
            self.complete(buffer, status);
        }
    }
}

fn worker_thread(
    shared: Weak<Shared>,
    worker: Arc<AtomicUsize>,
    pre: Option<ThreadCallback>,
    post: Option<ThreadCallback>,
) -> Result<Module<ThreadNode>, ModuleError> {
    let pre_worker = Arc::clone(&worker);
    let config = ThreadConfig {
        control: ThreadControl::Dmf {
            pre: Some(Box::new(move |context: &ThreadContext| {
                pre_worker.store(current_thread_id(), Ordering::Release);
                if let Some(pre) = &pre {
                    pre(context);
                }
            })),
            // A weak link: the thread never keeps the queue and its buffers alive.
            work: Box::new(move |context: &ThreadContext| {
                if let Some(shared) = shared.upgrade() {
                    shared.drain(context);
                }
            }),
            post: Some(Box::new(move |context: &ThreadContext| {
                if let Some(post) = &post {
                    post(context);
                }
                worker.store(0, Ordering::Release);
            })),
        },
    };
    Module::new(ThreadNode::new(
        config,
        ModuleAttributes::child_of(false, "ThreadedBufferQueueThread"),
    )?)
}

/// The module object of a [`ThreadedBufferQueue`].
pub struct ThreadedBufferQueueNode {
    core: ModuleCore,
    shared: Arc<Shared>,
}

/// A `ThreadedBufferQueue` module (see the [module documentation](self)).
pub struct ThreadedBufferQueue(Module<ThreadedBufferQueueNode>);

impl AsRef<Module<ThreadedBufferQueueNode>> for ThreadedBufferQueue {
    fn as_ref(&self) -> &Module<ThreadedBufferQueueNode> {
        &self.0
    }
}

impl core::ops::Deref for ThreadedBufferQueue {
    type Target = ThreadedBufferQueueNode;

    fn deref(&self) -> &ThreadedBufferQueueNode {
        &self.0
    }
}

impl ThreadedBufferQueue {
    /// Creates the module and its children; `parent` is the device. A dynamic module (the
    /// default attributes) is open, with its thread idle, when this returns. Invalid
    /// configurations fail with a typed error before anything is allocated.
    pub fn create(
        parent: WDFOBJECT,
        config: ThreadedBufferQueueConfig,
        attributes: ModuleAttributes,
    ) -> Result<Self, ModuleError> {
        Ok(Self(Module::new(ThreadedBufferQueueNode::new(
            parent, config, attributes,
        )?)?))
    }
}

impl ThreadedBufferQueueNode {
    pub(crate) fn new(
        parent: WDFOBJECT,
        config: ThreadedBufferQueueConfig,
        attributes: ModuleAttributes,
    ) -> Result<Self, ModuleError> {
        let passive_level = attributes.passive_level;
        config.validate(passive_level)?;
        let core = ModuleCore::new(
            "ThreadedBufferQueue",
            OpenOption::OpenCreate,
            true,
            attributes,
        )?;
        let ThreadedBufferQueueConfig {
            buffer_queue: mut queue_config,
            pre,
            work,
            post,
            on_reuse_cleanup,
        } = config;
        let waiter_count = queue_config.source_settings.buffer_count.max(1);
        let settings = &mut queue_config.source_settings;
        settings.buffer_context_size = settings.buffer_context_size.saturating_add(HEADER);
        queue_config.on_reuse_cleanup = on_reuse_cleanup.map(|cleanup| -> ReturnCallback {
            Box::new(move |data: &mut [u8], context: &mut [u8]| {
                cleanup(data, context.get_mut(HEADER..).unwrap_or(&mut []));
            })
        });
        let queue = Module::new(BufferQueueNode::new(
            parent,
            queue_config,
            ModuleAttributes::child_of(passive_level, "ThreadedBufferQueueBufferQueue"),
        )?)?;
        let waiters = Waiters::new(waiter_count)?;
        let worker = Arc::new(AtomicUsize::new(0));
        let name = core.name();
        let mut failure = None;
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| {
            let thread = match worker_thread(weak.clone(), Arc::clone(&worker), pre, post) {
                Ok(thread) => Some(thread),
                Err(error) => {
                    failure = Some(error);
                    None
                }
            };
            Shared {
                name,
                queue,
                thread,
                work,
                waiters,
                pending: AtomicUsize::new(0),
                worker,
            }
        });
        if let Some(error) = failure {
            return Err(error);
        }
        Ok(Self { core, shared })
    }

    fn thread(&self) -> Option<&ThreadNode> {
        self.shared.thread.as_deref()
    }

    /// Takes an empty buffer (`DMF_ThreadedBufferQueue_Fetch`); `STATUS_UNSUCCESSFUL` when none
    /// is free. `IRQL <= DISPATCH_LEVEL`.
    pub fn fetch(&self) -> Result<ThreadedBuffer, NtStatus> {
        self.shared
            .queue
            .fetch()
            .map(|buffer| ThreadedBuffer { buffer })
    }

    /// Queues `buffer` with the waiter `(slot, ticket)` and wakes the thread.
    fn put(
        &self,
        buffer: ThreadedBuffer,
        at_head: bool,
        waiter: u32,
        ticket: u32,
    ) -> Result<(), BufferError> {
        let mut buffer = buffer.buffer;
        set_header(buffer.context_mut(), waiter, ticket);
        let queue = &self.shared.queue;
        let result = if at_head {
            queue.enqueue_at_head(buffer)
        } else {
            queue.enqueue(buffer)
        };
        result.map_err(|error| BufferError {
            status: error.status(),
            buffer: ThreadedBuffer {
                buffer: error.buffer,
            },
        })?;
        self.shared.work_ready();
        Ok(())
    }

    fn put_referenced(&self, buffer: ThreadedBuffer, at_head: bool) -> Result<(), BufferError> {
        let Ok(_reference) = self.core.reference() else {
            return Err(BufferError {
                status: NtStatus::INVALID_DEVICE_STATE,
                buffer,
            });
        };
        self.put(buffer, at_head, NO_WAITER, 0)
    }

    /// Queues a filled buffer at the tail (`DMF_ThreadedBufferQueue_Enqueue`): the thread
    /// processes buffers in the order they were enqueued. Allowed before `start`. A buffer of
    /// another queue, or any buffer once close has begun, is refused and handed back.
    /// `IRQL <= DISPATCH_LEVEL`.
    pub fn enqueue(&self, buffer: ThreadedBuffer) -> Result<(), BufferError> {
        self.put_referenced(buffer, false)
    }

    /// Queues a filled buffer at the head, to be processed next
    /// (`DMF_ThreadedBufferQueue_EnqueueAtHead`). Same rules as [`Self::enqueue`].
    pub fn enqueue_at_head(&self, buffer: ThreadedBuffer) -> Result<(), BufferError> {
        self.put_referenced(buffer, true)
    }

    fn put_and_wait(&self, buffer: ThreadedBuffer, at_head: bool) -> Result<(), NtStatus> {
        let shared = &*self.shared;
        if shared.on_worker() {
            dmf_trace!(
                TraceLevel::Error,
                shared.name,
                "enqueue_and_wait on the module's own thread would wait forever: refused"
            );
            return Err(NtStatus::POSSIBLE_DEADLOCK);
        }
        let reference = self.core.reference()?;
        let running = self
            .thread()
            .is_some_and(|thread| !thread.is_stopped() && !thread.is_stop_pending());
        if !running {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        let (index, ticket) = shared
            .waiters
            .claim()
            .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
        if let Err(error) = self.put(buffer, at_head, index, ticket) {
            shared.waiters.abandon(index);
            return Err(error.status);
        }
        drop(reference);
        shared.waiters.wait(index).into_result()
    }

    /// Queues a filled buffer at the tail and waits until its work is done
    /// (`DMF_ThreadedBufferQueue_EnqueueAndWait`): returns the status the work callback (or
    /// `work_completed`) set, `Ok` for success, or `STATUS_CANCELLED` if a flush or close took
    /// the item first. Refused at once, without queuing, on the module's own thread
    /// (`STATUS_POSSIBLE_DEADLOCK`) and on a module that is not started or is closing
    /// (`STATUS_INVALID_DEVICE_STATE`); see the module documentation. `PASSIVE_LEVEL`.
    pub fn enqueue_and_wait(&self, buffer: ThreadedBuffer) -> Result<(), NtStatus> {
        self.put_and_wait(buffer, false)
    }

    /// As [`Self::enqueue_and_wait`], queuing at the head
    /// (`DMF_ThreadedBufferQueue_EnqueueAtHeadAndWait`).
    pub fn enqueue_at_head_and_wait(&self, buffer: ThreadedBuffer) -> Result<(), NtStatus> {
        self.put_and_wait(buffer, true)
    }

    /// Finishes work the callback pended (`DMF_ThreadedBufferQueue_WorkCompleted`): the buffer
    /// goes back to the free list, a waiting caller gets `status`, and the thread goes on with
    /// what is queued. Pending work of another queue is handed back. `IRQL <= DISPATCH_LEVEL`.
    pub fn work_completed(
        &self,
        mut work: PendingWork,
        status: NtStatus,
    ) -> Result<(), WorkCompletedError> {
        if !work.belongs_to(&self.shared) {
            return Err(WorkCompletedError { work });
        }
        work.finish(status, false);
        Ok(())
    }

    /// Returns a fetched buffer unused (`DMF_ThreadedBufferQueue_Reuse`); the cleanup callback
    /// runs. Dropping the buffer does the same. A buffer of another queue is handed back.
    /// `IRQL <= DISPATCH_LEVEL`.
    pub fn reuse(&self, buffer: ThreadedBuffer) -> Result<(), BufferError> {
        self.shared
            .queue
            .reuse(buffer.buffer)
            .map_err(|error| BufferError {
                status: error.status(),
                buffer: ThreadedBuffer {
                    buffer: error.buffer,
                },
            })
    }

    /// Completes every queued item that has not started with `STATUS_CANCELLED`
    /// (`DMF_ThreadedBufferQueue_Flush`): waiting callers wake, buffers go back. Work in
    /// progress and pending work are not affected. `IRQL <= DISPATCH_LEVEL`.
    pub fn flush(&self) {
        self.shared.flush();
    }

    /// Items queued and not started (`DMF_ThreadedBufferQueue_Count`). `IRQL <= DISPATCH_LEVEL`.
    #[must_use]
    pub fn count(&self) -> usize {
        self.shared.queue.count()
    }

    /// Buffers free to fetch now.
    #[must_use]
    pub fn free_count(&self) -> usize {
        self.shared.queue.free_count()
    }

    /// Pending work the client holds (pended and not yet completed).
    #[must_use]
    pub fn pending_count(&self) -> usize {
        self.shared.pending.load(Ordering::Acquire)
    }

    /// Data bytes per buffer.
    #[must_use]
    pub fn buffer_size(&self) -> usize {
        self.shared.queue.buffer_size()
    }

    /// Starts the thread (`DMF_ThreadedBufferQueue_Start`): `pre` runs, then queued work.
    /// `STATUS_INVALID_DEVICE_STATE` if it is started already or the module is not open.
    /// `PASSIVE_LEVEL`.
    pub fn start(&self) -> Result<(), NtStatus> {
        let _reference = self.core.reference()?;
        self.thread().ok_or(NtStatus::INVALID_DEVICE_STATE)?.start()
    }

    /// Stops the thread (`DMF_ThreadedBufferQueue_Stop`): waits for the work callback in
    /// progress, then `post` runs; queued items stay queued. No-op when stopped; ignored (with
    /// a trace) on the module's own thread. `PASSIVE_LEVEL`.
    pub fn stop(&self) {
        if self.shared.on_worker() {
            dmf_trace!(
                TraceLevel::Error,
                self.shared.name,
                "stop on the module's own thread would wait forever: ignored"
            );
            return;
        }
        if let Some(thread) = self.thread() {
            thread.stop();
        }
    }
}

impl ModuleNode for ThreadedBufferQueueNode {
    fn core(&self) -> &ModuleCore {
        &self.core
    }

    fn child_count(&self) -> usize {
        2
    }

    fn child(&self, index: usize) -> Option<&dyn ModuleNode> {
        match index {
            0 => Some(&*self.shared.queue),
            1 => self.thread().map(|thread| thread as &dyn ModuleNode),
            _ => None,
        }
    }

    fn close(&self) {
        self.stop();
        self.shared.flush();
        let pending = self.shared.pending.load(Ordering::Acquire);
        let released = self.shared.waiters.release_all(NtStatus::CANCELLED);
        if pending > 0 || released > 0 {
            dmf_trace!(
                TraceLevel::Error,
                self.shared.name,
                "closed with {} pending work item(s) the client never completed; {} waiter(s) released with STATUS_CANCELLED",
                pending,
                released
            );
        }
    }
}

impl core::fmt::Debug for ThreadedBufferQueueNode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ThreadedBufferQueue")
            .field("core", &self.core)
            .field("count", &self.count())
            .field("pending", &self.pending_count())
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for ThreadedBufferQueue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (**self).fmt(f)
    }
}
