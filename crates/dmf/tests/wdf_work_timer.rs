//! `dmf::wdf` work items, timers, collections and tracing on the simulation.
#![cfg(not(windows))]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dmf::dmf_trace;
use dmf::wdf::collection::Collection;
use dmf::wdf::timer::{CallbackLevel, Timer, TimerConfig};
use dmf::wdf::trace::{self, LINE_CAPACITY, TraceLevel};
use dmf::wdf::work_item::WorkItem;
use dmf::wdf::{Memory, PoolType};
use wdk_sys::sim::{self, Session};
use wdk_sys::{DISPATCH_LEVEL, WDFMEMORY, WDFOBJECT};

const WAIT: Duration = Duration::from_secs(5);

fn irql() -> u32 {
    u32::from(dmf::wdf::irql::current())
}

/// A parent object standing in for the device that owns work items and timers.
fn parent() -> Collection<WDFOBJECT> {
    Collection::new(None).expect("the parent is created")
}

/// A gate handlers can block on until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        while !*open {
            open = self
                .changed
                .wait(open)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.changed.notify_all();
    }
}

#[test]
fn work_item_runs_at_passive_on_another_thread() {
    let session = Session::begin();
    let owner = parent();
    let (sender, receiver) = mpsc::channel();
    let sender = Mutex::new(sender);
    let item = WorkItem::new(owner.handle().cast(), move || {
        let _ = sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send((irql(), std::thread::current().id()));
    })
    .expect("the work item is created");
    assert_eq!(item.parent(), owner.handle().cast());
    sim::at_irql(DISPATCH_LEVEL as u8, || item.enqueue());
    let (level, thread) = receiver.recv_timeout(WAIT).expect("the handler ran");
    assert_eq!(level, 0, "work items run at PASSIVE_LEVEL");
    assert_ne!(thread, std::thread::current().id(), "on a framework thread");
    drop(item);
    drop(owner);
    session.end();
}

#[test]
fn flush_waits_for_the_running_handler() {
    let session = Session::begin();
    let owner = parent();
    let done = Arc::new(AtomicU32::new(0));
    let (started_tx, started) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let seen = Arc::clone(&done);
    let item = WorkItem::new(owner.handle().cast(), move || {
        let _ = started_tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(());
        std::thread::sleep(Duration::from_millis(50));
        seen.store(1, Ordering::SeqCst);
    })
    .expect("the work item is created");
    item.enqueue();
    started.recv_timeout(WAIT).expect("the handler started");
    assert_eq!(done.load(Ordering::SeqCst), 0);
    item.flush();
    assert_eq!(
        done.load(Ordering::SeqCst),
        1,
        "flush returned only after the handler did"
    );
    drop(item);
    // The framework drops its own reference just after the handler returns; the handler is
    // freed (destroy callback) once that has happened.
    session.wait_idle();
    assert_eq!(
        Arc::strong_count(&done),
        1,
        "deleting the work item freed its handler"
    );
    drop(owner);
    session.end();
}

#[test]
fn enqueue_while_queued_runs_once() {
    let session = Session::begin();
    let owner = parent();
    let runs = Arc::new(AtomicU32::new(0));
    let gate = Arc::new(Gate::default());
    let (counted, handler_gate) = (Arc::clone(&runs), Arc::clone(&gate));
    let item = WorkItem::new(owner.handle().cast(), move || {
        counted.fetch_add(1, Ordering::SeqCst);
        handler_gate.wait();
    })
    .expect("the work item is created");
    // Every run blocks until the gate opens, so at most one run per framework thread can be
    // in progress and only one more can be queued: 1000 enqueues cannot become 1000 runs.
    for _ in 0..1000 {
        item.enqueue();
    }
    gate.open();
    item.flush();
    let total = runs.load(Ordering::SeqCst);
    assert!((1..=16).contains(&total), "{total} runs for 1000 enqueues");
    // Once idle, one enqueue and a flush run it exactly once more.
    item.enqueue();
    item.flush();
    assert_eq!(runs.load(Ordering::SeqCst), total + 1);
    drop(item);
    drop(owner);
    session.end();
}

