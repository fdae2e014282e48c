//! A driver written with `dmf::wdf::{driver, device, queue}`: driver entry, device add with `PnP`
//! callbacks, a device interface, a default parallel queue and a manual queue, exercised from
//! the user-mode side.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dmf::wdf::NtStatus;
use dmf::wdf::device::{DeviceInit, IoType, PnpPowerCallbacks};
use dmf::wdf::driver::{Driver, DriverConfig};
use dmf::wdf::queue::{
    DispatchType, Queue, QueueConfig, QueueRequest, RequestParameters, RequestType,
};
use wdk_sys::sim::Session;
use wdk_sys::sim::pnp::Driver as SimDriver;
use wdk_sys::sim::user::File;
use wdk_sys::{
    GUID, NTSTATUS, PCUNICODE_STRING, PDRIVER_OBJECT, PWDFDEVICE_INIT, STATUS_SUCCESS,
    WDF_POWER_DEVICE_STATE, WDFDEVICE, WDFDRIVER, WDFQUEUE, WDFREQUEST,
};

const CLASS: GUID = GUID {
    Data1: 0xdead_beef,
    Data2: 1,
    Data3: 2,
    Data4: [3, 4, 5, 6, 7, 8, 9, 10],
};
const IOCTL_SUM: u32 = 0x10;
const IOCTL_PARK: u32 = 0x11;

static MANUAL: AtomicUsize = AtomicUsize::new(0);
static EVENTS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

unsafe extern "C" fn d0_entry(_device: WDFDEVICE, _previous: WDF_POWER_DEVICE_STATE) -> NTSTATUS {
    EVENTS.lock().unwrap().push("D0Entry");
    STATUS_SUCCESS
}

unsafe extern "C" fn d0_exit(_device: WDFDEVICE, _target: WDF_POWER_DEVICE_STATE) -> NTSTATUS {
    EVENTS.lock().unwrap().push("D0Exit");
    STATUS_SUCCESS
}

unsafe extern "C" fn io_device_control(
    _queue: WDFQUEUE,
    request: WDFREQUEST,
    _output: usize,
    _input: usize,
    code: u32,
) {
    // SAFETY: the framework presented this request to this callback.
    let mut request = unsafe { QueueRequest::from_raw(request) };
    let RequestParameters::DeviceControl {
        ioctl,
        input_length,
        ..
    } = request.parameters()
    else {
        request.complete(NtStatus::INVALID_DEVICE_REQUEST);
        return;
    };
    assert_eq!(ioctl, code);
    match code {
        IOCTL_SUM => {
            let sum = match request.input_buffer(1) {
                Ok(input) => input.iter().map(|&b| u32::from(b)).sum::<u32>(),
                Err(status) => return request.complete(status),
            };
            assert!(input_length >= 1);
            match request.output_buffer(4) {
                Ok(output) => output[..4].copy_from_slice(&sum.to_le_bytes()),
                Err(status) => return request.complete(status),
            }
            request.complete_with_information(NtStatus::SUCCESS, 4);
        }
        IOCTL_PARK => {
            if let Err((request, status)) =
                request.forward_to(Queue::from_raw(MANUAL.load(Ordering::SeqCst) as WDFQUEUE))
            {
                request.complete(status);
            }
        }
        _ => request.complete(NtStatus::INVALID_DEVICE_REQUEST),
    }
}

unsafe extern "C" fn device_add(_driver: WDFDRIVER, init: PWDFDEVICE_INIT) -> NTSTATUS {
    // SAFETY: the init this callback received.
    let mut init = unsafe { DeviceInit::from_raw(init) };
    init.set_pnp_power_callbacks(&PnpPowerCallbacks {
        d0_entry: Some(d0_entry),
        d0_exit: Some(d0_exit),
        ..Default::default()
    });
    init.set_io_type(IoType::Buffered);
    let result = (|| {
        let device = init.create(None)?;
        device.create_device_interface(&CLASS, None)?;
        let mut config = QueueConfig::new(DispatchType::Parallel, true);
        config.io_device_control = Some(io_device_control);
        Queue::create(device, &config)?;
        let mut manual = QueueConfig::new(DispatchType::Manual, false);
        manual.power_managed = Some(false);
        let manual = Queue::create(device, &manual)?;
        manual.receive(device, RequestType::Read)?;
        MANUAL.store(manual.handle() as usize, Ordering::SeqCst);
        assert!(!device.default_queue().is_null());
        Ok::<_, NtStatus>(())
    })();
    NtStatus::from_result(result).raw()
}

unsafe extern "C" fn driver_entry(
    driver_object: PDRIVER_OBJECT,
    registry_path: PCUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: DriverEntry's own arguments.
    let driver = unsafe {
        Driver::create(
            driver_object,
            registry_path,
            DriverConfig {
                device_add: Some(device_add),
                unload: None,
            },
        )
    };
    match driver {
        Ok(driver) => {
            assert_eq!(driver.wdm_driver_object(), driver_object);
            STATUS_SUCCESS
        }
        Err(status) => status.raw(),
    }
}

#[test]
fn driver_device_and_queues_built_with_the_wrappers() {
    let session = Session::begin();
    EVENTS.lock().unwrap().clear();
    let driver = SimDriver::load(driver_entry).expect("loads");
    let device = driver.add_device().expect("added");
    device.start().expect("started");
    let file = File::open_interface(&CLASS).expect("opens");
    let mut output = [0u8; 4];
    assert_eq!(
        file.device_io_control(IOCTL_SUM, &[1, 2, 3, 250], &mut output),
        Ok(4)
    );
    assert_eq!(u32::from_le_bytes(output), 256);
    assert_eq!(
        file.device_io_control(IOCTL_SUM, &[1], &mut [0u8; 3]),
        Err(NtStatus::BUFFER_TOO_SMALL.raw())
    );
    // Parked and read requests wait on the manual queue until the driver takes them.
    let parked = file.device_io_control_overlapped(IOCTL_PARK, &[], 4);
    let read = file.read_overlapped(2);
    let manual = Queue::from_raw(MANUAL.load(Ordering::SeqCst) as WDFQUEUE);
    let first = manual.retrieve_next_request().expect("parked request");
    assert!(matches!(
        first.parameters(),
        RequestParameters::DeviceControl {
            ioctl: IOCTL_PARK,
            ..
        }
    ));
    first.complete_with_information(NtStatus::SUCCESS, 0);
    let mut second = manual.retrieve_next_request().expect("read request");
    assert_eq!(second.parameters(), RequestParameters::Read { length: 2 });
    second
        .output_buffer(2)
        .expect("read buffer")
        .copy_from_slice(&[7, 7]);
    assert!(!second.is_canceled());
    second.complete_with_information(NtStatus::SUCCESS, 2);
    assert_eq!(
        manual.retrieve_next_request().err(),
        Some(NtStatus::NO_MORE_ENTRIES)
    );
    assert_eq!(
        parked.wait(Duration::from_secs(5)),
        Some((STATUS_SUCCESS, 0))
    );
    assert_eq!(read.wait(Duration::from_secs(5)), Some((STATUS_SUCCESS, 2)));
    assert_eq!(read.output(), &[7, 7]);
    drop(file);
    device.remove();
    driver.unload();
    assert_eq!(*EVENTS.lock().unwrap(), ["D0Entry", "D0Exit"]);
    session.end();
}
