//! `NotifyUserWithRequest` driven from the simulation's user-mode side: a test driver whose
//! IOCTL handler parks requests in the module, user-mode threads issuing overlapped IOCTLs,
//! data arriving from the driver side, cancellation by the issuer, handle close, floods past
//! the limit, bad input, D0 transitions, teardown and removal with requests parked, and
//! allocation failures at creation.
#![cfg(not(windows))]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{
    Arc, Barrier, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, mpsc,
};
use std::time::Duration;

use dmf::core::ModuleAttributes;
use dmf::error::{ConfigError, ModuleError};
use dmf::modules::notify_user_with_request::{
    DataBuffer, DataCleanupCallback, NotifyUserWithRequest, NotifyUserWithRequestConfig,
    ParkedRequest,
};
use dmf::wdf::NtStatus;
use dmf::wdf::device::{Device, DeviceInit, IoType};
use dmf::wdf::device_handler::{DeviceHandler, create_device};
use dmf::wdf::driver::Driver;
use dmf::wdf::entry::{DriverCallbacks, IoQueueHandler, create_queue, performance_counter};
use dmf::wdf::irql::{DISPATCH_LEVEL, PASSIVE_LEVEL};
use dmf::wdf::queue::{DispatchType, Queue, QueueConfig, QueueRequest};
use wdk_sys::sim::pnp::{Device as SimDevice, Driver as SimDriver};
use wdk_sys::sim::user::{File, Overlapped};
use wdk_sys::sim::{self, FaultPoint, Session};
use wdk_sys::{GUID, NTSTATUS};

#[path = "common/fault_sweep.rs"]
mod fault_sweep;
#[path = "common/schedules.rs"]
mod schedules;

#[global_allocator]
static HEAP: wdk_sys::sim::heap::CountingAllocator = wdk_sys::sim::heap::CountingAllocator;

const CLASS: GUID = GUID {
    Data1: 0x4e55_5752,
    Data2: 0x0012,
    Data3: 0x0004,
    Data4: [1, 1, 2, 3, 5, 8, 13, 21],
};
/// Parks the request with `request_process` (pairs it with waiting data).
const IOCTL_WAIT: u32 = 0x22_2000;
/// Parks the request with `event_request_add` (no pairing).
const IOCTL_ADD: u32 = 0x22_2004;

/// The module under test, shared by the IOCTL handler and the test body.
static NOTIFY: RwLock<Option<NotifyUserWithRequest>> = RwLock::new(None);
/// Requests the IOCTL handler got back from the module and completed itself.
static REJECTED: AtomicUsize = AtomicUsize::new(0);

/// The device's `PnP` callbacks: `ReleaseHardware` closes the module, as a driver would.
struct TestDevice;

impl DeviceHandler for TestDevice {
    fn release_hardware(&self, _device: Device) -> Result<(), NtStatus> {
        uninstall();
        Ok(())
    }
}

/// The default queue: every IOCTL goes to the module; a rejected request is completed here.
struct Ioctls;

impl IoQueueHandler for Ioctls {
    fn device_control(
        &self,
        _queue: Queue,
        request: QueueRequest,
        ioctl: u32,
        _input_length: usize,
        _output_length: usize,
    ) {
        let guard = notify_slot();
        let Some(notify) = guard.as_ref() else {
            request.complete(NtStatus::INVALID_DEVICE_STATE);
            return;
        };
        let result = match ioctl {
            IOCTL_WAIT => notify.request_process(request),
            IOCTL_ADD => notify.event_request_add(request),
            _ => {
                request.complete(NtStatus::INVALID_DEVICE_REQUEST);
                return;
            }
        };
        if let Err(rejected) = result {
            REJECTED.fetch_add(1, Ordering::SeqCst);
            rejected.complete();
        }
    }
}

struct TestDriver;

impl DriverCallbacks for TestDriver {
    fn device_add(_driver: Driver, mut init: DeviceInit) -> Result<(), NtStatus> {
        init.set_io_type(IoType::Buffered);
        let pending = create_device::<TestDevice>(init)?;
        let device = pending.install(TestDevice)?;
        device.create_device_interface(&CLASS, None)?;
        // Not power-managed: IOCTLs reach the module in any power state.
        let mut config = QueueConfig::new(DispatchType::Parallel, true);
        config.power_managed = Some(false);
        create_queue(device, &config, false, Ioctls)?;
        Ok(())
    }
}

dmf::driver_entry!(TestDriver);

/// A session with the test driver loaded and one started device.
fn boot() -> (Session, SimDriver, SimDevice) {
    let session = Session::begin();
    REJECTED.store(0, Ordering::SeqCst);
    // A test that failed may have left its module: its objects are gone with its session.
    std::mem::forget(notify_slot_mut().take());
    let driver = SimDriver::load(driver_entry).expect("driver loads");
    let device = driver.add_device().expect("device added");
    device.start().expect("device starts");
    (session, driver, device)
}

fn finish(session: Session, driver: SimDriver, device: SimDevice) {
    device.remove();
    driver.unload();
    assert!(notify_slot().is_none());
    session.end();
}

fn create(
    device: &SimDevice,
    config: NotifyUserWithRequestConfig,
) -> Result<NotifyUserWithRequest, ModuleError> {
    NotifyUserWithRequest::create(
        Device::from_raw(device.handle()),
        config,
        ModuleAttributes::new(),
    )
}

fn install(device: &SimDevice, config: NotifyUserWithRequestConfig) {
    let module = create(device, config).expect("module created");
    set_module(module);
}

fn notify_slot() -> RwLockReadGuard<'static, Option<NotifyUserWithRequest>> {
    NOTIFY.read().unwrap_or_else(PoisonError::into_inner)
}

fn notify_slot_mut() -> RwLockWriteGuard<'static, Option<NotifyUserWithRequest>> {
    NOTIFY.write().unwrap_or_else(PoisonError::into_inner)
}

fn set_module(module: NotifyUserWithRequest) {
    *notify_slot_mut() = Some(module);
}

