//! A driver written with `dmf::wdf::{driver, device, queue}`: driver entry, device add with `PnP`
//! callbacks, a device interface, a default parallel queue and a manual queue, exercised from
//! the user-mode side.
#![cfg(not(windows))]

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dmf::wdf::NtStatus;
use dmf::wdf::device::{Device, DeviceInit, IoType};
use dmf::wdf::device_handler::{DeviceHandler, create_device};
use dmf::wdf::driver::Driver;
use dmf::wdf::entry::{DriverCallbacks, IoQueueHandler, create_queue};
use dmf::wdf::queue::{
    DispatchType, Queue, QueueConfig, QueueRequest, RequestParameters, RequestType,
};
use wdk_sys::sim::Session;
use wdk_sys::sim::pnp::Driver as SimDriver;
use wdk_sys::sim::user::File;
use wdk_sys::{GUID, STATUS_SUCCESS, WDF_POWER_DEVICE_STATE, WDFQUEUE};

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

/// The device's power callbacks.
struct TestDevice;

impl DeviceHandler for TestDevice {
    fn d0_entry(&self, _device: Device, _previous: WDF_POWER_DEVICE_STATE) -> Result<(), NtStatus> {
        EVENTS.lock().unwrap().push("D0Entry");
        Ok(())
    }

    fn d0_exit(&self, _device: Device, _target: WDF_POWER_DEVICE_STATE) -> Result<(), NtStatus> {
        EVENTS.lock().unwrap().push("D0Exit");
        Ok(())
    }
}

/// The default queue's handler: sums input bytes, or parks the request on the manual queue.
struct DefaultQueue;

impl IoQueueHandler for DefaultQueue {
    fn device_control(
        &self,
        _queue: Queue,
        mut request: QueueRequest,
        code: u32,
        _input_length: usize,
        _output_length: usize,
    ) {
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
}

/// The driver: one device with a parallel default queue and a manual queue for reads.
struct TestDriver;

impl DriverCallbacks for TestDriver {
    fn device_add(_driver: Driver, mut init: DeviceInit) -> Result<(), NtStatus> {
        init.set_io_type(IoType::Buffered);
        let pending = create_device::<TestDevice>(init)?;
        let device = pending.install(TestDevice)?;
        device.create_device_interface(&CLASS, None)?;
        create_queue(
            device,
            &QueueConfig::new(DispatchType::Parallel, true),
            false,
            DefaultQueue,
        )?;
        let mut manual = QueueConfig::new(DispatchType::Manual, false);
        manual.power_managed = Some(false);
        let manual = Queue::create(device, &manual)?;
        manual.receive(device, RequestType::Read)?;
        MANUAL.store(manual.handle() as usize, Ordering::SeqCst);
        assert!(!device.default_queue().is_null());
        Ok(())
    }
}

dmf::driver_entry!(TestDriver);

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
