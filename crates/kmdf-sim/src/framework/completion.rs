//! Where completion routines run, and how deeply they nest.
//!
//! KMDF runs a request's completion routine in whatever context completed the request, at that
//! context's IRQL, and raises nothing on its own (`FxRequestBase::CompleteSubmitted` is called
//! from the I/O manager's completion of the IRP, in fxrequestbase.cpp). In the simulation that
//! means:
//!
//! | who completes                                             | thread            | IRQL                       |
//! |-----------------------------------------------------------|-------------------|----------------------------|
//! | a queue callback that completes inline                    | the sender's      | the sender's               |
//! | a driver's DPC-level timer, or a send timeout             | a framework thread | `DISPATCH_LEVEL`           |
//! | a driver's work item or system thread                     | that thread       | that thread's (`PASSIVE`)  |
//! | a test releasing a held request, a cancel from a test     | the test's        | the test's (`PASSIVE`)     |
//! | the programmable target's delayed answer                  | a framework thread | `DISPATCH_LEVEL`           |
//!
//! A completion routine that sends again into a target that completes inline nests one level
//! deeper on the same stack each time. A kernel stack is small (24 KB on x64), so a stream that
//! does this recurses until it overflows. The simulation counts the nesting per thread, keeps
//! the deepest nesting seen, and reports [`rules::COMPLETION_RECURSION`] when it goes past
//! [`NESTING_LIMIT`].

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

use super::verifier::{self, rules};

/// Completion routines nested on one thread beyond which the verifier reports a recursion.
pub const NESTING_LIMIT: u32 = 16;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

static HIGH_WATER: AtomicU32 = AtomicU32::new(0);

/// Runs a completion routine, counting it as one more level of nesting on this thread.
pub(crate) fn run_nested<R>(routine: &str, f: impl FnOnce() -> R) -> R {
    let depth = DEPTH.with(|d| {
        let depth = d.get() + 1;
        d.set(depth);
        depth
    });
    HIGH_WATER.fetch_max(depth, Ordering::Relaxed);
    if depth == NESTING_LIMIT + 1 {
        verifier::report(
            rules::COMPLETION_RECURSION,
            routine,
            format!(
                "completion routines nest {depth} deep on one thread: a resend from a completion \
                 routine into a target that completes inline recurses (turn it into a loop)"
            ),
        );
    }
    let result = f();
    DEPTH.with(|d| d.set(d.get() - 1));
    result
}

/// Completion routines running on the calling thread now (0 outside any).
pub(crate) fn depth() -> u32 {
    DEPTH.with(Cell::get)
}

/// The deepest nesting seen since the last [`reset_high_water`].
pub(crate) fn high_water() -> u32 {
    HIGH_WATER.load(Ordering::Relaxed)
}

/// Forgets the deepest nesting seen.
pub(crate) fn reset_high_water() {
    HIGH_WATER.store(0, Ordering::Relaxed);
}
