# SPDX-License-Identifier: GPL-2.0-or-later
"""Where this checkout's build is, and QEMU's command-line programs run
through it (build/s2e-run).

S2E_BUILD_DIR names the build directory (meson sets it for the tests and
benchmarks); without it, build/ at the top of the checkout.
"""

import os
import re
import subprocess

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD_DIR = os.path.abspath(os.environ.get("S2E_BUILD_DIR")
                            or os.path.join(REPO_ROOT, "build"))
S2E_RUN = os.path.join(BUILD_DIR, "s2e-run")
S2E_SNAPSHOT = os.path.join(BUILD_DIR, "s2e-snapshot")
PLUGIN = os.path.join(BUILD_DIR, "block", "qemu", "block-s2e.so")
QEMU_SYSTEM = "qemu-system-x86_64"


def run(args, check=True, timeout=120, **kw):
    """Run a command, capture its output as text."""
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (
            " ".join(args), p.returncode, p.stdout, p.stderr))
    return p


def s2e(program, *args, check=True, timeout=120, **kw):
    """Run a QEMU program with the s2e plugin loaded."""
    return run([S2E_RUN, program] + list(args), check=check,
               timeout=timeout, **kw)


class QemuIoError(AssertionError):
    pass


def qemu_io(image, commands, fmt="s2e", extra=(), check=True, image_opts=None):
    """Run qemu-io through s2e-run with a list of commands; return stdout."""
    args = ["qemu-io"]
    if image_opts is not None:
        args += ["--image-opts", image_opts]
    else:
        args += ["-f", fmt, image]
    args += list(extra)
    for c in commands:
        args += ["-c", c]
    p = s2e(*args, check=False)
    out = p.stdout + p.stderr
    if check and (p.returncode != 0 or re.search(
            r"(failed|error|Error|Pattern verification)", out)):
        raise QemuIoError("qemu-io %s:\n%s" % (" ".join(commands), out))
    return out


def dumped_bytes(out):
    """The bytes of every `read -v` hex dump in qemu-io's output."""
    data = bytearray()
    for line in out.splitlines():
        m = re.match(r"^([0-9a-f]{8}):\s+((?:[0-9a-f]{2}\s+)+)", line)
        if m:
            data += bytes(int(b, 16) for b in m.group(2).split())
    return bytes(data)
