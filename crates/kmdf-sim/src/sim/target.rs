//! A programmable target device for tests: it publishes a symbolic link (and optionally a device
//! interface), answers each request it receives the way a responder closure decides (data,
//! status, information, delay) or holds it until the test releases it, counts what it received,
//! and can be query-removed or surprise-removed on command.
//!
//! I/O targets open it by name like any other device (`WdfIoTargetOpen`), and the user-mode
//! side can open it too. Held and delayed requests are cancelable: cancelling one completes it
//! with `STATUS_CANCELLED`, exactly once, whichever side gets there first.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::constants::{STATUS_CANCELLED, STATUS_NO_SUCH_DEVICE, STATUS_SUCCESS};
use crate::framework::io::{self, DeviceNode, Irp, Link, lock};
use crate::framework::{exec, irql};
use crate::types::{GUID, NTSTATUS};

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

/// How the target answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Complete it (after `delay`, if nonzero): copy `data` into the output buffer (truncated to
    /// its length) and complete with `status` and `information` (default: the bytes copied, or
    /// for a write, the whole input).
    Complete {
        /// Completion status.
        status: NTSTATUS,
        /// Data for the output buffer.
        data: Vec<u8>,
        /// Information (bytes transferred) to report; `None` for the default.
        information: Option<usize>,
        /// How long to keep the request pending first.
        delay: Duration,
    },
    /// Keep it pending until [`ProgrammableTarget::release`] (or a cancel).
    Hold,
}

impl Response {
    /// Success with `data` and no delay.
    #[must_use]
    pub fn data(data: &[u8]) -> Self {
        Self::Complete {
            status: STATUS_SUCCESS,
            data: data.to_vec(),
            information: None,
            delay: Duration::ZERO,
        }
    }

    /// Completion with `status`, no data.
    #[must_use]
    pub fn status(status: NTSTATUS) -> Self {
        Self::Complete {
            status,
            data: Vec::new(),
            information: None,
            delay: Duration::ZERO,
        }
    }

    /// The same answer after `delay`.
    #[must_use]
    pub fn after(self, delay: Duration) -> Self {
        match self {
            Self::Complete {
                status,
                data,
                information,
                ..
            } => Self::Complete {
                status,
                data,
                information,
                delay,
            },
            Self::Hold => Self::Hold,
        }
    }

    /// The same answer reporting `information` bytes.
    #[must_use]
    pub fn with_information(self, information: usize) -> Self {
        match self {
            Self::Complete {
                status,
                data,
                delay,
                ..
            } => Self::Complete {
                status,
                data,
                information: Some(information),
                delay,
            },
            Self::Hold => Self::Hold,
        }
    }
}

/// What the target counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetCounters {
    /// Requests received.
    pub received: u64,
    /// Reads received.
    pub reads: u64,
    /// Writes received.
    pub writes: u64,
    /// Device controls received.
    pub ioctls: u64,
    /// Internal device controls received.
    pub internal_ioctls: u64,
    /// Requests completed with the responder's answer (or released).
    pub answered: u64,
    /// Requests completed because they were cancelled.
    pub cancelled: u64,
    /// Requests failed because the device was removed.
    pub failed_removed: u64,
}

type Responder = Box<dyn Fn(&Received) -> Response + Send + Sync>;

struct Pending {
    id: u64,
    irp: Arc<Irp>,
    held: bool,
}

struct Inner {
    responder: Mutex<Responder>,
    pending: Mutex<Vec<Pending>>,
    pending_changed: Condvar,
    counters: Mutex<TargetCounters>,
    last: Mutex<Option<Received>>,
    sequence: AtomicU64,
    removed: AtomicBool,
}

impl Inner {
    fn take(&self, id: u64) -> Option<Arc<Irp>> {
        let mut pending = lock(&self.pending);
        let index = pending.iter().position(|p| p.id == id)?;
        let entry = pending.remove(index);
        drop(pending);
        self.pending_changed.notify_all();
        Some(entry.irp)
    }

    fn answer(&self, irp: &Arc<Irp>, response: Response) {
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
        // Counted before completing, so a completion routine sees the count. The caller owns the
        // packet (fresh, or taken off the pending list), so the completion cannot fail.
        lock(&self.counters).answered += 1;
        irp.complete(status, information);
    }

