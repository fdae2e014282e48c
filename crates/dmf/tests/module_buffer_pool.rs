//! `BufferPool` on the simulation: source/sink, look-aside, timers, enumerate, ownership errors,
//! close, concurrency and adversarial configurations.
#![cfg(not(windows))]

#[path = "common/schedules.rs"]
mod schedules;

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use dmf::core::ModuleAttributes;
use dmf::error::{ConfigError, ModuleError};
use dmf::modules::buffer_pool::{
    BufferPool, BufferPoolConfig, EnumerationDisposition as D, PutErrorKind, SourceSettings,
};
use dmf::wdf::{Memory, NtStatus, PoolType};
use wdk_sys::sim::{self, FaultPoint, Session};

fn device() -> Memory {
    Memory::create(1, PoolType::NonPaged, None).expect("parent object")
}

fn settings(count: usize, size: usize, context: usize) -> SourceSettings {
    SourceSettings {
        buffer_count: count,
        buffer_size: size,
        buffer_context_size: context,
        ..SourceSettings::default()
    }
}

fn source(device: &Memory, settings: SourceSettings) -> BufferPool {
    BufferPool::create(
        device.handle().cast(),
        BufferPoolConfig::source(settings),
        ModuleAttributes::new(),
    )
    .expect("pool is created")
}

#[test]
fn source_get_put_is_fifo_and_zeroes_returned_buffers() {
    let session = Session::begin();
    let device = device();
    let pool = source(&device, settings(3, 8, 4));
    assert_eq!(pool.count(), 3);
    let mut a = pool.get().unwrap();
    assert_eq!((a.len(), a.context().len()), (8, 4));
    a.data_mut()[0] = 0xAA;
    a.context_mut()[0] = 0xBB;
    let mut b = pool.get().unwrap();
    b.data_mut()[0] = 1;
    let c = pool.get().unwrap();
    assert_eq!(pool.count(), 0);
    assert_eq!(
        pool.get().err(),
        Some(NtStatus::UNSUCCESSFUL),
        "empty source without look-aside"
    );
    assert!(a.belongs_to(&pool));
    pool.put(a).unwrap();
    pool.put(b).unwrap();
    let first = pool.get().unwrap();
    assert!(
        first.data().iter().all(|&x| x == 0) && first.context().iter().all(|&x| x == 0),
        "zeroed on put"
    );
    // put_at_head: the next get returns it.
    let mut marker = c;
    marker.data_mut()[0] = 9; // zeroed by the put, so identify it by context length instead
    pool.put_at_head(marker).unwrap();
    assert_eq!(pool.count(), 2);
    drop(first); // dropping returns it to the tail
    assert_eq!(pool.count(), 3);
    assert_eq!(pool.buffers_created(), 3);
    drop(pool);
    drop(device);
    session.end();
}

#[test]
fn put_at_head_is_lifo() {
    let session = Session::begin();
    let device = device();
    let pool = source(&device, settings(2, 4, 0));
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    assert!(a.context().is_empty(), "no context configured");
    let sink = BufferPool::create(
        device.handle().cast(),
        BufferPoolConfig::sink(4),
        ModuleAttributes::new(),
    )
    .unwrap();
    let (mut a, mut b) = (a, b);
    a.data_mut()[0] = 1;
    b.data_mut()[0] = 2;
    sink.put(a).unwrap();
    sink.put_at_head(b).unwrap();
    assert_eq!(sink.get().unwrap().data()[0], 2);
    assert_eq!(sink.get().unwrap().data()[0], 1, "a sink does not zero");
    assert_eq!(pool.count(), 2, "dropped buffers went back to their source");
    drop((sink, pool, device));
    session.end();
}

#[test]
fn look_aside_grows_on_demand_and_frees_extras() {
    let session = Session::begin();
    let device = device();
    let mut s = settings(1, 16, 0);
    s.enable_look_aside = true;
    let pool = source(&device, s);
    let held: Vec<_> = (0..4)
        .map(|_| pool.get().expect("look-aside creates buffers"))
        .collect();
    assert_eq!(pool.buffers_created(), 4);
    drop(held);
    assert_eq!(pool.count(), 1, "extras are freed as they come back");
    assert_eq!(pool.buffers_created(), 1);
    // Look-aside only (no preallocated buffers) is valid.
    let mut s = settings(0, 16, 0);
    s.enable_look_aside = true;
    let lazy = source(&device, s);
    assert_eq!(lazy.count(), 0);
    drop(lazy.get().unwrap());
    assert_eq!(lazy.count(), 0);
    drop((lazy, pool, device));
    session.end();
}

