//! `ContinuousRequestTarget` streaming against the programmable target: data flow through the
//! input and output callbacks, dispositions, client-owned buffers, automatic mode, D0 purge and
//! restart, failing and vanishing targets, single requests, and stop/stop-and-wait semantics.
#![cfg(not(windows))]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmf::core::{DeviceModules, ModuleAttributes, PowerState};
use dmf::error::{ConfigError, ModuleError};
use dmf::modules::continuous_request_target::{
    BufferDisposition, CompletionOption, ContinuousRequestTarget, ContinuousRequestTargetConfig,
    Mode, OutputBuffer, RequestType,
};
use dmf::wdf::{NtStatus, PoolType};
use wdk_sys::sim::Session;
use wdk_sys::sim::target::{ProgrammableTarget, Response};

const IOCTL: u32 = 0x22_2010;

#[derive(Default)]
struct Seen {
    callbacks: AtomicUsize,
    statuses: Mutex<Vec<NtStatus>>,
    data: Mutex<Vec<Vec<u8>>>,
    stopped: AtomicBool,
    after_stop: AtomicUsize,
}

fn config(seen: &Arc<Seen>, requests: usize) -> ContinuousRequestTargetConfig {
    let counter = AtomicUsize::new(0);
    let seen = Arc::clone(seen);
    ContinuousRequestTargetConfig {
        continuous_request_count: requests,
        buffer_count_input: requests,
        buffer_input_size: 4,
        buffer_count_output: requests * 2,
        buffer_output_size: 8,
        buffer_context_output_size: 4,
        request_type: RequestType::Ioctl,
        ioctl: IOCTL,
        buffer_input: Some(Box::new(move |data, _context| {
            let n = counter.fetch_add(1, Ordering::SeqCst) as u32;
            data.copy_from_slice(&n.to_le_bytes());
            4
        })),
        buffer_output: Some(Box::new(move |output, status| {
            seen.callbacks.fetch_add(1, Ordering::SeqCst);
            if seen.stopped.load(Ordering::SeqCst) {
                seen.after_stop.fetch_add(1, Ordering::SeqCst);
            }
            seen.statuses.lock().unwrap().push(status);
            if let Some(buffer) = output.as_ref() {
                seen.data.lock().unwrap().push(buffer.data().to_vec());
            }
            if status.is_success() {
                BufferDisposition::ContinuousRequestTargetAndContinueStreaming
            } else {
                BufferDisposition::ContinuousRequestTargetAndStopStreaming
            }
        })),
        ..ContinuousRequestTargetConfig::default()
    }
}

fn echo(device: &ProgrammableTarget) {
    device.set_responder(|r| Response::data(&r.input).after(Duration::from_micros(200)));
}

