//! A programmable target device for tests: it publishes a symbolic link (and optionally a device
//! interface), answers each request it receives the way a responder closure decides, counts what
//! it received, and can be query-removed or surprise-removed on command.
//!
//! I/O targets open it by name like any other device (`WdfIoTargetOpen`), and the user-mode
//! side can open it too.
//!
//! # When and where a request is answered
//!
//! The responder runs in the dispatching thread (the sender's, inside its `WdfRequestSend`) and
//! returns a [`Response`]. The target then completes the request in one of four contexts:
//!
//! | Response | Completed by | IRQL |
//! |---|---|---|
//! | [`Response::data`] / [`Response::status`] (no delay) | the dispatching thread, before the sender's send returns (*inline*) | the sender's |
//! | [`.from_worker()`](Response::from_worker) | a framework worker thread, as soon as possible, as a DPC the dispatch routine queued would | `DISPATCH_LEVEL` |
//! | [`.after(delay)`](Response::after) | a framework timer job once `delay` has passed, as a timer DPC would | `DISPATCH_LEVEL` |
//! | [`Response::Hold`], then [`ProgrammableTarget::release`] | the thread that calls `release` (or, for a released response that is itself deferred, as above) | the releaser's |
//!
//! Deferred answers run at `DISPATCH_LEVEL` rather than `PASSIVE_LEVEL` because a driver that
//! talks to hardware completes from its DPC, and it is the stricter context for the sender: a
//! completion routine that makes a passive-only call is caught there.
//!
//! Where the *sender's completion routine* then runs is the framework's business, not the
//! target's; [`ProgrammableTarget::last_completed`] tells where the target completed the packet.
//!
//! # Cancellation
//!
//! A request the target keeps pending (held, deferred or delayed) reacts to a cancel
//! (`WdfRequestCancelSentRequest`, a send timeout, `WdfIoTargetStop` with cancel, closing the
//! handle) as the target's [`CancelPolicy`] says, fixed when the request is parked:
//!
//! - [`CancelPolicy::Honour`] (the default): the request is cancelable; a cancel completes it
//!   with `STATUS_CANCELLED` at once, in the cancelling thread, exactly once whichever side gets
//!   there first (cancel or answer).
//! - [`CancelPolicy::Ignore`]: the target never sets a cancel routine, like a driver that never
//!   marks its requests cancelable. A cancel is not honoured and the target is not notified; the
//!   request completes only with its answer (delay, worker, release) or at removal; a send
//!   timeout does not end it either, as on Windows. As a driver can poll `Irp->Cancel`, the
//!   target sees that cancellation was requested: [`ProgrammableTarget::pending_cancel_requested`]
//!   now, and [`TargetCounters::cancels_ignored`] once answered.
//! - [`CancelPolicy::Delay`]: the cancel routine runs and notices the cancel, and the target
//!   completes the request with `STATUS_CANCELLED` only after the delay, from a framework timer
//!   job at `DISPATCH_LEVEL`. From the moment the routine ran the cancel owns the request (as
//!   after `IoSetCancelRoutine(Irp, NULL)` returns `NULL` in WDM): its answer is dropped and
//!   `release` skips it.
//!
//! [`TargetCounters::cancels_received`] counts the cancel routines that ran (honoured or
//! delayed, including those that lost the race to the answer).
//!
//! Removal ([`ProgrammableTarget::surprise_remove`], [`ProgrammableTarget::query_remove`], drop)
//! completes every pending request with `STATUS_CANCELLED` whatever the policy.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crate::constants::{STATUS_CANCELLED, STATUS_NO_SUCH_DEVICE, STATUS_SUCCESS};
use crate::framework::io::{self, DeviceNode, Irp, Link, lock};
use crate::framework::{exec, irql};
use crate::types::{GUID, KIRQL, NTSTATUS};

pub use crate::framework::io::MajorFunction;

/// What the target received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// 1-based arrival number.
    pub sequence: u64,
    /// Read, write, device control or internal device control.
    pub major: MajorFunction,
    /// The I/O control code (0 for reads and writes).
    pub ioctl: u32,
    /// A copy of the input buffer (write data or IOCTL input).
    pub input: Vec<u8>,
    /// The output buffer's length (read length or IOCTL output length).
    pub output_length: usize,
}