/// A `DeviceIoControl` expected to complete before it returns to its issuer (refused, or paired
/// with waiting data): the result and the output. One that parks fails the test (and is
/// cancelled) instead of hanging it.
fn call(file: &File, ioctl: u32, output: usize) -> (Result<usize, NTSTATUS>, Vec<u8>) {
    let operation = file.device_io_control_overlapped(ioctl, &[], output);
    assert!(operation.is_complete(), "completed inline, not parked");
    let (status, information) = done(&operation);
    let result = if status < 0 {
        Err(status)
    } else {
        Ok(information)
    };
    (
        result,
        operation.output()[..information.min(output)].to_vec(),
    )
}

/// Closes the module (dropping it outside the lock).
fn uninstall() {
    let module = notify_slot_mut().take();
    drop(module);
}

fn with<R>(f: impl FnOnce(&NotifyUserWithRequest) -> R) -> R {
    f(notify_slot().as_ref().expect("module installed"))
}

fn config(requests: usize, buffers: usize, size: usize) -> NotifyUserWithRequestConfig {
    NotifyUserWithRequestConfig {
        maximum_number_of_pending_requests: requests,
        maximum_number_of_pending_data_buffers: buffers,
        size_of_data_buffer: size,
        ..NotifyUserWithRequestConfig::default()
    }
}

fn data(value: u32) {
    with(|n| n.data_process(&value.to_le_bytes(), NtStatus::SUCCESS)).expect("data stored");
}

fn done(operation: &Overlapped) -> (NTSTATUS, usize) {
    operation
        .wait(Duration::from_secs(10))
        .expect("the request completes")
}

/// The `u32` a completed request returned.
fn value(operation: &Overlapped) -> u32 {
    let (status, information) = done(operation);
    assert_eq!(status, NtStatus::SUCCESS.raw());
    assert_eq!(information, 4);
    u32::from_le_bytes(operation.output()[..4].try_into().unwrap())
}

fn status_of(operation: &Overlapped) -> NtStatus {
    NtStatus::from_raw(done(operation).0)
}

fn park(file: &File, ioctl: u32, output: usize) -> Overlapped {
    let operation = file.device_io_control_overlapped(ioctl, &[], output);
    assert!(!operation.is_complete(), "the request is parked");
    operation
}

fn as_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    let n = bytes.len().min(4);
    word[..n].copy_from_slice(&bytes[..n]);
    u32::from_le_bytes(word)
}

/// A cleanup callback recording each item it sees.
fn recorder(log: &Arc<Mutex<Vec<u32>>>) -> DataCleanupCallback {
    let log = Arc::clone(log);
    Box::new(move |bytes: &mut [u8]| log.lock().unwrap().push(as_u32(bytes)))
}

/// Installs the module with `config` and a data cleanup that records into `cleaned`.
fn install_recording(
    device: &SimDevice,
    cleaned: &Arc<Mutex<Vec<u32>>>,
    config: NotifyUserWithRequestConfig,
) {
    install(
        device,
        NotifyUserWithRequestConfig {
            data_cleanup: Some(recorder(cleaned)),
            ..config
        },
    );
}

#[test]
fn invalid_configurations_are_typed_errors_and_create_nothing() {
    let (session, driver, device) = boot();
    let live = sim::counters().live_objects;
    let zero = create(&device, config(0, 4, 4)).unwrap_err();
    assert_eq!(zero, ModuleError::Config(ConfigError::NoPendingRequests));
    assert_eq!(zero.status(), NtStatus::INVALID_PARAMETER);
    let cases: Vec<NotifyUserWithRequestConfig> = vec![
        config(4, 0, 8),
        NotifyUserWithRequestConfig {
            enable_look_aside: true,
            ..config(4, 0, 0)
        },
        NotifyUserWithRequestConfig {
            data_cleanup: Some(Box::new(|_| {})),
            ..config(4, 0, 0)
        },
        NotifyUserWithRequestConfig {
            data_complete: Some(Box::new(|request, _| drop(request))),
            ..config(4, 0, 0)
        },
    ];
    for case in cases {
        assert_eq!(
            create(&device, case).unwrap_err(),
            ModuleError::Config(ConfigError::DataSettingsWithoutDataBuffers)
        );
    }
    assert_eq!(sim::counters().live_objects, live, "nothing was created");
    // Valid: requests only; data items of zero bytes (status only).
    drop(create(&device, config(1, 0, 0)).unwrap());
    drop(create(&device, config(1, 1, 0)).unwrap());
    assert_eq!(sim::counters().live_objects, live);
    finish(session, driver, device);
}

#[test]
fn data_and_requests_pair_first_in_first_out() {
    let (session, driver, device) = boot();
    install(&device, config(8, 4, 4));
    let file = File::open_interface(&CLASS).unwrap();
    let first = park(&file, IOCTL_WAIT, 4);
    let second = park(&file, IOCTL_WAIT, 4);
    let third = park(&file, IOCTL_WAIT, 4);
    assert_eq!(with(|n| n.pending_request_count()), 3);
    data(1);
    assert!(first.is_complete() && !second.is_complete() && !third.is_complete());
    data(2);
    data(3);
    assert_eq!([value(&first), value(&second), value(&third)], [1, 2, 3]);
    assert_eq!(with(|n| n.pending_request_count()), 0);
    // Data with nobody waiting is kept and goes to the next requests, oldest first, before
    // the IOCTL returns to its issuer.
    data(4);
    data(5);
    assert_eq!(with(|n| n.pending_data_count()), 2);
    let fourth = file.device_io_control_overlapped(IOCTL_WAIT, &[], 4);
    assert!(fourth.is_complete());
    let fifth = file.device_io_control_overlapped(IOCTL_WAIT, &[], 4);
    assert_eq!([value(&fourth), value(&fifth)], [4, 5]);
    // The item's status reaches the issuer; a longer output buffer gets just the item.
    let sixth = park(&file, IOCTL_WAIT, 16);
    with(|n| n.data_process(&6u32.to_le_bytes(), NtStatus::DEVICE_NOT_READY)).unwrap();
    assert_eq!(done(&sixth), (NtStatus::DEVICE_NOT_READY.raw(), 4));
    assert_eq!(&sixth.output()[..4], &6u32.to_le_bytes());
    assert_eq!(REJECTED.load(Ordering::SeqCst), 0);
    assert_eq!(
        with(|n| (n.pending_request_count(), n.pending_data_count())),
        (0, 0)
    );
    drop(file);
    uninstall();
    finish(session, driver, device);
}

