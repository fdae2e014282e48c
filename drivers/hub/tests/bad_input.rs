//! Bad input from user mode to the hub, through the simulation's user-mode side, while it
//! streams from sensors: oversized buffers, random unknown IOCTLs and other major functions,
//! waits cancelled at random moments, handles closed with waits parked, a flood from several
//! threads far past the parking limit, and removal under it all. Each gets its proper status;
//! nothing panics, hangs or leaks (the session checks leaks and verifier reports at its end).
//! Seeded by the session's seed.
#![cfg(not(windows))]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use dmf::wdf::NtStatus;
use dmf_sample_hub::interface::{
    GUID_DEVINTERFACE_DMF_SAMPLE_HUB, HubSample, IOCTL_DMF_SAMPLE_HUB_GET_SENSORS,
    IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES, MAX_PARKED_REQUESTS, SensorsHeader,
};
use dmf_sample_sensor::interface::IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY;
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

    fn size(&mut self, n: u64) -> usize {
        usize::try_from(self.below(n)).unwrap()
    }
}

struct Rig {
    session: Session,
    sensor_driver: Driver,
    hub_driver: Driver,
    hub: Device,
    sensors: Vec<Device>,
}

fn open() -> File {
    File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_HUB).expect("hub opens")
}

fn boot(sensors: usize, latency_us: u32) -> (Rig, Rng) {
    let session = Session::begin();
    let rng = Rng(session.seed() | 1);
    let sensor_driver = Driver::load(dmf_sample_sensor::driver_entry).expect("sensor loads");
    let sensors = (0..sensors)
        .map(|_| {
            let device = sensor_driver.add_device().expect("sensor added");
            device.start().expect("sensor started");
            let name = device.names().into_iter().next().expect("sensor interface");
            File::open(&name)
                .expect("sensor opens")
                .device_io_control(
                    IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY,
                    &latency_us.to_ne_bytes(),
                    &mut [],
                )
                .expect("latency set");
            device
        })
        .collect();
    let hub_driver = Driver::load(dmf_sample_hub::driver_entry).expect("hub loads");
    let hub = hub_driver.add_device().expect("hub added");
    hub.start().expect("hub started");
    (
        Rig {
            session,
            sensor_driver,
            hub_driver,
            hub,
            sensors,
        },
        rng,
    )
}

impl Rig {
    fn finish(self) {
        for sensor in self.sensors {
            sensor.remove();
        }
        self.hub.remove();
        self.hub_driver.unload();
        self.sensor_driver.unload();
        self.session.wait_idle();
        assert_eq!(sim::counters().live_objects, 0, "nothing leaked");
        self.session.end();
    }
}

/// Checks a completed wait: its status is one of `allowed`, a success returns whole samples, in
/// sequence per sensor within the batch, none seen before (recorded in `seen`). Across requests
/// there is no order to check: two threads presenting from the hub's parallel queue at once may
/// park one thread's requests in either order, as KMDF's parallel queues may.
fn check_wait(
    operation: &Overlapped,
    allowed: &[NtStatus],
    seen: &mut HashSet<(u32, u64)>,
) -> NtStatus {
    let (status, length) = operation.wait(WAIT).expect("completes, no hang");
    let status = NtStatus::from_raw(status);
    assert!(allowed.contains(&status), "{status:?}");
    if status == NtStatus::SUCCESS {
        assert!(
            length >= HubSample::SIZE && length % HubSample::SIZE == 0,
            "{length}"
        );
        let mut batch: HashMap<u32, u64> = HashMap::new();
        for chunk in operation.output()[..length].chunks_exact(HubSample::SIZE) {
            let sample = HubSample::from_bytes(chunk).expect("a sample");
            let previous = batch.insert(sample.sensor_id, sample.sequence).unwrap_or(0);
            assert!(
                sample.sequence > previous,
                "per-sensor order within a batch"
            );
            assert!(
                seen.insert((sample.sensor_id, sample.sequence)),
                "no duplicate sample"
            );
        }
    } else {
        assert_eq!(length, 0, "{status:?} returns no data");
    }
    status
}

