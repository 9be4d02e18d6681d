# SPDX-License-Identifier: GPL-2.0-or-later
"""What the benchmarks share: the QEMU they measure, and qemu-io's timing
lines."""

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import tempfile

# `read -C` prints bytes,ops,time,bytes/sec,ops/sec for each command.
C_LINE = re.compile(r"^\d+,\d+,[0-9:.]+,[0-9.]+,([0-9.]+)$", re.M)


def qemu_version():
    """Debian's version of qemu-system-x86, as the README quotes it."""
    p = subprocess.run(["dpkg-query", "-W", "-f=${Version}",
                        "qemu-system-x86"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    return p.stdout.strip() or "unknown"


def read_c_seconds(output):
    """The I/O time of each `qemu-io ... read -C` in @output, in order."""
    return [1.0 / float(m.group(1)) for m in C_LINE.finditer(output)]


def parse_args(doc, reps, blocks):
    """--reps, --blocks and --dir, as the read benchmarks take them."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--reps", type=int, default=reps)
    ap.add_argument("--blocks", type=int, default=blocks,
                    help="4 KiB reads per pass (default %d)" % blocks)
    ap.add_argument("--dir", help="work here and keep the files")
    return ap.parse_args()


@contextlib.contextmanager
def work_dir(args, prefix):
    """--dir, kept; else a temporary directory, removed afterwards."""
    work = args.dir or tempfile.mkdtemp(prefix=prefix)
    os.makedirs(work, exist_ok=True)
    try:
        yield work
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