#[test]
fn event_request_add_parks_without_pairing_and_the_next_data_pairs_oldest_first() {
    let (session, driver, device) = boot();
    install(&device, config(8, 4, 4));
    let file = File::open_interface(&CLASS).unwrap();
    data(1);
    let added = park(&file, IOCTL_ADD, 4);
    assert_eq!(
        with(|n| (n.pending_request_count(), n.pending_data_count())),
        (1, 1)
    );
    // The next item pairs: the request gets the oldest item, the new one waits.
    data(2);
    assert_eq!(value(&added), 1);
    assert_eq!(
        with(|n| (n.pending_request_count(), n.pending_data_count())),
        (0, 1)
    );
    let next = file.device_io_control_overlapped(IOCTL_WAIT, &[], 4);
    assert_eq!(value(&next), 2);
    drop(file);
    uninstall();
    finish(session, driver, device);
}

#[test]
fn the_oldest_data_is_dropped_with_its_cleanup_and_every_item_is_cleaned_once() {
    let (session, driver, device) = boot();
    let cleaned = Arc::new(Mutex::new(Vec::new()));
    install_recording(&device, &cleaned, config(8, 3, 4));
    for item in 1..=5 {
        data(item);
    }
    assert_eq!(with(|n| n.pending_data_count()), 3);
    assert_eq!(
        *cleaned.lock().unwrap(),
        [1, 2],
        "the two oldest were dropped"
    );
    let file = File::open_interface(&CLASS).unwrap();
    let received: Vec<u32> = (0..3)
        .map(|_| value(&file.device_io_control_overlapped(IOCTL_WAIT, &[], 4)))
        .collect();
    assert_eq!(received, [3, 4, 5]);
    assert_eq!(*cleaned.lock().unwrap(), [1, 2, 3, 4, 5]);
    // Left at close: cleaned then.
    data(6);
    data(7);
    drop(file);
    uninstall();
    assert_eq!(*cleaned.lock().unwrap(), [1, 2, 3, 4, 5, 6, 7]);
    finish(session, driver, device);
}

#[test]
fn look_aside_keeps_every_item() {
    let (session, driver, device) = boot();
    let cleaned = Arc::new(Mutex::new(Vec::new()));
    install(
        &device,
        NotifyUserWithRequestConfig {
            enable_look_aside: true,
            data_cleanup: Some(recorder(&cleaned)),
            ..config(8, 2, 4)
        },
    );
    for item in 1..=6 {
        data(item);
    }
    assert_eq!(with(|n| n.pending_data_count()), 6);
    assert!(cleaned.lock().unwrap().is_empty());
    let file = File::open_interface(&CLASS).unwrap();
    let received: Vec<u32> = (0..6)
        .map(|_| value(&file.device_io_control_overlapped(IOCTL_WAIT, &[], 4)))
        .collect();
    assert_eq!(received, [1, 2, 3, 4, 5, 6]);
    assert_eq!(*cleaned.lock().unwrap(), [1, 2, 3, 4, 5, 6]);
    drop(file);
    uninstall();
    finish(session, driver, device);
}

#[test]
fn a_flood_past_the_limit_is_rejected_with_invalid_device_state_and_nothing_hangs() {
    const THREADS: usize = 8;
    const EACH: usize = 100;
    let (session, driver, device) = boot();
    install(&device, config(4, 4, 4));
    let file = Arc::new(File::open_interface(&CLASS).unwrap());
    let parked: Vec<Overlapped> = (0..4).map(|_| park(&file, IOCTL_WAIT, 4)).collect();
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let file = Arc::clone(&file);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let mut statuses = Vec::new();
                for i in 0..EACH {
                    let ioctl = if (t + i) % 2 == 0 {
                        IOCTL_WAIT
                    } else {
                        IOCTL_ADD
                    };
                    // Another issuer's thread may be the one presenting this request (it
                    // completes there), so wait briefly instead of expecting it inline.
                    let operation = file.device_io_control_overlapped(ioctl, &[], 4);
                    let result = operation.wait(Duration::from_secs(2));
                    assert!(result.is_some(), "a request past the limit was parked");
                    statuses.push(result.map(|(status, _)| status));
                }
                statuses
            })
        })
        .collect();
    for thread in threads {
        let statuses = thread.join().unwrap();
        assert!(
            statuses
                .iter()
                .all(|s| *s == Some(NtStatus::INVALID_DEVICE_STATE.raw())),
            "every request past the limit is refused at once"
        );
    }
    assert_eq!(REJECTED.load(Ordering::SeqCst), THREADS * EACH);
    assert_eq!(with(|n| n.pending_request_count()), 4);
    assert!(parked.iter().all(|p| !p.is_complete()));
    // The parked ones are untouched by the flood and come back in order.
    let mut order = 0u32;
    let returned = with(|n| {
        n.request_return_all(NtStatus::SUCCESS, |mut request: ParkedRequest| {
            request
                .output_buffer(4)
                .unwrap()
                .copy_from_slice(&order.to_le_bytes());
            order += 1;
            request.complete_with_information(NtStatus::SUCCESS, 4);
        })
    });
    assert_eq!(returned, 4);
    let values: Vec<u32> = parked.iter().map(value).collect();
    assert_eq!(values, [0, 1, 2, 3]);
    // Room again: a new request parks.
    let again = park(&file, IOCTL_WAIT, 4);
    data(9);
    assert_eq!(value(&again), 9);
    drop(file);
    uninstall();
    finish(session, driver, device);
}

