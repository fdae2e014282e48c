//! # DMF sample: a virtual sensor (KMDF driver)
//!
//! A root-enumerated KMDF driver (hardware id `Root\DmfSampleSensor`) whose device registers the
//! [`GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR`](interface::GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR)
//! interface and answers, on its default queue:
//!
//! * [`IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE`](interface::IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE):
//!   one [`SensorSample`](interface::SensorSample) (sequence number, timestamp, value, the
//!   sensor's identity), or
//!   `STATUS_BUFFER_TOO_SMALL` when the output buffer cannot hold one;
//! * [`IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY`](interface::IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY):
//!   how long each later read takes, to stand for a slow device.
//!
//! The default queue is sequential and power-managed, and its handler runs at the sender's
//! IRQL: KMDF presents a request in the sender's thread, so a driver that streams from this
//! sensor and resends from its completion routine reaches it at `DISPATCH_LEVEL`. The handler
//! therefore never waits:
//!
//! * with no latency (and nothing waiting) a read is answered at once, inline: the sender's
//!   completion routine runs before its `WdfRequestSend` returns;
//! * with a latency, the read goes to a manual queue of pending reads, and a one-shot DPC timer
//!   answers the oldest one each time the latency has passed (one sample per period, in
//!   arrival order), starting again while reads wait.
//!
//! Pending reads stay cancelable (the framework completes a cancelled one with
//! `STATUS_CANCELLED`; it takes no sample) and are purged when the device is removed. In low
//! power the timer is stopped (`D0Exit` waits for a running tick) and the reads wait; `D0Entry`
//! starts it again. The timer lives from `PrepareHardware` to `ReleaseHardware`.
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

use alloc::sync::{Arc, Weak};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

use dmf::dmf_trace;
use dmf::wdf::NtStatus;
use dmf::wdf::device::{Device, DeviceInit, IoType};
use dmf::wdf::device_handler::{DeviceHandler, create_device};
use dmf::wdf::driver::Driver;
use dmf::wdf::entry::{DriverCallbacks, IoQueueHandler, create_queue, interrupt_time_100ns};
use dmf::wdf::queue::{DispatchType, Queue, QueueConfig, QueueRequest};
use dmf::wdf::spin_lock::SpinLock;
use dmf::wdf::timer::{Timer, TimerConfig};
use dmf::wdf::trace::TraceLevel;
use wdk_sys::WDF_POWER_DEVICE_STATE;

use interface::{
    GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR, IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE,
    IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY, MAX_LATENCY_MICROSECONDS, SensorSample,
};

const MODULE: &str = "DmfSampleSensor";

/// The identity the next sensor device gets (unique while the driver is loaded).
static NEXT_SENSOR_ID: AtomicU32 = AtomicU32::new(1);

/// The driver's callbacks.
#[derive(Debug)]
pub struct SensorDriver;

impl DriverCallbacks for SensorDriver {
    fn device_add(_driver: Driver, mut init: DeviceInit) -> Result<(), NtStatus> {
        init.set_io_type(IoType::Buffered);
        let pending_device = create_device::<SensorDevice>(init)?;
        let device = pending_device.device();
        // Reads waiting for their sample. Not power-managed: the device's own power callbacks
        // stop and restart the timer that serves it.
        let mut config = QueueConfig::new(DispatchType::Manual, false);
        config.power_managed = Some(false);
        let pending = Queue::create(device, &config)?;
        let sensor = Arc::new(Sensor {
            id: NEXT_SENSOR_ID.fetch_add(1, Ordering::Relaxed),
            sequence: AtomicU64::new(0),
            latency_us: AtomicU32::new(0),
            pending,
            clock: SpinLock::create(Clock {
                timer: None,
                running: false,
                powered: false,
            })?,
        });
        let config = QueueConfig::new(DispatchType::Sequential, true);
        create_queue(device, &config, false, SensorQueue(Arc::clone(&sensor)))?;
        device.create_device_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR, None)?;
        pending_device.install(SensorDevice(sensor))?;
        dmf_trace!(TraceLevel::Info, MODULE, "sensor device added");
        Ok(())
    }
}

dmf::driver_entry!(SensorDriver);

/// What paces the samples (under the sensor's spin lock).
struct Clock {
    /// The one-shot DPC timer that answers pending reads (from `PrepareHardware` to
    /// `ReleaseHardware`; taken out while `D0Exit` stops it).
    timer: Option<Timer>,
    /// The timer is started, or its handler runs and will start it again: reads must queue
    /// behind it.
    running: bool,
    /// Between `D0Entry` and `D0Exit`.
    powered: bool,
}

/// One sensor's state, shared by its default queue, its device callbacks and its timer.
struct Sensor {
    /// The sensor's identity, stamped on its samples.
    id: u32,
    /// Sequence number of the last sample returned.
    sequence: AtomicU64,
    /// Per-sample latency in microseconds.
    latency_us: AtomicU32,
    /// The manual queue of reads waiting for their sample, oldest first.
    pending: Queue,
    clock: SpinLock<Clock>,
}

impl Sensor {
    fn latency(&self) -> Duration {
        Duration::from_micros(u64::from(self.latency_us.load(Ordering::Relaxed)))
    }

