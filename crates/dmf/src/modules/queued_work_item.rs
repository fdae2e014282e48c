//! `QueuedWorkItem`: run a client callback at `PASSIVE_LEVEL` once per enqueue, with a copy of a
//! parameter block, from any IRQL up to `DISPATCH_LEVEL`.
//!
//! Each [`enqueue`](QueuedWorkItemNode::enqueue) copies the caller's bytes into a buffer
//! preallocated when the module was created (a [`BufferQueue`] child), queues it, and makes sure
//! a framework work item runs; the work item calls the client's callback for each queued buffer
//! in FIFO order. [`enqueue_and_wait`](QueuedWorkItemNode::enqueue_and_wait) also blocks until
//! the callback ran and returns the status it set with [`QueuedWork::status_set`].
//!
//! # Configuration ([`QueuedWorkItemConfig`])
//!
//! | Field | Meaning |
//! |---|---|
//! | `callback` | required; called at `PASSIVE_LEVEL` with a [`QueuedWork`]: the parameter bytes, the buffer context, and the status to report to a waiting caller (default `STATUS_SUCCESS`) |
//! | `buffer_queue.source_settings.buffer_count` | items that can be pending at once (more with look-aside) |
//! | `buffer_queue.source_settings.buffer_size` | largest parameter block |
//! | `buffer_queue.source_settings.buffer_context_size` | client context bytes per item |
//! | `buffer_queue.source_settings.pool_type` | pool; paged requires the passive-level option |
//!
//! # Methods and IRQL
//!
//! * [`enqueue`](QueuedWorkItemNode::enqueue): `IRQL <= DISPATCH_LEVEL`. `STATUS_UNSUCCESSFUL`
//!   when every buffer is pending, `STATUS_BUFFER_TOO_SMALL` when the block is larger than
//!   `buffer_size`, `STATUS_INVALID_DEVICE_STATE` after [`flush`](QueuedWorkItemNode::flush)
//!   or close.
//! * [`enqueue_and_wait`](QueuedWorkItemNode::enqueue_and_wait): `PASSIVE_LEVEL`; returns the
//!   callback's status, or `STATUS_CANCELLED` if the item was flushed before it ran.
//! * [`flush`](QueuedWorkItemNode::flush): `PASSIVE_LEVEL`, not from the callback. Waits for a
//!   running callback to return, cancels what has not started, and ends the module's work: later
//!   enqueues fail with `STATUS_INVALID_DEVICE_STATE` (as in DMF, where Flush cancels the
//!   underlying scheduled task for good). Close does the same.
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
//! use dmf::modules::queued_work_item::{QueuedWork, QueuedWorkItem, QueuedWorkItemConfig};
//! use dmf::wdf::NtStatus;
//!
//! let settings = SourceSettings { buffer_count: 8, buffer_size: 16, ..SourceSettings::default() };
//! let config = QueuedWorkItemConfig {
//!     buffer_queue: BufferQueueConfig::new(settings),
//!     callback: Box::new(|work: &mut QueuedWork<'_>| {
//!         if work.buffer()[0] == 0 {
//!             work.status_set(NtStatus::INVALID_PARAMETER);
//!         }
//!     }),
//! };
//! let work = QueuedWorkItem::create(device, config, ModuleAttributes::new())?;
//! work.enqueue(&[1, 2, 3])?; // from a DPC, say
//! assert_eq!(work.enqueue_and_wait(&[0]), Err(NtStatus::INVALID_PARAMETER)); // PASSIVE_LEVEL
//! assert_eq!(work.enqueue(&[0; 17]), Err(NtStatus::BUFFER_TOO_SMALL));
//! # drop(work);
//! # drop(device_object);
//! # session.end();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Differences from DMF
//!
//! * An oversized parameter block returns `STATUS_BUFFER_TOO_SMALL` *and its buffer goes back to
//!   the free list* (DMF leaks it).
//! * `flush` (and close) completes every `enqueue_and_wait` caller whose item had not started
//!   with `STATUS_CANCELLED` and returns the item's buffer (DMF leaves those callers waiting
//!   forever and the buffers stranded). An enqueue racing with `flush` either completes before
//!   it or fails; it never strands its buffer.
//! * `enqueue_and_wait` from inside the module's own callback returns
//!   `STATUS_INVALID_DEVICE_STATE` at once (DMF deadlocks: the item cannot run before the
//!   callback returns); the module goes on working.
//! * The work item's handler holds the module's state weakly, so the child queue and its
//!   framework objects are deleted when the module is dropped, not later when the framework
//!   frees the work item's handler.
//! * The callback sees exactly the bytes that were enqueued (DMF passes the whole buffer).
//! * The callback returns nothing; the status for a waiting caller is set with
//!   [`QueuedWork::status_set`] (DMF's callback result is ignored anyway).
//! * `enqueue_and_wait` callers wait on events preallocated with the module, one per buffer: in
//!   look-aside mode, more simultaneous waiters than `buffer_count` get
//!   `STATUS_INSUFFICIENT_RESOURCES`.
//! * A framework work item replaces DMF's ScheduledTask/Rundown children; the rundown is the
//!   module core's [`References`](crate::core::References) (event-driven, no 100 ms polling).

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicUsize, Ordering};