/// Where, when and how the target completed one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    /// The request's arrival number ([`Received::sequence`]).
    pub sequence: u64,
    /// The status it completed with.
    pub status: NTSTATUS,
    /// The information (bytes transferred) it reported.
    pub information: usize,
    /// The thread that completed it.
    pub thread: ThreadId,
    /// The IRQL that thread was at when it completed it.
    pub irql: KIRQL,
    /// Whether cancellation had been requested by then (what `Irp->Cancel` would say).
    pub cancel_requested: bool,
}

/// How the target answers one request. See the [module docs](self) for the context each
/// answer completes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Complete it: copy `data` into the output buffer (truncated to its length) and complete
    /// with `status` and `information` (default: the bytes copied, or for a write, the whole
    /// input). With no `delay` and not `from_worker` it completes inline, in the dispatching
    /// thread.
    Complete {
        /// Completion status.
        status: NTSTATUS,
        /// Data for the output buffer.
        data: Vec<u8>,
        /// Information (bytes transferred) to report; `None` for the default.
        information: Option<usize>,
        /// How long to keep the request pending first; nonzero completes it from a framework
        /// timer job at `DISPATCH_LEVEL` once it has passed.
        delay: Duration,
        /// Complete it from a framework worker thread at `DISPATCH_LEVEL` as soon as possible
        /// (as a DPC queued by the dispatch routine would) rather than inline. A nonzero
        /// `delay` always completes from a framework thread, so this matters without one.
        from_worker: bool,
    },
    /// Keep it pending until [`ProgrammableTarget::release`] (or a cancel, per the target's
    /// [`CancelPolicy`]).
    Hold,
}

impl Response {
    /// Success with `data`, inline.
    #[must_use]
    pub fn data(data: &[u8]) -> Self {
        Self::Complete {
            status: STATUS_SUCCESS,
            data: data.to_vec(),
            information: None,
            delay: Duration::ZERO,
            from_worker: false,
        }
    }

    /// Completion with `status`, no data, inline.
    #[must_use]
    pub fn status(status: NTSTATUS) -> Self {
        Self::Complete {
            status,
            data: Vec::new(),
            information: None,
            delay: Duration::ZERO,
            from_worker: false,
        }
    }

    /// The same answer after `delay`, from a framework timer job at `DISPATCH_LEVEL`
    /// ([`Response::Hold`] is unchanged).
    #[must_use]
    pub fn after(mut self, delay: Duration) -> Self {
        if let Self::Complete { delay: d, .. } = &mut self {
            *d = delay;
        }
        self
    }

    /// The same answer from a framework worker thread at `DISPATCH_LEVEL`, as soon as possible
    /// ([`Response::Hold`] is unchanged). The sender's send returns with the request pending
    /// unless the worker is faster.
    #[must_use]
    pub fn from_worker(mut self) -> Self {
        if let Self::Complete { from_worker, .. } = &mut self {
            *from_worker = true;
        }
        self
    }

    /// The same answer reporting `information` bytes ([`Response::Hold`] is unchanged).
    #[must_use]
    pub fn with_information(mut self, information: usize) -> Self {
        if let Self::Complete { information: i, .. } = &mut self {
            *i = Some(information);
        }
        self
    }

    /// Whether this answer completes later from a framework thread (a delay or `from_worker`)
    /// rather than in the thread that dispatches or releases it.
    fn is_deferred(&self) -> bool {
        matches!(self, Self::Complete { delay, from_worker, .. } if *from_worker || !delay.is_zero())
    }
}

/// How the target reacts to the cancellation of a request it keeps pending. See the
/// [module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CancelPolicy {
    /// The request is cancelable: a cancel completes it with `STATUS_CANCELLED` at once, in the
    /// cancelling thread.
    #[default]
    Honour,
    /// The request is never made cancelable: a cancel is not honoured (and
    /// `WdfRequestCancelSentRequest` cannot initiate one); the request completes with its answer.
    Ignore,
    /// The cancel routine notices the cancel; the target completes the request with
    /// `STATUS_CANCELLED` after this delay, from a framework timer job at `DISPATCH_LEVEL`.
    /// Its answer is dropped.
    Delay(Duration),
}

