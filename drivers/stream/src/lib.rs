//! # DMF sample: a sensor stream (KMDF driver)
//!
//! A root-enumerated KMDF driver (hardware id `Root\DmfSampleStream`) that finds a sensor
//! through its device interface with a [`DeviceInterfaceTarget`] and keeps
//! [`STREAMING_REQUESTS`] read-sample requests permanently in flight to it:
//!
//! * `PrepareHardware` creates the module as a static module of the device's `DeviceModules`
//!   and routes the callback to it: it registers for
//!   [`GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR`](interface::GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR)
//!   interfaces (already present ones included). The first sensor that arrives is opened and
//!   streamed from (the module's streaming child is in Automatic mode, output buffers sized for
//!   one [`SensorSample`](interface::SensorSample)); when it goes (query-remove, surprise
//!   removal, interface disabled) streaming stops and the target is closed, a cancelled removal
//!   reopens it and streaming resumes, and the next arrival connects again. `D0Exit` stops
//!   streaming and purges the target, `D0Entry` restarts both. `ReleaseHardware` (orderly or
//!   surprise removal) unregisters, which closes the sensor, and drops the module.
//! * The module's callbacks keep the statistics: `Open` (a new sensor) restarts the sequence
//!   check and counts a connection; the post-open and pre-close hooks say whether a sensor is
//!   connected.
//! * The output callback counts samples and checks each sensor's sequence numbers: none may
//!   come twice (completions of concurrent requests may arrive slightly reordered, which is
//!   counted separately). It allocates nothing, and takes only the statistics' own spin lock:
//!   a sensor that completes reads inline (in its queue callback, inside the stream's send)
//!   runs it inside the module's calls, which this driver makes holding its `PnP` wait lock.
//! * The device registers
//!   [`GUID_DEVINTERFACE_DMF_SAMPLE_STREAM`](interface::GUID_DEVINTERFACE_DMF_SAMPLE_STREAM) and
//!   answers
//!   [`IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS`](interface::IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS)
//!   with [`StreamStatistics`](interface::StreamStatistics), in any power state.
//!
//! The driver is safe Rust over `dmf`; `dmf::driver_entry!` defines `DriverEntry`.

#![no_std]

extern crate alloc;

#[cfg(all(windows, not(test)))]
extern crate wdk_panic;

#[cfg(all(windows, not(test)))]
#[global_allocator]
static GLOBAL_ALLOCATOR: wdk_alloc::WdkAllocator = wdk_alloc::WdkAllocator;

pub mod interface;

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use dmf::core::{DeviceModules, ModuleAttributes, PowerState};
use dmf::dmf_trace;
use dmf::modules::continuous_request_target::{
    BufferDisposition, ContinuousRequestTargetConfig, Mode, OutputBuffer, RequestType,
};
use dmf::modules::device_interface_target::{
    DeviceInterfaceTarget, DeviceInterfaceTargetConfig, PnpRegisterWhen, TargetState,
};
use dmf::wdf::NtStatus;
use dmf::wdf::device::{Device, DeviceInit, IoType};
use dmf::wdf::device_handler::{DeviceHandler, create_device};
use dmf::wdf::driver::Driver;
use dmf::wdf::entry::{DriverCallbacks, IoQueueHandler, create_queue};
use dmf::wdf::queue::{DispatchType, Queue, QueueConfig, QueueRequest};
use dmf::wdf::spin_lock::SpinLock;
use dmf::wdf::trace::TraceLevel;
use dmf::wdf::wait_lock::WaitLock;
use wdk_sys::WDF_POWER_DEVICE_STATE;

use interface::{
    GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR, GUID_DEVINTERFACE_DMF_SAMPLE_STREAM,
    IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE, IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS, SensorSample,
    StreamStatistics,
};

const MODULE: &str = "DmfSampleStream";

/// Read-sample requests each device keeps in flight.
pub const STREAMING_REQUESTS: usize = 4;

/// The driver's callbacks.
#[derive(Debug)]
pub struct StreamDriver;

impl DriverCallbacks for StreamDriver {
    fn device_add(_driver: Driver, mut init: DeviceInit) -> Result<(), NtStatus> {
        init.set_io_type(IoType::Buffered);
        let pending = create_device::<StreamDevice>(init)?;
        let device = pending.device();
        let stats = Arc::new(Stats::new()?);
        // The default queue; statistics are answered in any power state: not power-managed.
        let mut config = QueueConfig::new(DispatchType::Parallel, true);
        config.power_managed = Some(false);
        create_queue(
            device,
            &config,
            false,
            StatisticsQueue {
                stats: Arc::clone(&stats),
            },
        )?;
        device.create_device_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_STREAM, None)?;
        let shared = Arc::new(Shared {
            stats,
            link: WaitLock::create(Link {
                modules: None,
                sensor: None,
            })?,
        });
        pending.install(StreamDevice(shared))?;
        dmf_trace!(TraceLevel::Info, MODULE, "stream device added");
        Ok(())
    }
}

