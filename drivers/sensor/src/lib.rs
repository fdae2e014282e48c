//! # DMF sample: a virtual sensor (KMDF driver)
//!
//! A root-enumerated KMDF driver (hardware id `Root\DmfSampleSensor`) whose device registers the
//! [`GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR`](interface::GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR)
//! interface and answers, on its default queue:
//!
//! * [`IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE`](interface::IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE):
//!   one [`SensorSample`](interface::SensorSample) (sequence number, timestamp, value), or
//!   `STATUS_BUFFER_TOO_SMALL` when the output buffer cannot hold one;
//! * [`IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY`](interface::IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY):
//!   how long each later read takes, to stand for a slow device.
//!
//! The default queue is sequential and power-managed: one sample is taken at a time, in order,
//! and requests wait while the device is in low power. Its handler runs at `PASSIVE_LEVEL`
//! (the latency is a wait).
//!
//! The driver is safe Rust over `dmf::wdf`; `dmf::driver_entry!` defines `DriverEntry`.

#![no_std]

extern crate alloc;

#[cfg(all(windows, not(test)))]
extern crate wdk_panic;

#[cfg(all(windows, not(test)))]
#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

pub mod interface;

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

use dmf::dmf_trace;
use dmf::wdf::NtStatus;
use dmf::wdf::device::{DeviceInit, IoType};
use dmf::wdf::driver::Driver;
use dmf::wdf::entry::{DriverCallbacks, IoQueueHandler, create_queue, interrupt_time_100ns};
use dmf::wdf::queue::{DispatchType, Queue, QueueConfig, QueueRequest};
use dmf::wdf::thread::delay;
use dmf::wdf::trace::TraceLevel;

use interface::{
    GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR, IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE,
    IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY, MAX_LATENCY_MICROSECONDS, SensorSample,
};

const MODULE: &str = "DmfSampleSensor";

/// The driver's callbacks.
#[derive(Debug)]
pub struct SensorDriver;

impl DriverCallbacks for SensorDriver {
    fn device_add(_driver: Driver, mut init: DeviceInit) -> Result<(), NtStatus> {
        init.set_io_type(IoType::Buffered);
        let device = init.create(None)?;
        let config = QueueConfig::new(DispatchType::Sequential, true);
        create_queue(device, &config, true, Sensor::new())?;
        device.create_device_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR, None)?;
        dmf_trace!(TraceLevel::Info, MODULE, "sensor device added");
        Ok(())
    }
}

dmf::driver_entry!(SensorDriver);

/// One sensor's state: the handler of its default queue.
#[derive(Debug, Default)]
struct Sensor {
    /// Sequence number of the last sample returned.
    sequence: AtomicU64,
    /// Per-sample latency in microseconds.
    latency_us: AtomicU32,
}

impl Sensor {
    const fn new() -> Self {
        Self {
            sequence: AtomicU64::new(0),
            latency_us: AtomicU32::new(0),
        }
    }

    fn read_sample(&self, mut request: QueueRequest) {
        // Check the buffer before waiting: a too-small buffer fails at once.
        if let Err(status) = request.output_buffer(SensorSample::SIZE) {
            return request.complete(status);
        }
        let latency = self.latency_us.load(Ordering::Relaxed);
        if latency > 0
            && let Err(status) = delay(Duration::from_micros(u64::from(latency)))
        {
            return request.complete(status);
        }
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let sample = SensorSample {
            sequence,
            timestamp_100ns: interrupt_time_100ns(),
            value: SensorSample::simulated_value(sequence),
            reserved: 0,
        };
        match request.output_buffer(SensorSample::SIZE) {
            Ok(output) => {
                output[..SensorSample::SIZE].copy_from_slice(&sample.to_bytes());
                request.complete_with_information(NtStatus::SUCCESS, SensorSample::SIZE);
            }
            Err(status) => request.complete(status),
        }
    }

    fn set_latency(&self, request: QueueRequest) {
        let latency = match request.input_buffer(size_of::<u32>()) {
            Ok(input) => match input.get(..size_of::<u32>()).map(<[u8; 4]>::try_from) {
                Some(Ok(bytes)) => u32::from_ne_bytes(bytes),
                _ => return request.complete(NtStatus::INVALID_PARAMETER),
            },
            Err(status) => return request.complete(status),
        };
        if latency > MAX_LATENCY_MICROSECONDS {
            return request.complete(NtStatus::INVALID_PARAMETER);
        }
        self.latency_us.store(latency, Ordering::Relaxed);
        request.complete(NtStatus::SUCCESS);
    }
}

impl IoQueueHandler for Sensor {
    fn device_control(
        &self,
        _queue: Queue,
        request: QueueRequest,
        ioctl: u32,
        _input_length: usize,
        _output_length: usize,
    ) {
        match ioctl {
            IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE => self.read_sample(request),
            IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY => self.set_latency(request),
            _ => request.complete(NtStatus::INVALID_DEVICE_REQUEST),
        }
    }
}
