//! # DMF sample: a sensor hub (KMDF driver)
//!
//! A root-enumerated KMDF driver (hardware id `Root\DmfSampleHub`) that puts every module of
//! the library in one pipeline:
//!
//! ```text
//! sensors ──(DeviceInterfaceMultipleTarget: one ContinuousRequestTarget per sensor)──▶
//!   output callback (DISPATCH_LEVEL) ──(ThreadedBufferQueue)──▶ worker (PASSIVE_LEVEL):
//!   statistics, queue for user mode ──(NotifyUserWithRequest)──▶ parked WAIT_SAMPLES IOCTLs
//! ```
//!
//! * `PrepareHardware` creates the pipeline: a [`NotifyUserWithRequest`] that parks
//!   [`IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES`]
//!   requests, a [`ThreadedBufferQueue`] of [`SAMPLE_BUFFERS`] buffers with its worker thread
//!   started, and a [`DeviceInterfaceMultipleTarget`] (a static module of the device's
//!   `DeviceModules`) on
//!   [`GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR`] in
//!   Automatic mode: every sensor that is present or arrives later becomes a target with its
//!   own `ContinuousRequestTarget` keeping [`READS_PER_SENSOR`] read-sample request in flight.
//!   `ReleaseHardware` takes it down in the opposite order (streams first, the worker next, the
//!   parked requests last, which complete with `STATUS_CANCELLED`).
//! * A sensor's `Open` reads one sample synchronously to learn the sensor's identity (every
//!   target's completions reach the same output callback, as in DMF, so the identity travels
//!   in the sample); that sample is the first of its stream. A sensor that does not answer is
//!   refused. `Close` and an agreed query-remove mark it disconnected; a cancelled
//!   query-remove connects it again (streaming resumes by itself).
//! * The output callback (`DISPATCH_LEVEL`, allocates nothing) counts the sample for its
//!   sensor and copies it with the sensor's identity into a fetched `ThreadedBufferQueue`
//!   buffer; when none is free the sample is counted as dropped, never waited for.
//! * The worker (`PASSIVE_LEVEL`) keeps each sensor's statistics
//!   ([`SensorStatistics`]) and appends the sample to a queue for
//!   user mode of [`USER_QUEUE_SAMPLES`] samples (a sample that finds it full is dropped and
//!   counted), then completes parked requests with as many samples as fit in each.
//! * `WAIT_SAMPLES` completes at once when samples wait, else parks (see the interface module
//!   for statuses); `GET_SENSORS` answers at once. Both work in any power state: the queue is
//!   not power-managed, and parked requests stay parked across `D0Exit`/`D0Entry`.
//! * `D0Exit` stops every sensor's stream (waiting for its reads); `D0Entry` starts them again.
//!   (A sensor that arrives, or whose query-remove is cancelled, while the hub is in low power
//!   streams at once: the module's Automatic mode starts it after the callbacks; the next
//!   `D0Exit` stops it.)
//!
//! Locks: one spin lock (the `State`) holds the sensor table and the user-mode queue. The module
//! methods that can run the output callback inline (a sensor may complete reads in its queue
//! callback, inside the stream's send) are never called with it held.
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
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;

use dmf::core::{DeviceModules, ModuleAttributes, PowerState};
use dmf::dmf_trace;
use dmf::modules::buffer_pool::SourceSettings;
use dmf::modules::buffer_queue::BufferQueueConfig;
use dmf::modules::continuous_request_target::{
    BufferDisposition, ContinuousRequestTargetConfig, Mode, OutputBuffer, RequestType,
};
use dmf::modules::device_interface_multiple_target::{
    DeviceInterfaceMultipleTarget, DeviceInterfaceMultipleTargetConfig,
    DeviceInterfaceMultipleTargetNode, PnpRegisterWhen, Target, TargetState,
};
use dmf::modules::notify_user_with_request::{
    NotifyUserWithRequest, NotifyUserWithRequestConfig, ParkedRequest,
};
use dmf::modules::threaded_buffer_queue::{
    BufferDisposition as WorkDisposition, ThreadedBufferQueue, ThreadedBufferQueueConfig, Work,
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
    GUID_DEVINTERFACE_DMF_SAMPLE_HUB, GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR, HubSample,
    IOCTL_DMF_SAMPLE_HUB_GET_SENSORS, IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES,
    IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE, MAX_PARKED_REQUESTS, MAX_SENSORS, SensorSample,
    SensorStatistics, SensorsHeader,
};

