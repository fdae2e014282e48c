//! What user mode (and other drivers) need to talk to the sensor: the device interface class,
//! the I/O control codes and the sample layout.

use wdk_sys::{FILE_DEVICE_UNKNOWN, FILE_READ_ACCESS, FILE_WRITE_ACCESS, GUID, METHOD_BUFFERED};

/// The device interface class every sensor registers:
/// `{387E8197-3183-4F3F-9178-9DD19D58FFE2}`.
pub const GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR: GUID = GUID {
    Data1: 0x387e_8197,
    Data2: 0x3183,
    Data3: 0x4f3f,
    Data4: [0x91, 0x78, 0x9d, 0xd1, 0x9d, 0x58, 0xff, 0xe2],
};

/// The `CTL_CODE` macro of `devioctl.h`: device type, access, function and transfer method.
#[must_use]
pub const fn ctl_code(device_type: u32, function: u32, method: u32, access: u32) -> u32 {
    (device_type << 16) | (access << 14) | (function << 2) | method
}

/// Reads one [`SensorSample`]: no input, output at least [`SensorSample::SIZE`] bytes
/// (`STATUS_BUFFER_TOO_SMALL` otherwise). Returns `SensorSample::SIZE` bytes.
pub const IOCTL_DMF_SAMPLE_SENSOR_READ_SAMPLE: u32 = ctl_code(
    FILE_DEVICE_UNKNOWN,
    0x800,
    METHOD_BUFFERED,
    FILE_READ_ACCESS,
);

/// Sets the per-sample latency: input a `u32` (native endian) of microseconds, at most
/// [`MAX_LATENCY_MICROSECONDS`] (`STATUS_INVALID_PARAMETER` otherwise); no output. Later reads
/// wait in the sensor, which takes one sample per latency period and answers them in arrival
/// order (a read that finds none waiting completes one period after it arrived); a waiting read
/// can be cancelled. With 0, a read that finds none waiting completes at once.
pub const IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY: u32 = ctl_code(
    FILE_DEVICE_UNKNOWN,
    0x801,
    METHOD_BUFFERED,
    FILE_WRITE_ACCESS,
);

/// The largest latency [`IOCTL_DMF_SAMPLE_SENSOR_SET_LATENCY`] accepts (one second).
pub const MAX_LATENCY_MICROSECONDS: u32 = 1_000_000;

/// One reading, as the read-sample IOCTL returns it (native byte order, no padding).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SensorSample {
    /// 1 for the device's first sample, then one more for each sample it returns.
    pub sequence: u64,
    /// When the sample was taken: system interrupt time in 100 ns units.
    pub timestamp_100ns: u64,
    /// The reading: a temperature in thousandths of a degree Celsius.
    pub value: i32,
    /// The sensor's identity: a number unique to the sensor device (given when it is added,
    /// never 0), so a client that streams from several sensors through one callback can tell
    /// their samples apart.
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
        let bytes: &[u8; Self::SIZE] = bytes.get(..Self::SIZE)?.try_into().ok()?;
        let (sequence, rest) = bytes.split_at(8);
        let (timestamp, rest) = rest.split_at(8);
        let (value, sensor_id) = rest.split_at(4);
        Some(Self {
            sequence: u64::from_ne_bytes(sequence.try_into().ok()?),
            timestamp_100ns: u64::from_ne_bytes(timestamp.try_into().ok()?),
            value: i32::from_ne_bytes(value.try_into().ok()?),
            sensor_id: u32::from_ne_bytes(sensor_id.try_into().ok()?),
        })
    }

    /// The simulated reading of sample `sequence`: a triangle wave between 20.000 and
    /// 25.000 degrees, 50 thousandths per sample.
    #[must_use]
    pub const fn simulated_value(sequence: u64) -> i32 {
        let phase = (sequence % 200) as i32;
        let step = if phase < 100 { phase } else { 200 - phase };
        20_000 + step * 50
    }
}

const _: () = assert!(SensorSample::SIZE == 24);
