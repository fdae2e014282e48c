//! `BufferPool`: a thread-safe list of fixed-size buffers, each with a client context area.
//!
//! A **source** pool creates its buffers when it opens (`buffer_count` of them, each
//! `buffer_size` bytes of data plus `buffer_context_size` bytes of client context) and lends
//! them out with [`BufferPool::get`]. A **sink** pool starts empty and holds buffers that came
//! from any source pool, optionally each with an expiry timer
//! ([`BufferPool::put_in_sink_with_timer`]). A buffer is in at most one pool's list at a time;
//! outside every list it is an owned [`PoolBuffer`] value.
//!
//! # Configuration ([`BufferPoolConfig`])
//!
//! | Field | Meaning |
//! |---|---|
//! | `mode` | [`BufferPoolMode::Source`] with its [`SourceSettings`], or [`BufferPoolMode::Sink`] |
//! | `SourceSettings::buffer_count` | buffers created at open |
//! | `SourceSettings::buffer_size` | data bytes per buffer (> 0) |
//! | `SourceSettings::buffer_context_size` | client context bytes per buffer (may be 0) |
//! | `SourceSettings::enable_look_aside` | create more buffers on demand when the list is empty; extra buffers are freed when returned |
//! | `SourceSettings::create_with_timer` | give each buffer a timer, so sinks can expire it |
//! | `SourceSettings::pool_type` | pool of the buffers; paged requires the passive-level option |
//! | `on_buffer_returned` | source: called with (data, context) each time a buffer comes back, before it is zeroed |
//! | `on_timer_expired` | sink: receives a buffer whose timer expired, with the context given to `put_in_sink_with_timer` |
//!
//! # Methods and IRQL
//!
//! Every method takes the module lock: a spin lock (callable at `IRQL <= DISPATCH_LEVEL`) unless
//! the module was created with the passive-level option (then `PASSIVE_LEVEL` only, which is
//! also when dropping a [`PoolBuffer`] of that pool is allowed). No method takes a module
//! reference (as in DMF); calling them on a closed pool is harmless: `get` fails and returned
//! buffers are freed. Nothing allocates per call, except look-aside growth.
//!
//! * [`BufferPool::get`]: takes the head buffer; `STATUS_UNSUCCESSFUL` if none.
//! * [`BufferPool::put`] / [`BufferPool::put_at_head`]: returns a buffer (source: data and
//!   context are zeroed), or inserts it into a sink (FIFO / LIFO).
//! * [`BufferPool::put_in_sink_with_timer`]: sink only; the buffer expires after the given time
//!   and is handed to `on_timer_expired` unless taken out first.
//! * [`BufferPool::enumerate`]: walks the list under the lock; the callback decides per buffer
//!   ([`EnumerationDisposition`]).
//! * [`BufferPool::count`]: buffers currently in the list.
//!
//! # Example
//!
//! ```
//! # let session = wdk_sys::sim::Session::begin();
//! # let device_object = dmf::wdf::Memory::create(1, dmf::wdf::PoolType::NonPaged, None).unwrap();
//! # let device = device_object.handle().cast();
//! use dmf::core::ModuleAttributes;
//! use dmf::modules::buffer_pool::{BufferPool, BufferPoolConfig, SourceSettings};
//!
//! let settings = SourceSettings {
//!     buffer_count: 8,
//!     buffer_size: 64,
//!     buffer_context_size: 4,
//!     ..SourceSettings::default()
//! };
//! let pool = BufferPool::create(device, BufferPoolConfig::source(settings), ModuleAttributes::new())?;
//! let mut buffer = pool.get()?;
//! buffer.data_mut()[0] = 7;
//! buffer.context_mut().copy_from_slice(&1u32.to_le_bytes());
//! assert_eq!(pool.count(), 7);
//! pool.put(buffer)?; // or just drop it: it goes back to its pool
//! assert_eq!(pool.count(), 8);
//! # drop(pool);
//! # drop(device_object);
//! # session.end();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A buffer is a value: it cannot be put twice.
//!
//! ```compile_fail
//! # fn f(pool: &dmf::modules::BufferPool) {
//! let buffer = pool.get().unwrap();
//! let _ = pool.put(buffer);
//! let _ = pool.put(buffer); // error: use of moved value
//! # }
//! ```
//!
//! # Differences from DMF
//!
//! * A buffer is an owned [`PoolBuffer`], not a pointer: it cannot be put twice, and it knows
//!   its source pool. Dropping it returns it there. Putting it into a *source* pool it does not
//!   come from returns [`PutError`] with the buffer (DMF asserts and corrupts the pool's
//!   accounting). There are no overrun sentinels: Rust slices are bounds checked.
//! * The timer-expiry callback is fixed when the sink is created (`on_timer_expired`); each
//!   `put_in_sink_with_timer` passes a `usize` context instead of a callback pointer.
//! * `enumerate`, as DMF, stops an armed timer before showing its buffer to the callback and
//!   skips a buffer whose timer cannot be stopped (it is firing, or fired and its expiry
//!   handler waits for the pool lock): the expiry owns that buffer, and the callback never sees
//!   it. `Continue`/`Stop` restart the timer with the time that was left.
//! * `enumerate` on a source pool does nothing and returns `None` (DMF asserts: enumeration is
//!   for sinks); [`BufferPool::try_enumerate`] says so with `STATUS_INVALID_DEVICE_REQUEST`.
//! * `put_in_sink_with_timer` on a sink created without `on_timer_expired` is refused
//!   ([`PutErrorKind::NoExpiryCallback`], `STATUS_INVALID_PARAMETER`, as DMF refuses a missing
//!   callback) instead of letting the buffer expire into nothing.
//! * A closed sink refuses buffers (`PoolClosed`, with the buffer) instead of keeping them in a
//!   list nobody drains.
//! * When a sink closes, buffers still in it go back to their source pool (DMF frees them, so
//!   the source permanently loses them). Buffers returned to a closed source are freed.
//! * `create_with_timer` and `enable_look_aside` together are allowed (DMF refuses this in
//!   user mode only).
//! * `get_with_memory` / `get_with_memory_descriptor` are [`PoolBuffer::memory`] on the returned
//!   buffer; `context_get` / `parameters_get` are [`PoolBuffer::context`],
//!   [`BufferPool::buffer_size`] and [`BufferPool::context_size`].

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::{Arc, Weak};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use wdk_sys::WDFOBJECT;