use wdk_sys::WDFOBJECT;

use super::buffer_pool::PoolBuffer;
use super::buffer_queue::{BufferQueueConfig, BufferQueueNode};
use crate::core::{Module, ModuleAttributes, ModuleCore, ModuleNode, OpenOption, References};
use crate::error::ModuleError;
use crate::wdf::NtStatus;
use crate::wdf::event::{Event, EventKind};
use crate::wdf::thread::current_thread_id;
use crate::wdf::work_item::WorkItem;

/// Bytes this module keeps in front of the client's context: the parameter length and the
/// waiter slot (little-endian `u32`s).
const HEADER: usize = 8;
/// "No waiter" in the header.
const NO_WAITER: u32 = u32::MAX;

/// The client's work callback. Runs at `PASSIVE_LEVEL` on a framework thread.
pub type WorkCallback = Box<dyn Fn(&mut QueuedWork<'_>) + Send + Sync>;

/// Configuration of a [`QueuedWorkItem`] (DMF's `DMF_CONFIG_QueuedWorkItem`).
pub struct QueuedWorkItemConfig {
    /// The buffers that hold parameter blocks (see the module documentation).
    pub buffer_queue: BufferQueueConfig,
    /// The work callback.
    pub callback: WorkCallback,
}

impl core::fmt::Debug for QueuedWorkItemConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("QueuedWorkItemConfig")
            .field("buffer_queue", &self.buffer_queue)
            .finish_non_exhaustive()
    }
}

/// One queued item, as the callback sees it.
pub struct QueuedWork<'a> {
    buffer: &'a mut [u8],
    context: &'a mut [u8],
    status: NtStatus,
}

impl QueuedWork<'_> {
    /// The parameter block that was enqueued.
    #[must_use]
    pub fn buffer(&mut self) -> &mut [u8] {
        self.buffer
    }

    /// The buffer's client context.
    #[must_use]
    pub fn context(&mut self) -> &mut [u8] {
        self.context
    }

    /// Sets the status returned to an [`enqueue_and_wait`](QueuedWorkItemNode::enqueue_and_wait)
    /// caller (`DMF_QueuedWorkItem_StatusSet`); ignored for a plain enqueue.
    pub fn status_set(&mut self, status: NtStatus) {
        self.status = status;
    }

    /// The status set so far.
    #[must_use]
    pub fn status(&self) -> NtStatus {
        self.status
    }
}

struct Waiter {
    in_use: AtomicBool,
    status: AtomicI32,
    done: Event,
}

struct Shared {
    queue: Module<BufferQueueNode>,
    callback: WorkCallback,
    /// Run-down protection of enqueues and callbacks; ended by flush/close.
    rundown: References,
    /// Enqueues not yet processed by the work item loop.
    pending: AtomicU32,
    waiters: Vec<Waiter>,
    /// The thread running the client's callback (0: none). The work item runs one loop at a
    /// time (`pending`), so there is at most one.
    running_thread: AtomicUsize,
}

fn header(context: &[u8]) -> (usize, u32) {
    let word =
        |i: usize| u32::from_le_bytes([context[i], context[i + 1], context[i + 2], context[i + 3]]);
    (word(0) as usize, word(4))
}

fn set_header(context: &mut [u8], length: usize, waiter: u32) {
    context[..4].copy_from_slice(&(length as u32).to_le_bytes());
    context[4..HEADER].copy_from_slice(&waiter.to_le_bytes());
}

impl Shared {
    /// Completes a waiter (if any) with `status`.
    fn complete(&self, waiter: u32, status: NtStatus) {
        if let Some(waiter) = self.waiters.get(waiter as usize) {
            waiter.status.store(status.raw(), Ordering::Release);
            let _ = waiter.done.set();
        }
    }

