//! Simulation-only controls: sessions, the verifier log, fault injection, counters, IRQL.
//!
//! Only tests, benchmarks and host programs use this module; library and driver code never do
//! (the Windows build has no such module, and `check-project.sh` fails code that names it).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::framework::{debug_output, exec, faults, irql, object, pool, verifier as log};
use crate::types::{KIRQL, NTSTATUS};

pub use crate::framework::faults::{Counters, FaultPoint};

pub mod callgrind;
pub mod heap;
pub mod pnp;
pub mod target;
pub mod user;

/// How deeply completion routines nest (see the rule
/// [`rules::COMPLETION_RECURSION`](verifier::rules::COMPLETION_RECURSION)).
///
/// A completion routine runs in the context that completed its request, so a routine that sends
/// again into a target that completes inline runs the next routine one level deeper on the same
/// thread. These functions let a test bound that depth.
pub mod completion {
    pub use crate::framework::completion::NESTING_LIMIT;

    /// Completion routines running on the calling thread now (0 outside any).
    #[must_use]
    pub fn depth() -> u32 {
        crate::framework::completion::depth()
    }

    /// The deepest nesting of completion routines seen on any thread since the session began
    /// (or since [`reset_high_water`]).
    #[must_use]
    pub fn high_water() -> u32 {
        crate::framework::completion::high_water()
    }

    /// Forgets the deepest nesting seen.
    pub fn reset_high_water() {
        crate::framework::completion::reset_high_water();
    }
}

/// The verifier log.
pub mod verifier {
    pub use crate::framework::verifier::{Report, rules};

    /// Removes and returns every report recorded so far.
    #[must_use]
    pub fn take_reports() -> Vec<Report> {
        crate::framework::verifier::take()
    }
}

static SESSION_LOCK: Mutex<()> = Mutex::new(());

/// The seed the next sessions take instead of `KMDF_SIM_SEED` (see [`set_seed`]).
static SEED_OVERRIDE: Mutex<Option<u64>> = Mutex::new(None);

/// Makes the sessions that begin from now on use `seed` (`None`: back to `KMDF_SIM_SEED` or the
/// clock), so a test runner can run the same test under many schedules in one process. A
/// failure under seed `s` replays with `KMDF_SIM_SEED=s`.
pub fn set_seed(seed: Option<u64>) {
    *SEED_OVERRIDE.lock().unwrap_or_else(PoisonError::into_inner) = seed;
}

/// How long a session waits for framework threads to go idle when it ends.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// One test's use of the simulation.
///
/// The simulation is process-wide, like a kernel, so sessions run one at a time: beginning a
/// session waits for the previous one to end, then starts from a clean state (no objects, no
/// pool, no armed faults, no verifier reports). Ending it checks that the driver code left
/// nothing behind and broke no rule it did not expect, and panics with the list otherwise.
pub struct Session {
    _serial: MutexGuard<'static, ()>,
    expected: Vec<&'static str>,
}

