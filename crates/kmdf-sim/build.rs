//! Writes `call_unsafe_wdf_function_binding!` the way wdk-sys's build script does: a macro that
//! forwards to wdk-macros with the path of the bindings file it reads signatures from.
//!
//! wdk-macros caches what it parsed from that file in the target directory (the `scratch`
//! crate's output) and never looks at the file again. This script reruns whenever the bindings
//! change and then drops that cache, so a newly added `PFN_*` type is seen without a manual
//! `cargo clean -p scratch`.
//!
//! It also writes the fallback entries of the WDF function table: one function per slot of
//! `_WDFFUNCENUM`, named after the WDF function it stands for and returning that function's
//! return type (read from its `PFN_*` type), so that calling a WDF function the simulation does
//! not implement names the function instead of reaching an anonymous stub.
//!
//! It writes a second table of the same slots whose entries run the first table's function as
//! framework code (`framework/driver_heap.rs`), which the simulation switches to when the
//! process's global allocator is backed by pool.
//!
//! And it compiles `DbgPrint` from C (`src/framework/dbgprint.c`): the kernel declares it
//! C-variadic, which stable Rust can call but not define.

use std::fmt::Write as _;
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
    let bindings = fs::read_to_string(types).expect("the bindings are readable");
    fs::write(out.join("not_simulated.rs"), fallbacks(&bindings)).expect("OUT_DIR is writable");
    fs::write(out.join("framework_code.rs"), guards(&bindings)).expect("OUT_DIR is writable");
    let dbgprint = manifest.join("src").join("framework").join("dbgprint.c");
    println!("cargo:rerun-if-changed={}", dbgprint.display());
    cc::Build::new()
        .file(dbgprint)
        .std("c11")
        .warnings(true)
        .extra_warnings(true)
        .compile("kmdf_sim_dbgprint");
}

/// The WDF function names of `_WDFFUNCENUM`, in slot order (`WdfXxxTableIndex: Type = n`).
fn slot_names(bindings: &str) -> Vec<String> {
    let start = bindings
        .find("pub mod _WDFFUNCENUM {")
        .expect("the bindings define _WDFFUNCENUM");
    let block = &bindings[start..];
    let block = &block[..block.find("\n}").expect("_WDFFUNCENUM ends")];
    let mut names = Vec::new();
    for line in block.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("pub const ") else {
            continue;
        };
        let Some((name, value)) = rest.split_once(": Type = ") else {
            continue;
        };
        let Some(name) = name.strip_suffix("TableIndex") else {
            continue; // WdfFunctionTableNumEntries
        };
        let index: usize = value
            .trim_end_matches(';')
            .parse()
            .expect("slot indexes are integers");
        assert_eq!(
            index,
            names.len(),
            "_WDFFUNCENUM slots are dense and in order"
        );
        names.push(name.to_string());
    }
    names
}

/// The parameter types and return type (`""` for none) of `PFN_<NAME>`, if the bindings
/// declare it.
fn signature(bindings: &str, function: &str) -> Option<(Vec<String>, String)> {
    let declaration = format!("pub type PFN_{} = ", function.to_ascii_uppercase());
    let start = bindings.find(&declaration)? + declaration.len();
    let text = &bindings[start..];
    let text = &text[..text.find(';')?];
    let open = text.find("fn(")? + 2;
    let mut depth = 0usize;
    let mut close = None;
    let mut parameters = Vec::new();
    let mut current = String::new();
    for (offset, c) in text[open..].char_indices() {
        match c {
            '(' | '<' => depth += 1,
            ')' | '>' => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            close = Some(open + offset);
            break;
        }
        if c == ',' && depth == 1 {
            parameters.push(core::mem::take(&mut current));
        } else if offset > 0 {
            current.push(c);
        }
    }
    parameters.push(current);
    let parameters = parameters
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (_, ty) = p.split_once(':').expect("bindgen names every parameter");
            ty.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect();
    let rest = text[close? + 1..].trim();
    let result = match rest.strip_prefix("->") {
        // `-> TYPE,` (or `-> TYPE`) then the `>` that closes `Option<`.
        Some(rest) => rest[..rest.rfind('>')?]
            .trim()
            .trim_end_matches(',')
            .trim()
            .to_string(),
        None => String::new(),
    };
    Some((parameters, result))
}