use crate::core::{Module, ModuleAttributes, ModuleCore, ModuleLock, ModuleNode, OpenOption};
use crate::error::{ConfigError, ModuleError};
use crate::wdf::entry::interrupt_time_100ns;
use crate::wdf::event::{Event, EventKind};
use crate::wdf::spin_lock::SpinLock;
use crate::wdf::timer::{CallbackLevel, Timer, TimerConfig};
use crate::wdf::{Memory, NtStatus, PoolType};

/// Settings of a source pool (DMF's `BufferPool_SourceSettings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceSettings {
    /// Buffers created when the pool opens.
    pub buffer_count: usize,
    /// Data bytes per buffer; must be greater than zero.
    pub buffer_size: usize,
    /// Client context bytes per buffer (zero: no context).
    pub buffer_context_size: usize,
    /// Create a buffer on demand when the list is empty; buffers beyond `buffer_count` are freed
    /// when they come back.
    pub enable_look_aside: bool,
    /// Give each buffer a timer so a sink can expire it.
    pub create_with_timer: bool,
    /// Pool the buffers are allocated from. Paged pool requires the passive-level option.
    pub pool_type: PoolType,
}

impl SourceSettings {
    /// Checks the rules DMF asserts; `passive_level` is the module option.
    pub fn validate(&self, passive_level: bool) -> Result<(), ConfigError> {
        if self.buffer_size == 0 {
            return Err(ConfigError::ZeroBufferSize);
        }
        if self.buffer_count == 0 && !self.enable_look_aside {
            return Err(ConfigError::NoBuffers);
        }
        if self.create_with_timer && self.buffer_count == 0 {
            return Err(ConfigError::TimerNeedsPreallocatedBuffers);
        }
        if self.pool_type.is_paged() && !passive_level {
            return Err(ConfigError::PagedPoolRequiresPassiveLevel);
        }
        Ok(())
    }
}

/// Source or sink (DMF's `BufferPool_Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferPoolMode {
    /// Creates and owns buffers.
    Source(SourceSettings),
    /// Holds buffers from any source. `capacity` is how many it can hold without allocating
    /// (it still accepts more, growing its list once).
    Sink {
        /// Entries reserved when the sink opens.
        capacity: usize,
    },
}

/// Called when a buffer comes back to its source, with its data and context, before they are
/// zeroed (used by `BufferQueue` for its reuse-cleanup callback).
pub type ReturnCallback = Box<dyn Fn(&mut [u8], &mut [u8]) + Send + Sync>;

/// Receives a buffer whose timer expired in a sink, with the context passed to
/// [`BufferPool::put_in_sink_with_timer`]. Runs at `PASSIVE_LEVEL`; the callee owns the buffer.
pub type ExpiryCallback = Box<dyn Fn(PoolBuffer, usize) + Send + Sync>;

/// Configuration of a [`BufferPool`] (DMF's `DMF_CONFIG_BufferPool`).
pub struct BufferPoolConfig {
    /// Source (with its settings) or sink.
    pub mode: BufferPoolMode,
    /// Source only: see [`ReturnCallback`].
    pub on_buffer_returned: Option<ReturnCallback>,
    /// Sink only: see [`ExpiryCallback`]. Without it an expired buffer goes back to its source.
    pub on_timer_expired: Option<ExpiryCallback>,
}

