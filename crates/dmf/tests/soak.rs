//! Soak: streamed requests through `ContinuousRequestTarget` with random stop/start from two
//! threads, single requests sent with `send_ex` and cancelled (or answered) from a third, and
//! the target removed mid-stream at the end of every epoch (a new one arrives for the next),
//! seeded by the session's seed. Checked: every request the targets received completed exactly
//! once, every single request's callback ran exactly once, every buffer is back in its pool,
//! no reference is left, and live objects are back to zero.
//!
//! CI runs 20,000 streamed requests; the full soak is a million:
//!
//! ```sh
//! cargo test -p dmf --test soak -- --ignored --nocapture
//! ```
//!
//! (`SOAK_REQUESTS=<n>` sets the count of the default test; `KMDF_SIM_SEED=<seed>` replays
//! the seed it prints, as far as thread timing allows.) The `DeviceInterfaceMultipleTarget`
//! soak, sensors arriving and leaving from two threads while every target streams, is
//! `sensors_arrive_and_leave_soak` in that module's test file.
#![cfg(not(windows))]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use dmf::core::ModuleAttributes;
use dmf::modules::continuous_request_target::{
    BufferDisposition, ContinuousRequestTarget, ContinuousRequestTargetConfig,
};
use dmf::modules::request_target::{CompletionOption, RequestType};
use dmf::wdf::NtStatus;
use wdk_sys::sim::target::{ProgrammableTarget, Response};
use wdk_sys::sim::{self, Session};

const STREAM_IOCTL: u32 = 0x22_2040;
const SINGLE_IOCTL: u32 = 0x22_2044;
const OUTPUT_BUFFERS: usize = 8;
const INPUT_BUFFERS: usize = 4;
const SOON: Duration = Duration::from_secs(10);

/// Set while the current sensor is being removed: from then on a request may also fail with
/// the removal's status.
static REMOVING: AtomicBool = AtomicBool::new(false);
/// Streaming requests the sensors received.
static STREAMED: AtomicU64 = AtomicU64::new(0);

/// A completion status the soak accepts.
fn acceptable(status: NtStatus) -> bool {
    status.is_success()
        || status == NtStatus::CANCELLED
        || (REMOVING.load(Ordering::SeqCst) && status == NtStatus::NO_SUCH_DEVICE)
}

