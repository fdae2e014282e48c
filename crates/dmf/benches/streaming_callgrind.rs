//! Instructions per streamed request, counted by callgrind through `gungraun`: the raw
//! reuse/format/send loop and `ContinuousRequestTarget` (both in `common/stream_paths.rs`), 4
//! requests in flight against a target that completes inline, simulation seed 0.
//!
//! Each benchmark boots the simulation, streams `WARM_UP` completions uninstrumented, then
//! counts the instructions of every thread from the `WARM_UP`-th completion to the
//! `WARM_UP + MEASURED`-th one: the completion counter switches callgrind's instrumentation on
//! and off itself (`--instr-atstart=no`, no entry point), so setup, warm-up and teardown are
//! not counted, and nothing spins meanwhile (the benchmark thread blocks). `MEASURED` is 1000:
//! the instructions gungraun reports, divided by 1000, are the instructions per request.
//!
//! Needs valgrind and the `gungraun-runner` binary of the same version as the `gungraun`
//! crate (see the README): `cargo bench -p dmf --bench streaming_callgrind`. It is built, not
//! run, by `cargo clippy --all-targets`; `cargo test` does not build it.

#![allow(missing_docs, reason = "gungraun's macros generate undocumented items")]

#[path = "common/stream_paths.rs"]
mod stream_paths;

use std::hint::black_box;

use gungraun::{
    Callgrind, EntryPoint, LibraryBenchmarkConfig, library_benchmark, library_benchmark_group, main,
};
use stream_paths::{Counter, DmfLoop, RawLoop, Rig, WindowHooks};
use wdk_sys::sim::{Session, callgrind};

/// Completions streamed before the count starts.
const WARM_UP: u64 = 2_000;
/// Completions counted.
const MEASURED: u64 = 1_000;

fn on_start() {
    callgrind::start_instrumentation();
}

fn on_stop() {
    callgrind::stop_instrumentation();
}

/// Arms `counter` for the counted window and waits (blocking) until the window has passed.
fn count_window(counter: &Counter) -> u64 {
    let from = counter.get();
    counter.arm(WindowHooks {
        start_at: from + WARM_UP,
        stop_at: from + WARM_UP + MEASURED,
        on_start,
        on_stop,
    });
    counter.wait_blocking(from + WARM_UP + MEASURED);
    counter.get()
}

#[library_benchmark]
fn raw_loop_1000_requests() -> u64 {
    let session = Session::begin_with_seed(0);
    let rig = Rig::boot("\\??\\CallgrindRaw");
    let subject = RawLoop::start(&rig);
    let counted = count_window(&subject.shared.completed);
    subject.stop();
    rig.shut_down();
    session.end();
    black_box(counted)
}

#[library_benchmark]
fn continuous_request_target_1000_requests() -> u64 {
    let session = Session::begin_with_seed(0);
    let rig = Rig::boot("\\??\\CallgrindDmf");
    let subject = DmfLoop::start(&rig);
    let counted = count_window(&subject.completed);
    subject.stop();
    rig.shut_down();
    session.end();
    black_box(counted)
}

library_benchmark_group!(
    name = streaming,
    benchmarks = [
        raw_loop_1000_requests,
        continuous_request_target_1000_requests
    ]
);

main!(
    config = LibraryBenchmarkConfig::default().tool(
        Callgrind::with_args(["--instr-atstart=no", "--collect-atstart=yes"])
            .entry_point(EntryPoint::None)
    );
    library_benchmark_groups = streaming
);
