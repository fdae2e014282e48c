//! `dmf::wdf` locks, events and system threads on the simulation: mutual exclusion across
//! threads, wake-ups across threads, bounded timeouts, joins and delays.
#![cfg(not(windows))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dmf::wdf::NtStatus;
use dmf::wdf::event::{Event, EventKind, MAX_WAIT_EVENTS, wait_all, wait_any};
use dmf::wdf::spin_lock::SpinLock;
use dmf::wdf::thread::{SystemThread, current_thread_id, delay};
use dmf::wdf::wait_lock::WaitLock;
use wdk_sys::sim::{self, Session, verifier::rules};

const DISPATCH: u8 = wdk_sys::DISPATCH_LEVEL as u8;
const PASSIVE: u8 = wdk_sys::PASSIVE_LEVEL as u8;
/// Generous upper bound for anything that should happen "soon".
const SOON: Duration = Duration::from_secs(5);

fn irql() -> u8 {
    dmf::wdf::irql::current()
}

#[test]
fn spin_lock_excludes_system_threads_and_raises_to_dispatch() {
    let session = Session::begin();
    // (count, a value every holder rewrites non-atomically in two steps)
    let lock = Arc::new(SpinLock::create((0u64, 0u64)).expect("spin lock is created"));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let lock = lock.clone();
            SystemThread::spawn(move || {
                for _ in 0..500 {
                    let mut guard = lock.lock();
                    assert_eq!(irql(), DISPATCH);
                    let before = guard.0;
                    guard.1 = before;
                    std::thread::yield_now();
                    guard.0 = guard.1 + 1;
                    drop(guard);
                    assert_eq!(irql(), PASSIVE);
                }
            })
            .expect("thread starts")
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread joins");
    }
    assert_eq!(lock.lock().0, 2000, "no increment was lost");
    assert_eq!(irql(), PASSIVE);
    drop(lock);
    assert_eq!(sim::counters().live_objects, 0);
    session.end();
}

#[test]
fn spin_lock_inside_a_dpc_restores_dispatch() {
    let session = Session::begin();
    let mut lock = SpinLock::create(Vec::<u32>::new()).expect("spin lock is created");
    sim::at_irql(DISPATCH, || {
        lock.lock().push(7);
        assert_eq!(irql(), DISPATCH);
    });
    assert_eq!(lock.get_mut().as_slice(), [7]);
    drop(lock);
    session.end();
}

#[test]
fn recursive_spin_lock_panics_instead_of_aliasing() {
    let mut session = Session::begin();
    session.expect_violation(rules::SPIN_LOCK_MISUSE);
    let lock = SpinLock::create(0u32).expect("spin lock is created");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _first = lock.lock();
        let _second = lock.lock();
    }));
    assert!(
        result.is_err(),
        "a second guard on the same thread must not exist"
    );
    assert_eq!(
        irql(),
        PASSIVE,
        "the first guard was released while unwinding"
    );
    *lock.lock() += 1;
    assert_eq!(*lock.lock(), 1);
    let reports = sim::verifier::take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].rule, rules::SPIN_LOCK_MISUSE);
    drop(lock);
    session.end();
}

#[test]
fn wait_lock_excludes_threads_and_times_out_while_held() {
    let session = Session::begin();
    let lock = Arc::new(WaitLock::create(0u64).expect("wait lock is created"));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let lock = lock.clone();
            SystemThread::spawn(move || {
                for _ in 0..300 {
                    let mut guard = lock.lock();
                    let value = *guard;
                    std::thread::yield_now();
                    *guard = value + 1;
                }
            })
            .expect("thread starts")
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread joins");
    }
    assert_eq!(*lock.lock(), 900);

    let held = Event::new(EventKind::Notification, false);
    let release = Event::new(EventKind::Notification, false);
    let shared = Arc::new((held, release));
    let holder = {
        let lock = lock.clone();
        let shared = shared.clone();
        SystemThread::spawn(move || {
            let _guard = lock.lock();
            shared.0.set();
            shared.1.wait();
        })
        .expect("thread starts")
    };
    assert!(shared.0.wait_timeout(SOON), "the holder took the lock");
    let started = Instant::now();
    assert!(lock.try_lock_for(Duration::from_millis(30)).is_none());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(30) && elapsed < SOON,
        "{elapsed:?}"
    );
    assert!(lock.try_lock().is_none());
    assert!(
        sim::at_irql(DISPATCH, || lock.try_lock().is_none()),
        "a try is allowed at DISPATCH"
    );
    shared.1.set();
    holder.join().expect("holder joins");
    let guard = lock.try_lock_for(SOON).expect("free again");
    assert_eq!(*guard, 900);
    drop(guard);
    drop(lock);
    assert_eq!(sim::counters().live_objects, 0);
    session.end();
}

