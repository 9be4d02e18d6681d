#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""bench-layer: what checking snapshot data costs a guest's reads, through
Debian's qemu-system-x86_64.

    bench/bench-layer.py [--reps 5] [--blocks 4096] [--dir DIR]

Two identical images, each on its own drive of one QEMU, get the same
64 MiB of data and are saved together as snapshot "s"; then image A's file
is rewritten as format version 1 (one CRC per run, nothing checked on
reads) and image B's stays version 2 (a checksum per 4 KiB block, checked
on a block's first read).  For each repetition a new QEMU resumes "s" with
-loadvm, both files are read once so that they sit in the page cache, and
HMP `qemu-io` issues `read -C` commands over --blocks 4 KiB blocks in a
scattered order, each block on drive A then on drive B (or B then A, in
turn), so that both versions meet the same load at the same moment.  Two
passes: "first" reads check every block of B, "again" reads find them
checked.  Then the same with 1 MiB reads over the 64 MiB.  `read -C`
makes qemu-io print each command's own I/O time (around blk_pread), so the
monitor's round trip is not counted.

Prints the median I/O time per read of each version and the overhead of
version 2.  Not a test: the numbers depend on the machine and its load.
"""

import os
import random
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))   # the harness
from s2e_block.bench import (parse_args, qemu_version,  # noqa: E402
                             read_c_seconds, work_dir)
from s2e_block.images import MiB, downgrade_to_v1  # noqa: E402
from s2e_block.machine import Qemu  # noqa: E402

DATA = 64 * MiB


def drive(img, dev):
    return "if=none,id=%s,file=%s,format=s2e" % (dev, img)


def make_snapshots(work):
    """Images A (version 1 snapshot) and B (version 2), same data."""
    imgs = []
    for name in ("a.s2e", "b.s2e"):
        img = os.path.join(work, name)
        with open(img, "wb") as f:
            f.truncate(4 * DATA)
        imgs.append(img)
    vm = Qemu(work, [drive(imgs[0], "a"), drive(imgs[1], "b")],
                      name="save")
    for dev in ("a", "b"):
        vm.hmp.cmd('qemu-io %s "write -q -P 0x5a 0 %d"' % (dev, DATA),
                   timeout=300)
    if vm.hmp.cmd("savevm s", timeout=300):
        sys.exit("bench-layer: savevm failed")
    vm.quit()
    downgrade_to_v1(imgs[0] + ".s")
    return imgs


def read_times(work, imgs, offsets, length):
    """Per-read I/O seconds, {(pass, version): [...]}, of two passes of
    `read -C` over @offsets, alternating the drives."""
    for img in imgs:
        subprocess.run(["cat", img + ".s"], stdout=subprocess.DEVNULL)
    vm = Qemu(work, [drive(imgs[0], "a"), drive(imgs[1], "b")],
                      extra=["-loadvm", "s"], name="read")
    order = []
    for when in ("first", "again"):
        for i, off in enumerate(offsets):
            pair = ("a", "b") if i % 2 == 0 else ("b", "a")
            for dev in pair:
                vm.hmp.cmd('qemu-io %s "read -C %d %d"' % (dev, off, length))
                order.append((when, "v1" if dev == "a" else "v2"))
    vm.quit()
    times = read_c_seconds(vm.output())
    if len(times) != len(order):
        sys.exit("bench-layer: expected %d timings, got %d:\n%s"
                 % (len(order), len(times), vm.output()[-2000:]))
    res = {}
    for key, t in zip(order, times):
        res.setdefault(key, []).append(t)
    return res


def main():
    args = parse_args(__doc__, reps=5, blocks=4096)
    with work_dir(args, "bench-layer-") as work:
        imgs = make_snapshots(work)
        small = list(range(0, DATA, 4096))
        random.Random(1).shuffle(small)
        small = small[:args.blocks]
        big = list(range(0, DATA, MiB))
        cases = [("4 KiB", small, 4096), ("1 MiB", big, MiB)]
        res = {}
        for _ in range(args.reps):
            for label, offsets, length in cases:
                for (when, version), t in read_times(work, imgs, offsets,
                                                     length).items():
                    res.setdefault((label, when, version), []).append(
                        statistics.median(t))
        print("Snapshot-layer reads through qemu-system-x86_64 %s "
              "(HMP qemu-io read -C, median us per read, %d repetitions)\n"
              % (qemu_version(), args.reps))
        print("  %-20s %10s %10s %10s" % ("", "version 1", "version 2",
                                         "overhead"))
        for label, _, _ in cases:
            for when in ("first", "again"):
                v1 = statistics.median(res[(label, when, "v1")]) * 1e6
                v2 = statistics.median(res[(label, when, "v2")]) * 1e6
                print("  %-20s %10.2f %10.2f %+9.1f%%" % (
                    "%s, %s read" % (label, when), v1, v2,
                    100 * (v2 - v1) / v1))


if __name__ == "__main__":
    main()
