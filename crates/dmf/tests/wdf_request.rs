//! `dmf::wdf::{Request, IoTarget}` against the programmable target: a reuse/format/send loop
//! through the completion trampoline, synchronous sends with timeouts, cancel, and target
//! state changes with requests in flight.
#![cfg(not(windows))]

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dmf::wdf::io_target::{IoTarget, IoTargetState, RemoveCallbacks, SentIoAction};
use dmf::wdf::request::{Completion, MemoryRange, Request, RequestCompletion, Timeout};
use dmf::wdf::{Memory, NtStatus, PoolType};
use wdk_sys::sim::Session;
use wdk_sys::sim::target::{ProgrammableTarget, Response};
use wdk_sys::{STATUS_SUCCESS, WDFIOTARGET, WDFREQUEST};

mod common;

use common::boot;

fn wide(name: &str) -> Vec<u16> {
    name.encode_utf16().collect()
}

/// Records completions; `Sync` so the trampoline can call it from a framework thread.
#[derive(Default)]
struct Recorder {
    count: AtomicUsize,
    last: Mutex<Option<(NtStatus, usize, u32)>>,
}

impl RequestCompletion for Recorder {
    fn request_completed(
        &self,
        _request: WDFREQUEST,
        _target: WDFIOTARGET,
        completion: &Completion,
    ) {
        *self.last.lock().unwrap() =
            Some((completion.status, completion.information, completion.ioctl));
        self.count.fetch_add(1, Ordering::SeqCst);
    }
}

impl Recorder {
    fn wait(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.count.load(Ordering::SeqCst) < count {
            assert!(Instant::now() < deadline, "completion did not arrive");
            std::thread::yield_now();
        }
    }
}

