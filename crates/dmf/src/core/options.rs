//! What a module declares about itself (its open option) and what its creator chooses
//! (its attributes).

use alloc::boxed::Box;

/// When the framework opens (or registers notifications for) a module, and so when it closes
/// it. Fixed per module type, as DMF's module descriptor fixes it.
///
/// The numeric order matters for the parent/child rule: among the `Open*` options a parent may
/// not open earlier than any of its children.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpenOption {
    /// Open when the module is created; close when it is destroyed.
    OpenCreate = 1,
    /// Open in `PrepareHardware`; close in `ReleaseHardware`.
    OpenPrepareHardware = 2,
    /// Open in `D0Entry` when coming from `D3Final` (or from D3 while closed); close in `D0Exit` to
    /// `D3Final`.
    OpenD0EntrySystemPowerUp = 3,
    /// Open in every `D0Entry`; close in every `D0Exit`.
    OpenD0Entry = 4,
    /// Register notifications in `PrepareHardware`; unregister in `ReleaseHardware`.
    NotifyPrepareHardware = 5,
    /// Register notifications in `D0Entry`; unregister in `D0Exit`.
    NotifyD0Entry = 6,
    /// Register notifications at create; unregister at destroy.
    NotifyCreate = 7,
}

impl OpenOption {
    /// Whether the option opens the module (as opposed to registering notifications).
    #[must_use]
    pub const fn is_open(self) -> bool {
        (self as u8) <= (Self::OpenD0Entry as u8)
    }

    /// Whether a module created at run time (dynamic) may use this option.
    #[must_use]
    pub const fn allowed_for_dynamic(self) -> bool {
        matches!(self, Self::OpenCreate | Self::NotifyCreate)
    }
}

/// The moment a module was opened (or had its notifications registered), so it is closed at the
/// symmetric moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpenedDuring {
    /// Not open.
    Invalid = 0,
    /// Opened by an explicit call.
    Manual = 1,
    /// Opened at create.
    Create = 2,
    /// Opened in `PrepareHardware`.
    PrepareHardware = 3,
    /// Opened in `D0Entry`.
    D0Entry = 4,
    /// Opened in `D0Entry` on system power-up.
    D0EntrySystemPowerUp = 5,
}

impl OpenedDuring {
    pub(crate) const fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Manual,
            2 => Self::Create,
            3 => Self::PrepareHardware,
            4 => Self::D0Entry,
            5 => Self::D0EntrySystemPowerUp,
            _ => Self::Invalid,
        }
    }
}

/// A client callback run with no arguments (post-open, pre-close).
pub type ClientHook = Box<dyn Fn() + Send + Sync>;

/// What the creator of a module chooses (DMF's `DMF_MODULE_ATTRIBUTES`).
pub struct ModuleAttributes {
    /// Instance name, for tracing. Defaults to the module type's name.
    pub name: Option<&'static str>,
    /// Run the module at `PASSIVE_LEVEL`: its locks are wait locks instead of spin locks, its
    /// methods may only be called at `PASSIVE_LEVEL`, and it may use paged pool.
    pub passive_level: bool,
    /// A dynamic module is created and opened by the client at run time (DMF's default for
    /// modules created with `DMF_<Module>_Create`). A static module (`dynamic: false`) is added to
    /// a [`DeviceModules`](super::DeviceModules) collection, which opens and closes it.
    pub dynamic: bool,
    /// Called right after the module opened; its methods already work.
    pub post_open: Option<ClientHook>,
    /// Called right before the module closes; its methods still work.
    pub pre_close: Option<ClientHook>,
}

impl ModuleAttributes {
    /// DMF's defaults: dynamic, dispatch level, no callbacks.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            name: None,
            passive_level: false,
            dynamic: true,
            post_open: None,
            pre_close: None,
        }
    }

    /// Defaults with the passive-level option set.
    #[must_use]
    pub const fn passive() -> Self {
        let mut attributes = Self::new();
        attributes.passive_level = true;
        attributes
    }

    /// Defaults for a module that a [`DeviceModules`](super::DeviceModules) collection owns.
    #[must_use]
    pub const fn static_module() -> Self {
        let mut attributes = Self::new();
        attributes.dynamic = false;
        attributes
    }

    /// Attributes for a child module named `name` whose parent has the given passive-level
    /// option: same passive level, static (its parent's tree opens and closes it), no client
    /// callbacks.
    #[must_use]
    pub const fn child_of(parent_passive_level: bool, name: &'static str) -> Self {
        Self {
            name: Some(name),
            passive_level: parent_passive_level,
            dynamic: false,
            post_open: None,
            pre_close: None,
        }
    }
}

impl Default for ModuleAttributes {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for ModuleAttributes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ModuleAttributes")
            .field("name", &self.name)
            .field("passive_level", &self.passive_level)
            .field("dynamic", &self.dynamic)
            .field("post_open", &self.post_open.is_some())
            .field("pre_close", &self.pre_close.is_some())
            .finish()
    }
}