#[test]
fn manual_streaming_moves_data_and_stop_and_wait_brings_everything_back() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\CrtManual");
    echo(&device);
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    let seen = Arc::new(Seen::default());
    let crt = ContinuousRequestTarget::create(
        common::parent(&host),
        config(&seen, 3),
        ModuleAttributes::new(),
    )
    .unwrap();
    assert_eq!(
        crt.start(),
        Err(NtStatus::DEVICE_NOT_CONNECTED),
        "no target yet"
    );
    crt.io_target_set(&target).unwrap();
    assert!(!crt.is_streaming(), "manual mode: set does not start");
    crt.start().unwrap();
    assert_eq!(crt.live_streams(), 3);
    common::wait_until("100 completions", || {
        seen.callbacks.load(Ordering::SeqCst) >= 100
    });
    crt.stop_and_wait();
    seen.stopped.store(true, Ordering::SeqCst);
    assert_eq!(crt.live_streams(), 0);
    assert_eq!(
        crt.output_buffers_free(),
        Some(6),
        "every output buffer is back"
    );
    assert_eq!(
        crt.input_buffers_free(),
        Some(3),
        "every input buffer is back"
    );
    assert_eq!(crt.core_references(), 0, "no send holds a reference");
    let callbacks = seen.callbacks.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        seen.callbacks.load(Ordering::SeqCst),
        callbacks,
        "no callback after stop_and_wait"
    );
    assert_eq!(seen.after_stop.load(Ordering::SeqCst), 0);
    // The data is what the input callback wrote: distinct sequence numbers.
    let data = seen.data.lock().unwrap().clone();
    let mut numbers: Vec<u32> = data
        .iter()
        .filter(|d| d.len() == 4)
        .map(|d| u32::from_le_bytes(d[..4].try_into().unwrap()))
        .collect();
    let total = numbers.len();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), total, "each request carried fresh input");
    let received = device.counters().received as usize;
    assert!(
        received >= callbacks,
        "every callback is one request the target answered"
    );
    // Restart works after a stop.
    seen.stopped.store(false, Ordering::SeqCst);
    crt.start().unwrap();
    common::wait_until("more completions", || {
        seen.callbacks.load(Ordering::SeqCst) >= callbacks + 10
    });
    crt.stop(); // non-waiting
    crt.stop_and_wait();
    assert_eq!(crt.live_streams(), 0);
    crt.io_target_clear();
    drop(crt);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn automatic_mode_streams_between_set_and_clear() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\CrtAuto");
    echo(&device);
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    let seen = Arc::new(Seen::default());
    let mut cfg = config(&seen, 2);
    cfg.mode = Mode::Automatic;
    let crt =
        ContinuousRequestTarget::create(common::parent(&host), cfg, ModuleAttributes::passive())
            .unwrap();
    crt.io_target_set(&target).unwrap();
    assert!(crt.is_streaming(), "automatic: set starts streaming");
    common::wait_until("completions", || {
        seen.callbacks.load(Ordering::SeqCst) >= 20
    });
    crt.io_target_clear();
    seen.stopped.store(true, Ordering::SeqCst);
    assert!(!crt.is_streaming(), "automatic: clear stopped and waited");
    assert_eq!(crt.output_buffers_free(), Some(4));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(seen.after_stop.load(Ordering::SeqCst), 0);
    // Set again: streams again.
    crt.io_target_set(&target).unwrap();
    assert_eq!(crt.live_streams(), 2);
    crt.io_target_clear();
    drop(crt);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn dispositions_client_buffers_and_foreign_buffers() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\CrtDisp");
    device.set_responder(|r| Response::data(&r.input));
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    let kept: Arc<Mutex<Vec<OutputBuffer>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let make = |kept: &Arc<Mutex<Vec<OutputBuffer>>>, calls: &Arc<AtomicUsize>| {
        let kept = Arc::clone(kept);
        let calls = Arc::clone(calls);
        ContinuousRequestTargetConfig {
            continuous_request_count: 2,
            buffer_count_output: 4,
            buffer_output_size: 8,
            buffer_count_input: 2,
            buffer_input_size: 2,
            buffer_input: Some(Box::new(|data, _| {
                data.copy_from_slice(&[0xAB, 0xCD]);
                2
            })),
            request_type: RequestType::Ioctl,
            ioctl: IOCTL,
            buffer_output: Some(Box::new(move |output, status| {
                assert_eq!(status, NtStatus::SUCCESS);
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let buffer = output.take().expect("an output buffer");
                assert_eq!(buffer.data(), &[0xAB, 0xCD]);
                kept.lock().unwrap().push(buffer);
                if n == 0 {
                    BufferDisposition::ClientAndStopStreaming
                } else {
                    BufferDisposition::ClientAndContinueStreaming
                }
            })),
            ..ContinuousRequestTargetConfig::default()
        }
    };
    let crt = ContinuousRequestTarget::create(
        common::parent(&host),
        make(&kept, &calls),
        ModuleAttributes::new(),
    )
    .unwrap();
    let other_kept: Arc<Mutex<Vec<OutputBuffer>>> = Arc::default();
    let other_calls = Arc::new(AtomicUsize::new(0));
    let other = ContinuousRequestTarget::create(
        common::parent(&host),
        make(&other_kept, &other_calls),
        ModuleAttributes::new(),
    )
    .unwrap();
    crt.io_target_set(&target).unwrap();
    crt.start().unwrap();
    // One stream stopped by its disposition; the other keeps going until the pool runs dry
    // (the client keeps every buffer): 4 buffers, so 4 callbacks, then the stream ends.
    common::wait_until("pool dry", || crt.live_streams() == 0);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(crt.output_buffers_free(), Some(0));
    assert_eq!(kept.lock().unwrap().len(), 4);
    // The client's buffers stay valid until returned.
    for buffer in kept.lock().unwrap().iter() {
        assert_eq!(buffer.data(), &[0xAB, 0xCD]);
    }
    // A buffer of another module is refused and handed back.
    other.io_target_set(&target).unwrap();
    other.start().unwrap();
    common::wait_until("other pool dry", || other.live_streams() == 0);
    let foreign = other_kept.lock().unwrap().pop().unwrap();
    let error = crt.buffer_put(foreign).unwrap_err();
    assert_eq!(error.status(), NtStatus::INVALID_PARAMETER);
    assert_eq!(crt.output_buffers_free(), Some(0));
    other.buffer_put(error.buffer).unwrap();
    assert_eq!(other.output_buffers_free(), Some(1));
    // Put one back, drop the others: all return.
    let first = kept.lock().unwrap().pop().unwrap();
    crt.buffer_put(first).unwrap();
    assert_eq!(crt.output_buffers_free(), Some(1));
    kept.lock().unwrap().clear();
    assert_eq!(crt.output_buffers_free(), Some(4));
    other_kept.lock().unwrap().clear();
    crt.stop_and_wait();
    other.stop_and_wait();
    drop(other);
    drop(crt);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn failing_target_ends_streams_by_default_and_continues_when_told() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\CrtFail");
    let fail = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&fail);
    device.set_responder(move |r| {
        if flag.load(Ordering::SeqCst) {
            Response::status(NtStatus::DEVICE_BUSY.raw())
        } else {
            Response::data(&r.input)
        }
    });
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    // No output callback: an error stops that stream.
    let crt = ContinuousRequestTarget::create(
        common::parent(&host),
        ContinuousRequestTargetConfig {
            continuous_request_count: 3,
            buffer_count_output: 3,
            buffer_output_size: 4,
            request_type: RequestType::Read,
            ..ContinuousRequestTargetConfig::default()
        },
        ModuleAttributes::new(),
    )
    .unwrap();
    crt.io_target_set(&target).unwrap();
    crt.start().unwrap();
    common::wait_until("streams end", || crt.live_streams() == 0);
    assert_eq!(
        device.counters().reads,
        3,
        "each stream failed once and ended"
    );
    assert_eq!(crt.output_buffers_free(), Some(3));
    crt.io_target_clear();
    drop(crt);

    // A callback that continues on errors keeps streaming through failures.
    let seen = Arc::new(Seen::default());
    let crt = ContinuousRequestTarget::create(
        common::parent(&host),
        {
            let mut cfg = config(&seen, 2);
            let inner = cfg.buffer_output.take().unwrap();
            cfg.buffer_output = Some(Box::new(move |output, status| {
                let _ = inner(output, status);
                BufferDisposition::ContinuousRequestTargetAndContinueStreaming
            }));
            cfg
        },
        ModuleAttributes::new(),
    )
    .unwrap();
    crt.io_target_set(&target).unwrap();
    crt.start().unwrap();
    common::wait_until("failures", || seen.callbacks.load(Ordering::SeqCst) >= 10);
    fail.store(false, Ordering::SeqCst);
    common::wait_until("successes", || {
        seen.statuses
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.is_success())
            .count()
            >= 10
    });
    assert_eq!(crt.live_streams(), 2);
    assert!(
        seen.statuses
            .lock()
            .unwrap()
            .contains(&NtStatus::DEVICE_BUSY)
    );
    crt.stop_and_wait();
    crt.io_target_clear();
    drop(crt);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn surprise_removal_mid_stream_ends_every_stream() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\CrtVanish");
    device.set_responder(|_| Response::Hold);
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    let seen = Arc::new(Seen::default());
    let crt = ContinuousRequestTarget::create(
        common::parent(&host),
        config(&seen, 4),
        ModuleAttributes::new(),
    )
    .unwrap();
    crt.io_target_set(&target).unwrap();
    crt.start().unwrap();
    assert!(device.wait_held(4, Duration::from_secs(5)));
    assert_eq!(
        crt.core_references(),
        4,
        "each streaming send holds a reference"
    );
    device.surprise_remove();
    common::wait_until("streams end", || crt.live_streams() == 0);
    assert_eq!(seen.callbacks.load(Ordering::SeqCst), 4);
    assert!(
        seen.statuses
            .lock()
            .unwrap()
            .iter()
            .all(|s| *s == NtStatus::CANCELLED)
    );
    assert_eq!(crt.output_buffers_free(), Some(8));
    assert_eq!(crt.input_buffers_free(), Some(4));
    assert_eq!(crt.core_references(), 0);
    // Restarting against the vanished device fails cleanly.
    assert!(
        crt.start().is_err() || {
            common::wait_until("streams end again", || crt.live_streams() == 0);
            true
        }
    );
    crt.stop_and_wait();
    crt.io_target_clear();
    drop(crt);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn single_requests_on_the_streaming_module() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\CrtSingle");
    device.set_responder(|r| {
        if r.ioctl == 1 {
            Response::Hold
        } else {
            Response::data(&[1, 2, 3])
        }
    });
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    let crt = ContinuousRequestTarget::create(
        common::parent(&host),
        ContinuousRequestTargetConfig::default(),
        ModuleAttributes::new(),
    )
    .unwrap();
    let mut out = [0u8; 4];
    assert_eq!(
        crt.send_synchronously(&[], &mut out, RequestType::Ioctl, 2, 0),
        Err(NtStatus::DEVICE_NOT_CONNECTED)
    );
    crt.io_target_set(&target).unwrap();
    assert_eq!(
        crt.send_synchronously(&[], &mut out, RequestType::Ioctl, 2, 0),
        Ok(3)
    );
    assert_eq!(&out[..3], &[1, 2, 3]);
    assert_eq!(
        crt.send_synchronously(&[], &mut out, RequestType::Ioctl, 1, 10),
        Err(NtStatus::IO_TIMEOUT)
    );
    let (sender, receiver) = std::sync::mpsc::channel();
    let token = crt
        .send_ex(
            &[9],
            4,
            RequestType::Ioctl,
            1,
            0,
            CompletionOption::Passive,
            Some(Box::new(move |r| sender.send(r.status).unwrap())),
        )
        .unwrap();
    assert!(device.wait_held(1, Duration::from_secs(5)));
    assert!(crt.cancel(token));
    assert_eq!(
        receiver.recv_timeout(Duration::from_secs(5)).unwrap(),
        NtStatus::CANCELLED
    );
    assert!(!crt.cancel(token));
    crt.send(&[1], 4, RequestType::Ioctl, 2, 0, None).unwrap();
    drop(crt);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn configuration_errors_are_typed() {
    let session = Session::begin();
    let parent_object = dmf::wdf::Memory::create(1, PoolType::NonPaged, None).unwrap();
    let parent = parent_object.handle().cast();
    let create = |cfg, attributes| ContinuousRequestTarget::create(parent, cfg, attributes).err();
    assert_eq!(
        create(
            ContinuousRequestTargetConfig {
                buffer_count_output: 1,
                buffer_output_size: 4,
                pool_type_output: PoolType::Paged,
                ..ContinuousRequestTargetConfig::default()
            },
            ModuleAttributes::new()
        ),
        Some(ModuleError::Config(
            ConfigError::PagedPoolRequiresPassiveLevel
        ))
    );
    assert!(
        create(
            ContinuousRequestTargetConfig {
                buffer_count_output: 1,
                buffer_output_size: 4,
                pool_type_output: PoolType::Paged,
                ..ContinuousRequestTargetConfig::default()
            },
            ModuleAttributes::passive()
        )
        .is_none(),
        "paged pool with the passive-level option is fine"
    );
    assert_eq!(
        create(
            ContinuousRequestTargetConfig {
                buffer_count_input: 1,
                buffer_input_size: 4,
                ..ContinuousRequestTargetConfig::default()
            },
            ModuleAttributes::new()
        ),
        Some(ModuleError::Config(ConfigError::InputCallbackRequired))
    );
    assert_eq!(
        create(
            ContinuousRequestTargetConfig {
                continuous_request_count: 1,
                request_type: RequestType::Read,
                ..ContinuousRequestTargetConfig::default()
            },
            ModuleAttributes::new()
        ),
        Some(ModuleError::Config(
            ConfigError::BufferRequiredForRequestType
        ))
    );
    assert_eq!(
        create(
            ContinuousRequestTargetConfig {
                purge_and_start_target_in_d0_callbacks: true,
                ..ContinuousRequestTargetConfig::default()
            },
            ModuleAttributes::new()
        ),
        Some(ModuleError::Config(
            ConfigError::DynamicModuleWithPnpCallbacks
        ))
    );
    drop(parent_object);
    session.end();
}