    /// Runs the callback for the oldest queued item.
    fn process_one(&self) {
        let Ok(mut buffer) = self.queue.dequeue() else {
            return;
        };
        let (data, context) = buffer.parts_mut();
        let (length, waiter) = header(context);
        let mut work = QueuedWork {
            buffer: &mut data[..length],
            context: &mut context[HEADER..],
            status: NtStatus::SUCCESS,
        };
        (self.callback)(&mut work);
        let status = work.status;
        self.complete(waiter, status);
        let _ = self.queue.reuse(buffer);
    }

    /// The work item: one callback per counted enqueue, while the module is not run down.
    fn run(&self) {
        self.running_thread
            .store(current_thread_id(), Ordering::Release);
        loop {
            if self.rundown.acquire().is_ok() {
                self.process_one();
                self.rundown.release();
            }
            if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                break;
            }
        }
        // Cleared after the last decrement: a loop that starts next (on another thread) sets
        // it again; a stale value only names a thread that is not in a callback.
        let _ = self.running_thread.compare_exchange(
            current_thread_id(),
            0,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Whether the calling thread is inside this module's callback.
    fn in_callback(&self) -> bool {
        self.running_thread.load(Ordering::Acquire) == current_thread_id()
    }

    fn claim_waiter(&self) -> Option<u32> {
        self.waiters
            .iter()
            .position(|w| !w.in_use.swap(true, Ordering::AcqRel))
            .map(|i| i as u32)
    }

    fn free_waiter(&self, index: u32) {
        if let Some(waiter) = self.waiters.get(index as usize) {
            waiter.in_use.store(false, Ordering::Release);
        }
    }
}

/// The module object of a [`QueuedWorkItem`].
pub struct QueuedWorkItemNode {
    core: ModuleCore,
    shared: Arc<Shared>,
    work_item: WorkItem,
}

/// A `QueuedWorkItem` module (see the [module documentation](self)).
pub struct QueuedWorkItem(Module<QueuedWorkItemNode>);

impl AsRef<Module<QueuedWorkItemNode>> for QueuedWorkItem {
    fn as_ref(&self) -> &Module<QueuedWorkItemNode> {
        &self.0
    }
}

impl core::ops::Deref for QueuedWorkItem {
    type Target = QueuedWorkItemNode;

    fn deref(&self) -> &QueuedWorkItemNode {
        &self.0
    }
}

impl QueuedWorkItem {
    /// Creates the module; `parent` is the device that owns the work item. A dynamic module
    /// (the default attributes) is open when this returns.
    pub fn create(
        parent: WDFOBJECT,
        config: QueuedWorkItemConfig,
        attributes: ModuleAttributes,
    ) -> Result<Self, ModuleError> {
        Ok(Self(Module::new(QueuedWorkItemNode::new(
            parent, config, attributes,
        )?)?))
    }
}

impl QueuedWorkItemNode {
    pub(crate) fn new(
        parent: WDFOBJECT,
        config: QueuedWorkItemConfig,
        attributes: ModuleAttributes,
    ) -> Result<Self, ModuleError> {
        let passive_level = attributes.passive_level;
        config
            .buffer_queue
            .source_settings
            .validate(passive_level)?;
        let core = ModuleCore::new("QueuedWorkItem", OpenOption::OpenCreate, true, attributes)?;
        let mut queue_config = config.buffer_queue;
        let waiter_count = queue_config.source_settings.buffer_count.max(1);
        queue_config.source_settings.buffer_context_size += HEADER;
        let queue = Module::new(BufferQueueNode::new(
            parent,
            queue_config,
            ModuleAttributes::child_of(passive_level, "QueuedWorkItemBufferQueue"),
        )?)?;
        let mut waiters = Vec::new();
        waiters
            .try_reserve_exact(waiter_count)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        for _ in 0..waiter_count {
            waiters.push(Waiter {
                in_use: AtomicBool::new(false),
                status: AtomicI32::new(0),
                done: Event::new(EventKind::Notification, false),
            });
        }
        let shared = Arc::new(Shared {
            queue,
            callback: config.callback,
            rundown: References::new(),
            pending: AtomicU32::new(0),
            waiters,
            running_thread: AtomicUsize::new(0),
        });
        // The handler holds the state weakly: the framework frees the handler when it finally
        // deletes the work item, which may be on a worker thread after the module was dropped;
        // a strong reference there would delete the child queue (spin locks, buffers) late.
        // Close flushes the work item first, so a run never outlives the module.
        let handler = Arc::downgrade(&shared);
        let work_item = WorkItem::new(parent, move || {
            if let Some(shared) = handler.upgrade() {
                shared.run();
            }
        })?;
        Ok(Self {
            core,
            shared,
            work_item,
        })
    }