/// What the target counted. Each count is taken before the packet it concerns completes, so a
/// completion routine already sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetCounters {
    /// Requests received (dispatched to the target while it was present).
    pub received: u64,
    /// Reads received.
    pub reads: u64,
    /// Writes received.
    pub writes: u64,
    /// Device controls received.
    pub ioctls: u64,
    /// Internal device controls received.
    pub internal_ioctls: u64,
    /// Requests completed with an answer: the responder's (inline, from a worker or after a
    /// delay) or the one given to [`ProgrammableTarget::release`].
    pub answered: u64,
    /// Requests the target completed with `STATUS_CANCELLED` because of a cancel: at once under
    /// [`CancelPolicy::Honour`], after the delay under [`CancelPolicy::Delay`]. (An answer whose
    /// status is `STATUS_CANCELLED` counts as answered; a removal as `failed_removed`.)
    pub cancelled: u64,
    /// Requests failed because the device was removed: those pending at removal
    /// (`STATUS_CANCELLED`) and those sent after it (`STATUS_NO_SUCH_DEVICE`).
    pub failed_removed: u64,
    /// Cancels that reached the target: cancel routines that ran, under
    /// [`CancelPolicy::Honour`] or [`CancelPolicy::Delay`], including one that lost the race to
    /// the answer (the request then completes with its answer). A cancel under
    /// [`CancelPolicy::Ignore`] never reaches the target this way.
    pub cancels_received: u64,
    /// Requests kept pending under [`CancelPolicy::Ignore`] that were answered although their
    /// cancellation had been requested (seen by polling the packet's cancel flag, as a driver
    /// polls `Irp->Cancel`).
    pub cancels_ignored: u64,
}

type Responder = Box<dyn Fn(&Received) -> Response + Send + Sync>;

struct Pending {
    id: u64,
    sequence: u64,
    irp: Arc<Irp>,
    /// Waiting for `release` (not yet released for a deferred answer).
    held: bool,
    /// A cancel routine was set (not [`CancelPolicy::Ignore`]).
    cancelable: bool,
    /// The cancel routine ran under [`CancelPolicy::Delay`]: the cancel owns the packet now.
    cancelling: bool,
}

impl Pending {
    fn waits_for_release(&self) -> bool {
        self.held && !self.cancelling
    }
}

struct Inner {
    responder: Mutex<Responder>,
    cancel_policy: Mutex<CancelPolicy>,
    pending: Mutex<Vec<Pending>>,
    pending_changed: Condvar,
    counters: Mutex<TargetCounters>,
    last: Mutex<Option<Received>>,
    last_completed: Mutex<Option<Completed>>,
    sequence: AtomicU64,
    removed: AtomicBool,
}

impl Inner {
    /// Takes a pending packet off the list, whatever its state.
    fn take(&self, id: u64) -> Option<Pending> {
        let mut pending = lock(&self.pending);
        let index = pending.iter().position(|p| p.id == id)?;
        let entry = pending.remove(index);
        drop(pending);
        self.pending_changed.notify_all();
        Some(entry)
    }

    /// Takes a pending packet off the list to answer it: not one a cancel owns.
    fn take_to_answer(&self, id: u64) -> Option<Pending> {
        let mut pending = lock(&self.pending);
        let index = pending.iter().position(|p| p.id == id && !p.cancelling)?;
        let entry = pending.remove(index);
        drop(pending);
        self.pending_changed.notify_all();
        Some(entry)
    }

    /// Records where the packet completes, then completes it.
    fn finish(&self, irp: &Arc<Irp>, sequence: u64, status: NTSTATUS, information: usize) {
        *lock(&self.last_completed) = Some(Completed {
            sequence,
            status,
            information,
            thread: std::thread::current().id(),
            irql: irql::current(),
            cancel_requested: irp.is_cancel_requested(),
        });
        irp.complete(status, information);
    }

