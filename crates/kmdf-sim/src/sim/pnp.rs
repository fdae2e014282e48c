//! The simulated `PnP` manager: loads a driver (`DriverEntry`), adds devices (`EvtDriverDeviceAdd`),
//! starts them (`EvtDevicePrepareHardware`, `EvtDeviceD0Entry`, interfaces enabled), powers them
//! down and up, query-removes (and cancels), surprise-removes and removes them, and unloads the
//! driver, calling the driver's callbacks in KMDF's order at `PASSIVE_LEVEL`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use crate::framework::device::{self, DeviceInit};
use crate::framework::io::lock;
use crate::framework::verifier::{self, rules};
use crate::framework::{iotarget, irql, object, request};
use crate::types::{
    _WDF_POWER_DEVICE_STATE as POWER, CSHORT, DRIVER_EXTENSION, DRIVER_OBJECT, NTSTATUS,
    PCUNICODE_STRING, PDRIVER_OBJECT, PWDFDEVICE_INIT, UNICODE_STRING, WDFDEVICE, WDFDRIVER,
};

pub use crate::framework::io::{GUID_DEVICE_INTERFACE_ARRIVAL, GUID_DEVICE_INTERFACE_REMOVAL};

/// A driver's `DriverEntry`.
pub type DriverEntry = unsafe extern "C" fn(PDRIVER_OBJECT, PCUNICODE_STRING) -> NTSTATUS;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DevicePnpState {
    Added,
    Started,
    LowPower,
    SurpriseRemoved,
}

struct Registry {
    /// `DRIVER_OBJECT` address -> WDFDRIVER.
    drivers: HashMap<usize, usize>,
    devices: HashMap<usize, DevicePnpState>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| {
    Mutex::new(Registry {
        drivers: HashMap::new(),
        devices: HashMap::new(),
    })
});

pub(crate) fn driver_created(driver_object: usize, driver: usize) {
    lock(&REGISTRY).drivers.insert(driver_object, driver);
}

pub(crate) fn is_started(device: usize) -> bool {
    lock(&REGISTRY)
        .devices
        .get(&device)
        .is_some_and(|s| *s == DevicePnpState::Started || *s == DevicePnpState::LowPower)
}

pub(crate) fn reset() {
    let mut registry = lock(&REGISTRY);
    registry.drivers.clear();
    registry.devices.clear();
}

fn set_state(device: usize, state: DevicePnpState) {
    lock(&REGISTRY).devices.insert(device, state);
}

fn state_of(device: usize) -> Option<DevicePnpState> {
    lock(&REGISTRY).devices.get(&device).copied()
}

/// The WDM driver object the I/O manager builds for a driver, with the strings it points at.
struct WdmDriver {
    object: DRIVER_OBJECT,
    extension: DRIVER_EXTENSION,
    hardware_database: UNICODE_STRING,
    /// The buffers the counted strings above point at.
    names: [Vec<u16>; 3],
}

/// The simulated driver's service name (the last element of its registry path).
const SERVICE_NAME: &str = "SimDriver";

fn counted(text: &[u16]) -> UNICODE_STRING {
    UNICODE_STRING {
        Length: (text.len() * 2) as u16,
        MaximumLength: (text.len() * 2) as u16,
        Buffer: text.as_ptr().cast_mut(),
    }
}

impl WdmDriver {
    /// A zeroed `DRIVER_OBJECT` with what the I/O manager fills in before `DriverEntry`: its type
    /// and size, its extension (back pointer, service key name), its name and the hardware
    /// database path. Everything else (dispatch table, unload routine, flags) is zero.
    fn new() -> Box<Self> {
        let names = [
            format!("\\Driver\\{SERVICE_NAME}")
                .encode_utf16()
                .collect::<Vec<u16>>(),
            SERVICE_NAME.encode_utf16().collect(),
            "\\REGISTRY\\MACHINE\\HARDWARE\\DESCRIPTION\\SYSTEM"
                .encode_utf16()
                .collect(),
        ];
        let mut wdm = Box::new(Self {
            object: DRIVER_OBJECT::default(),
            extension: DRIVER_EXTENSION::default(),
            hardware_database: counted(&names[2]),
            names: [Vec::new(), Vec::new(), Vec::new()],
        });
        wdm.object.Type = IO_TYPE_DRIVER;
        wdm.object.Size = CSHORT::try_from(size_of::<DRIVER_OBJECT>()).unwrap_or(CSHORT::MAX);
        wdm.object.DriverName = counted(&names[0]);
        wdm.extension.ServiceKeyName = counted(&names[1]);
        wdm.extension.DriverObject = &raw mut wdm.object;
        wdm.object.DriverExtension = &raw mut wdm.extension;
        wdm.object.HardwareDatabase = &raw mut wdm.hardware_database;
        // The vectors' heap buffers do not move with them.
        wdm.names = names;
        wdm
    }
}