impl BufferPoolConfig {
    /// A source pool with `settings` and no callbacks.
    #[must_use]
    pub fn source(settings: SourceSettings) -> Self {
        Self {
            mode: BufferPoolMode::Source(settings),
            on_buffer_returned: None,
            on_timer_expired: None,
        }
    }

    /// A sink pool with room for `capacity` buffers and no callbacks.
    #[must_use]
    pub fn sink(capacity: usize) -> Self {
        Self {
            mode: BufferPoolMode::Sink { capacity },
            on_buffer_returned: None,
            on_timer_expired: None,
        }
    }
}

impl core::fmt::Debug for BufferPoolConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BufferPoolConfig")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// What [`BufferPool::enumerate`]'s callback wants done with the buffer it was shown
/// (DMF's `BufferPool_EnumerationDispositionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnumerationDisposition {
    /// Leave it (its timer keeps running) and go on.
    ContinueEnumeration,
    /// Leave it and stop.
    StopEnumeration,
    /// Take it out of the list (its timer is cancelled) and stop: `enumerate` returns it.
    RemoveAndStopEnumeration,
    /// Cancel its timer, leave it in the list, stop.
    StopTimerAndStopEnumeration,
    /// Cancel its timer, leave it in the list, go on.
    StopTimerAndContinueEnumeration,
    /// Restart its timer with its full original period, stop.
    ResetTimerAndStopEnumeration,
    /// Restart its timer with its full original period, go on.
    ResetTimerAndContinueEnumeration,
}

/// Why a buffer was not accepted; carries the buffer back (nothing is lost).
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct PutError {
    /// What was wrong.
    pub kind: PutErrorKind,
    /// The buffer, still owned by the caller.
    pub buffer: PoolBuffer,
}

impl PutError {
    /// The `NTSTATUS` equivalent.
    #[must_use]
    pub fn status(&self) -> NtStatus {
        self.kind.status()
    }

    /// The buffer back.
    #[must_use]
    pub fn into_buffer(self) -> PoolBuffer {
        self.buffer
    }
}

/// What was wrong with a put.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PutErrorKind {
    /// The buffer comes from another source pool (or another queue's producer).
    #[error("the buffer does not belong to this pool")]
    ForeignBuffer,
    /// A timer put into a source pool.
    #[error("only a sink pool can hold buffers with timers")]
    NotASink,
    /// A timer put with a buffer whose source was not created with `create_with_timer`.
    #[error("the buffer has no timer (its source pool lacks create_with_timer)")]
    NoTimer,
    /// The sink could not grow its list.
    #[error("no memory to hold the buffer")]
    InsufficientResources,
    /// The sink is closed (not open yet, or closed already).
    #[error("the pool is closed")]
    PoolClosed,
    /// A timer put into a sink created without `on_timer_expired`: nobody would receive the
    /// buffer when it expires.
    #[error("the sink has no expiry callback (on_timer_expired)")]
    NoExpiryCallback,
}

impl PutErrorKind {
    /// The `NTSTATUS` equivalent.
    #[must_use]
    pub const fn status(self) -> NtStatus {
        match self {
            Self::ForeignBuffer | Self::NotASink | Self::NoTimer | Self::NoExpiryCallback => {
                NtStatus::INVALID_PARAMETER
            }
            Self::InsufficientResources => NtStatus::INSUFFICIENT_RESOURCES,
            Self::PoolClosed => NtStatus::INVALID_DEVICE_STATE,
        }
    }
}

/// Where a timer-capable buffer currently sits, read by its expiry handler: the sink, and the
/// sink's gate.
struct TimerLink {
    sink: SpinLock<Option<(Weak<PoolShared>, Arc<ExpiryGate>)>>,
}

/// Expiry handlers of a sink that may hold a strong reference to it. A handler enters before it
/// upgrades its weak reference and leaves after dropping the strong one; close shuts the gate
/// and waits for it to empty, so that a sink (which owns the module lock) is never freed by a
/// timer's handler on a framework thread after its owner dropped it. Owns no framework object.
struct ExpiryGate {
    active: AtomicUsize,
    closed: AtomicBool,
    idle: Event,
}

impl ExpiryGate {
    fn new() -> Self {
        Self {
            active: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            idle: Event::new(EventKind::Notification, false),
        }
    }

    /// Whether a handler may go on (the sink is not closing). Pair with `leave` if so.
    fn enter(&self) -> bool {
        self.active.fetch_add(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.leave();
            return false;
        }
        true
    }

