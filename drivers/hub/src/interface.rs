//! What the hub consumes (the sensors' interface, which it does not link: each driver is its
//! own binary) and what it offers user mode: its device interface, its I/O control codes and
//! the layouts of what they return. All values are native byte order, without padding.

use wdk_sys::{FILE_DEVICE_UNKNOWN, FILE_READ_ACCESS, GUID, METHOD_BUFFERED};

/// The `CTL_CODE` macro of `devioctl.h`: device type, access, function and transfer method.
#[must_use]
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    (device_type << 16) | (access << 14) | (function << 2) | method
}

/// The sensors' device interface class (the sensor driver's
/// `GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR`): `{387E8197-3183-4F3F-9178-9DD19D58FFE2}`.
pub const GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR: GUID = GUID {
    Data1: 0x387e_8197,
    Data2: 0x3183,
    Data3: 0x4f3f,
    Data4: [0x91, 0x78, 0x9d, 0xd1, 0x9d, 0x58, 0xff, 0xe2],
};

/// The sensor's read-sample IOCTL (`0x226000`): no input, returns one [`SensorSample`].
pub const IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE: u32 = ctl_code(
    FILE_DEVICE_UNKNOWN,
    0x800,
    METHOD_BUFFERED,
    FILE_READ_ACCESS,
);

/// One sensor reading, as the sensor's read-sample IOCTL returns it (the sensor driver's
/// `SensorSample` layout).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SensorSample {
    /// 1 for the sensor's first sample, then one more for each sample it returns.
    pub sequence: u64,
    /// When the sample was taken: system interrupt time in 100 ns units.
    pub timestamp_100ns: u64,
    /// The reading: a temperature in thousandths of a degree Celsius.
    pub value: i32,
    /// The sensor's identity (unique per sensor device, never 0): what tells the hub's
    /// streams apart, whose completions all reach one callback.
    pub sensor_id: u32,
}

impl SensorSample {
    /// Size of a sample in a buffer.
    pub const SIZE: usize = size_of::<Self>();

    /// The sample's bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut bytes = [0u8; Self::SIZE];
        bytes[0..8].copy_from_slice(&self.sequence.to_ne_bytes());
        bytes[8..16].copy_from_slice(&self.timestamp_100ns.to_ne_bytes());
        bytes[16..20].copy_from_slice(&self.value.to_ne_bytes());
        bytes[20..24].copy_from_slice(&self.sensor_id.to_ne_bytes());
        bytes
    }

    /// Reads a sample from the first [`Self::SIZE`] bytes of `bytes` (`None` if shorter).
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..Self::SIZE)?;
        Some(Self {
            sequence: u64::from_ne_bytes(bytes[0..8].try_into().ok()?),
            timestamp_100ns: u64::from_ne_bytes(bytes[8..16].try_into().ok()?),
            value: i32::from_ne_bytes(bytes[16..20].try_into().ok()?),
            sensor_id: u32::from_ne_bytes(bytes[20..24].try_into().ok()?),
        })
    }
}

const _: () = assert!(SensorSample::SIZE == 24);

/// The device interface class the hub registers: `{CEEE8145-DDB1-47C9-A351-DC1FD0E16D15}`.
pub const GUID_DEVINTERFACE_DMF_SAMPLE_HUB: GUID = GUID {
    Data1: 0xceee_8145,
    Data2: 0xddb1,
    Data3: 0x47c9,
    Data4: [0xa3, 0x51, 0xdc, 0x1f, 0xd0, 0xe1, 0x6d, 0x15],
};

/// Waits for samples (`0x226080`): no input; the output buffer receives as many
/// [`HubSample`]s as fit (at least one: a buffer smaller than [`HubSample::SIZE`] fails with
/// `STATUS_BUFFER_TOO_SMALL`), oldest first, each sensor's in sequence order; the byte count
/// says how many. Completes at once when samples are waiting, else parks until some arrive
/// (cancelable; at most [`MAX_PARKED_REQUESTS`] parked per hub, one more fails with
/// `STATUS_INVALID_DEVICE_STATE`). Parked requests complete with `STATUS_CANCELLED` when the
/// hub is removed.
pub const IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES: u32 = ctl_code(
    FILE_DEVICE_UNKNOWN,
    0x820,
    METHOD_BUFFERED,
    FILE_READ_ACCESS,
);

/// Reads the sensors the hub knows, with their statistics (`0x226084`): no input; the output
/// is a [`SensorsHeader`] followed by as many [`SensorStatistics`] as fit (a buffer smaller than
/// the header fails with `STATUS_BUFFER_TOO_SMALL`). Completes at once, in any power state.
pub const IOCTL_DMF_SAMPLE_HUB_GET_SENSORS: u32 = ctl_code(
    FILE_DEVICE_UNKNOWN,
    0x821,
    METHOD_BUFFERED,
    FILE_READ_ACCESS,
);

/// Requests [`IOCTL_DMF_SAMPLE_HUB_WAIT_SAMPLES`] parks at once.
pub const MAX_PARKED_REQUESTS: usize = 16;

/// Sensors the hub keeps statistics for (connected ones and those that left, the oldest of
/// which make room for new arrivals once all their samples are accounted for).
pub const MAX_SENSORS: usize = 32;

/// One sample as the hub hands it to user mode.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HubSample {
    /// The sensor it came from ([`SensorStatistics::sensor_id`]).
    pub sensor_id: u32,
    /// The reading (thousandths of a degree Celsius).
    pub value: i32,
    /// The sensor's sequence number of the sample.
    pub sequence: u64,
    /// When the sensor took it (system interrupt time, 100 ns units).
    pub timestamp_100ns: u64,
}

