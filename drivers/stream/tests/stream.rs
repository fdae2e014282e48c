//! The stream driver loaded in the simulation next to the sensor driver: it finds the sensor
//! through its interface, streams samples, survives power cycles, stops cleanly when the sensor
//! goes mid-stream, lets go of it for a query-remove and takes it back when the removal is
//! cancelled, and reconnects when one comes back. (The simulation is the framework on
//! non-Windows hosts only.)
#![cfg(not(windows))]

use std::time::{Duration, Instant};

use dmf::wdf::NtStatus;
use dmf_sample_stream::interface::{
    self as stream_interface, GUID_DEVINTERFACE_DMF_SAMPLE_STREAM,
    IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS, StreamStatistics,
};
use wdk_sys::sim::Session;
use wdk_sys::sim::pnp::{Device, Driver};
use wdk_sys::sim::target::{ProgrammableTarget, Response};
use wdk_sys::sim::user::File;

fn statistics(file: &File) -> StreamStatistics {
    let mut output = [0u8; StreamStatistics::SIZE];
    assert_eq!(
        file.device_io_control(IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS, &[], &mut output),
        Ok(StreamStatistics::SIZE)
    );
    StreamStatistics::from_bytes(&output).expect("whole statistics")
}

/// Polls the statistics until `condition` holds (bounded: panics after 10 s).
fn wait_for(
    file: &File,
    what: &str,
    condition: impl Fn(&StreamStatistics) -> bool,
) -> StreamStatistics {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = statistics(file);
        if condition(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct Rig {
    sensor_driver: Driver,
    stream_driver: Driver,
    stream: Device,
    file: File,
}

fn boot() -> Rig {
    let sensor_driver = Driver::load(dmf_sample_sensor::driver_entry).expect("sensor loads");
    let stream_driver = Driver::load(dmf_sample_stream::driver_entry).expect("stream loads");
    let stream = stream_driver.add_device().expect("stream device added");
    stream.start().expect("stream device started");
    let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_STREAM).expect("opens");
    Rig {
        sensor_driver,
        stream_driver,
        stream,
        file,
    }
}

impl Rig {
    fn add_sensor(&self) -> Device {
        let sensor = self.sensor_driver.add_device().expect("sensor added");
        sensor.start().expect("sensor started");
        sensor
    }

    fn unload(self) {
        drop(self.file);
        self.stream.remove();
        self.stream_driver.unload();
        self.sensor_driver.unload();
    }
}

#[test]
fn the_consumed_interface_matches_the_sensor_driver() {
    use dmf_sample_sensor::interface as sensor;
    let fields = |g: &wdk_sys::GUID| (g.Data1, g.Data2, g.Data3, g.Data4);
    assert_eq!(
        fields(&stream_interface::GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR),
        fields(&sensor::GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR)
    );
    assert_eq!(
        stream_interface::IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE,
        sensor::IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE
    );
    let sample = sensor::SensorSample {
        sequence: 9,
        timestamp_100ns: 0x0102_0304_0506_0708,
        value: -4,
        sensor_id: 0,
    };
    let ours = stream_interface::SensorSample::from_bytes(&sample.to_bytes()).unwrap();
    assert_eq!(ours.to_bytes(), sample.to_bytes());
    assert_eq!(IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS, 0x0022_6040);
    let stats = StreamStatistics {
        samples: 1,
        errors: 2,
        cancelled: 3,
        reordered: 4,
        duplicates: 6,
        connections: 5,
        connected: 1,
        last_sample: ours,
    };
    assert_eq!(StreamStatistics::from_bytes(&stats.to_bytes()), Some(stats));
    assert_eq!(
        StreamStatistics::from_bytes(&[0; StreamStatistics::SIZE - 1]),
        None
    );
}

#[test]
fn streams_from_a_sensor_that_arrives_later_and_counts_every_sample() {
    let session = Session::begin();
    let rig = boot();
    let idle = statistics(&rig.file);
    assert_eq!(idle, StreamStatistics::default(), "nothing before a sensor");
    let mut short = [0u8; StreamStatistics::SIZE - 1];
    assert_eq!(
        rig.file
            .device_io_control(IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS, &[], &mut short),
        Err(NtStatus::BUFFER_TOO_SMALL.raw())
    );

    let sensor = rig.add_sensor();
    let first = wait_for(&rig.file, "samples", |s| s.samples >= 100);
    assert_eq!((first.connections, first.connected), (1, 1));
    let later = wait_for(&rig.file, "more samples", |s| {
        s.samples >= first.samples + 100
    });
    assert!(later.last_sample.sequence > first.last_sample.sequence);
    assert_eq!(
        later.last_sample.value,
        dmf_sample_sensor::interface::SensorSample::simulated_value(later.last_sample.sequence)
    );
    assert_eq!((later.errors, later.duplicates), (0, 0));

    // Removing the stream device stops streaming: every sample the sensor produced was
    // received exactly once.
    let file = rig.file;
    rig.stream.remove();
    drop(file);
    rig.stream_driver.unload();
    let reader =
        File::open_interface(&dmf_sample_sensor::interface::GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR)
            .expect("sensor opens");
    let mut output = [0u8; 24];
    reader
        .device_io_control(
            dmf_sample_sensor::interface::IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE,
            &[],
            &mut output,
        )
        .expect("reads");
    let next = dmf_sample_sensor::interface::SensorSample::from_bytes(&output).unwrap();
    assert!(next.sequence > later.samples);
    drop(reader);
    sensor.remove();
    rig.sensor_driver.unload();
    session.end();
}

#[test]
fn an_existing_sensor_is_found_and_sequence_numbers_have_no_gaps() {
    let session = Session::begin();
    let sensor_driver = Driver::load(dmf_sample_sensor::driver_entry).expect("sensor loads");
    let sensor = sensor_driver.add_device().expect("sensor added");
    sensor.start().expect("sensor started");
    let stream_driver = Driver::load(dmf_sample_stream::driver_entry).expect("stream loads");
    let stream = stream_driver.add_device().expect("stream added");
    stream.start().expect("stream started");
    let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_STREAM).expect("opens");
    wait_for(&file, "samples", |s| s.samples >= 200);
    // Power down: streaming stops (in-flight requests are purged), and nothing more arrives.
    stream.power_down();
    let stopped = statistics(&file);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        statistics(&file).samples,
        stopped.samples,
        "no sample while in D3"
    );
    // No sample came twice, and every sample the sensor produced was received except at most
    // one per streaming request (a sample taken for a request whose cancellation won).
    assert!(stopped.last_sample.sequence >= stopped.samples);
    assert!(
        stopped.last_sample.sequence - stopped.samples
            <= dmf_sample_stream::STREAMING_REQUESTS as u64,
        "{stopped:?}"
    );
    assert_eq!((stopped.errors, stopped.duplicates), (0, 0));
    stream.power_up().expect("powered up");
    let resumed = wait_for(&file, "samples after power-up", |s| {
        s.samples >= stopped.samples + 200
    });
    assert_eq!(resumed.connections, 1, "the same sensor, not reopened");
    drop(file);
    stream.remove();
    stream_driver.unload();
    sensor.remove();
    sensor_driver.unload();
    session.end();
}

