//! Framework objects: handles, parent/child trees, cleanup and destroy callbacks in KMDF's order,
//! typed context areas and reference counts.
//!
//! A handle is a unique number, never reused, so a stale handle is always caught. Deleting an
//! object runs the cleanup callbacks of its children before its own, then drops each object's
//! creation reference, children first; an object is destroyed (destroy callbacks, context freed)
//! when its last reference goes.

use std::alloc::Layout;
use std::any::Any;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::irql;
use super::table::Entry;
use super::verifier::{self, rules};
use super::{faults, wdf_entry};
use crate::constants::{
    STATUS_INFO_LENGTH_MISMATCH, STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_PARAMETER,
    STATUS_OBJECT_NAME_EXISTS, STATUS_SUCCESS,
};
use crate::types::{
    _WDF_OBJECT_CONTEXT_TYPE_INFO, LONG, NTSTATUS, PCCH, PCWDF_OBJECT_CONTEXT_TYPE_INFO, PVOID,
    PWDF_DRIVER_GLOBALS, PWDF_OBJECT_ATTRIBUTES, WDF_OBJECT_ATTRIBUTES, WDFOBJECT,
};

/// Alignment of context areas (KMDF's `MEMORY_ALLOCATION_ALIGNMENT` on x64).
const CONTEXT_ALIGNMENT: usize = 16;

/// What an object type adds to the generic object.
pub(crate) trait Payload: Any + Send + Sync {
    /// Runs when deletion starts, before the driver's cleanup callbacks, with no framework lock
    /// held (a timer stops, a work item is flushed, ...).
    fn dispose(&self, _handle: usize) {}

    /// Whether the driver may delete this object itself; the error says why not.
    fn driver_may_delete(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

impl Payload for () {}

type CleanupCallback = unsafe extern "C" fn(WDFOBJECT);

struct ContextArea {
    unique_type: usize,
    memory: *mut u8,
    layout: Layout,
}

// SAFETY: the area is a private heap allocation owned by its object; the pointer is only handed
// to the driver, which synchronizes its own use of the context as on Windows.
unsafe impl Send for ContextArea {}

struct State {
    parent: usize,
    children: Vec<usize>,
    cleanup: Vec<CleanupCallback>,
    destroy: Vec<CleanupCallback>,
    contexts: Vec<ContextArea>,
    references: usize,
    cleanup_started: bool,
    creation_reference_released: bool,
}

/// One framework object.
pub(crate) struct Object {
    /// Its handle value.
    pub(crate) handle: usize,
    /// Its KMDF type name, e.g. `"WDFMEMORY"`.
    pub(crate) kind: &'static str,
    payload: Box<dyn Payload>,
    state: Mutex<State>,
}

impl Object {
    /// The type-specific part, if it is a `T`.
    pub(crate) fn payload<T: Payload>(&self) -> Option<&T> {
        let any: &dyn Any = self.payload.as_ref();
        any.downcast_ref::<T>()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The parent handle (0 for none).
    pub(crate) fn parent(&self) -> usize {
        self.state().parent
    }

    /// Whether deletion has started.
    pub(crate) fn is_deleting(&self) -> bool {
        self.state().cleanup_started
    }
}

impl core::fmt::Display for Object {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} {:#x}", self.kind, self.handle)
    }
}

/// One shard of the handle registry. Handles are spread over [`SHARDS`] shards, each behind
/// its own `RwLock`, so the lookups every WDF call makes (read-only) neither serialize on one
/// global lock nor contend with creations and deletions of other objects.
#[derive(Default)]
struct Registry {
    live: HashMap<usize, Arc<Object>, HandleHash>,
    deleted: HashMap<usize, &'static str, HandleHash>,
}

const SHARDS: usize = 16;

static REGISTRY: [RwLock<Registry>; SHARDS] = [const {
    RwLock::new(Registry {
        live: HashMap::with_hasher(HandleHash),
        deleted: HashMap::with_hasher(HandleHash),
    })
}; SHARDS];

/// Hashes a handle value (handles are distinct multiples of 16): a multiplicative hash, far
/// cheaper than the default `SipHash`, and good enough for keys the simulation itself issues.
#[derive(Clone, Copy, Default)]
struct HandleHash;

impl BuildHasher for HandleHash {
    type Hasher = HandleHasher;
    fn build_hasher(&self) -> HandleHasher {
        HandleHasher(0)
    }
}

struct HandleHasher(u64);

impl Hasher for HandleHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, value: usize) {
        self.0 = (value as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

fn shard_index(handle: usize) -> usize {
    (handle >> 4) % SHARDS
}

fn shard(handle: usize) -> RwLockReadGuard<'static, Registry> {
    REGISTRY[shard_index(handle)]
        .read()
        .unwrap_or_else(PoisonError::into_inner)
}

fn shard_mut(handle: usize) -> RwLockWriteGuard<'static, Registry> {
    REGISTRY[shard_index(handle)]
        .write()
        .unwrap_or_else(PoisonError::into_inner)
}

fn all_shards_mut() -> impl Iterator<Item = RwLockWriteGuard<'static, Registry>> {
    REGISTRY
        .iter()
        .map(|shard| shard.write().unwrap_or_else(PoisonError::into_inner))
}

