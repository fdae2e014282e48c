//! The hub's user-mode interface as the monitor speaks it: the same values and layouts as the
//! hub driver's `interface` module (which the monitor cannot link on Windows: it is kernel
//! code), checked against it by the host tests.

/// `GUID_DEVINTERFACE_DMF_SAMPLE_HUB`: `{CEEE8145-DDB1-47C9-A351-DC1FD0E16D15}` as
/// (`Data1`, `Data2`, `Data3`, `Data4`).
pub const HUB_INTERFACE: (u32, u16, u16, [u8; 8]) = (
    0xceee_8145,
    0xddb1,
    0x47c9,
    [0xa3, 0x51, 0xdc, 0x1f, 0xd0, 0xe1, 0x6d, 0x15],
);

/// `IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES`.
pub const IOCTL_WAIT_SAMPLES: u32 = 0x0022_6080;

/// `IOCTL_DMF_SAMPLE_HUB_GET_SENSORS`.
pub const IOCTL_GET_SENSORS: u32 = 0x0022_6084;

/// Sensors the hub keeps statistics for, at most.
pub const MAX_SENSORS: usize = 32;

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn i32_at(bytes: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// One sample from `WAIT_SAMPLES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HubSample {
    /// The sensor it came from.
    pub sensor_id: u32,
    /// Thousandths of a degree Celsius.
    pub value: i32,
    /// The sensor's sequence number.
    pub sequence: u64,
    /// When it was taken (100 ns units).
    pub timestamp_100ns: u64,
}

impl HubSample {
    /// Bytes per sample.
    pub const SIZE: usize = 24;

    /// Reads one sample (`None` if `bytes` is shorter than [`Self::SIZE`]).
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            sensor_id: u32_at(bytes, 0)?,
            value: i32_at(bytes, 4)?,
            sequence: u64_at(bytes, 8)?,
            timestamp_100ns: u64_at(bytes, 16)?,
        })
    }
}

/// One sensor's statistics from `GET_SENSORS` (see the hub's interface for each field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[allow(missing_docs, reason = "the hub's interface documents each field")]
pub struct SensorStatistics {
    pub sensor_id: u32,
    pub connected: u32,
    pub received: u64,
    pub samples: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub gaps: u64,
    pub last_sequence: u64,
    pub rate: u32,
    pub last_value: i32,
    pub min: i32,
    pub max: i32,
    pub mean: i32,
    pub connections: u32,
}

impl SensorStatistics {
    /// Bytes per entry.
    pub const SIZE: usize = 80;

    /// Reads one entry (`None` if `bytes` is shorter than [`Self::SIZE`]).
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            sensor_id: u32_at(bytes, 0)?,
            connected: u32_at(bytes, 4)?,
            received: u64_at(bytes, 8)?,
            samples: u64_at(bytes, 16)?,
            delivered: u64_at(bytes, 24)?,
            dropped: u64_at(bytes, 32)?,
            gaps: u64_at(bytes, 40)?,
            last_sequence: u64_at(bytes, 48)?,
            rate: u32_at(bytes, 56)?,
            last_value: i32_at(bytes, 60)?,
            min: i32_at(bytes, 64)?,
            max: i32_at(bytes, 68)?,
            mean: i32_at(bytes, 72)?,
            connections: u32_at(bytes, 76)?,
        })
    }
}

/// Bytes of the `GET_SENSORS` header (total `u32`, returned `u32`).
pub const SENSORS_HEADER_SIZE: usize = 8;

/// The output buffer `GET_SENSORS` needs for every sensor.
pub const SENSORS_BUFFER_SIZE: usize = SENSORS_HEADER_SIZE + MAX_SENSORS * SensorStatistics::SIZE;

/// Parses a `GET_SENSORS` output (`length` valid bytes).
#[must_use]
pub fn parse_sensors(output: &[u8], length: usize) -> Vec<SensorStatistics> {
    let valid = &output[..length.min(output.len())];
    let returned = u32_at(valid, 4).unwrap_or(0) as usize;
    valid
        .get(SENSORS_HEADER_SIZE..)
        .unwrap_or_default()
        .chunks_exact(SensorStatistics::SIZE)
        .take(returned)
        .filter_map(SensorStatistics::from_bytes)
        .collect()
}

/// Parses a `WAIT_SAMPLES` output (`length` valid bytes).
#[must_use]
pub fn parse_samples(output: &[u8], length: usize) -> Vec<HubSample> {
    output[..length.min(output.len())]
        .chunks_exact(HubSample::SIZE)
        .filter_map(HubSample::from_bytes)
        .collect()
}