#[test]
fn concurrent_issuers_producers_and_cancels_lose_nothing() {
    const ISSUERS: usize = 4;
    const EACH: usize = 150;
    const BATCH: usize = 5;
    let (session, driver, device) = boot();
    let cleaned = Arc::new(Mutex::new(Vec::new()));
    install_recording(&device, &cleaned, config(6, 8, 4));
    // The producer stores items (from a DPC) until every issuer is done.
    let issuing = Arc::new(AtomicBool::new(true));
    let producer = {
        let issuing = Arc::clone(&issuing);
        std::thread::spawn(move || {
            let mut produced = 0u32;
            while issuing.load(Ordering::SeqCst) {
                produced += 1;
                sim::at_irql(DISPATCH_LEVEL, || data(produced));
                if produced.is_multiple_of(8) {
                    std::thread::sleep(Duration::from_micros(50));
                } else {
                    std::thread::yield_now();
                }
            }
            produced
        })
    };
    let issuers: Vec<_> = (0..ISSUERS)
        .map(|t| {
            std::thread::spawn(move || {
                let file = File::open_interface(&CLASS).unwrap();
                let mut results = Vec::new();
                let mut batch = Vec::new();
                for i in 0..EACH {
                    let operation = file.device_io_control_overlapped(IOCTL_WAIT, &[], 4);
                    if (t + i) % 7 == 0 {
                        let _ = operation.cancel();
                    }
                    batch.push(operation);
                    if batch.len() == BATCH {
                        results.extend(batch.drain(..).map(|operation| finished(&operation)));
                    }
                }
                assert!(batch.is_empty());
                results
            })
        })
        .collect();
    let mut results = Vec::new();
    for issuer in issuers {
        results.extend(issuer.join().unwrap());
    }
    issuing.store(false, Ordering::SeqCst);
    let item_count = producer.join().unwrap();
    assert_eq!(results.len(), ISSUERS * EACH, "every request completed");
    assert_eq!(with(|n| n.pending_request_count()), 0);
    uninstall();
    let mut delivered = Vec::new();
    let mut rejected = 0;
    let mut cancelled = 0;
    for result in &results {
        match *result {
            Outcome::Data(item) => delivered.push(item),
            Outcome::Status(status) if status == NtStatus::INVALID_DEVICE_STATE => rejected += 1,
            Outcome::Status(status) => {
                assert_eq!(status, NtStatus::CANCELLED);
                cancelled += 1;
            }
        }
    }
    assert_eq!(rejected, REJECTED.load(Ordering::SeqCst));
    assert!(!delivered.is_empty() && cancelled > 0);
    let mut unique = delivered.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), delivered.len(), "no item was delivered twice");
    assert!(delivered.iter().all(|item| (1..=item_count).contains(item)));
    // Every item stored was let go exactly once: delivered, dropped as the oldest, or at close.
    let mut cleaned = cleaned.lock().unwrap().clone();
    cleaned.sort_unstable();
    assert_eq!(cleaned, (1..=item_count).collect::<Vec<_>>());
    finish(session, driver, device);
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Data(u32),
    Status(NtStatus),
}

fn finished(operation: &Overlapped) -> Outcome {
    let (status, information) = done(operation);
    if status == NtStatus::SUCCESS.raw() {
        assert_eq!(information, 4);
        Outcome::Data(u32::from_le_bytes(
            operation.output()[..4].try_into().unwrap(),
        ))
    } else {
        assert_eq!(information, 0);
        Outcome::Status(NtStatus::from_raw(status))
    }
}

#[test]
fn a_request_cancelled_by_its_issuer_completes_cancelled_and_leaves_the_count_right() {
    let (session, driver, device) = boot();
    install(&device, config(3, 4, 4));
    let file = File::open_interface(&CLASS).unwrap();
    let first = park(&file, IOCTL_WAIT, 4);
    let second = park(&file, IOCTL_ADD, 4);
    let third = park(&file, IOCTL_WAIT, 4);
    assert_eq!(with(|n| n.pending_request_count()), 3);
    assert!(second.cancel(), "CancelIoEx found it pending");
    assert_eq!(done(&second), (NtStatus::CANCELLED.raw(), 0));
    assert_eq!(with(|n| n.pending_request_count()), 2);
    // The freed slot can be used again (the limit is 3).
    let fourth = park(&file, IOCTL_WAIT, 4);
    assert!(!first.is_complete() && !third.is_complete());
    for item in [1, 2, 3] {
        data(item);
    }
    assert_eq!([value(&first), value(&third), value(&fourth)], [1, 2, 3]);
    assert!(
        !second.cancel(),
        "a completed request is not cancelled again"
    );
    assert_eq!(
        with(|n| (n.pending_request_count(), n.pending_data_count())),
        (0, 0)
    );
    drop(file);
    uninstall();
    finish(session, driver, device);
}

#[test]
fn the_cancel_callback_receives_each_cancelled_request_once() {
    let (session, driver, device) = boot();
    let cancelled = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&cancelled);
    install(
        &device,
        NotifyUserWithRequestConfig {
            pending_requests_cancel: Some(Box::new(move |request: ParkedRequest| {
                seen.lock()
                    .unwrap()
                    .push((request.status(), dmf::wdf::irql::current()));
                // The client chooses what the issuer sees.
                request.complete(NtStatus::REQUEST_NOT_ACCEPTED);
            })),
            ..config(4, 0, 0)
        },
    );
    let file = File::open_interface(&CLASS).unwrap();
    let kept = park(&file, IOCTL_ADD, 0);
    let cancelled_one = park(&file, IOCTL_ADD, 0);
    assert!(cancelled_one.cancel());
    assert_eq!(
        status_of(&cancelled_one),
        NtStatus::REQUEST_NOT_ACCEPTED,
        "completed by the client's callback"
    );
    assert_eq!(
        *cancelled.lock().unwrap(),
        [(NtStatus::CANCELLED, PASSIVE_LEVEL)]
    );
    assert_eq!(with(|n| n.pending_request_count()), 1);
    // Close completes the rest with STATUS_CANCELLED, without the callback.
    uninstall();
    assert_eq!(status_of(&kept), NtStatus::CANCELLED);
    assert_eq!(cancelled.lock().unwrap().len(), 1);
    drop(file);
    finish(session, driver, device);
}

#[test]
fn closing_the_handle_cancels_only_its_own_parked_requests() {
    let (session, driver, device) = boot();
    install(&device, config(8, 2, 4));
    let closing = File::open_interface(&CLASS).unwrap();
    let staying = File::open_interface(&CLASS).unwrap();
    let doomed: Vec<Overlapped> = (0..3).map(|_| park(&closing, IOCTL_WAIT, 4)).collect();
    let waiting: Vec<Overlapped> = (0..2).map(|_| park(&staying, IOCTL_WAIT, 4)).collect();
    assert_eq!(with(|n| n.pending_request_count()), 5);
    drop(closing);
    for operation in &doomed {
        assert_eq!(done(operation), (NtStatus::CANCELLED.raw(), 0));
    }
    assert_eq!(with(|n| n.pending_request_count()), 2);
    data(10);
    data(11);
    assert_eq!([value(&waiting[0]), value(&waiting[1])], [10, 11]);
    assert_eq!(with(|n| n.pending_request_count()), 0);
    drop(staying);
    uninstall();
    finish(session, driver, device);
}

