//! System threads and their kernel handles: `PsCreateSystemThread`, `ObReferenceObjectByHandle`,
//! `ObfDereferenceObject`, `ZwClose`, `PsTerminateSystemThread`, `KeDelayExecutionThread`,
//! `PsGetCurrentThreadId`.
//!
//! A system thread runs its start routine on a new host thread at `PASSIVE_LEVEL`. Its thread
//! object begins with a dispatcher header (see `event`) that becomes signaled when the start
//! routine returns, so `KeWaitForSingleObject` on the object waits for the thread to exit.
//! The object counts its references: the handle `PsCreateSystemThread` returns, every
//! `ObReferenceObjectByHandle`, and the running thread itself. Its memory is never reused: when
//! the last reference goes it is only marked dead, so a later use is reported, not undefined.
//!
//! At session teardown [`check_leaks`] reports handles never closed, references never
//! released and threads still running, then forgets them.
//!
//! `PsTerminateSystemThread` cannot unwind through the driver's `extern "C"` start routine, so
//! in the simulation it records the exit status and returns `STATUS_SUCCESS`; the start routine
//! must return right after calling it (returning from the start routine is the normal way for a
//! system thread to end, on Windows too).

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use super::event::{self, Kind};
use super::table::Entry;
use super::verifier::{self, rules};

pub(crate) const ENTRIES: &[Entry] = &[];

/// A simulated thread object. The header must come first: waits read it.
#[repr(C)]
pub(crate) struct ThreadObject {
    header: crate::types::KEVENT,
    id: u64,
}

impl ThreadObject {
    fn word(&self) -> &AtomicU64 {
        // SAFETY: the header is the first field of a live, 8-byte-aligned object.
        unsafe { event::state_word((&raw const self.header).cast()) }
    }
}

struct Record {
    id: u64,
    references: usize,
    running: bool,
}

#[derive(Default)]
struct Registry {
    /// Open handle value → object address.
    handles: HashMap<usize, usize>,
    /// Object address → its bookkeeping.
    objects: HashMap<usize, Record>,
    /// Addresses of dead thread objects: never freed (see the module documentation), and kept
    /// here so that they stay reachable, which leak checkers count as not leaked.
    dead: Vec<usize>,
    next_handle: usize,
    next_id: u64,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// The system thread object of the calling host thread, if it is one.
    static CURRENT: Cell<usize> = const { Cell::new(0) };
    /// The calling host thread's id as `PsGetCurrentThreadId` reports it (0: not assigned yet).
    static THREAD_ID: Cell<usize> = const { Cell::new(0) };
}

/// Ids for host threads that are not system threads (test threads, framework workers): far
/// above the ids of system threads, so the two never meet.
static NEXT_HOST_THREAD_ID: AtomicUsize = AtomicUsize::new(1 << 24);

/// The id of the calling thread: a system thread's `UniqueThread` (its number times 4, as
/// `PsCreateSystemThread` reports in `ClientId`), or a stable id of its own for any other
/// thread.
fn current_thread_id() -> usize {
    THREAD_ID.with(|id| {
        if id.get() == 0 {
            id.set(NEXT_HOST_THREAD_ID.fetch_add(1, Ordering::Relaxed) * 4);
        }
        id.get()
    })
}

/// Kernel handles have the top bit set (`OBJ_KERNEL_HANDLE`); the low two bits are always clear.
const KERNEL_HANDLE_BASE: usize = 0xFFFF_FFFF_8000_0000;

/// The value `*PsThreadType` points at: only its address matters.
pub(crate) static mut THREAD_OBJECT_TYPE: u64 = 0;
/// What `PsThreadType` points at.
pub(crate) static mut THREAD_TYPE: crate::types::POBJECT_TYPE =
    (&raw mut THREAD_OBJECT_TYPE).cast();

/// Drops one reference; at zero the object is marked dead (its memory is kept, see the module
/// documentation). Returns the references left, or `None` for an unknown object.
fn release(registry: &mut Registry, address: usize) -> Option<usize> {
    let record = registry.objects.get_mut(&address)?;
    record.references -= 1;
    let left = record.references;
    if left == 0 {
        registry.objects.remove(&address);
        registry.dead.push(address);
        // SAFETY: thread objects are never freed, so the address stays valid.
        let object = unsafe { &*(address as *const ThreadObject) };
        event::change_kind(object.word(), Kind::DeadThread);
    }
    Some(left)
}

