//! The object model (parent/child deletion, cleanup and destroy order, typed contexts,
//! references), kernel pool, fault injection and counters at the raw `wdk_sys` surface, with one
//! firing test per verifier rule they check.
#![allow(clippy::missing_panics_doc, reason = "tests")]

use std::sync::Mutex;

use wdk_sys::sim::{self, FaultPoint, Session, verifier::rules};
use wdk_sys::{
    _POOL_TYPE, _WDF_EXECUTION_LEVEL, _WDF_SYNCHRONIZATION_SCOPE, DISPATCH_LEVEL, NTSTATUS,
    POOL_FLAG_NON_PAGED, POOL_FLAG_PAGED, PVOID, STATUS_INFO_LENGTH_MISMATCH,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_SUCCESS, WDF_OBJECT_ATTRIBUTES,
    WDF_OBJECT_CONTEXT_TYPE_INFO, WDFMEMORY, WDFOBJECT, call_unsafe_wdf_function_binding, ntddk,
};

/// Callback order recorded by the cleanup and destroy callbacks: (event, object).
static EVENTS: Mutex<Vec<(&'static str, usize)>> = Mutex::new(Vec::new());

fn record(event: &'static str, object: WDFOBJECT) {
    EVENTS.lock().unwrap().push((event, object as usize));
}

unsafe extern "C" fn on_cleanup(object: WDFOBJECT) {
    record("cleanup", object);
}

unsafe extern "C" fn on_destroy(object: WDFOBJECT) {
    record("destroy", object);
}

#[repr(C)]
struct Counter {
    value: u64,
}

struct TypeInfo(WDF_OBJECT_CONTEXT_TYPE_INFO);
// SAFETY: the type info is immutable and its pointers point at statics.
unsafe impl Sync for TypeInfo {}

static COUNTER_TYPE: TypeInfo = TypeInfo(WDF_OBJECT_CONTEXT_TYPE_INFO {
    Size: size_of::<WDF_OBJECT_CONTEXT_TYPE_INFO>() as u32,
    ContextName: c"Counter".as_ptr(),
    ContextSize: size_of::<Counter>(),
    UniqueType: &raw const COUNTER_TYPE.0,
    EvtDriverGetUniqueContextType: None,
});

static OTHER_TYPE: TypeInfo = TypeInfo(WDF_OBJECT_CONTEXT_TYPE_INFO {
    Size: size_of::<WDF_OBJECT_CONTEXT_TYPE_INFO>() as u32,
    ContextName: c"Other".as_ptr(),
    ContextSize: 8,
    UniqueType: &raw const OTHER_TYPE.0,
    EvtDriverGetUniqueContextType: None,
});

fn attributes(parent: WDFOBJECT, callbacks: bool) -> WDF_OBJECT_ATTRIBUTES {
    WDF_OBJECT_ATTRIBUTES {
        Size: size_of::<WDF_OBJECT_ATTRIBUTES>() as u32,
        EvtCleanupCallback: if callbacks { Some(on_cleanup) } else { None },
        EvtDestroyCallback: if callbacks { Some(on_destroy) } else { None },
        ExecutionLevel: _WDF_EXECUTION_LEVEL::WdfExecutionLevelInheritFromParent,
        SynchronizationScope: _WDF_SYNCHRONIZATION_SCOPE::WdfSynchronizationScopeInheritFromParent,
        ParentObject: parent,
        ..WDF_OBJECT_ATTRIBUTES::default()
    }
}

fn memory_with(mut attributes: WDF_OBJECT_ATTRIBUTES) -> Result<WDFMEMORY, NTSTATUS> {
    let mut memory: WDFMEMORY = core::ptr::null_mut();
    // SAFETY: the attributes and the out pointer are valid locals.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfMemoryCreate,
            &raw mut attributes,
            _POOL_TYPE::NonPagedPoolNx,
            0,
            8,
            &raw mut memory,
            core::ptr::null_mut()
        )
    };
    if status == STATUS_SUCCESS {
        Ok(memory)
    } else {
        Err(status)
    }
}