#[test]
fn d0_exit_stops_and_purges_d0_entry_restarts_target_then_streaming() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\CrtPower");
    echo(&device);
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    let seen = Arc::new(Seen::default());
    let mut cfg = config(&seen, 2);
    cfg.purge_and_start_target_in_d0_callbacks = true;
    let crt = ContinuousRequestTarget::create(
        common::parent(&host),
        cfg,
        ModuleAttributes::static_module(),
    )
    .unwrap();
    let mut modules = DeviceModules::new();
    modules.add(&crt).unwrap();
    modules.post_create().unwrap();
    crt.io_target_set(&target).unwrap();
    crt.start().unwrap();
    common::wait_until("streaming", || seen.callbacks.load(Ordering::SeqCst) >= 10);
    modules.d0_exit(PowerState::D3);
    assert!(!crt.is_streaming(), "D0Exit stopped streaming");
    assert_eq!(target.state(), dmf::wdf::io_target::IoTargetState::Purged);
    let before = seen.callbacks.load(Ordering::SeqCst);
    modules.d0_entry(PowerState::D3).unwrap();
    assert_eq!(target.state(), dmf::wdf::io_target::IoTargetState::Started);
    assert_eq!(
        crt.live_streams(),
        2,
        "streaming resumed on the restarted target"
    );
    common::wait_until("streaming again", || {
        seen.callbacks.load(Ordering::SeqCst) >= before + 10
    });
    assert!(
        seen.statuses.lock().unwrap()[before..]
            .iter()
            .all(|s| s.is_success()),
        "no send hit the purged target"
    );
    crt.stop_and_wait();
    // Not streaming at D0Exit: not restarted at D0Entry.
    modules.d0_exit(PowerState::D3);
    modules.d0_entry(PowerState::D3).unwrap();
    assert!(!crt.is_streaming());
    crt.io_target_clear();
    modules.destroy();
    drop(crt);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

