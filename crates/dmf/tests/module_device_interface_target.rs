//! `DeviceInterfaceTarget` against programmable targets that expose a device interface:
//! arrival (existing, later, declined, duplicate, failing), query-remove with and without veto,
//! remove-cancel, remove-complete, surprise removal, interface disable, unregister in
//! `ReleaseHardware` / `D0Exit` / destroy, the close-path arbitration, streaming through each
//! of those, methods racing removal, allocation failures during an arrival, and the open's
//! access and sharing. Every flow checks the exact callback order.
#![cfg(not(windows))]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dmf::core::{DeviceModules, ModuleAttributes, PowerState};
use dmf::error::{ConfigError, ModuleError};
use dmf::modules::continuous_request_target::{
    BufferDisposition, ContinuousRequestTargetConfig, Mode,
};
use dmf::modules::device_interface_target::{
    DeviceInterfaceTarget, DeviceInterfaceTargetConfig, DeviceInterfaceTargetNode, OpenMode,
    PnpRegisterWhen, ShareAccess, TargetState,
};
use dmf::modules::request_target::{CompletionOption, RequestType};
use dmf::wdf::NtStatus;
use dmf::wdf::device::Device;
use wdk_sys::sim::target::{CancelPolicy, ProgrammableTarget, Response};
use wdk_sys::sim::{self, FaultPoint, Session};
use wdk_sys::{FILE_SHARE_READ, GENERIC_READ, GENERIC_WRITE, GUID};

const IOCTL: u32 = 0x22_2020;

const CLASS: GUID = GUID {
    Data1: 0x6c1f_0d11,
    Data2: 0x0001,
    Data3: 0x4d11,
    Data4: [0x90, 0x11, 0, 0, 0, 0, 0, 0x11],
};

/// What the client saw, in order.
#[derive(Default)]
struct Log {
    events: Mutex<Vec<String>>,
    /// Output callbacks.
    completions: AtomicUsize,
    /// Output callbacks that ran while the module was closed (must stay 0).
    late: AtomicUsize,
    closed: AtomicBool,
}

impl Log {
    fn push(&self, event: impl Into<String>) {
        self.events.lock().unwrap().push(event.into());
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }

    fn wait_for(&self, event: &str) {
        common::wait_until(event, || {
            self.events.lock().unwrap().iter().any(|e| e == event)
        });
    }
}

fn state_name(state: TargetState) -> &'static str {
    match state {
        TargetState::Open => "Open",
        TargetState::QueryRemove => "QueryRemove",
        TargetState::QueryRemoveCancelled => "QueryRemoveCancelled",
        TargetState::QueryRemoveComplete => "QueryRemoveComplete",
        TargetState::Close => "Close",
    }
}

/// What a method says inside a callback: "ok" or the failure status.
fn probe(module: &DeviceInterfaceTargetNode) -> &'static str {
    match module.get() {
        Ok(_) => "methods work",
        Err(NtStatus::INVALID_DEVICE_STATE) => "methods closed",
        Err(_) => "methods fail otherwise",
    }
}