fn memory(parent: WDFOBJECT) -> WDFMEMORY {
    memory_with(attributes(parent, true)).expect("memory is created")
}

fn delete(object: WDFOBJECT) {
    // SAFETY: deleting is the operation under test; the simulation validates the handle.
    unsafe { call_unsafe_wdf_function_binding!(WdfObjectDelete, object) };
}

fn reference(object: WDFOBJECT) {
    // SAFETY: the simulation validates the handle.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfObjectReferenceActual,
            object,
            core::ptr::null_mut(),
            0,
            core::ptr::null()
        );
    }
}

fn dereference(object: WDFOBJECT) {
    // SAFETY: the simulation validates the handle.
    unsafe {
        call_unsafe_wdf_function_binding!(
            WdfObjectDereferenceActual,
            object,
            core::ptr::null_mut(),
            0,
            core::ptr::null()
        );
    }
}

fn take_events() -> Vec<(&'static str, usize)> {
    std::mem::take(&mut *EVENTS.lock().unwrap())
}

#[test]
fn children_clean_up_before_parents_and_are_destroyed_first() {
    let session = Session::begin();
    take_events();
    let parent = memory(core::ptr::null_mut());
    let first = memory(parent.cast());
    let grandchild = memory(first.cast());
    let second = memory(parent.cast());
    delete(parent.cast());
    let (p, f, g, s) = (
        parent as usize,
        first as usize,
        grandchild as usize,
        second as usize,
    );
    assert_eq!(
        take_events(),
        vec![
            // Cleanup: children (most recent first), each subtree bottom-up, then the parent.
            ("cleanup", s),
            ("cleanup", g),
            ("cleanup", f),
            ("cleanup", p),
            // Destroy: children before parents.
            ("destroy", g),
            ("destroy", f),
            ("destroy", s),
            ("destroy", p),
        ]
    );
    assert_eq!(sim::counters().live_objects, 0);
    session.end();
}

#[test]
fn an_extra_reference_defers_destroy_until_released() {
    let session = Session::begin();
    take_events();
    let object = memory(core::ptr::null_mut());
    reference(object.cast());
    delete(object.cast());
    assert_eq!(take_events(), vec![("cleanup", object as usize)]);
    assert_eq!(sim::counters().live_objects, 1, "still referenced");
    dereference(object.cast());
    assert_eq!(take_events(), vec![("destroy", object as usize)]);
    assert_eq!(sim::counters().live_objects, 0);
    session.end();
}

#[test]
fn typed_contexts_are_zeroed_per_object_and_found_by_type() {
    let session = Session::begin();
    let mut attrs = attributes(core::ptr::null_mut(), false);
    attrs.ContextTypeInfo = &raw const COUNTER_TYPE.0;
    let object = memory_with(attrs).expect("created");
    // SAFETY: the object is live and the type info is a static.
    let context: PVOID = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfObjectGetTypedContextWorker,
            object.cast(),
            &raw const COUNTER_TYPE.0
        )
    };
    assert!(!context.is_null());
    let counter = context.cast::<Counter>();
    // SAFETY: the context is a zeroed, aligned `Counter` owned by the live object.
    let counter = unsafe { &mut *counter };
    assert_eq!(counter.value, 0);
    counter.value = 41;
    // SAFETY: as above.
    let other: PVOID = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfObjectGetTypedContextWorker,
            object.cast(),
            &raw const OTHER_TYPE.0
        )
    };
    assert!(other.is_null(), "no context of another type");
    // SAFETY: the context pointer came from this object.
    let owner = unsafe { call_unsafe_wdf_function_binding!(WdfObjectContextGetObject, context) };
    assert_eq!(owner, object.cast());
    // A second context type can be added later.
    let mut more = attributes(core::ptr::null_mut(), false);
    more.ContextTypeInfo = &raw const OTHER_TYPE.0;
    let mut added: PVOID = core::ptr::null_mut();
    // SAFETY: valid locals.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfObjectAllocateContext,
            object.cast(),
            &raw mut more,
            &raw mut added
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    assert!(!added.is_null() && added != context);
    delete(object.cast());
    session.end();
}

