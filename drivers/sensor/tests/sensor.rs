//! The sensor driver loaded in the simulation and driven from the user-mode side: samples in
//! sequence, buffer checks, latency (reads wait for a timer, one sample per period, and stay
//! cancelable), power cycles with reads waiting, removal with reads pending, two sensors.
//! (The simulation is the framework on non-Windows hosts only.)
#![cfg(not(windows))]

use std::time::{Duration, Instant};

use dmf::wdf::NtStatus;
use dmf_sample_sensor::driver_entry;
use dmf_sample_sensor::interface::{
    GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR, IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE,
    IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY, MAX_LATENCY_MICROSECONDS, SensorSample, ctl_code,
};
use wdk_sys::sim::Session;
use wdk_sys::sim::pnp::Driver;
use wdk_sys::sim::user::{File, interfaces};
use wdk_sys::{FILE_DEVICE_UNKNOWN, FILE_READ_ACCESS, METHOD_BUFFERED, STATUS_SUCCESS};

const WAIT: Duration = Duration::from_secs(5);

fn read_sample(file: &File) -> SensorSample {
    let mut output = [0u8; SensorSample::SIZE];
    let read = file.device_io_control(IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE, &[], &mut output);
    assert_eq!(read, Ok(SensorSample::SIZE));
    SensorSample::from_bytes(&output).expect("a whole sample")
}

fn set_latency(file: &File, microseconds: u32) -> Result<usize, i32> {
    file.device_io_control(
        IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY,
        &microseconds.to_ne_bytes(),
        &mut [],
    )
}

#[test]
fn ioctl_codes_follow_ctl_code() {
    assert_eq!(IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE, 0x0022_6000);
    assert_eq!(
        IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE,
        ctl_code(
            FILE_DEVICE_UNKNOWN,
            0x800,
            METHOD_BUFFERED,
            FILE_READ_ACCESS
        )
    );
    assert_eq!(IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY, 0x0022_a004);
    let sample = SensorSample {
        sequence: 7,
        timestamp_100ns: 0x0102_0304_0506_0708,
        value: -3,
        sensor_id: 9,
    };
    assert_eq!(SensorSample::from_bytes(&sample.to_bytes()), Some(sample));
    assert_eq!(SensorSample::from_bytes(&[0; SensorSample::SIZE - 1]), None);
}

#[test]
fn samples_come_in_sequence_with_timestamps() {
    let session = Session::begin();
    let driver = Driver::load(driver_entry).expect("DriverEntry succeeds");
    let device = driver.add_device().expect("device added");
    assert!(interfaces(&GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR).is_empty());
    device.start().expect("device started");
    assert_eq!(interfaces(&GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR).len(), 1);
    let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR).expect("opens");

    let samples: Vec<SensorSample> = (0..10).map(|_| read_sample(&file)).collect();
    for (index, sample) in samples.iter().enumerate() {
        assert_eq!(sample.sequence, index as u64 + 1);
        assert_eq!(sample.value, SensorSample::simulated_value(sample.sequence));
        assert_ne!(sample.sensor_id, 0);
        assert_eq!(
            sample.sensor_id, samples[0].sensor_id,
            "one sensor, one identity"
        );
    }
    assert!(
        samples
            .windows(2)
            .all(|pair| pair[0].timestamp_100ns <= pair[1].timestamp_100ns)
    );
    // A larger buffer gets one sample and its size.
    let mut large = [0xaau8; 64];
    assert_eq!(
        file.device_io_control(IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE, &[], &mut large),
        Ok(SensorSample::SIZE)
    );
    assert_eq!(SensorSample::from_bytes(&large).unwrap().sequence, 11);

    drop(file);
    device.remove();
    driver.unload();
    session.end();
}

#[test]
fn bad_buffers_and_codes_fail_without_consuming_a_sample() {
    let session = Session::begin();
    let driver = Driver::load(driver_entry).expect("loads");
    let device = driver.add_device().expect("added");
    device.start().expect("started");
    let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR).expect("opens");

    let too_small = NtStatus::BUFFER_TOO_SMALL.raw();
    for length in [0, 1, SensorSample::SIZE - 1] {
        let mut output = vec![0u8; length];
        assert_eq!(
            file.device_io_control(IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE, &[], &mut output),
            Err(too_small),
            "output of {length} bytes"
        );
    }
    assert_eq!(
        file.device_io_control(0x0022_6ffc, &[], &mut [0u8; 64]),
        Err(NtStatus::INVALID_DEVICE_REQUEST.raw())
    );
    // Latency: too short an input, too long a latency.
    assert_eq!(
        file.device_io_control(IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY, &[1, 0], &mut []),
        Err(too_small)
    );
    assert_eq!(
        set_latency(&file, MAX_LATENCY_MICROSECONDS + 1),
        Err(NtStatus::INVALID_PARAMETER.raw())
    );
    // None of the failures took a sample.
    assert_eq!(read_sample(&file).sequence, 1);

    drop(file);
    device.remove();
    driver.unload();
    session.end();
}

