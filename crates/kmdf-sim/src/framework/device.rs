//! `WDFDRIVER` and `WDFDEVICE`: driver creation, device initialization and creation, device
//! interfaces and symbolic links, and the PnP/power callbacks the simulated `PnP` manager drives.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::io::{self, DeviceNode, Irp, lock};
use super::object::{self, Attributes, Object, Payload};
use super::table::Entry;
use super::verifier::{self, rules};
use super::{iotarget, irql, queue, wdf_entry};
use crate::constants::{
    STATUS_INFO_LENGTH_MISMATCH, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
};
use crate::types::{
    _WDF_DEVICE_IO_TYPE, GUID, NTSTATUS, PCUNICODE_STRING, PDEVICE_OBJECT, PDRIVER_OBJECT,
    PFN_WDF_DRIVER_DEVICE_ADD, PFN_WDF_DRIVER_UNLOAD, PWDF_DRIVER_CONFIG, PWDF_DRIVER_GLOBALS,
    PWDF_OBJECT_ATTRIBUTES, PWDF_PNPPOWER_EVENT_CALLBACKS, PWDFDEVICE_INIT, PWSTR,
    WDF_DEVICE_IO_TYPE, WDF_DRIVER_CONFIG, WDF_PNPPOWER_EVENT_CALLBACKS, WDFDEVICE, WDFDRIVER,
    WDFIOTARGET, WDFQUEUE,
};
use crate::types::{
    _WDF_DRIVER_INIT_FLAGS::{WdfDriverInitNoDispatchOverride, WdfDriverInitNonPnpDriver},
    BOOLEAN, PIRP, PWDF_DRIVER_VERSION_AVAILABLE_PARAMS, ULONG,
    WDF_DRIVER_VERSION_AVAILABLE_PARAMS,
};

/// KMDF type name of driver objects.
pub(crate) const DRIVER_KIND: &str = "WDFDRIVER";
/// KMDF type name of device objects.
pub(crate) const KIND: &str = "WDFDEVICE";

/// A driver object.
pub(crate) struct Driver {
    /// The WDM driver object's address.
    pub(crate) wdm: usize,
    /// The registry path `DriverEntry` received, copied with a terminating NUL as
    /// `FxDriver::Initialize` does (empty when `WdfDriverCreate` got none).
    registry_path: Box<[u16]>,
    pub(crate) device_add: PFN_WDF_DRIVER_DEVICE_ADD,
    pub(crate) unload: PFN_WDF_DRIVER_UNLOAD,
    /// False with `WdfDriverInitNoDispatchOverride`: the driver keeps its own dispatch table and
    /// unload routine, and KMDF's unload runs only when the driver asks for it.
    pub(crate) owns_dispatch: bool,
}

impl Payload for Driver {
    fn driver_may_delete(&self) -> Result<(), &'static str> {
        Err("the driver object is deleted by the framework at unload")
    }
}

/// What `WDFDEVICE_INIT` collects before `WdfDeviceCreate`.
pub(crate) struct DeviceInit {
    pub(crate) driver: usize,
    pnp: WDF_PNPPOWER_EVENT_CALLBACKS,
    io_type: WDF_DEVICE_IO_TYPE,
    /// The device created from it (0 until then).
    pub(crate) device: usize,
}

impl DeviceInit {
    /// A fresh init for `driver`.
    pub(crate) fn new(driver: usize) -> Box<Self> {
        Box::new(Self {
            driver,
            pnp: WDF_PNPPOWER_EVENT_CALLBACKS::default(),
            io_type: _WDF_DEVICE_IO_TYPE::WdfDeviceIoBuffered,
            device: 0,
        })
    }
}

/// Mutable device state.
pub(crate) struct DeviceState {
    pub(crate) local_target: usize,
    pub(crate) interfaces: Vec<String>,
    pub(crate) links: Vec<String>,
}

/// A device object.
pub(crate) struct Device {
    pub(crate) driver: usize,
    pub(crate) pnp: WDF_PNPPOWER_EVENT_CALLBACKS,
    /// Recorded only: buffered and direct I/O behave alike in the simulation.
    #[allow(
        dead_code,
        reason = "recorded for inspection; no behaviour depends on it"
    )]
    pub(crate) io_type: WDF_DEVICE_IO_TYPE,
    pub(crate) state: Mutex<DeviceState>,
    pub(crate) queues: queue::DeviceQueues,
}

impl Payload for Device {
    fn driver_may_delete(&self) -> Result<(), &'static str> {
        Err("a PnP device is deleted by the framework when it is removed")
    }
}

