//! A host stand-in for `wdk-panic`. On Windows it supplies a kernel driver's `#[panic_handler]`
//! (a bug check); on the host the test process links the standard library, which already has
//! one, so this crate is empty and `extern crate wdk_panic;` links unchanged.
#![no_std]