/// Reports handles never closed, references never released and threads still running, then
/// forgets them so the next session starts clean. Called by `sim::Session` at teardown.
pub(crate) fn check_leaks() {
    let mut registry = registry();
    let handles = core::mem::take(&mut registry.handles);
    let mut leaked_references: HashMap<usize, usize> = HashMap::new();
    let mut handle_list: Vec<_> = handles.into_iter().collect();
    handle_list.sort_unstable();
    for (handle, address) in handle_list {
        *leaked_references.entry(address).or_default() += 1;
        let id = registry.objects.get(&address).map_or(0, |record| record.id);
        verifier::report(
            rules::KERNEL_HANDLE_LEAKED,
            format!("handle {handle:#x}"),
            format!("handle to system thread #{id} never closed (ZwClose)"),
        );
    }
    let objects = core::mem::take(&mut registry.objects);
    let mut object_list: Vec<_> = objects.into_iter().collect();
    object_list.sort_unstable_by_key(|(_, record)| record.id);
    for (address, record) in object_list {
        if record.running {
            verifier::report(
                rules::SYSTEM_THREAD_RUNNING,
                format!("system thread #{}", record.id),
                "still running; a driver must wait for its threads to exit before it unloads"
                    .to_string(),
            );
        }
        let from_handles = leaked_references.get(&address).copied().unwrap_or(0);
        let extra = record.references - usize::from(record.running) - from_handles;
        if extra > 0 {
            verifier::report(
                rules::KERNEL_HANDLE_LEAKED,
                format!("thread object {address:#x}"),
                format!(
                    "{extra} reference(s) to system thread #{} from ObReferenceObjectByHandle never released (ObfDereferenceObject)",
                    record.id
                ),
            );
        }
    }
}

/// The system thread's body: runs the start routine at `PASSIVE_LEVEL`, then signals the object
/// and drops the thread's own reference.
fn run(
    address: usize,
    id: u64,
    routine: unsafe extern "C" fn(crate::types::PVOID),
    context: usize,
) {
    CURRENT.with(|current| current.set(address));
    THREAD_ID.with(|thread_id| thread_id.set(id as usize * 4));
    super::irql::set(super::irql::PASSIVE);
    super::irql::run_callback(super::irql::PASSIVE, "system thread start routine", || {
        // SAFETY: the driver handed this routine and context to PsCreateSystemThread.
        unsafe { routine(context as crate::types::PVOID) };
    });
    let mut registry = registry();
    // SAFETY: thread objects are never freed.
    let object = unsafe { &*(address as *const ThreadObject) };
    event::signal(object.word());
    if let Some(record) = registry.objects.get_mut(&address) {
        record.running = false;
        release(&mut registry, address);
    }
    drop(registry);
    CURRENT.with(|current| current.set(0));
}

/// The kernel functions of this area.
#[allow(non_snake_case)]
pub mod kernel {
    use super::{KERNEL_HANDLE_BASE, Kind, Record, ThreadObject, registry, release};
    use crate::constants::{
        STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_HANDLE, STATUS_INVALID_PARAMETER,
        STATUS_OBJECT_TYPE_MISMATCH, STATUS_SUCCESS, THREAD_ALL_ACCESS,
    };
    use crate::framework::verifier::{self, rules};
    use crate::framework::{event, faults, irql};
    use crate::types::{
        ACCESS_MASK, BOOLEAN, HANDLE, KPROCESSOR_MODE, LONG_PTR, NTSTATUS, OBJECT_ATTRIBUTES,
        PCLIENT_ID, PHANDLE, PKSTART_ROUTINE, PLARGE_INTEGER, POBJECT_ATTRIBUTES,
        POBJECT_HANDLE_INFORMATION, POBJECT_TYPE, PVOID, ULONG,
    };

