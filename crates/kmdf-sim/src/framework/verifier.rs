//! The verifier log: every broken rule is recorded with the object and API involved.

use std::sync::Mutex;

/// Names of the rules the simulation checks. A report's `rule` is one of these.
pub mod rules {
    /// A handle was used after its object was deleted, or never was a handle.
    pub const INVALID_HANDLE: &str = "use of a deleted or invalid handle";
    /// A handle of one object type was passed where another type is required.
    pub const WRONG_HANDLE_TYPE: &str = "handle of the wrong object type";
    /// An object was deleted twice, or deleted when the driver may not delete it.
    pub const INVALID_DELETE: &str = "invalid object delete";
    /// `WdfObjectDereference` dropped the last reference of an object that was not deleted.
    pub const UNBALANCED_DEREFERENCE: &str = "unbalanced object dereference";
    /// A function was called above the highest IRQL it allows.
    pub const IRQL_TOO_HIGH: &str = "called at too high an IRQL";
    /// A wait with a nonzero timeout at `DISPATCH_LEVEL`.
    pub const WAIT_AT_DISPATCH: &str = "wait at DISPATCH_LEVEL";
    /// A paged-pool allocation above `APC_LEVEL`.
    pub const PAGED_ALLOCATION_AT_DISPATCH: &str = "paged pool allocation at DISPATCH_LEVEL";
    /// A callback returned holding a spin lock.
    pub const SPIN_LOCK_HELD_ON_RETURN: &str = "spin lock held when a callback returned";
    /// A callback returned at an IRQL other than the one it was called at (for instance after
    /// releasing a spin lock its caller holds).
    pub const IRQL_NOT_RESTORED: &str = "IRQL not restored when a callback returned";
    /// A spin lock was acquired twice by its owner or released by a thread that does not own it.
    pub const SPIN_LOCK_MISUSE: &str = "spin lock misuse";
    /// Objects were still alive at teardown.
    pub const OBJECT_LEAKED: &str = "object alive at teardown";
    /// Pool still allocated at teardown.
    pub const POOL_LEAKED: &str = "pool allocation alive at teardown";
    /// Pool freed that was not allocated (or freed twice, or with the wrong tag).
    pub const INVALID_POOL_FREE: &str = "free of pool that was not allocated";
    /// A structure's `Size` field does not match the KMDF 1.33 structure.
    pub const BAD_STRUCTURE_SIZE: &str = "structure Size field mismatch";
    /// An argument KMDF rejects (null required pointer, out-of-range offset, ...).
    pub const INVALID_ARGUMENT: &str = "invalid argument";
    /// A WDF function the simulation does not implement was called. The report's object is the
    /// function's name; the call returned `STATUS_NOT_IMPLEMENTED` (or 0 / FALSE / NULL).
    pub const NOT_SIMULATED: &str = "WDF function not simulated";
    // -- rules of spin locks, wait locks, events and threads --
    /// A wait lock was acquired again by its owner or released by a thread that does not own it.
    pub const WAIT_LOCK_MISUSE: &str = "wait lock misuse";
    /// A spin lock or wait lock was deleted while a thread held it.
    pub const LOCK_DELETED_WHILE_HELD: &str = "lock deleted while held";
    /// A kernel handle was never closed, or a referenced kernel object never dereferenced.
    pub const KERNEL_HANDLE_LEAKED: &str = "kernel handle or object reference leaked at teardown";
    /// A system thread was still running at teardown.
    pub const SYSTEM_THREAD_RUNNING: &str = "system thread still running at teardown";
    /// `PsTerminateSystemThread` called from a thread that is not a system thread.
    pub const NOT_A_SYSTEM_THREAD: &str = "system-thread call from another thread";

    // -- rules of work items, timers and collections --
    /// A work item or timer was created without the parent object KMDF requires.
    pub const PARENT_REQUIRED: &str = "work item or timer created without a parent";
    /// A work item flush or a timer stop with wait was called from that object's own callback
    /// (it would wait for itself forever).
    pub const WAIT_FOR_OWN_CALLBACK: &str =
        "wait for an object's callback from inside that callback";
    /// A work item was enqueued or a timer started while it was being deleted.
    pub const USE_WHILE_DELETING: &str = "work item or timer used while being deleted";
    /// A collection index was out of range, or the object to remove was not in the collection.
    pub const COLLECTION_ITEM_NOT_FOUND: &str = "collection index or item not found";

    // -- rules of requests, I/O targets, queues and devices --
    /// A request was completed twice.
    pub const DOUBLE_COMPLETION: &str = "request completed twice";
    /// A request was completed by a driver that does not own it.
    pub const COMPLETION_NOT_OWNED: &str = "completion of a request the driver does not own";
    /// A request was formatted or sent while still pending.
    pub const REQUEST_STILL_PENDING: &str = "request reused while pending";
    /// A request, target or queue was alive at device removal.
    pub const IO_ALIVE_AT_REMOVE: &str = "I/O object alive at remove";
    /// Completion routines nested deeper than the simulation's bound on one thread (a stream
    /// that resends from its completion routine into a target that completes inline).
    pub const COMPLETION_RECURSION: &str = "completion routines nested too deeply";
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Which rule (one of [`rules`]).
    pub rule: &'static str,
    /// The object or API involved, e.g. `WDFMEMORY 0x100010` or `KeWaitForSingleObject`.
    pub object: String,
    /// What happened.
    pub message: String,
}

impl core::fmt::Display for Report {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "[{}] {}: {}", self.rule, self.object, self.message)
    }
}

static REPORTS: Mutex<Vec<Report>> = Mutex::new(Vec::new());

/// Records a broken rule. With `KMDF_SIM_VERIFIER=abort` the process prints the offending stack
/// and stops at once, like a bugcheck (a debugger attached keeps the stack too).
pub(crate) fn report(rule: &'static str, object: impl core::fmt::Display, message: String) {
    let report = Report {
        rule,
        object: object.to_string(),
        message,
    };
    eprintln!("kmdf-sim verifier: {report}");
    if std::env::var("KMDF_SIM_VERIFIER").is_ok_and(|v| v == "abort") {
        eprintln!("{}", std::backtrace::Backtrace::force_capture());
        std::process::abort();
    }
    REPORTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(report);
}

/// Removes and returns every report recorded so far.
pub(crate) fn take() -> Vec<Report> {
    core::mem::take(
        &mut *REPORTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}
