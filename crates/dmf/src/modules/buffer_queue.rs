//! `BufferQueue`: a producer/consumer pair of buffer pools.
//!
//! The **producer** is a source [`BufferPool`] of empty buffers; the **consumer** is a sink that
//! holds filled buffers in FIFO order. The usual cycle is [`fetch`](BufferQueueNode::fetch)
//! (take an empty buffer) → fill it → [`enqueue`](BufferQueueNode::enqueue) →
//! [`dequeue`](BufferQueueNode::dequeue) (on the consuming side) → process →
//! [`reuse`](BufferQueueNode::reuse) (back to the producer, zeroed).
//!
//! # Configuration ([`BufferQueueConfig`])
//!
//! | Field | Meaning |
//! |---|---|
//! | `source_settings` | the producer's [`SourceSettings`]: buffer count, size, context size, look-aside, timers, pool type |
//! | `on_reuse_cleanup` | called with (data, context) each time a buffer goes back to the producer: [`reuse`](BufferQueueNode::reuse), [`flush`](BufferQueueNode::flush), close, or a dropped buffer; at the IRQL of that call (`<= DISPATCH_LEVEL` unless passive) |
//! | `on_timer_expired` | receives a buffer enqueued with [`enqueue_with_timer`](BufferQueueNode::enqueue_with_timer) whose timer expired, with its context (`PASSIVE_LEVEL`); the callee owns the buffer |
//!
//! Children: the producer (instance name "`BufferPoolProducer`") and the consumer
//! ("`BufferPoolConsumer`"), both with this module's passive-level option. They open before the
//! queue and close after it. Closing the queue flushes it.
//!
//! # Methods
//!
//! All are callable at `IRQL <= DISPATCH_LEVEL` (`PASSIVE_LEVEL` for a passive-level module);
//! none takes a module reference, as in DMF. [`count`](BufferQueueNode::count) counts the
//! consumer (pending work).
//!
//! # Example
//!
//! ```
//! # let session = wdk_sys::sim::Session::begin();
//! # let device_object = dmf::wdf::Memory::create(1, dmf::wdf::PoolType::NonPaged, None).unwrap();
//! # let device = device_object.handle().cast();
//! use dmf::core::ModuleAttributes;
//! use dmf::modules::buffer_pool::SourceSettings;
//! use dmf::modules::buffer_queue::{BufferQueue, BufferQueueConfig};
//!
//! let settings = SourceSettings { buffer_count: 4, buffer_size: 32, ..SourceSettings::default() };
//! let queue = BufferQueue::create(device, BufferQueueConfig::new(settings), ModuleAttributes::new())?;
//! let mut buffer = queue.fetch()?;
//! buffer.data_mut()[..5].copy_from_slice(b"hello");
//! queue.enqueue(buffer)?;
//! // The consuming side:
//! let work = queue.dequeue()?;
//! assert_eq!(&work.data()[..5], b"hello");
//! queue.reuse(work)?;
//! # drop(queue);
//! # drop(device_object);
//! # session.end();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Differences from DMF
//!
//! * Buffers are owned [`PoolBuffer`] values. Enqueuing or reusing a buffer that was not
//!   fetched from this queue returns [`PutError`] (`ForeignBuffer`) with the buffer; DMF accepts
//!   it and corrupts its pools. A dropped buffer goes back to the producer (cleanup runs).
//! * `enqueue_with_timer` passes a `usize` context; the expiry callback is fixed at creation
//!   (`on_timer_expired`) instead of being passed on every call. On a queue created without
//!   one, `enqueue_with_timer` is refused ([`PutErrorKind::NoExpiryCallback`],
//!   `STATUS_INVALID_PARAMETER`, as DMF refuses a missing callback) and the buffer handed back.
//! * `dequeue_with_memory_descriptor` is [`PoolBuffer::memory`] on the dequeued buffer.

use wdk_sys::WDFOBJECT;

