//! `dmf::wdf::Memory` on the simulation: allocation, bounds-checked copies, deletion on drop,
//! fault injection and the IRQL rule for paged pool.
#![cfg(not(windows))]

use dmf::wdf::{Memory, NtStatus, PoolType};
use wdk_sys::sim::{self, FaultPoint, Session, verifier::rules};

#[test]
fn create_copy_and_drop() {
    let session = Session::begin();
    let before = sim::counters().live_objects;
    let mut memory = Memory::create(16, PoolType::NonPaged, None).expect("memory is created");
    assert_eq!(memory.len(), 16);
    assert!(
        memory.as_slice().iter().all(|&b| b == 0),
        "a new buffer is zeroed"
    );
    memory.copy_from(4, &[1, 2, 3]).expect("in range");
    let mut out = [0u8; 5];
    memory.copy_to(3, &mut out).expect("in range");
    assert_eq!(out, [0, 1, 2, 3, 0]);
    assert_eq!(sim::counters().live_objects, before + 1);
    drop(memory);
    assert_eq!(sim::counters().live_objects, before);
    session.end();
}

#[test]
fn out_of_range_copies_fail_without_touching_memory() {
    let session = Session::begin();
    let mut memory = Memory::create(8, PoolType::NonPaged, None).expect("memory is created");
    // KMDF's `IFxMemory::_CopyPtrToPtr` (fxmemoryobject.cpp): the memory as the destination
    // fails with STATUS_INVALID_BUFFER_SIZE, as the source with STATUS_BUFFER_TOO_SMALL; neither
    // is a verifier break.
    assert_eq!(
        memory.copy_from(6, &[9, 9, 9]),
        Err(NtStatus::INVALID_BUFFER_SIZE)
    );
    assert_eq!(
        memory.copy_from(usize::MAX, &[9]),
        Err(NtStatus::INVALID_BUFFER_SIZE)
    );
    assert!(memory.as_slice().iter().all(|&b| b == 0));
    let mut out = [0u8; 9];
    assert_eq!(memory.copy_to(0, &mut out), Err(NtStatus::BUFFER_TOO_SMALL));
    drop(memory);
    assert!(sim::verifier::take_reports().is_empty());
    session.end();
}

#[test]
fn injected_allocation_failure_is_returned() {
    let session = Session::begin();
    sim::fail_nth(
        FaultPoint::Allocation,
        2,
        wdk_sys::STATUS_INSUFFICIENT_RESOURCES,
    );
    let first = Memory::create(4, PoolType::NonPaged, None).expect("first allocation succeeds");
    let second = Memory::create(4, PoolType::NonPaged, None);
    assert_eq!(second.err(), Some(NtStatus::INSUFFICIENT_RESOURCES));
    let third = Memory::create(4, PoolType::NonPaged, None).expect("the fault fires once");
    drop((first, third));
    assert_eq!(sim::counters().live_objects, 0);
    session.end();
}

#[test]
fn paged_memory_at_dispatch_is_a_verifier_report() {
    let mut session = Session::begin();
    session.expect_violation(rules::IRQL_TOO_HIGH);
    let result = sim::at_irql(wdk_sys::DISPATCH_LEVEL as u8, || {
        Memory::create(4, PoolType::Paged, None)
    });
    assert!(result.is_err());
    let reports = sim::verifier::take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].rule, rules::IRQL_TOO_HIGH);
    assert_eq!(reports[0].object, "WdfMemoryCreate");
    session.end();
}

#[test]
fn children_are_deleted_with_their_parent() {
    let session = Session::begin();
    let parent = Memory::create(4, PoolType::NonPaged, None).expect("parent");
    let child = Memory::create(4, PoolType::NonPaged, Some(parent.handle().cast())).expect("child");
    assert_eq!(sim::counters().live_objects, 2);
    // The child goes with its parent; forgetting the Rust owner avoids a second delete.
    core::mem::forget(child);
    drop(parent);
    assert_eq!(sim::counters().live_objects, 0);
    session.end();
}
