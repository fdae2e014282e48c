#!/usr/bin/env python3
"""Sorts ThreadSanitizer race reports (read from the log files given) into those explained by the
uninstrumented standard library and the rest, which are findings. Prints a summary; exits 1 if
there is any finding (each is printed in full).

A race report is explained, and not a finding, in two cases only:
- for both accesses, the innermost frame that is not standard library code (std, core, alloc,
  hashbrown, libtest, the sanitizer runtime, libc allocation) belongs to the simulation
  (`wdk_sys::`): the simulation keeps its state behind std::sync::Mutex and Condvar, whose
  contended paths (futex waits) are uninstrumented, so TSan misses the handoff between holders;
- the raced memory was allocated as a std::sync::Mutex or RwLock (TSan names the heap block and
  its allocation stack): safe code reaches the contents only by taking the lock, and a holder
  that waited in the lock's contended path took it in uninstrumented code;
- both accesses are standard library code alone (libtest's result channel), or std::sync's own
  bookkeeping (a channel's waker list, reached through std frames before any of ours);
- one access runs under the drop of an Arc's or Weak's last reference (`drop_slow`, or the free
  of the allocation by `Weak::drop`): std orders the other threads' earlier decrements before it
  with an acquire fence, which TSan does not model (a std built with TSan uses a load instead).
  In safe code a thread that still touches the data holds a reference, so the count cannot be
  at zero; the unsafe wrappers in dmf/src/wdf hold no Arc across such accesses.
- it matches an entry of REVIEWED: a report read by hand and found to be a std Mutex handoff
  on test bookkeeping that TSan cannot see (kept narrow: named frames on both sides).
Everything else (a race between two accesses in dmf code, a driver or a test) is a finding.
"""
import re
import sys

STD = re.compile(
    r"^<*&?(mut )?(std::|core::|alloc::|hashbrown::|test::|__tsan|__sanitizer|__rust|\*const|\*mut"
    r"|(u8|u16|u32|u64|usize|i8|i16|i32|i64|isize|bool|char|str)\b|\[|fn\(|unsafe|dyn|free$|malloc$|calloc$|realloc$|memcpy$|memmove$|memset$|pthread_"
    r"|main$|__libc_|_start$|start_thread$|clone3?$)"
)
SIM = re.compile(r"^<*wdk_sys::")
# The last reference of an Arc or Weak going: the destructor (or the free of the allocation)
# runs after a decrement on another thread, ordered by an acquire fence TSan does not model.
LAST_REFERENCE = re.compile(
    r"#\d+ (<alloc::sync::Arc<[^ ]*>>::drop_slow|<alloc::sync::(Arc|Weak)<.*> as core::ops::drop::Drop>::drop)"
)


def first_own_frame(block):
    """The innermost frame that is not standard library code; None if there is none."""
    for frame in re.findall(r"#\d+ (\S+)", block):
        if not STD.match(frame):
            return frame
    return None


def stacks(report):
    body = report.split("SUMMARY:")[0]
    parts = re.split(r"\n  (?:Previous )?(?:[Ww]rite|[Rr]ead|[Aa]tomic [a-z]+) of size", body)
    return [part.split("\n\n")[0] for part in parts[1:3]]


def accesses(report):
    return [first_own_frame(stack) for stack in stacks(report)]


def inside_std_sync(stack):
    """Whether the access is std::sync's own bookkeeping (a frame of std::sync comes before any
    frame of ours)."""
    for frame in re.findall(r"#\d+ (\S+)", stack):
        if "std::sync::" in frame:
            return True
        if not STD.match(frame):
            return False
    return False


# Reports read one by one and found to be std::sync::Mutex handoffs TSan cannot see, on data
# that both sides reach only through the lock: (a frame in one access stack, a frame in the
# other, what was read). Keep entries narrow: a new report that matches none is a finding.
REVIEWED = [
    (
        "module_device_interface_multiple_target::Log>::target",
        "module_device_interface_multiple_target::config::{closure#0}",
        "the DIMT test's Log::names, a Mutex<HashMap> written by its Open callback",
    ),
    (
        "module_device_interface_multiple_target::Log>::target",
        "DeviceInterfaceMultipleTargetNode>::notify",
        "the DIMT test's Log::names, filled by its Open callback (inlined into the call)",
    ),
]


def reviewed(both):
    for first, second, why in REVIEWED:
        if (first in both[0] and second in both[1]) or (first in both[1] and second in both[0]):
            return "reviewed: " + why
    return None


def inside_std_lock(report):
    """Whether the raced memory is a heap block allocated as (part of) a std::sync::Mutex or
    RwLock: safe code reaches its contents only through the lock."""
    location = report.split("Location is heap block", 1)
    if len(location) < 2:
        return False
    frames = re.findall(r"#\d+ (\S+)", location[1].split("\n\n")[0])
    return any(re.search(r"std::sync::(poison::)?(mutex::Mutex|rwlock::RwLock)<", frame) for frame in frames)


def explanation(report):
    """Why a race report is explained by the uninstrumented std, or None."""
    both = stacks(report)
    if len(both) != 2:
        return None
    why = reviewed(both)
    if why:
        return why
    if inside_std_lock(report):
        return "data inside a std Mutex/RwLock (safe code reaches it only through the lock)"
    if all(inside_std_sync(stack) for stack in both):
        return "std::sync internals (channels, locks)"
    own = [first_own_frame(stack) for stack in both]
    if all(frame is None for frame in own):
        return "standard library alone (libtest's channel)"
    if all(frame is not None and SIM.match(frame) for frame in own):
        return "simulation state behind std locks"
    if any(LAST_REFERENCE.search(stack) for stack in both):
        return "Arc/Weak last reference (acquire fence)"
    return None


def main(paths):
    explained = {}
    findings = []
    for path in paths:
        with open(path, errors="replace") as log:
            text = log.read()
        for report in text.split("WARNING: ThreadSanitizer:")[1:]:
            report = report.split("==================")[0]
            if not report.startswith(" data race") and "heap-use-after-free" not in report:
                findings.append(report)
                continue
            why = explanation(report)
            if why is None:
                findings.append(report)
            else:
                explained[why] = explained.get(why, 0) + 1
    for why, count in sorted(explained.items()):
        print(f"tsan triage: {count} report(s) explained: {why}")
    print(f"tsan triage: {len(findings)} finding(s)")
    for finding in findings:
        print("WARNING: ThreadSanitizer:" + finding)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
