//! Kernel system threads running Rust closures, and a delay helper.

use alloc::boxed::Box;
use core::time::Duration;

use wdk_sys::{
    _KWAIT_REASON, _MODE, HANDLE, LARGE_INTEGER, OBJ_KERNEL_HANDLE, OBJECT_ATTRIBUTES, PVOID,
    SYNCHRONIZE, THREAD_ALL_ACCESS, ntddk,
};

use super::status::NtStatus;
use super::wait_lock::relative_timeout;

/// A kernel system thread running a Rust closure at `PASSIVE_LEVEL`.
///
/// [`SystemThread::join`] waits for it to finish. Dropping an unjoined `SystemThread` joins it
/// too (a driver must not unload while its threads run), so drop it at `PASSIVE_LEVEL`.
#[derive(Debug)]
pub struct SystemThread {
    handle: HANDLE,
}

// SAFETY: a kernel handle may be used from any thread of the system process.
unsafe impl Send for SystemThread {}
// SAFETY: `&SystemThread` offers no operation.
unsafe impl Sync for SystemThread {}

/// The start routine: takes back the boxed closure and runs it. Returning ends the thread.
unsafe extern "C" fn trampoline<F: FnOnce() + Send + 'static>(context: PVOID) {
    // SAFETY: `spawn` passed the pointer of a leaked `Box<F>` and gives it up to this thread.
    let body = unsafe { Box::from_raw(context.cast::<F>()) };
    body();
}

impl SystemThread {
    /// Starts `body` on a new system thread (`PsCreateSystemThread`). `PASSIVE_LEVEL` only.
    /// The closure is boxed once, here.
    pub fn spawn<F: FnOnce() + Send + 'static>(body: F) -> Result<Self, NtStatus> {
        let context = Box::into_raw(Box::new(body));
        let mut attributes = OBJECT_ATTRIBUTES {
            Length: size_of::<OBJECT_ATTRIBUTES>() as u32,
            RootDirectory: core::ptr::null_mut(),
            ObjectName: core::ptr::null_mut(),
            Attributes: OBJ_KERNEL_HANDLE,
            SecurityDescriptor: core::ptr::null_mut(),
            SecurityQualityOfService: core::ptr::null_mut(),
        };
        let mut handle: HANDLE = core::ptr::null_mut();
        // SAFETY: the out pointer and attributes are valid locals; the trampoline matches the
        // type of `context`, which the new thread takes over on success.
        let status = unsafe {
            ntddk::PsCreateSystemThread(
                &raw mut handle,
                THREAD_ALL_ACCESS,
                &raw mut attributes,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                Some(trampoline::<F>),
                context.cast(),
            )
        };
        if let Err(error) = NtStatus::from_raw(status).into_result() {
            // SAFETY: the thread was not created, so the box is still ours.
            drop(unsafe { Box::from_raw(context) });
            return Err(error);
        }
        Ok(Self { handle })
    }

    /// Waits for the thread to finish and closes its handle. `PASSIVE_LEVEL` only.
    pub fn join(mut self) -> Result<(), NtStatus> {
        self.join_inner()
    }

    fn join_inner(&mut self) -> Result<(), NtStatus> {
        let handle = core::mem::replace(&mut self.handle, core::ptr::null_mut());
        if handle.is_null() {
            return Ok(());
        }
        let mut object: PVOID = core::ptr::null_mut();
        // SAFETY: reading the kernel's thread object type pointer.
        let thread_type_pointer = unsafe { wdk_sys::PsThreadType };
        // SAFETY: `PsThreadType` points at the thread object type for the life of the system.
        let thread_type = unsafe { *thread_type_pointer };
        // SAFETY: `handle` is the open kernel handle this value owns; the out pointer is a local.
        let status = unsafe {
            ntddk::ObReferenceObjectByHandle(
                handle,
                SYNCHRONIZE,
                thread_type,
                _MODE::KernelMode as i8,
                &raw mut object,
                core::ptr::null_mut(),
            )
        };
        let result = NtStatus::from_raw(status).into_result();
        if result.is_ok() {
            // SAFETY: `object` is the referenced thread object; a null timeout waits until the
            // thread exits.
            let waited = unsafe {
                ntddk::KeWaitForSingleObject(
                    object,
                    _KWAIT_REASON::Executive,
                    _MODE::KernelMode as i8,
                    0,
                    core::ptr::null_mut(),
                )
            };
            // SAFETY: releases the reference taken above, exactly once.
            unsafe { ntddk::ObfDereferenceObject(object) };
            NtStatus::from_raw(waited).into_result()?;
        }
        // SAFETY: closes the handle this value owned, exactly once.
        let closed = unsafe { ntddk::ZwClose(handle) };
        result?;
        NtStatus::from_raw(closed).into_result()
    }
}

impl Drop for SystemThread {
    fn drop(&mut self) {
        let _ = self.join_inner();
    }
}

/// Puts the calling thread to sleep for `duration` (`KeDelayExecutionThread`, relative
/// interval). IRQL `<= APC_LEVEL`.
pub fn delay(duration: Duration) -> Result<(), NtStatus> {
    let mut interval = LARGE_INTEGER {
        QuadPart: relative_timeout(duration),
    };
    // SAFETY: the interval is a valid local.
    let status =
        unsafe { ntddk::KeDelayExecutionThread(_MODE::KernelMode as i8, 0, &raw mut interval) };
    NtStatus::from_raw(status).into_result()
}

/// The calling thread's ID (`PsGetCurrentThreadId`), as a number: unique among the threads
/// alive now, never 0. Callable at any IRQL.
#[must_use]
pub fn current_thread_id() -> usize {
    // SAFETY: no arguments; callable at any IRQL.
    unsafe { ntddk::PsGetCurrentThreadId() as usize }
}
