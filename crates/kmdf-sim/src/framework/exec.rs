//! Framework-owned threads: what the kernel runs asynchronously runs here, at the IRQL the
//! kernel would run it at: DPC-style timers and send timeouts (DISPATCH), work items and
//! passive-level queue presentations deferred from above PASSIVE (PASSIVE), `PnP` notifications.
//! Nothing that KMDF does inline is deferred here: a queue presentation and a completion
//! routine run in the thread that sent or completed the request (see `completion`).
//!
//! A seed varies which ready job runs next and adds small delays, so that a failing interleaving
//! can be replayed: `KMDF_SIM_SEED=<n>` fixes it, otherwise each session picks one and tests
//! print it on failure.

use std::collections::VecDeque;
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{irql, object};
use crate::types::KIRQL;

/// Framework worker threads; more than one so a blocking passive job cannot starve the rest.
const WORKERS: usize = 4;
/// How many of the oldest ready jobs a seeded pick chooses among.
const PICK_WINDOW: u64 = 3;

struct Job {
    due: Option<Instant>,
    /// The driver whose code the job runs (0: none known).
    driver: usize,
    level: KIRQL,
    name: &'static str,
    run: Box<dyn FnOnce() + Send>,
}

struct State {
    jobs: VecDeque<Job>,
    running: usize,
    /// Threads in `wait_idle`: a finished job signals `idle` only when there is one.
    idle_waiters: usize,
    started: bool,
    seed: u64,
    rng: u64,
}

struct Dispatcher {
    state: Mutex<State>,
    /// Signalled once per new job (one worker takes it; busy workers look for more work
    /// before they wait, so no job is left behind).
    changed: Condvar,
    /// Signalled when the last running job finished, for `wait_idle`.
    idle: Condvar,
}

static DISPATCHER: LazyLock<Dispatcher> = LazyLock::new(|| Dispatcher {
    state: Mutex::new(State {
        jobs: VecDeque::new(),
        running: 0,
        idle_waiters: 0,
        started: false,
        seed: 0,
        rng: 0,
    }),
    changed: Condvar::new(),
    idle: Condvar::new(),
});

fn state() -> MutexGuard<'static, State> {
    DISPATCHER
        .state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

fn next_random(rng: &mut u64) -> u64 {
    // xorshift64*: small, fast, and enough to vary an interleaving.
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Sets the seed for the next jobs (0 turns the variation off).
pub(crate) fn set_seed(seed: u64) {
    let mut state = state();
    state.seed = seed;
    state.rng = seed | 1;
}

/// The seed in force.
pub(crate) fn seed() -> u64 {
    state().seed
}

fn ensure_workers(state: &mut State) {
    if state.started {
        return;
    }
    state.started = true;
    for index in 0..WORKERS {
        std::thread::Builder::new()
            .name(format!("kmdf-sim-worker-{index}"))
            .spawn(worker)
            .expect("the simulation can start its worker threads");
    }
}

/// Runs `run` on a framework thread at `level` as soon as possible.
pub(crate) fn submit(level: KIRQL, name: &'static str, run: impl FnOnce() + Send + 'static) {
    submit_as(object::current_driver(), level, name, run);
}

/// Like [`submit`], running the job as code of `driver` (e.g. a completion routine runs as the
/// driver that sent the request, whoever completed it).
pub(crate) fn submit_as(
    driver: usize,
    level: KIRQL,
    name: &'static str,
    run: impl FnOnce() + Send + 'static,
) {
    enqueue(Job {
        due: None,
        driver,
        level,
        name,
        run: Box::new(run),
    });
}

/// Runs `run` on a framework thread at `level` once `due` has passed.
pub(crate) fn submit_at(
    due: Instant,
    level: KIRQL,
    name: &'static str,
    run: impl FnOnce() + Send + 'static,
) {
    submit_at_as(object::current_driver(), due, level, name, run);
}

/// Like [`submit_at`], running the job as code of `driver`.
pub(crate) fn submit_at_as(
    driver: usize,
    due: Instant,
    level: KIRQL,
    name: &'static str,
    run: impl FnOnce() + Send + 'static,
) {
    enqueue(Job {
        due: Some(due),
        driver,
        level,
        name,
        run: Box::new(run),
    });
}

fn enqueue(job: Job) {
    let mut state = state();
    ensure_workers(&mut state);
    state.jobs.push_back(job);
    drop(state);
    DISPATCHER.changed.notify_one();
}

/// Picks the next job to run now, or how long to wait for the earliest timer.
fn pick(state: &mut State, now: Instant) -> Result<Job, Option<Duration>> {
    // The oldest ready jobs, at most the pick window (no allocation per pick).
    let mut ready = [0usize; PICK_WINDOW as usize];
    let mut ready_count = 0usize;
    let mut earliest: Option<Instant> = None;
    let window = if state.seed == 0 { 1 } else { ready.len() };
    for (index, job) in state.jobs.iter().enumerate() {
        match job.due {
            Some(due) if due > now => earliest = Some(earliest.map_or(due, |e| e.min(due))),
            _ => {
                ready[ready_count] = index;
                ready_count += 1;
                if ready_count == window {
                    break;
                }
            }
        }
    }
    if ready_count == 0 {
        return Err(earliest.map(|due| due - now));
    }
    let choice = if state.seed == 0 {
        0
    } else {
        (next_random(&mut state.rng) % ready_count as u64) as usize
    };
    Ok(state
        .jobs
        .remove(ready[choice])
        .expect("a ready index is in range"))
}

fn worker() {
    let mut state = state();
    loop {
        match pick(&mut state, Instant::now()) {
            Ok(job) => {
                state.running += 1;
                let delay = if state.seed == 0 {
                    0
                } else {
                    next_random(&mut state.rng) % 50
                };
                drop(state);
                if delay > 0 {
                    // A short varied delay; yielding rather than sleeping, whose timer slack
                    // (tens of microseconds) would dwarf the delay.
                    let until = Instant::now() + Duration::from_micros(delay);
                    while Instant::now() < until {
                        std::thread::yield_now();
                    }
                }
                object::with_driver(job.driver, || {
                    irql::run_callback(job.level, job.name, job.run);
                });
                state = self::state();
                state.running -= 1;
                if state.running == 0 && state.idle_waiters > 0 {
                    DISPATCHER.idle.notify_all();
                }
            }
            Err(Some(wait)) => {
                state = DISPATCHER
                    .changed
                    .wait_timeout(state, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            Err(None) => {
                state = DISPATCHER
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }
}

/// Waits until no job is running and none is ready (timers due later are ignored); false if
/// that did not happen within `timeout`.
pub(crate) fn wait_idle(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut state = state();
    loop {
        let now = Instant::now();
        let ready = state
            .jobs
            .iter()
            .any(|job| job.due.is_none_or(|due| due <= now));
        if !ready && state.running == 0 {
            return true;
        }
        if now >= deadline {
            return false;
        }
        let wait = (deadline - now).min(Duration::from_millis(5));
        state.idle_waiters += 1;
        state = DISPATCHER
            .idle
            .wait_timeout(state, wait)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        state.idle_waiters -= 1;
    }
}

/// Drops every queued job (between test sessions).
pub(crate) fn reset() {
    state().jobs.clear();
}
