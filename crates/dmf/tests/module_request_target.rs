//! `RequestTarget` against the programmable target: asynchronous sends at both completion
//! levels, cancel tokens, timeouts, synchronous sends, target set/clear, close with requests out.
#![cfg(not(windows))]

mod common;

use std::sync::mpsc;
use std::time::Duration;

use dmf::core::{ModuleAttributes, ModuleNode};
use dmf::modules::request_target::{
    CompletionOption, RequestTarget, RequestType, SendCompletion, SendResult,
};
use dmf::wdf::NtStatus;
use wdk_sys::sim::Session;
use wdk_sys::sim::target::{MajorFunction, ProgrammableTarget, Response};

type Outcome = (NtStatus, Vec<u8>, Vec<u8>, usize, u8);

fn recorder() -> (impl Fn() -> SendCompletion, mpsc::Receiver<Outcome>) {
    let (sender, receiver) = mpsc::channel();
    let make = move || -> SendCompletion {
        let sender = sender.clone();
        Box::new(move |result: &SendResult<'_>| {
            let irql = dmf::wdf::irql::current();
            sender
                .send((
                    result.status,
                    result.input.to_vec(),
                    result.output.to_vec(),
                    result.information,
                    irql,
                ))
                .unwrap();
        })
    };
    (make, receiver)
}

fn next(receiver: &mpsc::Receiver<Outcome>) -> Outcome {
    receiver
        .recv_timeout(Duration::from_secs(10))
        .expect("completion arrives")
}