/// `IO_TYPE_DRIVER`, the object type the I/O manager stamps on driver objects.
const IO_TYPE_DRIVER: CSHORT = 4;

/// A loaded driver.
pub struct Driver {
    driver_object: Box<WdmDriver>,
    handle: usize,
}

impl core::fmt::Debug for Driver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Driver")
            .field("driver_object", &(&raw const self.driver_object.object))
            .field("handle", &self.handle)
            .finish()
    }
}

impl Driver {
    /// Calls `DriverEntry` (which calls `WdfDriverCreate`). Fails with its status.
    pub fn load(entry: DriverEntry) -> Result<Self, NTSTATUS> {
        Self::load_with(|driver_object, registry_path| {
            // SAFETY: the driver's entry point, called as the I/O manager does.
            unsafe { entry(driver_object, registry_path) }
        })
    }

    /// Like [`Driver::load`] for an entry point of another shape: `entry` receives the driver
    /// object as windows-drivers-rs samples declare it (`&mut DRIVER_OBJECT`, which is a
    /// `PDRIVER_OBJECT` in the ABI) and the registry path, and calls the driver's `DriverEntry`.
    pub fn load_with(
        entry: impl FnOnce(&mut DRIVER_OBJECT, PCUNICODE_STRING) -> NTSTATUS,
    ) -> Result<Self, NTSTATUS> {
        let mut driver_object = WdmDriver::new();
        let object: *mut DRIVER_OBJECT = &raw mut driver_object.object;
        let address = object as usize;
        let path: Vec<u16> =
            format!("\\Registry\\Machine\\System\\CurrentControlSet\\Services\\{SERVICE_NAME}")
                .encode_utf16()
                .collect();
        let registry_path = counted(&path);
        let caller = object::current_driver();
        let status = irql::run_callback(irql::PASSIVE, "DriverEntry", || {
            // SAFETY: `object` points into the boxed driver object, which nothing else borrows
            // while DriverEntry runs.
            entry(unsafe { &mut *object }, &raw const registry_path)
        });
        // WdfDriverCreate made the new driver this thread's driver for the rest of DriverEntry.
        object::enter_driver(caller);
        let handle = lock(&REGISTRY).drivers.get(&address).copied();
        match handle {
            Some(handle) if status >= 0 => Ok(Self {
                driver_object,
                handle,
            }),
            Some(handle) => {
                if let Some(object) = object::live_object(handle) {
                    object::delete(&object);
                }
                lock(&REGISTRY).drivers.remove(&address);
                Err(status)
            }
            None if status < 0 => Err(status),
            None => Err(crate::constants::STATUS_UNSUCCESSFUL),
        }
    }

    /// The `WDFDRIVER`.
    #[must_use]
    pub fn handle(&self) -> WDFDRIVER {
        object::handle_ptr(self.handle)
    }

    /// Adds a device: calls `EvtDriverDeviceAdd` with a fresh `WDFDEVICE_INIT`.
    pub fn add_device(&self) -> Result<Device, NTSTATUS> {
        let device_add = object::live_object(self.handle)
            .and_then(|o| o.payload::<device::Driver>().and_then(|d| d.device_add))
            .ok_or(crate::constants::STATUS_INVALID_DEVICE_REQUEST)?;
        let mut init = DeviceInit::new(self.handle);
        let init_ptr: PWDFDEVICE_INIT = (&raw mut *init).cast();
        let status = object::with_driver(self.handle, || {
            irql::run_callback(irql::PASSIVE, "EvtDriverDeviceAdd", || {
                // SAFETY: the driver's callback, with its driver handle and a live init.
                unsafe { device_add(object::handle_ptr(self.handle), init_ptr) }
            })
        });
        let created = init.device;
        if status < 0 {
            if created != 0
                && let Some(object) = object::live_object(created)
            {
                object::delete(&object);
            }
            return Err(status);
        }
        if created == 0 {
            verifier::report(
                rules::INVALID_ARGUMENT,
                "EvtDriverDeviceAdd",
                "returned success without creating a device".to_string(),
            );
            return Err(crate::constants::STATUS_UNSUCCESSFUL);
        }
        set_state(created, DevicePnpState::Added);
        Ok(Device { handle: created })
    }