#[test]
fn sensor_power_cycle_holds_the_stream_and_it_resumes() {
    let session = Session::begin();
    let rig = boot();
    let sensor = rig.add_sensor();
    let before = wait_for(&rig.file, "samples", |s| s.samples >= 50);
    sensor.power_down();
    // The sensor's power-managed queue holds the requests: once those it had started are
    // back, the stream pauses, and nothing fails.
    std::thread::sleep(Duration::from_millis(20));
    let paused = statistics(&rig.file);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(statistics(&rig.file).samples, paused.samples);
    sensor.power_up().expect("sensor powered up");
    let after = wait_for(&rig.file, "samples after the sensor's power cycle", |s| {
        s.samples >= paused.samples + 50
    });
    assert!(after.samples > before.samples);
    assert_eq!((after.errors, after.cancelled, after.duplicates), (0, 0, 0));
    sensor.remove();
    wait_for(&rig.file, "disconnect", |s| s.connected == 0);
    rig.unload();
    session.end();
}

#[test]
fn sensor_surprise_removed_mid_stream_then_another_arrives() {
    let session = Session::begin();
    let rig = boot();
    let first = rig.add_sensor();
    let streaming = wait_for(&rig.file, "samples", |s| s.samples >= 100);
    first.surprise_remove();
    let gone = wait_for(&rig.file, "disconnect", |s| s.connected == 0);
    assert!(gone.samples >= streaming.samples);
    // The removal ended the streams (failed or cancelled completions), nothing else counted.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        statistics(&rig.file).samples,
        gone.samples,
        "no sample after removal"
    );
    first.remove();

    let second = rig.add_sensor();
    let again = wait_for(&rig.file, "samples from the second sensor", |s| {
        s.connections == 2 && s.samples >= gone.samples + 100
    });
    assert_eq!(again.connected, 1);
    // The second sensor numbers from 1 again; the check restarted with it. (Up to one sample
    // per streaming request may still be on its way.)
    let from_second = again.samples - gone.samples;
    assert!(
        again.last_sample.sequence <= from_second + dmf_sample_stream::STREAMING_REQUESTS as u64,
        "{again:?}"
    );
    assert_eq!(again.duplicates, 0);
    second.remove();
    wait_for(&rig.file, "disconnect", |s| s.connected == 0);
    rig.unload();
    session.end();
}

