//! kmdf-sim under the package name `wdk-sys`: everything kmdf-sim offers (the wdk-sys surface,
//! `call_unsafe_wdf_function_binding!`, and the test-only `sim` module), re-exported as is.
#![no_std]

pub use kmdf_sim::*;
pub use kmdf_sim::{PAGED_CODE, call_unsafe_wdf_function_binding};
