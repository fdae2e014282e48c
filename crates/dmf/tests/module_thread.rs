//! Thread on the simulation: DMF control (pre/work/post, coalescing and latched work signals,
//! stop winning over work, stop waiting for work in progress), client control, start/stop
//! errors, close ending the thread, and the passive-level refusal.
#![cfg(not(windows))]

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use dmf::core::{ModuleAttributes, lifecycle};
use dmf::error::{ConfigError, ModuleError};
use dmf::modules::thread::{Thread, ThreadConfig, ThreadContext, ThreadControl};
use dmf::wdf::NtStatus;
use dmf::wdf::event::{Event, EventKind};
use wdk_sys::sim::Session;

type Log = Arc<Mutex<Vec<&'static str>>>;

fn dmf_thread(log: &Log, work: impl Fn(&ThreadContext) + Send + Sync + 'static) -> Thread {
    let (pre, post) = (Arc::clone(log), Arc::clone(log));
    Thread::create(
        ThreadConfig {
            control: ThreadControl::Dmf {
                pre: Some(Box::new(move |_| pre.lock().unwrap().push("pre"))),
                work: Box::new(work),
                post: Some(Box::new(move |_| post.lock().unwrap().push("post"))),
            },
        },
        ModuleAttributes::new(),
    )
    .expect("thread module is created")
}

#[test]
fn dmf_control_runs_pre_work_post() {
    let session = Session::begin();
    let log = Log::default();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let work_log = Arc::clone(&log);
    let thread = dmf_thread(&log, move |_| {
        work_log.lock().unwrap().push("work");
        tx.lock().unwrap().send(()).unwrap();
    });
    assert!(thread.is_stopped());
    thread.start().unwrap();
    assert_eq!(
        thread.start(),
        Err(NtStatus::INVALID_DEVICE_STATE),
        "already started"
    );
    thread.work_ready();
    rx.recv_timeout(Duration::from_secs(5)).expect("work ran");
    thread.work_ready();
    rx.recv_timeout(Duration::from_secs(5))
        .expect("work ran again");
    thread.stop();
    assert!(thread.is_stopped());
    assert_eq!(*log.lock().unwrap(), ["pre", "work", "work", "post"]);
    thread.stop(); // no-op when stopped
    drop(thread);
    session.end();
}

#[test]
fn work_signal_while_stopped_is_latched_for_the_next_start() {
    let session = Session::begin();
    let log = Log::default();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let work_log = Arc::clone(&log);
    let thread = dmf_thread(&log, move |_| {
        work_log.lock().unwrap().push("work");
        tx.lock().unwrap().send(()).unwrap();
    });
    assert!(!thread.is_work_ready());
    thread.work_ready();
    thread.work_ready(); // coalesces
    assert!(
        thread.is_work_ready(),
        "the signal is pending while stopped"
    );
    thread.start().unwrap();
    rx.recv_timeout(Duration::from_secs(5))
        .expect("latched work ran after start");
    assert!(!thread.is_work_ready(), "the thread took the signal");
    assert!(
        rx.recv_timeout(Duration::from_millis(30)).is_err(),
        "two signals before the wake ran work once"
    );
    thread.stop();
    assert_eq!(*log.lock().unwrap(), ["pre", "work", "post"]);
    drop(thread);
    session.end();
}