fn all_live() -> Vec<Arc<Object>> {
    REGISTRY
        .iter()
        .flat_map(|shard| {
            shard
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .live
                .values()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect()
}

static NEXT_HANDLE: AtomicUsize = AtomicUsize::new(0x0010_0000);
static DEFAULT_PARENT: AtomicUsize = AtomicUsize::new(0);

/// Handle value of a WDF handle pointer.
pub(crate) fn handle_of<T>(handle: *mut T) -> usize {
    handle as usize
}

/// WDF handle pointer of a handle value.
pub(crate) fn handle_ptr<T>(handle: usize) -> *mut T {
    handle as *mut T
}

thread_local! {
    /// The WDFDRIVER whose code runs on this thread (0: none known).
    static CURRENT_DRIVER: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// The parent new objects get when the driver names none: the WDFDRIVER whose code is running
/// (several drivers can be loaded in one simulation), else the first driver loaded (code
/// running on a test's own thread).
pub(crate) fn default_parent() -> usize {
    match CURRENT_DRIVER.with(core::cell::Cell::get) {
        0 => DEFAULT_PARENT.load(Ordering::Acquire),
        driver => driver,
    }
}

/// Sets the fallback default parent (the first driver object), or 0.
pub(crate) fn set_default_parent(handle: usize) {
    DEFAULT_PARENT.store(handle, Ordering::Release);
}

/// The driver whose code runs on this thread, if known.
pub(crate) fn current_driver() -> usize {
    CURRENT_DRIVER.with(core::cell::Cell::get)
}

/// Marks `driver` as the driver whose code runs on this thread until the matching
/// [`with_driver`] returns (used by `WdfDriverCreate` inside `DriverEntry`).
pub(crate) fn enter_driver(driver: usize) {
    CURRENT_DRIVER.with(|current| current.set(driver));
}

/// Runs `f` as code of `driver` (0 leaves the thread's driver as it is).
pub(crate) fn with_driver<R>(driver: usize, f: impl FnOnce() -> R) -> R {
    if driver == 0 {
        return f();
    }
    let previous = CURRENT_DRIVER.with(|current| current.replace(driver));
    let result = f();
    CURRENT_DRIVER.with(|current| current.set(previous));
    result
}

/// The WDFDRIVER an object belongs to (found through its parents), or 0.
pub(crate) fn driver_of(handle: usize) -> usize {
    let mut handle = handle;
    while handle != 0 {
        let Some(object) = live_object(handle) else {
            return 0;
        };
        if object.kind == crate::framework::device::DRIVER_KIND {
            return handle;
        }
        handle = object.parent();
    }
    0
}

/// What a creation reads from a caller's `WDF_OBJECT_ATTRIBUTES`.
#[derive(Default)]
pub(crate) struct Attributes {
    parent: Option<usize>,
    cleanup: Option<CleanupCallback>,
    destroy: Option<CleanupCallback>,
    context: Option<(usize, usize)>,
}

impl Attributes {
    /// Reads and validates the caller's attributes (null means none).
    pub(crate) fn read(attributes: PWDF_OBJECT_ATTRIBUTES, api: &str) -> Result<Self, NTSTATUS> {
        if attributes.is_null() {
            return Ok(Self::default());
        }
        // SAFETY: a non-null attributes pointer is a valid WDF_OBJECT_ATTRIBUTES by the API contract.
        let attributes: WDF_OBJECT_ATTRIBUTES = unsafe { attributes.read() };
        if attributes.Size as usize != size_of::<WDF_OBJECT_ATTRIBUTES>() {
            verifier::report(
                rules::BAD_STRUCTURE_SIZE,
                api,
                format!(
                    "WDF_OBJECT_ATTRIBUTES.Size is {}, expected {}",
                    attributes.Size,
                    size_of::<WDF_OBJECT_ATTRIBUTES>()
                ),
            );
            return Err(STATUS_INFO_LENGTH_MISMATCH);
        }
        let context = if attributes.ContextTypeInfo.is_null() {
            None
        } else {
            let info = read_type_info(attributes.ContextTypeInfo);
            Some((info.0, info.1.max(attributes.ContextSizeOverride)))
        };
        let parent = handle_of(attributes.ParentObject);
        Ok(Self {
            parent: (parent != 0).then_some(parent),
            cleanup: attributes.EvtCleanupCallback,
            destroy: attributes.EvtDestroyCallback,
            context,
        })
    }

    /// The parent named by the attributes, if any.
    pub(crate) fn parent(&self) -> Option<usize> {
        self.parent
    }
}

/// Returns (unique type key, context size) of a type info.
fn read_type_info(info: PCWDF_OBJECT_CONTEXT_TYPE_INFO) -> (usize, usize) {
    // SAFETY: context type infos are statics the driver declares; a non-null pointer is valid.
    let value: _WDF_OBJECT_CONTEXT_TYPE_INFO = unsafe { info.read() };
    let unique = if value.UniqueType.is_null() {
        info as usize
    } else {
        value.UniqueType as usize
    };
    (unique, value.ContextSize)
}

fn new_context(unique_type: usize, size: usize) -> Result<ContextArea, NTSTATUS> {
    let layout = Layout::from_size_align(size.max(1), CONTEXT_ALIGNMENT)
        .map_err(|_| STATUS_INVALID_PARAMETER)?;
    // SAFETY: the layout has a nonzero size.
    let memory = unsafe { std::alloc::alloc_zeroed(layout) };
    if memory.is_null() {
        return Err(STATUS_INSUFFICIENT_RESOURCES);
    }
    Ok(ContextArea {
        unique_type,
        memory,
        layout,
    })
}

fn free_context(area: &ContextArea) {
    // SAFETY: `memory` came from `alloc_zeroed` with exactly this layout and is freed once, when
    // its object is destroyed.
    unsafe { std::alloc::dealloc(area.memory, area.layout) };
}

/// Creates an object of `kind` under the parent the attributes name, else under
/// `default_parent` (0: no parent).
pub(crate) fn create(
    kind: &'static str,
    attributes: &Attributes,
    default_parent: usize,
    payload: Box<dyn Payload>,
) -> Result<usize, NTSTATUS> {
    faults::hit(faults::FaultPoint::ObjectCreation)?;
    let parent = attributes.parent.unwrap_or(default_parent);
    let parent_object = if parent == 0 {
        None
    } else {
        let object = lookup(parent, None, kind).ok_or(STATUS_INVALID_PARAMETER)?;
        if object.is_deleting() {
            verifier::report(
                rules::INVALID_ARGUMENT,
                kind,
                format!("parent {object} is being deleted"),
            );
            return Err(STATUS_INVALID_PARAMETER);
        }
        Some(object)
    };
    let mut contexts = Vec::new();
    if let Some((unique, size)) = attributes.context {
        contexts.push(new_context(unique, size)?);
    }
    let handle = NEXT_HANDLE.fetch_add(0x10, Ordering::Relaxed);
    let object = Arc::new(Object {
        handle,
        kind,
        payload,
        state: Mutex::new(State {
            parent,
            children: Vec::new(),
            cleanup: attributes.cleanup.into_iter().collect(),
            destroy: attributes.destroy.into_iter().collect(),
            contexts,
            references: 1,
            cleanup_started: false,
            creation_reference_released: false,
        }),
    });
    shard_mut(handle).live.insert(handle, object);
    if let Some(parent) = parent_object {
        parent.state().children.push(handle);
    }
    faults::object_born();
    Ok(handle)
}

/// Finds a live object; reports a stale or wrong-typed handle on behalf of `api`.
pub(crate) fn lookup(handle: usize, kind: Option<&str>, api: &str) -> Option<Arc<Object>> {
    let registry = shard(handle);
    let Some(object) = registry.live.get(&handle).cloned() else {
        let what = registry.deleted.get(&handle).map_or_else(
            || format!("{handle:#x} is not a handle"),
            |kind| format!("{kind} {handle:#x} was already deleted"),
        );
        drop(registry);
        verifier::report(rules::INVALID_HANDLE, api, what);
        return None;
    };
    drop(registry);
    if let Some(kind) = kind
        && !same_kind(object.kind, kind)
    {
        verifier::report(
            rules::WRONG_HANDLE_TYPE,
            api,
            format!("{object} passed where a {kind} is required"),
        );
        return None;
    }
    Some(object)
}

/// Whether two KMDF type names are equal: the same static string (the usual case: every
/// caller passes its module's `KIND` constant) or equal bytes.
fn same_kind(a: &str, b: &str) -> bool {
    core::ptr::eq(a, b) || a == b
}

/// Finds a live object without reporting anything when it is gone (framework-internal paths
/// that may race with deletion).
pub(crate) fn live_object(handle: usize) -> Option<Arc<Object>> {
    shard(handle).live.get(&handle).cloned()
}

/// Finds a live object and its payload of type `T`.
pub(crate) fn lookup_payload<T: Payload>(
    handle: usize,
    kind: &str,
    api: &str,
) -> Option<Arc<Object>> {
    lookup(handle, Some(kind), api).filter(|object| object.payload::<T>().is_some())
}

/// `WdfObjectDelete` on behalf of the driver.
pub(crate) fn driver_delete(handle: usize, api: &str) {
    let Some(object) = lookup(handle, None, api) else {
        return;
    };
    if let Err(why) = object.payload.driver_may_delete() {
        verifier::report(rules::INVALID_DELETE, &object, why.to_string());
        return;
    }
    if object.is_deleting() {
        verifier::report(rules::INVALID_DELETE, &object, "deleted twice".to_string());
        return;
    }
    delete(&object);
}

/// Deletes an object and its descendants (framework-initiated deletes come here directly).
pub(crate) fn delete(object: &Arc<Object>) {
    run_cleanup(object);
    release_creation_reference(object);
}

fn children_of(object: &Object) -> Vec<Arc<Object>> {
    let children = object.state().children.clone();
    children
        .iter()
        .filter_map(|&child| shard(child).live.get(&child).cloned())
        .collect()
}

fn run_cleanup(object: &Arc<Object>) {
    {
        let mut state = object.state();
        if state.cleanup_started {
            return;
        }
        state.cleanup_started = true;
    }
    for child in children_of(object).iter().rev() {
        run_cleanup(child);
    }
    object.payload.dispose(object.handle);
    let callbacks = core::mem::take(&mut object.state().cleanup);
    for callback in callbacks {
        irql::run_callback(irql::current(), "EvtCleanupCallback", || {
            // SAFETY: the driver registered this callback for this object, which is still alive.
            unsafe { callback(handle_ptr(object.handle)) }
        });
    }
}

fn release_creation_reference(object: &Arc<Object>) {
    for child in children_of(object) {
        release_creation_reference(&child);
    }
    {
        let mut state = object.state();
        if state.creation_reference_released {
            return;
        }
        state.creation_reference_released = true;
    }
    drop_reference(object);
}

fn drop_reference(object: &Arc<Object>) {
    let last = {
        let mut state = object.state();
        state.references -= 1;
        state.references == 0
    };
    if last {
        destroy(object);
    }
}

fn destroy(object: &Arc<Object>) {
    let callbacks = core::mem::take(&mut object.state().destroy);
    for callback in callbacks {
        irql::run_callback(irql::current(), "EvtDestroyCallback", || {
            // SAFETY: the driver registered this callback; the context is still allocated.
            unsafe { callback(handle_ptr(object.handle)) }
        });
    }
    let (contexts, parent) = {
        let mut state = object.state();
        (core::mem::take(&mut state.contexts), state.parent)
    };
    for area in &contexts {
        free_context(area);
    }
    {
        let mut registry = shard_mut(object.handle);
        registry.live.remove(&object.handle);
        registry.deleted.insert(object.handle, object.kind);
    }
    let parent = shard(parent).live.get(&parent).cloned();
    if let Some(parent) = parent {
        parent
            .state()
            .children
            .retain(|&child| child != object.handle);
    }
    faults::object_died();
}

/// Takes a reference (framework-internal, e.g. a sent request on its target).
pub(crate) fn reference(object: &Object) {
    object.state().references += 1;
}

/// Drops a reference taken with [`reference`].
pub(crate) fn dereference(object: &Arc<Object>, api: &str) {
    {
        let state = object.state();
        if state.references == 1 && !state.creation_reference_released {
            drop(state);
            verifier::report(
                rules::UNBALANCED_DEREFERENCE,
                object,
                format!("{api} would drop the reference the object holds until it is deleted"),
            );
            return;
        }
    }
    drop_reference(object);
}

/// Live objects whose deletion has not begun: neither deleted by the driver nor by a parent's
/// deletion. (An object deleted while the framework still holds a reference on it, a work item
/// whose callback is just returning, say, stays live until that reference goes, but is not
/// counted here.)
pub(crate) fn undeleted_count() -> usize {
    all_live()
        .iter()
        .filter(|object| !object.state().cleanup_started)
        .count()
}

/// Every live object, oldest first.
pub(crate) fn live_objects() -> Vec<Arc<Object>> {
    let mut live = all_live();
    live.sort_by_key(|object| object.handle);
    live
}

/// Forgets every object (between test sessions); their memory is leaked on purpose so that a
/// failed test cannot corrupt the next one.
pub(crate) fn reset() {
    for mut registry in all_shards_mut() {
        let objects = core::mem::take(&mut registry.live);
        if objects.is_empty() {
            // Nothing left behind: free the table itself (forgetting it would leak it).
            drop(objects);
        } else {
            core::mem::forget(objects);
        }
        registry.deleted.clear();
    }
    set_default_parent(0);
}

/// The context area of `unique_type` on an object, or null.
fn context_of(object: &Object, unique_type: usize) -> PVOID {
    object
        .state()
        .contexts
        .iter()
        .find(|area| area.unique_type == unique_type)
        .map_or(core::ptr::null_mut(), |area| area.memory.cast())
}

unsafe extern "C" fn wdf_object_delete(_globals: PWDF_DRIVER_GLOBALS, object: WDFOBJECT) {
    driver_delete(handle_of(object), "WdfObjectDelete");
}

unsafe extern "C" fn wdf_object_get_typed_context_worker(
    _globals: PWDF_DRIVER_GLOBALS,
    handle: WDFOBJECT,
    type_info: PCWDF_OBJECT_CONTEXT_TYPE_INFO,
) -> PVOID {
    let Some(object) = lookup(handle_of(handle), None, "WdfObjectGetTypedContextWorker") else {
        return core::ptr::null_mut();
    };
    if type_info.is_null() {
        verifier::report(
            rules::INVALID_ARGUMENT,
            "WdfObjectGetTypedContextWorker",
            "null type info".to_string(),
        );
        return core::ptr::null_mut();
    }
    context_of(&object, read_type_info(type_info).0)
}

unsafe extern "C" fn wdf_object_allocate_context(
    _globals: PWDF_DRIVER_GLOBALS,
    handle: WDFOBJECT,
    attributes: PWDF_OBJECT_ATTRIBUTES,
    context: *mut PVOID,
) -> NTSTATUS {
    const API: &str = "WdfObjectAllocateContext";
    let Some(object) = lookup(handle_of(handle), None, API) else {
        return STATUS_INVALID_PARAMETER;
    };
    let attributes = match Attributes::read(attributes, API) {
        Ok(attributes) => attributes,
        Err(status) => return status,
    };
    let Some((unique, size)) = attributes.context else {
        verifier::report(
            rules::INVALID_ARGUMENT,
            API,
            "attributes name no context type".to_string(),
        );
        return STATUS_INVALID_PARAMETER;
    };
    if object.is_deleting() {
        return crate::constants::STATUS_DELETE_PENDING;
    }
    let mut state = object.state();
    if let Some(existing) = state
        .contexts
        .iter()
        .find(|area| area.unique_type == unique)
    {
        if !context.is_null() {
            // SAFETY: a non-null out pointer is writable by the API contract.
            unsafe { context.write(existing.memory.cast()) };
        }
        return STATUS_OBJECT_NAME_EXISTS;
    }
    let area = match new_context(unique, size) {
        Ok(area) => area,
        Err(status) => return status,
    };
    if !context.is_null() {
        // SAFETY: a non-null out pointer is writable by the API contract.
        unsafe { context.write(area.memory.cast()) };
    }
    state.contexts.push(area);
    state.cleanup.extend(attributes.cleanup);
    state.destroy.extend(attributes.destroy);
    STATUS_SUCCESS
}

unsafe extern "C" fn wdf_object_context_get_object(
    _globals: PWDF_DRIVER_GLOBALS,
    context: PVOID,
) -> WDFOBJECT {
    all_live()
        .iter()
        .find(|object| {
            object
                .state()
                .contexts
                .iter()
                .any(|area| area.memory.cast() == context)
        })
        .map_or(core::ptr::null_mut(), |object| handle_ptr(object.handle))
}

unsafe extern "C" fn wdf_object_reference_actual(
    _globals: PWDF_DRIVER_GLOBALS,
    handle: WDFOBJECT,
    _tag: PVOID,
    _line: LONG,
    _file: PCCH,
) {
    if let Some(object) = lookup(handle_of(handle), None, "WdfObjectReferenceActual") {
        reference(&object);
    }
}

unsafe extern "C" fn wdf_object_dereference_actual(
    _globals: PWDF_DRIVER_GLOBALS,
    handle: WDFOBJECT,
    _tag: PVOID,
    _line: LONG,
    _file: PCCH,
) {
    if let Some(object) = lookup(handle_of(handle), None, "WdfObjectDereferenceActual") {
        dereference(&object, "WdfObjectDereference");
    }
}

pub(crate) const ENTRIES: &[Entry] = &[
    wdf_entry!(
        WdfObjectDeleteTableIndex,
        PFN_WDFOBJECTDELETE,
        wdf_object_delete
    ),
    wdf_entry!(
        WdfObjectGetTypedContextWorkerTableIndex,
        PFN_WDFOBJECTGETTYPEDCONTEXTWORKER,
        wdf_object_get_typed_context_worker
    ),
    wdf_entry!(
        WdfObjectAllocateContextTableIndex,
        PFN_WDFOBJECTALLOCATECONTEXT,
        wdf_object_allocate_context
    ),
    wdf_entry!(
        WdfObjectContextGetObjectTableIndex,
        PFN_WDFOBJECTCONTEXTGETOBJECT,
        wdf_object_context_get_object
    ),
    wdf_entry!(
        WdfObjectReferenceActualTableIndex,
        PFN_WDFOBJECTREFERENCEACTUAL,
        wdf_object_reference_actual
    ),
    wdf_entry!(
        WdfObjectDereferenceActualTableIndex,
        PFN_WDFOBJECTDEREFERENCEACTUAL,
        wdf_object_dereference_actual
    ),
];