dmf::driver_entry!(StreamDriver);

/// The module: the sensor interface, streamed from in Automatic mode; its callbacks keep the
/// statistics.
fn sensor_config(stats: &Arc<Stats>) -> DeviceInterfaceTargetConfig {
    let on_state = Arc::clone(stats);
    DeviceInterfaceTargetConfig {
        module_open_option: PnpRegisterWhen::PrepareHardware,
        device_interface_target_guid: GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR,
        continuous_request_target_config: streamer_config(Arc::clone(stats)),
        on_state_change: Some(Box::new(move |_module, state| {
            dmf_trace!(TraceLevel::Info, MODULE, "sensor: {state:?}");
            if state == TargetState::Open {
                on_state.new_sensor();
            }
        })),
        ..DeviceInterfaceTargetConfig::default()
    }
}

/// Static module attributes whose hooks say whether a sensor is connected.
fn sensor_attributes(stats: &Arc<Stats>) -> ModuleAttributes {
    let opened = Arc::clone(stats);
    let closing = Arc::clone(stats);
    let mut attributes = ModuleAttributes::static_module();
    attributes.post_open = Some(Box::new(move || {
        opened.connected.store(1, Ordering::Release);
    }));
    attributes.pre_close = Some(Box::new(move || {
        closing.connected.store(0, Ordering::Release);
    }));
    attributes
}

fn streamer_config(stats: Arc<Stats>) -> ContinuousRequestTargetConfig {
    ContinuousRequestTargetConfig {
        continuous_request_count: STREAMING_REQUESTS,
        buffer_count_output: STREAMING_REQUESTS,
        buffer_output_size: SensorSample::SIZE,
        request_type: RequestType::Ioctl,
        ioctl: IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE,
        mode: Mode::Automatic,
        purge_and_start_target_in_d0_callbacks: true,
        buffer_output: Some(Box::new(move |output, status| {
            stats.completed(output.as_ref(), status)
        })),
        ..ContinuousRequestTargetConfig::default()
    }
}

/// What the device counted (updated at `DISPATCH_LEVEL` by the output callback).
struct Stats {
    errors: AtomicU64,
    cancelled: AtomicU64,
    reordered: AtomicU64,
    duplicates: AtomicU64,
    connections: AtomicU32,
    connected: AtomicU32,
    order: SpinLock<Order>,
}

/// The sample count and the sequence check of the current sensor: the highest sample seen and
/// which of the 64 sequence numbers up to it were seen (bit `n`: `highest - n`). One lock, so a
/// snapshot's count and last sample agree.
#[derive(Default)]
struct Order {
    samples: u64,
    last: SensorSample,
    seen: u64,
}

/// What [`Order::record`] found.
enum Arrival {
    InOrder,
    Reordered,
    Duplicate,
}

impl Order {
    fn record(&mut self, sample: SensorSample) -> Arrival {
        self.samples += 1;
        let highest = self.last.sequence;
        if sample.sequence > highest {
            let shift = sample.sequence - highest;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift } | 1;
            self.last = sample;
            return Arrival::InOrder;
        }
        let behind = highest - sample.sequence;
        if behind >= 64 || sample.sequence == 0 {
            return Arrival::Reordered;
        }
        let bit = 1u64 << behind;
        if self.seen & bit != 0 {
            return Arrival::Duplicate;
        }
        self.seen |= bit;
        Arrival::Reordered
    }
}

impl Stats {
    fn new() -> Result<Self, NtStatus> {
        Ok(Self {
            errors: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            reordered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            connections: AtomicU32::new(0),
            connected: AtomicU32::new(0),
            order: SpinLock::create(Order::default())?,
        })
    }

