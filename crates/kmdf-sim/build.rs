//! Writes `call_unsafe_wdf_function_binding!` the way wdk-sys's build script does: a macro that
//! forwards to wdk-macros with the path of the bindings file it reads signatures from.
//!
//! wdk-macros caches what it parsed from that file in the target directory (the `scratch`
//! crate's output) and never looks at the file again. This script reruns whenever the bindings
//! change and then drops that cache, so a newly added `PFN_*` type is seen without a manual
//! `cargo clean -p scratch`.

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
    forget_parsed_bindings(&out);
}

/// Removes wdk-macros' cached parse of the bindings: `<target>/<profile>/build/scratch-*/out/
/// wdk_macros_ast_fragments*/cached_function_info_map.json`, found from this script's `OUT_DIR`
/// (`<target>/<profile>/build/kmdf-sim-*/out`). Missing directories are fine.
fn forget_parsed_bindings(out: &std::path::Path) {
    let Some(build_dir) = out.parent().and_then(std::path::Path::parent) else {
        return;
    };
    let Ok(entries) = fs::read_dir(build_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("scratch-") {
            continue;
        }
        let Ok(caches) = fs::read_dir(entry.path().join("out")) else {
            continue;
        };
        for cache in caches.flatten() {
            if cache
                .file_name()
                .to_string_lossy()
                .starts_with("wdk_macros_ast_fragments")
            {
                let _ = fs::remove_file(cache.path().join("cached_function_info_map.json"));
            }
        }
    }
}
