//! Instructions of the buffer modules' cycles against the same-lock baseline (see
//! `common/same_lock.rs`), counted by callgrind through `gungraun`: 1000 cycles per benchmark,
//! so the instructions reported divided by 1000 are the instructions per cycle. Setup (the
//! simulation, the modules) is not counted: only the benchmark function is.
//!
//! Needs valgrind and the `gungraun-runner` binary (see the README):
//! `cargo bench -p dmf --bench buffers_callgrind`.
#![allow(missing_docs, reason = "gungraun's macros generate undocumented items")]

#[path = "common/same_lock.rs"]
mod same_lock;

use std::hint::black_box;

use dmf::wdf::{Memory, PoolType};
use gungraun::{library_benchmark, library_benchmark_group, main};
use same_lock::{Dmf, SameLockBaseline, Subject};
use wdk_sys::sim::Session;

const CYCLES: usize = 1000;

/// The simulation, a parent object and the subjects, warmed up.
struct Rig {
    dmf: Dmf,
    same_lock: SameLockBaseline,
    device: Memory,
    session: Session,
}

fn rig() -> Rig {
    let session = Session::begin_with_seed(0);
    let device = Memory::create(1, PoolType::NonPaged, None).expect("parent object");
    let dmf = Dmf::create(device.handle().cast());
    let same_lock = SameLockBaseline::create();
    for _ in 0..100 {
        dmf.pool_cycle();
        dmf.queue_cycle();
        same_lock.pool_cycle();
        same_lock.queue_cycle();
    }
    Rig {
        dmf,
        same_lock,
        device,
        session,
    }
}

fn done(rig: Rig) {
    let Rig {
        dmf,
        same_lock,
        device,
        session,
    } = rig;
    drop((dmf, same_lock, device));
    session.end();
}

#[library_benchmark]
#[bench::cycles(setup = rig, teardown = done)]
fn pool_get_put_dmf(rig: Rig) -> Rig {
    for _ in 0..CYCLES {
        rig.dmf.pool_cycle();
    }
    black_box(rig)
}

#[library_benchmark]
#[bench::cycles(setup = rig, teardown = done)]
fn pool_get_put_same_lock(rig: Rig) -> Rig {
    for _ in 0..CYCLES {
        rig.same_lock.pool_cycle();
    }
    black_box(rig)
}

#[library_benchmark]
#[bench::cycles(setup = rig, teardown = done)]
fn queue_cycle_dmf(rig: Rig) -> Rig {
    for _ in 0..CYCLES {
        rig.dmf.queue_cycle();
    }
    black_box(rig)
}

#[library_benchmark]
#[bench::cycles(setup = rig, teardown = done)]
fn queue_cycle_same_lock(rig: Rig) -> Rig {
    for _ in 0..CYCLES {
        rig.same_lock.queue_cycle();
    }
    black_box(rig)
}

library_benchmark_group!(
    name = buffers,
    benchmarks = [
        pool_get_put_dmf,
        pool_get_put_same_lock,
        queue_cycle_dmf,
        queue_cycle_same_lock
    ]
);

main!(library_benchmark_groups = buffers);
