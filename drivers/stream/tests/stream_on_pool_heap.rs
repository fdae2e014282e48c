//! The stream and sensor drivers with their heap in pool, as on Windows, where they install
//! `wdk_alloc::WdkAllocator`: streaming, a power cycle and teardown leave no pool behind and
//! break no rule. (The simulation is the framework on non-Windows hosts only.)
#![cfg(not(windows))]

use std::time::{Duration, Instant};

use dmf_sample_stream::interface::{
    GUID_DEVINTERFACE_DMF_SAMPLE_STREAM, IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS, StreamStatistics,
};
use wdk_sys::sim::heap::PoolAllocator;
use wdk_sys::sim::pnp::Driver;
use wdk_sys::sim::user::File;
use wdk_sys::sim::{self, Session};

#[global_allocator]
static HEAP: PoolAllocator = PoolAllocator;

fn samples(file: &File) -> u64 {
    let mut output = [0u8; StreamStatistics::SIZE];
    assert_eq!(
        file.device_io_control(IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS, &[], &mut output),
        Ok(StreamStatistics::SIZE)
    );
    StreamStatistics::from_bytes(&output)
        .expect("whole statistics")
        .samples
}

fn wait_for_samples(file: &File, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while samples(file) < at_least {
        assert!(Instant::now() < deadline, "timed out waiting for samples");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn streams_and_tears_down_with_the_heap_in_pool() {
    let session = Session::begin();
    let sensor_driver = Driver::load(dmf_sample_sensor::driver_entry).expect("sensor loads");
    let sensor = sensor_driver.add_device().expect("sensor added");
    sensor.start().expect("sensor started");
    let stream_driver = Driver::load(dmf_sample_stream::driver_entry).expect("stream loads");
    let stream = stream_driver.add_device().expect("stream added");
    stream.start().expect("stream started");
    let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_STREAM).expect("opens");
    wait_for_samples(&file, 100);
    stream.power_down();
    let stopped = samples(&file);
    stream.power_up().expect("powered up");
    wait_for_samples(&file, stopped + 100);
    drop(file);
    stream.remove();
    stream_driver.unload();
    sensor.remove();
    sensor_driver.unload();
    session.wait_idle();
    assert!(
        sim::counters().allocations > 0,
        "the drivers' heap was pool"
    );
    session.end();
}
