//! IRQL per thread, and the rules that depend on it.

use std::cell::Cell;

use super::verifier::{self, rules};
use crate::types::KIRQL;

/// `PASSIVE_LEVEL` as a `KIRQL`.
pub(crate) const PASSIVE: KIRQL = crate::constants::PASSIVE_LEVEL as KIRQL;
/// `APC_LEVEL` as a `KIRQL`.
pub(crate) const APC: KIRQL = crate::constants::APC_LEVEL as KIRQL;
/// `DISPATCH_LEVEL` as a `KIRQL`.
pub(crate) const DISPATCH: KIRQL = crate::constants::DISPATCH_LEVEL as KIRQL;

thread_local! {
    static IRQL: Cell<KIRQL> = const { Cell::new(PASSIVE) };
    static SPIN_LOCKS_HELD: Cell<u32> = const { Cell::new(0) };
}

/// The calling thread's IRQL.
pub(crate) fn current() -> KIRQL {
    IRQL.with(Cell::get)
}

/// Sets the calling thread's IRQL and returns the previous one.
pub(crate) fn set(level: KIRQL) -> KIRQL {
    IRQL.with(|irql| irql.replace(level))
}

/// Raises to `level` and returns the previous IRQL. Callers check first that the current IRQL
/// is not above `level` (the framework's own IRQL rules), so this never lowers.
pub(crate) fn raise(level: KIRQL) -> KIRQL {
    let old = current();
    set(level.max(old))
}

/// Notes that the calling thread now holds one more spin lock.
pub(crate) fn spin_lock_acquired() {
    SPIN_LOCKS_HELD.with(|held| held.set(held.get() + 1));
}

/// Notes that the calling thread released a spin lock.
pub(crate) fn spin_lock_released() {
    SPIN_LOCKS_HELD.with(|held| held.set(held.get().saturating_sub(1)));
}

/// Spin locks the calling thread holds.
pub(crate) fn spin_locks_held() -> u32 {
    SPIN_LOCKS_HELD.with(Cell::get)
}

/// Checks that `api` is called at `PASSIVE_LEVEL`; reports and returns false otherwise.
pub(crate) fn require_passive(api: &str) -> bool {
    require_at_most(PASSIVE, api)
}

/// Checks that `api` is called at or below `level`; reports and returns false otherwise.
pub(crate) fn require_at_most(level: KIRQL, api: &str) -> bool {
    let now = current();
    if now <= level {
        return true;
    }
    verifier::report(
        rules::IRQL_TOO_HIGH,
        api,
        format!("called at IRQL {now}; it may be called at IRQL <= {level} only"),
    );
    false
}

/// Runs a driver callback on the calling (framework) thread at `level`, then checks that the
/// callback returned at the IRQL it was called at without holding a spin lock.
pub(crate) fn run_callback<R>(level: KIRQL, callback: &str, f: impl FnOnce() -> R) -> R {
    let previous = set(level);
    let held_before = spin_locks_held();
    let result = super::driver_heap::driver_code(f);
    let held_after = spin_locks_held();
    let level_after = current();
    if held_after > held_before {
        verifier::report(
            rules::SPIN_LOCK_HELD_ON_RETURN,
            callback,
            format!("returned holding {} spin lock(s)", held_after - held_before),
        );
        SPIN_LOCKS_HELD.with(|held| held.set(held_before));
    } else if held_after < held_before || level_after != level {
        // Releasing a lock its caller holds also changes the IRQL under the caller's feet.
        verifier::report(
            rules::IRQL_NOT_RESTORED,
            callback,
            format!(
                "called at IRQL {level} holding {held_before} spin lock(s), returned at IRQL \
                 {level_after} holding {held_after}"
            ),
        );
    }
    set(previous);
    result
}
