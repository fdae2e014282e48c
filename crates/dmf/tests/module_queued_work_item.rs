//! `QueuedWorkItem` on the simulation: passive-level callbacks in FIFO order, enqueue from
//! `DISPATCH_LEVEL`, status to a waiting caller, oversized blocks, exhaustion, flush releasing
//! waiters with `STATUS_CANCELLED`, enqueue after flush/close, and concurrent enqueuers.
#![cfg(not(windows))]

#[path = "common/schedules.rs"]
mod schedules;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use dmf::core::{ModuleAttributes, lifecycle};
use dmf::modules::buffer_pool::SourceSettings;
use dmf::modules::buffer_queue::BufferQueueConfig;
use dmf::modules::queued_work_item::{QueuedWork, QueuedWorkItem, QueuedWorkItemConfig};
use dmf::wdf::event::{Event, EventKind};
use dmf::wdf::{Memory, NtStatus, PoolType};
use wdk_sys::sim::{self, Session};

fn device() -> Memory {
    Memory::create(1, PoolType::NonPaged, None).expect("parent object")
}

fn current_irql() -> u8 {
    dmf::wdf::irql::current()
}

fn work_item(
    device: &Memory,
    count: usize,
    size: usize,
    callback: impl Fn(&mut QueuedWork<'_>) + Send + Sync + 'static,
) -> QueuedWorkItem {
    let settings = SourceSettings {
        buffer_count: count,
        buffer_size: size,
        buffer_context_size: 4,
        ..SourceSettings::default()
    };
    QueuedWorkItem::create(
        device.handle().cast(),
        QueuedWorkItemConfig {
            buffer_queue: BufferQueueConfig::new(settings),
            callback: Box::new(callback),
        },
        ModuleAttributes::new(),
    )
    .expect("module is created")
}

#[test]
fn callbacks_run_at_passive_level_in_fifo_order_with_the_bytes_enqueued() {
    let session = Session::begin();
    let device = device();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let item = work_item(&device, 8, 4, move |work| {
        assert!(
            work.context().iter().all(|&b| b == 0),
            "client context starts zeroed"
        );
        tx.lock()
            .unwrap()
            .send((work.buffer().to_vec(), current_irql()))
            .unwrap();
    });
    sim::at_irql(wdk_sys::DISPATCH_LEVEL as u8, || {
        item.enqueue(&[1]).unwrap();
        item.enqueue(&[2, 2]).unwrap();
        item.enqueue(&[3, 3, 3, 3]).unwrap();
    });
    for expected in [vec![1u8], vec![2, 2], vec![3, 3, 3, 3]] {
        let (bytes, irql) = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("callback ran");
        assert_eq!(bytes, expected);
        assert_eq!(irql, 0, "PASSIVE_LEVEL");
    }
    session.wait_idle();
    assert_eq!(item.pending_count(), 0);
    drop((item, device));
    session.end();
}

#[test]
fn enqueue_and_wait_returns_the_status_the_callback_set() {
    let session = Session::begin();
    let device = device();
    let item = work_item(&device, 2, 4, |work| {
        if work.buffer()[0] == 0 {
            work.status_set(NtStatus::INVALID_PARAMETER);
        }
    });
    assert_eq!(item.enqueue_and_wait(&[1]), Ok(()));
    assert_eq!(
        item.enqueue_and_wait(&[0]),
        Err(NtStatus::INVALID_PARAMETER)
    );
    drop((item, device));
    session.end();
}

#[test]
fn oversized_block_is_refused_and_its_buffer_returned() {
    let session = Session::begin();
    let device = device();
    let ran = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&ran);
    let item = work_item(&device, 1, 4, move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(item.enqueue(&[0; 5]), Err(NtStatus::BUFFER_TOO_SMALL));
    assert_eq!(
        item.enqueue_and_wait(&[0; 5]),
        Err(NtStatus::BUFFER_TOO_SMALL)
    );
    // The single buffer was not leaked: a fitting block still goes through.
    assert_eq!(item.enqueue_and_wait(&[0; 4]), Ok(()));
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    drop((item, device));
    session.end();
}

#[test]
fn all_buffers_pending_is_unsuccessful() {
    let session = Session::begin();
    let device = device();
    let gate = Arc::new(Event::new(EventKind::Notification, false));
    let started = Arc::new(Event::new(EventKind::Notification, false));
    let (g, s) = (Arc::clone(&gate), Arc::clone(&started));
    let item = work_item(&device, 2, 1, move |_| {
        let _ = s.set();
        g.wait();
    });
    item.enqueue(&[1]).unwrap();
    assert!(
        started.wait_timeout(Duration::from_secs(5)),
        "first callback running"
    );
    item.enqueue(&[2]).unwrap();
    assert_eq!(
        item.enqueue(&[3]),
        Err(NtStatus::UNSUCCESSFUL),
        "both buffers busy"
    );
    let _ = gate.set();
    session.wait_idle();
    item.enqueue(&[4]).unwrap();
    session.wait_idle();
    drop((item, device));
    session.end();
}

#[test]
fn flush_cancels_waiters_and_later_enqueues_fail() {
    let session = Session::begin();
    let device = device();
    let gate = Arc::new(Event::new(EventKind::Notification, false));
    let started = Arc::new(Event::new(EventKind::Notification, false));
    let ran = Arc::new(Mutex::new(Vec::new()));
    let (g, s, r) = (Arc::clone(&gate), Arc::clone(&started), Arc::clone(&ran));
    let item = Arc::new(work_item(&device, 4, 1, move |work| {
        r.lock().unwrap().push(work.buffer()[0]);
        if work.buffer()[0] == 1 {
            let _ = s.set();
            g.wait();
        }
    }));
    item.enqueue(&[1]).unwrap();
    assert!(started.wait_timeout(Duration::from_secs(5)));
    // A caller waits on an item that cannot start while 1 runs.
    let waiter = {
        let item = Arc::clone(&item);
        std::thread::spawn(move || item.enqueue_and_wait(&[2]))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while item.pending_count() == 0 {
        assert!(std::time::Instant::now() < deadline, "waiter never queued");
        std::thread::yield_now();
    }
    item.enqueue(&[3]).unwrap();
    // Flush on another thread: it must wait for the running callback.
    let flusher = {
        let item = Arc::clone(&item);
        std::thread::spawn(move || item.flush())
    };
    // Once flush has begun, enqueues fail with INVALID_DEVICE_STATE (probing may queue one more
    // item while a buffer is free; flush cancels it too).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while item.enqueue(&[9]) != Err(NtStatus::INVALID_DEVICE_STATE) {
        assert!(std::time::Instant::now() < deadline, "flush never began");
        std::thread::yield_now();
    }
    assert!(
        !flusher.is_finished(),
        "flush waits for the running callback"
    );
    let _ = gate.set();
    flusher.join().unwrap();
    assert_eq!(
        waiter.join().unwrap(),
        Err(NtStatus::CANCELLED),
        "the waiter is released, not left hanging"
    );
    assert_eq!(*ran.lock().unwrap(), [1], "items not started are not run");
    assert_eq!(item.pending_count(), 0, "their buffers went back");
    assert_eq!(item.enqueue(&[4]), Err(NtStatus::INVALID_DEVICE_STATE));
    assert_eq!(
        item.enqueue_and_wait(&[4]),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    session.wait_idle();
    drop(item);
    drop(device);
    session.end();
}

#[test]
fn enqueue_after_close_fails() {
    let session = Session::begin();
    let device = device();
    let item = work_item(&device, 1, 1, |_| {});
    lifecycle::close(&*item);
    assert_eq!(item.enqueue(&[1]), Err(NtStatus::INVALID_DEVICE_STATE));
    drop((item, device));
    session.end();
}

#[test]
fn concurrent_enqueuers_each_run_once() {
    let session = Session::begin();
    let device = device();
    let total = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&total);
    let item = Arc::new(work_item(&device, 4, 4, move |work| {
        let value = u32::from_le_bytes(work.buffer().try_into().unwrap());
        counter.fetch_add(value, Ordering::SeqCst);
    }));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let item = Arc::clone(&item);
            std::thread::spawn(move || {
                let mut sent = 0;
                while sent < 300 {
                    match item.enqueue(&1u32.to_le_bytes()) {
                        Ok(()) => sent += 1,
                        Err(status) => {
                            assert_eq!(status, NtStatus::UNSUCCESSFUL);
                            std::thread::yield_now();
                        }
                    }
                }
                loop {
                    match item.enqueue_and_wait(&0u32.to_le_bytes()) {
                        Err(NtStatus::UNSUCCESSFUL) => std::thread::yield_now(),
                        result => break assert_eq!(result, Ok(())),
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    session.wait_idle();
    assert_eq!(
        total.load(Ordering::SeqCst),
        900,
        "every enqueue ran exactly once"
    );
    drop(item);
    drop(device);
    session.end();
}

/// Issue 10, 4.4: dropping the module deletes its child queue and every framework object it
/// owns before the drop returns, even right after (or while) its callback ran; the parent can
/// be deleted at once.
#[test]
fn drop_deletes_every_framework_object_before_returning() {
    for round in 0..20 {
        let session = Session::begin_with_seed(round);
        let device = device();
        let undeleted_before = sim::undeleted_objects();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let (ran_tx, ran_rx) = mpsc::channel::<()>();
        let ran_tx = Mutex::new(ran_tx);
        let item = work_item(&device, 4, 4, move |work| {
            ran_tx.lock().unwrap().send(()).unwrap();
            if work.buffer()[0] == 1 {
                // Held until the test has started dropping the module.
                let _ = release_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(5));
            }
        });
        item.enqueue(&[0]).unwrap();
        ran_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        item.enqueue(&[1]).unwrap();
        ran_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let dropper = std::thread::spawn(move || drop(item));
        std::thread::sleep(Duration::from_millis(round % 3));
        release_tx.send(()).unwrap();
        dropper.join().unwrap();
        assert_eq!(
            sim::undeleted_objects(),
            undeleted_before,
            "every framework object of the module was deleted when its drop returned (round {round})"
        );
        drop(device);
        session.end();
    }
}

/// Issue 10, 4.5: `enqueue_and_wait` from inside the module's own callback fails at once
/// instead of waiting for an item that can only run after the callback returned; the module
/// keeps working.
#[test]
fn enqueue_and_wait_from_its_own_callback_fails_promptly() {
    let session = Session::begin();
    let device = device();
    let me: Arc<Mutex<Option<Arc<QueuedWorkItem>>>> = Arc::new(Mutex::new(None));
    let inner = Arc::clone(&me);
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let item = Arc::new(work_item(&device, 4, 4, move |work| {
        if work.buffer()[0] == 1 {
            let module = inner.lock().unwrap().clone().expect("set before enqueue");
            let result = module.enqueue_and_wait(&[2]);
            tx.lock().unwrap().send(result).unwrap();
        }
    }));
    *me.lock().unwrap() = Some(Arc::clone(&item));
    item.enqueue(&[1]).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5))
            .expect("no deadlock"),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    // From another thread it works, and the module goes on working.
    assert_eq!(item.enqueue_and_wait(&[3]), Ok(()));
    session.wait_idle();
    assert_eq!(item.pending_count(), 0);
    *me.lock().unwrap() = None;
    drop(Arc::into_inner(item).expect("the only owner"));
    drop(device);
    session.end();
}

/// [`concurrent_enqueuers_each_run_once`] under many scheduling seeds (see `common/schedules.rs`; `SCHEDULE_SEEDS=1000` is
/// the long run).
#[test]
fn concurrent_enqueuers_each_run_once_under_many_schedules() {
    schedules::under_seeds(
        "QueuedWorkItem: concurrent_enqueuers_each_run_once",
        20,
        concurrent_enqueuers_each_run_once,
    );
}