    /// Completes a packet the caller owns (fresh, or taken off the pending list) with
    /// `response`, a [`Response::Complete`]. `cancelable` is false for a packet parked without
    /// a cancel routine.
    fn answer(&self, irp: &Arc<Irp>, sequence: u64, cancelable: bool, response: Response) {
        let Response::Complete {
            status,
            data,
            information,
            ..
        } = response
        else {
            return;
        };
        let copied = data.len().min(irp.output.length);
        if copied > 0 {
            // SAFETY: the output range belongs to the pending packet's sender, which keeps it
            // valid until the packet completes (below).
            unsafe {
                core::ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    irp.output.address as *mut u8,
                    copied,
                );
            };
        }
        let information = information.unwrap_or(if irp.major == MajorFunction::Write {
            irp.input.length
        } else {
            copied
        });
        {
            let mut counters = lock(&self.counters);
            counters.answered += 1;
            if !cancelable && irp.is_cancel_requested() {
                counters.cancels_ignored += 1;
            }
        }
        self.finish(irp, sequence, status, information);
    }

    /// Completes a packet taken off the list because of a cancel.
    fn complete_cancelled(&self, entry: &Pending) {
        lock(&self.counters).cancelled += 1;
        self.finish(&entry.irp, entry.sequence, STATUS_CANCELLED, 0);
    }

    /// Keeps a packet pending (held for `release`, or waiting for a deferred answer), cancelable
    /// or not per the cancel policy in force; returns its id.
    fn park(self: &Arc<Self>, irp: &Arc<Irp>, sequence: u64, held: bool) -> u64 {
        let id = self.sequence.fetch_add(1, Ordering::Relaxed) | (1 << 62);
        let policy = *lock(&self.cancel_policy);
        let cancelable = policy != CancelPolicy::Ignore;
        lock(&self.pending).push(Pending {
            id,
            sequence,
            irp: irp.clone(),
            held,
            cancelable,
            cancelling: false,
        });
        self.pending_changed.notify_all();
        if !cancelable {
            return id;
        }
        let inner = Arc::downgrade(self);
        let cancel = Box::new(move |irp: &Arc<Irp>| {
            let Some(inner) = inner.upgrade() else {
                // The target is gone; its removal completed every pending packet already.
                irp.complete(STATUS_CANCELLED, 0);
                return;
            };
            inner.cancel_routine(id, policy);
        });
        if let Err(cancel) = irp.set_cancel_routine(cancel) {
            // Cancelled before the routine was set: the target notices it now, as a driver that
            // checks `Irp->Cancel` after `IoSetCancelRoutine` does.
            cancel(irp);
        }
        id
    }

    /// The cancel routine of packet `id`, parked under `policy`.
    fn cancel_routine(self: &Arc<Self>, id: u64, policy: CancelPolicy) {
        lock(&self.counters).cancels_received += 1;
        match policy {
            CancelPolicy::Delay(delay) => {
                let noticed = lock(&self.pending)
                    .iter_mut()
                    .find(|p| p.id == id)
                    .map(|p| p.cancelling = true)
                    .is_some();
                if !noticed {
                    // The answer took the packet first.
                    return;
                }
                self.pending_changed.notify_all();
                let weak = Arc::downgrade(self);
                exec::submit_at(
                    Instant::now() + delay,
                    irql::DISPATCH,
                    "programmable target delayed cancel",
                    move || {
                        if let Some(inner) = weak.upgrade()
                            && let Some(entry) = inner.take(id)
                        {
                            inner.complete_cancelled(&entry);
                        }
                    },
                );
            }
            CancelPolicy::Honour | CancelPolicy::Ignore => {
                if let Some(entry) = self.take(id) {
                    self.complete_cancelled(&entry);
                }
            }
        }
    }

    /// Answers parked packet `id` with a deferred `response` from a framework thread.
    fn schedule(self: &Arc<Self>, id: u64, response: Response) {
        let Response::Complete { delay, .. } = response else {
            return;
        };
        let weak = Arc::downgrade(self);
        let job = move || {
            if let Some(inner) = weak.upgrade()
                && let Some(entry) = inner.take_to_answer(id)
            {
                entry.irp.clear_cancel_routine();
                inner.answer(&entry.irp, entry.sequence, entry.cancelable, response);
            }
        };
        if delay.is_zero() {
            exec::submit(irql::DISPATCH, "programmable target completion (DPC)", job);
        } else {
            exec::submit_at(
                Instant::now() + delay,
                irql::DISPATCH,
                "programmable target delayed completion",
                job,
            );
        }
    }

    fn fail_all(&self, status: NTSTATUS) {
        let all: Vec<Pending> = core::mem::take(&mut *lock(&self.pending));
        self.pending_changed.notify_all();
        for entry in all {
            lock(&self.counters).failed_removed += 1;
            self.finish(&entry.irp, entry.sequence, status, 0);
        }
    }
}

