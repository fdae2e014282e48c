//! DMF for Rust: Driver Module Framework modules for KMDF drivers.
#![no_std]

extern crate alloc;

pub mod wdf;
