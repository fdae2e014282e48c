//! The module lock: a spin lock, or a wait lock for passive-level modules.

use core::ops::{Deref, DerefMut};

use crate::wdf::NtStatus;
use crate::wdf::spin_lock::{SpinLock, SpinLockGuard};
use crate::wdf::wait_lock::{WaitLock, WaitLockGuard};

/// A module's default lock protecting `T` (DMF's `DMF_ModuleLock`): a spin lock (callable at
/// `DISPATCH_LEVEL`, raises to it while held) unless the module was created with the
/// passive-level option, then a wait lock (`PASSIVE_LEVEL` only, may sleep while held).
/// Not recursive.
pub enum ModuleLock<T> {
    /// Spin lock (dispatch-level module).
    Spin(SpinLock<T>),
    /// Wait lock (passive-level module).
    Wait(WaitLock<T>),
}

impl<T> ModuleLock<T> {
    /// Creates the lock kind a module with the given passive-level option uses.
    pub fn create(value: T, passive_level: bool) -> Result<Self, NtStatus> {
        Ok(if passive_level {
            Self::Wait(WaitLock::create(value)?)
        } else {
            Self::Spin(SpinLock::create(value)?)
        })
    }

    /// Acquires the lock.
    #[inline]
    pub fn lock(&self) -> ModuleLockGuard<'_, T> {
        match self {
            Self::Spin(lock) => ModuleLockGuard::Spin(lock.lock()),
            Self::Wait(lock) => ModuleLockGuard::Wait(lock.lock()),
        }
    }

    /// Whether this is a wait lock (passive-level module).
    #[must_use]
    pub fn is_passive(&self) -> bool {
        matches!(self, Self::Wait(_))
    }
}

impl<T> core::fmt::Debug for ModuleLock<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(if self.is_passive() {
            "ModuleLock::Wait"
        } else {
            "ModuleLock::Spin"
        })
    }
}

/// Holds a [`ModuleLock`]; released when dropped.
pub enum ModuleLockGuard<'a, T> {
    /// Spin lock held (IRQL is `DISPATCH_LEVEL`).
    Spin(SpinLockGuard<'a, T>),
    /// Wait lock held.
    Wait(WaitLockGuard<'a, T>),
}

impl<T> Deref for ModuleLockGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        match self {
            Self::Spin(guard) => guard,
            Self::Wait(guard) => guard,
        }
    }
}

impl<T> DerefMut for ModuleLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        match self {
            Self::Spin(guard) => guard,
            Self::Wait(guard) => guard,
        }
    }
}
