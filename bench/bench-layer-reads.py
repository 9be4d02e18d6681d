#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""bench-layer-reads: reads of the snapshot layer against QEMU's raw and
qcow2 drivers reading the same bytes, warm and cold, through Debian's
qemu-system-x86_64.

    bench/bench-layer-reads.py [--reps 3] [--blocks 2048] [--dir DIR]

An s2e image gets 64 MiB of data (a different byte per MiB) and is saved
as snapshot "s"; a raw image and a qcow2 image (qemu-img convert) hold the
same 64 MiB.  One QEMU resumes "s" with -loadvm, with the raw and qcow2
images as two more drives (read-only, if=none), so the s2e drive's reads
all come from the snapshot layer, read by a worker thread straight into
the request's buffers.  HMP `qemu-io` issues `read -C` commands, which
print each read's own I/O time (around blk_pread, without the monitor's
round trip):

  warm   every file read once into the page cache first; then each offset
         on the three drives in turn (rotating which goes first), twice:
         "first" (s2e checks each 4 KiB block's checksum) and "again"
  cold   `echo 3 > /proc/sys/vm/drop_caches` before each drive's pass (root
         only; skipped otherwise), reads in the same scattered order

4 KiB reads at --blocks scattered 4 KiB offsets, 1 MiB reads over the whole
64 MiB.  Prints the median microseconds per read and s2e's time over raw's
and over qcow2's (below 1.00: s2e is faster).  Not a test: the numbers
depend on the machine, its disk and its load.
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
from s2e_block.images import MiB  # noqa: E402
from s2e_block.machine import Qemu  # noqa: E402

DATA = 64 * MiB
DRIVES = ("s2e", "raw", "qcow2")


def byte_of_mib(i):
    return (i * 7 + 1) & 0xff


def make_images(work):
    """The s2e image with snapshot "s", and raw and qcow2 images with the
    same bytes; {driver: path}."""
    s2e = os.path.join(work, "disk.s2e")
    raw = os.path.join(work, "disk.raw")
    qcow2 = os.path.join(work, "disk.qcow2")
    with open(s2e, "wb") as f:
        f.truncate(2 * DATA)
    with open(raw, "wb") as f:
        for i in range(DATA // MiB):
            f.write(bytes([byte_of_mib(i)]) * MiB)
        f.truncate(2 * DATA)
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw,
                    qcow2], check=True)
    vm = Qemu(work, ["if=none,id=s2e,file=%s,format=s2e" % s2e],
              name="save")
    for i in range(DATA // MiB):
        vm.hmp.cmd('qemu-io s2e "write -q -P %d %d %d"'
                   % (byte_of_mib(i), i * MiB, MiB), timeout=60)
    if vm.hmp.cmd("savevm s", timeout=300):
        sys.exit("bench-layer-reads: savevm failed")
    vm.quit()
    return {"s2e": s2e, "raw": raw, "qcow2": qcow2}


def resume(work, imgs):
    drives = ["if=none,id=s2e,file=%s,format=s2e" % imgs["s2e"],
              "if=none,id=raw,file=%s,format=raw,readonly=on" % imgs["raw"],
              "if=none,id=qcow2,file=%s,format=qcow2,readonly=on"
              % imgs["qcow2"]]
    return Qemu(work, drives, extra=["-loadvm", "s"], name="read")


def timed_reads(vm, dev, offsets, length):
    """Seconds per read of `read -C` at @offsets on drive @dev, checking
    the data against the byte each MiB holds."""
    before = len(vm.output())
    for off in offsets:
        out = vm.hmp.cmd('qemu-io %s "read -C -P %d %d %d"'
                         % (dev, byte_of_mib(off // MiB), off, length),
                         timeout=120)
        if "verification failed" in out or "error" in out.lower():
            sys.exit("bench-layer-reads: %s read at %d: %s" % (dev, off, out))
    times = read_c_seconds(vm.output()[before:])
    if len(times) != len(offsets):
        sys.exit("bench-layer-reads: %d timings for %d reads on %s"
                 % (len(times), len(offsets), dev))
    return times


def warm(work, imgs, offsets, length):
    """{(pass, driver): [seconds]} with every file in the page cache."""
    for path in (imgs["s2e"] + ".s", imgs["raw"], imgs["qcow2"]):
        subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)
    vm = resume(work, imgs)
    res = {}
    for when in ("first", "again"):
        for i, off in enumerate(offsets):
            turn = DRIVES[i % 3:] + DRIVES[:i % 3]
            for dev in turn:
                res.setdefault((when, dev), []).extend(
                    timed_reads(vm, dev, [off], length))
    vm.quit()
    return res


def drop_caches():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def cold(work, imgs, offsets, length, rep):
    """{("cold", driver): [seconds]}, each driver's pass after dropping the
    page cache."""
    vm = resume(work, imgs)
    res = {}
    for dev in DRIVES[rep % 3:] + DRIVES[:rep % 3]:
        drop_caches()
        res[("cold", dev)] = timed_reads(vm, dev, offsets, length)
    vm.quit()
    return res


def can_drop_caches():
    return os.access("/proc/sys/vm/drop_caches", os.W_OK)


def print_table(res, cases, reps, passes):
    print("Snapshot-layer reads after -loadvm through qemu-system-x86_64 %s"
          "\n(HMP qemu-io read -C; median us per read, median of %d "
          "repetitions; s2e's time over raw's and qcow2's)\n"
          % (qemu_version(), reps))
    print("  %-22s %9s %9s %9s %8s %8s" % ("", "s2e", "raw", "qcow2",
                                          "s2e/raw", "s2e/qcow2"))
    for label, _, _ in cases:
        for when in passes:
            us = {d: statistics.median(res[(label, when, d)]) * 1e6
                  for d in DRIVES}
            print("  %-22s %9.1f %9.1f %9.1f %8.2f %8.2f" % (
                "%s, %s" % (label, when), us["s2e"], us["raw"],
                us["qcow2"], us["s2e"] / us["raw"], us["s2e"] / us["qcow2"]))


def main():
    args = parse_args(__doc__, reps=3, blocks=2048)
    passes = ["first", "again"] + (["cold"] if can_drop_caches() else [])
    with work_dir(args, "bench-layer-reads-") as work:
        imgs = make_images(work)
        small = list(range(0, DATA, 4096))
        random.Random(1).shuffle(small)
        big = list(range(0, DATA, MiB))
        random.Random(2).shuffle(big)
        cases = [("4 KiB", small[:args.blocks], 4096), ("1 MiB", big, MiB)]
        res = {}
        for rep in range(args.reps):
            for label, offsets, length in cases:
                got = warm(work, imgs, offsets, length)
                if "cold" in passes:
                    got.update(cold(work, imgs, offsets, length, rep))
                for (when, dev), t in got.items():
                    res.setdefault((label, when, dev), []).append(
                        statistics.median(t))
        print_table(res, cases, args.reps, passes)
        if "cold" not in passes:
            print("\n(cold: skipped, dropping the page cache needs root)")


if __name__ == "__main__":
    main()
