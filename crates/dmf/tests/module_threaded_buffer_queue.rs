//! `ThreadedBufferQueue` on the simulation: ordering under four producer threads, head
//! enqueues, the work status reaching waiting callers, pending work completed later, flush and
//! close releasing waiters, stop/start with queued work, `*_and_wait` refused on the module's
//! own thread and on a module that is not started or is closed, foreign buffers, configuration
//! errors, allocation failure at each creation step, passive-level and static modules.
#![cfg(not(windows))]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dmf::core::{DeviceModules, ModuleAttributes, lifecycle};
use dmf::error::{ConfigError, ModuleError};
use dmf::modules::buffer_pool::SourceSettings;
use dmf::modules::buffer_queue::BufferQueueConfig;
use dmf::modules::threaded_buffer_queue::{
    BufferDisposition, PendingWork, ThreadedBuffer, ThreadedBufferQueue, ThreadedBufferQueueConfig,
    Work,
};
use dmf::wdf::event::{Event, EventKind};
use dmf::wdf::{Memory, NtStatus, PoolType};
use wdk_sys::sim::{self, FaultPoint, Session};

const CONTEXT: usize = 4;
const SOON: Duration = Duration::from_secs(5);
/// How long "still blocked" is checked for.
const A_WHILE: Duration = Duration::from_millis(50);

fn device() -> Memory {
    Memory::create(1, PoolType::NonPaged, None).expect("parent object")
}

fn settings(count: usize) -> SourceSettings {
    SourceSettings {
        buffer_count: count,
        buffer_size: 16,
        buffer_context_size: CONTEXT,
        ..SourceSettings::default()
    }
}

