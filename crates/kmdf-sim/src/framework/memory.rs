//! `WDFMEMORY`: framework-allocated and preallocated buffers with bounds-checked copies.

use std::alloc::Layout;
use std::sync::{Mutex, PoisonError};

use super::object::{self, Attributes, Payload};
use super::table::Entry;
use super::verifier::{self, rules};
use super::{faults, irql, wdf_entry};
use crate::constants::{
    STATUS_BUFFER_TOO_SMALL, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_BUFFER_SIZE,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
};
use crate::types::{
    NTSTATUS, POOL_TYPE, PVOID, PWDF_DRIVER_GLOBALS, PWDF_OBJECT_ATTRIBUTES, ULONG, WDFMEMORY,
};

/// KMDF type name of memory objects.
pub(crate) const KIND: &str = "WDFMEMORY";

/// A memory object's buffer.
pub(crate) struct Memory {
    region: Mutex<Region>,
}

#[derive(Clone, Copy)]
struct Region {
    address: usize,
    length: usize,
    /// Set when the framework allocated the buffer and frees it with the object.
    owned: Option<Layout>,
}

impl Memory {
    /// (address, length) of the buffer.
    pub(crate) fn buffer(&self) -> (usize, usize) {
        let region = *self.region.lock().unwrap_or_else(PoisonError::into_inner);
        (region.address, region.length)
    }
}

impl Payload for Memory {}

impl Drop for Memory {
    fn drop(&mut self) {
        let region = *self
            .region
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(layout) = region.owned {
            // SAFETY: an owned region was allocated in `create_owned` with this layout and is
            // freed only here, when the last holder of the object lets go of it.
            unsafe { std::alloc::dealloc(region.address as *mut u8, layout) };
        }
    }
}

/// Whether a `POOL_TYPE` is pageable (the low bit marks the paged pool types).
pub(crate) fn is_paged(pool_type: POOL_TYPE) -> bool {
    pool_type & 1 != 0
}

/// Creates a memory object over a buffer the caller keeps alive (framework-internal users:
/// request buffers, preallocated memory).
pub(crate) fn create_view(
    attributes: &Attributes,
    parent: usize,
    address: usize,
    length: usize,
) -> Result<usize, NTSTATUS> {
    let payload = Memory {
        region: Mutex::new(Region {
            address,
            length,
            owned: None,
        }),
    };
    object::create(KIND, attributes, parent, Box::new(payload))
}

fn create_owned(attributes: &Attributes, length: usize) -> Result<(usize, usize), NTSTATUS> {
    faults::hit(faults::FaultPoint::Allocation)?;
    let layout = Layout::from_size_align(length, 16).map_err(|_| STATUS_INVALID_PARAMETER)?;
    // SAFETY: `length` is nonzero (checked by the caller).
    let address = unsafe { std::alloc::alloc_zeroed(layout) };
    if address.is_null() {
        return Err(STATUS_INSUFFICIENT_RESOURCES);
    }
    let payload = Memory {
        region: Mutex::new(Region {
            address: address as usize,
            length,
            owned: Some(layout),
        }),
    };
    // On failure the payload is dropped, which frees the buffer.
    let handle = object::create(
        KIND,
        attributes,
        object::default_parent(),
        Box::new(payload),
    )?;
    Ok((handle, address as usize))
}

/// The buffer of a memory handle, reporting a bad handle on behalf of `api`.
pub(crate) fn buffer_of(memory: WDFMEMORY, api: &str) -> Option<(usize, usize)> {
    let object = object::lookup_payload::<Memory>(object::handle_of(memory), KIND, api)?;
    object.payload::<Memory>().map(Memory::buffer)
}