/// A small seeded generator (xorshift64*), shared by threads.
struct Rng(AtomicU64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed | 1))
    }

    fn next(&self) -> u64 {
        let mut x = self.0.load(Ordering::Relaxed);
        loop {
            let mut y = x;
            y ^= y >> 12;
            y ^= y << 25;
            y ^= y >> 27;
            match self
                .0
                .compare_exchange_weak(x, y, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return y.wrapping_mul(0x2545_F491_4F6C_DD1D),
                Err(current) => x = current,
            }
        }
    }

    fn below(&self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
struct Totals {
    streamed: u64,
    singles: u64,
    cancelled_singles: u64,
    starts: u64,
    stops: u64,
    removals: u64,
}

/// A sensor that answers streaming requests inline or from a worker (seeded), and holds
/// single requests until they are cancelled or released.
fn sensor(epoch: usize, rng: &Arc<Rng>) -> ProgrammableTarget {
    let device = ProgrammableTarget::create(&format!("\\??\\Soak{epoch}"));
    let rng = Arc::clone(rng);
    device.set_responder(move |r| {
        if r.ioctl == SINGLE_IOCTL {
            return Response::Hold;
        }
        STREAMED.fetch_add(1, Ordering::Relaxed);
        if rng.below(8) == 0 {
            Response::data(&r.input).from_worker()
        } else {
            Response::data(&r.input)
        }
    });
    device
}

#[allow(clippy::too_many_lines, reason = "one soak, read top to bottom")]
fn soak(requests: u64) -> Totals {
    let session = Session::begin();
    let seed = session.seed();
    if requests >= 20_000 {
        println!("soak: {requests} streamed requests, KMDF_SIM_SEED={seed}");
    }
    let rng = Arc::new(Rng::new(seed));
    STREAMED.store(0, Ordering::Relaxed);
    let (driver, host) = common::boot();
    let baseline = sim::counters().live_objects;
    let outputs = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&outputs);
    let crt = Arc::new(
        ContinuousRequestTarget::create(
            common::parent(&host),
            ContinuousRequestTargetConfig {
                continuous_request_count: 4,
                buffer_count_input: INPUT_BUFFERS,
                buffer_input_size: 8,
                buffer_count_output: OUTPUT_BUFFERS,
                buffer_output_size: 8,
                buffer_context_output_size: 4,
                request_type: RequestType::Ioctl,
                ioctl: STREAM_IOCTL,
                buffer_input: Some(Box::new(|data, _| {
                    data.fill(0x5A);
                    8
                })),
                buffer_output: Some(Box::new(move |buffer, status| {
                    assert!(
                        buffer.is_some(),
                        "the output buffer comes with its callback"
                    );
                    assert!(acceptable(status), "{status:?}");
                    if status.is_success() {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    BufferDisposition::ContinuousRequestTargetAndContinueStreaming
                })),
                ..ContinuousRequestTargetConfig::default()
            },
            ModuleAttributes::new(),
        )
        .expect("module created"),
    );
    let epochs = usize::try_from((requests / 20_000).clamp(5, 50)).unwrap();
    let per_epoch = requests.div_ceil(epochs as u64);
    let mut totals = Totals::default();
    let mut received = 0u64;
    // Single requests: id -> callbacks seen.
    let singles: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let next_single = Arc::new(AtomicU64::new(0));
    for epoch in 0..epochs {
        let device = Arc::new(sensor(epoch, &rng));
        let target = common::open_target(&host, device.symbolic_link());
        crt.io_target_set(&target).unwrap();
        REMOVING.store(false, Ordering::SeqCst);
        let removed = Arc::new(AtomicBool::new(false));
        let starts = Arc::new(AtomicUsize::new(0));
        let stops = Arc::new(AtomicUsize::new(0));
        let controllers: Vec<_> = (0..2)
            .map(|_| {
                let (crt, rng, removed) =
                    (Arc::clone(&crt), Arc::clone(&rng), Arc::clone(&removed));
                let (starts, stops) = (Arc::clone(&starts), Arc::clone(&stops));
                std::thread::spawn(move || {
                    while !removed.load(Ordering::SeqCst) {
                        let started = crt.start();
                        if !removed.load(Ordering::SeqCst) {
                            // A stop from the other thread may interrupt this start.
                            assert!(
                                started == Ok(()) || started == Err(NtStatus::CANCELLED),
                                "{started:?}"
                            );
                        }
                        starts.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_micros(rng.below(500)));
                        match rng.below(4) {
                            0 => crt.stop(),
                            1 => crt.stop_and_wait(),
                            _ => continue,
                        }
                        stops.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let canceller = {
            let (crt, rng, removed) = (Arc::clone(&crt), Arc::clone(&rng), Arc::clone(&removed));
            let (singles, next_single) = (Arc::clone(&singles), Arc::clone(&next_single));
            let device = Arc::clone(&device);
            std::thread::spawn(move || {
                let (mut sent, mut cancelled) = (0u64, 0u64);
                let (tx, rx) = mpsc::channel();
                while !removed.load(Ordering::SeqCst) {
                    let id = next_single.fetch_add(1, Ordering::Relaxed);
                    let (tx, record) = (tx.clone(), Arc::clone(&singles));
                    let token = crt.send_ex(
                        &id.to_le_bytes(),
                        8,
                        RequestType::Ioctl,
                        SINGLE_IOCTL,
                        0,
                        if rng.below(2) == 0 {
                            CompletionOption::Dispatch
                        } else {
                            CompletionOption::Passive
                        },
                        Some(Box::new(move |result| {
                            *record.lock().unwrap().entry(id).or_default() += 1;
                            tx.send(result.status).unwrap();
                        })),
                    );
                    let Ok(token) = token else {
                        assert!(removed.load(Ordering::SeqCst), "{token:?}");
                        break;
                    };
                    sent += 1;
                    singles.lock().unwrap().entry(id).or_default();
                    if rng.below(3) == 0 {
                        // Answered by the sensor instead.
                        let _ = device.wait_held(1, Duration::from_millis(100));
                        let _ = device.release(1, &Response::data(&id.to_le_bytes()));
                    } else if crt.cancel(token) {
                        cancelled += 1;
                    }
                    let status = rx.recv_timeout(SOON).expect("single request completed");
                    assert!(acceptable(status), "{status:?}");
                }
                (sent, cancelled)
            })
        };
        // Wait for this epoch's share, then remove the sensor mid-stream.
        let deadline = Instant::now() + Duration::from_mins(10);
        let quota = per_epoch * (epoch as u64 + 1);
        while STREAMED.load(Ordering::Relaxed) < quota {
            assert!(Instant::now() < deadline, "epoch {epoch} stalled");
            if !crt.is_streaming() && crt.live_streams() == 0 {
                // Both controllers between stop and start: nudge.
                let _ = crt.start();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        REMOVING.store(true, Ordering::SeqCst);
        removed.store(true, Ordering::SeqCst);
        device.surprise_remove();
        for controller in controllers {
            controller.join().unwrap();
        }
        let (sent, cancels) = canceller.join().unwrap();
        crt.stop_and_wait();
        common::wait_until("streams end", || crt.live_streams() == 0);
        crt.io_target_clear();
        drop(target);
        session.wait_idle();
        let counters = device.counters();
        assert_eq!(device.pending(), 0, "epoch {epoch}: nothing left pending");
        // Each received request completed once: answered, cancelled, or failed by the
        // removal (that count also has the sends refused after it, never received).
        let completed = counters.answered + counters.cancelled;
        assert!(
            completed <= counters.received
                && counters.received <= completed + counters.failed_removed,
            "epoch {epoch}: every request completed exactly once: {counters:?}"
        );
        assert_eq!(crt.core_references(), 0);
        assert_eq!(crt.output_buffers_free(), Some(OUTPUT_BUFFERS));
        assert_eq!(crt.input_buffers_free(), Some(INPUT_BUFFERS));
        received += counters.received;
        totals.singles += sent;
        totals.cancelled_singles += cancels;
        totals.starts += starts.load(Ordering::Relaxed) as u64;
        totals.stops += stops.load(Ordering::Relaxed) as u64;
        totals.removals += 1;
    }
    totals.streamed = STREAMED.load(Ordering::Relaxed);
    assert!(received >= totals.streamed);
    let singles = singles.lock().unwrap();
    assert_eq!(singles.len() as u64, totals.singles);
    assert!(
        singles.values().all(|&n| n == 1),
        "every single request's callback ran exactly once"
    );
    // A send failed by the removal never reached a sensor, but only answers succeed.
    assert!(outputs.load(Ordering::Relaxed) <= totals.streamed);
    assert!(totals.streamed >= requests);
    drop(crt);
    assert_eq!(sim::counters().live_objects, baseline, "nothing leaked");
    host.remove();
    driver.unload();
    assert_eq!(sim::counters().live_objects, 0, "live objects back to zero");
    assert_eq!(sim::counters().live_pool_allocations, 0);
    session.end();
    totals
}

fn report(requests: u64) {
    let started = Instant::now();
    let totals = soak(requests);
    let elapsed = started.elapsed();
    println!(
        "soak: {} streamed + {} single requests ({} cancelled), {} starts, {} stops, {} \
         removals in {elapsed:.1?} ({:.0} requests/s)",
        totals.streamed,
        totals.singles,
        totals.cancelled_singles,
        totals.starts,
        totals.stops,
        totals.removals,
        f64::from(u32::try_from(totals.streamed).unwrap_or(u32::MAX)) / elapsed.as_secs_f64()
    );
}

#[test]
fn soak_streaming_with_stops_cancels_and_removals() {
    let requests = std::env::var("SOAK_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    report(requests);
}

#[test]
#[ignore = "the full soak (a million requests): run with --ignored"]
fn soak_a_million_requests() {
    report(1_000_000);
}

/// Short soaks under many scheduling seeds (see `common/schedules.rs`):
/// `SCHEDULE_SEEDS=1000 cargo test -p dmf --test soak -- schedules` is the long run.
#[test]
fn short_soaks_under_many_schedules() {
    common::schedules::under_seeds("soak", common::schedules::CI_SEEDS, || {
        let _ = soak(2_000);
    });
}