    fn leave(&self) {
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.set();
        }
    }

    /// Shuts the gate and waits (`PASSIVE_LEVEL`) until no handler is inside. A handler that
    /// enters after the shut sees it and leaves without touching the sink (the increment and
    /// the flag are both sequentially consistent: either this wait sees the handler, or the
    /// handler sees the flag).
    fn shut_and_wait(&self) {
        self.closed.store(true, Ordering::SeqCst);
        loop {
            self.idle.clear();
            if self.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            self.idle.wait();
        }
    }

    fn reopen(&self) {
        self.closed.store(false, Ordering::SeqCst);
    }
}

struct BufferTimer {
    timer: Timer,
    link: Arc<TimerLink>,
}

/// One buffer's memory and identity: what lists hold.
struct Storage {
    data: Memory,
    context: Option<Memory>,
    origin: Arc<PoolShared>,
    generation: u64,
    timer: Option<BufferTimer>,
}

impl Storage {
    fn zero(&mut self) {
        self.data.as_mut_slice().fill(0);
        if let Some(context) = &mut self.context {
            context.as_mut_slice().fill(0);
        }
    }

    fn parts_mut(&mut self) -> (&mut [u8], &mut [u8]) {
        let context = match &mut self.context {
            Some(context) => context.as_mut_slice(),
            None => &mut [],
        };
        (self.data.as_mut_slice(), context)
    }
}

/// A buffer taken from a pool. Exposes its data and context; goes back to its source pool when
/// dropped (or when put back explicitly).
pub struct PoolBuffer {
    storage: Option<Storage>,
}

impl PoolBuffer {
    fn new(storage: Storage) -> Self {
        Self {
            storage: Some(storage),
        }
    }

    fn storage(&self) -> &Storage {
        self.storage
            .as_ref()
            .expect("a PoolBuffer holds its storage until dropped")
    }

    fn storage_mut(&mut self) -> &mut Storage {
        self.storage
            .as_mut()
            .expect("a PoolBuffer holds its storage until dropped")
    }

    fn into_storage(mut self) -> Storage {
        self.storage
            .take()
            .expect("a PoolBuffer holds its storage until dropped")
    }

    /// The data bytes (always the configured buffer size).
    #[must_use]
    pub fn data(&self) -> &[u8] {
        self.storage().data.as_slice()
    }

    /// The data bytes, writable.
    #[must_use]
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.storage_mut().data.as_mut_slice()
    }

    /// The client context bytes (empty if the pool has no context).
    #[must_use]
    pub fn context(&self) -> &[u8] {
        self.storage()
            .context
            .as_ref()
            .map_or(&[], |context| context.as_slice())
    }

    /// The client context bytes, writable.
    #[must_use]
    pub fn context_mut(&mut self) -> &mut [u8] {
        match &mut self.storage_mut().context {
            Some(context) => context.as_mut_slice(),
            None => &mut [],
        }
    }

    /// Data and context at once, both writable.
    #[must_use]
    pub fn parts_mut(&mut self) -> (&mut [u8], &mut [u8]) {
        self.storage_mut().parts_mut()
    }

    /// The framework memory object of the data bytes (DMF's `GetWithMemory`), e.g. to format a
    /// request with it.
    #[must_use]
    pub fn memory(&self) -> &Memory {
        &self.storage().data
    }

    /// Data size in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.storage().data.len()
    }

    /// Whether the data is empty (never: buffer sizes are validated).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this buffer was created by `pool` (its source).
    #[must_use]
    pub fn belongs_to(&self, pool: &BufferPool) -> bool {
        Arc::ptr_eq(&self.storage().origin, &pool.node().shared)
    }

    /// Whether this buffer has a timer (its source has `create_with_timer`).
    #[must_use]
    pub fn has_timer(&self) -> bool {
        self.storage().timer.is_some()
    }
}

impl Drop for PoolBuffer {
    fn drop(&mut self) {
        if let Some(storage) = self.storage.take() {
            let origin = Arc::clone(&storage.origin);
            origin.return_to_source(storage, false);
        }
    }
}

impl core::fmt::Debug for PoolBuffer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PoolBuffer")
            .field("len", &self.len())
            .field("context_len", &self.context().len())
            .finish()
    }
}

/// An armed expiry in a sink.
#[derive(Clone, Copy)]
struct Expiry {
    period_ms: u32,
    context: usize,
    /// Interrupt time (100 ns units) when the timer was (re)started.
    armed_at: u64,
}

impl Expiry {
    fn armed(period_ms: u32, context: usize) -> Self {
        Self {
            period_ms,
            context,
            armed_at: interrupt_time_100ns(),
        }
    }

    /// What is left of the period now (zero once it has passed).
    fn remaining(&self) -> core::time::Duration {
        let elapsed = interrupt_time_100ns().saturating_sub(self.armed_at);
        let period = u64::from(self.period_ms) * 10_000;
        core::time::Duration::from_nanos(period.saturating_sub(elapsed) * 100)
    }

