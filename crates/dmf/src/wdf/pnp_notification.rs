//! Device-interface arrival and removal notifications (`IoRegisterPlugPlayNotification` with
//! `EventCategoryDeviceInterfaceChange`), owned: dropping the registration unregisters it
//! (`IoUnregisterPlugPlayNotificationEx`).
//!
//! The callback runs at `PASSIVE_LEVEL` on a system thread, once per event, in event order. It
//! receives what happened and the interface's symbolic link name (UTF-16, without terminator),
//! ready for [`IoTarget::open_by_name`](super::io_target::IoTarget::open_by_name).
//!
//! ```ignore
//! let registration = InterfaceNotification::register(driver, &CLASS, true, move |change, name| {
//!     match change {
//!         InterfaceChange::Arrival => { /* open a target on `name` */ }
//!         InterfaceChange::Removal => { /* close it */ }
//!     }
//! })?;
//! // ... later, at PASSIVE_LEVEL:
//! drop(registration); // no callback runs after this returns
//! ```

use alloc::boxed::Box;
use alloc::sync::Arc;

use wdk_sys::{
    _IO_NOTIFICATION_EVENT_CATEGORY, DEVICE_INTERFACE_CHANGE_NOTIFICATION, GUID, NTSTATUS,
    PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES, PVOID,
};

use super::driver::Driver;
use super::status::NtStatus;

/// What happened to a device interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterfaceChange {
    /// The interface was enabled (`GUID_DEVICE_INTERFACE_ARRIVAL`).
    Arrival,
    /// The interface was disabled (`GUID_DEVICE_INTERFACE_REMOVAL`).
    Removal,
}

/// `GUID_DEVICE_INTERFACE_ARRIVAL` (`{CB3A4004-46F0-11D0-B08F-00609713053F}`).
pub const GUID_DEVICE_INTERFACE_ARRIVAL: GUID = GUID {
    Data1: 0xcb3a_4004,
    Data2: 0x46f0,
    Data3: 0x11d0,
    Data4: [0xb0, 0x8f, 0x00, 0x60, 0x97, 0x13, 0x05, 0x3f],
};

/// `GUID_DEVICE_INTERFACE_REMOVAL` (`{CB3A4005-46F0-11D0-B08F-00609713053F}`).
pub const GUID_DEVICE_INTERFACE_REMOVAL: GUID = GUID {
    Data1: 0xcb3a_4005,
    Data2: 0x46f0,
    Data3: 0x11d0,
    Data4: [0xb0, 0x8f, 0x00, 0x60, 0x97, 0x13, 0x05, 0x3f],
};

impl InterfaceChange {
    /// Classifies a notification's `Event` GUID (all 16 bytes are compared).
    #[must_use]
    pub fn from_event(event: &GUID) -> Option<Self> {
        let same = |known: &GUID| {
            event.Data1 == known.Data1
                && event.Data2 == known.Data2
                && event.Data3 == known.Data3
                && event.Data4 == known.Data4
        };
        if same(&GUID_DEVICE_INTERFACE_ARRIVAL) {
            Some(Self::Arrival)
        } else if same(&GUID_DEVICE_INTERFACE_REMOVAL) {
            Some(Self::Removal)
        } else {
            None
        }
    }
}

type Callback = dyn Fn(InterfaceChange, &[u16]) + Send + Sync;

/// The registration's shared state: the callback.
struct Shared {
    callback: Box<Callback>,
}

/// A device-interface change registration for one interface class. Dropping it unregisters
/// (`PASSIVE_LEVEL`); when the drop returns the callback is not running and will not run again
/// (a drop from inside the callback itself returns at once, and the callback's state stays alive
/// until that call returns).
pub struct InterfaceNotification {
    entry: PVOID,
    context: *const Shared,
}

// SAFETY: the entry is an opaque registration handle usable from any thread; the context is an
// `Arc<Shared>` whose callback is `Send + Sync`.
unsafe impl Send for InterfaceNotification {}
// SAFETY: no method mutates through a shared reference.
unsafe impl Sync for InterfaceNotification {}

