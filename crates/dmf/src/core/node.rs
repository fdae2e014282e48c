//! The per-module object (`ModuleCore`) and the trait every module implements (`ModuleNode`).

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::options::{ClientHook, ModuleAttributes, OpenOption, OpenedDuring};
use super::references::{ModuleReference, References};
use super::state::ModuleState;
use crate::error::{ConfigError, ModuleError};
use crate::wdf::NtStatus;

/// A device power state, as the PnP/power callbacks report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    /// Working.
    D0,
    /// Low power, context kept.
    D1,
    /// Lower power, context kept.
    D2,
    /// Off, the device stays installed.
    D3,
    /// Off before removal or on the way from/to a system sleep that powers the device down for
    /// good (`WdfPowerDeviceD3Final`).
    D3Final,
    /// Going to hibernate (`WdfPowerDevicePrepareForHibernation`).
    PrepareForHibernation,
}

impl PowerState {
    /// Converts a `WDF_POWER_DEVICE_STATE`; unknown values read as `D3`.
    #[must_use]
    pub fn from_raw(state: wdk_sys::WDF_POWER_DEVICE_STATE) -> Self {
        use wdk_sys::_WDF_POWER_DEVICE_STATE as S;
        match state {
            S::WdfPowerDeviceD0 => Self::D0,
            S::WdfPowerDeviceD1 => Self::D1,
            S::WdfPowerDeviceD2 => Self::D2,
            S::WdfPowerDeviceD3Final => Self::D3Final,
            S::WdfPowerDevicePrepareForHibernation => Self::PrepareForHibernation,
            _ => Self::D3,
        }
    }
}

/// The framework's state for one module instance (DMF's `DMF_OBJECT`): lifecycle state, the
/// reference counter, open/close latches and the client's post-open / pre-close hooks.
pub struct ModuleCore {
    name: &'static str,
    open_option: OpenOption,
    passive_level: bool,
    dynamic: bool,
    state: AtomicU8,
    opened_during: AtomicU8,
    closed: AtomicBool,
    need_pre_close: AtomicBool,
    in_collection: AtomicBool,
    registered: AtomicBool,
    references: Arc<References>,
    post_open: Option<ClientHook>,
    pre_close: Option<ClientHook>,
}

impl ModuleCore {
    /// Builds the core of a module named `type_name` that opens per `open_option`.
    ///
    /// `supports_passive_level` is false for modules whose descriptor says DISPATCH only
    /// (DMF's `DMF_MODULE_OPTIONS_DISPATCH`, e.g. Thread): asking them for passive level fails.
    pub fn new(
        type_name: &'static str,
        open_option: OpenOption,
        supports_passive_level: bool,
        attributes: ModuleAttributes,
    ) -> Result<Self, ModuleError> {
        if attributes.passive_level && !supports_passive_level {
            return Err(ConfigError::PassiveLevelNotSupported.into());
        }
        if attributes.dynamic && !open_option.allowed_for_dynamic() {
            return Err(ConfigError::DynamicModuleOpenOption.into());
        }
        Ok(Self {
            name: attributes.name.unwrap_or(type_name),
            open_option,
            passive_level: attributes.passive_level,
            dynamic: attributes.dynamic,
            state: AtomicU8::new(ModuleState::Created as u8),
            opened_during: AtomicU8::new(OpenedDuring::Invalid as u8),
            closed: AtomicBool::new(true),
            need_pre_close: AtomicBool::new(false),
            in_collection: AtomicBool::new(false),
            registered: AtomicBool::new(false),
            references: Arc::new(References::new()),
            post_open: attributes.post_open,
            pre_close: attributes.pre_close,
        })
    }

    /// Instance name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// When the module opens.
    #[must_use]
    pub fn open_option(&self) -> OpenOption {
        self.open_option
    }

    /// Whether the module runs at `PASSIVE_LEVEL` (wait locks, paged pool allowed).
    #[must_use]
    pub fn is_passive_level(&self) -> bool {
        self.passive_level
    }

    /// Whether the module was created at run time by its client (not owned by a collection).
    #[must_use]
    pub fn is_dynamic(&self) -> bool {
        self.dynamic
    }