#[test]
fn using_a_deleted_handle_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::INVALID_HANDLE);
    let object = memory(core::ptr::null_mut());
    delete(object.cast());
    let mut size = 0usize;
    // SAFETY: the handle is stale on purpose; the simulation reports it and returns null.
    let buffer =
        unsafe { call_unsafe_wdf_function_binding!(WdfMemoryGetBuffer, object, &raw mut size) };
    assert!(buffer.is_null());
    let reports = sim::verifier::take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].rule, rules::INVALID_HANDLE);
    assert_eq!(reports[0].object, "WdfMemoryGetBuffer");
    assert!(
        reports[0].message.contains("WDFMEMORY"),
        "{}",
        reports[0].message
    );
    session.end();
}

#[test]
fn deleting_twice_while_referenced_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::INVALID_DELETE);
    let object = memory(core::ptr::null_mut());
    reference(object.cast());
    delete(object.cast());
    delete(object.cast());
    let reports = sim::verifier::take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].rule, rules::INVALID_DELETE);
    dereference(object.cast());
    session.end();
}

#[test]
fn dereferencing_the_creation_reference_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::UNBALANCED_DEREFERENCE);
    let object = memory(core::ptr::null_mut());
    dereference(object.cast());
    assert_eq!(
        sim::counters().live_objects,
        1,
        "the object survives the bad dereference"
    );
    let reports = sim::verifier::take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].rule, rules::UNBALANCED_DEREFERENCE);
    delete(object.cast());
    session.end();
}

#[test]
fn a_wrong_attributes_size_fails_creation() {
    let mut session = Session::begin();
    session.expect_violation(rules::BAD_STRUCTURE_SIZE);
    let mut attrs = attributes(core::ptr::null_mut(), false);
    attrs.Size -= 8;
    assert_eq!(memory_with(attrs), Err(STATUS_INFO_LENGTH_MISMATCH));
    assert_eq!(sim::counters().live_objects, 0);
    assert_eq!(
        sim::verifier::take_reports()[0].rule,
        rules::BAD_STRUCTURE_SIZE
    );
    session.end();
}

#[test]
fn leaked_objects_and_pool_are_reported_at_teardown() {
    let mut session = Session::begin();
    session.expect_violation(rules::OBJECT_LEAKED);
    session.expect_violation(rules::POOL_LEAKED);
    let object = memory(core::ptr::null_mut());
    // SAFETY: plain pool allocation.
    let block = unsafe { ntddk::ExAllocatePool2(POOL_FLAG_NON_PAGED, 32, 0x6B61_654C) };
    assert!(!block.is_null());
    session.check_leaks();
    let reports = sim::verifier::take_reports();
    let leaked: Vec<_> = reports.iter().map(|r| r.rule).collect();
    assert_eq!(leaked, vec![rules::OBJECT_LEAKED, rules::POOL_LEAKED]);
    assert!(reports[0].object.starts_with("WDFMEMORY"));
    assert!(reports[1].message.contains("32 bytes"));
    // SAFETY: frees the block allocated above with its tag.
    unsafe { ntddk::ExFreePoolWithTag(block, 0x6B61_654C) };
    delete(object.cast());
    session.end();
}