unsafe extern "C" fn wdf_memory_create(
    _globals: PWDF_DRIVER_GLOBALS,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    pool_type: POOL_TYPE,
    _pool_tag: ULONG,
    buffer_size: usize,
    memory: *mut WDFMEMORY,
    buffer: *mut PVOID,
) -> NTSTATUS {
    const API: &str = "WdfMemoryCreate";
    let allowed = if is_paged(pool_type) {
        irql::APC
    } else {
        irql::DISPATCH
    };
    if !irql::require_at_most(allowed, API) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    if memory.is_null() || buffer_size == 0 {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "null Memory out pointer or zero BufferSize".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let attributes = match Attributes::read(attributes, API) {
        Ok(attributes) => attributes,
        Err(status) => return status,
    };
    match create_owned(&attributes, buffer_size) {
        Ok((handle, address)) => {
            // SAFETY: `memory` is non-null and writable by the API contract.
            unsafe { memory.write(object::handle_ptr(handle)) };
            if !buffer.is_null() {
                // SAFETY: a non-null `Buffer` out pointer is writable by the API contract.
                unsafe { buffer.write(address as PVOID) };
            }
            STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

unsafe extern "C" fn wdf_memory_create_preallocated(
    _globals: PWDF_DRIVER_GLOBALS,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    buffer: PVOID,
    buffer_size: usize,
    memory: *mut WDFMEMORY,
) -> NTSTATUS {
    const API: &str = "WdfMemoryCreatePreallocated";
    if !irql::require_at_most(irql::DISPATCH, API) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    if memory.is_null() || buffer.is_null() || buffer_size == 0 {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "null Buffer or Memory, or zero BufferSize".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let attributes = match Attributes::read(attributes, API) {
        Ok(attributes) => attributes,
        Err(status) => return status,
    };
    match create_view(
        &attributes,
        object::default_parent(),
        buffer as usize,
        buffer_size,
    ) {
        Ok(handle) => {
            // SAFETY: `memory` is non-null and writable by the API contract.
            unsafe { memory.write(object::handle_ptr(handle)) };
            STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

unsafe extern "C" fn wdf_memory_assign_buffer(
    _globals: PWDF_DRIVER_GLOBALS,
    memory: WDFMEMORY,
    buffer: PVOID,
    buffer_size: usize,
) -> NTSTATUS {
    const API: &str = "WdfMemoryAssignBuffer";
    let Some(object) = object::lookup_payload::<Memory>(object::handle_of(memory), KIND, API)
    else {
        return STATUS_INVALID_PARAMETER;
    };
    if buffer.is_null() || buffer_size == 0 {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "null Buffer or zero BufferSize".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let Some(payload) = object.payload::<Memory>() else {
        return STATUS_INVALID_PARAMETER;
    };
    let mut region = payload
        .region
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if region.owned.is_some() {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            format!("{object} was not created preallocated"),
        );
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    region.address = buffer as usize;
    region.length = buffer_size;
    STATUS_SUCCESS
}

unsafe extern "C" fn wdf_memory_get_buffer(
    _globals: PWDF_DRIVER_GLOBALS,
    memory: WDFMEMORY,
    buffer_size: *mut usize,
) -> PVOID {
    let Some((address, length)) = buffer_of(memory, "WdfMemoryGetBuffer") else {
        return core::ptr::null_mut();
    };
    if !buffer_size.is_null() {
        // SAFETY: a non-null `BufferSize` out pointer is writable by the API contract.
        unsafe { buffer_size.write(length) };
    }
    address as PVOID
}

/// The checks KMDF makes before a copy between a WDFMEMORY and a raw buffer
/// (`WdfMemoryCopyToBuffer` / `WdfMemoryCopyFromBuffer` in fxmemorybufferapi.cpp, then
/// `IFxMemory::_CopyPtrToPtr` in fxmemoryobject.cpp). A null `Buffer` is a verifier bugcheck there
/// (`FxPointerNotNull`); everything else only fails the call, with no verifier break:
/// - zero bytes: `STATUS_INVALID_PARAMETER`;
/// - an offset at or past the end of the memory, or more bytes than remain after it:
///   `STATUS_BUFFER_TOO_SMALL` when the memory is the source (copy to a buffer),
///   `STATUS_INVALID_BUFFER_SIZE` when it is the destination (copy from a buffer).
fn check_copy(
    api: &str,
    buffer: PVOID,
    offset: usize,
    count: usize,
    length: usize,
    out_of_range: NTSTATUS,
) -> Result<(), NTSTATUS> {
    if buffer.is_null() {
        verifier::report(rules::INVALID_ARGUMENT, api, "null Buffer".to_string());
        return Err(STATUS_INVALID_PARAMETER);
    }
    if count == 0 {
        return Err(STATUS_INVALID_PARAMETER);
    }
    // `_CopyPtrToPtr` checks a nonzero offset against the size, then the count against what is
    // left after the offset.
    if offset != 0 && offset >= length {
        return Err(out_of_range);
    }
    if count > length - offset {
        return Err(out_of_range);
    }
    Ok(())
}

unsafe extern "C" fn wdf_memory_copy_to_buffer(
    _globals: PWDF_DRIVER_GLOBALS,
    source: WDFMEMORY,
    source_offset: usize,
    buffer: PVOID,
    count: usize,
) -> NTSTATUS {
    const API: &str = "WdfMemoryCopyToBuffer";
    let Some((address, length)) = buffer_of(source, API) else {
        return STATUS_INVALID_PARAMETER;
    };
    if let Err(status) = check_copy(
        API,
        buffer,
        source_offset,
        count,
        length,
        STATUS_BUFFER_TOO_SMALL,
    ) {
        return status;
    }
    // SAFETY: the source range is inside the memory object's buffer (checked above); the
    // destination holds `count` bytes by the API contract; `copy` tolerates overlap.
    unsafe {
        core::ptr::copy(
            (address + source_offset) as *const u8,
            buffer.cast::<u8>(),
            count,
        );
    }
    STATUS_SUCCESS
}

unsafe extern "C" fn wdf_memory_copy_from_buffer(
    _globals: PWDF_DRIVER_GLOBALS,
    destination: WDFMEMORY,
    destination_offset: usize,
    buffer: PVOID,
    count: usize,
) -> NTSTATUS {
    const API: &str = "WdfMemoryCopyFromBuffer";
    let Some((address, length)) = buffer_of(destination, API) else {
        return STATUS_INVALID_PARAMETER;
    };
    if let Err(status) = check_copy(
        API,
        buffer,
        destination_offset,
        count,
        length,
        STATUS_INVALID_BUFFER_SIZE,
    ) {
        return status;
    }
    // SAFETY: the destination range is inside the memory object's buffer (checked above); the
    // source holds `count` bytes by the API contract; `copy` tolerates overlap.
    unsafe {
        core::ptr::copy(
            buffer.cast::<u8>().cast_const(),
            (address + destination_offset) as *mut u8,
            count,
        );
    }
    STATUS_SUCCESS
}

pub(crate) const ENTRIES: &[Entry] = &[
    wdf_entry!(
        WdfMemoryCreateTableIndex,
        PFN_WDFMEMORYCREATE,
        wdf_memory_create
    ),
    wdf_entry!(
        WdfMemoryCreatePreallocatedTableIndex,
        PFN_WDFMEMORYCREATEPREALLOCATED,
        wdf_memory_create_preallocated
    ),
    wdf_entry!(
        WdfMemoryAssignBufferTableIndex,
        PFN_WDFMEMORYASSIGNBUFFER,
        wdf_memory_assign_buffer
    ),
    wdf_entry!(
        WdfMemoryGetBufferTableIndex,
        PFN_WDFMEMORYGETBUFFER,
        wdf_memory_get_buffer
    ),
    wdf_entry!(
        WdfMemoryCopyToBufferTableIndex,
        PFN_WDFMEMORYCOPYTOBUFFER,
        wdf_memory_copy_to_buffer
    ),
    wdf_entry!(
        WdfMemoryCopyFromBufferTableIndex,
        PFN_WDFMEMORYCOPYFROMBUFFER,
        wdf_memory_copy_from_buffer
    ),
];
