//! Thread: one dedicated system thread per module, created when the module opens and ended when
//! it closes, that can be started and stopped repeatedly.
//!
//! Two control styles ([`ThreadControl`]):
//!
//! * **Client control**: each [`start`](ThreadNode::start) runs the client's function once; the
//!   thread counts as stopped when it returns. [`stop`](ThreadNode::stop) waits for that.
//! * **DMF control**: after each start the module calls `pre` (optional), then waits for work:
//!   each [`work_ready`](ThreadNode::work_ready) signal runs `work` once, until
//!   [`stop`](ThreadNode::stop); then `post` (optional) runs. A pending stop wins over pending
//!   work. Work signals coalesce (several signals before the thread wakes may run `work` once),
//!   so `work` must drain everything available. A signal given while stopped is remembered: the
//!   next start runs `work` right after `pre`.
//!
//! # Configuration ([`ThreadConfig`])
//!
//! | Field | Meaning |
//! |---|---|
//! | `control` | [`ThreadControl::Client`] with the thread function, or [`ThreadControl::Dmf`] with `pre`, `work` (required) and `post` |
//!
//! Callbacks run at `PASSIVE_LEVEL` on the module's thread and receive a [`ThreadContext`]
//! (to ask [`is_stop_pending`](ThreadContext::is_stop_pending) or signal more work).
//!
//! # Methods and IRQL
//!
//! | Method | IRQL | |
//! |---|---|---|
//! | [`start`](ThreadNode::start) | `PASSIVE_LEVEL` | `STATUS_INVALID_DEVICE_STATE` if already started or the module is not open |
//! | [`stop`](ThreadNode::stop) | `PASSIVE_LEVEL` | waits until the thread is back in its idle loop; no-op if stopped; from a callback of the module, asks for the stop without waiting |
//! | [`work_ready`](ThreadNode::work_ready) | `<= DISPATCH_LEVEL` | |
//! | [`is_work_ready`](ThreadNode::is_work_ready) | `<= DISPATCH_LEVEL` | a work signal is pending (not yet taken by the thread) |
//! | [`is_stop_pending`](ThreadNode::is_stop_pending) | any | |
//!
//! The module cannot be created with the passive-level option (its descriptor is DISPATCH only):
//! that is [`ConfigError::PassiveLevelNotSupported`](crate::error::ConfigError) (DMF:
//! `STATUS_INVALID_DEVICE_REQUEST`).
//!
//! # Example
//!
//! ```
//! # let session = wdk_sys::sim::Session::begin();
//! use std::sync::Arc;
//! use std::time::Duration;
//! use dmf::core::ModuleAttributes;
//! use dmf::modules::thread::{Thread, ThreadConfig, ThreadContext, ThreadControl};
//! use dmf::wdf::event::{Event, EventKind};
//!
//! let worked = Arc::new(Event::new(EventKind::Notification, false));
//! let signal = Arc::clone(&worked);
//! let config = ThreadConfig {
//!     control: ThreadControl::Dmf {
//!         pre: None,
//!         // Drain everything available here: work signals coalesce.
//!         work: Box::new(move |_: &ThreadContext| {
//!             let _ = signal.set();
//!         }),
//!         post: None,
//!     },
//! };
//! let thread = Thread::create(config, ModuleAttributes::new())?;
//! thread.work_ready(); // remembered until the thread starts
//! thread.start()?;
//! assert!(worked.wait_timeout(Duration::from_secs(5)), "the latched signal ran `work`");
//! thread.stop(); // a stop requested while work is pending wins over that work
//! # drop(thread);
//! # session.end();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Differences from DMF
//!
//! * In client control, [`is_stop_pending`](ThreadContext::is_stop_pending) also becomes true
//!   when `stop` is called, so the client function has a way to learn it should return (DMF
//!   asserts it is only used in DMF control).
//! * `start` on a closed module fails with `STATUS_INVALID_DEVICE_STATE` instead of signalling
//!   a thread that no longer exists.
//! * `stop` from one of the module's own callbacks does not wait for itself (DMF deadlocks): it
//!   asks for the stop, which completes when the callback returns.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::core::{Module, ModuleAttributes, ModuleCore, ModuleLock, ModuleNode, OpenOption};
use crate::error::ModuleError;
use crate::wdf::NtStatus;
use crate::wdf::event::{Event, EventKind, wait_any};
use crate::wdf::thread::{SystemThread, current_thread_id};