fn config(
    count: usize,
    work: impl Fn(&mut Work<'_>) -> BufferDisposition + Send + Sync + 'static,
) -> ThreadedBufferQueueConfig {
    ThreadedBufferQueueConfig::new(BufferQueueConfig::new(settings(count)), Box::new(work))
}

fn create(device: &Memory, config: ThreadedBufferQueueConfig) -> ThreadedBufferQueue {
    ThreadedBufferQueue::create(device.handle().cast(), config, ModuleAttributes::new())
        .expect("module is created")
}

fn value(data: &[u8]) -> u32 {
    u32::from_le_bytes(data[..4].try_into().unwrap())
}

fn filled(queue: &ThreadedBufferQueue, v: u32) -> ThreadedBuffer {
    let mut buffer = queue.fetch().expect("a free buffer");
    buffer.data_mut()[..4].copy_from_slice(&v.to_le_bytes());
    buffer
}

/// A distinct error status per value (customer bit set), to see which status reached whom.
fn code(v: u32) -> NtStatus {
    NtStatus::from_raw((0xE000_0000u32 | v).cast_signed())
}

type Seen = Arc<Mutex<Vec<u32>>>;
/// Where a nested wait was tried from, its result, and whether it returned at once.
type Attempts = Mutex<Vec<(&'static str, Result<(), NtStatus>, bool)>>;

/// A work callback that records each value and completes it (status `code(v)` for v >= 100).
fn recorder(seen: &Seen) -> impl Fn(&mut Work<'_>) -> BufferDisposition + Send + Sync + 'static {
    let seen = Arc::clone(seen);
    move |work| {
        let v = value(work.data());
        seen.lock().unwrap().push(v);
        if v >= 100 {
            work.status_set(code(v));
        }
        BufferDisposition::WorkComplete
    }
}

fn wait_and_get(
    queue: &Arc<ThreadedBufferQueue>,
    v: u32,
    at_head: bool,
) -> JoinHandle<Result<(), NtStatus>> {
    let queue = Arc::clone(queue);
    std::thread::spawn(move || {
        let buffer = filled(&queue, v);
        if at_head {
            queue.enqueue_at_head_and_wait(buffer)
        } else {
            queue.enqueue_and_wait(buffer)
        }
    })
}

fn join_soon<T>(handle: JoinHandle<T>, what: &str) -> T {
    common::wait_until(what, || handle.is_finished());
    handle.join().unwrap()
}

fn assert_blocked<T>(handle: &JoinHandle<T>, what: &str) {
    std::thread::sleep(A_WHILE);
    assert!(!handle.is_finished(), "{what} must still be blocked");
}

#[test]
fn four_producers_keep_their_order_on_one_consumer_thread() {
    const PRODUCERS: u32 = 4;
    const PER_PRODUCER: u32 = 400;
    let session = Session::begin();
    let device = device();
    let seen = Seen::default();
    let threads = Arc::new(Mutex::new(HashSet::new()));
    let inside = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let (log, ids, busy, overlapped) = (
        Arc::clone(&seen),
        Arc::clone(&threads),
        Arc::clone(&inside),
        Arc::clone(&overlaps),
    );
    let queue = Arc::new(create(
        &device,
        config(8, move |work| {
            if busy.swap(true, Ordering::SeqCst) {
                overlapped.fetch_add(1, Ordering::SeqCst);
            }
            ids.lock().unwrap().insert(std::thread::current().id());
            log.lock().unwrap().push(value(work.data()));
            busy.store(false, Ordering::SeqCst);
            BufferDisposition::WorkComplete
        }),
    ));
    queue.start().unwrap();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                for sequence in 0..PER_PRODUCER {
                    let mut buffer = loop {
                        match queue.fetch() {
                            Ok(buffer) => break buffer,
                            Err(status) => {
                                assert_eq!(status, NtStatus::UNSUCCESSFUL);
                                std::thread::yield_now();
                            }
                        }
                    };
                    let tag = (producer << 16) | sequence;
                    buffer.data_mut()[..4].copy_from_slice(&tag.to_le_bytes());
                    queue.enqueue(buffer).expect("enqueued");
                }
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    let total = (PRODUCERS * PER_PRODUCER) as usize;
    common::wait_until("every item processed", || {
        seen.lock().unwrap().len() == total
    });
    let seen = seen.lock().unwrap().clone();
    for producer in 0..PRODUCERS {
        let sequence: Vec<u32> = seen
            .iter()
            .filter(|tag| *tag >> 16 == producer)
            .map(|tag| tag & 0xFFFF)
            .collect();
        assert_eq!(
            sequence,
            (0..PER_PRODUCER).collect::<Vec<_>>(),
            "producer {producer}: each item once, in its enqueue order"
        );
    }
    assert_eq!(threads.lock().unwrap().len(), 1, "one consumer thread");
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "work calls never overlap"
    );
    // The last item was recorded inside its work call; its buffer goes back after the call
    // returns.
    common::wait_until("every buffer back", || {
        (queue.count(), queue.free_count()) == (0, 8)
    });
    queue.stop();
    drop(queue);
    drop(device);
    session.end();
}

#[test]
fn work_queued_before_start_runs_after_pre_and_head_enqueues_jump_the_queue() {
    let session = Session::begin();
    let device = device();
    let seen = Seen::default();
    let phases = Arc::new(Mutex::new(Vec::new()));
    let mut config = config(8, recorder(&seen));
    let (pre, post) = (Arc::clone(&phases), Arc::clone(&phases));
    config.pre = Some(Box::new(move |_| pre.lock().unwrap().push("pre")));
    config.post = Some(Box::new(move |_| post.lock().unwrap().push("post")));
    let queue = create(&device, config);
    for v in [1, 2, 3] {
        queue.enqueue(filled(&queue, v)).unwrap();
    }
    queue.enqueue_at_head(filled(&queue, 9)).unwrap();
    queue.enqueue(filled(&queue, 4)).unwrap();
    assert_eq!(queue.count(), 5, "queued, not processed: not started");
    std::thread::sleep(A_WHILE);
    assert!(seen.lock().unwrap().is_empty());
    queue.start().unwrap();
    assert_eq!(
        queue.start(),
        Err(NtStatus::INVALID_DEVICE_STATE),
        "started already"
    );
    common::wait_until("queued work processed", || seen.lock().unwrap().len() == 5);
    assert_eq!(*seen.lock().unwrap(), [9, 1, 2, 3, 4]);
    queue.stop();
    assert_eq!(*phases.lock().unwrap(), ["pre", "post"]);
    assert_eq!((queue.count(), queue.free_count()), (0, 8));
    drop(queue);
    drop(device);
    session.end();
}

#[test]
fn the_work_status_reaches_each_waiting_caller_with_its_buffer_back() {
    let session = Session::begin();
    let device = device();
    let seen = Seen::default();
    let cleaned = Arc::new(Mutex::new(Vec::new()));
    let mut config = config(8, recorder(&seen));
    let log = Arc::clone(&cleaned);
    config.on_reuse_cleanup = Some(Box::new(move |data, context| {
        log.lock().unwrap().push((value(data), context.len()));
    }));
    let queue = Arc::new(create(&device, config));
    queue.start().unwrap();
    assert_eq!(queue.enqueue_and_wait(filled(&queue, 1)), Ok(()));
    assert_eq!(
        *cleaned.lock().unwrap(),
        [(1, CONTEXT)],
        "the buffer was back (cleanup done) before the waiter woke"
    );
    assert_eq!(queue.free_count(), 8);
    assert_eq!(queue.enqueue_and_wait(filled(&queue, 100)), Err(code(100)));
    assert_eq!(
        queue.enqueue_at_head_and_wait(filled(&queue, 101)),
        Err(code(101))
    );
    assert_eq!(queue.free_count(), 8);
    // Concurrent waiters each get the status of their own item.
    let waiters: Vec<_> = (0..4u32)
        .map(|thread| {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                for i in 0..50 {
                    let v = 1000 + thread * 100 + i;
                    let at_head = i % 3 == 0;
                    let mut buffer = loop {
                        if let Ok(buffer) = queue.fetch() {
                            break buffer;
                        }
                        std::thread::yield_now();
                    };
                    buffer.data_mut()[..4].copy_from_slice(&v.to_le_bytes());
                    let result = if at_head {
                        queue.enqueue_at_head_and_wait(buffer)
                    } else {
                        queue.enqueue_and_wait(buffer)
                    };
                    assert_eq!(result, Err(code(v)), "item {v}");
                }
            })
        })
        .collect();
    for waiter in waiters {
        waiter.join().unwrap();
    }
    assert_eq!(seen.lock().unwrap().len(), 3 + 200);
    assert_eq!(cleaned.lock().unwrap().len(), 3 + 200);
    assert_eq!((queue.count(), queue.free_count()), (0, 8));
    queue.stop();
    drop(queue);
    drop(device);
    session.end();
}