fn streaming(log: &Arc<Log>, count: usize, mode: Mode) -> ContinuousRequestTargetConfig {
    let seen = Arc::clone(log);
    ContinuousRequestTargetConfig {
        continuous_request_count: count,
        buffer_count_output: count,
        buffer_output_size: 8,
        request_type: RequestType::Ioctl,
        ioctl: IOCTL,
        mode,
        buffer_output: Some(Box::new(move |_output, status| {
            seen.completions.fetch_add(1, Ordering::SeqCst);
            if seen.closed.load(Ordering::SeqCst) {
                seen.late.fetch_add(1, Ordering::SeqCst);
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

/// A configuration that logs every callback; `veto` lists the states the client refuses.
fn config(
    log: &Arc<Log>,
    when: PnpRegisterWhen,
    child: ContinuousRequestTargetConfig,
    veto: &Arc<Mutex<Vec<TargetState>>>,
) -> DeviceInterfaceTargetConfig {
    let on_state = Arc::clone(log);
    let on_pnp = Arc::clone(log);
    let veto = Arc::clone(veto);
    DeviceInterfaceTargetConfig {
        module_open_option: when,
        device_interface_target_guid: CLASS,
        continuous_request_target_config: child,
        on_state_change_ex: Some(Box::new(move |module, state| {
            on_state.push(format!("{} ({})", state_name(state), probe(module)));
            if veto.lock().unwrap().contains(&state) {
                on_state.push("vetoed");
                return Err(NtStatus::UNSUCCESSFUL);
            }
            Ok(())
        })),
        on_pnp_notification: Some(Box::new(move |module, name| {
            assert_eq!(module.guid_get().Data1, CLASS.Data1);
            on_pnp.push(format!("Arrival {}", String::from_utf16_lossy(name)));
            true
        })),
        ..DeviceInterfaceTargetConfig::default()
    }
}

fn attributes(log: &Arc<Log>, dynamic: bool) -> ModuleAttributes {
    let opened = Arc::clone(log);
    let closing = Arc::clone(log);
    let mut attributes = if dynamic {
        ModuleAttributes::new()
    } else {
        ModuleAttributes::static_module()
    };
    attributes.post_open = Some(Box::new(move || opened.push("PostOpen")));
    attributes.pre_close = Some(Box::new(move || closing.push("PreClose")));
    attributes
}

/// A dynamic module of `host` that registers for arrivals at `Create`, with the logging
/// [`config`] and [`attributes`].
fn create_module(
    host: &sim::pnp::Device,
    log: &Arc<Log>,
    child: ContinuousRequestTargetConfig,
    veto: &Arc<Mutex<Vec<TargetState>>>,
) -> DeviceInterfaceTarget {
    DeviceInterfaceTarget::create(
        device(host),
        config(log, PnpRegisterWhen::Create, child, veto),
        attributes(log, true),
    )
    .unwrap()
}

fn sensor() -> ProgrammableTarget {
    let target = ProgrammableTarget::with_interface(CLASS);
    target.set_responder(|r| Response::data(&r.sequence.to_le_bytes()).from_worker());
    target
}

fn no_veto() -> Arc<Mutex<Vec<TargetState>>> {
    Arc::new(Mutex::new(Vec::new()))
}

fn device(host: &sim::pnp::Device) -> Device {
    Device::from_raw(host.handle())
}

fn wait_open(module: &DeviceInterfaceTarget) {
    common::wait_until("the module opens", || module.is_open());
}

fn wait_streamed(log: &Log, more: usize) {
    let now = log.completions.load(Ordering::SeqCst);
    common::wait_until("streamed completions", || {
        log.completions.load(Ordering::SeqCst) >= now + more
    });
}

fn arrival(target: &ProgrammableTarget) -> String {
    format!("Arrival {}", target.symbolic_link())
}

#[test]
fn invalid_configurations_are_typed_errors() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let both = DeviceInterfaceTargetConfig {
        module_open_option: PnpRegisterWhen::Create,
        on_state_change: Some(Box::new(|_, _| {})),
        on_state_change_ex: Some(Box::new(|_, _| Ok(()))),
        ..DeviceInterfaceTargetConfig::default()
    };
    assert_eq!(
        DeviceInterfaceTarget::create(device(&host), both, ModuleAttributes::new()).err(),
        Some(ModuleError::Config(ConfigError::BothStateChangeCallbacks))
    );
    let dynamic_prepare = DeviceInterfaceTargetConfig::default();
    assert_eq!(
        DeviceInterfaceTarget::create(device(&host), dynamic_prepare, ModuleAttributes::new())
            .err(),
        Some(ModuleError::Config(ConfigError::DynamicModuleOpenOption))
    );
    let log = Arc::new(Log::default());
    let mut child = streaming(&log, 2, Mode::Automatic);
    child.purge_and_start_target_in_d0_callbacks = true;
    let d0 = DeviceInterfaceTargetConfig {
        module_open_option: PnpRegisterWhen::Create,
        continuous_request_target_config: child,
        ..DeviceInterfaceTargetConfig::default()
    };
    assert_eq!(
        DeviceInterfaceTarget::create(device(&host), d0, ModuleAttributes::new()).err(),
        Some(ModuleError::Config(ConfigError::D0CallbacksOnDynamicChild))
    );
    let bad_child = DeviceInterfaceTargetConfig {
        module_open_option: PnpRegisterWhen::Create,
        continuous_request_target_config: ContinuousRequestTargetConfig {
            continuous_request_count: 1,
            request_type: RequestType::Read,
            ..ContinuousRequestTargetConfig::default()
        },
        ..DeviceInterfaceTargetConfig::default()
    };
    assert_eq!(
        DeviceInterfaceTarget::create(device(&host), bad_child, ModuleAttributes::new()).err(),
        Some(ModuleError::Config(
            ConfigError::BufferRequiredForRequestType
        ))
    );
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn existing_interface_opens_streams_and_destroy_closes_in_order() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let target = sensor();
    let log = Arc::new(Log::default());
    let mut config = config(
        &log,
        PnpRegisterWhen::Create,
        streaming(&log, 3, Mode::Automatic),
        &no_veto(),
    );
    config.open_mode = OpenMode::Read;
    config.share_access = ShareAccess::READ;
    let module =
        DeviceInterfaceTarget::create(device(&host), config, attributes(&log, true)).unwrap();
    wait_open(&module);
    wait_streamed(&log, 50);
    assert_eq!(
        log.take(),
        [
            arrival(&target),
            "Open (methods closed)".into(),
            "PostOpen".into()
        ]
    );
    assert_eq!(
        target.last_open_access(),
        Some((GENERIC_READ, FILE_SHARE_READ)),
        "OpenMode and ShareAccess reach the open"
    );
    assert_eq!(target.open_count(), 1);
    assert_eq!(module.guid_get().Data1, CLASS.Data1);
    {
        let guard = module.get().unwrap();
        assert!(!guard.handle().is_null());
    }
    drop(module);
    log.closed.store(true, Ordering::SeqCst);
    assert_eq!(log.take(), ["Close (methods work)", "PreClose"]);
    assert_eq!(target.open_count(), 0, "the target is closed");
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(
        log.late.load(Ordering::SeqCst),
        0,
        "no callback after close"
    );
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn default_open_is_read_write_shared_and_later_arrivals_are_found() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let log = Arc::new(Log::default());
    let module = create_module(&host, &log, streaming(&log, 2, Mode::Automatic), &no_veto());
    std::thread::sleep(Duration::from_millis(5));
    assert!(!module.is_open());
    assert_eq!(module.get().err(), Some(NtStatus::INVALID_DEVICE_STATE));
    let first = sensor();
    wait_open(&module);
    assert_eq!(
        first.last_open_access(),
        Some((GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | 2))
    );
    // Another instance of the class, and a duplicate arrival of the first: both ignored.
    // (The first holds its reads so the framework goes idle once both were handled.)
    first.set_responder(|_| Response::Hold);
    let second = sensor();
    first.repeat_arrival();
    session.wait_idle();
    assert_eq!((first.open_count(), second.open_count()), (1, 0));
    assert_eq!(
        log.take(),
        [
            arrival(&first),
            "Open (methods closed)".into(),
            "PostOpen".into()
        ],
        "the second instance is not even offered while one is bound"
    );
    // The first goes: the second is not picked up (it arrived while bound), as in DMF.
    first.surprise_remove();
    assert_eq!(
        log.take(),
        ["QueryRemoveComplete (methods work)", "PreClose"]
    );
    assert!(!module.is_open());
    // A new arrival is.
    let third = sensor();
    wait_open(&module);
    assert_eq!(third.open_count(), 1);
    drop(module);
    assert_eq!(third.open_count(), 0);
    drop((second, third));
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn declined_arrival_and_failed_open_leave_the_module_closed_and_later_arrivals_work() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let log = Arc::new(Log::default());
    let vanishing: Arc<Mutex<Option<ProgrammableTarget>>> = Arc::new(Mutex::new(None));
    let declined = Arc::new(Mutex::new(String::new()));
    let mut config = config(
        &log,
        PnpRegisterWhen::Create,
        streaming(&log, 2, Mode::Automatic),
        &no_veto(),
    );
    let declining = Arc::new(AtomicBool::new(true));
    let pnp_log = Arc::clone(&log);
    let vanish = Arc::clone(&vanishing);
    let decline = Arc::clone(&declined);
    let decline_all = Arc::clone(&declining);
    config.on_pnp_notification = Some(Box::new(move |_, name| {
        let name = String::from_utf16_lossy(name);
        if decline_all.load(Ordering::SeqCst) || *decline.lock().unwrap() == name {
            pnp_log.push("declined");
            return false;
        }
        if let Some(target) = vanish.lock().unwrap().take() {
            // The device goes between the notification and the open: the open fails.
            target.surprise_remove();
            pnp_log.push("vanished");
        }
        true
    }));
    let module =
        DeviceInterfaceTarget::create(device(&host), config, attributes(&log, true)).unwrap();
    // Both arrive while the client declines everything.
    let first = sensor();
    let second = ProgrammableTarget::with_interface(CLASS);
    common::wait_until("both declined", || {
        log.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| *e == "declined")
            .count()
            == 2
    });
    *declined.lock().unwrap() = first.symbolic_link().to_string();
    declining.store(false, Ordering::SeqCst);
    first.set_interface_enabled(false);
    first.set_interface_enabled(true);
    common::wait_until("first declined again", || {
        log.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| *e == "declined")
            .count()
            == 3
    });
    // The second arrives again, and its device goes before the module opens it.
    {
        let mut slot = vanishing.lock().unwrap();
        second.repeat_arrival();
        *slot = Some(second);
    }
    log.wait_for("vanished");
    let third = sensor();
    wait_open(&module);
    assert_eq!(first.open_count(), 0, "declined");
    assert_eq!(third.open_count(), 1);
    let events = log.take();
    assert!(events.contains(&"vanished".to_string()), "{events:?}");
    assert_eq!(
        events.iter().filter(|e| e.starts_with("Open")).count(),
        1,
        "no Open for the declined or failed arrival: {events:?}"
    );
    drop(module);
    drop((first, third));
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn vetoed_open_closes_the_target_and_the_next_arrival_opens() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let log = Arc::new(Log::default());
    let veto = Arc::new(Mutex::new(vec![TargetState::Open]));
    let module = create_module(&host, &log, streaming(&log, 2, Mode::Automatic), &veto);
    let refused = sensor();
    log.wait_for("vetoed");
    assert_eq!(refused.open_count(), 0, "the vetoed target is closed");
    assert!(!module.is_open());
    veto.lock().unwrap().clear();
    let accepted = sensor();
    wait_open(&module);
    assert_eq!(
        log.take(),
        [
            arrival(&refused),
            "Open (methods closed)".into(),
            "vetoed".into(),
            arrival(&accepted),
            "Open (methods closed)".into(),
            "PostOpen".into()
        ]
    );
    drop(module);
    drop((refused, accepted));
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn query_remove_then_remove_complete_streams_until_the_query() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let log = Arc::new(Log::default());
    let module = create_module(&host, &log, streaming(&log, 3, Mode::Automatic), &no_veto());
    let target = sensor();
    wait_open(&module);
    wait_streamed(&log, 50);
    log.take();
    assert!(target.query_remove(), "nobody vetoes");
    assert_eq!(
        log.take(),
        [
            "QueryRemove (methods work)",
            "PreClose",
            "QueryRemoveComplete (methods closed)"
        ]
    );
    assert!(!module.is_open());
    let stream = module.stream_child().unwrap();
    assert_eq!(stream.live_streams(), 0);
    assert_eq!(
        stream.output_buffers_free(),
        Some(3),
        "every buffer is back"
    );
    assert_eq!(module.stream_start(), Err(NtStatus::INVALID_DEVICE_STATE));
    drop(module);
    assert!(log.take().is_empty(), "no Close after RemoveComplete");
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn remove_cancel_reopens_and_restarts_streaming() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let log = Arc::new(Log::default());
    let module = create_module(&host, &log, streaming(&log, 3, Mode::Automatic), &no_veto());
    let target = sensor();
    wait_open(&module);
    wait_streamed(&log, 20);
    log.take();
    assert!(target.query_remove_pending());
    assert_eq!(log.take(), ["QueryRemove (methods work)", "PreClose"]);
    assert_eq!(target.open_count(), 0, "closed for the query");
    let during = log.completions.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(log.completions.load(Ordering::SeqCst), during, "stopped");
    target.remove_canceled();
    assert_eq!(
        log.take(),
        ["PostOpen", "QueryRemoveCancelled (methods work)"]
    );
    assert_eq!(target.open_count(), 1, "reopened");
    wait_streamed(&log, 20);
    // The same once more, through the PnP manager's cancel.
    assert!(target.query_remove_then_cancel());
    assert_eq!(
        log.take(),
        [
            "QueryRemove (methods work)",
            "PreClose",
            "PostOpen",
            "QueryRemoveCancelled (methods work)"
        ]
    );
    wait_streamed(&log, 20);
    drop(module);
    assert_eq!(log.take(), ["Close (methods work)", "PreClose"]);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn vetoed_query_remove_keeps_streaming_and_a_following_remove_cancel_is_reported() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let log = Arc::new(Log::default());
    let veto = Arc::new(Mutex::new(vec![TargetState::QueryRemove]));
    let module = create_module(&host, &log, streaming(&log, 2, Mode::Automatic), &veto);
    let target = sensor();
    wait_open(&module);
    log.take();
    assert!(!target.query_remove(), "the client vetoes");
    assert_eq!(log.take(), ["QueryRemove (methods work)", "vetoed"]);
    assert!(module.is_open());
    wait_streamed(&log, 20);
    // The PnP manager tells the vetoer the removal is cancelled: reported, nothing to undo.
    target.remove_canceled();
    assert_eq!(log.take(), ["QueryRemoveCancelled (methods work)"]);
    // Vetoed again, and this time no remove-cancel follows: the next query is a new one.
    assert!(!target.query_remove());
    assert_eq!(log.take(), ["QueryRemove (methods work)", "vetoed"]);
    veto.lock().unwrap().clear();
    assert!(target.query_remove());
    assert_eq!(
        log.take(),
        [
            "QueryRemove (methods work)",
            "PreClose",
            "QueryRemoveComplete (methods closed)"
        ]
    );
    drop(module);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn surprise_removal_after_a_veto_closes_the_target() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let log = Arc::new(Log::default());
    let veto = Arc::new(Mutex::new(vec![TargetState::QueryRemove]));
    let module = create_module(&host, &log, streaming(&log, 2, Mode::Automatic), &veto);
    let target = sensor();
    wait_open(&module);
    log.take();
    assert!(!target.query_remove());
    target.surprise_remove();
    assert_eq!(
        log.take(),
        [
            "QueryRemove (methods work)",
            "vetoed",
            "QueryRemoveComplete (methods work)",
            "PreClose"
        ]
    );
    assert!(!module.is_open());
    drop(module);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn surprise_removal_mid_stream_completes_every_request_once() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let log = Arc::new(Log::default());
    let module = create_module(&host, &log, streaming(&log, 4, Mode::Automatic), &no_veto());
    let target = sensor();
    // Hold every request: removal completes them all.
    target.set_responder(|_| Response::Hold);
    wait_open(&module);
    assert!(target.wait_held(4, Duration::from_secs(5)));
    log.take();
    target.surprise_remove();
    assert_eq!(
        log.take(),
        ["QueryRemoveComplete (methods work)", "PreClose"]
    );
    let counters = target.counters();
    assert_eq!(counters.received, 4);
    assert_eq!(log.completions.load(Ordering::SeqCst), 4, "each once");
    let stream = module.stream_child().unwrap();
    assert_eq!(stream.output_buffers_free(), Some(4));
    assert_eq!(stream.core_references(), 0);
    drop(module);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn interface_disable_closes_without_a_state_change_and_reenable_reopens() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let log = Arc::new(Log::default());
    let module = create_module(&host, &log, streaming(&log, 2, Mode::Automatic), &no_veto());
    let target = sensor();
    wait_open(&module);
    wait_streamed(&log, 10);
    log.take();
    target.set_interface_enabled(false);
    common::wait_until("closed", || !module.is_open());
    log.wait_for("PreClose");
    assert_eq!(log.take(), ["PreClose"], "no state change on this path");
    assert_eq!(target.open_count(), 0);
    target.set_interface_enabled(true);
    wait_open(&module);
    assert_eq!(
        log.take(),
        [
            arrival(&target),
            "Open (methods closed)".into(),
            "PostOpen".into()
        ]
    );
    wait_streamed(&log, 10);
    drop(module);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn release_hardware_and_d0_exit_unregister_and_close() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let target = sensor();
    for when in [PnpRegisterWhen::PrepareHardware, PnpRegisterWhen::D0Entry] {
        let log = Arc::new(Log::default());
        let module = DeviceInterfaceTarget::create(
            device(&host),
            config(&log, when, streaming(&log, 2, Mode::Automatic), &no_veto()),
            attributes(&log, false),
        )
        .unwrap();
        let mut modules = DeviceModules::new();
        modules.add(&module).unwrap();
        modules.post_create().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(!module.is_open(), "{when:?}: not registered yet");
        modules.prepare_hardware().unwrap();
        modules.d0_entry(PowerState::D3Final).unwrap();
        wait_open(&module);
        wait_streamed(&log, 10);
        log.take();
        modules.d0_exit(PowerState::D3Final);
        if when == PnpRegisterWhen::D0Entry {
            assert_eq!(log.take(), ["Close (methods work)", "PreClose"]);
            assert!(!module.is_open());
            modules.d0_entry(PowerState::D3).unwrap();
            wait_open(&module);
            log.take();
            modules.d0_exit(PowerState::D3Final);
            assert_eq!(log.take(), ["Close (methods work)", "PreClose"]);
        } else {
            assert!(module.is_open(), "D0Exit does not unregister");
        }
        modules.release_hardware();
        if when == PnpRegisterWhen::PrepareHardware {
            assert_eq!(log.take(), ["Close (methods work)", "PreClose"]);
        }
        assert!(!module.is_open());
        assert_eq!(target.open_count(), 0);
        modules.destroy();
        drop(module);
        assert!(log.take().is_empty());
    }
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn unregister_during_a_query_remove_is_finished_by_remove_cancel() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let target = sensor();
    let log = Arc::new(Log::default());
    let module = DeviceInterfaceTarget::create(
        device(&host),
        config(
            &log,
            PnpRegisterWhen::PrepareHardware,
            streaming(&log, 2, Mode::Automatic),
            &no_veto(),
        ),
        attributes(&log, false),
    )
    .unwrap();
    let mut modules = DeviceModules::new();
    modules.add(&module).unwrap();
    modules.post_create().unwrap();
    modules.prepare_hardware().unwrap();
    wait_open(&module);
    log.take();
    assert!(target.query_remove_pending());
    modules.release_hardware();
    assert_eq!(
        log.take(),
        ["QueryRemove (methods work)", "PreClose"],
        "the unregister loses the arbitration: the removal path finishes the close"
    );
    target.remove_canceled();
    assert_eq!(
        log.take(),
        [
            "PostOpen",
            "QueryRemoveCancelled (methods work)",
            "Close (methods work)",
            "PreClose"
        ]
    );
    assert_eq!(target.open_count(), 0);
    // The same race ending in remove-complete.
    modules.prepare_hardware().unwrap();
    wait_open(&module);
    log.take();
    assert!(target.query_remove_pending());
    modules.release_hardware();
    target.surprise_remove();
    assert_eq!(
        log.take(),
        [
            "QueryRemove (methods work)",
            "PreClose",
            "QueryRemoveComplete (methods closed)"
        ]
    );
    modules.destroy();
    drop(module);
    assert!(log.take().is_empty());
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn destroy_during_a_pending_query_remove_deletes_the_target_without_callbacks() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let target = sensor();
    let log = Arc::new(Log::default());
    let module = create_module(&host, &log, streaming(&log, 2, Mode::Automatic), &no_veto());
    wait_open(&module);
    log.take();
    assert!(target.query_remove_pending());
    let live = sim::counters().live_objects;
    drop(module);
    assert_eq!(log.take(), ["QueryRemove (methods work)", "PreClose"]);
    assert!(sim::counters().live_objects < live, "the target is deleted");
    target.remove_canceled();
    assert!(
        log.take().is_empty(),
        "no callback after the module is gone"
    );
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn request_target_child_sends_and_cancels() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let target = sensor();
    target.set_responder(|r| {
        if r.ioctl == IOCTL + 1 {
            Response::Hold
        } else {
            Response::data(&[7, 7])
        }
    });
    let log = Arc::new(Log::default());
    let module = create_module(
        &host,
        &log,
        ContinuousRequestTargetConfig::default(),
        &no_veto(),
    );
    wait_open(&module);
    assert!(module.stream_child().is_none());
    assert_eq!(module.stream_start(), Err(NtStatus::INVALID_DEVICE_REQUEST));
    let mut output = [0u8; 2];
    assert_eq!(
        module.send_synchronously(&[1], &mut output, RequestType::Ioctl, IOCTL, 1000),
        Ok(2)
    );
    assert_eq!(output, [7, 7]);
    let (sender, receiver) = std::sync::mpsc::channel();
    let done = sender.clone();
    module
        .send(
            &[1],
            2,
            RequestType::Ioctl,
            IOCTL,
            0,
            Some(Box::new(move |result| {
                done.send((result.status, result.output.to_vec())).unwrap();
            })),
        )
        .unwrap();
    assert_eq!(
        receiver.recv_timeout(Duration::from_secs(5)).unwrap(),
        (NtStatus::SUCCESS, vec![7, 7])
    );
    let token = module
        .send_ex(
            &[],
            2,
            RequestType::Ioctl,
            IOCTL + 1,
            0,
            CompletionOption::Passive,
            Some(Box::new(move |result| {
                sender.send((result.status, Vec::new())).unwrap();
            })),
        )
        .unwrap();
    assert!(target.wait_held(1, Duration::from_secs(5)));
    assert!(module.cancel(token));
    assert_eq!(
        receiver.recv_timeout(Duration::from_secs(5)).unwrap().0,
        NtStatus::CANCELLED
    );
    // A request still out when the target goes is cancelled before the module closes.
    let (sender, receiver) = std::sync::mpsc::channel();
    module
        .send(
            &[],
            2,
            RequestType::Ioctl,
            IOCTL + 1,
            0,
            Some(Box::new(move |result| sender.send(result.status).unwrap())),
        )
        .unwrap();
    assert!(target.wait_held(1, Duration::from_secs(5)));
    target.set_cancel_policy(CancelPolicy::Honour);
    target.set_interface_enabled(false);
    assert_eq!(
        receiver.recv_timeout(Duration::from_secs(5)).unwrap(),
        NtStatus::CANCELLED
    );
    common::wait_until("closed", || !module.is_open());
    assert!(!module.cancel(token));
    assert_eq!(
        module.send(&[], 0, RequestType::Ioctl, IOCTL, 0, None),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    drop(module);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn manual_mode_client_that_forgets_to_stop_gets_no_crash() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let log = Arc::new(Log::default());
    let module = create_module(&host, &log, streaming(&log, 3, Mode::Manual), &no_veto());
    let target = sensor();
    wait_open(&module);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(
        log.completions.load(Ordering::SeqCst),
        0,
        "Manual: no stream"
    );
    module.stream_start().unwrap();
    wait_streamed(&log, 20);
    // The client never calls stream_stop: the module stops the streams itself.
    target.surprise_remove();
    let stream = module.stream_child().unwrap();
    assert_eq!(stream.live_streams(), 0);
    assert_eq!(stream.output_buffers_free(), Some(3));
    module.stream_stop();
    drop(module);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn methods_racing_removal_fail_with_invalid_device_state() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    let log = Arc::new(Log::default());
    let module = Arc::new(create_module(
        &host,
        &log,
        streaming(&log, 2, Mode::Automatic),
        &no_veto(),
    ));
    for round in 0..4 {
        let target = sensor();
        wait_open(&module);
        let stop = Arc::new(AtomicBool::new(false));
        let seen_closed = Arc::new(AtomicUsize::new(0));
        let caller = {
            let module = Arc::clone(&module);
            let stop = Arc::clone(&stop);
            let seen_closed = Arc::clone(&seen_closed);
            std::thread::spawn(move || {
                let mut closed = 0;
                while !stop.load(Ordering::SeqCst) {
                    let mut output = [0u8; 8];
                    match module.send_synchronously(&[], &mut output, RequestType::Ioctl, IOCTL, 0)
                    {
                        Ok(_) => {}
                        Err(NtStatus::INVALID_DEVICE_STATE) => {
                            closed += 1;
                            seen_closed.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(status) => assert!(
                            [
                                NtStatus::CANCELLED,
                                NtStatus::NO_SUCH_DEVICE,
                                NtStatus::DEVICE_NOT_CONNECTED
                            ]
                            .contains(&status)
                                || status.raw() == 0xC020_0206_u32.cast_signed(),
                            "{status:?}"
                        ),
                    }
                    match module.get() {
                        Ok(guard) => assert!(!guard.handle().is_null()),
                        Err(status) => assert_eq!(status, NtStatus::INVALID_DEVICE_STATE),
                    }
                    let _ = module.stream_start();
                }
                closed
            })
        };
        std::thread::sleep(Duration::from_millis(3));
        if round % 2 == 0 {
            target.surprise_remove();
        } else {
            assert!(target.query_remove());
        }
        common::wait_until("a call fails after the removal", || {
            seen_closed.load(Ordering::SeqCst) > 0
        });
        stop.store(true, Ordering::SeqCst);
        assert!(caller.join().unwrap() > 0, "calls after the removal failed");
        assert_eq!(module.get().err(), Some(NtStatus::INVALID_DEVICE_STATE));
        let mut output = [0u8; 1];
        assert_eq!(
            module.send_synchronously(&[], &mut output, RequestType::Ioctl, IOCTL, 0),
            Err(NtStatus::INVALID_DEVICE_STATE)
        );
    }
    drop(module);
    host.remove();
    driver.unload();
    session.end();
}

/// Allocation and object-creation failures at each step of an arrival: the arrival is dropped
/// (or succeeds when the failure hit something it can do without), nothing leaks, and a later
/// arrival works. The fault is armed when the arrival starts (in the `PnP` callback); the
/// child streams in Manual mode so the framework goes idle once the arrival is handled.
#[test]
fn allocation_failure_at_each_step_of_an_arrival_drops_it_cleanly() {
    let session = Session::begin();
    let (driver, host) = common::boot();
    for point in [FaultPoint::Allocation, FaultPoint::ObjectCreation] {
        let count = move || {
            let counters = sim::counters();
            match point {
                FaultPoint::Allocation => counters.allocations,
                _ => counters.objects_created,
            }
        };
        let mut dropped = 0;
        for nth in 1.. {
            assert!(nth < 200, "the sweep ends");
            let log = Arc::new(Log::default());
            let mut config = config(
                &log,
                PnpRegisterWhen::Create,
                streaming(&log, 2, Mode::Manual),
                &no_veto(),
            );
            let armed = Arc::new(Mutex::new(None));
            let arm = Arc::clone(&armed);
            config.on_pnp_notification = Some(Box::new(move |_, _| {
                let mut armed = arm.lock().unwrap();
                if armed.is_none() {
                    *armed = Some(count());
                    sim::fail_nth(point, nth, NtStatus::INSUFFICIENT_RESOURCES.raw());
                }
                true
            }));
            let module =
                DeviceInterfaceTarget::create(device(&host), config, attributes(&log, true))
                    .unwrap();
            session.wait_idle();
            let live = sim::counters().live_objects;
            let failing = ProgrammableTarget::with_interface(CLASS);
            session.wait_idle();
            let start = armed.lock().unwrap().expect("the arrival was offered");
            let hit = count() - start >= nth;
            sim::clear_faults();
            if module.is_open() {
                failing.surprise_remove();
            } else {
                dropped += 1;
                assert_eq!(
                    failing.open_count(),
                    0,
                    "#{nth}: the dropped arrival is closed"
                );
            }
            assert!(!module.is_open());
            assert_eq!(
                sim::counters().live_objects,
                live,
                "{point:?} #{nth}: the arrival left objects behind"
            );
            drop(failing);
            let later = sensor();
            wait_open(&module);
            module.stream_start().unwrap();
            wait_streamed(&log, 5);
            drop(module);
            drop(later);
            if !hit {
                break;
            }
        }
        eprintln!("{point:?}: {dropped} arrival(s) dropped by an injected failure");
        if point == FaultPoint::ObjectCreation {
            assert!(dropped > 0, "{point:?}: some arrival failed");
        }
    }
    host.remove();
    driver.unload();
    session.end();
}
