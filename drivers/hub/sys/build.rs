//! Build script of the hub driver.
//!
//! On Windows, [`wdk_build::configure_wdk_binary_build`] reads the WDK configuration (from the
//! EWDK environment and the workspace's `metadata.wdk`) and gives Cargo the linker settings of a
//! kernel driver binary. Elsewhere the crate is built against the simulation and needs nothing.

#[cfg(windows)]
fn main() -> Result<(), wdk_build::ConfigError> {
    // Build scripts run on the host: configure the driver binary only when the target is
    // Windows too (the WDK has no cross build from another OS).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("windows") {
        wdk_build::configure_wdk_binary_build()
    } else {
        Ok(())
    }
}

#[cfg(not(windows))]
fn main() {}