    /// Current lifecycle state.
    #[must_use]
    pub fn state(&self) -> ModuleState {
        ModuleState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// When the module was opened ([`OpenedDuring::Invalid`] if it is not open).
    #[must_use]
    pub fn opened_during(&self) -> OpenedDuring {
        OpenedDuring::from_u8(self.opened_during.load(Ordering::Acquire))
    }

    pub(crate) fn set_opened_during(&self, during: OpenedDuring) {
        self.opened_during.store(during as u8, Ordering::Release);
    }

    pub(crate) fn set_state(&self, state: ModuleState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Takes a module reference (`DMF_ModuleReference`): fails with
    /// `STATUS_INVALID_DEVICE_STATE` while the module is not open or is closing. Callable at any
    /// IRQL up to `DISPATCH_LEVEL`; never allocates.
    pub fn reference(&self) -> Result<ModuleReference<'_>, NtStatus> {
        ModuleReference::acquire(&self.references)
    }

    /// Takes a module reference that is not tied to a borrow of the module, for an asynchronous
    /// operation: take it when sending, release it (drop it) in the completion routine.
    /// Same rules as [`ModuleCore::reference`].
    pub fn reference_held(&self) -> Result<super::references::HeldReference, NtStatus> {
        Ok(self.reference()?.into_held())
    }

    /// A cloneable source of held references, for state that outlives a borrow of the module
    /// (completion handlers that must take a new reference before releasing theirs).
    #[must_use]
    pub fn reference_source(&self) -> super::references::ReferenceSource {
        super::references::ReferenceSource::new(Arc::clone(&self.references))
    }

    /// References currently held on the module (not counting the open reference).
    #[must_use]
    pub fn references_held(&self) -> u32 {
        self.references.outstanding()
    }

    pub(crate) fn references(&self) -> &References {
        &self.references
    }

    pub(crate) fn post_opened(&self) {
        self.references.start();
        self.need_pre_close.store(true, Ordering::Release);
        if let Some(hook) = &self.post_open {
            hook();
        }
        self.closed.store(false, Ordering::Release);
    }

    /// Test-and-set of the "closed" latch: true if the caller must close the module.
    pub(crate) fn begin_close(&self) -> bool {
        !self.closed.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn run_pre_close(&self) {
        if self.need_pre_close.swap(false, Ordering::AcqRel)
            && let Some(hook) = &self.pre_close
        {
            hook();
        }
    }

    /// Sets the "notifications registered" flag; returns its previous value.
    pub(crate) fn swap_registered(&self, registered: bool) -> bool {
        self.registered.swap(registered, Ordering::AcqRel)
    }

    pub(crate) fn mark_in_collection(&self) -> bool {
        !self.in_collection.swap(true, Ordering::AcqRel)
    }
}

impl core::fmt::Debug for ModuleCore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ModuleCore")
            .field("name", &self.name)
            .field("open_option", &self.open_option)
            .field("state", &self.state())
            .field("opened_during", &self.opened_during())
            .field("references", &self.references)
            .finish_non_exhaustive()
    }
}

/// What every module implements so the framework can open, close and route PnP/power callbacks
/// through its tree. All methods except [`ModuleNode::core`] have defaults that do nothing.
///
/// The PnP/power methods are the module's *own* work for that callback; the framework's generic
/// handling (opening or closing the module per its [`OpenOption`]) runs as well, before the
/// module's own callback on the way up and after it on the way down.
pub trait ModuleNode: Send + Sync {
    /// The framework state of this module.
    fn core(&self) -> &ModuleCore;

    /// Number of child modules.
    fn child_count(&self) -> usize {
        0
    }

    /// The `index`-th child, in the order the children were added.
    fn child(&self, _index: usize) -> Option<&dyn ModuleNode> {
        None
    }

    /// Whether the module has PnP/power callbacks of its own (then it cannot be dynamic).
    fn has_pnp_callbacks(&self) -> bool {
        false
    }

    /// Opens the module (allocate what its methods need). Its own references fail here.
    fn open(&self) -> Result<(), NtStatus> {
        Ok(())
    }

    /// Called when close begins, before waiting for references: the module cancels what it has
    /// in flight so that the wait ends (new references already fail). `PASSIVE_LEVEL`.
    fn before_close(&self) {}

    /// Closes the module. Every reference has been released when this runs.
    fn close(&self) {}

    /// Registers for the notifications that will open the module (NOTIFY_ open options).
    fn notification_register(&self) -> Result<(), NtStatus> {
        Ok(())
    }

    /// Undoes [`ModuleNode::notification_register`].
    fn notification_unregister(&self) {}

    /// The module's own `EvtDevicePrepareHardware` work.
    fn prepare_hardware(&self) -> Result<(), NtStatus> {
        Ok(())
    }

    /// The module's own `EvtDeviceReleaseHardware` work.
    fn release_hardware(&self) {}

    /// The module's own `EvtDeviceD0Entry` work.
    fn d0_entry(&self, _previous: PowerState) -> Result<(), NtStatus> {
        Ok(())
    }

    /// The module's own `EvtDeviceD0Exit` work.
    fn d0_exit(&self, _target: PowerState) {}

    /// The module's own `EvtDeviceSurpriseRemoval` work.
    fn surprise_removal(&self) {}

    /// The module's own `EvtDeviceQueryRemove` work; an error vetoes the removal.
    fn query_remove(&self) -> Result<(), NtStatus> {
        Ok(())
    }
}
