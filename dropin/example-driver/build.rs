//! The driver's build script, as in every windows-drivers-rs driver.

fn main() -> Result<(), wdk_build::ConfigError> {
    wdk_build::configure_wdk_binary_build()
}
