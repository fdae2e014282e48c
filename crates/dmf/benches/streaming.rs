//! Steady-state streaming: `ContinuousRequestTarget` against a hand-written raw loop on the
//! same simulation, in the same run.
//!
//! * Raw loop: `REQUESTS` requests written directly on `dmf::wdf` (`Request`, `IoTarget`,
//!   `Memory`, `WorkItem`); each completion counts, then its request is reused, formatted and
//!   sent again: by the sender, in a loop, when it completed before its send returned (the
//!   target completes inline), after a bounded number of rounds by the slot's work item.
//! * DMF: a `ContinuousRequestTarget` (Automatic mode) streaming the same IOCTL with the same
//!   number of requests and an output buffer of the same size; the output callback counts.
//!
//! Both stream to a programmable target that completes each request at once (inline, in the
//! sender's `WdfRequestSend`) with a 24-byte sample. Each round measures the time to stream `COMPLETIONS` completions after a warm-up
//! and the heap allocations made meanwhile (a counting global allocator: the simulation itself
//! allocates per send, the same for both paths). Prints requests/s of each, the ratio and the
//! allocations per streamed request, then runs the same two workloads under criterion.
#![allow(
    clippy::cast_precision_loss,
    reason = "rates and per-request figures for printing"
)]

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use criterion::Criterion;
use dmf::core::ModuleAttributes;
use dmf::modules::continuous_request_target::{
    BufferDisposition, ContinuousRequestTarget, ContinuousRequestTargetConfig, Mode, RequestType,
};
use dmf::wdf::io_target::{IoTarget, RemoveCallbacks};
use dmf::wdf::request::{Completion, MemoryRange, Request, SharedCompletion, Timeout};
use dmf::wdf::work_item::WorkItem;
use dmf::wdf::{Memory, NtStatus, PoolType};
use wdk_sys::WDFOBJECT;
use wdk_sys::sim::Session;
use wdk_sys::sim::pnp::{Device, Driver};
use wdk_sys::sim::target::{ProgrammableTarget, Response};

#[global_allocator]
static GLOBAL: wdk_sys::sim::heap::CountingAllocator = wdk_sys::sim::heap::CountingAllocator;

/// Requests kept in flight by each path.
const REQUESTS: usize = 4;
/// Completions measured per round.
const COMPLETIONS: u64 = 20_000;
/// Completions streamed before a round's clock starts.
const WARM_UP: u64 = 2_000;
/// Rounds per path (alternating); the best round of each is reported.
const ROUNDS: usize = 3;
const IOCTL: u32 = 0x0022_6000;
const SAMPLE: usize = 24;

/// The benchmark's host driver: one plain device per `add_device`.
struct BenchDriver;

impl dmf::wdf::entry::DriverCallbacks for BenchDriver {
    fn device_add(
        _driver: dmf::wdf::driver::Driver,
        init: dmf::wdf::device::DeviceInit,
    ) -> Result<(), dmf::wdf::NtStatus> {
        init.create(None).map(|_| ())
    }
}

dmf::driver_entry!(BenchDriver);

/// A driver, its device and a programmable target answering each request at once.
struct Rig {
    driver: Driver,
    host: Device,
    target_device: ProgrammableTarget,
}

impl Rig {
    fn boot(name: &str) -> Self {
        let target_device = ProgrammableTarget::create(name);
        let sample = [7u8; SAMPLE];
        target_device.set_responder(move |_| Response::data(&sample));
        let driver = Driver::load(driver_entry).expect("driver loads");
        let host = driver.add_device().expect("device added");
        host.start().expect("device starts");
        Self {
            driver,
            host,
            target_device,
        }
    }

    fn parent(&self) -> WDFOBJECT {
        self.host.handle().cast()
    }

    fn open(&self) -> IoTarget {
        let target = IoTarget::create(dmf::wdf::device::Device::from_raw(self.host.handle()))
            .expect("target created");
        let name: Vec<u16> = self.target_device.symbolic_link().encode_utf16().collect();
        target
            .open_by_name(&name, RemoveCallbacks::default())
            .expect("target opened");
        target
    }

    fn shut_down(self) {
        self.host.remove();
        self.driver.unload();
        drop(self.target_device);
    }
}

/// Waits until `counter` reaches `value` (bounded).
fn wait_for(counter: &AtomicU64, value: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter.load(Ordering::Acquire) < value {
        assert!(Instant::now() < deadline, "streaming stalled");
        std::hint::spin_loop();
        std::thread::yield_now();
    }
}

/// One measured window: time and allocations for `COMPLETIONS` completions.
#[derive(Clone, Copy)]
struct Window {
    elapsed: Duration,
    allocations: u64,
}

impl Window {
    fn rate(self) -> f64 {
        COMPLETIONS as f64 / self.elapsed.as_secs_f64()
    }

    fn allocations_per_request(self) -> f64 {
        self.allocations as f64 / COMPLETIONS as f64
    }
}