#[test]
fn foreign_buffer_is_refused_and_returned_intact() {
    let session = Session::begin();
    let device = device();
    let first = source(&device, settings(1, 4, 0));
    let second = source(&device, settings(1, 4, 0));
    let mut buffer = first.get().unwrap();
    buffer.data_mut().copy_from_slice(&[1, 2, 3, 4]);
    let error = second.put(buffer).expect_err("not its pool");
    assert_eq!(error.kind, PutErrorKind::ForeignBuffer);
    assert_eq!(error.status(), NtStatus::INVALID_PARAMETER);
    let buffer = error.into_buffer();
    assert_eq!(buffer.data(), &[1, 2, 3, 4], "nothing lost");
    assert_eq!(second.count(), 1);
    let error = second.put_at_head(buffer).expect_err("not its pool either");
    first.put(error.into_buffer()).unwrap();
    assert_eq!(first.count(), 1);
    drop((first, second, device));
    session.end();
}

#[test]
fn invalid_configurations_are_typed_errors() {
    let session = Session::begin();
    let device = device();
    let create = |s: SourceSettings, attributes: ModuleAttributes| {
        BufferPool::create(
            device.handle().cast(),
            BufferPoolConfig::source(s),
            attributes,
        )
        .err()
    };
    assert_eq!(
        create(settings(1, 0, 0), ModuleAttributes::new()),
        Some(ModuleError::Config(ConfigError::ZeroBufferSize))
    );
    assert_eq!(
        create(settings(0, 8, 0), ModuleAttributes::new()),
        Some(ModuleError::Config(ConfigError::NoBuffers))
    );
    let mut s = settings(0, 8, 0);
    s.enable_look_aside = true;
    s.create_with_timer = true;
    assert_eq!(
        create(s, ModuleAttributes::new()),
        Some(ModuleError::Config(
            ConfigError::TimerNeedsPreallocatedBuffers
        ))
    );
    let mut paged = settings(1, 8, 0);
    paged.pool_type = PoolType::Paged;
    assert_eq!(
        create(paged, ModuleAttributes::new()),
        Some(ModuleError::Config(
            ConfigError::PagedPoolRequiresPassiveLevel
        ))
    );
    assert_eq!(
        ConfigError::PagedPoolRequiresPassiveLevel.status(),
        NtStatus::INVALID_PARAMETER
    );
    assert_eq!(
        sim::counters().live_objects,
        1,
        "nothing was created for rejected configurations"
    );
    let pool = BufferPool::create(
        device.handle().cast(),
        BufferPoolConfig::source(paged),
        ModuleAttributes::passive(),
    )
    .expect("paged pool with the passive-level option");
    drop(pool.get().unwrap());
    drop((pool, device));
    session.end();
}

#[test]
fn allocation_failure_at_open_fails_create_without_leaks() {
    let session = Session::begin();
    let device = device();
    sim::fail_nth(
        FaultPoint::Allocation,
        3,
        wdk_sys::STATUS_INSUFFICIENT_RESOURCES,
    );
    let result = BufferPool::create(
        device.handle().cast(),
        BufferPoolConfig::source(settings(4, 8, 0)),
        ModuleAttributes::new(),
    );
    assert_eq!(
        result.err(),
        Some(ModuleError::Status(NtStatus::INSUFFICIENT_RESOURCES))
    );
    assert_eq!(
        sim::counters().live_objects,
        1,
        "the buffers created before the failure were freed"
    );
    drop(device);
    session.end();
}

