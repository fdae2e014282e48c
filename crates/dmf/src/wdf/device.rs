//! `WDFDEVICE`: device initialization and creation, device interfaces and symbolic links.

use wdk_sys::{
    _WDF_DEVICE_IO_TYPE, GUID, PFN_WDF_DEVICE_D0_ENTRY, PFN_WDF_DEVICE_D0_EXIT,
    PFN_WDF_DEVICE_PREPARE_HARDWARE, PFN_WDF_DEVICE_QUERY_REMOVE, PFN_WDF_DEVICE_RELEASE_HARDWARE,
    PFN_WDF_DEVICE_SURPRISE_REMOVAL, PWDFDEVICE_INIT, UNICODE_STRING, WDF_NO_OBJECT_ATTRIBUTES,
    WDF_PNPPOWER_EVENT_CALLBACKS, WDFDEVICE, WDFQUEUE, call_unsafe_wdf_function_binding,
};

use super::driver::Driver;
use super::io_target::IoTarget;
use super::object::ObjectAttributes;
use super::status::NtStatus;

/// The `PnP` and power callbacks a device registers (`WDF_PNPPOWER_EVENT_CALLBACKS`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PnpPowerCallbacks {
    /// `EvtDevicePrepareHardware`.
    pub prepare_hardware: PFN_WDF_DEVICE_PREPARE_HARDWARE,
    /// `EvtDeviceReleaseHardware`.
    pub release_hardware: PFN_WDF_DEVICE_RELEASE_HARDWARE,
    /// `EvtDeviceD0Entry`.
    pub d0_entry: PFN_WDF_DEVICE_D0_ENTRY,
    /// `EvtDeviceD0Exit`.
    pub d0_exit: PFN_WDF_DEVICE_D0_EXIT,
    /// `EvtDeviceQueryRemove`.
    pub query_remove: PFN_WDF_DEVICE_QUERY_REMOVE,
    /// `EvtDeviceSurpriseRemoval`.
    pub surprise_removal: PFN_WDF_DEVICE_SURPRISE_REMOVAL,
}

/// How the device's requests carry buffers (`WDF_DEVICE_IO_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoType {
    /// Buffered I/O.
    Buffered,
    /// Direct I/O.
    Direct,
    /// Neither.
    Neither,
}

/// The `WDFDEVICE_INIT` handed to `EvtDriverDeviceAdd`; consumed by [`DeviceInit::create`].
#[derive(Debug)]
pub struct DeviceInit(PWDFDEVICE_INIT);

impl DeviceInit {
    /// Wraps the init `EvtDriverDeviceAdd` received.
    ///
    /// # Safety
    /// `init` must be the pointer the framework passed to the running `EvtDriverDeviceAdd`.
    #[must_use]
    pub const unsafe fn from_raw(init: PWDFDEVICE_INIT) -> Self {
        Self(init)
    }

