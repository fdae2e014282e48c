//! `DeviceModules`: the modules a device hosts, wired once to its PnP/power callbacks.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::lifecycle;
use super::module::Module;
use super::node::{ModuleNode, PowerState};
use super::options::OpenedDuring;
use crate::error::{ConfigError, ModuleError};
use crate::wdf::NtStatus;

/// The top-level modules of one device, in the order they were added (DMF's module collection).
///
/// Call each method from the device callback of the same name; every module tree then sees the
/// callback in DMF's order: `PrepareHardware`, `D0Entry`, `SurpriseRemoval` and `QueryRemove` go through
/// the collection forward, `ReleaseHardware` and `D0Exit` backward. `PrepareHardware` and `D0Entry` stop
/// at the first failure and close what they had opened; `ReleaseHardware` always runs.
#[derive(Default)]
pub struct DeviceModules {
    modules: Vec<Arc<dyn ModuleNode>>,
}

impl DeviceModules {
    /// An empty collection.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            modules: Vec::new(),
        }
    }

    /// Adds a static module (created with `ModuleAttributes::static_module()`); the collection
    /// opens it in [`DeviceModules::post_create`] or the `PnP` callback its open option names.
    pub fn add<N: ModuleNode + 'static>(
        &mut self,
        module: &impl AsRef<Module<N>>,
    ) -> Result<(), ModuleError> {
        let module = module.as_ref();
        let core = module.core();
        if core.is_dynamic() || !core.mark_in_collection() {
            return Err(ConfigError::NotAStaticModule.into());
        }
        self.modules
            .try_reserve(1)
            .map_err(|_| NtStatus::INSUFFICIENT_RESOURCES)?;
        self.modules.push(module.shared());
        Ok(())
    }

    /// Number of top-level modules.
    #[must_use]
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// Whether the collection is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// After the device and every module are created (end of `EvtDriverDeviceAdd`): opens
    /// `OpenCreate` modules and registers `NotifyCreate` ones, in order. On failure the trees
    /// already opened are closed in reverse order.
    pub fn post_create(&self) -> Result<(), ModuleError> {
        for (index, module) in self.modules.iter().enumerate() {
            if let Err(error) = lifecycle::open_on_create(&**module) {
                for opened in self.modules[..index].iter().rev() {
                    lifecycle::close_on_destroy(&**opened);
                }
                return Err(error);
            }
        }
        Ok(())
    }

    /// `EvtDevicePrepareHardware`.
    pub fn prepare_hardware(&self) -> Result<(), NtStatus> {
        for module in &self.modules {
            if let Err(status) = lifecycle::prepare_hardware(&**module) {
                for opened in self.modules.iter().rev() {
                    lifecycle::close_opened_during(&**opened, &[OpenedDuring::PrepareHardware]);
                }
                return Err(status);
            }
        }
        Ok(())
    }

    /// `EvtDeviceReleaseHardware`.
    pub fn release_hardware(&self) {
        for module in self.modules.iter().rev() {
            lifecycle::release_hardware(&**module);
        }
    }

    /// `EvtDeviceD0Entry`.
    pub fn d0_entry(&self, previous: PowerState) -> Result<(), NtStatus> {
        for module in &self.modules {
            if let Err(status) = lifecycle::d0_entry(&**module, previous) {
                for opened in self.modules.iter().rev() {
                    lifecycle::close_opened_during(
                        &**opened,
                        &[OpenedDuring::D0Entry, OpenedDuring::D0EntrySystemPowerUp],
                    );
                }
                return Err(status);
            }
        }
        Ok(())
    }

    /// `EvtDeviceD0Exit`.
    pub fn d0_exit(&self, target: PowerState) {
        for module in self.modules.iter().rev() {
            lifecycle::d0_exit(&**module, target);
        }
    }

    /// `EvtDeviceSurpriseRemoval`.
    pub fn surprise_removal(&self) {
        for module in &self.modules {
            lifecycle::surprise_removal(&**module);
        }
    }

    /// `EvtDeviceQueryRemove`: the first module that refuses vetoes the removal.
    pub fn query_remove(&self) -> Result<(), NtStatus> {
        self.modules
            .iter()
            .try_for_each(|module| lifecycle::query_remove(&**module))
    }

    /// Device cleanup: closes every module tree, last added first.
    pub fn destroy(&mut self) {
        for module in self.modules.iter().rev() {
            lifecycle::close_on_destroy(&**module);
        }
        self.modules.clear();
    }
}

impl Drop for DeviceModules {
    fn drop(&mut self) {
        self.destroy();
    }
}

impl core::fmt::Debug for DeviceModules {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list()
            .entries(self.modules.iter().map(|m| m.core().name()))
            .finish()
    }
}
