//! `ContinuousRequestTarget` under stress: stop/start from two threads while streaming with
//! exact accounting, and allocation/object-creation failure injected at every step of open.
#![cfg(not(windows))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dmf::core::ModuleAttributes;
use dmf::modules::continuous_request_target::{
    BufferDisposition, ContinuousRequestTarget, ContinuousRequestTargetConfig, RequestType,
};
use dmf::wdf::NtStatus;
use wdk_sys::sim::target::{ProgrammableTarget, Response};
use wdk_sys::sim::{FaultPoint, Session};

fn config(
    callbacks: &Arc<AtomicUsize>,
    inputs: &Arc<AtomicUsize>,
) -> ContinuousRequestTargetConfig {
    let callbacks = Arc::clone(callbacks);
    let inputs = Arc::clone(inputs);
    ContinuousRequestTargetConfig {
        continuous_request_count: 4,
        buffer_count_input: 4,
        buffer_input_size: 4,
        buffer_count_output: 8,
        buffer_output_size: 16,
        buffer_context_output_size: 8,
        request_type: RequestType::Ioctl,
        ioctl: 0x22_2040,
        buffer_input: Some(Box::new(move |data, _| {
            inputs.fetch_add(1, Ordering::SeqCst);
            data.fill(7);
            4
        })),
        buffer_output: Some(Box::new(move |_, _| {
            callbacks.fetch_add(1, Ordering::SeqCst);
            BufferDisposition::ContinuousRequestTargetAndContinueStreaming
        })),
        ..ContinuousRequestTargetConfig::default()
    }
}

fn stress(passive: bool, rounds: usize) {
    let session = Session::begin();
    let device = ProgrammableTarget::create(if passive {
        "\\??\\CrtStressP"
    } else {
        "\\??\\CrtStress"
    });
    device.set_responder(|r| Response::data(&r.input));
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    let live_before = wdk_sys::sim::counters().live_objects;
    let callbacks = Arc::new(AtomicUsize::new(0));
    let inputs = Arc::new(AtomicUsize::new(0));
    let attributes = if passive {
        ModuleAttributes::passive()
    } else {
        ModuleAttributes::new()
    };
    let crt = Arc::new(
        ContinuousRequestTarget::create(
            common::parent(&host),
            config(&callbacks, &inputs),
            attributes,
        )
        .unwrap(),
    );
    crt.io_target_set(&target).unwrap();
    let workers: Vec<_> = (0..2)
        .map(|worker| {
            let crt = Arc::clone(&crt);
            std::thread::spawn(move || {
                for round in 0..rounds {
                    // A stop from the other thread may interrupt this start.
                    let started = crt.start();
                    assert!(
                        started == Ok(()) || started == Err(NtStatus::CANCELLED),
                        "{started:?}"
                    );
                    if (round + worker) % 3 == 0 {
                        crt.stop();
                    } else {
                        crt.stop_and_wait();
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    crt.stop_and_wait();
    assert_eq!(crt.live_streams(), 0);
    assert_eq!(
        crt.core_references(),
        0,
        "every send's reference was released"
    );
    assert_eq!(
        crt.output_buffers_free(),
        Some(8),
        "every output buffer is back"
    );
    assert_eq!(
        crt.input_buffers_free(),
        Some(4),
        "every input buffer is back"
    );
    session.wait_idle();
    let counters = device.counters();
    assert_eq!(device.pending(), 0);
    assert_eq!(
        counters.answered + counters.cancelled,
        counters.received,
        "every request the target received completed exactly once"
    );
    assert_eq!(
        counters.received as usize,
        inputs.load(Ordering::SeqCst),
        "every filled input buffer was sent once"
    );
    assert!(callbacks.load(Ordering::SeqCst) <= counters.received as usize);
    crt.io_target_clear();
    drop(crt);
    assert_eq!(
        wdk_sys::sim::counters().live_objects,
        live_before,
        "nothing leaked"
    );
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn stop_and_start_from_two_threads_while_streaming() {
    stress(false, 1000);
}

#[test]
fn stop_and_start_from_two_threads_while_streaming_passive() {
    stress(true, 1000);
}

/// The stop/start stress (shorter) under many scheduling seeds (see `common/schedules.rs`):
/// `SCHEDULE_SEEDS=1000 cargo test -p dmf --test module_continuous_request_target_stress --
/// schedules` is the long run.
#[test]
fn stop_and_start_stress_under_many_schedules() {
    common::schedules::under_seeds("stop/start stress", common::schedules::CI_SEEDS, || {
        stress(false, 100);
        stress(true, 100);
    });
}

fn open_with_fault(point: FaultPoint) {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let callbacks = Arc::new(AtomicUsize::new(0));
    let inputs = Arc::new(AtomicUsize::new(0));
    let live_before = wdk_sys::sim::counters().live_objects;
    let mut failures = 0;
    for nth in 1.. {
        assert!(nth < 500, "open never succeeded");
        wdk_sys::sim::fail_nth(point, nth, NtStatus::INSUFFICIENT_RESOURCES.raw());
        let result = ContinuousRequestTarget::create(
            common::parent(&host),
            config(&callbacks, &inputs),
            ModuleAttributes::passive(),
        );
        wdk_sys::sim::clear_faults();
        match result {
            Err(error) => {
                assert_eq!(error.status(), NtStatus::INSUFFICIENT_RESOURCES);
                failures += 1;
                assert_eq!(
                    wdk_sys::sim::counters().live_objects,
                    live_before,
                    "failure #{nth} left objects behind"
                );
            }
            Ok(crt) => {
                drop(crt);
                break;
            }
        }
    }
    assert!(failures > 5, "every creation step was tried ({failures})");
    assert_eq!(wdk_sys::sim::counters().live_objects, live_before);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn allocation_failure_at_each_step_of_open() {
    open_with_fault(FaultPoint::Allocation);
}

#[test]
fn object_creation_failure_at_each_step_of_open() {
    open_with_fault(FaultPoint::ObjectCreation);
}

#[test]
fn request_target_sends_survive_fault_injection() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\RtFaults");
    device.set_responder(|r| Response::data(&r.input));
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    let module = dmf::modules::request_target::RequestTarget::create(
        common::parent(&host),
        ModuleAttributes::new(),
    )
    .unwrap();
    module.io_target_set(&target).unwrap();
    let live_before = wdk_sys::sim::counters().live_objects;
    for nth in 1..6 {
        wdk_sys::sim::fail_nth(
            FaultPoint::ObjectCreation,
            nth,
            NtStatus::INSUFFICIENT_RESOURCES.raw(),
        );
        let mut out = [0u8; 4];
        let result = module.send_synchronously(&[1, 2], &mut out, RequestType::Ioctl, 5, 0);
        wdk_sys::sim::clear_faults();
        assert!(result == Ok(2) || result == Err(NtStatus::INSUFFICIENT_RESOURCES));
        assert_eq!(wdk_sys::sim::counters().live_objects, live_before);
    }
    std::thread::sleep(Duration::from_millis(1));
    drop(module);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}