    /// Unloads the driver as the I/O manager does: calls the driver object's `DriverUnload`, which
    /// after `WdfDriverCreate` is KMDF's unload routine (`EvtDriverUnload`, then the `WDFDRIVER`
    /// and its children are deleted). A driver whose `DriverUnload` is NULL cannot be unloaded,
    /// and one that replaced KMDF's routine leaves the framework's driver object behind; both
    /// are reported, and the `WDFDRIVER` is deleted anyway (without `EvtDriverUnload`, which
    /// KMDF would not have called either) so that the session can end.
    pub fn unload(mut self) {
        let object: *mut DRIVER_OBJECT = &raw mut self.driver_object.object;
        // SAFETY: the boxed driver object is live; the read does not overlap a write.
        let routine = unsafe { (*object).DriverUnload };
        let framework: unsafe extern "C" fn(PDRIVER_OBJECT) = framework_unload;
        if let Some(routine) = routine {
            let owns_dispatch = object::live_object(self.handle)
                .and_then(|o| o.payload::<device::Driver>().map(|d| d.owns_dispatch))
                .unwrap_or(true);
            let replaced = !core::ptr::fn_addr_eq(routine, framework);
            irql::run_callback(irql::PASSIVE, "DriverUnload", || {
                // SAFETY: the driver object's unload routine, called with that object.
                unsafe { routine(object) };
            });
            if replaced && !owns_dispatch {
                // WdfDriverMiniportUnload's work, which the simulation does not offer.
                delete_framework_driver(object, false);
            } else if replaced && object::live_object(self.handle).is_some() {
                verifier::report(
                    rules::INVALID_ARGUMENT,
                    "DriverUnload",
                    "the driver replaced KMDF's DriverUnload after WdfDriverCreate, so KMDF's \
                     unload (EvtDriverUnload, deleting the WDFDRIVER) never ran"
                        .to_string(),
                );
                delete_framework_driver(object, false);
            }
        } else {
            verifier::report(
                rules::INVALID_ARGUMENT,
                "DriverUnload",
                "the driver object has no unload routine, so the driver cannot be unloaded"
                    .to_string(),
            );
            delete_framework_driver(object, false);
        }
        lock(&REGISTRY).drivers.remove(&(object as usize));
    }
}

/// KMDF's unload routine (`FxDriver::Unload`), which `WdfDriverCreate` stores in the driver
/// object: calls `EvtDriverUnload`, then deletes the `WDFDRIVER` and its children.
pub(crate) unsafe extern "C" fn framework_unload(driver_object: PDRIVER_OBJECT) {
    crate::framework::driver_heap::framework_code(|| {
        delete_framework_driver(driver_object, true);
    });
}

/// Deletes the `WDFDRIVER` of `driver_object` and its children, calling `EvtDriverUnload` first
/// if `call_unload`.
fn delete_framework_driver(driver_object: PDRIVER_OBJECT, call_unload: bool) {
    let Some(handle) = lock(&REGISTRY)
        .drivers
        .get(&(driver_object as usize))
        .copied()
    else {
        return;
    };
    let Some(object) = object::live_object(handle) else {
        return;
    };
    let unload = object.payload::<device::Driver>().and_then(|d| d.unload);
    if let Some(unload) = unload.filter(|_| call_unload) {
        object::with_driver(handle, || {
            irql::run_callback(irql::PASSIVE, "EvtDriverUnload", || {
                // SAFETY: the driver's callback with its own handle.
                unsafe { unload(object::handle_ptr(handle)) }
            });
        });
    }
    for child in object::live_objects() {
        if child.kind == request::KIND && child.parent() == handle && !child.is_deleting() {
            verifier::report(
                rules::IO_ALIVE_AT_REMOVE,
                &*child,
                "a driver-created request was never deleted".to_string(),
            );
        }
    }
    object::delete(&object);
    if object::default_parent() == handle {
        object::set_default_parent(0);
    }
}

/// A device the `PnP` manager added.
#[derive(Debug)]
pub struct Device {
    handle: usize,
}

fn with_callbacks<R>(device: usize, f: impl FnOnce(&device::Device) -> R) -> Option<R> {
    object::live_object(device).and_then(|o| o.payload::<device::Device>().map(f))
}