const MODULE: &str = "DmfSampleHub";

/// Read-sample requests each sensor's stream keeps in flight. One: the next read goes out
/// only after the previous sample was queued, so each sensor's samples reach user mode in
/// sequence order without a reorder buffer (the sensor paces its samples anyway).
pub const READS_PER_SENSOR: usize = 1;

/// Buffers of the `ThreadedBufferQueue` between the output callback and the worker.
pub const SAMPLE_BUFFERS: usize = 256;

/// Samples waiting for a `WAIT_SAMPLES` request, at most.
pub const USER_QUEUE_SAMPLES: usize = 4096;

/// How long a sensor's first (identifying) read may take.
const PROBE_TIMEOUT_MS: u32 = 2_000;

/// The rate window: half a second in 100 ns units.
const RATE_WINDOW_100NS: u64 = 5_000_000;

/// The driver's callbacks.
#[derive(Debug)]
pub struct HubDriver;

impl DriverCallbacks for HubDriver {
    fn device_add(_driver: Driver, mut init: DeviceInit) -> Result<(), NtStatus> {
        init.set_io_type(IoType::Buffered);
        let pending = create_device::<HubDevice>(init)?;
        let device = pending.device();
        let state = Arc::new(SpinLock::create(State::new()?)?);
        let link = Arc::new(WaitLock::create(Link::default())?);
        // The default queue: answered in any power state, so not power-managed.
        let mut config = QueueConfig::new(DispatchType::Parallel, true);
        config.power_managed = Some(false);
        create_queue(
            device,
            &config,
            false,
            HubQueue {
                state: Arc::clone(&state),
                link: Arc::clone(&link),
            },
        )?;
        device.create_device_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_HUB, None)?;
        pending.install(HubDevice { state, link })?;
        dmf_trace!(TraceLevel::Info, MODULE, "hub device added");
        Ok(())
    }
}

dmf::driver_entry!(HubDriver);

/// One sensor's row of the table.
#[derive(Default)]
struct Sensor {
    /// Its target while connected.
    target: Option<Target>,
    statistics: SensorStatistics,
    /// Sum of the readings the worker saw (for the mean).
    sum: i64,
    /// Start of the current rate window: (time stamp, samples then).
    window: Option<(u64, u64)>,
    /// The highest sequence number the worker saw (one dropped before it shows as a gap).
    worker_last: u64,
}

impl Sensor {
    /// Its samples are all delivered or dropped, and it left: the row may be reused.
    fn settled(&self) -> bool {
        let s = &self.statistics;
        self.target.is_none() && s.received == s.delivered + s.dropped
    }

    /// The worker saw `sample`.
    fn record(&mut self, sample: &HubSample) {
        let s = &mut self.statistics;
        let last = self.worker_last;
        if sample.sequence > last + 1 {
            s.gaps += sample.sequence - last - 1;
        }
        self.worker_last = sample.sequence.max(last);
        s.samples += 1;
        s.last_value = sample.value;
        if s.samples == 1 {
            s.min = sample.value;
            s.max = sample.value;
        } else {
            s.min = s.min.min(sample.value);
            s.max = s.max.max(sample.value);
        }
        self.sum += i64::from(sample.value);
        s.mean = i32::try_from(self.sum / i64::try_from(s.samples).unwrap_or(i64::MAX))
            .unwrap_or_default();
        match self.window {
            None => self.window = Some((sample.timestamp_100ns, s.samples)),
            Some((since, count)) => {
                let elapsed = sample.timestamp_100ns.saturating_sub(since);
                if elapsed >= RATE_WINDOW_100NS {
                    let rate = (s.samples - count).saturating_mul(10_000_000) / elapsed;
                    s.rate = u32::try_from(rate).unwrap_or(u32::MAX);
                    self.window = Some((sample.timestamp_100ns, s.samples));
                }
            }
        }
    }
}

