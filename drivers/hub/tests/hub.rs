//! The hub driver loaded in the simulation next to the sensor driver: it finds every sensor,
//! streams from each, and hands their samples to user mode in per-sensor order through parked
//! `WAIT_SAMPLES` requests; sensors come and go (orderly, surprise, query-remove agreed or
//! vetoed) while the others keep streaming; bad requests get their status; a power cycle and
//! a removal with requests parked and streams live leave nothing behind. (The simulation is
//! the framework on non-Windows hosts only.)
#![cfg(not(windows))]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dmf::wdf::NtStatus;
use dmf_sample_hub::interface::{
    self as hub, GUID_DEVINTERFACE_DMF_SAMPLE_HUB, HubSample, IOCTL_DMF_SAMPLE_HUB_GET_SENSORS,
    IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES, MAX_PARKED_REQUESTS, SensorStatistics, SensorsHeader,
};
use dmf_sample_sensor::interface::IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY;
use wdk_sys::sim::pnp::{Device, Driver};
use wdk_sys::sim::target::{ProgrammableTarget, Response};
use wdk_sys::sim::user::{File, Overlapped};
use wdk_sys::sim::{self, Session};

/// Per-sample latency of the test sensors (1000 samples/s each).
const LATENCY_US: u32 = 1_000;

/// A batch buffer: up to 64 samples per completion.
const BATCH: usize = 64 * HubSample::SIZE;

struct Rig {
    sensor_driver: Driver,
    hub_driver: Driver,
    hub: Device,
    file: File,
}

fn set_latency(sensor: &Device, microseconds: u32) {
    let name = sensor.names().into_iter().next().expect("sensor interface");
    let file = File::open(&name).expect("sensor opens");
    file.device_io_control(
        IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY,
        &microseconds.to_ne_bytes(),
        &mut [],
    )
    .expect("latency set");
}

fn boot(sensors: usize) -> (Rig, Vec<Device>) {
    let sensor_driver = Driver::load(dmf_sample_sensor::driver_entry).expect("sensor loads");
    let devices: Vec<Device> = (0..sensors)
        .map(|_| {
            let device = sensor_driver.add_device().expect("sensor added");
            device.start().expect("sensor started");
            set_latency(&device, LATENCY_US);
            device
        })
        .collect();
    let hub_driver = Driver::load(dmf_sample_hub::driver_entry).expect("hub loads");
    let hub = hub_driver.add_device().expect("hub added");
    hub.start().expect("hub started");
    let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_HUB).expect("hub opens");
    (
        Rig {
            sensor_driver,
            hub_driver,
            hub,
            file,
        },
        devices,
    )
}

impl Rig {
    fn add_sensor(&self) -> Device {
        let device = self.sensor_driver.add_device().expect("sensor added");
        device.start().expect("sensor started");
        set_latency(&device, LATENCY_US);
        device
    }

    fn unload(self) {
        drop(self.file);
        self.hub.remove();
        self.hub_driver.unload();
        self.sensor_driver.unload();
    }
}

fn sensors(file: &File) -> Vec<SensorStatistics> {
    let mut output = vec![0u8; SensorsHeader::SIZE + hub::MAX_SENSORS * SensorStatistics::SIZE];
    let length = file
        .device_io_control(IOCTL_DMF_SAMPLE_HUB_GET_SENSORS, &[], &mut output)
        .expect("GET_SENSORS succeeds");
    let header = SensorsHeader::from_bytes(&output).expect("header");
    assert_eq!(header.total, header.returned, "every sensor fits");
    let entries: Vec<SensorStatistics> = output[SensorsHeader::SIZE..length]
        .chunks_exact(SensorStatistics::SIZE)
        .filter_map(SensorStatistics::from_bytes)
        .collect();
    assert_eq!(entries.len(), header.returned as usize);
    entries
}