    /// Takes the next sample and completes `request` with it (the buffer was checked).
    fn complete_sample(&self, mut request: QueueRequest) {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let sample = SensorSample {
            sequence,
            timestamp_100ns: interrupt_time_100ns(),
            value: SensorSample::simulated_value(sequence),
            sensor_id: self.id,
        };
        match request.output_buffer(SensorSample::SIZE) {
            Ok(output) => {
                output[..SensorSample::SIZE].copy_from_slice(&sample.to_bytes());
                request.complete_with_information(NtStatus::SUCCESS, SensorSample::SIZE);
            }
            Err(status) => request.complete(status),
        }
    }

    /// A read (at the sender's IRQL, up to `DISPATCH_LEVEL`): answered now, or queued for the
    /// timer. Never waits.
    fn read_sample(&self, mut request: QueueRequest) {
        // A too-small buffer fails at once, taking no sample.
        if let Err(status) = request.output_buffer(SensorSample::SIZE) {
            return request.complete(status);
        }
        let now = {
            let clock = self.clock.lock();
            self.latency_us.load(Ordering::Relaxed) == 0 && clock.powered && !clock.running
        };
        if now {
            // Outside the lock: completing runs the sender's completion routine right here,
            // which may send the next read into this very function.
            return self.complete_sample(request);
        }
        if let Err((request, status)) = request.forward_to(self.pending) {
            return request.complete(status);
        }
        // Queued first, then the clock checked: a tick that found the queue empty has cleared
        // `running` under the lock before this looks at it, so no read is left behind.
        let mut clock = self.clock.lock();
        if clock.powered
            && !clock.running
            && let Some(timer) = &clock.timer
        {
            timer.start(self.latency());
            clock.running = true;
        }
    }

    /// The timer's handler (a DPC, at `DISPATCH_LEVEL`): answers the oldest pending read and
    /// keeps the clock running while reads may wait.
    fn tick(&self) {
        let next = {
            let mut clock = self.clock.lock();
            let next = if clock.powered {
                self.pending.retrieve_next_request().ok()
            } else {
                None
            };
            if next.is_none() {
                clock.running = false;
            }
            next
        };
        let Some(request) = next else {
            return;
        };
        // Outside the lock, as in `read_sample`.
        self.complete_sample(request);
        // Another period for the next read, if one waits. The check is under the lock: a read
        // queued after it finds `running` cleared and starts the timer itself.
        let mut clock = self.clock.lock();
        if !clock.running {
            return;
        }
        match &clock.timer {
            Some(timer) if clock.powered && self.pending.status().queued > 0 => {
                timer.start(self.latency());
            }
            _ => clock.running = false,
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

    /// Takes the timer out and deletes it (waiting for a running tick), at `PASSIVE_LEVEL`.
    fn delete_timer(&self) {
        let timer = {
            let mut clock = self.clock.lock();
            clock.running = false;
            clock.timer.take()
        };
        drop(timer);
    }
}

/// The default queue's handler.
struct SensorQueue(Arc<Sensor>);

impl IoQueueHandler for SensorQueue {
    fn device_control(
        &self,
        _queue: Queue,
        request: QueueRequest,
        ioctl: u32,
        _input_length: usize,
        _output_length: usize,
    ) {
        match ioctl {
            IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE => self.0.read_sample(request),
            IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY => self.0.set_latency(request),
            _ => request.complete(NtStatus::INVALID_DEVICE_REQUEST),
        }
    }
}

/// The device's `PnP`/power callbacks: the timer's life and its power.
struct SensorDevice(Arc<Sensor>);

impl DeviceHandler for SensorDevice {
    fn prepare_hardware(&self, device: Device) -> Result<(), NtStatus> {
        let weak: Weak<Sensor> = Arc::downgrade(&self.0);
        let timer = Timer::new(device.handle().cast(), TimerConfig::default(), move || {
            if let Some(sensor) = weak.upgrade() {
                sensor.tick();
            }
        })?;
        let previous = self.0.clock.lock().timer.replace(timer);
        drop(previous);
        Ok(())
    }

    fn release_hardware(&self, _device: Device) -> Result<(), NtStatus> {
        self.0.delete_timer();
        Ok(())
    }

    fn d0_entry(&self, _device: Device, _previous: WDF_POWER_DEVICE_STATE) -> Result<(), NtStatus> {
        let mut clock = self.0.clock.lock();
        clock.powered = true;
        // Reads that waited through low power get their samples again.
        if !clock.running
            && self.0.pending.status().queued > 0
            && let Some(timer) = &clock.timer
        {
            timer.start(self.0.latency());
            clock.running = true;
        }
        Ok(())
    }

    fn d0_exit(&self, _device: Device, _target: WDF_POWER_DEVICE_STATE) -> Result<(), NtStatus> {
        // No sample in low power: stop the timer and wait for a running tick. It is taken out
        // of the lock for the wait (a tick takes the lock); meanwhile reads only queue.
        let timer = {
            let mut clock = self.0.clock.lock();
            clock.powered = false;
            clock.running = false;
            clock.timer.take()
        };
        if let Some(timer) = &timer {
            timer.stop(true);
        }
        let mut clock = self.0.clock.lock();
        if clock.timer.is_none() {
            clock.timer = timer;
        }
        Ok(())
    }

    fn cleanup(&self, _device: Device) {
        // Normally done by ReleaseHardware already.
        self.0.delete_timer();
    }
}