static NEXT_INSTANCE: AtomicUsize = AtomicUsize::new(1);

/// The device node packets reach through a device's names.
struct DeviceNodeOf {
    device: usize,
}

impl DeviceNode for DeviceNodeOf {
    fn dispatch(&self, irp: Arc<Irp>) {
        queue::dispatch(self.device, &irp);
    }

    fn file_closed(&self, file: u64) {
        queue::cancel_file(self.device, file);
    }
}

/// Finds a device.
pub(crate) fn find(device: WDFDEVICE, api: &str) -> Option<Arc<Object>> {
    object::lookup_payload::<Device>(object::handle_of(device), KIND, api)
}

/// The device payload of a found object.
pub(crate) fn device_of(object: &Object) -> &Device {
    object.payload::<Device>().expect("looked up as a device")
}

/// Withdraws a device's names and interfaces (at removal).
pub(crate) fn withdraw_names(device: &Device) {
    let (interfaces, links) = {
        let mut state = lock(&device.state);
        (
            core::mem::take(&mut state.interfaces),
            core::mem::take(&mut state.links),
        )
    };
    for name in &interfaces {
        io::interface_set_state(name, false);
    }
    for name in interfaces.iter().chain(links.iter()) {
        if let Some(link) = io::find(name) {
            link.remove_complete();
        }
        io::unpublish(name);
    }
}

/// Enables a started device's interfaces.
pub(crate) fn enable_interfaces(device: &Device) {
    let interfaces = lock(&device.state).interfaces.clone();
    for name in interfaces {
        io::interface_set_state(&name, true);
    }
}

/// The names (interfaces and links) of a device.
pub(crate) fn names(device: &Device) -> Vec<String> {
    let state = lock(&device.state);
    state
        .interfaces
        .iter()
        .chain(state.links.iter())
        .cloned()
        .collect()
}

fn unicode(text: PCUNICODE_STRING) -> Option<String> {
    if text.is_null() {
        return None;
    }
    // SAFETY: non-null, a valid UNICODE_STRING by the API contract.
    let text = unsafe { text.read() };
    if text.Buffer.is_null() {
        return None;
    }
    // SAFETY: the buffer holds `Length` bytes.
    let units = unsafe { core::slice::from_raw_parts(text.Buffer, usize::from(text.Length) / 2) };
    Some(String::from_utf16_lossy(units))
}

/// The UTF-16 units of a counted string, as they are (empty for none).
fn units(text: PCUNICODE_STRING) -> Vec<u16> {
    if text.is_null() {
        return Vec::new();
    }
    // SAFETY: non-null, a valid UNICODE_STRING by the API contract.
    let text = unsafe { text.read() };
    if text.Buffer.is_null() {
        return Vec::new();
    }
    // SAFETY: the buffer holds `Length` bytes.
    unsafe { core::slice::from_raw_parts(text.Buffer, usize::from(text.Length) / 2) }.to_vec()
}