/// Polls the sensor table until `condition` holds (bounded: panics after 10 s).
fn wait_for(
    file: &File,
    what: &str,
    condition: impl Fn(&[SensorStatistics]) -> bool,
) -> Vec<SensorStatistics> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let table = sensors(file);
        if condition(&table) {
            return table;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {table:#?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn connected(table: &[SensorStatistics]) -> usize {
    table.iter().filter(|s| s.connected == 1).count()
}

/// What user mode received, per sensor, checked as it arrives: in order, no duplicates.
#[derive(Default)]
struct Received {
    sequences: HashMap<u32, Vec<u64>>,
}

impl Received {
    fn take(&mut self, output: &[u8], length: usize) {
        assert_eq!(length % HubSample::SIZE, 0, "whole samples");
        for bytes in output[..length].chunks_exact(HubSample::SIZE) {
            let sample = HubSample::from_bytes(bytes).expect("sample");
            let list = self.sequences.entry(sample.sensor_id).or_default();
            if let Some(&last) = list.last() {
                assert!(
                    sample.sequence > last,
                    "sensor {}: {} after {last}",
                    sample.sensor_id,
                    sample.sequence
                );
            }
            list.push(sample.sequence);
        }
    }

    fn count(&self, sensor_id: u32) -> u64 {
        self.sequences.get(&sensor_id).map_or(0, |s| s.len() as u64)
    }
}

/// Keeps `depth` `WAIT_SAMPLES` requests parked, reaping them oldest first (the order the hub completes
/// them in).
struct Reader<'a> {
    file: &'a File,
    parked: std::collections::VecDeque<Overlapped>,
    received: Received,
}

impl<'a> Reader<'a> {
    fn new(file: &'a File, depth: usize) -> Self {
        let mut reader = Self {
            file,
            parked: std::collections::VecDeque::new(),
            received: Received::default(),
        };
        for _ in 0..depth {
            reader.issue();
        }
        reader
    }

    fn issue(&mut self) {
        self.parked
            .push_back(self.file.device_io_control_overlapped(
                IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES,
                &[],
                BATCH,
            ));
    }

    /// Reaps completed requests (oldest first) for `duration`, reissuing each.
    fn run_for(&mut self, duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            self.reap(Duration::from_millis(5));
        }
    }

    fn reap(&mut self, timeout: Duration) -> bool {
        let Some(oldest) = self.parked.front() else {
            return false;
        };
        let Some((status, length)) = oldest.wait(timeout) else {
            return false;
        };
        assert_eq!(status, NtStatus::SUCCESS.raw(), "WAIT_SAMPLES succeeds");
        let done = self.parked.pop_front().expect("oldest");
        self.received.take(done.output(), length);
        self.issue();
        true
    }

    /// Reaps until user mode holds every sample the hub received that it did not drop.
    fn drain(&mut self) -> Vec<SensorStatistics> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let table = sensors(self.file);
            if table.iter().all(|s| {
                s.received == s.delivered + s.dropped
                    && s.delivered == self.received.count(s.sensor_id)
            }) {
                return table;
            }
            assert!(Instant::now() < deadline, "undelivered samples: {table:#?}");
            self.reap(Duration::from_millis(5));
        }
    }

    /// Cancels what is still parked; each completes exactly once (cancelled, or with samples
    /// that raced the cancel, which are taken).
    fn close(mut self) -> Received {
        for request in &self.parked {
            let _ = request.cancel();
        }
        for request in self.parked.drain(..) {
            let (status, length) = request.wait(Duration::from_secs(10)).expect("completes");
            if status == NtStatus::SUCCESS.raw() {
                self.received.take(request.output(), length);
            } else {
                assert_eq!(status, NtStatus::CANCELLED.raw());
            }
        }
        self.received
    }
}

/// Every sample the hub received is accounted for: delivered once, in order, or dropped.
fn assert_accounted(table: &[SensorStatistics], received: &Received) {
    for s in table {
        assert_eq!(s.received, s.delivered + s.dropped, "{s:?}");
        assert_eq!(s.delivered, received.count(s.sensor_id), "{s:?}");
        assert_eq!(
            s.last_sequence, s.received,
            "no sample lost before the hub: {s:?}"
        );
        assert_eq!(s.gaps, s.dropped.min(s.gaps), "gaps only from drops: {s:?}");
    }
}

