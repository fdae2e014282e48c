//! `WDFDRIVER`: the driver entry path.

use wdk_sys::{
    PCUNICODE_STRING, PDRIVER_OBJECT, PFN_WDF_DRIVER_DEVICE_ADD, PFN_WDF_DRIVER_UNLOAD,
    WDF_DRIVER_CONFIG, WDF_NO_OBJECT_ATTRIBUTES, WDFDRIVER, call_unsafe_wdf_function_binding,
};

use super::memory::POOL_TAG;
use super::status::NtStatus;

/// The driver's callbacks (`WDF_DRIVER_CONFIG`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DriverConfig {
    /// `EvtDriverDeviceAdd`.
    pub device_add: PFN_WDF_DRIVER_DEVICE_ADD,
    /// `EvtDriverUnload`.
    pub unload: PFN_WDF_DRIVER_UNLOAD,
}

/// The framework driver object (owned by the framework; a copyable handle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Driver(WDFDRIVER);

impl Driver {
    /// `WdfDriverCreate`, called from `DriverEntry` with its arguments.
    ///
    /// # Safety
    /// `driver_object` and `registry_path` must be the arguments `DriverEntry` received.
    pub unsafe fn create(
        driver_object: PDRIVER_OBJECT,
        registry_path: PCUNICODE_STRING,
        config: DriverConfig,
    ) -> Result<Self, NtStatus> {
        let mut raw = WDF_DRIVER_CONFIG {
            Size: size_of::<WDF_DRIVER_CONFIG>() as u32,
            EvtDriverDeviceAdd: config.device_add,
            EvtDriverUnload: config.unload,
            DriverInitFlags: 0,
            DriverPoolTag: POOL_TAG,
        };
        let mut handle: WDFDRIVER = core::ptr::null_mut();
        // SAFETY: the caller passes DriverEntry's arguments; the config and out pointer are valid.
        let status = unsafe {
            call_unsafe_wdf_function_binding!(
                WdfDriverCreate,
                driver_object,
                registry_path,
                WDF_NO_OBJECT_ATTRIBUTES,
                &raw mut raw,
                &raw mut handle
            )
        };
        NtStatus::from_raw(status).into_result()?;
        Ok(Self(handle))
    }

    /// Wraps a handle the framework passed to a callback.
    #[must_use]
    pub const fn from_raw(handle: WDFDRIVER) -> Self {
        Self(handle)
    }

    /// The raw handle.
    #[must_use]
    pub const fn handle(self) -> WDFDRIVER {
        self.0
    }

    /// `WdfDriverWdmGetDriverObject` (for `IoRegisterPlugPlayNotification`).
    #[must_use]
    pub fn wdm_driver_object(self) -> PDRIVER_OBJECT {
        // SAFETY: a valid driver handle.
        unsafe { call_unsafe_wdf_function_binding!(WdfDriverWdmGetDriverObject, self.0) }
    }
}
