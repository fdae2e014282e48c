//! Bad input from user mode to the stream driver, through the simulation's user-mode side,
//! while it streams from a sensor: short and oversized buffers, unknown IOCTLs and other major
//! functions, requests cancelled at random moments, handles closed with requests outstanding,
//! a flood from several threads while sensors come and go, and the stream device removed under
//! it. Each gets its proper status; nothing panics, hangs or leaks (the session checks leaks
//! and verifier reports at its end). Seeded by the session's seed.
#![cfg(not(windows))]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dmf::wdf::NtStatus;
use dmf_sample_stream::interface::{
    GUID_DEVINTERFACE_DMF_SAMPLE_STREAM, IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS, StreamStatistics,
};
use wdk_sys::sim::pnp::{Device, Driver};
use wdk_sys::sim::user::File;
use wdk_sys::sim::{self, Session};

const WAIT: Duration = Duration::from_secs(10);

/// xorshift64*, seeded.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }

    fn size(&mut self, n: u64) -> usize {
        usize::try_from(self.below(n)).unwrap()
    }
}

struct Rig {
    session: Session,
    sensor_driver: Driver,
    stream_driver: Driver,
    stream: Device,
    sensor: Device,
}

fn boot() -> (Rig, Rng) {
    let session = Session::begin();
    let rng = Rng(session.seed() | 1);
    let sensor_driver = Driver::load(dmf_sample_sensor::driver_entry).expect("sensor loads");
    let stream_driver = Driver::load(dmf_sample_stream::driver_entry).expect("stream loads");
    let stream = stream_driver.add_device().expect("stream device added");
    stream.start().expect("stream device started");
    let sensor = sensor_driver.add_device().expect("sensor added");
    sensor.start().expect("sensor started");
    (
        Rig {
            session,
            sensor_driver,
            stream_driver,
            stream,
            sensor,
        },
        rng,
    )
}

fn open() -> File {
    File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_STREAM).expect("opens")
}

impl Rig {
    fn finish(self) {
        self.sensor.remove();
        self.stream.remove();
        self.stream_driver.unload();
        self.sensor_driver.unload();
        self.session.wait_idle();
        assert_eq!(sim::counters().live_objects, 0, "nothing leaked");
        self.session.end();
    }
}

fn statistics(file: &File, length: usize) -> Result<usize, NtStatus> {
    let mut output = vec![0xEEu8; length];
    let result = file
        .device_io_control(IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS, &[], &mut output)
        .map_err(NtStatus::from_raw);
    if let Ok(n) = result {
        assert!(
            StreamStatistics::from_bytes(&output[..n]).is_some(),
            "whole statistics"
        );
        assert!(output[n..].iter().all(|&b| b == 0xEE), "nothing past them");
    }
    result
}

#[test]
fn short_and_oversized_buffers_and_unknown_requests_get_their_status() {
    let (rig, mut rng) = boot();
    let file = open();
    for length in [0, 1, StreamStatistics::SIZE / 2, StreamStatistics::SIZE - 1] {
        assert_eq!(
            statistics(&file, length),
            Err(NtStatus::BUFFER_TOO_SMALL),
            "output of {length} bytes"
        );
    }
    for length in [
        StreamStatistics::SIZE,
        StreamStatistics::SIZE + 1,
        4096,
        1 << 20,
    ] {
        assert_eq!(
            statistics(&file, length),
            Ok(StreamStatistics::SIZE),
            "output of {length} bytes"
        );
    }
    // A large input is ignored.
    let mut output = [0u8; StreamStatistics::SIZE];
    assert_eq!(
        file.device_io_control(
            IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS,
            &vec![0xAB; 1 << 16],
            &mut output
        ),
        Ok(StreamStatistics::SIZE)
    );
    for _ in 0..500 {
        let code = u32::try_from(rng.below(1 << 32)).unwrap();
        if code == IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS {
            continue;
        }
        let input = vec![0u8; rng.size(128)];
        let mut output = vec![0u8; rng.size(128)];
        assert_eq!(
            file.device_io_control(code, &input, &mut output),
            Err(NtStatus::INVALID_DEVICE_REQUEST.raw()),
            "code {code:#x}"
        );
    }
    let invalid = Err(NtStatus::INVALID_DEVICE_REQUEST.raw());
    assert_eq!(file.read(&mut [0u8; 72]), invalid);
    assert_eq!(file.write(&[1, 2, 3]), invalid);
    drop(file);
    rig.finish();
}