#[test]
fn latency_delays_each_sample() {
    let session = Session::begin();
    let driver = Driver::load(driver_entry).expect("loads");
    let device = driver.add_device().expect("added");
    device.start().expect("started");
    let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR).expect("opens");

    assert_eq!(set_latency(&file, 30_000), Ok(0));
    let started = Instant::now();
    let first = read_sample(&file);
    let second = read_sample(&file);
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert_eq!((first.sequence, second.sequence), (1, 2));
    // Interrupt time is in 100 ns units: the second sample was taken at least 30 ms later.
    assert!(second.timestamp_100ns - first.timestamp_100ns >= 300_000);

    assert_eq!(set_latency(&file, 0), Ok(0));
    assert_eq!(read_sample(&file).sequence, 3);

    drop(file);
    device.remove();
    driver.unload();
    session.end();
}

#[test]
fn reads_wait_in_low_power_and_the_sequence_survives_a_power_cycle() {
    let session = Session::begin();
    let driver = Driver::load(driver_entry).expect("loads");
    let device = driver.add_device().expect("added");
    device.start().expect("started");
    let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR).expect("opens");
    assert_eq!(read_sample(&file).sequence, 1);

    device.power_down();
    let pending = file.device_io_control_overlapped(IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE, &[], 32);
    // The power-managed queue holds the request while the device is in low power.
    assert_eq!(pending.wait(Duration::from_millis(100)), None);
    device.power_up().expect("powered up");
    assert_eq!(
        pending.wait(WAIT),
        Some((STATUS_SUCCESS, SensorSample::SIZE))
    );
    assert_eq!(
        SensorSample::from_bytes(pending.output()).unwrap().sequence,
        2
    );
    assert_eq!(read_sample(&file).sequence, 3);

    drop(pending);
    drop(file);
    device.remove();
    driver.unload();
    session.end();
}

#[test]
fn removal_cancels_a_waiting_read() {
    let session = Session::begin();
    let driver = Driver::load(driver_entry).expect("loads");
    let device = driver.add_device().expect("added");
    device.start().expect("started");
    let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR).expect("opens");

    device.power_down();
    let pending = file.device_io_control_overlapped(IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE, &[], 32);
    assert!(!pending.is_complete());
    device.surprise_remove();
    let (status, information) = pending.wait(WAIT).expect("completed by the removal");
    assert!(status < 0, "status {status:#x}");
    assert_eq!(information, 0);
    assert!(interfaces(&GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR).is_empty());

    drop(pending);
    drop(file);
    device.remove();
    driver.unload();
    session.end();
}

#[test]
fn each_sensor_counts_its_own_samples() {
    let session = Session::begin();
    let driver = Driver::load(driver_entry).expect("loads");
    let first = driver.add_device().expect("first added");
    let second = driver.add_device().expect("second added");
    first.start().expect("first started");
    second.start().expect("second started");
    let names = interfaces(&GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR);
    assert_eq!(names.len(), 2);
    let files: Vec<File> = names
        .iter()
        .map(|name| File::open(name).expect("opens"))
        .collect();

    assert_eq!(read_sample(&files[0]).sequence, 1);
    assert_eq!(read_sample(&files[0]).sequence, 2);
    assert_eq!(read_sample(&files[1]).sequence, 1);
    // Concurrent readers of one sensor get distinct, gap-free sequence numbers.
    let mut seen: Vec<u64> = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let file = &files[1];
                scope.spawn(move || {
                    (0..5)
                        .map(|_| read_sample(file).sequence)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        readers
            .into_iter()
            .flat_map(|reader| reader.join().unwrap())
            .collect()
    });
    seen.sort_unstable();
    assert_eq!(seen, (2..=21).collect::<Vec<u64>>());

    drop(files);
    first.remove();
    second.remove();
    driver.unload();
    session.end();
}

/// Waits for `count` overlapped reads and returns their samples, failing on any error.
fn samples_of(pending: &[wdk_sys::sim::user::Overlapped]) -> Vec<SensorSample> {
    pending
        .iter()
        .map(|read| {
            assert_eq!(read.wait(WAIT), Some((STATUS_SUCCESS, SensorSample::SIZE)));
            SensorSample::from_bytes(read.output()).expect("a whole sample")
        })
        .collect()
}