#[test]
fn freeing_pool_that_was_not_allocated_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::INVALID_POOL_FREE);
    let mut local = [0u8; 16];
    // SAFETY: the pointer was not allocated from pool; the simulation reports and ignores it.
    unsafe { ntddk::ExFreePool(local.as_mut_ptr().cast()) };
    // SAFETY: plain pool allocation.
    let block = unsafe { ntddk::ExAllocatePool2(POOL_FLAG_NON_PAGED, 8, 0x1111) };
    // SAFETY: the wrong tag: reported, not freed.
    unsafe { ntddk::ExFreePoolWithTag(block, 0x2222) };
    assert_eq!(sim::counters().live_pool_allocations, 1);
    // SAFETY: the right tag frees the block.
    unsafe { ntddk::ExFreePoolWithTag(block, 0x1111) };
    // SAFETY: a second free of the same block: reported, nothing happens.
    unsafe { ntddk::ExFreePoolWithTag(block, 0x1111) };
    let reports = sim::verifier::take_reports();
    assert_eq!(reports.len(), 3, "{reports:?}");
    assert!(reports.iter().all(|r| r.rule == rules::INVALID_POOL_FREE));
    assert_eq!(sim::counters().live_pool_allocations, 0);
    session.end();
}

#[test]
fn paged_pool_at_dispatch_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::PAGED_ALLOCATION_AT_DISPATCH);
    let block = sim::at_irql(DISPATCH_LEVEL as u8, || {
        // SAFETY: the allocation is refused at DISPATCH_LEVEL.
        unsafe { ntddk::ExAllocatePool2(POOL_FLAG_PAGED, 8, 0x1) }
    });
    assert!(block.is_null());
    assert_eq!(
        sim::verifier::take_reports()[0].rule,
        rules::PAGED_ALLOCATION_AT_DISPATCH
    );
    session.end();
}

#[test]
fn injected_object_creation_failures_hit_the_nth_creation_only() {
    let session = Session::begin();
    sim::reset_counters();
    sim::fail_nth(FaultPoint::ObjectCreation, 3, STATUS_INSUFFICIENT_RESOURCES);
    let a = memory(core::ptr::null_mut());
    let b = memory(core::ptr::null_mut());
    assert_eq!(
        memory_with(attributes(core::ptr::null_mut(), false)),
        Err(STATUS_INSUFFICIENT_RESOURCES)
    );
    let c = memory(core::ptr::null_mut());
    let counters = sim::counters();
    assert_eq!(counters.objects_created, 4, "every attempt is counted");
    assert_eq!(counters.live_objects, 3);
    for object in [a, b, c] {
        delete(object.cast());
    }
    sim::fail_nth(FaultPoint::Allocation, 1, STATUS_INSUFFICIENT_RESOURCES);
    // SAFETY: the allocation fails by injection and returns null.
    let block = unsafe { ntddk::ExAllocatePool2(POOL_FLAG_NON_PAGED, 8, 0x1) };
    assert!(block.is_null());
    session.end();
}

#[test]
fn a_handle_of_another_type_is_reported() {
    let mut session = Session::begin();
    session.expect_violation(rules::WRONG_HANDLE_TYPE);
    let mut lock: wdk_sys::WDFSPINLOCK = core::ptr::null_mut();
    // SAFETY: the out pointer is a valid local.
    let status = unsafe {
        call_unsafe_wdf_function_binding!(
            WdfSpinLockCreate,
            wdk_sys::WDF_NO_OBJECT_ATTRIBUTES,
            &raw mut lock
        )
    };
    assert_eq!(status, STATUS_SUCCESS);
    let mut size = 0usize;
    // SAFETY: a spin lock passed as memory on purpose; the simulation reports it and returns null.
    let buffer = unsafe {
        call_unsafe_wdf_function_binding!(WdfMemoryGetBuffer, lock.cast(), &raw mut size)
    };
    assert!(buffer.is_null());
    let reports = sim::verifier::take_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].rule, rules::WRONG_HANDLE_TYPE);
    assert!(
        reports[0].message.contains("WDFSPINLOCK"),
        "{}",
        reports[0].message
    );
    delete(lock.cast());
    session.end();
}
