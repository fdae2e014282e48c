//! Streaming end to end on the KMDF simulation: boots a session, publishes a sensor (a
//! programmable target exposing the sensor interface that answers each read with a synthesized
//! sample, or with `--sensor` the real sensor driver), loads the stream driver, which finds the
//! sensor through its interface and keeps requests in flight with `ContinuousRequestTarget`,
//! shows the live count and rate for a few seconds (`--seconds N`, default 3), then removes
//! everything, unloads and prints a summary. Exits non-zero if anything was off.

#[cfg(windows)]
fn main() {
    eprintln!(
        "stream-demo runs the KMDF simulation; on Windows build and deploy the drivers instead"
    );
}

#[cfg(not(windows))]
fn main() -> std::process::ExitCode {
    demo::run()
}

#[cfg(not(windows))]
#[allow(clippy::cast_precision_loss, reason = "rates for printing")]
mod demo {
    use std::io::Write;
    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use dmf_sample_stream::interface::{
        GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR, GUID_DEVINTERFACE_DMF_SAMPLE_STREAM,
        IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS, SensorSample, StreamStatistics,
    };
    use wdk_sys::sim::pnp::{Device, Driver};
    use wdk_sys::sim::target::{ProgrammableTarget, Response};
    use wdk_sys::sim::user::File;
    use wdk_sys::sim::{self, Session};

    struct Options {
        seconds: u64,
        real_sensor: bool,
    }

