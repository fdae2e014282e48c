//! The states a module goes through.

/// Where a module is in its life (DMF's `ModuleOpenedDuringType`-independent object state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ModuleState {
    /// Being built.
    PreCreate = 1,
    /// Built, not open (also after a failed open).
    Created = 2,
    /// The module's open callback is running.
    Opening = 3,
    /// Open: methods work.
    Opened = 4,
    /// The module's close callback is running.
    Closing = 5,
    /// Closed.
    Closed = 6,
}

impl ModuleState {
    pub(crate) const fn from_u8(value: u8) -> Self {
        match value {
            2 => Self::Created,
            3 => Self::Opening,
            4 => Self::Opened,
            5 => Self::Closing,
            6 => Self::Closed,
            _ => Self::PreCreate,
        }
    }
}