unsafe extern "C" fn wdf_driver_create(
    _globals: PWDF_DRIVER_GLOBALS,
    driver_object: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    config: PWDF_DRIVER_CONFIG,
    driver: *mut WDFDRIVER,
) -> NTSTATUS {
    const API: &str = "WdfDriverCreate";
    if !irql::require_passive(API) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    if config.is_null() || driver_object.is_null() {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "null DriverObject or DriverConfig".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: non-null, a valid WDF_DRIVER_CONFIG by the API contract.
    let config: WDF_DRIVER_CONFIG = unsafe { config.read() };
    if config.Size as usize != size_of::<WDF_DRIVER_CONFIG>() {
        verifier::report(
            rules::BAD_STRUCTURE_SIZE,
            API,
            format!("WDF_DRIVER_CONFIG.Size is {}", config.Size),
        );
        return STATUS_INFO_LENGTH_MISMATCH;
    }
    let attributes = match Attributes::read(attributes, API) {
        Ok(attributes) => attributes,
        Err(status) => return status,
    };
    let mut path = units(registry_path);
    path.push(0);
    // `FxDriver::Initialize`: the callbacks are kept only when KMDF owns the dispatch table.
    let owns_dispatch =
        config.DriverInitFlags & WdfDriverInitNoDispatchOverride.cast_unsigned() == 0;
    let payload = Driver {
        wdm: driver_object as usize,
        registry_path: path.into_boxed_slice(),
        device_add: config.EvtDriverDeviceAdd.filter(|_| owns_dispatch),
        unload: config.EvtDriverUnload.filter(|_| owns_dispatch),
        owns_dispatch,
    };
    match object::create(DRIVER_KIND, &attributes, 0, Box::new(payload)) {
        Ok(handle) => {
            if object::default_parent() == 0 {
                object::set_default_parent(handle);
            }
            object::enter_driver(handle);
            crate::sim::pnp::driver_created(driver_object as usize, handle);
            if owns_dispatch {
                // SAFETY: `driver_object` is the live DRIVER_OBJECT DriverEntry received.
                unsafe { take_over_driver_object(driver_object, &config) };
            }
            if !driver.is_null() {
                // SAFETY: a non-null out pointer is writable by the API contract.
                unsafe { driver.write(object::handle_ptr(handle)) };
            }
            STATUS_SUCCESS
        }
        Err(status) => status,
    }
}

/// What `FxDriver::Initialize` does to the WDM driver object when KMDF owns its dispatch table:
/// every `MajorFunction` entry and `DriverExtension->AddDevice` become the framework's, and
/// `DriverUnload` becomes the framework's unload routine (which calls `EvtDriverUnload`), for a
/// non-`PnP` driver only if it has an `EvtDriverUnload`. A `DriverUnload` the driver stored before
/// `WdfDriverCreate` is overwritten and never called.
///
/// # Safety
/// `driver_object` points at a live, writable `DRIVER_OBJECT`.
unsafe fn take_over_driver_object(driver_object: PDRIVER_OBJECT, config: &WDF_DRIVER_CONFIG) {
    // SAFETY: live and writable by the caller's contract; no other reference to it is in use.
    let wdm = unsafe { &mut *driver_object };
    let non_pnp = config.DriverInitFlags & WdfDriverInitNonPnpDriver.cast_unsigned() != 0;
    if !wdm.DriverExtension.is_null() {
        // SAFETY: a non-null DriverExtension of a live driver object is valid and writable.
        unsafe {
            (*wdm.DriverExtension).AddDevice = if non_pnp {
                None
            } else {
                Some(framework_add_device)
            };
        }
    }
    wdm.DriverUnload = if non_pnp && config.EvtDriverUnload.is_none() {
        None
    } else {
        Some(crate::sim::pnp::framework_unload)
    };
    wdm.MajorFunction = [Some(framework_dispatch); 28];
}

/// KMDF's `AddDevice` routine as the driver object shows it. The simulated `PnP` manager adds
/// devices through the `WDFDRIVER` directly; a driver calling this itself is reported.
unsafe extern "C" fn framework_add_device(
    _driver_object: PDRIVER_OBJECT,
    _physical_device_object: PDEVICE_OBJECT,
) -> NTSTATUS {
    super::driver_heap::framework_code(|| {
        verifier::report(
            rules::INVALID_ARGUMENT,
            "AddDevice",
            "only the PnP manager calls a driver's AddDevice routine".to_string(),
        );
    });
    STATUS_INVALID_DEVICE_REQUEST
}

/// KMDF's IRP dispatch routine as the driver object shows it. The simulated I/O manager
/// delivers I/O to devices itself; a driver calling this is reported.
unsafe extern "C" fn framework_dispatch(_device: PDEVICE_OBJECT, _irp: PIRP) -> NTSTATUS {
    super::driver_heap::framework_code(|| {
        verifier::report(
            rules::INVALID_ARGUMENT,
            "IRP_MJ dispatch",
            "only the I/O manager calls a driver's dispatch routines".to_string(),
        );
    });
    STATUS_INVALID_DEVICE_REQUEST
}

/// `WdfVerifierDbgBreakPoint`: KMDF breaks into an attached kernel debugger when the verifier
/// asks it to; the simulation has no debugger, so it notes the break point in the debug output
/// and returns.
unsafe extern "C" fn wdf_verifier_dbg_break_point(_globals: PWDF_DRIVER_GLOBALS) {
    super::debug_output::emit("WdfVerifierDbgBreakPoint: break point (no debugger attached)\n");
}

/// `WdfDriverIsVersionAvailable`: whether the framework is at least the version asked for. The
/// simulation is KMDF 1.33.
unsafe extern "C" fn wdf_driver_is_version_available(
    _globals: PWDF_DRIVER_GLOBALS,
    driver: WDFDRIVER,
    params: PWDF_DRIVER_VERSION_AVAILABLE_PARAMS,
) -> BOOLEAN {
    const API: &str = "WdfDriverIsVersionAvailable";
    if !irql::require_passive(API)
        || object::lookup_payload::<Driver>(object::handle_of(driver), DRIVER_KIND, API).is_none()
    {
        return 0;
    }
    if params.is_null() {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "null VersionAvailableParams".to_string(),
        );
        return 0;
    }
    // SAFETY: non-null, a valid WDF_DRIVER_VERSION_AVAILABLE_PARAMS by the API contract.
    let params: WDF_DRIVER_VERSION_AVAILABLE_PARAMS = unsafe { params.read() };
    if params.Size as usize != size_of::<WDF_DRIVER_VERSION_AVAILABLE_PARAMS>() {
        verifier::report(
            rules::BAD_STRUCTURE_SIZE,
            API,
            format!(
                "WDF_DRIVER_VERSION_AVAILABLE_PARAMS.Size is {}",
                params.Size
            ),
        );
        return 0;
    }
    BOOLEAN::from((params.MajorVersion, params.MinorVersion) <= (1, 33))
}

