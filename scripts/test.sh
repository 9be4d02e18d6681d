#!/bin/bash
# Run every test of s2e-block and print the totals on the last line:
#   unit tests (CUnit), the fuzz corpus replay and the integration tests
#   against Debian's QEMU binaries (build/),
#   the unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer
#   (build-asan/),
#   a short bounded libFuzzer session on the snapshot parser,
#   QEMU built from Debian's source with s2e linked in (-blockdev driver=s2e).
# Sets everything up first (scripts/setup.sh), so it works on a fresh
# Debian 12 machine.  Exit status 0 only when nothing failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${S2E_BUILD_DIR:-$ROOT/build}
ASAN_BUILD=${S2E_ASAN_BUILD_DIR:-$ROOT/build-asan}
PASSED=0
FAILED=0
SKIPPED=0

step() { printf '\n== %s\n' "$*"; }

# Count the results of the last `meson test` run in build dir $1.
count_meson_results() {
    local log="$1/meson-logs/testlog.json" counts
    if [ ! -s "$log" ]; then
        FAILED=$((FAILED + 1))
        return
    fi
    counts=$(/usr/bin/python3 - "$log" <<'PY'
import json, sys
p = f = s = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif r == "SKIP":
        s += 1
    else:
        f += 1
print(p, f, s)
PY
)
    set -- $counts
    PASSED=$((PASSED + $1)); FAILED=$((FAILED + $2)); SKIPPED=$((SKIPPED + $3))
}

run_meson_tests() {
    local dir="$1"; shift
    rm -f "$dir/meson-logs/testlog.json"
    meson test -C "$dir" --print-errorlogs "$@"
    count_meson_results "$dir"
}

record() {  # record NAME COMMAND...: a single test outside meson
    local name="$1"; shift
    if "$@"; then
        PASSED=$((PASSED + 1))
    else
        echo "FAILED: $name"
        FAILED=$((FAILED + 1))
    fi
}

main() {
    local t0=$SECONDS
    step "set-up and build"
    if ! "$ROOT/scripts/setup.sh"; then
        echo "set-up failed"
        echo "0 passed, 1 failed"
        exit 1
    fi

    step "unit, fuzz-corpus and integration tests"
    run_meson_tests "$BUILD"

    step "unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
    if [ ! -f "$ASAN_BUILD/build.ninja" ]; then
        PATH="/usr/bin:$PATH" meson setup "$ASAN_BUILD" "$ROOT" -Dplugin=disabled \
            -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
    fi
    if ninja -C "$ASAN_BUILD" >/dev/null; then
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            run_meson_tests "$ASAN_BUILD" --suite unit --suite fuzz
    else
        echo "FAILED: sanitizer build"
        FAILED=$((FAILED + 1))
    fi

    if [ -x "$ROOT/scripts/fuzz-snapshot.sh" ]; then
        step "bounded fuzzing session on the snapshot parser"
        record fuzz-snapshot "$ROOT/scripts/fuzz-snapshot.sh"
    fi

    step "QEMU built from source with s2e linked in"
    local qb
    if qb=$("$ROOT/scripts/build-qemu-s2e.sh" | tail -n 1) &&
       [ -x "$qb/qemu-system-x86_64" ]; then
        record test_builtin env S2E_QEMU_BUILTIN_DIR="$qb" \
            /usr/bin/python3 "$ROOT/tests/integration/test_builtin.py" -v
    else
        echo "FAILED: scripts/build-qemu-s2e.sh"
        FAILED=$((FAILED + 1))
    fi

    step "all tests done in $((SECONDS - t0)) s"
    echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
    [ "$FAILED" -eq 0 ]
}

main "$@"