    /// Creates a system thread that runs `StartRoutine(StartContext)` at `PASSIVE_LEVEL` and
    /// returns a kernel handle to it. `PASSIVE_LEVEL` only.
    #[must_use]
    pub unsafe extern "C" fn PsCreateSystemThread(
        ThreadHandle: PHANDLE,
        _DesiredAccess: ULONG,
        ObjectAttributes: POBJECT_ATTRIBUTES,
        _ProcessHandle: HANDLE,
        ClientId: PCLIENT_ID,
        StartRoutine: PKSTART_ROUTINE,
        StartContext: PVOID,
    ) -> NTSTATUS {
        const API: &str = "PsCreateSystemThread";
        if !irql::require_passive(API) {
            return STATUS_INVALID_DEVICE_REQUEST;
        }
        let Some(routine) = StartRoutine else {
            verifier::report(
                rules::INVALID_ARGUMENT,
                API,
                "null StartRoutine".to_string(),
            );
            return STATUS_INVALID_PARAMETER;
        };
        if ThreadHandle.is_null() {
            verifier::report(
                rules::INVALID_ARGUMENT,
                API,
                "null ThreadHandle".to_string(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        if !ObjectAttributes.is_null() {
            // SAFETY: a non-null OBJECT_ATTRIBUTES pointer is readable by the API contract.
            let length = unsafe { (*ObjectAttributes).Length };
            if length as usize != size_of::<OBJECT_ATTRIBUTES>() {
                verifier::report(
                    rules::BAD_STRUCTURE_SIZE,
                    API,
                    format!(
                        "OBJECT_ATTRIBUTES.Length is {length}, expected {}",
                        size_of::<OBJECT_ATTRIBUTES>()
                    ),
                );
                return STATUS_INVALID_PARAMETER;
            }
        }
        if let Err(status) = faults::hit(faults::FaultPoint::Allocation) {
            return status;
        }
        let mut registry = registry();
        registry.next_id += 1;
        let id = registry.next_id;
        registry.next_handle += 1;
        let handle = KERNEL_HANDLE_BASE + registry.next_handle * 4;
        let object: &'static ThreadObject = Box::leak(Box::new(ThreadObject {
            header: crate::types::KEVENT::default(),
            id,
        }));
        event::initialize(object.word(), Kind::Thread, false);
        let address = core::ptr::from_ref(object) as usize;
        registry.handles.insert(handle, address);
        // The handle and the running thread each hold a reference.
        registry.objects.insert(
            address,
            Record {
                id,
                references: 2,
                running: true,
            },
        );
        drop(registry);
        let context = StartContext as usize;
        let spawned = std::thread::Builder::new()
            .name(format!("kmdf-sim-system-thread-{id}"))
            .spawn(move || super::run(address, id, routine, context));
        if spawned.is_err() {
            let mut registry = super::registry();
            registry.handles.remove(&handle);
            registry.objects.remove(&address);
            return crate::constants::STATUS_INSUFFICIENT_RESOURCES;
        }
        // SAFETY: `ThreadHandle` is non-null and writable by the API contract.
        unsafe { ThreadHandle.write(handle as HANDLE) };
        if !ClientId.is_null() {
            // SAFETY: a non-null ClientId is writable by the API contract.
            unsafe {
                ClientId.write(crate::types::CLIENT_ID {
                    UniqueProcess: 4 as HANDLE,
                    UniqueThread: (id as usize * 4) as HANDLE,
                });
            }
        }
        STATUS_SUCCESS
    }

