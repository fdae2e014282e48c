//! Bad input from user mode, through the simulation's user-mode side: short and oversized
//! buffers, unknown IOCTLs and other major functions, reads cancelled at random moments, a
//! handle closed with reads outstanding, and a flood of reads far past anything the sensor
//! expects, then removal with them waiting. Each gets its proper status; nothing panics, hangs
//! or leaks (the session checks leaks and verifier reports at its end). Seeded by the session's
//! seed (`KMDF_SIM_SEED` replays the choices).
#![cfg(not(windows))]

use std::time::Duration;

use dmf::wdf::NtStatus;
use dmf_sample_sensor::driver_entry;
use dmf_sample_sensor::interface::{
    GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR, IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE,
    IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY, MAX_LATENCY_MICROSECONDS, SensorSample,
};
use wdk_sys::sim::pnp::{Device, Driver};
use wdk_sys::sim::user::{File, Overlapped};
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
}

fn boot() -> (Session, Driver, Device, File, Rng) {
    let session = Session::begin();
    let rng = Rng(session.seed() | 1);
    let driver = Driver::load(driver_entry).expect("loads");
    let device = driver.add_device().expect("added");
    device.start().expect("started");
    let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR).expect("opens");
    (session, driver, device, file, rng)
}

fn finish(session: Session, driver: Driver, device: Device) {
    device.remove();
    driver.unload();
    session.wait_idle();
    assert_eq!(sim::counters().live_objects, 0, "nothing leaked");
    session.end();
}

fn set_latency(file: &File, microseconds: u32) {
    assert_eq!(
        file.device_io_control(
            IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY,
            &microseconds.to_ne_bytes(),
            &mut []
        ),
        Ok(0)
    );
}

fn outcome(operation: &Overlapped) -> (NtStatus, usize) {
    let (status, information) = operation.wait(WAIT).expect("completes, no hang");
    (NtStatus::from_raw(status), information)
}

/// Sequence numbers of the reads that got a sample; the rest must be cancelled.
fn sequences(reads: &[Overlapped], allowed: &[NtStatus]) -> Vec<u64> {
    let mut sequences = Vec::new();
    for read in reads {
        match outcome(read) {
            (NtStatus::SUCCESS, SensorSample::SIZE) => {
                let sample = SensorSample::from_bytes(read.output()).expect("a sample");
                sequences.push(sample.sequence);
            }
            (status, information) => {
                assert!(
                    allowed.contains(&status),
                    "{status:?} ({information} bytes)"
                );
                assert_eq!(information, 0, "{status:?} returns no data");
            }
        }
    }
    sequences
}

#[test]
fn short_and_oversized_buffers_and_unknown_requests_get_their_status() {
    let (session, driver, device, file, mut rng) = boot();
    let too_small = Err(NtStatus::BUFFER_TOO_SMALL.raw());
    for length in [0, 1, SensorSample::SIZE / 2, SensorSample::SIZE - 1] {
        let mut output = vec![0u8; length];
        assert_eq!(
            file.device_io_control(IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE, &[], &mut output),
            too_small,
            "output of {length} bytes"
        );
    }
    // Oversized output (and a large, ignored input) get one sample, 24 bytes.
    for length in [SensorSample::SIZE + 1, 4096, 1 << 20] {
        let mut output = vec![0xEEu8; length];
        assert_eq!(
            file.device_io_control(IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE, &[7; 4096], &mut output),
            Ok(SensorSample::SIZE),
            "output of {length} bytes"
        );
        assert!(
            output[SensorSample::SIZE..].iter().all(|&b| b == 0xEE),
            "nothing written past the sample"
        );
    }
    // Latency: short, oversized, out of range.
    for input in [&[][..], &[1][..], &[1, 0, 0][..]] {
        assert_eq!(
            file.device_io_control(IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY, input, &mut []),
            too_small,
            "latency input of {} bytes",
            input.len()
        );
    }
    assert_eq!(
        file.device_io_control(
            IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY,
            &(MAX_LATENCY_MICROSECONDS + 1).to_ne_bytes(),
            &mut []
        ),
        Err(NtStatus::INVALID_PARAMETER.raw())
    );
    let mut long = vec![0u8; 64];
    long[..4].copy_from_slice(&5u32.to_ne_bytes());
    assert_eq!(
        file.device_io_control(IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY, &long, &mut []),
        Ok(0),
        "a longer input: its first u32"
    );
    set_latency(&file, 0);
    // Unknown codes: every device type, method and access, random function numbers.
    for _ in 0..500 {
        let code = u32::try_from(rng.below(1 << 32)).unwrap();
        if code == IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE
            || code == IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY
        {
            continue;
        }
        let input = vec![0u8; usize::try_from(rng.below(64)).unwrap()];
        let mut output = vec![0u8; usize::try_from(rng.below(64)).unwrap()];
        assert_eq!(
            file.device_io_control(code, &input, &mut output),
            Err(NtStatus::INVALID_DEVICE_REQUEST.raw()),
            "code {code:#x}"
        );
    }
    // Reads and writes: the sensor has no handler for them.
    let invalid = Err(NtStatus::INVALID_DEVICE_REQUEST.raw());
    assert_eq!(file.read(&mut [0u8; 24]), invalid);
    assert_eq!(file.write(&[1, 2, 3]), invalid);
    // None of it took a sample.
    let mut output = [0u8; SensorSample::SIZE];
    file.device_io_control(IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE, &[], &mut output)
        .unwrap();
    assert_eq!(SensorSample::from_bytes(&output).unwrap().sequence, 4);
    drop(file);
    finish(session, driver, device);
}