    /// `WdfDeviceInitSetPnpPowerEventCallbacks`.
    pub fn set_pnp_power_callbacks(&mut self, callbacks: &PnpPowerCallbacks) {
        let mut raw = WDF_PNPPOWER_EVENT_CALLBACKS {
            Size: size_of::<WDF_PNPPOWER_EVENT_CALLBACKS>() as u32,
            EvtDevicePrepareHardware: callbacks.prepare_hardware,
            EvtDeviceReleaseHardware: callbacks.release_hardware,
            EvtDeviceD0Entry: callbacks.d0_entry,
            EvtDeviceD0Exit: callbacks.d0_exit,
            EvtDeviceQueryRemove: callbacks.query_remove,
            EvtDeviceSurpriseRemoval: callbacks.surprise_removal,
            ..WDF_PNPPOWER_EVENT_CALLBACKS::default()
        };
        // SAFETY: a live init and initialized callbacks.
        unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceInitSetPnpPowerEventCallbacks,
                self.0,
                &raw mut raw
            );
        };
    }

    /// `WdfDeviceInitSetIoType`.
    pub fn set_io_type(&mut self, io_type: IoType) {
        let raw = match io_type {
            IoType::Buffered => _WDF_DEVICE_IO_TYPE::WdfDeviceIoBuffered,
            IoType::Direct => _WDF_DEVICE_IO_TYPE::WdfDeviceIoDirect,
            IoType::Neither => _WDF_DEVICE_IO_TYPE::WdfDeviceIoNeither,
        };
        // SAFETY: a live init.
        unsafe { call_unsafe_wdf_function_binding!(WdfDeviceInitSetIoType, self.0, raw) };
    }

    /// `WdfDeviceCreate`, with optional attributes (context type, cleanup callback).
    pub fn create(self, attributes: Option<&mut ObjectAttributes>) -> Result<Device, NtStatus> {
        let mut init = self.0;
        let attributes = attributes.map_or(WDF_NO_OBJECT_ATTRIBUTES, ObjectAttributes::as_mut_ptr);
        let mut handle: WDFDEVICE = core::ptr::null_mut();
        // SAFETY: a live init, valid attributes (or none) and out pointer.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceCreate,
                &raw mut init,
                attributes,
                &raw mut handle
            )
        };
        NtStatus::from_raw(status).into_result()?;
        Ok(Device(handle))
    }
}

/// A framework device (owned by the framework; a copyable handle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device(WDFDEVICE);

// SAFETY: a WDFDEVICE handle may be used from any thread.
unsafe impl Send for Device {}
// SAFETY: as above; the framework serializes the device's state.
unsafe impl Sync for Device {}

fn unicode(text: &[u16]) -> Result<UNICODE_STRING, NtStatus> {
    let length = u16::try_from(text.len() * 2).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    Ok(UNICODE_STRING {
        Length: length,
        MaximumLength: length,
        Buffer: text.as_ptr().cast_mut(),
    })
}

impl Device {
    /// Wraps a handle the framework passed to a callback.
    #[must_use]
    pub const fn from_raw(handle: WDFDEVICE) -> Self {
        Self(handle)
    }

    /// The raw handle.
    #[must_use]
    pub const fn handle(self) -> WDFDEVICE {
        self.0
    }

    /// `WdfDeviceCreateDeviceInterface` with an optional reference string (UTF-16).
    pub fn create_device_interface(
        self,
        class: &GUID,
        reference: Option<&[u16]>,
    ) -> Result<(), NtStatus> {
        let reference = reference.map(unicode).transpose()?;
        let reference_ptr = reference
            .as_ref()
            .map_or(core::ptr::null(), core::ptr::from_ref);
        // SAFETY: a valid device; the GUID and string outlive the call.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDeviceCreateDeviceInterface,
                self.0,
                core::ptr::from_ref(class),
                reference_ptr
            )
        };
        NtStatus::from_raw(status).into_result()
    }

    /// `WdfDeviceCreateSymbolicLink` (UTF-16 name, e.g. `\DosDevices\Name`).
    pub fn create_symbolic_link(self, name: &[u16]) -> Result<(), NtStatus> {
        let name = unicode(name)?;
        // SAFETY: a valid device; the string outlives the call.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(WdfDeviceCreateSymbolicLink, self.0, &raw const name)
        };
        NtStatus::from_raw(status).into_result()
    }

    /// The device's local I/O target (`WdfDeviceGetIoTarget`).
    #[must_use]
    pub fn io_target(self) -> IoTarget {
        IoTarget::local(self)
    }

    /// `WdfDeviceGetDriver`.
    #[must_use]
    pub fn driver(self) -> Driver {
        // SAFETY: a valid device.
        Driver::from_raw(unsafe { call_unsafe_wdf_function_binding!(WdfDeviceGetDriver, self.0) })
    }

    /// `WdfDeviceGetDefaultQueue` (null if none).
    #[must_use]
    pub fn default_queue(self) -> WDFQUEUE {
        // SAFETY: a valid device.
        unsafe { call_unsafe_wdf_function_binding!(WdfDeviceGetDefaultQueue, self.0) }
    }
}
