//! A fault sweep: runs a module's whole life (create, open, a representative workload, close,
//! device removal) once per creation step, with the k-th allocation or object creation failing
//! (k = 1, 2, ... counted from [`Run::arm`]) until a run completes without the injection being
//! hit.
//!
//! Each run is a session of its own, so the session's end checks that nothing leaked (objects,
//! pool, system threads) and that the verifier saw nothing. On top of that the harness checks,
//! per run:
//! - a run whose injection was hit reported it: the life passed the failing call's status to
//!   [`Run::failed`] (or [`Run::check`]), and that status is the injected one, or told
//!   [`Run::refused`] that an asynchronous step without a status (an arrival) did not happen;
//! - a failure is never reported when nothing was injected (or before it was);
//! - [`Run::closed`] was called, and live objects and pool allocations were back to their
//!   baseline there;
//! - no callback probed with [`Run::probe`] ran after [`Run::closed`].
//!
//! Standalone (it uses no other scaffolding), so a test file with its own driver can include it
//! with `#[path = "common/fault_sweep.rs"] mod fault_sweep;`.

#![allow(dead_code, reason = "each test file uses part of it")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dmf::wdf::NtStatus;
use wdk_sys::sim::{self, FaultPoint, Session};

/// The status every injected failure carries.
pub const INJECTED: NtStatus = NtStatus::INSUFFICIENT_RESOURCES;

/// More runs than this means the life never completes without hitting the injection.
const MAX_STEPS: u64 = 5000;

/// Baseline recorded when the injection is armed.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    hits: u64,
    live_objects: i64,
    live_pool: i64,
}

/// One run of a life, with the `nth` hit of `point` failing.
pub struct Run<'s> {
    session: &'s Session,
    point: FaultPoint,
    nth: u64,
    baseline: Option<Baseline>,
    reported: usize,
    closed: Arc<AtomicBool>,
    late: Arc<AtomicUsize>,
    was_closed: bool,
}

/// Counts callbacks that run after the module was closed.
#[derive(Clone)]
pub struct Probe {
    closed: Arc<AtomicBool>,
    late: Arc<AtomicUsize>,
}

impl Probe {
    /// Call at the start of every client callback.
    pub fn called(&self) {
        if self.closed.load(Ordering::SeqCst) {
            self.late.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn hits(point: FaultPoint) -> u64 {
    let counters = sim::counters();
    match point {
        FaultPoint::Allocation => counters.allocations,
        FaultPoint::ObjectCreation => counters.objects_created,
        FaultPoint::Send => counters.sends,
    }
}

impl Run<'_> {
    /// Waits until framework threads are idle (`PnP` notifications delivered, work items run).
    pub fn wait_idle(&self) {
        self.session.wait_idle();
    }

    /// Which hit of which point fails in this run.
    #[must_use]
    pub fn point(&self) -> (FaultPoint, u64) {
        (self.point, self.nth)
    }

    /// Records the baseline (live objects and pool now) and arms the injection: the `nth` hit
    /// of the point from now fails. Call once, after booting and before creating the module.
    ///
    /// # Panics
    /// If called twice.
    pub fn arm(&mut self) {
        assert!(self.baseline.is_none(), "armed twice");
        let counters = sim::counters();
        self.baseline = Some(Baseline {
            hits: hits(self.point),
            live_objects: counters.live_objects,
            live_pool: counters.live_pool_allocations,
        });
        sim::fail_nth(self.point, self.nth, INJECTED.raw());
    }

    /// Whether the injected failure has happened.
    #[must_use]
    pub fn hit(&self) -> bool {
        self.baseline
            .is_some_and(|b| hits(self.point) - b.hits >= self.nth)
    }

    /// Reports that an operation failed with `status`: it must be the injected status, and the
    /// injection must have been hit.
    ///
    /// # Panics
    /// Otherwise.
    #[track_caller]
    pub fn failed(&mut self, status: NtStatus) {
        assert_eq!(
            status, INJECTED,
            "{:?} #{}: a failure that is not the injected one",
            self.point, self.nth
        );
        assert!(
            self.hit(),
            "{:?} #{}: a failure reported before the injection was hit",
            self.point,
            self.nth
        );
        self.reported += 1;
    }

    /// Reports that an asynchronous operation the life cannot get a status from (an interface
    /// arrival the module dropped) did not happen: the injection must have been hit.
    ///
    /// # Panics
    /// Otherwise.
    #[track_caller]
    pub fn refused(&mut self, what: &str) {
        assert!(
            self.hit(),
            "{:?} #{}: {what} refused before the injection was hit",
            self.point,
            self.nth
        );
        self.reported += 1;
    }

    /// `Some(value)` on success; on failure checks it as [`failed`](Self::failed) does.
    #[track_caller]
    pub fn check<T>(&mut self, result: Result<T, NtStatus>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(status) => {
                self.failed(status);
                None
            }
        }
    }

    /// A probe for the module's callbacks (see [`Probe::called`]).
    #[must_use]
    pub fn probe(&self) -> Probe {
        Probe {
            closed: Arc::clone(&self.closed),
            late: Arc::clone(&self.late),
        }
    }

    /// The module is closed (dropped): checks that live objects and pool allocations are back to
    /// the baseline, and from now on a probed callback is a failure. The injection stays armed
    /// for the rest of the life (device removal).
    ///
    /// # Panics
    /// If anything the module created is still alive.
    #[track_caller]
    pub fn closed(&mut self) {
        let baseline = self.baseline.expect("closed before arm");
        // A work item or timer the framework still references (its callback has just
        // returned) is destroyed when that reference goes: wait for it, bounded.
        let deadline = Instant::now() + Duration::from_secs(5);
        let back = || {
            let counters = sim::counters();
            (counters.live_objects, counters.live_pool_allocations)
        };
        while back() != (baseline.live_objects, baseline.live_pool) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            back(),
            (baseline.live_objects, baseline.live_pool),
            "{:?} #{}: live objects and pool allocations back to baseline after close",
            self.point,
            self.nth
        );
        self.closed.store(true, Ordering::SeqCst);
        self.was_closed = true;
    }
}