    fn period(&self) -> core::time::Duration {
        core::time::Duration::from_millis(u64::from(self.period_ms))
    }
}

struct Slot {
    storage: Storage,
    expiry: Option<Expiry>,
}

/// The list and its bookkeeping, protected by the module lock.
struct PoolList {
    entries: VecDeque<Slot>,
    /// Open: a closed look-aside source does not create buffers.
    open: bool,
    /// Look-aside buffers created beyond `buffer_count` and not yet freed.
    additional: usize,
    /// Buffers created by this (source) pool and not freed.
    created: usize,
}

struct PoolShared {
    list: ModuleLock<PoolList>,
    source: Option<SourceSettings>,
    sink_capacity: usize,
    parent: ParentObject,
    on_returned: Option<ReturnCallback>,
    on_expired: Option<ExpiryCallback>,
    /// Bumped at each close: buffers of an older generation are freed when they come back.
    generation: AtomicU64,
    /// Expiry handlers holding this sink (see [`ExpiryGate`]).
    expiry_gate: Arc<ExpiryGate>,
}

/// The device object buffers' timers are parented to (only read, at buffer creation).
struct ParentObject(usize);

impl ParentObject {
    fn get(&self) -> WDFOBJECT {
        self.0 as WDFOBJECT
    }
}

impl PoolShared {
    fn new_storage(self: &Arc<Self>, settings: &SourceSettings) -> Result<Storage, NtStatus> {
        let data = Memory::create(settings.buffer_size, settings.pool_type, None)?;
        let context = if settings.buffer_context_size > 0 {
            Some(Memory::create(
                settings.buffer_context_size,
                settings.pool_type,
                None,
            )?)
        } else {
            None
        };
        let timer = if settings.create_with_timer {
            let link = Arc::new(TimerLink {
                sink: SpinLock::create(None)?,
            });
            // Weak: the framework frees the handler when it finally deletes the timer, maybe
            // on its own thread after the buffer was freed; the link owns a spin lock.
            let handler_link = Arc::downgrade(&link);
            let timer = Timer::new(
                self.parent.get(),
                TimerConfig {
                    period: None,
                    level: CallbackLevel::Passive,
                },
                move || {
                    if let Some(link) = handler_link.upgrade() {
                        expire(&link);
                    }
                },
            )?;
            Some(BufferTimer { timer, link })
        } else {
            None
        };
        Ok(Storage {
            data,
            context,
            origin: Arc::clone(self),
            generation: self.generation.load(Ordering::Acquire),
            timer,
        })
    }

    /// A buffer comes back to the pool that created it (put or drop).
    fn return_to_source(&self, mut storage: Storage, at_head: bool) {
        let Some(settings) = &self.source else {
            return;
        };
        if let Some(callback) = &self.on_returned {
            let (data, context) = storage.parts_mut();
            callback(data, context);
        }
        storage.zero();
        let mut list = self.list.lock();
        let free = if storage.generation != self.generation.load(Ordering::Acquire) {
            // Lent out before the pool closed: not counted any more.
            true
        } else if settings.enable_look_aside && list.additional > 0 {
            list.additional -= 1;
            list.created -= 1;
            true
        } else if !room_for_one(&mut list.entries) {
            list.created -= 1;
            true
        } else {
            false
        };
        if free {
            drop(list);
            drop(storage);
            return;
        }
        let slot = Slot {
            storage,
            expiry: None,
        };
        if at_head {
            list.entries.push_front(slot);
        } else {
            list.entries.push_back(slot);
        }
    }
}

/// Room for one more entry in `entries` (allocates only past the capacity reserved at open,
/// which look-aside growth can exceed).
fn room_for_one(entries: &mut VecDeque<Slot>) -> bool {
    entries.len() < entries.capacity() || entries.try_reserve(1).is_ok()
}

/// Removes the first entry whose timer can be stopped (or that has none).
fn remove_head(list: &mut PoolList) -> Option<Storage> {
    // Fast path: the head has no armed timer (always so in a source pool).
    if list
        .entries
        .front()
        .is_some_and(|slot| slot.expiry.is_none())
    {
        return list.entries.pop_front().map(|slot| slot.storage);
    }
    let index = list
        .entries
        .iter()
        .position(|slot| match (&slot.expiry, &slot.storage.timer) {
            (Some(_), Some(timer)) => timer.timer.stop(false),
            _ => true,
        })?;
    list.entries.remove(index).map(|slot| slot.storage)
}

/// Expiry handler of one buffer's timer (`PASSIVE_LEVEL`).
fn expire(link: &Arc<TimerLink>) {
    let Some((sink, gate)) = link.sink.lock().take() else {
        return;
    };
    if !gate.enter() {
        return;
    }
    if let Some(sink) = sink.upgrade() {
        expire_in(&sink, link);
    }
    // The strong reference is gone: close may go on.
    gate.leave();
}