#[test]
fn oversized_buffers_unknown_requests_and_other_major_functions() {
    let (rig, mut rng) = boot(1, 200);
    let file = open();
    let mut last = HashSet::new();
    // Huge outputs get whole samples only; a huge input is ignored.
    for length in [HubSample::SIZE * 2 + 5, 4096 + 1, 1 << 20] {
        let operation = file.device_io_control_overlapped(
            IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES,
            &[0xAB; 64],
            length,
        );
        check_wait(&operation, &[NtStatus::SUCCESS], &mut last);
    }
    let mut output = vec![0u8; 1 << 16];
    let length = file
        .device_io_control(
            IOCTL_DMF_SAMPLE_HUB_GET_SENSORS,
            &vec![1; 1 << 16],
            &mut output,
        )
        .expect("sensors");
    let header = SensorsHeader::from_bytes(&output).expect("header");
    assert_eq!((header.total, header.returned), (1, 1));
    assert!(length > SensorsHeader::SIZE);
    for length in [0, 1, HubSample::SIZE - 1] {
        let mut short = vec![0u8; length];
        assert_eq!(
            file.device_io_control(IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES, &[], &mut short),
            Err(NtStatus::BUFFER_TOO_SMALL.raw())
        );
    }
    for _ in 0..500 {
        let code = u32::try_from(rng.below(1 << 32)).unwrap();
        if code == IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES || code == IOCTL_DMF_SAMPLE_HUB_GET_SENSORS {
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
    assert_eq!(file.read(&mut [0u8; 24]), invalid);
    assert_eq!(file.write(&[1, 2, 3]), invalid);
    drop(file);
    rig.finish();
}

#[test]
fn waits_cancelled_at_random_moments_and_handles_closed_with_waits_parked() {
    // Slow sensors: waits park often.
    let (rig, mut rng) = boot(2, 20_000);
    let mut last = HashSet::new();
    let allowed = [
        NtStatus::SUCCESS,
        NtStatus::CANCELLED,
        NtStatus::INVALID_DEVICE_STATE,
    ];
    let (mut cancelled, mut refused) = (0, 0);
    for _ in 0..20 {
        let file = open();
        let mut operations = Vec::new();
        for _ in 0..rng.below(3 * MAX_PARKED_REQUESTS as u64) {
            operations.push(file.device_io_control_overlapped(
                IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES,
                &[],
                HubSample::SIZE * (1 + rng.size(4)),
            ));
            if rng.below(3) == 0 {
                std::thread::sleep(Duration::from_micros(rng.below(2_000)));
            }
            if rng.below(3) == 0 {
                let victim = rng.size(operations.len() as u64);
                let _ = operations[victim].cancel();
            }
        }
        // Half the time the handle goes with waits still parked.
        if rng.below(2) == 0 {
            drop(file);
        } else {
            for operation in &operations {
                let _ = operation.cancel();
            }
        }
        for operation in &operations {
            match check_wait(operation, &allowed, &mut last) {
                NtStatus::CANCELLED => cancelled += 1,
                NtStatus::INVALID_DEVICE_STATE => refused += 1,
                _ => {}
            }
        }
    }
    assert!(cancelled > 0, "some waits were cancelled");
    eprintln!("{cancelled} cancelled, {refused} refused past the limit");
    rig.finish();
}

#[test]
fn a_flood_from_several_threads_then_removal_with_waits_parked() {
    let (rig, _) = boot(2, 1_000);
    let allowed = [
        NtStatus::SUCCESS,
        NtStatus::INVALID_DEVICE_STATE,
        NtStatus::CANCELLED,
    ];
    std::thread::scope(|scope| {
        for thread in 0..4u64 {
            let allowed = &allowed;
            scope.spawn(move || {
                let mut rng = Rng((thread + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let file = open();
                let mut last = HashSet::new();
                for _ in 0..20 {
                    // Far past the limit at once, from each thread.
                    let burst: Vec<_> = (0..4 * MAX_PARKED_REQUESTS)
                        .map(|_| {
                            file.device_io_control_overlapped(
                                IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES,
                                &[],
                                HubSample::SIZE * (1 + rng.size(8)),
                            )
                        })
                        .collect();
                    let mut bad = [0u8; 8];
                    assert_eq!(
                        file.device_io_control(0x0022_6ffc, &[], &mut bad),
                        Err(NtStatus::INVALID_DEVICE_REQUEST.raw())
                    );
                    for operation in &burst {
                        check_wait(operation, allowed, &mut last);
                    }
                }
            });
        }
    });
    // Waits parked when the hub goes: cancelled, none hangs.
    let file = open();
    let parked: Vec<_> = (0..2 * MAX_PARKED_REQUESTS)
        .map(|_| file.device_io_control_overlapped(IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES, &[], 24))
        .collect();
    rig.hub.surprise_remove();
    let mut last = HashSet::new();
    for operation in &parked {
        check_wait(operation, &allowed, &mut last);
    }
    drop(parked);
    drop(file);
    rig.finish();
}