#[test]
fn the_consumed_interface_matches_the_sensor_driver() {
    use dmf_sample_sensor::interface as sensor;
    let fields = |g: &wdk_sys::GUID| (g.Data1, g.Data2, g.Data3, g.Data4);
    assert_eq!(
        fields(&hub::GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR),
        fields(&sensor::GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR)
    );
    assert_eq!(
        hub::IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE,
        sensor::IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE
    );
    let sample = sensor::SensorSample {
        sequence: 9,
        timestamp_100ns: 0x0102_0304_0506_0708,
        value: -4,
        sensor_id: 3,
    };
    let seen = hub::SensorSample::from_bytes(&sample.to_bytes()).expect("same size");
    assert_eq!(
        (
            seen.sequence,
            seen.timestamp_100ns,
            seen.value,
            seen.sensor_id
        ),
        (9, 0x0102_0304_0506_0708, -4, 3)
    );
    assert_eq!(IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES, 0x0022_6080);
    assert_eq!(IOCTL_DMF_SAMPLE_HUB_GET_SENSORS, 0x0022_6084);
    let statistics = SensorStatistics {
        sensor_id: 1,
        connected: 1,
        received: 2,
        samples: 3,
        delivered: 4,
        dropped: 5,
        gaps: 6,
        last_sequence: 7,
        rate: 8,
        last_value: -9,
        min: -10,
        max: 11,
        mean: 12,
        connections: 13,
    };
    assert_eq!(
        SensorStatistics::from_bytes(&statistics.to_bytes()),
        Some(statistics)
    );
    let one = HubSample {
        sensor_id: 1,
        value: -2,
        sequence: 3,
        timestamp_100ns: 4,
    };
    assert_eq!(HubSample::from_bytes(&one.to_bytes()), Some(one));
}

#[test]
fn three_sensors_in_per_sensor_order_without_duplicates() {
    let session = Session::begin();
    let (rig, devices) = boot(3);
    let mut reader = Reader::new(&rig.file, 4);
    wait_for(&rig.file, "three sensors", |t| connected(t) == 3);
    reader.run_for(Duration::from_millis(300));
    for device in devices {
        device.remove();
    }
    wait_for(&rig.file, "all gone", |t| connected(t) == 0);
    let table = reader.drain();
    let received = reader.close();
    assert_eq!(table.len(), 3);
    assert_accounted(&table, &received);
    for s in &table {
        assert!(s.delivered >= 50, "{s:?}");
        assert_eq!(s.connections, 1);
        assert!(s.min <= s.mean && s.mean <= s.max, "{s:?}");
        assert!(
            (20_000..=25_000).contains(&s.min) && s.max <= 25_000,
            "{s:?}"
        );
        // Delivered in order from 1: the sequence numbers are exactly 1..=delivered when
        // nothing was dropped.
        if s.dropped == 0 {
            let list = &received.sequences[&s.sensor_id];
            assert!(list.iter().copied().eq(1..=s.delivered), "{s:?}");
        }
    }
    rig.unload();
    session.end();
}

