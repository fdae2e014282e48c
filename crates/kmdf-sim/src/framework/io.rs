//! The I/O packet every simulated device receives, the namespace of symbolic links that I/O
//! targets and the user-mode side open, device interfaces and their `PnP` notifications.
//!
//! An [`Irp`] is the simulation's IRP: a major function, an I/O control code, input and output
//! buffer ranges, and one completion. Whoever delivers a packet (an I/O target, the user-mode
//! side) attaches what happens at completion; whoever receives it (the programmable target, a
//! device with queues) completes it exactly once. Completion and cancellation are resolved under
//! one lock, so a packet completes once whatever the interleaving.
//!
//! Threading, as in Windows: the completion runs in the thread that completes the packet, at
//! that thread's IRQL, before `complete` returns (`IoCompleteRequest` runs completion routines
//! inline). A cancel runs the packet's cancel routine in the cancelling thread; `cancel` reports,
//! like `IoCancelIrp`, whether there was a cancel routine to run.
//!
//! `METHOD_BUFFERED` I/O controls travel in one system buffer, as the I/O manager and KMDF's
//! `FxIoTarget::FormatIoctlRequest` (fxiotargetkm.cpp) arrange it: the receiver sees the input
//! copied into a buffer of `max(input, output)` bytes, writes its output over it, and at
//! completion only `Information` bytes (at most the output length) are copied back to the
//! sender's output buffer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{exec, irql, object};
use crate::constants::{
    STATUS_INVALID_PARAMETER, STATUS_NO_SUCH_DEVICE, STATUS_OBJECT_NAME_EXISTS,
    STATUS_OBJECT_NAME_NOT_FOUND, STATUS_SUCCESS,
};
use crate::types::{
    _IO_NOTIFICATION_EVENT_CATEGORY, DEVICE_INTERFACE_CHANGE_NOTIFICATION, GUID,
    IO_NOTIFICATION_EVENT_CATEGORY, NTSTATUS, PDRIVER_NOTIFICATION_CALLBACK_ROUTINE, PVOID, ULONG,
    UNICODE_STRING,
};

/// Locks a mutex, ignoring poisoning (a panicking test must not wedge the next one).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The major function of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MajorFunction {
    /// `IRP_MJ_READ`.
    Read,
    /// `IRP_MJ_WRITE`.
    Write,
    /// `IRP_MJ_DEVICE_CONTROL`.
    DeviceControl,
    /// `IRP_MJ_INTERNAL_DEVICE_CONTROL`.
    InternalDeviceControl,
}

/// A buffer range a packet carries (address 0 and length 0 for none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) address: usize,
    pub(crate) length: usize,
}

type CancelRoutine = Box<dyn FnOnce(&Arc<Irp>) + Send>;
type Completion = Box<dyn FnOnce(&Arc<Irp>) + Send>;

/// `CTL_CODE`'s transfer method field value for `METHOD_BUFFERED`.
const METHOD_BUFFERED: u32 = 0;

/// The system buffer of a `METHOD_BUFFERED` I/O control.
struct SystemBuffer {
    /// The buffer the receiver reads the input from and writes the output to. Only ever
    /// accessed through the raw ranges the packet hands out (never through this box while the
    /// packet is pending), so it is kept as a raw allocation.
    storage: Box<[core::cell::UnsafeCell<u8>]>,
    /// The sender's own output buffer, filled from the system buffer at completion.
    sender_output: Range,
}

// SAFETY: the bytes are plain memory reached only through the packet's ranges, under the same
// rules as any other I/O buffer (the receiver owns them while the packet is pending).
unsafe impl Sync for SystemBuffer {}

struct IrpState {
    completed: bool,
    /// The completion (copy-back and completion closure) has run.
    finished: bool,
    cancel_requested: bool,
    cancel_routine: Option<CancelRoutine>,
    completion: Option<Completion>,
    status: NTSTATUS,
    information: usize,
}

