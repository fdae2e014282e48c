//! `ContinuousRequestTarget` against targets that complete inline, before `WdfRequestSend`
//! returns (as a local device's queue callback does in KMDF): the stream must loop, not recurse.
//! Completion nesting is measured with the simulation's high-water mark; every request is
//! accounted for (each send filled one input buffer, the target answered it once, the client
//! saw it once, every buffer and reference came back).
#![cfg(not(windows))]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmf::core::ModuleAttributes;
use dmf::modules::continuous_request_target::{
    BufferDisposition, ContinuousRequestTarget, ContinuousRequestTargetConfig, RequestType,
};
use wdk_sys::sim::Session;
use wdk_sys::sim::completion;
use wdk_sys::sim::target::{ProgrammableTarget, Response};

const IOCTL: u32 = 0x22_2050;
const REQUESTS: usize = 4;

/// What the client saw.
struct Ledger {
    /// Input buffers filled (one per send).
    inputs: AtomicU64,
    /// Output callbacks.
    outputs: AtomicU64,
    /// Output callbacks with a failure status.
    failures: AtomicU64,
    /// Each request number the input callback wrote, seen back in an output buffer.
    seen: Mutex<Vec<bool>>,
    /// Duplicates among them.
    duplicates: AtomicU64,
    /// Successful outputs that carried no request number (answers that echo nothing).
    empty: AtomicU64,
    /// Streams go on until this many outputs were seen (then each stops at its next one).
    limit: u64,
    /// Set by the test: callbacks after it count as late.
    stopped: AtomicBool,
    late: AtomicU64,
    /// The deepest completion nesting seen from inside an output callback.
    depth: AtomicU32,
}

impl Ledger {
    /// A ledger whose streams stop after `limit` outputs, for request numbers below `numbers`.
    fn new(limit: u64, numbers: usize) -> Arc<Self> {
        Arc::new(Self {
            inputs: AtomicU64::new(0),
            outputs: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            seen: Mutex::new(vec![false; numbers]),
            duplicates: AtomicU64::new(0),
            empty: AtomicU64::new(0),
            limit,
            stopped: AtomicBool::new(false),
            late: AtomicU64::new(0),
            depth: AtomicU32::new(0),
        })
    }

    fn outputs(&self) -> u64 {
        self.outputs.load(Ordering::SeqCst)
    }

    /// Every number written by an input callback that came back, and only once.
    fn assert_each_seen_once(&self, answered: u64) {
        assert_eq!(self.duplicates.load(Ordering::SeqCst), 0, "no data twice");
        let seen = self.seen.lock().unwrap();
        let count = seen.iter().filter(|&&s| s).count() as u64;
        let empty = self.empty.load(Ordering::SeqCst);
        assert_eq!(
            count + empty,
            answered,
            "each answered request's data seen once"
        );
    }
}