/// A thread callback.
pub type ThreadCallback = Box<dyn Fn(&ThreadContext) + Send + Sync>;

/// Who runs the loop (DMF's `ThreadControlType`).
pub enum ThreadControl {
    /// The client's function runs once per start.
    Client(ThreadCallback),
    /// The module waits for work signals and calls `work` per signal.
    Dmf {
        /// Runs after each start, before waiting for work.
        pre: Option<ThreadCallback>,
        /// Runs for each work signal.
        work: ThreadCallback,
        /// Runs when the loop stops.
        post: Option<ThreadCallback>,
    },
}

/// Configuration of a [`Thread`] (DMF's `DMF_CONFIG_Thread`).
pub struct ThreadConfig {
    /// Control style and callbacks.
    pub control: ThreadControl,
}

impl core::fmt::Debug for ThreadConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let kind = match self.control {
            ThreadControl::Client(_) => "Client",
            ThreadControl::Dmf { .. } => "Dmf",
        };
        f.debug_struct("ThreadConfig")
            .field("control", &kind)
            .finish()
    }
}

/// What thread callbacks see of their module.
pub struct ThreadContext {
    control: ThreadControl,
    start: Event,
    stop: Event,
    stop_complete: Event,
    close: Event,
    work: Event,
    is_stopped: AtomicBool,
    stop_pending: AtomicBool,
    /// The module's thread (0 until it runs): `stop` from it must not wait for itself.
    thread_id: AtomicUsize,
    /// A stop asked from the module's own thread: the thread finishes it when its loop ends.
    self_stop: AtomicBool,
}

impl ThreadContext {
    /// Whether a stop has been requested and the loop has not ended yet
    /// (`DMF_Thread_IsStopPending`).
    #[must_use]
    pub fn is_stop_pending(&self) -> bool {
        self.stop_pending.load(Ordering::Acquire)
    }

    /// Signals that work is ready (`DMF_Thread_WorkReady`). `IRQL <= DISPATCH_LEVEL`.
    pub fn work_ready(&self) {
        let _ = self.work.set();
    }

    fn call(&self, callback: Option<&ThreadCallback>) {
        if let Some(callback) = callback {
            callback(self);
        }
    }

    /// The thread body: idle until started or closed.
    fn run(&self) {
        self.thread_id.store(current_thread_id(), Ordering::Release);
        loop {
            match wait_any(&[&self.start, &self.close], None) {
                Ok(Some(0)) => {}
                _ => return,
            }
            match &self.control {
                ThreadControl::Client(function) => function(self),
                ThreadControl::Dmf { pre, work, post } => {
                    self.call(pre.as_ref());
                    while let Ok(Some(1)) = wait_any(&[&self.stop, &self.work], None) {
                        work(self);
                    }
                    self.call(post.as_ref());
                }
            }
            if self.self_stop.swap(false, Ordering::AcqRel) {
                // A stop asked from a callback: nobody waits for it; the loop is stopped now.
                self.stop_pending.store(false, Ordering::Release);
                self.is_stopped.store(true, Ordering::Release);
            }
            let _ = self.stop_complete.set();
        }
    }
}

/// The module object of a [`Thread`].
pub struct ThreadNode {
    core: ModuleCore,
    context: Arc<ThreadContext>,
    thread: ModuleLock<Option<SystemThread>>,
}

/// A Thread module (see the [module documentation](self)).
pub struct Thread(Module<ThreadNode>);

impl AsRef<Module<ThreadNode>> for Thread {
    fn as_ref(&self) -> &Module<ThreadNode> {
        &self.0
    }
}

impl core::ops::Deref for Thread {
    type Target = ThreadNode;

    fn deref(&self) -> &ThreadNode {
        &self.0
    }
}

impl Thread {
    /// Creates the module. A dynamic module (the default attributes) is open, with its thread
    /// idle, when this returns. The passive-level option is refused.
    pub fn create(config: ThreadConfig, attributes: ModuleAttributes) -> Result<Self, ModuleError> {
        Ok(Self(Module::new(ThreadNode::new(config, attributes)?)?))
    }
}

