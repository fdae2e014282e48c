//! A host stand-in for `wdk-build`, for build scripts of drivers and of `wdk`, `wdk-alloc` and
//! `wdk-panic` running on kmdf-sim: it emits the `cfg` settings wdk-build derives from a KMDF
//! configuration (`driver_model__driver_type = "KMDF"`, the only model kmdf-sim simulates) and
//! configures no WDK paths, bindings or linker arguments, since nothing is linked against a WDK.

use std::fmt;

/// Errors of a build configuration (none can occur on the host).
#[derive(Debug)]
pub enum ConfigError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl std::error::Error for ConfigError {}

fn emit_kmdf_cfg() {
    println!(
        r#"cargo::rustc-check-cfg=cfg(driver_model__driver_type, values("WDM","KMDF","UMDF"))"#
    );
    println!(r#"cargo::rustc-cfg=driver_model__driver_type="KMDF""#);
}

/// Configures a library that depends on the WDK: the KMDF `cfg` settings.
///
/// # Errors
/// Never, on the host.
pub fn configure_wdk_library_build() -> Result<(), ConfigError> {
    emit_kmdf_cfg();
    Ok(())
}

/// Configures a driver binary: the KMDF `cfg` settings (no linker setup on the host).
///
/// # Errors
/// Never, on the host.
pub fn configure_wdk_binary_build() -> Result<(), ConfigError> {
    emit_kmdf_cfg();
    Ok(())
}