/// What the output callback, the worker and the IOCTLs share (one spin lock).
struct State {
    sensors: Vec<Sensor>,
    /// Samples waiting for a `WAIT_SAMPLES` request, oldest first.
    queue: VecDeque<HubSample>,
    /// Samples from a sensor the table does not know (should stay 0).
    unknown: u64,
}

impl State {
    fn new() -> Result<Self, NtStatus> {
        let mut sensors = Vec::new();
        sensors
            .try_reserve_exact(MAX_SENSORS)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        let mut queue = VecDeque::new();
        queue
            .try_reserve_exact(USER_QUEUE_SAMPLES)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        Ok(Self {
            sensors,
            queue,
            unknown: 0,
        })
    }

    fn sensor(&mut self, sensor_id: u32) -> Option<&mut Sensor> {
        self.sensors
            .iter_mut()
            .find(|sensor| sensor.statistics.sensor_id == sensor_id)
    }

    fn by_target(&mut self, target: Target) -> Option<&mut Sensor> {
        self.sensors
            .iter_mut()
            .find(|sensor| sensor.target == Some(target))
    }

    /// A row for a newly opened sensor: its old row (a sensor reopened), a free row, or the
    /// settled row of the sensor that left first.
    fn admit(&mut self, sensor_id: u32, target: Target) -> Result<(), NtStatus> {
        let index = if let Some(index) = self
            .sensors
            .iter()
            .position(|sensor| sensor.statistics.sensor_id == sensor_id)
        {
            index
        } else if self.sensors.len() < MAX_SENSORS {
            self.sensors.push(Sensor::default());
            self.sensors.len() - 1
        } else {
            let oldest = self
                .sensors
                .iter()
                .enumerate()
                .filter(|(_, sensor)| sensor.settled())
                .min_by_key(|(_, sensor)| sensor.statistics.sensor_id)
                .map(|(index, _)| index)
                .ok_or(NtStatus::INSUFFICIENT_RESOURCES)?;
            self.sensors[oldest] = Sensor::default();
            oldest
        };
        let sensor = &mut self.sensors[index];
        sensor.statistics.sensor_id = sensor_id;
        sensor.statistics.connected = 1;
        sensor.statistics.connections += 1;
        sensor.target = Some(target);
        Ok(())
    }

    /// Moves as many waiting samples as fit into `output`; returns the bytes written.
    fn drain_into(&mut self, output: &mut [u8]) -> usize {
        let mut written = 0;
        for slot in output.chunks_exact_mut(HubSample::SIZE) {
            let Some(sample) = self.queue.pop_front() else {
                break;
            };
            slot.copy_from_slice(&sample.to_bytes());
            written += HubSample::SIZE;
            if let Some(sensor) = self.sensor(sample.sensor_id) {
                sensor.statistics.delivered += 1;
            }
        }
        written
    }
}

type Shared = Arc<SpinLock<State>>;

/// The pipeline and what `PnP` callbacks change (under the wait lock, at `PASSIVE_LEVEL`). The
/// module calls made under it may run the output callback inline, which takes only the
/// state's spin lock, never this one.
#[derive(Default)]
struct Link {
    modules: Option<DeviceModules>,
    sensors: Option<DeviceInterfaceMultipleTarget>,
    worker: Option<Arc<ThreadedBufferQueue>>,
    notify: Option<Arc<NotifyUserWithRequest>>,
}

impl Link {
    /// The sensors' targets now (copied, so no lock is held while the module is called).
    fn targets(state: &Shared) -> Vec<Target> {
        state
            .lock()
            .sensors
            .iter()
            .filter_map(|sensor| sensor.target)
            .collect()
    }

    /// Closes the streams (unregistering closes every sensor), then the worker, then the
    /// parked requests (`STATUS_CANCELLED`).
    fn tear_down(&mut self, state: &Shared) {
        if let Some(modules) = &self.modules {
            modules.release_hardware();
        }
        if let Some(mut modules) = self.modules.take() {
            modules.destroy();
        }
        drop(self.sensors.take());
        drop(self.worker.take());
        drop(self.notify.take());
        let mut state = state.lock();
        for sensor in &mut state.sensors {
            sensor.target = None;
            sensor.statistics.connected = 0;
        }
    }
}