#[test]
fn an_output_buffer_too_small_for_the_data_is_refused_and_nothing_is_lost() {
    let (session, driver, device) = boot();
    let cleaned = Arc::new(Mutex::new(Vec::new()));
    install_recording(&device, &cleaned, config(4, 4, 8));
    let file = File::open_interface(&CLASS).unwrap();
    with(|n| n.data_process(&[1, 2, 3, 4, 5, 6, 7, 8], NtStatus::SUCCESS)).unwrap();
    for (ioctl, length) in [(IOCTL_WAIT, 4), (IOCTL_ADD, 7), (IOCTL_WAIT, 0)] {
        assert_eq!(
            call(&file, ioctl, length).0,
            Err(NtStatus::BUFFER_TOO_SMALL.raw())
        );
    }
    assert_eq!(REJECTED.load(Ordering::SeqCst), 3);
    assert_eq!(
        with(|n| (n.pending_request_count(), n.pending_data_count())),
        (0, 1)
    );
    assert!(
        cleaned.lock().unwrap().is_empty(),
        "the item is still there"
    );
    // An item larger than the buffers is refused and not stored.
    assert_eq!(
        with(|n| n.data_process(&[0; 9], NtStatus::SUCCESS)),
        Err(NtStatus::BUFFER_TOO_SMALL)
    );
    assert_eq!(with(|n| n.pending_data_count()), 1);
    // A request that fits gets the item; a shorter item returns its own length.
    assert_eq!(
        call(&file, IOCTL_WAIT, 8),
        (Ok(8), vec![1, 2, 3, 4, 5, 6, 7, 8])
    );
    with(|n| n.data_process(&[9, 9], NtStatus::SUCCESS)).unwrap();
    assert_eq!(call(&file, IOCTL_WAIT, 12), (Ok(2), vec![9, 9]));
    assert_eq!(cleaned.lock().unwrap().len(), 2);
    drop(file);
    uninstall();
    finish(session, driver, device);
}

#[test]
fn request_return_variants_and_their_statuses() {
    let (session, driver, device) = boot();
    install(&device, config(4, 0, 0));
    let file = File::open_interface(&CLASS).unwrap();
    let nothing = with(|n| n.request_return_ex(NtStatus::SUCCESS, |_| panic!("no request")));
    assert_eq!(nothing, Err(NtStatus::UNSUCCESSFUL));
    let first = park(&file, IOCTL_ADD, 4);
    let second = park(&file, IOCTL_ADD, 4);
    let returned = with(|n| {
        n.request_return_ex(NtStatus::SUCCESS, |mut request| {
            assert_eq!(request.status(), NtStatus::SUCCESS);
            request
                .output_buffer(4)
                .unwrap()
                .copy_from_slice(&[4, 3, 2, 1]);
            let status = request.status();
            request.complete_with_information(status, 4);
        })
    });
    assert_eq!(returned, Ok(()));
    assert_eq!(done(&first), (NtStatus::SUCCESS.raw(), 4));
    assert_eq!(first.output(), [4, 3, 2, 1]);
    assert!(!second.is_complete(), "one request per call");
    // `drop` completes with the method's status and no data (DMF's NULL callback).
    with(|n| n.request_return(NtStatus::DEVICE_NOT_READY, drop));
    assert_eq!(done(&second), (NtStatus::DEVICE_NOT_READY.raw(), 0));
    with(|n| n.request_return(NtStatus::SUCCESS, |_| panic!("no request")));
    assert_eq!(
        with(|n| n.request_return_ex(NtStatus::SUCCESS, drop)),
        Err(NtStatus::UNSUCCESSFUL)
    );
    assert_eq!(with(|n| n.request_return_all(NtStatus::SUCCESS, drop)), 0);
    let all: Vec<Overlapped> = (0..3).map(|_| park(&file, IOCTL_WAIT, 4)).collect();
    let returned = with(|n| n.request_return_all(NtStatus::TIMEOUT, drop));
    assert_eq!(returned, 3);
    for operation in &all {
        assert_eq!(done(operation), (NtStatus::TIMEOUT.raw(), 0));
    }
    // No data buffers: data_process is refused.
    assert_eq!(
        with(|n| n.data_process(&[], NtStatus::SUCCESS)),
        Err(NtStatus::INVALID_DEVICE_REQUEST)
    );
    assert_eq!(with(|n| n.pending_request_count()), 0);
    drop(file);
    uninstall();
    finish(session, driver, device);
}