/// Measures the next `completions` completions counted by `counter`.
fn measure(counter: &AtomicU64, completions: u64) -> Window {
    let start_count = counter.load(Ordering::Acquire);
    wait_for(counter, start_count + WARM_UP);
    let from = counter.load(Ordering::Acquire);
    let allocations = wdk_sys::sim::heap::allocations();
    let started = Instant::now();
    wait_for(counter, from + completions);
    Window {
        elapsed: started.elapsed(),
        allocations: wdk_sys::sim::heap::allocations() - allocations,
    }
}

// ---- the raw loop ------------------------------------------------------------------------

/// Completions one raw loop processes before it hands its slot to the slot's work item (the
/// same bound `ContinuousRequestTarget` uses).
const RAW_BUDGET: u32 = 32;

/// The raw slot's phases (an `AtomicU8`).
const IDLE: u8 = 0;
/// Between setting up the send and seeing it return.
const SENDING: u8 = 1;
/// The send returned; the completion routine goes on.
const OUT: u8 = 2;
/// Completed before the send returned; the sender goes on.
const EARLY: u8 = 3;

/// State shared by the raw loop's requests.
struct RawShared {
    target: IoTarget,
    completed: AtomicU64,
    running: AtomicBool,
    in_flight: AtomicUsize,
}

/// One raw request, its output buffer, and the work item that takes over its loop.
struct RawSlot {
    shared: Arc<RawShared>,
    request: Request,
    output: Memory,
    phase: AtomicU8,
    work_item: WorkItem,
}

impl RawSlot {
    /// The hand-written loop a correct raw driver needs against a target that completes inline:
    /// reuse, format, send (the send holds an `Arc` clone: no allocation); if the request
    /// completed before the send returned, send again here instead of from inside the
    /// completion routine. After `RAW_BUDGET` rounds the slot's work item takes over.
    fn pump(self: &Arc<Self>) {
        let mut budget = RAW_BUDGET;
        while self.shared.running.load(Ordering::Acquire) {
            if budget == 0 {
                self.work_item.enqueue();
                return;
            }
            budget -= 1;
            let formatted = self.request.reuse(NtStatus::SUCCESS).and_then(|()| {
                self.request.format_ioctl(
                    &self.shared.target,
                    IOCTL,
                    false,
                    None,
                    Some(MemoryRange::whole(self.output.handle())),
                )
            });
            if formatted.is_err() {
                return;
            }
            self.phase.store(SENDING, Ordering::Release);
            self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
            let sent = self.request.send_shared(
                &self.shared.target,
                Timeout::from_millis(0),
                Arc::clone(self),
            );
            if sent.is_err() {
                self.phase.store(IDLE, Ordering::Release);
                self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            if self
                .phase
                .compare_exchange(SENDING, OUT, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // Out at the target: its completion routine goes on.
                return;
            }
            // EARLY: completed inline; loop.
        }
    }
}

impl SharedCompletion for RawSlot {
    fn completed(self: Arc<Self>, completion: &Completion) {
        if completion.status.is_success() && completion.information == SAMPLE {
            self.shared.completed.fetch_add(1, Ordering::AcqRel);
        }
        let inline = self
            .phase
            .compare_exchange(SENDING, EARLY, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        if !inline {
            self.phase.store(IDLE, Ordering::Release);
            self.pump();
        }
    }
}

struct RawLoop {
    shared: Arc<RawShared>,
    slots: Vec<Arc<RawSlot>>,
}

impl RawLoop {
    fn start(rig: &Rig) -> Self {
        let shared = Arc::new(RawShared {
            target: rig.open(),
            completed: AtomicU64::new(0),
            running: AtomicBool::new(true),
            in_flight: AtomicUsize::new(0),
        });
        let slots: Vec<Arc<RawSlot>> = (0..REQUESTS)
            .map(|_| {
                Arc::new_cyclic(|weak: &Weak<RawSlot>| {
                    let weak = weak.clone();
                    RawSlot {
                        shared: Arc::clone(&shared),
                        request: Request::create(Some(&shared.target), Some(rig.parent()))
                            .expect("request"),
                        output: Memory::create(SAMPLE, PoolType::NonPaged, Some(rig.parent()))
                            .expect("buffer"),
                        phase: AtomicU8::new(IDLE),
                        work_item: WorkItem::new(rig.parent(), move || {
                            if let Some(slot) = weak.upgrade() {
                                slot.pump();
                            }
                        })
                        .expect("work item"),
                    }
                })
            })
            .collect();
        for slot in &slots {
            slot.pump();
        }
        Self { shared, slots }
    }