use super::buffer_pool::{
    BufferPool, BufferPoolConfig, BufferPoolMode, EnumerationDisposition, ExpiryCallback,
    PoolBuffer, PutError, PutErrorKind, ReturnCallback, SourceSettings,
};
use crate::core::{Module, ModuleAttributes, ModuleCore, ModuleNode, OpenOption};
use crate::error::ModuleError;
use crate::wdf::NtStatus;

/// Configuration of a [`BufferQueue`] (DMF's `DMF_CONFIG_BufferQueue`).
pub struct BufferQueueConfig {
    /// The producer's settings.
    pub source_settings: SourceSettings,
    /// See the module documentation.
    pub on_reuse_cleanup: Option<ReturnCallback>,
    /// See the module documentation.
    pub on_timer_expired: Option<ExpiryCallback>,
}

impl BufferQueueConfig {
    /// A queue with `source_settings` and no callbacks.
    #[must_use]
    pub fn new(source_settings: SourceSettings) -> Self {
        Self {
            source_settings,
            on_reuse_cleanup: None,
            on_timer_expired: None,
        }
    }
}

impl core::fmt::Debug for BufferQueueConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BufferQueueConfig")
            .field("source_settings", &self.source_settings)
            .finish_non_exhaustive()
    }
}

/// The module object of a [`BufferQueue`].
pub struct BufferQueueNode {
    core: ModuleCore,
    producer: BufferPool,
    consumer: BufferPool,
}

/// A `BufferQueue` module (see the [module documentation](self)).
pub struct BufferQueue(Module<BufferQueueNode>);

impl AsRef<Module<BufferQueueNode>> for BufferQueue {
    fn as_ref(&self) -> &Module<BufferQueueNode> {
        &self.0
    }
}

impl core::ops::Deref for BufferQueue {
    type Target = BufferQueueNode;

    fn deref(&self) -> &BufferQueueNode {
        &self.0
    }
}

impl BufferQueue {
    /// Creates the queue and its two pools; `parent` is the device. A dynamic module (the
    /// default attributes) is open when this returns.
    pub fn create(
        parent: WDFOBJECT,
        config: BufferQueueConfig,
        attributes: ModuleAttributes,
    ) -> Result<Self, ModuleError> {
        Ok(Self(Module::new(BufferQueueNode::new(
            parent, config, attributes,
        )?)?))
    }
}

impl BufferQueueNode {
    pub(crate) fn new(
        parent: WDFOBJECT,
        config: BufferQueueConfig,
        attributes: ModuleAttributes,
    ) -> Result<Self, ModuleError> {
        let passive_level = attributes.passive_level;
        config.source_settings.validate(passive_level)?;
        let core = ModuleCore::new("BufferQueue", OpenOption::OpenCreate, true, attributes)?;
        let producer = BufferPool::create(
            parent,
            BufferPoolConfig {
                mode: BufferPoolMode::Source(config.source_settings),
                on_buffer_returned: config.on_reuse_cleanup,
                on_timer_expired: None,
            },
            ModuleAttributes::child_of(passive_level, "BufferPoolProducer"),
        )?;
        let consumer = BufferPool::create(
            parent,
            BufferPoolConfig {
                mode: BufferPoolMode::Sink {
                    capacity: config.source_settings.buffer_count,
                },
                on_buffer_returned: None,
                on_timer_expired: config.on_timer_expired,
            },
            ModuleAttributes::child_of(passive_level, "BufferPoolConsumer"),
        )?;
        Ok(Self {
            core,
            producer,
            consumer,
        })
    }

    fn check_ours(&self, buffer: PoolBuffer) -> Result<PoolBuffer, PutError> {
        if buffer.belongs_to(&self.producer) {
            Ok(buffer)
        } else {
            Err(PutError {
                kind: PutErrorKind::ForeignBuffer,
                buffer,
            })
        }
    }