/// Completes `request` with the waiting samples that fit (the state is locked by the caller).
fn complete_parked(state: &mut State, mut request: ParkedRequest) {
    match request.output_buffer(HubSample::SIZE) {
        Ok(output) => {
            let written = state.drain_into(output);
            request.complete_with_information(NtStatus::SUCCESS, written);
        }
        Err(status) => request.complete(status),
    }
}

fn worker_config(state: Shared, notify: Arc<NotifyUserWithRequest>) -> ThreadedBufferQueueConfig {
    let settings = SourceSettings {
        buffer_count: SAMPLE_BUFFERS,
        buffer_size: HubSample::SIZE,
        ..SourceSettings::default()
    };
    ThreadedBufferQueueConfig::new(
        BufferQueueConfig::new(settings),
        Box::new(move |work: &mut Work<'_>| {
            if let Some(sample) = HubSample::from_bytes(work.data()) {
                process(&state, &notify, &sample);
            }
            WorkDisposition::WorkComplete
        }),
    )
}

/// The worker's part (`PASSIVE_LEVEL`): statistics, the user-mode queue, parked requests.
fn process(state: &Shared, notify: &NotifyUserWithRequest, sample: &HubSample) {
    let mut state = state.lock();
    let known = state.sensor(sample.sensor_id).map(|sensor| {
        sensor.record(sample);
    });
    if known.is_none() {
        state.unknown += 1;
        return;
    }
    if state.queue.len() < USER_QUEUE_SAMPLES {
        state.queue.push_back(*sample);
    } else if let Some(sensor) = state.sensor(sample.sensor_id) {
        sensor.statistics.dropped += 1;
    }
    while !state.queue.is_empty() {
        let paired = notify.request_return_ex(NtStatus::SUCCESS, |request| {
            complete_parked(&mut state, request);
        });
        if paired.is_err() {
            break;
        }
    }
}

/// The output callback's part (`DISPATCH_LEVEL`, allocates nothing): count, copy, queue.
fn arrived(state: &Shared, worker: &ThreadedBufferQueue, sample: &SensorSample) {
    {
        let mut state = state.lock();
        let Some(sensor) = state.sensor(sample.sensor_id) else {
            state.unknown += 1;
            return;
        };
        let s = &mut sensor.statistics;
        s.received += 1;
        s.last_sequence = s.last_sequence.max(sample.sequence);
    }
    let record = HubSample {
        sensor_id: sample.sensor_id,
        value: sample.value,
        sequence: sample.sequence,
        timestamp_100ns: sample.timestamp_100ns,
    };
    let queued = worker.fetch().and_then(|mut buffer| {
        buffer.data_mut()[..HubSample::SIZE].copy_from_slice(&record.to_bytes());
        worker.enqueue(buffer).map_err(|error| error.status)
    });
    if queued.is_err()
        && let Some(sensor) = state.lock().sensor(sample.sensor_id)
    {
        sensor.statistics.dropped += 1;
    }
}

fn streamer_config(
    state: Shared,
    worker: Arc<ThreadedBufferQueue>,
) -> ContinuousRequestTargetConfig {
    ContinuousRequestTargetConfig {
        continuous_request_count: READS_PER_SENSOR,
        buffer_count_output: READS_PER_SENSOR,
        buffer_output_size: SensorSample::SIZE,
        request_type: RequestType::Ioctl,
        ioctl: IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE,
        mode: Mode::Automatic,
        buffer_output: Some(Box::new(
            move |output: &mut Option<OutputBuffer>, status| {
                let sample = output
                    .as_ref()
                    .and_then(|buffer| SensorSample::from_bytes(buffer.data()));
                match sample {
                    Some(sample) if status.is_success() => {
                        arrived(&state, &worker, &sample);
                        BufferDisposition::ContinuousRequestTargetAndContinueStreaming
                    }
                    // Cancelled (stop, power-down, removal) or failed: this stream stops; D0Entry,
                    // a cancelled query-remove or the next arrival starts it again.
                    _ => BufferDisposition::ContinuousRequestTargetAndStopStreaming,
                }
            },
        )),
        ..ContinuousRequestTargetConfig::default()
    }
}

