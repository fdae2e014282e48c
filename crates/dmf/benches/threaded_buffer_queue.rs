//! `ThreadedBufferQueue` hand-off against baselines in the same run: producer threads fetch a
//! buffer, fill a 64-byte payload and enqueue it; the module's thread runs the work callback,
//! which reads it; the buffer goes back to the free list. The baselines carry the same 64-byte
//! payload from the same producer threads to one consumer thread:
//!
//! * `std::sync::mpsc::sync_channel` and `crossbeam_channel::bounded`, of the module's capacity
//!   (payload by value; host primitives, so none of the simulation's costs);
//! * "raw sim queue": the same shape written by hand on the same simulated primitives (a free
//!   list and a work list behind two simulated spin locks, a simulated event, a system thread
//!   as consumer), to show what the module adds over the floor the simulation sets.
//!
//! Reported per subject, from 1 and 4 producer threads: throughput, hand-off latency (from the
//! start of the hand-off, before fetching a buffer or sending, to the start of the consumer's
//! work; p50 and p99) and heap allocations per item in the measured window (threads, channels
//! and the module are created, and each producer has warmed up, before it). The summary takes
//! the median of several interleaved rounds, as the host may be shared. Run with
//! `KMDF_SIM_SEED=0` so the simulation adds no scheduling delays.
//!
//! A producer that finds no free buffer retries (yielding), as a driver would; channel senders
//! block in the channel instead.
#![allow(
    clippy::cast_precision_loss,
    reason = "nanosecond and per-item figures for printing"
)]

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use criterion::Criterion;
use dmf::core::ModuleAttributes;
use dmf::modules::buffer_pool::SourceSettings;
use dmf::modules::buffer_queue::BufferQueueConfig;
use dmf::modules::threaded_buffer_queue::{
    BufferDisposition, ThreadedBufferQueue, ThreadedBufferQueueConfig, Work,
};
use dmf::wdf::event::{Event, EventKind};
use dmf::wdf::spin_lock::SpinLock;
use dmf::wdf::thread::SystemThread;
use dmf::wdf::{Memory, PoolType};
use wdk_sys::sim::Session;

#[global_allocator]
static GLOBAL: wdk_sys::sim::heap::CountingAllocator = wdk_sys::sim::heap::CountingAllocator;

/// Buffers in the module, and capacity of each channel.
const CAPACITY: usize = 64;
/// Payload bytes per item.
const PAYLOAD: usize = 64;
/// Latency slots (the summary runs use at most this many items).
const SLOTS: usize = 1 << 17;
/// Items each producer hands off before the measured window (first-use costs stay out of it).
const WARM_UP: u64 = 200;

type Payload = [u8; PAYLOAD];

/// What the consumer side records, shared by all subjects: the same cost for each.
struct Recorder {
    base: Instant,
    latencies: Box<[AtomicU64]>,
    seen: AtomicUsize,
    target: AtomicUsize,
    finished: Mutex<Option<Instant>>,
    done: Condvar,
    checksum: AtomicU64,
}

impl Recorder {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            latencies: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            seen: AtomicUsize::new(0),
            target: AtomicUsize::new(usize::MAX),
            finished: Mutex::new(None),
            done: Condvar::new(),
            checksum: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn arm(&self, target: usize) {
        *self.finished.lock().unwrap() = None;
        self.seen.store(0, Ordering::SeqCst);
        self.target.store(target, Ordering::SeqCst);
    }

    /// Fills a payload: the time the hand-off began, then a pattern.
    fn fill(payload: &mut [u8], began: u64, sequence: u64) {
        payload[8..].fill(sequence as u8);
        payload[..8].copy_from_slice(&began.to_le_bytes());
    }