#[test]
fn stream_device_surprise_removed_while_streaming() {
    let session = Session::begin();
    let rig = boot();
    let sensor = rig.add_sensor();
    wait_for(&rig.file, "samples", |s| s.samples >= 50);
    rig.stream.surprise_remove();
    sensor.remove();
    rig.unload();
    session.end();
}

#[test]
fn streams_from_a_programmable_target_with_the_sensor_interface() {
    let session = Session::begin();
    let target =
        ProgrammableTarget::with_interface(stream_interface::GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR);
    target.set_responder(|received| {
        let sample = stream_interface::SensorSample {
            sequence: received.sequence,
            timestamp_100ns: 0,
            value: 1,
            reserved: 0,
        };
        Response::data(&sample.to_bytes())
    });
    let stream_driver = Driver::load(dmf_sample_stream::driver_entry).expect("loads");
    let stream = stream_driver.add_device().expect("added");
    stream.start().expect("started");
    let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_STREAM).expect("opens");
    let stats = wait_for(&file, "samples", |s| s.samples >= 500);
    assert_eq!(target.open_count(), 1);
    assert_eq!(stats.errors, 0);
    let received = target.last_received().expect("requests arrived");
    assert_eq!(
        received.ioctl,
        stream_interface::IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE
    );
    assert_eq!(received.output_length, stream_interface::SensorSample::SIZE);
    // A failing sensor: each stream ends at its first failure and counts it.
    target.set_responder(|_| Response::status(NtStatus::DEVICE_BUSY.raw()));
    let failed = wait_for(&file, "failures", |s| {
        s.errors == dmf_sample_stream::STREAMING_REQUESTS as u64
    });
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(statistics(&file), failed, "every stream ended");
    target.surprise_remove();
    wait_for(&file, "disconnect", |s| s.connected == 0);
    assert_eq!(target.open_count(), 0);
    drop(file);
    stream.remove();
    stream_driver.unload();
    drop(target);
    session.end();
}

/// Sets the latency of every sensor driver's device through its interface.
fn set_sensor_latency(microseconds: u32) {
    use dmf_sample_sensor::interface as sensor;
    for name in wdk_sys::sim::user::interfaces(&sensor::GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR) {
        let file = File::open(&name).expect("sensor opens");
        assert_eq!(
            file.device_io_control(
                sensor::IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY,
                &microseconds.to_ne_bytes(),
                &mut []
            ),
            Ok(0)
        );
    }
}