#[test]
fn sink_timer_expires_buffer_to_callback_at_passive_level() {
    let session = Session::begin();
    let device = device();
    let mut s = settings(2, 4, 0);
    s.create_with_timer = true;
    let pool = source(&device, s);
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let mut config = BufferPoolConfig::sink(2);
    config.on_timer_expired = Some(Box::new(move |buffer, context| {
        let irql = current_irql();
        tx.lock()
            .unwrap()
            .send((buffer.data()[0], context, irql))
            .unwrap();
    }));
    let sink = BufferPool::create(device.handle().cast(), config, ModuleAttributes::new()).unwrap();
    let mut a = pool.get().unwrap();
    a.data_mut()[0] = 7;
    sink.put_in_sink_with_timer(a, 10, 42).unwrap();
    assert_eq!(sink.count(), 1);
    let (value, context, irql) = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the timer expires");
    assert_eq!(
        (value, context, irql),
        (7, 42, 0),
        "expired at PASSIVE_LEVEL with its context"
    );
    assert_eq!(sink.count(), 0);
    session.wait_idle();
    assert_eq!(
        pool.count(),
        2,
        "the callback dropped the buffer: back to its source"
    );

    // Taken out before expiry: the timer is cancelled and the callback never runs.
    let b = pool.get().unwrap();
    sink.put_in_sink_with_timer(b, 60_000, 1).unwrap();
    let b = sink.get().expect("not expired yet");
    drop(b);
    assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());

    // Timers need a sink and a timer-capable buffer.
    let c = pool.get().unwrap();
    let error = pool
        .put_in_sink_with_timer(c, 1, 0)
        .expect_err("source pool");
    assert_eq!(error.kind, PutErrorKind::NotASink);
    drop(error);
    let plain = source(&device, settings(1, 4, 0));
    let error = sink
        .put_in_sink_with_timer(plain.get().unwrap(), 1, 0)
        .expect_err("no timer");
    assert_eq!(error.kind, PutErrorKind::NoTimer);
    drop(error);
    drop((sink, plain, pool, device));
    session.end();
}

fn current_irql() -> u8 {
    dmf::wdf::irql::current()
}

#[test]
fn enumerate_applies_each_disposition() {
    let session = Session::begin();
    let device = device();
    let mut s = settings(4, 1, 0);
    s.create_with_timer = true;
    let pool = source(&device, s);
    let expired = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&expired);
    let mut config = BufferPoolConfig::sink(4);
    config.on_timer_expired = Some(Box::new(move |buffer, _| {
        seen.lock().unwrap().push(buffer.data()[0]);
    }));
    let sink = BufferPool::create(device.handle().cast(), config, ModuleAttributes::new()).unwrap();
    for value in 1..=4u8 {
        let mut buffer = pool.get().unwrap();
        buffer.data_mut()[0] = value;
        sink.put_in_sink_with_timer(buffer, 150, 0).unwrap();
    }
    // Visit all with Continue; then Stop after the first.
    let mut visited = Vec::new();
    assert!(
        sink.enumerate(|data, _| {
            visited.push(data[0]);
            D::ContinueEnumeration
        })
        .is_none()
    );
    assert_eq!(visited, [1, 2, 3, 4]);
    visited.clear();
    sink.enumerate(|data, _| {
        visited.push(data[0]);
        D::StopEnumeration
    });
    assert_eq!(visited, [1]);
    // Stop the timers of 1 and 2 (continue, then stop at 2).
    sink.enumerate(|data, _| {
        if data[0] == 1 {
            D::StopTimerAndContinueEnumeration
        } else {
            D::StopTimerAndStopEnumeration
        }
    });
    // Remove 3.
    let removed = sink.enumerate(|data, _| {
        if data[0] == 3 {
            D::RemoveAndStopEnumeration
        } else {
            D::ContinueEnumeration
        }
    });
    assert_eq!(removed.expect("removed").data()[0], 3);
    // Reset 4's timer (it still expires, later).
    sink.enumerate(|data, _| {
        if data[0] == 4 {
            D::ResetTimerAndStopEnumeration
        } else {
            D::ContinueEnumeration
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while expired.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "4 never expired");
        std::thread::sleep(Duration::from_millis(5));
    }
    session.wait_idle();
    assert_eq!(
        *expired.lock().unwrap(),
        [4],
        "only the buffer whose timer kept running expired"
    );
    assert_eq!(sink.count(), 2, "1 and 2 stay, without timers");
    drop((sink, pool, device));
    session.end();
}