/// The expiry of the buffer of `link`, if it is still in `sink`.
fn expire_in(sink: &Arc<PoolShared>, link: &Arc<TimerLink>) {
    let mut list = sink.list.lock();
    let found = list.entries.iter().position(|slot| {
        slot.expiry.is_some()
            && slot
                .storage
                .timer
                .as_ref()
                .is_some_and(|timer| Arc::ptr_eq(&timer.link, link))
    });
    let Some(index) = found else {
        return;
    };
    let Some(slot) = list.entries.remove(index) else {
        return;
    };
    drop(list);
    let context = slot.expiry.map_or(0, |expiry| expiry.context);
    let buffer = PoolBuffer::new(slot.storage);
    match &sink.on_expired {
        Some(callback) => callback(buffer, context),
        None => drop(buffer),
    }
}

/// The module object of a [`BufferPool`].
pub struct BufferPoolNode {
    core: ModuleCore,
    shared: Arc<PoolShared>,
}

/// A `BufferPool` module (see the [module documentation](self)).
pub struct BufferPool(Module<BufferPoolNode>);

impl AsRef<Module<BufferPoolNode>> for BufferPool {
    fn as_ref(&self) -> &Module<BufferPoolNode> {
        &self.0
    }
}

impl core::ops::Deref for BufferPool {
    type Target = BufferPoolNode;

    fn deref(&self) -> &BufferPoolNode {
        &self.0
    }
}

impl BufferPool {
    /// Creates the pool; `parent` is the device its buffers' timers belong to. A dynamic module
    /// (the default attributes) is open when this returns. Invalid settings fail with a typed
    /// error before anything is allocated.
    pub fn create(
        parent: WDFOBJECT,
        config: BufferPoolConfig,
        attributes: ModuleAttributes,
    ) -> Result<Self, ModuleError> {
        if let BufferPoolMode::Source(settings) = &config.mode {
            settings.validate(attributes.passive_level)?;
        }
        let passive_level = attributes.passive_level;
        let core = ModuleCore::new("BufferPool", OpenOption::OpenCreate, true, attributes)?;
        let list = PoolList {
            entries: VecDeque::new(),
            open: false,
            additional: 0,
            created: 0,
        };
        let (source, sink_capacity) = match config.mode {
            BufferPoolMode::Source(settings) => (Some(settings), 0),
            BufferPoolMode::Sink { capacity } => (None, capacity),
        };
        let shared = Arc::new(PoolShared {
            list: ModuleLock::create(list, passive_level)?,
            source,
            sink_capacity,
            parent: ParentObject(parent as usize),
            on_returned: config.on_buffer_returned,
            on_expired: config.on_timer_expired,
            generation: AtomicU64::new(0),
            expiry_gate: Arc::new(ExpiryGate::new()),
        });
        Ok(Self(Module::new(BufferPoolNode { core, shared })?))
    }

    pub(crate) fn node(&self) -> &BufferPoolNode {
        &self.0
    }
}

impl BufferPoolNode {
    /// Whether this is a sink pool.
    #[must_use]
    pub fn is_sink(&self) -> bool {
        self.shared.source.is_none()
    }

    /// Data bytes per buffer (0 for a sink).
    #[must_use]
    pub fn buffer_size(&self) -> usize {
        self.shared.source.map_or(0, |s| s.buffer_size)
    }

    /// Context bytes per buffer (0 for a sink).
    #[must_use]
    pub fn context_size(&self) -> usize {
        self.shared.source.map_or(0, |s| s.buffer_context_size)
    }

    /// Takes the buffer at the head of the list (`DMF_BufferPool_Get`). In look-aside mode an
    /// empty source creates a new buffer. Fails with `STATUS_UNSUCCESSFUL` when there is none
    /// (a sink whose buffers all have timers that are firing right now counts as empty).
    pub fn get(&self) -> Result<PoolBuffer, NtStatus> {
        let mut list = self.shared.list.lock();
        if let Some(storage) = remove_head(&mut list) {
            return Ok(PoolBuffer::new(storage));
        }
        let Some(settings) = self
            .shared
            .source
            .filter(|s| s.enable_look_aside && list.open)
        else {
            return Err(NtStatus::UNSUCCESSFUL);
        };
        list.additional += 1;
        list.created += 1;
        drop(list);
        match self.shared.new_storage(&settings) {
            Ok(storage) => Ok(PoolBuffer::new(storage)),
            Err(status) => {
                let mut list = self.shared.list.lock();
                list.additional -= 1;
                list.created -= 1;
                Err(status)
            }
        }
    }