#[test]
fn periodic_timer_fires_repeatedly_until_stopped() {
    let session = Session::begin();
    let owner = parent();
    let ticks = Arc::new((Mutex::new(0u32), Condvar::new()));
    let seen = Arc::clone(&ticks);
    let levels = Arc::new(AtomicU32::new(u32::MAX));
    let level_seen = Arc::clone(&levels);
    let config = TimerConfig {
        period: Some(Duration::from_millis(5)),
        level: CallbackLevel::Dispatch,
    };
    let timer = Timer::new(owner.handle().cast(), config, move || {
        level_seen.store(irql(), Ordering::SeqCst);
        *seen.0.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        seen.1.notify_all();
    })
    .expect("the timer is created");
    assert!(
        !timer.start(Duration::from_millis(1)),
        "it was not queued before"
    );
    {
        let (count, changed) = &*ticks;
        let guard = count.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, timeout) = changed
            .wait_timeout_while(guard, WAIT, |count| *count < 3)
            .unwrap_or_else(PoisonError::into_inner);
        assert!(!timeout.timed_out(), "fired {} times", *guard);
    }
    assert_eq!(
        levels.load(Ordering::SeqCst),
        DISPATCH_LEVEL,
        "a DPC timer runs at DISPATCH_LEVEL"
    );
    assert!(timer.stop(true), "a periodic timer stays queued");
    let after_stop = *ticks.0.lock().unwrap_or_else(PoisonError::into_inner);
    std::thread::sleep(Duration::from_millis(40));
    assert_eq!(
        *ticks.0.lock().unwrap_or_else(PoisonError::into_inner),
        after_stop,
        "no call after stop(wait)"
    );
    assert!(!timer.stop(true), "no longer queued");
    drop(timer);
    drop(owner);
    session.end();
}

#[test]
fn one_shot_timer_fires_once_after_its_due_time() {
    let session = Session::begin();
    let owner = parent();
    let (sender, receiver) = mpsc::channel();
    let sender = Mutex::new(sender);
    let config = TimerConfig {
        period: None,
        level: CallbackLevel::Passive,
    };
    let timer = Timer::new(owner.handle().cast(), config, move || {
        let _ = sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send((Instant::now(), irql()));
    })
    .expect("the timer is created");
    let started = Instant::now();
    assert!(!timer.start(Duration::from_millis(60)));
    let (fired, level) = receiver.recv_timeout(WAIT).expect("the timer fired");
    assert!(
        fired.duration_since(started) >= Duration::from_millis(60),
        "fired early: {:?}",
        fired - started
    );
    assert_eq!(level, 0, "a passive timer runs at PASSIVE_LEVEL");
    assert!(
        receiver.recv_timeout(Duration::from_millis(100)).is_err(),
        "a one-shot timer fires once"
    );
    assert!(!timer.stop(false), "a fired one-shot timer is not queued");
    drop(timer);
    drop(owner);
    session.end();
}

#[test]
fn stop_and_restart_report_whether_the_timer_was_queued() {
    let session = Session::begin();
    let owner = parent();
    let fired = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&fired);
    let timer = Timer::new(owner.handle().cast(), TimerConfig::default(), move || {
        counter.fetch_add(1, Ordering::SeqCst);
    })
    .expect("the timer is created");
    assert!(!timer.start(Duration::from_mins(1)));
    assert!(
        timer.start(Duration::from_mins(1)),
        "restarting a queued timer"
    );
    assert!(
        sim::at_irql(DISPATCH_LEVEL as u8, || timer.stop(false)),
        "stopped while queued"
    );
    assert!(!timer.stop(false), "already stopped");
    // An absolute due time in the past fires at once.
    assert!(!timer.start_absolute(1));
    session.wait_idle();
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    // Dropping a queued timer stops it: the handler never runs and is freed.
    assert!(!timer.start(Duration::from_mins(1)));
    drop(timer);
    assert_eq!(
        Arc::strong_count(&fired),
        1,
        "the handler was freed with the timer"
    );
    assert_eq!(fired.load(Ordering::SeqCst), 1);
    drop(owner);
    session.end();
}

