#!/usr/bin/env bash
# Runs the stress, soak, schedule and fault-sweep tests under AddressSanitizer and
# ThreadSanitizer with the installed nightly toolchain.
#
#   scripts/sanitize.sh            # both
#   scripts/sanitize.sh address    # one of: address, thread
#
# The nightly has no rust-src, so the standard library cannot be rebuilt with the sanitizer
# (-Zbuild-std): only our crates and their dependencies (and whatever std code is generic or
# inlined into them) are instrumented. Consequences:
# - ASan: allocations and frees go through the sanitizer's allocator (it intercepts
#   malloc/free), so heap misuse in our code is caught, as are leaks (LeakSanitizer); accesses
#   made inside non-inlined std code are not checked. No false positives are expected: every
#   report fails the run.
# - TSan: std's synchronization runs partly uninstrumented. The contended paths of
#   std::sync::Mutex and Condvar (futex waits, `lock_contended`) are not inlined, so TSan misses
#   the handoff from one holder to the next and reports races on the data they protect; and
#   Arc/Weak order the last decrement before the destructor with an acquire fence, which TSan
#   does not model. TSan therefore runs without suppressions and scripts/tsan_triage.py sorts
#   its reports: those whose two accesses are both inside the simulation's std-locked state, or
#   under the drop of an Arc's last reference, or std alone (libtest's result channel) are
#   explained and counted; any other report (an access in dmf code, a driver or a test racing
#   with anything) is a finding and fails the run. (TSan's own suppression files match every
#   frame of the stacks that created the threads too, which would hide everything.)
# Mixing instrumented crates with the uninstrumented std needs
# -Cunsafe-allow-abi-mismatch=sanitizer on this nightly.
#
# Builds go to $CARGO_TARGET_DIR/sanitize-<kind> (default target/sanitize-<kind>), so they do
# not invalidate the normal build. The logs are $CARGO_TARGET_DIR/sanitize-<kind>.log. Exits
# non-zero on any finding.
set -euo pipefail

cd "$(dirname "$0")/.."
base="${CARGO_TARGET_DIR:-target}"
host="x86_64-unknown-linux-gnu"
kinds=("${@:-address thread}")
# shellcheck disable=SC2206
kinds=(${kinds[*]})

# The tests that exercise concurrency and teardown (shortened defaults, as in CI, with fewer
# seeds for the schedule runners), as package:test.
export SCHEDULE_SEEDS="${SCHEDULE_SEEDS:-3}"
tests=(
  dmf:soak
  dmf:fault_sweeps
  dmf:module_continuous_request_target_stress
  dmf:module_continuous_request_target_inline
  dmf:module_threaded_buffer_queue
  dmf:module_queued_work_item
  dmf:module_notify_user_with_request
  dmf:module_device_interface_target
  dmf:module_device_interface_multiple_target
  dmf-sample-sensor-lib:bad_input
  dmf-sample-stream-lib:bad_input
  dmf-sample-hub-lib:bad_input
)
# SANITIZE_TESTS="dmf:soak dmf:fault_sweeps" runs only those.
if [ -n "${SANITIZE_TESTS:-}" ]; then
  # shellcheck disable=SC2206
  tests=($SANITIZE_TESTS)
fi

status=0
for kind in "${kinds[@]}"; do
  case "$kind" in
    address) export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0" ;;
    thread) export TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1" ;;
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
  if [ "$kind" = thread ]; then
    if python3 scripts/tsan_triage.py "$log" >"$log.triage"; then
      head -n 4 "$log.triage"
      echo "== $kind sanitizer: clean"
    else
      head -n 4 "$log.triage"
      echo "== $kind sanitizer: findings (see $log.triage)"
      status=1
    fi
  elif grep -q "ERROR: AddressSanitizer\|ERROR: LeakSanitizer" "$log"; then
    echo "== $kind sanitizer: findings (see $log)"
    status=1
  else
    echo "== $kind sanitizer: clean"
  fi
done
exit $status