    /// The consumer's work for one item.
    fn consume(&self, payload: &[u8]) {
        let now = self.now();
        let stamp = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
        let index = self.seen.fetch_add(1, Ordering::AcqRel);
        self.latencies[index % SLOTS].store(now.saturating_sub(stamp), Ordering::Relaxed);
        self.checksum.fetch_add(
            u64::from(black_box(payload[PAYLOAD - 1])),
            Ordering::Relaxed,
        );
        if index + 1 == self.target.load(Ordering::Acquire) {
            *self.finished.lock().unwrap() = Some(Instant::now());
            self.done.notify_all();
        }
    }

    fn wait_finished(&self) -> Instant {
        let mut finished = self.finished.lock().unwrap();
        while finished.is_none() {
            finished = self.done.wait(finished).unwrap();
        }
        finished.expect("set")
    }

    /// Latencies of the items after the first `skip`, sorted.
    fn sorted_latencies(&self, skip: usize, count: usize) -> Vec<u64> {
        let mut values: Vec<u64> = (skip..skip + count)
            .map(|index| self.latencies[index % SLOTS].load(Ordering::Relaxed))
            .collect();
        values.sort_unstable();
        values
    }
}

/// One measured run.
struct Run {
    elapsed: Duration,
    allocations: u64,
}

/// How a subject moves one item from a producer to its consumer.
trait Subject: Sync {
    /// Runs `items` measured items (after the warm-up) from `producers` threads.
    fn run(&self, recorder: &Recorder, producers: usize, items: u64) -> Run;
}

/// Spawns the producers, warms up, then measures from the barrier to the last item consumed.
fn produce(
    recorder: &Recorder,
    producers: usize,
    items: u64,
    produce_one: &(dyn Fn(u64) + Sync),
) -> Run {
    let per_producer = items.div_ceil(producers as u64);
    let measured = per_producer * producers as u64;
    let warm = WARM_UP * producers as u64;
    recorder.arm((warm + measured) as usize);
    let barrier = Barrier::new(producers + 1);
    std::thread::scope(|scope| {
        for _ in 0..producers {
            scope.spawn(|| {
                for sequence in 0..WARM_UP {
                    produce_one(sequence);
                }
                barrier.wait();
                for sequence in 0..per_producer {
                    produce_one(sequence);
                }
            });
        }
        barrier.wait();
        let allocations = wdk_sys::sim::heap::allocations();
        let start = Instant::now();
        let finished = recorder.wait_finished();
        let allocations = wdk_sys::sim::heap::allocations() - allocations;
        Run {
            elapsed: finished.saturating_duration_since(start),
            allocations,
        }
    })
}

struct Tbq {
    queue: ThreadedBufferQueue,
}

impl Subject for Tbq {
    fn run(&self, recorder: &Recorder, producers: usize, items: u64) -> Run {
        produce(recorder, producers, items, &|sequence| {
            let began = recorder.now();
            let mut buffer = loop {
                match self.queue.fetch() {
                    Ok(buffer) => break buffer,
                    Err(_) => std::thread::yield_now(),
                }
            };
            Recorder::fill(&mut buffer.data_mut()[..PAYLOAD], began, sequence);
            self.queue.enqueue(buffer).expect("own buffer");
        })
    }
}

struct StdChannel;

impl Subject for StdChannel {
    fn run(&self, recorder: &Recorder, producers: usize, items: u64) -> Run {
        let (sender, receiver) = mpsc::sync_channel::<Payload>(CAPACITY);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                while let Ok(payload) = receiver.recv() {
                    recorder.consume(&payload);
                }
            });
            let run = produce(recorder, producers, items, &|sequence| {
                let began = recorder.now();
                let mut payload = [0u8; PAYLOAD];
                Recorder::fill(&mut payload, began, sequence);
                sender.send(payload).expect("consumer alive");
            });
            drop(sender);
            run
        })
    }
}

struct CrossbeamChannel;