unsafe extern "C" fn on_change(notification: PVOID, context: PVOID) -> NTSTATUS {
    let shared = context.cast_const().cast::<Shared>();
    if notification.is_null() || shared.is_null() {
        return NtStatus::SUCCESS.raw();
    }
    // SAFETY: the registration's `Arc` keeps one count alive until it is unregistered, and
    // unregistering waits for callbacks that are running; this count keeps it alive for the
    // call even if the callback drops the registration.
    unsafe { Arc::increment_strong_count(shared) };
    // SAFETY: the count just taken is owned by this value.
    let shared = unsafe { Arc::from_raw(shared) };
    // SAFETY: for `EventCategoryDeviceInterfaceChange` the structure is a
    // `DEVICE_INTERFACE_CHANGE_NOTIFICATION` valid for the call.
    let change = unsafe {
        &*notification
            .cast_const()
            .cast::<DEVICE_INTERFACE_CHANGE_NOTIFICATION>()
    };
    let Some(event) = InterfaceChange::from_event(&change.Event) else {
        return NtStatus::SUCCESS.raw();
    };
    let name: &[u16] = if change.SymbolicLinkName.is_null() {
        &[]
    } else {
        // SAFETY: the name is a valid `UNICODE_STRING` for the call.
        let name = unsafe { &*change.SymbolicLinkName };
        if name.Buffer.is_null() {
            &[]
        } else {
            // SAFETY: `Buffer` holds `Length` bytes of UTF-16 for the call.
            unsafe {
                core::slice::from_raw_parts(name.Buffer.cast_const(), usize::from(name.Length) / 2)
            }
        }
    };
    (shared.callback)(event, name);
    NtStatus::SUCCESS.raw()
}

impl InterfaceNotification {
    /// Registers `callback` for arrivals and removals of interfaces of `class`
    /// (`PASSIVE_LEVEL`). With `include_existing`, interfaces already enabled are reported as
    /// arrivals first. `driver` is the registering driver (it stays loaded while registered).
    pub fn register(
        driver: Driver,
        class: &GUID,
        include_existing: bool,
        callback: impl Fn(InterfaceChange, &[u16]) + Send + Sync + 'static,
    ) -> Result<Self, NtStatus> {
        let shared = Arc::new(Shared {
            callback: Box::new(callback),
        });
        let context = Arc::into_raw(shared);
        let mut class = *class;
        let mut entry: PVOID = core::ptr::null_mut();
        let flags = if include_existing {
            PNPNOTIFY_DEVICE_INTERFACE_INCLUDE_EXISTING_INTERFACES
        } else {
            0
        };
        // SAFETY: a valid class GUID (copied for the call), the driver's own WDM driver object,
        // a callback matching `DRIVER_NOTIFICATION_CALLBACK_ROUTINE`, a context that stays valid
        // until unregistration, and a valid out pointer.
        let status = unsafe {
            wdk_sys::ntddk::IoRegisterPlugPlayNotification(
                _IO_NOTIFICATION_EVENT_CATEGORY::EventCategoryDeviceInterfaceChange,
                flags,
                (&raw mut class).cast(),
                driver.wdm_driver_object(),
                Some(on_change),
                context.cast_mut().cast(),
                &raw mut entry,
            )
        };
        if let Err(status) = NtStatus::from_raw(status).into_result() {
            // SAFETY: not registered: this is the only owner of the count `into_raw` gave up.
            drop(unsafe { Arc::from_raw(context) });
            return Err(status);
        }
        Ok(Self { entry, context })
    }
}

impl Drop for InterfaceNotification {
    fn drop(&mut self) {
        // SAFETY: the entry this registration received; unregistered only here, once.
        let _ = unsafe { wdk_sys::ntddk::IoUnregisterPlugPlayNotificationEx(self.entry) };
        // SAFETY: unregistered: no new callback starts, running ones hold their own count; this
        // releases the registration's count taken by `Arc::into_raw` in `register`.
        drop(unsafe { Arc::from_raw(self.context) });
    }
}

impl core::fmt::Debug for InterfaceNotification {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InterfaceNotification")
            .field("entry", &self.entry)
            .finish_non_exhaustive()
    }
}
