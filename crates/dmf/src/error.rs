//! Errors shared by the module core and the modules: configuration errors found at creation and
//! the module error type that carries either one of those or an `NTSTATUS`.

use crate::wdf::NtStatus;

/// A configuration rule a module checks when it is created.
///
/// DMF checks most of these with debug-only asserts (release builds continue with a broken
/// module); here each one is a typed error returned by `create`, and nothing is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A buffer size of zero was given where buffers must hold data.
    #[error("buffer size must be greater than zero")]
    ZeroBufferSize,
    /// A source pool has no buffers: `buffer_count` is zero and look-aside is off.
    #[error("a source pool needs buffer_count > 0 or look-aside enabled")]
    NoBuffers,
    /// `create_with_timer` was asked for without preallocated buffers.
    #[error("create_with_timer requires buffer_count > 0")]
    TimerNeedsPreallocatedBuffers,
    /// `create_with_timer` was combined with look-aside (DMF refuses this in user mode).
    #[error("create_with_timer cannot be combined with look-aside")]
    TimerWithLookAside,
    /// A paged pool type was chosen for a module whose locks are spin locks.
    #[error("a paged pool type requires the passive-level module option")]
    PagedPoolRequiresPassiveLevel,
    /// The passive-level option was given to a module that cannot run with wait locks.
    #[error("this module does not support the passive-level option")]
    PassiveLevelNotSupported,
    /// A child opens later than its parent (the parent would open before its child).
    #[error("a parent module may not open earlier than its child")]
    ParentOpensBeforeChild,
    /// A dynamic module (created at run time) may only open at create.
    #[error("a dynamic module must open (or register notifications) at create")]
    DynamicModuleOpenOption,
    /// A dynamic module may not hook PnP/power callbacks.
    #[error("a dynamic module may not receive PnP/power callbacks")]
    DynamicModuleWithPnpCallbacks,
    /// A module that fills input buffers has no callback to fill them with.
    #[error("an input buffer size was given without an input buffer callback")]
    InputCallbackRequired,
    /// The request type needs a buffer the configuration does not provide (a read needs output
    /// buffers, a write input buffers).
    #[error("the request type needs a buffer of the kind the configuration leaves out")]
    BufferRequiredForRequestType,
    /// A module that parks requests was given a limit of zero pending requests (it would reject
    /// every request).
    #[error("the maximum number of pending requests must be greater than zero")]
    NoPendingRequests,
    /// Data-buffer settings (a data size, look-aside, a data or cleanup callback) were given to
    /// a module configured to hold no data buffers.
    #[error("data-buffer settings need a maximum number of pending data buffers > 0")]
    DataSettingsWithoutDataBuffers,
    /// A callback of a child module's configuration was set where the parent installs its own
    /// (the `BufferQueue` callbacks inside a `ThreadedBufferQueue` configuration).
    #[error("the inner BufferQueue callbacks are the module's own; use the module's fields")]
    BufferQueueCallbackSet,
    /// Both the plain and the vetoing state-change callback were given (only one may be set).
    #[error("only one of the state-change callbacks may be set")]
    BothStateChangeCallbacks,
    /// `purge_and_start_target_in_d0_callbacks` was asked for a child that cannot be static:
    /// the per-target children of `DeviceInterfaceMultipleTarget`, or those of a dynamic
    /// `DeviceInterfaceTarget`, receive no PnP/power callbacks.
    #[error("purge_and_start_target_in_d0_callbacks needs a static child module")]
    D0CallbacksOnDynamicChild,
    /// A module was added to a device collection but was created as a dynamic module, or was
    /// added twice.
    #[error("only static modules can be added to a device collection, once")]
    NotAStaticModule,
}

impl ConfigError {
    /// The `NTSTATUS` DMF returns for this condition (where it checks it at run time).
    #[must_use]
    pub const fn status(self) -> NtStatus {
        match self {
            Self::PassiveLevelNotSupported => NtStatus::INVALID_DEVICE_REQUEST,
            Self::TimerWithLookAside => NtStatus::NOT_SUPPORTED,
            Self::DynamicModuleOpenOption | Self::DynamicModuleWithPnpCallbacks => {
                NtStatus::UNSUCCESSFUL
            }
            _ => NtStatus::INVALID_PARAMETER,
        }
    }
}

/// Why creating or opening a module failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    /// The configuration breaks a rule (nothing was created).
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The framework or the module's open callback failed with this status.
    #[error("failed with {0}")]
    Status(#[from] NtStatus),
}

impl ModuleError {
    /// The `NTSTATUS` equivalent, for returning from a WDF callback.
    #[must_use]
    pub const fn status(self) -> NtStatus {
        match self {
            Self::Config(config) => config.status(),
            Self::Status(status) => status,
        }
    }
}

impl From<ModuleError> for NtStatus {
    fn from(error: ModuleError) -> Self {
        error.status()
    }
}
