//! Runs a stress test under many scheduling seeds in one process, naming the seed of any
//! failure so `KMDF_SIM_SEED=<seed>` replays it.
//!
//! The count is `SCHEDULE_SEEDS` (default [`CI_SEEDS`]); the documented long run is
//! `SCHEDULE_SEEDS=1000`. `SCHEDULE_FIRST_SEED` moves the range (default 1).

#![allow(dead_code, reason = "each test file uses part of it")]

use std::panic::{AssertUnwindSafe, catch_unwind};

/// Seeds per stress test in CI.
pub const CI_SEEDS: u64 = 50;

/// Seeds to run: `SCHEDULE_FIRST_SEED..SCHEDULE_FIRST_SEED + SCHEDULE_SEEDS`.
#[must_use]
pub fn seeds(default_count: u64) -> std::ops::Range<u64> {
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let first = var("SCHEDULE_FIRST_SEED", 1);
    first..first + var("SCHEDULE_SEEDS", default_count)
}

/// Runs `test` once per seed of [`seeds`] (each of its sessions takes the seed), stops at the
/// first failure and panics naming its seed; prints the count run.
///
/// # Panics
/// When `test` fails under a seed.
pub fn under_seeds(name: &str, default_count: u64, test: impl FnMut()) {
    under_seed_range(name, seeds(default_count), test);
}

/// [`under_seeds`] over an explicit range of seeds.
///
/// # Panics
/// When `test` fails under a seed.
pub fn under_seed_range(name: &str, range: std::ops::Range<u64>, mut test: impl FnMut()) {
    let count = range.end - range.start;
    for seed in range {
        wdk_sys::sim::set_seed(Some(seed));
        let outcome = catch_unwind(AssertUnwindSafe(&mut test));
        wdk_sys::sim::set_seed(None);
        assert!(
            outcome.is_ok(),
            "{name}: failed under seed {seed}: replay with KMDF_SIM_SEED={seed}"
        );
    }
    println!("schedules: {name}: {count} seeds passed");
}