#[test]
fn wait_lock_blocking_acquire_at_dispatch_is_refused() {
    let mut session = Session::begin();
    session.expect_violation(rules::WAIT_AT_DISPATCH);
    let lock = WaitLock::create(()).expect("wait lock is created");
    let acquired = sim::at_irql(DISPATCH, || {
        lock.try_lock_for(Duration::from_millis(1)).is_some()
    });
    assert!(!acquired);
    assert_eq!(sim::verifier::take_reports().len(), 1);
    drop(lock);
    session.end();
}

#[test]
fn notification_event_wakes_every_waiter() {
    let session = Session::begin();
    let event = Arc::new(Event::new(EventKind::Notification, false));
    let woken = Arc::new(AtomicU32::new(0));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let event = event.clone();
            let woken = woken.clone();
            SystemThread::spawn(move || {
                if event.wait_timeout(SOON) {
                    woken.fetch_add(1, Ordering::SeqCst);
                }
            })
            .expect("thread starts")
        })
        .collect();
    assert!(!event.set(), "it was not signaled before");
    for waiter in waiters {
        waiter.join().expect("waiter joins");
    }
    assert_eq!(woken.load(Ordering::SeqCst), 3);
    assert!(event.is_set(), "a notification event stays signaled");
    assert!(event.reset());
    assert!(!event.is_set());
    session.end();
}

#[test]
fn synchronization_event_releases_exactly_one_waiter_per_set() {
    let session = Session::begin();
    let event = Arc::new(Event::new(EventKind::Synchronization, false));
    let woken = Arc::new(AtomicU32::new(0));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let event = event.clone();
            let woken = woken.clone();
            SystemThread::spawn(move || {
                if event.wait_timeout(Duration::from_millis(300)) {
                    woken.fetch_add(1, Ordering::SeqCst);
                }
            })
            .expect("thread starts")
        })
        .collect();
    event.set();
    for waiter in waiters {
        waiter.join().expect("waiter joins");
    }
    assert_eq!(
        woken.load(Ordering::SeqCst),
        1,
        "one set releases one waiter"
    );
    assert!(!event.is_set(), "the released waiter reset it");
    session.end();
}

#[test]
fn wait_timeout_expires_in_bounded_time() {
    let session = Session::begin();
    let event = Event::new(EventKind::Notification, false);
    let started = Instant::now();
    assert!(!event.wait_timeout(Duration::from_millis(25)));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(25) && elapsed < SOON,
        "{elapsed:?}"
    );
    assert!(!event.wait_timeout(Duration::ZERO), "a poll");
    event.set();
    event.clear();
    assert!(!event.is_set());
    let signaled = Event::new(EventKind::Synchronization, true);
    assert!(signaled.wait_timeout(Duration::ZERO));
    assert!(
        !signaled.wait_timeout(Duration::ZERO),
        "auto-reset by the first wait"
    );
    session.end();
}

#[test]
fn wait_any_and_wait_all() {
    let session = Session::begin();
    let a = Event::new(EventKind::Notification, false);
    let b = Event::new(EventKind::Synchronization, false);
    let c = Event::new(EventKind::Notification, false);
    assert_eq!(
        wait_any(&[&a, &b, &c], Some(Duration::from_millis(5))),
        Ok(None)
    );
    c.set();
    assert_eq!(wait_any(&[&a, &b, &c], None), Ok(Some(2)));
    assert_eq!(wait_all(&[&a, &b, &c], Some(Duration::ZERO)), Ok(false));
    let setter = {
        let shared = Arc::new((a, b));
        let remote = shared.clone();
        let thread = SystemThread::spawn(move || {
            remote.0.set();
            remote.1.set();
        })
        .expect("thread starts");
        (shared, thread)
    };
    let (shared, thread) = setter;
    assert_eq!(wait_all(&[&shared.0, &shared.1, &c], Some(SOON)), Ok(true));
    thread.join().expect("setter joins");
    assert!(
        !shared.1.is_set(),
        "wait_all consumed the synchronization event"
    );
    let d = Event::new(EventKind::Notification, true);
    let too_many = [&shared.0, &shared.1, &c, &d];
    assert!(too_many.len() > MAX_WAIT_EVENTS);
    assert_eq!(wait_any(&too_many, None), Err(NtStatus::INVALID_PARAMETER));
    assert_eq!(wait_all(&[], None), Err(NtStatus::INVALID_PARAMETER));
    session.end();
}

