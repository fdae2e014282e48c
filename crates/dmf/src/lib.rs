//! DMF for Rust: Driver Module Framework modules for KMDF drivers.
//!
//! * [`wdf`]: thin safe wrappers over the framework (the only `unsafe` code).
//! * [`core`]: the module model: creation from a validated configuration, open/close per the
//!   module's open option, parent/child ordering, PnP/power routing, module references.
//! * [`modules`]: the DMF modules.
//! * [`error`]: configuration errors and the module error type.
//!
//! # Hosting modules in a driver
//!
//! Create the device's modules in `EvtDriverDeviceAdd`, add the static ones to a
//! [`core::DeviceModules`] kept in the device context, and forward each PnP/power callback to
//! it once; the modules then open, close and get their callbacks in DMF's order.
//!
//! ```ignore
//! use dmf::core::{DeviceModules, ModuleAttributes, PowerState};
//! use dmf::modules::{BufferQueue, BufferQueueConfig, SourceSettings};
//!
//! // EvtDriverDeviceAdd, after WdfDeviceCreate:
//! let queue = BufferQueue::create(device.cast(), BufferQueueConfig::new(SourceSettings {
//!     buffer_count: 16, buffer_size: 64, ..SourceSettings::default()
//! }), ModuleAttributes::static_module())?;
//! let mut modules = DeviceModules::new();
//! modules.add(&queue)?;
//! modules.post_create()?;          // opens OpenCreate modules, children first
//!
//! // The device's callbacks:
//! // EvtDevicePrepareHardware -> modules.prepare_hardware()
//! // EvtDeviceD0Entry(prev)   -> modules.d0_entry(PowerState::from_raw(prev))
//! // EvtDeviceD0Exit(target)  -> modules.d0_exit(PowerState::from_raw(target))
//! // EvtDeviceReleaseHardware -> modules.release_hardware()
//! // EvtDeviceSurpriseRemoval -> modules.surprise_removal()
//! // EvtDeviceQueryRemove     -> modules.query_remove()
//! // device cleanup           -> modules.destroy(); drop the module owners
//! ```
#![no_std]

extern crate alloc;

pub mod core;
pub mod error;
pub mod modules;
pub mod wdf;