    fn options() -> Result<Options, String> {
        let mut options = Options {
            seconds: 3,
            real_sensor: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--sensor" => options.real_sensor = true,
                "--seconds" => {
                    let value = args.next().ok_or("--seconds needs a value")?;
                    options.seconds = value
                        .parse()
                        .map_err(|_| format!("--seconds: not a number: {value}"))?;
                }
                "--help" | "-h" => {
                    return Err("usage: stream-demo [--seconds N] [--sensor]".to_string());
                }
                other => return Err(format!("unknown argument {other} (try --help)")),
            }
        }
        Ok(options)
    }

    /// The sensor the stream driver finds.
    enum Sensor {
        Programmable(ProgrammableTarget),
        Driver { driver: Driver, device: Device },
    }

    impl Sensor {
        fn publish(real: bool) -> Result<Self, String> {
            if real {
                let driver = Driver::load(dmf_sample_sensor::driver_entry)
                    .map_err(|status| format!("sensor driver: DriverEntry {status:#x}"))?;
                let device = driver
                    .add_device()
                    .map_err(|status| format!("sensor: AddDevice {status:#x}"))?;
                device
                    .start()
                    .map_err(|status| format!("sensor: start {status:#x}"))?;
                return Ok(Self::Driver { driver, device });
            }
            let target = ProgrammableTarget::with_interface(GUID_DEVINTERFACE_DMF_SAMPLE_SENSOR);
            target.set_responder(|received| {
                let sample = SensorSample {
                    sequence: received.sequence,
                    timestamp_100ns: 0,
                    value: 20_000 + (received.sequence % 100) as i32,
                    reserved: 0,
                };
                Response::data(&sample.to_bytes())
            });
            Ok(Self::Programmable(target))
        }

        fn describe(&self) -> &'static str {
            match self {
                Self::Programmable(_) => "programmable target exposing the sensor interface",
                Self::Driver { .. } => "sensor driver (dmf-sample-sensor)",
            }
        }

        /// Removes the sensor device; returns its driver, to unload last (the simulation
        /// parents objects created without a parent to the first driver loaded).
        fn remove(self) -> Option<Driver> {
            match self {
                Self::Programmable(target) => {
                    drop(target);
                    None
                }
                Self::Driver { driver, device } => {
                    device.remove();
                    Some(driver)
                }
            }
        }
    }

    fn statistics(file: &File) -> Result<StreamStatistics, String> {
        let mut output = [0u8; StreamStatistics::SIZE];
        file.device_io_control(IOCTL_DMF_SAMPLE_STREAM_GET_STATISTICS, &[], &mut output)
            .map_err(|status| format!("statistics IOCTL failed: {status:#x}"))?;
        StreamStatistics::from_bytes(&output).ok_or_else(|| "short statistics".to_string())
    }

    /// Polls until `condition` holds (bounded).
    fn wait_for(
        file: &File,
        what: &str,
        condition: impl Fn(&StreamStatistics) -> bool,
    ) -> Result<StreamStatistics, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stats = statistics(file)?;
            if condition(&stats) {
                return Ok(stats);
            }
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for {what}: {stats:?}"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn run() -> ExitCode {
        let options = match options() {
            Ok(options) => options,
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::from(2);
            }
        };
        let session = Session::begin();
        println!(
            "kmdf-sim session started (scheduling seed {})",
            session.seed()
        );
        let outcome = stream(&options);
        session.wait_idle();
        session.check_leaks();
        let counters = sim::counters();
        let reports = sim::verifier::take_reports();
        let mut ok = true;
        match &outcome {
            Ok(summary) => println!("{summary}"),
            Err(message) => {
                ok = false;
                println!("FAILED: {message}");
            }
        }
        println!(
            "completion nesting:       at most {} deep on a thread",
            sim::completion::high_water()
        );
        println!("verifier reports:         {}", reports.len());
        for report in &reports {
            println!("  {report:?}");
        }
        println!(
            "live objects:             {} (pool blocks {})",
            counters.live_objects, counters.live_pool_allocations
        );
        ok &=
            reports.is_empty() && counters.live_objects == 0 && counters.live_pool_allocations == 0;
        session.end();
        if ok {
            println!("stream-demo: OK");
            ExitCode::SUCCESS
        } else {
            println!("stream-demo: something was off");
            ExitCode::FAILURE
        }
    }

    fn stream(options: &Options) -> Result<String, String> {
        let sensor = Sensor::publish(options.real_sensor)?;
        println!("sensor: {}", sensor.describe());
        let driver = Driver::load(dmf_sample_stream::driver_entry)
            .map_err(|status| format!("stream driver: DriverEntry {status:#x}"))?;
        let device = driver
            .add_device()
            .map_err(|status| format!("stream: AddDevice {status:#x}"))?;
        device
            .start()
            .map_err(|status| format!("stream: start {status:#x}"))?;
        println!(
            "stream driver loaded: {} requests in flight through ContinuousRequestTarget",
            dmf_sample_stream::STREAMING_REQUESTS
        );
        let file = File::open_interface(&GUID_DEVINTERFACE_DMF_SAMPLE_STREAM)
            .map_err(|status| format!("open the stream interface: {status:#x}"))?;
        let first = wait_for(&file, "the first sample", |s| s.samples > 0)?;

        let started = Instant::now();
        let duration = Duration::from_secs(options.seconds);
        let mut last = (started, first.samples);
        let mut stdout = std::io::stdout();
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let now = Instant::now();
            let stats = statistics(&file)?;
            let rate = (stats.samples - last.1) as f64 / (now - last.0).as_secs_f64();
            last = (now, stats.samples);
            let _ = write!(
                stdout,
                "\r  {:>5.1} s  requests streamed {:>10}  rate {:>10.0}/s  last sample #{} ({:.3} C)   ",
                (now - started).as_secs_f64(),
                stats.samples,
                rate,
                stats.last_sample.sequence,
                f64::from(stats.last_sample.value) / 1000.0
            );
            let _ = stdout.flush();
            if now - started >= duration {
                break;
            }
        }
        println!();
        let end = statistics(&file)?;
        let elapsed = started.elapsed();

        // Stop cleanly: the sensor goes first (streaming stops on its removal), then the stream
        // device and its driver.
        let sensor_driver = sensor.remove();
        let after = wait_for(&file, "the stream to stop", |s| s.connected == 0)?;
        drop(file);
        device.remove();
        driver.unload();
        if let Some(sensor_driver) = sensor_driver {
            sensor_driver.unload();
        }

        let mut problems = Vec::new();
        if after.errors > 0 && options.real_sensor {
            problems.push(format!("{} failed completions", after.errors));
        }
        if after.duplicates > 0 {
            problems.push(format!("{} duplicate samples", after.duplicates));
        }
        if after.samples < first.samples + 1 {
            problems.push("no sample streamed".to_string());
        }
        let streamed = end.samples - first.samples;
        let summary = format!(
            "summary:\n  requests streamed:        {} ({} during the {:.1} s shown)\n  average rate:             {:.0} requests/s\n  completions at removal:   {} cancelled, {} failed\n  duplicates / reordered:   {} / {}",
            after.samples,
            streamed,
            elapsed.as_secs_f64(),
            streamed as f64 / elapsed.as_secs_f64(),
            after.cancelled,
            after.errors,
            after.duplicates,
            after.reordered
        );
        if problems.is_empty() {
            Ok(summary)
        } else {
            Err(format!("{summary}\n  problems: {}", problems.join(", ")))
        }
    }
}
