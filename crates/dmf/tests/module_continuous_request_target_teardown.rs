//! `ContinuousRequestTarget` teardown while a target completes its streaming requests on other
//! threads: a stop and a close (the module dropped) racing the completions of sends that are
//! still in progress. Each case runs under several scheduling seeds (each one replays one set of
//! interleavings), and checks that nothing panics, the verifier reports nothing, and every
//! framework object the module owned is gone by the time the drop returns.
//!
//! Regression test for a send whose slot state was updated after `WdfRequestSend` returned
//! without a module reference: the completion of that very send, on a worker thread, could end
//! the stream, let close run and clear the slots under the sender.
#![cfg(not(windows))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dmf::core::ModuleAttributes;
use dmf::modules::continuous_request_target::{
    BufferDisposition, ContinuousRequestTarget, ContinuousRequestTargetConfig, RequestType,
};
use wdk_sys::sim::Session;
use wdk_sys::sim::target::{ProgrammableTarget, Response};

/// Seeds each case runs under (0: no random job delays).
const SEEDS: [u64; 9] = [0, 1, 2, 3, 5, 8, 13, 21, 0x5eed];

#[derive(Clone, Copy, Debug)]
enum Answer {
    /// From a framework worker as soon as possible: races the send's return.
    Worker,
    /// From a framework timer job after a short delay.
    Timer,
}

#[derive(Clone, Copy, Debug)]
enum Teardown {
    /// The module dropped while streaming: its close stops it and waits for the references.
    Drop,
    /// `stop` (no wait) from the test thread, then the drop at once.
    StopThenDrop,
    /// `stop` from another thread while the test thread drops the module.
    StopRacingDrop,
}

fn config(callbacks: &Arc<AtomicUsize>) -> ContinuousRequestTargetConfig {
    let callbacks = Arc::clone(callbacks);
    ContinuousRequestTargetConfig {
        continuous_request_count: 4,
        buffer_count_input: 4,
        buffer_input_size: 4,
        buffer_count_output: 8,
        buffer_output_size: 16,
        request_type: RequestType::Ioctl,
        ioctl: 0x22_2040,
        buffer_input: Some(Box::new(|data, _| {
            data.fill(3);
            4
        })),
        buffer_output: Some(Box::new(move |_, _| {
            callbacks.fetch_add(1, Ordering::SeqCst);
            BufferDisposition::ContinuousRequestTargetAndContinueStreaming
        })),
        ..ContinuousRequestTargetConfig::default()
    }
}

fn teardown_once(seed: u64, answer: Answer, teardown: Teardown, passive: bool) {
    let session = Session::begin_with_seed(seed);
    let device = ProgrammableTarget::create(&format!("\\??\\CrtTeardown{answer:?}{passive}"));
    device.set_responder(move |r| {
        let response = Response::data(&r.input);
        match answer {
            Answer::Worker => response.from_worker(),
            Answer::Timer => response.after(Duration::from_micros(20)),
        }
    });
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    let live_before = wdk_sys::sim::counters().live_objects;
    let undeleted_before = wdk_sys::sim::undeleted_objects();
    let callbacks = Arc::new(AtomicUsize::new(0));
    let attributes = if passive {
        ModuleAttributes::passive()
    } else {
        ModuleAttributes::new()
    };
    let crt = Arc::new(
        ContinuousRequestTarget::create(common::parent(&host), config(&callbacks), attributes)
            .unwrap(),
    );
    crt.io_target_set(&target).unwrap();
    crt.start().unwrap();
    common::wait_until("the stream runs", || callbacks.load(Ordering::SeqCst) >= 16);
    let stopper = match teardown {
        Teardown::Drop => None,
        Teardown::StopThenDrop => {
            crt.stop();
            None
        }
        Teardown::StopRacingDrop => {
            let crt = Arc::clone(&crt);
            Some(std::thread::spawn(move || crt.stop()))
        }
    };
    if let Some(stopper) = stopper {
        stopper.join().unwrap();
    }
    let crt = Arc::into_inner(crt).expect("the only owner");
    drop(crt);
    assert_eq!(
        wdk_sys::sim::undeleted_objects(),
        undeleted_before,
        "every framework object of the module was deleted when its drop returned \
         (seed {seed}, {answer:?}, {teardown:?}, passive {passive})"
    );
    session.wait_idle();
    assert_eq!(
        wdk_sys::sim::counters().live_objects,
        live_before,
        "nothing leaked"
    );
    let counters = device.counters();
    assert_eq!(device.pending(), 0);
    assert_eq!(
        counters.answered + counters.cancelled,
        counters.received,
        "every request the target received completed exactly once"
    );
    drop(target);
    host.remove();
    driver.unload();
    // Within the session: the next one may register a target of the same name.
    drop(device);
    session.end();
}

fn teardown_all(answer: Answer, passive: bool) {
    for seed in SEEDS {
        for teardown in [
            Teardown::Drop,
            Teardown::StopThenDrop,
            Teardown::StopRacingDrop,
        ] {
            for _ in 0..4 {
                teardown_once(seed, answer, teardown, passive);
            }
        }
    }
}

#[test]
fn close_while_a_worker_completes_the_sends() {
    teardown_all(Answer::Worker, false);
}

#[test]
fn close_while_a_timer_completes_the_sends() {
    teardown_all(Answer::Timer, false);
}

#[test]
fn close_while_a_worker_completes_the_sends_passive() {
    teardown_all(Answer::Worker, true);
}