/// A work callback that pends items with value 1 (sending the handle out) and records the rest.
fn pender(
    seen: &Seen,
    pending: mpsc::Sender<PendingWork>,
) -> impl Fn(&mut Work<'_>) -> BufferDisposition + Send + Sync + 'static {
    let seen = Arc::clone(seen);
    let pending = Mutex::new(pending);
    move |work| {
        let v = value(work.data());
        seen.lock().unwrap().push(v);
        if v == 1 {
            let kept = work.pend().expect("the buffer is ours to take");
            assert!(work.pend().is_none(), "taken once");
            pending.lock().unwrap().send(kept).unwrap();
            BufferDisposition::WorkPending
        } else {
            BufferDisposition::WorkComplete
        }
    }
}

#[test]
fn pending_work_holds_its_waiter_until_work_completed() {
    let session = Session::begin();
    let device = device();
    let seen = Seen::default();
    let cleaned = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let mut config = config(4, pender(&seen, tx));
    let log = Arc::clone(&cleaned);
    config.on_reuse_cleanup = Some(Box::new(move |data, _| {
        log.lock().unwrap().push((value(data), data[4]));
    }));
    let queue = Arc::new(create(&device, config));
    queue.start().unwrap();
    let waiter = wait_and_get(&queue, 1, false);
    let mut pending = rx.recv_timeout(SOON).expect("the work was pended");
    assert_eq!(value(pending.data()), 1);
    assert_eq!(pending.context().len(), CONTEXT);
    pending.data_mut()[4] = 7; // the client finishes the work in the buffer
    assert_eq!(queue.pending_count(), 1);
    assert_eq!(queue.free_count(), 3, "the pending buffer is the client's");
    assert_blocked(&waiter, "the waiter of pending work");
    // Other work is not blocked by the pending item: a new enqueue wakes the thread.
    assert_eq!(queue.enqueue_and_wait(filled(&queue, 2)), Ok(()));
    assert_blocked(&waiter, "the waiter of pending work");
    queue
        .work_completed(pending, NtStatus::DEVICE_BUSY)
        .expect("our pending work");
    assert_eq!(join_soon(waiter, "the waiter"), Err(NtStatus::DEVICE_BUSY));
    assert_eq!(queue.pending_count(), 0);
    assert_eq!(queue.free_count(), 4);
    assert_eq!(*cleaned.lock().unwrap(), [(2, 0), (1, 7)]);
    queue.stop();
    drop(queue);
    drop(device);
    session.end();
}

#[test]
fn pending_work_stops_the_drain_until_it_is_completed() {
    let session = Session::begin();
    let device = device();
    let seen = Seen::default();
    let (tx, rx) = mpsc::channel();
    let queue = create(&device, config(4, pender(&seen, tx)));
    for v in [1, 2, 3] {
        queue.enqueue(filled(&queue, v)).unwrap();
    }
    queue.start().unwrap();
    let pending = rx.recv_timeout(SOON).expect("the work was pended");
    std::thread::sleep(A_WHILE);
    assert_eq!(
        (seen.lock().unwrap().clone(), queue.count()),
        (vec![1], 2),
        "no further buffer is taken after WorkPending"
    );
    queue.work_completed(pending, NtStatus::SUCCESS).unwrap();
    common::wait_until("the rest drained", || seen.lock().unwrap().len() == 3);
    assert_eq!(*seen.lock().unwrap(), [1, 2, 3]);
    assert_eq!((queue.count(), queue.free_count()), (0, 4));
    queue.stop();
    drop(queue);
    drop(device);
    session.end();
}

/// A work callback that blocks on `gate` for items with value 1 (after setting `inside`).
fn gated(
    seen: &Seen,
    gate: &Arc<Event>,
    inside: &Arc<Event>,
) -> impl Fn(&mut Work<'_>) -> BufferDisposition + Send + Sync + 'static {
    let (seen, gate, inside) = (Arc::clone(seen), Arc::clone(gate), Arc::clone(inside));
    move |work| {
        let v = value(work.data());
        seen.lock().unwrap().push(v);
        if v == 1 {
            let _ = inside.set();
            gate.wait();
        }
        BufferDisposition::WorkComplete
    }
}

fn events() -> (Arc<Event>, Arc<Event>) {
    (
        Arc::new(Event::new(EventKind::Notification, false)),
        Arc::new(Event::new(EventKind::Notification, false)),
    )
}

#[test]
fn flush_completes_waiting_callers_with_cancelled_and_leaves_work_in_progress() {
    let session = Session::begin();
    let device = device();
    let seen = Seen::default();
    let cleaned = Arc::new(AtomicUsize::new(0));
    let (gate, inside) = events();
    let mut config = config(4, gated(&seen, &gate, &inside));
    let count = Arc::clone(&cleaned);
    config.on_reuse_cleanup = Some(Box::new(move |_, _| {
        count.fetch_add(1, Ordering::SeqCst);
    }));
    let queue = Arc::new(create(&device, config));
    queue.start().unwrap();
    let running = wait_and_get(&queue, 1, false);
    assert!(
        inside.wait_timeout(SOON),
        "the first item is being worked on"
    );
    let second = wait_and_get(&queue, 2, false);
    let third = wait_and_get(&queue, 3, true);
    common::wait_until("two items queued", || queue.count() == 2);
    queue.flush();
    assert_eq!(join_soon(second, "second waiter"), Err(NtStatus::CANCELLED));
    assert_eq!(join_soon(third, "third waiter"), Err(NtStatus::CANCELLED));
    assert_eq!(
        cleaned.load(Ordering::SeqCst),
        2,
        "flushed buffers went back"
    );
    assert_eq!(queue.count(), 0);
    assert_blocked(&running, "the item in progress");
    let _ = gate.set();
    assert_eq!(join_soon(running, "first waiter"), Ok(()));
    assert_eq!(*seen.lock().unwrap(), [1], "flushed items never ran");
    assert_eq!(queue.free_count(), 4);
    queue.flush(); // nothing queued: nothing happens
    queue.stop();
    drop(queue);
    drop(device);
    session.end();
}

#[test]
fn stop_waits_for_the_work_in_progress_and_queued_work_runs_after_the_next_start() {
    let session = Session::begin();
    let device = device();
    let seen = Seen::default();
    let (gate, inside) = events();
    let phases = Arc::new(Mutex::new(Vec::new()));
    let mut config = config(8, gated(&seen, &gate, &inside));
    let (pre, post) = (Arc::clone(&phases), Arc::clone(&phases));
    config.pre = Some(Box::new(move |_| pre.lock().unwrap().push("pre")));
    config.post = Some(Box::new(move |_| post.lock().unwrap().push("post")));
    let queue = Arc::new(create(&device, config));
    queue.start().unwrap();
    for v in [1, 2, 3] {
        queue.enqueue(filled(&queue, v)).unwrap();
    }
    assert!(inside.wait_timeout(SOON));
    let stopper = {
        let queue = Arc::clone(&queue);
        std::thread::spawn(move || queue.stop())
    };
    assert_blocked(&stopper, "stop, while work is in progress");
    let _ = gate.set();
    join_soon(stopper, "stop");
    assert_eq!(
        *seen.lock().unwrap(),
        [1],
        "the stop took effect after item 1"
    );
    assert_eq!(queue.count(), 2, "the rest stays queued");
    // Stopped: enqueues queue, waits are refused at once.
    queue.enqueue(filled(&queue, 4)).unwrap();
    let started = Instant::now();
    assert_eq!(
        queue.enqueue_and_wait(filled(&queue, 5)),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert!(started.elapsed() < SOON);
    assert_eq!(
        (queue.count(), queue.free_count()),
        (3, 5),
        "5 was not queued"
    );
    std::thread::sleep(A_WHILE);
    assert_eq!(seen.lock().unwrap().len(), 1);
    queue.start().unwrap();
    common::wait_until("queued work after restart", || {
        seen.lock().unwrap().len() == 4
    });
    assert_eq!(*seen.lock().unwrap(), [1, 2, 3, 4]);
    queue.stop();
    queue.stop(); // stopped: no-op
    assert_eq!(*phases.lock().unwrap(), ["pre", "post", "pre", "post"]);
    assert_eq!(queue.free_count(), 8);
    drop(queue);
    drop(device);
    session.end();
}

#[test]
fn close_waits_for_work_in_progress_cancels_queued_work_and_releases_pending_waiters() {
    let session = Session::begin();
    let device = device();
    let seen = Seen::default();
    let cleaned = Arc::new(Mutex::new(Vec::new()));
    let (gate, inside) = events();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let phases = Arc::new(Mutex::new(Vec::new()));
    let (log, g, i) = (Arc::clone(&seen), Arc::clone(&gate), Arc::clone(&inside));
    let mut config = config(8, move |work: &mut Work<'_>| {
        let v = value(work.data());
        log.lock().unwrap().push(v);
        match v {
            1 => {
                tx.lock().unwrap().send(work.pend().unwrap()).unwrap();
                BufferDisposition::WorkPending
            }
            2 => {
                let _ = i.set();
                g.wait();
                work.status_set(code(2));
                BufferDisposition::WorkComplete
            }
            _ => BufferDisposition::WorkComplete,
        }
    });
    let cleanups = Arc::clone(&cleaned);
    config.on_reuse_cleanup = Some(Box::new(move |data, _| {
        cleanups.lock().unwrap().push(value(data));
    }));
    let post = Arc::clone(&phases);
    config.post = Some(Box::new(move |_| post.lock().unwrap().push("post")));
    let queue = Arc::new(create(&device, config));
    queue.start().unwrap();
    let pended = wait_and_get(&queue, 1, false);
    let pending = rx.recv_timeout(SOON).expect("item 1 pended");
    let in_progress = wait_and_get(&queue, 2, false);
    assert!(inside.wait_timeout(SOON), "item 2 in progress");
    let queued = wait_and_get(&queue, 3, false);
    common::wait_until("item 3 queued", || queue.count() == 1);
    queue.enqueue(filled(&queue, 4)).unwrap();
    assert_eq!(queue.count(), 2);
    let _ = sim::take_debug_output();

    let closer = {
        let queue = Arc::clone(&queue);
        std::thread::spawn(move || lifecycle::close_on_destroy(&**queue))
    };
    assert_blocked(&closer, "close, while item 2 is in progress");
    assert!(phases.lock().unwrap().is_empty());
    let _ = gate.set();
    join_soon(closer, "close");
    assert_eq!(join_soon(in_progress, "item 2's waiter"), Err(code(2)));
    assert_eq!(
        join_soon(queued, "item 3's waiter"),
        Err(NtStatus::CANCELLED)
    );
    assert_eq!(
        join_soon(pended, "item 1's waiter"),
        Err(NtStatus::CANCELLED),
        "the waiter of pending work is released at close"
    );
    assert_eq!(*phases.lock().unwrap(), ["post"], "the thread loop ended");
    assert_eq!(*seen.lock().unwrap(), [1, 2], "queued items never ran");
    let mut returned = cleaned.lock().unwrap().clone();
    returned.sort_unstable();
    assert_eq!(
        returned,
        [2, 3, 4],
        "every buffer but the pending one went back"
    );
    let trace = sim::take_debug_output().join("");
    assert!(
        trace.contains("closed with 1 pending work item(s)") && trace.contains("1 waiter(s)"),
        "the pending work is reported: {trace}"
    );
    // After close: no callback runs, enqueues are refused, the pending work can still be
    // completed (its buffer is freed).
    assert_eq!(queue.start(), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(queue.fetch().err(), Some(NtStatus::UNSUCCESSFUL));
    queue.work_completed(pending, NtStatus::SUCCESS).unwrap();
    assert_eq!(queue.pending_count(), 0);
    assert_eq!(seen.lock().unwrap().len(), 2);
    drop(queue);
    drop(device);
    session.end();
}

#[test]
fn enqueue_is_refused_with_the_buffer_once_closed() {
    let session = Session::begin();
    let device = device();
    let seen = Seen::default();
    let queue = create(&device, config(2, recorder(&seen)));
    queue.start().unwrap();
    let kept = filled(&queue, 1);
    let kept_too = filled(&queue, 2);
    lifecycle::close_on_destroy(&*queue);
    let error = queue.enqueue(kept).expect_err("closed");
    assert_eq!(error.status(), NtStatus::INVALID_DEVICE_STATE);
    let buffer = error.into_buffer();
    assert_eq!(value(buffer.data()), 1, "the buffer came back intact");
    let error = queue.enqueue_at_head(buffer).expect_err("closed");
    assert_eq!(error.status, NtStatus::INVALID_DEVICE_STATE);
    assert_eq!(
        queue.enqueue_and_wait(kept_too),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    drop(error); // freed: its pool is closed
    assert!(seen.lock().unwrap().is_empty());
    drop(queue);
    drop(device);
    session.end();
}

#[test]
fn and_wait_on_the_modules_own_thread_fails_at_once_instead_of_hanging() {
    let session = Session::begin();
    let device = device();
    let slot: Arc<OnceLock<Weak<ThreadedBufferQueue>>> = Arc::new(OnceLock::new());
    let results = Arc::new(Mutex::new(Vec::new()));
    let (link, log) = (Arc::clone(&slot), Arc::clone(&results));
    let nested = move |log: &Attempts, from: &'static str| {
        let Some(queue) = link.get().and_then(Weak::upgrade) else {
            return;
        };
        let started = Instant::now();
        let tail = queue.enqueue_and_wait(filled(&queue, 50));
        let head = queue.enqueue_at_head_and_wait(filled(&queue, 51));
        queue.stop(); // ignored on the module's own thread
        let prompt = started.elapsed() < SOON;
        log.lock()
            .unwrap()
            .extend([(from, tail, prompt), (from, head, prompt)]);
    };
    let nested = Arc::new(nested);
    let (in_work, in_pre) = (Arc::clone(&nested), Arc::clone(&nested));
    let (work_log, pre_log) = (Arc::clone(&log), Arc::clone(&log));
    let mut config = config(4, move |work: &mut Work<'_>| {
        if value(work.data()) == 1 {
            in_work(&work_log, "work");
        }
        BufferDisposition::WorkComplete
    });
    config.pre = Some(Box::new(move |_| in_pre(&pre_log, "pre")));
    let queue = Arc::new(create(&device, config));
    slot.set(Arc::downgrade(&queue)).unwrap();
    queue.start().unwrap();
    assert_eq!(queue.enqueue_and_wait(filled(&queue, 1)), Ok(()));
    let deadlock = Err(NtStatus::POSSIBLE_DEADLOCK);
    assert_eq!(
        *results.lock().unwrap(),
        [
            ("pre", deadlock, true),
            ("pre", deadlock, true),
            ("work", deadlock, true),
            ("work", deadlock, true)
        ],
        "refused at once, on the module's thread only"
    );
    // The stop asked for inside the callbacks was ignored: the thread still works.
    assert_eq!(queue.enqueue_and_wait(filled(&queue, 2)), Ok(()));
    assert_eq!((queue.count(), queue.free_count()), (0, 4));
    queue.stop();
    drop(queue);
    drop(device);
    session.end();
}

#[test]
fn and_wait_before_start_fails_at_once_and_returns_the_buffer() {
    let session = Session::begin();
    let device = device();
    let seen = Seen::default();
    let queue = create(&device, config(2, recorder(&seen)));
    let started = Instant::now();
    assert_eq!(
        queue.enqueue_and_wait(filled(&queue, 1)),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(
        queue.enqueue_at_head_and_wait(filled(&queue, 2)),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert!(started.elapsed() < SOON);
    assert_eq!((queue.count(), queue.free_count()), (0, 2));
    queue.start().unwrap();
    assert_eq!(queue.enqueue_and_wait(filled(&queue, 3)), Ok(()));
    assert_eq!(*seen.lock().unwrap(), [3]);
    drop(queue); // closes: stops the thread
    drop(device);
    session.end();
}

#[test]
fn foreign_buffers_and_pending_work_are_handed_back() {
    let session = Session::begin();
    let device = device();
    let seen = Seen::default();
    let (tx, rx) = mpsc::channel();
    let a = Arc::new(create(&device, config(2, pender(&seen, tx))));
    let b = create(&device, config(2, recorder(&seen)));
    a.start().unwrap();
    b.start().unwrap();
    let error = b.enqueue(filled(&a, 7)).expect_err("a's buffer");
    assert_eq!(error.status(), NtStatus::INVALID_PARAMETER);
    let error = b
        .enqueue_at_head(error.into_buffer())
        .expect_err("a's buffer");
    let error = b.reuse(error.into_buffer()).expect_err("a's buffer");
    assert_eq!(value(error.buffer.data()), 7);
    assert_eq!(
        b.enqueue_and_wait(error.into_buffer()),
        Err(NtStatus::INVALID_PARAMETER)
    );
    assert_eq!(
        a.free_count(),
        2,
        "the refused buffer went back to its own queue"
    );
    assert_eq!(b.free_count(), 2);
    let waiter = wait_and_get(&a, 1, false);
    let pending = rx.recv_timeout(SOON).unwrap();
    let error = b
        .work_completed(pending, NtStatus::SUCCESS)
        .expect_err("a's pending work");
    assert_eq!(error.status(), NtStatus::INVALID_PARAMETER);
    assert_blocked(&waiter, "the waiter of a's pending work");
    a.work_completed(error.into_work(), code(9)).unwrap();
    assert_eq!(join_soon(waiter, "a's waiter"), Err(code(9)));
    assert_eq!(*seen.lock().unwrap(), [1], "b never ran a's work");
    a.stop();
    b.stop();
    drop((a, b));
    drop(device);
    session.end();
}

#[test]
fn fetched_buffers_go_back_when_reused_or_dropped_and_show_only_the_client_context() {
    let session = Session::begin();
    let device = device();
    let cleaned = Arc::new(Mutex::new(Vec::new()));
    let mut config = config(2, |_: &mut Work<'_>| BufferDisposition::WorkComplete);
    let log = Arc::clone(&cleaned);
    config.on_reuse_cleanup = Some(Box::new(move |data, context| {
        log.lock().unwrap().push((value(data), context.to_vec()));
    }));
    let queue = create(&device, config);
    assert_eq!(queue.buffer_size(), 16);
    let mut buffer = filled(&queue, 5);
    assert_eq!((buffer.len(), buffer.context().len()), (16, CONTEXT));
    assert!(!buffer.is_empty());
    buffer.context_mut().copy_from_slice(&[1, 2, 3, 4]);
    queue.reuse(buffer).unwrap();
    let mut dropped = filled(&queue, 6);
    let (data, context) = dropped.parts_mut();
    assert_eq!((data.len(), context.len()), (16, CONTEXT));
    context[0] = 9;
    assert_eq!(queue.free_count(), 1);
    drop(dropped);
    assert_eq!(queue.free_count(), 2);
    assert_eq!(
        *cleaned.lock().unwrap(),
        [(5, vec![1, 2, 3, 4]), (6, vec![9, 0, 0, 0])],
        "cleanup sees the data and the client context"
    );
    let again = queue.fetch().unwrap();
    assert!(again.data().iter().all(|&b| b == 0) && again.context().iter().all(|&b| b == 0));
    drop(again);
    drop(queue);
    drop(device);
    session.end();
}

#[test]
fn dropped_pending_work_completes_with_cancelled_and_a_warning() {
    let session = Session::begin();
    let device = device();
    let seen = Seen::default();
    let (tx, rx) = mpsc::channel();
    let queue = Arc::new(create(&device, config(2, pender(&seen, tx))));
    queue.start().unwrap();
    let waiter = wait_and_get(&queue, 1, false);
    let pending = rx.recv_timeout(SOON).unwrap();
    let _ = sim::take_debug_output();
    drop(pending);
    assert_eq!(join_soon(waiter, "the waiter"), Err(NtStatus::CANCELLED));
    assert_eq!((queue.pending_count(), queue.free_count()), (0, 2));
    let trace = sim::take_debug_output().join("");
    assert!(trace.contains("dropped without work_completed"), "{trace}");
    queue.stop();
    drop(queue);
    drop(device);
    session.end();
}

#[test]
fn a_disposition_that_contradicts_the_buffer_is_traced_and_ownership_decides() {
    let session = Session::begin();
    let device = device();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let queue = Arc::new(create(
        &device,
        config(2, move |work: &mut Work<'_>| {
            if value(work.data()) == 1 {
                // Claims pending but leaves the buffer: completed with the status set.
                work.status_set(code(1));
                BufferDisposition::WorkPending
            } else {
                // Takes the buffer but claims complete: stays pending.
                tx.lock().unwrap().send(work.pend().unwrap()).unwrap();
                BufferDisposition::WorkComplete
            }
        }),
    ));
    queue.start().unwrap();
    let _ = sim::take_debug_output();
    assert_eq!(queue.enqueue_and_wait(filled(&queue, 1)), Err(code(1)));
    let waiter = wait_and_get(&queue, 2, false);
    let pending = rx.recv_timeout(SOON).unwrap();
    assert_blocked(&waiter, "the waiter of work the callback kept");
    queue.work_completed(pending, NtStatus::SUCCESS).unwrap();
    assert_eq!(join_soon(waiter, "the waiter"), Ok(()));
    let trace = sim::take_debug_output().join("");
    assert!(
        trace.contains("without taking the buffer") && trace.contains("it stays pending"),
        "{trace}"
    );
    queue.stop();
    drop(queue);
    drop(device);
    session.end();
}

#[test]
fn invalid_configurations_are_typed_errors_and_create_nothing() {
    let session = Session::begin();
    let device = device();
    let live = sim::counters().live_objects;
    let make = |settings: SourceSettings, attributes: ModuleAttributes| {
        ThreadedBufferQueue::create(
            device.handle().cast(),
            ThreadedBufferQueueConfig::new(
                BufferQueueConfig::new(settings),
                Box::new(|_: &mut Work<'_>| BufferDisposition::WorkComplete),
            ),
            attributes,
        )
        .err()
    };
    let config_error = |error| Some(ModuleError::Config(error));
    let mut zero = settings(2);
    zero.buffer_size = 0;
    assert_eq!(
        make(zero, ModuleAttributes::new()),
        config_error(ConfigError::ZeroBufferSize)
    );
    let mut none = settings(0);
    none.enable_look_aside = false;
    assert_eq!(
        make(none, ModuleAttributes::new()),
        config_error(ConfigError::NoBuffers)
    );
    let mut paged = settings(2);
    paged.pool_type = PoolType::Paged;
    assert_eq!(
        make(paged, ModuleAttributes::new()),
        config_error(ConfigError::PagedPoolRequiresPassiveLevel)
    );
    let mut inner = config(2, |_: &mut Work<'_>| BufferDisposition::WorkComplete);
    inner.buffer_queue.on_reuse_cleanup = Some(Box::new(|_, _| {}));
    let error = ThreadedBufferQueue::create(device.handle().cast(), inner, ModuleAttributes::new())
        .expect_err("inner callback");
    assert_eq!(
        error,
        ModuleError::Config(ConfigError::BufferQueueCallbackSet)
    );
    assert_eq!(error.status(), NtStatus::INVALID_PARAMETER);
    let mut inner = config(2, |_: &mut Work<'_>| BufferDisposition::WorkComplete);
    inner.buffer_queue.on_timer_expired = Some(Box::new(|_, _| {}));
    assert_eq!(
        ThreadedBufferQueue::create(device.handle().cast(), inner, ModuleAttributes::new()).err(),
        config_error(ConfigError::BufferQueueCallbackSet)
    );
    assert_eq!(sim::counters().live_objects, live, "nothing was created");
    // Paged pool is fine with the passive-level option.
    let mut paged = settings(2);
    paged.pool_type = PoolType::Paged;
    assert_eq!(make(paged, ModuleAttributes::passive()), None);
    drop(device);
    session.end();
}

fn create_with_fault(point: FaultPoint) -> usize {
    let session = Session::begin();
    let device = device();
    let seen = Seen::default();
    let live = sim::counters().live_objects;
    let mut failures = 0;
    for nth in 1.. {
        assert!(nth < 200, "creation never succeeded");
        sim::fail_nth(point, nth, NtStatus::INSUFFICIENT_RESOURCES.raw());
        let mut config = config(3, recorder(&seen));
        config.pre = Some(Box::new(|_| {}));
        let result =
            ThreadedBufferQueue::create(device.handle().cast(), config, ModuleAttributes::new());
        sim::clear_faults();
        match result {
            Err(error) => {
                assert_eq!(error.status(), NtStatus::INSUFFICIENT_RESOURCES);
                failures += 1;
                assert_eq!(
                    sim::counters().live_objects,
                    live,
                    "failure #{nth} left objects behind"
                );
            }
            Ok(queue) => {
                queue.start().unwrap();
                assert_eq!(queue.enqueue_and_wait(filled(&queue, 1)), Ok(()));
                drop(queue);
                break;
            }
        }
    }
    assert_eq!(
        *seen.lock().unwrap(),
        [1],
        "only the module that was created ran"
    );
    assert_eq!(sim::counters().live_objects, live, "nothing leaked");
    drop(device);
    // The session checks that no system thread, handle or pool was left behind.
    session.end();
    failures
}

#[test]
fn allocation_failure_at_each_creation_step_fails_cleanly() {
    // 3 buffers' data and context, and the thread.
    let failures = create_with_fault(FaultPoint::Allocation);
    assert!(failures >= 7, "every allocation was tried ({failures})");
}

#[test]
fn object_creation_failure_at_each_creation_step_fails_cleanly() {
    // 2 pool locks, the thread's lock, 3 buffers' data and context.
    let failures = create_with_fault(FaultPoint::ObjectCreation);
    assert!(
        failures >= 9,
        "every object creation was tried ({failures})"
    );
}

#[test]
fn passive_level_module_works_with_wait_locks() {
    let session = Session::begin();
    let device = device();
    let seen = Seen::default();
    let queue = ThreadedBufferQueue::create(
        device.handle().cast(),
        config(2, recorder(&seen)),
        ModuleAttributes::passive(),
    )
    .expect("passive-level module");
    queue.start().unwrap();
    queue.enqueue(filled(&queue, 1)).unwrap();
    assert_eq!(queue.enqueue_and_wait(filled(&queue, 100)), Err(code(100)));
    assert_eq!(*seen.lock().unwrap(), [1, 100]);
    drop(queue);
    drop(device);
    session.end();
}

#[test]
fn fetch_enqueue_flush_and_count_at_dispatch_level() {
    let session = Session::begin();
    let device = device();
    let seen = Seen::default();
    let queue = create(&device, config(4, recorder(&seen)));
    sim::at_irql(dmf::wdf::irql::DISPATCH_LEVEL, || {
        queue.enqueue(filled(&queue, 1)).unwrap();
        queue.enqueue_at_head(filled(&queue, 2)).unwrap();
        queue.enqueue(filled(&queue, 3)).unwrap();
        assert_eq!(queue.count(), 3);
        queue.reuse(filled(&queue, 4)).unwrap();
    });
    queue.start().unwrap();
    common::wait_until("processed", || seen.lock().unwrap().len() == 3);
    assert_eq!(*seen.lock().unwrap(), [2, 1, 3]);
    queue.stop();
    queue.enqueue(filled(&queue, 5)).unwrap();
    sim::at_irql(dmf::wdf::irql::DISPATCH_LEVEL, || queue.flush());
    assert_eq!((queue.count(), queue.free_count()), (0, 4));
    drop(queue);
    drop(device);
    session.end();
}

#[test]
fn static_module_opens_with_its_device_collection_and_closes_with_it() {
    let session = Session::begin();
    let device = device();
    let seen = Seen::default();
    let queue = ThreadedBufferQueue::create(
        device.handle().cast(),
        config(2, recorder(&seen)),
        ModuleAttributes::static_module(),
    )
    .unwrap();
    assert_eq!(
        queue.start(),
        Err(NtStatus::INVALID_DEVICE_STATE),
        "not open yet"
    );
    let mut modules = DeviceModules::new();
    modules.add(&queue).unwrap();
    modules.post_create().unwrap();
    queue.start().unwrap();
    assert_eq!(queue.enqueue_and_wait(filled(&queue, 1)), Ok(()));
    modules.destroy();
    assert_eq!(queue.start(), Err(NtStatus::INVALID_DEVICE_STATE), "closed");
    assert_eq!(*seen.lock().unwrap(), [1]);
    drop(queue);
    drop(device);
    session.end();
}

/// [`four_producers_keep_their_order_on_one_consumer_thread`] under many scheduling seeds (see `common/schedules.rs`; `SCHEDULE_SEEDS=1000` is
/// the long run).
#[test]
fn four_producers_keep_their_order_on_one_consumer_thread_under_many_schedules() {
    common::schedules::under_seeds(
        "ThreadedBufferQueue: four_producers_keep_their_order_on_one_consumer_thread",
        50,
        four_producers_keep_their_order_on_one_consumer_thread,
    );
}