/// The stream against the sensor driver answering at once: the sensor completes each read in
/// its queue callback, inside the stream's `WdfRequestSend`, so the stream's completion routine
/// runs inline. Streaming must loop (completion nesting stays bounded), count every sample
/// once, stop cleanly in the middle of it and leave nothing behind.
#[test]
fn streams_from_the_sensor_completing_inline() {
    let session = Session::begin();
    let rig = boot();
    let sensor = rig.add_sensor();
    let first = wait_for(&rig.file, "samples", |s| s.samples >= 5_000);
    assert_eq!((first.errors, first.duplicates, first.cancelled), (0, 0, 0));
    // Samples come from four requests whose completions may be counted on different threads,
    // so a few may be counted out of order, but none is lost: every sample the sensor took is
    // counted, except those whose completion is being counted right now (at most one per
    // request).
    assert!(first.last_sample.sequence >= first.samples);
    assert!(
        first.last_sample.sequence - first.samples <= dmf_sample_stream::STREAMING_REQUESTS as u64,
        "{first:?}"
    );
    // The stream's power cycle in the middle of inline streaming: stopped, purged, restarted.
    rig.stream.power_down();
    let stopped = statistics(&rig.file);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        statistics(&rig.file).samples,
        stopped.samples,
        "nothing in D3"
    );
    rig.stream.power_up().expect("powered up");
    let resumed = wait_for(&rig.file, "samples after power-up", |s| {
        s.samples >= stopped.samples + 5_000
    });
    assert_eq!((resumed.errors, resumed.duplicates), (0, 0));
    let depth = wdk_sys::sim::completion::high_water();
    eprintln!(
        "inline sensor: {} samples, {} reordered, completion nesting high-water {depth}",
        resumed.samples, resumed.reordered
    );
    assert!(depth <= 2, "completion routines nested {depth} deep");
    sensor.remove();
    let gone = wait_for(&rig.file, "disconnect", |s| s.connected == 0);
    assert_eq!((gone.errors, gone.duplicates), (0, 0));
    rig.unload();
    session.end();
}

/// The stream against the sensor driver with a latency: the sensor's timer (a DPC) answers one
/// read per period and the stream resends from that DPC, so the sensor's queue callback runs at
/// `DISPATCH_LEVEL` and must not wait (the verifier would report it). One timer answers them
/// all, so the samples arrive strictly in order and none is lost; the sensor's power cycle
/// holds the reads and resumes them; removing the sensor cancels what it holds.
#[test]
fn streams_from_the_sensor_with_latency() {
    const LATENCY_US: u32 = 500;
    let session = Session::begin();
    let rig = boot();
    let sensor = rig.add_sensor();
    set_sensor_latency(LATENCY_US);
    let start = wait_for(&rig.file, "samples", |s| s.samples >= 10);
    let started = Instant::now();
    let later = wait_for(&rig.file, "200 more samples", |s| {
        s.samples >= start.samples + 200
    });
    assert!(
        started.elapsed() >= Duration::from_micros(200 * u64::from(LATENCY_US)),
        "one sample per period: 200 samples in {:?}",
        started.elapsed()
    );
    assert_eq!(
        (
            later.errors,
            later.cancelled,
            later.duplicates,
            later.reordered
        ),
        (0, 0, 0, 0),
        "{later:?}"
    );
    assert_eq!(
        later.last_sample.sequence, later.samples,
        "every sample the sensor took was counted, in order"
    );
    // The sensor's power cycle: the reads it holds wait, then streaming resumes in order.
    sensor.power_down();
    std::thread::sleep(Duration::from_millis(20));
    let paused = statistics(&rig.file);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        statistics(&rig.file).samples,
        paused.samples,
        "no sample in D3"
    );
    sensor.power_up().expect("sensor powered up");
    let resumed = wait_for(&rig.file, "samples after the sensor's power cycle", |s| {
        s.samples >= paused.samples + 100
    });
    assert_eq!(
        (
            resumed.errors,
            resumed.cancelled,
            resumed.duplicates,
            resumed.reordered
        ),
        (0, 0, 0, 0),
        "{resumed:?}"
    );
    assert_eq!(resumed.last_sample.sequence, resumed.samples);
    // Removal with every streaming request waiting in the sensor: each is cancelled, counted,
    // and the stream ends.
    set_sensor_latency(dmf_sample_sensor::interface::MAX_LATENCY_MICROSECONDS);
    std::thread::sleep(Duration::from_millis(5));
    let held = statistics(&rig.file);
    sensor.surprise_remove();
    let gone = wait_for(&rig.file, "disconnect", |s| s.connected == 0);
    assert!(
        gone.cancelled + gone.errors <= dmf_sample_stream::STREAMING_REQUESTS as u64
            && gone.samples <= held.samples + 1,
        "{gone:?}"
    );
    assert_eq!(gone.duplicates, 0);
    sensor.remove();
    rig.unload();
    // Ending the session checks for verifier reports (a wait at DISPATCH_LEVEL among them) and
    // for anything left behind.
    session.end();
}