/// Runs one of `device`'s `PnP`/power callbacks as code of the device's driver.
fn call(device: usize, name: &str, f: impl FnOnce() -> NTSTATUS) -> NTSTATUS {
    object::with_driver(object::driver_of(device), || {
        irql::run_callback(irql::PASSIVE, name, f)
    })
}

impl Device {
    /// The `WDFDEVICE`.
    #[must_use]
    pub fn handle(&self) -> WDFDEVICE {
        object::handle_ptr(self.handle)
    }

    /// Symbolic link names of the device's interfaces and links.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        with_callbacks(self.handle, device::names).unwrap_or_default()
    }

    /// Starts the device: `EvtDevicePrepareHardware`, `EvtDeviceD0Entry(D3Final)`, then its
    /// interfaces are enabled (arrival notifications). On a failure the device is not started.
    pub fn start(&self) -> Result<(), NTSTATUS> {
        let handle = self.handle;
        let pnp =
            with_callbacks(handle, |d| d.pnp).ok_or(crate::constants::STATUS_NO_SUCH_DEVICE)?;
        if let Some(prepare) = pnp.EvtDevicePrepareHardware {
            // SAFETY: the driver's callback for this device (no resources are simulated).
            let status = call(self.handle, "EvtDevicePrepareHardware", || unsafe {
                prepare(self.handle(), core::ptr::null_mut(), core::ptr::null_mut())
            });
            if status < 0 {
                return Err(status);
            }
        }
        self.d0_entry(POWER::WdfPowerDeviceD3Final)?;
        crate::framework::queue::device_powered(handle, true);
        set_state(handle, DevicePnpState::Started);
        with_callbacks(handle, device::enable_interfaces);
        Ok(())
    }

    fn d0_entry(&self, previous: crate::types::WDF_POWER_DEVICE_STATE) -> Result<(), NTSTATUS> {
        let pnp = with_callbacks(self.handle, |d| d.pnp)
            .ok_or(crate::constants::STATUS_NO_SUCH_DEVICE)?;
        if let Some(entry) = pnp.EvtDeviceD0Entry {
            // SAFETY: the driver's callback for this device.
            let status = call(self.handle, "EvtDeviceD0Entry", || unsafe {
                entry(self.handle(), previous)
            });
            if status < 0 {
                return Err(status);
            }
        }
        Ok(())
    }

    fn d0_exit(&self, target: crate::types::WDF_POWER_DEVICE_STATE) {
        crate::framework::queue::device_powered(self.handle, false);
        if let Some(exit) = with_callbacks(self.handle, |d| d.pnp.EvtDeviceD0Exit).flatten() {
            // SAFETY: the driver's callback for this device.
            call(self.handle, "EvtDeviceD0Exit", || unsafe {
                exit(self.handle(), target)
            });
        }
    }

    /// Powers the device down (`EvtDeviceD0Exit(D3)`).
    pub fn power_down(&self) {
        if state_of(self.handle) == Some(DevicePnpState::Started) {
            self.d0_exit(POWER::WdfPowerDeviceD3);
            set_state(self.handle, DevicePnpState::LowPower);
        }
    }

    /// Powers the device up (`EvtDeviceD0Entry(D3)`).
    pub fn power_up(&self) -> Result<(), NTSTATUS> {
        if state_of(self.handle) == Some(DevicePnpState::LowPower) {
            self.d0_entry(POWER::WdfPowerDeviceD3)?;
            crate::framework::queue::device_powered(self.handle, true);
            set_state(self.handle, DevicePnpState::Started);
        }
        Ok(())
    }

    /// Query-remove: the driver's `EvtDeviceQueryRemove`, then every I/O target that has the
    /// device open. True if nobody vetoed; on a veto, the removal is cancelled.
    #[must_use]
    pub fn query_remove(&self) -> bool {
        if let Some(query) = with_callbacks(self.handle, |d| d.pnp.EvtDeviceQueryRemove).flatten() {
            // SAFETY: the driver's callback for this device.
            if call(self.handle, "EvtDeviceQueryRemove", || unsafe {
                query(self.handle())
            }) < 0
            {
                return false;
            }
        }
        let names = self.names();
        for (index, name) in names.iter().enumerate() {
            let Some(link) = crate::framework::io::find(name) else {
                continue;
            };
            if !link.query_remove() {
                for earlier in &names[..index] {
                    if let Some(link) = crate::framework::io::find(earlier) {
                        link.remove_canceled();
                    }
                }
                return false;
            }
        }
        true
    }

    /// Cancels a removal that `query_remove` agreed to.
    pub fn cancel_remove(&self) {
        for name in self.names() {
            if let Some(link) = crate::framework::io::find(&name) {
                link.remove_canceled();
            }
        }
    }

    /// Surprise removal, in KMDF's order: `EvtDeviceSurpriseRemoval` first, then (if the
    /// device was working) `EvtDeviceD0Exit(D3Final)`, then `EvtDeviceReleaseHardware`;
    /// interfaces disappear and openers are told the device is gone. Call [`Device::remove`]
    /// afterwards, as the `PnP` manager does once handles are closed.
    pub fn surprise_remove(&self) {
        let state = state_of(self.handle);
        if let Some(surprise) =
            with_callbacks(self.handle, |d| d.pnp.EvtDeviceSurpriseRemoval).flatten()
        {
            call(self.handle, "EvtDeviceSurpriseRemoval", || {
                // SAFETY: the driver's callback for this device.
                unsafe { surprise(self.handle()) };
                0
            });
        }
        if state == Some(DevicePnpState::Started) {
            self.d0_exit(POWER::WdfPowerDeviceD3Final);
        }
        crate::framework::queue::purge_device(self.handle);
        if matches!(
            state,
            Some(DevicePnpState::Started | DevicePnpState::LowPower)
        ) {
            self.release_hardware();
        }
        with_callbacks(self.handle, device::withdraw_names);
        set_state(self.handle, DevicePnpState::SurpriseRemoved);
    }

    fn release_hardware(&self) {
        if let Some(release) =
            with_callbacks(self.handle, |d| d.pnp.EvtDeviceReleaseHardware).flatten()
        {
            // SAFETY: the driver's callback for this device.
            call(self.handle, "EvtDeviceReleaseHardware", || unsafe {
                release(self.handle(), core::ptr::null_mut())
            });
        }
    }

    /// Removes the device: `EvtDeviceD0Exit(D3Final)` and `EvtDeviceReleaseHardware` if it is
    /// started, interfaces disappear, then the device and its children are deleted. Requests or
    /// targets still in flight are reported.
    pub fn remove(self) {
        let state = state_of(self.handle);
        match state {
            Some(DevicePnpState::Started) => {
                self.d0_exit(POWER::WdfPowerDeviceD3Final);
                self.release_hardware();
            }
            Some(DevicePnpState::LowPower) => self.release_hardware(),
            _ => {}
        }
        if state != Some(DevicePnpState::SurpriseRemoved) {
            with_callbacks(self.handle, device::withdraw_names);
        }
        crate::framework::queue::purge_device(self.handle);
        self.report_io_alive();
        if let Some(object) = object::live_object(self.handle) {
            object::delete(&object);
        }
        lock(&REGISTRY).devices.remove(&self.handle);
    }

    /// Reports the I/O still alive on this device at removal: its I/O targets with requests in
    /// flight, and each request pending on one of those targets or presented by one of its
    /// queues and sent on. Requests pending on other devices' targets are theirs to report.
    fn report_io_alive(&self) {
        let live = object::live_objects();
        let mut packets = Vec::new();
        for object in &live {
            if object.kind == iotarget::KIND
                && let Some(target) = object.payload::<iotarget::Target>()
                && target.device == self.handle
            {
                packets.extend(target.pending_packets());
                let in_flight = target.in_flight();
                if in_flight > 0 {
                    verifier::report(
                        rules::IO_ALIVE_AT_REMOVE,
                        &**object,
                        format!("{in_flight} request(s) in flight when its device was removed"),
                    );
                }
            }
        }
        for object in &live {
            if object.kind != request::KIND {
                continue;
            }
            let Some(req) = object.payload::<request::Request>() else {
                continue;
            };
            let (sent, queue) = {
                let state = lock(&req.state);
                (state.owner == request::Owner::Target, state.queue)
            };
            if !sent {
                continue;
            }
            let on_my_target = req
                .sent_packet()
                .is_some_and(|sent| packets.iter().any(|irp| Arc::ptr_eq(irp, &sent)));
            let from_my_queue =
                queue != 0 && object::live_object(queue).is_some_and(|q| q.parent() == self.handle);
            if on_my_target || from_my_queue {
                verifier::report(
                    rules::IO_ALIVE_AT_REMOVE,
                    &**object,
                    "still pending at an I/O target when its device was removed".to_string(),
                );
            }
        }
    }
}