struct Node(Arc<Inner>);

impl DeviceNode for Node {
    fn dispatch(&self, irp: Arc<Irp>) {
        let inner = &self.0;
        if inner.removed.load(Ordering::Acquire) {
            lock(&inner.counters).failed_removed += 1;
            inner.finish(&irp, 0, STATUS_NO_SUCH_DEVICE, 0);
            return;
        }
        let mut input = vec![0u8; irp.input.length];
        if irp.input.length > 0 {
            // SAFETY: the input range is valid while the packet is pending (now).
            unsafe {
                core::ptr::copy_nonoverlapping(
                    irp.input.address as *const u8,
                    input.as_mut_ptr(),
                    input.len(),
                );
            };
        }
        let sequence = {
            let mut counters = lock(&inner.counters);
            counters.received += 1;
            match irp.major {
                MajorFunction::Read => counters.reads += 1,
                MajorFunction::Write => counters.writes += 1,
                MajorFunction::DeviceControl => counters.ioctls += 1,
                MajorFunction::InternalDeviceControl => counters.internal_ioctls += 1,
            }
            counters.received
        };
        let received = Received {
            sequence,
            major: irp.major,
            ioctl: irp.ioctl,
            input,
            output_length: irp.output.length,
        };
        let response = (lock(&inner.responder))(&received);
        *lock(&inner.last) = Some(received);
        if response == Response::Hold {
            inner.park(&irp, sequence, true);
        } else if response.is_deferred() {
            let id = inner.park(&irp, sequence, false);
            inner.schedule(id, response);
        } else {
            inner.answer(&irp, sequence, true, response);
        }
    }

    fn file_closed(&self, file: u64) {
        let pending: Vec<Arc<Irp>> = lock(&self.0.pending)
            .iter()
            .filter(|p| p.irp.file == file && file != 0)
            .map(|p| p.irp.clone())
            .collect();
        for irp in pending {
            irp.cancel();
        }
    }
}

static NEXT_INSTANCE: AtomicUsize = AtomicUsize::new(1);

/// A programmable target device (test-only).
pub struct ProgrammableTarget {
    inner: Arc<Inner>,
    name: String,
    interface: Option<GUID>,
    link: Arc<Link>,
}

impl core::fmt::Debug for ProgrammableTarget {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ProgrammableTarget")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ProgrammableTarget {
    /// Publishes a target under `symbolic_link` (e.g. `\??\SimSensor0`). It answers every request
    /// inline with success and no data until a responder is set, and honours cancels.
    ///
    /// # Panics
    /// If the name is taken.
    #[must_use]
    pub fn create(symbolic_link: &str) -> Self {
        let inner = Arc::new(Inner {
            responder: Mutex::new(Box::new(|_| Response::status(STATUS_SUCCESS))),
            cancel_policy: Mutex::new(CancelPolicy::default()),
            pending: Mutex::new(Vec::new()),
            pending_changed: Condvar::new(),
            counters: Mutex::new(TargetCounters::default()),
            last: Mutex::new(None),
            last_completed: Mutex::new(None),
            sequence: AtomicU64::new(1),
            removed: AtomicBool::new(false),
        });
        let link = io::publish(symbolic_link, Arc::new(Node(inner.clone())))
            .expect("the symbolic link name is free");
        Self {
            inner,
            name: symbolic_link.to_string(),
            interface: None,
            link,
        }
    }