/// The sensor's orderly removal is queried and then cancelled by the `PnP` manager: the stream
/// lets go of the sensor for the query (closed, nothing streams), reopens it on the cancel and
/// streams again from the same sensor (not a new connection); a query that is not cancelled
/// ends with the sensor's removal and a disconnect.
#[test]
fn sensor_query_remove_cancelled_then_completed() {
    let session = Session::begin();
    let rig = boot();
    let sensor = rig.add_sensor();
    let before = wait_for(&rig.file, "samples", |s| s.samples >= 100);
    assert!(sensor.query_remove(), "the stream agrees to the removal");
    let queried = wait_for(&rig.file, "closed for the query", |s| s.connected == 0);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        statistics(&rig.file).samples,
        queried.samples,
        "nothing streams while the removal is pending"
    );
    sensor.cancel_remove();
    let resumed = wait_for(&rig.file, "samples after the cancel", |s| {
        s.connected == 1 && s.samples >= queried.samples + 100
    });
    assert_eq!(resumed.connections, 1, "the same sensor, reopened");
    assert!(resumed.samples > before.samples);
    assert_eq!((resumed.errors, resumed.duplicates), (0, 0), "{resumed:?}");
    assert!(sensor.query_remove());
    wait_for(&rig.file, "closed for the query", |s| s.connected == 0);
    sensor.remove();
    let gone = statistics(&rig.file);
    assert_eq!((gone.connected, gone.connections), (0, 1));
    // The next sensor connects.
    let second = rig.add_sensor();
    wait_for(&rig.file, "the next sensor", |s| {
        s.connections == 2 && s.connected == 1 && s.samples >= gone.samples + 50
    });
    second.remove();
    wait_for(&rig.file, "disconnect", |s| s.connected == 0);
    rig.unload();
    session.end();
}

/// Another driver vetoes the sensor's query-remove after the stream agreed: the `PnP` manager
/// cancels the removal, and the stream reopens the sensor and resumes; a query that nobody
/// vetoes then removes it.
#[test]
fn sensor_query_remove_vetoed_by_another_driver_resumes_the_stream() {
    let session = Session::begin();
    let target =
        ProgrammableTarget::with_interface(stream_interface::GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR);
    target.set_responder(|received| {
        let sample = stream_interface::SensorSample {
            sequence: received.sequence,
            timestamp_100ns: 0,
            value: 1,
            reserved: 0,
        };
        Response::data(&sample.to_bytes()).from_worker()
    });
    let stream_driver = Driver::load(dmf_sample_stream::driver_entry).expect("loads");
    let stream = stream_driver.add_device().expect("added");
    stream.start().expect("started");
    let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_STREAM).expect("opens");
    wait_for(&file, "samples", |s| s.samples >= 100);
    assert!(target.query_remove_pending(), "the stream agrees");
    let queried = wait_for(&file, "closed for the query", |s| s.connected == 0);
    assert_eq!(target.open_count(), 0);
    // The veto elsewhere: the PnP manager cancels the removal.
    target.remove_canceled();
    let resumed = wait_for(&file, "samples after the veto", |s| {
        s.connected == 1 && s.samples >= queried.samples + 100
    });
    assert_eq!(target.open_count(), 1);
    assert_eq!((resumed.connections, resumed.errors), (1, 0), "{resumed:?}");
    assert!(target.query_remove(), "nobody vetoes now");
    let gone = wait_for(&file, "disconnect", |s| s.connected == 0);
    assert_eq!(gone.connections, 1);
    assert_eq!(target.open_count(), 0);
    drop(file);
    stream.remove();
    stream_driver.unload();
    drop(target);
    session.end();
}