/// Steps swept for one fault point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// The fault point.
    pub point: FaultPoint,
    /// Runs whose injection was hit (the life's creation steps of that kind).
    pub steps: u64,
}

/// Sweeps `life` over allocations and object creations (see the module documentation), prints
/// the steps swept, and returns them.
///
/// `life` begins nothing: the harness begins a session for each run and ends it after `life`
/// returns. `life` boots what it needs, calls [`Run::arm`], runs the module's life passing each
/// failure to the run, calls [`Run::closed`] after closing the module, and tears down (device
/// removal, driver unload).
///
/// # Panics
/// On any check that fails, naming the fault point and step.
pub fn sweep(module: &str, mut life: impl FnMut(&mut Run<'_>)) -> [Swept; 2] {
    [FaultPoint::Allocation, FaultPoint::ObjectCreation].map(|point| {
        let steps = sweep_point(module, point, &mut life);
        println!("fault sweep: {module}: {point:?}: {steps} steps swept");
        Swept { point, steps }
    })
}

fn sweep_point(module: &str, point: FaultPoint, life: &mut impl FnMut(&mut Run<'_>)) -> u64 {
    for nth in 1..=MAX_STEPS {
        let session = Session::begin();
        let mut run = Run {
            session: &session,
            point,
            nth,
            baseline: None,
            reported: 0,
            closed: Arc::new(AtomicBool::new(false)),
            late: Arc::new(AtomicUsize::new(0)),
            was_closed: false,
        };
        life(&mut run);
        let hit = run.hit();
        sim::clear_faults();
        assert!(run.baseline.is_some(), "{module}: the life never armed");
        assert!(run.was_closed, "{module}: the life never closed the module");
        assert_eq!(
            run.late.load(Ordering::SeqCst),
            0,
            "{module}: {point:?} #{nth}: callbacks ran after close"
        );
        if hit {
            assert!(
                run.reported > 0,
                "{module}: {point:?} #{nth}: the injected failure was hit and nobody reported it"
            );
        } else {
            assert_eq!(run.reported, 0);
        }
        drop(run);
        // Leaks, system threads and verifier reports.
        session.end();
        if !hit {
            return nth - 1;
        }
    }
    panic!("{module}: {point:?}: the life never completed without the injection");
}