/// A sensor's state change (`PASSIVE_LEVEL`).
fn state_changed(
    state: &Shared,
    worker: &ThreadedBufferQueue,
    module: &DeviceInterfaceMultipleTargetNode,
    target: Target,
    change: TargetState,
) -> Result<(), NtStatus> {
    match change {
        TargetState::Open => {
            // Who is it? Its first sample says (and is the first of its stream).
            let mut bytes = [0u8; SensorSample::SIZE];
            let read = module.send_synchronously(
                target,
                &[],
                &mut bytes,
                RequestType::Ioctl,
                IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE,
                PROBE_TIMEOUT_MS,
            )?;
            let sample = SensorSample::from_bytes(&bytes[..read.min(SensorSample::SIZE)])
                .filter(|sample| sample.sensor_id != 0)
                .ok_or(NtStatus::DEVICE_NOT_READY)?;
            state.lock().admit(sample.sensor_id, target)?;
            dmf_trace!(
                TraceLevel::Info,
                MODULE,
                "sensor {} connected",
                sample.sensor_id
            );
            arrived(state, worker, &sample);
        }
        TargetState::QueryRemove => {
            if let Some(sensor) = state.lock().by_target(target) {
                sensor.statistics.connected = 0;
            }
        }
        TargetState::QueryRemoveCancelled => {
            if let Some(sensor) = state.lock().by_target(target) {
                sensor.statistics.connected = 1;
                sensor.statistics.connections += 1;
            }
        }
        TargetState::Close | TargetState::QueryRemoveComplete => {
            if let Some(sensor) = state.lock().by_target(target) {
                sensor.target = None;
                sensor.statistics.connected = 0;
                dmf_trace!(
                    TraceLevel::Info,
                    MODULE,
                    "sensor {} left",
                    sensor.statistics.sensor_id
                );
            }
        }
    }
    Ok(())
}

fn sensors_config(
    state: &Shared,
    worker: &Arc<ThreadedBufferQueue>,
) -> DeviceInterfaceMultipleTargetConfig {
    let on_state = Arc::clone(state);
    let on_state_worker = Arc::clone(worker);
    DeviceInterfaceMultipleTargetConfig {
        module_open_option: PnpRegisterWhen::PrepareHardware,
        device_interface_multiple_target_guid: GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR,
        continuous_request_target_config: streamer_config(Arc::clone(state), Arc::clone(worker)),
        on_state_change_ex: Some(Box::new(move |module, target, change| {
            state_changed(&on_state, &on_state_worker, module, target, change)
        })),
        ..DeviceInterfaceMultipleTargetConfig::default()
    }
}

/// The device's `PnP`/power handler.
struct HubDevice {
    state: Shared,
    link: Arc<WaitLock<Link>>,
}

impl DeviceHandler for HubDevice {
    fn prepare_hardware(&self, device: Device) -> Result<(), NtStatus> {
        let mut link = self.link.lock();
        let notify = Arc::new(NotifyUserWithRequest::create(
            device,
            NotifyUserWithRequestConfig {
                maximum_number_of_pending_requests: MAX_PARKED_REQUESTS,
                client_driver_provider_name: Some(MODULE),
                ..NotifyUserWithRequestConfig::default()
            },
            ModuleAttributes::new(),
        )?);
        let worker = Arc::new(ThreadedBufferQueue::create(
            device.handle().cast(),
            worker_config(Arc::clone(&self.state), Arc::clone(&notify)),
            ModuleAttributes::new(),
        )?);
        worker.start()?;
        let sensors = DeviceInterfaceMultipleTarget::create(
            device,
            sensors_config(&self.state, &worker),
            ModuleAttributes::static_module(),
        )?;
        link.notify = Some(notify);
        link.worker = Some(worker);
        let mut modules = DeviceModules::new();
        modules.add(&sensors)?;
        link.sensors = Some(sensors);
        modules.post_create()?;
        link.modules = Some(modules);
        if let Some(modules) = &link.modules {
            modules.prepare_hardware()?;
        }
        Ok(())
    }

    fn release_hardware(&self, _device: Device) -> Result<(), NtStatus> {
        self.link.lock().tear_down(&self.state);
        Ok(())
    }

