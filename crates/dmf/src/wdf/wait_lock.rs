//! `WDFWAITLOCK`: a framework wait lock (a mutex that may block) that owns its data.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;

use wdk_sys::{WDFWAITLOCK, call_unsafe_wdf_function_binding};

use super::object::ObjectAttributes;
use super::status::NtStatus;

/// Converts a duration to a relative kernel timeout (negative, 100 ns units, rounded up so a
/// non-zero duration never becomes a poll).
pub(crate) fn relative_timeout(duration: Duration) -> i64 {
    let units = duration.as_nanos().div_ceil(100);
    -i64::try_from(units).unwrap_or(i64::MAX)
}

/// A value protected by a framework wait lock.
///
/// [`WaitLock::lock`] and a non-zero [`WaitLock::try_lock_for`] may block, so they are called at
/// `PASSIVE_LEVEL` only; [`WaitLock::try_lock`] (a zero timeout) is allowed up to
/// `DISPATCH_LEVEL`. The lock is deleted when the value is dropped.
pub struct WaitLock<T> {
    handle: WDFWAITLOCK,
    /// Set while a guard exists; catches a re-entrant acquire that did not block.
    held: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the handle may be used from any thread; the value moves with the lock, so `T: Send`.
unsafe impl<T: Send> Send for WaitLock<T> {}
// SAFETY: the framework lock serializes every access to the value, as a mutex does.
unsafe impl<T: Send> Sync for WaitLock<T> {}

impl<T> WaitLock<T> {
    /// Creates the framework wait lock (parented to the driver) protecting `value`.
    /// IRQL `<= DISPATCH_LEVEL`.
    pub fn create(value: T) -> Result<Self, NtStatus> {
        let mut attributes = ObjectAttributes::new();
        let mut handle: WDFWAITLOCK = core::ptr::null_mut();
        // SAFETY: the attributes are initialized and the out pointer is a valid local.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfWaitLockCreate,
                attributes.as_mut_ptr(),
                &raw mut handle
            )
        };
        NtStatus::from_raw(status).into_result()?;
        Ok(Self {
            handle,
            held: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        })
    }

    /// Acquires the lock, waiting as long as needed. `PASSIVE_LEVEL` only.
    ///
    /// # Panics
    /// If the framework refuses the acquire, which happens only on misuse: above
    /// `PASSIVE_LEVEL`, or when the calling thread already holds the lock (a deadlock on
    /// Windows). The framework verifier reports both.
    pub fn lock(&self) -> WaitLockGuard<'_, T> {
        // SAFETY: `self` owns the live handle; a null timeout waits without limit.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfWaitLockAcquire,
                self.handle,
                core::ptr::null_mut()
            )
        };
        let status = NtStatus::from_raw(status);
        assert!(
            status == NtStatus::SUCCESS,
            "WaitLock::lock refused by the framework: {status}"
        );
        self.guard()
    }

    /// Acquires the lock if that happens within `timeout`; `None` on timeout. A non-zero
    /// timeout requires `PASSIVE_LEVEL`; `Duration::ZERO` is a try, allowed up to
    /// `DISPATCH_LEVEL`. Misuse (see [`WaitLock::lock`]) also returns `None`.
    pub fn try_lock_for(&self, timeout: Duration) -> Option<WaitLockGuard<'_, T>> {
        let mut timeout = relative_timeout(timeout);
        // SAFETY: `self` owns the live handle; the timeout is a valid local.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(WdfWaitLockAcquire, self.handle, &raw mut timeout)
        };
        (NtStatus::from_raw(status) == NtStatus::SUCCESS).then(|| self.guard())
    }

    /// Acquires the lock only if it is free now. IRQL `<= DISPATCH_LEVEL`.
    pub fn try_lock(&self) -> Option<WaitLockGuard<'_, T>> {
        self.try_lock_for(Duration::ZERO)
    }

    fn guard(&self) -> WaitLockGuard<'_, T> {
        let already = self.held.swap(true, Ordering::Acquire);
        assert!(
            !already,
            "WaitLock acquired by the thread that already holds the lock"
        );
        WaitLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// The value, through exclusive access to the lock (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    /// The raw handle, for passing to other framework calls.
    #[must_use]
    pub fn handle(&self) -> WDFWAITLOCK {
        self.handle
    }
}

impl<T> Drop for WaitLock<T> {
    fn drop(&mut self) {
        // SAFETY: `self` owns the handle; no guard can outlive `&self`; deleted exactly once.
        unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, self.handle.cast()) };
    }
}

impl<T> core::fmt::Debug for WaitLock<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WaitLock")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

/// Access to a [`WaitLock`]'s value; releases the lock when dropped. It must be dropped on the
/// thread that acquired it, so it is not `Send`.
pub struct WaitLockGuard<'a, T> {
    lock: &'a WaitLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing the guard only shares `&T`.
unsafe impl<T: Sync> Sync for WaitLockGuard<'_, T> {}

impl<T> Deref for WaitLockGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard proves this thread holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for WaitLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves this thread holds the lock; `&mut self` makes it unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for WaitLockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.held.store(false, Ordering::Release);
        // SAFETY: this thread acquired the lock when it created the guard.
        unsafe { call_unsafe_wdf_function_binding!(WdfWaitLockRelease, self.lock.handle) };
    }
}