#[test]
fn reads_cancelled_at_random_moments() {
    let (session, driver, device, file, mut rng) = boot();
    set_latency(&file, 200);
    let mut reads = Vec::new();
    for _ in 0..300 {
        reads.push(file.device_io_control_overlapped(
            IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE,
            &[],
            SensorSample::SIZE,
        ));
        if rng.below(3) == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(400)));
        }
        if rng.below(2) == 0 {
            let victim = usize::try_from(rng.below(reads.len() as u64)).unwrap();
            let _ = reads[victim].cancel();
        }
    }
    let got = sequences(&reads, &[NtStatus::CANCELLED]);
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "samples in order, none twice"
    );
    assert_eq!(
        got.last().copied().unwrap_or(0),
        got.len() as u64,
        "a cancelled read took no sample"
    );
    drop(file);
    finish(session, driver, device);
}

#[test]
fn a_handle_closed_with_reads_outstanding_cancels_them() {
    let (session, driver, device, file, _) = boot();
    set_latency(&file, MAX_LATENCY_MICROSECONDS);
    let other = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR).expect("opens");
    let reads: Vec<_> = (0..64)
        .map(|_| {
            file.device_io_control_overlapped(
                IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE,
                &[],
                SensorSample::SIZE,
            )
        })
        .collect();
    let kept = other.device_io_control_overlapped(
        IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE,
        &[],
        SensorSample::SIZE,
    );
    drop(file);
    // At most the first read may have got its sample before the close.
    let got = sequences(&reads, &[NtStatus::CANCELLED]);
    assert!(got.len() <= 1, "{got:?}");
    assert!(!kept.is_complete(), "the other handle's read still waits");
    set_latency(&other, 0);
    drop(kept);
    drop(other);
    finish(session, driver, device);
}

#[test]
fn a_flood_of_reads_then_removal_with_them_waiting() {
    let (session, driver, device, file, _) = boot();
    set_latency(&file, MAX_LATENCY_MICROSECONDS);
    let reads: Vec<_> = (0..5_000)
        .map(|_| {
            file.device_io_control_overlapped(
                IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE,
                &[],
                SensorSample::SIZE,
            )
        })
        .collect();
    // A flood of bad requests from several threads meanwhile.
    std::thread::scope(|scope| {
        for thread in 0..4u32 {
            let file = &file;
            scope.spawn(move || {
                for i in 0..500u32 {
                    let code = 0x0022_0000 | ((thread * 500 + i) << 2);
                    if code == IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE
                        || code == IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY
                    {
                        continue;
                    }
                    assert_eq!(
                        file.device_io_control(code, &[], &mut [0u8; 8]),
                        Err(NtStatus::INVALID_DEVICE_REQUEST.raw())
                    );
                }
            });
        }
    });
    device.remove();
    let got = sequences(&reads, &[NtStatus::CANCELLED, NtStatus::NO_SUCH_DEVICE]);
    assert!(got.len() <= 1, "{got:?}");
    drop(reads);
    drop(file);
    driver.unload();
    session.wait_idle();
    assert_eq!(sim::counters().live_objects, 0, "nothing leaked");
    session.end();
}