/// One I/O packet.
pub(crate) struct Irp {
    pub(crate) major: MajorFunction,
    pub(crate) ioctl: u32,
    pub(crate) input: Range,
    pub(crate) output: Range,
    /// The open handle (file) the packet was sent on; 0 for none.
    pub(crate) file: u64,
    /// Set when a send timeout cancelled the packet.
    pub(crate) timed_out: AtomicBool,
    system_buffer: Option<SystemBuffer>,
    state: Mutex<IrpState>,
    done: Condvar,
}

impl Irp {
    /// A new packet; `completion` runs once, on the completing thread, after the status is set.
    /// A `METHOD_BUFFERED` I/O control gets its system buffer here, holding a copy of the input.
    pub(crate) fn new(
        major: MajorFunction,
        ioctl: u32,
        input: Range,
        output: Range,
        file: u64,
        completion: Option<Completion>,
    ) -> Arc<Self> {
        let buffered = matches!(
            major,
            MajorFunction::DeviceControl | MajorFunction::InternalDeviceControl
        ) && ioctl & 3 == METHOD_BUFFERED
            && (input.length > 0 || output.length > 0);
        let (input, output, system_buffer) = if buffered {
            let storage: Box<[core::cell::UnsafeCell<u8>]> = (0..input.length.max(output.length))
                .map(|_| core::cell::UnsafeCell::new(0))
                .collect();
            let address = storage.as_ptr() as usize;
            if input.length > 0 {
                // SAFETY: the sender's input range is valid for reads while it sends; the new
                // buffer is at least as long and nobody else can see it yet.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        input.address as *const u8,
                        address as *mut u8,
                        input.length,
                    );
                }
            }
            (
                Range {
                    address,
                    length: input.length,
                },
                Range {
                    address,
                    length: output.length,
                },
                Some(SystemBuffer {
                    storage,
                    sender_output: output,
                }),
            )
        } else {
            (input, output, None)
        };
        Arc::new(Self {
            major,
            ioctl,
            input,
            output,
            file,
            timed_out: AtomicBool::new(false),
            system_buffer,
            state: Mutex::new(IrpState {
                completed: false,
                finished: false,
                cancel_requested: false,
                cancel_routine: None,
                completion,
                status: STATUS_SUCCESS,
                information: 0,
            }),
            done: Condvar::new(),
        })
    }

    /// Completes the packet; false (and nothing happens) if it was already completed.
    pub(crate) fn complete(self: &Arc<Self>, status: NTSTATUS, information: usize) -> bool {
        let completion = {
            let mut state = lock(&self.state);
            if state.completed {
                return false;
            }
            state.completed = true;
            state.cancel_routine = None;
            state.status = status;
            state.information = information;
            state.completion.take()
        };
        if let Some(buffer) = &self.system_buffer {
            let copied = information.min(buffer.sender_output.length);
            if copied > 0 {
                // SAFETY: the receiver completed the packet, so it no longer writes the system
                // buffer; the sender keeps its output range valid until its completion ran.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        buffer.storage.as_ptr().cast::<u8>(),
                        buffer.sender_output.address as *mut u8,
                        copied,
                    );
                }
            }
        }
        if let Some(completion) = completion {
            completion(self);
        }
        lock(&self.state).finished = true;
        self.done.notify_all();
        true
    }

    /// Requests cancellation (`IoCancelIrp`): marks the packet cancelled and runs its cancel
    /// routine, if one is set, in the calling thread. Returns whether a cancel routine ran: false
    /// when the packet completed already or its current owner has not made it cancelable, which
    /// leaves the owner to complete it in its own time.
    pub(crate) fn cancel(self: &Arc<Self>) -> bool {
        let routine = {
            let mut state = lock(&self.state);
            if state.completed {
                return false;
            }
            state.cancel_requested = true;
            state.cancel_routine.take()
        };
        match routine {
            Some(routine) => {
                routine(self);
                true
            }
            None => false,
        }
    }

    /// Makes the packet cancelable. If cancellation was already requested the routine is handed
    /// back and the caller completes the packet itself.
    pub(crate) fn set_cancel_routine(&self, routine: CancelRoutine) -> Result<(), CancelRoutine> {
        let mut state = lock(&self.state);
        if state.cancel_requested || state.completed {
            return Err(routine);
        }
        state.cancel_routine = Some(routine);
        Ok(())
    }

    /// Makes the packet not cancelable; false if its cancel routine already ran or is running
    /// (then the cancel routine owns the packet).
    pub(crate) fn clear_cancel_routine(&self) -> bool {
        lock(&self.state).cancel_routine.take().is_some()
    }

    /// Whether cancellation was requested.
    pub(crate) fn is_cancel_requested(&self) -> bool {
        lock(&self.state).cancel_requested
    }

    /// Whether the packet completed.
    pub(crate) fn is_completed(&self) -> bool {
        lock(&self.state).completed
    }

    /// (status, information) once completed.
    pub(crate) fn result(&self) -> (NTSTATUS, usize) {
        let state = lock(&self.state);
        (state.status, state.information)
    }

    /// Waits until the packet completed and its completion returned; false on timeout.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = lock(&self.state);
        while !state.finished {
            match deadline {
                None => {
                    state = self
                        .done
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    state = self
                        .done
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        true
    }
}

/// A device that receives packets.
pub(crate) trait DeviceNode: Send + Sync {
    /// Delivers a packet; the node completes it exactly once.
    fn dispatch(&self, irp: Arc<Irp>);
    /// Whether the node accepts a new open now.
    fn may_open(&self) -> Result<(), NTSTATUS> {
        Ok(())
    }
    /// An open handle was closed: its pending packets are cancelled.
    fn file_closed(&self, _file: u64) {}
}

/// Someone holding a device open that wants its target-device-change notifications.
pub(crate) trait Opener: Send + Sync {
    /// Query-remove: a failure status vetoes the removal.
    fn query_remove(&self) -> NTSTATUS;
    /// The removal was cancelled after a successful query.
    fn remove_canceled(&self);
    /// The device is gone (removed or surprise-removed).
    fn remove_complete(&self);
    /// The driver the notifications belong to (0: none).
    fn driver(&self) -> usize {
        0
    }
}

/// A named device: one entry per symbolic link name.
pub(crate) struct Link {
    pub(crate) node: Arc<dyn DeviceNode>,
    files: Mutex<Vec<u64>>,
    watchers: Mutex<Vec<(u64, Arc<dyn Opener>)>>,
    removed: AtomicBool,
    /// `DesiredAccess` and `ShareAccess` of the last I/O target open (test observation).
    last_access: Mutex<Option<(u32, u32)>>,
}

struct Namespace {
    links: HashMap<String, Arc<Link>>,
}

static NAMESPACE: LazyLock<Mutex<Namespace>> = LazyLock::new(|| {
    Mutex::new(Namespace {
        links: HashMap::new(),
    })
});
static NEXT_FILE: AtomicU64 = AtomicU64::new(1);

/// Normalizes a device name for lookup as the object manager resolves it: case-insensitive, and
/// the kernel's `\??\`, `\DosDevices\` and `\GLOBAL??\` prefixes and the Win32 `\\?\` and
/// `\\.\` prefixes all name the same directory of symbolic links.
pub(crate) fn key(name: &str) -> String {
    const ALIASES: [&str; 5] = [
        "\\??\\",
        "\\dosdevices\\",
        "\\global??\\",
        "\\\\?\\",
        "\\\\.\\",
    ];
    let lower = name.to_ascii_lowercase();
    for alias in ALIASES {
        if let Some(rest) = lower.strip_prefix(alias) {
            return format!("\\??\\{rest}");
        }
    }
    lower
}

/// Publishes `node` under `name`.
pub(crate) fn publish(name: &str, node: Arc<dyn DeviceNode>) -> Result<Arc<Link>, NTSTATUS> {
    let mut namespace = lock(&NAMESPACE);
    let key = key(name);
    if namespace.links.contains_key(&key) {
        return Err(STATUS_OBJECT_NAME_EXISTS);
    }
    let link = Arc::new(Link {
        node,
        files: Mutex::new(Vec::new()),
        watchers: Mutex::new(Vec::new()),
        removed: AtomicBool::new(false),
        last_access: Mutex::new(None),
    });
    namespace.links.insert(key, link.clone());
    Ok(link)
}

/// Withdraws a name.
pub(crate) fn unpublish(name: &str) {
    lock(&NAMESPACE).links.remove(&key(name));
}

/// Looks a name up.
pub(crate) fn find(name: &str) -> Option<Arc<Link>> {
    lock(&NAMESPACE).links.get(&key(name)).cloned()
}

/// Opens a name: returns the link and a file id.
pub(crate) fn open(name: &str) -> Result<(Arc<Link>, u64), NTSTATUS> {
    let link = find(name).ok_or(STATUS_OBJECT_NAME_NOT_FOUND)?;
    if link.removed.load(Ordering::Acquire) {
        return Err(STATUS_NO_SUCH_DEVICE);
    }
    link.node.may_open()?;
    let file = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
    lock(&link.files).push(file);
    Ok((link, file))
}

impl Link {
    /// Closes an open handle.
    pub(crate) fn close(&self, file: u64) {
        lock(&self.files).retain(|f| *f != file);
        self.node.file_closed(file);
    }

    /// Records the access an I/O target opened this link with.
    pub(crate) fn record_access(&self, desired: u32, share: u32) {
        *lock(&self.last_access) = Some((desired, share));
    }

    /// The access of the last I/O target open.
    pub(crate) fn last_access(&self) -> Option<(u32, u32)> {
        *lock(&self.last_access)
    }

    /// Open handles now.
    pub(crate) fn open_count(&self) -> usize {
        lock(&self.files).len()
    }

    /// Registers for target-device-change notifications; returns the registration id.
    pub(crate) fn watch(&self, opener: Arc<dyn Opener>) -> u64 {
        let id = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
        lock(&self.watchers).push((id, opener));
        id
    }

    /// Ends a registration.
    pub(crate) fn unwatch(&self, id: u64) {
        lock(&self.watchers).retain(|(w, _)| *w != id);
    }

    fn listeners(&self) -> Vec<Arc<dyn Opener>> {
        lock(&self.watchers)
            .iter()
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Query-remove: asks every opener; on a veto, those that agreed get remove-canceled.
    /// True if every opener agreed.
    pub(crate) fn query_remove(&self) -> bool {
        let listeners = self.listeners();
        let mut agreed = Vec::new();
        for listener in listeners {
            let status = object::with_driver(listener.driver(), || {
                irql::run_callback(irql::PASSIVE, "query-remove notification", || {
                    listener.query_remove()
                })
            });
            if status < 0 {
                for listener in agreed.iter().rev() {
                    let listener: &Arc<dyn Opener> = listener;
                    object::with_driver(listener.driver(), || {
                        irql::run_callback(irql::PASSIVE, "remove-canceled notification", || {
                            listener.remove_canceled();
                        });
                    });
                }
                return false;
            }
            agreed.push(listener);
        }
        true
    }

    /// The removal that a successful query announced was cancelled.
    pub(crate) fn remove_canceled(&self) {
        for listener in self.listeners() {
            object::with_driver(listener.driver(), || {
                irql::run_callback(irql::PASSIVE, "remove-canceled notification", || {
                    listener.remove_canceled();
                });
            });
        }
    }

    /// The device is gone: openers are told, new opens fail.
    pub(crate) fn remove_complete(&self) {
        self.removed.store(true, Ordering::Release);
        for listener in self.listeners() {
            object::with_driver(listener.driver(), || {
                irql::run_callback(irql::PASSIVE, "remove-complete notification", || {
                    listener.remove_complete();
                });
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Device interfaces and PnP notifications.

/// `GUID_DEVICE_INTERFACE_ARRIVAL` (`{CB3A4004-46F0-11D0-B08F-00609713053F}`, wdmguid.h).
pub const GUID_DEVICE_INTERFACE_ARRIVAL: GUID = GUID {
    Data1: 0xcb3a_4004,
    Data2: 0x46f0,
    Data3: 0x11d0,
    Data4: [0xb0, 0x8f, 0x00, 0x60, 0x97, 0x13, 0x05, 0x3f],
};
/// `GUID_DEVICE_INTERFACE_REMOVAL` (`{CB3A4005-46F0-11D0-B08F-00609713053F}`, wdmguid.h).
pub const GUID_DEVICE_INTERFACE_REMOVAL: GUID = GUID {
    Data1: 0xcb3a_4005,
    Data2: 0x46f0,
    Data3: 0x11d0,
    Data4: [0xb0, 0x8f, 0x00, 0x60, 0x97, 0x13, 0x05, 0x3f],
};

/// Whether two GUIDs are equal.
pub(crate) fn guid_eq(a: &GUID, b: &GUID) -> bool {
    a.Data1 == b.Data1 && a.Data2 == b.Data2 && a.Data3 == b.Data3 && a.Data4 == b.Data4
}

/// Formats a GUID the registry way, `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}`.
pub(crate) fn guid_string(g: &GUID) -> String {
    format!(
        "{{{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}}}",
        g.Data1,
        g.Data2,
        g.Data3,
        g.Data4[0],
        g.Data4[1],
        g.Data4[2],
        g.Data4[3],
        g.Data4[4],
        g.Data4[5],
        g.Data4[6],
        g.Data4[7]
    )
}

struct Interface {
    class: GUID,
    name: String,
    enabled: bool,
}

struct Listener {
    id: u64,
    /// The driver that registered (its callback runs as that driver's code).
    driver: usize,
    class: GUID,
    callback: unsafe extern "C" fn(PVOID, PVOID) -> NTSTATUS,
    context: usize,
    pending: Mutex<std::collections::VecDeque<(bool, String)>>,
    draining: AtomicBool,
    unregistered: AtomicBool,
    running: Mutex<Option<std::thread::ThreadId>>,
    idle: Condvar,
}

struct Interfaces {
    list: Vec<Interface>,
    listeners: Vec<Arc<Listener>>,
}

static INTERFACES: LazyLock<Mutex<Interfaces>> = LazyLock::new(|| {
    Mutex::new(Interfaces {
        list: Vec::new(),
        listeners: Vec::new(),
    })
});
static NEXT_LISTENER: AtomicU64 = AtomicU64::new(0x5000);

/// Registers (disabled) a device interface instance.
pub(crate) fn interface_register(class: GUID, name: &str) {
    let mut interfaces = lock(&INTERFACES);
    if !interfaces
        .list
        .iter()
        .any(|i| i.name.eq_ignore_ascii_case(name))
    {
        interfaces.list.push(Interface {
            class,
            name: name.to_string(),
            enabled: false,
        });
    }
}

/// Enables or disables an interface instance, notifying listeners on a change.
pub(crate) fn interface_set_state(name: &str, enabled: bool) {
    let mut interfaces = lock(&INTERFACES);
    let Some(index) = interfaces
        .list
        .iter()
        .position(|i| i.name.eq_ignore_ascii_case(name))
    else {
        return;
    };
    if interfaces.list[index].enabled == enabled {
        return;
    }
    interfaces.list[index].enabled = enabled;
    let class = interfaces.list[index].class;
    let listeners: Vec<_> = interfaces
        .listeners
        .iter()
        .filter(|l| guid_eq(&l.class, &class))
        .cloned()
        .collect();
    if !enabled {
        interfaces.list.remove(index);
    }
    drop(interfaces);
    for listener in listeners {
        post(&listener, enabled, name.to_string());
    }
}

/// Reports an enabled interface instance's arrival again to every listener of its class (a
/// duplicate arrival, as a stacked driver or a re-enumeration produces).
pub(crate) fn interface_repeat_arrival(name: &str) {
    let interfaces = lock(&INTERFACES);
    let Some(class) = interfaces
        .list
        .iter()
        .find(|i| i.enabled && i.name.eq_ignore_ascii_case(name))
        .map(|i| i.class)
    else {
        return;
    };
    let listeners: Vec<_> = interfaces
        .listeners
        .iter()
        .filter(|l| guid_eq(&l.class, &class))
        .cloned()
        .collect();
    drop(interfaces);
    for listener in listeners {
        post(&listener, true, name.to_string());
    }
}

/// Enabled interface instances of a class.
pub(crate) fn interfaces_of(class: &GUID) -> Vec<String> {
    lock(&INTERFACES)
        .list
        .iter()
        .filter(|i| i.enabled && guid_eq(&i.class, class))
        .map(|i| i.name.clone())
        .collect()
}

fn post(listener: &Arc<Listener>, arrival: bool, name: String) {
    lock(&listener.pending).push_back((arrival, name));
    if !listener.draining.swap(true, Ordering::AcqRel) {
        let listener = listener.clone();
        exec::submit_as(
            listener.driver,
            irql::PASSIVE,
            "PnP notification callback",
            move || {
                drain(&listener);
            },
        );
    }
}

fn drain(listener: &Arc<Listener>) {
    loop {
        let next = lock(&listener.pending).pop_front();
        let Some((arrival, name)) = next else {
            listener.draining.store(false, Ordering::Release);
            // A post may have raced with the flag reset.
            if lock(&listener.pending).is_empty() || listener.draining.swap(true, Ordering::AcqRel)
            {
                return;
            }
            continue;
        };
        {
            let mut running = lock(&listener.running);
            if listener.unregistered.load(Ordering::Acquire) {
                continue;
            }
            *running = Some(std::thread::current().id());
        }
        deliver(listener, arrival, &name);
        *lock(&listener.running) = None;
        listener.idle.notify_all();
    }
}

fn deliver(listener: &Listener, arrival: bool, name: &str) {
    let mut wide: Vec<u16> = name.encode_utf16().collect();
    let length = (wide.len() * 2) as u16;
    wide.push(0);
    let mut text = UNICODE_STRING {
        Length: length,
        MaximumLength: length + 2,
        Buffer: wide.as_mut_ptr(),
    };
    let mut notification = DEVICE_INTERFACE_CHANGE_NOTIFICATION {
        Version: 1,
        Size: size_of::<DEVICE_INTERFACE_CHANGE_NOTIFICATION>() as u16,
        Event: if arrival {
            GUID_DEVICE_INTERFACE_ARRIVAL
        } else {
            GUID_DEVICE_INTERFACE_REMOVAL
        },
        InterfaceClassGuid: listener.class,
        SymbolicLinkName: &raw mut text,
    };
    let callback = listener.callback;
    // SAFETY: the driver registered this routine with this context; the notification and the
    // string it points at live until the call returns.
    let _ = unsafe { callback((&raw mut notification).cast(), listener.context as PVOID) };
}

/// Drops every name, interface and listener (between test sessions).
pub(crate) fn reset() {
    lock(&NAMESPACE).links.clear();
    let mut interfaces = lock(&INTERFACES);
    interfaces.list.clear();
    for listener in &interfaces.listeners {
        listener.unregistered.store(true, Ordering::Release);
    }
    interfaces.listeners.clear();
}

/// Kernel functions of this area, re-exported from `ntddk`.
#[allow(non_snake_case)]
pub mod kernel {
    use super::{
        _IO_NOTIFICATION_EVENT_CATEGORY, Arc, AtomicBool, Condvar, GUID, INTERFACES,
        IO_NOTIFICATION_EVENT_CATEGORY, Listener, Mutex, NEXT_LISTENER, NTSTATUS, Ordering,
        PDRIVER_NOTIFICATION_CALLBACK_ROUTINE, PVOID, STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
        ULONG, interfaces_of, lock, post,
    };
    use crate::constants::PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES;
    use crate::framework::verifier::{self, rules};
    use crate::framework::{irql, object};
    use crate::types::PDRIVER_OBJECT;

    /// Registers a `PnP` notification callback. Only `EventCategoryDeviceInterfaceChange` is
    /// simulated; callbacks run at `PASSIVE_LEVEL` on a framework thread, in event order.
    pub unsafe extern "C" fn IoRegisterPlugPlayNotification(
        EventCategory: IO_NOTIFICATION_EVENT_CATEGORY,
        EventCategoryFlags: ULONG,
        EventCategoryData: PVOID,
        _DriverObject: PDRIVER_OBJECT,
        CallbackRoutine: PDRIVER_NOTIFICATION_CALLBACK_ROUTINE,
        Context: PVOID,
        NotificationEntry: *mut PVOID,
    ) -> NTSTATUS {
        const API: &str = "IoRegisterPlugPlayNotification";
        if !irql::require_passive(API) {
            return STATUS_INVALID_PARAMETER;
        }
        if EventCategory != _IO_NOTIFICATION_EVENT_CATEGORY::EventCategoryDeviceInterfaceChange
            || EventCategoryData.is_null()
            || NotificationEntry.is_null()
        {
            verifier::report(
                rules::INVALID_ARGUMENT,
                API,
                "only device interface change notifications with a class GUID are simulated"
                    .to_string(),
            );
            return STATUS_INVALID_PARAMETER;
        }
        let Some(callback) = CallbackRoutine else {
            verifier::report(
                rules::INVALID_ARGUMENT,
                API,
                "null CallbackRoutine".to_string(),
            );
            return STATUS_INVALID_PARAMETER;
        };
        // SAFETY: for interface change notifications the data is the class GUID.
        let class: GUID = unsafe { EventCategoryData.cast::<GUID>().read() };
        let id = NEXT_LISTENER.fetch_add(0x10, Ordering::Relaxed);
        let listener = Arc::new(Listener {
            driver: object::current_driver(),
            id,
            class,
            callback,
            context: Context as usize,
            pending: Mutex::new(std::collections::VecDeque::new()),
            draining: AtomicBool::new(false),
            unregistered: AtomicBool::new(false),
            running: Mutex::new(None),
            idle: Condvar::new(),
        });
        lock(&INTERFACES).listeners.push(listener.clone());
        if EventCategoryFlags & PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES != 0 {
            for name in interfaces_of(&class) {
                post(&listener, true, name);
            }
        }
        // SAFETY: checked non-null above; the out pointer is writable by the API contract.
        unsafe { NotificationEntry.write(object::handle_ptr(id as usize)) };
        STATUS_SUCCESS
    }

    /// Unregisters a `PnP` notification callback. When it returns the callback is not running
    /// (unless called from the callback itself) and will not be called again.
    pub unsafe extern "C" fn IoUnregisterPlugPlayNotificationEx(
        NotificationEntry: PVOID,
    ) -> NTSTATUS {
        const API: &str = "IoUnregisterPlugPlayNotificationEx";
        let id = NotificationEntry as u64;
        let listener = {
            let mut interfaces = lock(&INTERFACES);
            let Some(index) = interfaces.listeners.iter().position(|l| l.id == id) else {
                drop(interfaces);
                verifier::report(
                    rules::INVALID_ARGUMENT,
                    API,
                    format!("{id:#x} is not a registered notification"),
                );
                return STATUS_INVALID_PARAMETER;
            };
            interfaces.listeners.remove(index)
        };
        let mut running = lock(&listener.running);
        listener.unregistered.store(true, Ordering::Release);
        let me = std::thread::current().id();
        while running.is_some_and(|thread| thread != me) {
            running = listener
                .idle
                .wait(running)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        STATUS_SUCCESS
    }
}
