//! Fault injection and the counters tests read.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::types::NTSTATUS;

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// Any allocation: pool (`ExAllocatePool2`), `WdfMemoryCreate`, context areas.
    Allocation,
    /// Any WDF object creation.
    ObjectCreation,
    /// `WdfRequestSend` (the request completes with the chosen status).
    Send,
}

struct Plan {
    point: FaultPoint,
    remaining: u64,
    status: NTSTATUS,
}

static PLANS: Mutex<Vec<Plan>> = Mutex::new(Vec::new());
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static OBJECTS_CREATED: AtomicU64 = AtomicU64::new(0);
static SENDS: AtomicU64 = AtomicU64::new(0);
static LIVE_OBJECTS: AtomicI64 = AtomicI64::new(0);
static LIVE_POOL: AtomicI64 = AtomicI64::new(0);

fn plans() -> std::sync::MutexGuard<'static, Vec<Plan>> {
    PLANS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Makes the `nth` (1-based, counted from now) hit of `point` fail with `status`.
pub(crate) fn fail_nth(point: FaultPoint, nth: u64, status: NTSTATUS) {
    plans().push(Plan {
        point,
        remaining: nth.max(1),
        status,
    });
}

/// Forgets every armed fault.
pub(crate) fn clear() {
    plans().clear();
}

/// Counts one hit of `point` and returns the injected failure, if this hit is armed.
pub(crate) fn hit(point: FaultPoint) -> Result<(), NTSTATUS> {
    let counter = match point {
        FaultPoint::Allocation => &ALLOCATIONS,
        FaultPoint::ObjectCreation => &OBJECTS_CREATED,
        FaultPoint::Send => &SENDS,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let mut plans = plans();
    let mut failure = None;
    plans.retain_mut(|plan| {
        if plan.point != point || failure.is_some() {
            return true;
        }
        plan.remaining -= 1;
        if plan.remaining == 0 {
            failure = Some(plan.status);
            return false;
        }
        true
    });
    failure.map_or(Ok(()), Err)
}

/// Counters since the last reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Allocations attempted (pool, WDF memory, context areas).
    pub allocations: u64,
    /// WDF objects whose creation was attempted.
    pub objects_created: u64,
    /// Requests sent.
    pub sends: u64,
    /// WDF objects alive now.
    pub live_objects: i64,
    /// Pool allocations alive now.
    pub live_pool_allocations: i64,
}

pub(crate) fn counters() -> Counters {
    Counters {
        allocations: ALLOCATIONS.load(Ordering::Relaxed),
        objects_created: OBJECTS_CREATED.load(Ordering::Relaxed),
        sends: SENDS.load(Ordering::Relaxed),
        live_objects: LIVE_OBJECTS.load(Ordering::Relaxed),
        live_pool_allocations: LIVE_POOL.load(Ordering::Relaxed),
    }
}

/// Zeroes the cumulative counters (live counts follow the objects and are not reset).
pub(crate) fn reset_counters() {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    OBJECTS_CREATED.store(0, Ordering::Relaxed);
    SENDS.store(0, Ordering::Relaxed);
}

pub(crate) fn object_born() {
    LIVE_OBJECTS.fetch_add(1, Ordering::Relaxed);
}
pub(crate) fn object_died() {
    LIVE_OBJECTS.fetch_sub(1, Ordering::Relaxed);
}
pub(crate) fn pool_allocated() {
    LIVE_POOL.fetch_add(1, Ordering::Relaxed);
}
pub(crate) fn pool_freed() {
    LIVE_POOL.fetch_sub(1, Ordering::Relaxed);
}
pub(crate) fn reset_live() {
    LIVE_OBJECTS.store(0, Ordering::Relaxed);
    LIVE_POOL.store(0, Ordering::Relaxed);
}
