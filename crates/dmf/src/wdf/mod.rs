//! The only layer that calls the framework: thin, safe wrappers over WDF handles.
//!
//! Everything here compiles unchanged against the real `wdk-sys` on Windows and against the
//! simulation elsewhere.

pub mod memory;
pub mod object;
pub mod status;

pub use memory::{Memory, PoolType};
pub use object::ObjectAttributes;
pub use status::NtStatus;
