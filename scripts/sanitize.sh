#!/usr/bin/env bash
# Runs the stress, soak, schedule and fault-sweep tests under AddressSanitizer and
# ThreadSanitizer with the installed nightly toolchain.
#
#   scripts/sanitize.sh            # both
#   scripts/sanitize.sh address    # one of: address, thread
#
# The nightly has no rust-src, so the standard library cannot be rebuilt with the sanitizer
# (-Zbuild-std): only our crates and their dependencies are instrumented. Consequences:
# - ASan: allocations and frees still go through the instrumented allocator (the runtime
#   intercepts malloc/free), so heap misuse in our code is caught; accesses made inside std's
#   own code are not checked. No false positives are expected; leak detection is on.
# - TSan: std's synchronization (Mutex/Condvar/Once/mpsc, Arc's release/acquire fence on drop,
#   thread parking) runs uninstrumented, so TSan does not see the happens-before edges it
#   creates and reports races on data those primitives protect. Those reports are suppressed
#   by scripts/tsan.supp, which names only frames inside std/core/alloc; a race whose frames
#   are all in our crates is still reported. Pthread-level edges (spawn, join) are intercepted
#   and need no suppression.
# Mixing instrumented crates with the uninstrumented std needs
# -Cunsafe-allow-abi-mismatch=sanitizer on this nightly.
#
# Builds go to $CARGO_TARGET_DIR/sanitize-<kind> (default target/sanitize-<kind>), so they do
# not invalidate the normal build. Exits non-zero on any finding.
set -euo pipefail

cd "$(dirname "$0")/.."
base="${CARGO_TARGET_DIR:-target}"
host="x86_64-unknown-linux-gnu"
kinds=("${@:-address thread}")
# shellcheck disable=SC2206
kinds=(${kinds[*]})

# The tests that exercise concurrency and teardown (shortened defaults, as in CI), as
# package:test.
tests=(
  dmf:soak
  dmf:fault_sweeps
  dmf:module_continuous_request_target_stress
  dmf:module_continuous_request_target_inline
  dmf:module_threaded_buffer_queue
  dmf:module_queued_work_item
  dmf:module_notify_user_with_request
  dmf-sample-sensor-lib:bad_input
  dmf-sample-stream-lib:bad_input
)

status=0
for kind in "${kinds[@]}"; do
  case "$kind" in
    address) export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0" ;;
    thread) export TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp:halt_on_error=0:second_deadlock_stack=1" ;;
    *) echo "unknown sanitizer: $kind" >&2; exit 2 ;;
  esac
  echo "== $kind sanitizer"
  log="$base/sanitize-$kind.log"
  mkdir -p "$base"
  : >"$log"
  for entry in "${tests[@]}"; do
    if ! RUSTFLAGS="-Zsanitizer=$kind -Cunsafe-allow-abi-mismatch=sanitizer -Cdebuginfo=1" \
      CARGO_TARGET_DIR="$base/sanitize-$kind" \
      KMDF_SIM_QUIET=1 \
      cargo +nightly test --locked --target "$host" -p "${entry%%:*}" --test "${entry#*:}" \
      -- --test-threads=1 2>&1 | tee -a "$log"; then
      status=1
    fi
  done
  if grep -q "ERROR: AddressSanitizer\|WARNING: ThreadSanitizer\|ERROR: LeakSanitizer" "$log"; then
    echo "== $kind sanitizer: findings (see $log)"
    status=1
  else
    echo "== $kind sanitizer: clean"
  fi
done
exit $status
