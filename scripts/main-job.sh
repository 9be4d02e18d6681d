#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# The README's first command: set up everything on a fresh Debian 12
# machine (packages, QEMU headers, build), then run the main job: QEMU with
# an s2e disk, `savevm ready`, quit, resume, data back, base untouched.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/setup.sh"
exec /usr/bin/python3 "$ROOT/scripts/demo.py" "$@"
