//! The user-mode side: open a device by symbolic link or interface class, then
//! `DeviceIoControl`, `ReadFile` and `WriteFile`, synchronous or overlapped, and `CancelIoEx`.
//! Closing a handle (dropping the [`File`]) cancels its pending requests, as the I/O manager's
//! cleanup does.
//!
//! Calls run at `PASSIVE_LEVEL` on the caller's thread, which is where a device's `EvtIo*`
//! callbacks run for them, as for a real user-mode request.

use std::sync::Arc;
use std::time::Duration;

use crate::framework::io::{self, Irp, Link, MajorFunction, Range};
use crate::framework::irql;
use crate::types::{GUID, NTSTATUS};

/// An open handle (`CreateFile`).
pub struct File {
    link: Arc<Link>,
    file: u64,
}

impl core::fmt::Debug for File {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("File")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// An overlapped operation in flight. Dropping it cancels it and waits for its completion
/// (the buffers it owns must outlive the device's use of them).
pub struct Overlapped {
    irp: Arc<Irp>,
    _input: Box<[u8]>,
    output: Box<[u8]>,
}

impl core::fmt::Debug for Overlapped {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Overlapped")
            .field("complete", &self.is_complete())
            .finish_non_exhaustive()
    }
}

impl Overlapped {
    /// Whether the operation completed (`HasOverlappedIoCompleted`).
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.irp.is_completed()
    }

    /// `CancelIoEx` for this operation: true if it was still pending.
    #[must_use]
    pub fn cancel(&self) -> bool {
        self.irp.cancel()
    }

    /// Waits for completion (`GetOverlappedResult`); `None` on timeout. On success the value is
    /// (status, bytes transferred).
    #[must_use]
    pub fn wait(&self, timeout: Duration) -> Option<(NTSTATUS, usize)> {
        self.irp.wait(Some(timeout)).then(|| self.irp.result())
    }

    /// The output buffer (read data or IOCTL output).
    #[must_use]
    pub fn output(&self) -> &[u8] {
        &self.output
    }
}

impl Drop for Overlapped {
    fn drop(&mut self) {
        if !self.irp.is_completed() {
            self.irp.cancel();
            self.irp.wait(None);
        }
    }
}

fn range(buffer: &mut [u8]) -> Range {
    if buffer.is_empty() {
        Range::default()
    } else {
        Range {
            address: buffer.as_mut_ptr() as usize,
            length: buffer.len(),
        }
    }
}

impl File {
    /// Opens a device by symbolic link name.
    pub fn open(name: &str) -> Result<Self, NTSTATUS> {
        let (link, file) = io::open(name)?;
        Ok(Self { link, file })
    }

    /// Opens the first enabled interface of `class` (as `SetupDiGetClassDevs` + `CreateFile`).
    pub fn open_interface(class: &GUID) -> Result<Self, NTSTATUS> {
        let name = interfaces(class)
            .into_iter()
            .next()
            .ok_or(crate::constants::STATUS_OBJECT_NAME_NOT_FOUND)?;
        Self::open(&name)
    }

    fn start(
        &self,
        major: MajorFunction,
        ioctl: u32,
        input: &[u8],
        output_length: usize,
    ) -> Overlapped {
        let mut input: Box<[u8]> = input.into();
        let mut output: Box<[u8]> = vec![0; output_length].into_boxed_slice();
        let irp = Irp::new(
            major,
            ioctl,
            range(&mut input),
            range(&mut output),
            self.file,
            None,
        );
        let node = self.link.node.clone();
        let delivered = irp.clone();
        irql::run_callback(irql::PASSIVE, "user-mode I/O", move || {
            node.dispatch(delivered);
        });
        Overlapped {
            irp,
            _input: input,
            output,
        }
    }

    /// Overlapped `DeviceIoControl`.
    #[must_use]
    pub fn device_io_control_overlapped(
        &self,
        code: u32,
        input: &[u8],
        output_length: usize,
    ) -> Overlapped {
        self.start(MajorFunction::DeviceControl, code, input, output_length)
    }

    /// Overlapped `ReadFile`.
    #[must_use]
    pub fn read_overlapped(&self, length: usize) -> Overlapped {
        self.start(MajorFunction::Read, 0, &[], length)
    }

    /// Overlapped `WriteFile`.
    #[must_use]
    pub fn write_overlapped(&self, data: &[u8]) -> Overlapped {
        self.start(MajorFunction::Write, 0, data, 0)
    }

    fn finish(operation: &Overlapped, output: &mut [u8]) -> Result<usize, NTSTATUS> {
        operation.irp.wait(None);
        let (status, information) = operation.irp.result();
        let copied = information.min(output.len()).min(operation.output.len());
        output[..copied].copy_from_slice(&operation.output[..copied]);
        if status < 0 {
            Err(status)
        } else {
            Ok(information)
        }
    }

    /// Synchronous `DeviceIoControl`: returns the bytes returned.
    pub fn device_io_control(
        &self,
        code: u32,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, NTSTATUS> {
        let operation = self.device_io_control_overlapped(code, input, output.len());
        Self::finish(&operation, output)
    }

    /// Synchronous `ReadFile`: returns the bytes read.
    pub fn read(&self, buffer: &mut [u8]) -> Result<usize, NTSTATUS> {
        let operation = self.read_overlapped(buffer.len());
        Self::finish(&operation, buffer)
    }

    /// Synchronous `WriteFile`: returns the bytes written.
    pub fn write(&self, data: &[u8]) -> Result<usize, NTSTATUS> {
        let operation = self.write_overlapped(data);
        Self::finish(&operation, &mut [])
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // CloseHandle: the device cancels what this handle still has pending.
        self.link.close(self.file);
    }
}

/// Symbolic link names of the enabled interfaces of `class`.
#[must_use]
pub fn interfaces(class: &GUID) -> Vec<String> {
    io::interfaces_of(class)
}