#[test]
fn system_thread_runs_at_passive_and_join_waits_for_it() {
    let session = Session::begin();
    let seen = Arc::new(AtomicU32::new(u32::MAX));
    let gate = Arc::new(Event::new(EventKind::Notification, false));
    let thread = {
        let seen = seen.clone();
        let gate = gate.clone();
        SystemThread::spawn(move || {
            gate.wait();
            seen.store(u32::from(irql()), Ordering::SeqCst);
        })
        .expect("thread starts")
    };
    assert_eq!(
        seen.load(Ordering::SeqCst),
        u32::MAX,
        "the thread waits for the gate"
    );
    gate.set();
    thread.join().expect("join succeeds");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        u32::from(PASSIVE),
        "ran, at PASSIVE_LEVEL, before join returned"
    );
    // Dropping an unjoined thread joins it: no handle or running thread is left behind.
    let done = Arc::new(AtomicU32::new(0));
    {
        let done = done.clone();
        let _thread = SystemThread::spawn(move || {
            delay(Duration::from_millis(10)).expect("delay at PASSIVE");
            done.store(1, Ordering::SeqCst);
        })
        .expect("thread starts");
    }
    assert_eq!(done.load(Ordering::SeqCst), 1);
    session.end();
}

#[test]
fn thread_ids_are_stable_per_thread_and_distinct_across_threads() {
    let session = Session::begin();
    let mine = current_thread_id();
    assert_ne!(mine, 0);
    assert_eq!(current_thread_id(), mine, "stable on one thread");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let system = {
        let seen = seen.clone();
        SystemThread::spawn(move || {
            let id = current_thread_id();
            seen.lock().unwrap().extend([id, current_thread_id()]);
            // At DISPATCH_LEVEL too.
            seen.lock()
                .unwrap()
                .push(sim::at_irql(DISPATCH, current_thread_id));
        })
        .expect("thread starts")
    };
    system.join().expect("join succeeds");
    let host = std::thread::spawn(current_thread_id).join().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], seen[1], "stable on the system thread");
    assert_eq!(seen[0], seen[2], "the same at DISPATCH_LEVEL");
    assert_ne!(seen[0], mine, "the system thread has its own id");
    assert_ne!(host, mine, "another host thread has its own id");
    assert_ne!(host, seen[0]);
    session.end();
}

#[test]
fn failed_thread_creation_returns_the_status() {
    let session = Session::begin();
    sim::fail_nth(
        sim::FaultPoint::Allocation,
        1,
        wdk_sys::STATUS_INSUFFICIENT_RESOURCES,
    );
    let ran = Arc::new(AtomicU32::new(0));
    let result = {
        let ran = ran.clone();
        SystemThread::spawn(move || {
            ran.store(1, Ordering::SeqCst);
        })
    };
    assert_eq!(result.err(), Some(NtStatus::INSUFFICIENT_RESOURCES));
    assert_eq!(
        Arc::strong_count(&ran),
        1,
        "the closure was dropped, not leaked"
    );
    session.end();
}

#[test]
fn delay_sleeps_and_is_refused_at_dispatch() {
    let mut session = Session::begin();
    session.expect_violation(rules::WAIT_AT_DISPATCH);
    let started = Instant::now();
    delay(Duration::from_millis(20)).expect("delay at PASSIVE");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(20) && elapsed < SOON,
        "{elapsed:?}"
    );
    let refused = sim::at_irql(DISPATCH, || delay(Duration::from_millis(1)));
    assert_eq!(refused, Err(NtStatus::INVALID_DEVICE_REQUEST));
    assert_eq!(sim::verifier::take_reports().len(), 1);
    session.end();
}