#[test]
fn async_sends_deliver_data_status_and_level() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\RtAsync");
    device.set_responder(|r| match r.major {
        MajorFunction::Read => Response::data(&[9; 6]),
        MajorFunction::Write => Response::data(&[]).with_information(2),
        _ => Response::data(&r.input.iter().map(|b| b + 1).collect::<Vec<_>>()),
    });
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    let module = RequestTarget::create(common::parent(&host), ModuleAttributes::new()).unwrap();
    module.io_target_set(&target).unwrap();
    assert_eq!(
        module.io_target_set(&target),
        Err(NtStatus::INVALID_DEVICE_STATE),
        "a second target is refused"
    );
    let (make, receiver) = recorder();

    module
        .send(
            &[1, 2, 3],
            8,
            RequestType::Ioctl,
            0x22_2004,
            0,
            Some(make()),
        )
        .unwrap();
    let (status, input, output, information, irql) = next(&receiver);
    assert_eq!(status, NtStatus::SUCCESS);
    assert_eq!(input, vec![1, 2, 3], "IOCTL: the whole input buffer");
    assert_eq!(output, vec![2, 3, 4]);
    assert_eq!(information, 3);
    assert_eq!(
        irql,
        wdk_sys::PASSIVE_LEVEL as u8,
        "a target that answers at once completes inline, at the sender's IRQL (as in KMDF)"
    );
    assert_eq!(device.last_received().unwrap().ioctl, 0x22_2004);

    module
        .send_ex(
            &[],
            4,
            RequestType::Read,
            0,
            0,
            CompletionOption::Passive,
            Some(make()),
        )
        .unwrap();
    let (status, input, output, _, irql) = next(&receiver);
    assert_eq!(
        (status, input, output),
        (NtStatus::SUCCESS, vec![], vec![9; 4])
    );
    assert_eq!(irql, wdk_sys::PASSIVE_LEVEL as u8, "passive completion");

    module
        .send(&[5, 6, 7, 8], 0, RequestType::Write, 0, 0, Some(make()))
        .unwrap();
    let (status, input, output, information, _) = next(&receiver);
    assert_eq!((status, information), (NtStatus::SUCCESS, 2));
    assert_eq!(input, vec![5, 6], "write: the bytes written");
    assert!(output.is_empty());

    module
        .send(&[1], 4, RequestType::InternalIoctl, 7, 0, None)
        .unwrap();
    common::wait_until("the internal IOCTL", || {
        device.counters().internal_ioctls == 1
    });
    common::wait_until("no request out", || module.pending_requests() == 0);
    assert_eq!(device.counters().received, 4);

    drop(module);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn cancel_tokens_and_timeouts() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\RtCancel");
    device.set_responder(|_| Response::Hold);
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    let module = RequestTarget::create(common::parent(&host), ModuleAttributes::new()).unwrap();
    module.io_target_set(&target).unwrap();
    let (make, receiver) = recorder();

    let first = module
        .send_ex(
            &[1],
            4,
            RequestType::Ioctl,
            1,
            0,
            CompletionOption::Dispatch,
            Some(make()),
        )
        .unwrap();
    let second = module
        .send_ex(
            &[2],
            4,
            RequestType::Ioctl,
            1,
            0,
            CompletionOption::Passive,
            Some(make()),
        )
        .unwrap();
    assert_ne!(first, second, "tokens are unique");
    assert!(device.wait_held(2, Duration::from_secs(5)));
    assert_eq!(module.pending_requests(), 2);
    assert!(module.cancel(first));
    let (status, ..) = next(&receiver);
    assert_eq!(status, NtStatus::CANCELLED);
    assert!(!module.cancel(first), "a completed request's token is dead");
    assert_eq!(device.release(1, &Response::data(&[7, 7])), 1);
    let (status, _, output, ..) = next(&receiver);
    assert_eq!((status, output), (NtStatus::SUCCESS, vec![7, 7]));
    assert!(
        !module.cancel(second),
        "completed normally: nothing to cancel"
    );

    // A timeout completes with STATUS_IO_TIMEOUT, through the callback, once.
    module
        .send(&[3], 4, RequestType::Ioctl, 1, 20, Some(make()))
        .unwrap();
    let (status, ..) = next(&receiver);
    assert_eq!(status, NtStatus::IO_TIMEOUT);
    assert!(receiver.recv_timeout(Duration::from_millis(50)).is_err());
    assert_eq!(module.pending_requests(), 0);

    drop(module);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn synchronous_sends_and_missing_target() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\RtSync");
    device.set_responder(|r| {
        if r.ioctl == 1 {
            Response::Hold
        } else if r.ioctl == 2 {
            Response::status(NtStatus::DEVICE_BUSY.raw())
        } else {
            Response::data(&[4, 3, 2, 1, 0])
        }
    });
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    let module = RequestTarget::create(common::parent(&host), ModuleAttributes::new()).unwrap();
    let mut output = [0u8; 4];
    assert_eq!(
        module.send_synchronously(&[1], &mut output, RequestType::Ioctl, 3, 0),
        Err(NtStatus::DEVICE_NOT_CONNECTED),
        "no target: a clear error"
    );
    assert_eq!(
        module.send(&[1], 4, RequestType::Ioctl, 3, 0, None),
        Err(NtStatus::DEVICE_NOT_CONNECTED)
    );
    module.io_target_set(&target).unwrap();
    assert_eq!(
        module.send_synchronously(&[1], &mut output, RequestType::Ioctl, 3, 1000),
        Ok(4)
    );
    assert_eq!(output, [4, 3, 2, 1]);
    assert_eq!(
        module.send_synchronously(&[1], &mut output, RequestType::Ioctl, 1, 20),
        Err(NtStatus::IO_TIMEOUT)
    );
    assert_eq!(
        module.send_synchronously(&[1], &mut output, RequestType::Ioctl, 2, 0),
        Err(NtStatus::DEVICE_BUSY)
    );
    let mut read = [0u8; 8];
    assert_eq!(
        module.send_synchronously(&[], &mut read, RequestType::Read, 0, 0),
        Ok(5)
    );
    assert_eq!(&read[..5], &[4, 3, 2, 1, 0]);
    module.io_target_clear();
    assert_eq!(
        module.send_synchronously(&[1], &mut output, RequestType::Ioctl, 3, 0),
        Err(NtStatus::DEVICE_NOT_CONNECTED)
    );
    drop(module);
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}

#[test]
fn close_cancels_requests_out_and_later_calls_fail() {
    let session = Session::begin();
    let device = ProgrammableTarget::create("\\??\\RtClose");
    device.set_responder(|_| Response::Hold);
    let (driver, host) = common::boot();
    let target = common::open_target(&host, device.symbolic_link());
    let module = RequestTarget::create(common::parent(&host), ModuleAttributes::passive()).unwrap();
    module.io_target_set(&target).unwrap();
    let (make, receiver) = recorder();
    for i in 0..3 {
        module
            .send(&[i], 4, RequestType::Ioctl, 1, 0, Some(make()))
            .unwrap();
    }
    assert!(device.wait_held(3, Duration::from_secs(5)));
    assert_eq!(
        module.core().references_held(),
        3,
        "each send holds a reference"
    );
    drop(module); // close cancels them and waits for their callbacks
    let mut statuses: Vec<_> = (0..3).map(|_| next(&receiver)).collect();
    statuses.dedup_by_key(|o| o.0);
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].0, NtStatus::CANCELLED);
    assert_eq!(
        statuses[0].4,
        wdk_sys::PASSIVE_LEVEL as u8,
        "passive module"
    );
    drop(target);
    host.remove();
    driver.unload();
    session.end();
}