/// The generated fallbacks: `NAMES`, one `slot_<n>` function per slot and `FALLBACKS`.
///
/// A slot whose `PFN_*` type the bindings declare gets a fallback of exactly that signature (so
/// the caller's call through the `PFN_*` type is well-formed); it reports the function and
/// returns `super::NOT_SIMULATED_STATUS` for an `NTSTATUS` or all-zero (0, FALSE, NULL) for any
/// other return type. A slot without a `PFN_*` type cannot be called through the macro at all;
/// its fallback takes and returns nothing.
fn fallbacks(bindings: &str) -> String {
    let names = slot_names(bindings);
    let mut text = String::from(
        "// Generated by build.rs from src/types.rs: one fallback per WDF function table slot.\n\n",
    );
    let _ = writeln!(
        text,
        "/// The WDF function of each table slot (`_WDFFUNCENUM` order).\n\
         pub(crate) const NAMES: [&str; {}] = [",
        names.len()
    );
    for name in &names {
        let _ = writeln!(text, "    \"{name}\",");
    }
    text.push_str("];\n\n");
    let mut entries = String::new();
    for (index, name) in names.iter().enumerate() {
        let _ = writeln!(text, "/// Stands in for `{name}`.");
        let Some((parameters, result)) = signature(bindings, name) else {
            let _ = writeln!(
                text,
                "unsafe extern \"C\" fn slot_{index}() {{\n    super::not_simulated({index});\n}}\n"
            );
            let _ = writeln!(entries, "    Some(slot_{index}),");
            continue;
        };
        let parameters: Vec<String> = parameters.iter().map(|ty| format!("_: {ty}")).collect();
        let parameters = parameters.join(", ");
        let (arrow, body) = match result.as_str() {
            "" => (String::new(), String::new()),
            "NTSTATUS" => (
                " -> NTSTATUS".to_string(),
                "    super::NOT_SIMULATED_STATUS\n".to_string(),
            ),
            other => (
                format!(" -> {other}"),
                "    // SAFETY: WDF functions return integers, enums, pointers or handles, for \
                 which\n    // all-zero is a valid value (0, FALSE, NULL).\n    \
                 unsafe { core::mem::zeroed() }\n"
                    .to_string(),
            ),
        };
        let _ = writeln!(
            text,
            "unsafe extern \"C\" fn slot_{index}({parameters}){arrow} {{\n    \
             super::not_simulated({index});\n{body}}}\n"
        );
        let pfn = format!("PFN_{}", name.to_ascii_uppercase());
        let _ = writeln!(
            entries,
            "    // SAFETY: both types are `Option` of an `extern \"C\"` function pointer; the slot \
             is\n    // transmuted back to exactly `{pfn}` by the caller's macro expansion.\n    \
             unsafe {{ core::mem::transmute::<{pfn}, WDFFUNC>(Some(slot_{index})) }},"
        );
    }
    let _ = writeln!(
        text,
        "/// One fallback per slot, as the table stores them.\n\
         pub(crate) const FALLBACKS: [WDFFUNC; {}] = [\n{entries}];",
        names.len()
    );
    text
}

/// The guarded table: one `guard_<n>` per slot with a `PFN_*` type, calling `TABLE[n]` as that
/// type inside `super::framework_code`, and `GUARDED`, the table of them (`None` for slots the
/// macro cannot call).
fn guards(bindings: &str) -> String {
    let names = slot_names(bindings);
    let mut text = String::from(
        "// Generated by build.rs from src/types.rs: each slot's function run as framework code.\n\n",
    );
    let mut entries = String::new();
    for (index, name) in names.iter().enumerate() {
        let Some((parameters, result)) = signature(bindings, name) else {
            let _ = writeln!(entries, "    None,");
            continue;
        };
        let pfn = format!("PFN_{}", name.to_ascii_uppercase());
        let declared: Vec<String> = parameters
            .iter()
            .enumerate()
            .map(|(i, ty)| format!("p{i}: {ty}"))
            .collect();
        let passed: Vec<String> = (0..parameters.len()).map(|i| format!("p{i}")).collect();
        let arrow = if result.is_empty() {
            String::new()
        } else {
            format!(" -> {result}")
        };
        let _ = writeln!(
            text,
            "/// `{name}` as framework code.\n\
             unsafe extern \"C\" fn guard_{index}({}){arrow} {{\n    \
             super::framework_code(|| {{\n        \
             // SAFETY: slot {index} holds a `{pfn}` (its implementation or its fallback).\n        \
             let function = unsafe {{\n            \
             core::mem::transmute::<WDFFUNC, {pfn}>(crate::framework::table::TABLE[{index}])\n        \
             }};\n        \
             // SAFETY: the slot's entries are all `Some`.\n        \
             let function = unsafe {{ function.unwrap_unchecked() }};\n        \
             // SAFETY: the caller's call of `{name}`, forwarded unchanged.\n        \
             unsafe {{ function({}) }}\n    \
             }})\n}}\n",
            declared.join(", "),
            passed.join(", ")
        );
        let _ = writeln!(
            entries,
            "    // SAFETY: both types are `Option` of an `extern \"C\"` function pointer; the slot is\n    \
             // transmuted back to exactly `{pfn}` by the caller's macro expansion.\n    \
             unsafe {{ core::mem::transmute::<{pfn}, WDFFUNC>(Some(guard_{index})) }},"
        );
    }
    let _ = writeln!(
        text,
        "/// The guarded table.\n\
         pub(crate) static GUARDED: [WDFFUNC; {}] = [\n{entries}];",
        names.len()
    );
    text
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