    /// Takes an empty buffer from the producer (`DMF_BufferQueue_Fetch`);
    /// `STATUS_UNSUCCESSFUL` when none is free.
    pub fn fetch(&self) -> Result<PoolBuffer, NtStatus> {
        self.producer.get()
    }

    /// Appends a filled buffer to the consumer (`DMF_BufferQueue_Enqueue`).
    pub fn enqueue(&self, buffer: PoolBuffer) -> Result<(), PutError> {
        self.consumer.put(self.check_ours(buffer)?)
    }

    /// Puts a filled buffer at the head of the consumer, to be dequeued next
    /// (`DMF_BufferQueue_EnqueueAtHead`).
    pub fn enqueue_at_head(&self, buffer: PoolBuffer) -> Result<(), PutError> {
        self.consumer.put_at_head(self.check_ours(buffer)?)
    }

    /// Appends a filled buffer that expires after `timeout_ms` (`DMF_BufferQueue_EnqueueWithTimer`):
    /// if it is still queued then, it goes to `on_timer_expired` with `context`. The producer
    /// must have `create_with_timer`, and the queue an `on_timer_expired` callback
    /// (`NoExpiryCallback` otherwise).
    pub fn enqueue_with_timer(
        &self,
        buffer: PoolBuffer,
        timeout_ms: u32,
        context: usize,
    ) -> Result<(), PutError> {
        self.consumer
            .put_in_sink_with_timer(self.check_ours(buffer)?, timeout_ms, context)
    }

    /// Takes the oldest filled buffer (`DMF_BufferQueue_Dequeue`); `STATUS_UNSUCCESSFUL` when
    /// the consumer is empty.
    pub fn dequeue(&self) -> Result<PoolBuffer, NtStatus> {
        self.consumer.get()
    }

    /// Returns a buffer to the producer (`DMF_BufferQueue_Reuse`): the cleanup callback sees
    /// it, then its data and context are zeroed.
    pub fn reuse(&self, buffer: PoolBuffer) -> Result<(), PutError> {
        self.producer.put(self.check_ours(buffer)?)
    }

    /// Filled buffers waiting in the consumer (`DMF_BufferQueue_Count`).
    #[must_use]
    pub fn count(&self) -> usize {
        self.consumer.count()
    }

    /// Free buffers in the producer.
    #[must_use]
    pub fn free_count(&self) -> usize {
        self.producer.count()
    }

    /// Walks the consumer (`DMF_BufferQueue_Enumerate`); see [`BufferPoolNode::enumerate`](super::buffer_pool::BufferPoolNode::enumerate).
    pub fn enumerate(
        &self,
        callback: impl FnMut(&mut [u8], &mut [u8]) -> EnumerationDisposition,
    ) -> Option<PoolBuffer> {
        self.consumer.enumerate(callback)
    }

    /// Moves every queued buffer back to the producer (`DMF_BufferQueue_Flush`); the cleanup
    /// callback runs for each. A buffer whose timer is expiring right now is left to its expiry.
    pub fn flush(&self) {
        while let Ok(buffer) = self.consumer.get() {
            // Only our own buffers can be in the consumer.
            let _ = self.producer.put(buffer);
        }
    }

    /// Data bytes per buffer.
    #[must_use]
    pub fn buffer_size(&self) -> usize {
        self.producer.buffer_size()
    }
}

impl ModuleNode for BufferQueueNode {
    fn core(&self) -> &ModuleCore {
        &self.core
    }

    fn child_count(&self) -> usize {
        2
    }

    fn child(&self, index: usize) -> Option<&dyn ModuleNode> {
        match index {
            0 => Some(self.producer.node()),
            1 => Some(self.consumer.node()),
            _ => None,
        }
    }

    fn close(&self) {
        self.flush();
    }
}

impl core::fmt::Debug for BufferQueueNode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BufferQueue")
            .field("core", &self.core)
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for BufferQueue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (**self).fmt(f)
    }
}
