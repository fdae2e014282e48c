//! The host suites need the simulation, which is the framework on non-Windows hosts only: every
//! test file is compiled out on Windows and every benchmark requires `host-benches`, so that
//! `cargo test` and `cargo clippy --all-targets` also build on Windows (see Cargo.toml).
#![cfg(not(windows))]

use std::fs;
use std::path::Path;

#[test]
fn every_test_file_is_host_only() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    for entry in fs::read_dir(&tests).expect("tests folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = fs::read_to_string(&path).expect("test file");
            assert!(
                text.lines().any(|l| l.trim() == "#![cfg(not(windows))]"),
                "{} needs `#![cfg(not(windows))]` after its doc comment",
                path.display()
            );
        }
    }
}

#[test]
fn every_benchmark_requires_host_benches() {
    let manifest = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .expect("Cargo.toml");
    for bench in manifest.split("\n[[bench]]\n").skip(1) {
        let entry = bench.split("\n[").next().unwrap_or(bench);
        assert!(
            entry.contains("required-features = [\"host-benches\"]"),
            "[[bench]] {entry} needs `required-features = [\"host-benches\"]`"
        );
    }
}