#[test]
fn stop_waits_for_work_in_progress_and_wins_over_pending_work() {
    let session = Session::begin();
    let log = Log::default();
    let gate = Arc::new(Event::new(EventKind::Notification, false));
    let inside = Arc::new(Event::new(EventKind::Notification, false));
    let (g, i, work_log) = (Arc::clone(&gate), Arc::clone(&inside), Arc::clone(&log));
    let thread = Arc::new(dmf_thread(&log, move |context| {
        work_log.lock().unwrap().push("work");
        let _ = i.set();
        g.wait();
        assert!(
            context.is_stop_pending(),
            "stop was requested while working"
        );
    }));
    thread.start().unwrap();
    thread.work_ready();
    assert!(inside.wait_timeout(Duration::from_secs(5)));
    thread.work_ready(); // pending work: the stop must win over it
    let stopper = {
        let thread = Arc::clone(&thread);
        std::thread::spawn(move || thread.stop())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !thread.is_stop_pending() {
        assert!(std::time::Instant::now() < deadline, "stop never began");
        std::thread::yield_now();
    }
    assert!(!stopper.is_finished(), "stop waits for the work callback");
    let _ = gate.set();
    stopper.join().unwrap();
    assert!(!thread.is_stop_pending());
    assert_eq!(
        *log.lock().unwrap(),
        ["pre", "work", "post"],
        "pending work was not processed after stop"
    );
    drop(thread);
    session.end();
}

#[test]
fn client_control_runs_once_per_start() {
    let session = Session::begin();
    let runs = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&runs);
    let thread = Thread::create(
        ThreadConfig {
            control: ThreadControl::Client(Box::new(move |context| {
                *counter.lock().unwrap() += 1;
                // The client's own loop, ending when asked.
                while !context.is_stop_pending() {
                    std::thread::yield_now();
                }
            })),
        },
        ModuleAttributes::new(),
    )
    .unwrap();
    thread.start().unwrap();
    thread.stop();
    thread.start().unwrap();
    thread.stop();
    assert_eq!(*runs.lock().unwrap(), 2);
    drop(thread);
    session.end();
}

#[test]
fn close_ends_the_thread_and_start_then_fails() {
    let session = Session::begin();
    let log = Log::default();
    let thread = dmf_thread(&log, |_| {});
    thread.start().unwrap();
    lifecycle::close(&*thread);
    assert_eq!(
        *log.lock().unwrap(),
        ["pre", "post"],
        "close stopped the loop"
    );
    assert_eq!(thread.start(), Err(NtStatus::INVALID_DEVICE_STATE));
    thread.work_ready(); // allowed while closed: nothing happens
    drop(thread);
    session.end();
}

#[test]
fn passive_level_option_is_refused() {
    let session = Session::begin();
    let result = Thread::create(
        ThreadConfig {
            control: ThreadControl::Client(Box::new(|_| {})),
        },
        ModuleAttributes::passive(),
    );
    let error = result.expect_err("refused");
    assert_eq!(
        error,
        ModuleError::Config(ConfigError::PassiveLevelNotSupported)
    );
    assert_eq!(error.status(), NtStatus::INVALID_DEVICE_REQUEST);
    session.end();
}

/// Issue 10, 4.5: `stop` from the module's own callback does not wait for itself; the loop
/// stops when the callback returns, and the module keeps working (a later start runs again).
#[test]
fn stop_from_its_own_callback_returns_promptly() {
    let session = Session::begin();
    let log: Log = Arc::default();
    let me: Arc<Mutex<Option<Arc<Thread>>>> = Arc::new(Mutex::new(None));
    let inner = Arc::clone(&me);
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let work_log = Arc::clone(&log);
    let thread = Arc::new(dmf_thread(&log, move |_| {
        work_log.lock().unwrap().push("work");
        let module = inner.lock().unwrap().clone().expect("set before start");
        module.stop();
        tx.lock().unwrap().send(()).unwrap();
    }));
    *me.lock().unwrap() = Some(Arc::clone(&thread));
    for round in 1..=2 {
        thread.start().unwrap();
        thread.work_ready();
        rx.recv_timeout(Duration::from_secs(5))
            .expect("stop from the callback returned");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !thread.is_stopped() {
            assert!(std::time::Instant::now() < deadline, "the loop stopped");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!thread.is_stop_pending());
        assert_eq!(
            log.lock().unwrap().iter().filter(|&&e| e == "post").count(),
            round,
            "post ran after the work that stopped the loop"
        );
    }
    // An outside stop on a stopped module returns at once; start/stop still work.
    thread.stop();
    thread.start().unwrap();
    thread.stop();
    assert!(thread.is_stopped());
    *me.lock().unwrap() = None;
    drop(Arc::into_inner(thread).expect("the only owner"));
    session.end();
}