#[test]
fn sensors_arrive_leave_and_are_surprise_removed_while_the_others_stream() {
    let session = Session::begin();
    let (rig, mut devices) = boot(2);
    let mut reader = Reader::new(&rig.file, 4);
    wait_for(&rig.file, "two sensors", |t| connected(t) == 2);
    reader.run_for(Duration::from_millis(100));
    // A third arrives.
    devices.push(rig.add_sensor());
    wait_for(&rig.file, "three sensors", |t| connected(t) == 3);
    reader.run_for(Duration::from_millis(100));
    // The first is surprise-removed: the others keep streaming.
    let first = devices.remove(0);
    first.surprise_remove();
    let after = wait_for(&rig.file, "two left", |t| connected(t) == 2);
    reader.run_for(Duration::from_millis(100));
    let later = sensors(&rig.file);
    for s in later.iter().filter(|s| s.connected == 1) {
        let before = after
            .iter()
            .find(|b| b.sensor_id == s.sensor_id)
            .expect("known");
        assert!(s.received > before.received, "{s:?} still streams");
    }
    first.remove();
    // The second leaves in order; another arrives.
    devices.remove(0).remove();
    devices.push(rig.add_sensor());
    wait_for(&rig.file, "two again", |t| {
        connected(t) == 2 && t.len() == 4
    });
    reader.run_for(Duration::from_millis(100));
    for device in devices {
        device.remove();
    }
    wait_for(&rig.file, "all gone", |t| connected(t) == 0);
    let table = reader.drain();
    let received = reader.close();
    assert_eq!(table.len(), 4, "four sensors seen");
    assert_accounted(&table, &received);
    assert!(table.iter().all(|s| s.delivered > 0));
    rig.unload();
    session.end();
}

fn programmable_sensor(sensor_id: u32) -> ProgrammableTarget {
    let target = ProgrammableTarget::with_interface(hub::GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR);
    target.set_responder(move |received| {
        let sample = hub::SensorSample {
            sequence: received.sequence,
            timestamp_100ns: received.sequence * 10_000,
            value: 21_000,
            sensor_id,
        };
        Response::data(&sample.to_bytes())
            .after(Duration::from_micros(500))
            .from_worker()
    });
    target
}

#[test]
fn a_sensor_query_remove_agreed_and_vetoed() {
    let session = Session::begin();
    let (rig, mut devices) = boot(1);
    let other = programmable_sensor(0x7000_0001);
    let mut reader = Reader::new(&rig.file, 4);
    wait_for(&rig.file, "two sensors", |t| connected(t) == 2);
    reader.run_for(Duration::from_millis(50));

    // Vetoed elsewhere after the hub agreed: the PnP manager cancels, the hub resumes.
    assert!(other.query_remove_pending(), "the hub agrees");
    let queried = wait_for(&rig.file, "closed for the query", |t| connected(t) == 1);
    assert_eq!(other.open_count(), 0);
    other.remove_canceled();
    let held = queried
        .iter()
        .find(|s| s.sensor_id == 0x7000_0001)
        .expect("known")
        .received;
    wait_for(&rig.file, "resumed", |t| {
        t.iter()
            .any(|s| s.sensor_id == 0x7000_0001 && s.connected == 1 && s.received > held + 20)
    });
    assert_eq!(other.open_count(), 1);

    // Not vetoed: the real sensor's query-remove goes through and it is removed.
    let sensor = devices.remove(0);
    assert!(sensor.query_remove(), "nobody vetoes");
    wait_for(&rig.file, "real sensor gone", |t| connected(t) == 1);
    reader.run_for(Duration::from_millis(50));
    sensor.remove();
    drop(other);
    wait_for(&rig.file, "all gone", |t| connected(t) == 0);
    let table = reader.drain();
    let received = reader.close();
    let cancelled = table
        .iter()
        .find(|s| s.sensor_id == 0x7000_0001)
        .expect("known");
    assert_eq!(cancelled.connections, 2, "reopened once after the cancel");
    for s in &table {
        assert_eq!(s.received, s.delivered + s.dropped, "{s:?}");
        assert_eq!(s.delivered, received.count(s.sensor_id), "{s:?}");
    }
    rig.unload();
    session.end();
}