#[test]
fn closing_pools_frees_or_returns_buffers_without_leaks() {
    let session = Session::begin();
    let device = device();
    let pool = source(&device, settings(3, 8, 8));
    let sink = BufferPool::create(
        device.handle().cast(),
        BufferPoolConfig::sink(0),
        ModuleAttributes::new(),
    )
    .unwrap();
    sink.put(pool.get().unwrap()).unwrap();
    let outstanding = pool.get().unwrap();
    drop(sink);
    assert_eq!(
        pool.count(),
        2,
        "a closing sink returns its buffers to their source"
    );
    drop(pool);
    // The pool is gone; its buffer is still valid and is freed when dropped.
    assert_eq!(outstanding.len(), 8);
    drop(outstanding);
    drop(device);
    assert_eq!(sim::counters().live_objects, 0);
    session.end();
}

#[test]
fn concurrent_get_and_put_keep_every_buffer() {
    let session = Session::begin();
    let device = device();
    let pool = Arc::new(source(&device, settings(8, 16, 4)));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || {
                for i in 0..2000u32 {
                    let Ok(mut buffer) = pool.get() else { continue };
                    assert!(
                        buffer.data().iter().all(|&b| b == 0),
                        "a buffer is never shared"
                    );
                    buffer.data_mut().fill((t + i) as u8 | 1);
                    if i % 2 == 0 {
                        pool.put(buffer).unwrap();
                    } else {
                        drop(buffer);
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(pool.count(), 8);
    assert_eq!(pool.buffers_created(), 8);
    drop(pool);
    drop(device);
    session.end();
}

#[test]
fn methods_work_at_dispatch_level() {
    let session = Session::begin();
    let device = device();
    let pool = source(&device, settings(2, 8, 0));
    let count = sim::at_irql(wdk_sys::DISPATCH_LEVEL as u8, || {
        let buffer = pool.get().unwrap();
        pool.put_at_head(buffer).unwrap();
        drop(pool.get().unwrap());
        pool.count()
    });
    assert_eq!(count, 2);
    drop((pool, device));
    session.end();
}

/// Issue 10, 4.1: a buffer whose expiry timer fired while the enumeration was walking the list
/// (its handler waits for the pool lock) is not shown to the callback: the expiry owns it, and
/// the callback and the expiry never both have it.
#[test]
fn enumerate_skips_a_buffer_whose_timer_fired() {
    let session = Session::begin_with_seed(0);
    let device = device();
    let mut s = settings(3, 1, 0);
    s.create_with_timer = true;
    let pool = source(&device, s);
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let mut config = BufferPoolConfig::sink(2);
    config.on_timer_expired = Some(Box::new(move |buffer, context| {
        tx.lock()
            .unwrap()
            .send((buffer.data()[0], context))
            .unwrap();
    }));
    let sink = BufferPool::create(device.handle().cast(), config, ModuleAttributes::new()).unwrap();
    let mut first = pool.get().unwrap();
    first.data_mut()[0] = 1;
    sink.put(first).unwrap();
    let mut second = pool.get().unwrap();
    second.data_mut()[0] = 2;
    sink.put_in_sink_with_timer(second, 1, 22).unwrap();
    let mut shown = Vec::new();
    let removed = sink.enumerate(|data, _| {
        shown.push(data[0]);
        if data[0] == 1 {
            // The second buffer's timer fires meanwhile; its handler waits for the lock.
            std::thread::sleep(Duration::from_millis(50));
            D::ContinueEnumeration
        } else {
            D::RemoveAndStopEnumeration
        }
    });
    assert_eq!(shown, [1], "the buffer whose timer fired is skipped");
    assert!(removed.is_none());
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        (2, 22),
        "the expiry got it"
    );
    assert_eq!(sink.count(), 1);
    // A buffer whose timer has not fired is shown, and its timer keeps its remaining time.
    let mut third = pool.get().unwrap();
    third.data_mut()[0] = 3;
    sink.put_in_sink_with_timer(third, 30, 33).unwrap();
    let mut shown = Vec::new();
    sink.enumerate(|data, _| {
        shown.push(data[0]);
        D::ContinueEnumeration
    });
    assert_eq!(shown, [1, 3]);
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), (3, 33));
    session.wait_idle();
    drop((sink, pool, device));
    session.end();
}

