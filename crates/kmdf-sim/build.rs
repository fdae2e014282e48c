//! Writes `call_unsafe_wdf_function_binding!` the way wdk-sys's build script does: a macro that
//! forwards to wdk-macros with the path of the bindings file it reads signatures from.
//!
//! wdk-macros caches what it parsed from that file in the target directory. After adding a
//! function to `src/types.rs`, run `cargo clean -p scratch` so the cache is rebuilt.

use std::{env, fs, path::PathBuf};

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let types = manifest.join("src").join("types.rs");
    println!("cargo:rerun-if-changed={}", types.display());
    let types = types.to_str().expect("the bindings path is valid UTF-8");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let text = format!(
        r#"/// Calls a WDF function through the simulated function table, exactly as wdk-sys does.
#[macro_export]
macro_rules! call_unsafe_wdf_function_binding {{
    ( $($tt:tt)* ) => {{
        $crate::__proc_macros::call_unsafe_wdf_function_binding! (
            r"{types}",
            $($tt)*
        )
    }}
}}
"#
    );
    fs::write(out.join("call_unsafe_wdf_function_binding.rs"), text).expect("OUT_DIR is writable");
}