    /// The output callback: counts the completion and says whether the request streams on.
    fn completed(&self, output: Option<&OutputBuffer>, status: NtStatus) -> BufferDisposition {
        if status == NtStatus::CANCELLED {
            self.cancelled.fetch_add(1, Ordering::Relaxed);
            return BufferDisposition::ContinuousRequestTargetAndStopStreaming;
        }
        let sample = output.and_then(|buffer| SensorSample::from_bytes(buffer.data()));
        let Some(sample) = sample.filter(|_| status.is_success()) else {
            self.errors.fetch_add(1, Ordering::Relaxed);
            return BufferDisposition::ContinuousRequestTargetAndStopStreaming;
        };
        let arrival = self.order.lock().record(sample);
        match arrival {
            Arrival::InOrder => {}
            Arrival::Reordered => {
                self.reordered.fetch_add(1, Ordering::Relaxed);
            }
            Arrival::Duplicate => {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
        BufferDisposition::ContinuousRequestTargetAndContinueStreaming
    }

    /// A new sensor: its sequence numbers start again.
    fn new_sensor(&self) {
        {
            let mut order = self.order.lock();
            order.last = SensorSample::default();
            order.seen = 0;
        }
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> StreamStatistics {
        let (samples, last_sample) = {
            let order = self.order.lock();
            (order.samples, order.last)
        };
        StreamStatistics {
            samples,
            errors: self.errors.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            reordered: self.reordered.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Acquire),
            last_sample,
        }
    }
}

/// What `PnP` callbacks change (under the wait lock, at `PASSIVE_LEVEL`). The module's calls
/// made under it may run the output callback inline, so that callback must never take this
/// lock.
struct Link {
    modules: Option<DeviceModules>,
    sensor: Option<DeviceInterfaceTarget>,
}

/// One stream device's state.
struct Shared {
    stats: Arc<Stats>,
    link: WaitLock<Link>,
}

impl Shared {
    /// Unregisters (which closes the sensor), then closes and drops the module
    /// (`ReleaseHardware`: it is created again by the next `PrepareHardware`).
    fn tear_down(&self) {
        let (modules, sensor) = {
            let mut link = self.link.lock();
            if let Some(modules) = &link.modules {
                modules.release_hardware();
            }
            (link.modules.take(), link.sensor.take())
        };
        if let Some(mut modules) = modules {
            modules.destroy();
        }
        drop(sensor);
    }
}

/// The device's `PnP`/power handler.
struct StreamDevice(Arc<Shared>);

impl DeviceHandler for StreamDevice {
    fn prepare_hardware(&self, device: Device) -> Result<(), NtStatus> {
        let mut link = self.0.link.lock();
        let stats = &self.0.stats;
        let sensor =
            DeviceInterfaceTarget::create(device, sensor_config(stats), sensor_attributes(stats))?;
        let mut modules = DeviceModules::new();
        modules.add(&sensor)?;
        modules.post_create()?;
        modules.prepare_hardware()?;
        link.modules = Some(modules);
        link.sensor = Some(sensor);
        Ok(())
    }

    fn release_hardware(&self, _device: Device) -> Result<(), NtStatus> {
        self.0.tear_down();
        Ok(())
    }

    fn d0_entry(&self, _device: Device, previous: WDF_POWER_DEVICE_STATE) -> Result<(), NtStatus> {
        let link = self.0.link.lock();
        link.modules.as_ref().map_or(Ok(()), |modules| {
            modules.d0_entry(PowerState::from_raw(previous))
        })
    }

    fn d0_exit(&self, _device: Device, target: WDF_POWER_DEVICE_STATE) -> Result<(), NtStatus> {
        if let Some(modules) = &self.0.link.lock().modules {
            modules.d0_exit(PowerState::from_raw(target));
        }
        Ok(())
    }

    fn surprise_removal(&self, _device: Device) {
        if let Some(modules) = &self.0.link.lock().modules {
            modules.surprise_removal();
        }
    }

    fn query_remove(&self, _device: Device) -> Result<(), NtStatus> {
        let link = self.0.link.lock();
        link.modules
            .as_ref()
            .map_or(Ok(()), DeviceModules::query_remove)
    }

    fn cleanup(&self, _device: Device) {
        // Normally done by ReleaseHardware already.
        self.0.tear_down();
    }
}

/// The default queue: statistics.
struct StatisticsQueue {
    stats: Arc<Stats>,
}

impl IoQueueHandler for StatisticsQueue {
    fn device_control(
        &self,
        _queue: Queue,
        mut request: QueueRequest,
        ioctl: u32,
        _input_length: usize,
        _output_length: usize,
    ) {
        if ioctl != IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS {
            return request.complete(NtStatus::INVALID_DEVICE_REQUEST);
        }
        let statistics = self.stats.snapshot();
        match request.output_buffer(StreamStatistics::SIZE) {
            Ok(output) => {
                output[..StreamStatistics::SIZE].copy_from_slice(&statistics.to_bytes());
                request.complete_with_information(NtStatus::SUCCESS, StreamStatistics::SIZE);
            }
            Err(status) => request.complete(status),
        }
    }
}
