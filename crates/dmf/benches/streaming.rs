//! Steady-state streaming: `ContinuousRequestTarget` against a hand-written raw loop on the
//! same simulation, in the same run (both paths: `common/stream_paths.rs`).
//!
//! * Raw loop: `REQUESTS` requests written directly on `dmf::wdf` (`Request`, `IoTarget`,
//!   `Memory`, `WorkItem`); each completion counts, then its request is reused, formatted and
//!   sent again: by the sender, in a loop, when it completed before its send returned (the
//!   target completes inline), after a bounded number of rounds by the slot's work item.
//! * DMF: a `ContinuousRequestTarget` (Automatic mode) streaming the same IOCTL with the same
//!   number of requests and an output buffer of the same size; the output callback counts.
//!
//! Both stream to a programmable target that completes each request at once (inline, in the
//! sender's `WdfRequestSend`) with a 24-byte sample. The simulation's random scheduling delays
//! are off (seed 0). Each round measures the time to stream `COMPLETIONS` completions after a
//! warm-up and the heap allocations made meanwhile (a counting global allocator), divided by
//! the completions actually counted in that window. Prints requests/s of each, the ratio and
//! the allocations per streamed request, then runs the same two workloads under criterion.
//! Times are wall-clock and move with the machine's load; `streaming_callgrind` counts
//! instructions, which do not.
#![allow(
    clippy::cast_precision_loss,
    reason = "rates and per-request figures for printing"
)]

#[path = "common/stream_paths.rs"]
mod stream_paths;

use std::time::{Duration, Instant};

use criterion::Criterion;
use stream_paths::{Counter, DmfLoop, REQUESTS, RawLoop, Rig};
use wdk_sys::sim::Session;

#[global_allocator]
static GLOBAL: wdk_sys::sim::heap::CountingAllocator = wdk_sys::sim::heap::CountingAllocator;

/// Completions measured per round.
const COMPLETIONS: u64 = 20_000;
/// Completions streamed before a round's clock starts.
const WARM_UP: u64 = 2_000;
/// Rounds per path (alternating); the best round of each is reported.
const ROUNDS: usize = 3;

/// One measured window: time, allocations and completions counted.
#[derive(Clone, Copy)]
struct Window {
    elapsed: Duration,
    allocations: u64,
    completions: u64,
}

impl Window {
    fn rate(self) -> f64 {
        self.completions as f64 / self.elapsed.as_secs_f64()
    }

    fn allocations_per_request(self) -> f64 {
        self.allocations as f64 / self.completions as f64
    }

    fn time_per_request(self) -> f64 {
        self.elapsed.as_secs_f64() / self.completions as f64
    }
}

/// Measures the next `completions` (at least) completions counted by `counter`.
fn measure(counter: &Counter, at_least: u64) -> Window {
    let start_count = counter.get();
    counter.wait_spinning(start_count + WARM_UP);
    let from = counter.get();
    let allocations = wdk_sys::sim::heap::allocations();
    let started = Instant::now();
    counter.wait_spinning(from + at_least);
    let elapsed = started.elapsed();
    let allocations = wdk_sys::sim::heap::allocations() - allocations;
    // The streams go on while the clock stops: divide by what was counted meanwhile.
    let completions = counter.get() - from;
    Window {
        elapsed,
        allocations,
        completions,
    }
}

// ---- the comparison ----------------------------------------------------------------------

fn compare() {
    let session = Session::begin_with_seed(0);
    let rig = Rig::boot("\\??\\BenchStreamTarget");
    let mut raw = Vec::new();
    let mut dmf = Vec::new();
    for _ in 0..ROUNDS {
        let subject = RawLoop::start(&rig);
        raw.push(measure(&subject.shared.completed, COMPLETIONS));
        subject.stop();
        let subject = DmfLoop::start(&rig);
        dmf.push(measure(&subject.completed, COMPLETIONS));
        subject.stop();
    }
    rig.shut_down();
    session.end();

    let best = |windows: &[Window]| {
        *windows
            .iter()
            .min_by(|a, b| a.time_per_request().total_cmp(&b.time_per_request()))
            .expect("at least one round")
    };
    let (raw_best, dmf_best) = (best(&raw), best(&dmf));
    let rounds = |windows: &[Window]| {
        windows
            .iter()
            .map(|w| format!("{:.0}", w.rate()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "streaming, {REQUESTS} requests in flight, >= {COMPLETIONS} completions per round, best of {ROUNDS}, seed 0 (wall-clock: noisy under load):"
    );
    println!(
        "  raw WDF reuse/format/send loop: {:>9.0} requests/s  (rounds: {})  {:.2} allocations/request (simulation)",
        raw_best.rate(),
        rounds(&raw),
        raw_best.allocations_per_request()
    );
    println!(
        "  ContinuousRequestTarget:        {:>9.0} requests/s  (rounds: {})  {:.2} allocations/request",
        dmf_best.rate(),
        rounds(&dmf),
        dmf_best.allocations_per_request()
    );
    let ratio = dmf_best.time_per_request() / raw_best.time_per_request();
    println!(
        "  time per request DMF/raw: {ratio:.3}x (goal 1.10x: {})",
        if ratio <= 1.10 { "ok" } else { "OVER" }
    );
    println!(
        "  allocations added by DMF per request: {:+.3}",
        dmf_best.allocations_per_request() - raw_best.allocations_per_request()
    );
}

fn criterion_benches(c: &mut Criterion) {
    let session = Session::begin_with_seed(0);
    let rig = Rig::boot("\\??\\BenchStreamCriterion");
    let mut group = c.benchmark_group("streaming_1000_completions");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(1500));
    {
        let subject = RawLoop::start(&rig);
        group.bench_function("raw_loop", |b| {
            b.iter_custom(|iterations| {
                let counter = &subject.shared.completed;
                let from = counter.get();
                let started = Instant::now();
                counter.wait_spinning(from + iterations * 1000);
                started.elapsed()
            });
        });
        subject.stop();
    }
    {
        let subject = DmfLoop::start(&rig);
        group.bench_function("continuous_request_target", |b| {
            b.iter_custom(|iterations| {
                let counter = &subject.completed;
                let from = counter.get();
                let started = Instant::now();
                counter.wait_spinning(from + iterations * 1000);
                started.elapsed()
            });
        });
        subject.stop();
    }
    group.finish();
    rig.shut_down();
    session.end();
}

fn main() {
    compare();
    let mut criterion = Criterion::default().configure_from_args();
    criterion_benches(&mut criterion);
    criterion.final_summary();
}