/// The registry path `DriverEntry` received (`WdfDriverGetRegistryPath`: `PASSIVE_LEVEL` only,
/// returns the buffer of the copy `FxDriver` keeps). It lives as long as the driver object.
unsafe extern "C" fn wdf_driver_get_registry_path(
    _globals: PWDF_DRIVER_GLOBALS,
    driver: WDFDRIVER,
) -> PWSTR {
    const API: &str = "WdfDriverGetRegistryPath";
    if !irql::require_passive(API) {
        return core::ptr::null_mut();
    }
    object::lookup_payload::<Driver>(object::handle_of(driver), DRIVER_KIND, API)
        .and_then(|o| {
            o.payload::<Driver>()
                .map(|d| d.registry_path.as_ptr().cast_mut())
        })
        .unwrap_or(core::ptr::null_mut())
}

unsafe extern "C" fn wdf_driver_wdm_get_driver_object(
    _globals: PWDF_DRIVER_GLOBALS,
    driver: WDFDRIVER,
) -> PDRIVER_OBJECT {
    object::lookup_payload::<Driver>(
        object::handle_of(driver),
        DRIVER_KIND,
        "WdfDriverWdmGetDriverObject",
    )
    .and_then(|o| o.payload::<Driver>().map(|d| d.wdm as PDRIVER_OBJECT))
    .unwrap_or(core::ptr::null_mut())
}

fn init_of<'a>(init: PWDFDEVICE_INIT, api: &str) -> Option<&'a mut DeviceInit> {
    if init.is_null() {
        verifier::report(rules::INVALID_ARGUMENT, api, "null DeviceInit".to_string());
        return None;
    }
    // SAFETY: the simulation hands out PWDFDEVICE_INIT values that point at a live DeviceInit
    // for the duration of EvtDriverDeviceAdd.
    Some(unsafe { &mut *init.cast::<DeviceInit>() })
}

unsafe extern "C" fn wdf_device_init_set_pnp_power_event_callbacks(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    callbacks: PWDF_PNPPOWER_EVENT_CALLBACKS,
) {
    const API: &str = "WdfDeviceInitSetPnpPowerEventCallbacks";
    let Some(init) = init_of(init, API) else {
        return;
    };
    if callbacks.is_null() {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "null PnpPowerEventCallbacks".to_string(),
        );
        return;
    }
    // SAFETY: non-null, valid by the API contract.
    let callbacks: WDF_PNPPOWER_EVENT_CALLBACKS = unsafe { callbacks.read() };
    if callbacks.Size as usize != size_of::<WDF_PNPPOWER_EVENT_CALLBACKS>() {
        verifier::report(
            rules::BAD_STRUCTURE_SIZE,
            API,
            format!("WDF_PNPPOWER_EVENT_CALLBACKS.Size is {}", callbacks.Size),
        );
        return;
    }
    init.pnp = callbacks;
}

unsafe extern "C" fn wdf_device_init_set_io_type(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    io_type: WDF_DEVICE_IO_TYPE,
) {
    if let Some(init) = init_of(init, "WdfDeviceInitSetIoType") {
        init.io_type = io_type;
    }
}

/// `WdfDeviceInitSetExclusive`: accepted and not recorded (the simulation opens devices by
/// interface or link name without share checks).
unsafe extern "C" fn wdf_device_init_set_exclusive(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    _is_exclusive: BOOLEAN,
) {
    let _ = init_of(init, "WdfDeviceInitSetExclusive");
}