#[test]
fn a_module_that_is_not_open_refuses_everything() {
    let (session, driver, device) = boot();
    // A static module opens when its collection is told the device exists; until then, and
    // with nothing parked, every method refuses.
    let module = NotifyUserWithRequest::create(
        Device::from_raw(device.handle()),
        config(4, 2, 4),
        ModuleAttributes::static_module(),
    )
    .unwrap();
    set_module(module);
    let file = File::open_interface(&CLASS).unwrap();
    assert_eq!(
        call(&file, IOCTL_WAIT, 4).0,
        Err(NtStatus::INVALID_DEVICE_STATE.raw())
    );
    assert_eq!(
        with(|n| n.data_process(&[1], NtStatus::SUCCESS)),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(
        with(|n| n.request_return_ex(NtStatus::SUCCESS, drop)),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    assert_eq!(with(|n| n.request_return_all(NtStatus::SUCCESS, drop)), 0);
    drop(file);
    uninstall();
    finish(session, driver, device);
}

#[test]
fn time_stamps_record_when_requests_and_data_arrived() {
    let (session, driver, device) = boot();
    let stamps = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&stamps);
    install(
        &device,
        NotifyUserWithRequestConfig {
            time_stamping: true,
            data_complete: Some(Box::new(
                move |request: ParkedRequest, item: &DataBuffer| {
                    seen.lock()
                        .unwrap()
                        .push((request.timestamp(), item.timestamp()));
                    let _ = request.complete_with_data(item.data(), item.status());
                },
            )),
            ..config(3, 2, 4)
        },
    );
    let file = File::open_interface(&CLASS).unwrap();
    let before = performance_counter();
    let first = park(&file, IOCTL_WAIT, 4);
    std::thread::sleep(Duration::from_millis(2));
    let middle = park(&file, IOCTL_WAIT, 4);
    std::thread::sleep(Duration::from_millis(2));
    let last = park(&file, IOCTL_WAIT, 4);
    std::thread::sleep(Duration::from_millis(2));
    assert!(middle.cancel());
    assert_eq!(status_of(&middle), NtStatus::CANCELLED);
    let between = performance_counter();
    data(1);
    assert_eq!(value(&first), 1);
    // Returned with the module's getter.
    let mut returned = None;
    with(|n| {
        n.request_return(NtStatus::SUCCESS, |request| {
            returned = n.request_timestamp_get(&request);
        });
    });
    assert_eq!(status_of(&last), NtStatus::SUCCESS);
    let after = performance_counter();
    let (request_stamp, data_stamp) = stamps.lock().unwrap()[0];
    let (request_stamp, data_stamp) = (request_stamp.unwrap(), data_stamp.unwrap());
    let last_stamp = returned.expect("stamped");
    assert!(before <= request_stamp && request_stamp < last_stamp && last_stamp < between);
    assert!(between <= data_stamp && data_stamp <= after);
    // The stamp slots are reused: fill the limit twice over, each request is stamped.
    for _ in 0..2 {
        let batch: Vec<Overlapped> = (0..3).map(|_| park(&file, IOCTL_ADD, 4)).collect();
        let mut stamped = 0;
        with(|n| {
            n.request_return_all(NtStatus::SUCCESS, |request| {
                stamped += usize::from(n.request_timestamp_get(&request).is_some());
            });
        });
        assert_eq!(stamped, 3);
        for operation in &batch {
            assert_eq!(status_of(operation), NtStatus::SUCCESS);
        }
    }
    drop(file);
    uninstall();
    // Without time stamping there are none.
    install(&device, config(1, 0, 0));
    let file = File::open_interface(&CLASS).unwrap();
    let plain = park(&file, IOCTL_ADD, 0);
    with(|n| {
        n.request_return(NtStatus::SUCCESS, |request| {
            assert_eq!(request.timestamp(), None);
            assert_eq!(n.request_timestamp_get(&request), None);
        });
    });
    assert_eq!(status_of(&plain), NtStatus::SUCCESS);
    drop(file);
    uninstall();
    finish(session, driver, device);
}

#[test]
fn parked_requests_survive_d0_exit_and_entry() {
    let (session, driver, device) = boot();
    install(&device, config(8, 4, 4));
    let file = File::open_interface(&CLASS).unwrap();
    let parked: Vec<Overlapped> = (0..3).map(|_| park(&file, IOCTL_WAIT, 4)).collect();
    device.power_down();
    assert!(
        parked.iter().all(|p| !p.is_complete()),
        "D0Exit leaves them parked"
    );
    assert_eq!(with(|n| n.pending_request_count()), 3);
    // The queue is not power-managed: data is delivered and requests park in D3 too.
    data(1);
    assert_eq!(value(&parked[0]), 1);
    let in_d3 = park(&file, IOCTL_WAIT, 4);
    device.power_up().unwrap();
    assert!(!parked[1].is_complete() && !parked[2].is_complete() && !in_d3.is_complete());
    assert_eq!(with(|n| n.pending_request_count()), 3);
    for item in [2, 3, 4] {
        data(item);
    }
    assert_eq!(
        [value(&parked[1]), value(&parked[2]), value(&in_d3)],
        [2, 3, 4]
    );
    drop(file);
    uninstall();
    finish(session, driver, device);
}

#[test]
fn closing_with_requests_parked_completes_them_cancelled_and_cleans_the_data() {
    let (session, driver, device) = boot();
    let cleaned = Arc::new(Mutex::new(Vec::new()));
    install_recording(
        &device,
        &cleaned,
        NotifyUserWithRequestConfig {
            time_stamping: true,
            ..config(8, 4, 4)
        },
    );
    let a = File::open_interface(&CLASS).unwrap();
    let b = File::open_interface(&CLASS).unwrap();
    let parked: Vec<Overlapped> = (0..5)
        .map(|i| park(if i % 2 == 0 { &a } else { &b }, IOCTL_ADD, 4))
        .collect();
    assert_eq!(with(|n| n.pending_request_count()), 5);
    uninstall();
    for operation in &parked {
        assert_eq!(done(operation), (NtStatus::CANCELLED.raw(), 0));
    }
    // Requests arriving after close are refused by the driver (no module any more).
    assert_eq!(
        call(&a, IOCTL_WAIT, 4).0,
        Err(NtStatus::INVALID_DEVICE_STATE.raw())
    );
    // Data left at close is cleaned.
    install_recording(&device, &cleaned, config(8, 4, 4));
    data(1);
    data(2);
    uninstall();
    assert_eq!(*cleaned.lock().unwrap(), [1, 2]);
    drop((a, b));
    finish(session, driver, device);
}

#[test]
fn device_removal_with_requests_parked_closes_the_module_in_release_hardware() {
    let (session, driver, device) = boot();
    install(&device, config(8, 4, 4));
    let file = File::open_interface(&CLASS).unwrap();
    let parked: Vec<Overlapped> = (0..4).map(|_| park(&file, IOCTL_WAIT, 4)).collect();
    data(5);
    assert_eq!(value(&parked[0]), 5);
    // Session end checks that nothing leaked and that the verifier saw nothing.
    device.remove();
    for operation in &parked[1..] {
        assert_eq!(done(operation), (NtStatus::CANCELLED.raw(), 0));
    }
    assert!(notify_slot().is_none(), "ReleaseHardware closed it");
    drop(file);
    driver.unload();
    session.end();
}

/// Set when the cancel callback of `a_cancel_in_progress_while_the_module_closes` is freed.
static CALLBACK_FREED: AtomicBool = AtomicBool::new(false);

/// Owned by that callback: records when it is dropped.
struct FreedFlag;

impl Drop for FreedFlag {
    fn drop(&mut self) {
        CALLBACK_FREED.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_cancel_in_progress_while_the_module_closes() {
    let (session, driver, device) = boot();
    let (completed_tx, completed) = mpsc::channel();
    let (closed, closed_rx) = mpsc::channel::<()>();
    let closed_rx = Mutex::new(closed_rx);
    let after_close = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&after_close);
    CALLBACK_FREED.store(false, Ordering::SeqCst);
    let freed = FreedFlag;
    install(
        &device,
        NotifyUserWithRequestConfig {
            pending_requests_cancel: Some(Box::new(move |request: ParkedRequest| {
                let _owned_by_the_callback = &freed;
                request.complete(NtStatus::CANCELLED);
                completed_tx.send(()).unwrap();
                // Still running while the module closes and its queue is deleted.
                if closed_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(10))
                    .is_ok()
                {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            })),
            ..config(4, 0, 0)
        },
    );
    let file = File::open_interface(&CLASS).unwrap();
    let cancelled = park(&file, IOCTL_ADD, 0);
    let other = park(&file, IOCTL_ADD, 0);
    let cancelling = std::thread::spawn(move || {
        assert!(cancelled.cancel());
        cancelled
    });
    completed
        .recv_timeout(Duration::from_secs(10))
        .expect("the cancel callback ran");
    uninstall();
    // The module is closed and its queue deleted, but the queue (and the callback's state it
    // owns) lives until the running callback returns.
    assert!(
        !CALLBACK_FREED.load(Ordering::SeqCst),
        "freed under a running callback"
    );
    closed.send(()).unwrap();
    let cancelled = cancelling.join().unwrap();
    assert!(
        CALLBACK_FREED.load(Ordering::SeqCst),
        "freed once it returned"
    );
    assert_eq!(after_close.load(Ordering::SeqCst), 1);
    assert_eq!(status_of(&cancelled), NtStatus::CANCELLED);
    assert_eq!(status_of(&other), NtStatus::CANCELLED);
    drop(file);
    finish(session, driver, device);
}

#[test]
fn methods_work_at_dispatch_level_and_callbacks_run_at_the_callers_irql() {
    let (session, driver, device) = boot();
    let levels = Arc::new(Mutex::new(Vec::new()));
    let (seen, cleaned) = (Arc::clone(&levels), Arc::clone(&levels));
    install(
        &device,
        NotifyUserWithRequestConfig {
            data_complete: Some(Box::new(
                move |request: ParkedRequest, item: &DataBuffer| {
                    seen.lock()
                        .unwrap()
                        .push(("data", dmf::wdf::irql::current()));
                    let _ = request.complete_with_data(item.data(), item.status());
                },
            )),
            data_cleanup: Some(Box::new(move |_| {
                cleaned
                    .lock()
                    .unwrap()
                    .push(("cleanup", dmf::wdf::irql::current()));
            })),
            ..config(4, 2, 4)
        },
    );
    let file = File::open_interface(&CLASS).unwrap();
    let first = park(&file, IOCTL_WAIT, 4);
    let second = park(&file, IOCTL_WAIT, 4);
    sim::at_irql(DISPATCH_LEVEL, || data(1));
    assert_eq!(value(&first), 1);
    sim::at_irql(DISPATCH_LEVEL, || {
        with(|n| {
            n.request_return(NtStatus::SUCCESS, |request| {
                levels
                    .lock()
                    .unwrap()
                    .push(("return", dmf::wdf::irql::current()));
                drop(request);
            });
        });
    });
    assert_eq!(status_of(&second), NtStatus::SUCCESS);
    // Data stored from a DPC, paired by a request at PASSIVE_LEVEL.
    sim::at_irql(DISPATCH_LEVEL, || data(2));
    assert_eq!(
        value(&file.device_io_control_overlapped(IOCTL_WAIT, &[], 4)),
        2
    );
    assert_eq!(
        *levels.lock().unwrap(),
        [
            ("data", DISPATCH_LEVEL),
            ("cleanup", DISPATCH_LEVEL),
            ("return", DISPATCH_LEVEL),
            ("data", PASSIVE_LEVEL),
            ("cleanup", PASSIVE_LEVEL),
        ]
    );
    drop(file);
    uninstall();
    finish(session, driver, device);
}

#[test]
fn a_passive_level_module_parks_and_delivers() {
    let (session, driver, device) = boot();
    let module = NotifyUserWithRequest::create(
        Device::from_raw(device.handle()),
        NotifyUserWithRequestConfig {
            time_stamping: true,
            ..config(2, 2, 4)
        },
        ModuleAttributes::passive(),
    )
    .unwrap();
    set_module(module);
    let file = File::open_interface(&CLASS).unwrap();
    let first = park(&file, IOCTL_WAIT, 4);
    data(3);
    assert_eq!(value(&first), 3);
    let parked = park(&file, IOCTL_WAIT, 4);
    assert!(parked.cancel());
    assert_eq!(status_of(&parked), NtStatus::CANCELLED);
    assert_eq!(with(|n| n.pending_request_count()), 0);
    drop(file);
    uninstall();
    finish(session, driver, device);
}

#[test]
fn storing_and_dropping_data_allocates_nothing() {
    let (session, driver, device) = boot();
    let cleanups = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&cleanups);
    install(
        &device,
        NotifyUserWithRequestConfig {
            data_cleanup: Some(Box::new(move |_| {
                counted.fetch_add(1, Ordering::Relaxed);
            })),
            time_stamping: true,
            ..config(4, 8, 16)
        },
    );
    for item in 0..16 {
        data(item);
    }
    let guard = notify_slot();
    let notify = guard.as_ref().unwrap();
    // The heap counter is process-wide (framework threads allocate now and then): the quietest
    // of a few rounds is the module's own cost. Pool allocations are the simulation's own count.
    let mut rounds = Vec::new();
    for round in 0..5u32 {
        let heap = wdk_sys::sim::heap::allocations();
        let pool = sim::counters().allocations;
        for item in 0..200u32 {
            notify
                .data_process(&(round * 1000 + item).to_le_bytes(), NtStatus::SUCCESS)
                .unwrap();
        }
        rounds.push((
            wdk_sys::sim::heap::allocations() - heap,
            sim::counters().allocations - pool,
        ));
    }
    drop(guard);
    assert_eq!(
        rounds.iter().min(),
        Some(&(0, 0)),
        "no allocation per data item"
    );
    assert!(rounds.iter().all(|&(_, pool)| pool == 0), "{rounds:?}");
    assert_eq!(
        cleanups.load(Ordering::Relaxed),
        1008,
        "each dropped item cleaned"
    );
    uninstall();
    finish(session, driver, device);
}

#[test]
fn creation_fails_cleanly_at_each_allocation_and_object_creation() {
    for point in [FaultPoint::Allocation, FaultPoint::ObjectCreation] {
        let (session, driver, device) = boot();
        let live = sim::counters().live_objects;
        let mut failures = 0;
        for nth in 1.. {
            assert!(nth < 200, "creation never succeeded");
            sim::fail_nth(point, nth, NtStatus::INSUFFICIENT_RESOURCES.raw());
            let result = create(
                &device,
                NotifyUserWithRequestConfig {
                    time_stamping: true,
                    pending_requests_cancel: Some(Box::new(drop)),
                    ..config(4, 4, 8)
                },
            );
            sim::clear_faults();
            match result {
                Err(error) => {
                    assert_eq!(error.status(), NtStatus::INSUFFICIENT_RESOURCES);
                    assert_eq!(
                        sim::counters().live_objects,
                        live,
                        "failure #{nth} at {point:?} left objects behind"
                    );
                    failures += 1;
                }
                Ok(module) => {
                    // The module that finally came up works.
                    set_module(module);
                    let file = File::open_interface(&CLASS).unwrap();
                    let parked = park(&file, IOCTL_WAIT, 8);
                    data(42);
                    assert_eq!(value(&parked), 42);
                    drop(file);
                    uninstall();
                    break;
                }
            }
        }
        assert!(
            failures >= 3,
            "{point:?}: every creation step was tried ({failures})"
        );
        assert_eq!(sim::counters().live_objects, live);
        finish(session, driver, device);
    }
}

#[test]
fn fault_sweep_over_the_whole_life() {
    // Create, a handle, requests parked and paired with data, data waiting, a request cancelled,
    // the handle closed with a request parked, close, removal: each allocation and object
    // creation failing in turn.
    let swept = fault_sweep::sweep("NotifyUserWithRequest", |run| {
        REJECTED.store(0, Ordering::SeqCst);
        std::mem::forget(notify_slot_mut().take());
        let driver = SimDriver::load(driver_entry).expect("driver loads");
        let device = driver.add_device().expect("device added");
        device.start().expect("device starts");
        let file = File::open_interface(&CLASS).expect("opened");
        run.arm();
        let (cleanup, cancel) = (run.probe(), run.probe());
        let module = create(
            &device,
            NotifyUserWithRequestConfig {
                time_stamping: true,
                data_cleanup: Some(Box::new(move |_| cleanup.called())),
                pending_requests_cancel: Some(Box::new(move |request| {
                    cancel.called();
                    drop(request);
                })),
                ..config(4, 4, 8)
            },
        );
        if let Some(module) = run.check(module.map_err(dmf::error::ModuleError::status)) {
            set_module(module);
            // A request parked, then paired with data.
            let parked = file.device_io_control_overlapped(IOCTL_WAIT, &[], 8);
            let stored = with(|n| n.data_process(&7u32.to_le_bytes(), NtStatus::SUCCESS));
            // Data 7 waits for the next request if the parked one never reached the module.
            let mut oldest = 8;
            if run.check(stored).is_some() {
                let (status, _) = done(&parked);
                if status == NtStatus::SUCCESS.raw() {
                    assert_eq!(
                        u32::from_le_bytes(parked.output()[..4].try_into().unwrap()),
                        7
                    );
                } else {
                    run.failed(NtStatus::from_raw(status));
                    oldest = 7;
                }
            } else {
                // Nothing for the parked request: it is cancelled, or failed before parking.
                let _ = parked.cancel();
                let status = NtStatus::from_raw(done(&parked).0);
                if status != NtStatus::CANCELLED {
                    run.failed(status);
                }
            }
            // Data waiting for a request, then a request taking it.
            if run
                .check(with(|n| {
                    n.data_process(&8u32.to_le_bytes(), NtStatus::SUCCESS)
                }))
                .is_some()
            {
                let (result, output) = call(&file, IOCTL_WAIT, 8);
                match result {
                    Ok(_) => assert_eq!(as_u32(&output), oldest),
                    Err(status) => run.failed(NtStatus::from_raw(status)),
                }
            }
            // A request cancelled by its issuer; another left parked when the handle closes.
            let cancelled = file.device_io_control_overlapped(IOCTL_ADD, &[], 8);
            let _ = cancelled.cancel();
            let status = NtStatus::from_raw(done(&cancelled).0);
            if status != NtStatus::CANCELLED {
                run.failed(status);
            }
            let other = File::open_interface(&CLASS);
            if let Some(other) = run.check(other.map_err(NtStatus::from_raw)) {
                let left = other.device_io_control_overlapped(IOCTL_ADD, &[], 8);
                drop(other);
                let status = NtStatus::from_raw(done(&left).0);
                if status != NtStatus::CANCELLED {
                    run.failed(status);
                }
            }
            // Data left for close to clean.
            let _ = with(|n| n.data_process(&9u32.to_le_bytes(), NtStatus::SUCCESS))
                .map_err(|status| run.failed(status));
            uninstall();
        }
        run.closed();
        drop(file);
        device.remove();
        driver.unload();
    });
    assert!(swept.iter().all(|s| s.steps >= 3), "{swept:?}");
}

/// [`concurrent_issuers_producers_and_cancels_lose_nothing`] under many scheduling seeds (see `common/schedules.rs`; `SCHEDULE_SEEDS=1000` is
/// the long run).
#[test]
fn concurrent_issuers_producers_and_cancels_lose_nothing_under_many_schedules() {
    schedules::under_seeds(
        "NotifyUserWithRequest: concurrent_issuers_producers_and_cancels_lose_nothing",
        10,
        concurrent_issuers_producers_and_cancels_lose_nothing,
    );
}