/// Issue 10, 4.6: `buffer_put` on a module that is not open fails (its module reference
/// does) with the buffer handed back, which is not lost: dropped, it goes back to its pool,
/// and everything is freed with the module.
#[test]
fn buffer_put_on_a_closed_module_fails_and_the_buffer_is_freed() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\CrtPutClosed");
    device.set_responder(|r| Response::data(&r.input));
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    let live_before = wdk_sys::sim::counters().live_objects;
    let kept: Arc<Mutex<Vec<OutputBuffer>>> = Arc::default();
    let keep = Arc::clone(&kept);
    let crt = ContinuousRequestTarget::create(
        common::parent(&host),
        ContinuousRequestTargetConfig {
            continuous_request_count: 1,
            buffer_count_output: 2,
            buffer_output_size: 8,
            request_type: RequestType::Read,
            buffer_output: Some(Box::new(move |output, _| {
                keep.lock().unwrap().push(output.take().expect("a buffer"));
                BufferDisposition::ClientAndStopStreaming
            })),
            ..ContinuousRequestTargetConfig::default()
        },
        ModuleAttributes::new(),
    )
    .unwrap();
    crt.io_target_set(&target).unwrap();
    crt.start().unwrap();
    common::wait_until("the client holds a buffer", || crt.live_streams() == 0);
    let buffer = kept.lock().unwrap().pop().expect("kept");
    crt.io_target_clear();
    dmf::core::lifecycle::close(&**crt.as_ref());
    let error = crt.buffer_put(buffer).expect_err("the module is not open");
    assert_eq!(error.status(), NtStatus::INVALID_DEVICE_STATE);
    assert_eq!(crt.output_buffers_free(), Some(1));
    drop(error);
    assert_eq!(
        crt.output_buffers_free(),
        Some(2),
        "back in its pool, not lost"
    );
    drop(crt);
    assert_eq!(wdk_sys::sim::counters().live_objects, live_before);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