impl Subject for CrossbeamChannel {
    fn run(&self, recorder: &Recorder, producers: usize, items: u64) -> Run {
        let (sender, receiver) = crossbeam_channel::bounded::<Payload>(CAPACITY);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                while let Ok(payload) = receiver.recv() {
                    recorder.consume(&payload);
                }
            });
            let run = produce(recorder, producers, items, &|sequence| {
                let began = recorder.now();
                let mut payload = [0u8; PAYLOAD];
                Recorder::fill(&mut payload, began, sequence);
                sender.send(payload).expect("consumer alive");
            });
            drop(sender);
            run
        })
    }
}

/// The floor: the module's shape written by hand on the same simulated primitives.
struct RawShared {
    free: SpinLock<VecDeque<Box<Payload>>>,
    work: SpinLock<VecDeque<Box<Payload>>>,
    ready: Event,
    stop: AtomicBool,
    recorder: Arc<Recorder>,
}

impl RawShared {
    /// The consumer thread: wait for the signal, drain the work list.
    fn consume(&self) {
        loop {
            self.ready.wait();
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            loop {
                let Some(mut payload) = self.work.lock().pop_front() else {
                    break;
                };
                self.recorder.consume(&payload[..]);
                payload.fill(0);
                self.free.lock().push_back(payload);
            }
        }
    }
}

struct RawSim {
    shared: Arc<RawShared>,
    thread: Option<SystemThread>,
}

impl RawSim {
    fn new(recorder: &Arc<Recorder>) -> Self {
        let mut free = VecDeque::with_capacity(CAPACITY);
        free.extend((0..CAPACITY).map(|_| Box::new([0u8; PAYLOAD])));
        let shared = Arc::new(RawShared {
            free: SpinLock::create(free).expect("spin lock"),
            work: SpinLock::create(VecDeque::with_capacity(CAPACITY)).expect("spin lock"),
            ready: Event::new(EventKind::Synchronization, false),
            stop: AtomicBool::new(false),
            recorder: Arc::clone(recorder),
        });
        let consumer = Arc::clone(&shared);
        let thread = SystemThread::spawn(move || consumer.consume()).expect("system thread");
        Self {
            shared,
            thread: Some(thread),
        }
    }
}

impl Drop for RawSim {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = self.shared.ready.set();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("consumer exits");
        }
    }
}

impl Subject for RawSim {
    fn run(&self, recorder: &Recorder, producers: usize, items: u64) -> Run {
        let shared = &*self.shared;
        produce(recorder, producers, items, &|sequence| {
            let began = recorder.now();
            let mut payload = loop {
                if let Some(payload) = shared.free.lock().pop_front() {
                    break payload;
                }
                std::thread::yield_now();
            };
            Recorder::fill(&mut payload[..], began, sequence);
            shared.work.lock().push_back(payload);
            if !shared.ready.is_set() {
                let _ = shared.ready.set();
            }
        })
    }
}

struct Figures {
    throughput: f64,
    p50: u64,
    p99: u64,
    allocations_per_item: f64,
}

fn measure(subject: &dyn Subject, recorder: &Recorder, producers: usize) -> Figures {
    let run = subject.run(recorder, producers, ITEMS);
    let per_producer = ITEMS.div_ceil(producers as u64);
    let measured = (per_producer * producers as u64) as usize;
    let warm = (WARM_UP * producers as u64) as usize;
    let latencies = recorder.sorted_latencies(warm, measured.min(SLOTS - warm));
    let percentile = |p: usize| latencies[(latencies.len() - 1) * p / 100];
    Figures {
        throughput: measured as f64 / run.elapsed.as_secs_f64(),
        p50: percentile(50),
        p99: percentile(99),
        allocations_per_item: run.allocations as f64 / measured as f64,
    }
}

/// Items per summary run.
const ITEMS: u64 = 50_000;
/// Summary rounds; each runs every subject once, in turn.
const ROUNDS: usize = 5;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    values[values.len() / 2]
}

