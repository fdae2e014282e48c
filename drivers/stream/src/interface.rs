//! What the stream driver consumes (the sensor's interface, which it does not link: each
//! driver is its own binary) and what it offers (its own interface and statistics IOCTL).

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

/// The device interface class the stream device registers:
/// `{336C453D-5D10-4248-A05C-738D62D73CE4}`.
pub const GUID_DEVINTERFACE_DMF_SAMPLE_STREAM: GUID = GUID {
    Data1: 0x336c_453d,
    Data2: 0x5d10,
    Data3: 0x4248,
    Data4: [0xa0, 0x5c, 0x73, 0x8d, 0x62, 0xd7, 0x3c, 0xe4],
};

/// Reads the stream device's [`StreamStatistics`] (`0x226040`): no input, output at least
/// [`StreamStatistics::SIZE`] bytes (`STATUS_BUFFER_TOO_SMALL` otherwise).
pub const IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS: u32 = ctl_code(
    FILE_DEVICE_UNKNOWN,
    0x810,
    METHOD_BUFFERED,
    FILE_READ_ACCESS,
);

/// One sensor reading, as the sensor's read-sample IOCTL returns it (native byte order, no
/// padding; the same layout as the sensor driver's `SensorSample`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SensorSample {
    /// 1 for the sensor's first sample, then one more for each sample it returns.
    pub sequence: u64,
    /// When the sample was taken: system interrupt time in 100 ns units.
    pub timestamp_100ns: u64,
    /// The reading: a temperature in thousandths of a degree Celsius.
    pub value: i32,
    /// Zero.
    pub reserved: u32,
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
        bytes[20..24].copy_from_slice(&self.reserved.to_ne_bytes());
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
            reserved: u32::from_ne_bytes(bytes[20..24].try_into().ok()?),
        })
    }
}

const _: () = assert!(SensorSample::SIZE == 24);

/// What the stream device counted since it was added (native byte order, no padding).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamStatistics {
    /// Samples received (successful completions carrying a whole sample).
    pub samples: u64,
    /// Completions that failed (other than cancellation) or carried less than a sample.
    pub errors: u64,
    /// Completions cancelled (power-down, stop, removal).
    pub cancelled: u64,
    /// Samples that arrived after one with a higher sequence number from the same sensor
    /// (concurrent completions may finish in any order; not an error).
    pub reordered: u64,
    /// Samples whose sequence number had been received already from the same sensor (an
    /// error: each sample must arrive once).
    pub duplicates: u64,
    /// Sensors opened so far.
    pub connections: u32,
    /// 1 while a sensor is open and streaming to this device, else 0.
    pub connected: u32,
    /// The sample with the highest sequence number from the current (or last) sensor (zero
    /// before the first).
    pub last_sample: SensorSample,
}

impl StreamStatistics {
    /// Size of the statistics in a buffer.
    pub const SIZE: usize = size_of::<Self>();

    /// The statistics' bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut bytes = [0u8; Self::SIZE];
        bytes[0..8].copy_from_slice(&self.samples.to_ne_bytes());
        bytes[8..16].copy_from_slice(&self.errors.to_ne_bytes());
        bytes[16..24].copy_from_slice(&self.cancelled.to_ne_bytes());
        bytes[24..32].copy_from_slice(&self.reordered.to_ne_bytes());
        bytes[32..40].copy_from_slice(&self.duplicates.to_ne_bytes());
        bytes[40..44].copy_from_slice(&self.connections.to_ne_bytes());
        bytes[44..48].copy_from_slice(&self.connected.to_ne_bytes());
        bytes[48..72].copy_from_slice(&self.last_sample.to_bytes());
        bytes
    }

    /// Reads statistics from the first [`Self::SIZE`] bytes of `bytes` (`None` if shorter).
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..Self::SIZE)?;
        Some(Self {
            samples: u64::from_ne_bytes(bytes[0..8].try_into().ok()?),
            errors: u64::from_ne_bytes(bytes[8..16].try_into().ok()?),
            cancelled: u64::from_ne_bytes(bytes[16..24].try_into().ok()?),
            reordered: u64::from_ne_bytes(bytes[24..32].try_into().ok()?),
            duplicates: u64::from_ne_bytes(bytes[32..40].try_into().ok()?),
            connections: u32::from_ne_bytes(bytes[40..44].try_into().ok()?),
            connected: u32::from_ne_bytes(bytes[44..48].try_into().ok()?),
            last_sample: SensorSample::from_bytes(&bytes[48..72])?,
        })
    }
}

const _: () = assert!(StreamStatistics::SIZE == 72);
