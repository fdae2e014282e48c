//! `WDFMEMORY`: a framework buffer owned by a Rust value.

use wdk_sys::{
    _POOL_TYPE, WDF_NO_OBJECT_ATTRIBUTES, WDFMEMORY, WDFOBJECT, call_unsafe_wdf_function_binding,
};

use super::object::ObjectAttributes;
use super::status::NtStatus;

/// Pool a framework buffer is allocated from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolType {
    /// Non-paged, no-execute pool: usable at any IRQL up to `DISPATCH_LEVEL`.
    #[default]
    NonPaged,
    /// Paged pool: touch it at `PASSIVE_LEVEL` only.
    Paged,
}

impl PoolType {
    pub(crate) const fn raw(self) -> wdk_sys::POOL_TYPE {
        match self {
            Self::NonPaged => _POOL_TYPE::NonPagedPoolNx,
            Self::Paged => _POOL_TYPE::PagedPool,
        }
    }

    /// Whether buffers of this pool may only be touched at `PASSIVE_LEVEL`.
    #[must_use]
    pub const fn is_paged(self) -> bool {
        matches!(self, Self::Paged)
    }
}

/// Pool tag used for every allocation this crate makes (`DmfR`).
pub const POOL_TAG: u32 = u32::from_le_bytes(*b"DmfR");

/// A framework memory object and its buffer; deleted when dropped.
#[derive(Debug)]
pub struct Memory {
    handle: WDFMEMORY,
    address: *mut u8,
    length: usize,
}

// SAFETY: a WDFMEMORY handle may be used from any thread; the buffer is reachable only through
// `&self`/`&mut self`, so Rust's borrow rules serialize access to it.
unsafe impl Send for Memory {}
// SAFETY: shared access only reads the buffer.
unsafe impl Sync for Memory {}

impl Memory {
    /// Allocates a zero-filled buffer of `length` bytes, parented to `parent` (or the driver).
    pub fn create(
        length: usize,
        pool: PoolType,
        parent: Option<WDFOBJECT>,
    ) -> Result<Self, NtStatus> {
        let mut attributes = ObjectAttributes::new();
        if let Some(parent) = parent {
            attributes.set_parent(parent);
        }
        let mut handle: WDFMEMORY = core::ptr::null_mut();
        let mut buffer: wdk_sys::PVOID = core::ptr::null_mut();
        // SAFETY: the attributes are initialized, the out pointers are valid locals.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfMemoryCreate,
                attributes.as_mut_ptr(),
                pool.raw(),
                POOL_TAG,
                length,
                &raw mut handle,
                &raw mut buffer
            )
        };
        NtStatus::from_raw(status).into_result()?;
        if buffer.is_null() {
            // SAFETY: the handle was just created and is deleted once, here.
            unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, handle.cast()) };
            return Err(NtStatus::INSUFFICIENT_RESOURCES);
        }
        Ok(Self {
            handle,
            address: buffer.cast(),
            length,
        })
    }

    /// The raw handle, for passing to other framework calls.
    #[must_use]
    pub fn handle(&self) -> WDFMEMORY {
        self.handle
    }

    /// Buffer length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.length
    }

    /// Whether the buffer is empty (never, for a created buffer).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// The buffer.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the framework buffer holds `length` bytes and lives as long as the handle,
        // which `self` owns.
        unsafe { core::slice::from_raw_parts(self.address, self.length) }
    }

    /// The buffer, writable.
    #[must_use]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes this the only access.
        unsafe { core::slice::from_raw_parts_mut(self.address, self.length) }
    }

    /// Copies `source` into the buffer at `offset` (`WdfMemoryCopyFromBuffer`);
    /// `INVALID_BUFFER_SIZE` if it does not fit.
    pub fn copy_from(&mut self, offset: usize, source: &[u8]) -> Result<(), NtStatus> {
        // SAFETY: `source` is a valid slice; the framework checks the range against the buffer.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfMemoryCopyFromBuffer,
                self.handle,
                offset,
                source.as_ptr().cast_mut().cast(),
                source.len()
            )
        };
        NtStatus::from_raw(status).into_result()
    }

    /// Copies from the buffer at `offset` into `destination` (`WdfMemoryCopyToBuffer`);
    /// `BUFFER_TOO_SMALL` if the range does not fit.
    pub fn copy_to(&self, offset: usize, destination: &mut [u8]) -> Result<(), NtStatus> {
        // SAFETY: `destination` is a valid writable slice; the framework checks the range.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfMemoryCopyToBuffer,
                self.handle,
                offset,
                destination.as_mut_ptr().cast(),
                destination.len()
            )
        };
        NtStatus::from_raw(status).into_result()
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: `self` owns the handle; it is deleted exactly once.
        unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, self.handle.cast()) };
    }
}

/// Unused-attributes marker kept for call sites that pass none.
pub const NO_ATTRIBUTES: wdk_sys::PWDF_OBJECT_ATTRIBUTES = WDF_NO_OBJECT_ATTRIBUTES;