    /// Publishes a target that exposes a device interface of `class`; listeners registered for
    /// the class get its arrival now and its removal when it goes.
    #[must_use]
    pub fn with_interface(class: GUID) -> Self {
        let instance = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "\\??\\SIM#PROGRAMMABLETARGET#{instance:04}#{}",
            io::guid_string(&class)
        );
        let mut target = Self::create(&name);
        target.interface = Some(class);
        io::interface_register(class, &name);
        io::interface_set_state(&name, true);
        target
    }

    /// The symbolic link name to open.
    #[must_use]
    pub fn symbolic_link(&self) -> &str {
        &self.name
    }

    /// Sets how each request is answered. The responder runs in the dispatching thread, at the
    /// sender's IRQL.
    pub fn set_responder(&self, responder: impl Fn(&Received) -> Response + Send + Sync + 'static) {
        *lock(&self.inner.responder) = Box::new(responder);
    }

    /// Sets how requests parked from now on react to a cancel (requests already pending keep
    /// the policy they were parked with).
    pub fn set_cancel_policy(&self, policy: CancelPolicy) {
        *lock(&self.inner.cancel_policy) = policy;
    }

    /// The cancel policy in force.
    #[must_use]
    pub fn cancel_policy(&self) -> CancelPolicy {
        *lock(&self.inner.cancel_policy)
    }

    /// What the target counted so far.
    #[must_use]
    pub fn counters(&self) -> TargetCounters {
        *lock(&self.inner.counters)
    }

    /// The last request received.
    #[must_use]
    pub fn last_received(&self) -> Option<Received> {
        lock(&self.inner.last).clone()
    }

    /// The last request the target completed, and where (set before the packet completes).
    #[must_use]
    pub fn last_completed(&self) -> Option<Completed> {
        *lock(&self.inner.last_completed)
    }

    /// Requests held now, waiting for [`Self::release`] (deferred ones and those a delayed
    /// cancel owns not included).
    #[must_use]
    pub fn held(&self) -> usize {
        lock(&self.inner.pending)
            .iter()
            .filter(|p| p.waits_for_release())
            .count()
    }

    /// Requests pending now (held, deferred, delayed, or waiting for a delayed cancel).
    #[must_use]
    pub fn pending(&self) -> usize {
        lock(&self.inner.pending).len()
    }

    /// Pending requests whose cancellation was requested but that the target has not
    /// completed: under [`CancelPolicy::Ignore`], those still waiting for their answer; under
    /// [`CancelPolicy::Delay`], those waiting for the delay.
    #[must_use]
    pub fn pending_cancel_requested(&self) -> usize {
        lock(&self.inner.pending)
            .iter()
            .filter(|p| p.irp.is_cancel_requested())
            .count()
    }

    /// Waits until at least `count` requests are held; false on timeout.
    #[must_use]
    pub fn wait_held(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut pending = lock(&self.inner.pending);
        loop {
            if pending.iter().filter(|p| p.waits_for_release()).count() >= count {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            pending = self
                .inner
                .pending_changed
                .wait_timeout(pending, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Answers up to `count` held requests (oldest first) with `response`; returns how many.
    ///
    /// An inline response completes them in the calling thread, at its IRQL, before this
    /// returns; a deferred one ([`Response::from_worker`], [`Response::after`]) completes them
    /// later from a framework thread (they stay pending, and cancelable per their policy, until
    /// then). [`Response::Hold`] releases nothing. Requests a delayed cancel owns are skipped.
    #[must_use]
    pub fn release(&self, count: usize, response: &Response) -> usize {
        if *response == Response::Hold {
            return 0;
        }
        if response.is_deferred() {
            let ids: Vec<u64> = lock(&self.inner.pending)
                .iter_mut()
                .filter(|p| p.waits_for_release())
                .take(count)
                .map(|p| {
                    p.held = false;
                    p.id
                })
                .collect();
            self.inner.pending_changed.notify_all();
            for id in &ids {
                self.inner.schedule(*id, response.clone());
            }
            return ids.len();
        }
        let ids: Vec<u64> = lock(&self.inner.pending)
            .iter()
            .filter(|p| p.waits_for_release())
            .take(count)
            .map(|p| p.id)
            .collect();
        let mut released = 0;
        for id in ids {
            if let Some(entry) = self.inner.take_to_answer(id) {
                entry.irp.clear_cancel_routine();
                self.inner.answer(
                    &entry.irp,
                    entry.sequence,
                    entry.cancelable,
                    response.clone(),
                );
                released += 1;
            }
        }
        released
    }

    /// Answers every held request with `response` (see [`Self::release`]).
    #[must_use]
    pub fn release_all(&self, response: &Response) -> usize {
        self.release(usize::MAX, response)
    }

    /// Open handles (I/O targets and user-mode handles) on the target now.
    #[must_use]
    pub fn open_count(&self) -> usize {
        self.link.open_count()
    }

    fn vanish(&self) {
        if self.inner.removed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.inner.fail_all(STATUS_CANCELLED);
        // Openers hear of the removal (synchronously) before the interface's removal is
        // posted to interface listeners, as the docs of the removal methods say.
        self.link.remove_complete();
        if self.interface.is_some() {
            io::interface_set_state(&self.name, false);
        }
        io::unpublish(&self.name);
    }

    /// Surprise removal: pending requests complete with `STATUS_CANCELLED`, new ones fail with
    /// `STATUS_NO_SUCH_DEVICE`, openers get remove-complete, the interface disappears.
    pub fn surprise_remove(&self) {
        self.vanish();
    }

    /// Orderly removal: every opener is asked (query-remove); if none vetoes, the device goes
    /// as in [`Self::surprise_remove`] and this returns true. On a veto the openers that agreed
    /// get remove-canceled and this returns false.
    #[must_use]
    pub fn query_remove(&self) -> bool {
        if !self.link.query_remove() {
            return false;
        }
        self.vanish();
        true
    }

    /// Query-remove that the `PnP` manager then cancels: openers get query-remove and then
    /// remove-canceled. Returns whether every opener agreed to the query.
    #[must_use]
    pub fn query_remove_then_cancel(&self) -> bool {
        if !self.link.query_remove() {
            return false;
        }
        self.link.remove_canceled();
        true
    }

    /// Query-remove that stays pending: openers get query-remove (on a veto, those that
    /// agreed get remove-canceled and this returns false). Follow a true result with
    /// [`Self::remove_canceled`] or [`Self::surprise_remove`] (remove-complete).
    #[must_use]
    pub fn query_remove_pending(&self) -> bool {
        self.link.query_remove()
    }

    /// The removal that a successful query announced is cancelled: every opener gets
    /// remove-canceled (as the `PnP` manager does after a veto).
    pub fn remove_canceled(&self) {
        self.link.remove_canceled();
    }

    /// Disables (false) or re-enables (true) the target's device interface without removing
    /// the device: listeners get an interface removal or arrival; open handles stay open.
    pub fn set_interface_enabled(&self, enabled: bool) {
        if self.interface.is_some() && !self.is_removed() {
            if let Some(class) = self.interface {
                io::interface_register(class, &self.name);
            }
            io::interface_set_state(&self.name, enabled);
        }
    }

    /// Reports the enabled interface's arrival again to its listeners (a duplicate arrival).
    pub fn repeat_arrival(&self) {
        io::interface_repeat_arrival(&self.name);
    }

    /// `DesiredAccess` and `ShareAccess` of the last `WdfIoTargetOpen` by name on this target
    /// (test observation; `None` if no I/O target opened it).
    #[must_use]
    pub fn last_open_access(&self) -> Option<(u32, u32)> {
        self.link.last_access()
    }

    /// Whether the target was removed.
    #[must_use]
    pub fn is_removed(&self) -> bool {
        self.inner.removed.load(Ordering::Acquire)
    }
}

impl Drop for ProgrammableTarget {
    fn drop(&mut self) {
        self.vanish();
    }
}