fn config(ledger: &Arc<Ledger>) -> ContinuousRequestTargetConfig {
    let inputs = Arc::clone(ledger);
    let outputs = Arc::clone(ledger);
    ContinuousRequestTargetConfig {
        continuous_request_count: REQUESTS,
        buffer_count_input: REQUESTS,
        buffer_input_size: 8,
        buffer_count_output: REQUESTS,
        buffer_output_size: 8,
        request_type: RequestType::Ioctl,
        ioctl: IOCTL,
        buffer_input: Some(Box::new(move |data, _| {
            let n = inputs.inputs.fetch_add(1, Ordering::SeqCst);
            data.copy_from_slice(&n.to_le_bytes());
            8
        })),
        buffer_output: Some(Box::new(move |output, status| {
            let ledger = &outputs;
            ledger
                .depth
                .fetch_max(completion::depth(), Ordering::SeqCst);
            if ledger.stopped.load(Ordering::SeqCst) {
                ledger.late.fetch_add(1, Ordering::SeqCst);
            }
            let n = ledger.outputs.fetch_add(1, Ordering::SeqCst) + 1;
            if !status.is_success() {
                ledger.failures.fetch_add(1, Ordering::SeqCst);
                return BufferDisposition::ContinuousRequestTargetAndStopStreaming;
            }
            let data = output.as_ref().map_or(&[][..], |buffer| buffer.data());
            match <[u8; 8]>::try_from(data) {
                Ok(bytes) => {
                    let number = usize::try_from(u64::from_le_bytes(bytes)).unwrap_or(usize::MAX);
                    let mut seen = ledger.seen.lock().unwrap();
                    match seen.get_mut(number) {
                        Some(slot) if !*slot => *slot = true,
                        _ => {
                            ledger.duplicates.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                Err(_) => {
                    ledger.empty.fetch_add(1, Ordering::SeqCst);
                }
            }
            if n >= ledger.limit {
                BufferDisposition::ContinuousRequestTargetAndStopStreaming
            } else {
                BufferDisposition::ContinuousRequestTargetAndContinueStreaming
            }
        })),
        ..ContinuousRequestTargetConfig::default()
    }
}

/// Streams `limit` requests through `device` answering as `responder` says, and checks the
/// accounting once every stream ended by itself. Returns the completion high-water mark.
fn stream_to_the_end(
    name: &str,
    attributes: ModuleAttributes,
    limit: u64,
    responder: impl Fn(&wdk_sys::sim::target::Received) -> Response + Send + Sync + 'static,
) -> u32 {
    let session = Session::begin();
    let device = ProgrammableTarget::create(name);
    device.set_responder(responder);
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    let ledger = Ledger::new(limit, usize::try_from(limit).unwrap() + 2 * REQUESTS);
    let crt = ContinuousRequestTarget::create(common::parent(&host), config(&ledger), attributes)
        .unwrap();
    crt.io_target_set(&target).unwrap();
    crt.start().unwrap();
    // `start` came back long before the end: a loop that completed inline hands over to the
    // module's work item instead of holding the caller.
    assert!(
        ledger.outputs() < limit,
        "start returned after {} of {limit} completions",
        ledger.outputs()
    );
    let deadline = std::time::Instant::now() + Duration::from_mins(2);
    while crt.live_streams() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "streams still live after {} completions",
            ledger.outputs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    session.wait_idle();
    let counters = device.counters();
    let outputs = ledger.outputs();
    // Each stream stops at its first completion past the limit: between limit and limit + N.
    assert!(
        (limit..=limit + REQUESTS as u64).contains(&outputs),
        "{outputs} outputs for a limit of {limit}"
    );
    assert_eq!(
        counters.received, outputs,
        "one output per request answered"
    );
    assert_eq!(counters.answered, outputs);
    assert_eq!(
        ledger.inputs.load(Ordering::SeqCst),
        outputs,
        "one input per send"
    );
    assert_eq!(ledger.failures.load(Ordering::SeqCst), 0);
    ledger.assert_each_seen_once(outputs);
    assert_eq!(
        crt.output_buffers_free(),
        Some(REQUESTS),
        "output buffers back"
    );
    assert_eq!(
        crt.input_buffers_free(),
        Some(REQUESTS),
        "input buffers back"
    );
    assert_eq!(crt.core_references(), 0, "no send holds a reference");
    let high_water = completion::high_water();
    assert!(
        high_water <= 2,
        "completion routines nested {high_water} deep (callback saw {})",
        ledger.depth.load(Ordering::SeqCst)
    );
    eprintln!(
        "{name}: {outputs} requests streamed, completion nesting high-water {high_water}, \
         deepest seen by the output callback {}",
        ledger.depth.load(Ordering::SeqCst)
    );
    crt.io_target_clear();
    drop(crt);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
    high_water
}

#[test]
fn a_hundred_thousand_inline_completions_loop_without_nesting() {
    let high_water = stream_to_the_end("\\??\\CrtInline", ModuleAttributes::new(), 100_000, |r| {
        Response::data(&r.input)
    });
    // The inline completions did run nested inside their sends (depth 1 at least).
    assert!(high_water >= 1);
}

#[test]
fn inline_completions_loop_in_a_passive_level_module() {
    stream_to_the_end(
        "\\??\\CrtInlineP",
        ModuleAttributes::passive(),
        20_000,
        |r| Response::data(&r.input),
    );
}

#[test]
fn inline_completions_mixed_with_completions_from_other_threads() {
    // Every third answer inline, every third from a framework worker at DISPATCH_LEVEL (which
    // may race the send's return), every third after a short delay from a timer job.
    stream_to_the_end(
        "\\??\\CrtMixed",
        ModuleAttributes::new(),
        20_000,
        |r| match r.sequence % 3 {
            0 => Response::data(&r.input),
            1 => Response::data(&r.input).from_worker(),
            _ => Response::data(&r.input).after(Duration::from_micros(50)),
        },
    );
}

#[test]
fn mixed_completions_in_a_passive_level_module() {
    stream_to_the_end(
        "\\??\\CrtMixedP",
        ModuleAttributes::passive(),
        10_000,
        |r| {
            if r.sequence % 2 == 0 {
                Response::data(&r.input)
            } else {
                Response::data(&r.input).from_worker()
            }
        },
    );
}

/// Stops (waiting, and not waiting then closing) while an inline target keeps every stream
/// busy, from another thread than the ones streaming. Nothing is lost, nothing comes after
/// `stop_and_wait`, and close never sees a send in progress.
#[test]
fn stop_and_close_while_completing_inline_and_from_workers() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\CrtInlineStop");
    device.set_responder(|r| {
        if r.sequence % 4 == 0 {
            Response::data(&r.input).from_worker()
        } else {
            Response::data(&r.input)
        }
    });
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    for round in 0..20 {
        // Streams that never stop by themselves.
        let ledger = Ledger::new(u64::MAX, 1 << 20);
        let crt = ContinuousRequestTarget::create(
            common::parent(&host),
            config(&ledger),
            ModuleAttributes::new(),
        )
        .unwrap();
        crt.io_target_set(&target).unwrap();
        let before = device.counters();
        crt.start().unwrap();
        common::wait_until("some completions", || ledger.outputs() >= 200);
        if round % 2 == 0 {
            crt.stop_and_wait();
            ledger.stopped.store(true, Ordering::SeqCst);
            assert_eq!(crt.live_streams(), 0);
            assert_eq!(crt.core_references(), 0);
            std::thread::sleep(Duration::from_millis(2));
            assert_eq!(
                ledger.late.load(Ordering::SeqCst),
                0,
                "no callback after stop"
            );
            crt.io_target_clear();
            drop(crt);
        } else {
            // Non-waiting stop, then close at once: close waits for the streams itself.
            crt.stop();
            crt.io_target_clear();
            drop(crt);
        }
        session.wait_idle();
        let counters = device.counters();
        let answered = counters.answered - before.answered;
        let cancelled = counters.cancelled - before.cancelled;
        let received = counters.received - before.received;
        assert_eq!(
            received,
            answered + cancelled,
            "round {round}: every request answered or cancelled"
        );
        assert_eq!(
            device.pending(),
            0,
            "round {round}: nothing left at the target"
        );
        // One input per request sent (a stop never wastes a filled input buffer: the request
        // goes out and is cancelled). Clearing the target without waiting for the streams is
        // another matter: a resend that was filling its input then is not sent to a target
        // that was cleared, so up to one input per stream is not sent.
        let inputs = ledger.inputs.load(Ordering::SeqCst);
        if round % 2 == 0 {
            assert_eq!(
                inputs, received,
                "round {round}: one input per request sent"
            );
        } else {
            assert!(
                (received..=received + REQUESTS as u64).contains(&inputs),
                "round {round}: {inputs} inputs for {received} requests sent"
            );
        }
        // Completions that arrived while stopping are dropped without a callback (as in DMF):
        // at most one per stream.
        let outputs = ledger.outputs();
        assert!(
            outputs <= received && received - outputs <= REQUESTS as u64,
            "round {round}: {outputs} outputs, {received} requests"
        );
        assert_eq!(ledger.duplicates.load(Ordering::SeqCst), 0);
    }
    assert!(
        completion::high_water() <= 2,
        "{}",
        completion::high_water()
    );
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

/// A target that completes inline sometimes and holds other requests until the test thread
/// releases them (their completion routine then runs on the test thread, at `PASSIVE_LEVEL`,
/// and loops there through the inline answers that follow).
#[test]
fn released_requests_loop_on_the_releasing_thread() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\CrtRelease");
    device.set_responder(|r| {
        if r.sequence % 8 == 0 {
            Response::Hold
        } else {
            Response::data(&r.input)
        }
    });
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    let ledger = Ledger::new(5_000, 5_000 + 2 * REQUESTS);
    let crt = ContinuousRequestTarget::create(
        common::parent(&host),
        config(&ledger),
        ModuleAttributes::new(),
    )
    .unwrap();
    crt.io_target_set(&target).unwrap();
    crt.start().unwrap();
    let released = AtomicUsize::new(0);
    let deadline = std::time::Instant::now() + Duration::from_mins(1);
    while crt.live_streams() > 0 {
        assert!(std::time::Instant::now() < deadline, "{}", ledger.outputs());
        if device.wait_held(1, Duration::from_millis(5)) {
            // The echo of a held request: the answer carries the input it received.
            let n = device.release(1, &Response::data(&[]));
            released.fetch_add(n, Ordering::SeqCst);
        }
    }
    session.wait_idle();
    let counters = device.counters();
    let outputs = ledger.outputs();
    assert_eq!(counters.received, outputs);
    assert_eq!(ledger.inputs.load(Ordering::SeqCst), outputs);
    let released = released.load(Ordering::SeqCst) as u64;
    assert!(released > 0);
    assert_eq!(
        ledger.empty.load(Ordering::SeqCst),
        released,
        "released answers carry no data"
    );
    ledger.assert_each_seen_once(outputs);
    assert!(
        completion::high_water() <= 2,
        "{}",
        completion::high_water()
    );
    assert_eq!(crt.core_references(), 0);
    crt.io_target_clear();
    drop(crt);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

/// [`inline_completions_mixed_with_completions_from_other_threads`] under many scheduling seeds (see `common/schedules.rs`; `SCHEDULE_SEEDS=1000` is
/// the long run).
#[test]
fn inline_completions_mixed_with_completions_from_other_threads_under_many_schedules() {
    common::schedules::under_seeds(
        "ContinuousRequestTarget: inline_completions_mixed_with_completions_from_other_threads",
        4,
        inline_completions_mixed_with_completions_from_other_threads,
    );
}
