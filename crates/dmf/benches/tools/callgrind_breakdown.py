#!/usr/bin/env python3
"""Per-request breakdown of a streaming_callgrind benchmark's callgrind output.

usage: callgrind_breakdown.py DIR [REQUESTS]

DIR is one benchmark's output folder (target/gungraun/dmf/streaming_callgrind/streaming/NAME),
REQUESTS the completions counted (1000). Sums every thread's file and prints, per request: all
instructions, the self cost of `dmf::` functions (and the top ones), and the calls of the
simulated spin lock, heap allocation and framework handle lookup.
"""
import collections
import glob
import os
import re
import sys

COUNTED_CALLS = {
    "spin lock acquire": "wdk_sys::framework::sync::wdf_spin_lock_acquire",
    "heap allocation (malloc)": "malloc",
    "framework handle lookup": "wdk_sys::framework::object::lookup",
}


def parse(path, self_cost, calls):
    names = {}
    fn = None
    pending_calls = None
    pending_target = None
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        m = re.match(r"^(c?fn)=(?:\((\d+)\))? ?(.*)$", line)
        if m:
            kind, ident, name = m.groups()
            if ident is not None and name:
                names[ident] = name
            elif ident is not None:
                name = names.get(ident, ident)
            if kind == "fn":
                fn = name
            else:
                pending_target = name
            continue
        if line.startswith("calls="):
            pending_calls = int(line.split("=")[1].split()[0])
            continue
        m = re.match(r"^(?:[+-]?\d+|\*) (\d+)", line)
        if m and fn is not None:
            if pending_calls is not None:
                # The cost line after calls= is the inclusive cost of the call: not self cost.
                calls[pending_target] += pending_calls
                pending_calls = None
                pending_target = None
            else:
                self_cost[fn] += int(m.group(1))


def main():
    folder = sys.argv[1]
    requests = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    self_cost = collections.Counter()
    calls = collections.Counter()
    for path in sorted(glob.glob(os.path.join(folder, "callgrind.*.out"))):
        parse(path, self_cost, calls)
    total = sum(self_cost.values())
    dmf = {k: v for k, v in self_cost.items() if k.startswith("dmf::") or "<dmf::" in k}
    print(f"{os.path.basename(folder.rstrip('/'))}: {requests} requests")
    print(f"  instructions per request:        {total / requests:8.0f}")
    print(f"  dmf:: self cost per request:     {sum(dmf.values()) / requests:8.0f}")
    for label, name in COUNTED_CALLS.items():
        count = sum(v for k, v in calls.items() if k == name or k.startswith(name + "'"))
        print(f"  {label + ' calls per request:':33}{count / requests:8.2f}")
    print("  top dmf:: self costs per request:")
    for name, cost in sorted(dmf.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {cost / requests:7.0f}  {name}")


if __name__ == "__main__":
    main()
