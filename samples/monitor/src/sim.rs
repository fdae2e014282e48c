//! The monitor on the KMDF simulation: a session with the sensor driver (`--sensors` sensors,
//! each paced at [`LATENCY_US`]) and the hub driver, the monitor's requests through the
//! simulation's user-mode side, and `--churn`: sensors arrive and leave on a seeded schedule,
//! one leaves by surprise removal. After the run: the hub and the drivers are removed and
//! unloaded, and the verifier's reports and the live objects are checked.

use std::time::Duration;

use dmf_sample_hub::interface::GUID_DEVINTERFACE_DMF_SAMPLE_HUB;
use dmf_sample_sensor::interface::IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY;
use wdk_sys::sim::pnp::{Device, Driver};
use wdk_sys::sim::user::{File, Overlapped};
use wdk_sys::sim::{self, Session};

use crate::protocol::{self, SENSORS_BUFFER_SIZE};
use crate::{Hub, Options, Reaped, Stage};

/// Each sensor takes a sample every millisecond (1000 samples/s).
const LATENCY_US: u32 = 1_000;

/// The most sensors churn lets be present at once.
const MAX_PRESENT: usize = 8;

const STATUS_CANCELLED: i32 = wdk_sys::STATUS_CANCELLED;

struct SimHub(File);

impl Hub for SimHub {
    type Wait = Overlapped;

    fn sensors(&self) -> Result<Vec<protocol::SensorStatistics>, String> {
        let mut output = vec![0u8; SENSORS_BUFFER_SIZE];
        let length = self
            .0
            .device_io_control(protocol::IOCTL_GET_SENSORS, &[], &mut output)
            .map_err(|status| format!("GET_SENSORS failed: {status:#x}"))?;
        Ok(protocol::parse_sensors(&output, length))
    }

    fn wait_samples(&self, length: usize) -> Result<Overlapped, String> {
        Ok(self
            .0
            .device_io_control_overlapped(protocol::IOCTL_WAIT_SAMPLES, &[], length))
    }

    fn reap(&self, wait: &Overlapped, timeout: Duration) -> Option<Reaped> {
        let (status, length) = wait.wait(timeout)?;
        Some(if status >= 0 {
            Reaped::Samples(protocol::parse_samples(wait.output(), length))
        } else if status == STATUS_CANCELLED {
            Reaped::Cancelled
        } else {
            Reaped::Failed(i64::from(status))
        })
    }

    fn cancel(&self, wait: &Overlapped) {
        let _ = wait.cancel();
    }
}

fn set_latency(device: &Device) -> Result<(), String> {
    let name = device
        .names()
        .into_iter()
        .next()
        .ok_or("a sensor without an interface")?;
    let file = File::open(&name).map_err(|status| format!("open a sensor: {status:#x}"))?;
    file.device_io_control(
        IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY,
        &LATENCY_US.to_ne_bytes(),
        &mut [],
    )
    .map(|_| ())
    .map_err(|status| format!("set a sensor's latency: {status:#x}"))
}

/// The sensors and the churn schedule.
struct Sensors {
    driver: Driver,
    present: Vec<Device>,
    churn: bool,
    rng: Rng,
    next_event: Duration,
    surprise_at: Duration,
    surprised: bool,
}

impl Sensors {
    fn add(&mut self) -> Result<(), String> {
        let device = self
            .driver
            .add_device()
            .map_err(|status| format!("sensor: AddDevice {status:#x}"))?;
        device
            .start()
            .map_err(|status| format!("sensor: start {status:#x}"))?;
        set_latency(&device)?;
        self.present.push(device);
        Ok(())
    }

    fn churn_event(&mut self) -> String {
        let count = self.present.len();
        let arrive = count <= 1 || (count < MAX_PRESENT && self.rng.below(2) == 0);
        if arrive {
            return match self.add() {
                Ok(()) => format!("a sensor arrives ({} present)", self.present.len()),
                Err(message) => format!("a sensor failed to arrive: {message}"),
            };
        }
        let index = self.rng.below(count as u64) as usize;
        let device = self.present.swap_remove(index);
        if self.rng.below(2) == 0 {
            let agreed = device.query_remove();
            device.remove();
            format!(
                "a sensor leaves after a query-remove ({}; {} present)",
                if agreed { "agreed" } else { "vetoed" },
                self.present.len()
            )
        } else {
            device.remove();
            format!("a sensor leaves ({} present)", self.present.len())
        }
    }
}

impl Stage for Sensors {
    fn tick(&mut self, elapsed: Duration) -> Option<String> {
        if !self.churn {
            return None;
        }
        if !self.surprised && elapsed >= self.surprise_at && !self.present.is_empty() {
            self.surprised = true;
            let index = self.rng.below(self.present.len() as u64) as usize;
            let device = self.present.swap_remove(index);
            device.surprise_remove();
            device.remove();
            return Some(format!(
                "a sensor is surprise-removed ({} present)",
                self.present.len()
            ));
        }
        if elapsed < self.next_event {
            return None;
        }
        self.next_event = elapsed + Duration::from_millis(300 + self.rng.below(500));
        Some(self.churn_event())
    }

