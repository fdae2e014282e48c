//! The monitor on Windows: opens the installed hub's device interface
//! (`CM_Get_Device_Interface_ListW`, `CreateFileW` with `FILE_FLAG_OVERLAPPED`) and issues the
//! same IOCTLs with `DeviceIoControl` through `windows-sys`. The sensors are whatever is
//! installed: `--sensors`, `--churn` and `--seed` do not apply.
//!
//! Not compiled or run by the project's CI (which runs on Linux); the signatures were checked
//! against windows-sys 0.61.

use std::time::Duration;

use windows_sys::Win32::Devices::DeviceAndDriverInstallation::{
    CM_GET_DEVICE_INTERFACE_LIST_PRESENT, CM_Get_Device_Interface_List_SizeW,
    CM_Get_Device_Interface_ListW, CR_SUCCESS,
};
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_IO_PENDING, ERROR_OPERATION_ABORTED, GENERIC_READ, GENERIC_WRITE,
    GetLastError, HANDLE, INVALID_HANDLE_VALUE, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_OVERLAPPED, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::IO::{
    CancelIoEx, DeviceIoControl, GetOverlappedResultEx, OVERLAPPED,
};
use windows_sys::Win32::System::Threading::CreateEventW;
use windows_sys::core::GUID;

use crate::protocol::{self, SENSORS_BUFFER_SIZE};
use crate::{Hub, Options, Reaped, Stage};

/// An open handle to the hub.
struct WinHub(HANDLE);

// SAFETY: a file handle may be used from any thread; overlapped operations on it are
// independent (each has its own OVERLAPPED and event).
unsafe impl Sync for WinHub {}

impl Drop for WinHub {
    fn drop(&mut self) {
        // SAFETY: the handle came from CreateFileW and is closed once, here.
        unsafe {
            CloseHandle(self.0);
        }
    }
}

/// An overlapped `DeviceIoControl` in flight: its `OVERLAPPED` and buffer stay at one
/// address (boxed) until it completed.
struct WinWait {
    overlapped: Box<OVERLAPPED>,
    output: Vec<u8>,
    /// Completed before `DeviceIoControl` returned: (ok, bytes, error).
    immediate: Option<(bool, u32, u32)>,
    file: HANDLE,
}

impl Drop for WinWait {
    fn drop(&mut self) {
        if self.immediate.is_none() {
            let mut bytes = 0u32;
            // SAFETY: the handle and OVERLAPPED are this operation's; cancelling a completed
            // operation is harmless.
            unsafe {
                CancelIoEx(self.file, &raw const *self.overlapped);
            }
            // SAFETY: waits (INFINITE) until the operation no longer uses the buffers.
            unsafe {
                GetOverlappedResultEx(
                    self.file,
                    &raw const *self.overlapped,
                    &raw mut bytes,
                    u32::MAX,
                    0,
                );
            }
        }
        // SAFETY: the event came from CreateEventW and is closed once, here.
        unsafe {
            CloseHandle(self.overlapped.hEvent);
        }
    }
}

fn last_error() -> u32 {
    // SAFETY: reads the calling thread's last error.
    unsafe { GetLastError() }
}

fn hub_guid() -> GUID {
    let (data1, data2, data3, data4) = protocol::HUB_INTERFACE;
    GUID {
        data1,
        data2,
        data3,
        data4,
    }
}

/// The first present interface of the hub's class, as a NUL-terminated UTF-16 path.
fn interface_path() -> Result<Vec<u16>, String> {
    let guid = hub_guid();
    let mut length = 0u32;
    // SAFETY: `length` and `guid` are valid for the call; no device id (null).
    let status = unsafe {
        CM_Get_Device_Interface_List_SizeW(
            &raw mut length,
            &raw const guid,
            std::ptr::null(),
            CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
        )
    };
    if status != CR_SUCCESS {
        return Err(format!(
            "CM_Get_Device_Interface_List_SizeW: CONFIGRET {status}"
        ));
    }
    let mut list = vec![0u16; length as usize + 1];
    // SAFETY: `list` holds `length` UTF-16 units (one more to spare).
    let status = unsafe {
        CM_Get_Device_Interface_ListW(
            &raw const guid,
            std::ptr::null(),
            list.as_mut_ptr(),
            length,
            CM_GET_DEVICE_INTERFACE_LIST_PRESENT,
        )
    };
    if status != CR_SUCCESS {
        return Err(format!("CM_Get_Device_Interface_ListW: CONFIGRET {status}"));
    }
    // A multi-string: the first entry up to its NUL.
    let end = list.iter().position(|&c| c == 0).unwrap_or(0);
    if end == 0 {
        return Err("no hub interface present: is the hub driver installed and started?".into());
    }
    let mut path = list[..end].to_vec();
    path.push(0);
    Ok(path)
}

