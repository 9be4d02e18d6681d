#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The licence is stated where QEMU (and any distribution) looks for it:
# COPYING holds the GPL version 2, and every source file names its licence
# with an SPDX-License-Identifier line near its top, matching meson.build's
# GPL-2.0-or-later.
#
# Usage: test-licence.sh SOURCE_ROOT
set -euo pipefail

ROOT="$1"
TAG="SPDX-License-Identifier: GPL-2.0-or-later"
fail=0

grep -q "GNU GENERAL PUBLIC LICENSE" "$ROOT/COPYING" 2>/dev/null &&
    grep -q "Version 2, June 1991" "$ROOT/COPYING" ||
    { echo "FAIL: COPYING is missing or is not the GPL version 2"; fail=1; }
grep -q "license: 'GPL-2.0-or-later'" "$ROOT/meson.build" ||
    { echo "FAIL: meson.build declares another licence"; fail=1; }

if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git -C "$ROOT" ls-files --cached --others --exclude-standard)
else
    mapfile -t files < <(cd "$ROOT" && find . -path ./build\* -prune -o -type f -print | sed 's|^\./||')
fi
checked=0
for f in "${files[@]}"; do
    case "$f" in
        *.c|*.h|*.py|*.sh|*.in|meson.build|*/meson.build|meson_options.txt|.ci/run|guest/init) ;;
        *) continue ;;
    esac
    [ -f "$ROOT/$f" ] || continue
    checked=$((checked + 1))
    if ! head -n 5 "$ROOT/$f" | grep -qF "$TAG"; then
        echo "FAIL: $f has no '$TAG' line in its first 5 lines"
        fail=1
    fi
done
[ "$checked" -gt 50 ] || { echo "FAIL: only $checked source files found"; fail=1; }
[ "$fail" = 0 ] && echo "ok: COPYING and an SPDX line in each of $checked source files"
exit "$fail"