impl HubSample {
    /// Size of a sample in a buffer.
    pub const SIZE: usize = size_of::<Self>();

    /// The sample's bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut bytes = [0u8; Self::SIZE];
        bytes[0..4].copy_from_slice(&self.sensor_id.to_ne_bytes());
        bytes[4..8].copy_from_slice(&self.value.to_ne_bytes());
        bytes[8..16].copy_from_slice(&self.sequence.to_ne_bytes());
        bytes[16..24].copy_from_slice(&self.timestamp_100ns.to_ne_bytes());
        bytes
    }

    /// Reads a sample from the first [`Self::SIZE`] bytes of `bytes` (`None` if shorter).
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..Self::SIZE)?;
        Some(Self {
            sensor_id: u32::from_ne_bytes(bytes[0..4].try_into().ok()?),
            value: i32::from_ne_bytes(bytes[4..8].try_into().ok()?),
            sequence: u64::from_ne_bytes(bytes[8..16].try_into().ok()?),
            timestamp_100ns: u64::from_ne_bytes(bytes[16..24].try_into().ok()?),
        })
    }
}

const _: () = assert!(HubSample::SIZE == 24);

/// What [`IOCTL_DMF_SAMPLE_HUB_GET_SENSORS`] returns first.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SensorsHeader {
    /// Sensors the hub knows (all of them, whether or not they fit in the buffer).
    pub total: u32,
    /// [`SensorStatistics`] entries that follow in this buffer.
    pub returned: u32,
}

impl SensorsHeader {
    /// Size of the header in a buffer.
    pub const SIZE: usize = size_of::<Self>();

    /// The header's bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut bytes = [0u8; Self::SIZE];
        bytes[0..4].copy_from_slice(&self.total.to_ne_bytes());
        bytes[4..8].copy_from_slice(&self.returned.to_ne_bytes());
        bytes
    }

    /// Reads a header from the first [`Self::SIZE`] bytes of `bytes` (`None` if shorter).
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..Self::SIZE)?;
        Some(Self {
            total: u32::from_ne_bytes(bytes[0..4].try_into().ok()?),
            returned: u32::from_ne_bytes(bytes[4..8].try_into().ok()?),
        })
    }
}

/// One sensor's statistics. For a sensor, `received == delivered + dropped + queued`, where
/// `queued` are samples inside the hub not yet handed to user mode.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SensorStatistics {
    /// The sensor's identity (from its samples).
    pub sensor_id: u32,
    /// 1 while the hub streams from it (0 after it left, or while a query-remove holds it).
    pub connected: u32,
    /// Samples the hub received from it.
    pub received: u64,
    /// Samples that reached the hub's worker (received and not dropped for want of a buffer).
    pub samples: u64,
    /// Samples handed to user mode.
    pub delivered: u64,
    /// Samples dropped: no free buffer when they arrived, or no room left for them in the
    /// hub's queue for user mode.
    pub dropped: u64,
    /// Sequence numbers the worker never saw (missing between consecutive samples).
    pub gaps: u64,
    /// The highest sequence number received.
    pub last_sequence: u64,
    /// Samples per second over the last half second or so (by the samples' time stamps).
    pub rate: u32,
    /// The last reading.
    pub last_value: i32,
    /// The lowest reading.
    pub min: i32,
    /// The highest reading.
    pub max: i32,
    /// The mean reading (rounded towards zero).
    pub mean: i32,
    /// Times this sensor was opened (1, more after a cancelled query-remove reopened it).
    pub connections: u32,
}

impl SensorStatistics {
    /// Size of the statistics in a buffer.
    pub const SIZE: usize = size_of::<Self>();

    /// The statistics' bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut bytes = [0u8; Self::SIZE];
        let words64 = [
            self.received,
            self.samples,
            self.delivered,
            self.dropped,
            self.gaps,
            self.last_sequence,
        ];
        bytes[0..4].copy_from_slice(&self.sensor_id.to_ne_bytes());
        bytes[4..8].copy_from_slice(&self.connected.to_ne_bytes());
        for (index, word) in words64.iter().enumerate() {
            let at = 8 + index * 8;
            bytes[at..at + 8].copy_from_slice(&word.to_ne_bytes());
        }
        bytes[56..60].copy_from_slice(&self.rate.to_ne_bytes());
        bytes[60..64].copy_from_slice(&self.last_value.to_ne_bytes());
        bytes[64..68].copy_from_slice(&self.min.to_ne_bytes());
        bytes[68..72].copy_from_slice(&self.max.to_ne_bytes());
        bytes[72..76].copy_from_slice(&self.mean.to_ne_bytes());
        bytes[76..80].copy_from_slice(&self.connections.to_ne_bytes());
        bytes
    }

    /// Reads statistics from the first [`Self::SIZE`] bytes of `bytes` (`None` if shorter).
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..Self::SIZE)?;
        let u32_at = |at: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
        };
        let i32_at = |at: usize| -> Option<i32> {
            Some(i32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
        };
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_ne_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        Some(Self {
            sensor_id: u32_at(0)?,
            connected: u32_at(4)?,
            received: u64_at(8)?,
            samples: u64_at(16)?,
            delivered: u64_at(24)?,
            dropped: u64_at(32)?,
            gaps: u64_at(40)?,
            last_sequence: u64_at(48)?,
            rate: u32_at(56)?,
            last_value: i32_at(60)?,
            min: i32_at(64)?,
            max: i32_at(68)?,
            mean: i32_at(72)?,
            connections: u32_at(76)?,
        })
    }
}

const _: () = assert!(SensorStatistics::SIZE == 80);