    fn enqueue_with_waiter(&self, parameters: &[u8], waiter: u32) -> Result<(), NtStatus> {
        let shared = &*self.shared;
        shared.rundown.acquire()?;
        let result = self.enqueue_referenced(parameters, waiter);
        shared.rundown.release();
        result
    }

    fn enqueue_referenced(&self, parameters: &[u8], waiter: u32) -> Result<(), NtStatus> {
        let shared = &*self.shared;
        let mut buffer: PoolBuffer = shared.queue.fetch()?;
        if parameters.len() > buffer.len() {
            // The buffer goes back to the free list when dropped here.
            return Err(NtStatus::BUFFER_TOO_SMALL);
        }
        let (data, context) = buffer.parts_mut();
        data[..parameters.len()].copy_from_slice(parameters);
        set_header(context, parameters.len(), waiter);
        shared
            .queue
            .enqueue(buffer)
            .map_err(|error| error.status())?;
        if shared.pending.fetch_add(1, Ordering::AcqRel) == 0 {
            self.work_item.enqueue();
        }
        Ok(())
    }

    /// Queues `parameters` for the callback (`DMF_QueuedWorkItem_Enqueue`). Callable at
    /// `IRQL <= DISPATCH_LEVEL`; copies the bytes, allocates nothing.
    pub fn enqueue(&self, parameters: &[u8]) -> Result<(), NtStatus> {
        self.enqueue_with_waiter(parameters, NO_WAITER)
    }

    /// Queues `parameters` and waits until the callback has run
    /// (`DMF_QueuedWorkItem_EnqueueAndWait`); returns the status the callback set (`Ok` for
    /// success), or `STATUS_CANCELLED` if a flush or close cancelled the item first.
    /// `PASSIVE_LEVEL` only. From inside this module's own callback it fails at once with
    /// `STATUS_INVALID_DEVICE_STATE`, queuing nothing (the item could only run after the
    /// callback returned: DMF waits for ever here).
    pub fn enqueue_and_wait(&self, parameters: &[u8]) -> Result<(), NtStatus> {
        let shared = &*self.shared;
        if shared.in_callback() {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        let Some(index) = shared.claim_waiter() else {
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        };
        let waiter = &shared.waiters[index as usize];
        waiter.done.clear();
        waiter
            .status
            .store(NtStatus::SUCCESS.raw(), Ordering::Release);
        let result = self.enqueue_with_waiter(parameters, index).and_then(|()| {
            waiter.done.wait();
            NtStatus::from_raw(waiter.status.load(Ordering::Acquire)).into_result()
        });
        shared.free_waiter(index);
        result
    }

    /// Cancels what has not started and ends the module's work
    /// (`DMF_QueuedWorkItem_Flush`): waits for a running callback, completes pending
    /// `enqueue_and_wait` callers with `STATUS_CANCELLED`, returns pending buffers. Later
    /// enqueues fail with `STATUS_INVALID_DEVICE_STATE`. `PASSIVE_LEVEL`, not from the callback.
    pub fn flush(&self) {
        let shared = &*self.shared;
        shared.rundown.end_and_wait();
        self.work_item.flush();
        while let Ok(buffer) = shared.queue.dequeue() {
            let (_, waiter) = header(buffer.context());
            shared.complete(waiter, NtStatus::CANCELLED);
            let _ = shared.queue.reuse(buffer);
        }
    }

    /// Items queued and not started.
    #[must_use]
    pub fn pending_count(&self) -> usize {
        self.shared.queue.count()
    }
}

impl ModuleNode for QueuedWorkItemNode {
    fn core(&self) -> &ModuleCore {
        &self.core
    }

    fn child_count(&self) -> usize {
        1
    }

    fn child(&self, index: usize) -> Option<&dyn ModuleNode> {
        (index == 0).then(|| &*self.shared.queue as &dyn ModuleNode)
    }

    fn open(&self) -> Result<(), NtStatus> {
        self.shared.rundown.start();
        Ok(())
    }

    fn close(&self) {
        self.flush();
    }
}

impl core::fmt::Debug for QueuedWorkItemNode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("QueuedWorkItem")
            .field("core", &self.core)
            .field("pending", &self.pending_count())
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for QueuedWorkItem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (**self).fmt(f)
    }
}