/// A buffer the client leaves to the module is resent with its request, zeroed (data and
/// context) as its pool would have zeroed it: the client never sees an earlier answer's bytes.
#[test]
fn a_buffer_left_to_the_module_comes_back_zeroed() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\CrtKept");
    device.set_responder(|_| Response::data(&[0xAB, 0xCD]));
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    let calls = Arc::new(AtomicUsize::new(0));
    let dirty = Arc::new(AtomicUsize::new(0));
    let (count, seen_dirty) = (Arc::clone(&calls), Arc::clone(&dirty));
    let crt = ContinuousRequestTarget::create(
        common::parent(&host),
        ContinuousRequestTargetConfig {
            continuous_request_count: 1,
            buffer_count_input: 1,
            buffer_input_size: 4,
            buffer_count_output: 1,
            buffer_output_size: 8,
            buffer_context_output_size: 4,
            request_type: RequestType::Ioctl,
            ioctl: IOCTL,
            buffer_input: Some(Box::new(|data, context| {
                assert!(data.iter().chain(context.iter()).all(|&b| b == 0));
                data.fill(0x11);
                4
            })),
            buffer_output: Some(Box::new(move |output, _| {
                let buffer = output.as_mut().expect("a buffer");
                assert_eq!(buffer.data(), &[0xAB, 0xCD]);
                if buffer.buffer_mut()[2..].iter().any(|&b| b != 0)
                    || buffer.context().iter().any(|&b| b != 0)
                {
                    seen_dirty.fetch_add(1, Ordering::SeqCst);
                }
                buffer.buffer_mut().fill(0xEE);
                buffer.context_mut().fill(0xEE);
                if count.fetch_add(1, Ordering::SeqCst) < 20 {
                    BufferDisposition::ContinuousRequestTargetAndContinueStreaming
                } else {
                    BufferDisposition::ContinuousRequestTargetAndStopStreaming
                }
            })),
            ..ContinuousRequestTargetConfig::default()
        },
        ModuleAttributes::new(),
    )
    .unwrap();
    crt.io_target_set(&target).unwrap();
    crt.start().unwrap();
    common::wait_until("the stream ended", || crt.live_streams() == 0);
    assert_eq!(calls.load(Ordering::SeqCst), 21);
    assert_eq!(
        dirty.load(Ordering::SeqCst),
        0,
        "every buffer came back zeroed"
    );
    assert_eq!(crt.output_buffers_free(), Some(1));
    assert_eq!(crt.input_buffers_free(), Some(1));
    crt.io_target_clear();
    drop(crt);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}
