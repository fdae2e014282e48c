//! Module references: methods that must not run on a closing module take one, and close waits
//! until every reference taken is released.
//!
//! The count and the "close pending" flag live in one atomic word, so taking and releasing a
//! reference never takes a lock and works at any IRQL up to `DISPATCH_LEVEL`.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::wdf::NtStatus;
use crate::wdf::event::{Event, EventKind};

/// Set while close waits for references: new references fail.
const CLOSE_PENDING: u64 = 1 << 63;
/// The reference count (the open reference counts as one).
const COUNT_MASK: u64 = u32::MAX as u64;

/// The reference counter of one module (or of any run-down protected resource).
///
/// Zero means "not open"; [`References::start`] sets it to one (the open reference); every
/// successful [`References::acquire`] adds one; [`References::end_and_wait`] waits until only the
/// open reference is left and sets it back to zero.
pub struct References {
    word: AtomicU64,
    drained: Event,
}

impl References {
    /// A counter in the "not open" state.
    #[must_use]
    pub fn new() -> Self {
        Self {
            word: AtomicU64::new(0),
            drained: Event::new(EventKind::Synchronization, false),
        }
    }

    /// Marks the resource open: references can be taken.
    pub fn start(&self) {
        self.word.store(1, Ordering::Release);
    }

    /// Takes a reference: fails with `STATUS_INVALID_DEVICE_STATE` if the resource is not open
    /// or is closing. Callable at any IRQL up to `DISPATCH_LEVEL`.
    pub fn acquire(&self) -> Result<(), NtStatus> {
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            if current & CLOSE_PENDING != 0 || current & COUNT_MASK == 0 {
                return Err(NtStatus::INVALID_DEVICE_STATE);
            }
            match self.word.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Releases a reference taken with [`References::acquire`]. If close is waiting and this was
    /// the last one, wakes it.
    pub fn release(&self) {
        let previous = self.word.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(
            previous & COUNT_MASK > 1,
            "module reference released more often than taken"
        );
        if previous & CLOSE_PENDING != 0 && previous & COUNT_MASK == 2 {
            let _ = self.drained.set();
        }
    }

    /// References currently held, not counting the open reference (0 when not open).
    #[must_use]
    pub fn outstanding(&self) -> u32 {
        let word = self.word.load(Ordering::Acquire) & COUNT_MASK;
        word.saturating_sub(1) as u32
    }

    /// Whether references can currently be taken.
    #[must_use]
    pub fn is_open(&self) -> bool {
        let word = self.word.load(Ordering::Acquire);
        word & CLOSE_PENDING == 0 && word & COUNT_MASK != 0
    }

    /// Makes new references fail (close has begun); [`References::end_and_wait`] finishes.
    pub fn begin_close(&self) {
        let previous = self.word.fetch_or(CLOSE_PENDING, Ordering::AcqRel);
        if previous & COUNT_MASK == 0 {
            self.word.fetch_and(!CLOSE_PENDING, Ordering::AcqRel);
        }
    }

    /// Makes new references fail, waits (at `PASSIVE_LEVEL`) until every reference taken has been
    /// released, then marks the resource not open. Returns at once if it is not open.
    pub fn end_and_wait(&self) {
        let previous = self.word.fetch_or(CLOSE_PENDING, Ordering::AcqRel);
        if previous & COUNT_MASK == 0 {
            self.word.fetch_and(!CLOSE_PENDING, Ordering::AcqRel);
            return;
        }
        loop {
            if self
                .word
                .compare_exchange(CLOSE_PENDING | 1, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
            // The releaser that brings the count to one sets the signal after its decrement, so
            // a wait that starts after that decrement returns at once, and the loop re-checks.
            self.drained.wait();
        }
    }
}

impl Default for References {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for References {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let word = self.word.load(Ordering::Relaxed);
        f.debug_struct("References")
            .field("count", &(word & COUNT_MASK))
            .field("close_pending", &(word & CLOSE_PENDING != 0))
            .finish_non_exhaustive()
    }
}

/// A reference on a module, released when dropped (`DMF_ModuleReference` /
/// `DMF_ModuleDereference` as a guard).
#[must_use = "the reference is released as soon as the guard is dropped"]
pub struct ModuleReference<'a> {
    references: &'a Arc<References>,
}

impl<'a> ModuleReference<'a> {
    pub(crate) fn acquire(references: &'a Arc<References>) -> Result<Self, NtStatus> {
        references.acquire()?;
        Ok(Self { references })
    }

    /// Turns the guard into a reference with no lifetime, for holding across an asynchronous
    /// operation (take it when sending, release it in the completion routine, at any IRQL up to
    /// `DISPATCH_LEVEL`). Costs one atomic increment, no allocation.
    pub fn into_held(self) -> HeldReference {
        let held = HeldReference {
            references: Arc::clone(self.references),
        };
        core::mem::forget(self);
        held
    }
}

impl Drop for ModuleReference<'_> {
    fn drop(&mut self) {
        self.references.release();
    }
}

/// Takes [`HeldReference`]s on one module without borrowing it (see
/// [`ModuleCore::reference_source`](super::ModuleCore::reference_source)).
#[derive(Clone)]
pub struct ReferenceSource {
    references: Arc<References>,
}

impl ReferenceSource {
    pub(crate) fn new(references: Arc<References>) -> Self {
        Self { references }
    }

    /// Takes a reference (same rules as `ModuleCore::reference`); no allocation.
    pub fn acquire(&self) -> Result<HeldReference, NtStatus> {
        self.references.acquire()?;
        Ok(HeldReference {
            references: Arc::clone(&self.references),
        })
    }
}

impl core::fmt::Debug for ReferenceSource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("ReferenceSource")
            .field(&self.references)
            .finish()
    }
}

/// A module reference that is not tied to a borrow of the module: close waits until it is
/// released (explicitly with [`HeldReference::release`] or by dropping it).
#[must_use = "close waits until this reference is released"]
pub struct HeldReference {
    references: Arc<References>,
}

impl HeldReference {
    /// Releases the reference (same as dropping it). Callable at any IRQL up to
    /// `DISPATCH_LEVEL`.
    pub fn release(self) {
        drop(self);
    }

    /// Whether a new reference could be taken now (the module is open, not closing): keeping
    /// this one for the next piece of work is then the same as taking a new one and
    /// releasing this, without the two atomic operations.
    #[must_use]
    pub fn module_open(&self) -> bool {
        self.references.is_open()
    }
}

impl Drop for HeldReference {
    fn drop(&mut self) {
        self.references.release();
    }
}

impl core::fmt::Debug for HeldReference {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("HeldReference")
            .field(&self.references)
            .finish()
    }
}
