#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# QEMU's own patch gate: QEMU's scripts/checkpatch.pl -f finds no error and
# no warning in any C file of block/, snapshot/ and include/, so the code
# could be proposed to QEMU as it stands.
#
# checkpatch.pl: --checkpatch PATH, else $S2E_CHECKPATCH, else the one of
# the newest QEMU source that scripts/qemu-headers.sh has fetched into its
# cache (qemu-VERSION/src/scripts/checkpatch.pl).  Without one the test
# fails and names the command that fetches the sources.
#
# Accepted: the one warning that no rewrite can avoid without changing
# what the code does, "architecture specific defines should be avoided",
# on exactly the lines listed in ACCEPTED below (the C++ linkage guards of
# the headers C++ engines include, the compiler test that picks the AVX2
# target pragma clang understands, and the test for a CPU and compiler
# that can build the AVX2 checksum: the sources carry it, not a compiler
# flag, so a QEMU tree that builds them with its own flags builds it too).  Every accepted warning is still
# printed.
#
# Usage: test-checkpatch.sh [--checkpatch PATH] SOURCE_ROOT [FILE...]
#   FILE...  check only these files (paths relative to SOURCE_ROOT).
set -euo pipefail

CHECKPATCH="${S2E_CHECKPATCH:-}"
if [ "${1:-}" = --checkpatch ]; then
    CHECKPATCH="${2:?--checkpatch needs the path of checkpatch.pl}"
    shift 2
fi
ROOT="${1:?usage: test-checkpatch.sh [--checkpatch PATH] SOURCE_ROOT [FILE...]}"
shift

# FILE|MESSAGE|LINE: a warning accepted on that exact source line of that
# file (FILE may be a glob).
ACCEPTED=(
    "*.h|architecture specific defines should be avoided|#ifdef __cplusplus"
    "snapshot/snapshot-checksum-avx2.c|architecture specific defines should be avoided|#if defined(__clang__)"
    "snapshot/snapshot-int.h|architecture specific defines should be avoided|#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))"
)

# The cache scripts/qemu-headers.sh fills: qemu-VERSION/ per Debian
# version, the epoch's ':' written '_'.
newest_cached_checkpatch() {
    local cache="${S2E_BLOCK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/s2e-block}"
    local dir ver
    for dir in "$cache"/qemu-[0-9]*; do
        [ -f "$dir/src/scripts/checkpatch.pl" ] || continue
        ver="${dir##*/qemu-}"
        printf '%s\t%s\n' "${ver/_/:}" "$dir/src/scripts/checkpatch.pl"
    done | sort -V -k1,1 | tail -n1 | cut -f2
}

if [ -z "$CHECKPATCH" ]; then
    CHECKPATCH=$(newest_cached_checkpatch)
    if [ -z "$CHECKPATCH" ]; then
        echo "FAIL: no checkpatch.pl: fetch the QEMU sources with" \
             "scripts/qemu-headers.sh (or scripts/setup.sh), or name one with" \
             "S2E_CHECKPATCH=PATH"
        exit 1
    fi
fi
[ -f "$CHECKPATCH" ] || { echo "FAIL: $CHECKPATCH does not exist"; exit 1; }
command -v perl >/dev/null || { echo "FAIL: checkpatch.pl needs perl"; exit 1; }
echo "checkpatch: $CHECKPATCH"

if [ $# -gt 0 ]; then
    files=("$@")
elif git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git -C "$ROOT" ls-files --cached --others --exclude-standard \
                         -- block snapshot include)
else
    mapfile -t files < <(cd "$ROOT" && find block snapshot include -type f | sort)
fi

accepted() {  # accepted FILE MESSAGE SOURCE-LINE
    local entry glob msg line
    for entry in "${ACCEPTED[@]}"; do
        IFS='|' read -r glob msg line <<<"$entry"
        # shellcheck disable=SC2053  # $glob is a pattern
        [[ "$1" == $glob && "$2" == "$msg" && "$3" == "$line" ]] && return 0
    done
    return 1
}

cd "$ROOT"
checked=0
bad_files=0
problems=0
n_accepted=0
for f in "${files[@]}"; do
    case "$f" in
        *.c|*.h) ;;
        *) continue ;;
    esac
    [ -f "$f" ] || { echo "FAIL: $f: no such file"; bad_files=$((bad_files + 1)); continue; }
    checked=$((checked + 1))
    rc=0
    out=$(perl "$CHECKPATCH" --no-tree --terse --color=never -f "$f" 2>&1) || rc=$?
    # --terse prints nothing for a clean file, else a line per report and
    # the total; anything else is checkpatch.pl itself failing.
    if ! { [ "$rc" = 0 ] && [ -z "$out" ]; } &&
       ! grep -qE '^total: [0-9]+ errors, [0-9]+ warnings' <<<"$out"; then
        echo "FAIL: $f: checkpatch.pl failed (exit status $rc):"
        echo "$out"
        bad_files=$((bad_files + 1))
        continue
    fi
    file_accepted=0
    while IFS= read -r report; do
        [[ "$report" =~ ^[^:]+:([0-9]+):\ (ERROR|WARNING):\ (.*)$ ]] || continue
        lineno="${BASH_REMATCH[1]}"
        kind="${BASH_REMATCH[2]}"
        msg="${BASH_REMATCH[3]}"
        src=$(sed -n "${lineno}p" "$f")
        if [ "$kind" = WARNING ] && accepted "$f" "$msg" "$src"; then
            echo "accepted: $report"
            file_accepted=$((file_accepted + 1))
        else
            echo "$report"
        fi
        echo "    $src"
    done <<<"$out"
    # A report this loop could not read counts against the file.
    total=$(sed -nE 's/^total: ([0-9]+) errors, ([0-9]+) warnings.*/\1 + \2/p' <<<"$out")
    n=$((${total:-0} - file_accepted))
    n_accepted=$((n_accepted + file_accepted))
    if [ "$n" -gt 0 ]; then
        echo "FAIL: $f: $n not accepted ($(grep -E '^total:' <<<"$out"))"
        bad_files=$((bad_files + 1))
        problems=$((problems + n))
    fi
done

if [ $# -eq 0 ] && [ "$checked" -lt 20 ]; then
    echo "FAIL: only $checked C files found under block/, snapshot/ and include/"
    exit 1
fi
if [ "$bad_files" -gt 0 ]; then
    echo "FAIL: $bad_files of $checked files fail checkpatch.pl ($problems errors and warnings)"
    exit 1
fi
echo "ok: checkpatch.pl finds no error or warning in $checked files" \
     "(apart from $n_accepted accepted ones listed above)"