#[test]
fn reads_waiting_for_the_latency_are_answered_one_per_period_in_order() {
    let session = Session::begin();
    let driver = Driver::load(driver_entry).expect("loads");
    let device = driver.add_device().expect("added");
    device.start().expect("started");
    let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR).expect("opens");

    assert_eq!(set_latency(&file, 10_000), Ok(0));
    let started = Instant::now();
    let pending: Vec<_> = (0..5)
        .map(|_| file.device_io_control_overlapped(IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE, &[], 32))
        .collect();
    // The sensor's handler returned for every read: they wait in the sensor, not in a wait.
    assert!(pending.iter().all(|read| !read.is_complete()));
    let samples = samples_of(&pending);
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "one sample per 10 ms"
    );
    assert_eq!(
        samples.iter().map(|s| s.sequence).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5],
        "in arrival order"
    );
    for pair in samples.windows(2) {
        assert!(
            pair[1].timestamp_100ns - pair[0].timestamp_100ns >= 100_000,
            "a period between samples: {pair:?}"
        );
    }

    drop(file);
    device.remove();
    driver.unload();
    session.end();
}

#[test]
fn a_cancelled_read_completes_at_once_and_takes_no_sample() {
    let session = Session::begin();
    let driver = Driver::load(driver_entry).expect("loads");
    let device = driver.add_device().expect("added");
    device.start().expect("started");
    let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR).expect("opens");

    assert_eq!(set_latency(&file, MAX_LATENCY_MICROSECONDS), Ok(0));
    let first = file.device_io_control_overlapped(IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE, &[], 32);
    let second = file.device_io_control_overlapped(IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE, &[], 32);
    assert_eq!(
        first.wait(Duration::from_millis(20)),
        None,
        "waits for its sample"
    );
    let started = Instant::now();
    assert!(second.cancel());
    assert_eq!(
        second.wait(WAIT),
        Some((NtStatus::CANCELLED.raw(), 0)),
        "the cancel completes it"
    );
    assert!(first.cancel());
    assert_eq!(first.wait(WAIT), Some((NtStatus::CANCELLED.raw(), 0)));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "cancels do not wait for the period"
    );
    // Neither took a sample.
    assert_eq!(set_latency(&file, 0), Ok(0));
    assert_eq!(read_sample(&file).sequence, 1);

    drop(first);
    drop(second);
    drop(file);
    device.remove();
    driver.unload();
    session.end();
}

#[test]
fn reads_pending_at_power_down_wait_in_low_power_then_complete_in_order() {
    let session = Session::begin();
    let driver = Driver::load(driver_entry).expect("loads");
    let device = driver.add_device().expect("added");
    device.start().expect("started");
    let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR).expect("opens");

    assert_eq!(set_latency(&file, 200_000), Ok(0));
    let pending: Vec<_> = (0..3)
        .map(|_| file.device_io_control_overlapped(IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE, &[], 32))
        .collect();
    device.power_down();
    let still_pending = pending.iter().filter(|read| !read.is_complete()).count();
    // No sample is taken in low power: the timer is stopped.
    std::thread::sleep(Duration::from_millis(450));
    assert_eq!(
        pending.iter().filter(|read| !read.is_complete()).count(),
        still_pending,
        "nothing completes in D3"
    );
    assert!(
        still_pending >= 2,
        "{still_pending} of 3 still waiting at power-down"
    );
    device.power_up().expect("powered up");
    let samples = samples_of(&pending);
    assert_eq!(
        samples.iter().map(|s| s.sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );

    drop(pending);
    drop(file);
    device.remove();
    driver.unload();
    session.end();
}

#[test]
fn removal_completes_reads_waiting_for_their_sample() {
    for surprise in [false, true] {
        let session = Session::begin();
        let driver = Driver::load(driver_entry).expect("loads");
        let device = driver.add_device().expect("added");
        device.start().expect("started");
        let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR).expect("opens");

        assert_eq!(set_latency(&file, MAX_LATENCY_MICROSECONDS), Ok(0));
        let pending: Vec<_> = (0..3)
            .map(|_| {
                file.device_io_control_overlapped(IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE, &[], 32)
            })
            .collect();
        assert!(pending.iter().all(|read| !read.is_complete()));
        let started = Instant::now();
        let surprise_removed = if surprise {
            device.surprise_remove();
            Some(device)
        } else {
            device.remove();
            None
        };
        for read in &pending {
            let (status, information) = read.wait(WAIT).expect("completed by the removal");
            assert_eq!((status, information), (NtStatus::CANCELLED.raw(), 0));
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "no period waited"
        );
        drop(pending);
        drop(file);
        if let Some(device) = surprise_removed {
            device.remove();
        }
        driver.unload();
        // Ending the session checks that no request, timer or queue was left behind.
        session.end();
    }
}