/// Issue 10, 4.2: enumeration is for sinks; a source pool refuses it without calling back.
#[test]
fn enumerate_on_a_source_is_refused() {
    let session = Session::begin();
    let device = device();
    let pool = source(&device, settings(2, 4, 0));
    let mut called = false;
    let result = pool.try_enumerate(|_, _| {
        called = true;
        D::RemoveAndStopEnumeration
    });
    assert_eq!(result.err(), Some(NtStatus::INVALID_DEVICE_REQUEST));
    assert!(
        pool.enumerate(|_, _| {
            called = true;
            D::RemoveAndStopEnumeration
        })
        .is_none()
    );
    assert!(!called, "the callback never ran");
    assert_eq!(pool.count(), 2, "nothing was taken out");
    drop((pool, device));
    session.end();
}

/// Issue 10, 4.3: a timer put into a sink that has no expiry callback is refused with the
/// buffer (nobody would receive it when it expires).
#[test]
fn timer_put_without_an_expiry_callback_is_refused() {
    let session = Session::begin();
    let device = device();
    let mut s = settings(1, 4, 0);
    s.create_with_timer = true;
    let pool = source(&device, s);
    let sink = BufferPool::create(
        device.handle().cast(),
        BufferPoolConfig::sink(1),
        ModuleAttributes::new(),
    )
    .unwrap();
    let error = sink
        .put_in_sink_with_timer(pool.get().unwrap(), 1, 0)
        .expect_err("no expiry callback");
    assert_eq!(error.kind, PutErrorKind::NoExpiryCallback);
    assert_eq!(error.status(), NtStatus::INVALID_PARAMETER);
    drop(error);
    assert_eq!((sink.count(), pool.count()), (0, 1), "the buffer went back");
    drop((sink, pool, device));
    session.end();
}

/// Issue 10, 4.7: a sink dropped while one of its buffers' expiry callbacks runs is freed by
/// the drop (which waits for that callback), never later by the timer's handler on a framework
/// thread: when the drop returns, every framework object of the sink is deleted.
#[test]
fn sink_dropped_during_an_expiry_is_freed_by_the_drop() {
    let session = Session::begin_with_seed(0);
    let device = device();
    let mut s = settings(1, 1, 0);
    s.create_with_timer = true;
    let pool = source(&device, s);
    let undeleted_before = sim::undeleted_objects();
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let gate = Mutex::new((entered_tx, release_rx));
    let mut config = BufferPoolConfig::sink(1);
    config.on_timer_expired = Some(Box::new(move |buffer, _| {
        let gate = gate.lock().unwrap();
        gate.0.send(()).unwrap();
        let _ = gate.1.recv_timeout(Duration::from_secs(5));
        drop(buffer);
    }));
    let sink = BufferPool::create(device.handle().cast(), config, ModuleAttributes::new()).unwrap();
    sink.put_in_sink_with_timer(pool.get().unwrap(), 1, 0)
        .unwrap();
    entered_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("expired");
    let (dropped_tx, dropped_rx) = mpsc::channel::<()>();
    let dropper = std::thread::spawn(move || {
        drop(sink);
        dropped_tx.send(()).unwrap();
    });
    assert!(
        dropped_rx.recv_timeout(Duration::from_millis(50)).is_err(),
        "the drop waits for the running expiry callback"
    );
    release_tx.send(()).unwrap();
    dropper.join().unwrap();
    assert_eq!(
        sim::undeleted_objects(),
        undeleted_before,
        "the sink's framework objects were deleted by its drop"
    );
    session.wait_idle();
    assert_eq!(
        pool.count(),
        1,
        "the expired buffer went back to its source"
    );
    drop((pool, device));
    session.end();
}

/// [`concurrent_get_and_put_keep_every_buffer`] under many scheduling seeds (see `common/schedules.rs`; `SCHEDULE_SEEDS=1000` is
/// the long run).
#[test]
fn concurrent_get_and_put_keep_every_buffer_under_many_schedules() {
    schedules::under_seeds(
        "BufferPool: concurrent_get_and_put_keep_every_buffer",
        50,
        concurrent_get_and_put_keep_every_buffer,
    );
}
