//! `BufferPool` and `BufferQueue` against three baselines in the same run: the same-lock
//! baseline (a `VecDeque` of buffers of the same shape behind the *same* simulated spin lock,
//! taken as often as the module takes its lock: the fair one, against which DESIGN.md's 1.05x
//! holds), a `Mutex<VecDeque>` of boxed buffers and a lock-free bounded queue
//! (`crossbeam_queue::ArrayQueue`), single-threaded and with two threads. Also counts heap
//! allocations per operation after creation. Times are wall-clock and move with the machine's
//! load; `buffers_callgrind` counts the instructions of the same cycles.
//!
//! Everything runs on the KMDF simulation (seed 0), so the module paths pay for simulated spin
//! locks (a framework call through the function table plus IRQL bookkeeping per
//! acquire/release).
#![allow(
    clippy::cast_precision_loss,
    reason = "nanosecond and per-cycle figures for printing"
)]

#[path = "common/same_lock.rs"]
mod same_lock;

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Mutex;

use std::time::{Duration, Instant};

use criterion::Criterion;
use crossbeam_queue::ArrayQueue;
use dmf::core::ModuleAttributes;
use dmf::modules::buffer_pool::{BufferPool, BufferPoolConfig};
use dmf::wdf::{Memory, PoolType};
use same_lock::SameLockBaseline;
use wdk_sys::sim::Session;

#[global_allocator]
static GLOBAL: wdk_sys::sim::heap::CountingAllocator = wdk_sys::sim::heap::CountingAllocator;

use same_lock::{BUFFERS, Dmf, SIZE, Subject, settings};

struct MutexBaseline {
    free: Mutex<VecDeque<Box<[u8]>>>,
    work: Mutex<VecDeque<Box<[u8]>>>,
}

impl Subject for MutexBaseline {
    fn pool_cycle(&self) {
        let mut buffer = self.free.lock().unwrap().pop_front().expect("free buffer");
        buffer[0] = 1;
        buffer.fill(0);
        self.free.lock().unwrap().push_back(black_box(buffer));
    }

    fn queue_cycle(&self) {
        let mut buffer = self.free.lock().unwrap().pop_front().expect("free buffer");
        buffer[0] = 1;
        self.work.lock().unwrap().push_back(buffer);
        let mut work = self.work.lock().unwrap().pop_front().expect("queued work");
        black_box(work[0]);
        work.fill(0);
        self.free.lock().unwrap().push_back(work);
    }
}

struct LockFreeBaseline {
    free: ArrayQueue<Box<[u8]>>,
    work: ArrayQueue<Box<[u8]>>,
}

impl Subject for LockFreeBaseline {
    fn pool_cycle(&self) {
        let mut buffer = self.free.pop().expect("free buffer");
        buffer[0] = 1;
        buffer.fill(0);
        self.free.push(black_box(buffer)).expect("room");
    }

    fn queue_cycle(&self) {
        let mut buffer = self.free.pop().expect("free buffer");
        buffer[0] = 1;
        self.work.push(buffer).expect("room");
        let mut work = self.work.pop().expect("queued work");
        black_box(work[0]);
        work.fill(0);
        self.free.push(work).expect("room");
    }
}

fn buffers() -> impl Iterator<Item = Box<[u8]>> {
    (0..BUFFERS).map(|_| vec![0u8; SIZE].into_boxed_slice())
}

/// Runs `iterations` cycles on `threads` threads (split evenly) and returns the wall time.
fn run(threads: usize, iterations: u64, cycle: &(dyn Fn() + Sync)) -> Duration {
    let per_thread = iterations.div_ceil(threads as u64);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(|| (0..per_thread).for_each(|_| cycle()));
        }
        (0..per_thread).for_each(|_| cycle());
    });
    start.elapsed()
}

fn allocations_per_cycle(cycle: &dyn Fn()) -> f64 {
    const N: u64 = 10_000;
    for _ in 0..100 {
        cycle();
    }
    let before = wdk_sys::sim::heap::allocations();
    for _ in 0..N {
        cycle();
    }
    (wdk_sys::sim::heap::allocations() - before) as f64 / N as f64
}

fn ns_per_cycle(threads: usize, cycle: &(dyn Fn() + Sync)) -> f64 {
    const N: u64 = 200_000;
    run(threads, N / 10, cycle);
    let elapsed = run(threads, N, cycle);
    elapsed.as_nanos() as f64 / N as f64
}