fn median_ns(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

/// The median of each figure over the rounds (allocations: the largest).
fn combine(rounds: &[Figures]) -> Figures {
    Figures {
        throughput: median(rounds.iter().map(|f| f.throughput).collect()),
        p50: median_ns(rounds.iter().map(|f| f.p50).collect()),
        p99: median_ns(rounds.iter().map(|f| f.p99).collect()),
        allocations_per_item: rounds
            .iter()
            .map(|f| f.allocations_per_item)
            .fold(0.0, f64::max),
    }
}

fn main() {
    let session = Session::begin();
    let device = Memory::create(1, PoolType::NonPaged, None).expect("parent object");
    let recorder = Arc::new(Recorder::new());
    let consumer = Arc::clone(&recorder);
    let settings = SourceSettings {
        buffer_count: CAPACITY,
        buffer_size: PAYLOAD,
        ..SourceSettings::default()
    };
    let queue = ThreadedBufferQueue::create(
        device.handle().cast(),
        ThreadedBufferQueueConfig::new(
            BufferQueueConfig::new(settings),
            Box::new(move |work: &mut Work<'_>| {
                consumer.consume(work.data());
                BufferDisposition::WorkComplete
            }),
        ),
        ModuleAttributes::new(),
    )
    .expect("module");
    queue.start().expect("thread starts");
    let tbq = Tbq { queue };
    let raw = RawSim::new(&recorder);
    let subjects: [(&str, &dyn Subject); 4] = [
        ("ThreadedBufferQueue", &tbq),
        ("raw sim queue", &raw),
        ("std mpsc sync_channel", &StdChannel),
        ("crossbeam bounded", &CrossbeamChannel),
    ];

    let mut criterion = Criterion::default()
        .measurement_time(Duration::from_secs(1))
        .warm_up_time(Duration::from_millis(300))
        .sample_size(10)
        .configure_from_args();
    for producers in [1usize, 4] {
        let mut group = criterion.benchmark_group(format!("hand-off/{producers} producer(s)"));
        group.throughput(criterion::Throughput::Elements(1));
        for (name, subject) in subjects {
            group.bench_function(name, |b| {
                b.iter_custom(|iterations| subject.run(&recorder, producers, iterations).elapsed);
            });
        }
        group.finish();
    }

    println!(
        "\nsummary: median of {ROUNDS} interleaved rounds of {ITEMS} items of {PAYLOAD} bytes, capacity {CAPACITY}, KMDF_SIM_SEED={}",
        session.seed()
    );
    println!(
        "(ratio = module / baseline: throughput > 1 means the module is faster, latency < 1 means it is faster)"
    );
    for producers in [1usize, 4] {
        let mut rounds: Vec<Vec<Figures>> = subjects.iter().map(|_| Vec::new()).collect();
        for _ in 0..ROUNDS {
            for ((_, subject), figures) in subjects.iter().zip(&mut rounds) {
                figures.push(measure(*subject, &recorder, producers));
            }
        }
        let figures: Vec<(&str, Figures)> = subjects
            .iter()
            .zip(&rounds)
            .map(|((name, _), rounds)| (*name, combine(rounds)))
            .collect();
        println!("{producers} producer(s):");
        for (name, f) in &figures {
            println!(
                "  {name:<22} {:>10.0} items/s  p50 {:>8} ns  p99 {:>9} ns  allocations/item {:.4}",
                f.throughput, f.p50, f.p99, f.allocations_per_item
            );
        }
        let module = &figures[0].1;
        for (name, baseline) in &figures[1..] {
            println!(
                "  module vs {name:<22} throughput {:.2}x, p50 latency {:.2}x, p99 latency {:.2}x",
                module.throughput / baseline.throughput,
                module.p50 as f64 / baseline.p50 as f64,
                module.p99 as f64 / baseline.p99 as f64
            );
        }
    }
    black_box(recorder.checksum.load(Ordering::Relaxed));

    tbq.queue.stop();
    drop(tbq);
    drop(raw);
    drop(device);
    session.end();
    criterion.final_summary();
}
