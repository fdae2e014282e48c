//! Raw-WDF scaffolding the simulation's integration tests share: a driver whose devices are
//! plain `WdfDeviceCreate` devices, I/O targets opened by name, and request and memory objects.
//! Each test file uses part of it.
// The simulation's own copy of the binding macro counts as a local macro here, so its internal
// unsafe blocks are linted as if they were this file's.
#![allow(
    dead_code,
    clippy::missing_safety_doc,
    clippy::multiple_unsafe_ops_per_block,
    clippy::undocumented_unsafe_blocks
)]

use wdk_sys::*;

/// `WdfDeviceCreate` with no attributes; returns its status and the device. The framework
/// clears `init` when it creates the device.
pub fn device_create(init: &mut PWDFDEVICE_INIT) -> (NTSTATUS, WDFDEVICE) {
    let mut device: WDFDEVICE = core::ptr::null_mut();
    // SAFETY: the init comes from the simulated PnP manager; the out pointer is a valid local.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDeviceCreate,
            core::ptr::from_mut(init),
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut device
        )
    };
    (status, device)
}

/// `EvtDriverDeviceAdd` that creates a device with default settings.
pub unsafe extern "C" fn device_add(_driver: WDFDRIVER, mut init: PWDFDEVICE_INIT) -> NTSTATUS {
    device_create(&mut init).0
}

/// `DriverEntry` of a driver whose `EvtDriverDeviceAdd` is [`device_add`].
pub unsafe extern "C" fn driver_entry(
    driver_object: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    let mut config = driver_config(Some(device_add));
    // SAFETY: arguments as DriverEntry received them.
    unsafe { create_driver(driver_object, registry_path, &mut config) }
}

/// A driver configuration with `device_add` as its `EvtDriverDeviceAdd`.
pub fn driver_config(device_add: PFN_WDF_DRIVER_DEVICE_ADD) -> WDF_DRIVER_CONFIG {
    WDF_DRIVER_CONFIG {
        Size: size_of::<WDF_DRIVER_CONFIG>() as u32,
        EvtDriverDeviceAdd: device_add,
        ..Default::default()
    }
}

/// `WdfDriverCreate` with `config` and no attributes.
///
/// # Safety
/// `driver_object` and `registry_path` as `DriverEntry` received them.
pub unsafe fn create_driver(
    driver_object: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
    config: &mut WDF_DRIVER_CONFIG,
) -> NTSTATUS {
    // SAFETY: arguments as DriverEntry received them, per the caller.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfDriverCreate,
            driver_object,
            registry_path,
            WDF_NO_OBJECT_ATTRIBUTES,
            core::ptr::from_mut(config),
            core::ptr::null_mut()
        )
    }
}

/// Creates an I/O target of `device`, not yet opened.
pub fn create_target(device: WDFDEVICE) -> WDFIOTARGET {
    let mut target: WDFIOTARGET = core::ptr::null_mut();
    // SAFETY: valid device and out pointer.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfIoTargetCreate,
            device,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut target
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    target
}

/// Opens `target` on the device named `name` for reading and writing.
pub fn open_by_name(target: WDFIOTARGET, name: &str) -> NTSTATUS {
    open_by_name_with(
        target,
        name,
        WDF_IO_TARGET_OPEN_PARAMS {
            DesiredAccess: GENERIC_READ | GENERIC_WRITE,
            ..Default::default()
        },
    )
}

/// Opens `target` on the device named `name`, the rest of the parameters from `params`.
pub fn open_by_name_with(
    target: WDFIOTARGET,
    name: &str,
    params: WDF_IO_TARGET_OPEN_PARAMS,
) -> NTSTATUS {
    let wide: Vec<u16> = name.encode_utf16().collect();
    let mut params = WDF_IO_TARGET_OPEN_PARAMS {
        Size: size_of::<WDF_IO_TARGET_OPEN_PARAMS>() as u32,
        Type: _WDF_IO_TARGET_OPEN_TYPE::WdfIoTargetOpenByName,
        TargetDeviceName: UNICODE_STRING {
            Length: (wide.len() * 2) as u16,
            MaximumLength: (wide.len() * 2) as u16,
            Buffer: wide.as_ptr().cast_mut(),
        },
        ..params
    };
    // SAFETY: valid target and params.
    unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetOpen, target, &raw mut params) }
}

/// `WdfIoTargetGetState`.
pub fn state(target: WDFIOTARGET) -> WDF_IO_TARGET_STATE {
    // SAFETY: a valid target.
    unsafe { call_unsafe_wdf_function_binding!(WdfIoTargetGetState, target) }
}

/// Creates a request for `target`.
pub fn create_request(target: WDFIOTARGET) -> WDFREQUEST {
    let mut request: WDFREQUEST = core::ptr::null_mut();
    // SAFETY: valid out pointer.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfRequestCreate,
            WDF_NO_OBJECT_ATTRIBUTES,
            target,
            &raw mut request
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    request
}

/// Creates a nonpaged memory object of `length` bytes and returns it with its buffer.
pub fn create_memory(length: usize) -> (WDFMEMORY, *mut u8) {
    let mut memory: WDFMEMORY = core::ptr::null_mut();
    let mut buffer: PVOID = core::ptr::null_mut();
    // SAFETY: valid out pointers.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfMemoryCreate,
            WDF_NO_OBJECT_ATTRIBUTES,
            _POOL_TYPE::NonPagedPoolNx,
            0,
            length,
            &raw mut memory,
            &raw mut buffer
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    (memory, buffer.cast())
}

/// `WdfObjectDelete`.
pub fn delete(object: WDFOBJECT) {
    // SAFETY: the caller owns the object.
    unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, object) };
}

/// `WdfRequestReuse` with `STATUS_SUCCESS`.
pub fn reuse(request: WDFREQUEST) {
    let mut params = WDF_REQUEST_REUSE_PARAMS {
        Size: size_of::<WDF_REQUEST_REUSE_PARAMS>() as u32,
        Status: STATUS_SUCCESS,
        ..Default::default()
    };
    // SAFETY: a valid request and params.
    assert_eq!(
        unsafe { call_unsafe_wdf_function_binding!(WdfRequestReuse, request, &raw mut params) },
        STATUS_SUCCESS
    );
}

/// Creates a spin lock with no attributes.
pub fn create_spin_lock() -> WDFSPINLOCK {
    let mut lock: WDFSPINLOCK = core::ptr::null_mut();
    // SAFETY: the out pointer is a valid local.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfSpinLockCreate,
            WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut lock
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    lock
}