impl ThreadNode {
    pub(crate) fn new(
        config: ThreadConfig,
        attributes: ModuleAttributes,
    ) -> Result<Self, ModuleError> {
        let core = ModuleCore::new("Thread", OpenOption::OpenCreate, false, attributes)?;
        let context = Arc::new(ThreadContext {
            control: config.control,
            start: Event::new(EventKind::Synchronization, false),
            stop: Event::new(EventKind::Synchronization, false),
            stop_complete: Event::new(EventKind::Synchronization, false),
            close: Event::new(EventKind::Notification, false),
            work: Event::new(EventKind::Synchronization, false),
            is_stopped: AtomicBool::new(true),
            stop_pending: AtomicBool::new(false),
            thread_id: AtomicUsize::new(0),
            self_stop: AtomicBool::new(false),
        });
        Ok(Self {
            core,
            context,
            thread: ModuleLock::create(None, true)?,
        })
    }

    /// Starts the loop (`DMF_Thread_Start`). `PASSIVE_LEVEL`.
    pub fn start(&self) -> Result<(), NtStatus> {
        let _reference = self.core.reference()?;
        let context = &*self.context;
        if !context.is_stopped.swap(false, Ordering::AcqRel) {
            return Err(NtStatus::INVALID_DEVICE_STATE);
        }
        context.stop_pending.store(false, Ordering::Release);
        // A stop finished by the thread itself left this signalled for nobody.
        context.stop_complete.clear();
        let _ = context.start.set();
        Ok(())
    }

    /// Stops the loop and waits until the thread is idle again (`DMF_Thread_Stop`); returns at
    /// once if it is stopped. In client control this waits for the client function to return.
    /// `PASSIVE_LEVEL`. From one of the module's own callbacks (on its thread) it asks for the
    /// stop and returns at once instead of waiting for itself (DMF deadlocks): the loop stops
    /// when that callback returns (client control: when the function returns), and
    /// [`is_stopped`](Self::is_stopped) says so then.
    pub fn stop(&self) {
        let context = &*self.context;
        if context.is_stopped.load(Ordering::Acquire) {
            return;
        }
        context.stop_pending.store(true, Ordering::Release);
        if context.thread_id.load(Ordering::Acquire) == current_thread_id() {
            context.self_stop.store(true, Ordering::Release);
            if let ThreadControl::Dmf { .. } = context.control {
                let _ = context.stop.set();
            }
            return;
        }
        if let ThreadControl::Dmf { .. } = context.control {
            let _ = context.stop.set();
        }
        context.stop_complete.wait();
        context.stop_pending.store(false, Ordering::Release);
        context.is_stopped.store(true, Ordering::Release);
    }

    /// Signals that work is ready (`DMF_Thread_WorkReady`). `IRQL <= DISPATCH_LEVEL`.
    pub fn work_ready(&self) {
        self.context.work_ready();
    }

    /// Whether a stop is in progress (`DMF_Thread_IsStopPending`).
    #[must_use]
    pub fn is_stop_pending(&self) -> bool {
        self.context.is_stop_pending()
    }

    /// Whether a work signal is pending: the thread has not yet woken for the last
    /// [`work_ready`](Self::work_ready), so `work` will run (again) without another signal.
    /// A client whose `work` reads its queue under a lock can skip signalling while this is
    /// true: the thread's wake-up happens before `work` takes that lock. `IRQL <= DISPATCH_LEVEL`.
    #[must_use]
    pub fn is_work_ready(&self) -> bool {
        self.context.work.is_set()
    }

    /// Whether the loop is stopped (or was never started).
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.context.is_stopped.load(Ordering::Acquire)
    }
}

impl ModuleNode for ThreadNode {
    fn core(&self) -> &ModuleCore {
        &self.core
    }

    fn open(&self) -> Result<(), NtStatus> {
        let context = &*self.context;
        context.close.clear();
        context.stop.clear();
        context.start.clear();
        context.stop_complete.clear();
        context.is_stopped.store(true, Ordering::Release);
        let body = Arc::clone(&self.context);
        let thread = SystemThread::spawn(move || body.run())?;
        *self.thread.lock() = Some(thread);
        Ok(())
    }

    fn close(&self) {
        self.stop();
        let _ = self.context.close.set();
        let thread = self.thread.lock().take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl core::fmt::Debug for ThreadNode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Thread")
            .field("core", &self.core)
            .field("stopped", &self.is_stopped())
            .finish_non_exhaustive()
    }
}

impl core::fmt::Debug for Thread {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (**self).fmt(f)
    }
}