    fn d0_entry(&self, _device: Device, previous: WDF_POWER_DEVICE_STATE) -> Result<(), NtStatus> {
        let link = self.link.lock();
        if let Some(modules) = &link.modules {
            modules.d0_entry(PowerState::from_raw(previous))?;
        }
        if let Some(sensors) = &link.sensors {
            for target in Link::targets(&self.state) {
                // Already streaming (the first D0Entry follows the arrivals) or gone: fine.
                let _ = sensors.stream_start(target);
            }
        }
        Ok(())
    }

    fn d0_exit(&self, _device: Device, target: WDF_POWER_DEVICE_STATE) -> Result<(), NtStatus> {
        let link = self.link.lock();
        if let Some(sensors) = &link.sensors {
            for sensor in Link::targets(&self.state) {
                sensors.stream_stop(sensor);
            }
        }
        if let Some(modules) = &link.modules {
            modules.d0_exit(PowerState::from_raw(target));
        }
        Ok(())
    }

    fn surprise_removal(&self, _device: Device) {
        if let Some(modules) = &self.link.lock().modules {
            modules.surprise_removal();
        }
    }

    fn query_remove(&self, _device: Device) -> Result<(), NtStatus> {
        let link = self.link.lock();
        link.modules
            .as_ref()
            .map_or(Ok(()), DeviceModules::query_remove)
    }

    fn cleanup(&self, _device: Device) {
        // Normally done by ReleaseHardware already.
        self.link.lock().tear_down(&self.state);
    }
}

/// The default queue: `WAIT_SAMPLES` and `GET_SENSORS` (user mode, `PASSIVE_LEVEL`).
struct HubQueue {
    state: Shared,
    link: Arc<WaitLock<Link>>,
}

impl HubQueue {
    fn wait_samples(&self, mut request: QueueRequest) {
        // Too small for one sample: refused before anything is taken.
        if let Err(status) = request.output_buffer(HubSample::SIZE) {
            return request.complete(status);
        }
        let notify = self.link.lock().notify.clone();
        let Some(notify) = notify else {
            return request.complete(NtStatus::INVALID_DEVICE_STATE);
        };
        // Under the state lock: the worker pairs under it too, so a request is either given
        // waiting samples now or parked before the worker looks for parked requests.
        let mut state = self.state.lock();
        if state.queue.is_empty() {
            if let Err(rejected) = notify.event_request_add(request) {
                drop(state);
                rejected.complete();
            }
            return;
        }
        let written = match request.output_buffer(HubSample::SIZE) {
            Ok(output) => state.drain_into(output),
            Err(_) => 0,
        };
        drop(state);
        request.complete_with_information(NtStatus::SUCCESS, written);
    }

    fn get_sensors(&self, mut request: QueueRequest) {
        let output = match request.output_buffer(SensorsHeader::SIZE) {
            Ok(output) => output,
            Err(status) => return request.complete(status),
        };
        let room = (output.len() - SensorsHeader::SIZE) / SensorStatistics::SIZE;
        let state = self.state.lock();
        let entries = state.sensors.iter().take(room);
        let mut written = SensorsHeader::SIZE;
        for (sensor, slot) in
            entries.zip(output[SensorsHeader::SIZE..].chunks_exact_mut(SensorStatistics::SIZE))
        {
            slot.copy_from_slice(&sensor.statistics.to_bytes());
            written += SensorStatistics::SIZE;
        }
        let header = SensorsHeader {
            total: state.sensors.len() as u32,
            returned: ((written - SensorsHeader::SIZE) / SensorStatistics::SIZE) as u32,
        };
        drop(state);
        output[..SensorsHeader::SIZE].copy_from_slice(&header.to_bytes());
        request.complete_with_information(NtStatus::SUCCESS, written);
    }
}

impl IoQueueHandler for HubQueue {
    fn device_control(
        &self,
        _queue: Queue,
        request: QueueRequest,
        ioctl: u32,
        _input_length: usize,
        _output_length: usize,
    ) {
        match ioctl {
            IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES => self.wait_samples(request),
            IOCTL_DMF_SAMPLE_HUB_GET_SENSORS => self.get_sensors(request),
            _ => request.complete(NtStatus::INVALID_DEVICE_REQUEST),
        }
    }
}