#[test]
fn cancels_at_random_moments_and_handles_closed_with_requests_outstanding() {
    let (rig, mut rng) = boot();
    for _ in 0..20 {
        let file = open();
        let mut operations = Vec::new();
        for _ in 0..rng.below(50) {
            let code = if rng.below(2) == 0 {
                IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS
            } else {
                0x0022_6044
            };
            let operation = file.device_io_control_overlapped(code, &[], rng.size(100));
            if rng.below(3) == 0 {
                // Completed inline by now: cancelling it does nothing.
                let _ = operation.cancel();
            }
            operations.push((code, operation));
        }
        if rng.below(2) == 0 {
            drop(file);
        }
        for (code, operation) in &operations {
            let (status, information) = operation.wait(WAIT).expect("completes, no hang");
            let status = NtStatus::from_raw(status);
            let expected = if *code != IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS {
                NtStatus::INVALID_DEVICE_REQUEST
            } else if operation.output().len() < StreamStatistics::SIZE {
                NtStatus::BUFFER_TOO_SMALL
            } else {
                NtStatus::SUCCESS
            };
            assert_eq!(status, expected, "{code:#x}");
            let size = if status == NtStatus::SUCCESS {
                StreamStatistics::SIZE
            } else {
                0
            };
            assert_eq!(information, size);
        }
    }
    rig.finish();
}

#[test]
fn a_flood_from_several_threads_while_sensors_come_and_go_then_removal() {
    let (rig, mut rng) = boot();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let stop = &stop;
            scope.spawn(move || {
                let mut rng = Rng((thread + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let mut file = open();
                let mut requests = 0u32;
                while !stop.load(Ordering::SeqCst) || requests < 2_000 {
                    requests += 1;
                    match rng.below(4) {
                        0 => {
                            let code = u32::try_from(rng.below(1 << 32)).unwrap() | 1;
                            assert_eq!(
                                file.device_io_control(code, &[], &mut [0u8; 8]),
                                Err(NtStatus::INVALID_DEVICE_REQUEST.raw())
                            );
                        }
                        1 => assert_eq!(
                            statistics(&file, rng.size(StreamStatistics::SIZE as u64)),
                            Err(NtStatus::BUFFER_TOO_SMALL)
                        ),
                        2 if rng.below(50) == 0 => {
                            file =
                                File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_STREAM).unwrap();
                        }
                        _ => assert_eq!(
                            statistics(&file, StreamStatistics::SIZE + rng.size(64)),
                            Ok(StreamStatistics::SIZE)
                        ),
                    }
                }
            });
        }
        // Sensors arrive and leave meanwhile.
        for _ in 0..5 {
            let extra = rig.sensor_driver.add_device().expect("sensor added");
            extra.start().expect("sensor started");
            std::thread::sleep(Duration::from_millis(rng.below(20)));
            if rng.below(2) == 0 {
                extra.surprise_remove();
            }
            extra.remove();
        }
        stop.store(true, Ordering::SeqCst);
    });
    // Requests in flight when the stream device goes.
    let file = open();
    let operations: Vec<_> = (0..200)
        .map(|_| file.device_io_control_overlapped(IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS, &[], 72))
        .collect();
    rig.stream.surprise_remove();
    for operation in &operations {
        let (status, _) = operation.wait(WAIT).expect("completes, no hang");
        assert_eq!(status, NtStatus::SUCCESS.raw());
    }
    // After removal the handle's requests fail, with no hang.
    let mut output = [0u8; StreamStatistics::SIZE];
    let after = file.device_io_control(IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS, &[], &mut output);
    assert_eq!(
        after,
        Err(NtStatus::INVALID_DEVICE_STATE.raw()),
        "refused, no hang"
    );
    drop(operations);
    drop(file);
    rig.finish();
}