    /// Takes a reference on the object behind a handle. Only thread handles exist here, so
    /// `ObjectType` must be null or `*PsThreadType`. `PASSIVE_LEVEL` only.
    #[must_use]
    pub unsafe extern "C" fn ObReferenceObjectByHandle(
        Handle: HANDLE,
        _DesiredAccess: ACCESS_MASK,
        ObjectType: POBJECT_TYPE,
        _AccessMode: KPROCESSOR_MODE,
        Object: *mut PVOID,
        HandleInformation: POBJECT_HANDLE_INFORMATION,
    ) -> NTSTATUS {
        const API: &str = "ObReferenceObjectByHandle";
        if !irql::require_passive(API) {
            return STATUS_INVALID_DEVICE_REQUEST;
        }
        if Object.is_null() {
            verifier::report(
                rules::INVALID_ARGUMENT,
                API,
                "null Object out pointer".to_string(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        // SAFETY: only the address of the static is taken.
        let thread_type = unsafe { super::THREAD_TYPE };
        if !ObjectType.is_null() && ObjectType != thread_type {
            return STATUS_OBJECT_TYPE_MISMATCH;
        }
        let mut registry = registry();
        let Some(&address) = registry.handles.get(&(Handle as usize)) else {
            drop(registry);
            verifier::report(
                rules::INVALID_HANDLE,
                API,
                format!("{Handle:p} is not an open kernel handle"),
            );
            return STATUS_INVALID_HANDLE;
        };
        if let Some(record) = registry.objects.get_mut(&address) {
            record.references += 1;
        }
        drop(registry);
        // SAFETY: `Object` is non-null and writable by the API contract.
        unsafe { Object.write(address as PVOID) };
        if !HandleInformation.is_null() {
            // SAFETY: a non-null HandleInformation is writable by the API contract.
            unsafe { (*HandleInformation).HandleAttributes = 0 };
            // SAFETY: as above.
            unsafe { (*HandleInformation).GrantedAccess = THREAD_ALL_ACCESS };
        }
        STATUS_SUCCESS
    }

    /// Releases a reference taken by `ObReferenceObjectByHandle`; returns the references left.
    pub unsafe extern "C" fn ObfDereferenceObject(Object: PVOID) -> LONG_PTR {
        const API: &str = "ObfDereferenceObject";
        if !irql::require_at_most(irql::DISPATCH, API) {
            return 0;
        }
        let mut registry = registry();
        if let Some(left) = release(&mut registry, Object as usize) {
            return LONG_PTR::try_from(left).unwrap_or(LONG_PTR::MAX);
        }
        drop(registry);
        verifier::report(
            rules::INVALID_HANDLE,
            API,
            format!("{Object:p} is not a referenced kernel object (already dereferenced?)"),
        );
        0
    }

    /// Closes a kernel handle. `PASSIVE_LEVEL` only.
    #[must_use]
    pub unsafe extern "C" fn ZwClose(Handle: HANDLE) -> NTSTATUS {
        const API: &str = "ZwClose";
        if !irql::require_passive(API) {
            return STATUS_INVALID_DEVICE_REQUEST;
        }
        let mut registry = registry();
        let Some(address) = registry.handles.remove(&(Handle as usize)) else {
            drop(registry);
            verifier::report(
                rules::INVALID_HANDLE,
                API,
                format!("{Handle:p} is not an open kernel handle"),
            );
            return STATUS_INVALID_HANDLE;
        };
        release(&mut registry, address);
        STATUS_SUCCESS
    }

    /// Ends the calling system thread. The simulation cannot unwind through the driver's
    /// start routine, so it returns `STATUS_SUCCESS` and the routine must return at once; the
    /// thread object is signaled when it does. From a thread that is not a system thread it
    /// reports and returns `STATUS_INVALID_PARAMETER`, as the kernel does.
    #[must_use]
    pub unsafe extern "C" fn PsTerminateSystemThread(_ExitStatus: NTSTATUS) -> NTSTATUS {
        const API: &str = "PsTerminateSystemThread";
        if super::CURRENT.with(std::cell::Cell::get) == 0 {
            verifier::report(
                rules::NOT_A_SYSTEM_THREAD,
                API,
                "the calling thread is not a system thread".to_string(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        if !irql::require_passive(API) {
            return STATUS_INVALID_DEVICE_REQUEST;
        }
        STATUS_SUCCESS
    }

    /// The calling thread's id. A system thread's is the `UniqueThread` value
    /// `PsCreateSystemThread` returned in its `ClientId`; every other thread has a distinct,
    /// stable id of its own. Any IRQL.
    #[must_use]
    pub unsafe extern "C" fn PsGetCurrentThreadId() -> HANDLE {
        super::current_thread_id() as HANDLE
    }

    /// Puts the calling thread to sleep for a relative (negative, 100 ns units) or until an
    /// absolute (positive, system time) interval. A wait: `PASSIVE_LEVEL` or `APC_LEVEL` only.
    #[must_use]
    pub unsafe extern "C" fn KeDelayExecutionThread(
        _WaitMode: KPROCESSOR_MODE,
        _Alertable: BOOLEAN,
        Interval: PLARGE_INTEGER,
    ) -> NTSTATUS {
        const API: &str = "KeDelayExecutionThread";
        if Interval.is_null() {
            verifier::report(rules::INVALID_ARGUMENT, API, "null Interval".to_string());
            return STATUS_INVALID_PARAMETER;
        }
        // SAFETY: non-null and readable by the API contract.
        let interval = unsafe { event::read_timeout(Interval) };
        // A delay is a wait even when its interval is zero.
        if !event::check_wait_irql(None, API) {
            return STATUS_INVALID_DEVICE_REQUEST;
        }
        if let Some(deadline) = event::deadline(interval) {
            let now = std::time::Instant::now();
            if deadline > now {
                std::thread::sleep(deadline - now);
            }
        }
        STATUS_SUCCESS
    }
}
