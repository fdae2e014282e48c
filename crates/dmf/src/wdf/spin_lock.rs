//! `WDFSPINLOCK`: a framework spin lock that owns the data it protects.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

use wdk_sys::{WDFSPINLOCK, call_unsafe_wdf_function_binding};

use super::object::ObjectAttributes;
use super::status::NtStatus;

/// A value protected by a framework spin lock.
///
/// [`SpinLock::lock`] raises the calling thread to `DISPATCH_LEVEL` (so it may be called at IRQL
/// `<= DISPATCH_LEVEL`) and the guard restores the previous IRQL when dropped. While the guard
/// lives, keep the work short and do not wait, touch paged memory or call PASSIVE-only
/// functions. The lock is deleted when the value is dropped.
pub struct SpinLock<T> {
    handle: WDFSPINLOCK,
    /// Set while a guard exists; catches a re-entrant acquire that did not block.
    held: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the handle may be used from any thread; the value moves with the lock, so `T: Send`.
unsafe impl<T: Send> Send for SpinLock<T> {}
// SAFETY: the framework lock serializes every access to the value, as a mutex does.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// Creates the framework spin lock (parented to the driver) protecting `value`.
    /// IRQL `<= DISPATCH_LEVEL`.
    pub fn create(value: T) -> Result<Self, NtStatus> {
        let mut attributes = ObjectAttributes::new();
        let mut handle: WDFSPINLOCK = core::ptr::null_mut();
        // SAFETY: the attributes are initialized and the out pointer is a valid local.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfSpinLockCreate,
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

    /// Acquires the lock, raising to `DISPATCH_LEVEL` until the guard is dropped.
    ///
    /// # Panics
    /// If the calling thread already holds this lock (on Windows that deadlocks; the framework
    /// verifier reports it).
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        // SAFETY: `self` owns the live handle.
        unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockAcquire, self.handle) };
        let already = self.held.swap(true, Ordering::Acquire);
        assert!(
            !already,
            "SpinLock::lock called by the thread that already holds the lock"
        );
        SpinLockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// The value, through exclusive access to the lock (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    /// The raw handle, for passing to other framework calls (e.g. as a queue's lock).
    #[must_use]
    pub fn handle(&self) -> WDFSPINLOCK {
        self.handle
    }
}

impl<T> Drop for SpinLock<T> {
    fn drop(&mut self) {
        // SAFETY: `self` owns the handle; no guard can outlive `&self`; deleted exactly once.
        unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, self.handle.cast()) };
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SpinLock")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

/// Access to a [`SpinLock`]'s value; releases the lock (restoring the IRQL) when dropped.
/// It must be dropped on the thread that acquired it, so it is not `Send`.
pub struct SpinLockGuard<'a, T> {
    lock: &'a SpinLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing the guard only shares `&T`.
unsafe impl<T: Sync> Sync for SpinLockGuard<'_, T> {}

impl<T> Deref for SpinLockGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard proves this thread holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves this thread holds the lock; `&mut self` makes it unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinLockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.held.store(false, Ordering::Release);
        // SAFETY: this thread acquired the lock when it created the guard.
        unsafe { call_unsafe_wdf_function_binding!(WdfSpinLockRelease, self.lock.handle) };
    }
}
