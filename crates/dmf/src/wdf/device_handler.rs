//! A device's `PnP`/power callbacks and its state, in safe Rust: the driver implements
//! [`DeviceHandler`] for its per-device state, creates the device with [`create_device`] and
//! installs the state once the device (the parent of its modules) exists.
//!
//! The state lives in the device's object context until the device is destroyed. Every `PnP`
//! and power callback of the device reaches the matching method; [`DeviceHandler::cleanup`]
//! runs from the device's `EvtCleanupCallback` (after its children's cleanup, while their
//! handles are still valid: the place to close modules, `DeviceModules::destroy`), and the state
//! is dropped by the device's `EvtDestroyCallback`. Callbacks that arrive before the state is
//! installed (or when `EvtDriverDeviceAdd` failed after creating the device) succeed and do
//! nothing.
//!
//! ```ignore
//! fn device_add(_driver: Driver, init: DeviceInit) -> Result<(), NtStatus> {
//!     let pending = create_device::<MyDevice>(init)?;
//!     let state = MyDevice::new(pending.device())?;   // modules parented to the device
//!     pending.install(state)?;
//!     Ok(())
//! }
//! ```

use alloc::boxed::Box;
use core::ffi::c_void;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicPtr, Ordering};

use wdk_sys::{
    _WDF_EXECUTION_LEVEL, _WDF_SYNCHRONIZATION_SCOPE, NTSTATUS, PVOID, WDF_OBJECT_ATTRIBUTES,
    WDF_OBJECT_CONTEXT_TYPE_INFO, WDF_POWER_DEVICE_STATE, WDFCMRESLIST, WDFDEVICE, WDFOBJECT,
    call_unsafe_wdf_function_binding,
};

use super::device::{Device, DeviceInit, PnpPowerCallbacks};
use super::object::ObjectAttributes;
use super::status::NtStatus;

/// A device's `PnP` and power callbacks (all at `PASSIVE_LEVEL`). Every method defaults to
/// success with nothing done. Power states are raw `WDF_POWER_DEVICE_STATE` values
/// (`dmf::core::PowerState::from_raw` converts them).
pub trait DeviceHandler: Send + Sync + 'static {
    /// `EvtDevicePrepareHardware`.
    fn prepare_hardware(&self, device: Device) -> Result<(), NtStatus> {
        let _ = device;
        Ok(())
    }

    /// `EvtDeviceReleaseHardware`.
    fn release_hardware(&self, device: Device) -> Result<(), NtStatus> {
        let _ = device;
        Ok(())
    }

    /// `EvtDeviceD0Entry`, with the state the device comes from.
    fn d0_entry(&self, device: Device, previous: WDF_POWER_DEVICE_STATE) -> Result<(), NtStatus> {
        let _ = (device, previous);
        Ok(())
    }

    /// `EvtDeviceD0Exit`, with the state the device goes to.
    fn d0_exit(&self, device: Device, target: WDF_POWER_DEVICE_STATE) -> Result<(), NtStatus> {
        let _ = (device, target);
        Ok(())
    }

    /// `EvtDeviceSurpriseRemoval`.
    fn surprise_removal(&self, device: Device) {
        let _ = device;
    }

    /// `EvtDeviceQueryRemove`: an error vetoes the removal.
    fn query_remove(&self, device: Device) -> Result<(), NtStatus> {
        let _ = device;
        Ok(())
    }

    /// The device's `EvtCleanupCallback`.
    fn cleanup(&self, device: Device) {
        let _ = device;
    }
}

/// The device's object context: the installed handler (`Box<H>`), null until installed.
#[repr(C)]
struct HandlerSlot {
    handler: AtomicPtr<c_void>,
}

/// A context type description that may live in a `static`.
#[repr(transparent)]
struct ContextType(WDF_OBJECT_CONTEXT_TYPE_INFO);

// SAFETY: the description is immutable and points only at `'static` data.
unsafe impl Sync for ContextType {}

/// The context type of [`HandlerSlot`], as `WDF_DECLARE_CONTEXT_TYPE` declares one.
static DEVICE_HANDLER_CONTEXT: ContextType = ContextType(WDF_OBJECT_CONTEXT_TYPE_INFO {
    Size: size_of::<WDF_OBJECT_CONTEXT_TYPE_INFO>() as u32,
    ContextName: c"DmfDeviceHandlerContext".as_ptr(),
    ContextSize: size_of::<HandlerSlot>(),
    UniqueType: &raw const DEVICE_HANDLER_CONTEXT.0,
    EvtDriverGetUniqueContextType: None,
});

fn slot_of(object: WDFOBJECT) -> *mut HandlerSlot {
    // SAFETY: `object` is a live device created by `create_device`; the type info is a static.
    let context: PVOID = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfObjectGetTypedContextWorker,
            object,
            &raw const DEVICE_HANDLER_CONTEXT.0
        )
    };
    context.cast()
}

/// The handler of a device created by `create_device::<H>`.
///
/// # Safety
/// `device` must be a live device created by `create_device::<H>` (same `H`) whose destroy
/// callback has not run.
unsafe fn handler_of<'a, H: DeviceHandler>(device: WDFDEVICE) -> Option<&'a H> {
    let slot = slot_of(device.cast());
    if slot.is_null() {
        return None;
    }
    // SAFETY: the slot is the device's zero-initialized (or installed) `HandlerSlot`.
    let handler = unsafe { &(*slot).handler }.load(Ordering::Acquire);
    // SAFETY: a non-null slot value is the `Box<H>` installed by `PendingDevice::<H>::install`,
    // freed only by the destroy callback, which runs after every other callback of the device.
    unsafe { handler.cast::<H>().as_ref() }
}

