//! The hub monitor: keeps several `WAIT_SAMPLES` requests parked on the hub driver from a
//! reader thread, checks every sample it gets (per-sensor order, no duplicates), and shows a
//! live per-sensor table from `GET_SENSORS` a few times a second. At the end it prints a
//! summary and its checks, and exits non-zero if one failed.
//!
//! On non-Windows hosts it boots the KMDF simulation, loads the sensor driver with `--sensors`
//! sensors and the hub driver, and with `--churn` makes sensors arrive and leave (one of them
//! by surprise removal) while it runs; it also checks the simulation's verifier and that no
//! object is left. On Windows it opens the installed hub's device interface instead.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

mod protocol;
#[cfg(not(windows))]
mod sim;
#[cfg(windows)]
mod windows;

use protocol::{HubSample, SensorStatistics};

/// Command line.
#[derive(Debug, Parser)]
#[command(version, about = "Live per-sensor table of the DMF sample hub driver")]
pub struct Options {
    /// Sensors at the start (simulation).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub sensors: u32,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub seconds: u64,
    /// Sensors arrive and leave while it runs, and one is surprise-removed (simulation).
    #[arg(long)]
    pub churn: bool,
    /// Seed of the churn schedule (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// No live table (automatic when stdout is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

/// `WAIT_SAMPLES` requests the reader keeps parked.
const PARKED: usize = 4;

/// Samples per `WAIT_SAMPLES` buffer.
const BATCH_SAMPLES: usize = 128;

/// What a parked request ended with.
pub enum Reaped {
    /// Its output (`WAIT_SAMPLES` succeeded).
    Samples(Vec<HubSample>),
    /// It was cancelled.
    Cancelled,
    /// It failed with this code (`NTSTATUS` or Win32 error).
    Failed(i64),
}

/// A connection to the hub's interface.
pub trait Hub: Sync {
    /// A `WAIT_SAMPLES` request in flight.
    type Wait;
    /// `GET_SENSORS`.
    fn sensors(&self) -> Result<Vec<SensorStatistics>, String>;
    /// Issues an overlapped `WAIT_SAMPLES` with an output buffer of `length` bytes.
    fn wait_samples(&self, length: usize) -> Result<Self::Wait, String>;
    /// Waits up to `timeout` for `wait` to complete.
    fn reap(&self, wait: &Self::Wait, timeout: Duration) -> Option<Reaped>;
    /// Cancels `wait` (`CancelIoEx`).
    fn cancel(&self, wait: &Self::Wait);
}

/// What the reader thread saw, per sensor.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    samples: u64,
    last_sequence: u64,
    /// Samples whose sequence number was not above the previous one (a duplicate, or out of
    /// order): must stay 0.
    out_of_order: u64,
}

#[derive(Debug, Default)]
struct Collected {
    sensors: std::collections::BTreeMap<u32, Seen>,
    batches: u64,
    failures: Vec<i64>,
}

impl Collected {
    fn take(&mut self, samples: &[HubSample]) {
        self.batches += 1;
        for sample in samples {
            let seen = self.sensors.entry(sample.sensor_id).or_default();
            if sample.sequence <= seen.last_sequence {
                seen.out_of_order += 1;
            } else {
                seen.last_sequence = sample.sequence;
            }
            seen.samples += 1;
        }
    }
}

