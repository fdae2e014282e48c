//! The only layer that calls the framework: thin, safe wrappers over WDF handles.
//!
//! Everything here compiles unchanged against the real `wdk-sys` on Windows and against the
//! simulation elsewhere.

pub mod collection;
pub mod device;
pub mod device_handler;
pub mod driver;
pub mod entry;
pub mod event;
pub mod io_target;
pub mod irql;
pub mod memory;
pub mod object;
pub mod pnp_notification;
pub mod queue;
pub mod request;
pub mod spin_lock;
pub mod status;
pub mod thread;
pub mod timer;
pub mod trace;
pub mod wait_lock;
pub mod work_item;

pub use memory::{Memory, PoolType};
pub use object::ObjectAttributes;
pub use status::NtStatus;