#[test]
fn reuse_format_send_loop_through_the_trampoline() {
    static RECORDER: Recorder = Recorder {
        count: AtomicUsize::new(0),
        last: Mutex::new(None),
    };
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\DmfRequestLoop");
    device.set_responder(|received| Response::data(&[received.sequence as u8; 4]));
    let (driver, host) = boot();
    let target = IoTarget::create(dmf::wdf::device::Device::from_raw(host.handle()))
        .expect("target created");
    target
        .open_by_name(&wide(device.symbolic_link()), RemoveCallbacks::default())
        .expect("opened");
    let request = Request::create(Some(&target), None).expect("request created");
    let output = Memory::create(16, PoolType::NonPaged, None).expect("memory");
    let before = RECORDER.count.load(Ordering::SeqCst);
    for round in 1..=50 {
        if round > 1 {
            request.reuse(NtStatus::SUCCESS).expect("reuse");
        }
        request
            .format_ioctl(
                &target,
                0x22_2008,
                false,
                None,
                Some(MemoryRange::part(output.handle(), 8, 4)),
            )
            .expect("format");
        request.set_completion_static(&RECORDER);
        request
            .send(&target, Timeout::from_millis(0))
            .expect("sent");
        RECORDER.wait(before + round);
    }
    assert_eq!(
        *RECORDER.last.lock().unwrap(),
        Some((NtStatus::SUCCESS, 4, 0x22_2008))
    );
    assert_eq!(
        &output.as_slice()[8..12],
        &[50; 4],
        "the last answer landed at the offset"
    );
    assert_eq!(&output.as_slice()[..8], &[0; 8]);
    assert_eq!(request.completion().information, 4);
    assert_eq!(device.counters().ioctls, 50);
    drop(request);
    drop(output);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn synchronous_sends_and_timeouts() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\DmfRequestSync");
    device.set_responder(|received| {
        if received.ioctl == 1 {
            Response::Hold
        } else {
            Response::data(&received.input).after(Duration::from_millis(2))
        }
    });
    let (driver, host) = boot();
    let target = IoTarget::create(dmf::wdf::device::Device::from_raw(host.handle()))
        .expect("target created");
    target
        .open_by_name(&wide(device.symbolic_link()), RemoveCallbacks::default())
        .expect("opened");
    let mut output = [0u8; 8];
    let bytes = target
        .send_ioctl_synchronously(
            2,
            false,
            &[5, 6, 7],
            &mut output,
            Timeout::from_millis(1000),
        )
        .expect("answered");
    assert_eq!(bytes, 3);
    assert_eq!(&output[..3], &[5, 6, 7]);
    assert_eq!(
        target.send_ioctl_synchronously(1, true, &[], &mut output, Timeout::from_millis(20)),
        Err(NtStatus::IO_TIMEOUT)
    );
    let written = target
        .send_write_synchronously(&[1, 2, 3, 4, 5], Timeout::from_millis(0))
        .expect("written");
    assert_eq!(written, 5);
    // A request object sent synchronously.
    let request = Request::create(Some(&target), None).expect("request");
    let memory = Memory::create(4, PoolType::NonPaged, None).expect("memory");
    request
        .format_read(&target, MemoryRange::whole(memory.handle()))
        .expect("format");
    assert_eq!(
        request.send_synchronously(&target, Timeout::from_millis(1000)),
        Ok(0)
    );
    drop(request);
    drop(memory);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn cancel_and_stop_with_requests_in_flight() {
    let session = Session::begin();
    let recorder = Box::leak(Box::new(Recorder::default()));
    let device = ProgrammableTarget::create("\\??\\DmfRequestCancel");
    device.set_responder(|_| Response::Hold);
    let (driver, host) = boot();
    let target = IoTarget::create(dmf::wdf::device::Device::from_raw(host.handle()))
        .expect("target created");
    target
        .open_by_name(&wide(device.symbolic_link()), RemoveCallbacks::default())
        .expect("opened");
    let request = Request::create(Some(&target), None).expect("request");
    let memory = Memory::create(4, PoolType::NonPaged, None).expect("memory");
    request
        .format_write(&target, MemoryRange::whole(memory.handle()))
        .expect("format");
    request.set_completion_static(recorder);
    request
        .send(&target, Timeout::from_millis(0))
        .expect("sent");
    assert!(device.wait_held(1, Duration::from_secs(5)));
    assert!(request.cancel());
    recorder.wait(1);
    assert_eq!(
        recorder.last.lock().unwrap().unwrap().0,
        NtStatus::CANCELLED
    );
    assert!(!request.cancel(), "nothing left to cancel");

    request.reuse(NtStatus::SUCCESS).unwrap();
    request
        .format_write(&target, MemoryRange::whole(memory.handle()))
        .unwrap();
    request.set_completion_static(recorder);
    request.send(&target, Timeout::from_millis(0)).unwrap();
    assert!(device.wait_held(1, Duration::from_secs(5)));
    target.stop(SentIoAction::Cancel);
    assert_eq!(
        recorder.count.load(Ordering::SeqCst),
        2,
        "stop waited for the cancelled request"
    );
    assert_eq!(target.state(), IoTargetState::Stopped);
    target.purge(true);
    request.reuse(NtStatus::SUCCESS).unwrap();
    request
        .format_write(&target, MemoryRange::whole(memory.handle()))
        .unwrap();
    assert_eq!(
        request.send(&target, Timeout::from_millis(0)),
        Err(NtStatus::INVALID_DEVICE_STATE)
    );
    target.start().unwrap();
    assert_eq!(target.state(), IoTargetState::Started);
    let _ = STATUS_SUCCESS;
    drop(request);
    drop(memory);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn injected_send_failure_and_surprise_removal_of_an_opened_target() {
    let session = Session::begin();
    let recorder = Box::leak(Box::new(Recorder::default()));
    let device = ProgrammableTarget::create("\\??\\DmfRequestFaults");
    device.set_responder(|_| Response::Hold);
    let (driver, host) = boot();
    let target = IoTarget::create(dmf::wdf::device::Device::from_raw(host.handle()))
        .expect("target created");
    target
        .open_by_name(&wide(device.symbolic_link()), RemoveCallbacks::default())
        .expect("opened");
    let request = Request::create(Some(&target), None).expect("request");
    let memory = Memory::create(4, PoolType::NonPaged, None).expect("memory");
    request
        .format_read(&target, MemoryRange::whole(memory.handle()))
        .unwrap();
    request.set_completion_static(recorder);
    wdk_sys::sim::fail_nth(
        wdk_sys::sim::FaultPoint::Send,
        1,
        wdk_sys::STATUS_INSUFFICIENT_RESOURCES,
    );
    assert_eq!(
        request.send(&target, Timeout::from_millis(0)),
        Err(NtStatus::INSUFFICIENT_RESOURCES)
    );
    assert_eq!(device.counters().received, 0);
    // The next send goes through and is held; the device then vanishes.
    request.reuse(NtStatus::SUCCESS).unwrap();
    request
        .format_read(&target, MemoryRange::whole(memory.handle()))
        .unwrap();
    request.set_completion_static(recorder);
    request.send(&target, Timeout::from_millis(0)).unwrap();
    assert!(device.wait_held(1, Duration::from_secs(5)));
    device.surprise_remove();
    recorder.wait(1);
    session.wait_idle();
    assert_eq!(
        recorder.count.load(Ordering::SeqCst),
        1,
        "the failed send never completed"
    );
    assert_eq!(
        recorder.last.lock().unwrap().unwrap().0,
        NtStatus::CANCELLED
    );
    assert_eq!(target.state(), IoTargetState::Closed);
    drop(request);
    drop(memory);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}