impl Session {
    /// Begins a session. The scheduling seed comes from [`set_seed`], else `KMDF_SIM_SEED`, else
    /// the clock.
    #[must_use]
    pub fn begin() -> Self {
        let forced = *SEED_OVERRIDE.lock().unwrap_or_else(PoisonError::into_inner);
        let seed = forced
            .or_else(|| {
                std::env::var("KMDF_SIM_SEED")
                    .ok()
                    .and_then(|s| s.parse().ok())
            })
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| u64::from(d.subsec_nanos()) | 1)
            });
        Self::begin_with_seed(seed)
    }

    /// Begins a session with the scheduling seed `seed` (0 turns the random job delays off),
    /// whatever `KMDF_SIM_SEED` says: a test that loops over seeds replays each interleaving.
    #[must_use]
    pub fn begin_with_seed(seed: u64) -> Self {
        let serial = SESSION_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
        exec::wait_idle(IDLE_TIMEOUT);
        exec::reset();
        object::reset();
        crate::framework::io::reset();
        crate::framework::request::reset();
        pnp::reset();
        pool::reset();
        faults::clear();
        faults::reset_counters();
        faults::reset_live();
        crate::framework::completion::reset_high_water();
        let _ = log::take();
        let _ = debug_output::take();
        irql::set(irql::PASSIVE);
        exec::set_seed(seed);
        Self {
            _serial: serial,
            expected: Vec::new(),
        }
    }

    /// The scheduling seed of this session (replay with `KMDF_SIM_SEED=<seed>`).
    #[must_use]
    pub fn seed(&self) -> u64 {
        exec::seed()
    }

    /// Declares that this test breaks `rule` on purpose: its reports do not fail the session.
    pub fn expect_violation(&mut self, rule: &'static str) {
        self.expected.push(rule);
    }

    /// Waits until framework threads have nothing ready to run.
    ///
    /// # Panics
    /// If they are still busy after ten seconds (a callback that never returns).
    pub fn wait_idle(&self) {
        assert!(
            exec::wait_idle(IDLE_TIMEOUT),
            "framework threads still busy after {IDLE_TIMEOUT:?}"
        );
    }

    /// Checks for objects and pool still alive now, reporting each (the teardown check).
    pub fn check_leaks(&self) {
        check_leaks();
    }

    /// Ends the session: waits for framework threads, checks for leaks and unexpected reports.
    pub fn end(self) {
        drop(self);
    }
}

fn check_leaks() {
    crate::framework::thread::check_leaks();
    for object in object::live_objects() {
        log::report(
            log::rules::OBJECT_LEAKED,
            &*object,
            "never deleted".to_string(),
        );
    }
    for (address, block) in pool::live() {
        log::report(
            log::rules::POOL_LEAKED,
            format!("pool {address:#x}"),
            format!("{} bytes with tag {:#x} never freed", block.size, block.tag),
        );
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        exec::wait_idle(IDLE_TIMEOUT);
        check_leaks();
        let unexpected: Vec<_> = log::take()
            .into_iter()
            .filter(|r| !self.expected.contains(&r.rule))
            .collect();
        let seed = exec::seed();
        irql::set(irql::PASSIVE);
        if std::thread::panicking() {
            eprintln!("kmdf-sim: test failed; replay with KMDF_SIM_SEED={seed}");
            return;
        }
        if !unexpected.is_empty() {
            let list: Vec<String> = unexpected.iter().map(ToString::to_string).collect();
            panic!(
                "kmdf-sim verifier: {} unexpected report(s) (KMDF_SIM_SEED={seed}):\n  {}",
                list.len(),
                list.join("\n  ")
            );
        }
    }
}

/// Makes the `nth` hit of `point` from now fail with `status`.
pub fn fail_nth(point: FaultPoint, nth: u64, status: NTSTATUS) {
    faults::fail_nth(point, nth, status);
}

/// Disarms every injected fault.
pub fn clear_faults() {
    faults::clear();
}

/// Counters of allocations, object creations, sends and live objects.
#[must_use]
pub fn counters() -> Counters {
    faults::counters()
}

/// WDF objects alive now whose deletion has not begun (neither the driver nor a parent's
/// deletion deleted them). Unlike [`Counters::live_objects`], an object already deleted that
/// stays alive only until the framework drops its own reference (a work item whose callback is
/// returning) is not counted: a test can check right after a teardown that the driver deleted
/// everything it owned, without waiting for framework threads.
#[must_use]
pub fn undeleted_objects() -> usize {
    object::undeleted_count()
}

/// Zeroes the cumulative counters.
pub fn reset_counters() {
    faults::reset_counters();
}

/// Runs `f` on the calling thread at `level` (e.g. to call code as a DPC would), restoring the
/// previous IRQL afterwards.
pub fn at_irql<R>(level: KIRQL, f: impl FnOnce() -> R) -> R {
    irql::run_callback(level, "sim::at_irql", f)
}

/// Removes and returns the debug output printed so far.
#[must_use]
pub fn take_debug_output() -> Vec<String> {
    debug_output::take()
}