#[test]
fn collection_references_keep_objects_alive_until_removed() {
    let session = Session::begin();
    let mut list: Collection<WDFMEMORY> = Collection::new(None).expect("the collection is created");
    let first = Memory::create(8, PoolType::NonPaged, None).expect("memory");
    let second = Memory::create(8, PoolType::NonPaged, None).expect("memory");
    let (a, b) = (first.handle(), second.handle());
    list.add(a).expect("added");
    list.add(b).expect("added");
    assert_eq!(list.len(), 2);
    assert_eq!(
        (list.first(), list.last(), list.get(1), list.get(2)),
        (Some(a), Some(b), Some(b), None)
    );
    assert_eq!(list.iter().collect::<Vec<_>>(), vec![a, b]);
    let live = sim::counters().live_objects;
    drop(first);
    assert_eq!(
        sim::counters().live_objects,
        live,
        "the collection's reference keeps the deleted memory"
    );
    assert!(list.remove(a));
    assert_eq!(
        sim::counters().live_objects,
        live - 1,
        "removing dropped the last reference"
    );
    assert!(!list.remove(a), "no longer there");
    assert_eq!(list.remove_at(5), None);
    drop(second);
    assert_eq!(list.iter().collect::<Vec<_>>(), vec![b]);
    drop(list);
    assert_eq!(
        sim::counters().live_objects,
        0,
        "deleting the collection dropped its references"
    );
    session.end();
}

#[test]
fn collection_add_fails_with_an_injected_allocation_failure() {
    let session = Session::begin();
    let mut list: Collection<WDFMEMORY> = Collection::new(None).expect("the collection is created");
    let memory = Memory::create(8, PoolType::NonPaged, None).expect("memory");
    sim::fail_nth(
        sim::FaultPoint::Allocation,
        1,
        wdk_sys::STATUS_INSUFFICIENT_RESOURCES,
    );
    assert_eq!(
        list.add(memory.handle()),
        Err(dmf::wdf::NtStatus::INSUFFICIENT_RESOURCES)
    );
    assert!(list.is_empty());
    drop(memory);
    assert_eq!(list.remove_at(0), None);
    drop(list);
    session.end();
}

#[test]
fn trace_lines_are_filtered_by_level_and_truncated_safely() {
    let session = Session::begin();
    trace::set_level(TraceLevel::Warning);
    assert_eq!(trace::level(), TraceLevel::Warning);
    let _ = sim::take_debug_output();
    dmf_trace!(TraceLevel::Info, "Pool", "not printed {}", 1);
    dmf_trace!(TraceLevel::Verbose, "Pool", "not printed either");
    assert!(sim::take_debug_output().is_empty());
    dmf_trace!(TraceLevel::Error, "Pool", "{} buffers left, 100% used", 3);
    dmf_trace!(TraceLevel::Warning, "Pool", "nul\0inside");
    assert_eq!(
        sim::take_debug_output(),
        vec![
            "[Error] Pool: 3 buffers left, 100% used\n".to_string(),
            "[Warning] Pool: nul inside\n".to_string()
        ]
    );
    trace::set_level(TraceLevel::Verbose);
    let long = "é".repeat(400);
    sim::at_irql(DISPATCH_LEVEL as u8, || {
        dmf_trace!(TraceLevel::Verbose, "Long", "{long}");
    });
    let output = sim::take_debug_output();
    assert_eq!(output.len(), 1);
    let line = &output[0];
    assert!(line.len() < LINE_CAPACITY, "{} bytes", line.len());
    assert!(line.starts_with("[Verbose] Long: éé"));
    assert!(
        line.ends_with("é...\n"),
        "cut on a character boundary: {line:?}"
    );
    assert!(!line.contains('\u{FFFD}'));
    trace::set_level(TraceLevel::Warning);
    session.end();
}
