//! Callgrind client requests, for benchmarks that count instructions of a chosen window only:
//! run the program with `--instr-atstart=no` and call [`start_instrumentation`] and
//! [`stop_instrumentation`] around the window. Instrumentation is process-wide, so the window
//! counts every thread's instructions.
//!
//! Outside valgrind each request is a few no-op instructions (the magic preamble rotates a
//! register by a multiple of 64 bits and exchanges a register with itself). On targets other
//! than x86-64 they do nothing.

/// `VG_USERREQ_TOOL_BASE('C', 'T')` (callgrind.h).
const CALLGRIND_BASE: u64 = (b'C' as u64) << 24 | (b'T' as u64) << 16;
/// `CALLGRIND_START_INSTRUMENTATION`.
const START_INSTRUMENTATION: u64 = CALLGRIND_BASE + 4;
/// `CALLGRIND_STOP_INSTRUMENTATION`.
const STOP_INSTRUMENTATION: u64 = CALLGRIND_BASE + 5;

#[cfg(target_arch = "x86_64")]
fn client_request(request: u64) -> u64 {
    let arguments: [u64; 6] = [request, 0, 0, 0, 0, 0];
    let mut result: u64 = 0;
    // SAFETY: valgrind's amd64 client-request sequence (valgrind.h,
    // VALGRIND_DO_CLIENT_REQUEST_EXPR). Natively: four rotations of rdi by 3 + 13 + 61 + 51 =
    // 128 bits leave it unchanged, `xchg rbx, rbx` changes nothing, and rdx keeps the default
    // (0); under valgrind the tool reads the request from the array `rax` points to (alive
    // for the whole statement) and writes its answer to rdx. No memory is written, no stack
    // is used.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") arguments.as_ptr(),
            inout("rdx") result,
            out("rdi") _,
            options(nostack, readonly, preserves_flags),
        );
    }
    result
}

#[cfg(not(target_arch = "x86_64"))]
fn client_request(_request: u64) -> u64 {
    0
}

/// Switches callgrind's instrumentation on (`CALLGRIND_START_INSTRUMENTATION`); nothing
/// outside valgrind.
pub fn start_instrumentation() {
    let _ = client_request(START_INSTRUMENTATION);
}

/// Switches callgrind's instrumentation off (`CALLGRIND_STOP_INSTRUMENTATION`); nothing
/// outside valgrind.
pub fn stop_instrumentation() {
    let _ = client_request(STOP_INSTRUMENTATION);
}

#[cfg(test)]
mod tests {
    #[test]
    fn requests_are_harmless_outside_valgrind() {
        super::start_instrumentation();
        super::stop_instrumentation();
        assert_eq!(super::client_request(super::START_INSTRUMENTATION), 0);
    }
}