    fn finish(&mut self) -> bool {
        for device in self.present.drain(..) {
            device.remove();
        }
        true
    }
}

/// The monitor on the simulation: boot, run, tear down, check the framework's side.
pub fn run(options: &Options) -> Result<bool, String> {
    let seed = options.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::from(d.subsec_nanos()))
    });
    let session = Session::begin();
    println!(
        "kmdf-sim session (scheduling seed {}), churn seed {seed}: sensor driver with {} sensors, hub driver",
        session.seed(),
        options.sensors
    );
    let outcome = run_drivers(options, seed);
    session.wait_idle();
    session.check_leaks();
    let counters = sim::counters();
    let reports = sim::verifier::take_reports();
    println!("verifier reports: {}", reports.len());
    for report in &reports {
        println!("  {report:?}");
    }
    println!(
        "live objects: {} (pool blocks {})",
        counters.live_objects, counters.live_pool_allocations
    );
    let clean =
        reports.is_empty() && counters.live_objects == 0 && counters.live_pool_allocations == 0;
    session.end();
    outcome.map(|ok| ok && clean)
}

/// The monitor's copy of the interface is the hub's.
fn check_protocol() -> Result<(), String> {
    use dmf_sample_hub::interface as hub;
    let g = GUID_DEVINTERFACE_DMF_SAMPLE_HUB;
    let same = (g.Data1, g.Data2, g.Data3, g.Data4) == protocol::HUB_INTERFACE
        && hub::IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES == protocol::IOCTL_WAIT_SAMPLES
        && hub::IOCTL_DMF_SAMPLE_HUB_GET_SENSORS == protocol::IOCTL_GET_SENSORS
        && hub::HubSample::SIZE == protocol::HubSample::SIZE
        && hub::SensorStatistics::SIZE == protocol::SensorStatistics::SIZE
        && hub::MAX_SENSORS == protocol::MAX_SENSORS;
    if same {
        Ok(())
    } else {
        Err("the monitor's copy of the hub interface differs from the hub's".to_string())
    }
}

fn run_drivers(options: &Options, seed: u64) -> Result<bool, String> {
    check_protocol()?;
    let driver = Driver::load(dmf_sample_sensor::driver_entry)
        .map_err(|status| format!("sensor driver: DriverEntry {status:#x}"))?;
    let seconds = Duration::from_secs(options.seconds);
    let mut sensors = Sensors {
        driver,
        present: Vec::new(),
        churn: options.churn,
        rng: Rng::new(seed),
        next_event: Duration::from_millis(500),
        surprise_at: seconds / 2,
        surprised: false,
    };
    for _ in 0..options.sensors {
        sensors.add()?;
    }
    let hub_driver = Driver::load(dmf_sample_hub::driver_entry)
        .map_err(|status| format!("hub driver: DriverEntry {status:#x}"))?;
    let hub_device = hub_driver
        .add_device()
        .map_err(|status| format!("hub: AddDevice {status:#x}"))?;
    hub_device
        .start()
        .map_err(|status| format!("hub: start {status:#x}"))?;
    let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_HUB)
        .map_err(|status| format!("open the hub's interface: {status:#x}"))?;
    let hub = SimHub(file);
    let outcome = crate::monitor(&hub, &mut sensors, options);
    sensors.finish();
    drop(hub);
    hub_device.remove();
    hub_driver.unload();
    sensors.driver.unload();
    outcome
}

/// A small seeded generator for the churn schedule (xorshift64*).
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is mapped to 1).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next value below `bound` (`bound > 0`).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound.max(1)
    }
}

#[cfg(test)]
mod tests {
    use dmf_sample_hub::interface as hub;

    use crate::protocol;

    #[test]
    fn the_protocol_copy_matches_the_hub() {
        super::check_protocol().expect("same interface");
        let sample = hub::HubSample {
            sensor_id: 3,
            value: -7,
            sequence: 11,
            timestamp_100ns: 13,
        };
        let mut output = sample.to_bytes().to_vec();
        output.extend_from_slice(&[0; 5]);
        let parsed = protocol::parse_samples(&output, output.len());
        assert_eq!(parsed.len(), 1);
        let got = parsed[0];
        assert_eq!(
            (got.sensor_id, got.value, got.sequence, got.timestamp_100ns),
            (3, -7, 11, 13)
        );
        let statistics = hub::SensorStatistics {
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
        let header = hub::SensorsHeader {
            total: 2,
            returned: 1,
        };
        let mut output = header.to_bytes().to_vec();
        output.extend_from_slice(&statistics.to_bytes());
        let rows = protocol::parse_sensors(&output, output.len());
        assert_eq!(rows.len(), 1);
        let row = rows[0];
        assert_eq!(
            (
                row.sensor_id,
                row.received,
                row.delivered,
                row.dropped,
                row.gaps
            ),
            (1, 2, 4, 5, 6)
        );
        assert_eq!(
            (
                row.last_sequence,
                row.rate,
                row.last_value,
                row.min,
                row.max
            ),
            (7, 8, -9, -10, 11)
        );
        assert_eq!((row.mean, row.connections, row.samples), (12, 13, 3));
    }
}