fn with_handler<H: DeviceHandler>(
    device: WDFDEVICE,
    f: impl FnOnce(&H, Device) -> Result<(), NtStatus>,
) -> NTSTATUS {
    // SAFETY: the framework calls these trampolines only for devices `create_device::<H>` made.
    match unsafe { handler_of::<H>(device) } {
        Some(handler) => NtStatus::from_result(f(handler, Device::from_raw(device))).raw(),
        None => NtStatus::SUCCESS.raw(),
    }
}

unsafe extern "C" fn prepare_hardware<H: DeviceHandler>(
    device: WDFDEVICE,
    _raw: WDFCMRESLIST,
    _translated: WDFCMRESLIST,
) -> NTSTATUS {
    with_handler::<H>(device, H::prepare_hardware)
}

unsafe extern "C" fn release_hardware<H: DeviceHandler>(
    device: WDFDEVICE,
    _translated: WDFCMRESLIST,
) -> NTSTATUS {
    with_handler::<H>(device, H::release_hardware)
}

unsafe extern "C" fn d0_entry<H: DeviceHandler>(
    device: WDFDEVICE,
    previous: WDF_POWER_DEVICE_STATE,
) -> NTSTATUS {
    with_handler::<H>(device, |h, d| h.d0_entry(d, previous))
}

unsafe extern "C" fn d0_exit<H: DeviceHandler>(
    device: WDFDEVICE,
    target: WDF_POWER_DEVICE_STATE,
) -> NTSTATUS {
    with_handler::<H>(device, |h, d| h.d0_exit(d, target))
}

unsafe extern "C" fn query_remove<H: DeviceHandler>(device: WDFDEVICE) -> NTSTATUS {
    with_handler::<H>(device, H::query_remove)
}

unsafe extern "C" fn surprise_removal<H: DeviceHandler>(device: WDFDEVICE) {
    let _ = with_handler::<H>(device, |h, d| {
        h.surprise_removal(d);
        Ok(())
    });
}

unsafe extern "C" fn cleanup<H: DeviceHandler>(object: WDFOBJECT) {
    let _ = with_handler::<H>(object.cast(), |h, d| {
        h.cleanup(d);
        Ok(())
    });
}

/// `EvtDestroyCallback` of a device made by `create_device::<H>`: drops its handler.
unsafe extern "C" fn destroy<H: DeviceHandler>(object: WDFOBJECT) {
    let slot = slot_of(object);
    if slot.is_null() {
        return;
    }
    // SAFETY: the slot is a valid `HandlerSlot`; the destroy callback runs once, last.
    let handler = unsafe { &(*slot).handler }.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !handler.is_null() {
        // SAFETY: the pointer came from `Box::into_raw` in `install` and is freed only here.
        drop(unsafe { Box::from_raw(handler.cast::<H>()) });
    }
}

/// A device created by [`create_device`] whose handler is not installed yet.
#[derive(Debug)]
#[must_use = "install the handler, or the device's callbacks do nothing"]
pub struct PendingDevice<H> {
    device: Device,
    handler: PhantomData<fn(H)>,
}

impl<H: DeviceHandler> PendingDevice<H> {
    /// The created device (parent for the handler's modules and objects).
    #[must_use]
    pub const fn device(&self) -> Device {
        self.device
    }

    /// Installs the device's state; from now on its callbacks reach `handler`, which is
    /// dropped when the device is destroyed.
    pub fn install(self, handler: H) -> Result<Device, NtStatus> {
        let slot = slot_of(self.device.handle().cast());
        if slot.is_null() {
            return Err(NtStatus::INTERNAL_ERROR);
        }
        let boxed = Box::into_raw(Box::new(handler));
        // SAFETY: the context is the device's zeroed (null) aligned `HandlerSlot`; `self` is
        // consumed, so this is the only install for the device.
        unsafe { &(*slot).handler }.store(boxed.cast(), Ordering::Release);
        Ok(self.device)
    }
}

/// Registers `H`'s `PnP`/power callbacks on `init` and creates the device (`WdfDeviceCreate`)
/// with a context for `H`, a cleanup callback and a destroy callback. Configure the rest of
/// `init` (I/O type, ...) first. Call from `EvtDriverDeviceAdd`.
pub fn create_device<H: DeviceHandler>(mut init: DeviceInit) -> Result<PendingDevice<H>, NtStatus> {
    init.set_pnp_power_callbacks(&PnpPowerCallbacks {
        prepare_hardware: Some(prepare_hardware::<H>),
        release_hardware: Some(release_hardware::<H>),
        d0_entry: Some(d0_entry::<H>),
        d0_exit: Some(d0_exit::<H>),
        query_remove: Some(query_remove::<H>),
        surprise_removal: Some(surprise_removal::<H>),
    });
    let mut attributes = ObjectAttributes::from_raw(WDF_OBJECT_ATTRIBUTES {
        Size: size_of::<WDF_OBJECT_ATTRIBUTES>() as u32,
        EvtCleanupCallback: Some(cleanup::<H>),
        EvtDestroyCallback: Some(destroy::<H>),
        ExecutionLevel: _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent,
        SynchronizationScope: _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
        ContextTypeInfo: &raw const DEVICE_HANDLER_CONTEXT.0,
        ..WDF_OBJECT_ATTRIBUTES::default()
    });
    let device = init.create(Some(&mut attributes))?;
    Ok(PendingDevice {
        device,
        handler: PhantomData,
    })
}
