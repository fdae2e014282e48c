//! The module model: lifecycle, children, PnP/power routing and module references.
//!
//! A module is a Rust type built from a validated configuration and owned by a [`Module`]. Each
//! module type declares an [`OpenOption`] (when the framework opens it) and implements
//! [`ModuleNode`] (its open/close work, its children, and any PnP/power work of its own).
//!
//! * **Children** belong to their parent. They open before it (in the order they were added)
//!   and close after it (in reverse order); if opening fails part way, what was opened is closed
//!   again and the error is returned.
//! * **Static modules** (created with [`ModuleAttributes::static_module`]) are added to the
//!   device's [`DeviceModules`], which the driver calls from its PnP/power callbacks; **dynamic
//!   modules** (the default) open as soon as they are created.
//! * **References**: a method that must not run on a closing module takes
//!   [`ModuleCore::reference`]; it fails with `STATUS_INVALID_DEVICE_STATE` once close has begun,
//!   and close waits until every reference taken has been released. A reference can outlive the
//!   borrow that took it ([`ModuleReference::into_held`]) so an asynchronous operation can hold it
//!   until its completion routine runs.
//!
//! # Wiring a device
//!
//! ```ignore
//! // EvtDriverDeviceAdd: create the modules, add them to the device's collection, open them.
//! let mut modules = DeviceModules::new();
//! let pool = BufferPool::create(config, ModuleAttributes::static_module())?;
//! modules.add(&pool)?;
//! modules.post_create()?;
//!
//! // Then each PnP/power callback forwards once:
//! fn evt_prepare_hardware(ctx: &DeviceContext) -> NtStatus { NtStatus::from_result(ctx.modules.prepare_hardware()) }
//! fn evt_d0_entry(ctx: &DeviceContext, previous: WDF_POWER_DEVICE_STATE) -> NtStatus {
//!     NtStatus::from_result(ctx.modules.d0_entry(PowerState::from_raw(previous)))
//! }
//! fn evt_d0_exit(ctx: &DeviceContext, target: WDF_POWER_DEVICE_STATE) -> NtStatus {
//!     ctx.modules.d0_exit(PowerState::from_raw(target));
//!     NtStatus::SUCCESS
//! }
//! fn evt_release_hardware(ctx: &DeviceContext) -> NtStatus { ctx.modules.release_hardware(); NtStatus::SUCCESS }
//! // EvtDeviceSurpriseRemoval -> modules.surprise_removal(); EvtDeviceQueryRemove -> modules.query_remove()
//! // EvtCleanupCallback of the device -> modules.destroy()
//! ```
//!
//! # Differences from DMF
//!
//! * Close waits for references with an event instead of polling every 100 ms: the release
//!   that leaves only the open reference wakes the closing thread. The observable rules are the
//!   same (new references fail as soon as close begins; close returns only when all are gone).
//! * A module's own PnP/power callback runs *in addition to* the generic open/close for that
//!   callback (DMF replaces the generic handler when a module overrides it).
//! * `OpenD0EntrySystemPowerUp` cannot see the system power action: it opens when the previous
//!   state is `D3Final` or D3 with the module closed, and closes on `D0Exit` to `D3Final` or to
//!   `PrepareForHibernation`.
//! * Destroying a module closes it whatever its open option, so a module opened by a `PnP`
//!   callback that never came back down is not left open.
//! * The module's two atomic counters replace DMF's reference-count spin lock.

mod collection;
pub mod lifecycle;
mod lock;
mod module;
mod node;
mod options;
mod references;
mod state;

pub use collection::DeviceModules;
pub use lock::{ModuleLock, ModuleLockGuard};
pub use module::Module;
pub use node::{ModuleCore, ModuleNode, PowerState};
pub use options::{ClientHook, ModuleAttributes, OpenOption, OpenedDuring};
pub use references::{HeldReference, ModuleReference, ReferenceSource, References};
pub use state::ModuleState;
