//! The monitor itself, CI-sized: two seconds with churn (sensors arriving and leaving, one
//! surprise-removed), without the live table. Its own checks decide the exit status: every
//! sample delivered or counted as dropped, no duplicates, no verifier report, no live object.
#![cfg(not(windows))]

use std::process::Command;

#[test]
fn a_short_run_with_churn_passes_its_checks() {
    let output = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["--quiet", "--seconds", "2", "--churn", "--seed", "42"])
        .output()
        .expect("the monitor runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "monitor failed:\n{stdout}\n{stderr}"
    );
    for expected in [
        "a sensor is surprise-removed",
        "ok      no duplicate or out-of-order sample",
        "ok      every sample delivered or counted as dropped",
        "verifier reports: 0",
        "live objects: 0 (pool blocks 0)",
        "monitor: OK",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(!stdout.contains('\x1b'), "no live table when quiet");
}

#[test]
fn bad_options_are_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["--sensors", "0"])
        .output()
        .expect("the monitor runs");
    assert!(!output.status.success());
    let output = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["--seconds", "two"])
        .output()
        .expect("the monitor runs");
    assert!(!output.status.success());
}