    fn stop(self) {
        self.shared.running.store(false, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.shared.in_flight.load(Ordering::Acquire) > 0 {
            assert!(Instant::now() < deadline, "raw loop did not drain");
            std::thread::yield_now();
        }
        // The last completion (or a loop) releases its clone right after; wait for the slots
        // to be ours alone before deleting their requests and work items.
        for slot in self.slots {
            let mut slot = slot;
            loop {
                match Arc::try_unwrap(slot) {
                    Ok(owned) => {
                        drop(owned);
                        break;
                    }
                    Err(shared) => {
                        slot = shared;
                        std::thread::yield_now();
                    }
                }
            }
        }
        let target = Arc::try_unwrap(self.shared)
            .ok()
            .expect("no send holds the loop")
            .target;
        target.close();
    }
}

// ---- the DMF path ------------------------------------------------------------------------

struct DmfLoop {
    completed: Arc<AtomicU64>,
    streamer: ContinuousRequestTarget,
    target: IoTarget,
}

impl DmfLoop {
    fn start(rig: &Rig) -> Self {
        let completed = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&completed);
        let config = ContinuousRequestTargetConfig {
            continuous_request_count: REQUESTS,
            buffer_count_output: REQUESTS,
            buffer_output_size: SAMPLE,
            request_type: RequestType::Ioctl,
            ioctl: IOCTL,
            mode: Mode::Automatic,
            buffer_output: Some(Box::new(move |output, status| {
                if status.is_success() && output.as_ref().is_some_and(|b| b.data().len() == SAMPLE)
                {
                    counter.fetch_add(1, Ordering::AcqRel);
                }
                BufferDisposition::ContinuousRequestTargetAndContinueStreaming
            })),
            ..ContinuousRequestTargetConfig::default()
        };
        let streamer =
            ContinuousRequestTarget::create(rig.parent(), config, ModuleAttributes::new())
                .expect("module created");
        let target = rig.open();
        streamer.io_target_set(&target).expect("streaming starts");
        Self {
            completed,
            streamer,
            target,
        }
    }

    fn stop(self) {
        self.streamer.io_target_clear();
        drop(self.streamer);
        self.target.close();
    }
}

// ---- the comparison ----------------------------------------------------------------------

fn compare() {
    let session = Session::begin();
    let rig = Rig::boot("\\??\\BenchStreamTarget");
    let mut raw = Vec::new();
    let mut dmf = Vec::new();
    for _ in 0..ROUNDS {
        let subject = RawLoop::start(&rig);
        raw.push(measure(&subject.shared.completed, COMPLETIONS));
        subject.stop();
        let subject = DmfLoop::start(&rig);
        dmf.push(measure(&subject.completed, COMPLETIONS));
        subject.stop();
    }
    rig.shut_down();
    session.end();

    let best = |windows: &[Window]| {
        *windows
            .iter()
            .min_by_key(|w| w.elapsed)
            .expect("at least one round")
    };
    let (raw_best, dmf_best) = (best(&raw), best(&dmf));
    let rounds = |windows: &[Window]| {
        windows
            .iter()
            .map(|w| format!("{:.0}", w.rate()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "streaming, {REQUESTS} requests in flight, {COMPLETIONS} completions per round, best of {ROUNDS}:"
    );
    println!(
        "  raw WDF reuse/format/send loop: {:>9.0} requests/s  (rounds: {})  {:.2} allocations/request (simulation)",
        raw_best.rate(),
        rounds(&raw),
        raw_best.allocations_per_request()
    );
    println!(
        "  ContinuousRequestTarget:        {:>9.0} requests/s  (rounds: {})  {:.2} allocations/request",
        dmf_best.rate(),
        rounds(&dmf),
        dmf_best.allocations_per_request()
    );
    let ratio = dmf_best.elapsed.as_secs_f64() / raw_best.elapsed.as_secs_f64();
    println!(
        "  time per request DMF/raw: {ratio:.3}x (limit 1.25x: {})",
        if ratio <= 1.25 { "ok" } else { "OVER" }
    );
    println!(
        "  allocations added by DMF per request: {:+.3}",
        dmf_best.allocations_per_request() - raw_best.allocations_per_request()
    );
}

fn criterion_benches(c: &mut Criterion) {
    let session = Session::begin();
    let rig = Rig::boot("\\??\\BenchStreamCriterion");
    let mut group = c.benchmark_group("streaming_1000_completions");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(1500));
    {
        let subject = RawLoop::start(&rig);
        group.bench_function("raw_loop", |b| {
            b.iter_custom(|iterations| {
                let counter = &subject.shared.completed;
                let from = counter.load(Ordering::Acquire);
                let started = Instant::now();
                wait_for(counter, from + iterations * 1000);
                started.elapsed()
            });
        });
        subject.stop();
    }
    {
        let subject = DmfLoop::start(&rig);
        group.bench_function("continuous_request_target", |b| {
            b.iter_custom(|iterations| {
                let counter = &subject.completed;
                let from = counter.load(Ordering::Acquire);
                let started = Instant::now();
                wait_for(counter, from + iterations * 1000);
                started.elapsed()
            });
        });
        subject.stop();
    }
    group.finish();
    rig.shut_down();
    session.end();
}

fn main() {
    compare();
    let mut criterion = Criterion::default().configure_from_args();
    criterion_benches(&mut criterion);
    criterion.final_summary();
}
