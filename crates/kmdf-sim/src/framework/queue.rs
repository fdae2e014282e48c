//! `WDFQUEUE`: how packets that reach a device are presented to its driver.
//!
//! Queues are not simulated yet: a packet that reaches a simulated device completes with
//! `STATUS_INVALID_DEVICE_REQUEST`, as a device without a queue for that request type does.

use std::sync::Arc;

use super::io::Irp;
use super::object::Object;
use super::table::Entry;
use crate::constants::STATUS_INVALID_DEVICE_REQUEST;

/// A device's queues.
#[derive(Default)]
pub(crate) struct DeviceQueues {}

impl DeviceQueues {
    /// The default queue (0: none).
    pub(crate) fn default_queue(&self) -> usize {
        0
    }
}

/// Presents a packet that reached `device` to the right queue.
pub(crate) fn dispatch(_device: usize, irp: Arc<Irp>) {
    irp.complete(STATUS_INVALID_DEVICE_REQUEST, 0);
}

/// Cancels the packets of a closed handle.
pub(crate) fn cancel_file(_device: usize, _file: u64) {}

/// The device entered (true) or left (false) D0: power-managed queues start or stop.
pub(crate) fn device_powered(_device: usize, _on: bool) {}

/// The device is going away: every queue fails what it holds.
pub(crate) fn purge_device(_device: usize) {}

/// A presented request left the driver (sent-and-forgotten).
pub(crate) fn request_left_driver(_request: &Arc<Object>) {}

pub(crate) const ENTRIES: &[Entry] = &[];

/// Kernel functions of this area, re-exported from `ntddk`.
#[allow(non_snake_case)]
pub mod kernel {}