    fn park(self: &Arc<Self>, irp: &Arc<Irp>, held: bool) -> u64 {
        let id = self.sequence.fetch_add(1, Ordering::Relaxed) | (1 << 62);
        lock(&self.pending).push(Pending {
            id,
            irp: irp.clone(),
            held,
        });
        self.pending_changed.notify_all();
        let inner = Arc::downgrade(self);
        let cancel = Box::new(move |irp: &Arc<Irp>| {
            let Some(inner) = inner.upgrade() else {
                irp.complete(STATUS_CANCELLED, 0);
                return;
            };
            if inner.take(id).is_some() {
                lock(&inner.counters).cancelled += 1;
                irp.complete(STATUS_CANCELLED, 0);
            }
        });
        if let Err(cancel) = irp.set_cancel_routine(cancel) {
            cancel(irp);
        }
        id
    }

    fn fail_all(&self, status: NTSTATUS) {
        let all: Vec<Pending> = core::mem::take(&mut *lock(&self.pending));
        self.pending_changed.notify_all();
        for entry in all {
            lock(&self.counters).failed_removed += 1;
            entry.irp.complete(status, 0);
        }
    }
}

struct Node(Arc<Inner>);

impl DeviceNode for Node {
    fn dispatch(&self, irp: Arc<Irp>) {
        let inner = &self.0;
        if inner.removed.load(Ordering::Acquire) {
            lock(&inner.counters).failed_removed += 1;
            irp.complete(STATUS_NO_SUCH_DEVICE, 0);
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
        match response {
            Response::Hold => {
                inner.park(&irp, true);
            }
            Response::Complete { delay, .. } if delay.is_zero() => inner.answer(&irp, response),
            Response::Complete { delay, .. } => {
                let id = inner.park(&irp, false);
                let weak = Arc::downgrade(inner);
                exec::submit_at(
                    Instant::now() + delay,
                    irql::DISPATCH,
                    "programmable target delayed completion",
                    move || {
                        if let Some(inner) = weak.upgrade()
                            && let Some(irp) = inner.take(id)
                        {
                            irp.clear_cancel_routine();
                            inner.answer(&irp, response);
                        }
                    },
                );
            }
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
    /// with success and no data until a responder is set.
    ///
    /// # Panics
    /// If the name is taken.
    #[must_use]
    pub fn create(symbolic_link: &str) -> Self {
        let inner = Arc::new(Inner {
            responder: Mutex::new(Box::new(|_| Response::status(STATUS_SUCCESS))),
            pending: Mutex::new(Vec::new()),
            pending_changed: Condvar::new(),
            counters: Mutex::new(TargetCounters::default()),
            last: Mutex::new(None),
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

    /// Sets how each request is answered.
    pub fn set_responder(&self, responder: impl Fn(&Received) -> Response + Send + Sync + 'static) {
        *lock(&self.inner.responder) = Box::new(responder);
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

    /// Requests held now (delayed ones not included).
    #[must_use]
    pub fn held(&self) -> usize {
        lock(&self.inner.pending).iter().filter(|p| p.held).count()
    }

    /// Requests pending now (held or delayed).
    #[must_use]
    pub fn pending(&self) -> usize {
        lock(&self.inner.pending).len()
    }

    /// Waits until at least `count` requests are held; false on timeout.
    #[must_use]
    pub fn wait_held(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut pending = lock(&self.inner.pending);
        loop {
            if pending.iter().filter(|p| p.held).count() >= count {
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
    #[must_use]
    pub fn release(&self, count: usize, response: &Response) -> usize {
        let ids: Vec<u64> = lock(&self.inner.pending)
            .iter()
            .filter(|p| p.held)
            .take(count)
            .map(|p| p.id)
            .collect();
        let mut released = 0;
        for id in ids {
            if let Some(irp) = self.inner.take(id) {
                irp.clear_cancel_routine();
                self.inner.answer(&irp, response.clone());
                released += 1;
            }
        }
        released
    }

    /// Answers every held request with `response`.
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
        if self.interface.is_some() {
            io::interface_set_state(&self.name, false);
        }
        self.link.remove_complete();
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
