//! `NTSTATUS` as a type: named statuses, success tests and conversion to `Result`.

use core::fmt;

use wdk_sys::NTSTATUS;

/// An `NTSTATUS` value.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct NtStatus(NTSTATUS);

macro_rules! named_statuses {
    ($($name:ident = $value:ident),* $(,)?) => {
        impl NtStatus {
            $(
                #[doc = concat!("`", stringify!($value), "`.")]
                pub const $name: Self = Self(wdk_sys::$value);
            )*

            /// The symbolic name of a status this crate names, if it is one.
            #[must_use]
            pub const fn name(self) -> Option<&'static str> {
                $(if self.0 == wdk_sys::$value { return Some(stringify!($value)); })*
                None
            }
        }
    };
}

named_statuses! {
    SUCCESS = STATUS_SUCCESS,
    PENDING = STATUS_PENDING,
    TIMEOUT = STATUS_TIMEOUT,
    UNSUCCESSFUL = STATUS_UNSUCCESSFUL,
    NOT_IMPLEMENTED = STATUS_NOT_IMPLEMENTED,
    INVALID_HANDLE = STATUS_INVALID_HANDLE,
    INVALID_PARAMETER = STATUS_INVALID_PARAMETER,
    NO_SUCH_DEVICE = STATUS_NO_SUCH_DEVICE,
    INVALID_DEVICE_REQUEST = STATUS_INVALID_DEVICE_REQUEST,
    NO_MEMORY = STATUS_NO_MEMORY,
    ACCESS_DENIED = STATUS_ACCESS_DENIED,
    BUFFER_TOO_SMALL = STATUS_BUFFER_TOO_SMALL,
    OBJECT_NAME_NOT_FOUND = STATUS_OBJECT_NAME_NOT_FOUND,
    DEVICE_ALREADY_ATTACHED = STATUS_DEVICE_ALREADY_ATTACHED,
    DELETE_PENDING = STATUS_DELETE_PENDING,
    INSUFFICIENT_RESOURCES = STATUS_INSUFFICIENT_RESOURCES,
    DEVICE_NOT_CONNECTED = STATUS_DEVICE_NOT_CONNECTED,
    DEVICE_NOT_READY = STATUS_DEVICE_NOT_READY,
    IO_TIMEOUT = STATUS_IO_TIMEOUT,
    NOT_SUPPORTED = STATUS_NOT_SUPPORTED,
    INTERNAL_ERROR = STATUS_INTERNAL_ERROR,
    REQUEST_NOT_ACCEPTED = STATUS_REQUEST_NOT_ACCEPTED,
    CANCELLED = STATUS_CANCELLED,
    INVALID_DEVICE_STATE = STATUS_INVALID_DEVICE_STATE,
    INVALID_BUFFER_SIZE = STATUS_INVALID_BUFFER_SIZE,
    NOT_FOUND = STATUS_NOT_FOUND,
    DEVICE_REMOVED = STATUS_DEVICE_REMOVED,
    BUFFER_OVERFLOW = STATUS_BUFFER_OVERFLOW,
    NO_MORE_ENTRIES = STATUS_NO_MORE_ENTRIES,
    DEVICE_BUSY = STATUS_DEVICE_BUSY,
    POSSIBLE_DEADLOCK = STATUS_POSSIBLE_DEADLOCK,
}

impl NtStatus {
    /// Wraps a raw status.
    #[must_use]
    pub const fn from_raw(status: NTSTATUS) -> Self {
        Self(status)
    }

    /// The raw status.
    #[must_use]
    pub const fn raw(self) -> NTSTATUS {
        self.0
    }

    /// True for success and informational statuses (`NT_SUCCESS`).
    #[must_use]
    pub const fn is_success(self) -> bool {
        self.0 >= 0
    }

    /// True for error statuses (`NT_ERROR`).
    #[must_use]
    pub const fn is_error(self) -> bool {
        (self.0.cast_unsigned() >> 30) == 3
    }

    /// `Ok(())` for success statuses, `Err(self)` otherwise.
    pub const fn into_result(self) -> Result<(), NtStatus> {
        if self.is_success() { Ok(()) } else { Err(self) }
    }

    /// The status a `Result` carries: `SUCCESS` for `Ok`.
    #[must_use]
    pub const fn from_result(result: Result<(), NtStatus>) -> Self {
        match result {
            Ok(()) => Self::SUCCESS,
            Err(status) => status,
        }
    }
}

impl From<NTSTATUS> for NtStatus {
    fn from(status: NTSTATUS) -> Self {
        Self(status)
    }
}

impl From<NtStatus> for NTSTATUS {
    fn from(status: NtStatus) -> Self {
        status.0
    }
}

impl fmt::Debug for NtStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "NTSTATUS({:#010x})", self.0.cast_unsigned()),
        }
    }
}

impl fmt::Display for NtStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl core::error::Error for NtStatus {}

#[cfg(test)]
mod tests {
    use super::NtStatus;

    #[test]
    fn success_and_error_classes() {
        assert!(NtStatus::SUCCESS.is_success());
        assert!(NtStatus::PENDING.is_success());
        assert!(!NtStatus::CANCELLED.is_success());
        assert!(NtStatus::CANCELLED.is_error());
        assert!(
            !NtStatus::BUFFER_OVERFLOW.is_error(),
            "a warning is neither success nor error"
        );
        assert!(!NtStatus::BUFFER_OVERFLOW.is_success());
    }

    #[test]
    fn result_round_trip_and_names() {
        assert_eq!(NtStatus::SUCCESS.into_result(), Ok(()));
        assert_eq!(
            NtStatus::IO_TIMEOUT.into_result(),
            Err(NtStatus::IO_TIMEOUT)
        );
        assert_eq!(
            NtStatus::from_result(Err(NtStatus::CANCELLED)),
            NtStatus::CANCELLED
        );
        assert_eq!(NtStatus::CANCELLED.raw().cast_unsigned(), 0xC000_0120);
        assert_eq!(
            alloc::format!("{:?}", NtStatus::CANCELLED),
            "STATUS_CANCELLED"
        );
        assert_eq!(
            alloc::format!("{:?}", NtStatus::from_raw(0x1234)),
            "NTSTATUS(0x00001234)"
        );
    }
}