    fn check_owner(&self, buffer: PoolBuffer) -> Result<PoolBuffer, PutError> {
        if self.shared.source.is_some() && !Arc::ptr_eq(&buffer.storage().origin, &self.shared) {
            return Err(PutError {
                kind: PutErrorKind::ForeignBuffer,
                buffer,
            });
        }
        Ok(buffer)
    }

    /// Why a sink cannot take one more buffer now, if it cannot.
    fn cannot_insert(list: &mut PoolList) -> Option<PutErrorKind> {
        if !list.open {
            Some(PutErrorKind::PoolClosed)
        } else if !room_for_one(&mut list.entries) {
            Some(PutErrorKind::InsufficientResources)
        } else {
            None
        }
    }

    fn insert(&self, buffer: PoolBuffer, at_head: bool) -> Result<(), PutError> {
        let buffer = self.check_owner(buffer)?;
        if self.shared.source.is_some() {
            self.shared.return_to_source(buffer.into_storage(), at_head);
            return Ok(());
        }
        let mut list = self.shared.list.lock();
        if let Some(kind) = Self::cannot_insert(&mut list) {
            drop(list);
            return Err(PutError { kind, buffer });
        }
        let slot = Slot {
            storage: buffer.into_storage(),
            expiry: None,
        };
        if at_head {
            list.entries.push_front(slot);
        } else {
            list.entries.push_back(slot);
        }
        Ok(())
    }

    /// Adds a buffer at the tail (`DMF_BufferPool_Put`). A source pool accepts only its own
    /// buffers and zeroes their data and context (after closing it frees them); a sink accepts
    /// buffers from any source while it is open.
    pub fn put(&self, buffer: PoolBuffer) -> Result<(), PutError> {
        self.insert(buffer, false)
    }

    /// Adds a buffer at the head, so the next `get` returns it (`DMF_BufferPool_PutAtHead`).
    pub fn put_at_head(&self, buffer: PoolBuffer) -> Result<(), PutError> {
        self.insert(buffer, true)
    }

    /// Sink only: adds a buffer at the tail and starts its timer
    /// (`DMF_BufferPool_PutInSinkWithTimer`). If the buffer is still in this sink `timeout_ms`
    /// later, it is removed and passed, with `context`, to the sink's `on_timer_expired`
    /// callback at `PASSIVE_LEVEL`.
    pub fn put_in_sink_with_timer(
        &self,
        buffer: PoolBuffer,
        timeout_ms: u32,
        context: usize,
    ) -> Result<(), PutError> {
        if self.shared.source.is_some() {
            return Err(PutError {
                kind: PutErrorKind::NotASink,
                buffer,
            });
        }
        if !buffer.has_timer() {
            return Err(PutError {
                kind: PutErrorKind::NoTimer,
                buffer,
            });
        }
        if self.shared.on_expired.is_none() {
            return Err(PutError {
                kind: PutErrorKind::NoExpiryCallback,
                buffer,
            });
        }
        let mut list = self.shared.list.lock();
        if let Some(kind) = Self::cannot_insert(&mut list) {
            drop(list);
            return Err(PutError { kind, buffer });
        }
        let storage = buffer.into_storage();
        let expiry = Expiry::armed(timeout_ms, context);
        if let Some(timer) = &storage.timer {
            *timer.link.sink.lock() = Some((
                Arc::downgrade(&self.shared),
                Arc::clone(&self.shared.expiry_gate),
            ));
            timer.timer.start(expiry.period());
        }
        list.entries.push_back(Slot {
            storage,
            expiry: Some(expiry),
        });
        Ok(())
    }

    /// Walks the list under the pool lock (`DMF_BufferPool_Enumerate`), showing each buffer's
    /// data and context to `callback`, which decides what happens to it. Returns the buffer the
    /// callback removed, if any. The callback must not call back into this pool.
    ///
    /// Sinks only (as in DMF): on a source pool the callback is not called and `None` is
    /// returned ([`BufferPool::try_enumerate`] reports the refusal). A buffer whose timer is
    /// firing or has fired is skipped: its expiry handler owns it.
    pub fn enumerate(
        &self,
        callback: impl FnMut(&mut [u8], &mut [u8]) -> EnumerationDisposition,
    ) -> Option<PoolBuffer> {
        if let Ok(removed) = self.try_enumerate(callback) {
            return removed;
        }
        crate::dmf_trace!(
            crate::wdf::trace::TraceLevel::Error,
            "BufferPool",
            "enumerate on a source pool: only sinks can be enumerated"
        );
        None
    }