#[test]
fn a_flood_of_parked_requests_past_the_limit() {
    let session = Session::begin();
    let (rig, _) = boot(0);
    let parked: Vec<Overlapped> = (0..MAX_PARKED_REQUESTS)
        .map(|_| {
            rig.file
                .device_io_control_overlapped(IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES, &[], BATCH)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    assert!(parked.iter().all(|r| !r.is_complete()), "all parked");
    // One more each time: refused, nothing lost.
    for _ in 0..50 {
        let mut output = [0u8; HubSample::SIZE];
        assert_eq!(
            rig.file
                .device_io_control(IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES, &[], &mut output),
            Err(NtStatus::INVALID_DEVICE_STATE.raw())
        );
    }
    assert!(parked.iter().all(|r| !r.is_complete()), "still parked");
    // A sensor arrives: every parked request gets samples.
    let sensor = rig.add_sensor();
    let mut received = Received::default();
    for request in &parked {
        let (status, length) = request.wait(Duration::from_secs(10)).expect("completes");
        assert_eq!(status, NtStatus::SUCCESS.raw());
        assert!(length >= HubSample::SIZE);
        received.take(request.output(), length);
    }
    sensor.remove();
    drop(parked);
    rig.unload();
    session.end();
}

#[test]
fn short_buffers_and_unknown_requests_get_their_status() {
    let session = Session::begin();
    let (rig, devices) = boot(1);
    wait_for(&rig.file, "the sensor", |t| connected(t) == 1);
    let mut short = [0u8; HubSample::SIZE - 1];
    assert_eq!(
        rig.file
            .device_io_control(IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES, &[], &mut short),
        Err(NtStatus::BUFFER_TOO_SMALL.raw())
    );
    let mut tiny = [0u8; SensorsHeader::SIZE - 1];
    assert_eq!(
        rig.file
            .device_io_control(IOCTL_DMF_SAMPLE_HUB_GET_SENSORS, &[], &mut tiny),
        Err(NtStatus::BUFFER_TOO_SMALL.raw())
    );
    let mut header_only = [0u8; SensorsHeader::SIZE];
    assert_eq!(
        rig.file
            .device_io_control(IOCTL_DMF_SAMPLE_HUB_GET_SENSORS, &[], &mut header_only),
        Ok(SensorsHeader::SIZE)
    );
    let header = SensorsHeader::from_bytes(&header_only).expect("header");
    assert_eq!((header.total, header.returned), (1, 0));
    assert_eq!(
        rig.file.device_io_control(0x0022_6fff, &[], &mut []),
        Err(NtStatus::INVALID_DEVICE_REQUEST.raw())
    );
    // A buffer of one and a half samples gets one; nothing is lost on the way.
    let mut received = Received::default();
    for _ in 0..20 {
        let mut output = [0u8; HubSample::SIZE + HubSample::SIZE / 2];
        let length = rig
            .file
            .device_io_control(IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES, &[], &mut output)
            .expect("a sample");
        assert_eq!(length, HubSample::SIZE);
        received.take(&output, length);
    }
    let id = *received.sequences.keys().next().expect("one sensor");
    assert_eq!(received.sequences[&id], (1..=20).collect::<Vec<u64>>());
    for device in devices {
        device.remove();
    }
    let mut reader = Reader::new(&rig.file, 2);
    reader.received = received;
    let table = reader.drain();
    let received = reader.close();
    assert_accounted(&table, &received);
    rig.unload();
    session.end();
}

#[test]
fn a_power_cycle_stops_and_resumes_streaming_and_parked_requests_survive() {
    let session = Session::begin();
    let (rig, devices) = boot(2);
    wait_for(&rig.file, "streaming", |t| {
        connected(t) == 2 && t.iter().all(|s| s.received > 20)
    });
    let mut reader = Reader::new(&rig.file, 4);
    reader.run_for(Duration::from_millis(50));
    let drained = reader.drain();
    rig.hub.power_down();
    // Samples the hub received before its streams stopped still reach the parked requests;
    // once they are delivered, parked requests stay parked and no sample arrives in low power.
    let _ = reader.drain();
    let low = sensors(&rig.file);
    std::thread::sleep(Duration::from_millis(50));
    let still = sensors(&rig.file);
    for (a, b) in low.iter().zip(&still) {
        assert_eq!(a.received, b.received, "no sample while powered down");
    }
    assert!(low.iter().all(|s| {
        s.received
            >= drained
                .iter()
                .find(|d| d.sensor_id == s.sensor_id)
                .expect("known")
                .received
    }));
    assert!(
        reader.parked.iter().all(|r| !r.is_complete()),
        "parked requests survive"
    );
    rig.hub.power_up().expect("powered up");
    wait_for(&rig.file, "resumed", |t| {
        t.iter()
            .zip(&still)
            .all(|(s, before)| s.received > before.received + 20)
    });
    reader.run_for(Duration::from_millis(50));
    for device in devices {
        device.remove();
    }
    wait_for(&rig.file, "all gone", |t| connected(t) == 0);
    let table = reader.drain();
    let received = reader.close();
    assert_accounted(&table, &received);
    rig.unload();
    session.end();
}

#[test]
fn hub_removed_with_requests_parked_and_streams_live() {
    let session = Session::begin();
    let (rig, devices) = boot(3);
    wait_for(&rig.file, "streaming", |t| connected(t) == 3);
    // Nobody reads: the parked requests take samples, then more park with nothing to give
    // (no wait: the hub's queue refills at once, so the last few stay parked only until the
    // next batch; some are parked at any time).
    let requests: Vec<Overlapped> = (0..MAX_PARKED_REQUESTS)
        .map(|_| {
            rig.file
                .device_io_control_overlapped(IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES, &[], BATCH)
        })
        .collect();
    // The hub goes while sensors stream and requests may be parked.
    let Rig {
        sensor_driver,
        hub_driver,
        hub,
        file,
    } = rig;
    hub.remove();
    for request in &requests {
        let (status, _) = request
            .wait(Duration::from_secs(10))
            .expect("completes once");
        assert!(
            status == NtStatus::SUCCESS.raw() || status == NtStatus::CANCELLED.raw(),
            "{status:#x}"
        );
    }
    drop(requests);
    drop(file);
    hub_driver.unload();
    for device in devices {
        device.remove();
    }
    sensor_driver.unload();
    session.wait_idle();
    assert_eq!(sim::counters().live_objects, 0);
    assert!(sim::verifier::take_reports().is_empty());
    session.end();
}

/// A fast sensor and nobody reading: the hub's queues fill and the samples that find no room
/// are counted as dropped, per sensor; what user mode then gets is in order and, with the
/// drops, accounts for every sample.
#[test]
fn a_reader_that_falls_behind_sees_drops_counted() {
    let session = Session::begin();
    let (rig, _) = boot(0);
    let sensor = rig.sensor_driver.add_device().expect("sensor added");
    sensor.start().expect("sensor started");
    // No latency: the sensor answers each read at once, far faster than nobody reads.
    let table = wait_for(&rig.file, "drops", |t| t.iter().any(|s| s.dropped > 100));
    assert_eq!(table.len(), 1);
    sensor.remove();
    wait_for(&rig.file, "gone", |t| connected(t) == 0);
    let mut reader = Reader::new(&rig.file, 4);
    let table = reader.drain();
    let received = reader.close();
    assert_accounted(&table, &received);
    let s = table[0];
    assert!(s.dropped > 100 && s.delivered > 0, "{s:?}");
    assert_eq!(
        s.last_sequence - s.delivered,
        s.dropped,
        "the missing ones are the drops"
    );
    rig.unload();
    session.end();
}

#[test]
fn hub_surprise_removed_with_requests_parked_and_streams_live() {
    let session = Session::begin();
    let (rig, devices) = boot(2);
    wait_for(&rig.file, "streaming", |t| connected(t) == 2);
    let requests: Vec<Overlapped> = (0..MAX_PARKED_REQUESTS)
        .map(|_| {
            rig.file
                .device_io_control_overlapped(IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES, &[], BATCH)
        })
        .collect();
    rig.hub.surprise_remove();
    for request in &requests {
        let (status, _) = request
            .wait(Duration::from_secs(10))
            .expect("completes once");
        assert!(
            status == NtStatus::SUCCESS.raw() || status == NtStatus::CANCELLED.raw(),
            "{status:#x}"
        );
    }
    drop(requests);
    for device in devices {
        device.remove();
    }
    rig.unload();
    session.wait_idle();
    assert_eq!(sim::counters().live_objects, 0);
    session.end();
}