/// `WdfDeviceInitSetDeviceType`: accepted and not recorded (there is no WDM device object whose
/// type would matter).
unsafe extern "C" fn wdf_device_init_set_device_type(
    _globals: PWDF_DRIVER_GLOBALS,
    init: PWDFDEVICE_INIT,
    _device_type: ULONG,
) {
    let _ = init_of(init, "WdfDeviceInitSetDeviceType");
}

unsafe extern "C" fn wdf_device_create(
    _globals: PWDF_DRIVER_GLOBALS,
    init: *mut PWDFDEVICE_INIT,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    device: *mut WDFDEVICE,
) -> NTSTATUS {
    const API: &str = "WdfDeviceCreate";
    if !irql::require_passive(API) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    if init.is_null() || device.is_null() {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "null DeviceInit or Device pointer".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: non-null by the check above; readable by the API contract.
    let Some(device_init) = init_of(unsafe { init.read() }, API) else {
        return STATUS_INVALID_PARAMETER;
    };
    if device_init.device != 0 {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "DeviceInit was already used".to_string(),
        );
        return STATUS_INVALID_DEVICE_STATE;
    }
    let attributes = match Attributes::read(attributes, API) {
        Ok(attributes) => attributes,
        Err(status) => return status,
    };
    if attributes.parent().is_some() {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "a device has no parent object".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    let payload = Device {
        driver: device_init.driver,
        pnp: device_init.pnp,
        io_type: device_init.io_type,
        state: Mutex::new(DeviceState {
            local_target: 0,
            interfaces: Vec::new(),
            links: Vec::new(),
        }),
        queues: queue::DeviceQueues::default(),
    };
    let handle = match object::create(KIND, &attributes, device_init.driver, Box::new(payload)) {
        Ok(handle) => handle,
        Err(status) => return status,
    };
    match iotarget::create_local(handle) {
        Ok(target) => {
            if let Some(object) = object::live_object(handle) {
                lock(&device_of(&object).state).local_target = target;
            }
        }
        Err(status) => {
            if let Some(object) = object::live_object(handle) {
                object::delete(&object);
            }
            return status;
        }
    }
    device_init.device = handle;
    // SAFETY: both pointers are valid (checked above); KMDF clears the caller's init pointer.
    unsafe { init.write(core::ptr::null_mut()) };
    // SAFETY: as above.
    unsafe { device.write(object::handle_ptr(handle)) };
    STATUS_SUCCESS
}

unsafe extern "C" fn wdf_device_get_io_target(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
) -> WDFIOTARGET {
    find(device, "WdfDeviceGetIoTarget").map_or(core::ptr::null_mut(), |o| {
        object::handle_ptr(lock(&device_of(&o).state).local_target)
    })
}

unsafe extern "C" fn wdf_device_get_driver(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
) -> WDFDRIVER {
    find(device, "WdfDeviceGetDriver").map_or(core::ptr::null_mut(), |o| {
        object::handle_ptr(device_of(&o).driver)
    })
}

unsafe extern "C" fn wdf_device_wdm_get_device_object(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
) -> PDEVICE_OBJECT {
    // The simulation has no WDM device objects; a stable fake pointer per device suffices.
    find(device, "WdfDeviceWdmGetDeviceObject").map_or(core::ptr::null_mut(), |o| {
        (o.handle | 0x8) as PDEVICE_OBJECT
    })
}

unsafe extern "C" fn wdf_device_create_device_interface(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    class: *const GUID,
    reference: PCUNICODE_STRING,
) -> NTSTATUS {
    const API: &str = "WdfDeviceCreateDeviceInterface";
    if !irql::require_passive(API) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let Some(object) = find(device, API) else {
        return STATUS_INVALID_PARAMETER;
    };
    if class.is_null() {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "null InterfaceClassGUID".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: non-null, valid by the API contract.
    let class: GUID = unsafe { class.read() };
    let instance = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
    let mut name = format!(
        "\\??\\ROOT#SIMDEVICE#{instance:04}#{}",
        io::guid_string(&class)
    );
    if let Some(reference) = unicode(reference) {
        name.push('\\');
        name.push_str(&reference);
    }
    if let Err(status) = io::publish(
        &name,
        Arc::new(DeviceNodeOf {
            device: object.handle,
        }),
    ) {
        return status;
    }
    io::interface_register(class, &name);
    lock(&device_of(&object).state)
        .interfaces
        .push(name.clone());
    if crate::sim::pnp::is_started(object.handle) {
        io::interface_set_state(&name, true);
    }
    STATUS_SUCCESS
}

unsafe extern "C" fn wdf_device_create_symbolic_link(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
    name: PCUNICODE_STRING,
) -> NTSTATUS {
    const API: &str = "WdfDeviceCreateSymbolicLink";
    if !irql::require_passive(API) {
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    let Some(object) = find(device, API) else {
        return STATUS_INVALID_PARAMETER;
    };
    let Some(name) = unicode(name) else {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "empty SymbolicLinkName".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    };
    if let Err(status) = io::publish(
        &name,
        Arc::new(DeviceNodeOf {
            device: object.handle,
        }),
    ) {
        return status;
    }
    lock(&device_of(&object).state).links.push(name);
    STATUS_SUCCESS
}

unsafe extern "C" fn wdf_device_get_default_queue(
    _globals: PWDF_DRIVER_GLOBALS,
    device: WDFDEVICE,
) -> WDFQUEUE {
    find(device, "WdfDeviceGetDefaultQueue").map_or(core::ptr::null_mut(), |o| {
        object::handle_ptr(device_of(&o).queues.default_queue())
    })
}

pub(crate) const ENTRIES: &[Entry] = &[
    wdf_entry!(
        WdfDriverIsVersionAvailableTableIndex,
        PFN_WDFDRIVERISVERSIONAVAILABLE,
        wdf_driver_is_version_available
    ),
    wdf_entry!(
        WdfDeviceInitSetExclusiveTableIndex,
        PFN_WDFDEVICEINITSETEXCLUSIVE,
        wdf_device_init_set_exclusive
    ),
    wdf_entry!(
        WdfDeviceInitSetDeviceTypeTableIndex,
        PFN_WDFDEVICEINITSETDEVICETYPE,
        wdf_device_init_set_device_type
    ),
    wdf_entry!(
        WdfVerifierDbgBreakPointTableIndex,
        PFN_WDFVERIFIERDBGBREAKPOINT,
        wdf_verifier_dbg_break_point
    ),
    wdf_entry!(
        WdfDriverCreateTableIndex,
        PFN_WDFDRIVERCREATE,
        wdf_driver_create
    ),
    wdf_entry!(
        WdfDriverGetRegistryPathTableIndex,
        PFN_WDFDRIVERGETREGISTRYPATH,
        wdf_driver_get_registry_path
    ),
    wdf_entry!(
        WdfDriverWdmGetDriverObjectTableIndex,
        PFN_WDFDRIVERWDMGETDRIVEROBJECT,
        wdf_driver_wdm_get_driver_object
    ),
    wdf_entry!(
        WdfDeviceInitSetPnpPowerEventCallbacksTableIndex,
        PFN_WDFDEVICEINITSETPNPPOWEREVENTCALLBACKS,
        wdf_device_init_set_pnp_power_event_callbacks
    ),
    wdf_entry!(
        WdfDeviceInitSetIoTypeTableIndex,
        PFN_WDFDEVICEINITSETIOTYPE,
        wdf_device_init_set_io_type
    ),
    wdf_entry!(
        WdfDeviceCreateTableIndex,
        PFN_WDFDEVICECREATE,
        wdf_device_create
    ),
    wdf_entry!(
        WdfDeviceGetIoTargetTableIndex,
        PFN_WDFDEVICEGETIOTARGET,
        wdf_device_get_io_target
    ),
    wdf_entry!(
        WdfDeviceGetDriverTableIndex,
        PFN_WDFDEVICEGETDRIVER,
        wdf_device_get_driver
    ),
    wdf_entry!(
        WdfDeviceWdmGetDeviceObjectTableIndex,
        PFN_WDFDEVICEWDMGETDEVICEOBJECT,
        wdf_device_wdm_get_device_object
    ),
    wdf_entry!(
        WdfDeviceCreateDeviceInterfaceTableIndex,
        PFN_WDFDEVICECREATEDEVICEINTERFACE,
        wdf_device_create_device_interface
    ),
    wdf_entry!(
        WdfDeviceCreateSymbolicLinkTableIndex,
        PFN_WDFDEVICECREATESYMBOLICLINK,
        wdf_device_create_symbolic_link
    ),
    wdf_entry!(
        WdfDeviceGetDefaultQueueTableIndex,
        PFN_WDFDEVICEGETDEFAULTQUEUE,
        wdf_device_get_default_queue
    ),
];

/// Kernel functions of this area, re-exported from `ntddk`.
#[allow(non_snake_case)]
pub mod kernel {}