type Shared = std::sync::Mutex<Collected>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Collected> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The reader thread: keeps [`PARKED`] requests parked and reaps them oldest first (the order
/// the hub completes them in) until `stop`, then cancels the rest and takes what they hold.
fn reader<H: Hub>(hub: &H, shared: &Shared, stop: &std::sync::atomic::AtomicBool) {
    use std::sync::atomic::Ordering;
    let length = BATCH_SAMPLES * HubSample::SIZE;
    let mut parked = std::collections::VecDeque::new();
    let issue = |parked: &mut std::collections::VecDeque<H::Wait>| match hub.wait_samples(length) {
        Ok(wait) => parked.push_back(wait),
        Err(message) => {
            eprintln!("monitor: WAIT_SAMPLES: {message}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    while !stop.load(Ordering::Acquire) {
        while parked.len() < PARKED {
            issue(&mut parked);
            if stop.load(Ordering::Acquire) {
                break;
            }
        }
        let Some(oldest) = parked.front() else {
            continue;
        };
        let Some(reaped) = hub.reap(oldest, Duration::from_millis(20)) else {
            continue;
        };
        parked.pop_front();
        record(shared, reaped);
    }
    for wait in &parked {
        hub.cancel(wait);
    }
    for wait in parked.drain(..) {
        match hub.reap(&wait, Duration::from_secs(10)) {
            Some(reaped) => record(shared, reaped),
            None => lock(shared).failures.push(-1),
        }
    }
}

fn record(shared: &Shared, reaped: Reaped) {
    match reaped {
        Reaped::Samples(samples) => lock(shared).take(&samples),
        Reaped::Cancelled => {}
        Reaped::Failed(code) => lock(shared).failures.push(code),
    }
}

/// What the platform does around the run: the simulation's sensors and churn.
pub trait Stage {
    /// Called a few times a second; returns a line about what it did, if anything.
    fn tick(&mut self, elapsed: Duration) -> Option<String>;
    /// The run is over: stops the sensors if it can. True if every sensor is gone (so every
    /// sample the hub received can be accounted for).
    fn finish(&mut self) -> bool;
}

/// Thousandths of a degree as `12.345`.
fn celsius(milli: i32) -> String {
    let sign = if milli < 0 { "-" } else { "" };
    let milli = milli.unsigned_abs();
    format!("{sign}{}.{:03}", milli / 1000, milli % 1000)
}

fn table(rows: &[SensorStatistics], collected: &Collected) -> Vec<String> {
    let mut lines = vec![format!(
        "{:>7} {:<12} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}",
        "sensor", "state", "samples", "rate/s", "last C", "min", "mean", "max", "gaps", "drops"
    )];
    for s in rows {
        let seen = collected
            .sensors
            .get(&s.sensor_id)
            .map_or(0, |seen| seen.samples);
        let state = if s.connected == 1 {
            "connected"
        } else {
            "gone"
        };
        let rate = if s.connected == 1 { s.rate } else { 0 };
        lines.push(format!(
            "{:>7} {:<12} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}",
            s.sensor_id,
            state,
            seen,
            rate,
            celsius(s.last_value),
            celsius(s.min),
            celsius(s.mean),
            celsius(s.max),
            s.gaps,
            s.dropped
        ));
    }
    lines
}

/// The rows of the live table: the connected sensors and the last few that left.
fn on_screen(rows: &[SensorStatistics]) -> Vec<SensorStatistics> {
    const GONE_SHOWN: usize = 4;
    let mut gone: Vec<&SensorStatistics> = rows.iter().filter(|s| s.connected == 0).collect();
    gone.sort_by_key(|s| s.sensor_id);
    let skip = gone.len().saturating_sub(GONE_SHOWN);
    let mut shown: Vec<SensorStatistics> = gone.into_iter().skip(skip).copied().collect();
    shown.extend(rows.iter().filter(|s| s.connected == 1));
    shown.sort_by_key(|s| s.sensor_id);
    shown
}

/// The checks at the end; each a line, `Err` when it failed.
fn checks(
    rows: &[SensorStatistics],
    collected: &Collected,
    all_gone: bool,
) -> Vec<Result<String, String>> {
    let mut results = Vec::new();
    let duplicates: u64 = collected.sensors.values().map(|s| s.out_of_order).sum();
    results.push(if duplicates == 0 {
        Ok("no duplicate or out-of-order sample".to_string())
    } else {
        Err(format!("{duplicates} duplicate or out-of-order samples"))
    });
    let mut unaccounted = Vec::new();
    for s in rows {
        let seen = collected
            .sensors
            .get(&s.sensor_id)
            .copied()
            .unwrap_or_default();
        if seen.samples != s.delivered {
            unaccounted.push(format!(
                "sensor {}: hub delivered {}, monitor got {}",
                s.sensor_id, s.delivered, seen.samples
            ));
        }
        if all_gone && (s.received != s.delivered + s.dropped || s.last_sequence != s.received) {
            unaccounted.push(format!(
                "sensor {}: received {} (up to #{}), delivered {}, dropped {}",
                s.sensor_id, s.received, s.last_sequence, s.delivered, s.dropped
            ));
        }
    }
    let received: u64 = rows.iter().map(|s| s.received).sum();
    let dropped: u64 = rows.iter().map(|s| s.dropped).sum();
    let delivered: u64 = collected.sensors.values().map(|s| s.samples).sum();
    results.push(if unaccounted.is_empty() {
        Ok(format!(
            "every sample delivered or counted as dropped: {received} received = {delivered} delivered + {dropped} dropped{}",
            if all_gone { "" } else { " (sensors still streaming: delivered counts only)" }
        ))
    } else {
        Err(format!("samples unaccounted for: {}", unaccounted.join("; ")))
    });
    results.push(if collected.failures.is_empty() {
        Ok(format!("{} batches, no failed request", collected.batches))
    } else {
        Err(format!("failed requests: {:?}", collected.failures))
    });
    results
}

/// Polls `GET_SENSORS` until every sample the hub received is in the monitor's hands or
/// dropped (bounded).
fn settle<H: Hub>(hub: &H, shared: &Shared) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = hub.sensors()?;
        let settled = {
            let collected = lock(shared);
            rows.iter().all(|s| {
                s.received == s.delivered + s.dropped
                    && collected.sensors.get(&s.sensor_id).map_or(0, |c| c.samples) == s.delivered
            })
        };
        if settled || Instant::now() > deadline {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The run on any platform; `Ok(true)` if every check passed.
pub fn monitor<H: Hub>(hub: &H, stage: &mut dyn Stage, options: &Options) -> Result<bool, String> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let animated = !options.quiet && std::io::stdout().is_terminal();
    let shared = Shared::default();
    let stop = AtomicBool::new(false);
    let duration = Duration::from_secs(options.seconds);
    let mut events: Vec<String> = Vec::new();
    // Every sensor seen, as last reported: the hub reuses the rows of sensors that left (and
    // whose samples are all accounted for) when its table is full.
    let mut known: std::collections::BTreeMap<u32, SensorStatistics> =
        std::collections::BTreeMap::new();
    let all_gone = std::thread::scope(|scope| {
        let reading = scope.spawn(|| reader(hub, &shared, &stop));
        let started = Instant::now();
        let mut drawn = 0usize;
        let mut stdout = std::io::stdout();
        let outcome = loop {
            std::thread::sleep(Duration::from_millis(250));
            let elapsed = started.elapsed();
            if let Some(event) = stage.tick(elapsed) {
                if !animated {
                    println!("  {:>5.1} s  {event}", elapsed.as_secs_f64());
                }
                events.push(format!("{:>5.1} s  {event}", elapsed.as_secs_f64()));
            }
            let rows = match hub.sensors() {
                Ok(rows) => rows,
                Err(message) => break Err(message),
            };
            known.extend(rows.iter().map(|s| (s.sensor_id, *s)));
            if animated {
                let mut lines = vec![format!(
                    "DMF hub monitor  {:>5.1} / {} s   connected sensors: {}   requests parked: {}",
                    elapsed.as_secs_f64(),
                    options.seconds,
                    rows.iter().filter(|s| s.connected == 1).count(),
                    PARKED
                )];
                lines.extend(table(&on_screen(&rows), &lock(&shared)));
                lines.push(format!(
                    "last event: {}",
                    events.last().map_or("-", String::as_str)
                ));
                // Back over the previous frame, then draw this one.
                if drawn > 0 {
                    let _ = write!(stdout, "\x1b[{drawn}A");
                }
                for line in &lines {
                    let _ = writeln!(stdout, "\x1b[2K{line}");
                }
                let _ = write!(stdout, "\x1b[J");
                let _ = stdout.flush();
                drawn = lines.len();
            }
            if elapsed >= duration {
                let all_gone = stage.finish();
                if all_gone && let Err(message) = settle(hub, &shared) {
                    break Err(message);
                }
                break Ok(all_gone);
            }
        };
        stop.store(true, Ordering::Release);
        let _ = reading.join();
        // After the reader stopped: nothing more is delivered, so the counts agree.
        let rows = hub.sensors();
        if let Ok(rows) = &rows {
            known.extend(rows.iter().map(|s| (s.sensor_id, *s)));
        }
        outcome.and_then(|all_gone| rows.map(|_| all_gone))
    })?;
    let rows: Vec<SensorStatistics> = known.into_values().collect();
    let collected = lock(&shared);
    println!("summary after {} s:", options.seconds);
    for line in table(&rows, &collected) {
        println!("  {line}");
    }
    // Without the live table the events were printed as they happened.
    if animated && !events.is_empty() {
        println!("events:");
        for event in &events {
            println!("  {event}");
        }
    }
    let mut ok = true;
    println!("checks:");
    for result in checks(&rows, &collected, all_gone) {
        match result {
            Ok(line) => println!("  ok      {line}"),
            Err(line) => {
                ok = false;
                println!("  FAILED  {line}");
            }
        }
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let mut options = Options::parse();
    if !std::io::stdout().is_terminal() {
        options.quiet = true;
    }
    #[cfg(not(windows))]
    let outcome = sim::run(&options);
    #[cfg(windows)]
    let outcome = windows::run(&options);
    match outcome {
        Ok(true) => {
            println!("monitor: OK");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("monitor: a check failed");
            ExitCode::FAILURE
        }
        Err(message) => {
            println!("monitor: FAILED: {message}");
            ExitCode::FAILURE
        }
    }
}