    /// [`BufferPool::enumerate`], refusing a source pool with `STATUS_INVALID_DEVICE_REQUEST`
    /// (without calling the callback).
    pub fn try_enumerate(
        &self,
        mut callback: impl FnMut(&mut [u8], &mut [u8]) -> EnumerationDisposition,
    ) -> Result<Option<PoolBuffer>, NtStatus> {
        use EnumerationDisposition as D;
        if self.shared.source.is_some() {
            return Err(NtStatus::INVALID_DEVICE_REQUEST);
        }
        let mut list = self.shared.list.lock();
        let mut index = 0;
        while index < list.entries.len() {
            let slot = &mut list.entries[index];
            // An armed timer is stopped before the callback sees the buffer. One that cannot be
            // stopped is firing (or fired, its handler waiting for this lock): the buffer is its
            // expiry's, not the callback's.
            let armed = match (&slot.expiry, &slot.storage.timer) {
                (Some(_), Some(timer)) => {
                    if !timer.timer.stop(false) {
                        index += 1;
                        continue;
                    }
                    true
                }
                _ => false,
            };
            let (data, context) = slot.storage.parts_mut();
            let disposition = callback(data, context);
            match disposition {
                D::ContinueEnumeration | D::StopEnumeration => {
                    // The timer goes on with what was left of its period.
                    if let (true, Some(expiry), Some(timer)) =
                        (armed, &slot.expiry, &slot.storage.timer)
                    {
                        timer.timer.start(expiry.remaining());
                    }
                }
                D::RemoveAndStopEnumeration => {
                    // Its timer (if armed) is stopped already.
                    let Some(slot) = list.entries.remove(index) else {
                        return Ok(None);
                    };
                    drop(list);
                    if let Some(timer) = &slot.storage.timer {
                        *timer.link.sink.lock() = None;
                    }
                    return Ok(Some(PoolBuffer::new(slot.storage)));
                }
                D::StopTimerAndStopEnumeration | D::StopTimerAndContinueEnumeration => {
                    slot.expiry = None;
                }
                D::ResetTimerAndStopEnumeration | D::ResetTimerAndContinueEnumeration => {
                    if let (true, Some(expiry), Some(timer)) =
                        (armed, &mut slot.expiry, &slot.storage.timer)
                    {
                        *expiry = Expiry::armed(expiry.period_ms, expiry.context);
                        timer.timer.start(expiry.period());
                    }
                }
            }
            if matches!(
                disposition,
                D::StopEnumeration
                    | D::StopTimerAndStopEnumeration
                    | D::ResetTimerAndStopEnumeration
            ) {
                break;
            }
            index += 1;
        }
        Ok(None)
    }

    /// Buffers currently in the list (`DMF_BufferPool_Count`).
    #[must_use]
    pub fn count(&self) -> usize {
        self.shared.list.lock().entries.len()
    }

    /// Buffers this source pool created that are not freed (in the list or lent out).
    #[must_use]
    pub fn buffers_created(&self) -> usize {
        self.shared.list.lock().created
    }

    fn drain(&self) {
        loop {
            let mut list = self.shared.list.lock();
            let Some(slot) = list.entries.pop_front() else {
                break;
            };
            drop(list);
            if let Some(timer) = &slot.storage.timer {
                timer.timer.stop(true);
            }
            if self.shared.source.is_some() {
                drop(slot.storage);
            } else {
                // Back to its source (or freed, if the source is closed too).
                drop(PoolBuffer::new(slot.storage));
            }
        }
    }
}

impl ModuleNode for BufferPoolNode {
    fn core(&self) -> &ModuleCore {
        &self.core
    }

    fn open(&self) -> Result<(), NtStatus> {
        let reserve = self
            .shared
            .source
            .map_or(self.shared.sink_capacity, |s| s.buffer_count);
        {
            let mut list = self.shared.list.lock();
            list.entries
                .try_reserve(reserve)
                .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
            list.additional = 0;
            list.open = true;
        }
        self.shared.expiry_gate.reopen();
        let Some(settings) = self.shared.source else {
            return Ok(());
        };
        for _ in 0..settings.buffer_count {
            match self.shared.new_storage(&settings) {
                Ok(storage) => {
                    let mut list = self.shared.list.lock();
                    list.created += 1;
                    list.entries.push_back(Slot {
                        storage,
                        expiry: None,
                    });
                }
                Err(status) => {
                    self.close();
                    return Err(status);
                }
            }
        }
        Ok(())
    }

    fn close(&self) {
        {
            let mut list = self.shared.list.lock();
            list.open = false;
            list.created = 0;
            list.additional = 0;
            self.shared.generation.fetch_add(1, Ordering::AcqRel);
        }
        self.drain();
        // An expiry that took its buffer out of the list before the drain may still be running
        // (the client's callback); it holds this sink until it leaves.
        self.shared.expiry_gate.shut_and_wait();
    }
}

impl core::fmt::Debug for BufferPoolNode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BufferPool")
            .field("core", &self.core)
            .field("sink", &self.is_sink())
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.node().fmt(f)
    }
}