fn open() -> Result<WinHub, String> {
    let path = interface_path()?;
    // SAFETY: `path` is NUL-terminated; no security attributes or template.
    let handle = unsafe {
        CreateFileW(
            path.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            std::ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED,
            std::ptr::null_mut(),
        )
    };
    if handle == INVALID_HANDLE_VALUE {
        return Err(format!("CreateFileW on the hub: error {}", last_error()));
    }
    Ok(WinHub(handle))
}

impl WinHub {
    /// Starts an overlapped IOCTL with no input and `length` output bytes.
    fn start(&self, code: u32, length: usize) -> Result<WinWait, String> {
        let size = u32::try_from(length).map_err(|_| "buffer too large")?;
        // SAFETY: a manual-reset, unsignalled, unnamed event.
        let event = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
        if event.is_null() {
            return Err(format!("CreateEventW: error {}", last_error()));
        }
        let mut wait = WinWait {
            overlapped: Box::new(OVERLAPPED {
                hEvent: event,
                ..OVERLAPPED::default()
            }),
            output: vec![0u8; length],
            immediate: None,
            file: self.0,
        };
        let mut bytes = 0u32;
        // SAFETY: the output buffer and OVERLAPPED live in `wait` (heap) until it completes
        // (its drop waits); no input buffer.
        let ok = unsafe {
            DeviceIoControl(
                self.0,
                code,
                std::ptr::null(),
                0,
                wait.output.as_mut_ptr().cast(),
                size,
                &raw mut bytes,
                &raw mut *wait.overlapped,
            )
        };
        if ok != 0 {
            wait.immediate = Some((true, bytes, 0));
        } else {
            let error = last_error();
            if error != ERROR_IO_PENDING {
                wait.immediate = Some((false, 0, error));
            }
        }
        Ok(wait)
    }

    /// (ok, bytes, error) of `wait`, waiting up to `timeout`; `None` on timeout.
    fn result(&self, wait: &WinWait, timeout: Duration) -> Option<(bool, u32, u32)> {
        if let Some(done) = wait.immediate {
            return Some(done);
        }
        let mut bytes = 0u32;
        let milliseconds = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX - 1);
        // SAFETY: the operation's own handle and OVERLAPPED.
        let ok = unsafe {
            GetOverlappedResultEx(
                self.0,
                &raw const *wait.overlapped,
                &raw mut bytes,
                milliseconds,
                0,
            )
        };
        if ok != 0 {
            return Some((true, bytes, 0));
        }
        let error = last_error();
        (error != WAIT_TIMEOUT).then_some((false, 0, error))
    }
}

impl Hub for WinHub {
    type Wait = WinWait;

    fn sensors(&self) -> Result<Vec<protocol::SensorStatistics>, String> {
        let wait = self.start(protocol::IOCTL_GET_SENSORS, SENSORS_BUFFER_SIZE)?;
        match self.result(&wait, Duration::from_secs(10)) {
            Some((true, bytes, _)) => Ok(protocol::parse_sensors(&wait.output, bytes as usize)),
            Some((false, _, error)) => Err(format!("GET_SENSORS: error {error}")),
            None => Err("GET_SENSORS did not complete".to_string()),
        }
    }

    fn wait_samples(&self, length: usize) -> Result<WinWait, String> {
        self.start(protocol::IOCTL_WAIT_SAMPLES, length)
    }

    fn reap(&self, wait: &WinWait, timeout: Duration) -> Option<Reaped> {
        let (ok, bytes, error) = self.result(wait, timeout)?;
        Some(if ok {
            Reaped::Samples(protocol::parse_samples(&wait.output, bytes as usize))
        } else if error == ERROR_OPERATION_ABORTED {
            Reaped::Cancelled
        } else {
            Reaped::Failed(i64::from(error))
        })
    }

    fn cancel(&self, wait: &WinWait) {
        if wait.immediate.is_none() {
            // SAFETY: the operation's own handle and OVERLAPPED.
            unsafe {
                CancelIoEx(self.0, &raw const *wait.overlapped);
            }
        }
    }
}

/// The installed sensors: nothing to drive.
struct Installed;

impl Stage for Installed {
    fn tick(&mut self, _elapsed: Duration) -> Option<String> {
        None
    }

    fn finish(&mut self) -> bool {
        false
    }
}

/// The monitor against the installed hub.
pub fn run(options: &Options) -> Result<bool, String> {
    if options.churn || options.seed.is_some() {
        println!("--churn and --seed apply to the simulation only; watching the installed sensors");
    }
    let hub = open()?;
    crate::monitor(&hub, &mut Installed, options)
}