#[allow(clippy::too_many_lines, reason = "one linear benchmark script")]
fn main() {
    let session = Session::begin_with_seed(0);
    let device = Memory::create(1, PoolType::NonPaged, None).expect("parent object");
    let parent = device.handle().cast();
    let dmf = Dmf::create(parent);
    let same_lock = SameLockBaseline::create();
    let look_aside = BufferPool::create(
        parent,
        BufferPoolConfig::source(settings(true)),
        ModuleAttributes::new(),
    )
    .expect("look-aside pool");
    let mutex = MutexBaseline {
        free: Mutex::new(buffers().collect()),
        work: Mutex::new(VecDeque::with_capacity(BUFFERS)),
    };
    let lock_free = LockFreeBaseline {
        free: ArrayQueue::new(BUFFERS),
        work: ArrayQueue::new(BUFFERS),
    };
    for buffer in buffers() {
        lock_free.free.push(buffer).expect("room");
    }
    let subjects: [(&str, &dyn Subject); 4] = [
        ("dmf", &dmf),
        ("same-lock VecDeque", &same_lock),
        ("mutex+VecDeque", &mutex),
        ("crossbeam ArrayQueue", &lock_free),
    ];

    let mut criterion = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20)
        .configure_from_args();
    for (operation, name_of) in [
        ("pool get+put", 0),
        ("queue fetch+enqueue+dequeue+reuse", 1),
    ] {
        for threads in [1usize, 2] {
            let mut group = criterion.benchmark_group(format!("{operation}/{threads} thread(s)"));
            for (name, subject) in subjects {
                let cycle = move || {
                    if name_of == 0 {
                        subject.pool_cycle();
                    } else {
                        subject.queue_cycle();
                    }
                };
                group.bench_function(name, |b| {
                    b.iter_custom(|iterations| run(threads, iterations, &cycle));
                });
            }
            group.finish();
        }
    }

    // Summary: the same figures from one quick pass each, with ratios to the baselines.
    println!("\nsummary (ns per cycle; ratio = dmf / baseline)");
    for (operation, name_of) in [
        ("pool get+put", 0),
        ("queue fetch+enqueue+dequeue+reuse", 1),
    ] {
        for threads in [1usize, 2] {
            let figures: Vec<(&str, f64)> = subjects
                .iter()
                .map(|(name, subject)| {
                    let cycle = move || {
                        if name_of == 0 {
                            subject.pool_cycle();
                        } else {
                            subject.queue_cycle();
                        }
                    };
                    (*name, ns_per_cycle(threads, &cycle))
                })
                .collect();
            let dmf_ns = figures[0].1;
            print!("{operation}, {threads} thread(s):");
            for (name, ns) in &figures {
                print!("  {name} {ns:.1} ns");
            }
            println!(
                "  | ratio vs same lock {:.2}x (limit 1.05x), vs mutex {:.2}x, vs lock-free {:.2}x",
                dmf_ns / figures[1].1,
                dmf_ns / figures[2].1,
                dmf_ns / figures[3].1
            );
        }
    }
    // The floor on the simulation: a get+put takes the pool's spin lock twice.
    let lock = dmf::wdf::spin_lock::SpinLock::create(0u64).expect("spin lock");
    let floor = ns_per_cycle(1, &|| {
        *lock.lock() += 1;
        *lock.lock() += 1;
    });
    println!(
        "two simulated spin lock acquire/release pairs (the floor of a pool get+put): {floor:.1} ns"
    );
    drop(lock);
    println!("\nheap allocations per cycle after creation:");
    println!(
        "  BufferPool get+put: {:.3}",
        allocations_per_cycle(&|| dmf.pool_cycle())
    );
    println!(
        "  BufferQueue cycle: {:.3}",
        allocations_per_cycle(&|| dmf.queue_cycle())
    );
    println!(
        "  BufferPool look-aside, 4 extra buffers taken and returned: {:.3}",
        allocations_per_cycle(&|| {
            let held: Vec<_> = (0..BUFFERS + 4)
                .map(|_| look_aside.get().expect("look-aside"))
                .collect();
            drop(held);
        })
    );

    drop(look_aside);
    drop(same_lock);
    drop(dmf);
    drop(device);
    session.end();
    criterion.final_summary();
}
